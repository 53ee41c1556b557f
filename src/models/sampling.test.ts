import { describe, expect, it } from 'vitest';
import { adjustLogits, kept, mostLikely, pickToken, Sampler, scoreTokens, seededRandom } from './sampling.js';

const logits = Float32Array.from([1, 3, 2, 0.5, 2.9]);
const softmax = (l: Float32Array, t = 1) => {
  const e = Array.from(l, (x) => Math.exp(x / t));
  const z = e.reduce((a, b) => a + b);
  return Float32Array.from(e, (x) => x / z);
};
const draw = (n: number, s: Partial<Parameters<typeof pickToken>[1]>, seed = 1) => {
  const random = seededRandom(seed);
  const probs = softmax(logits, s.temperature || 1);
  return Array.from({ length: n }, () => pickToken(probs, { temperature: 1, topP: 1, topK: 0, seed, ...s }, random));
};

describe('pickToken', () => {
  it('draws only tokens at least min_p times as likely as the most likely one, in their proportions', () => {
    // probabilities ≈ [0.06, 0.38, 0.14, 0.03, 0.34]: min_p 0.3 keeps tokens of ≥ 0.115 (1, 2, 4)
    const got = draw(3000, { minP: 0.3 });
    expect(new Set(got)).toEqual(new Set([1, 2, 4]));
    const share = (t: number) => got.filter((x) => x === t).length / got.length;
    const p = softmax(logits);
    expect(share(2)).toBeCloseTo(p[2] / (p[1] + p[2] + p[4]), 1);
    // With top_k 2 as well, the stricter of the two: tokens 1 and 4.
    expect(new Set(draw(500, { minP: 0.3, topK: 2 }))).toEqual(new Set([1, 4]));
    // min_p 1: the most likely token alone, whatever the temperature.
    expect(new Set(draw(200, { minP: 1, temperature: 3 }))).toEqual(new Set([1]));
  });

  it('never draws a token of probability 0 (masked out), even when the random draw is exactly 0', () => {
    const probs = Float32Array.from([0, 0, 0.5, 0, 0.5, 0]);
    const sampling = { temperature: 1, topP: 1, topK: 0, seed: 1 };
    expect(pickToken(probs, sampling, () => 0)).toBe(2);
    expect(pickToken(probs, sampling, () => 0, Int32Array.of(0, 2, 4, 5))).toBe(2);
  });

  it('keeps for top_k / top_p what reading the row sorted keeps, ties and masked tokens included', () => {
    const sortedKeep = (p: Float32Array, topK: number, topP: number) => {
      const sorted = p.slice().sort().reverse();
      let keep = topK > 0 ? Math.min(topK, p.length) : p.length;
      let cumulative = 0;
      for (let i = 0; i < keep; i++) {
        cumulative += sorted[i];
        if (cumulative >= topP) keep = i + 1;
        if (cumulative >= topP) break;
      }
      return { floor: sorted[keep - 1], sum: sorted.slice(0, keep).reduce((a, b) => a + b, 0) };
    };
    const random = seededRandom(11);
    for (let trial = 0; trial < 300; trial++) {
      const n = 1 + Math.floor(random() * 3000);
      const shape = trial % 4; // peaked, flat, coarse (many ties), masked (most at 0)
      const raw = Float32Array.from({ length: n }, () =>
        shape === 0 ? Math.exp(random() * 12) : shape === 1 ? 1 + random() * 0.01 : shape === 2 ? Math.floor(random() * 4) + 1 : random() < 0.9 ? 0 : random(),
      );
      const z = raw.reduce((a, b) => a + b, 0) || 1;
      const p = raw.map((x) => x / z);
      const topK = random() < 0.5 ? 0 : 1 + Math.floor(random() * n);
      const topP = random() < 0.3 ? 1 : random();
      const want = sortedKeep(p, topK, topP);
      const got = kept(p.slice(), topK, topP);
      expect(got.floor, `trial ${trial}`).toBe(want.floor);
      expect(got.sum).toBeCloseTo(want.sum, 9);
    }
  });

  it('repeats itself for the same seed and differs for another', () => {
    expect(draw(50, {}, 7)).toEqual(draw(50, {}, 7));
    expect(draw(50, {}, 7)).not.toEqual(draw(50, {}, 8));
  });

  it('keeps only the top_k tokens', () => {
    expect(new Set(draw(300, { topK: 2 }))).toEqual(new Set([1, 4]));
  });

  it('keeps the nucleus whose probability reaches top_p', () => {
    // softmax: token 1 ≈ 0.40, token 4 ≈ 0.36, token 2 ≈ 0.15 ...; top_p 0.7 needs tokens 1 and 4.
    expect(new Set(draw(300, { topP: 0.7 }))).toEqual(new Set([1, 4]));
  });

  it('draws the same tokens reading only the allowed ones of a masked row as reading the whole row', () => {
    const row = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i * 7.3) * 4);
    const allowed = Int32Array.from([3, 17, 18, 250, 251, 600, 998]);
    const masked = row.map((x, i) => (allowed.includes(i) ? x : Number.NEGATIVE_INFINITY));
    for (const s of [{}, { topK: 3 }, { topP: 0.8 }, { topK: 5, topP: 0.5 }, { temperature: 0.7 }]) {
      const probs = softmax(masked, (s as { temperature?: number }).temperature ?? 1);
      const sampling = { temperature: 1, topP: 1, topK: 0, seed: 1, ...s };
      const [whole, among] = [seededRandom(9), seededRandom(9)];
      const a = Array.from({ length: 200 }, () => pickToken(probs, sampling, whole));
      const b = Array.from({ length: 200 }, () => pickToken(probs, sampling, among, allowed));
      expect(b).toEqual(a);
      expect(a.every((t) => allowed.includes(t))).toBe(true);
    }
  });

  it('follows the distribution', () => {
    const counts = new Array(5).fill(0);
    for (const t of draw(20_000, {})) counts[t]++;
    const p = softmax(logits);
    for (let i = 0; i < 5; i++) expect(counts[i] / 20_000).toBeCloseTo(p[i], 1);
  });
});

