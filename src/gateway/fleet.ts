import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import type { Context, MiddlewareHandler } from 'hono';
import { GatewayError } from '../errors/index.js';
import { sameSecret } from './auth/middleware.js';
import { clientSignal, readBody, releaseBody } from './body.js';
import { CONNECT_TIMEOUT, KeptAlive } from './kept-alive.js';
import type { GatewayEnv } from './types.js';

/** Marks a request one gateway of the fleet sent another: it is answered there, never sent on again. */
export const FORWARDED = 'infergate-forwarded-by';
/** Marks a request a stopping gateway sent on again (another had sent it there): it is answered where it lands. */
const PASSED_ON = 'infergate-passed-on-by';
/** The header a gateway of the fleet proves itself with (server.fleet.secret). */
export const FLEET_SECRET = 'infergate-fleet-secret';

/** Makes the id of something a gateway keeps (a response, a conversation, a file, a batch), `prefix_` then hex. */
export type NewId = (prefix: string) => string;
/** A random id, `prefix_` then 24 hex digits (what a gateway outside a fleet makes). */
export const randomId: NewId = (prefix) => `${prefix}_${randomBytes(12).toString('hex')}`;

/**
 * Several gateways behind one load balancer (server.fleet), each keeping what it made in its own memory (and
 * batch_dir): kept and background responses, conversations, asynchronous calls, files and batches. Every id one
 * makes starts with its token (8 hex digits of its own URL's hash), so any gateway of the fleet knows whose it is,
 * and a request about another's — by path (GET /v1/responses/{id}, /v2/calls/{id} …) or by body
 * (`previous_response_id`, `conversation`, `input_file_id`) — is sent on to that gateway and answered from there,
 * streams too. Only the fleet's own URLs are ever called: a token no peer has is this gateway's to answer (a 404).
 */
export class Fleet {
  /** This gateway's token: the first hex digits of every id it makes. */
  readonly token: string;
  /** The other gateways by token. */
  private peers = new Map<string, string>();
  private looked = 0;
  private looking?: Promise<void>;
  private timer?: NodeJS.Timeout;
  private readonly discovery?: { find: () => Promise<string[]>; everyMs: number };
  private readonly connections = new KeptAlive();
  /** This gateway is stopping: the sequences it held are handed on, and their requests go to their next holders. */
  private leaving = false;

  constructor(
    /** How the others reach this gateway. */
    readonly self: string,
    /** The gateways of the fleet (this one too), or how to find them now (by DNS), then every `everyMs`. */
    peers: readonly string[] | { find: () => Promise<string[]>; everyMs: number },
    /** Told of each request sent on: to whom, and what it answered (`unreachable`: nothing). */
    private readonly sent: (peer: string, status: number | 'unreachable') => void = () => {},
    /** What the gateways prove themselves to each other with (server.fleet.secret). */
    private readonly secret?: string,
  ) {
    this.token = tokenOf(self);
    if (isDiscovery(peers)) this.discovery = peers;
    else this.know(peers);
  }

  /** With discovery: finds the gateways now, then again every everyMs (a lookup that fails keeps those known). */
  async start(failed: (err: Error) => void = () => {}): Promise<void> {
    if (!this.discovery) return;
    const look = () => this.lookAgain().catch(failed);
    await look();
    this.timer = setInterval(look, this.discovery.everyMs).unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.connections.close();
  }

  /**
   * GET /admin/fleet: this gateway, and each other known now with whether it answers ready (its /v2/health/ready
   * within 2 s) and how long that took — what an operator checks when ids of one gateway are not found from another.
   */
  async status(): Promise<object> {
    const peers = await Promise.all(
      this.known().map(async (url) => {
        const start = performance.now();
        const ready = await fetch(`${url}/v2/health/ready`, { signal: AbortSignal.timeout(2000) }).then(
          async (res) => {
            await res.body?.cancel();
            return res.ok;
          },
          () => false,
        );
        return { url, token: tokenOf(url), ready, ms: Math.round((performance.now() - start) * 10) / 10 };
      }),
    );
    return { self: base(this.self), token: this.token, discovered: this.discovery !== undefined, peers };
  }

  /**
   * This gateway is stopping (before its drain): it ranks itself last for every sequence, and a request of one sent
   * here by a gateway that does not know yet goes on to the next holder (see passesOn).
   */
  leave(): void {
    this.leaving = true;
  }

  /** Whether this gateway is stopping (see leave). */
  get isLeaving(): boolean {
    return this.leaving;
  }

