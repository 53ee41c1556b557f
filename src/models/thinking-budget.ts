import type { Tokenizer } from './text.js';

/**
 * vLLM's thinking_token_budget (Anthropic's thinking.budget_tokens): a reasoning model thinks between `start` and
 * `end` before its answer; past `budget` tokens of thinking its next tokens are made to be the end tag (whatever
 * part of it is not written yet), after which it answers as it likes. Without one, a model may think until
 * max_tokens and answer nothing. `fromStart`: the output begins inside the thinking (deepseek_r1: its template
 * opens the tag in the prompt); else only a `start` tag at the output's start (after whitespace) opens it, as
 * the gateway's ReasoningSplitter reads it — so the tokens counted are those answered as reasoning.
 */
export type ThinkingParams = { budget: number; start: string; end: string; fromStart: boolean };

export class ThinkingBudget {
  private state: 'start' | 'thinking' | 'answer';
  private spent = 0;
  /** Tokens drawn; of them, those before the answer (the thinking and its tags), once it has begun. */
  private drawn = 0;
  private thought = 0;
  /** Text of the output not yet decided: while 'start', all of it; while thinking, the last bytes an end tag could begin in. */
  private text = '';
  /** While the thinking is being ended: the end tag's tokens still to come, next first. */
  private forcing: number[] = [];

  constructor(
    private readonly p: ThinkingParams,
    private readonly tokenizer: Pick<Tokenizer, 'bytes' | 'encode'>,
  ) {
    this.state = p.fromStart ? 'thinking' : 'start';
    this.overBudget();
  }

  /** The token the sequence must draw next, while its thinking is being ended. */
  get forced(): number | undefined {
    return this.forcing[0];
  }

  /**
   * Tokens of the output that are not its answer: the thinking with its tags (OpenAI's reasoning_tokens); all so far
   * while it thinks, none where the output did not open with thinking.
   */
  get reasoningTokens(): number {
    return this.state === 'thinking' ? this.drawn : this.thought;
  }

  /** The token drawn. */
  advance(token: number): void {
    this.drawn++;
    if (token === this.forcing[0]) this.forcing.shift();
    if (this.state === 'answer') return;
    // (bytes as latin1 characters: the tags are ASCII, and a character cut between tokens cannot match one)
    this.text += Buffer.from(this.tokenizer.bytes(token)).toString('latin1');
    if (this.state === 'start') {
      const lead = this.text.trimStart();
      if (this.p.start.startsWith(lead) && lead.length < this.p.start.length) return; // (not yet decided)
      if (!lead.startsWith(this.p.start)) {
        this.state = 'answer';
        return;
      }
      this.state = 'thinking';
      this.text = lead.slice(this.p.start.length);
    } else this.spent++;
    if (this.text.includes(this.p.end)) {
      this.state = 'answer';
      this.thought = this.drawn;
      return;
    }
    this.text = this.text.slice(-(this.p.end.length - 1));
    this.overBudget();
  }

  /** Past the budget: the end tag's tokens to come, after what of it the text already ends with. */
  private overBudget(): void {
    if (this.state !== 'thinking' || this.spent < this.p.budget || this.forcing.length > 0) return;
    const { end } = this.p;
    let written = Math.min(end.length - 1, this.text.length);
    while (written > 0 && !this.text.endsWith(end.slice(0, written))) written--;
    this.forcing = this.tokenizer.encode(end.slice(written), { special: false });
  }
}
