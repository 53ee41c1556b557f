import { Hono } from 'hono';
import { z } from 'zod';
import type { EndpointRoute } from './app.js';
import type { Policy } from './auth/middleware.js';
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
import { answerSchema } from './openapi-answers.js';
import { tgiRequestSchema } from './tgi.js';
import type { GatewayEnv, ServedModel } from './types.js';

/**
 * GET /openapi.json: an OpenAPI 3.1 document of the routes this gateway serves with its config — the models it has
 * decide which (no generative model: no OpenAI text routes), configured endpoints with their own auth — as vLLM's
 * and TGI's servers answer one (FastAPI's). Request bodies are the JSON Schemas of the validators the routes run
 * (zod's toJSONSchema), so the document cannot drift from what is accepted; answers are described by
 * openapi-answers.ts (the fields they have). GET /docs: Swagger UI reading it.
 */

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

type Kind = 'generative' | 'embedding' | 'classifier' | 'tensor';
const kindOf = (m: ServedModel): Kind => (m.generation ? 'generative' : m.embedding ? 'embedding' : m.classifier ? 'classifier' : 'tensor');

/** How an operation's errors come back. */
type ErrorShape = 'openai' | 'kserve' | 'anthropic' | 'tgi';
type Operation = {
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
const OPERATIONS: Operation[] = [
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

/** An endpoint of the config: the protocol's operation, at its path. */
const ENDPOINT_OPERATION: Record<EndpointRoute['protocol'], string> = {
  kserve: '/v2/models/{model}/infer',
  'openai-chat': '/v1/chat/completions',
  'openai-completions': '/v1/completions',
  'openai-responses': '/v1/responses',
  'openai-embeddings': '/v1/embeddings',
  'anthropic-messages': '/v1/messages',
};

const ERROR_SCHEMAS: Record<ErrorShape, object> = {
  openai: {
    type: 'object',
    properties: {
      error: {
        type: 'object',
        properties: { message: { type: 'string' }, type: { type: 'string' }, param: { type: ['string', 'null'] }, code: { type: ['string', 'null'] } },
      },
    },
  },
  kserve: { type: 'object', properties: { error: { type: 'string' } } },
  anthropic: {
    type: 'object',
    properties: { type: { const: 'error' }, error: { type: 'object', properties: { type: { type: 'string' }, message: { type: 'string' } } } },
  },
  tgi: { type: 'object', properties: { error: { type: 'string' }, error_type: { type: 'string' } } },
};

/** Each policy's credentials, any one of them (a key: its id and secret, or its secret alone as Bearer or x-api-key). */
const SECURITY: Record<Policy, object[]> = {
  public: [],
  jwt: [{ bearer: [] }],
  key: [{ key: [], secret: [] }, { secret_bearer: [] }, { x_api_key: [] }],
};

export type OpenApiOptions = {
  models: ReadonlyMap<string, ServedModel>;
  endpoints: readonly EndpointRoute[];
  /** The built-in routes' auth (config auth.default). */
  policy: Policy;
  version: string;
};

/** The document for the models served now (a reload changes them: it is built per request). */
export function openApiDocument(o: OpenApiOptions): object {
  const byKind = new Map<Kind, string[]>();
  for (const m of o.models.values()) byKind.set(kindOf(m), [...(byKind.get(kindOf(m)) ?? []), m.name]);
  const namesFor = (kinds: Kind[]) => kinds.flatMap((k) => byKind.get(k) ?? []);
  const paths: Record<string, Record<string, object>> = {};
  const add = (path: string, op: Operation, security: object[], model?: string) => {
    const names = model ? [model] : namesFor(op.serves ?? []);
    if (op.serves && names.length === 0) return; // (no model it serves: the route only answers 404)
    paths[path] ??= {};
    paths[path][op.method] = operation(op, names, security, model !== undefined);
  };
  for (const op of OPERATIONS) add(op.path, op, SECURITY[o.policy]);
  for (const e of o.endpoints) {
    const op = OPERATIONS.find((x) => x.path === ENDPOINT_OPERATION[e.protocol]) as Operation;
    add(e.path, { ...op, summary: `${op.summary}: model ${e.model} (an endpoint of the config)`, tag: 'Endpoints' }, SECURITY[e.policy ?? 'public'], e.model);
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'infergate',
      version: o.version,
      description: 'An inference gateway: KServe v2, OpenAI, Anthropic and TGI routes over dynamically batched, autoscaled ONNX Runtime replicas.',
    },
    paths,
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
        key: { type: 'apiKey', in: 'header', name: 'Infergate-Key' },
        secret: { type: 'apiKey', in: 'header', name: 'Infergate-Secret' },
        secret_bearer: { type: 'http', scheme: 'bearer', description: 'a key’s secret alone (OpenAI SDKs’ apiKey)' },
        x_api_key: { type: 'apiKey', in: 'header', name: 'x-api-key', description: 'a key’s secret alone (Anthropic SDKs’ apiKey)' },
      },
    },
  };
}

