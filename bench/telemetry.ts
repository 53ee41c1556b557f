/**
 * The cost of observability on the gateway-overhead scenario (identity, 4 KB binary tensor, 32 clients):
 * telemetry off (no metrics, no spans) vs on (Prometheus metrics + every request traced and exported over
 * OTLP/HTTP to a local sink), interleaved rounds, medians. Writes bench/results/telemetry-cpu.{json,md}.
 *   npm run bench:telemetry [-- --duration 8 --rounds 3]
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { gatewayUnderLoad, machine, medianRound, ROOT, writeResults } from './lib.js';

const arg = (name: string) => Number(process.argv[process.argv.indexOf(name) + 1]) || undefined;
const durationS = arg('--duration') ?? 8;
const rounds = arg('--rounds') ?? 3;

async function main() {
  // An OTLP collector that accepts and drops: the exporter does all its real work.
  let exports = 0;
  let bytes = 0;
  const sink = createServer((req, res) => {
    exports++;
    req.on('data', (d) => (bytes += d.length));
    req.on('end', () => res.end('{}'));
  });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  const endpoint = `http://127.0.0.1:${(sink.address() as AddressInfo).port}/v1/traces`;
  const variants = {
    off: { metrics: false, traces: { exporter: 'none' } },
    metrics: { metrics: true, traces: { exporter: 'none' } }, // the default config
    sampled: { metrics: true, traces: { exporter: 'otlp', endpoint, sample_ratio: 0.01 } },
    on: { metrics: true, traces: { exporter: 'otlp', endpoint, sample_ratio: 1 } },
  };
  const runs: Record<string, Awaited<ReturnType<typeof gatewayUnderLoad>>[]> = { off: [], metrics: [], sampled: [], on: [] };
  for (let round = 0; round < rounds; round++) {
    for (const [name, telemetry] of Object.entries(variants)) {
      const r = await gatewayUnderLoad({
        port: 18703,
        model: {
          name: 'identity',
          path: join(ROOT, 'examples/models/identity.onnx'),
          threads: 1,
          batching: { max_batch_size: 32, wait_ms: 0, max_queue_size: 4096, max_inputs: 2 },
        },
        telemetry,
        load: { shape: [1, 1024], connections: 32 },
        durationS,
      });
      console.log(round, name, Math.round(r.requestsPerS), 'req/s', r.cpuUsPerRequest);
      runs[name].push(r);
    }
  }
  sink.close();
  const off = medianRound(runs.off);
  const on = medianRound(runs.on);
  const metricsOnly = medianRound(runs.metrics);
  const sampled = medianRound(runs.sampled);
  const results = {
    machine: machine(),
    scenario: 'identity [1,1024] FP32 (4 KB) over the KServe binary extension, 32 clients, max_batch_size 32, wait_ms 0',
    durationS,
    rounds,
    off,
    metrics: metricsOnly,
    sampled,
    on,
    on_over_off: Math.round((on.requestsPerS / off.requestsPerS) * 1000) / 1000,
    metrics_over_off: Math.round((metricsOnly.requestsPerS / off.requestsPerS) * 1000) / 1000,
    sampled_over_off: Math.round((sampled.requestsPerS / off.requestsPerS) * 1000) / 1000,
    gatewayCpuUsPerRequest: {
      off: off.cpuUsPerRequest.gateway,
      metrics: metricsOnly.cpuUsPerRequest.gateway,
      sampled: sampled.cpuUsPerRequest.gateway,
      on: on.cpuUsPerRequest.gateway,
    },
    otlp: { exportRequests: exports, bytes },
  };
  const row = (name: string, r: typeof on) =>
    `| ${name} | ${Math.round(r.requestsPerS)} (${r.runs.join(', ')}) | ${r.p50Ms} | ${r.p99Ms} | ${r.cpuUsPerRequest.gateway} |`;
  const md = `# Observability overhead (CPU)

${results.machine.cpu}, ${results.machine.cores} cores, Node ${results.machine.node}. ${results.machine.date}

${results.scenario}; ${durationS} s per load, ${rounds} rounds interleaved, median shown (every round in brackets).
"metrics" = Prometheus metrics recorded (the default config); "traced 1%" adds spans for 1% of requests; "traced 100%" = metrics + a span
per request and per batch, all sampled, exported over OTLP/HTTP (${exports} export requests, ${Math.round(bytes / 1024)} KiB in all, to a
local sink that drops them).

| telemetry | requests/s | p50 ms | p99 ms | gateway CPU µs/request |
|---|---|---|---|---|
${row('off', results.off)}
${row('metrics (default)', results.metrics)}
${row('metrics + traced 1%', results.sampled)}
${row('metrics + traced 100%', results.on)}

Over off: metrics **${results.metrics_over_off}**, traced 1% **${results.sampled_over_off}**, traced 100% **${results.on_over_off}**.
`;
  writeResults('telemetry-cpu', results, md);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
