/**
 * KServe v2's gRPC messages as the HTTP requests and answers they stand for: ModelInfer's request as a binary-
 * extension body, its answer as raw_output_contents, InferParameters as plain values, HTTP statuses as gRPC codes.
 */
import * as grpc from '@grpc/grpc-js';
import { bytesElements } from '../kserve/classification.js';

type Parameter = { parameter_choice?: string; [choice: string]: unknown };
export type Parameters = Record<string, Parameter>;
type Contents = Record<string, unknown[] | undefined>;
type InputTensor = { name: string; datatype: string; shape: string[]; parameters: Parameters; contents?: Contents | null };
export type InferRequest = {
  model_name: string;
  model_version: string;
  id: string;
  parameters: Parameters;
  inputs: InputTensor[];
  outputs: { name: string; parameters: Parameters }[];
  raw_input_contents: Buffer[];
};
export type HeaderTensor = { name: string; datatype: string; shape: number[]; parameters?: Record<string, unknown>; data?: unknown[] };

/** Where each datatype's typed values live in InferTensorContents (FP16 and BF16: raw contents only). */
const CONTENTS: Record<string, string> = {
  BOOL: 'bool_contents',
  INT8: 'int_contents',
  INT16: 'int_contents',
  INT32: 'int_contents',
  INT64: 'int64_contents',
  UINT8: 'uint_contents',
  UINT16: 'uint_contents',
  UINT32: 'uint_contents',
  UINT64: 'uint64_contents',
  FP32: 'fp32_contents',
  FP64: 'fp64_contents',
  BYTES: 'bytes_contents',
};

/** HTTP statuses as gRPC codes (as Triton's and grpc-gateway's mappings have them). */
export function codeOf(status: number): grpc.status {
  if (status === 401) return grpc.status.UNAUTHENTICATED;
  if (status === 403) return grpc.status.PERMISSION_DENIED;
  if (status === 404) return grpc.status.NOT_FOUND;
  if (status === 409) return grpc.status.ALREADY_EXISTS;
  if (status === 413 || status === 429) return grpc.status.RESOURCE_EXHAUSTED;
  if (status === 499) return grpc.status.CANCELLED;
  if (status === 501) return grpc.status.UNIMPLEMENTED;
  if (status === 503) return grpc.status.UNAVAILABLE;
  if (status === 504) return grpc.status.DEADLINE_EXCEEDED;
  if (status >= 400 && status < 500) return grpc.status.INVALID_ARGUMENT;
  return grpc.status.INTERNAL;
}

export class CallError extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
  }
}

export const invalid = (message: string) => new CallError(grpc.status.INVALID_ARGUMENT, message);
export const jsonBody = (value: unknown) => ({ bytes: Buffer.from(JSON.stringify(value)), headers: { 'content-type': 'application/json' } });

/**
 * InferParameters as the JSON protocol's parameters: an int64 as a number — or, past 2^53, as its exact digits (a
 * 64-bit sequence_id rounded to a Number was refused, and two such ids could be one sequence).
 */
export function plainParameters(parameters: Parameters): Record<string, unknown> {
  const plain: Record<string, unknown> = {};
  for (const [key, p] of Object.entries(parameters ?? {})) {
    const value = p.parameter_choice ? p[p.parameter_choice] : undefined;
    const integer = p.parameter_choice === 'int64_param' || p.parameter_choice === 'uint64_param';
    plain[key] = integer && !Number.isSafeInteger(Number(value)) ? String(value) : integer ? Number(value) : value;
  }
  return plain;
}

function grpcParameters(plain: Record<string, unknown> | undefined): Record<string, object> {
  const parameters: Record<string, object> = {};
  for (const [key, value] of Object.entries(plain ?? {})) {
    if (key === 'binary_data_size') continue;
    if (typeof value === 'boolean') parameters[key] = { bool_param: value };
    else if (Number.isInteger(value)) parameters[key] = { int64_param: String(value) };
    else if (typeof value === 'number') parameters[key] = { double_param: value };
    else parameters[key] = { string_param: typeof value === 'string' ? value : JSON.stringify(value) };
  }
  return parameters;
}

/**
 * Each input's entry in raw_input_contents (undefined: in shared memory, or none are raw). As Triton and
 * tritonclient count them, inputs in shared memory have none: the entries are those of the others, in order.
 */
function rawOf(req: InferRequest): (i: number) => Buffer | undefined {
  const raw = req.raw_input_contents ?? [];
  if (raw.length === 0) return () => undefined;
  let count = 0;
  const at = req.inputs.map((t) => ('shared_memory_region' in (t.parameters ?? {}) ? -1 : count++));
  if (raw.length !== count)
    throw invalid(`raw_input_contents has ${raw.length} entries for ${count} inputs not in shared memory: give one per input, in order`);
  return (i) => (at[i] < 0 ? undefined : raw[at[i]]);
}

