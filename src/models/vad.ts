/**
 * Voice activity detection around a silero-style model: audio cut into the windows the model takes (each
 * with the previous window's last samples in front), and its per-window speech probabilities turned into
 * speech segments by silero's own streaming rules (its VADIterator).
 */

export type VadFraming = { sampleRate: number; window: number; context: number };

/** The segmenter's settings, by silero's names (in ms where it uses ms). */
export type VadSettings = {
  /** A window at or above this probability is speech. @default 0.5 */
  threshold: number;
  /** Speech ends once probabilities stay below threshold - 0.15 for this long. @default 100 */
  minSilenceMs: number;
  /** Added before each segment's start and after its end. @default 30 */
  speechPadMs: number;
  /** Whole-recording segments shorter than this are dropped (live events are sent as they happen). @default 250 */
  minSpeechMs: number;
};

export const VAD_DEFAULTS: VadSettings = { threshold: 0.5, minSilenceMs: 100, speechPadMs: 30, minSpeechMs: 250 };

/** Cuts a stream of samples into model inputs: `context` samples of the previous window, then `window` new ones. */
export class Framer {
  private pending: Float32Array;
  private filled = 0;
  private readonly last: Float32Array;

  constructor(private f: VadFraming) {
    this.pending = new Float32Array(f.window);
    this.last = new Float32Array(f.context);
  }

  /** Samples in, every completed window out (context + window samples each). */
  push(samples: Float32Array): Float32Array[] {
    const out: Float32Array[] = [];
    let at = 0;
    while (at < samples.length) {
      const n = Math.min(this.f.window - this.filled, samples.length - at);
      this.pending.set(samples.subarray(at, at + n), this.filled);
      this.filled += n;
      at += n;
      if (this.filled === this.f.window) out.push(this.emit());
    }
    return out;
  }

  /** The last partial window, zero-padded, if samples are left over (the end of a recording). */
  flush(): Float32Array | undefined {
    if (this.filled === 0) return undefined;
    this.pending.fill(0, this.filled);
    return this.emit();
  }

  private emit(): Float32Array {
    const input = new Float32Array(this.f.context + this.f.window);
    input.set(this.last, 0);
    input.set(this.pending, this.f.context);
    this.last.set(this.pending.subarray(this.f.window - this.f.context));
    this.filled = 0;
    return input;
  }
}

export type VadEvent = { type: 'speech_start'; start: number } | { type: 'speech_end'; start: number; end: number };

/**
 * Silero's VADIterator: speech starts at the first window at or above the threshold (padded back by speechPad),
 * and ends once probabilities have stayed below threshold - 0.15 for minSilence (padded forward). Times are in
 * samples.
 */
export class Segmenter {
  private sample = 0;
  private triggered = false;
  private tempEnd = 0;
  private start = 0;
  private readonly pad: number;
  private readonly minSilence: number;

  constructor(
    private f: VadFraming,
    private s: VadSettings,
  ) {
    this.pad = (f.sampleRate * s.speechPadMs) / 1000;
    this.minSilence = (f.sampleRate * s.minSilenceMs) / 1000;
  }

  /** Samples seen so far. */
  get samples(): number {
    return this.sample;
  }

  /** The next window's probability; an event if it starts or ends speech. */
  next(p: number): VadEvent | undefined {
    const w = this.f.window;
    this.sample += w;
    if (p >= this.s.threshold && this.tempEnd) this.tempEnd = 0;
    if (p >= this.s.threshold && !this.triggered) {
      this.triggered = true;
      this.start = Math.max(0, this.sample - this.pad - w);
      return { type: 'speech_start', start: this.start };
    }
    if (p < this.s.threshold - 0.15 && this.triggered) {
      if (!this.tempEnd) this.tempEnd = this.sample;
      if (this.sample - this.tempEnd < this.minSilence) return undefined;
      const end = Math.max(this.start, this.tempEnd + this.pad - w);
      this.tempEnd = 0;
      this.triggered = false;
      return { type: 'speech_end', start: this.start, end };
    }
    return undefined;
  }

