import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODELS, startTestGateway } from './helpers.js';

let gw: Awaited<ReturnType<typeof startTestGateway>>;
beforeAll(async () => {
  gw = await startTestGateway({
    server: { admin_api: true },
    models: { mlp: { path: `${MODELS}mlp.onnx`, device: 'cpu', scaling: { min_containers: 0, max_containers: 2, scaledown_window: 60 } } },
  });
});
afterAll(() => gw?.shutdown());

const change = (model: string, body: unknown, url = gw.url) =>
  fetch(`${url}/admin/models/${model}/autoscaler`, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body) });
const replicas = async () => (await (await fetch(`${gw.url}/admin/pools`)).json()).models[0].replicas as { state: string }[];
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
