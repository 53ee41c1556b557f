import type { Inputs } from '../../tensor/index.js';
import { bytesOf } from '../../tensor/index.js';
import { bytesElements, classify } from './classification.js';
import { toJsonData } from './json-data.js';
import type { InferRequest } from './request.js';

export type EncodedResponse = { body: Uint8Array | string; headers: Record<string, string> };

/**
 * Renders outputs as KServe v2 JSON, with the binary tensor extension for outputs that asked for it and
 * Triton's classification extension (top classes as BYTES, named by `labels`) for those that asked for that.
 */
/** The model (and version) that answered, as responses name them. */
export type Answerer = { name: string; version: string };

export function encodeInferResponse(model: Answerer, request: InferRequest, outputs: Inputs, labels?: readonly string[]): EncodedResponse {
  const binaries: Uint8Array[] = [];
  const rendered = request.outputs.map(({ name, binary, shm, classification }) => {
    const t = outputs[name];
    if (classification) {
      const top = classify(t, classification, labels);
      if (!binary) return { name, datatype: 'BYTES', shape: top.shape, data: top.data };
      const bytes = bytesElements(top.data);
      binaries.push(bytes);
      return { name, datatype: 'BYTES', shape: top.shape, parameters: { binary_data_size: bytes.byteLength } };
    }
    const base = { name, datatype: t.dtype, shape: t.shape };
    // Already written into the caller's region by the route.
    if (shm) return { ...base, parameters: { shared_memory_region: shm.region, shared_memory_byte_size: t.data.byteLength } };
    if (!binary) return { ...base, data: toJsonData(t.dtype, t.data) };
    const bytes = bytesOf(t.data);
    binaries.push(bytes);
    return { ...base, parameters: { binary_data_size: bytes.byteLength } };
  });
  return inferBody(model, request.id, rendered, binaries);
}

/** An infer response: the JSON alone, or with the binary extension its JSON header then `binaries`, in output order. */
export function inferBody(model: Answerer, id: string | undefined, outputs: object[], binaries: Uint8Array[]): EncodedResponse {
  const json = JSON.stringify({ model_name: model.name, model_version: model.version, ...(id !== undefined && { id }), outputs });
  if (binaries.length === 0) return { body: json, headers: { 'content-type': 'application/json' } };
  const header = Buffer.from(json);
  return {
    body: Buffer.concat([header, ...binaries]),
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.byteLength) },
  };
}
