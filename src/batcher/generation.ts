import { EventEmitter } from 'node:events';
import { cancelled, deadlineExceeded, GatewayError, internal, modelFailed, unavailable } from '../errors/index.js';

// What a replica draws tokens with, and reports of them: the replica's own types (only types cross over).
export type { Sampling as SamplingParams, TokenLogprobs } from '../models/sampling.js';

import type { Hypothesis } from '../models/beam-search.js';
import type { StepResult } from '../models/decoder.js';
import { type AdapterRef, adapterKey } from '../models/lora.js';
import type { Sampling as SamplingParams, TokenLogprobs } from '../models/sampling.js';
import { FairShare } from './fair-share.js';
import { ModelStatistics } from './statistics.js';

/** A replica that keeps KV caches and answers generation steps. */
export interface StepReplica {
  readonly id: string;
  request(op: string, body: object): Promise<Record<string, unknown>>;
}

/** What the scheduler needs of a pool (the autoscaler's pool is one). */
export interface GenerationTarget {
  ready(): StepReplica[];
  /** Marks a replica busy while a loop runs on it. */
  hold(replicaId: string): () => void;
  readyCount(): number;
  /** The error for sequences while no replica can come soon (its starts keep failing); undefined otherwise. */
  startFailure(): Error | undefined;
  on(event: 'capacity' | 'change', listener: () => void): unknown;
  off(event: 'capacity' | 'change', listener: () => void): unknown;
}

export type GenerationOptions = {
  model: string;
  pool: GenerationTarget;
  /** Most sequences generating at once on one replica (max_batch_size). */
  maxSequences: number;
  /** Most sequences waiting for a slot; past it generate() rejects with 503. */
  maxQueue: number;
  /** Longest a sequence may wait for a slot, in ms (then 504, or 503 when no replica is up). */
  timeoutMs: number;
  /**
   * Prompts sharing their first this-many tokens go to the replica that had the last such prompt, while it
   * has room (its prefix cache then holds their common start): the replicas' prefix cache block. 0: off.
   * @default 0
   */
  affinityTokens?: number;
  /** Callers take turns for free slots (hooks' `caller`, as the Batcher's queue); false: first come, first served. @default true */
  fairShare?: boolean;
  /**
   * Most LoRA adapters among one replica's sequences at once (vLLM's max_loras): every step feeds them all. A
   * sequence of another adapter waits for one to leave, while sequences behind it that fit go ahead. @default no limit
   */
  maxAdapters?: number;
};

/** Prompt starts remembered for replica affinity. */
const MAX_AFFINITIES = 4096;
/** Times a sequence starts again after losing its replica before it fails with the loss. */
const MAX_RESUMES = 2;

/**
 * `adapter`: the LoRA adapter the sequence is generated with (its replica reads it from `path`). `cacheSalt`: its
 * prompt shares cached prefixes only with prompts of the same salt (a tenant's own).
 */
export type GenerateRequest = { prompt: number[]; sampling: SamplingParams; maxTokens: number; adapter?: AdapterRef; cacheSalt?: string };
export type GenerateHooks = {
  signal?: AbortSignal;
  /**
   * Called with each new token (and its log-probabilities, if `sampling.logprobs` asked for them); return
   * false when the sequence is finished (a stop token or sequence).
   */
  onToken(token: number, logprobs?: TokenLogprobs): boolean;
  /** Called once, before the first token, with the prompt's log-probabilities if `sampling.promptLogprobs` asked. */
  onPromptLogprobs?(logprobs: TokenLogprobs[]): void;
  /** While true the sequence is skipped (it keeps its slot and cache): its reader is not keeping up. */
  paused?(): boolean;
  /** Higher waits less for a free slot (ties keep arrival order). @default 0 */
  priority?: number;
  /** Who asks: within a priority, callers take turns for free slots. */
  caller?: string;
  /** The request's span context (opaque here): the sequence's span is its child. */
  trace?: unknown;
};
export type GenerateResult = {
  finishReason: 'stop' | 'length';
  completionTokens: number;
  queueMs: number;
  /** Prompt tokens whose keys and values came from the replica's prefix cache instead of being computed. */
  cachedTokens: number;
  /** Tokens of its predicted output (OpenAI's Predicted Outputs) drafted and taken. */
  acceptedPredictionTokens?: number;
  /** A beam search's (`sampling.beam`) best texts, best first; its tokens come only here, not through onToken. */
  beams?: Hypothesis[];
};

