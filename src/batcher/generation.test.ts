import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { unavailable } from '../errors/index.js';
import { type GenerateHooks, GenerationScheduler, type StepReplica } from './generation.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sampling = { temperature: 0, topP: 1, topK: 0, seed: 1 };

/**
 * A replica that "generates" token = step number, and records every step it was asked for. A beam search
 * (`sampling.beam`) gets no tokens: after max_tokens steps, its texts (`width` of them, max_tokens long).
 */
class FakeReplica implements StepReplica {
  steps: { join: string[]; advance: string[]; release: string[] }[] = [];
  private searches = new Map<string, { width: number; left: number; maxTokens: number }>();
  /** Joining sequences whose prompt is this token are refused alone (as a format the replica cannot set up). */
  refusePrompt?: number;
  private n = 0;
  constructor(
    readonly id: string,
    private stepMs = 2,
  ) {}
  async request(
    _op: string,
    body: {
      join: { seq: string; prompt: number[]; maxTokens: number; sampling: { beam?: { width: number } } }[];
      advance: string[];
      release: string[];
    },
  ) {
    await sleep(this.stepMs);
    this.steps.push({ join: body.join.map((j) => j.seq), advance: body.advance, release: body.release });
    const tokens: Record<string, number> = {};
    const failed: Record<string, string> = {};
    const beams: Record<string, object[]> = {};
    for (const j of body.join) {
      if (j.prompt[0] === this.refusePrompt) failed[j.seq] = 'its response format cannot be enforced: test';
      if (j.sampling.beam) this.searches.set(j.seq, { width: j.sampling.beam.width, left: j.maxTokens, maxTokens: j.maxTokens });
    }
    for (const s of [...body.join.map((j) => j.seq), ...body.advance]) {
      const search = this.searches.get(s);
      if (search && --search.left === 0) {
        const text = { tokens: Array.from({ length: search.maxTokens }, (_, i) => i), logprob: -1, score: -1, finishReason: 'length' };
        beams[s] = Array.from({ length: search.width }, () => text);
        this.searches.delete(s);
      } else if (!search && !failed[s]) tokens[s] = ++this.n;
    }
    return { tokens, failed, beams };
  }
}

class FakePool extends EventEmitter {
  replicas: FakeReplica[] = [];
  holds = 0;
  /** What startFailure answers: set it and emit 'change' to play a replica failing to start. */
  failing?: Error;
  startFailure() {
    return this.failing;
  }
  ready() {
    return this.replicas;
  }
  readyCount() {
    return this.replicas.length;
  }
  hold() {
    this.holds++;
    return () => this.holds--;
  }
}

let schedulers: GenerationScheduler[] = [];
afterEach(() => {
  for (const s of schedulers) s.close();
  schedulers = [];
});

function setup(
  opts: {
    replicas?: number;
    maxSequences?: number;
    maxQueue?: number;
    timeoutMs?: number;
    stepMs?: number;
    affinityTokens?: number;
    maxAdapters?: number;
  } = {},
) {
  const pool = new FakePool();
  pool.replicas = Array.from({ length: opts.replicas ?? 1 }, (_, i) => new FakeReplica(`r${i}`, opts.stepMs));
  const scheduler = new GenerationScheduler({
    model: 'g',
    pool,
    maxSequences: opts.maxSequences ?? 4,
    maxQueue: opts.maxQueue ?? 8,
    timeoutMs: opts.timeoutMs ?? 1000,
    affinityTokens: opts.affinityTokens,
    maxAdapters: opts.maxAdapters,
  });
  schedulers.push(scheduler);
  const run = (maxTokens: number, hooks: Partial<GenerateHooks> = {}) => {
    const tokens: number[] = [];
    const onToken = (t: number) => {
      tokens.push(t);
      return true;
    };
    const done = scheduler.generate({ prompt: [1], sampling, maxTokens }, { onToken, ...hooks });
    return { tokens, done };
  };
  return { pool, scheduler, run };
}

