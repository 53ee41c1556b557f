/**
 * Streaming on CPU with tiny-gpt: aggregate tokens/s, time to first token and inter-token latency
 * (p50/p99) at 1, 8 and 32 concurrent streams, continuous batching (max_batch_size 32) vs one
 * sequence at a time (max_batch_size 1), side by side in one run on one gateway.
 * Writes bench/results/streaming-cpu.{json,md}.   npm run bench:streaming [-- --seconds 10]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { generativeSpec } from '../src/models/generative.js';
import { readSignature } from '../src/models/signature.js';
import { machine, ROOT, startServer, stopServer, streamingLoad } from './lib.js';

// Defaults are the CPU run; the GPU script passes --model (GPT-2 small), --device cuda, --streams 1,16,64.
const flag = (name: string, fallback: string) => (process.argv.includes(`--${name}`) ? process.argv[process.argv.indexOf(`--${name}`) + 1] : fallback);
const PORT = 18702;
const seconds = Number(flag('seconds', '10'));
const maxTokens = Number(flag('max-tokens', '64'));
const concurrency = flag('streams', '1,8,32').split(',').map(Number);
const modelPath = resolve(flag('model', join(ROOT, 'examples/models/tiny-gpt.onnx')));
const device = flag('device', 'cpu');
const outName = flag('name', 'streaming-cpu');
const outDir = flag('out', join(ROOT, 'bench/results'));
const variants = { continuous: Math.max(...concurrency), sequential: 1 };

const load = (model: string, clients: number) => streamingLoad({ url: `http://127.0.0.1:${PORT}`, model, clients, seconds, maxTokens });

async function main() {
  const config = join(ROOT, 'bench/.streaming.yaml');
  const model = (batch: number) => ({
    path: modelPath,
    device,
    threads: device === 'cpu' ? 1 : 0,
    batching: { max_batch_size: batch, max_queue_size: 256, timeout_ms: 120_000 },
    scaling: { min_containers: 1, max_containers: 1 },
  });
  writeFileSync(
    config,
    stringify({ server: { port: PORT, host: '127.0.0.1' }, models: Object.fromEntries(Object.entries(variants).map(([name, batch]) => [name, model(batch)])) }),
  );
  const server = await startServer(['src/cli.ts', 'serve', '-c', config, '--log-level', 'warn'], `http://127.0.0.1:${PORT}/v2/health/ready`);
  const rows: { clients: number; variant: string; result: Awaited<ReturnType<typeof load>> }[] = [];
  try {
    for (const clients of concurrency) {
      for (const variant of Object.keys(variants)) {
        const result = await load(variant, clients);
        console.log(clients, variant, JSON.stringify(result));
        rows.push({ clients, variant, result });
      }
    }
  } finally {
    await stopServer(server);
  }
  const spec = generativeSpec(await readSignature(modelPath));
  const name = basename(modelPath, '.onnx');
  const shape = spec ? `${spec.layers} layers, ${spec.heads * spec.headDim} wide, ${spec.vocab}-token vocabulary` : 'not generative';
  const described = `${name} (${shape}) on ${device}${device === 'cpu' ? ', 1 ONNX Runtime thread' : ''}`;
  const results = { machine: machine(), model: described, device, seconds, maxTokens, rows };
  const dir = outDir;
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${outName}.json`), `${JSON.stringify(results, null, 2)}\n`);
  const md = `# Streaming (${device}, ${name})

${results.machine.cpu}, ${results.machine.cores} cores, Node ${results.machine.node}. ${results.machine.date}

${results.model}. Each client streams completions of ${maxTokens} tokens back to back (SSE, \`stream_options.include_usage\`) for ${seconds} s;
continuous batching is \`max_batch_size: ${variants.continuous}\` (all streams advance in one step), sequential is \`max_batch_size: 1\` (one stream at a time, the rest queue).

"step s" is the replica's time in steps during the run; "sampling" the share of it spent drawing tokens (logit adjustments,
softmax, the draw: CPU work serial with the model's runs) rather than in the model.

| streams | batching | tokens/s | TTFT p50 ms | TTFT p99 ms | inter-token p50 ms | inter-token p99 ms | streams done | step s | sampling |
|---|---|---|---|---|---|---|---|---|---|
${rows.map((r) => `| ${r.clients} | ${r.variant} | ${r.result.tokensPerS} | ${r.result.ttftMs.p50} | ${r.result.ttftMs.p99} | ${r.result.interTokenMs.p50} | ${r.result.interTokenMs.p99} | ${r.result.streams} | ${r.result.stepS} | ${r.result.samplingShare}% |`).join('\n')}
`;
  writeFileSync(join(dir, `${outName}.md`), md);
  console.log(md);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
