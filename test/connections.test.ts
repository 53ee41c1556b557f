import { readFileSync } from 'node:fs';
import { connect as connectHttp2 } from 'node:http2';
import { connect, type Socket } from 'node:net';
import { connect as connectTls } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { binaryBody, capturedLog, MODELS, selfSignedTls, startTestGateway } from './helpers.js';

// Raw sockets, not fetch: what is under test is the connection itself (how long an idle one stays open).
let gw: Awaited<ReturnType<typeof startTestGateway>>;
let defaults: Awaited<ReturnType<typeof startTestGateway>>;
const { log, lines: logLines } = capturedLog();
beforeAll(async () => {
  const models = {
    mlp: { path: `${MODELS}mlp.onnx`, device: 'cpu', scaling: { min_containers: 0 } },
    identity: { path: `${MODELS}identity.onnx`, device: 'cpu', scaling: { min_containers: 1 } },
  };
  gw = await startTestGateway({ server: { keep_alive_timeout_s: 2, send_timeout_s: 1, max_body_bytes: 2 ** 30 }, models }, { log });
  defaults = await startTestGateway({ models });
});
afterAll(async () => {
  await gw?.shutdown();
  await defaults?.shutdown();
});

/** Sends a GET on the socket and resolves with the response head once it has come. */
function get(socket: Socket, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (chunk: Buffer) => {
      text += chunk.toString('latin1');
      if (!text.includes('\r\n\r\n')) return;
      socket.off('data', onData).off('close', onClose);
      resolve(text.slice(0, text.indexOf('\r\n\r\n')));
    };
    const onClose = () => reject(new Error(`the connection closed before an answer to ${path}`));
    socket.on('data', onData).once('close', onClose);
    socket.write(`GET ${path} HTTP/1.1\r\nHost: test\r\n\r\n`);
  });
}

const open = (url: string) =>
  new Promise<Socket>((resolve) => {
    const socket = connect(Number(new URL(url).port), '127.0.0.1', () => resolve(socket));
  });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('idle HTTP/1.1 connections', () => {
  it('stay open server.keep_alive_timeout_s, said in Keep-Alive, and are closed after it', async () => {
    const socket = await open(gw.url);
    expect(await get(socket, '/v2/health/live')).toMatch(/\r\nKeep-Alive: timeout=2(\r\n|$)/i);
    await sleep(700);
    expect(await get(socket, '/v2/health/live')).toMatch(/^HTTP\/1\.1 200/); // reused after an idle moment
    const closed = new Promise((resolve) => socket.once('close', resolve));
    expect(await Promise.race([closed.then(() => 'closed'), sleep(6000).then(() => 'still open')])).toBe('closed');
  });

  it('stay open 65 s by default, longer than a load balancer keeps its own (AWS ALB: 60 s)', async () => {
    const socket = await open(defaults.url);
    expect(await get(socket, '/v2/health/live')).toMatch(/\r\nKeep-Alive: timeout=65(\r\n|$)/i);
    socket.destroy();
  });
});

/**
 * MiB more than this machine's kernel can hold of one connection (the receiver's buffer at its largest plus the
 * sender's): an answer that size cannot vanish into buffers while its client reads nothing. (A CI machine once took
 * all 16 MiB of a fixed size.)
 */
function pastKernelBuffers(): number {
  const largest = (name: string) => Number(readFileSync(`/proc/sys/net/ipv4/${name}`, 'utf8').trim().split(/\s+/)[2]);
  try {
    return Math.max(16, Math.ceil((largest('tcp_rmem') + largest('tcp_wmem')) / 2 ** 20) + 8);
  } catch {
    return 64; // no /proc (not Linux)
  }
}

/** A KServe binary request to identity whose answer is `mib` MiB of tensor. */
function bigIdentityRequest(mib: number) {
  const x = new Float32Array(mib * 2 ** 18).fill(0.5);
  return binaryBody(
    {
      inputs: [{ name: 'x', shape: [1, x.length], datatype: 'FP32', parameters: { binary_data_size: x.byteLength } }],
      parameters: { binary_data_output: true },
    },
    x,
  );
}

