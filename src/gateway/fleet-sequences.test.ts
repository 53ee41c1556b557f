import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { afterEach, describe, expect, it } from 'vitest';
import { type HeldSequence, Sequences, type SequencesOptions } from '../batcher/index.js';
import type { GatewayError } from '../errors/index.js';
import { Fleet } from './fleet.js';
import { FleetSequences } from './fleet-sequences.js';
import type { ServedModel } from './types.js';

const SECRET = 'the-fleet-shares-this-secret';
/** A model whose one state is a number, kept by a real store (a running sum's). */
function model(submit: SequencesOptions['submit'] = () => Promise.reject(new Error('not run here'))) {
  const store = new Sequences({
    model: 'm',
    states: [{ input: 's', output: 's_out', initial: () => ({ dtype: 'FP32', shape: [1, 1], data: new Float32Array(1) }) }],
    submit,
    idleMs: 60_000,
    maxSequences: 8,
  });
  const sequences = {
    states: [{ input: 's', output: 's_out', dtype: 'FP32', axis: 0, shape: [1, 1] }],
    has: (seq) => store.has(seq),
    handOver: (seq, signal) => store.handOver(seq, signal),
    takeOver: (held, opts) => store.takeOver(held, opts),
    handAll: () => store.handAll(),
    snapshot: (seq) => store.snapshot(seq),
    release: (seq) => store.release(seq),
  } as Partial<NonNullable<ServedModel['sequences']>>;
  return { store, served: { name: 'm', sequences } as ServedModel };
}
const copy = (value: number, startedAt: number, steps = 0) => ({
  id: 'a',
  states: { s: { dtype: 'FP32' as const, shape: [1, 1], data: Float32Array.from([value]) } },
  startedAt,
  steps,
});

/** A model's steps held until `answer()`: each adds 1 to the state (the last one submitted is the one answered). */
function heldSteps() {
  let release = () => {};
  const slow: SequencesOptions['submit'] = (inputs) =>
    new Promise((resolve) => {
      const s = inputs.s as { dtype: 'FP32'; shape: number[]; data: Float32Array };
      release = () => resolve({ outputs: { s_out: { ...s, data: s.data.map((v) => v + 1) } }, queueMs: 0, batchSize: 1 } as never);
    });
  return { slow, answer: () => release() };
}

let closing: (() => void)[] = [];
afterEach(() => {
  for (const close of closing) close();
  closing = [];
});

/** Gateways of one fleet serving only the routes that hand sequences over (real sockets, the fleet's own protocol). */
async function fleetOf(n: number, submit?: SequencesOptions['submit'], backedUp?: ConstructorParameters<typeof FleetSequences>[3]) {
  const servers = await Promise.all(
    Array.from({ length: n }, () => {
      const { store, served } = model(submit);
      let routes: ReturnType<typeof FleetSequences.routes> | undefined;
      const posts: string[] = []; // (the paths POSTed to it)
      const fetch = (req: Request) => {
        posts.push(new URL(req.url).pathname);
        return (routes as NonNullable<typeof routes>).fetch(req);
      };
      const server = serve({ fetch, port: 0, hostname: '127.0.0.1' });
      closing.push(() => server.close());
      return new Promise<{ url: string; store: Sequences; served: ServedModel; posts: string[]; serve(fs: FleetSequences): void }>((resolve) =>
        server.once('listening', () =>
          resolve({
            url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
            store,
            served,
            posts,
            serve: (fs) => {
              routes = FleetSequences.routes(fs);
              routes.onError((err, c) => c.json({ error: err.message }, ((err as GatewayError).status ?? 500) as 400));
            },
          }),
        ),
      );
    }),
  );
  const urls = servers.map((s) => s.url);
  return servers.map((s) => {
    const fleet = new Fleet(s.url, urls, undefined, SECRET);
    closing.push(() => fleet.stop());
    const fs = new FleetSequences(fleet, () => s.served, undefined, backedUp);
    s.serve(fs);
    return { ...s, fs };
  });
}

