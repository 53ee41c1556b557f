/**
 * Beam search (Hugging Face's `num_beams`, vLLM's `use_beam_search`): a request keeps `width` live beams; each step
 * every beam proposes its 2 × width likeliest next tokens, and the width best continuations overall (by their
 * summed log-probability) become the next step's beams. A continuation that ends (end-of-text, a stop token)
 * among the width best is set aside as a finished hypothesis — so is one whose text would end with a stop string
 * (its tokens kept: the text is cut before the stop string by whoever shows it). What is returned: the width best of
 * the finished and the live by score — log-probability over length (generated tokens, the ending one not counted)
 * to the `lengthPenalty` (> 0 favours longer texts; 0: the plain sum) — with each token's log-probability and
 * most likely alternatives when asked (`logprobs`).
 *
 * The selection lives here, pure; the decoder moves the beams' rows of KV cache (src/models/decoder.ts).
 */

export type BeamParams = {
  /** Live beams, and hypotheses returned. */
  width: number;
  /** Score = log-probability / length ** lengthPenalty. @default 1 */
  lengthPenalty: number;
  /** Tokens that end a hypothesis (end-of-text unless ignored, stop token ids). */
  ends: number[];
  /** Stop strings: a continuation whose text would contain one ends its hypothesis (OpenAI's `stop`). */
  stops?: string[];
  /** Keep each token's log-probability, rank and this many most likely alternatives (OpenAI's logprobs). */
  logprobs?: number;
  /**
   * When the search stops before max_tokens, once `width` hypotheses finished (Hugging Face's early_stopping):
   * `true` at once; `false` (the default) when no live beam scores above the worst of them now; `'never'` when none
   * could, at any length up to max_tokens.
   */
  earlyStopping?: boolean | 'never';
};

/** A token a beam took, as OpenAI's logprobs show it: its log-probability, its rank, the likeliest alternatives. */
export type BeamToken = { token: number; logprob: number; rank: number; top: [number, number][] };

/**
 * A live beam: its generated tokens, their summed log-probability, its next token's candidates once computed
 * (most likely first), and its tokens' log-probabilities (with `logprobs`).
 */
export type Beam = { tokens: number[]; logprob: number; candidates?: [number, number][]; logged?: BeamToken[] };

/** A beam's continuation chosen for the next step: `parent` indexes the live beams. */
export type Expansion = { parent: number; token: number; logprob: number; logged?: BeamToken[] };

/**
 * A text the search returns: its tokens (without the end token that ended it; with those of a stop string, which
 * `stop` names), log-probability and score.
 */
export type Hypothesis = { tokens: number[]; logprob: number; score: number; finishReason: 'stop' | 'length'; stop?: string; logged?: BeamToken[] };

/** Which stop string a beam's text would end with after `token` (stopMatcher), if any. */
export type StopOf = (beam: Beam, token: number) => string | undefined;

export const beamScore = (logprob: number, length: number, lengthPenalty: number) => logprob / Math.max(1, length) ** lengthPenalty;

/**
 * One step: the next live beams (best first, at most `width`), from every live beam's candidates. An ending
 * continuation ranked within the first `width` goes to `finished` instead (as Hugging Face's BeamSearchScorer:
 * one ranked lower would not have been kept anyway).
 */
