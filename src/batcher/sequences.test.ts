import { afterEach, describe, expect, it } from 'vitest';
import { InMemoryProvider, ReplicaPool } from '../autoscaler/index.js';
import type { GatewayError } from '../errors/index.js';
import type { Inputs } from '../tensor/index.js';
import { Batcher } from './batcher.js';
import { type HeldSequence, Sequences, type SequencesOptions } from './sequences.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const x = (v: number): Inputs => ({ x: { dtype: 'FP32', shape: [1, 1], data: Float32Array.from([v]) } });

/** A running sum: y = s + x, and the state s' = s + x (rows in a batch are different sequences). */
function harness(opts: Partial<SequencesOptions> & { waitMs?: number } = {}) {
  const batchRows: number[] = [];
  const provider = new InMemoryProvider(async (inputs) => {
    batchRows.push(inputs.x.shape[0]);
    await sleep(2);
    const sum = (inputs.x.data as Float32Array).map((v, i) => v + (inputs.s.data as Float32Array)[i]);
    return { y: { dtype: 'FP32', shape: [sum.length, 1], data: sum }, s_out: { dtype: 'FP32', shape: [sum.length, 1], data: sum.slice() } };
  });
  const pool = new ReplicaPool({ model: 'm', maxInputs: 1, provider, spec: { path: '', device: 'cpu', threads: 0, warmupShapes: {} } });
  let sequences: Sequences | undefined;
  const batcher = new Batcher({
    model: 'm',
    pool,
    batchable: true,
    maxBatchSize: 8,
    waitMs: opts.waitMs ?? 3,
    maxQueueSize: 64,
    timeoutMs: 120_000,
    companyExpected: () => sequences?.mayJoin() ?? true,
  });
  let now = 0;
  sequences = new Sequences({
    model: 'm',
    states: [{ input: 's', output: 's_out', initial: () => ({ dtype: 'FP32', shape: [1, 1], data: new Float32Array(1) }) }],
    submit: (inputs, o) => batcher.submit(inputs, o),
    idleMs: 60_000,
    maxSequences: 4,
    now: () => now,
    ...opts,
  });
  const step = async (id: string, v: number, flags: { start?: boolean; end?: boolean; owner?: string } = {}) => {
    const r = await sequences.submit({ id, start: flags.start ?? false, end: flags.end ?? false, owner: flags.owner }, x(v));
    expect(Object.keys(r.outputs)).toEqual(['y']); // the state stays in the gateway
    return (r.outputs.y.data as Float32Array)[0];
  };
  return { pool, batcher, sequences: sequences as Sequences, step, batchRows, advance: (ms: number) => (now += ms) };
}

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup) await c();
  cleanup = [];
});
async function started(opts?: Partial<SequencesOptions> & { waitMs?: number }) {
  const h = harness(opts);
  await h.pool.startReplicas(1);
  cleanup.push(() => h.pool.stop());
  return h;
}
const failure = (p: Promise<unknown>) =>
  p.then(
    () => expect.unreachable(),
    (e: GatewayError) => e,
  );

