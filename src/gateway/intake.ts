import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MessageChannel, type MessagePort, type Worker } from 'node:worker_threads';
import type { Hono } from 'hono';
import { GatewayError } from '../errors/index.js';
// Not through models/index.ts: the thread helper alone, not ONNX Runtime.
import { spawnWorker } from '../models/thread.js';
import { EventLoopWindow } from '../telemetry/index.js';
import { adoptBody, returnToIntake, tooLarge } from './body.js';
import { POOLED_MIN_BYTES } from './buffer-pool.js';
import { STREAM_WINDOW, type StalledAnswer } from './drain.js';
import type { GatewayEnv } from './types.js';
import { wholeBody } from './whole-body.js';

/**
 * HTTP intake on worker threads (`server.intake_threads`). On the H200 the gateway's one event loop was the
 * limit, and a third of its time per 1.2 MB request went to reading the body off the socket and writing the
 * answer (bench/results/edge-threads-cpu.md). Here worker threads accept the connections, parse HTTP (and
 * TLS), read each body into a reused buffer and write each answer; the main thread runs the same Hono app
 * on what they hand it. A body crosses by transfer, not copy, and its buffer goes back to its thread for reuse.
 * Bodies up to 64 KB come with their heads; larger ones follow unasked while the thread's reads of such bodies
 * stay under 64 MB, and past that only when the route reads them (see intake-worker.ts).
 * WebSocket upgrades are piped, bytes as they are, to the main thread's own server on a loopback port. With
 * server.grpc_port the threads serve gRPC too: a call's HTTP request crosses as an HTTP request's does.
 */

/** What a worker thread tells the main thread. */
export type FromIntake =
  | { t: 'listening'; port: number; grpcPort?: number }
  | {
      t: 'request';
      id: number;
      method: string;
      url: string;
      headers: [string, string][];
      remote: string;
      hasBody: boolean;
      /** A gRPC call's HTTP request (see grpc/server.ts), for the logs. */
      grpc?: boolean;
      /** A small body, read with the head (one message instead of a round trip). */
      body?: Uint8Array;
      /** A larger body the thread is reading unasked, of this many bytes: it follows in a `body` message. */
      bodyFollows?: number;
    }
  | { t: 'body'; id: number; body?: Uint8Array; error?: { status: number; code: string; message: string } }
  | { t: 'gone'; id: number }
  /** Bytes of a streamed answer its client's connection has taken (see STREAM_WINDOW). */
  | { t: 'sent'; id: number; bytes: number }
  | { t: 'stalled'; answer: StalledAnswer }
  | { t: 'closed' };

/** What the main thread tells a worker thread. */
export type ToIntake =
  | { t: 'readBody'; id: number; limit: number }
  | { t: 'head'; id: number; status: number; headers: [string, string][]; body?: Uint8Array | string; end: boolean }
  | { t: 'chunk'; id: number; chunk: Uint8Array | string }
  | { t: 'end'; id: number; failed?: boolean }
  | { t: 'buffer'; buffer: ArrayBuffer }
  | { t: 'leave' }
  | { t: 'close'; timeoutMs: number };

export type IntakeOptions = {
  port: number;
  host: string;
  tls?: { cert: string | Buffer; key: string | Buffer; http2: boolean };
  /** The main thread's own server, for WebSocket upgrades. */
  upstreamPort: number;
  /** The limit for routes that read the body as a web Request's (server.max_body_bytes). */
  maxBodyBytes: number;
  /** server.keep_alive_timeout_s, in ms. */
  keepAliveTimeoutMs?: number;
  /** server.send_timeout_s, in ms. */
  sendTimeoutMs?: number;
  /** Whole answers compressed for clients that accept it, on the thread (server.compress_responses). */
  compressResponses?: boolean;
  /** KServe v2 gRPC on this port too, served by the threads (server.grpc_port; see intake-worker.ts). */
  grpcPort?: number;
};

export type IntakeWorkerData = IntakeOptions & { reusePort: boolean; secret: string; parent: MessagePort };

/** Requests handed over from an intake thread carry this as Hono's env instead of Node's request and response. */
export type IntakeRequest = {
  remoteAddress: string;
  /** It stands for a gRPC call (logged as such). */
  grpc?: boolean;
  /** Aborts when the client goes away before its answer is written. */
  signal: AbortSignal;
  /** The body, refused with 413 past `limit` bytes; read once. */
  readBody(limit: number): Promise<Uint8Array>;
};

