import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODELS, startTestGateway, testIssuer } from './helpers.js';

// A caller's priority comes from its credential: a token's priority_claim, or its key's priority. Higher goes first.
const { jwt, token } = testIssuer();
const SECRET = 'a-long-enough-shared-secret';
let gw: Awaited<ReturnType<typeof startTestGateway>>;
beforeAll(async () => {
  gw = await startTestGateway({
    auth: {
      default: 'jwt',
      jwt: {
        ...jwt,
        priority_claim: 'tier',
        priorities: { gold: 10 },
      },
      keys: [{ id: 'pager', secret: SECRET, priority: 20 }],
    },
    endpoints: [{ path: '/paged', model: 'slow', protocol: 'kserve', auth: 'key' }],
    models: {
      // One request at a time, tens of ms each: a backlog forms, and its order shows.
      slow: { path: `${MODELS}slow.onnx`, device: 'cpu', threads: 1, batching: { max_batch_size: 1, wait_ms: 0 }, scaling: { min_containers: 1 } },
    },
  });
});
afterAll(() => gw?.shutdown());

describe('priorities from credentials', () => {
  it("serve a key's priority, then a gold token's, before the backlog of a token without a tier", async () => {
    const body = JSON.stringify({ inputs: [{ name: 'x', shape: [1, 16], datatype: 'FP32', data: new Array(16).fill(0.5) }] });
    const order: string[] = [];
    const send = (who: string, url: string, headers: Record<string, string>) =>
      fetch(url, { method: 'POST', body, headers }).then((res) => {
        expect(res.status).toBe(200);
        order.push(who);
      });
    const plain = { authorization: `Bearer ${token({})}` };
    const stats = async () => (await fetch(`${gw.url}/v2/models/slow/stats`, { headers: plain })).json();
    const queued = async (n: number) => {
      for (let i = 0; i < 400 && (await stats()).queuedRequests < n; i++) await new Promise((r) => setTimeout(r, 5));
    };
    const { pid } = (await stats()).replicas[0];
    process.kill(pid, 'SIGSTOP'); // the first request stays in flight while the others queue
    let all: Promise<unknown>;
    try {
      const backlog = Array.from({ length: 6 }, (_, i) => send(`plain-${i}`, `${gw.url}/v2/models/slow/infer`, plain));
      await queued(5);
      const gold = send('gold', `${gw.url}/v2/models/slow/infer`, { authorization: `Bearer ${token({ tier: 'gold' })}` });
      const paged = send('pager', `${gw.url}/paged`, { 'infergate-key': 'pager', 'infergate-secret': SECRET });
      await queued(7);
      all = Promise.all([...backlog, gold, paged]);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await all;
    // The first plain request was running already; the key (20) and the gold token (10) go before the rest.
    expect(order.slice(1, 3)).toEqual(['pager', 'gold']);
  });
});
