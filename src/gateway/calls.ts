import { randomUUID } from 'node:crypto';
import { type Context, Hono, type MiddlewareHandler } from 'hono';
import { z } from 'zod';
import { GatewayError, unavailable } from '../errors/index.js';
import type { Telemetry } from '../telemetry/index.js';
import type { Caller } from './auth/middleware.js';
import { clientSignal, parseQuery, readBody, releaseBody } from './body.js';
import type { IntakeRequest } from './intake.js';
import type { BatchLineEnv } from './openai/batch-store.js';
import { shadowOfEnv } from './shadow.js';
import type { GatewayEnv } from './types.js';

/**
 * Asynchronous inference: a request answered later, by id. `Prefer: respond-async` (RFC 7240) on an inference
 * request answers `202 Accepted` at once with `Location: /v2/calls/{id}`; with `server.async_after_s` (Modal's
 * long-request redirect) a request still running after that long is answered `303 See Other` to the same place
 * and goes on. The request runs through the whole app again as its own request (as a Batch API line does), as
 * its caller, with nothing of the client's connection: the client may go. Its answer — status, headers, bytes —
 * is kept for `keepMs` after it is ready, in memory, for the caller that sent it.
 */

/**
 * Marks a request sent through the app again by a call (Hono's env, which no client can set): its caller, already
 * let in; `id`: the call's own id, for a route that names its answer by it (a background response's).
 */
/**
 * A request the app sends through itself for a caller it let in already (its rate spent there): an asynchronous
 * call's, or one /invocations forwards. It takes a place among the caller's requests at once, which the request
 * that sent it handed over.
 */
/** A request sent through the app again as a call; `started`: what its route calls once its work begins (a first token). */
export type CallEnv = { infergateCall?: { caller?: Caller; id?: string; started?: () => void } };

/** Sends a request through the app again (marked with CallEnv). */
export type Dispatch = (path: string, init: RequestInit, env: CallEnv) => Promise<Response>;

/** A call's answer as kept; `heldBytes`: what else it holds beside its body (a streamed response's events). */
export type Answer = { status: number; headers: [string, string][]; body: Uint8Array<ArrayBuffer>; heldBytes?: number };
export type Call = {
  id: string;
  /** Whose it is: another caller is told there is no such call (a public caller's calls: anyone with the id). */
  owner?: string;
  controller: AbortController;
  /** The request's response, as soon as it starts (a stream's before its end). */
  response: Promise<Response>;
  /** Its answer read whole, once the call is kept. */
  done?: Promise<Answer>;
  answer?: Answer;
  expiry?: NodeJS.Timeout;
  /** Stopped by its caller while it ran (kept, to say so). */
  cancelled?: boolean;
  /** What the route that started it keeps beside it (a background response's object while it runs). */
  meta?: Record<string, unknown>;
  /** Its route said its work began (a background response: its first token came); until then it waits its turn. */
  started?: boolean;
};

export type CallsOptions = {
  /** How long an answer is kept once ready, in ms. */
  keepMs: number;
  /** Most bytes of answers kept (and running calls counted at their request's size); past it new calls get a 503. */
  maxBytes: number;
  /** A request still running this long (ms) is answered 303 to its call; 0: only with Prefer: respond-async. */
  afterMs: number;
  /** Makes a call's id (a fleet's carry their gateway's token). @default a random UUID */
  newId?: () => string;
};

/** A response's answer, read whole. */
const wholeAnswer = async (res: Response): Promise<Answer> => ({
  status: res.status,
  headers: [...res.headers],
  body: new Uint8Array(await res.arrayBuffer()),
});

export class Calls {
  private readonly calls = new Map<string, Call>();
  /** Each call's bytes: its request's while it runs, its answer's once kept. */
  private readonly sizes = new Map<string, number>();
  private bytes = 0;

  constructor(readonly opts: CallsOptions) {}

  /** Starts a call running `run` (given its own signal: DELETE cancels it), for `caller`; its id a new UUID unless given. */
  start(caller: Caller | undefined, requestBytes: number, run: (signal: AbortSignal) => Promise<Response>, id = (this.opts.newId ?? randomUUID)()): Call {
    if (this.bytes + requestBytes > this.opts.maxBytes)
      throw unavailable(
        'calls_full',
        `asynchronous answers kept here fill server.async_max_mb (${this.opts.maxBytes / 2 ** 20} MiB): try again once some are collected`,
      );
    const controller = new AbortController();
    this.bytes += requestBytes;
    const response = run(controller.signal);
    const call: Call = { id, owner: owner(caller), controller, response };
    response.catch(() => {}); // (a failure is the keeper's to report, or the client's it was handed back to)
    this.calls.set(call.id, call);
    this.sizes.set(call.id, requestBytes);
    return call;
  }

