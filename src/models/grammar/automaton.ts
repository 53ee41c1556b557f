import type { CharMachine, DfaNode } from './matcher.js';
import type { Shape } from './shape.js';

// A pushdown automaton over the bytes of a JSON document of a shape. Tokens are bytes (a byte-level BPE
// token may end inside a UTF-8 character, or hold `"}` and the next key), so the automaton takes bytes too.
// Its states are immutable stacks of frames: the mask of a step walks every token from one state, and
// tokens that share a prefix share the states of that prefix (mask.ts).

/**
 * Whitespace between a document's tokens is, as llama.cpp's JSON grammars have it, nothing, one space, or a
 * newline and up to MAX_INDENT spaces or tabs: compact and pretty-printed documents both, and a model cannot
 * emit only whitespace.
 */
export const MAX_INDENT = 20;
/** A frame's `ws` after a lone space, or where no whitespace may come: nothing more (else 0: none yet; 1 + n: a newline and n of indentation). */
const NO_MORE = -1;
/** Deepest nesting of objects and arrays. */
export const MAX_DEPTH = 32;
/** Longest number, in bytes. */
export const MAX_NUMBER = 24;

type ObjectShape = Extract<Shape, { kind: 'object' }>;
type ArrayShape = Extract<Shape, { kind: 'array' }>;
type StringShape = Extract<Shape, { kind: 'string' }>;
type NumberPhase = 'sign' | 'zero' | 'int' | 'dot' | 'frac' | 'e' | 'esign' | 'exp';

type Frame =
  /** Before the document (leading whitespace), and after it. */
  | { t: 'root'; shape: Shape; ws: number }
  | { t: 'done' }
  /** `last`: the last listed property written; `prop`: the one whose key was just written; `key`: a key's bytes so far. */
  | { t: 'object'; shape: ObjectShape; phase: 'open' | 'key' | 'colon' | 'value' | 'next' | 'comma'; last: number; prop: number; key: string; ws: number }
  | { t: 'array'; shape: ArrayShape; phase: 'open' | 'next' | 'comma'; count: number; ws: number }
  /**
   * `escape`: 0 none, -1 after a backslash, 1-4 hex digits of \u still to come; `utf8`: continuation bytes
   * of a character still to come, `lead` its first byte while the second is (it narrows that byte's range).
   */
  | { t: 'string'; shape: StringShape; escape: number; chars: number; utf8: number; lead: number }
  | { t: 'number'; integer: boolean; phase: NumberPhase; length: number }
  /** The options still possible after `at` bytes. */
  | { t: 'literal'; options: string[]; at: number }
  /**
   * Text matching a regular expression: `node`, the set of its NFA's states; `need` bytes of a UTF-8 character still to
   * come, `cp` its bits so far, `lead` its first byte while the second is to come. `quoted`: a JSON string's
   * value (a `"` ends it), else the whole text (guided_regex).
   */
  | { t: 'pattern'; matcher: CharMachine; quoted: boolean; node: DfaNode; chars: number; need: number; cp: number; lead: number };

/** A frame over the frame it will return to (a finished value pops its frame). */
export type Stack = { frame: Frame; up: Stack; depth: number };
/** Every way the bytes so far can be read (several only under anyOf). Empty: the bytes are not a document's. */
export type State = Stack[];

const DONE: Stack = { frame: { t: 'done' }, up: undefined as unknown as Stack, depth: 0 };
const FREE_OBJECT: Shape = { kind: 'object', props: [], values: { kind: 'any' } };
const FREE_ARRAY: Shape = { kind: 'array', items: { kind: 'any' }, min: 0, max: Infinity };
const FREE_STRING: StringShape = { kind: 'string', min: 0, max: Infinity };
const LITERALS = ['true', 'false', 'null'];

const [QUOTE, BACKSLASH, COMMA, MINUS, DOT, COLON, LBRACKET, RBRACKET, LBRACE, RBRACE] = Array.from('"\\,-.:[]{}', (c) => c.charCodeAt(0));
const [SPACE, NEWLINE, TAB] = [0x20, 0x0a, 0x09];
const isWhitespace = (b: number) => b === SPACE || b === NEWLINE || b === 0x0d || b === TAB;
const isDigit = (b: number) => b >= 0x30 && b <= 0x39;
const isHex = (b: number) => isDigit(b) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66);
const ESCAPES = new Set(Array.from('"\\/bfnrtu', (c) => c.charCodeAt(0)));

