import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import type { Hono } from 'hono';
import type { GatewayEnv } from './types.js';

export type Listening = {
  port: number;
  /** Stops accepting, waits for accepted requests (up to timeoutMs), then closes every connection. */
  close(timeoutMs: number): Promise<void>;
};

/** Binds the app to a socket; the only place that calls serve(). */
export async function listen(app: Hono<GatewayEnv>, opts: { port: number; host: string }): Promise<Listening> {
  let active = 0;
  let onIdle: (() => void) | undefined;
  const fetch: typeof app.fetch = async (req, ...rest) => {
    active++;
    try {
      return await app.fetch(req, ...rest);
    } finally {
      if (--active === 0) onIdle?.();
    }
  };
  const server = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
    const s = serve({ fetch, port: opts.port, hostname: opts.host }, () => resolve(s));
    s.once('error', reject);
  });
  const port = (server.address() as AddressInfo).port;
  let closing: Promise<void> | undefined;
  return {
    port,
    close(timeoutMs) {
      closing ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        if ('closeIdleConnections' in server) server.closeIdleConnections();
        if (active > 0) {
          await Promise.race([new Promise<void>((r) => (onIdle = r)), new Promise((r) => setTimeout(r, timeoutMs).unref())]);
        }
        if ('closeAllConnections' in server) server.closeAllConnections();
        await closed;
      })();
      return closing;
    },
  };
}
