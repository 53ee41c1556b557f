import type { TokenConstraint } from './grammar/index.js';
import type { ThinkingBudget } from './thinking-budget.js';

/** What the sampler and the decoder need of a sequence's format: its mask before a draw, the token drawn after. */
export type Constraint = Pick<TokenConstraint, 'mask' | 'advance'>;

/**
 * A reasoning model's response format (vLLM's structured outputs with a reasoning parser): the thinking is free and
 * the format holds the answer after it. Held from the first token, a format leaves the model no room to think and
 * the splitter reads its document as thinking (deepseek_r1: all before `</think>`) — `content` empty, the JSON in
 * `reasoning_content`, as vLLM's users met it. While the output may still open the thinking (qwen3's), the format's
 * tokens or the start tag's first may be drawn (once part of the tag is written, only its next); once the answer
 * begins, the format reads it from there (the rest of the token that began it included).
 */
export class AnswerFormat implements Constraint {
  constructor(
    private readonly format: TokenConstraint,
    /** Follows the output's thinking (no budget of its own). */
    private readonly thinking: ThinkingBudget,
  ) {}

  mask(row: Float32Array): Int32Array | undefined {
    if (this.thinking.answering) return this.format.mask(row);
    const opening = this.thinking.opening;
    if (opening === undefined) return undefined; // (thinking: anything)
    const { token, begun } = opening;
    const logit = row[token];
    if (begun) {
      row.fill(Number.NEGATIVE_INFINITY);
      row[token] = Number.isFinite(logit) ? logit : 0;
      return Int32Array.of(token);
    }
    const allowed = this.format.mask(row);
    row[token] = logit;
    return allowed && !allowed.includes(token) ? Int32Array.from([...allowed, token]).sort() : allowed;
  }

  advance(token: number): void {
    if (this.thinking.answering) {
      this.format.advance(token);
      return;
    }
    this.thinking.advance(token);
    if (this.thinking.answering) this.format.advanceBytes(this.thinking.answerStart);
  }
}
