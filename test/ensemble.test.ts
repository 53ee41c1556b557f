import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/index.js';
import { loadService } from '../src/gateway/grpc/proto.js';
import { binaryBody, infer, MODELS, random, startTestGateway } from './helpers.js';

// Ensembles (config `ensembles`): identity then mlp on one request, and identity again beside them, each step
// through its model's batcher — a real gateway, real replicas.
const models = {
  identity: { path: `${MODELS}identity.onnx`, device: 'cpu', batching: { max_batch_size: 16, wait_ms: 20 }, scaling: { min_containers: 1 } },
  mlp: { path: `${MODELS}mlp.onnx`, device: 'cpu', batching: { max_batch_size: 16, wait_ms: 20 }, scaling: { min_containers: 1 } },
};
const pipeline = {
  steps: [
    { model: 'mlp', inputs: { x: 'copied' }, outputs: { probs: 'scores' } },
    { model: 'identity', inputs: { x: 'features' }, outputs: { y: 'copied' } },
    { model: 'identity', inputs: { x: 'features' }, outputs: { y: 'echo' } },
  ],
  outputs: ['scores', 'echo'],
};
const config = { server: { grpc_port: 0 }, endpoints: [{ path: '/score', model: 'pipeline' }], models, ensembles: { pipeline } };
let gw: Awaited<ReturnType<typeof startTestGateway>>;
beforeAll(async () => {
  gw = await startTestGateway(config);
});
afterAll(() => gw?.shutdown());

const features = (rows: number[][]) => ({ name: 'features', shape: [rows.length, 64], datatype: 'FP32', data: rows.flat() });
const outputOf = (body: { outputs?: { name: string; data: number[] }[] }, name: string) => body.outputs?.find((o) => o.name === name)?.data;

