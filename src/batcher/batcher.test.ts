import { afterEach, describe, expect, it } from 'vitest';
import { InMemoryProvider, ReplicaPool } from '../autoscaler/index.js';
import type { Inputs } from '../tensor/index.js';
import { Batcher, type BatcherOptions } from './batcher.js';
import { ResponseCache } from './response-cache.js';

const row = (...values: number[]): Inputs => ({ x: { dtype: 'FP32', shape: [1, values.length], data: Float32Array.from(values) } });
const values = (inputs: Inputs) => Array.from(inputs.y.data as Float32Array);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** y = 2x, taking `delayMs`; gate() holds every batch until released. */
function harness(opts: Partial<BatcherOptions> = {}, delayMs = 0) {
  let release: () => void = () => {};
  let gate = Promise.resolve();
  const provider = new InMemoryProvider(async (inputs) => {
    await gate;
    await sleep(delayMs);
    const x = inputs.x;
    return { y: { dtype: 'FP32', shape: x.shape, data: (x.data as Float32Array).map((v) => v * 2) } };
  });
  const pool = new ReplicaPool({ model: 'm', maxInputs: 1, provider, spec: { path: '', device: 'cpu', threads: 0, warmupShapes: {} } });
  const batcher = new Batcher({ model: 'm', pool, batchable: true, maxBatchSize: 4, waitMs: 5, maxQueueSize: 8, timeoutMs: 1000, ...opts });
  return {
    pool,
    batcher,
    provider,
    hold() {
      gate = new Promise((r) => (release = r));
    },
    release: () => release(),
    batches: () => provider.started[0].batches.map((b) => b.x.shape[0]),
  };
}

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup) await c();
  cleanup = [];
});

async function started(opts?: Partial<BatcherOptions>, delayMs?: number) {
  const h = harness(opts, delayMs);
  await h.pool.startReplicas(1);
  cleanup.push(async () => {
    h.batcher.close();
    await h.pool.stop();
  });
  return h;
}

