import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadService } from '../src/gateway/grpc/proto.js';
import { capturedLog, MODELS, random, selfSignedTls, startTestGateway } from './helpers.js';

// A real gRPC client (grpc-js) with the protocol's .proto, as tritonclient.grpc would call.
const Service = loadService('inference.proto', 'inference.GRPCInferenceService', { enums: String });
const SECRET = 'a-long-enough-shared-secret';

let gw: Awaited<ReturnType<typeof startTestGateway>>;
let client: grpc.Client;
const { log, lines: logLines } = capturedLog();
beforeAll(async () => {
  gw = await startTestGateway(
    {
      server: { grpc_port: 0, max_body_bytes: 8 * 2 ** 20, client_shared_memory: true, admin_api: true },
      auth: { default: 'key', keys: [{ id: 'svc', secret: SECRET }] },
      models: {
        identity: { path: `${MODELS}identity.onnx`, device: 'cpu', batching: { max_batch_size: 8, wait_ms: 20 }, scaling: { min_containers: 1 } },
        slow: { path: `${MODELS}slow.onnx`, device: 'cpu', batching: { max_batch_size: 1 }, scaling: { min_containers: 1 } },
        dtypes: { path: `${MODELS}dtypes.onnx`, device: 'cpu' },
        'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', scaling: { min_containers: 1 } },
        spare: { path: `${MODELS}identity.onnx`, device: 'cpu', scaling: { min_containers: 1 } },
      },
    },
    { log },
  );
  client = new Service(`127.0.0.1:${gw.grpcPort}`, grpc.credentials.createInsecure());
});
afterAll(async () => {
  client?.close();
  await gw?.shutdown();
});

// biome-ignore lint/suspicious/noExplicitAny: a reply is read field by field as inference.proto says (loaded at run time, no generated types)
type Reply = Record<string, any>;
const KEY = { 'infergate-key': 'svc', 'infergate-secret': SECRET }; // the HTTP headers, as metadata
function rpc(method: string, request: object, metadata: Record<string, string> = KEY, options: grpc.CallOptions = {}): Promise<Reply> {
  const meta = new grpc.Metadata();
  for (const [k, v] of Object.entries(metadata)) meta.set(k, v);
  type Method = (r: object, m: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: Reply) => void) => void;
  return new Promise((resolve, reject) =>
    (client as unknown as Record<string, Method>)[method](request, meta, options, (err, reply) => (err ? reject(err) : resolve(reply))),
  );
}
const failure = (p: Promise<unknown>) =>
  p.then(
    () => ({ code: -1, details: 'succeeded' }),
    (e: grpc.ServiceError) => ({ code: e.code, details: e.details }),
  );
const fp32 = (values: number[]) => Buffer.from(new Float32Array(values).buffer);
const floats = (raw: Buffer) => Array.from(new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength)));
/** A BYTES element as raw contents: its 4-byte little-endian length, then its bytes. */
const bytes = (text: string) => {
  const length = Buffer.alloc(4);
  length.writeUInt32LE(Buffer.byteLength(text));
  return Buffer.concat([length, Buffer.from(text)]);
};
/** The text of a response's first raw output (one BYTES element). */
const textOf = (response: Reply) => {
  const raw = response.raw_output_contents[0] as Buffer;
  return raw.subarray(4, 4 + raw.readUInt32LE(0)).toString();
};
/** Every message a ModelStreamInfer stream answers to `requests`, written in order, then the stream ended. */
async function streamInfer(requests: object[]): Promise<Reply[]> {
  const meta = new grpc.Metadata();
  for (const [k, v] of Object.entries(KEY)) meta.set(k, v);
  const stream = (client as unknown as { ModelStreamInfer(m: grpc.Metadata): grpc.ClientDuplexStream<object, Reply> }).ModelStreamInfer(meta);
  const got: Reply[] = [];
  const ended = new Promise((resolve, reject) =>
    stream
      .on('data', (r: Reply) => got.push(r))
      .on('end', resolve)
      .on('error', reject),
  );
  for (const request of requests) stream.write(request);
  stream.end();
  await ended;
  return got;
}

