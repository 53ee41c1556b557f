import { createParser } from 'eventsource-parser';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODELS, startTestGateway, WEATHER_PARAMETERS } from './helpers.js';

let gw: Awaited<ReturnType<typeof startTestGateway>>;
let client: OpenAI;
beforeAll(async () => {
  gw = await startTestGateway({
    models: { 'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', batching: { max_batch_size: 8 }, scaling: { min_containers: 1 } } },
    endpoints: [
      { path: '/assistant', model: 'tiny-gpt', protocol: 'openai-responses', auth: 'public' },
      { path: '/chat', model: 'tiny-gpt', protocol: 'openai-chat', auth: 'public' },
    ],
  } as never);
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'not-needed', maxRetries: 0 });
});
afterAll(() => gw?.shutdown());

/** Not in OpenAI's Responses types, served as in chat completions: the same seed, the same answer. */
const seeded = (seed: number) => ({ seed }) as object;

const weather = {
  type: 'function',
  name: 'get_weather',
  description: 'The weather in a city',
  parameters: WEATHER_PARAMETERS,
  strict: true,
} as const;

describe('Responses API (POST /v1/responses) with the official openai client', () => {
  it('answers text as a message output item, output_text and usage as the client reads them', async () => {
    const r = await client.responses.create({ model: 'tiny-gpt', instructions: 'Be brief.', input: 'Hello', max_output_tokens: 12, ...seeded(1) });
    expect(r.object).toBe('response');
    expect(r.id).toMatch(/^resp_/);
    expect(r.status).toBe('incomplete'); // a random model does not end by itself: max_output_tokens cut it
    expect(r.incomplete_details).toEqual({ reason: 'max_output_tokens' });
    expect(r.output).toHaveLength(1);
    const [message] = r.output as OpenAI.Responses.ResponseOutputMessage[];
    expect(message).toMatchObject({ type: 'message', role: 'assistant', status: 'incomplete' }); // cut, as the response
    expect(r.output_text.length).toBeGreaterThan(0);
    expect(r.output_text).toBe((message.content[0] as OpenAI.Responses.ResponseOutputText).text);
    expect(r.usage).toMatchObject({ output_tokens: 12, total_tokens: (r.usage?.input_tokens ?? 0) + 12 });
    // The same conversation as chat messages, the same seed: the same text (one set of rules underneath).
    const chat = await client.chat.completions.create({
      model: 'tiny-gpt',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Hello' },
      ],
      max_tokens: 12,
      seed: 1,
    });
    expect(r.output_text).toBe(chat.choices[0].message.content);
    expect(r.usage?.input_tokens).toBe(chat.usage?.prompt_tokens);
  });

  it('streams typed events the client accumulates into the same response as answered whole', async () => {
    const request = { model: 'tiny-gpt', input: [{ role: 'user' as const, content: 'Tell me' }], max_output_tokens: 16, ...seeded(2) };
    const whole = await client.responses.create(request);
    const stream = client.responses.stream(request);
    const types: string[] = [];
    const sequence: number[] = [];
    for await (const event of stream) {
      types.push(event.type);
      sequence.push(event.sequence_number);
    }
    const final = await stream.finalResponse();
    expect(final.output_text).toBe(whole.output_text);
    expect(final.status).toBe(whole.status);
    expect(types.slice(0, 4)).toEqual(['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added']);
    expect(types.filter((t) => t === 'response.output_text.delta').length).toBeGreaterThan(1);
    expect(types.slice(-4)).toEqual(['response.output_text.done', 'response.content_part.done', 'response.output_item.done', 'response.incomplete']);
    expect(sequence).toEqual(sequence.map((_, i) => i));
  });

  it('answers text.format json_schema with a document of the schema', async () => {
    const r = await client.responses.create({
      model: 'tiny-gpt',
      input: 'A person.',
      max_output_tokens: 200,
      text: {
        format: {
          type: 'json_schema',
          name: 'person',
          schema: {
            type: 'object',
            properties: { name: { type: 'string', maxLength: 8 }, age: { type: 'integer' } },
            required: ['name', 'age'],
            additionalProperties: false,
          },
        },
      },
      ...seeded(3),
    });
    expect(r.status).toBe('completed');
    const doc = JSON.parse(r.output_text);
    expect(Object.keys(doc)).toEqual(['name', 'age']);
    expect(Number.isInteger(doc.age)).toBe(true);
  });

  it('calls a function (tool_choice required), streamed or whole, and takes its output back as input', async () => {
    const request = {
      model: 'tiny-gpt',
      input: 'Weather in Paris?',
      tools: [weather],
      tool_choice: 'required' as const,
      parallel_tool_calls: false,
      ...seeded(4),
    };
    const whole = await client.responses.create(request);
    expect(whole.status).toBe('completed');
    const [call] = whole.output as OpenAI.Responses.ResponseFunctionToolCall[];
    expect(call).toMatchObject({ type: 'function_call', name: 'get_weather', status: 'completed' });
    expect(call.call_id).toMatch(/^call_/);
    const args = JSON.parse(call.arguments);
    expect(['celsius', 'fahrenheit']).toContain(args.unit);

    const stream = client.responses.stream(request);
    const argDeltas: string[] = [];
    stream.on('response.function_call_arguments.delta', (e) => argDeltas.push(e.delta));
    const final = await stream.finalResponse();
    const [streamed] = final.output as OpenAI.Responses.ResponseFunctionToolCall[];
    expect(streamed.arguments).toBe(call.arguments);
    expect(argDeltas.join('')).toBe(call.arguments);

    const next = await client.responses.create({
      model: 'tiny-gpt',
      input: [
        { role: 'user', content: 'Weather in Paris?' },
        { type: 'function_call', call_id: call.call_id, name: call.name, arguments: call.arguments },
        { type: 'function_call_output', call_id: call.call_id, output: '21 degrees' },
      ],
      max_output_tokens: 4,
    });
    expect(next.output_text.length).toBeGreaterThan(0);
    const bare = await client.responses.create({ model: 'tiny-gpt', input: 'Weather in Paris?', max_output_tokens: 1 });
    expect(next.usage?.input_tokens).toBeGreaterThan((bare.usage?.input_tokens ?? 0) + 20); // the call and its output are in the prompt
  });

  it('with tool_choice auto (the default) answers a message or function calls, streamed as whole', async () => {
    for (const extra of [{}, { logit_bias: { 58: 15, 685: 15 }, parallel_tool_calls: false }]) {
      const request = { model: 'tiny-gpt', input: 'Weather?', tools: [weather], max_output_tokens: 60, ...seeded(3), ...extra };
      const whole = await client.responses.create(request);
      const final = await client.responses.stream(request).finalResponse();
      // What was said (the client's stream helper adds its own `parsed` fields; ids differ per response).
      const said = (r: OpenAI.Responses.Response) =>
        r.output.map((o) =>
          o.type === 'message' ? [o.type, o.status, r.output_text] : o.type === 'function_call' ? [o.type, o.status, o.name, o.arguments] : [o.type],
        );
      expect(said(final)).toEqual(said(whole));
    }
    const words = await client.responses.create({ model: 'tiny-gpt', input: 'Weather?', tools: [weather], max_output_tokens: 60, ...seeded(3) });
    expect(words.output.map((o) => o.type)).toEqual(['message']);
    const calls = await client.responses.create({
      model: 'tiny-gpt',
      input: 'Weather?',
      tools: [weather],
      max_output_tokens: 60,
      ...seeded(3),
      logit_bias: { 58: 15, 685: 15 },
      parallel_tool_calls: false,
    } as never);
    expect(new Set((calls as OpenAI.Responses.Response).output.map((o) => o.type))).toEqual(new Set(['function_call']));
  });

  it("gives the answer's tokens' log-probabilities when asked (include, top_logprobs): chat's, whole and streamed", async () => {
    const request = { model: 'tiny-gpt', input: 'Hello', max_output_tokens: 8, ...seeded(4) };
    const asked = { ...request, include: ['message.output_text.logprobs' as const], top_logprobs: 2 };
    const r = await client.responses.create(asked);
    const text = (r.output[0] as OpenAI.Responses.ResponseOutputMessage).content[0] as OpenAI.Responses.ResponseOutputText;
    expect(text.logprobs).toHaveLength(8);
    expect(text.logprobs?.map((t) => t.token).join('')).toBe(r.output_text);
    expect(text.logprobs?.every((t) => t.top_logprobs.length === 2 && t.bytes.length > 0)).toBe(true);
    // The same as chat's for the same request.
    const hello = [{ role: 'user' as const, content: 'Hello' }];
    const chat = await client.chat.completions.create({ model: 'tiny-gpt', messages: hello, max_tokens: 8, seed: 4, logprobs: true, top_logprobs: 2 });
    expect(text.logprobs).toEqual(chat.choices[0].logprobs?.content);
    // Streamed: each delta's tokens, together the whole answer's.
    const deltas: OpenAI.Responses.ResponseTextDeltaEvent['logprobs'] = [];
    let done: OpenAI.Responses.ResponseTextDoneEvent | undefined;
    for await (const event of await client.responses.create({ ...asked, stream: true })) {
      if (event.type === 'response.output_text.delta') deltas.push(...event.logprobs);
      if (event.type === 'response.output_text.done') done = event;
    }
    expect(deltas).toEqual(text.logprobs);
    expect(done?.logprobs).toEqual(text.logprobs);
    // Not asked: none.
    const plain = await client.responses.create(request);
    expect(((plain.output[0] as OpenAI.Responses.ResponseOutputMessage).content[0] as OpenAI.Responses.ResponseOutputText).logprobs).toBeUndefined();
  });

  it.each([
    [{ input: [] }, 'input', ''],
    [{ input: 'x', text: { format: { type: 'xml' } } }, 'text.format.type', 'type must be'],
    [{ input: 'x', reasoning: { effort: 'high' } }, 'reasoning.effort', 'needs a reasoning model'],
    [{ input: 'x', reasoning: { effort: 'most' } }, 'reasoning.effort', ''],
    // OpenAI's stored prompts are not kept here: refused, not ignored.
    [{ input: 'x', prompt: { id: 'pmpt_1' } }, 'prompt', 'not supported'],
    [{ input: 'x', service_tier: 'cheap' }, 'service_tier', ''],
  ])('refuses %j with a 400 on its param', async (body, param, message) => {
    const res = await fetch(`${gw.url}/v1/responses`, { method: 'POST', body: JSON.stringify({ model: 'tiny-gpt', ...body }) });
    expect(res.status).toBe(400);
    const { error } = await res.json();
    expect(error.param).toBe(param);
    expect(error.message).toContain(message);
  });

  it('serves an endpoint bound to the model (protocol openai-responses): the body names no model', async () => {
    const post = (path: string, body: object) => fetch(`${gw.url}${path}`, { method: 'POST', body: JSON.stringify(body) });
    const r = await (await post('/assistant', { input: 'Hi', max_output_tokens: 3, service_tier: 'flex' })).json();
    expect(r).toMatchObject({ object: 'response', model: 'tiny-gpt', status: 'incomplete', usage: { output_tokens: 3 }, service_tier: 'flex' });
    const chat = await (await post('/chat', { messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3 })).json();
    expect(chat).toMatchObject({ object: 'chat.completion', model: 'tiny-gpt', usage: { completion_tokens: 3 } });
  });

  it('is a 404 for a model that is not generative', async () => {
    const res = await fetch(`${gw.url}/v1/responses`, { method: 'POST', body: JSON.stringify({ model: 'nope', input: 'x' }) });
    expect(res.status).toBe(404);
    expect((await res.json()).error.code).toBe('model_not_found');
  });
});

