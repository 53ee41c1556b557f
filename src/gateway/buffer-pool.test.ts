import { describe, expect, it } from 'vitest';
import { BufferPool, sizeClass } from './buffer-pool.js';

describe('request-body buffer pool', () => {
  it('rounds sizes up by at most an eighth', () => {
    for (const n of [65_536, 65_537, 150_528, 1_204_373, 4_816_896, 77_070_336]) {
      expect(sizeClass(n)).toBeGreaterThanOrEqual(n);
      expect(sizeClass(n) / n).toBeLessThanOrEqual(1.125);
      expect(sizeClass(sizeClass(n))).toBe(sizeClass(n));
    }
  });

  it('hands the same memory to the next body of a similar size', () => {
    const pool = new BufferPool();
    const a = pool.acquire(1_204_373);
    expect(a.byteLength).toBe(sizeClass(1_204_373));
    pool.release(a);
    expect(pool.acquire(1_204_000)).toBe(a);
    expect(pool.acquire(1_204_000)).not.toBe(a); // taken: a fresh one
  });

  it('never takes memory it did not make, twice, or beyond its cap', () => {
    const pool = new BufferPool(3 * 2 ** 20);
    pool.release(Buffer.allocUnsafeSlow(65_536).buffer); // a socket's read buffer, say
    expect(pool.pooledBytes).toBe(0);
    const a = pool.acquire(2 ** 20);
    const b = pool.acquire(2 ** 20);
    const c = pool.acquire(2 ** 20);
    const d = pool.acquire(2 ** 20);
    pool.release(a);
    pool.release(a);
    expect(pool.pooledBytes).toBe(2 ** 20);
    for (const x of [b, c, d]) pool.release(x);
    expect(pool.pooledBytes).toBe(3 * 2 ** 20);
  });

  it('leaves small bodies to the garbage collector', () => {
    const pool = new BufferPool();
    const small = pool.acquire(4096);
    expect(small.byteLength).toBe(4096);
    pool.release(small);
    expect(pool.pooledBytes).toBe(0);
  });
});
