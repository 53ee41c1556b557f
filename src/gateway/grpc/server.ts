/**
 * KServe v2's gRPC service (Triton's port 8001) beside HTTP: every call is answered by the same app, as the
 * HTTP request it stands for — ModelInfer as a binary-extension POST .../infer — so authentication (gRPC
 * metadata are its headers), rate limits, batching, validation, metrics and logs are the HTTP path's, and an
 * HTTP error status becomes its gRPC code.
 */
import * as grpc from '@grpc/grpc-js';
import { EventSourceParserStream } from 'eventsource-parser/stream';
import type { Hono } from 'hono';
import { GatewayError } from '../../errors/index.js';
import { tooLarge } from '../body.js';
import type { IntakeRequest } from '../intake.js';
import { splitInferBody } from '../kserve/request.js';
import { parseTextRequest } from '../kserve/text-tensors.js';
import type { GatewayEnv } from '../types.js';
import { wholeBody } from '../whole-body.js';
import {
  binaryRequest,
  CallError,
  codeOf,
  type HeaderTensor,
  type InferRequest,
  inferResponse,
  invalid,
  jsonBody,
  type Parameters,
  plainParameters,
  type StreamEvent,
  streamed,
  streamResponse,
} from './messages.js';
import { loadService } from './proto.js';

export type GrpcOptions = {
  port: number;
  host: string;
  /** PEM contents: TLS as on the HTTP port. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Largest request message (server.max_body_bytes; gRPC's own default is 4 MiB). */
  maxBodyBytes: number;
};

export type GrpcListening = { port: number; close(timeoutMs: number): Promise<void> };

type ModelControl = { model_name: string; parameters: Parameters };
/** What every kind of server call has: metadata, peer, cancellation. */
type SurfaceCall = { metadata: grpc.Metadata; getPeer(): string; once(event: 'cancelled', listener: () => void): unknown };

const service = loadService('inference.proto', 'inference.GRPCInferenceService');
const health = loadService('health.proto', 'grpc.health.v1.Health', { enums: String });

/** A call's HTTP request, as `dispatch` answers it. */
export type CallRequest = {
  path: string;
  method: string;
  headers: [string, string][];
  body?: Uint8Array;
  remoteAddress: string;
  /** Aborts when the call is cancelled: its client left, or its deadline passed. */
  signal: AbortSignal;
};
/** Answers a call's HTTP request: the app on this thread, or the main thread's app from an intake thread. */
export type Dispatch = (request: CallRequest) => Promise<Response>;

/** The app on this thread answers: the body through `intake` alone, as an intake thread's (a web Request's would be a stream to read). */
export const appDispatch =
  (app: Hono<GatewayEnv>): Dispatch =>
  ({ path, method, headers, body, remoteAddress, signal }) => {
    let read = false;
    const intake: IntakeRequest = {
      remoteAddress,
      grpc: true,
      signal,
      readBody: async (limit) => {
        if (read) throw new GatewayError(400, 'bad_body', 'the request body was read already');
        read = true;
        if ((body?.byteLength ?? 0) > limit) throw tooLarge(limit);
        return body ?? new Uint8Array(0);
      },
    };
    return Promise.resolve(app.request(`http://grpc${path}`, { method, headers }, { intake }));
  };

