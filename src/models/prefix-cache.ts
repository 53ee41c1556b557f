import { createHash } from 'node:crypto';

/** A KV cache's elements (FP16 kept as its bits), as the decoder holds them. */
export type KvArray = Float32Array | Uint16Array;

/** Prompts are cached and matched in blocks of this many tokens. */
export const PREFIX_BLOCK = 16;

type Entry = {
  /** Tokens stored: a multiple of PREFIX_BLOCK. */
  length: number;
  /** Per layer keys then values, each [heads, length, headDim]. */
  kv: KvArray[];
  bytes: number;
  /** Its prefixes' keys in the index, shortest first. */
  keys: string[];
};

/** A stored prefix found for a prompt: its first `length` tokens' keys and values. */
export type PrefixHit = { length: number; entry: Entry };

/**
 * Prompts' KV caches kept after their prefill, so that a later prompt that starts with the same tokens (a
 * shared system prompt, the earlier turns of a conversation) computes only the rest — vLLM's automatic
 * prefix caching. A prompt is stored once, cut to whole blocks; each of its block-aligned prefixes is indexed
 * by a hash chain, so a prompt sharing only its first blocks with a stored one still finds them. The least
 * recently used prompts go when `budgetBytes` is passed.
 */
export class PrefixCache {
  /** In order of last use, oldest first. */
  private entries = new Set<Entry>();
  private index = new Map<string, Entry>();
  private bytes = 0;
  hits = 0;
  hitTokens = 0;

  constructor(
    private budgetBytes: number,
    private shape: { layers: number; heads: number; headDim: number },
  ) {}

  /** Bytes held. */
  get size(): number {
    return this.bytes;
  }

  /**
   * The longest stored prefix of `prompt` that leaves at least one token to compute (its logits are the
   * next token's), or undefined. `namespace`: prompts whose keys and values are computed otherwise (with a LoRA
   * adapter: its path) are stored and found apart from the model's own.
   */
  lookup(prompt: number[], namespace = ''): PrefixHit | undefined {
    let hit: PrefixHit | undefined;
    for (const [length, key] of prefixKeys(prompt, prompt.length - 1, namespace)) {
      const entry = this.index.get(key);
      if (!entry) break;
      hit = { length, entry };
    }
    if (hit) {
      this.touch(hit.entry);
      this.hits++;
      this.hitTokens += hit.length;
    }
    return hit;
  }

  /**
   * Stores `prompt` cut to whole blocks, unless that much of it is stored already. `read(c, head, length)`
   * gives cache `c`'s (layer × 2 + key/value) first `length` positions of `head` ([length, headDim]).
   */
  insert(prompt: number[], read: (cache: number, head: number, length: number) => KvArray, namespace = ''): void {
    const keys = [...prefixKeys(prompt, prompt.length, namespace)].map(([, key]) => key);
    if (keys.length === 0) return;
    const known = this.index.get(keys[keys.length - 1]);
    if (known) {
      this.touch(known);
      return;
    }
    const { layers, heads, headDim } = this.shape;
    const length = keys.length * PREFIX_BLOCK;
    const kv = Array.from({ length: 2 * layers }, (_, c) => {
      const first = read(c, 0, length);
      const out = first instanceof Float32Array ? new Float32Array(heads * length * headDim) : new Uint16Array(heads * length * headDim);
      out.set(first, 0);
      for (let h = 1; h < heads; h++) out.set(read(c, h, length), h * length * headDim);
      return out;
    });
    const entry: Entry = { length, kv, bytes: kv.reduce((n, a) => n + a.byteLength, 0), keys };
    if (entry.bytes > this.budgetBytes) return;
    for (const key of keys) this.index.set(key, entry);
    this.entries.add(entry);
    this.bytes += entry.bytes;
    for (const oldest of this.entries) {
      if (this.bytes <= this.budgetBytes) break;
      this.evict(oldest);
    }
  }

  /**
   * Cache `c`'s first `length` positions of a hit as one sequence's past, [1, heads, length, headDim]:
   * a view where the entry holds exactly that many, else a copy.
   */
  past(hit: PrefixHit, c: number): KvArray {
    const { heads, headDim } = this.shape;
    const { entry, length } = hit;
    const all = entry.kv[c];
    if (length === entry.length) return all;
    const out = all instanceof Float32Array ? new Float32Array(heads * length * headDim) : new Uint16Array(heads * length * headDim);
    for (let h = 0; h < heads; h++) out.set(all.subarray(h * entry.length * headDim, (h * entry.length + length) * headDim), h * length * headDim);
    return out;
  }

  private touch(entry: Entry): void {
    this.entries.delete(entry);
    this.entries.add(entry);
  }

  private evict(entry: Entry): void {
    this.entries.delete(entry);
    this.bytes -= entry.bytes;
    for (const key of entry.keys) if (this.index.get(key) === entry) this.index.delete(key);
  }
}

/**
 * [length, key] of each block-aligned prefix of `tokens` no longer than `limit`, shortest first: a hash
 * chain over blocks (starting from the namespace), computed as it is read (a lookup stops at its first miss).
 */
function* prefixKeys(tokens: number[], limit: number, namespace: string): Generator<[number, string]> {
  let key = namespace;
  for (let end = PREFIX_BLOCK; end <= limit; end += PREFIX_BLOCK) {
    key = createHash('sha1')
      .update(key)
      .update(Int32Array.from(tokens.slice(end - PREFIX_BLOCK, end)))
      .digest('base64');
    yield [end, key];
  }
}
