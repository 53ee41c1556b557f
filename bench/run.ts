/**
 * The core benchmarks, CPU execution provider, side by side in one run (see bench/README.md):
 *   1. batching efficiency: cnn-bench through the gateway at 64 clients vs in-process session.run at
 *      batch 32 (the ceiling) vs the same gateway with batching off;
 *   2. gateway overhead: identity with a 4 KB binary tensor, gateway vs a bare node:http server.
 * Writes bench/results/cpu-core.json and cpu-core.md.
 *   npm run bench [-- --duration 10 --rounds 3]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { autocannon, binaryRequest, gatewayUnderLoad, inProcessRate, type LoadResult, machine, medianBy, ROOT, startServer, stopServer } from './lib.js';

const arg = (name: string) => Number(process.argv[process.argv.indexOf(name) + 1]) || undefined;
const durationS = arg('--duration') ?? 10;
const rounds = arg('--rounds') ?? 3;
const THREADS = 1; // one ONNX Runtime thread per replica: the other core runs the gateway and the load
const CNN = join(ROOT, 'examples/models/cnn-bench.onnx');
const IDENTITY = join(ROOT, 'examples/models/identity.onnx');
const PORT = 18700;

const inProcess = (path: string, shape: number[], seconds: number) => inProcessRate(path, 'cpu', THREADS, shape, seconds);

const round = (v: number, d = 2) => Math.round(v * 10 ** d) / 10 ** d;
const gateway = (model: string, path: string, batching: object, load: { shape: number[]; connections: number }) =>
  gatewayUnderLoad({ port: PORT, model: { name: model, path, threads: THREADS, batching }, load, durationS });

async function bare(path: string, shape: number[], connections: number) {
  const server = await startServer(['bench/bare-server.ts', path, String(PORT), String(THREADS)], `http://127.0.0.1:${PORT}/`);
  try {
    const body = binaryRequest('x', shape);
    const url = `http://127.0.0.1:${PORT}/`;
    await autocannon({ ...body, url, connections, durationS: 2 });
    return await autocannon({ ...body, url, connections, durationS });
  } finally {
    await stopServer(server);
  }
}

/** The median run, with every round's rate beside it. */
function median<T extends { requestsPerS: number }>(runs: T[]): T & { runs: number[] } {
  return { ...medianBy(runs, (r) => r.requestsPerS), runs: runs.map((r) => Math.round(r.requestsPerS)) };
}

