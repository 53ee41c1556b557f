/**
 * The HTTP intake of bench/edge-threads.ts, without the rest of the gateway: it reads each request body
 * into a reused buffer and answers 32 KB (ResNet-50's logits for 8 images), either
 *   - `single`: on the main thread, as the gateway does now, or
 *   - `threads N`: on N worker threads that accept on one listening socket (the first worker binds it, the
 *     others listen on its file descriptor: threads share the process's descriptors) and hand each body to
 *     the main thread — where the batcher would be — by transfer, not copy; the main thread sends it back
 *     with the answer, for the worker to reuse.
 *   node --import tsx bench/edge-server.ts single|threads PORT [N]
 */
import { createServer } from 'node:http';
import { MessageChannel, Worker } from 'node:worker_threads';
import { keepFreedMemory, requestBuffers } from '../src/gateway/buffer-pool.js';

const [mode, port, threads] = process.argv.slice(2);
keepFreedMemory(); // as the gateway does (bench/results/body-memory-cpu.md)

/** What the main thread does with a body: stands in for the batcher (which reads only the header). */
const touch = (body: Uint8Array) => {
  body[0] ^= 1;
};

// Plain JavaScript: a worker started by eval does not get tsx's loader.
const WORKER = `
const { createServer } = require('node:http');
const { workerData } = require('node:worker_threads');
const { parent, listenPort, fd } = workerData;
const answer = Buffer.alloc(32 * 1024);
const waiting = new Map();
const free = [];
let next = 0;
parent.on('message', ({ id, body }) => {
  const res = waiting.get(id);
  waiting.delete(id);
  res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(answer);
  free.push(body.buffer);
});
const server = createServer((req, res) => {
  if (req.method === 'GET') return res.end('ready');
  const length = Number(req.headers['content-length']);
  const reused = free.findIndex((b) => b.byteLength === length);
  const body = new Uint8Array(reused >= 0 ? free.splice(reused, 1)[0] : new ArrayBuffer(length));
  let at = 0;
  req.on('data', (chunk) => {
    body.set(chunk, at);
    at += chunk.byteLength;
  });
  req.on('end', () => {
    const id = next++;
    waiting.set(id, res);
    parent.postMessage({ id, body }, [body.buffer]);
  });
});
if (fd === undefined) server.listen(listenPort, '127.0.0.1', () => parent.postMessage({ fd: server._handle.fd }));
else server.listen({ fd });
`;

if (mode === 'single') {
  const answer = Buffer.alloc(32 * 1024);
  createServer((req, res) => {
    if (req.method === 'GET') return res.end('ready');
    const body = new Uint8Array(requestBuffers.acquire(Number(req.headers['content-length'])), 0, Number(req.headers['content-length']));
    let at = 0;
    req.on('data', (chunk: Buffer) => {
      body.set(chunk, at);
      at += chunk.byteLength;
    });
    req.on('end', () => {
      touch(body);
      res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(answer);
      requestBuffers.release(body.buffer);
    });
  }).listen(Number(port), '127.0.0.1');
} else if (mode === 'threads') {
  const start = (data: { listenPort?: number; fd?: number }) => {
    const { port1, port2 } = new MessageChannel();
    new Worker(WORKER, { eval: true, workerData: { ...data, parent: port2 }, transferList: [port2] });
    port1.on('message', (m: { fd?: number; id: number; body: Uint8Array }) => {
      if (m.fd !== undefined) {
        for (let i = 1; i < Number(threads); i++) start({ fd: m.fd });
        return;
      }
      touch(m.body);
      port1.postMessage({ id: m.id, body: m.body }, [m.body.buffer as ArrayBuffer]);
    });
  };
  start({ listenPort: Number(port) });
} else throw new Error(`mode ${mode}: expected single or threads`);