describe('adjustLogits (OpenAI logit_bias, frequency and presence penalties)', () => {
  const base = { temperature: 1, topP: 1, topK: 0, seed: 1 };
  it('adds the bias of each listed token', () => {
    const row = logits.slice();
    adjustLogits(
      row,
      {
        ...base,
        logitBias: [
          [0, 100],
          [4, -3],
        ],
      },
      undefined,
    );
    expect(Array.from(row)).toEqual([101, 3, 2, 0.5, expect.closeTo(-0.1, 5)]);
  });

  it('suppresses tokens until the sequence has generated enough (min_tokens)', () => {
    const suppress = { tokens: [1], until: 2 };
    const early = logits.slice();
    adjustLogits(early, { ...base, suppress }, undefined, 1);
    expect(early[1]).toBe(Number.NEGATIVE_INFINITY);
    const late = logits.slice();
    adjustLogits(late, { ...base, suppress }, undefined, 2);
    expect(late[1]).toBe(3);
  });

  it('subtracts frequency x times generated + presence from each generated token', () => {
    const row = logits.slice();
    adjustLogits(
      row,
      { ...base, frequencyPenalty: 0.5, presencePenalty: 1 },
      new Map([
        [1, 3],
        [3, 1],
      ]),
    );
    expect(Array.from(row)).toEqual([1, 3 - 1.5 - 1, 2, 0.5 - 0.5 - 1, expect.closeTo(2.9, 5)]);
  });

  it('divides the positive logits and multiplies the negative ones of every token seen (repetition_penalty)', () => {
    const row = Float32Array.from([1, 3, -2, 0.5, 2.9]);
    adjustLogits(row, { ...base, repetitionPenalty: 2 }, undefined, 0, new Set([1, 2]));
    expect(Array.from(row)).toEqual([1, 1.5, -4, 0.5, expect.closeTo(2.9, 5)]);
  });

  it("keeps only the allowed tokens (allowed_token_ids), and never a bad word's last token after the rest of it", () => {
    const allowed = logits.slice();
    adjustLogits(allowed, { ...base, allowedTokens: [1, 3] }, undefined);
    expect(Array.from(allowed)).toEqual([-Infinity, 3, -Infinity, 0.5, -Infinity]);
    const bad = { ...base, badWords: [[4], [0, 2]] };
    const after = logits.slice();
    adjustLogits(after, bad, undefined, 2, undefined, [3, 0]);
    expect(Array.from(after)).toEqual([1, 3, -Infinity, 0.5, -Infinity]); // 4 always; 2 right after 0
    const elsewhere = logits.slice();
    adjustLogits(elsewhere, bad, undefined, 2, undefined, [0, 3]);
    expect(elsewhere[2]).toBe(2);
  });
});

