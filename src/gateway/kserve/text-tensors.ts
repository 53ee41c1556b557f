import { badInput } from '../../errors/index.js';
import { bytesPerElement, elementCount, formatShape, isDType, viewBytes } from '../../tensor/index.js';
import { fromJsonData } from './json-data.js';

// A generative model's KServe v2 tensors, as Triton's vLLM backend declares them: `text_input` in, `text_output`
// out, optional flags and a `sampling_parameters` JSON string — and the TensorRT-LLM ensemble's scalar settings.
// So tritonclient, perf_analyzer and genai-perf (`--service-kind triton`) call a generative model with infer
// requests, over HTTP or gRPC, as they call Triton's; the tokens come from the same continuous batching
// (generate.ts's inferText). Parsing only here: an intake thread's gRPC server reads these too.

type InputSpec = { datatype: string; dims: number[]; takes: readonly string[]; optional: boolean };
const INTEGERS = ['INT32', 'INT64', 'UINT32', 'UINT64', 'INT8', 'INT16', 'UINT8', 'UINT16'];
const one = (datatype: string, takes: readonly string[] = [datatype]): InputSpec => ({ datatype, dims: [1], takes, optional: true });
const flag = one('BOOL');
const integer = (datatype = 'INT32') => one(datatype, INTEGERS);
const number = one('FP32', ['FP32', 'FP64', ...INTEGERS]);

const INPUTS: Record<string, InputSpec> = {
  text_input: { ...one('BYTES'), optional: false },
  stream: flag,
  sampling_parameters: one('BYTES'),
  exclude_input_in_output: flag,
  return_finish_reason: flag,
  return_cumulative_logprob: flag,
  return_logprobs: flag,
  return_num_input_tokens: flag,
  return_num_output_tokens: flag,
  // The TensorRT-LLM ensemble's inputs (the generate extension takes the same names)
  max_tokens: integer(),
  min_length: integer(),
  temperature: number,
  top_p: number,
  top_k: integer(),
  random_seed: integer('UINT64'),
  frequency_penalty: number,
  presence_penalty: number,
  ignore_eos: flag,
  stop_words: { ...one('BYTES'), dims: [-1] },
};

/** The outputs, and the flag that asks for each when the request names none (text_output always). */
export const OUTPUTS = {
  text_output: { datatype: 'BYTES', dims: [-1], flag: undefined },
  finish_reason: { datatype: 'BYTES', dims: [-1], flag: 'return_finish_reason' },
  cumulative_logprob: { datatype: 'FP32', dims: [-1], flag: 'return_cumulative_logprob' },
  /** A JSON string: per generated token, {token id: {logprob, rank, decoded_token}} for it and the `logprobs` most likely. */
  logprobs: { datatype: 'BYTES', dims: [-1], flag: 'return_logprobs' },
  num_input_tokens: { datatype: 'UINT32', dims: [1], flag: 'return_num_input_tokens' },
  num_output_tokens: { datatype: 'UINT32', dims: [1], flag: 'return_num_output_tokens' },
} as const;
export type OutputName = keyof typeof OUTPUTS;

/** Inputs that are not the generate extension's fields: the prompt, and how to call it. */
const NOT_SETTINGS = new Set<string>(['text_input', 'stream', 'sampling_parameters']);

/** The tensors, as Triton's metadata and configuration list them (no batch axis: max_batch_size 0, as vLLM's). */
export const textInterface = {
  inputs: Object.entries(INPUTS).map(([name, t]) => ({ name, datatype: t.datatype, dims: t.dims, optional: t.optional })),
  outputs: Object.entries(OUTPUTS).map(([name, t]) => ({ name, datatype: t.datatype, dims: t.dims })),
};

export type TextRequest = {
  id?: string;
  /** The generate extension's fields: `text_input`, settings, `parameters` (the request's, sampling_parameters spread in). */
  fields: Record<string, unknown>;
  stream: boolean;
  /** Outputs to answer, in order, each as binary data or JSON. */
  outputs: { name: OutputName; binary: boolean }[];
  /** text_input's shape, which text_output answers in ([1] as vLLM's, [1, 1] as TensorRT-LLM's ensemble). */
  shape: number[];
};

