import type { Context } from 'hono';
import PQueue from 'p-queue';
import { z } from 'zod';
import { badInput, GatewayError } from '../../errors/index.js';
import type { Caller } from '../auth/middleware.js';
import { type Fleet, randomId } from '../fleet.js';
import type { GatewayEnv } from '../types.js';
import type { BatchDisk } from './batch-disk.js';
/**
 * The batches OpenAI's Batch API and Anthropic's Message Batches run (their routes: batches.ts,
 * message-batches.ts): files of requests and the batches of them, each line sent through the gateway itself (its
 * batching, metrics), as the caller who created the batch, a few at a time, behind every interactive request in
 * the queues: a batch of thousands holds up no one, it runs on the capacity they leave. Kept in memory, and with
 * server.batch_dir on disk too: a restarted gateway has them, and goes on with its running batches.
 */

/** Anthropic's message batches' lines' path (their own API's, not among OpenAI's endpoints). */
export const MESSAGES = '/v1/messages';
/** The purpose of the file a message batch's requests are kept in. */
export const MESSAGE_BATCH_FILE = 'message_batch';
/** Most lines of one batch in flight at once. */
const CONCURRENCY = 16;
/** Most bytes of files the gateway keeps (inputs and outputs together). */
const MAX_STORED_BYTES = 1 << 30;
/** Most lines in a batch file (OpenAI's limit). */
const MAX_LINES = 50_000;
/** Most requests in a message batch (Anthropic's limit). */
export const MAX_MESSAGE_REQUESTS = 100_000;

type StoredFile = { meta: FileObject; data: Uint8Array; owner: string };
type FileObject = { id: string; object: 'file'; bytes: number; created_at: number; filename: string; purpose: string; status: 'processed' };
type Line = { custom_id: string; method: 'POST'; url: string; body: Record<string, unknown> };
type BatchStatus = 'validating' | 'in_progress' | 'finalizing' | 'completed' | 'failed' | 'expired' | 'cancelling' | 'cancelled';
type Batch = {
  id: string;
  object: 'batch';
  endpoint: string;
  errors: { object: 'list'; data: { code: string; message: string; param: string | null; line: number | null }[] } | null;
  input_file_id: string;
  completion_window: string;
  status: BatchStatus;
  output_file_id: string | null;
  error_file_id: string | null;
  created_at: number;
  in_progress_at: number | null;
  finalizing_at: number | null;
  completed_at: number | null;
  failed_at: number | null;
  cancelling_at: number | null;
  cancelled_at: number | null;
  expires_at: number;
  expired_at: number | null;
  request_counts: { total: number; completed: number; failed: number };
  metadata: Record<string, string> | null;
};
/** A batch as the gateway holds it: whose it is, and as whom its lines run. */
export type Held = Batch & { stop: AbortController; owner: string; caller: Caller };
/** A batch as kept on disk. */
type Saved = Omit<Held, 'stop'>;
/** A request's answer as the output (or error) file has it. */
type Answer = { ok: boolean; record: string };

const lineSchema = z.object({
  custom_id: z.string().min(1),
  method: z.literal('POST'),
  url: z.string(),
  body: z.record(z.string(), z.unknown()),
});

const now = () => Math.floor(Date.now() / 1000);

export const notFound = (what: string, id: string) => new GatewayError(404, 'not_found', `No ${what} with id ${id}`, { param: `${what}_id` });

/**
 * How a batch's line is marked for the gateway's middleware (Hono's env of app.request: no client can set it):
 * its batch, and the caller who created it, as authorised then — the line is not authenticated again (the
 * creator's token may expire long before a 24 h batch ends) nor counted against the caller's rate limit.
 */
export type BatchLineEnv = { infergateBatch?: { id: string; caller: Caller } };
/** A batch line's priority: behind every interactive request (whose priorities are small numbers, 0 by default). */
export const BATCH_PRIORITY = -1_000_000;

/**
 * The gateway's hold on the batches it runs: where they are kept (`disk`, server.batch_dir), when those a gateway
 * before a restart left running go on (once its replicas are up), and their stop at shutdown.
 */
export class BatchControl {
  readonly halted = new AbortController();
  private running = new Set<Promise<void>>();
  private go: () => void = () => {};
  readonly started = new Promise<void>((resolve) => (this.go = resolve));

