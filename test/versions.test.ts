import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { parseConfig } from '../src/config/index.js';
import { loadService } from '../src/gateway/grpc/proto.js';
import { infer, MODELS, random, startTestGateway } from './helpers.js';

// Triton's model versions: one model name, a folder per version (Triton's repository layout), a policy choosing
// the ones served; a request names one in its URL or gets the latest — real replicas keeping every one open.
const dir = mkdtempSync(join(tmpdir(), 'infergate-versions-'));
const addVersion = (version: number, file = `${MODELS}scorer/${version}/model.onnx`) => {
  mkdirSync(join(dir, String(version)), { recursive: true });
  copyFileSync(file, join(dir, String(version), 'model.onnx'));
};
for (const v of [1, 2, 3]) addVersion(v);

const one = { batching: { max_batch_size: 8, wait_ms: 20 }, scaling: { min_containers: 1, max_containers: 1 }, device: 'cpu' };
const models = {
  scorer: { ...one, path: join(dir, '{version}', 'model.onnx'), version_policy: { latest: { num_versions: 2 } }, response_cache_mb: 1 },
  // Each version as a model of its own: what a request for it must answer.
  v2: { ...one, path: `${MODELS}scorer/2/model.onnx` },
  v3: { ...one, path: `${MODELS}scorer/3/model.onnx` },
  mlp: { ...one, path: `${MODELS}mlp.onnx` },
};
const ensembles = {
  latest: { steps: [{ model: 'scorer', inputs: { x: 'x' }, outputs: { probs: 'p' } }] },
  pinned: { steps: [{ model: 'scorer', version: 2, inputs: { x: 'x' }, outputs: { probs: 'p' } }] },
  plain: { steps: [{ model: 'mlp', version: 1, inputs: { x: 'x' }, outputs: { probs: 'p' } }] },
};
let gw: Awaited<ReturnType<typeof startTestGateway>>;
beforeAll(async () => {
  gw = await startTestGateway({ server: { grpc_port: 0, admin_api: true }, models, ensembles });
});
afterAll(async () => {
  await gw?.shutdown();
  rmSync(dir, { recursive: true, force: true });
});

const x = (seed: number) => [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: random(64, seed) }];
const at = (version: string | undefined, seed: number) =>
  fetch(`${gw.url}/v2/models/scorer${version === undefined ? '' : `/versions/${version}`}/infer`, {
    method: 'POST',
    body: JSON.stringify({ inputs: x(seed) }),
  });
const answer = async (res: Response) => {
  const body = await res.json();
  expect(res.status, JSON.stringify(body)).toBe(200);
  return { version: body.model_version as string, probs: body.outputs[0].data as number[] };
};
/** A gRPC client of a gateway: any method, and ModelInfer of scorer on `x(seed)`'s data. */
const grpcOf = (port: number) => {
  const client = new (loadService('inference.proto', 'inference.GRPCInferenceService'))(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const rpc = (method: string, request: object) =>
    new Promise<Record<string, unknown>>((resolve, reject) =>
      (client as unknown as Record<string, (r: object, cb: (e: Error | null, r: Record<string, unknown>) => void) => void>)[method](request, (e, r) =>
        e ? reject(e) : resolve(r),
      ),
    );
  const modelInfer = (model_version: string, seed: number) =>
    rpc('ModelInfer', {
      model_name: 'scorer',
      model_version,
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 64] }],
      raw_input_contents: [Buffer.from(Float32Array.from(random(64, seed)).buffer)],
    });
  return { client, rpc, modelInfer };
};
const expected = async (model: string, seed: number) => (await infer(gw.url, model, x(seed))).body.outputs?.[0].data;
const get = async (path: string) => (await fetch(`${gw.url}${path}`)).json();

