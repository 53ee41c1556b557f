import { readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { infer, MODELS, OCR_CLS, startTestGateway } from './helpers.js';

/** mlp.onnx with an operator ONNX Runtime has none of (its tensors read as before): every session it opens fails. */
function brokenModel(): string {
  const bytes = readFileSync(`${MODELS}mlp.onnx`);
  bytes.write('Relx', bytes.indexOf('Relu'), 'latin1');
  const file = join(tmpdir(), `infergate-broken-${process.pid}.onnx`);
  writeFileSync(file, bytes);
  return file;
}

// The autoscaler with real replica processes: cold starts, scale-down, bursts, SIGKILL, starting replicas.
let gw: Awaited<ReturnType<typeof startTestGateway>>;
beforeAll(async () => {
  const one = { max_batch_size: 1, wait_ms: 0 };
  gw = await startTestGateway({
    models: {
      cold: { path: `${MODELS}mlp.onnx`, device: 'cpu', scaling: { min_containers: 0, max_containers: 2, scaledown_window: 1 } },
      burst: { path: `${MODELS}slow.onnx`, device: 'cpu', batching: one, scaling: { min_containers: 0, max_containers: 3, scaledown_window: 30 } },
      crashy: { path: `${MODELS}slow.onnx`, device: 'cpu', batching: one, scaling: { min_containers: 2, max_containers: 2 } },
      // An operator ONNX Runtime does not have: every start fails inside the replica process.
      broken: { path: brokenModel(), device: 'cpu', batching: { timeout_ms: 60_000 }, scaling: { min_containers: 0 } },
      // SIGSTOPped below: alive, its socket open, answering nothing (as a replica stuck in a CUDA call).
      hangs: { path: `${MODELS}mlp.onnx`, device: 'cpu', batching: one, scaling: { min_containers: 1, max_containers: 1, hang_timeout: 1 } },
      // Two batches in flight: under steady load it always has one, so only its answers show it is alive.
      busy: { path: `${MODELS}slow.onnx`, device: 'cpu', batching: { ...one, max_inputs: 2 }, scaling: { max_containers: 1, hang_timeout: 2 } },
      starting: {
        path: OCR_CLS,
        device: 'cpu',
        warmup_shapes: { x: [8, 3, 48, 320] },
        batching: { timeout_ms: 50 },
        scaling: { min_containers: 0, max_containers: 1, scaledown_window: 0.5 },
      },
    },
  });
  await fetch(`${gw.url}/v2`);
});
afterAll(() => gw?.shutdown());

type Pool = { desired: number; reason: string; replicas: { id: string; pid: number; state: string; inFlight: number; coldStart?: Record<string, number> }[] };
const pool = async (model: string): Promise<Pool> => {
  const { models } = await (await fetch(`${gw.url}/admin/pools`)).json();
  return models.find((m: { model: string }) => m.model === model);
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(condition: () => Promise<boolean>, ms = 20_000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await condition()) return true;
    await sleep(20);
  }
  return false;
}
const mlpInput = [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: new Array(64).fill(0.5) }];
const slowInput = [{ name: 'x', shape: [1, 16], datatype: 'FP32', data: new Array(16).fill(0.5) }];

describe('scale to zero and back', () => {
  it('is ready at zero replicas, cold-starts on the first request, reports the cold start, then returns to zero', async () => {
    expect((await pool('cold')).replicas).toHaveLength(0);
    expect((await fetch(`${gw.url}/v2/models/cold/ready`)).status).toBe(200); // ready to cold-start
    const res = await infer(gw.url, 'cold', mlpInput);
    expect(res.status).toBe(200);
    const p = await pool('cold');
    expect(p.replicas).toHaveLength(1);
    const cold = p.replicas[0].coldStart as Record<string, number>;
    expect(cold.totalMs).toBeGreaterThan(0);
    expect(cold.spawnMs + cold.sessionMs + cold.warmupMs).toBeCloseTo(cold.totalMs, 5);
    expect(Number(res.headers.get('x-queue-ms'))).toBeGreaterThanOrEqual(cold.totalMs * 0.5); // it waited for the start

    expect(await until(async () => (await pool('cold')).replicas.length === 0)).toBe(true); // scaledown_window: 1 s
    expect((await infer(gw.url, 'cold', mlpInput)).status).toBe(200); // and back again
  });
});

describe('a burst', () => {
  it('scales up at once to max_containers and no further', async () => {
    let peak = 0;
    let watching = true;
    const watch = (async () => {
      while (watching) {
        peak = Math.max(peak, (await pool('burst')).replicas.filter((r) => r.state !== 'draining').length);
        await sleep(10);
      }
    })();
    const answers = await Promise.all(Array.from({ length: 60 }, () => infer(gw.url, 'burst', slowInput)));
    watching = false;
    await watch;
    expect(answers.every((a) => a.status === 200)).toBe(true);
    expect(peak).toBe(3);
    expect((await pool('burst')).reason).toMatch(/scale up to 3|steady at 3|holding 3/);
  });
});

