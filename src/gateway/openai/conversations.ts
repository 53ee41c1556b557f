import { type Context, Hono } from 'hono';
import { z } from 'zod';
import { badInput, GatewayError } from '../../errors/index.js';
import type { Telemetry } from '../../telemetry/index.js';
import type { Caller } from '../auth/middleware.js';
import { parseQuery, readJson } from '../body.js';
import { owner } from '../calls.js';
import { type NewId, randomId } from '../fleet.js';
import type { GatewayEnv } from '../types.js';
import type { KeptDocuments } from './kept-documents.js';
import { inputItem, listedItems, newId } from './responses-input.js';
import { parseBody } from './schema.js';

/** An item of a conversation, as listed: a message, a call, a call's output or a thought, each with its id. */
export type Item = { id?: string; type?: string };

/** A conversation (OpenAI's Conversations API): its items, oldest first, and what the API shows of it. */
export type Conversation = {
  id: string;
  owner?: string;
  created_at: number;
  metadata: Record<string, string>;
  items: Item[];
  bytes: number;
  expiry?: NodeJS.Timeout;
  /** When its keep time ends as last written on disk (ms since the epoch). */
  writtenExpiry?: number;
};

/** A conversation as kept on disk (server.batch_dir): when its keep time ends, counted from its last use (ms since the epoch). */
export type SavedConversation = Pick<Conversation, 'id' | 'owner' | 'created_at' | 'metadata' | 'items'> & { expires_at: number };

/**
 * Conversations the Responses API continues (`conversation`): the caller's own, in memory, each kept `keepMs`
 * after it was last used, within `maxBytes` of items together — past it, items are refused (a 507), never another
 * conversation's dropped. With `disk` (server.batch_dir) on disk too, written as each changes (and as it is used,
 * its keep time moved on): a restarted gateway has those used within their keep time.
 */
export class Conversations {
  private readonly kept = new Map<string, Conversation>();
  private bytes = 0;

  constructor(readonly opts: { keepMs: number; maxBytes: number; newId?: NewId; disk?: KeptDocuments<SavedConversation> }) {
    for (const { expires_at: expiresAt, ...saved } of opts.disk?.kept ?? []) {
      const left = expiresAt - Date.now();
      if (left <= 0) {
        opts.disk?.remove(saved.id);
        continue;
      }
      const conversation: Conversation = { ...saved, bytes: 0, writtenExpiry: expiresAt };
      this.kept.set(saved.id, conversation);
      this.resize(conversation, Buffer.byteLength(JSON.stringify(saved.items)));
      this.touch(conversation, left);
    }
  }

  create(id: string, caller: Caller | undefined, metadata: Record<string, string> | undefined, items: Item[]): Conversation {
    const conversation: Conversation = { id, owner: owner(caller), created_at: Math.floor(Date.now() / 1000), metadata: metadata ?? {}, items: [], bytes: 0 };
    this.kept.set(id, conversation);
    try {
      this.append(conversation, items);
    } catch (err) {
      this.kept.delete(id); // (its items did not fit: nothing kept)
      throw err;
    }
    this.touch(conversation);
    return conversation; // (written by its append)
  }

  /** The caller's conversation (its keep time starts again); another's, or one forgotten, is a 404 naming `param`. */
  find(id: string, caller: Caller | undefined, param?: string): Conversation {
    const conversation = this.kept.get(id);
    if (!conversation || (conversation.owner !== undefined && conversation.owner !== owner(caller)))
      throw new GatewayError(404, 'not_found', `no conversation ${id} (conversations are kept ${this.opts.keepMs / 1000} s after their last use)`, {
        param,
      });
    this.touch(conversation);
    return conversation;
  }

