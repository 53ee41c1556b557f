import type { Tokenizer } from '../text.js';
import { canEnd, feed, type State, start, stateKey, takesPlainText } from './automaton.js';
import { compileFormat, type ResponseFormat } from './shape.js';

/**
 * Bytes of masks kept (a mask is a list of token ids: a few hundred inside a string, up to half the
 * vocabulary elsewhere): a sequence inside a string asks for the same one step after step.
 */
const MASK_BYTES = 64 * 1024 * 1024;
/** Grammars kept per replica (requests with the same format share one; masks are kept by state, for all). */
const GRAMMARS_KEPT = 32;

/** A vocabulary's tokens in order of their bytes: what a mask walk reads (see Vocabulary). */
export type VocabularyIndex = { ids: Int32Array; bytes: Uint8Array[]; shared: Uint16Array; plain: Uint8Array };

/**
 * A tokenizer's tokens sorted by their bytes, each with how many bytes it shares with the one before: the
 * mask walk then reads a shared prefix once, and skips every token that starts with a rejected prefix.
 */
export class Vocabulary {
  readonly ids: Int32Array;
  readonly bytes: Uint8Array[];
  readonly shared: Uint16Array;
  /** 1 where a token is plain text: printable ASCII but `"` and `\\` (most of a string's tokens). */
  readonly plain: Uint8Array;

  /** `size`: the model's vocabulary (it may pad the tokenizer's); `index`: built elsewhere (another thread). */
  constructor(
    readonly tokenizer: Tokenizer,
    readonly size: number,
    index: VocabularyIndex = indexVocabulary(tokenizer, size),
  ) {
    ({ ids: this.ids, bytes: this.bytes, shared: this.shared, plain: this.plain } = index);
  }
}

/** Sorts a tokenizer's tokens (~0.3 s for GPT-2's 50257 here). */
export function indexVocabulary(tokenizer: Tokenizer, size: number): VocabularyIndex {
  const tokens: { id: number; bytes: Uint8Array }[] = [];
  for (let id = 0; id < size; id++) {
    if (id === tokenizer.eos) continue;
    try {
      const bytes = tokenizer.bytes(id);
      // A token with no text (a special token, one past the tokenizer's) cannot advance a document: never allowed.
      if (bytes.length > 0) tokens.push({ id, bytes });
    } catch {} // past the tokenizer's tokens: never allowed
  }
  tokens.sort((a, b) => Buffer.compare(a.bytes, b.bytes));
  return {
    ids: Int32Array.from(tokens, (t) => t.id),
    bytes: tokens.map((t) => t.bytes),
    shared: Uint16Array.from(tokens, (t, i) => (i === 0 ? 0 : commonPrefix(tokens[i - 1].bytes, t.bytes))),
    plain: Uint8Array.from(tokens, (t) => (t.bytes.every((b) => b >= 0x20 && b < 0x7f && b !== 0x22 && b !== 0x5c) ? 1 : 0)),
  };
}

function commonPrefix(a: Uint8Array, b: Uint8Array): number {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
}

/** A response format's automaton. */
export class Grammar {
  readonly initial: State;

  constructor(readonly format: ResponseFormat) {
    // A choice, a regex or a grammar is the whole text; a JSON document may have whitespace before it.
    this.initial = start(compileFormat(format), format.type !== 'choice' && format.type !== 'regex' && format.type !== 'grammar');
  }

  /** The tokens that keep the text a prefix of a document (end-of-text once it is a whole one). */
  allowed(state: State, vocabulary: Vocabulary): TokenMask {
    // A state's key names its shapes, which are this grammar's own: the key is unique across grammars.
    const key = `${vocabulary.tokenizer.name}:${vocabulary.size}|${stateKey(state)}`;
    const known = masks.get(key);
    if (known) {
      masks.delete(key); // most recently used last
      masks.set(key, known);
      return known;
    }
    const mask = new TokenMask(walk(state, vocabulary));
    masks.set(key, mask);
    maskBytes += mask.byteLength;
    for (const [old, m] of masks) {
      if (maskBytes <= MASK_BYTES) break;
      masks.delete(old);
      maskBytes -= m.byteLength;
    }
    return mask;
  }
}

