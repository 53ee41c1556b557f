import { describe, expect, it } from 'vitest';
import { RateLimiter, take } from './rate-limit.js';

const limit = { perSecond: 2, burst: 3 };

describe('take (token bucket)', () => {
  it.each([
    ['a new caller has the full burst', undefined, 0, true, 2],
    ['the last token goes', { tokens: 1, at: 0 }, 0, true, 0],
    ['empty: refused, with the wait for one token', { tokens: 0, at: 0 }, 0, false, 0],
    ['half a second refills one token at 2/s', { tokens: 0, at: 0 }, 500, true, 0],
    ['refills never pass the burst', { tokens: 0, at: 0 }, 60_000, true, 2],
  ] as const)('%s', (_name, bucket, now, allowed, remaining) => {
    const v = take(bucket, limit, now);
    expect(v.allowed).toBe(allowed);
    expect(v.remaining).toBe(remaining);
  });

  it('says how long to wait', () => {
    expect(take({ tokens: 0, at: 0 }, limit, 0).resetS).toBe(1);
    expect(take({ tokens: 0, at: 0 }, { perSecond: 0.1, burst: 1 }, 0).resetS).toBe(10);
  });
});

describe('RateLimiter', () => {
  it('keeps callers apart and recovers with time', () => {
    let now = 0;
    const limiter = new RateLimiter(limit, () => now);
    expect([1, 2, 3, 4].map(() => limiter.check('a').allowed)).toEqual([true, true, true, false]);
    expect(limiter.check('b').allowed).toBe(true);
    now = 1000;
    expect(limiter.check('a').allowed).toBe(true);
  });

  it("tells what each key spends and gives back, and takes what it spent elsewhere, below empty if so (a fleet's other gateways)", () => {
    let now = 0;
    const limiter = new RateLimiter(limit, () => now);
    const told: [string, number][] = [];
    limiter.onSpend = (key, n) => told.push([key, n]);
    limiter.check('a', 2);
    limiter.giveBack('a', 1);
    expect(limiter.check('a', 5).allowed).toBe(false); // refused: nothing spent
    expect(told).toEqual([
      ['a', 2],
      ['a', -1],
    ]);
    limiter.charge('b', limit.burst + 2); // spent elsewhere: two below empty
    expect(limiter.check('b').allowed).toBe(false);
    now = (3 / limit.perSecond) * 1000; // three refilled: one above empty
    expect(limiter.check('b').allowed).toBe(true);
    expect(limiter.check('b').allowed).toBe(false);
    limiter.charge('b', -100); // given back elsewhere: full, no more
    expect([1, 2, 3, 4].map(() => limiter.check('b').allowed)).toEqual([true, true, true, false]);
  });

  it('forgets full buckets past its key budget', () => {
    let now = 0;
    const limiter = new RateLimiter(limit, () => now, 10);
    for (let i = 0; i < 50; i++) limiter.check(`ip-${i}`);
    now = 10_000;
    limiter.check('x');
    expect((limiter as unknown as { buckets: Map<string, unknown> }).buckets.size).toBeLessThanOrEqual(11);
  });
});
