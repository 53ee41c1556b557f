import type { Tensor } from '../../tensor/index.js';
import { toJsonData } from './json-data.js';

/**
 * Triton's classification extension: instead of an output's values, the `k` largest along its last axis
 * (the classes) of every row, most likely first, as BYTES strings `value:index` — `value:index:label` where
 * the model has labels. Shape: the output's with its last axis cut to `k` (or to the classes, if fewer).
 */
export function classify(t: Tensor, k: number, labels?: readonly string[]): { shape: number[]; data: string[] } {
  const shape = t.shape.length === 0 ? [1] : t.shape;
  const classes = shape[shape.length - 1];
  const top = Math.min(k, classes);
  const values = toJsonData(t.dtype, t.data).map(Number);
  const data: string[] = [];
  for (let from = 0; from < values.length; from += classes) {
    const row = values.slice(from, from + classes);
    const order = row.map((_, i) => i).sort((a, b) => row[b] - row[a] || a - b);
    for (const i of order.slice(0, top)) data.push(`${row[i].toFixed(6)}:${i}${labels?.[i] ? `:${labels[i]}` : ''}`);
  }
  return { shape: [...shape.slice(0, -1), top], data };
}

/** BYTES elements in the binary tensor extension: each a 4-byte little-endian length, then its bytes. */
export function bytesElements(strings: string[]): Uint8Array {
  const encoded = strings.map((s) => Buffer.from(s));
  const out = Buffer.alloc(encoded.reduce((n, b) => n + 4 + b.byteLength, 0));
  let at = 0;
  for (const b of encoded) {
    out.writeUInt32LE(b.byteLength, at);
    out.set(b, at + 4);
    at += 4 + b.byteLength;
  }
  return out;
}
