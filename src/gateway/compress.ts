import { promisify } from 'node:util';
import { brotliCompress, constants, deflate, gzip } from 'node:zlib';
import type { MiddlewareHandler } from 'hono';
import { parseAccept } from 'hono/utils/accept';
import { COMPRESSIBLE_CONTENT_TYPE_REGEX } from 'hono/utils/compress';
import { wholeBody } from './whole-body.js';

/** Answers smaller than this go as they are: a few hundred bytes gain less than the headers and the time cost. */
export const COMPRESS_MIN_BYTES = 1024;

// Fast settings (nginx's gzip_comp_level is 1 too). Measured here on a 40 KB answer of JSON numbers: gzip level 1
// 0.7 ms to 46%, with memLevel 9 and one 64 KB output chunk 0.4 ms; brotli quality 1 0.2-0.4 ms to 42-45%, its
// default 11 ~170 ms. zlib's async calls run on libuv's thread pool, not on the event loop.
const zlibFast = { level: 1, memLevel: 9, chunkSize: 64 * 1024 };
const encoders: Record<string, (bytes: Uint8Array) => Promise<Buffer>> = {
  br: (bytes) => promisify(brotliCompress)(bytes, { params: { [constants.BROTLI_PARAM_QUALITY]: 1, [constants.BROTLI_PARAM_SIZE_HINT]: bytes.byteLength } }),
  gzip: (bytes) => promisify(gzip)(bytes, zlibFast),
  deflate: (bytes) => promisify(deflate)(bytes, zlibFast),
};

/** The encoding to send: of those the client values most (q; `*` for the others), the first of ours (br is as fast and smaller). */
export function chooseEncoding(acceptEncoding: string | undefined): string | undefined {
  const accepted = parseAccept(acceptEncoding ?? '');
  const q = (name: string) => (accepted.find((a) => a.type.toLowerCase() === name) ?? accepted.find((a) => a.type === '*'))?.q ?? 0;
  const best = Math.max(0, ...Object.keys(encoders).map(q));
  return best > 0 ? Object.keys(encoders).find((name) => q(name) === best) : undefined;
}

/**
 * server.compress_responses: a whole answer of a compressible type (JSON, text, a batch's JSONL file; not event
 * streams, whose events must not wait in a compressor, nor binary tensors, which hardly shrink) of
 * COMPRESS_MIN_BYTES or more is sent compressed when its client accepts br, gzip or deflate, as Triton does.
 */
export function compressAnswers(): MiddlewareHandler {
  return async (c, next) => {
    await next();
    const res = c.res;
    const type = res.headers.get('content-type');
    if (!type || !(COMPRESSIBLE_CONTENT_TYPE_REGEX.test(type) || type.startsWith('application/jsonl')) || c.req.method === 'HEAD') return;
    if (res.headers.has('content-encoding') || /(^|,)\s*no-transform\s*(,|$)/i.test(res.headers.get('cache-control') ?? '')) return;
    // Caches in between must keep the two forms apart, whichever this client gets.
    const vary = res.headers.get('vary');
    if (!vary) res.headers.set('vary', 'Accept-Encoding');
    else if (vary !== '*' && !/(^|,)\s*accept-encoding\s*(,|$)/i.test(vary)) res.headers.set('vary', `${vary}, Accept-Encoding`);
    const encoding = chooseEncoding(c.req.header('accept-encoding'));
    const body = wholeBody(res);
    if (!encoding || body === undefined || body === null || body instanceof Blob) return; // (a stream goes as it is)
    const bytes = typeof body === 'string' ? Buffer.from(body) : body;
    if (bytes.byteLength < COMPRESS_MIN_BYTES) return;
    const packed = await encoders[encoding](bytes);
    res.headers.set('content-encoding', encoding);
    res.headers.set('content-length', String(packed.byteLength));
    // Unset first: Hono's setter would otherwise rebuild the new answer around a stream of its body (a slower write).
    c.res = undefined;
    c.res = new Response(packed as Uint8Array<ArrayBuffer>, { status: res.status, headers: res.headers });
  };
}
