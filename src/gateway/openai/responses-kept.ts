import { randomInt } from 'node:crypto';
import { type Context, Hono } from 'hono';
import { z } from 'zod';
import { badInput, GatewayError } from '../../errors/index.js';
import type { Caller } from '../auth/middleware.js';
import { parseQuery } from '../body.js';
import { type Answer, type Call, type Calls, type Dispatch, startKeptCall } from '../calls.js';
import type { GatewayEnv, ServedModel } from '../types.js';
import { type Item, itemsPage, itemsQuery } from './conversations.js';
import type { KeptDocuments } from './kept-documents.js';
import { ResponseEvents } from './response-events.js';
import { earlierOf, type InputItem, type Keeping, ownItems, type ResponsesRequest, skeleton } from './responses-input.js';
import type { Stored } from './stored-responses.js';
import { tokenStream } from './token-stream.js';

// Responses kept and run in the background: OpenAI's background mode (a call through the gateway again; streamed,
// its events kept to be followed again), and the routes that retrieve, list, cancel and forget kept responses.

/**
 * What background responses need of the gateway: where calls are kept, and how to send a request through it again;
 * with `disk` (server.batch_dir), where those not yet ended are written down, to run again after a restart.
 */
export type Background = Keeping & { calls: Calls; dispatch: Dispatch; disk?: KeptDocuments<SavedBackground> };
/** A background response not yet ended, as kept on disk: what runs it again after a restart. */
export type SavedBackground = { id: string; caller?: Caller; body: string; queued: Record<string, unknown>; input: InputItem[]; stream: boolean };

/** Streamed background responses' events (the calls that run them), to be followed again after a dropped connection. */
const streamed = new WeakMap<Call, ResponseEvents>();
/** Background responses' conversations, listed while they run (their runs keep the same items once they end). */
const inputs = new WeakMap<Call, InputItem[]>();

/**
 * POST /v1/responses with `background: true` (OpenAI's background mode): answered at once with the response
 * `queued`; it runs as a call (through the gateway again, as its caller, nothing of this connection) and is
 * retrieved by id until the calls' keep time after it ends. With `stream: true` the answer is its events, from
 * the first, as they come — and the response goes on if the connection drops: its events are kept with it, for
 * GET /v1/responses/{id}?stream=true&starting_after=N to send again.
 */
export async function backgroundResponse(c: Context<GatewayEnv>, m: ServedModel, req: ResponsesRequest, background: Background): Promise<Response> {
  if (req.store === false) throw badInput('a background response is stored until retrieved: store cannot be false', 'store');
  const queued = { ...skeleton(req, m, background.newId('resp'), true), status: 'queued', incomplete_details: null, output: [], usage: null };
  // (a 404 for a previous response or conversation not kept: at once)
  const input = [...earlierOf(req, c.get('caller'), background).items, ...ownItems(req, queued.id)];
  // Its seed is fixed now: run again after a restart, it draws the same tokens (its followers' events stay true).
  const body = JSON.stringify({ ...req, model: m.name, background: false, seed: req.seed ?? randomInt(2 ** 31) });
  const saved = { id: queued.id, caller: c.get('caller'), body, queued, input, stream: req.stream === true };
  background.disk?.save(saved.id, saved);
  c.get('handOver')?.(); // (its call's request takes the caller's place at once: one place however long it runs, as a call's)
  const { call, events } = runInBackground(background, saved, c.get('requestId'));
  if (!events) return c.json(queued);
  // Refused before its first event (a full queue, a start that failed): that answer, with its status.
  const started = await call.response.then(
    (res) => res.ok,
    () => false,
  );
  if (!started) {
    const answer = (await call.done) as Answer;
    return new Response(answer.body, { status: answer.status, headers: answer.headers });
  }
  return tokenStream(c, Promise.resolve(), (stream) => events.follow(stream, -1));
}

/** Runs a background response as a call (streamed: its events kept); once it ends, it is no longer on disk to run again. */
function runInBackground(background: Background, saved: SavedBackground, requestId?: string) {
  const events = saved.stream ? new ResponseEvents() : undefined;
  const call = startKeptCall(background.calls, background.dispatch, {
    caller: saved.caller,
    path: '/v1/responses',
    body: saved.body,
    id: saved.id,
    requestId,
    read: events && ((res) => events.read(res)),
  });
  call.meta = saved.queued;
  inputs.set(call, saved.input);
  if (events) streamed.set(call, events);
  void call.done?.then(() => background.disk?.remove(saved.id));
  return { call, events };
}

