/**
 * The replica's decoder alone (no gateway), GPT-2 small on the CPU, side by side with a baseline decoder
 * taken from git in the same run: prefill of N joining sequences, then decode steps with all N advancing.
 * The baseline (default d719c82, before this change) gathered every sequence's KV cache into the step's
 * batch and prefilled joining sequences one at a time; the current decoder feeds a view of caches kept
 * in the step's layout and prefills them together. Each variant runs in its own process, interleaved.
 * Writes bench/results/decoder-cpu.{json,md}.
 *   npm run bench:decoder [-- --baseline REV --model gpt2-small.onnx --streams 16,64 --steps 64 --rounds 2]
 * Without --model it builds GPT-2 small with models/gpt.py (needs python3 with onnx) under /tmp.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { machine, medianBy, ROOT } from './lib.js';

const flag = (name: string, fallback: string) => (process.argv.includes(`--${name}`) ? process.argv[process.argv.indexOf(`--${name}`) + 1] : fallback);
const baseline = flag('baseline', 'd719c82');
const streams = flag('streams', '16,64').split(',').map(Number);
const steps = Number(flag('steps', '64'));
const rounds = Number(flag('rounds', '2'));
// The baseline decoder and the sampler it was written against, from git (the sampler's answer changed since).
const BASELINE_FILE = join(ROOT, 'src/models/.decoder-baseline.ts');
const BASELINE_SAMPLER = join(ROOT, 'src/models/.sampling-baseline.ts');

type Run = { variant: string; streams: number; prefillMs: number; stepMs: number; tokensPerS: number; firstTokens: string };

function model(): string {
  // Hugging Face's inputs only (no logits_to_keep): the baseline decoder predates that input.
  const given = process.argv.includes('--model') ? resolve(flag('model', '')) : '/tmp/infergate-gpt2-small-hf.onnx';
  if (!existsSync(given)) execFileSync('python3', [join(ROOT, 'models/gpt.py'), 'small', given, '--no-logits-to-keep'], { stdio: 'inherit' });
  return given;
}

/** One variant in a fresh process (the child half of this file). */
function measure(variant: 'baseline' | 'current', path: string, n: number): Run {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/decoder.ts'), '--child', variant, path, String(n), String(steps)], {
    cwd: ROOT,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (r.status !== 0) throw new Error(`${variant} at ${n} streams failed`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1) as string);
}

async function child(variant: string, path: string, n: number, steps: number) {
  const ort = await import('onnxruntime-node');
  const { generativeSpec } = await import('../src/models/generative.js');
  const { Sampler } = await import(variant === 'baseline' ? '../src/models/.sampling-baseline.ts' : '../src/models/sampling.js');
  const { readSignature } = await import('../src/models/signature.js');
  const { Decoder } = await import(variant === 'baseline' ? '../src/models/.decoder-baseline.ts' : '../src/models/decoder.ts');
  const session = await ort.InferenceSession.create(path, { intraOpNumThreads: 2, extra: { session: { intra_op: { allow_spinning: '0' } } } });
  const decoder = new Decoder(session, generativeSpec(await readSignature(path)), await Sampler.create());
  const greedy = { temperature: 0, topP: 1, topK: 0, seed: 1 };
  const ids = Array.from({ length: n }, (_, i) => `s${i}`);
  const join = ids.map((seq, i) => ({ seq, prompt: Array.from({ length: 12 + (i % 9) }, (_, k) => 100 + k + i), sampling: greedy }));
  const t0 = performance.now();
  const first = await decoder.step({ join, advance: [], release: [] });
  const prefillMs = performance.now() - t0;
  const times: number[] = [];
  for (let s = 0; s < steps; s++) {
    const t = performance.now();
    await decoder.step({ join: [], advance: ids, release: [] });
    times.push(performance.now() - t);
  }
  const stepMs = times.reduce((a, b) => a + b) / steps;
  const run: Run = {
    variant,
    streams: n,
    prefillMs: Math.round(prefillMs),
    stepMs: Math.round(stepMs * 10) / 10,
    tokensPerS: Math.round((n / stepMs) * 1000),
    firstTokens: ids
      .slice(0, 4)
      .map((id) => first.tokens[id])
      .join(','),
  };
  console.log(JSON.stringify(run));
}

async function main() {
  const path = model();
  const fromGit = (path: string) => execFileSync('git', ['show', `${baseline}:${path}`], { cwd: ROOT, encoding: 'utf8' });
  writeFileSync(BASELINE_FILE, fromGit('src/models/decoder.ts').replaceAll("'./sampling.js'", "'./.sampling-baseline.ts'"));
  writeFileSync(BASELINE_SAMPLER, fromGit('src/models/sampling.ts'));
  const runs: Run[] = [];
  try {
    for (let round = 0; round < rounds; round++) {
      for (const n of streams) {
        for (const variant of ['baseline', 'current'] as const) {
          const run = measure(variant, path, n);
          console.log(JSON.stringify(run));
          runs.push(run);
        }
      }
    }
  } finally {
    rmSync(BASELINE_FILE, { force: true });
    rmSync(BASELINE_SAMPLER, { force: true });
  }
  const rows = streams.flatMap((n) =>
    (['baseline', 'current'] as const).map((variant) => {
      const mine = runs.filter((r) => r.streams === n && r.variant === variant);
      return { ...medianBy(mine, (r) => r.tokensPerS), rounds: mine.map((r) => r.tokensPerS) };
    }),
  );
  const results = { machine: machine(), model: path.split('/').at(-1), baseline, steps, rounds, rows, runs };
  const out = join(ROOT, 'bench/results');
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'decoder-cpu.json'), `${JSON.stringify(results, null, 2)}\n`);
  const md = `## Decoder alone: GPT-2 small (random weights), CPU, ${steps} decode steps after prefilling N sequences (12–20 tokens)

Baseline: the decoder at ${baseline} (gathers every KV cache into each step's batch, prefills one sequence per run),
run in the same session, interleaved, each variant in its own process. Same first tokens = same results.

| streams | decoder | prefill all ms | ms per decode step | tokens/s | tokens/s per round | first tokens |
|---|---|---|---|---|---|---|
${rows.map((r) => `| ${r.streams} | ${r.variant} | ${r.prefillMs} | ${r.stepMs} | ${r.tokensPerS} | ${r.rounds.join(' / ')} | ${r.firstTokens} |`).join('\n')}
`;
  writeFileSync(join(out, 'decoder-cpu.md'), md);
  console.log(md);
}

if (process.argv[2] === '--child') await child(process.argv[3], process.argv[4], Number(process.argv[5]), Number(process.argv[6]));
else await main();
