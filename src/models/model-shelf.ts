import type { Inputs } from '../tensor/index.js';
import { openReplicaSessions, type ReplicaSessions, type ReplicaSessionsSpec } from './replica-sessions.js';
import { type ModelOpened, multiplexedPath } from './replica-spec.js';
import type { ModelSignature } from './signature.js';

/** Several models of one set of tensors, by model id: a multiplexed model's (Ray Serve's) or a versioned one's (Triton's). */
export type Shelf = { maxModels: number; open: string[] };

/**
 * A replica's sessions of several models of the same tensors, by model id (`spec.path` names their files with
 * `{model_id}` or `{version}`): each opened, and warmed up, when a batch first names it, the `maxModels` most
 * recently used kept open (the least recently used closed, its memory — a GPU's too — given back). `shelf.open`
 * are opened at once, in order; the last is the most recently used, and the one a batch naming none runs on.
 * Batches run one at a time (on the replica's main thread or its session worker), so a model is never closed
 * under a running batch. `ready`: the last one opened at start (its provider, sessions and timings).
 */
export async function openShelf(
  spec: ReplicaSessionsSpec,
  { maxModels, open: atStart }: Shelf,
  signature: ModelSignature,
): Promise<{
  ready: ReplicaSessions;
  run(inputs: Inputs, reused: boolean, modelId?: string): Promise<{ outputs: Inputs; computeMs: number; opened?: ModelOpened }>;
}> {
  const open = new Map<string, ReplicaSessions>(); // least recently used first
  /** A model's sessions, and if it had to be opened, how long that took and which models were closed for it. */
  const sessionsOf = async (modelId: string): Promise<{ sessions: ReplicaSessions; opened?: ModelOpened }> => {
    const kept = open.get(modelId);
    open.delete(modelId);
    if (kept) {
      open.set(modelId, kept);
      return { sessions: kept };
    }
    const startedAt = performance.now();
    const sessions = await openReplicaSessions({ ...spec, path: multiplexedPath(spec.path, modelId) }, signature);
    open.set(modelId, sessions);
    const closed: string[] = [];
    for (const [id, least] of open) {
      if (open.size <= maxModels) break;
      open.delete(id);
      closed.push(id);
      await least.release();
    }
    return { sessions, opened: { modelId, ms: performance.now() - startedAt, closed } };
  };
  for (const modelId of atStart.slice(0, -1)) await sessionsOf(modelId);
  const lastOpened = atStart[atStart.length - 1];
  const ready = (await sessionsOf(lastOpened)).sessions;
  return {
    ready,
    run: async (inputs, reused, modelId) => {
      const { sessions, opened } = await sessionsOf(modelId ?? lastOpened);
      return { ...(await sessions.run(inputs, reused)), ...(opened && { opened }) };
    },
  };
}