  /**
   * Whether a request of a sequence may be sent on from here: a client's, or — this gateway stopping — one another
   * gateway sent here before it knew (once: a request sent on twice is answered where it lands).
   */
  passesOn(c: Context): boolean {
    return !forwarded(c) || (this.leaving && c.req.header(PASSED_ON) === undefined);
  }

  /**
   * The gateway that holds `key` (a stateful model's sequence): of this one and those known, the one the key's hash
   * ranks first (rendezvous hashing: every gateway of the fleet picks the same; one joining or leaving moves only its
   * share). Undefined when it is this one.
   */
  holderOf(key: string): string | undefined {
    const first = this.ranked(key)[0];
    return first === base(this.self) ? undefined : first;
  }

  /**
   * This gateway and those known, by how `key`'s hash ranks them: who holds it, then who would were that one gone,
   * and so on (`others`: this one left out). A stopping gateway ranks itself last.
   */
  ranked(key: string, { others = false } = {}): string[] {
    const rank = (url: string) => createHash('sha256').update(key).update('\0').update(url).digest().readBigUInt64BE();
    const self = base(this.self);
    const all = [...(others || this.leaving ? [] : [self]), ...this.known()]
      .map((url) => ({ url, rank: rank(url) }))
      .sort((x, y) => (x.rank > y.rank ? -1 : x.rank < y.rank ? 1 : 0))
      .map(({ url }) => url);
    return this.leaving && !others ? [...all, self] : all;
  }

  /**
   * A request of `key` (a sequence) sent on to the gateway that holds it: its answer, or undefined where that is this
   * one. With the fleet's secret, a gateway that cannot be connected to (stopped, restarting) is passed over for the
   * next in the key's ranking — where a stopping gateway hands its sequences; without it, a 503 naming it.
   */
  async toHolder(c: Context<GatewayEnv>, key: string, what: string, body: Uint8Array<ArrayBuffer>): Promise<Response | undefined> {
    for (const url of this.ranked(key)) {
      if (url === base(this.self)) return undefined;
      try {
        return await this.forward(c, url, what, body);
      } catch (err) {
        if (!this.secret || !NOT_CONNECTED.includes(((err as Error).cause as { code?: string } | undefined)?.code ?? '')) throw err;
      }
    }
    return undefined;
  }

  /** Whether the gateways prove themselves to each other (server.fleet.secret): what they hand each other needs it. */
  get hasSecret(): boolean {
    return this.secret !== undefined;
  }

  /** The gateways known now, this one left out. */
  known(): string[] {
    return [...this.peers.values()];
  }

  private know(peers: readonly string[]): void {
    this.peers = new Map(peers.filter((peer) => tokenOf(peer) !== this.token).map((peer) => [tokenOf(peer), base(peer)]));
  }

  private lookAgain(): Promise<void> {
    this.looking ??= (async () => {
      try {
        this.know(await (this.discovery as NonNullable<Fleet['discovery']>).find());
        this.looked = Date.now();
      } finally {
        this.looking = undefined;
      }
    })();
    return this.looking;
  }

  /**
   * peerOf, where a gateway found by DNS may be newer than the last lookup: an id of a token not known sends the
   * fleet looking again first (at most once a second).
   */
  async peerOfNow(id: unknown): Promise<string | undefined> {
    const known = this.peerOf(id);
    if (known || !this.discovery || typeof id !== 'string' || Date.now() - this.looked < 1000) return known;
    await this.lookAgain().catch(() => {});
    return this.peerOf(id);
  }

  /** A request from another gateway of the fleet, proven by the fleet's secret (a client's claim to be one is not). */
  fromPeer(c: Context): boolean {
    const given = c.req.header(FLEET_SECRET);
    return this.secret !== undefined && given !== undefined && sameSecret(this.secret, given);
  }

  /** A request another gateway of the fleet let in and sent on (its limits were spent there). */
  vouchedFor(c: Context): boolean {
    return forwarded(c) && this.fromPeer(c);
  }

  /** POSTs JSON to another gateway of the fleet, with the fleet's secret: the status it answered. */
  async post(peer: string, path: string, body: string): Promise<number> {
    return (await this.exchange(peer, path, body)).status;
  }

