import { randomBytes } from 'node:crypto';
import { type Context, Hono } from 'hono';
import { z } from 'zod';
import { badInput, GatewayError } from '../../errors/index.js';
import type { Caller } from '../auth/middleware.js';
import { parseQuery } from '../body.js';
import { type Answer, type Call, type CallEnv, type Calls, type Dispatch, startKeptCall } from '../calls.js';
import type { GatewayEnv, ServedModel } from '../types.js';
import { type LoggedToken, type Piece, usage } from './generation.js';
import { chatLogprobs } from './logprobs.js';
import { answerPieces } from './reasoning.js';
import { ResponseEvents } from './response-events.js';
import { type ChatRequest, chatSchema, parseBody, REASONING_EFFORTS, unsupported } from './schema.js';
import type { Stored, StoredResponses } from './stored-responses.js';
import { tokenStream } from './token-stream.js';
import { chatGeneration, chatPromptOf, relay, type ToolCall, type ToolCallDelta, wholeChat } from './tools.js';

// OpenAI's Responses API (POST /v1/responses), served the way chat completions are: the input items become
// chat messages, `text.format` the response format, function tools the tool calls — and the answer comes
// back as output items, whole or as the Responses stream's typed events. A response is kept (for
// `previous_response_id` and retrieval) only when asked, `store: true`, or run in the background.

const text = z.string();
const contentParts = z.array(z.object({ type: z.enum(['input_text', 'output_text', 'text']), text })).min(1);
/** An item's id (an earlier answer's items sent back carry theirs; listed as they came). */
const itemId = z.string().optional();
const inputItem = z.union([
  z.object({
    type: z.literal('message').optional(),
    id: itemId,
    role: z.enum(['user', 'system', 'developer', 'assistant']),
    content: z.union([text, contentParts]),
    status: z.string().optional(),
  }),
  z.object({ type: z.literal('function_call'), id: itemId, call_id: z.string(), name: z.string(), arguments: z.string() }),
  z.object({ type: z.literal('function_call_output'), id: itemId, call_id: z.string(), output: z.union([text, contentParts]) }),
  // An earlier answer's reasoning item, sent back with the rest of its output (a conversation kept by the client):
  // its text goes to the chat template with the assistant turn after it; summaries and encrypted content are read past.
  z.object({ type: z.literal('reasoning'), id: itemId, content: z.array(z.object({ type: z.string(), text })).nullish() }),
]);
const functionTool = z.object({
  type: z.literal('function'),
  name: z.string(),
  description: z.string().nullish(),
  parameters: z.record(z.string(), z.unknown()).nullish(),
  strict: z.boolean().nullish(),
});
const format = z.discriminatedUnion(
  'type',
  [
    z.object({ type: z.literal('text') }),
    z.object({ type: z.literal('json_object') }),
    z.object({ type: z.literal('json_schema'), name: z.string().optional(), schema: z.record(z.string(), z.unknown()), strict: z.boolean().nullish() }),
  ],
  { error: 'type must be "text", "json_object" or "json_schema"' },
);
export const responsesSchema = z.object({
  model: z.string({ error: 'you must provide a model parameter' }).min(1),
  input: z.union([text, z.array(inputItem).min(1)]),
  instructions: z.string().nullish(),
  max_output_tokens: z.number().int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  /** Not OpenAI's here, as in chat completions: the same seed, the same answer; token id → bias. */
  seed: z.number().int().nullish(),
  logit_bias: z.record(z.string(), z.number()).nullish(),
  stream: z.boolean().nullish(),
  text: z.object({ format: format.nullish() }).nullish(),
  tools: z.array(functionTool).nullish(),
  tool_choice: z.union([z.enum(['none', 'auto', 'required']), z.object({ type: z.literal('function'), name: z.string() })]).nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  metadata: z.record(z.string(), z.string()).nullish(),
  store: z.boolean().nullish(),
  /** A kept response (created with store: true, or in the background) this one continues: its conversation and answer come first. */
  previous_response_id: z.string().min(1).nullish(),
  /** Answered at once (queued), run in the background, retrieved by id: GET /v1/responses/{id}. */
  background: z.boolean().nullish(),
  /**
   * A reasoning model's effort (chat's reasoning_effort: the template's variable; "none" ends thinking before it
   * starts). The thinking comes whole as a reasoning item's reasoning_text (vLLM's), whatever summary is asked.
   */
  reasoning: z.object({ effort: z.enum(REASONING_EFFORTS).nullish(), summary: z.enum(['auto', 'concise', 'detailed']).nullish() }).nullish(),
  /** auto: a conversation longer than the context loses its earliest items (as few as need be); disabled: a 400. */
  truncation: z.enum(['auto', 'disabled']).nullish(),
  /** message.output_text.logprobs: the answer's tokens' log-probabilities (others, OpenAI's hosted tools', have nothing to add). */
  include: z.array(z.string()).nullish(),
  /** The likeliest alternatives at each of the answer's tokens (0–20), with their log-probabilities; asks for them as include does. */
  top_logprobs: z.number().int().min(0).max(20).nullish(),
  /** OpenAI's service tier, as in chat completions: flex runs below the caller's other requests. */
  service_tier: z.enum(['auto', 'default', 'flex', 'priority']).nullish(),
  // (what would change the answer in a way not served here is refused, as chat's: prompts and conversations kept by OpenAI)
  prompt: unsupported('prompt'),
  conversation: unsupported('conversation'),
});
export type ResponsesRequest = z.infer<typeof responsesSchema>;

