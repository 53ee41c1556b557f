import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { unavailable } from '../errors/index.js';
import {
  cudaOptionsEnv,
  type FailedMessage,
  type Frame,
  FrameReader,
  type ModelOpened,
  type ReadyMessage,
  type ReplicaSpec,
  replicaEntry,
  TensorSlots,
  writeFrame,
} from '../models/index.js';
import type { Inputs } from '../tensor/index.js';

/**
 * A batch's outputs, and how long the model took to compute them (the replica's own measure); `opened`: the batch's
 * multiplexed model was opened for it (how long that took, and the models closed to make room).
 */
export type Inferred = { outputs: Inputs; computeMs: number; opened?: ModelOpened };

export type ReplicaState = 'starting' | 'ready' | 'draining' | 'stopped';

/** One running copy of a model. The pool sees only this; the process behind it is the provider's business. */
export interface Replica extends EventEmitter<{ exit: [reason: string] }> {
  readonly id: string;
  readonly state: ReplicaState;
  readonly pid?: number;
  /** Where a remote replica is (host:port). */
  readonly address?: string;
  readonly provider: string;
  /** Why the replica is not on CUDA although `auto` asked for it. */
  readonly fallback?: string;
  /** The CUDA provider's options in effect (ONNX Runtime's report), where the model sets some. */
  readonly cudaOptions?: string;
  /** Where its session runs (process replicas): a worker thread or the main thread. */
  readonly sessionThread?: 'main' | 'worker';
  /** ONNX Runtime sessions it holds: one per batch size on CUDA (see replica-sessions.ts), else one. */
  readonly sessions?: number;
  /** Batches sent and not yet answered. */
  readonly inFlight: number;
  /** How large tensors reach it: shared-memory slots, or the socket itself. */
  readonly transport: 'shm' | 'socket' | 'memory';
  /** Cold start, measured from spawn to ready: process start and module load, session creation, warm-up. */
  readonly coldStart?: ColdStart;
  /** `modelId`: which of a multiplexed model's models runs the batch. */
  infer(inputs: Inputs, modelId?: string): Promise<Inferred>;
  /** A request with a JSON body and a JSON answer (a generation step); rejects like infer. */
  request(op: string, body: object): Promise<Record<string, unknown>>;
  /** Stops taking batches, lets in-flight ones finish, then exits. Idempotent. */
  stop(): Promise<void>;
}

export type ReplicaStartSpec = Omit<ReplicaSpec, 'socket'>;
export type ColdStart = { totalMs: number; spawnMs: number; sessionMs: number; warmupMs: number };

export type StartOptions = {
  startupTimeoutMs: number;
  /**
   * With work in flight, longest a replica may go without answering any of it before it is taken for hung
   * and killed (a remote one: disconnected); its batches fail back to the batcher as for a crash. 0: never.
   */
  hangTimeoutMs?: number;
};

export interface ReplicaProvider {
  start(spec: ReplicaStartSpec, opts: StartOptions): Promise<Replica>;
}

/** Replicas as child processes on this machine, reached over Unix sockets. */
export class LocalProcessProvider implements ReplicaProvider {
  async start(spec: ReplicaStartSpec, { startupTimeoutMs, hangTimeoutMs }: StartOptions): Promise<Replica> {
    // Unique: two gateways in one process may both have a replica `m-1` (and the replica clears the path first).
    const socket = join(tmpdir(), `infergate-${process.pid}-${randomBytes(4).toString('hex')}-${spec.replicaId}.sock`);
    // One slot per batch in flight; a fifth batch in flight would go through the socket.
    const slots = TensorSlots.create(spec.replicaId, 4);
    const forkedAt = performance.now();
    const entry = replicaEntry();
    const child = fork(entry.file, [], {
      execArgv: entry.execArgv,
      env: {
        ...process.env,
        ...(spec.device === 'cpu' ? {} : cudaOptionsEnv(spec.cuda, process.env)),
        INFERGATE_REPLICA: JSON.stringify({ ...spec, socket, slots: slots?.paths }),
      },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      // Its own process group: a Ctrl-C or a group SIGTERM meant for the gateway must not kill replicas
      // before the gateway drains them. It still dies with the gateway (IPC disconnect, see replica-main).
      detached: true,
    });
    try {
      const ready = await waitForReady(child, startupTimeoutMs, spec.replicaId);
      const conn = await new Promise<Socket>((resolve, reject) => {
        const s = connect(socket, () => resolve(s)).once('error', reject);
      }).catch((err) => {
        child.kill('SIGKILL');
        throw err;
      });
      const totalMs = performance.now() - forkedAt;
      const { sessionMs, warmupMs } = ready.timings;
      const coldStart = { totalMs, spawnMs: totalMs - sessionMs - warmupMs, sessionMs, warmupMs };
      if (!ready.shm) slots?.close();
      return new SocketReplica(spec.replicaId, conn, ready, coldStart, processLifetime(child, conn), { slots: ready.shm ? slots : undefined, hangTimeoutMs });
    } catch (err) {
      slots?.close();
      throw err;
    } finally {
      // Both processes hold the files (and the socket) open by now, or never will: the names can go, so that
      // a replica that dies leaves nothing behind in /tmp or /dev/shm.
      slots?.unlink();
      rmSync(socket, { force: true });
    }
  }
}

