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
  // A batch per group (first fit in that order), groups in the order of their first request. The first that is
  // ready goes: full, or its oldest request has waited wait_ms — a full batch of another shape does not wait
  // behind the head's timer, and a request's wait is its own, not that of a later one ahead of it by priority.
  const batches = new Map<string, { dispatch: number[]; rows: number; leftOver: boolean; since: number }>();
  for (const i of order) {
    const { group, rows, enqueuedAt } = queue[i];
    const batch = batches.get(group) ?? { dispatch: [], rows: 0, leftOver: false, since: enqueuedAt };
    batches.set(group, batch);
    if (batch.rows + rows <= rule.maxBatchSize) {
      batch.dispatch.push(i);
      batch.rows += rows;
      batch.since = Math.min(batch.since, enqueuedAt);
    } else batch.leftOver = true;
  }
  // A ready batch goes ahead of one still waiting for company only if it ranks with it (priority and turn): a
  // lower priority's, or a later turn's, does not take the slot the waiting one will want.
  let wakeAt = nextDeadline;
  let waiting: QueuedView | undefined;
  for (const { dispatch, rows, leftOver, since } of batches.values()) {
    const due = since + rule.waitMs;
    const first = queue[dispatch[0]];
    const ranks = !waiting || (first.priority === waiting.priority && (first.turn ?? 0) === (waiting.turn ?? 0));
    const ready = rows >= rule.maxBatchSize || leftOver || now >= due;
    if (ready && ranks) return { expire, dispatch, wakeAt: null };
    waiting ??= first;
    if (!ready) wakeAt = Math.min(wakeAt, due); // (one ready but held goes after the waiting one: no timer of its own)
  }
  return { expire, dispatch: [], wakeAt };
}
