import { type Decision, decide, type PolicyState, type ScalingPolicy } from './policy.js';
import type { Logger, ReplicaPool } from './pool.js';

export type Demand = {
  /** Rows waiting in the model's queue. */
  queuedRows: number;
  /** Rows ever submitted (a counter: the arrival rate is its slope). */
  arrivedRows: number;
};

export type AutoscalerOptions = {
  pool: ReplicaPool;
  policy: ScalingPolicy;
  /** The model's queue, read on every decision. */
  demand: () => Demand;
  /** How often to decide when nothing pokes. @default 250 */
  tickMs?: number;
  /** The window the arrival rate is measured over. @default 2000 */
  rateWindowMs?: number;
  log?: Logger;
  /** @default performance.now */
  now?: () => number;
};

/**
 * The shell around `decide`: gathers the pool's and the queue's numbers, asks the policy, applies the
 * answer. Decides on a timer and at once when poked (a request found no free replica, a replica died),
 * so a burst never waits for the next tick.
 */
export class Autoscaler {
  private state: PolicyState = {};
  private timer?: NodeJS.Timeout;
  private scheduled = false;
  private samples: { at: number; rows: number }[] = [];
  private readonly now: () => number;
  last?: Decision & { at: number };

  constructor(private opts: AutoscalerOptions) {
    this.now = opts.now ?? (() => performance.now());
  }

  /** Starts deciding (again, after `stop`: a model loaded again). */
  start(): void {
    if (this.timer) return;
    this.opts.pool.on('change', this.poke);
    this.timer = setInterval(() => this.reconcile(), this.opts.tickMs ?? 250);
    this.timer.unref();
  }

  /** Decide soon (once per turn of the event loop, however many pokes); nothing while stopped. */
  readonly poke = (): void => {
    if (this.scheduled || !this.timer) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.reconcile();
    });
  };

  reconcile(): Decision {
    const now = this.now();
    const demand = this.opts.demand();
    const decision = decide({
      metrics: { ...this.opts.pool.metrics(), queuedRows: demand.queuedRows, arrivalRate: this.arrivalRate(now, demand.arrivedRows) },
      config: this.opts.policy,
      state: this.state,
      now,
    });
    this.state = decision.state;
    this.last = { ...decision, at: now };
    if (decision.desired !== this.opts.pool.liveCount()) this.opts.pool.scaleTo(decision.desired, decision.reason, decision.overMax);
    return decision;
  }

  /** Changes the policy while the pool serves (Modal's update_autoscaler); the pool follows at once. */
  update(changes: Partial<ScalingPolicy>): ScalingPolicy {
    Object.assign(this.opts.policy, changes);
    this.state = {}; // a scale-down window under the old bounds does not carry over
    this.poke();
    return this.opts.policy;
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.last = undefined; // (a model unloaded: no decision stands, /admin/pools says so)
    this.opts.pool.off('change', this.poke);
  }

  private arrivalRate(now: number, rows: number): number {
    const window = this.opts.rateWindowMs ?? 2000;
    this.samples.push({ at: now, rows });
    while (this.samples.length > 2 && now - this.samples[1].at >= window) this.samples.shift();
    const first = this.samples[0];
    const seconds = (now - first.at) / 1000;
    return seconds > 0 ? (rows - first.rows) / seconds : 0;
  }
}
