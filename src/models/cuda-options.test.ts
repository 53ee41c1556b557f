import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { LocalProcessProvider } from '../autoscaler/index.js';
import { CUDA_OPTIONS_SHIM, cudaOptionsEnv, cudaOptionsString, missingCudaProvider } from './cuda-options.js';

const MODEL = fileURLToPath(new URL('../../examples/models/mlp.onnx', import.meta.url));
const cudaInstalled = !missingCudaProvider();
// npm run build compiles the shim where there is a C compiler (CI has one; see .ci/run).
const compiler = spawnSync(process.env.CC || 'cc', ['--version']).status === 0;

describe('CUDA provider options', () => {
  it('reach the shim as ONNX Runtime option strings, device_id first', () => {
    expect(
      cudaOptionsString(1, {
        cudnn_conv_algo_search: 'HEURISTIC',
        prefer_nhwc: true,
        use_tf32: false,
        gpu_mem_limit: 2 ** 33,
        arena_extend_strategy: undefined,
      }),
    ).toBe('device_id=1;cudnn_conv_algo_search=HEURISTIC;prefer_nhwc=1;use_tf32=0;gpu_mem_limit=8589934592');
  });

  it('preload the shim only into replicas that have options', () => {
    expect(cudaOptionsEnv(undefined, {})).toEqual({});
    expect(cudaOptionsEnv({ prefer_nhwc: undefined }, {})).toEqual({});
    expect(cudaOptionsEnv({ prefer_nhwc: true }, { LD_PRELOAD: '/lib/other.so' })).toEqual({ LD_PRELOAD: `${CUDA_OPTIONS_SHIM} /lib/other.so` });
  });

  // The real path: a replica process started with the shim, ONNX Runtime 1.29's own UpdateCUDAProviderOptions.
  // Without the CUDA provider (CI) ONNX Runtime refuses the update because it cannot load the provider, and
  // that refusal comes back through the shim; with it (the GPU kit) the replica starts on CUDA.
  it.skipIf(!compiler)('are applied inside the replica by the preloaded shim', { timeout: 60_000 }, async () => {
    expect(existsSync(CUDA_OPTIONS_SHIM), 'npm run build compiles native/cuda-options.c').toBe(true);
    const start = new LocalProcessProvider().start(
      {
        model: 'm',
        replicaId: 'cuda-options-1',
        path: MODEL,
        device: 'cuda',
        threads: 1,
        warmupShapes: {},
        cuda: { cudnn_conv_algo_search: 'HEURISTIC', prefer_nhwc: true },
      },
      { startupTimeoutMs: 50_000 },
    );
    if (cudaInstalled) {
      const replica = await start;
      expect(replica.provider).toBe('cuda:0');
      expect(replica.cudaOptions).toContain('cudnn_conv_algo_search=HEURISTIC');
      expect(replica.cudaOptions).toContain('prefer_nhwc=1');
      await replica.stop();
    } else {
      await expect(start).rejects.toThrow(/infergate CUDA options \(device_id=0;cudnn_conv_algo_search=HEURISTIC;prefer_nhwc=1\): .*providers/);
    }
  });

  it('leave replicas without options as they were', { timeout: 60_000 }, async () => {
    const start = new LocalProcessProvider().start(
      { model: 'm', replicaId: 'cuda-options-2', path: MODEL, device: 'cuda', threads: 1, warmupShapes: {} },
      { startupTimeoutMs: 50_000 },
    );
    if (cudaInstalled) return (await start).stop();
    await expect(start).rejects.toThrow(/CUDA provider for cuda failed to load: (?!infergate)/);
  });
});
