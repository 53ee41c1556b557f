import { z } from 'zod';

// The JSON answers of GET /openapi.json's operations (200s): the fields every client reads, by the protocol's names.
// Loose objects: an answer may carry more than is listed (vLLM's extras, fields a request asked for); what is listed
// is what it has. test/openapi.test.ts checks real answers against them.

const finishReason = z.string().meta({ description: 'stop, length, tool_calls (chat), or another reason the model ended' });

/** OpenAI's usage of a generation (reasoning_tokens: a reasoning model's chats). */
const usage = z.looseObject({
  prompt_tokens: z.number().int(),
  completion_tokens: z.number().int(),
  total_tokens: z.number().int(),
  prompt_tokens_details: z.looseObject({ cached_tokens: z.number().int() }).optional(),
  completion_tokens_details: z
    .looseObject({
      reasoning_tokens: z.number().int().optional(),
      accepted_prediction_tokens: z.number().int().optional(),
      rejected_prediction_tokens: z.number().int().optional(),
    })
    .optional(),
});
const completionLogprobs = z.looseObject({
  tokens: z.array(z.string()),
  token_logprobs: z.array(z.number().nullable()),
  top_logprobs: z.array(z.record(z.string(), z.number()).nullable()),
  text_offset: z.array(z.number().int()),
});
const chatTokenLogprob = z.looseObject({ token: z.string(), logprob: z.number(), bytes: z.array(z.number().int()).nullable() });
const chatLogprobs = z.looseObject({
  content: z.array(chatTokenLogprob.extend({ top_logprobs: z.array(chatTokenLogprob) })).nullable(),
});
const toolCall = z.looseObject({
  id: z.string(),
  type: z.literal('function'),
  function: z.looseObject({ name: z.string(), arguments: z.string().meta({ description: 'the arguments, as JSON text' }) }),
});
const generationBase = { id: z.string(), created: z.number().int(), model: z.string(), usage };
/** A choice's place and how it ended (vLLM's stop_reason: the stop string or token id that ended it). */
const choiceBase = { index: z.number().int(), finish_reason: finishReason, stop_reason: z.union([z.string(), z.number().int()]).nullable().optional() };

