import * as grpc from '@grpc/grpc-js';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, parseConfig } from '../src/config/index.js';
import { Fleet } from '../src/gateway/fleet.js';
import { loadService } from '../src/gateway/grpc/proto.js';
import { freePort, MODELS, SILERO_VAD, startTestGateway } from './helpers.js';

// Several gateways behind one load balancer (server.fleet), each keeping what it made: a request about another's
// kept response, conversation, call, file or batch is sent to that gateway and answered from there. Two real
// gateways here, each with its own replicas, the official openai client on each.
const KEYS = { app: 'a-long-enough-shared-secret', other: 'another-long-enough-secret' };
const models = {
  'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', batching: { max_batch_size: 8 }, scaling: { min_containers: 1 } },
  // A stateful model (silero VAD): its sequences' state lives in the gateway that holds them.
  vad: SILERO_VAD,
};
const ask = { model: 'tiny-gpt', max_output_tokens: 6, temperature: 0 };

type Gateway = Awaited<ReturnType<typeof startTestGateway>>;
let urls: string[];
let a: Gateway;
let b: Gateway;
const start = (self: string) =>
  startTestGateway({
    server: { port: Number(new URL(self).port), grpc_port: 0, fleet: { self, peers: urls } },
    auth: { default: 'key', keys: Object.entries(KEYS).map(([id, secret]) => ({ id, secret })) },
    models,
  });
const clientOf = (g: Gateway, key = KEYS.app) => new OpenAI({ baseURL: `${g.url}/v1`, apiKey: key, maxRetries: 0 });
const auth = { authorization: `Bearer ${KEYS.app}` };

beforeAll(async () => {
  urls = [`http://127.0.0.1:${await freePort()}`, `http://127.0.0.1:${await freePort()}`];
  [a, b] = await Promise.all(urls.map(start));
});
afterAll(async () => {
  await a?.shutdown();
  await b?.shutdown();
});

