import { CfgMachine } from './ebnf.js';
import { FormatError } from './errors.js';
import { type CharMachine, Matcher } from './matcher.js';
import { compileRegex, FORMATS } from './regex.js';

/**
 * What a generated JSON document may look like: OpenAI's `response_format` compiled into shapes that the
 * automaton (automaton.ts) walks a byte at a time. `json_object` is any JSON object; `json_schema` is the
 * subset of JSON Schema below. A keyword outside it is refused (a 400 naming it), never silently ignored:
 * a constraint that is not enforced would hand back documents the caller's parser then rejects.
 */
export type ResponseFormat =
  | { type: 'json_object' }
  | { type: 'json_schema'; schema: JsonSchema }
  /**
   * OpenAI's tool calling with tool_choice "required": a JSON array of one or more (one unless `parallel`)
   * `{"name": …, "arguments": {…}}`, each call's arguments a document of its tool's parameters schema.
   */
  | {
      type: 'tool_calls';
      tools: { name: string; parameters: JsonSchema }[];
      parallel: boolean;
      /** tool_choice "auto": the calls, or text that does not start with `[` (the first character decides). */
      auto?: boolean;
    }
  /** vLLM's guided_choice: exactly one of these texts (not JSON: as they are). */
  | { type: 'choice'; choices: string[] }
  /** vLLM's guided_regex: a text (not JSON) that matches the whole expression. */
  | { type: 'regex'; pattern: string }
  /** vLLM's guided_grammar (GBNF): a text the grammar's first (or `root`) rule matches. */
  | { type: 'grammar'; grammar: string };
export type JsonSchema = boolean | { [keyword: string]: unknown };

export type Shape =
  | { kind: 'any' }
  /**
   * Listed properties in their order (`required` ones always); when none are listed, any keys with values of
   * `values` (null: none, `{}` only).
   */
  | { kind: 'object'; props: Prop[]; values: Shape | null }
  /** `prefix`: the shapes of the first items, in order (a tuple: JSON Schema's prefixItems); `items`: the rest's. */
  | { kind: 'array'; items: Shape; min: number; max: number; prefix?: Shape[] }
  /**
   * Length in characters (an escape is one). With a `pattern` (JSON Schema's pattern or format), the value
   * matches it whole and is written without escapes (a character that needs one cannot be generated).
   */
  | { kind: 'string'; min: number; max: number; pattern?: Matcher }
  /**
   * Unquoted text read by a pattern or a grammar: a whole document (vLLM's guided_regex, guided_grammar), or
   * a value that ends where its pattern may (an integer between a minimum and a maximum).
   */
  | { kind: 'text'; pattern: CharMachine }
  | { kind: 'number'; integer: boolean }
  /** One of these JSON texts exactly (enum, const, booleans, null), as byte strings (see `byteString`). */
  | { kind: 'literal'; options: string[] }
  | { kind: 'anyOf'; options: Shape[] };
/** A listed property: its key as JSON text (quotes included, a byte string), its value's shape. */
export type Prop = { key: string; shape: Shape; required: boolean };

export { FormatError };

/** UTF-8 text as a string of one char per byte: the automaton compares bytes (tokens split characters). */
export const byteString = (text: string): string => Buffer.from(text).toString('latin1');

/** Keywords that only describe (they change nothing a document may be). */
const ANNOTATIONS = new Set(['title', 'description', 'default', 'examples', '$schema', '$id', '$comment', '$defs', 'definitions', 'strict', 'deprecated']);
const SUPPORTED: Record<string, string[]> = {
  object: ['properties', 'required', 'additionalProperties'],
  array: ['items', 'prefixItems', 'minItems', 'maxItems'],
  string: ['minLength', 'maxLength', 'pattern', 'format'],
  number: ['minimum', 'maximum'],
  integer: ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'],
  boolean: [],
  null: [],
};
const ANY: Shape = { kind: 'any' };
/**
 * Bounds on a format (OpenAI's structured outputs have alike ones): a mask walk reads every token from each
 * reading of the text, so alternatives multiply its cost, and it runs in the replica's step, before everyone's
 * next token.
 */
