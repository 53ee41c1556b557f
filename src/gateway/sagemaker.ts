import { Hono } from 'hono';
import { badInput } from '../errors/index.js';
import { clientSignal, readBody, releaseBody } from './body.js';
import type { Dispatch } from './calls.js';
import type { GatewayEnv, ServedModel } from './types.js';

/** The header SageMaker's multi-model endpoints name the model with. */
const TARGET_MODEL = 'x-amzn-sagemaker-target-model';

/**
 * Amazon SageMaker's container contract (what vLLM, TGI and Triton serve for it): GET /ping (in kserve/routes.ts)
 * and POST /invocations, whose body says which API it speaks — OpenAI chat (`messages`) or completions (`prompt`),
 * embeddings (`input`), TGI (`inputs` text), KServe v2 (`inputs` tensors, or the binary extension), KServe v1
 * (`instances`), Triton's generate (`text_input`) — and is sent through the app again to that route, as a request
 * of its caller (let in and its rate spent here; its place among the caller's requests at once handed over). A route that needs a model in its path takes it from the
 * X-Amzn-SageMaker-Target-Model header, else the body's `model`, else the gateway's only model.
 */
export function sagemakerRoutes(o: { models: ReadonlyMap<string, ServedModel>; maxBodyBytes: number; dispatch: Dispatch }): Hono<GatewayEnv> {
  const app = new Hono<GatewayEnv>();
  app.post('/invocations', async (c) => {
    const body = await readBody(c, o.maxBodyBytes);
    const bytes = body.slice(); // (the read buffer goes back to its pool)
    releaseBody(body);
    const named = c.req.header(TARGET_MODEL);
    const model = (fromBody?: unknown) => {
      const name = named ?? (typeof fromBody === 'string' ? fromBody : undefined);
      if (name !== undefined) return encodeURIComponent(name);
      if (o.models.size === 1) return encodeURIComponent([...o.models.keys()][0]);
      throw badInput(`this gateway serves several models (${[...o.models.keys()].join(', ')}): name one with the ${TARGET_MODEL} header`, 'model');
    };
    let path: string;
    let sent = bytes;
    if (c.req.header('inference-header-content-length') !== undefined)
      path = `/v2/models/${model()}/infer`; // (KServe's binary extension)
    else {
      const json = parse(bytes);
      const route = routeOf(json, model);
      path = route.path;
      // (a text API's body names its model: the header's, where the body names none)
      if (route.named && named !== undefined && json.model === undefined) sent = Buffer.from(JSON.stringify({ ...json, model: named }));
    }
    const headers = new Headers(c.req.raw.headers);
    for (const name of ['content-length', 'content-encoding']) headers.delete(name); // (the body goes on inflated)
    headers.set('x-request-id', c.get('requestId'));
    c.get('handOver')?.(); // (the forwarded request takes the caller's place among its requests at once)
    return o.dispatch(path, { method: 'POST', headers, body: sent, signal: clientSignal(c) }, { infergateCall: { caller: c.get('caller') } });
  });
  return app;
}

function parse(bytes: Uint8Array): Record<string, unknown> {
  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch (err) {
    throw badInput(`the body is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badInput('the request body must be a JSON object');
  return body as Record<string, unknown>;
}

/**
 * The route a body's shape belongs to (`model` gives a model's path segment from the body's own name, if any);
 * `named`: the model is named in the body (text APIs).
 */
function routeOf(body: Record<string, unknown>, model: (fromBody?: unknown) => string): { path: string; named?: boolean } {
  if ('messages' in body) return { path: '/v1/chat/completions', named: true };
  if ('prompt' in body) return { path: '/v1/completions', named: true };
  if ('text_input' in body) return { path: `/v2/models/${model(body.model)}/generate${body.stream === true ? '_stream' : ''}` };
  // (TGI's own /invocations is its POST /: a whole answer an array of one, as SageMaker's Hugging Face containers give)
  if (typeof body.inputs === 'string') return { path: body.stream === true ? '/generate_stream' : '/', named: true };
  if (Array.isArray(body.inputs)) return { path: `/v2/models/${model(body.model)}/infer` };
  if ('instances' in body) return { path: `/v1/models/${model(body.model)}:predict` };
  if ('input' in body) return { path: '/v1/embeddings', named: true };
  throw badInput(
    'the body is none of the APIs /invocations speaks: OpenAI chat (messages) or completions (prompt), embeddings (input), TGI (inputs: text), KServe v2 (inputs: tensors), KServe v1 (instances), Triton generate (text_input)',
  );
}