export function expandBeams(live: readonly Beam[], params: BeamParams, finished: Hypothesis[], stopOf?: StopOf): Expansion[] {
  const ends = new Set(params.ends);
  const all: (Expansion & { at: number })[] = [];
  live.forEach((beam, parent) => {
    for (const [at, [token, logprob]] of (beam.candidates ?? []).entries()) all.push({ parent, token, logprob: beam.logprob + logprob, at });
  });
  // (with logprobs: the parent's tokens' and this one's, its rank among the parent's candidates, most likely first)
  const logged = (e: (typeof all)[number]): BeamToken[] | undefined => {
    if (params.logprobs === undefined) return undefined;
    const { candidates = [], logged = [], logprob } = live[e.parent];
    return [...logged, { token: e.token, logprob: e.logprob - logprob, rank: e.at + 1, top: candidates.slice(0, params.logprobs) }];
  };
  all.sort((a, b) => b.logprob - a.logprob);
  const next: Expansion[] = [];
  for (const [rank, e] of all.entries()) {
    if (next.length === params.width) break;
    const parent = live[e.parent];
    const stop = ends.has(e.token) ? undefined : stopOf?.(parent, e.token);
    if (!ends.has(e.token) && stop === undefined) next.push({ parent: e.parent, token: e.token, logprob: e.logprob, logged: logged(e) });
    else if (rank < params.width) {
      // (an end token is not in the text, but its log-probability is, as a generation's last one is)
      const tokens = stop === undefined ? parent.tokens : [...parent.tokens, e.token];
      const score = beamScore(e.logprob, tokens.length, params.lengthPenalty);
      finished.push({ tokens, logprob: e.logprob, score, finishReason: 'stop', ...(stop !== undefined && { stop }), logged: logged(e) });
    }
  }
  return next;
}

/**
 * Whether the search may stop before max_tokens: `width` hypotheses finished, and (as `earlyStopping` says) no live
 * beam can beat the worst of them — scored now (Hugging Face's default), or at its best length up to `maxTokens`
 * ('never': a positive length penalty favours the longest).
 */
export function beamsDone(live: readonly Beam[], finished: readonly Hypothesis[], params: BeamParams, maxTokens = Number.POSITIVE_INFINITY): boolean {
  if (live.length === 0) return true;
  if (finished.length < params.width) return false;
  if (params.earlyStopping === true) return true;
  const worst = bestHypotheses([], finished, params).at(-1) as Hypothesis;
  const longest = params.earlyStopping === 'never' && params.lengthPenalty > 0;
  const best = Math.max(...live.map((b) => beamScore(b.logprob, longest ? maxTokens : b.tokens.length, params.lengthPenalty)));
  return best <= worst.score;
}

/** The `width` best of the finished hypotheses and the live beams (cut short: `length`), best first. */
export function bestHypotheses(live: readonly Beam[], finished: readonly Hypothesis[], params: BeamParams): Hypothesis[] {
  const cut = live.map(
    (b): Hypothesis => ({
      tokens: b.tokens,
      logprob: b.logprob,
      score: beamScore(b.logprob, b.tokens.length, params.lengthPenalty),
      finishReason: 'length',
      logged: b.logged,
    }),
  );
  return [...finished, ...cut].sort((a, b) => b.score - a.score).slice(0, params.width);
}

/**
 * Finds stop strings in beams' texts: after `token`, the bytes of the beam's last tokens (as many as the longest
 * stop string could span) and the token's, searched for a stop string that ends inside the token's bytes (one
 * ending before would have ended the beam then).
 */
export function stopMatcher(stops: readonly string[], bytesOf: (token: number) => Uint8Array): StopOf {
  const encoded = stops.map((s) => Buffer.from(s));
  const longest = Math.max(...encoded.map((b) => b.length));
  return (beam, token) => {
    const tail: Uint8Array[] = [];
    let tailBytes = 0;
    for (let i = beam.tokens.length - 1; i >= 0 && tailBytes < longest - 1; i--) {
      tail.unshift(bytesOf(beam.tokens[i]));
      tailBytes += tail[0].length;
    }
    const text = Buffer.concat([...tail, bytesOf(token)]);
    // (the one that occurs first in the text, as TextStream ends sampled text)
    let found: { stop: string; at: number } | undefined;
    for (const [i, stop] of encoded.entries()) {
      const at = text.indexOf(stop, Math.max(0, tailBytes - stop.length + 1));
      if (at >= 0 && (!found || at < found.at)) found = { stop: stops[i], at };
    }
    return found?.stop;
  };
}
