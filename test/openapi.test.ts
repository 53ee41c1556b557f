import { validate } from '@readme/openapi-parser';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODELS, startTestGateway } from './helpers.js';

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
    expect(doc.paths['/chat'].post.security).toEqual([{ key: [], secret: [] }]);
    expect(bodyOf(doc, '/v1/completions')).toMatchObject({ properties: { model: { examples: ['tiny-gpt'] } } });
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

  it('is guarded as /v1/models is: under key auth it needs the key; the Swagger UI page is open', async () => {
    const keyed = await startTestGateway({
      auth: { default: 'key', keys: [{ id: 'svc', secret: SECRET }] },
      models: { embed: { path: `${MODELS}tiny-embed.onnx`, device: 'cpu' } },
    });
    try {
      expect((await fetch(`${keyed.url}/openapi.json`)).status).toBe(401);
      const res = await fetch(`${keyed.url}/openapi.json`, { headers: { 'infergate-key': 'svc', 'infergate-secret': SECRET } });
      const doc = (await res.json()) as Doc;
      expect(doc.paths['/v1/embeddings'].post.security).toEqual([{ key: [], secret: [] }]);
      expect(doc.paths['/v1/completions']).toBeUndefined();
      // The Swagger UI page itself holds nothing: it is open, and reads the document.
      const page = await fetch(`${keyed.url}/docs`);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain("url: 'openapi.json'");
    } finally {
      await keyed.shutdown();
    }
  });
});
