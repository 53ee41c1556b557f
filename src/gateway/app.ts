import { type Context, Hono, type MiddlewareHandler } from 'hono';
import { cors } from 'hono/cors';
import { HTTPException } from 'hono/http-exception';
import { requestId } from 'hono/request-id';
import type { Logger } from 'pino';
import { GatewayError } from '../errors/index.js';
import { type GpuMonitor, type LatencyWindow, Telemetry } from '../telemetry/index.js';
import { adminRoutes } from './admin.js';
import { audioRoutes } from './audio.js';
import type { Policy } from './auth/middleware.js';
import { asyncCalls, Calls, type CallsOptions, callRoutes, type Dispatch, measureCalls } from './calls.js';
import type { Capture } from './capture.js';
import { compressAnswers } from './compress.js';
import { CONNECTION_HEADERS, type QuietWork } from './drain.js';
import { type Fleet, forwardByPath, randomId } from './fleet.js';
import { FleetSequences } from './fleet-sequences.js';
import { infer, kserveRoutes, metadata } from './kserve/routes.js';
import { settingsRoutes } from './kserve/settings.js';
import { SharedMemoryRegions } from './kserve/shared-memory.js';
import { loraRoutes } from './lora.js';
import { observe, observeRoutes } from './observe.js';
import { ocrRoutes } from './ocr.js';
import { anthropicError } from './openai/anthropic.js';
import { BATCH_PRIORITY, type BatchControl, type BatchLineEnv } from './openai/batch-store.js';
import { batchRoutes } from './openai/batches.js';
import { Conversations, conversationRoutes, measureConversations } from './openai/conversations.js';
import { ENCODERS, encoderOf } from './openai/encoder.js';
import { resumeBackground } from './openai/responses-kept.js';
import { chat, completions, embeddingsRoute, generativeModelOf, messagesRoute, openaiError, openaiRoutes, responsesRoute } from './openai/routes.js';
import { measureStoredResponses, StoredResponses } from './openai/stored-responses.js';
import { openApiRoutes } from './openapi.js';
import { sagemakerRoutes } from './sagemaker.js';
import { type ShadowOptions, shadowMessage, shadowTraffic } from './shadow.js';
import { SharedLimits } from './shared-limits.js';
import { TGI_ROUTES, tgiError, tgiRoutes } from './tgi.js';
import type { GatewayEnv, ServedModel } from './types.js';
import { wsRoutes } from './ws.js';

/** A public path of the config, bound to one model and protocol, with its own guard (auth, rate limit). */
export type EndpointRoute = {
  path: string;
  model: string;
  protocol: 'kserve' | 'openai-chat' | 'openai-completions' | 'openai-responses' | 'openai-embeddings' | 'anthropic-messages';
  guard: MiddlewareHandler<GatewayEnv>[];
  /** Its auth, as the OpenAPI document says it (`guard` enforces it). @default public */
  policy?: Policy;
  maxBodyBytes?: number;
};

