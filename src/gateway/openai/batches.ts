import { type Context, Hono } from 'hono';
import { z } from 'zod';
import { badInput, GatewayError } from '../../errors/index.js';
import { parseQuery, readBody, readJson, releaseBody } from '../body.js';
import { type Fleet, fleetList, forwardByBody, pageSize } from '../fleet.js';
import type { GatewayEnv } from '../types.js';
import { type BatchOptions, type BatchStore, batchStore, MESSAGE_BATCH_FILE, MESSAGES, notFound } from './batch-store.js';
import { itemsPage, itemsQuery } from './conversations.js';
import { messageBatchRoutes } from './message-batches.js';
import { parseBody } from './schema.js';

/** An upload's multipart lines (boundaries, the file's name and type, `purpose`) beside its file's bytes. */
const FORM_ROOM = 64 * 1024;

/**
 * OpenAI's Batch API: a JSONL file of requests uploaded with `POST /v1/files`, run by `POST /v1/batches` in the
 * background, its answers fetched as another file (the batches themselves: batch-store.ts).
 */

/** Paths a batch line may name (OpenAI's, and the encoder routes vLLM's batch runner takes). */
const ENDPOINTS = ['/v1/chat/completions', '/v1/completions', '/v1/embeddings', '/v1/responses', '/v1/rerank', '/v1/score'] as const;
export const batchCreateSchema = z.object({
  input_file_id: z.string({ error: 'you must provide input_file_id' }),
  endpoint: z.enum(ENDPOINTS, { error: `endpoint must be one of ${ENDPOINTS.join(', ')}` }),
  completion_window: z.literal('24h', { error: 'completion_window must be 24h' }),
  metadata: z.record(z.string(), z.string()).nullish(),
});

/** OpenAI's list parameters: files (all by default, newest first, of one purpose if asked) and batches (20, newest first). */
export const filesQuery = itemsQuery.extend({ limit: z.coerce.number().int().min(1).max(10_000).default(10_000), purpose: z.string().optional() });
export const batchesQuery = itemsQuery.omit({ order: true }).extend({ limit: z.coerce.number().int().min(1).max(1000).default(20) }); // (a fleet asks its gateways for 1000)

/** The Batch API's routes (OpenAI's), and Anthropic's Message Batches on the same batches. */
export function batchRoutes(opts: BatchOptions): Hono<GatewayEnv> {
  const store = batchStore(opts);
  const app = new Hono<GatewayEnv>();
  app.route('/', openaiBatchRoutes(store, opts.maxBodyBytes, opts.fleet));
  app.route('/', messageBatchRoutes(store, opts.maxBodyBytes, opts.fleet));
  return app;
}

/** OpenAI's Batch API: files up (/v1/files), batches of them (/v1/batches), their answers as files down. */
function openaiBatchRoutes(batches: BatchStore, maxBodyBytes: number, fleet?: Fleet): Hono<GatewayEnv> {
  const { ownerOf, store, room, create, cancel, removeFile, batchOf, batchesOf, filesOf, shown } = batches;
  const app = new Hono<GatewayEnv>();
  // (a message batch's requests, kept as a file, are its own: not among these)
  const file = (c: Context<GatewayEnv>, id: string) => {
    const f = batches.file(c, id);
    if (f.meta.purpose === MESSAGE_BATCH_FILE) throw notFound('file', id);
    return f;
  };
  app.post('/v1/files', async (c) => {
    // Read with the body limit enforced as it comes (a chunked upload of any size was held whole first), with room
    // for the form's own lines beside a file of max_body_bytes.
    const body = await readBody(c, maxBodyBytes + FORM_ROOM);
    const form = await new Response(body.slice(), { headers: { 'content-type': c.req.header('content-type') ?? '' } }).formData().catch(() => {
      throw badInput('upload the file as multipart/form-data with fields "file" and "purpose"');
    });
    releaseBody(body);
    const upload = form.get('file');
    if (!(upload instanceof File)) throw badInput('missing the "file" field (multipart/form-data)', 'file');
    const purpose = form.get('purpose');
    if (purpose !== 'batch') throw badInput(`purpose must be "batch" (files here feed the Batch API); got ${JSON.stringify(purpose)}`, 'purpose');
    if (upload.size > maxBodyBytes) throw new GatewayError(413, 'payload_too_large', `the file is over ${maxBodyBytes} bytes`);
    room(upload.size);
    return c.json(await store(ownerOf(c), new Uint8Array(await upload.arrayBuffer()), upload.name, 'batch'));
  });
  // (the newest first unless order=asc, paged by after/limit, of a purpose if asked; in a fleet, every gateway's)
  app.get('/v1/files', async (c) => {
    const query = parseQuery(filesQuery, c);
    const own = filesOf(c)
      .filter((f) => f.meta.purpose !== MESSAGE_BATCH_FILE && (query.purpose === undefined || f.meta.purpose === query.purpose))
      .map((f) => f.meta)
      .reverse();
    return c.json(itemsPage((await fleetList(c, fleet, own)).reverse(), { ...query, limit: pageSize(c, query.limit) }, 'the files'));
  });
  app.get('/v1/files/:id', (c) => c.json(file(c, c.req.param('id')).meta));
  app.get('/v1/files/:id/content', (c) => c.body(file(c, c.req.param('id')).data as Uint8Array<ArrayBuffer>, 200, { 'content-type': 'application/jsonl' }));
  app.delete('/v1/files/:id', async (c) => {
    const id = file(c, c.req.param('id')).meta.id;
    await removeFile(id);
    return c.json({ id, object: 'file', deleted: true });
  });

  // (Anthropic's message batches are the Messages API's: not among these)
  const own = (c: Context<GatewayEnv>, id: string) => {
    const b = batchOf(c, id);
    if (b.endpoint === MESSAGES) throw notFound('batch', id);
    return b;
  };
  app.post('/v1/batches', async (c) => {
    const body = (await readJson(c, maxBodyBytes, { emptyAllowed: true })) ?? {};
    const req = parseBody(batchCreateSchema, body);
    // (another gateway's file: the batch is made there, beside it)
    const there = await forwardByBody(c, fleet, req.input_file_id, 'file', body);
    if (there) return there;
    file(c, req.input_file_id);
    return c.json(shown(await create(c, { inputFileId: req.input_file_id, endpoint: req.endpoint, metadata: req.metadata })));
  });
  app.get('/v1/batches', async (c) => {
    const query = parseQuery(batchesQuery, c);
    const own = batchesOf(c)
      .filter((b) => b.endpoint !== MESSAGES)
      .map(shown);
    return c.json(itemsPage((await fleetList(c, fleet, own)).reverse(), { ...query, order: 'desc', limit: pageSize(c, query.limit) }, 'the batches'));
  });
  app.get('/v1/batches/:id', (c) => c.json(shown(own(c, c.req.param('id')))));
  app.post('/v1/batches/:id/cancel', async (c) => {
    const b = own(c, c.req.param('id'));
    await cancel(b);
    return c.json(shown(b));
  });
  return app;
}
