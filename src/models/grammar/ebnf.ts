import { FormatError } from './errors.js';
import { type CharMachine, DfaCache, type DfaNode } from './matcher.js';
import { compileRegex, hexAt, NfaBuilder, type Ranges, type Tree } from './regex.js';

// Context-free grammars in GBNF (llama.cpp's EBNF, which vLLM's guided_grammar and TensorRT-LLM's
// ebnf_grammar take): `name ::= ...` rules of "strings", [classes], `.`, rule names, ( ), |, * + ? {m,n},
// `#` comments; the first rule (or `root`) is the text. Each rule is an NFA over code points whose edges may
// call another rule; the text's state is every reading of it — a thread is a position and the positions it
// returns to — run as a DFA built as it is read, like a pattern's (regex.ts). Left recursion is refused: a
// thread would call without reading, forever; repetition says the same thing.

/** Bounds: rules, NFA states (repetitions are copies), calls in flight, readings of one text. */
export const MAX_RULES = 500;
export const MAX_STATES = 20_000;
const MAX_CALL_DEPTH = 64;
const MAX_THREADS = 1024;

/** Parses GBNF into rules by name (in order of definition). */
function parse(text: string, fail: (why: string) => never): Map<string, Tree> {
  const src = Array.from(text);
  let at = 0;
  const skip = () => {
    for (;;) {
      while (at < src.length && /\s/.test(src[at])) at++;
      if (src[at] !== '#') return;
      while (at < src.length && src[at] !== '\n') at++;
    }
  };
  const name = () => {
    const start = at;
    while (at < src.length && /[a-zA-Z0-9_-]/.test(src[at])) at++;
    return src.slice(start, at).join('');
  };
  /** Whether a rule's definition starts here (`name ::=`): the end of the rule before. */
  const atDefinition = () => {
    const save = at;
    const n = name();
    skip();
    const found = n !== '' && src.slice(at, at + 3).join('') === '::=';
    at = save;
    return found;
  };
  const hex = (n: number) => {
    const value = hexAt(src, at, n) ?? fail('a bad \\x or \\u escape');
    at += n;
    return value;
  };
  const literalChar = (): number => {
    const c = src[at++];
    if (c !== '\\') return c.codePointAt(0) as number;
    const e = src[at++];
    const simple: Record<string, number> = { n: 10, t: 9, r: 13, '\\': 92, '"': 34, "'": 39, '[': 91, ']': 93 };
    if (e in simple) return simple[e];
    if (e === 'x') return hex(2);
    if (e === 'u') return hex(4);
    return fail(`an unknown escape \\${e}`);
  };
  const atom = (): Tree => {
    const c = src[at];
    if (c === '"') {
      at++;
      const items: Tree[] = [];
      while (src[at] !== '"') {
        if (at >= src.length) fail('an unclosed string');
        const cp = literalChar();
        items.push({ t: 'class', ranges: [[cp, cp]] });
      }
      at++;
      return { t: 'seq', items };
    }
    if (c === '[') {
      const start = at;
      at++;
      while (at < src.length && src[at] !== ']') at += src[at] === '\\' ? 2 : 1;
      if (at >= src.length) fail('an unclosed [');
      at++;
      // The class is a regular expression's: its one edge has the ranges.
      const nfa = compileRegex(src.slice(start, at).join(''), 'class');
      return { t: 'class', ranges: nfa.edges[nfa.start][0].ranges };
    }
    if (c === '.') {
      at++;
      return {
        t: 'class',
        ranges: [
          [0, 0xd7ff],
          [0xe000, 0x10ffff],
        ],
      };
    }
    if (c === '(') {
      at++;
      const inner = alternation();
      skip();
      if (src[at++] !== ')') fail('an unclosed (');
      return inner;
    }
    const rule = name();
    if (!rule) fail(`an unexpected ${JSON.stringify(c ?? 'end')}`);
    return { t: 'call', rule };
  };
  const repeated = (): Tree => {
    let item = atom();
    for (;;) {
      const q = src[at];
      if (q === '*') item = { t: 'repeat', item, min: 0, max: Infinity };
      else if (q === '+') item = { t: 'repeat', item, min: 1, max: Infinity };
      else if (q === '?') item = { t: 'repeat', item, min: 0, max: 1 };
      else if (q === '{') {
        const m = /^\{\s*(\d+)\s*(,\s*(\d*)\s*)?\}/.exec(src.slice(at).join(''));
        if (!m) fail('a bad {m,n}');
        const [min, max] = [Number(m[1]), m[2] === undefined ? Number(m[1]) : m[3] ? Number(m[3]) : Infinity];
        if (max < min) fail('a {m,n} with n < m');
        item = { t: 'repeat', item, min, max };
        at += m[0].length - 1;
      } else return item;
      at++;
    }
  };
  const sequence = (): Tree => {
    const items: Tree[] = [];
    for (;;) {
      skip();
      if (at >= src.length || src[at] === '|' || src[at] === ')' || atDefinition()) return { t: 'seq', items };
      items.push(repeated());
    }
  };
  function alternation(): Tree {
    const options = [sequence()];
    while (src[at] === '|') {
      at++;
      options.push(sequence());
    }
    return options.length === 1 ? options[0] : { t: 'alt', options };
  }

  const rules = new Map<string, Tree>();
  skip();
  while (at < src.length) {
    const rule = name();
    skip();
    if (!rule || src.slice(at, at + 3).join('') !== '::=') fail(`a rule must start "name ::=" (at character ${at})`);
    at += 3;
    if (rules.has(rule)) fail(`rule ${rule} is defined twice`);
    rules.set(rule, alternation());
    if (rules.size > MAX_RULES) fail(`more than ${MAX_RULES} rules`);
    skip();
  }
  if (rules.size === 0) fail('no rules');
  return rules;
}

