import { Agent, request } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { extname } from 'node:path';
import type { Worker } from 'node:worker_threads';
import * as grpc from '@grpc/grpc-js';
import { createParser } from 'eventsource-parser';
import { loadService } from './gateway/grpc/proto.js';
import { spawnWorker } from './models/thread.js';

/**
 * `infergate perf`: load on a running gateway, as Triton's perf_analyzer and genai-perf measure a server. At each
 * concurrency, that many closed-loop clients each send their next request as the last is answered, for `seconds`
 * (after one request each, not counted). A tensor model gets KServe v2 infer requests of random data shaped by its
 * metadata (dynamic dimensions 1, or `shapes`), as binary tensors; a generative model (its metadata's `text_input`)
 * completion streams of `promptTokens` words and `maxTokens` tokens each — time to first token, the gaps between
 * tokens and tokens a second, as genai-perf reports them; a text encoder (`endpoint: embeddings`) /v1/embeddings of
 * `texts` texts a request.
 */
export type PerfOptions = {
  url: string;
  model: string;
  concurrency: number[];
  /**
   * Open loop instead: requests a second, each sent when it is due whatever the answers, its latency counted from
   * then (a closed loop waits on slow answers and under-counts them: coordinated omission).
   */
  requestRates?: number[];
  seconds: number;
  /** Input dimensions for a tensor model's dynamic ones: name → full shape. */
  shapes?: Record<string, number[]>;
  promptTokens?: number;
  maxTokens?: number;
  /**
   * A generative model's streams: OpenAI's completions (the prompt as it is), or chat completions (laid out as a
   * chat). `embeddings`: a text encoder's /v1/embeddings (genai-perf's embeddings endpoint), `texts` a request.
   */
  endpoint?: 'completions' | 'chat' | 'embeddings';
  /** Embeddings: texts in each request (each of `promptTokens` words). */
  texts?: number;
  /** Sent with every request (auth: `Authorization`, or `Infergate-Key` / `Infergate-Secret`); over gRPC as metadata. */
  headers?: Record<string, string>;
  /** Certificates (PEM) an HTTPS gateway's is trusted by, instead of the system's: a self-signed gateway's own. */
  ca?: string;
  /** A tensor model over KServe v2 gRPC at this address (host:port: the gateway's server.grpc_port) instead of HTTP. */
  grpc?: string;
  /** Worker threads the clients are dealt over (default 1): past about a core's worth of requests, one thread is the limit. */
  threads?: number;
};

type Quantiles = { p50: number; p90: number; p99: number };
export type PerfRow = {
  /** The load: closed-loop clients, or (open loop) requests a second sent. */
  concurrency?: number;
  requestRate?: number;
  requests: number;
  requestsPerS: number;
  latencyMs: Quantiles;
  /** Answers that were not 200 (or streams that ended without [DONE]), by status. */
  errors: Record<string, number>;
  /** Generative models: the first token's wait, the gaps between tokens, output tokens a second. */
  ttftMs?: Quantiles;
  interTokenMs?: Quantiles;
  outputTokensPerS?: number;
  /** Embeddings: texts embedded a second (requests × texts). */
  textsPerS?: number;
};
export type PerfResult = { model: string; kind: 'tensor' | 'generative' | 'embeddings'; rows: PerfRow[] };

export type Metadata = { inputs: { name: string; datatype: string; shape: number[] }[]; parameters?: { max_batch_size?: number } };
/** `status`: 200 when answered; else the HTTP status, a gRPC status's name, 0 (no answer) or -1 (a stream cut short). */
type Answer = { status: number | string; ms: number; ttftMs?: number; gapsMs?: number[]; tokens?: number };

