import { AnswerFormat, type Constraint } from './answer-format.js';
import { type Beam, type Hypothesis, stopMatcher } from './beam-search.js';
import { BeamSearches } from './beam-searches.js';
import type { GenerativeSpec } from './generative.js';
import { grammarFor, TokenConstraint, type Vocabulary, vocabularyFor } from './grammar/index.js';
import { KvRows, kvArray } from './kv-rows.js';
import { AdapterCache, type AdapterRef, adapterKey, type LoadedAdapter, LoraStack } from './lora.js';
import { ort } from './ort.js';
import type { KvArray, PrefixCache, PrefixHit } from './prefix-cache.js';
import {
  countsTokens,
  keepsTokens,
  recentNeeded,
  type Sampler,
  type Sampling,
  type SamplingRow,
  scoreTokens,
  seededRandom,
  type TokenLogprobs,
} from './sampling.js';
import { followPrediction, lookupMatch, type Prediction, predictedDraft, SharedDrafts, type Speculation } from './speculation.js';
import { type ExtensionLimits, extensionGroups, PREFILL_LOGITS_BYTES, PREFILL_POSITIONS, splitByLength } from './step-plan.js';
import { loadTokenizer, type Tokenizer } from './text.js';
import { ThinkingBudget } from './thinking-budget.js';

/** One generation step for a replica: sequences joining (prefilled), advancing one token, and leaving. */
export type StepRequest = {
  /**
   * `maxTokens`: the most it will generate (speculation proposes no more than that). `resumed`: the prompt's last
   * this-many tokens are the sequence's own, generated on a replica since lost: it goes on from there. `cacheSalt`:
   * its prompt is cached, and found, only with that salt (vLLM's cache_salt: no prefix shared across tenants).
   */
  join: { seq: string; prompt: number[]; sampling: Sampling; adapter?: AdapterRef; maxTokens?: number; resumed?: number; cacheSalt?: string }[];
  advance: string[];
  release: string[];
};
export type StepResult = {
  tokens: Record<string, number>;
  /** Speculative decoding: a sequence's drafted tokens taken after its token of `tokens`, in order (with their logprobs). */
  more?: Record<string, number[]>;
  moreLogprobs?: Record<string, TokenLogprobs[]>;
  /** Drafted tokens this step proposed, and how many of them were taken. */
  speculated?: { proposed: number; accepted: number };
  /** Of those, the drafted tokens of each sequence's prediction (Predicted Outputs) taken. */
  predicted?: Record<string, number>;
  /** For the sequences that asked for them (`sampling.logprobs`). */
  logprobs?: Record<string, TokenLogprobs>;
  /** For joining sequences that asked (`sampling.promptLogprobs`): each prompt token's after the first. */
  promptLogprobs?: Record<string, TokenLogprobs[]>;
  /** Joining sequences whose prompt began with a cached prefix: how many of its tokens were not computed. */
  cached?: Record<string, number>;
  prefillMs: number;
  decodeMs: number;
  /** Of those, the time drawing tokens took (logit adjustments, masks, softmax, the draw: CPU work, serial with the runs). */
  sampleMs: number;
  /** Of that, the time response formats' masks took (structured output). */
  maskMs: number;
  decodeBatch: number;
  /** Bytes held after the step: the sequences' KV cache rows, and the prefix cache's stored prompts. */
  cacheBytes: { kv: number; prefix: number };
  /** Beam searches that ended this step: each one's best texts, best first (its sequences are gone). */
  beams?: Record<string, Hypothesis[]>;
  /** Joining sequences refused alone (their response format could not be set up): why. They hold no row. */
  failed?: Record<string, string>;
};
/** A sequence whose prompt is computed on what its row holds, a chunk per run. */
type Extension = { id: string; seq: Sequence };
/** A step's drawn tokens, by sequence id. */
type Drawn = Pick<
  StepResult,
  'tokens' | 'more' | 'moreLogprobs' | 'speculated' | 'predicted' | 'logprobs' | 'promptLogprobs' | 'cached' | 'sampleMs' | 'maskMs' | 'failed' | 'beams'
>;

type Sequence = {
  /** Its row in the batch caches. */
  row: number;
  /** Positions filled in its row. */
  length: number;
  last: number;
  sampling: Sampling;
  random: () => number;
  /** How often it generated each token, for its penalties (only if it has any). */
  generated?: Map<number, number>;
  /** Its prompt's and generation's tokens, for its repetition penalty (only if it has one). */
  seen?: Set<number>;
  /** Its last generated tokens, for its bad words (only if it has some). */
  recent?: number[];
  /** Tokens it has generated. */
  produced: number;
  /** While its prompt is computed a chunk per step: the prompt, and how much of it is in its row. */
  prefilling?: { prompt: number[] };
  /** What its response format allows next (only if it has one). */
  constraint?: Constraint;
  /** Its thinking budget (only if it has one). */
  thinking?: ThinkingBudget;
  /** Its LoRA adapter (none: the model as it is). */
  adapter?: LoadedAdapter;
  /** Where its prompt is kept in the prefix cache and alike prompts are computed once: its adapter's and salt's. */
  cacheSpace: string;
  /** With speculation: its prompt and generated tokens (what drafts are looked up in), and the most it generates. */
  history?: number[];
  maxTokens?: number;
  /** Drafts none of whose tokens were taken, in a row, and the steps it drafts nothing for after them. */
  missed?: { times: number; skip: number };
  /** Its request's predicted output (OpenAI's Predicted Outputs), and where the output is in it. */
  prediction?: Prediction;
  /** A beam of a beam search (BeamSearches): its id, its tokens and their log-probability, its next token's candidates. */
  beam?: Beam & { id: string };
};

