import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { RemoteProvider } from '../src/autoscaler/remote.js';
import { LocalProcessProvider, type Replica } from '../src/autoscaler/replica.js';
import type { CudaOptions } from '../src/models/cuda-options.js';
import { RunTrace } from '../src/models/run-trace.js';
import { openSession, runSession, warmupInputs } from '../src/models/session.js';
import { readSignature } from '../src/models/signature.js';
import { type Inputs, numberToFloat16 } from '../src/tensor/index.js';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A server process (the gateway or a baseline), ready once `readyUrl` answers 200. */
export async function startServer(args: string[], readyUrl: string, env: Record<string, string> = {}): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'inherit'] });
  // Up to 2 minutes: a CUDA replica warming several batch sizes with cuDNN's exhaustive search is slow.
  for (let i = 0; i < 1200; i++) {
    if (child.exitCode !== null) throw new Error(`${args.join(' ')} exited with ${child.exitCode}`);
    if (
      await fetch(readyUrl).then(
        (r) => r.ok,
        () => false,
      )
    )
      return child;
    await sleep(100);
  }
  child.kill('SIGKILL');
  throw new Error(`${readyUrl} not ready`);
}

/**
 * `infergate serve` of `config` (written to bench/.gateway-PORT.yaml) on 127.0.0.1:`port`, as a user starts it;
 * ready once /v2/health/ready answers.
 */
export function serveConfig(port: number, config: { server?: object; models: object; [section: string]: unknown }): Promise<ChildProcess> {
  const file = join(ROOT, `bench/.gateway-${port}.yaml`);
  writeFileSync(file, stringify({ ...config, server: { port, host: '127.0.0.1', ...config.server } }));
  return startServer(['src/cli.ts', 'serve', '-c', file, '--log-level', 'warn'], `http://127.0.0.1:${port}/v2/health/ready`);
}

/** mlp on one replica of one thread, batches of up to 32 sent at once: the gateway-overhead benches' small model. */
export const SMALL_MLP = {
  path: join(ROOT, 'examples/models/mlp.onnx'),
  device: 'cpu',
  threads: 1,
  batching: { max_batch_size: 32, wait_ms: 0, max_queue_size: 4096 },
  scaling: { min_containers: 1 },
};

/** `infergate replica` serving one model file on a TCP port of this machine (one ONNX Runtime thread). */
export async function startRemoteReplica(path: string, port: number): Promise<ChildProcess> {
  const config = join(tmpdir(), `infergate-bench-remote-${port}.yaml`);
  writeFileSync(config, stringify({ models: { m: { path, device: 'cpu', threads: 1 } } }));
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'replica', '-c', config, '-m', 'm', '-l', `127.0.0.1:${port}`], {
    cwd: ROOT,
    env: { ...process.env, INFERGATE_REPLICA_TOKEN: '' },
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (d) => {
      out += d;
      if (out.includes('listening on')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`infergate replica exited with ${code}`)));
  });
  return child;
}

export async function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

export type ImageDType = 'FP32' | 'FP16' | 'UINT8';

/**
 * A model's first input at `batch` rows, zero-filled (as a warm-up gets it) and filled with image-like values
 * (as the load sends); `rows(n)` is that input with the values' first n rows, a smaller batch of the same images.
 */
export async function imageInputs(path: string, batch: number) {
  const sig = await readSignature(path);
  const { name, dtype } = sig.inputs[0];
  const zeros = warmupInputs(sig, {}, batch)[name];
  const values = imageLikeData(dtype as ImageDType, zeros.data.length);
  const rows = (n: number): Inputs => ({ [name]: { ...zeros, shape: [n, ...zeros.shape.slice(1)], data: values.subarray(0, (values.length / batch) * n) } });
  return { name, zeros, values, rows };
}

/** `count` values that vary like pixels (sin(i)), as the load generators send: not the zeros a warm-up uses. */
export function imageLikeData(dtype: ImageDType, count: number): Float32Array | Uint16Array | Uint8Array {
  const values = Array.from({ length: count }, (_, i) => Math.sin(i));
  if (dtype === 'FP16') return Uint16Array.from(values, numberToFloat16);
  return dtype === 'UINT8' ? Uint8Array.from(values, (v) => Math.round((v + 1) * 127)) : Float32Array.from(values);
}