describe('Batcher', () => {
  it('pads batches up to the configured sizes and answers each request with its own rows', async () => {
    // (a wide window: a CI machine once took more than 5 ms between the three submits, and sent the first alone)
    const h = await started({ maxBatchSize: 8, batchSizes: [2, 8], waitMs: 100 });
    const results = await Promise.all([1, 2, 3].map((v) => h.batcher.submit(row(v))));
    expect(results.map((r) => values(r.outputs))).toEqual([[2], [4], [6]]);
    expect(results.every((r) => r.batchSize === 3)).toBe(true); // the caller's view: real rows
    expect(h.batches()).toEqual([8]); // the model's view: one of the sizes
    expect(h.batcher.stats()).toMatchObject({ rows: 3, paddingRows: 5, batchSizes: { 3: 1 } });
  });

  it('batches concurrent requests and splits results back in order', async () => {
    const h = await started({ waitMs: 100 }); // (wide: a loaded CI machine once paused 5 ms between two submits)
    const results = await Promise.all([1, 2, 3].map((v) => h.batcher.submit(row(v, v + 10))));
    expect(results.map((r) => values(r.outputs))).toEqual([
      [2, 22],
      [4, 24],
      [6, 26],
    ]);
    expect(h.batches()).toEqual([3]);
    expect(results.every((r) => r.batchSize === 3)).toBe(true);
  });

  it('never exceeds max_batch_size rows, counting rows not requests', async () => {
    const h = await started();
    h.hold();
    const busy = h.batcher.submit(row(0));
    await sleep(10); // the first batch occupies the only slot
    const two = (a: number) => ({ x: { dtype: 'FP32' as const, shape: [2, 1], data: Float32Array.from([a, a]) } });
    const pending = [h.batcher.submit(two(1)), h.batcher.submit(two(2)), h.batcher.submit(two(3))];
    h.release();
    await Promise.all([busy, ...pending]);
    expect(h.batches()).toEqual([1, 4, 2]);
  });

  it('waits wait_ms for company, then sends a partial batch', async () => {
    const h = await started({ waitMs: 200 });
    const a = h.batcher.submit(row(1));
    await sleep(10);
    const b = h.batcher.submit(row(2));
    await Promise.all([a, b]);
    expect(h.batches()).toEqual([2]);
  });

  it('batches different non-batch shapes separately', async () => {
    const h = await started({ waitMs: 100 });
    const out = await Promise.all([h.batcher.submit(row(1, 1)), h.batcher.submit(row(2, 2, 2)), h.batcher.submit(row(3, 3))]);
    expect(out.map((r) => values(r.outputs))).toEqual([
      [2, 2],
      [4, 4, 4],
      [6, 6],
    ]);
    expect(h.batches().sort()).toEqual([1, 2]);
  });

  it('answers 503 with Retry-After when the queue is full, and keeps serving', async () => {
    const h = await started({ maxQueueSize: 2 });
    h.hold();
    const busy = h.batcher.submit(row(0));
    await sleep(10);
    const queued = [h.batcher.submit(row(1)), h.batcher.submit(row(2))];
    await expect(h.batcher.submit(row(3))).rejects.toMatchObject({ status: 503, code: 'queue_full', options: { retryAfterS: 1 } });
    h.release();
    await Promise.all([busy, ...queued]);
    await expect(h.batcher.submit(row(4))).resolves.toBeTruthy();
    expect(h.batcher.stats().shed.queue_full).toBe(1);
    // Triton's statistics: the refused request failed; four were answered, in as many executions as batches.
    const triton = h.batcher.statistics.toTriton('m');
    expect(triton.inference_stats.fail.count).toBe(1);
    expect(triton).toMatchObject({ inference_count: 4, execution_count: h.batcher.stats().batches, inference_stats: { success: { count: 4 } } });
    expect(triton.last_inference).toBeGreaterThan(0);
  });

  it('fails a queued request with 504 by a timer when its deadline passes, while the replica is still busy', async () => {
    const h = await started({ timeoutMs: 30 });
    h.hold();
    const busy = h.batcher.submit(row(0));
    await sleep(15);
    const t0 = Date.now();
    await expect(h.batcher.submit(row(1))).rejects.toMatchObject({ status: 504 });
    expect(Date.now() - t0).toBeLessThan(500); // the replica is still held: a timer failed it
    h.release();
    await busy;
    // Triton's statistics: the timed-out request failed after about its timeout; the other succeeded.
    const { inference_stats: s } = h.batcher.statistics.toTriton('m');
    expect(s.fail.count).toBe(1);
    expect(s.fail.ns).toBeGreaterThanOrEqual(25e6);
    expect(s.success.count).toBe(1);
    expect(s.success.ns).toBeGreaterThan(s.compute_infer.ns); // it waited behind the hold, outside the model
  });

  it('removes a cancelled request from the queue and never runs it', async () => {
    const h = await started();
    h.hold();
    const busy = h.batcher.submit(row(0));
    await sleep(10);
    const ac = new AbortController();
    const gone = h.batcher.submit(row(7), { signal: ac.signal });
    const kept = h.batcher.submit(row(8));
    expect(h.batcher.stats().queuedRequests).toBe(2);
    ac.abort();
    await expect(gone).rejects.toMatchObject({ status: 499 });
    expect(h.batcher.stats().queuedRequests).toBe(1);
    h.release();
    await busy;
    expect(values((await kept).outputs)).toEqual([16]);
    expect(h.provider.started[0].batches.flatMap((b) => Array.from(b.x.data as Float32Array))).toEqual([0, 8]);
  });

  it('drops a cancelled row from a batch already running, and serves the rest', async () => {
    const h = await started({}, 20);
    const ac = new AbortController();
    const gone = h.batcher.submit(row(1), { signal: ac.signal });
    const kept = h.batcher.submit(row(2));
    await sleep(10);
    ac.abort();
    await expect(gone).rejects.toMatchObject({ status: 499 });
    expect(values((await kept).outputs)).toEqual([4]);
  });

  it('retries a batch once on another replica when its replica dies mid-batch', async () => {
    const h = await started();
    h.hold();
    const a = h.batcher.submit(row(1));
    await sleep(10);
    await h.pool.startReplicas(1); // the replacement
    h.release();
    h.provider.started[0].crash();
    expect(values((await a).outputs)).toEqual([2]);
    expect(h.provider.started[1].batches).toHaveLength(1);
  });

  it('runs each request of a batch the model failed again alone: only the one whose inputs fail it fails', async () => {
    // A model that cannot take a negative value (as an embedding table cannot take a token id past its end).
    const provider = new InMemoryProvider(async (inputs) => {
      const x = inputs.x.data as Float32Array;
      if (x.some((v) => v < 0)) throw new Error('indices element out of data bounds');
      return { y: { dtype: 'FP32', shape: inputs.x.shape, data: x.map((v) => v * 2) } };
    });
    const pool = new ReplicaPool({ model: 'm', maxInputs: 1, provider, spec: { path: '', device: 'cpu', threads: 0, warmupShapes: {} } });
    const batcher = new Batcher({ model: 'm', pool, batchable: true, maxBatchSize: 4, waitMs: 50, maxQueueSize: 8, timeoutMs: 1000 });
    await pool.startReplicas(1);
    cleanup.push(async () => {
      batcher.close();
      await pool.stop();
    });
    const [a, bad, b] = await Promise.allSettled([batcher.submit(row(1)), batcher.submit(row(-1)), batcher.submit(row(3))]);
    expect(a).toMatchObject({ status: 'fulfilled', value: { batchSize: 1 } });
    expect(values((a as PromiseFulfilledResult<{ outputs: Inputs }>).value.outputs)).toEqual([2]);
    expect(values((b as PromiseFulfilledResult<{ outputs: Inputs }>).value.outputs)).toEqual([6]);
    expect(bad).toMatchObject({ status: 'rejected', reason: { status: 500, message: 'model m failed: indices element out of data bounds' } });
    expect(provider.started[0].batches.map((x) => x.x.shape[0])).toEqual([3, 1, 1, 1]); // the batch, then each alone
    expect(batcher.stats()).toMatchObject({ isolated: 3 });
    // A request failing alone is answered at once, not run again.
    await expect(batcher.submit(row(-2))).rejects.toMatchObject({ status: 500 });
    expect(provider.started[0].batches).toHaveLength(5);
  });

  it('answers 503 with Retry-After when no replica is up by the deadline (cold start that never came)', async () => {
    const h = await started({ timeoutMs: 100 });
    h.hold();
    const a = h.batcher.submit(row(1));
    await sleep(10);
    h.provider.started[0].crash();
    await expect(a).rejects.toMatchObject({ status: 503, code: 'no_replica', options: { retryAfterS: 5 } });
  });

  it('fails with 503 replica_lost when the retry dies too', async () => {
    const h = await started();
    h.hold();
    const a = h.batcher.submit(row(1));
    await sleep(10);
    await h.pool.startReplicas(1);
    h.provider.started[0].crash();
    await sleep(10);
    h.provider.started[1].crash();
    await expect(a).rejects.toMatchObject({ status: 503, code: 'replica_lost' });
  });

  it('rejects a request with more rows than max_batch_size', async () => {
    const h = await started();
    const big = { x: { dtype: 'FP32' as const, shape: [5, 1], data: new Float32Array(5) } };
    await expect(h.batcher.submit(big)).rejects.toMatchObject({ status: 400 });
  });

  it('idle() resolves once queued and in-flight work is done', async () => {
    const h = await started({}, 20);
    const work = [h.batcher.submit(row(1)), h.batcher.submit(row(2))];
    await h.batcher.idle();
    expect(h.batcher.stats()).toMatchObject({ queuedRequests: 0, inFlightBatches: 0 });
    await Promise.all(work);
  });
});

