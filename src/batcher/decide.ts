/**
 * The batch decision, as a pure function of the queue, free capacity and the clock: tested with
 * tables, no timers. The Batcher class around it only gathers inputs, keeps timers and does I/O.
 */
export type QueuedView = {
  rows: number;
  /** Requests batch together only within a group: same dtypes and non-batch dimensions (or paddable). */
  group: string;
  enqueuedAt: number;
  deadline: number;
  /** Higher goes first. */
  priority: number;
  /** Within a priority, lower goes first (callers' turns: see FairShare); ties keep arrival order. @default 0 */
  turn?: number;
};

export type BatchRule = {
  maxBatchSize: number;
  /** Longest the first request of a batch waits for company. */
  waitMs: number;
};

export type BatchDecision = {
  /** Queue indices whose deadline has passed: fail them (504). */
  expire: number[];
  /** Queue indices to send now as one batch (empty: send nothing). */
  dispatch: number[];
  /** When to decide again if nothing else happens (null: only on the next arrival or free slot). */
  wakeAt: number | null;
};

export function decideBatch(queue: readonly QueuedView[], ctx: { freeSlots: number; now: number; rule: BatchRule }): BatchDecision {
  const { freeSlots, now, rule } = ctx;
  const expire: number[] = [];
  const live: number[] = [];
  for (let i = 0; i < queue.length; i++) (queue[i].deadline <= now ? expire : live).push(i);
  if (live.length === 0) return { expire, dispatch: [], wakeAt: null };

  let nextDeadline = Number.POSITIVE_INFINITY;
  for (const i of live) nextDeadline = Math.min(nextDeadline, queue[i].deadline);
  if (freeSlots <= 0) return { expire, dispatch: [], wakeAt: nextDeadline };

  // Highest priority first, then callers' turns, then arrival order (the sort is stable).
  const order = [...live].sort((a, b) => queue[b].priority - queue[a].priority || (queue[a].turn ?? 0) - (queue[b].turn ?? 0));
  const head = queue[order[0]];
  const dispatch: number[] = [];
  let rows = 0;
  let leftOver = false;
  for (const i of order) {
    if (queue[i].group !== head.group) continue;
    if (rows + queue[i].rows <= rule.maxBatchSize) {
      dispatch.push(i);
      rows += queue[i].rows;
    } else leftOver = true;
  }
  const full = rows >= rule.maxBatchSize || leftOver;
  const due = head.enqueuedAt + rule.waitMs;
  if (full || now >= due) return { expire, dispatch, wakeAt: null };
  return { expire, dispatch: [], wakeAt: Math.min(due, nextDeadline) };
}
