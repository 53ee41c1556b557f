/**
 * Callers taking turns: one caller's backlog against another caller's single requests. A bulk caller keeps 64
 * requests in flight while an interactive caller sends one at a time; the interactive caller's latency with
 * `fair_share` on (callers take turns in the queue) vs off (arrival order), side by side in one run on one
 * gateway, and alone (no bulk load) as the floor. cnn-bench.onnx ([N,3,32,32], ~4 ms a batch of 32 on one core),
 * max_batch_size 8, KServe binary requests, each caller its own key and its own autocannon process.
 * Writes bench/results/fairness-cpu.{json,md}.   npm run bench:fairness [-- --seconds 8 --rounds 3]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { autocannon, binaryRequest, type LoadResult, machine, medianBy, ROOT, startServer, stopServer } from './lib.js';

const flag = (name: string, fallback: string) => (process.argv.includes(`--${name}`) ? process.argv[process.argv.indexOf(`--${name}`) + 1] : fallback);
const PORT = 18707;
const seconds = Number(flag('seconds', '8'));
const rounds = Number(flag('rounds', '3'));
const outDir = resolve(flag('out', join(ROOT, 'bench/results')));
const SECRET = 'a-long-enough-shared-secret-for-the-bench';
const key = (id: string) => ({ 'infergate-key': id, 'infergate-secret': SECRET });

async function main() {
  const config = join(ROOT, 'bench/.fairness.yaml');
  const model = (fair: boolean) => ({
    path: join(ROOT, 'examples/models/cnn-bench.onnx'),
    device: 'cpu',
    threads: 1,
    batching: { max_batch_size: 8, wait_ms: 2, max_queue_size: 4096, fair_share: fair },
    scaling: { min_containers: 1, max_containers: 1 },
  });
  writeFileSync(
    config,
    stringify({
      server: { port: PORT, host: '127.0.0.1' },
      auth: {
        default: 'key',
        keys: [
          { id: 'bulk', secret: SECRET },
          { id: 'interactive', secret: SECRET },
        ],
      },
      models: { fair: model(true), fifo: model(false) },
    }),
  );
  const body = binaryRequest('x', [1, 3, 32, 32]);
  const server = await startServer(['src/cli.ts', 'serve', '-c', config, '--log-level', 'warn'], `http://127.0.0.1:${PORT}/v2/health/ready`);
  type Row = { variant: string; interactive: LoadResult; bulk?: LoadResult };
  const runs: Row[][] = [];
  try {
    const url = (m: string) => `http://127.0.0.1:${PORT}/v2/models/${m}/infer`;
    const interactive = (m: string) => autocannon({ connections: 1, durationS: seconds, url: url(m), ...body, headers: key('interactive') });
    for (let r = 0; r < rounds; r++) {
      const round: Row[] = [{ variant: 'alone', interactive: await interactive('fair') }];
      for (const variant of ['fair', 'fifo']) {
        const [bulk, alongside] = await Promise.all([
          autocannon({ connections: 64, durationS: seconds, url: url(variant), ...body, headers: key('bulk') }),
          interactive(variant),
        ]);
        round.push({ variant, interactive: alongside, bulk });
      }
      for (const row of round) console.log(r, row.variant, JSON.stringify({ interactive: row.interactive, bulk: row.bulk?.requestsPerS }));
      runs.push(round);
    }
  } finally {
    await stopServer(server);
  }
  // Per variant, the round with the median interactive p50.
  const rows = ['alone', 'fair', 'fifo'].map((v) =>
    medianBy(
      runs.map((round) => round.find((row) => row.variant === v) as Row),
      (row) => row.interactive.p50Ms,
    ),
  );
  const results = { machine: machine(), model: 'cnn-bench', seconds, rounds, rows, runs };
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'fairness-cpu.json'), `${JSON.stringify(results, null, 2)}\n`);
  const m = results.machine;
  const label = {
    alone: 'interactive alone (floor)',
    fair: 'beside the bulk caller, fair_share: true',
    fifo: 'beside the bulk caller, fair_share: false',
  } as Record<string, string>;
  const md = `# Callers taking turns (cpu, cnn-bench)

${m.cpu}, ${m.cores} cores, Node ${m.node}. ${m.date}

One replica of \`cnn-bench.onnx\` (1 ONNX Runtime thread, \`max_batch_size: 8, wait_ms: 2\`). A bulk caller (its own key) keeps
64 requests in flight while an interactive caller (another key) sends one request at a time, each from its own autocannon
process, for ${seconds} s; ${rounds} rounds interleaved, the round with the median interactive p50 shown (every round is in the JSON).
With \`fair_share: true\` callers take turns in the queue; with \`false\` requests go in arrival order.

| case | interactive p50 ms | interactive p99 ms | interactive req/s | bulk req/s |
|---|---|---|---|---|
${rows.map((r) => `| ${label[r.variant]} | ${r.interactive.p50Ms} | ${r.interactive.p99Ms} | ${Math.round(r.interactive.requestsPerS)} | ${r.bulk ? Math.round(r.bulk.requestsPerS) : '—'} |`).join('\n')}
`;
  writeFileSync(join(outDir, 'fairness-cpu.md'), md);
  console.log(md);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
