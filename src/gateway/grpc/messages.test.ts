import { describe, expect, it } from 'vitest';
import { plainParameters } from './messages.js';

describe('plainParameters', () => {
  it('reads an int64 as a number, and one past 2^53 as its exact digits (a 64-bit sequence_id was rounded)', () => {
    const plain = plainParameters({
      timeout: { parameter_choice: 'int64_param', int64_param: '1500' },
      sequence_id: { parameter_choice: 'uint64_param', uint64_param: '1152921504606846977' },
      flag: { parameter_choice: 'bool_param', bool_param: true },
    } as never);
    expect(plain).toEqual({ timeout: 1500, sequence_id: '1152921504606846977', flag: true });
  });
});
