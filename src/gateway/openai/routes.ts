import { randomBytes } from 'node:crypto';
import { type Context, Hono } from 'hono';
import { badInput, GatewayError } from '../../errors/index.js';
import { decode, type Tokenizer } from '../../models/index.js';
import { readJson } from '../body.js';
import { forwardByBody } from '../fleet.js';
import { adapterNamed, findAdapter, type LoraAdapter } from '../lora.js';
import type { GatewayEnv, ServedModel } from '../types.js';
import { countTokens, countTokensSchema, messages, messagesSchema } from './anthropic.js';
import { beamSearchAnswer } from './beams.js';
import { embeddings, embeddingsSchema } from './embeddings.js';
import { ENCODERS, encoderOf } from './encoder.js';
import { bestCandidates, chatRoom, Generation, type LoggedToken, originOf, type Piece, servedTier, Together, usage } from './generation.js';
import { chatLogprobs, completionLogprobs, promptLogprobsOf, shownBy } from './logprobs.js';
import { ReasoningSplitter, splitReasoning } from './reasoning.js';
import { responses } from './responses.js';
import { conversationId, responsesSchema } from './responses-input.js';
import { type Background, backgroundResponse, backgroundRoutes } from './responses-kept.js';
import {
  type ChatRequest,
  type CompletionRequest,
  chatSchema,
  completionSchema,
  detokenizeSchema,
  MAX_CHOICES,
  parseBody,
  tokenizeChatSchema,
  tokenizeSchema,
} from './schema.js';
import { classify, classifySchema, rerank, rerankSchema, score, scoreSchema } from './scoring.js';
import { tokenStream } from './token-stream.js';
import { chatPromptOf, chatTokens, layoutOf, ToolAnswer, type ToolUse } from './tools.js';

export type OpenAIOptions = { models: ReadonlyMap<string, ServedModel>; maxBodyBytes: number; background: Background };