export async function perf(o: PerfOptions, progress: (row: PerfRow) => void = () => {}): Promise<PerfResult> {
  const headers = o.headers ?? {};
  const metadata = o.grpc ? await grpcMetadata(o.grpc, o.model, headers, grpcTls(o)) : await httpMetadata(new URL(o.url), o.model, headers, o.ca);
  const generative = metadata.inputs.some((i) => i.name === 'text_input');
  if (generative && o.grpc) throw new Error(`${o.model} is generative: its tokens stream over HTTP (leave --grpc out)`);
  if (o.endpoint === 'embeddings' && (generative || o.grpc))
    throw new Error(`--endpoint embeddings loads a text encoder over HTTP: ${o.model} ${o.grpc ? 'over gRPC' : 'is generative'}`);
  const rows: PerfRow[] = [];
  const loads: Load[] = o.requestRates?.length ? o.requestRates.map((requestRate) => ({ requestRate })) : o.concurrency.map((concurrency) => ({ concurrency }));
  for (const load of loads) {
    const threads = Math.min(o.threads ?? 1, load.concurrency ?? Number.POSITIVE_INFINITY);
    const run =
      threads > 1
        ? await inThreads(threads, { o, metadata, load })
        : await runLoad({ o, metadata, load, share: { index: 0, of: 1 } }, async () => performance.now());
    const row = { ...load, ...summary(run, generative) };
    if (o.endpoint === 'embeddings') row.textsPerS = Math.round(row.requestsPerS * (o.texts ?? 1));
    progress(row);
    rows.push(row);
  }
  return { model: o.model, kind: generative ? 'generative' : o.endpoint === 'embeddings' ? 'embeddings' : 'tensor', rows };
}

type Load = { concurrency?: number; requestRate?: number };
/** One thread's part of a load: of `of` threads, the `index`th (clients, or requests due, dealt in turn). */
export type LoadPart = { o: PerfOptions; metadata: Metadata; load: Load; share: { index: number; of: number } };

/**
 * Runs this thread's part of a load on clients of its own. `started` is called once they are warmed up and answers
 * when the measured window starts (on performance.now()'s clock): at once in one thread, together in several.
 */
export async function runLoad({ o, metadata, load, share }: LoadPart, started: () => Promise<number>): Promise<Run> {
  const generative = metadata.inputs.some((i) => i.name === 'text_input');
  const clients = load.concurrency && Math.floor(load.concurrency / share.of) + (share.index < load.concurrency % share.of ? 1 : 0);
  const connections = clients || OPEN_LOOP_CONNECTIONS;
  const headers = o.headers ?? {};
  const client = o.grpc
    ? new GrpcChannels(o.grpc, Math.min(connections, MAX_GRPC_CHANNELS), headers, grpcTls(o))
    : new HttpClient(new URL(o.url), connections, headers, o.ca);
  const send =
    client instanceof GrpcChannels
      ? grpcInferRequest(client, metadata, o)
      : generative
        ? streamRequest(client, o, share)
        : o.endpoint === 'embeddings'
          ? embeddingsRequest(client, o, share)
          : inferRequest(client, metadata, o);
  try {
    return clients ? await closedLoop(clients, o.seconds, send, started) : await openLoop(load.requestRate as number, o.seconds, send, started, share);
  } finally {
    client.close();
  }
}

/**
 * A load dealt over `threads` worker threads (one thread's clients stop scaling at a core's worth of requests and
 * answers): each warms its clients up, they start together, and their answers are counted as one run's.
 */
