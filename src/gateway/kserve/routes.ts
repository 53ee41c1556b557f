import { type Context, Hono } from 'hono';
import { badInput, GatewayError, notFound } from '../../errors/index.js';
import { MODEL_ID_HEADER } from '../../models/index.js';
import type { Inputs } from '../../tensor/index.js';
import { bytesOf, viewBytes } from '../../tensor/index.js';
import { clientSignal, readBody, readJson, releaseBody } from '../body.js';
import { requestBuffers } from '../buffer-pool.js';
import type { Fleet } from '../fleet.js';
import { type FleetSequences, sequenceKey } from '../fleet-sequences.js';
import type { GatewayEnv, ServedModel } from '../types.js';
import { generate, inferText } from './generate.js';
import { tritonConfig } from './model-config.js';
import { type InferRequest, parseInferRequest } from './request.js';
import { encodeInferResponse } from './response.js';
import type { SharedMemoryRegions } from './shared-memory.js';
import { sequenceOwner, shadowRun, submitInfer, versionOf } from './submit.js';
import { textInterface } from './text-tensors.js';
import { predict } from './v1.js';

export type KServeOptions = {
  models: ReadonlyMap<string, ServedModel>;
  /** Largest request body, in bytes, enforced while reading. */
  maxBodyBytes: number;
  version: string;
  /** Client shared memory (server.client_shared_memory); undefined when off. */
  regions?: SharedMemoryRegions;
  /** True once shutdown has begun: the server is not ready, whatever its models are. @default never */
  shuttingDown?: () => boolean;
  /** Other gateways (server.fleet): a stateful model's sequence is served by one of them, the same for all its requests. */
  fleet?: Fleet;
  /** With the fleet's secret: a sequence moves with its state as which gateway holds it changes. */
  fleetSequences?: FleetSequences;
};

