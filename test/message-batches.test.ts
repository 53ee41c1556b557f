import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Anthropic, { type APIError } from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODELS, startTestGateway } from './helpers.js';

// Anthropic's Message Batches API with the official @anthropic-ai/sdk client, on the Batch API's batches.
const KEYS = { jobs: 'a-long-enough-shared-secret', other: 'another-long-enough-secret' };
const SECRET = KEYS.jobs;
const models = { 'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', batching: { max_batch_size: 16 }, scaling: { min_containers: 1 } } };
let gw: Awaited<ReturnType<typeof startTestGateway>>;
let client: Anthropic;
beforeAll(async () => {
  gw = await startTestGateway({ auth: { default: 'key', keys: Object.entries(KEYS).map(([id, secret]) => ({ id, secret })) }, models });
  client = new Anthropic({ baseURL: gw.url, apiKey: SECRET, maxRetries: 0 }); // (a key's secret alone, as x-api-key)
});
afterAll(() => gw?.shutdown());

const ask = (content: string, max_tokens = 6) => ({ model: 'tiny-gpt', max_tokens, temperature: 0, messages: [{ role: 'user' as const, content }] });

async function ended(c: Anthropic, id: string) {
  for (let i = 0; i < 600; i++) {
    const b = await c.messages.batches.retrieve(id);
    if (b.processing_status === 'ended') return b;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`batch ${id} did not end`);
}
const resultsOf = async (c: Anthropic, id: string) => {
  const results: Anthropic.Messages.MessageBatchIndividualResponse[] = [];
  for await (const r of await c.messages.batches.results(id)) results.push(r);
  return results;
};

