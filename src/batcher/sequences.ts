import { badInput, cancelled, unavailable } from '../errors/index.js';
import type { Inputs, Tensor } from '../tensor/index.js';
import type { SubmitOptions, Submitted } from './batcher.js';

/** A state carried from one request of a sequence to the next: `output` of one request is `input` of the next. */
export type CarriedState = { input: string; output: string; initial(): Tensor };

/** Which sequence a request belongs to (Triton's correlation id and START / END flags). */
export type SequenceRequest = {
  id: string;
  start: boolean;
  end: boolean;
  /** Whose sequence it is (the caller's identity): another caller's request never reaches its state. */
  owner?: string;
};

export type SequencesOptions = {
  model: string;
  states: CarriedState[];
  /** The model's batcher: every request of every sequence is one row of its batches. */
  submit(inputs: Inputs, opts: SubmitOptions): Promise<Submitted>;
  /** A sequence with nothing sent for this long is dropped (Triton's max_sequence_idle_microseconds). */
  idleMs: number;
  /** Most sequences kept at once; a new one past it is a 503. */
  maxSequences: number;
  /** @default performance.now */
  now?: () => number;
};

/** Sequences are kept by owner and id: another owner's equal id is another sequence. */
const keyOf = (seq: Pick<SequenceRequest, 'id' | 'owner'>) => `${seq.owner ?? ''}\u0000${seq.id}`;

type Live = {
  seq: Pick<SequenceRequest, 'id' | 'owner'>;
  states: Inputs;
  tail: Promise<unknown>;
  pending: number;
  lastUsed: number;
  /** When it started (ms since the epoch, this gateway's clock): of two copies of one sequence, the later start is the one going on. */
  startedAt: number;
  /** Requests answered since it started: of two copies of one start, the one further on is the one going on. */
  steps: number;
  /**
   * A backup's copy of another gateway's sequence (server.fleet.sequence_backup), no request of it served here yet:
   * given up first when a sequence needs its room.
   */
  copy: boolean;
  ended: boolean;
  released: boolean;
};

/** A sequence as one gateway of a fleet hands it to another: whose and which it is, and its states. */
export type HeldSequence = Pick<SequenceRequest, 'id' | 'owner'> & { states: Inputs; startedAt: number; steps: number };
/** A sequence being handed over: which it is, and itself once the requests it had queued are answered (undefined: it ended meanwhile). */
export type HandingSequence = { seq: Pick<SequenceRequest, 'id' | 'owner'>; held: Promise<HeldSequence | undefined> };

/**
 * Triton's sequence batcher with implicit state, for models that carry state between requests (an RNN, a
 * streaming VAD): the gateway keeps each sequence's state, feeds it with the sequence's next request and
 * keeps what comes back. A sequence's requests run one at a time, in the order they arrived, while requests of
 * different sequences share batches (each is a row). The state lives here, not in a replica, so any replica
 * serves any step: no affinity, and a replica restarting loses nothing.
 */
export class Sequences {
  private live = new Map<string, Live>();
  /** Sequences with a request in the batcher (queued or running). */
  private inBatcher = 0;
  private readonly now: () => number;
  private sweptAt = Number.NEGATIVE_INFINITY;

  constructor(private opts: SequencesOptions) {
    this.now = opts.now ?? (() => performance.now());
  }

  /** Sequences kept now. */
  get size(): number {
    this.sweep();
    return this.live.size;
  }

  /**
   * Whether some sequence could still send a request: one with none in the batcher. When none can, a batch of
   * what is queued need not wait for company (one stream alone would otherwise wait wait_ms at every step).
   */
  mayJoin(): boolean {
    return this.live.size > this.inBatcher;
  }

