import { readFile, stat } from 'node:fs/promises';
import type { Logger } from 'pino';
import {
  Autoscaler,
  cpuThreadsPerReplica,
  GpuPlacement,
  LocalProcessProvider,
  RemoteProvider,
  ReplicaPool,
  type ReplicaProvider,
  type ReplicaStartSpec,
  type ScalingPolicy,
  visibleGpus,
} from './autoscaler/index.js';
import {
  Batcher,
  type BatchTarget,
  type EnsemblePlan,
  GenerationScheduler,
  planEnsemble,
  ResponseCache,
  Sequences,
  type SubmitOptions,
} from './batcher/index.js';
import type { Config, ModelConfig, RateLimitConfig } from './config/index.js';
import { ConfigError } from './config/index.js';
import { badInput, unavailable } from './errors/index.js';
import {
  type Autoscaling,
  authenticate,
  BatchControl,
  BatchDisk,
  createApp,
  type EndpointRoute,
  ensembleModel,
  type GrpcListening,
  InFlight,
  jwtVerifier,
  type Listening,
  LoraAdapters,
  listen,
  listenForMetrics,
  listenGrpc,
  type ModelControl,
  type Policy,
  QuietWork,
  RateLimiter,
  rateLimit,
  type ServedModel,
  versionOf,
} from './gateway/index.js';
import {
  batchSignature,
  callerSignature,
  classifierSpec,
  describeTensors,
  type EncoderInputs,
  embeddingPadding,
  embeddingSpec,
  fromModelLayout,
  type GenerativeSpec,
  generativeSpec,
  initialState,
  loadTokenizer,
  type ModelLayout,
  type ModelSignature,
  modelLayout,
  modelVersions,
  multiplexChecker,
  multiplexedIds,
  multiplexedPath,
  PREFIX_BLOCK,
  readSignature,
  servedVersions,
  type Tokenizer,
  toModelLayout,
  unnamedVersion,
  versionsServed,
} from './models/index.js';
import { pollRepository } from './repository-poll.js';
import { measureModel, observePools, Telemetry } from './telemetry/index.js';
import type { Inputs } from './tensor/index.js';
import { VERSION } from './version.js';

export type Gateway = {
  port: number;
  /** telemetry.metrics_port's, once bound (port 0 binds a free one). */
  metricsPort?: number;
  /** server.grpc_port's, once bound. */
  grpcPort?: number;
  telemetry: Telemetry;
  models: Map<
    string,
    ServedModel & {
      pool: ReplicaPool;
      autoscaler: Autoscaler;
      queue: Batcher | GenerationScheduler;
      retire(successor?: ModelEntry): void;
      sequenceStore?: Sequences;
    }
  >;
  /**
   * Graceful and idempotent: not ready at once; after server.shutdown_delay_s (unless `now`) stop accepting,
   * finish accepted requests, stop replicas.
   */
  shutdown(opts?: { now?: boolean }): Promise<void>;
  /**
   * Applies a new config's models without a restart (SIGHUP, POST /admin/reload): added ones start, changed
   * ones are replaced once their new replicas are ready, removed ones drain. Nothing changes if any check fails.
   */
  reload(next: Config): Promise<ReloadReport>;
};

/** What a reload did, by model name; `restart_required`: config sections that changed but apply only at start. */
type Changes = { added: string[]; replaced: string[]; removed: string[]; unchanged: string[] };
/** What a reload changed: models by name (and ensembles, under `ensembles`), and the sections that need a restart. */
export type ReloadReport = Changes & {
  restart_required: string[];
  ensembles?: Changes;
  /** Versioned models among `unchanged` whose version_traffic split moved (in place, nothing restarted). */
  version_traffic?: string[];
  /** Generative models among `unchanged` whose lora_adapters changed (in place, nothing restarted). */
  lora_adapters?: string[];
  /** Models among `unchanged` whose aliases changed (in place). */
  aliases?: string[];
};

/** Reads every model's signature (config mistakes are reported before anything starts). */
export async function loadSignatures(config: Config): Promise<Map<string, ModelSignature>> {
  const signatures = new Map<string, ModelSignature>();
  for (const [name, model] of Object.entries(config.models)) {
    // A multiplexed model's tensors are its first model's (each other one is checked against them when asked
    // for); a versioned model's, its latest version's (every version served must take and give the same).
    const versions = versionsOf(name, model);
    const path = model.multiplex
      ? multiplexedPath(model.path, firstModelId(name, model.path))
      : versions
        ? multiplexedPath(model.path, versions[versions.length - 1])
        : model.path;
    const signature = await signatureAt(name, path);
    const latest = describeTensors(signature);
    for (const version of versions?.slice(0, -1) ?? []) {
      const theirs = describeTensors(await signatureAt(name, multiplexedPath(model.path, version)));
      if (theirs !== latest)
        throw new ConfigError(
          `models.${name}: version ${version} takes and gives ${theirs}, not the latest version's ${latest} (the versions served share their tensors)`,
        );
    }
    checkAgainstSignature(name, model, signature);
    signatures.set(name, signature);
  }
  return signatures;
}

async function signatureAt(name: string, path: string): Promise<ModelSignature> {
  try {
    return await readSignature(path);
  } catch (err) {
    throw new ConfigError(`models.${name}.path: cannot read an ONNX model from ${path}: ${(err as Error).message}`);
  }
}

