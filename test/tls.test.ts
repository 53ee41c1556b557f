import { request as httpsRequest } from 'node:https';
import { createParser } from 'eventsource-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { http2Post, MODELS, selfSignedTls, startTestGateway } from './helpers.js';

// A certificate made in the test; HTTPS with HTTP/2 by ALPN and HTTP/1.1 beside it.
let gw: Awaited<ReturnType<typeof startTestGateway>>;
let ca: string;
let origin: string;
beforeAll(async () => {
  const files = await selfSignedTls();
  ca = files.ca;
  gw = await startTestGateway({
    server: { tls: { cert: files.cert, key: files.key } },
    models: {
      mlp: { path: `${MODELS}mlp.onnx`, device: 'cpu', scaling: { min_containers: 1 } },
      'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', scaling: { min_containers: 1 } },
    },
  });
  origin = `https://127.0.0.1:${gw.port}`;
});
afterAll(() => gw?.shutdown());

const inferBody = JSON.stringify({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: new Array(64).fill(0.5) }] });

describe('HTTPS', () => {
  it('serves HTTP/2 (ALPN h2) end to end', async () => {
    const answer = await http2Post(origin, ca, '/v2/models/mlp/infer', inferBody);
    expect(answer.alpn).toBe('h2');
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body).outputs[0].shape).toEqual([1, 10]);
  });

  it('streams tokens over HTTP/2 (SSE without HTTP/1 connection headers: one crashed the gateway)', async () => {
    for (const [path, body] of [
      ['/v1/completions', { model: 'tiny-gpt', prompt: 'Hi', max_tokens: 5, stream: true }],
      ['/v2/models/tiny-gpt/generate_stream', { text_input: 'Hi', parameters: { max_tokens: 5 } }],
    ] as const) {
      const answer = await http2Post(origin, ca, path, JSON.stringify(body));
      expect(answer).toMatchObject({ alpn: 'h2', status: 200 });
      expect(answer.body.match(/^data: /gm)?.length).toBeGreaterThan(3);
    }
    expect((await http2Post(origin, ca, '/v2/models/mlp/infer', inferBody)).status).toBe(200); // still serving
  });

  it('serves HTTP/1.1 over TLS, including an SSE stream', async () => {
    const body = JSON.stringify({ model: 'tiny-gpt', prompt: 'Hi', max_tokens: 5, stream: true });
    const events = await new Promise<string[]>((resolve, reject) => {
      const options = { method: 'POST', ca, ALPNProtocols: ['http/1.1'], headers: { 'content-type': 'application/json' } };
      const req = httpsRequest(`${origin}/v1/completions`, options as never, (res) => {
        expect(res.statusCode).toBe(200);
        expect((res.socket as unknown as { alpnProtocol: string }).alpnProtocol).toBe('http/1.1');
        const data: string[] = [];
        const parser = createParser({ onEvent: (e) => data.push(e.data) });
        res.setEncoding('utf8');
        res.on('data', (d: string) => parser.feed(d));
        res.on('end', () => resolve(data));
      });
      req.on('error', reject);
      req.end(body);
    });
    expect(events.at(-1)).toBe('[DONE]');
    expect(events.length).toBeGreaterThan(3);
  });

  it('upgrades a WebSocket over TLS (wss://)', async () => {
    const ws = new WebSocket(`wss://127.0.0.1:${gw.port}/v1/ws`, { ca });
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    const done = new Promise<{ type: string; finish_reason: string }>((resolve) =>
      ws.on('message', (d) => {
        const m = JSON.parse(String(d));
        if (m.type === 'done') resolve(m);
      }),
    );
    ws.send(JSON.stringify({ id: 1, type: 'completion', model: 'tiny-gpt', prompt: 'Hi', max_tokens: 3 }));
    expect(await done).toMatchObject({ finish_reason: 'length' });
    ws.close();
  });
});
