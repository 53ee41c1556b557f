/**
 * A vision model on one device, side by side in one run: raw in-process `session.run` at each batch size
 * (the ceiling) vs the gateway (a separate process, replicas on the device) under autocannon over the
 * KServe binary extension, with enough clients to fill that batch size. Writes gpu-<name>.json with
 * `gateway_over_raw` per batch size, and a markdown table.
 *
 *   node --import tsx bench/gpu/vision.ts --model resnet50-fp16.onnx --name resnet50-fp16 --shape 3,224,224 \
 *        --dtype FP16 --device cuda --batches 32,128,256 [--replicas-per-gpu 1] [--rows 8] [--seconds 10]
 *        [--load-processes cores/4] [--client-shm true] [--batch-sizes ladder|fixed] [--threads 0] [--fill 4]
 *        [--intake-threads 0] [--profile-gateway DIR] --out $OUT
 * On CPU for a dry run: --model examples/models/cnn-bench.onnx --shape 3,32,32 --device cpu --batches 32 --seconds 3
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { readSignature } from '../../src/models/signature.js';
import {
  autocannon,
  binaryRequest,
  clientRegionRequest,
  cpuSeconds,
  inProcessRate,
  machine,
  mainThreadCpuSeconds,
  ROOT,
  startServer,
  stopServer,
} from '../lib.js';
import { summarize } from './profile-summary.js';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i].replace(/^--/, ''), process.argv[i + 1]);
const opt = (k: string, d?: string) =>
  args.get(k) ??
  d ??
  (() => {
    throw new Error(`--${k} is required`);
  })();
const modelPath = resolve(opt('model'));
const name = opt('name', 'vision');
const inner = opt('shape').split(',').map(Number);
const dtype = opt('dtype', 'FP32') as 'FP32' | 'FP16' | 'UINT8';
const device = opt('device', 'cuda');
const batches = opt('batches', '32,128,256').split(',').map(Number);
const replicasPerGpu = Number(opt('replicas-per-gpu', '1'));
const rowsPerRequest = Number(opt('rows', '8'));
const seconds = Number(opt('seconds', '10'));
/** The gateway's padded batch sizes: 'ladder' (batch/4, batch/2, batch) or 'fixed' (every batch padded to the batch size: one shape). */
const batchSizes = opt('batch-sizes', 'ladder');
if (batchSizes !== 'ladder' && batchSizes !== 'fixed') throw new Error(`--batch-sizes must be ladder or fixed, not ${batchSizes}`);
/** Images in client shared memory (Triton's extension) instead of HTTP bodies. */
const clientShm = args.get('client-shm') === 'true';
/** CUDA provider options (JSON, the config's `cuda:`), for the raw session and the gateway's replicas alike; the raw one needs this process started with the shim in LD_PRELOAD (run.sh does). */
const cuda = JSON.parse(opt('cuda', '{}')) as Record<string, string | number | boolean>;
/** ONNX Runtime's intra-op threads (the model's `threads`), raw and replicas alike; 0 lets it choose (a thread per core). */
const threads = Number(opt('threads', '0'));
/** Requests in flight, in batches' worth per replica: on the H200, 2 left batches at ~80 of 128 rows (padded up), 4 fills them (~124). */
const fill = Number(opt('fill', process.env.FILL ?? '4'));
/** The gateway's server.intake_threads: HTTP bodies read and answers written on worker threads (more than 1 needs Node 22.12+). */
const intakeThreads = Number(opt('intake-threads', '0'));
/** Start the gateway with V8's CPU profiler (profiles under DIR) and add where its main thread went to the results. */
const profileDir = args.get('profile-gateway');
const loadProcesses = Number(opt('load-processes', String(Math.max(1, Math.floor(cpus().length / 4)))));
const out = resolve(opt('out', join(ROOT, 'bench/results')));
const PORT = 18710;

async function raw(batch: number) {
  // Fed the same image-like values the load sends: a zero-filled input flatters the raw run (see inProcessRate).
  const r = await inProcessRate(modelPath, device, threads, [batch, ...inner], seconds, cuda, 'values');
  return { provider: r.provider, rowsPerS: Math.round(r.rowsPerS), msPerBatch: Math.round(r.msPerBatch * 100) / 100 };
}

function gpuMemoryMiB(): number[] | undefined {
  try {
    return execFileSync('nvidia-smi', ['--query-gpu=memory.used', '--format=csv,noheader,nounits'], { encoding: 'utf8' }).trim().split('\n').map(Number);
  } catch {
    return undefined;
  }
}

