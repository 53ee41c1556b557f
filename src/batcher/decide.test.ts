import { describe, expect, it } from 'vitest';
import { type BatchDecision, decideBatch, type QueuedView } from './decide.js';

const rule = { maxBatchSize: 4, waitMs: 10 };
const q = (rows: number, enqueuedAt: number, extra: Partial<QueuedView> = {}): QueuedView => ({
  rows,
  group: 'a',
  enqueuedAt,
  deadline: enqueuedAt + 1000,
  priority: 0,
  ...extra,
});

describe('decideBatch', () => {
  const cases: [string, QueuedView[], { freeSlots: number; now: number }, BatchDecision][] = [
    ['empty queue: nothing to do', [], { freeSlots: 1, now: 0 }, { expire: [], dispatch: [], wakeAt: null }],
    ['one early request waits for company until wait_ms', [q(1, 0)], { freeSlots: 1, now: 3 }, { expire: [], dispatch: [], wakeAt: 10 }],
    ['wait_ms passed: send what is there', [q(1, 0), q(1, 5)], { freeSlots: 1, now: 10 }, { expire: [], dispatch: [0, 1], wakeAt: null }],
    ['a full batch goes at once', [q(1, 0), q(2, 1), q(1, 2)], { freeSlots: 1, now: 2 }, { expire: [], dispatch: [0, 1, 2], wakeAt: null }],
    ['rows, not requests, fill a batch; the rest waits', [q(3, 0), q(3, 1)], { freeSlots: 1, now: 1 }, { expire: [], dispatch: [0], wakeAt: null }],
    [
      'a smaller later request fills the gap (first fit)',
      [q(3, 0), q(2, 1), q(1, 2)],
      { freeSlots: 1, now: 2 },
      { expire: [], dispatch: [0, 2], wakeAt: null },
    ],
    ['no free replica slot: keep accumulating until a deadline', [q(1, 0), q(1, 1)], { freeSlots: 0, now: 50 }, { expire: [], dispatch: [], wakeAt: 1000 }],
    [
      'other shapes are batched separately',
      [q(1, 0), q(1, 1, { group: 'b' }), q(1, 2)],
      { freeSlots: 1, now: 20 },
      { expire: [], dispatch: [0, 2], wakeAt: null },
    ],
    [
      'past its deadline: expire, whatever the slots',
      [q(1, 0, { deadline: 5 }), q(1, 1)],
      { freeSlots: 0, now: 5 },
      { expire: [0], dispatch: [], wakeAt: 1001 },
    ],
    ['expired requests do not hold a batch back', [q(1, 0, { deadline: 5 }), q(1, 4)], { freeSlots: 1, now: 6 }, { expire: [0], dispatch: [], wakeAt: 14 }],
    ['higher priority goes first', [q(3, 0), q(2, 1, { priority: 1 })], { freeSlots: 1, now: 20 }, { expire: [], dispatch: [1], wakeAt: null }],
    [
      'within a priority, earlier turns first (a caller beside another one backlog); then arrival',
      [q(1, 0, { turn: 2 }), q(1, 1, { turn: 3 }), q(1, 2, { turn: 4 }), q(1, 5, { turn: 2 }), q(1, 6, { turn: 1, priority: -1 })],
      { freeSlots: 1, now: 20 },
      { expire: [], dispatch: [0, 3, 1, 2], wakeAt: null },
    ],
    [
      "a full batch of another shape does not wait behind the head's wait_ms",
      [q(1, 0), q(4, 2, { group: 'b' })],
      { freeSlots: 1, now: 2 },
      { expire: [], dispatch: [1], wakeAt: null },
    ],
    [
      'each shape waits by its own oldest request (one run again keeps its arrival)',
      [q(1, 5), q(1, 0, { group: 'b' })],
      { freeSlots: 1, now: 11 },
      { expire: [], dispatch: [1], wakeAt: null },
    ],
    [
      'a ready batch of a lower priority does not take the slot a waiting higher one will want',
      [q(1, 0, { group: 'b', priority: -1000 }), q(1, 95, { priority: 10 })],
      { freeSlots: 1, now: 100 },
      { expire: [], dispatch: [], wakeAt: 105 },
    ],
    [
      'a request overtaken by a higher priority still waits only its own wait_ms',
      [q(1, 0), q(1, 8, { priority: 1 })],
      { freeSlots: 1, now: 10 },
      { expire: [], dispatch: [1, 0], wakeAt: null },
    ],
    ['wake for the nearer of wait_ms and a deadline', [q(1, 0, { deadline: 4 })], { freeSlots: 1, now: 1 }, { expire: [], dispatch: [], wakeAt: 4 }],
  ];
  it.each(cases)('%s', (_name, queue, ctx, expected) => {
    expect(decideBatch(queue, { ...ctx, rule })).toEqual(expected);
  });

  it('wait_ms 0 sends every request at once', () => {
    expect(decideBatch([q(1, 0)], { freeSlots: 1, now: 0, rule: { maxBatchSize: 4, waitMs: 0 } }).dispatch).toEqual([0]);
  });
});
