/**
 * The replica's sampler alone: one draw for each of N rows of GPT-2's 50257 logits, under the sampling
 * settings clients send, side by side with a baseline sampler taken from git in the same run (default
 * dd6814b: a new probabilities array per call, an index function per token in the draw, the whole row sorted
 * for top_k / top_p, and a softmax over greedy rows too). Same logits, same seeds; rounds interleaved.
 * Writes bench/results/sampler-cpu.{json,md}.   npm run bench:sampler [-- --baseline REV --rows 16,64 --calls 20]
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { machine, ROOT } from './lib.js';

const flag = (name: string, fallback: string) => (process.argv.includes(`--${name}`) ? process.argv[process.argv.indexOf(`--${name}`) + 1] : fallback);
const baseline = flag('baseline', 'dd6814b');
const rowCounts = flag('rows', '16,64').split(',').map(Number);
const calls = Number(flag('calls', '20'));
const rounds = 3;
const VOCAB = 50257;

type Sampling = { temperature: number; topP: number; topK: number; seed: number };
const settings: Record<string, Partial<Sampling>> = {
  'temperature 1': {},
  'temperature 0.7, top_p 0.9': { temperature: 0.7, topP: 0.9 },
  'top_k 40': { topK: 40 },
  greedy: { temperature: 0 },
};

const BASELINE_FILE = join(ROOT, 'src/models/.sampling-bench-baseline.ts');
writeFileSync(BASELINE_FILE, execFileSync('git', ['show', `${baseline}:src/models/sampling.ts`], { cwd: ROOT, maxBuffer: 1 << 24 }));
try {
  type SamplerLike = { sample(logits: Float32Array, vocab: number, rows: object[]): Promise<{ tokens: number[] }> };
  const samplers: Record<string, SamplerLike> = {
    baseline: await (await import(BASELINE_FILE)).Sampler.create(),
    current: await (await import('../src/models/sampling.js')).Sampler.create(),
  };
  const { seededRandom } = await import('../src/models/sampling.js');
  // Logits shaped like a language model's: most tokens far below a few likely ones.
  const random = seededRandom(7);
  const logits = (n: number) => Float32Array.from({ length: n * VOCAB }, () => (random() < 0.002 ? 8 : 0) + random() * 6 - 3);

  const results: Record<string, number[]> = {};
  const same: Record<string, boolean> = {};
  for (let round = 0; round < rounds; round++)
    for (const n of rowCounts)
      for (const [name, s] of Object.entries(settings)) {
        const source = logits(n);
        const tokens: Record<string, string> = {};
        for (const [variant, sampler] of Object.entries(samplers)) {
          const times: number[] = [];
          const rows = Array.from({ length: n }, (_, i) => ({ sampling: { temperature: 1, topP: 1, topK: 0, seed: i, ...s }, random: seededRandom(i + 1) }));
          let drawn: number[] = [];
          for (let c = 0; c < calls; c++) {
            const batch = source.slice(); // the sampler adjusts rows in place
            const t = performance.now();
            drawn = (await sampler.sample(batch, VOCAB, rows)).tokens;
            times.push(performance.now() - t);
          }
          times.sort((a, b) => a - b);
          const key = `${n}|${name}|${variant}`;
          results[key] = [...(results[key] ?? []), times[Math.floor(times.length / 2)]];
          tokens[variant] = drawn.join(',');
        }
        same[`${n}|${name}`] = (same[`${n}|${name}`] ?? true) && tokens.baseline === tokens.current;
      }

  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const rows = rowCounts.flatMap((n) =>
    Object.keys(settings).map((name) => {
      const [b, c] = ['baseline', 'current'].map((v) => median(results[`${n}|${name}|${v}`]));
      return {
        rows: n,
        settings: name,
        baselineMs: Math.round(b * 100) / 100,
        currentMs: Math.round(c * 100) / 100,
        speedup: Math.round((b / c) * 100) / 100,
        sameTokens: same[`${n}|${name}`],
      };
    }),
  );
  const out = join(ROOT, 'bench/results');
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'sampler-cpu.json'), `${JSON.stringify({ machine: machine(), baseline, calls, rounds, rows }, null, 2)}\n`);
  const md = `# The sampler alone: one draw for each of N rows of GPT-2's ${VOCAB} logits

${machine().cpu}, ${machine().cores} cores. Baseline: the sampler at ${baseline}, run in the same process, interleaved
(median call of ${calls}, median of ${rounds} rounds). "same tokens": both drew the same token for every row (seeded);
a differing draw under top_p / top_k is float rounding at the cut (the sums are added in another order).
\`npm run bench:sampler\`.

| rows | settings | baseline ms | current ms | speed-up | same tokens |
|---:|---|---:|---:|---:|---|
${rows.map((r) => `| ${r.rows} | ${r.settings} | ${r.baselineMs} | ${r.currentMs} | ${r.speedup}× | ${r.sameTokens ? 'yes' : 'no'} |`).join('\n')}
`;
  writeFileSync(join(out, 'sampler-cpu.md'), md);
  console.log(md);
} finally {
  rmSync(BASELINE_FILE, { force: true });
}