/** A KServe v2 binary-extension request body with one input of small, finite values. */
export function binaryRequest(name: string, shape: number[], dtype: ImageDType = 'FP32'): { bodyFile: string; headerLength: number } {
  const count = shape.reduce((a, b) => a * b, 1);
  const data = imageLikeData(dtype, count);
  const header = Buffer.from(
    JSON.stringify({
      inputs: [{ name, shape, datatype: dtype, parameters: { binary_data_size: data.byteLength } }],
      parameters: { binary_data_output: true },
    }),
  );
  const file = join(tmpdir(), `infergate-bench-${name}-${dtype}-${shape.join('x')}.bin`);
  writeFileSync(file, Buffer.concat([header, Buffer.from(data.buffer, data.byteOffset, data.byteLength)]));
  return { bodyFile: file, headerLength: header.byteLength };
}

/**
 * Triton-style client shared memory: a tensor's bytes in a /dev/shm object registered with the gateway as
 * region `region`, and a JSON request body that only names it. Returns the body and a cleanup.
 */
export async function clientRegionRequest(
  base: string,
  input: { name: string; shape: number[]; dtype: 'FP32' | 'FP16' | 'UINT8' },
  region = 'bench',
): Promise<{ bodyFile: string; headerLength: number; remove: () => void }> {
  const bytes = input.shape.reduce((a, b) => a * b, 1) * { FP32: 4, FP16: 2, UINT8: 1 }[input.dtype];
  const key = `infergate-bench-${process.pid}-${region}`;
  writeFileSync(`/dev/shm/${key}`, Buffer.alloc(bytes, 7));
  const res = await fetch(`${base}/v2/systemsharedmemory/region/${region}/register`, {
    method: 'POST',
    body: JSON.stringify({ key: `/${key}`, byte_size: bytes }),
  });
  if (!res.ok) throw new Error(`register ${region}: ${res.status} ${await res.text()}`);
  const json = JSON.stringify({
    inputs: [{ name: input.name, shape: input.shape, datatype: input.dtype, parameters: { shared_memory_region: region, shared_memory_byte_size: bytes } }],
  });
  const bodyFile = join(tmpdir(), `${key}.json`);
  writeFileSync(bodyFile, json);
  return { bodyFile, headerLength: Buffer.byteLength(json), remove: () => rmSync(`/dev/shm/${key}`, { force: true }) };
}

export type Load = {
  connections: number;
  durationS: number;
  url: string;
  bodyFile: string;
  headerLength: number;
  processes?: number;
  /** Extra request headers (a caller's key). */
  headers?: Record<string, string>;
};
export type LoadResult = { requestsPerS: number; p50Ms: number; p99Ms: number; errors: number; non2xx: number; total: number };

/**
 * autocannon in its own process (the load generator must not share the gateway's event loop). With
 * `processes` > 1 the connections are split over that many autocannon processes, for loads one event
 * loop cannot push (GB/s of image tensors): rates add up; p50 is the mean and p99 the worst of theirs.
 */
export async function autocannon({ processes = 1, ...load }: Load): Promise<LoadResult> {
  const share = (i: number) => Math.floor(load.connections / processes) + (i < load.connections % processes ? 1 : 0);
  const runs = await Promise.all(Array.from({ length: processes }, (_, i) => oneAutocannon({ ...load, connections: share(i) })));
  const sum = (k: 'requestsPerS' | 'errors' | 'non2xx' | 'total') => runs.reduce((n, r) => n + r[k], 0);
  return {
    requestsPerS: sum('requestsPerS'),
    p50Ms: runs.reduce((n, r) => n + r.p50Ms, 0) / runs.length,
    p99Ms: Math.max(...runs.map((r) => r.p99Ms)),
    errors: sum('errors'),
    non2xx: sum('non2xx'),
    total: sum('total'),
  };
}

async function oneAutocannon(load: Load): Promise<LoadResult> {
  const args = ['--import', 'tsx', join(ROOT, 'bench/load.ts'), JSON.stringify(load)];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  await new Promise((r) => child.once('exit', r));
  const r = JSON.parse(out);
  if (r.non2xx > 0 || r.errors > 0) console.warn(`${load.url}: ${r.non2xx} non-2xx answers and ${r.errors} errors of ${r.requests.total}`);
  return {
    requestsPerS: r.requests.average,
    p50Ms: r.latency.p50,
    p99Ms: r.latency.p99,
    errors: r.errors,
    non2xx: r.non2xx,
    total: r.requests.total,
  };
}

