import { once } from 'node:events';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { type IncomingMessage, request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, parseConfig } from '../src/config/index.js';
import { fleetFindings } from '../src/doctor.js';
import { Fleet } from '../src/gateway/fleet.js';
import { cli, freePort, MODELS, SILERO_VAD, startFleet, startTestGateway } from './helpers.js';

// A stateful model's sequences in a fleet whose gateways share a secret: a sequence moves with its state when the
// gateway holding it stops, and back when it returns — where, without the secret, its state was lost. Two real
// gateways, silero VAD (its state carried from each request to the next).
const SECRET = 'the-fleet-shares-this-secret';
const vad = SILERO_VAD;
type Gateway = Awaited<ReturnType<typeof startTestGateway>>;
let urls: string[];
let a: Gateway;
let b: Gateway;
const raw = (self: string, all: string[]) => ({
  server: { port: Number(new URL(self).port), fleet: { self, peers: all, secret: SECRET } },
  // (public, each client by its address: a rate limit per address)
  auth: { default: 'public', rate_limit: { per_second: 1000, burst: 1000 } },
  models: { vad },
});
beforeAll(async () => {
  ({
    urls,
    gateways: [a, b],
  } = await startFleet(2, raw));
});
afterAll(async () => {
  await a?.shutdown();
  await b?.shutdown();
});

const windows = [1, 2, 3, 4].map((k) => Array.from({ length: 576 }, (_, i) => Math.sin(i * k * 0.05) * 0.3));
/** Step `i` of sequence `id` to gateway `g` (from the client address `from`), its body not sent yet: the speech probability answered. */
const stepRequest = (g: Gateway, id: string, i: number, from = '127.0.0.1', headers: Record<string, string> = {}) => {
  const body = JSON.stringify({
    inputs: [{ name: 'input', shape: [1, 576], datatype: 'FP32', data: windows[i] }],
    parameters: { sequence_id: id, sequence_start: i === 0 },
  });
  const req = request(new URL(`${g.url}/v2/models/vad/infer`), { method: 'POST', localAddress: from, headers });
  const answer = new Promise<number>((resolve, reject) => {
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (chunk) => (text += chunk));
      res.on('end', () =>
        res.statusCode === 200 ? resolve(JSON.parse(text).outputs[0].data[0]) : reject(new Error(`${id} step ${i}: ${res.statusCode} ${text}`)),
      );
    });
    req.on('error', reject);
  });
  return { req, body, answer };
};
/** Step `i` of sequence `id` sent to gateway `g` (from the client address `from`): the speech probability answered. */
const step = (g: Gateway, id: string, i: number, from = '127.0.0.1') => {
  const { req, body, answer } = stepRequest(g, id, i, from);
  req.end(body);
  return answer;
};
/** A sequence's four steps on one gateway, which holds it. */
const straight = async (prefix: string) => {
  const out = [];
  for (const i of [0, 1, 2, 3]) out.push(await step(a, heldBy(urls[0], prefix), i));
  return out;
};
/** Whether a gateway takes a connection now. */
const connects = (url: string) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(Number(new URL(url).port), '127.0.0.1');
    socket.once('connect', () => resolve(true)).once('error', () => resolve(false));
    socket.once('connect', () => socket.destroy());
  });
/** Which gateway holds a public sequence (every gateway ranks them alike). */
const holder = (id: string) => new Fleet(urls[0], urls).holderOf(`vad\0\0${id}`) ?? urls[0];
const heldBy = (url: string, prefix: string) => Array.from({ length: 40 }, (_, i) => `${prefix}${i}`).find((id) => holder(id) === url) as string;
const taken = async (g: Gateway, peer: string, how: string) => {
  const metrics = await (await fetch(`${g.url}/metrics`)).text();
  const line = new RegExp(`^infergate_fleet_sequences_taken_total\\{(?=[^}]*how="${how}")(?=[^}]*peer="${peer}")[^}]*\\} (\\d+)$`, 'm');
  return Number(metrics.match(line)?.[1] ?? 0);
};

