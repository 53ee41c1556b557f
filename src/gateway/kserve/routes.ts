import { type Context, Hono } from 'hono';
import { badInput, notFound } from '../../errors/index.js';
import { clientSignal, readBody, releaseBody } from '../body.js';
import type { GatewayEnv, ServedModel } from '../types.js';
import { parseInferRequest } from './request.js';
import { encodeInferResponse } from './response.js';

export type KServeOptions = {
  models: ReadonlyMap<string, ServedModel>;
  /** Largest request body, in bytes, enforced while reading. */
  maxBodyBytes: number;
  version: string;
};

/** The KServe v2 / Open Inference Protocol REST routes, with the binary tensor data extension. */
export function kserveRoutes({ models, maxBodyBytes, version }: KServeOptions): Hono<GatewayEnv> {
  const app = new Hono<GatewayEnv>();
  const model = (c: Context<GatewayEnv>): ServedModel => {
    const name = c.req.param('model') ?? '';
    const m = models.get(name);
    if (!m) throw notFound(`unknown model ${JSON.stringify(name)}; this gateway serves ${[...models.keys()].join(', ')}`);
    return m;
  };

  app.get('/v2', (c) => c.json({ name: 'infergate', version, extensions: ['binary_tensor_data', 'model_statistics'] }));
  app.get('/v2/health/live', (c) => c.json({ live: true }));
  app.get('/v2/health/ready', (c) => {
    const ready = [...models.values()].every((m) => m.isReady());
    return c.json({ ready }, ready ? 200 : 503);
  });

  for (const prefix of ['/v2/models/:model', '/v2/models/:model/versions/:version']) {
    app.get(prefix, (c) => c.json(metadata(model(c))));
    app.get(`${prefix}/ready`, (c) => {
      const m = model(c);
      const ready = m.isReady();
      const reason = m.notReadyReason?.();
      return c.json({ name: m.name, ready, ...(reason && { reason }) }, ready ? 200 : 503);
    });
    app.get(`${prefix}/stats`, (c) => {
      const m = model(c);
      return c.json({ name: m.name, ...m.stats(), replicas: m.replicas() });
    });
    app.post(`${prefix}/infer`, (c) => infer(c, model(c), maxBodyBytes));
  }
  return app;
}

/** POST infer for one model: the built-in route and every kserve endpoint of the config. */
export async function infer(c: Context<GatewayEnv>, m: ServedModel, maxBodyBytes: number): Promise<Response> {
  c.set('model', m.name);
  if (!m.batcher) throw badInput(`model ${m.name} is generative: use POST /v1/completions or /v1/chat/completions`);
  const body = await readBody(c, maxBodyBytes);
  let request: ReturnType<typeof parseInferRequest>;
  try {
    request = parseInferRequest(body, c.req.header('inference-header-content-length'), m.signature);
  } catch (err) {
    releaseBody(body);
    throw err;
  }
  const trace = c.get('span')?.spanContext();
  const result = await m.batcher.submit(request.inputs, { signal: clientSignal(c), priority: c.get('caller')?.priority, trace });
  c.set('queueMs', result.queueMs);
  c.set('batchSize', result.batchSize);
  const response = encodeInferResponse(m.name, request, result.outputs);
  // The batch was sent and answered and the response is a copy: the body can serve the next request.
  // (A request that failed in the batcher keeps its body: its batch may still be on its way.)
  releaseBody(body);
  return c.body(response.body as string, 200, {
    ...response.headers,
    'x-queue-ms': result.queueMs.toFixed(2),
    'x-batch-size': String(result.batchSize),
  });
}

export function metadata(m: ServedModel) {
  const tensor = (t: ServedModel['signature']['inputs'][number]) => ({
    name: t.name,
    datatype: t.dtype,
    shape: t.shape.map((d) => (typeof d === 'number' ? d : -1)),
  });
  return {
    name: m.name,
    versions: ['1'],
    platform: 'onnxruntime_onnx',
    inputs: m.signature.inputs.map(tensor),
    outputs: m.signature.outputs.map(tensor),
    parameters: { max_batch_size: m.maxBatchSize, batch_axis: m.signature.batchAxis, device: m.device },
  };
}