async function inThreads(threads: number, part: Omit<LoadPart, 'share'>): Promise<Run> {
  const workers = Array.from({ length: threads }, (_, index) =>
    spawnWorker(new URL(`./perf-thread${extname(import.meta.url)}`, import.meta.url).href, { ...part, share: { index, of: threads } }),
  );
  const settled = (w: Worker, type: string) =>
    new Promise<{ type: string; run?: Run }>((resolve, reject) => {
      const onMessage = (m: { type: string; run?: Run }) => {
        if (m.type !== type) return;
        w.off('message', onMessage);
        resolve(m);
      };
      w.on('message', onMessage);
      w.once('error', reject);
      w.once('exit', (code) => reject(new Error(`a perf thread exited (${code}) before its ${type}`)));
    });
  try {
    const runs = Promise.all(workers.map((w) => settled(w, 'run')));
    runs.catch(() => {}); // (a thread that fails before it is ready is said by the wait for them)
    await Promise.all(workers.map((w) => settled(w, 'ready')));
    // (every thread's clock has an origin of its own: the start is said in absolute milliseconds)
    const startAt = performance.timeOrigin + performance.now() + 20;
    for (const w of workers) w.postMessage({ type: 'start', startAt });
    const parts = (await runs).map((m) => m.run as Run);
    return { answers: parts.flatMap((r) => r.answers), elapsedS: Math.max(...parts.map((r) => r.elapsedS)) };
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

/** Connections an open loop may hold at once (more requests in flight wait for one, the wait counted). */
const OPEN_LOOP_CONNECTIONS = 1024;
/** gRPC connections at most (HTTP/2 carries many requests at once on each). */
const MAX_GRPC_CHANNELS = 16;

async function httpMetadata(base: URL, model: string, headers: Record<string, string>, ca?: string): Promise<Metadata> {
  const client = new HttpClient(base, 1, headers, ca);
  try {
    const res = await client.get(`/v2/models/${encodeURIComponent(model)}`);
    if (res.status !== 200) throw new Error(`GET /v2/models/${model}: ${res.status} ${res.body.slice(0, 300)}`);
    return JSON.parse(res.body) as Metadata;
  } finally {
    client.close();
  }
}

/** gRPC over TLS where the gateway is HTTPS (-u https://…, or --ca given): its gRPC port speaks TLS as well. */
const grpcTls = (o: PerfOptions) => (o.ca !== undefined || o.url.startsWith('https:') ? { ca: o.ca } : undefined);

async function grpcMetadata(address: string, model: string, headers: Record<string, string>, tls?: { ca?: string }): Promise<Metadata> {
  const channels = new GrpcChannels(address, 1, headers, tls);
  try {
    return await channels.modelMetadata(model);
  } finally {
    channels.close();
  }
}

export type Run = { answers: Answer[]; elapsedS: number };

/** `clients` loops, each sending as its last request is answered; after one request each (a warm-up), `seconds` of them. */
async function closedLoop(clients: number, seconds: number, send: () => Promise<Answer>, started: () => Promise<number>): Promise<Run> {
  await Promise.all(Array.from({ length: clients }, send));
  const answers: Answer[] = [];
  const start = await started();
  const end = start + seconds * 1000;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (performance.now() < end) answers.push(await send());
    }),
  );
  return { answers, elapsedS: (performance.now() - start) / 1000 };
}

/**
 * `rate` requests a second for `seconds`, each sent when due (after one request, a warm-up); its latency and time to
 * first token counted from when it was due. Throughput is what was answered over the time to the last answer. Of
 * several threads, each sends the requests due in turn to it (the `index`th of every `of`).
 */
async function openLoop(rate: number, seconds: number, send: () => Promise<Answer>, started: () => Promise<number>, share: LoadPart['share']): Promise<Run> {
  await send();
  const answers: Answer[] = [];
  const sent: Promise<unknown>[] = [];
  const start = await started();
  for (let i = share.index; i < Math.round(rate * seconds); i += share.of) {
    const due = start + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
    const late = Math.max(0, performance.now() - due); // (a timer may fire a little early: never before it was due)
    sent.push(send().then((a) => answers.push({ ...a, ms: a.ms + late, ...(a.ttftMs !== undefined && { ttftMs: a.ttftMs + late }) })));
  }
  await Promise.all(sent);
  // (the window is `seconds` long, the last request due just before its end; answers after it stretch it)
  return { answers, elapsedS: Math.max(seconds, (performance.now() - start) / 1000) };
}

/** Keep-alive connections, one per client, over HTTP or HTTPS. */
class HttpClient {
  private agent: Agent;
  private request: typeof request;

  constructor(
    private base: URL,
    connections: number,
    private headers: Record<string, string>,
    ca?: string,
  ) {
    const https = base.protocol === 'https:';
    this.agent = https ? new HttpsAgent({ keepAlive: true, maxSockets: connections, ca }) : new Agent({ keepAlive: true, maxSockets: connections });
    this.request = https ? (httpsRequest as typeof request) : request;
  }

