import { createSecureServer } from 'node:http2';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { serve } from '@hono/node-server';
import type { Hono } from 'hono';
import { WebSocketServer } from 'ws';
import { keepFreedMemory } from './buffer-pool.js';
import type { GatewayEnv } from './types.js';

export type Listening = {
  port: number;
  /** Stops accepting, waits for accepted requests to be answered (up to timeoutMs), then closes every connection. */
  close(timeoutMs: number): Promise<void>;
};

export type ListenOptions = {
  port: number;
  host: string;
  /** PEM contents. With http2, ALPN offers h2 and HTTP/1.1 (WebSocket upgrades need the latter). */
  tls?: { cert: string | Buffer; key: string | Buffer; http2: boolean };
};

/** Binds the app to a socket (HTTP, HTTPS, or HTTP/2 over TLS); the only place that calls serve(). */
export async function listen(app: Hono<GatewayEnv>, opts: ListenOptions): Promise<Listening> {
  keepFreedMemory();
  // WebSocket upgrades (/v1/ws) go through @hono/node-server's built-in support for the `ws` server.
  const wss = new WebSocketServer({ noServer: true });
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
  // Counted at the socket level: a response is done when its bytes are written, not when fetch() returns.
  let active = 0;
  let closing = false;
  let onIdle: (() => void) | undefined;
  server.on('request', (_req: unknown, res: { setHeader?(n: string, v: string): void; once(e: 'close', f: () => void): void; stream?: unknown }) => {
    active++;
    if (closing && !res.stream) res.setHeader?.('Connection', 'close'); // (HTTP/2 has no Connection header)
    res.once('close', () => {
      if (--active === 0) onIdle?.();
    });
  });
  const sockets = new Set<Socket>();
  for (const event of ['connection', 'secureConnection']) {
    server.on(event, (socket: Socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    });
  }
  const port = (server.address() as AddressInfo).port;
  let closed: Promise<void> | undefined;
  return {
    port,
    close(timeoutMs) {
      closing = true;
      closed ??= (async () => {
        const done = new Promise<void>((resolve) => server.close(() => resolve()));
        if ('closeIdleConnections' in server) server.closeIdleConnections();
        if (active > 0) await Promise.race([new Promise<void>((r) => (onIdle = r)), new Promise((r) => setTimeout(r, timeoutMs).unref())]);
        for (const client of wss.clients) client.close(1001, 'server shutting down');
        wss.close();
        for (const socket of sockets) socket.destroy(); // every accepted request has been answered
        await done;
      })();
      return closed;
    },
  };
}
