import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadService } from '../src/gateway/grpc/proto.js';
import { binaryBody, infer, MODELS, random, startTestGateway } from './helpers.js';

// Asynchronous inference: Prefer: respond-async (RFC 7240) answers 202 and a call to collect later; with
// server.async_after_s a request still running is answered 303 to its call (Modal's long-request redirect).
const KEYS = { alice: 'alice-secret-long-enough-1', bob: 'bob-secret-long-enough-22' };
const as = (who: keyof typeof KEYS) => ({ 'infergate-key': who, 'infergate-secret': KEYS[who] });
let gw: Awaited<ReturnType<typeof startTestGateway>>;
beforeAll(async () => {
  gw = await startTestGateway({
    server: { async_after_s: 0.4, async_keep_s: 2, grpc_port: 0 },
    auth: { default: 'key', keys: Object.entries(KEYS).map(([id, secret]) => ({ id, secret })) },
    models: {
      mlp: { path: `${MODELS}mlp.onnx`, device: 'cpu', scaling: { min_containers: 1 } },
      // A lone request waits 1.5 s for company: slow enough to be collected later.
      waits: { path: `${MODELS}mlp.onnx`, device: 'cpu', batching: { max_batch_size: 8, wait_ms: 1500 }, scaling: { min_containers: 1 } },
      tiny: { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', scaling: { min_containers: 1 } },
      // One sequence at a time: a second one's first token waits for the first to end.
      single: { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', batching: { max_batch_size: 1 }, scaling: { min_containers: 1 } },
    },
  } as never);
});
afterAll(() => gw?.shutdown());

const x = (seed: number) => ({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: random(64, seed) }] });
const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${gw.url}${path}`, { method: 'POST', body: JSON.stringify(body), headers: { ...as('alice'), ...headers }, redirect: 'manual' });
const later = { prefer: 'respond-async' };
const collect = (location: string, who: keyof typeof KEYS = 'alice') => fetch(`${gw.url}${location}`, { headers: as(who), redirect: 'manual' });
const direct = async (model: string, seed: number) => (await (await post(`/v2/models/${model}/infer`, x(seed))).json()).outputs[0].data;

describe('asynchronous inference', () => {
  it('answers Prefer: respond-async with 202 and a call whose answer is the request’s own, once ready', async () => {
    const res = await post('/v2/models/waits/infer', x(1), later);
    expect(res.status).toBe(202);
    expect(res.headers.get('preference-applied')).toBe('respond-async');
    const location = res.headers.get('location') as string;
    expect(location).toMatch(/^\/v2\/calls\/[0-9a-f-]{36}$/);
    expect(await res.json()).toEqual({ id: location.slice(10), status: 'in_progress', status_url: location });
    // Not ready yet (it waits 1.5 s for company): come back later. /metrics counts it running.
    const early = await collect(location);
    expect(early.status).toBe(202);
    expect(early.headers.get('retry-after')).toBe('1');
    const gauge = async (state: string) =>
      Number(new RegExp(`infergate_async_calls\\{state="${state}"\\} (\\d+)`).exec(await (await fetch(`${gw.url}/metrics`)).text())?.[1]);
    expect(await gauge('running')).toBeGreaterThanOrEqual(1);
    // Waiting for it: the model's answer, as the request itself would have had it.
    const done = await collect(`${location}?wait_s=10`);
    expect(done.status).toBe(200);
    expect(done.headers.get('x-batch-size')).toBe('1');
    expect((await done.json()).outputs[0].data).toEqual(await direct('mlp', 1));
    // Kept for async_keep_s: read again, then gone.
    expect((await collect(location)).status).toBe(200);
    expect(await gauge('answered')).toBeGreaterThanOrEqual(1);
    await expect.poll(async () => (await collect(location)).status, { timeout: 5000 }).toBe(404);
  });

  it('keeps binary answers byte for byte, OpenAI answers and errors as the request would have had them', async () => {
    const { body, headers } = binaryBody(
      {
        inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', parameters: { binary_data_size: 256 } }],
        outputs: [{ name: 'probs', parameters: { binary_data: true } }],
      },
      Float32Array.from(random(64, 2)),
    );
    const sent = await fetch(`${gw.url}/v2/models/mlp/infer`, { method: 'POST', body, headers: { ...headers, ...as('alice'), ...later } });
    const answer = await collect(`${sent.headers.get('location')}?wait_s=10`);
    expect(answer.headers.get('content-type')).toBe('application/octet-stream');
    const bytes = new Uint8Array(await answer.arrayBuffer());
    const json = Number(answer.headers.get('inference-header-content-length'));
    expect(Array.from(new Float32Array(bytes.slice(json).buffer))).toEqual(await direct('mlp', 2));

    const completion = await post('/v1/completions', { model: 'tiny', prompt: 'Hello', max_tokens: 4, temperature: 0 }, later);
    const text = await (await collect(`${completion.headers.get('location')}?wait_s=10`)).json();
    expect(text).toMatchObject({ object: 'text_completion', model: 'tiny', usage: { completion_tokens: 4 } });

    const unknown = await post('/v2/models/nope/infer', x(1), later);
    expect(unknown.status).toBe(202); // (answered before the request is looked at)
    const refused = await collect(`${unknown.headers.get('location')}?wait_s=10`);
    expect(refused.status).toBe(404);
    expect((await refused.json()).error).toMatch(/unknown model "nope"/);
  });

  it('redirects a request still running after async_after_s to its call (303), where it can be waited for', async () => {
    // Fast ones are answered as usual, counted once (their call's request, which ran them, is the one measured).
    const answered = async () => {
      const metrics = await (await fetch(`${gw.url}/metrics`)).text();
      const lines = metrics.split('\n').filter((l) => l.startsWith('http_server_request_duration_count') && l.includes('method="POST"'));
      return lines.reduce((n, l) => n + Number(l.split(' ').pop()), 0);
    };
    const before = await answered();
    const fast = await post('/v2/models/mlp/infer', x(3));
    expect(fast.status).toBe(200);
    expect(await answered()).toBe(before + 1);
    const slow = await post('/v2/models/waits/infer', x(3));
    expect(slow.status).toBe(303);
    // (measured under its route, as the request it was: not under the middleware that redirected it)
    const redirects = (await (await fetch(`${gw.url}/metrics`)).text()).split('\n').filter((l) => /^http_server_request_duration_count\{.*303/.test(l));
    expect(redirects).toEqual([expect.stringContaining('http_route="/v2/models/:model/infer"')]);
    const location = slow.headers.get('location') as string;
    expect(location).toMatch(/^\/v2\/calls\/[0-9a-f-]{36}\?wait_s=0\.4$/);
    // Still running after the wait: sent to wait again, as Modal's result URLs chain.
    const again = await collect(location);
    expect(again.status).toBe(303);
    expect(again.headers.get('location')).toBe(location);
    // A client that follows redirects (fetch's default) just gets its answer.
    const followed = await fetch(`${gw.url}/v2/models/waits/infer`, { method: 'POST', body: JSON.stringify(x(4)), headers: as('alice') });
    expect(followed.status).toBe(200);
    expect((await followed.json()).outputs[0].data).toEqual(await direct('mlp', 4));
  });

  it('answers a gRPC call in place however long it takes (no redirect there)', async () => {
    const client = new (loadService('inference.proto', 'inference.GRPCInferenceService'))(`127.0.0.1:${gw.grpcPort}`, grpc.credentials.createInsecure());
    const meta = new grpc.Metadata();
    for (const [k, v] of Object.entries(as('alice'))) meta.set(k, v);
    const request = {
      model_name: 'waits',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 64] }],
      raw_input_contents: [Buffer.from(Float32Array.from(random(64, 7)).buffer)],
    };
    try {
      const reply = await new Promise<{ raw_output_contents: Buffer[] }>((resolve, reject) =>
        (client as unknown as Record<string, (r: object, m: grpc.Metadata, cb: (e: Error | null, r: never) => void) => void>).ModelInfer(
          request,
          meta,
          (e, r) => (e ? reject(e) : resolve(r)),
        ),
      );
      expect(Array.from(new Float32Array(new Uint8Array(reply.raw_output_contents[0]).buffer))).toEqual(await direct('mlp', 7));
    } finally {
      client.close();
    }
  });

  it('lets a streamed answer (SSE) through as it starts, however long it goes on', async () => {
    // (500 tokens take over a second here, past async_after_s: read whole first, it would have been redirected)
    const res = await post('/v1/completions', { model: 'tiny', prompt: 'Once', max_tokens: 500, temperature: 0, ignore_eos: true, stream: true });
    expect(res.status, await res.clone().text()).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const text = await res.text();
    expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);

    // A stream whose first token waits in the queue past async_after_s (the one slot busy) starts when it comes.
    const busy = post('/v1/completions', { model: 'single', prompt: 'Once', max_tokens: 500, ignore_eos: true });
    await expect.poll(async () => (await (await fetch(`${gw.url}/v2/models/single/stats`, { headers: as('alice') })).json()).active).toBe(1);
    const waited = await post('/v1/completions', { model: 'single', prompt: 'Twice', max_tokens: 2, stream: true });
    expect(waited.status).toBe(200);
    expect(waited.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect((await waited.text()).trimEnd().endsWith('data: [DONE]')).toBe(true);
    expect((await busy).status).toBe(303); // (the whole answer, still running, was redirected)
  });

  it('is the caller’s own: another caller’s id is unknown to them, and a call can be cancelled', async () => {
    const res = await post('/v2/models/waits/infer', x(5), later);
    const location = res.headers.get('location') as string;
    expect((await collect(location, 'bob')).status).toBe(404);
    expect((await fetch(`${gw.url}${location}`)).status).toBe(401);
    expect((await fetch(`${gw.url}${location}`, { method: 'DELETE', headers: as('bob') })).status).toBe(404);
    const cancelled = await fetch(`${gw.url}${location}`, { method: 'DELETE', headers: as('alice') });
    expect(await cancelled.json()).toEqual({ id: location.slice(10), status: 'cancelled' });
    expect((await collect(location)).status).toBe(404);
    // Its request was cancelled in the queue, not run.
    await expect.poll(async () => (await (await fetch(`${gw.url}/v2/models/waits/stats`, { headers: as('alice') })).json()).shed.cancelled).toBe(1);
    // Bad input on the routes themselves.
    expect((await collect('/v2/calls/not-a-call')).status).toBe(404);
    expect((await collect(`${location}?wait_s=-1`)).status).toBe(400);
    expect((await infer(gw.url, 'mlp', x(6).inputs)).status).toBe(401); // (the test's infer sends no key: refused as ever)
  });

  it('refuses a call with a 503 when the answers kept would pass async_max_mb, and goes on serving', async () => {
    const small = await startTestGateway({
      server: { async_max_mb: 0.001 }, // 1 KiB
      models: { identity: { path: `${MODELS}identity.onnx`, device: 'cpu', scaling: { min_containers: 1 } } },
    });
    try {
      const body = (n: number) => JSON.stringify({ inputs: [{ name: 'x', shape: [1, n], datatype: 'FP32', data: new Array(n).fill(1) }] });
      const send = (n: number, headers: Record<string, string> = later) =>
        fetch(`${small.url}/v2/models/identity/infer`, { method: 'POST', body: body(n), headers });
      const big = await send(512);
      expect(big.status).toBe(503);
      expect((await big.json()).error).toMatch(/server\.async_max_mb/);
      expect((await send(4)).status).toBe(202);
      expect((await send(512, {})).status).toBe(200);
    } finally {
      await small.shutdown();
    }
  });
});
