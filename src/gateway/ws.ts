import { upgradeWebSocket } from '@hono/node-server';
import { Hono } from 'hono';
import type { WSContext } from 'hono/ws';
import type { WebSocket } from 'ws';
import type { z } from 'zod';
import { badInput, GatewayError, notFound, unavailable } from '../errors/index.js';
import type { Caller } from './auth/middleware.js';
import type { Capture } from './capture.js';
import type { QuietWork } from './drain.js';
import { inferRequestFromJson } from './kserve/request.js';
import { encodeInferResponse } from './kserve/response.js';
import { shadowRun, submitInfer, versionOf } from './kserve/submit.js';
import { adapterNamed } from './lora.js';
import { embeddingsAnswer, embeddingsSchema } from './openai/embeddings.js';
import { ENCODERS, encoderOf } from './openai/encoder.js';
import { chatRoom, Generation, type LoggedToken } from './openai/generation.js';
import { chatLogprobs } from './openai/logprobs.js';
import { ReasoningSplitter } from './openai/reasoning.js';
import { completionPrompts } from './openai/routes.js';
import { chatSchema, completionSchema, parseBody } from './openai/schema.js';
import { chatTokens, layoutOf } from './openai/tools.js';
import type { ShadowOrigin } from './shadow.js';
import type { GatewayEnv, ServedModel } from './types.js';

/** Bytes a socket may have unsent before its streams wait (their sequences then pause in the scheduler). */
const MAX_UNSENT_BYTES = 1 << 20;

type Message = { id?: unknown; type?: unknown; model?: unknown; [field: string]: unknown };

/** One socket: what every message on it needs. */
type SocketContext = {
  ws: WSContext;
  models: ReadonlyMap<string, ServedModel>;
  caller?: Caller;
  /** Requests in flight on this socket by id: a `cancel` or the socket's close aborts them. */
  requests: Map<string, AbortController>;
  /** Spends a request from the caller's rate limit (absent without one). */
  spendRequest?: () => void;
  /** Requests in flight on every socket, which the gateway's shutdown waits for. */
  gatewayWork?: QuietWork;
  /** A message's request id: the socket's, and the message's number on it. */
  nextRequestId: () => string;
  /** Data capture (config capture): a message's request to a model, if it is captured. */
  captureMessage?: (requestId: string, model: string, text: string) => MessageCapture | undefined;
  /** Shadow traffic: a message answered without error, to its model's shadow if drawn. */
  shadowMessage?: (requestId: string, msg: Message, captured: boolean) => void;
  /** A captured message's shadow version's answer (version_shadow), captured beside it. */
  captureShadow?: MessageCapture['shadow'];
  send(msg: object): void;
};
type MessageCapture = NonNullable<ReturnType<Capture['message']>>;

/**
 * One WebSocket, many requests: JSON messages with an `id` multiplex KServe-style `infer` requests and
 * `completion` / `chat` generation streams; every answer carries the `id` it belongs to.
 *
 *   → {"id": "1", "type": "infer", "model": "mlp", "inputs": [...]}        ← {"id": "1", "type": "result", "outputs": [...]}
 *     (a stateful model's: with "parameters": {"sequence_id": …, "sequence_start": true, …}, as over HTTP)
 *   → {"id": "2", "type": "completion", "model": "tiny-gpt", "prompt": "Hi", "max_tokens": 8}
 *                                          ← {"id": "2", "type": "token", "text": "..."} … {"id": "2", "type": "done", "finish_reason": "length", "usage": {...}}
 *   → {"id": "2", "type": "cancel"}        ← {"id": "2", "type": "done", "finish_reason": "cancelled"}
 *   → {"id": "3", "type": "embeddings", "model": "tiny-embed", "input": ["a", "b"]}   (the /v1/embeddings body)
 *                                          ← {"id": "3", "type": "embeddings", "object": "list", "data": [...], "usage": {...}}
 *   ← {"id": …, "type": "error", "error": {"status": 400, "code": …, "message": …}}   (the socket stays open)
 *
 * Closing the socket cancels everything it started.
 */
