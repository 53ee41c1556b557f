import { type DType, float16ToNumber, type Tensor } from '../tensor/index.js';
import type { ModelSignature, TensorSpec } from './signature.js';

export type Pooling = 'mean' | 'cls' | 'last';
export const POOLINGS: readonly Pooling[] = ['mean', 'cls', 'last'];

/** A text encoder's inputs (token ids in, as Optimum and sentence-transformers export encoders) and limits. */
export type EncoderInputs = {
  /** The token ids' input (`input_ids`) and its integer type. */
  ids: string;
  idType: 'INT64' | 'INT32';
  /** `attention_mask` (1 for a token, 0 for padding) and `token_type_ids` (0 for a first text, 1 for a second), where the model takes them. */
  mask?: string;
  typeIds?: string;
  /** Longest input in tokens (metadata `n_ctx` or `max_position_embeddings`), if known. */
  context?: number;
  /** Tokens in the model's vocabulary (metadata `vocab`), if known. */
  vocab?: number;
  tokenizer: string;
};

/** What the gateway needs to embed text with a model: its inputs, and what comes out. */
export type EmbeddingSpec = EncoderInputs & {
  /** The output read, and whether it is per token ([batch, seq, hidden]: pooled here) or already per text ([batch, hidden]). */
  output: string;
  perToken: boolean;
  /** Length of an embedding, when the model's output says. */
  dimensions?: number;
  /** The pooling the model's metadata names (`pooling`), if any. */
  pooling?: Pooling;
};

/** A sequence classifier (Hugging Face's ForSequenceClassification): `logits` [batch, classes]; one class is a cross-encoder. */
export type ClassifierSpec = EncoderInputs & { output: string; classes: number };

const SEQUENCE_INPUTS = new Set(['input_ids', 'attention_mask', 'token_type_ids']);
// Names exporters give a pooled embedding (sentence-transformers, Optimum) and a per-token one.
const POOLED = ['sentence_embedding', 'embeddings', 'text_embeds', 'pooler_output'];
const PER_TOKEN = ['last_hidden_state', 'token_embeddings'];

/**
 * Recognises a text encoder as Optimum and sentence-transformers export them: `input_ids` [batch, seq] (with
 * `attention_mask`, `token_type_ids`), a float output per token [batch, seq, hidden] or per text [batch, hidden].
 * A decoder with a KV cache is generative, not this.
 */
export function embeddingSpec(sig: ModelSignature): EmbeddingSpec | null {
  const inputs = encoderInputs(sig);
  if (!inputs || classifierSpec(sig)) return null;
  const floats = sig.outputs.filter((o) => o.dtype === 'FP32' || o.dtype === 'FP16');
  const named = (names: string[], rank: number) => names.map((n) => floats.find((o) => o.name === n && o.shape.length === rank)).find(Boolean);
  const output: TensorSpec | undefined =
    named(POOLED, 2) ?? named(PER_TOKEN, 3) ?? floats.find((o) => o.shape.length === 2) ?? floats.find((o) => o.shape.length === 3);
  if (!output) return null;
  const hidden = output.shape[output.shape.length - 1];
  return {
    ...inputs,
    output: output.name,
    perToken: output.shape.length === 3,
    dimensions: typeof hidden === 'number' ? hidden : undefined,
    pooling: POOLINGS.find((p) => p === sig.metadata.pooling),
  };
}

/** Recognises a sequence classifier: an encoder's inputs, and `logits` [batch, classes] out (classes known). */
export function classifierSpec(sig: ModelSignature): ClassifierSpec | null {
  const inputs = encoderInputs(sig);
  const logits = sig.outputs.find((o) => o.name === 'logits' && o.shape.length === 2 && (o.dtype === 'FP32' || o.dtype === 'FP16'));
  if (!inputs || !logits || typeof logits.shape[1] !== 'number') return null;
  return { ...inputs, output: logits.name, classes: logits.shape[1] };
}