export const MAX_SHAPES = 5000;
export const MAX_ENUM = 1000;
export const MAX_ANY_OF = 32;

/** The shape of a response format's documents; a FormatError names what this gateway cannot enforce. */
export function compileFormat(format: ResponseFormat): Shape {
  if (format.type === 'json_object') return { kind: 'object', props: [], values: ANY };
  const budget = { shapes: 0 };
  if (format.type === 'json_schema') return compileSchema(format.schema, 'schema', budget);
  if (format.type === 'choice') return literalOf(format.choices, 'choices');
  if (format.type === 'regex') return { kind: 'text', pattern: new Matcher(compileRegex(format.pattern, 'pattern'), 0, Infinity) };
  if (format.type === 'grammar') return { kind: 'text', pattern: new CfgMachine(format.grammar, 'grammar') };
  const call = ({ name, parameters }: { name: string; parameters: JsonSchema }, i: number): Shape => ({
    kind: 'object',
    props: [
      { key: byteString('"name"'), shape: { kind: 'literal', options: [byteString(JSON.stringify(name))] }, required: true },
      { key: byteString('"arguments"'), shape: compileSchema(parameters, `tools[${i}].function.parameters`, budget), required: true },
    ],
    values: null,
  });
  const calls: Shape = { kind: 'array', items: { kind: 'anyOf', options: format.tools.map(call) }, min: 1, max: format.parallel ? Infinity : 1 };
  return format.auto ? { kind: 'anyOf', options: [calls, { kind: 'text', pattern: TEXT_NOT_CALLS }] } : calls;
}

/** Under tool_choice "auto", an answer in words: anything whose first character (past whitespace) is not `[`. */
const TEXT_NOT_CALLS = new Matcher(compileRegex('[^\\s\\[][\\s\\S]*', 'text'), 0, Infinity);

const BOUNDS = ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'] as const;
/** Most digits of an integer with no bound on that side (the automaton's numbers are at most 24 bytes). */
const MAX_DIGITS = 20;

/**
 * An integer schema's bounds as a pattern its JSON text matches (undefined: unbounded): the numbers from the
 * minimum to the maximum, as alternatives of digit ranges (`1[5-9]|[2-9][0-9]|1[0-4][0-9]|150` for 15..150).
 */
function integerPattern(schema: Record<string, unknown>, path: string): string | undefined {
  if (!BOUNDS.some((k) => k in schema)) return undefined;
  const bound = (k: (typeof BOUNDS)[number]) => {
    const v = schema[k];
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !(Math.abs(v) <= Number.MAX_SAFE_INTEGER)) throw new FormatError(`${path}.${k}: must be a number within ±2^53`);
    return v;
  };
  const lows = [bound('minimum'), bound('exclusiveMinimum')].map((v, i) => (v === undefined ? -Infinity : i === 0 ? Math.ceil(v) : Math.floor(v) + 1));
  const highs = [bound('maximum'), bound('exclusiveMaximum')].map((v, i) => (v === undefined ? Infinity : i === 0 ? Math.floor(v) : Math.ceil(v) - 1));
  const [lo, hi] = [Math.max(...lows), Math.min(...highs)];
  if (lo > hi) throw new FormatError(`${path}: no integer is between its minimum and maximum`);
  const parts: string[] = [];
  if (lo < 0) parts.push(`-(${naturals(hi < 0 ? -hi : 1, -lo).join('|')})`);
  if (hi >= 0) parts.push(...naturals(Math.max(lo, 0), hi));
  return parts.join('|');
}

/** A fraction: JSON's digits after a point, at most 16 of them (a pattern has no length bound of its own). */
const FRACTION = '(\\.[0-9]{1,16})?';
const ZERO_FRACTION = '(\\.0{1,16})?';

/**
 * A number schema's bounds as a pattern (undefined: unbounded): whole-number minimum and maximum (0..1 for a
 * score, 0 for a price), written without an exponent. Exclusive or fractional bounds on numbers are refused:
 * integers take those.
 */
