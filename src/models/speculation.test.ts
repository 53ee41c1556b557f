import { describe, expect, it } from 'vitest';
import { lookupDraft } from './speculation.js';

describe('lookupDraft (prompt lookup)', () => {
  it('drafts what followed the longest n-gram the text ends with, where it last occurred with a whole draft after it', () => {
    //            0  1  2  3  4  5  6  7  8  9
    const text = [1, 2, 3, 4, 5, 9, 2, 3, 7, 2, 3];
    // ends with [2, 3]: last at 6 (then 7, 2, 3: room for 3), before that at 1 (then 4, 5, 9)
    expect(lookupDraft(text, 3, 2, 1)).toEqual([7, 2, 3]);
    expect(lookupDraft(text, 4, 2, 1)).toEqual([4, 5, 9, 2]); // only the occurrence at 1 has 4 after it
    // a longer n-gram first: [9, 2, 3] does not occur before; [2, 3] does
    expect(lookupDraft(text, 2, 3, 2)).toEqual([7, 2]);
  });

  it('falls back to shorter n-grams, down to the minimum, and drafts nothing without a match', () => {
    expect(lookupDraft([5, 6, 7, 6], 2, 3, 1)).toEqual([7, 6]); // [7, 6] never before; [6] at 1
    expect(lookupDraft([5, 6, 7, 6], 2, 3, 2)).toEqual([]);
    expect(lookupDraft([1, 2, 3], 4, 4, 1)).toEqual([]);
    expect(lookupDraft([8], 4, 4, 1)).toEqual([]);
  });

  it('takes the most recent occurrence, cut short, when none has a whole draft after it', () => {
    expect(lookupDraft([4, 4, 4, 4], 5, 2, 1)).toEqual([4]); // [4, 4] at 1 then 4; at 0 then 4, 4: both short
  });
});
