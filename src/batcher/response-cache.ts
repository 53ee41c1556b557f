import { createHash } from 'node:crypto';
import type { Inputs, Tensor, TypedArray } from '../tensor/index.js';

/**
 * Triton's response cache for one model: answers kept by a hash of the request's inputs (names, types, shapes
 * and bytes), the least recently used dropped past `maxBytes`. Only for models whose answer depends on nothing
 * else (not a stateful model's, whose state moves on with each request). Answers go in and come out as copies:
 * a batch's outputs may be views of a replica's shared memory, reused for the next batch.
 */
export class ResponseCache {
  private readonly entries = new Map<string, { outputs: Inputs; bytes: number }>();
  private bytes = 0;
  /** Answers on their way, by key: a request arriving meanwhile with the same inputs waits for it. */
  private readonly flights = new Map<string, Promise<Inputs>>();

  constructor(readonly maxBytes: number) {}

  /** The request's key: SHA-256 over its inputs, in name order (and a multiplexed model's model id: another model, another answer). */
  key(inputs: Inputs, modelId?: string): string {
    const hash = createHash('sha256');
    if (modelId !== undefined) hash.update(`model:${modelId.length}:${modelId}`);
    for (const name of Object.keys(inputs).sort()) {
      const t = inputs[name];
      hash.update(`${name.length}:${name}${t.dtype}[${t.shape.join(',')}]`);
      for (const part of t.parts ?? [t.data]) hash.update(bytesOf(part));
    }
    return hash.digest('base64');
  }

  /** A copy of the answer kept under `key`, now the most recently used; undefined if none is. */
  get(key: string): Inputs | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    this.entries.delete(key);
    this.entries.set(key, entry);
    return copyOf(entry.outputs);
  }

  /** Keeps a copy of `outputs` under `key`, dropping the least recently used answers to make room. */
  set(key: string, outputs: Inputs): void {
    const bytes = Object.values(outputs).reduce((n, t) => n + t.data.byteLength, 0);
    if (bytes > this.maxBytes || this.entries.has(key)) return;
    for (const [old, entry] of this.entries) {
      if (this.bytes + bytes <= this.maxBytes) break;
      this.entries.delete(old);
      this.bytes -= entry.bytes;
    }
    this.entries.set(key, { outputs: copyOf(outputs), bytes });
    this.bytes += bytes;
  }

  /**
   * `outputs` is the answer on its way for `key` (kept once it comes): identical requests arriving together run
   * once, so a stampede on one popular input costs one inference.
   */
  fly(key: string, outputs: Promise<Inputs>): void {
    this.flights.set(key, outputs);
    outputs.then(
      (o) => this.set(key, o),
      () => {},
    );
    void outputs.catch(() => {}).finally(() => this.flights.delete(key));
  }

  /** A copy of the answer on its way for `key`, when it comes; undefined if none is on its way. */
  flying(key: string): Promise<Inputs> | undefined {
    return this.flights.get(key)?.then(copyOf);
  }

  /** Answers kept, and their bytes. */
  size(): { entries: number; bytes: number } {
    return { entries: this.entries.size, bytes: this.bytes };
  }
}

const bytesOf = (a: TypedArray) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

const copyOf = (outputs: Inputs): Inputs =>
  Object.fromEntries(Object.entries(outputs).map(([name, t]): [string, Tensor] => [name, { dtype: t.dtype, shape: [...t.shape], data: t.data.slice() }]));