/** Upgrades piped to the main thread say who the client is in this header, behind a secret of this process. */
const PEER_HEADER = 'x-infergate-peer';
const secret = randomBytes(16).toString('hex');

/** The client's address: the socket's, or, on a connection piped from an intake thread, the one it names. */
export function peerAddress(incoming: IncomingMessage | undefined): string | undefined {
  const named = incoming?.headers[PEER_HEADER];
  if (typeof named === 'string' && named.startsWith(`${secret} `) && isLoopback(incoming?.socket?.remoteAddress)) return named.slice(secret.length + 1);
  return incoming?.socket?.remoteAddress;
}

const isLoopback = (address: string | undefined) => address === '127.0.0.1' || address === '::1' || address === '::ffff:127.0.0.1';

/** N intake threads serving `app` on one port (more than 1 needs Node 22.12: the config refuses it before). */
export async function startIntakeThreads(
  app: Hono<GatewayEnv>,
  count: number,
  opts: IntakeOptions,
  { onError, onStalledAnswer }: { onError: (err: Error) => void; onStalledAnswer?: (answer: StalledAnswer) => void },
): Promise<{
  port: number;
  grpcPort?: number;
  /** Shutdown has begun: answers send their connections away (see drainable). */
  leave(): void;
  /** Stops accepting and answers what was accepted; the threads end once `upgradedClosed` settles too. */
  close(timeoutMs: number, upgradedClosed?: Promise<unknown>): Promise<void>;
  busy(): number[];
}> {
  const threads: IntakeThread[] = [];
  let closing = false;
  let port = opts.port;
  let grpcPort = opts.grpcPort;
  const start = async (): Promise<IntakeThread> => {
    const thread = await IntakeThread.start(app, { ...opts, port, grpcPort, reusePort: count > 1 }, onStalledAnswer, (err) => {
      if (closing) return;
      onError(err);
      // Its connections are lost; a replacement takes new ones.
      if (threads.includes(thread)) threads.splice(threads.indexOf(thread), 1);
      start().then((t) => {
        if (closing) void t.close(0);
        else threads.push(t);
      }, onError);
    });
    return thread;
  };
  // The first binds the port (a free one for port 0); the others bind the same.
  threads.push(await start());
  port = threads[0].port;
  grpcPort = threads[0].grpcPort;
  for (let i = 1; i < count; i++) threads.push(await start());
  return {
    port,
    grpcPort,
    leave: () => {
      for (const t of threads) t.leave();
    },
    async close(timeoutMs, upgradedClosed) {
      closing = true;
      await Promise.all(threads.map((t) => t.close(timeoutMs, upgradedClosed)));
    },
    busy: () => threads.map((t) => t.busy()),
  };
}

type BodyMessage = Extract<FromIntake, { t: 'body' }>;
type BodyWaiter = { resolve(b: Uint8Array): void; reject(e: Error): void };

/** One worker thread and the requests it has handed over. */
class IntakeThread {
  private bodies = new Map<number, BodyWaiter>();
  /** Bodies that followed their heads unasked and that no route has read yet. */
  private arrived = new Map<number, BodyMessage>();
  private requests = new Map<number, AbortController>();
  /** Streamed answers: bytes handed to the thread and not yet taken by the client, and who waits for fewer. */
  private windows = new Map<number, { outstanding: number; wake?: () => void }>();
  private closed?: () => void;
  private loop: EventLoopWindow;

  private constructor(
    private app: Hono<GatewayEnv>,
    private worker: Worker,
    private channel: MessagePort,
    readonly port: number,
    readonly grpcPort: number | undefined,
    private maxBodyBytes: number,
    private onStalledAnswer: ((answer: StalledAnswer) => void) | undefined,
    private onExit: (err: Error) => void,
  ) {
    channel.on('message', (m: FromIntake) => this.receive(m));
    this.loop = new EventLoopWindow(10_000, 1000, worker.performance.eventLoopUtilization);
    // An uncaught error is followed by the exit: told once, with the error.
    let failure: Error | undefined;
    worker.on('error', (err) => (failure = err));
    worker.once('exit', (code) => {
      for (const controller of this.requests.values()) controller.abort();
      for (const w of this.windows.values()) w.wake?.();
      for (const body of this.bodies.values()) body.reject(new GatewayError(503, 'intake_failed', 'the thread reading this request stopped'));
      if (!this.closed) this.onExit(failure ?? new Error(`an intake thread exited (code ${code})`));
    });
  }

