import { badInput } from '../../errors/index.js';
import type { ModelSignature, TensorSpec } from '../../models/index.js';
import type { DType, Inputs } from '../../tensor/index.js';
import { bytesPerElement, elementCount, formatShape, isDType, viewBytes } from '../../tensor/index.js';
import { fromJsonData } from './json-data.js';

const utf8 = new TextDecoder();

/** A tensor's place in client shared memory (Triton's system shared-memory extension). */
export type SharedMemoryRef = { region: string; offset: number; byteSize: number };

export type InferRequest = {
  id?: string;
  inputs: Inputs;
  /** Inputs whose bytes are in client shared memory: read into `inputs` before the request is batched. */
  sharedInputs: (SharedMemoryRef & { name: string; dtype: DType; shape: number[] })[];
  /**
   * Outputs to return, in order, and whether each goes back as binary data or into shared memory, or as its
   * top classes (`classification`, Triton's extension).
   */
  outputs: { name: string; binary: boolean; shm?: SharedMemoryRef; classification?: number }[];
  /** The caller spoke the binary extension (the response may then use it too). */
  binary: boolean;
  /** Longest the request may wait for its batch, in ms (Triton's `timeout` parameter, given in µs). */
  timeoutMs?: number;
  /** The sequence it belongs to, for a stateful model (Triton's sequence_id, sequence_start, sequence_end parameters). */
  sequence?: { id: string; start: boolean; end: boolean };
};

type JsonTensor = { name?: unknown; shape?: unknown; datatype?: unknown; data?: unknown; parameters?: Record<string, unknown> };

/**
 * Parses a KServe v2 infer body (JSON, or JSON plus binary tensor data after
 * `Inference-Header-Content-Length` bytes) and checks it against the model's signature.
 * Every problem is a 400 that names the input and what was wrong.
 */
export function parseInferRequest(body: Uint8Array, headerLength: string | undefined, signature: ModelSignature): InferRequest {
  const { json, binary } = splitInferBody(body, headerLength);
  return inferRequestFromJson(json, binary, signature, headerLength !== undefined);
}

/** An infer body's JSON, and the binary tensor data after `Inference-Header-Content-Length` bytes (if given). */
export function splitInferBody(body: Uint8Array, headerLength: string | undefined): { json: unknown; binary: Uint8Array } {
  let jsonBytes = body;
  let binary: Uint8Array = new Uint8Array(0);
  if (headerLength !== undefined) {
    if (!/^\d+$/.test(headerLength)) throw badInput(`Inference-Header-Content-Length must be a byte count, got ${JSON.stringify(headerLength)}`);
    const n = Number(headerLength);
    if (n > body.byteLength) throw badInput(`Inference-Header-Content-Length is ${n} but the body has only ${body.byteLength} bytes`);
    jsonBytes = body.subarray(0, n);
    binary = body.subarray(n);
  }
  try {
    return { json: JSON.parse(utf8.decode(jsonBytes)), binary };
  } catch (err) {
    throw badInput(`malformed JSON: ${(err as Error).message}`);
  }
}

/**
 * Inputs the model gives one named dimension (`input_ids` and `attention_mask`: [batch, seq]) must agree on it: ONNX
 * Runtime fails a run that does not (a 500), and in a batch padded to one length the mismatch was hidden (a 200 of
 * other numbers) — which of the two depended on who else was queued.
 */
function checkNamedDims(signature: ModelSignature, shapes: Map<string, number[]>): void {
  const seen = new Map<string, { input: string; size: number }>();
  for (const spec of signature.inputs) {
    const shape = shapes.get(spec.name);
    if (!shape) continue;
    for (const [axis, dim] of spec.shape.entries()) {
      if (typeof dim !== 'string' || dim === '') continue;
      const first = seen.get(dim);
      if (!first) seen.set(dim, { input: spec.name, size: shape[axis] });
      else if (first.size !== shape[axis])
        throw badInput(`inputs disagree on dimension "${dim}": ${first.input} has ${first.size}, ${spec.name} has ${shape[axis]}`);
    }
  }
}

