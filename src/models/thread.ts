import { fileURLToPath } from 'node:url';
import { type SHARE_ENV, type TransferListItem, Worker } from 'node:worker_threads';

/**
 * A worker thread running one of this package's modules (`moduleUrl`: its import.meta.url). Under tsx
 * (tests, benchmarks) Node 20 does not pass a worker's entry through the --import hooks, so the worker
 * registers tsx itself.
 */
export function spawnWorker(moduleUrl: string, workerData: unknown, env?: typeof SHARE_ENV, transferList?: TransferListItem[]): Worker {
  return moduleUrl.endsWith('.ts')
    ? new Worker(`import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(moduleUrl)}); })`, {
        eval: true,
        workerData,
        env,
        transferList,
      })
    : new Worker(fileURLToPath(moduleUrl), { workerData, env, transferList });
}
