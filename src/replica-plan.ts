import { cpuThreadsPerReplica, type GpuPlacement, type ReplicaStartSpec } from './autoscaler/index.js';
import type { Config, ModelConfig } from './config/index.js';
import { ConfigError } from './config/index.js';
import {
  batchSignature,
  callerSignature,
  generativeSpec,
  type ModelLayout,
  type ModelSignature,
  modelLayout,
  multiplexedIds,
  versionsServed,
} from './models/index.js';

// What a model's replicas are told to serve, and where: batch sizes, multiplexing, warm-up inputs, devices, threads.

/** Fixed batch sizes (padded up to): max_batch_size is always one, and each is warmed up at start. */
export function fixedBatchSizes(model: ModelConfig, signature: ModelSignature): number[] | undefined {
  const b = model.batching;
  return b.batch_sizes && signature.batchAxis === 0 ? [...new Set([...b.batch_sizes, b.max_batch_size])].sort((x, y) => x - y) : undefined;
}

/** What a replica of the model is told to serve: by this gateway, or by `infergate replica` on another machine. */
export function replicaSpecOf(model: ModelConfig, signature: ModelSignature, threads: number): Omit<ReplicaStartSpec, 'replicaId' | 'model'> {
  const generative = generativeSpec(signature) !== null;
  const layout = modelLayout(signature, { state: model.sequence?.state, constants: model.constants });
  return {
    path: model.path,
    device: model.device,
    threads,
    cuda: model.cuda,
    warmupShapes: { ...vadWarmup(model, signature, layout), ...model.warmup_shapes },
    warmupBatches: fixedBatchSizes(model, batchSignature(signature, layout)),
    sessionPerBatchSize: model.batching.session_per_batch_size,
    maxBatchRows: model.batching.max_batch_size,
    prefixCacheBytes: generative ? model.prefix_cache_mb * 2 ** 20 : undefined,
    prefillChunk: generative ? model.batching.prefill_chunk : undefined,
    speculation:
      generative && model.speculative
        ? {
            tokens: model.speculative.num_speculative_tokens,
            ngramMax: model.speculative.prompt_lookup_max,
            ngramMin: model.speculative.prompt_lookup_min,
            disableAt: model.speculative.disable_by_batch_size,
            sharedTokens: model.speculative.method === 'suffix' ? model.speculative.suffix_cache_tokens : undefined,
          }
        : undefined,
    tokenizer: model.tokenizer,
    layout: model.sequence || Object.keys(model.constants).length ? { state: model.sequence?.state, constants: model.constants } : undefined,
    multiplex: multiplexSpec(model),
  };
}

/**
 * A multiplexed model's replicas start with its first model open (loadSignatures read its tensors: there is one);
 * a versioned model's open every version served and keep them.
 */
function multiplexSpec(model: ModelConfig): ReplicaStartSpec['multiplex'] {
  if (model.multiplex) return { maxModels: model.multiplex.max_models_per_replica, open: multiplexedIds(model.path).slice(0, 1) };
  const versions = versionsServed(model);
  return versions && { maxModels: versions.length, open: versions };
}

/** A VAD's audio input warms up as the windows it will take (its length is dynamic, and 1 sample is too few for it). */
function vadWarmup(model: ModelConfig, signature: ModelSignature, layout: ModelLayout): Record<string, number[]> {
  // The audio input is what callers send: the one input that is neither a state nor a constant.
  const [audio, ...more] = callerSignature(signature, layout).inputs;
  return model.vad && audio && !more.length ? { [audio.name]: [1, model.vad.context + model.vad.window] } : {};
}

export const onGpu = (m: ModelConfig, gpus: GpuPlacement) => m.device.startsWith('cuda') || (m.device === 'auto' && gpus.gpus > 0);

/** ONNX Runtime threads for each CPU replica: the cores shared by every CPU model's most replicas. */
export function cpuThreadsFor(config: Config, gpus: GpuPlacement): number {
  const cpuModels = Object.values(config.models).filter((m) => !onGpu(m, gpus) && !m.remote);
  return cpuThreadsPerReplica(cpuModels.reduce((n, m) => n + maxContainers(m), 0));
}

export function checkDevices(config: Config, gpus: GpuPlacement): void {
  for (const [name, model] of Object.entries(config.models)) {
    // Otherwise its replicas would wait forever for a device with room.
    if (model.device === 'cuda' && gpus.gpus === 0 && !model.remote) {
      throw new ConfigError(
        `models.${name}.device: cuda, but no GPU is visible (CUDA_VISIBLE_DEVICES, else nvidia-smi -L); auto falls back to the CPU, cuda:N pins a device`,
      );
    }
  }
}

// Remote models: as many as there are addresses, unless told fewer.
export const maxContainers = (m: ModelConfig) => m.scaling.max_containers ?? (m.remote ? m.remote.length : Math.max(1, m.scaling.min_containers));
