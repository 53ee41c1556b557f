import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { perf } from '../src/perf.js';
import { MODELS, ROOT, selfSignedTls, startTestGateway } from './helpers.js';

// `infergate perf` against a real gateway: what it counts is what the gateway served.
let gw: Awaited<ReturnType<typeof startTestGateway>>;
const SECRET = 'a-long-enough-shared-secret';
beforeAll(async () => {
  gw = await startTestGateway({
    server: { grpc_port: 0 },
    auth: { default: 'key', keys: [{ id: 'perf', secret: SECRET }] },
    models: {
      mlp: { path: `${MODELS}mlp.onnx`, device: 'cpu', scaling: { min_containers: 1 } },
      'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', scaling: { min_containers: 1 } },
      'tiny-embed': { path: `${MODELS}tiny-embed.onnx`, device: 'cpu', scaling: { min_containers: 1 } },
      // (tens of ms a run, one request at a time: a server that a rate above its capacity queues up)
      slow: { path: `${MODELS}slow.onnx`, device: 'cpu', batching: { max_batch_size: 1 }, scaling: { min_containers: 1, max_containers: 1 } },
    },
  });
});
afterAll(() => gw?.shutdown());

const headers = { 'Infergate-Key': 'perf', 'Infergate-Secret': SECRET };
const stats = async (model: string) => (await (await fetch(`${gw.url}/v2/models/${model}/stats`, { headers })).json()) as Record<string, number>;

