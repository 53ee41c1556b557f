// Builds dist/native/cuda-options.so (see cuda-options.c) as part of `npm run build`. Only models with
// `cuda:` options need it, so a machine without a C compiler gets a warning, not a failed install;
// INFERGATE_REQUIRE_NATIVE=1 (the Docker build) makes it an error.
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, '..', 'dist', 'native', 'cuda-options.so');
const required = process.env.INFERGATE_REQUIRE_NATIVE === '1';

if (process.platform !== 'linux') {
  console.warn(`native: skipped on ${process.platform} (the CUDA options shim is Linux-only)`);
  process.exit(0);
}
mkdirSync(dirname(out), { recursive: true });
const cc = process.env.CC || 'cc';
const args = ['-shared', '-fPIC', '-O2', '-Wall', '-Wextra', '-Werror', `-Wl,--version-script=${join(here, 'cuda-options.map')}`];
const result = spawnSync(cc, [...args, '-o', out, join(here, 'cuda-options.c'), '-ldl'], { stdio: 'inherit' });
if (result.status !== 0) {
  const why = result.error ? `${cc} not found` : `${cc} exited with ${result.status}`;
  console.warn(`native: could not build ${out} (${why}); models with cuda: options will not start on a GPU`);
  process.exit(required ? 1 : 0);
}
