/**
 * An ensemble (identity → mlp, config `ensembles`) against its baseline: a client that calls identity, then mlp
 * with identity's answer — the same work, one HTTP round trip and one decode/encode per step more. 16 clients in
 * this process (fetch, the binary extension both ways), one gateway; interleaved rounds, medians: requests/s, p50,
 * p99 and the gateway's CPU per answered request. Writes bench/results/ensemble-cpu.{json,md}.
 *   npm run bench:ensemble [-- --duration 5 --rounds 3]
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { clientsLoad, type GatewayRun, gatewayRounds, machine, medianRound, ROOT, startServer, stopServer, writeResults } from './lib.js';

const arg = (name: string) => Number(process.argv[process.argv.indexOf(name) + 1]) || undefined;
const durationS = arg('--duration') ?? 5;
const rounds = arg('--rounds') ?? 3;
const PORT = 18716;
const CLIENTS = 16;
const url = (model: string) => `http://127.0.0.1:${PORT}/v2/models/${model}/infer`;

/** A binary-extension request of one [1, 64] FP32 input, every output asked binary. */
function binary(name: string, x: Float32Array) {
  const header = Buffer.from(
    JSON.stringify({
      inputs: [{ name, shape: [1, 64], datatype: 'FP32', parameters: { binary_data_size: x.byteLength } }],
      parameters: { binary_data_output: true },
    }),
  );
  return { body: Buffer.concat([header, Buffer.from(x.buffer, x.byteOffset, x.byteLength)]), headerLength: header.byteLength };
}

/** POSTs a binary request; the answer's first output as floats. */
async function call(model: string, input: string, x: Float32Array): Promise<Float32Array> {
  const { body, headerLength } = binary(input, x);
  const res = await fetch(url(model), { method: 'POST', body, headers: { 'inference-header-content-length': String(headerLength) } });
  if (res.status !== 200) throw new Error(`${model}: ${res.status} ${await res.text()}`);
  const bytes = new Uint8Array(await res.arrayBuffer());
  const at = Number(res.headers.get('inference-header-content-length'));
  return new Float32Array(bytes.slice(at).buffer);
}

const variants = {
  /** One request: the gateway runs both steps. */
  ensemble: (x: Float32Array) => call('pipeline', 'features', x),
  /** The client chains them: identity's answer is sent to mlp. */
  chained: async (x: Float32Array) => call('mlp', 'x', await call('identity', 'x', x)),
};

/** 16 clients, each sending its own row (checked: ten probabilities back). */
const load = (run: (x: Float32Array) => Promise<Float32Array>, seconds: number) =>
  clientsLoad(CLIENTS, seconds, async (c) => {
    const probs = await run(Float32Array.from({ length: 64 }, (_, i) => Math.sin(c * 64 + i)));
    if (probs.length !== 10) throw new Error(`${probs.length} probabilities`);
  });

async function main() {
  const config = join(ROOT, `bench/.gateway-${PORT}.yaml`);
  const model = (path: string) => ({
    path: join(ROOT, path),
    device: 'cpu',
    threads: 1,
    batching: { max_batch_size: 32, wait_ms: 0, max_queue_size: 4096 },
    scaling: { min_containers: 1 },
  });
  const pipeline = {
    steps: [
      { model: 'identity', inputs: { x: 'features' }, outputs: { y: 'copied' } },
      { model: 'mlp', inputs: { x: 'copied' }, outputs: { probs: 'scores' } },
    ],
  };
  writeFileSync(
    config,
    stringify({
      server: { port: PORT, host: '127.0.0.1' },
      models: { identity: model('examples/models/identity.onnx'), mlp: model('examples/models/mlp.onnx') },
      ensembles: { pipeline },
    }),
  );
  const gateway = await startServer(['src/cli.ts', 'serve', '-c', config, '--log-level', 'warn'], `http://127.0.0.1:${PORT}/v2/health/ready`);
  const pid = gateway.pid as number;
  let runs: Record<string, GatewayRun[]>;
  try {
    runs = await gatewayRounds(
      Object.fromEntries(Object.entries(variants).map(([name, run]) => [name, { pid, load: (s: number) => load(run, s) }])),
      rounds,
      durationS,
    );
  } finally {
    await stopServer(gateway);
  }
  const median = (name: string) => medianRound(runs[name]);
  const results = {
    machine: machine(),
    scenario: `identity → mlp on one [1,64] FP32 row, ${CLIENTS} clients (fetch, binary extension), max_batch_size 32, wait_ms 0`,
    durationS,
    rounds,
    ensemble: median('ensemble'),
    chained: median('chained'),
  };
  const row = (name: string, r: typeof results.ensemble) =>
    `| ${name} | ${Math.round(r.requestsPerS)} (${r.runs.join(', ')}) | ${r.p50Ms} | ${r.p99Ms} | ${r.gatewayUs} |`;
  const md = `# An ensemble vs the client chaining its models (CPU)

${results.machine.cpu}, ${results.machine.cores} cores, Node ${results.machine.node}. ${results.machine.date}

${results.scenario}; ${durationS} s per load, ${rounds} rounds interleaved, median shown (every round in brackets).
The clients run in the benchmark's process, on the same 2 cores as the gateway and its two replicas.

| variant | answers/s | p50 ms | p99 ms | gateway CPU µs an answer |
|---|---|---|---|---|
${row('ensemble (POST pipeline: identity → mlp in the gateway)', results.ensemble)}
${row('chained by the client (POST identity, then POST mlp)', results.chained)}
`;
  writeResults('ensemble-cpu', results, md);
}

await main();