/** The KServe v2 / Open Inference Protocol REST routes, with the binary tensor data extension. */
export function kserveRoutes({ models, maxBodyBytes, version, regions, shuttingDown, fleet, fleetSequences }: KServeOptions): Hono<GatewayEnv> {
  const app = new Hono<GatewayEnv>();
  const named = (name: string): ServedModel => {
    const m = models.get(name);
    if (!m) throw notFound(`unknown model ${JSON.stringify(name)}; this gateway serves ${[...models.keys()].join(', ')}`);
    return m;
  };
  // (a route naming a version the model does not serve is a 404, whatever it asks)
  const model = (c: Context<GatewayEnv>): ServedModel => {
    const m = named(c.req.param('model') ?? '');
    const version = c.req.param('version');
    if (version !== undefined) versionOf(m, version);
    return m;
  };

  const extensions = ['binary_tensor_data', 'classification', 'statistics', 'logging', 'trace', ...(regions ? ['system_shared_memory'] : [])];
  app.get('/v2', (c) => c.json({ name: 'infergate', version, extensions }));
  app.get('/v2/health/live', (c) => c.json({ live: true }));
  // Models unloaded on purpose (model control) do not make the server unready, as in Triton.
  const serverReady = () => !shuttingDown?.() && [...models.values()].every((m) => m.isReady() || m.control?.loaded() === false);
  app.get('/v2/health/ready', (c) => {
    const ready = serverReady();
    return c.json({ ready }, ready ? 200 : 503);
  });
  // vLLM's probes (what deployments written for vLLM check): /health 200 when ready, /version.
  app.get('/health', (c) => c.body(null, serverReady() ? 200 : 503));
  // SageMaker's (its /invocations: sagemaker.ts).
  app.get('/ping', (c) => c.body(null, serverReady() ? 200 : 503));
  app.get('/version', (c) => c.json({ version }));

  // Triton's repository index: every model with its state (READY also while it may cold-start from zero); a
  // versioned model's every version on disk, those its policy does not serve UNAVAILABLE "unloaded", as Triton lists them.
  app.post('/v2/repository/index', async (c) => {
    const readyOnly = ((await readJson(c, 64 * 1024, { emptyAllowed: true })) as { ready?: unknown } | undefined)?.ready === true;
    const index = [...models.values()].flatMap((m) => {
      const reason = m.isReady() ? undefined : (m.notReadyReason?.() ?? 'no replica is ready');
      const served = m.versions?.served ?? ['1'];
      const all = [...new Set([...(m.versions?.onDisk() ?? []), ...served])].sort((a, b) => Number(a) - Number(b));
      return all.map((version) =>
        served.includes(version)
          ? { name: m.name, version, state: reason ? 'UNAVAILABLE' : 'READY', ...(reason && { reason }) }
          : { name: m.name, version, state: 'UNAVAILABLE', reason: 'unloaded' },
      );
    });
    return c.json(readyOnly ? index.filter((m) => m.state === 'READY') : index);
  });

  // Triton's statistics of every model (perf_analyzer asks for these; a model named "stats" is shadowed, as in Triton).
  app.get('/v2/models/stats', (c) => c.json({ model_stats: [...models.values()].flatMap((m) => m.statistics()) }));
  for (const prefix of ['/v2/models/:model', '/v2/models/:model/versions/:version']) {
    app.get(prefix, (c) => c.json(metadata(model(c))));
    app.get(`${prefix}/config`, (c) => c.json(tritonConfig(model(c))));
    app.get(`${prefix}/ready`, (c) => {
      const m = model(c);
      const ready = m.isReady();
      const reason = m.notReadyReason?.();
      return c.json({ name: m.name, ready, ...(reason && { reason }) }, ready ? 200 : 503);
    });
    app.get(`${prefix}/stats`, (c) => {
      const m = model(c);
      return c.json({
        name: m.name,
        ...m.stats(),
        ...(m.sequences && { sequences: m.sequences.active() }),
        replicas: m.replicas(),
        // (each version's; the one asked for, if the route names one)
        model_stats: m.statistics().filter((s) => [undefined, s.version].includes(c.req.param('version'))),
      });
    });
    app.post(`${prefix}/infer`, (c) => infer(c, model(c), maxBodyBytes, { regions, fleet, fleetSequences }));
    app.post(`${prefix}/generate`, (c) => generate(c, model(c), maxBodyBytes, false));
    app.post(`${prefix}/generate_stream`, (c) => generate(c, model(c), maxBodyBytes, true));
  }

  // KServe's v1 protocol: POST /v1/models/{m}:predict (the verb rides in the path segment).
  app.post('/v1/models/:target', (c) => {
    const target = c.req.param('target');
    const at = target.lastIndexOf(':');
    if (at < 0) throw notFound(`POST /v1/models/{model}:predict is KServe's v1 predict; ${target} names no verb`);
    const [name, verb] = [target.slice(0, at), target.slice(at + 1)];
    if (verb !== 'predict') throw badInput(`:${verb} is not served (KServe v1: only :predict)`);
    return predict(c, named(name), maxBodyBytes);
  });

  const shm = (): SharedMemoryRegions => {
    if (!regions) throw new GatewayError(403, 'shared_memory_off', 'client shared memory is off on this gateway (server.client_shared_memory)');
    return regions;
  };
  app.get('/v2/systemsharedmemory/status', (c) => c.json(shm().status()));
  app.get('/v2/systemsharedmemory/region/:region/status', (c) => c.json(shm().status(c.req.param('region'))));
  app.post('/v2/systemsharedmemory/region/:region/register', async (c) => {
    const regions = shm();
    regions.register(c.req.param('region'), await readJson(c, 64 * 1024, { emptyAllowed: true }));
    return c.json({});
  });
  app.post('/v2/systemsharedmemory/region/:region/unregister', (c) => {
    shm().unregister(c.req.param('region'));
    return c.json({});
  });
  app.post('/v2/systemsharedmemory/unregister', (c) => {
    shm().unregister();
    return c.json({});
  });
  return app;
}

/** Where a tensor request may be served besides its model: client shared memory, and the fleet's other gateways. */
export type InferAround = { regions?: SharedMemoryRegions; fleet?: Fleet; fleetSequences?: FleetSequences };