describe('a replica killed with SIGKILL mid-batch', () => {
  it('loses no request (retried on another replica) and is replaced', async () => {
    const before = await pool('crashy');
    expect(before.replicas.map((r) => r.state)).toEqual(['ready', 'ready']);
    // Several one-row requests (batches of one) keep both replicas busy long enough to catch one in flight
    // even on a loaded machine; a single request of tens of ms could finish between two polls.
    const pending = Promise.all(Array.from({ length: 12 }, () => infer(gw.url, 'crashy', slowInput)));
    let victim: Pool['replicas'][number] | undefined;
    await until(async () => {
      victim = (await pool('crashy')).replicas.find((r) => r.inFlight > 0);
      return victim !== undefined;
    });
    expect(victim).toBeDefined();
    process.kill(victim?.pid as number, 'SIGKILL');
    for (const res of await pending) {
      expect(res.status).toBe(200);
      expect(res.body.outputs?.[0].shape).toEqual([1, 16]);
    }
    expect(
      await until(async () => {
        const p = await pool('crashy');
        return p.replicas.length === 2 && p.replicas.every((r) => r.state === 'ready' && r.pid !== victim?.pid);
      }),
    ).toBe(true);
  });
});

describe('a replica that hangs', () => {
  it('is killed once it answers nothing for hang_timeout, and the batch it held is answered by its replacement', async () => {
    const [victim] = (await pool('hangs')).replicas;
    process.kill(victim.pid, 'SIGSTOP');
    const res = await infer(gw.url, 'hangs', mlpInput);
    expect(res.status).toBe(200);
    expect(res.body.outputs?.[0].shape).toEqual([1, 10]);
    expect((await pool('hangs')).replicas.map((r) => r.pid)).not.toContain(victim.pid);
    expect(() => process.kill(victim.pid, 0)).toThrow(); // gone, not left stopped
  });

  it('is not taken for hung while it keeps answering, however long its queue takes', async () => {
    expect((await infer(gw.url, 'busy', slowInput)).status).toBe(200); // cold-started
    const [replica] = (await pool('busy')).replicas;
    // Four callers back to back for longer than hang_timeout (2 s): never idle, batches of tens of ms answered.
    const started = Date.now();
    const caller = async () => {
      const statuses: number[] = [];
      while (Date.now() - started < 3500) statuses.push((await infer(gw.url, 'busy', slowInput)).status);
      return statuses;
    };
    const statuses = (await Promise.all([caller(), caller(), caller(), caller()])).flat();
    expect(new Set(statuses)).toEqual(new Set([200]));
    expect((await pool('busy')).replicas.map((r) => r.pid)).toEqual([replica.pid]); // the same replica throughout
  });
});

describe('a replica that is starting', () => {
  it('is not stopped when the load goes away while it starts, though its scaledown window has long passed', async () => {
    // timeout_ms 50: the request gives up (503) long before the replica is ready; nothing wants it any more.
    const res = await fetch(`${gw.url}/v2/models/starting/infer`, {
      method: 'POST',
      body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 3, 48, 64], datatype: 'FP32', data: new Array(3 * 48 * 64).fill(0) }] }),
    });
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('5');
    expect((await res.json()).error).toMatch(/no ready replica: waited \d+ ms for one to start/);
    expect((await pool('starting')).replicas.map((r) => r.state)).toEqual(['starting']);
    // It finishes starting (never killed half-way), and only then is it scaled down.
    const states = new Set<string>();
    await until(async () => {
      const p = await pool('starting');
      for (const r of p.replicas) states.add(r.state);
      return p.replicas.length === 0;
    });
    expect([...states]).toContain('ready');
  });
});

describe('a replica that keeps failing to start', () => {
  it('answers 503 with the reason as soon as the start fails, and the model reports not ready until its backoff is over', async () => {
    expect((await fetch(`${gw.url}/v2/models/broken/ready`)).status).toBe(200); // may cold-start: not failing yet
    // Its timeout_ms is a minute: the answer comes from the failed start, not from the deadline.
    const res = await infer(gw.url, 'broken', mlpInput);
    expect(res.status).toBe(503);
    expect(res.body.error).toMatch(/^model broken has no replica: replica broken-1 failed to start: .*\(next start in 1 s\)$/s);
    expect(res.headers.get('retry-after')).toBe('1');
    const ready = await fetch(`${gw.url}/v2/models/broken/ready`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({ ready: false, reason: expect.stringMatching(/failed to start/) });
    const admin = (await (await fetch(`${gw.url}/admin/pools`)).json()).models.find((m: { model: string }) => m.model === 'broken');
    expect(admin.failure).toMatch(/failed to start/);
    expect((await fetch(`${gw.url}/v2/health/ready`)).status).toBe(503);
    // Past the 1 s backoff it is ready to cold-start again (a load balancer lets the gateway back in), and the
    // next request tries: it fails again, now backing off twice as long.
    expect(await until(async () => (await fetch(`${gw.url}/v2/models/broken/ready`)).status === 200, 5000)).toBe(true);
    const again = await infer(gw.url, 'broken', mlpInput);
    expect(again.body.error).toMatch(/replica broken-2 failed to start: .*\(next start in 2 s\)$/s);
    expect((await fetch(`${gw.url}/v2/models/broken/ready`)).status).toBe(503);
  });
});
