import { randomInt } from 'node:crypto';
import type { SpanContext } from '@opentelemetry/api';
import type { Context } from 'hono';
import type { GenerateResult, SamplingParams, TokenLogprobs } from '../../batcher/index.js';
import { badInput } from '../../errors/index.js';
import type { BeamParams } from '../../models/beam-search.js';
import { decode, FormatError, grammarFor, type JsonSchema, type ResponseFormat, TextStream } from '../../models/index.js';
import { ThinkingBudget, type ThinkingParams } from '../../models/thinking-budget.js';
import type { Caller } from '../auth/middleware.js';
import { clientSignal } from '../body.js';
import type { GatewayEnv, ServedModel } from '../types.js';
import { type ReasoningParser, thinkingParams } from './reasoning.js';

/** Text pieces a reader may leave unread before its sequence is paused (it keeps its slot, not the batch). */
const MAX_BUFFERED_PIECES = 64;

/**
 * The tokens a chat's answer may take when its request does not say: up to 256 after its prompt (as
 * `truncate_prompt_tokens` leaves it; an empty prompt is end-of-text, one token). No room at all is the prompt's
 * fault: a context_length_exceeded 400 naming it (`messages`; the Responses API's `input`).
 */
export function chatRoom(gen: Generative, prompt: number[], truncate?: number | null, promptParam = 'messages'): number {
  const length = Math.max(1, truncate ? Math.min(truncate, prompt.length) : prompt.length);
  const room = Math.min(256, gen.context - length);
  if (room < 1)
    throw badInput(
      `This model's maximum context length is ${gen.context} tokens. However, your ${promptParam} resulted in ${length} tokens, which leaves no room for an answer. Please reduce the length of the ${promptParam}.`,
      promptParam,
      'context_length_exceeded',
    );
  return room;
}

export type GenerationParams = {
  /** What the request calls max_tokens, for its errors (the Responses API's max_output_tokens). @default max_tokens */
  max_tokens_param?: string;
  max_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  seed?: number | null;
  stop?: string | string[] | null;
  frequency_penalty?: number | null;
  presence_penalty?: number | null;
  logit_bias?: Record<string, number> | null;
  /**
   * OpenAI's service tier: `flex` runs below the caller's other requests (preemptible by them: slower, never
   * refused for it); `auto`, `default` and `priority` run at the caller's own priority (a body cannot raise it).
   */
  service_tier?: 'auto' | 'default' | 'flex' | 'priority' | null;
  /** OpenAI's Predicted Outputs (chat): the text the answer is expected to be, mostly. */
  prediction?: { type: 'content'; content: string | { type: 'text'; text: string }[] } | null;
  /** vLLM's (and Hugging Face's) repetition penalty, > 0 (1: off); min_p, 0..1 (0: off). */
  repetition_penalty?: number | null;
  min_p?: number | null;
  /** Completions: how many alternatives (0-5); chat: whether at all, `top_logprobs` saying how many. */
  logprobs?: number | boolean | null;
  top_logprobs?: number | null;
  /** Completions: the prompt comes back before the completion (with its log-probabilities, if asked). */
  echo?: boolean | null;
  ignore_eos?: boolean | null;
  min_tokens?: number | null;
  stop_token_ids?: number[] | null;
  /** vLLM's: the stop string that ended the text kept; only these tokens drawn; only the prompt's last N tokens kept. */
  include_stop_str_in_output?: boolean | null;
  allowed_token_ids?: number[] | null;
  truncate_prompt_tokens?: number | null;
  /** vLLM's: words never generated. */
  bad_words?: string[] | null;
  /** vLLM's: cached prefixes shared only with prompts of the same salt. */
  cache_salt?: string | null;
  /** vLLM's: the prompt's tokens scored, with this many alternatives (`promptLogged`). */
  prompt_logprobs?: number | null;
  response_format?: { type: 'text' | 'json_object' } | { type: 'json_schema'; json_schema: { schema?: JsonSchema } } | null;
  guided_json?: JsonSchema | string | null;
  guided_choice?: string[] | null;
  guided_regex?: string | null;
  guided_grammar?: string | null;
  structured_outputs?: {
    json?: JsonSchema | string | null;
    json_object?: boolean | null;
    choice?: string[] | null;
    regex?: string | null;
    grammar?: string | null;
  } | null;
  /** A format the gateway itself asks for (tool calls, checked there); it takes the place of response_format. */
  format?: ResponseFormat;
  /** With echo and logprobs: the prompt's tokens scored too (default; Triton's vLLM outputs score the generated ones only). */
  echoLogprobs?: boolean;
  /** Every generated token's log-probability kept for `meanLogprob` (best_of ranks by it), whether or not the answer shows them. */
  scoreTokens?: boolean;
  /** vLLM's beam search of `beamWidth` beams: the texts come all at once, in the result's `beams`. */
  use_beam_search?: boolean | null;
  /** Beam search's score: log-probability / length ** length_penalty (Hugging Face's and vLLM's, default 1). */
  length_penalty?: number | null;
  early_stopping?: boolean | 'never' | null;
  beamWidth?: number;
  /** vLLM's: a reasoning model's thinking is ended after this many tokens (the end tag written for it), so it answers. */
  thinking_token_budget?: number | null;
  /** OpenAI's (chat): "none" is a budget of 0 where none is given; any other needs a reasoning model too. */
  reasoning_effort?: string | null;
  /** A chat's: the parser its answer's thinking is read with (the model's reasoning_parser), which a budget counts by. */
  reasoningParser?: ReasoningParser;
};