/** Masks kept for every grammar of the process, by state; least recently used out past MASK_BYTES. */
const masks = new Map<string, TokenMask>();
let maskBytes = 0;

/** The tokens a state allows, kept the cheaper way round to apply: the ones to mask out, where they are few. */
export class TokenMask {
  /** The allowed tokens, or (`dense`) the ones not allowed. */
  private tokens: Int32Array;
  private dense: boolean;

  /** `bits`: 1 for each allowed token. */
  constructor(bits: Uint8Array) {
    const allowed = bits.reduce((n, b) => n + b, 0);
    this.dense = allowed > bits.length / 2; // inside a string: all but ~200 of 50257
    this.tokens = indicesOf(bits, this.dense ? 0 : 1);
  }

  get byteLength(): number {
    return this.tokens.byteLength + 64;
  }

  /** The allowed tokens, in order, where they are few (undefined: most are). */
  get sparse(): Int32Array | undefined {
    return this.dense ? undefined : this.tokens;
  }

  /** 1 for each allowed token, of a vocabulary of `size`. */
  bits(size: number): Uint8Array {
    const bits = new Uint8Array(size).fill(this.dense ? 1 : 0);
    for (const t of this.tokens) bits[t] = this.dense ? 0 : 1;
    return bits;
  }

  /** Sets the logits of the tokens not allowed to -Infinity; whether an allowed one is left that may be drawn. */
  apply(row: Float32Array): boolean {
    const { tokens } = this;
    if (this.dense) {
      for (let k = 0; k < tokens.length; k++) row[tokens[k]] = Number.NEGATIVE_INFINITY;
      for (let t = 0; t < row.length; t++) if (row[t] > Number.NEGATIVE_INFINITY) return true;
      return false;
    }
    // The allowed logits are set aside, the row filled, and they are put back (plain loops: this runs for
    // every constrained row of every step).
    if (kept.length < tokens.length) kept = new Float32Array(Math.max(tokens.length, 2 * kept.length));
    let open = false;
    for (let k = 0; k < tokens.length; k++) {
      kept[k] = row[tokens[k]];
      if (kept[k] > Number.NEGATIVE_INFINITY) open = true;
    }
    row.fill(Number.NEGATIVE_INFINITY);
    for (let k = 0; k < tokens.length; k++) row[tokens[k]] = kept[k];
    return open;
  }
}

/** TokenMask.apply's place for the allowed logits while it fills the row. */
let kept = new Float32Array(1024);

function indicesOf(bits: Uint8Array, value: number): Int32Array {
  const out: number[] = [];
  bits.forEach((b, t) => {
    if (b === value) out.push(t);
  });
  return Int32Array.from(out);
}

function walk(state: State, vocabulary: Vocabulary): Uint8Array {
  const { ids, bytes, shared, plain, size, tokenizer } = vocabulary;
  const mask = new Uint8Array(size);
  const inText = takesPlainText(state);
  const states: State[] = [state]; // states[d]: after the first d bytes of the token being read
  let reached = 0; // states[0..reached] hold for the last token read
  let rejectedAt = -1; // the byte of the last token read that no state took (-1: it was taken whole)
  for (let i = 0; i < ids.length; i++) {
    const token = bytes[i];
    if (inText && plain[i]) {
      mask[ids[i]] = 1;
      reached = Math.min(reached, shared[i]); // the states still hold for the bytes it shares with the last one read
      rejectedAt = -1;
      continue;
    }
    if (rejectedAt >= 0 && shared[i] > rejectedAt) continue; // starts with the rejected prefix
    let d = Math.min(shared[i], reached);
    rejectedAt = -1;
    for (; d < token.length; d++) {
      const next = feed(states[d], token[d]);
      if (next.length === 0) {
        rejectedAt = d;
        break;
      }
      states[d + 1] = next;
    }
    reached = d;
    if (rejectedAt < 0) mask[ids[i]] = 1;
  }
  if (canEnd(state)) mask[tokenizer.eos] = 1;
  return mask;
}

