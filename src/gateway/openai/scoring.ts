import { randomBytes } from 'node:crypto';
import type { Context } from 'hono';
import { z } from 'zod';
import { badInput } from '../../errors/index.js';
import { embeddingInputs } from '../../models/index.js';
import { float16ToNumber, type Inputs } from '../../tensor/index.js';
import type { GatewayEnv, ServedModel } from '../types.js';
import { askerOf, checkedTokens, MAX_INPUTS, runEach, textTokens, truncateField } from './encoder.js';

// Sequence classifiers, as vLLM and Text Embeddings Inference serve them: a cross-encoder (one class: how well a
// document answers a query) reranks documents and scores text pairs; a classifier of several classes labels texts.

const model = z.string({ error: 'you must provide a model parameter' }).min(1);
const texts = z.union([z.string(), z.array(z.string()).min(1).max(MAX_INPUTS)], { error: `expected a string or a list of at most ${MAX_INPUTS} strings` });

/** Jina's rerank API (vLLM's /rerank and /v1/rerank). */
export const rerankSchema = z.object({
  model,
  query: z.string(),
  documents: z
    .array(z.union([z.string(), z.object({ text: z.string() }).transform((d) => d.text)], { error: 'a document is a string or {"text": string}' }))
    .min(1)
    .max(MAX_INPUTS),
  /** Only the best N. @default all */
  top_n: z.number().int().min(1).nullish(),
  /** Each result carries its document's text. @default true */
  return_documents: z.boolean().nullish(),
  truncate_prompt_tokens: truncateField,
});

/** vLLM's score API: text_1 against text_2, one to one, one to many, or pairwise. */
export const scoreSchema = z.object({ model, text_1: texts, text_2: texts, truncate_prompt_tokens: truncateField });

/** vLLM's classify API. */
export const classifySchema = z.object({ model, input: texts, truncate_prompt_tokens: truncateField });

const id = (kind: string) => `${kind}-${randomBytes(12).toString('hex')}`;
const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

/** POST /v1/rerank: the documents by relevance to the query, best first. */
export async function rerank(c: Context<GatewayEnv>, m: ServedModel, req: z.infer<typeof rerankSchema>): Promise<Response> {
  const pairs = req.documents.map((d, i) => pairTokens(m, req.query, d, `documents.${i}`, req.truncate_prompt_tokens));
  const scores = await scorePairs(c, m, pairs);
  const ranked = scores.map((score, index) => ({ index, score })).sort((a, b) => b.score - a.score);
  return c.json({
    id: id('rerank'),
    model: m.name,
    usage: { total_tokens: tokenCount(pairs) },
    results: ranked.slice(0, req.top_n ?? ranked.length).map(({ index, score }) => ({
      index,
      ...(req.return_documents === false ? {} : { document: { text: req.documents[index] } }),
      relevance_score: score,
    })),
  });
}

/** POST /v1/score: a relevance score per pair, in order. */
export async function score(c: Context<GatewayEnv>, m: ServedModel, req: z.infer<typeof scoreSchema>): Promise<Response> {
  const first = typeof req.text_1 === 'string' ? [req.text_1] : req.text_1;
  const second = typeof req.text_2 === 'string' ? [req.text_2] : req.text_2;
  if (first.length !== 1 && first.length !== second.length)
    throw badInput(
      `text_1 has ${first.length} texts and text_2 ${second.length}: give one text_1 (scored against every text_2) or as many as text_2 (scored in pairs)`,
      'text_1',
      'invalid_request_error',
    );
  const pairs = second.map((t, i) => pairTokens(m, first.length === 1 ? first[0] : first[i], t, `text_2.${i}`, req.truncate_prompt_tokens));
  const scores = await scorePairs(c, m, pairs);
  const tokens = tokenCount(pairs);
  return c.json({
    id: id('score'),
    object: 'list',
    created: Math.floor(Date.now() / 1000),
    model: m.name,
    data: scores.map((s, index) => ({ index, object: 'score', score: s })),
    usage: { prompt_tokens: tokens, total_tokens: tokens, completion_tokens: 0 },
  });
}

