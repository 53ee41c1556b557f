import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODELS, startTestGateway } from './helpers.js';

let gw: Awaited<ReturnType<typeof startTestGateway>>;
beforeAll(async () => {
  gw = await startTestGateway({
    server: { admin_api: true },
    models: {
      mlp: { path: `${MODELS}mlp.onnx`, device: 'cpu', scaling: { min_containers: 0, max_containers: 2, scaledown_window: 60 } },
      identity: { path: `${MODELS}identity.onnx`, device: 'cpu', scaling: { min_containers: 1 } },
      'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', scaling: { min_containers: 1 } },
    },
  });
});
afterAll(() => gw?.shutdown());

const change = (model: string, body: unknown, url = gw.url) =>
  fetch(`${url}/admin/models/${model}/autoscaler`, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body) });
const replicas = async (model = 'mlp') =>
  ((await (await fetch(`${gw.url}/admin/pools`)).json()).models as { model: string; replicas: { state: string }[] }[]).find((m) => m.model === model)
    ?.replicas ?? [];
async function until(condition: () => Promise<boolean>) {
  for (let i = 0; i < 300 && !(await condition()); i++) await new Promise((r) => setTimeout(r, 50));
  expect(await condition()).toBe(true);
}

describe('runtime autoscaling changes (Modal’s update_autoscaler)', () => {
  it('warms replicas at once when min_containers rises, and lets them go when it falls', async () => {
    expect(await replicas()).toHaveLength(0);
    const raised = await change('mlp', { min_containers: 2 });
    expect(raised.status).toBe(200);
    expect(await raised.json()).toEqual({ model: 'mlp', min_containers: 2, max_containers: 2, buffer_containers: 0, target_inputs: 1, scaledown_window: 60 });
    await until(async () => (await replicas()).filter((r) => r.state === 'ready').length === 2);
    // Back to zero with no window: idle replicas drain without waiting out the old 60 s.
    expect((await change('mlp', { min_containers: 0, scaledown_window: 0 })).status).toBe(200);
    await until(async () => (await replicas()).length === 0);
    expect(await (await fetch(`${gw.url}/admin/models/mlp/autoscaler`)).json()).toMatchObject({ min_containers: 0, scaledown_window: 0 });
  });

  it.each([
    ['min above max', { min_containers: 3 }, 400, /max_containers \(2\) must be at least min_containers \(3\)/],
    ['an unknown field', { replicas: 3 }, 400, /unknown field "replicas"/],
    ['a negative window', { scaledown_window: -1 }, 400, /scaledown_window/],
    ['a body that is not JSON', '{min', 400, /not valid JSON/],
  ])('refuses %s with a 400 and changes nothing', async (_name, body, status, message) => {
    const before = await (await fetch(`${gw.url}/admin/models/mlp/autoscaler`)).json();
    const res = await change('mlp', body);
    expect(res.status).toBe(status);
    expect((await res.json()).error).toMatch(message);
    expect(await (await fetch(`${gw.url}/admin/models/mlp/autoscaler`)).json()).toEqual(before);
  });

  it('answers 404 for an unknown model, and 403 where server.admin_api is off', async () => {
    expect((await change('nope', {})).status).toBe(404);
    const locked = await startTestGateway({ models: { mlp: { path: `${MODELS}mlp.onnx`, device: 'cpu' } } });
    try {
      const res = await change('mlp', { min_containers: 1 }, locked.url);
      expect(res.status).toBe(403);
      expect((await res.json()).error).toMatch(/server.admin_api/);
      expect((await fetch(`${locked.url}/admin/models/mlp/autoscaler`)).status).toBe(200); // reading stays open
    } finally {
      await locked.shutdown();
    }
  });
});

describe("Triton's model control (POST /v2/repository/models/{m}/load | unload)", () => {
  const control = (model: string, action: string, body?: unknown, url = gw.url) =>
    fetch(`${url}/v2/repository/models/${model}/${action}`, { method: 'POST', ...(body !== undefined && { body: JSON.stringify(body) }) });
  const index = async () =>
    (await (await fetch(`${gw.url}/v2/repository/index`, { method: 'POST' })).json()) as { name: string; state: string; reason?: string }[];
  const infer = () =>
    fetch(`${gw.url}/v2/models/identity/infer`, {
      method: 'POST',
      body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 3], datatype: 'FP32', data: [1, 2, 3] }] }),
    });
  const complete = () => fetch(`${gw.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ model: 'tiny-gpt', prompt: 'x', max_tokens: 2 }) });

  it('unloads: replicas stopped, requests refused with a 400 naming the way back, the server still ready; load brings it back', async () => {
    expect((await infer()).status).toBe(200);
    const unloaded = await Promise.all([control('identity', 'unload'), control('tiny-gpt', 'unload')]);
    expect(unloaded.map((r) => r.status)).toEqual([200, 200]);
    expect(await replicas('identity')).toHaveLength(0); // answered once the replicas are gone
    expect(await replicas('tiny-gpt')).toHaveLength(0);
    expect((await index()).filter((m) => m.name !== 'mlp')).toEqual([
      { name: 'identity', version: '1', state: 'UNAVAILABLE', reason: 'unloaded' },
      { name: 'tiny-gpt', version: '1', state: 'UNAVAILABLE', reason: 'unloaded' },
    ]);
    const refused = await infer();
    expect(refused.status).toBe(400);
    expect((await refused.json()).error).toMatch(/model identity is unloaded: POST \/v2\/repository\/models\/identity\/load/);
    const refusedText = await complete();
    expect(refusedText.status).toBe(400);
    expect((await refusedText.json()).error.code).toBe('model_not_loaded');
    expect((await fetch(`${gw.url}/v2/models/identity/ready`)).status).toBe(503);
    expect((await fetch(`${gw.url}/v2/health/ready`)).status).toBe(200); // unloaded on purpose, as in Triton

    expect((await control('identity', 'load')).status).toBe(200);
    expect((await control('tiny-gpt', 'load')).status).toBe(200);
    expect((await replicas('identity')).filter((r) => r.state === 'ready')).toHaveLength(1); // min_containers
    expect((await infer()).status).toBe(200);
    expect((await complete()).status).toBe(200);
    expect((await index()).every((m) => m.state === 'READY')).toBe(true);
  });

  it('loads a model scaled to zero into memory (one replica), which the autoscaler may later let go', async () => {
    await until(async () => (await replicas('mlp')).length === 0);
    expect((await change('mlp', { scaledown_window: 60 })).status).toBe(200); // the first test left it at 0
    expect((await control('mlp', 'load', {})).status).toBe(200);
    expect((await replicas('mlp')).filter((r) => r.state === 'ready')).toHaveLength(1);
  });

  it('refuses config overrides, unknown models, and everything where server.admin_api is off', async () => {
    const override = await control('identity', 'load', { parameters: { config: '{}' } });
    expect(override.status).toBe(400);
    expect((await override.json()).error).toMatch(/parameters config are not supported/);
    expect((await control('nope', 'unload')).status).toBe(404);
    const locked = await startTestGateway({ models: { identity: { path: `${MODELS}identity.onnx`, device: 'cpu' } } });
    try {
      expect((await control('identity', 'unload', undefined, locked.url)).status).toBe(403);
    } finally {
      await locked.shutdown();
    }
  });
});
