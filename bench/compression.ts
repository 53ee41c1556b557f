/**
 * server.compress_responses on JSON answers: identity.onnx answering a [1, 2000] FP32 tensor as JSON numbers
 * (~40 KB, an embeddings-sized answer), 16 clients that accept gzip (as requests and httpx do unasked) or br (fetch).
 * Side by side in interleaved rounds, medians: the setting off, gzip, br — requests/s, gateway CPU per request,
 * and the bytes each answer takes on the wire. Writes bench/results/compression-cpu.{json,md}.
 *   npm run bench:compression [-- --duration 5 --rounds 3]
 */
import { writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib';
import { gatewayUnderLoad, machine, medianRound, ROOT, writeResults } from './lib.js';

const arg = (name: string) => Number(process.argv[process.argv.indexOf(name) + 1]) || undefined;
const durationS = arg('--duration') ?? 5;
const rounds = arg('--rounds') ?? 3;
const ELEMENTS = 2000;

const json = JSON.stringify({
  inputs: [{ name: 'x', shape: [1, ELEMENTS], datatype: 'FP32', data: Array.from({ length: ELEMENTS }, (_, i) => Math.fround(Math.sin(i) * 0.1)) }],
});
const bodyFile = join(tmpdir(), 'infergate-bench-compression.json');
writeFileSync(bodyFile, json);

/** Bytes of one answer as sent, and inflated (checked to be the same JSON as the uncompressed answer). */
async function answerBytes(base: string, encoding: string) {
  return new Promise<{ wire: number; encoding: string }>((resolve, reject) => {
    const req = request(
      `${base}/v2/models/identity/infer`,
      { method: 'POST', headers: { 'accept-encoding': encoding, 'content-type': 'application/json' } },
      (res) => {
        const chunks: Buffer[] = [];
        res
          .on('data', (c: Buffer) => chunks.push(c))
          .on('end', () => {
            const wire = Buffer.concat(chunks);
            const inflate = { gzip: gunzipSync, br: brotliDecompressSync, deflate: inflateSync }[res.headers['content-encoding'] ?? ''];
            const text = (inflate?.(wire) ?? wire).toString();
            if (JSON.parse(text).outputs[0].data.length !== ELEMENTS) reject(new Error('wrong answer'));
            resolve({ wire: wire.byteLength, encoding: res.headers['content-encoding'] ?? 'identity' });
          });
      },
    );
    req.once('error', reject).end(json);
  });
}

async function main() {
  const on = { compress_responses: true };
  const threads = { intake_threads: 1 };
  const variants: Record<string, { label: string; server: object; accept: string }> = {
    off: { label: 'off', server: {}, accept: 'gzip, deflate' },
    gzip: { label: 'gzip (level 1)', server: on, accept: 'gzip, deflate' }, // requests', httpx's
    br: { label: 'br (quality 1)', server: on, accept: 'gzip, deflate, br' }, // fetch's
    // With an intake thread the thread compresses: the main thread's part should not grow.
    offThread: { label: 'off, 1 intake thread', server: threads, accept: 'gzip, deflate, br' },
    brThread: { label: 'br, 1 intake thread', server: { ...on, ...threads }, accept: 'gzip, deflate, br' },
  };
  type Run = Awaited<ReturnType<typeof gatewayUnderLoad>> & { wireBytes: number };
  const runs: Record<string, Run[]> = Object.fromEntries(Object.keys(variants).map((name) => [name, []]));
  for (let round = 0; round < rounds; round++) {
    for (const [name, v] of Object.entries(variants)) {
      let wireBytes = 0;
      const r = await gatewayUnderLoad({
        port: 18705,
        model: { name: 'identity', path: join(ROOT, 'examples/models/identity.onnx'), threads: 1, batching: { max_batch_size: 16, wait_ms: 1 } },
        server: v.server,
        load: { shape: [1, ELEMENTS], connections: 16 },
        durationS,
        prepare: async (base) => {
          wireBytes = (await answerBytes(base, v.accept)).wire;
          return { bodyFile, headerLength: Buffer.byteLength(json), headers: { 'accept-encoding': v.accept } };
        },
      });
      if (r.non2xx || r.errors) throw new Error(`${name}: ${r.non2xx} non-2xx, ${r.errors} errors`);
      console.log(round, name, Math.round(r.requestsPerS), 'req/s', r.p50Ms, 'ms p50', r.cpuUsPerRequest, wireBytes, 'bytes');
      runs[name].push({ ...r, wireBytes });
    }
  }
  const median = (name: string) => medianRound(runs[name]);
  const results = {
    machine: machine(),
    scenario: `identity.onnx, a [1,${ELEMENTS}] FP32 tensor in and out as JSON numbers, 16 clients, max_batch_size 16`,
    durationS,
    rounds,
    variants: Object.fromEntries(Object.entries(variants).map(([name, v]) => [name, { ...v, ...median(name) }])),
  };
  const row = (r: (typeof results.variants)[string]) =>
    `| ${r.label} | ${r.wireBytes} | ${Math.round(r.requestsPerS)} (${r.runs.join(', ')}) | ${r.p50Ms} | ${r.cpuUsPerRequest.gateway} | ${r.gatewayMainThreadPerRequest.userUs + r.gatewayMainThreadPerRequest.systemUs} |`;
  const md = `# Compressed answers (CPU)

${results.machine.cpu}, ${results.machine.cores} cores, Node ${results.machine.node}. ${results.machine.date}

${results.scenario}; ${durationS} s per load, ${rounds} rounds interleaved, median shown (every round in brackets). The clients
accept \`gzip, deflate\` (as requests and httpx do unasked) or \`gzip, deflate, br\` (as fetch does); \`off\` is the gateway without \`server.compress_responses\`.

| answers | bytes per answer | requests/s | p50 ms | gateway CPU µs/request | of which its main thread |
|---|---|---|---|---|---|
${Object.values(results.variants).map(row).join('\n')}
`;
  writeResults('compression-cpu', results, md);
}

await main();
