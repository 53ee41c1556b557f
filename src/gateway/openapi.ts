import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Hono } from 'hono';
import { z } from 'zod';
import type { EndpointRoute } from './app.js';
import type { Policy } from './auth/middleware.js';
import { answerSchema } from './openapi-answers.js';
import { type ErrorShape, type Kind, kindOf, OPERATIONS, type Operation } from './openapi-operations.js';
import type { GatewayEnv, ServedModel } from './types.js';

/**
 * GET /openapi.json: an OpenAPI 3.1 document of the routes this gateway serves with its config — the models it has
 * decide which (no generative model: no OpenAI text routes), configured endpoints with their own auth — as vLLM's
 * and TGI's servers answer one (FastAPI's). Request bodies are the JSON Schemas of the validators the routes run
 * (zod's toJSONSchema), so the document cannot drift from what is accepted; answers are described by
 * openapi-answers.ts (the fields they have). GET /docs: Swagger UI reading it.
 */

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
  kserve: { type: 'object', properties: { error: { type: 'string' }, code: { type: 'string' } } },
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
  const namesFor = (serves: NonNullable<Operation['serves']>) =>
    typeof serves === 'function' ? [...o.models.values()].filter(serves).map((m) => m.name) : serves.flatMap((k) => byKind.get(k) ?? []);
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
  const json =
    op.produces === 'empty'
      ? undefined
      : op.produces
        ? { [op.produces]: { schema: { type: 'string' } } }
        : { 'application/json': { schema: answerSchema(op.path.replace('/versions/{version}', ''), op.method) } };
  // (the binary extension's: a JSON header, then raw tensor bytes; its length in Inference-Header-Content-Length)
  const binary = op.binary ? { 'application/octet-stream': { schema: { type: 'string', contentMediaType: 'application/octet-stream' } } } : {};
  const answers =
    op.binary && json
      ? { ...json, ...binary }
      : op.events === 'always'
        ? { 'text/event-stream': { schema: { type: 'string' } } }
        : op.events
          ? { ...json, 'text/event-stream': { schema: { type: 'string' } } }
          : json;
  const modelParam = op.path.includes('{model}') && !fixedModel;
  // (a path's other parameters: a response's id)
  const ids = [...op.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).filter((name) => name !== 'model');
  const parameters = [
    ...(op.binary
      ? [
          {
            name: 'Inference-Header-Content-Length',
            in: 'header',
            required: false,
            schema: { type: 'integer', minimum: 0 },
            description: 'binary extension: the JSON header’s length in bytes',
          },
        ]
      : []),
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
      requestBody: {
        required: !op.bodyOptional,
        content: { 'application/json': { schema: bodySchema(op.body, modelParam || fixedModel ? [] : models) }, ...binary },
      },
    }),
    ...(op.accepts && {
      requestBody: { required: true, content: Object.fromEntries(op.accepts.map((type) => [type, { schema: { type: 'string', contentMediaType: type } }])) },
    }),
    ...(op.form && {
      requestBody: {
        required: true,
        content: { 'multipart/form-data': { schema: { type: 'object', properties: op.form, required: Object.keys(op.form) } } },
      },
    }),
    responses: {
      ...(op.websocket
        ? { '101': { description: `Switching Protocols: a WebSocket — ${op.websocket}` } }
        : { '200': { description: op.events === 'always' ? 'Server-Sent Events' : 'the answer', ...(answers && { content: answers }) } }),
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
 * Swagger UI, reading /openapi.json; its script and styles are served by the gateway (from swagger-ui-dist), not a CDN:
 * FastAPI's /docs loads them from jsDelivr, and vLLM's and LiteLLM's users behind firewalls got a blank page. Under
 * jwt or key auth, `/docs?access_token=…` (a token, or a key's secret) fetches the document with it and sends it
 * with the requests the page tries, as `Authorization: Bearer`. (Relative URLs: it works under a proxy's prefix.)
 */
const DOCS_PAGE = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>infergate API</title>
<link rel="stylesheet" href="docs/swagger-ui.css"></head>
<body><div id="docs"></div>
<script src="docs/swagger-ui-bundle.js"></script>
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

const SWAGGER_UI = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));
const SWAGGER_VERSION = (createRequire(import.meta.url)('swagger-ui-dist/package.json') as { version: string }).version;
/** Swagger UI's two files, read when first asked for (1.8 MB: not at every start) and kept. */
const swaggerFiles = new Map<string, Promise<Buffer>>();
const swaggerFile = (name: string) => swaggerFiles.get(name) ?? (swaggerFiles.set(name, readFile(join(SWAGGER_UI, name))).get(name) as Promise<Buffer>);

export function openApiRoutes(o: OpenApiOptions): Hono<GatewayEnv> {
  const app = new Hono<GatewayEnv>();
  app.get('/openapi.json', (c) => c.json(openApiDocument(o)));
  app.get('/docs', (c) => c.html(DOCS_PAGE));
  for (const [name, type] of [
    ['swagger-ui.css', 'text/css; charset=utf-8'],
    ['swagger-ui-bundle.js', 'text/javascript; charset=utf-8'],
  ])
    app.get(`/docs/${name}`, async (c) => {
      // A day in caches, then asked again: the ETag names the version, so only an upgrade sends the file anew.
      const headers = { 'cache-control': 'public, max-age=86400', etag: `"swagger-ui-${SWAGGER_VERSION}"` };
      if (c.req.header('if-none-match') === headers.etag) return c.body(null, 304, headers);
      // A copy (~0.2 ms): with intake threads an answer's bytes cross to its thread by transfer, which would empty ours.
      return c.body(new Uint8Array(await swaggerFile(name)), 200, { ...headers, 'content-type': type });
    });
  return app;
}
