import { readdirSync, statSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { badInput, notFound } from '../errors/index.js';
import { multiplexedPath } from './replica-spec.js';
import { type ModelSignature, readSignature } from './signature.js';

/**
 * A multiplexed model's models (Ray Serve's model multiplexing): files named by a path with `{model_id}`,
 * all taking and giving the same tensors. The gateway checks a request's model id here before it queues:
 * a bad id is a 400, a missing file a 404, a file of other tensors a 400 — not a replica's failed batch.
 */

/** The header a request names its model with (Ray Serve's). */
export const MODEL_ID_HEADER = 'serve_multiplexed_model_id';
const MODEL_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** The model ids whose files exist now, sorted (the first is where the model's tensors are read from). */
export function multiplexedIds(template: string): string[] {
  return templateIds(template, '{model_id}').filter((id) => MODEL_ID.test(id));
}

/**
 * The values of `placeholder` for which a file exists now, sorted: the placeholder may be part of the file's
 * name (models/tenants/{model_id}.onnx) or of one folder's (models/classifier/{version}/model.onnx).
 */
export function templateIds(template: string, placeholder: string): string[] {
  const at = template.indexOf(placeholder);
  const start = template.lastIndexOf('/', at) + 1;
  const end = template.indexOf('/', at);
  const [before, after] = template.slice(start, end < 0 ? undefined : end).split(placeholder);
  let entries: string[];
  try {
    entries = readdirSync(start > 0 ? template.slice(0, start) : '.');
  } catch {
    return [];
  }
  return entries
    .filter((e) => e.length > before.length + after.length && e.startsWith(before) && e.endsWith(after))
    .map((e) => e.slice(before.length, e.length - after.length))
    .filter((id) => isFile(template.replaceAll(placeholder, id)))
    .sort();
}

const isFile = (path: string) => {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
};

/** Its tensors as text, dynamic dimensions as -1 whatever their names. */
export const describeTensors = (s: ModelSignature) =>
  [...s.inputs, ...s.outputs].map((t) => `${t.name} ${t.dtype} [${t.shape.map((d) => (typeof d === 'number' ? d : -1)).join(', ')}]`).join(', ');

/** Checks model ids against the files, each file's tensors read once per change of the file (and the last 1024 remembered). */
export function multiplexChecker(model: string, template: string, signature: ModelSignature): (modelId: string | undefined) => Promise<string> {
  const expected = describeTensors(signature);
  const known = new Map<string, { mtimeMs: number; tensors: Promise<string> }>();
  return async (modelId) => {
    if (modelId === undefined)
      throw badInput(
        `model ${model} is multiplexed: name one of its models with the ${MODEL_ID_HEADER} header (a WebSocket message: model_id)`,
        MODEL_ID_HEADER,
        'model_id_missing',
      );
    if (!MODEL_ID.test(modelId))
      throw badInput(
        `${MODEL_ID_HEADER} must be 1-128 letters, digits, _ . - (starting with a letter or digit), got ${JSON.stringify(modelId)}`,
        MODEL_ID_HEADER,
      );
    const path = multiplexedPath(template, modelId);
    const found = await stat(path).catch(() => undefined);
    if (!found?.isFile()) throw notFound(`model ${model} has no model ${JSON.stringify(modelId)}`);
    let entry = known.get(modelId);
    if (entry?.mtimeMs !== found.mtimeMs) {
      entry = { mtimeMs: found.mtimeMs, tensors: readSignature(path).then(describeTensors) };
      entry.tensors.catch(() => {}); // (reported to the request that asked)
      if (known.size >= 1024) known.delete(known.keys().next().value as string);
      known.set(modelId, entry);
    }
    const tensors = await entry.tensors.catch((err: Error) => {
      throw badInput(`model ${model}'s model ${JSON.stringify(modelId)} is not a readable ONNX model: ${err.message}`, MODEL_ID_HEADER);
    });
    if (tensors !== expected)
      throw badInput(`model ${model}'s model ${JSON.stringify(modelId)} takes and gives ${tensors}, not the model's ${expected}`, MODEL_ID_HEADER);
    return modelId;
  };
}