/** ModelInfer's request as the KServe binary-extension body: a JSON header, then each raw input's bytes. */
export function binaryRequest(req: InferRequest): { body: Uint8Array; headerLength: number } {
  const raw = req.raw_input_contents ?? [];
  const rawAt = rawOf(req);
  const inputs = req.inputs.map((t, i): HeaderTensor => {
    const tensor = { name: t.name, datatype: t.datatype, shape: t.shape.map(Number), parameters: plainParameters(t.parameters) };
    if ('shared_memory_region' in tensor.parameters) return tensor;
    const bytes = rawAt(i);
    if (bytes) {
      if (t.contents && Object.values(t.contents).some((v) => v?.length)) throw invalid(`input ${t.name}: give raw_input_contents or contents, not both`);
      return { ...tensor, parameters: { ...tensor.parameters, binary_data_size: bytes.byteLength } };
    }
    const field = CONTENTS[t.datatype];
    const values = field ? t.contents?.[field] : undefined;
    if (!values?.length)
      throw invalid(`input ${t.name} has no data: give raw_input_contents${field ? ` or contents.${field}` : ` (${t.datatype} has no typed contents)`}`);
    const data =
      t.datatype === 'BYTES'
        ? values.map((b) => Buffer.from(b as Buffer).toString('utf8'))
        : field.startsWith('int64') || field.startsWith('uint64')
          ? values.map(String) // (exact digits: JSON data takes 64-bit integers as strings; a Number rounds past 2^53)
          : values;
    return { ...tensor, data };
  });
  const header = {
    ...(req.id && { id: req.id }),
    parameters: { ...plainParameters(req.parameters), binary_data_output: true },
    inputs,
    ...(req.outputs?.length && {
      outputs: req.outputs.map((o) => ({ name: o.name, parameters: { ...plainParameters(o.parameters), binary_data: true } })),
    }),
  };
  const json = Buffer.from(JSON.stringify(header));
  return { body: new Uint8Array(Buffer.concat([json, ...raw])), headerLength: json.byteLength };
}

/** Whether a request asks to be streamed: a generative one's `stream` input true (raw or typed). */
export function streamed(req: InferRequest): boolean {
  const i = req.inputs.findIndex((t) => t.name === 'stream');
  if (i < 0 || req.inputs[i].datatype !== 'BOOL' || !req.inputs.some((t) => t.name === 'text_input')) return false;
  const raw = rawOf(req)(i);
  return raw?.length ? raw[0] !== 0 : req.inputs[i].contents?.bool_contents?.[0] === true;
}

/** The binary-extension answer as ModelInfer's response: each output's bytes in raw_output_contents. */
export function inferResponse(answer: Buffer, headerLength: number) {
  const header = JSON.parse(answer.subarray(0, headerLength).toString('utf8')) as {
    model_name: string;
    model_version?: string;
    id?: string;
    parameters?: Record<string, unknown>;
    outputs: HeaderTensor[];
  };
  let offset = headerLength;
  const raw: Buffer[] = [];
  // One entry per output, in order — an empty one for an output written to shared memory — as Triton answers and
  // tritonclient reads them by the output's index (an entry left out shifted every later output's bytes).
  const outputs = header.outputs.map((o) => {
    const size = o.parameters?.binary_data_size;
    raw.push(typeof size === 'number' ? answer.subarray(offset, offset + size) : Buffer.alloc(0));
    if (typeof size === 'number') offset += size;
    return { name: o.name, datatype: o.datatype, shape: o.shape.map(String), parameters: grpcParameters(o.parameters) };
  });
  return {
    model_name: header.model_name,
    model_version: header.model_version ?? '',
    id: header.id ?? '',
    parameters: grpcParameters(header.parameters),
    outputs,
    raw_output_contents: raw,
  };
}

/** A generate_stream event: a piece of text, and the additional outputs its request asked for. */
export type StreamEvent = {
  model_name: string;
  model_version: string;
  text_output?: string;
  finish_reason?: string;
  cumulative_logprob?: number;
  logprobs?: string;
  num_input_tokens?: number;
  num_output_tokens?: number;
  error?: string;
};

/** A generate_stream event as a ModelStreamInfer response: text_output, and the additional outputs it carries. */
export function streamResponse(event: StreamEvent, id: string) {
  const outputs = [{ name: 'text_output', datatype: 'BYTES', shape: ['1'] }];
  const raw = [bytesElements([event.text_output ?? ''])];
  const add = (name: string, datatype: string, bytes: Uint8Array) => {
    outputs.push({ name, datatype, shape: ['1'] });
    raw.push(bytes);
  };
  if (event.finish_reason !== undefined) add('finish_reason', 'BYTES', bytesElements([event.finish_reason]));
  if (event.cumulative_logprob !== undefined) add('cumulative_logprob', 'FP32', new Uint8Array(new Float32Array([event.cumulative_logprob]).buffer));
  if (event.logprobs !== undefined) add('logprobs', 'BYTES', bytesElements([event.logprobs]));
  for (const name of ['num_input_tokens', 'num_output_tokens'] as const) {
    const count = event[name];
    if (count !== undefined) add(name, 'UINT32', new Uint8Array(new Uint32Array([count]).buffer));
  }
  return { model_name: event.model_name, model_version: event.model_version, id, outputs, raw_output_contents: raw };
}