/** POST infer for one model: the built-in route and every kserve endpoint of the config. */
export async function infer(
  c: Context<GatewayEnv>,
  m: ServedModel,
  maxBodyBytes: number,
  { regions, fleet, fleetSequences }: InferAround = {},
): Promise<Response> {
  c.set('model', m.name);
  if (!m.batcher) return inferText(c, m, maxBodyBytes); // a generative model: text_input in, text_output out
  const version = versionOf(m, c.req.param('version'));
  if (m.versions) c.set('modelVersion', version);
  let body = await readBody(c, maxBodyBytes);
  const parse = () => parseInferRequest(body, c.req.header('inference-header-content-length'), m.signature);
  let request: ReturnType<typeof parseInferRequest>;
  try {
    request = parse();
  } catch (err) {
    releaseBody(body);
    throw err;
  }
  // In a fleet, a sequence's state lives on one gateway: every request of it goes there (whichever took it).
  const sequence = request.sequence && m.sequences && { id: request.sequence.id, owner: sequenceOwner(c.get('caller')) };
  const key = sequence && sequenceKey(m.name, sequence);
  if (sequence && key && fleet?.passesOn(c) && fleet.holderOf(key)) {
    await fleetSequences?.handing(key); // (this gateway stopping, handing it on: its next holder has it first)
    const bytes = body.slice();
    releaseBody(body);
    const answer = await fleet.toHolder(c, key, `sequence ${sequence.id} of model ${m.name}`, bytes);
    if (answer) return answer;
    body = bytes; // (its holder could not be reached: this gateway is next, with its own copy of the body)
    request = parse();
  }
  // One not kept here may be kept by another gateway of the fleet (which changed since it started): handed over first.
  if (sequence && !request.sequence?.start) await fleetSequences?.fetch(m, sequence);
  const shared = await readSharedInputs(request, regions);
  const trace = c.get('span')?.spanContext();
  const deadline = request.timeoutMs === undefined ? undefined : performance.now() + request.timeoutMs;
  const caller = c.get('caller');
  const inputs = { ...request.inputs, ...shared.inputs };
  const shadow = request.sequence ? undefined : m.versions?.shadow(version);
  if (shadow) shadowRun(m, shadow, inputs, request, { caller, trace, told: c.get('captureShadow') });
  const result = await submitInfer(m, inputs, request.sequence, caller, {
    signal: clientSignal(c),
    trace,
    deadline,
    modelId: c.req.header(MODEL_ID_HEADER),
    version,
  });
  // (with server.fleet.sequence_backup: its state at another gateway before the answer goes)
  if (sequence && fleetSequences?.backsUp) await fleetSequences.backUp(m, sequence);
  c.set('queueMs', result.queueMs);
  c.set('batchSize', result.batchSize);
  await writeSharedOutputs(request, result.outputs, regions);
  const response = encodeInferResponse({ name: m.name, version }, request, result.outputs, m.labels);
  // The batch was sent and answered and the response is a copy: the body (and the buffers read from
  // shared memory) can serve the next request. A request that failed in the batcher keeps them: its
  // batch may still be on its way.
  releaseBody(body);
  for (const buffer of shared.buffers) requestBuffers.release(buffer);
  return c.body(response.body as string, 200, {
    ...response.headers,
    'x-queue-ms': result.queueMs.toFixed(2),
    'x-batch-size': String(result.batchSize),
  });
}

/** Inputs given by shared-memory region, read (on the thread pool) into pooled buffers; output regions checked. */
async function readSharedInputs(request: InferRequest, regions?: SharedMemoryRegions): Promise<{ inputs: Inputs; buffers: ArrayBufferLike[] }> {
  const inputs: Inputs = {};
  const buffers: ArrayBufferLike[] = [];
  const outputs = request.outputs.filter((o) => o.shm);
  if (request.sharedInputs.length === 0 && outputs.length === 0) return { inputs, buffers };
  if (!regions) throw offForTensors();
  // Outputs' regions are checked now, not after the model has run.
  for (const { shm } of outputs) if (shm) regions.check(shm.region, shm.offset, shm.byteSize);
  for (const ref of request.sharedInputs) {
    const bytes = await regions.read(ref.region, ref.offset, ref.byteSize);
    buffers.push(bytes.buffer);
    inputs[ref.name] = { dtype: ref.dtype, shape: ref.shape, data: viewBytes(ref.dtype, bytes) };
  }
  return { inputs, buffers };
}

async function writeSharedOutputs(request: InferRequest, outputs: Inputs, regions?: SharedMemoryRegions): Promise<void> {
  for (const { name, shm } of request.outputs) {
    if (!shm) continue;
    if (!regions) throw offForTensors();
    const bytes = bytesOf(outputs[name].data);
    if (bytes.byteLength > shm.byteSize) throw badInput(`output ${name} has ${bytes.byteLength} bytes, more than its shared_memory_byte_size ${shm.byteSize}`);
    await regions.write(shm.region, shm.offset, bytes);
  }
}

const offForTensors = () => badInput('client shared memory is off on this gateway (server.client_shared_memory): send tensor data in the request');

export function metadata(m: ServedModel) {
  const tensor = (t: ServedModel['signature']['inputs'][number]) => ({
    name: t.name,
    datatype: t.dtype,
    shape: t.shape.map((d) => (typeof d === 'number' ? d : -1)),
  });
  return {
    name: m.name,
    versions: m.versions?.served ?? ['1'],
    platform: m.ensemble ? 'ensemble' : 'onnxruntime_onnx',
    // A generative model is called with text (its graph's tensors are the replica's business).
    ...(m.generation
      ? {
          inputs: textInterface.inputs.map(({ name, datatype, dims }) => ({ name, datatype, shape: dims })),
          outputs: textInterface.outputs.map(({ name, datatype, dims }) => ({ name, datatype, shape: dims })),
        }
      : { inputs: m.signature.inputs.map(tensor), outputs: m.signature.outputs.map(tensor) }),
    parameters: { max_batch_size: m.maxBatchSize, batch_axis: m.signature.batchAxis, device: m.device },
  };
}