const vocabularies = new Map<string, Vocabulary | Promise<Vocabulary>>();

/** A tokenizer's vocabulary index, built once per process (here, unless `vocabularyOffThread` built it). */
export async function vocabularyFor(tokenizer: Tokenizer, size: number): Promise<Vocabulary> {
  const key = `${tokenizer.name}:${size}`;
  const known = vocabularies.get(key);
  if (known) return known;
  const vocabulary = new Vocabulary(tokenizer, size);
  vocabularies.set(key, vocabulary);
  return vocabulary;
}

/**
 * Builds a tokenizer's vocabulary index on a worker thread, for `vocabularyFor` to find: a replica starts it
 * once it is ready, so that its first constrained request does not stall every sequence's step while the
 * index is sorted. If the thread fails, the index is built here when first asked for.
 */
export function vocabularyOffThread(tokenizer: Tokenizer, size: number, build: () => Promise<VocabularyIndex>): void {
  const key = `${tokenizer.name}:${size}`;
  if (vocabularies.has(key)) return;
  const building = build().then(
    (index) => {
      const vocabulary = new Vocabulary(tokenizer, size, index);
      vocabularies.set(key, vocabulary);
      return vocabulary;
    },
    () => {
      vocabularies.delete(key);
      return vocabularyFor(tokenizer, size);
    },
  );
  vocabularies.set(key, building);
}

const grammars = new Map<string, Grammar>();

/** The grammar of a format, shared by the requests that ask for the same one. */
export function grammarFor(format: ResponseFormat): Grammar {
  const key = JSON.stringify(format);
  let grammar = grammars.get(key);
  if (grammar) grammars.delete(key);
  else {
    grammar = new Grammar(format);
    if (grammars.size >= GRAMMARS_KEPT) grammars.delete(grammars.keys().next().value as string);
  }
  grammars.set(key, grammar);
  return grammar;
}

/**
 * One sequence's constraint (vLLM's guided decoding, OpenAI's structured outputs): before each draw, the
 * tokens that would leave the text no longer a prefix of a document of the format are masked out; the
 * end-of-text token is allowed only once it is a whole one, and then it is the only one.
 */
export class TokenConstraint {
  private state: State;

  constructor(
    private grammar: Grammar,
    private vocabulary: Vocabulary,
  ) {
    this.state = grammar.initial;
  }

  /**
   * Sets the logits of the tokens the format does not allow next to -Infinity; answers the allowed tokens,
   * in order, where they are few (a sampler need only read those).
   */
  mask(row: Float32Array): Int32Array | undefined {
    const mask = this.grammar.allowed(this.state, this.vocabulary);
    if (mask.apply(row)) return mask.sparse;
    // Everything the format allows is held back (min_tokens holds back end-of-text at a whole document): end.
    const { eos } = this.vocabulary.tokenizer;
    row[eos] = 0;
    return Int32Array.of(eos);
  }

  /** The token drawn: the state after its bytes. */
  advance(token: number): void {
    if (token === this.vocabulary.tokenizer.eos) {
      this.state = [];
      return;
    }
    this.advanceBytes(this.vocabulary.tokenizer.bytes(token));
  }

  /** Text written past the token boundaries (an answer begun inside the token that ended a thinking). */
  advanceBytes(bytes: Uint8Array): void {
    for (const b of bytes) this.state = feed(this.state, b);
  }

  /** Whether the text so far is a whole document. */
  get complete(): boolean {
    return canEnd(this.state);
  }
}
