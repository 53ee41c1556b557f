import { type Context, Hono } from 'hono';
import { z } from 'zod';
import { badInput, GatewayError } from '../../errors/index.js';
import { parseQuery, readJson } from '../body.js';
import { type Fleet, fleetList, pageSize } from '../fleet.js';
import type { GatewayEnv } from '../types.js';
import { type BatchStore, type Held, MAX_MESSAGE_REQUESTS, MESSAGE_BATCH_FILE, MESSAGES } from './batch-store.js';
import { parseBody } from './schema.js';

/**
 * Anthropic's Message Batches API (POST /v1/messages/batches): Messages requests sent at once, run in the
 * background, their results fetched as JSONL — on the Batch API's batches (batches.ts): each request is a line to
 * /v1/messages through the gateway again, as its creator, behind interactive requests, kept on disk with
 * server.batch_dir. Only the shapes are Anthropic's: its batch object, request counts and results.
 */

export const messageBatchSchema = z.object({
  requests: z
    .array(
      z.object({
        custom_id: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, 'custom_id is 1 to 64 letters, digits, - and _'),
        // (checked as /v1/messages checks it when it runs: a request that does not check out is an errored result)
        params: z.looseObject({ model: z.string(), stream: z.literal(false, 'requests in a batch are not streamed').optional() }),
      }),
    )
    .min(1, 'a batch has at least one request')
    .max(MAX_MESSAGE_REQUESTS, `a batch has at most ${MAX_MESSAGE_REQUESTS} requests`),
});

export const messageBatchesQuery = z.object({
  limit: z.coerce.number().int().min(1).max(1000).default(20),
  after_id: z.string().optional(),
  before_id: z.string().optional(),
});

/** A line's record as the Batch API writes it: the request's answer, or why it has none. */
type LineRecord = { custom_id: string; response: { status_code: number; body: unknown } | null; error: { code: string; message: string } | null };

const iso = (seconds: number | null) => (seconds === null ? null : new Date(seconds * 1000).toISOString());
const records = (data: Uint8Array | undefined): LineRecord[] =>
  new TextDecoder()
    .decode(data ?? new Uint8Array())
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line));