  /** GETs `path`: its status and body. */
  get(path: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = this.request(new URL(path, this.base), { agent: this.agent, headers: this.headers }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          body += d;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });
  }

  /** POSTs `body`; `onData` gets the answer's chunks; resolves with its status once it has ended. */
  post(path: string, body: Buffer, headers: Record<string, string>, onData: (chunk: Buffer) => void = () => {}): Promise<number> {
    return new Promise((resolve) => {
      const req = this.request(
        new URL(path, this.base),
        { method: 'POST', agent: this.agent, headers: { ...this.headers, ...headers, 'content-length': String(body.length) } },
        (res) => {
          res.on('data', onData);
          res.on('end', () => resolve(res.statusCode ?? 0));
          res.on('error', () => resolve(0));
        },
      );
      req.on('error', () => resolve(0)); // (0: no answer — a refused or broken connection)
      req.end(body);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

/** Random inputs as the model's metadata describes them: one row; other dynamic dimensions 1, or as `shapes` says. */
function randomTensors(metadata: Metadata, o: PerfOptions) {
  return metadata.inputs.map((input, i) => {
    const shape = o.shapes?.[input.name] ?? input.shape.map((d) => (Number(d) >= 0 ? Number(d) : 1));
    if (shape.some((d) => d < 0)) throw new Error(`--shape ${input.name}: dimensions must not be negative`);
    const count = shape.reduce((a, b) => a * b, 1);
    return { name: input.name, datatype: input.datatype, shape, bytes: randomBytesOf(input.datatype, count, i) };
  });
}

/** KServe v2 infer of random data: one row per request, the binary extension both ways. */
function inferRequest(client: HttpClient, metadata: Metadata, o: PerfOptions): () => Promise<Answer> {
  const tensors = randomTensors(metadata, o);
  const header = Buffer.from(
    JSON.stringify({
      inputs: tensors.map((t) => ({ name: t.name, datatype: t.datatype, shape: t.shape, parameters: { binary_data_size: t.bytes.length } })),
      parameters: { binary_data_output: true },
    }),
  );
  const body = Buffer.concat([header, ...tensors.map((t) => t.bytes)]);
  const headers = { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) };
  const path = `/v2/models/${encodeURIComponent(o.model)}/infer`;
  return async () => {
    const t = performance.now();
    const status = await client.post(path, body, headers);
    return { status, ms: performance.now() - t };
  };
}

/**
 * /v1/embeddings of `texts` texts of `promptTokens` words each, every text numbered apart (in every thread): alike
 * texts would be answered from a response cache.
 */
function embeddingsRequest(client: HttpClient, o: PerfOptions, share: LoadPart['share']): () => Promise<Answer> {
  let n = share.index;
  const words = promptWords(o);
  const path = '/v1/embeddings';
  const headers = { 'content-type': 'application/json' };
  return async () => {
    const input = Array.from({ length: o.texts ?? 1 }, () => {
      n += share.of;
      return `${n}${words}`;
    });
    const body = Buffer.from(JSON.stringify({ model: o.model, input }));
    const t = performance.now();
    const status = await client.post(path, body, headers);
    return { status, ms: performance.now() - t };
  };
}

/** A prompt's words (about as many tokens), after the number each request puts first. */
const promptWords = (o: PerfOptions) => Array.from({ length: o.promptTokens ?? 32 }, (_, i) => ` word${i % 97}`).join('');

/** Values of `datatype` for `count` elements, as bytes: floats in [0, 1), integers 1..999, booleans, short strings. */
function randomBytesOf(datatype: string, count: number, seed: number): Buffer {
  const at = (i: number) => ((i * 2654435761 + seed * 40503) >>> 0) / 2 ** 32;
  switch (datatype) {
    case 'FP32':
      return Buffer.from(Float32Array.from({ length: count }, (_, i) => at(i)).buffer);
    case 'FP64':
      return Buffer.from(Float64Array.from({ length: count }, (_, i) => at(i)).buffer);
    case 'FP16': // (0x3800 = 0.5)
      return Buffer.from(new Uint16Array(count).fill(0x3800).buffer);
    case 'INT64':
      return Buffer.from(BigInt64Array.from({ length: count }, (_, i) => BigInt(1 + Math.floor(at(i) * 999))).buffer);
    case 'INT32':
      return Buffer.from(Int32Array.from({ length: count }, (_, i) => 1 + Math.floor(at(i) * 999)).buffer);
    case 'BOOL':
    case 'UINT8':
    case 'INT8':
      return Buffer.from(Uint8Array.from({ length: count }, (_, i) => Math.floor(at(i) * (datatype === 'BOOL' ? 2 : 100))));
    case 'BYTES': // (each element: its 4-byte length, then its bytes)
      return Buffer.concat(Array.from({ length: count }, () => Buffer.from([5, 0, 0, 0, 104, 101, 108, 108, 111])));
    default:
      throw new Error(`inputs of ${datatype} are not generated: this model cannot be loaded by perf`);
  }
}

/** A completion stream of `promptTokens` words (about as many tokens) and exactly `maxTokens` tokens (ignore_eos). */
function streamRequest(client: HttpClient, o: PerfOptions, share: LoadPart['share']): () => Promise<Answer> {
  let n = share.index;
  const words = promptWords(o);
  const headers = { 'content-type': 'application/json' };
  const chat = o.endpoint === 'chat';
  const path = chat ? '/v1/chat/completions' : '/v1/completions';
  return async () => {
    // (a number of its own first, in every thread: alike prompts would be computed once, from the prefix cache)
    n += share.of;
    const text = `${n}${words}`;
    const body = Buffer.from(
      JSON.stringify({
        model: o.model,
        ...(chat ? { messages: [{ role: 'user', content: text }] } : { prompt: text }),
        max_tokens: o.maxTokens ?? 64,
        ignore_eos: true,
        stream: true,
        stream_options: { include_usage: true },
      }),
    );
    const t = performance.now();
    const arrivals: number[] = [];
    let tokens = 0;
    let done = false as boolean; // (set by the parser)
    const parser = createParser({
      onEvent: (e) => {
        if (e.data === '[DONE]') {
          done = true;
          return;
        }
        const chunk = JSON.parse(e.data) as { usage?: { completion_tokens: number }; choices?: { text?: string; delta?: { content?: string } }[] };
        if (chunk.usage) tokens = chunk.usage.completion_tokens;
        const choice = chunk.choices?.[0];
        if (choice?.text || choice?.delta?.content) arrivals.push(performance.now());
      },
    });
    const decoder = new TextDecoder();
    const status = await client.post(path, body, headers, (chunk) => parser.feed(decoder.decode(chunk, { stream: true })));
    const ms = performance.now() - t;
    const ok = status === 200 && done;
    return {
      status: ok ? 200 : status === 200 ? -1 : status,
      ms,
      ...(ok && { ttftMs: arrivals.length > 0 ? arrivals[0] - t : ms, gapsMs: arrivals.slice(1).map((a, i) => a - arrivals[i]), tokens }),
    };
  };
}

function quantiles(values: number[]): Quantiles {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => (sorted.length === 0 ? 0 : Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] * 100) / 100);
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99) };
}