  /** The call is to be collected later: its answer is read (whole, unless `read` says how) when ready and kept `keepMs`. */
  keep(call: Call, read = wholeAnswer): void {
    call.done ??= call.response
      .then(read)
      .catch(
        (err: Error): Answer => ({
          status: 500,
          headers: [['content-type', 'application/json']] as [string, string][],
          body: new TextEncoder().encode(JSON.stringify({ error: `the call failed: ${err.message}` })),
        }),
      )
      .then((answer) => {
        if (!this.calls.has(call.id)) return answer; // cancelled meanwhile: not kept
        const bytes = answer.body.byteLength + (answer.heldBytes ?? 0);
        this.bytes += bytes - (this.sizes.get(call.id) ?? 0);
        this.sizes.set(call.id, bytes);
        call.answer = answer;
        call.expiry = setTimeout(() => this.forget(call.id), this.opts.keepMs).unref();
        return answer;
      });
  }

  /** The call is answered to its client after all (in time): forgotten, its request left to finish. */
  release(call: Call): void {
    this.forget(call.id);
  }

  /** The caller's call by id; another's, or one forgotten, is a 404. */
  find(id: string, caller: Caller | undefined): Call {
    const call = this.calls.get(id);
    if (!call || (call.owner !== undefined && call.owner !== owner(caller)))
      throw new GatewayError(404, 'call_not_found', `no call ${id} (answers are kept ${this.opts.keepMs / 1000} s after they are ready)`);
    return call;
  }

  /** Stops a call still running (its request cancelled), keeping it to say so. */
  stop(call: Call): void {
    if (call.answer) return;
    call.cancelled = true;
    call.controller.abort();
  }

  /** Stops a call (its request cancelled if still running) and forgets it. */
  cancel(call: Call): void {
    call.controller.abort();
    this.forget(call.id);
  }

  /** Calls running, answers kept for collection, and their bytes (what async_max_mb bounds). */
  stats(): { running: number; answered: number; bytes: number } {
    let answered = 0;
    for (const call of this.calls.values()) if (call.answer) answered++;
    return { running: this.calls.size - answered, answered, bytes: this.bytes };
  }

  private forget(id: string): void {
    const call = this.calls.get(id);
    if (!call) return;
    this.calls.delete(id);
    clearTimeout(call.expiry);
    this.bytes -= this.sizes.get(id) ?? 0;
    this.sizes.delete(id);
  }
}

/** Whose a kept thing is: an authenticated caller's id (a public one's are anyone's who has the id). */
export const owner = (caller: Caller | undefined) => (caller && caller.kind !== 'public' ? (caller.owner ?? caller.id) : undefined);
const statusUrl = (id: string, waitS?: number) => `/v2/calls/${id}${waitS ? `?wait_s=${waitS}` : ''}`;

/** What a call's request is: an inference request (model, OpenAI, vLLM and the config's endpoints' routes). */
export type IsInference = (path: string) => boolean;

/**
 * Turns inference requests into calls: at once with `Prefer: respond-async`, or after `afterMs` with a 303.
 * `dispatch` sends a request through the app again (marked with CallEnv). Runs after auth and rate limits.
 */
export function asyncCalls(calls: Calls, isInference: IsInference, maxBodyBytes: number, dispatch: Dispatch): MiddlewareHandler<GatewayEnv> {
  return async function asyncCalls(c, next) {
    // Not a call's own request, a Batch API line, a gRPC call (they wait for their answers, whatever it takes) or a
    // shadow's request (its answer is discarded; as a call it would lose its mark, so its capture beside the client's).
    const env = c.env as (CallEnv & BatchLineEnv & { intake?: IntakeRequest }) | undefined;
    const answeredInPlace = env?.infergateCall !== undefined || env?.infergateBatch !== undefined || env?.intake?.grpc === true || shadowOfEnv(c) !== undefined;
    const preferAsync = /(^|[,\s])respond-async([,;\s]|$)/i.test(c.req.header('prefer') ?? '');
    if (answeredInPlace || c.req.method !== 'POST' || !isInference(c.req.path) || (!preferAsync && calls.opts.afterMs <= 0)) return next();
    const body = await readBody(c, maxBodyBytes);
    const bytes = body.slice(); // (the read buffer goes back to its pool: the call may outlive this request)
    releaseBody(body);
    const headers = new Headers(c.req.raw.headers);
    for (const name of ['prefer', 'content-encoding', 'content-length', 'accept-encoding']) headers.delete(name);
    headers.set('x-request-id', c.get('requestId')); // (its own request's log line names the request that made it)
    const url = new URL(c.req.url);
    const caller = c.get('caller');
    // Until it is answered 303, the client going away cancels the request, as any other request's.
    let detached = preferAsync;
    const gone = clientSignal(c);
    c.get('handOver')?.(); // (the call's own request takes the caller's place at once: one place, however long it runs)
    const call = calls.start(caller, bytes.byteLength, (signal) => {
      const both = new AbortController();
      signal.addEventListener('abort', () => both.abort(), { once: true });
      gone.addEventListener('abort', () => detached || both.abort(), { once: true });
      return dispatch(url.pathname + url.search, { method: 'POST', headers, body: bytes, signal: both.signal }, { infergateCall: { caller } });
    });
    c.set('sentToCall', true);
    if (preferAsync) {
      calls.keep(call);
      c.header('Preference-Applied', 'respond-async');
      return accepted(c, call.id);
    }
    // Modal's way: a request taking longer than afterMs is redirected to its answer, which waits as long again.
    // One answered in time goes to its client as it is; a stream whenever it starts (its first token may wait in a
    // queue past afterMs, and its client reads events, not a redirect).
    const timer = new Promise<'late'>((resolve) => setTimeout(() => resolve('late'), calls.opts.afterMs).unref());
    const first = await (asksToStream(url.pathname, bytes) ? call.response : Promise.race([call.response, timer]));
    if (first !== 'late') {
      c.set('sentToCall', false);
      calls.release(call);
      c.set('loggedByCall', true); // (its call's request, which ran it, has the request's log line and metrics)
      return first;
    }
    detached = true;
    calls.keep(call);
    return c.body(null, 303, { Location: statusUrl(call.id, calls.opts.afterMs / 1000) });
  };
}

