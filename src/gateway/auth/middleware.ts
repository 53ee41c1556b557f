import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Context, MiddlewareHandler, Next } from 'hono';
import { GatewayError, unavailable } from '../../errors/index.js';
import type { CallEnv } from '../calls.js';
import { type IntakeRequest, peerAddress } from '../intake.js';
import type { BatchLineEnv } from '../openai/batch-store.js';
import { shadowOfEnv } from '../shadow.js';
import type { GatewayEnv } from '../types.js';
import { setAnswerHeader } from '../whole-body.js';
import { KeysUnavailable, type TokenCaller, TokenError } from './jwt.js';
import type { RateLimiter, Verdict } from './rate-limit.js';

export type Policy = 'public' | 'jwt' | 'key';

/** Who is calling, as the rest of the request sees it (logs, limits, batch priority). */
export type Caller = {
  kind: Policy;
  id: string;
  subject?: string;
  claims?: Record<string, unknown>;
  priority?: number;
  /** Whose things its requests keep, where not its own id: a Batch API line's are its batch's creator's. */
  owner?: string;
  /** A token's scopes: a request sent on as the caller (an asynchronous call's) is held to a route's scopes again. */
  scopes?: string[];
  /** Under a rate limit with tokens_per_minute: the caller's bucket of generated tokens (see tokenBudget). */
  tokens?: TokenBudget;
};

/** A caller's tokens a minute (OpenAI's TPM): a generation takes what it may use, and gives back what it did not. */
export type TokenBudget = { take(tokens: number): void; giveBack(tokens: number): void; headers(): Record<string, string> };

export type AuthOptions = {
  policy: Policy;
  /** Scopes a jwt caller must hold. @default [] */
  scopes?: string[];
  verify?: (token: string) => Promise<TokenCaller>;
  /** Static key id → its secret, and its requests' priority. */
  keys?: ReadonlyMap<string, Key>;
};

const unauthorized = (scheme: string, description: string) =>
  new GatewayError(401, 'unauthorized', `unauthorized: ${description}`, {
    headers: { 'WWW-Authenticate': `${scheme} realm="infergate", error="invalid_token", error_description="${description.replace(/"/g, "'")}"` },
  });

const forbidden = (scopes: string[], missing: string[]) =>
  new GatewayError(403, 'forbidden', `forbidden: the token lacks the scope${missing.length > 1 ? 's' : ''} ${missing.join(' ')}`, {
    headers: { 'WWW-Authenticate': `Bearer realm="infergate", error="insufficient_scope", scope="${scopes.join(' ')}"` },
  });

/**
 * Authenticates the caller before anything else happens: a refused caller never reaches the body, the
 * queue or a replica. 401 with WWW-Authenticate for a missing or bad credential, 403 for a valid one
 * without the scopes.
 */
export function authenticate(opts: AuthOptions): MiddlewareHandler<GatewayEnv> {
  return async function authenticate(c, next) {
    // A Batch API line runs as the caller who created its batch, authorised then (its token may since have expired);
    // an asynchronous call's request as the caller who sent it, let in then.
    const batch = batchLine(c);
    const call = (c.env as CallEnv | undefined)?.infergateCall;
    const shadow = shadowOfEnv(c); // (a shadow model's request: the client's, let in already)
    if (batch || call || shadow) {
      const caller = batch?.caller ?? call?.caller ?? shadow?.caller;
      // (a route needing more scopes than the one it was let in by — an admin route — checks them again)
      const missing = caller?.scopes ? (opts.scopes ?? []).filter((s) => !caller.scopes?.includes(s)) : [];
      if (missing.length) throw forbidden(opts.scopes ?? [], missing);
      if (caller) c.set('caller', caller);
      return next();
    }
    if (opts.policy === 'public') {
      c.set('caller', { kind: 'public', id: `ip:${clientIp(c)}` });
      return next();
    }
    const header = c.req.header('authorization');
    // Browsers cannot set headers on a WebSocket: /v1/ws may carry the token as ?access_token=.
    const token = header?.startsWith('Bearer ') ? header.slice(7).trim() : c.req.query('access_token');
    if (opts.policy === 'key') {
      const [id, key] = keyOf(c.req.header('infergate-key'), c.req.header('infergate-secret'), token ?? c.req.header('x-api-key'), opts.keys);
      c.set('caller', { kind: 'key', id: `key:${id}`, subject: id, priority: key.priority });
      return next();
    }
    if (!token) throw unauthorized('Bearer', 'send Authorization: Bearer <token>');
    let who: TokenCaller;
    try {
      who = await (opts.verify as NonNullable<AuthOptions['verify']>)(token);
    } catch (err) {
      if (err instanceof KeysUnavailable) throw unavailable('auth_unavailable', err.message, 5);
      throw unauthorized('Bearer', err instanceof TokenError ? err.message : 'the token could not be verified');
    }
    const missing = (opts.scopes ?? []).filter((s) => !who.scopes.includes(s));
    if (missing.length) throw forbidden(opts.scopes ?? [], missing);
    c.set('caller', { kind: 'jwt', id: `sub:${who.subject}`, subject: who.subject, claims: who.claims, priority: who.priority, scopes: who.scopes });
    return next();
  };
}

