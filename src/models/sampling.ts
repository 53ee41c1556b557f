import type { Constraint } from './answer-format.js';
import type { BeamParams } from './beam-search.js';
import type { ResponseFormat } from './grammar/index.js';
import { ort } from './ort.js';
import type { ThinkingBudget, ThinkingParams } from './thinking-budget.js';

/** How the next token is drawn from a row of logits (OpenAI's parameters, plus top_k as vLLM has it). */
export type Sampling = {
  /** 0: greedy (always the most likely token). */
  temperature: number;
  /** Nucleus: the smallest set of tokens whose probabilities reach top_p. 1: off. */
  topP: number;
  /** Only the k most likely tokens. 0: off. */
  topK: number;
  /** Seeds the sequence's random stream: the same seed, the same tokens. */
  seed: number;
  /** Subtracted from a token's logit once per time it was generated so far (OpenAI's, -2..2). */
  frequencyPenalty?: number;
  /** Subtracted from a token's logit once it was generated at all (OpenAI's, -2..2). */
  presencePenalty?: number;
  /**
   * Divides the positive logits, multiplies the negative ones, of every token in the prompt or generated so far
   * (Hugging Face's and vLLM's repetition_penalty, > 0; 1: off).
   */
  repetitionPenalty?: number;
  /** Tokens less likely than min_p × the most likely token's probability are not drawn (vLLM's min_p, 0..1; 0: off). */
  minP?: number;
  /** Added to these tokens' logits at every step: [token, bias] (OpenAI's logit_bias, -100..100). */
  logitBias?: [number, number][];
  /** Only these tokens may be drawn (vLLM's allowed_token_ids). */
  allowedTokens?: number[];
  /**
   * Token sequences never generated (vLLM's bad_words, each word as its tokenizer spells it): a word's last token is
   * not drawn where the tokens generated last are the rest of it (a one-token word: never).
   */
  badWords?: number[][];
  /** Report each drawn token's log-probability and this many most likely alternatives (OpenAI's logprobs). */
  logprobs?: number;
  /** Report each prompt token's log-probability (after the first) and this many alternatives (for echo). */
  promptLogprobs?: number;
  /** These tokens cannot be drawn before the sequence has generated `until` (vLLM's min_tokens: EOS, stop ids). */
  suppress?: { tokens: number[]; until: number };
  /** OpenAI's Predicted Outputs: the tokens the output is expected to be (mostly), drafted from and checked as speculation is. */
  prediction?: number[];
  /** The text must be a JSON document of this format (OpenAI's response_format): other tokens are masked out. */
  format?: ResponseFormat;
  /** Beam search instead of drawing (src/models/beam-search.ts): the sequence's result is its `width` best texts. */
  beam?: BeamParams;
  /** A reasoning model's thinking: ended past its budget (vLLM's thinking_token_budget); its tags, where a format waits for the answer. */
  thinking?: ThinkingParams;
};

/**
 * A drawn token's log-probability, its rank (1: the most likely token) and the most likely tokens'
 * ([token, logprob], most likely first), in the distribution it was drawn from: after logit bias, penalties
 * and temperature, before top_k / top_p.
 */
export type TokenLogprobs = { logprob: number; rank: number; top: [number, number][] };

/** 1 + how many of a row's scores are above the token's (vLLM's rank: 1 for the most likely). */
function rankOf(scores: Float32Array, token: number): number {
  const own = scores[token];
  let above = 0;
  for (let t = 0; t < scores.length; t++) if (scores[t] > own) above++;
  return above + 1;
}

/** Whether a sequence must count the tokens it generates (for its penalties). */
export const countsTokens = (s: Sampling): boolean => Boolean(s.frequencyPenalty || s.presencePenalty);

/** Whether a sequence must keep the tokens of its prompt and generation (for its repetition penalty). */
export const keepsTokens = (s: Sampling): boolean => s.repetitionPenalty !== undefined && s.repetitionPenalty !== 1;

/**
 * Applies a sequence's logit bias, its penalties, its suppressed tokens and its allowed ones to its row of logits, before
 * temperature and softmax as OpenAI does. Frequency / presence penalties count the generated tokens (not the
 * prompt's), as vLLM; the repetition penalty applies to every token `seen`, prompt and generated, as Hugging
 * Face's and vLLM's. `produced` is how many it has generated.
 */