  constructor(
    readonly disk?: BatchDisk,
    /** Told of each batch that goes on after a restart. */
    readonly resumed: (batch: { id: string; status: string; answered: number; total: number }) => void = () => {},
  ) {}

  /** The gateway is up: kept batches go on. */
  start(): void {
    this.go();
  }

  track(run: Promise<void>): void {
    this.running.add(run);
    void run.finally(() => this.running.delete(run));
  }

  /**
   * No more lines are sent; resolves once those in flight are answered and written down (and the folder given up).
   * Kept on disk, a batch goes on with the rest after a restart; one in memory only is lost.
   */
  async halt(): Promise<void> {
    this.halted.abort();
    await Promise.all(this.running);
    await this.disk?.close();
  }
}

export type BatchOptions = {
  maxBodyBytes: number;
  /** Sends one request through the whole gateway (Hono's app.request), `env` marking it a batch line. */
  dispatch: (path: string, init: RequestInit, env: BatchLineEnv) => Promise<Response>;
  control?: BatchControl;
  /** Other gateways keeping their own (server.fleet): files' and batches' ids carry this one's token. */
  fleet?: Fleet;
};

/** What the batch APIs share: files and batches, their owners, their runs (and, with a batch_dir, their disk). */
export type BatchStore = ReturnType<typeof batchStore>;

