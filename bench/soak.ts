/**
 * Does the gateway keep its memory under hours of mixed traffic? The demo config's gateway runs in this process
 * (so its heap can be read after a full collection: run with --expose-gc, as `npm run bench:soak` does), its
 * replicas as the processes they always are, and bench/soak-load.ts sends mixed traffic from its own process.
 * Every `sample` seconds: the gateway's heap after gc(), its external and array-buffer bytes, its RSS, its
 * active handles, each replica's RSS. The warm-up's samples are the baseline; the rest are fitted against
 * requests served — a leak shows as bytes per thousand requests that do not fall to zero as the run grows.
 *   npm run bench:soak -- --minutes 10 --clients 8
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { writeHeapSnapshot } from 'node:v8';
import { pino } from 'pino';
import { loadConfig } from '../src/config/index.js';
import { startGateway } from '../src/start.js';
import { machine, ROOT, sleep, writeResults } from './lib.js';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    clients: { type: 'string', default: '8' },
    sample: { type: 'string', default: '15' },
    warmup: { type: 'string', default: '60' },
    'intake-threads': { type: 'string', default: '0' },
    'kill-every': { type: 'string', default: '0' }, // SIGKILL a replica (at random) every N seconds: what clients see of crashes // server.intake_threads (their heaps show in RSS only)
    kinds: { type: 'string' }, // some of soak-load.ts's kinds, comma-separated (default: all)
    snapshots: { type: 'string' }, // a folder: heap snapshots written there after the warm-up and at the end
  },
});
const [minutes, clients, sampleS, warmupS] = [values.minutes, values.clients, values.sample, values.warmup].map(Number);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc (npm run bench:soak does)');

const config = await loadConfig(join(ROOT, 'examples/demo.yaml'));
config.server.port = 0;
config.server.host = '127.0.0.1';
config.server.intake_threads = Number(values['intake-threads']);
config.server.grpc_port = 0; // (KServe v2 over gRPC too)
// Replicas stay up through the run: a scale-down and cold start midway would read as memory coming and going.
for (const m of Object.values(config.models)) m.scaling.scaledown_window = 3600;
const gateway = await startGateway(config, { log: pino({ level: 'warn' }) });
const url = `http://127.0.0.1:${gateway.port}`;

const MB = 1024 * 1024;
const rssMb = (pid: number) => {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
};
/** This process's children that are replicas (the load generator is not one). */
function replicaPids(except: number): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === except) continue;
    try {
      const ppid = Number(readFileSync(`/proc/${name}/stat`, 'utf8').split(') ')[1].split(' ')[1]);
      if (ppid === process.pid) pids.push(Number(name));
    } catch {} // gone meanwhile
  }
  return pids;
}

