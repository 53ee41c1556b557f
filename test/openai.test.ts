import { createParser } from 'eventsource-parser';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODELS, startTestGateway } from './helpers.js';

let gw: Awaited<ReturnType<typeof startTestGateway>>;
let client: OpenAI;
beforeAll(async () => {
  gw = await startTestGateway({
    models: {
      'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', batching: { max_batch_size: 16 }, scaling: { min_containers: 1 } },
      // The same model computing prompts 32 tokens per step, with no prefix cache.
      'tiny-gpt-chunked': {
        path: `${MODELS}tiny-gpt.onnx`,
        device: 'cpu',
        batching: { max_batch_size: 16, prefill_chunk: 32 },
        prefix_cache_mb: 0,
        scaling: { min_containers: 1 },
      },
      mlp: { path: `${MODELS}mlp.onnx`, device: 'cpu' },
      // Two sequences at a time, a request waiting at most 3 s for a slot.
      'tiny-gpt-two': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', batching: { max_batch_size: 2, timeout_ms: 3000 }, scaling: { min_containers: 1 } },
    },
  });
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'not-needed', maxRetries: 0 });
});
afterAll(() => gw?.shutdown());

const stats = async () => (await fetch(`${gw.url}/v2/models/tiny-gpt/stats`)).json();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(condition: () => Promise<boolean>) {
  for (let i = 0; i < 500 && !(await condition()); i++) await sleep(10);
}

/** A POSTed SSE stream read with eventsource-parser: the data of each event, and how many network reads it took. */
async function sse(path: string, body: object, onEvent?: (data: string) => void | Promise<void>, signal?: AbortSignal) {
  const res = await fetch(`${gw.url}${path}`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' }, signal });
  const events: string[] = [];
  const pending: Promise<void>[] = [];
  const parser = createParser({
    onEvent: (e) => {
      events.push(e.data);
      pending.push(Promise.resolve(onEvent?.(e.data)));
    },
  });
  let reads = 0;
  const decoder = new TextDecoder();
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    reads++;
    parser.feed(decoder.decode(chunk, { stream: true }));
    await Promise.all(pending.splice(0));
  }
  return { status: res.status, contentType: res.headers.get('content-type'), events, reads };
}

