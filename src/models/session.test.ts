import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { openSession, warmupRuns } from './session.js';
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

describe('CUDA provider options', () => {
  it("are one session's own: a later session without options does not inherit an earlier one's", async () => {
    // Here without a GPU both opens fail; what matters is what the shim would read for the second.
    await openSession(CNN, 'cuda', 0, { cudnn_conv_algo_search: 'HEURISTIC' }).catch(() => {});
    expect(process.env.INFERGATE_CUDA_OPTIONS).toBe('device_id=0;cudnn_conv_algo_search=HEURISTIC');
    await openSession(CNN, 'cuda', 0, {}).then(
      (s) => s.session.release(),
      () => {},
    );
    expect(process.env.INFERGATE_CUDA_OPTIONS).toBeUndefined();
  });
});
