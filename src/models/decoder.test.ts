import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { type BeamParams, beamsDone, bestHypotheses, expandBeams, type Hypothesis } from './beam-search.js';
import { Decoder, type StepResult } from './decoder.js';
import { type GenerativeSpec, generativeSpec } from './generative.js';
import { gpt2 } from './gpt2-tokenizer.js';
import { PrefixCache } from './prefix-cache.js';
import { Sampler } from './sampling.js';
import { readSignature } from './signature.js';
import { extensionGroups, splitByLength } from './step-plan.js';
import { decode } from './text.js';

const path = fileURLToPath(new URL('../../examples/models/tiny-gpt.onnx', import.meta.url));
let session: ort.InferenceSession;
let spec: GenerativeSpec;
let sampler: Sampler;
const greedy = { temperature: 0, topP: 1, topK: 0, seed: 1 };

beforeAll(async () => {
  session = await ort.InferenceSession.create(path);
  spec = generativeSpec(await readSignature(path)) as GenerativeSpec;
  sampler = await Sampler.create();
});

/** The last position's logits of a full run over `ids` (no cache). */
async function lastLogits(ids: number[]): Promise<Float32Array> {
  const n = ids.length;
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, n]),
    position_ids: new ort.Tensor(
      'int64',
      BigInt64Array.from(ids, (_, i) => BigInt(i)),
      [1, n],
    ),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(n).fill(1n), [1, n]),
    logits_to_keep: new ort.Tensor('int64', BigInt64Array.of(0n), [1]), // all of them
  };
  for (let l = 0; l < spec.layers; l++)
    for (const k of ['key', 'value']) feeds[`past_key_values.${l}.${k}`] = new ort.Tensor('float32', new Float32Array(0), [1, spec.heads, 0, spec.headDim]);
  const logits = (await session.run(feeds)).logits.data as Float32Array;
  return logits.subarray((n - 1) * spec.vocab, n * spec.vocab);
}

/**
 * `token`'s log-probability after `ids` by full recomputation: far more sensitive than a random model's
 * argmax to what a row attended to (a broken mask can leave the greedy tokens unchanged, never these).
 */
async function fullLogprob(ids: number[], token: number): Promise<number> {
  const logits = await lastLogits(ids);
  const max = Math.max(...logits);
  return logits[token] - max - Math.log(logits.reduce((acc, v) => acc + Math.exp(v - max), 0));
}

/** Greedy tokens by full recomputation (no cache): the reference the cached, batched steps must match. */
async function reference(prompt: number[], steps: number): Promise<number[]> {
  const ids = [...prompt];
  const out: number[] = [];
  for (let s = 0; s < steps; s++) {
    const last = await lastLogits(ids);
    let best = 0;
    for (let i = 1; i < last.length; i++) if (last[i] > last[best]) best = i;
    ids.push(best);
    out.push(best);
  }
  return out;
}

const PROMPTS = { a: [15496, 995], b: [40, 1101, 257, 1332, 11, 290], c: [464] };

/**
 * Continuous batching over `steps` decode steps: a and b start together, c joins at step 2, b leaves at
 * step 3, a sits out step `pauseA` (if given). Every sequence's tokens, and each step's decode batch size.
 */
async function scenario(decoder: Decoder, steps: number, pauseA = -1) {
  const got: Record<'a' | 'b' | 'c', number[]> = { a: [], b: [], c: [] };
  const join = (seq: 'a' | 'b' | 'c') => ({ seq, prompt: PROMPTS[seq], sampling: greedy });
  const first = await decoder.step({ join: [join('a'), join('b')], advance: [], release: [] });
  got.a.push(first.tokens.a);
  got.b.push(first.tokens.b);
  const batches: number[] = [];
  for (let step = 0; step < steps; step++) {
    const advance = [...(step === pauseA ? [] : ['a']), ...(step < 3 ? ['b'] : []), ...(step > 2 ? ['c'] : [])];
    const r = await decoder.step({ join: step === 2 ? [join('c')] : [], advance, release: step === 3 ? ['b'] : [] });
    for (const [seq, token] of Object.entries(r.tokens)) got[seq as 'a' | 'b' | 'c'].push(token);
    batches.push(r.decodeBatch);
  }
  return { got, batches };
}

