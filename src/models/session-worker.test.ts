import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalProcessProvider, type Replica } from '../autoscaler/index.js';
import { sessionThread } from './session-worker.js';
import type { ModelSignature } from './signature.js';

const IDENTITY = fileURLToPath(new URL('../../examples/models/identity.onnx', import.meta.url));

// CUDA replicas run their session on a worker thread (replica-main's onWorker); on this CPU machine the
// same path is forced, against a real replica process and its /dev/shm slots.
describe('a replica whose session runs on a worker thread', () => {
  let replica: Replica;
  beforeAll(async () => {
    process.env.INFERGATE_SESSION_THREAD = 'worker';
    replica = await new LocalProcessProvider().start(
      { model: 'identity', replicaId: 'worker-1', path: IDENTITY, device: 'cpu', threads: 1, warmupShapes: {} },
      { startupTimeoutMs: 30_000 },
    );
  });
  afterAll(async () => {
    delete process.env.INFERGATE_SESSION_THREAD;
    await replica?.stop();
  });

  const batch = (rows: number, cols: number, seed: number) => {
    const data = Float32Array.from({ length: rows * cols }, (_, i) => (i * 7 + seed) % 1000);
    return { x: { dtype: 'FP32' as const, shape: [rows, cols], data } };
  };

  it('answers many batches in flight, large ones through the slots and small ones on the socket, each with its own data', async () => {
    expect(replica.transport).toBe('shm');
    expect(replica.sessionThread).toBe('worker');
    // 1 MiB batches come through /dev/shm and their buffers go to the worker and back; 12 of them over
    // 4 slots means every slot's buffer is lent and returned several times.
    const batches = Array.from({ length: 12 }, (_, i) => (i % 3 === 2 ? batch(2, 8, i) : batch(64, 4096, i)));
    const results = await Promise.all(batches.map(async (b) => (await replica.infer(b)).outputs));
    results.forEach((out, i) => {
      expect(out.y.shape).toEqual(batches[i].x.shape);
      expect(Array.from(out.y.data as Float32Array)).toEqual(Array.from(batches[i].x.data));
    });
  });

  it('answers a batch the session rejects with its error and keeps serving', async () => {
    const wrongType = { x: { dtype: 'INT32' as const, shape: [64, 4096], data: new Int32Array(64 * 4096) } };
    await expect(replica.infer(wrongType)).rejects.toThrow(/type|tensor/i);
    const after = batch(64, 4096, 99);
    expect(Array.from((await replica.infer(after)).outputs.y.data as Float32Array)).toEqual(Array.from(after.x.data));
  });
});

describe('where a replica runs its session by default', () => {
  it('keeps it on the main thread on a machine without the CUDA provider, for cpu and auto alike', async () => {
    for (const device of ['cpu', 'auto']) {
      const replica = await new LocalProcessProvider().start(
        { model: 'identity', replicaId: `thread-${device}`, path: IDENTITY, device, threads: 1, warmupShapes: {} },
        { startupTimeoutMs: 30_000 },
      );
      expect(replica.sessionThread).toBe('main');
      await replica.stop();
    }
  });
});

describe('sessionThread', () => {
  const signature = (shape: (number | string)[], dtype: 'UINT8' | 'FP32' = 'UINT8', batchAxis: 0 | null = 0): ModelSignature => ({
    inputs: [{ name: 'x', dtype, shape }],
    outputs: [{ name: 'y', dtype: 'FP32', shape: ['N', 3] }],
    batchAxis,
    metadata: {},
  });
  const images = signature(['N', 224, 224, 3]);
  const cuda = { device: 'cuda', cudaInstalled: true };

  it('puts CUDA sessions whose batches can go through /dev/shm on a worker', () => {
    expect(sessionThread({ ...cuda, signature: images, maxBatchRows: 8 })).toBe('worker'); // 8 × 147 KiB
    expect(sessionThread({ ...cuda, device: 'cuda:1', signature: images })).toBe('worker');
    expect(sessionThread({ ...cuda, device: 'auto', signature: signature(['N', 3, 'H', 'W'], 'FP32'), maxBatchRows: 1 })).toBe('worker'); // size unknown
  });

  it('keeps the main thread for batches that always fit the socket, for the CPU, and for auto without CUDA', () => {
    expect(sessionThread({ ...cuda, signature: signature(['N', 64], 'FP32'), maxBatchRows: 32 })).toBe('main'); // 8 KiB
    expect(sessionThread({ ...cuda, signature: signature([1, 16], 'FP32', null), maxBatchRows: 64 })).toBe('main');
    expect(sessionThread({ ...cuda, device: 'cpu', signature: images, maxBatchRows: 256 })).toBe('main');
    expect(sessionThread({ device: 'auto', cudaInstalled: false, signature: images, maxBatchRows: 256 })).toBe('main');
  });

  it('does what INFERGATE_SESSION_THREAD says', () => {
    expect(sessionThread({ device: 'cpu', cudaInstalled: false, signature: images, forced: 'worker' })).toBe('worker');
    expect(sessionThread({ ...cuda, signature: images, maxBatchRows: 256, forced: 'main' })).toBe('main');
  });
});

describe('a replica with several batch sizes', () => {
  const start = async (id: string, sessionPerBatchSize?: boolean) =>
    new LocalProcessProvider().start(
      { model: 'identity', replicaId: id, path: IDENTITY, device: 'cpu', threads: 1, warmupShapes: {}, warmupBatches: [2, 8], sessionPerBatchSize },
      { startupTimeoutMs: 30_000 },
    );
  const rows = (n: number) => ({ x: { dtype: 'FP32' as const, shape: [n, 4], data: Float32Array.from({ length: n * 4 }, (_, i) => i + n) } });

  it('opens a session per batch size where asked (CUDA by default; forced here on the CPU) and runs each size on its own', async () => {
    process.env.INFERGATE_SESSION_PER_BATCH_SIZE = 'always';
    const replica = await start('per-size').finally(() => delete process.env.INFERGATE_SESSION_PER_BATCH_SIZE);
    try {
      expect(replica.sessions).toBe(2);
      // 2 and 8 have sessions of their own; 5 is not a batch size and runs on the largest's.
      for (const n of [2, 8, 5, 2]) expect(Array.from((await replica.infer(rows(n))).outputs.y.data as Float32Array)).toEqual(Array.from(rows(n).x.data));
    } finally {
      await replica.stop();
    }
  });

  it('keeps one session on the CPU unless forced, though the config asks for one per size', async () => {
    const replica = await start('one-session', true);
    expect(replica.sessions).toBe(1);
    await replica.stop();
  });
});