describe('kept responses (store: true) continued by previous_response_id, with the official openai client', () => {
  const ask = { model: 'tiny-gpt', max_output_tokens: 3, temperature: 0 };

  it('continues a kept response as if its conversation were sent again; retrieves and forgets it', async () => {
    const keptNow = async () => {
      const metrics = await (await fetch(`${gw.url}/metrics`)).text();
      const value = (name: string) => Number(metrics.match(new RegExp(`^${name} (\\d+)`, 'm'))?.[1] ?? 0);
      return { responses: value('infergate_responses_kept'), bytes: value('infergate_responses_kept_bytes') };
    };
    const before = await keptNow();
    const first = await client.responses.create({ ...ask, input: 'Hi', store: true });
    expect(first).toMatchObject({ store: true, previous_response_id: null });
    const next = await client.responses.create({ ...ask, input: 'And?', previous_response_id: first.id, store: true });
    expect(next.previous_response_id).toBe(first.id);
    // The same answer as the whole conversation sent as input items (the first answer's output among them).
    const sent = await client.responses.create({
      ...ask,
      input: [{ role: 'user', content: 'Hi' }, ...first.output, { role: 'user', content: 'And?' }] as never,
    });
    expect([next.output_text, next.usage?.input_tokens]).toEqual([sent.output_text, sent.usage?.input_tokens]);
    // A chain: the third turn carries both before it.
    const third = await client.responses.create({ ...ask, input: 'More', previous_response_id: next.id });
    const all = [{ role: 'user', content: 'Hi' }, ...first.output, { role: 'user', content: 'And?' }, ...next.output, { role: 'user', content: 'More' }];
    expect(third.usage?.input_tokens).toBe((await client.responses.create({ ...ask, input: all as never })).usage?.input_tokens);
    // /metrics counts what is kept (these two: the third was not asked to be).
    expect((await keptNow()).responses - before.responses).toBe(2);
    expect((await keptNow()).bytes).toBeGreaterThan(before.bytes);
    // Retrieved as it was answered; one not kept (no store: true) cannot be continued; deleted, gone.
    expect(await client.responses.retrieve(first.id)).toEqual(first);
    await expect(client.responses.create({ ...ask, input: 'x', previous_response_id: third.id })).rejects.toMatchObject({
      status: 404,
      error: { param: 'previous_response_id' },
    });
    expect((await fetch(`${gw.url}/v1/responses/${first.id}`, { method: 'DELETE' })).status).toBe(200);
    await expect(client.responses.retrieve(first.id)).rejects.toMatchObject({ status: 404 });
    await expect(client.responses.create({ ...ask, input: 'x', previous_response_id: first.id })).rejects.toMatchObject({ status: 404 });
  });

  it("lists a kept response's input items — its whole conversation — as the client pages through them", async () => {
    const first = await client.responses.create({ ...ask, instructions: 'Be brief.', input: 'Hi', store: true });
    const second = await client.responses.create({
      ...ask,
      input: [
        { role: 'user', content: [{ type: 'input_text', text: 'And' }] },
        { role: 'developer', content: 'then?' },
      ],
      previous_response_id: first.id,
      store: true,
    });
    const listed = async (id: string, query: OpenAI.Responses.InputItemListParams = {}) => {
      const items = [];
      for await (const item of client.responses.inputItems.list(id, query)) items.push(item); // (the client follows pages by `after`)
      return items;
    };
    const mine = await listed(first.id, { order: 'asc' });
    expect(mine).toEqual([
      { type: 'message', id: expect.stringMatching(/^msg_/), role: 'user', content: [{ type: 'input_text', text: 'Hi' }], status: 'completed' },
    ]);
    // The second's: the first's input, its answer, then its own two — the last first unless asked, the same ids throughout.
    const conversation = await listed(second.id, { order: 'asc', limit: 2 });
    expect(conversation.map((item) => item.id)).toEqual([mine[0].id, first.output[0].id, expect.stringMatching(/^msg_/), expect.stringMatching(/^msg_/)]);
    expect(conversation[1]).toEqual(first.output[0]);
    expect(conversation.slice(2)).toMatchObject([
      { role: 'user', content: [{ type: 'input_text', text: 'And' }] },
      { role: 'developer', content: [{ type: 'input_text', text: 'then?' }] },
    ]);
    expect(await listed(second.id)).toEqual([...conversation].reverse());
    const page = await (await fetch(`${gw.url}/v1/responses/${second.id}/input_items?limit=3`)).json();
    expect(page).toMatchObject({ object: 'list', has_more: true, first_id: conversation[3].id, last_id: conversation[1].id });
    expect(page.data).toHaveLength(3);
    // Listed as kept, continued the same: items sent back carry their ids.
    const again = await client.responses.create({ ...ask, input: conversation as never, store: true });
    expect((await listed(again.id, { order: 'asc' })).map((item) => item.id)).toEqual(conversation.map((item) => item.id));
    expect(again.usage?.input_tokens).toBe(second.usage?.input_tokens);
    // An `after` not among them, a response not kept: said.
    await expect(client.responses.inputItems.list(second.id, { after: 'msg_nope' })).rejects.toMatchObject({ status: 400, error: { param: 'after' } });
    const plain = await client.responses.create({ ...ask, input: 'Hi' });
    await expect(client.responses.inputItems.list(plain.id)).rejects.toMatchObject({ status: 404 });
  });

  it('with truncation: auto drops the earliest items of a conversation longer than the context, as few as need be', async () => {
    const context = (await (await fetch(`${gw.url}/v1/models`)).json()).data[0].max_model_len as number;
    const input = Array.from({ length: 12 }, (_, i) => ({ role: i % 2 ? ('assistant' as const) : ('user' as const), content: `${i}: ${'word '.repeat(120)}` }));
    const short = { ...ask, max_output_tokens: 8 };
    // Disabled (the default): the context's 400.
    await expect(client.responses.create({ ...short, input })).rejects.toMatchObject({
      status: 400,
      error: { code: 'context_length_exceeded', param: 'max_output_tokens' }, // (this API's name for it; it said max_tokens)
    });
    // Without max_output_tokens, an input that leaves no room is the input's fault.
    await expect(client.responses.create({ ...ask, max_output_tokens: undefined, input })).rejects.toMatchObject({
      status: 400,
      error: { code: 'context_length_exceeded', param: 'input' },
    });
    const r = await client.responses.create({ ...short, input, truncation: 'auto', store: true });
    expect(r.truncation).toBe('auto');
    expect((r.usage?.input_tokens as number) + 8).toBeLessThanOrEqual(context);
    // It answered the last k items as if sent alone; one more would not have fitted.
    const k = (await client.responses.inputItems.list(r.id, { limit: 100 })).data.length;
    expect(k).toBeGreaterThan(1);
    expect(k).toBeLessThan(12);
    const alone = await client.responses.create({ ...short, input: input.slice(12 - k) });
    expect([r.output_text, r.usage?.input_tokens]).toEqual([alone.output_text, alone.usage?.input_tokens]);
    await expect(client.responses.create({ ...short, input: input.slice(12 - k - 1) })).rejects.toMatchObject({ status: 400 });
    // Continued: the chain is truncated again, as it grows.
    const next = await client.responses.create({ ...short, input: input.slice(0, 4), previous_response_id: r.id, truncation: 'auto' });
    expect((next.usage?.input_tokens as number) + 8).toBeLessThanOrEqual(context);
    // The newest item alone too long: still the 400.
    await expect(client.responses.create({ ...short, input: 'word '.repeat(2000), truncation: 'auto' })).rejects.toMatchObject({ status: 400 });
  });

  it('keeps a streamed response and a background one to be continued too', async () => {
    const stream = await client.responses.create({ ...ask, input: 'Hi', store: true, stream: true });
    let id = '';
    for await (const event of stream) if (event.type === 'response.completed' || event.type === 'response.incomplete') id = event.response.id;
    expect((await client.responses.create({ ...ask, input: 'And?', previous_response_id: id })).previous_response_id).toBe(id);
    const queued = await client.responses.create({ ...ask, input: 'Hi', background: true });
    for (let i = 0; i < 200 && ['queued', 'in_progress'].includes((await client.responses.retrieve(queued.id)).status as string); i++)
      await new Promise((resolve) => setTimeout(resolve, 50));
    const continued = await client.responses.create({ ...ask, input: 'And?', previous_response_id: queued.id });
    expect(continued.usage?.input_tokens).toBeGreaterThan((await client.responses.retrieve(queued.id)).usage?.input_tokens as number);
    // …and continued in the background too: the same conversation.
    const later = await client.responses.create({ ...ask, input: 'And?', previous_response_id: queued.id, background: true });
    expect(later.previous_response_id).toBe(queued.id);
    let done = await client.responses.retrieve(later.id);
    for (let i = 0; i < 200 && ['queued', 'in_progress'].includes(done.status as string); i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      done = await client.responses.retrieve(later.id);
    }
    expect([done.output_text, done.usage?.input_tokens]).toEqual([continued.output_text, continued.usage?.input_tokens]);
  });
});

