/**
 * Where @hono/node-server's lightweight Response (the global Response once its server runs) keeps its body
 * unconverted: reading a 32 KB answer through the web Response costs ~35 µs, from here ~1, and touching `body`
 * turns it into a web Response for good (its server then writes it as a stream, without Content-Length).
 */
let cacheKey: symbol | undefined | null = null;

/** An answer's body when it is whole at hand (null: none); undefined when it streams, or is not a lightweight Response. */
export function wholeBody(res: Response): string | Uint8Array | Blob | null | undefined {
  if (cacheKey === null) cacheKey = Object.getOwnPropertySymbols(new Response('')).find((s) => s.description === 'cache');
  const cached = cacheKey && (res as unknown as Record<symbol, [number, unknown, unknown] | undefined>)[cacheKey];
  const body = cached?.[1];
  return body === null || typeof body === 'string' || body instanceof Uint8Array || body instanceof Blob ? body : undefined;
}

/**
 * Sets a header of an answer already made (a middleware, after `next`) without touching its body: Hono's `c.header`
 * would make it a web Response first, so that compression, capture and the intake threads no longer find it whole.
 */
export function setAnswerHeader(c: { res: Response; header: (name: string, value: string) => void }, name: string, value: string): void {
  if (wholeBody(c.res) !== undefined)
    c.res.headers.set(name, value); // (a lightweight Response's headers are its own)
  else c.header(name, value);
}