describe("a fleet's sequences moved with their state (server.fleet with its secret)", () => {
  it("places a public sequence by its id alone, whichever address its requests come from (a load balancer's several)", async () => {
    // (under the client's address, requests of one sequence from two addresses went to different gateways)
    const expected = await straight('straight-again-');
    const asked = async () => (await taken(a, urls[1], 'asked')) + (await taken(b, urls[0], 'asked'));
    const before = await asked();
    for (const id of ['public-0', 'public-1', 'public-2', 'public-3']) {
      const out = [];
      for (const i of [0, 1, 2, 3]) out.push(await step(i % 2 ? b : a, id, i, i < 2 ? '127.0.0.1' : '127.0.0.2'));
      expect(out).toEqual(expected);
    }
    expect(await asked()).toBe(before); // (each stayed on its gateway: none had to be asked for)
  });

  it('keep their state through a restart of the gateway holding them: handed over as it stops, asked back as it returns', async () => {
    const expected = await straight('straight-');
    const id = heldBy(urls[1], 'restart-');
    const steps = [await step(a, id, 0), await step(a, id, 1)]; // (sent on to B, which holds it)
    const kept = (await (await fetch(`${b.url}/v2/models/vad/stats`)).json()).sequences; // (the earlier tests' too)
    expect(kept).toBeGreaterThan(0);
    await b.shutdown(); // B hands them to A, the next in their ranking…
    expect(await taken(a, urls[1], 'handed')).toBe(kept);
    steps.push(await step(a, id, 2)); // …where its requests go while B cannot be reached
    b = await startTestGateway(raw(urls[1], urls));
    steps.push(await step(a, id, 3)); // B holds it again: it asks A for it, and goes on from A's state
    expect(steps).toEqual(expected);
    expect(await taken(b, urls[0], 'asked')).toBe(1);
  });

  it("keeps a stopping gateway's sequences going through its drain: handed on before its listener closes", async () => {
    const expected = await straight('straight-drain-');
    const id = heldBy(urls[1], 'drain-');
    const steps = [await step(a, id, 0), await step(a, id, 1)]; // (sent on to B, which holds it)
    // Its next step sent to B itself and held there (B reading its body), and another request held to the end: B's
    // drain lasts until both are answered.
    const held = stepRequest(b, id, 2, '127.0.0.1', { expect: '100-continue' });
    const holding = stepRequest(b, 'another', 0, '127.0.0.1', { expect: '100-continue' });
    // (and a gateway handing B sequences: a gateway stopping takes none, or they would wait out its drain there)
    const handing = request(new URL(`${b.url}/fleet/sequences`), { method: 'POST', headers: { expect: '100-continue', 'infergate-fleet-secret': SECRET } });
    for (const req of [held.req, holding.req, handing]) req.flushHeaders();
    await Promise.all([held.req, holding.req, handing].map((req) => once(req, 'continue')));
    holding.answer.catch(() => {}); // (never answered: cut at the end)
    const stopping = b.shutdown();
    try {
      while (await connects(b.url)) await new Promise((r) => setTimeout(r, 10)); // B drains: it takes no connection
      held.req.end(held.body); // B, stopping, sends it on to A, which B handed the sequence to…
      steps.push(await held.answer);
      steps.push(await step(a, id, 3)); // …and A has it still
      expect(steps).toEqual(expected);
      handing.end(JSON.stringify({ from: urls[0], sequences: [] }));
      const [refused] = (await once(handing, 'response')) as [IncomingMessage];
      expect(refused.statusCode).toBe(503);
    } finally {
      for (const req of [held.req, holding.req, handing]) req.destroy();
      await stopping;
      b = await startTestGateway(raw(urls[1], urls));
    }
  });

  it('a copy left on a gateway from before its sequence started again elsewhere gives way to the one handed to it', async () => {
    const expected = await straight('straight-stale-');
    const id = heldBy(urls[1], 'stale-');
    await b.shutdown();
    for (const i of [0, 1, 2, 3]) await step(a, id, i); // (A holds it while B is gone)
    b = await startTestGateway(raw(urls[1], urls));
    const steps = [await step(a, id, 0), await step(a, id, 1)]; // started again: on B now, A's copy left behind
    await b.shutdown(); // B hands it to A, where the older copy gives way
    steps.push(await step(a, id, 2), await step(a, id, 3));
    expect(steps).toEqual(expected);
    b = await startTestGateway(raw(urls[1], urls));
  });

  it('hands a sequence only to a gateway of the fleet: without its secret a 401, and the sequence goes on; states unlike the model refused', async () => {
    const id = heldBy(urls[0], 'guarded-');
    await step(a, id, 0);
    const post = (path: string, body: object, secret?: string) =>
      fetch(`${a.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(secret && { 'infergate-fleet-secret': secret }) },
        body: JSON.stringify(body),
      });
    for (const secret of [undefined, 'not-the-fleet-secret-at-all'])
      expect((await post('/fleet/sequences/take', { model: 'vad', id }, secret)).status).toBe(401);
    expect((await post('/fleet/sequences', { from: 'x', sequences: [] })).status).toBe(401);
    expect(await step(a, id, 1)).toBeTypeOf('number'); // (still kept by A)
    // From the fleet: one not kept is a 404; a handed state of the wrong shape is refused, nothing kept.
    expect((await post('/fleet/sequences/take', { model: 'vad', id: 'never-started' }, SECRET)).status).toBe(404);
    const wrong = { model: 'vad', id: 'wrong-shape', states: { state: { datatype: 'FP32', shape: [1, 2], data: 'AAAAAAAAAAA=' } } };
    const handed = await post('/fleet/sequences', { from: 'x', sequences: [wrong] }, SECRET);
    expect(await handed.json()).toEqual({ refused: 1 });
    await expect(step(a, 'wrong-shape', 1)).rejects.toThrow(/400/);
    // A gateway without a fleet's secret takes none.
    const alone = await startTestGateway({ models: { identity: { path: `${MODELS}identity.onnx`, device: 'cpu' } } });
    try {
      expect((await fetch(`${alone.url}/fleet/sequences/take`, { method: 'POST', body: '{}' })).status).toBe(404);
    } finally {
      await alone.shutdown();
    }
  });

  it("passes over a sequence's gateway whose machine is gone (its address takes no connection): served by the next", async () => {
    // An address whose backlog is full and whose process never accepts: connections to it hang, as to a machine gone.
    const blackhole = new Worker(
      `const { createServer } = require('node:net');
      const server = createServer().listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
        require('node:worker_threads').parentPort.postMessage(server.address().port);
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
      });`,
      { eval: true },
    );
    const port = await new Promise<number>((resolve) => blackhole.once('message', resolve));
    const filling = [connect(port, '127.0.0.1'), connect(port, '127.0.0.1')];
    await Promise.all(filling.map((socket) => once(socket, 'connect')));
    const gone = `http://127.0.0.1:${port}`;
    const self = `http://127.0.0.1:${await freePort()}`;
    const c = await startTestGateway(raw(self, [self, gone]));
    try {
      const id = Array.from({ length: 40 }, (_, i) => `gone-${i}`).find((x) => new Fleet(self, [self, gone]).holderOf(`vad\0\0${x}`) === gone) as string;
      const expected = await straight('straight-gone-');
      const steps = [];
      for (const i of [0, 1]) steps.push(await step(c, id, i)); // (each after the 2 s a connection may take)
      expect(steps).toEqual(expected.slice(0, 2));
    } finally {
      await c.shutdown();
      for (const socket of filling) socket.destroy();
      await blackhole.terminate();
    }
  });

  it("infergate doctor checks the fleet's other gateways: ready, and taking this fleet's secret", async () => {
    const self = `http://127.0.0.1:${await freePort()}`;
    const down = `http://127.0.0.1:${await freePort()}`;
    const findings = (secret: string) =>
      fleetFindings(parseConfig({ ...raw(self, [self, ...urls, down]), server: { fleet: { self, peers: [self, ...urls, down], secret } } }));
    const byPeer = (found: Awaited<ReturnType<typeof fleetFindings>>) => Object.fromEntries(found.map((f) => [f.check, [f.status, f.detail]]));
    expect(byPeer(await findings(SECRET))).toMatchObject({
      [`fleet ${urls[0]}`]: ['ok', "ready, and takes this fleet's secret"],
      [`fleet ${urls[1]}`]: ['ok', "ready, and takes this fleet's secret"],
      [`fleet ${down}`]: ['warn', expect.stringMatching(/^not ready/)],
    });
    expect(byPeer(await findings('a-secret-the-others-do-not-have'))).toMatchObject({
      [`fleet ${urls[0]}`]: ['fail', "ready, but refuses this fleet's secret: the gateways' secrets differ"],
    });
  });
});

