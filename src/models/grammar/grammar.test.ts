import { isIPv6 } from 'node:net';
import { describe, expect, it } from 'vitest';
import { gpt2 } from '../gpt2-tokenizer.js';
import { seededRandom } from '../sampling.js';
import { decode } from '../text.js';
import {
  canEnd,
  compileFormat,
  DFA_BUDGET,
  FormatError,
  feed,
  Grammar,
  grammarFor,
  type JsonSchema,
  MAX_INDENT,
  type ResponseFormat,
  TokenConstraint,
  Vocabulary,
  vocabularyFor,
} from './index.js';
import { indexVocabulary } from './mask.js';
import { FORMATS } from './regex.js';
import { indexOnWorker, prepareVocabulary } from './vocabulary-thread.js';

const schema = (s: JsonSchema): ResponseFormat => ({ type: 'json_schema', schema: s });
const JSON_OBJECT: ResponseFormat = { type: 'json_object' };
const CODE = schema({ type: 'string', pattern: '^[a-z]{2,4}-\\d+$' });
const EMAIL_12 = schema({ type: 'string', format: 'email', maxLength: 12 });
const AUTO: ResponseFormat = {
  type: 'tool_calls',
  tools: [{ name: 'f', parameters: { type: 'object', properties: {}, additionalProperties: false } }],
  parallel: true,
  auto: true,
};
const GREETING: ResponseFormat = {
  type: 'grammar',
  grammar: 'root ::= greeting " " name ("!" | ".")\ngreeting ::= "hello" | "hi"\nname ::= [A-Z] [a-z]{1,8}',
};
const PARENS: ResponseFormat = { type: 'grammar', grammar: 'root ::= pair*\npair ::= "(" root ")"' };
const SUMS: ResponseFormat = { type: 'grammar', grammar: 'root ::= expr\nexpr ::= term ("+" term)*\nterm ::= [0-9]+ | "(" expr ")"' };
const CHOICE: ResponseFormat = { type: 'choice', choices: ['positive', 'pos', 'négatif'] };

/** Whether the automaton takes the whole text, and whether it is then a whole document. */
function read(format: ResponseFormat, text: string): 'whole' | 'prefix' | 'rejected' {
  let state = new Grammar(format).initial;
  for (const b of Buffer.from(text)) {
    state = feed(state, b);
    if (state.length === 0) return 'rejected';
  }
  return canEnd(state) ? 'whole' : 'prefix';
}

const PERSON = schema({
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 8 },
    age: { type: 'integer' },
    tags: { type: 'array', items: { enum: ['a', 'b', 12] }, maxItems: 2 },
    pet: { anyOf: [{ type: 'null' }, { type: 'object', properties: { kind: { const: 'cat' } }, required: ['kind'] }] },
  },
  required: ['name', 'age'],
  additionalProperties: false,
});

