import * as ort from 'onnxruntime-node';
import type { GenerativeSpec } from './generative.js';
import { type Sampler, type Sampling, seededRandom } from './sampling.js';

/** One generation step for a replica: sequences joining (prefilled), advancing one token, and leaving. */
export type StepRequest = {
  join: { seq: string; prompt: number[]; sampling: Sampling }[];
  advance: string[];
  release: string[];
};
export type StepResult = { tokens: Record<string, number>; prefillMs: number; decodeMs: number; decodeBatch: number };

type Sequence = {
  /** Per layer, keys and values laid out [heads][capacity][headDim]; `length` positions are filled. */
  keys: Float32Array[];
  values: Float32Array[];
  length: number;
  capacity: number;
  last: number;
  sampling: Sampling;
  random: () => number;
};

/**
 * The replica's side of continuous batching: it keeps every sequence's KV cache and runs one step at a
 * time — each joining sequence is prefilled alone, then all advancing sequences decode one token in a
 * single batched run (past caches right-padded to the longest, padding masked out).
 */
export class Decoder {
  private seqs = new Map<string, Sequence>();
  /**
   * Decode steps' inputs and outputs, reused by name: a step's pasts and presents are as large as all
   * its sequences' KV caches together (hundreds of MB for GPT-2 small at 64 streams). Fresh arrays every
   * step would outlive young GCs and make V8 run a full mark-compact per step. Padding left over from an
   * earlier step is masked out like any padding.
   */
  private scratch = new Map<string, Float32Array>();

  constructor(
    private session: ort.InferenceSession,
    private spec: GenerativeSpec,
    private sampler: Sampler,
  ) {}

  get active(): number {
    return this.seqs.size;
  }

  async step(req: StepRequest): Promise<StepResult> {
    for (const seq of req.release) this.seqs.delete(seq);
    const tokens: Record<string, number> = {};
    const t0 = performance.now();
    for (const j of req.join) tokens[j.seq] = await this.prefill(j.seq, j.prompt, j.sampling);
    const t1 = performance.now();
    const advancing = req.advance.filter((s) => this.seqs.has(s));
    if (advancing.length > 0) Object.assign(tokens, await this.decode(advancing));
    return { tokens, prefillMs: t1 - t0, decodeMs: performance.now() - t1, decodeBatch: advancing.length };
  }

  private async prefill(id: string, prompt: number[], sampling: Sampling): Promise<number> {
    const n = prompt.length;
    const positions = prompt.map((_, i) => i);
    const out = await this.session.run({
      input_ids: int64([prompt], [1, n]),
      position_ids: int64([positions], [1, n]),
      attention_mask: int64([prompt.map(() => 1)], [1, n]),
      ...this.emptyPast(1),
    });
    const { heads, headDim, layers } = this.spec;
    const capacity = Math.max(16, 2 ** Math.ceil(Math.log2(n + 1)));
    const seq: Sequence = { keys: [], values: [], length: n, capacity, last: 0, sampling, random: seededRandom(sampling.seed) };
    for (let l = 0; l < layers; l++) {
      for (const [kind, store] of [
        ['key', seq.keys],
        ['value', seq.values],
      ] as const) {
        const present = out[`present.${l}.${kind}`].data as Float32Array; // [1, heads, n, headDim]
        const cache = new Float32Array(heads * capacity * headDim);
        for (let h = 0; h < heads; h++) cache.set(present.subarray(h * n * headDim, (h + 1) * n * headDim), h * capacity * headDim);
        store.push(cache);
      }
    }
    const logits = out.logits.data as Float32Array; // [1, n, vocab]
    [seq.last] = await this.sampler.sample(logits.subarray((n - 1) * this.spec.vocab, n * this.spec.vocab), this.spec.vocab, [seq]);
    this.seqs.set(id, seq);
    return seq.last;
  }

