import { generateKeyPairSync } from 'node:crypto';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createConnection } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { Hono } from 'hono';
import jwt from 'jsonwebtoken';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { parseConfig, reusePortSupported } from '../src/config/index.js';
import { readBody, releaseBody } from '../src/gateway/body.js';
import { loadService } from '../src/gateway/grpc/proto.js';
import { type GatewayEnv, type Listening, listen } from '../src/gateway/index.js';
import { binaryBody, http2Post, MODELS, selfSignedTls, startTestGateway } from './helpers.js';

// server.intake_threads: worker threads accept the connections and read the bodies; the main thread runs
// the same routes. Everything a client can do must work as it does without them.
let gw: Awaited<ReturnType<typeof startTestGateway>>;
beforeAll(async () => {
  gw = await startTestGateway({
    server: { intake_threads: 1 },
    auth: { keys: [{ id: 'billing', secret: 'a-long-enough-shared-secret' }] },
    endpoints: [
      { path: '/private/echo', model: 'identity', auth: 'key' },
      { path: '/public/echo', model: 'identity', auth: 'public', rate_limit: { per_second: 1, burst: 2 } },
      { path: '/public/small', model: 'identity', auth: 'public', max_body_bytes: 100 },
    ],
    models: {
      identity: { path: `${MODELS}identity.onnx`, device: 'cpu', batching: { max_batch_size: 32, wait_ms: 2 }, scaling: { min_containers: 1 } },
      'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', batching: { max_batch_size: 8 }, scaling: { min_containers: 1 } },
    },
  });
});
afterAll(() => gw?.shutdown());

const row = (i: number) => new Float32Array([i, i + 0.5, -i]);
const inferJson = (data: number[]) => JSON.stringify({ inputs: [{ name: 'x', shape: [1, 3], datatype: 'FP32', data }] });

/** A 1.5 MB binary tensor (past what comes with a request's head) to an identity model: its bytes back? */
async function echoLarge(url: string, seed: number, extraHeaders: Record<string, string> = {}) {
  const x = Float32Array.from({ length: 3 * 131_072 }, (_, j) => seed * 1000 + (j % 991));
  const { body, headers } = binaryBody(
    {
      inputs: [{ name: 'x', shape: [1, x.length], datatype: 'FP32', parameters: { binary_data_size: x.byteLength } }],
      parameters: { binary_data_output: true },
    },
    x,
  );
  const res = await fetch(url, { method: 'POST', body, headers: { ...headers, ...extraHeaders } });
  const bytes = Buffer.from(await res.arrayBuffer());
  return { status: res.status, same: bytes.subarray(Number(res.headers.get('inference-header-content-length'))).equals(Buffer.from(x.buffer)) };
}