describe('GenerationScheduler', () => {
  it('advances concurrent sequences together, one token each per step, and lets a short one leave early', async () => {
    const { pool, run } = setup();
    const long = run(6);
    const short = run(2);
    expect(await short.done).toMatchObject({ finishReason: 'length', completionTokens: 2 });
    expect(await long.done).toMatchObject({ finishReason: 'length', completionTokens: 6 });
    await sleep(10); // the last release travels after the last token
    const steps = pool.replicas[0].steps;
    expect(Math.max(...steps.map((s) => s.join.length + s.advance.length))).toBe(2); // both in one step
    expect(steps.flatMap((s) => s.release)).toHaveLength(2); // every cache freed
    expect(steps.length).toBeLessThan(8); // 6 + 2 tokens in far fewer than 8 steps: shared
  });

  it('sends a prompt to the replica the last prompt starting the same way went to, while it is not much busier', async () => {
    const { pool, scheduler } = setup({ replicas: 2, affinityTokens: 4 });
    const gen = (prompt: number[], maxTokens: number) => scheduler.generate({ prompt, sampling, maxTokens }, { onToken: () => true });
    const system = [7, 7, 7, 7];
    const first = gen([9, 9, 9, 9, 1], 60); // r0 (both free: the first)
    await gen([...system, 1], 2); // r1: the freer
    const second = gen([8, 8, 8, 8, 1], 60); // r1 (r0 has one)
    await gen([...system, 2], 2); // both have one: r1 again, where its start went, not r0 (the first of equals)
    const joined = (r: number) => pool.replicas[r].steps.flatMap((st) => st.join).length;
    expect([joined(0), joined(1)]).toEqual([1, 3]);
    await Promise.all([first, second]);
  });

  it('gives a beam search a slot per beam: a sequence that does not fit beside it waits for its end', async () => {
    const { pool, scheduler, run } = setup({ maxSequences: 4 });
    const search = scheduler.generate(
      { prompt: [1], sampling: { ...sampling, beam: { width: 3, lengthPenalty: 1, ends: [] } }, maxTokens: 5 },
      { onToken: () => true },
    );
    await sleep(1);
    const beside = run(8); // the fourth slot
    const after = run(2); // no slot until the search ends
    const result = await search;
    expect(result.beams).toHaveLength(3);
    expect(result.completionTokens).toBe(15); // every beam's tokens
    await Promise.all([beside.done, after.done]);
    const steps = pool.replicas[0].steps;
    const joined = (n: number) => steps.findIndex((st) => st.join.length > 0 && st.join.includes(`s${n}`));
    const searchId = Number(steps[0].join[0].slice(1));
    const ended = steps.findIndex((st) => st.release.includes(`s${searchId}`));
    expect(joined(searchId + 1)).toBeLessThan(ended); // beside it
    expect(joined(searchId + 2)).toBeGreaterThanOrEqual(ended); // after it
  });

  it('holds at most max_loras adapters on a replica: another waits, while those behind it that fit go ahead', async () => {
    const { pool, scheduler } = setup({ maxSequences: 8, maxAdapters: 2 });
    const joinedAt = new Map<string, number>();
    const gen = (name: string, adapter: string | undefined, maxTokens: number) =>
      scheduler.generate(
        { prompt: [1], sampling, maxTokens, adapter: adapter === undefined ? undefined : { name: adapter, path: `/adapters/${adapter}` } },
        {
          onToken: () => {
            if (!joinedAt.has(name)) joinedAt.set(name, pool.replicas[0].steps.length);
            return true;
          },
        },
      );
    const a = gen('a', 'x', 6);
    const b = gen('b', 'y', 20);
    await sleep(1);
    const c = gen('c', 'z', 2); // a third adapter: waits for x or y to leave
    const d = gen('d', 'x', 3); // x is held: joins at once
    const e = gen('e', undefined, 3); // no adapter: joins at once
    await Promise.all([a, b, c, d, e]);
    const [joinC, joinD, joinE] = ['c', 'd', 'e'].map((n) => joinedAt.get(n) as number);
    expect(joinD).toBeLessThan(joinC);
    expect(joinE).toBeLessThan(joinC);
    expect(joinC).toBeGreaterThan((joinedAt.get('a') as number) + 5); // after every x sequence left (a: 6 tokens)
    expect(scheduler.stats().active).toBe(0);
  });

  it('fails alone a sequence the replica refuses on joining; the one beside it goes on', async () => {
    const { pool, scheduler, run } = setup();
    pool.replicas[0].refusePrompt = 99;
    const good = run(3);
    const refused = scheduler.generate({ prompt: [99], sampling, maxTokens: 3 }, { onToken: () => true });
    await expect(refused).rejects.toMatchObject({ status: 500, message: /model g: its response format cannot be enforced/ });
    expect(await good.done).toMatchObject({ finishReason: 'length', completionTokens: 3 });
    expect(scheduler.stats().active).toBe(0);
  });

  it('lets a new sequence join between steps of a running one', async () => {
    const { pool, run } = setup({ stepMs: 5 });
    const first = run(10);
    await sleep(20);
    const second = run(2);
    await Promise.all([first.done, second.done]);
    const joinedAt = pool.replicas[0].steps.findIndex((s) => s.join.length === 1 && s.advance.length > 0);
    expect(joinedAt).toBeGreaterThan(0);
  });

  it('caps sequences per replica at max_batch_size; the rest wait, then run', async () => {
    const { pool, run } = setup({ maxSequences: 2 });
    const runs = [run(3), run(3), run(3)];
    await Promise.all(runs.map((r) => r.done));
    expect(Math.max(...pool.replicas[0].steps.map((s) => s.join.length + s.advance.length))).toBe(2);
  });

  it('gives a free slot to the highest priority first, arrival order among equals', async () => {
    const { pool, run } = setup({ maxSequences: 1, stepMs: 5 });
    const busy = run(3, { priority: 10 }); // (the highest: nothing preempts it)
    const low = run(1, { priority: 0 });
    const high = run(1, { priority: 5 });
    const low2 = run(1, { priority: 0 });
    await Promise.all([busy.done, low.done, high.done, low2.done]);
    expect(pool.replicas[0].steps.flatMap((s) => s.join)).toHaveLength(4);
    // The fake numbers tokens in the order it makes them: a smaller first token joined earlier.
    expect(high.tokens[0]).toBeLessThan(low.tokens[0]);
    expect(low.tokens[0]).toBeLessThan(low2.tokens[0]);
  });

  it('preempts the lowest-priority sequence for a higher one with no free slot; it starts again where it was', async () => {
    const { pool, scheduler } = setup({ maxSequences: 2, stepMs: 3 });
    const joins: { seq: string; prompt: number[]; resumed?: number }[] = [];
    const replica = pool.replicas[0];
    const request = replica.request.bind(replica);
    replica.request = async (op, body) => {
      joins.push(...(body as { join: { seq: string; prompt: number[]; resumed?: number }[] }).join);
      return request(op, body);
    };
    const gen = (priority: number, maxTokens: number) => {
      const tokens: number[] = [];
      const done = scheduler.generate({ prompt: [7], sampling, maxTokens }, { priority, onToken: (t) => tokens.push(t) > 0 });
      return { tokens, done };
    };
    const batchLine = gen(-5, 30); // low priority, long
    const other = gen(0, 30);
    await sleep(20); // both generating, every slot taken
    const urgent = gen(10, 2);
    expect(await urgent.done).toMatchObject({ completionTokens: 2 });
    expect(batchLine.tokens.length).toBeLessThan(30); // the low one gave up its slot, the other kept going
    expect(await batchLine.done).toMatchObject({ completionTokens: 30, finishReason: 'length' });
    await other.done;
    expect(batchLine.tokens).toHaveLength(30); // every token, once
    const again = joins.filter((j) => j.resumed !== undefined);
    expect(again).toHaveLength(1);
    expect(again[0].prompt).toEqual([7, ...batchLine.tokens.slice(0, again[0].resumed)]); // where it was
    expect(scheduler.stats()).toMatchObject({ preempted: 1, active: 0 });
  });

  it('preempts a beam search by the work it would redo (every beam of every step), not by its tokens (none yet)', async () => {
    const { pool, scheduler, run } = setup({ maxSequences: 4, stepMs: 3 });
    const joined: string[] = [];
    const replica = pool.replicas[0];
    const request = replica.request.bind(replica);
    replica.request = async (op, body) => {
      joined.push(...(body as { join: { seq: string }[] }).join.map((j) => j.seq));
      return request(op, body);
    };
    const beam = { width: 2, lengthPenalty: 1, ends: [] };
    const search = scheduler.generate({ prompt: [1], sampling: { ...sampling, beam }, maxTokens: 40 }, { priority: -5, onToken: () => true });
    await sleep(30); // several steps of two beams
    const late = [run(40, { priority: -5 }), run(40, { priority: -5 })]; // every slot taken
    await sleep(8);
    const urgent = run(2, { priority: 10 });
    await urgent.done;
    expect((await search).beams).toHaveLength(2);
    await Promise.all(late.map((l) => l.done));
    expect(scheduler.stats().preempted).toBe(1);
    expect(joined.filter((id) => id === joined[0])).toHaveLength(1); // the search was not the one preempted
  });

  it('fails the sequences of a step answer it cannot read with a 500, frees their rows, and goes on serving', async () => {
    const { pool, run } = setup();
    const replica = pool.replicas[0];
    const request = replica.request.bind(replica);
    let garbled = 1;
    replica.request = async (op, body) => {
      const answer = await request(op, body);
      return garbled-- > 0 ? { ...answer, tokens: null as unknown as Record<string, number> } : answer; // (a replica of another version, say)
    };
    const lost = run(5);
    await expect(lost.done).rejects.toMatchObject({ status: 500, message: expect.stringMatching(/a generation step could not be read/) });
    const next = run(3);
    expect(await next.done).toMatchObject({ completionTokens: 3 });
    const firstId = replica.steps[0].join[0];
    expect(replica.steps.some((st) => st.release.includes(firstId))).toBe(true); // its row was freed
  });

  it("lets callers take turns for free slots: one caller's backlog does not hold another's request", async () => {
    const { run } = setup({ maxSequences: 1, stepMs: 5 });
    const busy = run(3, { caller: 'bulk' });
    const bulk = [1, 2, 3].map(() => run(1, { caller: 'bulk' }));
    const chat = run(1, { caller: 'chat' });
    await Promise.all([busy.done, chat.done, ...bulk.map((b) => b.done)]);
    const firstTokens = [...bulk, chat].map((r) => r.tokens[0]);
    // Joined in this order: bulk 1, chat, bulk 2, bulk 3 (without turns, chat would have been last).
    expect([...firstTokens].sort((a, b) => a - b)).toEqual([firstTokens[0], firstTokens[3], firstTokens[1], firstTokens[2]]);
  });

  it('answers 503 when the queue is full and 503 (no replica) or 504 at the deadline', async () => {
    const { pool, scheduler, run } = setup({ maxSequences: 1, maxQueue: 1, timeoutMs: 50, stepMs: 20 });
    const busy = run(10);
    const waiting = run(1);
    await expect(run(1).done).rejects.toMatchObject({ status: 503, code: 'queue_full' });
    // (a refusal is a failed inference in Triton's statistics, as a tensor model's)
    expect(scheduler.statistics.toTriton('g').inference_stats.fail.count).toBe(1);
    await expect(waiting.done).rejects.toMatchObject({ status: 504 });
    await busy.done;
    pool.replicas = [];
    await expect(run(1).done).rejects.toMatchObject({ status: 503, code: 'no_replica' });
  });

  it("answers waiting sequences with the pool's start failure at once, and new ones while it lasts", async () => {
    const { pool, run } = setup({ replicas: 0, timeoutMs: 60_000 });
    const waiting = [run(1), run(1)];
    await sleep(10);
    pool.failing = unavailable('start_failed', 'model g has no replica: replica g-1 failed to start: out of memory', 2);
    pool.emit('change');
    for (const w of waiting) await expect(w.done).rejects.toMatchObject({ status: 503, code: 'start_failed', message: /out of memory/ });
    await expect(run(1).done).rejects.toMatchObject({ code: 'start_failed' }); // not queued to wait out its deadline
    pool.failing = undefined; // the backoff is over: a sequence waits for the next start again
    pool.replicas = [new FakeReplica('r1')];
    expect(await run(2).done).toMatchObject({ completionTokens: 2 });
  });

  it('drops a cancelled sequence at the next step and frees its cache', async () => {
    const { pool, scheduler, run } = setup({ stepMs: 5 });
    const ac = new AbortController();
    const gone = run(1000, { signal: ac.signal });
    const kept = run(8);
    await sleep(20);
    ac.abort();
    await expect(gone.done).rejects.toMatchObject({ status: 499 });
    await kept.done;
    await sleep(15); // the last release travels after the last token
    expect(gone.tokens.length).toBeLessThan(20);
    expect(pool.replicas[0].steps.flatMap((s) => s.release).length).toBe(2);
    expect(scheduler.stats()).toMatchObject({ active: 0, queued: 0 });
  });

  it('skips a paused sequence (a slow reader) without holding back the others', async () => {
    const { run } = setup();
    let paused = true;
    const slow = run(5, { paused: () => paused });
    const fast = run(5);
    await fast.done;
    expect(slow.tokens.length).toBe(1); // its first token (prefill), then nothing while paused
    paused = false;
    await slow.done;
    expect(slow.tokens).toHaveLength(5);
  });

  it('never strands a sequence that arrives while the last release is in flight', async () => {
    const { pool, run } = setup({ stepMs: 20 });
    const first = run(1);
    await first.done; // its release step is now on its way (20 ms)
    await sleep(5);
    const second = run(2);
    expect(await second.done).toMatchObject({ completionTokens: 2 });
    expect(pool.replicas[0].steps.flatMap((s) => s.release)).toContain(pool.replicas[0].steps[0].join[0]);
  });

  it('holds the replica (never idle, never scaled down) while a loop runs', async () => {
    const { pool, run } = setup({ stepMs: 5 });
    const r = run(5);
    await sleep(8);
    expect(pool.holds).toBe(1);
    await r.done;
    await sleep(10);
    expect(pool.holds).toBe(0);
  });
});
