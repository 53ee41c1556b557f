import { describe, expect, it } from 'vitest';
import { ToolAnswer, ToolCallReader } from './tools.js';

const REQUIRED = ' [{"name": "a", "arguments": { "s": "}]\\" {", "n": [1, {"x": null}]}} ,{"name":"b","arguments":{}}]';

/** The calls read from `text` given in pieces cut at `cuts`, and the deltas joined per call. */
function read(text: string, cuts: number[], name?: string) {
  const reader = new ToolCallReader(name);
  const joined: { name?: string; arguments: string }[] = [];
  let at = 0;
  for (const cut of [...cuts, text.length]) {
    for (const d of reader.push(text.slice(at, cut))) {
      joined[d.index] ??= { arguments: '' };
      if (d.function.name) joined[d.index].name = d.function.name;
      joined[d.index].arguments += d.function.arguments;
    }
    at = cut;
  }
  return { calls: reader.calls.map((c) => [c.function.name, c.function.arguments]), joined: joined.map((c) => [c.name, c.arguments]) };
}

describe('ToolCallReader', () => {
  it('reads a "required" array into calls, whatever pieces the text comes in', () => {
    const whole = read(REQUIRED, []);
    expect(whole.calls).toEqual([
      ['a', '{ "s": "}]\\" {", "n": [1, {"x": null}]}'],
      ['b', '{}'],
    ]);
    expect(JSON.parse(whole.calls[0][1] as string)).toEqual({ s: '}]" {', n: [1, { x: null }] });
    for (let cut = 1; cut < REQUIRED.length; cut++) {
      const split = read(REQUIRED, [cut, Math.min(REQUIRED.length, cut + 7)]);
      expect(split.calls, `cut at ${cut}`).toEqual(whole.calls);
      expect(split.joined, `cut at ${cut}`).toEqual(whole.calls); // the deltas add up to the calls
    }
  });

  it('reads a pretty-printed array (newlines and indentation between tokens) into the same calls', () => {
    const pretty = '[\n  {\n    "name": "a",\n    "arguments": {\n\t\t"s": "x"\n    }\n  },\n  {"name": "b", "arguments": {}}\n]';
    const whole = read(pretty, []);
    expect(whole.calls.map(([name, args]) => [name, JSON.parse(args as string)])).toEqual([
      ['a', { s: 'x' }],
      ['b', {}],
    ]);
    for (let cut = 1; cut < pretty.length; cut++) expect(read(pretty, [cut]).joined, `cut at ${cut}`).toEqual(whole.calls);
  });

  it('reads a named call: the whole text is its arguments, its head sent with the first text', () => {
    const reader = new ToolCallReader('f');
    expect(reader.push('')).toEqual([]);
    const deltas = reader.push(' {"k": 1}');
    expect(deltas).toHaveLength(1); // one delta per call in a chunk, as OpenAI streams them
    expect(deltas[0]).toMatchObject({ index: 0, type: 'function', function: { name: 'f', arguments: '{"k": 1}' } });
    expect(deltas[0].id).toMatch(/^call_[0-9a-f]{24}$/);
    expect(reader.push(' ')).toEqual([]);
    expect(reader.calls[0].function.arguments).toBe('{"k": 1}');
  });

  it('says whether its calls are whole: a stop sequence may cut one short (then not tool_calls)', () => {
    const required = new ToolCallReader();
    required.push('[{"name": "f", "arguments": {"a": "}"');
    expect(required.whole).toBe(false);
    required.push('}');
    expect(required.whole).toBe(false); // (the arguments' object, not yet the call)
    required.push('}');
    expect(required.whole).toBe(true);
    const named = new ToolCallReader('f');
    expect(named.whole).toBe(false);
    named.push('{"a": {"b": 1}');
    expect(named.whole).toBe(false);
    named.push(' }');
    expect(named.whole).toBe(true);
  });

  it('under auto, holds whitespace until the first character says words or calls', () => {
    const auto = { format: { type: 'json_object' as const }, reader: () => new ToolCallReader(), auto: true };
    const words = new ToolAnswer(auto);
    expect(words.push(' \n')).toEqual({});
    expect(words.push(' Sure')).toEqual({ content: ' \n Sure' });
    expect(words.push(' [not a call]')).toEqual({ content: ' [not a call]' });
    expect(words.isCalls).toBe(false);
    const calls = new ToolAnswer(auto);
    expect(calls.push(' ')).toEqual({});
    expect(calls.push('[{"name": "f", "arguments": {}}]').calls?.map((d) => [d.function.name, d.function.arguments])).toEqual([['f', '{}']]);
    expect(calls.isCalls).toBe(true);
    const cut = new ToolAnswer(auto);
    cut.push('  ');
    expect(cut.flush()).toBe('  '); // cut while only whitespace had come: words
  });
});