  submit(seq: SequenceRequest, inputs: Inputs, opts: SubmitOptions = {}): Promise<Submitted> {
    if (opts.signal?.aborted) return Promise.reject(cancelled());
    for (const [name, t] of Object.entries(inputs))
      if (t.shape[0] !== 1) return Promise.reject(badInput(`a request of a sequence is one row: input ${name} has ${t.shape[0]}`));
    this.sweep();
    const key = keyOf(seq);
    let entry = this.live.get(key);
    if (!entry) {
      if (!seq.start)
        return Promise.reject(
          badInput(
            `sequence ${seq.id} of model ${this.opts.model} is not active (it ended, sat idle past ${this.opts.idleMs / 1000} s, or never started): its first request needs sequence_start`,
            undefined,
            'sequence_not_active',
          ),
        );
      if (!this.roomForOne())
        return Promise.reject(unavailable('sequences_full', `model ${this.opts.model} holds its most sequences (${this.opts.maxSequences}); end one or retry`));
      entry = this.keep(seq, {}, Date.now());
    }
    entry.copy = false; // (served here now)
    const live = entry;
    const step = live.tail.then(async () => {
      if (live.released || (live.ended && !seq.start))
        throw badInput(`sequence ${seq.id} of model ${this.opts.model} ended before this request's turn`, undefined, 'sequence_not_active');
      if (seq.start) {
        // A start on a live sequence begins it afresh, after the requests it had queued.
        live.states = Object.fromEntries(this.opts.states.map((s) => [s.input, s.initial()]));
        live.ended = false;
        live.startedAt = Date.now();
        live.steps = 0;
      }
      this.inBatcher++;
      const result = await this.opts.submit({ ...inputs, ...live.states }, opts).finally(() => this.inBatcher--);
      const outputs = { ...result.outputs };
      for (const s of this.opts.states) {
        // A copy: the output is a view of the whole batch's buffer, which must not live as long as the sequence.
        const t = outputs[s.output];
        live.states[s.input] = { dtype: t.dtype, shape: t.shape, data: t.data.slice() };
        delete outputs[s.output];
      }
      if (seq.end) live.ended = true;
      live.steps++;
      return { ...result, outputs };
    });
    // A failed request leaves the state as it was: the sequence's next request carries on from the last good one.
    live.tail = step.catch(() => {});
    live.pending++;
    const settle = () => {
      live.pending--;
      live.lastUsed = this.now();
      if (live.ended && live.pending === 0 && this.live.get(key) === live) this.live.delete(key);
    };
    step.then(settle, settle);
    return step;
  }

  /**
   * Takes over another store's sequences (a model replaced by a config reload, its states alike): they go on
   * where they were, across the swap. The two share them from now on, so a step still under way on the old
   * store lands its state here too.
   */
  adopt(other: Sequences): void {
    this.live = other.live;
  }

  /** Whether a sequence is kept here (ended ones are not). */
  has(seq: Pick<SequenceRequest, 'id' | 'owner'>): boolean {
    const live = this.live.get(keyOf(seq));
    return live !== undefined && !live.ended;
  }

  /**
   * Hands a sequence to another gateway of the fleet (which holds it now): once the requests it had queued are
   * answered, it is gone from here and returned with its states — undefined when it is not kept (or ended). A
   * request queued behind the handing over finds it ended. `signal` aborted by then (the gateway asking gave up
   * waiting): it stays here, nothing handed — rather than gone from both.
   */
  handOver(seq: Pick<SequenceRequest, 'id' | 'owner'>, signal?: AbortSignal): Promise<HeldSequence | undefined> {
    const key = keyOf(seq);
    const live = this.live.get(key);
    if (!live) return Promise.resolve(undefined);
    const handed = live.tail.then(() => {
      if (signal?.aborted || live.released || live.ended || this.live.get(key) !== live) return undefined;
      live.released = true;
      this.live.delete(key);
      return heldOf(live);
    });
    live.tail = handed;
    return handed;
  }