const completion = z.looseObject({
  ...generationBase,
  object: z.literal('text_completion'),
  choices: z.array(z.looseObject({ ...choiceBase, text: z.string(), logprobs: completionLogprobs.nullable() })),
});
const chatCompletion = z.looseObject({
  ...generationBase,
  object: z.literal('chat.completion'),
  choices: z.array(
    z.looseObject({
      ...choiceBase,
      message: z.looseObject({
        role: z.literal('assistant'),
        content: z.string().nullable(),
        reasoning_content: z.string().nullable().optional().meta({ description: 'a reasoning model’s thinking (reasoning_parser)' }),
        tool_calls: z.array(toolCall).optional(),
      }),
      logprobs: chatLogprobs.nullable(),
    }),
  ),
});
const response = z.looseObject({
  id: z.string(),
  object: z.literal('response'),
  created_at: z.number().int(),
  model: z.string(),
  status: z.enum(['completed', 'incomplete', 'queued', 'in_progress', 'failed', 'cancelled']),
  output: z.array(
    z.looseObject({
      type: z.enum(['message', 'function_call', 'reasoning']),
      id: z.string(),
      content: z.array(z.looseObject({ type: z.string(), text: z.string() })).optional(),
      call_id: z.string().optional(),
      name: z.string().optional(),
      arguments: z.string().optional(),
    }),
  ),
  usage: z
    .looseObject({
      input_tokens: z.number().int(),
      output_tokens: z.number().int(),
      total_tokens: z.number().int(),
      output_tokens_details: z.looseObject({ reasoning_tokens: z.number().int() }),
    })
    .nullable(),
});
const encoderUsage = z.looseObject({ prompt_tokens: z.number().int().optional(), total_tokens: z.number().int() });
const embeddings = z.looseObject({
  object: z.literal('list'),
  model: z.string(),
  data: z.array(
    z.looseObject({
      object: z.literal('embedding'),
      index: z.number().int(),
      embedding: z.union([z.array(z.number()), z.string().meta({ description: 'encoding_format base64: little-endian float32s' })]),
    }),
  ),
  usage: encoderUsage,
});
const rerank = z.looseObject({
  id: z.string(),
  model: z.string(),
  results: z.array(z.looseObject({ index: z.number().int(), relevance_score: z.number(), document: z.looseObject({ text: z.string() }).optional() })),
  usage: encoderUsage,
});
const scores = z.looseObject({
  object: z.literal('list'),
  model: z.string(),
  data: z.array(z.looseObject({ index: z.number().int(), object: z.literal('score'), score: z.number() })),
  usage: encoderUsage,
});
const classified = z.looseObject({
  object: z.literal('list'),
  model: z.string(),
  data: z.array(z.looseObject({ index: z.number().int(), label: z.string(), probs: z.array(z.number()), num_classes: z.number().int() })),
  usage: encoderUsage,
});
const tokenized = z.looseObject({ count: z.number().int(), max_model_len: z.number().int(), tokens: z.array(z.number().int()) });
const detokenized = z.looseObject({ prompt: z.string() });
const models = z.looseObject({
  object: z.literal('list'),
  data: z.array(
    z.looseObject({
      id: z.string(),
      object: z.literal('model'),
      created: z.number().int(),
      owned_by: z.string(),
      max_model_len: z.number().int().optional(),
      parent: z.string().optional().meta({ description: 'a LoRA adapter’s model' }),
    }),
  ),
});
const message = z.looseObject({
  id: z.string(),
  type: z.literal('message'),
  role: z.literal('assistant'),
  model: z.string(),
  content: z.array(
    z.looseObject({
      type: z.enum(['text', 'tool_use', 'thinking']),
      text: z.string().optional(),
      thinking: z.string().optional(),
      id: z.string().optional(),
      name: z.string().optional(),
      input: z.record(z.string(), z.unknown()).optional(),
    }),
  ),
  stop_reason: z.string().nullable(),
  stop_sequence: z.string().nullable(),
  usage: z.looseObject({ input_tokens: z.number().int(), output_tokens: z.number().int() }),
});
const tgi = z.looseObject({
  generated_text: z.string(),
  details: z.looseObject({ finish_reason: z.string(), generated_tokens: z.number().int() }).optional().meta({ description: 'with parameters.details' }),
});
const tensor = z.looseObject({
  name: z.string(),
  datatype: z.string(),
  shape: z.array(z.number().int()),
  data: z.array(z.unknown()).optional().meta({ description: 'row-major values; absent when sent as binary data' }),
});
const inferred = z.looseObject({ model_name: z.string(), model_version: z.string().optional(), id: z.string().optional(), outputs: z.array(tensor) });
const metadataTensor = z.looseObject({ name: z.string(), datatype: z.string(), shape: z.array(z.number().int()) });
const metadata = z.looseObject({
  name: z.string(),
  versions: z.array(z.string()).optional(),
  platform: z.string(),
  inputs: z.array(metadataTensor),
  outputs: z.array(metadataTensor),
});
// Triton's extensions and the admin API.
const tritonStats = z.looseObject({
  name: z.string(),
  version: z.string(),
  last_inference: z.number().int(),
  inference_count: z.number().int(),
  execution_count: z.number().int(),
  inference_stats: z.looseObject({}),
  batch_stats: z.array(z.looseObject({ batch_size: z.number().int() })),
});
const tritonTensor = z.looseObject({ name: z.string(), data_type: z.string(), dims: z.array(z.number().int()) });
const tritonConfig = z.looseObject({
  name: z.string(),
  max_batch_size: z.number().int(),
  input: z.array(tritonTensor),
  output: z.array(tritonTensor),
});
const region = z.looseObject({ name: z.string(), key: z.string(), offset: z.number().int(), byte_size: z.number().int() });
const autoscaler = z.looseObject({
  model: z.string(),
  min_containers: z.number().int(),
  max_containers: z.number().int(),
  buffer_containers: z.number().int(),
  target_inputs: z.number().int(),
  scaledown_window: z.number(),
});
const logSettings = z.looseObject({
  log_file: z.string(),
  log_info: z.boolean(),
  log_warning: z.boolean(),
  log_error: z.boolean(),
  log_verbose_level: z.number().int(),
  log_format: z.string(),
});
const traceSettings = z.looseObject({
  trace_level: z.array(z.string()),
  trace_rate: z.string(),
  trace_count: z.string(),
  log_frequency: z.string(),
  trace_mode: z.string(),
});
const names = z.array(z.string());

