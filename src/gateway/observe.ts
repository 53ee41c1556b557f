import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isSpanContextValid, SpanStatusCode } from '@opentelemetry/api';
import { Hono, type MiddlewareHandler } from 'hono';
import { routePath } from 'hono/route';
import type { Logger } from 'pino';
import { EventLoopWindow, type GpuMonitor, type GpuSnapshot, LatencyWindow, type Telemetry } from '../telemetry/index.js';
import { dashboardHtml } from './dashboard.js';
import type { IntakeRequest } from './intake.js';
import type { GatewayEnv, ServedModel } from './types.js';

/**
 * One span, one histogram sample and one log line per request; W3C `traceparent` from the client is
 * the parent. The log line carries ids, model, status and timings — never a credential or a body.
 */
export function observe(opts: { telemetry: Telemetry; log?: Logger; windows: Map<string, LatencyWindow> }): MiddlewareHandler<GatewayEnv> {
  const { telemetry, log, windows } = opts;
  return async function observe(c, next) {
    const start = performance.now();
    const method = c.req.method;
    const span = telemetry.startServerSpan(method, telemetry.extract(c.req.raw.headers), { 'http.request.method': method, 'url.path': c.req.path });
    c.set('span', span);
    await next();
    if (c.get('loggedByCall')) return span.end();
    const status = c.res.status;
    // (a request answered 202/303 by an asynchronous call stopped in its middleware: the route it was for, the last matched)
    const route = c.get('sentToCall') ? routePath(c, -1) : routePath(c);
    const model = c.get('model');
    const version = c.get('modelVersion');
    const seconds = (performance.now() - start) / 1000;
    const attributes = {
      'http.request.method': method,
      'http.route': route,
      'http.response.status_code': status,
      ...(model && { 'infergate.model': model }),
      ...(version && { 'infergate.model.version': version }),
    };
    if (span.isRecording()) {
      span.updateName(`${method} ${route}`);
      span.setAttributes(attributes);
      if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
    }
    span.end();
    telemetry.instruments.requestDuration.record(seconds, attributes);
    if (status === 429) telemetry.instruments.shed.add(1, { reason: 'rate_limited', ...(model && { 'infergate.model': model }) });
    if (model && status < 400) {
      const window = windows.get(model) ?? new LatencyWindow();
      windows.set(model, window);
      window.add(seconds * 1000);
    }
    if (log?.isLevelEnabled('info') && route !== '/metrics' && route !== '/health' && !route.startsWith('/v2/health')) {
      log.info(
        {
          requestId: c.get('requestId'),
          // (none where nothing traces it: the no-op span's all-zero id named one nonexistent trace on every line)
          traceId: isSpanContextValid(span.spanContext()) ? span.spanContext().traceId : undefined,
          method,
          route,
          ...((c.env as { intake?: IntakeRequest } | undefined)?.intake?.grpc && { protocol: 'grpc' }),
          status,
          model,
          version,
          caller: c.get('caller')?.id,
          ms: Math.round(seconds * 100_000) / 100,
          queueMs: c.get('queueMs') === undefined ? undefined : Math.round((c.get('queueMs') as number) * 100) / 100,
          batchSize: c.get('batchSize'),
        },
        'request',
      );
    }
  };
}

const share = (busy: number) => Math.round(busy * 1000) / 1000;
const intakeBusy = (busy: number[] | undefined) => (busy?.length ? { intakeBusy: busy.map(share) } : {});

/** GET /metrics (Prometheus text), GET /admin/stats (the dashboard's numbers), GET /dashboard. */
export const METRICS_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export function observeRoutes(opts: {
  telemetry: Telemetry;
  models: ReadonlyMap<string, ServedModel>;
  windows: Map<string, LatencyWindow>;
  /** Each intake thread's busy share (server.intake_threads), once the gateway listens. */
  intakeBusy?: () => number[] | undefined;
  /** telemetry.metrics_port: /metrics is served there, not here. */
  metricsPort?: number;
  /** The GPUs (telemetry.gpu_metrics): each one's readings, and each replica's memory on them. */
  gpus?: GpuMonitor;
}): Hono<GatewayEnv> {
  const app = new Hono<GatewayEnv>();
  const eventLoop = new EventLoopWindow();
  app.get('/metrics', async (c) => {
    if (!opts.telemetry.config.metrics) return c.json({ error: 'metrics are off (telemetry.metrics: false)' }, 404);
    if (opts.metricsPort !== undefined) return c.json({ error: 'metrics are served on their own port (telemetry.metrics_port)' }, 404);
    return c.body(await opts.telemetry.metricsText(), 200, { 'content-type': METRICS_TYPE });
  });
  app.get('/admin/stats', async (c) => {
    const gpus = await opts.gpus?.read();
    return c.json({
      at: new Date().toISOString(),
      gateway: { eventLoopBusy: share(eventLoop.read()), ...intakeBusy(opts.intakeBusy?.()) },
      ...(gpus && { gpus: gpus.gpus }),
      models: [...opts.models.values()].map((m) => ({
        model: m.name,
        kind: m.generation ? 'generative' : m.ensemble ? 'ensemble' : 'tensor',
        ...(m.versions && { versions: m.versions.served }),
        ...(m.generation?.adapters && { adapters: m.generation.adapters.list().map((a) => a.name) }),
        ready: m.isReady(),
        latency: opts.windows.get(m.name)?.read(10) ?? { perSecond: 0, p50Ms: 0, p99Ms: 0, count: 0 },
        stats: m.stats(),
        replicas: gpus ? m.replicas().map((r) => withGpuMemory(r, gpus)) : m.replicas(),
      })),
    });
  });
  app.get('/dashboard', (c) => c.html(dashboardHtml));
  return app;
}

/** A replica's view with the GPU memory its process holds, where nvidia-smi lists its pid. */
function withGpuMemory(replica: object, gpus: GpuSnapshot): object {
  const pid = (replica as { pid?: number }).pid;
  const held = gpus.processes.filter((p) => p.pid === pid);
  return held.length === 0 ? replica : { ...replica, gpuMemoryBytes: held.reduce((sum, p) => sum + p.memoryBytes, 0) };
}

/** GET /metrics alone, on a port of its own (telemetry.metrics_port). */
export async function listenForMetrics(telemetry: Telemetry, host: string, port: number): Promise<{ port: number; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || req.url?.split('?')[0] !== '/metrics') return void res.writeHead(404).end();
    telemetry.metricsText().then(
      (text) => res.writeHead(200, { 'content-type': METRICS_TYPE }).end(text),
      () => res.writeHead(500).end(),
    );
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, host, () => resolve()));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