/** The state before a document; `leadingWhitespace`: whether whitespace may come before it (JSON: yes). */
export function start(shape: Shape, leadingWhitespace = true): State {
  return [{ frame: { t: 'root', shape, ws: leadingWhitespace ? 0 : NO_MORE }, up: DONE, depth: 0 }];
}

/** The states after one more byte (alike readings kept once: anyOf alternatives that read the same). */
export function feed(state: State, b: number): State {
  if (state.length === 1) return step(state[0], b);
  const next = state.flatMap((s) => step(s, b));
  return next.length > 1 ? dedupe(next) : next;
}

function dedupe(state: State): State {
  return [...new Map(state.map((s) => [stackKey(s), s])).values()];
}

/** Whether the bytes so far are a whole document (the end-of-text token may come now). */
export function canEnd(state: State): boolean {
  return state.some(complete);
}

/**
 * Whether every byte of plain text (printable ASCII but `"` and `\\`) leaves the state as it is: inside a
 * string with no length limit left to count, or where a pattern or grammar loops on any character. The mask
 * walk then allows plain tokens without reading them.
 */
export function takesPlainText(state: State): boolean {
  if (state.length !== 1) return false;
  const f = state[0].frame;
  if (f.t === 'pattern') return f.need === 0 && f.matcher.max === Infinity && f.chars >= f.matcher.min && loopsOnPlainText(f.matcher, f.node, f.chars);
  return f.t === 'string' && f.escape === 0 && f.utf8 === 0 && f.shape.max === Infinity && f.chars >= f.shape.min;
}

/** Whether a pattern's (or grammar's) node reads every plain character back to itself: `[^"]*`, a free string. */
function loopsOnPlainText(matcher: CharMachine, node: DfaNode, chars: number): boolean {
  let loops = plainLoops.get(node);
  if (loops === undefined) {
    loops = true;
    for (let c = 0x20; c < 0x7f && loops; c++) if (c !== 0x22 && c !== 0x5c) loops = matcher.read(node, c, chars) === node;
    plainLoops.set(node, loops);
  }
  return loops;
}
const plainLoops = new WeakMap<DfaNode, boolean>();

const replace = (s: Stack, frame: Frame): Stack => ({ frame, up: s.up, depth: s.depth });
const push = (up: Stack, frame: Frame): Stack[] => (up.depth >= MAX_DEPTH ? [] : [{ frame, up, depth: up.depth + 1 }]);
/** A count that no longer matters (no maximum, minimum reached) is kept at the minimum: fewer distinct states. */
const capped = (n: number, min: number, max: number) => (max === Infinity ? Math.min(n, min) : n);

/** A whitespace byte in a frame's run of whitespace (see MAX_INDENT). */
function whitespace(s: Stack, f: Extract<Frame, { ws: number }>, b: number): Stack[] {
  const ws =
    f.ws === 0 ? (b === SPACE ? NO_MORE : b === NEWLINE ? 1 : undefined) : f.ws >= 1 && f.ws <= MAX_INDENT && (b === SPACE || b === TAB) ? f.ws + 1 : undefined;
  return ws === undefined ? [] : [replace(s, { ...f, ws })];
}

function step(s: Stack, b: number): Stack[] {
  const f = s.frame;
  switch (f.t) {
    case 'done':
      return [];
    case 'root':
      if (isWhitespace(b)) return whitespace(s, f, b);
      return open(f.shape, DONE, b);
    case 'object':
      return objectStep(s, f, b);
    case 'array': {
      if (isWhitespace(b)) return whitespace(s, f, b);
      const { min, max, items } = f.shape;
      if (f.phase === 'next') {
        if (b === COMMA) return f.count < max ? [replace(s, { ...f, phase: 'comma', ws: 0 })] : [];
        return b === RBRACKET && f.count >= min ? [s.up] : [];
      }
      if (f.phase === 'open' && b === RBRACKET) return min === 0 ? [s.up] : [];
      if (f.count >= max) return [];
      // A tuple's first items have shapes of their own (prefixItems): their positions are counted exactly.
      const { prefix = [] } = f.shape;
      const count = capped(f.count + 1, Math.max(min, prefix.length), max);
      return open(prefix[f.count] ?? items, replace(s, { ...f, phase: 'next', count, ws: 0 }), b);
    }
    case 'string':
      return stringStep(s, f, b);
    case 'number': {
      const next = numberStep(f.phase, b, f.integer);
      // Within MAX_NUMBER, with room for the digit that ends a `-`, `.`, `e` or `e+` (else it would be a dead end).
      if (next && f.length + (ending(next) ? 1 : 2) <= MAX_NUMBER) return [replace(s, { ...f, phase: next, length: f.length + 1 })];
      // A byte that cannot go on the number ends it (if it may end), and is the next frame's.
      return ending(f.phase) ? step(s.up, b) : [];
    }
    case 'pattern': {
      const out = patternStep(s, f, b);
      // An unquoted value (a bounded integer) ends where its pattern may end: the byte is the next frame's.
      return !f.quoted && f.need === 0 && f.node.accepting ? [...out, ...step(s.up, b)] : out;
    }
    case 'literal': {
      const longer = f.options.filter((o) => o.charCodeAt(f.at) === b);
      const out = longer.length > 0 ? [replace(s, { ...f, options: longer, at: f.at + 1 })] : [];
      // An option already whole (enum [1, 12] after "1"): the byte may also be the next frame's.
      return f.options.some((o) => o.length === f.at) ? [...out, ...step(s.up, b)] : out;
    }
  }
}

