import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deadlineExceeded } from '../src/errors/index.js';
import { anthropicError } from '../src/gateway/openai/anthropic.js';
import { MODELS, startTestGateway } from './helpers.js';

let gw: Awaited<ReturnType<typeof startTestGateway>>;
let client: Anthropic;
let openai: OpenAI;
beforeAll(async () => {
  gw = await startTestGateway({
    models: { 'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', batching: { max_batch_size: 8 }, scaling: { min_containers: 1 } } },
    endpoints: [{ path: '/claude', model: 'tiny-gpt', protocol: 'anthropic-messages', auth: 'public' }],
  } as never);
  client = new Anthropic({ baseURL: gw.url, apiKey: 'not-needed', maxRetries: 0 });
  openai = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'not-needed', maxRetries: 0 });
});
afterAll(() => gw?.shutdown());

// Greedy (temperature 0): Anthropic's API has no seed, and the same request must give the same text.
const greedy = { temperature: 0 };
const ask = { model: 'tiny-gpt', max_tokens: 16, temperature: 0, system: 'Be brief.', messages: [{ role: 'user' as const, content: 'Hello' }] };
const weather = {
  name: 'get_weather',
  description: 'The weather in a city',
  input_schema: { type: 'object' as const, properties: { unit: { enum: ['celsius', 'fahrenheit'] } }, required: ['unit'], additionalProperties: false },
};

