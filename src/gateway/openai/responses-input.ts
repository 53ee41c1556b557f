import { z } from 'zod';
import { badInput } from '../../errors/index.js';
import type { Caller } from '../auth/middleware.js';
import type { Fleet, NewId } from '../fleet.js';
import type { ServedModel } from '../types.js';
import type { Conversation, Conversations } from './conversations.js';
import { type ChatRequest, chatSchema, parseBody, REASONING_EFFORTS, unsupported } from './schema.js';
import type { Stored, StoredResponses } from './stored-responses.js';
import { chatPromptOf } from './tools.js';

// A Responses API request (POST /v1/responses) as what it amounts to: its schema, its conversation (a kept
// response's before its own input, each item with an id; truncated to the context when asked), the chat completion
// it is served as, and the response object's fields that come from the request.

const text = z.string();
const contentParts = z.array(z.object({ type: z.enum(['input_text', 'output_text', 'text']), text })).min(1);
/** An item's id (an earlier answer's items sent back carry theirs; listed as they came). */
const itemId = z.string().optional();
export const inputItem = z.union([
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
  /** A conversation (POST /v1/conversations) this response continues: its items come first, and its input and output are added to them. */
  conversation: z.union([z.string().min(1), z.object({ id: z.string().min(1) })]).nullish(),
  // (what would change the answer in a way not served here is refused, as chat's: prompts kept by OpenAI)
  prompt: unsupported('prompt'),
});
export type ResponsesRequest = z.infer<typeof responsesSchema>;

const partsText = (content: string | { text: string }[]) => (typeof content === 'string' ? content : content.map((p) => p.text).join(''));

export type InputItem = z.infer<typeof inputItem>;

/**
 * Input items as kept and listed (GET /v1/responses/{id}/input_items, a conversation's items): each with an id —
 * its own, else one made of `base` (hex) and its place, the same however often it is worked out — and a message's
 * text as a content part.
 */
export function listedItems(input: InputItem[], base: string): InputItem[] {
  return input.map((item, i): InputItem => {
    const prefix = 'role' in item ? 'msg' : { function_call: 'fc', function_call_output: 'fco', reasoning: 'rs' }[item.type];
    const listed = item.id ?? `${prefix}_${base}${i.toString(16).padStart(4, '0')}`;
    if (!('role' in item)) return { ...item, id: listed };
    const part = item.role === 'assistant' ? ('output_text' as const) : ('input_text' as const);
    const content = typeof item.content === 'string' ? [{ type: part, text: item.content }] : item.content;
    return { type: 'message', id: listed, role: item.role, content, status: 'completed' };
  });
}

/** A request's own input items, as listed (ids made of its response's). */
export const ownItems = (req: ResponsesRequest, responseId: string) =>
  listedItems(typeof req.input === 'string' ? [{ role: 'user', content: req.input }] : req.input, responseId.slice('resp_'.length));

/** Where earlier turns are kept: responses (store: true, background ones) and conversations. */
export type Keeping = {
  stored: StoredResponses;
  conversations: Conversations;
  /** Makes kept responses' ids (a fleet's carry their gateway's token). */
  newId: NewId;
  /** Other gateways keeping their own (server.fleet): a request continuing one of theirs is sent there. */
  fleet?: Fleet;
};

/**
 * What a request continues, before its own input: a kept response's conversation (its input, earlier turns'
 * included, then its output items) or a conversation's items (and the conversation, for its turn to be added to).
 * Instructions are the request's alone, as OpenAI's are not carried over.
 */
export function earlierOf(req: ResponsesRequest, caller: Caller | undefined, keeping?: Keeping): { items: InputItem[]; conversation?: Conversation } {
  const { previous_response_id: previous, conversation } = req;
  if ((previous || conversation) && !keeping)
    throw badInput(`${previous ? 'previous_response_id' : 'conversation'} is not served on this route`, previous ? 'previous_response_id' : 'conversation');
  if (previous && conversation)
    throw badInput('previous_response_id and conversation cannot both be given: a response continues one or the other', 'conversation');
  if (previous) {
    const kept = keeping?.stored.find(previous, caller, 'previous_response_id') as Stored;
    return { items: [...(kept.input as InputItem[]), ...(kept.response.output as InputItem[])] };
  }
  if (!conversation) return { items: [] };
  const found = keeping?.conversations.find(conversationId(conversation), caller, 'conversation') as Conversation;
  return { items: [...(found.items as InputItem[])], conversation: found };
}

export const conversationId = (conversation: string | { id: string }) => (typeof conversation === 'string' ? conversation : conversation.id);

/**
 * `truncation: auto` (OpenAI's): the conversation's earliest items dropped, as few as need be, until its prompt leaves
 * room for the answer — max_output_tokens, or unset the 256 a chat gets (half the context where that is less). It
 * then starts at a message or a call, not at a tool's output or a thought whose turn was dropped. The newest item
 * is always kept: too long alone, the context's 400 says so.
 */
export function truncated(m: ServedModel, req: ResponsesRequest, items: InputItem[]): InputItem[] {
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
export function asChat(req: ResponsesRequest, items: InputItem[]): ChatRequest {
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

export { randomId as newId } from '../fleet.js';

/** A response object's fields that do not depend on its output. `background`: a background response's (stored). */
export function skeleton(req: ResponsesRequest, m: ServedModel, responseId: string, background: boolean) {
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
    conversation: req.conversation ? { id: conversationId(req.conversation) } : null,
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