/**
 * Asks identity for a `mib` MiB answer; once its first bytes come, reads nothing for `pauseMs` (the kernel's buffers
 * take some of it), then reads (napping `nap` ms after each read) until the connection ends or the answer is whole.
 * The pause is timed from the answer's start, not the request's: a large body takes seconds to pass here.
 */
async function stallThenRead(url: string, pauseMs: number, { mib = 16, nap = 0 } = {}): Promise<{ head: string; declared: number; received: number }> {
  const { body, headers } = bigIdentityRequest(mib);
  const socket = await open(url);
  const lines = Object.entries({ ...headers, 'content-length': String(body.byteLength), host: 'test' }).map(([k, v]) => `${k}: ${v}`);
  socket.write(`POST /v2/models/identity/infer HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`);
  socket.write(body);
  const chunks: Buffer[] = [];
  let size = 0;
  await new Promise((resolve) =>
    socket.once('data', (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.byteLength;
      socket.pause(); // nothing more is read off the socket: as a client that stopped reading, or a network gone silent
      resolve(chunk);
    }),
  );
  await sleep(pauseMs);
  socket.on('data', (chunk: Buffer) => {
    chunks.push(chunk);
    size += chunk.byteLength;
    if (nap > 0) {
      socket.pause(); // a slow reader: a nap after each read
      setTimeout(() => socket.resume(), nap);
    }
  });
  socket.resume();
  const whole = () => {
    const text = Buffer.concat(chunks).subarray(0, 4096).toString('latin1');
    const end = text.indexOf('\r\n\r\n');
    const declared = Number(/^content-length: (\d+)/im.exec(text)?.[1] ?? Number.NaN);
    return end >= 0 && size - end - 4 >= declared;
  };
  // (up to 25 s: a napping reader on CI's loaded 2 cores took over 10 s for 8 MiB, and was cut here, not by the gateway)
  for (let i = 0; i < 1250 && !socket.destroyed && !socket.readableEnded && !whole(); i++) await sleep(20);
  socket.destroy();
  const all = Buffer.concat(chunks);
  const end = all.indexOf('\r\n\r\n');
  const head = all.subarray(0, end).toString('latin1');
  return { head, declared: Number(/^content-length: (\d+)/im.exec(head)?.[1]), received: all.byteLength - end - 4 };
}

/** A gateway serving identity over TLS (HTTP/2 and HTTP/1.1) with these server settings. */
async function tlsGateway(server: object) {
  const tls = await selfSignedTls();
  const gw = await startTestGateway({
    server: { ...server, tls: { cert: tls.cert, key: tls.key } },
    models: { identity: { path: `${MODELS}identity.onnx`, device: 'cpu' } },
  });
  return { gw, origin: gw.url.replace('http:', 'https:'), tls };
}

describe('answers whose client stops reading (server.send_timeout_s)', () => {
  it('are ended once the client has taken none of the bytes for that long, and the others are served whole', async () => {
    const mib = pastKernelBuffers();
    const [stalled, slow] = await Promise.all([stallThenRead(gw.url, 3000, { mib }), stallThenRead(gw.url, 300)]);
    expect(stalled.head).toMatch(/^HTTP\/1\.1 200/);
    expect(stalled.declared).toBeGreaterThan(mib * 2 ** 20);
    expect(stalled.received).toBeGreaterThan(0); // what the kernel's buffers held when the gateway gave up
    expect(stalled.received).toBeLessThan(stalled.declared); // then closed: not sent whole
    // (this gateway traces nothing: its request lines name no trace — it was the all-zero id on every line)
    const requestLines = logLines.filter((l) => l.msg === 'request');
    expect(requestLines.length).toBeGreaterThan(0);
    expect(requestLines.every((l) => l.traceId === undefined)).toBe(true);
    const said = logLines.filter((l) => l.msg.includes('server.send_timeout_s'));
    expect(said).toHaveLength(1);
    expect(said[0]).toMatchObject({ method: 'POST', path: '/v2/models/identity/infer', client: '127.0.0.1' });
    expect(said[0].unsentBytes).toBeGreaterThan(0);
    expect(await (await fetch(`${gw.url}/metrics`)).text()).toMatch(/^infergate_connections_ended_total\{[^}]*reason="send_timeout"[^}]*\} 1$/m);
    // A client that paused for less than the limit gets every byte.
    expect(slow.received).toBe(slow.declared);
    // One that keeps taking bytes, with naps shorter than the limit, is never cut, however long the answer takes.
    const napper = await stallThenRead(gw.url, 0, { mib: 4, nap: 25 }); // ~2 s here: twice the limit
    expect(napper.received).toBe(napper.declared);
  }, 60_000);

  it('on HTTP/2 cancel the stalled stream and send its client to a new connection', async () => {
    const { gw: h2, origin, tls } = await tlsGateway({ send_timeout_s: 1 });
    const session = connectHttp2(origin, { ca: tls.ca });
    try {
      const goaway = new Promise((resolve) => session.once('goaway', resolve));
      const { body, headers } = bigIdentityRequest(16);
      const stalled = session.request({ ':method': 'POST', ':path': '/v2/models/identity/infer', ...headers });
      stalled.end(body);
      stalled.pause(); // its flow-control window is never opened again
      const reset = new Promise<number>((resolve) => stalled.once('close', () => resolve(stalled.rstCode)));
      expect(await Promise.race([reset, sleep(8000).then(() => 'still open')])).toBe(8); // NGHTTP2_CANCEL
      await goaway;
      const fresh = connectHttp2(origin, { ca: tls.ca });
      const live = fresh.request({ ':path': '/v2/health/live' });
      expect(await new Promise((resolve) => live.once('response', (h) => resolve(h[':status'])))).toBe(200);
      live.resume();
      fresh.close();
    } finally {
      session.close();
      await h2.shutdown();
    }
  });
});

