import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { sharedMemoryFinding, unresolvedLibraries } from './doctor.js';

describe("the CUDA provider's libraries", () => {
  it('names those the loader cannot find, as ldd reports them', async () => {
    // A library built against a libcudnn.so.9 that is then taken away: what a provider without cuDNN looks like.
    const dir = await mkdtemp(join(tmpdir(), 'infergate-ldd-'));
    try {
      await writeFile(join(dir, 'stub.c'), 'int cudnn_stub(void) { return 9; }\n');
      await writeFile(join(dir, 'provider.c'), 'int cudnn_stub(void);\nint provider(void) { return cudnn_stub(); }\n');
      execFileSync('cc', ['-shared', '-fPIC', '-Wl,-soname,libcudnn.so.9', '-o', join(dir, 'libcudnn.so.9'), join(dir, 'stub.c')]);
      execFileSync('cc', ['-shared', '-fPIC', '-o', join(dir, 'libprovider.so'), join(dir, 'provider.c'), join(dir, 'libcudnn.so.9')]);
      await rm(join(dir, 'libcudnn.so.9'));
      expect(await unresolvedLibraries(join(dir, 'libprovider.so'))).toEqual(['libcudnn.so.9']);
      expect(await unresolvedLibraries('/bin/sh')).toEqual([]); // everything found
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('/dev/shm', () => {
  it("warns of Docker's 64 MB default, which large batches do not fit, and says how to give more", () => {
    expect(sharedMemoryFinding('/dev/shm', 64 * 2 ** 20, 60 * 2 ** 20)).toEqual([
      'warn',
      "/dev/shm: 64 MiB (60 MiB free): large batches (images) will not fit and go through the replicas’ sockets — docker run --shm-size=2g (Docker's default is 64 MB) or --ipc=host",
    ]);
    expect(sharedMemoryFinding('/dev/shm', 24 * 2 ** 30, 20 * 2 ** 30)).toEqual(['ok', '/dev/shm: 24.0 GiB (20.0 GiB free)']);
  });
});