/**
 * The replica's side of continuous batching: it keeps every sequence's KV cache (a row each: KvRows) and runs
 * one step at a time — prompts are computed (`extend`: joining ones together, after a cached prefix where the
 * prefix cache has one, long ones a chunk per step), then all advancing sequences decode one token in a batched
 * run (two, short and long, where padding would cost more: `decode`), or check their drafts (`speculate`).
 * A decode step's past is a view of the first rows as laid out; the price: attention also runs over the rows'
 * padding, and rows before the last advancing one that are not advancing this step (paused streams) are
 * computed and their results dropped.
 */
export class Decoder {
  private seqs = new Map<string, Sequence>();
  /** Beam searches, their beams rows here (and in `seqs`). */
  private beams = new BeamSearches<Sequence>({
    copy: (from, to) => this.kv.copy(from, to),
    fork: (like, id) => {
      const seq: Sequence = { ...like, beam: { id, tokens: [], logprob: 0 } };
      this.kv.add(seq, like.length + 1);
      this.seqs.set(id, seq);
      return seq;
    },
    release: (id) => this.releaseRow(id),
  });
  /** Their KV caches, a row each. */
  private kv: KvRows<Sequence>;
  /** Logits and fetched keys/values, reused by name so that decode steps allocate nothing large. */
  private scratch = new Map<string, KvArray>();
  /** The tokenizer's tokens by their bytes, for response formats (built when the first one comes). */
  private vocabulary?: Vocabulary;
  /** The tokenizer, for beam searches' stop strings (loaded when the first one comes). */
  private tokenizer?: Tokenizer;
  /** The session has a `logits_to_keep` input (`spec.logitsToKeep` says whether prefill makes use of it). */
  private takesKeep: boolean;
  /** For a model that takes LoRA adapters: those read, and the run's stacked. */
  private adapters?: { cache: AdapterCache; stack: LoraStack };
  /** With suffix decoding: earlier requests' texts, to draft from. */
  private shared?: SharedDrafts;

  constructor(
    private session: ort.InferenceSession,
    private spec: GenerativeSpec,
    private sampler: Sampler,
    /** Prompts' caches kept for later prompts that start the same way (none: every prompt is computed whole). */
    private prefixCache?: PrefixCache,
    /** Longer prompts are computed this many tokens per step (0: whole, in the step they join). */
    private prefillChunkTokens = 0,
    /** Draft tokens from each sequence's own text and check them in one run (none: a token a step). */
    private speculation?: Speculation,
  ) {
    this.takesKeep = session.inputNames.includes('logits_to_keep');
    this.kv = new KvRows(spec);
    if (spec.lora) this.adapters = { cache: new AdapterCache(spec.lora), stack: new LoraStack(spec.lora) };
    if (speculation?.sharedTokens) this.shared = new SharedDrafts(speculation.sharedTokens, speculation.ngramMax, speculation.ngramMin);
  }

  get active(): number {
    return this.seqs.size;
  }

  /** Bytes the KV caches hold. */
  get cacheBytes(): number {
    return this.kv.bytes;
  }

  async step(req: StepRequest): Promise<StepResult> {
    for (const seq of req.release) this.release(seq);
    const drawn: Drawn = { tokens: {}, sampleMs: 0, maskMs: 0 };
    const t0 = performance.now();
    // Long prompts go on, a chunk each per step (so that the others' tokens keep coming meanwhile); joining
    // prompts start, after a cached prefix where there is one.
    // A beam search advances as all of its live beams.
    const advance = this.beams.expand(req.advance);
    const prefilling = advance.filter((id) => this.seqs.get(id)?.prefilling);
    const extending: Extension[] = prefilling.map((id) => ({ id, seq: this.seqs.get(id) as Sequence }));
    await this.tokenizerFor(req.join, drawn);
    const constraints = await this.constraintsFor(req.join, drawn);
    const adapters = await this.adaptersFor(req.join, drawn);
    for (const j of req.join) {
      // (a token past the embedding table would fail the step's run, every sequence in it; the gateway checks first)
      const outside = j.prompt.find((token) => token < 0 || token >= this.spec.vocab);
      if (outside !== undefined) {
        drawn.failed ??= {};
        drawn.failed[j.seq] = `prompt token ${outside} is not in the model's vocabulary (${this.spec.vocab} tokens)`;
      }
      if (drawn.failed?.[j.seq]) continue;
      // A prompt to be scored needs every position's logits: it is computed whole, in a run of its own. One
      // with an adapter has keys and values of its own: cached apart, under the adapter's path.
      const hit = j.sampling.promptLogprobs === undefined ? this.prefixCache?.lookup(j.prompt, cacheSpaceOf(j)) : undefined;
      extending.push(this.startPrefill(j, hit, drawn, constraints.get(j.seq), adapters.get(j.seq)));
    }
    for (const group of extensionGroups(extending, this.extensionLimits()))
      await this.isolating(
        group,
        (x) => x.id,
        () => this.extend(group, drawn),
        (x) => this.extend([x], drawn),
        drawn,
      );
    const t1 = performance.now();
    const advancing = advance.filter((id) => this.seqs.has(id) && !prefilling.includes(id));
    if (advancing.length > 0) await this.decode(advancing, drawn);
    const searched = this.beams.step();
    if (searched.ended) drawn.beams = searched.ended;
    if (searched.failed) drawn.failed = { ...drawn.failed, ...searched.failed };
    const cacheBytes = { kv: this.cacheBytes, prefix: this.prefixCache?.size ?? 0 };
    return { ...drawn, prefillMs: t1 - t0, decodeMs: performance.now() - t1, decodeBatch: advancing.length, cacheBytes };
  }