/**
 * Background responses a gateway before a restart left running (server.batch_dir): run again, under their ids,
 * once the gateway is up (`started`), their seeds as fixed when they were made.
 */
export function resumeBackground(background: Background, started: Promise<void>): void {
  for (const saved of background.disk?.kept ?? []) void started.then(() => runInBackground(background, saved));
}

/** GET /v1/responses/{id}: `stream=true` sends a streamed background response's events after `starting_after`. */
export const retrieveQuery = z.object({
  stream: z.enum(['true', 'false']).optional().describe('true: the events of a response created with background and stream, as they come'),
  starting_after: z.coerce.number().int().min(0).optional().describe('with stream=true: only the events after this sequence_number (the last one had)'),
});

/** GET /v1/responses/{id} (and its input_items), POST /v1/responses/{id}/cancel, DELETE /v1/responses/{id}: kept and background responses. */
export function backgroundRoutes({ calls, stored }: Background): Hono<GatewayEnv> {
  const app = new Hono<GatewayEnv>();
  const found = (c: Context<GatewayEnv>): Call => {
    const call = calls.find(c.req.param('id') as string, c.get('caller'));
    if (!call.meta) throw new GatewayError(404, 'not_found', `no response ${call.id}`);
    return call;
  };
  /** A background response (its call); else one kept (store: true), which has ended; neither: the store's 404. */
  const responseOf = (c: Context<GatewayEnv>): { call: Call } | { kept: Stored } => {
    try {
      return { call: found(c) };
    } catch {
      return { kept: stored.find(c.req.param('id') as string, c.get('caller')) };
    }
  };
  app.get('/v1/responses/:id', (c) => {
    const query = parseQuery(retrieveQuery, c);
    const it = responseOf(c);
    if (query.stream !== 'true') return c.json('call' in it ? state(it.call) : it.kept.response);
    const events = 'call' in it ? streamed.get(it.call) : undefined;
    if (!events)
      throw badInput(
        `response ${c.req.param('id')} was not streamed in the background: it has no events to send again (retrieve it without stream)`,
        'stream',
        'invalid_request_error',
      );
    // (a browser's EventSource, reconnecting, says where it was in Last-Event-ID)
    const lastEventId = Number.parseInt(c.req.header('last-event-id') ?? '', 10);
    return tokenStream(c, Promise.resolve(), (stream) => events.follow(stream, query.starting_after ?? (lastEventId >= 0 ? lastEventId : -1)));
  });
  app.get('/v1/responses/:id/input_items', (c) => {
    const it = responseOf(c);
    const input = 'call' in it ? (inputs.get(it.call) as Item[]) : (it.kept.input as Item[]);
    return c.json(itemsPage(input, parseQuery(itemsQuery, c), `response ${c.req.param('id')}'s input items`));
  });
  app.post('/v1/responses/:id/cancel', (c) => {
    const it = responseOf(c); // (one kept but not in the background ended with its request: only background ones can be)
    if (!('call' in it))
      throw badInput(
        `response ${c.req.param('id')} was not created with background: true: only background responses can be cancelled`,
        undefined,
        'invalid_request_error',
      );
    const { call } = it;
    if (call.answer && !call.cancelled) throw badInput(`response ${call.id} has ended: it cannot be cancelled`, undefined, 'invalid_request_error');
    calls.stop(call);
    return c.json(state(call));
  });
  app.delete('/v1/responses/:id', (c) => {
    const id = c.req.param('id');
    const it = responseOf(c);
    if ('call' in it) calls.cancel(it.call);
    stored.forget(id, c.get('caller'), { ifKept: true });
    return c.json({ id, object: 'response.deleted', deleted: true });
  });
  return app;
}

/** A background response as it stands: queued (until its first token), in progress, cancelled, its answer, or failed with its error. */
function state(call: Call): object {
  const queued = call.meta as Record<string, unknown>;
  if (call.cancelled) return { ...queued, status: 'cancelled' };
  if (!call.answer) return { ...queued, status: call.started ? 'in_progress' : 'queued' };
  const answer = JSON.parse(new TextDecoder().decode(call.answer.body));
  if (call.answer.status === 200) return answer;
  const error = (answer as { error?: { code?: string; message?: string } }).error;
  return { ...queued, status: 'failed', error: { code: error?.code ?? 'server_error', message: error?.message ?? `failed with status ${call.answer.status}` } };
}
