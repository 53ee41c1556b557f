import { badInput } from '../../errors/index.js';
import type { DType, TypedArray } from '../../tensor/index.js';
import { allocate, float16ToNumber, numberToFloat16 } from '../../tensor/index.js';

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

const INT_RANGE: Partial<Record<DType, [number, number]>> = {
  INT8: [-128, 127],
  INT16: [-32768, 32767],
  INT32: [-2147483648, 2147483647],
  UINT8: [0, 255],
  UINT16: [0, 65535],
  UINT32: [0, 4294967295],
};

/**
 * KServe JSON `data` (row-major, flat or nested as `shape` says) into a typed array, checking every value against the
 * dtype: a float it cannot hold (past FP16's or FP32's range: it would become Infinity) is refused as an integer is.
 */
export function fromJsonData(name: string, dtype: DType, data: unknown, expected: number, shape?: readonly number[]): TypedArray {
  if (!Array.isArray(data)) throw badInput(`input ${name}: "data" must be an array`);
  if (shape && !nestedAs(data, shape))
    throw badInput(`input ${name}: "data" is nested otherwise than its shape [${shape.join(', ')}] (send it flat, or nested as the shape)`);
  const flat = (data as unknown[]).flat(Number.POSITIVE_INFINITY);
  if (flat.length !== expected) throw badInput(`input ${name}: shape holds ${expected} elements but "data" has ${flat.length}`);
  const out = allocate(dtype, expected);
  const bad = (i: number, want: string) => badInput(`input ${name}: data[${i}] = ${JSON.stringify(flat[i])} is not ${want}`);
  if (dtype === 'BOOL') {
    for (let i = 0; i < expected; i++) {
      const v = flat[i];
      if (typeof v !== 'boolean' && v !== 0 && v !== 1) throw bad(i, 'a boolean');
      out[i] = v ? 1 : 0;
    }
  } else if (dtype === 'INT64' || dtype === 'UINT64') {
    const signed = dtype === 'INT64';
    for (let i = 0; i < expected; i++) {
      const v = flat[i];
      // Strings are accepted so values past 2^53 survive JSON.
      if (!(typeof v === 'number' && Number.isInteger(v)) && !(typeof v === 'string' && /^-?\d+$/.test(v))) throw bad(i, 'an integer');
      const big = BigInt(v as number | string);
      if (signed ? big < -(2n ** 63n) || big >= 2n ** 63n : big < 0n || big >= 2n ** 64n) throw bad(i, `within ${dtype}`);
      out[i] = big;
    }
  } else if (dtype === 'FP16' || dtype === 'FP32' || dtype === 'FP64') {
    for (let i = 0; i < expected; i++) {
      const v = flat[i];
      if (typeof v !== 'number') throw bad(i, 'a number');
      const held = dtype === 'FP16' ? float16ToNumber(numberToFloat16(v)) : dtype === 'FP32' ? Math.fround(v) : v;
      if (!Number.isFinite(held)) throw bad(i, `within ${dtype}'s range`);
      out[i] = dtype === 'FP16' ? numberToFloat16(v) : v;
    }
  } else {
    const [lo, hi] = INT_RANGE[dtype] as [number, number];
    for (let i = 0; i < expected; i++) {
      const v = flat[i];
      if (typeof v !== 'number' || !Number.isInteger(v)) throw bad(i, 'an integer');
      if (v < lo || v > hi) throw bad(i, `within ${dtype} (${lo}..${hi})`);
      out[i] = v;
    }
  }
  return out;
}

/** Whether nested `data` follows `shape` exactly (flat data is read row-major as it is). */
function nestedAs(data: unknown[], shape: readonly number[]): boolean {
  if (!data.some(Array.isArray)) return true;
  const follows = (d: unknown, axis: number): boolean =>
    axis === shape.length ? !Array.isArray(d) : Array.isArray(d) && d.length === shape[axis] && d.every((x) => follows(x, axis + 1));
  return follows(data, 0);
}

/**
 * A typed array as JSON values: FP16 decoded, BOOL as true/false, INT64/UINT64 as numbers — those past 2^53 as strings
 * of their exact digits (a JSON number that large is rounded by most parsers; inputs take the same strings).
 */
export function toJsonData(dtype: DType, data: TypedArray): (number | boolean | string)[] {
  if (dtype === 'BOOL') return Array.from(data as Uint8Array, (v) => v !== 0);
  if (dtype === 'FP16') return Array.from(data as Uint16Array, float16ToNumber);
  if (data instanceof BigInt64Array || data instanceof BigUint64Array)
    return Array.from(data as BigInt64Array, (v) => (v > MAX_SAFE || v < -MAX_SAFE ? v.toString() : Number(v)));
  return Array.from(data as Float32Array);
}
