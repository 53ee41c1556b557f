import { describe, expect, it } from 'vitest';
import type { Caller } from '../auth/middleware.js';
import { StoredResponses } from './stored-responses.js';

const alice = { kind: 'key', id: 'key:alice', subject: 'alice' } as Caller;
const bob = { kind: 'key', id: 'key:bob', subject: 'bob' } as Caller;
const answer = (text: string) => ({ output: [{ type: 'message', role: 'assistant', content: [{ type: 'output_text', text }] }] });

describe('StoredResponses (store: true)', () => {
  it("keeps a caller's responses from every other caller", () => {
    const store = new StoredResponses({ keepMs: 60_000, maxBytes: 2 ** 20 });
    store.keep('resp_a', alice, [{ role: 'user', content: 'Hi' }], answer('Hello'));
    expect(store.find('resp_a', alice).response).toEqual(answer('Hello'));
    expect(() => store.find('resp_a', bob)).toThrow(/no response resp_a is kept/);
    expect(() => store.forget('resp_a', bob)).toThrow(/no response/);
    store.forget('resp_a', alice);
    expect(() => store.find('resp_a', alice)).toThrow(/no response/);
  });

  it('drops the oldest when a new one does not fit, and forgets each after its keep time', async () => {
    const one = Buffer.byteLength(JSON.stringify([])) + Buffer.byteLength(JSON.stringify(answer('x'.repeat(100))));
    const store = new StoredResponses({ keepMs: 100, maxBytes: 2 * one });
    for (const id of ['r1', 'r2', 'r3']) store.keep(id, alice, [], answer('x'.repeat(100)));
    expect(() => store.find('r1', alice)).toThrow(/no response/);
    expect(store.find('r3', alice).id).toBe('r3');
    store.keep('huge', alice, [], answer('x'.repeat(1000))); // (larger than all of the room: not kept, nothing dropped)
    expect(() => store.find('huge', alice)).toThrow(/no response/);
    expect(store.find('r2', alice).id).toBe('r2');
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(() => store.find('r3', alice)).toThrow(/no response/);
  });
});
