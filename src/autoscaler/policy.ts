/**
 * The scaling decision, a pure function of what the pool and its queue look like now: tested with
 * tables, no timers. The Autoscaler around it gathers these inputs and starts or drains replicas.
 */
export type PoolMetrics = {
  /** Rows waiting in the model's queue. */
  queuedRows: number;
  /** Batches sent to replicas and not yet answered. */
  inFlightBatches: number;
  /** Replicas by state; starting ones count as capacity on the way (and are never idle). */
  starting: number;
  ready: number;
  draining: number;
  /** For each ready replica with nothing in flight: since when (same clock as `now`). */
  idleSince: number[];
  /** Rows per second that arrived recently. */
  arrivalRate: number;
};

export type ScalingPolicy = {
  minContainers: number;
  maxContainers: number;
  /** Extra replicas kept above what the load needs, while there is load. */
  bufferContainers: number;
  /** In-flight batches per replica to aim for. */
  targetInputs: number;
  maxBatchSize: number;
  /** How long a replica must sit idle (and the load stay below the pool) before one is stopped. */
  scaledownWindowMs: number;
};

export type PolicyState = {
  /** Since when the load has needed fewer replicas than the pool has (undefined: it has not). */
  belowSince?: number;
};

/** `overMax`: the pool is above max_containers (lowered while serving): the pool drains the excess at once, busy or not. */
export type Decision = { desired: number; state: PolicyState; reason: string; overMax?: boolean };

export function decide({ metrics: m, config: c, state, now }: { metrics: PoolMetrics; config: ScalingPolicy; state: PolicyState; now: number }): Decision {
  const current = m.starting + m.ready;
  const outstanding = m.inFlightBatches + Math.ceil(m.queuedRows / c.maxBatchSize);
  const busy = outstanding > 0 || m.arrivalRate > 0;
  // Zero traffic needs zero replicas (then min_containers holds): never scale up on no load.
  const needed = busy ? Math.max(1, Math.ceil(outstanding / c.targetInputs)) + c.bufferContainers : 0;
  const target = Math.min(c.maxContainers, Math.max(c.minContainers, needed));
  const load = `${outstanding} batch${outstanding === 1 ? '' : 'es'} outstanding (${m.queuedRows} rows queued), ${m.arrivalRate.toFixed(1)} rows/s`;

  if (target > current) return { desired: target, state: {}, reason: `scale up to ${target}: ${load}` };
  // max_containers is "never more": one lowered while serving holds at once, not one replica a window.
  if (current > c.maxContainers)
    return { desired: c.maxContainers, state: {}, reason: `scale down to ${c.maxContainers}: above max_containers, ${load}`, overMax: true };
  if (target === current) return { desired: current, state: {}, reason: `steady at ${current}: ${load}` };

  // Fewer are needed. Stop one at a time, only once the load has stayed low for a whole window and a
  // ready replica has been idle that long; a starting replica is never idle, so never stopped.
  const belowSince = state.belowSince ?? now;
  const idleLongEnough = m.idleSince.some((t) => now - t >= c.scaledownWindowMs);
  if (now - belowSince >= c.scaledownWindowMs && idleLongEnough && m.draining === 0) {
    return { desired: current - 1, state: { belowSince }, reason: `scale down to ${current - 1}: idle for ${c.scaledownWindowMs / 1000} s, ${load}` };
  }
  return { desired: current, state: { belowSince }, reason: `holding ${current} (${target} needed) until the scaledown window passes: ${load}` };
}
