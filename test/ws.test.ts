import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { MODELS, startTestGateway } from './helpers.js';

let gw: Awaited<ReturnType<typeof startTestGateway>>;
beforeAll(async () => {
  gw = await startTestGateway({
    server: { websocket_ping_s: 0.3, max_body_bytes: 2 ** 20 },
    models: {
      'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', batching: { max_batch_size: 8 }, scaling: { min_containers: 1 } },
      mlp: { path: `${MODELS}mlp.onnx`, device: 'cpu', scaling: { min_containers: 1 } },
      'tiny-embed': { path: `${MODELS}tiny-embed.onnx`, device: 'cpu', scaling: { min_containers: 1 } },
    },
  });
});
afterAll(() => gw?.shutdown());

type Msg = { id: string | null; type: string; [k: string]: unknown };

/** A `ws` client that collects messages and can wait for one matching a predicate. */
async function connect(opts: WebSocket.ClientOptions = {}, url = gw.url) {
  const ws = new WebSocket(`${url.replace('http', 'ws')}/v1/ws`, opts);
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  const received: Msg[] = [];
  const waiters: { match: (m: Msg) => boolean; resolve: (m: Msg) => void }[] = [];
  ws.on('message', (data) => {
    const msg = JSON.parse(String(data)) as Msg;
    received.push(msg);
    for (const w of waiters.filter((x) => x.match(msg))) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(msg);
    }
  });
  const next = (match: (m: Msg) => boolean) =>
    new Promise<Msg>((resolve) => {
      const seen = received.find(match);
      if (seen) resolve(seen);
      else waiters.push({ match, resolve });
    });
  return { ws, received, next, send: (m: object | string) => ws.send(typeof m === 'string' ? m : JSON.stringify(m)) };
}

const stats = async () => (await fetch(`${gw.url}/v2/models/tiny-gpt/stats`)).json();