function waitForReady(child: ChildProcess, timeoutMs: number, id: string): Promise<ReadyMessage> {
  return new Promise((resolve, reject) => {
    const fail = (message: string) => {
      cleanup();
      child.kill('SIGKILL');
      reject(new Error(`replica ${id} failed to start: ${message}`));
    };
    const onMessage = (m: ReadyMessage | FailedMessage) => {
      if (m.type === 'failed') return fail(m.message);
      cleanup();
      resolve(m);
    };
    const onExit = (code: number | null, signal: string | null) => fail(`exited (${signal ?? `code ${code}`}) before it was ready`);
    const onError = (err: Error) => fail(err.message);
    const timer = setTimeout(() => fail(`not ready after ${timeoutMs} ms`), timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      child.off('message', onMessage).off('exit', onExit).off('error', onError);
    };
    child.on('message', onMessage).on('exit', onExit).on('error', onError);
  });
}

/** How a replica behind a socket lives and ends: a child process here, or a connection to a remote one. */
export type Lifetime = {
  pid?: number;
  address?: string;
  /** Settles with why it ended (exit code, signal, connection closed). */
  ended: Promise<string>;
  /** Drained: let it go (SIGTERM; a remote connection is closed, the remote process stays). */
  end(): void;
  /** Broken: end it now. */
  kill(): void;
};

/** A child process's lifetime: a broken socket means it is unusable even if the process lingers. */
function processLifetime(child: ChildProcess, socket: Socket): Lifetime {
  socket.on('close', () => child.kill('SIGKILL'));
  return {
    pid: child.pid,
    ended: new Promise((resolve) => child.once('exit', (code, signal) => resolve(signal ? `killed by ${signal}` : `exited with code ${code}`))),
    end: () => {
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 5000).unref();
    },
    kill: () => child.kill('SIGKILL'),
  };
}

/** A replica reached over a stream socket with the frame protocol (a local process's Unix socket, or TCP). */
export class SocketReplica extends EventEmitter<{ exit: [reason: string] }> implements Replica {
  state: ReplicaState = 'ready';
  private nextId = 1;
  private pending = new Map<number, { resolve: (frame: Frame) => void; reject: (e: Error) => void }>();
  private drained?: () => void;
  private exited: Promise<void>;
  private readonly slots?: TensorSlots;
  private readonly hangTimeoutMs: number;
  /** When it last sent anything, or when work went in flight after none was. */
  private lastHeardAt = 0;
  private watchdog?: NodeJS.Timeout;
  /** Why it was killed, when it was for hanging (its exit reason then). */
  private hung?: string;

  constructor(
    readonly id: string,
    private socket: Socket,
    readonly ready: ReadyMessage,
    readonly coldStart: ColdStart,
    private lifetime: Lifetime,
    opts: { slots?: TensorSlots; hangTimeoutMs?: number } = {},
  ) {
    super();
    this.slots = opts.slots;
    this.hangTimeoutMs = opts.hangTimeoutMs ?? 0;
    const reader = new FrameReader(opts.slots);
    socket.on('data', (chunk) => {
      this.lastHeardAt = performance.now(); // bytes of an answer (a large one comes in many chunks): alive
      let frames: Frame[];
      try {
        frames = reader.push(chunk);
      } catch {
        return lifetime.kill(); // a replica that speaks garbage is broken
      }
      for (const frame of frames) {
        const waiter = this.pending.get(frame.header.id);
        if (!waiter) continue;
        if (frame.header.op !== 'result') {
          this.settle(frame.header.id, () => waiter.reject(new Error(`replica ${id}: ${String(frame.header.message)}`)));
          continue;
        }
        // Answered only once its tensors are read: until then its slot is still in use.
        Promise.resolve(frame.tensors).then(
          (tensors) => this.settle(frame.header.id, () => waiter.resolve({ header: frame.header, tensors })),
          (err: Error) => this.settle(frame.header.id, () => waiter.reject(err)),
        );
      }
    });
    socket.on('error', () => {});
    this.exited = lifetime.ended.then((ended) => {
      const reason = this.hung ?? ended;
      const wasStopping = this.state === 'draining';
      this.state = 'stopped';
      clearTimeout(this.watchdog);
      socket.destroy();
      for (const w of this.pending.values()) w.reject(unavailable('replica_lost', `replica ${id} of the model ${reason} during the batch`));
      this.pending.clear();
      this.slots?.close();
      this.drained?.();
      if (!wasStopping) this.emit('exit', reason);
    });
  }

