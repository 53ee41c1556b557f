/**
 * An intake thread (see intake.ts): accepts connections on the gateway's port, hands each request's head to
 * the main thread, reads its body when the main thread asks, and writes the answer it gets back. With
 * server.grpc_port it serves gRPC too: each call's HTTP request (see grpc/server.ts) goes the same way.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createSecureServer, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import { createServer as createHttpsServer } from 'node:https';
import { connect, createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { workerData } from 'node:worker_threads';
import { GatewayError } from '../errors/index.js';
import { readIncoming } from './body.js';
import { requestBuffers } from './buffer-pool.js';
import { compressWhole } from './compress.js';
import { CONNECTION_HEADERS, continueWhenRead, drainable, endStalledAnswers, keepIdleConnections, STREAM_ACK_BYTES } from './drain.js';
import type { CallRequest } from './grpc/server.js';
import type { FromIntake, IntakeWorkerData, ToIntake } from './intake.js';

const data = workerData as IntakeWorkerData;
const parent = data.parent;
const scheme = data.tls ? 'https' : 'http';
type Req = IncomingMessage | Http2ServerRequest;
type Res = ServerResponse | Http2ServerResponse;

const post = (m: FromIntake, transfer?: ArrayBuffer[]) => parent.postMessage(m, transfer);

/** Bodies up to this size are read before the main thread asks, and come with their request's head. */
const EAGER_BYTES = 64 * 1024;
/**
 * Larger bodies (with a Content-Length, within the server's limit) are read at once too and follow their head
 * unasked, as long as the bodies this thread is reading that way stay under this many bytes; past it, a body is
 * read only when the main thread asks. Asking costs the main thread a round trip per request (~10% of its time
 * for a 1.2 MB request, bench/results/edge-threads-cpu.md); the bound caps what callers the main thread goes on
 * to refuse (auth, rate limits) can make a thread hold. INFERGATE_INTAKE_PREFETCH_MB=0 turns it off (the
 * benchmark's baseline).
 */
const PREFETCH_BYTES = Number(process.env.INFERGATE_INTAKE_PREFETCH_MB ?? 64) * 2 ** 20;
let prefetching = 0;

/** Requests handed to the main thread and not yet answered. */
const open = new Map<number, { req: Req; res: Res }>();
let next = 0;
/** Streamed answers: bytes written since the main thread was last told (`sent`), and whether a drain is awaited. */
const unacked = new Map<number, { bytes: number; draining: boolean }>();

function onRequest(req: Req, res: Res) {
  const id = next++;
  open.set(id, { req, res });
  res.once('close', () => {
    unacked.delete(id);
    if (open.delete(id) && (!res.writableEnded || !res.writableFinished)) post({ t: 'gone', id });
  });
  const host = (req as Http2ServerRequest).authority ?? req.headers.host ?? data.host;
  const headers: [string, string][] = [];
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) if (raw[i][0] !== ':') headers.push([raw[i], raw[i + 1]]);
  const declared = Number(req.headers['content-length'] ?? 0);
  const hasBody = declared > 0 || req.headers['transfer-encoding'] !== undefined || (req.httpVersionMajor === 2 && !req.readableEnded);
  // A request line may carry an absolute URL (RFC 9112 §3.2.2, as proxies send): it is the URL then.
  const url = /^https?:\/\//.test(req.url ?? '') ? (req.url as string) : `${scheme}://${host}${req.url}`;
  const head = { t: 'request', id, method: req.method ?? 'GET', url, headers, remote: req.socket?.remoteAddress ?? 'unknown', hasBody } as const;
  // A small body comes with its head: no round trip to ask for it. (Only bodies the main thread might refuse
  // unread are worth leaving unread; a few KB are in the socket's buffer anyway.)
  if (declared > 0 && declared <= EAGER_BYTES)
    readIncoming(req, declared).then(
      (body) => post({ ...head, body }, [body.buffer as ArrayBuffer]),
      () => open.delete(id), // the client went away mid-body
    );
  // A client that asked to be told to go on (Expect: 100-continue) is told when a route reads its body, not before.
  else if (declared > EAGER_BYTES && declared <= data.maxBodyBytes && prefetching + declared <= PREFETCH_BYTES && !expectsContinue(req)) {
    prefetching += declared;
    post({ ...head, bodyFollows: declared });
    void sendBody(id, declared).finally(() => (prefetching -= declared));
  } else post(head);
}

const expectsContinue = (req: Req) => req.headers.expect?.toLowerCase() === '100-continue';