/** The stacks after the first byte of a value of `shape`, which returns to `up` when it is whole. */
function open(shape: Shape, up: Stack, b: number): Stack[] {
  switch (shape.kind) {
    case 'any':
      if (b === LBRACE) return open(FREE_OBJECT, up, b);
      if (b === LBRACKET) return open(FREE_ARRAY, up, b);
      if (b === QUOTE) return open(FREE_STRING, up, b);
      if (b === MINUS || isDigit(b)) return open({ kind: 'number', integer: false }, up, b);
      return open({ kind: 'literal', options: LITERALS }, up, b);
    case 'object':
      return b === LBRACE ? push(up, { t: 'object', shape, phase: 'open', last: -1, prop: -1, key: '', ws: 0 }) : [];
    case 'array':
      return b === LBRACKET ? push(up, { t: 'array', shape, phase: 'open', count: 0, ws: 0 }) : [];
    case 'string':
      if (b !== QUOTE) return [];
      if (shape.pattern) return patternFrame(up, shape.pattern, true);
      return push(up, { t: 'string', shape, escape: 0, chars: 0, utf8: 0, lead: 0 });
    case 'text':
      return patternFrame(up, shape.pattern, false).flatMap((s) => step(s, b));
    case 'number': {
      const phase = numberStep('sign', b, shape.integer) ?? (b === MINUS ? 'sign' : undefined);
      return phase ? push(up, { t: 'number', integer: shape.integer, phase, length: 1 }) : [];
    }
    case 'literal':
      return push(up, { t: 'literal', options: shape.options, at: 0 }).flatMap((s) => step(s, b));
    case 'anyOf':
      return shape.options.flatMap((o) => open(o, up, b));
  }
}

/** Listed properties that may come after property `last`: the next ones up to the first required one. */
function nextProps(shape: ObjectShape, last: number): number[] {
  const out: number[] = [];
  for (let j = last + 1; j < shape.props.length; j++) {
    out.push(j);
    if (shape.props[j].required) break;
  }
  return out;
}

function objectStep(s: Stack, f: Extract<Frame, { t: 'object' }>, b: number): Stack[] {
  const { shape } = f;
  const listed = shape.props.length > 0;
  if (f.phase === 'key') {
    const key = f.key + String.fromCharCode(b);
    const candidates = nextProps(shape, f.last).filter((j) => shape.props[j].key.startsWith(key));
    if (candidates.length === 0) return [];
    const whole = candidates.find((j) => shape.props[j].key.length === key.length);
    return [replace(s, whole === undefined ? { ...f, key } : { ...f, phase: 'colon', key: '', prop: whole, ws: 0 })];
  }
  if (isWhitespace(b)) return whitespace(s, f, b);
  const closable = !listed || shape.props.slice(f.last + 1).every((p) => !p.required);
  const keysLeft = listed ? nextProps(shape, f.last).length > 0 : shape.values !== null;
  switch (f.phase) {
    case 'open':
    case 'comma':
      if (b === RBRACE && f.phase === 'open') return closable ? [s.up] : [];
      if (b !== QUOTE || !keysLeft) return [];
      if (listed) return [replace(s, { ...f, phase: 'key', key: '"', ws: 0 })];
      return push(replace(s, { ...f, phase: 'colon', ws: 0 }), { t: 'string', shape: FREE_STRING, escape: 0, chars: 0, utf8: 0, lead: 0 });
    case 'colon':
      return b === COLON ? [replace(s, { ...f, phase: 'value', ws: 0 })] : [];
    case 'value': {
      const value = listed ? shape.props[f.prop].shape : (shape.values ?? FREE_OBJECT);
      return open(value, replace(s, { ...f, phase: 'next', last: listed ? f.prop : f.last, ws: 0 }), b);
    }
    default:
      if (b === COMMA) return keysLeft ? [replace(s, { ...f, phase: 'comma', ws: 0 })] : [];
      return b === RBRACE && closable ? [s.up] : [];
  }
}