/** One operation: its body's schema (the model field naming the models it serves), its answers. */
function operation(op: Operation, models: string[], security: object[], fixedModel: boolean): object {
  const json = op.produces ? { [op.produces]: { schema: { type: 'string' } } } : { 'application/json': { schema: answerSchema(op.path, op.method) } };
  const answers =
    op.events === 'always'
      ? { 'text/event-stream': { schema: { type: 'string' } } }
      : op.events
        ? { ...json, 'text/event-stream': { schema: { type: 'string' } } }
        : json;
  const modelParam = op.path.includes('{model}') && !fixedModel;
  // (a path's other parameters: a response's id)
  const ids = [...op.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).filter((name) => name !== 'model');
  const parameters = [
    ...(modelParam ? [{ name: 'model', in: 'path', required: true, schema: { type: 'string', ...(models.length > 0 && { examples: models }) } }] : []),
    ...ids.map((name) => ({ name, in: 'path', required: true, schema: { type: 'string' } })),
    ...Object.entries((op.query && (z.toJSONSchema(op.query, { io: 'input' }) as { properties: object }).properties) ?? {}).map(([name, schema]) => ({
      name,
      in: 'query',
      schema,
    })),
  ];
  return {
    summary: op.summary,
    tags: [op.tag],
    security,
    ...(parameters.length > 0 && { parameters }),
    ...(op.body && {
      requestBody: { required: true, content: { 'application/json': { schema: bodySchema(op.body, modelParam || fixedModel ? [] : models) } } },
    }),
    ...(op.form && {
      requestBody: {
        required: true,
        content: { 'multipart/form-data': { schema: { type: 'object', properties: op.form, required: Object.keys(op.form) } } },
      },
    }),
    responses: {
      '200': { description: op.events === 'always' ? 'Server-Sent Events' : 'the answer', content: answers },
      '4XX': { description: 'the request refused: what was wrong, by name', content: { 'application/json': { schema: ERROR_SCHEMAS[op.errors] } } },
      '5XX': {
        description: 'no replica could take it (503 + Retry-After), or the model failed',
        content: { 'application/json': { schema: ERROR_SCHEMAS[op.errors] } },
      },
    },
  };
}

/** A validator's JSON Schema as a request body, its `model` field's examples the models this operation serves. */
function bodySchema(schema: z.ZodType, models: string[]): object {
  const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown> & { properties?: Record<string, object> };
  delete json.$schema;
  const model = json.properties?.model;
  if (model && models.length > 0) json.properties = { ...json.properties, model: { ...model, examples: models } };
  return json;
}

/**
 * Swagger UI, reading /openapi.json (its script and styles come from jsDelivr, as FastAPI's /docs). Under jwt or key
 * auth, `/docs?access_token=…` (a token, or a key's secret) fetches the document with it and sends it with the
 * requests the page tries, as `Authorization: Bearer`.
 */
const DOCS_PAGE = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>infergate API</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="docs"></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>
const token = new URLSearchParams(location.search).get('access_token');
SwaggerUIBundle({
  url: 'openapi.json' + location.search,
  dom_id: '#docs',
  requestInterceptor: (req) => {
    if (token) req.headers.Authorization = 'Bearer ' + token;
    return req;
  },
});
</script>
</body>
</html>`;

export function openApiRoutes(o: OpenApiOptions): Hono<GatewayEnv> {
  const app = new Hono<GatewayEnv>();
  app.get('/openapi.json', (c) => c.json(openApiDocument(o)));
  app.get('/docs', (c) => c.html(DOCS_PAGE));
  return app;
}