describe('infergate perf', () => {
  it('loads a tensor model at each concurrency with random rows: every request answered, as the gateway counts them', async () => {
    const before = await stats('mlp');
    const result = await perf({ url: gw.url, model: 'mlp', concurrency: [1, 4], seconds: 0.5, headers });
    expect(result.kind).toBe('tensor');
    expect(result.rows.map((r) => r.concurrency)).toEqual([1, 4]);
    for (const r of result.rows) {
      expect(r.errors).toEqual({});
      expect(r.requests).toBeGreaterThan(10);
      expect(r.latencyMs.p50).toBeGreaterThan(0);
      expect(r.latencyMs.p50).toBeLessThanOrEqual(r.latencyMs.p99);
    }
    // (plus the warm-up request of each client: 1 + 4)
    const sent = result.rows.reduce((sum, r) => sum + r.requests, 0) + 5;
    expect((await stats('mlp')).requests - before.requests).toBe(sent);
  });

  it('streams completions from a generative model: time to first token, gaps, and every stream max_tokens long', async () => {
    const before = await stats('tiny-gpt');
    const result = await perf({ url: gw.url, model: 'tiny-gpt', concurrency: [2], seconds: 0.8, maxTokens: 12, promptTokens: 8, headers });
    expect(result.kind).toBe('generative');
    const [row] = result.rows;
    expect(row.errors).toEqual({});
    expect(row.requests).toBeGreaterThan(2);
    expect(row.ttftMs?.p50).toBeGreaterThan(0);
    expect(row.ttftMs?.p50).toBeLessThan(row.latencyMs.p50);
    expect(row.interTokenMs?.p50).toBeGreaterThan(0);
    const after = await stats('tiny-gpt');
    expect(after.tokens - before.tokens).toBe((row.requests + 2) * 12); // (ignore_eos: each exactly max_tokens)
    // (over the run's time: its window, and the last streams' ends after it)
    expect(row.outputTokensPerS).toBeGreaterThan(0);
    expect(row.outputTokensPerS).toBeLessThanOrEqual(Math.round((row.requests * 12) / 0.8));
    // Through chat completions too (the prompt laid out as a chat).
    const chatBefore = await stats('tiny-gpt');
    const chat = await perf({ url: gw.url, model: 'tiny-gpt', endpoint: 'chat', concurrency: [1], seconds: 0.4, maxTokens: 6, headers });
    expect(chat.rows[0].errors).toEqual({});
    expect(chat.rows[0].ttftMs?.p50).toBeGreaterThan(0);
    expect((await stats('tiny-gpt')).tokens - chatBefore.tokens).toBe((chat.rows[0].requests + 1) * 6);
  });

  it('in an open loop sends each request when due, whatever the answers: past capacity the queue shows in latency', async () => {
    const before = await stats('mlp');
    const result = await perf({ url: gw.url, model: 'mlp', concurrency: [], requestRates: [40, 120], seconds: 0.5, headers });
    expect(result.rows.map((r) => [r.requestRate, r.requests, r.errors])).toEqual([
      [40, 20, {}],
      [120, 60, {}],
    ]);
    expect((await stats('mlp')).requests - before.requests).toBe(20 + 60 + 2); // (a warm-up request each)
    for (const r of result.rows) expect(r.requestsPerS).toBeLessThanOrEqual(r.requestRate as number);
    // Past the server's capacity the queue grows, and latency counted from when each request was due shows it; a
    // closed loop of one client sees the service time alone.
    const closed = await perf({ url: gw.url, model: 'slow', concurrency: [1], seconds: 0.5, headers });
    const service = closed.rows[0].latencyMs.p50;
    // Ten times the one-client rate: the service time measured on a loaded machine can be several times its time a
    // moment later (CI once measured 86 ms, then served 3× that rate without a queue), so the overload must be ample.
    const rate = 10_000 / service;
    const open = await perf({ url: gw.url, model: 'slow', concurrency: [], requestRates: [rate], seconds: 0.25, headers });
    expect(open.rows[0].errors).toEqual({});
    expect(open.rows[0].latencyMs.p90).toBeGreaterThan(4 * service);
    // (answered below the rate offered: the server's own time is under a client's round trip, so its capacity is
    // above 1000 / service — up to 1.8× that on a busy 2-core machine — but well under ten times it)
    expect(open.rows[0].requestsPerS).toBeLessThan(0.9 * rate);
  });

  it('deals a load over worker threads (--threads): each client, request due and stream counted once', async () => {
    const before = await stats('mlp');
    const closed = await perf({ url: gw.url, model: 'mlp', concurrency: [3], seconds: 0.5, headers, threads: 2 });
    expect(closed.rows[0]).toMatchObject({ concurrency: 3, errors: {} });
    expect(closed.rows[0].requests).toBeGreaterThan(10);
    const open = await perf({ url: gw.url, model: 'mlp', concurrency: [], requestRates: [60], seconds: 0.5, headers, threads: 3 });
    expect(open.rows.map((r) => [r.requestRate, r.requests, r.errors])).toEqual([[60, 30, {}]]);
    // (a warm-up request per client: 3 closed-loop clients, then one per thread)
    expect((await stats('mlp')).requests - before.requests).toBe(closed.rows[0].requests + 3 + 30 + 3);
    const gptBefore = await stats('tiny-gpt');
    const streams = await perf({ url: gw.url, model: 'tiny-gpt', concurrency: [2], seconds: 0.5, maxTokens: 5, headers, threads: 2 });
    expect(streams.rows[0].errors).toEqual({});
    expect((await stats('tiny-gpt')).tokens - gptBefore.tokens).toBe((streams.rows[0].requests + 2) * 5);
    // A thread that cannot load is said, as one thread's error is.
    await expect(perf({ url: gw.url, model: 'mlp', concurrency: [2], seconds: 0.2, headers, threads: 2, shapes: { x: [-1, 64] } })).rejects.toThrow(
      /dimensions must not be negative/,
    );
  });

  it("loads a text encoder through /v1/embeddings (genai-perf's embeddings endpoint), texts a request each counted", async () => {
    const before = await stats('tiny-embed');
    const result = await perf({
      url: gw.url,
      model: 'tiny-embed',
      endpoint: 'embeddings',
      texts: 3,
      promptTokens: 6,
      concurrency: [2],
      seconds: 0.5,
      headers,
      threads: 2,
    });
    expect(result.kind).toBe('embeddings');
    expect(result.rows[0].errors).toEqual({});
    expect(result.rows[0].requests).toBeGreaterThan(5);
    expect(result.rows[0].textsPerS).toBe(Math.round(result.rows[0].requestsPerS * 3));
    // (each text is a request to the model; the numbered texts miss any cache)
    expect((await stats('tiny-embed')).requests - before.requests).toBe((result.rows[0].requests + 2) * 3);
    // A generative model is not a text encoder; a model that does not embed answers each request with its refusal.
    await expect(perf({ url: gw.url, model: 'tiny-gpt', endpoint: 'embeddings', concurrency: [1], seconds: 0.2, headers })).rejects.toThrow(/is generative/);
    const refused = await perf({ url: gw.url, model: 'mlp', endpoint: 'embeddings', concurrency: [1], seconds: 0.2, headers });
    expect(Object.keys(refused.rows[0].errors)).toEqual(['404']);
  });

  it('loads a tensor model over gRPC too (ModelInfer, the key as metadata), refusals by their status', async () => {
    const grpc = `127.0.0.1:${gw.grpcPort}`;
    const before = await stats('mlp');
    const result = await perf({ url: gw.url, grpc, model: 'mlp', concurrency: [2], seconds: 0.4, headers });
    expect(result.rows[0].errors).toEqual({});
    expect((await stats('mlp')).requests - before.requests).toBe(result.rows[0].requests + 2);
    // (over threads too: each its own channels)
    const threaded = await perf({ url: gw.url, grpc, model: 'mlp', concurrency: [2], seconds: 0.3, headers, threads: 2 });
    expect(threaded.rows[0].errors).toEqual({});
    expect(threaded.rows[0].requests).toBeGreaterThan(5);
    const wrong = await perf({ url: gw.url, grpc, model: 'mlp', concurrency: [1], seconds: 0.2, headers, shapes: { x: [1, 3] } });
    expect(Object.keys(wrong.rows[0].errors)).toEqual(['INVALID_ARGUMENT']);
    await expect(perf({ url: gw.url, grpc, model: 'tiny-gpt', concurrency: [1], seconds: 0.2, headers })).rejects.toThrow(
      /generative: its tokens stream over HTTP/,
    );
    await expect(perf({ url: gw.url, grpc, model: 'mlp', concurrency: [1], seconds: 0.2 })).rejects.toThrow(/UNAUTHENTICATED/);
  });

  it('counts refusals as errors by status, and says why it cannot start', async () => {
    const refused = await perf({ url: gw.url, model: 'mlp', concurrency: [1], seconds: 0.2, headers, shapes: { x: [1, 63] } });
    expect(refused.rows[0].requests).toBe(0);
    expect(Object.keys(refused.rows[0].errors)).toEqual(['400']);
    await expect(perf({ url: gw.url, model: 'nope', concurrency: [1], seconds: 0.2, headers })).rejects.toThrow(/GET \/v2\/models\/nope: 404/);
    await expect(perf({ url: gw.url, model: 'mlp', concurrency: [1], seconds: 0.2 })).rejects.toThrow(/401/);
  });

  it('loads an HTTPS gateway whose certificate it is given (--ca), and says why not without it', async () => {
    const files = await selfSignedTls();
    const tls = await startTestGateway({
      server: { tls: { cert: files.cert, key: files.key } },
      models: { mlp: { path: `${MODELS}mlp.onnx`, device: 'cpu', scaling: { min_containers: 1 } } },
    });
    try {
      const url = tls.url.replace('http:', 'https:');
      const result = await perf({ url, model: 'mlp', concurrency: [2], seconds: 0.3, ca: files.ca });
      expect(result.rows[0].errors).toEqual({});
      expect(result.rows[0].requests).toBeGreaterThan(5);
      await expect(perf({ url, model: 'mlp', concurrency: [1], seconds: 0.2 })).rejects.toThrow(/self-signed certificate/);
    } finally {
      await tls.shutdown();
    }
  });

  it('prints a table from the command line', async () => {
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        join(ROOT, 'src/cli.ts'),
        'perf',
        '-u',
        gw.url,
        '-m',
        'mlp',
        '--concurrency',
        '1,2',
        '--seconds',
        '0.3',
        '-H',
        'Infergate-Key: perf',
        '-H',
        `Infergate-Secret: ${SECRET}`,
      ],
      { cwd: ROOT },
    );
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    const code = await new Promise((resolve) => child.once('exit', resolve));
    expect(code).toBe(0);
    const lines = out.trim().split('\n');
    expect(lines[0]).toBe(`mlp (tensor) at ${gw.url}, 0.3 s per concurrency:`);
    expect(lines[1].trim().split(/\s+/)).toEqual(['concurrency', 'requests/s', 'p50', 'ms', 'p90', 'ms', 'p99', 'ms', 'errors']);
    expect(lines.slice(2).map((l) => l.trim().split(/\s+/)[0])).toEqual(['1', '2']);
  });
});
