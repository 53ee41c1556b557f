import type { Context } from 'hono';
import { z } from 'zod';
import { badInput } from '../../errors/index.js';
import { embeddingInputs, embeddingOf } from '../../models/index.js';
import type { GatewayEnv, ServedModel } from '../types.js';
import { type Asker, askerOf, checkedTokens, idTokens, MAX_INPUTS, runEach, type TextLimits, textTokens, truncateField } from './encoder.js';

const tokenIds = z.array(z.number().int().min(0)).min(1, 'a list of token ids must not be empty');

export const embeddingsSchema = z.object({
  model: z.string({ error: 'you must provide a model parameter' }).min(1),
  input: z.union([z.string(), z.array(z.string()).min(1).max(MAX_INPUTS), tokenIds, z.array(tokenIds).min(1).max(MAX_INPUTS)], {
    error: `expected a string, a list of strings, a list of token ids or a list of lists of token ids (at most ${MAX_INPUTS} inputs)`,
  }),
  encoding_format: z.enum(['float', 'base64'], { error: 'encoding_format must be "float" or "base64"' }).nullish(),
  /** Fewer dimensions than the model's (Matryoshka): the leading ones, normalized again. */
  dimensions: z.number().int().positive().nullish(),
  user: z.string().nullish(),
  truncate_prompt_tokens: truncateField,
});
export type EmbeddingsRequest = z.infer<typeof embeddingsSchema>;

/** POST /v1/embeddings. */
export async function embeddings(c: Context<GatewayEnv>, m: ServedModel, req: EmbeddingsRequest): Promise<Response> {
  return c.json(await embeddingsAnswer(askerOf(c, m), m, req));
}

/** An embeddings request's answer (OpenAI's list): every text is a request of its own to the model's dynamic batcher (see runEach). */
export async function embeddingsAnswer(asker: Asker, m: ServedModel, req: EmbeddingsRequest): Promise<object> {
  const e = m.embedding as NonNullable<ServedModel['embedding']>;
  const texts = inputTokens(e, req.input, req.truncate_prompt_tokens);
  if (req.dimensions && e.dimensions !== undefined && req.dimensions > e.dimensions)
    throw badInput(`dimensions: the model's embeddings have ${e.dimensions} dimensions; ask for at most that many`, 'dimensions', 'invalid_request_error');
  const vectors = await runEach(
    asker,
    m,
    texts.map((tokens) => embeddingInputs(e.spec, tokens)),
    (outputs, i) =>
      embeddingOf(outputs[e.spec.output], {
        tokens: texts[i].length,
        pooling: e.pooling,
        perToken: e.spec.perToken,
        dimensions: req.dimensions ?? undefined,
        normalize: e.normalize,
      }),
  );
  const tokens = texts.reduce((n, t) => n + t.length, 0);
  const base64 = req.encoding_format === 'base64';
  return {
    object: 'list',
    data: vectors.map((v, index) => ({
      object: 'embedding',
      index,
      // base64: the float32 values' little-endian bytes (what OpenAI's clients ask for by default and decode).
      embedding: base64 ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') : Array.from(v, float32Text),
    })),
    model: m.name,
    usage: { prompt_tokens: tokens, total_tokens: tokens },
  };
}

/** A float32 as the shortest decimal that reads back as the same float32 (9 digits do), not the 17 of its float64. */
const float32Text = (x: number) => Number(x.toPrecision(9));

/** The request's inputs as token lists, each cut where asked (truncate_prompt_tokens), then checked. */
function inputTokens(e: TextLimits, input: EmbeddingsRequest['input'], truncate: number | null | undefined): number[][] {
  const list: (string | number[])[] =
    typeof input === 'string' ? [input] : typeof input[0] === 'number' ? [input as number[]] : (input as (string | number[])[]);
  const one = typeof input === 'string' || typeof input[0] === 'number';
  return list.map((item, i) => {
    const param = one ? 'input' : `input.${i}`;
    return checkedTokens(e, typeof item === 'string' ? textTokens(e, item, truncate, param) : idTokens(e, item, truncate), param);
  });
}
