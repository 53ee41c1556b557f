import { once } from 'node:events';
import { appendFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Context, MiddlewareHandler } from 'hono';
import PQueue from 'p-queue';
import type { CaptureConfig } from '../config/index.js';
import { KeptAlive } from './kept-alive.js';
import { shadowOfEnv } from './shadow.js';
import type { GatewayEnv } from './types.js';
import { wholeBody } from './whole-body.js';

/** One payload captured: what came in, or what went out. */
type Payload = { contentType: string; data: Uint8Array; bytes: number };
/** One request captured: its model, who asked, its payloads (by the config's mode) and how it was answered. */
export type Captured = {
  id: string;
  time: Date;
  model: string;
  version?: string;
  path: string;
  caller?: string;
  status: number;
  /** Headers of the request the config names (KServe's metadataHeaders). */
  headers: Record<string, string>;
  request?: Payload;
  response?: Payload;
  /** A shadow's answer (config shadow, version_shadow), not the one the client got. */
  shadow?: boolean;
};

/** What became of a captured request at a sink (the /metrics label). */
export type CaptureResult = 'sent' | 'written' | 'dropped' | 'failed';

/**
 * Data capture (KServe's payload logger, SageMaker's Data Capture): a sample of the model requests and their answers,
 * as they were — sent as CloudEvents to `url`, and/or written as JSON lines to `dir` — off the request's path: a
 * request is never slowed or failed by it (past `max_queue` waiting, captures are dropped and counted).
 */
export class Capture {
  /**
   * POSTs to the collector in flight at most. Events POSTed together (batch_events) form while the POSTs before are
   * under way: two leave room for batches to form, as events come faster than one POST goes.
   */
  private readonly queue: PQueue;
  /** Captures accepted for the collector, not yet sent (or failed): what max_queue bounds. */
  private sending = 0;
  /** With batch_events: captures waiting for the next POST, which takes every one there is room for. */
  private waiting: (Captured & { done: () => void })[] = [];
  /** Records waiting to be written, appended together (one write for all that came meanwhile). */
  private lines: { file: string; text: string; bytes: number }[] = [];
  private writing?: Promise<void>;
  private readonly connections = new KeptAlive();
  private readonly models?: Set<string>;
  /** Bytes of the payloads waiting at the sinks. */
  private held = 0;

  constructor(
    readonly config: CaptureConfig,
    /** Told what became of each capture, at each sink. */
    private readonly counted: (result: CaptureResult) => void = () => {},
  ) {
    if (config.models) this.models = new Set(config.models);
    this.queue = new PQueue({ concurrency: config.batch_events > 1 ? 2 : 8 });
  }

  /** Samples requests, keeps a copy of their bodies as read (readBody) and of their answers as sent. */
  middleware(): MiddlewareHandler<GatewayEnv> {
    return async (c, next) => {
      // A shadow model's request (config shadow) is captured where the client's was, beside it.
      const shadow = shadowOfEnv(c);
      if (shadow ? !shadow.captured : Math.random() >= this.config.sample_rate) return next();
      c.set('captureSampled', true);
      let request: Payload | undefined;
      if (this.config.mode !== 'response')
        c.set('captureBody', (body) => {
          request ??= this.payload(c.req.header('content-type') ?? '', body);
        });
      if (this.config.mode !== 'request')
        c.set('captureShadow', (version, status, contentType, data) => {
          const captured = this.captured(c, status);
          if (captured) this.add({ ...captured, version, status, response: this.payload(contentType, data), shadow: true });
        });
      await next();
      // (a request an asynchronous call sent through the app again is captured there, not as its 202)
      const captured = c.get('loggedByCall') ? undefined : this.captured(c, c.res.status, request);
      if (!captured) return;
      if (this.config.mode === 'request') return this.add(captured);
      const whole = wholeBody(c.res);
      const contentType = c.res.headers.get('content-type') ?? '';
      if ((whole !== undefined && !(whole instanceof Blob)) || !c.res.body) {
        const data = typeof whole === 'string' ? new TextEncoder().encode(whole) : whole instanceof Uint8Array ? whole : new Uint8Array();
        return this.add({ ...captured, response: this.payload(contentType, data) });
      }
      // A stream (tokens as they come): what the client was sent, captured once it ends (or the client goes).
      c.res = this.recorded(c, (data, bytes) => this.add({ ...captured, response: { contentType, data, bytes } }));
    };
  }

