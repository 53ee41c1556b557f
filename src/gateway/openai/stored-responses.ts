import { GatewayError } from '../../errors/index.js';
import type { Telemetry } from '../../telemetry/index.js';
import type { Caller } from '../auth/middleware.js';
import { owner } from '../calls.js';

/** A kept response: the conversation it answered (input items, earlier turns' included) and its answer. */
export type Stored = { id: string; owner?: string; input: object[]; response: { output: object[] }; bytes: number; expiry: NodeJS.Timeout };

/**
 * Responses kept for `previous_response_id` and GET /v1/responses/{id} (OpenAI's `store: true`): the caller's own,
 * `keepMs` after they end, within `maxBytes` (the oldest dropped first when a new one does not fit).
 */
export class StoredResponses {
  private readonly kept = new Map<string, Stored>();
  private bytes = 0;

  constructor(private readonly opts: { keepMs: number; maxBytes: number }) {}

  keep(id: string, caller: Caller | undefined, input: object[], response: { output: object[] }): void {
    const bytes = Buffer.byteLength(JSON.stringify(input)) + Buffer.byteLength(JSON.stringify(response));
    if (bytes > this.opts.maxBytes) return; // (one larger than all of the room is not kept: continuing it is a 404)
    for (const [oldest] of this.kept) {
      if (this.bytes + bytes <= this.opts.maxBytes) break;
      this.drop(oldest);
    }
    const expiry = setTimeout(() => this.drop(id), this.opts.keepMs).unref();
    this.kept.set(id, { id, owner: owner(caller), input, response, bytes, expiry });
    this.bytes += bytes;
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
