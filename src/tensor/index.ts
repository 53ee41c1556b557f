/**
 * Tensors as they travel past the edge: a dtype, a shape and the raw little-endian bytes in a typed
 * array. Never JSON number arrays. The dtype names are KServe v2's, the wire names users see.
 */
export type DType = 'FP32' | 'FP64' | 'FP16' | 'INT8' | 'INT16' | 'INT32' | 'INT64' | 'UINT8' | 'UINT16' | 'UINT32' | 'UINT64' | 'BOOL';

export type TypedArray =
  | Float32Array
  | Float64Array
  | Int8Array
  | Int16Array
  | Int32Array
  | BigInt64Array
  | Uint8Array
  | Uint16Array
  | Uint32Array
  | BigUint64Array;

/** `parts`, when present, are the same bytes as `data` in pieces: a batch stacked lazily (see `joinedOnRead`). */
export type Tensor = { dtype: DType; shape: number[]; data: TypedArray; parts?: readonly TypedArray[] };
export type Inputs = Record<string, Tensor>;

type ArrayCtor = {
  new (length: number): TypedArray;
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): TypedArray;
  BYTES_PER_ELEMENT: number;
};

/** FP16 travels as its raw bits in a Uint16Array (Node 20 has no Float16Array); BOOL as one byte each. */
const ARRAYS: Record<DType, ArrayCtor> = {
  FP32: Float32Array,
  FP64: Float64Array,
  FP16: Uint16Array,
  INT8: Int8Array,
  INT16: Int16Array,
  INT32: Int32Array,
  INT64: BigInt64Array,
  UINT8: Uint8Array,
  UINT16: Uint16Array,
  UINT32: Uint32Array,
  UINT64: BigUint64Array,
  BOOL: Uint8Array,
} as unknown as Record<DType, ArrayCtor>;

export function isDType(value: unknown): value is DType {
  return typeof value === 'string' && Object.hasOwn(ARRAYS, value);
}

export function bytesPerElement(dtype: DType): number {
  return ARRAYS[dtype].BYTES_PER_ELEMENT;
}

export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function allocate(dtype: DType, length: number): TypedArray {
  return new ARRAYS[dtype](length);
}

/**
 * A tensor made of parts laid back to back (requests stacked along axis 0), joined into one array only
 * when something reads `data`. The replica protocol writes the parts straight to the socket or shared
 * memory, so a batch is copied once on its way to the replica instead of twice.
 */
export function joinedOnRead(dtype: DType, shape: number[], parts: readonly TypedArray[]): Tensor {
  let joined: TypedArray | undefined;
  return {
    dtype,
    shape,
    parts,
    get data() {
      if (!joined) {
        joined = allocate(
          dtype,
          parts.reduce((n, p) => n + p.length, 0),
        );
        let at = 0;
        for (const p of parts) {
          joined.set(p as never, at);
          at += p.length;
        }
      }
      return joined;
    },
  };
}

/**
 * A typed-array view over bytes that arrived from a socket or a request body. The bytes are copied
 * only when they are not aligned for the element size (a Float32Array needs a multiple-of-4 offset).
 */
export function viewBytes(dtype: DType, bytes: Uint8Array): TypedArray {
  const Ctor = ARRAYS[dtype];
  const size = Ctor.BYTES_PER_ELEMENT;
  if (bytes.byteLength % size !== 0) throw new RangeError(`${bytes.byteLength} bytes is not a whole number of ${dtype} elements`);
  if (bytes.byteOffset % size === 0) return new Ctor(bytes.buffer, bytes.byteOffset, bytes.byteLength / size);
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return new Ctor(copy.buffer, 0, bytes.byteLength / size);
}

export function bytesOf(data: TypedArray): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

export function formatShape(shape: readonly (number | string)[]): string {
  return `[${shape.join(', ')}]`;
}

export { float16ToNumber, numberToFloat16 } from './float16.js';