  /** What is captured of a request to a model this capture is for (others: undefined). */
  private captured(c: Context<GatewayEnv>, status: number, request?: Payload): Captured | undefined {
    const model = c.get('model');
    const shadowOf = shadowOfEnv(c)?.of;
    if (model === undefined || (this.models && !this.models.has(shadowOf ?? model))) return undefined;
    return {
      ...(shadowOf !== undefined && { shadow: true }),
      id: c.get('requestId'),
      time: new Date(),
      model,
      version: c.get('modelVersion'),
      path: c.req.path,
      caller: c.get('caller')?.id,
      status,
      headers: this.metadataOf((name) => c.req.header(name)),
      request,
    };
  }

  /** The request headers the config names (KServe's metadataHeaders), of those it has. */
  metadataOf(header: (name: string) => string | undefined): Record<string, string> {
    return Object.fromEntries(
      this.config.metadata_headers.flatMap((name) => {
        const value = header(name);
        return value === undefined ? [] : [[name, value]];
      }),
    );
  }

  /**
   * A WebSocket message's request to `model`, sampled as an HTTP request is: `sent` keeps each message answered for it
   * (JSON lines: a stream's tokens, a result, an error), and `end` captures the two once its answer is whole.
   * Undefined when it is not captured.
   */
  message(m: {
    id: string;
    model: string;
    caller?: string;
    headers: Record<string, string>;
    text: string;
  }): { sent(msg: object): void; end(status: number): void; shadow(version: string, status: number, contentType: string, data: Uint8Array): void } | undefined {
    const { mode, max_payload_bytes: most } = this.config;
    if (Math.random() >= this.config.sample_rate || (this.models && !this.models.has(m.model))) return undefined;
    const lines: string[] = [];
    let bytes = 0;
    const about = { id: m.id, model: m.model, path: '/v1/ws', caller: m.caller, headers: m.headers };
    return {
      sent: (msg) => {
        const line = `${JSON.stringify(msg)}\n`;
        if (bytes < most) lines.push(line); // (past max_payload_bytes only counted)
        bytes += Buffer.byteLength(line);
      },
      end: (status) => {
        this.add({
          ...about,
          time: new Date(),
          status,
          ...(mode !== 'response' && { request: this.payload('application/json', new TextEncoder().encode(m.text)) }),
          ...(mode !== 'request' && { response: this.payload('application/x-ndjson', new TextEncoder().encode(lines.join('')), bytes) }),
        });
      },
      // (a shadow version's answer to the message's request, beside it: version_shadow)
      shadow: (version, status, contentType, data) => {
        if (mode !== 'request') this.add({ ...about, time: new Date(), version, status, response: this.payload(contentType, data), shadow: true });
      },
    };
  }

  /** A payload as kept: its first max_payload_bytes, copied (a request's buffer goes back to its pool), and its length. */
  private payload(contentType: string, data: Uint8Array, bytes = data.byteLength): Payload {
    return { contentType, data: data.slice(0, this.config.max_payload_bytes), bytes };
  }

  /** Sends and writes what was asked for so far, then closes the collector's connections (the gateway stopping). */
  async flush(): Promise<void> {
    await Promise.all([this.queue.onIdle(), this.writing]);
    this.connections.close();
  }