describe('Expect: 100-continue (curl sends it with bodies over 1 MB)', () => {
  const SECRET = 'a-long-enough-shared-secret';
  let keyed: Awaited<ReturnType<typeof startTestGateway>>;
  beforeAll(async () => {
    keyed = await startTestGateway({
      server: { max_body_bytes: 4 * 2 ** 20 },
      auth: { default: 'key', keys: [{ id: 'k', secret: SECRET }] },
      models: { identity: { path: `${MODELS}identity.onnx`, device: 'cpu', scaling: { min_containers: 1 } } },
    });
  });
  afterAll(() => keyed?.shutdown());

  /** Sends a request's head with Expect: 100-continue and no body: what the gateway says first (its status line). */
  async function headOnly(headers: Record<string, string>, length: number) {
    const socket = await open(keyed.url);
    const { body, headers: kserve } = bigIdentityRequest(1);
    const lines = Object.entries({ ...kserve, ...headers, host: 'test', expect: '100-continue', 'content-length': String(length) });
    socket.write(`POST /v2/models/identity/infer HTTP/1.1\r\n${lines.map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n`);
    let text = '';
    const first = await new Promise<string>((resolve) => {
      socket.on('data', (d: Buffer) => {
        text += d.toString('latin1');
        if (text.includes('\r\n')) resolve(text.slice(0, text.indexOf('\r\n')));
      });
    });
    return { first, socket, body, more: () => text };
  }

  it('answers a refused request without asking for its body, and asks for it when the request is read', async () => {
    const key = { 'infergate-key': 'k', 'infergate-secret': SECRET };
    const refused = await headOnly({}, 2 ** 20 + 200); // no credentials
    expect(refused.first).toBe('HTTP/1.1 401 Unauthorized'); // not "100 Continue": the body was never sent
    refused.socket.destroy();
    const tooLarge = await headOnly(key, 5 * 2 ** 20);
    expect(tooLarge.first).toBe('HTTP/1.1 413 Payload Too Large');
    tooLarge.socket.destroy();
  });

  it('then takes the body and answers it', async () => {
    const key = { 'infergate-key': 'k', 'infergate-secret': SECRET };
    const { body } = bigIdentityRequest(1);
    const go = await headOnly(key, body.byteLength);
    expect(go.first).toBe('HTTP/1.1 100 Continue');
    go.socket.write(body);
    for (let i = 0; i < 200 && !go.more().includes('HTTP/1.1 200'); i++) await sleep(10);
    expect(go.more()).toContain('HTTP/1.1 200 OK');
    go.socket.destroy();
  });
});

