import type { Tokenizer } from '../../models/index.js';
import type { LoggedToken } from './generation.js';

// Log-probabilities in OpenAI's two shapes. A token's text is its bytes decoded alone: a byte-level BPE
// token that ends inside a UTF-8 character shows a replacement character there (chat also gives the bytes).

const textOf = (tokenizer: Tokenizer, token: number) => new TextDecoder().decode(tokenizer.bytes(token));

/**
 * The tokenizer log-probabilities are shown with: with vLLM's `return_tokens_as_token_ids`, each token reads
 * "token_id:{id}" (text and bytes), so a client gets exact ids whatever the tokens' texts.
 */
export function shownBy(tokenizer: Tokenizer, asIds: boolean | null | undefined): Tokenizer {
  if (!asIds) return tokenizer;
  const utf8 = new TextEncoder();
  return { ...tokenizer, bytes: (token) => utf8.encode(`token_id:${token}`) };
}

/** Chat's `logprobs`: `{content: [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}`. */
export function chatLogprobs(tokenizer: Tokenizer, logged: LoggedToken[]) {
  const entry = (token: number, logprob: number) => ({ token: textOf(tokenizer, token), logprob, bytes: Array.from(tokenizer.bytes(token)) });
  return {
    content: logged.map((t) => ({ ...entry(t.token, t.logprob as number), top_logprobs: (t.top ?? []).map(([token, logprob]) => entry(token, logprob)) })),
  };
}

/**
 * Completions' `logprobs`: `{tokens, token_logprobs, top_logprobs, text_offset}`; `offset` is where the
 * first token's text starts in the completion (a stream's chunks continue from the previous one's end).
 */
export function completionLogprobs(tokenizer: Tokenizer, logged: LoggedToken[], offset = 0) {
  const tokens = logged.map((t) => textOf(tokenizer, t.token));
  const text_offset = tokens.map((text) => {
    const at = offset;
    offset += text.length;
    return at;
  });
  const top_logprobs = logged.map((t) => t.top && Object.fromEntries(t.top.map(([token, logprob]) => [textOf(tokenizer, token), logprob])));
  return { tokens, token_logprobs: logged.map((t) => t.logprob), top_logprobs, text_offset };
}

/** vLLM's `prompt_logprobs`: null for the first prompt token (nothing precedes it), then each one's as vllmLogprobs shows it. */
export const promptLogprobsOf = (tokenizer: Tokenizer, logged: LoggedToken[]) => [null, ...vllmLogprobs(tokenizer, logged.slice(1))];

/**
 * Triton's vLLM backend's `logprobs` output (vLLM's Logprob objects): per token, `{token id: {logprob, rank,
 * decoded_token}}` for the drawn token and the most likely ones (rank 1 the likeliest).
 */
export function vllmLogprobs(tokenizer: Tokenizer, logged: LoggedToken[]) {
  const entry = (logprob: number | null, rank: number | null, token: number) => ({ logprob, rank, decoded_token: textOf(tokenizer, token) });
  return logged.map((t) => ({
    ...Object.fromEntries((t.top ?? []).map(([token, logprob], i) => [token, entry(logprob, i + 1, token)])),
    [t.token]: entry(t.logprob, t.rank, t.token),
  }));
}