  /** Adds items at its end; none if they do not all fit (a 507). A conversation deleted meanwhile takes none. */
  append(conversation: Conversation, items: Item[]): void {
    if (this.kept.get(conversation.id) !== conversation) return;
    const bytes = Buffer.byteLength(JSON.stringify(items));
    if (this.bytes + bytes > this.opts.maxBytes)
      throw new GatewayError(
        507,
        'insufficient_storage',
        `conversations fill server.async_max_mb (${this.opts.maxBytes / 2 ** 20} MiB): delete some (DELETE /v1/conversations/{id})`,
      );
    conversation.items.push(...items);
    this.resize(conversation, conversation.bytes + bytes);
    this.save(conversation);
  }

  /** Replaces its metadata. */
  update(conversation: Conversation, metadata: Record<string, string>): void {
    conversation.metadata = metadata;
    this.save(conversation);
  }

  /** Removes an item (a 404 if it has none of that id). */
  removeItem(conversation: Conversation, itemId: string): void {
    const at = conversation.items.findIndex((item) => item.id === itemId);
    if (at < 0) throw new GatewayError(404, 'not_found', `conversation ${conversation.id} has no item ${itemId}`);
    conversation.items.splice(at, 1);
    this.resize(conversation, Buffer.byteLength(JSON.stringify(conversation.items)));
    this.save(conversation);
  }

  forget(conversation: Conversation): void {
    clearTimeout(conversation.expiry);
    if (this.kept.get(conversation.id) !== conversation) return;
    this.kept.delete(conversation.id);
    this.bytes -= conversation.bytes;
    this.opts.disk?.remove(conversation.id);
  }

  /** Conversations kept and the bytes of their items (for /metrics). */
  stats(): { conversations: number; bytes: number } {
    return { conversations: this.kept.size, bytes: this.bytes };
  }

  private resize(conversation: Conversation, bytes: number): void {
    this.bytes += bytes - conversation.bytes;
    conversation.bytes = bytes;
  }

  private touch(conversation: Conversation, ms = this.opts.keepMs): void {
    clearTimeout(conversation.expiry);
    conversation.expiry = setTimeout(() => this.forget(conversation), ms).unref();
    // Used, not changed: its keep time on disk moves on too — rewritten once it lags by a hundredth of the keep
    // time (not at every read of a long conversation's pages), so a restart keeps it as long as memory would have.
    const lag = Date.now() + ms - (conversation.writtenExpiry ?? 0);
    if (this.opts.disk && lag > this.opts.keepMs / 100) this.save(conversation);
  }

  /** On disk as it is now (one not kept, or being made and refused, is not written). */
  private save(conversation: Conversation): void {
    const { id, owner: keptFor, created_at, metadata, items } = conversation;
    if (!this.opts.disk || !this.kept.has(id)) return;
    conversation.writtenExpiry = Date.now() + this.opts.keepMs;
    this.opts.disk.save(id, { id, owner: keptFor, created_at, metadata, items, expires_at: conversation.writtenExpiry });
  }
}

/** /metrics: the conversations kept and the bytes of their items (server.async_max_mb bounds those too). */
export function measureConversations(telemetry: Telemetry, conversations: Conversations): void {
  telemetry.meter
    .createObservableGauge('infergate.conversations', { unit: '{conversation}', description: 'Conversations kept (the Conversations API).' })
    .addCallback((r) => r.observe(conversations.stats().conversations));
  telemetry.meter
    .createObservableGauge('infergate.conversations.bytes', { unit: 'By', description: 'Bytes the conversations’ items hold.' })
    .addCallback((r) => r.observe(conversations.stats().bytes));
}

/** A list of items a page at a time (a response's input items, a conversation's): OpenAI's query. */
export const itemsQuery = z.object({
  order: z.enum(['asc', 'desc']).default('desc').describe('desc (the default): the last item first'),
  limit: z.coerce.number().int().min(1).max(100).default(20),
  after: z.string().optional().describe('the id of the item the page starts after (the last one of the page before)'),
});

