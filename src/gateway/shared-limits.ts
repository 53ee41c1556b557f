import { Hono } from 'hono';
import { badInput, GatewayError } from '../errors/index.js';
import type { RateLimiter } from './auth/rate-limit.js';
import { readJson } from './body.js';
import { FLEET_SECRET, type Fleet } from './fleet.js';
import type { GatewayEnv } from './types.js';

type Spent = Record<string, Record<string, number>>; // limiter's name → caller → tokens (given back: negative)

/**
 * Per-caller rate limits kept fleet-wide (server.fleet.shared_limits): every `everyMs` each gateway tells the others
 * what each caller spent from each limit there, and they take it from their own buckets of that caller. A caller a
 * load balancer spreads over N gateways gets its limit once, not N times — within what it can spend in one interval
 * before the others hear of it. (Gubernator's and Envoy's global limits keep one count apart; here the gateways
 * already know each other, and no other service is needed.)
 */
export class SharedLimits {
  private readonly limiters = new Map<string, RateLimiter>();
  private spent = new Map<string, Map<string, number>>();
  private timer?: NodeJS.Timeout;

  constructor(
    /** The gateways told, over its connections and with its secret (server.fleet.secret). */
    private readonly fleet: Fleet,
    private readonly everyMs: number,
    /** Told how each telling went: a gateway not told misses this interval's spends (its limits run loose by as much). */
    private readonly told: (peer: string, err?: Error) => void = () => {},
  ) {}

  /** A limiter whose spends the fleet hears of, under the name every gateway gives it (they share one config). */
  share(name: string, limiter: RateLimiter): void {
    this.limiters.set(name, limiter);
    limiter.onSpend = (key, n) => {
      const spends = this.spent.get(name) ?? this.spent.set(name, new Map()).get(name);
      spends?.set(key, (spends.get(key) ?? 0) + n);
    };
  }

  start(): void {
    this.timer ??= setInterval(() => void this.tell(), this.everyMs).unref();
  }

  /** Tells what was spent since the last time (the gateway stopping: once more). */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.tell();
  }

  /** Sends what was spent since the last time to every other gateway. */
  async tell(): Promise<void> {
    if (this.spent.size === 0) return;
    const spent: Spent = Object.fromEntries([...this.spent].map(([name, keys]) => [name, Object.fromEntries(keys)]));
    this.spent = new Map();
    const body = JSON.stringify({ spent });
    await Promise.all(
      this.fleet.known().map(async (peer) => {
        try {
          const status = await this.fleet.post(peer, '/fleet/limits', body);
          if (status !== 204) throw new Error(`it answered ${status}`);
          this.told(peer);
        } catch (err) {
          this.told(peer, err as Error);
        }
      }),
    );
  }

  /** What another gateway spent, taken here. */
  private charge(spent: Spent): void {
    for (const [name, keys] of Object.entries(spent)) {
      const limiter = this.limiters.get(name);
      if (limiter && typeof keys === 'object' && keys !== null)
        for (const [key, n] of Object.entries(keys)) if (typeof n === 'number' && Number.isFinite(n)) limiter.charge(key, n);
    }
  }

  /** POST /fleet/limits: another gateway's spends (no client's credentials: the fleet's secret). */
  static routes(shared: SharedLimits | undefined): Hono<GatewayEnv> {
    const app = new Hono<GatewayEnv>();
    app.post('/fleet/limits', async (c) => {
      if (!shared) throw new GatewayError(404, 'not_found', 'this gateway shares no limits with a fleet (server.fleet.shared_limits)');
      // (the secret first: a body is read only from a gateway of the fleet)
      if (!shared.fleet.fromPeer(c)) throw new GatewayError(401, 'unauthorized', `unauthorized: send this fleet's ${FLEET_SECRET}`);
      const body = (await readJson(c, 16 * 2 ** 20)) as { spent?: unknown };
      if (typeof body?.spent !== 'object' || body.spent === null) throw badInput('expected {"spent": {limit: {caller: n}}}');
      shared.charge(body.spent as Spent);
      return c.body(null, 204);
    });
    return app;
  }
}
