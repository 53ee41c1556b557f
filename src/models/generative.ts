import { type LoraTarget, loraTargets } from './lora.js';
import type { ModelSignature } from './signature.js';

/** What the gateway and the replica need to know of a decoder with a KV cache. */
export type GenerativeSpec = {
  layers: number;
  heads: number;
  headDim: number;
  vocab: number;
  /** Longest prompt + completion, in tokens (the model's `n_ctx` metadata), if known. */
  context?: number;
  /** Tokenizer name (metadata `tokenizer`); only GPT-2 BPE is bundled. */
  tokenizer: string;
  /**
   * The model also outputs each step's own keys/values (`new_key_values.{i}.key/value`, models/gpt.py):
   * a decode step then fetches those instead of every sequence's whole `present` cache.
   */
  newKeyValues: boolean;
  /**
   * The model takes `logits_to_keep` (Hugging Face's argument; models/gpt.py): the logits of only the last N
   * positions. A prefill then computes and returns one position's logits per prompt instead of every one's.
   */
  logitsToKeep: boolean;
  /** The cache's element type (past_key_values in, present / new_key_values out). */
  kvType: 'float32' | 'float16';
  /** The layers it takes LoRA adapters for, each row its own (models/gpt.py --lora), if any. */
  lora?: LoraTarget[];
};

/**
 * Recognises a GPT-2-style decoder (the layout of Hugging Face / Optimum exports): input_ids,
 * attention_mask, position_ids, past_key_values.{i}.key/value in; logits, present.{i}.key/value out.
 */
export function generativeSpec(sig: ModelSignature): GenerativeSpec | null {
  const names = new Set(sig.inputs.map((i) => i.name));
  const logits = sig.outputs.find((o) => o.name === 'logits');
  if (!names.has('input_ids') || !names.has('attention_mask') || !names.has('position_ids') || !logits) return null;
  const past = sig.inputs.filter((i) => /^past_key_values\.\d+\.(key|value)$/.test(i.name));
  const layers = past.length / 2;
  const first = sig.inputs.find((i) => i.name === 'past_key_values.0.key');
  if (!first || layers < 1 || !Number.isInteger(layers)) return null;
  const [, heads, , headDim] = first.shape;
  const kvType = ({ FP32: 'float32', FP16: 'float16' } as const)[first.dtype as 'FP32' | 'FP16'];
  if (!kvType) return null;
  const vocab = logits.shape[2];
  if (typeof heads !== 'number' || typeof headDim !== 'number' || typeof vocab !== 'number') return null;
  const context = Number(sig.metadata.n_ctx) || undefined;
  const outputs = new Set(sig.outputs.map((o) => o.name));
  const newKeyValues = Array.from({ length: layers }, (_, l) => l).every(
    (l) => outputs.has(`new_key_values.${l}.key`) && outputs.has(`new_key_values.${l}.value`),
  );
  const logitsToKeep = names.has('logits_to_keep');
  return { layers, heads, headDim, vocab, context, tokenizer: sig.metadata.tokenizer ?? 'gpt2', newKeyValues, logitsToKeep, kvType, lora: loraTargets(sig) };
}