/**
 * A token with its log-probabilities; an echoed prompt's first token has none (null), as OpenAI shows it.
 * Chat never echoes, so its tokens always have them.
 */
export type LoggedToken = { token: number; logprob: number | null; rank: number | null; top: TokenLogprobs['top'] | null };

/** Text as it may be shown, and the tokens (with log-probabilities, if asked for) drawn since the last piece. */
export type Piece = { text: string; logged: LoggedToken[] };

type Generative = NonNullable<ServedModel['generation']>;

/** How far below its caller's priority a `service_tier: "flex"` request runs (Batch API lines run further below still). */
export const FLEX_PRIORITY_DROP = 1000;

/** The tier a request ran at, as OpenAI's answers say it: flex, or the default (a priority tier is not granted). */
export const servedTier = (tier: GenerationParams['service_tier']) => (tier === 'flex' ? 'flex' : 'default');

/**
 * OpenAI's usage of generations from `promptTokens` of prompt; cached tokens as prompt_tokens_details; with a
 * prediction (Predicted Outputs), its tokens taken and the rest of them (as OpenAI: in the prediction, not in
 * the completion) as completion_tokens_details; a reasoning model's chats, their `reasoningTokens` there too.
 */
export function usage(promptTokens: number, done: GenerateResult[], predictionTokens = 0, reasoningTokens?: number) {
  const completion = done.reduce((sum, r) => sum + r.completionTokens, 0);
  const cached = done.reduce((sum, r) => sum + r.cachedTokens, 0);
  const predicted = done.some((r) => r.acceptedPredictionTokens !== undefined);
  const accepted = done.reduce((sum, r) => sum + (r.acceptedPredictionTokens ?? 0), 0);
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completion,
    total_tokens: promptTokens + completion,
    ...(cached > 0 && { prompt_tokens_details: { cached_tokens: cached } }),
    ...((predicted || reasoningTokens !== undefined) && {
      completion_tokens_details: {
        ...(reasoningTokens !== undefined && { reasoning_tokens: reasoningTokens }),
        ...(predicted && { accepted_prediction_tokens: accepted, rejected_prediction_tokens: Math.max(0, done.length * predictionTokens - accepted) }),
      },
    }),
  };
}