export function adjustLogits(
  row: Float32Array,
  s: Sampling,
  generated: ReadonlyMap<number, number> | undefined,
  produced = 0,
  seen?: ReadonlySet<number>,
  recent: readonly number[] = [],
): void {
  for (const word of s.badWords ?? []) if (endsWith(recent, word, word.length - 1)) row[word[word.length - 1]] = Number.NEGATIVE_INFINITY;
  if (s.suppress && produced < s.suppress.until) for (const token of s.suppress.tokens) row[token] = Number.NEGATIVE_INFINITY;
  for (const [token, bias] of s.logitBias ?? []) row[token] += bias;
  const penalty = s.repetitionPenalty ?? 1;
  if (seen) for (const token of seen) row[token] = row[token] > 0 ? row[token] / penalty : row[token] * penalty;
  if (generated) {
    const [frequency, presence] = [s.frequencyPenalty ?? 0, s.presencePenalty ?? 0];
    for (const [token, count] of generated) row[token] -= count * frequency + presence;
  }
  if (s.allowedTokens) {
    const kept = s.allowedTokens.map((token) => row[token]);
    row.fill(Number.NEGATIVE_INFINITY);
    s.allowedTokens.forEach((token, i) => {
      row[token] = kept[i];
    });
  }
}

/** Whether `tokens` ends with the first `n` of `word`. */
function endsWith(tokens: readonly number[], word: readonly number[], n: number): boolean {
  if (tokens.length < n) return false;
  for (let i = 0; i < n; i++) if (tokens[tokens.length - n + i] !== word[i]) return false;
  return true;
}

/** The most of a sequence's last tokens its bad words need kept (none without them). */
export const recentNeeded = (s: Sampling): number => Math.max(0, ...(s.badWords ?? []).map((w) => w.length - 1));

/** mulberry32: a small, fast, seedable PRNG; one per sequence so batching never shares randomness. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Draws a token from one row of probabilities (already softmaxed at the sequence's temperature; greedy rows
 * are the Sampler's, by argmax). Top-k / top-p keep the most likely tokens (`kept`); without them it is one scan.
 */
export function pickToken(probs: Float32Array, s: Sampling, random: () => number, among?: Int32Array): number {
  // A format that allows few tokens (structure, digits, enum values) gives them in order: the same token
  // is drawn as by reading the whole row (every other one has probability 0), in a fraction of the time.
  const n = among ? among.length : probs.length;
  let floor = 0;
  let sum = 1;
  if ((s.topK > 0 && s.topK < n) || s.topP < 1) ({ floor, sum } = kept(among ? Float32Array.from(among, (t) => probs[t]) : probs.slice(), s.topK, s.topP));
  if (s.minP) ({ floor, sum } = minPFloor(probs, among, s.minP, floor, sum));
  let r = random() * sum;
  let last = among ? among[0] : 0; // float rounding can leave a sliver at the end: then the last token that could be drawn
  // Two plain loops rather than one through an index function: this scan runs for every row of every step.
  // A token of probability 0 (masked out) is passed over even by a draw of exactly 0.
  if (among) {
    for (let k = 0; k < n; k++) {
      const i = among[k];
      if (probs[i] < floor || probs[i] === 0) continue;
      r -= probs[i];
      last = i;
      if (r <= 0) return i;
    }
  } else {
    for (let i = 0; i < n; i++) {
      if (probs[i] < floor || probs[i] === 0) continue;
      r -= probs[i];
      last = i;
      if (r <= 0) return i;
    }
  }
  return last;
}

/**
 * min_p's cut over what top-k / top-p kept (tokens of at least `floor`, summing to `sum`): tokens less likely than
 * minP × the most likely's are dropped too. Two scans of the row, only for rows that ask.
 */
function minPFloor(probs: Float32Array, among: Int32Array | undefined, minP: number, floor: number, sum: number): { floor: number; sum: number } {
  const n = among ? among.length : probs.length;
  let max = 0;
  for (let k = 0; k < n; k++) max = Math.max(max, probs[among ? among[k] : k]);
  const cut = minP * max;
  if (cut <= floor) return { floor, sum };
  let kept = 0;
  for (let k = 0; k < n; k++) {
    const p = probs[among ? among[k] : k];
    if (p >= cut) kept += p;
  }
  return { floor: cut, sum: kept };
}

/**
 * What top-k and top-p keep of probabilities `p` (reordered here): in order from the most likely, tokens up
 * to the k-th, or fewer — up to the first whose cumulative probability reaches topP. Answers the last kept
 * probability (`floor`) and their sum. A quickselect that carries the mass of what it sets aside: linear on
 * average, where sorting the row cost ~5 ms for GPT-2's 50257 tokens — per row, per step, for any request
 * with top_p or top_k.
 */