async function sendBody(id: number, limit: number) {
  const req = open.get(id)?.req;
  if (!req) return post({ t: 'body', id, error: { status: 400, code: 'bad_body', message: 'could not read the request body: the client went away' } });
  try {
    const body = await readIncoming(req, limit);
    // Bodies without a Content-Length are concatenated chunks, perhaps in Node's shared pool: a copy of their own crosses.
    const own = req.headers['content-length'] !== undefined ? body : new Uint8Array(body);
    post({ t: 'body', id, body: own }, [own.buffer as ArrayBuffer]);
  } catch (err) {
    const e = err instanceof GatewayError ? err : new GatewayError(400, 'bad_body', `could not read the request body: ${(err as Error).message}`);
    post({ t: 'body', id, error: { status: e.status, code: e.code, message: e.message } });
  }
}

function writeHead(res: Res, status: number, pairs: [string, string][], length?: number) {
  const http2 = 'stream' in res;
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of pairs) {
    if (http2 && CONNECTION_HEADERS.has(name)) continue;
    const had = headers[name];
    headers[name] = had === undefined ? value : [...(Array.isArray(had) ? had : [had]), value];
  }
  if (length !== undefined && headers['content-length'] === undefined) headers['content-length'] = String(length);
  (res as ServerResponse).writeHead(status, headers);
}

/** A whole answer, compressed here for a client that accepts it (server.compress_responses; see compress.ts). */
async function writeCompressed(id: number, status: number, pairs: [string, string][], body: string | Uint8Array) {
  const { req } = open.get(id) ?? {};
  if (!req) return;
  const headers = new Headers(pairs);
  const sent = await compressWhole(req.method ?? 'GET', req.headers['accept-encoding'], headers, body);
  const res = open.get(id)?.res; // (the client may have gone meanwhile)
  if (!res) return;
  writeHead(res, status, [...headers], typeof sent === 'string' ? Buffer.byteLength(sent) : sent.byteLength);
  (res as ServerResponse).end(sent);
}

parent.on('message', (m: ToIntake) => {
  switch (m.t) {
    case 'readBody':
      return void sendBody(m.id, m.limit);
    case 'head': {
      const call = calls.get(m.id);
      if (call) return call.head(m.status, m.headers, m.body, m.end);
      const res = open.get(m.id)?.res;
      if (!res) return;
      if (m.end && m.body !== undefined && data.compressResponses) return void writeCompressed(m.id, m.status, m.headers, m.body);
      if (m.end) {
        // No body: Node itself says Content-Length: 0, or nothing where a status forbids it (204, 304).
        writeHead(res, m.status, m.headers, m.body === undefined ? undefined : typeof m.body === 'string' ? Buffer.byteLength(m.body) : m.body.byteLength);
        if (m.body === undefined) res.end();
        else (res as ServerResponse).end(m.body);
      } else {
        writeHead(res, m.status, m.headers);
        (res as ServerResponse).flushHeaders(); // a stream's client sees its headers before the first event
      }
      return;
    }
    case 'chunk': {
      const call = calls.get(m.id);
      if (call) return call.chunk(m.chunk);
      const res = open.get(m.id)?.res as ServerResponse | undefined;
      if (!res) return;
      // The main thread holds the stream's next chunks once a window of them is not yet taken (see intake.ts):
      // told what the connection took every STREAM_ACK_BYTES, or, when its buffer is full, once it drains.
      const count = unacked.get(m.id) ?? { bytes: 0, draining: false };
      unacked.set(m.id, count);
      count.bytes += Buffer.byteLength(m.chunk);
      const tell = () => {
        post({ t: 'sent', id: m.id, bytes: count.bytes });
        count.bytes = 0;
      };
      if (!res.write(m.chunk)) {
        if (!count.draining) {
          count.draining = true;
          res.once('drain', () => {
            count.draining = false;
            tell();
          });
        }
      } else if (!count.draining && count.bytes >= STREAM_ACK_BYTES) tell();
      return;
    }
    case 'end': {
      const call = calls.get(m.id);
      if (call) return call.end(m.failed);
      const res = open.get(m.id)?.res;
      if (!res) return;
      if (!m.failed) res.end();
      else if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"internal error","code":"internal"}');
      else res.destroy();
      return;
    }
    case 'buffer':
      return requestBuffers.releaseReturned(m.buffer);
    case 'leave':
      return drain.leave();
    case 'close':
      return void Promise.all([drain.close(m.timeoutMs), grpc?.close(m.timeoutMs)]).then(() => post({ t: 'closed' }));
  }
});

/**
 * A WebSocket upgrade goes, bytes as they are, to the main thread's own server; it learns the client's
 * address from a header only this process can sign.
 */
function onUpgrade(req: IncomingMessage, socket: Socket, head: Buffer) {
  const upstream = connect(data.upstreamPort, '127.0.0.1', () => {
    const lines = [`${req.method} ${req.url} HTTP/1.1`];
    const raw = req.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) if (raw[i].toLowerCase() !== 'x-infergate-peer') lines.push(`${raw[i]}: ${raw[i + 1]}`);
    lines.push(`x-infergate-peer: ${data.secret} ${socket.remoteAddress ?? 'unknown'}`, '', '');
    upstream.write(lines.join('\r\n'));
    if (head.byteLength) upstream.write(head);
    socket.pipe(upstream).pipe(socket);
  });
  // The main thread closed it (its close frame is piped already): end ours, and read on so the client's own end is
  // seen (the pipe is gone, leaving the socket paused: half-open, it would hold the server's shutdown for good).
  upstream.once('error', () => socket.destroy()).once('close', () => socket.end().resume());
  socket.once('error', () => upstream.destroy()).once('close', () => upstream.destroy());
}

