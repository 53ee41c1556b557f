import { describe, expect, it } from 'vitest';
import { float16ToNumber, numberToFloat16 } from './float16.js';

describe('float16', () => {
  it.each([
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3c00],
    [-2, 0xc000],
    [0.5, 0x3800],
    [65504, 0x7bff],
    [70000, 0x7c00],
    [2 ** -24, 0x0001],
    [1 / 3, 0x3555],
    [Number.POSITIVE_INFINITY, 0x7c00],
  ])('encodes %d as 0x%s', (value, bits) => {
    expect(numberToFloat16(value)).toBe(bits);
  });

  it('round-trips every finite half exactly', () => {
    for (let bits = 0; bits < 0x10000; bits++) {
      const value = float16ToNumber(bits);
      if (Number.isNaN(value)) continue;
      expect(numberToFloat16(value)).toBe(bits);
    }
  });

  it('keeps NaN a NaN', () => {
    expect(Number.isNaN(float16ToNumber(numberToFloat16(Number.NaN)))).toBe(true);
  });
});