function numberPattern(schema: Record<string, unknown>, path: string): string | undefined {
  const bound = (k: 'minimum' | 'maximum') => {
    const v = schema[k];
    if (v === undefined) return k === 'minimum' ? -Infinity : Infinity;
    if (typeof v !== 'number' || !Number.isSafeInteger(v))
      throw new FormatError(`${path}.${k}: on a number, only whole-number bounds are supported (type "integer" takes any)`);
    return v;
  };
  const exclusive = ['exclusiveMinimum', 'exclusiveMaximum'].find((k) => k in schema);
  if (exclusive !== undefined) throw new FormatError(`${path}: "${exclusive}" is not supported by this gateway on a number (type "integer" takes it)`);
  if (!('minimum' in schema || 'maximum' in schema)) return undefined;
  const [lo, hi] = [bound('minimum'), bound('maximum')];
  if (lo > hi) throw new FormatError(`${path}: no number is between its minimum and maximum`);
  // Whole part k with any fraction for k below the top bound; the top bound itself only with zeros after it.
  const side = (from: number, to: number) =>
    to === Infinity
      ? `(${naturals(from, Infinity).join('|')})${FRACTION}`
      : [...(to > from ? [`(${naturals(from, to - 1).join('|')})${FRACTION}`] : []), `${to}${ZERO_FRACTION}`].join('|');
  const parts: string[] = [];
  if (lo < 0) parts.push(`-(${side(hi < 0 ? -hi : 0, -lo)})`); // -x for x in [-hi, -lo]
  if (hi >= 0) parts.push(side(Math.max(lo, 0), hi));
  return parts.join('|');
}

/** Alternatives matching the decimal forms of the integers from `a` to `b` (b may be Infinity: up to MAX_DIGITS digits). */
function naturals(a: number, b: number): string[] {
  const out: string[] = [];
  const la = String(a).length;
  const lb = b === Infinity ? MAX_DIGITS : String(b).length;
  for (let len = la; len <= lb; len++) {
    const from = len === la ? BigInt(a) : 10n ** BigInt(len - 1);
    const to = b === Infinity || len < lb ? 10n ** BigInt(len) - 1n : BigInt(b);
    if (b === Infinity && len > la) {
      out.push(`[1-9][0-9]{${len - 1},${MAX_DIGITS - 1}}`); // every longer one at once
      break;
    }
    out.push(...digitRanges(from.toString(), to.toString()));
  }
  return out;
}

/** Alternatives for the numbers from `lo` to `hi`, both of the same number of digits. */
function digitRanges(lo: string, hi: string): string[] {
  if (lo === hi) return [lo];
  let i = 0;
  while (lo[i] === hi[i]) i++;
  const [prefix, rest] = [lo.slice(0, i), lo.length - i - 1];
  const any = rest > 0 ? `[0-9]{${rest}}` : '';
  let [dlo, dhi] = [Number(lo[i]), Number(hi[i])];
  const out: string[] = [];
  const tail: string[] = [];
  // The ragged ends first (15..19 of 15..150), then whole runs of digits between them (2-9 then any digit).
  if (!/^0*$/.test(lo.slice(i + 1))) {
    out.push(...digitRanges(lo, `${prefix}${dlo}${'9'.repeat(rest)}`));
    dlo++;
  }
  if (!/^9*$/.test(hi.slice(i + 1))) {
    tail.push(...digitRanges(`${prefix}${dhi}${'0'.repeat(rest)}`, hi));
    dhi--;
  }
  if (dlo <= dhi) out.push(`${prefix}${dlo === dhi ? dlo : `[${dlo}-${dhi}]`}${any}`);
  return [...out, ...tail];
}

/** Exactly one of these texts (as they are). */
function literalOf(texts: string[], path: string): Shape {
  if (texts.length > MAX_ENUM) throw new FormatError(`${path}: more than ${MAX_ENUM} values`);
  return { kind: 'literal', options: texts.map(byteString) };
}

