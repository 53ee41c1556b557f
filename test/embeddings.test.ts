import { encode } from 'gpt-tokenizer/encoding/gpt2';
import * as ort from 'onnxruntime-node';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODELS, startTestGateway } from './helpers.js';

const ENCODER = `${MODELS}tiny-embed.onnx`;
let gw: Awaited<ReturnType<typeof startTestGateway>>;
let client: OpenAI;
let session: ort.InferenceSession;

beforeAll(async () => {
  gw = await startTestGateway({
    models: {
      'tiny-embed': { path: ENCODER, device: 'cpu', batching: { max_batch_size: 8, wait_ms: 20, max_queue_size: 64 }, scaling: { min_containers: 1 } },
      // (a long wait: requests sent together surely share a batch)
      'embed-together': { path: ENCODER, device: 'cpu', batching: { max_batch_size: 8, wait_ms: 300 }, scaling: { min_containers: 1 } },
      // (a queue shorter than two batches: a request of many texts must still fit it)
      'embed-short-queue': { path: ENCODER, device: 'cpu', batching: { max_batch_size: 8, max_queue_size: 4 } },
      'embed-cls': { path: ENCODER, device: 'cpu', embeddings: { pooling: 'cls', normalize: false }, scaling: { min_containers: 1 } },
      'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu' },
    },
    endpoints: [{ path: '/embed', model: 'tiny-embed', protocol: 'openai-embeddings', auth: 'public' }],
  });
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'not-needed', maxRetries: 0 });
  session = await ort.InferenceSession.create(ENCODER);
}, 60_000);
afterAll(() => gw?.shutdown());

/** The model's hidden states for one text, run alone by ONNX Runtime in this process: [tokens][hidden]. */
async function hiddenStates(tokens: number[]): Promise<number[][]> {
  const ids = new ort.Tensor('int64', BigInt64Array.from(tokens, BigInt), [1, tokens.length]);
  const mask = new ort.Tensor('int64', new BigInt64Array(tokens.length).fill(1n), [1, tokens.length]);
  const out = (await session.run({ input_ids: ids, attention_mask: mask })).last_hidden_state;
  const hidden = out.dims[2];
  const data = out.data as Float32Array;
  return tokens.map((_, t) => Array.from(data.subarray(t * hidden, (t + 1) * hidden)));
}

const unit = (v: number[]) => {
  const norm = Math.hypot(...v);
  return v.map((x) => x / norm);
};
const meanOf = (rows: number[][]) => rows[0].map((_, i) => rows.reduce((s, r) => s + r[i], 0) / rows.length);
const expectClose = (a: ArrayLike<number>, b: ArrayLike<number>, tolerance = 1e-5) => {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++) expect(Math.abs(a[i] - b[i])).toBeLessThan(tolerance);
};

const TEXTS = ['hello world', 'The quick brown fox jumps over the lazy dog, and then it runs far away into the woods.', 'A'];

