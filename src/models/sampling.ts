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
};

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

export function sample(logits: Float32Array, s: Sampling, random: () => number): number {
  const n = logits.length;
  let best = 0;
  for (let i = 1; i < n; i++) if (logits[i] > logits[best]) best = i;
  if (s.temperature === 0 || s.topK === 1) return best;

  const probs = new Float64Array(n);
  const max = logits[best];
  let sum = 0;
  for (let i = 0; i < n; i++) {
    probs[i] = Math.exp((logits[i] - max) / s.temperature);
    sum += probs[i];
  }
  // Truncation (top_k, top_p) needs the probabilities in order; skipped (one linear pass) when both are off.
  let floor = 0;
  if ((s.topK > 0 && s.topK < n) || s.topP < 1) {
    const sorted = Float64Array.from(probs).sort().reverse();
    let keep = s.topK > 0 ? Math.min(s.topK, n) : n;
    if (s.topP < 1) {
      let cumulative = 0;
      for (let i = 0; i < keep; i++) {
        cumulative += sorted[i] / sum;
        if (cumulative >= s.topP) {
          keep = i + 1;
          break;
        }
      }
    }
    floor = sorted[keep - 1];
    sum = 0;
    for (let i = 0; i < n; i++) if (probs[i] >= floor) sum += probs[i];
  }
  let r = random() * sum;
  for (let i = 0; i < n; i++) {
    if (probs[i] < floor) continue;
    r -= probs[i];
    if (r <= 0) return i;
  }
  return best;
}