describe('intake threads', () => {
  it('answers KServe binary and JSON requests, each with its own tensors, many at once', async () => {
    const answers = await Promise.all(
      Array.from({ length: 40 }, async (_, i) => {
        if (i % 2) {
          const r = await fetch(`${gw.url}/v2/models/identity/infer`, { method: 'POST', body: inferJson([...row(i)]) });
          return { i, status: r.status, data: (await r.json()).outputs[0].data as number[] };
        }
        const { body, headers } = binaryBody(
          {
            inputs: [{ name: 'x', shape: [1, 3], datatype: 'FP32', parameters: { binary_data_size: 12 } }],
            outputs: [{ name: 'y', parameters: { binary_data: true } }],
          },
          row(i),
        );
        const r = await fetch(`${gw.url}/v2/models/identity/infer`, { method: 'POST', body, headers });
        const bytes = new Uint8Array(await r.arrayBuffer());
        const json = Number(r.headers.get('inference-header-content-length'));
        return { i, status: r.status, data: [...new Float32Array(bytes.slice(json).buffer)] };
      }),
    );
    for (const a of answers) expect(a).toEqual({ i: a.i, status: 200, data: [...row(a.i)] });
    const stats = await (await fetch(`${gw.url}/v2/models/identity/stats`)).json();
    expect(stats.batches).toBeLessThan(stats.requests); // they shared batches on the main thread
    // The dashboard's numbers say how busy the thread is, beside the main thread.
    const { gateway } = await (await fetch(`${gw.url}/admin/stats`)).json();
    expect(gateway.intakeBusy).toHaveLength(1);
    expect(gateway.intakeBusy[0]).toBeGreaterThan(0);
    expect(gateway.intakeBusy[0]).toBeLessThanOrEqual(1);
  });

  it('refuses a body over its endpoint limit with 413, by Content-Length or while reading, and keeps serving', async () => {
    const big = inferJson(new Array(40).fill(1));
    const declared = await fetch(`${gw.url}/public/small`, { method: 'POST', body: big });
    expect(declared.status).toBe(413);
    expect((await declared.json()).error).toMatch(/exceeds the limit of 100 bytes/);
    const chunked = await fetch(`${gw.url}/public/small`, {
      method: 'POST',
      body: new ReadableStream({
        start(c) {
          c.enqueue(new TextEncoder().encode(big));
          c.close();
        },
      }),
      duplex: 'half',
    } as RequestInit);
    expect(chunked.status).toBe(413);
    // A body the thread reads before it is asked (over 64 KB) is refused by its endpoint's limit all the same.
    const large = await fetch(`${gw.url}/public/small`, { method: 'POST', body: inferJson(new Array(40_000).fill(1)) });
    expect(large.status).toBe(413);
    const ok = await fetch(`${gw.url}/v2/models/identity/infer`, { method: 'POST', body: inferJson([1, 2, 3]) });
    expect(ok.status).toBe(200);
  });

  it('reads request lines as the main thread does: an absolute URL is the URL, a bad Host is a 400', async () => {
    const statusLine = (text: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = createConnection(gw.port, '127.0.0.1');
        socket.once('data', (d) => resolve(String(d).split('\r\n')[0])).once('error', reject);
        socket.write(text);
      });
    expect(await statusLine('GET http://example.com/v2/health/ready HTTP/1.1\r\nhost: example.com\r\nconnection: close\r\n\r\n')).toBe('HTTP/1.1 200 OK');
    expect(await statusLine('GET /v2/health/ready HTTP/1.1\r\nhost: bad host^\r\nconnection: close\r\n\r\n')).toBe('HTTP/1.1 400 Bad Request');
    expect(await statusLine('GET /v2/health/ready HTTP/1.0\r\n\r\n')).toBe('HTTP/1.1 200 OK'); // no Host at all
  });

  it("answers callers refused by auth at once, whatever bodies they declare, and reads everyone else's meanwhile", async () => {
    // 1 KB of a declared 50 MB sent, three times: each 401 comes back while the rest is never sent (nothing
    // waits for it), and the connections stay open, holding what the thread set aside for their bodies.
    const refused = Array.from({ length: 3 }, () => createConnection(gw.port, '127.0.0.1'));
    const heads = refused.map((socket) => {
      socket.write(`POST /private/echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${50 * 2 ** 20}\r\n\r\n${' '.repeat(1024)}`);
      return new Promise<string>((resolve, reject) => socket.once('data', (d) => resolve(String(d))).once('error', reject));
    });
    for (const head of await Promise.all(heads)) expect(head).toMatch(/^HTTP\/1\.1 401 /);
    // Meanwhile: callers with a key and 1.5 MB bodies each get their own rows back.
    const key = { 'infergate-key': 'billing', 'infergate-secret': 'a-long-enough-shared-secret' };
    const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => echoLarge(`${gw.url}/private/echo`, i, key)));
    for (const socket of refused) socket.destroy();
    expect(answers).toEqual(Array.from({ length: 8 }, () => ({ status: 200, same: true })));
  });

  it("limits public callers by their own address, not the thread's", async () => {
    const post = (localAddress: string) =>
      new Promise<number>((resolve, reject) => {
        const body = inferJson([1, 2, 3]);
        const req = request(`${gw.url}/public/echo`, { method: 'POST', localAddress, agent: false }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.once('error', reject).end(body);
      });
    const fromTwo = [await post('127.0.0.2'), await post('127.0.0.2'), await post('127.0.0.2')];
    expect(fromTwo).toEqual([200, 200, 429]);
    expect(await post('127.0.0.3')).toBe(200); // another client has its own budget
  });

  it('streams tokens to the OpenAI client, and a client that leaves stops its generation', async () => {
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused' });
    const stream = await client.chat.completions.create({
      model: 'tiny-gpt',
      messages: [{ role: 'user', content: 'Hi' }],
      max_tokens: 8,
      stream: true,
      seed: 1,
    });
    let text = '';
    let finish: string | null = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(finish).toBe('length');
    expect(text.length).toBeGreaterThan(0);

    const stats = async () => (await fetch(`${gw.url}/v2/models/tiny-gpt/stats`)).json();
    const before = await stats();
    const leaving = await client.completions.create({ model: 'tiny-gpt', prompt: 'Goodbye', max_tokens: 400, stream: true });
    let events = 0;
    for await (const _ of leaving) if (++events === 3) break; // closes the connection
    for (let i = 0; i < 100 && (await stats()).active > 0; i++) await new Promise((r) => setTimeout(r, 20));
    const after = await stats();
    expect(after.active).toBe(0);
    expect(after.shed.cancelled - before.shed.cancelled).toBe(1);
    expect(after.tokens - before.tokens).toBeLessThan(400);
  });

  it('carries WebSocket sessions to the main thread', async () => {
    const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/v1/ws`);
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    const result = new Promise<{ type: string; outputs: { data: number[] }[] }>((resolve) => ws.once('message', (d) => resolve(JSON.parse(String(d)))));
    ws.send(JSON.stringify({ id: 1, type: 'infer', model: 'identity', inputs: [{ name: 'x', shape: [1, 3], datatype: 'FP32', data: [4, 5, 6] }] }));
    expect(await result).toMatchObject({ type: 'result', outputs: [{ data: [4, 5, 6] }] });
    ws.close();
  });

  it('takes multipart uploads (the Batch API files route reads the web Request)', async () => {
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused' });
    const line = `${JSON.stringify({ custom_id: 'a', method: 'POST', url: '/v1/completions', body: { model: 'tiny-gpt', prompt: 'x', max_tokens: 2 } })}\n`;
    const file = await client.files.create({ file: await toFile(Buffer.from(line), 'requests.jsonl'), purpose: 'batch' });
    expect(file.bytes).toBe(Buffer.byteLength(line));
    expect(await (await client.files.content(file.id)).text()).toBe(line);
  });
});

describe('intake threads on shutdown', () => {
  it('answer every accepted request before the gateway stops', async () => {
    const slow = await startTestGateway({
      server: { intake_threads: 1 },
      models: {
        slow: {
          path: `${MODELS}slow.onnx`,
          device: 'cpu',
          threads: 1,
          batching: { max_batch_size: 2, wait_ms: 0, timeout_ms: 20000 },
          scaling: { min_containers: 1 },
        },
      },
    });
    const body = JSON.stringify({ inputs: [{ name: 'x', shape: [1, 16], datatype: 'FP32', data: new Array(16).fill(1) }] });
    const requests = Array.from({ length: 8 }, () => fetch(`${slow.url}/v2/models/slow/infer`, { method: 'POST', body }));
    for (let i = 0; i < 200 && (await (await fetch(`${slow.url}/v2/models/slow/stats`)).json()).requests < 8; i++) await new Promise((r) => setTimeout(r, 5));
    const stopped = slow.shutdown();
    const statuses = await Promise.all(
      requests.map((r) =>
        r.then(
          (res) => res.status,
          (e) => String(e.cause),
        ),
      ),
    );
    await stopped;
    expect(statuses).toEqual(new Array(8).fill(200));
    await expect(fetch(`${slow.url}/v2/health/ready`)).rejects.toThrow(); // no longer accepting
  });
});

describe('intake threads with JWT auth', () => {
  it('keep a body that arrives before its route asks for it (auth still fetching the JWKS)', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    // The key set comes slowly: the thread has read the whole body by the time auth lets the route read it.
    const jwks = createServer((_req, res) =>
      setTimeout(() => res.end(JSON.stringify({ keys: [{ ...publicKey.export({ format: 'jwk' }), kid: 'k1', alg: 'ES256' }] })), 300),
    );
    await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r));
    const jwtGw = await startTestGateway({
      server: { intake_threads: 1 },
      auth: {
        default: 'jwt',
        jwt: { issuer: 'https://auth.test/', audience: 'infergate', jwks_url: `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/` },
      },
      models: { identity: { path: `${MODELS}identity.onnx`, device: 'cpu', scaling: { min_containers: 1 } } },
    });
    try {
      const token = jwt.sign({ sub: 'alice' }, privateKey.export({ format: 'pem', type: 'pkcs8' }), {
        algorithm: 'ES256',
        keyid: 'k1',
        issuer: 'https://auth.test/',
        audience: 'infergate',
        expiresIn: 60,
      });
      expect(await echoLarge(`${jwtGw.url}/v2/models/identity/infer`, 3, { authorization: `Bearer ${token}` })).toEqual({ status: 200, same: true });
    } finally {
      await jwtGw.shutdown();
      jwks.close();
    }
  });
});

describe('intake threads with TLS', () => {
  it('serve HTTP/2 over TLS', async () => {
    const files = await selfSignedTls();
    const tls = await startTestGateway({
      server: { intake_threads: 1, tls: { cert: files.cert, key: files.key } },
      models: { identity: { path: `${MODELS}identity.onnx`, device: 'cpu', scaling: { min_containers: 1 } } },
    });
    try {
      const answer = await http2Post(`https://127.0.0.1:${tls.port}`, files.ca, '/v2/models/identity/infer', inferJson([7, 8, 9]));
      expect(answer.alpn).toBe('h2');
      expect(answer.status).toBe(200);
      expect(JSON.parse(answer.body).outputs[0].data).toEqual([7, 8, 9]);
    } finally {
      await tls.shutdown();
    }
  });
});

