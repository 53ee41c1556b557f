/**
 * The autoscaler under a step load on CPU: 1 client, then 32, then 1 again, against `slow.onnx` (a batch
 * takes ~50 ms whatever its size) starting from zero replicas. Samples /admin/pools every 200 ms and
 * writes bench/results/autoscale-cpu.{json,md,svg}: replicas, queue depth and p99 latency over time, and
 * each replica's cold start (spawn, session creation, warm-up).
 *   npm run bench:autoscale
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { machine, ROOT, sleep, startServer, stopServer } from './lib.js';
import { timeline } from './svg.js';

const PORT = 18701;
const phases = [
  { clients: 1, seconds: 10 },
  { clients: 32, seconds: 20 },
  { clients: 1, seconds: 25 },
];
const scaling = { min_containers: 0, max_containers: 4, scaledown_window: 5, target_inputs: 1 };
const batching = { max_batch_size: 8, wait_ms: 2, max_inputs: 1, timeout_ms: 30_000 };

type PoolView = {
  desired: number;
  reason: string;
  queue: { rows: number };
  replicas: { id: string; state: string; pid: number; coldStart?: { totalMs: number; spawnMs: number; sessionMs: number; warmupMs: number } }[];
};

async function main() {
  const config = join(ROOT, 'bench/.autoscale.yaml');
  writeFileSync(
    config,
    stringify({
      server: { port: PORT, host: '127.0.0.1' },
      models: { slow: { path: join(ROOT, 'examples/models/slow.onnx'), device: 'cpu', threads: 1, batching, scaling } },
    }),
  );
  const server = await startServer(['src/cli.ts', 'serve', '-c', config, '--log-level', 'warn'], `http://127.0.0.1:${PORT}/v2/health/ready`);
  const body = JSON.stringify({ inputs: [{ name: 'x', shape: [1, 16], datatype: 'FP32', data: new Array(16).fill(0.5) }] });
  const load = spawn(
    process.execPath,
    ['--import', 'tsx', join(ROOT, 'bench/step-load.ts'), JSON.stringify({ url: `http://127.0.0.1:${PORT}/v2/models/slow/infer`, body, phases })],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let out = '';
  load.stdout.on('data', (d) => (out += d));
  const loadDone = new Promise((r) => load.once('exit', r));

  const t0 = performance.now();
  const samples: { t: number; starting: number; ready: number; draining: number; queued: number; desired: number }[] = [];
  const coldStarts = new Map<string, NonNullable<PoolView['replicas'][number]['coldStart']>>();
  const reasons: { t: number; desired: number; reason: string }[] = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const { models } = await (await fetch(`http://127.0.0.1:${PORT}/admin/pools`)).json();
      const p = models[0] as PoolView;
      const t = (performance.now() - t0) / 1000;
      const count = (s: string) => p.replicas.filter((r) => r.state === s).length;
      samples.push({ t, starting: count('starting'), ready: count('ready'), draining: count('draining'), queued: p.queue.rows, desired: p.desired });
      for (const r of p.replicas) if (r.coldStart) coldStarts.set(r.id, r.coldStart);
      if (reasons.at(-1)?.desired !== p.desired) reasons.push({ t: Math.round(t * 10) / 10, desired: p.desired, reason: p.reason });
      await sleep(200);
    }
  })();
  await loadDone;
  sampling = false;
  await sampler;
  await stopServer(server);

  const requests = JSON.parse(out) as [number, number, number][];
  const seconds = phases.reduce((n, p) => n + p.seconds, 0);
  const perSecond = Array.from({ length: seconds }, (_, s) => {
    const inSecond = requests.filter(([sent, latency]) => Math.floor((sent + latency) / 1000) === s);
    const lat = inSecond.map((r) => r[1]).sort((a, b) => a - b);
    return {
      t: s,
      requests: inSecond.length,
      errors: inSecond.filter((r) => r[2] !== 200).length,
      p50Ms: lat.length ? lat[Math.floor(lat.length * 0.5)] : 0,
      p99Ms: lat.length ? lat[Math.min(lat.length - 1, Math.floor(lat.length * 0.99))] : 0,
    };
  });
  const phaseMarks = phases.map((p, i) => ({
    at: phases.slice(0, i).reduce((n, q) => n + q.seconds, 0),
    label: `${p.clients} client${p.clients > 1 ? 's' : ''}`,
  }));
  const cold = [...coldStarts.entries()].map(([id, c]) => ({
    id,
    totalMs: Math.round(c.totalMs),
    spawnMs: Math.round(c.spawnMs),
    sessionMs: Math.round(c.sessionMs),
    warmupMs: Math.round(c.warmupMs),
  }));
  const results = {
    machine: machine(),
    model: 'slow.onnx: ~50 ms per batch on one core, whatever the batch size',
    phases,
    scaling,
    batching,
    requests: requests.length,
    errors: requests.filter((r) => r[2] !== 200).length,
    peakReplicas: Math.max(...samples.map((s) => s.starting + s.ready)),
    coldStarts: cold,
    scalingDecisions: reasons,
    perSecond,
    samples: samples.map((s) => ({ ...s, t: Math.round(s.t * 100) / 100 })),
  };
  const dir = join(ROOT, 'bench/results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'autoscale-cpu.json'), `${JSON.stringify(results, null, 2)}\n`);
  const svg = timeline(
    [
      {
        title: 'Replicas',
        unit: '',
        marks: phaseMarks,
        series: [
          { label: 'ready', color: '#2b7a2b', points: samples.map((s) => [s.t, s.ready]) },
          { label: 'starting', color: '#e08a00', points: samples.map((s) => [s.t, s.starting]) },
          { label: 'draining', color: '#9b4dca', points: samples.map((s) => [s.t, s.draining]) },
        ],
      },
      {
        title: 'Queue depth',
        unit: 'rows',
        marks: phaseMarks,
        series: [{ label: 'queued rows', color: '#1f5fbf', points: samples.map((s) => [s.t, s.queued]) }],
      },
      {
        title: 'Latency (per second of completions)',
        unit: 'ms',
        marks: phaseMarks,
        series: [
          { label: 'p99', color: '#c0392b', points: perSecond.map((s) => [s.t, s.p99Ms]) },
          { label: 'p50', color: '#888', points: perSecond.map((s) => [s.t, s.p50Ms]) },
        ],
      },
    ],
    { title: `infergate autoscaler, step load 1 → 32 → 1 clients (CPU, ${results.machine.cores} cores)`, seconds },
  );
  writeFileSync(join(dir, 'autoscale-cpu.svg'), svg);
  const md = `# Autoscaler under a step load (CPU)

${results.machine.cpu}, ${results.machine.cores} cores, Node ${results.machine.node}. ${results.machine.date}

Model: ${results.model}. Clients: ${phases.map((p) => `${p.clients} for ${p.seconds} s`).join(', then ')}.
Scaling: \`${JSON.stringify(scaling)}\`; batching: \`${JSON.stringify(batching)}\`.

![timeline](autoscale-cpu.svg)

${results.requests} requests, ${results.errors} errors, peak ${results.peakReplicas} replicas.

## Cold starts (spawn → ready)

| replica | total ms | spawn + module load ms | session create ms | warm-up ms |
|---|---|---|---|---|
${cold.map((c) => `| ${c.id} | ${c.totalMs} | ${c.spawnMs} | ${c.sessionMs} | ${c.warmupMs} |`).join('\n')}

## Scaling decisions (each change of the desired count, as sampled)

${reasons.map((r) => `- ${r.t} s: ${r.reason}`).join('\n')}
`;
  writeFileSync(join(dir, 'autoscale-cpu.md'), md);
  console.log(md);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
