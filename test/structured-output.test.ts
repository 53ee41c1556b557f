import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODELS, startTestGateway, WEATHER_PARAMETERS } from './helpers.js';

// tiny-gpt has random weights: what it writes unconstrained is never JSON. Whatever JSON comes back is the
// response format's doing (the replica masks every token that would break the document).

let gw: Awaited<ReturnType<typeof startTestGateway>>;
let client: OpenAI;
beforeAll(async () => {
  gw = await startTestGateway({
    models: { 'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', batching: { max_batch_size: 16 }, scaling: { min_containers: 1 } } },
  });
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'not-needed', maxRetries: 0 });
});
afterAll(() => gw?.shutdown());

/** A bounded document (strings capped, every property required): it must end well within 200 tokens. */
const PERSON = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 10 },
    age: { type: 'integer' },
    mood: { enum: ['happy', 'sad', null] },
    tags: { type: 'array', items: { type: 'boolean' }, maxItems: 3 },
  },
  required: ['name', 'age', 'mood', 'tags'],
  additionalProperties: false,
};
/** Completions take response_format as vLLM does (OpenAI's client types know it only for chat). */
const jsonObject = { response_format: { type: 'json_object' } } as object;
const person = { type: 'json_schema', json_schema: { name: 'person', schema: PERSON, strict: true } } as const;

function expectPerson(text: string) {
  const doc = JSON.parse(text);
  expect(Object.keys(doc)).toEqual(['name', 'age', 'mood', 'tags']);
  expect(typeof doc.name === 'string' && [...doc.name].length <= 10).toBe(true);
  expect(Number.isInteger(doc.age)).toBe(true);
  expect(['happy', 'sad', null]).toContain(doc.mood);
  expect(doc.tags.length).toBeLessThanOrEqual(3);
  for (const tag of doc.tags) expect(typeof tag).toBe('boolean');
}

