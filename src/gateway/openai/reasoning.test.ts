import { describe, expect, it } from 'vitest';
import { type ReasoningParser, ReasoningSplitter, splitReasoning } from './reasoning.js';

/** The text fed in pieces cut at `cuts`: what the splitter says in all, which must not depend on the cuts. */
function inPieces(parser: ReasoningParser, text: string, size: number) {
  const splitter = new ReasoningSplitter(parser);
  const out = { reasoning: '', content: '' };
  for (let at = 0; at < text.length; at += size) {
    const part = splitter.push(text.slice(at, at + size));
    out.reasoning += part.reasoning;
    out.content += part.content;
  }
  const rest = splitter.flush();
  return { reasoning: out.reasoning + rest.reasoning, content: out.content + rest.content };
}

describe("reasoning parsers (vLLM's deepseek_r1 and qwen3)", () => {
  it.each([
    ['deepseek_r1', '<think>\nLet me see.</think>\n\nFour.', '\nLet me see.', 'Four.'],
    ['deepseek_r1', 'Let me see.</think>Four.', 'Let me see.', 'Four.'], // its template opened <think> in the prompt
    ['deepseek_r1', 'Still thinking', 'Still thinking', ''],
    ['qwen3', '<think>Hmm</think>\nFour.', 'Hmm', 'Four.'],
    ['qwen3', 'Four.', '', 'Four.'],
    ['qwen3', '  <thinking is a word>', '', '  <thinking is a word>'],
    ['deepseek_r1', 'a < b </thi', 'a < b </thi', ''],
  ] as const)('%s splits %j into thinking and answer, whatever the pieces it comes in', (parser, text, reasoning, content) => {
    expect(splitReasoning(parser, text)).toEqual({ reasoning, content });
    for (const size of [1, 2, 3, 5, 8]) expect(inPieces(parser, text, size)).toEqual({ reasoning, content });
  });
});
