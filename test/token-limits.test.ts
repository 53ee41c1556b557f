import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODELS, startTestGateway } from './helpers.js';

// Tokens a minute per caller (OpenAI's TPM): a generation takes its prompt and max_tokens when it starts, and gives
// back what it did not generate. Real replicas of tiny-gpt; two keys, each with its own bucket.
const KEYS = { alice: 'alice-secret-long-enough-1', bob: 'bob-secret-long-enough-22', carol: 'carol-secret-long-enough-3' };
const as = (who: keyof typeof KEYS) => ({ 'infergate-key': who, 'infergate-secret': KEYS[who] });
const TPM = 100;
let gw: Awaited<ReturnType<typeof startTestGateway>>;
beforeAll(async () => {
  gw = await startTestGateway({
    auth: { default: 'key', keys: Object.entries(KEYS).map(([id, secret]) => ({ id, secret })), rate_limit: { tokens_per_minute: TPM } },
    models: { 'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', scaling: { min_containers: 1 } } },
  } as never);
});
afterAll(() => gw?.shutdown());

const complete = (who: keyof typeof KEYS, maxTokens: number, extra: object = {}, signal?: AbortSignal) =>
  fetch(`${gw.url}/v1/completions`, {
    method: 'POST',
    headers: as(who),
    body: JSON.stringify({ model: 'tiny-gpt', prompt: 'Hello', max_tokens: maxTokens, ignore_eos: true, temperature: 0, ...extra }),
    signal,
  });
const left = (res: Response) => Number(res.headers.get('x-ratelimit-remaining-tokens'));