async function main() {
  console.log(`each load runs ${durationS} s after a 2 s warm-up, ${rounds} rounds interleaved`);
  const ceiling = await inProcess(CNN, [32, 3, 32, 32], durationS);
  console.log('ceiling', ceiling);
  const cnn = { shape: [1, 3, 32, 32], connections: 64 };
  const scenarios = {
    batched: () => gateway('cnn', CNN, { max_batch_size: 32, wait_ms: 2, max_queue_size: 4096, max_inputs: 2 }, cnn),
    unbatched: () => gateway('cnn', CNN, { max_batch_size: 1, wait_ms: 0, max_queue_size: 4096, max_inputs: 2 }, cnn),
    overheadGateway: () =>
      gateway('identity', IDENTITY, { max_batch_size: 32, wait_ms: 0, max_queue_size: 4096, max_inputs: 2 }, { shape: [1, 1024], connections: 32 }),
    overheadBare: () => bare(IDENTITY, [1, 1024], 32),
  };
  const runs = Object.fromEntries(Object.keys(scenarios).map((k) => [k, [] as (LoadResult & { meanBatchSize?: number })[]]));
  for (let round = 0; round < rounds; round++) {
    for (const [name, run] of Object.entries(scenarios)) {
      const r = await run();
      console.log(round, name, Math.round(r.requestsPerS), 'req/s');
      runs[name].push(r);
    }
  }
  const batched = median(runs.batched);
  const unbatched = median(runs.unbatched);
  const overheadGateway = median(runs.overheadGateway);
  const overheadBare = median(runs.overheadBare);

  const results = {
    machine: machine(),
    durationS,
    rounds,
    threadsPerReplica: THREADS,
    batching: {
      model: 'cnn-bench [N,3,32,32] FP32, 12 KB per row, binary extension',
      clients: 64,
      ceiling_in_process_batch32: { rowsPerS: round(ceiling.rowsPerS), msPerBatch: round(ceiling.msPerBatch) },
      gateway_batched: { max_batch_size: 32, wait_ms: 2, ...batched },
      gateway_unbatched: { max_batch_size: 1, ...unbatched },
      fraction_of_ceiling: round(batched.requestsPerS / ceiling.rowsPerS, 3),
      batched_over_unbatched: round(batched.requestsPerS / unbatched.requestsPerS, 2),
    },
    overhead: {
      model: 'identity [1,1024] FP32 (4 KB), binary extension',
      clients: 32,
      gateway: { max_batch_size: 32, wait_ms: 0, ...overheadGateway },
      bare_node_http_in_process: overheadBare,
      gateway_over_bare: round(overheadGateway.requestsPerS / overheadBare.requestsPerS, 3),
    },
  };
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
  writeFileSync(join(ROOT, 'bench/results/cpu-core.json'), `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(join(ROOT, 'bench/results/cpu-core.md'), markdown(results));
  console.log(markdown(results));
}

function markdown(r: {
  machine: ReturnType<typeof machine>;
  durationS: number;
  rounds: number;
  batching: Record<string, unknown> & { fraction_of_ceiling: number; batched_over_unbatched: number };
  overhead: Record<string, unknown> & { gateway_over_bare: number };
}): string {
  type Row = { requestsPerS: number; p50Ms: number; p99Ms: number; meanBatchSize?: number; cpuUsPerRequest?: { gateway: number; replica: number } };
  const b = r.batching as unknown as Record<string, Row & { rowsPerS?: number; msPerBatch?: number }>;
  const o = r.overhead as unknown as Record<string, Row>;
  const cpu = (x: Row) => `${x.cpuUsPerRequest?.gateway} µs, replica process ${x.cpuUsPerRequest?.replica} µs`;
  const row = (name: string, x: Row) =>
    `| ${name} | ${Math.round(x.requestsPerS)} | ${x.p50Ms} | ${x.p99Ms} | ${x.meanBatchSize === undefined ? '–' : round(x.meanBatchSize, 1)} |`;
  return `# CPU core benchmarks

${r.machine.cpu}, ${r.machine.cores} cores, ${r.machine.memoryGiB} GiB, Node ${r.machine.node}, onnxruntime-node ${r.machine.onnxruntime};
${r.durationS} s per load (autocannon in its own process, after a 2 s warm-up), ${r.rounds} rounds interleaved, the median shown;
one ONNX Runtime thread per replica, \`max_inputs: 2\`. ${r.machine.date}

## 1. Batching efficiency — cnn-bench, 64 clients, one row per request

| path | rows/s | p50 ms | p99 ms | mean batch |
|---|---|---|---|---|
| in-process \`session.run\`, batch 32 (ceiling) | ${Math.round(b.ceiling_in_process_batch32.rowsPerS ?? 0)} | – | – | 32 (${b.ceiling_in_process_batch32.msPerBatch} ms/batch) |
${row('gateway, max_batch_size 32, wait_ms 2', b.gateway_batched)}
${row('gateway, batching off', b.gateway_unbatched)}

CPU per request with batching (from /proc): gateway ${cpu(b.gateway_batched)}.

Gateway over ceiling: **${r.batching.fraction_of_ceiling}** (aim ≥ 0.9). Batched over unbatched: **${r.batching.batched_over_unbatched}×** (aim ≥ 3×).

## 2. Gateway overhead — identity, 4 KB binary tensor, 32 clients

| path | requests/s | p50 ms | p99 ms | mean batch |
|---|---|---|---|---|
${row('gateway (replica process, max_batch_size 32, wait_ms 0)', o.gateway)}
${row('bare node:http + in-process session', o.bare_node_http_in_process)}

CPU per request: gateway ${cpu(o.gateway)}.

Gateway over bare: **${r.overhead.gateway_over_bare}** (aim ≥ 0.8).
`;
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
