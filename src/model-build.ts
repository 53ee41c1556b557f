import type { Logger } from 'pino';
import { Autoscaler, type GpuPlacement, RemoteProvider, ReplicaPool, type ReplicaProvider, type ScalingPolicy } from './autoscaler/index.js';
import { Batcher, type BatchTarget, GenerationScheduler, ResponseCache, Sequences, type SubmitOptions } from './batcher/index.js';
import type { Config, ModelConfig } from './config/index.js';
import { ConfigError } from './config/index.js';
import { badInput, unavailable } from './errors/index.js';
import { type Autoscaling, LoraAdapters, type ModelControl, versionOf } from './gateway/index.js';
import { callerSignatureOf, checkTokenizers, encoderText, layoutOf, loadDictionaries, loadLabels, loadSignatures } from './model-files.js';
import {
  batchSignature,
  classifierSpec,
  embeddingPadding,
  embeddingSpec,
  fromModelLayout,
  type GenerativeSpec,
  generativeSpec,
  initialState,
  loadTokenizer,
  type ModelLayout,
  type ModelSignature,
  modelVersions,
  multiplexChecker,
  PREFIX_BLOCK,
  shadowVersion,
  toModelLayout,
  unnamedVersion,
} from './models/index.js';
import { fixedBatchSizes, maxContainers, onGpu, replicaSpecOf } from './replica-plan.js';
import type { Gateway } from './start.js';
import { measureModel, type Telemetry } from './telemetry/index.js';
import type { Inputs } from './tensor/index.js';

// One model's set-up from its checked files: its batcher or scheduler, replica pool and autoscaler, and the
// control of its loading (Triton's model control).

/** The pool as the batcher sees it: a stateful model's batches laid out as it takes them on the way in, and back. */
function laidOut(pool: ReplicaPool, layout: ModelLayout): BatchTarget {
  if (layout.states.length === 0 && Object.keys(layout.constants).length === 0) return pool;
  return {
    dispatch: async (batch, opts) => {
      const result = await pool.dispatch(toModelLayout(batch, layout), opts);
      return { ...result, outputs: fromModelLayout(result.outputs, layout) };
    },
    freeSlots: () => pool.freeSlots(),
    readyCount: () => pool.readyCount(),
    startFailure: () => pool.startFailure(),
    on: (event, listener) => pool.on(event, listener),
    off: (event, listener) => pool.off(event, listener),
  };
}

/** A generative model's adapters (config `lora_adapters`), each read now: one that does not fit is a config error. */
async function loraAdapters(name: string, model: ModelConfig, generative: GenerativeSpec | null): Promise<LoraAdapters | undefined> {
  if (!generative?.lora) return undefined; // (adapters for a model without LoRA inputs: one of modelProblems)
  const adapters = new LoraAdapters(generative.lora);
  for (const [adapter, path] of Object.entries(model.lora_adapters ?? {}))
    await adapters.add(adapter, path).catch((err: Error) => {
      throw new ConfigError(`models.${name}.lora_adapters.${adapter}: ${err.message}`);
    });
  return adapters;
}

/** A VAD takes one FP32 input of audio windows and gives one probability per window (its state aside); undefined if not. */
function vadTensors(callerSig: ModelSignature): { input: string; output: string } | undefined {
  const [input, ...more] = callerSig.inputs;
  const [output, ...others] = callerSig.outputs;
  const fits = input && output && !more.length && !others.length && input.dtype === 'FP32' && input.shape.length === 2 && output.dtype === 'FP32';
  return fits ? { input: input.name, output: output.name } : undefined;
}

/**
 * What a model's config asks of its tensors that they cannot give, each naming the key: checked when the model is
 * built and by `infergate validate` (which so passes no config that serve then refuses).
 */
