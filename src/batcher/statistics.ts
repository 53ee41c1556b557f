// Triton's statistics extension (GET /v2/models[/{m}]/stats → {"model_stats": [...]}): what perf_analyzer
// and Triton's clients read for the server's side of a measurement — counts, and cumulative durations in ns.

/** A count and the total time of what was counted. */
export type DurationStat = { count: number; ns: number };
/** The phases of one model execution, in ms: preparing its inputs, the model itself, taking its outputs apart. */
export type Phases = { input: number; infer: number; output: number };
type ComputeStats = { compute_input: DurationStat; compute_infer: DurationStat; compute_output: DurationStat };

export type TritonModelStat = {
  name: string;
  version: string;
  /** When a request was last answered, ms since the epoch (0: never). */
  last_inference: number;
  /** Inferences answered: rows of a batched model (a request of 4 rows counts 4), sequences of a generative one. */
  inference_count: number;
  /** Model executions: batches, or generation steps. */
  execution_count: number;
  inference_stats: { success: DurationStat; fail: DurationStat; queue: DurationStat; cache_hit: DurationStat; cache_miss: DurationStat } & ComputeStats;
  batch_stats: ({ batch_size: number } & ComputeStats)[];
};

const stat = (): DurationStat => ({ count: 0, ns: 0 });
const computeStats = (): ComputeStats => ({ compute_input: stat(), compute_infer: stat(), compute_output: stat() });
const add = (s: DurationStat, ms: number) => {
  s.count++;
  s.ns += Math.round(ms * 1e6);
};
const addPhases = (s: ComputeStats, p: Phases) => {
  add(s.compute_input, p.input);
  add(s.compute_infer, p.infer);
  add(s.compute_output, p.output);
};

/** One model's statistics since the gateway started, kept as Triton keeps them. */
export class ModelStatistics {
  constructor(private readonly version = '1') {}
  private lastInference = 0;
  private inferenceCount = 0;
  private executionCount = 0;
  private readonly inference = { success: stat(), fail: stat(), queue: stat(), cache_hit: stat(), cache_miss: stat(), ...computeStats() };
  private readonly bySize = new Map<number, ComputeStats>();

  /** A request answered `ms` after it arrived, `queueMs` of it waiting; `phases`: the execution it was part of. */
  succeeded(inferences: number, ms: number, queueMs: number, phases: Phases): void {
    this.lastInference = Date.now();
    this.inferenceCount += inferences;
    add(this.inference.success, ms);
    add(this.inference.queue, queueMs);
    addPhases(this.inference, phases);
  }

  /** A request failed (refused, timed out, or its batch failed) `ms` after it arrived. */
  failed(ms: number): void {
    add(this.inference.fail, ms);
  }

  /**
   * A request answered from the response cache: `lookupMs` to find its answer, `waitMs` waiting for it (the same
   * request on its way). Triton counts it a success, and in `queue`.
   */
  cacheHit(lookupMs: number, waitMs: number): void {
    this.lastInference = Date.now();
    add(this.inference.cache_hit, lookupMs);
    add(this.inference.queue, waitMs);
    add(this.inference.success, lookupMs + waitMs);
  }

  /** A request not in the response cache: `ms` to look for it and to keep its answer. */
  cacheMiss(ms: number): void {
    add(this.inference.cache_miss, ms);
  }

  /** One model execution of `size` (rows in a batch, sequences in a step). */
  executed(size: number, phases: Phases): void {
    this.executionCount++;
    const s = this.bySize.get(size) ?? computeStats();
    this.bySize.set(size, s);
    addPhases(s, phases);
  }

  toTriton(name: string): TritonModelStat {
    const copy = <T>(x: T): T => structuredClone(x);
    return {
      name,
      version: this.version,
      last_inference: this.lastInference,
      inference_count: this.inferenceCount,
      execution_count: this.executionCount,
      inference_stats: copy(this.inference),
      batch_stats: [...this.bySize.entries()].sort((a, b) => a[0] - b[0]).map(([batch_size, s]) => ({ batch_size, ...copy(s) })),
    };
  }
}