describe('mostLikely', () => {
  it('gives the n most likely tokens, most likely first, with their scores', () => {
    const p = softmax(logits);
    expect(mostLikely(p, 3).map(([t]) => t)).toEqual([1, 4, 2]);
    expect(mostLikely(p, 1)).toEqual([[1, p[1]]]);
    expect(mostLikely(p, 9)).toHaveLength(5);
    expect(mostLikely(p, 0)).toEqual([]);
  });
});

describe('scoreTokens', () => {
  it('gives each token its log-probability under its row, exactly even where a float32 probability is 0', () => {
    const rows = Float32Array.from([...logits, 0, 200, 0, 0, 0]);
    const [first, second] = scoreTokens(rows, 5, [2, 0], 2);
    expect(first.logprob).toBeCloseTo(Math.log(softmax(logits)[2]), 6);
    expect(first.top.map(([t]) => t)).toEqual([1, 4]);
    expect([first.rank, second.rank]).toEqual([3, 2]); // 1: the most likely token (ties share a rank)
    expect(second.logprob).toBeCloseTo(-200, 6); // e^-200 underflows a float32
    expect(second.top[0]).toEqual([1, expect.closeTo(0, 6)]);
  });
});

describe('Sampler (ONNX Runtime softmax + argmax)', () => {
  it('reports the drawn token’s log-probability and the alternatives, at the row’s temperature, only when asked', async () => {
    const sampler = await Sampler.create();
    const row = (sampling: object) => ({ sampling: { temperature: 0.5, topP: 1, topK: 0, seed: 3, ...sampling }, random: seededRandom(3) });
    const { tokens, logprobs } = await sampler.sample(Float32Array.from([...logits, ...logits]), 5, [row({ logprobs: 2 }), row({})]);
    const p = softmax(logits, 0.5);
    expect(logprobs[0]?.logprob).toBeCloseTo(Math.log(p[tokens[0]]), 5);
    expect(logprobs[0]?.top.map(([t]) => t)).toEqual([1, 4]);
    expect(logprobs[0]?.top[1][1]).toBeCloseTo(Math.log(p[4]), 5);
    expect(logprobs[0]?.rank).toBe(1 + p.filter((x) => x > p[tokens[0]]).length);
    expect(logprobs[1]).toBeUndefined();
  });

  it('applies logit bias and penalties before choosing', async () => {
    const sampler = await Sampler.create();
    const greedy = { temperature: 0, topP: 1, topK: 0, seed: 1 };
    const row = { sampling: { ...greedy, presencePenalty: 2 }, random: seededRandom(1), generated: new Map([[1, 1]]) };
    expect((await sampler.sample(logits.slice(), 5, [row])).tokens).toEqual([4]); // token 1 (3 - 2) falls below token 4 (2.9)
    expect((await sampler.sample(logits.slice(), 5, [{ sampling: { ...greedy, logitBias: [[3, 5]] }, random: seededRandom(1) }])).tokens).toEqual([3]);
  });

  it('draws for each row of a batch mixing greedy and sampled rows what it would draw alone (greedy rows skip the softmax)', async () => {
    const sampler = await Sampler.create();
    const vocab = 300;
    const rowOf = (seed: number) => Float32Array.from({ length: vocab }, (_, t) => Math.sin(t * 0.37 + seed) * 3);
    const settings = [
      { temperature: 0, topP: 1, topK: 0, seed: 1 },
      { temperature: 0.8, topP: 1, topK: 0, seed: 2 },
      { temperature: 0, topP: 1, topK: 0, seed: 3, logprobs: 2 }, // greedy but wants log-probabilities
      { temperature: 1.3, topP: 0.9, topK: 20, seed: 4 },
      { temperature: 1, topP: 1, topK: 1, seed: 5 },
    ];
    const logits = new Float32Array(settings.length * vocab);
    for (const i of settings.keys()) logits.set(rowOf(i), i * vocab);
    logits[4 * vocab + 7] = logits[4 * vocab + 9] = 100; // a tie: the first index, as ONNX Runtime's ArgMax
    const together = await sampler.sample(
      logits.slice(),
      vocab,
      settings.map((s) => ({ sampling: s, random: seededRandom(s.seed) })),
    );
    for (const [i, s] of settings.entries()) {
      const alone = await sampler.sample(
        rowOf(i).map((x, t) => logits[i * vocab + t] ?? x),
        vocab,
        [{ sampling: s, random: seededRandom(s.seed) }],
      );
      expect(together.tokens[i], `row ${i}`).toBe(alone.tokens[0]);
      expect(together.logprobs[i]).toEqual(alone.logprobs[0]);
    }
    expect(together.tokens[0]).toBe(Array.from(rowOf(0)).indexOf(Math.max(...rowOf(0))));
    expect(together.tokens[4]).toBe(7);
    expect(together.logprobs[2]?.top).toHaveLength(2);
  });

  it('draws a row whose format allows few tokens from those alone, at its temperature (softmax computed here)', async () => {
    const sampler = await Sampler.create();
    const vocab = 3000;
    const allowed = Int32Array.of(5, 17, 400, 2999);
    // What a response format's constraint does: -Infinity for the rest, the allowed tokens given in order.
    const constraint = {
      mask(row: Float32Array) {
        row.forEach((_, t) => {
          if (!allowed.includes(t)) row[t] = Number.NEGATIVE_INFINITY;
        });
        return allowed;
      },
    } as never;
    const logits = Float32Array.from({ length: vocab }, (_, t) => Math.cos(t));
    const expected = softmax(
      Float32Array.from(allowed, (t) => logits[t]),
      0.7,
    );
    const seen = new Map<number, number>();
    for (let i = 0; i < 400; i++) {
      const r = await sampler.sample(logits.slice(), vocab, [
        { sampling: { temperature: 0.7, topP: 1, topK: 0, seed: 1, logprobs: 1 }, random: seededRandom(i), constraint },
      ]);
      seen.set(r.tokens[0], (seen.get(r.tokens[0]) ?? 0) + 1);
      expect(r.logprobs[0]?.logprob).toBeCloseTo(Math.log(expected[allowed.indexOf(r.tokens[0])]), 5);
    }
    expect([...seen.keys()].every((t) => allowed.includes(t))).toBe(true);
    for (const [k, t] of allowed.entries()) expect((seen.get(t) ?? 0) / 400).toBeCloseTo(expected[k], 1);
  });

  it('draws a temperature-1 row the same whether its step runs the head without the temperature (all at 1) or with it', async () => {
    const sampler = await Sampler.create();
    const vocab = 500;
    const row = Float32Array.from({ length: vocab }, (_, t) => Math.sin(t * 1.7) * 3);
    const at = (temperature: number, seed: number) => ({ sampling: { temperature, topP: 1, topK: 0, seed, logprobs: 2 }, random: seededRandom(seed) });
    for (let seed = 1; seed <= 20; seed++) {
      const alone = await sampler.sample(row.slice(), vocab, [at(1, seed)]); // every row at 1: the unscaled head
      const mixed = await sampler.sample(Float32Array.from([...row, ...row]), vocab, [at(1, seed), at(0.5, 99)]);
      expect(mixed.tokens[0]).toBe(alone.tokens[0]);
      expect(mixed.logprobs[0]).toEqual(alone.logprobs[0]);
    }
  });

  it('applies each row its own temperature, and greedy rows take the argmax', async () => {
    const sampler = await Sampler.create();
    const rows = Float32Array.from([...logits, 5, 1, 1, 1, 1]);
    const greedy = { sampling: { temperature: 0, topP: 1, topK: 0, seed: 1 }, random: seededRandom(1) };
    const hot = { sampling: { temperature: 100, topP: 1, topK: 0, seed: 1 }, random: seededRandom(2) };
    expect((await sampler.sample(rows, 5, [greedy, greedy])).tokens).toEqual([1, 0]);
    // At temperature 100 the second row is nearly uniform: all five tokens turn up.
    const seen = new Set<number>();
    for (let i = 0; i < 200; i++) seen.add((await sampler.sample(rows, 5, [greedy, hot])).tokens[1]);
    expect(seen.size).toBe(5);
  });
});