export function wsRoutes(
  models: ReadonlyMap<string, ServedModel>,
  {
    pingMs,
    onSilent,
    work,
    capture,
    shadow,
  }: {
    pingMs: number;
    onSilent?: () => void;
    work?: QuietWork;
    capture?: Capture;
    /** Shadow traffic (config shadow): a message answered without error, sent to its model's shadow if drawn. */
    shadow?: (origin: ShadowOrigin, msg: Message) => void;
  },
): Hono<GatewayEnv> {
  const app = new Hono<GatewayEnv>();
  app.get(
    '/v1/ws',
    upgradeWebSocket((c) => {
      const requests = new Map<string, AbortController>();
      // Each message's request id: the socket's and its number on the socket (ids may be reused); capture and shadow use it.
      let messages = 0;
      const headers = capture?.metadataOf((name) => c.req.header(name)) ?? {};
      const captureMessage = (requestId: string, model: string, text: string) => {
        const m = models.get(model);
        return m && capture?.message({ id: requestId, model: m.name, caller: c.get('caller')?.id, headers, text });
      };
      const shadowMessage = (requestId: string, msg: Message, captured: boolean) => {
        // (the upgrade's headers, less the WebSocket's own: the shadow's request is a POST)
        const sent = new Headers(c.req.raw.headers);
        for (const name of [...sent.keys()]) if (name === 'upgrade' || name.startsWith('sec-websocket-')) sent.delete(name);
        sent.set('content-type', 'application/json');
        shadow?.({ headers: sent, requestId, caller: c.get('caller'), captured }, msg);
      };
      const socket = (ws: WSContext): SocketContext => ({
        ws,
        models,
        caller: c.get('caller'),
        requests,
        spendRequest: c.get('spendRequest'),
        gatewayWork: work,
        nextRequestId: () => `${c.get('requestId')}-${++messages}`, // (a request id as the gateway takes one: letters, digits, - and _)
        ...(capture && { captureMessage }),
        ...(shadow && { shadowMessage }),
        send: (msg) => ws.readyState === 1 && ws.send(JSON.stringify(msg)),
      });
      let stopPinging = () => {};
      return {
        onOpen(_event, ws) {
          if (pingMs > 0) stopPinging = pingUntilSilent(ws.raw as WebSocket, pingMs, onSilent);
        },
        onMessage(event, ws) {
          void handle(event.data, socket(ws));
        },
        onClose() {
          stopPinging();
          for (const controller of requests.values()) controller.abort();
          requests.clear();
        },
      };
    }),
  );
  return app;
}

/**
 * Pings the socket every `ms` and ends it when the last ping went unanswered: a client gone without a close
 * frame (a network that vanished) would otherwise hold its streams, generating for no one, until TCP gives up
 * (hours). Clients answer pings by themselves (browsers, `ws`, every RFC 6455 client).
 */
function pingUntilSilent(socket: WebSocket, ms: number, onSilent?: () => void): () => void {
  let answered = true;
  const onPong = () => {
    answered = true;
  };
  socket.on('pong', onPong);
  const timer = setInterval(() => {
    if (!answered) {
      clearInterval(timer);
      onSilent?.();
      return socket.terminate(); // 'close' follows: its work is cancelled
    }
    answered = false;
    socket.ping();
  }, ms).unref();
  return () => {
    clearInterval(timer);
    socket.off('pong', onPong);
  };
}

