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