describe('Batcher with a response cache', () => {
  const cached = () => started({ cache: new ResponseCache(1 << 20) });

  it('runs identical requests arriving together once, each answered with its own copy', async () => {
    const h = await cached();
    h.hold();
    const answers = Promise.all([1, 2, 3, 4, 5].map(() => h.batcher.submit(row(7, 8))));
    await sleep(20);
    h.release();
    const results = await answers;
    expect(h.batches()).toEqual([1]); // one row ran
    expect(results.map((r) => values(r.outputs))).toEqual(new Array(5).fill([14, 16]));
    expect(new Set(results.map((r) => r.outputs.y.data)).size).toBe(5); // no two share an array
    expect(h.batcher.stats()).toMatchObject({ requests: 5, cacheHits: 4 });
    expect(values((await h.batcher.submit(row(7, 8))).outputs)).toEqual([14, 16]); // and kept
    expect(h.batches()).toEqual([1]);
  });

  it('refuses a request of more rows than a batch takes before looking it up: no miss counted', async () => {
    const h = await cached();
    const five: Inputs = { x: { dtype: 'FP32', shape: [5, 1], data: Float32Array.from([1, 2, 3, 4, 5]) } };
    await expect(h.batcher.submit(five)).rejects.toMatchObject({ status: 400, message: expect.stringMatching(/5 rows; .* at most max_batch_size 4/) });
    expect(h.batcher.statistics.toTriton('m').inference_stats.cache_miss.count).toBe(0);
  });

  it('answers the others when the first of them is cancelled, and cancels only the one whose client left', async () => {
    const h = await cached();
    h.hold();
    const first = new AbortController();
    const left = new AbortController();
    const leader = h.batcher.submit(row(3), { signal: first.signal });
    const gone = h.batcher.submit(row(3), { signal: left.signal });
    const stays = h.batcher.submit(row(3));
    await sleep(10);
    left.abort();
    await expect(gone).rejects.toMatchObject({ status: 499 });
    first.abort();
    await expect(leader).rejects.toMatchObject({ status: 499 });
    h.release();
    expect(values((await stays).outputs)).toEqual([6]); // it ran itself
  });
});