/** KServe v2's gRPC service (and gRPC's health check), each call answered by `dispatch` as the HTTP request it stands for. */
export function grpcServer(dispatch: Dispatch, maxBodyBytes: number): grpc.Server {
  const server = new grpc.Server({ 'grpc.max_receive_message_length': maxBodyBytes, 'grpc.max_send_message_length': -1 });

  /** The call's HTTP request: its metadata as headers, its cancellation as the client leaving. */
  function through(call: SurfaceCall, path: string, body?: { bytes: Uint8Array; headers: Record<string, string> }, signal = cancellation(call)) {
    // The caller's metadata but gRPC's own (its content-type, te, grpc-*: the HTTP request has its own body's).
    const headers: [string, string][] = Object.entries(body?.headers ?? {});
    for (const [key, value] of Object.entries(call.metadata.getMap()))
      if (typeof value === 'string' && !key.startsWith('grpc-') && key !== 'content-type' && key !== 'te') headers.push([key, value]);
    const remoteAddress = call
      .getPeer()
      .replace(/^ipv[46]:|:\d+$/g, '')
      .replace(/^\[|\]$/g, '');
    return dispatch({ path, method: body ? 'POST' : 'GET', headers, body: body?.bytes, remoteAddress, signal });
  }

  /**
   * Aborts when the call is cancelled: its client left, or its deadline passed. (A stream's requests share one.)
   * grpc-js says `cancelled` when any call's stream closes, answered or not: `settled` stops listening first.
   */
  function cancellation(call: SurfaceCall): AbortSignal {
    const controller = new AbortController();
    call.once('cancelled', () => controller.abort());
    return controller.signal;
  }

  /** The call is answered: its stream closing is not a cancellation (building the abort's DOMException costs ~8 µs). */
  const settled = (call: { removeAllListeners(event: 'cancelled'): unknown }) => call.removeAllListeners('cancelled');

  /** A unary handler: `answer` turns the call into a reply, or throws a CallError. */
  const unary =
    <Req>(answer: (call: grpc.ServerUnaryCall<Req, unknown>) => Promise<object>): grpc.handleUnaryCall<Req, unknown> =>
    (call, callback) => {
      answer(call).then(
        (reply) => {
          settled(call);
          callback(null, reply);
        },
        (err) => {
          settled(call);
          callback({ code: err instanceof CallError ? err.code : grpc.status.INTERNAL, details: (err as Error).message });
        },
      );
    };

  /** The app's JSON answer, or its error as the gRPC code of its status. */
  async function json(res: Response, okStatuses: number[] = [200]) {
    const text = await res.text();
    if (okStatuses.includes(res.status)) return JSON.parse(text);
    const message = (() => {
      try {
        const body = JSON.parse(text);
        return typeof body.error === 'string' ? body.error : (body.error?.message ?? text);
      } catch {
        return text || `HTTP ${res.status}`;
      }
    })();
    throw new CallError(codeOf(res.status), message);
  }

  const model = (name: string, version: string) => `/v2/models/${encodeURIComponent(name)}${version ? `/versions/${encodeURIComponent(version)}` : ''}`;
  server.addService(service.service, {
    ServerLive: unary(async (call) => ({ live: (await through(call, '/v2/health/live')).status === 200 })),
    ServerReady: unary(async (call) => ({ ready: (await through(call, '/v2/health/ready')).status === 200 })),
    ModelReady: unary(async (call: grpc.ServerUnaryCall<{ name: string; version: string }, unknown>) => {
      const res = await through(call, `${model(call.request.name, call.request.version)}/ready`);
      return { ready: (await json(res, [200, 503])).ready === true };
    }),
    ServerMetadata: unary(async (call) => json(await through(call, '/v2'))),
    ModelMetadata: unary(async (call: grpc.ServerUnaryCall<{ name: string; version: string }, unknown>) => {
      const meta = await json(await through(call, model(call.request.name, call.request.version)));
      const tensor = (t: HeaderTensor) => ({ name: t.name, datatype: t.datatype, shape: t.shape.map(String) });
      return { ...meta, inputs: meta.inputs.map(tensor), outputs: meta.outputs.map(tensor) };
    }),
    ModelConfig: unary(async (call: grpc.ServerUnaryCall<{ name: string; version: string }, unknown>) => {
      const config = await json(await through(call, `${model(call.request.name, call.request.version)}/config`));
      // Triton's JSON config is its protobuf's JSON form, but for parameters (here plain values; there {string_value}).
      const parameters = Object.fromEntries(
        Object.entries((config.parameters ?? {}) as Record<string, unknown>).map(([k, v]) => [
          k,
          { string_value: typeof v === 'string' ? v : JSON.stringify(v) },
        ]),
      );
      return { config: { ...config, parameters } };
    }),
    ModelStatistics: unary(async (call: grpc.ServerUnaryCall<{ name: string; version: string }, unknown>) => {
      const { name, version } = call.request;
      const { model_stats } = (await json(await through(call, '/v2/models/stats'))) as { model_stats: { name: string; version: string }[] };
      const chosen = model_stats.filter((s) => (!name || s.name === name) && (!version || s.version === version));
      if (name && chosen.length === 0)
        throw new CallError(grpc.status.NOT_FOUND, `unknown model ${JSON.stringify(name)}${version ? ` version ${JSON.stringify(version)}` : ''}`);
      return { model_stats: chosen };
    }),
    ModelInfer: unary(async (call: grpc.ServerUnaryCall<InferRequest, unknown>) => infer(call, call.request)),
    ModelStreamInfer: streamInfer,
    RepositoryIndex: unary(async (call: grpc.ServerUnaryCall<{ ready: boolean }, unknown>) => ({
      models: await json(await through(call, '/v2/repository/index', jsonBody({ ready: call.request.ready }))),
    })),
    RepositoryModelLoad: unary(async (call: grpc.ServerUnaryCall<ModelControl, unknown>) => control(call, 'load')),
    RepositoryModelUnload: unary(async (call: grpc.ServerUnaryCall<ModelControl, unknown>) => control(call, 'unload')),
    SystemSharedMemoryStatus: unary(async (call: grpc.ServerUnaryCall<{ name: string }, unknown>) => {
      const { name } = call.request;
      const list = (await json(await through(call, `/v2/systemsharedmemory${name ? `/region/${encodeURIComponent(name)}` : ''}/status`))) as { name: string }[];
      return { regions: Object.fromEntries(list.map((r) => [r.name, r])) };
    }),
    SystemSharedMemoryRegister: unary(async (call: grpc.ServerUnaryCall<{ name: string; key: string; offset: string; byte_size: string }, unknown>) => {
      const { name, key, offset, byte_size } = call.request;
      if (!name) throw invalid('name is required: the region to register');
      const body = jsonBody({ key, offset: Number(offset), byte_size: Number(byte_size) });
      return json(await through(call, `/v2/systemsharedmemory/region/${encodeURIComponent(name)}/register`, body));
    }),
    SystemSharedMemoryUnregister: unary(async (call: grpc.ServerUnaryCall<{ name: string }, unknown>) => {
      const { name } = call.request;
      return json(await through(call, `/v2/systemsharedmemory${name ? `/region/${encodeURIComponent(name)}` : ''}/unregister`, jsonBody({})));
    }),
    // Triton's trace and logging extensions: no settings reads them, some change them (the HTTP routes' answers).
    TraceSetting: unary(async (call: grpc.ServerUnaryCall<{ settings: Record<string, { value: string[] }>; model_name: string }, unknown>) => {
      const { settings, model_name } = call.request;
      const change = Object.fromEntries(
        Object.entries(settings).map(([name, { value }]) => [name, value.length === 0 ? null : name === 'trace_level' ? value : value[0]]),
      );
      const path = `${model_name ? model(model_name, '') : '/v2'}/trace/setting`;
      const answer = (await json(await through(call, path, Object.keys(change).length ? jsonBody(change) : undefined))) as Record<string, string | string[]>;
      return { settings: Object.fromEntries(Object.entries(answer).map(([name, v]) => [name, { value: Array.isArray(v) ? v : [v] }])) };
    }),
    LogSettings: unary(async (call: grpc.ServerUnaryCall<{ settings: Record<string, Record<string, unknown> & { parameter_choice?: string }> }, unknown>) => {
      const change = Object.fromEntries(Object.entries(call.request.settings).map(([name, v]) => [name, v[v.parameter_choice ?? ''] ?? null]));
      const answer = (await json(await through(call, '/v2/logging', Object.keys(change).length ? jsonBody(change) : undefined))) as Record<string, unknown>;
      const param = (v: unknown) => (typeof v === 'boolean' ? { bool_param: v } : typeof v === 'number' ? { uint32_param: v } : { string_param: String(v) });
      return { settings: Object.fromEntries(Object.entries(answer).map(([name, v]) => [name, param(v)])) };
    }),
  });

  /** Triton's model control: the HTTP route's answer (403 unless server.admin_api, 404 for an unknown model). */
  async function control(call: grpc.ServerUnaryCall<ModelControl, unknown>, action: 'load' | 'unload') {
    const { model_name, parameters } = call.request;
    if (!model_name) throw invalid('model_name is required');
    const path = `/v2/repository/models/${encodeURIComponent(model_name)}/${action}`;
    return json(await through(call, path, jsonBody({ parameters: plainParameters(parameters) })));
  }
  // gRPC's standard health check (Kubernetes' grpc probes): SERVING while /v2/health/ready says ready.
  server.addService(health.service, {
    Check: unary(async (call: grpc.ServerUnaryCall<{ service: string }, unknown>) => {
      const known = ['', 'inference.GRPCInferenceService'];
      if (!known.includes(call.request.service))
        throw new CallError(
          grpc.status.NOT_FOUND,
          `unknown service ${JSON.stringify(call.request.service)} (${known.map((s) => JSON.stringify(s)).join(', ')})`,
        );
      return { status: (await through(call, '/v2/health/ready')).status === 200 ? 'SERVING' : 'NOT_SERVING' };
    }),
  });

  async function infer(call: SurfaceCall, req: InferRequest, signal?: AbortSignal) {
    if (!req.model_name) throw invalid('model_name is required');
    const { body, headerLength } = binaryRequest(req);
    const headers = { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(headerLength) };
    const res = await through(call, `${model(req.model_name, req.model_version)}/infer`, { bytes: body, headers }, signal);
    if (res.status !== 200) await json(res, []);
    const whole = wholeBody(res); // (at hand, not read through a stream)
    const bytes = whole instanceof Uint8Array ? Buffer.from(whole.buffer, whole.byteOffset, whole.byteLength) : Buffer.from(await res.arrayBuffer());
    // No binary section when every output went to shared memory: the answer is its JSON alone.
    return inferResponse(bytes, Number(res.headers.get('inference-header-content-length') ?? bytes.byteLength));
  }

  /**
   * Triton's ModelStreamInfer: each request on the stream is answered on it, those of a generative model that
   * ask for `stream` (a `text_input`, as Triton's vLLM and TensorRT-LLM backends take) with a response per piece
   * of text, through the generate extension's stream; others with one response, as ModelInfer. A failed request is an
   * `error_message`, and the stream goes on. A generation ends with an empty response marked
   * `triton_final_response` (see `answer`).
   */
  function streamInfer(call: grpc.ServerDuplexStream<InferRequest, object>) {
    const pending = new Set<Promise<void>>();
    const signal = cancellation(call);
    let ended = false;
    const end = () => {
      settled(call);
      call.end();
    };
    const send = (message: object) => {
      if (!call.cancelled && !call.destroyed) call.write(message);
    };
    // Every response says whether it is its request's last (triton_final_response, as Triton's: tritonclient reads a
    // response without it as the last). A streamed generation's pieces say not, and an empty response marked final
    // ends it, as Triton's decoupled models end theirs (the last piece is known only after it is sent).
    const finalFlag = (final: boolean) => ({ triton_final_response: { bool_param: final } });
    const answer = async (req: InferRequest) => {
      try {
        if (streamed(req)) {
          await generateStream(call, req, signal, (r) => send({ infer_response: { ...r, parameters: finalFlag(false) } }));
          send({ infer_response: { model_name: req.model_name, id: req.id, outputs: [], parameters: finalFlag(true) } });
        } else {
          const response = await infer(call, req, signal);
          send({ infer_response: { ...response, parameters: { ...response.parameters, ...finalFlag(true) } } });
        }
      } catch (err) {
        // (with the request's id and model, as Triton's: several requests may be in flight on one stream)
        send({
          error_message: (err as Error).message,
          infer_response: { model_name: req.model_name, model_version: req.model_version ?? '', id: req.id ?? '' },
        });
      }
    };
    call.on('data', (req: InferRequest) => {
      const done = answer(req).finally(() => {
        pending.delete(done);
        if (ended && pending.size === 0) end();
      });
      pending.add(done);
    });
    call.on('end', () => {
      ended = true;
      if (pending.size === 0) end();
    });
  }

  /** A generative model's request as a generate_stream POST: each event's text_output as a response. */
  async function generateStream(call: SurfaceCall, req: InferRequest, signal: AbortSignal, respond: (r: object) => void) {
    if (!req.model_name) throw invalid('model_name is required');
    const { body, headerLength } = binaryRequest(req);
    const { json: header, binary } = splitInferBody(body, String(headerLength));
    const { fields } = parseTextRequest(header, binary);
    const res = await through(call, `${model(req.model_name, req.model_version)}/generate_stream`, jsonBody(fields), signal);
    if (res.status !== 200) await json(res, []);
    // (typed as TextDecoderStream takes them: the body is bytes)
    const events = (res.body as ReadableStream<BufferSource>).pipeThrough(new TextDecoderStream()).pipeThrough(new EventSourceParserStream());
    for await (const { data } of events) {
      const event = JSON.parse(data) as StreamEvent;
      if (event.error !== undefined) throw new CallError(grpc.status.INTERNAL, event.error);
      respond(streamResponse(event, req.id));
    }
  }
  return server;
}

export const grpcCredentials = (tls?: GrpcOptions['tls']) =>
  tls
    ? grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(tls.cert), private_key: Buffer.from(tls.key) }])
    : grpc.ServerCredentials.createInsecure();

/** Stops taking calls and waits for those in flight, ending them after `timeoutMs`. */
export const closeGrpc = (server: grpc.Server, timeoutMs: number) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(() => server.forceShutdown(), timeoutMs).unref();
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });

/** Serves KServe v2's gRPC calls on their own port, on this thread, each through `app` as its HTTP request. */
export async function listenGrpc(app: Hono<GatewayEnv>, opts: GrpcOptions): Promise<GrpcListening> {
  const server = grpcServer(appDispatch(app), opts.maxBodyBytes);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${opts.port}`, grpcCredentials(opts.tls), (err, bound) =>
      err ? reject(err) : resolve(bound),
    ),
  );
  return { port, close: (timeoutMs) => closeGrpc(server, timeoutMs) };
}
