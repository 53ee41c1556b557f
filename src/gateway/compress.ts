import { promisify } from 'node:util';
import { brotliCompress, brotliCompressSync, constants, deflate, deflateSync, gzip, gzipSync } from 'node:zlib';
import type { MiddlewareHandler } from 'hono';
import { parseAccept } from 'hono/utils/accept';
import { COMPRESSIBLE_CONTENT_TYPE_REGEX } from 'hono/utils/compress';
import { wholeBody } from './whole-body.js';

/** Answers smaller than this go as they are: a few hundred bytes gain less than the headers and the time cost. */
export const COMPRESS_MIN_BYTES = 1024;

// Fast settings (nginx's gzip_comp_level is 1 too). Measured here on a 40 KB answer of JSON numbers: gzip level 1
// 0.7 ms to 46%, with memLevel 9 and one 64 KB output chunk 0.4 ms; brotli quality 1 0.3 ms to 42-45%, its
// default 11 ~170 ms.
const zlibFast = () => ({ level: 1, memLevel: 9, chunkSize: 64 * 1024 });
const brotliFast = (bytes: Uint8Array) => ({ params: { [constants.BROTLI_PARAM_QUALITY]: 1, [constants.BROTLI_PARAM_SIZE_HINT]: bytes.byteLength } });
type Encoder = {
  sync(bytes: Uint8Array, options: object): Buffer;
  async(bytes: Uint8Array, options: object): Promise<Buffer>;
  options(bytes: Uint8Array): object;
};
const encoders: Record<string, Encoder> = {
  br: { sync: brotliCompressSync, async: promisify(brotliCompress), options: brotliFast },
  gzip: { sync: gzipSync, async: promisify(gzip), options: zlibFast },
  deflate: { sync: deflateSync, async: promisify(deflate), options: zlibFast },
};

/**
 * Up to this size an answer is compressed on the thread writing it: handing it to libuv's pool costs more than
 * the work (a 40 KB answer, one at a time: br 316 µs of CPU in all on the thread; 947 through the pool, 200 of
 * them on the thread). Larger ones go to the pool, so that the event loop is not held for milliseconds.
 */
const ON_THREAD_MAX_BYTES = 64 * 1024;

function encode(encoding: string, bytes: Uint8Array): Buffer | Promise<Buffer> {
  const e = encoders[encoding];
  return bytes.byteLength <= ON_THREAD_MAX_BYTES ? e.sync(bytes, e.options(bytes)) : e.async(bytes, e.options(bytes));
}

/** The encoding to send: of those the client values most (q; `*` for the others), the first of ours (br is as fast and smaller). */
export function chooseEncoding(acceptEncoding: string | undefined): string | undefined {
  const accepted = parseAccept(acceptEncoding ?? '');
  const q = (name: string) => (accepted.find((a) => a.type.toLowerCase() === name) ?? accepted.find((a) => a.type === '*'))?.q ?? 0;
  const best = Math.max(0, ...Object.keys(encoders).map(q));
  return best > 0 ? Object.keys(encoders).find((name) => q(name) === best) : undefined;
}

/**
 * The body to send for a whole answer, compressed when it may and its client accepts it (server.compress_responses;
 * Triton compresses on request too). `headers` are the answer's, updated to match (Vary, Content-Encoding,
 * Content-Length). Only types that shrink: JSON, text, a batch's JSONL file — not event streams (each event must
 * leave when it is made; they are not whole anyway) nor binary tensors — of COMPRESS_MIN_BYTES or more, and not
 * where `Cache-Control: no-transform` forbids it.
 */
export async function compressWhole(
  method: string,
  acceptEncoding: string | undefined,
  headers: Headers,
  body: string | Uint8Array,
): Promise<string | Uint8Array> {
  const type = headers.get('content-type');
  if (!type || !(COMPRESSIBLE_CONTENT_TYPE_REGEX.test(type) || type.startsWith('application/jsonl')) || method === 'HEAD') return body;
  if (headers.has('content-encoding') || /(^|,)\s*no-transform\s*(,|$)/i.test(headers.get('cache-control') ?? '')) return body;
  // Caches in between must keep the two forms apart, whichever this client gets.
  const vary = headers.get('vary');
  if (!vary) headers.set('vary', 'Accept-Encoding');
  else if (vary !== '*' && !/(^|,)\s*accept-encoding\s*(,|$)/i.test(vary)) headers.set('vary', `${vary}, Accept-Encoding`);
  const encoding = chooseEncoding(acceptEncoding);
  if (!encoding) return body;
  const bytes = typeof body === 'string' ? Buffer.from(body) : body;
  if (bytes.byteLength < COMPRESS_MIN_BYTES) return body;
  const packed = await encode(encoding, bytes);
  headers.set('content-encoding', encoding);
  headers.set('content-length', String(packed.byteLength));
  return packed;
}

/** compressWhole as middleware, where answers are written on this thread (with intake threads they compress). */
export function compressAnswers(): MiddlewareHandler {
  return async (c, next) => {
    await next();
    const res = c.res;
    const body = wholeBody(res);
    if (body === undefined || body === null || body instanceof Blob) return; // (a stream goes as it is)
    const sent = await compressWhole(c.req.method, c.req.header('accept-encoding'), res.headers, body);
    if (sent === body) return;
    // Unset first: Hono's setter would otherwise rebuild the new answer around a stream of its body (a slower write).
    c.res = undefined;
    c.res = new Response(sent as Uint8Array<ArrayBuffer>, { status: res.status, headers: res.headers });
  };
}