type Ret = { q: number; up: Ret | null; key: string; depth: number };
type Thread = { q: number; ret: Ret | null; key: string };
type CfgNode = DfaNode & { threads: Thread[] };

/** A grammar, run over code points: what a `text` shape (automaton.ts) reads a whole text with. */
export class CfgMachine implements CharMachine {
  readonly min = 0;
  readonly max = Infinity;
  readonly start: DfaNode | null;
  private edges: { ranges: Ranges; to: number }[][] = [];
  private empty: number[][] = [];
  private calls: { rule: number; to: number }[][] = [];
  private returns: boolean[] = [];
  private ruleStart: number[] = [];
  private cache = new DfaCache<CfgNode>();

  constructor(text: string, path: string) {
    const fail = (why: string): never => {
      throw new FormatError(`${path}: ${why}`);
    };
    const rules = parse(text, fail);
    const index = new Map([...rules.keys()].map((name, i) => [name, i]));
    const builder = new NfaBuilder(
      MAX_STATES,
      () => fail(`more than ${MAX_STATES} states (a large repetition)`),
      (name, from, to) => {
        const rule = index.get(name);
        if (rule === undefined) fail(`rule ${name} is not defined`);
        this.calls[from] ??= [];
        this.calls[from].push({ rule: rule as number, to });
      },
    );
    const ends = [...rules.values()].map((tree) => {
      const start = builder.state();
      this.ruleStart.push(start);
      return builder.fragment(tree, start);
    });
    ({ edges: this.edges, empty: this.empty } = builder.nfa);
    this.calls = Array.from(this.edges, (_, q) => this.calls[q] ?? []);
    this.returns = Array.from(this.edges, () => false);
    for (const end of ends) this.returns[end] = true;
    this.refuseLeftRecursion([...rules.keys()], fail);
    const root = index.get('root') ?? 0;
    this.start = this.node(this.closure([this.thread(this.ruleStart[root], null)]));
  }

