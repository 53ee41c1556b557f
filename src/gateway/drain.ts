import { constants } from 'node:http2';
import type { Server, Socket } from 'node:net';

/** Headers HTTP/2 forbids (RFC 9113 §8.2.2): Node's compatibility layer throws on them. */
export const CONNECTION_HEADERS: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);

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

/**
 * Bytes of one streamed answer the main thread may have handed to its intake thread that the client's connection
 * has not taken yet: past it the stream's producer waits, as it waits for a slow client on the main thread (a
 * generation pauses). The thread says what was taken every STREAM_ACK_BYTES, or when its buffer drains. (A
 * credit window, not a word when the client falls behind: a producer that never waits, enqueuing as it is pulled,
 * runs ahead in microtasks, and no word can reach it; a turn of the event loop after every chunk instead halved
 * the rate of small SSE events a thread passes on.)
 */
export const STREAM_WINDOW = 1 << 20;
export const STREAM_ACK_BYTES = 64 * 1024;

/**
 * `Expect: 100-continue` (curl sends it with bodies over 1 MB): Node answers "100 Continue" at once by default, so
 * the client sends its body even when the answer will be a 401, a 429 or a 413. Here it is said only when the body
 * is first read (a stream resumes then): a request refused before is answered without its body ever being sent.
 */
export function continueWhenRead(server: Server): void {
  server.on('checkContinue', (req: NodeJS.EventEmitter, res: { headersSent: boolean; writeContinue(): void }) => {
    req.once('resume', () => res.headersSent || res.writeContinue());
    server.emit('request', req, res);
  });
}

/** Where an answer's unsent bytes wait: the connection (HTTP/1.1) or the stream (HTTP/2, its own flow control). */
type Outlet = NodeJS.EventEmitter & { writableLength: number; _handle?: { writeQueueSize?: unknown } | null };
type Sending = {
  socket?: Outlet | null;
  stream?: Outlet & { close(code: number): void; session?: { close(): void } };
  destroy(): void;
  once(e: 'close', f: () => void): void;
};
type Asked = { method?: string; url?: string; socket?: { remoteAddress?: string } | null };

/** An answer ended by `endStalledAnswers`, for the log. */
export type StalledAnswer = { method?: string; path?: string; client?: string; unsentBytes: number };

/**
 * nginx's send_timeout: an answer whose client has taken none of its bytes for `ms` while more wait to be sent
 * (a reader that stopped, a network gone without a FIN or RST) is ended, and with it the work still making it
 * (a stream's generation frees its slot). Only waiting bytes count: a stream waiting for its next token is not
 * stalled. Without it such a connection keeps its buffers and its work until TCP gives up (~15 min) — or for
 * ever, when the client is alive and merely not reading. HTTP/1.1 loses the connection; HTTP/2 the stream.
 */
export function endStalledAnswers(server: Server, ms: number, onEnded?: (answer: StalledAnswer) => void): void {
  if (!(ms > 0)) return;
  /** Open answers: their requests, and while bytes wait, how many were left at the last look and since when none moved. */
  const open = new Map<Sending, { req: Asked; left?: number; since?: number }>();
  server.on('request', (req: Asked, res: Sending) => {
    const out = res.stream ?? res.socket;
    if (!out) return;
    const answer: { req: Asked; left?: number; since?: number } = { req };
    open.set(res, answer);
    const moved = () => (answer.since = undefined);
    out.on('drain', moved);
    res.once('close', () => {
      open.delete(res);
      out.off('drain', moved); // an HTTP/1.1 connection outlives its answers
    });
  });
  const check = setInterval(
    () => {
      const now = performance.now();
      for (const [res, answer] of open) {
        const out = res.stream ?? res.socket;
        if (!out?.writableLength) {
          answer.since = undefined;
          continue;
        }
        // libuv's count falls as the kernel takes each part of a write; Node's only when a write completes.
        const queued = out._handle?.writeQueueSize;
        const left = typeof queued === 'number' ? queued : out.writableLength;
        if (answer.since === undefined || left < (answer.left ?? 0)) answer.since = now;
        answer.left = left;
        if (now - answer.since < ms) continue;
        open.delete(res);
        const { req } = answer;
        onEnded?.({ method: req.method, path: req.url, client: req.socket?.remoteAddress, unsentBytes: left });
        if (!res.stream) res.destroy();
        else {
          // Node goes on counting a cancelled stream's unsent bytes against its connection (past 10 MB it refuses
          // every new stream, NGHTTP2_ENHANCE_YOUR_CALM): so the client is also told to take its next requests to
          // a new connection (GOAWAY); its other streams finish on this one.
          const session = res.stream.session;
          res.stream.close(constants.NGHTTP2_CANCEL);
          session?.close();
        }
      }
    },
    Math.min(1000, ms / 4),
  ).unref();
  server.once('close', () => clearInterval(check));
}

/**
 * Work a server's requests do not show — requests made as WebSocket messages — for its shutdown to wait for as
 * it waits for requests; `closing` once it has begun (new work is refused then).
 */
export class QuietWork {
  private active = 0;
  closing = false;
  private onIdle: (() => void)[] = [];

  /** One more piece of work; the function it returns ends it. */
  begin(): () => void {
    this.active++;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      if (--this.active === 0) for (const idle of this.onIdle.splice(0)) idle();
    };
  }

  idle(): Promise<void> {
    return this.active === 0 ? Promise.resolve() : new Promise((resolve) => this.onIdle.push(resolve));
  }
}

type RequestServer = Server & { closeIdleConnections?(): void };
type Answer = { setHeader?(n: string, v: string): void; once(e: 'close', f: () => void): void; stream?: { session?: { close(): void } } };

/**
 * A shutdown that answers what was accepted: counts a server's requests at the socket level (a response is
 * done when its bytes are written, not when fetch() returns) and its connections. `leave` (at SIGTERM, before
 * server.shutdown_delay_s) still serves, but each answer from then on sends its connection away — HTTP/1.1
 * `Connection: close`, HTTP/2 GOAWAY (its streams finish) — so clients that keep connections open (behind a
 * Kubernetes Service no health check moves them) reconnect to another replica, and none is reused by its client
 * just as `close` ends it. `close` stops accepting,
 * closes idle connections, waits up to `timeoutMs` for accepted requests (and `work`'s), runs `beforeDestroy` (WebSockets
 * say goodbye there), then closes every connection left. Upgraded connections are left alone with
 * `upgraded: 'leave'` (their other end closes them).
 */
export function drainable(server: RequestServer, { upgraded = 'destroy', work }: { upgraded?: 'destroy' | 'leave'; work?: QuietWork } = {}) {
  let active = 0;
  let leaving = false;
  let onIdle: (() => void) | undefined;
  server.on('request', (_req: unknown, res: Answer) => {
    active++;
    if (leaving) {
      if (res.stream)
        res.stream.session?.close(); // GOAWAY: HTTP/2 has no Connection header
      else res.setHeader?.('Connection', 'close');
    }
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
    leave() {
      leaving = true;
    },
    close(timeoutMs: number, beforeDestroy?: () => void): Promise<void> {
      leaving = true;
      if (work) work.closing = true;
      closed ??= (async () => {
        const done = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections?.();
        const requests = active > 0 ? new Promise<void>((r) => (onIdle = r)) : undefined;
        await Promise.race([Promise.all([requests, work?.idle()]), new Promise((r) => setTimeout(r, timeoutMs).unref())]);
        beforeDestroy?.();
        for (const socket of sockets) socket.destroy(); // every accepted request has been answered
        await done;
      })();
      return closed;
    },
  };
}
