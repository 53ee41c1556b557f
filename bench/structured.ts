/**
 * What structured output costs a decode step: the same sequences on the same decoder and session, decoding
 * free text, a json_object (sampled plainly: mostly inside one long string, its mask reused step after step)
 * and a json_object whose sampling favours `"` and `}` (the documents keep moving through their structure,
 * so masks are computed afresh far more often), and an array of objects with patterned strings (date-time,
 * email, an id pattern: masks walked through each pattern's DFA). The first constrained step also builds the
 * vocabulary index.
 * Rounds interleaved. Writes bench/results/structured-cpu.{json,md}.   npm run bench:structured [-- --rounds 3]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Decoder } from '../src/models/decoder.js';
import { type GenerativeSpec, generativeSpec } from '../src/models/generative.js';
import type { Sampling } from '../src/models/sampling.js';
import { Sampler } from '../src/models/sampling.js';
import { type DeviceSpec, openSession } from '../src/models/session.js';
import { readSignature } from '../src/models/signature.js';
import { machine, ROOT } from './lib.js';

const flag = (name: string, fallback: string) => (process.argv.includes(`--${name}`) ? process.argv[process.argv.indexOf(`--${name}`) + 1] : fallback);
const rounds = Number(flag('rounds', '3'));
const device = flag('device', 'cpu');
const model = flag('model', join(ROOT, 'examples/models/tiny-gpt.onnx'));
const outDir = resolve(flag('out', join(ROOT, 'bench/results')));
const outName = flag('name', 'structured-cpu');
const streams = flag('streams', '1,16,64').split(',').map(Number);
const STEPS = 48;

const plain: Sampling = { temperature: 1, topP: 1, topK: 0, seed: 1 };
const cases: Record<string, Sampling> = {
  'free text': plain,
  json_object: { ...plain, format: { type: 'json_object' } },
  'json_object, structure-heavy': {
    ...plain,
    format: { type: 'json_object' },
    logitBias: [
      [1, 6],
      [92, 6],
    ],
  },
  // Patterned strings: masks walked through each pattern's DFA, a new one at most characters of a date or an id.
  'json_schema, patterned strings': {
    ...plain,
    format: {
      type: 'json_schema',
      schema: {
        type: 'array',
        items: {
          type: 'object',
          properties: {
            when: { type: 'string', format: 'date-time' },
            email: { type: 'string', format: 'email', maxLength: 24 },
            id: { type: 'string', pattern: '^[A-Z]{3}-[0-9]{4}$' },
          },
          required: ['when', 'email', 'id'],
          additionalProperties: false,
        },
      },
    },
  },
};

const { session } = await openSession(model, device as DeviceSpec, device === 'cpu' ? 2 : 0);
const spec = generativeSpec(await readSignature(model)) as GenerativeSpec;
const sampler = await Sampler.create();

/** `n` sequences join, then decode STEPS steps: the median and worst decode step, in ms. */
async function run(n: number, sampling: Sampling) {
  const decoder = new Decoder(session, spec, sampler);
  const join = Array.from({ length: n }, (_, i) => ({ seq: `s${i}`, prompt: [50, 100 + i, 200 + i, 300], sampling: { ...sampling, seed: i + 1 } }));
  const t = performance.now();
  await decoder.step({ join, advance: [], release: [] });
  const joinMs = performance.now() - t;
  const ids = join.map((j) => j.seq);
  const steps: number[] = [];
  for (let s = 0; s < STEPS; s++) {
    const t0 = performance.now();
    await decoder.step({ join: [], advance: ids, release: [] });
    steps.push(performance.now() - t0);
  }
  steps.sort((a, b) => a - b);
  return { joinMs, medianMs: steps[Math.floor(steps.length / 2)], worstMs: steps[steps.length - 1] };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rows: { streams: number; case: string; medianStepMs: number; worstStepMs: number; joinMs: number; rounds: number[] }[] = [];
// The first constrained request of this decoder: the vocabulary index is built then, on this thread (a replica
// builds it on a worker thread once it is ready, before its first constrained request).
const t = performance.now();
await new Decoder(session, spec, sampler).step({ join: [{ seq: 'a', prompt: [50], sampling: cases.json_object }], advance: [], release: [] });
const firstJoinMs = performance.now() - t;
await run(4, cases.json_object); // warm-up (JIT)
for (const n of streams) {
  const results: Record<string, Awaited<ReturnType<typeof run>>[]> = {};
  for (let r = 0; r < rounds; r++)
    for (const [name, sampling] of Object.entries(cases)) {
      results[name] ??= [];
      results[name].push(await run(n, sampling));
    }
  for (const [name, runs] of Object.entries(results)) {
    rows.push({
      streams: n,
      case: name,
      medianStepMs: median(runs.map((x) => x.medianMs)),
      worstStepMs: Math.max(...runs.map((x) => x.worstMs)),
      joinMs: median(runs.map((x) => x.joinMs)),
      rounds: runs.map((x) => Math.round(x.medianMs * 100) / 100),
    });
    console.log(n, name, rows.at(-1));
  }
}

mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, `${outName}.json`), `${JSON.stringify({ machine: machine(), model, device, rounds, steps: STEPS, rows }, null, 2)}\n`);
const fmt = (x: number) => x.toFixed(2);
const md = `# Structured output: what masking costs a decode step

${machine().cpu}, ${machine().cores} cores, device ${device}, model \`${model.split('/').pop()}\` (vocabulary ${spec.vocab}).
N sequences join, then ${STEPS} decode steps; median step (median of ${rounds} interleaved rounds; each round's in the JSON),
and the worst step of any round (where masks are computed afresh: they are kept per state, so the first
round computes most of them). \`npm run bench:structured\`.

| streams | case | median step ms | worst step ms | join step ms |
|---:|---|---:|---:|---:|
${rows.map((r) => `| ${r.streams} | ${r.case} | ${fmt(r.medianStepMs)} | ${fmt(r.worstStepMs)} | ${fmt(r.joinMs)} |`).join('\n')}

Built on this thread at the first constrained request, the vocabulary index (every token's bytes, sorted) made
that join step take ${fmt(firstJoinMs)} ms here; a replica builds it on a worker thread once it is ready.
`;
writeFileSync(join(outDir, `${outName}.md`), md);
console.log(md);