/** The run with the median rate: the machine is noisy, so every load runs several times, interleaved. */
export function medianBy<T>(runs: T[], rate: (r: T) => number): T {
  return [...runs].sort((a, b) => rate(a) - rate(b))[Math.floor(runs.length / 2)];
}

/** The round with the median requests/s, and every round's (rounded), as the results' tables show them in brackets. */
export function medianRound<T extends { requestsPerS: number }>(runs: T[]): T & { runs: number[] } {
  return { ...medianBy(runs, (r) => r.requestsPerS), runs: runs.map((r) => Math.round(r.requestsPerS)) };
}

/** A benchmark's results: bench/results/NAME.json and NAME.md (printed too). */
export function writeResults(name: string, results: object, md: string, dir = join(ROOT, 'bench/results')): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${name}.json`), `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(join(dir, `${name}.md`), md);
  console.log(md);
}

export function machine() {
  return {
    cpu: cpus()[0]?.model,
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    // The version only: each result names the provider its sessions got (a GPU run's are CUDA).
    onnxruntime: JSON.parse(readFileSync(join(ROOT, 'node_modules/onnxruntime-node/package.json'), 'utf8')).version as string,
    date: new Date().toISOString(),
  };
}

const round = (v: number, d = 2) => Math.round(v * 10 ** d) / 10 ** d;

/** User + system CPU seconds of a process so far (Linux /proc; NaN elsewhere). */
export function cpuSeconds(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return Number.NaN;
  }
}

/** A process's main thread (for Node, its event loop): user and system CPU seconds and minor page faults so far, from /proc; NaN elsewhere. */
export function mainThreadUsage(pid: number): { userS: number; systemS: number; minorFaults: number } {
  try {
    const fields = readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return { userS: Number(fields[11]) / 100, systemS: Number(fields[12]) / 100, minorFaults: Number(fields[7]) };
  } catch {
    return { userS: Number.NaN, systemS: Number.NaN, minorFaults: Number.NaN };
  }
}

/** CPU seconds of a process's main thread alone, from /proc; NaN elsewhere. */
export function mainThreadCpuSeconds(pid: number): number {
  const { userS, systemS } = mainThreadUsage(pid);
  return userS + systemS;
}

/** What a main thread spent per request since `before` (a mainThreadUsage): CPU µs, user and system, and page faults. */
export function mainThreadPerRequest(pid: number, before: ReturnType<typeof mainThreadUsage>, requests: number) {
  const now = mainThreadUsage(pid);
  return {
    userUs: round((1e6 * (now.userS - before.userS)) / requests, 0),
    systemUs: round((1e6 * (now.systemS - before.systemS)) / requests, 0),
    minorFaults: round((now.minorFaults - before.minorFaults) / requests, 1),
  };
}

/**
 * A server (`node --import tsx ARGS`, ready when GET / on `port` answers) under autocannon, binary requests of
 * `shape` to /, after a 2 s warm-up: the load's result, the main thread's CPU and faults per request, and the
 * whole process's CPU µs per request.
 */
export async function serverUnderLoad(
  args: string[],
  port: number,
  load: { shape: number[]; dtype: ImageDType; connections: number; processes?: number },
  durationS: number,
) {
  const server = await startServer(args, `http://127.0.0.1:${port}/`);
  try {
    const pid = server.pid as number;
    const run = { ...binaryRequest('x', load.shape, load.dtype), url: `http://127.0.0.1:${port}/`, connections: load.connections, processes: load.processes };
    await autocannon({ ...run, durationS: 2 });
    const main0 = mainThreadUsage(pid);
    const cpu0 = cpuSeconds(pid);
    const result = await autocannon({ ...run, durationS });
    return {
      ...result,
      mainThread: mainThreadPerRequest(pid, main0, result.total),
      processUsPerRequest: round(((cpuSeconds(pid) - cpu0) * 1e6) / result.total, 0),
    };
  } finally {
    await stopServer(server);
  }
}

