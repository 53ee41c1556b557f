import { randomBytes } from 'node:crypto';
import { type Context, Hono } from 'hono';
import PQueue from 'p-queue';
import { z } from 'zod';
import { badInput, GatewayError } from '../../errors/index.js';
import type { Caller } from '../auth/middleware.js';
import type { GatewayEnv } from '../types.js';
import { parseBody } from './schema.js';

/**
 * OpenAI's Batch API: a JSONL file of requests uploaded with `POST /v1/files`, run by `POST /v1/batches` in the
 * background, its answers fetched as another file. Every line is sent through the gateway itself (its
 * batching, metrics), as the caller who created the batch, a few at a time, behind every interactive request in
 * the queues: a batch of thousands holds up no one, it runs on the capacity they leave. Kept in memory.
 */

/** Paths a batch line may name (OpenAI's, and the encoder routes vLLM's batch runner takes). */
const ENDPOINTS = ['/v1/chat/completions', '/v1/completions', '/v1/embeddings', '/v1/responses', '/v1/rerank', '/v1/score'] as const;
/** Most lines of one batch in flight at once. */
const CONCURRENCY = 16;
/** Most bytes of files the gateway keeps (inputs and outputs together). */
const MAX_STORED_BYTES = 1 << 30;
/** Most lines in a batch file (OpenAI's limit). */
const MAX_LINES = 50_000;

type StoredFile = { meta: FileObject; data: Uint8Array; owner: string };
type FileObject = { id: string; object: 'file'; bytes: number; created_at: number; filename: string; purpose: string; status: 'processed' };
type Line = { custom_id: string; method: 'POST'; url: string; body: Record<string, unknown> };
type BatchStatus = 'validating' | 'in_progress' | 'finalizing' | 'completed' | 'failed' | 'cancelling' | 'cancelled';
type Batch = {
  id: string;
  object: 'batch';
  endpoint: string;
  errors: null;
  input_file_id: string;
  completion_window: string;
  status: BatchStatus;
  output_file_id: string | null;
  error_file_id: string | null;
  created_at: number;
  in_progress_at: number | null;
  finalizing_at: number | null;
  completed_at: number | null;
  cancelling_at: number | null;
  cancelled_at: number | null;
  expires_at: number;
  request_counts: { total: number; completed: number; failed: number };
  metadata: Record<string, string> | null;
};

const createSchema = z.object({
  input_file_id: z.string({ error: 'you must provide input_file_id' }),
  endpoint: z.enum(ENDPOINTS, { error: `endpoint must be one of ${ENDPOINTS.join(', ')}` }),
  completion_window: z.literal('24h', { error: 'completion_window must be 24h' }),
  metadata: z.record(z.string(), z.string()).nullish(),
});

const lineSchema = z.object({
  custom_id: z.string().min(1),
  method: z.literal('POST'),
  url: z.string(),
  body: z.record(z.string(), z.unknown()),
});

const now = () => Math.floor(Date.now() / 1000);
const newId = (prefix: string) => `${prefix}_${randomBytes(12).toString('hex')}`;
const notFound = (what: string, id: string) => new GatewayError(404, 'not_found', `No ${what} with id ${id}`, { param: `${what}_id` });

/**
 * How a batch's line is marked for the gateway's middleware (Hono's env of app.request: no client can set it):
 * its batch, and the caller who created it, as authorised then — the line is not authenticated again (the
 * creator's token may expire long before a 24 h batch ends) nor counted against the caller's rate limit.
 */
export type BatchLineEnv = { infergateBatch?: { id: string; caller: Caller } };
/** A batch line's priority: behind every interactive request (whose priorities are small numbers, 0 by default). */
export const BATCH_PRIORITY = -1_000_000;