describe('several intake threads', () => {
  const config = {
    server: { intake_threads: 2 },
    models: { identity: { path: `${MODELS}identity.onnx`, device: 'cpu', scaling: { min_containers: 1 } } },
  };
  it.skipIf(reusePortSupported())('are a config error before Node 22.12, with the reason', async () => {
    expect(() => parseConfig(config)).toThrow(/server\.intake_threads: more than 1 needs Node 22\.12 or later/);
  });
  it.runIf(reusePortSupported())('share the port from Node 22.12', async () => {
    const two = await startTestGateway(config);
    try {
      const statuses = await Promise.all(
        Array.from({ length: 20 }, () =>
          fetch(`${two.url}/v2/models/identity/infer`, { method: 'POST', body: inferJson([1, 2, 3]), headers: { connection: 'close' } }).then((r) => r.status),
        ),
      );
      expect(statuses).toEqual(new Array(20).fill(200));
    } finally {
      await two.shutdown();
    }
  });
});

describe('gRPC on intake threads (server.grpc_port)', () => {
  it('is served by the threads on one port (shared from Node 22.12), each call answered by the main thread, streams too', async () => {
    const threads = reusePortSupported() ? 2 : 1;
    const gateway = await startTestGateway({
      server: { intake_threads: threads, grpc_port: 0 },
      models: {
        identity: { path: `${MODELS}identity.onnx`, device: 'cpu', batching: { max_batch_size: 16, wait_ms: 5 }, scaling: { min_containers: 1 } },
        'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', scaling: { min_containers: 1 } },
      },
    });
    const Service = loadService('inference.proto', 'inference.GRPCInferenceService');
    type Client = Record<string, (r: object, cb: (e: Error | null, r: { raw_output_contents: Buffer[] }) => void) => void>;
    // A channel (a connection) each, as many clients would: the kernel spreads connections over the threads.
    const clients = Array.from(
      { length: 12 },
      (_, i) => new Service(`127.0.0.1:${gateway.grpcPort}`, grpc.credentials.createInsecure(), { 'grpc.channel_id': i }),
    );
    try {
      const answers = await Promise.all(
        clients.map(
          (client, i) =>
            new Promise<number[]>((resolve, reject) =>
              (client as unknown as Client).ModelInfer(
                { model_name: 'identity', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3] }], raw_input_contents: [Buffer.from(row(i).buffer)] },
                (err, reply) => (err ? reject(err) : resolve(Array.from(new Float32Array(new Uint8Array(reply.raw_output_contents[0]).buffer)))),
              ),
            ),
        ),
      );
      expect(answers).toEqual(answers.map((_, i) => Array.from(row(i))));
      // A generative stream: its pieces cross from the main thread one by one.
      const text = (t: string) => Buffer.concat([Buffer.from(new Uint32Array([Buffer.byteLength(t)]).buffer), Buffer.from(t)]);
      const stream = (
        clients[0] as unknown as { ModelStreamInfer(): grpc.ClientDuplexStream<object, { infer_response?: { raw_output_contents: Buffer[] } }> }
      ).ModelStreamInfer();
      const pieces: string[] = [];
      const ended = new Promise((resolve, reject) =>
        stream
          .on('data', (r) => pieces.push(r.infer_response?.raw_output_contents[0]?.subarray(4).toString() ?? ''))
          .on('end', resolve)
          .on('error', reject),
      );
      stream.write({
        model_name: 'tiny-gpt',
        inputs: [
          { name: 'text_input', datatype: 'BYTES', shape: [1] },
          { name: 'stream', datatype: 'BOOL', shape: [1] },
          { name: 'sampling_parameters', datatype: 'BYTES', shape: [1] },
        ],
        raw_input_contents: [text('Once upon a time'), Buffer.from([1]), text('{"max_tokens": 10, "seed": 4}')],
      });
      stream.end();
      await ended;
      const http = await fetch(`${gateway.url}/v2/models/tiny-gpt/generate`, {
        method: 'POST',
        body: JSON.stringify({ text_input: 'Once upon a time', parameters: { max_tokens: 10, seed: 4 }, exclude_input_in_output: true }),
      });
      expect(pieces.length).toBeGreaterThan(2);
      expect(pieces.join('')).toBe((await http.json()).text_output);
    } finally {
      for (const client of clients) client.close();
      await gateway.shutdown();
    }
  });
});

