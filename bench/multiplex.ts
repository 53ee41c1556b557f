/**
 * Model multiplexing (config `multiplex`) against a pool per model: 8 models of the same tensors (copies of
 * examples/models/tenants/*.onnx), traffic skewed as tenants' is (one model half of it, most nearly idle), 16
 * clients in this process (fetch, JSON, one [1,64] row a request). Side by side, interleaved rounds, medians:
 *   - dedicated: 8 models, a replica each (min_containers 1): what serving them without multiplexing takes;
 *   - multiplexed, 2 replicas keeping 8 models each: every model open somewhere after the first requests;
 *   - multiplexed, 2 replicas keeping 2 models each: models are opened and closed as traffic moves (the cost of a
 *     small max_models_per_replica).
 * Reports answers/s, p50/p99, the replica processes' count and resident memory (what each replica costs
 * beyond its model: the process, Node, ONNX Runtime) and how often models were opened (infergate_multiplex_open_duration). Writes bench/results/multiplex-cpu.{json,md}.
 *   npm run bench:multiplex [-- --duration 5 --rounds 3]
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { clientsLoad, machine, medianRound, ROOT, startServer, stopServer, writeResults } from './lib.js';

const arg = (name: string) => Number(process.argv[process.argv.indexOf(name) + 1]) || undefined;
const durationS = arg('--duration') ?? 5;
const rounds = arg('--rounds') ?? 3;
const PORT = 18731;
const CLIENTS = 16;
const MODELS = 8;
const ids = Array.from({ length: MODELS }, (_, i) => `t${i}`);
/** Each model's share of requests: t0 half, t1 a quarter, … (a request's model drawn from this cycle). */
const CYCLE = ids.flatMap((id, i) => new Array(Math.max(1, 2 ** (MODELS - 2 - i))).fill(id));

const dir = mkdtempSync(join(tmpdir(), 'infergate-bench-tenants-'));
for (const [i, id] of ids.entries()) copyFileSync(join(ROOT, `examples/models/tenants/${i % 2 ? 'beta' : 'alpha'}.onnx`), join(dir, `${id}.onnx`));

const model = { device: 'cpu', threads: 1, batching: { max_batch_size: 32, wait_ms: 1, max_queue_size: 4096 } };
const CASES = {
  dedicated: {
    name: `a pool per model: ${MODELS} models, a replica each`,
    models: Object.fromEntries(ids.map((id) => [id, { ...model, path: join(dir, `${id}.onnx`), scaling: { min_containers: 1, max_containers: 1 } }])),
    request: (id: string) => ({ url: `/v2/models/${id}/infer`, headers: {} }),
  },
  multiplexed8: {
    name: `multiplexed: 2 replicas, max_models_per_replica ${MODELS}`,
    models: { tenants: multiplexed(MODELS) },
    request: (id: string) => ({ url: '/v2/models/tenants/infer', headers: { serve_multiplexed_model_id: id } }),
  },
  multiplexed2: {
    name: 'multiplexed: 2 replicas, max_models_per_replica 2',
    models: { tenants: multiplexed(2) },
    request: (id: string) => ({ url: '/v2/models/tenants/infer', headers: { serve_multiplexed_model_id: id } }),
  },
};
type Case = keyof typeof CASES;

function multiplexed(keep: number) {
  return { ...model, path: join(dir, '{model_id}.onnx'), multiplex: { max_models_per_replica: keep }, scaling: { min_containers: 2, max_containers: 2 } };
}