/** What the replica needs to draw a request's tokens, its parameters checked against the model (400s). */
function samplingFor(params: GenerationParams, gen: Generative, maxTokens: number): SamplingParams {
  const inVocabulary = (tokens: number[], param: string) => {
    const outside = tokens.find((token) => token >= gen.vocab);
    if (outside !== undefined) throw badInput(`${param}: token ${outside} is not in the model's vocabulary (${gen.vocab} tokens)`, param);
  };
  const logitBias = Object.entries(params.logit_bias ?? {}).map(([token, bias]): [number, number] => [Number(token), bias]);
  inVocabulary(
    logitBias.map(([token]) => token),
    'logit_bias',
  );
  const stopTokens = params.stop_token_ids ?? [];
  inVocabulary(stopTokens, 'stop_token_ids');
  const allowed = params.allowed_token_ids ?? undefined;
  if (allowed) inVocabulary(allowed, 'allowed_token_ids');
  const format = formatOf(params);
  // (two masks that may leave no token at all: a format says what may come next itself)
  if (allowed && format)
    throw badInput('allowed_token_ids cannot be used with a response format (or tools): the format masks tokens itself', 'allowed_token_ids');
  const minTokens = params.min_tokens ?? 0;
  if (minTokens > maxTokens) throw badInput(`min_tokens (${minTokens}) is more than max_tokens (${maxTokens})`, 'min_tokens');
  // Until min_tokens, neither end-of-text (unless ignored anyway) nor a stop token may be drawn.
  const ends = [...(params.ignore_eos ? [] : [gen.tokenizer.eos]), ...stopTokens];
  const asked = askedLogprobs(params);
  const logprobs = asked ?? (params.scoreTokens ? 0 : undefined);
  return {
    temperature: params.temperature ?? 1,
    topP: params.top_p ?? 1,
    topK: Math.max(0, params.top_k ?? 0),
    seed: params.seed ?? randomInt(2 ** 31),
    frequencyPenalty: params.frequency_penalty ?? 0,
    presencePenalty: params.presence_penalty ?? 0,
    repetitionPenalty: params.repetition_penalty ?? undefined,
    minP: params.min_p || undefined,
    logitBias: logitBias.length > 0 ? logitBias : undefined,
    allowedTokens: allowed,
    badWords: params.bad_words?.length ? badWordsOf(params.bad_words, gen.tokenizer) : undefined,
    logprobs,
    promptLogprobs: params.prompt_logprobs ?? (params.echo && params.echoLogprobs !== false ? asked : undefined),
    suppress: minTokens > 0 && ends.length > 0 ? { tokens: ends, until: minTokens } : undefined,
    format,
    prediction: predictionOf(params, gen),
    beam: params.use_beam_search ? beamOf(params, format, ends, gen) : undefined,
    thinking: thinkingOf(params, format, gen),
  };
}

/** What the replica follows of a reasoning model's chat: its thinking budget, and its tags where a format waits for the answer. */
function thinkingOf(params: GenerationParams, format: ResponseFormat | undefined, gen: Generative): ThinkingParams | undefined {
  const effort = params.reasoning_effort;
  // (no thinking on a model that does not think is what "none" asks: served)
  if (effort && effort !== 'none' && !gen.reasoningParser)
    throw badInput(`reasoning_effort ${effort} needs a reasoning model (one with a reasoning_parser)`, 'reasoning_effort');
  const budget = params.thinking_token_budget ?? (effort === 'none' && params.reasoningParser ? 0 : undefined);
  if (budget != null && !params.reasoningParser)
    throw badInput('thinking_token_budget needs a chat with a reasoning model (one with a reasoning_parser)', 'thinking_token_budget');
  // A format (a response format, tools) holds only the answer after the thinking: the replica follows the tags too.
  if (!params.reasoningParser || (budget == null && !format)) return undefined;
  return thinkingParams(params.reasoningParser, budget ?? undefined);
}

/**
 * A beam search's parameters, refusing what it cannot honour: it scores continuations by the model's
 * log-probabilities (at the request's temperature, after logit_bias), so nothing that draws or rewrites them
 * per sequence applies. Stop strings end hypotheses on the replica.
 */
