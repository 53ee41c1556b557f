import { createParser } from 'eventsource-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODELS, startTestGateway } from './helpers.js';

// Hugging Face TGI's own API (/generate, /generate_stream, POST /, /info) over real replicas of tiny-gpt,
// read as TGI's clients read it: JSON, and Server-Sent Events through eventsource-parser.
let gw: Awaited<ReturnType<typeof startTestGateway>>;
beforeAll(async () => {
  gw = await startTestGateway({
    models: {
      'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', scaling: { min_containers: 1 } },
      other: { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', scaling: { min_containers: 0 } },
    },
  });
});
afterAll(() => gw?.shutdown());

type Token = { id: number; text: string; logprob: number; special: boolean };
const post = (path: string, body: object) =>
  fetch(`${gw.url}${path}`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
const generate = async (body: object) => {
  const res = await post('/generate', { model: 'tiny-gpt', ...body });
  return { status: res.status, body: await res.json() };
};
async function events(path: string, body: object) {
  const res = await post(path, { model: 'tiny-gpt', ...body });
  expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
  const got: { index: number; token: Token; generated_text: string | null; details: Record<string, unknown> | null }[] = [];
  const parser = createParser({ onEvent: (e) => got.push(JSON.parse(e.data)) });
  const decoder = new TextDecoder();
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) parser.feed(decoder.decode(chunk, { stream: true }));
  return got;
}