  /** POSTs JSON to another gateway of the fleet, with the fleet's secret: the status and body it answered. */
  async exchange(peer: string, path: string, body: string): Promise<{ status: number; body: string }> {
    const headers = { 'content-type': 'application/json', ...(this.secret && { [FLEET_SECRET]: this.secret }) };
    const res = await this.connections.send(new URL(path, peer), { method: 'POST', headers, timeout: 5000, connectTimeoutMs: CONNECT_MS }, body);
    res.setEncoding('utf8');
    let text = '';
    for await (const chunk of res) text += chunk;
    return { status: res.statusCode ?? 0, body: text };
  }

  readonly newId: NewId = (prefix) => `${prefix}_${this.token}${randomBytes(12).toString('hex')}`;

  /** A call's id: a UUID whose first group is this gateway's token. */
  newUuid(): string {
    return this.token + randomUUID().slice(this.token.length);
  }

  /** The URL of the gateway that made `id`, when another of the fleet did. */
  peerOf(id: unknown): string | undefined {
    if (typeof id !== 'string') return undefined;
    return this.peers.get(id.slice(id.lastIndexOf('_') + 1, id.lastIndexOf('_') + 1 + this.token.length));
  }

  /** The other gateways' answers to this list request (path and query as asked; every item, where it pages), their `data` together. */
  async lists(c: Context<GatewayEnv>): Promise<unknown[]> {
    const url = new URL(c.req.url);
    for (const cursor of ['after_id', 'before_id', 'after', 'order']) url.searchParams.delete(cursor);
    url.searchParams.set('limit', '1000'); // (a gateway answers a fleet's ask whole — see pageSize — this for older ones)
    const lists = this.known().map(async (peer) => {
      const res = await this.forward(c, peer, 'part of this list', undefined, `${url.pathname}${url.search}`);
      if (!res.ok) {
        await res.body?.cancel();
        throw new GatewayError(503, 'peer_unavailable', `the gateway at ${peer} answered ${res.status} for its part of this list`, { retryAfterS: 1 });
      }
      return ((await res.json()) as { data: unknown[] }).data;
    });
    return (await Promise.all(lists)).flat();
  }

  /**
   * Sends the request on to `peer` as it came (its method, path, query and credentials; `body`, or its own) and
   * answers what the peer answers, a stream as it comes. A peer that cannot be reached: a 503 naming it.
   */
  async forward(c: Context<GatewayEnv>, peer: string, what: string, body?: Uint8Array<ArrayBuffer> | string, path?: string): Promise<Response> {
    const url = new URL(path ?? c.req.url, 'http://x');
    const target = new URL(`${peer}${url.pathname}${url.search}`);
    const headers: Record<string, string> = {};
    c.req.raw.headers.forEach((value, name) => {
      if (!HOP_BY_HOP.includes(name)) headers[name] = value;
    });
    if (forwarded(c)) headers[PASSED_ON] = this.token; // (sent on a second time, by a stopping gateway)
    headers[FORWARDED] = this.token;
    headers['x-request-id'] = c.get('requestId');
    // (with the fleet's secret the peer knows the request was let in here: its request was spent here, not again there)
    if (this.secret) headers[FLEET_SECRET] = this.secret;
    else delete headers[FLEET_SECRET];
    if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body));
    let res: IncomingMessage;
    try {
      res = await this.connections.send(target, { method: c.req.method, headers, signal: clientSignal(c), connectTimeoutMs: CONNECT_MS }, body);
    } catch (err) {
      this.sent(peer, 'unreachable');
      throw new GatewayError(503, 'peer_unavailable', `${what} is kept by the gateway at ${peer}, which did not answer: ${(err as Error).message}`, {
        retryAfterS: 1,
        cause: err,
      });
    }
    const status = res.statusCode ?? 502;
    this.sent(peer, status);
    const answer = new Headers();
    for (let i = 0; i < res.rawHeaders.length; i += 2)
      if (!HOP_BY_HOP.includes(res.rawHeaders[i].toLowerCase())) answer.append(res.rawHeaders[i], res.rawHeaders[i + 1]);
    if (status === 204 || status === 304 || c.req.method === 'HEAD') return new Response(null, { status, headers: answer });
    // A small answer whole (the server writes it at once); a stream (tokens, a file's content) as it comes.
    const length = Number(res.headers['content-length'] ?? Number.POSITIVE_INFINITY);
    if (length <= WHOLE_MAX_BYTES) {
      const chunks: Buffer[] = [];
      for await (const chunk of res) chunks.push(chunk as Buffer);
      return new Response(Buffer.concat(chunks), { status, headers: answer });
    }
    return new Response(Readable.toWeb(res) as ReadableStream<Uint8Array>, { status, headers: answer });
  }
}

