import { Hono } from 'hono';
import { furtherOn, type HeldSequence } from '../batcher/index.js';
import { badInput, GatewayError, unavailable } from '../errors/index.js';
import { bytesOf, bytesPerElement, elementCount, type Inputs, isDType, viewBytes } from '../tensor/index.js';
import { clientSignal, readJson } from './body.js';
import { FLEET_SECRET, type Fleet } from './fleet.js';
import type { GatewayEnv, ServedModel } from './types.js';

type Whose = Pick<HeldSequence, 'id' | 'owner'>;
/** A state as it travels between gateways: its bytes in base64 (a state is small: silero VAD's is 1 KB). */
type WireStates = Record<string, { datatype: string; shape: number[]; data: string }>;
/**
 * `started_at`: when it (last) started, ms since the epoch, and `steps`: requests answered since — of two copies, the
 * one further on goes on (missing: the earliest, none).
 */
type WireSequence = { model: string; id: string; owner?: string; states: WireStates; started_at?: number; steps?: number };
/** How a sequence's copy to its backup went (server.fleet.sequence_backup). */
export type BackupResult = 'ok' | 'refused' | 'failed';
/** A sequence to copy to its backup, as it is when the copies go. */
type Copy = { m: ServedModel; seq: Whose };
/** A sequence of a stopping gateway ready to go: itself, the gateways to try in turn, and what to do once it has gone. */
type Handed = { wire: WireSequence; next: string[]; done(): void };
/** The copies waiting for a gateway (`next`: they go together once the one in flight is answered). */
type CopyLine = { sending: boolean; next?: { copies: Map<string, Copy>; answered: Promise<boolean>; answer(ok: boolean): void } };

/** What places a sequence in a fleet: its model, its owner (sequences are their caller's own) and its id. */
export const sequenceKey = (model: string, seq: Whose): string => `${model}\0${seq.owner ?? ''}\0${seq.id}`;

/**
 * A stateful model's sequences kept across a change of the fleet's gateways (server.fleet with its secret). A
 * sequence lives on the gateway its key ranks first (Fleet.holderOf), and a gateway joining, leaving or restarting
 * changes that for its share of them — which lost their state before (their next request refused as not started).
 * Now a sequence moves with its state:
 * - a request of a sequence not kept here (not its start) asks the fleet's other gateways for it: the one keeping it
 *   hands it over once the requests it had queued are answered, and it goes on here (a gateway joined, or came back);
 * - a gateway stopping hands each sequence it keeps to the gateway that holds it once this one is gone: the next in
 *   its key's ranking that takes it — where the others send its requests while this one cannot be connected to
 *   (Fleet.toHolder). It does so before its drain (its listener closed then, for as long as its longest request),
 *   and ranks itself last from then on: a request that reaches it still is sent on to the new holder.
 * - with `sequence_backup`, a gateway that dies (killed, out of memory) loses no answered step either: each request's
 *   state is copied to the gateway next in its key's ranking before the answer goes (backUp).
 * Only a gateway of the fleet may take or hand over a sequence: the fleet's secret proves it.
 */
export class FleetSequences {
  /** Sequences being asked for, by key: a second request of one waits for the first's asking. */
  private readonly asking = new Map<string, Promise<void>>();
  /** Sequences being handed on from here (this gateway stopping), by key: until their next holders have them. */
  private readonly handingOn = new Map<string, Promise<unknown>>();
  /** Backups that failed lately, by gateway: passed over for a second (a gateway gone must not cost every step a try). */
  private readonly failedAt = new Map<string, number>();
  /** Copies on their way to each gateway (see copyTo). */
  private readonly copying = new Map<string, CopyLine>();

  constructor(
    private readonly fleet: Fleet,
    private readonly modelNamed: (name: string) => ServedModel | undefined,
    /** Told of each sequence taken here from another gateway: which, and whether asked for (`asked`) or handed at its stopping (`handed`). */
    private readonly taken: (peer: string, how: 'asked' | 'handed') => void = () => {},
    /** server.fleet.sequence_backup: told how copies to a backup went, and how many (absent: none is made). */
    private readonly backedUp?: (peer: string, result: BackupResult, copies: number) => void,
  ) {}

  /** Whether each request's state is copied to its sequence's backup (server.fleet.sequence_backup). */
  get backsUp(): boolean {
    return this.backedUp !== undefined;
  }