describe('a versioned model', () => {
  it('answers with the version the URL names, the latest without one, versions never in one batch', async () => {
    const seeds = [1, 2, 3, 4];
    const [two, three, latest] = await Promise.all([
      Promise.all(seeds.map(async (s) => answer(await at('2', s)))),
      Promise.all(seeds.map(async (s) => answer(await at('3', s)))),
      Promise.all(seeds.map(async (s) => answer(await at(undefined, s)))),
    ]);
    const [v2, v3] = [await Promise.all(seeds.map((s) => expected('v2', s))), await Promise.all(seeds.map((s) => expected('v3', s)))];
    expect(v2[0]).not.toEqual(v3[0]);
    expect(two).toEqual(v2.map((probs) => ({ version: '2', probs })));
    expect(three).toEqual(v3.map((probs) => ({ version: '3', probs })));
    expect(latest).toEqual(v3.map((probs) => ({ version: '3', probs })));
    // The same inputs again: the response cache keeps each version's answer apart.
    expect(await answer(await at('2', 1))).toEqual({ version: '2', probs: v2[0] });
  });

  it('refuses a version it does not serve with a 404 naming the ones it does, and goes on serving', async () => {
    for (const [path, served] of [
      ['/v2/models/scorer/versions/1/infer', 'versions 2, 3'], // present on disk, but the policy keeps the latest two
      ['/v2/models/scorer/versions/7/infer', 'versions 2, 3'],
      ['/v2/models/mlp/versions/2/infer', 'version 1'],
    ]) {
      const res = await fetch(`${gw.url}${path}`, { method: 'POST', body: JSON.stringify({ inputs: x(1) }) });
      expect(res.status).toBe(404);
      expect((await res.json()).error).toMatch(new RegExp(`has no version "\\d" served; it serves ${served}`));
    }
    expect((await fetch(`${gw.url}/v2/models/scorer/versions/1/ready`)).status).toBe(404);
    expect((await fetch(`${gw.url}/v2/models/scorer/versions/1`)).status).toBe(404);
    expect((await fetch(`${gw.url}/v2/models/mlp/versions/1/infer`, { method: 'POST', body: JSON.stringify({ inputs: x(1) }) })).status).toBe(200);
    expect((await answer(await at('2', 1))).version).toBe('2');
  });

  it('lists its versions in metadata, config, the repository index and per-version statistics', async () => {
    expect((await get('/v2/models/scorer')).versions).toEqual(['2', '3']);
    expect((await get('/v2/models/mlp')).versions).toEqual(['1']);
    expect((await get('/v2/models/scorer/config')).version_policy).toEqual({ specific: { versions: [2, 3] } });
    const index = await (await fetch(`${gw.url}/v2/repository/index`, { method: 'POST' })).json();
    expect(index.filter((m: { name: string }) => m.name === 'scorer')).toEqual([
      { name: 'scorer', version: '1', state: 'UNAVAILABLE', reason: 'unloaded' }, // on disk, not in the policy (Triton lists it so)
      { name: 'scorer', version: '2', state: 'READY' },
      { name: 'scorer', version: '3', state: 'READY' },
    ]);
    const before = (await get('/v2/models/scorer/stats')).model_stats as { version: string; inference_count: number }[];
    await answer(await at('2', 50));
    await answer(await at('2', 51));
    await answer(await at(undefined, 52));
    const after = (await get('/v2/models/scorer/stats')).model_stats as typeof before;
    expect(after.map((s) => s.version)).toEqual(['2', '3']);
    expect(after.map((s, i) => s.inference_count - before[i].inference_count)).toEqual([2, 1]);
    expect((await get('/v2/models/scorer/versions/2/stats')).model_stats.map((s: { version: string }) => s.version)).toEqual(['2']);
    // Every version is open on the replica from its start: no batch waits for one to open.
    const [replica] = (await get('/v2/models/scorer/stats')).replicas as { models: string[]; sessionThread: string }[];
    expect(replica.models).toEqual(['2', '3']);
    // (CI runs this suite again with INFERGATE_SESSION_THREAD=worker: the versions then live on the session's worker)
    expect(replica.sessionThread).toBe(process.env.INFERGATE_SESSION_THREAD ?? 'main');
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    expect(metrics).not.toMatch(/infergate_multiplex_open_duration_count\{[^}]*infergate_model="scorer"[^}]*\} [1-9]/);
    // Prometheus tells versions apart (Triton's metrics carry the version too).
    const requests = metrics.split('\n').filter((l) => l.startsWith('http_server_request_duration_count') && l.includes('model="scorer"'));
    expect(requests.some((l) => l.includes('infergate_model_version="2"'))).toBe(true);
    expect(requests.some((l) => l.includes('infergate_model_version="3"'))).toBe(true);
  });

  it('takes the version over gRPC (model_version) and a WebSocket infer message (model_version), KServe v1 the latest', async () => {
    const { client, rpc, modelInfer: inferSeed } = grpcOf(gw.grpcPort as number);
    const modelInfer = (model_version: string) => inferSeed(model_version, 5);
    try {
      const reply = (await modelInfer('2')) as { model_version: string; raw_output_contents: Buffer[] };
      expect(reply.model_version).toBe('2');
      expect(Array.from(new Float32Array(new Uint8Array(reply.raw_output_contents[0]).buffer))).toEqual(await expected('v2', 5));
      expect(((await modelInfer('')) as { model_version: string }).model_version).toBe('3');
      await expect(modelInfer('1')).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
      expect((await rpc('ModelMetadata', { name: 'scorer', version: '' })).versions).toEqual(['2', '3']);
      expect(((await rpc('ModelConfig', { name: 'scorer', version: '' })).config as { version_policy: object }).version_policy).toEqual({
        specific: { versions: ['2', '3'] },
        policy_choice: 'specific',
      });
      const stats = (await rpc('ModelStatistics', { name: 'scorer', version: '3' })).model_stats as { version: string }[];
      expect(stats.map((s) => s.version)).toEqual(['3']);
      await expect(rpc('ModelStatistics', { name: 'scorer', version: '1' })).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    } finally {
      client.close();
    }

    const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/v1/ws`);
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    const answers = new Map<string, { model_version?: string; outputs?: { data: number[] }[]; error?: { status: number } }>();
    ws.on('message', (msg) => {
      const m = JSON.parse(String(msg));
      answers.set(m.id, m);
    });
    for (const [id, version] of [
      ['two', '2'],
      ['latest', undefined],
      ['gone', '1'],
    ] as const)
      ws.send(JSON.stringify({ id, type: 'infer', model: 'scorer', ...(version && { model_version: version }), inputs: x(6) }));
    await expect.poll(() => answers.size).toBe(3);
    ws.close();
    expect(answers.get('two')).toMatchObject({ model_version: '2', outputs: [{ data: await expected('v2', 6) }] });
    expect(answers.get('latest')).toMatchObject({ model_version: '3', outputs: [{ data: await expected('v3', 6) }] });
    expect(answers.get('gone')?.error?.status).toBe(404);

    const v1 = await (await fetch(`${gw.url}/v1/models/scorer:predict`, { method: 'POST', body: JSON.stringify({ instances: [random(64, 7)] }) })).json();
    expect(v1.predictions[0]).toEqual(await expected('v3', 7));
  });

  it('runs an ensemble step on the version it names (Triton’s step model_version), else the latest', async () => {
    expect((await infer(gw.url, 'latest', x(8))).body.outputs?.[0].data).toEqual(await expected('v3', 8));
    expect((await infer(gw.url, 'pinned', x(8))).body.outputs?.[0].data).toEqual(await expected('v2', 8));
    expect((await infer(gw.url, 'plain', x(8))).body.outputs?.[0].data).toEqual(await expected('mlp', 8));
    const step = async (ensemble: string) => (await get(`/v2/models/${ensemble}/config`)).ensemble_scheduling.step[0].model_version;
    expect([await step('latest'), await step('pinned')]).toEqual([-1, 2]);
    // A step naming a version the model does not serve: the config is refused, nothing changes.
    const gone = { steps: [{ model: 'scorer', version: 1, inputs: { x: 'x' }, outputs: { probs: 'p' } }] };
    await expect(gw.reload(parseConfig({ models, ensembles: { ...ensembles, gone } }))).rejects.toThrow(
      /ensembles\.gone: step 0 \(model scorer\): version 1 is not served \(the model serves versions 2, 3\)/,
    );
    expect((await infer(gw.url, 'pinned', x(8))).status).toBe(200);
  });

  it('serves a new version once its folder is there and the config reloaded (Triton’s way of deploying one)', async () => {
    addVersion(4, `${MODELS}scorer/1/model.onnx`);
    try {
      // An ensemble pinning version 2 would lose it: the reload is refused until the ensemble goes too.
      await expect(gw.reload(parseConfig({ models, ensembles }))).rejects.toThrow(
        /ensembles\.pinned: .* version 2 is not served \(the model serves versions 3, 4\)/,
      );
      expect((await answer(await at(undefined, 9))).version).toBe('3');
      const { latest, plain } = ensembles;
      const report = await gw.reload(parseConfig({ models, ensembles: { latest, plain } }));
      expect(report.replaced).toEqual(['scorer']);
      expect(report.unchanged.sort()).toEqual(['mlp', 'v2', 'v3']);
      expect((await infer(gw.url, 'latest', x(9))).body.outputs?.[0].data).toEqual((await answer(await at('4', 9))).probs);
      expect((await get('/v2/models/scorer')).versions).toEqual(['3', '4']);
      expect((await answer(await at(undefined, 9))).version).toBe('4');
      expect((await at('2', 9)).status).toBe(404);
      expect((await answer(await at('3', 9))).probs).toEqual(await expected('v3', 9));
    } finally {
      rmSync(join(dir, '4'), { recursive: true });
    }
  });

  it('runs a shadow version on live traffic (version_shadow): answers unchanged, its runs counted apart and captured beside them', async () => {
    const captures = mkdtempSync(join(tmpdir(), 'infergate-shadow-'));
    const shadowed = await startTestGateway({
      models: { scorer: { ...models.scorer, version_traffic: { 2: 100 }, version_shadow: { version: 3 } } },
      capture: { dir: captures },
      server: { grpc_port: 0 },
    });
    try {
      const count = async (version: string) =>
        (await (await fetch(`${shadowed.url}/v2/models/scorer/versions/${version}/stats`)).json()).model_stats[0].inference_count as number;
      const answers = await Promise.all([0, 1, 2, 3, 4].map(async (seed) => (await infer(shadowed.url, 'scorer', x(seed))).body));
      // The clients get version 2's answers; version 3 ran every request too.
      for (const [seed, body] of answers.entries()) {
        expect(body).toMatchObject({ model_version: '2' });
        expect(body.outputs?.[0].data).toEqual(await expected('v2', seed));
      }
      await expect.poll(() => count('3')).toBe(5);
      expect(await count('2')).toBe(5);
      // Captured beside each answer, under its request's id: version 3's answer, marked a shadow's.
      const records = async () =>
        readdirSync(captures).flatMap((f) =>
          readFileSync(join(captures, f), 'utf8')
            .trim()
            .split('\n')
            .map((line) => JSON.parse(line)),
        );
      await expect.poll(async () => (await records()).filter((r) => r.eventMetadata.shadow).length).toBe(5);
      const all = await records();
      const answeredIds = new Set(all.map((r) => r.eventMetadata.eventId));
      for (const shadow of all.filter((r) => r.eventMetadata.shadow)) {
        expect(shadow.eventMetadata).toMatchObject({ model: 'scorer', modelVersion: '3', status: 200 });
        const answered = all.find((r) => r.eventMetadata.eventId === shadow.eventMetadata.eventId && !r.eventMetadata.shadow);
        const seed = answers.findIndex((b) => JSON.stringify(b) === answered.captureData.endpointOutput.data);
        expect(JSON.parse(shadow.captureData.endpointOutput.data).outputs[0].data).toEqual(await expected('v3', seed));
      }
      // A WebSocket infer message too: version 3 runs it, captured beside the message under its request id.
      const ws = new WebSocket(`${shadowed.url.replace('http', 'ws')}/v1/ws`);
      await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
      const message = new Promise<string>((resolve) => ws.once('message', (data) => resolve(String(data))));
      ws.send(JSON.stringify({ id: 'w', type: 'infer', model: 'scorer', inputs: x(5) }));
      expect(JSON.parse(await message)).toMatchObject({ model_version: '2', outputs: [{ data: await expected('v2', 5) }] });
      ws.close();
      const overSocket = async () => (await records()).filter((r) => r.eventMetadata.path === '/v1/ws');
      await expect.poll(async () => (await overSocket()).length).toBe(2);
      const [socketShadow, socketClient] = [true, false].map((shadow) => overSocket().then((all) => all.find((r) => !!r.eventMetadata.shadow === shadow)));
      expect((await socketShadow).eventMetadata).toMatchObject({ modelVersion: '3', status: 200, eventId: (await socketClient).eventMetadata.eventId });
      expect(JSON.parse((await socketShadow).captureData.endpointOutput.data).outputs[0].data).toEqual(await expected('v3', 5));
      expect(await count('3')).toBe(6);
      // A gRPC ModelInfer too (it takes the HTTP route): version 3 runs it, captured beside it.
      const { client, modelInfer } = grpcOf(shadowed.grpcPort as number);
      try {
        const reply = (await modelInfer('', 6)) as { model_version: string; raw_output_contents: Buffer[] };
        expect(reply.model_version).toBe('2');
      } finally {
        client.close();
      }
      await expect.poll(async () => (await records()).filter((r) => r.eventMetadata.shadow).length).toBe(7);
      const grpcShadow = (await records())
        .filter((r) => r.eventMetadata.shadow)
        .find((r) => r.eventMetadata.path !== '/v1/ws' && !answeredIds.has(r.eventMetadata.eventId));
      expect(grpcShadow.eventMetadata).toMatchObject({ modelVersion: '3', status: 200 });
      // (captured as gRPC's answer goes: the binary extension, its JSON header then the outputs' bytes)
      const want = (await expected('v3', 6)) as number[];
      const bytes = Buffer.from(grpcShadow.captureData.endpointOutput.data, 'base64');
      expect(Array.from(new Float32Array(bytes.buffer.slice(bytes.byteOffset + bytes.length - 4 * want.length, bytes.byteOffset + bytes.length)))).toEqual(
        want,
      );
      expect(await count('3')).toBe(7);
      // A request naming version 3 is not run twice.
      await infer(shadowed.url, 'scorer/versions/3', x(7)); // (an input not seen: the response cache would answer it)
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(await count('3')).toBe(8);
    } finally {
      await shadowed.shutdown();
    }
    const path = join(dir, '{version}', 'model.onnx');
    await expect(
      startTestGateway({ models: { t: { path, device: 'cpu', version_policy: { latest: { num_versions: 2 } }, version_shadow: { version: 1 } } } }),
    ).rejects.toThrow(/models\.t\.version_shadow: version 1 is not served \(the policy serves 2, 3\)/);
  });

  it('splits requests naming no version by version_traffic (KServe’s canary), each answered by the version it names', async () => {
    const canary = await startTestGateway({ models: { scorer: { ...models.scorer, version_traffic: { 2: 50, 3: 50 } } } });
    try {
      const answers = await Promise.all(
        Array.from({ length: 40 }, async (_, i) => {
          const { body } = await infer(canary.url, 'scorer', x(i % 4));
          return { version: (body as { model_version: string }).model_version, probs: body.outputs?.[0].data, seed: i % 4 };
        }),
      );
      // Both versions answer (all 40 to one: odds of 2 in a trillion), each with its own weights.
      expect(new Set(answers.map((a) => a.version))).toEqual(new Set(['2', '3']));
      for (const a of answers) expect(a.probs).toEqual(await expected(`v${a.version}`, a.seed));
      // A request naming a version is not split.
      const named = await Promise.all(Array.from({ length: 10 }, async () => (await infer(canary.url, 'scorer/versions/2', x(1))).body));
      expect(named.map((b) => (b as { model_version: string }).model_version)).toEqual(new Array(10).fill('2'));
      // The split moved by a reload: in place (the same replica, nothing replaced), at once.
      const pids = async () => (await (await fetch(`${canary.url}/v2/models/scorer/stats`)).json()).replicas.map((r: { pid: number }) => r.pid);
      const before = await pids();
      const report = await canary.reload(parseConfig({ models: { scorer: { ...models.scorer, version_traffic: { 2: 100 } } } }));
      expect(report).toMatchObject({ replaced: [], unchanged: ['scorer'], version_traffic: ['scorer'] });
      expect(await pids()).toEqual(before);
      const moved = await Promise.all(Array.from({ length: 20 }, async () => (await infer(canary.url, 'scorer', x(2))).body));
      expect(new Set(moved.map((b) => (b as { model_version: string }).model_version))).toEqual(new Set(['2']));
    } finally {
      await canary.shutdown();
    }
    const path = join(dir, '{version}', 'model.onnx');
    expect(() => parseConfig({ models: { t: { path, version_traffic: { 2: 50, 3: 40 } } } })).toThrow(/version_traffic gives percentages: they add up to 100/);
    expect(() => parseConfig({ models: { t: { path: `${MODELS}mlp.onnx`, version_traffic: { 1: 100 } } } })).toThrow(/splits a versioned model's requests/);
    await expect(
      startTestGateway({ models: { t: { path, device: 'cpu', version_policy: { latest: { num_versions: 2 } }, version_traffic: { 1: 10, 3: 90 } } } }),
    ).rejects.toThrow(/models\.t\.version_traffic: version 1 is not served \(the policy serves 2, 3\)/);
  });

  it('reads its versions again on Triton’s load of the loaded model (explicit model control)', async () => {
    const load = () => fetch(`${gw.url}/v2/repository/models/scorer/load`, { method: 'POST' });
    const pids = async () => (await get('/v2/models/scorer/stats')).replicas.map((r: { pid: number }) => r.pid);
    // Version 4's folder went at the end of the test before: the first load serves 2 and 3 again.
    expect((await load()).status).toBe(200);
    expect((await get('/v2/models/scorer')).versions).toEqual(['2', '3']);
    const [pid] = await pids();
    expect((await load()).status).toBe(200);
    expect(await pids()).toEqual([pid]); // nothing changed since: nothing replaced
    addVersion(5, `${MODELS}scorer/2/model.onnx`);
    try {
      expect((await load()).status).toBe(200);
      expect((await get('/v2/models/scorer')).versions).toEqual(['3', '5']);
      expect(await pids()).not.toContain(pid);
      expect(await answer(await at(undefined, 10))).toEqual({ version: '5', probs: await expected('v2', 10) });
      expect((await (await fetch(`${gw.url}/v2/models/scorer/ready`)).json()).ready).toBe(true);
    } finally {
      rmSync(join(dir, '5'), { recursive: true });
    }
  });

  it('is checked at start: {version} in its path, the versions a policy names present, every version the same tensors', async () => {
    const path = join(dir, '{version}', 'model.onnx');
    expect(() => parseConfig({ models: { t: { path: `${MODELS}mlp.onnx`, version_policy: { all: {} } } } })).toThrow(
      /models\.t\.version_policy: a versioned model names its files with \{version\}/,
    );
    expect(() => parseConfig({ models: { t: { path: join(dir, '{version}', '{model_id}.onnx'), multiplex: {} } } })).toThrow(
      /multiplexed \(\{model_id\}\) or versioned \(\{version\}\), not both/,
    );
    expect(() => parseConfig({ models: { t: { path, sequence: { state: { s: 's' } } } } })).toThrow(/versions are for stateless tensor models/);
    const start = (model: object) => startTestGateway({ models: { t: { device: 'cpu', ...model } } });
    await expect(start({ path, version_policy: { specific: { versions: [1, 9] } } })).rejects.toThrow(/models\.t\.version_policy: no file for version 9/);
    await expect(start({ path: join(dir, 'none', '{version}.onnx') })).rejects.toThrow(/models\.t\.path: no version's file matches/);
    addVersion(5, `${MODELS}mlp.onnx`); // x [N, 64] too, but probs [N, 10]
    try {
      await expect(start({ path, version_policy: { all: {} } })).rejects.toThrow(
        /models\.t: version 1 takes and gives x FP32 \[-1, 64\], probs FP32 \[-1, 3\], not the latest version's x FP32 \[-1, 64\], probs FP32 \[-1, 10\]/,
      );
    } finally {
      rmSync(join(dir, '5'), { recursive: true });
    }
  });
});