async function handle(data: unknown, socket: SocketContext): Promise<void> {
  const { requests, gatewayWork } = socket;
  let { send } = socket; // (what is sent for a captured message is kept too)
  let id: string | null = null;
  let captured: MessageCapture | undefined;
  let status = 200;
  try {
    if (typeof data !== 'string') throw badInput('send JSON text messages (binary messages are not supported)');
    let msg: Message;
    try {
      msg = JSON.parse(data);
    } catch (err) {
      throw badInput(`malformed JSON: ${(err as Error).message}`);
    }
    if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) throw badInput('a message must be a JSON object');
    if (typeof msg.id !== 'string' && typeof msg.id !== 'number') throw badInput('every message needs an "id" (string or number)');
    id = String(msg.id);
    if (msg.type === 'cancel') return void requests.get(id)?.abort();
    if (requests.has(id)) throw badInput(`id ${id} is already in use on this socket`);
    // Shutting down: what was sent before is answered (the shutdown waits for it), nothing new is taken.
    if (gatewayWork?.closing) throw unavailable('shutting_down', 'the gateway is shutting down: send this on a new connection');
    socket.spendRequest?.(); // each request on the socket counts against the caller's rate limit, as over HTTP
    const controller = new AbortController();
    requests.set(id, controller);
    const done = gatewayWork?.begin();
    const requestId = socket.nextRequestId();
    captured = typeof msg.model === 'string' ? socket.captureMessage?.(requestId, msg.model, data) : undefined;
    if (captured) {
      const [plain, keep] = [send, captured.sent];
      send = (m) => {
        plain(m);
        keep(m);
      };
    }
    const each = captured ? { ...socket, send, captureShadow: captured.shadow } : socket;
    try {
      if (msg.type === 'infer') await infer(msg, id, controller.signal, each);
      else if (msg.type === 'completion' || msg.type === 'chat') await generate(msg, id, controller.signal, each);
      else if (msg.type === 'embeddings') await embed(msg, id, controller.signal, each);
      else throw badInput(`unknown message type ${JSON.stringify(msg.type)} (expected infer, completion, chat, embeddings or cancel)`);
      if (!controller.signal.aborted) socket.shadowMessage?.(requestId, msg, captured !== undefined);
    } finally {
      requests.delete(id);
      done?.();
    }
  } catch (err) {
    const e = err instanceof GatewayError ? err : new GatewayError(500, 'internal', (err as Error).message);
    status = e.status;
    if (e.status === 499) return void send({ id, type: 'done', finish_reason: 'cancelled' });
    const { param, retryAfterS } = e.options;
    send({
      id,
      type: 'error',
      error: { status: e.status, code: e.code, message: e.message, ...(param && { param }), ...(retryAfterS !== undefined && { retry_after_s: retryAfterS }) },
    });
  } finally {
    captured?.end(status);
  }
}

async function embed(msg: Message, id: string, signal: AbortSignal, { models, caller, send }: SocketContext) {
  const { type: _type, id: _id, ...fields } = msg;
  const req = parseBody(embeddingsSchema, fields);
  const m = encoderOf(models, ENCODERS.embedding)(req.model);
  send({ id, type: 'embeddings', ...(await embeddingsAnswer({ signal, priority: caller?.priority, caller: caller?.id }, m, req)) });
}

function lookup(models: ReadonlyMap<string, ServedModel>, name: unknown): ServedModel {
  const m = typeof name === 'string' ? models.get(name) : undefined;
  if (!m) throw notFound(`unknown model ${JSON.stringify(name)}; this gateway serves ${[...models.keys()].join(', ')}`);
  return m;
}

async function infer(msg: Message, id: string, signal: AbortSignal, { models, caller, send, captureShadow }: SocketContext) {
  const m = lookup(models, msg.model);
  if (!m.batcher) throw badInput(`model ${m.name} is generative: send a "completion" or "chat" message`);
  const request = inferRequestFromJson({ inputs: msg.inputs, outputs: msg.outputs, parameters: msg.parameters }, new Uint8Array(0), m.signature);
  if (request.sharedInputs.length || request.outputs.some((o) => o.shm)) throw badInput('shared-memory tensors are for POST .../infer only');
  for (const o of request.outputs) o.binary = false; // JSON only on a text socket
  const deadline = request.timeoutMs === undefined ? undefined : performance.now() + request.timeoutMs;
  // (a multiplexed model's model: the message's `model_id`, as HTTP's serve_multiplexed_model_id header)
  // (a versioned model's version: `model_version`, as KServe's URL names it; the latest if none)
  const modelId = typeof msg.model_id === 'string' ? msg.model_id : undefined;
  const version = versionOf(m, msg.model_version === undefined ? undefined : String(msg.model_version));
  // (a shadow version runs it too, as over HTTP: version_shadow)
  const shadow = request.sequence ? undefined : m.versions?.shadow(version);
  if (shadow) shadowRun(m, shadow, request.inputs, request, { caller, told: captureShadow });
  const result = await submitInfer(m, request.inputs, request.sequence, caller, { signal, deadline, modelId, version });
  const body = JSON.parse(encodeInferResponse({ name: m.name, version }, request, result.outputs, m.labels).body as string);
  send({ id, type: 'result', ...body, queue_ms: Math.round(result.queueMs * 100) / 100, batch_size: result.batchSize });
}