// The Batch API's and the Message Batches' objects.
const file = z.looseObject({
  id: z.string(),
  object: z.literal('file'),
  bytes: z.number().int(),
  created_at: z.number().int(),
  filename: z.string(),
  purpose: z.string(),
});
const batch = z.looseObject({
  id: z.string(),
  object: z.literal('batch'),
  endpoint: z.string(),
  status: z.enum(['validating', 'in_progress', 'finalizing', 'completed', 'failed', 'expired', 'cancelling', 'cancelled']),
  input_file_id: z.string(),
  output_file_id: z.string().nullable(),
  error_file_id: z.string().nullable(),
  created_at: z.number().int(),
  request_counts: z.looseObject({ total: z.number().int(), completed: z.number().int(), failed: z.number().int() }),
});
const messageBatch = z.looseObject({
  id: z.string(),
  type: z.literal('message_batch'),
  processing_status: z.enum(['in_progress', 'canceling', 'ended']),
  request_counts: z.looseObject({
    processing: z.number().int(),
    succeeded: z.number().int(),
    errored: z.number().int(),
    canceled: z.number().int(),
    expired: z.number().int(),
  }),
  created_at: z.string(),
  ended_at: z.string().nullable(),
  expires_at: z.string(),
  cancel_initiated_at: z.string().nullable(),
  results_url: z.string().nullable(),
});
const conversation = z.looseObject({
  id: z.string(),
  object: z.literal('conversation'),
  created_at: z.number().int(),
  metadata: z.record(z.string(), z.string()),
});
const items = z.looseObject({
  object: z.literal('list'),
  data: z.array(z.looseObject({ id: z.string(), type: z.string() })),
  first_id: z.string().nullable(),
  last_id: z.string().nullable(),
  has_more: z.boolean(),
});
const list = (item: z.ZodType) => z.looseObject({ object: z.literal('list'), data: z.array(item), has_more: z.boolean() });

/**
 * Each operation's JSON answer (by its path, as OPERATIONS names it; a DELETE's by "delete PATH", and a GET's so
 * where the path's POST answers otherwise: "get PATH"); others: any object.
 */