/** OpenAI-compatible completions and chat completions, streaming (SSE) or not, and the model list. */
export function openaiRoutes({ models, maxBodyBytes, background }: OpenAIOptions): Hono<GatewayEnv> {
  const app = new Hono<GatewayEnv>();
  const created = Math.floor(Date.now() / 1000);
  // Models OpenAI's clients may name: generative ones and text encoders.
  const openaiModels = () => [...models.values()].filter((m) => m.generation || m.embedding || m.classifier);
  // vLLM's fields too: the context length clients (LiteLLM, evaluation harnesses) read from the list. And
  // Anthropic's (type, display_name, created_at; the list's paging): its SDKs' models.list reads the same route.
  const listed = (m: ServedModel) => ({
    id: m.name,
    object: 'model',
    created,
    owned_by: 'infergate',
    root: m.name,
    max_model_len: (m.generation ?? m.embedding ?? m.classifier)?.context,
    type: 'model',
    display_name: m.name,
    created_at: new Date(created * 1000).toISOString(),
  });
  // A LoRA adapter as vLLM lists one: its folder as root, its model as parent.
  const listedAdapter = ({ base, adapter }: { base: ServedModel; adapter: LoraAdapter }) => ({
    ...listed(base),
    id: adapter.name,
    display_name: adapter.name,
    created: adapter.created,
    root: adapter.path,
    parent: base.name,
  });
  const adapters = () => openaiModels().flatMap((base) => (base.generation?.adapters?.list() ?? []).map((adapter) => ({ base, adapter })));

  const model = generativeModelOf(models);
  const text = textModelOf(models);
  // A model's aliases are listed as vLLM lists its served names: an entry each, its own name as root.
  const withAliases = (m: ServedModel) => [listed(m), ...(m.aliases ?? []).map((alias) => ({ ...listed(m), id: alias, display_name: alias }))];
  app.get('/v1/models', (c) => {
    const data = [...openaiModels().flatMap(withAliases), ...adapters().map(listedAdapter)];
    return c.json({ object: 'list', data, has_more: false, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null });
  });
  app.get('/v1/models/:model', (c) => {
    // A tensor model here is KServe v1's model status (the same path), as KServe's v1 clients read it.
    const tensor = models.get(c.req.param('model'));
    if (tensor && !tensor.generation && !tensor.embedding && !tensor.classifier)
      return c.json({ name: tensor.name, ready: tensor.isReady() }, tensor.isReady() ? 200 : 503);
    const adapter = findAdapter(models, c.req.param('model'));
    const name = c.req.param('model');
    return c.json(adapter ? listedAdapter(adapter) : { ...listed(text(name).model), id: name, display_name: name });
  });
  app.post('/v1/completions', (c) => completions(c, model, maxBodyBytes));
  app.post('/v1/chat/completions', (c) => chat(c, model, maxBodyBytes));
  app.post('/v1/responses', (c) => responsesRoute(c, model, maxBodyBytes, undefined, background));
  app.route('/', backgroundRoutes(background));
  app.post('/v1/messages', (c) => messagesRoute(c, model, maxBodyBytes));
  app.post('/v1/embeddings', (c) => embeddingsRoute(c, encoderOf(models, ENCODERS.embedding), maxBodyBytes));
  // Cross-encoders and classifiers, by vLLM's routes (Jina's rerank API with and without /v1).
  const crossEncoder = encoderOf(models, ENCODERS.crossEncoder);
  for (const path of ['/v1/rerank', '/rerank', '/v2/rerank']) // (/v2: Cohere's v2 client's, as vLLM serves it)
    app.post(path, async (c) => {
      const req = parseBody(rerankSchema, await json(c, maxBodyBytes));
      return rerank(c, crossEncoder(req.model), req);
    });
  for (const path of ['/v1/score', '/score'])
    app.post(path, async (c) => {
      const req = parseBody(scoreSchema, await json(c, maxBodyBytes));
      return score(c, crossEncoder(req.model), req);
    });
  app.post('/classify', async (c) => {
    const req = parseBody(classifySchema, await json(c, maxBodyBytes));
    return classify(c, encoderOf(models, ENCODERS.classifier)(req.model), req);
  });
  app.post('/v1/messages/count_tokens', async (c) => {
    const req = parseBody(countTokensSchema, await json(c, maxBodyBytes));
    return countTokens(c, model(req.model), req);
  });
  // vLLM's token counting: what a prompt (or chat) costs in tokens, and text back from tokens.
  app.post('/tokenize', async (c) => {
    const body = await json(c, maxBodyBytes);
    // A chat when it has messages, else a prompt: each errs in its own terms.
    const chat = typeof body === 'object' && body !== null && 'messages' in body;
    const req = chat ? parseBody(tokenizeChatSchema, body) : parseBody(tokenizeSchema, body);
    const gen = text(req.model);
    // As chat lays the prompt out: tools listed unless tool_choice is "none" (auto, their default, lists them).
    const listsTools = 'messages' in req && (req.tools?.length ?? 0) > 0 && req.tool_choice !== 'none';
    const encoded =
      'prompt' in req
        ? gen.tokenizer.encode(req.prompt, { special: req.add_special_tokens ?? true })
        : chatTokens(gen.tokenizer, req.messages, listsTools ? req.tools : undefined, layoutOf(req));
    // (an empty prompt is generated from end-of-text, one token, as usage.prompt_tokens counts it)
    const tokens = encoded.length === 0 ? [gen.tokenizer.eos] : encoded;
    return c.json({ count: tokens.length, max_model_len: gen.context, tokens });
  });
  app.post('/detokenize', async (c) => {
    const req = parseBody(detokenizeSchema, await json(c, maxBodyBytes));
    const gen = text(req.model);
    const outside = req.tokens.find((t) => t >= gen.vocab);
    if (outside !== undefined) throw badInput(`token ${outside} is not in the model's vocabulary (${gen.vocab} tokens)`, 'tokens', 'invalid_request_error');
    return c.json({ prompt: decode(gen.tokenizer, req.tokens) });
  });
  return app;
}

/**
 * Looks a model up by name for the OpenAI routes: a generative model, or one's LoRA adapter (the model
 * generating with it); else 404 model_not_found.
 */
