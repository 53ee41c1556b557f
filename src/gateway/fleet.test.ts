import { describe, expect, it } from 'vitest';
import { Fleet } from './fleet.js';

describe('Fleet', () => {
  it("knows whose an id is by its token: another gateway's, never its own, never one it was not told of", () => {
    const urls = ['http://gw-0.gw:8080', 'http://gw-1.gw:8080/'];
    const [zero, one] = urls.map((self) => new Fleet(self, urls));
    expect(zero.peerOf(one.newId('resp'))).toBe('http://gw-1.gw:8080');
    expect(one.peerOf(zero.newUuid())).toBe('http://gw-0.gw:8080');
    expect(zero.peerOf(zero.newId('conv'))).toBeUndefined();
    expect(zero.peerOf(new Fleet('http://elsewhere:8080', urls).newId('resp'))).toBeUndefined();
    expect(zero.peerOf('resp_0123')).toBeUndefined();
  });

  it('places a key on one gateway that every gateway agrees on; one gateway more moves only its share', () => {
    const three = ['http://g0:1', 'http://g1:1', 'http://g2:1'];
    const keys = Array.from({ length: 3000 }, (_, i) => `vad\0app\0${i}`);
    const placed = (urls: string[]) => {
      const fleets = urls.map((self) => new Fleet(self, urls));
      return keys.map((key) => {
        const holders = fleets.map((f) => f.holderOf(key) ?? f.self);
        expect(new Set(holders).size).toBe(1); // (every gateway says the same)
        return holders[0];
      });
    };
    const before = placed(three);
    for (const url of three) expect(before.filter((h) => h === url).length).toBeGreaterThan(800); // (about a third each)
    const after = placed([...three, 'http://g3:1']);
    const moved = keys.filter((_, i) => after[i] !== before[i]);
    expect(keys.every((_, i) => after[i] === before[i] || after[i] === 'http://g3:1')).toBe(true); // (only to the newcomer)
    expect(moved.length).toBeGreaterThan(500); // (about a quarter)
    expect(moved.length).toBeLessThan(1000);
  });

  it('finds its peers by DNS (discover) and looks again for an id of a gateway it does not know yet, at most once a second', async () => {
    let found = ['http://10.0.0.1:8080', 'http://10.0.0.2:8080'];
    let lookups = 0;
    const fleet = new Fleet('http://10.0.0.1:8080', {
      find: async () => {
        lookups++;
        return found;
      },
      everyMs: 60_000,
    });
    await fleet.start();
    expect(fleet.known()).toEqual(['http://10.0.0.2:8080']);
    // A pod scaled out since: its ids are known once the fleet looks again.
    const id = new Fleet('http://10.0.0.3:8080', found).newId('resp');
    found = [...found, 'http://10.0.0.3:8080'];
    expect(await fleet.peerOfNow(id)).toBeUndefined(); // (looked less than a second ago)
    await new Promise((resolve) => setTimeout(resolve, 1100));
    expect(await fleet.peerOfNow(id)).toBe('http://10.0.0.3:8080');
    expect(lookups).toBe(2);
    // A lookup that fails keeps those known.
    const failing = new Fleet('http://10.0.0.1:8080', { find: async () => Promise.reject(new Error('SERVFAIL')), everyMs: 60_000 });
    const errors: string[] = [];
    await failing.start((err) => errors.push(err.message));
    expect(errors).toEqual(['SERVFAIL']);
    expect(failing.known()).toEqual([]);
    fleet.stop();
    failing.stop();
  });
});
