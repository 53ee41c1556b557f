import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { parseConfig } from '../src/config/index.js';
import { MODELS, startTestGateway } from './helpers.js';

// A reasoning model's chat answers (vLLM's --reasoning-parser): the thinking between <think> and </think> as
// reasoning_content. The random tiny-gpt thinks from the start under deepseek_r1 and never ends it itself: a thinking
// budget ends it (the replica writes the end tag), and a regex format, which holds only the answer, shapes the rest.
let gw: Awaited<ReturnType<typeof startTestGateway>>;
let client: OpenAI;
beforeAll(async () => {
  gw = await startTestGateway({
    models: {
      r1: { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', reasoning_parser: 'deepseek_r1', scaling: { min_containers: 1 } },
      qwen: { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', reasoning_parser: 'qwen3', scaling: { min_containers: 1 } },
      plain: { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', scaling: { min_containers: 0 } },
    },
  });
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
afterAll(() => gw?.shutdown());

const ask = (model: string, guided_regex: string, stream: boolean, extra: object = {}) =>
  ({ model, messages: [{ role: 'user', content: 'Think first.' }], max_tokens: 40, temperature: 0, guided_regex, stream, ...extra }) as never;
/** r1's first tokens at temperature 0 with nothing ending its thinking (all of it thinking): their texts. */
async function freeTokens(model: string, n: number): Promise<string[]> {
  const body = { model, messages: [{ role: 'user', content: 'Think first.' }], max_tokens: n, temperature: 0, logprobs: true };
  const res = await (await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify(body) })).json();
  return res.choices[0].logprobs.content.map((t: { token: string }) => t.token);
}
type Message = { content: string | null; reasoning_content?: string | null };

/** r1's chat to "Hello" of 24 tokens at temperature 0, streamed through the openai client, with `extra` fields. */
const streamHello = async (extra: object) =>
  (await client.chat.completions.create({
    model: 'r1',
    messages: [{ role: 'user', content: 'Hello' }],
    max_tokens: 24,
    temperature: 0,
    stream: true,
    ...extra,
  } as never)) as unknown as AsyncIterable<OpenAI.ChatCompletionChunk>;

/** A chat message's answer over the WebSocket: its tokens' `reasoning` and `text`, each joined. */
async function overWebSocket(chat: object, usage?: (u: OpenAI.CompletionUsage) => void): Promise<{ reasoning: string; text: string }> {
  const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/v1/ws`);
  await new Promise((resolve) => ws.once('open', resolve));
  const got = { reasoning: '', text: '' };
  const done = new Promise<void>((resolve) =>
    ws.on('message', (data) => {
      const m = JSON.parse(String(data));
      if (m.type === 'token') [got.reasoning, got.text] = [got.reasoning + (m.reasoning ?? ''), got.text + m.text];
      if (m.type === 'done') usage?.(m.usage);
      if (m.type === 'done' || m.type === 'error') resolve();
    }),
  );
  ws.send(JSON.stringify({ id: 'r', type: 'chat', ...chat }));
  await done;
  ws.close();
  return got;
}

describe('reasoning parsers', () => {
  it('answer the thinking as reasoning_content and the rest as content, streamed as whole', async () => {
    const thought = (await freeTokens('r1', 4)).join('');
    const whole = (await client.chat.completions.create(ask('r1', '[a-z]{3}', false, { thinking_token_budget: 4 }))) as OpenAI.ChatCompletion;
    const message = whole.choices[0].message as unknown as Message;
    expect(message.reasoning_content).toBe(thought);
    expect(message.content).toMatch(/^[a-z]{3}$/);
    // Streamed: reasoning deltas, then content deltas, the same texts; no tag ever shown.
    const parts = { reasoning: '', content: '' };
    const stream = (await client.chat.completions.create(
      ask('r1', '[a-z]{3}', true, { thinking_token_budget: 4 }),
    )) as unknown as AsyncIterable<OpenAI.ChatCompletionChunk>;
    for await (const chunk of stream) {
      const d = chunk.choices[0]?.delta as unknown as { content?: string | null; reasoning_content?: string };
      parts.reasoning += d?.reasoning_content ?? '';
      parts.content += d?.content ?? '';
    }
    expect(parts).toEqual({ reasoning: message.reasoning_content, content: message.content });
    // Completions are text as it is (vLLM parses chat answers only).
    const text = (
      await client.completions.create({ model: 'r1', prompt: 'x', max_tokens: 12, temperature: 0, guided_regex: '<think>[a-z]{2}</think>' } as never)
    ).choices[0].text;
    expect(text).toMatch(/^<think>[a-z]{2}<\/think>$/);
  });

  it('send the thinking over the WebSocket as `reasoning` beside the text', async () => {
    const got = await overWebSocket(ask('r1', '[a-z]{3}', false, { thinking_token_budget: 4 }));
    expect(got.reasoning).toBe((await freeTokens('r1', 4)).join(''));
    expect(got.text).toMatch(/^[a-z]{3}$/);
  });

  it('qwen3 thinks only between the tags; deepseek_r1 from the start (its template opens <think>)', async () => {
    // qwen3: an output that does not open <think> (its first token, "<", made unlikely) is all answer, the format's.
    const LT = 27; // (GPT-2's "<")
    const plain = (await client.chat.completions.create(ask('qwen', '[a-z]{5}', false, { logit_bias: { [LT]: -100 } }))) as OpenAI.ChatCompletion;
    expect(plain.choices[0].message as unknown as Message).toMatchObject({ content: expect.stringMatching(/^[a-z]{5}$/), reasoning_content: null });
    // One that opens it (made likely) thinks — the format waits — until its budget ends it; then the format holds.
    const thinking = (await client.chat.completions.create(
      ask('qwen', '[a-z]{5}', false, { logit_bias: { [LT]: 100 }, thinking_token_budget: 3 }),
    )) as OpenAI.ChatCompletion;
    const t = thinking.choices[0].message as unknown as Message;
    expect(t.reasoning_content?.length).toBeGreaterThan(0);
    expect(t.content).toMatch(/^[a-z]{5}$/);
    // deepseek_r1: everything before </think> is thinking.
    const opened = (await client.chat.completions.create(ask('r1', '[a-z]{2}', false, { thinking_token_budget: 3 }))) as OpenAI.ChatCompletion;
    const m = opened.choices[0].message as unknown as Message;
    expect(m.reasoning_content).toBe((await freeTokens('r1', 3)).join(''));
    expect(m.content).toMatch(/^[a-z]{2}$/);
  });

  it("give Anthropic's extended thinking its thinking block (whole and streamed), and leave it out where not asked for", async () => {
    // deepseek_r1 thinks from the start: the random model never closes </think>, so its whole answer is thinking.
    const chat = (await client.chat.completions.create({
      model: 'r1',
      messages: [{ role: 'user', content: 'Hello' }],
      max_tokens: 12,
      temperature: 0,
    })) as OpenAI.ChatCompletion;
    const thinking = (chat.choices[0].message as unknown as Message).reasoning_content;
    expect(thinking?.length).toBeGreaterThan(0);
    const anthropic = new Anthropic({ baseURL: gw.url, apiKey: 'unused', maxRetries: 0 });
    const ask = { model: 'r1', max_tokens: 12, temperature: 0, messages: [{ role: 'user' as const, content: 'Hello' }] };
    // A budget of 12 leaves it the 12 tokens of thinking it had; then the end tag (3 tokens) and the answer come.
    const thought = await anthropic.messages.create({ ...ask, max_tokens: 20, thinking: { type: 'enabled', budget_tokens: 12 } });
    expect(thought.content.map((b) => b.type)).toEqual(['thinking', 'text']);
    expect((thought.content[0] as Anthropic.ThinkingBlock).thinking).toBe(thinking);
    const streamed = await anthropic.messages.stream({ ...ask, max_tokens: 20, thinking: { type: 'enabled', budget_tokens: 12 } }).finalMessage();
    expect(streamed.content).toEqual(thought.content);
    const plain = await anthropic.messages.create(ask);
    expect(plain.content).toEqual([{ type: 'text', text: '' }]); // (all thinking: none of it shown)
    // Turned off in so many words: no thinking at all, an answer at once.
    const off = await anthropic.messages.create({ ...ask, thinking: { type: 'disabled' } });
    expect(off.content).toEqual([{ type: 'text', text: expect.stringMatching(/\S/) }]);
    expect(off.usage.output_tokens).toBe(12);
    // `between_tools` is thinking off too (what a model writes between tool calls as thinking: none here).
    expect((await anthropic.messages.create({ ...ask, thinking: { type: 'between_tools' } })).content).toEqual(off.content);
    await expect(anthropic.messages.create({ ...ask, thinking: { type: 'enabled', budget_tokens: 12 } })).rejects.toMatchObject({ status: 400 });
    // Adaptive: the model thinks as it will (no budget), its thinking in the block; `omitted` keeps the block, not its text.
    const adaptive = await anthropic.messages.create({ ...ask, thinking: { type: 'adaptive' } });
    expect(adaptive.content).toEqual([
      { type: 'thinking', thinking, signature: '' },
      { type: 'text', text: '' },
    ]);
    expect(adaptive.usage).toMatchObject({ output_tokens: 12, output_tokens_details: { thinking_tokens: 12 } }); // (all of it thinking)
    const omitted = { ...ask, thinking: { type: 'adaptive' as const, display: 'omitted' as const } };
    const hidden = await anthropic.messages.create(omitted);
    expect(hidden.content).toEqual([
      { type: 'thinking', thinking: '', signature: '' },
      { type: 'text', text: '' },
    ]);
    expect((await anthropic.messages.stream(omitted).finalMessage()).content).toEqual(hidden.content);
    // An effort (output_config) is the reasoning model's reasoning_effort: taken.
    expect((await anthropic.messages.create({ ...ask, output_config: { effort: 'max' } })).content.length).toBeGreaterThan(0);
  });

  it("end the thinking at thinking_token_budget, so that the model answers (vLLM's; Anthropic's budget_tokens)", async () => {
    type Logged = { choices: { message: Message; logprobs: { content: { token: string }[] } }[] };
    const chat = async (extra: object) => {
      const body = { model: 'r1', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 24, temperature: 0, logprobs: true, ...extra };
      const res = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify(body) });
      expect(res.status).toBe(200);
      const { message, logprobs } = ((await res.json()) as Logged).choices[0];
      return { message, tokens: logprobs.content.map((t) => t.token) };
    };
    // Without a budget the random model thinks to max_tokens and answers nothing (what users of reasoning models meet).
    const free = await chat({});
    expect(free.message.content).toBe('');
    // With one: its first 6 tokens are the same thinking, then the end tag, written for it; then it answers.
    const cut = await chat({ thinking_token_budget: 6 });
    expect(cut.tokens.slice(0, 6)).toEqual(free.tokens.slice(0, 6));
    expect(cut.tokens.slice(6).join('')).toMatch(/^<\/think>/);
    expect(cut.message.reasoning_content).toBe(free.tokens.slice(0, 6).join(''));
    expect(cut.message.content?.length).toBeGreaterThan(0);
    // Streamed: the same parts.
    const stream = await streamHello({ thinking_token_budget: 6 });
    const parts = { reasoning: '', content: '' };
    for await (const chunk of stream) {
      const d = chunk.choices[0]?.delta as unknown as { content?: string | null; reasoning_content?: string };
      parts.reasoning += d?.reasoning_content ?? '';
      parts.content += d?.content ?? '';
    }
    expect(parts).toEqual({ reasoning: cut.message.reasoning_content, content: cut.message.content });
    // Over the WebSocket too.
    const message = { model: 'r1', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 24, temperature: 0, thinking_token_budget: 6 };
    expect(await overWebSocket(message)).toEqual({ reasoning: cut.message.reasoning_content, text: cut.message.content });
    // A budget of 0: no thinking at all.
    const none = await chat({ thinking_token_budget: 0 });
    expect(none.tokens.join('')).toMatch(/^<\/think>/);
    expect(none.message.reasoning_content).toBeNull();
    // qwen3 thinks only after an opening <think>, which this model does not write: nothing to end, nothing changed.
    const qwen = { model: 'qwen', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 12, temperature: 0 } as never;
    const [open, budgeted] = await Promise.all([
      client.chat.completions.create(qwen),
      client.chat.completions.create({ ...(qwen as object), thinking_token_budget: 2 } as never),
    ]);
    expect((budgeted as OpenAI.ChatCompletion).choices[0].message.content).toBe((open as OpenAI.ChatCompletion).choices[0].message.content);
    // With tools the model may call or not ("auto": words are allowed, and so the end tag): 6 tokens, then the tag.
    const tools = [{ type: 'function', function: { name: 'lookup', description: 'looks up', parameters: { type: 'object', properties: {} } } }];
    const [toolsFree, withTools] = await Promise.all([chat({ tools }), chat({ thinking_token_budget: 6, tools })]);
    expect(withTools.tokens.slice(0, 6)).toEqual(toolsFree.tokens.slice(0, 6));
    expect(withTools.tokens.slice(6).join('')).toMatch(/^<\/think>/);
    expect(withTools.message.reasoning_content).toBe(toolsFree.tokens.slice(0, 6).join(''));
    // Anthropic's budget_tokens is this budget: 4 tokens of thinking, then the answer.
    const anthropic = new Anthropic({ baseURL: gw.url, apiKey: 'unused', maxRetries: 0 });
    const ask = { model: 'r1', max_tokens: 24, temperature: 0, messages: [{ role: 'user' as const, content: 'Hello' }] };
    const thought = await anthropic.messages.create({ ...ask, thinking: { type: 'enabled', budget_tokens: 4 } });
    expect((thought.content[0] as Anthropic.ThinkingBlock).thinking).toBe(free.tokens.slice(0, 4).join(''));
    // …with tools too (Claude Code's way: tools and thinking at once).
    const lookup = { name: 'lookup', description: 'looks up', input_schema: { type: 'object' as const, properties: {} } };
    const thoughtWithTools = await anthropic.messages.create({ ...ask, tools: [lookup], thinking: { type: 'enabled', budget_tokens: 4 } });
    expect((thoughtWithTools.content[0] as Anthropic.ThinkingBlock).thinking).toBe(toolsFree.tokens.slice(0, 4).join(''));
    expect((thought.content[1] as Anthropic.TextBlock).text.length).toBeGreaterThan(0);
  });

  it("holds a response format or a forced tool to the answer: the thinking before it is free (vLLM's structured outputs with reasoning)", async () => {
    const schema = { type: 'object', properties: { city: { enum: ['Paris', 'Rome'] } }, required: ['city'], additionalProperties: false };
    const response_format = { type: 'json_schema', json_schema: { name: 'place', schema } };
    const free = (await freeTokens('r1', 6)).join('');
    const answer = async (extra: object) =>
      ((await client.chat.completions.create({ ...(ask('r1', '', false) as object), guided_regex: undefined, ...extra } as never)) as OpenAI.ChatCompletion)
        .choices[0].message as unknown as Message & { tool_calls?: OpenAI.ChatCompletionMessageFunctionToolCall[] };
    // Ended after 6 tokens: those are the free run's (the format did not touch them), then a document of the schema.
    const shaped = await answer({ response_format, thinking_token_budget: 6 });
    expect(shaped.reasoning_content).toBe(free);
    expect(JSON.parse(shaped.content as string)).toEqual({ city: expect.stringMatching(/^(Paris|Rome)$/) });
    // Not ended, the model thinks on (this random one never writes </think>): all thinking, as without the format —
    // not a document read as thinking (what a format held from the first token gave: content empty, JSON in reasoning).
    const unended = await answer({ response_format, max_tokens: 12 });
    expect(unended.reasoning_content).toBe((await freeTokens('r1', 12)).join(''));
    // A forced tool: its call comes after the thinking; reasoning_effort "none" ends it before it starts.
    const tools = [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: { q: { enum: ['a'] } }, required: ['q'] } } }];
    // (its prompt lists the tools: its free thinking is that of the same prompt with the model free to answer, tools under "auto")
    const toolsFree = (await answer({ tools, max_tokens: 6 })).reasoning_content;
    const called = await answer({ tools, tool_choice: 'required', thinking_token_budget: 6 });
    expect(called.reasoning_content).toBe(toolsFree);
    expect(called.tool_calls?.map((c) => [c.function.name, JSON.parse(c.function.arguments)])).toEqual([['lookup', { q: 'a' }]]);
    const quick = await answer({ response_format, reasoning_effort: 'none' });
    expect(quick.reasoning_content).toBeNull();
    expect(JSON.parse(quick.content as string)).toHaveProperty('city');
    // Streamed: the same parts.
    const stream = await streamHello({ messages: [{ role: 'user', content: 'Think first.' }], max_tokens: 40, response_format, thinking_token_budget: 6 });
    const parts = { reasoning: '', content: '' };
    for await (const chunk of stream) {
      const d = chunk.choices[0]?.delta as unknown as { content?: string | null; reasoning_content?: string };
      parts.reasoning += d?.reasoning_content ?? '';
      parts.content += d?.content ?? '';
    }
    expect(parts).toEqual({ reasoning: shaped.reasoning_content, content: shaped.content });
    // Anthropic's thinking with a forced tool (Claude Code's way): a thinking block, then the tool_use.
    const anthropic = new Anthropic({ baseURL: gw.url, apiKey: 'unused', maxRetries: 0 });
    const lookup = { name: 'lookup', input_schema: { type: 'object' as const, properties: { q: { enum: ['a'] } }, required: ['q'] } };
    const asked = { model: 'r1', max_tokens: 40, temperature: 0, messages: [{ role: 'user' as const, content: 'Think first.' }], tools: [lookup] };
    const thinking = { type: 'enabled' as const, budget_tokens: 6 };
    const message = await anthropic.messages.create({ ...asked, tool_choice: { type: 'any' }, thinking });
    expect(message.content.map((b) => b.type)).toEqual(['thinking', 'tool_use']);
    // (the thinking the same prompt gives with the tool not forced)
    const unforced = await anthropic.messages.create({ ...asked, thinking });
    expect((message.content[0] as Anthropic.ThinkingBlock).thinking).toBe((unforced.content[0] as Anthropic.ThinkingBlock).thinking);
    expect((message.content[1] as Anthropic.ToolUseBlock).input).toEqual({ q: 'a' });
  });

  it('takes its own thinking back in the next turn, as clients send it (Anthropic thinking blocks, Responses reasoning items)', async () => {
    // Anthropic's API asks for the last assistant turn's thinking back with its tool use (Claude Code sends it): a 400 before.
    const anthropic = new Anthropic({ baseURL: gw.url, apiKey: 'unused', maxRetries: 0 });
    const lookup = { name: 'lookup', input_schema: { type: 'object' as const, properties: { q: { enum: ['a'] } }, required: ['q'] } };
    const asked = { model: 'r1', max_tokens: 40, temperature: 0, tools: [lookup], thinking: { type: 'enabled' as const, budget_tokens: 4 } };
    const question = { role: 'user' as const, content: 'Look it up.' };
    const first = await anthropic.messages.create({ ...asked, messages: [question], tool_choice: { type: 'any' } });
    expect(first.content.map((b) => b.type)).toEqual(['thinking', 'tool_use']);
    const result = { type: 'tool_result' as const, tool_use_id: (first.content[1] as Anthropic.ToolUseBlock).id, content: 'found' };
    const second = await anthropic.messages.create({
      ...asked,
      messages: [question, { role: 'assistant', content: first.content }, { role: 'user', content: [result] }],
    });
    expect(second.content[0].type).toBe('thinking');
    // The Responses API: an answer's output items (a reasoning item among them) appended to the next turn's input.
    const turn = await client.responses.create({ model: 'r1', input: 'Hello', max_output_tokens: 8, temperature: 0 });
    expect(turn.output[0].type).toBe('reasoning');
    const next = await client.responses.create({
      model: 'r1',
      input: [{ role: 'user', content: 'Hello' }, ...turn.output, { role: 'user', content: 'And then?' }] as never,
      max_output_tokens: 4,
    });
    expect(next.usage?.input_tokens).toBeGreaterThan(turn.usage?.input_tokens as number);
  });

  it('refuses thinking_token_budget where there is no thinking to end', async () => {
    const refused = async (path: string, body: object, match: RegExp) => {
      const res = await fetch(`${gw.url}${path}`, { method: 'POST', body: JSON.stringify({ max_tokens: 8, thinking_token_budget: 2, ...body }) });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { message: string; param: string } }).error).toMatchObject({
        message: expect.stringMatching(match),
        param: 'thinking_token_budget',
      });
    };
    const messages = [{ role: 'user', content: 'Hi' }];
    await refused('/v1/completions', { model: 'r1', prompt: 'Hi' }, /needs a chat with a reasoning model/);
    await refused('/v1/chat/completions', { model: 'plain', messages }, /needs a chat with a reasoning model/);
    await refused('/v1/chat/completions', { model: 'r1', messages, use_beam_search: true }, /cannot be used with use_beam_search/);
    await refused('/v1/chat/completions', { model: 'r1', messages, thinking_token_budget: -1 }, /thinking_token_budget/);
  });

  it("count the thinking as usage's reasoning_tokens (OpenAI's), its tags included, whole and streamed", async () => {
    type Answer = { usage: OpenAI.CompletionUsage; choices: { message: Message; logprobs: { content: { token: string }[] } }[] };
    const chat = async (extra: object) => {
      const body = { model: 'r1', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 24, temperature: 0, logprobs: true, ...extra };
      return (await (await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify(body) })).json()) as Answer;
    };
    // Thinking to max_tokens: every token is reasoning.
    const free = await chat({});
    expect(free.usage.completion_tokens_details?.reasoning_tokens).toBe(24);
    // Ended after 6: those, then the end tag's tokens; the rest is the answer.
    const cut = await chat({ thinking_token_budget: 6 });
    const tokens = cut.choices[0].logprobs.content.map((t) => t.token);
    const tagEnds =
      tokens.findIndex((_, i) =>
        tokens
          .slice(0, i + 1)
          .join('')
          .includes('</think>'),
      ) + 1;
    expect(tagEnds).toBeGreaterThan(6);
    expect(cut.usage.completion_tokens_details?.reasoning_tokens).toBe(tagEnds);
    expect(cut.usage.completion_tokens).toBe(24);
    // Two choices: summed, as completion_tokens is.
    const two = await chat({ thinking_token_budget: 6, n: 2 });
    expect(two.usage.completion_tokens_details?.reasoning_tokens).toBe(2 * tagEnds);
    // Streamed, in the usage chunk.
    const stream = await streamHello({ stream_options: { include_usage: true }, thinking_token_budget: 6 });
    let streamed: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) streamed = chunk.usage ?? streamed;
    expect(streamed?.completion_tokens_details?.reasoning_tokens).toBe(tagEnds);
    let overWs: OpenAI.CompletionUsage | undefined;
    await overWebSocket({ model: 'r1', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 24, temperature: 0, thinking_token_budget: 6 }, (u) => {
      overWs = u;
    });
    expect(overWs?.completion_tokens_details?.reasoning_tokens).toBe(tagEnds);
    // The Responses API's output_tokens_details; over the WebSocket, its done message's usage.
    const response = await client.responses.create({ model: 'r1', input: 'Hello', max_output_tokens: 10, temperature: 0 });
    expect(response.usage?.output_tokens_details.reasoning_tokens).toBe(10);
    // Its answer's log-probabilities leave the thinking's tokens out: chat's after them.
    const quick = { model: 'r1', max_output_tokens: 10, temperature: 0, reasoning: { effort: 'none' as const } };
    const logged = await client.responses.create({ ...quick, input: 'Hello', include: ['message.output_text.logprobs'] });
    const answer = logged.output.find((o) => o.type === 'message') as OpenAI.Responses.ResponseOutputMessage;
    const thinking = logged.usage?.output_tokens_details.reasoning_tokens as number;
    expect(thinking).toBeGreaterThan(0);
    expect((answer.content[0] as OpenAI.Responses.ResponseOutputText).logprobs).toEqual(
      (await chat({ max_tokens: 10, reasoning_effort: 'none' })).choices[0].logprobs.content.slice(thinking),
    );
    // qwen3 thinks only after an opening <think>, which this model does not write: none. A plain model: no field.
    const qwen = await client.chat.completions.create({ model: 'qwen', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 5 });
    expect(qwen.usage?.completion_tokens_details?.reasoning_tokens).toBe(0);
    const plain = await client.chat.completions.create({ model: 'plain', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 5 });
    expect(plain.usage?.completion_tokens_details).toBeUndefined();
  });

  it('split a beam search’s texts as sampled ones: the thinking as reasoning_content, counted as reasoning_tokens', async () => {
    const ask = { model: 'r1', messages: [{ role: 'user' as const, content: 'Hello' }], max_tokens: 12 };
    // (one beam is greedy: the same text as temperature 0)
    const greedy = await client.chat.completions.create({ ...ask, temperature: 0 });
    const beam = await client.chat.completions.create({ ...ask, use_beam_search: true } as never);
    expect(beam.choices[0].message).toMatchObject({
      content: greedy.choices[0].message.content,
      reasoning_content: (greedy.choices[0].message as unknown as Message).reasoning_content,
    });
    expect(beam.usage?.completion_tokens_details?.reasoning_tokens).toBe(greedy.usage?.completion_tokens_details?.reasoning_tokens);
    expect(beam.usage?.completion_tokens_details?.reasoning_tokens).toBeGreaterThan(0);
  });

  it("take OpenAI's reasoning effort: none answers at once (a budget of 0); others need a reasoning model", async () => {
    const messages = [{ role: 'user' as const, content: 'Hello' }];
    const ask = { model: 'r1', messages, max_tokens: 12, temperature: 0 };
    const [zero, none] = (await Promise.all([
      client.chat.completions.create({ ...ask, thinking_token_budget: 0 } as never),
      client.chat.completions.create({ ...ask, reasoning_effort: 'none' }),
    ])) as OpenAI.ChatCompletion[];
    const answer = (r: OpenAI.ChatCompletion) => r.choices[0].message as unknown as Message;
    expect(answer(none)).toEqual(answer(zero));
    expect(answer(none).reasoning_content).toBeNull();
    expect(answer(none).content?.length).toBeGreaterThan(0);
    // The Responses API's reasoning.effort is the same; the response says what was asked.
    const input = { model: 'r1', input: 'Hello', max_output_tokens: 12, temperature: 0 };
    const quick = await client.responses.create({ ...input, reasoning: { effort: 'none' } });
    expect(quick.output.map((i) => i.type)).toEqual(['message']);
    expect(quick.output_text).toBe(answer(none).content);
    const thought = await client.responses.create({ ...input, reasoning: { effort: 'medium', summary: 'auto' } });
    expect(thought.output.map((i) => i.type)).toEqual(['reasoning', 'message']);
    expect(thought.reasoning).toEqual({ effort: 'medium', summary: 'auto' });
    // Another effort is the chat template's to use (this model has none): the same answer as without it.
    const medium = await client.chat.completions.create({ ...ask, reasoning_effort: 'medium' });
    const plain = await client.chat.completions.create(ask);
    expect(answer(medium)).toEqual(answer(plain));
    // A model that does not think takes "none" (nothing to turn off) and refuses the others, as OpenAI's do.
    const notThinking = { ...ask, model: 'plain' };
    expect((await client.chat.completions.create({ ...notThinking, reasoning_effort: 'none' })).choices[0].message.content).toEqual(expect.any(String));
    await expect(client.chat.completions.create({ ...notThinking, reasoning_effort: 'high' })).rejects.toMatchObject({
      status: 400,
      error: { message: 'reasoning_effort high needs a reasoning model (one with a reasoning_parser)', param: 'reasoning_effort' },
    });
    await expect(client.responses.create({ model: 'plain', input: 'Hi', reasoning: { effort: 'low' } })).rejects.toMatchObject({ status: 400 });
    await expect(client.chat.completions.create({ ...ask, reasoning_effort: 'extreme' } as never)).rejects.toMatchObject({ status: 400 });
    const beams = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ ...ask, reasoning_effort: 'none', use_beam_search: true, n: 2 }),
    });
    expect(beams.status).toBe(400);
  });

  it("give the Responses API a reasoning item before the message, whole and streamed (vLLM's reasoning_text)", async () => {
    const body = { model: 'r1', input: 'Hello', max_output_tokens: 12, temperature: 0 };
    const whole = await (await fetch(`${gw.url}/v1/responses`, { method: 'POST', body: JSON.stringify(body) })).json();
    const items = whole.output as { type: string; content: { type: string; text: string }[] }[];
    expect(items.map((i) => i.type)).toEqual(['reasoning', 'message']);
    expect(items[0].content[0]).toMatchObject({ type: 'reasoning_text', text: expect.any(String) });
    expect(items[0].content[0].text.length).toBeGreaterThan(0);
    const res = await fetch(`${gw.url}/v1/responses`, { method: 'POST', body: JSON.stringify({ ...body, stream: true }) });
    const events = (await res.text())
      .split('\n')
      .filter((l) => l.startsWith('data: '))
      .map((l) => JSON.parse(l.slice(6)));
    const deltas = events.filter((e) => e.type === 'response.reasoning_text.delta').map((e) => e.delta as string);
    expect(deltas.join('')).toBe(items[0].content[0].text);
    const added = events.filter((e) => e.type === 'response.output_item.added').map((e) => [e.output_index, e.item.type]);
    expect(added).toEqual([
      [0, 'reasoning'],
      [1, 'message'],
    ]);
    const done = events.at(-1);
    expect(done.response.output.map((i: { type: string }) => i.type)).toEqual(['reasoning', 'message']);
    expect(done.response.output[0].content).toEqual(items[0].content);

    // Thinking cut by max_output_tokens is an incomplete item, whole and streamed (both said completed).
    const cut = { ...body, max_output_tokens: 3 };
    const short = await (await fetch(`${gw.url}/v1/responses`, { method: 'POST', body: JSON.stringify(cut) })).json();
    expect(short.status).toBe('incomplete');
    expect(short.output[0]).toMatchObject({ type: 'reasoning', status: 'incomplete' });
    const shortStream = await fetch(`${gw.url}/v1/responses`, { method: 'POST', body: JSON.stringify({ ...cut, stream: true }) });
    const shortEvents = (await shortStream.text())
      .split('\n')
      .filter((l) => l.startsWith('data: '))
      .map((l) => JSON.parse(l.slice(6)));
    const itemDone = shortEvents.find((e) => e.type === 'response.output_item.done');
    expect([itemDone.item.type, itemDone.item.status]).toEqual(['reasoning', 'incomplete']);
    expect(shortEvents.at(-1).type).toBe('response.incomplete');
    expect(shortEvents.at(-1).response.output).toEqual(short.output.map((i: object) => ({ ...i, id: expect.any(String) })));
  });

  it('is refused on a model that does not generate, and by a name it does not know', async () => {
    await expect(startTestGateway({ models: { m: { path: `${MODELS}mlp.onnx`, device: 'cpu', reasoning_parser: 'deepseek_r1' } } })).rejects.toThrow(
      /models.m.reasoning_parser: the model is not generative/,
    );
    expect(() => parseConfig({ models: { m: { path: `${MODELS}mlp.onnx`, reasoning_parser: 'r2d2' } } })).toThrow(/reasoning_parser/);
  });
});