describe('Decoder', () => {
  it('reads the decoder layout from the signature', () => {
    expect(spec).toEqual({
      layers: 2,
      heads: 2,
      headDim: 16,
      vocab: 50257,
      context: 512,
      tokenizer: 'gpt2',
      newKeyValues: true,
      logitsToKeep: true,
      kvType: 'float32',
    });
  });

  // models/gpt.py's layout (the step's own keys/values fetched, last-position logits only, prompts left-padded)
  // and the Hugging Face export's (the whole present fetched, every position's logits, right-padded).
  it.each([true, false])(
    'generates with its KV cache exactly what full recomputation does, for sequences of different lengths batched together (gpt.py layout: %s)',
    async (ours) => {
      const decoder = new Decoder(session, { ...spec, newKeyValues: ours, logitsToKeep: ours }, sampler);
      const { got, batches } = await scenario(decoder, 6);
      expect(batches[4]).toBe(2);
      for (const seq of ['a', 'b', 'c'] as const) expect(got[seq]).toEqual(await reference(PROMPTS[seq], got[seq].length));
      expect(decoder.active).toBe(2); // b was released
    },
  );

  it('reports log-probabilities that match full recomputation, for the joining and the advancing step', async () => {
    const decoder = new Decoder(session, spec, sampler);
    const ids = [...PROMPTS.b];
    const joined = await decoder.step({
      join: [
        { seq: 'b', prompt: ids, sampling: { ...greedy, logprobs: 2 } },
        { seq: 'a', prompt: PROMPTS.a, sampling: greedy },
      ],
      advance: [],
      release: [],
    });
    const advanced = await decoder.step({ join: [], advance: ['b', 'a'], release: [] });
    for (const step of [joined, advanced]) {
      const token = step.tokens.b;
      expect(step.logprobs?.b.logprob).toBeCloseTo(await fullLogprob(ids, token), 4);
      expect(step.logprobs?.b.top[0][0]).toBe(token);
      expect(step.logprobs?.a).toBeUndefined();
      ids.push(token);
    }
  });

  it('scores a joining prompt (promptLogprobs) as full recomputation does, beside others joining in the same step', async () => {
    const decoder = new Decoder(session, spec, sampler);
    const prompt = PROMPTS.b;
    const step = await decoder.step({
      join: [
        { seq: 'a', prompt: PROMPTS.a, sampling: greedy },
        { seq: 'b', prompt, sampling: { ...greedy, promptLogprobs: 1 } },
      ],
      advance: [],
      release: [],
    });
    const scored = step.promptLogprobs?.b ?? [];
    expect(scored).toHaveLength(prompt.length - 1);
    for (let p = 1; p < prompt.length; p++) {
      expect(scored[p - 1].logprob).toBeCloseTo(await fullLogprob(prompt.slice(0, p), prompt[p]), 4);
    }
    expect(step.promptLogprobs?.a).toBeUndefined();
    expect([step.tokens.a, step.tokens.b]).toEqual([(await reference(PROMPTS.a, 1))[0], (await reference(prompt, 1))[0]]);
  });

  it('prefills alike prompts once: each sequence still samples on its own, as if it had joined alone', async () => {
    const hot = (seed: number) => ({ temperature: 0.9, topP: 1, topK: 0, seed });
    const alone = async (prompt: number[], seed: number, steps: number) => {
      const d = new Decoder(session, spec, sampler);
      const out = [(await d.step({ join: [{ seq: 's', prompt, sampling: hot(seed) }], advance: [], release: [] })).tokens.s];
      while (out.length < steps) out.push((await d.step({ join: [], advance: ['s'], release: [] })).tokens.s);
      return out;
    };
    const decoder = new Decoder(session, spec, sampler);
    const seqs = { x0: [PROMPTS.b, 1], x1: [PROMPTS.b, 2], y: [PROMPTS.a, 3], x2: [PROMPTS.b, 4] } as const;
    const join = Object.entries(seqs).map(([seq, [prompt, seed]]) => ({ seq, prompt: [...prompt], sampling: hot(seed) }));
    const got: Record<string, number[]> = Object.fromEntries(Object.keys(seqs).map((s) => [s, []]));
    const first = await decoder.step({ join, advance: [], release: [] });
    for (const [s, t] of Object.entries(first.tokens)) got[s].push(t);
    for (let i = 0; i < 5; i++)
      for (const [s, t] of Object.entries((await decoder.step({ join: [], advance: Object.keys(seqs), release: [] })).tokens)) got[s].push(t);
    for (const [s, [prompt, seed]] of Object.entries(seqs)) expect(got[s]).toEqual(await alone([...prompt], seed, 6));
    expect(new Set([got.x0.join(), got.x1.join(), got.x2.join()]).size).toBe(3); // different seeds, different text
  });

  it('computes only what follows a cached prefix, and generates exactly what full recomputation does', async () => {
    const cache = new PrefixCache(64 * 2 ** 20, spec);
    const decoder = new Decoder(session, spec, sampler, cache);
    const system = Array.from({ length: 40 }, (_, i) => 1000 + i); // a shared "system prompt" of 40 tokens
    const first = [...system, 11, 12, 13];
    const second = [...system, 21, 22]; // shares 2 whole blocks (32 tokens) with the first
    const run = async (seq: string, prompt: number[]) => {
      const joined = await decoder.step({ join: [{ seq, prompt, sampling: greedy }], advance: [], release: [] });
      const tokens = [joined.tokens[seq]];
      for (let i = 0; i < 4; i++) tokens.push((await decoder.step({ join: [], advance: [seq], release: [] })).tokens[seq]);
      await decoder.step({ join: [], advance: [], release: [seq] });
      return { tokens, cached: joined.cached?.[seq] ?? 0 };
    };
    expect(await run('a', first)).toEqual({ tokens: await reference(first, 5), cached: 0 });
    expect(await run('b', second)).toEqual({ tokens: await reference(second, 5), cached: 32 });
    expect(await run('c', first)).toEqual({ tokens: await reference(first, 5), cached: 32 }); // one token must be computed: 43 → 32
    const short = [5, 6, 7];
    expect((await run('d', short)).cached).toBe(0); // under a block: never cached
    expect(cache.hits).toBe(2);
  });

  it('computes a long prompt a chunk per step while the others keep decoding, to the same tokens', async () => {
    const decoder = new Decoder(session, spec, sampler, undefined, 16);
    const long = Array.from({ length: 50 }, (_, i) => 2000 + i); // 16 + 16 + 16 + 2: its token comes with the 4th step
    const first = await decoder.step({ join: [{ seq: 'a', prompt: PROMPTS.a, sampling: greedy }], advance: [], release: [] });
    const a = [first.tokens.a];
    const l: number[] = [];
    let steps = 0;
    const joined = await decoder.step({ join: [{ seq: 'l', prompt: long, sampling: greedy }], advance: ['a'], release: [] });
    a.push(joined.tokens.a);
    while (l.length < 5) {
      const r = await decoder.step({ join: [], advance: ['a', 'l'], release: [] });
      steps++;
      a.push(r.tokens.a); // never held up by the long prompt
      if (r.tokens.l !== undefined) l.push(r.tokens.l);
    }
    expect(steps).toBe(3 + 4); // 3 more chunks, the last with its first token, then 4 decode steps
    expect(l).toEqual(await reference(long, 5));
    expect(a).toEqual(await reference(PROMPTS.a, a.length));
  });

  it("masks each sequence by its own format, after a chunked prompt too, and leaves its neighbours' tokens alone", async () => {
    const decoder = new Decoder(session, spec, sampler, undefined, 16);
    const long = Array.from({ length: 40 }, (_, i) => 2700 + i); // three chunks of 16
    const json = { ...greedy, format: { type: 'json_object' as const } };
    const choice = { ...greedy, format: { type: 'choice' as const, choices: ['yes', 'no', 'maybe'] } };
    const tokens: Record<string, number[]> = { j: [], c: [], f: [] };
    const collect = (r: StepResult) => {
      for (const id of Object.keys(tokens)) if (r.tokens[id] !== undefined) tokens[id].push(r.tokens[id]);
    };
    collect(
      await decoder.step({
        join: [
          { seq: 'j', prompt: long, sampling: json },
          { seq: 'c', prompt: PROMPTS.b, sampling: choice },
          { seq: 'f', prompt: PROMPTS.a, sampling: greedy },
        ],
        advance: [],
        release: [],
      }),
    );
    for (let i = 0; i < 8; i++) collect(await decoder.step({ join: [], advance: ['j', 'c', 'f'], release: [] }));
    const { gpt2 } = await import('./gpt2-tokenizer.js');
    const text = (ts: number[]) =>
      ts
        .filter((t) => t !== gpt2.eos)
        .map((t) => Buffer.from(gpt2.bytes(t)).toString('latin1'))
        .join('');
    expect(text(tokens.j)).toMatch(/^\s{0,2}\{/); // a JSON object begins, whatever greedy tiny-gpt prefers
    const end = tokens.c.indexOf(gpt2.eos);
    expect(end).toBeGreaterThan(0); // a choice is whole in a few tokens, then end-of-text
    expect(['yes', 'no', 'maybe']).toContain(text(tokens.c.slice(0, end)));
    expect(tokens.f).toEqual(await reference(PROMPTS.a, tokens.f.length)); // the free sequence is as if alone
  });

  it('refuses alone a joining sequence whose format cannot be set up; the others join and decode', async () => {
    const decoder = new Decoder(session, spec, sampler);
    // Not a format the gateway would let through (it checks with the same code): a pattern that does not parse.
    const broken = { ...greedy, format: { type: 'regex' as const, pattern: '(' } };
    const r = await decoder.step({
      join: [
        { seq: 'bad', prompt: PROMPTS.b, sampling: broken },
        { seq: 'a', prompt: PROMPTS.a, sampling: greedy },
      ],
      advance: [],
      release: [],
    });
    expect(r.failed?.bad).toMatch(/cannot be enforced: pattern: an unclosed \(/);
    expect(r.tokens.bad).toBeUndefined();
    expect(decoder.active).toBe(1);
    const next = await decoder.step({ join: [], advance: ['a'], release: ['bad'] });
    expect([r.tokens.a, next.tokens.a]).toEqual(await reference(PROMPTS.a, 2));
  });

  it('fails alone a joining sequence whose prompt the model fails to run; the others in its run and step go on', async () => {
    // A prompt past the model's positions fails the run (the gateway never sends one: it checks the context), as a
    // prompt needing more device memory than is left would.
    const decoder = new Decoder(session, spec, sampler);
    const first = await decoder.step({ join: [{ seq: 'a', prompt: PROMPTS.a, sampling: greedy }], advance: [], release: [] });
    const tooLong = Array.from({ length: (spec.context ?? 512) + 8 }, (_, i) => 100 + (i % 50));
    const r = await decoder.step({
      join: [
        { seq: 'bad', prompt: tooLong, sampling: greedy },
        { seq: 'b', prompt: PROMPTS.b, sampling: greedy },
      ],
      advance: ['a'],
      release: [],
    });
    expect(r.failed?.bad).toMatch(/^the model failed it: /);
    expect(r.tokens.bad).toBeUndefined();
    expect(decoder.active).toBe(2);
    expect(r.tokens.b).toBe((await reference(PROMPTS.b, 1))[0]);
    expect([first.tokens.a, r.tokens.a]).toEqual(await reference(PROMPTS.a, 2));
  });

  it('fails alone a sequence whose decode run the model fails; the others in the run go on', async () => {
    // A sequence decoding past the model's last position fails the run (the gateway never lets one: max_tokens fits the
    // context), as a run needing more device memory than is left would.
    const context = spec.context ?? 512;
    const long = Array.from({ length: context - 1 }, (_, i) => 100 + (i % 50));
    for (const speculation of [undefined, { tokens: 4, ngramMax: 4, ngramMin: 1 }]) {
      const decoder = new Decoder(session, spec, sampler, undefined, 0, speculation);
      const a: number[] = [];
      const take = (r: StepResult) => a.push(r.tokens.a, ...(r.more?.a ?? []));
      const join = [
        { seq: 'long', prompt: long, sampling: greedy },
        { seq: 'a', prompt: PROMPTS.a, sampling: greedy },
      ];
      take(await decoder.step({ join, advance: [], release: [] }));
      const last = await decoder.step({ join: [], advance: ['long', 'a'], release: [] }); // (the long one's last position)
      expect(last.failed).toBeUndefined();
      take(last);
      const past = await decoder.step({ join: [], advance: ['long', 'a'], release: [] });
      expect(past.failed?.long).toMatch(/^the model failed it: /);
      expect(past.tokens.long).toBeUndefined();
      take(past);
      expect(decoder.active).toBe(1);
      expect(a).toEqual(await reference(PROMPTS.a, a.length));
    }
  });

  it('decodes a token instead where the run checking drafts fails: the same tokens', async () => {
    // (out of device memory cannot be had here at will: the checking run is made to fail, as ONNX Runtime's would)
    const speculation = { tokens: 4, ngramMax: 4, ngramMin: 1 };
    const repeated = [...PROMPTS.b, ...PROMPTS.b, ...PROMPTS.b];
    const decoder = new Decoder(session, spec, sampler, undefined, 0, speculation);
    const internals = decoder as unknown as { runPositions: (...args: unknown[]) => Promise<unknown> };
    const runPositions = internals.runPositions.bind(decoder);
    let failed = 0;
    internals.runPositions = (...args) => {
      if (args[3] !== 'spec') return runPositions(...args);
      failed++;
      return Promise.reject(new Error('out of memory'));
    };
    const tokens = [(await decoder.step({ join: [{ seq: 'x', prompt: repeated, sampling: greedy }], advance: [], release: [] })).tokens.x];
    for (let i = 0; i < 8; i++) {
      const r = await decoder.step({ join: [], advance: ['x'], release: [] });
      expect(r.failed).toBeUndefined();
      tokens.push(r.tokens.x, ...(r.more?.x ?? []));
    }
    expect(failed).toBeGreaterThan(0);
    expect(tokens).toEqual(await reference(repeated, tokens.length));
  });

  it('runs joining prompts again one at a time where drawing their first tokens fails: the same tokens after', async () => {
    // (a sampler out of memory for two rows but not one cannot be had at will: it is made to fail, as ONNX Runtime's would)
    let failures = 0;
    const failing = {
      sample: (...args: Parameters<Sampler['sample']>) => {
        if (args[2].length < 2 || failures > 0) return sampler.sample(...args);
        failures++;
        return Promise.reject(new Error('out of memory'));
      },
    } as unknown as Sampler;
    const decoder = new Decoder(session, spec, failing);
    const join = [
      { seq: 'a', prompt: PROMPTS.a, sampling: greedy },
      { seq: 'b', prompt: PROMPTS.b, sampling: greedy },
    ];
    const tokens: Record<string, number[]> = { a: [], b: [] };
    let r = await decoder.step({ join, advance: [], release: [] });
    expect(failures).toBe(1);
    for (let i = 0; i < 4; i++) {
      expect(r.failed).toBeUndefined();
      tokens.a.push(r.tokens.a);
      tokens.b.push(r.tokens.b);
      r = await decoder.step({ join: [], advance: ['a', 'b'], release: [] });
    }
    expect(tokens.a).toEqual(await reference(PROMPTS.a, 4));
    expect(tokens.b).toEqual(await reference(PROMPTS.b, 4));
  });

  it('checks drafts up to the position where drawing fails, or decodes a token instead: the same tokens', async () => {
    const repeated = [...PROMPTS.b, ...PROMPTS.b, ...PROMPTS.b];
    let position: number | undefined; // drawing from the run checking drafts: its position
    let checks = 0;
    const failedAt: number[] = [];
    const failing = {
      sample: (...args: Parameters<Sampler['sample']>) => {
        if (position === undefined || position++ !== checks % 3) return sampler.sample(...args);
        failedAt.push(checks % 3);
        return Promise.reject(new Error('out of memory'));
      },
    } as unknown as Sampler;
    const decoder = new Decoder(session, spec, failing, undefined, 0, { tokens: 4, ngramMax: 4, ngramMin: 1 });
    const internals = decoder as unknown as Record<'runPositions' | 'decodeRows', (...args: unknown[]) => Promise<unknown>>;
    const [runPositions, decodeRows] = [internals.runPositions.bind(decoder), internals.decodeRows.bind(decoder)];
    internals.runPositions = (...args) => {
      position = args[3] === 'spec' ? 0 : undefined;
      if (args[3] === 'spec') checks++;
      return runPositions(...args);
    };
    internals.decodeRows = (...args) => {
      position = undefined;
      return decodeRows(...args);
    };
    const tokens = [(await decoder.step({ join: [{ seq: 'x', prompt: repeated, sampling: greedy }], advance: [], release: [] })).tokens.x];
    for (let i = 0; i < 10; i++) {
      const r = await decoder.step({ join: [], advance: ['x'], release: [] });
      expect(r.failed).toBeUndefined();
      tokens.push(r.tokens.x, ...(r.more?.x ?? []));
    }
    expect(failedAt).toContain(0); // (before any token drawn)
    expect(failedAt).toContain(1); // (after a draft's first token held)
    expect(tokens).toEqual(await reference(repeated, tokens.length));
  });

  it('refuses alone a joining sequence whose text must be read where the tokenizer cannot be loaded', async () => {
    const decoder = new Decoder(session, { ...spec, tokenizer: 'no-such-tokenizer' }, sampler);
    const thinking = { budget: 2, start: '<think>', end: '</think>', fromStart: true };
    const r = await decoder.step({
      join: [
        { seq: 'thinks', prompt: PROMPTS.b, sampling: { ...greedy, thinking } },
        { seq: 'a', prompt: PROMPTS.a, sampling: greedy },
      ],
      advance: [],
      release: [],
    });
    expect(r.failed?.thinks).toMatch(/^its text cannot be read: .*no-such-tokenizer/);
    expect(decoder.active).toBe(1);
    const next = await decoder.step({ join: [], advance: ['a'], release: ['thinks'] });
    expect([r.tokens.a, next.tokens.a]).toEqual(await reference(PROMPTS.a, 2));
  });

  it('refuses alone a joining sequence with a prompt token outside the vocabulary (it would fail the whole run)', async () => {
    const decoder = new Decoder(session, spec, sampler);
    const r = await decoder.step({
      join: [
        { seq: 'bad', prompt: [464, spec.vocab], sampling: greedy },
        { seq: 'a', prompt: PROMPTS.a, sampling: greedy },
      ],
      advance: [],
      release: [],
    });
    expect(r.failed?.bad).toBe(`prompt token ${spec.vocab} is not in the model's vocabulary (${spec.vocab} tokens)`);
    expect(decoder.active).toBe(1);
    const next = await decoder.step({ join: [], advance: ['a'], release: ['bad'] });
    expect([r.tokens.a, next.tokens.a]).toEqual(await reference(PROMPTS.a, 2));
  });

  it('lets a sequence leave in the middle of its chunked prefill; the others go on as before', async () => {
    const decoder = new Decoder(session, spec, sampler, undefined, 16);
    const first = await decoder.step({ join: [{ seq: 'a', prompt: PROMPTS.b, sampling: greedy }], advance: [], release: [] });
    const a = [first.tokens.a];
    const long = Array.from({ length: 60 }, (_, i) => 2500 + i);
    a.push((await decoder.step({ join: [{ seq: 'l', prompt: long, sampling: greedy }], advance: ['a'], release: [] })).tokens.a);
    a.push((await decoder.step({ join: [], advance: ['a', 'l'], release: [] })).tokens.a);
    const left = await decoder.step({ join: [{ seq: 'c', prompt: PROMPTS.c, sampling: greedy }], advance: ['a'], release: ['l'] });
    a.push(left.tokens.a);
    const c = [left.tokens.c];
    for (let i = 0; i < 3; i++) {
      const r = await decoder.step({ join: [], advance: ['a', 'c'], release: [] });
      a.push(r.tokens.a);
      c.push(r.tokens.c);
    }
    expect(decoder.active).toBe(2);
    expect(a).toEqual(await reference(PROMPTS.b, a.length));
    expect(c).toEqual(await reference(PROMPTS.c, c.length));
  });

  it('runs short sequences apart from a long one that would pad them all, to the same tokens', async () => {
    const decoder = new Decoder(session, spec, sampler);
    const long = Array.from({ length: 400 }, (_, i) => 3000 + i);
    const shorts = Array.from({ length: 12 }, (_, i) => [100 + i, 200 + i, 300 + i]);
    const scored = { ...greedy, logprobs: 0 };
    const join = [...shorts.map((prompt, i) => ({ seq: `s${i}`, prompt, sampling: scored })), { seq: 'long', prompt: long, sampling: scored }];
    const prompts = Object.fromEntries(join.map((j) => [j.seq, j.prompt]));
    const all = join.map((j) => j.seq);
    const got: Record<string, number[]> = Object.fromEntries(all.map((id) => [id, []]));
    const record = async (r: StepResult, check: boolean) => {
      for (const [id, t] of Object.entries(r.tokens)) {
        if (check) expect(r.logprobs?.[id].logprob).toBeCloseTo(await fullLogprob([...prompts[id], ...got[id]], t), 4);
        got[id].push(t);
      }
    };
    await record(await decoder.step({ join, advance: [], release: [] }), false);
    // s0 sits out step 1 (paused): the short group is then s1..s11.
    for (let i = 0; i < 3; i++) await record(await decoder.step({ join: [], advance: i === 1 ? all.slice(1) : all, release: [] }), true);
    expect(splitByLength([...shorts.map((p) => ({ length: p.length })), { length: 400 }], 416)).not.toBeNull(); // it did split
    expect(got.long).toEqual(await reference(long, 4));
    for (const [i, prompt] of shorts.entries()) expect(got[`s${i}`]).toEqual(await reference(prompt, got[`s${i}`].length));
  });

  it('splits a decode step only where padding would cost more than a second run', () => {
    const lengths = (...ls: number[]) => ls.map((length) => ({ length }));
    expect(splitByLength(lengths(5, 6, 7), 16)).toBeNull();
    expect(splitByLength(lengths(...new Array(12).fill(5), 400), 416)?.map((g) => g.length)).toEqual([12, 1]);
    expect(splitByLength(lengths(300, 5, 310, 8), 320)).toBeNull(); // 4 rows: at most ~600 row-positions saved
  });

  it.each([true, false])('prefills several prompts after cached prefixes of different lengths in one run, exactly (gpt.py layout: %s)', async (ours) => {
    const layout = { ...spec, newKeyValues: ours, logitsToKeep: ours };
    const decoder = new Decoder(session, layout, sampler, new PrefixCache(2 ** 20, layout));
    const base = Array.from({ length: 40 }, (_, i) => 700 + i);
    // Stores 32 tokens of `base` and 16 of another start.
    await decoder.step({ join: [{ seq: 'p', prompt: [...base, 1], sampling: greedy }], advance: [], release: ['p'] });
    await decoder.step({
      join: [{ seq: 'q', prompt: [...base.slice(0, 16), 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9], sampling: greedy }],
      advance: [],
      release: ['q'],
    });
    const prompts = { x: [...base.slice(0, 35), 5], y: [...base.slice(0, 20), 6, 7, 8], z: [...base.slice(0, 33), 4, 3, 2, 1, 0, 11, 12] };
    const join = Object.entries(prompts).map(([seq, prompt]) => ({ seq, prompt, sampling: { ...greedy, logprobs: 0 } }));
    const first = await decoder.step({ join, advance: [], release: [] });
    expect(first.cached).toEqual({ x: 32, y: 16, z: 32 });
    for (const [id, prompt] of Object.entries(prompts)) expect(first.logprobs?.[id].logprob).toBeCloseTo(await fullLogprob(prompt, first.tokens[id]), 4);
    const got: Record<string, number[]> = { x: [first.tokens.x], y: [first.tokens.y], z: [first.tokens.z] };
    for (let i = 0; i < 3; i++)
      for (const [id, t] of Object.entries((await decoder.step({ join: [], advance: ['x', 'y', 'z'], release: [] })).tokens)) got[id].push(t);
    for (const [id, prompt] of Object.entries(prompts)) expect(got[id]).toEqual(await reference(prompt, 4));
  });

  it('drops the least recently used prompts past its budget', () => {
    const perToken = 2 * spec.layers * spec.heads * spec.headDim * 4;
    const cache = new PrefixCache(2 * 16 * perToken, spec); // room for two 16-token prompts
    const read = () => new Float32Array(16 * spec.headDim);
    const prompt = (start: number) => Array.from({ length: 17 }, (_, i) => start + i);
    cache.insert(prompt(0), read);
    cache.insert(prompt(100), read);
    expect(cache.lookup(prompt(0))?.length).toBe(16); // used: now the most recent
    cache.insert(prompt(200), read);
    expect(cache.lookup(prompt(100))).toBeUndefined();
    expect(cache.lookup(prompt(0))?.length).toBe(16);
    expect(cache.lookup(prompt(200))?.length).toBe(16);
    expect(cache.size).toBe(2 * 16 * perToken);
  });

  it('keeps a paused sequence (not advanced for some steps) exactly where it was, seeded sampling included', async () => {
    const seeded = { temperature: 0.8, topP: 1, topK: 0, seed: 7 };
    const batched = new Decoder(session, spec, sampler);
    const first = await batched.step({
      join: [
        { seq: 'x', prompt: [464, 3290], sampling: seeded },
        { seq: 'y', prompt: [15496, 995, 11], sampling: greedy },
      ],
      advance: [],
      release: [],
    });
    const got = { x: [first.tokens.x], y: [first.tokens.y] };
    // x holds row 0 and sits out steps 2 and 3 (a stream whose client stopped reading); y goes on.
    for (const advance of [['x', 'y'], ['y'], ['y'], ['x', 'y'], ['x', 'y']]) {
      const r = await batched.step({ join: [], advance, release: [] });
      for (const [seq, token] of Object.entries(r.tokens)) got[seq as 'x' | 'y'].push(token);
    }
    const alone = new Decoder(session, spec, sampler);
    const solo = [(await alone.step({ join: [{ seq: 'x', prompt: [464, 3290], sampling: seeded }], advance: [], release: [] })).tokens.x];
    for (let i = 0; i < 3; i++) solo.push((await alone.step({ join: [], advance: ['x'], release: [] })).tokens.x);
    expect(got.x).toEqual(solo);
    expect(got.y).toEqual(await reference([15496, 995, 11], got.y.length));
  });

  it('keeps an FP16 cache (models/gpt.py --kv fp16): batched steps match one sequence run alone on its own cache', async () => {
    const kv16Path = fileURLToPath(new URL('../../examples/models/tiny-gpt-kv16.onnx', import.meta.url));
    const kv16 = await ort.InferenceSession.create(kv16Path);
    const kv16Spec = generativeSpec(await readSignature(kv16Path)) as GenerativeSpec;
    expect(kv16Spec.kvType).toBe('float16');
    const alone = async (prompt: number[], steps: number) => {
      const d = new Decoder(kv16, kv16Spec, sampler);
      const out = [(await d.step({ join: [{ seq: 's', prompt, sampling: greedy }], advance: [], release: [] })).tokens.s];
      while (out.length < steps) out.push((await d.step({ join: [], advance: ['s'], release: [] })).tokens.s);
      return out;
    };
    const { got } = await scenario(new Decoder(kv16, kv16Spec, sampler), 24, 5);
    for (const seq of ['a', 'b', 'c'] as const) expect(got[seq]).toEqual(await alone(PROMPTS[seq], got[seq].length));
    // And on a cached FP16 prefix.
    const cached = new Decoder(kv16, kv16Spec, sampler, new PrefixCache(2 ** 20, kv16Spec));
    const prompt = (end: number) => [...Array.from({ length: 20 }, (_, i) => 500 + i), end];
    await cached.step({ join: [{ seq: 'x', prompt: prompt(1), sampling: greedy }], advance: [], release: [] });
    const hit = await cached.step({ join: [{ seq: 'y', prompt: prompt(2), sampling: greedy }], advance: [], release: [] });
    expect(hit.cached?.y).toBe(16);
    const tokens = [hit.tokens.y];
    while (tokens.length < 6) tokens.push((await cached.step({ join: [], advance: ['y'], release: [] })).tokens.y);
    expect(tokens).toEqual(await alone(prompt(2), 6));
  });

  it('groups runs up to a number of sequences and of padded new positions, alike lengths together, chunks cut', () => {
    const item = (id: string, promptLength: number, past = 0, promptLogprobs?: number) => ({
      id,
      seq: { length: past, prefilling: { prompt: new Array(promptLength).fill(1) }, sampling: { ...greedy, promptLogprobs } },
    });
    const joins = (...lengths: number[]) => lengths.map((n, i) => item(`s${i}`, n));
    const sizes = (lengths: number[], chunk = 0) =>
      extensionGroups(joins(...lengths), { sequences: 3, tokens: 2048, chunk }).map((g) => g.map((x) => x.seq.prefilling.prompt.length));
    expect(sizes([5, 9, 3])).toEqual([[3, 5, 9]]);
    expect(sizes([500, 500, 500, 500, 500])).toEqual([
      [500, 500, 500],
      [500, 500],
    ]);
    expect(sizes([700, 700, 700])).toEqual([[700, 700], [700]]);
    expect(sizes([1, 1, 1, 1, 1, 1, 1])).toEqual([[1, 1, 1], [1, 1, 1], [1]]);
    expect(sizes([10, 1000, 10])).toEqual([[10, 10], [1000]]); // alike lengths together, not 10s padded to 1000
    expect(sizes([3000, 4])).toEqual([[4], [3000]]);
    expect(sizes([3000, 3000, 4], 512)).toEqual([[4, 3000, 3000]]); // chunks of 512: 3 x 512 fit
    // Alike pasts together: rows that already hold 100 positions do not pad fresh ones' pasts.
    const mixed = extensionGroups([item('a', 110, 100), item('b', 12), item('c', 110, 100), item('d', 12)], { sequences: 2, tokens: 2048, chunk: 0 });
    expect(mixed.map((g) => g.map((x) => x.id))).toEqual([
      ['b', 'd'],
      ['a', 'c'],
    ]);
    const scored = extensionGroups([...joins(3, 3), item('scored', 3, 0, 0)], { sequences: 3, tokens: 2048, chunk: 0 });
    expect(scored.map((g) => g.map((x) => x.id))).toEqual([['scored'], ['s0', 's1']]); // scored alone: every position's logits
  });

  it('gives cache memory back as sequences leave, and the one left goes on as if alone', async () => {
    const decoder = new Decoder(session, spec, sampler);
    const prompts = Array.from({ length: 8 }, (_, i) => [100 + i, 200 + i, 300 + i]);
    const ids = prompts.map((_, i) => `s${i}`);
    const first = await decoder.step({ join: prompts.map((prompt, i) => ({ seq: ids[i], prompt, sampling: greedy })), advance: [], release: [] });
    const tokens = [first.tokens.s0];
    for (let i = 0; i < 30; i++) tokens.push((await decoder.step({ join: [], advance: ids, release: [] })).tokens.s0);
    const full = decoder.cacheBytes;
    // Seven leave (s0 keeps row 0); the rows shrink to what is left.
    tokens.push((await decoder.step({ join: [], advance: ['s0'], release: ids.slice(1) })).tokens.s0);
    expect(decoder.cacheBytes).toBeLessThanOrEqual(full / 2);
    for (let i = 0; i < 4; i++) tokens.push((await decoder.step({ join: [], advance: ['s0'], release: [] })).tokens.s0);
    expect(tokens).toEqual(await reference(prompts[0], tokens.length));
    await decoder.step({ join: [], advance: [], release: ['s0'] });
    expect(decoder.cacheBytes).toBe(0);
  });

  it('forgets every sequence at once (its gateway went away), and takes the same ids afresh', async () => {
    const decoder = new Decoder(session, spec, sampler);
    const join = [0, 1, 2].map((i) => ({ seq: `s${i}`, prompt: [100 + i, 200 + i], sampling: greedy }));
    await decoder.step({ join, advance: [], release: [] });
    await decoder.step({ join: [], advance: ['s0', 's1', 's2'], release: [] });
    decoder.releaseAll();
    expect(decoder.cacheBytes).toBe(0);
    // A new gateway's s0 is a new sequence: its tokens are those of its own prompt alone.
    const tokens = [(await decoder.step({ join: [{ seq: 's0', prompt: [7, 8, 9], sampling: greedy }], advance: [], release: [] })).tokens.s0];
    for (let i = 0; i < 3; i++) tokens.push((await decoder.step({ join: [], advance: ['s0'], release: [] })).tokens.s0);
    expect(tokens).toEqual(await reference([7, 8, 9], 4));
  });

  it('grows a cache past its first capacity', async () => {
    const decoder = new Decoder(session, spec, sampler);
    const tokens = [(await decoder.step({ join: [{ seq: 'x', prompt: [1, 2, 3], sampling: greedy }], advance: [], release: [] })).tokens.x];
    for (let i = 0; i < 40; i++) tokens.push((await decoder.step({ join: [], advance: ['x'], release: [] })).tokens.x);
    expect(tokens).toEqual(await reference([1, 2, 3], 41));
  });
});

describe('speculative decoding by prompt lookup', () => {
  const speculation = { tokens: 4, ngramMax: 4, ngramMin: 1 };
  /** Every sequence's tokens (a step's first and the drafted ones it took) until each has `want`, and the steps it took. */
  async function run(decoder: Decoder, join: { seq: string; prompt: number[]; sampling: typeof greedy }[], want: number) {
    const got: Record<string, number[]> = Object.fromEntries(join.map((j) => [j.seq, []]));
    const logprobs: Record<string, number[]> = Object.fromEntries(join.map((j) => [j.seq, []]));
    const take = (r: StepResult) => {
      for (const [id, t] of Object.entries(r.tokens)) got[id].push(t, ...(r.more?.[id] ?? []));
      for (const [id, l] of Object.entries(r.logprobs ?? {})) logprobs[id].push(l.logprob, ...(r.moreLogprobs?.[id] ?? []).map((x) => x.logprob));
    };
    take(await decoder.step({ join: join.map((j) => ({ ...j, maxTokens: want })), advance: [], release: [] }));
    let steps = 1;
    let accepted = 0;
    for (;;) {
      const going = join.map((j) => j.seq).filter((id) => got[id].length < want);
      if (going.length === 0) break;
      const r = await decoder.step({ join: [], advance: going, release: [] });
      accepted += r.speculated?.accepted ?? 0;
      take(r);
      steps++;
    }
    for (const id of Object.keys(got)) expect(got[id].length).toBeLessThanOrEqual(want); // never past max_tokens
    return { got, logprobs, steps, accepted };
  }

  it("drafts a repeated request from the earlier one's text (suffix decoding): its tokens, in far fewer steps", async () => {
    // Sampled text (temperature 1, a seed) seldom repeats itself: its own text drafts little. A second request
    // the same as the first draws the same tokens, which the first's text drafts.
    const sampling = { ...greedy, temperature: 1, seed: 23 };
    const join = (seq: string) => [{ seq, prompt: PROMPTS.b, sampling }];
    const plain = new Decoder(session, spec, sampler);
    const want = await run(plain, join('w'), 40);
    const decoder = new Decoder(session, spec, sampler, undefined, 0, { ...speculation, tokens: 8, sharedTokens: 10_000 });
    const first = await run(decoder, join('a'), 40);
    await decoder.step({ join: [], advance: [], release: ['a'] });
    const again = await run(decoder, join('b'), 40);
    expect(first.got.a).toEqual(want.got.w);
    expect(again.got.b).toEqual(want.got.w);
    expect(again.steps).toBeLessThan(first.steps / 3);
  });

  it('gives the tokens (and log-probabilities) decoding a token a step gives, in fewer steps where text repeats', async () => {
    const scored = { ...greedy, logprobs: 1 };
    const join = [
      { seq: 'a', prompt: [464, 3290, 318, 257, 3290, 318, 257, 3290], sampling: scored }, // "... is a ... is a ..."
      { seq: 'b', prompt: PROMPTS.b, sampling: scored },
      { seq: 'c', prompt: PROMPTS.c, sampling: { ...scored, temperature: 1, seed: 7, frequencyPenalty: 0.5 } },
    ];
    const plain = await run(new Decoder(session, spec, sampler), join, 30);
    const fast = await run(new Decoder(session, spec, sampler, undefined, 0, speculation), join, 30);
    expect(fast.got).toEqual(plain.got);
    for (const id of ['a', 'b', 'c']) expect(fast.logprobs[id].map((l, i) => l - plain.logprobs[id][i]).every((d) => Math.abs(d) < 1e-4)).toBe(true);
    expect(fast.got.a).toEqual(await reference(join[0].prompt, 30));
    // Alone, the repetitive one (random weights, greedy: it repeats itself) takes drafts: fewer steps than tokens.
    const alone = await run(new Decoder(session, spec, sampler, undefined, 0, speculation), [join[0]], 30);
    expect(alone.accepted).toBeGreaterThan(10);
    expect(alone.steps).toBeLessThan(20);
  });

  it('holds a sequence to its response format through drafts: the tokens of a token a step', async () => {
    const json = { ...greedy, format: { type: 'json_object' as const } };
    const regex = { ...greedy, format: { type: 'regex' as const, pattern: '(ab|cd){3,12}' } };
    const join = [
      { seq: 'j', prompt: PROMPTS.b, sampling: json },
      { seq: 'r', prompt: [64, 65, 64, 65], sampling: regex },
    ];
    const plain = await run(new Decoder(session, spec, sampler), join, 16);
    const fast = await run(new Decoder(session, spec, sampler, undefined, 0, speculation), join, 16);
    expect(fast.got).toEqual(plain.got);
  });

  it('checks drafts on an FP16 cache (models/gpt.py --kv fp16) to the tokens of a token a step', async () => {
    const kv16Path = fileURLToPath(new URL('../../examples/models/tiny-gpt-kv16.onnx', import.meta.url));
    const kv16 = await ort.InferenceSession.create(kv16Path);
    const kv16Spec = generativeSpec(await readSignature(kv16Path)) as GenerativeSpec;
    const join = [
      { seq: 'a', prompt: [464, 3290, 318, 257, 3290, 318], sampling: greedy },
      { seq: 'b', prompt: PROMPTS.b, sampling: { ...greedy, temperature: 1, seed: 2, topK: 5 } },
    ];
    const plain = await run(new Decoder(kv16, kv16Spec, sampler), join, 24);
    const fast = await run(new Decoder(kv16, kv16Spec, sampler, undefined, 0, speculation), join, 24);
    expect(fast.got).toEqual(plain.got);
    expect(fast.accepted).toBeGreaterThan(5);
  });

  it('drafts nothing in steps of disable_by_batch_size sequences or more', async () => {
    const repeats = { seq: 'a', prompt: [464, 3290, 318, 257, 3290, 318, 257, 3290], sampling: greedy };
    const busy = new Decoder(session, spec, sampler, undefined, 0, { ...speculation, disableAt: 2 });
    expect((await run(busy, [repeats, { seq: 'b', prompt: PROMPTS.b, sampling: greedy }], 12)).accepted).toBe(0);
    expect((await run(busy, [{ ...repeats, seq: 'c' }], 12)).accepted).toBeGreaterThan(0);
  });

  it("drafts from a request's prediction (Predicted Outputs), to the tokens of a token a step, an edit included", async () => {
    const prompt = PROMPTS.b;
    const sampled = { ...greedy, temperature: 1, seed: 9, topK: 3 };
    for (const sampling of [greedy, sampled]) {
      const plain = (await run(new Decoder(session, spec, sampler), [{ seq: 'x', prompt, sampling }], 40)).got.x;
      // The prediction: the answer with three tokens in the middle changed (an edit it does not know of).
      const prediction = plain.map((t, i) => (i >= 15 && i < 18 ? t + 1 : t));
      const decoder = new Decoder(session, spec, sampler); // no `speculative` of its own: the prediction alone drafts
      const steps: StepResult[] = [];
      const got: number[] = [];
      let r = await decoder.step({ join: [{ seq: 'x', prompt, sampling: { ...sampling, prediction }, maxTokens: 40 }], advance: [], release: [] });
      for (;;) {
        steps.push(r);
        got.push(r.tokens.x, ...(r.more?.x ?? []));
        if (got.length >= 40) break;
        r = await decoder.step({ join: [], advance: ['x'], release: [] });
      }
      expect(got, JSON.stringify(sampling)).toEqual(plain);
      const taken = steps.reduce((n, x) => n + (x.predicted?.x ?? 0), 0);
      expect(taken).toBeGreaterThan(25); // all but around the edit
      expect(steps.length).toBeLessThan(15);
    }
  });

  it('keeps a sequence that takes drafts beside others that decode a token a step, caches intact', async () => {
    const decoder = new Decoder(session, spec, sampler, undefined, 0, speculation);
    const first = await run(decoder, [{ seq: 'x', prompt: [1, 2, 3, 1, 2, 3, 1, 2], sampling: greedy }], 12);
    // Joining later, alongside: each as if alone.
    const both = await run(
      decoder,
      [
        { seq: 'y', prompt: PROMPTS.a, sampling: greedy },
        { seq: 'z', prompt: [9, 8, 9, 8, 9], sampling: greedy },
      ],
      20,
    );
    expect(first.got.x).toEqual(await reference([1, 2, 3, 1, 2, 3, 1, 2], 12));
    expect(both.got.y).toEqual(await reference(PROMPTS.a, 20));
    expect(both.got.z).toEqual(await reference([9, 8, 9, 8, 9], 20));
  });
});

describe("vLLM's bad words", () => {
  it('never generate a word of two tokens: its second token is not drawn right after its first, in drafts too', async () => {
    const [g0, g1] = await reference(PROMPTS.b, 2);
    const sampling = { ...greedy, badWords: [[g0, g1]] };
    for (const speculation of [undefined, { tokens: 4, ngramMax: 2, ngramMin: 1 }]) {
      const decoder = new Decoder(session, spec, sampler, undefined, 0, speculation);
      const step = await decoder.step({ join: [{ seq: 'x', prompt: PROMPTS.b, sampling, maxTokens: 24 }], advance: [], release: [] });
      const tokens = [step.tokens.x];
      while (tokens.length < 24) {
        const next = await decoder.step({ join: [], advance: ['x'], release: [] });
        tokens.push(next.tokens.x, ...(next.more?.x ?? []));
      }
      expect(tokens[0]).toBe(g0);
      for (let i = 1; i < tokens.length; i++) expect(tokens[i - 1] === g0 && tokens[i] === g1).toBe(false);
    }
  });
});

describe("vLLM's thinking_token_budget", () => {
  /** A sequence's first `n` tokens, joining with `prompt` (and `resumed` of its own tokens at its end). */
  async function tokensOf(decoder: Decoder, prompt: number[], sampling: object, n: number, resumed?: number) {
    const first = await decoder.step({ join: [{ seq: 'x', prompt, sampling: sampling as typeof greedy, maxTokens: 32, resumed }], advance: [], release: [] });
    const tokens = [first.tokens.x];
    while (tokens.length < n) {
      const next = await decoder.step({ join: [], advance: ['x'], release: [] });
      tokens.push(next.tokens.x, ...(next.more?.x ?? []));
    }
    return tokens.slice(0, n);
  }

  it('writes the end tag after the budget, the same through drafts and on a replica resuming the sequence', async () => {
    const sampling = { ...greedy, thinking: { budget: 5, start: '<think>', end: '</think>', fromStart: true } };
    const free = await reference(PROMPTS.b, 5);
    const tokens = await tokensOf(new Decoder(session, spec, sampler), PROMPTS.b, sampling, 16);
    expect(tokens.slice(0, 5)).toEqual(free);
    expect(tokens.slice(5, 8)).toEqual(gpt2.encode('</think>')); // ['</', 'think', '>']
    expect(tokens.slice(8)).not.toEqual(gpt2.encode('</think>').slice(0, 8)); // then free again
    const drafted = await tokensOf(new Decoder(session, spec, sampler, undefined, 0, { tokens: 4, ngramMax: 4, ngramMin: 1 }), PROMPTS.b, sampling, 16);
    expect(drafted).toEqual(tokens);
    // Resumed within the budget, and in the middle of the end tag: it goes on as it would have.
    for (const at of [3, 6]) {
      const rest = await tokensOf(new Decoder(session, spec, sampler), [...PROMPTS.b, ...tokens.slice(0, at)], sampling, 16 - at, at);
      expect(rest, `resumed after ${at}`).toEqual(tokens.slice(at));
    }
  });

  it('holds a format to the answer after the thinking: the same through drafts and resumed in either part', async () => {
    const format = { type: 'regex', pattern: '[a-z]{6}' } as const;
    const sampling = { ...greedy, format, thinking: { budget: 4, start: '<think>', end: '</think>', fromStart: true } };
    const tokens = await tokensOf(new Decoder(session, spec, sampler), PROMPTS.b, sampling, 12);
    expect(tokens.slice(0, 4)).toEqual(await reference(PROMPTS.b, 4)); // (the thinking: free)
    expect(decode(gpt2, tokens)).toMatch(/<\/think>[a-z]{6}/);
    const drafted = await tokensOf(new Decoder(session, spec, sampler, undefined, 0, { tokens: 4, ngramMax: 4, ngramMin: 1 }), PROMPTS.b, sampling, 12);
    expect(drafted).toEqual(tokens);
    for (const at of [2, 8]) {
      const rest = await tokensOf(new Decoder(session, spec, sampler), [...PROMPTS.b, ...tokens.slice(0, at)], sampling, 12 - at, at);
      expect(rest, `resumed after ${at}`).toEqual(tokens.slice(at));
    }
  });
});

describe('a sequence resumed on another replica (its own lost)', () => {
  it('goes on as it would have: penalties, format and random draws counted from the tokens it brings', async () => {
    const settings = [
      { ...greedy },
      { ...greedy, temperature: 1, seed: 11, frequencyPenalty: 1.5 },
      { ...greedy, temperature: 0.8, seed: 5, format: { type: 'json_object' as const } },
    ];
    for (const sampling of settings) {
      const whole = new Decoder(session, spec, sampler);
      const tokens = [(await whole.step({ join: [{ seq: 'x', prompt: PROMPTS.b, sampling }], advance: [], release: [] })).tokens.x];
      for (let i = 0; i < 11; i++) tokens.push((await whole.step({ join: [], advance: ['x'], release: [] })).tokens.x);
      // Another replica takes it after 5 tokens.
      const other = new Decoder(session, spec, sampler);
      const join = { seq: 'x', prompt: [...PROMPTS.b, ...tokens.slice(0, 5)], sampling, resumed: 5 };
      const rest = [(await other.step({ join: [join], advance: [], release: [] })).tokens.x];
      for (let i = 0; i < 6; i++) rest.push((await other.step({ join: [], advance: ['x'], release: [] })).tokens.x);
      expect(rest, JSON.stringify(sampling)).toEqual(tokens.slice(5));
    }
  });
});

describe('beam search', () => {
  /** The model's log-probabilities after `ids` by full recomputation, the `k` likeliest ([token, logprob]). */
  async function likeliest(ids: number[], k: number): Promise<[number, number][]> {
    const logits = await lastLogits(ids);
    const max = Math.max(...logits);
    const norm = max + Math.log(logits.reduce((acc, v) => acc + Math.exp(v - max), 0));
    return [...logits.keys()]
      .sort((a, b) => logits[b] - logits[a])
      .slice(0, k)
      .map((t): [number, number] => [t, logits[t] - norm]);
  }

  /** The search by full recomputation of every beam (no cache, no rows to move): what the decoder must find. */
  async function referenceSearch(prompt: number[], params: BeamParams, maxTokens: number): Promise<Hypothesis[]> {
    let live = [{ tokens: [] as number[], logprob: 0 }];
    const finished: Hypothesis[] = [];
    for (let step = 0; step < maxTokens && !beamsDone(live, finished, params); step++) {
      const beams = await Promise.all(live.map(async (b) => ({ ...b, candidates: await likeliest([...prompt, ...b.tokens], 2 * params.width) })));
      live = expandBeams(beams, params, finished).map((e) => ({ tokens: [...beams[e.parent].tokens, e.token], logprob: e.logprob }));
    }
    return bestHypotheses(live, finished, params);
  }

  /** Runs sequences (a beam search among them) to their ends; each's tokens, or its search's texts. */
  async function run(decoder: Decoder, joins: { seq: string; prompt: number[]; sampling: object; maxTokens: number }[]) {
    const tokens: Record<string, number[]> = {};
    let beams: Record<string, Hypothesis[]> = {};
    let failed: Record<string, string> = {};
    let step = await decoder.step({ join: joins as never, advance: [], release: [] });
    let steps = 1;
    for (;;) {
      for (const [id, t] of Object.entries(step.tokens)) tokens[id] = [...(tokens[id] ?? []), t];
      beams = { ...beams, ...step.beams };
      failed = { ...failed, ...step.failed };
      const advance = joins.filter((j) => !beams[j.seq] && !failed[j.seq] && (tokens[j.seq]?.length ?? 0) < j.maxTokens).map((j) => j.seq);
      if (advance.length === 0) return { tokens, beams, failed, steps };
      step = await decoder.step({ join: [], advance, release: [] });
      steps++;
    }
  }

  const beam = (width: number, lengthPenalty = 1, ends: number[] = []) => ({ ...greedy, temperature: 1, beam: { width, lengthPenalty, ends } });

  it('finds what a search recomputing every beam finds: rows copied to the right beams, step after step', async () => {
    const params = { width: 3, lengthPenalty: 1, ends: [] };
    const want = await referenceSearch(PROMPTS.b, params, 8);
    const { beams } = await run(new Decoder(session, spec, sampler), [{ seq: 'x', prompt: PROMPTS.b, sampling: beam(3), maxTokens: 8 }]);
    expect(beams.x.map((h) => h.tokens)).toEqual(want.map((h) => h.tokens));
    beams.x.forEach((h, i) => {
      expect(h.logprob).toBeCloseTo(want[i].logprob, 3);
      expect(h.finishReason).toBe('length');
    });
    expect(new Set(beams.x.map((h) => h.tokens.join())).size).toBe(3);
    // Asked for logprobs: each token's, as full recomputation scores it, with its rank and alternatives.
    const logged = await run(new Decoder(session, spec, sampler), [
      { seq: 'x', prompt: PROMPTS.b, sampling: { ...beam(3), beam: { ...params, logprobs: 2 } }, maxTokens: 8 },
    ]);
    const best = logged.beams.x[0];
    expect(best.tokens).toEqual(want[0].tokens);
    expect(best.logged?.map((t) => t.token)).toEqual(best.tokens);
    for (const [i, t] of (best.logged ?? []).entries()) {
      const [top0, top1] = await likeliest([...PROMPTS.b, ...best.tokens.slice(0, i)], 2);
      expect(t.logprob).toBeCloseTo((await likeliest([...PROMPTS.b, ...best.tokens.slice(0, i)], 50257)).find(([k]) => k === t.token)?.[1] as number, 3);
      expect(t.top.map(([k]) => k)).toEqual([top0[0], top1[0]]);
      expect(t.top[t.rank - 1]?.[0] ?? t.token).toBe(t.token);
    }
    expect((best.logged ?? []).reduce((sum, t) => sum + t.logprob, 0)).toBeCloseTo(best.logprob, 6);
    // Its prompt computed 4 tokens a step (prefill_chunk), after a cached prefix: the same texts.
    const cache = new PrefixCache(1 << 24, spec);
    const prompt = [...PROMPTS.b, ...PROMPTS.b, ...PROMPTS.b];
    const whole = await run(new Decoder(session, spec, sampler), [{ seq: 'x', prompt, sampling: beam(3), maxTokens: 6 }]);
    for (let i = 0; i < 2; i++) {
      const chunked = await run(new Decoder(session, spec, sampler, cache, 4), [{ seq: 'x', prompt, sampling: beam(3), maxTokens: 6 }]);
      expect(chunked.beams.x.map((h) => h.tokens)).toEqual(whole.beams.x.map((h) => h.tokens));
    }
    expect(cache.hits).toBe(1);
  });

  it('with one beam is greedy; beside other sequences it finds what it finds alone, and theirs are unchanged', async () => {
    const one = await run(new Decoder(session, spec, sampler), [{ seq: 'x', prompt: PROMPTS.a, sampling: beam(1), maxTokens: 10 }]);
    expect(one.beams.x[0].tokens).toEqual(await reference(PROMPTS.a, 10));
    const alone = await run(new Decoder(session, spec, sampler), [{ seq: 'x', prompt: PROMPTS.b, sampling: beam(4), maxTokens: 12 }]);
    const mixed = await run(new Decoder(session, spec, sampler), [
      { seq: 'p', prompt: PROMPTS.a, sampling: greedy, maxTokens: 20 },
      { seq: 'x', prompt: PROMPTS.b, sampling: beam(4), maxTokens: 12 },
      { seq: 'q', prompt: PROMPTS.c, sampling: greedy, maxTokens: 16 },
    ]);
    expect(mixed.beams.x.map((h) => h.tokens)).toEqual(alone.beams.x.map((h) => h.tokens));
    expect(mixed.tokens.p).toEqual(await reference(PROMPTS.a, 20));
    expect(mixed.tokens.q).toEqual(await reference(PROMPTS.c, 16));
  });

  it('a search whose beams cannot get rows (out of memory) fails alone, its rows freed; the others go on as they would', async () => {
    const joins = [
      { seq: 'x', prompt: PROMPTS.b, sampling: beam(3), maxTokens: 8 },
      { seq: 'y', prompt: PROMPTS.a, sampling: beam(3), maxTokens: 8 },
      { seq: 'p', prompt: PROMPTS.c, sampling: greedy, maxTokens: 8 },
    ];
    const alone = await run(new Decoder(session, spec, sampler), joins);
    const decoder = new Decoder(session, spec, sampler);
    // y's second new row cannot be had (its first was): as when the cache cannot grow.
    const kv = (decoder as unknown as { kv: { add: (seq: { beam?: { id: string } }, positions: number) => void } }).kv;
    const add = kv.add.bind(kv);
    let forks = 0;
    kv.add = (seq, positions) => {
      if (seq.beam?.id.startsWith('y#') && ++forks === 2) throw new RangeError('Array buffer allocation failed');
      add(seq, positions);
    };
    const mixed = await run(decoder, joins);
    expect(mixed.failed).toEqual({ y: 'its beam search failed: Array buffer allocation failed' });
    expect(mixed.beams.x.map((h) => h.tokens)).toEqual(alone.beams.x.map((h) => h.tokens)); // (log-probabilities: to the batch's rounding)
    expect(mixed.tokens.p).toEqual(alone.tokens.p);
    // y's rows (the one forked before the failure too) are freed: p's, once released, was the last.
    await decoder.step({ join: [], advance: [], release: ['p'] });
    expect([decoder.active, decoder.cacheBytes]).toEqual([0, 0]);
  });

  it('ends a hypothesis at an end token, stops early once none can beat those ended, and frees every row', async () => {
    // The prompt's likeliest next token as the end token: that hypothesis ends at once (an empty text). With
    // length_penalty 0 (the plain sum) nothing longer beats it; the other beam runs to max_tokens.
    const [[c0, lp0], [c1]] = await likeliest(PROMPTS.b, 2);
    const decoder = new Decoder(session, spec, sampler);
    const one = await run(decoder, [{ seq: 'x', prompt: PROMPTS.b, sampling: beam(2, 0, [c0]), maxTokens: 6 }]);
    expect(one.beams.x[0]).toMatchObject({ tokens: [], finishReason: 'stop' });
    expect(one.beams.x[0].logprob).toBeCloseTo(lp0, 3);
    expect(one.beams.x[1]).toMatchObject({ tokens: expect.any(Array), finishReason: 'length' });
    expect(one.beams.x[1].tokens).toHaveLength(6);
    expect(one.beams.x[1].tokens).not.toContain(c0);
    // Both likeliest end: two hypotheses of two ended, and no live beam can beat them: done after the prompt.
    const two = await run(decoder, [{ seq: 'y', prompt: PROMPTS.b, sampling: beam(2, 0, [c0, c1]), maxTokens: 40 }]);
    expect(two.steps).toBe(1);
    expect(two.beams.y.map((h) => h.finishReason)).toEqual(['stop', 'stop']);
    expect(decoder.active).toBe(0);
    expect(decoder.cacheBytes).toBe(0);
  });
});
