import { type AddressInfo, createServer } from 'node:net';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODELS, startTestGateway } from './helpers.js';

// server.sse_keepalive_s: a token stream whose first token is slow to come (here: a queue behind a sequence that
// takes the model's only slot, or a cold start) is opened anyway and kept alive by comment lines, which clients skip.
let gw: Awaited<ReturnType<typeof startTestGateway>>;
// A remote replica's address that takes connections and never says it is ready: a replica forever starting.
const silent = createServer(() => {});
beforeAll(async () => {
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const one = { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', scaling: { min_containers: 1 } };
  gw = await startTestGateway({
    server: { sse_keepalive_s: 0.1 },
    models: {
      'one-slot': { ...one, batching: { max_batch_size: 1 } },
      // (scaled to zero: its first request waits for a replica to start — here, for ever — past its queue deadline)
      cold: { ...one, batching: { timeout_ms: 1000 }, scaling: { min_containers: 0 }, remote: [`127.0.0.1:${(silent.address() as AddressInfo).port}`] },
    },
  });
});
afterAll(async () => {
  await gw?.shutdown();
  silent.close();
});

const post = (path: string, body: object, signal?: AbortSignal) =>
  fetch(`${gw.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal });

/** A long stream that takes the model's one slot (until it ends, or the returned function ends it). */
async function occupy(model: string) {
  const abort = new AbortController();
  const res = await post('/v1/completions', { model, prompt: 'Hold', max_tokens: 480, ignore_eos: true, stream: true }, abort.signal);
  expect(res.status).toBe(200);
  return () => abort.abort();
}

describe('token streams waiting for their first token', () => {
  it('open after sse_keepalive_s with comment lines, then stream as ever when the tokens come', async () => {
    const release = await occupy('one-slot');
    const started = performance.now();
    const res = await post('/v1/completions', { model: 'one-slot', prompt: 'Wait', max_tokens: 5, stream: true });
    expect(res.status).toBe(200); // (opened while still queued)
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    let text = '';
    while (!text.includes(': keep-alive\n\n')) {
      const r = await reader.read();
      if (r.done) break;
      text += new TextDecoder().decode(r.value);
    }
    expect(text).toContain(': keep-alive\n\n');
    expect(performance.now() - started).toBeGreaterThan(80);
    expect(text).not.toContain('data:');
    release();
    for (let r = await reader.read(); !r.done; r = await reader.read()) text += new TextDecoder().decode(r.value);
    expect(text.indexOf(': keep-alive')).toBeLessThan(text.indexOf('data: '));
    expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
  });

  it('are read by the SDKs as usual (they skip comments): OpenAI, and Anthropic', async () => {
    const openai = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const anthropic = new Anthropic({ baseURL: gw.url, apiKey: 'unused', maxRetries: 0 });
    let release = await occupy('one-slot');
    setTimeout(() => release(), 600);
    let words = '';
    const stream = await openai.completions.create({ model: 'one-slot', prompt: 'Wait', max_tokens: 5, stream: true, seed: 1 });
    for await (const chunk of stream) words += chunk.choices[0]?.text ?? '';
    const alone = await openai.completions.create({ model: 'one-slot', prompt: 'Wait', max_tokens: 5, seed: 1 });
    expect(words).toBe(alone.choices[0].text);
    release = await occupy('one-slot');
    setTimeout(() => release(), 600);
    const message = await anthropic.messages.stream({ model: 'one-slot', max_tokens: 5, messages: [{ role: 'user', content: 'Wait' }] }).finalMessage();
    expect(message.stop_reason).toBe('max_tokens');
  });

  it('once opened, carry an error before the first token in the stream (here: no replica up by the deadline, 503)', async () => {
    const res = await post('/v1/chat/completions', { model: 'cold', messages: [{ role: 'user', content: 'Wait' }], max_tokens: 5, stream: true });
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toContain(': keep-alive\n\n'); // (after the chat's opening chunk, sent as the stream opens)
    expect(text).toMatch(
      /data: \{"error":\{"message":"model cold has no ready replica: waited \d+ ms for one to start","type":"server_error","param":null,"code":"no_replica"\}\}/,
    );
    expect(text).not.toContain('[DONE]');
  });
});
