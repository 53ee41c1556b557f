import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { numberToFloat16 } from '../tensor/index.js';
import { embeddingInputs, embeddingOf, embeddingPadding, embeddingSpec } from './embedding.js';
import { type ModelSignature, readSignature } from './signature.js';

const models = fileURLToPath(new URL('../../examples/models/', import.meta.url));

describe('embeddingSpec', () => {
  it('recognises the generated encoder: per-token output, its size, context, vocabulary and pooling from metadata', async () => {
    expect(embeddingSpec(await readSignature(`${models}tiny-embed.onnx`))).toEqual({
      ids: 'input_ids',
      idType: 'INT64',
      mask: 'attention_mask',
      typeIds: undefined,
      output: 'last_hidden_state',
      perToken: true,
      dimensions: 32,
      context: 512,
      vocab: 50257,
      pooling: 'mean',
      tokenizer: 'gpt2',
    });
  });

  it('is not a decoder with a KV cache, nor a model with other inputs', async () => {
    expect(embeddingSpec(await readSignature(`${models}tiny-gpt.onnx`))).toBeNull();
    expect(embeddingSpec(await readSignature(`${models}mlp.onnx`))).toBeNull();
  });

  it("prefers a pooled output (sentence-transformers' sentence_embedding) and takes token_type_ids and INT32 ids", () => {
    const sig: ModelSignature = {
      inputs: ['input_ids', 'attention_mask', 'token_type_ids'].map((name) => ({ name, dtype: 'INT32' as const, shape: ['batch', 'seq'] })),
      outputs: [
        { name: 'token_embeddings', dtype: 'FP32', shape: ['batch', 'seq', 384] },
        { name: 'sentence_embedding', dtype: 'FP32', shape: ['batch', 384] },
      ],
      batchAxis: 0,
      metadata: { max_position_embeddings: '256' },
    };
    expect(embeddingSpec(sig)).toMatchObject({
      idType: 'INT32',
      typeIds: 'token_type_ids',
      output: 'sentence_embedding',
      perToken: false,
      dimensions: 384,
      context: 256,
    });
    expect(embeddingPadding(embeddingSpec(sig) as never)).toEqual({
      input_ids: { axes: [1], value: 0, buckets: true },
      attention_mask: { axes: [1], value: 0, buckets: true },
      token_type_ids: { axes: [1], value: 0, buckets: true },
    });
  });
});

describe('embeddingInputs', () => {
  it('gives one text its ids, an all-ones mask and all-zero token types as [1, tokens]', () => {
    const spec = { ids: 'input_ids', idType: 'INT32', mask: 'attention_mask', typeIds: 'token_type_ids' } as never;
    const inputs = embeddingInputs(spec, [5, 6, 7]);
    expect(inputs.input_ids).toEqual({ dtype: 'INT32', shape: [1, 3], data: Int32Array.from([5, 6, 7]) });
    expect(Array.from(inputs.attention_mask.data as Int32Array)).toEqual([1, 1, 1]);
    expect(Array.from(inputs.token_type_ids.data as Int32Array)).toEqual([0, 0, 0]);
  });
});

describe('embeddingOf', () => {
  // One text of 2 tokens in a batch padded to 3 positions: the third row is padding and must never count.
  const hidden = { dtype: 'FP32' as const, shape: [1, 3, 2], data: Float32Array.from([1, 2, 3, 6, 100, 100]) };
  const of = (o: Partial<Parameters<typeof embeddingOf>[1]>) =>
    Array.from(embeddingOf(hidden, { tokens: 2, pooling: 'mean', perToken: true, normalize: false, ...o }));

  it("pools the text's own positions: mean, first (cls) or last", () => {
    expect(of({})).toEqual([2, 4]);
    expect(of({ pooling: 'cls' })).toEqual([1, 2]);
    expect(of({ pooling: 'last' })).toEqual([3, 6]);
  });

  it('normalizes to length 1, after cutting to the leading dimensions', () => {
    const [x, y] = of({ normalize: true });
    expect(x).toBeCloseTo(2 / Math.hypot(2, 4), 6);
    expect(y).toBeCloseTo(4 / Math.hypot(2, 4), 6);
    expect(of({ normalize: true, dimensions: 1 })).toEqual([1]);
  });

  it('takes a pooled output as it is, and FP16 outputs by their values', () => {
    const pooled = { dtype: 'FP32' as const, shape: [1, 2], data: Float32Array.from([3, 4]) };
    expect(Array.from(embeddingOf(pooled, { tokens: 5, pooling: 'mean', perToken: false, normalize: true }))).toEqual([0.6, 0.8].map(Math.fround));
    const half = { dtype: 'FP16' as const, shape: [1, 2, 2], data: Uint16Array.from([1, 2, 3, 6].map(numberToFloat16)) };
    expect(Array.from(embeddingOf(half, { tokens: 2, pooling: 'mean', perToken: true, normalize: false }))).toEqual([2, 4]);
  });
});
