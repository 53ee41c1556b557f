import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/index.js';
import { infer, MODELS, startTestGateway } from './helpers.js';

// Models' aliases (vLLM's several --served-model-name): other names every route takes, answered under the model's own.
const config = (aliases: { gpt: string[]; mlp: string[] }) => ({
  models: {
    'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', scaling: { min_containers: 1 }, aliases: aliases.gpt },
    mlp: { path: `${MODELS}mlp.onnx`, device: 'cpu', scaling: { min_containers: 1 }, aliases: aliases.mlp },
  },
});
let gw: Awaited<ReturnType<typeof startTestGateway>>;
let client: OpenAI;
beforeAll(async () => {
  gw = await startTestGateway(config({ gpt: ['gpt-3.5-turbo', 'tiny'], mlp: ['scorer'] }));
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
afterAll(() => gw?.shutdown());

const complete = (model: string) => client.completions.create({ model, prompt: 'The weather today', max_tokens: 6, temperature: 0 });
const x = [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: new Array(64).fill(0.5) }];

describe('model aliases', () => {
  it('serve the model under every route, answered under its own name', async () => {
    const own = await complete('tiny-gpt');
    const aliased = await complete('gpt-3.5-turbo');
    expect(aliased.model).toBe('tiny-gpt');
    expect(aliased.choices[0].text).toBe(own.choices[0].text);
    const tgi = await fetch(`${gw.url}/generate`, { method: 'POST', body: JSON.stringify({ model: 'tiny', inputs: 'Hi', parameters: { max_new_tokens: 2 } }) });
    expect(tgi.status).toBe(200);
    const answer = await infer(gw.url, 'scorer', x);
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ model_name: 'mlp' });
    expect((await fetch(`${gw.url}/v2/models/scorer/ready`)).status).toBe(200);
  });

  it('are listed as vLLM lists its served names, and retrieved by them', async () => {
    const listed = (await client.models.list()).data as unknown as Record<string, unknown>[];
    expect(listed.map((m) => m.id)).toEqual(['tiny-gpt', 'gpt-3.5-turbo', 'tiny']);
    expect(listed[1]).toMatchObject({ root: 'tiny-gpt', max_model_len: 512 });
    expect(await client.models.retrieve('tiny')).toMatchObject({ id: 'tiny', root: 'tiny-gpt' });
    expect(await complete('gpt-4').catch((e) => e.status)).toBe(404);
  });

  it('change in place on a reload: the old alias is gone, the new one served, the replicas kept', async () => {
    const pid = (await (await fetch(`${gw.url}/v2/models/tiny-gpt/stats`)).json()).replicas[0].pid;
    const report = await gw.reload(parseConfig({ ...config({ gpt: ['gpt-4o-mini'], mlp: ['scorer'] }), server: { port: 0, host: '127.0.0.1' } }));
    expect(report).toMatchObject({ replaced: [], aliases: ['tiny-gpt'] });
    expect((await complete('gpt-4o-mini')).model).toBe('tiny-gpt');
    expect(await complete('gpt-3.5-turbo').catch((e) => e.status)).toBe(404);
    expect((await (await fetch(`${gw.url}/v2/models/tiny-gpt/stats`)).json()).replicas[0].pid).toBe(pid);
  });

  it('may be what an endpoint serves', async () => {
    const g = await startTestGateway({
      endpoints: [{ path: '/assistant', model: 'gpt-3.5-turbo', protocol: 'openai-chat' }],
      ...config({ gpt: ['gpt-3.5-turbo'], mlp: [] }),
    });
    try {
      const res = await fetch(`${g.url}/assistant`, { method: 'POST', body: JSON.stringify({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 }) });
      expect(res.status).toBe(200);
      expect((await res.json()).model).toBe('tiny-gpt');
    } finally {
      await g.shutdown();
    }
  });

  it('may not take a name something else has', () => {
    const models = (extra: object) => ({ models: { a: { path: `${MODELS}mlp.onnx`, aliases: ['b'] }, ...extra } });
    expect(() => parseConfig(models({ b: { path: `${MODELS}mlp.onnx` } }))).toThrow(/models.a.aliases.0: b is a model's name too/);
    expect(() => parseConfig(models({ c: { path: `${MODELS}mlp.onnx`, aliases: ['b'] } }))).toThrow(/models.c.aliases.0: b is a's alias name too/);
    expect(() => parseConfig(models({ c: { path: `${MODELS}tiny-gpt-lora.onnx`, lora_adapters: { b: '/x' } } }))).toThrow(/b is a model's name too/);
    expect(() => parseConfig({ models: { a: { path: `${MODELS}mlp.onnx`, aliases: ['no spaces'] } } })).toThrow(/expected an alias/);
  });
});