/** A versioned model's versions served now (its version_policy over the files there are), ascending; others: undefined. */
function versionsOf(name: string, model: ModelConfig): string[] | undefined {
  if (!model.path.includes('{version}')) return undefined;
  const { served, missing } = servedVersions(model.path, model.version_policy);
  if (missing.length) throw new ConfigError(`models.${name}.version_policy: no file for version ${missing.join(', ')} (${model.path})`);
  if (!served.length)
    throw new ConfigError(`models.${name}.path: no version's file matches ${model.path} (versions are positive integers: models/m/1/model.onnx)`);
  const unserved = Object.keys(model.version_traffic ?? {}).filter((v) => !served.includes(v));
  if (unserved.length)
    throw new ConfigError(`models.${name}.version_traffic: version ${unserved.join(', ')} is not served (the policy serves ${served.join(', ')})`);
  return served;
}

/** Each model's labels file, if it has one: line i names class i (a trailing empty line is not a class). */
async function loadLabels(config: Config): Promise<Map<string, string[]>> {
  const labels = new Map<string, string[]>();
  for (const [name, { labels: path }] of Object.entries(config.models)) {
    if (!path) continue;
    try {
      labels.set(name, (await readFile(path, 'utf8')).replace(/\r?\n$/, '').split(/\r?\n/));
    } catch (err) {
      throw new ConfigError(`models.${name}.labels: cannot read ${path}: ${(err as Error).message}`);
    }
  }
  return labels;
}

/** Each text recogniser's dictionary (one character per line), checked against its output's classes (blank + characters + space). */
async function loadDictionaries(config: Config, signatures: Map<string, ModelSignature>): Promise<Map<string, string[]>> {
  const dictionaries = new Map<string, string[]>();
  for (const [name, { ocr }] of Object.entries(config.models)) {
    if (!ocr) continue;
    let lines: string[];
    try {
      lines = (await readFile(ocr.dictionary, 'utf8')).replace(/\r?\n$/, '').split(/\r?\n/);
    } catch (err) {
      throw new ConfigError(`models.${name}.ocr.dictionary: cannot read ${ocr.dictionary}: ${(err as Error).message}`);
    }
    const out = signatures.get(name)?.outputs[0];
    const classes = out?.shape.at(-1);
    if (out?.shape.length !== 3 || (typeof classes === 'number' && classes !== lines.length + 2))
      throw new ConfigError(
        `models.${name}.ocr: a text recogniser gives [batch, steps, classes] with classes = its dictionary's ${lines.length} characters + 2 (blank, space); this one gives ${out?.name} [${out?.shape.join(', ')}]`,
      );
    dictionaries.set(name, lines);
  }
  return dictionaries;
}

/** Every tokenizer the config names loads (a bad path is a config error, before anything starts). */
async function checkTokenizers(config: Config): Promise<void> {
  for (const [name, { tokenizer }] of Object.entries(config.models)) {
    if (!tokenizer) continue;
    try {
      await loadTokenizer(tokenizer);
    } catch (err) {
      throw new ConfigError(`models.${name}.tokenizer: cannot load a Hugging Face tokenizer from ${tokenizer}: ${(err as Error).message}`);
    }
  }
}

/** A text encoder's tokenizer and limits, for its OpenAI-style routes; none (with a warning) if its tokenizer is not bundled. */
async function encoderText(name: string, spec: EncoderInputs, log: Logger): Promise<{ tokenizer: Tokenizer; context: number; vocab: number } | undefined> {
  try {
    const tokenizer = await loadTokenizer(spec.tokenizer);
    return { tokenizer, context: spec.context ?? tokenizer.maxLength ?? 512, vocab: spec.vocab ?? tokenizer.size };
  } catch (err) {
    log.warn({ model: name }, `served over KServe only: ${(err as Error).message}`);
    return undefined;
  }
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
  layoutOf(name, model, sig);
}

/** A model's states and constants, checked against it (a mistake is a config error naming the key). */
export function layoutOf(name: string, model: ModelConfig, sig: ModelSignature): ModelLayout {
  try {
    return modelLayout(sig, { state: model.sequence?.state, constants: model.constants });
  } catch (err) {
    throw new ConfigError(`models.${name}.${(err as Error).message}`);
  }
}

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

/** A port that cannot be bound, said as the setting to change (the socket error's stack says nothing more). */
function cannotListen(err: NodeJS.ErrnoException, server: Config['server']): Error {
  // (an intake thread's gRPC port: said so by the thread, its error's code lost on the way)
  if (err.message?.startsWith('server.grpc_port:')) return new ConfigError(err.message);
  const where = `port ${server.port} on ${server.host}`;
  if (err.code === 'EADDRINUSE') return new ConfigError(`server.port: ${where} is in use by another process (set server.port or $PORT)`);
  if (err.code === 'EACCES') return new ConfigError(`server.port: ${where} needs privileges this process lacks (ports below 1024; or use one above)`);
  if (err.code === 'EADDRNOTAVAIL') return new ConfigError(`server.host: ${server.host} is not an address of this machine`);
  return err;
}

