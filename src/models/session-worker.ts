/**
 * The replica's ONNX Runtime session, on a worker thread. onnxruntime-node runs a session synchronously
 * on the calling thread, so a session on the replica's main thread blocks it for the whole batch (on a
 * GPU, the whole time the GPU computes): the next batch's frame and its read from /dev/shm could only
 * start once the run had ended. With the session here, the main thread reads batch k+1 while batch k
 * runs. Tensors move by transfer, not copy: a batch's input buffer comes back with its outputs.
 */
import { isMainThread, parentPort, SHARE_ENV, type Worker, workerData } from 'node:worker_threads';
import { bytesPerElement, type Inputs } from '../tensor/index.js';
import type { Shelf } from './model-shelf.js';
import { SHM_MIN_BYTES } from './protocol.js';
import type { ReplicaSessions, ReplicaSessionsSpec } from './replica-sessions.js';
import { type ModelOpened, multiplexedPath } from './replica-spec.js';
import type { Provider } from './session.js';
import type { ModelSignature } from './signature.js';
import { spawnWorker } from './thread.js';

/**
 * Where a replica runs its session. A run blocks its thread until it ends; on a GPU that is time the
 * replica's main thread could spend reading the next batch from /dev/shm, so a CUDA replica whose
 * batches can be that large runs it on a worker. Batches that always fit the socket (under
 * SHM_MIN_BYTES) have no read to overlap and would only pay the hop between threads (0.4× the round
 * trips of tiny batches, measured here); on the CPU the cores are busy computing anyway. `forced`
 * (INFERGATE_SESSION_THREAD=worker|main) overrides.
 */
export function sessionThread(o: {
  device: string;
  cudaInstalled: boolean;
  signature: ModelSignature;
  maxBatchRows?: number;
  forced?: string;
}): 'main' | 'worker' {
  if (o.forced === 'worker' || o.forced === 'main') return o.forced;
  if (o.device === 'cpu' || (o.device === 'auto' && !o.cudaInstalled)) return 'main';
  const rows = o.signature.batchAxis === 0 ? (o.maxBatchRows ?? Number.POSITIVE_INFINITY) : 1;
  const rowBytes = o.signature.inputs.reduce((n, t) => {
    const inner = o.signature.batchAxis === 0 ? t.shape.slice(1) : t.shape;
    return n + inner.reduce<number>((m, d) => (typeof d === 'number' ? m * d : Number.POSITIVE_INFINITY), bytesPerElement(t.dtype));
  }, 0);
  return rows * rowBytes >= SHM_MIN_BYTES ? 'worker' : 'main';
}

export type SessionWorkerSpec = ReplicaSessionsSpec & {
  /** Marks the worker's data as this worker's (the module is also imported on main threads). */
  role: 'infergate-session';
  /** A multiplexed or versioned model: its models opened and kept on the worker (see openShelf). */
  multiplex?: Shelf;
};
export type SessionWorkerReady = { provider: Provider; fallback?: string; cudaOptions?: string; sessions: number; sessionMs: number; warmupMs: number };

type Request = { id: number; inputs: Inputs; giveBack?: ArrayBuffer; modelId?: string };
type Reply = { id: number; outputs?: Inputs; error?: string; giveBack?: ArrayBuffer; computeMs?: number; opened?: ModelOpened };
type Started = ({ type: 'ready' } & SessionWorkerReady) | { type: 'failed'; message: string };

/** The main thread's handle on the worker. */
export class SessionWorker {
  private nextId = 1;
  private pending = new Map<number, { resolve: (r: Reply) => void }>();

  private constructor(
    private worker: Worker,
    readonly ready: SessionWorkerReady,
  ) {
    worker.on('message', (reply: Reply) => {
      this.pending.get(reply.id)?.resolve(reply);
      this.pending.delete(reply.id);
    });
  }

