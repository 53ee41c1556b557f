/**
 * Token buckets per caller: `perSecond` tokens refill continuously up to `burst`; a request takes one (or, for
 * a bucket of generated tokens, as many as it may use).
 * The decision is pure (`take`); the limiter only keeps buckets, and forgets full ones so an address
 * scan cannot grow memory without bound.
 */
export type Bucket = { tokens: number; at: number };
export type Limit = { perSecond: number; burst: number };
export type Verdict = { allowed: boolean; remaining: number /** Seconds until a token is available (allowed: until full). */; resetS: number; bucket: Bucket };

export function take(bucket: Bucket | undefined, limit: Limit, nowMs: number, n = 1): Verdict {
  const last = bucket ?? { tokens: limit.burst, at: nowMs };
  const tokens = Math.min(limit.burst, last.tokens + ((nowMs - last.at) / 1000) * limit.perSecond);
  if (tokens >= n) {
    const left = tokens - n;
    return { allowed: true, remaining: Math.floor(left), resetS: Math.ceil((limit.burst - left) / limit.perSecond), bucket: { tokens: left, at: nowMs } };
  }
  return { allowed: false, remaining: Math.floor(tokens), resetS: Math.ceil((n - tokens) / limit.perSecond), bucket: { tokens, at: nowMs } };
}

export class RateLimiter {
  private buckets = new Map<string, Bucket>();
  /** Told of what each key spends here (given back: negative), for the fleet's other gateways (SharedLimits). */
  onSpend?: (key: string, n: number) => void;

  constructor(
    readonly limit: Limit,
    private now: () => number = Date.now,
    private maxKeys = 100_000,
  ) {}

  /** Takes `n` from `key`'s bucket if it holds that many (else takes nothing). */
  check(key: string, n = 1): Verdict {
    const verdict = take(this.buckets.get(key), this.limit, this.now(), n);
    this.buckets.set(key, verdict.bucket);
    if (this.buckets.size > this.maxKeys) this.forgetFull();
    if (verdict.allowed) this.onSpend?.(key, n);
    return verdict;
  }

  /** Puts back `n` taken but not used (up to the bucket's size). */
  giveBack(key: string, n: number): void {
    const bucket = this.buckets.get(key);
    if (bucket && n > 0) {
      bucket.tokens = Math.min(this.limit.burst, bucket.tokens + n);
      this.onSpend?.(key, -n);
    }
  }

  /**
   * Takes `n` that `key` spent elsewhere (another gateway of the fleet; negative: given back there): its bucket may go
   * below empty, and refills from there as ever.
   */
  charge(key: string, n: number): void {
    const now = this.now();
    const { tokens } = take(this.buckets.get(key), this.limit, now, 0).bucket; // (refilled up to now)
    this.buckets.set(key, { tokens: Math.min(this.limit.burst, tokens - n), at: now });
  }

  private forgetFull(): void {
    const now = this.now();
    for (const [key, b] of this.buckets) if (take(b, this.limit, now).remaining >= this.limit.burst - 1) this.buckets.delete(key);
  }
}