function beamOf(params: GenerationParams, format: ResponseFormat | undefined, ends: number[], gen: Generative): BeamParams {
  // (its answer is texts at the end, not a stream of tokens: only the routes that answer so set the width)
  if (params.beamWidth === undefined) throw badInput('use_beam_search is served on POST /v1/completions and /v1/chat/completions only', 'use_beam_search');
  const refused = (
    [
      ['frequency_penalty', Boolean(params.frequency_penalty)],
      ['presence_penalty', Boolean(params.presence_penalty)],
      ['repetition_penalty', params.repetition_penalty != null && params.repetition_penalty !== 1],
      ['top_p', params.top_p != null && params.top_p < 1],
      ['top_k', (params.top_k ?? 0) > 0],
      ['min_p', Boolean(params.min_p)],
      ['echo', Boolean(params.echo)],
      ['prompt_logprobs', params.prompt_logprobs != null],
      ['bad_words', (params.bad_words?.length ?? 0) > 0],
      ['prediction', params.prediction != null],
      ['thinking_token_budget', params.thinking_token_budget != null],
      ['reasoning_effort', params.reasoning_effort === 'none' && gen.reasoningParser !== undefined], // (its budget of 0, as above)
      [params.format ? 'tools' : 'response_format', format !== undefined],
    ] as const
  ).find(([, given]) => given);
  if (refused) throw badInput(`${refused[0]} cannot be used with use_beam_search`, refused[0]);
  const stops = (typeof params.stop === 'string' ? [params.stop] : (params.stop ?? [])).filter((s) => s.length > 0);
  const logprobs = askedLogprobs(params);
  return {
    width: params.beamWidth,
    lengthPenalty: params.length_penalty ?? 1,
    ends,
    ...(stops.length > 0 && { stops }),
    ...(logprobs !== undefined && { logprobs }),
    ...(params.early_stopping != null && { earlyStopping: params.early_stopping }),
  };
}

/** vLLM's bad words as token sequences: each as its tokenizer spells it alone and after a space (once each). */
function badWordsOf(words: string[], tokenizer: Generative['tokenizer']): number[][] {
  const spelled = words.flatMap((w) => [w, w.startsWith(' ') ? w : ` ${w}`].map((text) => tokenizer.encode(text, { special: false })));
  return [...new Map(spelled.filter((t) => t.length > 0).map((t) => [t.join(','), t])).values()];
}

/** How many alternatives a request's log-probabilities are asked with (completions: a count; chat: a flag, top_logprobs saying how many); undefined: not asked. */
const askedLogprobs = (params: GenerationParams) =>
  typeof params.logprobs === 'number' ? params.logprobs : params.logprobs ? (params.top_logprobs ?? 0) : undefined;

/** A request's predicted output as tokens (its text parts joined), if it has one. */
function predictionOf(params: GenerationParams, gen: Generative): number[] | undefined {
  const content = params.prediction?.content;
  if (content === undefined) return undefined;
  const text = typeof content === 'string' ? content : content.map((part) => part.text).join('');
  return text.length > 0 ? gen.tokenizer.encode(text) : undefined;
}

