/**
 * /v1/embeddings on CPU: embeddings/s and latency with concurrent single-text clients, the dynamic batcher
 * (max_batch_size 32; texts of one power-of-two length bucket padded together) vs one text per run (max_batch_size 1),
 * side by side in one run on one gateway. Texts are a mix of short queries (8-24 tokens, 80%) and passages
 * (128-256 tokens, 20%). The encoder has all-MiniLM-L6-v2's dimensions (random weights, models/gpt.py mini
 * --encoder, built into bench/.models/ on first use).
 * Writes bench/results/embeddings-cpu.{json,md}.   npm run bench:embeddings [-- --seconds 10 --clients 1,32 --max-batch 32]
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { encode } from 'gpt-tokenizer/encoding/gpt2';
import { stringify } from 'yaml';
import { machine, ROOT, startServer, stopServer } from './lib.js';

const flag = (name: string, fallback: string) => (process.argv.includes(`--${name}`) ? process.argv[process.argv.indexOf(`--${name}`) + 1] : fallback);
const PORT = 18705;
const seconds = Number(flag('seconds', '10'));
const clients = flag('clients', '1,32').split(',').map(Number);
const device = flag('device', 'cpu');
const outName = flag('name', 'embeddings-cpu');
const outDir = resolve(flag('out', join(ROOT, 'bench/results')));
const modelPath = resolve(flag('model', join(ROOT, 'bench/.models/mini-embed.onnx')));
const maxBatch = Number(flag('max-batch', '32'));
const variants: Record<string, object> = {
  batched: { max_batch_size: maxBatch, wait_ms: 2 },
  // What batching did before length buckets: any lengths together, each padded to the batch's longest.
  'batched-any-length': {
    max_batch_size: maxBatch,
    wait_ms: 2,
    pad: { input_ids: { axes: [1], buckets: false }, attention_mask: { axes: [1], buckets: false } },
  },
  unbatched: { max_batch_size: 1 },
};

if (!existsSync(modelPath)) {
  mkdirSync(join(modelPath, '..'), { recursive: true });
  // Debian's python3-onnx is /usr/bin/python3's; a python3 earlier on PATH (pyenv) may lack it. $PYTHON overrides.
  const python = process.env.PYTHON ?? (existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3');
  execFileSync(python, [join(ROOT, 'models/gpt.py'), 'mini', modelPath, '--encoder'], { stdio: 'inherit' });
}

// Words of varied token counts; a text is a seeded run of them up to a target length in tokens.
const WORDS = 'the quick brown fox jumps over a lazy dog while seven wizards quietly examine forty-two luminous jellyfish near Reykjavík'.split(' ');
let seed = 7;
const next = (n: number) => {
  seed = (seed * 1103515245 + 12345) % 2 ** 31;
  return seed % n;
};
const text = (tokens: number) => {
  const words: string[] = [];
  while (encode(words.join(' ')).length < tokens) words.push(WORDS[next(WORDS.length)]);
  return words.join(' ');
};
const texts = Array.from({ length: 200 }, (_, i) => (i % 5 === 4 ? text(128 + next(129)) : text(8 + next(17))));
const meanTokens = Math.round(texts.reduce((n, t) => n + encode(t).length, 0) / texts.length);

type Stat = { inference_count: number; execution_count: number };
const stat = async (model: string): Promise<Stat> =>
  ((await (await fetch(`http://127.0.0.1:${PORT}/v2/models/${model}/stats`)).json()) as { model_stats: Stat[] }).model_stats[0];

async function load(model: string, connections: number) {
  const before = await stat(model);
  const plan = { url: `http://127.0.0.1:${PORT}`, model, connections, seconds, texts };
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/embed-load.ts'), JSON.stringify(plan)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  await new Promise((r) => child.once('exit', r));
  const r = JSON.parse(out) as { requests: number; non2xx: number; errors: number; latency: { p50: number; p99: number }; elapsedS: number };
  const after = await stat(model);
  const batches = after.execution_count - before.execution_count;
  return {
    embeddingsPerS: Math.round(r.requests / r.elapsedS),
    latencyMs: { p50: r.latency.p50, p99: r.latency.p99 },
    meanBatch: batches > 0 ? Math.round(((after.inference_count - before.inference_count) / batches) * 10) / 10 : 0,
    failed: r.non2xx + r.errors,
  };
}

async function main() {
  const config = join(ROOT, 'bench/.embeddings.yaml');
  const model = (batching: object) => ({
    path: modelPath,
    device,
    threads: device === 'cpu' ? 2 : 0,
    batching: { ...batching, max_queue_size: 1024 },
    scaling: { min_containers: 1, max_containers: 1 },
  });
  writeFileSync(
    config,
    stringify({ server: { port: PORT, host: '127.0.0.1' }, models: Object.fromEntries(Object.entries(variants).map(([name, b]) => [name, model(b)])) }),
  );
  const server = await startServer(['src/cli.ts', 'serve', '-c', config, '--log-level', 'warn'], `http://127.0.0.1:${PORT}/v2/health/ready`);
  const rows: { clients: number; variant: string; result: Awaited<ReturnType<typeof load>> }[] = [];
  try {
    for (const n of clients)
      for (const variant of Object.keys(variants)) {
        const result = await load(variant, n);
        console.log(n, variant, JSON.stringify(result));
        rows.push({ clients: n, variant, result });
      }
  } finally {
    await stopServer(server);
  }
  const name = basename(modelPath, '.onnx');
  const results = { machine: machine(), model: name, device, seconds, meanTokens, variants, rows };
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, `${outName}.json`), `${JSON.stringify(results, null, 2)}\n`);
  const m = results.machine;
  const md = `# Embeddings (${device}, ${name})

${m.cpu}, ${m.cores} cores, Node ${m.node}. ${m.date}

${name} on ${device}${device === 'cpu' ? ' (2 ONNX Runtime threads)' : ''}. Each client POSTs one text at a time to \`/v1/embeddings\` for ${seconds} s;
texts are 80% queries of 8-24 tokens and 20% passages of 128-256 (mean ${meanTokens} tokens). batched: \`max_batch_size: ${maxBatch}, wait_ms: 2\`
(texts within one power-of-two length bucket share a batch, zero-padded to the longest and masked); batched-any-length: the same
with \`buckets: false\` (any lengths together, as before length buckets); unbatched: \`max_batch_size: 1\`.
"mean batch" is texts per model run (Triton's inference_count / execution_count).

| clients | batching | embeddings/s | p50 ms | p99 ms | mean batch | failed |
|---|---|---|---|---|---|---|
${rows.map((r) => `| ${r.clients} | ${r.variant} | ${r.result.embeddingsPerS} | ${r.result.latencyMs.p50} | ${r.result.latencyMs.p99} | ${r.result.meanBatch} | ${r.result.failed} |`).join('\n')}
`;
  writeFileSync(join(outDir, `${outName}.md`), md);
  console.log(md);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
