import { describe, expect, it } from 'vitest';
import { ctcText, detectorInput, textBoxes } from './ocr.js';

describe('ctcText (greedy CTC)', () => {
  it('merges repeats, drops blanks, maps class i to the dictionary line i - 1 and the last class to a space', () => {
    const dictionary = ['a', 'b'];
    // classes: 0 blank, 1 'a', 2 'b', 3 space; steps: a a blank a b space b
    const steps = [1, 1, 0, 1, 2, 3, 2];
    const data = new Float32Array(steps.length * 4);
    steps.forEach((k, t) => {
      data[t * 4 + k] = 0.9;
    });
    expect(ctcText({ dtype: 'FP32', shape: [1, steps.length, 4], data }, dictionary)).toEqual({ text: 'aab b', confidence: expect.closeTo(0.9, 5) });
  });
});

describe('textBoxes (DB postprocess)', () => {
  it('finds each region over the threshold, widens it, and lists them in reading order', () => {
    const [h, w] = [32, 64];
    const map = new Float32Array(h * w);
    const fill = (x0: number, y0: number, x1: number, y1: number, p: number) => {
      for (let y = y0; y <= y1; y++) for (let x = x0; x <= x1; x++) map[y * w + x] = p;
    };
    fill(40, 4, 60, 9, 0.9); // right, top row
    fill(2, 5, 30, 10, 0.95); // left, same row
    fill(2, 20, 20, 25, 0.8); // second row
    fill(30, 20, 40, 25, 0.4); // over 0.3 but its mean is under 0.6: not text
    const image = { width: 64, height: 32, data: new Uint8Array(64 * 32 * 3) };
    const boxes = textBoxes({ dtype: 'FP32', shape: [1, 1, h, w], data: map }, 1, image);
    // Widened by area × 1.5 / perimeter: the left one (29×6) by 3.7 px, the right (21×6) by 3.5, the lower (19×6) by 3.4.
    expect(boxes.map((b) => [b.x0, b.y0])).toEqual([
      [0, 1],
      [37, 1],
      [0, 17],
    ]);
    expect(boxes[0].x1).toBeGreaterThan(30); // widened
  });

  it('gives the detector sides in multiples of 32, the longest at most 960', () => {
    const image = { width: 2000, height: 100, data: new Uint8Array(2000 * 100 * 3) };
    const { input, scale } = detectorInput(image);
    expect(input.shape).toEqual([1, 3, 64, 960]);
    expect(scale).toBeCloseTo(0.48, 5);
  });
});