const partsText = (content: string | { text: string }[]) => (typeof content === 'string' ? content : content.map((p) => p.text).join(''));

type InputItem = z.infer<typeof inputItem>;

/**
 * The conversation a request continues: a kept response's (its input, earlier turns' included, then its output
 * items), then the request's own input. Instructions are the request's alone, as OpenAI's are not carried over.
 * Its own items as kept and listed (GET /v1/responses/{id}/input_items): each with an id — its own, else one made of
 * the response's and its place (the same however often it is worked out) — and a message's text as a content part.
 */
function conversationOf(req: ResponsesRequest, previous: Stored | undefined, responseId: string): InputItem[] {
  const own = (typeof req.input === 'string' ? [{ role: 'user' as const, content: req.input }] : req.input).map((item, i): InputItem => {
    const prefix = 'role' in item ? 'msg' : { function_call: 'fc', function_call_output: 'fco', reasoning: 'rs' }[item.type];
    const listed = item.id ?? `${prefix}_${responseId.slice('resp_'.length)}${i.toString(16).padStart(4, '0')}`;
    if (!('role' in item)) return { ...item, id: listed };
    const part = item.role === 'assistant' ? ('output_text' as const) : ('input_text' as const);
    const content = typeof item.content === 'string' ? [{ type: part, text: item.content }] : item.content;
    return { type: 'message', id: listed, role: item.role, content, status: 'completed' };
  });
  return previous ? [...(previous.input as InputItem[]), ...(previous.response.output as InputItem[]), ...own] : own;
}

/**
 * `truncation: auto` (OpenAI's): the conversation's earliest items dropped, as few as need be, until its prompt leaves
 * room for the answer — max_output_tokens, or unset the 256 a chat gets (half the context where that is less). It
 * then starts at a message or a call, not at a tool's output or a thought whose turn was dropped. The newest item
 * is always kept: too long alone, the context's 400 says so.
 */