/** The auth and rate-limit middleware of the built-in routes and of each configured endpoint. */
async function security(
  config: Config,
): Promise<{ guard: ReturnType<typeof authenticate>[]; adminGuard: ReturnType<typeof authenticate>[]; endpoints: EndpointRoute[] }> {
  const verify = config.auth.jwt ? await jwtVerifier(config.auth.jwt) : undefined;
  const keys = new Map(config.auth.keys.map((k) => [k.id, { secret: k.secret, priority: k.priority }]));
  const guardFor = (policy: Policy, scopes: string[], limit?: RateLimitConfig) => [
    authenticate({ policy, scopes, verify, keys }),
    ...(limit
      ? [
          rateLimit({
            requests:
              limit.per_second === undefined
                ? undefined
                : new RateLimiter({ perSecond: limit.per_second, burst: limit.burst ?? Math.max(1, Math.ceil(limit.per_second)) }),
            tokens:
              limit.tokens_per_minute === undefined ? undefined : new RateLimiter({ perSecond: limit.tokens_per_minute / 60, burst: limit.tokens_per_minute }),
            concurrent: limit.max_concurrent === undefined ? undefined : new InFlight(limit.max_concurrent),
          }),
        ]
      : []),
  ];
  const a = config.auth;
  const open = a.default === 'public' && !a.rate_limit;
  return {
    guard: open ? [] : guardFor(a.default, a.scopes, a.rate_limit),
    // Runtime changes also need the admin scopes (under jwt; the guard above has authenticated already).
    adminGuard: a.default === 'jwt' && a.admin_scopes.length > 0 ? [authenticate({ policy: 'jwt', scopes: a.admin_scopes, verify, keys })] : [],
    endpoints: config.endpoints.map((e) => ({
      path: e.path,
      model: e.model,
      protocol: e.protocol,
      guard: guardFor(e.auth ?? a.default, e.scopes, e.rate_limit ?? a.rate_limit),
      policy: e.auth ?? a.default,
      maxBodyBytes: e.max_body_bytes,
    })),
  };
}

/** Fixed batch sizes (padded up to): max_batch_size is always one, and each is warmed up at start. */
function fixedBatchSizes(model: ModelConfig, signature: ModelSignature): number[] | undefined {
  const b = model.batching;
  return b.batch_sizes && signature.batchAxis === 0 ? [...new Set([...b.batch_sizes, b.max_batch_size])].sort((x, y) => x - y) : undefined;
}

/** A multiplexed model's first model id (its files sorted): its tensors are the model's, and its replicas start with it open. */
function firstModelId(name: string, template: string): string {
  const [first] = multiplexedIds(template);
  if (first === undefined) throw new ConfigError(`models.${name}.path: no file matches ${template} (a multiplexed model needs one to start with)`);
  return first;
}

/** A generative model's adapters (config `lora_adapters`), each read now: one that does not fit is a config error. */
async function loraAdapters(name: string, model: ModelConfig, generative: GenerativeSpec | null): Promise<LoraAdapters | undefined> {
  if (!generative?.lora) {
    const set = model.lora_adapters ? 'lora_adapters' : model.max_loras !== undefined ? 'max_loras' : undefined;
    if (set)
      throw new ConfigError(
        `models.${name}.${set}: the model takes no LoRA adapters (it has no lora_slot and lora.{layer}.{module}.a/.b inputs: models/gpt.py --lora)`,
      );
    return undefined;
  }
  const adapters = new LoraAdapters(generative.lora);
  for (const [adapter, path] of Object.entries(model.lora_adapters ?? {}))
    await adapters.add(adapter, path).catch((err: Error) => {
      throw new ConfigError(`models.${name}.lora_adapters.${adapter}: ${err.message}`);
    });
  return adapters;
}

/** What a replica of the model is told to serve: by this gateway, or by `infergate replica` on another machine. */
export function replicaSpecOf(model: ModelConfig, signature: ModelSignature, threads: number): Omit<ReplicaStartSpec, 'replicaId' | 'model'> {
  const generative = generativeSpec(signature) !== null;
  const layout = modelLayout(signature, { state: model.sequence?.state, constants: model.constants });
  return {
    path: model.path,
    device: model.device,
    threads,
    cuda: model.cuda,
    warmupShapes: { ...vadWarmup(model, signature, layout), ...model.warmup_shapes },
    warmupBatches: fixedBatchSizes(model, batchSignature(signature, layout)),
    sessionPerBatchSize: model.batching.session_per_batch_size,
    maxBatchRows: model.batching.max_batch_size,
    prefixCacheBytes: generative ? model.prefix_cache_mb * 2 ** 20 : undefined,
    prefillChunk: generative ? model.batching.prefill_chunk : undefined,
    speculation:
      generative && model.speculative
        ? {
            tokens: model.speculative.num_speculative_tokens,
            ngramMax: model.speculative.prompt_lookup_max,
            ngramMin: model.speculative.prompt_lookup_min,
            disableAt: model.speculative.disable_by_batch_size,
            sharedTokens: model.speculative.method === 'suffix' ? model.speculative.suffix_cache_tokens : undefined,
          }
        : undefined,
    tokenizer: model.tokenizer,
    layout: model.sequence || Object.keys(model.constants).length ? { state: model.sequence?.state, constants: model.constants } : undefined,
    multiplex: multiplexSpec(model),
  };
}

/**
 * A multiplexed model's replicas start with its first model open (loadSignatures read its tensors: there is one);
 * a versioned model's open every version served and keep them.
 */
function multiplexSpec(model: ModelConfig): ReplicaStartSpec['multiplex'] {
  if (model.multiplex) return { maxModels: model.multiplex.max_models_per_replica, open: multiplexedIds(model.path).slice(0, 1) };
  const versions = versionsServed(model);
  return versions && { maxModels: versions.length, open: versions };
}

/** A VAD takes one FP32 input of audio windows and gives one probability per window (its state aside). */
function vadTensors(name: string, callerSig: ModelSignature): { input: string; output: string } {
  const [input, ...more] = callerSig.inputs;
  const [output, ...others] = callerSig.outputs;
  const fits = input && output && !more.length && !others.length && input.dtype === 'FP32' && input.shape.length === 2 && output.dtype === 'FP32';
  if (!fits)
    throw new ConfigError(
      `models.${name}.vad: a VAD model takes one FP32 [batch, samples] input and gives one FP32 probability per row, besides its state and constants; this one takes ${callerSig.inputs.map((t) => t.name).join(', ')} and gives ${callerSig.outputs.map((t) => t.name).join(', ')}`,
    );
  return { input: input.name, output: output.name };
}

