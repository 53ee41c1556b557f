import { type EventLoopUtilization, performance } from 'node:perf_hooks';

/**
 * Recent request latencies of one model, for the live dashboard: p50/p99 and throughput over a sliding
 * window. Bounded (a ring of the last `capacity` samples), O(n log n) only when read.
 */
export class LatencyWindow {
  private at: Float64Array;
  private ms: Float64Array;
  private next = 0;
  private count = 0;

  constructor(
    private capacity = 4096,
    private now: () => number = Date.now,
  ) {
    this.at = new Float64Array(capacity);
    this.ms = new Float64Array(capacity);
  }

  add(ms: number): void {
    this.at[this.next] = this.now();
    this.ms[this.next] = ms;
    this.next = (this.next + 1) % this.capacity;
    this.count = Math.min(this.count + 1, this.capacity);
  }

  /** Over the last `windowS` seconds: requests per second, p50 and p99 latency in ms. */
  read(windowS = 10): { perSecond: number; p50Ms: number; p99Ms: number; count: number } {
    const since = this.now() - windowS * 1000;
    const recent: number[] = [];
    for (let i = 0; i < this.count; i++) if (this.at[i] >= since) recent.push(this.ms[i]);
    recent.sort((a, b) => a - b);
    const pick = (p: number) => (recent.length ? Math.round(recent[Math.min(recent.length - 1, Math.floor(recent.length * p))] * 100) / 100 : 0);
    return { perSecond: Math.round((recent.length / windowS) * 100) / 100, p50Ms: pick(0.5), p99Ms: pick(0.99), count: recent.length };
  }
}

/**
 * The share of the last ~10 s the gateway's event loop was busy, for the dashboard: every request body
 * goes through that one thread, so near 1 the gateway itself is the limit, whatever the replicas could
 * do (bench/results/gpu-summary.md). Prometheus users read `nodejs_eventloop_time_total` instead. A mark
 * is kept at most once a second; between reads further apart than the window, it covers since the last read.
 */
export class EventLoopWindow {
  private marks: { at: number; elu: EventLoopUtilization }[] = [];

  /** `utilization`: another thread's (a Worker's `performance.eventLoopUtilization`); this thread's by default. */
  constructor(
    private windowMs = 10_000,
    private markEveryMs = 1000,
    private utilization: (current?: EventLoopUtilization, before?: EventLoopUtilization) => EventLoopUtilization = performance.eventLoopUtilization,
  ) {}

  /** Busy share, 0…1, since the oldest mark not newer than the window (since start at the first read). */
  read(): number {
    const now = performance.now();
    const current = this.utilization();
    while (this.marks.length > 1 && now - this.marks[1].at >= this.windowMs) this.marks.shift();
    const oldest = this.marks[0];
    const newest = this.marks.at(-1);
    if (!newest || now - newest.at >= this.markEveryMs) this.marks.push({ at: now, elu: current });
    return oldest ? this.utilization(current, oldest.elu).utilization : current.utilization;
  }
}