type Seq = {
  id: string;
  req: GenerateRequest;
  hooks: GenerateHooks;
  tokens: number;
  /** Its prompt's tokens taken from the replica's prefix cache. */
  cachedTokens: number;
  enqueuedAt: number;
  /** Its caller's turn for a free slot (FairShare). */
  turn: number;
  queueMs: number;
  firstTokenAt?: number;
  settled: boolean;
  timer?: NodeJS.Timeout;
  /** The tokens it generated so far: with its prompt, where it starts again if its replica is lost. */
  generated: number[];
  /** Times it started again on another replica. */
  resumes: number;
  /** Times it started again at all: on another replica, or after it was preempted. */
  restarts: number;
  /** Steps it took part in since it last (re)started (what a beam search, which has no tokens yet, has done). */
  steps: number;
  /** Given a slot once (a preempted or resumed one waits again without a new turn or queue time). */
  admitted?: boolean;
  /** Tokens of its prediction taken (Predicted Outputs). */
  acceptedPrediction: number;
  resolve(r: GenerateResult): void;
  reject(e: Error): void;
  cleanup(): void;
};

type Loop = {
  replica: StepReplica;
  active: Map<string, Seq>;
  joining: Seq[];
  release: string[];
  running: boolean;
  /** What its replica's caches held after its last step. */
  cacheBytes?: StepResult['cacheBytes'];
};

export type GenerationStats = {
  queued: number;
  active: number;
  /** Bytes the replicas' caches held after their last steps: the sequences' KV caches, and stored prompts (prefix caches). */
  cacheBytes: StepResult['cacheBytes'];
  sequences: number;
  steps: number;
  tokens: number;
  /** Prompt tokens the replicas' prefix caches spared computing. */
  cachedPromptTokens: number;
  /** Sequences that started again on another replica after theirs was lost. */
  resumed: number;
  /** Sequences that gave up their slot to one of higher priority, to start again where they were later. */
  preempted: number;
  /** Speculative decoding: tokens drafted, and of them taken (vLLM's spec_decode draft / accepted tokens). */
  draftTokens: number;
  acceptedDraftTokens: number;
  /** How many steps ran with N sequences in them (join + advance): the proof that streams share steps. */
  stepSizes: Record<number, number>;
  /** Milliseconds the replicas spent in steps (see StepTiming). */
  stepMs: StepTiming;
  shed: Record<'queue_full' | 'deadline' | 'cancelled' | 'start_failed', number>;
};

let nextId = 0;

/** Generation slots a sequence takes: one, or one per beam of a beam search. */
const slotsOf = (seq: Seq) => seq.req.sampling.beam?.width ?? 1;

/**
 * The tokens a preempted sequence would compute again: those it generated (it starts again where it was); a beam
 * search, which starts again from its prompt, every beam's of every step it took.
 */
const redoCost = (seq: Seq) => (seq.req.sampling.beam ? seq.steps * seq.req.sampling.beam.width : seq.generated.length);

/**
 * Continuous (iteration-level) batching: one loop per replica advances all of its sequences one token per
 * step in one batched run; new sequences join and finished ones leave between steps, so a long
 * generation never blocks a short one. Sequences beyond `maxSequences` per replica wait in a bounded
 * queue with a deadline, like the tensor batcher.
 */
/** Told when a sequence ends: what telemetry needs (time to first token, tokens, time per token). */
export type SequenceEvent = {
  /** When it was asked for (epoch ms), and the request's span context. */
  startedAt: number;
  trace?: unknown;
  request: GenerateRequest;
  /** Times it started again (its replica lost, or preempted). */
  restarts: number;
  ttftMs?: number;
  /** Time it waited for its first slot (undefined: it never got one). */
  queueMs?: number;
  promptTokens: number;
  tokens: number;
  cachedPromptTokens: number;
  durationMs: number;
  /** Why it ended: its finish reason, `cancelled` (its client went away) or `error` (with the error's code). */
  finishReason: GenerateResult['finishReason'] | 'cancelled' | 'error';
  errorCode?: string;
};

/** Where replicas' step time went: prompts and decoding; of those, drawing tokens; of that, response formats' masks. */
export type StepTiming = { prefill: number; decode: number; sampling: number; grammar: number };
const PHASES = ['prefill', 'decode', 'sampling', 'grammar'] as const;

