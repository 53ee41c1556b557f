import { copyFile, mkdir, mkdtemp, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { loadConfig } from '../src/config/index.js';
import { type Gateway, startGateway } from '../src/start.js';
import { capturedLog, infer, MODELS, SILERO_VAD } from './helpers.js';

const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
const mlp = (maxBatch: number) => ({ path: `${MODELS}mlp.onnx`, device: 'cpu', batching: { max_batch_size: maxBatch }, scaling: { min_containers: 1 } });
const identity = { path: `${MODELS}identity.onnx`, device: 'cpu', scaling: { min_containers: 1 } };
const row = new Array(64).fill(0.5);

let gw: Gateway | undefined;
afterEach(async () => {
  await gw?.shutdown();
  gw = undefined;
});

/** A gateway started from a config file, as `infergate serve -c` starts one; write() changes the file. */
async function fromFile(models: Record<string, object>, extra: object = {}) {
  const file = join(await mkdtemp(join(tmpdir(), 'infergate-reload-')), 'config.yaml');
  const write = (m: Record<string, object>, more: object = {}) =>
    writeFile(file, stringify({ server: { host: '127.0.0.1', admin_api: true }, models: m, ...extra, ...more }));
  await write(models);
  const reread = () => loadConfig(file, { PORT: '0' });
  gw = await startGateway(await reread(), { log, rereadConfig: reread });
  const url = `http://127.0.0.1:${gw.port}`;
  const reload = async () => {
    const res = await fetch(`${url}/admin/reload`, { method: 'POST' });
    return { status: res.status, body: await res.json() };
  };
  return { url, write, reload, gateway: gw };
}
const pids = async (url: string, model: string) =>
  ((await (await fetch(`${url}/v2/models/${model}/stats`)).json()) as { replicas: { pid: number }[] }).replicas.map((r) => r.pid);
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('reloading the config without a restart', () => {
  it('starts added models, replaces changed ones, drains removed ones, and leaves the rest alone', async () => {
    const { url, write, reload } = await fromFile({ mlp: mlp(8), identity, dtypes: { path: `${MODELS}dtypes.onnx`, device: 'cpu' } });
    const [oldMlp] = await pids(url, 'mlp');
    const replicasOn = async (model: string) =>
      (await (await fetch(`${url}/metrics`)).text()).split('\n').filter((l) => l.startsWith(`infergate_replicas{infergate_model="${model}",`));
    expect(await replicasOn('identity')).toContain('infergate_replicas{infergate_model="identity",state="ready"} 1');
    await write({ mlp: mlp(4), dtypes: { path: `${MODELS}dtypes.onnx`, device: 'cpu' }, echo: identity });
    const r = await reload();
    expect(r).toEqual({ status: 200, body: { added: ['echo'], replaced: ['mlp'], removed: ['identity'], unchanged: ['dtypes'], restart_required: [] } });
    expect((await infer(url, 'echo', [{ name: 'x', shape: [1, 2], datatype: 'FP32', data: [1, 2] }])).body.outputs?.[0].data).toEqual([1, 2]);
    expect((await infer(url, 'identity', [{ name: 'x', shape: [1, 2], datatype: 'FP32', data: [1, 2] }])).status).toBe(404);
    expect((await (await fetch(`${url}/v2/models/mlp/config`)).json()).max_batch_size).toBe(4);
    expect((await infer(url, 'mlp', [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: row }])).status).toBe(200);
    const [newMlp] = await pids(url, 'mlp');
    expect(newMlp).not.toBe(oldMlp);
    await expect.poll(() => alive(oldMlp)).toBe(false); // the old replica drained and exited
    // The removed model leaves /metrics (it stayed there with a ready replica, forever), the added one is there.
    expect(await replicasOn('identity')).toEqual([]);
    expect(await replicasOn('echo')).toContain('infergate_replicas{infergate_model="echo",state="ready"} 1');
  });

  it('answers every request while a model is replaced under load', async () => {
    const { url, write, reload } = await fromFile({ mlp: mlp(8) });
    let stop = false;
    const statuses: number[] = [];
    const clients = Array.from({ length: 6 }, async () => {
      while (!stop) statuses.push((await infer(url, 'mlp', [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: row }])).status);
    });
    await expect.poll(() => statuses.length).toBeGreaterThan(20);
    await write({ mlp: mlp(16) });
    expect((await reload()).body.replaced).toEqual(['mlp']);
    const after = statuses.length;
    await expect.poll(() => statuses.length).toBeGreaterThan(after + 20);
    stop = true;
    await Promise.all(clients);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
  });

  it('hands a request read across the swap to the new model, and refuses one for a removed model with a 503 to retry', async () => {
    const { url, write, reload } = await fromFile({ mlp: mlp(8), identity });
    // The body arrives in two parts, the reload between them: the request found the old model, and reaches it retired.
    const slow = (model: string, json: string) => {
      let finish: () => void = () => {};
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new TextEncoder().encode(json.slice(0, 10)));
          finish = () => {
            controller.enqueue(new TextEncoder().encode(json.slice(10)));
            controller.close();
          };
        },
      });
      const response = fetch(`${url}/v2/models/${model}/infer`, { method: 'POST', body, duplex: 'half' } as RequestInit);
      return { response, finish: () => finish() };
    };
    const toMlp = slow('mlp', JSON.stringify({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: row }] }));
    const toIdentity = slow('identity', JSON.stringify({ inputs: [{ name: 'x', shape: [1, 2], datatype: 'FP32', data: [1, 2] }] }));
    await new Promise((r) => setTimeout(r, 100));
    await write({ mlp: mlp(4) });
    expect((await reload()).body).toMatchObject({ replaced: ['mlp'], removed: ['identity'] });
    toMlp.finish();
    toIdentity.finish();
    const [answered, refused] = [await toMlp.response, await toIdentity.response];
    expect(answered.status).toBe(200);
    expect([refused.status, refused.headers.get('retry-after'), (await refused.json()).error]).toEqual([
      503,
      '0',
      'model identity was removed by a config reload while this request was read',
    ]);
  });

  it("keeps a stateful model's sequences going across its replacement", async () => {
    const vad = (maxBatch: number) => ({
      ...SILERO_VAD,
      batching: { max_batch_size: maxBatch },
      scaling: { min_containers: 1 },
    });
    const { url, write, reload } = await fromFile({ vad: vad(8) });
    const windows = [1, 2, 3, 4].map((k) => Array.from({ length: 576 }, (_, i) => Math.sin(i * k * 0.05) * 0.3));
    const step = async (id: string, i: number) => {
      const r = await infer(url, 'vad', [{ name: 'input', shape: [1, 576], datatype: 'FP32', data: windows[i] }], {
        parameters: { sequence_id: id, sequence_start: i === 0 },
      });
      expect(r.status).toBe(200);
      return r.body.outputs?.[0].data[0];
    };
    const straight = [];
    for (const i of [0, 1, 2, 3]) straight.push(await step('straight', i));
    const across = [await step('across', 0), await step('across', 1)];
    await write({ vad: vad(16) });
    expect((await reload()).body.replaced).toEqual(['vad']);
    across.push(await step('across', 2), await step('across', 3));
    expect(across).toEqual(straight);
  });

  it("moves a model's shadow in place, and refuses one that could not answer its requests", async () => {
    const { url, write, reload } = await fromFile({ mlp: mlp(8), next: mlp(8), identity });
    const [pid] = await pids(url, 'mlp');
    const shadowRuns = async () =>
      ((await (await fetch(`${url}/v2/models/next/stats`)).json()) as { model_stats: { inference_count: number }[] }).model_stats[0].inference_count;
    await write({ mlp: { ...mlp(8), shadow: { model: 'next' } }, next: mlp(8), identity });
    expect((await reload()).body).toMatchObject({ replaced: [], unchanged: ['mlp', 'next', 'identity'], shadow: ['mlp'] });
    expect((await infer(url, 'mlp', [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: row }])).status).toBe(200);
    await expect.poll(shadowRuns).toBe(1);
    expect(await pids(url, 'mlp')).toEqual([pid]); // kept running
    await write({ mlp: { ...mlp(8), shadow: { model: 'identity' } }, next: mlp(8), identity });
    const bad = await reload();
    expect(bad.status).toBe(400);
    expect(bad.body.error).toContain("models.mlp.shadow: identity gives y FP32 [N, D], not mlp's probs FP32 [N, 10]");
    // Nothing changed: the shadow is still next.
    expect((await infer(url, 'mlp', [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: row }])).status).toBe(200);
    await expect.poll(shadowRuns).toBe(2);
  });

  it('changes nothing when the new config does not check out, and says why', async () => {
    const { url, write, reload } = await fromFile({ mlp: mlp(8) });
    await write({ mlp: { ...mlp(8), path: `${MODELS}missing.onnx` } });
    const bad = await reload();
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatch(/config not reloaded, nothing changed: models.mlp.path: cannot read an ONNX model/);
    await write({ mlp: mlp(8), more: { path: `${MODELS}mlp.onnx`, batching: { max_batch_size: 'lots' } } });
    expect((await reload()).body.error).toMatch(/models.more.batching.max_batch_size/);
    expect((await infer(url, 'mlp', [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: row }])).status).toBe(200);
    // Sections that apply only at start are reported, not applied.
    await write({ mlp: mlp(8) }, { server: { host: '127.0.0.1', admin_api: true, max_body_bytes: 1024 }, capture: { url: 'http://127.0.0.1:1/' } });
    expect((await reload()).body).toEqual({ added: [], replaced: [], removed: [], unchanged: ['mlp'], restart_required: ['server', 'capture'] });
  });

  it('replaces a model whose file changed at the same path (new weights)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'infergate-weights-'));
    const { readFile } = await import('node:fs/promises');
    await writeFile(join(dir, 'm.onnx'), await readFile(`${MODELS}identity.onnx`));
    const { reload } = await fromFile({ m: { path: join(dir, 'm.onnx'), device: 'cpu' } });
    expect((await reload()).body.unchanged).toEqual(['m']);
    await new Promise((r) => setTimeout(r, 20)); // a new mtime
    await writeFile(join(dir, 'm.onnx'), await readFile(`${MODELS}identity.onnx`));
    expect((await reload()).body.replaced).toEqual(['m']);
  });

  it('is an admin action: off unless server.admin_api', async () => {
    const file = join(await mkdtemp(join(tmpdir(), 'infergate-reload-')), 'config.yaml');
    await writeFile(file, stringify({ server: { host: '127.0.0.1' }, models: { mlp: mlp(8) } }));
    const reread = () => loadConfig(file, { PORT: '0' });
    gw = await startGateway(await reread(), { log, rereadConfig: reread });
    const res = await fetch(`http://127.0.0.1:${gw.port}/admin/reload`, { method: 'POST' });
    expect(res.status).toBe(403);
  });

  it('polls the config file and the models’ files with server.repository_poll_s, as Triton polls its repository', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'infergate-poll-'));
    const addVersion = async (v: number) => {
      await mkdir(join(dir, String(v)));
      await copyFile(`${MODELS}scorer/${v}/model.onnx`, join(dir, String(v), 'model.onnx'));
    };
    await addVersion(2);
    const file = join(dir, 'config.yaml');
    // (written whole, as an editor or a ConfigMap does: a look in the middle of a write would read half a file)
    const replace = async (path: string, text: string) => {
      await writeFile(`${path}.new`, text);
      await rename(`${path}.new`, path);
    };
    const server = { host: '127.0.0.1', repository_poll_s: 0.1 };
    const scorer = { path: join(dir, '{version}', 'model.onnx'), device: 'cpu', scaling: { min_containers: 1 } };
    await replace(file, stringify({ server, models: { scorer } }));
    const { log: captured, lines } = capturedLog();
    const reread = () => loadConfig(file, { PORT: '0' });
    gw = await startGateway(await reread(), { log: captured, rereadConfig: reread });
    const url = `http://127.0.0.1:${gw.port}`;
    const version = async () => (await infer(url, 'scorer', [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: row }])).body as { model_version?: string };
    const said = (text: string) => lines.filter((l) => l.msg.includes(text)).length;
    expect((await version()).model_version).toBe('2');
    await new Promise((r) => setTimeout(r, 500)); // five looks, nothing changed: nothing reloaded
    expect(said('config reloaded')).toBe(0);
    // A new version's folder: served without a signal.
    await addVersion(3);
    await expect.poll(async () => (await version()).model_version, { timeout: 10_000 }).toBe('3');
    expect(said('config reloaded')).toBe(1);
    // A config that does not check out: said once, however many looks, and nothing changes.
    await replace(file, stringify({ server, models: { scorer: { ...scorer, batching: { wait_ms: 'soon' } } } }));
    await expect.poll(() => said('config not reloaded'), { timeout: 10_000 }).toBe(1);
    await new Promise((r) => setTimeout(r, 500));
    expect(said('config not reloaded')).toBe(1);
    expect((await version()).model_version).toBe('3');
    // Fixed, with a model added: applied.
    await replace(file, stringify({ server, models: { scorer, mlp: mlp(8) } }));
    await expect.poll(async () => (await fetch(`${url}/v2/models/mlp`)).status, { timeout: 10_000 }).toBe(200);
    expect(said('config reloaded')).toBe(2);
  });
});
