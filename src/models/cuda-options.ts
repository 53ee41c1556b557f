import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** CUDA execution provider options by ONNX Runtime's own names (the config's `cuda:` block). */
export type CudaOptions = Record<string, string | number | boolean | undefined>;

/**
 * The preloaded library that applies them (native/cuda-options.c): onnxruntime-node 1.29 passes only
 * `device_id` to the CUDA provider. Built by `npm run build` next to the compiled TypeScript.
 */
export const CUDA_OPTIONS_SHIM = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist', 'native', 'cuda-options.so');

/** Why a replica with CUDA options cannot start here, or undefined when it can. */
export function cudaOptionsUnavailable(): string | undefined {
  if (process.platform !== 'linux') return `CUDA provider options need Linux (this is ${process.platform})`;
  if (!existsSync(CUDA_OPTIONS_SHIM)) return `CUDA provider options need ${CUDA_OPTIONS_SHIM}: install a C compiler (cc) and run npm run build`;
  // LD_PRELOAD splits on both and has no escapes.
  if (/[ :]/.test(CUDA_OPTIONS_SHIM))
    return `CUDA provider options cannot be preloaded from ${CUDA_OPTIONS_SHIM}: LD_PRELOAD cannot carry a space or colon in a path`;
  return undefined;
}

/**
 * The environment a replica process needs for its options to be applied: none without options, and none
 * where the shim is unavailable (a replica that then needs it fails to start, saying why; one that falls
 * back to the CPU does not need it).
 */
export function cudaOptionsEnv(options: CudaOptions | undefined, env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  if (!hasCudaOptions(options) || cudaOptionsUnavailable()) return {};
  return { LD_PRELOAD: [CUDA_OPTIONS_SHIM, env.LD_PRELOAD].filter(Boolean).join(' ') };
}

/** "key=value;…" as the shim reads it, `device_id` first; booleans as ONNX Runtime's 1/0. */
export function cudaOptionsString(deviceId: number, options: CudaOptions): string {
  const given = Object.entries(options).filter(([, v]) => v !== undefined);
  return [`device_id=${deviceId}`, ...given.map(([k, v]) => `${k}=${typeof v === 'boolean' ? Number(v) : v}`)].join(';');
}

export function hasCudaOptions(options: CudaOptions | undefined): options is CudaOptions {
  return Object.values(options ?? {}).some((v) => v !== undefined);
}

/** Where onnxruntime-node's CUDA provider library belongs: next to its binding's libonnxruntime. */
export function providerLibrary(): string {
  const binding = join(dirname(createRequire(import.meta.url).resolve('onnxruntime-node')), '..', 'bin', 'napi-v6', process.platform, process.arch);
  return join(binding, process.platform === 'win32' ? 'onnxruntime_providers_cuda.dll' : 'libonnxruntime_providers_cuda.so');
}

/** Checked before trying CUDA so that `auto` on a CPU-only machine falls back quietly and says why. */
export function missingCudaProvider(): string | undefined {
  const lib = providerLibrary();
  return existsSync(lib) ? undefined : `the CUDA execution provider is not installed (${lib} is missing; see the README's GPU section)`;
}
