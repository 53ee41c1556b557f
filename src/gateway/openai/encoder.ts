import type { Context } from 'hono';
import PQueue from 'p-queue';
import { z } from 'zod';
import { badInput, GatewayError } from '../../errors/index.js';
import type { Tokenizer } from '../../models/index.js';
import type { Inputs } from '../../tensor/index.js';
import { clientSignal } from '../body.js';
import type { GatewayEnv, ServedModel } from '../types.js';

/** OpenAI's limit on inputs per embeddings request; also the most documents or pairs one scoring request takes. */
export const MAX_INPUTS = 2048;

/** What an encoder route needs of its model: tokenizer, context and vocabulary in tokens. */
export type TextLimits = { tokenizer: Tokenizer; context: number; vocab: number };

/** Models a route serves, by what they are (`what` names them in errors). */
export const ENCODERS = {
  embedding: { serves: (m: ServedModel) => m.embedding !== undefined, what: 'an embedding model' },
  classifier: { serves: (m: ServedModel) => m.classifier !== undefined, what: 'a sequence classifier' },
  crossEncoder: { serves: (m: ServedModel) => m.classifier?.spec.classes === 1, what: 'a cross-encoder (a one-class classifier)' },
  /** Any model that takes text: generative or an encoder (/tokenize, the model list). */
  text: { serves: (m: ServedModel) => (m.generation ?? m.embedding ?? m.classifier) !== undefined, what: 'a model that takes text' },
};

/** A model by name that the route serves, else 404 model_not_found naming those it would. */
export function encoderOf(models: ReadonlyMap<string, ServedModel>, { serves, what }: (typeof ENCODERS)[keyof typeof ENCODERS]): (name: string) => ServedModel {
  return (name) => {
    const m = models.get(name);
    if (m && serves(m)) return m;
    const known = [...models.values()].filter(serves).map((e) => e.name);
    throw new GatewayError(404, 'model_not_found', `The model \`${name}\` does not exist or is not ${what} (these are: ${known.join(', ') || 'none'})`, {
      param: 'model',
    });
  };
}

/** vLLM's truncate_prompt_tokens: cut each input to at most this many tokens (-1: the model's context) instead of refusing it. */
export const truncateField = z
  .number()
  .int()
  .refine((k) => k === -1 || k >= 1, 'expected -1 (the model’s context) or a positive number of tokens')
  .nullish();

/**
 * A text's tokens (with the tokenizer's special tokens), cut to `truncate` tokens where asked: from the end the
 * tokenizer's truncation_side says (the end by default, as transformers does), its special tokens kept.
 */
export function textTokens(limits: TextLimits, text: string, truncate: number | null | undefined, param: string): number[] {
  // (empty whatever the tokenizer: BERT's makes "" [CLS] [SEP], which passed as a text)
  if (text === '') throw badInput(`${param}: must not be empty`, param, 'invalid_request_error');
  const full = limits.tokenizer.encode(text);
  const k = truncate === -1 ? limits.context : truncate;
  if (k == null || full.length <= k) return full;
  const bare = limits.tokenizer.encode(text, { special: false });
  const specials = full.length - bare.length;
  if (k <= specials)
    throw badInput(
      `truncate_prompt_tokens: ${k} leaves no room for the text beside ${specials} special tokens`,
      'truncate_prompt_tokens',
      'invalid_request_error',
    );
  // Where the text sits between the special tokens ([CLS] … [SEP]: after one).
  let at = 0;
  while (at <= specials && bare.some((t, i) => full[at + i] !== t)) at++;
  return [...full.slice(0, at), ...cut(limits.tokenizer, bare, k - specials), ...full.slice(at + bare.length)];
}

/** Token ids as given, cut to `truncate` where asked (no special tokens to keep). */
export function idTokens(limits: TextLimits, ids: number[], truncate: number | null | undefined): number[] {
  const k = truncate === -1 ? limits.context : truncate;
  return k == null || ids.length <= k ? ids : cut(limits.tokenizer, ids, k);
}

const cut = (tokenizer: Tokenizer, tokens: number[], keep: number) => (tokenizer.truncationSide === 'left' ? tokens.slice(-keep) : tokens.slice(0, keep));

/** A text's tokens, checked: not empty, within the context, in the vocabulary; `param` names it in the error. */
export function checkedTokens(limits: TextLimits, tokens: number[], param: string): number[] {
  if (tokens.length === 0) throw badInput(`${param}: must not be empty`, param, 'invalid_request_error');
  if (tokens.length > limits.context)
    throw badInput(
      `${param}: this model's maximum context length is ${limits.context} tokens, however you requested ${tokens.length} tokens`,
      param,
      'invalid_request_error',
    );
  const outside = tokens.find((t) => t >= limits.vocab);
  if (outside !== undefined)
    throw badInput(`${param}: token ${outside} is not in the model's vocabulary (${limits.vocab} tokens)`, param, 'invalid_request_error');
  return tokens;
}

/** Who asks, for `runEach`: the cancellation, priority, caller and trace of an HTTP request or a WebSocket message. */
export type Asker = { signal: AbortSignal; priority?: number; caller?: string; trace?: unknown; answered?: (queueMs: number, batchSize: number) => void };

/** An HTTP request as an Asker (its client going away cancels), the model noted for the request log. */
export function askerOf(c: Context<GatewayEnv>, m: ServedModel): Asker {
  c.set('model', m.name);
  // The request log and metrics show its longest wait in the queue and largest batch.
  const answered = (queueMs: number, batchSize: number) => {
    c.set('queueMs', Math.max(queueMs, c.get('queueMs') ?? 0));
    c.set('batchSize', Math.max(batchSize, c.get('batchSize') ?? 0));
  };
  const caller = c.get('caller');
  return { signal: clientSignal(c), priority: caller?.priority, caller: caller?.id, trace: c.get('span')?.spanContext(), answered };
}

/**
 * Runs every input as a request of its own through the model's dynamic batcher, so they batch with other
 * callers' inputs, and reads each answer with `read`. At most two batches' worth are queued at a time (and never
 * more than the model's max_queue_size, which it would overflow on an idle gateway): a
 * request of thousands of inputs neither overflows the queue nor makes everyone behind it wait for all of it.
 * A failure (or the asker going away) stops the rest.
 */
export async function runEach<T>(asker: Asker, m: ServedModel, inputs: Inputs[], read: (outputs: Inputs, i: number) => T): Promise<T[]> {
  const batcher = m.batcher as NonNullable<ServedModel['batcher']>;
  const failed = new AbortController();
  const opts = { priority: asker.priority, caller: asker.caller, trace: asker.trace, signal: AbortSignal.any([asker.signal, failed.signal]) };
  const queue = new PQueue({ concurrency: Math.max(1, Math.min(2 * m.maxBatchSize, m.batching?.maxQueueSize ?? Number.POSITIVE_INFINITY)) });
  return Promise.all(
    inputs.map((input, i) =>
      queue.add(async () => {
        try {
          const result = await batcher.submit(input, opts);
          asker.answered?.(result.queueMs, result.batchSize);
          return read(result.outputs, i);
        } catch (err) {
          // The rest is not worth computing: queued inputs leave the batcher, unsent ones stay unsent.
          queue.clear();
          failed.abort();
          throw err;
        }
      }),
    ),
  );
}
