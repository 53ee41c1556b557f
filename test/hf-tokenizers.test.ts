import * as ort from 'onnxruntime-node';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decode, loadTokenizer } from '../src/models/index.js';
import { MODELS, startTestGateway } from './helpers.js';
import { bertTokenizer, byteLevelTokenizer } from './tokenizers.js';

// Real models ship their tokenizer as tokenizer.json: models.<name>.tokenizer points at it, for encoders
// (tokens, pairs with the tokenizer's own template) and for generation (the replica masks formats with it).
let gw: Awaited<ReturnType<typeof startTestGateway>>;
let client: OpenAI;
const bert = bertTokenizer();

beforeAll(async () => {
  gw = await startTestGateway({
    models: {
      'bert-embed': { path: `${MODELS}tiny-embed.onnx`, device: 'cpu', tokenizer: bert, scaling: { min_containers: 1 } },
      'bert-rerank': { path: `${MODELS}tiny-rerank.onnx`, device: 'cpu', tokenizer: bert, scaling: { min_containers: 1 } },
      'bytes-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', tokenizer: byteLevelTokenizer(), scaling: { min_containers: 1 } },
    },
  });
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'not-needed', maxRetries: 0 });
}, 60_000);
afterAll(() => gw?.shutdown());

async function run(model: string, ids: number[], output: string): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(`${MODELS}${model}`);
  const out = await session.run({
    input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, ids.length]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(ids.length).fill(1n), [1, ids.length]),
  });
  return out[output].data as Float32Array;
}

