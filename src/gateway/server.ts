import { createSecureServer } from 'node:http2';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import type { Hono } from 'hono';
import { WebSocketServer } from 'ws';
import { keepFreedMemory } from './buffer-pool.js';
import { continueWhenRead, drainable, endStalledAnswers, keepIdleConnections, type QuietWork, type StalledAnswer } from './drain.js';
import { startIntakeThreads } from './intake.js';
import type { GatewayEnv } from './types.js';

export type Listening = {
  port: number;
  /** With intake threads and ListenOptions.grpcPort: where they serve gRPC. */
  grpcPort?: number;
  /** Shutdown has begun: go on serving, but send each answer's connection away (see drainable). */
  leave(): void;
  /** Stops accepting, waits for accepted requests to be answered (up to timeoutMs), then closes every connection. */
  close(timeoutMs: number): Promise<void>;
  /** With intake threads: each one's busy share of the last ~10 s. */
  intakeBusy?(): number[];
};

export type ListenOptions = {
  port: number;
  host: string;
  /** PEM contents. With http2, ALPN offers h2 and HTTP/1.1 (WebSocket upgrades need the latter). */
  tls?: { cert: string | Buffer; key: string | Buffer; http2: boolean };
  /** Worker threads that read requests and write answers (server.intake_threads; see intake.ts). @default 0: the main thread does */
  intakeThreads?: number;
  /**
   * server.max_body_bytes, for what does not go through a route's own limit: a WebSocket message (a larger one
   * closes its socket with 1009), and with intake threads a body a route reads as a web Request's. @default 64 MiB
   */
  maxBodyBytes?: number;
  /** How long an idle HTTP/1.1 connection stays open (server.keep_alive_timeout_s). @default Node's 5 s */
  keepAliveTimeoutMs?: number;
  /** An answer whose client takes none of its bytes this long is ended (server.send_timeout_s). @default never */
  sendTimeoutMs?: number;
  /**
   * With intake threads: they compress whole answers for clients that accept it (server.compress_responses).
   * Without, the app does (createApp's compressResponses).
   */
  compressResponses?: boolean;
  /** With intake threads: they serve KServe v2 gRPC on this port too (server.grpc_port). Without, see listenGrpc. */
  grpcPort?: number;
  /** Told when an intake thread fails (it is replaced). */
  onError?: (err: Error) => void;
  /** Requests made on WebSockets (app.ts counts them): closing waits for them as for requests. */
  webSocketWork?: QuietWork;
  /** Told of each answer ended by sendTimeoutMs. */
  onStalledAnswer?: (answer: StalledAnswer) => void;
};

/** Binds the app to a socket (HTTP, HTTPS, or HTTP/2 over TLS), on the main thread or on intake threads. */
export async function listen(app: Hono<GatewayEnv>, opts: ListenOptions): Promise<Listening> {
  keepFreedMemory();
  if (!opts.intakeThreads) return serveHere(app, opts);
  // The main thread's own server takes only what intake threads pipe to it (WebSocket upgrades), on loopback.
  const here = await serveHere(app, { port: 0, host: '127.0.0.1', maxBodyBytes: opts.maxBodyBytes, webSocketWork: opts.webSocketWork });
  try {
    const threads = await startIntakeThreads(
      app,
      opts.intakeThreads,
      {
        port: opts.port,
        host: opts.host,
        tls: opts.tls,
        upstreamPort: here.port,
        maxBodyBytes: opts.maxBodyBytes ?? 64 * 2 ** 20,
        keepAliveTimeoutMs: opts.keepAliveTimeoutMs,
        sendTimeoutMs: opts.sendTimeoutMs,
        compressResponses: opts.compressResponses,
        grpcPort: opts.grpcPort,
      },
      { onError: opts.onError ?? ((err) => console.error(err)), onStalledAnswer: opts.onStalledAnswer },
    );
    return {
      port: threads.port,
      grpcPort: threads.grpcPort,
      leave: () => {
        here.leave();
        threads.leave();
      },
      close: async (timeoutMs) => {
        const upgraded = here.close(timeoutMs);
        await Promise.all([upgraded, threads.close(timeoutMs, upgraded)]);
      },
      intakeBusy: threads.busy,
    };
  } catch (err) {
    await here.close(0);
    throw err;
  }
}

/** The app on this thread's event loop; the only place that calls serve(). */
async function serveHere(app: Hono<GatewayEnv>, opts: ListenOptions): Promise<Listening> {
  // WebSocket upgrades (/v1/ws) go through @hono/node-server's built-in support for the `ws` server.
  // A message is held whole before it is read: past the body limit the socket is closed (1009), not ws's 100 MiB.
  const wss = new WebSocketServer({ noServer: true, maxPayload: opts.maxBodyBytes ?? 64 * 2 ** 20 });
  const tls = opts.tls && { key: opts.tls.key, cert: opts.tls.cert };
  const transport = !opts.tls
    ? {}
    : opts.tls.http2
      ? { createServer: createSecureServer, serverOptions: { ...tls, allowHTTP1: true } }
      : { createServer: createHttpsServer, serverOptions: tls };
  const server = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, port: opts.port, hostname: opts.host, websocket: { server: wss }, ...transport } as Parameters<typeof serve>[0], () =>
      resolve(s),
    );
    s.once('error', reject);
  });
  keepIdleConnections(server, opts.keepAliveTimeoutMs);
  continueWhenRead(server);
  endStalledAnswers(server, opts.sendTimeoutMs ?? 0, opts.onStalledAnswer);
  const drain = drainable(server, { work: opts.webSocketWork });
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    leave: drain.leave,
    close: (timeoutMs) =>
      drain.close(timeoutMs, () => {
        for (const client of wss.clients) client.close(1001, 'server shutting down');
        wss.close();
      }),
  };
}