export function modelProblems(name: string, model: ModelConfig, own: ModelSignature): string[] {
  const signature = callerSignatureOf(name, model, own);
  const generative = generativeSpec(signature);
  const at = `models.${name}`;
  const problems: string[] = [];
  if (generative && model.multiplex)
    problems.push(`${at}.multiplex: the model is generative (its replicas keep sequences' KV caches): multiplexing is for tensor models`);
  if (generative && model.path.includes('{version}')) problems.push(`${at}.path: the model is generative: versions ({version}) are for tensor models`);
  if (generative && model.response_cache_mb > 0)
    problems.push(`${at}.response_cache_mb: a generative model draws its tokens, its answers are not kept (prefix_cache_mb keeps its prompts' work)`);
  if (!generative && model.reasoning_parser)
    problems.push(`${at}.reasoning_parser: the model is not generative (a decoder with a KV cache): it has no answers to split`);
  const lora = model.lora_adapters ? 'lora_adapters' : model.max_loras !== undefined ? 'max_loras' : undefined;
  if (lora && !generative?.lora)
    problems.push(`${at}.${lora}: the model takes no LoRA adapters (it has no lora_slot and lora.{layer}.{module}.a/.b inputs: models/gpt.py --lora)`);
  if (model.vad && !vadTensors(signature))
    problems.push(
      `${at}.vad: a VAD model takes one FP32 [batch, samples] input and gives one FP32 probability per row, besides its state and constants; this one takes ${signature.inputs.map((t) => t.name).join(', ')} and gives ${signature.outputs.map((t) => t.name).join(', ')}`,
    );
  return problems;
}

/**
 * Everything a config's models need from disk — signatures, tokenizers, labels, dictionaries — read and checked
 * before anything starts (or, on a reload, is swapped in); then a builder of each model.
 */
export async function readModels(config: Config): Promise<(name: string, shared: Shared) => Promise<ModelEntry>> {
  const { signatures, labels, dictionaries } = await readModelFiles(config);
  return (name, shared) =>
    buildModel(name, config.models[name], signatures.get(name) as ModelSignature, { labels: labels.get(name), dictionary: dictionaries.get(name) }, shared);
}

/** The config's model files read and checked (what `infergate validate` reads too). */
export async function readModelFiles(config: Config) {
  const signatures = await loadSignatures(config);
  await checkTokenizers(config);
  const labels = await loadLabels(config);
  const dictionaries = await loadDictionaries(config, signatures);
  return { signatures, labels, dictionaries };
}

/** What every model's set-up shares. `placeKey` tells a model's replicas from its replacement's on the GPUs. */
type Shared = {
  log: Logger;
  provider: ReplicaProvider;
  gpus: GpuPlacement;
  telemetry: Telemetry;
  cpuThreads: number;
  placeKey: string;
  /** Replaces a model whose files changed (a new version's folder, new weights) as a reload would; false if none did. */
  refresh: (name: string) => Promise<boolean>;
};

export type ModelEntry = Gateway['models'] extends Map<string, infer E> ? E : never;

