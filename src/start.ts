import { lookup } from 'node:dns/promises';
import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import type { Logger } from 'pino';
import { type Autoscaler, GpuPlacement, LocalProcessProvider, type ReplicaPool, type ReplicaProvider, visibleGpus } from './autoscaler/index.js';
import type { Batcher, EnsemblePlan, GenerationScheduler, Sequences } from './batcher/index.js';
import type { Config, ModelConfig, RateLimitConfig } from './config/index.js';
import { ConfigError, fleetSecretNeeded, fleetSelf } from './config/index.js';
import { planEnsembles, servedView, stepView } from './ensemble-plan.js';
import {
  authenticate,
  BatchControl,
  BatchDisk,
  Capture,
  createApp,
  type EndpointRoute,
  endpointProblems,
  ensembleModel,
  Fleet,
  FleetSequences,
  type GrpcListening,
  InFlight,
  jwtVerifier,
  type Listening,
  listen,
  listenForMetrics,
  listenGrpc,
  type Policy,
  QuietWork,
  RateLimiter,
  rateLimit,
  type ServedModel,
  SharedLimits,
  shadowProblems,
} from './gateway/index.js';
import { type ModelEntry, readModels } from './model-build.js';
import { filesStamp } from './model-files.js';
import { shadowVersion, unnamedVersion } from './models/index.js';
import { checkDevices, cpuThreadsFor, maxContainers } from './replica-plan.js';
import { pollRepository } from './repository-poll.js';
import { GpuMonitor, observeGpus, observePools, Telemetry } from './telemetry/index.js';
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
  /** Versioned models among `unchanged` whose version_traffic split or version_shadow moved (in place, nothing restarted). */
  version_traffic?: string[];
  /** Generative models among `unchanged` whose lora_adapters changed (in place, nothing restarted). */
  lora_adapters?: string[];
  /** Models among `unchanged` whose aliases changed (in place). */
  aliases?: string[];
  /** Models among `unchanged` whose shadow changed (in place). */
  shadow?: string[];
};

/** server.fleet.shared_limits: every rate limiter's spends told to the fleet's other gateways, and theirs taken here. */
function sharedLimitsOf(config: Config, fleet: Fleet, limiters: Map<string, RateLimiter>, log: Logger, telemetry: Telemetry): SharedLimits | undefined {
  const shared = config.server.fleet?.shared_limits;
  if (!shared) return undefined;
  let warned = 0;
  const limits = new SharedLimits(fleet, shared.every_ms, (peer, err) => {
    telemetry.instruments.limitsTold.add(1, { peer, result: err ? 'failed' : 'told' });
    // (a gateway down is said once a minute at most: its limits run loose by what it misses)
    if (!err || Date.now() - warned < 60_000) return;
    warned = Date.now();
    log.warn({ peer, err: err.message }, 'server.fleet.shared_limits: a gateway could not be told what callers spent here');
  });
  for (const [name, limiter] of limiters) limits.share(name, limiter);
  limits.start();
  return limits;
}

/** Each model's shadow (config shadow) can answer its requests, and each endpoint's protocol serve its model, or the config is refused. */
function checkShadows(config: Config, get: (name: string) => ServedModel | undefined): void {
  const problems = [...shadowProblems(config.models, get), ...endpointProblems(config, get)];
  if (problems.length > 0) throw new ConfigError(problems.join('\n'));
}

/**
 * server.tls's certificate and key, read and checked to be a PEM certificate and its key — a file missing or not
 * one is a config error naming the option (it was a stack trace at listen); `infergate validate` reads them too.
 */
export async function readTls(config: Config): Promise<{ cert: Buffer; key: Buffer; http2: boolean } | undefined> {
  const tls = config.server.tls;
  if (!tls) return undefined;
  const read = (option: 'cert' | 'key') =>
    readFile(tls[option]).catch((err: Error) => Promise.reject(new ConfigError(`server.tls.${option}: cannot read ${tls[option]}: ${err.message}`)));
  const [cert, key] = [await read('cert'), await read('key')];
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    throw new ConfigError(`server.tls: ${tls.cert} and ${tls.key} are not a PEM certificate and its private key: ${(err as Error).message}`);
  }
  return { cert, key, http2: tls.http2 };
}