export function kept(p: Float32Array, topK: number, topP: number): { floor: number; sum: number } {
  const limit = topK > 0 ? Math.min(topK, p.length) : p.length;
  let [lo, hi] = [0, p.length]; // p[0, lo) is kept (each above all of p[lo, hi)); the cut lies in [lo, hi)
  let count = 0;
  let mass = 0;
  let floor = Number.POSITIVE_INFINITY;
  // The first pivot from a sample, near where the cut is likely (a language model's mass sits in few tokens):
  // one pass over the row then leaves a small part to work on.
  let first = p.length > 1024 ? sampledPivot(p, limit, topP) : undefined;
  while (lo < hi) {
    // Three ways around a pivot: greater [lo, gt), equal [gt, lt), less [lt, hi) — ties and flat rows stay linear.
    const pivot = first ?? medianOf(p[lo], p[(lo + hi) >> 1], p[hi - 1]);
    first = undefined;
    let [gt, i, lt] = [lo, lo, hi];
    let greaterMass = 0;
    while (i < lt) {
      const x = p[i];
      if (x > pivot) {
        greaterMass += x;
        p[i++] = p[gt];
        p[gt++] = x;
      } else if (x < pivot) {
        p[i] = p[--lt];
        p[lt] = x;
      } else i++;
    }
    const greater = gt - lo;
    if (greater > 0 && (count + greater >= limit || mass + greaterMass >= topP)) {
      hi = gt; // the cut is among the greater
      continue;
    }
    count += greater;
    mass += greaterMass;
    // Then the equal ones (the pivot is one: the floor drops to it), one at a time, as a sorted row is read.
    for (let j = gt; j < lt; j++) {
      count++;
      mass += pivot;
      floor = pivot;
      if (count >= limit || mass >= topP) return { floor, sum: mass };
    }
    lo = lt;
  }
  return { floor, sum: mass };
}

/**
 * A first pivot just below where the cut likely is, estimated from 64 evenly spaced elements of `p` (each
 * standing for 1/64 of them): a few more than `limit` tokens above it, or a little more than `topP` of the mass.
 */
function sampledPivot(p: Float32Array, limit: number, topP: number): number {
  const sample = Float32Array.from({ length: 64 }, (_, i) => p[Math.floor(((i + 0.5) * p.length) / 64)])
    .sort()
    .reverse();
  let at = Math.min(63, Math.ceil((4 * 64 * limit) / p.length));
  if (topP < 1) {
    const total = sample.reduce((a, b) => a + b, 0);
    let mass = 0;
    let reach = 0;
    while (reach < 63 && mass < topP * total) mass += sample[reach++];
    at = Math.min(at, reach + 2);
  }
  return sample[Math.min(63, at)];
}

function medianOf(a: number, b: number, c: number): number {
  return Math.max(Math.min(a, b), Math.min(Math.max(a, b), c));
}

/**
 * A probability's log, at least -9999 (as vLLM answers it): a token masked out, or below float32's least
 * probability, is -Infinity, which JSON cannot hold — it went out as `null`, and a client's exp(null) is 1.
 */
const logOf = (p: number) => Math.max(-9999, Math.log(p));

/**
 * The `n` highest of a row of scores (probabilities, logits), as [token, score], highest first (ties: the lower
 * token first). One pass; a score at or below the n-th highest so far costs one comparison (insertions go into
 * typed arrays: an array of pairs spliced per insertion cost ~0.25 ms a row of 50,257 at n = 8).
 */
export function mostLikely(scores: Float32Array, n: number): [number, number][] {
  if (n <= 0) return [];
  const tokens = new Int32Array(n);
  const values = new Float64Array(n);
  let count = 0;
  let floor = Number.NEGATIVE_INFINITY; // the n-th highest, once there are n
  for (let t = 0; t < scores.length; t++) {
    const x = scores[t];
    if (count === n && x <= floor) continue;
    let at = count < n ? count++ : n - 1; // (full: the lowest makes room)
    for (; at > 0 && values[at - 1] < x; at--) {
      values[at] = values[at - 1];
      tokens[at] = tokens[at - 1];
    }
    values[at] = x;
    tokens[at] = t;
    if (count === n) floor = values[n - 1];
  }
  return Array.from({ length: count }, (_, i): [number, number] => [tokens[i], values[i]]);
}

/**
 * How likely the model found each of `tokens` (a prompt's, each scored by the row before it): row i of
 * `logits` at temperature 1, log-softmax in double precision — a prompt token can be far less likely than
 * a float32 probability can hold — with the `top` most likely tokens of that row.
 */