export class GenerationScheduler extends EventEmitter<{
  starved: [];
  sequence: [SequenceEvent];
  shed: [{ reason: string }];
  step: [StepTiming];
  /** Speculative decoding: a step's drafted tokens, and how many it took. */
  speculated: [{ proposed: number; accepted: number }];
  /** Sequences put back in the queue to start again where they were: preempted, or their replica lost. */
  restarted: [{ reason: 'preempted' | 'replica_lost'; sequences: number }];
}> {
  private queue: Seq[] = [];
  /** Beam searches asked for and not yet settled (while there are none, a sequence is a slot: freeSlots need not sum). */
  private searching = 0;
  private readonly fair = new FairShare();
  private loops = new Map<string, Loop>();
  /** Prompt start → the replica the last prompt starting so went to (`affinityTokens`). */
  private affinity = new Map<string, string>();
  private idleWaiters: (() => void)[] = [];
  /** Triton's statistics (GET /v2/models/{m}/stats): a sequence is an inference, a step an execution. */
  readonly statistics = new ModelStatistics();
  private readonly counts = {
    sequences: 0,
    steps: 0,
    tokens: 0,
    cachedPromptTokens: 0,
    resumed: 0,
    preempted: 0,
    draftTokens: 0,
    acceptedDraftTokens: 0,
    stepSizes: {} as Record<number, number>,
    stepMs: { prefill: 0, decode: 0, sampling: 0, grammar: 0 },
    shed: { queue_full: 0, deadline: 0, cancelled: 0, start_failed: 0 },
  };
  private readonly onCapacity = () => this.admit();
  private readonly onChange = () => {
    this.failIfNoReplicaComing();
    this.admit();
  };

  constructor(private opts: GenerationOptions) {
    super();
    opts.pool.on('capacity', this.onCapacity);
    opts.pool.on('change', this.onChange);
  }

  generate(req: GenerateRequest, hooks: GenerateHooks): Promise<GenerateResult> {
    if (hooks.signal?.aborted) return Promise.reject(cancelled());
    if (this.queue.length >= this.opts.maxQueue) {
      this.shed('queue_full');
      this.statistics.failed(0);
      return Promise.reject(unavailable('queue_full', `the queue of model ${this.opts.model} is full (${this.queue.length} sequences waiting)`));
    }
    const startFailure = this.opts.pool.startFailure();
    if (startFailure) {
      this.shed('start_failed');
      this.statistics.failed(0);
      return Promise.reject(startFailure);
    }
    return new Promise<GenerateResult>((resolve, reject) => {
      const seq: Seq = {
        id: `s${++nextId}`,
        req,
        hooks,
        tokens: 0,
        cachedTokens: 0,
        enqueuedAt: performance.now(),
        turn: this.fair.turn(this.opts.fairShare === false ? undefined : hooks.caller),
        queueMs: 0,
        settled: false,
        generated: [],
        resumes: 0,
        restarts: 0,
        steps: 0,
        acceptedPrediction: 0,
        resolve,
        reject,
        cleanup: () => hooks.signal?.removeEventListener('abort', onAbort),
      };
      const onAbort = () => {
        this.shed('cancelled');
        this.queue = this.queue.filter((s) => s !== seq);
        clearTimeout(seq.timer);
        this.settle(seq, cancelled()); // an active one leaves at the next step (see run)
      };
      hooks.signal?.addEventListener('abort', onAbort, { once: true });
      if (req.sampling.beam) this.searching++;
      seq.timer = setTimeout(() => this.expire(seq), this.opts.timeoutMs);
      this.enqueue(seq);
      this.counts.sequences++;
      this.admit();
      if (this.queue.includes(seq)) this.emit('starved');
    });
  }

  stats(): GenerationStats {
    let active = 0;
    const cacheBytes = { kv: 0, prefix: 0 };
    for (const loop of this.loops.values()) {
      active += loop.active.size + loop.joining.length;
      cacheBytes.kv += loop.cacheBytes?.kv ?? 0;
      cacheBytes.prefix += loop.cacheBytes?.prefix ?? 0;
    }
    const { stepSizes, stepMs, shed } = this.counts;
    return { queued: this.queue.length, active, cacheBytes, ...this.counts, stepSizes: { ...stepSizes }, stepMs: { ...stepMs }, shed: { ...shed } };
  }

  /** Resolves when nothing is queued or generating (for graceful shutdown). */
  idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  close(): void {
    this.opts.pool.off('capacity', this.onCapacity);
    this.opts.pool.off('change', this.onChange);
  }

  /** Gives queued sequences to the replicas with the most free slots, and starts their loops. */
  private admit(): void {
    const ready = this.opts.pool.ready();
    for (const replica of ready)
      if (!this.loops.has(replica.id)) this.loops.set(replica.id, { replica, active: new Map(), joining: [], release: [], running: false });
    for (const [id, loop] of this.loops) {
      if (ready.includes(loop.replica) || loop.running) continue;
      // Its replica is gone: sequences that had not started yet go back to the front of the queue (of their priority).
      for (const s of loop.joining.filter((x) => !x.settled).reverse()) this.enqueue(s, true);
      this.loops.delete(id);
    }
    const open = [...this.loops.values()].filter((loop) => ready.includes(loop.replica));
    for (let i = 0; i < this.queue.length && open.some((loop) => this.freeSlots(loop) > 0); ) {
      const seq = this.queue[i];
      const takes = (loop: Loop) => this.freeSlots(loop) >= slotsOf(seq) && this.adapterFits(loop, seq);
      let best: Loop | undefined;
      for (const loop of open) if (takes(loop) && (!best || this.freeSlots(loop) > this.freeSlots(best))) best = loop;
      if (!best) {
        i++; // its adapter (or its beams) wait for room; those behind it may fit
        continue;
      }
      // Where a prompt starting the same way went last, if that replica is not much busier than the freest.
      const start = this.promptStart(seq);
      const affine = start === undefined ? undefined : this.loops.get(this.affinity.get(start) as string);
      if (affine && ready.includes(affine.replica) && takes(affine) && 2 * this.freeSlots(affine) >= this.freeSlots(best)) best = affine;
      if (start !== undefined) {
        this.affinity.delete(start); // most recent last: the oldest is forgotten first
        this.affinity.set(start, best.replica.id);
        if (this.affinity.size > MAX_AFFINITIES) this.affinity.delete(this.affinity.keys().next().value as string);
      }
      this.queue.splice(i, 1);
      clearTimeout(seq.timer);
      if (!seq.admitted) {
        // (the first time; one preempted or resumed has had its turn)
        seq.admitted = true;
        this.fair.served(seq.turn);
        seq.queueMs = performance.now() - seq.enqueuedAt;
      }
      best.joining.push(seq);
      if (!best.running) this.run(best);
    }
    if (this.preempt(open)) this.admit();
    else this.notifyIdle();
  }

  /** Slots left on the loop's replica: a beam search takes one per beam. */
  private freeSlots(loop: Loop): number {
    if (this.searching === 0) return this.opts.maxSequences - loop.active.size - loop.joining.length; // (one each: no sum)
    let taken = 0;
    for (const s of loop.active.values()) taken += slotsOf(s);
    for (const s of loop.joining) taken += slotsOf(s);
    return this.opts.maxSequences - taken;
  }

  /**
   * Waiting sequences go before the first of lower priority, or of their priority and a later turn (callers take
   * turns, see FairShare): ties keep arrival order. `front`: before every one of its priority (a sequence that
   * was generating already).
   */
  private enqueue(seq: Seq, front = false): void {
    const priority = seq.hooks.priority ?? 0;
    const at = this.queue.findIndex((s) => {
      const p = s.hooks.priority ?? 0;
      return p < priority || (p === priority && (front || s.turn > seq.turn));
    });
    this.queue.splice(at < 0 ? this.queue.length : at, 0, seq);
  }

  /**
   * Recompute preemption (vLLM's): when a waiting sequence has no free slot anywhere and a generating one has a
   * lower priority, the lowest of those (of them, the one with the least to compute again: redoCost)
   * gives up its slot. It goes back to the queue, ahead of its priority, with the tokens it has, and starts again
   * where it was (as after a lost replica): its stream only pauses. So a backlog of low-priority work (Batch API
   * lines, a low-tier caller) holds higher-priority requests up by a step at most. Whether one was preempted.
   */
  private preempt(open: Loop[]): boolean {
    if (this.queue.length === 0 || open.some((loop) => this.freeSlots(loop) > 0)) return false;
    const waiting = this.queue.reduce((a, b) => ((b.hooks.priority ?? 0) > (a.hooks.priority ?? 0) ? b : a));
    const priority = waiting.hooks.priority ?? 0;
    let victim: { loop: Loop; seq: Seq } | undefined;
    for (const loop of open) {
      if (!this.adapterFits(loop, waiting)) continue;
      for (const seq of loop.active.values()) {
        const p = seq.hooks.priority ?? 0;
        if (seq.settled || p >= priority) continue;
        const lowest = victim?.seq.hooks.priority ?? 0;
        if (!victim || p < lowest || (p === lowest && redoCost(seq) < redoCost(victim.seq))) victim = { loop, seq };
      }
    }
    if (!victim) return false;
    this.leave(victim.loop, victim.seq.id);
    victim.seq.restarts++;
    victim.seq.steps = 0;
    this.enqueue(victim.seq, true);
    this.counts.preempted++;
    this.emit('restarted', { reason: 'preempted', sequences: 1 });
    return true;
  }

  /**
   * What a replica is told of a joining sequence. One starting again after its replica was lost brings the tokens
   * it generated as the end of its prompt, and how many they are: the replica counts them as its own (penalties,
   * format, random draws) and goes on from there; its prompt's log-probabilities were sent already.
   */
  private joining(s: Seq) {
    const common = { seq: s.id, adapter: s.req.adapter, maxTokens: s.req.maxTokens, cacheSalt: s.req.cacheSalt };
    if (s.generated.length === 0) return { ...common, prompt: s.req.prompt, sampling: s.req.sampling };
    return { ...common, prompt: [...s.req.prompt, ...s.generated], sampling: { ...s.req.sampling, promptLogprobs: undefined }, resumed: s.generated.length };
  }

  /** Whether `seq` may join the loop's sequences under max_loras: no adapter, one they have, or room for one more. */
  private adapterFits(loop: Loop, seq: Seq): boolean {
    const adapter = seq.req.adapter && adapterKey(seq.req.adapter);
    if (adapter === undefined || this.opts.maxAdapters === undefined) return true;
    const held = new Set<string>();
    for (const s of [...loop.active.values(), ...loop.joining]) if (s.req.adapter) held.add(adapterKey(s.req.adapter));
    return held.has(adapter) || held.size < this.opts.maxAdapters;
  }

  /** The prompt's first `affinityTokens` tokens (and its adapter: cached apart) as a key, if it is that long and affinity is on. */
  private promptStart(seq: Seq): string | undefined {
    const n = this.opts.affinityTokens ?? 0;
    return n > 0 && seq.req.prompt.length > n
      ? `${seq.req.adapter ? adapterKey(seq.req.adapter) : ''}|${seq.req.cacheSalt ?? ''}|${seq.req.prompt.slice(0, n).join(',')}`
      : undefined;
  }

  private async run(loop: Loop): Promise<void> {
    loop.running = true;
    const unhold = this.opts.pool.hold(loop.replica.id);
    try {
      // Runs while anything is active, joining, or waiting to have its cache freed; a sequence that joins
      // while the last release is in flight is picked up by the next turn, never stranded.
      while (loop.active.size > 0 || loop.joining.length > 0 || loop.release.length > 0) {
        for (const [id, seq] of loop.active) if (seq.settled) this.leave(loop, id); // cancelled since the last step
        const join = loop.joining.splice(0).filter((s) => !s.settled);
        for (const s of join) loop.active.set(s.id, s);
        const advance = [...loop.active.values()].filter((s) => !join.includes(s) && !s.hooks.paused?.()).map((s) => s.id);
        if (join.length === 0 && advance.length === 0 && loop.release.length === 0) {
          await new Promise((r) => setTimeout(r, 5)); // every reader is behind: wait for one
          continue;
        }
        const body = {
          join: join.map((s) => this.joining(s)),
          advance,
          release: loop.release.splice(0),
        };
        // (what the replica's Decoder answers; a replica of another version may leave timings out)
        let step: Partial<StepResult> & Pick<StepResult, 'tokens'>;
        const sentAt = performance.now();
        try {
          step = (await loop.replica.request('step', body)) as typeof step;
        } catch (err) {
          const error = err instanceof GatewayError ? err : internal(`model ${this.opts.model} failed a generation step: ${(err as Error).message}`, err);
          // Its replica lost (a crash, out of memory, a remote one's connection): a sequence starts again on
          // another from its prompt and the tokens it has, its stream going on where it was; other failures end it.
          const lost = error.code === 'replica_lost';
          const resumed = [...loop.active.values()].filter((s) => lost && !s.settled && s.resumes < MAX_RESUMES);
          for (const seq of loop.active.values()) if (!resumed.includes(seq)) this.settle(seq, error);
          loop.active.clear();
          for (const seq of resumed) {
            seq.resumes++;
            seq.restarts++;
            seq.steps = 0;
            seq.timer = setTimeout(() => this.expire(seq), this.opts.timeoutMs);
          }
          for (const seq of resumed.reverse()) this.enqueue(seq, true);
          this.counts.resumed += resumed.length;
          if (resumed.length > 0) this.emit('restarted', { reason: 'replica_lost', sequences: resumed.length });
          break;
        }
        for (const s of join) s.steps++;
        for (const id of advance) {
          const s = loop.active.get(id); // (gone if it was preempted while the step ran)
          if (s) s.steps++;
        }
        const size = join.length + advance.length;
        const timing = { prefill: step.prefillMs ?? 0, decode: step.decodeMs ?? 0, sampling: step.sampleMs ?? 0, grammar: step.maskMs ?? 0 };
        if (size > 0) {
          this.counts.steps++;
          this.counts.stepSizes[size] = (this.counts.stepSizes[size] ?? 0) + 1;
          // Triton's phases of a step: the model's work on the replica, and the round trip around it.
          const infer = timing.prefill + timing.decode;
          this.statistics.executed(size, { input: Math.max(0, performance.now() - sentAt - infer), infer, output: 0 });
        }
        for (const phase of PHASES) this.counts.stepMs[phase] += timing[phase];
        loop.cacheBytes = step.cacheBytes ?? loop.cacheBytes;
        this.emit('step', timing);
        // A sequence the replica refused alone (it holds no row there): its request fails, the others go on.
        for (const [id, why] of Object.entries(step.failed ?? {})) {
          const seq = loop.active.get(id);
          this.leave(loop, id);
          if (seq) this.settle(seq, modelFailed(`model ${this.opts.model}: ${why}`));
        }
        for (const [id, cached] of Object.entries(step.cached ?? {})) {
          const seq = loop.active.get(id);
          if (!seq || seq.settled) continue;
          seq.cachedTokens = cached;
          this.counts.cachedPromptTokens += cached;
        }
        for (const [id, token] of Object.entries(step.tokens)) {
          const seq = loop.active.get(id);
          if (!seq || seq.settled) continue;
          const prompt = step.promptLogprobs?.[id];
          if (prompt) seq.hooks.onPromptLogprobs?.(prompt);
          if (seq.req.maxTokens === 0) {
            // Only the prompt was wanted (scored, echoed): the token drawn after it is dropped.
            this.leave(loop, id);
            this.settle(seq, null, { finishReason: 'length', completionTokens: 0, queueMs: seq.queueMs, cachedTokens: seq.cachedTokens });
            continue;
          }
          seq.firstTokenAt ??= performance.now();
          seq.acceptedPrediction += step.predicted?.[id] ?? 0;
          // The step's token, then the drafted ones it took (speculative decoding), until the sequence ends.
          const tokens = [token, ...(step.more?.[id] ?? [])];
          const logprobs = [step.logprobs?.[id], ...(step.moreLogprobs?.[id] ?? [])];
          for (let t = 0; t < tokens.length; t++) {
            seq.tokens++;
            seq.generated.push(tokens[t]);
            this.counts.tokens++;
            const more = seq.hooks.onToken(tokens[t], logprobs[t]);
            if (!more || seq.tokens >= seq.req.maxTokens) {
              this.leave(loop, id);
              this.settle(seq, null, {
                finishReason: more ? 'length' : 'stop',
                completionTokens: seq.tokens,
                queueMs: seq.queueMs,
                cachedTokens: seq.cachedTokens,
                ...(seq.req.sampling.prediction && { acceptedPredictionTokens: seq.acceptedPrediction }),
              });
              break;
            }
          }
        }
        // Beam searches that ended: their best texts at once (no token came before).
        for (const [id, beams] of Object.entries(step.beams ?? {})) {
          const seq = loop.active.get(id);
          if (!seq || seq.settled) continue;
          this.leave(loop, id);
          seq.tokens = beams.reduce((n, b) => n + b.tokens.length, 0);
          this.counts.tokens += seq.tokens;
          seq.firstTokenAt = performance.now();
          const finishReason = beams[0]?.finishReason ?? 'length';
          this.settle(seq, null, { finishReason, completionTokens: seq.tokens, queueMs: seq.queueMs, cachedTokens: seq.cachedTokens, beams });
        }
        if (step.speculated) {
          this.counts.draftTokens += step.speculated.proposed;
          this.counts.acceptedDraftTokens += step.speculated.accepted;
          this.emit('speculated', step.speculated);
        }
        this.admit();
      }
    } catch (err) {
      // A fault of the loop itself (a step answer it cannot read — a replica of another version —, a bug): its
      // sequences fail with it, rather than wait for ever (or the process die of an unhandled rejection); their
      // rows on the replica are freed with the loop's next step.
      const error = internal(`model ${this.opts.model}: a generation step could not be read: ${(err as Error).message}`, err);
      for (const seq of [...loop.active.values(), ...loop.joining.splice(0)]) {
        loop.release.push(seq.id);
        this.settle(seq, error);
      }
      loop.active.clear();
    } finally {
      loop.running = false;
      unhold();
      this.admit();
    }
  }

  /** A start failed and no other replica is ready or starting: waiting sequences are answered with why. */
  private failIfNoReplicaComing(): void {
    const error = this.queue.length > 0 && this.opts.pool.startFailure();
    if (!error) return;
    for (const seq of this.queue.splice(0)) {
      this.shed('start_failed');
      this.settle(seq, error);
    }
    this.notifyIdle();
  }

  private leave(loop: Loop, id: string): void {
    loop.active.delete(id);
    loop.release.push(id);
  }

  private expire(seq: Seq): void {
    if (!this.queue.includes(seq)) return;
    this.queue = this.queue.filter((s) => s !== seq);
    this.shed('deadline');
    const waited = Math.round(performance.now() - seq.enqueuedAt);
    this.settle(
      seq,
      this.opts.pool.readyCount() === 0
        ? unavailable('no_replica', `model ${this.opts.model} has no ready replica: waited ${waited} ms for one to start`, 5)
        : deadlineExceeded(`model ${this.opts.model}: waited ${waited} ms for a free generation slot`),
    );
    this.notifyIdle();
  }

  private shed(reason: keyof GenerationStats['shed']): void {
    this.counts.shed[reason]++;
    this.emit('shed', { reason });
  }

  private settle(seq: Seq, error: Error | null, result?: GenerateResult): void {
    if (seq.settled) return;
    seq.settled = true;
    if (seq.req.sampling.beam) this.searching--;
    clearTimeout(seq.timer);
    seq.cleanup();
    const end = performance.now();
    if (error) this.statistics.failed(end - seq.enqueuedAt);
    else this.statistics.succeeded(1, end - seq.enqueuedAt, seq.queueMs, { input: 0, infer: end - seq.enqueuedAt - seq.queueMs, output: 0 });
    const code = error && (error instanceof GatewayError ? error.code : 'internal');
    this.emit('sequence', {
      startedAt: performance.timeOrigin + seq.enqueuedAt, // (the clock OpenTelemetry's spans keep)
      trace: seq.hooks.trace,
      request: seq.req,
      restarts: seq.restarts,
      ttftMs: seq.firstTokenAt && seq.firstTokenAt - seq.enqueuedAt,
      queueMs: seq.admitted ? seq.queueMs : undefined,
      promptTokens: seq.req.prompt.length,
      tokens: seq.tokens,
      cachedPromptTokens: seq.cachedTokens,
      durationMs: end - seq.enqueuedAt,
      finishReason: result?.finishReason ?? (code === 'cancelled' ? 'cancelled' : 'error'),
      ...(code && code !== 'cancelled' && { errorCode: code }),
    });
    if (error) seq.reject(error);
    else seq.resolve(result as GenerateResult);
  }

  private isIdle(): boolean {
    if (this.queue.length > 0) return false;
    for (const loop of this.loops.values()) if (loop.running) return false;
    return true;
  }

  private notifyIdle(): void {
    if (this.isIdle()) for (const resolve of this.idleWaiters.splice(0)) resolve();
  }
}
