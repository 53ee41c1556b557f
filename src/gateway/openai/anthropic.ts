import { randomBytes } from 'node:crypto';
import type { Context } from 'hono';
import { z } from 'zod';
import { badInput, GatewayError } from '../../errors/index.js';
import type { ServedModel } from '../types.js';
import { usage } from './generation.js';
import { answerPieces } from './reasoning.js';
import { type ChatRequest, chatSchema, parseBody } from './schema.js';
import { tokenStream } from './token-stream.js';
import { chatGeneration, chatPromptOf, relay, type ToolCall, type ToolCallDelta, wholeChat } from './tools.js';

// Anthropic's Messages API (POST /v1/messages), as vLLM serves it for Anthropic's SDKs and the agents built
// on them: served the way chat completions are — `system` and the messages' blocks become chat messages,
// tools and tool_choice the tool calls — and answered as content blocks, whole or as Anthropic's typed
// stream events; a reasoning model's thinking as thinking blocks. Images and documents are refused (400) rather than ignored.

const text = z.string();
const textBlock = z.object({ type: z.literal('text'), text, cache_control: z.unknown().optional() });
const toolUse = z.object({ type: z.literal('tool_use'), id: z.string(), name: z.string(), input: z.record(z.string(), z.unknown()) });
const toolResult = z.object({
  type: z.literal('tool_result'),
  tool_use_id: z.string(),
  content: z.union([text, z.array(textBlock)]).optional(),
  is_error: z.boolean().optional(),
  cache_control: z.unknown().optional(),
});
// An assistant turn's thinking, sent back as the API asks (with tool use, the last turn's must be): to the chat template.
const thinkingBlock = z.object({ type: z.literal('thinking'), thinking: text, signature: z.string().optional() });
const redactedThinking = z.object({ type: z.literal('redacted_thinking'), data: z.string() });
const block = z.discriminatedUnion('type', [textBlock, toolUse, toolResult, thinkingBlock, redactedThinking]);
const message = z.object({
  role: z.enum(['user', 'assistant']),
  content: z.union([text, z.array(block)], {
    error: 'a string, or content blocks of type text, tool_use, tool_result and thinking (not images or documents)',
  }),
});
const tool = z.object({
  name: z.string().min(1),
  description: z.string().optional(),
  input_schema: z.record(z.string(), z.unknown()),
  type: z.literal('custom').optional(),
  cache_control: z.unknown().optional(),
});

const thinkingDisplay = z.enum(['summarized', 'omitted']).nullish();

export const messagesSchema = z.object({
  model: z.string({ error: 'model: field required' }).min(1),
  max_tokens: z.number({ error: 'max_tokens: field required' }).int().min(1),
  messages: z.array(message).min(1),
  system: z.union([text, z.array(textBlock)]).optional(),
  temperature: z.number().min(0).max(1).optional(),
  top_p: z.number().gt(0).max(1).optional(),
  top_k: z.number().int().min(0).optional(),
  stop_sequences: z.array(z.string().min(1)).max(4).optional(),
  stream: z.boolean().optional(),
  metadata: z.object({ user_id: z.string().nullish() }).optional(),
  tools: z.array(tool).optional(),
  tool_choice: z
    .discriminatedUnion('type', [
      z.object({ type: z.literal('auto'), disable_parallel_tool_use: z.boolean().optional() }),
      z.object({ type: z.literal('any'), disable_parallel_tool_use: z.boolean().optional() }),
      z.object({ type: z.literal('tool'), name: z.string(), disable_parallel_tool_use: z.boolean().optional() }),
      z.object({ type: z.literal('none') }),
    ])
    .optional(),
  /**
   * Extended thinking: a reasoning model's (reasoning_parser) thinking as a thinking block before the answer —
   * `enabled` within its budget, `adaptive` as the model thinks (a model that does not: no block); `display: omitted`
   * keeps the block, its text left out.
   */
  thinking: z
    .discriminatedUnion('type', [
      z.object({ type: z.literal('enabled'), budget_tokens: z.number().int().min(1), display: thinkingDisplay }),
      z.object({ type: z.literal('adaptive'), display: thinkingDisplay }),
      z.object({ type: z.literal('disabled') }),
      // (thinking off; what a model writes between tool calls comes back as thinking — a model here writes none)
      z.object({ type: z.literal('between_tools') }),
    ])
    .optional(),
  /**
   * `format`: the answer as JSON of this schema (chat's response_format json_schema); `effort`: a reasoning model's
   * reasoning_effort (Anthropic's `max` past OpenAI's efforts: their highest), taken and unused by one that does not think.
   */
  output_config: z
    .object({
      effort: z.enum(['low', 'medium', 'high', 'xhigh', 'max']).nullish(),
      format: z.object({ type: z.literal('json_schema'), schema: z.record(z.string(), z.unknown()) }).nullish(),
    })
    .nullish(),
});
export type MessagesRequest = z.infer<typeof messagesSchema>;
/** POST /v1/messages/count_tokens: a Messages request without max_tokens. */
export const countTokensSchema = messagesSchema.extend({ max_tokens: z.number().int().min(1).optional() });