  /**
   * A request of a sequence answered here (not sent yet): its state copied to the gateway that would hold it were this
   * one gone — the next in its key's ranking that takes it — and an ended one dropped there. A gateway that then
   * dies without handing it over (killed, out of memory) loses none of the answered requests: the next request goes
   * there (Fleet.toHolder passes this one over), from the last answered state. A gateway that failed is passed over
   * for a second, and where none takes it the answer goes anyway (counted failed).
   */
  async backUp(m: ServedModel, seq: Whose): Promise<void> {
    const key = sequenceKey(m.name, seq);
    const now = performance.now();
    for (const peer of this.fleet.ranked(key, { others: true }))
      if (now - (this.failedAt.get(peer) ?? Number.NEGATIVE_INFINITY) >= 1000 && (await this.copyTo(peer, key, { m, seq }))) return;
  }

  /**
   * One request in flight to each gateway: the copies that come meanwhile wait and go together next, each as it is
   * when they go (a sequence's later request's state, where one was answered since) — many streams, few requests.
   * True once that gateway has answered.
   */
  private copyTo(peer: string, key: string, copy: Copy): Promise<boolean> {
    const line = this.copying.get(peer) ?? { sending: false };
    this.copying.set(peer, line);
    if (!line.next) {
      let answer = (_: boolean) => {};
      const answered = new Promise<boolean>((resolve) => (answer = resolve));
      line.next = { copies: new Map(), answered, answer };
    }
    line.next.copies.set(key, copy);
    const { answered } = line.next;
    if (!line.sending) void this.sendCopies(peer, line);
    return answered;
  }

  private async sendCopies(peer: string, line: CopyLine): Promise<void> {
    line.sending = true;
    for (let batch = line.next; batch; batch = line.next) {
      line.next = undefined;
      const sequences: WireSequence[] = [];
      const dropped: Omit<WireSequence, 'states'>[] = [];
      for (const { m, seq } of batch.copies.values()) {
        const held = m.sequences?.snapshot(seq);
        if (held) sequences.push(wireOf(m.name, held));
        else dropped.push({ model: m.name, id: seq.id, owner: seq.owner });
      }
      const res = await this.fleet.exchange(peer, '/fleet/sequences/backup', JSON.stringify({ sequences, dropped })).catch(() => undefined);
      if (res?.status === 200) {
        const refused = refusedIn(res.body);
        if (batch.copies.size > refused) this.backedUp?.(peer, 'ok', batch.copies.size - refused);
        if (refused > 0) this.backedUp?.(peer, 'refused', refused);
      } else {
        this.failedAt.set(peer, performance.now());
        this.backedUp?.(peer, 'failed', batch.copies.size);
      }
      batch.answer(res?.status === 200);
    }
    line.sending = false;
  }

  /** Before a request of a sequence not kept here: the gateway keeping it (if any) hands it over. */
  async fetch(m: ServedModel, seq: Whose): Promise<void> {
    if (!m.sequences || m.sequences.has(seq)) return;
    const key = sequenceKey(m.name, seq);
    let asking = this.asking.get(key);
    if (!asking) {
      asking = this.ask(m, seq).finally(() => this.asking.delete(key));
      this.asking.set(key, asking);
    }
    await asking;
  }

  /**
   * Asks every other gateway at once. One keeps it — or, where it started again elsewhere, an older copy is left
   * too: the latest start is the one going on (the others, handed over too, are gone). One that does not answer
   * has none to give.
   */
  private async ask(m: ServedModel, seq: Whose): Promise<void> {
    const body = JSON.stringify({ model: m.name, id: seq.id, owner: seq.owner });
    const found = await Promise.all(
      this.fleet.known().map(async (peer) => {
        const res = await this.fleet.exchange(peer, '/fleet/sequences/take', body).catch(() => undefined);
        try {
          return res?.status === 200 ? { peer, wire: JSON.parse(res.body) as WireSequence } : undefined;
        } catch {
          return undefined; // (not the answer a gateway of this version gives)
        }
      }),
    );
    const latest = found.reduce((x, y) => (y && (!x || furtherOn(heldAt(y.wire), heldAt(x.wire))) ? y : x), undefined);
    if (latest && this.take(m, { ...latest.wire, ...seq }) === 'taken') this.taken(latest.peer, 'asked');
  }

  /**
   * Keeps a sequence another gateway gave (see Sequences.takeOver: `has` where one as far on is kept here); refused
   * too where this gateway has no such model or its states are unlike the model's.
   */
  private take(m: ServedModel | undefined, wire: Omit<WireSequence, 'model'>, copy = false): 'taken' | 'has' | 'refused' {
    try {
      const { id, owner, states } = wire;
      return m?.sequences?.takeOver({ id, owner, states: statesOf(m, states), ...heldAt(wire) }, { copy }) ?? 'refused';
    } catch {
      return 'refused'; // (the gateways' configs differ: a rolling update changed the model)
    }
  }