/** A request's structured-output format, checked here (a schema the replica could not enforce is a 400). */
function formatOf(params: GenerationParams): ResponseFormat | undefined {
  const { response_format: f, structured_outputs: so } = params;
  const schema = (value: JsonSchema | string, param: string): ResponseFormat => {
    if (typeof value !== 'string') return { type: 'json_schema', schema: value };
    try {
      return { type: 'json_schema', schema: JSON.parse(value) };
    } catch {
      throw badInput(`${param}: not a JSON Schema (nor JSON)`, param);
    }
  };
  // Every way a request can ask for a format (OpenAI's, vLLM's two spellings, tools): at most one.
  const asked = [
    params.format && ['tools', params.format],
    f && f.type !== 'text' && ['response_format', f.type === 'json_schema' ? schema(f.json_schema.schema ?? true, 'response_format') : { type: 'json_object' }],
    params.guided_json != null && ['guided_json', schema(params.guided_json, 'guided_json')],
    params.guided_choice && ['guided_choice', { type: 'choice', choices: params.guided_choice }],
    so?.json != null && ['structured_outputs', schema(so.json, 'structured_outputs.json')],
    so?.json_object && ['structured_outputs', { type: 'json_object' }],
    so?.choice && ['structured_outputs', { type: 'choice', choices: so.choice }],
    params.guided_regex && ['guided_regex', { type: 'regex', pattern: params.guided_regex }],
    so?.regex && ['structured_outputs', { type: 'regex', pattern: so.regex }],
    params.guided_grammar && ['guided_grammar', { type: 'grammar', grammar: params.guided_grammar }],
    so?.grammar && ['structured_outputs', { type: 'grammar', grammar: so.grammar }],
  ].filter((x): x is [string, ResponseFormat] => Boolean(x));
  if (asked.length === 0) return undefined;
  const [param, format] = asked[0];
  if (asked.length > 1) throw badInput(`${asked.map(([p]) => p).join(' and ')}: only one format may be asked for`, asked[1][0]);
  // After a whole document only end-of-text may come: going on past it would only fill max_tokens with nothing.
  if (params.ignore_eos) throw badInput(`ignore_eos cannot be used with ${param}`, 'ignore_eos');
  if (param === 'tools') return format; // checked with the tools
  try {
    grammarFor(format); // compiled once for the n choices, and for the requests after that ask for the same format
  } catch (e) {
    if (!(e instanceof FormatError)) throw e;
    throw badInput(`${param === 'response_format' ? 'response_format.json_schema' : param}.${e.message}`, param);
  }
  return format;
}

/** Where a generation comes from: its caller (priority, limits), and its request's span (the parent of the generation's). */
export type Origin = { caller?: Caller; trace?: SpanContext };

/** A request's origin. */
export const originOf = (c: Context<GatewayEnv>): Origin => ({ caller: c.get('caller'), trace: c.get('span')?.spanContext() });

/**
 * A request's generations (its choices, best_of candidates, beam searches), which stand or fall together: one that
 * cannot start (a tokens-a-minute limit refusing a later one) or fails stops the others, as the client going away
 * stops them all.
 */
export class Together {
  private readonly failed = new AbortController();
  readonly signal: AbortSignal;

  constructor(c: Context) {
    this.signal = AbortSignal.any([clientSignal(c), this.failed.signal]);
  }

  /** `count` generations (or anything), made in turn. */
  start<T>(count: number, make: (i: number) => T): T[] {
    const made: T[] = [];
    try {
      for (let i = 0; i < count; i++) made.push(make(i));
    } catch (err) {
      this.stop();
      throw err;
    }
    return made;
  }

  /** `work`'s answer; its failure stops the others. */
  async wait<T>(work: Promise<T>): Promise<T> {
    try {
      return await work;
    } catch (err) {
      this.stop();
      throw err;
    }
  }

  stop(): void {
    this.failed.abort();
  }
}

/**
 * OpenAI's and TGI's `best_of`: of a prompt's candidates, the `keep` of highest mean log-probability per token
 * (the likeliest text for its length), best first; ties keep the earlier.
 */
export function bestCandidates<T extends { meanLogprob: number }>(candidates: readonly T[], keep: number): T[] {
  return candidates
    .map((c, i) => ({ c, i }))
    .sort((a, b) => b.c.meanLogprob - a.c.meanLogprob || a.i - b.i)
    .slice(0, keep)
    .map(({ c }) => c);
}

/**
 * One running generation as text: started at once, read as an async iterable of pieces (bounded: an
 * unread backlog pauses the sequence), finished with `result`. Shared by SSE, plain JSON and WebSocket.
 */