/** A VAD's windows have one length (context + window samples): callers are told, and any other is a 400, not the model's error. */
function vadSized(model: ModelConfig, sig: ModelSignature): ModelSignature {
  if (!model.vad || sig.inputs.length !== 1 || sig.inputs[0].shape.length !== 2) return sig;
  const [input] = sig.inputs;
  return { ...sig, inputs: [{ ...input, shape: [input.shape[0], model.vad.context + model.vad.window] }] };
}

/** A VAD's audio input warms up as the windows it will take (its length is dynamic, and 1 sample is too few for it). */
function vadWarmup(model: ModelConfig, signature: ModelSignature, layout: ModelLayout): Record<string, number[]> {
  // The audio input is what callers send: the one input that is neither a state nor a constant.
  const [audio, ...more] = callerSignature(signature, layout).inputs;
  return model.vad && audio && !more.length ? { [audio.name]: [1, model.vad.context + model.vad.window] } : {};
}

const onGpu = (m: ModelConfig, gpus: GpuPlacement) => m.device.startsWith('cuda') || (m.device === 'auto' && gpus.gpus > 0);

/** ONNX Runtime threads for each CPU replica: the cores shared by every CPU model's most replicas. */
function cpuThreadsFor(config: Config, gpus: GpuPlacement): number {
  const cpuModels = Object.values(config.models).filter((m) => !onGpu(m, gpus) && !m.remote);
  return cpuThreadsPerReplica(cpuModels.reduce((n, m) => n + maxContainers(m), 0));
}

function checkDevices(config: Config, gpus: GpuPlacement): void {
  for (const [name, model] of Object.entries(config.models)) {
    // Otherwise its replicas would wait forever for a device with room.
    if (model.device === 'cuda' && gpus.gpus === 0 && !model.remote) {
      throw new ConfigError(
        `models.${name}.device: cuda, but no GPU is visible (CUDA_VISIBLE_DEVICES, else nvidia-smi -L); auto falls back to the CPU, cuda:N pins a device`,
      );
    }
  }
}

/**
 * When a model's files last changed: new weights at the same path replace the model too (and a versioned model's
 * versions served: a new version's folder, Triton's way of deploying one, replaces it on the next reload).
 */
async function filesStamp(model: ModelConfig): Promise<string> {
  const paths = versionsServed(model)?.map((v) => multiplexedPath(model.path, v)) ?? [model.path];
  const files = [...paths, model.labels, model.tokenizer, model.ocr?.dictionary].filter((f): f is string => f !== undefined);
  const stamps = await Promise.all(
    files.map((f) =>
      stat(f).then(
        (st) => `${f}:${st.mtimeMs}:${st.size}`,
        () => `${f}:missing`,
      ),
    ),
  );
  return stamps.join('|');
}

// Remote models: as many as there are addresses, unless told fewer.
const maxContainers = (m: ModelConfig) => m.scaling.max_containers ?? (m.remote ? m.remote.length : Math.max(1, m.scaling.min_containers));

/**
 * Everything a config's models need from disk — signatures, tokenizers, labels, dictionaries — read and checked
 * before anything starts (or, on a reload, is swapped in); then a builder of each model.
 */
