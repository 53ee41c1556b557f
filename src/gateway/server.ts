import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import type { Hono } from 'hono';
import { WebSocketServer } from 'ws';
import type { GatewayEnv } from './types.js';

export type Listening = {
  port: number;
  /** Stops accepting, waits for accepted requests to be answered (up to timeoutMs), then closes every connection. */
  close(timeoutMs: number): Promise<void>;
};

/** Binds the app to a socket; the only place that calls serve(). */
export async function listen(app: Hono<GatewayEnv>, opts: { port: number; host: string }): Promise<Listening> {
  // WebSocket upgrades (/v1/ws) go through @hono/node-server's built-in support for the `ws` server.
  const wss = new WebSocketServer({ noServer: true });
  const websocket = { server: wss };
  const server = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, port: opts.port, hostname: opts.host, websocket }, () => resolve(s));
    s.once('error', reject);
  });
  // Counted at the socket level: a response is done when its bytes are written, not when fetch() returns.
  let active = 0;
  let closing = false;
  let onIdle: (() => void) | undefined;
  server.on('request', (_req: IncomingMessage, res: ServerResponse) => {
    active++;
    if (closing) res.setHeader('Connection', 'close');
    res.once('close', () => {
      if (--active === 0) onIdle?.();
    });
  });
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
        if ('closeAllConnections' in server) server.closeAllConnections();
        for (const client of wss.clients) client.close(1001, 'server shutting down');
        wss.close();
        await done;
      })();
      return closed;
    },
  };
}
