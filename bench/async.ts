import { clientsLoad, type GatewayRun, gatewayRounds, machine, medianRound, SMALL_MLP, serveConfig, stopServer, writeResults } from './lib.js';

const arg = (name: string) => Number(process.argv[process.argv.indexOf(name) + 1]) || undefined;
const durationS = arg('--duration') ?? 5;
const rounds = arg('--rounds') ?? 3;
const [PLAIN, REDIRECTING] = [18726, 18727];
const CLIENTS = 16;

const body = (c: number) =>
  JSON.stringify({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: Array.from({ length: 64 }, (_, i) => Math.sin(c * 64 + i)) }] });
const probsOf = async (res: Response) => {
  if (res.status !== 200) throw new Error(`${res.status} ${await res.text()}`);
  const probs = (await res.json()).outputs[0].data as number[];
  if (probs.length !== 10) throw new Error(`${probs.length} probabilities`);
};
const infer = (port: number, c: number, headers: Record<string, string> = {}) =>
  fetch(`http://127.0.0.1:${port}/v2/models/mlp/infer`, { method: 'POST', body: body(c), headers, redirect: 'manual' });

const variants = {
  /** Answered in place, by a gateway without async_after_s. */
  plain: { port: PLAIN, run: async (c: number) => probsOf(await infer(PLAIN, c)) },
  /** Answered in place, by a gateway with async_after_s: 150 (each request through the app twice). */
  'async_after_s set': { port: REDIRECTING, run: async (c: number) => probsOf(await infer(REDIRECTING, c)) },
  /** Prefer: respond-async, then collected. */
  'respond-async + collect': {
    port: PLAIN,
    run: async (c: number) => {
      const sent = await infer(PLAIN, c, { prefer: 'respond-async' });
      if (sent.status !== 202) throw new Error(`${sent.status} ${await sent.text()}`);
      await sent.body?.cancel();
      await probsOf(await fetch(`http://127.0.0.1:${PLAIN}${sent.headers.get('location')}?wait_s=30`));
    },
  },
};

const load = (run: (c: number) => Promise<void>, seconds: number) => clientsLoad(CLIENTS, seconds, run);

async function main() {
  const start = (port: number, server: object) => serveConfig(port, { server, models: { mlp: SMALL_MLP } });
  const gateways = { [PLAIN]: await start(PLAIN, {}), [REDIRECTING]: await start(REDIRECTING, { async_after_s: 150 }) };
  let runs: Record<string, GatewayRun[]>;
  try {
    const measured = Object.entries(variants).map(([name, { port, run }]) => [name, { pid: gateways[port].pid as number, load: (s: number) => load(run, s) }]);
    runs = await gatewayRounds(Object.fromEntries(measured), rounds, durationS);
  } finally {
    await Promise.all(Object.values(gateways).map(stopServer));
  }
  const results = {
    machine: machine(),
    scenario: `mlp on one [1,64] FP32 row (JSON), ${CLIENTS} clients (fetch), max_batch_size 32, wait_ms 0`,
    durationS,
    rounds,
    ...Object.fromEntries(Object.keys(variants).map((name) => [name, medianRound(runs[name])])),
  };
  const row = (name: string) => {
    const r = medianRound(runs[name]);
    return `| ${name} | ${Math.round(r.requestsPerS)} (${r.runs.join(', ')}) | ${r.p50Ms} | ${r.p99Ms} | ${r.gatewayUs} |`;
  };
  const md = `# Asynchronous inference's cost (CPU)

${results.machine.cpu}, ${results.machine.cores} cores, Node ${results.machine.node}. ${results.machine.date}

${results.scenario}; ${durationS} s per load, ${rounds} rounds interleaved, median shown (every round in brackets).
The clients run in the benchmark's process, on the same 2 cores as the two gateways and their replicas.

| variant | answers/s | p50 ms | p99 ms | gateway CPU µs an answer |
|---|---|---|---|---|
${Object.keys(variants).map(row).join('\n')}

- plain: answered in place by a gateway without \`server.async_after_s\`.
- async_after_s set: answered in place (all well under 150 s) by a gateway with \`server.async_after_s: 150\`: each
  inference request runs through the app twice and its body is copied once, so that it could be redirected.
- respond-async + collect: \`Prefer: respond-async\` (202), then \`GET /v2/calls/{id}?wait_s=30\` (200): two round trips.
`;
  writeResults('async-cpu', results, md);
}

await main();
