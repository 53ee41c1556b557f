import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { infer, MODELS, startTestGateway } from './helpers.js';

// The replica process is paused with SIGSTOP while a queue forms behind it, so the behaviour under a
// busy replica is watched for real and without racing the clock; SIGCONT lets it go on.
let gw: Awaited<ReturnType<typeof startTestGateway>>;
beforeAll(async () => {
  const batching = { max_batch_size: 1, wait_ms: 0 };
  gw = await startTestGateway({
    models: {
      short: {
        path: `${MODELS}mlp.onnx`,
        device: 'cpu',
        threads: 1,
        scaling: { min_containers: 1 },
        batching: { ...batching, max_queue_size: 2, timeout_ms: 300 },
      },
      patient: {
        path: `${MODELS}mlp.onnx`,
        device: 'cpu',
        threads: 1,
        scaling: { min_containers: 1 },
        batching: { ...batching, max_queue_size: 8, timeout_ms: 20_000 },
      },
    },
  });
  await fetch(`${gw.url}/v2`); // the first fetch() of a process loads undici
});
afterAll(() => gw?.shutdown());

const x = [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: new Array(64).fill(0.1) }];
const stats = async (model: string) => (await fetch(`${gw.url}/v2/models/${model}/stats`)).json();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(condition: () => Promise<boolean>) {
  for (let i = 0; i < 1000 && !(await condition()); i++) await sleep(5);
}
async function paused<T>(model: string, body: () => Promise<T>): Promise<T> {
  const pid = (await stats(model)).replicas[0].pid as number;
  process.kill(pid, 'SIGSTOP');
  try {
    return await body();
  } finally {
    process.kill(pid, 'SIGCONT');
  }
}

describe('queue limits and deadlines', () => {
  it('answers 503 with Retry-After when the queue is full and 504 by a timer past the deadline, then keeps serving', async () => {
    let running: Promise<{ status: number }> = Promise.resolve({ status: 0 });
    let queued: { status: number }[] = [];
    await paused('short', async () => {
      running = infer(gw.url, 'short', x);
      await until(async () => (await stats('short')).inFlightBatches === 1);
      const waiting = [infer(gw.url, 'short', x), infer(gw.url, 'short', x)];
      await until(async () => (await stats('short')).queuedRows === 2);

      const refused = await fetch(`${gw.url}/v2/models/short/infer`, { method: 'POST', body: JSON.stringify({ inputs: x }) });
      expect(refused.status).toBe(503);
      expect(refused.headers.get('retry-after')).toBe('1');
      expect(await refused.json()).toEqual({ error: expect.stringMatching(/queue of model short is full \(2 of 2 rows\)/), code: 'queue_full' });

      // The replica is still stopped: only a timer can fail these.
      queued = await Promise.all(waiting);
    });
    expect(queued.map((r) => r.status)).toEqual([504, 504]);
    expect((await running).status).toBe(200);
    const s = await stats('short');
    expect(s.shed).toMatchObject({ queue_full: 1, deadline: 2 });
    expect((await infer(gw.url, 'short', x)).status).toBe(200);
  });
});

describe('a request’s own timeout (Triton’s parameters.timeout, µs)', () => {
  it('fails it with 504 when its own, shorter, deadline passes in the queue; the model’s still bounds the rest', async () => {
    await paused('patient', async () => {
      const running = infer(gw.url, 'patient', x);
      await until(async () => (await stats('patient')).inFlightBatches === 1);
      const started = performance.now();
      const hurried = await infer(gw.url, 'patient', x, { parameters: { timeout: 200_000 } });
      expect(hurried.status).toBe(504);
      expect(performance.now() - started).toBeLessThan(5_000); // not the model's 20 s
      process.kill((await stats('patient')).replicas[0].pid as number, 'SIGCONT');
      expect((await running).status).toBe(200);
    });
    expect((await infer(gw.url, 'patient', x, { parameters: { timeout: 0 } })).status).toBe(200);
    // A 64-bit one as its digits (as gRPC's int64 past 2^53 comes): taken (it was a 400).
    expect((await infer(gw.url, 'patient', x, { parameters: { timeout: '9007199254740993' } })).status).toBe(200);
    const bad = await infer(gw.url, 'patient', x, { parameters: { timeout: -5 } });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatch(/parameters.timeout/);
  });
});

