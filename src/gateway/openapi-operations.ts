import { z } from 'zod';
import { waitQuery } from './calls.js';
import { tritonGenerateSchema } from './kserve/generate.js';
import { countTokensSchema, messagesSchema } from './openai/anthropic.js';
import { batchCreateSchema } from './openai/batches.js';
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

export type Kind = 'generative' | 'embedding' | 'classifier' | 'tensor';
export const kindOf = (m: ServedModel): Kind => (m.generation ? 'generative' : m.embedding ? 'embedding' : m.classifier ? 'classifier' : 'tensor');

/** How an operation's errors come back. */
export type ErrorShape = 'openai' | 'kserve' | 'anthropic' | 'tgi';
export type Operation = {
  method: 'get' | 'post' | 'delete';
  path: string;
  summary: string;
  tag: string;
  /** Which models it serves (the `model` field's, or the path's {model}); none: not about one model. */
  serves?: Kind[];
  body?: z.ZodType;
  /** Its query parameters (a validator's, as the route reads them). */
  query?: z.ZodObject;
  /** Its body as multipart/form-data fields (their JSON Schemas), instead of JSON. */
  form?: Record<string, object>;
  /** Its answer's content type, when not JSON (text: no schema). */
  produces?: 'text/plain' | 'application/jsonl';
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
/** A batch API's operation: Anthropic's (its errors; only with a text model to run) or OpenAI's. */
const batches = (method: Operation['method'], path: string, summary: string, more: Partial<Operation> = {}): Operation => {
  const anthropic = path.startsWith('/v1/messages');
  return { method, path, summary, tag: 'Batches', errors: anthropic ? 'anthropic' : 'openai', ...(anthropic && { serves: ['generative'] }), ...more };
};
export const OPERATIONS: Operation[] = [
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
  openai('/v1/embeddings', 'Embeddings (OpenAI)', ['embedding'], embeddingsSchema),
  openai('/v1/rerank', 'Documents ranked by a query (Jina’s and vLLM’s rerank)', ['classifier'], rerankSchema),
  openai('/v1/score', 'Text pairs scored (vLLM)', ['classifier'], scoreSchema),
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
  batches('get', '/v1/files', 'The caller’s files (OpenAI)'),
  batches('get', '/v1/files/{id}', 'A file (OpenAI)'),
  batches('get', '/v1/files/{id}/content', 'A file’s lines (OpenAI)', { produces: 'application/jsonl' }),
  batches('delete', '/v1/files/{id}', 'Deletes a file (OpenAI)'),
  batches('post', '/v1/batches', 'Runs a file’s requests in the background (OpenAI)', { body: batchCreateSchema }),
  batches('get', '/v1/batches', 'The caller’s batches, the newest first (OpenAI)'),
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
  { method: 'get', path: '/v2/health/live', summary: 'Live: the process serves (KServe v2)', tag: 'Health', errors: 'kserve' },
  { method: 'get', path: '/v2/health/ready', summary: 'Ready: every model can take requests (KServe v2)', tag: 'Health', errors: 'kserve' },
  { method: 'get', path: '/metrics', summary: 'Prometheus metrics', tag: 'Health', produces: 'text/plain', errors: 'kserve' },
];