describe('POST /v1/embeddings with the openai client', () => {
  it("answers each input's mean-pooled, normalized hidden states: what the model computes for the text alone", async () => {
    const res = await client.embeddings.create({ model: 'tiny-embed', input: TEXTS }); // the client asks for base64 and decodes it
    expect(res.object).toBe('list');
    expect(res.model).toBe('tiny-embed');
    expect(res.data.map((d) => d.index)).toEqual([0, 1, 2]);
    const tokens = TEXTS.map((t) => encode(t));
    expect(res.usage).toEqual({ prompt_tokens: tokens.flat().length, total_tokens: tokens.flat().length });
    for (const [i, t] of tokens.entries()) {
      const expected = unit(meanOf(await hiddenStates(t)));
      expect(res.data[i].embedding).toHaveLength(32);
      expectClose(res.data[i].embedding, expected);
    }
  });

  it('gives a text the same embedding whatever it is batched with (padding is masked out)', async () => {
    const alone = (await client.embeddings.create({ model: 'tiny-embed', input: 'hello world' })).data[0].embedding;
    // Concurrent requests of many lengths: they share batches (wait_ms 20), padded to the longest.
    const texts = Array.from({ length: 24 }, (_, i) => (i % 3 === 0 ? 'hello world' : `${'word '.repeat(i * 3)}end`));
    const before = await stats();
    const all = await Promise.all(texts.map((input) => client.embeddings.create({ model: 'tiny-embed', input })));
    const after = await stats();
    for (const [i, res] of all.entries()) if (texts[i] === 'hello world') expectClose(res.data[0].embedding, alone);
    expect(after.inference_count - before.inference_count).toBe(24);
    expect(after.execution_count - before.execution_count).toBeLessThan(24); // batched, not one by one
  });

  it('answers floats for encoding_format "float", the same values as base64', async () => {
    const floats = await client.embeddings.create({ model: 'tiny-embed', input: TEXTS, encoding_format: 'float' });
    const decoded = await client.embeddings.create({ model: 'tiny-embed', input: TEXTS });
    for (let i = 0; i < TEXTS.length; i++) expectClose(floats.data[i].embedding, decoded.data[i].embedding, 1e-7);
    const raw = (await post('/v1/embeddings', { model: 'tiny-embed', input: 'hi', encoding_format: 'base64' })).body as { data: { embedding: string }[] };
    expect(Buffer.from(raw.data[0].embedding, 'base64').byteLength).toBe(32 * 4); // float32 bytes
  });

  it('takes token ids as well as text, and a list of either', async () => {
    const tokens = encode(TEXTS[1]);
    const byText = await client.embeddings.create({ model: 'tiny-embed', input: TEXTS[1] });
    const byTokens = await client.embeddings.create({ model: 'tiny-embed', input: tokens });
    const byLists = await client.embeddings.create({ model: 'tiny-embed', input: [tokens, encode('A')] });
    expectClose(byTokens.data[0].embedding, byText.data[0].embedding, 1e-7);
    expectClose(byLists.data[0].embedding, byText.data[0].embedding, 1e-7);
    expect(byLists.data).toHaveLength(2);
    expect(byTokens.usage.prompt_tokens).toBe(tokens.length);
    // truncate_prompt_tokens keeps the first N (no special tokens here), text or ids alike.
    const cutIds = await client.embeddings.create({ model: 'tiny-embed', input: tokens, truncate_prompt_tokens: 3 } as never);
    const cutText = await client.embeddings.create({ model: 'tiny-embed', input: TEXTS[1], truncate_prompt_tokens: 3 } as never);
    const first3 = await client.embeddings.create({ model: 'tiny-embed', input: tokens.slice(0, 3) });
    expectClose(cutIds.data[0].embedding, first3.data[0].embedding, 1e-7);
    expectClose(cutText.data[0].embedding, first3.data[0].embedding, 1e-7);
    expect(cutText.usage.prompt_tokens).toBe(3);
  });

  it('cuts to the leading `dimensions` and normalizes again (Matryoshka)', async () => {
    const full = unit(meanOf(await hiddenStates(encode('hello world'))));
    const short = (await client.embeddings.create({ model: 'tiny-embed', input: 'hello world', dimensions: 8 })).data[0].embedding;
    expect(short).toHaveLength(8);
    expectClose(short, unit(full.slice(0, 8)));
  });

  it("pools as the model's config says: the first token's hidden state, unnormalized", async () => {
    const res = await client.embeddings.create({ model: 'embed-cls', input: 'hello world' });
    expectClose(res.data[0].embedding, (await hiddenStates(encode('hello world')))[0]);
  });

  it('serves a request of many inputs through a small queue, two batches of it at a time', async () => {
    // 300 inputs against max_queue_size 64: submitted all at once they would be refused with 503.
    const input = Array.from({ length: 300 }, (_, i) => `text number ${i}`);
    const res = await client.embeddings.create({ model: 'tiny-embed', input });
    expect(res.data).toHaveLength(300);
    expectClose(res.data[123].embedding, (await client.embeddings.create({ model: 'tiny-embed', input: 'text number 123' })).data[0].embedding, 1e-6);
  });

  it('stops computing the rest of a request whose client went away', async () => {
    const before = await stats();
    const aborted = new AbortController();
    const input = Array.from({ length: 2048 }, (_, i) => `text ${i} ${'word '.repeat(i % 40)}`);
    const request = fetch(`${gw.url}/v1/embeddings`, { method: 'POST', body: JSON.stringify({ model: 'tiny-embed', input }), signal: aborted.signal });
    setTimeout(() => aborted.abort(), 150);
    await expect(request).rejects.toThrow();
    await new Promise((r) => setTimeout(r, 300));
    const computed = (await stats()).inference_count - before.inference_count;
    expect(computed).toBeLessThan(2048);
    expect((await client.embeddings.create({ model: 'tiny-embed', input: 'after' })).data).toHaveLength(1);
  });

  it('serves an endpoint bound to the model, whatever the body names', async () => {
    const res = await post('/embed', { model: 'something-else', input: 'hello world', encoding_format: 'float' });
    expect(res.status).toBe(200);
    expect((res.body as { model: string }).model).toBe('tiny-embed');
  });

  it('lists encoders beside generative models, and counts their tokens', async () => {
    const ids = (await client.models.list()).data.map((m) => m.id);
    expect(ids).toEqual(expect.arrayContaining(['tiny-embed', 'embed-cls', 'tiny-gpt']));
    expect(await client.models.retrieve('tiny-embed')).toMatchObject({ id: 'tiny-embed', object: 'model', max_model_len: 512 });
    const counted = await post('/tokenize', { model: 'tiny-embed', prompt: 'hello world' });
    expect(counted.body).toMatchObject({ count: 2, tokens: encode('hello world') });
  });
});