  static async start(
    app: Hono<GatewayEnv>,
    opts: Omit<IntakeWorkerData, 'secret' | 'parent'>,
    onStalledAnswer: ((answer: StalledAnswer) => void) | undefined,
    onExit: (err: Error) => void,
  ): Promise<IntakeThread> {
    const { port1, port2 } = new MessageChannel();
    const url = new URL(`./intake-worker${extname(fileURLToPath(import.meta.url))}`, import.meta.url).href;
    const worker = spawnWorker(url, { ...opts, secret, parent: port2 } satisfies IntakeWorkerData, undefined, [port2]);
    const { port, grpcPort } = await new Promise<Extract<FromIntake, { t: 'listening' }>>((resolve, reject) => {
      port1.once('message', (m: FromIntake) => (m.t === 'listening' ? resolve(m) : reject(new Error(`unexpected ${m.t}`))));
      worker.once('error', reject).once('exit', (code) => reject(new Error(`the intake thread exited (code ${code}) before it listened`)));
    });
    worker.removeAllListeners('error').removeAllListeners('exit');
    return new IntakeThread(app, worker, port1, port, grpcPort, opts.maxBodyBytes, onStalledAnswer, onExit);
  }

  /** A body whose buffer the thread's pool would keep goes back to it once released. */
  private adopt(body: Uint8Array): Uint8Array {
    return body.buffer.byteLength < POOLED_MIN_BYTES ? body : adoptBody(body, (buffer) => this.post({ t: 'buffer', buffer }, [buffer]));
  }

  private post(m: ToIntake, transfer?: ArrayBuffer[]) {
    this.channel.postMessage(m, transfer);
  }

  private receive(m: FromIntake) {
    if (m.t === 'request') void this.serve(m);
    else if (m.t === 'body') {
      const waiting = this.bodies.get(m.id);
      this.bodies.delete(m.id);
      if (waiting) this.settle(m, waiting);
      else if (this.requests.has(m.id)) this.arrived.set(m.id, m);
      else this.giveBack(m); // answered without reading it (refused, say)
    } else if (m.t === 'sent') {
      const w = this.windows.get(m.id);
      if (w) w.outstanding -= m.bytes;
      w?.wake?.();
    } else if (m.t === 'gone') {
      this.requests.get(m.id)?.abort();
      this.windows.get(m.id)?.wake?.();
    } else if (m.t === 'stalled') this.onStalledAnswer?.(m.answer);
    else if (m.t === 'closed') this.closed?.();
  }

  private async serve(m: Extract<FromIntake, { t: 'request' }>) {
    const controller = new AbortController();
    this.requests.set(m.id, controller);
    let read = false;
    const intake: IntakeRequest = {
      remoteAddress: m.remote,
      ...(m.grpc && { grpc: true }),
      signal: controller.signal,
      readBody: (limit) => {
        if (read) return Promise.reject(new GatewayError(400, 'bad_body', 'the request body was read already'));
        read = true;
        if (m.body) return m.body.byteLength > limit ? Promise.reject(tooLarge(limit)) : Promise.resolve(this.adopt(m.body));
        if (!m.hasBody) return Promise.resolve(new Uint8Array(0));
        // Refused by its Content-Length whether or not it is here yet (the thread gives it back either way).
        if (m.bodyFollows !== undefined && m.bodyFollows > limit) return Promise.reject(tooLarge(limit));
        return new Promise((resolve, reject) => {
          const arrived = this.arrived.get(m.id);
          this.arrived.delete(m.id);
          if (arrived) this.settle(arrived, { resolve, reject });
          else this.bodies.set(m.id, { resolve, reject });
          if (m.bodyFollows === undefined) this.post({ t: 'readBody', id: m.id, limit });
        });
      },
    };
    try {
      let request: Request;
      try {
        request = new Request(m.url, { method: m.method, headers: m.headers });
      } catch {
        return this.post({ t: 'head', id: m.id, status: 400, headers: [], end: true });
      }
      if (m.hasBody) bodyFromIntake(request, intake, this.maxBodyBytes);
      await this.reply(m.id, await this.app.fetch(request, { intake }), controller.signal);
    } catch (err) {
      // The app answers its own errors; this is a stream that failed midway (or a thread gone).
      this.post({ t: 'end', id: m.id, failed: true });
      if (!controller.signal.aborted) console.error('intake: answering a request failed', err);
    } finally {
      this.requests.delete(m.id);
      this.windows.delete(m.id);
      this.bodies.delete(m.id);
      const unread = this.arrived.get(m.id);
      this.arrived.delete(m.id);
      if (unread) this.giveBack(unread);
    }
  }

