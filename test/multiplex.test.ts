import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { parseConfig } from '../src/config/index.js';
import { loadService } from '../src/gateway/grpc/proto.js';
import { infer, MODELS, random, startTestGateway } from './helpers.js';

// Ray Serve's model multiplexing: one model name, many models of the same tensors (files named by {model_id}),
// a request picking one with the serve_multiplexed_model_id header — real replicas opening them as asked.
const dir = mkdtempSync(join(tmpdir(), 'infergate-tenants-'));
copyFileSync(`${MODELS}tenants/alpha.onnx`, join(dir, 'alpha.onnx'));
copyFileSync(`${MODELS}tenants/beta.onnx`, join(dir, 'beta.onnx'));
copyFileSync(`${MODELS}mlp.onnx`, join(dir, 'wide.onnx')); // x [N, 64] too, but probs [N, 10]
writeFileSync(join(dir, 'broken.onnx'), 'not a model');

const one = { batching: { max_batch_size: 8, wait_ms: 20 }, scaling: { min_containers: 1 }, device: 'cpu' };
const models = {
  tenants: {
    ...one,
    path: join(dir, '{model_id}.onnx'),
    multiplex: { max_models_per_replica: 1 },
    response_cache_mb: 1,
    scaling: { min_containers: 2, max_containers: 2 },
  },
  // The same files as models of their own: what each request's answer must be.
  alpha: { ...one, path: `${MODELS}tenants/alpha.onnx` },
  beta: { ...one, path: `${MODELS}tenants/beta.onnx` },
};
let gw: Awaited<ReturnType<typeof startTestGateway>>;
beforeAll(async () => {
  gw = await startTestGateway({ server: { grpc_port: 0 }, models });
});
afterAll(async () => {
  await gw?.shutdown();
  rmSync(dir, { recursive: true, force: true });
});

const x = (seed: number, rows = 1) => [{ name: 'x', shape: [rows, 64], datatype: 'FP32', data: random(64 * rows, seed) }];
const as = (modelId: string | undefined, seed: number, rows = 1) =>
  fetch(`${gw.url}/v2/models/tenants/infer`, {
    method: 'POST',
    headers: modelId === undefined ? {} : { serve_multiplexed_model_id: modelId },
    body: JSON.stringify({ inputs: x(seed, rows) }),
  });
const probs = async (res: Response) => {
  const body = await res.json();
  expect(res.status, JSON.stringify(body)).toBe(200);
  return body.outputs[0].data as number[];
};
const replicas = async () => (await (await fetch(`${gw.url}/v2/models/tenants/stats`)).json()).replicas as { models?: string[] }[];

