import { EventEmitter } from 'node:events';
import { badInput, cancelled, deadlineExceeded, GatewayError, internal, modelFailed, unavailable } from '../errors/index.js';
import type { Inputs } from '../tensor/index.js';
import { type BatchRule, decideBatch, type QueuedView } from './decide.js';
import { FairShare } from './fair-share.js';
import type { ResponseCache } from './response-cache.js';
import { firstRows, groupKey, type PadRule, paddedSize, padRows, splitOutputs, stackInputs } from './stack.js';
import { ModelStatistics, type Phases } from './statistics.js';

/** What the batcher needs of a replica pool (the autoscaler's pool is one). */
export interface BatchTarget {
  /** A batch's outputs, and the time the model took on them (as its replica measured it). */
  dispatch(batch: Inputs, opts: { signal?: AbortSignal; modelId?: string }): Promise<{ outputs: Inputs; computeMs: number }>;
  /** Batches the pool could start right now. */
  freeSlots(): number;
  /** Replicas ready to take a batch (0: requests wait for a cold start). */
  readyCount(): number;
  /** The error for requests while no replica can come soon (its starts keep failing); undefined otherwise. */
  startFailure(): Error | undefined;
  /** capacity: a batch may go now; change: replicas came, went or failed to start. */
  on(event: 'capacity' | 'change', listener: () => void): unknown;
  off(event: 'capacity' | 'change', listener: () => void): unknown;
}

export type BatcherOptions = {
  model: string;
  pool: BatchTarget;
  /** Whether requests may be stacked along axis 0; when false every request is its own batch. */
  batchable: boolean;
  /** Most rows per batch. */
  maxBatchSize: number;
  /** Longest the first request of a batch waits for company, in ms. */
  waitMs: number;
  /** Most rows queued; past it submit rejects with 503. */
  maxQueueSize: number;
  /** Time a request may wait in the queue, in ms, before it fails with 504. */
  timeoutMs: number;
  /** Paddable axes by input name. @default {} */
  pad?: Record<string, PadRule>;
  /** The only batch sizes sent (increasing): a batch is padded with zero rows up to the nearest. @default any size */
  batchSizes?: number[];
  /** Callers take turns in the queue (requests' `caller`); false: first come, first served. @default true */
  fairShare?: boolean;
  /**
   * Whether a request not yet queued could still join a batch; false dispatches at once instead of waiting
   * waitMs for company that cannot come (a stateful model whose every sequence has its request queued already).
   * @default always true
   */
  companyExpected?: () => boolean;
  /** Answers kept by their inputs (the model's response_cache_mb): a request seen before is answered from it. */
  cache?: ResponseCache;
  /** Requests' model ids are versions (a versioned model): Triton's statistics are kept per version. @default false */
  versioned?: boolean;
  /** @default performance.now */
  now?: () => number;
};

export type SubmitOptions = {
  signal?: AbortSignal;
  /** Absolute time (on the batcher's clock) after which the request is failed with 504; the sooner of this and timeoutMs wins. */
  deadline?: number;
  /** Higher goes first. @default 0 */
  priority?: number;
  /** The caller's trace context (opaque here): the batch that carries this request links to it. */
  trace?: unknown;
  /** Who sent it (the caller's identity): callers take turns in the queue (see QueuedView.caller). */
  caller?: string;
  /** A multiplexed model's model to run it: batched only with requests for the same one. */
  modelId?: string;
};

/** Told when a batch has been answered (or failed): what telemetry needs, nothing of HTTP. */
export type BatchEvent = { rows: number; requests: number; startedAt: number; durationMs: number; queueMs: number[]; traces: unknown[]; ok: boolean };

/** A request's answer: its outputs, its time in the queue and the rows of the batch it went in (0: from the cache). */
export type Submitted = { outputs: Inputs; queueMs: number; batchSize: number };

