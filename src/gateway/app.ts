import { Hono } from 'hono';
import { HTTPException } from 'hono/http-exception';
import { requestId } from 'hono/request-id';
import { GatewayError } from '../errors/index.js';
import { kserveRoutes } from './kserve/routes.js';
import { openaiError, openaiRoutes } from './openai/routes.js';
import type { GatewayEnv, ServedModel } from './types.js';
import { wsRoutes } from './ws.js';

export type AppOptions = {
  models: ReadonlyMap<string, ServedModel>;
  /** @default 67108864 (64 MiB) */
  maxBodyBytes?: number;
  version?: string;
  /** Told about every 5xx. */
  onServerError?: (err: Error, path: string) => void;
};

/** The gateway as a Hono app; only server.ts binds it to a socket. */
export function createApp(opts: AppOptions): Hono<GatewayEnv> {
  const app = new Hono<GatewayEnv>();
  app.use(requestId());
  app.route('/', kserveRoutes({ models: opts.models, maxBodyBytes: opts.maxBodyBytes ?? 64 * 1024 * 1024, version: opts.version ?? '0.0.0' }));
  app.route('/', openaiRoutes({ models: opts.models, maxBodyBytes: opts.maxBodyBytes ?? 64 * 1024 * 1024 }));
  app.route('/', wsRoutes(opts.models));
  app.get('/admin/pools', (c) => c.json({ models: [...opts.models.values()].map((m) => m.admin?.() ?? { model: m.name, replicas: m.replicas() }) }));
  app.notFound((c) => c.json({ error: `no route for ${c.req.method} ${c.req.path}` }, 404));
  app.onError((err, c) => {
    const e = toGatewayError(err);
    if (e.status >= 500) opts.onServerError?.(e, c.req.path);
    if (e.options.retryAfterS !== undefined) c.header('Retry-After', String(e.options.retryAfterS));
    // The unread rest of an oversized body would otherwise be parsed as the next request: close instead.
    if (e.status === 413) c.header('Connection', 'close');
    // OpenAI routes answer OpenAI's error object; KServe routes (and the rest) answer {"error": "..."}.
    if (c.req.path.startsWith('/v1/')) return c.json(openaiError(e).body, e.status as 400);
    return c.json({ error: e.message }, e.status as 400);
  });
  return app;
}

function toGatewayError(err: Error): GatewayError {
  if (err instanceof GatewayError) return err;
  if (err instanceof HTTPException) return new GatewayError(err.status, 'http', err.message || 'bad request', { cause: err });
  return new GatewayError(500, 'internal', `internal error: ${err.message}`, { cause: err });
}