  /** The answer as it is sent, its bytes kept (up to max_payload_bytes) for `done`; the client going cancels it as before. */
  private recorded(c: Context<GatewayEnv>, done: (data: Uint8Array, bytes: number) => void): Response {
    const res = c.res;
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const kept: Uint8Array[] = [];
    let keptBytes = 0;
    let bytes = 0;
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      done(Buffer.concat(kept), bytes);
    };
    const body = new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        const { done: last, value } = await reader.read();
        if (last) {
          controller.close();
          return end();
        }
        bytes += value.byteLength;
        if (keptBytes < this.config.max_payload_bytes) {
          const part = value.subarray(0, this.config.max_payload_bytes - keptBytes);
          kept.push(part.slice());
          keptBytes += part.byteLength;
        }
        controller.enqueue(value);
      },
      cancel: (reason) => {
        end();
        return reader.cancel(reason);
      },
    });
    return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
  }

  /** To each sink, in the background; dropped when too many wait. */
  private add(captured: Captured): void {
    const { url, dir, max_queue: most, max_queue_mb: mb } = this.config;
    const bytes = (captured.request?.data.byteLength ?? 0) + (captured.response?.data.byteLength ?? 0);
    // Bounded in number and in bytes (a collector down with large payloads must not fill the gateway's memory).
    const room = (waiting: number) => waiting < most && this.held + bytes <= mb * 2 ** 20;
    if (url) {
      if (!room(this.sending)) this.counted('dropped');
      else {
        this.held += bytes;
        this.sending++;
        const done = () => {
          this.held -= bytes;
          this.sending--;
        };
        if (this.config.batch_events === 1) void this.queue.add(() => this.send(url, captured)).finally(done);
        else {
          this.waiting.push({ ...captured, done });
          // (a POST not yet begun takes every capture waiting when it begins)
          if (this.queue.size === 0) void this.queue.add(() => this.sendWaiting(url));
        }
      }
    }
    if (dir) {
      if (!room(this.lines.length)) this.counted('dropped');
      else {
        this.held += bytes;
        this.lines.push({ file: `${captured.time.toISOString().slice(0, 13)}.jsonl`, text: `${JSON.stringify(record(captured))}\n`, bytes });
        this.writing ??= this.write(dir);
      }
    }
  }

  /** KServe's logger's events: the request's, then the response's, as CloudEvents in binary mode (the payload as the body). */
  private async send(url: string, captured: Captured): Promise<void> {
    try {
      for (const [kind, payload] of eventsOf(captured)) {
        const attributes = Object.entries(attributesOf(captured, kind, payload)).map(([name, value]) => [`ce-${name}`, value]);
        const headers = { 'content-type': payload.contentType || 'application/octet-stream', ...Object.fromEntries(attributes) };
        const status = await this.post(url, headers, payload.data);
        if (status < 200 || status > 299) throw new Error(`${url} answered ${status}`);
      }
      this.counted('sent');
    } catch {
      this.counted('failed');
    }
  }

  /**
   * The captures waiting, up to batch_events events, POSTed as one CloudEvents batch (structured mode: each event
   * a JSON object, its payload its `data`, or `data_base64` for bytes); what is left waits for the next POST.
   */
  private async sendWaiting(url: string): Promise<void> {
    const structured: object[] = [];
    let taken = 0;
    for (const captured of this.waiting) {
      const events = eventsOf(captured);
      if (taken > 0 && structured.length + events.length > this.config.batch_events) break;
      for (const [kind, payload] of events) structured.push({ ...attributesOf(captured, kind, payload), ...dataOf(payload) });
      taken++;
    }
    const batch = this.waiting.splice(0, taken);
    if (this.waiting.length > 0 && this.queue.size === 0) void this.queue.add(() => this.sendWaiting(url));
    let result: CaptureResult = 'sent';
    try {
      const status = await this.post(url, { 'content-type': 'application/cloudevents-batch+json' }, JSON.stringify(structured));
      if (status < 200 || status > 299) result = 'failed';
    } catch {
      result = 'failed';
    }
    for (const captured of batch) {
      this.counted(result);
      captured.done();
    }
  }

  /** POSTs one event; its answer's status, or a failure. */
  private async post(url: string, headers: Record<string, string>, body: Uint8Array | string): Promise<number> {
    const options = { method: 'POST', headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) }, timeout: 10_000 };
    const res = await this.connections.send(new URL(url), options, body);
    res.resume();
    await once(res, 'end');
    return res.statusCode ?? 0;
  }

  /** Writes the records waiting, a write per file for all that came meanwhile, until none waits. */
  private async write(dir: string): Promise<void> {
    try {
      await mkdir(dir, { recursive: true }).catch(() => {}); // (a write below says why it failed)
      while (this.lines.length > 0) {
        const batch = this.lines.splice(0);
        for (const file of new Set(batch.map((line) => line.file))) {
          const lines = batch.filter((line) => line.file === file);
          const written = await appendFile(join(dir, file), lines.map((line) => line.text).join('')).then(
            () => true,
            () => false,
          );
          for (const line of lines) {
            this.held -= line.bytes;
            this.counted(written ? 'written' : 'failed');
          }
        }
      }
    } finally {
      this.writing = undefined;
    }
  }
}

