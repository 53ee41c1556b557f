import { createParser } from 'eventsource-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODELS, startTestGateway } from './helpers.js';

let gw: Awaited<ReturnType<typeof startTestGateway>>;
beforeAll(async () => {
  gw = await startTestGateway({
    models: {
      'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', scaling: { min_containers: 1 } },
      mlp: { path: `${MODELS}mlp.onnx`, device: 'cpu' },
    },
  });
});
afterAll(() => gw?.shutdown());

const post = (path: string, body: unknown) => fetch(`${gw.url}${path}`, { method: 'POST', body: JSON.stringify(body) });

describe("Triton's generate extension (POST /v2/models/{m}/generate, generate_stream)", () => {
  it('answers text_output: the prompt and its completion (as Triton’s vLLM backend), or the completion alone', async () => {
    const completion = await (await post('/v1/completions', { model: 'tiny-gpt', prompt: 'Hello there', max_tokens: 8, seed: 5 })).json();
    const whole = await post('/v2/models/tiny-gpt/generate', { id: 'r1', text_input: 'Hello there', parameters: { max_tokens: 8, seed: 5 } });
    expect(whole.status).toBe(200);
    expect(await whole.json()).toEqual({ id: 'r1', model_name: 'tiny-gpt', model_version: '1', text_output: `Hello there${completion.choices[0].text}` });
    // Settings as top-level inputs (the TensorRT-LLM ensemble's way), TensorRT-LLM's names too.
    const alone = await (
      await post('/v2/models/tiny-gpt/generate', { text_input: 'Hello there', max_tokens: 8, random_seed: 5, exclude_input_in_output: true })
    ).json();
    expect(alone.text_output).toBe(completion.choices[0].text);
  });

  it('streams the same text as Server-Sent Events, one object per piece', async () => {
    const body = { text_input: 'Once', parameters: { max_tokens: 12, seed: 9, exclude_input_in_output: true } };
    const whole = await (await post('/v2/models/tiny-gpt/versions/1/generate', body)).json();
    const res = await post('/v2/models/tiny-gpt/generate_stream', body);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const events: { text_output: string; model_name: string }[] = [];
    const parser = createParser({ onEvent: (e) => events.push(JSON.parse(e.data)) });
    parser.feed(await res.text());
    expect(events.length).toBeGreaterThan(1);
    expect(events.every((e) => e.model_name === 'tiny-gpt')).toBe(true);
    expect(events.map((e) => e.text_output).join('')).toBe(whole.text_output);
  });

  it("takes TensorRT-LLM's guided decoding: a JSON schema's document, or a regex's match", async () => {
    const schema = { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'], additionalProperties: false };
    const json = await (
      await post('/v2/models/tiny-gpt/generate', {
        text_input: 'x',
        exclude_input_in_output: true,
        parameters: { max_tokens: 30, guided_decoding_guide_type: 'json_schema', guided_decoding_guide: JSON.stringify(schema) },
      })
    ).json();
    expect(Object.keys(JSON.parse(json.text_output))).toEqual(['ok']);
    const regex = await (
      await post('/v2/models/tiny-gpt/generate', {
        text_input: 'x',
        parameters: { max_tokens: 10, exclude_input_in_output: true, guided_decoding_guide_type: 'regex', guided_decoding_guide: '[0-9]{3}-[a-c]' },
      })
    ).json();
    expect(regex.text_output).toMatch(/^[0-9]{3}-[a-c]$/);
    const ebnf = await (
      await post('/v2/models/tiny-gpt/generate', {
        text_input: 'x',
        parameters: {
          max_tokens: 10,
          exclude_input_in_output: true,
          guided_decoding_guide_type: 'ebnf_grammar',
          guided_decoding_guide: 'root ::= ("yes" | "no") "!"',
        },
      })
    ).json();
    expect(['yes!', 'no!']).toContain(ebnf.text_output);
  });

  it.each([
    [
      '/v2/models/tiny-gpt/generate',
      { text_input: 'x', guided_decoding_guide_type: 'ebnf_grammar', guided_decoding_guide: 'root ::= root "a"' },
      400,
      /left-recursive/,
    ],
    ['/v2/models/tiny-gpt/generate', { text_input: 'x', guided_decoding_guide_type: 'regex' }, 400, /guided_decoding_guide is required/],
    ['/v2/models/tiny-gpt/generate', { parameters: { max_tokens: 4 } }, 400, /text_input/],
    ['/v2/models/tiny-gpt/generate', { text_input: 'x', parameters: { max_tokens: 0 } }, 400, /max_tokens/],
    ['/v2/models/tiny-gpt/generate', { text_input: 'x', temperature: 'hot' }, 400, /temperature/],
    ['/v2/models/mlp/generate', { text_input: 'x' }, 400, /not generative: send tensors to \/v2\/models\/mlp\/infer/],
    ['/v2/models/nope/generate_stream', { text_input: 'x' }, 404, /unknown model/],
  ])('refuses %s %j with %i and an {"error"} body', async (path, body, status, message) => {
    const res = await post(path, body);
    expect(res.status).toBe(status);
    expect((await res.json()).error).toMatch(message);
  });
});
