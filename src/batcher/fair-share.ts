/**
 * Callers take turns (start-time fair queuing, equal shares): each request gets a turn number, one past the
 * later of its caller's previous request and the turn being served now. Served in turn order, a caller with a
 * backlog of 100 and one with a single request alternate, instead of the single one waiting behind all 100;
 * a caller that was idle gets no credit for it. One caller alone (or none named) is first come, first served.
 */
export class FairShare {
  /** The latest turn served. */
  private now = 0;
  private last = new Map<string, number>();

  /** The turn of a new request from `caller`. */
  turn(caller: string | undefined): number {
    const key = caller ?? '';
    const turn = Math.max(this.now, this.last.get(key) ?? 0) + 1;
    this.last.set(key, turn);
    return turn;
  }

  /** A request's turn came (it was dispatched). */
  served(turn: number): void {
    if (turn <= this.now) return;
    this.now = turn;
    // Callers whose last turn has passed start from `now` anyway: forget them (the map stays as small as the backlog).
    if (this.last.size > 1024) for (const [k, t] of this.last) if (t <= this.now) this.last.delete(k);
  }
}
