import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODELS, startTestGateway } from './helpers.js';

// OpenAI's Conversations API with the official openai client: conversations the Responses API continues.
const KEYS = { app: 'a-long-enough-shared-secret', other: 'another-long-enough-secret' };
const models = { 'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', batching: { max_batch_size: 8 }, scaling: { min_containers: 1 } } };
let gw: Awaited<ReturnType<typeof startTestGateway>>;
let client: OpenAI;
beforeAll(async () => {
  gw = await startTestGateway({
    auth: { default: 'key', keys: Object.entries(KEYS).map(([id, secret]) => ({ id, secret })) },
    models,
  });
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: KEYS.app, maxRetries: 0 });
});
afterAll(() => gw?.shutdown());

const ask = { model: 'tiny-gpt', max_output_tokens: 4, temperature: 0 };
const all = async (id: string) => {
  const items = [];
  for await (const item of client.conversations.items.list(id, { order: 'asc', limit: 2 })) items.push(item); // (paged by `after`)
  return items;
};
const until = async (id: string) => {
  for (let i = 0; i < 200; i++) {
    const r = await client.responses.retrieve(id);
    if (r.status !== 'queued' && r.status !== 'in_progress') return r;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`response ${id} did not end`);
};

describe("OpenAI's Conversations API (/v1/conversations) with the official openai client", () => {
  it('is continued by responses as if its items were sent again, each turn adding its input and output', async () => {
    const conversation = await client.conversations.create({ items: [{ role: 'developer', content: 'Be brief.' }], metadata: { topic: 'greeting' } });
    expect(conversation).toMatchObject({ object: 'conversation', metadata: { topic: 'greeting' } });
    expect(conversation.id).toMatch(/^conv_/);
    const first = await client.responses.create({ ...ask, conversation: conversation.id, input: 'Hi' });
    expect(first.conversation).toEqual({ id: conversation.id });
    // The same answer as the items sent whole.
    const sent = await client.responses.create({
      ...ask,
      input: [
        { role: 'developer', content: 'Be brief.' },
        { role: 'user', content: 'Hi' },
      ],
    });
    expect([first.output_text, first.usage?.input_tokens]).toEqual([sent.output_text, sent.usage?.input_tokens]);
    let items = await all(conversation.id);
    expect(items.map((i) => (i as { role?: string }).role)).toEqual(['developer', 'user', 'assistant']);
    expect(items[2]).toEqual(first.output[0]);
    // A second turn, streamed; a third in the background: each adds its own.
    const stream = await client.responses.create({ ...ask, conversation: { id: conversation.id }, input: 'And?', stream: true });
    for await (const _ of stream);
    const queued = await client.responses.create({ ...ask, conversation: conversation.id, input: 'More', background: true });
    const third = await until(queued.id);
    items = await all(conversation.id);
    expect(items).toHaveLength(7);
    expect(items.at(-1)).toEqual(third.output[0]);
    const whole = await client.responses.create({ ...ask, input: items.slice(0, 6) as never });
    expect(third.usage?.input_tokens).toBe(whole.usage?.input_tokens); // (the third saw the five before it and its own)
  });

  it('has its items added, listed, retrieved and removed by hand; its metadata updated; deleted, gone', async () => {
    const conversation = await client.conversations.create({});
    const added = await client.conversations.items.create(conversation.id, {
      items: [
        { type: 'message', role: 'user', content: 'One' },
        { type: 'message', role: 'assistant', content: 'Two' },
        { type: 'message', role: 'user', content: 'Three' },
      ],
    });
    expect(added.data.map((i) => (i as { content: { text: string }[] }).content[0].text)).toEqual(['One', 'Two', 'Three']);
    expect(added.data[1]).toMatchObject({ content: [{ type: 'output_text', text: 'Two' }] });
    const newestFirst = await client.conversations.items.list(conversation.id);
    expect(newestFirst.data.map((i) => i.id)).toEqual(added.data.map((i) => i.id).reverse());
    const middle = added.data[1].id as string;
    expect(await client.conversations.items.retrieve(middle, { conversation_id: conversation.id })).toEqual(added.data[1]);
    expect((await client.conversations.items.delete(middle, { conversation_id: conversation.id })).id).toBe(conversation.id);
    expect((await all(conversation.id)).map((i) => i.id)).toEqual([added.data[0].id, added.data[2].id]);
    await expect(client.conversations.items.retrieve(middle, { conversation_id: conversation.id })).rejects.toMatchObject({ status: 404 });
    expect((await client.conversations.update(conversation.id, { metadata: { a: 'b' } })).metadata).toEqual({ a: 'b' });
    // Deleted while a response on it runs: the response still ends as it would, adding nothing.
    const running = await client.responses.create({ ...ask, max_output_tokens: 60, conversation: conversation.id, input: 'Go on', stream: true });
    let ended = '';
    for await (const event of running) {
      if (event.type === 'response.created') expect((await client.conversations.delete(conversation.id)).deleted).toBe(true);
      ended = event.type;
    }
    expect(ended).toBe('response.incomplete');
    await expect(client.conversations.retrieve(conversation.id)).rejects.toMatchObject({ status: 404 });
    await expect(client.responses.create({ ...ask, conversation: conversation.id, input: 'Hi' })).rejects.toMatchObject({
      status: 404,
      error: { param: 'conversation' },
    });
  });

  it("refuses what does not check out, and keeps each caller's conversations its own", async () => {
    const conversation = await client.conversations.create({});
    const kept = await client.responses.create({ ...ask, input: 'Hi', store: true });
    await expect(client.responses.create({ ...ask, input: 'x', conversation: conversation.id, previous_response_id: kept.id })).rejects.toMatchObject({
      status: 400,
      error: { param: 'conversation' },
    });
    const many = Array.from({ length: 21 }, () => ({ type: 'message' as const, role: 'user' as const, content: 'x' }));
    await expect(client.conversations.items.create(conversation.id, { items: many })).rejects.toMatchObject({ status: 400, error: { param: 'items' } });
    await expect(client.conversations.items.create(conversation.id, { items: [{ role: 'robot', content: 'x' } as never] })).rejects.toMatchObject({
      status: 400,
    });
    expect(await all(conversation.id)).toEqual([]); // (nothing added by the refused)
    const other = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: KEYS.other, maxRetries: 0 });
    await expect(other.conversations.retrieve(conversation.id)).rejects.toMatchObject({ status: 404 });
    await expect(other.responses.create({ ...ask, conversation: conversation.id, input: 'Hi' })).rejects.toMatchObject({ status: 404 });
    expect(await all(conversation.id)).toEqual([]);
  });
});