/** A JSON Schema's shape; `path` names where it is in the request (errors start with it). */
function compileSchema(root: JsonSchema, path: string, budget: { shapes: number }): Shape {
  const refs = new Map<string, Shape>();
  const resolve = (ref: string, path: string): Shape => {
    const known = refs.get(ref);
    if (known) return known;
    const match = /^#\/(\$defs|definitions)\/([^/]+)$/.exec(ref);
    const target = match && typeof root === 'object' ? (root[match[1]] as Record<string, JsonSchema> | undefined)?.[match[2]] : undefined;
    if (target === undefined) throw new FormatError(`${path}: $ref ${JSON.stringify(ref)} is not a #/$defs/… definition of this schema`);
    // A placeholder first, filled after: a recursive definition refers to itself.
    const shape = { kind: 'any' } as Shape;
    refs.set(ref, shape);
    Object.assign(shape, compile(target, `${path}→${ref}`));
    return shape;
  };

  const compile = (schema: JsonSchema, path: string): Shape => {
    if (++budget.shapes > MAX_SHAPES) throw new FormatError(`${path}: the format has more than ${MAX_SHAPES} schemas in all`);
    if (schema === true) return ANY;
    if (schema === false || typeof schema !== 'object' || schema === null || Array.isArray(schema))
      throw new FormatError(`${path}: a schema must be an object or true`);
    // A $ref, or one schema in allOf (Pydantic wraps a described $ref so), is that schema; a constraint beside
    // it would make an intersection, which is not compiled (nor may it be ignored).
    const alone = (keyword: string) => {
      const other = Object.keys(schema).find((k) => k !== keyword && !ANNOTATIONS.has(k));
      if (other !== undefined) throw new FormatError(`${path}: "${other}" beside ${keyword} is not supported`);
    };
    if (typeof schema.$ref === 'string') {
      alone('$ref');
      return resolve(schema.$ref, path);
    }
    if (schema.allOf !== undefined) {
      if (!Array.isArray(schema.allOf) || schema.allOf.length !== 1) throw new FormatError(`${path}.allOf: only one schema is supported (not an intersection)`);
      alone('allOf');
      return compile(schema.allOf[0] as JsonSchema, `${path}.allOf[0]`);
    }
    if ('const' in schema) return literal([schema.const], path);
    if (schema.enum !== undefined && !Array.isArray(schema.enum)) throw new FormatError(`${path}.enum: must be an array`);
    if (Array.isArray(schema.enum)) return literal(schema.enum, path);
    const alternatives = schema.anyOf ?? schema.oneOf;
    if (alternatives !== undefined && !Array.isArray(alternatives)) throw new FormatError(`${path}.anyOf: must be an array of schemas`);
    if (Array.isArray(alternatives)) {
      if (alternatives.length > MAX_ANY_OF) throw new FormatError(`${path}.anyOf: more than ${MAX_ANY_OF} alternatives`);
      return { kind: 'anyOf', options: alternatives.map((s, i) => compile(s, `${path}.anyOf[${i}]`)) };
    }
    const types = Array.isArray(schema.type) ? schema.type : schema.type === undefined ? undefined : [schema.type];
    if (types === undefined) {
      const other = Object.keys(schema).find((k) => !ANNOTATIONS.has(k));
      if (other !== undefined) throw new FormatError(`${path}: "${other}" is only supported with a "type"`);
      return ANY;
    }
    const shapes = types.map((type) => typed(schema, String(type), path));
    return shapes.length === 1 ? shapes[0] : { kind: 'anyOf', options: shapes };
  };

  const typed = (schema: Record<string, unknown>, type: string, path: string): Shape => {
    const allowed = SUPPORTED[type];
    if (!allowed) throw new FormatError(`${path}: type ${JSON.stringify(type)} is not a JSON Schema type`);
    const other = Object.keys(schema).find((k) => k !== 'type' && !ANNOTATIONS.has(k) && !Object.values(SUPPORTED).flat().includes(k));
    if (other !== undefined) throw new FormatError(`${path}: "${other}" is not supported by this gateway`);
    const count = (keyword: string, fallback: number) => {
      const v = schema[keyword];
      if (v === undefined) return fallback;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new FormatError(`${path}.${keyword}: must be a non-negative integer`);
      return v;
    };
    switch (type) {
      case 'object': {
        const properties = (schema.properties ?? {}) as Record<string, JsonSchema>;
        if (typeof properties !== 'object' || properties === null || Array.isArray(properties)) throw new FormatError(`${path}.properties: must be an object`);
        const listed = schema.required ?? [];
        if (!Array.isArray(listed) || !listed.every((name) => typeof name === 'string'))
          throw new FormatError(`${path}.required: must be an array of property names`);
        const required = new Set(listed as string[]);
        for (const name of required) if (!(name in properties)) throw new FormatError(`${path}.required: "${name}" is not in properties`);
        const props = Object.entries(properties).map(([name, s]) => ({
          key: byteString(JSON.stringify(name)),
          shape: compile(s, `${path}.properties.${name}`),
          required: required.has(name),
        }));
        const extra = schema.additionalProperties;
        // With properties listed, only those are generated (a document's other keys would be guesses).
        const values = extra === undefined || extra === true ? ANY : extra === false ? null : compile(extra as JsonSchema, `${path}.additionalProperties`);
        return { kind: 'object', props, values };
      }
      case 'array': {
        const { prefixItems } = schema;
        if (prefixItems !== undefined && !Array.isArray(prefixItems)) throw new FormatError(`${path}.prefixItems: must be an array of schemas`);
        const prefix = (prefixItems as JsonSchema[] | undefined)?.map((s, i) => compile(s, `${path}.prefixItems[${i}]`));
        // items: false closes a tuple at its prefix.
        const closed = schema.items === false;
        if (closed && !prefix) throw new FormatError(`${path}.items: false is only supported after prefixItems`);
        const max = Math.min(count('maxItems', Infinity), closed ? (prefix as Shape[]).length : Infinity);
        const min = count('minItems', 0);
        if (min > max) throw new FormatError(`${path}: minItems is more than the items it may have`);
        const items = schema.items === undefined || closed ? ANY : compile(schema.items as JsonSchema, `${path}.items`);
        return { kind: 'array', items, min, max, ...(prefix && { prefix }) };
      }
      case 'string': {
        const { pattern, format } = schema;
        if (pattern !== undefined && typeof pattern !== 'string') throw new FormatError(`${path}.pattern: must be a string`);
        if (format !== undefined && !(typeof format === 'string' && format in FORMATS))
          throw new FormatError(`${path}.format: ${JSON.stringify(format)} is not supported (${Object.keys(FORMATS).join(', ')} are)`);
        if (pattern !== undefined && format !== undefined) throw new FormatError(`${path}: pattern and format together are not supported`);
        const source = pattern ?? (format === undefined ? undefined : FORMATS[format as string]);
        const nfa = source === undefined ? undefined : compileRegex(source, `${path}.${pattern !== undefined ? 'pattern' : 'format'}`);
        const [min, max] = [count('minLength', 0), count('maxLength', Infinity)];
        const matcher = nfa && new Matcher(nfa, min, max);
        if (matcher && !matcher.start)
          throw new FormatError(`${path}: no string of ${min}-${max} characters matches its ${pattern !== undefined ? 'pattern' : 'format'}`);
        return { kind: 'string', min, max, ...(matcher && { pattern: matcher }) };
      }
      case 'number': {
        const digits = numberPattern(schema, path);
        return digits === undefined ? { kind: 'number', integer: false } : { kind: 'text', pattern: new Matcher(compileRegex(digits, path), 0, Infinity) };
      }
      case 'integer': {
        const digits = integerPattern(schema, path);
        return digits === undefined ? { kind: 'number', integer: true } : { kind: 'text', pattern: new Matcher(compileRegex(digits, path), 0, Infinity) };
      }
      case 'boolean':
        return { kind: 'literal', options: ['true', 'false'] };
      default:
        return { kind: 'literal', options: ['null'] };
    }
  };

  const literal = (values: unknown[], path: string): Shape => {
    if (values.length === 0) throw new FormatError(`${path}.enum: must not be empty`);
    return literalOf(
      values.map((v) => JSON.stringify(v)),
      `${path}.enum`,
    );
  };

  return compile(root, path);
}
