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
  ] as const)('refuses %s %j with a precise 400', (dtype, data, n, message) => {
    expect(() => fromJsonData('x', dtype, data, n)).toThrow(message);
    try {
      fromJsonData('x', dtype, data, n);
    } catch (err) {
      expect(err).toMatchObject({ status: 400 });
    }
  });

  it('round-trips INT64 (strings allowed for big values), FP16 and BOOL', () => {
    const i64 = fromJsonData('x', 'INT64', [1, '-9007199254740993'], 2) as BigInt64Array;
    expect(Array.from(i64)).toEqual([1n, -9007199254740993n]);
    expect(toJsonData('FP16', fromJsonData('x', 'FP16', [0.5, -2], 2))).toEqual([0.5, -2]);
    expect(toJsonData('BOOL', fromJsonData('x', 'BOOL', [true, false, 1], 3))).toEqual([true, false, true]);
  });
});
