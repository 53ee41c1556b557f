import { describe, expect, it } from 'vitest';
import { EventLoopWindow } from './window.js';

const busyFor = (ms: number) => {
  const end = performance.now() + ms;
  while (performance.now() < end);
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('EventLoopWindow', () => {
  it('says how much of the window the event loop was busy, and falls as it idles', async () => {
    const window = new EventLoopWindow(10_000, 1000);
    window.read();
    busyFor(300);
    const busy = window.read();
    expect(busy).toBeGreaterThan(0.8);
    await sleep(600);
    const later = window.read();
    expect(later).toBeLessThan(busy - 0.3); // ~0.3 s busy of ~0.9 s
    expect(later).toBeGreaterThan(0.1); // the busy stretch still counts (a slow timer on a loaded machine only lengthens the idle part)
  });

  it('forgets what is older than its window', async () => {
    const window = new EventLoopWindow(200, 50);
    window.read();
    busyFor(150);
    expect(window.read()).toBeGreaterThan(0.8);
    for (let i = 0; i < 6; i++) {
      await sleep(60);
      window.read();
    }
    expect(window.read()).toBeLessThan(0.15); // the busy stretch is more than 200 ms ago (counted, it would be ~0.3)
  });
});