  /** Until a sequence being handed on from here (this gateway stopping) has reached its next holder; undefined when none is. */
  handing(key: string): Promise<unknown> | undefined {
    return this.handingOn.get(key);
  }

  /**
   * The gateway stopping, before its drain: it ranks itself last from now on (the requests of its sequences go on to
   * their next holders), and hands them there (see handAll).
   */
  leave(models: Iterable<ServedModel>): Promise<{ handed: number; lost: number }> {
    this.fleet.leave();
    return this.handAll(models);
  }

  /**
   * Every sequence kept here, once the requests it had queued are answered, to the gateway that holds it next: the
   * next in its key's ranking that takes it (one stopping too refuses). They go in waves — those ready together, one
   * request per gateway — so a sequence waits for its own queue, not the slowest one's. Until it has gone, its
   * requests wait (handing).
   */
  async handAll(models: Iterable<ServedModel>): Promise<{ handed: number; lost: number }> {
    const total = { handed: 0, lost: 0 };
    const ready: Handed[] = [];
    let pending = 0;
    let wake = () => {};
    for (const m of models)
      for (const { seq, held } of m.sequences?.handAll() ?? []) {
        const key = sequenceKey(m.name, seq);
        let gone = () => {};
        const handing = new Promise<void>((resolve) => (gone = resolve));
        this.handingOn.set(key, handing);
        const done = () => {
          if (this.handingOn.get(key) === handing) this.handingOn.delete(key);
          gone();
        };
        pending++;
        void held.then((now) => {
          pending--;
          if (now) ready.push({ wire: wireOf(m.name, now), next: this.fleet.ranked(key, { others: true }), done });
          else done();
          wake();
        });
      }
    while (pending > 0 || ready.length > 0) {
      if (ready.length === 0) await new Promise<void>((resolve) => (wake = resolve));
      const wave = ready.splice(0);
      const { handed, lost } = await this.handWave(wave);
      total.handed += handed;
      total.lost += lost;
      for (const one of wave) one.done();
    }
    return total;
  }

  /** Sequences ready to go, each to the next gateway of its ranking that takes it: one request per gateway a round. */
  private async handWave(wave: Handed[]): Promise<{ handed: number; lost: number }> {
    let left = wave;
    let handed = 0;
    let lost = 0;
    while (left.length > 0) {
      const to = new Map<string, Handed[]>();
      for (const one of left) {
        const peer = one.next.shift();
        if (!peer) lost++;
        else if (to.has(peer)) to.get(peer)?.push(one);
        else to.set(peer, [one]);
      }
      left = [];
      await Promise.all(
        [...to].map(async ([peer, some]) => {
          const res = await this.fleet
            .exchange(peer, '/fleet/sequences', JSON.stringify({ from: this.fleet.self, sequences: some.map((s) => s.wire) }))
            .catch(() => undefined);
          if (res?.status !== 200) return left.push(...some); // (that gateway cannot take them: the next one in each's ranking)
          const refused = refusedIn(res.body);
          handed += some.length - refused;
          lost += refused;
        }),
      );
    }
    return { handed, lost };
  }

  /**
   * Takes sequences a stopping gateway handed over: how many it could not (no room, states unlike this model's, one
   * behind it running here). One kept here as far on (a backup's copy handed back to its holder) is not refused.
   */
  private takeHanded(from: string, sequences: unknown[]): number {
    let refused = 0;
    for (const s of sequences) {
      const took = this.takeSent(s);
      if (took === 'taken') this.taken(from, 'handed');
      else if (took === 'refused') refused++;
    }
    return refused;
  }

  /** A sequence another gateway sent (handed over, or a backup's `copy`), of the model it names: refused where it is not one. */
  private takeSent(sent: unknown, copy = false): 'taken' | 'has' | 'refused' {
    const wire = sent as WireSequence | null;
    if (typeof wire !== 'object' || wire === null || typeof wire.model !== 'string' || typeof wire.id !== 'string') return 'refused';
    return this.take(this.modelNamed(wire.model), wire, copy);
  }