describe('TGI’s API', () => {
  it('generates greedily by default, as OpenAI’s completions do at temperature 0, with TGI’s details', async () => {
    const { status, body } = await generate({ inputs: 'The weather today', parameters: { max_new_tokens: 6, details: true } });
    expect(status).toBe(200);
    const openai = await (await post('/v1/completions', { model: 'tiny-gpt', prompt: 'The weather today', max_tokens: 6, temperature: 0 })).json();
    expect(body.generated_text).toBe(openai.choices[0].text);
    const { details } = body;
    expect(details).toMatchObject({ finish_reason: 'length', generated_tokens: 6, seed: null, prefill: [] });
    expect(details.tokens).toHaveLength(6);
    for (const t of details.tokens as Token[])
      expect(t).toEqual({ id: expect.any(Number), text: expect.any(String), logprob: expect.any(Number), special: false });
    expect((details.tokens as Token[]).map((t) => t.text).join('')).toBe(body.generated_text);
    // Without details, the text alone; return_full_text puts the prompt in front.
    expect(await generate({ inputs: 'The weather today', parameters: { max_new_tokens: 6 } })).toEqual({
      status: 200,
      body: { generated_text: body.generated_text },
    });
    const full = await generate({ inputs: 'The weather today', parameters: { max_new_tokens: 6, return_full_text: true } });
    expect(full.body.generated_text).toBe(`The weather today${body.generated_text}`);
    // TGI's repetition_penalty is vLLM's (the prompt's tokens and the generated ones).
    const penalised = await generate({ inputs: 'The weather today', parameters: { max_new_tokens: 6, repetition_penalty: 5 } });
    const same = await (
      await post('/v1/completions', { model: 'tiny-gpt', prompt: 'The weather today', max_tokens: 6, temperature: 0, repetition_penalty: 5 })
    ).json();
    expect(penalised.body.generated_text).toBe(same.choices[0].text);
    expect(penalised.body.generated_text).not.toBe(body.generated_text);
  });

  it('streams one event a token, the last with the whole text and details', async () => {
    const whole = await generate({ inputs: 'Once upon', parameters: { max_new_tokens: 5 } });
    const got = await events('/generate_stream', { inputs: 'Once upon', parameters: { max_new_tokens: 5 } });
    expect(got.map((e) => e.index)).toEqual([1, 2, 3, 4, 5]);
    expect(got.slice(0, -1).every((e) => e.generated_text === null && e.details === null)).toBe(true);
    const last = got[got.length - 1];
    expect(last.generated_text).toBe(whole.body.generated_text);
    expect(got.map((e) => e.token.text).join('')).toBe(whole.body.generated_text);
    expect(last.details).toBeNull(); // (details only when asked, as TGI's: it sent them always)
    const detailed = await events('/generate_stream', { inputs: 'Once upon', parameters: { max_new_tokens: 5, details: true } });
    expect(detailed.at(-1)?.details).toEqual({ finish_reason: 'length', generated_tokens: 5, seed: null, input_length: expect.any(Number) });
    // POST / is either, by `stream`.
    expect((await events('/', { inputs: 'Once upon', stream: true, parameters: { max_new_tokens: 5 } })).map((e) => e.token.id)).toEqual(
      got.map((e) => e.token.id),
    );
    // ...a whole answer there in TGI's compat form (the Inference API's, SageMaker's): an array of one, the prompt included.
    const compat = await post('/', { model: 'tiny-gpt', inputs: 'Once upon', parameters: { max_new_tokens: 5 } });
    expect(await compat.json()).toEqual([{ generated_text: `Once upon${whole.body.generated_text}` }]);
    const bare = await post('/', { model: 'tiny-gpt', inputs: 'Once upon', parameters: { max_new_tokens: 5, return_full_text: false } });
    expect(await bare.json()).toEqual([whole.body]);
  });

  it('samples with a seed it reports, stops at a stop sequence, lists top_n_tokens, follows a grammar', async () => {
    const sampled = await generate({ inputs: 'Hi', parameters: { max_new_tokens: 8, do_sample: true, seed: 7, details: true } });
    expect(sampled.body.details.seed).toBe(7);
    expect((await generate({ inputs: 'Hi', parameters: { max_new_tokens: 8, do_sample: true, seed: 7 } })).body.generated_text).toBe(
      sampled.body.generated_text,
    );
    // A stop sequence: the text generated greedily, cut where its third token begins.
    const greedy = await generate({ inputs: 'Hi', parameters: { max_new_tokens: 8, details: true } });
    const tokens = greedy.body.details.tokens as Token[];
    const stop = tokens[2].text;
    const stopped = await generate({ inputs: 'Hi', parameters: { max_new_tokens: 8, stop: [stop], details: true } });
    expect(stopped.body.details.finish_reason).toBe('stop_sequence');
    // (the text ends with the stop sequence, as TGI's: it was cut out, unlike the tokens in details)
    expect(greedy.body.generated_text.startsWith(stopped.body.generated_text)).toBe(true);
    expect(stopped.body.generated_text.endsWith(stop)).toBe(true);
    expect(stopped.body.details.tokens.map((t: Token) => t.text).join('')).toBe(stopped.body.generated_text);
    const top = await generate({ inputs: 'Hi', parameters: { max_new_tokens: 3, details: true, top_n_tokens: 2 } });
    expect(top.body.details.top_tokens.map((alts: Token[]) => alts.length)).toEqual([2, 2, 2]);
    const digits = await generate({ inputs: 'Hi', parameters: { max_new_tokens: 10, grammar: { type: 'regex', value: '[0-9]{3}' } } });
    expect(digits.body.generated_text).toMatch(/^[0-9]{3}$/);
  });

  it('scores the prompt with decoder_input_details (the prefill), as OpenAI’s echo with logprobs does', async () => {
    const scored = await generate({ inputs: 'The cat sat on', parameters: { max_new_tokens: 3, details: true, decoder_input_details: true } });
    const plain = await generate({ inputs: 'The cat sat on', parameters: { max_new_tokens: 3 } });
    expect(scored.body.generated_text).toBe(plain.body.generated_text); // the prompt is scored, not in the text
    const prefill = scored.body.details.prefill as { id: number; text: string; logprob: number | null }[];
    const openai = await (
      await post('/v1/completions', { model: 'tiny-gpt', prompt: 'The cat sat on', max_tokens: 1, echo: true, logprobs: 0, temperature: 0 })
    ).json();
    const { tokens, token_logprobs } = openai.choices[0].logprobs;
    expect(prefill.map((t) => t.text)).toEqual(tokens.slice(0, prefill.length));
    expect(prefill.map((t) => t.logprob)).toEqual(token_logprobs.slice(0, prefill.length));
    expect(prefill[0].logprob).toBeNull();
    expect(scored.body.details.tokens).toHaveLength(3);
    // Asking for the prompt's details asks for details (TGI's: details || decoder_input_details); refused streamed.
    const implied = await generate({ inputs: 'The cat sat on', parameters: { max_new_tokens: 3, decoder_input_details: true } });
    expect(implied.body.details.prefill).toEqual(prefill);
    expect((await post('/generate_stream', { inputs: 'x', parameters: { decoder_input_details: true } })).status).toBe(422);
  });

  it('answers best_of with the sequence of highest mean log-probability per token, the others in best_of_sequences', async () => {
    const parameters = { max_new_tokens: 8, do_sample: true, temperature: 1.3, details: true };
    const alone = await Promise.all([21, 22, 23].map((seed) => generate({ inputs: 'Tell me', parameters: { ...parameters, seed } })));
    const mean = (details: { tokens: { logprob: number }[] }) => details.tokens.reduce((sum, t) => sum + t.logprob, 0) / details.tokens.length;
    const texts = alone.map((r) => r.body.generated_text);
    expect(new Set(texts).size).toBe(3);
    const best = alone.reduce((a, b) => (mean(b.body.details) > mean(a.body.details) ? b : a));
    const r = await generate({ inputs: 'Tell me', parameters: { ...parameters, seed: 21, best_of: 3 } });
    expect(r.status).toBe(200);
    expect(r.body.generated_text).toBe(best.body.generated_text);
    expect(r.body.details.seed).toBe(best.body.details.seed);
    const others = r.body.details.best_of_sequences as { generated_text: string; seed: number; tokens: unknown[] }[];
    expect(others.map((o) => o.generated_text)).toEqual(texts.filter((t) => t !== best.body.generated_text));
    expect(others.map((o) => o.seed)).toEqual([21, 22, 23].filter((s) => s !== best.body.details.seed));
    expect(others.every((o) => o.tokens.length > 0)).toBe(true);
    expect((await generate({ inputs: 'Tell me', parameters: { ...parameters, details: false, best_of: 2 } })).body).toEqual({
      generated_text: expect.any(String),
    });
  });

  it('refuses what it does not serve with TGI’s 422, and finds the model', async () => {
    for (const [body, message] of [
      [{}, /inputs/],
      [{ inputs: 'x', parameters: { repetition_penalty: 0 } }, /repetition_penalty/],
      [{ inputs: 'x', parameters: { best_of: 2 } }, /best_of > 1 needs sampling/],
      [{ inputs: 'x', parameters: { best_of: 9, do_sample: true } }, /best_of must be at most 8/],
      [{ inputs: 'x', parameters: { max_new_tokens: 5000 } }, /maximum context length is 512 tokens/],
      [{ inputs: 'x', parameters: { top_p: 1.5 } }, /top_p/],
    ] as const) {
      const res = await generate(body);
      expect(res.status, JSON.stringify(body)).toBe(422);
      expect(res.body).toEqual({ error: expect.stringMatching(message), error_type: 'validation' });
    }
    const streamed = await post('/generate_stream', { model: 'tiny-gpt', inputs: 'x', parameters: { best_of: 2, do_sample: true } });
    expect(streamed.status).toBe(422);
    expect((await streamed.json()).error).toMatch(/best_of > 1 is not served when streaming/);
    // Several generative models here: TGI serves one, so a request names it (`model`), else is told which there are.
    const unnamed = await post('/generate', { inputs: 'x' });
    expect(unnamed.status).toBe(422);
    expect((await unnamed.json()).error).toMatch(/several generative models \(tiny-gpt, other\): name one with "model"/);
    expect((await post('/generate', { model: 'nope', inputs: 'x' })).status).toBe(404);
    const info = await (await fetch(`${gw.url}/info?model=tiny-gpt`)).json();
    expect(info).toMatchObject({ model_id: 'tiny-gpt', max_total_tokens: 512, max_input_tokens: 511, model_pipeline_tag: 'text-generation' });
  });
});
