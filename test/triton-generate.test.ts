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
    // vLLM's top_k -1 (every token) is as leaving it out (it was a 400).
    const everyToken = await (await post('/v2/models/tiny-gpt/versions/1/generate', { ...body, parameters: { ...body.parameters, top_k: -1 } })).json();
    expect(everyToken.text_output).toBe(whole.text_output);
  });

  it("answers the outputs vLLM's backend adds when asked (return_finish_reason, return_num_*_tokens), streamed too", async () => {
    const body = {
      text_input: 'Hello there',
      parameters: { max_tokens: 8, seed: 5 },
      return_finish_reason: true,
      return_num_input_tokens: true,
      return_num_output_tokens: true,
    };
    const whole = await (await post('/v2/models/tiny-gpt/generate', body)).json();
    expect(whole).toMatchObject({ finish_reason: 'length', num_input_tokens: 2, num_output_tokens: 8 });
    const events: { text_output: string; finish_reason?: string; num_input_tokens?: number; num_output_tokens?: number }[] = [];
    const parser = createParser({ onEvent: (e) => events.push(JSON.parse(e.data)) });
    parser.feed(await (await post('/v2/models/tiny-gpt/generate_stream', body)).text());
    expect(events.map((e) => e.text_output).join('')).toBe(whole.text_output);
    // Each piece counts the tokens drawn since the one before; the last says why the text ended.
    expect(events.reduce((n, e) => n + (e.num_output_tokens ?? 0), 0)).toBe(8);
    expect(events.every((e) => e.num_input_tokens === 2)).toBe(true);
    expect(events.map((e) => e.finish_reason)).toEqual([...new Array(events.length - 1).fill(undefined), 'length']);
    // Not asked: none of them.
    const plain = await (await post('/v2/models/tiny-gpt/generate', { text_input: 'Hello there', parameters: { max_tokens: 8 } })).json();
    expect(Object.keys(plain).sort()).toEqual(['model_name', 'model_version', 'text_output']);
  });

  it("answers vLLM's log-probability outputs (return_logprobs, return_cumulative_logprob): the generated tokens', streamed per piece", async () => {
    const completion = await (await post('/v1/completions', { model: 'tiny-gpt', prompt: 'Hello there', max_tokens: 8, seed: 5, logprobs: 2 })).json();
    const expected = completion.choices[0].logprobs;
    const body = { text_input: 'Hello there', parameters: { max_tokens: 8, seed: 5, logprobs: 2 }, return_logprobs: true, return_cumulative_logprob: true };
    const whole = await (await post('/v2/models/tiny-gpt/generate', body)).json();
    expect(whole.text_output).toBe(`Hello there${completion.choices[0].text}`); // the same tokens drawn
    // A JSON string, as vLLM's backend sends it: per generated token (not the echoed prompt's), the drawn one and the 2 likeliest.
    type Entry = { logprob: number; rank: number; decoded_token: string };
    const logprobs: Record<string, Entry>[] = JSON.parse(whole.logprobs);
    expect(logprobs).toHaveLength(8);
    logprobs.forEach((position, i) => {
      const entries = Object.values(position);
      expect(entries).toContainEqual({ logprob: expect.closeTo(expected.token_logprobs[i], 5), rank: expect.any(Number), decoded_token: expected.tokens[i] });
      const likeliest = Object.entries(expected.top_logprobs[i]).map(([text, logprob]) => ({
        decoded_token: text,
        logprob: expect.closeTo(logprob as number, 5),
      }));
      expect(entries.filter((e) => e.rank <= 2).sort((a, b) => a.rank - b.rank)).toMatchObject(likeliest);
      expect(entries.length).toBeLessThanOrEqual(3);
    });
    const sum = expected.token_logprobs.reduce((a: number, b: number) => a + b, 0);
    expect(whole.cumulative_logprob).toBeCloseTo(sum, 4);

    const events: { text_output: string; logprobs: string; cumulative_logprob: number }[] = [];
    const parser = createParser({ onEvent: (e) => events.push(JSON.parse(e.data)) });
    parser.feed(await (await post('/v2/models/tiny-gpt/generate_stream', body)).text());
    expect(events.flatMap((e) => JSON.parse(e.logprobs))).toEqual(logprobs); // each piece: the tokens drawn since the last
    expect(events.at(-1)?.cumulative_logprob).toBeCloseTo(sum, 4);
    expect(events.map((e) => e.cumulative_logprob)).toEqual([...events.map((e) => e.cumulative_logprob)].sort((a, b) => b - a)); // a running sum

    // Without `logprobs`, the drawn token alone; its rank among the model's choices.
    const drawn = JSON.parse((await (await post('/v2/models/tiny-gpt/generate', { ...body, parameters: { max_tokens: 8, seed: 5 } })).json()).logprobs);
    expect(drawn.map((p: object) => Object.values(p))).toEqual(logprobs.map(() => [expect.objectContaining({ logprob: expect.any(Number) })]));
    expect(drawn.every((p: object) => (Object.values(p)[0] as Entry).rank >= 1)).toBe(true);
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
    ['/v2/models/tiny-gpt/generate', { text_input: 'x', beam_width: 4 }, 400, /beam_width above 1 is not served here.*use_beam_search/],
    ['/v2/models/nope/generate_stream', { text_input: 'x' }, 404, /unknown model/],
  ])('refuses %s %j with %i and an {"error"} body', async (path, body, status, message) => {
    const res = await post(path, body);
    expect(res.status).toBe(status);
    expect((await res.json()).error).toMatch(message);
  });
});

