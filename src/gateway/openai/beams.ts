import type { Context } from 'hono';
import { badInput } from '../../errors/index.js';
import { decode } from '../../models/index.js';
import { ThinkingBudget } from '../../models/thinking-budget.js';
import type { ServedModel } from '../types.js';
import { Generation, originOf, Together, usage } from './generation.js';
import { chatLogprobs, completionLogprobs, shownBy } from './logprobs.js';
import { splitReasoning, thinkingParams } from './reasoning.js';
import type { ChatRequest, CompletionRequest } from './schema.js';
import type { ToolUse } from './tools.js';

/**
 * vLLM's `use_beam_search`: each prompt's `width` beams searched on a replica (src/models/beam-search.ts), its n
 * best texts its choices (choice `p × n + i`: prompt p's i-th best), best first; a whole answer, as the best are
 * known only at the end. Usage counts every hypothesis the search returned (width per prompt). A reasoning model's
 * chat texts are split as its sampled ones are: the thinking as reasoning_content, counted as reasoning_tokens.
 * Tools (a grammar holding each token) cannot be searched: a 400 naming them, as response_format's.
 */
export async function beamSearchAnswer(
  c: Context,
  m: ServedModel,
  req: CompletionRequest | ChatRequest,
  prompts: number[][],
  maxTokens: number,
  kind: 'text_completion' | 'chat.completion',
  width: number,
  base: object,
  tools?: ToolUse,
): Promise<Response> {
  if (req.stream) throw badInput('use_beam_search answers are not streamed: which beams are best is known only at the end', 'stream', 'invalid_request_error');
  if (width > m.maxBatchSize)
    throw badInput(
      `use_beam_search with ${width} beams needs ${width} generation slots; model ${m.name} has ${m.maxBatchSize} (max_batch_size)`,
      'n',
      'invalid_request_error',
    );
  const gen = m.generation as NonNullable<ServedModel['generation']>;
  const together = new Together(c);
  const params = { ...req, beamWidth: width, format: tools?.format };
  const searches = together.start(prompts.length, (p) => new Generation(m, params, prompts[p], maxTokens, together.signal, originOf(c)));
  const results = await together.wait(Promise.all(searches.map((s) => s.result)));
  const n = req.n ?? 1;
  const shown = shownBy(gen.tokenizer, req.return_tokens_as_token_ids);
  const parser = kind === 'chat.completion' ? gen.reasoningParser : undefined;
  const choices = results.flatMap((r) =>
    (r.beams ?? []).slice(0, n).map((h) => {
      // (a text ended by a stop string is cut before it, as OpenAI's stop does; vLLM's stop_reason names it)
      const whole = decode(gen.tokenizer, h.tokens);
      const at = h.stop === undefined ? -1 : whole.indexOf(h.stop);
      const text = at < 0 ? whole : whole.slice(0, at + (req.include_stop_str_in_output ? (h.stop as string).length : 0));
      // (its tokens' log-probabilities, when asked: the search's own, at the request's temperature)
      const logprobs = h.logged ? (kind === 'chat.completion' ? chatLogprobs : completionLogprobs)(shown, h.logged) : null;
      const ended = { logprobs, finish_reason: h.finishReason, stop_reason: h.stop ?? null };
      const split = parser && splitReasoning(parser, text);
      const message = split ? { role: 'assistant', content: split.content, reasoning_content: split.reasoning || null } : { role: 'assistant', content: text };
      return kind === 'chat.completion' ? { message, ...ended } : { text, ...ended };
    }),
  );
  const promptTokens = searches.reduce((sum, s) => sum + s.promptTokens, 0);
  // (every hypothesis's thinking, as every hypothesis's tokens are counted)
  const thinkingTokens = (tokens: number[]) => {
    const thinking = new ThinkingBudget(thinkingParams(parser as NonNullable<typeof parser>), gen.tokenizer);
    for (const token of tokens) thinking.advance(token);
    return thinking.reasoningTokens;
  };
  const reasoning = parser ? results.flatMap((r) => r.beams ?? []).reduce((sum, h) => sum + thinkingTokens(h.tokens), 0) : undefined;
  return c.json({ ...base, object: kind, choices: choices.map((choice, index) => ({ index, ...choice })), usage: usage(promptTokens, results, 0, reasoning) });
}