describe("Anthropic's Messages API (POST /v1/messages) with the official @anthropic-ai/sdk client", () => {
  it('answers a text block with stop_reason and usage, the same text as the chat completion it amounts to', async () => {
    const m = await client.messages.create(ask);
    expect(m).toMatchObject({ type: 'message', role: 'assistant', model: 'tiny-gpt' });
    expect(m.id).toMatch(/^msg_/);
    expect(m.content).toHaveLength(1);
    expect(m.content[0].type).toBe('text');
    expect(['end_turn', 'max_tokens']).toContain(m.stop_reason);
    const chat = await openai.chat.completions.create({
      model: 'tiny-gpt',
      max_tokens: 16,
      temperature: 0,
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Hello' },
      ],
    });
    expect((m.content[0] as Anthropic.TextBlock).text).toBe(chat.choices[0].message.content);
    expect(m.usage.input_tokens).toBe(chat.usage?.prompt_tokens);
    expect(m.usage.output_tokens).toBe(chat.usage?.completion_tokens);
  });

  it("lists the models as Anthropic's SDK reads them (models.list, models.retrieve)", async () => {
    const listed = [];
    for await (const model of client.models.list()) listed.push(model);
    expect(listed).toContainEqual(expect.objectContaining({ type: 'model', id: 'tiny-gpt', display_name: 'tiny-gpt' }));
    expect(Number.isNaN(Date.parse(listed[0].created_at))).toBe(false);
    expect(await client.models.retrieve('tiny-gpt')).toMatchObject({ type: 'model', id: 'tiny-gpt' });
  });

  it('continues a final assistant message (a prefill), as Anthropic does: the answer is what follows it', async () => {
    const messages = [
      { role: 'user' as const, content: 'Hello' },
      { role: 'assistant' as const, content: 'Well, the' },
    ];
    const m = await client.messages.create({ ...ask, messages });
    const completion = await openai.completions.create({
      model: 'tiny-gpt',
      max_tokens: 16,
      temperature: 0,
      prompt: 'Be brief.\n\nUser: Hello\nAssistant: Well, the',
    });
    expect((m.content[0] as Anthropic.TextBlock).text).toBe(completion.choices[0].text);
    expect(m.usage.input_tokens).toBe(completion.usage?.prompt_tokens);
  });

  it('streams the typed events the client accumulates into the same message', async () => {
    const whole = await client.messages.create(ask);
    const stream = client.messages.stream(ask);
    const types: string[] = [];
    stream.on('streamEvent', (e) => types.push(e.type));
    const final = await stream.finalMessage();
    expect(final.content).toEqual(whole.content);
    expect(final.stop_reason).toBe(whole.stop_reason);
    expect(final.usage.output_tokens).toBe(whole.usage.output_tokens);
    expect(types[0]).toBe('message_start');
    expect(types.slice(-2)).toEqual(['message_delta', 'message_stop']);
    expect(types).toContain('content_block_delta');
  });

  it('ends at a stop sequence with stop_reason stop_sequence, naming it', async () => {
    const free = (await client.messages.create({ ...ask, max_tokens: 24 })).content[0] as Anthropic.TextBlock;
    const stop = free.text.slice(6, 9); // a piece of what the model writes
    const m = await client.messages.create({ ...ask, max_tokens: 24, stop_sequences: [stop] });
    expect(m.stop_reason).toBe('stop_sequence');
    expect(m.stop_sequence).toBe(stop);
    expect((m.content[0] as Anthropic.TextBlock).text).toBe(free.text.slice(0, free.text.indexOf(stop)));
  });

  it('calls a tool (tool_choice any): a tool_use block whose input follows input_schema, streamed the same', async () => {
    const request = {
      ...ask,
      max_tokens: 300, // the random model, greedy, pads the call with all the whitespace it may (bounded)
      tools: [weather],
      tool_choice: { type: 'any' as const, disable_parallel_tool_use: true },
      messages: [{ role: 'user' as const, content: 'Weather?' }],
    };
    const m = await client.messages.create(request);
    expect(m.stop_reason).toBe('tool_use');
    expect(m.content).toHaveLength(1);
    const use = m.content[0] as Anthropic.ToolUseBlock;
    expect(use).toMatchObject({ type: 'tool_use', name: 'get_weather' });
    expect(use.id).toMatch(/^toolu_/);
    expect(['celsius', 'fahrenheit']).toContain((use.input as { unit: string }).unit);
    const streamed = await client.messages.stream(request).finalMessage();
    expect(streamed.stop_reason).toBe('tool_use');
    // A stop sequence the call's JSON must hold cuts it: said so (stop_sequence), not tool_use of an empty input.
    const cut = await client.messages.create({ ...request, stop_sequences: ['unit'] });
    expect([cut.stop_reason, cut.stop_sequence]).toEqual(['stop_sequence', 'unit']);
    expect((streamed.content[0] as Anthropic.ToolUseBlock).input).toEqual(use.input); // input_json_delta pieces add up
    // The next turn: the call and its result go back as blocks.
    const next = await client.messages.create({
      ...ask,
      tools: [weather],
      messages: [
        { role: 'user', content: 'Weather?' },
        { role: 'assistant', content: [use] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: '21 degrees' }] },
      ],
    });
    const prompt = (u: Anthropic.Usage) => u.input_tokens + (u.cache_read_input_tokens ?? 0) + (u.cache_creation_input_tokens ?? 0);
    expect(prompt(next.usage)).toBeGreaterThan(prompt(m.usage)); // the call and its result are in the prompt
  });

  it('answers in the JSON of output_config.format (structured outputs), streamed the same; effort and adaptive thinking taken', async () => {
    const schema = { type: 'object', properties: { answer: { type: 'string', enum: ['yes', 'no'] } }, required: ['answer'], additionalProperties: false };
    // (the random model, greedy, pads the JSON with all the whitespace it may: room for it)
    const request = { ...ask, max_tokens: 300, output_config: { format: { type: 'json_schema' as const, schema }, effort: 'max' as const } };
    const m = await client.messages.create(request);
    expect(m.content).toHaveLength(1);
    expect(['yes', 'no']).toContain(JSON.parse((m.content[0] as Anthropic.TextBlock).text).answer);
    expect((await client.messages.stream(request).finalMessage()).content).toEqual(m.content);
    // Without the format: free text (the format shaped it).
    expect((await client.messages.create({ ...request, output_config: { effort: 'max' } })).content).not.toEqual(m.content);
    // Adaptive thinking on a model that does not think: no thinking block, no error.
    expect((await client.messages.create({ ...ask, thinking: { type: 'adaptive' } })).content.map((b) => b.type)).toEqual(['text']);
    const refused = await fetch(`${gw.url}/v1/messages`, { method: 'POST', body: JSON.stringify({ ...ask, output_config: { format: { type: 'xml' } } }) });
    expect(refused.status).toBe(400);
  });

  it("counts a request's input tokens (messages.countTokens) as usage will count them", async () => {
    const request = { model: 'tiny-gpt', system: 'Be brief.', messages: [{ role: 'user' as const, content: 'Weather?' }], tools: [weather] };
    const { input_tokens } = await client.messages.countTokens(request);
    const m = await client.messages.create({ ...request, max_tokens: 2, ...greedy });
    // The prompt is input_tokens and what the cache read (an earlier test asked the same): Anthropic's usage sums them.
    const again = await client.messages.create({ ...request, max_tokens: 2, ...greedy });
    for (const { usage } of [m, again]) expect(usage.input_tokens + (usage.cache_read_input_tokens ?? 0)).toBe(input_tokens);
    expect(again.usage.cache_read_input_tokens).toBeGreaterThan(0);
    expect(again.usage.input_tokens).toBe(input_tokens - (again.usage.cache_read_input_tokens ?? 0)); // (it counted them twice)
    // Streamed: message_delta carries the whole usage (message_start's could not know the cache's part).
    const streamed = await client.messages.stream({ ...request, max_tokens: 2, ...greedy }).finalMessage();
    expect(streamed.usage).toMatchObject({ input_tokens: again.usage.input_tokens, cache_read_input_tokens: again.usage.cache_read_input_tokens });
    expect(input_tokens).toBeGreaterThan((await client.messages.countTokens({ ...request, tools: undefined })).input_tokens); // tools are listed
  });

  it("answers bad requests with Anthropic's error object and a precise status", async () => {
    const status = async (body: object) => {
      const r = await fetch(`${gw.url}/v1/messages`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
      return { status: r.status, body: (await r.json()) as { type: string; error: { type: string; message: string } } };
    };
    const missing = await status({ model: 'tiny-gpt', messages: [{ role: 'user', content: 'x' }] });
    expect(missing).toMatchObject({ status: 400, body: { type: 'error', error: { type: 'invalid_request_error' } } });
    expect(missing.body.error.message).toContain('max_tokens');
    const image = await status({
      ...ask,
      messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AA' } }] }],
    });
    expect(image.status).toBe(400);
    expect(image.body.error.message).toMatch(/not images/);
    expect((await status({ ...ask, thinking: { type: 'enabled', budget_tokens: 8 } })).body.error.message).toMatch(
      /extended thinking needs a reasoning model: model tiny-gpt has no reasoning_parser/,
    );
    expect(await status({ ...ask, model: 'claude-nope' })).toMatchObject({ status: 404, body: { error: { type: 'not_found_error' } } });
    // Through the client: its typed error, and the request's id read from request-id (as on every answer).
    const err = await client.messages.create({ ...ask, max_tokens: 0 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.BadRequestError);
    expect((err as InstanceType<typeof Anthropic.BadRequestError>).requestID).toMatch(/^[\w-]{8,}$/);
    expect((err as { error: { request_id: string } }).error.request_id).toBe((err as InstanceType<typeof Anthropic.BadRequestError>).requestID);
    expect((await client.messages.create(ask).withResponse()).request_id).toMatch(/^[\w-]{8,}$/);
    // A request past its deadline (a 504) is Anthropic's timeout_error (it was api_error).
    expect(anthropicError(deadlineExceeded('waited 300 ms')).error.type).toBe('timeout_error');
    // A path under /v1/messages that is no route: Anthropic's error object too (it was a bare {"error": "..."}).
    const nowhere = await fetch(`${gw.url}/v1/messages/nowhere`);
    expect([nowhere.status, await nowhere.json()]).toMatchObject([404, { type: 'error', error: { type: 'not_found_error' } }]);
  });

  it('binds a path to a model (endpoints protocol anthropic-messages)', async () => {
    const r = await fetch(`${gw.url}/claude`, { method: 'POST', body: JSON.stringify({ ...ask, model: 'ignored' }) });
    expect(r.status).toBe(200);
    expect(await r.json()).toMatchObject({ type: 'message', model: 'tiny-gpt' });
  });
});
