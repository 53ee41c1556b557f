import { z } from 'zod';
import { badInput } from '../../errors/index.js';

// OpenAI's request bodies, as far as this gateway serves them. Unknown fields are ignored (clients send
// many); known ones are checked, and an error names the field as OpenAI's `param`. A known field that would
// change the answer in a way this gateway does not serve is refused, not ignored (`unsupported`).

/** Accepts only the values that leave the field off (clients send them by default), with a 400 otherwise. */
export const unsupported = (name: string, ...off: unknown[]) =>
  z
    .unknown()
    .refine((v) => v === null || off.includes(v) || (Array.isArray(v) && v.length === 0), `${name} is not supported by this gateway`)
    .optional()
    .meta({ description: `not supported by this gateway: only null, ${off.length ? `${off.map((v) => JSON.stringify(v)).join(', ')} ` : ''}or empty passes` });

/** Most choices one request may ask for (prompts x `n`): each takes a sequence slot, as a request of its own would. */
export const MAX_CHOICES = 64;

const choices = z.array(z.string().min(1, 'a choice must not be empty')).min(1).max(1024);

const sampling = {
  model: z.string({ error: 'you must provide a model parameter' }).min(1),
  max_tokens: z.number().int().min(0, 'max_tokens must not be negative').nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  /** Not OpenAI's, but vLLM's and TGI's: only the k most likely tokens. */
  top_k: z.number().int().min(-1).nullish(), // (vLLM's -1, as 0: every token)
  /** OpenAI's service tier: flex runs below the caller's other requests (see GenerationParams). */
  service_tier: z.enum(['auto', 'default', 'flex', 'priority']).nullish(),
  /** vLLM's sampling extras: a repetition penalty over the prompt's and generated tokens, and min_p. */
  repetition_penalty: z.number().gt(0).max(10).nullish(),
  min_p: z.number().min(0).max(1).nullish(),
  seed: z.number().int().nullish(),
  stop: z.union([z.string().min(1), z.array(z.string().min(1)).max(4)]).nullish(),
  /** Choices, each a sequence of its own (seeds seed, seed + 1, …). */
  n: z.number().int().min(1).max(MAX_CHOICES).nullish(),
  stream: z.boolean().nullish(),
  /** vLLM's beam search: n (completions: best_of, if given) beams; the n best texts come back, whole answers only. */
  use_beam_search: z.boolean().nullish(),
  /** Beam search's score: log-probability / length ** length_penalty (1: per token; 0: the plain sum). */
  length_penalty: z.number().min(-10).max(10).nullish(),
  /** Beam search: when it may stop before max_tokens (Hugging Face's early_stopping: true, false, "never"). */
  early_stopping: z.union([z.boolean(), z.literal('never')]).nullish(),
  /** include_usage: a last chunk with the usage; vLLM's continuous_usage_stats (with it): the usage so far in every chunk. */
  stream_options: z.object({ include_usage: z.boolean().optional(), continuous_usage_stats: z.boolean().optional() }).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  logit_bias: z
    .record(z.string(), z.number().min(-100).max(100))
    .refine((bias) => Object.keys(bias).every((token) => /^\d+$/.test(token)), 'its keys must be token ids')
    .nullish(),
  /** Structured output: the text is a JSON object, or a document of a JSON Schema (the replica masks the rest). */
  response_format: z
    .discriminatedUnion(
      'type',
      [
        z.object({ type: z.literal('text') }),
        z.object({ type: z.literal('json_object') }),
        z.object({
          type: z.literal('json_schema'),
          json_schema: z.object({
            name: z.string().max(64).optional(),
            description: z.string().optional(),
            schema: z.union([z.record(z.string(), z.unknown()), z.boolean()]).optional(),
            strict: z.boolean().nullish(),
          }),
        }),
      ],
      { error: 'type must be "text", "json_object" or "json_schema"' },
    )
    .nullish(),
  /** vLLM's structured outputs, older spelling (extra_body): a JSON Schema, one of these texts, a regex, a GBNF grammar. */
  guided_json: z.union([z.record(z.string(), z.unknown()), z.boolean(), z.string()]).nullish(),
  guided_choice: choices.nullish(),
  guided_regex: z.string().min(1).nullish(),
  guided_grammar: z.string().min(1).nullish(),
  /** vLLM's structured outputs, newer spelling. */
  structured_outputs: z
    .object({
      json: z.union([z.record(z.string(), z.unknown()), z.boolean(), z.string()]).nullish(),
      json_object: z.boolean().nullish(),
      choice: choices.nullish(),
      regex: z.string().min(1).nullish(),
      grammar: z.string().min(1).nullish(),
      structural_tag: unsupported('structured_outputs.structural_tag'),
    })
    .nullish(),
  /** vLLM's: go on past the end-of-text token (benchmarks that need every completion max_tokens long). */
  ignore_eos: z.boolean().nullish(),
  /** vLLM's: neither end-of-text nor stop_token_ids before this many tokens. */
  min_tokens: z.number().int().min(0).nullish(),
  /** vLLM's: these tokens end the text too (not shown). */
  stop_token_ids: z.array(z.number().int().min(0)).max(64).nullish(),
  /** vLLM's: the stop string that ended the text is kept at its end. */
  include_stop_str_in_output: z.boolean().nullish(),
  /** vLLM's: the prompt shares cached prefixes only with prompts of the same salt (a tenant's own). */
  cache_salt: z.string().min(1).max(256).nullish(),
  /** vLLM's: words never generated (each as the tokenizer spells it, with and without a leading space). */
  bad_words: z.array(z.string().min(1)).max(64).nullish(),
  /** vLLM's: only these tokens may be generated (classification, multiple choice by token). */
  allowed_token_ids: z.array(z.number().int().min(0)).min(1).max(4096).nullish(),
  /** vLLM's: only the prompt's last this-many tokens are kept (left truncation). */
  truncate_prompt_tokens: z.number().int().min(1).nullish(),
  /** vLLM's: each prompt token's log-probability and this many likeliest alternatives (completions: per choice; chat: in the answer). */
  prompt_logprobs: z.number().int().min(0).max(20).nullish(),
  /** vLLM's: a reasoning model's thinking ended after this many tokens (chat with a reasoning_parser). */
  thinking_token_budget: z.number().int().min(0).nullish(),
  /** vLLM's: log-probabilities name tokens as "token_id:{id}" (exact ids, whatever their text), not by their text. */
  return_tokens_as_token_ids: z.boolean().nullish(),
  functions: unsupported('functions'),
};

