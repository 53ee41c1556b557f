import { fileURLToPath } from 'node:url';
import type { CudaOptions } from './cuda-options.js';
import type { Provider } from './session.js';
import type { LayoutConfig } from './stateful.js';
import { compiledFromSource } from './thread.js';

/** What a replica process is told to serve. */
export type ReplicaSpec = {
  model: string;
  replicaId: string;
  path: string;
  device: string;
  threads: number;
  /** CUDA execution provider options (the config's `cuda:`), applied through the preloaded shim. */
  cuda?: CudaOptions;
  /** Unix socket path the replica listens on (started by the gateway). */
  socket?: string;
  /** A remote replica (`infergate replica`): the TCP address it listens on for a gateway instead. */
  listen?: { host: string; port: number };
  /** Shared-memory slot files for large tensors (shm.ts), when the gateway has them. */
  slots?: string[];
  warmupShapes: Record<string, number[]>;
  /** Most rows in one batch (batching.max_batch_size): with the signature, how large a batch can be. */
  maxBatchRows?: number;
  /** Warm up once per batch size (batch_sizes), each input's first dimension set to it. */
  warmupBatches?: number[];
  /** Generative models: bytes of prompts' KV caches kept for prefix reuse (prefix_cache_mb). */
  prefixCacheBytes?: number;
  /** Generative models: longer prompts are computed this many tokens per step (batching.prefill_chunk). */
  prefillChunk?: number;
  /** Generative models: speculative decoding by prompt lookup (config `speculative`). */
  speculation?: import('./speculation.js').Speculation;
  /** The tokenizer the config gives (a tokenizer.json path), over the model's metadata. */
  tokenizer?: string;
  /** On CUDA with several batch sizes, a session per batch size (batching.session_per_batch_size). */
  sessionPerBatchSize?: boolean;
  /** A stateful model's states and constant inputs (batches arrive laid out as the model takes them; warm-ups are made alike). */
  layout?: LayoutConfig;
  /**
   * Several models of the same tensors, chosen per batch: a multiplexed model's (`path` names its files with
   * `{model_id}`) or a versioned model's (with `{version}`, the versions served). The replica opens the models
   * its batches name, keeping `maxModels` (the least recently used closed first), and starts with `open` opened
   * in order (the last: the most recently used, and the one a batch naming none runs on).
   */
  multiplex?: { maxModels: number; open: string[] };
};

/** A batch's multiplexed model opened for it: how long that took, and the models closed to make room. */
export type ModelOpened = { modelId: string; ms: number; closed: string[] };

/** One of a multiplexed or versioned model's files: its path with the model id (or version) in place. */
export const multiplexedPath = (template: string, modelId: string): string => template.replaceAll('{model_id}', modelId).replaceAll('{version}', modelId);

/** The replica's first IPC message (a remote replica's first frame, op `ready`): it is loaded, warm and listening. */
export type ReadyMessage = {
  type: 'ready';
  provider: Provider;
  fallback?: string;
  /** The CUDA provider's options in effect, where the model has `cuda:` options. */
  cudaOptions?: string;
  /** Where its session runs: a worker thread (CUDA replicas) or the process's main thread. */
  sessionThread: 'main' | 'worker';
  /** ONNX Runtime sessions it holds: one per batch size on CUDA, else one. */
  sessions: number;
  /** It opened the shared-memory slots (large tensors skip the socket). */
  shm: boolean;
  /** spawnMs: process start to main; sessionMs: session creation; warmupMs: the first run. */
  timings: { spawnMs: number; sessionMs: number; warmupMs: number };
};
export type FailedMessage = { type: 'failed'; message: string };

/** The replica entry point beside this file: `.ts` under tsx/vitest (or as compiled for the run: compiledFromSource), `.js` once built. */
export function replicaEntry(): { file: string; execArgv: string[] } {
  const self = fileURLToPath(import.meta.url);
  const isSource = self.endsWith('.ts');
  const compiled = compiledFromSource(self.replace(/replica-spec\.ts$/, 'replica-main.ts'));
  if (compiled) return { file: compiled, execArgv: [] };
  return {
    file: self.replace(/replica-spec\.(ts|js)$/, `replica-main.${isSource ? 'ts' : 'js'}`),
    execArgv: isSource ? ['--import', 'tsx'] : [],
  };
}
