/**
 * The response cache (models.X.response_cache_mb) on cnn-bench.onnx ([N,3,32,32]): requests of 8 images (96 KB)
 * over the KServe binary extension, 16 clients, the same request over and over — with the cache every request
 * after the first is a hit (the best case), without it every one runs. Interleaved rounds, medians. Also what a
 * miss costs beside its inference: hashing the inputs, per size. Writes bench/results/response-cache-cpu.{json,md}.
 *   npm run bench:response-cache [-- --duration 8 --rounds 3]
 */
import { join } from 'node:path';
import { ResponseCache } from '../src/batcher/index.js';
import { gatewayUnderLoad, machine, medianRound, ROOT, writeResults } from './lib.js';

const arg = (name: string) => Number(process.argv[process.argv.indexOf(name) + 1]) || undefined;
const durationS = arg('--duration') ?? 8;
const rounds = arg('--rounds') ?? 3;

/** µs to key a request of `bytes` (SHA-256 over its bytes), median of 5 runs of 200. */
function keyUs(bytes: number): number {
  const cache = new ResponseCache(1);
  const inputs = { x: { dtype: 'UINT8' as const, shape: [1, bytes], data: new Uint8Array(bytes).map((_, i) => i * 7) } };
  const runs = Array.from({ length: 5 }, () => {
    const start = performance.now();
    for (let i = 0; i < 200; i++) cache.key(inputs);
    return ((performance.now() - start) * 1000) / 200;
  });
  return Math.round(runs.sort((a, b) => a - b)[2]);
}

async function main() {
  const variants = { uncached: {}, cached: { response_cache_mb: 64 } };
  const runs: Record<string, Awaited<ReturnType<typeof gatewayUnderLoad>>[]> = { uncached: [], cached: [] };
  for (let round = 0; round < rounds; round++) {
    for (const [name, more] of Object.entries(variants)) {
      const r = await gatewayUnderLoad({
        port: 18704,
        model: {
          name: 'cnn',
          path: join(ROOT, 'examples/models/cnn-bench.onnx'),
          threads: 1,
          batching: { max_batch_size: 64, wait_ms: 2, max_queue_size: 4096 },
          more,
        },
        load: { shape: [8, 3, 32, 32], connections: 16 },
        durationS,
      });
      console.log(round, name, Math.round(r.requestsPerS), 'req/s', r.p50Ms, 'ms p50', r.cpuUsPerRequest);
      runs[name].push(r);
    }
  }
  const median = (name: string) => medianRound(runs[name]);
  const uncached = median('uncached');
  const cached = median('cached');
  const hashing = Object.fromEntries([4096, 98_304, 1_204_224, 12_042_240].map((b) => [b, keyUs(b)]));
  const results = {
    machine: machine(),
    scenario: 'cnn-bench [8,3,32,32] FP32 (96 KB) over the KServe binary extension, 16 clients, the same request each time, max_batch_size 64',
    durationS,
    rounds,
    uncached,
    cached,
    cached_over_uncached: Math.round((cached.requestsPerS / uncached.requestsPerS) * 100) / 100,
    keyUsByBytes: hashing,
  };
  const row = (name: string, r: typeof cached) =>
    `| ${name} | ${Math.round(r.requestsPerS)} (${r.runs.join(', ')}) | ${r.p50Ms} | ${r.p99Ms} | ${r.cpuUsPerRequest.gateway} | ${r.cpuUsPerRequest.replica} |`;
  const md = `# Response cache (CPU)

${results.machine.cpu}, ${results.machine.cores} cores, Node ${results.machine.node}. ${results.machine.date}

${results.scenario}; ${durationS} s per load, ${rounds} rounds interleaved, median shown (every round in brackets). With
\`response_cache_mb\` every request after the first is answered from the cache: the best case, an upper bound.

| model | requests/s | p50 ms | p99 ms | gateway CPU µs/request | replica CPU µs/request |
|---|---|---|---|---|---|
${row('uncached', uncached)}
${row('response_cache_mb: 64', cached)}

Cached over uncached: **${results.cached_over_uncached}×**.

What a miss adds to its request (the key: SHA-256 over the inputs, on the gateway's event loop), µs by request size:
${Object.entries(hashing)
  .map(([b, us]) => `${Math.round(Number(b) / 1024)} KB: ${us} µs`)
  .join('; ')}.
`;
  writeResults('response-cache-cpu', results, md);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
