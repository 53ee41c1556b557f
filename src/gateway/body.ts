import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';
import { promisify } from 'node:util';
import { brotliDecompress, gunzip, inflate, type ZlibOptions } from 'node:zlib';
import type { Context } from 'hono';
import type { z } from 'zod';
import { badInput, GatewayError } from '../errors/index.js';
import { requestBuffers } from './buffer-pool.js';
import type { IntakeRequest } from './intake.js';

/** Hono's env: Node's request and response under @hono/node-server, or what an intake thread handed over. */
type NodeBindings = { incoming?: IncomingMessage; outgoing?: ServerResponse; intake?: IntakeRequest };

export const tooLarge = (limit: number) => new GatewayError(413, 'body_too_large', `the request body exceeds the limit of ${limit} bytes`);

/**
 * The request body, refused with 413 as soon as it passes `limit` bytes (by Content-Length up front,
 * otherwise while reading), inflated if it came compressed (again within `limit`). Under @hono/node-server it
 * reads the Node stream directly: building a web Request with a ReadableStream body costs more than the whole
 * rest of a small inference request.
 */
export async function readBody(c: Context, limit: number): Promise<Uint8Array> {
  const body = await decoded(await rawBody(c, limit), c.req.header('content-encoding'), limit);
  (c.get('captureBody') as ((body: Uint8Array) => void) | undefined)?.(body);
  return body;
}

const DECODERS: Record<string, (body: Uint8Array, options: ZlibOptions) => Promise<Buffer>> = {
  gzip: promisify(gunzip),
  'x-gzip': promisify(gunzip),
  deflate: promisify(inflate),
  br: promisify(brotliDecompress),
};

/**
 * A body sent compressed (`Content-Encoding: gzip`, `deflate` or `br`: Triton's clients do so when asked to),
 * inflated off the event loop and refused with 413 once it passes `limit` (a small body can inflate to gigabytes).
 */
async function decoded(body: Uint8Array, encoding: string | undefined, limit: number): Promise<Uint8Array> {
  const name = encoding?.trim().toLowerCase();
  if (!name || name === 'identity') return body;
  const decode = DECODERS[name];
  if (!decode) {
    releaseBody(body);
    throw new GatewayError(415, 'unsupported_encoding', `Content-Encoding ${JSON.stringify(encoding)} is not supported: send gzip, deflate, br or none`);
  }
  try {
    return new Uint8Array(await decode(body, { maxOutputLength: limit }));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE')
      throw new GatewayError(413, 'body_too_large', `the request body inflates past the limit of ${limit} bytes`);
    throw badInput(`the body is not valid ${name}: ${(err as Error).message}`);
  } finally {
    releaseBody(body);
  }
}

async function rawBody(c: Context, limit: number): Promise<Uint8Array> {
  const env = c.env as NodeBindings | undefined;
  if (env?.intake) return env.intake.readBody(limit);
  const declared = Number(c.req.header('content-length') ?? 0);
  if (declared > limit) throw tooLarge(limit);
  const incoming = env?.incoming;
  if (!incoming || incoming.readableEnded) {
    const body = new Uint8Array(await c.req.arrayBuffer());
    if (body.byteLength > limit) throw tooLarge(limit);
    return body;
  }
  return readIncoming(incoming, limit);
}

