import type { DType, Inputs, Tensor, TypedArray } from '../tensor/index.js';
import { allocate, elementCount, joinedOnRead, numberToFloat16 } from '../tensor/index.js';

/** `buckets`: a padded axis batches only within its power-of-two range (see `lengthBucket`); false: any lengths together. */
export type PadRule = { axes: number[]; value: number; buckets?: boolean };

/**
 * The key of requests that may share a batch: same inputs, dtypes and non-batch dims; along padded axes, the
 * same length bucket (or any length where buckets are off).
 */
export function groupKey(inputs: Inputs, pad: Record<string, PadRule>): string {
  return Object.keys(inputs)
    .sort()
    .map((name) => {
      const t = inputs[name];
      const rule = pad[name];
      const padded = (d: number) => (rule?.buckets === false ? '*' : `<=${lengthBucket(d)}`);
      return `${name}:${t.dtype}:${t.shape.map((d, axis) => (axis === 0 ? '' : rule?.axes.includes(axis) ? padded(d) : d)).join(',')}`;
    })
    .join('|');
}

/**
 * The power of two a padded length rounds up to (16 at least). Requests batch only within one bucket, so none is
 * padded to more than twice its length: a 10-token text batched with a 256-token one would cost 25 times its
 * compute (measured in bench:embeddings, four times fewer embeddings/s than no batching at all). Up to 16 are
 * one bucket: padding that little costs less than splitting batches.
 */
export function lengthBucket(length: number): number {
  return length <= 16 ? 16 : 2 ** Math.ceil(Math.log2(length));
}

/** Stacks the requests' inputs along axis 0, padding paddable axes up to the largest request. */
export function stackInputs(requests: Inputs[], pad: Record<string, PadRule>): Inputs {
  if (requests.length === 1) return requests[0];
  const batch: Inputs = {};
  for (const name of Object.keys(requests[0]))
    batch[name] = stack(
      requests.map((r) => r[name]),
      pad[name]?.value ?? 0,
    );
  return batch;
}

function stack(parts: Tensor[], padValue: number): Tensor {
  const { dtype } = parts[0];
  const inner = parts[0].shape.slice(1).map((_, i) => Math.max(...parts.map((p) => p.shape[i + 1])));
  const rows = parts.reduce((n, p) => n + p.shape[0], 0);
  if (parts.every((p) => p.shape.slice(1).every((d, i) => d === inner[i])))
    return joinedOnRead(
      dtype,
      [rows, ...inner],
      parts.map((p) => p.data),
    );
  const rowSize = elementCount(inner);
  const data = allocate(dtype, rows * rowSize);
  if (padValue !== 0) fill(data, dtype === 'FP16' ? numberToFloat16(padValue) : padValue);
  let row = 0;
  for (const p of parts) {
    const same = p.shape.slice(1).every((d, i) => d === inner[i]);
    if (same) data.set(p.data as never, row * rowSize);
    else copyPadded(p, inner, data, row * rowSize);
    row += p.shape[0];
  }
  return { dtype, shape: [rows, ...inner], data };
}

function fill(data: TypedArray, value: number): void {
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) data.fill(BigInt(value));
  else data.fill(value);
}

/** Copies src (shape [r, ...d]) into dst laid out as [r, ...target], d <= target, one innermost run at a time. */
function copyPadded(src: Tensor, target: number[], dst: TypedArray, dstOffset: number): void {
  const shape = src.shape;
  const dims = shape.length;
  // strides of src and dst in elements
  const srcStride = new Array<number>(dims).fill(1);
  const dstStride = new Array<number>(dims).fill(1);
  for (let i = dims - 2; i >= 0; i--) {
    srcStride[i] = srcStride[i + 1] * shape[i + 1];
    dstStride[i] = dstStride[i + 1] * (target[i] ?? 1);
  }
  const run = shape[dims - 1];
  const walk = (axis: number, s: number, d: number) => {
    if (axis === dims - 1) return dst.set((src.data as TypedArray).subarray(s, s + run) as never, d);
    for (let i = 0; i < shape[axis]; i++) walk(axis + 1, s + i * srcStride[axis], d + i * dstStride[axis]);
  };
  walk(0, 0, dstOffset);
}

/** The smallest of `sizes` (increasing) that holds `rows`, or `rows` itself past the largest. */
export function paddedSize(rows: number, sizes: readonly number[]): number {
  return sizes.find((s) => s >= rows) ?? rows;
}

/** The batch with zero rows appended up to `rows` (a part more, nothing copied). */
export function padRows(batch: Inputs, rows: number): Inputs {
  const padded: Inputs = {};
  for (const [name, t] of Object.entries(batch)) {
    const inner = t.shape.slice(1);
    const extra = (rows - t.shape[0]) * elementCount(inner);
    padded[name] = joinedOnRead(t.dtype, [rows, ...inner], [...(t.parts ?? [t.data]), zeros(t.dtype, extra)]);
  }
  return padded;
}

/** The first `rows` rows of each output, as views (a padded batch's own rows). */
export function firstRows(outputs: Inputs, rows: number): Inputs {
  const out: Inputs = {};
  for (const [name, t] of Object.entries(outputs)) {
    const rowSize = elementCount(t.shape.slice(1));
    out[name] = { dtype: t.dtype, shape: [rows, ...t.shape.slice(1)], data: t.data.subarray(0, rows * rowSize) };
  }
  return out;
}

/** Zeros are never written to, so one array per dtype serves every padded batch. */
const ZEROS = new Map<DType, TypedArray>();
function zeros(dtype: DType, length: number): TypedArray {
  let z = ZEROS.get(dtype);
  if (!z || z.length < length) {
    z = allocate(dtype, length);
    ZEROS.set(dtype, z);
  }
  return z.subarray(0, length);
}

/** Splits a batch's outputs back into one Inputs per request, by rows, in order; views, not copies. */
export function splitOutputs(outputs: Inputs, rows: number[]): Inputs[] {
  const total = rows.reduce((a, b) => a + b, 0);
  const parts: Inputs[] = rows.map(() => ({}));
  for (const [name, t] of Object.entries(outputs)) {
    if (t.shape[0] !== total) throw new Error(`output ${name} has ${t.shape[0]} rows for a batch of ${total}`);
    const rowSize = elementCount(t.shape.slice(1));
    let row = 0;
    rows.forEach((n, i) => {
      parts[i][name] = { dtype: t.dtype, shape: [n, ...t.shape.slice(1)], data: t.data.subarray(row * rowSize, (row + n) * rowSize) };
      row += n;
    });
  }
  return parts;
}