  /**
   * Keeps a sequence another gateway handed over: it goes on here from its states (`taken`). A copy kept here already
   * gives way when it has no request under way and is behind it (it started earlier — left from before the sequence
   * started again elsewhere —, or answered fewer requests of the same start: a backup's); one as far on or further
   * stays (`has`: the sequence is here). `refused`: one behind it is running a request, or there is no room.
   */
  takeOver(held: HeldSequence, { copy = false } = {}): 'taken' | 'has' | 'refused' {
    this.sweep();
    const kept = this.live.get(keyOf(held));
    if (kept && !furtherOn(held, kept)) return 'has';
    if (kept?.pending) return 'refused';
    if (kept) {
      kept.released = true;
      this.live.delete(keyOf(held));
    }
    if (!this.roomForOne()) return 'refused';
    this.keep(held, held.states, held.startedAt, held.steps).copy = copy;
    return 'taken';
  }

  /**
   * Every sequence kept, each handed over once the requests it had queued are answered (the gateway stopping).
   * None is kept here after.
   */
  handAll(): HandingSequence[] {
    return [...this.live.values()].filter((live) => !live.ended && !live.released).map(({ seq }) => ({ seq, held: this.handOver(seq) }));
  }

  /** A kept sequence as it is now (its last answered request's state), to be copied elsewhere; undefined when not kept. */
  snapshot(seq: Pick<SequenceRequest, 'id' | 'owner'>): HeldSequence | undefined {
    const live = this.live.get(keyOf(seq));
    return live && !live.ended && !live.released ? heldOf(live) : undefined;
  }

  /** Whether one more sequence fits: past maxSequences, those idle too long are dropped, then the copy used least lately. */
  private roomForOne(): boolean {
    if (this.live.size < this.opts.maxSequences) return true;
    this.sweep(true);
    if (this.live.size < this.opts.maxSequences) return true;
    let oldest: [string, Live] | undefined;
    for (const entry of this.live) if (entry[1].copy && entry[1].pending === 0 && (!oldest || entry[1].lastUsed < oldest[1].lastUsed)) oldest = entry;
    if (!oldest) return false;
    oldest[1].released = true;
    this.live.delete(oldest[0]);
    return true;
  }

  private keep(seq: Pick<SequenceRequest, 'id' | 'owner'>, states: Inputs, startedAt: number, steps = 0): Live {
    const live = {
      seq: { id: seq.id, owner: seq.owner },
      states,
      tail: Promise.resolve(),
      pending: 0,
      lastUsed: this.now(),
      startedAt,
      steps,
      copy: false,
      ended: false,
      released: false,
    };
    this.live.set(keyOf(seq), live);
    return live;
  }

  /** Ends a sequence now, whatever it has queued (its caller went away): what is queued fails, its slot is free. */
  release(seq: Pick<SequenceRequest, 'id' | 'owner'>): void {
    const key = keyOf(seq);
    const live = this.live.get(key);
    if (!live) return;
    live.released = true;
    this.live.delete(key);
  }

  /**
   * Drops sequences idle past idleMs (none with a request under way). Done as requests come, at most every
   * second or so, rather than on a timer: nothing idles out unnoticed, since a full table is checked afresh.
   */
  private sweep(force = false): void {
    const now = this.now();
    if (!force && now - this.sweptAt < Math.min(this.opts.idleMs, 1000)) return;
    this.sweptAt = now;
    for (const [key, s] of this.live) if (s.pending === 0 && now - s.lastUsed > this.opts.idleMs) this.live.delete(key);
  }
}

const heldOf = (live: Live): HeldSequence => ({ ...live.seq, states: live.states, startedAt: live.startedAt, steps: live.steps });

/** Whether one copy of a sequence is further on than another: a later start, or more of the same start answered. */
export const furtherOn = (a: Pick<HeldSequence, 'startedAt' | 'steps'>, b: Pick<HeldSequence, 'startedAt' | 'steps'>): boolean =>
  a.startedAt > b.startedAt || (a.startedAt === b.startedAt && a.steps > b.steps);
