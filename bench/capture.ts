/**
 * Data capture's cost: the same request (mlp, one [1, 64] FP32 row, JSON) to a gateway without capture, one capturing
 * every request to a CloudEvents collector (an HTTP server in this process, answering at once), and one writing every
 * capture to a folder. 16 clients in this process; interleaved rounds, medians: requests/s, p50, p99 and the
 * gateway's CPU per answered request (sending or writing captures included: they happen in the gateway's process).
 * Writes bench/results/capture-cpu.{json,md}.
 *   npm run bench:capture [-- --duration 5 --rounds 3]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clientsLoad, type GatewayRun, gatewayRounds, machine, medianRound, SMALL_MLP, serveConfig, stopServer, writeResults } from './lib.js';

const arg = (name: string) => Number(process.argv[process.argv.indexOf(name) + 1]) || undefined;
const durationS = arg('--duration') ?? 5;
const rounds = arg('--rounds') ?? 3;
const [PLAIN, SENDING, BATCHING, WRITING, COLLECTOR] = [18746, 18747, 18750, 18748, 18749];
const CLIENTS = 16;

const body = (c: number) =>
  JSON.stringify({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: Array.from({ length: 64 }, (_, i) => Math.sin(c * 64 + i)) }] });
const infer = async (port: number, c: number) => {
  const res = await fetch(`http://127.0.0.1:${port}/v2/models/mlp/infer`, { method: 'POST', body: body(c) });
  if (res.status !== 200) throw new Error(`${res.status} ${await res.text()}`);
  if ((await res.json()).outputs[0].data.length !== 10) throw new Error('not 10 probabilities');
};

async function main() {
  let events = 0;
  let posts = 0;
  let batchedEvents = 0;
  const collector = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      // (a CloudEvents batch is read for its events)
      const batch = req.headers['content-type'] === 'application/cloudevents-batch+json';
      const n = batch ? JSON.parse(Buffer.concat(chunks).toString()).length : 1;
      events += n;
      posts++;
      if (batch) batchedEvents += n;
      res.end();
    });
  });
  await new Promise<void>((resolve) => collector.listen(COLLECTOR, '127.0.0.1', resolve));
  const dir = mkdtempSync(join(tmpdir(), 'infergate-capture-bench-'));
  const start = (port: number, capture?: object) => serveConfig(port, { models: { mlp: SMALL_MLP }, ...(capture && { capture }) });
  const gateways = {
    [PLAIN]: await start(PLAIN),
    [SENDING]: await start(SENDING, { url: `http://127.0.0.1:${COLLECTOR}/events` }),
    [BATCHING]: await start(BATCHING, { url: `http://127.0.0.1:${COLLECTOR}/events`, batch_events: 100 }),
    [WRITING]: await start(WRITING, { dir }),
  };
  const variants = {
    'no capture': PLAIN,
    'every request sent (CloudEvents)': SENDING,
    'every request sent (CloudEvents batches, batch_events 100)': BATCHING,
    'every request written (JSON lines)': WRITING,
  };
  let runs: Record<string, GatewayRun[]>;
  try {
    const measured = Object.entries(variants).map(([name, port]) => [
      name,
      { pid: gateways[port].pid as number, load: (s: number) => clientsLoad(CLIENTS, s, (c) => infer(port, c)) },
    ]);
    runs = await gatewayRounds(Object.fromEntries(measured), rounds, durationS);
  } finally {
    await Promise.all(Object.values(gateways).map(stopServer));
    collector.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const names = Object.keys(variants);
  const results = {
    machine: machine(),
    scenario: `mlp on one [1,64] FP32 row (JSON), ${CLIENTS} clients (fetch), max_batch_size 32, wait_ms 0; captures of every request`,
    durationS,
    rounds,
    collectorEvents: events,
    collectorPosts: posts,
    batchedEvents,
    ...Object.fromEntries(names.map((name) => [name, medianRound(runs[name])])),
  };
  const row = (name: string) => {
    const r = medianRound(runs[name]);
    return `| ${name} | ${Math.round(r.requestsPerS)} (${r.runs.map(Math.round).join(', ')}) | ${r.p50Ms} | ${r.p99Ms} | ${r.gatewayUs} |`;
  };
  const md = `# Data capture's cost (CPU)

${results.machine.cpu}, ${results.machine.cores} cores, Node ${results.machine.node}. ${results.machine.date}

${results.scenario}; ${durationS} s per load, ${rounds} rounds interleaved, median shown (every round in brackets).
The clients and the collector run in the benchmark's process, on the same 2 cores as the gateways and their replicas.

| variant | answers/s | p50 ms | p99 ms | gateway CPU µs an answer |
|---|---|---|---|---|
${names.map(row).join('\n')}

- sent: \`capture.url\` — two CloudEvents a request (its body, its answer) POSTed to a collector that answers at once
  (${events} events received in all, in ${posts} POSTs).
- batches: \`batch_events: 100\` — the events waiting POSTed together as one \`application/cloudevents-batch+json\`
  array (${batchedEvents} of the events, ${(batchedEvents / Math.max(1, posts - (events - batchedEvents))).toFixed(1)} a POST on average).
- written: \`capture.dir\` — one SageMaker capture record a request appended to the hour's file.
- The gateway CPU column includes the capture's own work (copies, the events' requests, the file's writes).
`;
  writeResults('capture-cpu', results, md);
}

await main();
