import { EventEmitter } from 'node:events';
import PQueue from 'p-queue';
import { type GatewayError, unavailable } from '../errors/index.js';
import type { ModelOpened } from '../models/index.js';
import type { Inputs } from '../tensor/index.js';
import type { PoolMetrics } from './policy.js';
import type { ColdStart, Inferred, Replica, ReplicaProvider, ReplicaStartSpec } from './replica.js';

export type Logger = { info(o: object, msg: string): void; warn(o: object, msg: string): void; error(o: object, msg: string): void };

export type PoolOptions = {
  model: string;
  /** Batches in flight per replica. */
  maxInputs: number;
  provider: ReplicaProvider;
  spec: Omit<ReplicaStartSpec, 'replicaId' | 'model'>;
  /** Chooses the device of each new replica (GPU spreading); returns a release function. @default spec.device */
  place?: () => { device: string; release(): void } | null;
  /** @default 120000 */
  startupTimeoutMs?: number;
  /** See StartOptions.hangTimeoutMs. @default 0 (never) */
  hangTimeoutMs?: number;
  /** First delay after a replica fails to start (or dies young); doubles per consecutive failure. @default 1000 */
  restartBackoffMs?: number;
  log?: Logger;
  /** @default performance.now */
  now?: () => number;
};

type Member = {
  id: string;
  state: 'starting' | 'ready' | 'draining';
  device: string;
  startedAt: number;
  replica?: Replica;
  queue?: PQueue;
  /** Ready with nothing in flight since this time (policy clock); undefined while busy. */
  idleSince?: number;
  /** Holders that keep state in this replica (generation loops): it is busy while any holds it. */
  holds: number;
  /** A multiplexed model's models this replica has open, as it keeps them (least recently used first). */
  models?: string[];
  release(): void;
};

export type ReplicaView = {
  id: string;
  pid?: number;
  /** A remote replica's host:port. */
  address?: string;
  state: Member['state'];
  device: string;
  provider?: string;
  transport?: Replica['transport'];
  inFlight: number;
  startedAt: string;
  idleForS?: number;
  coldStart?: ColdStart;
  /** A multiplexed model's models it has open (least recently used first). */
  models?: string[];
};

/**
 * A model's replicas, from zero up. `scaleTo` starts replicas or drains one; `dispatch` sends a batch
 * to the least-loaded ready replica, with a p-queue per replica capping batches in flight at maxInputs.
 * What size the pool should be is the policy's business (see policy.ts and autoscaler.ts).
 */
