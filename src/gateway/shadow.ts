import type { Context, MiddlewareHandler } from 'hono';
import type { Config } from '../config/index.js';
import { classifierSpec, embeddingSpec, generativeSpec, MODEL_ID_HEADER, type ModelSignature } from '../models/index.js';
import { formatShape } from '../tensor/index.js';
import type { Caller } from './auth/middleware.js';
import type { GatewayEnv, ServedModel } from './types.js';

/** A shadow's run (config shadow, version_shadow) waits behind every request, Batch API lines too. */
export const SHADOW_PRIORITY = -2_000_000;

/** A request sent to a shadow model, marked in Hono's env (which no client can set): who asked, for which model. */
export type ShadowEnv = { infergateShadow?: { caller?: Caller; of: string; captured: boolean } };
export const shadowOfEnv = (c: { env: unknown }) => (c.env as ShadowEnv | undefined)?.infergateShadow;

type Shadow = { model: string; percent: number };
export type ShadowOptions = {
  /** The running config's `shadow` of a model (a reload changes it in place). */
  shadowOf: (model: string) => Shadow | undefined;
  /** Whether any model has a shadow now. */
  active: () => boolean;
  models: ReadonlyMap<string, ServedModel>;
  /** Sends a request through the gateway's app again. */
  dispatch: (path: string, init: RequestInit, env: ShadowEnv) => Promise<Response>;
  /** Told how each shadow request was answered (its status; 0: it failed to be sent). */
  answered?: (model: string, shadow: string, status: number) => void;
  /** The config's `endpoints`: a path bound to a model and a protocol, shadowed through that protocol's own route. */
  endpoints?: readonly { path: string; model: string; protocol: keyof typeof ENDPOINT_ROUTES }[];
};

/** The built-in route of each protocol an endpoint path may speak: where its shadow's request goes. */
const ENDPOINT_ROUTES = {
  kserve: (model: string) => `/v2/models/${model}/infer`,
  'openai-chat': () => '/v1/chat/completions',
  'openai-completions': () => '/v1/completions',
  'openai-responses': () => '/v1/responses',
  'openai-embeddings': () => '/v1/embeddings',
  'anthropic-messages': () => '/v1/messages',
};

// Routes whose JSON body names the model: the shadow gets the body with its own name.
const BODY_NAMED = new Set([
  '/v1/completions',
  '/v1/chat/completions',
  '/v1/responses',
  '/v1/messages',
  '/v1/embeddings',
  '/v1/rerank',
  '/rerank',
  '/v1/score',
  '/score',
  '/classify',
]);
// A KServe path naming the model (a version of it too: the shadow answers with its own).
const KSERVE_PATH = /^\/v2\/models\/([^/]+)(?:\/versions\/[^/]+)?\/(infer|generate|generate_stream)$/;
const KSERVE_V1_PATH = /^\/v1\/models\/([^/:]+):predict$/;
// Not sent on: the shadow's request is let in by its env, not credentials; its body is the one read, inflated; its
// answer is discarded (not worth compressing).
const DROPPED_HEADERS = [
  'content-length',
  'content-encoding',
  'accept-encoding',
  'transfer-encoding',
  'prefer',
  'authorization',
  'x-api-key',
  'infergate-key',
  'infergate-secret',
  'cookie',
  'connection',
  'host',
];

/**
 * The request as the shadow gets it: the path or the body naming `to` instead, or undefined where it cannot be
 * mirrored without touching what the client has — a Responses API turn of a conversation (its items would be added
 * twice), client shared memory (the shadow would write the client's output regions). A Responses API request is not
 * stored or run in the background for the shadow.
 */
export function mirrored(path: string, body: Uint8Array, to: string): { path: string; body: Uint8Array } | undefined {
  const kserve = KSERVE_PATH.exec(path);
  const v1 = KSERVE_V1_PATH.exec(path);
  if (kserve || v1) {
    // (the JSON header of a binary body, or the whole JSON body: shared memory is named there)
    const head = new TextDecoder().decode(body.subarray(0, 65536));
    if (head.includes('shared_memory_region')) return undefined;
    return { path: kserve ? `/v2/models/${to}/${kserve[2]}` : `/v1/models/${to}:predict`, body };
  }
  if (!BODY_NAMED.has(path)) return undefined;
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(new TextDecoder().decode(body));
  } catch {
    return undefined;
  }
  if (path === '/v1/responses') {
    if (json.conversation != null) return undefined;
    json = { ...json, store: false, background: false };
  }
  return { path, body: new TextEncoder().encode(JSON.stringify({ ...json, model: to })) };
}

/** Whether a request is one of its shadow's share. */
const draw = (s: Shadow) => Math.random() * 100 < s.percent;