/** A Node request's body (what `readBody` does under @hono/node-server, and an intake thread does for it). */
export function readIncoming(incoming: IncomingMessage | Http2ServerRequest, limit: number): Promise<Uint8Array> {
  const declared = Number(incoming.headers['content-length'] ?? 0);
  if (declared > limit) return Promise.reject(tooLarge(limit));
  // With a Content-Length, read straight into one buffer laid out so that the binary tensor data after
  // `Inference-Header-Content-Length` starts 8-byte aligned: typed arrays can then view it without a copy.
  const headerLength = Number(incoming.headers['inference-header-content-length'] ?? 0);
  const shift = declared > 0 && headerLength > 0 ? (8 - (headerLength % 8)) % 8 : 0;
  // A buffer of its own (offset 0, so the shift holds), reused across requests (see buffer-pool.ts), not
  // zero-filled: every byte handed out is overwritten first.
  const target = declared > 0 ? new Uint8Array(requestBuffers.acquire(declared + shift), shift, declared) : undefined;
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      if (size + chunk.byteLength > limit || (target && size + chunk.byteLength > declared)) {
        cleanup();
        incoming.pause();
        return reject(tooLarge(limit));
      }
      if (target) target.set(chunk, size);
      else chunks.push(chunk);
      size += chunk.byteLength;
    };
    const onEnd = () => {
      cleanup();
      if (target) resolve(size === declared ? target : target.subarray(0, size));
      else resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(new GatewayError(400, 'bad_body', `could not read the request body: ${err.message}`, { cause: err }));
    };
    const cleanup = () => incoming.off('data', onData).off('end', onEnd).off('error', onError).off('aborted', onAborted);
    const onAborted = () => onError(new Error('the client went away'));
    incoming.on('data', onData).once('end', onEnd).once('error', onError).once('aborted', onAborted);
  });
}

/** Bodies read by an intake thread, with the way back to it. */
const bodyHomes = new WeakMap<ArrayBufferLike, (buffer: ArrayBuffer) => void>();

/** Marks a body an intake thread handed over: `releaseBody` gives its buffer back to `home` for reuse. */
export function adoptBody(body: Uint8Array, home: (buffer: ArrayBuffer) => void): Uint8Array {
  bodyHomes.set(body.buffer, home);
  return body;
}

/** Gives a body from an intake thread back to it (once); false for any other body. */
export function returnToIntake(buffer: ArrayBufferLike): boolean {
  const home = bodyHomes.get(buffer);
  if (!home) return false;
  bodyHomes.delete(buffer);
  home(buffer as ArrayBuffer);
  return true;
}

/**
 * Gives a body from `readBody` back for reuse. Only once nothing reads it any more: its tensors were
 * sent to the replica and the response no longer points into it.
 */
export function releaseBody(body: Uint8Array): void {
  if (!returnToIntake(body.buffer)) requestBuffers.release(body.buffer);
}

/**
 * The request body as JSON: 413 past `limit`, 400 (with `code`) when it is not JSON; an empty body is
 * `undefined` where `emptyAllowed`.
 */
export async function readJson(c: Context, limit: number, { code, emptyAllowed = false }: { code?: string; emptyAllowed?: boolean } = {}): Promise<unknown> {
  const body = await readBody(c, limit);
  const text = Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8');
  releaseBody(body); // the text is a copy: a large body's buffer can serve the next request
  if (emptyAllowed && text.trim() === '') return undefined;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw badInput(`the body is not valid JSON: ${(err as Error).message}`, undefined, code);
  }
}

/** Aborts when the client goes away before its response is written (Node's own close event, no web Request needed). */
export function clientSignal(c: Context): AbortSignal {
  const env = c.env as NodeBindings | undefined;
  if (env?.intake) return env.intake.signal;
  const outgoing = env?.outgoing;
  if (!outgoing) return c.req.raw.signal;
  const controller = new AbortController();
  // (an HTTP/2 stream the client reset reads writableFinished, though never ended: both are asked)
  outgoing.once('close', () => {
    if (!outgoing.writableEnded || !outgoing.writableFinished) controller.abort();
  });
  return controller.signal;
}

/** A route's query parameters checked by a strict zod schema: the first problem is a 400 naming the parameter. */
export function parseQuery<S extends z.ZodType>(schema: S, c: Context): z.output<S> {
  const parsed = schema.safeParse(c.req.query());
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const key = issue.path.join('.');
  throw badInput(issue.code === 'unrecognized_keys' ? `unknown query parameter ${issue.keys.join(', ')}` : `${key}: ${issue.message}`, key || undefined);
}
