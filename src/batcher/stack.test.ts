import { describe, expect, it } from 'vitest';
import type { Inputs } from '../tensor/index.js';
import { firstRows, groupKey, paddedSize, padRows, splitOutputs, stackInputs } from './stack.js';

const f32 = (shape: number[], values: number[]): Inputs => ({ x: { dtype: 'FP32', shape, data: Float32Array.from(values) } });

describe('stacking a batch', () => {
  it('concatenates rows of equal shape in order', () => {
    const batch = stackInputs([f32([1, 2], [1, 2]), f32([2, 2], [3, 4, 5, 6])], {});
    expect(batch.x.shape).toEqual([3, 2]);
    expect(Array.from(batch.x.data as Float32Array)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('zero-pads a paddable axis to the longest request', () => {
    const batch = stackInputs([f32([1, 2, 2], [1, 2, 3, 4]), f32([1, 2, 3], [5, 6, 7, 8, 9, 10])], { x: { axes: [2], value: 0 } });
    expect(batch.x.shape).toEqual([2, 2, 3]);
    expect(Array.from(batch.x.data as Float32Array)).toEqual([1, 2, 0, 3, 4, 0, 5, 6, 7, 8, 9, 10]);
  });

  it('pads with the configured value, also for int64', () => {
    const a: Inputs = { ids: { dtype: 'INT64', shape: [1, 1], data: BigInt64Array.from([7n]) } };
    const b: Inputs = { ids: { dtype: 'INT64', shape: [1, 3], data: BigInt64Array.from([1n, 2n, 3n]) } };
    const batch = stackInputs([a, b], { ids: { axes: [1], value: -1 } });
    expect(Array.from(batch.ids.data as BigInt64Array)).toEqual([7n, -1n, -1n, 1n, 2n, 3n]);
  });

  it('groups by dtype and non-batch dims, ignoring padded axes', () => {
    expect(groupKey(f32([1, 2], [0, 0]), {})).toBe(groupKey(f32([5, 2], new Array(10).fill(0)), {}));
    expect(groupKey(f32([1, 2], [0, 0]), {})).not.toBe(groupKey(f32([1, 3], [0, 0, 0]), {}));
    expect(groupKey(f32([1, 2], [0, 0]), { x: { axes: [1], value: 0 } })).toBe(groupKey(f32([1, 3], [0, 0, 0]), { x: { axes: [1], value: 0 } }));
  });

  it('batches padded lengths within a power of two (up to 16 together), or any lengths with buckets off', () => {
    const key = (length: number, buckets?: boolean) => groupKey(f32([1, length], new Array(length).fill(0)), { x: { axes: [1], value: 0, buckets } });
    expect(key(1)).toBe(key(16));
    expect(key(16)).not.toBe(key(17));
    expect(key(17)).toBe(key(32));
    expect(key(33)).toBe(key(64));
    expect(key(64)).not.toBe(key(65));
    expect(key(10, false)).toBe(key(300, false));
  });

  it('splits outputs back exactly, by rows', () => {
    const out = { y: { dtype: 'FP32' as const, shape: [3, 2], data: Float32Array.from([1, 2, 3, 4, 5, 6]) } };
    const [a, b] = splitOutputs(out, [1, 2]);
    expect(a.y.shape).toEqual([1, 2]);
    expect(Array.from(a.y.data as Float32Array)).toEqual([1, 2]);
    expect(Array.from(b.y.data as Float32Array)).toEqual([3, 4, 5, 6]);
  });

  it('refuses outputs whose row count does not match the batch', () => {
    const out = { y: { dtype: 'FP32' as const, shape: [2, 1], data: Float32Array.from([1, 2]) } };
    expect(() => splitOutputs(out, [1, 2])).toThrow(/2 rows for a batch of 3/);
  });
});

describe('fixed batch sizes', () => {
  it('pads a batch with zero rows up to the nearest size, and keeps only its own rows of the outputs', () => {
    expect([1, 4, 5, 8, 9].map((n) => paddedSize(n, [4, 8]))).toEqual([4, 4, 8, 8, 9]);
    const batch = padRows(stackInputs([f32([1, 2], [1, 2]), f32([2, 2], [3, 4, 5, 6])], {}), 4);
    expect(batch.x.shape).toEqual([4, 2]);
    expect(Array.from(batch.x.data as Float32Array)).toEqual([1, 2, 3, 4, 5, 6, 0, 0]);
    const own = firstRows(batch, 3);
    expect(own.x.shape).toEqual([3, 2]);
    expect(Array.from(own.x.data as Float32Array)).toEqual([1, 2, 3, 4, 5, 6]);
  });
});
