import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import type { Tensor } from '../tensor/index.js';

/**
 * Text recognition around PaddleOCR's models (PP-OCR's DB text detector and CTC recogniser): an image decoded to
 * RGB, the detector's input (longest side at most 960, sides multiples of 32, ImageNet-normalised), text boxes
 * from its probability map (connected regions, widened as DB's "unclip" does), each box cut from the original
 * image at the recogniser's height, and its output read back as text (greedy CTC over the dictionary).
 */

export type Rgb = { width: number; height: number; data: Uint8Array };
export type Box = { x0: number; y0: number; x1: number; y1: number; score: number };

/** Longest side the detector sees (PaddleOCR's limit_side_len). */
const DETECT_SIDE = 960;
/** The recogniser's input height (PP-OCR's rec_image_shape). */
export const LINE_HEIGHT = 48;
/** Most pixels an image may have (decoding a bigger one is refused, not attempted). */
export const MAX_PIXELS = 25_000_000;

/** A PNG or JPEG as RGB (transparency over white); anything else throws, saying what it is. */
export function decodeImage(bytes: Uint8Array): Rgb {
  const png = bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47;
  const jpg = bytes[0] === 0xff && bytes[1] === 0xd8;
  if (!png && !jpg) throw new Error('not a PNG or JPEG image');
  // A PNG says its size up front (IHDR): a huge one is refused before it is inflated into memory.
  if (png && bytes.byteLength >= 24) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const [w, h] = [view.getUint32(16), view.getUint32(20)];
    if (w * h > MAX_PIXELS) throw new Error(`the image is ${w}×${h}: at most ${MAX_PIXELS / 1e6} megapixels`);
  }
  const image = png
    ? PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))
    : jpeg.decode(bytes, { useTArray: true, maxResolutionInMP: MAX_PIXELS / 1e6, maxMemoryUsageInMB: 512 });
  const { width, height } = image;
  if (width * height > MAX_PIXELS) throw new Error(`the image is ${width}×${height}: at most ${MAX_PIXELS / 1e6} megapixels`);
  const rgba = image.data;
  const data = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; i < width * height; i++, j += 4) {
    const a = rgba[j + 3] / 255;
    for (let c = 0; c < 3; c++) data[i * 3 + c] = Math.round(rgba[j + c] * a + 255 * (1 - a));
  }
  return { width, height, data };
}

/** The detector's input [1, 3, h, w] and the scale from its pixels back to the image's. */
export function detectorInput(image: Rgb): { input: Tensor; scale: number } {
  const scale = Math.min(1, DETECT_SIDE / Math.max(image.width, image.height));
  const h = Math.max(32, Math.ceil((image.height * scale) / 32) * 32);
  const w = Math.max(32, Math.ceil((image.width * scale) / 32) * 32);
  const mean = [0.485, 0.456, 0.406];
  const std = [0.229, 0.224, 0.225];
  const data = new Float32Array(3 * h * w);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const sy = Math.floor(y / scale);
      const sx = Math.floor(x / scale);
      const inside = sy < image.height && sx < image.width;
      for (let c = 0; c < 3; c++) {
        const v = inside ? image.data[(sy * image.width + sx) * 3 + c] / 255 : 1; // white beyond the image
        data[c * h * w + y * w + x] = (v - mean[c]) / std[c];
      }
    }
  return { input: { dtype: 'FP32', shape: [1, 3, h, w], data }, scale };
}

/**
 * Text boxes from the detector's probability map [1, 1, h, w] (DB's postprocess, axis-aligned): pixels over
 * `threshold` joined into regions, a region kept when its mean probability reaches `boxThreshold`, widened by
 * area × 1.5 / perimeter, in the image's pixels, top to bottom then left to right.
 */