describe('Sequences (implicit state, Triton sequence batcher)', () => {
  it("carries each sequence's state to its next request, from zeros at its start", async () => {
    const { step } = await started();
    expect(await step('a', 1, { start: true })).toBe(1);
    expect(await step('a', 2)).toBe(3);
    expect(await step('a', 3)).toBe(6);
    expect(await step('a', 10, { start: true })).toBe(10); // a start on a live sequence begins it afresh
  });

  it("runs one sequence's requests in the order they came while sequences share batches", async () => {
    const { step, batchRows } = await started();
    const runs = ['a', 'b', 'c'].map((id, k) => Promise.all([1, 2, 3, 4].map((v, i) => step(id, v * (k + 1), { start: i === 0 }))));
    expect(await Promise.all(runs)).toEqual([
      [1, 3, 6, 10],
      [2, 6, 12, 20],
      [3, 9, 18, 30],
    ]);
    expect(Math.max(...batchRows)).toBe(3);
    expect(batchRows.length).toBe(4);
  });

  it('waits wait_ms for company only while some sequence could still send (one stream alone never waits)', async () => {
    const { step, batchRows } = await started({ waitMs: 60_000 });
    // Alone, each request goes at once (it would otherwise wait a minute for a batch-mate that cannot come).
    expect(await step('a', 1, { start: true })).toBe(1);
    expect(await step('a', 2)).toBe(3);
    expect(await Promise.all([step('a', 1), step('b', 5, { start: true })])).toEqual([4, 5]);
    // With b idle, a's request waits for b's, and they share a batch.
    let answered = false;
    const a = step('a', 1).then((v) => {
      answered = true;
      return v;
    });
    await sleep(50);
    expect(answered).toBe(false);
    expect(await Promise.all([a, step('b', 1)])).toEqual([5, 6]);
    expect(batchRows).toEqual([1, 1, 2, 2]);
  });

  it('needs a start first, forgets a sequence after its end, and refuses more rows than one', async () => {
    const { step, sequences } = await started();
    expect((await failure(step('a', 1))).code).toBe('sequence_not_active');
    await step('a', 1, { start: true });
    expect(await step('a', 1, { end: true })).toBe(2);
    expect(sequences.size).toBe(0);
    expect((await failure(step('a', 1))).code).toBe('sequence_not_active');
    const two: Inputs = { x: { dtype: 'FP32', shape: [2, 1], data: new Float32Array(2) } };
    expect((await failure(sequences.submit({ id: 'b', start: true, end: false }, two))).message).toMatch(/one row/);
  });

  it('leaves the state as it was when a request fails', async () => {
    const { step, sequences } = await started();
    await step('a', 5, { start: true });
    const gone = new AbortController();
    gone.abort();
    expect((await failure(sequences.submit({ id: 'a', start: false, end: false }, x(100), { signal: gone.signal }))).status).toBe(499);
    expect(await step('a', 1)).toBe(6);
  });

  it("keeps callers' equal ids apart", async () => {
    const { step } = await started();
    await step('1', 1, { start: true, owner: 'key:alice' });
    await step('1', 100, { start: true, owner: 'key:bob' });
    expect(await step('1', 1, { owner: 'key:alice' })).toBe(2);
    expect((await failure(step('1', 1, { owner: 'key:mallory' }))).code).toBe('sequence_not_active');
  });

  it('holds at most maxSequences (503 past it) and drops idle ones to make room', async () => {
    const h = await started({ maxSequences: 2, idleMs: 1000 });
    await h.step('a', 1, { start: true });
    await h.step('b', 1, { start: true });
    const full = await failure(h.step('c', 1, { start: true }));
    expect([full.status, full.code, full.options.retryAfterS]).toEqual([503, 'sequences_full', 1]);
    h.advance(1500);
    expect(await h.step('c', 1, { start: true })).toBe(1);
    expect(h.sequences.size).toBe(1);
    expect((await failure(h.step('a', 1))).code).toBe('sequence_not_active');
  });

  it('release ends a sequence at once: what it had queued fails, its slot is free', async () => {
    const { step, sequences } = await started();
    await step('a', 1, { start: true });
    const queued = [step('a', 1), step('a', 1)].map(failure);
    sequences.release({ id: 'a' });
    expect(sequences.size).toBe(0);
    const results = await Promise.allSettled(queued);
    // The first may already be running; whatever had not started fails.
    expect(results.filter((r) => r.status === 'fulfilled' && (r.value as GatewayError).code === 'sequence_not_active').length).toBeGreaterThanOrEqual(1);
  });

  it('hands a sequence over after what it had queued (a fleet moving it); what is queued behind fails; another store goes on from its state', async () => {
    const one = await started();
    const other = await started();
    await one.step('a', 1, { start: true, owner: 'key:alice' });
    const before = one.step('a', 2, { owner: 'key:alice' }); // queued before the handing over: answered here
    const handed = one.sequences.handOver({ id: 'a', owner: 'key:alice' });
    const after = failure(one.step('a', 3, { owner: 'key:alice' }));
    expect(await before).toBe(3);
    const held = (await handed) as HeldSequence;
    expect((await after).code).toBe('sequence_not_active');
    expect(one.sequences.has({ id: 'a', owner: 'key:alice' })).toBe(false);
    expect(await one.sequences.handOver({ id: 'a', owner: 'key:alice' })).toBeUndefined();
    expect(other.sequences.takeOver(held)).toBe('taken');
    expect(await other.step('a', 4, { owner: 'key:alice' })).toBe(7);
    // A copy kept already is not replaced by one that started earlier; a full store takes none.
    expect(other.sequences.takeOver({ ...held, startedAt: held.startedAt - 1 })).toBe('has');
    for (const id of ['b', 'c', 'd']) await other.step(id, 1, { start: true });
    expect(other.sequences.takeOver({ ...held, id: 'e' })).toBe('refused');
  });

  it('keeps a sequence whose handing over was given up (the gateway asking went away) before its queued requests were answered', async () => {
    const { step, sequences } = await started();
    await step('a', 1, { start: true });
    const before = step('a', 2);
    const gaveUp = new AbortController();
    const handed = sequences.handOver({ id: 'a' }, gaveUp.signal);
    const after = step('a', 4); // (queued behind the handing over: runs, since it stays)
    gaveUp.abort();
    expect(await before).toBe(3);
    expect(await handed).toBeUndefined();
    expect(await after).toBe(7);
    expect(sequences.has({ id: 'a' })).toBe(true);
  });

  it('a copy left from before its sequence started again elsewhere gives way to the one handed over (not while a request of it runs)', async () => {
    const here = await started();
    const there = await started();
    await here.step('a', 10, { start: true }); // (left here: its requests went elsewhere since)
    await new Promise((r) => setTimeout(r, 2));
    await there.step('a', 1, { start: true }); // (started again there, later)
    const later = (await there.sequences.handOver({ id: 'a' })) as HeldSequence;
    const running = here.step('a', 100); // (under way here: the copy does not give way)
    expect(here.sequences.takeOver(later)).toBe('refused');
    await running;
    expect(here.sequences.takeOver(later)).toBe('taken');
    expect(await here.step('a', 2)).toBe(3); // (from the later start's state, not the copy's 110)
    // Of one start, the copy further on (more requests answered) stays: a backup a request behind gives way.
    expect(here.sequences.takeOver(later)).toBe('has');
    expect(here.sequences.takeOver({ ...later, steps: 3, states: { s: x(50).x } })).toBe('taken');
    expect(await here.step('a', 1)).toBe(51);
  });

  it("gives up a backup's copy (the one used least lately) for a sequence that needs its room — not one served here since", async () => {
    const { step, sequences } = await started({ maxSequences: 2 });
    const copyOf = (id: string, v: number) => sequences.takeOver({ id, states: { s: x(v).x }, startedAt: 1, steps: 1 }, { copy: true });
    expect(copyOf('c1', 1)).toBe('taken');
    expect(copyOf('c2', 2)).toBe('taken');
    expect(await step('c2', 1)).toBe(3); // (served here: no longer a copy)
    expect(await step('new', 5, { start: true })).toBe(5); // (c1 given up for it)
    expect(sequences.has({ id: 'c1' })).toBe(false);
    expect((await failure(step('more', 1, { start: true }))).code).toBe('sequences_full'); // (no copy left to give up)
  });

  it('handAll gives every sequence once the requests it had queued are answered, and keeps none of them', async () => {
    const { step, sequences } = await started();
    await step('a', 1, { start: true });
    await step('b', 5, { start: true, owner: 'key:bob' });
    await step('c', 1, { start: true });
    await step('c', 1, { end: true }); // (ended: not given)
    const underWay = step('a', 2); // (queued before the handing: answered, and its state is the one given)
    const all = sequences.handAll();
    const after = failure(step('b', 1, { owner: 'key:bob' })); // (queued after: the sequence is gone)
    expect(await underWay).toBe(3);
    const given = await Promise.all(all.map(async ({ seq, held }) => [seq.id, seq.owner, ((await held)?.states.s.data as Float32Array | undefined)?.[0]]));
    expect(given).toEqual([
      ['a', undefined, 3],
      ['b', 'key:bob', 5],
    ]);
    expect((await after).code).toBe('sequence_not_active');
    expect(sequences.size).toBe(0);
    expect((await failure(step('a', 1))).code).toBe('sequence_not_active');
  });
});
