import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/index.js';
import { MODELS, startFleet, type startTestGateway } from './helpers.js';

// Per-caller limits kept fleet-wide (server.fleet.shared_limits): two real gateways, each telling the other what
// each caller spent. A caller with six requests (bursts of 6, refilling once in ~17 minutes) gets six in all.
const FLEET_SECRET = 'the-fleet-shares-this-secret';
const KEYS = { app: 'a-long-enough-shared-secret', other: 'another-long-enough-secret', third: 'a-third-long-enough-secret' };
type Gateway = Awaited<ReturnType<typeof startTestGateway>>;
let a: Gateway;
let b: Gateway;
beforeAll(async () => {
  const { gateways } = await startFleet(2, (self, urls) => ({
    server: { port: Number(new URL(self).port), fleet: { self, peers: urls, secret: FLEET_SECRET, shared_limits: { every_ms: 50 } } },
    auth: { default: 'key', keys: Object.entries(KEYS).map(([id, secret]) => ({ id, secret })), rate_limit: { per_second: 0.006, burst: 6 } },
    models: { identity: { path: `${MODELS}identity.onnx`, device: 'cpu', scaling: { min_containers: 1 } } },
  }));
  [a, b] = gateways;
});
afterAll(async () => {
  await a?.shutdown();
  await b?.shutdown();
});

const infer = (g: Gateway, key = KEYS.app) =>
  fetch(`${g.url}/v2/models/identity/infer`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}` },
    body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 2], datatype: 'FP32', data: [1, 2] }] }),
  }).then(async (res) => {
    await res.body?.cancel();
    return res.status;
  });
const told = () => new Promise((r) => setTimeout(r, 300)); // several of the gateways' 50 ms intervals

describe('per-caller limits shared by a fleet (server.fleet.shared_limits)', () => {
  it('give a caller its limit once across the gateways, not once on each: what it spent on one is taken on the other', async () => {
    expect([await infer(a), await infer(a), await infer(a), await infer(a)]).toEqual([200, 200, 200, 200]);
    await told();
    // B heard of A's four: two are left.
    expect([await infer(b), await infer(b), await infer(b)]).toEqual([200, 200, 429]);
    await told();
    expect(await infer(a)).toBe(429); // and A of B's two
    // Another caller's bucket is its own.
    expect(await infer(b, KEYS.other)).toBe(200);
    // /metrics counts the tellings: A told B, none failed.
    const metrics = await (await fetch(`${a.url}/metrics`)).text();
    const tellings = (result: string) =>
      Number(metrics.match(new RegExp(`^infergate_fleet_limits_told_total\\{[^}]*result="${result}"[^}]*\\} (\\d+)$`, 'm'))?.[1] ?? 0);
    expect(tellings('told')).toBeGreaterThan(0);
    expect(tellings('failed')).toBe(0);
  });

  it('takes spends only from the fleet: a request without its secret is refused (401) and changes nothing', async () => {
    const spend = (secret: string) =>
      fetch(`${a.url}/fleet/limits`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'infergate-fleet-secret': secret },
        body: JSON.stringify({ spent: { 'auth.requests': { 'key:other': 100 } } }),
      });
    expect((await spend('not-the-fleets-secret-at-all')).status).toBe(401);
    expect(await infer(a, KEYS.other)).toBe(200);
    expect((await spend(FLEET_SECRET)).status).toBe(204);
    expect(await infer(a, KEYS.other)).toBe(429);
  });

  it('counts a request one gateway sends on to another once: there it was let in by the fleet, not the client', async () => {
    const headers = { authorization: `Bearer ${KEYS.third}` };
    const sent = await fetch(`${a.url}/v2/models/identity/infer`, {
      method: 'POST',
      headers: { ...headers, prefer: 'respond-async' },
      body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 2], datatype: 'FP32', data: [1, 2] }] }),
    });
    expect(sent.status).toBe(202);
    const { id } = (await sent.json()) as { id: string };
    await told(); // (its answer ready by then: identity answers at once)
    const collected = await fetch(`${b.url}/v2/calls/${id}`, { headers }); // A's call: B sends it on to A
    expect(collected.status).toBe(200);
    await told();
    // Two of six spent (the call on A, its collection on B, not again on A): four are left.
    const five = [];
    for (let i = 0; i < 5; i++) five.push(await infer(a, KEYS.third));
    expect(five).toEqual([200, 200, 200, 200, 429]);
    // A client claiming to be the fleet is counted as any client.
    const forged = await fetch(`${a.url}/v2/models/identity/infer`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEYS.third}`, 'infergate-forwarded-by': 'ffffffff', 'infergate-fleet-secret': 'not-the-fleets-secret-at-all' },
      body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 2], datatype: 'FP32', data: [1, 2] }] }),
    });
    expect(forged.status).toBe(429);
  });

  it('needs the secret the fleet shares: server.fleet.secret or $INFERGATE_FLEET_SECRET', async () => {
    const file = join(await mkdtemp(join(tmpdir(), 'infergate-fleet-')), 'config.yaml');
    await writeFile(
      file,
      `server:\n  fleet: { self: http://gw-0:8080, peers: [http://gw-0:8080, http://gw-1:8080], shared_limits: {} }\nmodels:\n  m: { path: ${MODELS}identity.onnx }\n`,
    );
    await expect(loadConfig(file, {})).rejects.toThrow('server.fleet.shared_limits: the gateways need the secret the fleet shares');
    const config = await loadConfig(file, { INFERGATE_FLEET_SECRET: FLEET_SECRET });
    expect(config.server.fleet).toMatchObject({ secret: FLEET_SECRET, shared_limits: { every_ms: 250 } });
    await expect(loadConfig(file, { INFERGATE_FLEET_SECRET: 'short' })).rejects.toThrow('at least 16 characters');
  });
});