/** A BYTES element in the binary tensor extension: its 4-byte little-endian length, then its bytes. */
const element = (text: string) => {
  const length = Buffer.alloc(4);
  length.writeUInt32LE(Buffer.byteLength(text));
  return Buffer.concat([length, Buffer.from(text)]);
};
const infer = (body: unknown, init: RequestInit = {}) => fetch(`${gw.url}/v2/models/tiny-gpt/infer`, { method: 'POST', body: JSON.stringify(body), ...init });
const bytesInput = (name: string, text: string) => ({ name, datatype: 'BYTES', shape: [1], data: [text] });
const boolInput = (name: string, value: boolean) => ({ name, datatype: 'BOOL', shape: [1], data: [value] });

describe("a generative model's KServe tensors (text_input → text_output, as Triton's vLLM backend declares them)", () => {
  it('lists them in its metadata and configuration: decoupled, no batch axis, the settings optional', async () => {
    const meta = await (await fetch(`${gw.url}/v2/models/tiny-gpt`)).json();
    expect(meta.inputs).toContainEqual({ name: 'text_input', datatype: 'BYTES', shape: [1] });
    expect(meta.inputs).toContainEqual({ name: 'sampling_parameters', datatype: 'BYTES', shape: [1] });
    expect(meta.inputs.map((t: { name: string }) => t.name)).not.toContain('input_ids'); // the graph's own tensors are not the API
    expect(meta.outputs).toContainEqual({ name: 'text_output', datatype: 'BYTES', shape: [-1] });
    const config = await (await fetch(`${gw.url}/v2/models/tiny-gpt/config`)).json();
    expect(config).toMatchObject({ max_batch_size: 0, model_transaction_policy: { decoupled: true } });
    expect(config.input).toContainEqual({ name: 'text_input', data_type: 'TYPE_STRING', dims: [1] });
    expect(config.input).toContainEqual({ name: 'stream', data_type: 'TYPE_BOOL', dims: [1], optional: true });
    expect(config.input).toContainEqual({ name: 'random_seed', data_type: 'TYPE_UINT64', dims: [1], optional: true });
    expect(config.output).toContainEqual({ name: 'num_output_tokens', data_type: 'TYPE_UINT32', dims: [1] });
    expect(config.output).toContainEqual({ name: 'cumulative_logprob', data_type: 'TYPE_FP32', dims: [-1] });
    expect(config.input).toContainEqual({ name: 'return_logprobs', data_type: 'TYPE_BOOL', dims: [1], optional: true });
    expect(config).not.toHaveProperty('dynamic_batching');
  });

  it('answers an infer request with the whole text, the same as the generate extension, several at once', async () => {
    const prompts = ['Hello there', 'The capital of France', 'Once upon a time', 'x'];
    const expected = await Promise.all(
      prompts.map(
        async (p) => (await (await post('/v2/models/tiny-gpt/generate', { text_input: p, parameters: { max_tokens: 8, seed: 5 } })).json()).text_output,
      ),
    );
    const answers = await Promise.all(
      prompts.map(async (p, i) => {
        const res = await infer({
          id: `q${i}`,
          inputs: [bytesInput('text_input', p), bytesInput('sampling_parameters', JSON.stringify({ max_tokens: 8, seed: 5 }))],
        });
        expect(res.status).toBe(200);
        return res.json();
      }),
    );
    answers.forEach((a, i) => {
      expect(a).toEqual({
        id: `q${i}`,
        model_name: 'tiny-gpt',
        model_version: '1',
        outputs: [{ name: 'text_output', datatype: 'BYTES', shape: [1], data: [expected[i]] }],
      });
      expect(a.outputs[0].data[0].startsWith(prompts[i])).toBe(true); // the prompt first, as vLLM's backend answers unless excluded
    });

    // The flags vLLM's backend takes: the prompt left out, why it ended and how many tokens, at the request's parameters' settings.
    const res = await infer({
      inputs: [
        bytesInput('text_input', 'Hello there'),
        boolInput('exclude_input_in_output', true),
        boolInput('return_finish_reason', true),
        boolInput('return_num_input_tokens', true),
        boolInput('return_num_output_tokens', true),
      ],
      parameters: { max_tokens: 8, seed: 5 },
    });
    const outputs = Object.fromEntries((await res.json()).outputs.map((o: { name: string; data: unknown[] }) => [o.name, o.data[0]]));
    expect(`Hello there${outputs.text_output}`).toBe(expected[0]);
    expect(outputs).toMatchObject({ finish_reason: 'length', num_input_tokens: 2, num_output_tokens: 8 });

    // The log-probabilities: as the generate extension's, asked by flag or by naming the output.
    const scored = await (
      await post('/v2/models/tiny-gpt/generate', {
        text_input: 'Once',
        parameters: { max_tokens: 6, seed: 2, logprobs: 1 },
        return_logprobs: true,
        return_cumulative_logprob: true,
      })
    ).json();
    const asked = await infer({
      inputs: [bytesInput('text_input', 'Once'), boolInput('return_logprobs', true)],
      outputs: [{ name: 'text_output' }, { name: 'logprobs' }, { name: 'cumulative_logprob' }],
      parameters: { max_tokens: 6, seed: 2, logprobs: 1 },
    });
    expect((await asked.json()).outputs).toEqual([
      { name: 'text_output', datatype: 'BYTES', shape: [1], data: [scored.text_output] },
      { name: 'logprobs', datatype: 'BYTES', shape: [1], data: [scored.logprobs] },
      { name: 'cumulative_logprob', datatype: 'FP32', shape: [1], data: [expect.closeTo(scored.cumulative_logprob, 5)] },
    ]);
  });

  it("takes the binary tensor extension with the TensorRT-LLM ensemble's inputs ([1, 1] shapes, typed settings) and answers binary", async () => {
    const expected = (
      await (await post('/v2/models/tiny-gpt/generate', { text_input: 'Once', max_tokens: 6, random_seed: 7, exclude_input_in_output: true })).json()
    ).text_output;
    const raw = [element('Once'), Buffer.from(new Int32Array([6]).buffer), Buffer.from(new BigUint64Array([7n]).buffer), Buffer.from([1])];
    const header = Buffer.from(
      JSON.stringify({
        inputs: [
          { name: 'text_input', datatype: 'BYTES', shape: [1, 1], parameters: { binary_data_size: raw[0].byteLength } },
          { name: 'max_tokens', datatype: 'INT32', shape: [1, 1], parameters: { binary_data_size: 4 } },
          { name: 'random_seed', datatype: 'UINT64', shape: [1, 1], parameters: { binary_data_size: 8 } },
          { name: 'exclude_input_in_output', datatype: 'BOOL', shape: [1, 1], parameters: { binary_data_size: 1 } },
        ],
        outputs: [
          { name: 'text_output', parameters: { binary_data: true } },
          { name: 'num_output_tokens', parameters: { binary_data: true } },
          { name: 'cumulative_logprob', parameters: { binary_data: true } },
        ],
      }),
    );
    const res = await fetch(`${gw.url}/v2/models/tiny-gpt/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.byteLength) },
      body: Buffer.concat([header, ...raw]),
    });
    expect(res.status).toBe(200);
    const body = Buffer.from(await res.arrayBuffer());
    const length = Number(res.headers.get('inference-header-content-length'));
    const answer = JSON.parse(body.subarray(0, length).toString());
    expect(answer.outputs).toEqual([
      { name: 'text_output', datatype: 'BYTES', shape: [1, 1], parameters: { binary_data_size: 4 + Buffer.byteLength(expected) } },
      { name: 'num_output_tokens', datatype: 'UINT32', shape: [1], parameters: { binary_data_size: 4 } },
      { name: 'cumulative_logprob', datatype: 'FP32', shape: [1], parameters: { binary_data_size: 4 } },
    ]);
    const text = body.subarray(length + 4, length + 4 + body.readUInt32LE(length)).toString();
    expect(text).toBe(expected);
    expect(body.readUInt32LE(body.byteLength - 8)).toBeGreaterThan(0);
    expect(body.readFloatLE(body.byteLength - 4)).toBeLessThan(0); // a sum of log-probabilities
  });

  it.each([
    [
      { inputs: [bytesInput('text_input', 'x'), boolInput('stream', true)] },
      /stream: true needs a streaming call: POST \/v2\/models\/tiny-gpt\/generate_stream/,
    ],
    [
      { inputs: [bytesInput('text_input', 'x'), { name: 'input_ids', datatype: 'INT64', shape: [1, 1], data: [1] }] },
      /unknown input "input_ids"; a generative model takes text_input/,
    ],
    [{ inputs: [boolInput('stream', false)] }, /missing input text_input/],
    [{ inputs: [{ name: 'text_input', datatype: 'BYTES', shape: [2], data: ['a', 'b'] }] }, /text_input: one element/],
    [{ inputs: [{ name: 'text_input', datatype: 'FP32', shape: [1], data: [1] }] }, /text_input: datatype "FP32", but it takes BYTES/],
    [
      { inputs: [bytesInput('text_input', 'x'), { name: 'max_tokens', datatype: 'FP32', shape: [1], data: [4] }] },
      /max_tokens: datatype "FP32", but it takes INT32/,
    ],
    [{ inputs: [bytesInput('text_input', 'x'), { name: 'max_tokens', datatype: 'INT32', shape: [1], data: [0] }] }, /max_tokens/],
    [{ inputs: [bytesInput('text_input', 'x'), bytesInput('sampling_parameters', 'max_tokens=4')] }, /sampling_parameters: a JSON object/],
    [{ inputs: [{ name: 'text_input', datatype: 'BYTES', shape: [1], data: [7] }] }, /data\[0\] = 7 is not a string/],
    [{ inputs: [{ name: 'text_input', shape: [1], data: ['x'] }] }, /text_input: "datatype" is required \(BYTES\)/],
    [
      { inputs: [{ name: 'text_input', datatype: 'BYTES', shape: [1], parameters: { binary_data_size: -3 } }] },
      /binary_data_size must be a byte count, got -3/,
    ],
    [{ inputs: [{ name: 'text_input', datatype: 'BYTES', shape: [1], parameters: { binary_data_size: 8 } }] }, /binary_data_size 8 is past the 0 bytes/],
    [{ inputs: [bytesInput('text_input', 'x')], outputs: [{ name: 'logits' }] }, /unknown output "logits"; a generative model answers text_output/],
    [{ inputs: [bytesInput('text_input', 'x'), bytesInput('sampling_parameters', '{"max_tokens": 4000}')] }, /maximum context length/],
  ])('refuses %j with a 400 naming the problem, and goes on serving', async (body, message) => {
    const res = await infer(body);
    expect(res.status).toBe(400);
    expect((await res.json()).error).toMatch(message);
    const good = await infer({ inputs: [bytesInput('text_input', 'x')], parameters: { max_tokens: 2 } });
    expect(good.status).toBe(200);
  });

  it('refuses a torn BYTES element in binary data', async () => {
    const header = Buffer.from(JSON.stringify({ inputs: [{ name: 'text_input', datatype: 'BYTES', shape: [1], parameters: { binary_data_size: 6 } }] }));
    const res = await fetch(`${gw.url}/v2/models/tiny-gpt/infer`, {
      method: 'POST',
      headers: { 'inference-header-content-length': String(header.byteLength) },
      body: Buffer.concat([header, Buffer.from([9, 0, 0, 0, 65, 66])]),
    });
    expect(res.status).toBe(400);
    expect((await res.json()).error).toMatch(/text_input: a BYTES element is a 4-byte little-endian length/);
  });
});