describe('a fleet of gateways (server.fleet)', () => {
  it("continues, retrieves and forgets a response kept by the other gateway, as that gateway would; another caller's stays a 404", async () => {
    const onA = clientOf(a);
    const onB = clientOf(b);
    const kept = await onA.responses.create({ ...ask, input: 'Hello', store: true });
    // Its id names its gateway: A's token after resp_, B's ids B's.
    const token = (id: string) => id.slice(id.indexOf('_') + 1, id.indexOf('_') + 9);
    expect(token(kept.id)).not.toBe(token((await onB.responses.create({ ...ask, input: 'Hi', store: true })).id));
    expect(await onB.responses.retrieve(kept.id)).toEqual(kept);
    expect((await onB.responses.inputItems.list(kept.id)).data).toEqual((await onA.responses.inputItems.list(kept.id)).data);
    // Continued on B: answered by A (which has the conversation), the same answer as there; kept there too.
    const viaB = await onB.responses.create({ ...ask, input: 'And?', previous_response_id: kept.id, store: true });
    const onAItself = await onA.responses.create({ ...ask, input: 'And?', previous_response_id: kept.id });
    expect(viaB.output_text).toBe(onAItself.output_text);
    expect(viaB.usage?.input_tokens).toBe(onAItself.usage?.input_tokens);
    expect(token(viaB.id)).toBe(token(kept.id));
    // …streamed too: A's events, as they come.
    let streamed = '';
    for await (const e of await onB.responses.create({ ...ask, input: 'And?', previous_response_id: kept.id, stream: true }))
      if (e.type === 'response.output_text.delta') streamed += e.delta;
    expect(streamed).toBe(onAItself.output_text);
    await expect(clientOf(b, KEYS.other).responses.retrieve(kept.id)).rejects.toMatchObject({ status: 404 });
    await onB.responses.delete(kept.id);
    await expect(onA.responses.retrieve(kept.id)).rejects.toMatchObject({ status: 404 });
    // B's /metrics count what it sent on to A, by what A answered.
    const metrics = await (await fetch(`${b.url}/metrics`, { headers: auth })).text();
    const sent = (status: number) => Number(metrics.match(new RegExp(`infergate_fleet_forwarded_total\\{peer="${urls[0]}",status="${status}"\\} (\\d+)`))?.[1]);
    expect(sent(200)).toBe(5); // (retrieved, listed, continued whole and streamed, deleted)
    expect(sent(404)).toBe(1);
  });

  it("adds a turn to the other gateway's conversation; its background responses are followed, streamed again and cancelled from here", async () => {
    const onA = clientOf(a);
    const onB = clientOf(b);
    const conversation = await onB.conversations.create({ items: [{ role: 'developer', content: 'Be brief.' }] });
    await onA.responses.create({ ...ask, input: 'Hi', conversation: conversation.id });
    expect((await onA.conversations.items.list(conversation.id, { order: 'asc' })).data.map((i) => i.type)).toEqual(['message', 'message', 'message']);
    // A streamed background response on A: its events again from B, after the 3rd.
    const events: OpenAI.Responses.ResponseStreamEvent[] = [];
    for await (const e of await onA.responses.create({ ...ask, input: 'Tell me', background: true, stream: true })) events.push(e);
    const id = (events[0] as OpenAI.Responses.ResponseCreatedEvent).response.id;
    const again: OpenAI.Responses.ResponseStreamEvent[] = [];
    for await (const e of await onB.responses.retrieve(id, { stream: true, starting_after: 2 })) again.push(e);
    expect(again).toEqual(events.slice(3));
    // A long one on A, cancelled from B.
    const long = await onA.responses.create({ model: 'tiny-gpt', input: 'Tell a long story', max_output_tokens: 400, background: true });
    expect(await onB.responses.cancel(long.id)).toMatchObject({ id: long.id, status: 'cancelled' });
    expect((await onA.responses.retrieve(long.id)).status).toBe('cancelled');
  });

  it("collects the other gateway's asynchronous call, and makes a batch beside the other gateway's file", async () => {
    const made = await fetch(`${a.url}/v2/models/tiny-gpt/generate`, {
      method: 'POST',
      headers: { ...auth, prefer: 'respond-async' },
      body: JSON.stringify({ text_input: 'Hi', parameters: { max_tokens: 3, temperature: 0 } }),
    });
    expect(made.status).toBe(202);
    const { id } = await made.json();
    const answer = await fetch(`${b.url}/v2/calls/${id}?wait_s=10`, { headers: auth });
    expect(answer.status).toBe(200);
    expect(await answer.json()).toMatchObject({ model_name: 'tiny-gpt', text_output: expect.any(String) });
    // A file on A, a batch of it asked of B: made on A, beside its file, and seen from B.
    const line = { custom_id: 'x', method: 'POST', url: '/v1/completions', body: { model: 'tiny-gpt', prompt: 'Hi', max_tokens: 2 } };
    const file = await clientOf(a).files.create({ file: new File([`${JSON.stringify(line)}\n`], 'in.jsonl'), purpose: 'batch' });
    const batch = await clientOf(b).batches.create({ input_file_id: file.id, endpoint: '/v1/completions', completion_window: '24h' });
    expect((await clientOf(a).batches.retrieve(batch.id)).input_file_id).toBe(file.id);
    let done = await clientOf(b).batches.retrieve(batch.id);
    for (let i = 0; i < 200 && done.status !== 'completed'; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      done = await clientOf(b).batches.retrieve(batch.id);
    }
    expect(done.request_counts).toMatchObject({ total: 1, completed: 1 });
    expect(await (await clientOf(b).files.content(done.output_file_id as string)).text()).toContain('"custom_id":"x"');
    // Listed from B: every gateway's, the newest first (B's own file last made).
    const mine = await clientOf(b).files.create({ file: new File([`${JSON.stringify(line)}\n`], 'b.jsonl'), purpose: 'batch' });
    const files = (await clientOf(b).files.list()).data.map((f) => f.id);
    expect(files.slice(0, 3)).toEqual([mine.id, done.output_file_id, file.id]);
    expect((await clientOf(b).batches.list()).data.map((x) => x.id)).toContain(batch.id);
    expect((await clientOf(a, KEYS.other).files.list()).data).toEqual([]); // (another caller's: none, from either)
    // Message batches, one on each, paged across both by after_id (Anthropic's way).
    const messageBatch = async (g: Gateway) => {
      const res = await fetch(`${g.url}/v1/messages/batches`, {
        method: 'POST',
        headers: { 'x-api-key': KEYS.app },
        body: JSON.stringify({ requests: [{ custom_id: 'm', params: { model: 'tiny-gpt', max_tokens: 2, messages: [{ role: 'user', content: 'Hi' }] } }] }),
      });
      return ((await res.json()) as { id: string }).id;
    };
    const older = await messageBatch(a);
    await new Promise((resolve) => setTimeout(resolve, 1100)); // (created_at to the second)
    const newer = await messageBatch(b);
    const page = async (query: string) =>
      (await (await fetch(`${a.url}/v1/messages/batches?${query}`, { headers: { 'x-api-key': KEYS.app } })).json()) as {
        data: { id: string }[];
        has_more: boolean;
      };
    const first = await page('limit=1');
    expect(first).toMatchObject({ data: [{ id: newer }], has_more: true });
    expect(await page(`limit=1&after_id=${newer}`)).toMatchObject({ data: [{ id: older }], has_more: false });
  });

  it("keeps a stateful model's sequence on one gateway of the fleet, whichever gateway each of its requests reaches", async () => {
    const windows = [1, 2, 3, 4].map((k) => Array.from({ length: 576 }, (_, i) => Math.sin(i * k * 0.05) * 0.3));
    const step = async (g: Gateway, id: string, i: number) => {
      const res = await fetch(`${g.url}/v2/models/vad/infer`, {
        method: 'POST',
        headers: auth,
        body: JSON.stringify({
          inputs: [{ name: 'input', shape: [1, 576], datatype: 'FP32', data: windows[i] }],
          parameters: { sequence_id: id, sequence_start: i === 0 },
        }),
      });
      const body = await res.json();
      expect([id, i, res.status, body]).toMatchObject([id, i, 200, {}]);
      return body.outputs[0].data[0] as number;
    };
    const straight = [];
    for (const i of [0, 1, 2, 3]) straight.push(await step(a, 'straight', i));
    // Sequences held by each gateway (every gateway ranks them alike), their requests alternating A, B, A, B.
    const holder = (id: string) => new Fleet(urls[0], urls).holderOf(`vad\0app\0${id}`) ?? urls[0];
    const ids = Array.from({ length: 20 }, (_, i) => `s${i}`);
    for (const id of [ids.find((x) => holder(x) === urls[0]), ids.find((x) => holder(x) === urls[1])] as string[]) {
      const alternating = [];
      for (const i of [0, 1, 2, 3]) alternating.push(await step(i % 2 === 0 ? a : b, id, i));
      expect(alternating).toEqual(straight);
    }
    // Over gRPC too (KServe v2's ModelInfer with Triton's sequence parameters), alternating between the two gateways.
    const Service = loadService('inference.proto', 'inference.GRPCInferenceService', { enums: String });
    const clients = [a, b].map((g) => new Service(`127.0.0.1:${g.grpcPort}`, grpc.credentials.createInsecure()));
    try {
      const rpc = (client: grpc.Client, id: string, i: number) =>
        new Promise<{ raw_output_contents: Buffer[] }>((resolve, reject) => {
          const meta = new grpc.Metadata();
          meta.set('authorization', auth.authorization);
          const request = {
            model_name: 'vad',
            inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 576] }],
            raw_input_contents: [Buffer.from(new Float32Array(windows[i]).buffer)],
            parameters: { sequence_id: { string_param: id }, sequence_start: { bool_param: i === 0 } },
          };
          (client as unknown as Record<string, (...args: unknown[]) => void>).ModelInfer(request, meta, (err: Error | null, reply: never) =>
            err ? reject(err) : resolve(reply),
          );
        });
      const id = ids.find((x) => holder(`grpc-${x}`) === urls[1]) as string;
      const overGrpc = [];
      for (const i of [0, 1, 2, 3]) {
        const raw = (await rpc(clients[i % 2], `grpc-${id}`, i)).raw_output_contents[0];
        overGrpc.push(new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength))[0]);
      }
      expect(overGrpc).toEqual(straight);
    } finally {
      for (const client of clients) client.close();
    }
  });

  it('answers itself what no peer made, and what a peer sent on; a peer down is a 503 naming it', async () => {
    // A made-up token, and B's id sent to A as if by a peer: neither sent on (a 404 here, no loop).
    await expect(clientOf(a).responses.retrieve('resp_00000000aaaaaaaaaaaaaaaaaaaaaaaa')).rejects.toMatchObject({ status: 404 });
    const kept = await clientOf(b).responses.create({ ...ask, input: 'Hi', store: true });
    const bounced = await fetch(`${a.url}/v1/responses/${kept.id}`, { headers: { ...auth, 'infergate-forwarded-by': 'x' } });
    expect(bounced.status).toBe(404);
    // /admin/fleet: A, and B answering ready.
    const fleetOfA = async () => (await (await fetch(`${a.url}/admin/fleet`, { headers: auth })).json()) as { self: string; peers: object[] };
    expect(await fleetOfA()).toMatchObject({ self: urls[0], discovered: false, peers: [{ url: urls[1], ready: true }] });
    // B stops: what it kept cannot be reached from A — a 503 (not a 404: it may come back), Retry-After.
    await b.shutdown();
    expect((await fleetOfA()).peers).toMatchObject([{ url: urls[1], ready: false }]);
    const res = await fetch(`${a.url}/v1/responses/${kept.id}`, { headers: auth });
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('1');
    expect((await res.json()).error.message).toContain(`kept by the gateway at ${urls[1]}`);
    // (and the others go on)
    expect((await clientOf(a).responses.create({ ...ask, input: 'Hi' })).status).toBe('incomplete');
    b = await start(urls[1]);
  });

  it('finds the gateways by DNS (discover): a headless Service name resolving to the pods', async () => {
    // "localhost" resolves to this machine: every address it has is taken for a gateway at B's port (B, here).
    const self = `http://127.0.0.1:${await freePort()}`;
    const c = await startTestGateway({
      server: { port: Number(new URL(self).port), fleet: { self, discover: { dns: 'localhost', port: Number(new URL(urls[1]).port) } } },
      auth: { default: 'key', keys: Object.entries(KEYS).map(([id, secret]) => ({ id, secret })) },
      models,
    });
    try {
      const kept = await clientOf(b).responses.create({ ...ask, input: 'Hello', store: true });
      expect(await clientOf(c).responses.retrieve(kept.id)).toEqual(kept);
    } finally {
      await c.shutdown();
    }
    expect(() => parseConfig({ server: { fleet: { self, peers: urls, discover: { dns: 'gw', port: 8080 } } }, models })).toThrow(/one of the two/);
  });

  it('is a config error where the gateway is not one of its peers; $INFERGATE_FLEET_SELF says which it is', async () => {
    const { writeFile, mkdtemp } = await import('node:fs/promises');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const file = join(await mkdtemp(join(tmpdir(), 'infergate-fleet-')), 'fleet.yaml');
    await writeFile(file, `server:\n  fleet:\n    peers: [http://gw-0.gw:8080, http://gw-1.gw:8080/]\nmodels: { m: { path: m.onnx } }\n`);
    expect((await loadConfig(file, { INFERGATE_FLEET_SELF: 'http://gw-1.gw:8080' })).server.fleet?.self).toBe('http://gw-1.gw:8080');
    await expect(loadConfig(file, {})).rejects.toThrow(/server.fleet.self: say how the other gateways reach this one/); // (infergate validate too)
    await expect(loadConfig(file, { INFERGATE_FLEET_SELF: 'http://gw-2.gw:8080' })).rejects.toThrow(/not one of server.fleet.peers/);
    await writeFile(
      file,
      `server:\n  fleet:\n    self: http://gw-9.gw:8080\n    peers: [http://gw-0.gw:8080, http://gw-1.gw:8080]\nmodels: { m: { path: m.onnx } }\n`,
    );
    await expect(loadConfig(file, {})).rejects.toThrow(/server.fleet.self: self must be one of peers/);
    await expect(startTestGateway({ server: { fleet: { peers: urls } }, models })).rejects.toThrow(/server.fleet.self/);
  });
});