/** POST /classify: each text's class probabilities (softmax; one class: its sigmoid) and the likeliest label. */
export async function classify(c: Context<GatewayEnv>, m: ServedModel, req: z.infer<typeof classifySchema>): Promise<Response> {
  const cl = m.classifier as NonNullable<ServedModel['classifier']>;
  const list = typeof req.input === 'string' ? [req.input] : req.input;
  const tokens = list.map((t, i) => {
    const param = typeof req.input === 'string' ? 'input' : `input.${i}`;
    return checkedTokens(cl, textTokens(cl, t, req.truncate_prompt_tokens, param), param);
  });
  const probs = await runEach(
    askerOf(c, m),
    m,
    tokens.map((t) => embeddingInputs(cl.spec, t)),
    (outputs) => probabilities(logitsOf(outputs, cl.spec.output, cl.spec.classes)),
  );
  const total = tokens.reduce((n, t) => n + t.length, 0);
  return c.json({
    id: id('classify'),
    object: 'list',
    created: Math.floor(Date.now() / 1000),
    model: m.name,
    data: probs.map((p, index) => {
      const best = p.indexOf(Math.max(...p));
      return { index, label: m.labels?.[best] ?? String(best), probs: p, num_classes: p.length };
    }),
    usage: { prompt_tokens: total, total_tokens: total, completion_tokens: 0 },
  });
}

type Pair = { tokens: number[]; typeIds: number[] };

/**
 * A query and a document as one input, as the tokenizer pairs texts (BERT: [CLS] query [SEP] document [SEP],
 * segments 0 then 1); a tokenizer without a pair template (GPT-2's): the query, end-of-text, the document.
 * With `truncate` (vLLM's truncate_prompt_tokens; -1: the context), a pair too long loses the end of its document.
 */
function pairTokens(m: ServedModel, query: string, document: string, param: string, truncate?: number | null): Pair {
  const cl = m.classifier as NonNullable<ServedModel['classifier']>;
  const { tokenizer } = cl;
  let pair: { ids: number[]; typeIds: number[] };
  if (tokenizer.encodePair) pair = tokenizer.encodePair(query, document);
  else {
    const first = [...tokenizer.encode(query), tokenizer.eos];
    const ids = [...first, ...tokenizer.encode(document)];
    pair = { ids, typeIds: ids.map((_, i) => (i < first.length ? 0 : 1)) };
  }
  const k = truncate === -1 ? cl.context : truncate;
  if (k != null && pair.ids.length > k) pair = documentCut(pair, tokenizer.encode(document, { special: false }), k, param);
  return { tokens: checkedTokens(cl, pair.ids, param), typeIds: pair.typeIds };
}

/**
 * The pair in `k` tokens, its document's last tokens dropped (the query stays whole: transformers' only_second).
 * The document is where its own tokens last appear whole in the pair, whatever the template puts around it.
 */
function documentCut(pair: { ids: number[]; typeIds: number[] }, doc: number[], k: number, param: string) {
  const excess = pair.ids.length - k;
  let at = pair.ids.length - doc.length;
  while (at >= 0 && doc.some((t, j) => pair.ids[at + j] !== t)) at--;
  if (at < 0 || excess >= doc.length)
    throw badInput(
      `${param}: truncate_prompt_tokens: ${k} leaves no room for the document beside the query and the template's ${pair.ids.length - doc.length} tokens`,
      'truncate_prompt_tokens',
      'invalid_request_error',
    );
  const end = at + doc.length;
  const drop = (a: number[]) => [...a.slice(0, end - excess), ...a.slice(end)];
  return { ids: drop(pair.ids), typeIds: drop(pair.typeIds) };
}

/** Each pair's relevance: the sigmoid of the cross-encoder's logit, as sentence-transformers' CrossEncoder gives it. */
function scorePairs(c: Context<GatewayEnv>, m: ServedModel, pairs: Pair[]): Promise<number[]> {
  const cl = m.classifier as NonNullable<ServedModel['classifier']>;
  const inputs = pairs.map((p) => embeddingInputs(cl.spec, p.tokens, p.typeIds));
  return runEach(askerOf(c, m), m, inputs, (outputs) => sigmoid(logitsOf(outputs, cl.spec.output, 1)[0]));
}

/** The first `classes` values of a row's logits (FP16 arrives as its bits). */
function logitsOf(outputs: Inputs, name: string, classes: number): number[] {
  const t = outputs[name];
  const row = Array.from((t.data as Float32Array | Uint16Array).subarray(0, classes));
  return t.dtype === 'FP16' ? row.map(float16ToNumber) : row;
}

/** Class probabilities from logits: a softmax, or for one class its sigmoid (the probability of that class). */
export function probabilities(logits: number[]): number[] {
  if (logits.length === 1) return [sigmoid(logits[0])];
  const top = Math.max(...logits);
  const exp = logits.map((l) => Math.exp(l - top));
  const sum = exp.reduce((a, b) => a + b, 0);
  return exp.map((e) => e / sum);
}

const tokenCount = (pairs: Pair[]) => pairs.reduce((n, p) => n + p.tokens.length, 0);