export type GatewayLoad = {
  port: number;
  /** `more`: other model options (response_cache_mb, …). */
  model: { name: string; path: string; threads: number; batching: object; more?: object };
  /** The config's telemetry section. @default the gateway's defaults */
  telemetry?: object;
  /** `processes`: autocannon processes to split the connections over. @default 1 */
  load: { shape: number[]; connections: number; dtype?: 'FP32' | 'FP16' | 'UINT8'; processes?: number };
  durationS: number;
  /** Extra environment for the gateway process. */
  env?: Record<string, string>;
  /** Extra server options. */
  server?: object;
  /** Run once the gateway is up; may replace the request body (default: a binary request of load.shape). */
  prepare?: (base: string) => Promise<{ bodyFile: string; headerLength: number; headers?: Record<string, string> }>;
};

/**
 * The gateway as a separate process (CLI, one replica), a 2 s warm-up, then autocannon at the model: the
 * load result with the mean batch size (from /stats) and CPU time per request of gateway and replica.
 */
export async function gatewayUnderLoad(g: GatewayLoad) {
  const config = join(ROOT, `bench/.gateway-${g.port}.yaml`);
  const models = {
    [g.model.name]: {
      path: g.model.path,
      device: 'cpu',
      threads: g.model.threads,
      batching: g.model.batching,
      scaling: { min_containers: 1 },
      ...g.model.more,
    },
  };
  const server = { port: g.port, host: '127.0.0.1', ...g.server };
  writeFileSync(config, stringify({ server, ...(g.telemetry && { telemetry: g.telemetry }), models }));
  const base = `http://127.0.0.1:${g.port}`;
  const gateway = await startServer(['src/cli.ts', 'serve', '-c', config, '--log-level', 'warn'], `${base}/v2/health/ready`, g.env);
  try {
    const body = (await g.prepare?.(base)) ?? binaryRequest('x', g.load.shape, g.load.dtype);
    const url = `${base}/v2/models/${g.model.name}/infer`;
    await autocannon({ ...body, url, connections: g.load.connections, processes: g.load.processes, durationS: 2 }); // warm-up
    const before = await (await fetch(`${base}/v2/models/${g.model.name}/stats`)).json();
    const pids = { gateway: gateway.pid as number, replica: before.replicas[0].pid as number };
    const cpu = () => ({ gateway: cpuSeconds(pids.gateway), replica: cpuSeconds(pids.replica) });
    const cpu0 = cpu();
    const main0 = mainThreadUsage(pids.gateway);
    const result = await autocannon({ ...body, url, connections: g.load.connections, processes: g.load.processes, durationS: g.durationS });
    const cpu1 = cpu();
    const after = await (await fetch(`${base}/v2/models/${g.model.name}/stats`)).json();
    const requests = after.requests - before.requests;
    return {
      ...result,
      meanBatchSize: (after.rows - before.rows) / Math.max(1, after.batches - before.batches),
      // CPU time per request, from /proc: where a 2-core machine's budget goes.
      cpuUsPerRequest: {
        gateway: round((1e6 * (cpu1.gateway - cpu0.gateway)) / requests, 0),
        replica: round((1e6 * (cpu1.replica - cpu0.replica)) / requests, 0),
      },
      // The gateway's event loop alone: the part that cannot spread over cores.
      gatewayMainThreadPerRequest: mainThreadPerRequest(pids.gateway, main0, requests),
    };
  } finally {
    await stopServer(gateway);
  }
}

/**
 * The ceiling: session.run in this process at a fixed batch, inputs already in host memory, one batch at a
 * time. `fill: 'values'` feeds what the load generators send instead of zeros: on the H200, zero-filled inputs (read from the kernel's one zero page) made ResNet-50 fp16 at batch
 * 128 look 25% faster than image-like values (16.8 vs 21.0 ms a run, bench/results/gpu-raw-inputs-*.json).
 */