function truncated(m: ServedModel, req: ResponsesRequest, items: InputItem[]): InputItem[] {
  const { context } = m.generation as NonNullable<ServedModel['generation']>;
  const room = req.max_output_tokens ?? Math.min(256, Math.floor(context / 2));
  const fits = (from: number) => chatPromptOf(m, asChat(req, items.slice(from))).prompt.length + room <= context;
  const last = items.length - 1;
  if (fits(0)) return items;
  if (!fits(last)) return items.slice(last);
  // (the prompt only shrinks as items go: the fewest to drop, by halves)
  let [lo, hi] = [1, last];
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (fits(mid)) hi = mid;
    else lo = mid + 1;
  }
  while (lo < last && (items[lo].type === 'function_call_output' || items[lo].type === 'reasoning')) lo++;
  return items.slice(lo);
}

/** The request as the chat completion it amounts to (checked again by chat's schema: one set of rules). */
function asChat(req: ResponsesRequest, items: InputItem[]): ChatRequest {
  const messages: object[] = req.instructions ? [{ role: 'system', content: req.instructions }] : [];
  let thought = '';
  const thinking = () => {
    const said = thought && { reasoning_content: thought };
    thought = '';
    return said;
  };
  for (const item of items) {
    if ('role' in item) messages.push({ role: item.role, content: partsText(item.content), ...(item.role === 'assistant' && thinking()) });
    else if (item.type === 'reasoning') thought += (item.content ?? []).map((p) => p.text).join('');
    else if (item.type === 'function_call')
      messages.push({
        role: 'assistant',
        content: null,
        tool_calls: [{ id: item.call_id, type: 'function', function: { name: item.name, arguments: item.arguments } }],
        ...thinking(),
      });
    else messages.push({ role: 'tool', tool_call_id: item.call_id, content: partsText(item.output) });
  }
  const f = req.text?.format;
  const choice = req.tool_choice;
  return parseBody(chatSchema, {
    model: req.model,
    messages,
    max_tokens: req.max_output_tokens,
    temperature: req.temperature,
    top_p: req.top_p,
    seed: req.seed,
    logit_bias: req.logit_bias,
    response_format: f?.type === 'json_schema' ? { type: 'json_schema', json_schema: { name: f.name, schema: f.schema, strict: f.strict } } : f,
    tools: req.tools?.map((t) => ({
      type: 'function',
      function: { name: t.name, description: t.description ?? undefined, parameters: t.parameters ?? undefined },
    })),
    tool_choice: typeof choice === 'object' && choice ? { type: 'function', function: { name: choice.name } } : choice,
    parallel_tool_calls: req.parallel_tool_calls,
    reasoning_effort: req.reasoning?.effort,
    service_tier: req.service_tier,
    ...(wantsLogprobs(req) && { logprobs: true, top_logprobs: req.top_logprobs ?? 0 }),
  });
}

const wantsLogprobs = (req: ResponsesRequest) => req.include?.includes('message.output_text.logprobs') || req.top_logprobs != null;

const id = (prefix: string) => `${prefix}_${randomBytes(12).toString('hex')}`;

/** A response object's fields that do not depend on its output. `background`: a background response's (stored). */
function skeleton(req: ResponsesRequest, m: ServedModel, responseId: string, background: boolean) {
  return {
    id: responseId,
    object: 'response',
    created_at: Math.floor(Date.now() / 1000),
    model: m.name,
    background,
    error: null,
    instructions: req.instructions ?? null,
    max_output_tokens: req.max_output_tokens ?? null,
    metadata: req.metadata ?? {},
    parallel_tool_calls: req.parallel_tool_calls ?? true,
    previous_response_id: req.previous_response_id ?? null,
    reasoning: { effort: req.reasoning?.effort ?? null, summary: req.reasoning?.summary ?? null },
    store: background || req.store === true,
    temperature: req.temperature ?? 1,
    text: { format: req.text?.format ?? { type: 'text' } },
    tool_choice: req.tool_choice ?? (req.tools?.length ? 'auto' : 'none'),
    tools: req.tools ?? [],
    top_p: req.top_p ?? 1,
    truncation: req.truncation ?? 'disabled',
    service_tier: req.service_tier ?? 'default',
  };
}

