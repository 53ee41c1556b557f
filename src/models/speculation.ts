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