export function messageBatchRoutes(batches: BatchStore, maxBodyBytes: number, fleet?: Fleet): Hono<GatewayEnv> {
  const { file, store, room, ownerOf, create, cancel, remove, removeFile, batchOf, batchesOf } = batches;
  const app = new Hono<GatewayEnv>();

  /** The caller's message batch (another's, or an OpenAI batch: not found). */
  const messageBatch = (c: Context<GatewayEnv>): Held => {
    const b = batchOf(c, c.req.param('id') as string);
    if (b.endpoint !== MESSAGES) throw new GatewayError(404, 'not_found', `${b.id} is not a message batch (it is the Batch API's: /v1/batches)`);
    return b;
  };
  const recordsOf = (c: Context<GatewayEnv>, id: string | null) => (id ? records(file(c, id).data) : []);
  const ended = (b: Held) => !['in_progress', 'finalizing', 'cancelling'].includes(b.status);

  /** A batch as Anthropic's API shows it: requests processing, succeeded, errored, canceled (never sent), expired. */
  const shown = (c: Context<GatewayEnv>, b: Held) => {
    const { total, completed, failed } = b.request_counts;
    const expired = ended(b) ? recordsOf(c, b.error_file_id).filter((r) => r.error?.code === 'batch_expired').length : 0;
    const unanswered = total - completed - failed;
    return {
      id: b.id,
      type: 'message_batch',
      processing_status: ended(b) ? 'ended' : b.status === 'cancelling' ? 'canceling' : 'in_progress',
      request_counts: {
        processing: ended(b) ? 0 : unanswered,
        succeeded: completed,
        // (a batch that failed as a whole: its requests not answered errored)
        errored: failed - expired + (b.status === 'failed' ? unanswered : 0),
        canceled: b.status === 'cancelled' ? unanswered : 0,
        expired,
      },
      ended_at: iso(b.completed_at ?? b.cancelled_at ?? b.expired_at ?? b.failed_at),
      created_at: iso(b.created_at),
      expires_at: iso(b.expires_at),
      archived_at: null,
      cancel_initiated_at: iso(b.cancelling_at),
      // (relative: Anthropic's SDK reads it against its base URL, whatever host or prefix the gateway is behind)
      results_url: ended(b) ? `/v1/messages/batches/${b.id}/results` : null,
    };
  };

  app.post('/v1/messages/batches', async (c) => {
    const { requests } = parseBody(messageBatchSchema, await readJson(c, maxBodyBytes));
    const seen = new Set<string>();
    for (const r of requests) {
      if (seen.has(r.custom_id)) throw badInput(`custom_id ${r.custom_id} is used twice: each request's must be its own`, 'requests');
      seen.add(r.custom_id);
    }
    // Its requests are kept as a Batch API file of lines to /v1/messages (on disk too, with server.batch_dir).
    const lines = requests.map((r) => `${JSON.stringify({ custom_id: r.custom_id, method: 'POST', url: MESSAGES, body: r.params })}\n`).join('');
    const data = new TextEncoder().encode(lines);
    room(data.byteLength);
    const input = await store(ownerOf(c), data, 'message_batch_requests.jsonl', MESSAGE_BATCH_FILE);
    // (a batch refused leaves no file behind: no route lists or deletes a message batch's own)
    const batch = await create(c, { inputFileId: input.id, endpoint: MESSAGES, idPrefix: 'msgbatch' }).catch(async (err) => {
      await removeFile(input.id);
      throw err;
    });
    return c.json(shown(c, batch));
  });

  app.get('/v1/messages/batches', async (c) => {
    const query = parseQuery(messageBatchesQuery, c);
    const { after_id: after, before_id: before } = query;
    const limit = pageSize(c, query.limit);
    // (the newest first; in a fleet, every gateway's)
    const all = await fleetList(
      c,
      fleet,
      batchesOf(c)
        .filter((b) => b.endpoint === MESSAGES)
        .map((b) => shown(c, b)),
    );
    const at = (id: string, param: string) => {
      const i = all.findIndex((b) => b.id === id);
      if (i < 0) throw badInput(`no message batch ${id} to page from`, param);
      return i;
    };
    // A page after one (older batches), or before one (newer), or the newest.
    let page = { from: 0, to: limit, more: () => limit < all.length };
    if (after) {
      const from = at(after, 'after_id') + 1;
      page = { from, to: from + limit, more: () => from + limit < all.length };
    } else if (before) {
      const to = at(before, 'before_id');
      page = { from: Math.max(0, to - limit), to, more: () => to - limit > 0 };
    }
    const data = all.slice(page.from, page.to);
    return c.json({ data, has_more: page.more(), first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null });
  });

  app.get('/v1/messages/batches/:id', (c) => c.json(shown(c, messageBatch(c))));

  app.post('/v1/messages/batches/:id/cancel', async (c) => {
    const b = messageBatch(c);
    await cancel(b);
    return c.json(shown(c, b));
  });

  app.delete('/v1/messages/batches/:id', async (c) => {
    const b = messageBatch(c);
    if (!ended(b)) throw badInput(`message batch ${b.id} is still processing: cancel it, and delete it once it has ended`);
    await remove(b);
    return c.json({ id: b.id, type: 'message_batch_deleted' });
  });

  /** Each request's result, in the order they were sent: succeeded (its message), errored, canceled or expired. */
  app.get('/v1/messages/batches/:id/results', (c) => {
    const b = messageBatch(c);
    if (!ended(b)) throw badInput(`message batch ${b.id} is still processing: its results come once it has ended (results_url)`);
    const byId = new Map([...recordsOf(c, b.output_file_id), ...recordsOf(c, b.error_file_id)].map((r) => [r.custom_id, r]));
    const failedAlone = b.errors?.data[0]?.message ?? 'the batch failed';
    const results = records(file(c, b.input_file_id).data).map(({ custom_id }) => {
      const r = byId.get(custom_id);
      return JSON.stringify({ custom_id, result: r ? resultOf(r) : b.status === 'failed' ? errored('api_error', failedAlone) : { type: 'canceled' } });
    });
    return c.body(results.map((line) => `${line}\n`).join(''), 200, { 'content-type': 'application/jsonl' });
  });
  return app;
}

const errored = (type: string, message: string) => ({ type: 'errored', error: { type: 'error', error: { type, message } } });

/** A line's record as Anthropic's result: the message, its error as /v1/messages answered it, or expired. */
function resultOf(r: LineRecord): object {
  if (r.response && r.response.status_code < 300) return { type: 'succeeded', message: r.response.body };
  if (r.error?.code === 'batch_expired') return { type: 'expired' };
  const body = r.response?.body as { type?: string; error?: { type: string; message: string } } | null;
  return body?.type === 'error' && body.error ? errored(body.error.type, body.error.message) : errored('api_error', r.error?.message ?? 'failed');
}