async function readModels(config: Config): Promise<(name: string, shared: Shared) => Promise<ModelEntry>> {
  const signatures = await loadSignatures(config);
  await checkTokenizers(config);
  const labels = await loadLabels(config);
  const dictionaries = await loadDictionaries(config, signatures);
  return (name, shared) =>
    buildModel(name, config.models[name], signatures.get(name) as ModelSignature, { labels: labels.get(name), dictionary: dictionaries.get(name) }, shared);
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
type ModelEntry = Gateway['models'] extends Map<string, infer E> ? E : never;

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
  const signature = vadSized(model, callerSignature(ownSignature, layout));
  const b = model.batching;
  const s = model.scaling;
  // A decoder with a KV cache gets continuous batching (max_batch_size sequences per replica);
  // every other model the dynamic batcher (max_batch_size rows per batch).
  const generative = generativeSpec(signature);
  // A text encoder is a tensor model with /v1/embeddings in front: texts of any length share its batches.
  const embedding = generative ? null : embeddingSpec(signature);
  const classifier = generative ? null : classifierSpec(signature);
  const encoder = embedding ?? classifier;
  if (generative && model.multiplex)
    throw new ConfigError(`models.${name}.multiplex: the model is generative (its replicas keep sequences' KV caches): multiplexing is for tensor models`);
  if (!generative && model.reasoning_parser)
    throw new ConfigError(`models.${name}.reasoning_parser: the model is not generative (a decoder with a KV cache): it has no answers to split`);
  if (generative && model.path.includes('{version}'))
    throw new ConfigError(`models.${name}.path: the model is generative: versions ({version}) are for tensor models`);
  const generativeTokenizer = generative ? await loadTokenizer(model.tokenizer ?? generative.tokenizer) : undefined;
  const adapters = await loraAdapters(name, model, generative);
  const text = encoder ? await encoderText(name, { ...encoder, tokenizer: model.tokenizer ?? encoder.tokenizer }, log) : undefined;
  if (model.embeddings && !embedding) log.warn({ model: name }, 'embeddings is ignored: the model is not a text encoder (input_ids in, hidden states out)');
  if (generative && model.response_cache_mb > 0)
    throw new ConfigError(
      `models.${name}.response_cache_mb: a generative model draws its tokens, its answers are not kept (prefix_cache_mb keeps its prompts' work)`,
    );
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
      vad: model.vad && { sampleRate: model.vad.sample_rate, window: model.vad.window, context: model.vad.context, ...vadTensors(name, signature) },
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

export async function startGateway(
  config: Config,
  opts: {
    log: Logger;
    provider?: ReplicaProvider;
    gpus?: number;
    telemetry?: Telemetry;
    /** The config file read again, for POST /admin/reload (the CLI's SIGHUP reads it itself). */
    rereadConfig?: () => Promise<Config>;
  },
): Promise<Gateway> {
  const { log } = opts;
  const gpus = new GpuPlacement(opts.gpus ?? visibleGpus());
  checkDevices(config, gpus);
  const t = config.telemetry;
  const telemetry =
    opts.telemetry ??
    new Telemetry({ metrics: t.metrics, traces: { exporter: t.traces.exporter, endpoint: t.traces.endpoint, sampleRatio: t.traces.sample_ratio } });
  const provider = opts.provider ?? new LocalProcessProvider();
  const build = await readModels(config);
  if (gpus.gpus > 0) log.info({ gpus: gpus.gpus }, `${gpus.gpus} GPU(s) visible`);
  let refresh = async (_name: string) => false; // (until reloads are possible, below)
  const shared = { log, provider, gpus, telemetry, cpuThreads: cpuThreadsFor(config, gpus), refresh: (name: string) => refresh(name) };

  const models: Gateway['models'] = new Map();
  for (const name of Object.keys(config.models)) models.set(name, await build(name, { ...shared, placeKey: name }));
  // Ensembles run on the models above and on each other (looked up by name per request): planned now, a problem a ConfigError.
  let plans = planEnsembles(config, (name) => stepView(models.get(name)));
  let ensembles = new Map<string, ServedModel>();
  const served = servedView(models, () => ensembles);
  ensembles = new Map(plans.map((p) => [p.name, ensembleModel(p, served)]));

  const { guard, adminGuard, endpoints } = await security(config); // key material checked before anything starts
  const batches = new BatchControl(config.server.batch_dir ? await batchDisk(config.server.batch_dir) : undefined, (b) =>
    log.info(
      { batch: b.id, answered: b.answered, total: b.total },
      `batch ${b.id} goes on after the restart: ${b.answered} of ${b.total} requests were answered before`,
    ),
  );
  const all = [...models.values()];
  observePools(telemetry, models);
  let server: Listening | undefined;
  let shuttingDown = false;
  const webSocketWork = new QuietWork(); // requests on /v1/ws: the shutdown waits for them as for HTTP requests
  const app = createApp({
    telemetry,
    log,
    models: served,
    guard,
    policy: config.auth.default,
    endpoints,
    maxBodyBytes: config.server.max_body_bytes,
    calls: {
      keepMs: config.server.async_keep_s * 1000,
      maxBytes: config.server.async_max_mb * 2 ** 20,
      afterMs: config.server.async_after_s * 1000,
    },
    clientSharedMemory: config.server.client_shared_memory,
    adminApi: config.server.admin_api,
    adminGuard,
    reload: opts.rereadConfig && (async () => gateway.reload(await (opts.rereadConfig as () => Promise<Config>)())),
    cors: config.server.cors && { origins: config.server.cors.origins, maxAgeS: config.server.cors.max_age_s },
    version: VERSION,
    intakeBusy: () => server?.intakeBusy?.(),
    onServerError: (err, path) => log.error({ path, err: err.message }, 'request failed'),
    shuttingDown: () => shuttingDown,
    websocketPingMs: config.server.websocket_ping_s * 1000,
    sseKeepAliveMs: config.server.sse_keepalive_s * 1000,
    // With intake threads they compress, off the main thread (listen below); else the app does.
    compressResponses: config.server.compress_responses && !config.server.intake_threads,
    batches,
    webSocketWork,
    metricsPort: config.telemetry.metrics_port,
  });
  const tlsConfig = config.server.tls;
  const tls = tlsConfig && { cert: await readFile(tlsConfig.cert), key: await readFile(tlsConfig.key), http2: tlsConfig.http2 };
  try {
    server = await listen(app, {
      port: config.server.port,
      host: config.server.host,
      tls,
      intakeThreads: config.server.intake_threads,
      maxBodyBytes: config.server.max_body_bytes,
      keepAliveTimeoutMs: config.server.keep_alive_timeout_s * 1000,
      sendTimeoutMs: config.server.send_timeout_s * 1000,
      compressResponses: config.server.compress_responses,
      // With intake threads they serve gRPC as well, off the main thread; else listenGrpc below.
      grpcPort: config.server.intake_threads ? config.server.grpc_port : undefined,
      webSocketWork,
      onStalledAnswer: (answer) => {
        telemetry.instruments.connectionsEnded.add(1, { reason: 'send_timeout' });
        log.info({ ...answer }, `an answer's client took none of it for ${config.server.send_timeout_s} s (server.send_timeout_s): ended`);
      },
      onError: (err) => log.error({ err: err.message }, 'an intake thread failed; starting another'),
    });
  } catch (err) {
    await batches.halt(); // (gives its folder up)
    throw cannotListen(err as NodeJS.ErrnoException, config.server);
  }
  const listening = server; // (a const the closure below can use)
  let grpc: GrpcListening | undefined;
  /** A port of its own (gRPC, metrics): one that cannot be bound closes what is open and is a config error. */
  const bindExtra = async <T>(setting: string, port: number, bind: () => Promise<T>): Promise<T> => {
    try {
      return await bind();
    } catch (err) {
      await listening.close(0);
      await grpc?.close(0);
      await batches.halt();
      const { code, message } = err as NodeJS.ErrnoException;
      throw new ConfigError(`${setting}: port ${port} on ${config.server.host} cannot be used (${code ?? message})`);
    }
  };
  const grpcPort = config.server.grpc_port;
  if (grpcPort !== undefined && !config.server.intake_threads) {
    grpc = await bindExtra('server.grpc_port', grpcPort, () =>
      listenGrpc(app, { port: grpcPort, host: config.server.host, tls, maxBodyBytes: config.server.max_body_bytes }),
    );
  }
  const grpcBound = grpc?.port ?? server.grpcPort;
  if (grpcBound !== undefined)
    log.info({ grpcPort: grpcBound }, `KServe v2 gRPC on port ${grpcBound} (server.grpc_port${server.grpcPort ? ', on the intake threads' : ''})`);
  let metrics: Awaited<ReturnType<typeof listenForMetrics>> | undefined;
  const metricsPort = config.telemetry.metrics_port;
  if (metricsPort !== undefined) {
    metrics = await bindExtra('telemetry.metrics_port', metricsPort, () => listenForMetrics(telemetry, config.server.host, metricsPort));
    log.info({ metricsPort: metrics.port }, `metrics on port ${metrics.port} (telemetry.metrics_port)`);
  }
  const scheme = tls ? (tls.http2 ? 'https (HTTP/2 + HTTP/1.1)' : 'https') : 'http';
  const threads = config.server.intake_threads;
  log.info(
    { port: server.port, scheme, models: [...models.keys()], intakeThreads: threads },
    `infergate listening on port ${server.port} (${scheme}${threads ? `, ${threads} intake thread${threads > 1 ? 's' : ''}` : ''})`,
  );
  // Listening before the min_containers replicas are up: /v2/health/live answers while they warm up (a liveness
  // probe must not restart a gateway whose CUDA warm-up is slow) and /v2/health/ready says 503 until they are.
  // One that cannot start still fails the start, as Triton's --exit-on-error does.
  try {
    await Promise.all(
      all.map((m) =>
        m.pool.startReplicas(config.models[m.name].scaling.min_containers).catch((err: Error) => {
          throw new ConfigError(`models.${m.name}: ${err.message} (its min_containers must be up to start)`);
        }),
      ),
    );
  } catch (err) {
    await server.close(0);
    await grpc?.close(0);
    await Promise.all(all.map((m) => m.pool.stop()));
    await batches.halt();
    await metrics?.close();
    throw err;
  }
  for (const m of all) m.autoscaler.start();
  batches.start(); // batches kept from before a restart go on

  // A model leaves service (replaced or removed): it takes no new requests already, answers what it accepted, then stops.
  const retiring = new Set<Promise<void>>();
  const retire = (m: ModelEntry) => {
    m.retire(models.get(m.name));
    const done = (async () => {
      await m.queue.idle();
      m.autoscaler.stop();
      m.queue.close();
      await m.pool.stop();
    })().catch((err) => log.error({ model: m.name, err: (err as Error).message }, 'stopping a retired model failed'));
    retiring.add(done);
    void done.finally(() => retiring.delete(done));
  };
  let running = config;
  let stamps = await stampsOf(config);
  let generation = 0;
  let reloads = Promise.resolve() as Promise<unknown>;
  /** `only`: that model alone is replaced if it changed (Triton's load of a loaded model); the others are left as they are. */
  const reload = async (next: Config, only?: string): Promise<ReloadReport> => {
    checkDevices(next, gpus);
    for (const e of config.endpoints)
      if (
        !next.models[e.model] &&
        !next.ensembles[e.model] &&
        !Object.values(next.models).some((m) => m.lora_adapters?.[e.model] || m.aliases.includes(e.model))
      )
        throw new ConfigError(`endpoint ${e.path} serves model ${e.model}, which the new config removes: endpoints change only with a restart`);
    const build = await readModels(next);
    const nextStamps = await stampsOf(next);
    // (a versioned model whose version_traffic alone changed keeps running: its split moves in place, as KServe's
    // canary percent moves without new pods; so do a generative model's LoRA adapters, which replicas read by path)
    const apart = (m: ModelConfig | undefined) => JSON.stringify(m && { ...m, version_traffic: undefined, lora_adapters: undefined, aliases: undefined });
    const same = (name: string) =>
      (only !== undefined && name !== only) || (apart(running.models[name]) === apart(next.models[name]) && stamps.get(name) === nextStamps.get(name));
    const names = Object.keys(next.models);
    // Models kept running whose setting `key` changed: it is applied in place.
    const changedInPlace = (key: 'version_traffic' | 'lora_adapters' | 'aliases') =>
      names.filter((n) => models.has(n) && same(n) && JSON.stringify(running.models[n]?.[key]) !== JSON.stringify(next.models[n][key]));
    const retuned = changedInPlace('version_traffic');
    const adapted = changedInPlace('lora_adapters');
    const renamed = changedInPlace('aliases');
    const report: ReloadReport = {
      added: names.filter((n) => !models.has(n)),
      replaced: names.filter((n) => models.has(n) && !same(n)),
      removed: [...models.keys()].filter((n) => !next.models[n]),
      unchanged: names.filter((n) => models.has(n) && same(n)),
      restart_required: (['server', 'auth', 'endpoints', 'telemetry'] as const).filter((k) => JSON.stringify(config[k]) !== JSON.stringify(next[k])),
      ...(retuned.length > 0 && { version_traffic: retuned }),
      ...(adapted.length > 0 && { lora_adapters: adapted }),
      ...(renamed.length > 0 && { aliases: renamed }),
    };
    // Every new model is built and warm before any is swapped in: a failure leaves the running ones as they were.
    const fresh = new Map<string, ModelEntry>();
    let nextPlans: EnsemblePlan[] = [];
    const nextShared = { ...shared, cpuThreads: cpuThreadsFor(next, gpus) };
    // Adapters changed in place are read before anything changes, and applied with the rest.
    const readapt = await Promise.all(
      adapted.map((name) => {
        const adapters = models.get(name)?.generation?.adapters;
        if (!adapters) throw new ConfigError(`models.${name}.lora_adapters: the model takes no LoRA adapters (models/gpt.py --lora)`);
        return adapters.prepare(running.models[name]?.lora_adapters ?? {}, next.models[name].lora_adapters ?? {}).catch((err: Error) => {
          throw new ConfigError(`models.${name}.lora_adapters.${err.message}`);
        });
      }),
    );
    try {
      for (const name of [...report.added, ...report.replaced]) fresh.set(name, await build(name, { ...nextShared, placeKey: `${name}#${++generation}` }));
      nextPlans = planEnsembles(next, (name) => stepView(fresh.get(name) ?? (next.models[name] ? models.get(name) : undefined)));
      await Promise.all(
        [...fresh].map(([name, m]) => {
          const { min_containers } = next.models[name].scaling;
          // A replacement starts as many replicas as its predecessor has ready (within its bounds), so it takes the load at once.
          const serving = models.get(name)?.pool.readyCount() ?? 0;
          return m.pool.startReplicas(Math.min(maxContainers(next.models[name]), Math.max(min_containers, serving)));
        }),
      );
    } catch (err) {
      await Promise.all([...fresh.values()].map((m) => m.pool.stop()));
      throw err;
    }
    for (const m of fresh.values()) m.autoscaler.start();
    const leaving = [...report.replaced, ...report.removed].map((n) => models.get(n) as ModelEntry);
    for (const name of report.removed) models.delete(name);
    for (const [name, m] of fresh) {
      // A stateful model's sequences go on across its replacement when its states are the same.
      const before = models.get(name);
      const sameStates = JSON.stringify(before?.sequences?.states) === JSON.stringify(m.sequences?.states);
      if (before?.sequenceStore && m.sequenceStore && sameStates) m.sequenceStore.adopt(before.sequenceStore);
      models.set(name, m);
    }
    for (const m of leaving) retire(m);
    // An ensemble planned as before is kept (its counters go on); the others are new.
    const before = new Map(plans.map((p) => [p.name, JSON.stringify(p)]));
    const kept = new Set(nextPlans.filter((p) => before.get(p.name) === JSON.stringify(p)).map((p) => p.name));
    if (plans.length + nextPlans.length > 0)
      report.ensembles = {
        added: nextPlans.filter((p) => !before.has(p.name)).map((p) => p.name),
        replaced: nextPlans.filter((p) => before.has(p.name) && !kept.has(p.name)).map((p) => p.name),
        removed: plans.filter((p) => !nextPlans.some((n) => n.name === p.name)).map((p) => p.name),
        unchanged: [...kept],
      };
    ensembles = new Map(nextPlans.map((p) => [p.name, kept.has(p.name) ? (ensembles.get(p.name) as ServedModel) : ensembleModel(p, served)]));
    plans = nextPlans;
    for (const apply of readapt) apply();
    for (const name of renamed) (models.get(name) as ModelEntry).aliases = next.models[name].aliases;
    for (const name of retuned) {
      const versions = models.get(name)?.versions;
      if (versions) versions.unnamed = unnamedVersion(versions.served, next.models[name].version_traffic);
    }
    running = next;
    if (only === undefined) stamps = nextStamps;
    else stamps.set(only, nextStamps.get(only) as string);
    log.info(report, 'config reloaded');
    if (report.restart_required.length) log.warn({ sections: report.restart_required }, 'these config sections changed but take effect only on restart');
    return report;
  };

  // One at a time, in the order asked.
  const reloadInTurn = (next: Config, only?: string) => {
    const done = reloads.then(() => reload(next, only));
    reloads = done.catch(() => {});
    return done;
  };
  // Triton's load of a loaded model: reloaded if its files changed since it was built (as the repository has it now).
  refresh = async (name) => {
    const model = running.models[name];
    if (!model || (await filesStamp(model)) === stamps.get(name)) return false;
    await reloadInTurn(running, name);
    await models.get(name)?.control?.load(); // (loaded means in memory: a replica at least, as Triton's load)
    return true;
  };

  let stopping: Promise<void> | undefined;
  const gateway: Gateway = {
    port: server.port,
    metricsPort: metrics?.port,
    grpcPort: grpcBound,
    telemetry,
    models,
    reload: (next) => reloadInTurn(next),
    shutdown({ now = false } = {}) {
      stopping ??= (async () => {
        shuttingDown = true;
        stopPolling?.();
        server.leave(); // answers from now on send their connections to other replicas
        const delayS = now ? 0 : config.server.shutdown_delay_s;
        if (delayS > 0) {
          log.info(`shutting down: not ready, still serving for ${delayS} s (server.shutdown_delay_s)`);
          await new Promise((r) => setTimeout(r, delayS * 1000));
        }
        log.info('shutting down: finishing accepted requests');
        // Accepted requests may still need a cold start: the autoscalers keep running until they are answered.
        await Promise.all([server.close(config.server.shutdown_timeout_s * 1000), grpc?.close(config.server.shutdown_timeout_s * 1000)]);
        await batches.halt(); // lines in flight are answered and written down; with batch_dir the rest after a restart
        await reloads;
        const all = [...models.values()];
        for (const m of all) m.autoscaler.stop();
        await Promise.all(all.map((m) => m.queue.idle()));
        for (const m of all) m.queue.close();
        await Promise.all([...all.map((m) => m.pool.stop()), ...retiring]);
        await metrics?.close();
        await telemetry.shutdown();
        log.info('shutdown complete');
      })();
      return stopping;
    },
  };
  const stopPolling =
    config.server.repository_poll_s > 0 && opts.rereadConfig
      ? pollRepository({
          everyMs: config.server.repository_poll_s * 1000,
          reread: opts.rereadConfig,
          fingerprint: async (c) => JSON.stringify([c, [...(await stampsOf(c))]]),
          running: () => JSON.stringify([running, [...stamps]]),
          reload: (c) => gateway.reload(c),
          log,
        })
      : undefined;
  return gateway;
}

/** Each model's files stamp, by model name. */
const stampsOf = async (config: Config): Promise<Map<string, string>> =>
  new Map(await Promise.all(Object.entries(config.models).map(async ([n, m]) => [n, await filesStamp(m)] as const)));

/** The Batch API's folder (server.batch_dir), with what it kept; one it cannot use is a config error. */
async function batchDisk(dir: string): Promise<BatchDisk> {
  try {
    return await BatchDisk.open(dir);
  } catch (err) {
    throw new ConfigError(`server.batch_dir: cannot keep batches in ${dir}: ${(err as Error).message}`);
  }
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

/** What planning an ensemble needs of a model: its tensors as callers send them, and whether it may be a step. */
type StepView = { signature: ModelSignature; generative: boolean; stateful: boolean; multiplexed: boolean; versions?: readonly string[] };

/**
 * The config's ensembles over models found by `modelOf`, and over each other (a step may be an ensemble: planned
 * first, its tensors are the step's); one that does not fit its models, or runs itself, is a ConfigError.
 */
function planEnsembles(config: Config, modelOf: (name: string) => StepView | undefined): EnsemblePlan[] {
  const plans = new Map<string, EnsemblePlan>();
  const planning: string[] = [];
  const plan = (name: string): EnsemblePlan => {
    const done = plans.get(name);
    if (done) return done;
    if (planning.includes(name)) throw new ConfigError(`ensembles.${name}: it runs itself (${[...planning.slice(planning.indexOf(name)), name].join(' → ')})`);
    planning.push(name);
    try {
      const made = planEnsemble(name, config.ensembles[name], (model) => {
        if (config.ensembles[model]) return { signature: plan(model).signature };
        const m = modelOf(model);
        if (!m) return undefined;
        const refusal = m.generative
          ? 'it is generative: an ensemble runs tensor models'
          : m.stateful
            ? 'it is stateful (its requests belong to sequences): an ensemble runs stateless tensor models'
            : m.multiplexed
              ? 'it is multiplexed (a request names one of its models by header): an ensemble runs single models'
              : undefined;
        return { signature: m.signature, versions: m.versions, refusal };
      });
      plans.set(name, made);
      return made;
    } catch (err) {
      throw err instanceof ConfigError ? err : new ConfigError((err as Error).message);
    } finally {
      planning.pop();
    }
  };
  return Object.keys(config.ensembles).map(plan);
}

const stepView = (m: ServedModel | undefined): StepView | undefined =>
  m && {
    signature: m.signature,
    generative: Boolean(m.generation),
    stateful: Boolean(m.sequences),
    multiplexed: Boolean(m.multiplexed),
    versions: m.versions?.served,
  };

/** `infergate validate`: the config's ensembles, planned against the models' files (signatures as callers see them). */
export function checkEnsembles(config: Config, signatures: ReadonlyMap<string, ModelSignature>): EnsemblePlan[] {
  return planEnsembles(config, (name) => {
    const [model, own] = [config.models[name], signatures.get(name)];
    if (!model || !own) return undefined;
    const signature = vadSized(model, callerSignature(own, layoutOf(name, model, own)));
    return {
      signature,
      generative: Boolean(generativeSpec(signature)),
      stateful: Boolean(model.sequence),
      multiplexed: Boolean(model.multiplex),
      versions: versionsServed(model),
    };
  });
}

/** Models and ensembles as the routes see them: one map, read through (a reload changes both); a model found by an alias too. */
function servedView(models: ReadonlyMap<string, ServedModel>, ensembles: () => ReadonlyMap<string, ServedModel>): ReadonlyMap<string, ServedModel> {
  const all = () => (ensembles().size ? new Map([...models, ...ensembles()]) : models); // (no copy without ensembles)
  // A model by one of its aliases (looked up only when no model or ensemble has the name; listed under its own).
  const aliased = (name: string) => {
    for (const m of models.values()) if (m.aliases?.includes(name)) return m;
    return undefined;
  };
  return {
    get: (name) => models.get(name) ?? ensembles().get(name) ?? aliased(name),
    has: (name) => models.has(name) || ensembles().has(name) || aliased(name) !== undefined,
    get size() {
      return models.size + ensembles().size;
    },
    forEach: (each, self) => all().forEach(each, self),
    entries: () => all().entries(),
    keys: () => all().keys(),
    values: () => all().values(),
    [Symbol.iterator]: () => all()[Symbol.iterator](),
  };
}