describe('client disconnect', () => {
  it('removes a queued request when its client goes away; it never runs', async () => {
    const before = await stats('patient');
    let busy: Promise<{ status: number }> = Promise.resolve({ status: 0 });
    await paused('patient', async () => {
      busy = infer(gw.url, 'patient', x);
      await until(async () => (await stats('patient')).inFlightBatches === 1);
      const { port } = new URL(gw.url);
      const req = request({ port, method: 'POST', path: '/v2/models/patient/infer', headers: { 'content-type': 'application/json' } });
      req.on('error', () => {});
      req.end(JSON.stringify({ inputs: x }));
      await until(async () => (await stats('patient')).queuedRequests === 1);
      expect((await stats('patient')).queuedRequests).toBe(1);
      req.destroy();
      await until(async () => (await stats('patient')).queuedRequests === 0);
      const after = await stats('patient');
      expect(after.queuedRequests).toBe(0);
      expect(after.shed.cancelled - before.shed.cancelled).toBe(1);
    });
    expect((await busy).status).toBe(200);
    // Only the first request became a batch.
    expect((await stats('patient')).batches - before.batches).toBe(1);
  });
});

describe('callers take turns (batching.fair_share)', () => {
  const SECRET = 'a-long-enough-shared-secret';
  it("serves another caller's request before the rest of one caller's backlog, and in arrival order when off", async () => {
    const model = (fair: boolean) => ({
      path: `${MODELS}mlp.onnx`,
      device: 'cpu',
      threads: 1,
      scaling: { min_containers: 1 },
      batching: { max_batch_size: 1, wait_ms: 0, fair_share: fair },
    });
    const shared = await startTestGateway({
      auth: {
        default: 'key',
        keys: [
          { id: 'bulk', secret: SECRET },
          { id: 'chat', secret: SECRET },
        ],
      },
      models: { fair: model(true), fifo: model(false) },
    });
    try {
      const send = (name: string, key: string, done: string[], label: string) =>
        fetch(`${shared.url}/v2/models/${name}/infer`, {
          method: 'POST',
          headers: { 'infergate-key': key, 'infergate-secret': SECRET },
          body: JSON.stringify({ inputs: x }),
        }).then((r) => {
          expect(r.status).toBe(200);
          done.push(label);
        });
      const order = async (name: string) => {
        const done: string[] = [];
        const headers = { 'infergate-key': 'bulk', 'infergate-secret': SECRET };
        const pid = ((await (await fetch(`${shared.url}/v2/models/${name}/stats`, { headers })).json()) as { replicas: { pid: number }[] }).replicas[0].pid;
        process.kill(pid, 'SIGSTOP');
        const sent: Promise<void>[] = [];
        try {
          for (let i = 1; i <= 6; i++) sent.push(send(name, 'bulk', done, `bulk${i}`));
          const queued = async () => ((await (await fetch(`${shared.url}/v2/models/${name}/stats`, { headers })).json()) as { requests: number }).requests;
          while ((await queued()) < 6) await sleep(5);
          sent.push(send(name, 'chat', done, 'chat'));
          while ((await queued()) < 7) await sleep(5);
        } finally {
          process.kill(pid, 'SIGCONT');
        }
        await Promise.all(sent);
        return done;
      };
      // bulk1 was already on its way when the replica paused; then each caller's first waiting request in turn.
      expect(await order('fair')).toEqual(['bulk1', 'bulk2', 'chat', 'bulk3', 'bulk4', 'bulk5', 'bulk6']);
      expect(await order('fifo')).toEqual(['bulk1', 'bulk2', 'bulk3', 'bulk4', 'bulk5', 'bulk6', 'chat']);
    } finally {
      await shared.shutdown();
    }
  });
});