describe('structured output (response_format)', () => {
  it('answers chat with a document of the JSON schema, ending it with finish_reason stop', async () => {
    const answers = await Promise.all(
      [1, 2, 3, 4, 5, 6].map((seed) =>
        client.chat.completions.create({
          model: 'tiny-gpt',
          messages: [{ role: 'user', content: 'Describe a person as JSON.' }],
          max_tokens: 200,
          seed,
          response_format: person,
        }),
      ),
    );
    for (const answer of answers) {
      const { message, finish_reason } = answer.choices[0];
      expect(finish_reason).toBe('stop');
      expectPerson(message.content as string);
    }
    expect(new Set(answers.map((a) => a.choices[0].message.content)).size).toBeGreaterThan(1); // still sampled
  });

  it('streams a json_object completion whose pieces join into a JSON object', async () => {
    for (const seed of [7, 8, 9]) {
      const stream = await client.completions.create({
        model: 'tiny-gpt',
        prompt: 'JSON:',
        max_tokens: 200,
        seed,
        stream: true,
        // A random model left alone writes one endless string; favouring `"` and `}` (the mask still decides
        // where they may go) gets documents that end.
        logit_bias: { 1: 6, 92: 6 },
        ...jsonObject,
      });
      let text = '';
      let finish: string | null = null;
      for await (const chunk of stream) {
        text += chunk.choices[0]?.text ?? '';
        finish = chunk.choices[0]?.finish_reason ?? finish;
      }
      expect(finish).toBe('stop');
      const doc = JSON.parse(text);
      expect(typeof doc === 'object' && doc !== null && !Array.isArray(doc)).toBe(true);
    }
  });

  it("holds integers to their minimum and maximum (a tool's parameters as Pydantic writes ge / le)", async () => {
    const bounded = {
      type: 'object',
      properties: { limit: { type: 'integer', minimum: 1, maximum: 50 }, offset: { type: 'integer', minimum: -20, exclusiveMaximum: 0 } },
      required: ['limit', 'offset'],
      additionalProperties: false,
    };
    let whole = 0;
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      const answer = await client.completions.create({
        model: 'tiny-gpt',
        prompt: 'Page:',
        max_tokens: 40,
        seed,
        logit_bias: { 11: 4, 92: 6 }, // `,` and `}`: documents that end (the mask decides where they may go)
        response_format: { type: 'json_schema', json_schema: { name: 'page', schema: bounded } },
      } as never);
      const text = answer.choices[0].text;
      if (answer.choices[0].finish_reason !== 'stop') continue;
      whole++;
      const { limit, offset } = JSON.parse(text);
      expect(Number.isInteger(limit) && limit >= 1 && limit <= 50, text).toBe(true);
      expect(Number.isInteger(offset) && offset >= -20 && offset < 0, text).toBe(true);
    }
    expect(whole).toBeGreaterThan(2);
  });

  it('cuts a document at max_tokens with finish_reason length', async () => {
    const answer = await client.completions.create({ model: 'tiny-gpt', prompt: 'JSON:', max_tokens: 8, seed: 3, ...jsonObject });
    expect(answer.choices[0].finish_reason).toBe('length');
    expect(answer.choices[0].text.trimStart().startsWith('{')).toBe(true);
    expect(() => JSON.parse(answer.choices[0].text)).toThrow();
  });

  it('gives each of n choices its own document', async () => {
    const answer = await client.chat.completions.create({
      model: 'tiny-gpt',
      messages: [{ role: 'user', content: 'Two people.' }],
      max_tokens: 200,
      n: 3,
      seed: 11,
      response_format: person,
    });
    expect(answer.choices).toHaveLength(3);
    for (const choice of answer.choices) expectPerson(choice.message.content as string);
  });

  it("takes vLLM's spellings: guided_choice answers exactly one of the choices, guided_json as json_schema", async () => {
    const choices = ['positive', 'negative', 'neutral', 'pos'];
    const texts = new Set<string>();
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      const answer = await client.completions.create({
        model: 'tiny-gpt',
        prompt: 'Sentiment:',
        max_tokens: 10,
        seed,
        ...({ guided_choice: choices } as object),
      });
      expect(choices).toContain(answer.choices[0].text);
      expect(answer.choices[0].finish_reason).toBe('stop');
      texts.add(answer.choices[0].text);
    }
    expect(texts.size).toBeGreaterThan(1);
    const ask = (extra: object) =>
      client.chat.completions.create({ model: 'tiny-gpt', messages: [{ role: 'user', content: 'Who?' }], max_tokens: 200, seed: 4, ...extra });
    const [guided, newer, openai] = await Promise.all([
      ask({ guided_json: PERSON }),
      ask({ structured_outputs: { json: JSON.stringify(PERSON) } }),
      ask({ response_format: person }),
    ]);
    expectPerson(guided.choices[0].message.content as string);
    expect(guided.choices[0].message.content).toBe(openai.choices[0].message.content);
    expect(newer.choices[0].message.content).toBe(openai.choices[0].message.content);
  });

  it('writes strings matching their pattern or format, and whole texts matching guided_regex', async () => {
    const contact = {
      type: 'object',
      properties: {
        id: { type: 'string', format: 'uuid' },
        email: { type: 'string', format: 'email', maxLength: 40 },
        code: { type: 'string', pattern: '^[A-Z]{3}-[0-9]{4}$' },
      },
      required: ['id', 'email', 'code'],
      additionalProperties: false,
    };
    for (const seed of [1, 2, 3]) {
      const answer = await client.chat.completions.create({
        model: 'tiny-gpt',
        messages: [{ role: 'user', content: 'A contact.' }],
        max_tokens: 200,
        seed,
        response_format: { type: 'json_schema', json_schema: { name: 'contact', schema: contact } },
      });
      expect(answer.choices[0].finish_reason).toBe('stop');
      const doc = JSON.parse(answer.choices[0].message.content as string);
      expect(doc.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      expect(doc.email).toMatch(/^[^@]+@[^@]+\.[^@]+$/);
      expect(doc.code).toMatch(/^[A-Z]{3}-[0-9]{4}$/);
    }
    // A context-free grammar (GBNF): nested lists, which no regular expression can hold.
    const lists = 'root ::= list\nlist ::= "[" (item ("," item)*)? "]"\nitem ::= [a-c] | list';
    for (const seed of [1, 2, 3]) {
      const answer = await client.completions.create({ model: 'tiny-gpt', prompt: 'Lists:', max_tokens: 40, seed, ...({ guided_grammar: lists } as object) });
      if (answer.choices[0].finish_reason === 'stop') {
        const text = answer.choices[0].text;
        expect(text).toMatch(/^\[[[\],a-c]*\]$/);
        expect(JSON.parse(text.replace(/[a-c]/g, '"$&"'))).toBeInstanceOf(Array); // brackets balanced
      } else expect(answer.choices[0].text.startsWith('[')).toBe(true);
    }
    const regex = '(yes|no), [0-9]{1,2} (cats|dogs)';
    for (const seed of [4, 5]) {
      const answer = await client.completions.create({ model: 'tiny-gpt', prompt: 'Pets?', max_tokens: 20, seed, ...({ guided_regex: regex } as object) });
      expect(answer.choices[0].text).toMatch(new RegExp(`^${regex}$`));
      expect(answer.choices[0].finish_reason).toBe('stop');
    }
  });

  it.each([
    [{ guided_json: { type: 'object' }, guided_choice: ['a'] }, 'guided_choice', 'guided_json and guided_choice: only one format may be asked for'],
    [{ guided_grammar: 'expr ::= expr "+" "1"' }, 'guided_grammar', 'guided_grammar.grammar: rule expr is left-recursive'],
    [{ guided_regex: '(a)\\1' }, 'guided_regex', 'backreferences'],
    [{ guided_json: '{not json' }, 'guided_json', 'not a JSON Schema'],
    [{ guided_choice: [] }, 'guided_choice', ''],
  ])('refuses %j on completions with a 400 on its param', async (extra, param, message) => {
    const res = await fetch(`${gw.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny-gpt', prompt: 'x', ...extra }),
    });
    expect(res.status).toBe(400);
    const { error } = await res.json();
    expect(error.param).toBe(param);
    expect(error.message).toContain(message);
  });

  it.each([
    [
      { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'number', minimum: 0.5 } } },
      'response_format.json_schema.schema.minimum: on a number, only whole-number bounds are supported',
    ],
    [
      { type: 'json_schema', json_schema: { schema: { type: 'object', properties: { a: { type: 'string', format: 'iri' } } } } },
      'schema.properties.a.format: "iri" is not supported',
    ],
    [{ type: 'json_schema', json_schema: { schema: { $ref: '#/$defs/missing' } } }, '$ref'],
    [{ type: 'yaml' }, 'response_format.type: type must be "text", "json_object" or "json_schema"'],
    [{ type: 'json_schema' }, 'response_format.json_schema'],
  ])('refuses %j with a 400 naming what is wrong', async (format, message) => {
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny-gpt', messages: [{ role: 'user', content: 'hi' }], response_format: format }),
    });
    expect(res.status).toBe(400);
    const { error } = await res.json();
    expect(error.message).toContain(message);
    expect(error.param).toMatch(/^response_format/);
  });

  it('refuses ignore_eos with a JSON format (the document ends with end-of-text), and keeps serving', async () => {
    const refused = client.completions.create({ model: 'tiny-gpt', prompt: 'x', response_format: { type: 'json_object' }, ignore_eos: true } as never);
    await expect(refused).rejects.toMatchObject({ status: 400, param: 'ignore_eos' });
    const fine = await client.completions.create({ model: 'tiny-gpt', prompt: 'x', max_tokens: 4 });
    expect(fine.choices[0].text.length).toBeGreaterThan(0);
  });
});

const weather = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'The weather in a city',
    parameters: WEATHER_PARAMETERS,
  },
} as const;
const time = { type: 'function', function: { name: 'get_time' } } as const; // no parameters: {}
const ask = [{ role: 'user', content: 'Weather in Paris?' }] as const;

function expectWeatherArguments(args: string) {
  const parsed = JSON.parse(args);
  expect(Object.keys(parsed)).toEqual(['city', 'unit']);
  expect([...parsed.city].length).toBeLessThanOrEqual(12);
  expect(['celsius', 'fahrenheit']).toContain(parsed.unit);
}

describe('tool calling (tool_choice required or named: the calls are enforced JSON)', () => {
  it('calls the named function with arguments of its parameters schema', async () => {
    const answer = await client.chat.completions.create({
      model: 'tiny-gpt',
      messages: [...ask],
      tools: [weather, time],
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
      max_tokens: 100,
      seed: 5,
    });
    const { message, finish_reason } = answer.choices[0];
    expect(finish_reason).toBe('tool_calls');
    expect(message.content).toBeNull();
    expect(message.tool_calls).toHaveLength(1);
    const call = message.tool_calls?.[0] as OpenAI.ChatCompletionMessageFunctionToolCall;
    expect(call.id).toMatch(/^call_/);
    expect(call.function.name).toBe('get_weather');
    expectWeatherArguments(call.function.arguments);
  });

  it('cut by a stop sequence (inside its enforced JSON) is not a whole call: finish_reason stop, not tool_calls, whole and streamed', async () => {
    const body: OpenAI.ChatCompletionCreateParamsNonStreaming = {
      model: 'tiny-gpt',
      messages: [...ask],
      tools: [weather],
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
      max_tokens: 100,
      seed: 5,
      stop: ['city'], // the arguments must name it
    };
    const answer = await client.chat.completions.create(body);
    expect(answer.choices[0]).toMatchObject({ finish_reason: 'stop', stop_reason: 'city' });
    let finish: string | null = null;
    for await (const chunk of await client.chat.completions.create({ ...body, stream: true })) finish = chunk.choices[0]?.finish_reason ?? finish;
    expect(finish).toBe('stop');
  });

  it('with "required" and parallel_tool_calls false, makes exactly one call of one of the tools', async () => {
    const names = new Set<string>();
    for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
      const answer = await client.chat.completions.create({
        model: 'tiny-gpt',
        messages: [...ask],
        tools: [weather, time],
        tool_choice: 'required',
        parallel_tool_calls: false,
        max_tokens: 100,
        seed,
      });
      const calls = answer.choices[0].message.tool_calls as OpenAI.ChatCompletionMessageFunctionToolCall[];
      expect(answer.choices[0].finish_reason).toBe('tool_calls');
      expect(calls).toHaveLength(1);
      names.add(calls[0].function.name);
      if (calls[0].function.name === 'get_weather') expectWeatherArguments(calls[0].function.arguments);
      else expect(JSON.parse(calls[0].function.arguments)).toEqual({});
    }
    expect(names.size).toBe(2); // both tools get called: the choice is the model's
  });

  it('streams the same calls as it answers whole (tool_calls deltas by index, arguments in pieces)', async () => {
    const request: OpenAI.ChatCompletionCreateParamsNonStreaming = {
      model: 'tiny-gpt',
      messages: [...ask],
      tools: [weather, time],
      tool_choice: 'required',
      max_tokens: 120,
      seed: 9,
    };
    const whole = await client.chat.completions.create(request);
    const stream = await client.chat.completions.create({ ...request, stream: true });
    const calls: { id?: string; name?: string; arguments: string }[] = [];
    let pieces = 0;
    let finish: string | null = null;
    for await (const chunk of stream) {
      for (const d of chunk.choices[0]?.delta.tool_calls ?? []) {
        calls[d.index] ??= { arguments: '' };
        if (d.id) Object.assign(calls[d.index], { id: d.id, name: d.function?.name });
        calls[d.index].arguments += d.function?.arguments ?? '';
        pieces++;
      }
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    const expected = whole.choices[0].message.tool_calls as OpenAI.ChatCompletionMessageFunctionToolCall[];
    expect(finish).toBe(whole.choices[0].finish_reason);
    expect(calls.map((c) => [c.name, c.arguments])).toEqual(expected.map((c) => [c.function.name, c.function.arguments]));
    expect(pieces).toBeGreaterThan(calls.length); // arguments came in more than one piece
  });

  it('with tool_choice "auto" (the default with tools) answers in words or in calls, the model choosing by its first token', async () => {
    const ask = (extra: object) =>
      client.chat.completions.create({
        model: 'tiny-gpt',
        messages: [{ role: 'user', content: 'Weather in Paris?' }],
        tools: [weather],
        max_tokens: 60,
        seed: 3,
        ...extra,
      });
    const words = await ask({});
    expect(words.choices[0].message.tool_calls ?? []).toEqual([]);
    expect(words.choices[0].message.content?.trimStart().startsWith('[')).toBe(false);
    expect(words.choices[0].finish_reason).not.toBe('tool_calls');
    // Favouring `[` (ids 58, 685) makes the model choose a call; the grammar then holds it to the tool's schema.
    const favour = { logit_bias: { 58: 15, 685: 15 }, parallel_tool_calls: false };
    const called = await ask(favour);
    expect(called.choices[0].message.content).toBeNull();
    expect(called.choices[0].finish_reason).toBe('tool_calls');
    const calls = called.choices[0].message.tool_calls as OpenAI.ChatCompletionMessageFunctionToolCall[];
    expect(calls.length).toBeGreaterThan(0);
    for (const call of calls) expectWeatherArguments(call.function.arguments);
    // Streamed, both kinds come out the same.
    for (const [whole, extra] of [
      [words, {}],
      [called, favour],
    ] as const) {
      const stream = await client.chat.completions.create({
        model: 'tiny-gpt',
        messages: [{ role: 'user', content: 'Weather in Paris?' }],
        tools: [weather],
        max_tokens: 60,
        seed: 3,
        stream: true,
        ...extra,
      });
      let content = '';
      const args: string[] = [];
      for await (const chunk of stream) {
        content += chunk.choices[0]?.delta.content ?? '';
        for (const d of chunk.choices[0]?.delta.tool_calls ?? []) args[d.index] = (args[d.index] ?? '') + (d.function?.arguments ?? '');
      }
      expect(content).toBe(whole.choices[0].message.content ?? '');
      expect(args).toEqual((whole.choices[0].message.tool_calls ?? []).map((c) => (c as OpenAI.ChatCompletionMessageFunctionToolCall).function.arguments));
    }
  });

  it("takes an earlier turn's tool calls and the tool's answer in the conversation", async () => {
    const answer = await client.chat.completions.create({
      model: 'tiny-gpt',
      messages: [
        ...ask,
        {
          role: 'assistant',
          content: null,
          tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris","unit":"celsius"}' } }],
        },
        { role: 'tool', tool_call_id: 'call_1', content: '21 degrees' },
      ],
      tools: [weather],
      tool_choice: 'none',
      max_tokens: 5,
    });
    expect(answer.choices[0].message.content?.length).toBeGreaterThan(0);
    expect(answer.choices[0].message.tool_calls ?? []).toEqual([]);
    expect(answer.usage?.prompt_tokens).toBeGreaterThan(30); // the call and its result are in the prompt
  });

  it('counts in /tokenize what usage.prompt_tokens will say, tools listed in the prompt included', async () => {
    const body = { model: 'tiny-gpt', messages: [...ask], tools: [weather], tool_choice: 'required' as const };
    const counted = await (await fetch(`${gw.url}/tokenize`, { method: 'POST', body: JSON.stringify(body) })).json();
    const answer = await client.chat.completions.create({ ...body, max_tokens: 40, seed: 1 });
    expect(counted.count).toBe(answer.usage?.prompt_tokens);
    const bare = await (await fetch(`${gw.url}/tokenize`, { method: 'POST', body: JSON.stringify({ model: 'tiny-gpt', messages: ask }) })).json();
    expect(bare.count).toBeLessThan(counted.count);
    // tool_choice left out is "auto", which lists the tools too.
    const auto = await (await fetch(`${gw.url}/tokenize`, { method: 'POST', body: JSON.stringify({ ...body, tool_choice: undefined }) })).json();
    const autoAnswer = await client.chat.completions.create({ model: 'tiny-gpt', messages: [...ask], tools: [weather], max_tokens: 4, seed: 1 });
    expect(auto.count).toBe(autoAnswer.usage?.prompt_tokens);
  });

  it.each([
    [{ tools: [weather], tool_choice: { type: 'function', function: { name: 'nope' } } }, 'tool_choice', 'not in tools'],
    [{ tool_choice: 'required' }, 'tool_choice', 'tool_choice needs tools'],
    [{ tools: [weather, weather], tool_choice: 'required' }, 'tools', 'tool names must be unique'],
    [
      {
        tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { a: { type: 'string', minLength: 'x' } } } } }],
        tool_choice: 'required',
      },
      'tools',
      'tools[0].function.parameters.properties.a.minLength: must be a non-negative integer',
    ],
    [{ tools: [weather], tool_choice: 'required', response_format: { type: 'json_object' } }, 'response_format', 'cannot be used with tools'],
  ])('refuses %j with a 400 on its param', async (extra, param, message) => {
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny-gpt', messages: ask, ...extra }),
    });
    expect(res.status).toBe(400);
    const { error } = await res.json();
    expect(error.param).toBe(param);
    expect(error.message).toContain(message);
  });
});