  /** The end of the audio (`total` samples): the speech still going on ends there. */
  finish(total: number): VadEvent | undefined {
    if (!this.triggered) return undefined;
    this.triggered = false;
    return { type: 'speech_end', start: this.start, end: total };
  }
}

export type PcmFormat = 's16le' | 'f32le';

/** Raw little-endian PCM as float samples in [-1, 1]; a byte length that is not whole samples throws. */
export function pcmSamples(bytes: Uint8Array, format: PcmFormat): Float32Array {
  const size = format === 's16le' ? 2 : 4;
  if (bytes.byteLength % size !== 0) throw new Error(`${format} audio is ${size} bytes a sample, but ${bytes.byteLength} bytes were sent`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(bytes.byteLength / size);
  if (format === 's16le') for (let i = 0; i < out.length; i++) out[i] = view.getInt16(i * 2, true) / 32768;
  else for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(i * 4, true);
  return out;
}

/**
 * Raw PCM as it comes in messages of any size: each message's whole samples, a sample cut between two messages
 * carried over to the next (a client chunking a stream by bytes must not shift every sample after an odd cut).
 */
export class PcmReader {
  private rest = new Uint8Array(0);
  private readonly size: number;

  constructor(private readonly format: PcmFormat) {
    this.size = format === 's16le' ? 2 : 4;
  }

  push(bytes: Uint8Array): Float32Array {
    const all = this.rest.byteLength === 0 ? bytes : Buffer.concat([this.rest, bytes]);
    const whole = all.byteLength - (all.byteLength % this.size);
    this.rest = all.slice(whole); // (a copy: the message's buffer is not kept)
    return pcmSamples(all.subarray(0, whole), this.format);
  }
}

export type Wav = { sampleRate: number; channels: number; format: PcmFormat; data: Uint8Array };

/** A RIFF WAVE file's format and sample bytes (16-bit integer or 32-bit float PCM); anything else throws, saying what it is. */
export function parseWav(bytes: Uint8Array): Wav {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tag = (at: number) => String.fromCharCode(...bytes.subarray(at, at + 4));
  if (bytes.byteLength < 12 || tag(0) !== 'RIFF' || tag(8) !== 'WAVE') throw new Error('not a WAV file (no RIFF/WAVE header)');
  let fmt: Omit<Wav, 'data'> | undefined;
  for (let at = 12; at + 8 <= bytes.byteLength; ) {
    const id = tag(at);
    const size = view.getUint32(at + 4, true);
    const body = at + 8;
    if (id === 'fmt ') {
      if (size < 16) throw new Error('WAV fmt chunk is too short');
      const code = view.getUint16(body, true);
      const bits = view.getUint16(body + 14, true);
      // WAVE_FORMAT_EXTENSIBLE keeps the real code in its sub-format GUID's first two bytes.
      const real = code === 0xfffe && size >= 40 ? view.getUint16(body + 24, true) : code;
      const format = real === 1 && bits === 16 ? 's16le' : real === 3 && bits === 32 ? 'f32le' : undefined;
      if (!format)
        throw new Error(
          `WAV is ${bits}-bit ${real === 3 ? 'float' : real === 1 ? 'integer' : `format ${real}`} audio; send 16-bit integer or 32-bit float PCM`,
        );
      fmt = { channels: view.getUint16(body + 2, true), sampleRate: view.getUint32(body + 4, true), format };
    } else if (id === 'data') {
      if (!fmt) throw new Error('WAV data comes before its fmt chunk');
      return { ...fmt, data: bytes.subarray(body, Math.min(body + size, bytes.byteLength)) };
    }
    at = body + size + (size % 2); // chunks are padded to even sizes
  }
  throw new Error('WAV has no data chunk');
}
