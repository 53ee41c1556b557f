import { execFile } from 'node:child_process';
import { statfs } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { type Config, parseConfig } from './config/index.js';
import type { Fleet } from './gateway/index.js';
import { cudaOptionsUnavailable, hasCudaOptions, missingCudaProvider, providerLibrary, sharedMemoryDir } from './models/index.js';
import { fleetOf, type Gateway, startGateway } from './start.js';
import { GpuMonitor, type GpuReading } from './telemetry/index.js';

export type Finding = { check: string; status: 'ok' | 'warn' | 'fail' | 'skip'; detail: string };

const IDENTITY = fileURLToPath(new URL('../examples/models/identity.onnx', import.meta.url));
/** CUDA 13, which onnxruntime-node 1.29's CUDA provider is built for, needs NVIDIA's 580 drivers or later. */
const CUDA13_DRIVER = 580;

/**
 * What stands between this machine and serving: a replica started for real on the CPU and on each kind of device the
 * config asks for, the NVIDIA driver, the CUDA provider's library and the libraries it loads (ldd names those missing:
 * the usual reason a CUDA session fails), and each model's device. Nothing is changed.
 */
export async function doctor(config?: Config, opts: { nvidiaSmi?: string } = {}): Promise<Finding[]> {
  const findings: Finding[] = [];
  const add = (check: string, status: Finding['status'], detail: string) => findings.push({ check, status, detail });

  const major = Number(process.versions.node.split('.')[0]);
  add('Node.js', major >= 20 ? 'ok' : 'fail', `${process.version} on ${process.platform}-${process.arch}${major >= 20 ? '' : ': infergate needs 20 or later'}`);
  const ortVersion = (createRequire(import.meta.url)('onnxruntime-node/package.json') as { version: string }).version;
  add('CPU replica', ...(await probe('cpu', `onnxruntime-node ${ortVersion}`)));

  let smiError = '';
  const monitor = new GpuMonitor({ command: opts.nvidiaSmi, onError: (err) => (smiError = firstLine(err.message)) });
  const gpus = (await monitor.read())?.gpus ?? [];
  const visible = process.env.CUDA_VISIBLE_DEVICES;
  if (monitor.missing) add('GPUs', 'skip', 'no NVIDIA driver (nvidia-smi is not installed): the CPU only');
  else if (smiError) add('GPUs', 'fail', `nvidia-smi failed: ${smiError}`);
  else if (gpus.length === 0) add('GPUs', 'skip', 'nvidia-smi lists none');
  else add('GPUs', 'ok', `${gpus.map(describeGpu).join('; ')}${visible === undefined ? '' : ` (CUDA_VISIBLE_DEVICES=${visible})`}`);

  let cuda: string | undefined = gpus.length === 0 ? 'no GPU' : undefined; // why CUDA cannot be used, if it cannot
  const driver = gpus[0]?.driver;
  if (driver && Number(driver.split('.')[0]) < CUDA13_DRIVER) {
    cuda = `driver ${driver} is older than CUDA 13 allows`;
    add('NVIDIA driver', 'fail', `${driver}: the CUDA provider is built for CUDA 13, which needs the ${CUDA13_DRIVER} drivers or later`);
  } else if (driver) add('NVIDIA driver', 'ok', `${driver} (CUDA 13 needs ${CUDA13_DRIVER} or later)`);

  const missing = missingCudaProvider();
  if (missing) {
    cuda ??= 'the CUDA provider is not installed';
    add('CUDA provider', gpus.length > 0 ? 'fail' : 'skip', missing);
  } else {
    const unresolved = await unresolvedLibraries(providerLibrary());
    if (unresolved.length > 0) {
      cuda ??= `the CUDA provider cannot load ${unresolved.join(', ')}`;
      add(
        'CUDA provider',
        gpus.length > 0 ? 'fail' : 'skip',
        `installed, but these libraries it loads are not found: ${unresolved.join(', ')} — NVIDIA's CUDA 13 runtime and cuDNN 9 (the Docker image's base has both), or LD_LIBRARY_PATH to them`,
      );
    } else add('CUDA provider', 'ok', `installed, and every library it loads is found (${providerLibrary()})`);
  }
  if (!cuda) {
    const [status, detail] = await probe('cuda:0', `GPU 0`);
    add('CUDA replica', status, detail);
    if (status !== 'ok') cuda = detail;
  }

  const shm = sharedMemoryDir();
  if (!shm) add('Shared memory', 'warn', 'no writable /dev/shm ($INFERGATE_SHM_DIR): batches go through the replicas’ sockets, slower past 128 KiB');
  else {
    const fs = await statfs(shm);
    add('Shared memory', ...sharedMemoryFinding(shm, fs.blocks * fs.bsize, fs.bavail * fs.bsize));
  }

  const shim = cudaOptionsUnavailable();
  const withOptions = Object.entries(config?.models ?? {}).filter(([, m]) => !m.remote && m.device !== 'cpu' && hasCudaOptions(m.cuda));
  if (shim)
    add(
      'CUDA options',
      withOptions.length > 0 && !cuda ? 'fail' : 'skip',
      `${shim}${withOptions.length ? ` (models ${withOptions.map(([n]) => n).join(', ')} have cuda: options)` : ''}`,
    );
  else add('CUDA options', 'ok', 'the shim that applies models’ cuda: options is built');

  if (config?.server.fleet) findings.push(...(await fleetFindings(config)));

  for (const [name, m] of Object.entries(config?.models ?? {})) {
    const check = `model ${name}`;
    const n = m.device.startsWith('cuda:') ? Number(m.device.slice(5)) : 0;
    if (m.remote) add(check, 'skip', `remote replicas (${m.remote.join(', ')}): run infergate doctor on their machines`);
    else if (m.device === 'cpu') add(check, 'ok', 'runs on the CPU');
    else if (m.device === 'auto')
      // On a machine without GPUs the CPU is what auto means; with GPUs it cannot use, something is wrong.
      add(check, cuda && gpus.length > 0 ? 'warn' : 'ok', cuda ? `device auto runs on the CPU here: ${cuda}` : 'device auto runs on the GPUs');
    else if (cuda) add(check, 'fail', `device ${m.device} cannot run here: ${cuda}`);
    else if (n >= gpus.length) add(check, 'fail', `device ${m.device}, but only ${gpus.length} GPU(s) are visible`);
    else add(check, 'ok', `runs on ${m.device === 'cuda' ? 'the GPUs' : `GPU ${n}`}`);
  }
  return findings;
}

