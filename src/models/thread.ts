import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type SHARE_ENV, type TransferListItem, Worker } from 'node:worker_threads';

/**
 * A worker thread running one of this package's modules (`moduleUrl`: its import.meta.url). Under tsx
 * (tests, benchmarks) Node 20 does not pass a worker's entry through the --import hooks, so the worker
 * registers tsx itself — unless the tree was compiled for this run (see compiledFromSource).
 */
export function spawnWorker(moduleUrl: string, workerData: unknown, env?: typeof SHARE_ENV, transferList?: TransferListItem[]): Worker {
  const file = compiledFromSource(fileURLToPath(moduleUrl)) ?? fileURLToPath(moduleUrl);
  return file.endsWith('.ts')
    ? new Worker(`import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(moduleUrl)}); })`, {
        eval: true,
        workerData,
        env,
        transferList,
      })
    : new Worker(file, { workerData, env, transferList });
}

/**
 * A module of src/ run from source, as compiled for this run: $INFERGATE_COMPILED_SRC names the tree compiled
 * beside src/ (the tests compile it once, test/global-setup.ts — a process or thread starting under tsx spends most
 * of its start transforming modules). Undefined when not compiled, or not a module of src/.
 */
export function compiledFromSource(file: string): string | undefined {
  const compiled = process.env.INFERGATE_COMPILED_SRC;
  const src = join(dirname(fileURLToPath(import.meta.url)), '..');
  if (!compiled || !file.endsWith('.ts') || relative(src, file).startsWith('..')) return undefined;
  return join(compiled, relative(src, file)).replace(/\.ts$/, '.js');
}
