import { execFile } from 'node:child_process';

/** One GPU as nvidia-smi reads it: the NVML counters Triton's GPU metrics come from. */
export type GpuReading = {
  index: number;
  uuid: string;
  name: string;
  /** Share of the last sample period in which a kernel ran, 0–1 (none under MIG). */
  utilization?: number;
  memoryUsedBytes?: number;
  memoryTotalBytes?: number;
  powerWatts?: number;
  powerLimitWatts?: number;
  /** The NVIDIA driver's version, e.g. 580.159.04. */
  driver?: string;
};
/** A process holding memory on a GPU (a process on two GPUs is two of these). */
export type GpuProcess = { pid: number; gpuUuid: string; memoryBytes: number };
export type GpuSnapshot = { gpus: GpuReading[]; processes: GpuProcess[] };

// name last: the one field that could hold a comma.
const GPU_QUERY = '--query-gpu=index,uuid,utilization.gpu,memory.used,memory.total,power.draw,power.limit,driver_version,name';
const PROCESS_QUERY = '--query-compute-apps=pid,gpu_uuid,used_memory';
const CSV = '--format=csv,noheader,nounits';
const MIB = 2 ** 20;
/** nvidia-smi, or where $INFERGATE_NVIDIA_SMI says it is (GKE's nodes put it in /usr/local/nvidia/bin, off the PATH). */
export const nvidiaSmi = (env: NodeJS.ProcessEnv = process.env) => env.INFERGATE_NVIDIA_SMI || 'nvidia-smi';

/** nvidia-smi's CSV lines, split and trimmed; the last field keeps any commas. */
function rows(csv: string, fields: number): string[][] {
  return csv
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const parts = line.split(',').map((f) => f.trim());
      return [...parts.slice(0, fields - 1), parts.slice(fields - 1).join(', ')];
    });
}

/** A number, or undefined for nvidia-smi's "[N/A]", "[Not Supported]" and empty fields. */
function num(field: string | undefined, scale = 1): number | undefined {
  if (field === undefined || !/^-?\d+(\.\d+)?$/.test(field)) return undefined;
  return Number(field) * scale;
}

export function parseGpus(csv: string): GpuReading[] {
  return rows(csv, 9).flatMap(([index, uuid, utilization, used, total, power, limit, driver, name]) => {
    const i = num(index);
    if (i === undefined || !uuid) return [];
    const reading: GpuReading = { index: i, uuid, name, ...(/^\d/.test(driver) && { driver }) };
    const set = (key: keyof GpuReading, value: number | undefined) => value !== undefined && Object.assign(reading, { [key]: value });
    set('utilization', num(utilization, 1 / 100));
    set('memoryUsedBytes', num(used, MIB));
    set('memoryTotalBytes', num(total, MIB));
    set('powerWatts', num(power));
    set('powerLimitWatts', num(limit));
    return [reading];
  });
}

export function parseProcesses(csv: string): GpuProcess[] {
  return rows(csv, 3).flatMap(([pid, gpuUuid, used]) => {
    const p = num(pid);
    const memoryBytes = num(used, MIB);
    return p === undefined || memoryBytes === undefined || !gpuUuid ? [] : [{ pid: p, gpuUuid, memoryBytes }];
  });
}

/**
 * Reads the GPUs with nvidia-smi when asked (a scrape, /admin/stats), at most once every `maxAgeMs` (2 s) however many ask
 * at once (Triton reads its GPU metrics every 2 s): nothing runs while nobody looks. Where nvidia-smi is missing (a machine without NVIDIA's driver) it is not
 * tried again; where it fails or hangs (a wedged driver), that read has no GPUs and `onError` hears of it once, until
 * a read succeeds again.
 */
export class GpuMonitor {
  /** nvidia-smi is not installed (no NVIDIA driver): nothing is read, ever. */
  missing = false;
  private failing = false;
  private last?: { at: number; snapshot: Promise<GpuSnapshot | undefined> };

  constructor(private readonly opts: { command?: string; maxAgeMs?: number; timeoutMs?: number; onError?: (err: Error) => void } = {}) {}

  read(): Promise<GpuSnapshot | undefined> {
    if (this.missing) return Promise.resolve(undefined);
    const now = Date.now();
    if (this.last && now - this.last.at < (this.opts.maxAgeMs ?? 2000)) return this.last.snapshot;
    const snapshot = Promise.all([this.query(GPU_QUERY), this.query(PROCESS_QUERY)]).then(
      ([gpus, processes]) => {
        this.failing = false;
        return { gpus: parseGpus(gpus), processes: parseProcesses(processes) };
      },
      (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') this.missing = true;
        else if (!this.failing) {
          this.failing = true;
          this.opts.onError?.(err);
        }
        return undefined;
      },
    );
    this.last = { at: now, snapshot };
    return snapshot;
  }

  private query(what: string): Promise<string> {
    return new Promise((resolve, reject) =>
      execFile(this.opts.command ?? nvidiaSmi(), [what, CSV], { timeout: this.opts.timeoutMs ?? 3000, encoding: 'utf8' }, (err, stdout) =>
        err ? reject(err) : resolve(stdout),
      ),
    );
  }
}
