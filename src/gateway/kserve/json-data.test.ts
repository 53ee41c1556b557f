import { describe, expect, it } from 'vitest';
import { fromJsonData, toJsonData } from './json-data.js';

describe('KServe JSON data', () => {
  it('reads flat and nested row-major data', () => {
    expect(
      Array.from(
        fromJsonData(
          'x',
          'FP32',
          [
            [1, 2],
            [3, 4.5],
          ],
          4,
        ) as Float32Array,
      ),
    ).toEqual([1, 2, 3, 4.5]);
  });

  it.each([
    ['FP32', [1, 'a'], 2, /data\[1\] = "a" is not a number/],
    ['INT32', [1.5], 1, /is not an integer/],
    ['UINT8', [256], 1, /within UINT8/],
    ['BOOL', ['yes'], 1, /is not a boolean/],
    ['INT64', [1, 2], 3, /shape holds 3 elements but "data" has 2/],
    ['FP32', { a: 1 }, 1, /must be an array/],
    ['FP32', [1e39], 1, /data\[0\] = 1e\+39 is not within FP32's range/], // (it would be Infinity)
    ['FP16', [70000], 1, /is not within FP16's range/],
  ] as const)('refuses %s %j with a precise 400', (dtype, data, n, message) => {
    expect(() => fromJsonData('x', dtype, data, n)).toThrow(message);
    try {
      fromJsonData('x', dtype, data, n);
    } catch (err) {
      expect(err).toMatchObject({ status: 400 });
    }
  });

  it('refuses data nested otherwise than its shape (ragged, or too deep), and takes it flat or nested as the shape', () => {
    for (const data of [[[1, 2, 3], [4]], [[[1, 2, 3, 4]]], [[1, 2], 3, 4]])
      expect(() => fromJsonData('x', 'FP32', data, 4, [1, 4])).toThrow(/"data" is nested otherwise than its shape \[1, 4\]/);
    expect(Array.from(fromJsonData('x', 'FP32', [[1, 2, 3, 4]], 4, [1, 4]) as Float32Array)).toEqual([1, 2, 3, 4]);
    expect(Array.from(fromJsonData('x', 'FP32', [1, 2, 3, 4], 4, [2, 2]) as Float32Array)).toEqual([1, 2, 3, 4]);
  });

  it('round-trips INT64 (strings for values past 2^53, both ways), FP16 and BOOL', () => {
    const i64 = fromJsonData('x', 'INT64', [1, '-9007199254740993', '9223372036854775807'], 3) as BigInt64Array;
    expect(Array.from(i64)).toEqual([1n, -9007199254740993n, 9223372036854775807n]);
    expect(toJsonData('INT64', i64)).toEqual([1, '-9007199254740993', '9223372036854775807']);
    expect(toJsonData('UINT64', BigUint64Array.from([2n ** 64n - 1n, 7n]))).toEqual(['18446744073709551615', 7]);
    expect(toJsonData('FP16', fromJsonData('x', 'FP16', [0.5, -2], 2))).toEqual([0.5, -2]);
    expect(toJsonData('BOOL', fromJsonData('x', 'BOOL', [true, false, 1], 3))).toEqual([true, false, true]);
  });
});