/**
 * The fleet's other gateways (server.fleet) as this one would reach them: each answering ready, and — with the
 * fleet's secret — taking it (a gateway whose secret differs refuses what the others tell it: their rate limits'
 * spends, their sequences; only its counters and logs said so).
 */
export async function fleetFindings(config: Config): Promise<Finding[]> {
  const fleet = fleetOf(config) as Fleet;
  let lookup = '';
  await fleet.start((err) => (lookup = err.message));
  fleet.stop();
  if (lookup) return [{ check: 'fleet', status: 'fail', detail: `server.fleet.discover: the lookup failed: ${lookup}` }];
  const peers = fleet.known();
  if (peers.length === 0) return [{ check: 'fleet', status: 'warn', detail: 'no other gateway found (DNS gives this one alone, or none yet)' }];
  return Promise.all(
    peers.map(async (peer): Promise<Finding> => {
      const check = `fleet ${peer}`;
      const ready = await fetch(`${peer}/v2/health/ready`, { signal: AbortSignal.timeout(2000) }).then(
        (res) => res.status,
        (err: Error) => err.message,
      );
      if (ready !== 200) return { check, status: 'warn', detail: `not ready (${ready}): down, or still starting — what it keeps cannot be reached from here` };
      if (!fleet.hasSecret) return { check, status: 'ok', detail: 'ready (no fleet secret: sequences moved lose their state, limits are per gateway)' };
      // (a body no route takes: with the secret accepted, a 400; refused, a 401; a gateway without a secret, a 404)
      const status = await fleet.exchange(peer, '/fleet/sequences/take', '{}').then(
        (res) => res.status,
        () => 0,
      );
      if (status === 401) return { check, status: 'fail', detail: "ready, but refuses this fleet's secret: the gateways' secrets differ" };
      if (status === 404) return { check, status: 'fail', detail: 'ready, but has no fleet secret: give every gateway the same server.fleet.secret' };
      return { check, status: 'ok', detail: "ready, and takes this fleet's secret" };
    }),
  );
}