/** A caller's limits: requests a second, generated tokens a minute, requests at once. */
export type Limits = { requests?: RateLimiter; tokens?: RateLimiter; concurrent?: InFlight };

/**
 * A token bucket per caller (subject, key, or IP): 429 with Retry-After and RateLimit-* headers when
 * empty — distinct from the 503 of a full queue, which is about capacity, not the caller. With `tokens`, the
 * caller also gets a bucket of generated tokens a minute (OpenAI's TPM), which its generations draw on; with
 * `concurrent`, at most so many of its requests run at once (a stream until it ends).
 */
export function rateLimit({ requests, tokens, concurrent }: Limits): MiddlewareHandler<GatewayEnv> {
  return async function rateLimit(c, next) {
    // A batch is throttled by itself (a few lines at a time, behind everyone); shadow traffic is not the caller's.
    if (batchLine(c) || shadowOfEnv(c)) return next();
    const key = c.get('caller')?.id ?? `ip:${clientIp(c)}`;
    // Sent on by another gateway of the fleet, which spent its request and holds its turn: only its tokens are drawn here.
    if (c.get('fromFleet')) {
      const budget = tokens && tokenBudget(tokens, key);
      const caller = c.get('caller');
      if (budget && caller) c.set('caller', { ...caller, tokens: budget });
      return next();
    }
    // An asynchronous call spent its turn when it was sent, but runs at once with the caller's other requests.
    if ((c.env as CallEnv | undefined)?.infergateCall) return concurrent && runsWork(c) ? concurrent.around(key, c, next) : next();
    const headers = requests ? spend(requests, key) : {};
    // A WebSocket's messages are requests too: each one spends from the same bucket (ws.ts).
    if (requests) c.set('spendRequest', () => void spend(requests, key));
    const budget = tokens && tokenBudget(tokens, key);
    const caller = c.get('caller');
    if (budget && caller) c.set('caller', { ...caller, tokens: budget });
    await (concurrent && runsWork(c) ? concurrent.around(key, c, next) : next());
    for (const [name, value] of Object.entries({ ...headers, ...budget?.headers() })) setAnswerHeader(c, name, value);
  };
}

/**
 * Whether a request runs work, so takes one of its caller's places (max_concurrent): a POST, not a cancel. Collecting
 * a call or a response, listing, reading a stream again, cancelling and deleting do not — a caller at its limit, its
 * asynchronous call holding its one place, must still be able to collect or cancel that call.
 */
const runsWork = (c: Context) => c.req.method === 'POST' && !c.req.path.endsWith('/cancel');

/**
 * Requests in flight per caller, at most `max` (LiteLLM's max_parallel_requests): one more is a 429 before it runs.
 * A request counts until it is answered — a stream until it ends or its client goes.
 */
export class InFlight {
  private readonly counts = new Map<string, number>();

  constructor(readonly max: number) {}

  async around(key: string, c: Context<GatewayEnv>, next: Next): Promise<void> {
    const now = this.counts.get(key) ?? 0;
    if (now >= this.max)
      throw new GatewayError(429, 'rate_limited', `too many requests at once from this caller: at most ${this.max} in flight`, { retryAfterS: 1 });
    this.counts.set(key, now + 1);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      const left = (this.counts.get(key) ?? 1) - 1;
      if (left > 0) this.counts.set(key, left);
      else this.counts.delete(key);
    };
    c.set('handOver', release);
    try {
      await next();
    } catch (err) {
      release();
      throw err;
    }
    // A whole answer is done; a stream (Server-Sent Events) counts until it ends, or its client goes. (Its headers
    // first: touching a whole answer's body would make it a stream, which compression and capture pass by.)
    if (!c.res.headers.get('content-type')?.startsWith('text/event-stream')) return release();
    const body = c.res.body;
    if (!body) return release();
    const reader = body.getReader();
    const watched = new ReadableStream<Uint8Array>({
      async pull(controller) {
        const { done, value } = await reader.read().catch((err) => {
          release();
          throw err;
        });
        if (done) {
          release();
          controller.close();
        } else controller.enqueue(value);
      },
      cancel(reason) {
        release();
        return reader.cancel(reason);
      },
    });
    c.res = new Response(watched, c.res);
  }
}