/** The kept response a request continues (previous_response_id), if it names one. */
const previousOf = (req: ResponsesRequest, caller: Caller | undefined, stored?: StoredResponses) =>
  req.previous_response_id ? stored?.find(req.previous_response_id, caller, 'previous_response_id') : undefined;

/** POST /v1/responses; `stored`: where responses are kept (store: true, background ones) and found to continue. */
export async function responses(c: Context, m: ServedModel, req: ResponsesRequest, stored?: StoredResponses): Promise<Response> {
  const caller = c.get('caller') as Caller | undefined;
  if (req.previous_response_id && !stored) throw badInput('previous_response_id is not served on this route', 'previous_response_id', 'invalid_request_error');
  // (a background response's own run: it answers under the id its creation gave)
  const called = (c.env as CallEnv | undefined)?.infergateCall?.id;
  const base = skeleton(req, m, called ?? id('resp'), called !== undefined);
  const whole = conversationOf(req, previousOf(req, caller, stored), base.id);
  const items = req.truncation === 'auto' ? truncated(m, req, whole) : whole;
  const { generation, answer } = chatGeneration(c, m, asChat(req, items), req.max_output_tokens ?? undefined);
  const messageId = id('msg');
  /** A response asked to be kept (and a background one) is kept once whole, to be continued and retrieved. */
  const kept = <T extends { output: object[] }>(response: T): T => {
    if (base.store) stored?.keep(base.id, caller, items, response);
    return response;
  };
  const callItem = (call: ToolCall, status: string) => ({
    type: 'function_call',
    id: `fc_${call.id.slice('call_'.length)}`,
    call_id: call.id,
    name: call.function.name,
    arguments: call.function.arguments,
    status,
  });
  // The answer's tokens' log-probabilities, when asked (chat's entries; the thinking's tokens are not the answer's).
  const { tokenizer } = m.generation as NonNullable<ServedModel['generation']>;
  const logprobsOf = (logged: LoggedToken[]) => (generation.wantsLogprobs ? { logprobs: chatLogprobs(tokenizer, logged).content } : {});
  const answerTokens = (logged: LoggedToken[], from = 0) => logged.slice(Math.max(from, generation.reasoningTokens ?? 0));
  const messageItem = (content: string, status: string, logged: LoggedToken[] = []) => ({
    type: 'message',
    id: messageId,
    status,
    role: 'assistant',
    content: status === 'in_progress' ? [] : [{ type: 'output_text', text: content, annotations: [], ...logprobsOf(logged) }],
  });
  const finished = (result: Awaited<typeof generation.result>, output: object[]) => {
    const cut = result.finishReason === 'length';
    const u = usage(generation.promptTokens, [result]);
    return {
      ...base,
      status: cut ? 'incomplete' : 'completed',
      incomplete_details: cut ? { reason: 'max_output_tokens' } : null,
      output,
      usage: {
        input_tokens: u.prompt_tokens,
        input_tokens_details: { cached_tokens: result.cachedTokens },
        output_tokens: u.completion_tokens,
        output_tokens_details: { reasoning_tokens: generation.reasoningTokens ?? 0 },
        total_tokens: u.total_tokens,
      },
    };
  };

  // A reasoning model's thinking (reasoning_parser): a reasoning item before the answer's, as vLLM answers it.
  const parser = m.generation?.reasoningParser;
  const reasoningId = id('rs');
  const reasoningItem = (text: string, status: string) => ({
    type: 'reasoning',
    id: reasoningId,
    summary: [],
    content: [{ type: 'reasoning_text', text }],
    status,
  });

  /** The output items: whole ones `completed`, the last `incomplete` if max_output_tokens cut it. */
  const outputOf = (result: Awaited<typeof generation.result>, all: string, thinking: string, logged: LoggedToken[]) => {
    const last = result.finishReason === 'length' ? 'incomplete' : 'completed';
    const thought = thinking ? [reasoningItem(thinking, all || answer?.isCalls ? 'completed' : last)] : [];
    if (!answer?.isCalls) return [...thought, messageItem(all, last, answerTokens(logged))];
    const calls = answer.reader.calls;
    return [...thought, ...calls.map((call, i) => callItem(call, i === calls.length - 1 ? last : 'completed'))];
  };

  if (!req.stream) {
    const { result, reasoning, content: all, logged } = await wholeChat(generation, parser, answer);
    return c.json(kept(finished(result, outputOf(result, all, reasoning, logged))));
  }

  return tokenStream(c, generation.started, async (stream) => {
    let sequence = 0;
    const send = (type: string, event: object) => stream.writeSSE({ event: type, data: JSON.stringify({ type, sequence_number: sequence++, ...event }) });
    const pending = { ...base, status: 'in_progress', incomplete_details: null, output: [], usage: null };
    await send('response.created', { response: pending });
    await send('response.in_progress', { response: pending });
    let all = '';
    let thinking = '';
    // Every token's log-probabilities as its piece comes (when asked), and how many the deltas have carried.
    const logged: LoggedToken[] = [];
    let carried = 0;
    const noting = async function* (pieces: AsyncIterable<Piece>) {
      for await (const piece of pieces) {
        logged.push(...piece.logged);
        yield piece;
      }
    };
    const fresh = () => {
      const tokens = answerTokens(logged, carried);
      carried = logged.length;
      return tokens;
    };
    try {
      // The thinking's item (output 0) while it comes; the answer's items after it, once it is done.
      let first = 0;
      const thinkingAt = { item_id: reasoningId, output_index: 0, content_index: 0 };
      const thought = async (text: string) => {
        if (!thinking) await send('response.output_item.added', { output_index: 0, item: reasoningItem('', 'in_progress') });
        thinking += text;
        first = 1;
        await send('response.reasoning_text.delta', { ...thinkingAt, delta: text });
      };
      let thoughtDone = false;
      const endThinking = async () => {
        if (!thinking || thoughtDone) return;
        thoughtDone = true;
        await send('response.reasoning_text.done', { ...thinkingAt, text: thinking });
        await send('response.output_item.done', { output_index: 0, item: reasoningItem(thinking, 'completed') });
      };
      const at = { item_id: messageId, output_index: 0, content_index: 0 };
      let opened = false;
      /** The message's item, once (after the thinking's, which it closes). */
      const open = async () => {
        if (opened) return;
        opened = true;
        await endThinking();
        at.output_index = first;
        await send('response.output_item.added', { output_index: first, item: messageItem('', 'in_progress') });
        await send('response.content_part.added', { ...at, part: { type: 'output_text', text: '', annotations: [] } });
      };
      const words = async (text: string) => {
        if (!opened && !text && parser && !answer) return; // (the message opens with the answer: the thinking comes first)
        await open();
        if (!text) return;
        all += text;
        await send('response.output_text.delta', { ...at, delta: text, ...logprobsOf(fresh()) });
      };
      const close = async (index: number, status = 'completed') => {
        const call = answer?.reader.calls[index] as ToolCall;
        const item = callItem(call, status);
        await send('response.function_call_arguments.done', { item_id: item.id, output_index: first + index, arguments: call.function.arguments });
        await send('response.output_item.done', { output_index: first + index, item });
      };
      const calls = async (deltas: ToolCallDelta[]) => {
        for (const delta of deltas) {
          const call = answer?.reader.calls[delta.index] as ToolCall;
          if (delta.id) {
            if (delta.index > 0) await close(delta.index - 1);
            else await endThinking();
            await send('response.output_item.added', { output_index: first + delta.index, item: { ...callItem(call, 'in_progress'), arguments: '' } });
          }
          if (delta.function.arguments)
            await send('response.function_call_arguments.delta', {
              item_id: callItem(call, '').id,
              output_index: first + delta.index,
              delta: delta.function.arguments,
            });
        }
      };
      await relay(parser ? answerPieces(noting(generation), parser, thought) : noting(generation), answer, words, calls);
      await endThinking();
      logged.push(...generation.takeLogprobs()); // (tokens whose text never came: an unfinished character's)
      const items = outputOf(await generation.result, all, '', logged); // (the answer's items: the thinking's is not among them)
      if (answer?.isCalls) {
        if (items.length > 0) await close(items.length - 1, items[items.length - 1].status); // none if cut right after `[`
      } else {
        await open(); // (an answer of no words after its thinking: its message still comes, empty)
        await words(answer?.flush() ?? '');
        await send('response.output_text.done', { ...at, text: all, ...logprobsOf(answerTokens(logged)) });
        await send('response.content_part.done', { ...at, part: (items[0] as ReturnType<typeof messageItem>).content[0] });
        await send('response.output_item.done', { output_index: first, item: items[0] });
      }
      const result = await generation.result;
      const response = kept(finished(result, outputOf(result, all, thinking, logged)));
      await send(response.status === 'completed' ? 'response.completed' : 'response.incomplete', { response });
    } catch (err) {
      if (stream.aborted) return;
      const e = err instanceof GatewayError ? err : new GatewayError(500, 'internal', (err as Error).message);
      await send('error', { code: e.code, message: e.message, param: e.options.param ?? null });
    }
  });
}