/** A capture's CloudEvents: its request's, then its answer's (those its mode keeps). */
const eventsOf = (captured: Captured) =>
  (
    [
      ['request', captured.request],
      ['response', captured.response],
    ] as const
  ).filter((event): event is ['request' | 'response', Payload] => event[1] !== undefined);

/** A CloudEvent's attributes as KServe's logger gives them (`ce-` headers in binary mode, fields in a batch's events). */
function attributesOf(captured: Captured, kind: 'request' | 'response', payload: Payload): Record<string, string> {
  return {
    specversion: '1.0',
    id: captured.id,
    type: `org.kubeflow.serving.inference.${kind}`,
    source: `infergate${captured.path}`,
    time: captured.time.toISOString(),
    inferenceservicename: captured.model,
    endpoint: captured.path,
    component: 'predictor',
    ...(captured.version && { modelversion: captured.version }),
    ...(kind === 'response' && { status: String(captured.status) }),
    ...(captured.shadow && { shadow: 'true' }),
    ...(payload.data.byteLength < payload.bytes && { truncatedfrom: String(payload.bytes) }),
    ...(Object.keys(captured.headers).length > 0 && { metadata: JSON.stringify(captured.headers) }),
  };
}

/** A payload as a structured CloudEvent's data: JSON as itself, other text as a string, bytes (or cut JSON) in base64. */
function dataOf({ contentType, data }: Payload): object {
  const datacontenttype = contentType || 'application/octet-stream';
  if (datacontenttype.includes('json'))
    try {
      return { datacontenttype, data: JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8')) };
    } catch {} // (cut short, or not JSON after all: its bytes)
  const text = /octet-stream|json|^image\/|^audio\//.test(datacontenttype) ? undefined : utf8(data);
  return text === undefined
    ? { datacontenttype, data_base64: Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64') }
    : { datacontenttype, data: text };
}

/** SageMaker's Data Capture record (a line of the hour's file, UTC: `dir/2026-12-07T13.jsonl`). */
function record(captured: Captured): object {
  return {
    captureData: {
      ...(captured.request && { endpointInput: { ...shown(captured.request), mode: 'INPUT' } }),
      ...(captured.response && { endpointOutput: { ...shown(captured.response), mode: 'OUTPUT' } }),
    },
    eventMetadata: {
      eventId: captured.id,
      inferenceTime: captured.time.toISOString(),
      model: captured.model,
      ...(captured.version && { modelVersion: captured.version }),
      path: captured.path,
      status: captured.status,
      ...(captured.shadow && { shadow: true }),
      ...(captured.caller && { caller: captured.caller }),
      ...(Object.keys(captured.headers).length > 0 && { headers: captured.headers }),
    },
    eventVersion: '0',
  };
}

/**
 * A payload as SageMaker writes one: text as it is (JSON — by its content type, or JSON sent as a form, as curl -d
 * does —, CSV, event streams), bytes (binary tensors, images, audio) in base64; cut ones say how long they were.
 */
function shown({ contentType, data, bytes }: Payload) {
  const text = /octet-stream|^image\/|^audio\//.test(contentType) ? undefined : utf8(data);
  const json = text !== undefined && (contentType.includes('json') || parsesAsJson(text));
  return {
    observedContentType: contentType,
    encoding: text === undefined ? 'BASE64' : json ? 'JSON' : contentType.includes('csv') ? 'CSV' : 'TEXT',
    data: text ?? Buffer.from(data).toString('base64'),
    ...(data.byteLength < bytes && { truncatedFrom: bytes }),
  };
}

/** The bytes as text, when they are UTF-8 without NULs (else undefined: they go as base64). */
function utf8(data: Uint8Array): string | undefined {
  if (data.includes(0)) return undefined;
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(data);
  } catch {
    return undefined;
  }
}

function parsesAsJson(text: string): boolean {
  if (!/^\s*[[{]/.test(text)) return false;
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}
