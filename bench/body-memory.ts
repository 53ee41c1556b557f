/**
 * Megabyte request bodies and the event loop's page faults, side by side in one run:
 *   - the gateway as it ships: keepFreedMemory() (src/gateway/buffer-pool.ts) at start keeps freed heap mapped;
 *   - the gateway with glibc's default trim threshold (MALLOC_TRIM_THRESHOLD_=131072, which also turns
 *     keepFreedMemory's effect off): the heap's top goes back to the kernel after every collection, and the
 *     64 KB chunks Node's HTTP parser copies each body into fault fresh pages in;
 *   - a bare node:http server running the same session in-process (bench/bare-server.ts), the ceiling.
 * examples/models/pixels.onnx (UINT8 [N,224,224,3], no compute), 8 images (1.2 MB) per request, 16 clients,
 * one replica. Reports images/s and the gateway's main thread per request: CPU µs (user, system) and
 * minor page faults. Writes bench/results/body-memory-cpu.{json,md}.
 *   npm run bench:body-memory [-- --duration 6 --rounds 3]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gatewayUnderLoad, machine, medianBy, ROOT, serverUnderLoad } from './lib.js';

const arg = (name: string) => Number(process.argv[process.argv.indexOf(name) + 1]) || undefined;
const durationS = arg('--duration') ?? 6;
const rounds = arg('--rounds') ?? 3;
const PORT = 18470;
const PIXELS = join(ROOT, 'examples/models/pixels.onnx');
const SHAPE = [8, 224, 224, 3];
const CONNECTIONS = 16;
const IMAGES = SHAPE[0];

type Run = { imagesPerS: number; p50Ms: number; p99Ms: number; mainThread: { userUs: number; systemUs: number; minorFaults: number } };
const CASES = {
  kept: 'gateway (freed heap kept mapped, as shipped)',
  trimmed: "gateway, glibc's default trim (MALLOC_TRIM_THRESHOLD_=131072)",
  bare: 'bare node:http + in-process session',
} as const;
type Case = keyof typeof CASES;

async function gateway(env: Record<string, string>): Promise<Run> {
  const g = await gatewayUnderLoad({
    port: PORT,
    model: { name: 'pixels', path: PIXELS, threads: 1, batching: { max_batch_size: 32, wait_ms: 2, max_queue_size: 4096, max_inputs: 2 } },
    load: { shape: SHAPE, connections: CONNECTIONS, dtype: 'UINT8' },
    durationS,
    env,
  });
  return { imagesPerS: g.requestsPerS * IMAGES, p50Ms: g.p50Ms, p99Ms: g.p99Ms, mainThread: g.gatewayMainThreadPerRequest };
}

async function bare(): Promise<Run> {
  const r = await serverUnderLoad(
    ['bench/bare-server.ts', PIXELS, String(PORT), '1'],
    PORT,
    { shape: SHAPE, dtype: 'UINT8', connections: CONNECTIONS },
    durationS,
  );
  return { imagesPerS: r.requestsPerS * IMAGES, p50Ms: r.p50Ms, p99Ms: r.p99Ms, mainThread: r.mainThread };
}

const measure: Record<Case, () => Promise<Run>> = {
  kept: () => gateway({}),
  trimmed: () => gateway({ MALLOC_TRIM_THRESHOLD_: '131072' }),
  bare,
};

async function main() {
  console.log(`each load runs ${durationS} s, ${rounds} rounds interleaved`);
  const runs: Record<Case, Run[]> = { kept: [], trimmed: [], bare: [] };
  for (let round = 0; round < rounds; round++) {
    for (const c of Object.keys(CASES) as Case[]) {
      const r = await measure[c]();
      runs[c].push(r);
      console.log(round, c, Math.round(r.imagesPerS), 'images/s', r.mainThread);
    }
  }
  const rows = (Object.keys(CASES) as Case[]).map((c) => {
    const m = medianBy(runs[c], (r) => r.imagesPerS);
    return { case: c, name: CASES[c], ...m, imagesPerS: Math.round(m.imagesPerS), runs: runs[c].map((r) => Math.round(r.imagesPerS)) };
  });
  const of = (c: Case) => rows.find((r) => r.case === c) as (typeof rows)[number];
  const keptOverTrimmed = Math.round((of('kept').imagesPerS / of('trimmed').imagesPerS) * 100) / 100;
  const keptOverBare = Math.round((of('kept').imagesPerS / of('bare').imagesPerS) * 100) / 100;

  const out = join(ROOT, 'bench/results');
  mkdirSync(out, { recursive: true });
  const results = {
    machine: machine(),
    durationS,
    rounds,
    model: 'pixels.onnx UINT8 [8,224,224,3] per request',
    connections: CONNECTIONS,
    keptOverTrimmed,
    keptOverBare,
    rows,
  };
  writeFileSync(join(out, 'body-memory-cpu.json'), `${JSON.stringify(results, null, 2)}\n`);
  const m = results.machine;
  const md = `# Megabyte request bodies: page faults on the event loop (CPU machine)

${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, Node ${m.node}; ${durationS} s per load, ${rounds} rounds interleaved, medians (by images/s).
\`examples/models/pixels.onnx\` (no compute), ${IMAGES} images = 1.2 MB UINT8 per request (KServe binary), ${CONNECTIONS} clients, one replica. ${m.date}

| server | images/s | p50 ms | p99 ms | main thread µs/request (user + system) | main-thread page faults/request | runs (images/s) |
|---|---|---|---|---|---|---|
${rows.map((r) => `| ${r.name} | ${r.imagesPerS} | ${r.p50Ms} | ${r.p99Ms} | ${r.mainThread.userUs + r.mainThread.systemUs} (${r.mainThread.userUs} + ${r.mainThread.systemUs}) | ${r.mainThread.minorFaults} | ${r.runs.join(', ')} |`).join('\n')}

Kept over trimmed: **${keptOverTrimmed}×**; the gateway over the bare server: **${keptOverBare}**.

Node's HTTP parser copies each 64 KB chunk of a body into a fresh buffer that V8 frees at its next collection.
With glibc's default trim threshold (128 KB) the top of the heap goes back to the kernel after each collection,
and the next chunks fault it in again, zero-filled, on the event loop. The gateway's pooled bodies are never
freed, so glibc never raises the threshold on its own; keepFreedMemory() frees one 31 MiB block at start so it
does. The bare server frees each 1.2 MB Buffer.concat block soon after, which raises it by itself.
`;
  writeFileSync(join(out, 'body-memory-cpu.md'), md);
  console.log(md);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
