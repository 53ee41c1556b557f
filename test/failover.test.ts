import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODELS, startTestGateway } from './helpers.js';

// A replica killed in the middle of streams (SIGKILL: a crash, the out-of-memory killer): its sequences start again
// on the replica that replaces it, from their prompt and the tokens they had, and the streams go on to the text an
// uninterrupted run gives.
let gw: Awaited<ReturnType<typeof startTestGateway>>;
let client: OpenAI;
beforeAll(async () => {
  gw = await startTestGateway({
    models: {
      'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', batching: { timeout_ms: 60_000 }, scaling: { min_containers: 1, max_containers: 1 } },
    },
  });
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
afterAll(() => gw?.shutdown());

const stats = async () => (await fetch(`${gw.url}/v2/models/tiny-gpt/stats`)).json();

describe('a generation whose replica is lost', () => {
  it('goes on, on the replica that replaces it, to the text an uninterrupted run gives (greedy and seeded)', async () => {
    const requests = [
      { temperature: 0, frequency_penalty: 0.5 },
      // (seeded among the 5 likeliest: over this random model's nearly flat distribution, a draw among all 50257
      // tokens can tip on the last bits of a logit, which a prefill and a decode step compute in different orders)
      { temperature: 1, seed: 4, top_k: 5 },
    ].map((extra) => ({ model: 'tiny-gpt', prompt: 'The replica went away while', max_tokens: 300, ignore_eos: true, ...extra }));
    const whole = await Promise.all(requests.map(async (r) => (await client.completions.create(r as never)).choices[0].text));
    const [{ pid }] = (await stats()).replicas;
    let killed = false;
    const streamed = await Promise.all(
      requests.map(async (r) => {
        const stream = await client.completions.create({ ...r, stream: true } as never);
        let text = '';
        let chunks = 0;
        for await (const chunk of stream as unknown as AsyncIterable<OpenAI.Completion>) {
          text += chunk.choices[0]?.text ?? '';
          if (++chunks === 10 && !killed) {
            killed = true;
            process.kill(pid, 'SIGKILL');
          }
        }
        return text;
      }),
    );
    expect(killed).toBe(true);
    expect(streamed).toEqual(whole);
    const after = await stats();
    expect(after.resumed).toBe(2); // both were on the replica killed
    expect(after.replicas.map((r: { pid: number }) => r.pid)).not.toContain(pid);
  });
});
