import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Telemetry } from '../src/telemetry/index.js';
import { capturedLog, infer, MODELS, startTestGateway } from './helpers.js';

let gw: Awaited<ReturnType<typeof startTestGateway>>;
const telemetry = new Telemetry({ metrics: true, traces: { exporter: 'memory' } });
const { log, lines: logLines } = capturedLog();

beforeAll(async () => {
  gw = await startTestGateway(
    {
      models: {
        mlp: { path: `${MODELS}mlp.onnx`, device: 'cpu', batching: { max_batch_size: 8, wait_ms: 30 }, scaling: { min_containers: 1 } },
        tight: { path: `${MODELS}mlp.onnx`, device: 'cpu', batching: { max_batch_size: 1, wait_ms: 0, max_queue_size: 1 }, scaling: { min_containers: 1 } },
        'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', scaling: { min_containers: 1 } },
      },
    },
    { telemetry, log },
  );
});
afterAll(() => gw?.shutdown());

const x = (rows = 1) => [{ name: 'x', shape: [rows, 64], datatype: 'FP32', data: new Array(64 * rows).fill(0.25) }];
const scrape = async () => (await fetch(`${gw.url}/metrics`)).text();
/** The value of one Prometheus sample whose labels include all of `labels`. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  const line = text.split('\n').find((l) => (l.startsWith(`${name}{`) || l.startsWith(`${name} `)) && want.every((w) => l.includes(w)));
  return line ? Number(line.split(' ').at(-1)) : Number.NaN;
}

describe('metrics on /metrics after known traffic', () => {
  it('count requests by status, and the queue, batch and row numbers add up', async () => {
    const answers = await Promise.all([1, 2, 3, 1].map((rows) => infer(gw.url, 'mlp', x(rows)))); // 7 rows
    expect(answers.every((a) => a.status === 200)).toBe(true);
    const batchSizes = new Set(answers.map((a) => Number(a.headers.get('x-batch-size'))));
    expect((await infer(gw.url, 'mlp', [{ name: 'x', shape: [1, 3], datatype: 'FP32', data: [1, 2, 3] }])).status).toBe(400);
    expect((await infer(gw.url, 'mlp', [{ name: 'y', shape: [1, 3], datatype: 'FP32', data: [1, 2, 3] }])).status).toBe(400);

    const text = await scrape();
    const route = { http_route: '/v2/models/:model/infer', infergate_model: 'mlp' };
    expect(sample(text, 'http_server_request_duration_count', { ...route, http_response_status_code: '200' })).toBe(4);
    expect(sample(text, 'http_server_request_duration_count', { ...route, http_response_status_code: '400' })).toBe(2);
    // Histogram buckets are cumulative and end at the count.
    const buckets = text.split('\n').filter((l) => l.startsWith('http_server_request_duration_bucket{') && l.includes('"mlp"') && l.includes('code="200"'));
    const counts = buckets.map((l) => Number(l.split(' ').at(-1)));
    expect(counts).toEqual([...counts].sort((a, b) => a - b));
    expect(counts.at(-1)).toBe(4);

    const m = { infergate_model: 'mlp' };
    expect(sample(text, 'infergate_rows_total', m)).toBe(7);
    expect(sample(text, 'infergate_batch_size_sum', m)).toBe(7);
    const batches = sample(text, 'infergate_batches_total', m);
    expect(sample(text, 'infergate_batch_size_count', m)).toBe(batches);
    expect(batches).toBeLessThan(4); // they shared batches
    expect(batchSizes.has(1) && batches === 4).toBe(false);
    expect(sample(text, 'infergate_queue_duration_count', m)).toBe(4); // one per request
    expect(sample(text, 'infergate_batch_duration_count', m)).toBe(batches);
    expect(sample(text, 'infergate_replicas', { ...m, state: 'ready' })).toBe(1);
    expect(sample(text, 'infergate_replica_cold_start_duration_count', m)).toBe(1);
    expect(sample(text, 'infergate_queue_pending', m)).toBe(0);
  });

  it('counts shed requests by reason', async () => {
    const pid = (await (await fetch(`${gw.url}/v2/models/tight/stats`)).json()).replicas[0].pid;
    process.kill(pid, 'SIGSTOP');
    try {
      const running = infer(gw.url, 'tight', x());
      const queued = infer(gw.url, 'tight', x());
      for (let i = 0; i < 200 && (await (await fetch(`${gw.url}/v2/models/tight/stats`)).json()).queuedRequests < 1; i++)
        await new Promise((r) => setTimeout(r, 5));
      expect((await infer(gw.url, 'tight', x())).status).toBe(503);
      process.kill(pid, 'SIGCONT');
      await Promise.all([running, queued]);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    expect(sample(await scrape(), 'infergate_shed_total', { infergate_model: 'tight', reason: 'queue_full' })).toBe(1);
  });

  it('counts generated tokens, time to first token and prompt tokens taken from the prefix cache', async () => {
    const prompt = 'Hi, a prompt long enough to fill a block of sixteen tokens in the prefix cache, and then some.';
    for (const n of [3, 5]) {
      const r = await fetch(`${gw.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ model: 'tiny-gpt', prompt, max_tokens: n }) });
      expect(r.status).toBe(200);
    }
    const text = await scrape();
    expect(sample(text, 'infergate_generation_tokens_total', { gen_ai_request_model: 'tiny-gpt' })).toBe(8);
    expect(sample(text, 'gen_ai_server_time_to_first_token_count', { gen_ai_request_model: 'tiny-gpt' })).toBe(2);
    expect(sample(text, 'infergate_generation_cached_prompt_tokens_total', { gen_ai_request_model: 'tiny-gpt' })).toBe(16); // the second request: the first whole block of its 22 tokens
    // Where the replicas' step time went: drawing tokens is part of it; no response format yet, so no grammar time.
    expect(sample(text, 'infergate_generation_step_time_total', { gen_ai_request_model: 'tiny-gpt', phase: 'decode' })).toBeGreaterThan(0);
    expect(sample(text, 'infergate_generation_step_time_total', { gen_ai_request_model: 'tiny-gpt', phase: 'sampling' })).toBeGreaterThan(0);
    expect(sample(text, 'infergate_generation_step_time_total', { gen_ai_request_model: 'tiny-gpt', phase: 'grammar' })).toBeNaN();
    // vLLM's request-level numbers: prompt tokens, sequences by finish reason, end-to-end and queue time.
    expect(sample(text, 'infergate_generation_prompt_tokens_total', { gen_ai_request_model: 'tiny-gpt' })).toBe(44);
    expect(sample(text, 'infergate_generation_sequences_total', { gen_ai_request_model: 'tiny-gpt', finish_reason: 'length' })).toBe(2);
    expect(sample(text, 'gen_ai_server_request_duration_count', { gen_ai_request_model: 'tiny-gpt' })).toBe(2);
    expect(sample(text, 'infergate_queue_duration_count', { infergate_model: 'tiny-gpt' })).toBe(2);
    // Both ended: no sequence holds a slot; the prefix cache keeps their first block.
    expect(sample(text, 'infergate_generation_running', { gen_ai_request_model: 'tiny-gpt' })).toBe(0);
    expect(sample(text, 'infergate_generation_cache_bytes', { gen_ai_request_model: 'tiny-gpt', cache: 'prefix' })).toBeGreaterThan(0);
    const json = { type: 'json_object' };
    await fetch(`${gw.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ model: 'tiny-gpt', prompt: 'x', max_tokens: 4, response_format: json }) });
    const grammar = sample(await scrape(), 'infergate_generation_step_time_total', { gen_ai_request_model: 'tiny-gpt', phase: 'grammar' });
    expect(grammar).toBeGreaterThan(0);
    const stats = await (await fetch(`${gw.url}/v2/models/tiny-gpt/stats`)).json();
    expect(stats.stepMs.grammar).toBeCloseTo((grammar as number) * 1000, 3);
    expect(stats.stepMs.grammar).toBeLessThan(stats.stepMs.sampling);
    expect(stats.stepMs.sampling).toBeLessThan(stats.stepMs.prefill + stats.stepMs.decode);
  });

  it('show a running sequence and the KV cache it holds, then count it cancelled when its client leaves', async () => {
    const client = new AbortController();
    const body = JSON.stringify({ model: 'tiny-gpt', prompt: 'Once', max_tokens: 500, ignore_eos: true, stream: true });
    const r = await fetch(`${gw.url}/v1/completions`, { method: 'POST', body, signal: client.signal });
    expect(r.status).toBe(200);
    const reader = (r.body as ReadableStream<Uint8Array>).getReader();
    await reader.read(); // its first token: it holds a slot
    const g = { gen_ai_request_model: 'tiny-gpt' };
    const kv = (text: string) => sample(text, 'infergate_generation_cache_bytes', { ...g, cache: 'kv' });
    const during = await scrape();
    expect(sample(during, 'infergate_generation_running', g)).toBe(1);
    expect(kv(during)).toBeGreaterThan(0);
    const stats = await (await fetch(`${gw.url}/v2/models/tiny-gpt/stats`)).json();
    expect(stats.cacheBytes.kv).toBeGreaterThan(0);
    client.abort();
    let after = '';
    for (let i = 0; i < 200 && kv(after) !== 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
      after = await scrape();
    }
    expect(sample(after, 'infergate_generation_sequences_total', { ...g, finish_reason: 'cancelled' })).toBe(1);
    expect(sample(after, 'infergate_generation_running', g)).toBe(0);
    expect(kv(after)).toBe(0);
  });
});

describe("the gateway process's own numbers", () => {
  it('say how busy its event loop is, on /metrics and for the dashboard', async () => {
    // The gateway under test runs in this process: blocking this thread blocks its event loop.
    const active = (text: string) => sample(text, 'nodejs_eventloop_time_total', { nodejs_eventloop_state: 'active' });
    const before = active(await scrape());
    await (await fetch(`${gw.url}/admin/stats`)).json();
    const end = performance.now() + 250;
    while (performance.now() < end);
    const text = await scrape();
    expect(active(text) - before).toBeGreaterThanOrEqual(0.25);
    expect(sample(text, 'nodejs_eventloop_utilization')).toBeGreaterThan(0.5); // since the last scrape: mostly the blocked stretch
    expect(sample(text, 'v8js_memory_heap_used', { v8js_heap_space_name: 'old_space' })).toBeGreaterThan(0);
    const stats = await (await fetch(`${gw.url}/admin/stats`)).json();
    expect(stats.gateway.eventLoopBusy).toBeGreaterThan(0.5); // since the previous read, under a second ago
    expect(stats.gateway.eventLoopBusy).toBeLessThanOrEqual(1);
  });
});

describe('traces (in-memory exporter)', () => {
  it('records a span for each cold start, with its breakdown', () => {
    const starts = (telemetry.memory?.getFinishedSpans() ?? []).filter((s) => s.name === 'infergate.replica.cold_start');
    expect(starts.map((s) => s.attributes['infergate.model']).sort()).toEqual(['mlp', 'tight', 'tiny-gpt']);
    for (const s of starts) {
      expect(s.attributes).toMatchObject({ 'infergate.cold_start.session_ms': expect.any(Number), 'infergate.cold_start.warmup_ms': expect.any(Number) });
      expect(s.duration[0] * 1000 + s.duration[1] / 1e6).toBeGreaterThan(0);
    }
  });

  it('links each batch span to the request spans it carried, and honours a client traceparent', async () => {
    telemetry.memory?.reset();
    const parent = { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331' };
    const traceparent = `00-${parent.traceId}-${parent.spanId}-01`;
    const answers = await Promise.all(
      [0, 1, 2].map((i) =>
        fetch(`${gw.url}/v2/models/mlp/infer`, { method: 'POST', body: JSON.stringify({ inputs: x() }), headers: i === 0 ? { traceparent } : {} }),
      ),
    );
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
    const spans = telemetry.memory?.getFinishedSpans() ?? [];
    const requests = spans.filter((s) => s.name === 'POST /v2/models/:model/infer');
    expect(requests).toHaveLength(3);
    for (const s of requests)
      expect(s.attributes).toMatchObject({ 'http.response.status_code': 200, 'infergate.model': 'mlp', 'http.route': '/v2/models/:model/infer' });
    const child = requests.find((s) => s.spanContext().traceId === parent.traceId) as ReadableSpan;
    expect(child.parentSpanContext?.spanId).toBe(parent.spanId);

    const batchSpans = spans.filter((s) => s.name === 'infergate.batch');
    const linked = new Set(batchSpans.flatMap((b) => b.links.map((l) => l.context.spanId)));
    for (const r of requests) expect(linked.has(r.spanContext().spanId)).toBe(true);
    expect(batchSpans.reduce((n, b) => n + Number(b.attributes['infergate.batch.rows']), 0)).toBe(3);
  });

  it("records a span per generated sequence, the child of its request's, with GenAI usage and latencies", async () => {
    telemetry.memory?.reset();
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const body = JSON.stringify({ model: 'tiny-gpt', prompt: 'Once upon a time', max_tokens: 12, ignore_eos: true, temperature: 0.5, stream: true, n: 2 });
    const res = await fetch(`${gw.url}/v1/completions`, { method: 'POST', body, headers: { traceparent } });
    await res.text(); // the whole stream: the sequences have ended
    const spans = telemetry.memory?.getFinishedSpans() ?? [];
    const request = spans.find((s) => s.name === 'POST /v1/completions') as ReadableSpan;
    const generations = spans.filter((s) => s.name === 'infergate.generation');
    expect(generations).toHaveLength(2); // one per choice
    for (const g of generations) {
      expect(g.parentSpanContext?.spanId).toBe(request.spanContext().spanId);
      expect(g.spanContext().traceId).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
      expect(g.attributes).toMatchObject({
        'gen_ai.request.model': 'tiny-gpt',
        'gen_ai.request.max_tokens': 12,
        'gen_ai.request.temperature': 0.5,
        'gen_ai.usage.input_tokens': 4,
        'gen_ai.usage.output_tokens': 12,
        'gen_ai.response.finish_reasons': ['length'],
        'gen_ai.latency.time_in_queue': expect.any(Number),
        'gen_ai.latency.time_to_first_token': expect.any(Number),
      });
      // A stream's request span ends at its first byte; the generation's runs to its last token.
      const ms = (t: [number, number]) => t[0] * 1000 + t[1] / 1e6;
      expect(ms(g.endTime)).toBeGreaterThanOrEqual(ms(request.endTime));
      expect(ms(g.startTime)).toBeGreaterThanOrEqual(ms(request.startTime) - 1);
    }
  });
});

describe('request logs (pino)', () => {
  it('write one JSON line per request with ids, model, status and timings, never a credential or a body', async () => {
    logLines.length = 0;
    const res = await fetch(`${gw.url}/v2/models/mlp/infer`, {
      method: 'POST',
      body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: new Array(64).fill(0.123456789) }] }),
      headers: { authorization: 'Bearer super-secret-token', 'infergate-secret': 'hunter2hunter2hunter2' },
    });
    expect(res.status).toBe(200);
    const lines = logLines.filter((l) => l.msg === 'request');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 30, method: 'POST', route: '/v2/models/:model/infer', status: 200, model: 'mlp', batchSize: 1 });
    expect(lines[0].requestId).toBe(res.headers.get('x-request-id'));
    expect(String(lines[0].traceId)).toMatch(/^[0-9a-f]{32}$/);
    expect(typeof lines[0].queueMs).toBe('number');
    const raw = JSON.stringify(logLines);
    expect(raw).not.toContain('super-secret-token');
    expect(raw).not.toContain('hunter2');
    expect(raw).not.toContain('0.123456789');
  });
});

describe('metrics on a port of their own (telemetry.metrics_port)', () => {
  it('serves /metrics there only: the public port says 404, naming the setting', async () => {
    const own = await startTestGateway({
      telemetry: { metrics_port: 0 },
      models: { mlp: { path: `${MODELS}mlp.onnx`, device: 'cpu', scaling: { min_containers: 1 } } },
    });
    try {
      expect((await infer(own.url, 'mlp', x(1))).status).toBe(200);
      const there = await fetch(`http://127.0.0.1:${own.metricsPort}/metrics`);
      expect(there.status).toBe(200);
      expect(sample(await there.text(), 'infergate_rows_total', { infergate_model: 'mlp' })).toBe(1);
      expect((await fetch(`http://127.0.0.1:${own.metricsPort}/v2/models/mlp`)).status).toBe(404); // nothing else there
      const here = await fetch(`${own.url}/metrics`);
      expect(here.status).toBe(404);
      expect((await here.json()).error).toMatch(/telemetry\.metrics_port/);
    } finally {
      await own.shutdown();
    }
    await expect(fetch(`http://127.0.0.1:${own.metricsPort}/metrics`)).rejects.toThrow(); // closed with the gateway
  });
});