/** One model's signature, batcher or scheduler, replica pool and autoscaler (nothing started yet). */
async function buildModel(
  name: string,
  model: ModelConfig,
  ownSignature: ModelSignature,
  files: { labels?: string[]; dictionary?: string[] },
  shared: Shared,
): Promise<ModelEntry> {
  const { labels, dictionary } = files;
  const { log, provider, gpus, telemetry, cpuThreads, placeKey } = shared;
  // What the batcher stacks (states batch first, constants left out) and what callers send (no states either).
  const layout = layoutOf(name, model, ownSignature);
  const batchable = batchSignature(ownSignature, layout).batchAxis === 0;
  const problems = modelProblems(name, model, ownSignature);
  if (problems.length) throw new ConfigError(problems.join('\n'));
  const signature = callerSignatureOf(name, model, ownSignature);
  const b = model.batching;
  const s = model.scaling;
  // A decoder with a KV cache gets continuous batching (max_batch_size sequences per replica);
  // every other model the dynamic batcher (max_batch_size rows per batch).
  const generative = generativeSpec(signature);
  // A text encoder is a tensor model with /v1/embeddings in front: texts of any length share its batches.
  const embedding = generative ? null : embeddingSpec(signature);
  const classifier = generative ? null : classifierSpec(signature);
  const encoder = embedding ?? classifier;
  const generativeTokenizer = generative ? await loadTokenizer(model.tokenizer ?? generative.tokenizer) : undefined;
  const adapters = await loraAdapters(name, model, generative);
  const text = encoder ? await encoderText(name, { ...encoder, tokenizer: model.tokenizer ?? encoder.tokenizer }, log) : undefined;
  if (model.embeddings && !embedding) log.warn({ model: name }, 'embeddings is ignored: the model is not a text encoder (input_ids in, hidden states out)');
  if (!batchable && b.max_batch_size > 1 && !generative) {
    log.warn({ model: name }, 'the model has no dynamic first dimension on every input and output: each request runs as its own batch');
  }
  const batchSizes = fixedBatchSizes(model, signature);
  const spec = replicaSpecOf(model, ownSignature, model.threads || (onGpu(model, gpus) ? 0 : cpuThreads));
  // A versioned model's versions served: its replicas open them all (the files as they are now, read once).
  const versions = model.path.includes('{version}') ? spec.multiplex?.open : undefined;
  const pool: ReplicaPool = new ReplicaPool({
    model: name,
    maxInputs: b.max_inputs,
    provider: model.remote ? new RemoteProvider(model.remote) : provider,
    spec,
    // cuda / auto on a GPU machine: a device id per replica, spread over the cards; cuda:N stays where it is told.
    // A remote replica's device is its own machine's business.
    place: onGpu(model, gpus) && !model.remote && !/^cuda:\d+$/.test(model.device) ? () => gpus.place(placeKey, s.replicas_per_gpu) : undefined,
    startupTimeoutMs: s.startup_timeout * 1000,
    hangTimeoutMs: s.hang_timeout * 1000,
    log,
  });
  if (b.batch_sizes && (generative || !batchable))
    log.warn({ model: name }, `batching.batch_sizes is ignored: the model ${generative ? 'is generative (continuous batching)' : 'has no batch axis'}`);
  let sequences: Sequences | undefined;
  const batcher = generative
    ? undefined
    : new Batcher({
        model: name,
        pool: laidOut(pool, layout),
        batchable,
        maxBatchSize: b.max_batch_size,
        waitMs: b.wait_ms,
        maxQueueSize: b.max_queue_size,
        timeoutMs: b.timeout_ms,
        pad: encoder ? { ...embeddingPadding(encoder), ...b.pad } : b.pad,
        batchSizes,
        fairShare: b.fair_share,
        companyExpected: model.sequence ? () => sequences?.mayJoin() ?? true : undefined,
        cache: model.response_cache_mb > 0 ? new ResponseCache(model.response_cache_mb * 2 ** 20) : undefined,
        versioned: Boolean(versions),
      });
  sequences =
    batcher && model.sequence
      ? new Sequences({
          model: name,
          states: layout.states.map((st) => ({ input: st.input, output: st.output, initial: () => initialState(st) })),
          submit: (inputs, o) => batcher.submit(inputs, o),
          idleMs: model.sequence.idle_timeout_s * 1000,
          maxSequences: model.sequence.max_sequences,
        })
      : undefined;
  const scheduler = generative
    ? new GenerationScheduler({
        model: name,
        pool,
        maxSequences: b.max_batch_size,
        maxQueue: b.max_queue_size,
        timeoutMs: b.timeout_ms,
        affinityTokens: model.prefix_cache_mb > 0 ? PREFIX_BLOCK : 0,
        fairShare: b.fair_share,
        maxAdapters: model.max_loras,
      })
    : undefined;
  const queue = (batcher ?? scheduler) as Batcher | GenerationScheduler;
  const queued = () => (batcher ? batcher.stats().queuedRows : (scheduler as GenerationScheduler).stats().queued);
  const arrived = () => (batcher ? batcher.stats().arrivedRows : (scheduler as GenerationScheduler).stats().sequences);
  const policy: ScalingPolicy = {
    minContainers: s.min_containers,
    maxContainers: maxContainers(model),
    bufferContainers: s.buffer_containers,
    targetInputs: s.target_inputs ?? b.max_inputs,
    maxBatchSize: batchable || generative ? b.max_batch_size : 1,
    scaledownWindowMs: s.scaledown_window * 1000,
  };
  const autoscaler = new Autoscaler({
    pool,
    policy,
    demand: () => ({ queuedRows: queued(), arrivedRows: arrived() }),
    log,
  });
  queue.on('starved', autoscaler.poke);
  const autoscaling: Autoscaling = {
    get: () => ({
      min_containers: policy.minContainers,
      max_containers: policy.maxContainers,
      buffer_containers: policy.bufferContainers,
      target_inputs: policy.targetInputs,
      scaledown_window: policy.scaledownWindowMs / 1000,
    }),
    update: (p) => {
      const changes: Partial<ScalingPolicy> = {
        minContainers: p.min_containers,
        maxContainers: p.max_containers,
        bufferContainers: p.buffer_containers,
        targetInputs: p.target_inputs,
        scaledownWindowMs: p.scaledown_window === undefined ? undefined : p.scaledown_window * 1000,
      };
      autoscaler.update(Object.fromEntries(Object.entries(changes).filter(([, v]) => v !== undefined)));
      log.info({ model: name, ...p }, 'autoscaling changed at runtime (until restart)');
      return autoscaling.get();
    },
  };
  measureModel(telemetry, name, pool, batcher, scheduler);
  // Verbose lines (pino's debug: Triton's log_verbose_level 1, which POST /v2/logging may turn on while it serves).
  batcher?.on('batch', (e) => {
    if (log.isLevelEnabled('debug'))
      log.debug({ model: name, rows: e.rows, requests: e.requests, ms: Math.round(e.durationMs * 100) / 100, ok: e.ok }, 'batch');
  });
  pool.on('opened', (e) => {
    if (log.isLevelEnabled('debug')) log.debug({ model: name, replica: e.replica, modelId: e.modelId, ms: Math.round(e.ms), closed: e.closed }, 'model opened');
  });
  scheduler?.on('sequence', (e) => {
    if (log.isLevelEnabled('debug')) log.debug({ model: name, tokens: e.tokens, ttftMs: e.ttftMs, ms: Math.round(e.durationMs) }, 'generation');
  });
  const control = modelControl(
    name,
    queue,
    pool,
    autoscaler,
    () => policy.minContainers,
    log,
    () => shared.refresh(name),
  );
  // Replaced or removed by a reload, the model takes no new work: a request read before the swap goes to its
  // successor (when it takes the same tensors), else is refused with a 503 it may retry at once.
  let retired = false;
  let successor: ModelEntry | undefined;
  const refuseUnloaded = <T>(handOff: (m: ModelEntry) => Promise<T> | undefined): Promise<T> | undefined => {
    if (!retired) return control.loaded() ? undefined : Promise.reject(notLoaded(name));
    const same = successor && JSON.stringify(successor.signature) === JSON.stringify(signature);
    return (
      (same && successor && handOff(successor)) ||
      Promise.reject(unavailable('model_replaced', `model ${name} was ${successor ? 'replaced' : 'removed'} by a config reload while this request was read`, 0))
    );
  };
  const versioning = {
    name,
    versions: versions && {
      served: versions,
      unnamed: unnamedVersion(versions, model.version_traffic),
      shadow: shadowVersion(model.version_shadow),
      onDisk: () => modelVersions(model.path).map(String),
    },
  };
  // A multiplexed model's requests name one of its models: checked against its files before they queue. A
  // versioned model's name a version served, or none: the latest or a canary's draw (routes resolve theirs first,
  // for the 404 and model_version).
  const checkModelId = model.multiplex
    ? multiplexChecker(name, model.path, ownSignature)
    : versions
      ? async (version?: string) => versionOf(versioning, version)
      : undefined;
  const checked = async (inputs: Inputs, o?: SubmitOptions) =>
    (batcher as Batcher).submit(inputs, { ...o, modelId: await (checkModelId as NonNullable<typeof checkModelId>)(o?.modelId) });
  return {
    name,
    signature,
    device: model.device,
    maxBatchSize: policy.maxBatchSize,
    batching: { waitMs: b.wait_ms, maxQueueSize: b.max_queue_size, timeoutMs: b.timeout_ms, batchSizes },
    labels,
    batcher: batcher && {
      // (another model has one model: a model id it is given, by an ensemble's `version: 1` step, means nothing)
      submit: (inputs, o) =>
        refuseUnloaded((m) => m.batcher?.submit(inputs, o)) ??
        (checkModelId ? checked(inputs, o) : batcher.submit(inputs, o?.modelId === undefined ? o : { ...o, modelId: undefined })),
    },
    multiplexed: model.multiplex && { maxModelsPerReplica: model.multiplex.max_models_per_replica },
    versions: versioning.versions,
    sequences: sequences && {
      submit: (seq, inputs, o) => refuseUnloaded((m) => m.sequences?.submit(seq, inputs, o)) ?? sequences.submit(seq, inputs, o),
      active: () => sequences.size,
      idleMs: (model.sequence?.idle_timeout_s ?? 0) * 1000,
      states: layout.states,
      release: (seq) => sequences.release(seq),
      has: (seq) => sequences.has(seq),
      handOver: (seq, signal) => sequences.handOver(seq, signal),
      takeOver: (held, opts) => sequences.takeOver(held, opts),
      snapshot: (seq) => sequences.snapshot(seq),
      handAll: () => sequences.handAll(),
      vad: model.vad && {
        sampleRate: model.vad.sample_rate,
        window: model.vad.window,
        context: model.vad.context,
        ...(vadTensors(signature) as { input: string; output: string }),
      },
    },
    generation:
      generative && scheduler && generativeTokenizer
        ? {
            scheduler: { generate: (req, hooks) => refuseUnloaded((m) => m.generation?.scheduler.generate(req, hooks)) ?? scheduler.generate(req, hooks) },
            tokenizer: generativeTokenizer,
            context: generative.context ?? generativeTokenizer.maxLength ?? 1024,
            vocab: generative.vocab,
            adapters,
            cacheScope: model.prefix_cache_scope,
            reasoningParser: model.reasoning_parser,
          }
        : undefined,
    embedding:
      embedding && text
        ? {
            spec: embedding,
            ...text,
            dimensions: embedding.dimensions,
            pooling: model.embeddings?.pooling ?? embedding.pooling ?? 'mean',
            normalize: model.embeddings?.normalize ?? true,
          }
        : undefined,
    classifier: classifier && text ? { spec: classifier, ...text } : undefined,
    ocr: model.ocr && dictionary ? { detector: model.ocr.detector, dictionary } : undefined,
    aliases: model.aliases,
    stats: () => queue.stats(),
    statistics: () => (versions && batcher ? versions.map((v) => batcher.statisticsOf(v).toTriton(name)) : [queue.statistics.toTriton(name)]),
    queue,
    pool,
    autoscaler,
    // Ready: a replica is up, or none is required (scale to zero) and it is not backing off after a failed start.
    // Past the backoff it is ready again: the next request tries a start, and a load balancer that took the
    // gateway out of rotation on this model's failure lets it back in (else nothing would ever try again).
    isReady: () => control.loaded() && (pool.readyCount() > 0 || (policy.minContainers === 0 && !pool.startFailure())),
    notReadyReason: () => (control.loaded() ? pool.failure : 'unloaded'),
    control,
    sequenceStore: sequences,
    retire: (next) => {
      retired = true;
      successor = next;
    },
    replicas: () => pool.describe(),
    autoscaling,
    admin: () => ({
      model: name,
      device: model.device,
      policy: autoscaling.get(),
      desired: autoscaler.last?.desired ?? pool.liveCount(),
      reason: autoscaler.last?.reason ?? 'no decision yet',
      failure: pool.failure,
      queue: { rows: queued(), inFlightBatches: pool.metrics().inFlightBatches },
      replicas: pool.describe(),
    }),
  };
}

