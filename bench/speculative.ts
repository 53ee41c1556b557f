/**
 * Speculative decoding by prompt lookup vs a token a step, side by side in one run on one gateway: the same model
 * twice, one with `speculative`. Two kinds of text: greedy (this random model repeats itself: the drafts hold,
 * as in quoting or editing a document) and sampled at temperature 1 (little repeats: drafts mostly fail, their
 * cost shows). tokens/s, inter-token latency, tokens per step and the share of drafted tokens taken.
 * Writes bench/results/speculative-cpu.{json,md}.   npm run bench:speculative [-- --seconds 10]
 * For GPT-2 small: --model PATH --device cuda --streams 1,16,64 --name gpu-speculative --out DIR.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { machine, medianBy, ROOT, startGenerativeGateway, stopServer, streamingLoad, writeResults } from './lib.js';

const flag = (name: string, fallback: string) => (process.argv.includes(`--${name}`) ? process.argv[process.argv.indexOf(`--${name}`) + 1] : fallback);
const PORT = 18722;
const seconds = Number(flag('seconds', '10'));
const maxTokens = 64;
const concurrency = flag('streams', '1,8').split(',').map(Number);
const modelPath = resolve(flag('model', join(ROOT, 'examples/models/tiny-gpt.onnx')));
const device = flag('device', 'cpu');
const outName = flag('name', 'speculative-cpu');
const outDir = flag('out', join(ROOT, 'bench/results'));
const draftTokens = Number(flag('draft', '4'));
const rounds = Number(flag('rounds', '3'));

type Counts = { steps: number; tokens: number; draftTokens: number; acceptedDraftTokens: number };
const counts = async (model: string): Promise<Counts> => (await fetch(`http://127.0.0.1:${PORT}/v2/models/${model}/stats`)).json() as Promise<Counts>;

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'bench-speculative-'));
  const texts = [
    { name: 'greedy (repeats)', temperature: 0 },
    { name: 'sampled, temperature 1', temperature: 1 },
    // (each client sends its one request again and again: what suffix decoding drafts from another request's text)
    { name: 'a repeated request, sampled', temperature: 1, repeat: true },
  ];
  const names = ['plain', 'speculative', 'suffix'];
  const server = await startGenerativeGateway({
    port: PORT,
    dir,
    device,
    maxBatch: Math.max(32, ...concurrency),
    models: {
      plain: { path: modelPath },
      speculative: { path: modelPath, speculative: { num_speculative_tokens: draftTokens } },
      suffix: { path: modelPath, speculative: { method: 'suffix', num_speculative_tokens: 2 * draftTokens } },
    },
  });
  const rows: {
    clients: number;
    text: string;
    model: string;
    result: Awaited<ReturnType<typeof streamingLoad>>;
    tokensPerStep: number;
    drafted: number;
    taken: number;
    rounds?: number[];
  }[] = [];
  try {
    // Interleaved rounds (this machine's speed drifts by tens of percent over a minute): the median round of each.
    for (const clients of concurrency)
      for (const text of texts) {
        const runs: Record<string, (typeof rows)[number][]> = { plain: [], speculative: [], suffix: [] };
        for (let round = 0; round < rounds; round++)
          for (const name of [...names.slice(round % 3), ...names.slice(0, round % 3)]) {
            const before = await counts(name);
            const load = { url: `http://127.0.0.1:${PORT}`, model: name, clients, seconds, maxTokens, temperature: text.temperature, repeat: text.repeat };
            const result = await streamingLoad(load);
            const after = await counts(name);
            const steps = after.steps - before.steps;
            const drafted = after.draftTokens - before.draftTokens;
            runs[name].push({
              clients,
              text: text.name,
              model: name,
              result,
              // sequences' tokens per step (steps carry several sequences)
              tokensPerStep: Math.round(((after.tokens - before.tokens) / Math.max(1, steps)) * 100) / 100,
              drafted,
              taken: drafted > 0 ? Math.round(((after.acceptedDraftTokens - before.acceptedDraftTokens) / drafted) * 100) : 0,
            });
          }
        for (const name of names) {
          const row = medianBy(runs[name], (r) => r.result.tokensPerS);
          console.log(clients, text.name, name, runs[name].map((r) => r.result.tokensPerS).join(' / '));
          rows.push({ ...row, rounds: runs[name].map((r) => r.result.tokensPerS) });
        }
      }
  } finally {
    await stopServer(server);
    rmSync(dir, { recursive: true, force: true });
  }
  const described = `${basename(modelPath, '.onnx')} on ${device}${device === 'cpu' ? ', 1 ONNX Runtime thread' : ''}`;
  const results = { machine: machine(), model: described, seconds, maxTokens, draftTokens, rows };
  const md = `# Speculative decoding by prompt lookup (${device}, ${basename(modelPath, '.onnx')})

${results.machine.cpu}, ${results.machine.cores} cores, Node ${results.machine.node}. ${results.machine.date}

${results.model}. Each client streams completions of ${maxTokens} tokens back to back for ${seconds} s a round, ${rounds} rounds
interleaved, the median round shown (tokens/s of every round in the last column); "speculative" is the same
model with \`speculative: { num_speculative_tokens: ${draftTokens} }\` (drafts from the sequence's own text, checked in one run);
"suffix" with \`speculative: { method: suffix, num_speculative_tokens: ${2 * draftTokens} }\` (also from earlier requests' texts).
In "a repeated request" every client sends its own one request (prompt and seed) again and again.
"tokens / step" is the tokens the model generated over its steps (steps carry several sequences: with ${concurrency.join(' / ')}
streams it is about that many without drafts); "taken" the share of drafted tokens the steps kept.

| streams | text | decoding | tokens/s | TTFT p50 ms | inter-token p50 ms | inter-token p99 ms | tokens / step | taken | rounds |
|---|---|---|---|---|---|---|---|---|---|
${rows.map((r) => `| ${r.clients} | ${r.text} | ${r.model} | ${r.result.tokensPerS} | ${r.result.ttftMs.p50} | ${r.result.interTokenMs.p50} | ${r.result.interTokenMs.p99} | ${r.tokensPerStep} | ${r.model === 'plain' ? '' : `${r.taken}% of ${r.drafted}`} | ${r.rounds?.join(' / ')} |`).join('\n')}
`;
  writeResults(outName, results, md, outDir);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