type Item = QueuedView & {
  inputs: Inputs;
  signal?: AbortSignal;
  settled: boolean;
  /** Sent again once after its replica died mid-batch (inference is idempotent). */
  retried: boolean;
  trace?: unknown;
  modelId?: string;
  resolve(s: Submitted): void;
  reject(e: Error): void;
  cleanup(): void;
};

export type BatcherStats = {
  queuedRequests: number;
  queuedRows: number;
  inFlightBatches: number;
  requests: number;
  /** Rows accepted into the queue, ever (the arrival rate is its slope). */
  arrivedRows: number;
  batches: number;
  rows: number;
  /** How many batches had N rows. */
  batchSizes: Record<number, number>;
  paddingRows: number;
  /** Requests run again alone after the model failed the batch they were in (only the one causing it fails then). */
  isolated: number;
  /** Requests answered from the response cache (counted in `requests`, not in `arrivedRows`: no replica saw them). */
  cacheHits: number;
  shed: Record<'queue_full' | 'deadline' | 'cancelled' | 'start_failed', number>;
};

/** `answer`, or `cancelled` as soon as `signal` aborts (the client of a request waiting on another's went away). */
function whileWanted<T>(answer: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return answer;
  if (signal.aborted) return Promise.reject(cancelled());
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(cancelled());
    signal.addEventListener('abort', onAbort, { once: true });
    answer.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/**
 * A model's dynamic batcher: a bounded queue, and a thin shell of timers and I/O around the pure
 * `decideBatch`. Every submitted promise settles exactly once.
 */
export class Batcher extends EventEmitter<{
  batch: [BatchEvent];
  shed: [{ reason: string }];
  starved: [];
  cache: [{ hit: boolean }];
  /** Requests of a batch the model failed, queued again to run alone. */
  isolated: [{ requests: number }];
}> {
  private queue: Item[] = [];
  private queuedRows = 0;
  private inFlight = 0;
  private timer?: NodeJS.Timeout;
  private timerAt = Number.POSITIVE_INFINITY;
  private readonly now: () => number;
  private readonly rule: BatchRule;
  private readonly onCapacity = () => this.pump();
  private readonly onChange = () => this.failIfNoReplicaComing();
  private idleWaiters: (() => void)[] = [];
  readonly counts = {
    requests: 0,
    arrivedRows: 0,
    batches: 0,
    rows: 0,
    batchSizes: {} as Record<number, number>,
    /** Zero rows added to reach one of `batchSizes`. */
    paddingRows: 0,
    isolated: 0,
    cacheHits: 0,
    shed: { queue_full: 0, deadline: 0, cancelled: 0, start_failed: 0 },
  };
  /** Triton's statistics (GET /v2/models/{m}/stats): the model's, or a versioned model's per version. */
  private readonly byVersion = new Map<string, ModelStatistics>();
  private readonly fair = new FairShare();

  constructor(private opts: BatcherOptions) {
    super();
    this.now = opts.now ?? (() => performance.now());
    this.rule = { maxBatchSize: opts.batchable ? opts.maxBatchSize : 1, waitMs: opts.waitMs };
    opts.pool.on('capacity', this.onCapacity);
    opts.pool.on('change', this.onChange);
  }

  /** The statistics that count a request for `modelId` (its version's, or the model's: version 1). */
  statisticsOf(modelId?: string): ModelStatistics {
    const version = this.opts.versioned && modelId !== undefined ? modelId : '1';
    const stats = this.byVersion.get(version) ?? new ModelStatistics(version);
    this.byVersion.set(version, stats);
    return stats;
  }

  get statistics(): ModelStatistics {
    return this.statisticsOf();
  }

  submit(inputs: Inputs, opts: SubmitOptions = {}): Promise<Submitted> {
    // A request no batch could take is a 400 before anything is counted (a cache lookup included).
    const rows = this.rowsOf(inputs);
    if (rows > this.rule.maxBatchSize)
      return Promise.reject(
        badInput(`the request has ${rows} rows; model ${this.opts.model} takes at most max_batch_size ${this.rule.maxBatchSize} per batch`),
      );
    const cache = this.opts.cache;
    if (!cache) return this.enqueue(inputs, opts);
    const start = this.now();
    const key = cache.key(inputs, opts.modelId); // now: the inputs may be views of a body given back once answered
    const kept = cache.get(key);
    const flying = kept ? undefined : cache.flying(key);
    const lookupMs = this.now() - start;
    const hit = (outputs: Inputs): Submitted => {
      this.counts.requests++;
      this.counts.cacheHits++;
      // (waiting for the same request on its way is queueing, as Triton counts a hit's wait in `queue`)
      const waitMs = this.now() - start - lookupMs;
      this.statisticsOf(opts.modelId).cacheHit(lookupMs, waitMs);
      return { outputs, queueMs: waitMs, batchSize: 0 };
    };
    this.emit('cache', { hit: kept !== undefined || flying !== undefined });
    if (kept) return Promise.resolve(hit(kept));
    // The same request is on its way: its answer is this one's too (if it fails, this one runs itself).
    if (flying) return whileWanted(flying, opts.signal).then(hit, (err) => (opts.signal?.aborted ? Promise.reject(err) : this.enqueue(inputs, opts)));
    this.statisticsOf(opts.modelId).cacheMiss(lookupMs);
    const answer = this.enqueue(inputs, opts);
    cache.fly(
      key,
      answer.then((a) => a.outputs),
    );
    return answer;
  }

  /** A request's rows: its first dimension where the model batches, else one. */
  private rowsOf(inputs: Inputs): number {
    const first = Object.values(inputs)[0];
    return this.opts.batchable && first ? first.shape[0] : 1;
  }

  private enqueue(inputs: Inputs, opts: SubmitOptions): Promise<Submitted> {
    const { signal } = opts;
    if (signal?.aborted) return Promise.reject(cancelled());
    const rows = this.rowsOf(inputs);
    // (an empty queue takes any request a batch can hold: one of more rows than max_queue_size would never fit)
    if (this.queuedRows > 0 && this.queuedRows + rows > this.opts.maxQueueSize) {
      this.shed('queue_full');
      this.statisticsOf(opts.modelId).failed(0);
      return Promise.reject(unavailable('queue_full', `the queue of model ${this.opts.model} is full (${this.queuedRows} of ${this.opts.maxQueueSize} rows)`));
    }
    const startFailure = this.opts.pool.startFailure();
    if (startFailure) {
      this.shed('start_failed');
      this.statisticsOf(opts.modelId).failed(0);
      return Promise.reject(startFailure);
    }
    const now = this.now();
    return new Promise<Submitted>((resolve, reject) => {
      const item: Item = {
        rows,
        group: `${opts.modelId === undefined ? '' : `${opts.modelId}\u0000`}${this.opts.batchable ? groupKey(inputs, this.opts.pad ?? {}) : ''}`,
        modelId: opts.modelId,
        enqueuedAt: now,
        deadline: Math.min(opts.deadline ?? Number.POSITIVE_INFINITY, now + this.opts.timeoutMs),
        priority: opts.priority ?? 0,
        turn: this.fair.turn(this.opts.fairShare === false ? undefined : opts.caller),
        inputs,
        signal,
        settled: false,
        retried: false,
        trace: opts.trace,
        resolve,
        reject,
        cleanup: () => signal?.removeEventListener('abort', onAbort),
      };
      // A client that goes away leaves the queue at once; in a formed batch its row is dropped from the result.
      const onAbort = () => {
        if (this.remove(item)) this.pump();
        this.shed('cancelled');
        this.settle(item, cancelled());
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.queue.push(item);
      this.queuedRows += rows;
      this.counts.requests++;
      this.counts.arrivedRows += rows;
      // No replica can take it now: tell the autoscaler at once (a burst must not wait for its tick).
      if (this.opts.pool.freeSlots() === 0) this.emit('starved');
      this.pump();
    });
  }

  stats(): BatcherStats {
    return {
      queuedRequests: this.queue.length,
      queuedRows: this.queuedRows,
      inFlightBatches: this.inFlight,
      ...this.counts,
      batchSizes: { ...this.counts.batchSizes },
      shed: { ...this.counts.shed },
    };
  }

  /** Resolves when nothing is queued or in flight (for graceful shutdown). */
  idle(): Promise<void> {
    if (this.queue.length === 0 && this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Stops listening to the pool; queued requests still fail by their deadlines. */
  close(): void {
    this.opts.pool.off('capacity', this.onCapacity);
    this.opts.pool.off('change', this.onChange);
  }

  /** A start failed and no other replica is ready or starting: the queue is answered with why, not left to time out. */
  private failIfNoReplicaComing(): void {
    const error = this.queue.length > 0 && this.opts.pool.startFailure();
    if (!error) return;
    for (const item of this.queue.splice(0)) {
      this.queuedRows -= item.rows;
      this.shed('start_failed');
      this.settle(item, error);
    }
    this.notifyIdle();
  }

  private pump(): void {
    for (;;) {
      const now = this.now();
      const rule = this.opts.companyExpected?.() === false ? { ...this.rule, waitMs: 0 } : this.rule;
      const decision = decideBatch(this.queue, { freeSlots: this.opts.pool.freeSlots(), now, rule });
      const expired = decision.expire.map((i) => this.queue[i]);
      const batch = decision.dispatch.map((i) => this.queue[i]);
      for (const item of [...expired, ...batch]) this.remove(item);
      for (const item of batch) this.fair.served(item.turn ?? 0);
      for (const item of expired) {
        this.shed('deadline');
        const waited = Math.round(now - item.enqueuedAt);
        // With no replica up, the deadline passed waiting for a cold start: capacity, not this request, is short.
        const error =
          this.opts.pool.readyCount() === 0
            ? unavailable('no_replica', `model ${this.opts.model} has no ready replica: waited ${waited} ms for one to start`, 5)
            : deadlineExceeded(`model ${this.opts.model}: waited ${waited} ms in the queue, past the request's deadline`);
        this.settle(item, error);
      }
      if (batch.length > 0) {
        this.send(batch, now);
        continue;
      }
      this.arm(decision.wakeAt);
      this.notifyIdle();
      return;
    }
  }

  private arm(at: number | null): void {
    if (at === this.timerAt) return;
    clearTimeout(this.timer);
    this.timerAt = at ?? Number.POSITIVE_INFINITY;
    if (at === null) return;
    this.timer = setTimeout(
      () => {
        this.timerAt = Number.POSITIVE_INFINITY;
        this.pump();
      },
      Math.max(0, at - this.now()),
    );
  }

  private send(items: Item[], now: number): void {
    const rows = items.map((i) => i.rows);
    const batchSize = rows.reduce((a, b) => a + b, 0);
    this.inFlight++;
    const startedAt = Date.now();
    const sentAt = performance.now();
    const report = (ok: boolean) => {
      if (this.listenerCount('batch') === 0) return;
      const traces = items.map((i) => i.trace).filter((t) => t !== undefined);
      this.emit('batch', {
        rows: batchSize,
        requests: items.length,
        startedAt,
        durationMs: performance.now() - sentAt,
        queueMs: items.map((i) => now - i.enqueuedAt),
        traces,
        ok,
      });
    };
    let batch: Inputs;
    const sent = this.opts.batchable && this.opts.batchSizes ? paddedSize(batchSize, this.opts.batchSizes) : batchSize;
    try {
      batch = this.opts.batchable
        ? stackInputs(
            items.map((i) => i.inputs),
            this.opts.pad ?? {},
          )
        : items[0].inputs;
      if (sent > batchSize) batch = padRows(batch, sent);
    } catch (err) {
      this.inFlight--;
      for (const item of items) this.settle(item, internal(`could not form a batch: ${(err as Error).message}`, err));
      return;
    }
    // Every row cancelled: the batch's signal tells the pool it need not run at all.
    const allGone = new AbortController();
    const onAbort = () => items.every((i) => i.settled) && allGone.abort();
    for (const item of items) item.signal?.addEventListener('abort', onAbort, { once: true });
    this.opts.pool
      .dispatch(batch, { signal: allGone.signal, modelId: items[0].modelId })
      .then(({ outputs, computeMs }) => {
        // Counted once run (as Triton's inference and execution counts): a failed batch's requests run again.
        this.counts.batches++;
        this.counts.rows += batchSize;
        this.counts.batchSizes[batchSize] = (this.counts.batchSizes[batchSize] ?? 0) + 1;
        this.counts.paddingRows += sent - batchSize;
        report(true);
        const answered = performance.now();
        const parts = this.opts.batchable ? splitOutputs(sent > batchSize ? firstRows(outputs, batchSize) : outputs, rows) : [outputs];
        // Triton's phases: forming the batch and moving it to the replica and back, the model, splitting the outputs.
        const phases: Phases = { input: Math.max(0, answered - sentAt - computeMs), infer: computeMs, output: performance.now() - answered };
        this.statisticsOf(items[0].modelId).executed(sent, phases); // the size the model ran (padded to one of batch_sizes)
        const end = this.now();
        for (const [i, item] of items.entries()) {
          if (!item.settled) this.statisticsOf(item.modelId).succeeded(item.rows, end - item.enqueuedAt, now - item.enqueuedAt, phases);
          this.settle(item, null, { outputs: parts[i], queueMs: now - item.enqueuedAt, batchSize });
        }
      })
      .catch((err: Error) => {
        report(false);
        // (settled only on a request that ran alone: of several, each runs again alone first)
        const error = err instanceof GatewayError ? err : modelFailed(`model ${this.opts.model} failed: ${err.message}`, err);
        // The model's own error on a batch of several requests may come of one request's inputs (a token id past an
        // embedding table, values it cannot take): each is run again alone, so that only the one causing it fails.
        const isolate = !(err instanceof GatewayError) && items.filter((i) => !i.settled).length > 1;
        const again: Item[] = [];
        for (const item of items) {
          if (item.settled) continue;
          if (error.code === 'replica_lost' && !item.retried) again.push(this.retried(item));
          else if (isolate) again.push(this.alone(item));
          else this.settle(item, error);
        }
        this.requeue(again);
        if (isolate) this.emit('isolated', { requests: again.length });
      })
      .finally(() => {
        for (const item of items) item.signal?.removeEventListener('abort', onAbort);
        this.inFlight--;
        this.pump();
      });
  }

  /** Back to the front of the queue, in their order, keeping their deadlines: they wait for a replica like any other. */
  private requeue(items: Item[]): void {
    this.queue.unshift(...items);
    for (const item of items) this.queuedRows += item.rows;
  }

  /** An item sent again once after its replica died mid-batch (inference is idempotent). */
  private retried(item: Item): Item {
    item.retried = true;
    return item;
  }

  /** An item of a batch the model failed, to be run in a batch of its own (a group no other item is in). */
  private alone(item: Item): Item {
    item.group = `${item.group}\u0000alone ${++this.counts.isolated}`;
    return item;
  }

  private remove(item: Item): boolean {
    const at = this.queue.indexOf(item);
    if (at < 0) return false;
    this.queue.splice(at, 1);
    this.queuedRows -= item.rows;
    return true;
  }

  private settle(item: Item, error: Error | null, result?: Submitted): void {
    if (item.settled) return;
    item.settled = true;
    if (error) this.statisticsOf(item.modelId).failed(this.now() - item.enqueuedAt);
    item.cleanup();
    if (error) item.reject(error);
    else item.resolve(result as Submitted);
  }

  private shed(reason: keyof BatcherStats['shed']): void {
    this.counts.shed[reason]++;
    this.emit('shed', { reason });
  }

  private notifyIdle(): void {
    if (this.queue.length > 0 || this.inFlight > 0) return;
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }
}
