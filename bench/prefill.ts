/**
 * Prefill with only the last position's logits (`logits_to_keep`, prompts left-padded) vs every position's
 * (the Hugging Face layout, right-padded, runs capped at ~16 MB of logits) — the same model and session,
 * the decoder told one way or the other, rounds interleaved. tiny-gpt, and GPT-2 small (built with
 * models/gpt.py under /tmp unless --small PATH is given; --no-small skips it).
 * Writes bench/results/prefill-cpu.{json,md}.   npm run bench:prefill [-- --rounds 3 --joins 1,16,64]
 * On a GPU (bench/gpu/run.sh): --device cuda --small MODEL --no-tiny --out DIR --name gpu-prefill.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type * as ort from 'onnxruntime-node';
import { Decoder } from '../src/models/decoder.js';
import { type GenerativeSpec, generativeSpec } from '../src/models/generative.js';
import { PrefixCache } from '../src/models/prefix-cache.js';
import { Sampler } from '../src/models/sampling.js';
import { type DeviceSpec, openSession } from '../src/models/session.js';
import { readSignature } from '../src/models/signature.js';
import { machine, ROOT } from './lib.js';

const flag = (name: string, fallback: string) => (process.argv.includes(`--${name}`) ? process.argv[process.argv.indexOf(`--${name}`) + 1] : fallback);
const rounds = Number(flag('rounds', '3'));
const device = flag('device', 'cpu');
const outDir = resolve(flag('out', join(ROOT, 'bench/results')));
const outName = flag('name', 'prefill-cpu');
const joinCounts = flag('joins', '1,16,64').split(',').map(Number);
const greedy = { temperature: 0, topP: 1, topK: 0, seed: 1 };

function models(): string[] {
  const tiny = process.argv.includes('--no-tiny') ? [] : [join(ROOT, 'examples/models/tiny-gpt.onnx')];
  if (process.argv.includes('--no-small')) return tiny;
  const small = flag('small', '/tmp/infergate-gpt2-small-keep.onnx');
  if (!existsSync(small)) execFileSync('python3', [join(ROOT, 'models/gpt.py'), 'small', small], { stdio: 'inherit' });
  return [...tiny, small];
}

/** Prefills `n` joining prompts of 12-20 tokens in one step: milliseconds and the first tokens drawn. */
async function prefill(session: ort.InferenceSession, spec: GenerativeSpec, sampler: Sampler, n: number) {
  const decoder = new Decoder(session, spec, sampler);
  const join = Array.from({ length: n }, (_, i) => ({ seq: `s${i}`, prompt: Array.from({ length: 12 + (i % 9) }, (_, k) => 100 + k + i), sampling: greedy }));
  const t = performance.now();
  const r = await decoder.step({ join, advance: [], release: [] });
  return { ms: performance.now() - t, first: join.map((j) => r.tokens[j.seq]).join(',') };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rows: { model: string; joins: number; allMs: number; lastMs: number; speedup: number; sameTokens: boolean; allRounds: number[]; lastRounds: number[] }[] =
  [];
const prefixRows: { model: string; wholeMs: number; cachedMs: number; rounds: { whole: number[]; cached: number[] } }[] = [];
const chunkRows: { model: string; chunk: number; worstStepMs: number; medianStepMs: number; firstTokenMs: number; promptTokens: number }[] = [];
const sampler = await Sampler.create();

/**
 * 8 sequences decoding when a long prompt (3/4 of the context) joins: the longest step they wait for a
 * token (the stall) and the long prompt's time to its first token, with the prompt computed whole and in
 * chunks of 128 and 256 tokens.
 */
async function chunked(session: ort.InferenceSession, spec: GenerativeSpec, model: string) {
  const rows: typeof chunkRows = [];
  const promptTokens = Math.floor(((spec.context ?? 1024) * 3) / 4);
  for (const chunk of [0, 128, 256]) {
    const decoder = new Decoder(session, spec, sampler, undefined, chunk);
    const ids = Array.from({ length: 8 }, (_, i) => `d${i}`);
    await decoder.step({ join: ids.map((seq, i) => ({ seq, prompt: [100 + i, 200 + i], sampling: greedy })), advance: [], release: [] });
    for (let i = 0; i < 3; i++) await decoder.step({ join: [], advance: ids, release: [] });
    const long = Array.from({ length: promptTokens }, (_, k) => 1000 + (k % 5000));
    const stepMs: number[] = [];
    const t0 = performance.now();
    let firstTokenMs = 0;
    // Until 4 steps after the long prompt's first token: the padding it brings costs every step from then on.
    for (let s = 0, after = 0; after < 4; s++) {
      const t = performance.now();
      const r = await decoder.step({
        join: s === 0 ? [{ seq: 'long', prompt: long, sampling: greedy }] : [],
        advance: s === 0 ? ids : [...ids, 'long'],
        release: [],
      });
      stepMs.push(performance.now() - t);
      if (firstTokenMs > 0) after++;
      else if (r.tokens.long !== undefined) firstTokenMs = performance.now() - t0;
    }
    rows.push({
      model,
      chunk,
      worstStepMs: Math.round(Math.max(...stepMs)),
      medianStepMs: Math.round(median(stepMs)),
      firstTokenMs: Math.round(firstTokenMs),
      promptTokens,
    });
    console.log(JSON.stringify(rows.at(-1)));
  }
  return rows;
}
for (const path of models()) {
  const { session, provider } = await openSession(path, device as DeviceSpec, device === 'cpu' ? 2 : 0);
  if (device !== 'cpu' && provider === 'cpu') throw new Error(`asked for ${device}, got the CPU`);
  const spec = generativeSpec(await readSignature(path)) as GenerativeSpec;
  if (!spec.logitsToKeep) throw new Error(`${path} has no logits_to_keep input: build it with models/gpt.py`);
  await prefill(session, spec, sampler, 4); // warm-up
  for (const n of joinCounts) {
    const times = { all: [] as number[], last: [] as number[] };
    const firsts = new Set<string>();
    for (let r = 0; r < rounds; r++) {
      for (const variant of ['all', 'last'] as const) {
        const { ms, first } = await prefill(session, { ...spec, logitsToKeep: variant === 'last' }, sampler, n);
        times[variant].push(Math.round(ms));
        firsts.add(first);
      }
    }
    const row = {
      model: path.split('/').at(-1) as string,
      joins: n,
      allMs: median(times.all),
      lastMs: median(times.last),
      allRounds: times.all,
      lastRounds: times.last,
    };
    rows.push({ ...row, speedup: Math.round((row.allMs / row.lastMs) * 100) / 100, sameTokens: firsts.size === 1 });
    console.log(JSON.stringify(rows.at(-1)));
  }
  // A long shared prefix (a system prompt of 192 tokens) and a short question of its own: computed whole,
  // vs after the prefix cache has seen another question with the same system prompt.
  const system = Array.from({ length: 192 }, (_, k) => 300 + k);
  const ask = (q: number) => [...system, 5000 + q, 5001 + q, 5002 + q, 5003 + q, 5004 + q];
  const times = { whole: [] as number[], cached: [] as number[] };
  for (let r = 0; r < rounds; r++) {
    for (const variant of ['whole', 'cached'] as const) {
      const cache = variant === 'cached' ? new PrefixCache(256 * 2 ** 20, spec) : undefined;
      const decoder = new Decoder(session, spec, sampler, cache);
      await decoder.step({ join: [{ seq: 'seen', prompt: ask(100), sampling: greedy }], advance: [], release: ['seen'] });
      const t = performance.now();
      await decoder.step({ join: [{ seq: 'asked', prompt: ask(r), sampling: greedy }], advance: [], release: [] });
      times[variant].push(Math.round(performance.now() - t));
    }
  }
  chunkRows.push(...(await chunked(session, spec, path.split('/').at(-1) as string)));
  prefixRows.push({ model: path.split('/').at(-1) as string, wholeMs: median(times.whole), cachedMs: median(times.cached), rounds: times });
  console.log(JSON.stringify(prefixRows.at(-1)));
  await session.release();
}

const out = outDir;
mkdirSync(out, { recursive: true });
writeFileSync(join(out, `${outName}.json`), `${JSON.stringify({ machine: machine(), rounds, rows, prefixRows, chunkRows }, null, 2)}\n`);
const md = `## Prefill: last position's logits (\`logits_to_keep\`) vs every position's, ${device}

${machine().cpu}, ${machine().cores} cores, device ${device}. One step prefilling N joining prompts of 12-20 tokens; the same model and
session, the decoder told to keep every position's logits (baseline: the Hugging Face layout, right-padded,
runs capped at ~16 MB of logits) or only the last (left-padded, runs of up to 512 positions). Median of ${rounds}
interleaved rounds (on the CPU, 2 ONNX Runtime threads). Same tokens: both drew the same first token for every prompt.

| model | prompts | every position ms | last position ms | speed-up | rounds (every / last) | same tokens |
|---|---|---|---|---|---|---|
${rows.map((r) => `| ${r.model} | ${r.joins} | ${r.allMs} | ${r.lastMs} | ${r.speedup}× | ${r.allRounds.join(' ')} / ${r.lastRounds.join(' ')} | ${r.sameTokens ? 'yes' : 'NO'} |`).join('\n')}

### Prefix cache: a 197-token prompt whose first 192 tokens (a system prompt) another prompt had

Computed whole (no prefix cache) vs after the prefix cache kept the other prompt (the first 192 tokens' keys
and values reused, 5 computed). Median of ${rounds} rounds.

| model | computed whole ms | prefix cached ms | rounds (whole / cached) |
|---|---|---|---|
${prefixRows.map((r) => `| ${r.model} | ${r.wholeMs} | ${r.cachedMs} | ${r.rounds.whole.join(' ')} / ${r.rounds.cached.join(' ')} |`).join('\n')}

### Chunked prefill: a long prompt joins 8 decoding sequences

The prompt (3/4 of the context) computed whole in the step it joins (\`prefill_chunk: 0\`) or a chunk per step;
the 8 sequences get a token every step meanwhile. Worst step = the longest they wait for a token; median over
the steps from the join to 4 steps after the long prompt's first token.

| model | prompt tokens | prefill_chunk | worst step ms | median step ms | long prompt's first token ms |
|---|---|---|---|---|---|
${chunkRows.map((r) => `| ${r.model} | ${r.promptTokens} | ${r.chunk || 'whole'} | ${r.worstStepMs} | ${r.medianStepMs} | ${r.firstTokenMs} |`).join('\n')}
`;
writeFileSync(join(out, `${outName}.md`), md);
console.log(md);