/** `dispatch` sends one request through the whole gateway (Hono's app.request), `env` marking it a batch line. */
export function batchRoutes({
  maxBodyBytes,
  dispatch,
}: {
  maxBodyBytes: number;
  dispatch: (path: string, init: RequestInit, env: BatchLineEnv) => Promise<Response>;
}) {
  const app = new Hono<GatewayEnv>();
  const files = new Map<string, StoredFile>();
  const batches = new Map<string, Batch & { stop: AbortController; owner: string }>();
  let storedBytes = 0;
  // Under key or JWT auth, files and batches are their caller's own: another caller's are not found.
  const ownerOf = (c: Context<GatewayEnv>) => {
    const caller = c.get('caller');
    return caller && caller.kind !== 'public' ? caller.id : '';
  };
  const file = (c: Context<GatewayEnv>, id: string) => {
    const f = files.get(id);
    if (!f || f.owner !== ownerOf(c)) throw notFound('file', id);
    return f;
  };
  const batchOf = (c: Context<GatewayEnv>, id: string) => {
    const b = batches.get(id);
    if (!b || b.owner !== ownerOf(c)) throw notFound('batch', id);
    return b;
  };
  const store = (owner: string, data: Uint8Array, filename: string, purpose: string) => {
    const meta: FileObject = { id: newId('file'), object: 'file', bytes: data.byteLength, created_at: now(), filename, purpose, status: 'processed' };
    files.set(meta.id, { meta, data, owner });
    storedBytes += data.byteLength;
    return meta;
  };
  const shown = ({ stop: _stop, owner: _owner, ...b }: Batch & { stop: AbortController; owner: string }) => b;

  app.post('/v1/files', async (c) => {
    if (Number(c.req.header('content-length') ?? 0) > maxBodyBytes) throw new GatewayError(413, 'payload_too_large', `the file is over ${maxBodyBytes} bytes`);
    const form = await c.req.parseBody().catch(() => {
      throw badInput('upload the file as multipart/form-data with fields "file" and "purpose"');
    });
    const upload = form.file;
    if (!(upload instanceof File)) throw badInput('missing the "file" field (multipart/form-data)', 'file');
    if (form.purpose !== 'batch') throw badInput(`purpose must be "batch" (files here feed the Batch API); got ${JSON.stringify(form.purpose)}`, 'purpose');
    if (upload.size > maxBodyBytes) throw new GatewayError(413, 'payload_too_large', `the file is over ${maxBodyBytes} bytes`);
    if (storedBytes + upload.size > MAX_STORED_BYTES)
      throw new GatewayError(
        507,
        'insufficient_storage',
        `files take ${storedBytes} of the gateway's ${MAX_STORED_BYTES} bytes: delete some (DELETE /v1/files/{id})`,
      );
    return c.json(store(ownerOf(c), new Uint8Array(await upload.arrayBuffer()), upload.name, 'batch'));
  });
  app.get('/v1/files', (c) => c.json({ object: 'list', data: [...files.values()].filter((f) => f.owner === ownerOf(c)).map((f) => f.meta), has_more: false }));
  app.get('/v1/files/:id', (c) => c.json(file(c, c.req.param('id')).meta));
  app.get('/v1/files/:id/content', (c) => c.body(file(c, c.req.param('id')).data as Uint8Array<ArrayBuffer>, 200, { 'content-type': 'application/jsonl' }));
  app.delete('/v1/files/:id', (c) => {
    const id = c.req.param('id');
    storedBytes -= file(c, id).data.byteLength;
    files.delete(id);
    return c.json({ id, object: 'file', deleted: true });
  });

  app.post('/v1/batches', async (c) => {
    const req = parseBody(createSchema, await c.req.json().catch(() => ({})));
    const lines = parseLines(file(c, req.input_file_id).data, req.endpoint);
    const created = now();
    const batch: Batch & { stop: AbortController; owner: string } = {
      id: newId('batch'),
      object: 'batch',
      endpoint: req.endpoint,
      errors: null,
      input_file_id: req.input_file_id,
      completion_window: req.completion_window,
      status: 'in_progress',
      output_file_id: null,
      error_file_id: null,
      created_at: created,
      in_progress_at: created,
      finalizing_at: null,
      completed_at: null,
      cancelling_at: null,
      cancelled_at: null,
      expires_at: created + 24 * 3600,
      request_counts: { total: lines.length, completed: 0, failed: 0 },
      metadata: req.metadata ?? null,
      stop: new AbortController(),
      owner: ownerOf(c),
    };
    batches.set(batch.id, batch);
    void run(batch, lines, c.get('caller') ?? { kind: 'public', id: 'public' });
    return c.json(shown(batch));
  });
  app.get('/v1/batches', (c) =>
    c.json({
      object: 'list',
      data: [...batches.values()]
        .filter((b) => b.owner === ownerOf(c))
        .map(shown)
        .reverse(),
      has_more: false,
    }),
  );
  app.get('/v1/batches/:id', (c) => c.json(shown(batchOf(c, c.req.param('id')))));
  app.post('/v1/batches/:id/cancel', (c) => {
    const b = batchOf(c, c.req.param('id'));
    if (b.status === 'in_progress') {
      b.status = 'cancelling';
      b.cancelling_at = now();
      b.stop.abort();
    }
    return c.json(shown(b));
  });

  /** Runs every line through the gateway, then writes the answers' file (and the failures'). */
  async function run(batch: Batch & { stop: AbortController; owner: string }, lines: Line[], caller: Caller) {
    const output: string[] = [];
    const failures: string[] = [];
    const queue = new PQueue({ concurrency: CONCURRENCY });
    await Promise.all(
      lines.map((line) =>
        queue.add(async () => {
          if (batch.stop.signal.aborted) return;
          const requestId = newId('batch_req');
          let status = 0;
          let body: unknown;
          try {
            const res = await dispatch(
              line.url,
              {
                method: 'POST',
                headers: { 'content-type': 'application/json', 'x-request-id': requestId },
                body: JSON.stringify(line.body),
                signal: batch.stop.signal,
              },
              { infergateBatch: { id: batch.id, caller } },
            );
            status = res.status;
            body = await res.json().catch(() => null);
          } catch (err) {
            if (batch.stop.signal.aborted) return;
            body = { error: { message: (err as Error).message } };
          }
          const ok = status >= 200 && status < 300;
          const error = ok ? null : { code: String(status || 'internal'), message: (body as { error?: { message?: string } })?.error?.message ?? 'failed' };
          const record = JSON.stringify({
            id: requestId,
            custom_id: line.custom_id,
            response: status ? { status_code: status, request_id: requestId, body } : null,
            error,
          });
          (ok ? output : failures).push(record);
          batch.request_counts[ok ? 'completed' : 'failed']++;
        }),
      ),
    );
    batch.finalizing_at = now();
    const jsonl = (records: string[]) => new TextEncoder().encode(records.map((r) => `${r}\n`).join(''));
    if (output.length) batch.output_file_id = store(batch.owner, jsonl(output), `${batch.id}_output.jsonl`, 'batch_output').id;
    if (failures.length) batch.error_file_id = store(batch.owner, jsonl(failures), `${batch.id}_errors.jsonl`, 'batch_output').id;
    if (batch.stop.signal.aborted) {
      batch.status = 'cancelled';
      batch.cancelled_at = now();
    } else {
      batch.status = 'completed';
      batch.completed_at = now();
    }
  }
  return app;
}

