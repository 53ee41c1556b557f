// How a decoder step is laid out: which joining prompts share a prefill run, and whether a decode step
// splits its sequences by length. Pure, so that the rules are tested on their own.

/**
 * The logits one prefill run may write. Every position's (the Hugging Face layout: [sequences, longest
 * prompt, vocab]) is 200 KB per position at GPT-2's vocabulary, so ~80 positions. Measured on the CPU
 * (20-token prompts): GPT-2 small prefilled 16 prompts in 860 ms one at a time, 530 in groups of 4, 680-780
 * all together; tiny-gpt, whose run is mostly writing those logits, 120 ms one at a time, 150 in fours,
 * 190-230 in sixteens. Past ~16 MB of logits, memory traffic eats the gain.
 */
export const PREFILL_LOGITS_BYTES = 16 * 2 ** 20;
/**
 * Padded positions per prefill run where only the last position's logits are written (`logits_to_keep`):
 * then the hidden states bound it. Measured on the CPU, GPT-2 small, 64 prompts of 12-20 tokens: 1.7-1.8 s
 * in runs of ~80 positions, 1.4-1.9 s of 256 or 512, 1.8-2.6 s all in one; tiny-gpt, 32 prompts: 62-89 ms
 * one at a time with every position's logits, 15-28 ms with the last one's, in runs of 256 positions.
 */
export const PREFILL_POSITIONS = 512;

/** What one run may take: sequences (their logits rows), new positions (padded), and the chunk (0: none). */
export type ExtensionLimits = { sequences: number; tokens: number; chunk: number };

type Extending = { seq: { length: number; prefilling?: { prompt: number[] }; sampling: { promptLogprobs?: number } } };

/**
 * Sequences extending their rows in runs within `limits` (or one sequence), alike past lengths and chunk
 * lengths together so that little of a run is padding (all of them answer at the end of the step anyway).
 * A prompt to be scored runs alone: it needs every position's logits, with no padding among them.
 */
export function extensionGroups<S extends Extending>(items: S[], limits: ExtensionLimits): S[][] {
  const chunk = (x: S) => {
    const rest = (x.seq.prefilling?.prompt.length ?? x.seq.length) - x.seq.length;
    return limits.chunk > 0 && x.seq.sampling.promptLogprobs === undefined ? Math.min(rest, limits.chunk) : rest;
  };
  const groups: S[][] = items.filter((x) => x.seq.sampling.promptLogprobs !== undefined).map((x) => [x]);
  let group: S[] = [];
  let longest = 0;
  const sorted = items.filter((x) => x.seq.sampling.promptLogprobs === undefined).sort((a, b) => a.seq.length - b.seq.length || chunk(a) - chunk(b));
  for (const x of sorted) {
    const widened = Math.max(longest, chunk(x));
    if (group.length > 0 && (group.length === limits.sequences || (group.length + 1) * widened > limits.tokens)) {
      groups.push(group);
      group = [];
    }
    longest = group.length === 0 ? chunk(x) : widened;
    group.push(x);
  }
  if (group.length > 0) groups.push(group);
  return groups;
}

/**
 * Row-positions of padding one decode run may carry before the short sequences run apart from the long ones.
 * A second run reads all the weights again (tens of ms for GPT-2 small on this CPU, well under one on a GPU);
 * padding costs the attention and, on a GPU, the copy of every padded position, every step.
 */
const SPLIT_MIN_PADDING = 4096;

/**
 * The advancing sequences in two groups, short then long, where one run over the padded layout (`positions`
 * per row) would carry at least SPLIT_MIN_PADDING more row-positions than the two; else null (one run).
 */
export function splitByLength<S extends { length: number }>(seqs: S[], positions: number): S[][] | null {
  const sorted = [...seqs].sort((a, b) => a.length - b.length);
  const n = sorted.length;
  let best = { saved: 0, at: 0 };
  for (let k = 1; k < n; k++) {
    const saved = n * positions - (k * sorted[k - 1].length + (n - k) * sorted[n - 1].length);
    if (saved > best.saved) best = { saved, at: k };
  }
  return best.saved >= SPLIT_MIN_PADDING ? [sorted.slice(0, best.at), sorted.slice(best.at)] : null;
}
