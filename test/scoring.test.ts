import { encode } from 'gpt-tokenizer/encoding/gpt2';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODELS, startTestGateway } from './helpers.js';

const RERANKER = `${MODELS}tiny-rerank.onnx`;
const EOS = 50256; // GPT-2's end-of-text: the separator between query and document
let gw: Awaited<ReturnType<typeof startTestGateway>>;
let session: ort.InferenceSession;

beforeAll(async () => {
  gw = await startTestGateway({
    models: {
      'tiny-rerank': {
        path: RERANKER,
        device: 'cpu',
        labels: `${MODELS}tiny-rerank.labels.txt`,
        batching: { max_batch_size: 8, wait_ms: 10 },
        scaling: { min_containers: 1 },
      },
      'tiny-embed': { path: `${MODELS}tiny-embed.onnx`, device: 'cpu' },
    },
  });
  session = await ort.InferenceSession.create(RERANKER);
}, 60_000);
afterAll(() => gw?.shutdown());

/** The cross-encoder's score for a query and a document, run alone by ONNX Runtime here: sigmoid(logit). */
async function expectedScore(query: string, document: string): Promise<number> {
  const ids = [...encode(query), EOS, ...encode(document)];
  const out = await session.run({
    input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, ids.length]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(ids.length).fill(1n), [1, ids.length]),
  });
  return 1 / (1 + Math.exp(-(out.logits.data as Float32Array)[0]));
}

const QUERY = 'what does a fox eat';
const DOCUMENTS = ['Foxes eat rodents, birds and berries.', 'Paris is the capital of France.', 'The quick brown fox jumps over the lazy dog.', 'x'];

async function post(path: string, body: object): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${gw.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

type Ranked = { index: number; relevance_score: number; document?: { text: string } };

describe('reranking with a cross-encoder (Jina’s API, as vLLM serves it)', () => {
  it('ranks the documents best first, each scored as the model scores the pair alone', async () => {
    const res = await post('/v1/rerank', { model: 'tiny-rerank', query: QUERY, documents: DOCUMENTS });
    expect(res.status).toBe(200);
    const results = res.body.results as Ranked[];
    expect(results.map((r) => r.index).sort()).toEqual([0, 1, 2, 3]);
    for (let i = 1; i < results.length; i++) expect(results[i - 1].relevance_score).toBeGreaterThanOrEqual(results[i].relevance_score);
    for (const r of results) {
      expect(r.relevance_score).toBeCloseTo(await expectedScore(QUERY, DOCUMENTS[r.index]), 5);
      expect(r.document).toEqual({ text: DOCUMENTS[r.index] });
    }
    const tokens = DOCUMENTS.reduce((n, d) => n + encode(QUERY).length + 1 + encode(d).length, 0);
    expect(res.body).toMatchObject({ model: 'tiny-rerank', usage: { total_tokens: tokens } });
    expect(res.body.id).toMatch(/^rerank-/);
  });

  it('keeps the best top_n, without documents when asked, at /rerank too; documents may be {"text": …}', async () => {
    const all = (await post('/rerank', { model: 'tiny-rerank', query: QUERY, documents: DOCUMENTS.map((text) => ({ text })) })).body.results as Ranked[];
    const top = (await post('/rerank', { model: 'tiny-rerank', query: QUERY, documents: DOCUMENTS, top_n: 2, return_documents: false })).body
      .results as Ranked[];
    expect(top).toEqual(all.slice(0, 2).map(({ index, relevance_score }) => ({ index, relevance_score })));
    // Cohere's v2 client's path, as vLLM serves it (it was a 404).
    const v2 = (await post('/v2/rerank', { model: 'tiny-rerank', query: QUERY, documents: DOCUMENTS, top_n: 2, return_documents: false })).body;
    expect(v2.results).toEqual(top);
  });
});

describe('scoring pairs (vLLM’s /v1/score)', () => {
  it('scores one text against many, and texts in pairs, in order', async () => {
    const many = await post('/v1/score', { model: 'tiny-rerank', text_1: QUERY, text_2: DOCUMENTS });
    expect(many.status).toBe(200);
    const scores = (many.body.data as { index: number; object: string; score: number }[]).map((d) => d.score);
    for (const [i, d] of DOCUMENTS.entries()) expect(scores[i]).toBeCloseTo(await expectedScore(QUERY, d), 5);
    const pairs = await post('/score', { model: 'tiny-rerank', text_1: ['a', 'b'], text_2: ['c', 'd'] });
    const paired = (pairs.body.data as { score: number }[]).map((d) => d.score);
    expect(paired[0]).toBeCloseTo(await expectedScore('a', 'c'), 5);
    expect(paired[1]).toBeCloseTo(await expectedScore('b', 'd'), 5);
  });
});

describe('classifying (vLLM’s /classify)', () => {
  it("gives each text its class probabilities and the likeliest class's label", async () => {
    const res = await post('/classify', { model: 'tiny-rerank', input: ['hello', 'a longer text to classify'] });
    expect(res.status).toBe(200);
    const data = res.body.data as { index: number; label: string; probs: number[]; num_classes: number }[];
    expect(data).toHaveLength(2);
    expect(data[0]).toMatchObject({ index: 0, label: 'relevant', num_classes: 1 });
    expect(data[0].probs[0]).toBeCloseTo(await sigmoidOf('hello'), 5);
    expect(data[1].probs[0]).toBeCloseTo(await sigmoidOf('a longer text to classify'), 5);
  });
});

describe('bad scoring requests: a precise 4xx, and the gateway serves on', () => {
  const cases: [string, string, object, number, RegExp][] = [
    [
      'an embedding model',
      '/v1/rerank',
      { model: 'tiny-embed', query: 'q', documents: ['d'] },
      404,
      /not a cross-encoder \(a one-class classifier\) \(these are: tiny-rerank\)/,
    ],
    ['no query', '/v1/rerank', { model: 'tiny-rerank', documents: ['d'] }, 400, /missing required parameter: query/],
    ['no documents', '/v1/rerank', { model: 'tiny-rerank', query: 'q', documents: [] }, 400, /documents/],
    ['a document that is a number', '/v1/rerank', { model: 'tiny-rerank', query: 'q', documents: [3] }, 400, /a document is a string or \{"text": string\}/],
    [
      'a pair past the context',
      '/v1/rerank',
      { model: 'tiny-rerank', query: 'q', documents: ['d', 'hi '.repeat(600)] },
      400,
      /documents\.1: this model's maximum context length is 512 tokens/,
    ],
    ['mismatched pairs', '/v1/score', { model: 'tiny-rerank', text_1: ['a', 'b'], text_2: ['c', 'd', 'e'] }, 400, /text_1 has 2 texts and text_2 3/],
    ['an unknown classifier', '/classify', { model: 'nope', input: 'x' }, 404, /`nope` does not exist or is not a sequence classifier/],
  ];
  it.each(cases)('%s', async (_, path, body, status, message) => {
    const res = await post(path, body);
    expect(res.status).toBe(status);
    expect((res.body.error as { message: string }).message).toMatch(message);
  });

  it('still answers after every refusal', async () => {
    expect((await post('/v1/score', { model: 'tiny-rerank', text_1: 'a', text_2: 'b' })).status).toBe(200);
  });
});

/** The classifier's probability for one text alone (its one class: the sigmoid of the logit). */
async function sigmoidOf(text: string): Promise<number> {
  const ids = encode(text);
  const out = await session.run({
    input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, ids.length]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(ids.length).fill(1n), [1, ids.length]),
  });
  return 1 / (1 + Math.exp(-(out.logits.data as Float32Array)[0]));
}
