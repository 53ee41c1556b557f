/**
 * Beam search in the replica vs beam search the way vLLM runs it, side by side in one process on one model (the
 * replica's Decoder, no gateway). In the replica: one sequence of `width` rows, a beam followed twice has its KV
 * cache row copied. vLLM's way (its engine's beam_search): every step, every live beam goes in as a new request of
 * its prompt and tokens so far, for one token and its 2 × width likeliest log-probabilities, its prefix cache
 * sparing what it can (here the replica's PrefixCache, blocks of 16 tokens); the same selection (expandBeams) picks
 * the next beams, so both must find the same texts (checked). The floor: `n: width` sampled sequences of the same
 * length (the same rows per step, nothing to choose). Median of interleaved rounds.
 * Writes bench/results/beam-cpu.{json,md}.   npm run bench:beam [-- --model gpt2-small.onnx --width 4 --tokens 32 --name beam-gpt2-small-cpu]
 * On a GPU (the kit's `beam` step): --device cuda --out DIR.
 */
import { basename, join, resolve } from 'node:path';
import { type BeamParams, beamsDone, bestHypotheses, expandBeams, type Hypothesis } from '../src/models/beam-search.js';
import { Decoder } from '../src/models/decoder.js';
import { type GenerativeSpec, generativeSpec } from '../src/models/generative.js';
import { PrefixCache } from '../src/models/prefix-cache.js';
import { Sampler } from '../src/models/sampling.js';
import { openSession } from '../src/models/session.js';
import { readSignature } from '../src/models/signature.js';
import { machine, ROOT, writeResults } from './lib.js';

const flag = (name: string, fallback: string) => (process.argv.includes(`--${name}`) ? process.argv[process.argv.indexOf(`--${name}`) + 1] : fallback);
const modelPath = resolve(flag('model', join(ROOT, 'examples/models/tiny-gpt.onnx')));
const width = Number(flag('width', '4'));
const maxTokens = Number(flag('tokens', '32'));
const rounds = Number(flag('rounds', '5'));
const outName = flag('name', 'beam-cpu');
const outDir = flag('out', join(ROOT, 'bench/results'));
const device = flag('device', 'cpu');
const PROMPT = Array.from({ length: 40 }, (_, i) => 1000 + ((i * 37) % 500));
const PREFIX_CACHE_BYTES = 512 * 2 ** 20;
const params: BeamParams = { width, lengthPenalty: 1, ends: [] };
const greedy = { temperature: 0, topP: 1, topK: 0, seed: 1 };

type Way = { name: string; run: () => Promise<Hypothesis[] | undefined> };

