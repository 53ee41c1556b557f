import { describe, expect, it } from 'vitest';
import type { GenerateHooks, GenerateRequest } from '../../batcher/index.js';
import { gpt2 } from '../../models/gpt2-tokenizer.js';
import type { ServedModel } from '../types.js';
import { Generation } from './generation.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A scheduler that produces a token every ms unless the sequence is paused, like the real one between steps. */
function model(produced: { n: number }): ServedModel {
  const scheduler = {
    async generate(req: GenerateRequest, hooks: GenerateHooks) {
      while (produced.n < req.maxTokens) {
        await sleep(1);
        if (hooks.signal?.aborted) throw new Error('cancelled');
        if (hooks.paused?.()) continue;
        produced.n++;
        hooks.onToken(gpt2.encode(' word')[0]);
      }
      return { finishReason: 'length' as const, completionTokens: produced.n, queueMs: 0 };
    },
  };
  return { name: 'g', generation: { scheduler, tokenizer: gpt2, context: 100_000 } } as unknown as ServedModel;
}

describe('Generation', () => {
  it('does not buffer unboundedly for a reader that stops reading: the sequence pauses, then resumes', async () => {
    const produced = { n: 0 };
    const client = new AbortController();
    const gen = new Generation(model(produced), { max_tokens: 10_000 }, [1], 10_000, client.signal);
    gen.result.catch(() => {});
    await sleep(300);
    expect(produced.n).toBeLessThanOrEqual(64); // nobody reads: at most 64 pieces wait
    expect(produced.n).toBeGreaterThan(10);
    let read = 0;
    for await (const piece of gen) {
      expect(piece).toEqual({ text: ' word', logged: [] });
      if (++read === 200) break;
    }
    expect(produced.n).toBeGreaterThan(64); // reading let it go on
    client.abort();
  });

  it('refuses a prompt that does not leave room for max_tokens in the context', () => {
    const m = model({ n: 0 });
    (m.generation as { context: number }).context = 10;
    expect(() => new Generation(m, {}, [1, 2, 3], 8, new AbortController().signal)).toThrow(/maximum context length is 10 tokens/);
  });
});
