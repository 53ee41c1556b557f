import { z } from 'zod';
import { autoscalingPatch } from './admin.js';
import { vadQuerySchema } from './audio.js';
import { waitQuery } from './calls.js';
import { tritonGenerateSchema } from './kserve/generate.js';
import { loadRequest, unloadRequest } from './lora.js';
import { ocrQuerySchema } from './ocr.js';
import { countTokensSchema, messagesSchema } from './openai/anthropic.js';
import { batchCreateSchema, batchesQuery, filesQuery } from './openai/batches.js';
import { conversationItemsSchema, conversationSchema, conversationUpdateSchema, itemsQuery } from './openai/conversations.js';
import { embeddingsSchema } from './openai/embeddings.js';
import { messageBatchesQuery, messageBatchSchema } from './openai/message-batches.js';
import { responsesSchema } from './openai/responses-input.js';
import { retrieveQuery } from './openai/responses-kept.js';
import { chatSchema, completionSchema, detokenizeSchema, tokenizeChatSchema, tokenizeSchema } from './openai/schema.js';
import { classifySchema, rerankSchema, scoreSchema } from './openai/scoring.js';
import { tgiRequestSchema } from './tgi.js';
import type { ServedModel } from './types.js';

// The operations /openapi.json describes (openapi.ts builds the document from them): every route the gateway
// serves, what it takes and what it answers. test/openapi.test.ts checks that no route is left out.