type Counts = { done: Record<string, number>; unexpected: Record<string, number> };
let latest: Counts = { done: {}, unexpected: {} };
const total = (c: Counts) => Object.values(c.done).reduce((a, b) => a + b, 0);
const load = spawn(
  process.execPath,
  [
    '--import',
    'tsx',
    'bench/soak-load.ts',
    JSON.stringify({ url, grpcPort: gateway.grpcPort, clients, seconds: minutes * 60, reportS: sampleS / 3, kinds: values.kinds?.split(',') }),
  ],
  { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
);
let pending = '';
load.stdout.on('data', (d) => {
  pending += d;
  const lines = pending.split('\n');
  pending = lines.pop() as string;
  for (const line of lines) if (line.trim()) latest = JSON.parse(line);
});
const loadExited = new Promise((r) => load.once('exit', r));
let killed = 0;
const killEvery = Number(values['kill-every']);
const killer =
  killEvery > 0 &&
  setInterval(() => {
    const pids = replicaPids(load.pid as number);
    if (pids.length === 0) return;
    process.kill(pids[Math.floor(Math.random() * pids.length)], 'SIGKILL');
    killed++;
  }, killEvery * 1000);

type Sample = {
  s: number;
  requests: number;
  heapMb: number;
  externalMb: number;
  arrayBuffersMb: number;
  rssMb: number;
  handles: number;
  replicasMb: number;
  replicas: number;
};
const samples: Sample[] = [];
const t0 = Date.now();
let running = true;
void loadExited.then(() => {
  running = false;
});
while (running) {
  await Promise.race([sleep(sampleS * 1000), loadExited]);
  gc();
  const mem = process.memoryUsage();
  const replicas = replicaPids(load.pid as number);
  const sample = {
    s: Math.round((Date.now() - t0) / 1000),
    requests: total(latest),
    heapMb: mem.heapUsed / MB,
    externalMb: mem.external / MB,
    arrayBuffersMb: mem.arrayBuffers / MB,
    rssMb: mem.rss / MB,
    handles: process.getActiveResourcesInfo().length,
    replicasMb: replicas.reduce((a, p) => a + rssMb(p), 0),
    replicas: replicas.length,
  };
  samples.push(sample);
  if (values.snapshots && (samples.filter((x) => x.s >= warmupS).length === 1 || !running))
    console.error(`heap snapshot: ${writeHeapSnapshot(join(values.snapshots, `soak-${sample.s}s.heapsnapshot`))}`);
  console.error(
    `${sample.s}s ${sample.requests} requests: heap ${sample.heapMb.toFixed(1)} MB, external ${sample.externalMb.toFixed(1)}, rss ${sample.rssMb.toFixed(0)}, handles ${sample.handles}, ${sample.replicas} replicas ${sample.replicasMb.toFixed(0)} MB`,
  );
}
if (killer) clearInterval(killer);
await gateway.shutdown({ now: true });

/** Least-squares slope of y over x. */
function slope(points: [number, number][]): number {
  const n = points.length;
  const mx = points.reduce((a, [x]) => a + x, 0) / n;
  const my = points.reduce((a, [, y]) => a + y, 0) / n;
  const sxy = points.reduce((a, [x, y]) => a + (x - mx) * (y - my), 0);
  const sxx = points.reduce((a, [x]) => a + (x - mx) ** 2, 0);
  return sxx ? sxy / sxx : 0;
}
const measured = samples.filter((s) => s.s >= warmupS);
const first = measured[0];
const last = measured.at(-1) as Sample;
const perThousand = (key: keyof Sample) => Math.round(slope(measured.map((s) => [s.requests / 1000, (s[key] as number) * MB])));
const round = (v: number) => Math.round(v * 10) / 10;
const results = {
  machine: machine(),
  config: `examples/demo.yaml (scaledown_window 3600 s, intake_threads ${config.server.intake_threads})`,
  minutes,
  clients,
  requests: total(latest),
  requestsPerS: round(total(latest) / (minutes * 60)),
  byKind: latest.done,
  unexpected: latest.unexpected,
  replicasKilled: killed,
  afterWarmup: {
    s: first.s,
    requests: first.requests,
    heapMb: round(first.heapMb),
    rssMb: round(first.rssMb),
    handles: first.handles,
    replicasMb: round(first.replicasMb),
  },
  atEnd: {
    s: last.s,
    requests: last.requests,
    heapMb: round(last.heapMb),
    rssMb: round(last.rssMb),
    handles: last.handles,
    replicasMb: round(last.replicasMb),
  },
  bytesPerThousandRequests: {
    heap: perThousand('heapMb'),
    external: perThousand('externalMb'),
    rss: perThousand('rssMb'),
    replicas: perThousand('replicasMb'),
  },
  samples: samples.map((s) => Object.fromEntries(Object.entries(s).map(([k, v]) => [k, round(v)]))),
};

const row = (s: Sample) =>
  `| ${s.s} | ${s.requests} | ${s.heapMb.toFixed(1)} | ${s.externalMb.toFixed(1)} | ${s.rssMb.toFixed(0)} | ${s.handles} | ${s.replicas} | ${s.replicasMb.toFixed(0)} |`;
const every = Math.max(1, Math.floor(samples.length / 12));
const md = `# Soak: the demo config under ${minutes} minutes of mixed traffic${killEvery > 0 ? ', replicas killed' : ''} (${machine().cores} cores, ${machine().cpu})

${clients} closed-loop clients (bench/soak-load.ts) sending, in turn, ${Object.keys(latest.done).join(', ')}:
${results.requests} requests (${results.requestsPerS}/s)${killed ? `, a replica killed (SIGKILL, at random) every ${killEvery} s: ${killed} killed` : ''}. Answers not what their kind should get: ${
  Object.keys(latest.unexpected).length ? JSON.stringify(latest.unexpected) : 'none'
}.

Growth after the ${warmupS} s warm-up (least squares over ${measured.length} samples, per 1,000 requests): gateway heap
${results.bytesPerThousandRequests.heap} bytes, external ${results.bytesPerThousandRequests.external}, RSS ${results.bytesPerThousandRequests.rss};
replicas' RSS ${results.bytesPerThousandRequests.replicas}. From ${first.requests} to ${last.requests} requests the heap went
${first.heapMb.toFixed(1)} → ${last.heapMb.toFixed(1)} MB, active handles ${first.handles} → ${last.handles}.

| s | requests | heap MB (after gc) | external MB | gateway RSS MB | handles | replicas | replicas' RSS MB |
|---|---|---|---|---|---|---|---|
${samples
  .filter((_, i) => i % every === 0 || i === samples.length - 1)
  .map(row)
  .join('\n')}
`;
writeResults(killEvery > 0 ? 'soak-kill-cpu' : 'soak-cpu', results, md);
console.log(md);
process.exit(0);