export function generativeModelOf(models: ReadonlyMap<string, ServedModel>): (name: string) => ServedModel {
  return (name) => {
    const m = models.get(name);
    if (m?.generation) return m;
    const adapter = adapterNamed(models, name);
    if (adapter) return adapter;
    const generative = [...models.values()].filter((g) => g.generation);
    const known = [...generative.map((g) => g.name), ...generative.flatMap((g) => g.generation?.adapters?.list().map((a) => a.name) ?? [])];
    throw new GatewayError(
      404,
      'model_not_found',
      `The model \`${name}\` does not exist or is not a generative model (this gateway generates with: ${known.join(', ')})`,
      {
        param: 'model',
      },
    );
  };
}

/** A model that takes text (generative or an encoder), with its tokenizer, context and vocabulary; else 404. */
function textModelOf(models: ReadonlyMap<string, ServedModel>): (name: string) => { model: ServedModel; tokenizer: Tokenizer; context: number; vocab: number } {
  const find = encoderOf(models, ENCODERS.text);
  return (name) => {
    const model = findAdapter(models, name)?.base ?? find(name); // an adapter has its model's tokenizer
    const { tokenizer, context, vocab } = (model.generation ?? model.embedding ?? model.classifier) as NonNullable<ServedModel['generation']>;
    return { model, tokenizer, context, vocab };
  };
}

/** POST /v1/embeddings (and openai-embeddings endpoints, with `fixedModel`). */
export async function embeddingsRoute(c: Context, model: ModelOf, maxBodyBytes: number, fixedModel?: string): Promise<Response> {
  const req = parseBody(embeddingsSchema, await json(c, maxBodyBytes, fixedModel));
  return embeddings(c, model(req.model), req);
}

type Kind = 'text_completion' | 'chat.completion';
type ModelOf = (name: string) => ServedModel;

async function json(c: Context, maxBodyBytes: number, fixedModel?: string): Promise<unknown> {
  const body = await readJson(c, maxBodyBytes, { code: 'invalid_request_error' });
  // An endpoint bound to a model serves that model, whatever the body names.
  return fixedModel && typeof body === 'object' && body !== null ? { ...body, model: fixedModel } : body;
}

/** POST /v1/completions (and openai-completions endpoints, with `fixedModel`). */
export async function completions(c: Context, model: ModelOf, maxBodyBytes: number, fixedModel?: string): Promise<Response> {
  const req = parseBody(completionSchema, await json(c, maxBodyBytes, fixedModel));
  const m = model(req.model);
  const tokenizer = (m.generation as NonNullable<ServedModel['generation']>).tokenizer;
  const prompts = completionPrompts(tokenizer, req.prompt);
  const n = req.n ?? 1;
  const bestOf = req.best_of ?? n;
  if (bestOf < n) throw badInput(`best_of (${bestOf}) must be at least n (${n}): the n best of best_of are returned`, 'best_of', 'invalid_request_error');
  // (as OpenAI's: which candidates are best is known only once all have ended)
  if (req.stream && bestOf > n) throw badInput('best_of greater than n cannot be streamed', 'best_of', 'invalid_request_error');
  if (prompts.length * bestOf > MAX_CHOICES) {
    const param = bestOf > n ? 'best_of' : 'n';
    throw badInput(
      `${prompts.length} prompts x ${param} ${bestOf} is more than the ${MAX_CHOICES} choices one request may ask for`,
      param,
      'invalid_request_error',
    );
  }
  return generate(c, m, req, prompts, req.max_tokens ?? 16, 'text_completion', undefined, bestOf);
}

/** A completion request's prompts as tokens: text or tokens, or a list of either (a batch of prompts). */
export function completionPrompts(tokenizer: Tokenizer, prompt: CompletionRequest['prompt']): number[][] {
  if (typeof prompt === 'string') return [tokenizer.encode(prompt)];
  if (typeof prompt[0] === 'number') return [prompt as number[]];
  return (prompt as (string | number[])[]).map((p) => (typeof p === 'string' ? tokenizer.encode(p) : p));
}

/** POST /v1/messages: Anthropic's Messages API. */
export async function messagesRoute(c: Context, model: ModelOf, maxBodyBytes: number, fixedModel?: string): Promise<Response> {
  const req = parseBody(messagesSchema, await json(c, maxBodyBytes, fixedModel));
  return messages(c, model(req.model), req);
}

