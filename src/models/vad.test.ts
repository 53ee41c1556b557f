import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Framer, parseWav, pcmSamples, Segmenter, VAD_DEFAULTS } from './vad.js';

const jfk = readFileSync(new URL('../../test/fixtures/jfk.wav', import.meta.url));
const framing = { sampleRate: 16000, window: 4, context: 2 };

describe('Framer', () => {
  it("cuts samples into windows, each behind the previous window's last samples, whatever the pieces", () => {
    const f = new Framer(framing);
    const windows = [...f.push(Float32Array.from([1, 2, 3])), ...f.push(Float32Array.from([4, 5, 6, 7, 8, 9]))].map((w) => Array.from(w));
    expect(windows).toEqual([
      [0, 0, 1, 2, 3, 4],
      [3, 4, 5, 6, 7, 8],
    ]);
    expect(Array.from(f.flush() ?? [])).toEqual([7, 8, 9, 0, 0, 0]);
    expect(f.flush()).toBeUndefined();
  });
});

describe('Segmenter (silero VADIterator rules)', () => {
  it('starts speech at the first window over the threshold and ends it after enough silence, padded', () => {
    // 100 ms windows at 1 kHz, pad 10 ms, min silence 150 ms.
    const s = new Segmenter({ sampleRate: 1000, window: 100, context: 0 }, { ...VAD_DEFAULTS, speechPadMs: 10, minSilenceMs: 150 });
    const events = [0.1, 0.9, 0.8, 0.4, 0.2, 0.9, 0.1, 0.1, 0.1, 0.1].map((p) => s.next(p)).map((e, i) => e && { at: i, ...e });
    // 0.4 is neither speech nor silence (hysteresis: below 0.35 ends it); the dip at 0.2 is too short to end it.
    expect(events.filter(Boolean)).toEqual([
      { at: 1, type: 'speech_start', start: 90 },
      { at: 8, type: 'speech_end', start: 90, end: 610 },
    ]);
    expect(s.finish(1000)).toBeUndefined();
    expect(s.next(0.9)).toEqual({ type: 'speech_start', start: 990 });
    expect(s.finish(1100)).toEqual({ type: 'speech_end', start: 990, end: 1100 });
  });
});

describe('audio decoding', () => {
  it('reads a WAV with a LIST chunk before its data (ffmpeg writes one)', () => {
    const wav = parseWav(jfk);
    expect([wav.sampleRate, wav.channels, wav.format, wav.data.byteLength]).toEqual([16000, 1, 's16le', 176000 * 2]);
    const samples = pcmSamples(wav.data, 's16le');
    expect(samples.length).toBe(176000);
    expect(samples.reduce((m, v) => Math.max(m, Math.abs(v)), 0)).toBeLessThanOrEqual(1);
  });

  it('says why it cannot read audio', () => {
    expect(() => parseWav(new TextEncoder().encode('hello, not audio'))).toThrow(/not a WAV/);
    const eightBit = Uint8Array.from(jfk);
    new DataView(eightBit.buffer).setUint16(34, 8, true);
    expect(() => parseWav(eightBit)).toThrow(/8-bit integer audio; send 16-bit integer or 32-bit float PCM/);
    expect(() => parseWav(jfk.subarray(0, 40))).toThrow(/no data chunk/);
    expect(() => pcmSamples(new Uint8Array(7), 'f32le')).toThrow(/4 bytes a sample, but 7 bytes/);
    expect(Array.from(pcmSamples(Uint8Array.from([0x00, 0x80, 0xff, 0x7f]), 's16le'))).toEqual([-1, 32767 / 32768]);
  });
});
