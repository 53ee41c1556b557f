import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { binaryBody, MODELS, startTestGateway } from './helpers.js';

// Data capture (config `capture`): KServe's payload logger (CloudEvents to a URL) and SageMaker's Data Capture (JSON
// lines in a folder), off the requests' path. A real HTTP collector receives the events.
type Event = { headers: IncomingHttpHeaders; body: Buffer };
let collector: Server;
let collectorUrl: string;
const events: Event[] = [];
let dir: string;
let gw: Awaited<ReturnType<typeof startTestGateway>>;

const models = {
  mlp: { path: `${MODELS}mlp.onnx`, device: 'cpu', scaling: { min_containers: 1 } },
  identity: { path: `${MODELS}identity.onnx`, device: 'cpu' },
  'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', scaling: { min_containers: 1 } },
};
beforeAll(async () => {
  collector = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      events.push({ headers: req.headers, body: Buffer.concat(chunks) });
      // (a batch is answered after 50 ms: the captures coming meanwhile wait for the next POST)
      if (req.headers['content-type'] === 'application/cloudevents-batch+json') setTimeout(() => res.end(), 50);
      else res.end();
    });
  });
  await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
  collectorUrl = `http://127.0.0.1:${(collector.address() as { port: number }).port}/events`;
  dir = await mkdtemp(join(tmpdir(), 'infergate-capture-'));
  gw = await startTestGateway({
    capture: { url: collectorUrl, dir, models: ['mlp', 'tiny-gpt'], metadata_headers: ['x-tenant'] },
    models,
  });
});
afterAll(async () => {
  await gw?.shutdown();
  collector?.close();
});

/** The events of one request (by its id), once both have come. */
const eventsOf = async (id: string, count = 2) => {
  await expect.poll(() => events.filter((e) => e.headers['ce-id'] === id).length).toBe(count);
  return events.filter((e) => e.headers['ce-id'] === id);
};
/** The folder's capture records, every line of every hour's file. */
const records = async () => {
  const lines = [];
  for (const file of await readdir(dir)) lines.push(...(await readFile(join(dir, file), 'utf8')).trim().split('\n'));
  return lines.map((line) => JSON.parse(line));
};
const x = Array.from({ length: 64 }, (_, i) => i / 64);

