import { describe, expect, it } from 'vitest';
import { followPrediction, lookupDraft, predictedDraft, SharedDrafts } from './speculation.js';

describe('SharedDrafts (suffix decoding: drafts from earlier requests)', () => {
  it('drafts what followed the longest n-gram a text ends with in another text of its space, the oldest dropped past the budget', () => {
    const drafts = new SharedDrafts(12, 3, 1);
    drafts.add([1, 2, 3, 4, 5, 6]);
    expect(drafts.lookup([9, 2, 3], 3)).toEqual({ tokens: [4, 5, 6], matched: 2 });
    expect(drafts.lookup([9, 9, 6], 3)).toEqual({ tokens: [], matched: 0 }); // 6 ends the text: nothing after it
    expect(drafts.lookup([2, 3], 3, 'tenant-b')).toEqual({ tokens: [], matched: 0 }); // another space's text
    drafts.add([7, 2, 3, 8], 'tenant-b');
    expect(drafts.lookup([2, 3], 3, 'tenant-b')).toEqual({ tokens: [8], matched: 2 });
    drafts.add([5, 5, 5, 5]); // 14 tokens kept > 12: the oldest text goes
    expect(drafts.lookup([9, 2, 3], 3)).toEqual({ tokens: [], matched: 0 });
    expect(drafts.lookup([5, 5], 2)).toEqual({ tokens: [5, 5], matched: 2 });
  });
});

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

describe('predicted outputs (OpenAI’s prediction)', () => {
  it('drafts the prediction where the output follows it, and finds it again after an edit', () => {
    const p = { tokens: [1, 2, 3, 4, 5, 6, 7, 8], at: 0, left: 0 };
    expect(predictedDraft(p, [], 3, 4)).toEqual([1, 2, 3]);
    for (const t of [1, 2, 9, 9]) followPrediction(p, t); // two taken, then an edit: 9 9 in place of 3 4
    expect(p).toMatchObject({ at: -1, left: 2 });
    expect(predictedDraft(p, [1, 2, 9, 9], 3, 4)).toEqual([]); // "9 9" is nowhere in it
    for (const t of [5, 6]) followPrediction(p, t);
    expect(predictedDraft(p, [1, 2, 9, 9, 5, 6], 3, 4)).toEqual([7, 8]); // "5 6" found: the rest as it was
    expect(p.at).toBe(6);
  });

  it('finds it again from where the output left it, not in the text before (matched already)', () => {
    // the output followed 5 5 5, then wrote 5 where the prediction has 7 7 (an edit), then went on with 5 5
    const p = { tokens: [5, 5, 5, 7, 7, 5, 5, 5, 9], at: -1, left: 3 };
    expect(predictedDraft(p, [5, 5, 5, 5, 5, 5], 2, 2)).toEqual([5, 9]); // "5 5" at 5, not at 0 or 1
    const q = { tokens: [5, 6, 1, 5, 6, 2, 5, 6, 3], at: -1, left: 3 };
    expect(predictedDraft(q, [0, 5, 6], 1, 2)).toEqual([2]); // the "5 6" at 3, not the one at 0
  });
});
