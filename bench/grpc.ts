/**
 * ModelInfer over gRPC (server.grpc_port) beside the same request over HTTP with the binary extension: the
 * gateway-overhead scenario of bench/run.ts (identity, a 4 KB FP32 tensor, 32 clients, one gateway serving
 * both), and both again on a gateway with an intake thread (server.intake_threads: 1: the thread serves both
 * protocols, the main thread answers what it hands over). Interleaved rounds, medians: requests/s, p50, and
 * the gateway's CPU per request (all of it, and its main thread's). Writes bench/results/grpc-cpu.{json,md}.
 *   npm run bench:grpc [-- --duration 5 --rounds 3]
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import {
  autocannon,
  binaryRequest,
  cpuSeconds,
  machine,
  mainThreadPerRequest,
  mainThreadUsage,
  medianRound,
  ROOT,
  startServer,
  stopServer,
  writeResults,
} from './lib.js';

const arg = (name: string) => Number(process.argv[process.argv.indexOf(name) + 1]) || undefined;
const durationS = arg('--duration') ?? 5;
const rounds = arg('--rounds') ?? 3;
const PORT = 18708; // and GRPC: +1; the gateway with an intake thread: +2, +3
const CONNECTIONS = 32;
const ELEMENTS = 1024;

async function grpcLoad(grpcPort: number, seconds: number) {
  const spec = { target: `127.0.0.1:${grpcPort}`, model: 'identity', elements: ELEMENTS, connections: CONNECTIONS, durationS: seconds };
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/grpc-load.ts'), JSON.stringify(spec)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  await new Promise((r) => child.once('exit', r));
  const r = JSON.parse(out);
  return { requestsPerS: r.requestsPerS, p50Ms: r.p50Ms, p99Ms: r.p99Ms, errors: r.errors, total: r.requests };
}

/** Rows and batches the gateway's identity model has run: the batch sizes a load made. */
async function batchCounts(port: number): Promise<{ rows: number; batches: number }> {
  return (await fetch(`http://127.0.0.1:${port}/v2/models/identity/stats`)).json();
}

async function startGateway(port: number, intakeThreads: number) {
  const config = join(ROOT, `bench/.gateway-${port}.yaml`);
  const identity = {
    path: join(ROOT, 'examples/models/identity.onnx'),
    device: 'cpu',
    threads: 1,
    batching: { max_batch_size: 32, wait_ms: 0, max_queue_size: 4096, max_inputs: 2 },
    scaling: { min_containers: 1 },
  };
  const server = { port, host: '127.0.0.1', grpc_port: port + 1, ...(intakeThreads && { intake_threads: intakeThreads }) };
  writeFileSync(config, stringify({ server, models: { identity } }));
  return startServer(['src/cli.ts', 'serve', '-c', config, '--log-level', 'warn'], `http://127.0.0.1:${port}/v2/health/ready`);
}

async function main() {
  const here = await startGateway(PORT, 0);
  const threaded = await startGateway(PORT + 2, 1);
  const http = (port: number) => ({ ...binaryRequest('x', [1, ELEMENTS]), url: `http://127.0.0.1:${port}/v2/models/identity/infer`, connections: CONNECTIONS });
  const loads = {
    http: { pid: here.pid as number, port: PORT, load: (s: number) => autocannon({ ...http(PORT), durationS: s }) },
    grpc: { pid: here.pid as number, port: PORT, load: (s: number) => grpcLoad(PORT + 1, s) },
    httpIntake: { pid: threaded.pid as number, port: PORT + 2, load: (s: number) => autocannon({ ...http(PORT + 2), durationS: s }) },
    grpcIntake: { pid: threaded.pid as number, port: PORT + 2, load: (s: number) => grpcLoad(PORT + 3, s) },
  };
  type Run = Awaited<ReturnType<typeof grpcLoad>> & { gatewayUs: number; mainThreadUs: number; rowsPerBatch: number };
  const runs: Record<string, Run[]> = Object.fromEntries(Object.keys(loads).map((name) => [name, []]));
  try {
    for (const { load } of Object.values(loads)) await load(2); // warm-up
    for (let round = 0; round < rounds; round++) {
      for (const [name, { pid, port, load }] of Object.entries(loads)) {
        const cpu0 = cpuSeconds(pid);
        const main0 = mainThreadUsage(pid);
        const stats0 = await batchCounts(port);
        const r = await load(durationS);
        const stats1 = await batchCounts(port);
        if (r.errors) throw new Error(`${name}: ${r.errors} errors`);
        const main = mainThreadPerRequest(pid, main0, r.total);
        const run = {
          ...r,
          gatewayUs: Math.round(((cpuSeconds(pid) - cpu0) * 1e6) / r.total),
          mainThreadUs: main.userUs + main.systemUs,
          rowsPerBatch: Math.round((10 * (stats1.rows - stats0.rows)) / (stats1.batches - stats0.batches)) / 10,
        };
        console.log(
          round,
          name,
          Math.round(r.requestsPerS),
          'req/s',
          r.p50Ms,
          'ms p50',
          run.gatewayUs,
          'µs gateway CPU',
          run.mainThreadUs,
          'µs main thread',
          run.rowsPerBatch,
          'rows/batch',
        );
        runs[name].push(run);
      }
    }
  } finally {
    await Promise.all([stopServer(here), stopServer(threaded)]);
  }
  const median = (name: string) => medianRound(runs[name]);
  const results = {
    machine: machine(),
    scenario: `identity.onnx, a [1,${ELEMENTS}] FP32 tensor (4 KB) in and out, ${CONNECTIONS} clients, max_batch_size 32, one gateway serving both`,
    durationS,
    rounds,
    http: median('http'),
    grpc: median('grpc'),
    httpIntake: median('httpIntake'),
    grpcIntake: median('grpcIntake'),
  };
  const row = (name: string, r: typeof results.http) =>
    `| ${name} | ${Math.round(r.requestsPerS)} (${r.runs.join(', ')}) | ${r.p50Ms} | ${r.p99Ms} | ${r.rowsPerBatch} | ${r.gatewayUs} | ${r.mainThreadUs} |`;
  const md = `# ModelInfer over gRPC vs HTTP (CPU)

${results.machine.cpu}, ${results.machine.cores} cores, Node ${results.machine.node}. ${results.machine.date}

${results.scenario}; ${durationS} s per load, ${rounds} rounds interleaved, median shown (every round in brackets). HTTP:
autocannon with the binary extension; gRPC: @grpc/grpc-js clients (a channel each) sending raw_input_contents.

| protocol | requests/s | p50 ms | p99 ms | rows/batch | gateway CPU µs/request | of which its main thread |
|---|---|---|---|---|---|---|
${row('HTTP/1.1, binary extension', results.http)}
${row('gRPC ModelInfer', results.grpc)}
${row('HTTP/1.1, binary extension, intake_threads: 1', results.httpIntake)}
${row('gRPC ModelInfer, intake_threads: 1', results.grpcIntake)}

With an intake thread the main thread's share is what limits a gateway on a machine with cores to spare: the
thread does the protocol (HTTP parsing, or gRPC's HTTP/2 framing and protobuf), the main thread the routes,
batching and replicas. On this 2-core machine the thread, the replica and the load share the cores, so compare µs
— at like batch sizes: the main thread's work per batch (the write to the replica above all) is shared by its rows, and
the gRPC load generator (grpc-js, on the same 2 cores) makes fewer requests a second, so smaller batches.
`;
  writeResults('grpc-cpu', results, md);
}

await main();