/** The batch file's requests, checked before anything runs: every line JSON, POST to the batch's endpoint, custom_id unique. */
function parseLines(data: Uint8Array, endpoint: string): Line[] {
  const text = new TextDecoder().decode(data);
  const rows = text.split('\n').filter((l) => l.trim() !== '');
  if (rows.length === 0) throw badInput('the input file has no requests', 'input_file_id');
  if (rows.length > MAX_LINES) throw badInput(`the input file has ${rows.length} requests; at most ${MAX_LINES}`, 'input_file_id');
  const seen = new Set<string>();
  return rows.map((row, i) => {
    const where = `input file line ${i + 1}`;
    let json: unknown;
    try {
      json = JSON.parse(row);
    } catch {
      throw badInput(`${where} is not JSON`, 'input_file_id');
    }
    const parsed = lineSchema.safeParse(json);
    if (!parsed.success) throw badInput(`${where}: ${parsed.error.issues[0].path.join('.') || 'line'}: ${parsed.error.issues[0].message}`, 'input_file_id');
    const line = parsed.data as Line;
    if (line.url !== endpoint) throw badInput(`${where}: url ${line.url} is not the batch's endpoint ${endpoint}`, 'input_file_id');
    if (seen.has(line.custom_id)) throw badInput(`${where}: custom_id ${line.custom_id} is used twice`, 'input_file_id');
    seen.add(line.custom_id);
    return line;
  });
}