export class Generation {
  readonly result: Promise<GenerateResult>;
  /** Settles when the first token arrives (or the generation fails before it). */
  readonly started: Promise<void>;
  readonly promptTokens: number;
  /** Tokens of its predicted output (Predicted Outputs), if it has one. */
  readonly predictionTokens: number;
  /** Tokens generated so far (vLLM's continuous usage stats). */
  produced = 0;
  /** With vLLM's prompt_logprobs: the prompt's tokens and their log-probabilities (the first's null), once computed. */
  promptLogged?: LoggedToken[];
  /** The sum of its tokens' log-probabilities, and how many (with logprobs or `scoreTokens`). */
  private logprobSum = 0;
  private scored = 0;
  private pieces: Piece[] = [];
  /** Tokens with their log-probabilities not yet in a piece (only if asked for). */
  private logged: LoggedToken[] = [];
  readonly wantsLogprobs: boolean;
  private text: TextStream;
  /** A reasoning model's chat: its output read as the answer's reasoning is (never ended here: no budget). */
  private thinking?: ThinkingBudget;
  private wake?: () => void;
  private settled = false;
  private unused: () => void;

  constructor(m: ServedModel, params: GenerationParams, prompt: number[], maxTokens: number, signal: AbortSignal, { caller, trace }: Origin = {}) {
    const gen = m.generation as Generative;
    // (a token past the model's embedding table fails the replica's whole step, the others' sequences with it)
    const outside = prompt.find((token) => token >= gen.vocab);
    if (outside !== undefined) throw badInput(`prompt: token ${outside} is not in the model's vocabulary (${gen.vocab} tokens)`, 'prompt');
    if (params.truncate_prompt_tokens) prompt = prompt.slice(-params.truncate_prompt_tokens);
    const echoed = params.echo ? prompt : [];
    if (prompt.length === 0) prompt = [gen.tokenizer.eos]; // GPT-2 starts a text from <|endoftext|>
    if (prompt.length + maxTokens > gen.context) {
      throw badInput(
        `This model's maximum context length is ${gen.context} tokens. However, you requested ${prompt.length + maxTokens} tokens (${prompt.length} in the prompt, ${maxTokens} for the completion).`,
        params.max_tokens_param ?? 'max_tokens',
        'context_length_exceeded',
      );
    }
    if (params.prompt_logprobs != null && params.echo)
      throw badInput('prompt_logprobs cannot be used with echo: echo with logprobs gives the prompt its log-probabilities', 'prompt_logprobs');
    const sampling = samplingFor(params, gen, maxTokens);
    this.promptTokens = prompt.length;
    this.predictionTokens = sampling.prediction?.length ?? 0;
    this.wantsLogprobs = askedLogprobs(params) !== undefined;
    // The echoed prompt is the first piece: at once, or with its log-probabilities when those are asked for.
    const scoresPrompt = sampling.promptLogprobs !== undefined;
    const echo = (scored: TokenLogprobs[]) => {
      const [first, ...rest] = echoed;
      if (first !== undefined && scoresPrompt)
        this.logged.push({ token: first, logprob: null, rank: null, top: null }, ...rest.map((token, i) => ({ token, ...scored[i] })));
      this.emit(decode(gen.tokenizer, echoed));
    };
    if (!scoresPrompt) echo([]);
    const stops = params.stop === undefined || params.stop === null ? [] : typeof params.stop === 'string' ? [params.stop] : params.stop;
    this.text = new TextStream(gen.tokenizer, stops, {
      stopTokens: params.stop_token_ids ?? [],
      ignoreEos: params.ignore_eos ?? false,
      includeStop: params.include_stop_str_in_output ?? false,
    });
    if (params.reasoningParser) this.thinking = new ThinkingBudget(thinkingParams(params.reasoningParser), gen.tokenizer);
    let started: () => void = () => {};
    const first = new Promise<void>((r) => (started = r));
    // Under a tokens-a-minute limit: what it may use is taken now (429 if not there); what it did not use, given back.
    caller?.tokens?.take(prompt.length + maxTokens);
    this.unused = () => caller?.tokens?.giveBack(Math.max(0, maxTokens - this.produced));
    // (the caller's id salts its prompts where the model keeps each caller's apart; a request may add its own salt)
    const salts = [gen.cacheScope === 'caller' ? (caller?.id ?? 'anonymous') : undefined, params.cache_salt ?? undefined].filter(Boolean);
    this.result = gen.scheduler.generate(
      { prompt, maxTokens, sampling, ...(salts.length > 0 && { cacheSalt: salts.join('\u0000') }) },
      {
        signal,
        priority: (caller?.priority ?? 0) - (params.service_tier === 'flex' ? FLEX_PRIORITY_DROP : 0),
        caller: caller?.id,
        trace,
        onPromptLogprobs: (scored) => {
          if (params.prompt_logprobs != null)
            this.promptLogged = prompt.map((token, i) => (i === 0 ? { token, logprob: null, rank: null, top: null } : { token, ...scored[i - 1] }));
          echo(scored);
        },
        onToken: (token, logprobs) => {
          this.produced++;
          if (logprobs) {
            this.logprobSum += logprobs.logprob;
            this.scored++;
            if (this.wantsLogprobs) this.logged.push({ token, ...logprobs });
          }
          this.thinking?.advance(token);
          this.emit(this.text.push(token));
          started();
          this.wake?.();
          return !this.text.stopped;
        },
        paused: () => this.pieces.length >= MAX_BUFFERED_PIECES,
      },
    );
    this.result.then(
      (r) => {
        if (r.beams) this.produced = r.completionTokens; // (a beam search's tokens come all at once)
        this.finish();
      },
      () => this.finish(),
    );
    this.started = Promise.race([first, this.result.then(() => {})]);
    this.started.catch(() => {}); // only a signal: whoever awaits it still sees the error
  }

