import { describe, expect, it } from 'vitest';
import { FairShare } from './fair-share.js';

describe('FairShare', () => {
  it("interleaves a newcomer's request with another caller's backlog, with no credit for idle time", () => {
    const fair = new FairShare();
    const bulk = [1, 2, 3, 4].map(() => fair.turn('bulk'));
    expect(bulk).toEqual([1, 2, 3, 4]);
    fair.served(1);
    expect(fair.turn('chat')).toBe(2); // beside bulk's next, not after its last
    fair.served(2);
    fair.served(3);
    fair.served(4);
    expect(fair.turn('bulk')).toBe(5);
    expect(fair.turn('late')).toBe(5); // idle until now: starts from the turn being served, no credit
  });

  it('is first come, first served for one caller (or none named)', () => {
    const fair = new FairShare();
    expect([fair.turn(undefined), fair.turn(undefined), fair.turn(undefined)]).toEqual([1, 2, 3]);
  });
});