describe('ensembles', () => {
  it('are models to Triton clients: metadata, configuration with their steps, readiness', async () => {
    const meta = await (await fetch(`${gw.url}/v2/models/pipeline`)).json();
    expect(meta).toMatchObject({
      name: 'pipeline',
      platform: 'ensemble',
      inputs: [{ name: 'features', datatype: 'FP32', shape: [-1, -1] }],
      outputs: [
        { name: 'scores', datatype: 'FP32', shape: [-1, 10] },
        { name: 'echo', datatype: 'FP32', shape: [-1, -1] },
      ],
    });
    const config = await (await fetch(`${gw.url}/v2/models/pipeline/config`)).json();
    expect(config).toMatchObject({ platform: 'ensemble', max_batch_size: 16 });
    expect(config.ensemble_scheduling.step).toEqual([
      { model_name: 'identity', model_version: -1, input_map: { x: 'features' }, output_map: { y: 'copied' } },
      { model_name: 'mlp', model_version: -1, input_map: { x: 'copied' }, output_map: { probs: 'scores' } },
      { model_name: 'identity', model_version: -1, input_map: { x: 'features' }, output_map: { y: 'echo' } },
    ]);
    expect((await fetch(`${gw.url}/v2/models/pipeline/ready`)).status).toBe(200);
    // Over gRPC, as perf_analyzer and tritonclient read it (model_config.proto's ensemble_scheduling).
    const client = new (loadService('inference.proto', 'inference.GRPCInferenceService'))(`127.0.0.1:${gw.grpcPort}`, grpc.credentials.createInsecure());
    const reply = await new Promise<{ config: { ensemble_scheduling: { step: object[] } } }>((resolve, reject) =>
      (client as unknown as Record<string, (r: object, cb: (e: Error | null, r: never) => void) => void>).ModelConfig({ name: 'pipeline' }, (e, r) =>
        e ? reject(e) : resolve(r),
      ),
    );
    client.close();
    expect(reply.config.ensemble_scheduling.step[1]).toEqual({
      model_name: 'mlp',
      model_version: '-1',
      input_map: { x: 'copied' },
      output_map: { probs: 'scores' },
    });
    expect((await (await fetch(`${gw.url}/v2/repository/index`, { method: 'POST' })).json()).map((m: { name: string }) => m.name)).toContain('pipeline');
  });

  it('answer each request what its models answer, its steps batched with the models’ other callers', async () => {
    const rows = Array.from({ length: 12 }, (_, i) => random(64, i + 900));
    const before = await (await fetch(`${gw.url}/v2/models/mlp/stats`)).json();
    // Concurrently: 8 through the ensemble, 4 to mlp directly.
    const [through, direct] = await Promise.all([
      Promise.all(rows.slice(0, 8).map((r) => infer(gw.url, 'pipeline', [features([r]) as never]))),
      Promise.all(rows.slice(8).map((r) => infer(gw.url, 'mlp', [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: r }]))),
    ]);
    const after = await (await fetch(`${gw.url}/v2/models/mlp/stats`)).json();
    expect(after.requests - before.requests).toBe(12);
    expect(after.batches - before.batches).toBeLessThan(12); // met in batches
    // Each answer is mlp's own for that row, and the row itself.
    const expected = await Promise.all(rows.slice(0, 8).map((r) => infer(gw.url, 'mlp', [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: r }])));
    through.forEach((res, i) => {
      expect(res.status).toBe(200);
      expect(outputOf(res.body, 'scores')).toEqual(outputOf(expected[i].body, 'probs'));
      expect(outputOf(res.body, 'echo')).toEqual(Array.from(Float32Array.from(rows[i])));
    });
    expect(direct.every((r) => r.status === 200)).toBe(true);
    // Bound to an endpoint of its own (protocol kserve), as a model can be.
    const bound = await fetch(`${gw.url}/score`, { method: 'POST', body: JSON.stringify({ inputs: [features([rows[0]])] }) });
    expect(outputOf(await bound.json(), 'scores')).toEqual(outputOf(expected[0].body, 'probs'));
    // Several rows in one request, the binary extension both ways, one output asked for.
    const x = Float32Array.from([...rows[0], ...rows[1]]);
    const { body, headers } = binaryBody(
      {
        inputs: [{ name: 'features', shape: [2, 64], datatype: 'FP32', parameters: { binary_data_size: x.byteLength } }],
        outputs: [{ name: 'scores', parameters: { binary_data: true } }],
      },
      x,
    );
    const res = await fetch(`${gw.url}/v2/models/pipeline/infer`, { method: 'POST', body, headers });
    expect(res.status).toBe(200);
    const bytes = Buffer.from(await res.arrayBuffer());
    const scores = new Float32Array(bytes.buffer.slice(bytes.byteOffset + Number(res.headers.get('inference-header-content-length'))));
    expect(Array.from(scores)).toEqual([...(outputOf(expected[0].body, 'probs') ?? []), ...(outputOf(expected[1].body, 'probs') ?? [])]);
    const stats = await (await fetch(`${gw.url}/v2/models/pipeline/stats`)).json();
    expect(stats).toMatchObject({ requests: 10, failed: 0, steps: ['identity', 'mlp', 'identity'] });
    expect(stats.model_stats[0]).toMatchObject({ name: 'pipeline', inference_count: 11, execution_count: 10 });
  });

  it('refuse what their models would refuse with a 400 naming the step, and go on serving', async () => {
    const wide = await infer(gw.url, 'pipeline', [{ name: 'features', shape: [1, 5], datatype: 'FP32', data: [1, 2, 3, 4, 5] }]);
    expect(wide.status).toBe(400);
    expect(wide.body.error).toBe('ensemble pipeline: model mlp takes x as FP32 [N, 64], but tensor copied is FP32 [1, 5]');
    const unknown = await infer(gw.url, 'pipeline', [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: random(64, 1) }]);
    expect(unknown.status).toBe(400);
    expect(unknown.body.error).toMatch(/unknown input "x"; the model takes features/);
    expect((await infer(gw.url, 'pipeline', [features([random(64, 2)]) as never])).status).toBe(200);
  });

  it('are checked against their models at start and on a reload; a bad one changes nothing', async () => {
    expect(() => parseConfig({ models, ensembles: { p: { steps: [{ model: 'nope', inputs: {}, outputs: {} }] } } })).toThrow(
      /ensembles\.p\.steps\.0\.model: no model or ensemble named nope/,
    );
    expect(() => parseConfig({ models, ensembles: { mlp: pipeline } })).toThrow(/mlp is a model's name too/);
    expect(() => parseConfig({ models, ensembles: { pipeline }, endpoints: [{ path: '/chat', model: 'pipeline', protocol: 'openai-chat' }] })).toThrow(
      /endpoints\.0\.protocol: pipeline is an ensemble: it is served with protocol kserve/,
    );
    const unfed = { models, ensembles: { p: { steps: [{ model: 'mlp', inputs: {}, outputs: { probs: 'p' } }] } } };
    await expect(startTestGateway(unfed)).rejects.toThrow('ensembles.p: step 0 (model mlp): input x is fed by no tensor (inputs: {x: …})');
    // A reload adds one (served at once), or is refused whole.
    const echo = { steps: [{ model: 'identity', inputs: { x: 'in' }, outputs: { y: 'out' } }] };
    const requests = async () => (await (await fetch(`${gw.url}/v2/models/pipeline/stats`)).json()).requests;
    const before = await requests();
    const report = await gw.reload(parseConfig({ ...config, ensembles: { pipeline, echo } }));
    expect(report.ensembles).toEqual({ added: ['echo'], replaced: [], removed: [], unchanged: ['pipeline'] });
    expect(await requests()).toBe(before); // kept as it was, its counters too
    const echoed = await infer(gw.url, 'echo', [{ name: 'in', shape: [1, 2], datatype: 'FP32', data: [7, 8] }]);
    expect(echoed.body.outputs?.[0]).toMatchObject({ name: 'out', data: [7, 8] });
    await expect(gw.reload(parseConfig({ ...config, ensembles: { pipeline, broken: unfed.ensembles.p } }))).rejects.toThrow(/input x is fed by no tensor/);
    expect((await infer(gw.url, 'echo', [{ name: 'in', shape: [1, 1], datatype: 'FP32', data: [1] }])).status).toBe(200);
  });

  it('may run other ensembles as steps (planned first; one that runs itself is refused)', async () => {
    const echo = { steps: [{ model: 'identity', inputs: { x: 'in' }, outputs: { y: 'out' } }] };
    const outer = {
      steps: [
        { model: 'echo', inputs: { in: 'again' }, outputs: { out: 'copy' } },
        { model: 'pipeline', inputs: { features: 'rows' }, outputs: { scores: 'scores', echo: 'again' } },
      ],
    };
    const report = await gw.reload(parseConfig({ ...config, ensembles: { outer, pipeline, echo } }));
    expect(report.ensembles).toMatchObject({ added: ['outer'], unchanged: ['pipeline', 'echo'] });
    const meta = await (await fetch(`${gw.url}/v2/models/outer`)).json();
    expect(meta).toMatchObject({ platform: 'ensemble', inputs: [{ name: 'rows', datatype: 'FP32' }] });
    expect(meta.outputs.map((o: { name: string }) => o.name)).toEqual(['copy', 'scores']);
    const row = random(64, 77);
    const pipelineBefore = (await (await fetch(`${gw.url}/v2/models/pipeline/stats`)).json()).requests;
    const [nested, direct] = await Promise.all([
      infer(gw.url, 'outer', [{ name: 'rows', shape: [1, 64], datatype: 'FP32', data: row }]),
      infer(gw.url, 'pipeline', [features([row]) as never]),
    ]);
    expect(nested.status).toBe(200);
    expect(outputOf(nested.body, 'scores')).toEqual(outputOf(direct.body, 'scores'));
    expect(outputOf(nested.body, 'copy')).toEqual(Array.from(Float32Array.from(row)));
    expect((await (await fetch(`${gw.url}/v2/models/pipeline/stats`)).json()).requests).toBe(pipelineBefore + 2);
    // A step's problem is named by the ensemble it is in.
    const wide = await infer(gw.url, 'outer', [{ name: 'rows', shape: [1, 5], datatype: 'FP32', data: [1, 2, 3, 4, 5] }]);
    expect(wide.body.error).toBe('ensemble pipeline: model mlp takes x as FP32 [N, 64], but tensor copied is FP32 [1, 5]');
    // Ensembles that run each other: refused whole, the running ones unchanged.
    const loop = (next: string) => ({ steps: [{ model: next, inputs: { rows: 'a' }, outputs: { scores: 'b' } }] });
    await expect(gw.reload(parseConfig({ ...config, ensembles: { a: loop('b'), b: loop('a'), pipeline } }))).rejects.toThrow(
      'ensembles.a: it runs itself (a → b → a)',
    );
    expect((await infer(gw.url, 'outer', [{ name: 'rows', shape: [1, 64], datatype: 'FP32', data: row }])).status).toBe(200);
  });
});
