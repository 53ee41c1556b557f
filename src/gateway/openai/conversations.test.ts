import { describe, expect, it } from 'vitest';
import type { Caller } from '../auth/middleware.js';
import { Conversations } from './conversations.js';

const alice = { kind: 'key', id: 'key:alice', subject: 'alice' } as Caller;
const bob = { kind: 'key', id: 'key:bob', subject: 'bob' } as Caller;
const item = (id: string, text = 'x') => ({ id, type: 'message', role: 'user', content: [{ type: 'input_text', text }] });

describe('Conversations', () => {
  it("keeps a caller's conversations from every other caller", () => {
    const kept = new Conversations({ keepMs: 60_000, maxBytes: 2 ** 20 });
    kept.create('conv_a', alice, { topic: 'x' }, [item('m1')]);
    expect(kept.find('conv_a', alice).items).toEqual([item('m1')]);
    expect(() => kept.find('conv_a', bob, 'conversation')).toThrow(/no conversation conv_a/);
  });

  it('refuses items past its room whole (a 507), never dropping another conversation; a removed item frees its room', () => {
    const one = Buffer.byteLength(JSON.stringify([item('m1', 'y'.repeat(100))]));
    const kept = new Conversations({ keepMs: 60_000, maxBytes: 2 * one + 10 });
    const a = kept.create('conv_a', alice, undefined, [item('m1', 'y'.repeat(100))]);
    kept.create('conv_b', alice, undefined, [item('m2', 'y'.repeat(100))]);
    expect(() => kept.append(a, [item('m3', 'y'.repeat(100))])).toThrow(expect.objectContaining({ status: 507 }));
    expect(() => kept.create('conv_c', alice, undefined, [item('m4', 'y'.repeat(100))])).toThrow(expect.objectContaining({ status: 507 }));
    expect(() => kept.find('conv_c', alice)).toThrow(/no conversation/); // (refused whole: not kept)
    expect([kept.find('conv_a', alice).items.length, kept.find('conv_b', alice).items.length]).toEqual([1, 1]);
    kept.removeItem(a, 'm1');
    expect(() => kept.removeItem(a, 'm1')).toThrow(expect.objectContaining({ status: 404 }));
    kept.append(a, [item('m3', 'y'.repeat(100))]);
    expect(kept.stats().conversations).toBe(2);
    // Forgotten: its room is free again, and a response still running that ends on it adds nothing.
    kept.forget(a);
    kept.append(a, [item('m5')]);
    expect(kept.stats().bytes).toBe(kept.find('conv_b', alice).bytes);
  });

  it('forgets a conversation its keep time after its last use, not after its creation', async () => {
    const kept = new Conversations({ keepMs: 120, maxBytes: 2 ** 20 });
    kept.create('conv_a', alice, undefined, []);
    await new Promise((resolve) => setTimeout(resolve, 80));
    kept.find('conv_a', alice); // (used: kept 120 ms from now)
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(kept.find('conv_a', alice).id).toBe('conv_a');
    await new Promise((resolve) => setTimeout(resolve, 160));
    expect(() => kept.find('conv_a', alice)).toThrow(/no conversation/);
  });
});