  /** A reasoning model's chat: its tokens before the answer (the thinking, its tags included); otherwise undefined. */
  get reasoningTokens(): number | undefined {
    return this.thinking?.reasoningTokens;
  }

  /** The text as it becomes safe to show, in pieces; throws the generation's error, if any. */
  async *[Symbol.asyncIterator](): AsyncGenerator<Piece> {
    for (;;) {
      while (this.pieces.length > 0) yield this.pieces.shift() as Piece;
      if (this.settled) break;
      await new Promise<void>((r) => (this.wake = r));
    }
    await this.result;
    this.emit(this.text.flush());
    if (this.pieces.length > 0) yield this.pieces.shift() as Piece;
  }

  /** Read to its end: the whole text, every token's log-probabilities (if asked for), and the result. */
  async whole(): Promise<{ text: string; logged: LoggedToken[]; result: GenerateResult }> {
    let text = '';
    const logged: LoggedToken[] = [];
    for await (const piece of this) {
      text += piece.text;
      logged.push(...piece.logged);
    }
    const result = await this.result;
    logged.push(...this.takeLogprobs());
    return { text, logged, result };
  }

  /** After the last piece: the tokens no piece carried (end-of-text, a stop sequence's), with log-probabilities. */
  takeLogprobs(): LoggedToken[] {
    return this.logged.splice(0);
  }

  private emit(text: string): void {
    if (text) this.pieces.push({ text, logged: this.logged.splice(0) });
  }

  /** Its tokens' mean log-probability (OpenAI's and TGI's best_of rank by it); -Infinity before any. */
  get meanLogprob(): number {
    return this.scored > 0 ? this.logprobSum / this.scored : Number.NEGATIVE_INFINITY;
  }

  /** What ended the text, if not end-of-text or the length: a stop sequence, or a stop token's id. */
  get stopReason(): string | number | undefined {
    return this.text.stoppedBy;
  }

  usage(r: GenerateResult) {
    return usage(this.promptTokens, [r], this.predictionTokens, this.reasoningTokens);
  }

  private finish(): void {
    this.settled = true;
    this.unused();
    this.wake?.();
  }
}
