import { randomUUID } from 'node:crypto';
import { upgradeWebSocket } from '@hono/node-server';
import { Hono } from 'hono';
import type { WSContext } from 'hono/ws';
import { z } from 'zod';
import type { SubmitOptions } from '../batcher/index.js';
import { badInput, cancelled, GatewayError, notFound } from '../errors/index.js';
import { Framer, PcmReader, parseWav, pcmSamples, Segmenter, VAD_DEFAULTS, type VadEvent, type VadSettings } from '../models/index.js';
import type { Caller } from './auth/middleware.js';
import { clientSignal, parseQuery, readBody } from './body.js';
import type { GatewayEnv, ServedModel } from './types.js';

type VadModel = ServedModel & { sequences: NonNullable<ServedModel['sequences']> & { vad: NonNullable<NonNullable<ServedModel['sequences']>['vad']> } };

/** Seconds of audio a live stream may have sent ahead of the model (past it the stream is closed: it is not live). */
const MAX_AHEAD_S = 30;

const flag = z.enum(['true', 'false']).transform((v) => v === 'true');
export const vadQuerySchema = z
  .object({
    model: z.string({ error: 'missing required parameter: model' }),
    /** Raw audio's encoding (a WAV body says its own). */
    format: z.enum(['s16le', 'f32le']).default('s16le'),
    sample_rate: z.coerce.number().int().positive().optional(),
    threshold: z.coerce.number().min(0).max(1).default(VAD_DEFAULTS.threshold),
    min_silence_ms: z.coerce.number().min(0).default(VAD_DEFAULTS.minSilenceMs),
    speech_pad_ms: z.coerce.number().min(0).default(VAD_DEFAULTS.speechPadMs),
    min_speech_ms: z.coerce.number().min(0).default(VAD_DEFAULTS.minSpeechMs),
    /** Also return every window's speech probability. */
    probabilities: flag.default(false),
  })
  .strict();
type VadQuery = z.infer<typeof vadQuerySchema>;

/**
 * Voice activity detection (a `vad` model: silero VAD's inputs and outputs, its state kept per stream by the
 * model's sequences):
 *
 *   POST /v1/audio/vad?model=vad      a WAV file (16-bit or float, mono) or raw PCM (`format`, `sample_rate`)
 *     → {"model", "duration", "segments": [{"start", "end"}, …] (seconds), "probabilities"?: […]}
 *   GET  /v1/audio/vad?model=vad      a WebSocket: binary messages are raw PCM as it is captured;
 *     ← {"type": "speech_start", "start"} … {"type": "speech_end", "start", "end"}  as speech starts and ends
 *     → {"type": "end"}  ← {"type": "done", "duration"}  (then the socket closes)
 *
 * Settings by silero's names as query parameters: threshold, min_silence_ms, speech_pad_ms, min_speech_ms.
 * Every window of one stream is a request of its sequence; windows of different streams share batches.
 */
