/**
 * Token buckets per caller: `perSecond` tokens refill continuously up to `burst`; a request takes one.
 * The decision is pure (`take`); the limiter only keeps buckets, and forgets full ones so an address
 * scan cannot grow memory without bound.
 */
export type Bucket = { tokens: number; at: number };
export type Limit = { perSecond: number; burst: number };
export type Verdict = { allowed: boolean; remaining: number /** Seconds until a token is available (allowed: until full). */; resetS: number; bucket: Bucket };

export function take(bucket: Bucket | undefined, limit: Limit, nowMs: number): Verdict {
  const last = bucket ?? { tokens: limit.burst, at: nowMs };
  const tokens = Math.min(limit.burst, last.tokens + ((nowMs - last.at) / 1000) * limit.perSecond);
  if (tokens >= 1) {
    const left = tokens - 1;
    return { allowed: true, remaining: Math.floor(left), resetS: Math.ceil((limit.burst - left) / limit.perSecond), bucket: { tokens: left, at: nowMs } };
  }
  return { allowed: false, remaining: 0, resetS: Math.ceil((1 - tokens) / limit.perSecond), bucket: { tokens, at: nowMs } };
}

export class RateLimiter {
  private buckets = new Map<string, Bucket>();

  constructor(
    readonly limit: Limit,
    private now: () => number = Date.now,
    private maxKeys = 100_000,
  ) {}

  check(key: string): Verdict {
    const verdict = take(this.buckets.get(key), this.limit, this.now());
    this.buckets.set(key, verdict.bucket);
    if (this.buckets.size > this.maxKeys) this.forgetFull();
    return verdict;
  }

  private forgetFull(): void {
    const now = this.now();
    for (const [key, b] of this.buckets) if (take(b, this.limit, now).remaining >= this.limit.burst - 1) this.buckets.delete(key);
  }
}