  private async decode(ids: string[]): Promise<Record<string, number>> {
    const { heads, headDim, layers, vocab } = this.spec;
    const seqs = ids.map((id) => this.seqs.get(id) as Sequence);
    const b = seqs.length;
    const past = Math.max(...seqs.map((s) => s.length));
    const mask = new BigInt64Array(b * (past + 1));
    seqs.forEach((s, i) => {
      mask.fill(1n, i * (past + 1), i * (past + 1) + s.length);
      mask[i * (past + 1) + past] = 1n; // the new token sits after the padding
    });
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor(
        'int64',
        BigInt64Array.from(seqs, (s) => BigInt(s.last)),
        [b, 1],
      ),
      position_ids: new ort.Tensor(
        'int64',
        BigInt64Array.from(seqs, (s) => BigInt(s.length)),
        [b, 1],
      ),
      attention_mask: new ort.Tensor('int64', mask, [b, past + 1]),
    };
    // ONNX Runtime writes the outputs straight into reused buffers too (pre-allocated fetches). Only this
    // step's keys/values are needed; where the model outputs them alone, the whole present is not fetched.
    const kvOutput = this.spec.newKeyValues ? 'new_key_values' : 'present';
    const positions = this.spec.newKeyValues ? 1 : past + 1;
    const fetches: Record<string, ort.Tensor> = { logits: new ort.Tensor('float32', this.buffer('logits', b * vocab), [b, 1, vocab]) };
    for (let l = 0; l < layers; l++) {
      for (const kind of ['key', 'value'] as const) {
        const name = `past_key_values.${l}.${kind}`;
        const batch = this.buffer(name, b * heads * past * headDim);
        seqs.forEach((s, i) => {
          const cache = (kind === 'key' ? s.keys : s.values)[l];
          for (let h = 0; h < heads; h++) {
            batch.set(cache.subarray(h * s.capacity * headDim, (h * s.capacity + s.length) * headDim), (i * heads + h) * past * headDim);
          }
        });
        feeds[name] = new ort.Tensor('float32', batch, [b, heads, past, headDim]);
        const out = `${kvOutput}.${l}.${kind}`;
        fetches[out] = new ort.Tensor('float32', this.buffer(out, b * heads * positions * headDim), [b, heads, positions, headDim]);
      }
    }
    await this.session.run(feeds, fetches);
    const out = fetches;
    const next = await this.sampler.sample(out.logits.data as Float32Array, vocab, seqs); // logits [b, 1, vocab]
    const tokens: Record<string, number> = {};
    seqs.forEach((s, i) => {
      if (s.length === s.capacity) grow(s, heads, headDim);
      for (let l = 0; l < layers; l++) {
        for (const [kind, store] of [
          ['key', s.keys],
          ['value', s.values],
        ] as const) {
          const present = out[`${kvOutput}.${l}.${kind}`].data as Float32Array; // [b, heads, positions, headDim]
          for (let h = 0; h < heads; h++) {
            const from = ((i * heads + h) * positions + positions - 1) * headDim;
            store[l].set(present.subarray(from, from + headDim), (h * s.capacity + s.length) * headDim);
          }
        }
      }
      s.length++;
      s.last = next[i];
      tokens[ids[i]] = s.last;
    });
    return tokens;
  }

  private buffer(name: string, length: number): Float32Array {
    let buffer = this.scratch.get(name);
    if (!buffer || buffer.length < length) {
      buffer = new Float32Array(Math.max(length, 2 * (buffer?.length ?? 0)));
      this.scratch.set(name, buffer);
    }
    return buffer.subarray(0, length);
  }

  private emptyPast(batch: number): Record<string, ort.Tensor> {
    const feeds: Record<string, ort.Tensor> = {};
    for (let l = 0; l < this.spec.layers; l++) {
      for (const kind of ['key', 'value']) {
        feeds[`past_key_values.${l}.${kind}`] = new ort.Tensor('float32', new Float32Array(0), [batch, this.spec.heads, 0, this.spec.headDim]);
      }
    }
    return feeds;
  }
}

function grow(s: Sequence, heads: number, headDim: number): void {
  const capacity = s.capacity * 2;
  for (const store of [s.keys, s.values]) {
    for (let l = 0; l < store.length; l++) {
      const bigger = new Float32Array(heads * capacity * headDim);
      for (let h = 0; h < heads; h++) bigger.set(store[l].subarray(h * s.capacity * headDim, (h * s.capacity + s.length) * headDim), h * capacity * headDim);
      store[l] = bigger;
    }
  }
  s.capacity = capacity;
}

function int64(rows: number[][], dims: number[]): ort.Tensor {
  return new ort.Tensor('int64', BigInt64Array.from(rows.flat(), BigInt), dims);
}