export function audioRoutes(models: ReadonlyMap<string, ServedModel>, maxBodyBytes: number): Hono<GatewayEnv> {
  const app = new Hono<GatewayEnv>();
  app.post('/v1/audio/vad', async (c) => {
    const q = parseQuery(vadQuerySchema, c);
    const m = vadModel(models, q.model);
    c.set('model', m.name);
    const samples = recording(await readBody(c, maxBodyBytes), q, m);
    const segments: Extract<VadEvent, { type: 'speech_end' }>[] = [];
    const stream = new VadStream(m, settingsOf(q), { signal: clientSignal(c), ...who(c.get('caller')) }, (e) => e.type === 'speech_end' && segments.push(e));
    try {
      await stream.push(samples);
      await stream.end();
    } finally {
      stream.release();
    }
    const minSpeech = (m.sequences.vad.sampleRate * q.min_speech_ms) / 1000;
    return c.json({
      model: m.name,
      duration: stream.seconds(samples.length),
      segments: segments.filter((s) => s.end - s.start >= minSpeech).map((s) => ({ start: stream.seconds(s.start), end: stream.seconds(s.end) })),
      ...(q.probabilities && { probabilities: stream.probabilities }),
    });
  });
  app.get(
    '/v1/audio/vad',
    // Checked before the upgrade: a wrong model or setting is an HTTP 4xx, not a socket that closes at once.
    async (c, next) => {
      const q = parseQuery(vadQuerySchema, c);
      vadModel(models, q.model);
      if (q.sample_rate !== undefined) checkRate(q.sample_rate, vadModel(models, q.model));
      await next();
    },
    upgradeWebSocket((c) => {
      const q = parseQuery(vadQuerySchema, c);
      const m = vadModel(models, q.model);
      const controller = new AbortController();
      let ws: WSContext | undefined;
      const send = (msg: object) => ws?.readyState === 1 && ws.send(JSON.stringify(msg));
      const stream = new VadStream(m, settingsOf(q), { signal: controller.signal, ...who(c.get('caller')) }, (e) =>
        send(
          e.type === 'speech_start'
            ? { type: e.type, start: stream.seconds(e.start) }
            : { type: e.type, start: stream.seconds(e.start), end: stream.seconds(e.end) },
        ),
      );
      let chain = Promise.resolve();
      let ahead = 0;
      const pcm = new PcmReader(q.format);
      const fail = (err: unknown) => {
        const e = err instanceof GatewayError ? err : new GatewayError(500, 'internal', (err as Error).message);
        send({ type: 'error', error: { status: e.status, code: e.code, message: e.message } });
        // A bad message changes nothing and the stream goes on; a window the model could not take ends the stream.
        if (e.status !== 400) ws?.close(1011, e.code);
        return e.status === 400;
      };
      return {
        onOpen(_event, socket) {
          ws = socket;
        },
        onMessage(event, socket) {
          ws = socket;
          const { data } = event;
          if (typeof data === 'string') {
            let msg: { type?: unknown };
            try {
              msg = JSON.parse(data);
            } catch {
              return void fail(badInput('text messages are JSON: {"type": "end"} ends the audio'));
            }
            if (msg?.type !== 'end')
              return void fail(badInput(`unknown message type ${JSON.stringify(msg?.type)}: send audio as binary messages, then {"type": "end"}`));
            chain = chain.then(async () => {
              await stream.end();
              send({ type: 'done', duration: stream.seconds(stream.samples), ...(q.probabilities && { probabilities: stream.probabilities.splice(0) }) });
              stream.release();
              socket.close(1000, 'done');
            });
            chain = chain.catch(fail).then(() => {});
            return;
          }
          const samples = pcm.push(bytesOf(data));
          ahead += samples.length;
          if (ahead > MAX_AHEAD_S * m.sequences.vad.sampleRate) {
            fail(
              new GatewayError(
                429,
                'too_far_ahead',
                `more than ${MAX_AHEAD_S} s of audio is waiting for the model: send it as it is captured, or POST a recording`,
              ),
            );
            return void socket.close(1008, 'too_far_ahead');
          }
          chain = chain
            .then(async () => {
              await stream.push(samples);
              if (q.probabilities) send({ type: 'probabilities', values: stream.probabilities.splice(0) });
            })
            .catch((err) => {
              if (!fail(err)) controller.abort();
            })
            .finally(() => {
              ahead -= samples.length;
            });
        },
        onClose() {
          controller.abort();
          stream.release();
        },
      };
    }),
  );
  return app;
}

/**
 * One audio stream through the model: windows in order, each the next request of the stream's own sequence,
 * each probability through silero's segmenter.
 */
class VadStream {
  private readonly id = randomUUID();
  private readonly framer: Framer;
  private readonly segmenter: Segmenter;
  private started = false;
  private ended = false;
  /** Samples received. */
  samples = 0;
  /** Speech probabilities of the windows run since last taken. */
  readonly probabilities: number[] = [];