describe('a multiplexed model', () => {
  it('answers each request with the model its header names, requests for different models never in one batch', async () => {
    const expected = {
      alpha: await Promise.all([1, 2, 3, 4].map(async (s) => (await infer(gw.url, 'alpha', x(s))).body.outputs?.[0].data)),
      beta: await Promise.all([1, 2, 3, 4].map(async (s) => (await infer(gw.url, 'beta', x(s))).body.outputs?.[0].data)),
    };
    expect(expected.alpha[0]).not.toEqual(expected.beta[0]);
    // At once: both models' requests queue together, each batch one model's.
    const [alpha, beta] = await Promise.all([
      Promise.all([1, 2, 3, 4].map(async (s) => probs(await as('alpha', s)))),
      Promise.all([1, 2, 3, 4].map(async (s) => probs(await as('beta', s)))),
    ]);
    expect(alpha).toEqual(expected.alpha);
    expect(beta).toEqual(expected.beta);
    // Several rows in one request, and the same inputs again (the response cache keeps each model's answer apart).
    expect(await probs(await as('beta', 1))).toEqual(expected.beta[0]);
    expect(await probs(await as('alpha', 1))).toEqual(expected.alpha[0]);
    const rows = await probs(await as('alpha', 9, 3));
    expect(rows).toHaveLength(9);
  });

  it('takes the model id as gRPC metadata on ModelInfer', async () => {
    const client = new (loadService('inference.proto', 'inference.GRPCInferenceService'))(`127.0.0.1:${gw.grpcPort}`, grpc.credentials.createInsecure());
    const data = random(64, 5);
    const call = (modelId: string) =>
      new Promise<{ raw_output_contents: Buffer[] }>((resolve, reject) => {
        const meta = new grpc.Metadata();
        meta.set('serve_multiplexed_model_id', modelId);
        const request = {
          model_name: 'tenants',
          inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 64] }],
          raw_input_contents: [Buffer.from(Float32Array.from(data).buffer)],
        };
        (client as unknown as Record<string, (r: object, m: grpc.Metadata, cb: (e: Error | null, r: never) => void) => void>).ModelInfer(
          request,
          meta,
          (e, r) => (e ? reject(e) : resolve(r)),
        );
      });
    try {
      for (const id of ['alpha', 'beta']) {
        const reply = await call(id);
        const got = Array.from(new Float32Array(new Uint8Array(reply.raw_output_contents[0]).buffer));
        expect(got).toEqual((await infer(gw.url, id, x(5))).body.outputs?.[0].data);
      }
      await expect(call('gamma')).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    } finally {
      client.close();
    }
  });

  it('takes the model id as a WebSocket infer message’s model_id', async () => {
    const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/v1/ws`);
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    const answers = new Map<string, { outputs?: { data: number[] }[]; error?: { status: number; message: string } }>();
    ws.on('message', (data) => {
      const msg = JSON.parse(String(data));
      answers.set(msg.id, msg);
    });
    for (const [id, modelId] of [
      ['a', 'alpha'],
      ['b', 'beta'],
      ['none', undefined],
    ] as const)
      ws.send(JSON.stringify({ id, type: 'infer', model: 'tenants', ...(modelId && { model_id: modelId }), inputs: x(6) }));
    await expect.poll(() => answers.size).toBe(3);
    ws.close();
    expect(answers.get('a')?.outputs?.[0].data).toEqual((await infer(gw.url, 'alpha', x(6))).body.outputs?.[0].data);
    expect(answers.get('b')?.outputs?.[0].data).toEqual((await infer(gw.url, 'beta', x(6))).body.outputs?.[0].data);
    expect(answers.get('none')?.error).toMatchObject({ status: 400, message: expect.stringMatching(/serve_multiplexed_model_id/) });
  });

  it('sends a model’s batches to a replica that has it open, each replica keeping max_models_per_replica', async () => {
    // Both replicas started with the first model (alpha) open; one at a time, beta goes to one of them and stays there.
    for (let i = 0; i < 4; i++) await probs(await as('beta', 20 + i));
    for (let i = 0; i < 4; i++) await probs(await as('alpha', 30 + i));
    const open = (await replicas()).map((r) => r.models);
    expect(open.sort()).toEqual([['alpha'], ['beta']]);
    // Each open is measured (Prometheus): beta once here at least; alpha again where beta had closed it, if it had.
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    const opens = Number(/infergate_multiplex_open_duration_count\{[^}]*infergate_model="tenants"[^}]*\} (\d+)/.exec(metrics)?.[1]);
    expect(opens).toBeGreaterThanOrEqual(1);
  });

  it.each([
    [undefined, 400, /model tenants is multiplexed: name one of its models with the serve_multiplexed_model_id header/],
    ['../alpha', 400, /serve_multiplexed_model_id must be 1-128 letters, digits/],
    ['gamma', 404, /model tenants has no model "gamma"/],
    ['wide', 400, /model tenants's model "wide" takes and gives x FP32 \[-1, 64\], probs FP32 \[-1, 10\], not the model's .*probs FP32 \[-1, 3\]/],
    ['broken', 400, /model tenants's model "broken" is not a readable ONNX model/],
  ])('refuses model id %j with %i before it queues, and goes on serving', async (modelId, status, message) => {
    const res = await as(modelId, 1);
    expect(res.status).toBe(status);
    expect((await res.json()).error).toMatch(message);
    expect((await as('alpha', 1)).status).toBe(200);
  });

  it('is checked at start: its path names its files with {model_id}, at least one of them exists', async () => {
    const path = join(dir, '{model_id}.onnx');
    expect(() => parseConfig({ models: { t: { path: `${MODELS}mlp.onnx`, multiplex: {} } } })).toThrow(
      /models\.t\.path: a multiplexed model names its files with \{model_id\}/,
    );
    expect(() => parseConfig({ models: { t: { path } } })).toThrow(/only a multiplexed one does/);
    expect(() => parseConfig({ models: { t: { path, multiplex: {}, sequence: { state: { s: 's' } } } } })).toThrow(
      /multiplexing is for stateless tensor models/,
    );
    await expect(startTestGateway({ models: { t: { path: join(dir, 'none-{model_id}.onnx'), multiplex: {}, device: 'cpu' } } })).rejects.toThrow(
      /models\.t\.path: no file matches .*none-\{model_id\}\.onnx/,
    );
    const ensemble = { steps: [{ model: 'tenants', inputs: { x: 'x' }, outputs: { probs: 'p' } }] };
    await expect(gw.reload(parseConfig({ models, ensembles: { e: ensemble } }))).rejects.toThrow(/it is multiplexed/);
  });
});
