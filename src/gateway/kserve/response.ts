import type { Inputs } from '../../tensor/index.js';
import { bytesOf } from '../../tensor/index.js';
import { toJsonData } from './json-data.js';
import type { InferRequest } from './request.js';

export type EncodedResponse = { body: Uint8Array | string; headers: Record<string, string> };

/** Renders outputs as KServe v2 JSON, with the binary tensor extension for outputs that asked for it. */
export function encodeInferResponse(model: string, request: InferRequest, outputs: Inputs): EncodedResponse {
  const binaries: Uint8Array[] = [];
  const rendered = request.outputs.map(({ name, binary, shm }) => {
    const t = outputs[name];
    const base = { name, datatype: t.dtype, shape: t.shape };
    // Already written into the caller's region by the route.
    if (shm) return { ...base, parameters: { shared_memory_region: shm.region, shared_memory_byte_size: t.data.byteLength } };
    if (!binary) return { ...base, data: toJsonData(t.dtype, t.data) };
    const bytes = bytesOf(t.data);
    binaries.push(bytes);
    return { ...base, parameters: { binary_data_size: bytes.byteLength } };
  });
  const json = JSON.stringify({ model_name: model, model_version: '1', ...(request.id !== undefined && { id: request.id }), outputs: rendered });
  if (binaries.length === 0) return { body: json, headers: { 'content-type': 'application/json' } };
  const header = Buffer.from(json);
  return {
    body: Buffer.concat([header, ...binaries]),
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.byteLength) },
  };
}
