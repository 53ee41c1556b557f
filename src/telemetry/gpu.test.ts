import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { gaugeText } from './gauge-text.js';
import { GpuMonitor, parseGpus, parseProcesses } from './gpu.js';

describe('nvidia-smi readings', () => {
  it('take numbers in MiB, percent and watts, and leave out a field it cannot read rather than reading it as 0', () => {
    expect(
      parseGpus('0, GPU-a, 100, 1, 2, 71.5, [N/A], 535.104.05, NVIDIA A100-SXM4-40GB\n\n3, GPU-b, [Not Supported], 0, 4096, [N/A], 300.00, [N/A], Tesla T4\n'),
    ).toEqual([
      {
        index: 0,
        uuid: 'GPU-a',
        name: 'NVIDIA A100-SXM4-40GB',
        driver: '535.104.05',
        utilization: 1,
        memoryUsedBytes: 2 ** 20,
        memoryTotalBytes: 2 ** 21,
        powerWatts: 71.5,
      },
      { index: 3, uuid: 'GPU-b', name: 'Tesla T4', memoryUsedBytes: 0, memoryTotalBytes: 4096 * 2 ** 20, powerLimitWatts: 300 },
    ]);
    expect(parseProcesses('4242, GPU-a, 512\n77, GPU-b, [N/A]\n')).toEqual([{ pid: 4242, gpuUuid: 'GPU-a', memoryBytes: 512 * 2 ** 20 }]);
    expect(parseGpus('No devices were found\n')).toEqual([]);
  });

  it('read nothing where nvidia-smi is missing', async () => {
    const errors: Error[] = [];
    const monitor = new GpuMonitor({ command: '/nonexistent/nvidia-smi', maxAgeMs: 0, onError: (e) => errors.push(e) });
    expect(await monitor.read()).toBeUndefined();
    expect(await monitor.read()).toBeUndefined();
    expect(errors).toEqual([]); // a machine without NVIDIA's driver is no error
  });

  it('give up on a read that hangs (a wedged driver) after its timeout', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'infergate-smi-'));
    await writeFile(join(dir, 'nvidia-smi'), '#!/bin/sh\nexec sleep 10\n', { mode: 0o755 });
    const errors: Error[] = [];
    const monitor = new GpuMonitor({ command: join(dir, 'nvidia-smi'), timeoutMs: 200, onError: (e) => errors.push(e) });
    const started = Date.now();
    expect(await monitor.read()).toBeUndefined();
    expect(Date.now() - started).toBeLessThan(5000);
    expect(errors).toHaveLength(1);
    await rm(dir, { recursive: true });
  });
});

describe('gauge text', () => {
  it("writes Prometheus' text format, label values escaped, empty families left out", () => {
    expect(
      gaugeText([
        { name: 'g', help: 'A gauge.', samples: [{ labels: { a: 'x"y\\z\nw', b: '1' }, value: 2.5 }] },
        { name: 'empty', help: 'None.', samples: [] },
      ]),
    ).toBe('# HELP g A gauge.\n# TYPE g gauge\ng{a="x\\"y\\\\z\\nw",b="1"} 2.5\n');
  });
});
