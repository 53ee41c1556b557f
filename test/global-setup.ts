import { copyFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { build } from 'esbuild';
import { ROOT } from './helpers.js';

/**
 * The source tree compiled once for this run (esbuild, as tsx would each file): the replica processes and worker
 * threads the tests start, and the CLI's, run it instead of transforming every module under tsx at each start — which took about a
 * third of the integration tests' time. Beside src/ (its files find ../models, ../package.json as from there), and
 * its own for each run; removed at the end.
 */
export default async function compileOnce(): Promise<() => Promise<void>> {
  const src = join(ROOT, 'src');
  const out = join(ROOT, `.test-build-${process.pid}`);
  const files = (await readdir(src, { recursive: true })).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'));
  await build({
    entryPoints: files.map((f) => join(src, f)),
    outdir: out,
    outbase: src,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    logLevel: 'warning',
  });
  for (const f of (await readdir(src, { recursive: true })).filter((f) => f.endsWith('.proto'))) await copyFile(join(src, f), join(out, f));
  process.env.INFERGATE_COMPILED_SRC = out; // (see compiledFromSource)
  return () => rm(out, { recursive: true, force: true });
}