describe('tokens a minute (rate_limit.tokens_per_minute)', () => {
  it('takes a generation’s prompt and max_tokens, refuses one that does not fit with a 429, per caller', async () => {
    const first = await complete('alice', 40);
    expect(first.status).toBe(200);
    const { usage } = await first.json();
    expect(usage.completion_tokens).toBe(40);
    expect(first.headers.get('x-ratelimit-limit-tokens')).toBe(String(TPM));
    // (the bucket refills at TPM/60 a second: a token or two may have come back meanwhile)
    const remaining = TPM - usage.prompt_tokens - 40;
    expect(left(first)).toBeGreaterThanOrEqual(remaining);
    expect(left(first)).toBeLessThanOrEqual(remaining + 3);
    // More than is left: 429 with Retry-After, OpenAI's error object, and the headers saying why.
    const refused = await complete('alice', 70);
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    expect((await refused.json()).error.message).toMatch(
      /too many tokens from this caller: 100 a minute; this request may use 71 \(its prompt and max_tokens\)/,
    );
    // Another caller has a bucket of its own.
    expect((await complete('bob', 70)).status).toBe(200);
    // More than a minute's worth can never fit: said so, without a Retry-After to wait for.
    const never = await complete('bob', 200);
    expect(never.status).toBe(429);
    expect(never.headers.get('retry-after')).toBeNull();
    expect((await never.json()).error.message).toMatch(/may use 201 tokens .* more than this caller's 100 a minute: lower max_tokens/);
  });

  it('gives back what a generation did not generate (a client gone after its first token)', async () => {
    // Carol's bucket is full (100): a stream takes 51 and its client goes after the first piece.
    const client = new AbortController();
    const stream = await complete('carol', 50, { stream: true }, client.signal);
    expect(stream.status).toBe(200);
    const reader = (stream.body as ReadableStream<Uint8Array>).getReader();
    await reader.read(); // a first piece
    client.abort();
    await reader.cancel().catch(() => {});
    // Without the ~49 it did not generate given back, ~49 would be left: a request of 91 fits only with them.
    await expect.poll(async () => (await complete('carol', 90)).status, { timeout: 10_000 }).toBe(200);
  });
});

describe('requests at once (rate_limit.max_concurrent)', () => {
  let limited: Awaited<ReturnType<typeof startTestGateway>>;
  beforeAll(async () => {
    limited = await startTestGateway({
      auth: { default: 'key', keys: Object.entries(KEYS).map(([id, secret]) => ({ id, secret })), rate_limit: { max_concurrent: 2 } },
      models: { 'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', scaling: { min_containers: 1 } } },
    } as never);
  });
  afterAll(() => limited?.shutdown());
  const send = (who: keyof typeof KEYS, maxTokens: number, stream: boolean, signal?: AbortSignal) =>
    fetch(`${limited.url}/v1/completions`, {
      method: 'POST',
      headers: as(who),
      body: JSON.stringify({ model: 'tiny-gpt', prompt: 'Hello', max_tokens: maxTokens, ignore_eos: true, stream }),
      signal,
    });

  it('counts a stream until it ends: a caller past its limit gets a 429, others do not; a stream gone frees its place', async () => {
    const first = new AbortController();
    const second = new AbortController();
    const streams = [await send('alice', 400, true, first.signal), await send('alice', 400, true, second.signal)];
    expect(streams.map((r) => r.status)).toEqual([200, 200]);
    const third = await send('alice', 1, false);
    expect(third.status).toBe(429);
    expect(third.headers.get('retry-after')).toBe('1');
    expect((await third.json()).error.message).toMatch(/too many requests at once from this caller: at most 2 in flight/);
    expect((await send('bob', 1, false)).status).toBe(200);
    // One stream's client goes: its place is free again.
    first.abort();
    await expect.poll(async () => (await send('alice', 1, false)).status, { timeout: 10_000 }).toBe(200);
    second.abort();
    // Whole answers free their place once answered: one after another, never more than the limit.
    await expect.poll(async () => (await send('alice', 1, false)).status, { timeout: 10_000 }).toBe(200);
    for (let i = 0; i < 4; i++) expect((await send('alice', 1, false)).status).toBe(200);
  });

  it('counts an asynchronous call once, waited for or not (server.async_after_s): its request hands its place over', async () => {
    const calls = await startTestGateway({
      server: { async_after_s: 5 },
      auth: { default: 'key', keys: Object.entries(KEYS).map(([id, secret]) => ({ id, secret })), rate_limit: { max_concurrent: 1 } },
      models: { 'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', scaling: { min_containers: 1 } } },
    } as never);
    try {
      const body = JSON.stringify({ model: 'tiny-gpt', prompt: 'Hello', max_tokens: 300, ignore_eos: true });
      const post = (prefer?: string) => fetch(`${calls.url}/v1/completions`, { method: 'POST', headers: { ...as('alice'), ...(prefer && { prefer }) }, body });
      expect((await post()).status).toBe(200); // waited for: one place, not the waiting request's and its call's
      const detached = await post('respond-async');
      expect(detached.status).toBe(202);
      // The call runs on, holding the caller's one place: another request waits for it to be done.
      expect((await post()).status).toBe(429);
      const status = (await detached.json()).status_url;
      // ...but its caller may look at it meanwhile: collecting and cancelling take no place.
      expect((await fetch(`${calls.url}${status}`, { headers: as('alice') })).status).toBe(202);
      await expect.poll(async () => (await fetch(`${calls.url}${status}`, { headers: as('alice') })).status, { timeout: 20_000 }).toBe(200);
      await expect.poll(async () => (await post()).status, { timeout: 10_000 }).toBe(200);

      // A background response (OpenAI's background mode) is a call too: its request hands its place over, so it runs
      // (it failed rate_limited), is looked at and cancelled while it holds the place, and a streamed one starts.
      const respond = (body: object) =>
        fetch(`${calls.url}/v1/responses`, { method: 'POST', headers: as('alice'), body: JSON.stringify({ model: 'tiny-gpt', input: 'Hello', ...body }) });
      const { id } = await (await respond({ max_output_tokens: 300, background: true })).json();
      const look = async () => (await (await fetch(`${calls.url}/v1/responses/${id}`, { headers: as('alice') })).json()).status;
      await expect.poll(look, { timeout: 10_000 }).not.toBe('queued');
      expect(['in_progress', 'completed']).toContain(await look());
      expect((await fetch(`${calls.url}/v1/responses/${id}/cancel`, { method: 'POST', headers: as('alice') })).status).toBe(200);
      await expect.poll(async () => (await post()).status, { timeout: 10_000 }).toBe(200);
      const streamed = new AbortController();
      const events = await fetch(`${calls.url}/v1/responses`, {
        method: 'POST',
        headers: as('alice'),
        body: JSON.stringify({ model: 'tiny-gpt', input: 'Hello', max_output_tokens: 300, background: true, stream: true }),
        signal: streamed.signal,
      });
      expect(events.status).toBe(200);
      expect(events.headers.get('content-type')).toMatch(/^text\/event-stream/);
      streamed.abort();
    } finally {
      await calls.shutdown();
    }
  });
});
