import { advance, anyIn, closure, type Nfa } from './regex.js';

// Running a pattern: a DFA built from its NFA as the text is read, within a string's length limits.

/**
 * Per state, the fewest and the most characters still to read to a match (Infinity: no match, or no
 * bound): with a string's minLength / maxLength, a state is kept only if the match can still end within
 * them — otherwise the text could reach a point where no character and no end are allowed.
 */
export function distances(nfa: Nfa): { shortest: number[]; longest: number[] } {
  const cached = lengths.get(nfa);
  if (cached) return cached;
  const n = nfa.edges.length;
  const into: { from: number; cost: number }[][] = Array.from({ length: n }, () => []);
  nfa.edges.forEach((edges, from) => {
    for (const { to } of edges) into[to].push({ from, cost: 1 });
  });
  nfa.empty.forEach((tos, from) => {
    for (const to of tos) into[to].push({ from, cost: 0 });
  });
  // Fewest: a 0-1 breadth-first search backwards from the accepting state.
  const shortest = new Array<number>(n).fill(Infinity);
  shortest[nfa.accept] = 0;
  const queue = [nfa.accept];
  while (queue.length > 0) {
    const at = queue.shift() as number;
    for (const { from, cost } of into[at])
      if (shortest[at] + cost < shortest[from]) {
        shortest[from] = shortest[at] + cost;
        if (cost === 0) queue.unshift(from);
        else queue.push(from);
      }
  }
  // Most: a depth-first search; a loop on the way to the match makes it unbounded.
  const longest = new Array<number>(n).fill(-1);
  const onPath = new Set<number>();
  const most = (s: number): number => {
    if (longest[s] >= 0) return longest[s];
    if (onPath.has(s)) return Infinity;
    onPath.add(s);
    let best = s === nfa.accept ? 0 : Number.NEGATIVE_INFINITY;
    for (const { to } of nfa.edges[s]) if (shortest[to] < Infinity) best = Math.max(best, 1 + most(to));
    for (const to of nfa.empty[s]) if (shortest[to] < Infinity) best = Math.max(best, most(to));
    onPath.delete(s);
    longest[s] = best;
    return best;
  };
  for (let s = 0; s < n; s++) if (shortest[s] < Infinity) most(s);
  const result = { shortest, longest };
  lengths.set(nfa, result);
  return result;
}
const lengths = new WeakMap<Nfa, { shortest: number[]; longest: number[] }>();

/** Whether from a state, after `chars` characters, a match can end within [min, max] characters. */
export function canMatch(nfa: Nfa, chars: number, min: number, max: number): (state: number) => boolean {
  if (min === 0 && max === Infinity) return () => true;
  const { shortest, longest } = distances(nfa);
  return (s) => chars + shortest[s] <= max && chars + longest[s] >= min;
}

/**
 * How much of a lazily built DFA a machine keeps: moves (each ~50 bytes) and nodes, weighed by their keys'
 * length (the states they stand for: a grammar's readings with their return stacks). Past either, it forgets
 * them all and computes them again as read (as RE2 does): a pathological pattern or grammar costs time,
 * never the replica's memory.
 */
export const DFA_BUDGET = { moves: 1_000_000, keyChars: 4_000_000 };

/** A set of NFA states, interned per machine, with the moves out of it already computed. */
export type DfaNode = { id: number; states: number[]; accepting: boolean; moves: Map<number, DfaNode | null> };

/**
 * A machine's nodes (interned by a key naming their states) and moves, within DFA_BUDGET. Ids are never
 * reused: a mask is cached under its node's id, and a node from before a reset may still be read.
 */
export class DfaCache<N extends DfaNode> {
  private nodes = new Map<string, N>();
  private moves = 0;
  private keyChars = 0;
  private ids = 0;

  /** The node keyed `key`, made (with a fresh id) if there is none. */
  node(key: string, make: (id: number) => N): N {
    let node = this.nodes.get(key);
    if (!node) {
      this.keyChars += key.length;
      if (this.keyChars > DFA_BUDGET.keyChars) this.forget(key.length);
      node = make(this.ids++);
      this.nodes.set(key, node);
    }
    return node;
  }

  /** Keeps a move out of `node`. */
  move(node: N, key: number, next: DfaNode | null): void {
    if (++this.moves > DFA_BUDGET.moves) this.forget(0);
    node.moves.set(key, next);
  }

  private forget(keyChars: number): void {
    for (const n of this.nodes.values()) n.moves.clear();
    this.nodes.clear();
    [this.moves, this.keyChars] = [1, keyChars];
  }
}

/** What reads a text a code point at a time (a pattern, a grammar), for the automaton's `text` and patterned strings. */
export interface CharMachine {
  /** Before the first character (null: nothing can match). */
  readonly start: DfaNode | null;
  readonly min: number;
  readonly max: number;
  /** The node after reading code point `c` as character `chars + 1` (null: no match can go on). */
  read(node: DfaNode, c: number, chars: number): DfaNode | null;
  /** Whether some code point in [lo, hi] can be read as character `chars + 1` (a UTF-8 character half read). */
  accepts(node: DfaNode, lo: number, hi: number, chars: number): boolean;
}

/**
 * A pattern within [min, max] characters, run as a DFA built lazily from its NFA: every (set of states,
 * character, length so far) is computed once. A mask walk reads ~100k token bytes from one state; computing
 * each from the NFA (closures, sets, length checks) cost 100-400 ms a mask for a free-text pattern.
 */
export class Matcher implements CharMachine {
  readonly start: DfaNode | null;
  private cache = new DfaCache<DfaNode>();

  constructor(
    readonly nfa: Nfa,
    readonly min: number,
    readonly max: number,
  ) {
    this.start = this.node(closure(nfa, [nfa.start]).filter(canMatch(nfa, 0, min, max)));
  }

  /** The node after reading code point `c` as character `chars + 1` (null: no match can go on). */
  read(node: DfaNode, c: number, chars: number): DfaNode | null {
    const key = c * 2 ** 21 + Math.min(chars, 2 ** 21 - 1);
    let next = node.moves.get(key);
    if (next === undefined) {
      next = this.node(advance(this.nfa, node.states, c).filter(canMatch(this.nfa, chars + 1, this.min, this.max)));
      this.cache.move(node, key, next);
    }
    return next;
  }

  /** Whether some code point in [lo, hi] can be read as character `chars + 1` (a UTF-8 character half read). */
  accepts(node: DfaNode, lo: number, hi: number, chars: number): boolean {
    const key = -(lo * 2 ** 21 + Math.min(chars, 2 ** 21 - 1)) - 1; // lo fixes hi for a given byte count
    let ok = node.moves.get(key);
    if (ok === undefined) {
      ok = anyIn(this.nfa, node.states, lo, hi, canMatch(this.nfa, chars + 1, this.min, this.max)) ? node : null;
      this.cache.move(node, key, ok);
    }
    return ok !== null;
  }

  private node(states: number[]): DfaNode | null {
    if (states.length === 0) return null;
    return this.cache.node(states.join('.'), (id) => ({ id, states, accepting: states.includes(this.nfa.accept), moves: new Map() }));
  }
}