/** The model a KServe path names, before its route resolves it (a binary body is copied only when it will be mirrored). */
const pathModel = (path: string) => (KSERVE_PATH.exec(path) ?? KSERVE_V1_PATH.exec(path))?.[1];

/**
 * Shadow traffic (config `shadow`): a share of the requests a model answers sent again to its shadow model, once the
 * client's answer is on its way — through this whole app, as its own request: the shadow's queue, its stats, its
 * capture (beside the client's, under the same request id, when that one is captured). Fire and forget: its answer
 * is read to the end (a stream too) and discarded, its failure is the shadow's alone.
 */
export function shadowTraffic(opts: ShadowOptions): MiddlewareHandler<GatewayEnv> {
  // (an endpoint's request is mirrored as if sent to its protocol's own route, naming its model)
  const endpoints = new Map(opts.endpoints?.map((e) => [e.path, ENDPOINT_ROUTES[e.protocol](e.model)]));
  return async (c, next) => {
    if (shadowOfEnv(c)) return next(); // (a shadow's request is not shadowed again)
    let body: Uint8Array | undefined;
    let drawn: boolean | undefined;
    const path = endpoints.get(c.req.path) ?? c.req.path;
    const named = pathModel(path);
    // (no body is copied where nothing could be mirrored: most gateways shadow no model, most routes name none)
    if (named === undefined && !BODY_NAMED.has(path)) return next();
    const before = c.get('captureBody');
    c.set('captureBody', (read) => {
      before?.(read);
      if (!opts.active()) return;
      if (named !== undefined) {
        const shadow = opts.shadowOf(opts.models.get(named)?.name ?? named);
        drawn = shadow !== undefined && draw(shadow);
        if (!drawn) return;
      }
      body = read.slice(); // (the request's buffer goes back to its pool once answered)
    });
    await next();
    const model = c.get('model');
    const shadow = model === undefined ? undefined : opts.shadowOf(model);
    if (!shadow || !body || c.res.status >= 400 || (drawn === undefined && !draw(shadow))) return;
    const request = mirrored(path, body, shadow.model);
    if (request) send(opts, originOf(c), model as string, shadow.model, request);
  };
}

/** Whose request a shadow's mirrors: its headers, its request id (the shadow's, to pair them), its caller, whether it was captured. */
export type ShadowOrigin = { headers: Headers; requestId: string; caller?: Caller; captured: boolean };
const originOf = (c: Context<GatewayEnv>): ShadowOrigin => ({
  headers: new Headers(c.req.raw.headers),
  requestId: c.get('requestId'),
  caller: c.get('caller'),
  captured: c.get('captureSampled') === true,
});

/** The HTTP route each WebSocket message type's request has: its protocol's, as an endpoint's (ENDPOINT_ROUTES). */
const MESSAGE_ROUTES: Record<string, (model: string) => string> = {
  infer: ENDPOINT_ROUTES.kserve,
  completion: ENDPOINT_ROUTES['openai-completions'],
  chat: ENDPOINT_ROUTES['openai-chat'],
  embeddings: ENDPOINT_ROUTES['openai-embeddings'],
};

/**
 * A WebSocket message answered without error (/v1/ws), drawn for its model's shadow: the same request sent to the
 * shadow as over HTTP, on its message type's route (a stream's as one answer: the shadow's is discarded).
 */
export function shadowMessage(opts: ShadowOptions, origin: ShadowOrigin, msg: Record<string, unknown>): void {
  const m = typeof msg.model === 'string' ? opts.models.get(msg.model) : undefined;
  const shadow = m && opts.shadowOf(m.name);
  const route = MESSAGE_ROUTES[String(msg.type)];
  if (!m || !shadow || !route || !draw(shadow)) return;
  const { id: _id, type: _type, model: _model, model_id: _modelId, model_version: _version, ...fields } = msg;
  const body = msg.type === 'infer' ? { inputs: fields.inputs, outputs: fields.outputs, parameters: fields.parameters } : { ...fields, model: m.name };
  const request = mirrored(route(m.name), new TextEncoder().encode(JSON.stringify(body)), shadow.model);
  // (a multiplexed model's model: the message's `model_id`, which HTTP sends as a header; the upgrade's is not the message's)
  origin.headers.delete(MODEL_ID_HEADER);
  if (typeof msg.model_id === 'string') origin.headers.set(MODEL_ID_HEADER, msg.model_id);
  if (request) send(opts, origin, m.name, shadow.model, request);
}