async function gateway(batch: number) {
  const sig = await readSignature(modelPath);
  const input = sig.inputs[0].name;
  const replicas = device === 'cpu' ? 1 : replicasPerGpu;
  const config = join(ROOT, 'bench/.gpu-vision.yaml');
  writeFileSync(
    config,
    stringify({
      server: { port: PORT, host: '127.0.0.1', max_body_bytes: 512 * 1024 * 1024, client_shared_memory: clientShm, intake_threads: intakeThreads },
      models: {
        [name]: {
          path: modelPath,
          device,
          threads,
          ...(Object.keys(cuda).length > 0 ? { cuda } : {}),
          // Three fixed batch sizes, all warmed up at start: cuDNN searches convolution algorithms per new
          // input shape, and requests of 8 rows would otherwise make every multiple of 8 a new shape.
          batching: {
            max_batch_size: batch,
            wait_ms: 2,
            max_queue_size: 65536,
            max_inputs: 2,
            timeout_ms: 60_000,
            batch_sizes: batchSizes === 'fixed' ? [batch] : [...new Set([Math.max(1, batch / 4), Math.max(1, batch / 2), batch].map(Math.round))],
          },
          scaling: { min_containers: replicas, max_containers: replicas, replicas_per_gpu: replicas },
        },
      },
    }),
  );
  const profile = profileDir ? ['--cpu-prof', '--cpu-prof-dir', join(profileDir, `${name}-${batch}`)] : [];
  const server = await startServer([...profile, 'src/cli.ts', 'serve', '-c', config, '--log-level', 'warn'], `http://127.0.0.1:${PORT}/v2/health/ready`);
  try {
    const base = `http://127.0.0.1:${PORT}`;
    const shm = clientShm ? await clientRegionRequest(base, { name: input, shape: [rowsPerRequest, ...inner], dtype }) : undefined;
    onStop = () => shm?.remove();
    const body = shm ?? binaryRequest(input, [rowsPerRequest, ...inner], dtype);
    const url = `http://127.0.0.1:${PORT}/v2/models/${name}/infer`;
    // Enough requests in flight to fill two batches per replica, from several load processes where the
    // machine has the cores: one autocannon event loop tops out near the GB/s these tensors need.
    const connections = Math.max(8, Math.ceil((fill * batch * replicas) / rowsPerRequest));
    const processes = Math.max(1, Math.min(loadProcesses, Math.floor(connections / 4)));
    await autocannon({ ...body, url, connections, processes, durationS: 3 });
    const before = await (await fetch(`http://127.0.0.1:${PORT}/v2/models/${name}/stats`)).json();
    const gw = server.pid as number;
    const replicaPids: number[] = before.replicas.map((x: { pid: number }) => x.pid);
    const replicaCpu = () => replicaPids.reduce((n, pid) => n + cpuSeconds(pid), 0);
    const cpu0 = { all: cpuSeconds(gw), main: mainThreadCpuSeconds(gw), replicas: replicaCpu() };
    const r = await autocannon({ ...body, url, connections, processes, durationS: seconds });
    const cpu1 = { all: cpuSeconds(gw), main: mainThreadCpuSeconds(gw), replicas: replicaCpu() };
    const after = await (await fetch(`http://127.0.0.1:${PORT}/v2/models/${name}/stats`)).json();
    const pools = await (await fetch(`http://127.0.0.1:${PORT}/admin/pools`)).json();
    // Intake threads' busy share over the last ~10 s (the load and most of its warm-up).
    const { gateway: loops } = await (await fetch(`http://127.0.0.1:${PORT}/admin/stats`)).json();
    return {
      rowsPerS: Math.round(r.requestsPerS * rowsPerRequest),
      requestsPerS: Math.round(r.requestsPerS),
      p50Ms: r.p50Ms,
      p99Ms: r.p99Ms,
      errors: r.errors + r.non2xx,
      connections,
      loadProcesses: processes,
      meanBatchRows: Math.round(((after.rows - before.rows) / Math.max(1, after.batches - before.batches)) * 10) / 10,
      // Where the gateway's time went: near 1.0 of the main thread means its event loop is the limit.
      gatewayCores: {
        mainThread: Math.round(((cpu1.main - cpu0.main) / seconds) * 100) / 100,
        allThreads: Math.round(((cpu1.all - cpu0.all) / seconds) * 100) / 100,
        intakeThreadsBusy: loops.intakeBusy as number[] | undefined,
      },
      replicaCores: Math.round(((cpu1.replicas - cpu0.replicas) / seconds) * 100) / 100,
      // Where a batch's time went on the server (Triton's statistics): waiting in the queue (per request),
      // moving the batch to the replica and back, and the replica's session.run.
      serverMs: serverPhases(before.model_stats[0], after.model_stats[0]),
      paddingRowsShare: Math.round(((after.paddingRows - before.paddingRows) / Math.max(1, after.rows - before.rows)) * 1000) / 1000,
      replicas: pools.models[0].replicas.map((x: { device: string; provider: string; coldStart?: object }) => ({
        device: x.device,
        provider: x.provider,
        coldStart: x.coldStart,
      })),
      gpuMemoryMiB: gpuMemoryMiB(),
    };
  } finally {
    await stopServer(server);
    onStop();
  }
}