  /** POST /fleet/sequences/take (a sequence asked for) and /fleet/sequences (sequences handed over): the fleet's secret, no client's credentials. */
  static routes(sequences: FleetSequences | undefined): Hono<GatewayEnv> {
    const app = new Hono<GatewayEnv>();
    app.use('/fleet/sequences/*', async (c, next) => {
      if (!sequences) throw new GatewayError(404, 'not_found', 'this gateway hands no sequences to a fleet (server.fleet with its secret)');
      // (the secret first: a body is read only from a gateway of the fleet)
      if (!sequences.fleet.fromPeer(c)) throw new GatewayError(401, 'unauthorized', `unauthorized: send this fleet's ${FLEET_SECRET}`);
      await next();
    });
    app.post('/fleet/sequences/take', async (c) => {
      const { model, id, owner } = ((await readJson(c, 2 ** 16)) ?? {}) as Partial<WireSequence>;
      if (typeof model !== 'string' || typeof id !== 'string' || !(owner === undefined || typeof owner === 'string'))
        throw badInput('expected {"model", "id", "owner"?}');
      await sequences?.handing(sequenceKey(model, { id, owner })); // (being handed on: to the one asking, most likely)
      // (the asking gateway gone by the time it is: kept here)
      const held = await sequences?.modelNamed(model)?.sequences?.handOver({ id, owner }, clientSignal(c));
      if (!held) throw new GatewayError(404, 'not_found', `sequence ${id} of model ${model} is not kept here`);
      return c.json(wireOf(model, held));
    });
    app.post('/fleet/sequences/backup', async (c) => {
      const body = (await readJson(c, 256 * 2 ** 20)) as { sequences?: unknown; dropped?: unknown };
      const copies = body?.sequences ?? [];
      const dropped = (body?.dropped ?? []) as (Partial<WireSequence> | null)[];
      if (typeof body !== 'object' || body === null || !Array.isArray(copies) || !Array.isArray(dropped))
        throw badInput('expected {"sequences": [{"model", "id", "owner"?, "states", "started_at", "steps"}], "dropped": [{"model", "id", "owner"?}]}');
      // (stopping: what it kept now would go with it — the next in their ranking keeps them)
      if (sequences?.fleet.isLeaving) throw unavailable('stopping', 'this gateway is stopping: it keeps no backups');
      let refused = 0;
      for (const copy of copies) if (sequences?.takeSent(copy, true) === 'refused') refused++;
      for (const gone of dropped)
        if (typeof gone?.model === 'string' && typeof gone.id === 'string')
          sequences?.modelNamed(gone.model)?.sequences?.release({ id: gone.id, owner: typeof gone.owner === 'string' ? gone.owner : undefined });
      return c.json({ refused });
    });
    app.post('/fleet/sequences', async (c) => {
      const body = (await readJson(c, 256 * 2 ** 20)) as { from?: unknown; sequences?: unknown };
      if (typeof body?.from !== 'string' || !Array.isArray(body.sequences))
        throw badInput('expected {"from", "sequences": [{"model", "id", "owner"?, "states"}]}');
      // (stopping too, after its own handing on: what it took now would be lost — the next in their ranking takes them)
      if (sequences?.fleet.isLeaving) throw unavailable('stopping', 'this gateway is stopping: it takes no sequences');
      return c.json({ refused: sequences?.takeHanded(body.from, body.sequences) });
    });
    return app;
  }
}

/** How many sequences a gateway's answer to a handing over says it refused (an answer not understood: none). */
function refusedIn(body: string): number {
  try {
    return Number((JSON.parse(body) as { refused?: unknown }).refused) || 0;
  } catch {
    return 0;
  }
}

const wireOf = (model: string, { id, owner, states, startedAt, steps }: HeldSequence): WireSequence => ({
  model,
  id,
  owner,
  started_at: startedAt,
  steps,
  states: Object.fromEntries(
    Object.entries(states).map(([name, t]) => [name, { datatype: t.dtype, shape: t.shape, data: Buffer.from(bytesOf(t.data)).toString('base64') }]),
  ),
});

/** How far on a sequence handed over is: when it started, and its requests answered since (one from a gateway that does not say: the earliest, none). */
const heldAt = (wire: Pick<WireSequence, 'started_at' | 'steps'>) => ({
  startedAt: typeof wire.started_at === 'number' ? wire.started_at : 0,
  steps: typeof wire.steps === 'number' ? wire.steps : 0,
});

/** A sequence's states from another gateway, checked against this model's: each of its states, of its dtype and shape. */
function statesOf(m: ServedModel, wire: WireStates): Inputs {
  const states: Inputs = {};
  for (const s of m.sequences?.states ?? []) {
    const t = wire?.[s.input];
    const same = t && t.datatype === s.dtype && isDType(t.datatype) && JSON.stringify(t.shape) === JSON.stringify(s.shape);
    if (!same) throw badInput(`state ${s.input} of model ${m.name} handed over is not ${s.dtype} ${JSON.stringify(s.shape)}`);
    const bytes = Buffer.from(t.data, 'base64');
    if (bytes.byteLength !== elementCount(s.shape) * bytesPerElement(s.dtype))
      throw badInput(`state ${s.input} of model ${m.name} handed over is ${bytes.byteLength} bytes`);
    states[s.input] = { dtype: s.dtype, shape: s.shape, data: viewBytes(s.dtype, new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)) };
  }
  return states;
}