describe('bad embedding requests: a precise 400/404 in OpenAI’s error shape, nothing computed', () => {
  const cases: [string, object, number, RegExp, string | null][] = [
    ['an empty string', { model: 'tiny-embed', input: '' }, 400, /input: must not be empty/, 'input'],
    ['an empty string in a list', { model: 'tiny-embed', input: ['a', ''] }, 400, /input\.1: must not be empty/, 'input.1'],
    ['an empty list', { model: 'tiny-embed', input: [] }, 400, /input/, 'input'],
    ['mixed strings and numbers', { model: 'tiny-embed', input: ['a', 1] }, 400, /expected a string, a list of strings/, 'input'],
    ['no input', { model: 'tiny-embed' }, 400, /missing required parameter: input/, 'input'],
    [
      'a token outside the vocabulary',
      { model: 'tiny-embed', input: [[1, 2], [50257]] },
      400,
      /input\.1: token 50257 is not in the model's vocabulary/,
      'input.1',
    ],
    [
      'a text past the context',
      { model: 'tiny-embed', input: Array(600).fill(1) },
      400,
      /maximum context length is 512 tokens, however you requested 600 tokens/,
      'input',
    ],
    ['more dimensions than the model has', { model: 'tiny-embed', input: 'a', dimensions: 64 }, 400, /have 32 dimensions/, 'dimensions'],
    [
      'an unknown encoding',
      { model: 'tiny-embed', input: 'a', encoding_format: 'int8' },
      400,
      /encoding_format must be "float" or "base64"/,
      'encoding_format',
    ],
    ['more than 2048 inputs', { model: 'tiny-embed', input: Array(2049).fill('a') }, 400, /at most 2048 inputs/, 'input'],
    [
      'a generative model',
      { model: 'tiny-gpt', input: 'a' },
      404,
      /not an embedding model \(these are: tiny-embed, embed-together, embed-short-queue, embed-cls\)/,
      'model',
    ],
    ['an unknown model', { model: 'nope', input: 'a' }, 404, /`nope` does not exist/, 'model'],
  ];
  it.each(cases)('%s', async (_, body, status, message, param) => {
    const before = await stats();
    const res = await post('/v1/embeddings', body);
    expect(res.status).toBe(status);
    const error = (res.body as { error: { message: string; param: string | null; type: string } }).error;
    expect(error.message).toMatch(message);
    expect(error.param).toBe(param);
    expect(error.type).toBe('invalid_request_error');
    expect((await stats()).inference_count).toBe(before.inference_count);
  });

  it('an encoder is not a chat model, and the gateway serves on after every refusal', async () => {
    await expect(client.chat.completions.create({ model: 'tiny-embed', messages: [{ role: 'user', content: 'hi' }] })).rejects.toMatchObject({ status: 404 });
    const res = await client.embeddings.create({ model: 'tiny-embed', input: 'still here' });
    expect(res.data[0].embedding).toHaveLength(32);
  });
});

async function post(path: string, body: object): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${gw.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json() };
}

async function stats(): Promise<{ inference_count: number; execution_count: number }> {
  const res = (await (await fetch(`${gw.url}/v2/models/tiny-embed/stats`)).json()) as { model_stats: { inference_count: number; execution_count: number }[] };
  return res.model_stats[0];
}

describe('a request of many texts', () => {
  it('keeps within the model’s max_queue_size, however short (it was a 503 queue_full on an idle gateway)', async () => {
    const texts = Array.from({ length: 40 }, (_, i) => `text number ${i}`);
    const res = await client.embeddings.create({ model: 'embed-short-queue', input: texts });
    expect(res.data.map((d) => d.index)).toEqual(texts.map((_, i) => i));
  });

  it('of more rows than max_queue_size (within max_batch_size) is taken by an empty queue: it was a 503 queue_full, to retry forever', async () => {
    const ids = [464, 2068, 7586];
    const rows = 6; // max_queue_size 4, max_batch_size 8
    const res = await fetch(`${gw.url}/v2/models/embed-short-queue/infer`, {
      method: 'POST',
      body: JSON.stringify({
        inputs: [
          { name: 'input_ids', shape: [rows, 3], datatype: 'INT64', data: Array.from({ length: rows }, () => ids).flat() },
          { name: 'attention_mask', shape: [rows, 3], datatype: 'INT64', data: new Array(rows * 3).fill(1) },
        ],
      }),
    });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { outputs: { shape: number[] }[] }).outputs[0].shape).toEqual([rows, 3, 32]);
  });
});