async function post(path: string, body: object) {
  const res = await fetch(`${gw.url}${path}`, { method: 'POST', body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('a model with its own tokenizer.json', () => {
  it("embeds the text as BERT's tokenizer splits it: [CLS] i like straw ##berries [SEP]", async () => {
    const ids = [101, 1045, 2066, 13137, 20968, 102];
    expect((await post('/tokenize', { model: 'bert-embed', prompt: 'I like strawberries' })).body).toMatchObject({ tokens: ids });
    // An empty text is refused whatever the tokenizer (BERT's made it [CLS] [SEP], and embedded it).
    expect(await post('/v1/embeddings', { model: 'bert-embed', input: ['a', ''] })).toMatchObject({ status: 400, body: { error: { param: 'input.1' } } });
    expect(await post('/classify', { model: 'bert-rerank', input: [''] })).toMatchObject({ status: 400 });
    // vLLM's add_special_tokens: false leaves [CLS] and [SEP] out.
    const bare = await post('/tokenize', { model: 'bert-embed', prompt: 'I like strawberries', add_special_tokens: false });
    expect(bare.body).toMatchObject({ count: 4, tokens: ids.slice(1, -1) });
    const hidden = await run('tiny-embed.onnx', ids, 'last_hidden_state');
    const mean = Array.from({ length: 32 }, (_, i) => ids.reduce((s, _, t) => s + hidden[t * 32 + i], 0) / ids.length);
    const norm = Math.hypot(...mean);
    const res = await client.embeddings.create({ model: 'bert-embed', input: 'I like strawberries' });
    expect(res.usage.prompt_tokens).toBe(6);
    for (const [i, x] of res.data[0].embedding.entries()) expect(x).toBeCloseTo(mean[i] / norm, 5);
  });

  it('scores a pair as BERT pairs texts: [CLS] query [SEP] document [SEP]', async () => {
    const ids = [101, 2054, 2515, 1037, 4419, 4521, 102, 1045, 2066, 13137, 20968, 102];
    const logit = (await run('tiny-rerank.onnx', ids, 'logits'))[0];
    const res = await post('/v1/score', { model: 'bert-rerank', text_1: 'what does a fox eat', text_2: 'I like strawberries' });
    expect((res.body.data as { score: number }[])[0].score).toBeCloseTo(1 / (1 + Math.exp(-logit)), 5);
    expect(res.body.usage).toMatchObject({ prompt_tokens: 12 });
  });

  it('cuts a pair that is too long from the end of its document, keeping the query and the template (truncate_prompt_tokens)', async () => {
    // [CLS] what does a fox eat [SEP] i like [SEP]: the document's "straw ##berries" dropped.
    const ids = [101, 2054, 2515, 1037, 4419, 4521, 102, 1045, 2066, 102];
    const logit = (await run('tiny-rerank.onnx', ids, 'logits'))[0];
    const body = { model: 'bert-rerank', query: 'what does a fox eat', documents: ['I like strawberries'], truncate_prompt_tokens: 10 };
    const res = await post('/v1/rerank', body);
    expect((res.body.results as { relevance_score: number }[])[0].relevance_score).toBeCloseTo(1 / (1 + Math.exp(-logit)), 5);
    expect(res.body.usage).toMatchObject({ total_tokens: 10 });
    const score = await post('/v1/score', { model: 'bert-rerank', text_1: 'what does a fox eat', text_2: 'I like strawberries', truncate_prompt_tokens: 10 });
    expect((score.body.data as { score: number }[])[0].score).toBeCloseTo(1 / (1 + Math.exp(-logit)), 5);
    const tight = await post('/v1/rerank', { ...body, truncate_prompt_tokens: 8 });
    expect([tight.status, (tight.body.error as { message: string }).message]).toEqual([
      400,
      "documents.0: truncate_prompt_tokens: 8 leaves no room for the document beside the query and the template's 8 tokens",
    ]);
  });

  it('generates with a byte-level BPE: the text is its tokens’ bytes, and a JSON format is enforced with its vocabulary', async () => {
    const res = await client.completions.create({ model: 'bytes-gpt', prompt: 'Once upon a time', max_tokens: 24, seed: 3, logprobs: 1 });
    expect(res.usage?.prompt_tokens).toBe((await post('/tokenize', { model: 'bytes-gpt', prompt: 'Once upon a time' })).body.count);
    expect(res.usage?.completion_tokens).toBeGreaterThan(0);
    expect(res.choices[0].logprobs?.tokens?.join('')).toBe(res.choices[0].text);
    const chat = await client.chat.completions.create({
      model: 'bytes-gpt',
      messages: [{ role: 'user', content: 'A JSON object, please' }],
      response_format: { type: 'json_object' },
      max_tokens: 400,
      seed: 1,
    });
    const text = chat.choices[0].message.content ?? '';
    expect(chat.choices[0].finish_reason).toBe('stop');
    expect(typeof JSON.parse(text)).toBe('object');
  });

  it("lays a chat out with the tokenizer's chat template (ChatML here), its special tokens as single tokens", async () => {
    const tokenizer = await loadTokenizer(byteLevelTokenizer());
    const messages = [
      { role: 'system' as const, content: 'Be brief.' },
      { role: 'user' as const, content: 'Hi' },
    ];
    const expected = '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n';
    const counted = await post('/tokenize', { model: 'bytes-gpt', messages });
    expect(counted.body.tokens).toEqual(tokenizer.encode(expected, { special: false }));
    expect((counted.body.tokens as number[])[0]).toBe(261); // <|im_start|>, one token
    const chat = await client.chat.completions.create({ model: 'bytes-gpt', messages, max_tokens: 4, seed: 1 });
    expect(chat.usage?.prompt_tokens).toBe(counted.body.count);
    // Tools go to the template, which lists them.
    const tools = [{ type: 'function' as const, function: { name: 'f', parameters: { type: 'object' } } }];
    const withTools = await post('/tokenize', { model: 'bytes-gpt', messages, tools });
    expect(decode(tokenizer, withTools.body.tokens as number[])).toContain('Tools: [{"type": "function", "function": {"name": "f"');
    // The assistant's turn not opened, or its final message left open (a prefill), as transformers renders them.
    const closed = await post('/tokenize', { model: 'bytes-gpt', messages, add_generation_prompt: false });
    expect(closed.body.tokens).toEqual(tokenizer.encode('<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n', { special: false }));
    const noThinking = await post('/tokenize', { model: 'bytes-gpt', messages, chat_template_kwargs: { enable_thinking: false } });
    expect(noThinking.body.tokens).toEqual(tokenizer.encode(`${expected}<think>\n\n</think>\n\n`, { special: false }));
    // An earlier turn's thinking (vLLM's reasoning_content, or reasoning) goes to the template, which keeps it here.
    const turns = [...messages, { role: 'assistant', content: 'Yes', reasoning_content: 'hmm' }, { role: 'user', content: 'More' }];
    const kept = await post('/tokenize', { model: 'bytes-gpt', messages: turns });
    expect(decode(tokenizer, kept.body.tokens as number[])).toContain('assistant\n<think>hmm</think>Yes');
    const aliased = await post('/tokenize', {
      model: 'bytes-gpt',
      messages: [turns[0], turns[1], { role: 'assistant', content: 'Yes', reasoning: 'hmm' }, turns[3]],
    });
    expect(aliased.body.tokens).toEqual(kept.body.tokens);
    // Anthropic's thinking blocks sent back and the Responses API's reasoning items are that thinking too.
    const anthropicCount = async (content: object[]) =>
      (
        await post('/v1/messages/count_tokens', {
          model: 'bytes-gpt',
          messages: [
            { role: 'user', content: 'Hi' },
            { role: 'assistant', content },
            { role: 'user', content: 'More' },
          ],
        })
      ).body.input_tokens as number;
    const withThinking = await anthropicCount([
      { type: 'thinking', thinking: 'hmm', signature: '' },
      { type: 'text', text: 'Yes' },
    ]);
    expect(withThinking - (await anthropicCount([{ type: 'text', text: 'Yes' }]))).toBe(tokenizer.encode('<think>hmm</think>', { special: false }).length);
    const responded = async (extra: object[]) => {
      const input = [{ role: 'user', content: 'Hi' }, ...extra, { role: 'assistant', content: 'Yes' }, { role: 'user', content: 'More' }];
      const { body } = await post('/v1/responses', { model: 'bytes-gpt', max_output_tokens: 1, input });
      return (body.usage as { input_tokens: number }).input_tokens;
    };
    const reasoningItem = { type: 'reasoning', id: 'rs_1', summary: [], content: [{ type: 'reasoning_text', text: 'hmm' }] };
    expect((await responded([reasoningItem])) - (await responded([]))).toBe(tokenizer.encode('<think>hmm</think>', { special: false }).length);
    // OpenAI's reasoning_effort is the template's variable of that name (gpt-oss's "Reasoning: high").
    const effort = await post('/tokenize', { model: 'bytes-gpt', messages, reasoning_effort: 'high' });
    expect(effort.body.tokens).toEqual(tokenizer.encode(`<|im_start|>system\nReasoning: high<|im_end|>\n${expected}`, { special: false }));
    // "none" is also Qwen3's switch (enable_thinking: false: an empty thought in the prompt), unless the request sets it.
    const none = await post('/tokenize', { model: 'bytes-gpt', messages, reasoning_effort: 'none' });
    expect(none.body.tokens).toEqual(tokenizer.encode(`<|im_start|>system\nReasoning: none<|im_end|>\n${expected}<think>\n\n</think>\n\n`, { special: false }));
    const overridden = await post('/tokenize', { model: 'bytes-gpt', messages, reasoning_effort: 'none', chat_template_kwargs: { enable_thinking: true } });
    expect(overridden.body.tokens).toEqual(tokenizer.encode(`<|im_start|>system\nReasoning: none<|im_end|>\n${expected}`, { special: false }));
    const prefill = [...messages, { role: 'assistant', content: 'Well' }];
    const open = await post('/tokenize', { model: 'bytes-gpt', messages: prefill, continue_final_message: true, add_generation_prompt: false });
    expect(open.body.tokens).toEqual(
      tokenizer.encode('<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nWell', { special: false }),
    );
  });

  it("answers 400 with the template's own words when it refuses a conversation", async () => {
    const res = await post('/v1/chat/completions', {
      model: 'bytes-gpt',
      messages: [
        { role: 'user', content: 'Hi' },
        { role: 'system', content: 'late' },
      ],
    });
    expect(res.status).toBe(400);
    expect((res.body.error as { message: string }).message).toBe("the model's chat template refused the conversation: a system message must come first");
  });

  it('refuses to start when a tokenizer cannot be loaded, naming the option', async () => {
    await expect(
      startTestGateway({ models: { m: { path: `${MODELS}tiny-embed.onnx`, device: 'cpu', tokenizer: '/nonexistent/tokenizer.json' } } }),
    ).rejects.toThrow(/models\.m\.tokenizer: cannot load a Hugging Face tokenizer from \/nonexistent\/tokenizer\.json/);
  });
});
