import { randomInt } from 'node:crypto';
import { type Context, Hono } from 'hono';
import { z } from 'zod';
import { badInput, GatewayError, notFound } from '../errors/index.js';
import { decode, type JsonSchema } from '../models/index.js';
import { VERSION } from '../version.js';
import { readJson } from './body.js';
import { withAdapter } from './lora.js';
import { bestCandidates, Generation, type LoggedToken, originOf, Together } from './openai/generation.js';
import { parseBody } from './openai/schema.js';
import { tokenStream } from './openai/token-stream.js';
import type { GatewayEnv, ServedModel } from './types.js';

/**
 * Hugging Face Text Generation Inference's own API (what `huggingface_hub`'s InferenceClient.text_generation,
 * the `text_generation` client and LangChain's TGI wrappers call): POST /generate, /generate_stream (SSE, one
 * event a token, the last with the whole text and `details`), POST / (either, by `stream`), GET /info. TGI serves
 * one model: here the request's `model` (an extension), else the gateway's only generative model.
 */

const parameters = z
  .object({
    max_new_tokens: z.number().int().min(1).nullish(),
    do_sample: z.boolean().nullish(),
    temperature: z.number().gt(0).nullish(),
    top_k: z.number().int().gt(0).nullish(),
    top_p: z.number().gt(0).lt(1).nullish(),
    seed: z.number().int().min(0).nullish(),
    stop: z.array(z.string()).max(4).nullish(),
    frequency_penalty: z.number().min(-2).max(2).nullish(),
    details: z.boolean().nullish(),
    return_full_text: z.boolean().nullish(),
    top_n_tokens: z.number().int().min(0).max(5).nullish(),
    truncate: z.number().int().min(1).nullish(),
    grammar: z.union([z.object({ type: z.literal('json'), value: z.unknown() }), z.object({ type: z.literal('regex'), value: z.string() })]).nullish(),
    /** Sequences generated (sampled; seeds seed + i): the one of highest mean log-probability per token is answered. */
    best_of: z.number().int().min(1).nullish(),
    repetition_penalty: z.number().gt(0).max(10).nullish(),
    typical_p: z.number().nullish(),
    watermark: z.boolean().nullish(),
    adapter_id: z.string().nullish(),
    /** The prompt's tokens scored too (details.prefill): what evaluation harnesses read log-likelihoods from. */
    decoder_input_details: z.boolean().nullish(),
  })
  .loose();

const request = z.object({
  inputs: z.string({ error: 'inputs (the prompt, a string) is required' }),
  parameters: parameters.optional(),
  stream: z.boolean().optional(),
  /** Not TGI's (it serves one model): which of the gateway's generative models. */
  model: z.string().optional(),
});

/** TGI's request body, for the OpenAPI document. */
export const tgiRequestSchema = request;

/** Most sequences one request's best_of may ask for (TGI's --max-best-of; its default is 2). */
const MAX_BEST_OF = 8;

/** TGI's default `max_new_tokens` (its router's, since 2.x). */
const DEFAULT_MAX_NEW_TOKENS = 100;

export function tgiRoutes(models: ReadonlyMap<string, ServedModel>, maxBodyBytes: number): Hono<GatewayEnv> {
  const app = new Hono<GatewayEnv>();
  const modelOf = (name: string | undefined): ServedModel => {
    const generative = [...models.values()].filter((m) => m.generation);
    const m = name === undefined ? (generative.length === 1 ? generative[0] : undefined) : models.get(name);
    if (m?.generation) return m;
    if (name === undefined && generative.length > 1)
      throw badInput(`this gateway serves several generative models (${generative.map((g) => g.name).join(', ')}): name one with "model"`, 'model');
    throw notFound(`${name === undefined ? 'no generative model is served' : `model ${name} is not a generative model served here`}`);
  };
  const route = (stream: boolean | 'by body') => async (c: Context<GatewayEnv>) => {
    const body = parseBody(request, await readJson(c, maxBodyBytes));
    return generate(
      c,
      withAdapter(modelOf(body.model), body.parameters?.adapter_id, 'parameters.adapter_id'),
      body,
      stream === 'by body' ? (body.stream ?? false) : stream,
      stream === 'by body',
    );
  };
  app.post('/', route('by body'));
  app.post('/generate', route(false));
  app.post('/generate_stream', route(true));
  app.get('/info', (c) => {
    const m = modelOf(c.req.query('model'));
    const context = m.generation?.context ?? 0;
    return c.json({
      model_id: m.name,
      model_sha: null,
      model_dtype: 'float32',
      model_device_type: m.device.startsWith('cuda') ? 'cuda' : 'cpu',
      model_pipeline_tag: 'text-generation',
      max_concurrent_requests: m.batching?.maxQueueSize ?? m.maxBatchSize,
      max_best_of: MAX_BEST_OF,
      max_stop_sequences: 4,
      max_input_tokens: context - 1,
      max_total_tokens: context,
      max_client_batch_size: 1,
      router: 'infergate',
      version: VERSION,
      sha: null,
      docker_label: null,
    });
  });
  return app;
}