function stringStep(s: Stack, f: Extract<Frame, { t: 'string' }>, b: number): Stack[] {
  const { min, max } = f.shape;
  if (f.escape === -1) {
    if (!ESCAPES.has(b)) return [];
    return b === 0x75 ? inString(s, f, 4, f.chars) : inString(s, f, 0, capped(f.chars + 1, min, max));
  }
  if (f.escape > 0) {
    if (!isHex(b)) return [];
    return f.escape === 1 ? inString(s, f, 0, capped(f.chars + 1, min, max)) : inString(s, f, f.escape - 1, f.chars);
  }
  if (f.utf8 > 0) return continues(f.lead, b) ? inString(s, f, 0, f.chars, f.utf8 - 1) : []; // a character already counted
  if (b === QUOTE) return f.chars >= min ? [s.up] : [];
  if (b < 0x20 || (b >= 0x80 && b < 0xc2) || b > 0xf4) return []; // control characters must be escaped; not UTF-8
  if (f.chars >= max) return [];
  if (b === BACKSLASH) return inString(s, f, -1, f.chars);
  const chars = capped(f.chars + 1, min, max);
  if (b < 0x80) return chars === f.chars ? [s] : inString(s, f, 0, chars); // the same state (most bytes of most strings)
  return inString(s, f, 0, chars, b < 0xe0 ? 1 : b < 0xf0 ? 2 : 3, b);
}

// Written out rather than spread: the mask walk makes ~100k of these for a string's mask.
const inString = (s: Stack, f: Extract<Frame, { t: 'string' }>, escaped: number, chars: number, utf8 = 0, lead = 0): Stack[] => [
  { frame: { t: 'string', shape: f.shape, escape: escaped, chars, utf8, lead }, up: s.up, depth: s.depth },
];

const patternFrame = (up: Stack, matcher: CharMachine, quoted: boolean): Stack[] =>
  matcher.start ? push(up, { t: 'pattern', matcher, quoted, node: matcher.start, chars: 0, need: 0, cp: 0, lead: 0 }) : [];

type PatternFrame = Extract<Frame, { t: 'pattern' }>;

// Module functions, not closures made per call: a mask walk steps ~100k bytes through a pattern.
function patternStep(s: Stack, f: PatternFrame, b: number): Stack[] {
  if (f.need > 0) {
    if (!continues(f.lead, b)) return [];
    const cp = f.cp * 64 + (b & 0x3f);
    return f.need === 1 ? readChar(s, f, cp) : halfRead(s, f, cp, f.need - 1, 0);
  }
  if (f.quoted && b === QUOTE) return f.node.accepting && f.chars >= f.matcher.min ? [s.up] : [];
  if (f.quoted && (b === BACKSLASH || b < 0x20)) return []; // written without escapes
  if (b < 0x80) return readChar(s, f, b);
  if (b < 0xc2 || b > 0xf4) return [];
  return b < 0xe0 ? halfRead(s, f, b & 0x1f, 1, b) : b < 0xf0 ? halfRead(s, f, b & 0x0f, 2, b) : halfRead(s, f, b & 0x07, 3, b);
}

/** The state after a whole character (the same stack where nothing changes: a loop over free text). */
function readChar(s: Stack, f: PatternFrame, c: number): Stack[] {
  const { matcher } = f;
  if (f.chars >= matcher.max) return [];
  const node = matcher.read(f.node, c, f.chars);
  if (!node) return [];
  const chars = capped(f.chars + 1, matcher.min, matcher.max);
  if (node === f.node && chars === f.chars && f.need === 0) return [s];
  return [{ frame: { t: 'pattern', matcher, quoted: f.quoted, node, chars, need: 0, cp: 0, lead: 0 }, up: s.up, depth: s.depth }];
}

