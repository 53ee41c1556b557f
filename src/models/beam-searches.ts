import { type Beam, type BeamParams, beamsDone, bestHypotheses, expandBeams, type Hypothesis, type StopOf } from './beam-search.js';

/** A decoder's sequence as a beam search sees it: its next input token, what it generated, and its beam if it is one. */
export type BeamRow = { last: number; produced: number; beam?: Beam & { id: string } };

/** What a search needs of the decoder's rows: copy one's keys and values into another, a new row like one, free one. */
export type BeamRowOps<S extends BeamRow> = {
  copy(from: S, to: S): void;
  fork(like: S, id: string): S;
  release(id: string): void;
};

type Search<S> = { params: BeamParams; live: S[]; finished: Hypothesis[]; produced: number; maxTokens: number; made: number; stopOf?: StopOf };

/**
 * The decoder's beam searches (the selection is src/models/beam-search.ts): each search's live beams are rows of
 * the decoder's KV cache — the first beam's id is the search's, the others `id#k` — and a step's end moves them:
 * the first child of a parent keeps its row, the others take the row of a beam no longer followed (or a new one)
 * with the parent's keys and values copied in, so nothing is recomputed.
 */
export class BeamSearches<S extends BeamRow> {
  private searches = new Map<string, Search<S>>();

  constructor(private rows: BeamRowOps<S>) {}

  /** `first` (just admitted, its prompt to be computed) starts a search under its id. */
  start(first: S, id: string, params: BeamParams, maxTokens: number, stopOf?: StopOf): void {
    first.beam = { id, tokens: [], logprob: 0 };
    this.searches.set(id, { params, live: [first], finished: [], produced: 0, maxTokens, made: 1, stopOf });
  }

  /** The ids a step advances: a search's as all of its live beams'. */
  expand(ids: string[]): string[] {
    return ids.flatMap((id) => this.searches.get(id)?.live.map((s) => beamOf(s).id) ?? [id]);
  }

  /**
   * After a step's runs: each search whose live beams all have their candidates takes its next beams; one that
   * ends (max_tokens, or none of its beams can beat its finished texts) answers its best texts, its rows freed.
   * One that cannot move its beams (rows for them not had: out of memory; its stop strings not read) fails alone,
   * its rows freed: the other searches, and every other sequence of the step, go on.
   */
  step(): { ended?: Record<string, Hypothesis[]>; failed?: Record<string, string> } {
    const done: { ended?: Record<string, Hypothesis[]>; failed?: Record<string, string> } = {};
    for (const [id, search] of this.searches) {
      if (!search.live.every((s) => s.beam?.candidates)) continue;
      try {
        this.advance(id, search);
      } catch (err) {
        done.failed = { ...done.failed, [id]: `its beam search failed: ${(err as Error).message}` };
        this.release(id);
        continue;
      }
      if (search.produced >= search.maxTokens || beamsDone(search.live.map(beamOf), search.finished, search.params, search.maxTokens)) {
        done.ended = { ...done.ended, [id]: bestHypotheses(search.live.map(beamOf), search.finished, search.params) };
        this.release(id);
      }
    }
    return done;
  }

  /** Frees a search's rows; whether `id` was one. */
  release(id: string): boolean {
    const search = this.searches.get(id);
    this.searches.delete(id);
    for (const s of search?.live ?? []) this.rows.release(beamOf(s).id);
    return search !== undefined;
  }

  clear(): void {
    this.searches.clear();
  }

  private advance(id: string, search: Search<S>): void {
    const parents = search.live;
    const next = expandBeams(parents.map(beamOf), search.params, search.finished, search.stopOf);
    search.produced++;
    // (read before any beam changes: a parent may have several children)
    const children = next.map((e) => ({ ...e, parent: parents[e.parent], tokens: [...beamOf(parents[e.parent]).tokens, e.token] }));
    const spare = parents.filter((_, i) => !next.some((e) => e.parent === i));
    const taken = new Set<S>();
    const forked: S[] = [];
    try {
      search.live = children.map(({ parent, token, logprob, tokens, logged }) => {
        let seq = parent;
        if (taken.has(parent)) {
          const row = spare.pop();
          seq = row ?? this.rows.fork(parent, `${id}#${search.made++}`);
          if (!row) forked.push(seq);
          this.rows.copy(parent, seq);
        }
        taken.add(seq);
        seq.last = token;
        seq.produced = search.produced;
        seq.beam = { id: beamOf(seq).id, tokens, logprob, logged };
        return seq;
      });
    } catch (err) {
      for (const s of forked) this.rows.release(beamOf(s).id); // (not among its live beams yet: freed here)
      throw err;
    }
    for (const s of spare) this.rows.release(beamOf(s).id);
  }
}

/** A beam search's sequence's beam. */
const beamOf = <S extends BeamRow>(s: S) => s.beam as NonNullable<S['beam']>;
