import { readdirSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { sharedMemoryDir } from '../src/models/shm.js';
import { binaryBody, MODELS, startTestGateway } from './helpers.js';

/**
 * Image-sized tensors between the gateway and its replica processes: through shared-memory slots on
 * Linux (both directions), through the socket where /dev/shm is off. Every caller must get its own bytes
 * back from a batch, and no slot file may be left behind.
 */
const shm = sharedMemoryDir();
const ours = () => (shm ? readdirSync(shm).filter((f) => f.startsWith(`infergate-${process.pid}-`)) : []);

afterEach(() => {
  delete process.env.INFERGATE_SHM_DIR;
});

describe.each([
  ['shm', undefined],
  ['socket', 'off'],
] as const)('large tensors through %s', (transport, env) => {
  it.skipIf(transport === 'shm' && !shm)('returns each caller its own 512 KB rows from shared batches, and leaves no files behind', async () => {
    if (env) process.env.INFERGATE_SHM_DIR = env;
    const gw = await startTestGateway({
      server: { max_body_bytes: 4_000_000 },
      models: { identity: { path: `${MODELS}identity.onnx`, device: 'cpu', scaling: { min_containers: 1 }, batching: { max_batch_size: 16, wait_ms: 30 } } },
    });
    try {
      const pools = await (await fetch(`${gw.url}/admin/pools`)).json();
      expect(pools.models[0].replicas[0].transport).toBe(transport);
      expect(ours()).toEqual([]); // unlinked as soon as both processes held them

      const D = 65_536;
      // Two waves: the second reuses the first's request buffers and the replica's slot buffers.
      const wave = (seed: number) =>
        Promise.all(
          Array.from({ length: 12 }, async (_, i) => {
            const x = Float32Array.from({ length: 2 * D }, (_, j) => seed + i * 1000 + (j % 997));
            const { body, headers } = binaryBody(
              {
                inputs: [{ name: 'x', shape: [2, D], datatype: 'FP32', parameters: { binary_data_size: x.byteLength } }],
                parameters: { binary_data_output: true },
              },
              x,
            );
            const res = await fetch(`${gw.url}/v2/models/identity/infer`, { method: 'POST', body, headers });
            const bytes = Buffer.from(await res.arrayBuffer());
            const headerLength = Number(res.headers.get('inference-header-content-length'));
            return { status: res.status, batch: Number(res.headers.get('x-batch-size')), x, y: bytes.subarray(headerLength) };
          }),
        );
      const answers = [...(await wave(0)), ...(await wave(0.5))];
      for (const a of answers) {
        expect(a.status).toBe(200);
        expect(a.y.equals(Buffer.from(a.x.buffer))).toBe(true);
      }
      expect(Math.max(...answers.map((a) => a.batch))).toBeGreaterThan(2);
    } finally {
      await gw.shutdown();
    }
    expect(ours()).toEqual([]);
  });
});