describe('FleetSequences', () => {
  it('asked for a sequence two gateways keep (one a copy left from before it started again), takes the later start', async () => {
    const [here, older, later] = await fleetOf(3);
    older.store.takeOver(copy(10, 1000));
    later.store.takeOver(copy(1, 2000));
    await here.fs.fetch(here.served, { id: 'a' });
    const held = await here.store.handOver({ id: 'a' });
    expect(held?.startedAt).toBe(2000);
    expect(held && (held.states.s.data as Float32Array)[0]).toBe(1);
    for (const other of [older, later]) expect(other.store.has({ id: 'a' })).toBe(false); // (both handed theirs: the copy is gone too)
  });

  it('keeps a sequence the gateway asking for it gave up waiting for (its queued step slow): not lost from both', async () => {
    const { slow, answer } = heldSteps();
    const [keeper] = await fleetOf(1, slow);
    keeper.store.takeOver(copy(1, 1000));
    const step = keeper.store.submit({ id: 'a', start: false, end: false }, {}); // (under way: the handing over waits for it)
    const req = request(new URL(`${keeper.url}/fleet/sequences/take`), { method: 'POST', headers: { 'infergate-fleet-secret': SECRET } });
    req.on('error', () => {});
    req.end(JSON.stringify({ model: 'm', id: 'a' }));
    await new Promise((r) => setTimeout(r, 50));
    req.destroy(); // (the asking gateway's wait ran out)
    await new Promise((r) => setTimeout(r, 50));
    answer();
    await step;
    expect(keeper.store.has({ id: 'a' })).toBe(true);
    expect((((await keeper.store.handOver({ id: 'a' })) as HeldSequence).states.s.data as Float32Array)[0]).toBe(2);
  });

  it('backs a sequence up on the next gateway of its ranking (further on only), drops it there once ended; one stopping keeps none', async () => {
    const results: string[] = [];
    const [one, two] = await fleetOf(2, undefined, (peer, result) => results.push(`${peer === one.url ? 'one' : 'two'} ${result}`));
    const value = () => ((two.store.snapshot({ id: 'a' }) as HeldSequence).states.s.data as Float32Array)[0];
    one.store.takeOver(copy(3, 1000, 4));
    await one.fs.backUp(one.served, { id: 'a' });
    expect(two.store.snapshot({ id: 'a' })).toMatchObject({ startedAt: 1000, steps: 4 });
    expect(value()).toBe(3);
    one.store.release({ id: 'a' });
    one.store.takeOver(copy(2, 1000, 3)); // (one not as far on as the backup's: that one stays)
    await one.fs.backUp(one.served, { id: 'a' });
    expect(value()).toBe(3);
    one.store.release({ id: 'a' }); // (ended here: dropped there)
    await one.fs.backUp(one.served, { id: 'a' });
    expect(two.store.has({ id: 'a' })).toBe(false);
    for (let i = 0; i < 8; i++) two.store.takeOver({ ...copy(0, 1000), id: `full-${i}` }); // (no room left there: refused)
    one.store.takeOver(copy(4, 1000, 1));
    await one.fs.backUp(one.served, { id: 'a' });
    expect(two.store.has({ id: 'a' })).toBe(false);
    for (let i = 0; i < 8; i++) two.store.release({ id: `full-${i}` });
    await two.fs.leave([]); // (stopping: it keeps none)
    await one.fs.backUp(one.served, { id: 'a' });
    expect(two.store.has({ id: 'a' })).toBe(false);
    expect(results).toEqual(['two ok', 'two ok', 'two ok', 'two refused', 'two failed']);
  });

  it('sends one copy at a time to a gateway: those that come meanwhile go together, each as it is when they go', async () => {
    const results: number[] = [];
    const [one, two] = await fleetOf(2, undefined, (_peer, _result, copies) => results.push(copies));
    const ids = Array.from({ length: 6 }, (_, i) => `s${i}`);
    for (const [i, id] of ids.entries()) one.store.takeOver({ ...copy(i, 1000, 1), id });
    await Promise.all(ids.map((id) => one.fs.backUp(one.served, { id })));
    expect(two.posts.filter((path) => path === '/fleet/sequences/backup')).toHaveLength(2); // (the first alone, the other 5 together)
    expect(results).toEqual([1, 5]);
    for (const [i, id] of ids.entries()) expect(((two.store.snapshot({ id }) as HeldSequence).states.s.data as Float32Array)[0]).toBe(i);
  });

  it('refuses what is not a sequence among those sent (a 200 counting it refused, not a 500), and bodies of the wrong shape (400)', async () => {
    const [one] = await fleetOf(1);
    const post = async (path: string, body: unknown) => {
      const res = await fetch(`${one.url}${path}`, { method: 'POST', headers: { 'infergate-fleet-secret': SECRET }, body: JSON.stringify(body) });
      return [res.status, await res.json()];
    };
    expect(await post('/fleet/sequences/backup', { sequences: [null, 5, { model: 'm' }], dropped: [null, 7] })).toEqual([200, { refused: 3 }]);
    expect(await post('/fleet/sequences', { from: 'x', sequences: [null, { id: 'a' }] })).toEqual([200, { refused: 2 }]);
    expect((await post('/fleet/sequences/backup', { sequences: 'no' }))[0]).toBe(400);
    for (const path of ['/fleet/sequences/take', '/fleet/sequences', '/fleet/sequences/backup']) expect((await post(path, null))[0]).toBe(400);
  });

  it('a stopping gateway hands each sequence on once its own queue is answered, not the slowest one', async () => {
    const { slow, answer } = heldSteps();
    const [one, two] = await fleetOf(2, slow);
    one.store.takeOver({ ...copy(1, 1000), id: 'busy' });
    one.store.takeOver({ ...copy(7, 1000), id: 'idle' });
    const step = one.store.submit({ id: 'busy', start: false, end: false }, {}); // (queued: its hand-over waits for it)
    const leaving = one.fs.leave([one.served]);
    await expect.poll(() => two.store.has({ id: 'idle' })).toBe(true); // (gone while busy's step is still under way)
    expect(two.store.has({ id: 'busy' })).toBe(false);
    answer();
    await step;
    expect(await leaving).toEqual({ handed: 2, lost: 0 });
    expect(((two.store.snapshot({ id: 'busy' }) as HeldSequence).states.s.data as Float32Array)[0]).toBe(2);
  });
});
