import type { Context } from 'hono';
import { z } from 'zod';
import { badInput, GatewayError } from '../../errors/index.js';
import type { Tokenizer } from '../../models/index.js';
import { clientSignal, readBody, readJson, releaseBody } from '../body.js';
import { withAdapter } from '../lora.js';
import { Generation, type LoggedToken, originOf } from '../openai/generation.js';
import { vllmLogprobs } from '../openai/logprobs.js';
import { tokenStream } from '../openai/token-stream.js';
import type { GatewayEnv, ServedModel } from '../types.js';
import { bytesElements } from './classification.js';
import { splitInferBody } from './request.js';
import { inferBody } from './response.js';
import { OUTPUTS, type OutputName, parseTextRequest, type TextRequest } from './text-tensors.js';

// Triton's generate extension (POST v2/models/{m}/generate and generate_stream): a text-in, text-out
// schema for LLMs, what genai-perf's `--endpoint-type generate` and Triton's vLLM / TensorRT-LLM users
// send. Settings come as top-level fields (the TensorRT-LLM ensemble's inputs) or in `parameters`; as
// Triton's vLLM backend answers, `text_output` starts with the prompt unless `exclude_input_in_output`.

const settings = z.object({
  max_tokens: z.number().int().min(1).optional(),
  temperature: z.number().min(0).max(2).optional(),
  top_p: z.number().gt(0).max(1).optional(),
  top_k: z.number().int().min(-1).optional(), // (vLLM's -1: every token)
  seed: z.number().int().optional(),
  /** TensorRT-LLM's name for the seed. */
  random_seed: z.number().int().optional(),
  stop: z.union([z.string().min(1), z.array(z.string()).max(4)]).optional(),
  /** TensorRT-LLM's name for stop sequences ("" entries: none). */
  stop_words: z.array(z.string()).optional(),
  exclude_input_in_output: z.boolean().optional(),
  ignore_eos: z.boolean().optional(),
  min_tokens: z.number().int().min(0).optional(),
  /** TensorRT-LLM's name for min_tokens. */
  min_length: z.number().int().min(0).optional(),
  frequency_penalty: z.number().min(-2).max(2).optional(),
  presence_penalty: z.number().min(-2).max(2).optional(),
  repetition_penalty: z.number().gt(0).max(10).optional(),
  min_p: z.number().min(0).max(1).optional(),
  /** Which URL was called decides; the field is accepted as clients send it. */
  stream: z.boolean().optional(),
  /** TensorRT-LLM's guided decoding: json (any object), json_schema, regex, ebnf_grammar (GBNF). */
  guided_decoding_guide_type: z.enum(['json', 'json_schema', 'regex', 'ebnf_grammar']).optional(),
  guided_decoding_guide: z.string().optional(),
  /** vLLM's backend's additional outputs: why the text ended, the tokens' log-probabilities, the tokens in and out. */
  return_finish_reason: z.boolean().optional(),
  return_cumulative_logprob: z.boolean().optional(),
  return_logprobs: z.boolean().optional(),
  return_num_input_tokens: z.boolean().optional(),
  return_num_output_tokens: z.boolean().optional(),
  /** vLLM's: how many of the most likely tokens `logprobs` lists beside each drawn one (default 0: the drawn one). */
  logprobs: z.number().int().min(0).max(20).optional(),
  /** vLLM's backend's LoRA adapter: one of the model's (config lora_adapters), by name. */
  lora_name: z.string().optional(),
  /** TensorRT-LLM's beam search: refused above 1 (not passed over: the answer would not be a search's). */
  beam_width: z.number().int().min(1).optional(),
});

/** The additional outputs a request asked for (vLLM's backend's `return_*` inputs). */
type Returns = { finishReason: boolean; cumulativeLogprob: boolean; logprobs: boolean; inputTokens: boolean; outputTokens: boolean };

/**
 * The log-probability outputs of a generation's tokens, as vLLM's backend sends them: `logprobs` (a JSON
 * string) for the tokens given, `cumulative_logprob` summed over every token so far.
 */
function scoring(returns: Returns, tokenizer: Tokenizer) {
  let sum = 0;
  return (logged: LoggedToken[]) => {
    for (const t of logged) sum += t.logprob ?? 0;
    return {
      ...(returns.cumulativeLogprob && { cumulative_logprob: sum }),
      ...(returns.logprobs && { logprobs: JSON.stringify(vllmLogprobs(tokenizer, logged)) }),
    };
  };
}