export function textBoxes(map: Tensor, scale: number, image: Rgb, threshold = 0.3, boxThreshold = 0.6): Box[] {
  const [h, w] = map.shape.slice(-2);
  const p = map.data as Float32Array;
  const seen = new Uint8Array(h * w);
  const boxes: Box[] = [];
  const stack: number[] = [];
  for (let start = 0; start < h * w; start++) {
    if (seen[start] || p[start] <= threshold) continue;
    let [x0, y0, x1, y1, sum, count] = [w, h, -1, -1, 0, 0];
    seen[start] = 1;
    stack.push(start);
    while (stack.length) {
      const at = stack.pop() as number;
      const y = Math.floor(at / w);
      const x = at - y * w;
      [x0, y0, x1, y1] = [Math.min(x0, x), Math.min(y0, y), Math.max(x1, x), Math.max(y1, y)];
      sum += p[at];
      count++;
      for (const [nx, ny] of [
        [x - 1, y],
        [x + 1, y],
        [x, y - 1],
        [x, y + 1],
      ]) {
        const n = ny * w + nx;
        if (nx >= 0 && nx < w && ny >= 0 && ny < h && !seen[n] && p[n] > threshold) {
          seen[n] = 1;
          stack.push(n);
        }
      }
    }
    const bw = x1 - x0 + 1;
    const bh = y1 - y0 + 1;
    if (Math.min(bw, bh) < 3 || sum / count < boxThreshold) continue;
    const grow = (bw * bh * 1.5) / (2 * (bw + bh));
    const clamp = (v: number, max: number) => Math.min(max, Math.max(0, Math.round(v)));
    boxes.push({
      x0: clamp((x0 - grow) / scale, image.width - 1),
      y0: clamp((y0 - grow) / scale, image.height - 1),
      x1: clamp((x1 + 1 + grow) / scale - 1, image.width - 1),
      y1: clamp((y1 + 1 + grow) / scale - 1, image.height - 1),
      score: sum / count,
    });
  }
  // Reading order: rows (boxes whose tops are within half a line of each other), then left to right.
  return boxes.sort((a, b) => (Math.abs(a.y0 - b.y0) < (a.y1 - a.y0) / 2 ? a.x0 - b.x0 : a.y0 - b.y0));
}

/** A box of the image as the recogniser's input [1, 3, 48, w]: its height scaled to 48, normalised to [-1, 1]. */
export function lineInput(image: Rgb, box: Box, maxWidth = 3200): Tensor {
  const bw = box.x1 - box.x0 + 1;
  const bh = box.y1 - box.y0 + 1;
  const w = Math.min(maxWidth, Math.max(8, Math.round((bw * LINE_HEIGHT) / bh)));
  const data = new Float32Array(3 * LINE_HEIGHT * w);
  for (let y = 0; y < LINE_HEIGHT; y++)
    for (let x = 0; x < w; x++) {
      const sy = box.y0 + Math.min(bh - 1, Math.floor(((y + 0.5) * bh) / LINE_HEIGHT));
      const sx = box.x0 + Math.min(bw - 1, Math.floor(((x + 0.5) * bw) / w));
      for (let c = 0; c < 3; c++) data[c * LINE_HEIGHT * w + y * w + x] = image.data[(sy * image.width + sx) * 3 + c] / 127.5 - 1;
    }
  return { dtype: 'FP32', shape: [1, 3, LINE_HEIGHT, w], data };
}

/**
 * The recogniser's output [1, T, classes] as text: the likeliest class at each step, repeats merged and blanks
 * (class 0) dropped (greedy CTC); class i is the dictionary's line i - 1, the last class a space. Confidence:
 * the mean probability of the characters kept.
 */
export function ctcText(probs: Tensor, dictionary: readonly string[]): { text: string; confidence: number } {
  const [, steps, classes] = probs.shape;
  const p = probs.data as Float32Array;
  let text = '';
  let sum = 0;
  let kept = 0;
  let last = 0;
  for (let t = 0; t < steps; t++) {
    let best = 0;
    for (let k = 1; k < classes; k++) if (p[t * classes + k] > p[t * classes + best]) best = k;
    if (best !== 0 && best !== last) {
      text += best - 1 < dictionary.length ? dictionary[best - 1] : ' ';
      sum += p[t * classes + best];
      kept++;
    }
    last = best;
  }
  return { text, confidence: kept ? sum / kept : 0 };
}
