import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InMemoryProvider, ReplicaPool } from '../autoscaler/index.js';
import { Batcher } from '../batcher/index.js';
import type { ModelSignature } from '../models/index.js';
import { createApp } from './app.js';
import type { ServedModel } from './types.js';

// Route behaviour with app.request(): no socket, an in-memory replica that negates its input.
const signature: ModelSignature = {
  inputs: [{ name: 'x', dtype: 'FP32', shape: ['N', 2] }],
  outputs: [{ name: 'y', dtype: 'FP32', shape: ['N', 2] }],
  batchAxis: 0,
  metadata: {},
};
const provider = new InMemoryProvider((inputs) => ({ y: { ...inputs.x, data: (inputs.x.data as Float32Array).map((v) => -v) } }));
const pool = new ReplicaPool({ model: 'neg', maxInputs: 1, provider, spec: { path: '', device: 'cpu', threads: 0, warmupShapes: {} } });
const batcher = new Batcher({ model: 'neg', pool, batchable: true, maxBatchSize: 4, waitMs: 1, maxQueueSize: 16, timeoutMs: 1000 });
const model: ServedModel = {
  name: 'neg',
  signature,
  device: 'cpu',
  maxBatchSize: 4,
  batcher,
  isReady: () => pool.readyCount() > 0,
  replicas: () => pool.describe(),
  stats: () => batcher.stats(),
  statistics: () => [batcher.statistics.toTriton('neg')],
};
const app = createApp({ models: new Map([['neg', model]]), maxBodyBytes: 1024 });

beforeAll(() => pool.startReplicas(1));
afterAll(async () => {
  batcher.close();
  await pool.stop();
});

const infer = (body: unknown) => app.request('/v2/models/neg/infer', { method: 'POST', body: JSON.stringify(body) });

describe('gateway app', () => {
  it('runs a KServe JSON request and answers with queue and batch headers and a request id', async () => {
    const res = await infer({ id: 'r1', inputs: [{ name: 'x', shape: [1, 2], datatype: 'FP32', data: [1, -2] }] });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-batch-size')).toBe('1');
    expect(Number(res.headers.get('x-queue-ms'))).toBeGreaterThanOrEqual(0);
    expect(res.headers.get('x-request-id')).toBeTruthy();
    expect(await res.json()).toEqual({
      model_name: 'neg',
      model_version: '1',
      id: 'r1',
      outputs: [{ name: 'y', datatype: 'FP32', shape: [1, 2], data: [-1, 2] }],
    });
  });

  it('answers unknown routes and models with a JSON 404', async () => {
    expect((await app.request('/nope')).status).toBe(404);
    const res = await app.request('/v2/models/other');
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ error: 'unknown model "other"; this gateway serves neg', code: 'not_found' });
  });

  it('refuses a body over the limit with 413 and closes the connection', async () => {
    const res = await app.request('/v2/models/neg/infer', { method: 'POST', body: 'x'.repeat(2000), headers: { 'content-length': '2000' } });
    expect(res.status).toBe(413);
    expect(res.headers.get('connection')).toBe('close');
  });

  it('reports readiness and per-model stats', async () => {
    expect(await (await app.request('/v2/health/ready')).json()).toEqual({ ready: true });
    const stats = await (await app.request('/v2/models/neg/stats')).json();
    expect(stats).toMatchObject({ name: 'neg', queuedRequests: 0, replicas: [{ state: 'ready', provider: 'memory' }] });
  });
});