  /** Opens and warms up the session in a new worker; rejects with the reason if it cannot. */
  static async start(spec: SessionWorkerSpec, onCrash: (err: Error) => void): Promise<SessionWorker> {
    // SHARE_ENV: the CUDA options shim talks through the real environment (getenv/setenv), which a
    // worker's own copy of process.env would not reach.
    const worker = spawnWorker(import.meta.url, spec, SHARE_ENV);
    const started = await new Promise<Started>((resolve, reject) => {
      worker
        .once('message', resolve)
        .once('error', reject)
        .once('exit', (code) => reject(new Error(`the session's worker exited (code ${code}) before it was ready`)));
    });
    if (started.type === 'failed') {
      await worker.terminate();
      throw new Error(started.message);
    }
    worker
      .removeAllListeners('exit')
      .on('error', onCrash)
      .on('exit', (code) => onCrash(new Error(`exited with code ${code}`)));
    const { type: _, ...ready } = started;
    return new SessionWorker(worker, ready);
  }

  /**
   * Runs a batch. `giveBack`, the buffer under the inputs, is transferred (the caller cannot touch it
   * meanwhile) and returned with the outputs; without it the inputs are copied.
   */
  run(inputs: Inputs, giveBack?: ArrayBuffer, modelId?: string): Promise<{ outputs: Inputs; giveBack?: ArrayBuffer; computeMs: number; opened?: ModelOpened }> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, {
        resolve: (r) =>
          r.error !== undefined
            ? reject(Object.assign(new Error(r.error), { giveBack: r.giveBack }))
            : resolve({ outputs: r.outputs as Inputs, giveBack: r.giveBack, computeMs: r.computeMs ?? 0, opened: r.opened }),
      });
      this.worker.postMessage({ id, inputs, giveBack, modelId } satisfies Request, giveBack ? [giveBack] : []);
    });
  }
}

/** The worker's side. */
async function serve(spec: SessionWorkerSpec): Promise<void> {
  const port = parentPort as NonNullable<typeof parentPort>;
  const { openReplicaSessions } = await import('./replica-sessions.js');
  const { openShelf } = await import('./model-shelf.js');
  const { readSignature } = await import('./signature.js');
  let ready: ReplicaSessions;
  let run: (inputs: Inputs, reused: boolean, modelId?: string) => Promise<{ outputs: Inputs; computeMs: number; opened?: ModelOpened }>;
  try {
    const { multiplex } = spec;
    if (multiplex) {
      const signature = await readSignature(multiplexedPath(spec.path, multiplex.open[multiplex.open.length - 1]));
      ({ ready, run } = await openShelf(spec, multiplex, signature));
    } else {
      ready = await openReplicaSessions(spec, await readSignature(spec.path));
      run = (inputs, reused) => ready.run(inputs, reused);
    }
  } catch (err) {
    port.postMessage({ type: 'failed', message: (err as Error).message } satisfies Started);
    return;
  }
  const { provider, fallback, cudaOptions, count, sessionMs, warmupMs } = ready;
  port.postMessage({ type: 'ready', provider, fallback, cudaOptions, sessions: count, sessionMs, warmupMs } satisfies Started);
  // One batch at a time, in the order they were posted.
  let chain = Promise.resolve();
  const answer = async ({ id, inputs, giveBack, modelId }: Request) => {
    try {
      const { outputs, computeMs, opened } = await run(inputs, giveBack !== undefined, modelId);
      const transfer = new Set(Object.values(outputs).map((t) => t.data.buffer as ArrayBuffer));
      if (giveBack) transfer.add(giveBack);
      port.postMessage({ id, outputs, giveBack, computeMs, opened } satisfies Reply, [...transfer]);
    } catch (err) {
      port.postMessage({ id, error: (err as Error).message, giveBack } satisfies Reply, giveBack ? [giveBack] : []);
    }
  };
  port.on('message', (request: Request) => {
    chain = chain.then(() => answer(request));
  });
}

// Not awaited at the top level: a thread ended while a module with top-level await is being evaluated (its process
// exiting as it starts, say) aborts the whole process in V8 ("Check failed: (location_) != nullptr", nodejs/node
// #43182, #53238). A rejection still reaches the parent as the worker's 'error'.
if (!isMainThread && (workerData as SessionWorkerSpec | undefined)?.role === 'infergate-session') void serve(workerData as SessionWorkerSpec);
