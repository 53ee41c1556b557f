import { join } from 'node:path';
import { clientsLoad, type GatewayRun, gatewayRounds, machine, medianRound, ROOT, serveConfig, stopServer, writeResults } from './lib.js';

const arg = (name: string) => Number(process.argv[process.argv.indexOf(name) + 1]) || undefined;
const durationS = arg('--duration') ?? 5;
const rounds = arg('--rounds') ?? 3;
const [A, B] = [18736, 18737];
const CLIENTS = 16;
const url = (port: number) => `http://127.0.0.1:${port}`;

const ok = async (res: Response, check: (body: { id?: string; status?: string }) => boolean) => {
  if (res.status !== 200) throw new Error(`${res.status} ${await res.text()}`);
  const body = await res.json();
  if (!check(body)) throw new Error(`unexpected answer ${JSON.stringify(body).slice(0, 200)}`);
  return body;
};
const keep = (port: number, input: string) =>
  fetch(`${url(port)}/v1/responses`, {
    method: 'POST',
    body: JSON.stringify({ model: 'tiny-gpt', input, max_output_tokens: 4, temperature: 0, store: true }),
  });

async function main() {
  const model = {
    path: join(ROOT, 'examples/models/tiny-gpt.onnx'),
    device: 'cpu',
    threads: 1,
    batching: { max_batch_size: 16 },
    scaling: { min_containers: 1 },
  };
  const start = (port: number) => serveConfig(port, { server: { fleet: { self: url(port), peers: [url(A), url(B)] } }, models: { 'tiny-gpt': model } });
  const gateways = { [A]: await start(A), [B]: await start(B) };
  let runs: Record<string, GatewayRun[]>;
  try {
    const kept: string[] = [];
    for (let c = 0; c < CLIENTS; c++) kept.push((await ok(await keep(A, `Hello ${c}`), (b) => b.id !== undefined)).id as string);
    const retrieve = (port: number) => async (c: number) => {
      await ok(await fetch(`${url(port)}/v1/responses/${kept[c]}`), (b) => b.id === kept[c]);
    };
    const continueOn = (port: number) => async (c: number) => {
      const body = JSON.stringify({ model: 'tiny-gpt', input: 'And?', max_output_tokens: 1, temperature: 0, previous_response_id: kept[c] });
      await ok(await fetch(`${url(port)}/v1/responses`, { method: 'POST', body }), (b) => b.status === 'incomplete');
    };
    const variants = {
      'retrieve on A (its gateway)': { port: A, run: retrieve(A) },
      'retrieve through B': { port: B, run: retrieve(B) },
      'continue on A (its gateway)': { port: A, run: continueOn(A) },
      'continue through B': { port: B, run: continueOn(B) },
    };
    const measured = Object.entries(variants).map(([name, { port, run }]) => [
      name,
      { pid: gateways[port].pid as number, load: (s: number) => clientsLoad(CLIENTS, s, run) },
    ]);
    runs = await gatewayRounds(Object.fromEntries(measured), rounds, durationS);
  } finally {
    await Promise.all(Object.values(gateways).map(stopServer));
  }
  const names = Object.keys(runs);
  const results = {
    machine: machine(),
    scenario: `two gateways of one fleet, tiny-gpt on each (one replica, max_batch_size 16), 16 responses kept on A, ${CLIENTS} clients (fetch)`,
    durationS,
    rounds,
    ...Object.fromEntries(names.map((name) => [name, medianRound(runs[name])])),
  };
  const row = (name: string) => {
    const r = medianRound(runs[name]);
    return `| ${name} | ${Math.round(r.requestsPerS)} (${r.runs.map(Math.round).join(', ')}) | ${r.p50Ms} | ${r.p99Ms} | ${r.gatewayUs} |`;
  };
  const md = `# A fleet's cost: requests sent on to the gateway that keeps what they name (CPU)

${results.machine.cpu}, ${results.machine.cores} cores, Node ${results.machine.node}. ${results.machine.date}

${results.scenario}; ${durationS} s per load, ${rounds} rounds interleaved, median shown (every round in brackets).
The clients run in the benchmark's process, on the same 2 cores as both gateways and their replicas.

| variant | answers/s | p50 ms | p99 ms | CPU µs an answer, of the gateway called |
|---|---|---|---|---|
${names.map(row).join('\n')}

- retrieve: \`GET /v1/responses/{id}\` of a response kept on A — asked of A, or of B (which sends it on to A).
- continue: \`POST /v1/responses\` with \`previous_response_id\` (one token) — on A, or through B (the whole request
  sent on to A, where the conversation is; its answer back through B).
- Through B, the CPU column is B's alone: what forwarding costs the gateway that forwards (A does the same work
  either way).
`;
  writeResults('fleet-cpu', results, md);
}

await main();