/** The page of `items` (oldest first) the query asks for; `what` names them in a 400 for an `after` not among them. */
export function itemsPage<T extends { id?: string }>(items: T[], { order, limit, after }: z.output<typeof itemsQuery>, what: string) {
  const ordered = order === 'asc' ? items : [...items].reverse();
  const from = after === undefined ? 0 : ordered.findIndex((item) => item.id === after) + 1;
  if (from === 0 && after !== undefined) throw badInput(`no item ${after} among ${what}`, 'after', 'invalid_request_error');
  const data = ordered.slice(from, from + limit);
  return { object: 'list', data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: from + limit < ordered.length };
}

/** Most items a request adds at once (OpenAI's limit). */
const MAX_ADDED = 20;
const metadata = z.record(z.string(), z.string()).refine((m) => Object.keys(m).length <= 16, 'metadata has at most 16 keys');
export const conversationSchema = z.object({ items: z.array(inputItem).max(MAX_ADDED).nullish(), metadata: metadata.nullish() });
export const conversationUpdateSchema = z.object({ metadata: metadata });
export const conversationItemsSchema = z.object({ items: z.array(inputItem).min(1).max(MAX_ADDED) });

/**
 * OpenAI's Conversations API: conversations the Responses API continues (`conversation`), their items added,
 * listed and removed by hand too. Items get ids as a response's input items do.
 */
export function conversationRoutes(conversations: Conversations, maxBodyBytes: number): Hono<GatewayEnv> {
  const app = new Hono<GatewayEnv>();
  const shown = (conv: Conversation) => ({ id: conv.id, object: 'conversation', created_at: conv.created_at, metadata: conv.metadata });
  const found = (c: Context<GatewayEnv>) => conversations.find(c.req.param('id') as string, c.get('caller'));
  const body = async <T>(c: Context<GatewayEnv>, schema: z.ZodType<T>) => parseBody(schema, await readJson(c, maxBodyBytes, { code: 'invalid_request_error' }));
  /** Items as given, each with an id (`base`'s, hex, for those without one). */
  const listed = (items: z.infer<typeof inputItem>[]) => listedItems(items, newId('x').slice('x_'.length)) as Item[];

  app.post('/v1/conversations', async (c) => {
    const req = await body(c, conversationSchema);
    const id = (conversations.opts.newId ?? randomId)('conv');
    return c.json(shown(conversations.create(id, c.get('caller'), req.metadata ?? undefined, listed(req.items ?? []))));
  });
  app.get('/v1/conversations/:id', (c) => c.json(shown(found(c))));
  app.post('/v1/conversations/:id', async (c) => {
    const conv = found(c);
    conversations.update(conv, (await body(c, conversationUpdateSchema)).metadata);
    return c.json(shown(conv));
  });
  app.delete('/v1/conversations/:id', (c) => {
    const conv = found(c);
    conversations.forget(conv);
    return c.json({ id: conv.id, object: 'conversation.deleted', deleted: true });
  });
  app.post('/v1/conversations/:id/items', async (c) => {
    const conv = found(c);
    const items = listed((await body(c, conversationItemsSchema)).items);
    conversations.append(conv, items);
    return c.json({ object: 'list', data: items, first_id: items[0].id, last_id: items.at(-1)?.id, has_more: false });
  });
  app.get('/v1/conversations/:id/items', (c) => c.json(itemsPage(found(c).items, parseQuery(itemsQuery, c), `conversation ${c.req.param('id')}'s items`)));
  app.get('/v1/conversations/:id/items/:item', (c) => {
    const conv = found(c);
    const item = conv.items.find((i) => i.id === c.req.param('item'));
    if (!item) throw new GatewayError(404, 'not_found', `conversation ${conv.id} has no item ${c.req.param('item')}`);
    return c.json(item);
  });
  app.delete('/v1/conversations/:id/items/:item', (c) => {
    const conv = found(c);
    conversations.removeItem(conv, c.req.param('item'));
    return c.json(shown(conv));
  });
  return app;
}