describe("an intake thread's body buffers", () => {
  // Each body is read into one of the thread's pooled buffers, sized up to a class (so with room past the body),
  // and handed to the main thread: a mark left in that room shows whether the next body of the size reuses it.
  const app = new Hono<GatewayEnv>();
  const room = (body: Uint8Array) => new Uint8Array(body.buffer, body.buffer.byteLength - 1, 1);
  app.post('/mark', async (c) => {
    const body = await readBody(c, 2 ** 20);
    room(body)[0] = 7;
    releaseBody(body);
    return c.text('marked');
  });
  app.post('/peek', async (c) => {
    const body = await readBody(c, 2 ** 20);
    const mark = room(body)[0];
    room(body)[0] = 0;
    releaseBody(body);
    return c.text(String(mark));
  });
  app.post('/refuse', (c) => c.text('no', 401)); // never reads its body
  let server: Listening;
  beforeAll(async () => {
    server = await listen(app, { port: 0, host: '127.0.0.1', intakeThreads: 1 });
  });
  afterAll(() => server?.close(1000));
  const post = async (path: string, size: number) =>
    (await fetch(`http://127.0.0.1:${server.port}${path}`, { method: 'POST', body: new Uint8Array(size) })).text();

  // Bodies up to 64 KB are not pooled (young-generation garbage, cheap); larger ones are.
  it('are reused once released, and when their route never reads them', async () => {
    const size = 100_000;
    await post('/mark', size);
    expect(await post('/peek', size)).toBe('7'); // released: the same buffer
    await post('/mark', size);
    expect(await post('/refuse', size)).toBe('no');
    // The refused body went into the marked buffer and came back unread: the next body finds the mark.
    await new Promise((r) => setTimeout(r, 50));
    expect(await post('/peek', size)).toBe('7');
  });
});

