import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { infer, MODELS, startTestGateway } from './helpers.js';

// models.X.response_cache_mb: a request the model has answered before is answered from memory (Triton's response cache).
let gw: Awaited<ReturnType<typeof startTestGateway>>;
beforeAll(async () => {
  gw = await startTestGateway({
    models: {
      mlp: { path: `${MODELS}mlp.onnx`, device: 'cpu', response_cache_mb: 1, scaling: { min_containers: 1 } },
      'mlp-uncached': { path: `${MODELS}mlp.onnx`, device: 'cpu', scaling: { min_containers: 1 } },
      'tiny-embed': { path: `${MODELS}tiny-embed.onnx`, device: 'cpu', response_cache_mb: 1, scaling: { min_containers: 1 } },
    },
  });
});
afterAll(() => gw?.shutdown());

const x = (seed: number) => [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: Array.from({ length: 64 }, (_, i) => Math.sin(seed * 64 + i)) }];
type Count = { count: number };
type Stats = { execution_count: number; inference_stats: { cache_hit: Count; cache_miss: Count; success: Count; queue: Count } };
const all = async (model: string) => (await fetch(`${gw.url}/v2/models/${model}/stats`)).json();
const stats = async (model: string) => (await all(model)).model_stats[0] as Stats;

describe('response cache', () => {
  it('answers a request seen before without a batch, with the same outputs; another request still runs', async () => {
    const first = await infer(gw.url, 'mlp', x(1));
    const again = await infer(gw.url, 'mlp', x(1));
    const other = await infer(gw.url, 'mlp', x(2));
    expect([first.status, again.status, other.status]).toEqual([200, 200, 200]);
    expect(again.body.outputs).toEqual(first.body.outputs);
    expect(other.body.outputs?.[0].data).not.toEqual(first.body.outputs?.[0].data);
    expect(first.headers.get('x-batch-size')).toBe('1');
    expect(again.headers.get('x-batch-size')).toBe('0'); // no batch ran for it
    const s = await stats('mlp');
    expect(s.execution_count).toBe(2); // x(1) once, x(2) once
    expect(s.inference_stats.cache_hit.count).toBe(1);
    expect(s.inference_stats.cache_miss.count).toBe(2);
    expect(s.inference_stats.success.count).toBe(3);
    expect(s.inference_stats.queue.count).toBe(3); // (Triton's queue counts cache hits too)
    expect(await all('mlp')).toMatchObject({ requests: 3, cacheHits: 1, batches: 2 });
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    expect(metrics).toMatch(/^infergate_cache_lookups_total\{[^}]*infergate_model="mlp"[^}]*result="hit"[^}]*\} 1$/m);
    // Without response_cache_mb every request runs.
    await infer(gw.url, 'mlp-uncached', x(1));
    await infer(gw.url, 'mlp-uncached', x(1));
    expect((await stats('mlp-uncached')).execution_count).toBe(2);
  });

  it('serves an embedding of a text seen before from the cache, equal to the one computed', async () => {
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const one = await client.embeddings.create({ model: 'tiny-embed', input: 'the quick brown fox' });
    const before = await stats('tiny-embed');
    const two = await client.embeddings.create({ model: 'tiny-embed', input: 'the quick brown fox' });
    expect(two.data[0].embedding).toEqual(one.data[0].embedding);
    const after = await stats('tiny-embed');
    expect(after.execution_count).toBe(before.execution_count);
    expect(after.inference_stats.cache_hit.count).toBe(before.inference_stats.cache_hit.count + 1);
  });

  it('is refused for a stateful model and for a generative one, saying why', async () => {
    await expect(startTestGateway({ models: { s: { path: `${MODELS}mlp.onnx`, response_cache_mb: 1, sequence: { state: { h: 'h_out' } } } } })).rejects.toThrow(
      /models\.s\.response_cache_mb: a stateful model's answer depends on its sequence's state/,
    );
    await expect(startTestGateway({ models: { g: { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', response_cache_mb: 1 } } })).rejects.toThrow(
      /models\.g\.response_cache_mb: a generative model draws its tokens/,
    );
  });
});