/** gRPC calls handed to the main thread, by id: where their answers go. */
type CallAnswer = {
  head(status: number, headers: [string, string][], body: Uint8Array | string | undefined, end: boolean): void;
  chunk(chunk: Uint8Array | string): void;
  end(failed?: boolean): void;
};
const calls = new Map<number, CallAnswer>();

/**
 * A gRPC call's HTTP request, answered by the main thread's app as an HTTP request from this thread is: its head
 * with its body, then the answer whole, or streamed (each piece acknowledged as it comes: the call reads it at once).
 */
function dispatchToMain({ path, method, headers, body, remoteAddress, signal }: CallRequest): Promise<Response> {
  const id = next++;
  return new Promise((resolve, reject) => {
    let stream: ReadableStreamDefaultController<Uint8Array> | undefined;
    const finish = () => {
      calls.delete(id);
      signal.removeEventListener('abort', left);
    };
    const left = () => {
      if (!calls.has(id)) return;
      finish();
      post({ t: 'gone', id });
      const err = new Error('the call was cancelled');
      stream?.error(err);
      reject(err);
    };
    signal.addEventListener('abort', left, { once: true });
    calls.set(id, {
      head: (status, pairs, whole, end) => {
        if (end) finish();
        const streamed = () =>
          new ReadableStream<Uint8Array>({
            start: (controller) => {
              stream = controller;
            },
          });
        const answer = end ? ((whole ?? null) as BodyInit | null) : streamed();
        resolve(new Response(answer, { status, headers: pairs }));
      },
      chunk: (chunk) => {
        const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
        stream?.enqueue(bytes);
        post({ t: 'sent', id, bytes: bytes.byteLength });
      },
      end: (failed) => {
        finish();
        if (failed) stream?.error(new Error('the answer failed midway'));
        else stream?.close();
      },
    });
    // A buffer of its own crosses by transfer (a view into a shared one, Node's pool, cannot).
    const own = body && (body.byteOffset === 0 && body.byteLength === body.buffer.byteLength ? body : new Uint8Array(body));
    const head = { t: 'request', id, method, url: `http://grpc${path}`, headers, remote: remoteAddress, hasBody: own !== undefined, grpc: true } as const;
    post(own ? { ...head, body: own } : head, own ? [own.buffer as ArrayBuffer] : undefined);
  });
}

/** The gRPC service on its port (bound by every thread, reusePort) with its connections handed to grpc-js. */
async function listenGrpc(port: number): Promise<{ port: number; close(timeoutMs: number): Promise<void> }> {
  const { grpcServer, grpcCredentials, closeGrpc } = await import('./grpc/server.js');
  const service = grpcServer(dispatchToMain, data.maxBodyBytes);
  const injector = service.createConnectionInjector(grpcCredentials(data.tls));
  const listener: NetServer = createNetServer((socket) => injector.injectConnection(socket));
  await new Promise<void>((resolve, reject) => {
    listener.once('error', (err: NodeJS.ErrnoException) =>
      reject(new Error(`server.grpc_port: port ${port} on ${data.host} cannot be used (${err.code ?? err.message})`)),
    );
    listener.listen({ port, host: data.host, reusePort: data.reusePort || undefined }, resolve);
  });
  return {
    port: (listener.address() as { port: number }).port,
    close: async (timeoutMs) => {
      listener.close();
      await closeGrpc(service, timeoutMs);
    },
  };
}
let grpc: Awaited<ReturnType<typeof listenGrpc>> | undefined;

const tls = data.tls && { key: data.tls.key, cert: data.tls.cert };
const server = (
  !tls ? createServer(onRequest) : data.tls?.http2 ? createSecureServer({ ...tls, allowHTTP1: true }, onRequest) : createHttpsServer(tls, onRequest)
) as Server;
server.on('upgrade', onUpgrade);
keepIdleConnections(server, data.keepAliveTimeoutMs);
continueWhenRead(server);
endStalledAnswers(server, data.sendTimeoutMs ?? 0, (answer) => post({ t: 'stalled', answer }));
const drain = drainable(server, { upgraded: 'leave' });
server.once('error', (err) => {
  throw err;
});
server.listen({ port: data.port, host: data.host, reusePort: data.reusePort || undefined }, async () => {
  if (data.grpcPort !== undefined) grpc = await listenGrpc(data.grpcPort); // (a failure ends the thread, and the start)
  post({ t: 'listening', port: (server.address() as { port: number }).port, grpcPort: grpc?.port });
});
