import { readFile } from 'node:fs/promises';
import type { DType } from '../tensor/index.js';

/** A dimension is a size, or the name of a dynamic one (`N`, `batch`, `?` when unnamed). */
export type Dim = number | string;
export type TensorSpec = { name: string; dtype: DType; shape: Dim[] };
export type ModelSignature = {
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  /** 0 when every input and output starts with a dynamic dimension the batcher may stack along; else null. */
  batchAxis: 0 | null;
  /** The model's metadata_props (key/value strings its exporter wrote). */
  metadata: Record<string, string>;
};

// ONNX TensorProto.DataType numbers -> KServe names. Strings, complex and bfloat16 are not served.
const ELEM_TYPES: Record<number, DType> = {
  1: 'FP32',
  2: 'UINT8',
  3: 'INT8',
  4: 'UINT16',
  5: 'INT16',
  6: 'INT32',
  7: 'INT64',
  9: 'BOOL',
  10: 'FP16',
  11: 'FP64',
  12: 'UINT32',
  13: 'UINT64',
};

/**
 * Reads a model's inputs and outputs straight from the .onnx protobuf, without ONNX Runtime, so the
 * gateway knows every model's signature before (or without) starting a replica.
 */
export async function readSignature(path: string): Promise<ModelSignature> {
  return parseSignature(await readFile(path));
}

export function parseSignature(bytes: Uint8Array): ModelSignature {
  let graph: Uint8Array | undefined;
  const metadata: Record<string, string> = {};
  for (const f of fields(bytes)) {
    if (f.no === 7 && f.bytes) graph = f.bytes; // ModelProto.graph
    if (f.no === 14 && f.bytes) {
      // ModelProto.metadata_props: StringStringEntryProto { key = 1, value = 2 }
      const entry: string[] = [];
      for (const e of fields(f.bytes)) if (e.bytes) entry[e.no] = utf8(e.bytes);
      if (entry[1]) metadata[entry[1]] = entry[2] ?? '';
    }
  }
  if (!graph) throw new Error('not an ONNX model: no graph');
  const initializers = new Set<string>();
  const inputs: TensorSpec[] = [];
  const outputs: TensorSpec[] = [];
  for (const f of fields(graph)) {
    if (!f.bytes) continue;
    if (f.no === 5)
      initializers.add(nameOfTensor(f.bytes)); // GraphProto.initializer
    else if (f.no === 11)
      inputs.push(valueInfo(f.bytes)); // GraphProto.input
    else if (f.no === 12) outputs.push(valueInfo(f.bytes)); // GraphProto.output
  }
  // Models exported with IR < 4 list their weights as graph inputs too; those are not user inputs.
  const userInputs = inputs.filter((i) => !initializers.has(i.name));
  const dynamicFirst = (t: TensorSpec) => t.shape.length > 0 && typeof t.shape[0] === 'string';
  const batchable = userInputs.length > 0 && userInputs.every(dynamicFirst) && outputs.every(dynamicFirst);
  return { inputs: userInputs, outputs, batchAxis: batchable ? 0 : null, metadata };
}

function nameOfTensor(bytes: Uint8Array): string {
  for (const f of fields(bytes)) if (f.no === 8 && f.bytes) return utf8(f.bytes); // TensorProto.name
  return '';
}

function valueInfo(bytes: Uint8Array): TensorSpec {
  let name = '';
  let type: Uint8Array | undefined;
  for (const f of fields(bytes)) {
    if (f.no === 1 && f.bytes) name = utf8(f.bytes);
    else if (f.no === 2 && f.bytes) type = f.bytes;
  }
  let tensorType: Uint8Array | undefined;
  for (const f of fields(type ?? new Uint8Array())) if (f.no === 1 && f.bytes) tensorType = f.bytes; // TypeProto.tensor_type
  if (!tensorType) throw new Error(`${name}: only tensor inputs and outputs are supported`);
  let elemType = 0;
  const shape: Dim[] = [];
  for (const f of fields(tensorType)) {
    if (f.no === 1) elemType = f.value;
    else if (f.no === 2 && f.bytes) for (const d of fields(f.bytes)) if (d.no === 1 && d.bytes) shape.push(dim(d.bytes));
  }
  const dtype = ELEM_TYPES[elemType];
  if (!dtype) throw new Error(`${name}: ONNX element type ${elemType} is not supported`);
  return { name, dtype, shape };
}

function dim(bytes: Uint8Array): Dim {
  for (const f of fields(bytes)) {
    if (f.no === 1 && f.bytes === undefined) return f.value; // dim_value
    if (f.no === 2 && f.bytes) return utf8(f.bytes) || '?'; // dim_param
  }
  return '?';
}

type Field = { no: number; value: number; bytes?: Uint8Array };

/** The top-level fields of one protobuf message: varints as numbers, length-delimited ones as bytes. */
function* fields(buf: Uint8Array): Generator<Field> {
  let pos = 0;
  const varint = () => {
    let result = 0;
    let scale = 1;
    for (;;) {
      if (pos >= buf.length) throw new Error('truncated ONNX protobuf');
      const b = buf[pos++];
      result += (b & 0x7f) * scale;
      if (b < 0x80) return result;
      scale *= 128;
    }
  };
  while (pos < buf.length) {
    const key = varint();
    const no = Math.floor(key / 8);
    const wire = key & 7;
    if (wire === 0) yield { no, value: varint() };
    else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      const len = varint();
      if (pos + len > buf.length) throw new Error('truncated ONNX protobuf');
      yield { no, value: len, bytes: buf.subarray(pos, pos + len) };
      pos += len;
    } else throw new Error(`unsupported protobuf wire type ${wire}`);
  }
}

const decoder = new TextDecoder();
const utf8 = (b: Uint8Array) => decoder.decode(b);
