/**
 * What does HTTP intake on worker threads (server.intake_threads) take off the gateway's main thread? On the
 * H200 its one event loop was the limit (busy 0.96–1.0 at ~1.1 GB/s of request bodies,
 * bench/results/gpu-summary.md). Side by side in one run, 1.2 MB KServe-binary bodies (8 UINT8 images) from
 * 16 clients:
 *   - the gateway with its intake on the main thread (the default; examples/models/pixels.onnx, no compute,
 *     one replica), and with `intake_threads: 1`;
 *   - its intake alone on the main thread (bench/edge-server.ts single): read the body into a reused buffer,
 *     answer 32 KB;
 *   - the same intake on 1 and 2 worker threads accepting on one listening socket, each body handed to the
 *     main thread (where the batcher would be) by transfer and handed back for reuse;
 *   - and the gateway with and without `intake_threads: 1` under small requests (examples/models/mlp.onnx,
 *     FP32 [1,64], 32 clients): do threads cost the main thread more where bodies are tiny?
 * Reports the main thread's CPU per request (what cannot spread over cores) and the whole process's. A
 * 2-core machine cannot show more requests per second from more threads (the load generator and the
 * servers share both cores); the main thread's cost per request is the number that carries over.
 * Writes bench/results/edge-threads-cpu.{json,md}; on a machine with cores to spare (the GPU machine's 16),
 * more threads and load processes show what requests/s it buys: bench/gpu/run.sh's edge-threads step.
 *   npm run bench:edge-threads [-- --duration 5 --rounds 3 --threads 1,2 --connections 16 --processes 1
 *                                  --out bench/results --name edge-threads-cpu]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { gatewayUnderLoad, machine, medianBy, ROOT, serverUnderLoad } from './lib.js';

const text = (name: string) => (process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1] : undefined);
const arg = (name: string) => Number(text(name)) || undefined;
const durationS = arg('--duration') ?? 5;
const rounds = arg('--rounds') ?? 3;
const threadCounts = (text('--threads') ?? '1,2').split(',').map(Number);
const CONNECTIONS = arg('--connections') ?? 16;
/** autocannon processes: one tops out near 1 GB/s of bodies. */
const processes = arg('--processes') ?? 1;
const outDir = resolve(text('--out') ?? join(ROOT, 'bench/results'));
const name = text('--name') ?? 'edge-threads-cpu';
const PORT = 18475;
const SHAPE = [8, 224, 224, 3];

type Run = {
  requestsPerS: number;
  p50Ms: number;
  mainThreadUs: number;
  mainThread: { userUs: number; systemUs: number; minorFaults: number };
  processUs: number;
};
const CASES: Record<string, string> = {
  gateway: 'the gateway, intake on its main thread (pixels.onnx, one replica)',
  gatewayIntake1: 'the gateway with `intake_threads: 1`',
  gatewayIntake1Asked: 'the gateway with `intake_threads: 1`, bodies over 64 KB read only when the main thread asks (INFERGATE_INTAKE_PREFETCH_MB=0)',
  smallGateway: 'small requests (mlp.onnx, FP32 [1,64]: 256 B): the gateway, intake on its main thread',
  smallGatewayIntake1: 'small requests: the gateway with `intake_threads: 1`',
  single: 'intake alone, main thread',
  ...Object.fromEntries(threadCounts.map((n) => [`threads${n}`, `intake on ${n} worker thread${n > 1 ? 's' : ''}, bodies handed to the main thread`])),
};

/** The gateway under load: the 1.2 MB image requests, or small ones (`small`: 256-byte tensors, 32 clients). */
async function gateway(intakeThreads: number, small = false, env: Record<string, string> = {}): Promise<Run> {
  const model = small
    ? { name: 'mlp', path: join(ROOT, 'examples/models/mlp.onnx'), threads: 1, batching: { max_batch_size: 32, wait_ms: 2 } }
    : {
        name: 'pixels',
        path: join(ROOT, 'examples/models/pixels.onnx'),
        threads: 1,
        batching: { max_batch_size: 32, wait_ms: 2, max_queue_size: 4096, max_inputs: 2 },
      };
  const g = await gatewayUnderLoad({
    port: PORT,
    server: { intake_threads: intakeThreads },
    model,
    load: small ? { shape: [1, 64], connections: 32, dtype: 'FP32' } : { shape: SHAPE, connections: CONNECTIONS, dtype: 'UINT8', processes },
    durationS,
    env,
  });
  const main = g.gatewayMainThreadPerRequest;
  return {
    requestsPerS: g.requestsPerS,
    p50Ms: g.p50Ms,
    mainThread: main,
    mainThreadUs: main.userUs + main.systemUs,
    processUs: g.cpuUsPerRequest.gateway,
  };
}

async function intake(args: string[]): Promise<Run> {
  const r = await serverUnderLoad(['bench/edge-server.ts', ...args], PORT, { shape: SHAPE, dtype: 'UINT8', connections: CONNECTIONS, processes }, durationS);
  return {
    requestsPerS: r.requestsPerS,
    p50Ms: r.p50Ms,
    mainThread: r.mainThread,
    mainThreadUs: r.mainThread.userUs + r.mainThread.systemUs,
    processUs: r.processUsPerRequest,
  };
}