describe('a streamed answer through an intake thread', () => {
  // A route that writes 64 KB chunks for as long as it is let: how far it gets shows whether it waits for its reader.
  const app = new Hono<GatewayEnv>();
  let produced = 0;
  app.get('/endless', () => {
    const chunk = new Uint8Array(65_536).fill(46);
    const body = new ReadableStream<Uint8Array>(
      {
        pull(controller) {
          produced++;
          controller.enqueue(chunk);
        },
      },
      { highWaterMark: 0 },
    );
    return new Response(body, { headers: { 'content-type': 'application/octet-stream' } });
  });
  let server: Listening;
  beforeAll(async () => {
    server = await listen(app, { port: 0, host: '127.0.0.1', intakeThreads: 1 });
  });
  afterAll(() => server?.close(1000));

  it('waits for a client that reads slowly (its producer is not run ahead), as on the main thread', async () => {
    const socket = createConnection(server.port, '127.0.0.1');
    socket.write('GET /endless HTTP/1.1\r\nHost: test\r\n\r\n');
    socket.pause(); // reads nothing: what the kernel's buffers take, then the thread's, and no more
    await new Promise((r) => setTimeout(r, 1000));
    const held = produced;
    await new Promise((r) => setTimeout(r, 1000));
    expect(produced).toBe(held); // not a chunk more while the client read nothing
    expect(held * 65_536).toBeLessThan(64 * 2 ** 20); // the buffers' worth, not a second of postMessage (GBs)
    let received = 0;
    socket.on('data', (d: Buffer) => (received += d.byteLength));
    socket.resume();
    for (let i = 0; i < 100 && produced < held + 32; i++) await new Promise((r) => setTimeout(r, 20));
    expect(produced).toBeGreaterThanOrEqual(held + 32); // reading again lets it go on
    expect(received).toBeGreaterThan(0);
    socket.destroy();
  });
});
