import type { ThinkingParams } from '../../models/thinking-budget.js';

/**
 * vLLM's reasoning parsers: a reasoning model writes its thinking between `<think>` and `</think>` before its
 * answer; chat answers carry the thinking as `reasoning_content` and the rest as `content`. `deepseek_r1` takes
 * everything before `</think>` as thinking (its chat template opens the `<think>` in the prompt, so the output may
 * start inside it; a leading `<think>` is dropped); `qwen3` only what is between the two (an answer without
 * `<think>` is all content).
 */
export type ReasoningParser = 'deepseek_r1' | 'qwen3';

const START = '<think>';
const END = '</think>';

/** A thinking (budget) as the replica follows it: on the tags `parser` reads, counting what it reads as thinking. */
export const thinkingParams = (parser: ReasoningParser, budget?: number): ThinkingParams => ({
  ...(budget !== undefined && { budget }),
  start: START,
  end: END,
  fromStart: parser === 'deepseek_r1',
});

/** Text as it comes, split into thinking and answer; a tag cut between pieces is held until it is whole. */
export class ReasoningSplitter {
  /** `after`: the thinking ended, the whitespace after </think> (not the answer's) being dropped. */
  private state: 'start' | 'thinking' | 'after' | 'answer';
  private held = '';

  constructor(private parser: ReasoningParser) {
    this.state = 'start';
  }

  /** What `text` adds to each part. */
  push(text: string): { reasoning: string; content: string } {
    let rest = this.held + text;
    this.held = '';
    const out = { reasoning: '', content: '' };
    while (rest.length > 0) {
      if (this.state === 'answer') {
        out.content += rest;
        break;
      }
      if (this.state === 'after') {
        rest = rest.trimStart();
        if (rest.length > 0) this.state = 'answer';
        continue;
      }
      if (this.state === 'start') {
        // (whitespace before the tag does not decide it)
        const lead = rest.trimStart();
        if (lead.length === 0 || (START.startsWith(lead) && lead.length < START.length)) {
          this.held = rest;
          break;
        }
        if (lead.startsWith(START)) {
          rest = lead.slice(START.length);
          this.state = 'thinking';
          continue;
        }
        this.state = this.parser === 'deepseek_r1' ? 'thinking' : 'answer';
        continue;
      }
      // Thinking: up to the end tag; a piece ending with the start of one holds it back.
      const at = rest.indexOf(END);
      if (at >= 0) {
        out.reasoning += rest.slice(0, at);
        rest = rest.slice(at + END.length);
        this.state = 'after';
        continue;
      }
      const keep = partialSuffix(rest, END);
      out.reasoning += rest.slice(0, rest.length - keep);
      this.held = rest.slice(rest.length - keep);
      break;
    }
    return out;
  }

  /** At the end: what is held, where it belongs (an unfinished tag is text after all). */
  flush(): { reasoning: string; content: string } {
    const held = this.held;
    this.held = '';
    if (this.state === 'thinking' || (this.state === 'start' && this.parser === 'deepseek_r1')) return { reasoning: held, content: '' };
    return { reasoning: '', content: held };
  }
}

/** How many of `text`'s last characters begin `tag` (0 if none). */
function partialSuffix(text: string, tag: string): number {
  for (let n = Math.min(tag.length - 1, text.length); n > 0; n--) if (text.endsWith(tag.slice(0, n))) return n;
  return 0;
}

/** A whole answer's thinking and answer. */
export function splitReasoning(parser: ReasoningParser, text: string): { reasoning: string; content: string } {
  const splitter = new ReasoningSplitter(parser);
  const [a, b] = [splitter.push(text), splitter.flush()];
  return { reasoning: a.reasoning + b.reasoning, content: a.content + b.content };
}

/** A reasoning model's text as it comes: the thinking handed to `thought`, the answer's text yielded. */
export async function* answerPieces(pieces: AsyncIterable<{ text: string }>, parser: ReasoningParser, thought: (text: string) => Promise<void>) {
  const splitter = new ReasoningSplitter(parser);
  for await (const piece of pieces) {
    const part = splitter.push(piece.text);
    if (part.reasoning) await thought(part.reasoning);
    if (part.content) yield { text: part.content };
  }
  const rest = splitter.flush();
  if (rest.reasoning) await thought(rest.reasoning);
  if (rest.content) yield { text: rest.content };
}