/** POST /v1/responses (and openai-responses endpoints, with `fixedModel`). */
export async function responsesRoute(c: Context, model: ModelOf, maxBodyBytes: number, fixedModel?: string, background?: Background): Promise<Response> {
  const body = await json(c, maxBodyBytes, fixedModel);
  const req = parseBody(responsesSchema, body);
  // (continuing another gateway's response or conversation: answered there, where they are kept)
  const continued = req.previous_response_id ?? (req.conversation ? conversationId(req.conversation) : undefined);
  const there = await forwardByBody(c, background?.fleet, continued, req.previous_response_id ? 'response' : 'conversation', body);
  if (there) return there;
  const m = model(req.model);
  const effort = req.reasoning?.effort;
  // (chat's check, said with this API's name for it; before a background response is queued)
  if (effort && effort !== 'none' && !m.generation?.reasoningParser)
    throw badInput(`reasoning.effort ${effort} needs a reasoning model (one with a reasoning_parser)`, 'reasoning.effort');
  if (req.background && background) return backgroundResponse(c, m, req, background);
  if (req.background) throw badInput('background responses are not served on this route', 'background', 'invalid_request_error');
  return responses(c, m, req, background);
}

/** A reasoning model's chats: their tokens before the answers, summed as usage counts them (others: undefined). */
const reasoningOf = (gens: Generation[]) => (gens[0]?.reasoningTokens === undefined ? undefined : gens.reduce((sum, g) => sum + (g.reasoningTokens ?? 0), 0));

/** POST /v1/chat/completions (and openai-chat endpoints, with `fixedModel`). */
export async function chat(c: Context, model: ModelOf, maxBodyBytes: number, fixedModel?: string): Promise<Response> {
  const req = parseBody(chatSchema, await json(c, maxBodyBytes, fixedModel));
  const m = model(req.model);
  const { prompt: tokens, tools } = chatPromptOf(m, req);
  const maxTokens =
    req.max_completion_tokens ?? req.max_tokens ?? chatRoom(m.generation as NonNullable<ServedModel['generation']>, tokens, req.truncate_prompt_tokens);
  return generate(c, m, req, [tokens], maxTokens, 'chat.completion', tools);
}

/**
 * Generates `n` choices for each prompt — choice `p * n + i` is prompt p's i-th, with seed `seed + i` — as
 * one OpenAI response, streamed or not. With `bestOf` > n (whole answers only), each prompt's `bestOf` candidates
 * (seeds `seed + i`) are generated and its n of highest mean log-probability per token returned, best first;
 * usage counts every candidate's tokens (OpenAI's best_of).
 */