describe('conversations and kept responses across a restart (server.batch_dir)', () => {
  /** Runs `use` with a client of a gateway on `dir` (its server settings beside), stopped after. */
  const on = async <T>(dir: string, server: object, use: (c: OpenAI) => Promise<T>) => {
    const g = await startTestGateway({ server: { batch_dir: dir, ...server }, models });
    try {
      return await use(new OpenAI({ baseURL: `${g.url}/v1`, apiKey: 'unused', maxRetries: 0 }));
    } finally {
      await g.shutdown();
    }
  };

  it('a restarted gateway has them, to be continued; those past their keep time are gone, their files too', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'infergate-kept-'));
    const before = await on(dir, {}, async (c) => {
      const conversation = await c.conversations.create({ items: [{ role: 'developer', content: 'Be brief.' }] });
      await c.responses.create({ ...ask, conversation: conversation.id, input: 'Hi' });
      const kept = await c.responses.create({ ...ask, input: 'Hello', store: true });
      const items = (await c.conversations.items.list(conversation.id, { order: 'asc' })).data;
      return { conversation, kept, items };
    });
    await on(dir, {}, async (c) => {
      expect((await c.conversations.items.list(before.conversation.id, { order: 'asc' })).data).toEqual(before.items);
      expect(await c.responses.retrieve(before.kept.id)).toEqual(before.kept);
      const next = await c.responses.create({ ...ask, input: 'And?', conversation: before.conversation.id });
      const whole = await c.responses.create({ ...ask, input: [...before.items, { role: 'user', content: 'And?' }] as never });
      expect(next.usage?.input_tokens).toBe(whole.usage?.input_tokens);
      await c.responses.create({ ...ask, input: 'x', previous_response_id: before.kept.id });
      await c.conversations.delete(before.conversation.id);
    });
    expect(await readdir(join(dir, 'conversations'))).toEqual([]); // (deleted: its file too)
    // Kept half a second: gone after a restart a second later, and their files with them.
    const short = await on(dir, { conversations_keep_s: 0.5, async_keep_s: 0.5 }, async (c) => ({
      conversation: await c.conversations.create({}),
      kept: await c.responses.create({ ...ask, input: 'Hello', store: true }),
    }));
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await on(dir, {}, async (c) => {
      await expect(c.conversations.retrieve(short.conversation.id)).rejects.toMatchObject({ status: 404 });
      await expect(c.responses.retrieve(short.kept.id)).rejects.toMatchObject({ status: 404 });
    });
    expect(await readdir(join(dir, 'conversations'))).toEqual([]);
    expect((await readdir(join(dir, 'responses'))).filter((f) => f.includes(short.kept.id))).toEqual([]);
  });

  it('a conversation only read is kept on disk from its last use, as in memory (not from its last change)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'infergate-kept-'));
    const file = (id: string) => join(dir, 'conversations', `${id}.json`);
    /** Its keep time's end as on disk, once `ready` says it is what is awaited (written in the background). */
    const expiresAt = async (id: string, ready: (at: number) => boolean) => {
      for (let i = 0; ; i++) {
        const at = await readFile(file(id), 'utf8').then(
          (text) => JSON.parse(text).expires_at as number,
          () => Number.NaN,
        );
        if (ready(at) || i === 100) return at;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    };
    // Kept 100 s: written when made; read 1.5 s later (more than a hundredth of the keep time on), its keep time on
    // disk moves on with it — a restart then keeps it 100 s from that read. Read again at once: not written again.
    await on(dir, { conversations_keep_s: 100 }, async (c) => {
      const conversation = await c.conversations.create({});
      const made = await expiresAt(conversation.id, (at) => at > 0);
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const before = Date.now();
      await c.conversations.items.list(conversation.id);
      const read = await expiresAt(conversation.id, (at) => at !== made);
      expect(read).toBeGreaterThanOrEqual(before + 100_000);
      await c.conversations.retrieve(conversation.id);
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(await expiresAt(conversation.id, () => true)).toBe(read);
    });
  });

  it('a background response the gateway stopped under runs again after the restart, under its id, drawing the same tokens', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'infergate-kept-'));
    const long = { model: 'tiny-gpt', input: 'Tell a long story', max_output_tokens: 300, seed: 11 } as const;
    const { id, unseeded } = await on(dir, {}, async (c) => {
      const queued = await c.responses.create({ ...long, background: true } as never);
      const other = await c.responses.create({ model: 'tiny-gpt', input: 'Hi', max_output_tokens: 300, background: true });
      return { id: (queued as OpenAI.Responses.Response).id, unseeded: other.id };
    }); // (stopped at once: both still running, on disk to run again)
    const saved = JSON.parse(await readFile(join(dir, 'background', `${unseeded}.json`), 'utf8'));
    expect(JSON.parse(saved.body).seed).toEqual(expect.any(Number)); // (fixed when it was made)
    await on(dir, {}, async (c) => {
      let done = await c.responses.retrieve(id);
      for (let i = 0; i < 400 && ['queued', 'in_progress'].includes(done.status as string); i++) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        done = await c.responses.retrieve(id);
      }
      expect(done).toMatchObject({ id, status: 'incomplete', background: true, usage: { output_tokens: 300 } });
      expect(done.output_text).toBe((await c.responses.create(long as never)).output_text);
    });
    expect(await readdir(join(dir, 'background'))).not.toContain(`${id}.json`); // (ended: no longer to run again)
  });
});