const request = z.looseObject({
  id: z.string().optional(),
  text_input: z.string({ error: 'text_input (a string) is required' }),
  parameters: z.record(z.string(), z.unknown()).optional(),
});

/** The generate extension's request body, its settings at the top level, for the OpenAPI document. */
export const tritonGenerateSchema = request.extend(settings.shape);

/** POST /v2/models/{m}/generate (`stream`: generate_stream, Server-Sent Events). */
export async function generate(c: Context<GatewayEnv>, m: ServedModel, maxBodyBytes: number, stream: boolean): Promise<Response> {
  c.set('model', m.name);
  const { id, generation, returns, scores, model } = startGeneration(c, m, await readJson(c, maxBodyBytes));
  const answer = (text: string) => ({ ...(id !== undefined && { id }), model_name: model, model_version: '1', text_output: text });
  const asked = Object.values(returns).some(Boolean);

  if (!stream) {
    const { text, logged, result } = await generation.whole();
    return c.json({
      ...answer(text),
      ...(returns.finishReason && { finish_reason: result.finishReason }),
      ...scores(logged),
      ...(returns.inputTokens && { num_input_tokens: generation.promptTokens }),
      ...(returns.outputTokens && { num_output_tokens: result.completionTokens }),
    });
  }
  return tokenStream(c, generation.started, async (sse) => {
    // As vLLM's backend streams them: each piece with the tokens drawn since the last; why it ended, once it has.
    let counted = 0;
    const event = (text: string, tokens: number, logged: LoggedToken[], finishReason?: string) => {
      counted += tokens;
      return JSON.stringify({
        ...answer(text),
        ...(finishReason && { finish_reason: finishReason }),
        ...scores(logged),
        ...(returns.inputTokens && { num_input_tokens: generation.promptTokens }),
        ...(returns.outputTokens && { num_output_tokens: tokens }),
      });
    };
    try {
      for await (const piece of generation) await sse.writeSSE({ data: event(piece.text, generation.produced - counted, piece.logged) });
      const result = await generation.result;
      const rest = generation.takeLogprobs();
      if (asked) await sse.writeSSE({ data: event('', result.completionTokens - counted, rest, returns.finishReason ? result.finishReason : undefined) });
    } catch (err) {
      if (sse.aborted) return;
      await sse.writeSSE({ data: JSON.stringify({ error: err instanceof GatewayError ? err.message : `internal error: ${(err as Error).message}` }) });
    }
  });
}

/**
 * A generate request's fields (the JSON body: `text_input`, settings at the top or in `parameters`) checked
 * and started as a generation (400 for a bad setting), with the request's `id` and the model that answers (a LoRA
 * adapter named by `lora_name`: its name, in the answer, the request log and metrics, as the other routes' adapters).
 */
