import { describe, expect, it } from 'vitest';
import { gpt2 } from './gpt2-tokenizer.js';
import { decode } from './text.js';
import { ThinkingBudget, type ThinkingParams } from './thinking-budget.js';

const TAGS = { start: '<think>', end: '</think>' };

/** Feeds `text`'s tokens, then draws whatever is forced (as the sampler would), up to `more` tokens: the whole text and how many were forced. */
function run(p: ThinkingParams, text: string, more = 10) {
  const budget = new ThinkingBudget(p, gpt2);
  const tokens: number[] = [];
  let forced = 0;
  const take = (token: number) => {
    tokens.push(token);
    budget.advance(token);
  };
  for (const token of gpt2.encode(text)) {
    if (budget.forced !== undefined) break;
    take(token);
  }
  for (let i = 0; i < more && budget.forced !== undefined; i++, forced++) take(budget.forced);
  return { text: decode(gpt2, tokens), tokens, forced, after: budget.forced };
}

describe('ThinkingBudget', () => {
  it('ends a thinking that starts the output after the budget, with the end tag', () => {
    const thinking = ' one two three four five six seven';
    const r = run({ ...TAGS, budget: 3, fromStart: true }, thinking);
    expect(r.text).toBe(`${decode(gpt2, gpt2.encode(thinking).slice(0, 3))}</think>`);
    expect(r.after).toBeUndefined(); // then the model answers as it likes
  });

  it('counts only what is between the tags when the output must open them', () => {
    expect(run({ ...TAGS, budget: 2, fromStart: false }, '<think> a b c d e').text).toBe('<think> a b</think>');
    expect(run({ ...TAGS, budget: 2, fromStart: false }, '  \n<think> a b c').text).toBe('  \n<think> a b</think>');
    // An answer that does not open with the tag is no thinking: nothing forced, however long.
    expect(run({ ...TAGS, budget: 2, fromStart: false }, 'An answer <think> a b c d e f').forced).toBe(0);
  });

  it('counts the tokens before the answer (the thinking, its tags included) as reasoning tokens', () => {
    const reasoning = (fromStart: boolean, text: string) => {
      const budget = new ThinkingBudget({ ...TAGS, budget: Number.POSITIVE_INFINITY, fromStart }, gpt2);
      for (const token of gpt2.encode(text)) budget.advance(token);
      return budget.reasoningTokens;
    };
    const thought = gpt2.encode('<think> a b</think>').length;
    expect(reasoning(false, '<think> a b</think> The answer.')).toBe(thought);
    expect(reasoning(false, '<think> a b c')).toBe(gpt2.encode('<think> a b c').length); // (still thinking: all of it)
    expect(reasoning(false, 'The answer. <think> a</think>')).toBe(0);
    expect(reasoning(true, ' a b</think> The answer.')).toBe(gpt2.encode(' a b</think>').length);
  });

  it('forces nothing for a thinking ended within the budget, nor after it', () => {
    const r = run({ ...TAGS, budget: 5, fromStart: true }, ' a b</think> then a long answer goes on and on');
    expect(r.forced).toBe(0);
    expect(r.text).toBe(' a b</think> then a long answer goes on and on');
  });

  it('writes only the rest of an end tag already begun', () => {
    // ' x</' is 2 tokens: the budget is reached with "</" written.
    const r = run({ ...TAGS, budget: 2, fromStart: true }, ' x</ y z');
    expect(r.text).toBe(' x</think>');
  });

  it('with a budget of 0: no thinking at all', () => {
    expect(run({ ...TAGS, budget: 0, fromStart: true }, ' anything').text).toBe('</think>');
    expect(run({ ...TAGS, budget: 0, fromStart: false }, '<think> anything').text).toBe('<think></think>');
  });
});