const blocksText = (content: string | { text: string }[] | undefined) =>
  content === undefined ? '' : typeof content === 'string' ? content : content.map((b) => b.text).join('');

/** The request as the chat completion it amounts to (checked again by chat's schema: one set of rules). */
function asChat(req: Omit<MessagesRequest, 'max_tokens'> & { max_tokens?: number }): ChatRequest {
  const messages: object[] = req.system ? [{ role: 'system', content: blocksText(req.system) }] : [];
  for (const m of req.messages) {
    if (typeof m.content === 'string') {
      messages.push({ role: m.role, content: m.content });
      continue;
    }
    // A turn's blocks in order: tool results as tool messages, an assistant's tool uses as its tool calls.
    const words = m.content.flatMap((b) => (b.type === 'text' ? [b.text] : [])).join('');
    // (redacted thinking is encrypted by Anthropic's models: nothing a model here can read)
    const thought = m.role === 'assistant' ? m.content.flatMap((b) => (b.type === 'thinking' ? [b.thinking] : [])).join('') : '';
    const calls = m.content.flatMap((b) =>
      b.type === 'tool_use' ? [{ id: b.id, type: 'function', function: { name: b.name, arguments: JSON.stringify(b.input) } }] : [],
    );
    for (const b of m.content)
      if (b.type === 'tool_result')
        messages.push({ role: 'tool', tool_call_id: b.tool_use_id, content: `${b.is_error ? 'Error: ' : ''}${blocksText(b.content)}` });
    if (words || calls.length > 0)
      messages.push({ role: m.role, content: words || null, ...(calls.length > 0 && { tool_calls: calls }), ...(thought && { reasoning_content: thought }) });
  }
  const choice = req.tool_choice;
  const format = req.output_config?.format;
  // A final assistant message (of words) is a prefill: Anthropic's answer continues it.
  const last = messages.at(-1) as { role: string; content?: string | null; tool_calls?: unknown[] } | undefined;
  const prefill = last?.role === 'assistant' && Boolean(last.content) && !last.tool_calls;
  return parseBody(chatSchema, {
    model: req.model,
    messages,
    ...(prefill && { continue_final_message: true, add_generation_prompt: false }),
    max_tokens: req.max_tokens,
    // (enforced: past its budget the thinking is ended for it)
    thinking_token_budget: req.thinking?.type === 'enabled' ? req.thinking.budget_tokens : undefined,
    temperature: req.temperature,
    top_p: req.top_p,
    top_k: req.top_k,
    stop: req.stop_sequences,
    tools: req.tools?.map((t) => ({ type: 'function', function: { name: t.name, description: t.description, parameters: t.input_schema } })),
    tool_choice: !choice
      ? undefined
      : choice.type === 'any'
        ? 'required'
        : choice.type === 'tool'
          ? { type: 'function', function: { name: choice.name } }
          : choice.type,
    parallel_tool_calls: choice && 'disable_parallel_tool_use' in choice && choice.disable_parallel_tool_use ? false : undefined,
    ...(format && { response_format: { type: 'json_schema', json_schema: { name: 'output', schema: format.schema, strict: true } } }),
  });
}