function summary({ answers, elapsedS }: Run, generative: boolean): PerfRow {
  const ok = answers.filter((a) => a.status === 200);
  const errors: Record<string, number> = {};
  for (const a of answers) {
    if (a.status === 200) continue;
    const why = a.status === -1 ? 'incomplete stream' : a.status === 0 ? 'no answer' : String(a.status);
    errors[why] = (errors[why] ?? 0) + 1;
  }
  const row: PerfRow = {
    requests: ok.length,
    requestsPerS: Math.round((ok.length / elapsedS) * 10) / 10,
    latencyMs: quantiles(ok.map((a) => a.ms)),
    errors,
  };
  if (!generative) return row;
  return {
    ...row,
    ttftMs: quantiles(ok.map((a) => a.ttftMs ?? 0)),
    interTokenMs: quantiles(ok.flatMap((a) => a.gapsMs ?? [])),
    outputTokensPerS: Math.round(ok.reduce((sum, a) => sum + (a.tokens ?? 0), 0) / elapsedS),
  };
}

/** The rows as a table, perf_analyzer's way: a line per concurrency. */
export function perfTable(result: PerfResult): string {
  const generative = result.kind === 'generative';
  const open = result.rows.some((r) => r.requestRate !== undefined);
  const head = [
    open ? 'request rate' : 'concurrency',
    'requests/s',
    'p50 ms',
    'p90 ms',
    'p99 ms',
    ...(generative ? ['TTFT p50', 'TTFT p99', 'ITL p50', 'ITL p99', 'tokens/s'] : []),
    ...(result.kind === 'embeddings' ? ['texts/s'] : []),
    'errors',
  ];
  const lines = result.rows.map((r) => [
    open ? r.requestRate : r.concurrency,
    r.requestsPerS,
    r.latencyMs.p50,
    r.latencyMs.p90,
    r.latencyMs.p99,
    ...(generative ? [r.ttftMs?.p50, r.ttftMs?.p99, r.interTokenMs?.p50, r.interTokenMs?.p99, r.outputTokensPerS] : []),
    ...(result.kind === 'embeddings' ? [r.textsPerS] : []),
    Object.entries(r.errors)
      .map(([k, v]) => `${v}× ${k}`)
      .join(', ') || '0',
  ]);
  const cells = [head, ...lines.map((l) => l.map(String))];
  const widths = head.map((_, c) => Math.max(...cells.map((row) => row[c].length)));
  return cells.map((row) => row.map((cell, c) => cell.padStart(widths[c])).join('  ')).join('\n');
}

