import { describe, expect, it } from 'vitest';
import { AnswerFormat } from './answer-format.js';
import { gpt2 } from './gpt2-tokenizer.js';
import { grammarFor, TokenConstraint, vocabularyFor } from './grammar/index.js';
import { ThinkingBudget } from './thinking-budget.js';

const TAGS = { start: '<think>', end: '</think>' };
const VOCAB = 50257;
const tokenOf = (text: string) => {
  const [token, ...more] = gpt2.encode(text, { special: false });
  expect(more, `${JSON.stringify(text)} is one token`).toEqual([]);
  return token;
};

/** A format of `pattern` held after the thinking (deepseek_r1's when `fromStart`, else qwen3's). */
async function answerFormat(pattern: string, fromStart: boolean) {
  const format = new TokenConstraint(grammarFor({ type: 'regex', pattern }), await vocabularyFor(gpt2, VOCAB));
  return new AnswerFormat(format, new ThinkingBudget({ ...TAGS, fromStart }, gpt2));
}
/** The tokens `constraint` allows next (of a row of zeros). */
const allowed = (constraint: AnswerFormat) => {
  const row = new Float32Array(VOCAB);
  constraint.mask(row);
  return row;
};

describe('AnswerFormat (a format held after the thinking)', () => {
  it('lets the thinking be anything, then holds the answer from the rest of the token that ended it', async () => {
    const c = await answerFormat('\\[[a-z]+\\]', true);
    for (const text of [' Let', ' me', ' think', '</', 'think']) {
      expect(allowed(c).every((x) => x === 0)).toBe(true); // (thinking: every token)
      c.advance(tokenOf(text));
    }
    // A token ending the tag and beginning the answer (">[", GPT-2's 36937): the format reads its "[".
    c.advance(tokenOf('>['));
    const row = allowed(c);
    expect([row[tokenOf('abc')], row[tokenOf('[')], row[tokenOf(']')]]).toEqual([0, Number.NEGATIVE_INFINITY, Number.NEGATIVE_INFINITY]);
  });

  it("lets qwen3's output open the thinking or answer in the format; once the tag is begun, only its next token", async () => {
    const c = await answerFormat('[a-z]+', false);
    const lt = tokenOf('<');
    const first = allowed(c);
    expect([first[lt], first[tokenOf('hello')], first[tokenOf('1')]]).toEqual([0, 0, Number.NEGATIVE_INFINITY]);
    c.advance(lt);
    const next = allowed(c);
    expect(next[tokenOf('think')]).toBe(0);
    expect(next.filter((x) => x === 0).length).toBe(1);
    // An answer begun at once is the format's from its first byte.
    const direct = await answerFormat('[a-z]+', false);
    direct.advance(tokenOf('hello'));
    expect(allowed(direct)[tokenOf('1')]).toBe(Number.NEGATIVE_INFINITY);
    expect(allowed(direct)[tokenOf('world')]).toBe(0);
  });
});
