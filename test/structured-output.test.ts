import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODELS, startTestGateway } from './helpers.js';

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

  it.each([
    [
      { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'string', pattern: '^a' } } },
      'response_format.json_schema.schema: "pattern" is not supported',
    ],
    [
      { type: 'json_schema', json_schema: { schema: { type: 'object', properties: { a: { type: 'string', format: 'email' } } } } },
      'schema.properties.a: "format" is not supported',
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