/** What background responses need of the gateway: where calls are kept, and how to send a request through it again. */
export type Background = { calls: Calls; dispatch: Dispatch; stored: StoredResponses };

/** Streamed background responses' events (the calls that run them), to be followed again after a dropped connection. */
const streamed = new WeakMap<Call, ResponseEvents>();
/** Background responses' conversations, listed while they run (their runs keep the same items once they end). */
const conversations = new WeakMap<Call, InputItem[]>();

/**
 * POST /v1/responses with `background: true` (OpenAI's background mode): answered at once with the response
 * `queued`; it runs as a call (through the gateway again, as its caller, nothing of this connection) and is
 * retrieved by id until the calls' keep time after it ends. With `stream: true` the answer is its events, from
 * the first, as they come — and the response goes on if the connection drops: its events are kept with it, for
 * GET /v1/responses/{id}?stream=true&starting_after=N to send again.
 */
export async function backgroundResponse(c: Context<GatewayEnv>, m: ServedModel, req: ResponsesRequest, background: Background): Promise<Response> {
  if (req.store === false) throw badInput('a background response is stored until retrieved: store cannot be false', 'store');
  const queued = { ...skeleton(req, m, id('resp'), true), status: 'queued', incomplete_details: null, output: [], usage: null };
  const conversation = conversationOf(req, previousOf(req, c.get('caller'), background.stored), queued.id); // (a 404 for a previous response not kept: at once)
  const events = req.stream ? new ResponseEvents() : undefined;
  const call = startKeptCall(background.calls, background.dispatch, {
    caller: c.get('caller'),
    path: '/v1/responses',
    body: JSON.stringify({ ...req, model: m.name, background: false }),
    id: queued.id,
    requestId: c.get('requestId'),
    read: events && ((res) => events.read(res)),
  });
  call.meta = queued;
  conversations.set(call, conversation);
  if (!events) return c.json(queued);
  streamed.set(call, events);
  // Refused before its first event (a full queue, a start that failed): that answer, with its status.
  if (
    !(await call.response.then(
      (res) => res.ok,
      () => false,
    ))
  ) {
    const answer = (await call.done) as Answer;
    return new Response(answer.body, { status: answer.status, headers: answer.headers });
  }
  return tokenStream(c, Promise.resolve(), (stream) => events.follow(stream, -1));
}