export const ANSWERS: Record<string, z.ZodType> = {
  '/v1/completions': completion,
  '/v1/chat/completions': chatCompletion,
  '/v1/responses': response,
  '/v1/responses/{id}': response,
  '/v1/responses/{id}/input_items': items,
  'delete /v1/responses/{id}': z.looseObject({ id: z.string(), object: z.literal('response.deleted'), deleted: z.literal(true) }),
  '/v1/embeddings': embeddings,
  '/v1/rerank': rerank,
  '/v1/score': scores,
  '/classify': classified,
  '/tokenize': tokenized,
  '/detokenize': detokenized,
  '/v1/models': models,
  '/v1/messages': message,
  '/v1/messages/count_tokens': z.looseObject({ input_tokens: z.number().int() }),
  '/generate': tgi,
  '/v2/models/{model}/infer': inferred,
  '/v2/models/{model}': metadata,
  '/v2/models/{model}/ready': z.looseObject({ name: z.string(), ready: z.boolean() }),
  '/v2/models/{model}/generate': z.looseObject({ model_name: z.string(), model_version: z.string().optional(), text_output: z.string() }),
  '/v1/models/{model}:predict': z.looseObject({ predictions: z.array(z.unknown()) }),
  '/v1/conversations': conversation,
  '/v1/conversations/{id}': conversation,
  'delete /v1/conversations/{id}': z.looseObject({ id: z.string(), object: z.literal('conversation.deleted'), deleted: z.literal(true) }),
  '/v1/conversations/{id}/items': items,
  '/v1/conversations/{id}/items/{item}': z.looseObject({ id: z.string(), type: z.string() }),
  'delete /v1/conversations/{id}/items/{item}': conversation,
  '/v1/files': file,
  'get /v1/files': list(file),
  '/v1/files/{id}': file,
  'delete /v1/files/{id}': z.looseObject({ id: z.string(), object: z.literal('file'), deleted: z.literal(true) }),
  '/v1/batches': batch,
  'get /v1/batches': list(batch),
  '/v1/batches/{id}': batch,
  '/v1/batches/{id}/cancel': batch,
  '/v1/messages/batches': messageBatch,
  'get /v1/messages/batches': z.looseObject({
    data: z.array(messageBatch),
    has_more: z.boolean(),
    first_id: z.string().nullable(),
    last_id: z.string().nullable(),
  }),
  '/v1/messages/batches/{id}': messageBatch,
  '/v1/messages/batches/{id}/cancel': messageBatch,
  'delete /v1/messages/batches/{id}': z.looseObject({ id: z.string(), type: z.literal('message_batch_deleted') }),
  'delete /v2/calls/{id}': z.looseObject({ id: z.string(), status: z.enum(['deleted', 'cancelled']) }),
  '/v1/models/{model}': z.union([
    z.looseObject({ id: z.string(), object: z.literal('model'), owned_by: z.string() }),
    z.looseObject({ name: z.string(), ready: z.boolean() }).meta({ description: 'a tensor model: its status (KServe v1)' }),
  ]),
  '/info': z.looseObject({ model_id: z.string(), max_input_tokens: z.number().int(), max_total_tokens: z.number().int() }),
  '/v2': z.looseObject({ name: z.string(), version: z.string(), extensions: names }),
  '/v2/models/{model}/config': tritonConfig,
  '/v2/models/{model}/stats': z.looseObject({ name: z.string(), model_stats: z.array(tritonStats) }),
  '/v2/models/stats': z.looseObject({ model_stats: z.array(tritonStats) }),
  '/v2/repository/index': z.array(
    z.looseObject({ name: z.string(), version: z.string(), state: z.enum(['READY', 'UNAVAILABLE']), reason: z.string().optional() }),
  ),
  '/v2/systemsharedmemory/status': z.array(region),
  '/v2/systemsharedmemory/region/{region}/status': z.array(region),
  '/admin/pools': z.looseObject({ models: z.array(z.looseObject({ model: z.string() })) }),
  '/admin/stats': z.looseObject({
    at: z.string(),
    gateway: z.looseObject({ eventLoopBusy: z.number() }),
    gpus: z
      .array(
        z.looseObject({
          index: z.number().int(),
          uuid: z.string(),
          name: z.string(),
          utilization: z.number().optional(),
          memoryUsedBytes: z.number().optional(),
          memoryTotalBytes: z.number().optional(),
          powerWatts: z.number().optional(),
          powerLimitWatts: z.number().optional(),
        }),
      )
      .optional()
      .meta({ description: "nvidia-smi's readings (telemetry.gpu_metrics), where it answers; each replica then has gpuMemoryBytes" }),
    models: z.array(z.looseObject({ model: z.string(), kind: z.string(), ready: z.boolean() })),
  }),
  '/admin/models/{model}/autoscaler': autoscaler,
  '/admin/fleet': z.looseObject({
    self: z.string(),
    token: z.string(),
    discovered: z.boolean(),
    peers: z.array(z.looseObject({ url: z.string(), token: z.string(), ready: z.boolean(), ms: z.number() })),
  }),
  '/admin/reload': z.looseObject({ added: names, replaced: names, removed: names, unchanged: names }),
  '/v2/logging': logSettings,
  '/v2/trace/setting': traceSettings,
  '/v2/models/{model}/trace/setting': traceSettings,
  '/version': z.looseObject({ version: z.string() }),
  '/v2/health/live': z.looseObject({ live: z.boolean() }),
  '/v2/health/ready': z.looseObject({ ready: z.boolean() }),
};

/** An answer's JSON Schema, for the document. */
export function answerSchema(path: string, method = 'get'): object {
  const schema = method === 'delete' ? ANSWERS[`delete ${path}`] : (ANSWERS[`${method} ${path}`] ?? ANSWERS[path]);
  if (!schema) return { type: 'object' };
  const json = z.toJSONSchema(schema, { io: 'output' }) as Record<string, unknown>;
  delete json.$schema;
  return json;
}