export const completionSchema = z
  .object({
    ...sampling,
    /** Text, tokens, or a list of either (a batch of prompts, each answered by its own choices). */
    prompt: z.union([
      z.string(),
      z.array(z.number().int().min(0)).min(1),
      z
        .array(z.union([z.string(), z.array(z.number().int().min(0)).min(1)]))
        .min(1)
        .max(MAX_CHOICES),
    ]),
    /** The log-probabilities of each token and of this many alternatives. */
    logprobs: z.number().int().min(0).max(5).nullish(),
    /** The prompt comes back before the completion; with max_tokens 0, only the prompt (scored, with logprobs). */
    echo: z.boolean().nullish(),
    /** Candidates generated per prompt (seeds seed + i), of which the n of highest mean log-probability per token come back. */
    best_of: z.number().int().min(1).max(MAX_CHOICES).nullish(),
    tools: unsupported('tools'),
    suffix: unsupported('suffix', ''),
  })
  .refine((r) => r.max_tokens !== 0 || r.echo === true, {
    message: 'max_tokens must be at least 1 (0 only with echo: the prompt alone)',
    path: ['max_tokens'],
  });

const content = z.union([z.string(), z.array(z.object({ type: z.literal('text'), text: z.string() })).min(1)]);
const toolCall = z.object({ id: z.string(), type: z.literal('function'), function: z.object({ name: z.string(), arguments: z.string() }) });
const chatMessages = z
  .array(
    z.discriminatedUnion(
      'role',
      [
        z.object({ role: z.enum(['system', 'developer', 'user']), content }),
        // An assistant's earlier turn: text, or the tool calls it made (their results follow as tool messages); a
        // reasoning model's thinking beside it (vLLM's reasoning_content, or `reasoning`) goes to the chat template.
        z
          .object({
            role: z.literal('assistant'),
            content: content.nullish(),
            tool_calls: z.array(toolCall).nullish(),
            reasoning_content: z.string().nullish(),
            reasoning: z.string().nullish(),
          })
          .refine((m) => m.content != null || (m.tool_calls?.length ?? 0) > 0, 'an assistant message needs content or tool_calls'),
        z.object({ role: z.literal('tool'), content, tool_call_id: z.string() }),
      ],
      { error: 'role must be one of system, developer, user, assistant, tool' },
    ),
  )
  .min(1, 'messages must not be empty');

/** OpenAI's function tools: a name the model may call, and the JSON Schema of its arguments. */
const tools = z
  .array(
    z.object({
      type: z.literal('function'),
      function: z.object({
        name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, 'a tool name is 1-64 letters, digits, _ or -'),
        description: z.string().optional(),
        parameters: z.record(z.string(), z.unknown()).optional(),
        strict: z.boolean().nullish(),
      }),
    }),
  )
  .max(128)
  .refine((list) => new Set(list.map((t) => t.function.name)).size === list.length, 'tool names must be unique');