type JsonTensor = { name?: unknown; shape?: unknown; datatype?: unknown; data?: unknown; parameters?: Record<string, unknown> };
type InferJson = { id?: unknown; inputs?: unknown; outputs?: unknown; parameters?: Record<string, unknown> };

/** An infer request (JSON, and the binary tensor data after its header) for a generative model; every problem a 400. */
export function parseTextRequest(body: unknown, binary: Uint8Array): TextRequest {
  const json = body as InferJson;
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw badInput('the request body must be a JSON object');
  if (!Array.isArray(json.inputs) || json.inputs.length === 0) throw badInput('"inputs" must be a non-empty array');
  const values = new Map<string, unknown[]>();
  let shape: number[] = [1];
  let offset = 0;
  for (const raw of json.inputs as JsonTensor[]) {
    if (typeof raw !== 'object' || raw === null) throw badInput('each input must be an object');
    const { name, datatype } = raw;
    if (typeof name !== 'string') throw badInput('each input needs a "name"');
    if (!Object.hasOwn(INPUTS, name)) throw badInput(`unknown input ${JSON.stringify(name)}; a generative model takes ${Object.keys(INPUTS).join(', ')}`);
    const spec = INPUTS[name];
    if (values.has(name)) throw badInput(`input ${name} is given twice`);
    if (datatype === undefined) throw badInput(`input ${name}: "datatype" is required (${spec.datatype})`);
    if (typeof datatype !== 'string' || !spec.takes.includes(datatype))
      throw badInput(
        `input ${name}: datatype ${JSON.stringify(datatype)}, but it takes ${spec.takes.length > 1 ? `${spec.datatype} (or ${spec.takes.slice(1).join(', ')})` : spec.datatype}`,
      );
    if (!Array.isArray(raw.shape) || !raw.shape.every((d) => Number.isInteger(d) && d >= 0))
      throw badInput(`input ${name}: "shape" must be an array of non-negative integers`);
    const count = elementCount(raw.shape);
    if (spec.dims[0] === 1 && count !== 1)
      throw badInput(
        `input ${name}: one element (shape [1]), not ${formatShape(raw.shape)}; send one prompt a request (concurrent requests are batched together)`,
      );
    if (raw.parameters?.shared_memory_region !== undefined)
      throw badInput(`input ${name}: a generative model's inputs come in the request, not in shared memory`);
    const size = raw.parameters?.binary_data_size;
    if (size === undefined) values.set(name, jsonValues(name, datatype, raw.data, count));
    else {
      if (!Number.isSafeInteger(size) || (size as number) < 0)
        throw badInput(`input ${name}: binary_data_size must be a byte count, got ${JSON.stringify(size)}`);
      if (offset + (size as number) > binary.byteLength)
        throw badInput(`input ${name}: binary_data_size ${JSON.stringify(size)} is past the ${binary.byteLength - offset} bytes of binary data left`);
      values.set(name, binaryValues(name, datatype, binary.subarray(offset, offset + (size as number)), count));
      offset += size as number;
    }
    if (name === 'text_input') shape = raw.shape;
  }
  if (offset !== binary.byteLength) throw badInput(`the body has ${binary.byteLength - offset} bytes of binary data that no input claims`);
  const text = values.get('text_input')?.[0];
  if (text === undefined) throw badInput('missing input text_input (BYTES: the prompt)');

  const first = (name: string) => values.get(name)?.[0];
  const parameters: Record<string, unknown> = { ...(json.parameters ?? {}) };
  const sampling = first('sampling_parameters');
  if (sampling !== undefined) {
    const parsed = (() => {
      try {
        return JSON.parse(sampling as string);
      } catch {
        return undefined;
      }
    })();
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      throw badInput('input sampling_parameters: a JSON object as a string, e.g. {"max_tokens": 64, "temperature": 0}', 'sampling_parameters');
    Object.assign(parameters, parsed);
  }
  const fields: Record<string, unknown> = { text_input: text, parameters };
  for (const [name, v] of values) if (!NOT_SETTINGS.has(name)) fields[name] = name === 'stop_words' ? v : v[0];
  const stream = first('stream') === true;
  // As Triton's vLLM backend: a stream carries the new text only, unless asked otherwise.
  if (stream && fields.exclude_input_in_output === undefined && parameters.exclude_input_in_output === undefined) fields.exclude_input_in_output = true;

  const binaryAll = json.parameters?.binary_data_output === true;
  let outputs = (Object.keys(OUTPUTS) as OutputName[])
    .filter((name) => name === 'text_output' || first(OUTPUTS[name].flag as string) === true)
    .map((name) => ({ name, binary: binaryAll }));
  if (json.outputs !== undefined) {
    if (!Array.isArray(json.outputs)) throw badInput('"outputs" must be an array');
    outputs = (json.outputs as JsonTensor[]).map((o) => {
      if (typeof o?.name !== 'string' || !Object.hasOwn(OUTPUTS, o.name))
        throw badInput(`unknown output ${JSON.stringify(o?.name)}; a generative model answers ${Object.keys(OUTPUTS).join(', ')}`);
      if (o.parameters?.shared_memory_region !== undefined)
        throw badInput(`output ${o.name}: a generative model answers in the response, not in shared memory`);
      return { name: o.name as OutputName, binary: o.parameters?.binary_data === true || (binaryAll && o.parameters?.binary_data !== false) };
    });
  }
  // An output named in `outputs` is computed as if its flag were set (its flag is how the generation is asked).
  for (const { name } of outputs) if (OUTPUTS[name].flag) fields[OUTPUTS[name].flag as string] = true;
  return { ...(typeof json.id === 'string' && { id: json.id }), fields, stream, outputs, shape };
}