export function startGeneration(
  c: Context<GatewayEnv>,
  m: ServedModel,
  body: unknown,
): { id?: string; generation: Generation; returns: Returns; scores: ReturnType<typeof scoring>; model: string } {
  const parsed = request.safeParse(body);
  if (!parsed.success) throw badInput(parsed.error.issues[0].message, parsed.error.issues[0].path.join('.'));
  const { id, text_input, parameters, ...inputs } = parsed.data as z.infer<typeof request> & Record<string, unknown>;
  // Unknown settings are passed over (clients send their backend's many); known ones are checked.
  const given = settings.safeParse({ ...pick(inputs), ...pick(parameters ?? {}) });
  if (!given.success) {
    const issue = given.error.issues[0];
    throw badInput(`${issue.path.join('.')}: ${issue.message}`, issue.path.join('.'));
  }
  const s = given.data;
  if ((s.beam_width ?? 1) > 1)
    throw badInput('beam_width above 1 is not served here: beam search is on POST /v1/completions and /v1/chat/completions (use_beam_search)', 'beam_width');
  if (!m.generation) throw badInput(`model ${m.name} is not generative: send tensors to /v2/models/${m.name}/infer`);
  m = withAdapter(m, s.lora_name, 'lora_name');
  c.set('model', m.name);
  const gen = m.generation as NonNullable<ServedModel['generation']>;
  const guide = (): { guided_json?: string; response_format?: { type: 'json_object' }; guided_regex?: string; guided_grammar?: string } => {
    const type = s.guided_decoding_guide_type;
    if (type === undefined) return {};
    if (type === 'json') return { response_format: { type: 'json_object' } };
    const text = s.guided_decoding_guide;
    if (!text) throw badInput(`guided_decoding_guide is required with guided_decoding_guide_type ${type}`, 'guided_decoding_guide');
    return type === 'regex' ? { guided_regex: text } : type === 'ebnf_grammar' ? { guided_grammar: text } : { guided_json: text };
  };
  const returns = {
    finishReason: s.return_finish_reason ?? false,
    cumulativeLogprob: s.return_cumulative_logprob ?? false,
    logprobs: s.return_logprobs ?? false,
    inputTokens: s.return_num_input_tokens ?? false,
    outputTokens: s.return_num_output_tokens ?? false,
  };
  const scored = returns.logprobs || returns.cumulativeLogprob;
  const prompt = gen.tokenizer.encode(text_input);
  const stops = [...(typeof s.stop === 'string' ? [s.stop] : (s.stop ?? [])), ...(s.stop_words ?? [])].filter((x) => x.length > 0);
  if (stops.length > 4) throw badInput(`at most 4 stop sequences (${stops.length} given)`, 'stop');
  const generation = new Generation(
    m,
    {
      max_tokens: s.max_tokens,
      temperature: s.temperature,
      top_p: s.top_p,
      top_k: s.top_k,
      seed: s.seed ?? s.random_seed,
      stop: stops,
      ignore_eos: s.ignore_eos,
      min_tokens: s.min_tokens ?? s.min_length,
      frequency_penalty: s.frequency_penalty,
      presence_penalty: s.presence_penalty,
      repetition_penalty: s.repetition_penalty,
      min_p: s.min_p,
      echo: !(s.exclude_input_in_output ?? false),
      // The generated tokens only, as vLLM's backend scores them (not an echoed prompt's)
      ...(scored && { logprobs: s.logprobs ?? 0, echoLogprobs: false }),
      ...guide(),
    },
    prompt,
    s.max_tokens ?? 16,
    clientSignal(c),
    originOf(c),
  );
  return { id, generation, returns, scores: scoring(returns, gen.tokenizer), model: m.name };
}

/** The known settings among some fields (a setting may come as a top-level input or a parameter). */
function pick(fields: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(fields).filter(([k]) => k in settings.shape));
}

/** POST …/infer for a generative model: the whole text in one response (a stream is the generate_stream's or gRPC's). */
export async function inferText(c: Context<GatewayEnv>, m: ServedModel, maxBodyBytes: number): Promise<Response> {
  const body = await readBody(c, maxBodyBytes);
  let request: TextRequest;
  try {
    const { json, binary } = splitInferBody(body, c.req.header('inference-header-content-length'));
    request = parseTextRequest(json, binary);
  } finally {
    releaseBody(body); // (the values were copied out)
  }
  if (request.stream) throw badInput(`stream: true needs a streaming call: POST /v2/models/${m.name}/generate_stream, or gRPC's ModelStreamInfer`, 'stream');
  const { generation, scores, model } = startGeneration(c, m, request.fields);
  const { text, logged, result } = await generation.whole();
  c.set('queueMs', result.queueMs);
  const scored = scores(logged);
  const answers: Record<OutputName, { shape: number[]; data: string[] | number[] }> = {
    text_output: { shape: request.shape, data: [text] },
    finish_reason: { shape: [1], data: [result.finishReason] },
    cumulative_logprob: { shape: [1], data: [scored.cumulative_logprob ?? 0] },
    logprobs: { shape: [1], data: [scored.logprobs ?? ''] },
    num_input_tokens: { shape: [1], data: [generation.promptTokens] },
    num_output_tokens: { shape: [1], data: [result.completionTokens] },
  };
  const binaries: Uint8Array[] = [];
  const outputs = request.outputs.map(({ name, binary }) => {
    const { shape, data } = answers[name];
    const datatype = OUTPUTS[name].datatype;
    if (!binary) return { name, datatype, shape, data };
    const bytes =
      datatype === 'BYTES' ? bytesElements(data as string[]) : new Uint8Array((datatype === 'FP32' ? Float32Array : Uint32Array).from(data as number[]).buffer);
    binaries.push(bytes);
    return { name, datatype, shape, parameters: { binary_data_size: bytes.byteLength } };
  });
  const response = inferBody({ name: model, version: '1' }, request.id, outputs, binaries);
  return c.body(response.body as string, 200, response.headers);
}
