import type { Server, Socket } from 'node:net';

/**
 * Keeps idle HTTP/1.1 connections open `ms` (said to clients in `Keep-Alive: timeout=`); the time to a request's
 * headers must outlast it, or a connection reused just before the idle limit could time out mid-headers. HTTP/2
 * sessions have no such timer. Shutdown closes idle connections at once whatever this is (see drainable).
 */
export function keepIdleConnections(server: Server, ms: number | undefined): void {
  if (ms === undefined || !('keepAliveTimeout' in server)) return;
  const http = server as Server & { keepAliveTimeout: number; headersTimeout: number };
  http.keepAliveTimeout = ms;
  http.headersTimeout = Math.max(http.headersTimeout, ms + 1000);
}

type RequestServer = Server & { closeIdleConnections?(): void };
type Answer = { setHeader?(n: string, v: string): void; once(e: 'close', f: () => void): void; stream?: unknown };

/**
 * A shutdown that answers what was accepted: counts a server's requests at the socket level (a response is
 * done when its bytes are written, not when fetch() returns) and its connections. `close` stops accepting,
 * closes idle connections, waits up to `timeoutMs` for accepted requests, runs `beforeDestroy` (WebSockets
 * say goodbye there), then closes every connection left. Upgraded connections are left alone with
 * `upgraded: 'leave'` (their other end closes them).
 */
export function drainable(server: RequestServer, { upgraded = 'destroy' }: { upgraded?: 'destroy' | 'leave' } = {}) {
  let active = 0;
  let closing = false;
  let onIdle: (() => void) | undefined;
  server.on('request', (_req: unknown, res: Answer) => {
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
  if (upgraded === 'leave') server.on('upgrade', (_req: unknown, socket: Socket) => sockets.delete(socket));
  let closed: Promise<void> | undefined;
  return {
    close(timeoutMs: number, beforeDestroy?: () => void): Promise<void> {
      closing = true;
      closed ??= (async () => {
        const done = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections?.();
        if (active > 0) await Promise.race([new Promise<void>((r) => (onIdle = r)), new Promise((r) => setTimeout(r, timeoutMs).unref())]);
        beforeDestroy?.();
        for (const socket of sockets) socket.destroy(); // every accepted request has been answered
        await done;
      })();
      return closed;
    },
  };
}