describe('the JSON automaton', () => {
  it.each([
    [JSON_OBJECT, '{"a": [1, -2.5e+3, true, null, {"b": "\\u00e9\\n"}], "c": {}}', 'whole'],
    [JSON_OBJECT, ' {}', 'whole'],
    [JSON_OBJECT, '{"é": "日本"}', 'whole'],
    [JSON_OBJECT, '{"a": 1', 'prefix'],
    [JSON_OBJECT, '{"a": 01}', 'rejected'], // a leading zero stands alone
    [JSON_OBJECT, '[1]', 'rejected'], // json_object: an object
    [JSON_OBJECT, '{"a": tru', 'prefix'],
    [JSON_OBJECT, '{"a": trux', 'rejected'],
    [JSON_OBJECT, '{"a":\n"b\tc"}', 'rejected'], // a control character in a string
    [JSON_OBJECT, '{} ', 'rejected'], // nothing after the document: only end-of-text
    // Between tokens: nothing, one space, or a newline and up to MAX_INDENT spaces or tabs (pretty-printing).
    [JSON_OBJECT, '{\n  "a": [\n    1,\n\t\t2\n  ],\n  "b": {}\n}', 'whole'],
    [JSON_OBJECT, `{\n${' '.repeat(MAX_INDENT)}"a": 1}`, 'whole'],
    [JSON_OBJECT, `{\n${' '.repeat(MAX_INDENT + 1)}"a": 1}`, 'rejected'],
    [JSON_OBJECT, '{"a":    1}', 'rejected'], // spaces alone: one
    [JSON_OBJECT, '{"a":\n\n1}', 'rejected'], // one newline a gap
    [JSON_OBJECT, '{"a": \n1}', 'rejected'], // a space, then nothing more
    [PERSON, '{"name": "Ann", "age": 30}', 'whole'],
    [PERSON, '{"name":"Ann","age":30,"tags":["a",12],"pet":{"kind":"cat"}}', 'whole'],
    [PERSON, '{"name": "Ann", "age": 30, "pet": null}', 'whole'],
    [PERSON, '{"age": 30}', 'rejected'], // properties in order, required ones present
    [PERSON, '{"name": "Ann"}', 'rejected'],
    [PERSON, '{"name": "Ann", "age": 3.5}', 'rejected'], // integer
    [PERSON, '{"name": "Annabelle", "age": 1}', 'rejected'], // maxLength 8
    [PERSON, '{"name": "Ann", "age": 1, "tags": ["a", "b", "a"]}', 'rejected'], // maxItems 2
    [PERSON, '{"name": "Ann", "age": 1, "tags": ["c"]}', 'rejected'], // enum
    [PERSON, '{"name": "Ann", "age": 1, "tags": [1]}', 'rejected'],
    [PERSON, '{"name": "Ann", "age": 1, "tags": [12]}', 'whole'],
    [PERSON, '{"name": "Ann", "age": 1, "owner": 1}', 'rejected'], // additionalProperties: false
    [PERSON, '{"name": "Ann", "age": 1, "pet": {}}', 'rejected'], // pet.kind is required
    [AUTO, 'Sure, here it is.\n', 'whole'], // tool_choice auto: words...
    [AUTO, ' [{"name": "f", "arguments": {}}]', 'whole'], // ...or calls
    [AUTO, '[{"name": "f", "arguments": {"x": 1}}]', 'rejected'], // f takes no arguments
    [AUTO, '[', 'prefix'],
    [AUTO, 'No [brackets] inside are fine', 'whole'],
    [GREETING, 'hello Ann!', 'whole'], // GBNF (guided_grammar)
    [GREETING, 'hi Bob.', 'whole'],
    [GREETING, 'hello An', 'prefix'],
    [GREETING, 'hey Ann!', 'rejected'],
    [GREETING, 'hello ann!', 'rejected'],
    [PARENS, '(()())', 'whole'], // recursive rules
    [PARENS, '(()', 'prefix'],
    [PARENS, '())', 'rejected'],
    [SUMS, '1+(2+34)', 'whole'],
    [SUMS, '1+(2+', 'prefix'],
    [SUMS, '1+)', 'rejected'],
    [{ type: 'grammar', grammar: 'root ::= "é" [а-я]+ # a comment' } as ResponseFormat, 'éпривет', 'whole'],
    [CHOICE, 'pos', 'whole'], // one choice a prefix of another: either may end
    [CHOICE, 'posi', 'prefix'],
    [CHOICE, 'positive', 'whole'],
    [CHOICE, ' pos', 'rejected'], // exactly a choice: no whitespace before it
    [CHOICE, 'posx', 'rejected'],
    [CODE, '"ab-12"', 'whole'],
    [CODE, '"ab-', 'prefix'],
    [CODE, '"a-1"', 'rejected'], // [a-z]{2,4}
    [CODE, '"abcde-1"', 'rejected'],
    [CODE, '"ab-1x"', 'rejected'],
    [schema({ type: 'string', format: 'date' }), '"2024-02-29"', 'whole'],
    [schema({ type: 'string', format: 'date' }), '"2024-13-01"', 'rejected'],
    [schema({ type: 'string', format: 'email' }), '"ann@example.org"', 'whole'],
    [schema({ type: 'string', format: 'email' }), '"ann@', 'prefix'],
    [EMAIL_12, '"ab@cd.ef"', 'whole'],
    [EMAIL_12, '"abcdefghij@', 'rejected'], // no room left for a domain within 12 characters
    [EMAIL_12, '"abcdefgh@', 'prefix'],
    [schema({ type: 'string', pattern: '^[а-я]+$' }), '"привет"', 'whole'], // code points, read a byte at a time
    [schema({ type: 'string', pattern: '^[а-я]+$' }), '"hello"', 'rejected'],
    [schema({ type: 'string', pattern: 'a"b' }), '"a\\"b"', 'rejected'], // a pattern's string is written without escapes
    [{ type: 'regex', pattern: '(yes|no)!? \\d{1,3}' } as ResponseFormat, 'yes! 42', 'whole'],
    [{ type: 'regex', pattern: '(yes|no)!? \\d{1,3}' } as ResponseFormat, 'no 4', 'whole'],
    [{ type: 'regex', pattern: '(yes|no)!? \\d{1,3}' } as ResponseFormat, 'no 4567', 'rejected'],
    [{ type: 'regex', pattern: '(yes|no)!? \\d{1,3}' } as ResponseFormat, ' no 4', 'rejected'],
    [{ type: 'regex', pattern: '[^a-z]x' } as ResponseFormat, 'éx', 'whole'],
    [schema({ type: 'number' }), '12', 'whole'], // a number may end the document
    [schema({ type: 'number' }), '12.', 'prefix'],
    [schema({ type: 'number' }), '1234567890123456789012.3', 'whole'], // 24 bytes
    [schema({ type: 'number' }), '12345678901234567890123.', 'rejected'], // no room left for a digit after the dot (fuzzing found the dead end)
    [schema({ type: 'number' }), '12345678901234567890123e', 'rejected'],
    [schema({ type: 'array', items: { type: 'string' }, minItems: 1 }), '[]', 'rejected'],
    [schema({ $defs: { node: { type: 'array', items: { $ref: '#/$defs/node' } } }, $ref: '#/$defs/node' }), '[[], [[]]]', 'whole'],
  ])('%j reads %j: %s', (format, text, expected) => {
    expect(read(format, text)).toBe(expected);
  });

  it('holds integers to their minimum and maximum (exclusive ones too), read as their digits are written', () => {
    const int = (bounds: object) => schema({ type: 'integer', ...bounds });
    const cases: [object, string, 'whole' | 'prefix' | 'rejected'][] = [
      [{ minimum: 15, maximum: 150 }, '15', 'whole'],
      [{ minimum: 15, maximum: 150 }, '150', 'whole'],
      [{ minimum: 15, maximum: 150 }, '151', 'rejected'],
      [{ minimum: 15, maximum: 150 }, '14', 'prefix'], // 140 is in range
      [{ minimum: 15, maximum: 150 }, '0', 'rejected'],
      [{ minimum: 15, maximum: 150 }, '-1', 'rejected'],
      [{ minimum: -5, maximum: 5 }, '-5', 'whole'],
      [{ minimum: -5, maximum: 5 }, '-6', 'rejected'],
      [{ minimum: -5, maximum: 5 }, '-0', 'rejected'],
      [{ exclusiveMinimum: 0 }, '0', 'rejected'],
      [{ exclusiveMinimum: 0 }, '12345678901234567890', 'whole'],
      [{ exclusiveMinimum: 0 }, '123456789012345678901', 'rejected'], // 20 digits at most
      [{ maximum: -3 }, '-3', 'whole'],
      [{ maximum: -3 }, '-2', 'prefix'], // -20 is in range
      [{ maximum: -3 }, '0', 'rejected'],
      [{ minimum: 1.5, exclusiveMaximum: 4 }, '1', 'rejected'],
      [{ minimum: 1.5, exclusiveMaximum: 4 }, '3', 'whole'],
      [{ minimum: 1.5, exclusiveMaximum: 4 }, '4', 'rejected'],
    ];
    for (const [bounds, text, expected] of cases) expect(read(int(bounds), text), `${JSON.stringify(bounds)} ${text}`).toBe(expected);
    // Inside a document the value ends where the next token begins.
    const counted = schema({ type: 'object', properties: { n: { type: 'integer', minimum: 1, maximum: 100 } }, required: ['n'] });
    expect(read(counted, '{"n": 42}')).toBe('whole');
    expect(read(counted, '{"n": 100 }')).toBe('whole');
    expect(read(counted, '{"n": 420}')).toBe('rejected');
    expect(read(counted, '{"n": 0}')).toBe('rejected');
    // Every integer near random bounds: whole exactly when in range.
    const random = seededRandom(5);
    for (let trial = 0; trial < 40; trial++) {
      const lo = Math.floor(random() * 4000) - 2000;
      const hi = lo + Math.floor(random() * 3000);
      const format = int({ minimum: lo, maximum: hi });
      for (let n = lo - 30; n <= hi + 30; n += 1 + Math.floor(random() * 7))
        expect(read(format, String(n)) === 'whole', `${lo}..${hi}: ${n}`).toBe(n >= lo && n <= hi);
    }
    expect(() => compileFormat(int({ minimum: 5, maximum: 4 }))).toThrow(/no integer is between/);
  });

  it('holds numbers to whole-number minimum and maximum (a score in 0..1, a price from 0), written without an exponent', () => {
    const num = (bounds: object) => schema({ type: 'number', ...bounds });
    const cases: [object, string, 'whole' | 'prefix' | 'rejected'][] = [
      [{ minimum: 0, maximum: 1 }, '0', 'whole'],
      [{ minimum: 0, maximum: 1 }, '0.75', 'whole'],
      [{ minimum: 0, maximum: 1 }, '1', 'whole'],
      [{ minimum: 0, maximum: 1 }, '1.00', 'whole'],
      [{ minimum: 0, maximum: 1 }, '1.5', 'rejected'],
      [{ minimum: 0, maximum: 1 }, '2', 'rejected'],
      [{ minimum: 0, maximum: 1 }, '-0.1', 'rejected'],
      [{ minimum: 0 }, '123.45', 'whole'],
      [{ minimum: 0 }, '1e5', 'rejected'],
      [{ minimum: 0 }, '-1', 'rejected'],
      [{ minimum: -2, maximum: -1 }, '-1.5', 'whole'],
      [{ minimum: -2, maximum: -1 }, '-2.5', 'rejected'],
      [{ minimum: -2, maximum: -1 }, '-0.5', 'rejected'],
      [{ maximum: 0 }, '-7.25', 'whole'],
      [{ maximum: 0 }, '0.0', 'whole'],
      [{ maximum: 0 }, '0.1', 'rejected'],
    ];
    for (const [bounds, text, expected] of cases) expect(read(num(bounds), text), `${JSON.stringify(bounds)} ${text}`).toBe(expected);
    const random = seededRandom(9);
    for (let trial = 0; trial < 30; trial++) {
      const lo = Math.floor(random() * 40) - 20;
      const hi = lo + Math.floor(random() * 30);
      const format = num({ minimum: lo, maximum: hi });
      for (let i = 0; i < 60; i++) {
        const x = Math.round((lo - 3 + random() * (hi - lo + 6)) * 1000) / 1000;
        expect(read(format, String(x)) === 'whole', `${lo}..${hi}: ${x}`).toBe(x >= lo && x <= hi);
      }
    }
    expect(() => compileFormat(num({ minimum: 0.5 }))).toThrow(/only whole-number bounds/);
    expect(() => compileFormat(num({ exclusiveMinimum: 0 }))).toThrow(/"exclusiveMinimum" is not supported/);
  });

  it('reads tuples (prefixItems, as Pydantic writes tuple[int, str]) and a single allOf (a described $ref)', () => {
    const pair = schema({ type: 'array', prefixItems: [{ type: 'integer' }, { type: 'string' }], minItems: 2, maxItems: 2 });
    expect(read(pair, '[1, "a"]')).toBe('whole');
    expect(read(pair, '["a", 1]')).toBe('rejected');
    expect(read(pair, '[1, ')).toBe('prefix');
    expect(read(pair, '[1]')).toBe('rejected'); // minItems 2
    expect(read(pair, '[1, "a", 2]')).toBe('rejected');
    const headed = schema({ type: 'array', prefixItems: [{ type: 'integer' }], items: { type: 'string' } });
    expect(read(headed, '[1, "a", "b"]')).toBe('whole');
    expect(read(headed, '[1, 2]')).toBe('rejected');
    expect(read(headed, '[]')).toBe('whole');
    const closed = schema({ type: 'array', prefixItems: [{ type: 'boolean' }, { type: 'null' }], items: false });
    expect(read(closed, '[true, null]')).toBe('whole');
    expect(read(closed, '[true]')).toBe('whole'); // minItems 0: a prefix of the tuple
    expect(read(closed, '[true, null, 1]')).toBe('rejected');
    const described = schema({
      type: 'object',
      properties: { color: { allOf: [{ $ref: '#/$defs/Color' }], description: 'the color', default: 'red' } },
      required: ['color'],
      $defs: { Color: { enum: ['red', 'green'] } },
    });
    expect(read(described, '{"color": "green"}')).toBe('whole');
    expect(read(described, '{"color": "blue"}')).toBe('rejected');
    expect(() => compileFormat(schema({ allOf: [{ type: 'string' }, { maxLength: 3 }] }))).toThrow(/only one schema is supported/);
    expect(() => compileFormat(schema({ type: 'array', items: false }))).toThrow(/only supported after prefixItems/);
    expect(() => compileFormat(schema({ $ref: '#/$defs/S', maxLength: 3, $defs: { S: { type: 'string' } } }))).toThrow(/"maxLength" beside \$ref/);
  });

  it('refuses a schema it cannot enforce, naming the keyword', () => {
    const refused = (s: JsonSchema) => () => compileFormat(schema(s));
    expect(refused({ type: 'number', minimum: 3.5 })).toThrow(
      new FormatError('schema.minimum: on a number, only whole-number bounds are supported (type "integer" takes any)'),
    );
    expect(refused({ type: 'integer', multipleOf: 3 })).toThrow(new FormatError('schema: "multipleOf" is not supported by this gateway'));
    expect(refused({ type: 'object', properties: { tags: { type: 'array', uniqueItems: true } } })).toThrow(/schema.properties.tags: "uniqueItems"/);
    expect(refused({ type: 'object', required: ['x'] })).toThrow(/"x" is not in properties/);
    expect(refused({ $ref: '#/$defs/missing' })).toThrow(/\$ref/);
    expect(refused({ type: 'decimal' })).toThrow(/not a JSON Schema type/);
    expect(refused({ '': 1 })).toThrow(/"" is only supported with a "type"/); // an empty keyword is a keyword too
    expect(refused({ type: 'string', '': 1 })).toThrow(/"" is not supported/);
    expect(refused({ enum: [] })).toThrow(/must not be empty/);
    expect(refused({ type: 'object', properties: 0, required: ['a'] })).toThrow(/properties: must be an object/); // found by fuzzing: was a 500
    expect(refused({ type: 'object', required: 'a' })).toThrow(/required: must be an array/);
    expect(refused({ anyOf: { type: 'string' } })).toThrow(/anyOf: must be an array/);
    expect(refused({ type: 'string', pattern: '(?=a)b' })).toThrow(/lookaround/);
    expect(refused({ type: 'string', pattern: '(a)\\1' })).toThrow(/backreferences/);
    expect(refused({ type: 'string', pattern: 'a{3,2}' })).toThrow(/m < n/);
    expect(refused({ type: 'string', pattern: '(ab' })).toThrow(/unclosed/);
    expect(refused({ type: 'string', pattern: 'a^b' })).toThrow(/only supported at the start/);
    expect(refused({ type: 'string', pattern: '[a-z]{5000}' })).toThrow(/more than 4000 states/);
    expect(refused({ type: 'string', pattern: '^[0-9]{4}$', maxLength: 3 })).toThrow(/no string of 0-3 characters matches its pattern/);
    const badGrammar = (grammar: string) => () => compileFormat({ type: 'grammar', grammar });
    expect(badGrammar('expr ::= expr "+" "1" | "1"')).toThrow(/rule expr is left-recursive/);
    expect(badGrammar('root ::= a\na ::= b "x"\nb ::= a? "y"')).toThrow(/left-recursive/); // through a rule that can be empty
    expect(badGrammar('root ::= missing')).toThrow(/rule missing is not defined/);
    expect(badGrammar('root ::= "open')).toThrow(/unclosed string/);
    expect(badGrammar('root = "x"')).toThrow(/must start "name ::="/);
    expect(refused({ type: 'string', format: 'iri' })).toThrow(/"iri" is not supported \(date, time/);
    // Bounded: each reading of the text multiplies a mask walk, which runs before everyone's next token.
    expect(refused({ anyOf: Array.from({ length: 33 }, () => ({ type: 'string' })) })).toThrow(/more than 32 alternatives/);
    expect(refused({ enum: Array.from({ length: 1001 }, (_, i) => i) })).toThrow(/more than 1000 values/);
    const wide = Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`p${i}`, { type: 'integer' }]));
    expect(refused({ type: 'object', properties: wide })).toThrow(/more than 5000 schemas/);
  });
});