type InferJson = { id?: unknown; inputs?: unknown; outputs?: unknown; parameters?: Record<string, unknown> };

/** The same checks for a request that arrived as parsed JSON (a WebSocket message), with its binary section if any. */
export function inferRequestFromJson(body: unknown, binary: Uint8Array, signature: ModelSignature, binaryExtension = false): InferRequest {
  const json = body as InferJson;
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw badInput('the request body must be a JSON object');
  if (!Array.isArray(json.inputs) || json.inputs.length === 0) throw badInput('"inputs" must be a non-empty array');

  const specs = new Map(signature.inputs.map((s) => [s.name, s]));
  const inputs: Inputs = {};
  const sharedInputs: InferRequest['sharedInputs'] = [];
  const shapes = new Map<string, number[]>();
  let offset = 0;
  for (const raw of json.inputs as JsonTensor[]) {
    if (typeof raw !== 'object' || raw === null) throw badInput('each input must be an object');
    const { name, shape, datatype } = raw;
    if (typeof name !== 'string') throw badInput('each input needs a "name"');
    const spec = specs.get(name);
    if (!spec) throw badInput(`unknown input ${JSON.stringify(name)}; the model takes ${[...specs.keys()].join(', ')}`);
    if (shapes.has(name)) throw badInput(`input ${name} is given twice`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0))
      throw badInput(`input ${name}: "shape" must be an array of non-negative integers`);
    if (!isDType(datatype)) throw badInput(`input ${name}: unknown datatype ${JSON.stringify(datatype)}`);
    if (datatype !== spec.dtype) throw badInput(`input ${name}: datatype ${datatype} but the model takes ${spec.dtype}`);
    checkShape(name, shape, spec);
    shapes.set(name, shape);
    const count = elementCount(shape);
    const size = raw.parameters?.binary_data_size;
    const shm = sharedMemoryRef(raw.parameters, `input ${name}`);
    if (shm) {
      const want = count * bytesPerElement(datatype);
      if (size !== undefined) throw badInput(`input ${name}: give shared_memory_region or binary_data_size, not both`);
      if (shm.byteSize !== want)
        throw badInput(`input ${name}: shared_memory_byte_size is ${shm.byteSize} but ${datatype} ${formatShape(shape)} takes ${want} bytes`);
      sharedInputs.push({ ...shm, name, dtype: datatype, shape });
    } else if (size !== undefined) {
      const want = count * bytesPerElement(datatype);
      if (size !== want) throw badInput(`input ${name}: binary_data_size is ${JSON.stringify(size)} but ${datatype} ${formatShape(shape)} takes ${want} bytes`);
      if (offset + want > binary.byteLength) throw badInput(`input ${name}: binary data ends after ${binary.byteLength - offset} of its ${want} bytes`);
      inputs[name] = { dtype: datatype, shape, data: viewBytes(datatype, binary.subarray(offset, offset + want)) };
      offset += want;
    } else {
      inputs[name] = { dtype: datatype, shape, data: fromJsonData(name, datatype, raw.data, count, shape) };
    }
  }
  if (offset !== binary.byteLength) throw badInput(`the body has ${binary.byteLength - offset} bytes of binary data that no input claims`);
  const missing = signature.inputs.filter((s) => !shapes.has(s.name)).map((s) => s.name);
  if (missing.length) throw badInput(`missing input${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`);
  if (signature.batchAxis === 0) {
    const rows = new Set([...shapes.values()].map((shape) => shape[0]));
    if (rows.size > 1) throw badInput(`inputs disagree on the batch dimension: ${[...rows].join(' vs ')}`);
    if (rows.has(0)) throw badInput('the batch dimension must be at least 1');
  }
  checkNamedDims(signature, shapes);

  const binaryAll = json.parameters?.binary_data_output === true;
  const known = new Set(signature.outputs.map((o) => o.name));
  let outputs = signature.outputs.map((o) => ({ name: o.name, binary: binaryAll }));
  if (json.outputs !== undefined) {
    if (!Array.isArray(json.outputs)) throw badInput('"outputs" must be an array');
    outputs = (json.outputs as JsonTensor[]).map((o) => {
      if (typeof o?.name !== 'string' || !known.has(o.name))
        throw badInput(`unknown output ${JSON.stringify(o?.name)}; the model has ${[...known].join(', ')}`);
      const shm = sharedMemoryRef(o.parameters, `output ${o.name}`);
      const classification = o.parameters?.classification;
      if (classification !== undefined && !(Number.isInteger(classification) && (classification as number) >= 1))
        throw badInput(`output ${o.name}: classification is the number of top classes to return, a positive integer; got ${JSON.stringify(classification)}`);
      if (shm && classification !== undefined) throw badInput(`output ${o.name}: a classification result cannot go to shared memory`);
      if (shm) return { name: o.name, binary: false, shm };
      const binary = o.parameters?.binary_data === true || (binaryAll && o.parameters?.binary_data !== false);
      return { name: o.name, binary, ...(classification !== undefined && { classification: classification as number }) };
    });
  }
  const id = typeof json.id === 'string' ? json.id : undefined;
  // (a 64-bit timeout over gRPC arrives as its digits)
  const given = json.parameters?.timeout;
  const timeout = typeof given === 'string' && /^\d+$/.test(given) ? Number(given) : given;
  if (timeout !== undefined && !(Number.isInteger(timeout) && (timeout as number) >= 0))
    throw badInput(`parameters.timeout is the request's timeout in microseconds, a non-negative integer; got ${JSON.stringify(timeout)}`);
  // Triton's 0 is "no timeout of its own": the model's timeout_ms still applies.
  const timeoutMs = timeout ? (timeout as number) / 1000 : undefined;
  const sequence = sequenceOf(json.parameters);
  return { id, inputs, sharedInputs, outputs, binary: binaryExtension, ...(timeoutMs !== undefined && { timeoutMs }), ...(sequence && { sequence }) };
}

