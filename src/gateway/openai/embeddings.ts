import type { Context } from 'hono';
import PQueue from 'p-queue';
import { z } from 'zod';
import { badInput, GatewayError } from '../../errors/index.js';
import { embeddingInputs, embeddingOf } from '../../models/index.js';
import { clientSignal } from '../body.js';
import type { GatewayEnv, ServedModel } from '../types.js';

/** OpenAI's limit on inputs per request. */
export const MAX_EMBEDDING_INPUTS = 2048;

const tokenIds = z.array(z.number().int().min(0)).min(1, 'a list of token ids must not be empty');

export const embeddingsSchema = z.object({
  model: z.string({ error: 'you must provide a model parameter' }).min(1),
  input: z.union([z.string(), z.array(z.string()).min(1).max(MAX_EMBEDDING_INPUTS), tokenIds, z.array(tokenIds).min(1).max(MAX_EMBEDDING_INPUTS)], {
    error: `expected a string, a list of strings, a list of token ids or a list of lists of token ids (at most ${MAX_EMBEDDING_INPUTS} inputs)`,
  }),
  encoding_format: z.enum(['float', 'base64'], { error: 'encoding_format must be "float" or "base64"' }).nullish(),
  /** Fewer dimensions than the model's (Matryoshka): the leading ones, normalized again. */
  dimensions: z.number().int().positive().nullish(),
  user: z.string().nullish(),
});
export type EmbeddingsRequest = z.infer<typeof embeddingsSchema>;

/** Looks a model up for /v1/embeddings: 404 model_not_found unless it is a text encoder. */
export function embeddingModelOf(models: ReadonlyMap<string, ServedModel>): (name: string) => ServedModel {
  return (name) => {
    const m = models.get(name);
    if (m?.embedding) return m;
    const known = [...models.values()].filter((e) => e.embedding).map((e) => e.name);
    throw new GatewayError(
      404,
      'model_not_found',
      `The model \`${name}\` does not exist or is not an embedding model (this gateway embeds with: ${known.join(', ')})`,
      {
        param: 'model',
      },
    );
  };
}

/**
 * POST /v1/embeddings. Every input is a request of its own to the model's dynamic batcher, so texts batch
 * with other callers' texts. A request keeps at most two batches' worth of inputs queued at a time: a
 * 2048-input request neither overflows the queue nor makes everyone behind it wait for all of it.
 */
export async function embeddings(c: Context<GatewayEnv>, m: ServedModel, req: EmbeddingsRequest): Promise<Response> {
  const e = m.embedding as NonNullable<ServedModel['embedding']>;
  const batcher = m.batcher as NonNullable<ServedModel['batcher']>;
  c.set('model', m.name);
  const texts = inputTokens(e, req.input);
  if (req.dimensions && e.dimensions !== undefined && req.dimensions > e.dimensions)
    throw badInput(`dimensions: the model's embeddings have ${e.dimensions} dimensions; ask for at most that many`, 'dimensions', 'invalid_request_error');
  const failed = new AbortController();
  const signal = AbortSignal.any([clientSignal(c), failed.signal]);
  const opts = { signal, priority: c.get('caller')?.priority, trace: c.get('span')?.spanContext() };
  const queue = new PQueue({ concurrency: Math.max(1, 2 * m.maxBatchSize) });
  let queueMs = 0;
  let batchSize = 0;
  const vectors = await Promise.all(
    texts.map((tokens) =>
      queue.add(async () => {
        try {
          const result = await batcher.submit(embeddingInputs(e.spec, tokens), opts);
          queueMs = Math.max(queueMs, result.queueMs);
          batchSize = Math.max(batchSize, result.batchSize);
          const out = result.outputs[e.spec.output];
          return embeddingOf(out, {
            tokens: tokens.length,
            pooling: e.pooling,
            perToken: e.spec.perToken,
            dimensions: req.dimensions ?? undefined,
            normalize: e.normalize,
          });
        } catch (err) {
          // The rest of this request is not worth computing: queued inputs leave the batcher, unsent ones stay unsent.
          queue.clear();
          failed.abort();
          throw err;
        }
      }),
    ),
  );
  c.set('queueMs', queueMs);
  c.set('batchSize', batchSize);
  const tokens = texts.reduce((n, t) => n + t.length, 0);
  const base64 = req.encoding_format === 'base64';
  return c.json({
    object: 'list',
    data: vectors.map((v, index) => ({
      object: 'embedding',
      index,
      // base64: the float32 values' little-endian bytes (what OpenAI's clients ask for by default and decode).
      embedding: base64 ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') : Array.from(v, float32Text),
    })),
    model: m.name,
    usage: { prompt_tokens: tokens, total_tokens: tokens },
  });
}

/** A float32 as the shortest decimal that reads back as the same float32 (9 digits do), not the 17 of its float64. */
const float32Text = (x: number) => Number(x.toPrecision(9));

/** The request's inputs as token lists, each checked: not empty, within the context, in the vocabulary. */
function inputTokens(e: NonNullable<ServedModel['embedding']>, input: EmbeddingsRequest['input']): number[][] {
  const list: (string | number[])[] =
    typeof input === 'string' ? [input] : typeof input[0] === 'number' ? [input as number[]] : (input as (string | number[])[]);
  return list.map((item, i) => {
    const param = typeof input === 'string' || typeof input[0] === 'number' ? 'input' : `input.${i}`;
    const tokens = typeof item === 'string' ? e.tokenizer.encode(item) : item;
    if (tokens.length === 0) throw badInput(`${param}: must not be empty`, param, 'invalid_request_error');
    if (tokens.length > e.context)
      throw badInput(
        `${param}: this model's maximum context length is ${e.context} tokens, however you requested ${tokens.length} tokens`,
        param,
        'invalid_request_error',
      );
    const outside = tokens.find((t) => t >= e.vocab);
    if (outside !== undefined)
      throw badInput(`${param}: token ${outside} is not in the model's vocabulary (${e.vocab} tokens)`, param, 'invalid_request_error');
    return tokens;
  });
}
