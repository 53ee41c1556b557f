import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type * as ort from 'onnxruntime-node';

/**
 * Diagnostics for a replica's session runs, off unless asked for in the environment (the GPU benchmark
 * uses them to find where a batch's time goes under load):
 * - `INFERGATE_RUN_LOG=DIR`: one line per run in DIR/runs-PID.tsv: when it started, its rows, how long
 *   `session.run` took, how long the session sat idle before it, and whether its input buffer was a
 *   reused /dev/shm read buffer (`reused`) or a new one (from the socket, or copied across threads:
 *   its pages are touched for the first time during the run).
 * - `INFERGATE_ORT_PROFILE=DIR`: ONNX Runtime's own profile (each node's time) of every session, from its
 *   creation (warm-up included) to the `INFERGATE_ORT_PROFILE_RUNS`th run served (default 150), as
 *   DIR/ort-PID_*.json.
 */
export class RunTrace {
  private lines: string[] = [];
  private runs = 0;
  private lastEnd = 0;

  private constructor(
    private file: string | undefined,
    private profiled: { sessions: ort.InferenceSession[]; runs: number } | undefined,
  ) {}

  /** Undefined (nothing to do per run) unless the environment asks for a log or a profile. */
  static fromEnv(sessions: ort.InferenceSession[]): RunTrace | undefined {
    const dir = process.env.INFERGATE_RUN_LOG;
    const profiling = Boolean(process.env.INFERGATE_ORT_PROFILE);
    if (!dir && !profiling) return undefined;
    if (dir) mkdirSync(dir, { recursive: true });
    const runs = Number(process.env.INFERGATE_ORT_PROFILE_RUNS ?? 150);
    return new RunTrace(dir && join(dir, `runs-${process.pid}.tsv`), profiling ? { sessions, runs } : undefined);
  }

  /** The session options that turn ONNX Runtime's profiler on, where the environment asks for it. */
  static profileOptions(): ort.InferenceSession.SessionOptions {
    const dir = process.env.INFERGATE_ORT_PROFILE;
    if (!dir) return {};
    mkdirSync(dir, { recursive: true });
    return { enableProfiling: true, profileFilePrefix: join(dir, `ort-${process.pid}`) };
  }

  record(startedAt: number, rows: number, ms: number, reused: boolean): void {
    this.runs++;
    if (this.file) {
      const idle = this.lastEnd ? startedAt - this.lastEnd : 0;
      this.lines.push(`${Date.now()}\t${rows}\t${ms.toFixed(2)}\t${idle.toFixed(2)}\t${reused ? 'reused' : 'new'}`);
      // Written in groups: a write per run would be its own cost on the path being measured.
      if (this.lines.length >= 20) this.flush();
    }
    this.lastEnd = startedAt + ms;
    if (this.profiled && this.runs === this.profiled.runs) for (const s of this.profiled.sessions) s.endProfiling();
  }

  flush(): void {
    if (!this.file || this.lines.length === 0) return;
    appendFileSync(this.file, `${this.lines.join('\n')}\n`);
    this.lines = [];
  }
}