export class ReplicaPool extends EventEmitter<{
  capacity: [];
  change: [];
  ready: [{ replica: string; device: string; startedAt: number; coldStart?: ColdStart }];
  /** A replica opened one of a multiplexed model's models for a batch. */
  opened: [ModelOpened & { replica: string }];
}> {
  private members: Member[] = [];
  private seq = 0;
  private failures = 0;
  private retryAt = 0;
  private stopped = false;
  private devicesFull = false;
  /** Why the last start failed, while the pool is backing off. */
  failure?: string;
  /** The failure was a start that failed (not a replica that died young, whose queue waits for its replacement). */
  private startFailed = false;
  private readonly now: () => number;

  constructor(private opts: PoolOptions) {
    super();
    this.now = opts.now ?? (() => performance.now());
  }

  freeSlots(): number {
    let free = 0;
    for (const m of this.members) if (m.state === 'ready' && m.queue) free += Math.max(0, this.opts.maxInputs - m.queue.pending - m.queue.size);
    return free;
  }

  readyCount(): number {
    return this.members.filter((m) => m.state === 'ready').length;
  }

  /** Starting or ready: what the policy counts as the pool's size. */
  liveCount(): number {
    return this.members.filter((m) => m.state !== 'draining').length;
  }

  metrics(): Omit<PoolMetrics, 'queuedRows' | 'arrivalRate'> {
    const count = (s: Member['state']) => this.members.filter((m) => m.state === s).length;
    let inFlightBatches = 0;
    const idleSince: number[] = [];
    for (const m of this.members) {
      if (m.queue) inFlightBatches += m.queue.pending + m.queue.size + m.holds;
      if (m.state === 'ready' && m.idleSince !== undefined) idleSince.push(m.idleSince);
    }
    return { starting: count('starting'), ready: count('ready'), draining: count('draining'), inFlightBatches, idleSince };
  }

  /** `modelId`: a multiplexed model's model to run it (a replica that has it open is chosen first). */
  dispatch(batch: Inputs, opts: { signal?: AbortSignal; modelId?: string } = {}): Promise<Inferred> {
    const member = this.pick(opts.modelId);
    if (!member?.queue || !member.replica) return Promise.reject(unavailable('no_replica', `model ${this.opts.model} has no ready replica`));
    const { queue, replica } = member;
    member.idleSince = undefined;
    if (opts.modelId !== undefined) this.opened(member, opts.modelId);
    return queue
      .add(() => replica.infer(batch, opts.modelId), { signal: opts.signal })
      .then((inferred) => {
        if (inferred.opened) this.emit('opened', { ...inferred.opened, replica: member.id });
        return inferred;
      })
      .finally(() => {
        if (queue.pending + queue.size === 0 && member.holds === 0) member.idleSince = this.now();
        this.emit('capacity');
      });
  }

  /**
   * What a request is answered while no replica can serve it for a while: none ready or starting, and the
   * last start failed less than its backoff ago. Waiting would only run out the request's deadline.
   */
  startFailure(): GatewayError | undefined {
    const retryInMs = this.retryAt - this.now();
    if (!this.startFailed || retryInMs <= 0 || this.members.some((m) => m.state !== 'draining')) return undefined;
    const retryInS = Math.ceil(retryInMs / 1000);
    return unavailable('start_failed', `model ${this.opts.model} has no replica: ${this.failure} (next start in ${retryInS} s)`, retryInS);
  }

  /** Ready replicas, for callers that keep state in one (a generation loop and its KV caches). */
  ready(): Replica[] {
    return this.members.filter((m) => m.state === 'ready' && m.replica).map((m) => m.replica as Replica);
  }

  /** Marks a replica busy until the returned function is called: never idle, so never scaled down. */
  hold(replicaId: string): () => void {
    const member = this.members.find((m) => m.id === replicaId);
    if (!member) return () => {};
    member.holds++;
    member.idleSince = undefined;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--member.holds === 0 && (!member.queue || member.queue.pending + member.queue.size === 0)) member.idleSince = this.now();
      this.emit('capacity');
    };
  }

  /**
   * Moves toward `desired` replicas: starts the missing ones at once (unless backing off after failed
   * starts), or drains one idle ready replica — the one idle longest; a starting replica is never stopped.
   * `overMax` (above max_containers): drains every replica past `desired` now — starting ones first, then the
   * idle, then busy ones (each finishes what it has in flight).
   */
  scaleTo(desired: number, reason: string, overMax = false): void {
    if (this.stopped) return;
    const live = this.liveCount();
    if (desired > live) {
      if (this.now() < this.retryAt) return;
      this.opts.log?.info({ model: this.opts.model, from: live, to: desired, reason }, 'scaling up');
      for (let i = live; i < desired; i++) this.startOne().catch(() => {});
    } else if (desired < live && overMax) {
      const rank = (m: Member) => (m.state === 'starting' ? 0 : m.idleSince !== undefined ? 1 : 2);
      const excess = this.members
        .filter((m) => m.state !== 'draining')
        .sort((a, b) => rank(a) - rank(b) || (a.idleSince ?? Number.POSITIVE_INFINITY) - (b.idleSince ?? Number.POSITIVE_INFINITY))
        .slice(0, live - desired);
      this.opts.log?.info({ model: this.opts.model, from: live, to: desired, replicas: excess.map((m) => m.id), reason }, 'scaling down');
      for (const m of excess) this.drain(m);
    } else if (desired < live) {
      const idle = this.members
        .filter((m) => m.state === 'ready' && m.idleSince !== undefined)
        .sort((a, b) => (a.idleSince as number) - (b.idleSince as number))[0];
      if (!idle) return;
      this.opts.log?.info({ model: this.opts.model, from: live, to: live - 1, replica: idle.id, reason }, 'scaling down');
      this.drain(idle);
    }
  }

  /** Starts `n` replicas and resolves once all are ready; rejects if any fails (used at boot). */
  async startReplicas(n: number): Promise<void> {
    await Promise.all(Array.from({ length: n }, () => this.startOne()));
  }

  describe(): ReplicaView[] {
    const now = this.now();
    return this.members.map((m) => ({
      id: m.id,
      pid: m.replica?.pid,
      address: m.replica?.address,
      state: m.state,
      device: m.device,
      provider: m.replica?.provider,
      transport: m.replica?.transport,
      inFlight: (m.queue ? m.queue.pending + m.queue.size : 0) + m.holds,
      startedAt: new Date(Date.now() - (now - m.startedAt)).toISOString(),
      idleForS: m.idleSince === undefined ? undefined : Math.round(now - m.idleSince) / 1000,
      coldStart: m.replica?.coldStart,
      ...(m.models && { models: [...m.models] }),
      cudaOptions: m.replica?.cudaOptions,
      sessionThread: m.replica?.sessionThread,
      sessions: m.replica?.sessions,
    }));
  }

  /** Drains every replica (in-flight batches finish); the pool may start replicas again (a model unloaded). */
  async drainAll(): Promise<void> {
    await Promise.all(this.members.map((m) => this.drain(m)));
  }

  /** Drains every replica (in-flight batches finish) and stops it. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.members.map((m) => this.drain(m)));
  }

  /**
   * The least-loaded ready replica; for a multiplexed model's batch, the least-loaded of those with its model
   * open while one has a free slot (Ray Serve's multiplexed routing: opening a model costs seconds).
   */
  private pick(modelId?: string): Member | undefined {
    let best: Member | undefined;
    let bestLoad = Number.POSITIVE_INFINITY;
    let bestOpen = false;
    for (const m of this.members) {
      if (m.state !== 'ready' || !m.queue) continue;
      const load = m.queue.pending + m.queue.size;
      const open = modelId !== undefined && load < this.opts.maxInputs && (m.models?.includes(modelId) ?? false);
      if ((open && !bestOpen) || (open === bestOpen && load < bestLoad)) [best, bestLoad, bestOpen] = [m, load, open];
    }
    return best;
  }

  /** The replica opens (or uses again) a model: as it keeps them, most recently used last, its limit's worth. */
  private opened(member: Member, modelId: string): void {
    const models = (member.models ?? []).filter((id) => id !== modelId);
    models.push(modelId);
    member.models = models.slice(-(this.opts.spec.multiplex?.maxModels ?? 1));
  }

  private async startOne(): Promise<void> {
    const placed = this.opts.place ? this.opts.place() : { device: this.opts.spec.device, release() {} };
    if (!placed) {
      // Said once per stretch of full devices, not on every autoscaler tick that asks again.
      if (!this.devicesFull) this.opts.log?.warn({ model: this.opts.model }, 'no device has room for another replica (replicas_per_gpu)');
      this.devicesFull = true;
      return;
    }
    this.devicesFull = false;
    const member: Member = {
      id: `${this.opts.model}-${++this.seq}`,
      state: 'starting',
      device: placed.device,
      startedAt: this.now(),
      release: placed.release,
      holds: 0,
    };
    this.members.push(member);
    this.emit('change');
    let replica: Replica;
    try {
      replica = await this.opts.provider.start(
        { ...this.opts.spec, device: placed.device, model: this.opts.model, replicaId: member.id },
        { startupTimeoutMs: this.opts.startupTimeoutMs ?? 120_000, hangTimeoutMs: this.opts.hangTimeoutMs },
      );
    } catch (err) {
      this.remove(member);
      this.backOff((err as Error).message, true);
      throw err;
    }
    if (this.stopped || member.state !== 'starting') {
      this.remove(member);
      await replica.stop();
      return;
    }
    Object.assign(member, { state: 'ready', replica, queue: new PQueue({ concurrency: this.opts.maxInputs }), idleSince: this.now() });
    const multiplex = this.opts.spec.multiplex;
    if (multiplex) member.models = [...multiplex.open]; // (it starts with these open, in this order)
    this.failures = 0;
    this.failure = undefined;
    this.startFailed = false;
    replica.once('exit', (reason) => this.onCrash(member, reason));
    const where = {
      model: this.opts.model,
      replica: member.id,
      pid: replica.pid,
      device: member.device,
      provider: replica.provider,
      transport: replica.transport,
      coldStart: replica.coldStart,
      cudaOptions: replica.cudaOptions,
      sessionThread: replica.sessionThread,
      sessions: replica.sessions,
    };
    if (replica.fallback) this.opts.log?.warn({ ...where, reason: replica.fallback }, 'replica ready on the CPU: CUDA is not available');
    else this.opts.log?.info(where, `replica ready on ${replica.provider}`);
    this.emit('ready', { replica: member.id, device: member.device, startedAt: Date.now() - (this.now() - member.startedAt), coldStart: replica.coldStart });
    this.emit('change');
    this.emit('capacity');
  }

  private drain(member: Member): Promise<void> {
    if (member.state === 'starting') {
      member.state = 'draining'; // startOne stops it once it is up
      return Promise.resolve();
    }
    member.state = 'draining';
    this.emit('change');
    return (member.replica as Replica).stop().finally(() => this.remove(member));
  }

  private onCrash(member: Member, reason: string): void {
    this.remove(member);
    this.opts.log?.error({ model: this.opts.model, replica: member.id, pid: member.replica?.pid, reason }, 'replica died');
    // Dying within a minute of starting counts as a failed start: a crash loop backs off.
    if (this.now() - member.startedAt < 60_000) this.backOff(`replica ${member.id} ${reason} soon after starting`, false);
  }

  private backOff(reason: string, startFailed: boolean): void {
    const delay = (this.opts.restartBackoffMs ?? 1000) * 2 ** Math.min(this.failures, 6);
    this.failures++;
    this.failure = reason;
    this.startFailed = startFailed;
    this.retryAt = this.now() + delay;
    const what = startFailed ? 'replica failed to start' : 'replica died soon after starting';
    this.opts.log?.error({ model: this.opts.model, reason, retryInMs: delay, failures: this.failures }, `${what}; backing off`);
    this.emit('change'); // waiting requests learn now that nothing is coming (startFailure)
    setTimeout(() => this.emit('change'), delay).unref();
  }

  private remove(member: Member): void {
    const at = this.members.indexOf(member);
    if (at < 0) return;
    this.members.splice(at, 1);
    member.release();
    this.emit('change');
  }
}
