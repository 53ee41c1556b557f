import type { Tokenizer } from './text.js';

/**
 * vLLM's thinking_token_budget (Anthropic's thinking.budget_tokens): a reasoning model thinks between `start` and
 * `end` before its answer; past `budget` tokens of thinking its next tokens are made to be the end tag (whatever
 * part of it is not written yet), after which it answers as it likes. Without one, a model may think until
 * max_tokens and answer nothing. `fromStart`: the output begins inside the thinking (deepseek_r1: its template
 * opens the tag in the prompt); else only a `start` tag at the output's start (after whitespace) opens it, as
 * the gateway's ReasoningSplitter reads it — so the tokens counted are those answered as reasoning. Without a
 * `budget` nothing is forced: the thinking is only followed (a response format waits for the answer: AnswerFormat).
 */
export type ThinkingParams = { budget?: number; start: string; end: string; fromStart: boolean };

export class ThinkingBudget {
  private state: 'start' | 'thinking' | 'answer';
  private spent = 0;
  /** Tokens drawn; of them, those before the answer (the thinking and its tags), once it has begun. */
  private drawn = 0;
  private thought = 0;
  /** Text of the output not yet decided: while 'start', all of it; while thinking, the last bytes an end tag could begin in. */
  private text = '';
  /** Once the answer has begun: its bytes so far in the token it began in (not the whitespace after an end tag). */
  private opened?: Buffer;
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

  /** Whether the output has gone past any thinking into its answer. */
  get answering(): boolean {
    return this.state === 'answer';
  }

  /** The answer's bytes in the token that began it (the rest of that token after the end tag, or all the output so far). */
  get answerStart(): Buffer {
    return this.opened ?? Buffer.alloc(0);
  }

  /**
   * While the output may still open with the start tag (qwen3's: only whitespace or part of the tag so far), the
   * token that goes on writing it, and whether part of the tag is written already; undefined once it is decided.
   */
  get opening(): { token: number; begun: boolean } | undefined {
    if (this.state !== 'start') return undefined;
    const lead = this.text.trimStart();
    return { token: this.tokenizer.encode(this.p.start.slice(lead.length), { special: false })[0], begun: lead.length > 0 };
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
        this.opened = Buffer.from(this.text, 'latin1');
        return;
      }
      this.state = 'thinking';
      this.text = lead.slice(this.p.start.length);
    } else this.spent++;
    if (this.text.includes(this.p.end)) {
      this.state = 'answer';
      this.thought = this.drawn;
      // (the whitespace after the tag is not the answer's: the gateway's splitter drops it)
      this.opened = Buffer.from(this.text.slice(this.text.indexOf(this.p.end) + this.p.end.length).trimStart(), 'latin1');
      return;
    }
    this.text = this.text.slice(-(this.p.end.length - 1));
    this.overBudget();
  }

  /** Past the budget: the end tag's tokens to come, after what of it the text already ends with. */
  private overBudget(): void {
    if (this.state !== 'thinking' || this.p.budget === undefined || this.spent < this.p.budget || this.forcing.length > 0) return;
    const { end } = this.p;
    let written = Math.min(end.length - 1, this.text.length);
    while (written > 0 && !this.text.endsWith(end.slice(0, written))) written--;
    this.forcing = this.tokenizer.encode(end.slice(written), { special: false });
  }
}
