import { execFileSync } from 'node:child_process';
import { availableParallelism } from 'node:os';

/**
 * GPUs this process may use: CUDA_VISIBLE_DEVICES when set (CUDA renumbers those from 0), otherwise
 * what `nvidia-smi -L` lists ($INFERGATE_NVIDIA_SMI: where it is), otherwise none.
 */
export function visibleGpus(env: NodeJS.ProcessEnv = process.env): number {
  const visible = env.CUDA_VISIBLE_DEVICES;
  if (visible !== undefined) return visible.trim() === '' || visible.trim() === '-1' ? 0 : visible.split(',').length;
  try {
    return execFileSync(env.INFERGATE_NVIDIA_SMI || 'nvidia-smi', ['-L'], { timeout: 5000, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .split('\n')
      .filter((l) => l.startsWith('GPU ')).length;
  } catch {
    return 0;
  }
}

/**
 * Spreads replicas over the GPUs: a new replica of a model goes to the GPU with the fewest replicas of
 * that model (then the fewest of any model), at most `replicasPerGpu` of one model per GPU.
 * Shared by every pool so that two models spread over the same cards too.
 */
export class GpuPlacement {
  private used: Map<string, number>[];

  constructor(readonly gpus: number) {
    this.used = Array.from({ length: gpus }, () => new Map());
  }

  /** A device for a new replica of `model`, or null when every GPU holds `replicasPerGpu` of it already. */
  place(model: string, replicasPerGpu: number): { device: string; release(): void } | null {
    let best = -1;
    for (let g = 0; g < this.gpus; g++) {
      const mine = this.used[g].get(model) ?? 0;
      if (mine >= replicasPerGpu) continue;
      if (best < 0 || mine < (this.used[best].get(model) ?? 0) || (mine === (this.used[best].get(model) ?? 0) && this.total(g) < this.total(best))) best = g;
    }
    if (best < 0) return null;
    const gpu = this.used[best];
    gpu.set(model, (gpu.get(model) ?? 0) + 1);
    let released = false;
    return {
      device: `cuda:${best}`,
      release: () => {
        if (released) return;
        released = true;
        gpu.set(model, (gpu.get(model) ?? 1) - 1);
      },
    };
  }

  private total(g: number): number {
    let n = 0;
    for (const c of this.used[g].values()) n += c;
    return n;
  }
}

/**
 * ONNX Runtime threads for each CPU replica when the config leaves them to us: the cores divided by
 * the most CPU replicas that can run at once, so a full scale-out does not oversubscribe the machine.
 */
export function cpuThreadsPerReplica(maxCpuReplicas: number, cores = availableParallelism()): number {
  return Math.max(1, Math.floor(cores / Math.max(1, maxCpuReplicas)));
}