describe('KServe v2 gRPC (server.grpc_port)', () => {
  it('answers health and metadata as the HTTP routes do', async () => {
    expect(await rpc('ServerLive', {}, {})).toEqual({ live: true });
    expect(await rpc('ServerReady', {}, {})).toEqual({ ready: true });
    expect(await rpc('ModelReady', { name: 'identity' })).toEqual({ ready: true });
    const server = await rpc('ServerMetadata', {}, {});
    expect(server.name).toBe('infergate');
    expect(server.extensions).toContain('binary_tensor_data');
    // Triton's model configuration (what perf_analyzer reads), as GET .../config answers it.
    const { config } = await rpc('ModelConfig', { name: 'identity' });
    const http = await (await fetch(`${gw.url}/v2/models/identity/config`, { headers: KEY })).json();
    expect(config).toMatchObject({ name: 'identity', platform: 'onnxruntime_onnx', backend: 'onnxruntime', max_batch_size: 8 });
    expect(config.input).toEqual([{ name: 'x', data_type: 'TYPE_FP32', dims: ['-1'], optional: false }]);
    expect(config.dynamic_batching.max_queue_delay_microseconds).toBe(String(http.dynamic_batching.max_queue_delay_microseconds));
    expect(config.instance_group[0]).toMatchObject({ kind: 'KIND_CPU', count: http.instance_group[0].count });
    expect(config.parameters.device).toEqual({ string_value: 'cpu' });
    const meta = await rpc('ModelMetadata', { name: 'identity' });
    expect(meta).toMatchObject({ name: 'identity', versions: ['1'], platform: 'onnxruntime_onnx' });
    expect(meta.inputs[0]).toMatchObject({ name: 'x', datatype: 'FP32' });
    expect(meta.inputs[0].shape.map(Number)).toEqual([-1, -1]);
  });

  it("answers gRPC's standard health check (Kubernetes' grpc probes): SERVING while ready, NOT_SERVING once shutting down", async () => {
    const draining = await startTestGateway({
      server: { grpc_port: 0, shutdown_delay_s: 2 },
      models: { identity: { path: `${MODELS}identity.onnx`, device: 'cpu' } },
    });
    const Health = loadService('health.proto', 'grpc.health.v1.Health', { enums: String });
    const probe = new Health(`127.0.0.1:${draining.grpcPort}`, grpc.credentials.createInsecure());
    const check = (service: string) =>
      new Promise<{ status?: string; code?: number }>((resolve) =>
        (probe as unknown as { Check: (r: object, cb: (e: grpc.ServiceError | null, r: { status: string }) => void) => void }).Check(
          { service },
          (err, reply) => resolve(err ? { code: err.code } : reply),
        ),
      );
    try {
      expect(await check('')).toEqual({ status: 'SERVING' });
      expect(await check('inference.GRPCInferenceService')).toEqual({ status: 'SERVING' });
      expect(await check('nope')).toEqual({ code: grpc.status.NOT_FOUND });
      const stopped = draining.shutdown();
      await new Promise((r) => setTimeout(r, 200));
      expect(await check('')).toEqual({ status: 'NOT_SERVING' }); // a probe takes it out while it drains
      await stopped;
    } finally {
      probe.close();
      await draining.shutdown();
    }
  });

  it('infers with raw contents and typed contents, batched with other calls, each its own rows', async () => {
    const rows = Array.from({ length: 6 }, (_, i) => random(5, i + 1).map(Math.fround));
    const answers = await Promise.all(
      rows.map((row, i) =>
        rpc('ModelInfer', {
          model_name: 'identity',
          id: `call-${i}`,
          inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 5], ...(i % 2 ? { contents: { fp32_contents: row } } : {}) }],
          ...(i % 2 ? {} : { raw_input_contents: [fp32(row)] }),
        }),
      ),
    );
    answers.forEach((a, i) => {
      expect(a).toMatchObject({ model_name: 'identity', id: `call-${i}` });
      expect(a.outputs[0]).toMatchObject({ name: 'y', datatype: 'FP32' });
      expect(a.outputs[0].shape.map(Number)).toEqual([1, 5]);
      expect(floats(a.raw_output_contents[0])).toEqual(rows[i]);
    });
    const stats = await (await fetch(`${gw.url}/v2/models/identity/stats`, { headers: KEY })).json();
    expect(stats.batches).toBeLessThan(stats.requests); // calls met in batches
    // Triton's statistics over gRPC, as /v2/models/stats has them.
    const { model_stats } = await rpc('ModelStatistics', { name: 'identity' });
    const triton = (await (await fetch(`${gw.url}/v2/models/stats`, { headers: KEY })).json()).model_stats.find((m: { name: string }) => m.name === 'identity');
    expect(model_stats).toHaveLength(1);
    expect(Number(model_stats[0].inference_count)).toBe(triton.inference_count);
    expect(Number(model_stats[0].execution_count)).toBe(triton.execution_count);
    expect(Number(model_stats[0].inference_stats.success.count)).toBeGreaterThanOrEqual(6);
    expect(model_stats[0].batch_stats.length).toBeGreaterThan(0);
    expect((await failure(rpc('ModelStatistics', { name: 'nope' }))).code).toBe(grpc.status.NOT_FOUND);
    // Logged as HTTP requests are, marked as gRPC; an HTTP request is not.
    const inferLines = logLines.filter((l) => l.route === '/v2/models/:model/infer' && l.model === 'identity');
    expect(inferLines.length).toBeGreaterThanOrEqual(6);
    expect(inferLines.map((l) => [l.protocol, l.caller])).toEqual(inferLines.map(() => ['grpc', 'key:svc']));
    // ModelStatistics, the same over HTTP, ModelStatistics again: the route's three lines.
    expect(logLines.filter((l) => l.route === '/v2/models/stats').map((l) => l.protocol)).toEqual(['grpc', undefined, 'grpc']);
  });

  it('takes every datatype as raw contents, as tritonclient sends them, and answers each as raw contents', async () => {
    const raw = {
      fp32: Buffer.from(new Float32Array([1.5, -2, 0, 3]).buffer),
      fp16: Buffer.from(new Uint16Array([0x3c00, 0xc000, 0, 0x3800]).buffer), // 1, -2, 0, 0.5
      i64: Buffer.from(new BigInt64Array([2n ** 40n, -1n, 0n, 7n]).buffer),
      i32: Buffer.from(new Int32Array([-5, 6, 0, 2 ** 30]).buffer),
      u8: Buffer.from([0, 1, 100, 127]),
      flag: Buffer.from([1, 0, 0, 1]),
    };
    const types = { fp32: 'FP32', fp16: 'FP16', i64: 'INT64', i32: 'INT32', u8: 'UINT8', flag: 'BOOL' };
    const names = Object.keys(raw) as (keyof typeof raw)[];
    const a = await rpc('ModelInfer', {
      model_name: 'dtypes',
      inputs: names.map((n) => ({ name: n, datatype: types[n], shape: [1, 4] })),
      raw_input_contents: names.map((n) => raw[n]),
    });
    const out = (n: string) => {
      const i = a.outputs.findIndex((o: { name: string }) => o.name === `${n}_out`);
      expect(a.outputs[i].datatype).toBe(types[n as keyof typeof types]);
      const b = a.raw_output_contents[i] as Buffer;
      return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
    };
    expect(Array.from(new Float32Array(out('fp32')))).toEqual([3, -4, 0, 6]);
    expect(Array.from(new Uint16Array(out('fp16')))).toEqual([0x4000, 0xc400, 0, 0x3c00]); // 2, -4, 0, 1
    expect(Array.from(new BigInt64Array(out('i64')))).toEqual([2n ** 41n, -2n, 0n, 14n]);
    expect(Array.from(new Int32Array(out('i32')))).toEqual([-10, 12, 0, -(2 ** 31)]); // 2^31 wraps in int32
    expect(Array.from(new Uint8Array(out('u8')))).toEqual([0, 2, 200, 254]);
    expect(Array.from(new Uint8Array(out('flag')))).toEqual([0, 1, 1, 0]);
    // FP16 has no typed contents in the protocol: said so.
    const typed = await failure(rpc('ModelInfer', { model_name: 'dtypes', inputs: [{ name: 'fp16', datatype: 'FP16', shape: [1, 4] }] }));
    expect(typed).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: expect.stringMatching(/FP16 has no typed contents/) });
  });

  it("streams a generative model's text on ModelStreamInfer as Triton's vLLM backend does, beside tensor requests and errors", async () => {
    const generative = (id: string, prompt: string) => ({
      model_name: 'tiny-gpt',
      id,
      inputs: [
        { name: 'text_input', datatype: 'BYTES', shape: [1] },
        { name: 'stream', datatype: 'BOOL', shape: [1] },
        { name: 'sampling_parameters', datatype: 'BYTES', shape: [1] },
        { name: 'exclude_input_in_output', datatype: 'BOOL', shape: [1] },
      ],
      raw_input_contents: [bytes(prompt), Buffer.from([1]), bytes(JSON.stringify({ max_tokens: 12, temperature: 0 })), Buffer.from([1])],
      parameters: { triton_enable_empty_final_response: { bool_param: true } },
    });
    const got = await streamInfer([
      generative('a', 'The capital of France'),
      generative('b', 'Once upon a time'),
      { model_name: 'identity', id: 't', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2] }], raw_input_contents: [fp32([7, 8])] },
      { ...generative('z', 'x'), model_name: 'nope' },
      { ...generative('y', 'x'), raw_input_contents: [Buffer.from([9, 0]), Buffer.from([1]), bytes('{}'), Buffer.from([1])] }, // a torn BYTES element
    ]);
    const text = (id: string) =>
      got
        .filter((r) => r.infer_response?.id === id && r.infer_response.raw_output_contents.length)
        .map((r) => textOf(r.infer_response))
        .join('');
    // The same text as the generate extension answers over HTTP, in more than one response.
    for (const [id, prompt] of [
      ['a', 'The capital of France'],
      ['b', 'Once upon a time'],
    ]) {
      const http = await fetch(`${gw.url}/v2/models/tiny-gpt/generate`, {
        method: 'POST',
        headers: KEY,
        body: JSON.stringify({ text_input: prompt, parameters: { max_tokens: 12, temperature: 0 }, exclude_input_in_output: true }),
      });
      expect(text(id)).toBe((await http.json()).text_output);
      expect(got.filter((r) => r.infer_response?.id === id).length).toBeGreaterThan(2);
      // Every response says whether it is the last (tritonclient takes one that does not for the last): the pieces
      // not, the empty final response is.
      const finals = got.filter((r) => r.infer_response?.id === id).map((r) => r.infer_response.parameters.triton_final_response?.bool_param);
      expect(finals.at(-1)).toBe(true);
      expect(finals.slice(0, -1).every((f) => f === false)).toBe(true);
    }
    // A tensor request's one response is its last, and no empty one follows it (Triton's: for decoupled models only).
    const tensor = got.filter((r) => r.infer_response?.id === 't');
    expect(tensor.map((r) => r.infer_response.parameters.triton_final_response?.bool_param)).toEqual([true]);
    expect(floats(tensor[0].infer_response.raw_output_contents[0])).toEqual([7, 8]);
    // Not asked for, the stream still ends with it: the last piece is known only once sent (and one final flag, not two).
    const alone = await streamInfer([{ ...generative('c', 'Hello'), parameters: {} }]);
    const flags = alone.map((r) => r.infer_response.parameters.triton_final_response?.bool_param);
    expect([flags.filter((f) => f === true).length, flags.at(-1), alone.at(-1)?.infer_response.outputs]).toEqual([1, true, []]);
    // Each error with its request's id (several are in flight on one stream), in whichever order they failed.
    const errors = Object.fromEntries(got.filter((r) => r.error_message).map((r) => [r.infer_response?.id, r.error_message]));
    expect(errors).toEqual({ z: expect.stringMatching(/nope/), y: expect.stringMatching(/text_input: a BYTES element is a 4-byte little-endian length/) });
  });

  it("answers a generative model's text_input in one response unless it asks for stream (ModelInfer, and ModelStreamInfer with stream false)", async () => {
    const http = async (prompt: string, exclude: boolean) =>
      (
        await (
          await fetch(`${gw.url}/v2/models/tiny-gpt/generate`, {
            method: 'POST',
            headers: KEY,
            body: JSON.stringify({ text_input: prompt, parameters: { max_tokens: 10, seed: 3 }, exclude_input_in_output: exclude }),
          })
        ).json()
      ).text_output;
    const settings = bytes(JSON.stringify({ max_tokens: 10, seed: 3 }));
    const request = (prompt: string, stream?: boolean) => ({
      model_name: 'tiny-gpt',
      id: prompt,
      inputs: [
        { name: 'text_input', datatype: 'BYTES', shape: [1] },
        { name: 'sampling_parameters', datatype: 'BYTES', shape: [1] },
        ...(stream === undefined ? [] : [{ name: 'stream', datatype: 'BOOL', shape: [1] }]),
      ],
      raw_input_contents: [bytes(prompt), settings, ...(stream === undefined ? [] : [Buffer.from([stream ? 1 : 0])])],
    });

    // ModelInfer: raw contents, or typed bytes_contents; the prompt first, as vLLM's backend answers.
    const raw = await rpc('ModelInfer', request('Hello'));
    expect(raw.outputs).toEqual([expect.objectContaining({ name: 'text_output', datatype: 'BYTES', shape: ['1'] })]);
    expect(textOf(raw)).toBe(await http('Hello', false));
    const typed = await rpc('ModelInfer', {
      model_name: 'tiny-gpt',
      inputs: [
        { name: 'text_input', datatype: 'BYTES', shape: [1], contents: { bytes_contents: [Buffer.from('Hello')] } },
        { name: 'max_tokens', datatype: 'INT32', shape: [1], contents: { int_contents: [10] } },
        { name: 'random_seed', datatype: 'UINT64', shape: [1], contents: { uint64_contents: ['3'] } },
        { name: 'return_finish_reason', datatype: 'BOOL', shape: [1], contents: { bool_contents: [true] } },
      ],
    });
    expect(textOf(typed)).toBe(await http('Hello', false));
    expect(typed.outputs.map((o: Reply) => o.name)).toEqual(['text_output', 'finish_reason']);
    const streamAsked = await failure(rpc('ModelInfer', request('Hello', true)));
    expect(streamAsked).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: expect.stringMatching(/ModelStreamInfer/) });

    // ModelStreamInfer: stream false (or absent) is one response with the whole text; stream true leaves the prompt out unless asked.
    const got = await streamInfer([request('Once upon', false), request('The capital', true)]);
    // (a generation's stream ends with an empty response marked final: the pieces are those with outputs)
    const responses = (id: string) => got.filter((r) => r.infer_response?.id === id && r.infer_response.outputs.length).map((r) => r.infer_response);
    expect(responses('Once upon')).toHaveLength(1);
    expect(textOf(responses('Once upon')[0])).toBe(await http('Once upon', false));
    expect(responses('The capital').length).toBeGreaterThan(2);
    expect(responses('The capital').map(textOf).join('')).toBe(await http('The capital', true));
    // Streamed with vLLM's return_* flags: token counts per response, the last says why the text ended.
    const flagged = request('Far away', true);
    flagged.inputs.push(
      { name: 'return_finish_reason', datatype: 'BOOL', shape: [1] },
      { name: 'return_num_output_tokens', datatype: 'BOOL', shape: [1] },
      { name: 'return_logprobs', datatype: 'BOOL', shape: [1] },
      { name: 'return_cumulative_logprob', datatype: 'BOOL', shape: [1] },
    );
    flagged.raw_input_contents.push(Buffer.from([1]), Buffer.from([1]), Buffer.from([1]), Buffer.from([1]));
    const counted = (await streamInfer([flagged])).map((r) => r.infer_response).filter((r) => r.outputs.length);
    const output = (r: Reply, name: string) => r.raw_output_contents[r.outputs.findIndex((o: Reply) => o.name === name)] as Buffer | undefined;
    expect(counted.reduce((n, r) => n + (output(r, 'num_output_tokens')?.readUInt32LE(0) ?? 0), 0)).toBe(10);
    expect(output(counted.at(-1), 'finish_reason')?.subarray(4).toString()).toBe('length');
    expect(counted.slice(0, -1).every((r) => output(r, 'finish_reason') === undefined)).toBe(true);
    // ...and each response's tokens' log-probabilities (a JSON string), their running sum as FP32.
    const scored = counted.flatMap((r) => JSON.parse((output(r, 'logprobs') as Buffer).subarray(4).toString()));
    expect(scored).toHaveLength(10);
    const sum = scored.reduce((total, position) => total + (Object.values(position) as { logprob: number }[])[0].logprob, 0);
    expect(output(counted.at(-1), 'cumulative_logprob')?.readFloatLE(0)).toBeCloseTo(sum, 3);

    // Its configuration, as perf_analyzer reads it: decoupled, the settings optional.
    const { config } = await rpc('ModelConfig', { name: 'tiny-gpt' });
    expect(config).toMatchObject({ max_batch_size: 0, model_transaction_policy: { decoupled: true } });
    expect(config.input).toContainEqual(expect.objectContaining({ name: 'stream', data_type: 'TYPE_BOOL', optional: true }));
    expect(config.input).toContainEqual(expect.objectContaining({ name: 'text_input', data_type: 'TYPE_STRING', optional: false }));
  });

  it("serves Triton's repository calls: the index, and unloading and loading a model", async () => {
    const index = await rpc('RepositoryIndex', {});
    expect(index.models).toContainEqual({ name: 'spare', version: '1', state: 'READY', reason: '' });
    expect(await rpc('RepositoryModelUnload', { model_name: 'spare', parameters: { unload_dependents: { bool_param: false } } })).toEqual({}); // (as tritonclient sends it)
    expect(await rpc('ModelReady', { name: 'spare' })).toEqual({ ready: false });
    expect((await rpc('RepositoryIndex', {})).models).toContainEqual(expect.objectContaining({ name: 'spare', state: 'UNAVAILABLE' }));
    expect((await rpc('RepositoryIndex', { ready: true })).models.map((m: Reply) => m.name)).not.toContain('spare');
    const refused = await failure(
      rpc('ModelInfer', { model_name: 'spare', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1] }], raw_input_contents: [fp32([1])] }),
    );
    expect(refused).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: expect.stringMatching(/spare is unloaded/) });
    expect(await rpc('RepositoryModelLoad', { model_name: 'spare' })).toEqual({});
    expect(await rpc('ModelReady', { name: 'spare' })).toEqual({ ready: true });
    const [unknown, noName, withParameters] = await Promise.all([
      failure(rpc('RepositoryModelLoad', { model_name: 'nope' })),
      failure(rpc('RepositoryModelUnload', {})),
      failure(rpc('RepositoryModelLoad', { model_name: 'spare', parameters: { config: { string_param: '{}' } } })),
    ]);
    expect(unknown).toMatchObject({ code: grpc.status.NOT_FOUND, details: expect.stringMatching(/nope/) });
    expect(noName).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: 'model_name is required' });
    expect(withParameters).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: expect.stringMatching(/parameters config are not supported/) });
  });

  it.skipIf(!existsSync('/dev/shm'))(
    "serves Triton's system shared-memory calls: a region registered over gRPC feeds ModelInfer and takes its answer",
    async () => {
      const key = `infergate-grpc-test-${process.pid}`;
      writeFileSync(`/dev/shm/${key}`, Buffer.concat([fp32([1, 2, 3, 4]), Buffer.alloc(16)]));
      try {
        expect(await rpc('SystemSharedMemoryRegister', { name: 'io', key: `/${key}`, offset: 0, byte_size: 32 })).toEqual({});
        expect((await rpc('SystemSharedMemoryStatus', {})).regions).toEqual({ io: { name: 'io', key: `/${key}`, offset: '0', byte_size: '32' } });
        expect((await rpc('SystemSharedMemoryStatus', { name: 'io' })).regions.io.byte_size).toBe('32');
        // As perf_analyzer --shared-memory system sends it: the input's bytes and the output's place in the region.
        const region = (offset: number) => ({
          shared_memory_region: { string_param: 'io' },
          shared_memory_offset: { int64_param: offset },
          shared_memory_byte_size: { int64_param: 16 },
        });
        const answer = await rpc('ModelInfer', {
          model_name: 'identity',
          inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], parameters: region(0) }],
          outputs: [{ name: 'y', parameters: region(16) }],
        });
        expect(answer.raw_output_contents).toEqual([Buffer.alloc(0)]); // (one entry per output, as Triton's: empty here)
        expect(answer.outputs[0].parameters.shared_memory_region).toMatchObject({ string_param: 'io' });
        expect(floats(readFileSync(`/dev/shm/${key}`).subarray(16))).toEqual([1, 2, 3, 4]);
        // Some inputs and outputs in the region, the others raw, as tritonclient sends them: raw entries only for the
        // inputs not in shared memory (it was a 400), and an (empty) entry for every output (the others' shifted).
        const mixed = await rpc('ModelInfer', {
          model_name: 'dtypes',
          inputs: [
            { name: 'fp32', datatype: 'FP32', shape: [1, 4], parameters: region(0) },
            { name: 'i32', datatype: 'INT32', shape: [1, 4] },
            ...['fp16', 'i64', 'u8', 'flag'].map((name) => ({
              name,
              datatype: { fp16: 'FP16', i64: 'INT64', u8: 'UINT8', flag: 'BOOL' }[name],
              shape: [1, 4],
            })),
          ],
          raw_input_contents: [Buffer.from(new Int32Array([1, 2, 3, 4]).buffer), Buffer.alloc(8), Buffer.alloc(32), Buffer.alloc(4), Buffer.alloc(4)],
          outputs: [{ name: 'fp32_out', parameters: region(16) }, { name: 'i32_out' }],
        });
        expect(mixed.raw_output_contents.map((b: Buffer) => b.byteLength)).toEqual([0, 16]);
        expect(Array.from(new Int32Array(new Uint8Array(mixed.raw_output_contents[1]).buffer))).toEqual([2, 4, 6, 8]);
        expect(floats(readFileSync(`/dev/shm/${key}`).subarray(16))).toEqual([2, 4, 6, 8]);
        const [unknown, noName] = await Promise.all([
          failure(rpc('SystemSharedMemoryStatus', { name: 'nope' })),
          failure(rpc('SystemSharedMemoryRegister', { key: `/${key}`, byte_size: 4 })),
        ]);
        expect(unknown.code).toBe(grpc.status.NOT_FOUND);
        expect(noName).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: expect.stringMatching(/name is required/) });
        expect(await rpc('SystemSharedMemoryUnregister', {})).toEqual({});
        expect((await rpc('SystemSharedMemoryStatus', {})).regions).toEqual({});
      } finally {
        rmSync(`/dev/shm/${key}`, { force: true });
      }
    },
  );

  it('maps what the HTTP path refuses to gRPC codes, and goes on serving', async () => {
    const x = { name: 'x', datatype: 'FP32', shape: [1, 5] };
    const made: [Promise<unknown>, grpc.status, RegExp][] = [
      [rpc('ModelInfer', { model_name: 'identity', inputs: [x], raw_input_contents: [fp32([1])] }, {}), grpc.status.UNAUTHENTICATED, /./],
      [rpc('ModelInfer', { model_name: 'nope', inputs: [x], raw_input_contents: [fp32([1, 2, 3, 4, 5])] }), grpc.status.NOT_FOUND, /nope/],
      [rpc('ModelInfer', { model_name: 'identity', inputs: [x], raw_input_contents: [fp32([1, 2])] }), grpc.status.INVALID_ARGUMENT, /bytes|size/i],
      [
        rpc('ModelInfer', { model_name: 'identity', inputs: [{ ...x, datatype: 'INT64' }], raw_input_contents: [Buffer.alloc(40)] }),
        grpc.status.INVALID_ARGUMENT,
        /FP32|INT64/,
      ],
      [rpc('ModelInfer', { model_name: 'identity', inputs: [x] }), grpc.status.INVALID_ARGUMENT, /no data/],
      [
        rpc('ModelInfer', { model_name: 'identity', inputs: [x, x], raw_input_contents: [fp32([1, 2, 3, 4, 5])] }),
        grpc.status.INVALID_ARGUMENT,
        /one per input/,
      ],
      [rpc('ModelInfer', { model_name: 'identity', inputs: [x], raw_input_contents: [Buffer.alloc(9 * 2 ** 20)] }), grpc.status.RESOURCE_EXHAUSTED, /./],
      [rpc('ModelMetadata', { name: 'nope' }), grpc.status.NOT_FOUND, /nope/],
      [rpc('ModelInfer', { inputs: [x], raw_input_contents: [fp32([1, 2, 3, 4, 5])] }), grpc.status.INVALID_ARGUMENT, /model_name is required/],
    ];
    // Each caught at once: they fail in whichever order (some before the gateway's app sees them).
    const cases = made.map(([call, code, details]) => [failure(call), code, details] as const);
    for (const [call, code, details] of cases) {
      const got = await call;
      expect(got.code, got.details).toBe(code);
      expect(got.details).toMatch(details);
    }
    const ok = await rpc('ModelInfer', { model_name: 'identity', inputs: [x], raw_input_contents: [fp32([1, 2, 3, 4, 5])] });
    expect(floats(ok.raw_output_contents[0])).toEqual([1, 2, 3, 4, 5]);
  });

  it('gives up the work of a call past its deadline, as of an HTTP client that left', async () => {
    const call = () => ({ model_name: 'slow', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 16] }], raw_input_contents: [fp32(random(16))] });
    const stats = async () => (await (await fetch(`${gw.url}/v2/models/slow/stats`, { headers: KEY })).json()).shed.cancelled as number;
    const before = await stats();
    // One at a time on the slow model: the later calls' deadlines pass while they queue.
    const got = await Promise.all(Array.from({ length: 16 }, () => failure(rpc('ModelInfer', call(), KEY, { deadline: Date.now() + 30 }))));
    expect(got.filter((g) => g.code === grpc.status.DEADLINE_EXCEEDED).length, JSON.stringify(got)).toBeGreaterThan(2);
    await new Promise((r) => setTimeout(r, 300));
    expect(await stats()).toBeGreaterThan(before); // taken out of the queue, not run for no one
  });

  it("serves over TLS with the HTTP port's certificate", async () => {
    const tls = await selfSignedTls();
    const secure = await startTestGateway({
      server: { grpc_port: 0, tls: { cert: tls.cert, key: tls.key } },
      models: { identity: { path: `${MODELS}identity.onnx`, device: 'cpu' } },
    });
    const tlsClient = new Service(`127.0.0.1:${secure.grpcPort}`, grpc.credentials.createSsl(Buffer.from(tls.ca)));
    try {
      const answer = await new Promise<Reply>((resolve, reject) =>
        (tlsClient as unknown as Record<string, (r: object, cb: (e: Error | null, r: Reply) => void) => void>).ModelInfer(
          { model_name: 'identity', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2] }], raw_input_contents: [fp32([3, 4])] },
          (err, reply) => (err ? reject(err) : resolve(reply)),
        ),
      );
      expect(floats(answer.raw_output_contents[0])).toEqual([3, 4]);
    } finally {
      tlsClient.close();
      await secure.shutdown();
    }
  });
});