describe('a fleet with sequence_backup', () => {
  it('a sequence whose gateway is killed (nothing handed over) goes on from its last answered request on the next gateway', async () => {
    const all = await Promise.all([freePort(), freePort()]).then((ports) => ports.map((p) => `http://127.0.0.1:${p}`));
    const backed = (self: string) => {
      const config = raw(self, all);
      return { ...config, server: { ...config.server, host: '127.0.0.1', fleet: { ...config.server.fleet, sequence_backup: true } } };
    };
    // B a process of its own, to be killed; A here.
    const file = join(await mkdtemp(join(tmpdir(), 'infergate-backup-')), 'b.json');
    await writeFile(file, JSON.stringify(backed(all[1])));
    const killed = cli(['serve', '-c', file]);
    const c = await startTestGateway(backed(all[0]));
    try {
      await expect
        .poll(
          () =>
            fetch(`${all[1]}/v2/health/ready`).then(
              (r) => r.ok,
              () => false,
            ),
          { timeout: 30_000, interval: 100 },
        )
        .toBe(true);
      const id = Array.from({ length: 40 }, (_, i) => `backed-${i}`).find((x) => new Fleet(all[0], all).holderOf(`vad\0\0${x}`) === all[1]) as string;
      const expected = await straight('straight-backed-');
      const steps = [await step(c, id, 0), await step(c, id, 1)]; // (answered by B, each backed up on A first)
      killed.kill('SIGKILL');
      await killed.exited;
      steps.push(await step(c, id, 2), await step(c, id, 3)); // (B refuses connections: A goes on from its copy)
      expect(steps).toEqual(expected);
      const metrics = await (await fetch(`${c.url}/metrics`)).text();
      expect(metrics).toMatch(new RegExp(`^infergate_fleet_sequence_backups_total\\{(?=[^}]*result="failed")(?=[^}]*peer="${all[1]}")[^}]*\\} [1-9]`, 'm'));
    } finally {
      killed.kill('SIGKILL');
      await c.shutdown();
    }
  });

  it("needs the fleet's secret: a config without it refused, loaded or given directly", async () => {
    const file = join(await mkdtemp(join(tmpdir(), 'infergate-backup-')), 'config.yaml');
    const fleet = { self: 'http://gw-0:8080', peers: ['http://gw-0:8080', 'http://gw-1:8080'], sequence_backup: true };
    await writeFile(file, JSON.stringify({ server: { fleet }, models: { vad } }));
    const refused = 'server.fleet.sequence_backup: the gateways need the secret the fleet shares';
    await expect(loadConfig(file, {})).rejects.toThrow(refused);
    expect((await loadConfig(file, { INFERGATE_FLEET_SECRET: SECRET })).server.fleet).toMatchObject({ sequence_backup: true });
    await expect(startTestGateway({ server: { fleet }, models: { vad } })).rejects.toThrow(refused);
  });
});
