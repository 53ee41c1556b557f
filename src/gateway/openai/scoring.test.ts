import { describe, expect, it } from 'vitest';
import { probabilities } from './scoring.js';

describe('class probabilities from logits', () => {
  it('is a softmax over several classes, stable for large logits', () => {
    const p = probabilities([1, 2, 3]);
    const e = [Math.exp(1), Math.exp(2), Math.exp(3)];
    const sum = e[0] + e[1] + e[2];
    for (const [i, x] of p.entries()) expect(x).toBeCloseTo(e[i] / sum, 12);
    expect(probabilities([1000, 1000])).toEqual([0.5, 0.5]);
  });

  it("is the sigmoid for one class (that class's probability)", () => {
    expect(probabilities([0])).toEqual([0.5]);
    expect(probabilities([2])[0]).toBeCloseTo(1 / (1 + Math.exp(-2)), 12);
  });
});
