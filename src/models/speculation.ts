/**
 * Speculative decoding by prompt lookup (vLLM's ngram method): up to `tokens` drafted from the sequence's own text;
 * none in steps of `disableAt` sequences or more (vLLM's disable_by_batch_size), where a step is busy enough. With
 * `sharedTokens` (vLLM's suffix method), also from earlier requests' texts, the most recent up to that many tokens.
 */
export type Speculation = { tokens: number; ngramMax: number; ngramMin: number; disableAt?: number; sharedTokens?: number };

/** A draft, and how many of the text's last tokens the place it follows matched (the longer, the likelier). */
export type Draft = { tokens: number[]; matched: number };

/**
 * The tokens that followed, the last time, the text ending as `history` ends now: its last `ngramMax` tokens (down
 * to `ngramMin`: the longest that occurred before) found earlier in it, at the most recent occurrence with `room`
 * tokens after it (else the most recent, with what follows it), at most `room` of them. None if nothing matches.
 */
export function lookupDraft(history: readonly number[], room: number, ngramMax: number, ngramMin: number): number[] {
  return lookupMatch(history, room, ngramMax, ngramMin).tokens;
}

/** lookupDraft, with the length of the match. */
export function lookupMatch(history: readonly number[], room: number, ngramMax: number, ngramMin: number): Draft {
  const end = history.length;
  for (let n = Math.min(ngramMax, end - 1); n >= ngramMin; n--) {
    let found = -1;
    for (let at = end - n - 1; at >= 0; at--) {
      let j = 0;
      while (j < n && history[at + j] === history[end - n + j]) j++;
      if (j < n) continue;
      if (found < 0) found = at;
      if (at + n + room <= end) return { tokens: history.slice(at + n, at + n + room), matched: n };
    }
    if (found >= 0) return { tokens: history.slice(found + n, Math.min(found + n + room, end)), matched: n };
  }
  return { tokens: [], matched: 0 };
}

/**
 * Texts of earlier requests (their prompts and outputs), for drafting what followed a sequence's last tokens in
 * someone else's text — vLLM's suffix decoding, by n-gram index rather than suffix tree: repeated requests (an
 * agent's loop, an evaluation's prompts, the same document edited again) are answered several tokens a step. The
 * most recent texts are kept, up to `budget` tokens; each of their n-grams points into the latest text that has it. A text
 * drafts only for texts of its `space` (the prefix cache's: an adapter's, a cache salt's — no tenant's drafts, and so
 * speed, tell another what it sent).
 */
export class SharedDrafts {
  private texts: { text: number[]; space: string }[] = [];
  private tokens = 0;
  /** `n:tokens` → the text and the position after its latest occurrence there. */
  private index = new Map<string, { text: number[]; at: number }>();

  constructor(
    private budget: number,
    private ngramMax: number,
    private ngramMin: number,
  ) {}

  add(text: number[], space = ''): void {
    if (text.length <= this.ngramMin || text.length > this.budget) return;
    this.texts.push({ text, space });
    this.tokens += text.length;
    this.visit(text, space, (key, at) => this.index.set(key, { text, at }));
    while (this.tokens > this.budget) {
      const old = this.texts.shift() as { text: number[]; space: string };
      this.tokens -= old.text.length;
      this.visit(old.text, old.space, (key) => {
        if (this.index.get(key)?.text === old.text) this.index.delete(key);
      });
    }
  }

  /** The tokens that followed the longest of `history`'s last n-grams in a kept text of `space`, at most `room`. */
  lookup(history: readonly number[], room: number, space = ''): Draft {
    for (let n = Math.min(this.ngramMax, history.length); n >= this.ngramMin; n--) {
      const found = this.index.get(`${space}|${n}:${history.slice(history.length - n).join(',')}`);
      if (found && found.at < found.text.length) return { tokens: found.text.slice(found.at, found.at + room), matched: n };
    }
    return { tokens: [], matched: 0 };
  }

  /**
   * Each n-gram of a text that has something after it, with the position after it — the last occurrence first, so
   * that where a text repeats an n-gram the index keeps the first (the most text after it).
   */
  private visit(text: number[], space: string, each: (key: string, at: number) => void): void {
    for (let n = this.ngramMin; n <= this.ngramMax; n++)
      for (let i = text.length - n - 1; i >= 0; i--) each(`${space}|${n}:${text.slice(i, i + n).join(',')}`, i + n);
  }
}

/**
 * OpenAI's Predicted Outputs: the text a request expects back (most of it: a file with a few lines changed). `at`
 * is where in `tokens` the next token is expected, -1 when the output has left the prediction; `left` where it did.
 */
export type Prediction = { tokens: number[]; at: number; left: number };

/** Follows a drawn token: the prediction goes on where it was matched, else is lost until found again. */
export function followPrediction(p: Prediction, token: number): void {
  if (p.at >= 0 && p.tokens[p.at] === token) p.at++;
  else if (p.at >= 0) [p.left, p.at] = [p.at, -1];
}

/**
 * A draft from the prediction: its next `room` tokens where the output follows it; where the output left it, the
 * tokens after the output's last `ngram` (down to 2) tokens found in the prediction again (an edit done, the rest
 * of the file as it was) — the first such place from where the output left it (not before: the text before the
 * edit, matched already, would be drafted again), else from the start. None while it is not found.
 */
export function predictedDraft(p: Prediction, generated: readonly number[], room: number, ngram: number): number[] {
  if (p.at < 0) {
    const end = generated.length;
    const count = p.tokens.length;
    for (let n = Math.min(ngram, end); n >= 2 && p.at < 0; n--) {
      // from where the output left it on (what comes after an edit), then from the start
      const from = p.left;
      for (let k = 0; k + n <= count && p.at < 0; k++) {
        const at = (from + k) % count;
        if (at + n > count) continue;
        let j = 0;
        while (j < n && p.tokens[at + j] === generated[end - n + j]) j++;
        if (j === n) p.at = at + n;
      }
    }
    if (p.at < 0) return [];
  }
  return p.tokens.slice(p.at, p.at + room);
}
