import { afterEach, describe, expect, it } from 'vitest';
import { Batcher } from '../batcher/index.js';
import type { Inputs } from '../tensor/index.js';
import { Autoscaler } from './autoscaler.js';
import { InMemoryProvider } from './in-memory.js';
import { ReplicaPool } from './pool.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const row = (v: number): Inputs => ({ x: { dtype: 'FP32', shape: [1, 1], data: Float32Array.from([v]) } });

let stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const s of stops) await s();
  stops = [];
});

/** Pool + batcher + autoscaler on in-memory replicas that take `runMs` a batch and `startMs` to start. */
function system(opts: { min?: number; max?: number; windowMs?: number; runMs?: number; startMs?: number; timeoutMs?: number } = {}) {
  const provider = new InMemoryProvider(
    async (inputs) => {
      await sleep(opts.runMs ?? 20);
      return { y: inputs.x };
    },
    { startDelayMs: opts.startMs ?? 30 },
  );
  const pool = new ReplicaPool({ model: 'm', maxInputs: 1, provider, spec: { path: '', device: 'cpu', threads: 1, warmupShapes: {} }, restartBackoffMs: 50 });
  const batcher = new Batcher({ model: 'm', pool, batchable: true, maxBatchSize: 2, waitMs: 0, maxQueueSize: 1000, timeoutMs: opts.timeoutMs ?? 5000 });
  const autoscaler = new Autoscaler({
    pool,
    policy: {
      minContainers: opts.min ?? 0,
      maxContainers: opts.max ?? 3,
      bufferContainers: 0,
      targetInputs: 1,
      maxBatchSize: 2,
      scaledownWindowMs: opts.windowMs ?? 100,
    },
    demand: () => ({ queuedRows: batcher.stats().queuedRows, arrivedRows: batcher.stats().arrivedRows }),
    tickMs: 20,
    rateWindowMs: 100,
  });
  batcher.on('starved', autoscaler.poke);
  autoscaler.start();
  stops.push(async () => {
    autoscaler.stop();
    batcher.close();
    await pool.stop();
  });
  return { provider, pool, batcher, autoscaler };
}

describe('Autoscaler with a pool and a batcher', () => {
  it('holds a max_containers lowered while serving at once, busy replicas too, with every request answered', async () => {
    const s = system({ min: 3, max: 3, windowMs: 60_000, runMs: 50 });
    await s.pool.startReplicas(3);
    const work = Array.from({ length: 12 }, (_, i) => s.batcher.submit(row(i)));
    await sleep(30); // (every replica busy)
    s.autoscaler.update({ minContainers: 0, maxContainers: 1 });
    for (let i = 0; i < 50 && s.pool.liveCount() > 1; i++) await sleep(10);
    expect(s.pool.liveCount()).toBe(1); // not one replica a scaledown window
    const answers = await Promise.all(work);
    expect(answers.map((a) => (a.outputs.y.data as Float32Array)[0])).toEqual(Array.from({ length: 12 }, (_, i) => i));
  });

  it('cold-starts from zero for the first request, then returns to zero after the window', async () => {
    const s = system({ windowMs: 100 });
    expect(s.pool.liveCount()).toBe(0);
    const out = await s.batcher.submit(row(7));
    expect(Array.from(out.outputs.y.data as Float32Array)).toEqual([7]);
    expect(s.provider.started).toHaveLength(1);
    for (let i = 0; i < 100 && s.pool.liveCount() > 0; i++) await sleep(20);
    expect(s.pool.liveCount()).toBe(0);
  });

  it('scales a burst up to max_containers at once and no further', async () => {
    const s = system({ max: 3, runMs: 30 });
    let peak = 0;
    const watch = setInterval(() => (peak = Math.max(peak, s.pool.liveCount())), 2);
    await Promise.all(Array.from({ length: 40 }, (_, i) => s.batcher.submit(row(i))));
    clearInterval(watch);
    expect(peak).toBe(3);
    expect(s.provider.started.length).toBe(3);
  });

  it('keeps min_containers with no traffic and never scales up on zero traffic', async () => {
    const s = system({ min: 1 });
    await s.pool.startReplicas(1);
    await sleep(200);
    expect(s.pool.liveCount()).toBe(1);
    expect(s.provider.started).toHaveLength(1);
  });

  it('replaces a replica that died while there is load', async () => {
    const s = system({ min: 1, runMs: 50 });
    await s.pool.startReplicas(1);
    const pending = s.batcher.submit(row(1));
    await sleep(10);
    s.provider.started[0].crash();
    expect(Array.from((await pending).outputs.y.data as Float32Array)).toEqual([1]); // retried on the replacement
    expect(s.provider.started.length).toBe(2);
    expect(s.pool.readyCount()).toBe(1);
  });

  it('answers a request waiting for a cold start with why the start failed, and tries again for the next one', async () => {
    const s = system({ timeoutMs: 60_000 }); // the deadline is far: the answer comes from the failure
    s.provider.failStarts = 1;
    await expect(s.batcher.submit(row(1))).rejects.toMatchObject({ status: 503, code: 'start_failed', message: /injected failure/ });
    await expect(s.batcher.submit(row(2))).rejects.toMatchObject({ code: 'start_failed' }); // during the backoff: at once
    await sleep(60); // restartBackoffMs 50: past it, a request starts a replica again
    expect(Array.from((await s.batcher.submit(row(3))).outputs.y.data as Float32Array)).toEqual([3]);
    expect(s.pool.failure).toBeUndefined();
  });

  it('backs off a replica that keeps failing to start, and says why', async () => {
    const s = system({ min: 1 });
    s.provider.failStarts = 100;
    await expect(s.batcher.submit(row(1))).rejects.toMatchObject({ status: 503, code: 'start_failed' });
    expect(s.pool.failure).toMatch(/injected failure/);
    await sleep(300);
    const attempts = 100 - s.provider.failStarts;
    expect(attempts).toBeGreaterThanOrEqual(2); // min_containers 1: it keeps trying without requests
    expect(attempts).toBeLessThan(8); // exponential backoff (50, 100, 200 ms...): a handful of tries, not hundreds
  });
});
