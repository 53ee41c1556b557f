/**
 * Could the gateway's HTTP intake spread over threads? On the H200 its one event loop was the limit (busy
 * 0.96–1.0 at ~1.1 GB/s of request bodies, bench/results/gpu-summary.md). Side by side in one run, 1.2 MB
 * KServe-binary bodies (8 UINT8 images) from 16 clients:
 *   - the gateway as it ships (examples/models/pixels.onnx, no compute, one replica);
 *   - its intake alone on the main thread (bench/edge-server.ts single): read the body into a reused buffer,
 *     answer 32 KB;
 *   - the same intake on 1 and 2 worker threads accepting on one listening socket, each body handed to the
 *     main thread (where the batcher would be) by transfer and handed back for reuse.
 * Reports the main thread's CPU per request (what cannot spread over cores) and the whole process's. A
 * 2-core machine cannot show more requests per second from more threads (the load generator and the
 * servers share both cores); the main thread's cost per request is the number that carries over.
 * Writes bench/results/edge-threads-cpu.{json,md}.
 *   npm run bench:edge-threads [-- --duration 5 --rounds 3]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  autocannon,
  binaryRequest,
  cpuSeconds,
  gatewayUnderLoad,
  machine,
  mainThreadPerRequest,
  mainThreadUsage,
  medianBy,
  ROOT,
  startServer,
  stopServer,
} from './lib.js';

const arg = (name: string) => Number(process.argv[process.argv.indexOf(name) + 1]) || undefined;
const durationS = arg('--duration') ?? 5;
const rounds = arg('--rounds') ?? 3;
const PORT = 18475;
const SHAPE = [8, 224, 224, 3];
const CONNECTIONS = 16;

type Run = {
  requestsPerS: number;
  p50Ms: number;
  mainThreadUs: number;
  mainThread: { userUs: number; systemUs: number; minorFaults: number };
  processUs: number;
};
const CASES = {
  gateway: 'the gateway as shipped (pixels.onnx, one replica)',
  single: 'intake alone, main thread',
  threads1: 'intake on 1 worker thread, bodies handed to the main thread',
  threads2: 'intake on 2 worker threads, bodies handed to the main thread',
} as const;
type Case = keyof typeof CASES;

async function gateway(): Promise<Run> {
  const g = await gatewayUnderLoad({
    port: PORT,
    model: {
      name: 'pixels',
      path: join(ROOT, 'examples/models/pixels.onnx'),
      threads: 1,
      batching: { max_batch_size: 32, wait_ms: 2, max_queue_size: 4096, max_inputs: 2 },
    },
    load: { shape: SHAPE, connections: CONNECTIONS, dtype: 'UINT8' },
    durationS,
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
  const server = await startServer(['bench/edge-server.ts', ...args], `http://127.0.0.1:${PORT}/`);
  try {
    const pid = server.pid as number;
    const load = { ...binaryRequest('x', SHAPE, 'UINT8'), url: `http://127.0.0.1:${PORT}/`, connections: CONNECTIONS };
    await autocannon({ ...load, durationS: 2 });
    const main0 = mainThreadUsage(pid);
    const cpu0 = cpuSeconds(pid);
    const r = await autocannon({ ...load, durationS });
    const main = mainThreadPerRequest(pid, main0, r.total);
    return {
      requestsPerS: r.requestsPerS,
      p50Ms: r.p50Ms,
      mainThread: main,
      mainThreadUs: main.userUs + main.systemUs,
      processUs: Math.round(((cpuSeconds(pid) - cpu0) * 1e6) / r.total),
    };
  } finally {
    await stopServer(server);
  }
}

const measure: Record<Case, () => Promise<Run>> = {
  gateway,
  single: () => intake(['single', String(PORT)]),
  threads1: () => intake(['threads', String(PORT), '1']),
  threads2: () => intake(['threads', String(PORT), '2']),
};

async function main() {
  console.log(`each load runs ${durationS} s, ${rounds} rounds interleaved`);
  const runs: Record<Case, Run[]> = { gateway: [], single: [], threads1: [], threads2: [] };
  for (let round = 0; round < rounds; round++) {
    for (const c of Object.keys(CASES) as Case[]) {
      const r = await measure[c]();
      runs[c].push(r);
      console.log(round, c, Math.round(r.requestsPerS), 'requests/s, main thread µs/request', r.mainThreadUs, 'process', r.processUs);
    }
  }
  // Medians by the main thread's cost: the number this benchmark is about.
  const rows = (Object.keys(CASES) as Case[]).map((c) => {
    const m = medianBy(runs[c], (r) => r.mainThreadUs);
    return { case: c, name: CASES[c], ...m, requestsPerS: Math.round(m.requestsPerS), runsMainThreadUs: runs[c].map((r) => r.mainThreadUs) };
  });
  const of = (c: Case) => rows.find((r) => r.case === c) as (typeof rows)[number];
  const handoffUs = of('threads2').mainThreadUs;
  const results = {
    machine: machine(),
    durationS,
    rounds,
    request: 'UINT8 [8,224,224,3] (1.2 MB), KServe binary; 32 KB answers',
    connections: CONNECTIONS,
    // At most what the main thread would keep per request with threaded intake: the gateway's cost less its intake, plus the hand-off.
    gatewayMainThreadUs: of('gateway').mainThreadUs,
    intakeMainThreadUs: of('single').mainThreadUs,
    handoffMainThreadUs: handoffUs,
    projectedGatewayMainThreadUs: of('gateway').mainThreadUs - of('single').mainThreadUs + handoffUs,
    rows,
  };
  const out = join(ROOT, 'bench/results');
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'edge-threads-cpu.json'), `${JSON.stringify(results, null, 2)}\n`);
  const m = results.machine;
  const ratio = Math.round((results.gatewayMainThreadUs / results.projectedGatewayMainThreadUs) * 10) / 10;
  const md = `# HTTP intake on worker threads: what the main thread keeps (CPU machine)

${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, Node ${m.node}; ${durationS} s per load, ${rounds} rounds interleaved, medians (by main-thread µs).
${results.request}, ${CONNECTIONS} clients. ${m.date}

| server | main thread µs/request (user + system) | whole process µs/request | requests/s | p50 ms | runs (main thread µs) |
|---|---|---|---|---|---|
${rows.map((r) => `| ${r.name} | **${r.mainThreadUs}** (${r.mainThread.userUs} + ${r.mainThread.systemUs}) | ${r.processUs} | ${r.requestsPerS} | ${r.p50Ms} | ${r.runsMainThreadUs.join(', ')} |`).join('\n')}

Reading the body and writing the answer on the main thread costs it ${results.intakeMainThreadUs} µs a request; handing
bodies over from worker threads (transferred, not copied, and handed back for reuse) costs it ${handoffUs}. The
gateway's main thread spends ${results.gatewayMainThreadUs} µs a request now; with its intake on worker threads it
would keep at most **${results.projectedGatewayMainThreadUs} µs** (its cost, less the intake, plus the hand-off; less
again if parsing the KServe header and encoding the answer moved too): ${ratio}× the requests before its event
loop is full. The whole process spends more (the hand-off runs on both sides), which a 2-core machine cannot
spare: requests/s here are not the point. Worker threads accept on one listening socket: the first binds it, the
others listen on its file descriptor (threads share the process's descriptors), and whichever thread's event loop
accepts first serves the connection; this works on Node 20, which lacks \`reusePort\`.
`;
  writeFileSync(join(out, 'edge-threads-cpu.md'), md);
  console.log(md);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