/**
 * `key`'s generated tokens: a generation takes its prompt and max_tokens before it starts (429 when they are not
 * there, or can never be: more than a minute's worth), and gives back what it did not generate once it ends.
 * OpenAI's x-ratelimit-*-tokens headers say how many are left.
 */
function tokenBudget(limiter: RateLimiter, key: string): TokenBudget {
  const { perSecond, burst } = limiter.limit;
  const perMinute = Math.round(perSecond * 60);
  let last: Verdict | undefined;
  const headers = (): Record<string, string> =>
    last
      ? { 'x-ratelimit-limit-tokens': String(burst), 'x-ratelimit-remaining-tokens': String(last.remaining), 'x-ratelimit-reset-tokens': `${last.resetS}s` }
      : {};
  return {
    take(tokens) {
      if (tokens > burst)
        throw new GatewayError(
          429,
          'rate_limited',
          `this request may use ${tokens} tokens (its prompt and max_tokens), more than this caller's ${burst} a minute: lower max_tokens`,
        );
      last = limiter.check(key, tokens);
      if (!last.allowed)
        throw new GatewayError(
          429,
          'rate_limited',
          `too many tokens from this caller: ${perMinute} a minute; this request may use ${tokens} (its prompt and max_tokens), ${last.remaining} are left`,
          { retryAfterS: last.resetS, headers: headers() },
        );
    },
    giveBack: (tokens) => limiter.giveBack(key, tokens),
    headers,
  };
}

/** Takes a request's token from `key`'s bucket: the RateLimit-* headers to answer with, or a 429 when it is empty. */
function spend(limiter: RateLimiter, key: string): Record<string, string> {
  const v = limiter.check(key);
  const { perSecond, burst } = limiter.limit;
  const headers = {
    'RateLimit-Limit': String(burst),
    'RateLimit-Remaining': String(v.remaining),
    'RateLimit-Reset': String(v.resetS),
    'RateLimit-Policy': `${burst};w=${Math.max(1, Math.round(burst / perSecond))}`,
  };
  if (!v.allowed)
    throw new GatewayError(429, 'rate_limited', `too many requests from this caller: ${perSecond} per second, bursts of ${burst}`, {
      retryAfterS: v.resetS,
      headers,
    });
  return headers;
}

/** The batch a request is a line of: marked in Hono's env by batches.ts, which no client can set. */
const batchLine = (c: { env: unknown }) => (c.env as BatchLineEnv | undefined)?.infergateBatch;

type Key = { secret: string; priority?: number };

/**
 * The key a request is sent with: its id and secret (Infergate-Key and Infergate-Secret, Modal's way), or its secret
 * `alone` where a client sends one API key — OpenAI's SDKs as `Authorization: Bearer`, Anthropic's as `x-api-key`
 * (vLLM's --api-key), a browser's WebSocket as `?access_token=`: the key whose secret it is.
 */
function keyOf(id: string | undefined, secret: string | undefined, alone: string | undefined, keys: ReadonlyMap<string, Key> = new Map()): [string, Key] {
  if (id && secret) {
    const key = keys.get(id);
    if (key && sameSecret(key.secret, secret)) return [id, key];
  } else if (alone && !id && !secret) {
    // (every key is compared, found or not: how long it takes says nothing of which)
    let found: [string, Key] | undefined;
    for (const [keyId, key] of keys) if (sameSecret(key.secret, alone) && !found) found = [keyId, key];
    if (found) return found;
  } else throw unauthorized('Infergate-Key', 'send Infergate-Key and Infergate-Secret headers, or the secret alone as Authorization: Bearer or x-api-key');
  throw unauthorized('Infergate-Key', 'the key or secret is not valid');
}

/** Two secrets compared in constant time (how long it takes says nothing of where they differ). */
export function sameSecret(expected: string, given: string): boolean {
  const a = Buffer.from(expected);
  const b = Buffer.from(given);
  return a.length === b.length && timingSafeEqual(a, b);
}

function clientIp(c: { env: unknown }): string {
  const env = c.env as { incoming?: IncomingMessage; intake?: IntakeRequest } | undefined;
  return env?.intake?.remoteAddress ?? peerAddress(env?.incoming) ?? 'unknown';
}
