import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/index.js';
import { MODELS, startTestGateway } from './helpers.js';

// Speculative decoding by prompt lookup (vLLM's ngram method) on real replicas of tiny-gpt, beside the same model
// decoding a token a step: the same text through the openai client, in fewer steps.
let gw: Awaited<ReturnType<typeof startTestGateway>>;
let client: OpenAI;
beforeAll(async () => {
  const model = { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', scaling: { min_containers: 1 } };
  gw = await startTestGateway({
    telemetry: { metrics: true },
    models: {
      plain: model,
      fast: { ...model, speculative: { num_speculative_tokens: 5 } },
      suffix: { ...model, speculative: { method: 'suffix', num_speculative_tokens: 8 } },
    },
  });
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused' });
});
afterAll(() => gw?.shutdown());

const stats = async (model: string) => (await fetch(`${gw.url}/v2/models/${model}/stats`)).json();

describe('speculative decoding', () => {
  it('answers what one token a step answers, greedy or seeded, in fewer steps than tokens where text repeats', async () => {
    const ask = async (model: string, extra: object) => {
      const r = await client.completions.create({ model, prompt: 'Champ is the', max_tokens: 48, ...extra });
      return { text: r.choices[0].text, tokens: r.usage?.completion_tokens };
    };
    const before = await stats('fast');
    for (const extra of [{ temperature: 0 }, { temperature: 1, seed: 3 }, { temperature: 0.7, seed: 5, top_p: 0.9, frequency_penalty: 0.3 }]) {
      const fast = await ask('fast', extra);
      expect(fast, JSON.stringify(extra)).toEqual(await ask('plain', extra));
      expect(fast.tokens).toBe(48); // never past max_tokens, drafts or not
    }
    const after = await stats('fast');
    expect(after.acceptedDraftTokens - before.acceptedDraftTokens).toBeGreaterThan(20);
    expect(after.steps - before.steps).toBeLessThan(after.tokens - before.tokens);
  });

  it("drafts a repeated request from the earlier one's text (method suffix): the same answer in far fewer steps", async () => {
    // Sampled text seldom repeats itself; an identical request (seeded) draws the same tokens again.
    const params = { prompt: 'An agent asks the same thing again', max_tokens: 48, temperature: 1, seed: 7 };
    const plain = (await client.completions.create({ model: 'plain', ...params })).choices[0].text;
    const steps = async () => (await stats('suffix')).steps;
    const s0 = await steps();
    const first = (await client.completions.create({ model: 'suffix', ...params })).choices[0].text;
    const s1 = await steps();
    const again = (await client.completions.create({ model: 'suffix', ...params })).choices[0].text;
    const s2 = await steps();
    expect([first, again]).toEqual([plain, plain]);
    expect(s2 - s1).toBeLessThan((s1 - s0) / 3);
  });

  it('streams the same pieces, stops at a stop sequence, and counts its drafts in /metrics', async () => {
    const stream = async (model: string) => {
      const s = await client.chat.completions.create({
        model,
        messages: [{ role: 'user', content: 'Champ Champ' }],
        max_tokens: 40,
        temperature: 0,
        stop: ['ChampChampChamp'],
        stream: true,
      });
      let text = '';
      let finish: string | null = null;
      for await (const chunk of s) {
        text += chunk.choices[0]?.delta?.content ?? '';
        finish = chunk.choices[0]?.finish_reason ?? finish;
      }
      return { text, finish };
    };
    const fast = await stream('fast');
    expect(fast).toEqual(await stream('plain'));
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    expect(metrics).toMatch(/infergate_generation_draft_tokens_total\{gen_ai_request_model="fast",accepted="true"\} [1-9]/);
  });

  it("drafts from a request's prediction (OpenAI's Predicted Outputs), on a model without speculative too", async () => {
    const messages = [{ role: 'user' as const, content: 'Champ' }];
    const ask = (model: string, prediction?: string) =>
      client.chat.completions.create({
        model,
        messages,
        max_tokens: 40,
        temperature: 0,
        ...(prediction && { prediction: { type: 'content' as const, content: prediction } }),
      });
    const answer = (await ask('plain')).choices[0].message.content as string;
    const before = await stats('plain');
    const predicted = await ask('plain', answer);
    expect(predicted.choices[0].message.content).toBe(answer);
    const details = predicted.usage?.completion_tokens_details;
    expect(details?.accepted_prediction_tokens).toBeGreaterThan(30);
    const total = (await (await fetch(`${gw.url}/tokenize`, { method: 'POST', body: JSON.stringify({ model: 'plain', prompt: answer }) })).json()).count;
    expect((details?.accepted_prediction_tokens ?? 0) + (details?.rejected_prediction_tokens ?? 0)).toBe(total);
    const after = await stats('plain');
    expect(after.steps - before.steps).toBeLessThan(15); // 40 tokens
    // A prediction that is wrong costs nothing in the text.
    expect((await ask('fast', 'something else entirely')).choices[0].message.content).toBe(answer);
  });

  it('is configured with vLLM’s names, checked', () => {
    const model = (speculative: object) => ({ models: { g: { path: `${MODELS}tiny-gpt.onnx`, speculative } } });
    expect(parseConfig(model({})).models.g.speculative).toEqual({
      method: 'ngram',
      num_speculative_tokens: 4,
      prompt_lookup_max: 4,
      prompt_lookup_min: 1,
      suffix_cache_tokens: 65536,
    });
    expect(() => parseConfig(model({ method: 'eagle' }))).toThrow(/speculative.method/);
    expect(() => parseConfig(model({ prompt_lookup_min: 5, prompt_lookup_max: 3 }))).toThrow(/prompt_lookup_min must not exceed prompt_lookup_max/);
  });
});