export type AppOptions = {
  /** Middleware run before the built-in model, OpenAI and admin routes (health stays open). @default [] */
  guard?: MiddlewareHandler<GatewayEnv>[];
  /** The built-in routes' auth, as the OpenAPI document says it (`guard` enforces it). @default public */
  policy?: Policy;
  endpoints?: EndpointRoute[];
  models: ReadonlyMap<string, ServedModel>;
  /** @default 67108864 (64 MiB) */
  maxBodyBytes?: number;
  /** Triton's system shared-memory extension (server.client_shared_memory). @default false */
  clientSharedMemory?: boolean;
  /** Runtime changes through the admin API (server.admin_api), and what they need beyond `guard`. @default false */
  adminApi?: boolean;
  /** Re-reads the config file and applies its models (POST /admin/reload). */
  reload?: () => Promise<object>;
  adminGuard?: MiddlewareHandler<GatewayEnv>[];
  version?: string;
  /** Spans, metrics (/metrics) and the dashboard's numbers. @default metrics on, traces off */
  telemetry?: Telemetry;
  /** One info line per request. */
  log?: Logger;
  /** Each intake thread's busy share, for /admin/stats (server.intake_threads; known once the gateway listens). */
  intakeBusy?: () => number[] | undefined;
  /** Told about every 5xx. */
  onServerError?: (err: Error, path: string) => void;
  /** Browsers may call from these origins (server.cors). @default none: same origin only */
  cors?: { origins: '*' | string[]; maxAgeS: number };
  /** True once shutdown has begun (the health routes say not ready). */
  shuttingDown?: () => boolean;
  /** Where the Batch API keeps its work, and its start and stop with the gateway. @default in memory, at once */
  batches?: BatchControl;
  /** Requests on /v1/ws sockets, for the server's shutdown to wait for (the same object goes to listen()). */
  webSocketWork?: QuietWork;
  /** telemetry.metrics_port: GET /metrics is served there (start.ts), and a 404 here. */
  metricsPort?: number;
  /** The GPUs for /admin/stats (telemetry.gpu_metrics). @default none */
  gpus?: GpuMonitor;
  /** Ping interval on /v1/ws sockets (server.websocket_ping_s). @default 30000 */
  websocketPingMs?: number;
  /** Token streams opened without a first token after this long, and kept alive by a comment this often (0: neither). @default 15000 */
  sseKeepAliveMs?: number;
  /** JSON and text answers compressed for clients that accept it (server.compress_responses). @default false */
  compressResponses?: boolean;
  /** Data capture (config `capture`): a sample of model requests and answers sent and/or written as they were. */
  capture?: Capture;
  /** server.fleet.shared_limits: the callers' spends the other gateways tell (POST /fleet/limits). @default none */
  sharedLimits?: SharedLimits;
  /** With the fleet's secret: sequences handed between its gateways (see FleetSequences). */
  fleetSequences?: FleetSequences;
  /** Shadow traffic (config `shadow`): the running config's shadow of a model, and whether any has one. @default none */
  shadows?: { of: (model: string) => { model: string; percent: number } | undefined; active: () => boolean };
  /** Other gateways behind the same load balancer (server.fleet), each keeping its own responses, calls and batches. */
  fleet?: Fleet;
  /** Asynchronous inference (server.async_*): answers kept, and when a slow request is redirected to its own. @default 600 s, 256 MiB, never */
  calls?: CallsOptions;
  /** How long a conversation (the Conversations API) is kept after its last use, in ms. @default one day */
  conversationsKeepMs?: number;
};

/** vLLM's routes outside /v1: guarded like the built-in ones, answering OpenAI's error object. */
const VLLM_ROUTES = ['/tokenize', '/detokenize', '/rerank', '/v2/rerank', '/score', '/classify'];

/** Headers a browser page may read from an answer (besides the CORS-safelisted ones). */
const EXPOSED_HEADERS = [
  'x-request-id',
  'request-id',
  'inference-header-content-length',
  'retry-after',
  'ratelimit-limit',
  'ratelimit-remaining',
  'ratelimit-reset',
  'ratelimit-policy',
  'x-ratelimit-limit-tokens',
  'x-ratelimit-remaining-tokens',
  'x-ratelimit-reset-tokens',
  'www-authenticate',
  'location',
  'preference-applied',
  'x-should-retry',
];