describe('OpenAI-compatible API with the official openai client', () => {
  it('lists the generative models only', async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(['tiny-gpt', 'tiny-gpt-chunked', 'tiny-gpt-two']);
    expect(models.data[0]).toMatchObject({ object: 'model', root: 'tiny-gpt', max_model_len: 512 }); // vLLM's fields (tiny-gpt's n_ctx)
    // vLLM's probes: /health (no body) and /version.
    expect((await fetch(`${gw.url}/health`)).status).toBe(200);
    expect(await (await fetch(`${gw.url}/version`)).json()).toMatchObject({ version: expect.any(String) });
  });

  it('completes a prompt (non-streaming) with usage and finish_reason length', async () => {
    const r = await client.completions.create({ model: 'tiny-gpt', prompt: 'The quick brown fox', max_tokens: 8, seed: 1 });
    expect(r.object).toBe('text_completion');
    expect(r.choices[0].finish_reason).toBe('length');
    expect(r.choices[0].text.length).toBeGreaterThan(0);
    expect(r.usage).toEqual({ prompt_tokens: 4, completion_tokens: 8, total_tokens: 12 });
  });

  it('streams completion chunks whose concatenation equals the non-streamed answer for the same seed', async () => {
    const params = { model: 'tiny-gpt', prompt: 'Once upon a time', max_tokens: 24, seed: 42, temperature: 0.8, top_p: 0.95 };
    const whole = await client.completions.create(params);
    const stream = await client.completions.create({ ...params, stream: true, stream_options: { include_usage: true } });
    const texts: string[] = [];
    let usage: OpenAI.CompletionUsage | undefined | null;
    let finish: string | null = null;
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      for (const c of chunk.choices) {
        texts.push(c.text);
        finish = c.finish_reason ?? finish;
      }
    }
    expect(texts.length).toBeGreaterThan(5);
    expect(texts.join('')).toBe(whole.choices[0].text);
    expect(finish).toBe('length');
    expect(usage).toEqual(whole.usage);
    // vLLM's continuous_usage_stats: every chunk carries the usage so far, counting up to the same total.
    const counted: number[] = [];
    const live = await client.completions.create({ ...params, stream: true, stream_options: { include_usage: true, continuous_usage_stats: true } } as never);
    for await (const chunk of live as unknown as AsyncIterable<OpenAI.Completion>) {
      expect(chunk.usage?.prompt_tokens).toBe(whole.usage?.prompt_tokens);
      counted.push(chunk.usage?.completion_tokens as number);
    }
    expect(counted.every((n, i) => i === 0 || n >= counted[i - 1])).toBe(true);
    expect(counted.at(-1)).toBe(whole.usage?.completion_tokens);
  });

  it('streams chat completions: a role chunk, content deltas, a finish chunk, [DONE]', async () => {
    const params = { model: 'tiny-gpt', messages: [{ role: 'user' as const, content: 'Say something.' }], max_tokens: 12, seed: 7 };
    const whole = await client.chat.completions.create(params);
    expect(whole.object).toBe('chat.completion');
    expect(whole.choices[0].message.role).toBe('assistant');
    const deltas: string[] = [];
    const roles: string[] = [];
    for await (const chunk of await client.chat.completions.create({ ...params, stream: true })) {
      expect(chunk.object).toBe('chat.completion.chunk');
      for (const c of chunk.choices) {
        if (c.delta.role) roles.push(c.delta.role);
        if (c.delta.content) deltas.push(c.delta.content);
      }
    }
    expect(roles).toEqual(['assistant']);
    expect(deltas.join('')).toBe(whole.choices[0].message.content);
  });

  it('ends at a stop sequence with finish_reason stop', async () => {
    const params = { model: 'tiny-gpt', prompt: 'Hello', max_tokens: 30, seed: 5 };
    const text = (await client.completions.create(params)).choices[0].text;
    const stop = text.slice(10, 14);
    const r = await client.completions.create({ ...params, stop: [stop] });
    expect(r.choices[0].finish_reason).toBe('stop');
    expect(r.choices[0].text).toBe(text.slice(0, text.indexOf(stop)));
    // vLLM's stop_reason names what ended it, streamed too (null where end-of-text or the length did).
    expect((r.choices[0] as { stop_reason?: unknown }).stop_reason).toBe(stop);
    let last: unknown;
    for await (const chunk of await client.completions.create({ ...params, stop: [stop], stream: true })) last = chunk.choices[0] ?? last;
    expect(last).toMatchObject({ finish_reason: 'stop', stop_reason: stop });
    expect((await client.completions.create(params)).choices[0]).toMatchObject({ finish_reason: 'length', stop_reason: null });
  });

  it('biases tokens (logit_bias) and penalises repeating them (frequency_penalty, presence_penalty)', async () => {
    const params = { model: 'tiny-gpt', prompt: 'Hello there', max_tokens: 24, temperature: 0 };
    const text = async (extra: object) => (await client.completions.create({ ...params, ...extra })).choices[0].text;
    const words = (t: string) => new Set(t.trim().split(/\s+/)).size;
    const plain = await text({});
    expect(words(plain)).toBeLessThan(4); // random weights, greedy: it repeats itself
    expect(await text({ logit_bias: { 1000: 100 } })).toBe('ale'.repeat(24)); // token 1000 is "ale"
    for (const penalty of [{ frequency_penalty: 2 }, { presence_penalty: 2 }]) expect(words(await text(penalty))).toBeGreaterThan(12);
    // Over chat too, and the two add up: +5 makes "ale" the choice until it was penalised 3 x 2.
    const chat = await client.chat.completions.create({
      model: 'tiny-gpt',
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 8,
      temperature: 0,
      logit_bias: { 1000: 5 },
      frequency_penalty: 2,
    });
    const content = chat.choices[0].message.content as string;
    expect(content.startsWith('ale'.repeat(3)) && !content.startsWith('ale'.repeat(4))).toBe(true);
  });

  it("penalises the prompt's and its own tokens (vLLM's repetition_penalty) and draws only likely tokens (min_p)", async () => {
    const params = { model: 'tiny-gpt', prompt: 'Hello there', max_tokens: 24 };
    const tokens = async (extra: object) => {
      const r = await client.completions.create({ ...params, ...extra, logprobs: 0 } as never);
      return (r.choices[0].logprobs?.tokens ?? []) as string[];
    };
    const greedy = await tokens({ temperature: 0 });
    expect(new Set(greedy).size).toBeLessThan(4); // random weights, greedy: it repeats itself
    expect(new Set(await tokens({ temperature: 0, repetition_penalty: 5 })).size).toBeGreaterThan(12);
    // The prompt's tokens count: "Champ" goes on with "Champ" greedily, not under the penalty (its first token already).
    const first = async (extra: object) =>
      (await client.completions.create({ model: 'tiny-gpt', prompt: 'Champ', max_tokens: 1, temperature: 0, ...extra })).choices[0].text;
    expect(await first({})).toBe('Champ');
    expect(await first({ repetition_penalty: 5 })).not.toBe('Champ');
    // min_p 1 keeps the most likely token alone: greedy's text at any temperature and seed.
    expect(await tokens({ temperature: 1.5, seed: 7, min_p: 1 })).toEqual(greedy);
    expect(await tokens({ temperature: 1.5, seed: 7 })).not.toEqual(greedy);
    const bad = await client.completions.create({ ...params, repetition_penalty: 0 } as never).catch((e) => e);
    expect(bad.status).toBe(400);
  });

  it('answers n choices, each the answer one request with the next seed would get, streamed or not', async () => {
    const params = { model: 'tiny-gpt', prompt: 'Once upon a time', max_tokens: 8, seed: 20, temperature: 0.9 };
    const r = await client.completions.create({ ...params, n: 3 });
    expect(r.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    const alone = await Promise.all([0, 1, 2].map(async (i) => (await client.completions.create({ ...params, seed: 20 + i })).choices[0].text));
    expect(r.choices.map((c) => c.text)).toEqual(alone);
    expect(new Set(alone).size).toBe(3);
    expect(r.usage).toEqual({ prompt_tokens: 4, completion_tokens: 24, total_tokens: 28 });

    const chat = { model: 'tiny-gpt', messages: [{ role: 'user' as const, content: 'Hi' }], max_tokens: 6, seed: 3, n: 2 };
    const whole = await client.chat.completions.create(chat);
    const texts = ['', ''];
    const finished: number[] = [];
    for await (const chunk of await client.chat.completions.create({ ...chat, stream: true })) {
      for (const c of chunk.choices) {
        texts[c.index] += c.delta.content ?? '';
        if (c.finish_reason) finished.push(c.index);
      }
    }
    expect(texts).toEqual(whole.choices.map((c) => c.message.content));
    expect(finished.sort()).toEqual([0, 1]);
  });

  it('answers best_of: the n of its candidates with the highest mean log-probability per token, best first', async () => {
    // The candidates are the choices n: best_of would give (seed + i): scored here with their logprobs.
    const params = { model: 'tiny-gpt', prompt: ['Once upon a time', 'The sea'], max_tokens: 10, seed: 40, temperature: 1.2 };
    const all = await client.completions.create({ ...params, n: 5, logprobs: 0 });
    const mean = (c: (typeof all.choices)[number]) => {
      const lp = c.logprobs?.token_logprobs ?? [];
      return lp.reduce((sum: number, x) => sum + (x ?? 0), 0) / lp.length;
    };
    const ranked = [0, 1].map((p) =>
      all.choices
        .slice(p * 5, (p + 1) * 5)
        .map((c) => ({ text: c.text, score: mean(c) }))
        .sort((a, b) => b.score - a.score),
    );
    expect(new Set(ranked[0].map((c) => c.text)).size).toBe(5);
    const best = await client.completions.create({ ...params, n: 2, best_of: 5 });
    expect(best.choices.map((c) => c.index)).toEqual([0, 1, 2, 3]);
    expect(best.choices.map((c) => c.text)).toEqual([ranked[0][0].text, ranked[0][1].text, ranked[1][0].text, ranked[1][1].text]);
    expect(best.choices.every((c) => c.logprobs === null)).toBe(true); // not asked for: ranked all the same
    // Every candidate's tokens are generated, and counted (as OpenAI bills them); each prompt counted once.
    expect(best.usage).toEqual(all.usage);
    const withLogprobs = await client.completions.create({ ...params, prompt: 'The sea', best_of: 5, logprobs: 1 });
    expect(withLogprobs.choices[0].text).toBe(ranked[1][0].text);
    expect(mean(withLogprobs.choices[0])).toBeCloseTo(ranked[1][0].score, 6);
    expect(withLogprobs.choices[0].logprobs?.top_logprobs?.[0]).toBeTruthy();
  });

  it('searches beams (vLLM’s use_beam_search): one beam is greedy; n beams come back whole, the best first', async () => {
    const params = { model: 'tiny-gpt', prompt: 'The quick brown fox', max_tokens: 6, ignore_eos: true };
    const greedy = await client.completions.create({ ...params, temperature: 0 });
    const one = await client.completions.create({ ...params, use_beam_search: true } as never);
    expect(one.choices.map((c) => c.text)).toEqual([greedy.choices[0].text]);
    const three = await client.completions.create({ ...params, n: 3, use_beam_search: true } as never);
    expect(three.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    expect(new Set(three.choices.map((c) => c.text)).size).toBe(3);
    expect(three.choices.every((c) => c.finish_reason === 'length')).toBe(true); // (no end token: ignore_eos)
    expect(three.usage).toEqual({ prompt_tokens: 4, completion_tokens: 18, total_tokens: 22 });
    // best_of beams searched, the n best returned (and counted); prompts each their own search.
    const wide = await client.completions.create({ ...params, prompt: ['The quick brown fox', 'Hello'], n: 2, best_of: 4, use_beam_search: true } as never);
    expect(wide.choices).toHaveLength(4);
    expect(wide.usage?.completion_tokens).toBe(48);
    // Stop strings end hypotheses on the replica: the text cut before it, vLLM's stop_reason naming it. The greedy
    // first token's text as the stop: with length_penalty 0 (the plain sum) that one-token text is the best.
    const first = (await client.completions.create({ ...params, max_tokens: 1, temperature: 0 })).choices[0].text;
    expect(first.length).toBeGreaterThan(0);
    const stopped = await client.completions.create({ ...params, n: 2, use_beam_search: true, length_penalty: 0, stop: [first] } as never);
    expect(stopped.choices[0]).toMatchObject({ text: '', finish_reason: 'stop', stop_reason: first });
    expect(stopped.choices.every((c) => !c.text.includes(first))).toBe(true);
    // logprobs: each beam's tokens', in completions' shape (their texts make the choice's).
    const scored = await client.completions.create({ ...params, n: 3, use_beam_search: true, logprobs: 2 } as never);
    for (const c of scored.choices) {
      expect(c.logprobs?.tokens?.join('')).toBe(c.text);
      expect(c.logprobs?.token_logprobs).toHaveLength(6);
      expect(c.logprobs?.top_logprobs?.every((top) => Object.keys(top ?? {}).length === 2)).toBe(true);
    }
    expect(scored.choices.map((c) => c.text)).toEqual(three.choices.map((c) => c.text)); // the same search
    const chat = await client.chat.completions.create({
      model: 'tiny-gpt',
      messages: [{ role: 'user', content: 'Hi' }],
      max_tokens: 5,
      n: 2,
      use_beam_search: true,
      length_penalty: 0,
    } as never);
    expect(chat.choices.map((c) => c.message.role)).toEqual(['assistant', 'assistant']);
    expect(chat.choices[0].message.content).not.toBe(chat.choices[1].message.content);
    // Tools hold each token to a grammar, which a search cannot follow: refused, naming them (they were ignored).
    const tools = [{ type: 'function' as const, function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];
    for (const tool_choice of ['required', 'auto'] as const)
      await expect(
        client.chat.completions.create({
          model: 'tiny-gpt',
          messages: [{ role: 'user', content: 'Weather?' }],
          tools,
          tool_choice,
          use_beam_search: true,
        } as never),
      ).rejects.toMatchObject({ status: 400, param: 'tools' });
  });

  it("takes vLLM's top_k -1 as every token (as leaving it out; it was a 400)", async () => {
    const params = { model: 'tiny-gpt', prompt: 'Once upon a time', max_tokens: 8, seed: 11 };
    const plain = await client.completions.create(params);
    const off = await client.completions.create({ ...params, top_k: -1 } as never);
    expect(off.choices[0].text).toBe(plain.choices[0].text);
  });

  it("takes vLLM's include_stop_str_in_output, allowed_token_ids, truncate_prompt_tokens and return_tokens_as_token_ids", async () => {
    const params = { model: 'tiny-gpt', prompt: 'Once upon a time there was', max_tokens: 12, temperature: 0, ignore_eos: true };
    const plain = (await client.completions.create(params)).choices[0].text;
    const stop = plain.slice(4, 7);
    const cut = plain.indexOf(stop);
    const without = (await client.completions.create({ ...params, stop: [stop] })).choices[0];
    const within = (await client.completions.create({ ...params, stop: [stop], include_stop_str_in_output: true } as never)).choices[0];
    expect(without.text).toBe(plain.slice(0, cut));
    expect(within.text).toBe(plain.slice(0, cut + stop.length));
    expect(within).toMatchObject({ finish_reason: 'stop', stop_reason: stop });

    // Only the allowed tokens, sampled; their ids read exactly from the log-probabilities.
    const allowed = [464, 383, 257];
    const ids = (r: OpenAI.Completions.Completion) => (r.choices[0].logprobs?.tokens ?? []).map((t) => Number(t.replace(/^token_id:/, '')));
    const drawn = await client.completions.create({
      ...params,
      temperature: 1,
      seed: 4,
      logprobs: 1,
      allowed_token_ids: allowed,
      return_tokens_as_token_ids: true,
    } as never);
    expect(drawn.choices[0].logprobs?.tokens?.every((t) => /^token_id:\d+$/.test(t))).toBe(true);
    expect(ids(drawn)).toHaveLength(12);
    expect(ids(drawn).every((id) => allowed.includes(id))).toBe(true);
    expect(new Set(ids(drawn)).size).toBeGreaterThan(1);
    // Asked for more alternatives than are allowed: the impossible ones are -9999, as vLLM has it (JSON's null for
    // -Infinity read as probability 1 by exp(null)).
    const wide = await client.completions.create({ ...params, temperature: 1, seed: 4, logprobs: 5, allowed_token_ids: allowed } as never);
    const alternatives = (wide.choices[0].logprobs?.top_logprobs ?? []).flatMap((top) => Object.values(top ?? {}));
    expect(alternatives.length).toBeGreaterThan(0);
    expect(alternatives.every((x) => typeof x === 'number')).toBe(true);
    expect(alternatives.filter((x) => x === -9999).length).toBeGreaterThan(0);
    const outside = await client.completions.create({ ...params, allowed_token_ids: [50257] } as never).catch((e) => e);
    expect(outside).toMatchObject({ status: 400, param: 'allowed_token_ids' });
    const formatted = await client.completions
      .create({ ...params, ignore_eos: false, allowed_token_ids: allowed, response_format: { type: 'json_object' } } as never)
      .catch((e) => e);
    expect(formatted).toMatchObject({ status: 400, param: 'allowed_token_ids' });

    // bad_words: the greedy text's first token, as a word, is never generated (greedy goes elsewhere).
    const asIds = { logprobs: 0, return_tokens_as_token_ids: true };
    const greedyIds = ids(await client.completions.create({ ...params, ...asIds } as never));
    const word = (await (await fetch(`${gw.url}/detokenize`, { method: 'POST', body: JSON.stringify({ model: 'tiny-gpt', tokens: [greedyIds[0]] }) })).json())
      .prompt;
    const avoided = ids(await client.completions.create({ ...params, ...asIds, bad_words: [word.trim()] } as never));
    expect(avoided).toHaveLength(12);
    expect(avoided).not.toContain(greedyIds[0]);

    // The prompt's last 3 tokens only: as if they were the whole prompt.
    const tokens = [40, 1101, 257, 1332, 11, 290];
    const truncated = await client.completions.create({ ...params, prompt: tokens, truncate_prompt_tokens: 3 } as never);
    const alone = await client.completions.create({ ...params, prompt: tokens.slice(-3) });
    expect(truncated.usage?.prompt_tokens).toBe(3);
    expect(truncated.choices[0].text).toBe(alone.choices[0].text);

    // prompt_logprobs: the prompt scored as echo with logprobs scores it, in vLLM's shape (by token id).
    const scored = (await client.completions.create({ ...params, prompt: tokens, prompt_logprobs: 2 } as never)).choices[0] as unknown as {
      prompt_logprobs: (Record<string, { logprob: number; rank: number; decoded_token: string }> | null)[];
    };
    const echoed = await client.completions.create({ ...params, prompt: tokens, max_tokens: 0, echo: true, logprobs: 0 });
    expect(scored.prompt_logprobs).toHaveLength(tokens.length);
    expect(scored.prompt_logprobs[0]).toBeNull();
    tokens.slice(1).forEach((token, i) => {
      const entry = scored.prompt_logprobs[i + 1] as Record<string, { logprob: number; rank: number }>;
      expect(entry[token].logprob).toBe(echoed.choices[0].logprobs?.token_logprobs?.[i + 1]);
      expect(Object.values(entry).some((e) => e.rank === 1)).toBe(true); // the likeliest listed too
    });
    for (const [body, param] of [
      [{ prompt_logprobs: 1, stream: true }, 'prompt_logprobs'],
      [{ prompt_logprobs: 1, echo: true }, 'prompt_logprobs'],
      [{ prompt_logprobs: 1, use_beam_search: true }, 'prompt_logprobs'],
    ] as const)
      expect(await client.completions.create({ ...params, ...body } as never).catch((e) => e)).toMatchObject({ status: 400, param });

    const chat = await client.chat.completions.create({
      model: 'tiny-gpt',
      messages: [{ role: 'user', content: 'Hi' }],
      max_tokens: 3,
      logprobs: true,
      return_tokens_as_token_ids: true,
      prompt_logprobs: 0,
    } as never);
    expect((chat as unknown as { prompt_logprobs: unknown[] }).prompt_logprobs[0]).toBeNull();
    for (const t of chat.choices[0].logprobs?.content ?? []) {
      expect(t.token).toMatch(/^token_id:\d+$/);
      expect(Buffer.from(t.bytes ?? []).toString()).toBe(t.token);
    }
  });

  it("lays a chat out as vLLM's add_generation_prompt and continue_final_message ask (a prefill continued)", async () => {
    const tokenize = async (body: object) => {
      const res = await fetch(`${gw.url}/tokenize`, { method: 'POST', body: JSON.stringify({ model: 'tiny-gpt', ...body }) });
      const tokens = (await res.json()).tokens as number[];
      return (await (await fetch(`${gw.url}/detokenize`, { method: 'POST', body: JSON.stringify({ model: 'tiny-gpt', tokens }) })).json()).prompt;
    };
    const hi = { role: 'user' as const, content: 'Hi' };
    const prefill = { role: 'assistant' as const, content: 'Once upon' };
    expect(await tokenize({ messages: [hi] })).toBe('User: Hi\nAssistant:');
    expect(await tokenize({ messages: [hi], add_generation_prompt: false })).toBe('User: Hi');
    expect(await tokenize({ messages: [hi, prefill], continue_final_message: true, add_generation_prompt: false })).toBe('User: Hi\nAssistant: Once upon');
    const chat = await client.chat.completions.create({
      model: 'tiny-gpt',
      messages: [hi, prefill],
      max_tokens: 8,
      temperature: 0,
      continue_final_message: true,
      add_generation_prompt: false,
    } as never);
    const completion = await client.completions.create({ model: 'tiny-gpt', prompt: 'User: Hi\nAssistant: Once upon', max_tokens: 8, temperature: 0 });
    expect(chat.choices[0].message.content).toBe(completion.choices[0].text);
    for (const body of [
      { messages: [hi], continue_final_message: true },
      { messages: [hi, prefill], continue_final_message: true, add_generation_prompt: true },
    ])
      expect(await client.chat.completions.create({ model: 'tiny-gpt', max_tokens: 2, ...body } as never).catch((e) => e)).toMatchObject({
        status: 400,
        param: 'continue_final_message',
      });
  });

  it('returns log-probabilities: completions’ shape, one entry per token, the chosen one the most likely when greedy', async () => {
    const r = await client.completions.create({ model: 'tiny-gpt', prompt: 'The quick brown fox', max_tokens: 6, temperature: 0, logprobs: 3 });
    const lp = r.choices[0].logprobs as NonNullable<OpenAI.Completions.CompletionChoice['logprobs']>;
    expect(lp.tokens?.join('')).toBe(r.choices[0].text);
    expect(lp.token_logprobs).toHaveLength(r.usage?.completion_tokens as number);
    lp.top_logprobs?.forEach((top, i) => {
      const values = Object.values(top ?? {});
      expect(values).toHaveLength(3);
      expect(values[0]).toBe(lp.token_logprobs?.[i]); // greedy: the chosen token is the most likely
      expect([...values].sort((a, b) => b - a)).toEqual(values);
    });
    expect(lp.text_offset).toEqual(lp.tokens?.map((_, i) => (lp.tokens as string[]).slice(0, i).join('').length));
  });

  it('goes on past end-of-text (ignore_eos), holds it off (min_tokens) and stops at stop_token_ids, as vLLM', async () => {
    const eos = 50256;
    const params = { model: 'tiny-gpt', prompt: 'Hello', max_tokens: 5, temperature: 0, logit_bias: { [eos]: 100 } }; // always end-of-text
    const done = async (extra: object) => {
      const r = await client.completions.create({ ...params, ...extra } as never);
      const stopReason = (r.choices[0] as { stop_reason?: unknown }).stop_reason;
      return { text: r.choices[0].text, finish: r.choices[0].finish_reason, tokens: r.usage?.completion_tokens, ...(stopReason != null && { stopReason }) };
    };
    expect(await done({})).toEqual({ text: '', finish: 'stop', tokens: 1 });
    expect(await done({ ignore_eos: true })).toEqual({ text: '', finish: 'length', tokens: 5 });
    const held = await done({ min_tokens: 3 });
    expect(held).toMatchObject({ finish: 'stop', tokens: 4 }); // three drawn without it, then end-of-text
    expect(held.text.length).toBeGreaterThan(0);
    const ale = { ...params, logit_bias: { 1000: 100 } }; // always "ale"
    expect(await done({ ...ale, stop_token_ids: [1000] })).toEqual({ text: '', finish: 'stop', tokens: 1, stopReason: 1000 });
    expect(await done({ ...ale, stop_token_ids: [1000], min_tokens: 2 })).toMatchObject({ finish: 'stop', tokens: 3 });
    const refused = await client.completions.create({ ...params, min_tokens: 6 } as never).catch((e: unknown) => e);
    expect(refused).toMatchObject({ status: 400, param: 'min_tokens' });
  });

  it('counts tokens and turns them back into text (vLLM’s /tokenize and /detokenize)', async () => {
    const post = async (path: string, body: object) => {
      const res = await fetch(`${gw.url}${path}`, { method: 'POST', body: JSON.stringify(body) });
      return { status: res.status, body: await res.json() };
    };
    const counted = await post('/tokenize', { model: 'tiny-gpt', prompt: 'The quick brown fox' });
    expect(counted).toEqual({ status: 200, body: { count: 4, max_model_len: 512, tokens: [464, 2068, 7586, 21831] } });
    const completion = await client.completions.create({ model: 'tiny-gpt', prompt: 'The quick brown fox', max_tokens: 1 });
    expect(completion.usage?.prompt_tokens).toBe(counted.body.count);
    // An empty prompt is generated from end-of-text: one token, counted so by both.
    const empty = await post('/tokenize', { model: 'tiny-gpt', prompt: '' });
    expect(empty.body).toMatchObject({ count: 1, tokens: [50256] });
    expect((await client.completions.create({ model: 'tiny-gpt', prompt: '', max_tokens: 1 })).usage?.prompt_tokens).toBe(1);
    const chat = await post('/tokenize', { model: 'tiny-gpt', messages: [{ role: 'user', content: 'Hi' }] });
    const answered = await client.chat.completions.create({ model: 'tiny-gpt', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 1 });
    expect(chat.body.count).toBe(answered.usage?.prompt_tokens);
    expect(await post('/detokenize', { model: 'tiny-gpt', tokens: counted.body.tokens })).toEqual({ status: 200, body: { prompt: 'The quick brown fox' } });
    expect((await post('/detokenize', { model: 'tiny-gpt', tokens: [50257] })).status).toBe(400);
    expect((await post('/tokenize', { model: 'mlp', prompt: 'x' })).status).toBe(404);
    // Each form errs in its own terms.
    expect(await post('/tokenize', { model: 'tiny-gpt' })).toMatchObject({ status: 400, body: { error: { message: 'missing required parameter: prompt' } } });
    expect(await post('/tokenize', { model: 'tiny-gpt', messages: 5 })).toMatchObject({ status: 400, body: { error: { param: 'messages' } } });
  });

  it('reuses a cached prompt prefix (a shared system message): same answer, usage says how many tokens were cached', async () => {
    const system = 'You are a careful assistant. Answer briefly, in plain words, and never make anything up. '.repeat(3);
    const ask = (content: string) =>
      client.chat.completions.create({
        model: 'tiny-gpt',
        messages: [
          { role: 'system', content: system },
          { role: 'user', content },
        ],
        max_tokens: 6,
        temperature: 0,
      });
    const before = (await stats()).cachedPromptTokens;
    const first = await ask('What is a gateway?');
    const again = await ask('What is a gateway?');
    const other = await ask('And a batcher?');
    expect(again.choices[0].message.content).toBe(first.choices[0].message.content);
    const cached = (r: typeof first) => (r.usage as { prompt_tokens_details?: { cached_tokens: number } }).prompt_tokens_details?.cached_tokens ?? 0;
    expect(cached(again)).toBe(Math.floor(((first.usage?.prompt_tokens ?? 0) - 1) / 16) * 16);
    expect(cached(other)).toBeGreaterThanOrEqual(48); // the system message's whole blocks
    expect((await stats()).cachedPromptTokens - before).toBe(cached(again) + cached(other));
  });

  it('answers the same with the prompt computed in chunks (prefill_chunk), streamed beside a short one', async () => {
    const prompt = 'A long prompt, computed a few tokens per step. '.repeat(12); // ~130 tokens: 5 chunks of 32
    const params = { prompt, max_tokens: 8, temperature: 0 };
    const whole = await client.completions.create({ model: 'tiny-gpt', ...params });
    const [chunked, short] = await Promise.all([
      client.completions.create({ model: 'tiny-gpt-chunked', ...params }),
      client.completions.create({ model: 'tiny-gpt-chunked', prompt: 'Short', max_tokens: 8, temperature: 0 }),
    ]);
    expect(chunked.choices[0].text).toBe(whole.choices[0].text);
    expect(chunked.usage).toEqual({ prompt_tokens: whole.usage?.prompt_tokens, completion_tokens: 8, total_tokens: (whole.usage?.prompt_tokens ?? 0) + 8 });
    expect(short.usage?.completion_tokens).toBe(8);
  });

  it('answers a batch of prompts (text or tokens), n choices each, in prompt order', async () => {
    const params = { model: 'tiny-gpt', max_tokens: 4, seed: 30, temperature: 0.9 };
    const r = await client.completions.create({ ...params, prompt: ['Hello', 'A much longer prompt than that'], n: 2 });
    const alone = async (prompt: string, n: number) => (await client.completions.create({ ...params, prompt, n })).choices.map((c) => c.text);
    expect(r.choices.map((c) => c.text)).toEqual([...(await alone('Hello', 2)), ...(await alone('A much longer prompt than that', 2))]);
    expect(r.choices.map((c) => c.index)).toEqual([0, 1, 2, 3]);
    expect(r.usage).toMatchObject({ prompt_tokens: 1 + 6, completion_tokens: 16 });
    // Token lists, as evaluation harnesses send them, scored.
    const scored = await client.completions.create({
      model: 'tiny-gpt',
      prompt: [
        [464, 2068],
        [15496, 995, 11],
      ] as never,
      max_tokens: 0,
      echo: true,
      logprobs: 0,
    });
    expect(scored.choices.map((c) => c.logprobs?.tokens?.length)).toEqual([2, 3]);
    const tooMany = await client.completions.create({ ...params, prompt: ['a', 'b', 'c', 'd', 'e'], n: 13 }).catch((e: unknown) => e);
    expect(tooMany).toMatchObject({ status: 400, param: 'n' });
  });

  it('echoes and scores a prompt as evaluation harnesses ask (echo, logprobs, max_tokens 0)', async () => {
    const prompt = 'The capital of France is Paris';
    const scored = await client.completions.create({ model: 'tiny-gpt', prompt, max_tokens: 0, echo: true, logprobs: 1 });
    const lp = scored.choices[0].logprobs as NonNullable<OpenAI.Completions.CompletionChoice['logprobs']>;
    expect(scored.choices[0].text).toBe(prompt);
    expect(lp.tokens?.join('')).toBe(prompt);
    expect(lp.token_logprobs?.[0]).toBeNull(); // nothing comes before the first token
    expect(lp.top_logprobs?.[0]).toBeNull();
    expect(lp.token_logprobs?.slice(1).every((x) => Number.isFinite(x) && x < 0)).toBe(true);
    expect(scored.usage).toMatchObject({ prompt_tokens: lp.tokens?.length, completion_tokens: 0 });

    // With a completion: the prompt, then what the same request without echo answers.
    const params = { model: 'tiny-gpt', prompt, max_tokens: 5, seed: 9 };
    const plain = (await client.completions.create(params)).choices[0].text;
    const echoed = await client.completions.create({ ...params, echo: true, logprobs: 1 });
    expect(echoed.choices[0].text).toBe(prompt + plain);
    const echoedLp = echoed.choices[0].logprobs as NonNullable<OpenAI.Completions.CompletionChoice['logprobs']>;
    expect(echoedLp.token_logprobs?.slice(0, lp.tokens?.length)).toEqual(lp.token_logprobs);
    // Streamed: the prompt first, its tokens' log-probabilities with it.
    const chunks: { text: string; tokens: string[] }[] = [];
    for await (const chunk of await client.completions.create({ ...params, echo: true, logprobs: 1, stream: true }))
      for (const c of chunk.choices) chunks.push({ text: c.text, tokens: c.logprobs?.tokens ?? [] });
    expect(chunks[0]).toEqual({ text: prompt, tokens: lp.tokens });
    expect(chunks.map((c) => c.text).join('')).toBe(prompt + plain);
  });

  it('streams chat log-probabilities chunk by chunk, together the same as the answer not streamed', async () => {
    const params = { model: 'tiny-gpt', messages: [{ role: 'user' as const, content: 'Hi' }], max_tokens: 10, seed: 11, logprobs: true, top_logprobs: 2 };
    const whole = await client.chat.completions.create(params);
    const content = whole.choices[0].logprobs?.content ?? [];
    expect(content).toHaveLength(10);
    expect(content.map((t) => t.token).join('')).toBe(whole.choices[0].message.content);
    for (const t of content) {
      expect(t.top_logprobs).toHaveLength(2);
      expect(Buffer.from(t.bytes ?? []).toString()).toBe(t.token);
      expect(t.logprob).toBeLessThanOrEqual(t.top_logprobs[0].logprob); // sampled, not necessarily the most likely
    }
    const streamed: unknown[] = [];
    for await (const chunk of await client.chat.completions.create({ ...params, stream: true }))
      for (const c of chunk.choices) streamed.push(...(c.logprobs?.content ?? []));
    expect(streamed).toEqual(content);
    const plain = await client.chat.completions.create({ ...params, logprobs: undefined, top_logprobs: undefined });
    expect(plain.choices[0].logprobs).toBeNull();
    const refused = await client.chat.completions.create({ ...params, logprobs: false }).catch((e: unknown) => e);
    expect(refused).toMatchObject({ status: 400, param: 'top_logprobs' });
  });

  it.each([
    ['an unknown model', { model: 'gpt-5', prompt: 'x' }, 404, 'model', 'model_not_found'],
    ['a tensor model', { model: 'mlp', prompt: 'x' }, 404, 'model', 'model_not_found'],
    ['negative max_tokens', { model: 'tiny-gpt', prompt: 'x', max_tokens: -1 }, 400, 'max_tokens', null],
    ['a string temperature', { model: 'tiny-gpt', prompt: 'x', temperature: 'hot' }, 400, 'temperature', null],
    ['n over 64', { model: 'tiny-gpt', prompt: 'x', n: 65 }, 400, 'n', null],
    ['more tokens than the context', { model: 'tiny-gpt', prompt: 'x', max_tokens: 5000 }, 400, 'max_tokens', 'context_length_exceeded'],
    ['no prompt', { model: 'tiny-gpt' }, 400, 'prompt', null],
    ['a penalty out of range', { model: 'tiny-gpt', prompt: 'x', frequency_penalty: 2.5 }, 400, 'frequency_penalty', null],
    ['a logit_bias token outside the vocabulary', { model: 'tiny-gpt', prompt: 'x', logit_bias: { 50257: 1 } }, 400, 'logit_bias', null],
    ['more than 5 logprobs', { model: 'tiny-gpt', prompt: 'x', logprobs: 6 }, 400, 'logprobs', null],
    ['a prompt token outside the vocabulary', { model: 'tiny-gpt', prompt: [464, 50257] }, 400, 'prompt', null],
    ['max_tokens 0 without echo', { model: 'tiny-gpt', prompt: 'x', max_tokens: 0 }, 400, 'max_tokens', null],
    ['best_of below n', { model: 'tiny-gpt', prompt: 'x', n: 3, best_of: 2 }, 400, 'best_of', null],
    ['best_of streamed', { model: 'tiny-gpt', prompt: 'x', best_of: 3, stream: true }, 400, 'best_of', null],
    ['prompts x best_of over 64', { model: 'tiny-gpt', prompt: ['x', 'y'], best_of: 33 }, 400, 'best_of', null],
    ['beam search streamed', { model: 'tiny-gpt', prompt: 'x', use_beam_search: true, stream: true }, 400, 'stream', null],
    ['beam search with top_p', { model: 'tiny-gpt', prompt: 'x', use_beam_search: true, top_p: 0.5 }, 400, 'top_p', null],
    [
      'beam search with a format',
      { model: 'tiny-gpt', prompt: 'x', use_beam_search: true, response_format: { type: 'json_object' } },
      400,
      'response_format',
      null,
    ],
    ['more beams than slots', { model: 'tiny-gpt', prompt: 'x', use_beam_search: true, n: 17 }, 400, 'n', null],
  ])('refuses %s with OpenAI’s error object', async (_name, body, status, param, code) => {
    const err = await client.completions.create(body as never).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect(err).toMatchObject({ status, param, code, type: status === 404 || status === 400 ? 'invalid_request_error' : expect.any(String) });
  });
});

describe('a streamed request of more choices than the model has slots', () => {
  it('streams them all, the later ones starting as earlier ones finish (it waited for all to start: a 504 here)', async () => {
    const choices = new Map<number, string | null>();
    const body = { model: 'tiny-gpt-two', prompt: 'Hello', max_tokens: 120, ignore_eos: true, stream: true as const, n: 3, seed: 1 };
    for await (const chunk of await client.completions.create(body))
      for (const c of chunk.choices) if (c.finish_reason || !choices.has(c.index)) choices.set(c.index, c.finish_reason);
    expect([...choices.entries()].sort()).toEqual([
      [0, 'length'],
      [1, 'length'],
      [2, 'length'],
    ]);
  });
});

describe('a chat without max_tokens', () => {
  const words = (n: number) => ' hello'.repeat(n); // (one token each; the chat's layout adds 6)
  it('whose messages fill the context is refused as too long, naming them (it was a 400 of min_tokens > max_tokens -94, or a 200 of nothing)', async () => {
    for (const n of [600, 506]) {
      const err = await client.chat.completions.create({ model: 'tiny-gpt', messages: [{ role: 'user', content: words(n) }] }).catch((e: unknown) => e);
      expect(err).toMatchObject({ status: 400, param: 'messages', code: 'context_length_exceeded' });
    }
  });

  it('whose max_completion_tokens overflows the context hears of max_completion_tokens (it was named max_tokens)', async () => {
    const err = await client.chat.completions
      .create({ model: 'tiny-gpt', messages: [{ role: 'user', content: 'Hi' }], max_completion_tokens: 600 })
      .catch((e) => e);
    expect(err).toMatchObject({ status: 400, param: 'max_completion_tokens', code: 'context_length_exceeded' });
  });

  it('gets its default room after truncate_prompt_tokens has cut the prompt', async () => {
    const res = await client.chat.completions.create({
      model: 'tiny-gpt',
      messages: [{ role: 'user', content: words(600) }],
      truncate_prompt_tokens: 100,
      seed: 1,
    } as never);
    expect(res.usage?.prompt_tokens).toBe(100);
    expect(res.usage?.completion_tokens).toBeGreaterThan(0);
  });
});

describe('a prompt of token ids outside the vocabulary', () => {
  it('is refused before it reaches a replica: the streams sharing its steps go on', async () => {
    const running = sse('/v1/completions', { model: 'tiny-gpt', prompt: 'Beside it', max_tokens: 80, ignore_eos: true, stream: true, seed: 4 });
    await new Promise((r) => setTimeout(r, 50));
    const res = await fetch(`${gw.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ model: 'tiny-gpt', prompt: [[1000000000]], max_tokens: 4 }) });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/token 1000000000 is not in the model's vocabulary/);
    const r = await running;
    expect(r.events.at(-1)).toBe('[DONE]');
    expect(r.events.some((e) => e.includes('"error"'))).toBe(false);
  });
});

describe('streaming mechanics (eventsource-parser over fetch)', () => {
  it('delivers tokens incrementally: the first event arrives while the sequence is still generating', async () => {
    let activeAtFirst = -1;
    const r = await sse('/v1/completions', { model: 'tiny-gpt', prompt: 'Streaming', max_tokens: 200, stream: true, seed: 3 }, async () => {
      if (activeAtFirst === -1) activeAtFirst = (await stats()).active;
    });
    expect(r.status).toBe(200);
    expect(r.contentType).toMatch(/text\/event-stream/);
    expect(activeAtFirst).toBe(1);
    expect(r.reads).toBeGreaterThan(1);
    expect(r.events.at(-1)).toBe('[DONE]');
  });

  it('lets many concurrent streams share generation steps', async () => {
    const before = await stats();
    const runs = await Promise.all(
      Array.from({ length: 8 }, (_, i) => sse('/v1/completions', { model: 'tiny-gpt', prompt: `Stream ${i}`, max_tokens: 30, stream: true })),
    );
    expect(runs.every((r) => r.events.at(-1) === '[DONE]')).toBe(true);
    const after = await stats();
    const shared = Object.entries(after.stepSizes as Record<string, number>).filter(([size, n]) => Number(size) > 1 && n > (before.stepSizes[size] ?? 0));
    expect(shared.length).toBeGreaterThan(0); // steps that carried several sequences at once
    expect(Math.max(...Object.keys(after.stepSizes).map(Number))).toBeGreaterThanOrEqual(4);
    // Triton's statistics of a generative model: a sequence is an inference, a step an execution.
    const [was, is] = [before.model_stats[0], after.model_stats[0]];
    expect(is.inference_count - was.inference_count).toBe(8);
    expect(is.inference_stats.success.count - was.inference_stats.success.count).toBe(8);
    expect(is.execution_count - was.execution_count).toBe(after.steps - before.steps);
    const sized = (m: typeof is) =>
      (m.batch_stats as { batch_size: number; compute_infer: { count: number } }[]).reduce((n, b) => n + b.batch_size * b.compute_infer.count, 0);
    expect(sized(is) - sized(was)).toBe(
      Object.entries(after.stepSizes as Record<string, number>).reduce((n, [k, v]) => n + Number(k) * (v - (before.stepSizes[k] ?? 0)), 0),
    );
  });

  it('frees the slot of a client that disconnects mid-stream', async () => {
    const before = await stats();
    const abort = new AbortController();
    let events = 0;
    await sse(
      '/v1/completions',
      { model: 'tiny-gpt', prompt: 'Goodbye', max_tokens: 400, stream: true },
      () => {
        if (++events === 3) abort.abort();
      },
      abort.signal,
    ).catch(() => {});
    await until(async () => (await stats()).active === 0);
    const after = await stats();
    expect(after.active).toBe(0);
    expect(after.shed.cancelled - before.shed.cancelled).toBe(1);
    expect(after.tokens - before.tokens).toBeLessThan(400); // it stopped early
  });

  it('answers an error before the first byte as a status code', async () => {
    const r = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ model: 'tiny-gpt', messages: [], stream: true }) });
    expect(r.status).toBe(400);
    expect((await r.json()).error).toMatchObject({ type: 'invalid_request_error', param: 'messages' });
  });
});
