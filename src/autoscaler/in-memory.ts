import { EventEmitter } from 'node:events';
import { unavailable } from '../errors/index.js';
import type { Inputs } from '../tensor/index.js';
import type { Inferred, Replica, ReplicaProvider, ReplicaStartSpec, ReplicaState } from './replica.js';

export type ModelFn = (inputs: Inputs) => Inputs | Promise<Inputs>;

/**
 * Replicas that run a JavaScript function in this process: the fake beside the real process provider,
 * for unit tests of pools, autoscalers and batchers that need no ONNX Runtime.
 */
export class InMemoryProvider implements ReplicaProvider {
  readonly started: InMemoryReplica[] = [];
  /** Starts still to fail, for crash-loop tests. */
  failStarts = 0;

  constructor(
    private fn: ModelFn,
    private opts: { startDelayMs?: number } = {},
  ) {}

  async start(spec: ReplicaStartSpec): Promise<Replica> {
    if (this.opts.startDelayMs) await new Promise((r) => setTimeout(r, this.opts.startDelayMs));
    if (this.failStarts > 0) {
      this.failStarts--;
      throw new Error(`replica ${spec.replicaId} failed to start: injected failure`);
    }
    const replica = new InMemoryReplica(spec.replicaId, this.fn, spec.device);
    this.started.push(replica);
    return replica;
  }
}

export class InMemoryReplica extends EventEmitter<{ exit: [reason: string] }> implements Replica {
  state: ReplicaState = 'ready';
  readonly provider = 'memory';
  readonly transport = 'memory';
  readonly pid = undefined;
  inFlight = 0;
  /** Every batch this replica was given, in order. */
  readonly batches: Inputs[] = [];
  private rejectAll = new Set<(e: Error) => void>();
  private idle?: () => void;

  constructor(
    readonly id: string,
    private fn: ModelFn,
    readonly device: string,
  ) {
    super();
  }

  async infer(inputs: Inputs): Promise<Inferred> {
    if (this.state !== 'ready') throw unavailable('replica_unavailable', `replica ${this.id} is ${this.state}`);
    this.batches.push(inputs);
    this.inFlight++;
    const startedAt = performance.now();
    try {
      const outputs = await new Promise<Inputs>((resolve, reject) => {
        this.rejectAll.add(reject);
        Promise.resolve(this.fn(inputs)).then(resolve, reject);
      });
      return { outputs, computeMs: performance.now() - startedAt };
    } finally {
      if (--this.inFlight === 0) this.idle?.();
    }
  }

  async request(op: string): Promise<Record<string, unknown>> {
    throw new Error(`in-memory replicas do not answer ${op}`);
  }

  /** Dies like a killed process: in-flight batches fail, the pool is told. */
  crash(reason = 'killed by SIGKILL'): void {
    this.state = 'stopped';
    for (const reject of this.rejectAll) reject(unavailable('replica_lost', `replica ${this.id} ${reason} during the batch`));
    this.emit('exit', reason);
  }

  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'draining';
    if (this.inFlight > 0) await new Promise<void>((r) => (this.idle = r));
    this.state = 'stopped';
  }
}