describe('data capture', () => {
  it('sends a request and its answer as they were, as KServe logger events, and writes them as a SageMaker capture record', async () => {
    const body = JSON.stringify({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: x }] });
    const res = await fetch(`${gw.url}/v2/models/mlp/infer`, { method: 'POST', body, headers: { 'content-type': 'application/json', 'x-tenant': 'acme' } });
    const answer = await res.text();
    const id = res.headers.get('x-request-id') as string;
    const [request, response] = await eventsOf(id);
    expect(request.headers).toMatchObject({
      'ce-specversion': '1.0',
      'ce-type': 'org.kubeflow.serving.inference.request',
      'ce-inferenceservicename': 'mlp',
      'ce-endpoint': '/v2/models/mlp/infer',
      'content-type': 'application/json',
      'ce-metadata': JSON.stringify({ 'x-tenant': 'acme' }),
    });
    expect(request.body.toString()).toBe(body);
    expect(response.headers).toMatchObject({ 'ce-type': 'org.kubeflow.serving.inference.response', 'ce-status': '200' });
    expect(response.body.toString()).toBe(answer);
    await expect.poll(async () => (await records()).find((r) => r.eventMetadata.eventId === id)).toBeDefined();
    const record = (await records()).find((r) => r.eventMetadata.eventId === id);
    expect(record).toMatchObject({
      captureData: {
        endpointInput: { observedContentType: 'application/json', mode: 'INPUT', encoding: 'JSON', data: body },
        endpointOutput: { mode: 'OUTPUT', encoding: 'JSON', data: answer },
      },
      eventMetadata: { model: 'mlp', path: '/v2/models/mlp/infer', status: 200, headers: { 'x-tenant': 'acme' } },
    });
  });

  it('keeps binary tensors byte for byte (base64 in the file), a refused request with its error, and no model not named', async () => {
    const { body, headers } = binaryBody(
      { inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', parameters: { binary_data_size: 256 } }] },
      new Float32Array(x),
    );
    const res = await fetch(`${gw.url}/v2/models/mlp/infer`, { method: 'POST', body, headers });
    await res.arrayBuffer();
    const id = res.headers.get('x-request-id') as string;
    const [request] = await eventsOf(id);
    expect(new Uint8Array(request.body)).toEqual(body);
    await expect.poll(async () => (await records()).find((r) => r.eventMetadata.eventId === id)).toBeDefined();
    const record = (await records()).find((r) => r.eventMetadata.eventId === id);
    expect(record.captureData.endpointInput.encoding).toBe('BASE64');
    expect(Buffer.from(record.captureData.endpointInput.data, 'base64')).toEqual(Buffer.from(body));
    // A wrong shape: its 400 captured beside the request (what monitoring wants to see).
    const bad = await fetch(`${gw.url}/v2/models/mlp/infer`, {
      method: 'POST',
      body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 3], datatype: 'FP32', data: [1, 2, 3] }] }),
    });
    expect(bad.status).toBe(400);
    const [, refused] = await eventsOf(bad.headers.get('x-request-id') as string);
    expect(refused.headers['ce-status']).toBe('400');
    // (sent as text/plain, as fetch and curl -d send a string: JSON all the same, written as JSON)
    const badId = bad.headers.get('x-request-id');
    await expect.poll(async () => (await records()).find((r) => r.eventMetadata.eventId === badId)).toBeDefined();
    expect((await records()).find((r) => r.eventMetadata.eventId === badId).captureData.endpointInput).toMatchObject({
      observedContentType: 'text/plain;charset=UTF-8',
      encoding: 'JSON',
    });
    // identity is not among capture.models: nothing of it.
    const other = await fetch(`${gw.url}/v2/models/identity/infer`, {
      method: 'POST',
      body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 3], datatype: 'FP32', data: [1, 2, 3] }] }),
    });
    expect(other.status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(events.filter((e) => e.headers['ce-id'] === other.headers.get('x-request-id'))).toEqual([]);
  });

  it('captures a token stream as the client read it, once it ends', async () => {
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const { data: stream, response } = await client.chat.completions
      .create({ model: 'tiny-gpt', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 8, stream: true })
      .withResponse();
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    const [request, answer] = await eventsOf(response.headers.get('x-request-id') as string);
    expect(JSON.parse(request.body.toString())).toMatchObject({ model: 'tiny-gpt', stream: true });
    expect(answer.headers['content-type']).toContain('text/event-stream');
    const sent = answer.body
      .toString()
      .split('\n\n')
      .filter((e) => e.startsWith('data: {'))
      .map((e) => JSON.parse(e.slice('data: '.length)).choices[0]?.delta.content ?? '')
      .join('');
    expect(sent).toBe(text);
    expect(answer.body.toString().trim().endsWith('data: [DONE]')).toBe(true);
    // A client that goes mid-stream still stops its generation (captured or not), and what it got is captured.
    const shedCancelled = async () => (await (await fetch(`${gw.url}/v2/models/tiny-gpt/stats`)).json()).shed.cancelled as number;
    const before = await shedCancelled();
    const controller = new AbortController();
    const long = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ model: 'tiny-gpt', messages: [{ role: 'user', content: 'Tell a long story' }], max_tokens: 400, stream: true }),
      signal: controller.signal,
    });
    await (long.body as ReadableStream).getReader().read();
    controller.abort();
    await expect.poll(shedCancelled).toBe(before + 1);
    const [, cut] = await eventsOf(long.headers.get('x-request-id') as string);
    expect(cut.body.toString()).not.toContain('[DONE]');
  });

  it("captures a WebSocket's messages: each request with what was answered for it (a stream's tokens, an error), a model not named left out", async () => {
    const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/v1/ws`, { headers: { 'x-tenant': 'acme' } });
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    const got = new Map<string, object[]>();
    ws.on('message', (data) => {
      const msg = JSON.parse(String(data));
      got.set(msg.id, [...(got.get(msg.id) ?? []), msg]);
    });
    const asked = [
      { id: 'a', type: 'infer', model: 'mlp', inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: x }] },
      { id: 'b', type: 'chat', model: 'tiny-gpt', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4 },
      { id: 'c', type: 'infer', model: 'mlp', inputs: [{ name: 'x', shape: [1, 3], datatype: 'FP32', data: [1, 2, 3] }] },
      { id: 'd', type: 'infer', model: 'identity', inputs: [{ name: 'x', shape: [1, 2], datatype: 'FP32', data: [1, 2] }] },
    ];
    for (const m of asked) ws.send(JSON.stringify(m));
    const last = (id: string) => (got.get(id) ?? []).at(-1) as { type?: string } | undefined;
    await expect.poll(() => asked.every((m) => ['result', 'done', 'error'].includes(last(m.id)?.type ?? ''))).toBe(true);
    ws.close();
    const fromSocket = async () => (await records()).filter((r) => r.eventMetadata.path === '/v1/ws');
    await expect.poll(async () => (await fromSocket()).length).toBe(3); // identity's is not captured (capture.models)
    for (const m of asked.slice(0, 3)) {
      const record = (await fromSocket()).find((r) => JSON.parse(r.captureData.endpointInput.data).id === m.id);
      expect(JSON.parse(record.captureData.endpointInput.data)).toEqual(m);
      // What the client got for this id, a JSON line each (in the file as text: SageMaker's TEXT encoding).
      const answered = record.captureData.endpointOutput.data
        .trim()
        .split('\n')
        .map((l: string) => JSON.parse(l));
      expect(answered).toEqual(got.get(m.id));
      expect(record.eventMetadata).toMatchObject({ model: m.model, status: m.id === 'c' ? 400 : 200, headers: { 'x-tenant': 'acme' } });
    }
    const ids = (await fromSocket()).map((r) => r.eventMetadata.eventId);
    expect(new Set(ids).size).toBe(3); // the socket's request id and each message's number
  });

  it('never holds a request up: a collector that is down fails the captures (counted), not the requests; sample_rate 0 captures none', async () => {
    const down = await startTestGateway({ capture: { url: 'http://127.0.0.1:1/events' }, models: { mlp: models.mlp } });
    const none = await startTestGateway({ capture: { url: collectorUrl, sample_rate: 0 }, models: { mlp: models.mlp } });
    // Room for 100 bytes of payloads waiting: a request's capture does not fit, and is dropped (counted).
    const tight = await startTestGateway({ capture: { url: collectorUrl, max_queue_mb: 100 / 2 ** 20 }, models: { mlp: models.mlp } });
    try {
      const body = JSON.stringify({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: x }] });
      for (let i = 0; i < 3; i++) expect((await fetch(`${down.url}/v2/models/mlp/infer`, { method: 'POST', body })).status).toBe(200);
      const failed = async () =>
        Number((await (await fetch(`${down.url}/metrics`)).text()).match(/infergate_captured_total\{result="failed"\} (\d+)/)?.[1] ?? 0);
      await expect.poll(failed).toBe(3);
      for (let i = 0; i < 2; i++) expect((await fetch(`${tight.url}/v2/models/mlp/infer`, { method: 'POST', body })).status).toBe(200);
      const dropped = Number((await (await fetch(`${tight.url}/metrics`)).text()).match(/infergate_captured_total\{result="dropped"\} (\d+)/)?.[1] ?? 0);
      expect(dropped).toBe(2);
      const res = await fetch(`${none.url}/v2/models/mlp/infer`, { method: 'POST', body });
      expect(res.status).toBe(200);
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(events.filter((e) => e.headers['ce-id'] === res.headers.get('x-request-id'))).toEqual([]);
    } finally {
      await down.shutdown();
      await none.shutdown();
      await tight.shutdown();
    }
  });

  it('POSTs events together as CloudEvents batches with batch_events: every capture once, none lost at shutdown', async () => {
    const batched = await startTestGateway({ capture: { url: collectorUrl, batch_events: 10 }, models: { mlp: models.mlp } });
    const bodies = Array.from({ length: 30 }, (_, k) =>
      JSON.stringify({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: x.map((v) => v * k) }] }),
    );
    const answered = await Promise.all(
      bodies.map(async (body) => {
        const res = await fetch(`${batched.url}/v2/models/mlp/infer`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
        return { id: res.headers.get('x-request-id') as string, body, answer: await res.json() };
      }),
    );
    const bytes = new Float32Array(64).fill(0.5);
    const binary = binaryBody({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', parameters: { binary_data_size: 256 } }] }, bytes);
    const res = await fetch(`${batched.url}/v2/models/mlp/infer`, { method: 'POST', ...binary });
    expect(res.status).toBe(200);
    await batched.shutdown(); // (what waits is sent before it stops)
    const posts = events.filter((e) => e.headers['content-type'] === 'application/cloudevents-batch+json');
    const sent = posts.flatMap((e) => JSON.parse(e.body.toString()) as Record<string, unknown>[]);
    expect(posts.every((e) => JSON.parse(e.body.toString()).length <= 10)).toBe(true);
    expect(posts.length).toBeLessThan(sent.length / 2); // (batches formed while the POSTs before were answered)
    expect(sent.length).toBe(62);
    for (const { id, body, answer } of answered) {
      const [request, response] = ['request', 'response'].map((kind) => sent.filter((e) => e.id === id && e.type === `org.kubeflow.serving.inference.${kind}`));
      expect([request.length, response.length]).toEqual([1, 1]);
      expect(request[0]).toMatchObject({
        specversion: '1.0',
        inferenceservicename: 'mlp',
        endpoint: '/v2/models/mlp/infer',
        datacontenttype: 'application/json',
      });
      expect(request[0].data).toEqual(JSON.parse(body)); // JSON as itself
      expect(response[0]).toMatchObject({ status: '200', data: answer });
    }
    // Bytes in base64.
    const binaryRequest = sent.find((e) => e.id === res.headers.get('x-request-id') && e.type === 'org.kubeflow.serving.inference.request');
    expect(Buffer.from(binaryRequest?.data_base64 as string, 'base64')).toEqual(Buffer.from(binary.body));
    await expect(startTestGateway({ capture: { url: collectorUrl, batch_events: 0 }, models })).rejects.toThrow(/batch_events/);
  });
});