describe("Anthropic's Message Batches (/v1/messages/batches) with the official client", () => {
  it('runs each request as /v1/messages answers it sent directly; an invalid one is an errored result, the others go on', async () => {
    const prompts = ['Once upon a time', 'The fox', 'Hello'];
    const batch = await client.messages.batches.create({
      requests: [...prompts.map((p, i) => ({ custom_id: `req-${i}`, params: ask(p) })), { custom_id: 'bad', params: { ...ask('x'), max_tokens: 0 } }],
    });
    expect(batch).toMatchObject({ type: 'message_batch', processing_status: 'in_progress', results_url: null });
    expect(batch.id).toMatch(/^msgbatch_/);
    const done = await ended(client, batch.id);
    expect(done.request_counts).toEqual({ processing: 0, succeeded: 3, errored: 1, canceled: 0, expired: 0 });
    expect(done.ended_at).not.toBeNull();
    const results = await resultsOf(client, batch.id);
    expect(results.map((r) => r.custom_id)).toEqual(['req-0', 'req-1', 'req-2', 'bad']);
    for (const [i, p] of prompts.entries()) {
      const direct = await client.messages.create(ask(p));
      const result = results[i].result as Anthropic.Messages.MessageBatchSucceededResult;
      expect(result.type).toBe('succeeded');
      expect(result.message.content).toEqual(direct.content);
      expect(result.message.usage).toMatchObject({ input_tokens: direct.usage.input_tokens, output_tokens: direct.usage.output_tokens });
    }
    expect(results[3].result).toMatchObject({ type: 'errored', error: { type: 'error', error: { type: 'invalid_request_error' } } });
    // Listed (the newest first), not among the Batch API's batches nor its files; deleted, gone.
    const listed = [];
    for await (const b of client.messages.batches.list()) listed.push(b.id);
    expect(listed[0]).toBe(batch.id);
    const openai = { 'x-api-key': SECRET };
    const openaiBatches = await (await fetch(`${gw.url}/v1/batches`, { headers: openai })).json();
    expect(openaiBatches.data.map((b: { id: string }) => b.id)).not.toContain(batch.id);
    expect((await (await fetch(`${gw.url}/v1/files`, { headers: openai })).json()).data).toEqual([]);
    expect(await client.messages.batches.delete(batch.id)).toEqual({ id: batch.id, type: 'message_batch_deleted' });
    await expect(client.messages.batches.retrieve(batch.id)).rejects.toMatchObject({ status: 404 });
  });

  it('cancels: requests not yet sent are canceled results; counts add up', async () => {
    const requests = Array.from({ length: 60 }, (_, i) => ({ custom_id: `long-${i}`, params: ask(`Tell story ${i}`, 64) }));
    const batch = await client.messages.batches.create({ requests });
    // Still processing: neither its results nor a delete yet.
    await expect(client.messages.batches.delete(batch.id)).rejects.toMatchObject({ status: 400, error: { error: { type: 'invalid_request_error' } } });
    await expect(client.messages.batches.results(batch.id)).rejects.toThrow(/results_url/); // (the client's own check)
    const results400 = await fetch(`${gw.url}/v1/messages/batches/${batch.id}/results`, { headers: { 'x-api-key': SECRET } });
    expect(results400.status).toBe(400);
    const cancelling = await client.messages.batches.cancel(batch.id);
    expect(cancelling.cancel_initiated_at).not.toBeNull();
    expect(['canceling', 'ended']).toContain(cancelling.processing_status);
    const done = await ended(client, batch.id);
    const { succeeded, errored, canceled, processing } = done.request_counts;
    expect(canceled).toBeGreaterThan(0);
    expect([succeeded + errored + canceled, processing, errored]).toEqual([60, 0, 0]);
    const results = await resultsOf(client, batch.id);
    expect(results).toHaveLength(60);
    expect(results.filter((r) => r.result.type === 'canceled')).toHaveLength(canceled);
    expect(results.filter((r) => r.result.type === 'succeeded')).toHaveLength(succeeded);
  });

  it('refuses a batch that does not check out, naming why, and keeps each caller’s batches its own', async () => {
    const refused = async (requests: unknown) => (await client.messages.batches.create({ requests } as never).catch((e: APIError) => e)) as APIError;
    for (const [requests, words] of [
      [[], 'at least one request'],
      [[{ custom_id: 'a b', params: ask('x') }], 'custom_id'],
      [[{ custom_id: 'a', params: { ...ask('x'), stream: true } }], 'not streamed'],
      [
        [
          { custom_id: 'a', params: ask('x') },
          { custom_id: 'a', params: ask('y') },
        ],
        'used twice',
      ],
    ] as const) {
      const e = await refused(requests);
      expect(e.status).toBe(400);
      expect(e.error).toMatchObject({ type: 'error', error: { type: 'invalid_request_error', message: expect.stringContaining(words) } });
    }
    const mine = await client.messages.batches.create({ requests: [{ custom_id: 'a', params: ask('x') }] });
    const other = new Anthropic({ baseURL: gw.url, apiKey: KEYS.other, maxRetries: 0 });
    await expect(other.messages.batches.retrieve(mine.id)).rejects.toMatchObject({ status: 404 });
    const theirs = [];
    for await (const b of other.messages.batches.list()) theirs.push(b);
    expect(theirs).toEqual([]);
    await ended(client, mine.id);
  });

  it('pages through the list as the client does, newest first', async () => {
    const made: string[] = [];
    for (let i = 0; i < 5; i++) made.push((await client.messages.batches.create({ requests: [{ custom_id: 'a', params: ask(`p${i}`, 1) }] })).id);
    const all = [];
    for await (const b of client.messages.batches.list({ limit: 2 })) all.push(b.id); // (the client follows after_id)
    expect(all.slice(0, 5)).toEqual([...made].reverse());
    const page = await client.messages.batches.list({ limit: 2, before_id: made[2] });
    expect(page.data.map((b) => b.id)).toEqual([made[4], made[3]]);
    for (const id of made) await ended(client, id);
  });
});

describe('a message batch kept on disk (server.batch_dir)', () => {
  it('is there after a restart, its results too', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'infergate-message-batches-'));
    const first = await startTestGateway({ server: { batch_dir: dir }, models });
    let id: string;
    let before: Anthropic.Messages.MessageBatchIndividualResponse[];
    try {
      const c = new Anthropic({ baseURL: first.url, apiKey: 'unused', maxRetries: 0 });
      id = (await c.messages.batches.create({ requests: [{ custom_id: 'a', params: ask('Hi') }] })).id;
      await ended(c, id);
      before = await resultsOf(c, id);
    } finally {
      await first.shutdown();
    }
    const second = await startTestGateway({ server: { batch_dir: dir }, models });
    try {
      const c = new Anthropic({ baseURL: second.url, apiKey: 'unused', maxRetries: 0 });
      expect((await c.messages.batches.retrieve(id)).request_counts.succeeded).toBe(1);
      expect(await resultsOf(c, id)).toEqual(before);
      await c.messages.batches.delete(id);
    } finally {
      await second.shutdown();
    }
  });
});