const toolChoice = z.union([z.enum(['none', 'auto', 'required']), z.object({ type: z.literal('function'), function: z.object({ name: z.string() }) })]);
/** OpenAI's reasoning efforts (chat's reasoning_effort, the Responses API's reasoning.effort). */
export const REASONING_EFFORTS = ['none', 'minimal', 'low', 'medium', 'high', 'xhigh'] as const;

/**
 * vLLM's (and transformers') chat layout switches: `add_generation_prompt` (default true) opens the assistant's turn
 * after the messages; `continue_final_message` leaves the final (assistant) message open instead, so the answer
 * continues it — a prefill, as Anthropic's API does with a final assistant message.
 */
const chatLayout = {
  add_generation_prompt: z.boolean().nullish(),
  continue_final_message: z.boolean().nullish(),
  /** More variables for the model's chat template (Qwen3's enable_thinking, say); a model without one has none to take. */
  chat_template_kwargs: z.record(z.string(), z.unknown()).nullish(),
  /**
   * OpenAI's (a reasoning model's): the chat template's `reasoning_effort` variable (gpt-oss's "Reasoning: high");
   * "none" also ends the thinking before it starts (a thinking_token_budget of 0).
   */
  reasoning_effort: z.enum(REASONING_EFFORTS).nullish(),
};

function continuesAssistant(
  r: { messages: { role: string }[]; add_generation_prompt?: boolean | null; continue_final_message?: boolean | null },
  ctx: z.RefinementCtx,
) {
  if (!r.continue_final_message) return;
  if (r.messages.at(-1)?.role !== 'assistant')
    ctx.addIssue({ code: 'custom', path: ['continue_final_message'], message: 'continue_final_message needs the final message to be the assistant’s' });
  if (r.add_generation_prompt === true)
    ctx.addIssue({ code: 'custom', path: ['continue_final_message'], message: 'continue_final_message and add_generation_prompt cannot both be true' });
}

export const chatSchema = z
  .object({
    ...sampling,
    max_completion_tokens: z.number().int().min(1).nullish(),
    messages: chatMessages,
    logprobs: z.boolean().nullish(),
    top_logprobs: z.number().int().min(0).max(20).nullish(),
    /** OpenAI's Predicted Outputs: the answer's expected text, drafted from (speculative decoding) and checked. */
    prediction: z
      .object({ type: z.literal('content'), content: z.union([z.string(), z.array(z.object({ type: z.literal('text'), text: z.string() }))]) })
      .nullish(),
    tools: tools.nullish(),
    tool_choice: toolChoice.nullish(),
    parallel_tool_calls: z.boolean().nullish(),
    ...chatLayout,
  })
  .refine((r) => r.max_tokens !== 0, { message: 'max_tokens must be at least 1', path: ['max_tokens'] })
  .superRefine(continuesAssistant)
  .refine((r) => !r.top_logprobs || r.logprobs === true, { message: 'top_logprobs requires logprobs to be true', path: ['top_logprobs'] });

/** vLLM's /tokenize: a prompt, or chat messages laid out as chat completions do. */
export const tokenizeSchema = z.object({ model: sampling.model, prompt: z.string(), add_special_tokens: z.boolean().nullish() });
/** vLLM's /tokenize of a chat, with the tools a chat request would list (tool_choice "required" or named), as its prompt would hold them. */
export const tokenizeChatSchema = z
  .object({ model: sampling.model, messages: chatMessages, tools: tools.nullish(), tool_choice: toolChoice.nullish(), ...chatLayout })
  .superRefine(continuesAssistant);
/** vLLM's /detokenize. */
export const detokenizeSchema = z.object({ model: sampling.model, tokens: z.array(z.number().int().min(0)) });

export type CompletionRequest = z.infer<typeof completionSchema>;
export type ChatRequest = z.infer<typeof chatSchema>;

export function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw badInput('the request body must be a JSON object', undefined, 'invalid_request_error');
  const result = schema.safeParse(body);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const param = issue.path.map(String).join('.') || undefined;
  const detail = issue.message.replace(/^(Invalid input|Too small|Too big): /, '');
  // Missing, whichever check failed first (a union reports "no option matched", not "required").
  const given = issue.path.reduce<unknown>((v, key) => (v === null || typeof v !== 'object' ? undefined : (v as Record<PropertyKey, unknown>)[key]), body);
  const message =
    issue.path.length > 0 && given === undefined ? `missing required parameter: ${param}` : param && !detail.startsWith(param) ? `${param}: ${detail}` : detail;
  throw badInput(message, param, 'invalid_request_error');
}