const GATEWAYS: Record<string, () => Promise<Run>> = {
  gateway: () => gateway(0),
  gatewayIntake1: () => gateway(1),
  gatewayIntake1Asked: () => gateway(1, false, { INFERGATE_INTAKE_PREFETCH_MB: '0' }),
  smallGateway: () => gateway(0, true),
  smallGatewayIntake1: () => gateway(1, true),
};
const measure = (c: string): Promise<Run> =>
  GATEWAYS[c]?.() ?? (c === 'single' ? intake(['single', String(PORT)]) : intake(['threads', String(PORT), c.slice('threads'.length)]));

async function main() {
  console.log(`each load runs ${durationS} s, ${rounds} rounds interleaved`);
  const runs: Record<string, Run[]> = Object.fromEntries(Object.keys(CASES).map((c) => [c, []]));
  for (let round = 0; round < rounds; round++) {
    for (const c of Object.keys(CASES)) {
      const r = await measure(c);
      runs[c].push(r);
      console.log(round, c, Math.round(r.requestsPerS), 'requests/s, main thread µs/request', r.mainThreadUs, 'process', r.processUs);
    }
  }
  // Medians by the main thread's cost: the number this benchmark is about.
  const rows = Object.keys(CASES).map((c) => {
    const m = medianBy(runs[c], (r) => r.mainThreadUs);
    return { case: c, name: CASES[c], ...m, requestsPerS: Math.round(m.requestsPerS), runsMainThreadUs: runs[c].map((r) => r.mainThreadUs) };
  });
  const of = (c: string) => rows.find((r) => r.case === c) as (typeof rows)[number];
  const handoffUs = of(`threads${Math.max(...threadCounts)}`).mainThreadUs;
  const results = {
    machine: machine(),
    durationS,
    rounds,
    request: 'UINT8 [8,224,224,3] (1.2 MB), KServe binary; 32 KB answers',
    connections: CONNECTIONS,
    loadProcesses: processes,
    // At most what the main thread would keep per request with threaded intake: the gateway's cost less its intake, plus the hand-off.
    gatewayMainThreadUs: of('gateway').mainThreadUs,
    intakeMainThreadUs: of('single').mainThreadUs,
    handoffMainThreadUs: handoffUs,
    projectedGatewayMainThreadUs: of('gateway').mainThreadUs - of('single').mainThreadUs + handoffUs,
    intakeThreadGatewayMainThreadUs: of('gatewayIntake1').mainThreadUs,
    intakeThreadAskedGatewayMainThreadUs: of('gatewayIntake1Asked').mainThreadUs,
    smallGatewayMainThreadUs: of('smallGateway').mainThreadUs,
    smallIntakeThreadGatewayMainThreadUs: of('smallGatewayIntake1').mainThreadUs,
    rows,
  };
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, `${name}.json`), `${JSON.stringify(results, null, 2)}\n`);
  const m = results.machine;
  const ratio = Math.round((results.gatewayMainThreadUs / results.intakeThreadGatewayMainThreadUs) * 100) / 100;
  const md = `# HTTP intake on worker threads: what the main thread keeps (${m.cores} cores)

${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, Node ${m.node}; ${durationS} s per load, ${rounds} rounds interleaved, medians (by main-thread µs).
${results.request}, ${CONNECTIONS} clients from ${processes} load process(es). ${m.date}

| server | main thread µs/request (user + system) | whole process µs/request | requests/s | p50 ms | runs (main thread µs) |
|---|---|---|---|---|---|
${rows.map((r) => `| ${r.name} | **${r.mainThreadUs}** (${r.mainThread.userUs} + ${r.mainThread.systemUs}) | ${r.processUs} | ${r.requestsPerS} | ${r.p50Ms} | ${r.runsMainThreadUs.join(', ')} |`).join('\n')}

With \`server.intake_threads: 1\` the gateway's main thread spends **${results.intakeThreadGatewayMainThreadUs} µs** a
request instead of ${results.gatewayMainThreadUs}: ${ratio}× the requests before its event loop is full (small requests:
${results.smallIntakeThreadGatewayMainThreadUs} µs instead of ${results.smallGatewayMainThreadUs}; a body up to 64 KB comes with its request's head). A larger body
follows its head unasked (up to 64 MB being read a thread); asked for by the route instead, a round trip more, it cost
${results.intakeThreadAskedGatewayMainThreadUs} µs. Reading the
body and writing the answer alone cost a main thread ${results.intakeMainThreadUs} µs; handing bodies over from worker
threads (transferred, not copied, and handed back for reuse) costs it ${handoffUs} in the bare server, so what the
gateway keeps is its routing, batching and replicas. The whole process spends more (the hand-off runs on both
sides): ${
    m.cores <= 4
      ? 'on a machine with no core to spare, like this one, requests/s are not the point.'
      : 'with cores to spare, requests/s show what the threads buy.'
  } The bare servers' worker threads accept on one listening socket: the first binds it, the others listen on its
file descriptor; the gateway's own threads (more than one needs Node 22.12) each bind the port with \`reusePort\`.
`;
  writeFileSync(join(outDir, `${name}.md`), md);
  console.log(md);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
