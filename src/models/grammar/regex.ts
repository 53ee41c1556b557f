import { FormatError } from './errors.js';

// Regular expressions for generation (JSON Schema `pattern` and `format`, vLLM's guided_regex), compiled to
// an NFA over Unicode code points (Thompson's construction). A text must match the whole expression: a
// string that matches whole also matches unanchored, so what is generated satisfies JSON Schema's
// (search) semantics as well. The ECMAScript subset: literals and escapes, `.`, classes (`[a-z]`, `[^…]`,
// `\d \w \s` and their negations), groups (`(…)`, `(?:…)`), `|`, `* + ? {n} {n,} {n,m}` (lazy forms
// match the same texts), `^` first and `$` last. Backreferences, lookaround and `\b` are refused.

/** Inclusive code point ranges, sorted, disjoint. */
export type Ranges = [number, number][];
export type Nfa = {
  /** Per state: its transitions on a code point. */
  edges: { ranges: Ranges; to: number }[][];
  /** Per state: where it goes without reading. */
  empty: number[][];
  start: number;
  accept: number;
};

/** States an NFA may hold at most (bounded repetitions are copies: `{1000}` of a class is 2000 states). */
export const MAX_NFA_STATES = 4000;
const MAX_CODE_POINT = 0x10ffff;

/** An expression's tree (a grammar's may call rules by name). */
export type Tree =
  | { t: 'class'; ranges: Ranges }
  | { t: 'seq'; items: Tree[] }
  | { t: 'alt'; options: Tree[] }
  | { t: 'repeat'; item: Tree; min: number; max: number }
  | { t: 'call'; rule: string };

const DIGIT: Ranges = [[0x30, 0x39]];
const WORD: Ranges = [
  [0x30, 0x39],
  [0x41, 0x5a],
  [0x5f, 0x5f],
  [0x61, 0x7a],
];
const SPACE: Ranges = [
  [0x09, 0x0d],
  [0x20, 0x20],
  [0xa0, 0xa0],
  [0x1680, 0x1680],
  [0x2000, 0x200a],
  [0x2028, 0x2029],
  [0x202f, 0x202f],
  [0x205f, 0x205f],
  [0x3000, 0x3000],
  [0xfeff, 0xfeff],
];
const LINE_ENDS: Ranges = [
  [0x0a, 0x0a],
  [0x0d, 0x0d],
  [0x2028, 0x2029],
];

function normalise(ranges: Ranges): Ranges {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  const out: Ranges = [];
  for (const [lo, hi] of sorted) {
    const last = out[out.length - 1];
    if (last && lo <= last[1] + 1) last[1] = Math.max(last[1], hi);
    else out.push([lo, hi]);
  }
  return out;
}

/** Every code point but these (and the surrogates, which UTF-8 cannot hold). */
function complement(ranges: Ranges): Ranges {
  const out: Ranges = [];
  let next = 0;
  for (const [lo, hi] of normalise([...ranges, [0xd800, 0xdfff]])) {
    if (lo > next) out.push([next, lo - 1]);
    next = hi + 1;
  }
  if (next <= MAX_CODE_POINT) out.push([next, MAX_CODE_POINT]);
  return out;
}

/** The value of `n` hex digits at `at` (\\xHH, \\uHHHH), or undefined if they are not. */
export function hexAt(chars: string[], at: number, n: number): number | undefined {
  const digits = chars.slice(at, at + n).join('');
  return digits.length === n && /^[0-9a-fA-F]+$/.test(digits) ? Number.parseInt(digits, 16) : undefined;
}