/** Triton's sequence parameters: a correlation id (a non-zero integer or a non-empty string) and the START / END flags. */
function sequenceOf(params: Record<string, unknown> | undefined): InferRequest['sequence'] {
  const { sequence_id: given, sequence_start: start = false, sequence_end: end = false } = params ?? {};
  // (0 and "" say "not part of a sequence", as Triton's sequence extension has them)
  const id = given === 0 || given === '' ? undefined : given;
  if (id === undefined) {
    if (start !== false || end !== false) throw badInput('sequence_start and sequence_end need a sequence_id');
    return undefined;
  }
  const valid = (typeof id === 'string' && id.length > 0 && id.length <= 256) || (Number.isSafeInteger(id) && (id as number) > 0);
  if (!valid) throw badInput(`parameters.sequence_id is a non-zero integer or a non-empty string (at most 256 characters); got ${JSON.stringify(id)}`);
  if (typeof start !== 'boolean' || typeof end !== 'boolean') throw badInput('parameters.sequence_start and sequence_end are booleans');
  return { id: String(id), start, end };
}

/** The shared-memory parameters of a tensor, if it has them: region and byte size both, offset optional. */
function sharedMemoryRef(params: Record<string, unknown> | undefined, what: string): SharedMemoryRef | undefined {
  const region = params?.shared_memory_region;
  const size = params?.shared_memory_byte_size;
  const offset = params?.shared_memory_offset ?? 0;
  if (region === undefined && size === undefined) return undefined;
  if (typeof region !== 'string') throw badInput(`${what}: shared_memory_region must name a registered region`);
  if (!Number.isSafeInteger(size) || (size as number) < 0) throw badInput(`${what}: shared_memory_byte_size must be a byte count`);
  if (!Number.isSafeInteger(offset) || (offset as number) < 0) throw badInput(`${what}: shared_memory_offset must be a byte offset`);
  return { region, offset: offset as number, byteSize: size as number };
}

function checkShape(name: string, shape: number[], spec: TensorSpec): void {
  const fits = shape.length === spec.shape.length && spec.shape.every((d, i) => typeof d !== 'number' || d === shape[i]);
  if (!fits) throw badInput(`input ${name}: shape ${formatShape(shape)} does not match the model's ${formatShape(spec.shape)}`);
}
