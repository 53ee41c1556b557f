import type { Context } from 'hono';
import { badInput } from '../../errors/index.js';
import { MODEL_ID_HEADER } from '../../models/index.js';
import { elementCount, type Tensor } from '../../tensor/index.js';
import { clientSignal, readJson } from '../body.js';
import type { GatewayEnv, ServedModel } from '../types.js';
import { toJsonData } from './json-data.js';
import { inferRequestFromJson } from './request.js';
import { submitInfer } from './submit.js';

// KServe's v1 protocol (TensorFlow Serving's row format), which KServe users still send:
// POST /v1/models/{m}:predict with {"instances": [...]} → {"predictions": [...]}. An instance is one row —
// a nested array for a model with one input, an object of input name → nested array otherwise — and a
// prediction is one row of the output (an object of output name → row, for several). The rows are put
// together as a v2 request and checked by the same rules, then batched like any other.

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The shape of a nested array (a scalar: []), or undefined when ragged. */
function shapeOf(value: unknown): number[] | undefined {
  if (!Array.isArray(value)) return [];
  const inner = value.map(shapeOf);
  if (inner.some((s) => s === undefined || s.join() !== (inner[0] as number[]).join())) return undefined;
  return [value.length, ...((inner[0] as number[] | undefined) ?? [])];
}

/** A flat row-major array as nested arrays of `shape`. */
function nest(flat: unknown[], shape: number[]): unknown {
  if (shape.length === 0) return flat[0];
  const [n, ...rest] = shape;
  const size = elementCount(rest);
  return Array.from({ length: n }, (_, i) => nest(flat.slice(i * size, (i + 1) * size), rest));
}

/** POST /v1/models/{m}:predict. */
export async function predict(c: Context<GatewayEnv>, m: ServedModel, maxBodyBytes: number): Promise<Response> {
  c.set('model', m.name);
  if (!m.batcher) throw badInput(`model ${m.name} is generative: use POST /v1/completions or /v1/chat/completions`);
  if (m.sequences) throw badInput(`model ${m.name} is stateful: send its sequences to /v2/models/${m.name}/infer with parameters.sequence_id`);
  if (m.signature.batchAxis !== 0) throw badInput(`model ${m.name} has no batch axis: send it to /v2/models/${m.name}/infer`);
  const body = await readJson(c, maxBodyBytes);
  const instances = isObject(body) ? body.instances : undefined;
  if (!Array.isArray(instances) || instances.length === 0) throw badInput('the body must be {"instances": [...]} with at least one instance');
  const specs = m.signature.inputs;
  // (an input the model does not take is a 400, as v2's: not dropped unsaid)
  instances.forEach((instance, i) => {
    const unknown = isObject(instance) ? Object.keys(instance).find((k) => !specs.some((s) => s.name === k)) : undefined;
    if (unknown !== undefined) throw badInput(`instances[${i}] has unknown input "${unknown}"; the model takes ${specs.map((s) => s.name).join(', ')}`);
  });
  const inputs = specs.map((spec) => {
    const rows = instances.map((instance, i) => {
      if (specs.length === 1 && !isObject(instance)) return instance;
      if (!isObject(instance)) throw badInput(`instances[${i}] must be an object of ${specs.map((s) => s.name).join(', ')} (the model takes several inputs)`);
      if (!(spec.name in instance)) throw badInput(`instances[${i}] has no ${spec.name}`);
      return instance[spec.name];
    });
    const shapes = rows.map(shapeOf);
    shapes.forEach((shape, i) => {
      if (!shape) throw badInput(`instances[${i}]${specs.length > 1 ? `.${spec.name}` : ''} is a ragged array`);
      if (shape.join() !== (shapes[0] as number[]).join())
        throw badInput(`instances[${i}] has shape [${shape}] but instances[0] has [${shapes[0]}]: instances must be alike`);
    });
    return { name: spec.name, datatype: spec.dtype, shape: [rows.length, ...(shapes[0] as number[])], data: rows };
  });
  const request = inferRequestFromJson({ inputs }, new Uint8Array(0), m.signature);
  const caller = c.get('caller');
  const result = await submitInfer(m, request.inputs, undefined, caller, {
    signal: clientSignal(c),
    trace: c.get('span')?.spanContext(),
    modelId: c.req.header(MODEL_ID_HEADER),
  });
  c.set('queueMs', result.queueMs);
  c.set('batchSize', result.batchSize);
  const outputs = Object.entries(result.outputs) as [string, Tensor][];
  const rowsOf = (t: Tensor) => {
    const flat = toJsonData(t.dtype, t.data);
    const row = t.shape.slice(1);
    const size = elementCount(row);
    return Array.from({ length: t.shape[0] }, (_, r) => nest(flat.slice(r * size, (r + 1) * size), row));
  };
  const byOutput = outputs.map(([name, t]) => [name, rowsOf(t)] as const);
  const predictions = byOutput.length === 1 ? byOutput[0][1] : instances.map((_, r) => Object.fromEntries(byOutput.map(([name, rows]) => [name, rows[r]])));
  return c.json({ predictions });
}
