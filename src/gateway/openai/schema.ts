import { z } from 'zod';
import { badInput } from '../../errors/index.js';

// OpenAI's request bodies, as far as this gateway serves them. Unknown fields are ignored (clients send
// many); known ones are checked, and an error names the field as OpenAI's `param`.

const sampling = {
  model: z.string({ error: 'you must provide a model parameter' }).min(1),
  max_tokens: z.number().int().min(1, 'max_tokens must be at least 1').nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  /** Not OpenAI's, but vLLM's and TGI's: only the k most likely tokens. */
  top_k: z.number().int().min(0).nullish(),
  seed: z.number().int().nullish(),
  stop: z.union([z.string().min(1), z.array(z.string().min(1)).max(4)]).nullish(),
  n: z.literal(1, 'only n=1 is supported').nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).nullish(),
};

export const completionSchema = z.object({
  ...sampling,
  prompt: z.union([z.string(), z.array(z.string()).length(1, 'only one prompt per request is supported'), z.array(z.number().int().min(0)).min(1)]),
});

const content = z.union([z.string(), z.array(z.object({ type: z.literal('text'), text: z.string() })).min(1)]);
export const chatSchema = z.object({
  ...sampling,
  max_completion_tokens: z.number().int().min(1).nullish(),
  messages: z.array(z.object({ role: z.enum(['system', 'developer', 'user', 'assistant']), content })).min(1, 'messages must not be empty'),
});

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
  const message =
    issue.code === 'invalid_type' && issue.input === undefined
      ? `missing required parameter: ${param}`
      : param && !detail.startsWith(param)
        ? `${param}: ${detail}`
        : detail;
  throw badInput(message, param, 'invalid_request_error');
}