/** The gateway's main thread by what it served, from the profile its exit wrote (see profile-summary.ts). */
function gatewayProfile(batch: number) {
  if (!profileDir) return undefined;
  const dir = join(profileDir, `${name}-${batch}`);
  const file = readdirSync(dir).find((f) => /\.0\.\d+\.cpuprofile$/.test(f)); // thread 0: the main thread
  return file ? summarize(JSON.parse(readFileSync(join(dir, file), 'utf8'))) : undefined;
}
let onStop = () => {};

type DurationStat = { count: number; ns: number };
type TritonStats = { inference_stats: Record<'success' | 'queue' | 'compute_input' | 'compute_infer' | 'compute_output', DurationStat> };
/** Mean ms per request (success, queue) and per execution (compute_*) between two readings of Triton's statistics. */
function serverPhases(before: TritonStats, after: TritonStats) {
  const mean = (k: keyof TritonStats['inference_stats']) => {
    const [a, b] = [after.inference_stats[k], before.inference_stats[k]];
    return Math.round((a.ns - b.ns) / 1e4 / Math.max(1, a.count - b.count)) / 100;
  };
  return { request: mean('success'), queue: mean('queue'), input: mean('compute_input'), infer: mean('compute_infer'), output: mean('compute_output') };
}

async function main() {
  const rows = [];
  for (const batch of batches) {
    const ceiling = await raw(batch);
    console.log(name, batch, 'raw', ceiling);
    const served = { ...(await gateway(batch)), mainThreadProfile: gatewayProfile(batch) };
    console.log(name, batch, 'gateway', served);
    rows.push({ batch, raw: ceiling, gateway: served, gateway_over_raw: Math.round((served.rowsPerS / ceiling.rowsPerS) * 1000) / 1000 });
  }
  const results = {
    machine: { ...machine(), gpu: gpuName() },
    model: name,
    input: { dtype, shape: ['N', ...inner] },
    device,
    rowsPerRequest,
    replicasPerGpu,
    clientShm,
    intakeThreads,
    batchSizes,
    cuda,
    threads,
    fill,
    seconds,
    gateway_over_raw: Object.fromEntries(rows.map((r) => [r.batch, r.gateway_over_raw])),
    rows,
  };
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, `gpu-${name}.json`), `${JSON.stringify(results, null, 2)}\n`);
  const md = `## ${name} (${dtype} ${['N', ...inner].join('×')}) on ${device}${results.machine.gpu ? ` (${results.machine.gpu})` : ''}, ${replicasPerGpu} replica(s) per GPU${clientShm ? ', images in client shared memory' : ', images in HTTP bodies (binary extension)'}${intakeThreads ? `, ${intakeThreads} intake thread(s)` : ''}${Object.keys(cuda).length > 0 ? `, CUDA options ${JSON.stringify(cuda)}` : ''}

| batch | raw session.run rows/s | raw ms/batch | gateway rows/s | gateway / raw | p50 ms | p99 ms | mean batch | clients × rows | gateway event loop busy | gateway cores | replica cores | server ms: queue / to replica and back / session.run / split |
|---|---|---|---|---|---|---|---|---|---|---|---|---|
${rows.map((r) => `| ${r.batch} | ${r.raw.rowsPerS} | ${r.raw.msPerBatch} | ${r.gateway.rowsPerS} | **${r.gateway_over_raw}** | ${r.gateway.p50Ms} | ${r.gateway.p99Ms} | ${r.gateway.meanBatchRows} | ${r.gateway.connections} × ${rowsPerRequest} | ${r.gateway.gatewayCores.mainThread}${r.gateway.gatewayCores.intakeThreadsBusy ? ` (intake ${r.gateway.gatewayCores.intakeThreadsBusy.join(', ')})` : ''} | ${r.gateway.gatewayCores.allThreads} | ${r.gateway.replicaCores} | ${r.gateway.serverMs.queue} / ${r.gateway.serverMs.input} / ${r.gateway.serverMs.infer} / ${r.gateway.serverMs.output} |`).join('\n')}
`;
  const profiles = rows
    .filter((r) => r.gateway.mainThreadProfile)
    .map(
      (r) =>
        `\nThe gateway's main thread at batch ${r.batch} (busy time, V8 CPU profile):\n\n| spent on | ms | share |\n|---|---|---|\n${r.gateway.mainThreadProfile?.map((p) => `| ${p.category} | ${p.ms} | ${p.share} |`).join('\n')}\n`,
    )
    .join('');
  writeFileSync(join(out, `gpu-${name}.md`), md + profiles);
  console.log(md);
}

function gpuName(): string | undefined {
  try {
    return execFileSync('nvidia-smi', ['--query-gpu=name', '--format=csv,noheader'], { encoding: 'utf8' }).trim().split('\n')[0];
  } catch {
    return undefined;
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