describe('token masks over the GPT-2 vocabulary', () => {
  const vocabulary = new Vocabulary(gpt2, 50257);

  it('sorts the vocabulary on a worker thread into the same index, and builds it here if that thread fails', async () => {
    const here = indexVocabulary(gpt2, 50257);
    const there = await indexOnWorker('gpt2', 50257);
    expect(there.ids).toEqual(here.ids);
    expect(there.shared).toEqual(here.shared);
    expect(there.plain).toEqual(here.plain);
    expect(there.bytes.map((b) => Buffer.from(b).toString('latin1'))).toEqual(here.bytes.map((b) => Buffer.from(b).toString('latin1')));
    // A thread that cannot load the tokenizer: asked for, the vocabulary is built here instead.
    await expect(indexOnWorker('no-such-tokenizer', 50)).rejects.toThrow(/not bundled/);
    prepareVocabulary('no-such-tokenizer', gpt2, 50300);
    expect((await vocabularyFor(gpt2, 50300)).ids).toEqual(new Vocabulary(gpt2, 50300).ids);
  });

  /** Draws `steps` tokens uniformly among those the mask allows; returns the text and whether it ended. */
  function generate(format: ResponseFormat, seed: number, steps: number) {
    const constraint = new TokenConstraint(grammarFor(format), vocabulary);
    const random = seededRandom(seed);
    const tokens: number[] = [];
    for (let i = 0; i < steps; i++) {
      const row = new Float32Array(50257);
      constraint.mask(row);
      const allowed: number[] = [];
      for (let t = 0; t < row.length; t++) if (row[t] === 0) allowed.push(t);
      const token = allowed[Math.floor(random() * allowed.length)];
      if (token === gpt2.eos) {
        expect(constraint.complete, 'end-of-text only at a whole document, never in a dead end').toBe(true);
        return { text: decode(gpt2, tokens), ended: true };
      }
      tokens.push(token);
      constraint.advance(token);
    }
    return { text: decode(gpt2, tokens), ended: false };
  }

  it('lets through only tokens that keep the text a document prefix, and end-of-text only at its end', () => {
    let ended = 0;
    for (let seed = 1; seed <= 12; seed++) {
      const { text, ended: whole } = generate(PERSON, seed, 80);
      expect(read(PERSON, text), text).toBe(whole ? 'whole' : 'prefix');
      if (whole) {
        const doc = JSON.parse(text);
        expect(Object.keys(doc).slice(0, 2)).toEqual(['name', 'age']);
        expect(Number.isInteger(doc.age)).toBe(true);
        ended++;
      }
    }
    expect(ended).toBeGreaterThan(0);
  });

  it('writes strings that match their pattern (JavaScript RegExp checks them)', () => {
    const format = schema({
      type: 'object',
      properties: {
        code: { type: 'string', pattern: '^[A-Z]{2}[0-9]{2,3}$' },
        when: { type: 'string', format: 'date-time' },
        ip: { type: 'string', format: 'ipv4' },
      },
      required: ['code', 'when', 'ip'],
      additionalProperties: false,
    });
    let ended = 0;
    for (let seed = 1; seed <= 6; seed++) {
      const { text, ended: whole } = generate(format, seed, 120);
      expect(read(format, text), text).toBe(whole ? 'whole' : 'prefix');
      if (!whole) continue;
      ended++;
      const doc = JSON.parse(text);
      expect(doc.code).toMatch(/^[A-Z]{2}[0-9]{2,3}$/);
      expect(Number.isNaN(Date.parse(doc.when))).toBe(false);
      expect(doc.ip.split('.').every((o: string) => Number(o) <= 255 && String(Number(o)) === o)).toBe(true);
    }
    expect(ended).toBeGreaterThan(3);
  });

  it('writes hostnames, IPv6 addresses and URIs that their validators accept (formats)', () => {
    const hostname = new RegExp(`^${FORMATS.hostname}$`);
    const uri = new RegExp(`^${FORMATS.uri}$`);
    const check: Record<string, (x: string) => boolean> = {
      ipv6: (x) => isIPv6(x),
      hostname: (x) => hostname.test(x) && x.split('.').every((label) => label.length <= 63),
      uri: (x) => uri.test(x) && /^[a-zA-Z][a-zA-Z0-9+.-]*:./.test(x),
    };
    for (const [format, valid] of Object.entries(check)) {
      const doc = schema({ type: 'object', properties: { v: { type: 'string', format, maxLength: 40 } }, required: ['v'], additionalProperties: false });
      let ended = 0;
      for (let seed = 1; seed <= 8; seed++) {
        const { text, ended: whole } = generate(doc, seed, 60);
        expect(read(doc, text), text).toBe(whole ? 'whole' : 'prefix');
        if (!whole) continue;
        ended++;
        expect(valid(JSON.parse(text).v), `${format}: ${text}`).toBe(true);
      }
      expect(ended, format).toBeGreaterThan(2);
    }
    // Known forms, by the same automaton.
    const v6 = schema({ type: 'string', format: 'ipv6' });
    for (const x of ['::', '::1', '1::', 'fe80::1:2', '2001:db8:0:0:0:0:2:1', '1:2:3:4:5:6:7::']) expect(read(v6, JSON.stringify(x)), x).toBe('whole');
    for (const x of ['1:2:3:4:5:6:7:8:9', '1::2::3', '12345::', ':1']) expect(read(v6, JSON.stringify(x)), x).not.toBe('whole');
  });

  it('compiles random schemas to a FormatError or a grammar that never reaches a dead end', () => {
    const random = seededRandom(42);
    const pick = <T>(list: T[]): T => list[Math.floor(random() * list.length)];
    const odd = [null, true, 0, -1, 2, 1.5, '', 'x', [], {}, ['a'], '^[a-z]{2}$', '(', '\\d+', '[^"]{3}', 30];
    const types = ['object', 'array', 'string', 'number', 'integer', 'boolean', 'null', ['string', 'null'], 'decimal'];
    const keywords = [
      'type',
      'properties',
      'required',
      'items',
      'enum',
      'anyOf',
      '$ref',
      '$defs',
      'pattern',
      'format',
      'minLength',
      'maxLength',
      'maxItems',
      'minimum',
      'prefixItems',
      'allOf',
      'maximum',
    ];
    const schemaOf = (depth: number): unknown => {
      if (depth > 3 || random() < 0.2) return random() < 0.7 ? { type: pick(types) } : pick(odd);
      const out: Record<string, unknown> = {};
      for (let i = 0; i < 1 + Math.floor(random() * 4); i++) {
        const k = pick(keywords);
        if (k === 'type') out.type = pick(types);
        else if (k === 'properties') out.properties = { a: schemaOf(depth + 1), b: schemaOf(depth + 1) };
        else if (k === 'items') out.items = schemaOf(depth + 1);
        else if (k === 'anyOf') out.anyOf = [schemaOf(depth + 1), schemaOf(depth + 1)];
        else if (k === 'allOf') out.allOf = random() < 0.7 ? [schemaOf(depth + 1)] : [schemaOf(depth + 1), schemaOf(depth + 1)];
        else if (k === 'prefixItems') out.prefixItems = pick([[schemaOf(depth + 1)], [schemaOf(depth + 1), schemaOf(depth + 1)], {}]);
        else if (k === '$defs') out.$defs = { d: schemaOf(depth + 1) };
        else if (k === '$ref') out.$ref = pick(['#/$defs/d', '#/x']);
        else if (k === 'required') out.required = pick([['a'], ['b', 'a'], 'a', []]);
        else if (k === 'format') out.format = pick(['date', 'email', 'uuid', 'nope']);
        else out[k] = pick(odd);
      }
      return out;
    };
    let compiled = 0;
    for (let i = 0; i < 150; i++) {
      const format = schema(schemaOf(0) as JsonSchema);
      try {
        compileFormat(format);
      } catch (e) {
        expect(e).toBeInstanceOf(FormatError); // never a TypeError: that would be a 500
        continue;
      }
      compiled++;
      const { text, ended } = generate(format, i, 24); // asserts end-of-text only at a whole document
      if (ended) expect(() => JSON.parse(text), text).not.toThrow();
    }
    expect(compiled).toBeGreaterThan(25);
  });

  it('writes texts a grammar accepts (JavaScript RegExp checks a regular one)', () => {
    let ended = 0;
    for (let seed = 1; seed <= 8; seed++) {
      const { text, ended: whole } = generate(GREETING, seed, 20);
      expect(read(GREETING, text), text).toBe(whole ? 'whole' : 'prefix');
      if (whole) {
        expect(text).toMatch(/^(hello|hi) [A-Z][a-z]{1,8}[!.]$/);
        ended++;
      }
    }
    expect(ended).toBeGreaterThan(4);
  });

  it.each([
    [JSON_OBJECT, ['{"', 'a', '":', ' 1', '2']],
    [JSON_OBJECT, ['{\n', '  ', '"a":', ' [', '1', ',\n', '\t']], // pretty-printed: a newline and its indentation
    // A bounded integer: an unquoted pattern that ends where the next token begins.
    [schema({ type: 'object', properties: { n: { type: 'integer', minimum: 1, maximum: 100 } }, required: ['n'] }), ['{"n": ', '4', '2']],
    // Free text in a pattern and in a grammar's string: the walk's plain-text shortcut must agree.
    [{ type: 'regex', pattern: 'Q: [^\\n]*\\?' } as ResponseFormat, ['Q', ': ', 'why', ' not']],
    [{ type: 'grammar', grammar: 'root ::= "{" str ":" str "}"\nstr ::= "\\"" [^"\\\\]* "\\""' } as ResponseFormat, ['{', '"', 'ab c', '"']],
  ])('masks for %j the same tokens as reading each token whole would', (format, pieces) => {
    expectExactMasks(format, pieces);
  });

  it("keeps a pattern's or grammar's DFA within its budget, forgetting it without mixing up masks", () => {
    const kept = { ...DFA_BUDGET };
    Object.assign(DFA_BUDGET, { moves: 40, keyChars: 120 });
    try {
      // Fresh machines (not the ones other tests built), forgetting their DFA every few characters: a node
      // made after that must not take an earlier one's id, under which a mask is cached.
      expectExactMasks({ type: 'regex', pattern: '(ab|a[0-9]{1,3})+c?' }, ['a', '1', 'ab', 'a2', '3']);
      expectExactMasks({ type: 'grammar', grammar: 'root ::= ("(" root ")" | "[" root "]")*' }, ['(', '[', '(', ')', '(']);
      for (let seed = 1; seed <= 4; seed++) {
        const { text, ended } = generate(GREETING, seed, 20);
        expect(read(GREETING, text), text).toBe(ended ? 'whole' : 'prefix');
      }
    } finally {
      Object.assign(DFA_BUDGET, kept);
    }
  });

  function expectExactMasks(format: ResponseFormat, pieces: string[]): void {
    const grammar = grammarFor(format);
    let state = grammar.initial;
    let sofar = '';
    for (const piece of [...pieces, '']) {
      const mask = grammar.allowed(state, vocabulary).bits(50257);
      const wrong: string[] = []; // (one expect for all 50k tokens: an expect per token was most of the time)
      for (let t = 0; t < 50257; t++) {
        if (t === gpt2.eos) continue;
        let s = state;
        for (const b of gpt2.bytes(t)) s = feed(s, b);
        if (mask[t] !== (s.length > 0 ? 1 : 0)) wrong.push(`${JSON.stringify(decode(gpt2, [t]))}: mask ${mask[t]}`);
      }
      expect(wrong, `after ${JSON.stringify(sofar)}`).toEqual([]);
      expect(mask[gpt2.eos]).toBe(canEnd(state) ? 1 : 0);
      for (const b of Buffer.from(piece)) state = feed(state, b);
      sofar += piece;
    }
  }
});