  /**
   * How many sequences and new (padded) positions one run takes: bounded by the logits it writes — one row a
   * sequence where only the last position's come out, every position's otherwise — and by the chunk.
   */
  private extensionLimits(): ExtensionLimits {
    const logitsRows = Math.max(1, Math.floor(PREFILL_LOGITS_BYTES / (4 * this.spec.vocab)));
    const tokens = this.spec.logitsToKeep ? Math.max(this.prefillChunkTokens, PREFILL_POSITIONS) : logitsRows;
    return { sequences: logitsRows, tokens, chunk: this.prefillChunkTokens };
  }

  /**
   * Admits a joining sequence: a row of its own, holding a cached prefix of its prompt where there is one;
   * `extend` computes the rest of the prompt on it.
   */
  private startPrefill(j: StepRequest['join'][number], hit: PrefixHit | undefined, drawn: Drawn, constraint?: Constraint, adapter?: LoadedAdapter): Extension {
    this.release(j.seq);
    const cached = hit?.length ?? 0;
    const seq = this.admit(j, constraint, adapter);
    seq.length = cached;
    seq.prefilling = { prompt: j.prompt };
    this.seqs.set(j.seq, seq);
    if (hit) {
      // (each stored cache is [heads, entry length, headDim]: one row)
      for (let c = 0; c < 2 * this.spec.layers; c++) this.kv.put(c, seq, 0, hit.entry.kv[c], { row: 0, positions: hit.entry.length, start: 0 }, cached);
      drawn.cached = { ...drawn.cached, [j.seq]: cached };
    }
    return { id: j.seq, seq };
  }

  /**
   * Computes the next chunk of each sequence's prompt (`prefill_chunk` tokens, or all the rest) in one run,
   * with what the rows hold as their pasts (gathered, padded to the longest, the padding masked). Chunks are
   * padded to the longest: on the left where only the last position's logits come out (`logits_to_keep`), so
   * that every chunk ends there, as Hugging Face's batched generation pads; on the right otherwise, each
   * chunk's last logits picked out. Alike sequences (a request's `n` choices: the same prompt, as far in) are
   * computed once and copied. Each chunk's keys and values go to its row; a sequence whose whole prompt is in
   * draws its first token (a scored prompt, alone in its run, gets every position's log-probabilities too).
   */
  private async extend(items: Extension[], drawn: Drawn): Promise<void> {
    const { vocab } = this.spec;
    const promptOf = (x: Extension) => (x.seq.prefilling as { prompt: number[] }).prompt;
    const runs: Extension[] = [];
    const runOf = new Map<string, number>();
    /** The run each sequence takes its keys, values and logits from. */
    const source = items.map((x) => {
      const key = `${x.seq.cacheSpace}:${x.seq.length}:${promptOf(x).join(',')}`;
      if (!runOf.has(key)) runOf.set(key, runs.push(x) - 1);
      return runOf.get(key) as number;
    });
    const scored = runs.length === 1 ? runs[0].seq.sampling.promptLogprobs : undefined;
    const lastOnly = this.spec.logitsToKeep && scored === undefined;
    const chunks = runs.map((x) => {
      const { length } = x.seq;
      return promptOf(x).slice(length, this.prefillChunkTokens > 0 && scored === undefined ? length + this.prefillChunkTokens : undefined);
    });
    const { logits, kept, start, keep } = await this.runPositions(
      runs.map((x) => x.seq),
      chunks,
      lastOnly,
      'extend',
    );
    // The first tokens are drawn before any sequence changes: where drawing fails, the group is run again a
    // sequence at a time (`isolating`) from where it was.
    const done = items.map((x, i) => ({ ...x, r: source[i] })).filter((x) => x.seq.length + chunks[x.r].length === promptOf(x).length);
    const last = this.buffer('extend-last-logits', done.length * vocab, 'float32') as Float32Array;
    done.forEach(({ r }, d) => {
      const at = r * kept + (kept === 1 ? 0 : start(r) + chunks[r].length - 1);
      last.set(logits.subarray(at * vocab, (at + 1) * vocab), d * vocab);
    });
    const next =
      done.length === 0
        ? undefined
        : await this.sample(
            last,
            done.map(({ seq }) => seq),
            drawn,
          );
    items.forEach(({ seq }, i) => {
      keep(source[i], seq, chunks[source[i]].length);
      seq.length += chunks[source[i]].length;
    });
    if (scored !== undefined) drawn.promptLogprobs = { ...drawn.promptLogprobs, [runs[0].id]: scoreTokens(logits, vocab, promptOf(runs[0]).slice(1), scored) };
    if (!next) return;
    done.forEach((x, d) => {
      const prompt = promptOf(x);
      x.seq.prefilling = undefined;
      drew(drawn, x.id, x.seq, next, d);
      // Alike sequences hold the same keys and values: the prefix cache is offered the first's.
      if (runs.some((run) => run.id === x.id)) this.keepPrefix(prompt, x.seq);
    });
  }

