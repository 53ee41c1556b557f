import { EventEmitter } from 'node:events';
import PQueue from 'p-queue';
import { unavailable } from '../errors/index.js';
import type { Inputs } from '../tensor/index.js';
import type { Replica, ReplicaProvider, ReplicaStartSpec } from './replica.js';

export type PoolOptions = {
  model: string;
  /** Replicas kept running (the autoscaling issue makes this elastic). */
  size: number;
  /** Batches in flight per replica. */
  maxInputs: number;
  provider: ReplicaProvider;
  spec: Omit<ReplicaStartSpec, 'replicaId' | 'model'>;
  /** @default 120000 */
  startupTimeoutMs?: number;
  /** First delay before restarting a crashed replica; doubles per consecutive failure. @default 500 */
  restartBackoffMs?: number;
  log?: { info(o: object, msg: string): void; warn(o: object, msg: string): void; error(o: object, msg: string): void };
};

type Member = { replica: Replica; queue: PQueue };

/**
 * A model's replicas. `dispatch` sends a batch to the ready replica with the most free slots;
 * a per-replica p-queue caps batches in flight at `maxInputs`.
 */
export class ReplicaPool extends EventEmitter<{ capacity: []; replica: [event: { id: string; state: string; reason?: string }] }> {
  private members: Member[] = [];
  private seq = 0;
  private failures = 0;
  private stopped = false;
  private restartTimer?: NodeJS.Timeout;

  constructor(private opts: PoolOptions) {
    super();
  }

  /** Starts the pool and resolves once every replica is ready (rejects if the first start fails). */
  async start(): Promise<void> {
    await Promise.all(Array.from({ length: this.opts.size }, () => this.startOne()));
  }

  freeSlots(): number {
    let free = 0;
    for (const m of this.members) if (m.replica.state === 'ready') free += Math.max(0, this.opts.maxInputs - m.queue.pending - m.queue.size);
    return free;
  }

  readyCount(): number {
    return this.members.filter((m) => m.replica.state === 'ready').length;
  }

  dispatch(batch: Inputs, opts: { signal?: AbortSignal } = {}): Promise<Inputs> {
    const member = this.pick();
    if (!member) return Promise.reject(unavailable('no_replica', `model ${this.opts.model} has no ready replica`));
    return member.queue.add(() => member.replica.infer(batch), { signal: opts.signal }).finally(() => this.emit('capacity'));
  }

  describe() {
    return this.members.map(({ replica, queue }) => ({
      id: replica.id,
      pid: replica.pid,
      state: replica.state,
      provider: replica.provider,
      inFlight: queue.pending + queue.size,
    }));
  }

  /** Drains every replica (in-flight batches finish) and stops it. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.restartTimer);
    await Promise.all(this.members.map((m) => m.replica.stop()));
  }

  private pick(): Member | undefined {
    let best: Member | undefined;
    let bestLoad = Number.POSITIVE_INFINITY;
    for (const m of this.members) {
      const load = m.queue.pending + m.queue.size;
      if (m.replica.state === 'ready' && load < bestLoad) [best, bestLoad] = [m, load];
    }
    return best;
  }

  private async startOne(): Promise<void> {
    const replicaId = `${this.opts.model}-${++this.seq}`;
    this.emit('replica', { id: replicaId, state: 'starting' });
    const replica = await this.opts.provider.start(
      { ...this.opts.spec, model: this.opts.model, replicaId },
      { startupTimeoutMs: this.opts.startupTimeoutMs ?? 120_000 },
    );
    if (this.stopped) return void (await replica.stop());
    this.failures = 0;
    const member = { replica, queue: new PQueue({ concurrency: this.opts.maxInputs }) };
    this.members.push(member);
    replica.once('exit', (reason) => this.onCrash(member, reason));
    const where = { model: this.opts.model, replica: replicaId, pid: replica.pid, provider: replica.provider };
    if (replica.fallback) this.opts.log?.warn({ ...where, reason: replica.fallback }, `replica ready on the CPU: CUDA is not available`);
    else this.opts.log?.info(where, `replica ready on ${replica.provider}`);
    this.emit('replica', { id: replicaId, state: 'ready' });
    this.emit('capacity');
  }

  private onCrash(member: Member, reason: string): void {
    this.members = this.members.filter((m) => m !== member);
    this.opts.log?.error({ model: this.opts.model, replica: member.replica.id, reason }, 'replica died');
    this.emit('replica', { id: member.replica.id, state: 'stopped', reason });
    if (!this.stopped) this.scheduleRestart();
  }

  private scheduleRestart(): void {
    const delay = (this.opts.restartBackoffMs ?? 500) * 2 ** Math.min(this.failures, 6);
    this.restartTimer = setTimeout(() => {
      this.startOne().catch((err: Error) => {
        this.failures++;
        this.opts.log?.error({ model: this.opts.model, err: err.message }, 'replica restart failed');
        if (!this.stopped) this.scheduleRestart();
      });
    }, delay);
    this.restartTimer.unref();
  }
}