const id = (prefix: string) => `${prefix}_${randomBytes(12).toString('hex')}`;
/** Arguments as the tool_use block's input: the object (a call cut by max_tokens has none yet: `{}`). */
const inputOf = (call: ToolCall) => {
  try {
    return JSON.parse(call.function.arguments) as Record<string, unknown>;
  } catch {
    return {};
  }
};

/** POST /v1/messages. */
export async function messages(c: Context, m: ServedModel, req: MessagesRequest): Promise<Response> {
  // A reasoning model's thinking: a thinking block first where asked for (its text too, unless `omitted`), else left
  // out of the answer. Adaptive thinking on a model that does not think: no block.
  const parser = m.generation?.reasoningParser;
  if (req.thinking?.type === 'enabled' && !parser)
    throw badInput(`extended thinking needs a reasoning model: model ${m.name} has no reasoning_parser`, 'thinking', 'invalid_request_error');
  const block = req.thinking?.type === 'enabled' || req.thinking?.type === 'adaptive' ? req.thinking : undefined;
  const thinks = parser !== undefined && block !== undefined;
  const shown = thinks && block.display !== 'omitted';
  if (req.thinking?.type === 'enabled' && req.thinking.budget_tokens >= req.max_tokens)
    throw badInput('thinking.budget_tokens must be less than max_tokens', 'thinking.budget_tokens', 'invalid_request_error');
  const chat = asChat(req);
  const effort = req.output_config?.effort;
  if (effort && parser) chat.reasoning_effort = effort === 'max' ? 'xhigh' : effort;
  // Thinking turned off in so many words, on a reasoning model: it is ended before it starts (a budget of 0), so the
  // answer comes at once (left out, the model thinks, unshown). A forced tool's format holds the answer after it.
  if ((req.thinking?.type === 'disabled' || req.thinking?.type === 'between_tools') && parser) chat.thinking_token_budget = 0;
  const { generation, answer } = chatGeneration(c, m, chat, req.max_tokens);
  const base = { id: id('msg'), type: 'message', role: 'assistant', model: m.name };
  const toolBlock = (call: ToolCall) => ({ type: 'tool_use', id: `toolu_${call.id.slice('call_'.length)}`, name: call.function.name });
  const stopOf = (result: Awaited<typeof generation.result>) => {
    const stopSequence = typeof generation.stopReason === 'string' ? generation.stopReason : null;
    // (a stop sequence inside a tool call cuts it: not a whole call to run; after whole calls it changes nothing)
    const whole = answer?.isCalls && answer.reader.whole;
    const reason =
      result.finishReason === 'length' ? 'max_tokens' : whole ? 'tool_use' : stopSequence ? 'stop_sequence' : answer?.isCalls ? 'tool_use' : 'end_turn';
    return { stop_reason: reason, stop_sequence: reason === 'stop_sequence' ? stopSequence : null };
  };
  const usageOf = (result: Awaited<typeof generation.result>) => {
    const u = usage(generation.promptTokens, [result]);
    const thinking = generation.reasoningTokens; // (a reasoning model's: its tokens before the answer, tags included)
    // (Anthropic's input_tokens are those after the last cache read: the prompt is all three fields summed)
    return {
      input_tokens: u.prompt_tokens - result.cachedTokens,
      output_tokens: u.completion_tokens,
      cache_read_input_tokens: result.cachedTokens,
      cache_creation_input_tokens: 0,
      ...(thinking !== undefined && { output_tokens_details: { thinking_tokens: thinking } }),
    };
  };

  if (!req.stream) {
    const { result, reasoning, content: all } = await wholeChat(generation, parser, answer);
    const said = answer?.isCalls ? answer.reader.calls.map((call) => ({ ...toolBlock(call), input: inputOf(call) })) : [{ type: 'text', text: all }];
    const content = thinks ? [{ type: 'thinking', thinking: shown ? reasoning : '', signature: '' }, ...said] : said;
    return c.json({ ...base, content, ...stopOf(result), usage: usageOf(result) });
  }

  return tokenStream(c, generation.started, async (stream) => {
    const send = (type: string, event: object) => stream.writeSSE({ event: type, data: JSON.stringify({ type, ...event }) });
    await send('message_start', {
      message: { ...base, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: generation.promptTokens, output_tokens: 0 } },
    });
    try {
      let open = -1; // the content block being written
      const first = thinks ? 1 : 0; // (the thinking block is block 0)
      const start = async (index: number, block: object) => {
        if (open >= 0) await send('content_block_stop', { index: open });
        open = index;
        await send('content_block_start', { index, content_block: block });
      };
      const words = async (piece: string) => {
        if (!piece && thinks && open < first) return; // (the text block opens with the answer: the thinking comes first)
        if (open < first) await start(first, { type: 'text', text: '' });
        if (piece) await send('content_block_delta', { index: first, delta: { type: 'text_delta', text: piece } });
      };
      const calls = async (deltas: ToolCallDelta[]) => {
        for (const delta of deltas) {
          const call = answer?.reader.calls[delta.index] as ToolCall;
          if (delta.id) await start(first + delta.index, { ...toolBlock(call), input: {} });
          if (delta.function.arguments)
            await send('content_block_delta', { index: first + delta.index, delta: { type: 'input_json_delta', partial_json: delta.function.arguments } });
        }
      };
      const thought = async (text: string) => {
        if (open < 0) await start(0, { type: 'thinking', thinking: '', signature: '' });
        if (text && shown) await send('content_block_delta', { index: 0, delta: { type: 'thinking_delta', thinking: text } });
      };
      if (thinks) await thought('');
      // (a reasoning model's pieces split: thinking to the thinking block where asked for, the answer as ever)
      await relay(parser ? answerPieces(generation, parser, thinks ? thought : async () => {}) : generation, answer, words, calls);
      if (answer && !answer.isCalls) await words(answer.flush());
      if (!answer?.isCalls && open < first) await start(first, { type: 'text', text: '' }); // (an empty answer's block)
      if (open >= 0) await send('content_block_stop', { index: open });
      const result = await generation.result;
      // (the whole usage: message_start's input_tokens did not yet know what the prefix cache held)
      await send('message_delta', { delta: stopOf(result), usage: usageOf(result) });
      await send('message_stop', {});
    } catch (err) {
      if (stream.aborted) return;
      const e = err instanceof GatewayError ? err : new GatewayError(500, 'internal', (err as Error).message);
      await send('error', anthropicError(e, c.get('requestId')));
    }
  });
}

/** POST /v1/messages/count_tokens: the prompt's tokens (the system prompt, the messages, the tools listed), as usage will count them. */
export function countTokens(c: Context, m: ServedModel, req: z.infer<typeof countTokensSchema>): Response {
  c.set('model', m.name);
  return c.json({ input_tokens: chatPromptOf(m, asChat(req)).prompt.length });
}

/** An error as Anthropic's API answers it: `{"type": "error", "error": {type, message}}`. */
export function anthropicError(e: GatewayError, requestId?: string): { type: 'error'; error: { type: string; message: string }; request_id?: string } {
  const types: Record<number, string> = {
    400: 'invalid_request_error',
    401: 'authentication_error',
    403: 'permission_error',
    404: 'not_found_error',
    413: 'request_too_large',
    429: 'rate_limit_error',
    503: 'overloaded_error',
    504: 'timeout_error',
  };
  const type = types[e.status] ?? (e.status < 500 ? 'invalid_request_error' : 'api_error');
  return { type: 'error', error: { type, message: e.message }, ...(requestId && { request_id: requestId }) };
}
