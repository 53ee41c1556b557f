import { describe, expect, it } from 'vitest';
import { sample, seededRandom } from './sampling.js';

const logits = Float32Array.from([1, 3, 2, 0.5, 2.9]);
const draw = (n: number, s: Partial<Parameters<typeof sample>[1]>, seed = 1) => {
  const random = seededRandom(seed);
  return Array.from({ length: n }, () => sample(logits, { temperature: 1, topP: 1, topK: 0, seed, ...s }, random));
};

describe('sample', () => {
  it('is greedy at temperature 0', () => {
    expect(draw(5, { temperature: 0 })).toEqual([1, 1, 1, 1, 1]);
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

  it('follows the softmax distribution', () => {
    const counts = new Array(5).fill(0);
    for (const t of draw(20_000, {})) counts[t]++;
    const z = Array.from(logits, Math.exp).reduce((a, b) => a + b);
    for (let i = 0; i < 5; i++) expect(counts[i] / 20_000).toBeCloseTo(Math.exp(logits[i]) / z, 1);
  });
});