export function scoreTokens(logits: Float32Array, vocab: number, tokens: number[], top: number): TokenLogprobs[] {
  return tokens.map((token, i) => {
    const row = logits.subarray(i * vocab, (i + 1) * vocab);
    let max = Number.NEGATIVE_INFINITY;
    for (const x of row) if (x > max) max = x;
    let sum = 0;
    for (const x of row) sum += Math.exp(x - max);
    const norm = max + Math.log(sum);
    return { logprob: row[token] - norm, rank: rankOf(row, token), top: mostLikely(row, top).map(([t, x]) => [t, x - norm]) };
  });
}

/** A row to sample: its parameters, its random stream and (with penalties) how often it generated each token. */
export type SamplingRow = {
  sampling: Sampling;
  random: () => number;
  generated?: Map<number, number>;
  produced?: number;
  /** The tokens of its prompt and generation (only with a repetition penalty). */
  seen?: Set<number>;
  /** Its last generated tokens, as many as its longest bad word needs (only with bad words). */
  recent?: number[];
  /** Masks what the sequence's format does not allow next (after bias and penalties). */
  constraint?: Constraint;
  /** Its thinking budget: past it, the end tag's tokens are the only ones drawn. */
  thinking?: ThinkingBudget;
};

/**
 * The sampling head of a replica: softmax at each row's temperature and argmax, vectorised by ONNX
 * Runtime (models/sampler.onnx, and sampler-unscaled.onnx for steps all at temperature 1; a JavaScript Math.exp loop over GPT-2's 50257 tokens costs ~1 ms a row).
 */
export class Sampler {
  /** Where ONNX Runtime writes each step's probabilities: a new 12.8 MB array per 64-row step was garbage. */
  private probs = new Float32Array(0);
  private best = new BigInt64Array(0);
  private rowsBuffer = new Float32Array(0);
  private fewProbs = new Float32Array(0);

  /** `unscaled`: the same head without the temperature's Mul, for steps whose rows are all at temperature 1. */
  private constructor(
    private session: ort.InferenceSession,
    private unscaled: ort.InferenceSession,
  ) {}

  /**
   * `threads`: ONNX Runtime's for the softmax (0: its choice, a thread per core). The replica gives it the
   * model's own: the two never run at once, and on a GPU the cores are otherwise idle.
   */
  static async create(threads = 1): Promise<Sampler> {
    const options: ort.InferenceSession.SessionOptions = { extra: { session: { intra_op: { allow_spinning: '0' } } } };
    if (threads > 0) options.intraOpNumThreads = threads;
    const open = (file: string) => ort.InferenceSession.create(decodeURIComponent(new URL(`../../models/${file}`, import.meta.url).pathname), options);
    return new Sampler(await open('sampler.onnx'), await open('sampler-unscaled.onnx'));
  }

