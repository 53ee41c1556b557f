import { describe, expect, it } from 'vitest';
import { type Beam, beamScore, beamsDone, bestHypotheses, expandBeams, type Hypothesis, stopMatcher } from './beam-search.js';

const params = { width: 2, lengthPenalty: 1, ends: [0] };

describe('beam search selection', () => {
  it('keeps the width best continuations over all beams, a parent followed twice where it is best twice', () => {
    const live: Beam[] = [
      {
        tokens: [5],
        logprob: -1,
        candidates: [
          [7, -0.1],
          [8, -0.2],
          [9, -3],
          [10, -4],
        ],
      },
      {
        tokens: [6],
        logprob: -1.5,
        candidates: [
          [11, -0.1],
          [12, -2],
          [13, -3],
          [14, -4],
        ],
      },
    ];
    const finished: Hypothesis[] = [];
    expect(expandBeams(live, params, finished)).toEqual([
      { parent: 0, token: 7, logprob: -1.1 },
      { parent: 0, token: 8, logprob: expect.closeTo(-1.2, 9) },
    ]);
    expect(finished).toEqual([]);
  });

  it('sets an ending continuation aside when it ranks within the width, and fills the beams from the rest', () => {
    const live: Beam[] = [
      {
        tokens: [5, 6],
        logprob: -1,
        candidates: [
          [0, -0.1],
          [8, -0.5],
          [9, -0.7],
          [0, -9],
        ],
      },
    ];
    const finished: Hypothesis[] = [];
    const next = expandBeams(live, params, finished);
    expect(next.map((e) => e.token)).toEqual([8, 9]);
    // (the end token itself is not in its text; its length is the two tokens before it)
    expect(finished).toEqual([{ tokens: [5, 6], logprob: -1.1, score: -1.1 / 2, finishReason: 'stop' }]);
    // An ending one ranked past the width is dropped, not kept.
    const late: Hypothesis[] = [];
    expandBeams(
      [
        {
          tokens: [5],
          logprob: 0,
          candidates: [
            [3, -0.1],
            [4, -0.2],
            [0, -0.3],
            [6, -0.4],
          ],
        },
      ],
      params,
      late,
    );
    expect(late).toEqual([]);
  });

  it('ends a hypothesis whose text would contain a stop string, across tokens, keeping the tokens that make it', () => {
    const texts: Record<number, string> = { 1: 'ab', 2: 'c\n', 3: '\nd', 4: 'x\n\ny', 5: 'é' };
    const stopOf = stopMatcher(['\n\n', 'ké'], (t) => Buffer.from(texts[t]));
    expect(stopOf({ tokens: [2], logprob: 0 }, 3)).toBe('\n\n'); // "c\n" + "\nd": across the two
    expect(stopOf({ tokens: [1], logprob: 0 }, 3)).toBeUndefined();
    expect(stopOf({ tokens: [4], logprob: 0 }, 1)).toBeUndefined(); // in the text before the token: not this token's
    expect(stopOf({ tokens: [], logprob: 0 }, 4)).toBe('\n\n'); // inside the token
    expect(stopOf({ tokens: [1, 1], logprob: 0 }, 5)).toBeUndefined();
    // Of two in one token, the one that comes first in the text (it was the first listed).
    expect(stopMatcher(['rts', 'Sta'], () => Buffer.from(' Starts'))({ tokens: [], logprob: 0 }, 9)).toBe('Sta');
    const finished: Hypothesis[] = [];
    const live: Beam[] = [
      {
        tokens: [2],
        logprob: -1,
        candidates: [
          [3, -0.1],
          [1, -0.2],
          [5, -0.3],
          [1, -5],
        ],
      },
    ];
    const next = expandBeams(live, params, finished, stopOf);
    expect(next.map((e) => e.token)).toEqual([1, 5]);
    expect(finished).toEqual([{ tokens: [2, 3], logprob: -1.1, score: -1.1 / 2, finishReason: 'stop', stop: '\n\n' }]);
  });

  it("keeps each token's log-probability, rank and likeliest alternatives when asked, the ending token's too", () => {
    const live: Beam[] = [
      {
        tokens: [5],
        logprob: -1,
        candidates: [
          [0, -0.1],
          [8, -0.2],
          [9, -3],
        ],
        logged: [{ token: 5, logprob: -1, rank: 1, top: [[5, -1]] }],
      },
    ];
    const finished: Hypothesis[] = [];
    const next = expandBeams(live, { ...params, logprobs: 2 }, finished);
    expect(next[0].logged).toEqual([
      { token: 5, logprob: -1, rank: 1, top: [[5, -1]] },
      {
        token: 8,
        logprob: expect.closeTo(-0.2, 9),
        rank: 2,
        top: [
          [0, -0.1],
          [8, -0.2],
        ],
      },
    ]);
    expect(finished[0].tokens).toEqual([5]); // the end token is not in the text…
    expect(finished[0].logged?.map((t) => t.token)).toEqual([5, 0]); // …but its log-probability is
    expect(expandBeams(live, params, [])[0].logged).toBeUndefined(); // not asked: not kept
  });

  it('scores by log-probability over length to the length penalty: a penalty above 0 favours the longer', () => {
    const short: Hypothesis = { tokens: [1], logprob: -2, score: beamScore(-2, 1, 1), finishReason: 'stop' };
    const long: Beam = { tokens: [1, 2, 3, 4], logprob: -4 };
    expect(bestHypotheses([long], [short], { ...params, lengthPenalty: 1 }).map((h) => h.tokens.length)).toEqual([4, 1]);
    const plain = { ...short, score: beamScore(-2, 1, 0) };
    expect(bestHypotheses([long], [plain], { ...params, lengthPenalty: 0 }).map((h) => h.tokens.length)).toEqual([1, 4]);
  });

  it('stops early once width hypotheses have finished and no live beam scores above the worst of them', () => {
    const finished: Hypothesis[] = [
      { tokens: [1, 2], logprob: -1, score: -0.5, finishReason: 'stop' },
      { tokens: [3, 4], logprob: -2, score: -1, finishReason: 'stop' },
    ];
    expect(beamsDone([{ tokens: [5, 6], logprob: -3 }], finished, params)).toBe(true); // -1.5 <= -1
    expect(beamsDone([{ tokens: [5, 6], logprob: -1.5 }], finished, params)).toBe(false); // -0.75 > -1
    expect(beamsDone([{ tokens: [5, 6], logprob: -3 }], finished.slice(0, 1), params)).toBe(false); // one finished of two
    expect(beamsDone([], [], params)).toBe(true);
    // early_stopping true: at once; 'never': only when no beam could win even at max_tokens' length.
    const live = [{ tokens: [5, 6], logprob: -1.5 }];
    expect(beamsDone(live, finished, { ...params, earlyStopping: true })).toBe(true);
    expect(beamsDone([{ tokens: [5, 6], logprob: -3 }], finished, { ...params, earlyStopping: 'never' }, 10)).toBe(false); // -3/10 > -1
    expect(beamsDone([{ tokens: [5, 6], logprob: -30 }], finished, { ...params, earlyStopping: 'never' }, 10)).toBe(true);
  });
});
