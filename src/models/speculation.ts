/**
 * Speculative decoding by prompt lookup (vLLM's ngram method): up to `tokens` drafted from the sequence's own text;
 * none in steps of `disableAt` sequences or more (vLLM's disable_by_batch_size), where a step is busy enough.
 */
export type Speculation = { tokens: number; ngramMax: number; ngramMin: number; disableAt?: number };

/**
 * The tokens that followed, the last time, the text ending as `history` ends now: its last `ngramMax` tokens (down
 * to `ngramMin`: the longest that occurred before) found earlier in it, at the most recent occurrence with `room`
 * tokens after it (else the most recent, with what follows it), at most `room` of them. None if nothing matches.
 */
export function lookupDraft(history: readonly number[], room: number, ngramMax: number, ngramMin: number): number[] {
  const end = history.length;
  for (let n = Math.min(ngramMax, end - 1); n >= ngramMin; n--) {
    let found = -1;
    for (let at = end - n - 1; at >= 0; at--) {
      let j = 0;
      while (j < n && history[at + j] === history[end - n + j]) j++;
      if (j < n) continue;
      if (found < 0) found = at;
      if (at + n + room <= end) return history.slice(at + n, at + n + room);
    }
    if (found >= 0) return history.slice(found + n, Math.min(found + n + room, end));
  }
  return [];
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
