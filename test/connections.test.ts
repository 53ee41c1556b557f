import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODELS, startTestGateway } from './helpers.js';

// Raw sockets, not fetch: what is under test is the connection itself (how long an idle one stays open).
let gw: Awaited<ReturnType<typeof startTestGateway>>;
let defaults: Awaited<ReturnType<typeof startTestGateway>>;
beforeAll(async () => {
  const models = { mlp: { path: `${MODELS}mlp.onnx`, device: 'cpu', scaling: { min_containers: 0 } } };
  gw = await startTestGateway({ server: { keep_alive_timeout_s: 2 }, models });
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
