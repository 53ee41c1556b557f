import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { validate } from '@readme/openapi-parser';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../src/gateway/app.js';
import { OPERATIONS } from '../src/gateway/openapi-operations.js';
import { MODELS, ROOT, SILERO_VAD, startTestGateway } from './helpers.js';

// GET /openapi.json describes what this gateway serves with its config; its request bodies are the routes' own
// validators, so a body the document allows is served and one it refuses is a 400.
let gw: Awaited<ReturnType<typeof startTestGateway>>;
const SECRET = 'a-long-enough-shared-secret';
beforeAll(async () => {
  gw = await startTestGateway({
    auth: { default: 'public', keys: [{ id: 'svc', secret: SECRET }] },
    models: {
      'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', scaling: { min_containers: 1 } },
      mlp: { path: `${MODELS}mlp.onnx`, device: 'cpu' },
    },
    endpoints: [{ path: '/chat', model: 'tiny-gpt', protocol: 'openai-chat', auth: 'key' }],
  });
});
afterAll(() => gw?.shutdown());

type Doc = { paths: Record<string, Record<string, { security: object[]; requestBody?: { content: Record<string, { schema: object }> } }>> };
type AnswersDoc = { paths: Record<string, Record<string, { responses: Record<string, { content: Record<string, { schema: object }> }> }>> };
const document = async () => (await (await fetch(`${gw.url}/openapi.json`)).json()) as Doc;
const bodyOf = (doc: Doc, path: string) => doc.paths[path].post.requestBody?.content['application/json'].schema as object;