/** KServe v2's inference request (its JSON; the binary extension's header is the same, `data` then left out). The route reads it by hand. */
const DATATYPES = ['BOOL', 'UINT8', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64', 'FP16', 'FP32', 'FP64', 'BYTES'] as const;
const parameters = z.record(z.string(), z.union([z.string(), z.number(), z.boolean()]));
const kserveInferSchema = z.object({
  id: z.string().optional(),
  parameters: parameters.optional(),
  inputs: z
    .array(
      z.object({
        name: z.string(),
        shape: z.array(z.number().int().min(0)),
        datatype: z.enum(DATATYPES),
        parameters: parameters.optional(),
        data: z.array(z.unknown()).optional().meta({ description: 'the values, row-major (nested arrays are flattened); absent with binary_data_size' }),
      }),
    )
    .min(1),
  outputs: z.array(z.object({ name: z.string(), parameters: parameters.optional() })).optional(),
});
const kserveV1Schema = z.object({ instances: z.array(z.unknown()).min(1) });
// Bodies of Triton's extensions (read by hand, as Triton's are).
const readyOnly = z.object({ ready: z.boolean().optional().meta({ description: 'true: only the models ready' }) });
const loadParameters = z.object({
  parameters: z.object({}).optional().meta({ description: 'none is taken: a model loads as the config has it' }),
});
const logSettings = z
  .object({
    log_info: z.boolean(),
    log_warning: z.boolean(),
    log_error: z.boolean(),
    log_verbose_level: z.number().int().min(0),
    log_format: z.literal('default'),
  })
  .partial()
  .strict();
const traceSettings = z
  .object({
    trace_level: z.array(z.enum(['OFF', 'TIMESTAMPS'])),
    trace_rate: z.union([z.string(), z.number()]),
    trace_count: z.union([z.string(), z.number()]),
    log_frequency: z.union([z.string(), z.number()]),
    trace_mode: z.literal('opentelemetry'),
  })
  .partial()
  .meta({ description: 'a model’s setting null: back to the global one' });
const sharedMemoryRegion = z.object({
  key: z.string().meta({ description: 'the POSIX shared-memory object, like /my_region' }),
  offset: z.number().int().min(0).optional(),
  byte_size: z.number().int().positive(),
});

export type Kind = 'generative' | 'embedding' | 'classifier' | 'tensor';
export const kindOf = (m: ServedModel): Kind => (m.generation ? 'generative' : m.embedding ? 'embedding' : m.classifier ? 'classifier' : 'tensor');

/** How an operation's errors come back. */
export type ErrorShape = 'openai' | 'kserve' | 'anthropic' | 'tgi';
export type Operation = {
  method: 'get' | 'post' | 'delete';
  path: string;
  summary: string;
  tag: string;
  /** Which models it serves (the `model` field's, or the path's {model}): those of these kinds, or those it picks; none: not about one model. */
  serves?: Kind[] | ((m: ServedModel) => boolean);
  body?: z.ZodType;
  /** Its body may be left out. */
  bodyOptional?: boolean;
  /** Its body as bytes of these media types (audio, an image), instead of JSON. */
  accepts?: string[];
  /**
   * KServe's binary tensor extension: its body and answer may also be `application/octet-stream` — a JSON header of
   * `Inference-Header-Content-Length` bytes, then the tensors' raw bytes.
   */
  binary?: boolean;
  /** Its query parameters (a validator's, as the route reads them). */
  query?: z.ZodObject;
  /** Its body as multipart/form-data fields (their JSON Schemas), instead of JSON. */
  form?: Record<string, object>;
  /** Its answer's content type, when not JSON (text: no schema); `empty`: a status alone. */
  produces?: 'text/plain' | 'text/html' | 'text/css' | 'text/javascript' | 'application/jsonl' | 'empty';
  /** A WebSocket (GET with Upgrade): what its messages are. */
  websocket?: string;
  /** Its answer is a stream of Server-Sent Events (always, or when the body says `stream: true`). */
  events?: 'always' | 'when asked';
  errors: ErrorShape;
};

const openai = (path: string, summary: string, serves: Kind[], body: z.ZodType, events?: Operation['events']): Operation => ({
  method: 'post',
  path,
  summary,
  tag: 'OpenAI',
  serves,
  body,
  events,
  errors: 'openai',
});
/** A Conversations API operation (for text models). */
const conversations = (method: Operation['method'], path: string, summary: string, more: Partial<Operation> = {}): Operation => ({
  method,
  path,
  summary,
  tag: 'OpenAI',
  serves: ['generative'],
  errors: 'openai',
  ...more,
});
/** A KServe v2 or Triton operation (KServe's errors). */
const kserve = (method: Operation['method'], path: string, summary: string, more: Partial<Operation> = {}): Operation => ({
  method,
  path,
  summary,
  tag: 'KServe v2',
  errors: 'kserve',
  ...more,
});
/** An operation of the admin API: reading always served; a change needs server.admin_api (else a 403). */
const admin = (method: Operation['method'], path: string, summary: string, more: Partial<Operation> = {}): Operation => ({
  method,
  path,
  summary: method === 'get' ? summary : `${summary} (server.admin_api)`,
  tag: 'Admin',
  errors: path.startsWith('/v1/') ? 'openai' : 'kserve',
  ...more,
});
const ALL_KINDS: Kind[] = ['tensor', 'embedding', 'classifier', 'generative'];
/** A batch API's operation: Anthropic's (its errors; only with a text model to run) or OpenAI's. */
const batches = (method: Operation['method'], path: string, summary: string, more: Partial<Operation> = {}): Operation => {
  const anthropic = path.startsWith('/v1/messages');
  return { method, path, summary, tag: 'Batches', errors: anthropic ? 'anthropic' : 'openai', ...(anthropic && { serves: ['generative'] }), ...more };
};
const UNVERSIONED: Operation[] = [
  openai('/v1/completions', 'Completions (OpenAI); vLLM’s sampling extras', ['generative'], completionSchema, 'when asked'),
  openai('/v1/chat/completions', 'Chat completions (OpenAI): tools, structured output, reasoning', ['generative'], chatSchema, 'when asked'),
  openai('/v1/responses', 'Responses (OpenAI)', ['generative'], responsesSchema, 'when asked'),
  {
    method: 'get',
    path: '/v1/responses/{id}',
    summary: 'A kept response (store: true) or a background one, by id; a background one’s events again with stream=true (OpenAI)',
    tag: 'OpenAI',
    serves: ['generative'],
    query: retrieveQuery,
    events: 'when asked',
    errors: 'openai',
  },
  {
    method: 'get',
    path: '/v1/responses/{id}/input_items',
    summary: 'A kept or background response’s input items: its conversation, a page at a time (OpenAI)',
    tag: 'OpenAI',
    serves: ['generative'],
    query: itemsQuery,
    errors: 'openai',
  },
  {
    method: 'delete',
    path: '/v1/responses/{id}',
    summary: 'Forgets a kept response; cancels a background one (OpenAI)',
    tag: 'OpenAI',
    serves: ['generative'],
    errors: 'openai',
  },
  {
    method: 'post',
    path: '/v1/responses/{id}/cancel',
    summary: 'Stops a background response (OpenAI)',
    tag: 'OpenAI',
    serves: ['generative'],
    errors: 'openai',
  },
  openai('/v1/embeddings', 'Embeddings (OpenAI)', ['embedding'], embeddingsSchema),
  openai('/v1/rerank', 'Documents ranked by a query (Jina’s and vLLM’s rerank)', ['classifier'], rerankSchema),
  openai('/rerank', 'Documents ranked by a query (vLLM’s path)', ['classifier'], rerankSchema),
  openai('/v2/rerank', 'Documents ranked by a query (Cohere’s v2 path, as vLLM serves it)', ['classifier'], rerankSchema),
  openai('/v1/score', 'Text pairs scored (vLLM)', ['classifier'], scoreSchema),
  openai('/score', 'Text pairs scored (vLLM’s path)', ['classifier'], scoreSchema),
  openai('/classify', 'Texts classified (vLLM)', ['classifier'], classifySchema),
  openai(
    '/tokenize',
    'A prompt or chat as the model’s tokens (vLLM)',
    ['generative', 'embedding', 'classifier'],
    z.union([tokenizeSchema, tokenizeChatSchema]),
  ),
  openai('/detokenize', 'Tokens as text (vLLM)', ['generative', 'embedding', 'classifier'], detokenizeSchema),
  { method: 'get', path: '/v1/models', summary: 'The text models, their aliases and LoRA adapters (OpenAI)', tag: 'OpenAI', errors: 'openai' },
  {
    method: 'get',
    path: '/v1/models/{model}',
    summary: 'A text model, alias or LoRA adapter (OpenAI); a tensor model’s status (KServe v1)',
    tag: 'OpenAI',
    serves: ALL_KINDS,
    errors: 'openai',
  },
  {
    method: 'post',
    path: '/v1/messages',
    summary: 'Messages (Anthropic)',
    tag: 'Anthropic',
    serves: ['generative'],
    body: messagesSchema,
    events: 'when asked',
    errors: 'anthropic',
  },
  {
    method: 'post',
    path: '/v1/messages/count_tokens',
    summary: 'A Messages request’s input tokens (Anthropic)',
    tag: 'Anthropic',
    serves: ['generative'],
    body: countTokensSchema,
    errors: 'anthropic',
  },
  {
    method: 'post',
    path: '/generate',
    summary: 'Text generation (Hugging Face TGI)',
    tag: 'TGI',
    serves: ['generative'],
    body: tgiRequestSchema,
    errors: 'tgi',
  },
  {
    method: 'post',
    path: '/',
    summary: 'Text generation, streamed when the body says stream: true (Hugging Face TGI)',
    tag: 'TGI',
    serves: ['generative'],
    body: tgiRequestSchema,
    events: 'when asked',
    errors: 'tgi',
  },
  {
    method: 'get',
    path: '/info',
    summary: 'A text model’s limits (Hugging Face TGI; ?model= where several)',
    tag: 'TGI',
    serves: ['generative'],
    query: z.object({ model: z.string().optional() }),
    errors: 'tgi',
  },
  {
    method: 'post',
    path: '/generate_stream',
    summary: 'Text generation, a token an event (Hugging Face TGI)',
    tag: 'TGI',
    serves: ['generative'],
    body: tgiRequestSchema,
    events: 'always',
    errors: 'tgi',
  },
  {
    method: 'post',
    path: '/v2/models/{model}/infer',
    summary: 'Inference on tensors (KServe v2 / Open Inference Protocol; binary extension: Inference-Header-Content-Length)',
    tag: 'KServe v2',
    serves: ['tensor', 'embedding', 'classifier', 'generative'],
    body: kserveInferSchema,
    binary: true,
    errors: 'kserve',
  },
  {
    method: 'get',
    path: '/v2/models/{model}',
    summary: 'A model’s inputs and outputs (KServe v2)',
    tag: 'KServe v2',
    serves: ['tensor', 'embedding', 'classifier', 'generative'],
    errors: 'kserve',
  },
  {
    method: 'get',
    path: '/v2/models/{model}/ready',
    summary: 'Whether a model is ready (KServe v2)',
    tag: 'KServe v2',
    serves: ['tensor', 'embedding', 'classifier', 'generative'],
    errors: 'kserve',
  },
  {
    method: 'post',
    path: '/v2/models/{model}/generate',
    summary: 'Text in, text out (Triton’s generate extension)',
    tag: 'KServe v2',
    serves: ['generative'],
    body: tritonGenerateSchema,
    errors: 'kserve',
  },
  {
    method: 'post',
    path: '/v2/models/{model}/generate_stream',
    summary: 'Text in, text out, a piece an event (Triton’s generate extension)',
    tag: 'KServe v2',
    serves: ['generative'],
    body: tritonGenerateSchema,
    events: 'always',
    errors: 'kserve',
  },
  kserve('get', '/v2', 'Server metadata: name, version, extensions (KServe v2)'),
  kserve('get', '/v2/models/{model}/config', 'A model’s configuration, as Triton’s model config reads', { serves: ALL_KINDS }),
  kserve('get', '/v2/models/{model}/stats', 'A model’s statistics (Triton’s statistics extension), its queue and replicas', { serves: ALL_KINDS }),
  kserve('get', '/v2/models/stats', 'Every model’s statistics (Triton’s statistics extension)'),
  kserve('post', '/v2/repository/index', 'Every model and version, with its state (Triton’s model repository)', { body: readyOnly, bodyOptional: true }),
  kserve('get', '/v2/systemsharedmemory/status', 'The shared-memory regions registered (Triton; server.client_shared_memory)'),
  kserve('get', '/v2/systemsharedmemory/region/{region}/status', 'A shared-memory region (Triton)'),
  kserve('post', '/v2/systemsharedmemory/region/{region}/register', 'A shared-memory region registered, for inputs and outputs by reference (Triton)', {
    body: sharedMemoryRegion,
  }),
  kserve('post', '/v2/systemsharedmemory/region/{region}/unregister', 'A shared-memory region unregistered (Triton)'),
  kserve('post', '/v2/systemsharedmemory/unregister', 'Every shared-memory region unregistered (Triton)'),
  {
    method: 'post',
    path: '/v1/models/{model}:predict',
    summary: 'Inference on instances (KServe v1)',
    tag: 'KServe v1',
    serves: ['tensor'],
    body: kserveV1Schema,
    errors: 'kserve',
  },
  // OpenAI's Conversations API (continued by the Responses API's `conversation`).
  conversations('post', '/v1/conversations', 'A conversation, with items to begin with (OpenAI)', { body: conversationSchema }),
  conversations('get', '/v1/conversations/{id}', 'A conversation (OpenAI)'),
  conversations('post', '/v1/conversations/{id}', 'A conversation’s metadata replaced (OpenAI)', { body: conversationUpdateSchema }),
  conversations('delete', '/v1/conversations/{id}', 'Forgets a conversation (OpenAI)'),
  conversations('post', '/v1/conversations/{id}/items', 'Items added to a conversation (OpenAI)', { body: conversationItemsSchema }),
  conversations('get', '/v1/conversations/{id}/items', 'A conversation’s items, a page at a time (OpenAI)', { query: itemsQuery }),
  conversations('get', '/v1/conversations/{id}/items/{item}', 'An item of a conversation (OpenAI)'),
  conversations('delete', '/v1/conversations/{id}/items/{item}', 'An item removed from a conversation (OpenAI)'),
  // OpenAI's Batch API and Anthropic's Message Batches (lines to any model), asynchronous calls' answers.
  batches('post', '/v1/files', 'A JSONL file of requests up, for a batch (OpenAI)', {
    form: { file: { type: 'string', contentMediaType: 'application/jsonl' }, purpose: { const: 'batch' } },
  }),
  batches('get', '/v1/files', 'The caller’s files, a page at a time (OpenAI)', { query: filesQuery }),
  batches('get', '/v1/files/{id}', 'A file (OpenAI)'),
  batches('get', '/v1/files/{id}/content', 'A file’s lines (OpenAI)', { produces: 'application/jsonl' }),
  batches('delete', '/v1/files/{id}', 'Deletes a file (OpenAI)'),
  batches('post', '/v1/batches', 'Runs a file’s requests in the background (OpenAI)', { body: batchCreateSchema }),
  batches('get', '/v1/batches', 'The caller’s batches, the newest first, a page at a time (OpenAI)', { query: batchesQuery }),
  batches('get', '/v1/batches/{id}', 'A batch: its status, counts and files (OpenAI)'),
  batches('post', '/v1/batches/{id}/cancel', 'Stops a batch: lines not yet sent are not run (OpenAI)'),
  batches('post', '/v1/messages/batches', 'Messages requests run in the background (Anthropic)', { body: messageBatchSchema }),
  batches('get', '/v1/messages/batches', 'The caller’s message batches, the newest first (Anthropic)', { query: messageBatchesQuery }),
  batches('get', '/v1/messages/batches/{id}', 'A message batch (Anthropic)'),
  batches('get', '/v1/messages/batches/{id}/results', 'An ended message batch’s results, a JSONL line a request (Anthropic)', {
    produces: 'application/jsonl',
  }),
  batches('post', '/v1/messages/batches/{id}/cancel', 'Stops a message batch (Anthropic)'),
  batches('delete', '/v1/messages/batches/{id}', 'Forgets an ended message batch (Anthropic)'),
  {
    method: 'get',
    path: '/v2/calls/{id}',
    summary: 'An asynchronous call’s answer (202 while it runs; with wait_s, 303 to wait again) — its request’s own answer',
    tag: 'Asynchronous',
    query: waitQuery,
    errors: 'kserve',
  },
  { method: 'delete', path: '/v2/calls/{id}', summary: 'Cancels a call, or forgets its answer', tag: 'Asynchronous', errors: 'kserve' },
  {
    method: 'get',
    path: '/v1/ws',
    summary: 'One WebSocket, many requests: KServe infer, completion and chat token streams, embeddings, multiplexed by id',
    tag: 'WebSocket',
    websocket:
      'JSON messages with an id: → {"id","type":"infer"|"completion"|"chat"|"embeddings"|"cancel","model",…the HTTP body…}; ← {"id","type":"result"|"token"|"done"|"embeddings"|"error",…}',
    errors: 'kserve',
  },
  {
    method: 'post',
    path: '/v1/audio/vad',
    summary: 'Speech segments of a recording (voice activity detection): a WAV file or raw PCM',
    tag: 'Audio',
    serves: (m) => m.sequences?.vad !== undefined,
    query: vadQuerySchema,
    accepts: ['audio/wav', 'application/octet-stream'],
    errors: 'openai',
  },
  {
    method: 'get',
    path: '/v1/audio/vad',
    summary: 'Speech segments live, as the audio is captured (a WebSocket)',
    tag: 'Audio',
    serves: (m) => m.sequences?.vad !== undefined,
    query: vadQuerySchema,
    websocket:
      'binary messages: raw PCM as captured; ← {"type":"speech_start","start"}, {"type":"speech_end","start","end"}; → {"type":"end"} ← {"type":"done","duration"}',
    errors: 'openai',
  },
  {
    method: 'post',
    path: '/v1/ocr',
    summary: 'The text lines of an image (a detector and a recogniser composed)',
    tag: 'Images',
    serves: (m) => m.ocr !== undefined,
    query: ocrQuerySchema,
    accepts: ['image/png', 'image/jpeg'],
    errors: 'openai',
  },
  {
    method: 'post',
    path: '/invocations',
    summary:
      'Amazon SageMaker’s inference: the body any API’s (OpenAI, TGI, KServe v1/v2, Triton generate), sent on to its route; the model by X-Amzn-SageMaker-Target-Model',
    tag: 'SageMaker',
    body: z.looseObject({}).meta({ description: 'the body of the API it speaks (or KServe’s binary extension)' }),
    errors: 'kserve',
  },
  // Runtime changes and what the autoscaler sees (reading always; changes with server.admin_api).
  admin('get', '/admin/pools', 'Each model’s replicas as the autoscaler sees them'),
  admin('get', '/admin/fleet', 'This gateway’s fleet (server.fleet): each other gateway known, whether it answers ready'),
  {
    method: 'post',
    path: '/fleet/limits',
    summary: 'What callers spent from their rate limits on another gateway of the fleet (server.fleet.shared_limits; the fleet’s secret, no client’s)',
    tag: 'Admin',
    produces: 'empty',
    errors: 'kserve',
  },
  {
    method: 'post',
    path: '/fleet/sequences/take',
    summary: 'A stateful model’s sequence kept here, handed with its state to the gateway of the fleet that holds it now (the fleet’s secret, no client’s)',
    tag: 'Admin',
    errors: 'kserve',
  },
  {
    method: 'post',
    path: '/fleet/sequences',
    summary: 'Sequences a stopping gateway of the fleet hands over with their state, kept here (the fleet’s secret, no client’s)',
    tag: 'Admin',
    errors: 'kserve',
  },
  {
    method: 'post',
    path: '/fleet/sequences/backup',
    summary:
      'Copies of sequences another gateway of the fleet answered, kept here should it die (server.fleet.sequence_backup; the fleet’s secret, no client’s)',
    tag: 'Admin',
    errors: 'kserve',
  },
  admin('get', '/admin/stats', 'Each model’s latency, queue and replicas now; the gateway’s event loop'),
  admin('get', '/admin/models/{model}/autoscaler', 'A model’s autoscaling settings now', { serves: ALL_KINDS }),
  admin('post', '/admin/models/{model}/autoscaler', 'A model’s autoscaling changed at once, until restart (Modal’s update_autoscaler)', {
    serves: ALL_KINDS,
    body: autoscalingPatch,
  }),
  admin('post', '/admin/reload', 'The config file read again, its models applied in place; the answer says what changed'),
  admin('post', '/v2/repository/models/{model}/load', 'A model unloaded loaded again (Triton’s model control)', {
    serves: ALL_KINDS,
    body: loadParameters,
    bodyOptional: true,
  }),
  admin('post', '/v2/repository/models/{model}/unload', 'A model’s replicas stopped, its requests refused (Triton’s model control)', {
    serves: ALL_KINDS,
    body: loadParameters,
    bodyOptional: true,
  }),
  admin('post', '/v1/load_lora_adapter', 'A LoRA adapter read and served under its name (vLLM’s)', {
    serves: (m) => m.generation?.adapters !== undefined,
    body: loadRequest,
    produces: 'text/plain',
  }),
  admin('post', '/v1/unload_lora_adapter', 'A LoRA adapter no longer served (vLLM’s)', {
    serves: (m) => m.generation?.adapters !== undefined,
    body: unloadRequest,
    produces: 'text/plain',
  }),
  admin('get', '/v2/logging', 'The log settings (Triton’s logging extension)'),
  admin('post', '/v2/logging', 'The log level changed, until restart (Triton’s logging extension)', { body: logSettings }),
  admin('get', '/v2/trace/setting', 'The trace settings (Triton’s trace extension)'),
  admin('post', '/v2/trace/setting', 'The trace settings changed, until restart (Triton’s trace extension)', { body: traceSettings }),
  admin('get', '/v2/models/{model}/trace/setting', 'A model’s trace settings (Triton’s trace extension)', { serves: ALL_KINDS }),
  admin('post', '/v2/models/{model}/trace/setting', 'A model’s trace settings changed, until restart (Triton’s trace extension)', {
    serves: ALL_KINDS,
    body: traceSettings,
  }),
  admin('get', '/dashboard', 'A page of each model’s traffic and replicas, live', { produces: 'text/html' }),
  { method: 'get', path: '/v2/health/live', summary: 'Live: the process serves (KServe v2)', tag: 'Health', errors: 'kserve' },
  { method: 'get', path: '/v2/health/ready', summary: 'Ready: every model can take requests (KServe v2)', tag: 'Health', errors: 'kserve' },
  { method: 'get', path: '/health', summary: 'Ready: 200, else 503 (vLLM’s and TGI’s probe)', tag: 'Health', produces: 'empty', errors: 'kserve' },
  { method: 'get', path: '/ping', summary: 'Ready: 200, else 503 (SageMaker’s probe)', tag: 'Health', produces: 'empty', errors: 'kserve' },
  { method: 'get', path: '/version', summary: 'The gateway’s version', tag: 'Health', errors: 'kserve' },
  { method: 'get', path: '/openapi.json', summary: 'This document', tag: 'Health', errors: 'kserve' },
  { method: 'get', path: '/docs', summary: 'Swagger UI reading this document', tag: 'Health', produces: 'text/html', errors: 'kserve' },
  { method: 'get', path: '/docs/swagger-ui.css', summary: 'Swagger UI’s styles, served here', tag: 'Health', produces: 'text/css', errors: 'kserve' },
  {
    method: 'get',
    path: '/docs/swagger-ui-bundle.js',
    summary: 'Swagger UI’s script, served here',
    tag: 'Health',
    produces: 'text/javascript',
    errors: 'kserve',
  },
  { method: 'get', path: '/metrics', summary: 'Prometheus metrics', tag: 'Health', produces: 'text/plain', errors: 'kserve' },
];

/** A model's routes under /v2/models/{model} again for one version of it (Triton's: …/versions/{version}/…). */
const VERSIONED = UNVERSIONED.filter((op) => op.path.startsWith('/v2/models/{model}') && !op.path.endsWith('/trace/setting')).map((op) => ({
  ...op,
  path: op.path.replace('/v2/models/{model}', '/v2/models/{model}/versions/{version}'),
  summary: `${op.summary}: one version of it`,
}));
export const OPERATIONS: Operation[] = [...UNVERSIONED, ...VERSIONED];
