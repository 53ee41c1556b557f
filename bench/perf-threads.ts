/**
 * `infergate perf --threads`: what one thread of load clients can send, against a server that answers at once (a
 * KServe v2 model's metadata, then an empty 200 to every infer, in a process of its own), with 1 and 2 client
 * threads side by side in interleaved rounds, medians. Says where perf itself is the limit, not the gateway.
 * Writes bench/results/perf-threads-cpu.{json,md}.
 *   node --import tsx bench/perf-threads.ts [--seconds 4] [--rounds 3] [--concurrency 64]
 */
import { perf } from '../src/perf.js';
import { machine, startServer, stopServer, writeResults } from './lib.js';

const arg = (name: string) => Number(process.argv[process.argv.indexOf(name) + 1]) || undefined;
const seconds = arg('--seconds') ?? 4;
const rounds = arg('--rounds') ?? 3;
const concurrency = arg('--concurrency') ?? 64;
const PORT = 18093;

// (the server: node:http, one process, nothing but the answers perf needs)
const SERVER = `import { createServer } from 'node:http';
const meta = JSON.stringify({ name: 'm', platform: 'none', inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }], outputs: [] });
createServer((req, res) => {
  if (req.method === 'GET') return res.end(meta);
  req.resume();
  req.on('end', () => res.end());
}).listen(${PORT});`;

const server = await startServer(['--input-type=module', '-e', SERVER], `http://127.0.0.1:${PORT}/v2/models/m`);
const runs: Record<string, { requestsPerS: number; p50: number; p99: number }[]> = { '1': [], '2': [] };
try {
  for (let r = 0; r < rounds; r++)
    for (const threads of [1, 2]) {
      const { rows } = await perf({ url: `http://127.0.0.1:${PORT}`, model: 'm', concurrency: [concurrency], seconds, threads });
      const [row] = rows;
      if (Object.keys(row.errors).length > 0) throw new Error(`errors: ${JSON.stringify(row.errors)}`);
      runs[threads].push({ requestsPerS: row.requestsPerS, p50: row.latencyMs.p50, p99: row.latencyMs.p99 });
      console.error(`round ${r + 1}, ${threads} thread(s): ${row.requestsPerS} requests/s`);
    }
} finally {
  await stopServer(server);
}
const median = (list: { requestsPerS: number }[]) => [...list].sort((a, b) => a.requestsPerS - b.requestsPerS)[Math.floor(list.length / 2)];
const [one, two] = [median(runs['1']), median(runs['2'])] as { requestsPerS: number; p50: number; p99: number }[];
const results = {
  machine: machine(),
  seconds,
  rounds,
  concurrency,
  runs,
  median: { '1': one, '2': two },
  twoOverOne: Math.round((two.requestsPerS / one.requestsPerS) * 100) / 100,
};
const md = `# infergate perf: one client thread vs two (${machine().cores} cores, ${machine().cpu})

${concurrency} closed-loop clients against a server that answers at once (its own process, on the same cores), ${seconds} s a run,
${rounds} rounds interleaved, the median shown. ${machine().node}, ${machine().date}.

| client threads | requests/s | p50 ms | p99 ms | every round's requests/s |
|---|---|---|---|---|
| 1 | ${one.requestsPerS} | ${one.p50} | ${one.p99} | ${runs['1'].map((x) => x.requestsPerS).join(', ')} |
| 2 | ${two.requestsPerS} | ${two.p50} | ${two.p99} | ${runs['2'].map((x) => x.requestsPerS).join(', ')} |

Two threads over one: **${results.twoOverOne}×**. One thread of clients is the limit near a core's worth of requests
and answers; past it, a gateway's measured throughput is perf's, not the gateway's — give \`--threads\` the cores
the gateway does not use (here the server and the clients share 2 cores).
`;
writeResults('perf-threads-cpu', results, md);