function encoderInputs(sig: ModelSignature): EncoderInputs | null {
  const byName = new Map(sig.inputs.map((i) => [i.name, i]));
  const ids = byName.get('input_ids');
  if (ids?.shape.length !== 2 || (ids.dtype !== 'INT64' && ids.dtype !== 'INT32')) return null;
  if (!sig.inputs.every((i) => SEQUENCE_INPUTS.has(i.name) && i.shape.length === 2)) return null;
  return {
    ids: 'input_ids',
    idType: ids.dtype,
    mask: byName.has('attention_mask') ? 'attention_mask' : undefined,
    typeIds: byName.has('token_type_ids') ? 'token_type_ids' : undefined,
    context: Number(sig.metadata.n_ctx ?? sig.metadata.max_position_embeddings) || undefined,
    vocab: Number(sig.metadata.vocab ?? sig.metadata.vocab_size) || undefined,
    tokenizer: sig.metadata.tokenizer ?? 'gpt2',
  };
}

/** One text's inputs ([1, tokens] each) as the model takes them; `typeIds` are a pair's segments (BERT's: 0 then 1), else all 0. */
export function embeddingInputs(spec: EncoderInputs, tokens: readonly number[], typeIds?: readonly number[]): Record<string, Tensor> {
  const ints = (values: ArrayLike<number>) => intTensor(spec.idType, values);
  const inputs: Record<string, Tensor> = { [spec.ids]: ints(tokens) };
  if (spec.mask) inputs[spec.mask] = ints(new Array(tokens.length).fill(1));
  if (spec.typeIds) inputs[spec.typeIds] = ints(typeIds ?? new Array(tokens.length).fill(0));
  return inputs;
}

function intTensor(dtype: 'INT64' | 'INT32', values: ArrayLike<number>): Tensor {
  const data = dtype === 'INT64' ? BigInt64Array.from(Array.from(values, BigInt)) : Int32Array.from(values);
  return { dtype: dtype as DType, shape: [1, values.length], data };
}

/**
 * One text's embedding from the model's output for it: per-token outputs ([1, seq, hidden], seq ≥ tokens
 * where the batch was padded) are pooled over the text's own `tokens` positions; then cut to `dimensions`
 * (Matryoshka models: the leading ones carry the meaning) and scaled to length 1 if `normalize`.
 */
export function embeddingOf(
  out: Tensor,
  { tokens, pooling, perToken, dimensions, normalize }: { tokens: number; pooling: Pooling; perToken: boolean; dimensions?: number; normalize: boolean },
): Float32Array {
  const hidden = out.shape[out.shape.length - 1];
  // The rows a text owns (padding positions past them are never read); FP16 arrives as its bits.
  const own = out.data.subarray(0, (perToken ? tokens : 1) * hidden) as Float32Array | Uint16Array;
  const data = out.dtype === 'FP16' ? Float32Array.from(own, float16ToNumber) : own;
  let v: Float32Array;
  if (!perToken) v = Float32Array.from(data.subarray(0, hidden));
  else if (pooling === 'cls') v = Float32Array.from(data.subarray(0, hidden));
  else if (pooling === 'last') v = Float32Array.from(data.subarray((tokens - 1) * hidden, tokens * hidden));
  else {
    // Sums in float64: a long text's mean would otherwise lose the low bits of every addend.
    const sum = new Float64Array(hidden);
    for (let t = 0; t < tokens; t++) for (let i = 0, o = t * hidden; i < hidden; i++) sum[i] += data[o + i];
    v = Float32Array.from(sum, (s) => s / tokens);
  }
  if (dimensions !== undefined && dimensions < v.length) v = v.slice(0, dimensions);
  if (normalize) {
    let norm = 0;
    for (let i = 0; i < v.length; i++) norm += v[i] * v[i];
    norm = Math.sqrt(norm);
    if (norm > 0) for (let i = 0; i < v.length; i++) v[i] /= norm;
  }
  return v;
}

/** Texts of different lengths share a batch: their token inputs are zero-padded along the sequence (masked out). */
export function embeddingPadding(spec: EncoderInputs): Record<string, { axes: number[]; value: number; buckets: boolean }> {
  const names = [spec.ids, spec.mask, spec.typeIds].filter((n): n is string => n !== undefined);
  return Object.fromEntries(names.map((n) => [n, { axes: [1], value: 0, buckets: true }]));
}
