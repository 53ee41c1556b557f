/**
 * LoRA adapters on CPU with tiny-gpt: tokens/s, time to first token and inter-token latency of streams with
 * no adapter, all with one adapter, and spread over 8 adapters (every step mixing them), side by side in one run
 * on one gateway, beside the same weights built without LoRA inputs (what the adapters' inputs cost).
 * Writes bench/results/lora-cpu.{json,md}.   npm run bench:lora [-- --seconds 10]
 * The GPU script passes GPT-2 small (--model, built with --lora; --plain, without), --adapters (a folder of
 * adapters for it: models/lora.py --small 8 DIR), --device cuda, --streams 1,16,64, --name gpu-lora, --out.
 */
import { cpSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { machine, ROOT, startGenerativeGateway, stopServer, streamingLoad, writeResults } from './lib.js';

const flag = (name: string, fallback: string) => (process.argv.includes(`--${name}`) ? process.argv[process.argv.indexOf(`--${name}`) + 1] : fallback);
const PORT = 18712;
const seconds = Number(flag('seconds', '10'));
const maxTokens = 64;
const concurrency = flag('streams', '1,16').split(',').map(Number);
const loraModel = resolve(flag('model', join(ROOT, 'examples/models/tiny-gpt-lora.onnx')));
const plainModel = resolve(flag('plain', join(ROOT, 'examples/models/tiny-gpt.onnx')));
const adaptersDir = process.argv.includes('--adapters') ? resolve(flag('adapters', '')) : undefined;
const device = flag('device', 'cpu');
const outName = flag('name', 'lora-cpu');
const outDir = flag('out', join(ROOT, 'bench/results'));
const ADAPTERS = 8;

async function main() {
  // Eight adapters: those of --adapters, or copies of the demo's two (rank 4 and 8), each read and fed as its own.
  const dir = mkdtempSync(join(tmpdir(), 'bench-lora-'));
  const adapters: Record<string, string> = {};
  const given = adaptersDir ? readdirSync(adaptersDir).sort().slice(0, ADAPTERS) : [];
  for (let i = 0; i < ADAPTERS; i++) {
    adapters[`a${i}`] = adaptersDir ? join(adaptersDir, given[i % given.length]) : join(dir, `a${i}`);
    if (!adaptersDir) cpSync(join(ROOT, 'examples/adapters', i % 2 ? 'pirate' : 'sonnets'), adapters[`a${i}`], { recursive: true });
  }
  const variants: { name: string; model: string; names?: string[] }[] = [
    { name: `no LoRA inputs (${basename(plainModel)})`, model: 'plain' },
    { name: 'LoRA model, no adapter', model: 'lora' },
    { name: 'one adapter', model: 'lora', names: ['a0'] },
    { name: `${ADAPTERS} adapters mixed`, model: 'lora', names: Object.keys(adapters) },
  ];
  const server = await startGenerativeGateway({
    port: PORT,
    dir,
    device,
    maxBatch: Math.max(32, ...concurrency),
    models: { plain: { path: plainModel }, lora: { path: loraModel, lora_adapters: adapters } },
  });
  const rows: { clients: number; variant: string; result: Awaited<ReturnType<typeof streamingLoad>> }[] = [];
  try {
    for (const clients of concurrency)
      for (const v of variants) {
        const result = await streamingLoad({ url: `http://127.0.0.1:${PORT}`, model: v.model, names: v.names, clients, seconds, maxTokens });
        console.log(clients, v.name, JSON.stringify(result));
        rows.push({ clients, variant: v.name, result });
      }
  } finally {
    await stopServer(server);
    rmSync(dir, { recursive: true, force: true });
  }
  const described = `${basename(loraModel, '.onnx')} on ${device}${device === 'cpu' ? ', 1 ONNX Runtime thread' : ''}`;
  const results = { machine: machine(), model: described, seconds, maxTokens, adapters: ADAPTERS, rows };
  const md = `# LoRA adapters (${device}, ${basename(loraModel, '.onnx')})

${results.machine.cpu}, ${results.machine.cores} cores, Node ${results.machine.node}. ${results.machine.date}

${results.model}, \`max_batch_size: ${Math.max(32, ...concurrency)}\`. Each client streams completions of ${maxTokens} tokens back to back for ${seconds} s.
"no LoRA inputs" is the model built without them (the same weights); the others are the LoRA-capable graph with no
adapter (slot 0 for every row), every client with the same adapter, and client i with adapter i % ${ADAPTERS}
(two ranks, ${adaptersDir ? '8 and 16' : '4 and 8'}: every step stacks and gathers several adapters, padded to the larger).

| streams | adapters | tokens/s | TTFT p50 ms | TTFT p99 ms | inter-token p50 ms | inter-token p99 ms | streams done | step s |
|---|---|---|---|---|---|---|---|---|
${rows.map((r) => `| ${r.clients} | ${r.variant} | ${r.result.tokensPerS} | ${r.result.ttftMs.p50} | ${r.result.ttftMs.p99} | ${r.result.interTokenMs.p50} | ${r.result.interTokenMs.p99} | ${r.result.streams} | ${r.result.stepS} |`).join('\n')}
`;
  writeResults(outName, results, md, outDir);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
