import { Hono } from 'hono';
import { z } from 'zod';
import { badInput, GatewayError, notFound } from '../errors/index.js';
import { ctcText, decodeImage, detectorInput, lineInput, type Rgb, textBoxes } from '../models/index.js';
import { parseQuery, readBody } from './body.js';
import { askerOf, runEach } from './openai/encoder.js';
import type { GatewayEnv, ServedModel } from './types.js';

export const ocrQuerySchema = z
  .object({
    model: z.string({ error: 'missing required parameter: model' }),
    /** A detector pixel at or over this probability is text. */
    det_threshold: z.coerce.number().gt(0).lt(1).default(0.3),
    /** A region is a text box when its mean probability reaches this. */
    box_threshold: z.coerce.number().gt(0).lt(1).default(0.6),
  })
  .strict();

/**
 * `POST /v1/ocr?model=REC` with a PNG or JPEG body: the text lines in the image, as two models compose — the
 * recogniser's `ocr.detector` finds the lines (one request to its batcher), then every line is a request of its
 * own to the recogniser's batcher, so the lines of one image and of different callers share batches.
 *
 *   → {"model", "width", "height", "lines": [{"text", "confidence", "box": [x0, y0, x1, y1]}, …]}  (reading order)
 */
export function ocrRoutes(models: ReadonlyMap<string, ServedModel>, maxBodyBytes: number): Hono<GatewayEnv> {
  const app = new Hono<GatewayEnv>();
  app.post('/v1/ocr', async (c) => {
    const q = parseQuery(ocrQuerySchema, c);
    const rec = models.get(q.model);
    if (!rec) throw notFound(`unknown model ${JSON.stringify(q.model)}; this gateway serves ${[...models.keys()].join(', ')}`);
    if (!rec.ocr || !rec.batcher) throw badInput(`model ${q.model} is not a text recogniser (a model with ocr in the config)`, 'model');
    const det = models.get(rec.ocr.detector);
    if (!det?.batcher)
      throw new GatewayError(503, 'detector_missing', `the detector ${rec.ocr.detector} of model ${rec.name} is not served`, { retryAfterS: 1 });
    const asker = askerOf(c, rec);
    let image: Rgb;
    try {
      image = decodeImage(await readBody(c, maxBodyBytes));
    } catch (err) {
      if (err instanceof GatewayError) throw err;
      throw badInput(`the body is not an image this can read: ${(err as Error).message}`);
    }
    const { input, scale } = detectorInput(image);
    const found = await det.batcher.submit({ [det.signature.inputs[0].name]: input }, { signal: asker.signal, priority: asker.priority, caller: asker.caller });
    const boxes = textBoxes(found.outputs[det.signature.outputs[0].name], scale, image, q.det_threshold, q.box_threshold);
    const inputName = rec.signature.inputs[0].name;
    const outputName = rec.signature.outputs[0].name;
    const dictionary = rec.ocr.dictionary;
    const read = await runEach(
      asker,
      rec,
      boxes.map((b) => ({ [inputName]: lineInput(image, b) })),
      (outputs) => ctcText(outputs[outputName], dictionary),
    );
    const lines = boxes
      .map((b, i) => ({ text: read[i].text, confidence: Math.round(read[i].confidence * 1e4) / 1e4, box: [b.x0, b.y0, b.x1, b.y1] }))
      .filter((l) => l.text.trim() !== '');
    return c.json({ model: rec.name, width: image.width, height: image.height, lines });
  });
  return app;
}