async function generate(
  c: Context,
  m: ServedModel,
  req: CompletionRequest | ChatRequest,
  prompts: number[][],
  maxTokens: number,
  kind: Kind,
  tools?: ToolUse,
  bestOf = req.n ?? 1,
) {
  c.set('model', m.name);
  if (req.stream_options && !req.stream) throw badInput('stream_options is only allowed when stream is true', 'stream_options', 'invalid_request_error');
  const base = {
    id: `${kind === 'chat.completion' ? 'chatcmpl' : 'cmpl'}-${randomBytes(12).toString('hex')}`,
    created: Math.floor(Date.now() / 1000),
    model: m.name,
    ...(req.service_tier && { service_tier: servedTier(req.service_tier) }),
  };
  if (req.use_beam_search) return beamSearchAnswer(c, m, req, prompts, maxTokens, kind, bestOf, base, tools);
  if (req.stream && req.prompt_logprobs != null)
    throw badInput('prompt_logprobs is answered in whole answers only (stream: false)', 'prompt_logprobs', 'invalid_request_error');
  // One sequence per choice (prompt p's i-th: p * bestOf + i); when one fails, the others stop too.
  const together = new Together(c);
  const n = req.n ?? 1;
  // A reasoning model's chat answers: its thinking as reasoning_content, the rest as content (vLLM's reasoning parsers).
  const parser = kind === 'chat.completion' ? m.generation?.reasoningParser : undefined;
  // (errors name the request's own max: chat's max_completion_tokens where it gave that)
  const max_tokens_param = 'max_completion_tokens' in req && req.max_completion_tokens != null ? 'max_completion_tokens' : 'max_tokens';
  const params = { ...req, format: tools?.format, scoreTokens: bestOf > n, reasoningParser: parser, max_tokens_param };
  const gens = together.start(prompts.length * bestOf, (k) => {
    const seed = req.seed == null ? null : req.seed + (k % bestOf);
    return new Generation(m, { ...params, seed }, prompts[Math.floor(k / bestOf)], maxTokens, together.signal, originOf(c));
  });
  const promptTokens = gens.filter((_, index) => index % bestOf === 0).reduce((sum, gen) => sum + gen.promptTokens, 0);
  const shown = shownBy((m.generation as NonNullable<ServedModel['generation']>).tokenizer, req.return_tokens_as_token_ids);
  const logprobs = gens.map((gen) => logprobsOf(gen, kind, shown));

  if (!req.stream) {
    const answers = await together.wait(
      Promise.all(
        gens.map(async (gen, index) => {
          const { text: whole, logged, result: r } = await gen.whole();
          const all = logprobs[index](logged);
          const split = parser && splitReasoning(parser, whole);
          const text = split ? split.content : whole;
          const answer = tools && new ToolAnswer(tools);
          answer?.push(text);
          const thought = split && { reasoning_content: split.reasoning || null };
          const message = answer?.isCalls
            ? { role: 'assistant', content: null, ...thought, tool_calls: answer.reader.calls }
            : { role: 'assistant', content: text, ...thought };
          const finish = finishReason(r.finishReason, answer);
          // vLLM's stop_reason: the stop sequence or stop token that ended the choice (null: end-of-text or length).
          const ended = { finish_reason: finish, stop_reason: gen.stopReason ?? null };
          // vLLM's prompt_logprobs: per choice on completions (the first token's null)
          const promptLogprobs = kind === 'text_completion' && gen.promptLogged && { prompt_logprobs: promptLogprobsOf(shown, gen.promptLogged) };
          const choice = kind === 'chat.completion' ? { message, logprobs: all, ...ended } : { text, logprobs: all, ...ended, ...promptLogprobs };
          return { choice, r, meanLogprob: gen.meanLogprob };
        }),
      ),
    );
    // Each prompt's n best of its candidates (all of them, in order, without best_of).
    const kept = prompts.flatMap((_, p) => {
      const candidates = answers.slice(p * bestOf, (p + 1) * bestOf);
      return bestOf > n ? bestCandidates(candidates, n) : candidates;
    });
    // (chat's, as vLLM answers it: once, beside the choices)
    const chatPrompt = kind === 'chat.completion' && gens[0].promptLogged && { prompt_logprobs: promptLogprobsOf(shown, gens[0].promptLogged) };
    return c.json({
      ...base,
      object: kind,
      choices: kept.map((a, index) => ({ index, ...a.choice })),
      ...chatPrompt,
      usage: usage(
        promptTokens,
        answers.map((a) => a.r),
        gens[0].predictionTokens,
        reasoningOf(gens),
      ),
    });
  }

  // Errors before the first token still get a status code; after it they travel in the stream. The stream opens
  // with its first choice's first token: choices beyond the model's free slots start only as others finish, which
  // they do only while read (waiting for every choice to start deadlocked n above the slots: the 15 s keep-alive
  // opened it, or with none, a 504 for it and a stall for everyone).
  const started = together.wait(
    new Promise((resolve, reject) => {
      for (const gen of gens) gen.started.then(resolve, reject);
    }),
  );
  const includeUsage = req.stream_options?.include_usage === true;
  const continuous = includeUsage && req.stream_options?.continuous_usage_stats === true;
  const object = kind === 'chat.completion' ? 'chat.completion.chunk' : 'text_completion';
  const soFar = () => {
    const completion = gens.reduce((n, gen) => n + gen.produced, 0);
    return { usage: { prompt_tokens: promptTokens, completion_tokens: completion, total_tokens: promptTokens + completion } };
  };
  const chunk = (choices: object[], extra?: object) =>
    JSON.stringify({ ...base, object, choices, ...(extra ?? (continuous ? soFar() : includeUsage ? { usage: null } : {})) });
  const answers = gens.map(() => tools && new ToolAnswer(tools));
  const splitters = gens.map(() => parser && new ReasoningSplitter(parser));
  /** A piece's chunk (undefined: nothing to say yet — a reasoning tag's start held back). */
  const delta = (index: number, piece: Piece, finish: string | null = null): string | undefined => {
    const { logged } = piece;
    const ended = finish ? { finish_reason: finish, stop_reason: gens[index].stopReason ?? null } : { finish_reason: null };
    if (kind !== 'chat.completion') return chunk([{ index, text: piece.text, logprobs: logprobs[index](logged), ...ended }]);
    const splitter = splitters[index];
    const part = splitter ? (finish ? splitter.flush() : splitter.push(piece.text)) : { reasoning: '', content: piece.text };
    const text = part.content;
    const answer = answers[index];
    let content: object = text || !finish ? { content: text } : {};
    if (answer) {
      const pushed = text ? answer.push(text) : {};
      const rest = finish ? answer.flush() : '';
      const words = rest ? (pushed.content ?? '') + rest : pushed.content;
      content = pushed.calls?.length ? { tool_calls: pushed.calls } : words !== undefined ? { content: words } : {};
    }
    if (part.reasoning) content = { reasoning_content: part.reasoning, ...content };
    if (splitter && !finish && logged.length === 0 && !part.reasoning && !text) return undefined;
    return chunk([{ index, delta: content, logprobs: logprobs[index](logged), ...ended }]);
  };
  return tokenStream(c, started, async (stream) => {
    // The choices' chunks interleave as their tokens come, each event written whole and in turn.
    let written = Promise.resolve();
    const send = (data: string) => {
      written = written.then(() => stream.writeSSE({ data }));
      return written;
    };
    try {
      const done = await Promise.all(
        gens.map(async (gen, index) => {
          const opening = { role: 'assistant', content: tools && !tools.auto ? null : '' };
          if (kind === 'chat.completion') await send(chunk([{ index, delta: opening, logprobs: null, finish_reason: null }]));
          for await (const piece of gen) {
            const said = delta(index, piece);
            if (said !== undefined) await send(said);
          }
          const r = await gen.result;
          await send(delta(index, { text: '', logged: gen.takeLogprobs() }, finishReason(r.finishReason, answers[index])) as string);
          return r;
        }),
      );
      if (includeUsage) await send(chunk([], { usage: usage(promptTokens, done, gens[0].predictionTokens, reasoningOf(gens)) }));
      await send('[DONE]');
    } catch (err) {
      together.stop();
      if (stream.aborted) return;
      const e = err instanceof GatewayError ? err : new GatewayError(500, 'internal', (err as Error).message);
      await send(JSON.stringify({ error: openaiError(e).body.error }));
    }
  });
}

