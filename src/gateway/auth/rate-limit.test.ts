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

  it('forgets full buckets past its key budget', () => {
    let now = 0;
    const limiter = new RateLimiter(limit, () => now, 10);
    for (let i = 0; i < 50; i++) limiter.check(`ip-${i}`);
    now = 10_000;
    limiter.check('x');
    expect((limiter as unknown as { buckets: Map<string, unknown> }).buckets.size).toBeLessThanOrEqual(11);
  });
});
