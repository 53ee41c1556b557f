import type * as ort from 'onnxruntime-node';
import type { Inputs } from '../tensor/index.js';
import type { CudaOptions } from './cuda-options.js';
import { RunTrace } from './run-trace.js';
import { type OpenedSession, openSession, type Provider, runSession, warmupRuns } from './session.js';
import type { ModelSignature } from './signature.js';
import type { LayoutConfig } from './stateful.js';

export type ReplicaSessionsSpec = {
  path: string;
  device: string;
  threads: number;
  cuda?: CudaOptions;
  warmupShapes: Record<string, number[]>;
  warmupBatches?: number[];
  layout?: LayoutConfig;
  /** On CUDA with several batch sizes, a session per batch size (batching.session_per_batch_size). @default true */
  sessionPerBatchSize?: boolean;
};

export type ReplicaSessions = Omit<OpenedSession, 'session'> & {
  /** How many sessions the replica holds (one per batch size on CUDA, else one). */
  count: number;
  sessionMs: number;
  warmupMs: number;
  /** Runs a batch on the session for its shape; `reused` says whether its input buffer is a reused one (for INFERGATE_RUN_LOG). */
  run(inputs: Inputs, reused: boolean): Promise<{ outputs: Inputs; computeMs: number }>;
  /** Closes the sessions (their memory, a GPU's too, goes back). */
  release(): Promise<void>;
};

/**
 * A replica's sessions, opened and warmed up. On CUDA with more than one batch size (batch_sizes), a
 * session per batch size, each warmed up at its own: with ONNX Runtime 1.29 and cuDNN 9, a run whose
 * input shape differs from that session's previous run costs 3–4 ms in every convolution, whether or
 * not the shape was seen before (ResNet-50 fp16 on an H200: ~200 ms instead of 20 ms, so batches of
 * 32/64/128 in turn ran at a tenth of one shape's speed; bench/gpu/shape-switch.ts). Each session
 * then only ever sees one shape. The price is GPU memory: every session holds its own copy of the
 * weights and its own memory arena. A batch of a size not listed runs on the largest's session.
 */
export async function openReplicaSessions(spec: ReplicaSessionsSpec, signature: ModelSignature): Promise<ReplicaSessions> {
  const t0 = performance.now();
  const first = await openSession(spec.path, spec.device, spec.threads, spec.cuda);
  const warmups = warmupRuns(signature, spec.warmupShapes, spec.warmupBatches, spec.layout);
  const perShape = sessionPerBatchSize(first.provider, spec.sessionPerBatchSize, warmups.length, process.env.INFERGATE_SESSION_PER_BATCH_SIZE);
  const sessions = [first.session];
  // The same device the first one got (`auto` resolved): the others must not land elsewhere.
  for (let i = 1; perShape && i < warmups.length; i++) sessions.push((await openSession(spec.path, first.provider, spec.threads, spec.cuda)).session);
  const t1 = performance.now();
  const byShape = new Map<string, ort.InferenceSession>();
  for (const [i, inputs] of warmups.entries()) {
    const session = sessions[perShape ? i : 0];
    await runSession(session, inputs);
    byShape.set(shapeKey(inputs), session);
  }
  const largest = sessions[sessions.length - 1];
  // One session takes every batch: no shape to look up per run.
  const sessionFor = sessions.length === 1 ? () => largest : (inputs: Inputs) => byShape.get(shapeKey(inputs)) ?? largest;
  const trace = RunTrace.fromEnv(sessions);
  const { session: _, ...opened } = first;
  return {
    ...opened,
    count: sessions.length,
    sessionMs: t1 - t0,
    warmupMs: performance.now() - t1,
    async run(inputs, reused) {
      const startedAt = performance.now();
      const outputs = await runSession(sessionFor(inputs), inputs);
      const computeMs = performance.now() - startedAt;
      trace?.record(startedAt, Object.values(inputs)[0]?.shape[0] ?? 0, computeMs, reused);
      return { outputs, computeMs };
    },
    async release() {
      await Promise.all(sessions.map((s) => s.release()));
    },
  };
}

/**
 * Whether a replica opens a session per batch size: on CUDA with more than one, unless the config says
 * not to. `forced` (INFERGATE_SESSION_PER_BATCH_SIZE=always|never) overrides, for tests and benchmarks on the CPU.
 */
export function sessionPerBatchSize(provider: Provider, configured: boolean | undefined, batchSizes: number, forced?: string): boolean {
  if (batchSizes < 2) return false;
  if (forced === 'always' || forced === 'never') return forced === 'always';
  return configured !== false && provider !== 'cpu';
}

function shapeKey(inputs: Inputs): string {
  return Object.entries(inputs)
    .map(([name, t]) => `${name}:${t.shape.join('x')}`)
    .join(',');
}