describe('WebSocket /v1/ws', () => {
  it('multiplexes an infer request and two generation streams on one socket, each answer tagged with its id', async () => {
    const c = await connect();
    c.send({ id: 'a', type: 'completion', model: 'tiny-gpt', prompt: 'Hello', max_tokens: 10, seed: 1 });
    // (chat's max_completion_tokens, as over HTTP: it was ignored here, and the chat ran to its default 256)
    c.send({ id: 'b', type: 'chat', model: 'tiny-gpt', messages: [{ role: 'user', content: 'Hi' }], max_completion_tokens: 6, seed: 2, logprobs: true });
    c.send({ id: 7, type: 'infer', model: 'mlp', inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: new Array(64).fill(0.1) }] });
    const [doneA, doneB, result] = await Promise.all([
      c.next((m) => m.id === 'a' && m.type === 'done'),
      c.next((m) => m.id === 'b' && m.type === 'done'),
      c.next((m) => m.id === '7' && m.type === 'result'),
    ]);
    expect(doneA).toMatchObject({ finish_reason: 'length', usage: { prompt_tokens: 1, completion_tokens: 10 } });
    expect(doneB).toMatchObject({ finish_reason: 'length', usage: { completion_tokens: 6 } });
    expect(result).toMatchObject({ model_name: 'mlp', outputs: [{ name: 'probs', shape: [1, 10] }] });
    // Log-probabilities (chat's shape) ride on the token messages that asked for them, one entry per token.
    const logged = c.received.filter((m) => m.id === 'b').flatMap((m) => (m.logprobs as { content: { token: string }[] } | undefined)?.content ?? []);
    expect(logged).toHaveLength(6);
    expect(c.received.find((m) => m.id === 'a' && m.type === 'token')).not.toHaveProperty('logprobs');
    const textA = c.received.filter((m) => m.id === 'a' && m.type === 'token').map((m) => m.text);
    expect(textA.length).toBeGreaterThan(1);
    // The same request over HTTP with the same seed gives the same text.
    const http = await (
      await fetch(`${gw.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ model: 'tiny-gpt', prompt: 'Hello', max_tokens: 10, seed: 1 }) })
    ).json();
    expect(textA.join('')).toBe(http.choices[0].text);
    c.ws.close();
  });

  it('answers an embeddings message as POST /v1/embeddings answers the same body', async () => {
    const { ws, next, send } = await connect();
    const body = { model: 'tiny-embed', input: ['hello world', 'a second text'], encoding_format: 'float', dimensions: 8 };
    send({ id: 'e', type: 'embeddings', ...body });
    const { id, type, ...answer } = await next((m) => m.id === 'e');
    expect(type).toBe('embeddings');
    const http = await (await fetch(`${gw.url}/v1/embeddings`, { method: 'POST', body: JSON.stringify(body) })).json();
    expect(answer).toEqual(http);
    send({ id: 'bad', type: 'embeddings', model: 'tiny-gpt', input: 'x' });
    expect(await next((m) => m.id === 'bad')).toMatchObject({ type: 'error', error: { status: 404, code: 'model_not_found' } });
    ws.close();
  });

  it('answers malformed messages with an error message and keeps the socket up', async () => {
    const c = await connect();
    c.send('{not json');
    c.send({ type: 'infer' });
    c.send({ id: 'x', type: 'teleport' });
    c.send({ id: 'y', type: 'completion', model: 'nope', prompt: 'x' });
    c.send({ id: 'z', type: 'completion', model: 'tiny-gpt', prompt: 'x', max_tokens: -3 });
    c.send({ id: 'n', type: 'completion', model: 'tiny-gpt', prompt: 'x', n: 2 });
    c.send({ id: 'p', type: 'completion', model: 'tiny-gpt', prompt: ['x', 'y'] });
    c.send({ id: 'b', type: 'completion', model: 'tiny-gpt', prompt: 'x', use_beam_search: true });
    c.send({ id: 'w', type: 'infer', model: 'mlp', inputs: [{ name: 'x', shape: [1, 2], datatype: 'FP32', data: [1, 2] }] });
    c.send({ id: 'o', type: 'completion', model: 'tiny-gpt', prompt: 'x', best_of: 3 });
    const errors = await Promise.all([
      c.next((m) => m.type === 'error' && /malformed JSON/.test(String((m.error as { message: string }).message))),
      c.next((m) => m.type === 'error' && /needs an "id"/.test(String((m.error as { message: string }).message))),
      c.next((m) => m.id === 'x' && m.type === 'error'),
      c.next((m) => m.id === 'y' && m.type === 'error'),
      c.next((m) => m.id === 'z' && m.type === 'error'),
      c.next((m) => m.id === 'w' && m.type === 'error'),
      c.next((m) => m.id === 'n' && m.type === 'error'),
      c.next((m) => m.id === 'p' && m.type === 'error'),
      c.next((m) => m.id === 'b' && m.type === 'error'),
      c.next((m) => m.id === 'o' && m.type === 'error'),
    ]);
    expect(errors.map((e) => (e.error as { status: number }).status)).toEqual([400, 400, 400, 404, 400, 400, 400, 400, 400, 400]);
    expect((errors[9].error as { param: string }).param).toBe('best_of');
    expect((errors[8].error as { param: string }).param).toBe('use_beam_search');
    expect((errors[4].error as { param: string }).param).toBe('max_tokens');
    expect((errors[6].error as { param: string }).param).toBe('n');
    // Still up: a good request works on the same socket.
    c.send({ id: 'ok', type: 'completion', model: 'tiny-gpt', prompt: 'x', max_tokens: 2 });
    expect(await c.next((m) => m.id === 'ok' && m.type === 'done')).toMatchObject({ finish_reason: 'length' });
    expect(c.ws.readyState).toBe(WebSocket.OPEN);
    c.ws.close();
  });

  it('streams a structured answer (response_format) and refuses tools, on the same socket', async () => {
    const c = await connect();
    const schema = { type: 'object', properties: { ok: { type: 'boolean' }, n: { type: 'integer' } }, required: ['ok', 'n'], additionalProperties: false };
    const format = { type: 'json_schema', json_schema: { name: 'r', schema } };
    c.send({ id: 'j', type: 'chat', model: 'tiny-gpt', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 60, seed: 3, response_format: format });
    c.send({ id: 't', type: 'chat', model: 'tiny-gpt', messages: [{ role: 'user', content: 'Hi' }], tools: [{ type: 'function', function: { name: 'f' } }] });
    const [done, refused] = await Promise.all([c.next((m) => m.id === 'j' && m.type === 'done'), c.next((m) => m.id === 't' && m.type === 'error')]);
    expect(done).toMatchObject({ finish_reason: 'stop' });
    const text = c.received
      .filter((m) => m.id === 'j' && m.type === 'token')
      .map((m) => m.text)
      .join('');
    const doc = JSON.parse(text);
    expect(Object.keys(doc)).toEqual(['ok', 'n']);
    expect(typeof doc.ok).toBe('boolean');
    expect(Number.isInteger(doc.n)).toBe(true);
    expect(refused.error).toMatchObject({ status: 400, param: 'tools' });
    c.ws.close();
  });

  it('cancels one stream on request, and everything when the socket closes', async () => {
    const c = await connect();
    c.send({ id: 'long', type: 'completion', model: 'tiny-gpt', prompt: 'a', max_tokens: 400 });
    await c.next((m) => m.id === 'long' && m.type === 'token');
    c.send({ id: 'long', type: 'cancel' });
    expect(await c.next((m) => m.id === 'long' && m.type === 'done')).toMatchObject({ finish_reason: 'cancelled' });

    c.send({ id: 'l1', type: 'completion', model: 'tiny-gpt', prompt: 'b', max_tokens: 400 });
    c.send({ id: 'l2', type: 'completion', model: 'tiny-gpt', prompt: 'c', max_tokens: 400 });
    await Promise.all([c.next((m) => m.id === 'l1' && m.type === 'token'), c.next((m) => m.id === 'l2' && m.type === 'token')]);
    expect((await stats()).active).toBe(2);
    c.ws.terminate();
    for (let i = 0; i < 200 && (await stats()).active > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect((await stats()).active).toBe(0);
  });

  it('closes a socket whose client stopped answering pings (websocket_ping_s), and keeps one that answers', async () => {
    const gone = await connect({ autoPong: false }); // as a client whose network vanished: nothing comes back
    const here = await connect();
    const closed = await new Promise<number>((resolve) => gone.ws.once('close', (code) => resolve(code)));
    expect(closed).toBe(1006); // ended by the server without a close frame, after one unanswered ping
    expect(await (await fetch(`${gw.url}/metrics`)).text()).toMatch(/^infergate_connections_ended_total\{[^}]*reason="websocket_ping"[^}]*\} 1$/m);
    await new Promise((r) => setTimeout(r, 1000));
    expect(here.ws.readyState).toBe(WebSocket.OPEN); // pinged as often (3 more times since), and answered
    here.send({ id: 'x', type: 'infer', model: 'mlp', inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: new Array(64).fill(0.1) }] });
    expect(await here.next((m) => m.id === 'x')).toMatchObject({ type: 'result' });
    here.ws.close();
  });

  it('closes a socket whose message is over server.max_body_bytes (1009), and goes on serving the others', async () => {
    const big = await connect();
    const other = await connect();
    const closed = new Promise<number>((resolve) => big.ws.once('close', (code) => resolve(code)));
    big.ws.send(JSON.stringify({ id: 'big', type: 'infer', model: 'mlp', padding: 'x'.repeat(2 ** 20) }));
    expect(await closed).toBe(1009); // message too big: not held whole in memory
    other.send({ id: 'y', type: 'infer', model: 'mlp', inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: new Array(64).fill(0.1) }] });
    expect(await other.next((m) => m.id === 'y')).toMatchObject({ type: 'result' });
    other.ws.close();
  });
});

describe('WebSocket /v1/ws under a rate limit', () => {
  it("counts each request on the socket against the caller's limit, as over HTTP: 429 error messages, the socket open", async () => {
    const limited = await startTestGateway({
      auth: { rate_limit: { per_second: 1, burst: 3 } },
      models: { mlp: { path: `${MODELS}mlp.onnx`, device: 'cpu', scaling: { min_containers: 1 } } },
    });
    try {
      const client = await connect({}, limited.url); // the upgrade is one request
      const row = { type: 'infer', model: 'mlp', inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: new Array(64).fill(0.1) }] };
      for (let i = 0; i < 5; i++) client.send({ id: `r${i}`, ...row });
      const answers = await Promise.all([0, 1, 2, 3, 4].map((i) => client.next((m) => m.id === `r${i}`)));
      expect(answers.map((m) => m.type).sort()).toEqual(['error', 'error', 'error', 'result', 'result']);
      const refused = answers.find((m) => m.type === 'error') as Msg;
      expect(refused.error).toMatchObject({ status: 429, code: 'rate_limited' });
      expect((refused.error as { retry_after_s: number }).retry_after_s).toBeGreaterThanOrEqual(1);
      await new Promise((r) => setTimeout(r, 1100)); // a token back
      client.send({ id: 'later', ...row });
      expect(await client.next((m) => m.id === 'later')).toMatchObject({ type: 'result' });
      client.ws.close();
    } finally {
      await limited.shutdown();
    }
  });
});

describe('WebSocket /v1/ws at shutdown', () => {
  it('answers the requests sent before it, refuses new ones with 503 shutting_down, then closes with 1001', async () => {
    const draining = await startTestGateway({
      models: { slow: { path: `${MODELS}slow.onnx`, device: 'cpu', threads: 1, batching: { max_batch_size: 1, wait_ms: 0 }, scaling: { min_containers: 1 } } },
    });
    const client = await connect({}, draining.url);
    const closed = new Promise<number>((resolve) => client.ws.once('close', (code) => resolve(code)));
    const row = { type: 'infer', model: 'slow', inputs: [{ name: 'x', shape: [1, 16], datatype: 'FP32', data: new Array(16).fill(0.5) }] };
    for (let i = 0; i < 6; i++) client.send({ id: `r${i}`, ...row }); // one at a time on the model: they queue
    await client.next((m) => m.id === 'r0'); // under way
    const stopping = draining.shutdown();
    await new Promise((r) => setTimeout(r, 20));
    client.send({ id: 'late', ...row });
    const late = await client.next((m) => m.id === 'late');
    expect(late).toMatchObject({ type: 'error', error: { status: 503, code: 'shutting_down' } });
    const answers = await Promise.all([1, 2, 3, 4, 5].map((i) => client.next((m) => m.id === `r${i}`)));
    expect(answers.map((m) => m.type)).toEqual(['result', 'result', 'result', 'result', 'result']);
    expect(await closed).toBe(1001);
    await stopping;
  });
});