/** A port that cannot be bound, said as the setting to change (the socket error's stack says nothing more). */
function cannotListen(err: NodeJS.ErrnoException, server: Config['server']): Error {
  // (an intake thread's gRPC port: said so by the thread, its error's code lost on the way)
  if (err.message?.startsWith('server.grpc_port:')) return new ConfigError(err.message);
  const where = `port ${server.port} on ${server.host}`;
  if (err.code === 'EADDRINUSE') return new ConfigError(`server.port: ${where} is in use by another process (set server.port or $PORT)`);
  if (err.code === 'EACCES') return new ConfigError(`server.port: ${where} needs privileges this process lacks (ports below 1024; or use one above)`);
  if (err.code === 'EADDRNOTAVAIL') return new ConfigError(`server.host: ${server.host} is not an address of this machine`);
  if (err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN') return new ConfigError(`server.host: ${server.host} is not a name this machine can resolve`);
  return err;
}

/** The auth and rate-limit middleware of the built-in routes and of each configured endpoint. */
async function security(config: Config): Promise<{
  guard: ReturnType<typeof authenticate>[];
  adminGuard: ReturnType<typeof authenticate>[];
  endpoints: EndpointRoute[];
  /** Every rate limiter, by a name each gateway of a fleet gives it alike (they share one config). */
  limiters: Map<string, RateLimiter>;
}> {
  const verify = config.auth.jwt ? await jwtVerifier(config.auth.jwt) : undefined;
  const keys = new Map(config.auth.keys.map((k) => [k.id, { secret: k.secret, priority: k.priority }]));
  const limiters = new Map<string, RateLimiter>();
  const limiter = (name: string, perSecond: number, burst: number) => limiters.set(name, new RateLimiter({ perSecond, burst })).get(name);
  const guardFor = (where: string, policy: Policy, scopes: string[], limit?: RateLimitConfig) => [
    authenticate({ policy, scopes, verify, keys }),
    ...(limit
      ? [
          rateLimit({
            requests:
              limit.per_second === undefined
                ? undefined
                : limiter(`${where}.requests`, limit.per_second, limit.burst ?? Math.max(1, Math.ceil(limit.per_second))),
            tokens: limit.tokens_per_minute === undefined ? undefined : limiter(`${where}.tokens`, limit.tokens_per_minute / 60, limit.tokens_per_minute),
            concurrent: limit.max_concurrent === undefined ? undefined : new InFlight(limit.max_concurrent),
          }),
        ]
      : []),
  ];
  const a = config.auth;
  const open = a.default === 'public' && !a.rate_limit;
  return {
    guard: open ? [] : guardFor('auth', a.default, a.scopes, a.rate_limit),
    // Runtime changes also need the admin scopes (under jwt; the guard above has authenticated already).
    adminGuard: a.default === 'jwt' && a.admin_scopes.length > 0 ? [authenticate({ policy: 'jwt', scopes: a.admin_scopes, verify, keys })] : [],
    endpoints: config.endpoints.map((e) => ({
      path: e.path,
      model: e.model,
      protocol: e.protocol,
      guard: guardFor(`endpoints.${e.path}`, e.auth ?? a.default, e.scopes, e.rate_limit ?? a.rate_limit),
      policy: e.auth ?? a.default,
      maxBodyBytes: e.max_body_bytes,
    })),
    limiters,
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
  checkShadows(config, (name) => models.get(name));

  const { guard, adminGuard, endpoints, limiters } = await security(config); // key material checked before anything starts
  const tls = await readTls(config);
  const capture = config.capture && new Capture(config.capture, (result) => telemetry.instruments.captured.add(1, { result }));
  fleetSecretNeeded(config); // (a config given directly, not loaded from its file)
  const fleet = fleetOf(config, (peer, status) => telemetry.instruments.forwarded.add(1, { peer, status: String(status) }));
  await fleet?.start((err) => log.warn({ err: err.message }, 'server.fleet.discover: the lookup failed; the gateways known before are kept'));
  const sharedLimits = fleet && sharedLimitsOf(config, fleet, limiters, log, telemetry);
  // (with the fleet's secret, a sequence moves with its state between gateways; ensembles keep none)
  const fleetSequences = fleet?.hasSecret
    ? new FleetSequences(
        fleet,
        (name) => models.get(name),
        (peer, how) => telemetry.instruments.sequencesTaken.add(1, { peer, how }),
        config.server.fleet?.sequence_backup ? (peer, result, copies) => telemetry.instruments.sequenceBackups.add(copies, { peer, result }) : undefined,
      )
    : undefined;
  const batches = new BatchControl(config.server.batch_dir ? await batchDisk(config.server.batch_dir) : undefined, (b) =>
    log.info(
      { batch: b.id, answered: b.answered, total: b.total },
      `batch ${b.id} goes on after the restart: ${b.answered} of ${b.total} requests were answered before`,
    ),
  );
  for (const [what, kept] of [
    ['a kept response', batches.disk?.responses],
    ['a background response', batches.disk?.background],
    ['a conversation', batches.disk?.conversations],
  ] as const)
    if (kept) kept.failed = (err) => log.warn({ err: err.message }, `could not write ${what} to server.batch_dir (kept in memory only)`);
  const all = [...models.values()];
  observePools(telemetry, models);
  const gpuMonitor = t.gpu_metrics
    ? new GpuMonitor({
        maxAgeMs: t.gpu_metrics_interval_ms,
        onError: (err) => log.warn({ err: err.message }, 'nvidia-smi failed: no GPU metrics until it answers again'),
      })
    : undefined;
  if (gpuMonitor) observeGpus(telemetry, gpuMonitor, models);
  let server: Listening | undefined;
  let shuttingDown = false;
  const webSocketWork = new QuietWork(); // requests on /v1/ws: the shutdown waits for them as for HTTP requests
  let running = config; // (a reload's config once it has applied it)
  const app = createApp({
    shadows: { of: (name) => running.models[name]?.shadow, active: () => Object.values(running.models).some((m) => m.shadow) },
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
    conversationsKeepMs: config.server.conversations_keep_s * 1000,
    fleet,
    sharedLimits,
    fleetSequences,
    capture,
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
    gpus: gpuMonitor,
  });
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
    const apart = (m: ModelConfig | undefined) =>
      JSON.stringify(m && { ...m, version_traffic: undefined, version_shadow: undefined, shadow: undefined, lora_adapters: undefined, aliases: undefined });
    const same = (name: string) =>
      (only !== undefined && name !== only) || (apart(running.models[name]) === apart(next.models[name]) && stamps.get(name) === nextStamps.get(name));
    const names = Object.keys(next.models);
    // Models kept running whose setting `key` changed: it is applied in place.
    const changedInPlace = (key: 'version_traffic' | 'version_shadow' | 'shadow' | 'lora_adapters' | 'aliases') =>
      names.filter((n) => models.has(n) && same(n) && JSON.stringify(running.models[n]?.[key]) !== JSON.stringify(next.models[n][key]));
    const retuned = [...new Set([...changedInPlace('version_traffic'), ...changedInPlace('version_shadow')])];
    const adapted = changedInPlace('lora_adapters');
    const renamed = changedInPlace('aliases');
    const reshadowed = changedInPlace('shadow'); // (read from the running config per request: nothing to apply)
    const report: ReloadReport = {
      added: names.filter((n) => !models.has(n)),
      replaced: names.filter((n) => models.has(n) && !same(n)),
      removed: [...models.keys()].filter((n) => !next.models[n]),
      unchanged: names.filter((n) => models.has(n) && same(n)),
      restart_required: (['server', 'auth', 'endpoints', 'telemetry', 'capture'] as const).filter((k) => JSON.stringify(config[k]) !== JSON.stringify(next[k])),
      ...(retuned.length > 0 && { version_traffic: retuned }),
      ...(adapted.length > 0 && { lora_adapters: adapted }),
      ...(renamed.length > 0 && { aliases: renamed }),
      ...(reshadowed.length > 0 && { shadow: reshadowed }),
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
      checkShadows(next, (name) => fresh.get(name) ?? (next.models[name] ? models.get(name) : undefined));
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
      if (versions) {
        versions.unnamed = unnamedVersion(versions.served, next.models[name].version_traffic);
        versions.shadow = shadowVersion(next.models[name].version_shadow);
      }
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
  const saidHanded = ({ handed, lost }: { handed: number; lost: number }) => {
    if (handed + lost > 0) log.info({ handed, lost }, `${handed} sequence(s) handed to the fleet's other gateways with their state (${lost} lost)`);
  };
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
        // A fleet's sequences go to their next holders before the drain (its listener closed, none could ask for them).
        if (fleetSequences) saidHanded(await fleetSequences.leave(models.values()));
        log.info('shutting down: finishing accepted requests');
        // Accepted requests may still need a cold start: the autoscalers keep running until they are answered.
        await Promise.all([server.close(config.server.shutdown_timeout_s * 1000), grpc?.close(config.server.shutdown_timeout_s * 1000)]);
        await sharedLimits?.stop(); // (the last requests' spends told to the fleet)
        if (fleetSequences) saidHanded(await fleetSequences.handAll(models.values())); // (any the drain's requests started)
        fleet?.stop(); // (its connections served the drain's forwarded requests and that last telling)
        await batches.halt(); // lines in flight are answered and written down; with batch_dir the rest after a restart
        await reloads;
        const all = [...models.values()];
        for (const m of all) m.autoscaler.stop();
        await Promise.all(all.map((m) => m.queue.idle()));
        for (const m of all) m.queue.close();
        await Promise.all([...all.map((m) => m.pool.stop()), ...retiring]);
        await capture?.flush(); // (the last answers' captures sent and written)
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

/** server.fleet: this gateway among the others (how they reach it, unsaid, is a config error). */
/** server.fleet's gateways (found by DNS when it says so), or undefined without a fleet. */
export function fleetOf(config: Config, sent?: ConstructorParameters<typeof Fleet>[2]): Fleet | undefined {
  const fleet = config.server.fleet;
  if (!fleet) return undefined;
  const found = fleet.discover;
  // Found by DNS (a headless Service: every ready pod's address), each address a gateway at the port.
  const peers = found
    ? {
        find: async () =>
          (await lookup(found.dns, { all: true })).map(({ address, family }) => `${found.scheme}://${family === 6 ? `[${address}]` : address}:${found.port}`),
        everyMs: found.every_s * 1000,
      }
    : (fleet.peers as string[]);
  return new Fleet(fleetSelf(config) as string, peers, sent, config.server.fleet?.secret);
}

/** The Batch API's folder (server.batch_dir), with what it kept; one it cannot use is a config error. */
async function batchDisk(dir: string): Promise<BatchDisk> {
  try {
    return await BatchDisk.open(dir);
  } catch (err) {
    throw new ConfigError(`server.batch_dir: cannot keep batches in ${dir}: ${(err as Error).message}`);
  }
}
