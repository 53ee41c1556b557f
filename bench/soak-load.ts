/**
 * The soak's traffic (bench/soak.ts), in its own process: `clients` closed loops, each sending the next kind of
 * request in turn — tensors (JSON, binary, an ensemble, a multiplexed model), token streams read to the end or
 * dropped after their first token, chat, embeddings, WebSocket sessions finished or cut, and bad requests —
 * and checking each answer's status. Every `reportS` seconds it prints a JSON line: requests done by kind, and
 * any answer that was not what that kind should get.
 *   node --import tsx bench/soak-load.ts '{"url": "http://127.0.0.1:8080", "clients": 8, "seconds": 600, "reportS": 10}'
 */
import * as grpc from '@grpc/grpc-js';
import WebSocket from 'ws';
import { loadService } from '../src/gateway/grpc/proto.js';

type Plan = { url: string; grpcPort?: number; clients: number; seconds: number; reportS: number; kinds?: string[] };
const plan = JSON.parse(process.argv[2]) as Plan;
const { url } = plan;

const json = (path: string, body: object, headers: Record<string, string> = {}) =>
  fetch(url + path, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
const tensor = (name: string, n: number) => ({ name, shape: [1, n], datatype: 'FP32', data: Array.from({ length: n }, (_, i) => i / n) });

/** The KServe binary extension: JSON header, then the tensor's bytes. */
function binaryInfer(model: string, values: Float32Array): Promise<Response> {
  const header = Buffer.from(
    JSON.stringify({ inputs: [{ name: 'x', shape: [1, values.length], datatype: 'FP32', parameters: { binary_data_size: values.byteLength } }] }),
  );
  return fetch(`${url}/v2/models/${model}/infer`, {
    method: 'POST',
    headers: { 'inference-header-content-length': String(header.length), 'content-type': 'application/octet-stream' },
    body: Buffer.concat([header, Buffer.from(values.buffer)]),
  });
}

/** A status, after reading the body to its end (or, with `dropAfterFirst`, after its first chunk, then leaving). */
async function statusOf(res: Promise<Response>, dropAfterFirst = false, abort?: AbortController): Promise<number> {
  const r = await res;
  const reader = r.body?.getReader();
  if (reader && dropAfterFirst) {
    await reader.read();
    abort?.abort();
    await reader.cancel().catch(() => {});
  } else if (reader) while (!(await reader.read()).done);
  return r.status;
}

/** A WebSocket session: a completion and an inference; `cut` ends the socket after the first token instead. */
function wsSession(seed: number, cut: boolean): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${url.replace('http', 'ws')}/v1/ws`);
    let left = 2;
    const finish = (code: number) => {
      ws.removeAllListeners();
      ws.on('error', () => {});
      if (cut) ws.terminate();
      else ws.close();
      resolve(code);
    };
    ws.on('open', () => {
      ws.send(JSON.stringify({ id: 'c', type: 'completion', model: 'tiny-gpt', prompt: `Session ${seed} says`, max_tokens: 12, seed }));
      ws.send(JSON.stringify({ id: 'i', type: 'infer', model: 'mlp', inputs: [tensor('x', 64)] }));
    });
    ws.on('message', (data) => {
      const m = JSON.parse(String(data)) as { id: string; type: string };
      if (m.type === 'error') return finish(500);
      if (cut && m.type === 'token') return finish(101);
      if (m.type === 'done' || m.type === 'result') if (--left === 0) finish(101);
    });
    ws.on('error', () => finish(0));
  });
}

/** KServe v2 gRPC ModelInfer (the tensor as raw contents): 200 for OK, 400 for INVALID_ARGUMENT, else 500. */
const Service = loadService('inference.proto', 'inference.GRPCInferenceService');
const rpc = plan.grpcPort ? new Service(`127.0.0.1:${plan.grpcPort}`, grpc.credentials.createInsecure()) : undefined;
function grpcInfer(values: Float32Array): Promise<number> {
  const request = {
    model_name: 'mlp',
    inputs: [{ name: 'x', datatype: 'FP32', shape: [1, values.length] }],
    raw_input_contents: [Buffer.from(values.buffer, values.byteOffset, values.byteLength)],
  };
  type Infer = (r: object, cb: (err: grpc.ServiceError | null) => void) => void;
  return new Promise((resolve) =>
    ((rpc as unknown as { ModelInfer: Infer }).ModelInfer.bind(rpc) as Infer)(request, (err) =>
      resolve(!err ? 200 : err.code === grpc.status.INVALID_ARGUMENT ? 400 : 500),
    ),
  );
}

type Kind = { name: string; expect: number; send: (seed: number) => Promise<number> };
const mlpRow = new Float32Array(64).fill(0.25);
const ALL_KINDS: Kind[] = [
  { name: 'kserve_json', expect: 200, send: () => statusOf(json('/v2/models/identity/infer', { inputs: [tensor('x', 3)] })) },
  { name: 'kserve_binary', expect: 200, send: () => statusOf(binaryInfer('mlp', mlpRow)) },
  { name: 'ensemble', expect: 200, send: () => statusOf(json('/v2/models/pipeline/infer', { inputs: [tensor('features', 64)] })) },
  {
    name: 'multiplexed',
    expect: 200,
    send: (seed) => statusOf(json('/v2/models/tenants/infer', { inputs: [tensor('x', 64)] }, { serve_multiplexed_model_id: seed % 2 ? 'alpha' : 'beta' })),
  },
  {
    name: 'completion_stream',
    expect: 200,
    send: (seed) => statusOf(json('/v1/completions', { model: 'tiny-gpt', prompt: `Request ${seed} streams`, max_tokens: 16, seed, stream: true })),
  },
  {
    name: 'completion_dropped',
    expect: 200,
    send: (seed) => {
      const abort = new AbortController();
      const res = fetch(`${url}/v1/completions`, {
        method: 'POST',
        signal: abort.signal,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'tiny-gpt', prompt: `Request ${seed} is left`, max_tokens: 64, seed, stream: true }),
      });
      return statusOf(res, true, abort);
    },
  },
  {
    name: 'chat',
    expect: 200,
    send: (seed) => statusOf(json('/v1/chat/completions', { model: 'sonnets', messages: [{ role: 'user', content: `Hello ${seed}` }], max_tokens: 8, seed })),
  },
  { name: 'embeddings', expect: 200, send: (seed) => statusOf(json('/v1/embeddings', { model: 'tiny-embed', input: [`text ${seed}`, 'another text'] })) },
  { name: 'websocket', expect: 101, send: (seed) => wsSession(seed, false) },
  { name: 'websocket_cut', expect: 101, send: (seed) => wsSession(seed, true) },
  ...(rpc
    ? [
        { name: 'grpc_infer', expect: 200, send: () => grpcInfer(mlpRow) },
        { name: 'grpc_bad_shape', expect: 400, send: () => grpcInfer(mlpRow.subarray(1)) },
      ]
    : []),
  { name: 'bad_shape', expect: 400, send: () => statusOf(json('/v2/models/mlp/infer', { inputs: [tensor('x', 63)] })) },
  { name: 'unknown_model', expect: 404, send: () => statusOf(json('/v2/models/nothing/infer', { inputs: [tensor('x', 3)] })) },
  {
    name: 'bad_json',
    expect: 400,
    send: () => statusOf(fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model": "tiny-gpt",' })),
  },
];

const KINDS = plan.kinds ? ALL_KINDS.filter((k) => plan.kinds?.includes(k.name)) : ALL_KINDS;
if (KINDS.length === 0) throw new Error(`no such kinds: ${plan.kinds}; there are ${ALL_KINDS.map((k) => k.name)}`);
const done: Record<string, number> = {};
const unexpected: Record<string, number> = {};
let seed = 0;
const end = Date.now() + plan.seconds * 1000;

async function client(offset: number): Promise<void> {
  for (let i = offset; Date.now() < end; i++) {
    const kind = KINDS[i % KINDS.length];
    const status = await kind.send(++seed).catch(() => 0);
    done[kind.name] = (done[kind.name] ?? 0) + 1;
    if (status !== kind.expect) unexpected[`${kind.name}:${status}`] = (unexpected[`${kind.name}:${status}`] ?? 0) + 1;
  }
}

const report = () => console.log(JSON.stringify({ done, unexpected }));
const timer = setInterval(report, plan.reportS * 1000);
await Promise.all(Array.from({ length: plan.clients }, (_, c) => client(c)));
clearInterval(timer);
rpc?.close();
report();