export function batchStore({ dispatch, control = new BatchControl(), fleet }: BatchOptions) {
  const newId = fleet?.newId ?? randomId;
  const { disk } = control;
  const halted = control.halted.signal;
  const files = new Map<string, StoredFile>();
  const batches = new Map<string, Held>();
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
  const keep = (f: StoredFile) => {
    files.set(f.meta.id, f);
    storedBytes += f.data.byteLength;
  };
  const store = async (owner: string, data: Uint8Array, filename: string, purpose: string) => {
    const meta: FileObject = { id: newId('file'), object: 'file', bytes: data.byteLength, created_at: now(), filename, purpose, status: 'processed' };
    await disk?.saveFile(meta.id, { meta, owner }, data);
    keep({ meta, data, owner });
    return meta;
  };
  // A batch's saves one after another, each of it as it then stands: a cancel's save and the run's last one raced —
  // one's rename took the other's file away (the batch failed on ENOENT), or a shorter write left a longer one's tail.
  const saving = new Map<string, Promise<void>>();
  const save = (b: Held): Promise<void> | undefined => {
    if (!disk) return undefined;
    const next = (saving.get(b.id) ?? Promise.resolve()).catch(() => {}).then(() => disk.saveBatch(b.id, saved(b)));
    saving.set(b.id, next);
    const forget = () => saving.get(b.id) === next && saving.delete(b.id);
    next.then(forget, forget);
    return next;
  };
  const saved = ({ stop: _stop, ...b }: Held): Saved => b;
  const shown = ({ stop: _stop, owner: _owner, caller: _caller, ...b }: Held): Batch => b;

  /**
   * Runs every line through the gateway, then writes the answers' file (and the failures'). `answered`: lines a
   * gateway before a restart answered (their requests are not among `lines`). At `expires_at` (the 24 h
   * completion window) the lines not answered are stopped and go to the error file as `batch_expired`, as OpenAI's do.
   */
  async function run(batch: Held, lines: Line[], answered: Answer[]) {
    const output = answered.filter((a) => a.ok).map((a) => a.record);
    const failures = answered.filter((a) => !a.ok).map((a) => a.record);
    batch.request_counts = { total: batch.request_counts.total, completed: output.length, failed: failures.length };
    const expiry = new AbortController();
    const expires = setTimeout(() => expiry.abort(), Math.max(0, batch.expires_at * 1000 - Date.now())).unref();
    if (Date.now() >= batch.expires_at * 1000) expiry.abort(); // (a gateway that was down past it)
    const stop = AbortSignal.any([batch.stop.signal, expiry.signal]);
    const done = new Set<Line>();
    const queue = new PQueue({ concurrency: CONCURRENCY });
    await Promise.all(
      lines.map((line) =>
        queue.add(async () => {
          if (stop.aborted || halted.aborted) return;
          const requestId = randomId('batch_req');
          let status = 0;
          let body: unknown;
          try {
            const res = await dispatch(
              line.url,
              {
                method: 'POST',
                headers: { 'content-type': 'application/json', 'x-request-id': requestId },
                body: JSON.stringify(line.body),
                signal: stop,
              },
              { infergateBatch: { id: batch.id, caller: batch.caller } },
            );
            status = res.status;
            body = await res.json().catch(() => null);
          } catch (err) {
            if (stop.aborted) return;
            body = { error: { message: (err as Error).message } };
          }
          const ok = status >= 200 && status < 300;
          if (!ok && stop.aborted) return; // (cut short by the cancel, or the window's end: not run, as those not sent)
          const error = ok ? null : { code: String(status || 'internal'), message: (body as { error?: { message?: string } })?.error?.message ?? 'failed' };
          const record = JSON.stringify({
            id: requestId,
            custom_id: line.custom_id,
            response: status ? { status_code: status, request_id: requestId, body } : null,
            error,
          });
          await disk?.answered(batch.id, { ok, record });
          (ok ? output : failures).push(record);
          batch.request_counts[ok ? 'completed' : 'failed']++;
          done.add(line);
        }),
      ),
    );
    clearTimeout(expires);
    if (halted.aborted && !stop.aborted) return; // the gateway is stopping: the rest after a restart
    const expired = expiry.signal.aborted && !batch.stop.signal.aborted;
    if (expired)
      for (const line of lines.filter((l) => !done.has(l))) {
        const message = 'This request could not be executed before the completion window expired.';
        failures.push(JSON.stringify({ id: randomId('batch_req'), custom_id: line.custom_id, response: null, error: { code: 'batch_expired', message } }));
        batch.request_counts.failed++;
      }
    // (a cancelled batch says cancelling until it is cancelled: it was finalizing, even in the cancel's own answer)
    if (batch.status !== 'cancelling') batch.status = 'finalizing';
    batch.finalizing_at = now();
    const jsonl = (records: string[]) => new TextEncoder().encode(records.map((r) => `${r}\n`).join(''));
    const purpose = batch.endpoint === MESSAGES ? MESSAGE_BATCH_FILE : 'batch_output'; // (a message batch's files are its own)
    if (output.length) batch.output_file_id = (await store(batch.owner, jsonl(output), `${batch.id}_output.jsonl`, purpose)).id;
    if (failures.length) batch.error_file_id = (await store(batch.owner, jsonl(failures), `${batch.id}_errors.jsonl`, purpose)).id;
    if (expired) {
      batch.status = 'expired';
      batch.expired_at = now();
    } else if (batch.stop.signal.aborted) {
      batch.status = 'cancelled';
      batch.cancelled_at = now();
    } else {
      batch.status = 'completed';
      batch.completed_at = now();
    }
    await save(batch);
    await disk?.dropAnswers(batch.id);
  }

  /** A batch that cannot go on (its file gone, the disk failing): failed, with why. */
  function fail(batch: Held, message: string) {
    batch.status = 'failed';
    batch.failed_at = now();
    batch.errors = { object: 'list', data: [{ code: 'batch_failed', message, param: null, line: null }] };
    batch.stop.abort();
    void save(batch)?.catch(() => {});
  }
  const start = (batch: Held, lines: Line[], answered: Answer[]) =>
    control.track(run(batch, lines, answered).catch((err: Error) => fail(batch, `the batch could not be run: ${err.message}`)));

  /** A batch a gateway before a restart left running: on with the lines it had not answered, or to its end. */
  async function goOn(batch: Held) {
    const answered = (await disk?.answers(batch.id)) ?? [];
    control.resumed({ id: batch.id, status: batch.status, answered: answered.length, total: batch.request_counts.total });
    if (batch.status === 'cancelling') batch.stop.abort();
    if (batch.status !== 'in_progress') return start(batch, [], answered);
    const input = files.get(batch.input_file_id);
    if (!input) return fail(batch, `its input file ${batch.input_file_id} was deleted before the batch finished`);
    const done = new Set(answered.map((a) => (JSON.parse(a.record) as { custom_id: string }).custom_id));
    return start(
      batch,
      parseLines(input.data, batch.endpoint).filter((line) => !done.has(line.custom_id)),
      answered,
    );
  }

  /** Starts a batch of the caller's file's lines (checked first: nothing runs if one does not check out). */
  async function create(c: Context<GatewayEnv>, o: { inputFileId: string; endpoint: string; metadata?: Record<string, string> | null; idPrefix?: string }) {
    const lines = parseLines(file(c, o.inputFileId).data, o.endpoint);
    const created = now();
    const batch: Held = {
      id: newId(o.idPrefix ?? 'batch'),
      object: 'batch',
      endpoint: o.endpoint,
      errors: null,
      input_file_id: o.inputFileId,
      completion_window: '24h',
      status: 'in_progress',
      output_file_id: null,
      error_file_id: null,
      created_at: created,
      in_progress_at: created,
      finalizing_at: null,
      completed_at: null,
      failed_at: null,
      cancelling_at: null,
      cancelled_at: null,
      expires_at: created + 24 * 3600,
      expired_at: null,
      request_counts: { total: lines.length, completed: 0, failed: 0 },
      metadata: o.metadata ?? null,
      stop: new AbortController(),
      owner: ownerOf(c),
      caller: c.get('caller') ?? { kind: 'public', id: 'public' },
    };
    await save(batch);
    batches.set(batch.id, batch);
    void start(batch, lines, []);
    return batch;
  }

  /** Stops a running batch: lines not yet sent are not run. */
  async function cancel(b: Held) {
    if (b.status !== 'in_progress') return;
    b.status = 'cancelling';
    b.cancelling_at = now();
    b.stop.abort();
    await save(b);
  }

  /** Forgets a batch that has ended, and its files. */
  async function remove(b: Held) {
    for (const id of [b.input_file_id, b.output_file_id, b.error_file_id]) if (id && files.has(id)) await removeFile(id);
    await disk?.deleteBatch(b.id);
    batches.delete(b.id);
  }

  async function removeFile(id: string) {
    const f = files.get(id);
    if (!f) throw notFound('file', id); // (deleted meanwhile: by a request beside this one)
    files.delete(id);
    storedBytes -= f.data.byteLength;
    await disk?.deleteFile(id);
  }

  /** Whether `bytes` more fit among the files kept (a 507 if not). */
  function room(bytes: number) {
    if (storedBytes + bytes > MAX_STORED_BYTES)
      throw new GatewayError(
        507,
        'insufficient_storage',
        `files take ${storedBytes} of the gateway's ${MAX_STORED_BYTES} bytes: delete some (DELETE /v1/files/{id})`,
      );
  }

  /** The caller's batches, the newest first. */
  const batchesOf = (c: Context<GatewayEnv>) => [...batches.values()].filter((b) => b.owner === ownerOf(c)).reverse();
  const filesOf = (c: Context<GatewayEnv>) => [...files.values()].filter((f) => f.owner === ownerOf(c));

  if (disk) {
    for (const { saved, data } of disk.kept.files) keep({ ...(saved as Omit<StoredFile, 'data'>), data });
    const kept = (disk.kept.batches as Saved[]).sort((a, b) => a.created_at - b.created_at);
    for (const saved of kept) {
      const batch: Held = { ...saved, stop: new AbortController() };
      batches.set(batch.id, batch);
      if (['in_progress', 'cancelling', 'finalizing'].includes(batch.status))
        void control.started.then(() => goOn(batch)).catch((err: Error) => fail(batch, `the batch could not go on: ${err.message}`));
    }
  }
  return { ownerOf, file, store, room, create, cancel, remove, removeFile, batchOf, batchesOf, filesOf, shown };
}

/** The batch file's requests, checked before anything runs: every line JSON, POST to the batch's endpoint, custom_id unique. */
function parseLines(data: Uint8Array, endpoint: string): Line[] {
  const text = new TextDecoder().decode(data);
  const rows = text.split('\n').filter((l) => l.trim() !== '');
  const most = endpoint === MESSAGES ? MAX_MESSAGE_REQUESTS : MAX_LINES;
  if (rows.length === 0) throw badInput('the input file has no requests', 'input_file_id');
  if (rows.length > most) throw badInput(`the input file has ${rows.length} requests; at most ${most}`, 'input_file_id');
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
    // A line's answer is its own, whole, in the output file: one run in the background would outlive the batch,
    // unpaced, kept for a caller no one is — the batch's — and beyond its cancel; a stream's events are no JSON
    // answer (its text was generated and lost, the line counted a success).
    const refused = (['background', 'stream'] as const).find((option) => (line.body as Record<string, unknown> | undefined)?.[option] === true);
    if (refused) throw badInput(`${where}: ${refused} cannot be used in a batch (each line is answered whole in the output file)`, 'input_file_id');
    seen.add(line.custom_id);
    return line;
  });
}