describe('a request whose inputs the model cannot take, batched with others', () => {
  it('is a 400 when its inputs disagree on a dimension they share (seq), alone or among others', async () => {
    const infer = (ids: number[], mask: number[]) =>
      fetch(`${gw.url}/v2/models/embed-together/infer`, {
        method: 'POST',
        body: JSON.stringify({
          inputs: [
            { name: 'input_ids', shape: [1, ids.length], datatype: 'INT64', data: ids },
            { name: 'attention_mask', shape: [1, mask.length], datatype: 'INT64', data: mask },
          ],
        }),
      });
    // (alone it was ONNX Runtime's 500; beside others, padded to their length, a 200 of other numbers)
    const [good, bad, other] = await Promise.all([infer([5, 6, 7, 8], [1, 1, 1, 1]), infer([1, 2, 3], [1, 1]), infer([9, 10, 11, 12], [1, 1, 1, 1])]);
    expect([good.status, bad.status, other.status]).toEqual([200, 400, 200]);
    expect((await bad.json()).error).toBe('inputs disagree on dimension "seq": input_ids has 3, attention_mask has 2');
  });

  it('fails alone: the requests it shared a batch with are run again without it and answered', async () => {
    // Through KServe: token ids the gateway does not check as /v1/embeddings does — one past the embedding table.
    const infer = (ids: number[]) =>
      fetch(`${gw.url}/v2/models/embed-together/infer`, {
        method: 'POST',
        body: JSON.stringify({
          inputs: [
            { name: 'input_ids', shape: [1, ids.length], datatype: 'INT64', data: ids },
            { name: 'attention_mask', shape: [1, ids.length], datatype: 'INT64', data: ids.map(() => 1) },
          ],
        }),
      });

    const counted = async () => {
      const { batches, rows } = await (await fetch(`${gw.url}/v2/models/embed-together/stats`)).json();
      const metrics = await (await fetch(`${gw.url}/metrics`)).text();
      const sample = (name: string) => Number(new RegExp(`^${name}\\{[^}]*infergate_model="embed-together"[^}]*\\} (\\d+)$`, 'm').exec(metrics)?.[1] ?? 0);
      return [batches, rows, sample('infergate_batches_total'), sample('infergate_rows_total'), sample('infergate_queue_duration_count')];
    };
    const countedBefore = await counted();
    const [good, bad, other] = await Promise.all([infer([464, 2068, 7586]), infer([464, 1_000_000_000, 7586]), infer([40, 588, 340])]);
    expect(bad.status).toBe(500);
    // (the same inputs would fail again: clients are told not to retry it; the others are not marked)
    expect([bad, good, other].map((r) => r.headers.get('x-should-retry'))).toEqual(['false', null, null]);
    expect(((await bad.json()) as { error: string }).error).toMatch(/out of (data )?bounds/);
    expect([good.status, other.status]).toEqual([200, 200]);
    const hidden = (await good.json()) as { outputs: { data: number[] }[] };
    expectClose(hidden.outputs[0].data, (await hiddenStates([464, 2068, 7586])).flat());
    const stats = await (await fetch(`${gw.url}/v2/models/embed-together/stats`)).json();
    expect(stats).toMatchObject({ isolated: 3, batchSizes: { 1: 2 } });
    expect(stats.batchSizes[3]).toBeUndefined();
    // The batch of three failed and each ran again alone: the two runs that answered count (batches and rows, in the
    // stats and /metrics), and each answered request's wait once.
    expect((await counted()).map((n, i) => n - countedBefore[i])).toEqual([2, 2, 2, 2, 2]);
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    expect(metrics).toMatch(/^infergate_isolated_total\{[^}]*infergate_model="embed-together"[^}]*\} 3$/m);

    // The OpenAI SDK (which retries a 500 twice by default) sends the failing request once.
    const requests = async () => (await (await fetch(`${gw.url}/v2/models/embed-together/stats`)).json()).requests as number;
    const before = await requests();
    const client = new OpenAI({ baseURL: gw.url, apiKey: 'unused', maxRetries: 2 });
    const ids = [464, 1_000_000_000, 7586];
    const inputs = [
      { name: 'input_ids', shape: [1, 3], datatype: 'INT64', data: ids },
      { name: 'attention_mask', shape: [1, 3], datatype: 'INT64', data: [1, 1, 1] },
    ];
    await expect(client.post('/v2/models/embed-together/infer', { body: { inputs } })).rejects.toMatchObject({ status: 500 });
    expect(await requests()).toBe(before + 1);
  });
});
