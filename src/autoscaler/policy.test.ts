import { describe, expect, it } from 'vitest';
import { decide, type PolicyState, type PoolMetrics, type ScalingPolicy } from './policy.js';

const config: ScalingPolicy = { minContainers: 0, maxContainers: 4, bufferContainers: 0, targetInputs: 2, maxBatchSize: 8, scaledownWindowMs: 60_000 };
const idle: PoolMetrics = { queuedRows: 0, inFlightBatches: 0, starting: 0, ready: 0, draining: 0, idleSince: [], arrivalRate: 0 };
const at = (m: Partial<PoolMetrics>) => ({ ...idle, ...m });

type Row = [string, Partial<PoolMetrics>, Partial<ScalingPolicy>, PolicyState, number, number];

describe('decide', () => {
  const rows: Row[] = [
    ['zero traffic, zero replicas: stay at zero', {}, {}, {}, 0, 0],
    ['zero traffic never scales up, even with buffer_containers', {}, { bufferContainers: 2 }, {}, 0, 0],
    ['min_containers holds with no traffic', {}, { minContainers: 1 }, {}, 0, 1],
    ['the first queued request starts a replica (cold start)', { queuedRows: 1 }, {}, {}, 0, 1],
    ['a burst scales up at once, by outstanding batches / target_inputs', { queuedRows: 40, ready: 1, inFlightBatches: 1 }, {}, {}, 0, 3],
    ['never above max_containers', { queuedRows: 1000, ready: 2 }, {}, {}, 0, 4],
    ['starting replicas count: no second cold start for the same request', { queuedRows: 1, starting: 1 }, {}, {}, 0, 1],
    ['buffer_containers adds warm spares while there is load', { inFlightBatches: 1, ready: 1, arrivalRate: 5 }, { bufferContainers: 1 }, {}, 0, 2],
    ['arrivals alone (nothing queued right now) keep one replica', { ready: 1, arrivalRate: 3, idleSince: [0] }, {}, {}, 100_000, 1],
    ['idle, but not for the whole window: hold', { ready: 2, idleSince: [0, 0] }, {}, { belowSince: 50_000 }, 100_000, 2],
    ['load low for the window and a replica idle that long: stop one', { ready: 2, idleSince: [0, 90_000] }, {}, { belowSince: 30_000 }, 100_000, 1],
    ['one at a time: nothing more while one is draining', { ready: 1, draining: 1, idleSince: [0] }, {}, { belowSince: 0 }, 100_000, 1],
    ['a replica still starting is never stopped', { starting: 1 }, {}, { belowSince: 0 }, 100_000, 1],
    ['busy replicas are not idle: hold', { ready: 3, inFlightBatches: 2, idleSince: [] }, {}, { belowSince: 0 }, 100_000, 3],
    ['never below min_containers', { ready: 1, idleSince: [0] }, { minContainers: 1 }, { belowSince: 0 }, 100_000, 1],
    ['scale to zero after the window', { ready: 1, idleSince: [0] }, {}, { belowSince: 0 }, 60_000, 0],
    ['above max_containers (lowered while serving): down to it at once, busy or not', { ready: 3, inFlightBatches: 3 }, { maxContainers: 1 }, {}, 0, 1],
  ];
  it.each(rows)('%s', (_name, metrics, policy, state, now, desired) => {
    expect(decide({ metrics: at(metrics), config: { ...config, ...policy }, state, now }).desired).toBe(desired);
  });

  it('starts the scaledown window when the load first drops, and resets it when load returns', () => {
    const low = decide({ metrics: at({ ready: 2, idleSince: [0, 0] }), config, state: {}, now: 1000 });
    expect(low.state.belowSince).toBe(1000);
    const back = decide({ metrics: at({ ready: 2, inFlightBatches: 4 }), config, state: low.state, now: 2000 });
    expect(back.state.belowSince).toBeUndefined();
  });

  it('bounds flapping: a load that comes back within the window never lets the pool shrink', () => {
    let state: PolicyState = {};
    let desired = 2;
    for (let t = 0; t < 600_000; t += 1000) {
      const busy = Math.floor(t / 30_000) % 2 === 0; // 30 s on, 30 s off
      const metrics = busy ? at({ ready: desired, inFlightBatches: 4, arrivalRate: 50 }) : at({ ready: desired, idleSince: [t - 1000, t - 1000] });
      ({ desired, state } = decide({ metrics, config, state, now: t }));
      expect(desired).toBe(2);
    }
  });

  it('says why', () => {
    expect(decide({ metrics: at({ queuedRows: 3 }), config, state: {}, now: 0 }).reason).toMatch(/scale up to 1: 1 batch outstanding \(3 rows queued\)/);
  });
});
