import type { GenerativeSpec } from './generative.js';
import type { KvArray } from './prefix-cache.js';

/** A sequence as its cache rows see it: its row, and how many positions of it are filled. */
export type Row = { row: number; length: number };

/** A new cache array of the type; FP16 is kept as its bits (copied, never computed on, here). */
export const kvArray = (type: GenerativeSpec['kvType'], length: number): KvArray => (type === 'float16' ? new Uint16Array(length) : new Float32Array(length));

/**
 * Every sequence's KV cache, kept the way a decode step feeds them: per layer, keys then values, each one buffer
 * [rowCapacity, heads, positions, headDim] with a row per sequence, right-padded to a common `positions` (the
 * padding masked). A step's past is then a view of the first rows, not a gather of every sequence's cache —
 * that copy was as large as all the caches together, every step (hundreds of MB for GPT-2 small at 64 streams).
 * Rows stay packed (a leaving sequence's row takes the last row's cache); positions grow by a quarter and rows
 * double, and both shrink again when the sequences that made them big have left.
 */
export class KvRows<S extends Row> {
  /** Row r holds `rows[r]`; rows are packed from 0. */
  readonly rows: S[] = [];
  private caches: KvArray[] = [];
  private capacity = 0;
  /** Positions every row has room for. */
  positions = 0;
  /** Gathered pasts, reused by cache so that decode steps allocate nothing large. */
  private gathered = new Map<number, KvArray>();

  constructor(private spec: Pick<GenerativeSpec, 'layers' | 'heads' | 'headDim' | 'kvType'>) {}

  /** Bytes the caches hold. */
  get bytes(): number {
    return this.caches.reduce((n, c) => n + c.byteLength, 0);
  }

  /** Gives `seq` the row after the last (with room for `positions`). */
  add(seq: S, positions: number): void {
    this.reserve(this.rows.length + 1, positions);
    seq.row = this.rows.length;
    this.rows.push(seq);
  }

  /** Frees a sequence's row; the last row's sequence moves into it, so rows stay packed. */
  remove(seq: S): void {
    const last = this.rows.pop() as S;
    if (last !== seq) {
      const rowLength = this.spec.heads * this.positions * this.spec.headDim;
      for (const cache of this.caches) cache.copyWithin(seq.row * rowLength, last.row * rowLength, (last.row + 1) * rowLength);
      last.row = seq.row;
      this.rows[seq.row] = last;
    }
    this.shrink();
  }

  /** `to`'s row becomes a copy of `from`'s (a beam taking its parent's keys and values). */
  copy(from: S, to: S): void {
    for (const cache of this.caches) cache.copyWithin(this.offset(to.row, 0, 0), this.offset(from.row, 0, 0), this.offset(from.row + 1, 0, 0));
    to.length = from.length;
  }

  /** Room for `positions` positions in every row. */
  reserve(rows: number, positions: number): void {
    if (rows <= this.capacity && positions <= this.positions) return;
    const capacity = rows <= this.capacity ? this.capacity : Math.max(4, rows, 2 * this.capacity);
    const grown = positions <= this.positions ? this.positions : Math.max(positions, Math.ceil((this.positions * 1.25) / 16) * 16, 16);
    this.relayout(capacity, grown);
  }

  /**
   * Copies `count` positions of row `from.row` of a [rows, heads, from.positions, headDim] tensor (a run's keys or
   * values), starting at its position `from.start`, into cache `c` at `seq`'s position `at`.
   */
  put(c: number, seq: S, at: number, source: KvArray, from: { row: number; positions: number; start: number }, count: number): void {
    const { heads, headDim } = this.spec;
    for (let h = 0; h < heads; h++) {
      const begin = ((from.row * heads + h) * from.positions + from.start) * headDim;
      this.caches[c].set(source.subarray(begin, begin + count * headDim), this.offset(seq.row, h, at));
    }
  }

  /** Cache `c`'s first `length` positions of `seq`'s `head` ([length, headDim]), a view. */
  view(c: number, seq: S, head: number, length: number): KvArray {
    return this.caches[c].subarray(this.offset(seq.row, head, 0), this.offset(seq.row, head, length));
  }

  /** Cache `c`'s first `rows` rows as they are laid out: [rows, heads, positions, headDim], a view. */
  firstRows(c: number, rows: number): KvArray {
    return this.caches[c].subarray(0, rows * this.spec.heads * this.positions * this.spec.headDim);
  }

  /** Cache `c`'s first `past` positions of `rows`, gathered into [rows, heads, past, headDim] (beyond a row's length: zeros, masked). */
  gather(rows: readonly S[], past: number, c: number): KvArray {
    const { heads, headDim, kvType } = this.spec;
    const length = rows.length * heads * past * headDim;
    let out = this.gathered.get(c);
    if (!out || out.length < length) {
      out = kvArray(kvType, Math.max(length, 2 * (out?.length ?? 0)));
      this.gathered.set(c, out);
    }
    const view = out.subarray(0, length);
    rows.forEach((s, i) => {
      for (let h = 0; h < heads; h++) view.set(this.view(c, s, h, s.length), (i * heads + h) * past * headDim);
    });
    return view;
  }

  /** Where a row's head's position starts in a cache buffer. */
  private offset(row: number, head: number, position: number): number {
    return ((row * this.spec.heads + head) * this.positions + position) * this.spec.headDim;
  }

  /** Gives memory back once the rows or the longest sequence left use a quarter / half of it. */
  private shrink(): void {
    const rows = this.rows.length;
    if (rows === 0) {
      [this.caches, this.capacity, this.positions] = [[], 0, 0];
      return;
    }
    const longest = Math.max(...this.rows.map((s) => s.length));
    const capacity = 4 * rows <= this.capacity ? Math.max(4, rows) : this.capacity;
    const positions = 2 * (longest + 1) <= this.positions ? longest + 1 : this.positions;
    if (capacity < this.capacity || positions < this.positions) this.relayout(capacity, positions);
  }

  /** New caches of `capacity` rows and `grown` positions, every sequence's cache copied over. */
  private relayout(capacity: number, grown: number): void {
    const { heads, headDim, layers, kvType } = this.spec;
    const caches = Array.from({ length: 2 * layers }, () => kvArray(kvType, capacity * heads * grown * headDim));
    for (const s of this.rows)
      for (let c = 0; c < caches.length; c++)
        for (let h = 0; h < heads; h++) caches[c].set(this.view(c, s, h, s.length), (s.row * heads + h) * grown * headDim);
    this.caches = caches;
    this.capacity = capacity;
    this.positions = grown;
  }
}