  /**
   * `together`, a run over `items` (a group's prompts, or decode rows); one the model fails (more memory than the
   * device has left, say) is tried again an item at a time (`alone`), so that only a sequence the model fails alone
   * fails — its row freed, its request answered with the error — and the step goes on for the others (nothing is
   * kept from a failed run).
   */
  private async isolating<T>(items: T[], idOf: (item: T) => string, together: () => Promise<void>, alone: (item: T) => Promise<void>, drawn: Drawn) {
    try {
      return await together();
    } catch (err) {
      if (items.length === 1) return this.failAlone(idOf(items[0]), err as Error, drawn);
    }
    for (const item of items) await alone(item).catch((err: Error) => this.failAlone(idOf(item), err, drawn));
  }

  private failAlone(id: string, err: Error, drawn: Drawn): void {
    drawn.failed ??= {};
    drawn.failed[id] = `the model failed it: ${err.message}`;
    this.release(id);
  }

  /**
   * One run of new positions after the rows' pasts (gathered, padded to the longest, the padding masked):
   * `chunks[r]` comes after `seqs[r]`'s `length` positions; chunks are padded to the longest — on the left when
   * `lastOnly` (only the last position's logits come out, so every chunk ends there), on the right otherwise.
   * Answers the logits [rows, kept, vocab], where row r's chunk starts among the new positions, and `keep(r, seq,
   * count)`, which copies row r's first `count` new keys and values into `seq`'s cache after its length.
   * Outputs go into reused buffers (named by `name`): the logits are the largest tensor of all, and a fresh one
   * per run (page faults, a large external buffer for V8 to collect) cost more than the run itself on a small model.
   */
  private async runPositions(seqs: Sequence[], chunks: number[][], lastOnly: boolean, name: string) {
    const { heads, headDim, layers, vocab, kvType, newKeyValues } = this.spec;
    const k = seqs.length;
    this.kv.reserve(this.kv.rows.length, Math.max(...seqs.map((seq, r) => seq.length + chunks[r].length)) + 1);
    const past = Math.max(...seqs.map((seq) => seq.length));
    const n = Math.max(...chunks.map((c) => c.length));
    const start = (r: number) => (lastOnly ? n - chunks[r].length : 0);
    const ids = new BigInt64Array(k * n);
    const positions = new BigInt64Array(k * n);
    const mask = new BigInt64Array(k * (past + n));
    seqs.forEach((seq, r) => {
      mask.fill(1n, r * (past + n), r * (past + n) + seq.length);
      chunks[r].forEach((token, t) => {
        ids[r * n + start(r) + t] = BigInt(token);
        positions[r * n + start(r) + t] = BigInt(seq.length + t);
        mask[r * (past + n) + past + start(r) + t] = 1n;
      });
    });
    const kept = lastOnly ? 1 : n;
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', ids, [k, n]),
      position_ids: new ort.Tensor('int64', positions, [k, n]),
      attention_mask: new ort.Tensor('int64', mask, [k, past + n]),
      ...this.keep(kept),
      ...this.adapters?.stack.feeds(seqs.map((seq) => seq.adapter)),
    };
    const kvOutput = newKeyValues ? 'new_key_values' : 'present';
    const fetched = newKeyValues ? n : past + n;
    const fetches: Record<string, ort.Tensor> = {
      logits: new ort.Tensor('float32', this.buffer(`${name}-logits`, k * kept * vocab, 'float32'), [k, kept, vocab]),
    };
    for (let l = 0; l < layers; l++) {
      for (const [c, kind] of ['key', 'value'].entries()) {
        feeds[`past_key_values.${l}.${kind}`] = new ort.Tensor(kvType, this.kv.gather(seqs, past, 2 * l + c), [k, heads, past, headDim]);
        const out = `${kvOutput}.${l}.${kind}`;
        fetches[out] = new ort.Tensor(kvType, this.buffer(`${name}-${out}`, k * heads * fetched * headDim, kvType), [k, heads, fetched, headDim]);
      }
    }
    await this.session.run(feeds, fetches);
    const keep = (r: number, seq: Sequence, count: number) => {
      for (let l = 0; l < layers; l++)
        for (const [c, kind] of ['key', 'value'].entries()) {
          const computed = fetches[`${kvOutput}.${l}.${kind}`].data as KvArray; // [k, heads, fetched, headDim]
          this.kv.put(2 * l + c, seq, seq.length, computed, { row: r, positions: fetched, start: fetched - n + start(r) }, count);
        }
    };
    return { logits: fetches.logits.data as Float32Array, kept, start, keep };
  }

  /**
   * The tokenizer, for the joining sequences that read their text (a beam search's stop strings, a thinking's tags);
   * one that cannot be loaded fails those sequences alone, not the step.
   */
  private async tokenizerFor(join: StepRequest['join'], drawn: Drawn): Promise<void> {
    const reading = join.filter((j) => j.sampling.beam?.stops?.length || j.sampling.thinking);
    if (reading.length === 0 || this.tokenizer) return;
    try {
      this.tokenizer = await loadTokenizer(this.spec.tokenizer);
    } catch (err) {
      drawn.failed ??= {};
      for (const j of reading) drawn.failed[j.seq] = `its text cannot be read: ${(err as Error).message}`;
    }
  }

  /**
   * Each joining sequence's response-format constraint. One that cannot be set up (the gateway checked the
   * format with the same code, so this is not expected) fails that sequence alone, not the step.
   */
  private async constraintsFor(join: StepRequest['join'], drawn: Drawn): Promise<Map<string, Constraint>> {
    const out = new Map<string, Constraint>();
    for (const j of join) {
      if (!j.sampling.format || drawn.failed?.[j.seq]) continue;
      try {
        this.vocabulary ??= await vocabularyFor(await loadTokenizer(this.spec.tokenizer), this.spec.vocab);
        const format = new TokenConstraint(grammarFor(j.sampling.format), this.vocabulary);
        // A reasoning model's format holds its answer, after the thinking (its tags are the thinking's).
        const { thinking } = j.sampling;
        out.set(j.seq, thinking ? new AnswerFormat(format, new ThinkingBudget({ ...thinking, budget: undefined }, this.tokenizer as Tokenizer)) : format);
      } catch (err) {
        drawn.failed ??= {};
        drawn.failed[j.seq] = `its response format cannot be enforced: ${(err as Error).message}`;
      }
    }
    return out;
  }

  /**
   * Each joining sequence's adapter, read on first use. One that cannot be read (the gateway read it with the
   * same code when it was named, so this is a file gone or changed since) fails that sequence alone.
   */
  private async adaptersFor(join: StepRequest['join'], drawn: Drawn): Promise<Map<string, LoadedAdapter>> {
    const out = new Map<string, LoadedAdapter>();
    for (const j of join) {
      if (!j.adapter || drawn.failed?.[j.seq]) continue;
      try {
        if (!this.adapters) throw new Error('the model takes no LoRA adapters');
        out.set(j.seq, await this.adapters.cache.load(j.adapter));
      } catch (err) {
        drawn.failed ??= {};
        drawn.failed[j.seq] = `its LoRA adapter ${j.adapter.name} cannot be used: ${(err as Error).message}`;
      }
    }
    return out;
  }

  /** A joining sequence's row, after the last. */
  private admit(j: StepRequest['join'][number], constraint?: Constraint, adapter?: LoadedAdapter): Sequence {
    const seq: Sequence = {
      row: 0,
      length: j.prompt.length,
      last: 0,
      sampling: j.sampling,
      random: seededRandom(j.sampling.seed),
      generated: countsTokens(j.sampling) ? new Map() : undefined,
      seen: keepsTokens(j.sampling) ? new Set(j.prompt) : undefined,
      recent: recentNeeded(j.sampling) > 0 ? [] : undefined,
      produced: 0,
      constraint,
      thinking: j.sampling.thinking?.budget !== undefined ? new ThinkingBudget(j.sampling.thinking, this.tokenizer as Tokenizer) : undefined,
      adapter,
      cacheSpace: cacheSpaceOf(j),
      history: this.speculation || j.sampling.prediction ? [...j.prompt] : undefined,
      prediction: j.sampling.prediction && { tokens: j.sampling.prediction, at: 0, left: 0 },
      maxTokens: j.maxTokens,
    };
    if (j.sampling.beam) {
      // Each step's draw is dropped: the beam search wants the likeliest 2 × width tokens and their log-probabilities.
      seq.sampling = { ...j.sampling, topK: 1, logprobs: Math.max(2 * j.sampling.beam.width, j.sampling.beam.logprobs ?? 0) };
      const { stops } = j.sampling.beam;
      const tokenizer = this.tokenizer as Tokenizer;
      const stopOf = stops?.length ? stopMatcher(stops, (t) => tokenizer.bytes(t)) : undefined;
      this.beams.start(seq, j.seq, j.sampling.beam, j.maxTokens ?? 1, stopOf);
    }
    // Room for the whole prompt now: growing the caches chunk by chunk would copy them all each time.
    this.kv.add(seq, j.prompt.length + 1);
    if (j.resumed) this.resume(seq, j.prompt.slice(-j.resumed));
    return seq;
  }

  /**
   * A sequence starting again after its replica was lost, with the tokens it had generated there as the end of its
   * prompt: they count as its own — for its penalties, its format, `max_tokens` — and its random stream is moved
   * past the draws they took (one per token drawn by sampling), so that it goes on as it would have.
   */
  private resume(seq: Sequence, generated: number[]): void {
    seq.produced = generated.length;
    for (const token of generated) {
      seq.generated?.set(token, (seq.generated.get(token) ?? 0) + 1);
      remember(seq, token);
      seq.constraint?.advance(token);
      seq.thinking?.advance(token);
      if (seq.prediction) followPrediction(seq.prediction, token);
    }
    const { temperature, topK } = seq.sampling;
    if (temperature > 0 && topK !== 1) for (let i = 0; i < generated.length; i++) seq.random();
  }

  /** Offers a just-prefilled prompt's keys and values to the prefix cache (read from `seq`'s row). */
  private keepPrefix(prompt: number[], seq: Sequence): void {
    this.prefixCache?.insert(prompt, (c, head, length) => this.kv.view(c, seq, head, length), seq.cacheSpace);
  }

  /**
   * One decode step for the advancing sequences. Usually one run over the first rows as they are laid out
   * (the caches are a view, paused rows computed and dropped). But the layout pads every row to the longest
   * sequence: when a few long sequences would make many short ones attend over thousands of padded positions,
   * the short ones run on their own, their pasts gathered to their own longest (`splitByLength`).
   */
  private async decode(ids: string[], drawn: Drawn): Promise<void> {
    // Sequences with a draft go through a run of their own that checks it; the others decode a token.
    const busy = this.speculation?.disableAt !== undefined && ids.length >= this.speculation.disableAt;
    const speculating: { id: string; seq: Sequence; draft: number[] }[] = [];
    for (const id of busy ? [] : ids) {
      const seq = this.seqs.get(id) as Sequence;
      const draft = this.draft(seq);
      if (draft.length > 0) speculating.push({ id, seq, draft });
    }
    if (speculating.length > 0 && (await this.speculate(speculating, drawn))) {
      const checked = new Set(speculating.map((d) => d.id));
      ids = ids.filter((id) => !checked.has(id));
      if (ids.length === 0) return;
    }
    const advancing = new Map(ids.map((id) => [this.seqs.get(id) as Sequence, id]));
    // Room for this step's keys/values after every advancing sequence's cache.
    this.kv.reserve(this.kv.rows.length, Math.max(...[...advancing.keys()].map((s) => s.length)) + 1);
    const groups = splitByLength([...advancing.keys()], this.kv.positions);
    if (!groups) {
      const b = Math.max(...[...advancing.keys()].map((s) => s.row)) + 1;
      const run = () => this.decodeRows(this.kv.rows.slice(0, b), advancing, this.kv.positions, (c) => this.kv.firstRows(c, b), drawn);
      return this.decodeIsolating([...advancing.keys()], advancing, run, drawn);
    }
    for (const group of groups) {
      const past = Math.max(...group.map((s) => s.length));
      await this.decodeIsolating(group, advancing, () => this.decodeRows(group, advancing, past, (c) => this.kv.gather(group, past, c), drawn), drawn);
    }
  }

  /** A decode run over `seqs`, a sequence at a time where the model fails it (`isolating`). */
  private decodeIsolating(seqs: Sequence[], advancing: Map<Sequence, string>, run: () => Promise<void>, drawn: Drawn): Promise<void> {
    const alone = (seq: Sequence) => this.decodeRows([seq], advancing, seq.length, (c) => this.kv.gather([seq], seq.length, c), drawn);
    return this.isolating(seqs, (seq) => advancing.get(seq) as string, run, alone, drawn);
  }

  /**
   * Runs one decode step over `rows` (those not in `advancing` are computed and dropped) on a past of
   * `past` positions per row (`pastOf(cache)`: [rows, heads, past, headDim], padding masked), then appends each
   * advancing sequence's new keys and values to its cache row and draws its token.
   */
  private async decodeRows(rows: Sequence[], advancing: Map<Sequence, string>, past: number, pastOf: (cache: number) => KvArray, drawn: Drawn): Promise<void> {
    const { heads, headDim, layers, vocab } = this.spec;
    const b = rows.length;
    const mask = new BigInt64Array(b * (past + 1));
    rows.forEach((s, i) => {
      mask.fill(1n, i * (past + 1), i * (past + 1) + s.length);
      mask[i * (past + 1) + past] = 1n; // the new token sits after the padding
    });
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor(
        'int64',
        BigInt64Array.from(rows, (s) => BigInt(s.last)),
        [b, 1],
      ),
      position_ids: new ort.Tensor(
        'int64',
        BigInt64Array.from(rows, (s) => BigInt(s.length)),
        [b, 1],
      ),
      attention_mask: new ort.Tensor('int64', mask, [b, past + 1]),
      ...this.keep(1),
      ...this.adapters?.stack.feeds(rows.map((s) => s.adapter)),
    };
    // ONNX Runtime writes the outputs straight into reused buffers too (pre-allocated fetches). Only this
    // step's keys/values are needed; where the model outputs them alone, the whole present is not fetched.
    const kvOutput = this.spec.newKeyValues ? 'new_key_values' : 'present';
    const fetched = this.spec.newKeyValues ? 1 : past + 1;
    const fetches: Record<string, ort.Tensor> = { logits: new ort.Tensor('float32', this.buffer('logits', b * vocab, 'float32'), [b, 1, vocab]) };
    const kvType = this.spec.kvType;
    for (let l = 0; l < layers; l++) {
      for (const [k, kind] of ['key', 'value'].entries()) {
        feeds[`past_key_values.${l}.${kind}`] = new ort.Tensor(kvType, pastOf(2 * l + k), [b, heads, past, headDim]);
        const out = `${kvOutput}.${l}.${kind}`;
        fetches[out] = new ort.Tensor(kvType, this.buffer(out, b * heads * fetched * headDim, kvType), [b, heads, fetched, headDim]);
      }
    }
    await this.session.run(feeds, fetches);
    const logits = fetches.logits.data as Float32Array; // [b, 1, vocab]
    // A row that is not advancing must not draw from its sequence's random stream (seeded output).
    const next = await this.sample(
      logits,
      rows.map((s) => (advancing.has(s) ? s : DISCARDED)),
      drawn,
    );
    rows.forEach((s, i) => {
      const id = advancing.get(s);
      if (id === undefined) return;
      for (let l = 0; l < layers; l++) {
        for (const [k, kind] of ['key', 'value'].entries()) {
          const present = fetches[`${kvOutput}.${l}.${kind}`].data as KvArray; // [b, heads, fetched, headDim]
          this.kv.put(2 * l + k, s, s.length, present, { row: i, positions: fetched, start: fetched - 1 }, 1);
        }
      }
      s.length++;
      drew(drawn, id, s, next, i);
    });
  }

  /**
   * A sequence's draft (`lookupDraft` in its prompt and output), at most `tokens`, no more than it may still
   * generate (less one: the token drawn after the draft) and within the model's context.
   */
  private draft(seq: Sequence): number[] {
    const { tokens, ngramMax, ngramMin } = this.speculation ?? PREDICTION_ONLY;
    if ((!this.speculation && !seq.prediction) || seq.beam) return [];
    // Text that does not repeat its context (sampled at a high temperature, say) fails every draft, and each costs
    // the run its positions: after a draft missed whole, none for 1, 3, 7, … up to 31 steps.
    if (seq.missed && seq.missed.skip > 0) {
      seq.missed.skip--;
      return [];
    }
    const room = Math.min(
      tokens,
      seq.maxTokens === undefined ? tokens : seq.maxTokens - seq.produced - 1,
      this.spec.context === undefined ? tokens : this.spec.context - 1 - seq.length,
    );
    if (room <= 0) return [];
    const history = seq.history as number[];
    if (seq.prediction) {
      // The prediction first; where the output has left it, the sequence's own text as usual.
      // (only the output's last ngramMax tokens are looked for: a copy of its whole output each step would be waste)
      const predicted = predictedDraft(seq.prediction, history.slice(history.length - Math.min(seq.produced, ngramMax)), room, ngramMax);
      if (predicted.length > 0 || !this.speculation) return predicted;
    }
    // Its own text, or an earlier request's where that matches more of its last tokens (suffix decoding).
    const own = lookupMatch(history, room, ngramMax, ngramMin);
    const shared = this.shared?.lookup(history, room, seq.cacheSpace);
    return shared && shared.matched > own.matched ? shared.tokens : own.tokens;
  }

  /**
   * Checks each sequence's draft in one run: its last token and the draft go in as new positions (right-padded
   * to the longest, after its past gathered), every position's logits come out, and tokens are drawn position by
   * position exactly as decoding one at a time would draw them — the same adjustments, masks and random draws —
   * while each drawn token equals the draft's there. The first that differs (or the one after a whole draft) is
   * the sequence's last token of the step; the keys and values of the positions it took are kept, the rest
   * dropped. So the text is the text decoding would give (for a seed, token for token), in fewer runs when the
   * drafts are right.
   */
  private async speculate(items: { id: string; seq: Sequence; draft: number[] }[], drawn: Drawn): Promise<boolean> {
    const { vocab } = this.spec;
    const chunks = items.map(({ seq, draft }) => [seq.last, ...draft]);
    // A checking run the model fails changes nothing: those sequences decode a token instead (failing alone if they must).
    const checked = await this.runPositions(
      items.map((x) => x.seq),
      chunks,
      false,
      'spec',
    ).catch(() => undefined);
    if (!checked) return false;
    const { logits, kept: n, keep } = checked;
    // Position by position, the sequences whose draft held so far draw their next token.
    const taken = items.map(() => 0);
    let alive = items.map((_, r) => r);
    for (let p = 0; alive.length > 0; p++) {
      const rows = this.buffer('spec-rows', alive.length * vocab, 'float32') as Float32Array;
      alive.forEach((r, a) => {
        rows.set(logits.subarray((r * n + p) * vocab, (r * n + p + 1) * vocab), a * vocab);
      });
      // Drawing that fails changes nothing: before the first position, these sequences decode a token instead;
      // after, those whose drafts held so far end their step with the tokens they drew (the draft's).
      const next = await this.sample(
        rows,
        alive.map((r) => items[r].seq),
        drawn,
      ).catch(() => undefined);
      if (!next && p === 0) return false;
      if (!next) break;
      alive = alive.filter((r, a) => {
        drew(drawn, items[r].id, items[r].seq, next, a);
        taken[r] = p + 1;
        return p < items[r].draft.length && next.tokens[a] === items[r].draft[p];
      });
    }
    // The positions taken keep their keys and values; the rest are dropped.
    items.forEach(({ id, seq }, r) => {
      keep(r, seq, taken[r]);
      seq.length += taken[r];
      const times = taken[r] > 1 ? 0 : (seq.missed?.times ?? 0) + 1;
      seq.missed = { times, skip: times === 0 ? 0 : Math.min(31, 2 ** times - 1) };
      if (seq.prediction && taken[r] > 1) {
        drawn.predicted ??= {}; // (copying the record per sequence would be quadratic in the rows)
        drawn.predicted[id] = (drawn.predicted[id] ?? 0) + taken[r] - 1;
      }
    });
    const proposed = items.reduce((sum, x) => sum + x.draft.length, 0);
    const accepted = taken.reduce((sum, t) => sum + t - 1, 0);
    drawn.speculated = { proposed: (drawn.speculated?.proposed ?? 0) + proposed, accepted: (drawn.speculated?.accepted ?? 0) + accepted };
    return true;
  }

  /** Forgets every sequence (their gateway went away: a remote replica's connection closed). */
  releaseAll(): void {
    for (const id of [...this.seqs.keys()]) this.releaseRow(id);
    this.beams.clear();
  }

  /** Frees a sequence's row, or a beam search's rows. */
  private release(id: string): void {
    this.beams.release(id);
    this.releaseRow(id);
  }

  /** Frees a sequence's row (the last row's sequence moves into it, so rows stay packed). */
  private releaseRow(id: string): void {
    const seq = this.seqs.get(id);
    if (!seq) return;
    // (its text is there for later requests to draft from: its prompt and what it generated — a beam's history holds
    // only its prompt, its tokens being its search's)
    if (this.shared && seq.history && seq.produced > 0 && !seq.beam) this.shared.add(seq.history, seq.cacheSpace);
    this.seqs.delete(id);
    this.kv.remove(seq);
  }

  /** A token for each row of `logits`, the time it took counted in the step's. */
  private async sample(logits: Float32Array, rows: SamplingRow[], drawn: Drawn): ReturnType<Sampler['sample']> {
    const t = performance.now();
    const next = await this.sampler.sample(logits, this.spec.vocab, rows);
    drawn.sampleMs += performance.now() - t;
    drawn.maskMs += next.maskMs;
    return next;
  }

  private buffer(name: string, length: number, type: KvType): KvArray {
    let buffer = this.scratch.get(name);
    if (!buffer || buffer.length < length) {
      buffer = kvArray(type, Math.max(length, 2 * (buffer?.length ?? 0)));
      this.scratch.set(name, buffer);
    }
    return buffer.subarray(0, length);
  }

  /** `logits_to_keep`, for a model that takes it. */
  private keep(positions: number): Record<string, ort.Tensor> {
    return this.takesKeep ? { logits_to_keep: new ort.Tensor('int64', BigInt64Array.of(BigInt(positions)), [1]) } : {};
  }
}

