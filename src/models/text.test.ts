import { describe, expect, it } from 'vitest';
import { gpt2 } from './gpt2-tokenizer.js';
import { chatPrompt, decode, TextStream } from './text.js';

const run = (text: string, stops: string[] = []) => {
  const stream = new TextStream(gpt2, stops);
  const pieces: string[] = [];
  for (const t of gpt2.encode(text)) {
    const piece = stream.push(t);
    if (piece) pieces.push(piece);
    if (stream.stopped) break;
  }
  if (!stream.stopped) pieces.push(stream.flush());
  return { text: pieces.join(''), pieces, stopped: stream.stopped };
};

describe('gpt2 tokenizer', () => {
  it('is the real GPT-2 BPE', () => {
    expect(gpt2.encode('Hello world')).toEqual([15496, 995]);
    expect(gpt2.eos).toBe(50256);
    expect(decode(gpt2, [15496, 995])).toBe('Hello world');
    expect(decode(gpt2, gpt2.encode('héllo 🎉'))).toBe('héllo 🎉');
  });

  it('keeps at most 10,000 words it split before: prompts of ever-new words do not grow the heap', async () => {
    const { default: encoding } = await import('gpt-tokenizer/encoding/gpt2');
    const cache = (encoding as unknown as { bytePairEncodingCoreProcessor: { mergeCache?: Map<string, unknown> } }).bytePairEncodingCoreProcessor.mergeCache;
    for (let i = 0; i < 12_000; i++) gpt2.encode(`request ${i * 7919} said xq${i}z`);
    expect(cache?.size).toBeGreaterThan(5_000); // it still caches
    expect(cache?.size).toBeLessThanOrEqual(10_000);
    expect(gpt2.encode('Hello world')).toEqual([15496, 995]);
  });
});

describe('TextStream', () => {
  it('streams text whose concatenation is the whole text, never splitting a character', () => {
    const r = run('héllo 🎉 wörld');
    expect(r.text).toBe('héllo 🎉 wörld');
    expect(r.pieces.every((p) => !p.includes('\uFFFD'))).toBe(true);
    expect(r.pieces.length).toBeGreaterThan(3);
  });

  it('ends at a stop sequence, without it, even when it spans tokens', () => {
    expect(run('one two. END three', ['END'])).toMatchObject({ text: 'one two. ', stopped: true });
    const stream = new TextStream(gpt2, ['END']);
    for (const t of gpt2.encode('one END two')) stream.push(t);
    expect(stream.flush()).toBe(''); // nothing of the stop sequence or after it comes out at the end
    expect(run('alpha\n\nbeta', ['\n\n'])).toMatchObject({ text: 'alpha', stopped: true });
  });

  it('ends at the stop sequence that comes first in the text, whatever their order in the list', () => {
    // "Starts" arrives in one token: both stops are found at once, and the text must hold neither.
    const stream = new TextStream(gpt2, ['rts', 'Sta']);
    const shown = gpt2.encode(' Starts here').map((t) => stream.push(t));
    expect([shown.join('') + stream.flush(), stream.stoppedBy]).toEqual([' ', 'Sta']);
  });

  it('holds back only what could still become a stop sequence', () => {
    const stream = new TextStream(gpt2, ['STOP']);
    const [hello, world] = gpt2.encode('Hello world');
    expect(stream.push(hello)).toBe('He'); // the last 3 characters could begin "STOP"
    expect(stream.push(world)).toBe('llo wo');
    expect(stream.flush()).toBe('rld');
  });

  it('stops at the end-of-text token', () => {
    const stream = new TextStream(gpt2);
    expect(stream.push(gpt2.encode('Hi')[0])).toBe('Hi');
    stream.push(gpt2.eos);
    expect(stream.stopped).toBe(true);
  });

  it('stops at stop tokens too, and goes on past end-of-text with ignoreEos, showing nothing for it', () => {
    const [hi, there] = gpt2.encode('Hi there');
    const byToken = new TextStream(gpt2, [], { stopTokens: [there] });
    expect(byToken.push(hi)).toBe('Hi');
    expect(byToken.push(there)).toBe('');
    expect(byToken.stopped).toBe(true);
    const ignoring = new TextStream(gpt2, [], { ignoreEos: true });
    expect([hi, gpt2.eos, there].map((t) => ignoring.push(t)).join('')).toBe('Hi there');
    expect(ignoring.stopped).toBe(false);
  });
});

describe('chatPrompt', () => {
  it('lays messages out as a dialogue ending with the assistant turn', () => {
    expect(
      chatPrompt([
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Hi' },
      ]),
    ).toBe('Be brief.\n\nUser: Hi\nAssistant:');
  });
});