async function main() {
  const { session, provider } = await openSession(modelPath, device, 1);
  const spec = generativeSpec(await readSignature(modelPath)) as GenerativeSpec;
  const sampler = await Sampler.create(1);
  const ways: Way[] = [
    { name: 'in the replica (rows copied)', run: () => inReplica(new Decoder(session, spec, sampler)) },
    {
      name: "vLLM's way (a one-token request per beam per step, prefix cache)",
      run: () => requestPerBeam(new Decoder(session, spec, sampler, new PrefixCache(PREFIX_CACHE_BYTES, spec))),
    },
    { name: `floor: n = ${width} sampled sequences`, run: () => sampled(new Decoder(session, spec, sampler)) },
  ];
  const times = new Map<string, number[]>(ways.map((w) => [w.name, []]));
  const found = new Map<string, Hypothesis[] | undefined>();
  for (let round = 0; round <= rounds; round++)
    for (const way of round % 2 ? [...ways].reverse() : ways) {
      const t0 = performance.now();
      const texts = await way.run();
      if (round > 0) (times.get(way.name) as number[]).push(performance.now() - t0); // round 0: warm-up
      found.set(way.name, texts);
    }
  const [mine, theirs] = [found.get(ways[0].name), found.get(ways[1].name)];
  const same = JSON.stringify(mine?.map((h) => h.tokens)) === JSON.stringify(theirs?.map((h) => h.tokens));
  if (!same) throw new Error('the two beam searches found different texts');
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const rows = ways.map((w) => {
    const ms = median(times.get(w.name) as number[]);
    return {
      way: w.name,
      ms: Math.round(ms),
      tokensPerS: Math.round((width * maxTokens * 1000) / ms),
      rounds: (times.get(w.name) as number[]).map(Math.round),
    };
  });
  for (const r of rows) console.log(r.way, r.ms, 'ms', r.tokensPerS, 'tokens/s');
  const model = `${basename(modelPath, '.onnx')} on ${provider}${provider === 'cpu' ? ', 1 ONNX Runtime thread' : ''}`;
  const results = { machine: machine(), model, width, maxTokens, promptTokens: PROMPT.length, sameTexts: same, rows };
  const md = `# Beam search: in the replica vs a request per beam per step (${basename(modelPath, '.onnx')}, ${provider})

${results.machine.cpu}, ${results.machine.cores} cores, Node ${results.machine.node}. ${results.machine.date}

${model}. One beam search of ${width} beams, ${maxTokens} tokens (no end token), after a ${PROMPT.length}-token prompt; the replica's
Decoder in-process (no gateway). Median of ${rounds} interleaved rounds (each round's ms in the last column). Both searches found
the same ${width} texts: ${same}. tokens/s counts ${width} × ${maxTokens} tokens.

| way | ms per search | tokens/s | rounds (ms) |
|---|---|---|---|
${rows.map((r) => `| ${r.way} | ${r.ms} | ${r.tokensPerS} | ${r.rounds.join(' / ')} |`).join('\n')}
`;
  writeResults(outName, results, md, outDir);
}

/** The search on the replica: one sequence, stepped until its texts come back. */
async function inReplica(decoder: Decoder): Promise<Hypothesis[] | undefined> {
  const sampling = { ...greedy, temperature: 1, beam: params };
  let step = await decoder.step({ join: [{ seq: 'x', prompt: PROMPT, sampling, maxTokens }], advance: [], release: [] });
  while (!step.beams?.x) step = await decoder.step({ join: [], advance: ['x'], release: [] });
  return step.beams.x;
}

/** vLLM's engine's beam search: every step, each beam a new one-token request (prompt + its tokens). */
async function requestPerBeam(decoder: Decoder): Promise<Hypothesis[]> {
  let live = [{ tokens: [] as number[], logprob: 0 }];
  const finished: Hypothesis[] = [];
  let release: string[] = [];
  for (let t = 0; t < maxTokens && !beamsDone(live, finished, params); t++) {
    const join = live.map((b, i) => ({ seq: `${t}.${i}`, prompt: [...PROMPT, ...b.tokens], sampling: { ...greedy, logprobs: 2 * width }, maxTokens: 1 }));
    const step = await decoder.step({ join, advance: [], release });
    release = join.map((j) => j.seq);
    const beams = live.map((b, i) => ({ ...b, candidates: step.logprobs?.[`${t}.${i}`]?.top }));
    live = expandBeams(beams, params, finished).map((e) => ({ tokens: [...beams[e.parent].tokens, e.token], logprob: e.logprob }));
  }
  await decoder.step({ join: [], advance: [], release });
  return bestHypotheses(live, finished, params);
}

/** The floor: `width` sampled sequences, as many tokens each. */
async function sampled(decoder: Decoder): Promise<undefined> {
  const ids = Array.from({ length: width }, (_, i) => `n${i}`);
  await decoder.step({ join: ids.map((seq, i) => ({ seq, prompt: PROMPT, sampling: { ...greedy, temperature: 1, seed: i } })), advance: [], release: [] });
  for (let t = 1; t < maxTokens; t++) await decoder.step({ join: [], advance: ids, release: [] });
  await decoder.step({ join: [], advance: [], release: ids });
  return undefined;
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