async function generate(msg: Message, id: string, signal: AbortSignal, { models, caller, send, ws }: SocketContext) {
  // (a LoRA adapter is named as the model, as on the OpenAI routes)
  const adapter = typeof msg.model === 'string' && !models.has(msg.model) ? adapterNamed(models, msg.model) : undefined;
  const m = adapter ?? lookup(models, msg.model);
  if (!m.generation) throw badInput(`model ${m.name} is not a generative model: send an "infer" message`, 'model');
  const gen = m.generation;
  const { type: _type, id: _id, ...fields } = msg;
  let prompt: number[];
  let req: z.infer<typeof completionSchema> | z.infer<typeof chatSchema>;
  if (msg.type === 'chat') {
    const chat = parseBody(chatSchema, fields);
    if (chat.tools?.length || (chat.tool_choice && chat.tool_choice !== 'none'))
      throw badInput('tools are served on POST /v1/chat/completions, not over the WebSocket', 'tools');
    req = chat;
    prompt = chatTokens(gen.tokenizer, chat.messages, undefined, layoutOf(chat));
  } else {
    const completion = parseBody(completionSchema, fields);
    req = completion;
    const prompts = completionPrompts(gen.tokenizer, completion.prompt);
    if (prompts.length > 1) throw badInput('one prompt per message over the WebSocket: send a message per prompt', 'prompt');
    prompt = prompts[0];
  }
  if ((req.n ?? 1) > 1) throw badInput('n > 1 is not served over the WebSocket: send a message per choice', 'n');
  // (candidates ranked at the end are a whole answer: not a socket's stream; it was ignored)
  if ('best_of' in req && (req.best_of ?? 1) > 1) throw badInput('best_of is not served over the WebSocket: POST /v1/completions', 'best_of');
  const maxTokens =
    'messages' in req ? (req.max_completion_tokens ?? req.max_tokens ?? chatRoom(gen, prompt, req.truncate_prompt_tokens)) : (req.max_tokens ?? 16);
  const reasoningParser = msg.type === 'chat' ? gen.reasoningParser : undefined;
  const generation = new Generation(m, { ...req, reasoningParser }, prompt, maxTokens, signal, { caller });
  const raw = ws.raw as { bufferedAmount?: number } | undefined;
  // A reasoning model's chat: its thinking as `reasoning` beside the text (as chat's reasoning_content).
  const splitter = reasoningParser && new ReasoningSplitter(reasoningParser);
  const said = (part: { reasoning: string; content: string }, logged: LoggedToken[]) => ({
    text: part.content,
    ...(part.reasoning && { reasoning: part.reasoning }),
    ...(generation.wantsLogprobs && { logprobs: chatLogprobs(gen.tokenizer, logged) }),
  });
  for await (const { text, logged } of generation) {
    // A socket that is not being read stops taking text; the sequence pauses (see Generation).
    while ((raw?.bufferedAmount ?? 0) > MAX_UNSENT_BYTES && !signal.aborted) await new Promise((r) => setTimeout(r, 10));
    const part = splitter ? splitter.push(text) : { reasoning: '', content: text };
    if (part.content || part.reasoning || logged.length > 0) send({ id, type: 'token', ...said(part, logged) });
  }
  const done = await generation.result;
  const part = splitter?.flush();
  if (part?.content || part?.reasoning) send({ id, type: 'token', ...said(part, []) });
  const rest = generation.wantsLogprobs && { logprobs: chatLogprobs(gen.tokenizer, generation.takeLogprobs()) };
  send({ id, type: 'done', finish_reason: done.finishReason, usage: generation.usage(done), ...rest });
}