/** Parses `pattern` (what errors call `path`) into an NFA. */
export function compileRegex(pattern: string, path: string): Nfa {
  const fail = (why: string): never => {
    throw new FormatError(`${path}: ${why} in the pattern ${JSON.stringify(pattern)}`);
  };
  const chars = Array.from(pattern);
  let at = 0;
  if (chars[0] === '^') at++;
  const end = chars[chars.length - 1] === '$' && chars[chars.length - 2] !== '\\' ? chars.length - 1 : chars.length;
  const peek = () => (at < end ? chars[at] : undefined);
  const cp = (c: string) => c.codePointAt(0) as number;

  const hex = (n: number) => {
    const value = hexAt(chars, at, n) ?? fail('a bad \\x or \\u escape');
    at += n;
    return value;
  };
  /** After a backslash: a class (\d…) or one code point. */
  const escaped = (): Ranges => {
    const c = chars[at++];
    if (c === undefined) return fail('a trailing backslash');
    const classes: Record<string, Ranges> = { d: DIGIT, w: WORD, s: SPACE, D: complement(DIGIT), W: complement(WORD), S: complement(SPACE) };
    if (classes[c]) return classes[c];
    const controls: Record<string, number> = { t: 9, n: 10, v: 11, f: 12, r: 13, '0': 0 };
    if (c in controls) return [[controls[c], controls[c]]];
    if (c === 'x') return ((v) => [[v, v]])(hex(2));
    if (c === 'u') return ((v) => [[v, v]])(hex(4));
    if (/[0-9bBkpPc]/.test(c)) return fail(`\\${c} (backreferences, word boundaries, Unicode properties) is not supported`);
    return [[cp(c), cp(c)]];
  };
  const charClass = (): Tree => {
    const negated = peek() === '^';
    if (negated) at++;
    const ranges: Ranges = [];
    let first = true;
    while (peek() !== ']' || first) {
      first = false;
      const c = chars[at++];
      if (c === undefined || at > end) return fail('an unclosed [');
      const one = c === '\\' ? escaped() : [[cp(c), cp(c)] as [number, number]];
      if (peek() === '-' && chars[at + 1] !== ']' && at + 1 < end && one.length === 1 && one[0][0] === one[0][1]) {
        at++;
        const d = chars[at++];
        const hi = d === '\\' ? escaped() : [[cp(d), cp(d)] as [number, number]];
        if (hi.length !== 1 || hi[0][0] !== hi[0][1] || hi[0][0] < one[0][0]) fail('a bad range in a class');
        ranges.push([one[0][0], hi[0][0]]);
      } else ranges.push(...one);
    }
    at++; // ]
    return { t: 'class', ranges: negated ? complement(ranges) : normalise(ranges) };
  };
  const atom = (): Tree => {
    const c = chars[at++];
    if (c === '(') {
      if (peek() === '?') {
        if (chars[at + 1] !== ':') fail('lookaround and named groups are not supported');
        at += 2;
      }
      const inner = alternation();
      if (chars[at++] !== ')') fail('an unclosed (');
      return inner;
    }
    if (c === '[') return charClass();
    if (c === '.') return { t: 'class', ranges: complement(LINE_ENDS) };
    if (c === '\\') return { t: 'class', ranges: normalise(escaped()) };
    if (c === '^' || c === '$') return fail(`${c} is only supported at the start / end`);
    if ('*+?{'.includes(c)) return fail(`nothing to repeat before ${c}`);
    return { t: 'class', ranges: [[cp(c), cp(c)]] };
  };
  const quantified = (): Tree => {
    const item = atom();
    for (;;) {
      const q = peek();
      let min: number;
      let max: number;
      if (q === '*') [min, max] = [0, Infinity];
      else if (q === '+') [min, max] = [1, Infinity];
      else if (q === '?') [min, max] = [0, 1];
      else if (q === '{' && /^\{\d+(,\d*)?\}/.test(chars.slice(at, end).join(''))) {
        const [, lo, comma, hi] = /^\{(\d+)(,(\d*))?\}/.exec(chars.slice(at, end).join('')) as RegExpExecArray;
        [min, max] = [Number(lo), comma === undefined ? Number(lo) : hi === '' || hi === undefined ? Infinity : Number(hi)];
        if (max < min) fail('a {n,m} with m < n');
        at += `{${lo}${comma ?? ''}}`.length - 1;
      } else return item;
      at++;
      if (peek() === '?') at++; // lazy: the same texts
      return { t: 'repeat', item, min, max };
    }
  };
  const sequence = (): Tree => {
    const items: Tree[] = [];
    while (at < end && peek() !== '|' && peek() !== ')') items.push(quantified());
    return { t: 'seq', items };
  };
  const alternation = (): Tree => {
    const options = [sequence()];
    while (peek() === '|') {
      at++;
      options.push(sequence());
    }
    return options.length === 1 ? options[0] : { t: 'alt', options };
  };

  const tree = alternation();
  if (at < end) fail(`an unmatched ${chars[at]}`);
  return build(tree, () => fail(`more than ${MAX_NFA_STATES} states (a large repetition)`));
}

/**
 * Thompson's construction, shared with grammars (ebnf.ts): fragments of an expression tree added to one
 * NFA. A `call` node (a grammar's rule name) becomes an edge that `onCall` places.
 */
export class NfaBuilder {
  readonly nfa: Nfa = { edges: [], empty: [], start: 0, accept: 0 };