/**
 * A choice that ended with its calls whole says so (OpenAI's `tool_calls`); one cut short is `length`, or `stop`
 * where a stop sequence or stop token cut a call (`stop_reason` says which).
 */
const finishReason = (reason: string, answer?: ToolAnswer) => (answer?.isCalls && reason === 'stop' && answer.reader.whole ? 'tool_calls' : reason);

/**
 * A choice's log-probabilities of some of its tokens, in its kind's shape (null when not asked for).
 * Completions count `text_offset` on from the previous call's tokens.
 */
function logprobsOf(gen: Generation, kind: Kind, tokenizer: Tokenizer): (logged: LoggedToken[]) => object | null {
  let offset = 0;
  return (logged) => {
    if (!gen.wantsLogprobs) return null;
    if (kind === 'chat.completion') return chatLogprobs(tokenizer, logged);
    const shaped = completionLogprobs(tokenizer, logged, offset);
    offset += shaped.tokens.join('').length;
    return shaped;
  };
}

/** OpenAI's error object for a gateway error. */
export function openaiError(e: GatewayError): {
  status: number;
  body: { error: { message: string; type: string; param: string | null; code: string | null } };
} {
  const type =
    e.status === 429
      ? 'rate_limit_error'
      : e.status === 401
        ? 'authentication_error'
        : e.status === 403
          ? 'permission_error'
          : e.status >= 500
            ? 'server_error'
            : 'invalid_request_error';
  const code = e.code === 'bad_input' || e.code === 'invalid_request_error' ? null : e.code;
  return { status: e.status, body: { error: { message: e.message, type, param: e.options.param ?? null, code } } };
}
