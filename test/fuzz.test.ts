import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODELS, startTestGateway } from './helpers.js';

// Bad input gets a 4xx and changes nothing: valid requests to every kind of route, mutated at random (a field
// dropped, a value swapped for null, a huge number, a long string, a wrong type; a known field added; the body
// cut short) from a fixed seed, so a failure is the same on every run. It found prompt token ids outside the
// vocabulary reaching a replica (a 500, and the streams sharing the step ended).
let gw: Awaited<ReturnType<typeof startTestGateway>>;
beforeAll(async () => {
  const one = { device: 'cpu', threads: 1, scaling: { min_containers: 1 } };
  gw = await startTestGateway({
    models: {
      mlp: { ...one, path: `${MODELS}mlp.onnx` },
      identity: { ...one, path: `${MODELS}identity.onnx` },
      'tiny-gpt': { ...one, path: `${MODELS}tiny-gpt.onnx`, batching: { max_batch_size: 8 } },
      r1: { ...one, path: `${MODELS}tiny-gpt.onnx`, reasoning_parser: 'deepseek_r1' },
      'tiny-embed': { ...one, path: `${MODELS}tiny-embed.onnx` },
      'tiny-rerank': { ...one, path: `${MODELS}tiny-rerank.onnx` },
    },
  });
});
afterAll(() => gw?.shutdown());

/** A linear congruential generator: the same mutations on every run. */
function random(seed: number) {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return s / 2 ** 31;
  };
}

const x64 = { name: 'x', shape: [1, 64], datatype: 'FP32', data: Array(64).fill(0.5) };
const VALID: [string, object][] = [
  ['/v2/models/mlp/infer', { inputs: [x64], outputs: [{ name: 'probs', parameters: { classification: 2 } }] }],
  ['/v2/models/identity/infer', { id: 'a', inputs: [{ name: 'x', shape: [2, 3], datatype: 'FP32', data: [1, 2, 3, 4, 5, 6] }], parameters: { priority: 1 } }],
  ['/v1/models/mlp:predict', { instances: [Array(64).fill(0.1)] }],
  ['/v1/completions', { model: 'tiny-gpt', prompt: ['Hi', [464, 2]], max_tokens: 4, n: 2, logprobs: 2, echo: true, stop: ['x'], seed: 1 }],
  ['/v1/completions', { model: 'tiny-gpt', prompt: [464, 2, 318], max_tokens: 2, stream: true }],
  [
    '/v1/chat/completions',
    {
      model: 'tiny-gpt',
      messages: [
        { role: 'system', content: 'a' },
        { role: 'user', content: [{ type: 'text', text: 'b' }] },
      ],
      max_tokens: 4,
      logprobs: true,
      top_logprobs: 2,
      response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object', properties: { a: { type: 'integer' } } } } },
    },
  ],
  [
    '/v1/chat/completions',
    { model: 'tiny-gpt', messages: [{ role: 'user', content: 'b' }], max_tokens: 4, stream: true, stream_options: { include_usage: true } },
  ],
  ['/v1/embeddings', { model: 'tiny-embed', input: ['a', [464, 2]], encoding_format: 'base64' }],
  ['/v1/rerank', { model: 'tiny-rerank', query: 'q', documents: ['a', 'b'], top_n: 1 }],
  ['/v1/messages', { model: 'tiny-gpt', max_tokens: 4, messages: [{ role: 'user', content: 'hi' }], system: 'x', stop_sequences: ['a'] }],
  ['/v1/responses', { model: 'tiny-gpt', input: [{ role: 'user', content: 'hi' }], max_output_tokens: 4 }],
  ['/generate', { inputs: 'hi', parameters: { max_new_tokens: 4, details: true, best_of: 2, do_sample: true, top_n_tokens: 2 } }],
  ['/v2/models/tiny-gpt/generate', { text_input: 'hi', parameters: { max_tokens: 4 } }],
  ['/tokenize', { model: 'tiny-gpt', prompt: 'hi' }],
  [
    '/v1/chat/completions',
    {
      model: 'r1',
      messages: [{ role: 'user', content: 'b' }],
      max_tokens: 8,
      thinking_token_budget: 2,
      response_format: { type: 'json_object' },
      stream: true,
    },
  ],
  [
    '/v1/messages',
    {
      model: 'r1',
      max_tokens: 8,
      messages: [{ role: 'user', content: 'hi' }],
      thinking: { type: 'enabled', budget_tokens: 2 },
      tools: [{ name: 'f', input_schema: { type: 'object' } }],
      tool_choice: { type: 'any' },
    },
  ],
  ['/v1/responses', { model: 'r1', input: 'hi', max_output_tokens: 6, reasoning: { effort: 'none' }, text: { format: { type: 'json_object' } } }],
];
const ADDED = [
  'stream',
  'n',
  'logprobs',
  'best_of',
  'max_tokens',
  'seed',
  'echo',
  'tools',
  'response_format',
  'use_beam_search',
  'prompt_logprobs',
  'stop',
  'logit_bias',
  'reasoning_effort',
  'reasoning',
  'thinking_token_budget',
];

describe('request bodies mutated at random', () => {
  it('are answered with a 4xx (or served), never a 5xx, and the gateway serves on', async () => {
    const rnd = random(20261207);
    const pick = <T>(list: readonly T[]): T => list[Math.floor(rnd() * list.length)];
    const odd = (): unknown =>
      pick<() => unknown>([
        () => null,
        () => -1,
        () => 1e308,
        () => 2 ** 53 + 1,
        () => '',
        () => 'x'.repeat(3000),
        () => [],
        () => ({}),
        () => true,
        () => [1e9],
        () => 1.5,
      ])();
    const mutate = (v: unknown): unknown => {
      if (rnd() < 0.12) return odd();
      if (Array.isArray(v)) return v.map(mutate);
      if (typeof v === 'number' && rnd() < 0.15) return pick([50257, 1e9, -3, 0]); // (token ids, sizes, counts just out of range)
      if (v === null || typeof v !== 'object') return v;
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) if (rnd() > 0.07) out[k] = mutate(x);
      if (rnd() < 0.1) out[pick(ADDED)] = odd();
      return out;
    };
    const failures: string[] = [];
    const served = { ok: 0, refused: 0 };
    for (let i = 0; i < 600; i++) {
      const [path, valid] = pick(VALID);
      const json = JSON.stringify(mutate(valid));
      const body = rnd() < 0.03 ? json.slice(0, Math.floor(rnd() * json.length)) : json;
      const res = await fetch(gw.url + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      const text = await res.text(); // (a stream read to its end: an error in it shows there)
      if (res.status >= 500 || text.includes('"server_error"')) failures.push(`${res.status} ${path} ${body.slice(0, 300)} → ${text.slice(0, 200)}`);
      served[res.status < 300 ? 'ok' : 'refused']++;
    }
    expect(failures).toEqual([]);
    expect(served.ok).toBeGreaterThan(20); // (mutations that keep a request valid are served)
    const after = await fetch(`${gw.url}/v2/models/identity/infer`, { method: 'POST', body: JSON.stringify({ inputs: [{ ...x64, shape: [1, 64] }] }) });
    expect(after.status).toBe(200);
  });
});