  /**
   * One token per row of `logits` ([rows, vocab]), each with its own sampling parameters and random stream;
   * a row's logits are adjusted in place first (logit bias, penalties on the row's `generated` tokens, the
   * tokens its format does not allow).
   */
  async sample(
    logits: Float32Array,
    vocab: number,
    rows: SamplingRow[],
  ): Promise<{ tokens: number[]; logprobs: (TokenLogprobs | undefined)[]; maskMs: number }> {
    const b = rows.length;
    let maskMs = 0;
    const among: (Int32Array | undefined)[] = [];
    rows.forEach((r, i) => {
      const s = r.sampling;
      const row = logits.subarray(i * vocab, (i + 1) * vocab);
      if (s.logitBias || r.generated || s.suppress || r.seen || s.allowedTokens || s.badWords) adjustLogits(row, s, r.generated, r.produced, r.seen, r.recent);
      if (r.constraint) {
        const t = performance.now();
        among[i] = r.constraint.mask(row);
        maskMs += performance.now() - t;
      }
      const forced = r.thinking?.forced;
      if (forced !== undefined) {
        const logit = row[forced];
        row.fill(Number.NEGATIVE_INFINITY);
        row[forced] = Number.isFinite(logit) ? logit : 0;
        among[i] = Int32Array.of(forced);
      }
    });
    // Greedy rows take their argmax; only those that also want log-probabilities need the softmax. A row whose
    // format allows few tokens gets its softmax here, over those alone (a pass over the whole row in ONNX
    // Runtime costs more than a few thousand exps).
    const greedy = rows.map((r) => r.sampling.temperature === 0 || r.sampling.topK === 1);
    const few = rows.map((_, i) => !greedy[i] && among[i] !== undefined && (among[i] as Int32Array).length <= FEW_TOKENS);
    const drawing = rows.flatMap((r, i) => ((greedy[i] && r.sampling.logprobs === undefined) || few[i] ? [] : [i]));
    const apart = rows.flatMap((_, i) => (few[i] ? [i] : []));
    if (this.fewProbs.length < apart.length * vocab) this.fewProbs = new Float32Array(apart.length * vocab);
    apart.forEach((i, j) => {
      const t = rows[i].sampling.temperature;
      softmaxAmong(logits.subarray(i * vocab, (i + 1) * vocab), among[i] as Int32Array, t > 0 ? 1 / t : 1, this.fewProbs.subarray(j * vocab, (j + 1) * vocab));
    });
    const k = drawing.length;
    if (this.probs.length < k * vocab) this.probs = new Float32Array(k * vocab);
    const probs = this.probs.subarray(0, k * vocab);
    if (k > 0) {
      const input = k === b ? logits.subarray(0, b * vocab) : this.gathered(logits, vocab, drawing);
      const inv = Float32Array.from(drawing, (i) => (rows[i].sampling.temperature > 0 ? 1 / rows[i].sampling.temperature : 1));
      // Every output is fetched into a reused buffer: fetching the probabilities alone (the argmax is taken
      // here) measured 10-15% fewer tokens/s through the gateway (32 streams), though not in a bare loop.
      if (this.best.length < k) this.best = new BigInt64Array(k);
      const fetches = { probs: new ort.Tensor('float32', probs, [k, vocab]), best: new ort.Tensor('int64', this.best.subarray(0, k), [k]) };
      const scores = new ort.Tensor('float32', input, [k, vocab]);
      // All at temperature 1 (clients' default): no Mul, a pass over every row fewer.
      if (inv.every((x) => x === 1)) await this.unscaled.run({ logits: scores }, fetches);
      else await this.session.run({ logits: scores, inv_temperature: new ort.Tensor('float32', inv, [k, 1]) }, fetches);
    }
    const slot = new Map(drawing.map((i, j) => [i, j]));
    const fewSlot = new Map(apart.map((i, j) => [i, j]));
    const row = (i: number) => {
      const [source, at] = few[i] ? [this.fewProbs, fewSlot.get(i) as number] : [probs, slot.get(i) as number];
      return source.subarray(at * vocab, (at + 1) * vocab);
    };
    const tokens = rows.map((r, i) => (greedy[i] ? argmax(logits.subarray(i * vocab, (i + 1) * vocab)) : pickToken(row(i), r.sampling, r.random, among[i])));
    const logprobs = rows.map((r, i) =>
      r.sampling.logprobs === undefined
        ? undefined
        : {
            logprob: logOf(row(i)[tokens[i]]),
            rank: greedy[i] ? 1 : rankOf(row(i), tokens[i]), // (a greedy row's token is its most likely: nothing ranks above it)
            top: mostLikely(row(i), r.sampling.logprobs).map(([t, p]): [number, number] => [t, logOf(p)]),
          },
    );
    return { tokens, logprobs, maskMs };
  }

  /** Rows `which` of `logits`, side by side in a reused buffer. */
  private gathered(logits: Float32Array, vocab: number, which: number[]): Float32Array {
    if (this.rowsBuffer.length < which.length * vocab) this.rowsBuffer = new Float32Array(which.length * vocab);
    which.forEach((i, j) => {
      this.rowsBuffer.set(logits.subarray(i * vocab, (i + 1) * vocab), j * vocab);
    });
    return this.rowsBuffer.subarray(0, which.length * vocab);
  }
}

/** Allowed tokens up to which a row's softmax is computed here, over them alone. */
const FEW_TOKENS = 2048;

/** Probabilities of the `among` tokens of a row (every other one 0) at inverse temperature `inv`, into `out`. */
function softmaxAmong(row: Float32Array, among: Int32Array, inv: number, out: Float32Array): void {
  out.fill(0);
  let max = Number.NEGATIVE_INFINITY;
  for (let k = 0; k < among.length; k++) max = Math.max(max, row[among[k]] * inv);
  let sum = 0;
  for (let k = 0; k < among.length; k++) {
    const e = Math.exp(row[among[k]] * inv - max);
    out[among[k]] = e;
    sum += e;
  }
  for (let k = 0; k < among.length; k++) out[among[k]] /= sum;
}

/** The first highest score's index (ONNX Runtime's ArgMax picks the first too). */
function argmax(row: Float32Array): number {
  let at = 0;
  let max = row[0];
  for (let t = 1; t < row.length; t++) {
    const x = row[t];
    if (x > max) {
      max = x;
      at = t;
    }
  }
  return at;
}
