import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../config/index.js';
import { startGateway } from '../start.js';
import { cpuThreadsPerReplica, GpuPlacement, visibleGpus } from './placement.js';

const MLP = fileURLToPath(new URL('../../examples/models/mlp.onnx', import.meta.url));

describe('GpuPlacement', () => {
  it('spreads one model over the GPUs, then stacks up to replicas_per_gpu, then refuses', () => {
    const gpus = new GpuPlacement(2);
    const devices = [1, 2, 3, 4].map(() => gpus.place('resnet', 2)?.device);
    expect(devices).toEqual(['cuda:0', 'cuda:1', 'cuda:0', 'cuda:1']);
    expect(gpus.place('resnet', 2)).toBeNull();
  });

  it('puts a second model on the emptier card and frees a slot on release', () => {
    const gpus = new GpuPlacement(2);
    const a = gpus.place('a', 1);
    expect(a?.device).toBe('cuda:0');
    expect(gpus.place('b', 1)?.device).toBe('cuda:1');
    expect(gpus.place('a', 1)?.device).toBe('cuda:1');
    expect(gpus.place('a', 1)).toBeNull();
    a?.release();
    a?.release(); // idempotent
    expect(gpus.place('a', 1)?.device).toBe('cuda:0');
  });
});

describe('device: cuda without a GPU', () => {
  it('is a config error at start, not replicas waiting forever for a device', async () => {
    const config = parseConfig({ models: { m: { path: MLP, device: 'cuda' } } });
    await expect(startGateway(config, { log: pino({ level: 'silent' }), gpus: 0 })).rejects.toThrow('models.m.device: cuda, but no GPU is visible');
  });
});

describe('models.X.labels', () => {
  it('is a config error at start when the file cannot be read', async () => {
    const config = parseConfig({ models: { m: { path: MLP, labels: '/nonexistent/labels.txt', device: 'cpu' } } });
    await expect(startGateway(config, { log: pino({ level: 'silent' }), gpus: 0 })).rejects.toThrow('models.m.labels: cannot read /nonexistent/labels.txt');
  });
});

describe('visibleGpus', () => {
  it.each([
    ['0,1,3', 3],
    ['', 0],
    ['-1', 0],
  ])('counts CUDA_VISIBLE_DEVICES=%j as %d', (value, n) => {
    expect(visibleGpus({ CUDA_VISIBLE_DEVICES: value })).toBe(n);
  });
});

describe('cpuThreadsPerReplica', () => {
  it.each([
    [1, 16, 16],
    [4, 16, 4],
    [3, 2, 1],
  ])('%d replicas on %d cores: %d threads each', (replicas, cores, threads) => {
    expect(cpuThreadsPerReplica(replicas, cores)).toBe(threads);
  });
});