describe('background responses (OpenAI’s background mode) with the official openai client', () => {
  const until = async (id: string, done: (r: OpenAI.Responses.Response) => boolean) => {
    for (let i = 0; i < 200; i++) {
      const r = await client.responses.retrieve(id);
      if (done(r)) return r;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`response ${id} did not end`);
  };

  it('answers at once, queued, then is retrieved by id with the answer the request would have had', async () => {
    const queued = await client.responses.create({ model: 'tiny-gpt', input: 'Hello', max_output_tokens: 12, background: true, ...seeded(3) });
    expect(queued).toMatchObject({ object: 'response', status: 'queued', background: true, store: true, output: [] });
    expect(queued.id).toMatch(/^resp_/);
    // Its input items, while it runs and once it has ended: the same.
    const items = async () => (await client.responses.inputItems.list(queued.id)).data;
    const running = await items();
    expect(running).toMatchObject([{ type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Hello' }] }]);
    const done = await until(queued.id, (r) => r.status !== 'queued' && r.status !== 'in_progress');
    expect(await items()).toEqual(running);
    const next = await client.responses.create({ model: 'tiny-gpt', input: 'On', max_output_tokens: 2, previous_response_id: queued.id, store: true });
    expect((await client.responses.inputItems.list(next.id, { order: 'asc' })).data[0]).toEqual(running[0]); // (the kept conversation's ids too)
    expect(done).toMatchObject({ id: queued.id, status: 'incomplete', background: true, model: 'tiny-gpt' });
    const direct = await client.responses.create({ model: 'tiny-gpt', input: 'Hello', max_output_tokens: 12, ...seeded(3) });
    expect(done.output_text).toBe(direct.output_text);
    expect(done.usage?.output_tokens).toBe(12);
    // Deleted: gone.
    expect((await fetch(`${gw.url}/v1/responses/${queued.id}`, { method: 'DELETE' })).status).toBe(200);
    await expect(client.responses.retrieve(queued.id)).rejects.toMatchObject({ status: 404 });
  });

  it('says queued while it waits its turn (here its replica starting), in progress once its first token came', async () => {
    // Scaled to zero: the request waits for a replica (a process, a session) — hundreds of milliseconds.
    const cold = await startTestGateway({ models: { 'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu' } } });
    try {
      const coldClient = new OpenAI({ baseURL: `${cold.url}/v1`, apiKey: 'unused', maxRetries: 0 });
      const made = await coldClient.responses.create({ model: 'tiny-gpt', input: 'Tell a long story', max_output_tokens: 200, background: true });
      expect((await coldClient.responses.retrieve(made.id)).status).toBe('queued');
      const seen: string[] = [];
      for (let status = 'queued'; status === 'queued' || status === 'in_progress'; await new Promise((resolve) => setTimeout(resolve, 5))) {
        status = (await coldClient.responses.retrieve(made.id)).status as string;
        seen.push(status);
      }
      // Never queued again once in progress; ended whole (its 200 tokens).
      const phases = ['queued', 'in_progress', 'incomplete'];
      expect(seen.map((s) => phases.indexOf(s))).toEqual(seen.map((s) => phases.indexOf(s)).sort());
      expect(seen.at(-1)).toBe('incomplete');
    } finally {
      await cold.shutdown();
    }
  });

  it('is cancelled while it runs, and says so; an endpoint of the Responses API takes background too', async () => {
    const shedCancelled = async () => (await (await fetch(`${gw.url}/v2/models/tiny-gpt/stats`)).json()).shed.cancelled as number;
    const before = await shedCancelled();
    const long = await client.responses.create({ model: 'tiny-gpt', input: 'Tell a long story', max_output_tokens: 400, background: true });
    const cancelled = await client.responses.cancel(long.id);
    expect(cancelled).toMatchObject({ id: long.id, status: 'cancelled' });
    expect((await client.responses.retrieve(long.id)).status).toBe('cancelled');
    // Its generation was stopped, not left to run its 400 tokens.
    await expect.poll(shedCancelled).toBe(before + 1);
    // Through the /assistant endpoint (bound to tiny-gpt): retrieved on the built-in route.
    const res = await fetch(`${gw.url}/assistant`, { method: 'POST', body: JSON.stringify({ input: 'Hi', max_output_tokens: 4, background: true }) });
    const { id } = await res.json();
    expect((await until(id, (r) => r.status === 'incomplete')).usage?.output_tokens).toBe(4);
    // One continuing a response not kept: a 404 at once, not a response queued to fail.
    await expect(client.responses.create({ model: 'tiny-gpt', input: 'Hi', previous_response_id: 'resp_nope', background: true })).rejects.toMatchObject({
      status: 404,
      error: { param: 'previous_response_id' },
    });
    // A response not in the background (nor store: true) is not kept.
    const plain = await client.responses.create({ model: 'tiny-gpt', input: 'Hi', max_output_tokens: 2 });
    await expect(client.responses.retrieve(plain.id)).rejects.toMatchObject({ status: 404 });
    // One kept but not in the background is not cancelled: a 400 saying why (it was a 404, as if it did not exist).
    const kept = await client.responses.create({ model: 'tiny-gpt', input: 'Hi', max_output_tokens: 2, store: true });
    await expect(client.responses.cancel(kept.id)).rejects.toMatchObject({ status: 400, message: /only background responses can be cancelled/ });
  });

  /** A stream's events, read to its end (or `stopAfter` of them, the connection then dropped). */
  const eventsOf = async (stream: AsyncIterable<OpenAI.Responses.ResponseStreamEvent> & { controller: AbortController }, stopAfter = Infinity) => {
    const events: OpenAI.Responses.ResponseStreamEvent[] = [];
    for await (const event of stream) {
      events.push(event);
      if (events.length === stopAfter) break; // (the client's for-await ends: its connection is closed)
    }
    return events;
  };
  const deltas = (events: OpenAI.Responses.ResponseStreamEvent[]) => events.flatMap((e) => (e.type === 'response.output_text.delta' ? [e.delta] : [])).join('');

  it('streams in the background: the connection dropped, the response goes on, and its events are sent again after the last one had', async () => {
    const ask = { model: 'tiny-gpt', input: 'Tell me', max_output_tokens: 40, ...seeded(7) };
    const direct = await client.responses.create(ask);
    // Followed to the end: the same answer as in the foreground, its events numbered from 0.
    const whole = await eventsOf(await client.responses.create({ ...ask, background: true, stream: true }));
    expect(whole.map((e) => e.sequence_number)).toEqual(whole.map((_, i) => i));
    // Created queued, as OpenAI's background responses are, then in progress.
    expect(whole.slice(0, 3).map((e) => [e.type, (e as OpenAI.Responses.ResponseCreatedEvent).response.status])).toEqual([
      ['response.created', 'queued'],
      ['response.queued', 'queued'],
      ['response.in_progress', 'in_progress'],
    ]);
    const end = whole.at(-1) as OpenAI.Responses.ResponseIncompleteEvent;
    expect(end).toMatchObject({ type: 'response.incomplete', response: { background: true, store: true, usage: { output_tokens: 40 } } });
    expect(end.response.output).toEqual(direct.output.map((item) => ({ ...item, id: expect.any(String) })));
    expect(deltas(whole)).toBe(direct.output_text);
    // Sent again after the 10th: the rest, the same events.
    const again = await eventsOf(await client.responses.retrieve(end.response.id, { stream: true, starting_after: 9 }));
    expect(again).toEqual(whole.slice(10));
    // As a browser's EventSource reconnects: each event's id is its sequence number, Last-Event-ID says where it was.
    const sse = await fetch(`${gw.url}/v1/responses/${end.response.id}?stream=true`, { headers: { 'last-event-id': '9' } });
    const parsed: { id?: string; data: string }[] = [];
    const parser = createParser({ onEvent: (e) => parsed.push({ id: e.id, data: e.data }) });
    parser.feed(await sse.text());
    expect(parsed.map((e) => Number(e.id))).toEqual(whole.slice(10).map((e) => e.sequence_number));
    expect(parsed.map((e) => JSON.parse(e.data))).toEqual(whole.slice(10));
    // A connection dropped after 6 events: the response runs to its end, and the rest come after the 6th.
    const first = await eventsOf(await client.responses.create({ ...ask, background: true, stream: true }), 6);
    const id = (first[0] as OpenAI.Responses.ResponseCreatedEvent).response.id;
    const rest = await eventsOf(await client.responses.retrieve(id, { stream: true, starting_after: first[5].sequence_number }));
    expect(deltas([...first, ...rest])).toBe(direct.output_text);
    expect(rest.at(-1)).toMatchObject({ type: 'response.incomplete', sequence_number: first.length + rest.length - 1 });
    expect((await client.responses.retrieve(id)).output_text).toBe(direct.output_text);
    // Continued like any kept response.
    const next = await client.responses.create({ ...ask, input: 'And?', previous_response_id: id });
    expect(next.usage?.input_tokens).toBeGreaterThan(direct.usage?.input_tokens as number);
  });

  it("a streamed background response's followers end when it is cancelled; only streamed ones are streamed again", async () => {
    const long = await eventsOf(
      await client.responses.create({ model: 'tiny-gpt', input: 'Tell a long story', max_output_tokens: 400, background: true, stream: true }),
      3,
    );
    const id = (long[0] as OpenAI.Responses.ResponseCreatedEvent).response.id;
    const following = eventsOf(await client.responses.retrieve(id, { stream: true }));
    await client.responses.cancel(id);
    const followed = await following; // (ends: the response stopped)
    expect(followed.length).toBeLessThan(400);
    expect(followed.some((e) => e.type === 'response.completed' || e.type === 'response.incomplete')).toBe(false);
    expect((await client.responses.retrieve(id)).status).toBe('cancelled');
    // Not streamed in the background: nothing to send again — a 400 naming stream.
    const quiet = await client.responses.create({ model: 'tiny-gpt', input: 'Hi', max_output_tokens: 2, background: true });
    const kept = await client.responses.create({ model: 'tiny-gpt', input: 'Hi', max_output_tokens: 2, store: true });
    for (const it of [quiet.id, kept.id])
      await expect(client.responses.retrieve(it, { stream: true })).rejects.toMatchObject({ status: 400, error: { param: 'stream' } });
    // Refused before its first event: that status, at once.
    await expect(
      client.responses.create({ model: 'tiny-gpt', input: 'Hi', max_output_tokens: 10_000_000, background: true, stream: true }),
    ).rejects.toMatchObject({ status: 400 });
  });
});