  private settle(m: BodyMessage, to: BodyWaiter) {
    if (m.error) to.reject(new GatewayError(m.error.status, m.error.code, m.error.message));
    else if (m.body) to.resolve(this.adopt(m.body));
  }

  /** A body no route read goes back to its thread's pool (as one released would). */
  private giveBack(m: BodyMessage) {
    if (m.body) returnToIntake(this.adopt(m.body).buffer);
  }

  /**
   * The answer as the worker writes it: whole when it is at hand, chunk by chunk when it streams. Bytes go as a
   * copy of just their view, transferred: cloning a view would copy its whole buffer (a pool's, a slot's), and
   * a Buffer's slice() is no copy (Node's pool cannot be transferred: Node 24 throws).
   */
  private async reply(id: number, res: Response, signal: AbortSignal) {
    const whole = wholeBody(res);
    let body: unknown = whole !== undefined ? whole : res.body;
    const resHeaders = res.headers;
    const headers = [...resHeaders] as [string, string][];
    if (body instanceof Blob) body = new Uint8Array(await body.arrayBuffer());
    if (body !== null && !resHeaders.has('content-type')) headers.push(['content-type', 'text/plain; charset=UTF-8']);
    if (body === null || typeof body === 'string' || body instanceof Uint8Array) {
      const whole = body instanceof Uint8Array ? new Uint8Array(body) : ((body ?? undefined) as string | undefined);
      return this.post({ t: 'head', id, status: res.status, headers, body: whole, end: true }, whole instanceof Uint8Array ? [whole.buffer] : undefined);
    }
    this.post({ t: 'head', id, status: res.status, headers, end: false });
    const reader = (body as ReadableStream<Uint8Array | string>).getReader();
    const cancel = () => void reader.cancel().catch(() => {});
    signal.addEventListener('abort', cancel, { once: true });
    const window: { outstanding: number; wake?: () => void } = { outstanding: 0 };
    this.windows.set(id, window);
    try {
      for (;;) {
        // A slow client: the producer waits (see STREAM_WINDOW), until the thread says bytes were taken.
        while (window.outstanding > STREAM_WINDOW && !signal.aborted) await new Promise<void>((resolve) => (window.wake = resolve));
        const { done, value } = await reader.read();
        if (done) break;
        const chunk = value instanceof Uint8Array ? new Uint8Array(value) : value;
        window.outstanding += Buffer.byteLength(chunk); // (before the transfer empties it)
        this.post({ t: 'chunk', id, chunk }, chunk instanceof Uint8Array ? [chunk.buffer] : undefined);
      }
      this.post({ t: 'end', id });
    } finally {
      signal.removeEventListener('abort', cancel);
    }
  }

  /** The share of the last ~10 s its event loop was busy: near 1, more threads would take more. */
  busy(): number {
    return this.loop.read();
  }

  leave(): void {
    this.post({ t: 'leave' });
  }

  /**
   * The thread stops accepting and answers what it accepted; it ends once `upgradedClosed` settles too: the
   * WebSockets it pipes live on the main thread's server, and their last frames (work answered during the
   * shutdown, the 1001 goodbye) pass through this thread.
   */
  async close(timeoutMs: number, upgradedClosed?: Promise<unknown>): Promise<void> {
    const closed = new Promise<void>((resolve) => (this.closed = resolve));
    this.post({ t: 'close', timeoutMs });
    const limit = new Promise((r) => setTimeout(r, timeoutMs + 2000).unref());
    await Promise.race([Promise.all([closed, upgradedClosed]), limit]);
    await this.worker.terminate();
  }
}

/**
 * Routes that read the body through the web Request (JSON of a few admin routes, multipart uploads) get
 * it from the intake thread when they ask, with the server's own limit; the inference routes use
 * `readBody`, which takes it straight from `intake`.
 */
function bodyFromIntake(request: Request, intake: IntakeRequest, limit: number) {
  const whole = async () => {
    const body = await intake.readBody(limit);
    const copy = new Uint8Array(body); // the original goes back to its thread
    returnToIntake(body.buffer);
    return new Response(copy, { headers: { 'content-type': request.headers.get('content-type') ?? '' } });
  };
  for (const method of ['arrayBuffer', 'blob', 'formData', 'json', 'text'] as const)
    Object.defineProperty(request, method, { value: async () => (await whole())[method]() });
}
