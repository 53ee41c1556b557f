import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODELS, startTestGateway } from './helpers.js';

// Sequences that start again where they were, from their prompt and the tokens they had, their streams going on to
// the text an uninterrupted run gives: those of a replica killed in the middle of streams (SIGKILL: a crash, the
// out-of-memory killer), on the replica that replaces it; and those preempted for a caller of higher priority.
let gw: Awaited<ReturnType<typeof startTestGateway>>;
let client: OpenAI;
beforeAll(async () => {
  gw = await startTestGateway({
    models: {
      'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', batching: { timeout_ms: 60_000 }, scaling: { min_containers: 1, max_containers: 1 } },
    },
  });
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
afterAll(() => gw?.shutdown());

const stats = async () => (await fetch(`${gw.url}/v2/models/tiny-gpt/stats`)).json();

/**
 * A gateway of its own whose tiny-gpt has two generation slots (`extra`: more config), for the preemption tests:
 * `stats` (with `headers`), and `slotsTaken()`, which waits until both slots are generating.
 */
async function withTwoSlots(
  extra: object,
  headers: Record<string, string>,
  test: (g: { url: string; stats: () => Promise<Record<string, number>>; slotsTaken: () => Promise<void> }) => Promise<void>,
) {
  const g = await startTestGateway({
    ...extra,
    models: { 'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', batching: { max_batch_size: 2 }, scaling: { min_containers: 1 } } },
  });
  const stats = async () => (await fetch(`${g.url}/v2/models/tiny-gpt/stats`, { headers })).json();
  const slotsTaken = async () => {
    for (let i = 0; i < 400 && (await stats()).active < 2; i++) await new Promise((r) => setTimeout(r, 5));
  };
  try {
    await test({ url: g.url, stats, slotsTaken });
  } finally {
    await g.shutdown();
  }
}

describe('a generation whose replica is lost', () => {
  it('goes on, on the replica that replaces it, to the text an uninterrupted run gives (greedy and seeded)', async () => {
    const requests = [
      { temperature: 0, frequency_penalty: 0.5 },
      // (seeded among the 5 likeliest: over this random model's nearly flat distribution, a draw among all 50257
      // tokens can tip on the last bits of a logit, which a prefill and a decode step compute in different orders)
      { temperature: 1, seed: 4, top_k: 5 },
    ].map((extra) => ({ model: 'tiny-gpt', prompt: 'The replica went away while', max_tokens: 300, ignore_eos: true, ...extra }));
    const whole = await Promise.all(requests.map(async (r) => (await client.completions.create(r as never)).choices[0].text));
    const [{ pid }] = (await stats()).replicas;
    let killed = false;
    const streamed = await Promise.all(
      requests.map(async (r) => {
        const stream = await client.completions.create({ ...r, stream: true } as never);
        let text = '';
        let chunks = 0;
        for await (const chunk of stream as unknown as AsyncIterable<OpenAI.Completion>) {
          text += chunk.choices[0]?.text ?? '';
          if (++chunks === 10 && !killed) {
            killed = true;
            process.kill(pid, 'SIGKILL');
          }
        }
        return text;
      }),
    );
    expect(killed).toBe(true);
    expect(streamed).toEqual(whole);
    const after = await stats();
    expect(after.resumed).toBe(2); // both were on the replica killed
    expect(after.replicas.map((r: { pid: number }) => r.pid)).not.toContain(pid);
  });
});