describe('token streams (SSE) and their connections', () => {
  it("close when the client said Connection: close (the SSE helper's keep-alive kept them open), and a reset HTTP/2 stream stops its generation", async () => {
    const tls = await selfSignedTls();
    const gen = await startTestGateway({
      server: { tls: { cert: tls.cert, key: tls.key, http2: true } },
      models: { 'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', scaling: { min_containers: 1 } } },
    });
    const origin = gen.url.replace('http:', 'https:');
    try {
      const body = JSON.stringify({ model: 'tiny-gpt', prompt: 'Hi', max_tokens: 4, stream: true });
      const socket = await new Promise<Socket>((resolve) => {
        const s = connectTls({ port: gen.port, host: '127.0.0.1', ca: tls.ca, ALPNProtocols: ['http/1.1'] }, () => resolve(s));
      });
      let text = '';
      socket.on('data', (chunk: Buffer) => {
        text += chunk.toString('latin1');
      });
      const closed = new Promise((resolve) => socket.once('close', () => resolve('closed')));
      socket.write(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      expect(await Promise.race([closed, sleep(5000).then(() => 'still open')])).toBe('closed');
      expect(text).toMatch(/^HTTP\/1\.1 200/);
      expect(text).toContain('data: [DONE]');
      expect(text).not.toMatch(/\r\nconnection: keep-alive/i);

      // HTTP/2: the client resets a long stream after its first token; its generation is cancelled, not run out.
      const session = connectHttp2(origin, { ca: tls.ca });
      const stats = () =>
        new Promise<{ shed: { cancelled: number } }>((resolve) => {
          const req = session.request({ ':path': '/v2/models/tiny-gpt/stats' });
          let json = '';
          req.on('data', (d: Buffer) => {
            json += d;
          });
          req.on('end', () => resolve(JSON.parse(json)));
        });
      const before = (await stats()).shed.cancelled;
      const long = session.request({ ':method': 'POST', ':path': '/v1/completions', 'content-type': 'application/json' });
      long.end(JSON.stringify({ model: 'tiny-gpt', prompt: 'Hi', max_tokens: 400, ignore_eos: true, stream: true }));
      await new Promise((resolve) => long.once('data', resolve));
      long.close(8); // NGHTTP2_CANCEL
      let after = before;
      for (let i = 0; i < 100 && after === before; i++) {
        await sleep(50);
        after = (await stats()).shed.cancelled;
      }
      expect(after).toBe(before + 1);
      session.close();
    } finally {
      await gen.shutdown();
    }
  });
});

describe('connections during server.shutdown_delay_s', () => {
  it('are served, and each answer sends its connection away: Connection: close, or GOAWAY on HTTP/2', async () => {
    const { gw: leaving, origin, tls } = await tlsGateway({ shutdown_delay_s: 2 });
    const socket = await new Promise<Socket>((resolve) => {
      const s = connectTls({ port: leaving.port, host: '127.0.0.1', ca: tls.ca, ALPNProtocols: ['http/1.1'] }, () => resolve(s));
    });
    const session = connectHttp2(origin, { ca: tls.ca });
    const h2Status = (path: string) =>
      new Promise((resolve) => {
        const req = session.request({ ':path': path });
        req.once('response', (h) => resolve(h[':status'])).resume();
      });
    try {
      expect(await get(socket, '/v2/health/live')).not.toMatch(/\r\nConnection: close/i); // kept before
      expect(await h2Status('/v2/health/live')).toBe(200);
      const goaway = new Promise((resolve) => session.once('goaway', () => resolve('goaway')));
      const stopped = leaving.shutdown();
      await sleep(200);
      // Still served (not ready: a load balancer moves on), but told to reconnect: elsewhere, once this replica is out.
      const head = await get(socket, '/v2/health/live');
      expect(head).toMatch(/^HTTP\/1\.1 200/);
      expect(head).toMatch(/\r\nConnection: close/i);
      const closed = await Promise.race([new Promise((r) => socket.once('close', () => r('closed'))), sleep(1000).then(() => 'open')]);
      expect(closed).toBe('closed'); // by the server, at once: long before the delay ends
      expect(await h2Status('/v2/health/ready')).toBe(503);
      expect(await Promise.race([goaway, sleep(1000).then(() => 'no goaway')])).toBe('goaway');
      await stopped;
    } finally {
      socket.destroy();
      session.destroy();
      await leaving.shutdown();
    }
  });
});