/** A character half read: whether the expression can read any it may turn out to be. */
function halfRead(s: Stack, f: PatternFrame, cp: number, need: number, lead: number): Stack[] {
  const { matcher } = f;
  // After a lead byte alone, the shortest form's floor: F0 begins U+10000-U+3FFFF, not U+0-U+3FFFF.
  const lo = Math.max(cp * 2 ** (6 * need), lead === 0 ? 0 : [0, 0x80, 0x800, 0x10000][need]);
  const hi = cp * 2 ** (6 * need) + 2 ** (6 * need) - 1;
  if (f.chars >= matcher.max || !matcher.accepts(f.node, lo, hi, f.chars)) return [];
  return [{ frame: { t: 'pattern', matcher, quoted: f.quoted, node: f.node, chars: f.chars, need, cp, lead }, up: s.up, depth: s.depth }];
}

/** Whether `b` may follow in a character begun with `lead` (0: not its second byte): no overlong forms, surrogates or past U+10FFFF. */
function continues(lead: number, b: number): boolean {
  if (lead === 0xe0) return b >= 0xa0 && b <= 0xbf;
  if (lead === 0xed) return b >= 0x80 && b <= 0x9f;
  if (lead === 0xf0) return b >= 0x90 && b <= 0xbf;
  if (lead === 0xf4) return b >= 0x80 && b <= 0x8f;
  return b >= 0x80 && b <= 0xbf;
}

/** JSON's number grammar, one byte at a time (a leading zero stands alone; integers have no fraction or exponent). */
function numberStep(phase: NumberPhase, b: number, integer: boolean): NumberPhase | undefined {
  const digit = isDigit(b);
  switch (phase) {
    case 'sign':
      return b === 0x30 ? 'zero' : digit ? 'int' : undefined;
    case 'int':
    case 'zero':
      if (digit) return phase === 'int' ? 'int' : undefined;
      if (integer) return undefined;
      return b === DOT ? 'dot' : b === 0x65 || b === 0x45 ? 'e' : undefined;
    case 'dot':
    case 'frac':
      if (digit) return 'frac';
      return phase === 'frac' && (b === 0x65 || b === 0x45) ? 'e' : undefined;
    case 'e':
      return b === 0x2b || b === MINUS ? 'esign' : digit ? 'exp' : undefined;
    default:
      return digit ? 'exp' : undefined;
  }
}

const ending = (phase: NumberPhase) => phase === 'zero' || phase === 'int' || phase === 'frac' || phase === 'exp';

function complete(s: Stack): boolean {
  const f = s.frame;
  if (f.t === 'done') return true;
  if (f.t === 'number') return ending(f.phase) && complete(s.up);
  if (f.t === 'literal') return f.options.some((o) => o.length === f.at) && complete(s.up);
  if (f.t === 'pattern') return !f.quoted && f.need === 0 && f.node.accepting && complete(s.up);
  return false;
}

const ids = new WeakMap<object, number>();
let lastId = 0;
const idOf = (shape: object) => {
  let id = ids.get(shape);
  if (id === undefined) {
    id = ++lastId;
    ids.set(shape, id);
  }
  return id;
};

/** A state as a string: equal strings, equal futures (the key of the masks computed for it). */
export function stateKey(state: State): string {
  return state.map(stackKey).join('|');
}

function stackKey(s: Stack): string {
  const parts: string[] = [];
  for (let at: Stack | undefined = s; at && at !== DONE; at = at.up) {
    const f = at.frame;
    if (f.t === 'root') parts.push(`r${idOf(f.shape)},${f.ws}`);
    else if (f.t === 'object') parts.push(`o${idOf(f.shape)},${f.phase},${f.last},${f.prop},${f.ws},${JSON.stringify(f.key)}`);
    else if (f.t === 'array') parts.push(`a${idOf(f.shape)},${f.phase},${f.count},${f.ws}`);
    else if (f.t === 'string') parts.push(`s${idOf(f.shape)},${f.escape},${f.chars},${f.utf8},${f.lead}`);
    else if (f.t === 'number') parts.push(`n${f.integer},${f.phase},${f.length}`);
    else if (f.t === 'literal') parts.push(`l${JSON.stringify(f.options)},${f.at}`);
    else if (f.t === 'pattern') parts.push(`p${idOf(f.matcher)},${f.quoted},${f.node.id},${f.chars},${f.need},${f.cp},${f.lead}`);
  }
  return parts.join('/') || 'done';
}
