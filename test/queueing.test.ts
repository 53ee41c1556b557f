import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { infer, MODELS, startTestGateway } from './helpers.js';

// slow.onnx takes ~50 ms a run whatever the batch: with one replica and one batch in flight, a queue
// forms behind it, so deadlines, a full queue and cancellation can be watched for real.
let gw: Awaited<ReturnType<typeof startTestGateway>>;
beforeAll(async () => {
  gw = await startTestGateway({
    models: {
      slow: { path: `${MODELS}slow.onnx`, device: 'cpu', threads: 1, batching: { max_batch_size: 1, wait_ms: 0, max_queue_size: 2, timeout_ms: 80 } },
      patient: { path: `${MODELS}slow.onnx`, device: 'cpu', threads: 1, batching: { max_batch_size: 1, wait_ms: 0, max_queue_size: 8, timeout_ms: 10_000 } },
    },
  });
  await fetch(`${gw.url}/v2`); // the first fetch() of a process loads undici: not something to time below
});
afterAll(() => gw?.shutdown());

const x = [{ name: 'x', shape: [1, 16], datatype: 'FP32', data: new Array(16).fill(0.1) }];
const stats = async (model: string) => (await fetch(`${gw.url}/v2/models/${model}/stats`)).json();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(condition: () => Promise<boolean>) {
  for (let i = 0; i < 500 && !(await condition()); i++) await sleep(2);
}

describe('queue limits and deadlines', () => {
  it('answers 503 with Retry-After when the queue is full, 504 past the deadline, and keeps serving', async () => {
    // 1 runs, 2 queue (max_queue_size 2), the 4th is refused at once.
    const first = [0, 1, 2].map(() => infer(gw.url, 'slow', x));
    await until(async () => (await stats('slow')).queuedRequests === 2);
    const refused = await fetch(`${gw.url}/v2/models/slow/infer`, { method: 'POST', body: JSON.stringify({ inputs: x }) });
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('1');
    expect((await refused.json()).error).toMatch(/queue of model slow is full/);
    expect((await stats('slow')).queuedRequests).toBeGreaterThan(0); // refused at once, not after the queue moved

    const statuses = (await Promise.all(first)).map((r) => r.status).sort();
    // Each run takes ~50 ms and the deadline is 80 ms: the last in line cannot start in time.
    expect(statuses).toContain(200);
    expect(statuses).toContain(504);
    const s = await stats('slow');
    expect(s.shed.queue_full).toBe(1);
    expect(s.shed.deadline).toBeGreaterThanOrEqual(1);
    expect((await infer(gw.url, 'slow', x)).status).toBe(200);
  });
});

describe('client disconnect', () => {
  it('removes a queued request when its client goes away; it never runs', async () => {
    const before = await stats('patient');
    const busy = infer(gw.url, 'patient', x);
    await sleep(10);
    const { port } = new URL(gw.url);
    const req = request({ port, method: 'POST', path: '/v2/models/patient/infer', headers: { 'content-type': 'application/json' } });
    req.on('error', () => {});
    req.end(JSON.stringify({ inputs: x }));
    await until(async () => (await stats('patient')).queuedRequests === 1);
    expect((await stats('patient')).queuedRequests).toBe(1);
    req.destroy();
    await sleep(20);
    const after = await stats('patient');
    expect(after.queuedRequests).toBe(0);
    expect(after.shed.cancelled - before.shed.cancelled).toBe(1);
    expect((await busy).status).toBe(200);
    // Only the first request became a batch.
    expect((await stats('patient')).batches - before.batches).toBe(1);
  });
});