  private settle(id: number, answer: () => void): void {
    if (!this.pending.delete(id)) return; // already failed (the replica exited meanwhile)
    answer();
    if (this.pending.size === 0) this.drained?.();
  }

  get pid() {
    return this.lifetime.pid;
  }
  get address() {
    return this.lifetime.address;
  }
  get provider() {
    return this.ready.provider;
  }
  get fallback() {
    return this.ready.fallback;
  }
  get cudaOptions() {
    return this.ready.cudaOptions;
  }
  get sessionThread() {
    return this.ready.sessionThread;
  }
  get sessions() {
    return this.ready.sessions;
  }
  get inFlight() {
    return this.pending.size;
  }
  get transport() {
    return this.slots ? ('shm' as const) : ('socket' as const);
  }

  async infer(inputs: Inputs, modelId?: string): Promise<Inferred> {
    const { header, tensors } = await this.send('infer', modelId === undefined ? {} : { modelId }, inputs);
    return {
      outputs: tensors as Inputs,
      computeMs: Number(header.computeMs ?? 0),
      ...(header.opened !== undefined && { opened: header.opened as ModelOpened }),
    };
  }

  async request(op: string, body: object): Promise<Record<string, unknown>> {
    return (await this.send(op, body)).header;
  }

  private send(op: string, body: object, tensors?: Inputs): Promise<Frame> {
    if (this.state !== 'ready') return Promise.reject(unavailable('replica_unavailable', `replica ${this.id} is ${this.state}`));
    const id = this.nextId++;
    // A batch holds a shared-memory slot until its answer is read: the answer may come back through it.
    const slot = tensors ? this.slots?.acquire() : undefined;
    const free = () => slot !== undefined && this.slots?.release(slot);
    return new Promise<Frame>((resolve, reject) => {
      if (this.pending.size === 0) this.lastHeardAt = performance.now(); // idle time is not silence
      this.pending.set(id, { resolve, reject });
      this.watch();
      void writeFrame(this.socket, { ...body, id, op, slot }, tensors, this.slots);
    }).finally(free);
  }

  /**
   * Kills the replica once it has had work in flight and answered nothing for hangTimeoutMs: alive but stuck
   * (a wedged CUDA call, a deadlock) it would hold its batches, and every later one, for ever. One timer, re-armed
   * from the last answer, rather than one per request.
   */
  private watch(): void {
    if (this.hangTimeoutMs <= 0 || this.watchdog) return;
    const check = () => {
      this.watchdog = undefined;
      if (this.pending.size === 0 || this.state === 'stopped') return;
      const silentMs = performance.now() - this.lastHeardAt;
      if (silentMs < this.hangTimeoutMs) {
        this.watchdog = setTimeout(check, this.hangTimeoutMs - silentMs).unref();
        return;
      }
      const silence = `nothing answered in ${Math.round(silentMs)} ms with ${this.pending.size} in flight, scaling.hang_timeout`;
      this.hung = `hung (${silence}) and was ${this.lifetime.pid === undefined ? 'disconnected' : 'killed'}`;
      this.lifetime.kill();
    };
    this.watchdog = setTimeout(check, this.hangTimeoutMs).unref();
  }

  async stop(): Promise<void> {
    if (this.state === 'stopped') return this.exited;
    if (this.state === 'ready') {
      this.state = 'draining';
      if (this.pending.size > 0) await new Promise<void>((resolve) => (this.drained = resolve));
      this.lifetime.end();
    }
    return this.exited;
  }
}
