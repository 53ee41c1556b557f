/**
 * ModelInfer over gRPC (server.grpc_port) beside the same request over HTTP with the binary extension: the
 * gateway-overhead scenario of bench/run.ts (identity, a 4 KB FP32 tensor, 32 clients, one gateway serving
 * both). Interleaved rounds, medians: requests/s, p50, and the gateway's CPU per request (all of it, and its
 * main thread's). Writes bench/results/grpc-cpu.{json,md}.
 *   npm run bench:grpc [-- --duration 5 --rounds 3]
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { autocannon, binaryRequest, cpuSeconds, machine, mainThreadPerRequest, mainThreadUsage, medianBy, ROOT, startServer, stopServer } from './lib.js';

const arg = (name: string) => Number(process.argv[process.argv.indexOf(name) + 1]) || undefined;
const durationS = arg('--duration') ?? 5;
const rounds = arg('--rounds') ?? 3;
const PORT = 18708;
const GRPC_PORT = 18709;
const CONNECTIONS = 32;
const ELEMENTS = 1024;

async function grpcLoad(seconds: number) {
  const spec = { target: `127.0.0.1:${GRPC_PORT}`, model: 'identity', elements: ELEMENTS, connections: CONNECTIONS, durationS: seconds };
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/grpc-load.ts'), JSON.stringify(spec)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  await new Promise((r) => child.once('exit', r));
  const r = JSON.parse(out);
  return { requestsPerS: r.requestsPerS, p50Ms: r.p50Ms, p99Ms: r.p99Ms, errors: r.errors, total: r.requests };
}

async function main() {
  const config = join(ROOT, `bench/.gateway-${PORT}.yaml`);
  const identity = {
    path: join(ROOT, 'examples/models/identity.onnx'),
    device: 'cpu',
    threads: 1,
    batching: { max_batch_size: 32, wait_ms: 0, max_queue_size: 4096, max_inputs: 2 },
    scaling: { min_containers: 1 },
  };
  writeFileSync(config, stringify({ server: { port: PORT, host: '127.0.0.1', grpc_port: GRPC_PORT }, models: { identity } }));
  const gateway = await startServer(['src/cli.ts', 'serve', '-c', config, '--log-level', 'warn'], `http://127.0.0.1:${PORT}/v2/health/ready`);
  const pid = gateway.pid as number;
  const http = { ...binaryRequest('x', [1, ELEMENTS]), url: `http://127.0.0.1:${PORT}/v2/models/identity/infer`, connections: CONNECTIONS };
  const loads = { http: (s: number) => autocannon({ ...http, durationS: s }), grpc: grpcLoad };
  type Run = Awaited<ReturnType<typeof grpcLoad>> & { gatewayUs: number; mainThreadUs: number };
  const runs: Record<string, Run[]> = { http: [], grpc: [] };
  try {
    for (const load of Object.values(loads)) await load(2); // warm-up
    for (let round = 0; round < rounds; round++) {
      for (const [name, load] of Object.entries(loads)) {
        const cpu0 = cpuSeconds(pid);
        const main0 = mainThreadUsage(pid);
        const r = await load(durationS);
        if (r.errors) throw new Error(`${name}: ${r.errors} errors`);
        const main = mainThreadPerRequest(pid, main0, r.total);
        const run = { ...r, gatewayUs: Math.round(((cpuSeconds(pid) - cpu0) * 1e6) / r.total), mainThreadUs: main.userUs + main.systemUs };
        console.log(round, name, Math.round(r.requestsPerS), 'req/s', r.p50Ms, 'ms p50', run.gatewayUs, 'µs gateway CPU', run.mainThreadUs, 'µs main thread');
        runs[name].push(run);
      }
    }
  } finally {
    await stopServer(gateway);
  }
  const median = (name: string) => ({ ...medianBy(runs[name], (r) => r.requestsPerS), runs: runs[name].map((r) => Math.round(r.requestsPerS)) });
  const results = {
    machine: machine(),
    scenario: `identity.onnx, a [1,${ELEMENTS}] FP32 tensor (4 KB) in and out, ${CONNECTIONS} clients, max_batch_size 32, one gateway serving both`,
    durationS,
    rounds,
    http: median('http'),
    grpc: median('grpc'),
  };
  const dir = join(ROOT, 'bench/results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'grpc-cpu.json'), `${JSON.stringify(results, null, 2)}\n`);
  const row = (name: string, r: typeof results.http) =>
    `| ${name} | ${Math.round(r.requestsPerS)} (${r.runs.join(', ')}) | ${r.p50Ms} | ${r.p99Ms} | ${r.gatewayUs} | ${r.mainThreadUs} |`;
  const md = `# ModelInfer over gRPC vs HTTP (CPU)

${results.machine.cpu}, ${results.machine.cores} cores, Node ${results.machine.node}. ${results.machine.date}

${results.scenario}; ${durationS} s per load, ${rounds} rounds interleaved, median shown (every round in brackets). HTTP:
autocannon with the binary extension; gRPC: @grpc/grpc-js clients (a channel each) sending raw_input_contents.

| protocol | requests/s | p50 ms | p99 ms | gateway CPU µs/request | of which its main thread |
|---|---|---|---|---|---|
${row('HTTP/1.1, binary extension', results.http)}
${row('gRPC ModelInfer', results.grpc)}
`;
  writeFileSync(join(dir, 'grpc-cpu.md'), md);
  console.log(md);
}

await main();
