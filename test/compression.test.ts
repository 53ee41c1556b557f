import { execFile } from 'node:child_process';
import { request } from 'node:http';
import { promisify } from 'node:util';
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { binaryBody, MODELS, random, startTestGateway } from './helpers.js';

// Raw node:http requests: fetch sends its own Accept-Encoding and hides Content-Encoding once it has inflated.
let gw: Awaited<ReturnType<typeof startTestGateway>>;
let plain: Awaited<ReturnType<typeof startTestGateway>>;
const models = {
  identity: { path: `${MODELS}identity.onnx`, device: 'cpu' },
  'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu' },
  'tiny-embed': { path: `${MODELS}tiny-embed.onnx`, device: 'cpu' },
};
beforeAll(async () => {
  // (limits per client address: they set headers on the answer made, which must not make it a stream)
  const limits = { rate_limit: { per_second: 1000, burst: 1000, max_concurrent: 100 } };
  gw = await startTestGateway({ server: { compress_responses: true }, auth: { default: 'public', ...limits }, models });
  plain = await startTestGateway({ models: { identity: models.identity } });
});
afterAll(async () => {
  await gw?.shutdown();
  await plain?.shutdown();
});

type Answer = { status: number; headers: Record<string, string | string[] | undefined>; bytes: Buffer };
function send(url: string, path: string, headers: Record<string, string>, body?: string | Uint8Array): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { method: body === undefined ? 'GET' : 'POST', headers }, (res) => {
      const chunks: Buffer[] = [];
      res
        .on('data', (c: Buffer) => chunks.push(c))
        .on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, bytes: Buffer.concat(chunks) }));
    });
    req.once('error', reject).end(body);
  });
}

const inflate: Record<string, (b: Buffer) => Buffer> = { gzip: gunzipSync, br: brotliDecompressSync, deflate: inflateSync };
const identityBody = (n: number) => JSON.stringify({ inputs: [{ name: 'x', shape: [1, n], datatype: 'FP32', data: random(n) }] });
const infer = (url: string, acceptEncoding: string, n = 2000) =>
  send(url, '/v2/models/identity/infer', { 'accept-encoding': acceptEncoding, 'content-type': 'application/json' }, identityBody(n));

describe('server.compress_responses', () => {
  it('sends a JSON answer compressed as the client asks (br, gzip, deflate), the same answer once inflated', async () => {
    const asIs = await infer(gw.url, 'identity');
    expect(asIs.headers['content-encoding']).toBeUndefined();
    expect(asIs.headers.vary).toMatch(/accept-encoding/i); // a cache between must keep the forms apart
    const answer = JSON.parse(asIs.bytes.toString());
    expect(answer.outputs[0].data).toHaveLength(2000);
    for (const [asked, expected] of [
      ['gzip, deflate, br', 'br'], // what fetch sends: br is as fast here and smaller
      ['gzip, deflate', 'gzip'], // what requests and httpx send
      ['deflate', 'deflate'],
      ['br;q=0.5, gzip', 'gzip'], // the client's values first
      ['br;q=0, *', 'gzip'],
      ['*', 'br'],
    ]) {
      const res = await infer(gw.url, asked);
      expect(res.status).toBe(200);
      expect(res.headers['content-encoding'], asked).toBe(expected);
      expect(Number(res.headers['content-length'])).toBe(res.bytes.byteLength);
      expect(res.bytes.byteLength).toBeLessThan(asIs.bytes.byteLength * 0.6);
      expect(JSON.parse(inflate[expected](res.bytes).toString())).toEqual(answer);
    }
    // Past 64 KB the compressing is handed to libuv's pool: the same answer again.
    const large = await infer(gw.url, 'gzip', 10_000);
    expect(large.headers['content-encoding']).toBe('gzip');
    expect(JSON.parse(gunzipSync(large.bytes).toString()).outputs[0].data).toHaveLength(10_000);
  });

  it('sends as they are: answers under 1 KB, binary tensors, event streams, clients that accept none, and by default', async () => {
    const unasked = [
      await infer(gw.url, 'gzip;q=0, br;q=0, deflate;q=0'),
      await infer(gw.url, 'gzip;q=0, br;q=0, deflate;q=0, *'),
      await infer(gw.url, 'compress'), // one the gateway does not have
      await infer(gw.url, 'gzip', 4), // a small answer
      await send(gw.url, '/v2/health/ready', { 'accept-encoding': 'gzip' }),
      await infer(plain.url, 'gzip'), // not asked for in the config
    ];
    for (const res of unasked) {
      expect(res.status).toBe(200);
      expect(res.headers['content-encoding']).toBeUndefined();
      expect(Number(res.headers['content-length'])).toBe(res.bytes.byteLength); // still written whole, not streamed
    }
    expect(JSON.parse(unasked[0].bytes.toString()).outputs[0].data).toHaveLength(2000);
    const x = new Float32Array(4096).fill(0.25);
    const { body, headers } = binaryBody(
      {
        inputs: [{ name: 'x', shape: [1, x.length], datatype: 'FP32', parameters: { binary_data_size: x.byteLength } }],
        parameters: { binary_data_output: true },
      },
      x,
    );
    const binary = await send(gw.url, '/v2/models/identity/infer', { ...headers, 'accept-encoding': 'gzip' }, body);
    expect(binary.headers['content-type']).toBe('application/octet-stream');
    expect(binary.headers['content-encoding']).toBeUndefined();
    expect(binary.bytes.byteLength).toBeGreaterThan(x.byteLength);
    // Each event of a stream goes when it is made, never held in a compressor.
    const stream = await send(
      gw.url,
      '/v1/completions',
      { 'accept-encoding': 'gzip', 'content-type': 'application/json' },
      JSON.stringify({ model: 'tiny-gpt', prompt: 'Hello', max_tokens: 40, stream: true }),
    );
    expect(stream.headers['content-type']).toMatch(/^text\/event-stream/);
    expect(stream.headers['content-encoding']).toBeUndefined();
    expect(stream.bytes.toString()).toMatch(/data: \[DONE\]\n\n$/);
  });

  it('serves clients that inflate by themselves: the openai client, and curl --compressed', async () => {
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused' });
    const texts = Array.from({ length: 8 }, (_, i) => `sentence number ${i} about compression`);
    const { data } = await client.embeddings.create({ model: 'tiny-embed', input: texts });
    expect(data).toHaveLength(8);
    expect(data[0].embedding.every(Number.isFinite)).toBe(true);
    const args = [
      '-s',
      '--compressed',
      '-D',
      '-',
      '-H',
      'content-type: application/json',
      '--data-binary',
      identityBody(2000),
      `${gw.url}/v2/models/identity/infer`,
    ];
    const { stdout } = await promisify(execFile)('curl', args, { maxBuffer: 2 ** 24 });
    expect(stdout).toMatch(/\r\ncontent-encoding: (gzip|br|deflate)\r\n/i);
    expect(JSON.parse(stdout.slice(stdout.indexOf('\r\n\r\n') + 4)).outputs[0].data).toHaveLength(2000);
  });
});