const notLoaded = (model: string) => badInput(`model ${model} is unloaded: POST /v2/repository/models/${model}/load to load it`, 'model', 'model_not_loaded');

/**
 * Triton's explicit model control for one model. Unload: new requests are refused at once (400
 * model_not_loaded), what was accepted is served, then the autoscaler stops and every replica drains —
 * the GPU memory is given back. Load: replicas start (min_containers, at least one: a loaded model is in
 * memory) and, once they are ready, requests are taken and the autoscaler decides again; a model whose files
 * changed (a new version's folder, new weights) is replaced by one built from them instead (`refresh`), as
 * Triton's load reads the repository again. One change at a time, in the order asked.
 */
function modelControl(
  name: string,
  queue: { idle(): Promise<void> },
  pool: ReplicaPool,
  autoscaler: Autoscaler,
  minContainers: () => number,
  log: Logger,
  refresh: () => Promise<boolean>,
): ModelControl {
  let unloaded = false;
  let changes = Promise.resolve();
  const inTurn = (change: () => Promise<void>) => {
    const next = changes.then(change);
    changes = next.catch(() => {});
    return next;
  };
  return {
    loaded: () => !unloaded,
    unload: () =>
      inTurn(async () => {
        if (unloaded) return;
        unloaded = true;
        await queue.idle();
        autoscaler.stop();
        await pool.drainAll();
        log.info({ model: name }, 'model unloaded: its replicas are stopped');
      }),
    load: () =>
      inTurn(async () => {
        if (await refresh()) return; // its files changed: its successor is loaded instead
        const missing = Math.max(minContainers(), 1) - pool.readyCount();
        if (!unloaded && missing <= 0) return;
        await pool.startReplicas(Math.max(0, missing));
        unloaded = false;
        autoscaler.start();
        log.info({ model: name }, 'model loaded');
      }),
  };
}