  constructor(
    private m: VadModel,
    settings: VadSettings,
    private asker: SubmitOptions,
    private onEvent: (e: VadEvent) => void,
  ) {
    this.framer = new Framer(m.sequences.vad);
    this.segmenter = new Segmenter(m.sequences.vad, settings);
  }

  seconds(samples: number): number {
    return Math.round((samples / this.m.sequences.vad.sampleRate) * 1000) / 1000;
  }

  async push(samples: Float32Array): Promise<void> {
    this.samples += samples.length;
    for (const window of this.framer.push(samples)) await this.run(window, false);
  }

  /** The last partial window (zero-padded), then the speech still going on ends with the audio. */
  async end(): Promise<void> {
    const last = this.framer.flush();
    if (last) await this.run(last, true);
    const e = this.segmenter.finish(this.samples);
    if (e) this.onEvent(e);
  }

  /** Frees the stream's sequence (its state) at once. */
  release(): void {
    if (!this.ended) this.m.sequences.release({ id: this.id });
    this.ended = true;
  }

  private async run(window: Float32Array, end: boolean): Promise<void> {
    if (this.ended) throw cancelled('the stream was closed'); // its sequence is gone: never start another
    const { input, output } = this.m.sequences.vad;
    const result = await this.m.sequences.submit(
      { id: this.id, start: !this.started, end },
      { [input]: { dtype: 'FP32', shape: [1, window.length], data: window } },
      this.asker,
    );
    this.started = true;
    if (end) this.ended = true;
    const p = Number(result.outputs[output].data[0]);
    this.probabilities.push(Math.round(p * 1e6) / 1e6);
    const e = this.segmenter.next(p);
    if (e) this.onEvent(e);
  }
}

/** A caller's priority and identity, for the queue (callers take turns). */
const who = (caller: Caller | undefined) => ({ priority: caller?.priority, caller: caller?.id });

function vadModel(models: ReadonlyMap<string, ServedModel>, name: string): VadModel {
  const m = models.get(name);
  if (!m) throw notFound(`unknown model ${JSON.stringify(name)}; this gateway serves ${[...models.keys()].join(', ')}`);
  if (!m.sequences?.vad) throw badInput(`model ${name} is not a voice activity detector (a model with vad in the config)`, 'model');
  return m as VadModel;
}

function settingsOf(q: VadQuery): VadSettings {
  return { threshold: q.threshold, minSilenceMs: q.min_silence_ms, speechPadMs: q.speech_pad_ms, minSpeechMs: q.min_speech_ms };
}

function checkRate(rate: number, m: VadModel): void {
  const want = m.sequences.vad.sampleRate;
  if (rate !== want) throw badInput(`audio at ${rate} Hz: model ${m.name} takes ${want} Hz mono; resample it first`, 'sample_rate');
}

/** A POSTed recording's samples: a WAV file as its header says, or raw PCM as the query says. */
function recording(body: Uint8Array, q: VadQuery, m: VadModel): Float32Array {
  const isWav = body.byteLength >= 4 && String.fromCharCode(...body.subarray(0, 4)) === 'RIFF';
  let samples: Float32Array;
  try {
    if (isWav) {
      const wav = parseWav(body);
      if (wav.channels !== 1) throw badInput(`the WAV has ${wav.channels} channels; send mono audio`);
      checkRate(wav.sampleRate, m);
      samples = pcmSamples(wav.data, wav.format);
    } else {
      checkRate(q.sample_rate ?? m.sequences.vad.sampleRate, m);
      samples = pcmSamples(body, q.format);
    }
  } catch (err) {
    throw err instanceof GatewayError ? err : badInput((err as Error).message);
  }
  if (samples.length === 0) throw badInput('the body has no audio');
  return samples;
}

function bytesOf(data: unknown): Uint8Array {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (Array.isArray(data)) return Buffer.concat(data as Buffer[]); // ws's fragmented messages
  throw new Error('unexpected binary message');
}