/**
 * A list of what the caller has (its files, its batches): this gateway's `own` and every other's (the same
 * request sent on: each answers its own), newest first. A gateway that cannot be reached fails it (a 503): a
 * list without its part would look whole.
 */
export async function fleetList<T extends { created_at: number | string | null }>(c: Context<GatewayEnv>, fleet: Fleet | undefined, own: T[]): Promise<T[]> {
  const theirs = fleet && !forwarded(c) ? await fleet.lists(c) : [];
  const at = (x: T) => x.created_at ?? 0;
  return [...own, ...(theirs as T[])].sort((a, b) => (at(a) < at(b) ? 1 : at(a) > at(b) ? -1 : 0));
}

const isDiscovery = (peers: readonly string[] | { find: () => Promise<string[]> }): peers is { find: () => Promise<string[]>; everyMs: number } =>
  !Array.isArray(peers);

/** Errors of a connection never made: the request cannot have reached the gateway (and may go to another). */
const NOT_CONNECTED = ['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', CONNECT_TIMEOUT];
/** A gateway of the fleet that does not take a connection within this is unreachable (a machine gone, its address blackholed). */
const CONNECT_MS = 2000;

/** Answers up to this size (by their Content-Length) are read whole before they go on. */
const WHOLE_MAX_BYTES = 1 << 20;

/** Headers of one connection, not of the request: not sent on. */
const HOP_BY_HOP = ['host', 'connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'content-length', 'accept-encoding'];

const base = (url: string) => url.replace(/\/+$/, '');
const tokenOf = (url: string) => createHash('sha256').update(base(url)).digest('hex').slice(0, 8);

/** Routes about one kept thing, by the id in their path, and what each names it in an error. */
const BY_PATH: [RegExp, string][] = [
  [/^\/v1\/responses\/([^/]+)/, 'response'],
  [/^\/v1\/conversations\/([^/]+)/, 'conversation'],
  [/^\/v2\/calls\/([^/]+)/, 'call'],
  [/^\/v1\/files\/([^/]+)/, 'file'],
  [/^\/v1\/batches\/([^/]+)/, 'batch'],
  [/^\/v1\/messages\/batches\/([^/]+)/, 'message batch'],
];

/** The request's body, its own copy (the one read goes back to its pool). */
async function bodyOf(c: Context, limit: number): Promise<Uint8Array<ArrayBuffer>> {
  const body = await readBody(c, limit);
  const bytes = body.slice();
  releaseBody(body);
  return bytes;
}

/** Whether this request came from another gateway of the fleet (it is answered here, whatever it names). */
export const forwarded = (c: Context): boolean => c.req.header(FORWARDED) !== undefined;

/** A list page's size: the caller's, or for another gateway of the fleet asking for its part, all of it (it pages). */
export const pageSize = (c: Context, limit: number): number => (forwarded(c) ? Number.MAX_SAFE_INTEGER : limit);

/** Sends a request about another gateway's kept thing, named in its path, on to that gateway. */
export function forwardByPath(fleet: Fleet, maxBodyBytes: number): MiddlewareHandler<GatewayEnv> {
  return async (c, next) => {
    if (!forwarded(c))
      for (const [pattern, what] of BY_PATH) {
        const id = pattern.exec(c.req.path)?.[1];
        const peer = id === undefined ? undefined : await fleet.peerOfNow(id);
        if (peer) return fleet.forward(c, peer, `${what} ${id}`, c.req.method === 'POST' ? await bodyOf(c, maxBodyBytes) : undefined);
      }
    await next();
  };
}

/**
 * A request whose body names another gateway's kept thing (`id`): sent on to that gateway with `body` (the JSON
 * as read), to be answered there; undefined when it is this gateway's to answer.
 */
export async function forwardByBody(c: Context<GatewayEnv>, fleet: Fleet | undefined, id: unknown, what: string, body: unknown): Promise<Response | undefined> {
  // (a Batch API line carries no credentials to send on — its caller is the batch's: answered here, a 404)
  const batchLine = (c.env as { infergateBatch?: unknown } | undefined)?.infergateBatch !== undefined;
  const peer = fleet && id !== undefined && !forwarded(c) && !batchLine ? await fleet.peerOfNow(id) : undefined;
  return peer ? (fleet as Fleet).forward(c, peer, `${what} ${id}`, JSON.stringify(body)) : undefined;
}