/**
 * /dev/shm as replicas need it: each holds 4 slots of a batch's bytes there (a batch of 256 fp16 images is 77 MB).
 * Docker gives a container 64 MB unless told otherwise: a batch that does not fit goes through the socket, slower.
 */
export function sharedMemoryFinding(dir: string, total: number, free: number): [Finding['status'], string] {
  const size = `${dir}: ${mib(total)} (${mib(free)} free)`;
  if (total >= 2 ** 30) return ['ok', size];
  return [
    'warn',
    `${size}: large batches (images) will not fit and go through the replicas’ sockets — docker run --shm-size=2g (Docker's default is 64 MB) or --ipc=host`,
  ];
}
const mib = (bytes: number) => (bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(1)} GiB` : `${Math.round(bytes / 2 ** 20)} MiB`);

/** A gateway with one replica of a one-input model on `device`, started and asked once, then stopped. */
async function probe(device: string, what: string): Promise<[Finding['status'], string]> {
  const started = performance.now();
  let gateway: Gateway | undefined;
  try {
    const config = parseConfig({
      server: { host: '127.0.0.1', port: 0 },
      telemetry: { gpu_metrics: false },
      models: { probe: { path: IDENTITY, device, scaling: { min_containers: 1, startup_timeout: 300 } } },
    });
    gateway = await startGateway(config, { log: pino({ level: 'silent' }) });
    const res = await fetch(`http://127.0.0.1:${gateway.port}/v2/models/probe/infer`, {
      method: 'POST',
      body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 3], datatype: 'FP32', data: [1, 2, 3] }] }),
    });
    const answer = (await res.json()) as { outputs?: { data: number[] }[]; error?: string };
    if (res.status !== 200 || answer.outputs?.[0].data.join() !== '1,2,3') return ['fail', `${what}: the replica answered ${res.status} ${answer.error ?? ''}`];
    const provider = (gateway.models.get('probe')?.pool.describe()[0]?.provider ?? '?') as string;
    if (provider !== device) return ['fail', `${what}: the replica ran on ${provider}, not ${device}`];
    return ['ok', `${what}: a replica started on ${provider} and answered, in ${Math.round(performance.now() - started)} ms`];
  } catch (err) {
    return ['fail', `${what}: ${firstLine((err as Error).message)}`];
  } finally {
    await gateway?.shutdown();
  }
}

/** The shared libraries `library` needs that the loader cannot find (`ldd`'s "not found"); none where ldd is missing. */
export async function unresolvedLibraries(library: string): Promise<string[]> {
  const out = await promisify(execFile)('ldd', [library], { encoding: 'utf8' }).then(
    (r) => r.stdout,
    (err: { stdout?: string }) => err.stdout ?? '',
  );
  return parseLdd(out);
}

export const parseLdd = (out: string): string[] =>
  out
    .split('\n')
    .filter((l) => /=>\s*not found/.test(l))
    .map((l) => l.trim().split(/\s/)[0]);

const describeGpu = (g: GpuReading) => `${g.index}: ${g.name}${g.memoryTotalBytes ? `, ${Math.round(g.memoryTotalBytes / 2 ** 30)} GiB` : ''}`;
const firstLine = (s: string) => s.split('\n').find((l) => l.trim() !== '') ?? s;
