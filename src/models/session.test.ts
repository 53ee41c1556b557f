import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { warmupRuns } from './session.js';
import { readSignature } from './signature.js';

const CNN = fileURLToPath(new URL('../../examples/models/cnn-bench.onnx', import.meta.url));

describe('warm-up runs', () => {
  it('runs once with the configured shapes, or once per fixed batch size', async () => {
    const sig = await readSignature(CNN); // x: [N, 3, 32, 32]
    expect(warmupRuns(sig, {}).map((r) => r.x.shape)).toEqual([[1, 3, 32, 32]]);
    expect(warmupRuns(sig, {}, [4, 32]).map((r) => r.x.shape)).toEqual([
      [4, 3, 32, 32],
      [32, 3, 32, 32],
    ]);
  });
});