type Request = z.infer<typeof request>;

/**
 * `compat`: TGI's `POST /` (compat_generate, as the Inference API and SageMaker's Hugging Face containers answer):
 * a whole answer is an array of one, and its text the prompt and the completion unless return_full_text says not.
 */
async function generate(c: Context<GatewayEnv>, m: ServedModel, body: Request, stream: boolean, compat = false): Promise<Response> {
  c.set('model', m.name);
  const p = body.parameters ?? {};
  if (stream && p.decoder_input_details === true)
    throw badInput('parameters.decoder_input_details is not served when streaming tokens', 'decoder_input_details');
  const refused = (
    [
      ['typical_p', p.typical_p != null && p.typical_p !== 1, 'use top_p'],
      ['watermark', p.watermark === true, 'no watermarking here'],
    ] as const
  ).find(([, given]) => given);
  if (refused) throw badInput(`parameters.${refused[0]} is not served: ${refused[2]}`, refused[0]);
  const gen = m.generation as NonNullable<ServedModel['generation']>;
  let prompt = gen.tokenizer.encode(body.inputs);
  if (p.truncate != null) prompt = prompt.slice(-p.truncate); // TGI keeps the prompt's last tokens
  // TGI samples when asked to, or when a sampling setting is given; else it is greedy.
  const sampling = p.do_sample === true || p.temperature != null || p.top_k != null || p.top_p != null;
  const seed = sampling ? (p.seed ?? randomInt(2 ** 31)) : undefined;
  const bestOf = p.best_of ?? 1;
  if (bestOf > 1) {
    // (TGI's own checks; a seed it refuses is taken here: the sequences get seed, seed + 1, …)
    if (!sampling) throw badInput('parameters.best_of > 1 needs sampling: do_sample, or a temperature, top_k or top_p', 'best_of');
    if (bestOf > MAX_BEST_OF) throw badInput(`parameters.best_of must be at most ${MAX_BEST_OF} (max_best_of)`, 'best_of');
    if (stream) throw badInput('parameters.best_of > 1 is not served when streaming tokens', 'best_of');
  }
  // (the default fits the context; a max_new_tokens given that does not is a 422, as TGI's)
  const maxTokens = p.max_new_tokens ?? Math.min(DEFAULT_MAX_NEW_TOKENS, Math.max(1, gen.context - prompt.length));
  // The prompt scored comes back as the generation's first piece (its echo), taken apart below: whole answers only.
  // (asking for the prompt's details asks for details, as TGI's)
  const details = p.details === true || p.decoder_input_details === true;
  const prefill = !stream && p.decoder_input_details === true;
  // One sequence per best_of; when one fails, the others stop too.
  const together = new Together(c);
  const seeds = Array.from({ length: bestOf }, (_, i) => (seed === undefined ? undefined : seed + i));
  const generations = together.start(
    bestOf,
    (i) =>
      new Generation(
        m,
        {
          temperature: sampling ? (p.temperature ?? 1) : 0,
          top_k: p.top_k,
          top_p: p.top_p,
          seed: seeds[i],
          stop: p.stop ?? [],
          include_stop_str_in_output: true, // (TGI's text ends with the stop sequence that ended it)
          frequency_penalty: p.frequency_penalty,
          repetition_penalty: p.repetition_penalty,
          // every token's log-probability (TGI's details and stream events carry it; best_of ranks by them), and top_n_tokens alternatives
          logprobs: p.top_n_tokens ?? 0,
          echo: prefill,
          ...(p.grammar?.type === 'json' && { guided_json: p.grammar.value as JsonSchema | string }),
          ...(p.grammar?.type === 'regex' && { guided_regex: p.grammar.value }),
        },
        prompt,
        maxTokens,
        together.signal,
        originOf(c),
      ),
  );
  const [generation] = generations;
  const full = (text: string) => ((p.return_full_text ?? compat) ? body.inputs + text : text);
  const token = (t: LoggedToken) => ({ id: t.token, text: decode(gen.tokenizer, [t.token]), logprob: t.logprob, special: t.token === gen.tokenizer.eos });
  const topTokens = (t: LoggedToken) => (t.top ?? []).map(([id, logprob]) => token({ token: id, logprob, rank: null, top: null }));
  const finishReason = (reason: string, g = generation) => (reason === 'length' ? 'length' : g.stopReason === undefined ? 'eos_token' : 'stop_sequence');

  if (!stream) {
    const wholes = await together.wait(Promise.all(generations.map((g) => g.whole())));
    const echoed = prefill ? decode(gen.tokenizer, prompt) : '';
    /** A sequence's text and details, as TGI answers them (best_of's others: in details.best_of_sequences). */
    const sequences = generations.map((g, i) => {
      const { result, text, logged: all } = wholes[i];
      const [input, logged] = prefill ? [all.slice(0, prompt.length), all.slice(prompt.length)] : [[], all];
      const details = {
        finish_reason: finishReason(result.finishReason, g),
        generated_tokens: result.completionTokens,
        seed: seeds[i] ?? null,
        prefill: input.map((t) => ({ id: t.token, text: decode(gen.tokenizer, [t.token]), logprob: t.logprob })),
        tokens: logged.map(token),
        ...(p.top_n_tokens && { top_tokens: logged.map(topTokens) }),
      };
      return { generated_text: full(text.slice(echoed.length)), details, meanLogprob: g.meanLogprob, queueMs: result.queueMs };
    });
    const [best] = bestCandidates(sequences, 1);
    c.set('queueMs', best.queueMs);
    const others = sequences.filter((s) => s !== best).map(({ generated_text, details }) => ({ generated_text, ...details }));
    const answer = {
      generated_text: best.generated_text,
      ...(details && { details: { ...best.details, ...(bestOf > 1 && { best_of_sequences: others }) } }),
    };
    return c.json(compat ? [answer] : answer);
  }
  return tokenStream(c, generation.started, async (sse) => {
    // One event a token, as TGI sends them; the last one (held back until the end is known) has the whole text.
    let index = 0;
    let held: LoggedToken | undefined;
    let text = '';
    const send = (t: LoggedToken, last?: { finish_reason: string; generated_tokens: number }) =>
      sse.writeSSE({
        data: JSON.stringify({
          index: ++index,
          token: token(t),
          ...(p.top_n_tokens && { top_tokens: topTokens(t) }),
          generated_text: last ? full(text) : null,
          details: last && details ? { ...last, seed: seed ?? null, input_length: generation.promptTokens } : null,
        }),
      });
    try {
      for await (const piece of generation) {
        text += piece.text;
        for (const t of piece.logged) {
          if (held) await send(held);
          held = t;
        }
      }
      const result = await generation.result;
      for (const t of generation.takeLogprobs()) {
        if (held) await send(held);
        held = t;
      }
      if (held) await send(held, { finish_reason: finishReason(result.finishReason), generated_tokens: result.completionTokens });
    } catch (err) {
      if (sse.aborted) return;
      const e = err instanceof GatewayError ? err : undefined;
      await sse.writeSSE({ data: JSON.stringify({ error: e ? e.message : `internal error: ${(err as Error).message}`, error_type: 'generation' }) });
    }
  });
}

/** TGI's error object: `{error, error_type}`, a bad request as its 422 (input validation). */
export function tgiError(e: GatewayError): { status: number; body: { error: string; error_type: string } } {
  if (e.status === 400) return { status: 422, body: { error: e.message, error_type: 'validation' } };
  if (e.status === 429 || e.status === 503) return { status: e.status, body: { error: e.message, error_type: 'overloaded' } };
  return { status: e.status, body: { error: e.message, error_type: e.status >= 500 ? 'generation' : e.code } };
}

/** TGI's paths, for the app's guard, error format and asynchronous calls. */
export const TGI_ROUTES = ['/', '/generate', '/generate_stream', '/info'];
