import { GatewayError } from '../../errors/index.js';
import type { Telemetry } from '../../telemetry/index.js';
import type { Caller } from '../auth/middleware.js';
import { owner } from '../calls.js';
import type { KeptDocuments } from './kept-documents.js';

/** A kept response: the conversation it answered (input items, earlier turns' included) and its answer. */
export type Stored = { id: string; owner?: string; input: object[]; response: { output: object[] }; bytes: number; expiry: NodeJS.Timeout };
/** A kept response as kept on disk (server.batch_dir): when its keep time ends (ms since the epoch), after a restart too. */
export type SavedResponse = { id: string; owner?: string; input: object[]; response: { output: object[] }; expires_at: number };

/**
 * Responses kept for `previous_response_id` and GET /v1/responses/{id} (OpenAI's `store: true`): the caller's own,
 * `keepMs` after they end, within `maxBytes` (the oldest dropped first when a new one does not fit). With `disk`
 * (server.batch_dir) on disk too: a restarted gateway has those whose keep time is not over.
 */
export class StoredResponses {
  private readonly kept = new Map<string, Stored>();
  private bytes = 0;

  constructor(private readonly opts: { keepMs: number; maxBytes: number; disk?: KeptDocuments<SavedResponse> }) {
    const saved = [...(opts.disk?.kept ?? [])].sort((a, b) => a.expires_at - b.expires_at);
    for (const { id, owner: keptFor, input, response, expires_at: expiresAt } of saved) {
      const left = expiresAt - Date.now();
      if (left > 0) this.hold(id, keptFor, input, response, left);
      else opts.disk?.remove(id);
    }
  }

  keep(id: string, caller: Caller | undefined, input: object[], response: { output: object[] }): void {
    if (this.hold(id, owner(caller), input, response, this.opts.keepMs))
      this.opts.disk?.save(id, { id, owner: owner(caller), input, response, expires_at: Date.now() + this.opts.keepMs });
  }

  /** Holds a response `ms` (the oldest dropped while it does not fit); whether it is held. */
  private hold(id: string, keptFor: string | undefined, input: object[], response: { output: object[] }, ms: number): boolean {
    const bytes = Buffer.byteLength(JSON.stringify(input)) + Buffer.byteLength(JSON.stringify(response));
    if (bytes > this.opts.maxBytes) return false; // (one larger than all of the room is not kept: continuing it is a 404)
    for (const [oldest] of this.kept) {
      if (this.bytes + bytes <= this.opts.maxBytes) break;
      this.drop(oldest);
    }
    const expiry = setTimeout(() => this.drop(id), ms).unref();
    this.kept.set(id, { id, owner: keptFor, input, response, bytes, expiry });
    this.bytes += bytes;
    return true;
  }

  /** The caller's kept response; another's, one not kept, or one forgotten is a 404 (naming `param`, the field that asked). */
  find(id: string, caller: Caller | undefined, param?: string): Stored {
    const stored = this.kept.get(id);
    if (!stored || (stored.owner !== undefined && stored.owner !== owner(caller)))
      throw new GatewayError(404, 'not_found', `no response ${id} is kept (only those created with store: true, for ${this.opts.keepMs / 1000} s)`, { param });
    return stored;
  }

  /** Responses kept and their bytes (for /metrics). */
  stats(): { responses: number; bytes: number } {
    return { responses: this.kept.size, bytes: this.bytes };
  }

  /** Forgets the caller's kept response (one not kept: a 404, unless `ifKept`). */
  forget(id: string, caller: Caller | undefined, { ifKept = false } = {}): void {
    if (ifKept && !this.kept.has(id)) return;
    this.drop(this.find(id, caller).id);
  }

  private drop(id: string): void {
    const stored = this.kept.get(id);
    if (!stored) return;
    clearTimeout(stored.expiry);
    this.kept.delete(id);
    this.bytes -= stored.bytes;
    this.opts.disk?.remove(id);
  }
}

/** /metrics: the responses kept and the bytes they hold (server.async_max_mb bounds those too). */
export function measureStoredResponses(telemetry: Telemetry, stored: StoredResponses): void {
  telemetry.meter
    .createObservableGauge('infergate.responses.kept', {
      unit: '{response}',
      description: 'Responses kept (store: true, background ones) to be continued or retrieved.',
    })
    .addCallback((r) => r.observe(stored.stats().responses));
  telemetry.meter
    .createObservableGauge('infergate.responses.kept_bytes', { unit: 'By', description: 'Bytes the kept responses hold: conversations and answers.' })
    .addCallback((r) => r.observe(stored.stats().bytes));
}
