/**
 * Cold start of a replica and scale to zero, on one device: GPU memory before, while the replica is up,
 * and after it has scaled to zero (nvidia-smi), the first request's latency and the replica's cold-start
 * breakdown (spawn + module load, session creation, warm-up). Writes gpu-NAME.{json,md} (NAME: coldstart).
 *   node --import tsx bench/gpu/coldstart.ts --model resnet50-fp16.onnx [--device cuda] [--batch-sizes 32,128,256]
 *     [--cuda '{"cudnn_conv_algo_search":"HEURISTIC"}'] [--name coldstart] --out $OUT
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { readSignature } from '../../src/models/signature.js';
import { binaryRequest, machine, ROOT, sleep, startServer, stopServer } from '../lib.js';

const flag = (name: string, fallback?: string) => (process.argv.includes(`--${name}`) ? process.argv[process.argv.indexOf(`--${name}`) + 1] : fallback);
const modelPath = resolve(flag('model') ?? join(ROOT, 'examples/models/cnn-bench.onnx'));
const device = flag('device', 'cuda') as string;
const out = resolve(flag('out', join(ROOT, 'bench/results')) as string);
/** CUDA provider options (JSON, the config's `cuda:`) and a name for the result files. */
const cuda = JSON.parse(flag('cuda', '{}') as string) as Record<string, string | number | boolean>;
const name = flag('name', 'coldstart') as string;
/** Fixed batch sizes, each warmed up at replica start (where cuDNN's algorithm search shows). */
const batchSizes = flag('batch-sizes')?.split(',').map(Number);
const PORT = 18711;

const gpuMemoryMiB = (): number | null => {
  try {
    return Number(execFileSync('nvidia-smi', ['--query-gpu=memory.used', '--format=csv,noheader,nounits'], { encoding: 'utf8' }).trim().split('\n')[0]);
  } catch {
    return null;
  }
};

async function main() {
  const sig = await readSignature(modelPath);
  const input = sig.inputs[0];
  const config = join(ROOT, 'bench/.gpu-coldstart.yaml');
  writeFileSync(
    config,
    stringify({
      server: { port: PORT, host: '127.0.0.1' },
      models: {
        m: {
          path: modelPath,
          device,
          ...(Object.keys(cuda).length > 0 ? { cuda } : {}),
          batching: batchSizes
            ? { max_batch_size: batchSizes.at(-1), batch_sizes: batchSizes, timeout_ms: 120_000 }
            : { max_batch_size: 8, timeout_ms: 120_000 },
          scaling: { min_containers: 0, max_containers: 1, scaledown_window: 2 },
        },
      },
    }),
  );
  const base = `http://127.0.0.1:${PORT}`;
  const server = await startServer(['src/cli.ts', 'serve', '-c', config, '--log-level', 'warn'], `${base}/v2/health/ready`);
  try {
    const before = gpuMemoryMiB();
    const shape = [1, ...input.shape.slice(1).map((d) => (typeof d === 'number' ? d : 224))];
    const body = binaryRequest(input.name, shape, input.dtype as 'FP32' | 'FP16' | 'UINT8');
    const headers = { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(body.headerLength) };
    const payload = readFileSync(body.bodyFile);
    const t0 = performance.now();
    const first = await fetch(`${base}/v2/models/m/infer`, { method: 'POST', body: payload, headers });
    const firstMs = performance.now() - t0;
    const t1 = performance.now();
    const second = await fetch(`${base}/v2/models/m/infer`, { method: 'POST', body: payload, headers });
    const warmMs = performance.now() - t1;
    const up = (await (await fetch(`${base}/admin/pools`)).json()).models[0].replicas[0];
    const during = gpuMemoryMiB();
    const replicaMetricMiB = async () => {
      const line = (await (await fetch(`${base}/metrics`)).text()).split('\n').find((l) => l.startsWith('infergate_replica_gpu_memory_bytes{'));
      return line === undefined ? null : Math.round(Number(line.split(' ').at(-1)) / 2 ** 20);
    };
    const duringMetric = await replicaMetricMiB(); // the gateway's own reading of what its replica holds
    const t2 = performance.now();
    for (let i = 0; i < 600; i++) {
      if ((await (await fetch(`${base}/admin/pools`)).json()).models[0].replicas.length === 0) break;
      await sleep(100);
    }
    const scaledToZeroS = (performance.now() - t2) / 1000;
    await sleep(500);
    const after = gpuMemoryMiB();
    const afterMetric = await replicaMetricMiB();
    const results = {
      machine: machine(),
      model: modelPath.split('/').at(-1),
      device,
      cuda,
      batchSizes: batchSizes ?? null,
      statuses: [first.status, second.status],
      firstRequestMs: Math.round(firstMs),
      warmRequestMs: Math.round(warmMs * 10) / 10,
      replica: { device: up.device, provider: up.provider, coldStart: up.coldStart },
      scaledToZeroAfterS: Math.round(scaledToZeroS * 10) / 10,
      gpuMemoryMiB: { before, whileUp: during, afterScaleToZero: after },
      replicaGpuMemoryMetricMiB: { whileUp: duringMetric, afterScaleToZero: afterMetric },
    };
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, `gpu-${name}.json`), `${JSON.stringify(results, null, 2)}\n`);
    const c = up.coldStart ?? {};
    const md = `## Cold start and scale to zero (${results.model} on ${device}${batchSizes ? `, warm-up at batch ${batchSizes.join('/')}` : ''}${Object.keys(cuda).length > 0 ? `, CUDA options ${JSON.stringify(cuda)}` : ''})

First request (cold start included): ${results.firstRequestMs} ms; next request: ${results.warmRequestMs} ms.
Replica cold start ${Math.round(c.totalMs)} ms = spawn + module load ${Math.round(c.spawnMs)} ms + session ${Math.round(c.sessionMs)} ms + warm-up ${Math.round(c.warmupMs)} ms (provider ${up.provider}).
Scaled to zero ${results.scaledToZeroAfterS} s after the last request (scaledown_window 2 s).
GPU memory used: ${before ?? '–'} MiB before, ${during ?? '–'} MiB with the replica up, ${after ?? '–'} MiB after scale to zero.
On /metrics, infergate_replica_gpu_memory_bytes: ${duringMetric ?? 'none'} MiB with the replica up, ${afterMetric ?? 'no series'} after scale to zero.
`;
    writeFileSync(join(out, `gpu-${name}.md`), md);
    console.log(md);
  } finally {
    await stopServer(server);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
