import { randomBytes } from 'node:crypto';
import { type Context, Hono } from 'hono';
import { streamSSE } from 'hono/streaming';
import { badInput, GatewayError } from '../../errors/index.js';
import { chatPrompt } from '../../models/index.js';
import { clientSignal, readBody } from '../body.js';
import type { GatewayEnv, ServedModel } from '../types.js';
import { Generation } from './generation.js';
import { chatLogprobs, completionLogprobs } from './logprobs.js';
import { type ChatRequest, type CompletionRequest, chatSchema, completionSchema, parseBody } from './schema.js';

export type OpenAIOptions = { models: ReadonlyMap<string, ServedModel>; maxBodyBytes: number };

/** OpenAI-compatible completions and chat completions, streaming (SSE) or not, and the model list. */
export function openaiRoutes({ models, maxBodyBytes }: OpenAIOptions): Hono<GatewayEnv> {
  const app = new Hono<GatewayEnv>();
  const created = Math.floor(Date.now() / 1000);
  const generative = () => [...models.values()].filter((m) => m.generation);
  const listed = (m: ServedModel) => ({ id: m.name, object: 'model', created, owned_by: 'infergate' });

  const model = generativeModelOf(models);
  app.get('/v1/models', (c) => c.json({ object: 'list', data: generative().map(listed) }));
  app.get('/v1/models/:model', (c) => c.json(listed(model(c.req.param('model')))));
  app.post('/v1/completions', (c) => completions(c, model, maxBodyBytes));
  app.post('/v1/chat/completions', (c) => chat(c, model, maxBodyBytes));
  return app;
}

/** Looks a model up by name for the OpenAI routes: 404 model_not_found unless it is generative. */
export function generativeModelOf(models: ReadonlyMap<string, ServedModel>): (name: string) => ServedModel {
  return (name) => {
    const m = models.get(name);
    if (m?.generation) return m;
    const known = [...models.values()].filter((g) => g.generation).map((g) => g.name);
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

type Kind = 'text_completion' | 'chat.completion';
type ModelOf = (name: string) => ServedModel;

async function json(c: Context, maxBodyBytes: number, fixedModel?: string): Promise<unknown> {
  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(await readBody(c, maxBodyBytes)).toString('utf8'));
  } catch (err) {
    if (err instanceof GatewayError) throw err;
    throw badInput(`the body is not valid JSON: ${(err as Error).message}`, undefined, 'invalid_request_error');
  }
  // An endpoint bound to a model serves that model, whatever the body names.
  return fixedModel && typeof body === 'object' && body !== null ? { ...body, model: fixedModel } : body;
}

/** POST /v1/completions (and openai-completions endpoints, with `fixedModel`). */
export async function completions(c: Context, model: ModelOf, maxBodyBytes: number, fixedModel?: string): Promise<Response> {
  const req = parseBody(completionSchema, await json(c, maxBodyBytes, fixedModel));
  const m = model(req.model);
  const prompt = typeof req.prompt === 'string' ? req.prompt : req.prompt.length === 1 && typeof req.prompt[0] === 'string' ? req.prompt[0] : null;
  const tokens = prompt === null ? (req.prompt as number[]) : (m.generation?.tokenizer.encode(prompt) ?? []);
  return generate(c, m, req, tokens, req.max_tokens ?? 16, 'text_completion');
}

/** POST /v1/chat/completions (and openai-chat endpoints, with `fixedModel`). */
export async function chat(c: Context, model: ModelOf, maxBodyBytes: number, fixedModel?: string): Promise<Response> {
  const req = parseBody(chatSchema, await json(c, maxBodyBytes, fixedModel));
  const m = model(req.model);
  const text = chatPrompt(
    req.messages.map((msg) => ({ role: msg.role, content: typeof msg.content === 'string' ? msg.content : msg.content.map((p) => p.text).join('') })),
  );
  const tokens = m.generation?.tokenizer.encode(text) ?? [];
  const context = m.generation?.context ?? 0;
  return generate(c, m, req, tokens, req.max_completion_tokens ?? req.max_tokens ?? Math.min(256, context - tokens.length), 'chat.completion');
}

async function generate(c: Context, m: ServedModel, req: CompletionRequest | ChatRequest, prompt: number[], maxTokens: number, kind: Kind) {
  c.set('model', m.name);
  if (req.stream_options && !req.stream) throw badInput('stream_options is only allowed when stream is true', 'stream_options', 'invalid_request_error');
  const gen = new Generation(m, req, prompt, maxTokens, clientSignal(c), c.get('caller')?.priority);
  const tokenizer = (m.generation as NonNullable<ServedModel['generation']>).tokenizer;
  let offset = 0; // completions: where the next token's text starts
  /** The log-probabilities of the tokens since the last call, in the kind's shape (null when not asked for). */
  const logprobs = () => {
    if (!gen.wantsLogprobs) return null;
    if (kind === 'chat.completion') return chatLogprobs(tokenizer, gen.takeLogprobs());
    const shaped = completionLogprobs(tokenizer, gen.takeLogprobs(), offset);
    offset += shaped.tokens.join('').length;
    return shaped;
  };
  const base = {
    id: `${kind === 'chat.completion' ? 'chatcmpl' : 'cmpl'}-${randomBytes(12).toString('hex')}`,
    created: Math.floor(Date.now() / 1000),
    model: m.name,
  };

  if (!req.stream) {
    let text = '';
    for await (const piece of gen) text += piece;
    const r = await gen.result;
    const choice =
      kind === 'chat.completion'
        ? { index: 0, message: { role: 'assistant', content: text }, logprobs: logprobs(), finish_reason: r.finishReason }
        : { index: 0, text, logprobs: logprobs(), finish_reason: r.finishReason };
    return c.json({ ...base, object: kind, choices: [choice], usage: gen.usage(r) });
  }

  // Errors before the first token still get a status code; after it they travel in the stream.
  await gen.started;
  const includeUsage = req.stream_options?.include_usage === true;
  const object = kind === 'chat.completion' ? 'chat.completion.chunk' : 'text_completion';
  const chunk = (choices: object[], extra: object = includeUsage ? { usage: null } : {}) => JSON.stringify({ ...base, object, choices, ...extra });
  const delta = (piece: string, finish: string | null = null) =>
    kind === 'chat.completion'
      ? chunk([{ index: 0, delta: finish ? {} : { content: piece }, logprobs: logprobs(), finish_reason: finish }])
      : chunk([{ index: 0, text: piece, logprobs: logprobs(), finish_reason: finish }]);
  return streamSSE(c, async (stream) => {
    try {
      if (kind === 'chat.completion')
        await stream.writeSSE({ data: chunk([{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }]) });
      for await (const piece of gen) await stream.writeSSE({ data: delta(piece) });
      const done = await gen.result;
      await stream.writeSSE({ data: delta('', done.finishReason) });
      if (includeUsage) await stream.writeSSE({ data: chunk([], { usage: gen.usage(done) }) });
      await stream.writeSSE({ data: '[DONE]' });
    } catch (err) {
      if (stream.aborted) return;
      const e = err instanceof GatewayError ? err : new GatewayError(500, 'internal', (err as Error).message);
      await stream.writeSSE({ data: JSON.stringify({ error: openaiError(e).body.error }) });
    }
  });
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
