import type { Logger } from 'pino';
import { LocalProcessProvider, ReplicaPool, type ReplicaProvider } from './autoscaler/index.js';
import { Batcher } from './batcher/index.js';
import type { Config, ModelConfig } from './config/index.js';
import { ConfigError } from './config/index.js';
import { createApp, listen, type ServedModel } from './gateway/index.js';
import { type ModelSignature, readSignature } from './models/index.js';
import { VERSION } from './version.js';

export type Gateway = {
  port: number;
  models: Map<string, ServedModel & { pool: ReplicaPool; batcher: Batcher }>;
  /** Graceful and idempotent: stop accepting, finish accepted requests, stop replicas. */
  shutdown(): Promise<void>;
};

/** Reads every model's signature (config mistakes are reported before anything starts). */
export async function loadSignatures(config: Config): Promise<Map<string, ModelSignature>> {
  const signatures = new Map<string, ModelSignature>();
  for (const [name, model] of Object.entries(config.models)) {
    let signature: ModelSignature;
    try {
      signature = await readSignature(model.path);
    } catch (err) {
      throw new ConfigError(`models.${name}.path: cannot read an ONNX model from ${model.path}: ${(err as Error).message}`);
    }
    checkAgainstSignature(name, model, signature);
    signatures.set(name, signature);
  }
  return signatures;
}

function checkAgainstSignature(name: string, model: ModelConfig, sig: ModelSignature): void {
  const inputs = new Map(sig.inputs.map((i) => [i.name, i]));
  for (const [input, rule] of Object.entries(model.batching.pad)) {
    const spec = inputs.get(input);
    if (!spec) throw new ConfigError(`models.${name}.batching.pad.${input}: the model has no input ${input} (it has ${[...inputs.keys()].join(', ')})`);
    const bad = rule.axes.find((a) => a >= spec.shape.length || typeof spec.shape[a] === 'number');
    if (bad !== undefined)
      throw new ConfigError(`models.${name}.batching.pad.${input}.axes: axis ${bad} is not a dynamic axis of ${input} [${spec.shape.join(', ')}]`);
  }
  for (const input of Object.keys(model.warmup_shapes)) {
    if (!inputs.has(input)) throw new ConfigError(`models.${name}.warmup_shapes.${input}: the model has no input ${input}`);
  }
}

export async function startGateway(config: Config, opts: { log: Logger; provider?: ReplicaProvider }): Promise<Gateway> {
  const { log } = opts;
  const provider = opts.provider ?? new LocalProcessProvider();
  const signatures = await loadSignatures(config);
  const models: Gateway['models'] = new Map();
  for (const [name, model] of Object.entries(config.models)) {
    const signature = signatures.get(name) as ModelSignature;
    const b = model.batching;
    if (signature.batchAxis === null && b.max_batch_size > 1) {
      log.warn({ model: name }, 'the model has no dynamic first dimension on every input and output: each request runs as its own batch');
    }
    const pool = new ReplicaPool({
      model: name,
      size: model.scaling.min_containers,
      maxInputs: b.max_inputs,
      provider,
      spec: { path: model.path, device: model.device, threads: model.threads, warmupShapes: model.warmup_shapes },
      log,
    });
    const batcher = new Batcher({
      model: name,
      pool,
      batchable: signature.batchAxis === 0,
      maxBatchSize: b.max_batch_size,
      waitMs: b.wait_ms,
      maxQueueSize: b.max_queue_size,
      timeoutMs: b.timeout_ms,
      pad: b.pad,
    });
    models.set(name, {
      name,
      signature,
      device: model.device,
      maxBatchSize: signature.batchAxis === 0 ? b.max_batch_size : 1,
      batcher,
      pool,
      isReady: () => pool.readyCount() > 0,
      replicas: () => pool.describe(),
    });
  }

  const pools = [...models.values()].map((m) => m.pool);
  try {
    await Promise.all(pools.map((p) => p.start()));
  } catch (err) {
    await Promise.all(pools.map((p) => p.stop()));
    throw err;
  }

  const app = createApp({
    models,
    maxBodyBytes: config.server.max_body_bytes,
    version: VERSION,
    onServerError: (err, path) => log.error({ path, err: err.message }, 'request failed'),
  });
  const server = await listen(app, { port: config.server.port, host: config.server.host });
  log.info({ port: server.port, models: [...models.keys()] }, `infergate listening on port ${server.port}`);

  let stopping: Promise<void> | undefined;
  return {
    port: server.port,
    models,
    shutdown() {
      stopping ??= (async () => {
        log.info('shutting down: finishing accepted requests');
        await server.close(config.server.shutdown_timeout_s * 1000);
        await Promise.all([...models.values()].map((m) => m.batcher.idle()));
        for (const m of models.values()) m.batcher.close();
        await Promise.all(pools.map((p) => p.stop()));
        log.info('shutdown complete');
      })();
      return stopping;
    },
  };
}