/** The gateway as a Hono app; only server.ts binds it to a socket. */
export function createApp(opts: AppOptions): Hono<GatewayEnv> {
  const app = new Hono<GatewayEnv>();
  const maxBodyBytes = opts.maxBodyBytes ?? 64 * 1024 * 1024;
  const telemetry = opts.telemetry ?? new Telemetry({ metrics: true, traces: { exporter: 'none' } });
  const windows = new Map<string, LatencyWindow>();
  // Outermost: HTTP/2 forbids HTTP/1's connection headers — Node throws writing one, and that throw took the whole
  // process down — which Hono's SSE helper sets (Transfer-Encoding, Connection) and a 413 answer too. Over HTTP/1
  // an event stream's are left to Node too: the helper's `Connection: keep-alive` overrode a client's close, a
  // draining gateway's close and HTTP/1.0 (each kept its socket open after the stream, until the idle timeout).
  app.use(async (c, next) => {
    await next();
    const http2 = (c.env as { incoming?: { httpVersionMajor?: number } } | undefined)?.incoming?.httpVersionMajor === 2;
    if (http2 || c.res.headers.get('content-type')?.startsWith('text/event-stream')) withoutConnectionHeaders(c);
  });
  // First: a preflight (OPTIONS) is answered before auth — browsers send it without credentials — and every
  // answer, errors too, says which origin may read it.
  if (opts.cors) {
    const { origins, maxAgeS } = opts.cors;
    // DELETE too: a page removes its stored responses, conversations, files and calls.
    app.use(cors({ origin: origins, maxAge: maxAgeS, exposeHeaders: EXPOSED_HEADERS, allowMethods: ['GET', 'HEAD', 'POST', 'DELETE'] }));
    // Browsers do not apply CORS to WebSockets: a page of another origin is refused here instead.
    app.use('/v1/ws', async (c, next) => {
      const origin = c.req.header('origin');
      if (origin !== undefined && origins !== '*' && !origins.includes(origin))
        throw new GatewayError(403, 'forbidden_origin', `pages of ${origin} may not open this WebSocket (server.cors.origins)`);
      await next();
    });
  }
  app.use(requestId());
  // Anthropic's SDKs read a request's id from `request-id` (msg._request_id, err.requestID).
  const anthropicPaths = new Set((opts.endpoints ?? []).filter((x) => x.protocol === 'anthropic-messages').map((x) => x.path));
  const anthropicRoute = (c: Context<GatewayEnv>) => c.req.path.startsWith('/v1/messages') || anthropicPaths.has(c.req.path);
  app.use(async (c, next) => {
    if (anthropicRoute(c)) c.header('request-id', c.get('requestId'));
    await next();
  });
  const sseKeepAliveMs = opts.sseKeepAliveMs ?? 15_000;
  app.use(async (c, next) => {
    c.set('sseKeepAliveMs', sseKeepAliveMs);
    await next();
  });
  app.use(observe({ telemetry, log: opts.log, windows }));
  if (opts.compressResponses) app.use(compressAnswers());
  // (inside compression: what is captured is the answer itself)
  if (opts.capture) app.use(opts.capture.middleware());
  // Shadow traffic: inside capture (a shadow's request is captured where its client's was), outside auth (the caller is known after).
  const shadows: ShadowOptions | undefined = opts.shadows && {
    shadowOf: opts.shadows.of,
    active: opts.shadows.active,
    models: opts.models,
    endpoints: opts.endpoints,
    dispatch: (path, init, env) => Promise.resolve(app.request(path, init, env)),
    answered: (model, shadow, status) => telemetry.instruments.shadowed.add(1, { 'infergate.model': model, shadow, status: String(status) }),
  };
  if (shadows) app.use(shadowTraffic(shadows));
  // A request another gateway of the fleet let in and sent on (its secret proves it): its limits were spent there.
  const fleet = opts.fleet;
  if (fleet)
    app.use(async (c, next) => {
      if (fleet.vouchedFor(c)) c.set('fromFleet', true);
      await next();
    });
  // Auth and limits come first: a refused caller never reaches a body, a queue or a replica.
  // An endpoint of the config at one of vLLM's paths (a `/classify` of one's own) is that endpoint, guarded as it says.
  const endpointPaths = new Set((opts.endpoints ?? []).map((e) => e.path));
  const vllmRoutes = VLLM_ROUTES.filter((p) => !endpointPaths.has(p));
  if (opts.guard?.length)
    for (const path of [
      '/v2/models/*',
      '/v2/repository/*',
      '/v2/systemsharedmemory/*',
      '/v2/logging',
      '/v2/trace/*',
      '/v1/*',
      ...vllmRoutes,
      '/v2/calls/*',
      ...TGI_ROUTES,
      '/admin/*',
      '/dashboard',
      '/invocations',
      '/openapi.json', // (it names the models, as /v1/models does)
    ])
      app.use(path, ...opts.guard);
  // A Batch API line (sent through this app again by batches.ts, marked in its env, which no client can set): it
  // waits behind every interactive request, and takes its turns apart from its creator's own requests.
  app.use('/v1/*', async (c, next) => {
    const batch = (c.env as BatchLineEnv | undefined)?.infergateBatch;
    // (its lines are not counted against its creator's tokens a minute: a batch is paced by itself)
    // (what a line keeps — a stored response — is the creator's: continued by previous_response_id like its own)
    if (batch) c.set('caller', { ...batch.caller, id: `${batch.caller.id}/${batch.id}`, owner: batch.caller.id, priority: BATCH_PRIORITY, tokens: undefined });
    await next();
  });
  for (const e of opts.endpoints ?? []) if (e.guard.length) app.use(e.path, ...e.guard);
  // Asynchronous inference: after every guard (auth, rate limits: a call spends its caller's turn once), before the routes.
  // Several gateways (server.fleet): a request about another's kept thing is answered there; ids here carry this one's token.
  if (fleet) app.use('*', forwardByPath(fleet, maxBodyBytes));
  const calls = new Calls({ ...(opts.calls ?? { keepMs: 600_000, maxBytes: 256 * 2 ** 20, afterMs: 0 }), newId: fleet && (() => fleet.newUuid()) });
  measureCalls(telemetry, calls);
  // (runtime changes — LoRA adapters, trace settings, model control — are not inference: never run as calls)
  const nonInference = ['/v1/files', '/v1/batches', '/v1/messages/batches', '/v1/conversations', '/v1/ws', '/v1/load_lora_adapter', '/v1/unload_lora_adapter'];
  const isInference = (path: string) =>
    (path.startsWith('/v2/models/') && !path.endsWith('/trace/setting')) ||
    (path.startsWith('/v1/') && !nonInference.some((p) => path.startsWith(p)) && !path.endsWith('/cancel')) ||
    vllmRoutes.includes(path) ||
    TGI_ROUTES.includes(path) ||
    endpointPaths.has(path);
  const dispatch: Dispatch = (path, init, env) => Promise.resolve(app.request(path, init, env));
  app.use('*', asyncCalls(calls, isInference, maxBodyBytes, dispatch));
  // (OpenAI's background responses are calls too; kept responses, store: true, share their keep time and room)
  // (conversations are kept longer, from their last use: server.conversations_keep_s; within a budget of their own too.
  // With server.batch_dir, both on disk as well: a restart keeps them)
  const newId = fleet?.newId ?? randomId;
  const background = {
    calls,
    dispatch,
    fleet,
    newId,
    disk: opts.batches?.disk?.background,
    stored: new StoredResponses({ keepMs: calls.opts.keepMs, maxBytes: calls.opts.maxBytes, disk: opts.batches?.disk?.responses }),
    conversations: new Conversations({
      keepMs: opts.conversationsKeepMs ?? 86_400_000,
      maxBytes: calls.opts.maxBytes,
      newId,
      disk: opts.batches?.disk?.conversations,
    }),
  };
  if (opts.batches) resumeBackground(background, opts.batches.started); // (with batch_dir: those a restart stopped)
  measureStoredResponses(telemetry, background.stored);
  measureConversations(telemetry, background.conversations);
  app.route('/', callRoutes(calls));
  app.route('/', conversationRoutes(background.conversations, maxBodyBytes));
  const regions = opts.clientSharedMemory ? new SharedMemoryRegions() : undefined;
  for (const e of opts.endpoints ?? []) {
    const model = () => opts.models.get(e.model) as ServedModel;
    const limit = e.maxBodyBytes ?? maxBodyBytes;
    if (e.protocol === 'kserve') {
      app.post(e.path, (c) => infer(c, model(), limit, { regions, fleet, fleetSequences: opts.fleetSequences }));
      app.get(e.path, (c) => c.json(metadata(model())));
    } else if (e.protocol === 'openai-embeddings') {
      app.post(e.path, (c) => embeddingsRoute(c, encoderOf(opts.models, ENCODERS.embedding), limit, e.model));
    } else if (e.protocol === 'openai-responses') {
      app.post(e.path, (c) => responsesRoute(c, generativeModelOf(opts.models), limit, e.model, background));
    } else {
      const handler = { 'openai-chat': chat, 'openai-completions': completions, 'anthropic-messages': messagesRoute }[e.protocol];
      app.post(e.path, (c) => handler(c, generativeModelOf(opts.models), limit, e.model));
    }
  }
  app.route(
    '/',
    kserveRoutes({
      models: opts.models,
      maxBodyBytes,
      version: opts.version ?? '0.0.0',
      regions,
      shuttingDown: opts.shuttingDown,
      fleet,
      fleetSequences: opts.fleetSequences,
    }),
  );
  app.route('/', openaiRoutes({ models: opts.models, maxBodyBytes, background }));
  app.route(
    '/',
    wsRoutes(opts.models, {
      pingMs: opts.websocketPingMs ?? 30_000,
      onSilent: () => telemetry.instruments.connectionsEnded.add(1, { reason: 'websocket_ping' }),
      work: opts.webSocketWork,
      capture: opts.capture,
      shadow: shadows && ((origin, msg) => shadowMessage(shadows, origin, msg)),
    }),
  );
  app.route('/', audioRoutes(opts.models, maxBodyBytes));
  app.route('/', tgiRoutes(opts.models, maxBodyBytes));
  app.route('/', ocrRoutes(opts.models, maxBodyBytes));
  app.route('/', sagemakerRoutes({ models: opts.models, maxBodyBytes, dispatch }));
  app.route('/', openApiRoutes({ models: opts.models, endpoints: opts.endpoints ?? [], policy: opts.policy ?? 'public', version: opts.version ?? '0.0.0' }));
  // Each line of a batch goes through this whole app again, as its own request.
  app.route('/', batchRoutes({ maxBodyBytes, dispatch: (path, init, env) => Promise.resolve(app.request(path, init, env)), control: opts.batches, fleet }));
  app.route('/', observeRoutes({ telemetry, models: opts.models, windows, intakeBusy: opts.intakeBusy, metricsPort: opts.metricsPort, gpus: opts.gpus }));
  app.route('/', SharedLimits.routes(opts.sharedLimits));
  app.route('/', FleetSequences.routes(opts.fleetSequences));
  app.route('/', adminRoutes({ models: opts.models, writable: opts.adminApi ?? false, writeGuard: opts.adminGuard ?? [], reload: opts.reload, fleet }));
  app.route('/', loraRoutes({ models: opts.models, writable: opts.adminApi ?? false, writeGuard: opts.adminGuard ?? [] }));
  app.route('/', settingsRoutes({ log: opts.log, telemetry, models: opts.models, writable: opts.adminApi ?? false, writeGuard: opts.adminGuard ?? [] }));
  // (in the error object of the protocol its path is of)
  app.notFound((c) => errorAnswer(new GatewayError(404, 'not_found', `no route for ${c.req.method} ${c.req.path}`), c));
  app.onError((err, c) => errorAnswer(toGatewayError(err), c));
  function errorAnswer(e: GatewayError, c: Context<GatewayEnv>): Response {
    if (e.status >= 500) opts.onServerError?.(e, c.req.path);
    if (e.options.retryAfterS !== undefined) c.header('Retry-After', String(e.options.retryAfterS));
    for (const [name, value] of Object.entries(e.options.headers ?? {})) c.header(name, value);
    // The unread rest of an oversized body would otherwise be parsed as the next request: close instead.
    if (e.status === 413) c.header('Connection', 'close');
    // OpenAI routes answer OpenAI's error object; KServe routes (and the rest) answer {"error": "...", "code": "..."}.
    const endpoint = opts.endpoints?.find((x) => x.path === c.req.path);
    const kserveV1 = /^\/v1\/models\/[^/]+:\w+$/.test(c.req.path); // KServe v1's /v1/models/{m}:predict answers KServe's errors
    const openai = (c.req.path.startsWith('/v1/') && !kserveV1) || vllmRoutes.includes(c.req.path);
    // Anthropic's Messages API answers Anthropic's error object; TGI's routes TGI's.
    if (anthropicRoute(c)) return c.json(anthropicError(e, c.get('requestId')), e.status as 400);
    if (!endpoint && TGI_ROUTES.includes(c.req.path)) {
      const { status, body } = tgiError(e);
      return c.json(body, status as 400);
    }
    if (endpoint ? endpoint.protocol !== 'kserve' : openai) return c.json(openaiError(e).body, e.status as 400);
    return c.json({ error: e.message, code: e.code }, e.status as 400);
  }
  return app;
}

function withoutConnectionHeaders(c: Context<GatewayEnv>): void {
  const present = [...CONNECTION_HEADERS].filter((name) => c.res.headers.has(name));
  if (present.length === 0) return;
  try {
    for (const name of present) c.res.headers.delete(name);
  } catch {
    // (an answer fetched from elsewhere has immutable headers: a copy without them)
    const headers = new Headers(c.res.headers);
    for (const name of present) headers.delete(name);
    const res = new Response(c.res.body, { status: c.res.status, statusText: c.res.statusText, headers });
    c.res = undefined; // (Hono merges the old answer's headers into a new one otherwise)
    c.res = res;
  }
}

function toGatewayError(err: Error): GatewayError {
  if (err instanceof GatewayError) return err;
  if (err instanceof HTTPException) return new GatewayError(err.status, 'http', err.message || 'bad request', { cause: err });
  return new GatewayError(500, 'internal', `internal error: ${err.message}`, { cause: err });
}