/** KServe JSON `data`: strings for BYTES, else checked against the datatype as a tensor's. */
function jsonValues(name: string, datatype: string, data: unknown, count: number): unknown[] {
  if (datatype !== 'BYTES') return plain(datatype, fromJsonData(name, datatype as never, data, count));
  if (!Array.isArray(data)) throw badInput(`input ${name}: "data" must be an array`);
  const flat = data.flat(Number.POSITIVE_INFINITY);
  if (flat.length !== count) throw badInput(`input ${name}: shape holds ${count} elements but "data" has ${flat.length}`);
  const i = flat.findIndex((v) => typeof v !== 'string');
  if (i >= 0) throw badInput(`input ${name}: data[${i}] = ${JSON.stringify(flat[i])} is not a string`);
  return flat;
}

/** Binary tensor data: BYTES elements (a 4-byte little-endian length, then the bytes), else the datatype's. */
function binaryValues(name: string, datatype: string, bytes: Uint8Array, count: number): unknown[] {
  if (datatype === 'BYTES') {
    const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const strings: string[] = [];
    for (let at = 0; at < view.byteLength; ) {
      const length = at + 4 <= view.byteLength ? view.readUInt32LE(at) : Number.NaN;
      if (!(at + 4 + length <= view.byteLength)) throw badInput(`input ${name}: a BYTES element is a 4-byte little-endian length, then that many bytes`);
      strings.push(view.toString('utf8', at + 4, at + 4 + length));
      at += 4 + length;
    }
    if (strings.length !== count) throw badInput(`input ${name}: shape holds ${count} elements but its binary data has ${strings.length}`);
    return strings;
  }
  if (!isDType(datatype) || bytes.byteLength !== count * bytesPerElement(datatype))
    throw badInput(
      `input ${name}: binary_data_size is ${bytes.byteLength} but ${datatype} of ${count} element(s) takes ${count * bytesPerElement(datatype as never)} bytes`,
    );
  return plain(datatype, viewBytes(datatype, bytes));
}

const plain = (datatype: string, data: ArrayLike<number | bigint>): unknown[] =>
  Array.from(data as ArrayLike<number>, (v) => (datatype === 'BOOL' ? v !== 0 : Number(v)));