  read(node: DfaNode, c: number): DfaNode | null {
    let next = node.moves.get(c);
    if (next === undefined) {
      const moved: Thread[] = [];
      for (const t of (node as CfgNode).threads)
        for (const { ranges, to } of this.edges[t.q]) if (ranges.some(([lo, hi]) => c >= lo && c <= hi)) moved.push(this.thread(to, t.ret));
      next = this.node(this.closure(moved));
      this.cache.move(node as CfgNode, c, next);
    }
    return next;
  }

  accepts(node: DfaNode, lo: number, hi: number): boolean {
    return (node as CfgNode).threads.some((t) => this.edges[t.q].some(({ ranges }) => ranges.some(([a, b]) => a <= hi && b >= lo)));
  }

  private thread(q: number, ret: Ret | null): Thread {
    return { q, ret, key: ret ? `${q}<${ret.key}` : `${q}` };
  }

  /** Every position reachable without reading: through empty edges, into called rules, back out of finished ones. */
  private closure(threads: Thread[]): Thread[] {
    const seen = new Map<string, Thread>();
    const todo = [...threads];
    while (todo.length > 0) {
      const t = todo.pop() as Thread;
      if (seen.has(t.key)) continue;
      seen.set(t.key, t);
      for (const q of this.empty[t.q]) todo.push(this.thread(q, t.ret));
      for (const { rule, to } of this.calls[t.q]) {
        const depth = (t.ret?.depth ?? 0) + 1;
        if (depth > MAX_CALL_DEPTH) continue;
        const ret: Ret = { q: to, up: t.ret, key: t.ret ? `${to}<${t.ret.key}` : `${to}`, depth };
        todo.push(this.thread(this.ruleStart[rule], ret));
      }
      if (this.returns[t.q] && t.ret) todo.push(this.thread(t.ret.q, t.ret.up));
    }
    return [...seen.values()];
  }

  private node(threads: Thread[]): DfaNode | null {
    // Only threads that can read on, or that end the text, matter.
    const live = threads.filter((t) => this.edges[t.q].length > 0 || (this.returns[t.q] && !t.ret));
    if (live.length === 0 || live.length > MAX_THREADS) return null;
    const key = live
      .map((t) => t.key)
      .sort()
      .join(';');
    return this.cache.node(key, (id) => ({ id, states: [], accepting: live.some((t) => this.returns[t.q] && !t.ret), moves: new Map(), threads: live }));
  }

  /** A rule that can call itself before reading anything would expand forever. */
  private refuseLeftRecursion(names: string[], fail: (why: string) => never): void {
    const n = this.ruleStart.length;
    // Rules that can match nothing at all (their calls then go straight on).
    const nullable = new Array<boolean>(n).fill(false);
    const reachesEnd = (start: number) => {
      const seen = new Set<number>();
      const todo = [start];
      while (todo.length > 0) {
        const q = todo.pop() as number;
        if (seen.has(q)) continue;
        seen.add(q);
        if (this.returns[q]) return true;
        todo.push(...this.empty[q]);
        for (const { rule, to } of this.calls[q]) if (nullable[rule]) todo.push(to);
      }
      return false;
    };
    for (let changed = true; changed; ) {
      changed = false;
      for (let r = 0; r < n; r++)
        if (!nullable[r] && reachesEnd(this.ruleStart[r])) {
          nullable[r] = changed = true;
        }
    }
    for (let r = 0; r < n; r++) {
      const seen = new Set<number>();
      const todo = [this.ruleStart[r]];
      while (todo.length > 0) {
        const q = todo.pop() as number;
        if (seen.has(q)) continue;
        seen.add(q);
        todo.push(...this.empty[q]);
        for (const { rule, to } of this.calls[q]) {
          if (rule === r) fail(`rule ${names[r]} is left-recursive (it can call itself before reading): write it with repetition`);
          todo.push(this.ruleStart[rule]);
          if (nullable[rule]) todo.push(to);
        }
      }
    }
  }
}