/** Models the replicas opened so far, and the seconds it took them (the multiplexed model's histogram on /metrics). */
async function opens(base: string): Promise<{ count: number; s: number }> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const value = (name: string) => Number(new RegExp(`^${name}\\{[^}]*\\} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
  return { count: value('infergate_multiplex_open_duration_count'), s: value('infergate_multiplex_open_duration_sum') };
}

/** Resident memory of a process, MiB (Linux /proc). */
const rssMiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? Number.NaN) / 1024;

async function measure(c: Case) {
  const config = join(ROOT, `bench/.gateway-${PORT}.yaml`);
  writeFileSync(config, stringify({ server: { port: PORT, host: '127.0.0.1' }, models: CASES[c].models }));
  const base = `http://127.0.0.1:${PORT}`;
  const gateway = await startServer(['src/cli.ts', 'serve', '-c', config, '--log-level', 'warn'], `${base}/v2/health/ready`);
  try {
    const call = async (client: number, i: number) => {
      const { url, headers } = CASES[c].request(CYCLE[(client * 7 + i) % CYCLE.length]);
      const data = Array.from({ length: 64 }, (_, k) => Math.sin(client * 64 + i + k));
      const res = await fetch(base + url, {
        method: 'POST',
        headers,
        body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data }] }),
      });
      if (res.status !== 200) throw new Error(`${url}: ${res.status} ${await res.text()}`);
      await res.arrayBuffer();
    };
    await clientsLoad(CLIENTS, 2, call); // warm-up: every model opened once
    const opens0 = await opens(base);
    const r = await clientsLoad(CLIENTS, durationS, call);
    const opens1 = await opens(base);
    const opened = {
      count: opens1.count - opens0.count,
      meanMs: opens1.count > opens0.count ? Math.round(((opens1.s - opens0.s) * 1000 * 10) / (opens1.count - opens0.count)) / 10 : 0,
    };
    const stats = await Promise.all(Object.keys(CASES[c].models).map(async (m) => (await fetch(`${base}/v2/models/${m}/stats`)).json()));
    const pids = stats.flatMap((s) => s.replicas.map((x: { pid: number }) => x.pid));
    const replicaMiB = Math.round(pids.reduce((n, pid) => n + rssMiB(pid), 0));
    return {
      ...r,
      replicas: pids.length,
      replicaMiB,
      gatewayMiB: Math.round(rssMiB(gateway.pid as number)),
      opensPerS: Math.round((opened.count / durationS) * 10) / 10,
      openMeanMs: opened.meanMs,
    };
  } finally {
    await stopServer(gateway);
  }
}

async function main() {
  type Run = Awaited<ReturnType<typeof measure>>;
  const runs = Object.fromEntries(Object.keys(CASES).map((c) => [c, [] as Run[]])) as Record<Case, Run[]>;
  try {
    for (let round = 0; round < rounds; round++)
      for (const c of Object.keys(CASES) as Case[]) {
        const r = await measure(c);
        console.log(
          round,
          c,
          Math.round(r.requestsPerS),
          'answers/s',
          r.p50Ms,
          'ms p50',
          r.p99Ms,
          'ms p99',
          r.replicas,
          'replicas',
          r.replicaMiB,
          'MiB',
          r.opensPerS,
          'opens/s',
        );
        runs[c].push(r);
      }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const medians = Object.fromEntries((Object.keys(CASES) as Case[]).map((c) => [c, medianRound(runs[c])])) as Record<Case, Run & { runs: number[] }>;
  const results = {
    machine: machine(),
    scenario: `${MODELS} models x [N,64] -> probs [N,3]; requests' shares ${ids.map((id) => `${id} ${CYCLE.filter((x) => x === id).length}/${CYCLE.length}`).join(', ')}; ${CLIENTS} clients (fetch, JSON); max_batch_size 32, wait_ms 1, one ONNX Runtime thread a replica`,
    durationS,
    rounds,
    ...medians,
  };
  const row = (c: Case) => {
    const r = medians[c];
    const opened = c === 'dedicated' ? '–' : `${r.opensPerS} (${r.openMeanMs} ms each)`;
    return `| ${CASES[c].name} | ${Math.round(r.requestsPerS)} (${r.runs.join(', ')}) | ${r.p50Ms} | ${r.p99Ms} | ${r.replicas} | ${r.replicaMiB} | ${opened} |`;
  };
  const md = `# Model multiplexing vs a pool per model (CPU)

${results.machine.cpu}, ${results.machine.cores} cores, Node ${results.machine.node}. ${results.machine.date}

${results.scenario}. ${durationS} s per load after 2 s of warm-up, ${rounds} rounds interleaved, median shown (every
round in brackets). The clients run in the benchmark's process, on the same 2 cores as the gateway and its replicas.

| serving | answers/s | p50 ms | p99 ms | replica processes | their resident memory, MiB | models opened a second |
|---|---|---|---|---|---|---|
${(Object.keys(CASES) as Case[]).map(row).join('\n')}
`;
  writeResults('multiplex-cpu', results, md);
}

await main();