function send(opts: ShadowOptions, origin: ShadowOrigin, model: string, to: string, request: { path: string; body: Uint8Array }): void {
  const headers = origin.headers;
  for (const name of DROPPED_HEADERS) headers.delete(name);
  headers.set('x-request-id', origin.requestId);
  const caller = origin.caller;
  const env: ShadowEnv = {
    infergateShadow: {
      // Its own turns, apart from the caller's requests, behind everyone.
      caller: caller && { ...caller, id: `${caller.id}/shadow`, priority: SHADOW_PRIORITY, tokens: undefined },
      of: model,
      captured: origin.captured,
    },
  };
  opts
    .dispatch(request.path, { method: 'POST', headers, body: request.body as Uint8Array<ArrayBuffer> }, env)
    .then(async (res) => {
      await res.arrayBuffer(); // to its end: a stream's generation runs on, as the client's does
      opts.answered?.(model, to, res.status);
    })
    .catch(() => opts.answered?.(model, to, 0));
}

type Signed = { name: string; signature: ModelSignature };

/**
 * What keeps each model's shadow (config shadow) from answering its requests, a `models.X.shadow: why` line each: the
 * gateway's start and reload refuse such a config, `infergate validate` says it first (`get`: a model by name).
 */
export function shadowProblems(models: Config['models'], get: (name: string) => Signed | undefined): string[] {
  return Object.entries(models).flatMap(([name, m]) => {
    const [model, shadow] = [get(name), m.shadow && get(m.shadow.model)];
    const why = model && shadow && shadowMismatch(model, shadow);
    return why ? [`models.${name}.shadow: ${why}`] : [];
  });
}

/** The kind of model each endpoint protocol serves (kserve: any). */
const ENDPOINT_KINDS: Partial<Record<keyof typeof ENDPOINT_ROUTES, string>> = {
  'openai-chat': 'generative',
  'openai-completions': 'generative',
  'openai-responses': 'generative',
  'anthropic-messages': 'generative',
  'openai-embeddings': 'a text encoder',
};

/**
 * Config `endpoints` bound to a model their protocol cannot serve (a chat endpoint on a text encoder: every request
 * a 404), by the models' signatures — at start and by `infergate validate`. (Adapters and ensembles: the schema's.)
 */
export function endpointProblems(config: Pick<Config, 'models' | 'endpoints'>, get: (name: string) => Signed | undefined): string[] {
  return config.endpoints.flatMap((e, i) => {
    const name = config.models[e.model] ? e.model : Object.entries(config.models).find(([, m]) => m.aliases.includes(e.model))?.[0];
    const model = name === undefined ? undefined : get(name);
    const kind = model && kindOf(model.signature);
    const wanted = ENDPOINT_KINDS[e.protocol];
    return kind && wanted && kind !== wanted ? [`endpoints.${i}.protocol: ${e.protocol} serves a model that is ${wanted}; ${e.model} is ${kind}`] : [];
  });
}

/** What kind of model a signature makes (as the gateway serves it): a shadow must be of its model's kind. */
const kindOf = (signature: ModelSignature) =>
  generativeSpec(signature)
    ? 'generative'
    : embeddingSpec(signature)
      ? 'a text encoder'
      : classifierSpec(signature)
        ? 'a sequence classifier'
        : 'a tensor model';

/**
 * Why `shadow` cannot take `model`'s requests, if it cannot: another kind of model, or a tensor model with other tensors.
 * (From signatures alone: `infergate validate` says it before anything starts, as the gateway's start does.)
 */
function shadowMismatch(model: Signed, shadow: Signed): string | undefined {
  const [kind, theirs] = [kindOf(model.signature), kindOf(shadow.signature)];
  if (kind !== theirs) return `${shadow.name} is ${theirs} and ${model.name} ${kind}: it could not answer its requests`;
  if (kind !== 'a tensor model') return undefined;
  type Tensors = ModelSignature['inputs'];
  const said = (ts: Tensors) => ts.map((t) => `${t.name} ${t.dtype} ${formatShape(t.shape)}`).join(', ');
  // Its inputs by name, dtype and every dimension either fixes; its outputs by name and dtype (requests name them).
  const dimsFit = (a: Tensors[number], b: Tensors[number]) =>
    a.shape.length === b.shape.length && a.shape.every((d, i) => typeof d !== 'number' || typeof b.shape[i] !== 'number' || d === b.shape[i]);
  const same = (a: Tensors, b: Tensors, dims: boolean) =>
    a.length === b.length && a.every((t) => b.some((u) => u.name === t.name && u.dtype === t.dtype && (!dims || dimsFit(t, u))));
  if (!same(model.signature.inputs, shadow.signature.inputs, true))
    return `${shadow.name} takes ${said(shadow.signature.inputs)}, not ${model.name}'s ${said(model.signature.inputs)}`;
  if (!same(model.signature.outputs, shadow.signature.outputs, false))
    return `${shadow.name} gives ${said(shadow.signature.outputs)}, not ${model.name}'s ${said(model.signature.outputs)}`;
  return undefined;
}
