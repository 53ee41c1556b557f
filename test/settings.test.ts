import * as grpc from '@grpc/grpc-js';
import { SpanKind } from '@opentelemetry/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadService } from '../src/gateway/grpc/proto.js';
import { Telemetry } from '../src/telemetry/index.js';
import { capturedLog, infer, MODELS, startTestGateway } from './helpers.js';

// Triton's logging and trace extensions: the log level and which requests are traced, read and changed while
// the gateway serves, over HTTP and gRPC — a real gateway, its log lines and spans as they are written.
const telemetry = new Telemetry({ metrics: false, traces: { exporter: 'memory' } });
const { log, lines } = capturedLog();
const model = { path: `${MODELS}mlp.onnx`, device: 'cpu', batching: { max_batch_size: 8, wait_ms: 1 }, scaling: { min_containers: 1 } };
let gw: Awaited<ReturnType<typeof startTestGateway>>;
let client: grpc.Client;
beforeAll(async () => {
  gw = await startTestGateway({ server: { admin_api: true, grpc_port: 0 }, models: { mlp: model, other: model } }, { telemetry, log });
  client = new (loadService('inference.proto', 'inference.GRPCInferenceService'))(`127.0.0.1:${gw.grpcPort}`, grpc.credentials.createInsecure());
});
afterAll(async () => {
  client?.close();
  await gw?.shutdown();
});

const x = [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: new Array(64).fill(0.5) }];
const post = (path: string, body: unknown) => fetch(`${gw.url}${path}`, { method: 'POST', body: JSON.stringify(body) });
const get = async (path: string) => (await fetch(`${gw.url}${path}`)).json();
const rpc = (method: string, request: object) =>
  new Promise<Record<string, unknown>>((resolve, reject) =>
    (client as unknown as Record<string, (r: object, cb: (e: Error | null, r: Record<string, unknown>) => void) => void>)[method](request, (e, r) =>
      e ? reject(e) : resolve(r),
    ),
  );
/** Server spans (one a traced request) of a model's infer calls, ended since `from`. */
const tracedRequests = (name: string, from = 0) =>
  (telemetry.memory?.getFinishedSpans() ?? []).slice(from).filter((s) => s.kind === SpanKind.SERVER && s.attributes['url.path'] === `/v2/models/${name}/infer`);

describe("Triton's logging extension (GET/POST /v2/logging)", () => {
  it('answers the log settings, and changes which lines are written at once', async () => {
    expect(await get('/v2/logging')).toEqual({ log_file: '', log_info: true, log_warning: true, log_error: true, log_verbose_level: 0, log_format: 'default' });
    // Info off: requests no longer write their line; warnings still would.
    expect(await (await post('/v2/logging', { log_info: false })).json()).toMatchObject({ log_info: false, log_warning: true, log_verbose_level: 0 });
    // Said at warn, its pino level one key (a second `level` key read as the line's: "warn", not 40).
    expect(lines.find((l) => l.msg === 'log level changed at runtime (until restart)')).toMatchObject({ level: 40, logLevel: 'warn' });
    const before = lines.length;
    expect((await infer(gw.url, 'mlp', x)).status).toBe(200);
    expect(lines.slice(before).filter((l) => l.msg === 'request')).toEqual([]);
    // Verbose (level 1): a line per batch too.
    await post('/v2/logging', { log_info: true, log_verbose_level: 1 });
    const verbose = lines.length;
    expect((await infer(gw.url, 'mlp', x)).status).toBe(200);
    expect(lines.slice(verbose).map((l) => l.msg)).toEqual(expect.arrayContaining(['request', 'batch']));
    expect(lines.slice(verbose).find((l) => l.msg === 'batch')).toMatchObject({ model: 'mlp', rows: 1, requests: 1, ok: true });
    expect(await (await post('/v2/logging', { log_verbose_level: 0 })).json()).toMatchObject({ log_info: true, log_verbose_level: 0 });
    const plain = lines.length;
    expect((await infer(gw.url, 'mlp', x)).status).toBe(200);
    expect(lines.slice(plain).map((l) => l.msg)).toEqual(['request']);
  });

  it.each([
    [{ log_warning: false }, /log_info is on but log_warning is off: lines are kept by severity/],
    [{ log_file: '/tmp/triton.log' }, /log_file: logs go to standard output/],
    [{ log_format: 'ISO8601' }, /log_format: only "default"/],
    [{ log_verbose_level: -1 }, /log_verbose_level must be a non-negative integer/],
    [{ log_info: 'no' }, /log_info must be a boolean/],
    [{ log_level: 'debug' }, /unknown log setting "log_level"; the settings are log_file, log_info/],
  ])('refuses %j with a 400 and changes nothing', async (body, message) => {
    const before = await get('/v2/logging');
    const res = await post('/v2/logging', body);
    expect(res.status).toBe(400);
    expect((await res.json()).error).toMatch(message);
    expect(await get('/v2/logging')).toEqual(before);
  });
});