/** GET /v1/responses/{id}/input_items: OpenAI's list of a response's input items (its conversation's), a page at a time. */
export const listQuery = z.object({
  order: z.enum(['asc', 'desc']).default('desc').describe('desc (the default): the last item first'),
  limit: z.coerce.number().int().min(1).max(100).default(20),
  after: z.string().optional().describe('the id of the item the page starts after (the last one of the page before)'),
});

/** GET /v1/responses/{id}: `stream=true` sends a streamed background response's events after `starting_after`. */
export const retrieveQuery = z.object({
  stream: z.enum(['true', 'false']).optional().describe('true: the events of a response created with background and stream, as they come'),
  starting_after: z.coerce.number().int().min(0).optional().describe('with stream=true: only the events after this sequence_number (the last one had)'),
});

/** GET /v1/responses/{id} (and its input_items), POST /v1/responses/{id}/cancel, DELETE /v1/responses/{id}: kept and background responses. */
export function backgroundRoutes({ calls, stored }: Background): Hono<GatewayEnv> {
  const app = new Hono<GatewayEnv>();
  const found = (c: Context<GatewayEnv>): Call => {
    const call = calls.find(c.req.param('id') as string, c.get('caller'));
    if (!call.meta) throw new GatewayError(404, 'not_found', `no response ${call.id}`);
    return call;
  };
  /** A background response (its call); else one kept (store: true), which has ended; neither: the store's 404. */
  const responseOf = (c: Context<GatewayEnv>): { call: Call } | { kept: Stored } => {
    try {
      return { call: found(c) };
    } catch {
      return { kept: stored.find(c.req.param('id') as string, c.get('caller')) };
    }
  };
  app.get('/v1/responses/:id', (c) => {
    const query = parseQuery(retrieveQuery, c);
    const it = responseOf(c);
    if (query.stream !== 'true') return c.json('call' in it ? state(it.call) : it.kept.response);
    const events = 'call' in it ? streamed.get(it.call) : undefined;
    if (!events)
      throw badInput(
        `response ${c.req.param('id')} was not streamed in the background: it has no events to send again (retrieve it without stream)`,
        'stream',
        'invalid_request_error',
      );
    return tokenStream(c, Promise.resolve(), (stream) => events.follow(stream, query.starting_after ?? -1));
  });
  app.get('/v1/responses/:id/input_items', (c) => {
    const { order, limit, after } = parseQuery(listQuery, c);
    const it = responseOf(c);
    const input = ('call' in it ? conversations.get(it.call) : it.kept.input) as { id: string }[];
    const ordered = order === 'asc' ? input : [...input].reverse();
    const from = after === undefined ? 0 : ordered.findIndex((item) => item.id === after) + 1;
    if (from === 0 && after !== undefined)
      throw badInput(`no item ${after} among response ${c.req.param('id')}'s input items`, 'after', 'invalid_request_error');
    const data = ordered.slice(from, from + limit);
    return c.json({ object: 'list', data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: from + limit < ordered.length });
  });
  app.post('/v1/responses/:id/cancel', (c) => {
    const call = found(c);
    if (call.answer && !call.cancelled) throw badInput(`response ${call.id} has ended: it cannot be cancelled`, undefined, 'invalid_request_error');
    calls.stop(call);
    return c.json(state(call));
  });
  app.delete('/v1/responses/:id', (c) => {
    const id = c.req.param('id');
    const it = responseOf(c);
    if ('call' in it) calls.cancel(it.call);
    stored.forget(id, c.get('caller'), { ifKept: true });
    return c.json({ id, object: 'response.deleted', deleted: true });
  });
  return app;
}

/** A background response as it stands: queued/in progress, cancelled, its answer, or failed with its error. */
function state(call: Call): object {
  const queued = call.meta as Record<string, unknown>;
  if (call.cancelled) return { ...queued, status: 'cancelled' };
  if (!call.answer) return { ...queued, status: 'in_progress' };
  const answer = JSON.parse(new TextDecoder().decode(call.answer.body));
  if (call.answer.status === 200) return answer;
  const error = (answer as { error?: { code?: string; message?: string } }).error;
  return { ...queued, status: 'failed', error: { code: error?.code ?? 'server_error', message: error?.message ?? `failed with status ${call.answer.status}` } };
}