describe('a generation preempted for a higher priority', () => {
  it('gives up its slot to the urgent request and finishes later with the text it would have had', async () => {
    const SECRET = 'a-long-enough-shared-secret';
    const keys = [
      { id: 'bulk', secret: SECRET, priority: -5 },
      { id: 'pager', secret: SECRET, priority: 10 },
    ];
    const bulkKey = { 'infergate-key': 'bulk', 'infergate-secret': SECRET };
    await withTwoSlots({ auth: { default: 'key', keys } }, bulkKey, async (g) => {
      const as = (key: string) =>
        new OpenAI({ baseURL: `${g.url}/v1`, apiKey: 'unused', defaultHeaders: { 'infergate-key': key, 'infergate-secret': SECRET } });
      const bulk = (i: number) => ({ model: 'tiny-gpt', prompt: `Line ${i} of a long batch`, max_tokens: 400, ignore_eos: true, temperature: 0 });
      const whole = await Promise.all([0, 1].map(async (i) => (await as('bulk').completions.create(bulk(i))).choices[0].text));
      let bulkDone = 0;
      const streams = [0, 1].map(async (i) => {
        const stream = await as('bulk').completions.create({ ...bulk(i), stream: true });
        let text = '';
        for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
        bulkDone++;
        return text;
      });
      await g.slotsTaken();
      const urgent = await as('pager').completions.create({ model: 'tiny-gpt', prompt: 'Page:', max_tokens: 5 });
      expect(urgent.usage?.completion_tokens).toBe(5);
      expect(bulkDone).toBe(0); // answered while the bulk streams were still going
      expect(await Promise.all(streams)).toEqual(whole);
      expect((await g.stats()).preempted).toBe(1);
      const metrics = await (await fetch(`${g.url}/metrics`, { headers: bulkKey })).text();
      expect(metrics).toMatch(/infergate_generation_restarts_total\{gen_ai_request_model="tiny-gpt",reason="preempted"\} 1/);
    });
  });
});

describe('Batch API lines holding every slot', () => {
  it('give them up to an interactive generation, and the batch still completes, every line with its text', async () => {
    await withTwoSlots({}, {}, async (g) => {
      const openai = new OpenAI({ baseURL: `${g.url}/v1`, apiKey: 'unused', maxRetries: 0 });
      const body = (i: number) => ({ model: 'tiny-gpt', prompt: `Line ${i}`, max_tokens: 300, ignore_eos: true, temperature: 0 });
      const rows = [0, 1, 2].map((i) => ({ custom_id: `l${i}`, method: 'POST', url: '/v1/completions', body: body(i) }));
      const file = await toFile(Buffer.from(rows.map((r) => `${JSON.stringify(r)}\n`).join('')), 'lines.jsonl');
      const input = await openai.files.create({ file, purpose: 'batch' });
      const batch = await openai.batches.create({ input_file_id: input.id, endpoint: '/v1/completions', completion_window: '24h' });
      await g.slotsTaken(); // two lines generating
      const urgent = await openai.completions.create({ model: 'tiny-gpt', prompt: 'Now:', max_tokens: 4 });
      expect(urgent.usage?.completion_tokens).toBe(4);
      expect((await openai.batches.retrieve(batch.id)).request_counts?.completed).toBe(0); // answered before any line ended
      expect((await g.stats()).preempted).toBeGreaterThanOrEqual(1);
      let done = await openai.batches.retrieve(batch.id);
      while (!['completed', 'failed'].includes(done.status)) {
        await new Promise((r) => setTimeout(r, 50));
        done = await openai.batches.retrieve(batch.id);
      }
      const out = (await (await openai.files.content(done.output_file_id as string)).text())
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      const texts = Object.fromEntries(out.map((l) => [l.custom_id, l.response.body.choices[0].text]));
      for (const i of [0, 1, 2]) expect(texts[`l${i}`]).toBe((await openai.completions.create(body(i))).choices[0].text);
    });
  });
});

describe("OpenAI's service_tier: flex", () => {
  it('runs below the same caller’s default requests: preempted by them, and told its tier', async () => {
    await withTwoSlots({}, {}, async (g) => {
      const openai = new OpenAI({ baseURL: `${g.url}/v1`, apiKey: 'unused', maxRetries: 0 });
      const flex = { model: 'tiny-gpt', prompt: 'Whenever', max_tokens: 300, ignore_eos: true, temperature: 0, service_tier: 'flex' as const };
      let flexDone = 0;
      const streams = [0, 1].map(async () => {
        const stream = await openai.completions.create({ ...flex, stream: true });
        let tier: string | undefined;
        for await (const chunk of stream) tier = (chunk as unknown as { service_tier?: string }).service_tier;
        flexDone++;
        return tier;
      });
      await g.slotsTaken();
      const urgent = { model: 'tiny-gpt', prompt: 'Now:', max_tokens: 4, service_tier: 'priority' }; // (a chat field the legacy route takes too)
      const now = await openai.completions.create(urgent);
      expect(flexDone).toBe(0);
      expect((now as unknown as { service_tier: string }).service_tier).toBe('default'); // a body cannot raise its caller's priority
      expect(await Promise.all(streams)).toEqual(['flex', 'flex']);
      expect((await g.stats()).preempted).toBe(1);
    });
  });
});