/**
 * The same over KServe v2 gRPC (perf_analyzer's `-i grpc`): ModelInfer with raw contents, on one channel per
 * client. Answers are 200 for OK, else the gRPC status code's name.
 */
function grpcInferRequest(channels: GrpcChannels, metadata: Metadata, o: PerfOptions): () => Promise<Answer> {
  const tensors = randomTensors(metadata, o);
  const request = {
    model_name: o.model,
    inputs: tensors.map((t) => ({ name: t.name, datatype: t.datatype, shape: t.shape })),
    raw_input_contents: tensors.map((t) => t.bytes),
  };
  return async () => {
    const t = performance.now();
    const code = await channels.infer(request);
    return { status: code === grpc.status.OK ? 200 : grpc.status[code], ms: performance.now() - t };
  };
}

type InferRequest = { model_name: string; inputs: object[]; raw_input_contents: Buffer[] };
type Rpc = (request: object, metadata: grpc.Metadata, callback: (err: grpc.ServiceError | null, reply: unknown) => void) => void;

/** gRPC clients of the inference service, one connection each, taken in turn; `headers` sent as metadata. */
class GrpcChannels {
  private clients: grpc.Client[];
  private next = 0;
  private metadata = new grpc.Metadata();

  /** `tls`: the gateway's gRPC port speaks TLS (it does where its server.tls is set), trusting `ca` (else the system's roots). */
  constructor(address: string, connections: number, headers: Record<string, string>, tls?: { ca?: string }) {
    const Service = loadService('inference.proto', 'inference.GRPCInferenceService');
    const credentials = tls ? grpc.credentials.createSsl(tls.ca ? Buffer.from(tls.ca) : null) : grpc.credentials.createInsecure();
    // (a channel option of its own per client: grpc-js shares a connection between clients of equal options)
    this.clients = Array.from({ length: connections }, (_, i) => new Service(address, credentials, { 'infergate.perf.connection': i }));
    for (const [name, value] of Object.entries(headers)) this.metadata.set(name.toLowerCase(), value);
  }

  /** The model's metadata (ModelMetadata), or throws with the server's status. */
  modelMetadata(name: string): Promise<Metadata> {
    return new Promise((resolve, reject) =>
      this.call('ModelMetadata')({ name }, this.metadata, (err, reply) =>
        err ? reject(new Error(`ModelMetadata ${name}: ${grpc.status[err.code]} ${err.details}`)) : resolve(reply as Metadata),
      ),
    );
  }

  /** ModelInfer: the answer's status code. */
  infer(request: InferRequest): Promise<grpc.status> {
    return new Promise((resolve) => this.call('ModelInfer')(request, this.metadata, (err) => resolve(err ? err.code : grpc.status.OK)));
  }

  close(): void {
    for (const client of this.clients) client.close();
  }

  private call(method: string): Rpc {
    const client = this.clients[this.next++ % this.clients.length] as unknown as Record<string, Rpc>;
    return client[method].bind(client);
  }
}