/**
 * Whether a request asks for its answer streamed: Triton's generate_stream, or a JSON body's `"stream": true` (found by
 * its text: a prompt quoting it merely goes unredirected). Tensors (KServe's infer, binary too) never stream.
 */
function asksToStream(path: string, body: Uint8Array): boolean {
  if (path.endsWith('/generate_stream')) return true;
  if (path.endsWith('/infer') || path.endsWith(':predict')) return false;
  return /"stream"\s*:\s*true/.test(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8'));
}

const accepted = (c: Context<GatewayEnv>, id: string) =>
  c.json({ id, status: 'in_progress', status_url: statusUrl(id) }, 202, { Location: statusUrl(id), 'Retry-After': '1' });

export const waitQuery = z.object({ wait_s: z.coerce.number().min(0).max(3600).optional() }).strict();

/** GET /v2/calls/{id}[?wait_s=N]: the answer once ready; DELETE cancels. */
export function callRoutes(calls: Calls): Hono<GatewayEnv> {
  const app = new Hono<GatewayEnv>();
  app.get('/v2/calls/:id', async (c) => {
    const { wait_s: waitS } = parseQuery(waitQuery, c);
    const call = calls.find(c.req.param('id'), c.get('caller'));
    let answer = call.answer;
    if (!answer && waitS) {
      const gone = clientSignal(c);
      answer = await Promise.race([
        call.done as Promise<Answer>,
        new Promise<undefined>((resolve) => {
          const timer = setTimeout(resolve, waitS * 1000);
          gone.addEventListener(
            'abort',
            () => {
              clearTimeout(timer);
              resolve(undefined);
            },
            { once: true },
          );
        }),
      ]);
    }
    // Still running: a client that waited is sent to wait again (a client following redirects waits on, as
    // Modal's result URLs chain); one that did not is told to come back.
    if (!answer) return waitS ? c.body(null, 303, { Location: statusUrl(call.id, waitS) }) : accepted(c, call.id);
    return new Response(answer.body, { status: answer.status, headers: answer.headers });
  });
  app.delete('/v2/calls/:id', (c) => {
    const call = calls.find(c.req.param('id'), c.get('caller'));
    calls.cancel(call);
    // (a call answered already is forgotten; one running is cancelled, its request's work stopped)
    return c.json({ id: call.id, status: call.answer ? 'deleted' : 'cancelled' });
  });
  return app;
}

/**
 * Starts `body` as a request to `path` through the app again, as `caller`, kept for collection (nothing of the
 * client's connection: it runs until done or stopped); `id` names the call.
 */
export function startKeptCall(
  calls: Calls,
  dispatch: Dispatch,
  o: { caller?: Caller; path: string; body: string; id: string; requestId?: string; read?: (res: Response) => Promise<Answer> },
): Call {
  const body = new TextEncoder().encode(o.body);
  const headers = { 'content-type': 'application/json', ...(o.requestId && { 'x-request-id': o.requestId }) };
  const call = calls.start(
    o.caller,
    body.byteLength,
    (signal) => dispatch(o.path, { method: 'POST', headers, body, signal }, { infergateCall: { caller: o.caller, id: o.id, started } }),
    o.id,
  );
  function started() {
    call.started = true;
  }
  calls.keep(call, o.read);
  return call;
}

/** Prometheus gauges of the calls: how many run and wait to be collected, and the bytes held against async_max_mb. */
export function measureCalls(telemetry: Telemetry, calls: Calls): void {
  const count = telemetry.meter.createObservableGauge('infergate.async.calls', {
    unit: '{call}',
    description: 'Asynchronous calls (Prefer: respond-async, redirected, background responses) running, and answered but not yet collected.',
  });
  count.addCallback((r) => {
    const { running, answered } = calls.stats();
    r.observe(running, { state: 'running' });
    r.observe(answered, { state: 'answered' });
  });
  const bytes = telemetry.meter.createObservableGauge('infergate.async.bytes', {
    unit: 'By',
    description: "Bytes held for asynchronous calls: answers kept, and running calls' requests (server.async_max_mb bounds them).",
  });
  bytes.addCallback((r) => r.observe(calls.stats().bytes));
}