describe("Triton's trace extension (GET/POST /v2[/models/{m}]/trace/setting)", () => {
  it('traces every request by default; a count stops tracing once spent, a model may have its own settings', async () => {
    expect(await get('/v2/trace/setting')).toEqual({
      trace_level: ['TIMESTAMPS'],
      trace_rate: '1',
      trace_count: '-1',
      log_frequency: '0',
      trace_mode: 'opentelemetry',
    });
    // Two more traces, then none (the count says what is left).
    let from = telemetry.memory?.getFinishedSpans().length ?? 0;
    expect(await (await post('/v2/trace/setting', { trace_count: '2' })).json()).toMatchObject({ trace_count: '2' });
    for (let i = 0; i < 4; i++) expect((await infer(gw.url, 'mlp', x)).status).toBe(200);
    expect(tracedRequests('mlp', from)).toHaveLength(2);
    expect((await get('/v2/trace/setting')).trace_count).toBe('0');
    // ...each with its batch's span, linked to it (the batch span, ending after the count was spent, was dropped).
    const batchSpans = (telemetry.memory?.getFinishedSpans() ?? []).slice(from).filter((s) => s.name === 'infergate.batch');
    const linked = batchSpans.flatMap((b) => b.links.map((l) => l.context.spanId));
    for (const request of tracedRequests('mlp', from)) expect(linked).toContain(request.spanContext().spanId);
    expect(batchSpans).toHaveLength(2);

    // Unlimited again, but one model's tracing off: its requests go untraced, the other model's are traced.
    await post('/v2/trace/setting', { trace_count: '-1' });
    expect(await (await post('/v2/models/mlp/trace/setting', { trace_level: ['OFF'] })).json()).toMatchObject({ trace_level: ['OFF'] });
    expect((await get('/v2/trace/setting')).trace_level).toEqual(['TIMESTAMPS']);
    from = telemetry.memory?.getFinishedSpans().length ?? 0;
    await Promise.all([infer(gw.url, 'mlp', x), infer(gw.url, 'other', x)]);
    expect(tracedRequests('mlp', from)).toHaveLength(0);
    expect(tracedRequests('other', from)).toHaveLength(1);
    // ...not even a client's sampled traceparent starts one there.
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    await fetch(`${gw.url}/v2/models/mlp/infer`, { method: 'POST', headers: { traceparent }, body: JSON.stringify({ inputs: x }) });
    expect(tracedRequests('mlp', from)).toHaveLength(0);

    // null: back to the global setting.
    expect(await (await post('/v2/models/mlp/trace/setting', { trace_level: null })).json()).toMatchObject({ trace_level: ['TIMESTAMPS'] });
    // Rate 0: no traces of the gateway's own, a client's sampled one followed.
    await post('/v2/trace/setting', { trace_rate: '0' });
    from = telemetry.memory?.getFinishedSpans().length ?? 0;
    await infer(gw.url, 'mlp', x);
    await fetch(`${gw.url}/v2/models/mlp/infer`, { method: 'POST', headers: { traceparent }, body: JSON.stringify({ inputs: x }) });
    expect(tracedRequests('mlp', from).map((s) => s.spanContext().traceId)).toEqual(['0af7651916cd43dd8448eb211c80319c']);
    // ...its batch's span too (sampled at rate 0 on a trace of its own, it was dropped), linked to it.
    const followed = (telemetry.memory?.getFinishedSpans() ?? []).slice(from).filter((s) => s.name === 'infergate.batch');
    expect(followed.flatMap((b) => b.links.map((l) => l.context.traceId))).toEqual(['0af7651916cd43dd8448eb211c80319c']);
    await post('/v2/trace/setting', { trace_rate: 1 }); // numbers as well as Triton's strings
    expect((await get('/v2/trace/setting')).trace_rate).toBe('1');
  });

  it.each([
    ['/v2/trace/setting', { trace_level: ['TENSORS'] }, 400, /TENSORS is not supported/],
    ['/v2/trace/setting', { trace_rate: '-3' }, 400, /trace_rate must be an integer of at least 0/],
    ['/v2/trace/setting', { trace_count: 'lots' }, 400, /trace_count must be an integer of at least -1/],
    ['/v2/trace/setting', { trace_file: '/tmp/t.json' }, 400, /trace_file: spans go to the OpenTelemetry exporter/],
    ['/v2/trace/setting', { trace_level: null }, 400, /null clears a model's own setting/],
    ['/v2/trace/setting', { sample: 1 }, 400, /unknown trace setting "sample"/],
    ['/v2/models/nope/trace/setting', { trace_rate: '2' }, 404, /unknown model "nope"/],
  ])('refuses POST %s %j (%i), changing nothing', async (path, body, status, message) => {
    const before = await get('/v2/trace/setting');
    const res = await post(path, body);
    expect(res.status).toBe(status);
    expect((await res.json()).error).toMatch(message);
    expect(await get('/v2/trace/setting')).toEqual(before);
  });
});

describe('over gRPC (LogSettings, TraceSetting), and their guard', () => {
  it('reads and changes the same settings', async () => {
    const logs = await rpc('LogSettings', {});
    expect(logs.settings).toMatchObject({ log_info: { bool_param: true }, log_verbose_level: { uint32_param: 0 }, log_format: { string_param: 'default' } });
    const quiet = await rpc('LogSettings', { settings: { log_info: { bool_param: false } } });
    expect(quiet.settings).toMatchObject({ log_info: { bool_param: false }, log_warning: { bool_param: true } });
    expect((await get('/v2/logging')).log_info).toBe(false);
    await rpc('LogSettings', { settings: { log_info: { bool_param: true } } });

    const traced = await rpc('TraceSetting', { model_name: 'other', settings: { trace_rate: { value: ['5'] } } });
    expect(traced.settings).toMatchObject({ trace_rate: { value: ['5'] }, trace_level: { value: ['TIMESTAMPS'] } });
    expect((await get('/v2/models/other/trace/setting')).trace_rate).toBe('5');
    expect((await get('/v2/trace/setting')).trace_rate).toBe('1');
    const cleared = await rpc('TraceSetting', { model_name: 'other', settings: { trace_rate: { value: [] } } }); // empty: the global one again
    expect(cleared.settings).toMatchObject({ trace_rate: { value: ['1'] } });
    await expect(rpc('TraceSetting', { settings: { trace_level: { value: ['TENSORS'] } } })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
  });

  it('are read-only without server.admin_api, and listed among the server extensions', async () => {
    expect((await get('/v2')).extensions).toEqual(expect.arrayContaining(['logging', 'trace']));
    const closed = await startTestGateway({ models: { mlp: { path: `${MODELS}mlp.onnx`, device: 'cpu' } } });
    try {
      expect((await fetch(`${closed.url}/v2/logging`)).status).toBe(200);
      const res = await fetch(`${closed.url}/v2/logging`, { method: 'POST', body: JSON.stringify({ log_info: false }) });
      expect(res.status).toBe(403);
      expect((await res.json()).error).toMatch(/server\.admin_api: true/);
      // Traces off (no exporter): they cannot be turned on here.
      expect((await (await fetch(`${closed.url}/v2/trace/setting`)).json()).trace_level).toEqual(['OFF']);
    } finally {
      await closed.shutdown();
    }
  });
});
