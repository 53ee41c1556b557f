import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODELS, startTestGateway } from './helpers.js';

// Who shares cached prompts: a shared prefix cache tells a caller, by its time to first token, what another has sent
// (vLLM's cache_salt closes that side channel). Here: a request's cache_salt, and prefix_cache_scope: caller.
let gw: Awaited<ReturnType<typeof startTestGateway>>;
beforeAll(async () => {
  gw = await startTestGateway({
    auth: {
      default: 'key',
      keys: [
        { id: 'alice', secret: 'alice-secret-long-enough' },
        { id: 'bob', secret: 'bob-secret-long-enough-too' },
      ],
    },
    models: {
      shared: { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', scaling: { min_containers: 1 } },
      apart: { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', prefix_cache_scope: 'caller', scaling: { min_containers: 1 } },
    },
  });
});
afterAll(() => gw?.shutdown());

const SECRETS: Record<string, string> = { alice: 'alice-secret-long-enough', bob: 'bob-secret-long-enough-too' };
/** Prompt tokens a completion took from the prefix cache (its usage's cached_tokens). */
async function cached(who: string, model: string, prompt: string, extra: object = {}): Promise<number> {
  const res = await fetch(`${gw.url}/v1/completions`, {
    method: 'POST',
    body: JSON.stringify({ model, prompt, max_tokens: 2, temperature: 0, ...extra }),
    headers: { 'infergate-key': who, 'infergate-secret': SECRETS[who] },
  });
  expect(res.status).toBe(200);
  return (await res.json()).usage.prompt_tokens_details?.cached_tokens ?? 0;
}
const prompt = (topic: string) => `A system prompt long enough to fill a block of the prefix cache, about ${topic}, and a question.`;

describe('prefix cache isolation', () => {
  it('shares cached prompts across callers by default, but not across cache salts', async () => {
    expect(await cached('alice', 'shared', prompt('cats'))).toBe(0);
    expect(await cached('bob', 'shared', prompt('cats'))).toBeGreaterThanOrEqual(16); // alice's prompt, computed once
    expect(await cached('alice', 'shared', prompt('dogs'), { cache_salt: 'tenant-a' })).toBe(0);
    expect(await cached('alice', 'shared', prompt('dogs'), { cache_salt: 'tenant-b' })).toBe(0);
    expect(await cached('bob', 'shared', prompt('dogs'), { cache_salt: 'tenant-a' })).toBeGreaterThanOrEqual(16);
    expect(await cached('bob', 'shared', prompt('dogs'))).toBe(0); // the unsalted space never held it
  });

  it('keeps each caller its own with prefix_cache_scope: caller', async () => {
    expect(await cached('alice', 'apart', prompt('birds'))).toBe(0);
    expect(await cached('bob', 'apart', prompt('birds'))).toBe(0);
    expect(await cached('alice', 'apart', prompt('birds'))).toBeGreaterThanOrEqual(16);
    expect(await cached('bob', 'apart', prompt('birds'))).toBeGreaterThanOrEqual(16);
  });
});