export async function inProcessRate(
  path: string,
  device: string,
  threads: number,
  shape: number[],
  seconds: number,
  cuda: CudaOptions = {},
  fill: 'zeros' | 'values' = 'zeros',
) {
  const { session, provider } = await openSession(path, device, threads, cuda);
  const sig = await readSignature(path);
  const inputs = warmupInputs(sig, { [sig.inputs[0].name]: shape });
  const first = inputs[sig.inputs[0].name];
  if (fill === 'values') first.data = imageLikeData(first.dtype as ImageDType, first.data.length);
  for (let i = 0; i < 5; i++) await runSession(session, inputs);
  const trace = RunTrace.fromEnv([session]);
  let runs = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) {
    const startedAt = performance.now();
    await runSession(session, inputs);
    trace?.record(startedAt, shape[0], performance.now() - startedAt, true);
    runs++;
  }
  const s = (performance.now() - t0) / 1000;
  trace?.flush();
  await session.release();
  return { provider, rowsPerS: (runs * shape[0]) / s, msPerBatch: (s * 1000) / runs };
}

/**
 * Batches sent straight to one replica process (no gateway), two in flight, for `durationS`: batches/s.
 * `env` is what the replica starts with (read at fork); `check` may refuse the replica it got.
 */
export async function replicaRoundTrip(o: {
  name: string;
  path: string;
  /** One batch sent again and again, or several sent in turn (batches of different shapes). */
  inputs: Inputs | Inputs[];
  durationS: number;
  env?: Record<string, string>;
  check?: (r: Replica) => void;
  /** Reach it over TCP: an `infergate replica` process at this address instead of a local child. */
  remote?: string;
  /** @default 'cpu' (one thread); on another device the session takes ONNX Runtime's default threads */
  device?: string;
  /** Batch sizes the replica warms up at start (where CUDA picks its kernels). */
  warmupBatches?: number[];
}) {
  const saved = Object.fromEntries(Object.keys(o.env ?? {}).map((k) => [k, process.env[k]]));
  Object.assign(process.env, o.env);
  const provider = o.remote ? new RemoteProvider([o.remote], undefined) : new LocalProcessProvider();
  const replica = await provider
    .start(
      {
        model: o.name,
        replicaId: `bench-${o.name}`,
        path: o.path,
        device: o.device ?? 'cpu',
        threads: (o.device ?? 'cpu') === 'cpu' ? 1 : 0,
        warmupShapes: {},
        warmupBatches: o.warmupBatches,
      },
      { startupTimeoutMs: 60_000 },
    )
    .finally(() => {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    });
  try {
    o.check?.(replica);
    const turns = Array.isArray(o.inputs) ? o.inputs : [o.inputs];
    let sent = 0;
    let batches = 0;
    const until = performance.now() + o.durationS * 1000;
    const t0 = performance.now();
    const loop = async () => {
      while (performance.now() < until) {
        await replica.infer(turns[sent++ % turns.length]);
        batches++;
      }
    };
    await Promise.all([loop(), loop()]);
    return batches / ((performance.now() - t0) / 1000);
  } finally {
    await replica.stop();
  }
}

/**
 * `clients` loops in this process, each calling `call(client, i)` (its i-th call) until `seconds` have passed:
 * answers/s and latency percentiles (ms).
 */
export async function clientsLoad(clients: number, seconds: number, call: (client: number, i: number) => Promise<void>) {
  const latencies: number[] = [];
  const end = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      for (let i = 0; performance.now() < end; i++) {
        const t = performance.now();
        await call(c, i);
        latencies.push(performance.now() - t);
      }
    }),
  );
  latencies.sort((a, b) => a - b);
  const at = (q: number) => Math.round(latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] * 100) / 100;
  return { total: latencies.length, requestsPerS: latencies.length / seconds, p50Ms: at(0.5), p99Ms: at(0.99) };
}

/** What clientsLoad measured, with the gateway's CPU per answered request. */
export type GatewayRun = Awaited<ReturnType<typeof clientsLoad>> & { gatewayUs: number };

/**
 * Interleaved rounds: each variant's load (after a 1 s warm-up of each), `rounds` times, with the CPU its gateway
 * process (`pid`) spent per answered request; every round's result by variant, logged as it comes.
 */
