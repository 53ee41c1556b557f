import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { parseConfig } from '../src/config/index.js';
import { loadService } from '../src/gateway/grpc/proto.js';
import { binaryBody, MODELS, startTestGateway } from './helpers.js';

// Shadow traffic (config `shadow`): a model's requests sent again to a candidate model, answers discarded, captured
// beside the client's. The candidates here are the same files under other names: their answers must be the same.
const SECRET = 'shadow-secret-0123456789';
const EDGE_SECRET = 'shadow-edge-secret-0123456789'; // (other callers: their own five requests each)
const SOCKET_SECRET = 'shadow-socket-secret-0123456789';
let dir: string;
let gw: Awaited<ReturnType<typeof startTestGateway>>;
const one = { device: 'cpu', scaling: { min_containers: 1, max_containers: 1 } };
const models = {
  'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, ...one, shadow: { model: 'tiny-gpt-next' } },
  'tiny-gpt-next': { path: `${MODELS}tiny-gpt.onnx`, ...one },
  mlp: { path: `${MODELS}mlp.onnx`, ...one, aliases: ['classifier'], shadow: { model: 'mlp-next', percent: 100 } },
  'mlp-next': { path: `${MODELS}mlp.onnx`, ...one },
  identity: { path: `${MODELS}identity.onnx`, device: 'cpu' },
  // (multiplexed: each request names its model by model_id)
  tenants: { path: `${MODELS}tenants/{model_id}.onnx`, ...one, multiplex: {}, shadow: { model: 'tenants-next', percent: 100 } },
  'tenants-next': { path: `${MODELS}tenants/{model_id}.onnx`, ...one, multiplex: {} },
};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'infergate-shadow-'));
  gw = await startTestGateway({
    // Five requests a caller, then 429: the shadows' requests must not spend them.
    auth: {
      default: 'key',
      keys: [
        { id: 'svc', secret: SECRET },
        { id: 'edge', secret: EDGE_SECRET },
        { id: 'socket', secret: SOCKET_SECRET },
      ],
      rate_limit: { per_second: 0.001, burst: 5 },
    },
    // (async_after_s: every request runs as an asynchronous call answered in time, its shadow's request not)
    server: { grpc_port: 0, async_after_s: 30 },
    capture: { dir, models: ['tiny-gpt', 'mlp', 'tenants'] },
    models,
    // Public paths bound to a shadowed model: shadowed through their protocol's own route.
    endpoints: [
      { path: '/score', model: 'mlp', protocol: 'kserve' },
      { path: '/talk', model: 'tiny-gpt', protocol: 'openai-chat' },
    ],
  });
});
afterAll(() => gw?.shutdown());

const auth = { authorization: `Bearer ${SECRET}` };
const Service = loadService('inference.proto', 'inference.GRPCInferenceService', { enums: String });
const records = async () => {
  const lines: string[] = [];
  for (const file of await readdir(dir)) lines.push(...(await readFile(join(dir, file), 'utf8')).trim().split('\n'));
  return lines.filter(Boolean).map((l) => JSON.parse(l));
};
/** The client's capture record and its shadow's, under one request id. */
const pairOf = async (id: string) => {
  await expect.poll(async () => (await records()).filter((r) => r.eventMetadata.eventId === id).length, { timeout: 15_000 }).toBe(2);
  const both = (await records()).filter((r) => r.eventMetadata.eventId === id);
  return { client: both.find((r) => !r.eventMetadata.shadow), shadow: both.find((r) => r.eventMetadata.shadow) };
};
const metric = async (labels: string) => {
  const text = await (await fetch(`${gw.url}/metrics`, { headers: auth })).text();
  const line = text.split('\n').find((l) => l.startsWith('infergate_shadow_requests_total{') && l.includes(labels));
  return line ? Number(line.split(' ').at(-1)) : 0;
};

