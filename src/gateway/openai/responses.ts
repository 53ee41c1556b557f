import type { Context } from 'hono';
import { GatewayError } from '../../errors/index.js';
import type { Caller } from '../auth/middleware.js';
import type { CallEnv } from '../calls.js';
import type { ServedModel } from '../types.js';
import type { Item } from './conversations.js';
import { type LoggedToken, type Piece, usage } from './generation.js';
import { chatLogprobs } from './logprobs.js';
import { answerPieces } from './reasoning.js';
import { asChat, earlierOf, type Keeping, newId, ownItems, type ResponsesRequest, skeleton, truncated } from './responses-input.js';
import { tokenStream } from './token-stream.js';
import { chatGeneration, relay, type ToolCall, type ToolCallDelta, wholeChat } from './tools.js';

// OpenAI's Responses API (POST /v1/responses), served the way chat completions are: the input items become
// chat messages, `text.format` the response format, function tools the tool calls — and the answer comes
// back as output items, whole or as the Responses stream's typed events. A response is kept (for
// `previous_response_id` and retrieval) only when asked, `store: true`, or run in the background.

/**
 * POST /v1/responses; `keeping`: where responses are kept (store: true, background ones) and conversations, to be
 * continued.
 */
export async function responses(c: Context, m: ServedModel, req: ResponsesRequest, keeping?: Keeping): Promise<Response> {
  const caller = c.get('caller') as Caller | undefined;
  // (a background response's own run: it answers under the id its creation gave)
  const call = (c.env as CallEnv | undefined)?.infergateCall;
  const called = call?.id;
  const base = skeleton(req, m, called ?? (keeping?.newId ?? newId)('resp'), called !== undefined);
  const own = ownItems(req, base.id);
  const earlier = earlierOf(req, caller, keeping);
  const whole = [...earlier.items, ...own];
  const items = req.truncation === 'auto' ? truncated(m, req, whole) : whole;
  const { generation, answer } = chatGeneration(c, m, asChat(req, items), req.max_output_tokens ?? undefined, {
    prompt: 'input',
    maxTokens: 'max_output_tokens',
  });
  // (a background response is queued until its first token: then in progress)
  generation.started.then(
    () => call?.started?.(),
    () => {}, // (failed before it: its answer says so)
  );
  const messageId = newId('msg');
  /**
   * A response asked to be kept (and a background one) is kept once whole, to be continued and retrieved; one in a
   * conversation adds its input and output to it.
   */
  const kept = <T extends { output: object[] }>(response: T): T => {
    if (base.store) keeping?.stored.keep(base.id, caller, items, response);
    // (a conversation deleted meanwhile takes nothing)
    if (earlier.conversation) keeping?.conversations.append(earlier.conversation, [...own, ...(response.output as Item[])]);
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
  const reasoningId = newId('rs');
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
    // (thinking is whole once an answer began; else max_output_tokens cut it, or it ended without an answer)
    const answered = all !== '' || (answer?.isCalls && answer.reader.calls.length > 0);
    const thought = thinking ? [reasoningItem(thinking, answered ? 'completed' : last)] : [];
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
    // A background response is created queued, as OpenAI's are (its creation answered `queued` too), then runs.
    const created = base.background ? { ...pending, status: 'queued' } : pending;
    await send('response.created', { response: created });
    if (base.background) await send('response.queued', { response: created });
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
      const endThinking = async (status = 'completed') => {
        if (!thinking || thoughtDone) return;
        thoughtDone = true;
        await send('response.reasoning_text.done', { ...thinkingAt, text: thinking });
        await send('response.output_item.done', { output_index: 0, item: reasoningItem(thinking, status) });
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
      // (no answer began: the thinking ended the generation — cut by max_output_tokens, it is incomplete)
      await endThinking((await generation.result).finishReason === 'length' ? 'incomplete' : 'completed');
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