describe('GET /openapi.json', () => {
  it('is a valid OpenAPI 3.1 document of the routes its models are served on, and the endpoints with their auth', async () => {
    const doc = await document();
    await expect(validate(structuredClone(doc) as never)).resolves.toMatchObject({ valid: true });
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining(['/v1/completions', '/v1/chat/completions', '/v1/messages', '/generate', '/v2/models/{model}/infer', '/chat']),
    );
    // No embedding or cross-encoder model here: those routes would only answer 404, so they are not listed.
    expect(doc.paths['/v1/embeddings']).toBeUndefined();
    expect(doc.paths['/v1/rerank']).toBeUndefined();
    expect(doc.paths['/v1/chat/completions'].post.security).toEqual([]);
    expect(doc.paths['/chat'].post.security).toEqual([{ key: [], secret: [] }, { secret_bearer: [] }, { x_api_key: [] }]);
    expect(bodyOf(doc, '/v1/completions')).toMatchObject({ properties: { model: { examples: ['tiny-gpt'] } } });
  });

  it('leaves out no route the gateway serves, and names none it does not', () => {
    const app = createApp({ models: new Map() });
    const served = app.routes.filter((r) => r.method !== 'ALL').map((r) => `${r.method.toLowerCase()} ${r.path.replace(/:(\w+)/g, '{$1}')}`);
    // (KServe v1's verb rides in the path's last segment: one route, read by hand)
    const documented = OPERATIONS.map((op) => `${op.method} ${op.path.replace('/v1/models/{model}:predict', '/v1/models/{target}')}`);
    expect(served.filter((route) => !documented.includes(route))).toEqual([]);
    expect(documented.filter((route) => !served.includes(route))).toEqual([]);
  });

  it('describes the WebSockets, the admin API and the routes for models of one kind only where such a model is served', async () => {
    const doc = (await document()) as Doc & { paths: Record<string, Record<string, { responses: Record<string, object>; summary: string }>> };
    expect(Object.keys(doc.paths['/v1/ws'].get.responses)).toEqual(['101', '4XX', '5XX']);
    expect(doc.paths['/admin/models/{model}/autoscaler'].post.requestBody?.content['application/json'].schema).toMatchObject({
      properties: { min_containers: { type: 'integer' }, scaledown_window: { type: 'number' } },
      additionalProperties: false,
    });
    expect(doc.paths['/admin/reload'].post.summary).toContain('server.admin_api');
    expect(doc.paths['/v2/models/{model}/versions/{version}/infer'].post).toBeDefined();
    // KServe's binary extension: octet-stream bodies and answers beside JSON, the header's length a parameter.
    for (const path of ['/v2/models/{model}/infer', '/v2/models/{model}/versions/{version}/infer']) {
      const infer = doc.paths[path].post as unknown as { parameters: { name: string }[]; responses: { 200: { content: object } } };
      expect(Object.keys(doc.paths[path].post.requestBody?.content ?? {})).toEqual(['application/json', 'application/octet-stream']);
      expect(Object.keys(infer.responses[200].content)).toEqual(['application/json', 'application/octet-stream']);
      expect(infer.parameters.map((p) => p.name)).toContain('Inference-Header-Content-Length');
    }
    // No voice activity, text recognition or LoRA model here: their routes would only refuse.
    for (const path of ['/v1/audio/vad', '/v1/ocr', '/v1/load_lora_adapter']) expect(doc.paths[path]).toBeUndefined();
    const vad = await startTestGateway({ models: { vad: SILERO_VAD } });
    try {
      const paths = ((await (await fetch(`${vad.url}/openapi.json`)).json()) as Doc).paths;
      expect(Object.keys(paths['/v1/audio/vad'])).toEqual(['post', 'get']);
      expect(Object.keys(paths['/v1/audio/vad'].post.requestBody?.content ?? {})).toEqual(['audio/wav', 'application/octet-stream']);
      expect(paths['/v1/ocr']).toBeUndefined();
    } finally {
      await vad.shutdown();
    }
  });

  it('says what the routes accept: a body its schema allows is served, one it refuses is a 400', async () => {
    const ajv = new Ajv2020({ strict: false });
    const doc = await document();
    const cases: [string, object, boolean][] = [
      ['/v1/completions', { model: 'tiny-gpt', prompt: 'Hi', max_tokens: 3 }, true],
      ['/v1/completions', { model: 'tiny-gpt', prompt: 'Hi', temperature: 'hot' }, false],
      ['/v1/completions', { model: 'tiny-gpt', prompt: 'Hi', suffix: 'x' }, true], // (refused by a check the schema cannot say: named in its description)
      ['/v1/chat/completions', { model: 'tiny-gpt', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3 }, true],
      ['/v1/chat/completions', { model: 'tiny-gpt', messages: [{ role: 'robot', content: 'Hi' }] }, false],
      ['/v1/messages', { model: 'tiny-gpt', max_tokens: 3, messages: [{ role: 'user', content: 'Hi' }] }, true],
      ['/v1/messages', { model: 'tiny-gpt', messages: [{ role: 'user', content: 'Hi' }] }, false],
      ['/generate', { inputs: 'Hi', parameters: { max_new_tokens: 3 } }, true],
      ['/generate', { inputs: 7 }, false],
      ['/v2/models/{model}/infer', { inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: Array(64).fill(0) }] }, true],
      ['/v2/models/{model}/infer', { inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP33', data: Array(64).fill(0) }] }, false],
    ];
    for (const [path, body, allowed] of cases) {
      const check = ajv.compile(bodyOf(doc, path));
      const accepted = check(body);
      if (path === '/v1/completions' && 'suffix' in body) {
        expect(accepted).toBe(true);
        expect(JSON.stringify(bodyOf(doc, path))).toMatch(/suffix.*not supported by this gateway/);
        continue;
      }
      expect(accepted, `${path} ${JSON.stringify(body)}: ${ajv.errorsText(check.errors)}`).toBe(allowed);
      const url = `${gw.url}${path.replace('{model}', 'mlp')}`;
      const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      expect([path, res.status]).toEqual([path, allowed ? 200 : path === '/generate' ? 422 : 400]);
      await res.body?.cancel();
    }
  });

  it("says what the routes answer: real answers of every kind fit the document's schemas", async () => {
    const all = await startTestGateway({
      models: {
        'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', scaling: { min_containers: 1 } },
        r1: { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', reasoning_parser: 'deepseek_r1', scaling: { min_containers: 1 } },
        'tiny-embed': { path: `${MODELS}tiny-embed.onnx`, device: 'cpu' },
        'tiny-rerank': { path: `${MODELS}tiny-rerank.onnx`, device: 'cpu' },
        mlp: { path: `${MODELS}mlp.onnx`, device: 'cpu' },
      },
    });
    try {
      const doc = (await (await fetch(`${all.url}/openapi.json`)).json()) as AnswersDoc;
      const ajv = new Ajv2020({ strict: false });
      const hi = [{ role: 'user', content: 'Hi' }];
      const tool = { type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: { q: { type: 'string' } } } } };
      const cases: [string, object?][] = [
        ['/v1/completions', { model: 'tiny-gpt', prompt: 'Hi', max_tokens: 3 }],
        ['/v1/completions', { model: 'tiny-gpt', prompt: ['Hi', 'Yo'], max_tokens: 3, logprobs: 2, echo: true, n: 2 }],
        ['/v1/chat/completions', { model: 'tiny-gpt', messages: hi, max_tokens: 3, logprobs: true, top_logprobs: 2 }],
        ['/v1/chat/completions', { model: 'tiny-gpt', messages: hi, max_tokens: 60, tools: [tool], tool_choice: 'required' }],
        ['/v1/chat/completions', { model: 'r1', messages: hi, max_tokens: 8, thinking_token_budget: 2 }],
        ['/v1/responses', { model: 'tiny-gpt', input: 'Hi', max_output_tokens: 3 }],
        ['/v1/responses', { model: 'r1', input: 'Hi', max_output_tokens: 8 }],
        ['/v1/responses', { model: 'tiny-gpt', input: 'Hi', max_output_tokens: 60, tools: [{ type: 'function', name: 'lookup' }], tool_choice: 'required' }],
        ['/v1/embeddings', { model: 'tiny-embed', input: ['Hi', 'Yo'] }],
        ['/v1/embeddings', { model: 'tiny-embed', input: 'Hi', encoding_format: 'base64' }],
        ['/v1/rerank', { model: 'tiny-rerank', query: 'q', documents: ['a', 'b'] }],
        ['/v1/score', { model: 'tiny-rerank', text_1: 'q', text_2: ['a', 'b'] }],
        ['/classify', { model: 'tiny-rerank', input: ['a'] }],
        ['/tokenize', { model: 'tiny-gpt', prompt: 'Hi' }],
        ['/tokenize', { model: 'tiny-gpt', messages: hi }],
        ['/detokenize', { model: 'tiny-gpt', tokens: [15496] }],
        ['/v1/models'],
        ['/v1/messages', { model: 'tiny-gpt', max_tokens: 3, messages: hi }],
        ['/v1/messages', { model: 'r1', max_tokens: 8, messages: hi, thinking: { type: 'enabled', budget_tokens: 2 } }],
        [
          '/v1/messages',
          { model: 'tiny-gpt', max_tokens: 60, messages: hi, tools: [{ name: 'lookup', input_schema: { type: 'object' } }], tool_choice: { type: 'any' } },
        ],
        ['/v1/messages/count_tokens', { model: 'tiny-gpt', messages: hi }],
        ['/generate', { model: 'tiny-gpt', inputs: 'Hi', parameters: { max_new_tokens: 3, details: true } }],
        ['/v2/models/{model}/infer', { inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: Array(64).fill(0.5) }] }],
        ['/v2/models/{model}'],
        ['/v2/models/{model}/ready'],
        ['/v1/models/{model}:predict', { instances: [Array(64).fill(0.5)] }],
        ['/v2/health/live'],
        ['/v2/health/ready'],
      ];
      const kinds = new Set<string>();
      for (const [path, body] of cases) {
        const method = body ? 'post' : 'get';
        const res = await fetch(`${all.url}${path.replace('{model}', 'mlp')}`, { method, ...(body && { body: JSON.stringify(body) }) });
        const answer = await res.json();
        expect([path, res.status, answer]).toMatchObject([path, 200, expect.anything()]);
        const check = ajv.compile(doc.paths[path][method].responses['200'].content['application/json'].schema);
        expect(check(answer), `${path} ${JSON.stringify(body)}: ${ajv.errorsText(check.errors)}\n${JSON.stringify(answer).slice(0, 400)}`).toBe(true);
        for (const item of [...(answer.output ?? []), ...(answer.content ?? [])]) kinds.add(item.type);
        if (answer.choices?.[0]?.message?.tool_calls) kinds.add('tool_calls');
      }
      // (the variants above happened: calls, thinking and reasoning items among them — a forced call has 60 tokens to
      // close its sampled JSON: in 30, 3 of 300 ran out unfinished and the answer held no call)
      expect([...kinds].sort()).toEqual(['function_call', 'message', 'reasoning', 'text', 'thinking', 'tool_calls', 'tool_use']);
      const triton = await fetch(`${all.url}/v2/models/tiny-gpt/generate`, {
        method: 'POST',
        body: JSON.stringify({ text_input: 'Hi', parameters: { max_tokens: 3 } }),
      });
      const generateSchema = doc.paths['/v2/models/{model}/generate'].post.responses['200'].content['application/json'].schema;
      expect(ajv.validate(generateSchema, await triton.json())).toBe(true);
      // A kept response, retrieved by id and forgotten: the {id} operations' answers.
      const kept = await (
        await fetch(`${all.url}/v1/responses`, { method: 'POST', body: JSON.stringify({ model: 'tiny-gpt', input: 'Hi', max_output_tokens: 2, store: true }) })
      ).json();
      const schemaOf = (method: string) => doc.paths['/v1/responses/{id}'][method].responses['200'].content['application/json'].schema;
      expect(ajv.validate(schemaOf('get'), await (await fetch(`${all.url}/v1/responses/${kept.id}`)).json()), ajv.errorsText()).toBe(true);
      expect(ajv.validate(schemaOf('delete'), await (await fetch(`${all.url}/v1/responses/${kept.id}`, { method: 'DELETE' })).json()), ajv.errorsText()).toBe(
        true,
      );
      // Retrieval's query: a background response's events again.
      const retrieve = doc.paths['/v1/responses/{id}'].get as typeof doc.paths.x.get & { parameters: { name: string; in: string }[] };
      expect(retrieve.parameters.map((p) => `${p.in}:${p.name}`)).toEqual(['path:id', 'query:stream', 'query:starting_after']);
      expect(Object.keys(retrieve.responses['200'].content)).toEqual(['application/json', 'text/event-stream']);
      // The batch APIs' objects: a message batch's, then a Batch API file and batch.
      const answerOf = (path: string, method: string) => doc.paths[path][method].responses['200'].content['application/json'].schema;
      const fits = async (path: string, method: string, res: Promise<Response>) => {
        expect(ajv.validate(answerOf(path, method), await (await res).json()), `${method} ${path}: ${ajv.errorsText()}`).toBe(true);
      };
      const post = (path: string, body: object) => fetch(`${all.url}${path}`, { method: 'POST', body: JSON.stringify(body) });
      const made = await (
        await post('/v1/messages/batches', {
          requests: [{ custom_id: 'a', params: { model: 'tiny-gpt', max_tokens: 2, messages: [{ role: 'user', content: 'Hi' }] } }],
        })
      ).json();
      await fits('/v1/messages/batches', 'post', Promise.resolve(Response.json(made)));
      await fits('/v1/messages/batches', 'get', fetch(`${all.url}/v1/messages/batches`));
      await fits('/v1/messages/batches/{id}', 'get', fetch(`${all.url}/v1/messages/batches/${made.id}`));
      const form = new FormData();
      form.append('purpose', 'batch');
      form.append(
        'file',
        new Blob([`${JSON.stringify({ custom_id: 'a', method: 'POST', url: '/v1/completions', body: { model: 'tiny-gpt', prompt: 'Hi', max_tokens: 2 } })}\n`]),
        'in.jsonl',
      );
      const uploaded = await (await fetch(`${all.url}/v1/files`, { method: 'POST', body: form })).json();
      await fits('/v1/files', 'post', Promise.resolve(Response.json(uploaded)));
      await fits('/v1/files', 'get', fetch(`${all.url}/v1/files`));
      await fits('/v1/batches', 'post', post('/v1/batches', { input_file_id: uploaded.id, endpoint: '/v1/completions', completion_window: '24h' }));
      await fits('/v1/batches', 'get', fetch(`${all.url}/v1/batches`));
      const conversation = await (await post('/v1/conversations', { items: [{ role: 'user', content: 'Hi' }] })).json();
      await fits('/v1/conversations', 'post', Promise.resolve(Response.json(conversation)));
      await fits('/v1/conversations/{id}/items', 'get', fetch(`${all.url}/v1/conversations/${conversation.id}/items`));
      await fits('/v1/conversations/{id}', 'delete', fetch(`${all.url}/v1/conversations/${conversation.id}`, { method: 'DELETE' }));
      expect(doc.paths['/v1/messages/batches/{id}/results'].get.responses['200'].content).toEqual({ 'application/jsonl': { schema: { type: 'string' } } });
      // Triton's extensions, the admin API's reading, TGI's info, a model retrieved (a text one; a tensor one's status).
      for (const path of [
        '/v2',
        '/version',
        '/v2/models/mlp/config',
        '/v2/models/tiny-gpt/config',
        '/v2/models/mlp/stats',
        '/v2/models/mlp/versions/1',
        '/v2/models/stats',
        '/v2/logging',
        '/v2/trace/setting',
        '/admin/pools',
        '/admin/stats',
        '/admin/models/mlp/autoscaler',
        '/v1/models/tiny-gpt',
        '/v1/models/mlp',
      ]) {
        const documented = path.replace(/\/(mlp|tiny-gpt)(?=\/|$)/, '/{model}').replace('/versions/1', '/versions/{version}');
        await fits(documented, 'get', fetch(`${all.url}${path}`));
      }
      await fits('/info', 'get', fetch(`${all.url}/info?model=tiny-gpt`));
      await fits('/v2/repository/index', 'post', post('/v2/repository/index', {}));
      // A wrong answer does not fit: the schemas say something.
      expect(ajv.validate(doc.paths['/v1/chat/completions'].post.responses['200'].content['application/json'].schema, { object: 'chat.completion' })).toBe(
        false,
      );
      expect(doc.paths['/metrics'].get.responses['200'].content['text/plain']).toEqual({ schema: { type: 'string' } });
    } finally {
      await all.shutdown();
    }
  });

  it('is guarded as /v1/models is: under key auth it needs the key; the Swagger UI page is open', async () => {
    const keyed = await startTestGateway({
      auth: { default: 'key', keys: [{ id: 'svc', secret: SECRET }] },
      models: { embed: { path: `${MODELS}tiny-embed.onnx`, device: 'cpu' } },
    });
    try {
      expect((await fetch(`${keyed.url}/openapi.json`)).status).toBe(401);
      const res = await fetch(`${keyed.url}/openapi.json`, { headers: { 'infergate-key': 'svc', 'infergate-secret': SECRET } });
      const doc = (await res.json()) as Doc;
      expect(doc.paths['/v1/embeddings'].post.security).toEqual([{ key: [], secret: [] }, { secret_bearer: [] }, { x_api_key: [] }]);
      expect(doc.paths['/v1/completions']).toBeUndefined();
      // The Swagger UI page itself holds nothing: it is open, and reads the document — with the credential the page
      // was opened with (/docs?access_token=…: a token, or here a key's secret).
      const page = await fetch(`${keyed.url}/docs`);
      expect(page.status).toBe(200);
      const html = await page.text();
      expect(html).toContain("url: 'openapi.json' + location.search");
      expect(html).not.toMatch(/https?:/); // nothing from a CDN: a firewalled browser shows it all
      // Swagger UI's files, open as the page is, from the installed swagger-ui-dist; cached, and not sent again.
      for (const [file, type] of [
        ['swagger-ui-bundle.js', 'text/javascript'],
        ['swagger-ui.css', 'text/css'],
      ]) {
        const res = await fetch(`${keyed.url}/docs/${file}`);
        expect(res.status).toBe(200);
        expect(res.headers.get('content-type')).toContain(type);
        expect(Buffer.from(await res.arrayBuffer()).equals(await readFile(join(ROOT, 'node_modules/swagger-ui-dist', file)))).toBe(true);
        const again = await fetch(`${keyed.url}/docs/${file}`, { headers: { 'if-none-match': res.headers.get('etag') as string } });
        expect(again.status).toBe(304);
        expect(await again.text()).toBe('');
      }
      expect((await fetch(`${keyed.url}/openapi.json?access_token=${SECRET}`)).status).toBe(200);
      expect((await fetch(`${keyed.url}/openapi.json?access_token=not-the-secret`)).status).toBe(401);
    } finally {
      await keyed.shutdown();
    }
  });
});