export async function gatewayRounds(
  variants: Record<string, { pid: number; load: (seconds: number) => ReturnType<typeof clientsLoad> }>,
  rounds: number,
  seconds: number,
): Promise<Record<string, GatewayRun[]>> {
  const runs: Record<string, GatewayRun[]> = Object.fromEntries(Object.keys(variants).map((name) => [name, []]));
  for (const { load } of Object.values(variants)) await load(1);
  for (let round = 0; round < rounds; round++) {
    for (const [name, { pid, load }] of Object.entries(variants)) {
      const cpu0 = cpuSeconds(pid);
      const r = await load(seconds);
      const result = { ...r, gatewayUs: Math.round(((cpuSeconds(pid) - cpu0) * 1e6) / r.total) };
      console.log(round, name, Math.round(r.requestsPerS), 'answers/s', r.p50Ms, 'ms p50', result.gatewayUs, 'µs gateway CPU an answer');
      runs[name].push(result);
    }
  }
  return runs;
}

const pct = (xs: number[], p: number) => {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))];
};

type StepMs = { prefill: number; decode: number; sampling: number; grammar: number };
const stepMs = async (url: string, model: string): Promise<StepMs> =>
  ((await (await fetch(`${url}/v2/models/${model}/stats`)).json()) as { stepMs: StepMs }).stepMs;

/**
 * Closed-loop completion streams from a process of their own (bench/stream-load.ts) against generative `model`
 * (client i names `names[i % n]` where given: a LoRA adapter of it, say): tokens/s, time to first token,
 * inter-token gaps, and the replica's time in steps meanwhile with the share of it spent drawing tokens.
 */
export async function streamingLoad(o: {
  url: string;
  model: string;
  names?: string[];
  clients: number;
  seconds: number;
  maxTokens: number;
  /** 1 unless given; a `prompt` of one's own (each stream adds its number). */
  temperature?: number;
  prompt?: string;
  /** Each client sends the same request (prompt and seed) again and again. */
  repeat?: boolean;
}) {
  const before = await stepMs(o.url, o.model);
  const plan = {
    url: o.url,
    models: o.names ?? [o.model],
    clients: o.clients,
    seconds: o.seconds,
    maxTokens: o.maxTokens,
    temperature: o.temperature,
    prompt: o.prompt,
    repeat: o.repeat,
  };
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/stream-load.ts'), JSON.stringify(plan)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout?.on('data', (d) => (out += d));
  await new Promise((r) => child.once('exit', r));
  const { elapsedS, streams } = JSON.parse(out) as { elapsedS: number; streams: [number, number, number, number[]][] };
  const tokens = streams.reduce((n, s) => n + s[2], 0);
  const ttft = streams.map((s) => s[1]).filter((t) => t >= 0);
  const gaps = streams.flatMap((s) => s[3]);
  // Where the replica's step time went meanwhile: the model's runs, or drawing tokens (CPU work serial with them).
  const after = await stepMs(o.url, o.model);
  const stepS = (after.prefill + after.decode - before.prefill - before.decode) / 1000;
  const samplingShare = stepS > 0 ? Math.round((after.sampling - before.sampling) / 10 / stepS) : 0;
  return {
    streams: streams.length,
    tokensPerS: Math.round(tokens / elapsedS),
    ttftMs: { p50: pct(ttft, 0.5), p99: pct(ttft, 0.99) },
    interTokenMs: { p50: pct(gaps, 0.5), p99: pct(gaps, 0.99) },
    stepS: Math.round(stepS * 100) / 100,
    samplingShare,
  };
}

/**
 * A gateway (its own process) serving generative models for the streaming benches, from a config written into
 * `dir`: one replica each, on `device` (one ONNX Runtime thread on a CPU), room for `maxBatch` sequences a step.
 */
export function startGenerativeGateway(o: {
  port: number;
  dir: string;
  device: string;
  maxBatch: number;
  models: Record<string, object>;
}): Promise<ChildProcess> {
  const model = (m: object) => ({
    device: o.device,
    threads: o.device === 'cpu' ? 1 : 0,
    batching: { max_batch_size: o.maxBatch, max_queue_size: 256, timeout_ms: 120_000 },
    scaling: { min_containers: 1, max_containers: 1 },
    ...m,
  });
  const config = join(o.dir, 'config.yaml');
  const models = Object.fromEntries(Object.entries(o.models).map(([name, m]) => [name, model(m)]));
  writeFileSync(config, stringify({ server: { port: o.port, host: '127.0.0.1' }, models }));
  return startServer(['src/cli.ts', 'serve', '-c', config, '--log-level', 'warn'], `http://127.0.0.1:${o.port}/v2/health/ready`);
}