/**
 * Sequence `id` drew row `i` of `sampled`: the token is its next step's input, counts for its penalties,
 * and goes into the step's answer, with its log-probabilities if asked for.
 */
function drew(drawn: Drawn, id: string, seq: Sequence, sampled: Awaited<ReturnType<Sampler['sample']>>, i: number): void {
  if (seq.beam) {
    seq.beam.candidates = sampled.logprobs[i]?.top; // its search picks the next tokens once every beam has them
    return;
  }
  const token = sampled.tokens[i];
  seq.last = token;
  seq.produced++;
  seq.generated?.set(token, (seq.generated.get(token) ?? 0) + 1);
  seq.seen?.add(token);
  remember(seq, token);
  seq.constraint?.advance(token);
  seq.thinking?.advance(token);
  seq.history?.push(token);
  if (seq.prediction) followPrediction(seq.prediction, token);
  const logprobs = sampled.logprobs[i];
  if (id in drawn.tokens) {
    // a checked draft's next token: after the step's first
    drawn.more ??= {};
    drawn.more[id] = [...(drawn.more[id] ?? []), token];
    if (logprobs) {
      drawn.moreLogprobs ??= {};
      drawn.moreLogprobs[id] = [...(drawn.moreLogprobs[id] ?? []), logprobs];
    }
    return;
  }
  drawn.tokens[id] = token;
  if (logprobs) {
    drawn.logprobs ??= {}; // copying the record per sequence would be quadratic in the rows of a step
    drawn.logprobs[id] = logprobs;
  }
}

/**
 * A joining sequence's prefix-cache namespace: its adapter's key (its keys and values are its own) and its cache salt
 * (a tenant's prompts found by no other). The model's own, unsalted: ''.
 */
const cacheSpaceOf = (j: StepRequest['join'][number]) => `${j.adapter ? adapterKey(j.adapter) : ''}${j.cacheSalt ? `\u0000${j.cacheSalt}` : ''}`;

/** A generated token kept among the sequence's last ones, for its bad words. */
function remember(seq: Sequence, token: number): void {
  if (!seq.recent) return;
  seq.recent.push(token);
  if (seq.recent.length > recentNeeded(seq.sampling)) seq.recent.shift();
}

type KvType = GenerativeSpec['kvType'];
/** Drafting for a request's prediction where the model has no `speculative` of its own: longer drafts (a prediction is usually right). */
const PREDICTION_ONLY: Speculation = { tokens: 8, ngramMax: 4, ngramMin: 1 };

/** Sampling for a row whose result is dropped: greedy, no random draws. */
const DISCARDED = { sampling: { temperature: 0, topP: 1, topK: 0, seed: 0 }, random: () => 0 };