  constructor(
    private maxStates: number,
    private tooBig: () => never,
    private onCall?: (rule: string, from: number, to: number) => void,
  ) {}

  state(): number {
    if (this.nfa.edges.length >= this.maxStates) this.tooBig();
    this.nfa.edges.push([]);
    this.nfa.empty.push([]);
    return this.nfa.edges.length - 1;
  }

  /** The tree's fragment from state `from` to a new end state. */
  fragment(node: Tree, from: number): number {
    const { edges, empty } = this.nfa;
    switch (node.t) {
      case 'class': {
        const to = this.state();
        edges[from].push({ ranges: node.ranges, to });
        return to;
      }
      case 'call': {
        const to = this.state();
        this.onCall?.(node.rule, from, to);
        return to;
      }
      case 'seq':
        return node.items.reduce((at, item) => this.fragment(item, at), from);
      case 'alt': {
        const to = this.state();
        for (const option of node.options) empty[this.fragment(option, from)].push(to);
        return to;
      }
      case 'repeat': {
        let at = from;
        for (let i = 0; i < node.min; i++) at = this.fragment(node.item, at);
        if (node.max === Infinity) {
          const loop = this.state();
          empty[at].push(loop);
          empty[this.fragment(node.item, loop)].push(loop);
          return loop;
        }
        const to = this.state();
        for (let i = node.min; i < node.max; i++) {
          empty[at].push(to);
          at = this.fragment(node.item, at);
        }
        empty[at].push(to);
        return to;
      }
    }
  }
}

function build(tree: Tree, tooBig: () => never): Nfa {
  const builder = new NfaBuilder(MAX_NFA_STATES, tooBig);
  builder.nfa.start = builder.state();
  builder.nfa.accept = builder.fragment(tree, builder.nfa.start);
  return builder.nfa;
}

/** The states reachable from these without reading, sorted. */
export function closure(nfa: Nfa, states: number[]): number[] {
  const seen = new Set(states);
  const todo = [...states];
  while (todo.length > 0) {
    for (const next of nfa.empty[todo.pop() as number])
      if (!seen.has(next)) {
        seen.add(next);
        todo.push(next);
      }
  }
  return [...seen].sort((a, b) => a - b);
}

/** The states after reading code point `c` (empty: no match can go on). */
export function advance(nfa: Nfa, states: number[], c: number): number[] {
  const next: number[] = [];
  for (const s of states) for (const { ranges, to } of nfa.edges[s]) if (ranges.some(([lo, hi]) => c >= lo && c <= hi)) next.push(to);
  return next.length === 0 ? next : closure(nfa, next);
}

/**
 * Whether some code point in [lo, hi] can be read from these states (a UTF-8 character half read), into a
 * state `to` that `keep` accepts.
 */
export function anyIn(nfa: Nfa, states: number[], lo: number, hi: number, keep: (to: number) => boolean): boolean {
  return states.some((s) => nfa.edges[s].some(({ ranges, to }) => keep(to) && ranges.some(([a, b]) => a <= hi && b >= lo)));
}

/** JSON Schema `format`s, as patterns of the texts they name. */
const DATE = '[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])';
const TIME = '([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])';
const OCTET = '(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])';
const LABEL = '[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?';
const HEXTET = '[0-9a-fA-F]{1,4}';
/** Eight groups, or fewer around one `::` (RFC 4291's text forms, without an embedded IPv4 address). */
const IPV6 = [
  `(${HEXTET}:){7}${HEXTET}`,
  `(${HEXTET}:){1,7}:`,
  ...[1, 2, 3, 4, 5, 6].map((n) => `(${HEXTET}:){1,${7 - n}}(:${HEXTET}){1,${n}}`),
  `:((:${HEXTET}){1,7}|:)`,
].join('|');
/** RFC 3986: a scheme, then unreserved, reserved and percent-encoded characters (none that JSON must escape). */
const URI = "[a-zA-Z][a-zA-Z0-9+.-]*:([a-zA-Z0-9._~:/?#@!$&'()*+,;=\\[\\]-]|%[0-9a-fA-F]{2})+";
export const FORMATS: Record<string, string> = {
  date: DATE,
  time: TIME,
  'date-time': `${DATE}T${TIME}`,
  uuid: '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}',
  email: `[a-zA-Z0-9.!#$%&'*+/=?^_\`{|}~-]+@${LABEL}(\\.${LABEL})+`,
  ipv4: `(${OCTET}\\.){3}${OCTET}`,
  ipv6: IPV6,
  hostname: `${LABEL}(\\.${LABEL})*`,
  uri: URI,
};