describe('shadow traffic', () => {
  it("sends a chat to the shadow model too: the client's answer unchanged, the shadow's captured beside it, outside the caller's rate limit", async () => {
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: SECRET });
    const { data, response } = await client.chat.completions
      .create({ model: 'tiny-gpt', messages: [{ role: 'user', content: 'Shall I compare thee' }], max_tokens: 8, temperature: 0 })
      .withResponse();
    expect(data.model).toBe('tiny-gpt');
    const { client: mine, shadow } = await pairOf(response.headers.get('x-request-id') as string);
    expect(mine.eventMetadata.model).toBe('tiny-gpt');
    expect(shadow.eventMetadata).toMatchObject({ model: 'tiny-gpt-next', path: '/v1/chat/completions', status: 200, caller: 'key:svc/shadow' });
    // The same request with the model renamed; the same weights, greedy: the same words.
    expect(JSON.parse(shadow.captureData.endpointInput.data)).toEqual({ ...JSON.parse(mine.captureData.endpointInput.data), model: 'tiny-gpt-next' });
    const theirs = JSON.parse(shadow.captureData.endpointOutput.data);
    expect(theirs.model).toBe('tiny-gpt-next');
    expect(theirs.choices[0].message.content).toBe(data.choices[0].message.content);
    await expect.poll(() => metric('shadow="tiny-gpt-next",status="200"')).toBe(1);
  });

  it('sends a KServe binary request, by an alias, to the shadow: its tensors as sent, its answer the same', async () => {
    const x = new Float32Array(64).map((_, i) => i / 64);
    const { body, headers } = binaryBody(
      { inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', parameters: { binary_data_size: 256 } }], outputs: [{ name: 'probs' }] },
      x,
    );
    const res = await fetch(`${gw.url}/v2/models/classifier/infer`, { method: 'POST', body, headers: { ...headers, ...auth } });
    expect(res.status).toBe(200);
    const answer = await res.json();
    const { client: mine, shadow } = await pairOf(res.headers.get('x-request-id') as string);
    expect(shadow.eventMetadata).toMatchObject({ model: 'mlp-next', path: '/v2/models/mlp-next/infer' });
    expect(shadow.captureData.endpointInput.data).toBe(mine.captureData.endpointInput.data); // the bytes as sent (base64)
    expect(JSON.parse(shadow.captureData.endpointOutput.data).outputs[0].data).toEqual(answer.outputs[0].data);
  });

  it("shadows a configured endpoint's requests (through its protocol's route) and SageMaker's /invocations", async () => {
    const post = async (path: string, body: object) => {
      const headers = { authorization: `Bearer ${EDGE_SECRET}`, 'content-type': 'application/json' };
      const res = await fetch(`${gw.url}${path}`, { method: 'POST', headers, body: JSON.stringify(body) });
      expect(res.status).toBe(200);
      return { answer: await res.json(), ...(await pairOf(res.headers.get('x-request-id') as string)) };
    };
    const x = { inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: Array.from({ length: 64 }, (_, i) => i / 64) }] };
    const scored = await post('/score', x);
    expect(scored.shadow.eventMetadata).toMatchObject({ model: 'mlp-next', path: '/v2/models/mlp-next/infer', status: 200 });
    expect(JSON.parse(scored.shadow.captureData.endpointOutput.data).outputs[0].data).toEqual(scored.answer.outputs[0].data);
    // An OpenAI endpoint's body may name no model (the path's is fixed): the shadow's names its own.
    const chat = { messages: [{ role: 'user', content: 'Hello' }], max_tokens: 4, temperature: 0 };
    const talked = await post('/talk', chat);
    expect(talked.shadow.eventMetadata).toMatchObject({ model: 'tiny-gpt-next', path: '/v1/chat/completions', status: 200 });
    expect(JSON.parse(talked.shadow.captureData.endpointInput.data)).toEqual({ ...chat, model: 'tiny-gpt-next' });
    expect(JSON.parse(talked.shadow.captureData.endpointOutput.data).choices[0].message.content).toBe(talked.answer.choices[0].message.content);
    // SageMaker's /invocations goes on to the body's API route, and is shadowed there.
    const before = await metric('shadow="mlp-next",status="200"');
    const invoked = await fetch(`${gw.url}/invocations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${EDGE_SECRET}`, 'content-type': 'application/json', 'x-amzn-sagemaker-target-model': 'mlp' },
      body: JSON.stringify(x),
    });
    expect(invoked.status).toBe(200);
    await expect.poll(() => metric('shadow="mlp-next",status="200"')).toBe(before + 1);
  });

  it('shadows WebSocket messages as their HTTP requests: an infer and a chat, each captured beside the message', async () => {
    const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/v1/ws`, { headers: { authorization: `Bearer ${SOCKET_SECRET}` } });
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    const got = new Map<string, { type: string; outputs?: { data: number[] }[]; text?: string }[]>();
    ws.on('message', (data) => {
      const msg = JSON.parse(String(data));
      got.set(msg.id, [...(got.get(msg.id) ?? []), msg]);
    });
    const x = Array.from({ length: 64 }, (_, i) => i / 64);
    const chat = { messages: [{ role: 'user', content: 'Hello' }], max_tokens: 4, temperature: 0 };
    ws.send(JSON.stringify({ id: 'i', type: 'infer', model: 'classifier', inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: x }] }));
    ws.send(JSON.stringify({ id: 'c', type: 'chat', model: 'tiny-gpt', ...chat }));
    ws.send(JSON.stringify({ id: 't', type: 'infer', model: 'tenants', model_id: 'beta', inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: x }] }));
    await expect.poll(() => ['i', 'c', 't'].every((id) => ['result', 'done'].includes(got.get(id)?.at(-1)?.type as string))).toBe(true);
    ws.close();
    const shadowOf = async (id: string) => {
      const client = (await records()).find((r) => r.eventMetadata.path === '/v1/ws' && JSON.parse(r.captureData.endpointInput.data).id === id);
      return (await pairOf(client.eventMetadata.eventId)).shadow;
    };
    const inferred = await shadowOf('i');
    expect(inferred.eventMetadata).toMatchObject({ model: 'mlp-next', path: '/v2/models/mlp-next/infer', status: 200, caller: 'key:socket/shadow' });
    expect(JSON.parse(inferred.captureData.endpointOutput.data).outputs[0].data).toEqual(got.get('i')?.at(-1)?.outputs?.[0].data);
    const chatted = await shadowOf('c');
    expect(chatted.eventMetadata).toMatchObject({ model: 'tiny-gpt-next', path: '/v1/chat/completions', status: 200 });
    expect(JSON.parse(chatted.captureData.endpointInput.data)).toEqual({ ...chat, model: 'tiny-gpt-next' });
    const streamed = got
      .get('c')
      ?.map((m) => m.text ?? '')
      .join('');
    expect(JSON.parse(chatted.captureData.endpointOutput.data).choices[0].message.content).toBe(streamed);
    // A multiplexed model's message: its shadow runs the message's model_id (beta's answer, not alpha's, not a 400).
    const multiplexed = await shadowOf('t');
    expect(multiplexed.eventMetadata).toMatchObject({ model: 'tenants-next', status: 200 });
    expect(JSON.parse(multiplexed.captureData.endpointOutput.data).outputs[0].data).toEqual(got.get('t')?.at(-1)?.outputs?.[0].data);
  });

  it("shadows a gRPC ModelInfer as its KServe HTTP request: the shadow's answer the same", async () => {
    const client = new Service(`127.0.0.1:${gw.grpcPort}`, grpc.credentials.createInsecure());
    try {
      const before = await metric('shadow="mlp-next",status="200"');
      const meta = new grpc.Metadata();
      meta.set('authorization', `Bearer ${EDGE_SECRET}`);
      const x = new Float32Array(64).map((_, i) => i / 64);
      const request = { model_name: 'mlp', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 64] }], raw_input_contents: [Buffer.from(x.buffer)] };
      const reply = await new Promise<{ id: string }>((resolve, reject) =>
        (client as unknown as Record<string, (...args: unknown[]) => void>).ModelInfer(request, meta, (err: Error | null, r: { id: string }) =>
          err ? reject(err) : resolve(r),
        ),
      );
      await expect.poll(() => metric('shadow="mlp-next",status="200"')).toBe(before + 1);
      // (the last of key:edge's requests over KServe's path to mlp: this one, after /invocations')
      const mine = (await records()).filter(
        (r) => r.eventMetadata.caller === 'key:edge' && !r.eventMetadata.shadow && r.eventMetadata.path === '/v2/models/mlp/infer',
      );
      const { shadow } = await pairOf(mine.at(-1)?.eventMetadata.eventId);
      expect(shadow.eventMetadata).toMatchObject({ model: 'mlp-next', path: '/v2/models/mlp-next/infer', status: 200 });
      expect(reply).toBeDefined();
    } finally {
      client.close();
    }
  });

  it("runs a Responses API turn on the shadow without keeping it (nor a conversation's turn at all)", async () => {
    const kept = async () => {
      const text = await (await fetch(`${gw.url}/metrics`, { headers: auth })).text();
      return Number(
        text
          .split('\n')
          .find((l) => l.startsWith('infergate_responses_kept '))
          ?.split(' ')[1] ?? 0,
      );
    };
    const before = await metric('shadow="tiny-gpt-next",status="200"');
    const res = await fetch(`${gw.url}/v1/responses`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny-gpt', input: 'Hello', max_output_tokens: 4, store: true }),
    });
    expect(res.status).toBe(200);
    await expect.poll(() => metric('shadow="tiny-gpt-next",status="200"')).toBe(before + 1);
    expect(await kept()).toBe(1); // the client's response only
    const conversation = await (
      await fetch(`${gw.url}/v1/conversations`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: '{}' })
    ).json();
    const turn = await fetch(`${gw.url}/v1/responses`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny-gpt', input: 'Hi', max_output_tokens: 4, conversation: conversation.id }),
    });
    expect(turn.status).toBe(200);
    // Five requests spent; the sixth is refused: the shadows' did not count.
    expect((await fetch(`${gw.url}/v2/models/identity`, { headers: auth })).status).toBe(429);
    expect(await metric('shadow="tiny-gpt-next",status="200"')).toBe(before + 1); // no shadow of the conversation's turn
  });

  it('refuses a shadow that could not answer the model’s requests', async () => {
    const start = (m: Record<string, object>) => startTestGateway({ models: m });
    await expect(start({ mlp: { ...models.mlp, aliases: [], shadow: { model: 'identity' } }, identity: models.identity })).rejects.toThrow(
      "models.mlp.shadow: identity gives y FP32 [N, D], not mlp's probs FP32 [N, 10]",
    );
    await expect(start({ 'tiny-gpt': { ...models['tiny-gpt'], shadow: { model: 'mlp' } }, mlp: { ...models['mlp-next'] } })).rejects.toThrow(
      'models.tiny-gpt.shadow: mlp is a tensor model and tiny-gpt generative: it could not answer its requests',
    );
    expect(() => parseConfig({ models: { m: { path: 'm.onnx', shadow: { model: 'm' } } } })).toThrow('models.m.shadow.model: a model cannot shadow itself');
    expect(() => parseConfig({ models: { m: { path: 'm.onnx', shadow: { model: 'n' } } } })).toThrow('models.m.shadow.model: no model named n');
  });
});
