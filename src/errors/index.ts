/**
 * The one error family of the data path. Every failure a caller can see carries an HTTP status and a
 * machine code; the gateway renders it once (in `app.onError`), whichever layer threw it.
 */
export class GatewayError extends Error {
  override name = 'GatewayError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly options: {
      cause?: unknown;
      retryAfterS?: number;
      /** The request field at fault (OpenAI's `param`). */
      param?: string;
      /** Response headers that belong to the error (WWW-Authenticate, RateLimit-*). */
      headers?: Record<string, string>;
    } = {},
  ) {
    super(message, { cause: options.cause });
  }
}

/** 400: the request's tensors (or parameters) do not fit the model. */
export const badInput = (message: string, param?: string, code = 'bad_input') => new GatewayError(400, code, message, { param });
/** 404: no such model (or route). */
export const notFound = (message: string) => new GatewayError(404, 'not_found', message);
/** 503 with Retry-After: capacity is short right now; the same request may succeed later. */
export const unavailable = (code: string, message: string, retryAfterS = 1) => new GatewayError(503, code, message, { retryAfterS });
/** 504: the request's deadline passed before it could run. */
export const deadlineExceeded = (message: string) => new GatewayError(504, 'deadline_exceeded', message);
/** 499 (nginx's "client closed request"): nobody is left to answer; only logs and metrics see it. */
export const cancelled = (message = 'the client went away') => new GatewayError(499, 'cancelled', message);
/**
 * 500: the model failed on this request's own inputs, run alone: sent again it fails again (and costs the requests it
 * would share a batch with a run each), so clients are told not to retry it — `x-should-retry: false`, which the
 * OpenAI and Anthropic SDKs honour (they retry a 500 twice by default).
 */
export const modelFailed = (message: string, cause?: unknown) => new GatewayError(500, 'internal', message, { cause, headers: { 'x-should-retry': 'false' } });
/** 500: the model or a replica failed in a way the caller cannot fix. */
export const internal = (message: string, cause?: unknown) => new GatewayError(500, 'internal', message, { cause });
