import { randomBytes } from 'node:crypto';
import type { Context } from 'hono';
import { badInput } from '../../errors/index.js';
import {
  type ChatLayout,
  type ChatMessage,
  chatPrompt,
  FormatError,
  grammarFor,
  type JsonSchema,
  type ResponseFormat,
  type Tokenizer,
} from '../../models/index.js';
import { clientSignal } from '../body.js';
import type { ServedModel } from '../types.js';
import { chatRoom, Generation, originOf } from './generation.js';
import { type ReasoningParser, splitReasoning } from './reasoning.js';
import type { ChatRequest } from './schema.js';

// OpenAI's tool calling, without a model-specific parser: a named tool_choice or "required" makes the
// replica write the call(s) as JSON its grammar enforces (the arguments a document of the tool's parameters
// schema), and this file turns that text into `tool_calls`. "auto" (OpenAI's default with tools) lets the
// model answer in words instead: its grammar is the calls or any text not starting with `[`, so the first
// character tells which — the model's choice, with no tool-call format of its own needed.

/** A tool call as a streamed delta: the first of a call has its id and name, the rest more of its arguments. */
export type ToolCallDelta = { index: number; id?: string; type?: 'function'; function: { name?: string; arguments: string } };
export type ToolCall = { id: string; type: 'function'; function: { name: string; arguments: string } };

/**
 * What a chat request's tools make of its generation: the format to enforce and how to read the text;
 * `auto`: the text may be words instead of calls (`answerKind` tells which, from its first character).
 */
export type ToolUse = { format: ResponseFormat; reader: () => ToolCallReader; auto: boolean };

/** Under tool_choice "auto": calls if the text starts with `[` (past whitespace), words otherwise, or not yet known. */
export function answerKind(text: string): 'calls' | 'text' | undefined {
  const first = text.trimStart()[0];
  return first === undefined ? undefined : first === '[' ? 'calls' : 'text';
}

/** A function that takes no arguments (OpenAI: `parameters` left out) takes `{}`. */
const NO_PARAMETERS: JsonSchema = { type: 'object', properties: {}, additionalProperties: false };

export function toolUseOf(req: ChatRequest): ToolUse | undefined {
  const tools = req.tools ?? [];
  const choice = req.tool_choice ?? (tools.length > 0 ? 'auto' : 'none');
  if (choice === 'none') return undefined;
  if (tools.length === 0) throw badInput('tool_choice needs tools', 'tool_choice', 'invalid_request_error');
  if (req.response_format && req.response_format.type !== 'text')
    throw badInput('response_format cannot be used with tools (the tool calls are the format)', 'response_format', 'invalid_request_error');
  const parameters = (t: (typeof tools)[number]) => (t.function.parameters as JsonSchema | undefined) ?? NO_PARAMETERS;
  const required: ResponseFormat = {
    type: 'tool_calls',
    tools: tools.map((t) => ({ name: t.function.name, parameters: parameters(t) })),
    parallel: req.parallel_tool_calls ?? true,
  };
  try {
    grammarFor(required); // every tool's parameters, whichever is called: a schema not enforced is a 400
  } catch (e) {
    if (e instanceof FormatError) throw badInput(e.message, 'tools', 'invalid_request_error');
    throw e;
  }
  if (choice === 'required') return { format: required, reader: () => new ToolCallReader(), auto: false };
  if (choice === 'auto') return { format: { ...required, auto: true }, reader: () => new ToolCallReader(), auto: true };
  const named = tools.find((t) => t.function.name === choice.function.name);
  if (!named) throw badInput(`tool_choice names ${JSON.stringify(choice.function.name)}, which is not in tools`, 'tool_choice', 'invalid_request_error');
  return { format: { type: 'json_schema', schema: parameters(named) }, reader: () => new ToolCallReader(named.function.name), auto: false };
}

/**
 * One choice's text read as its tool use asks: calls, or under "auto" words instead, which the first
 * character decides (whitespace before it is held until then).
 */
export class ToolAnswer {
  readonly reader: ToolCallReader;
  private kind?: 'calls' | 'text';
  private held = '';

  constructor(use: ToolUse) {
    this.reader = use.reader();
    if (!use.auto) this.kind = 'calls';
  }

  /** Whether the answer is calls (false while undecided, and for words). */
  get isCalls(): boolean {
    return this.kind === 'calls';
  }

  /** What more text adds: call deltas, or words; nothing while it is undecided. */
  push(text: string): { calls?: ToolCallDelta[]; content?: string } {
    if (!this.kind) {
      this.held += text;
      this.kind = answerKind(this.held);
      if (!this.kind) return {};
      [text, this.held] = [this.held, ''];
    }
    return this.kind === 'calls' ? { calls: this.reader.push(text) } : { content: text };
  }

  /** At the end: words still held (an answer cut while only whitespace had come). */
  flush(): string {
    const rest = this.held;
    this.held = '';
    return rest;
  }
}

/** An earlier turn's tool calls as the model writes them under "required" (for the prompt). */
export function toolCallsText(calls: ToolCall[]): string {
  const args = (text: string) => {
    try {
      return JSON.parse(text);
    } catch {
      return text; // as sent
    }
  };
  return JSON.stringify(calls.map((c) => ({ name: c.function.name, arguments: args(c.function.arguments) })));
}

/** One delta per call in a chunk, as OpenAI streams them (a call's head and its first arguments together). */
function merged(deltas: ToolCallDelta[]): ToolCallDelta[] {
  const out: ToolCallDelta[] = [];
  for (const d of deltas) {
    const last = out[out.length - 1];
    if (last?.index === d.index) last.function = { ...last.function, arguments: last.function.arguments + d.function.arguments };
    else out.push({ ...d, function: { ...d.function } });
  }
  return out;
}

const CALL_HEAD = /^\s*[[,]\s*\{\s*"name"\s*:\s*("(?:[^"\\]|\\.)*")\s*,\s*"arguments"\s*:/;
const isWhitespace = (ch: string) => ch === ' ' || ch === '\n' || ch === '\r' || ch === '\t';

/**
 * Reads the text of a generation as tool calls while it streams. With a tool `name` (a named tool_choice)
 * the whole text is that call's arguments; otherwise it is the "required" array, `[{"name": …, "arguments":
 * …}, …]`, which the grammar guarantees, so a call's head is matched whole and its arguments are read by
 * their brackets (strings and escapes minded) until the `}` that closes the call. Whitespace outside the
 * arguments' brackets is left out, so that streamed and whole answers carry the same arguments.
 */
export class ToolCallReader {
  readonly calls: ToolCall[] = [];
  /** Text after the last call, not yet a whole call head. */
  private head = '';
  private inArguments = false;
  /** The named call, until its head is sent. */
  private unsent?: ToolCall;
  /** Inside a call's arguments: bracket depth, and whether in a string (after a backslash). */
  private depth = 0;
  private inString = false;
  private escaped = false;

  constructor(private readonly name?: string) {
    if (name) this.unsent = this.start(name);
  }

  /** Whether the calls read so far are whole: none left open (a stop sequence may cut one short). */
  get whole(): boolean {
    if (this.name) return this.calls[0].function.arguments !== '' && this.depth === 0 && !this.inString;
    return this.calls.length > 0 && !this.inArguments;
  }

  /** The deltas this text adds (a new call's head, more of a call's arguments). */
  push(text: string): ToolCallDelta[] {
    const deltas: ToolCallDelta[] = [];
    if (this.unsent && text) {
      deltas.push(this.opened(this.unsent));
      this.unsent = undefined;
    }
    let rest = text;
    while (rest) {
      if (!this.inArguments) {
        this.head += rest;
        const match = CALL_HEAD.exec(this.head);
        if (!match) break;
        deltas.push(this.opened(this.start(JSON.parse(match[1]) as string)));
        rest = this.head.slice(match[0].length);
        this.head = '';
        continue;
      }
      let piece = '';
      let end = -1;
      for (let i = 0; i < rest.length && end < 0; i++) {
        const ch = rest[i];
        if (this.inString) {
          if (this.escaped) this.escaped = false;
          else if (ch === '\\') this.escaped = true;
          else if (ch === '"') this.inString = false;
        } else if (ch === '"') this.inString = true;
        else if (ch === '{' || ch === '[') this.depth++;
        else if (ch === '}' || ch === ']') {
          if (this.depth === 0)
            end = i; // the `}` that closes the call
          else this.depth--;
        } else if (this.depth === 0 && isWhitespace(ch)) continue;
        if (end < 0) piece += ch;
      }
      if (piece) deltas.push(this.more(piece));
      if (end < 0) break;
      this.inArguments = false;
      rest = rest.slice(end + 1);
    }
    return merged(deltas);
  }

  private start(name: string): ToolCall {
    const call: ToolCall = { id: `call_${randomBytes(12).toString('hex')}`, type: 'function', function: { name, arguments: '' } };
    this.calls.push(call);
    this.inArguments = true;
    this.depth = 0;
    return call;
  }

  private opened(call: ToolCall): ToolCallDelta {
    return { index: this.calls.indexOf(call), id: call.id, type: 'function', function: { name: call.function.name, arguments: '' } };
  }

  private more(text: string): ToolCallDelta {
    const index = this.calls.length - 1;
    this.calls[index].function.arguments += text;
    return { index, function: { arguments: text } };
  }
}

/**
 * Chat messages as the one prompt the model continues; the tools it may call listed first (as vLLM's chat
 * templates list them), an earlier turn's tool calls written as the model writes them.
 */
export function chatText(messages: ChatRequest['messages'], tools?: ChatRequest['tools'], layout?: ChatLayout): string {
  const text = (content: ChatRequest['messages'][number]['content']) =>
    content == null ? '' : typeof content === 'string' ? content : content.map((p) => p.text).join('');
  const turns = messages.map((msg) => {
    const calls = msg.role === 'assistant' && msg.tool_calls?.length ? toolCallsText(msg.tool_calls) : '';
    return { role: msg.role, content: [text(msg.content), calls].filter(Boolean).join(' ') };
  });
  const listed = tools?.length ? [{ role: 'system', content: `Tools: ${JSON.stringify(tools.map((t) => t.function))}` }] : [];
  return chatPrompt([...listed, ...turns], layout);
}

/**
 * Chat messages in tokens, as the model reads them: through its tokenizer's chat template where it has one (the
 * template writes its own special tokens, so none are added), else as `chatText` lays them out.
 */
export function chatTokens(tokenizer: Tokenizer, messages: ChatRequest['messages'], tools?: ChatRequest['tools'], layout?: ChatLayout): number[] {
  if (!tokenizer.chatTemplate) return tokenizer.encode(chatText(messages, tools, layout));
  let text: string;
  try {
    text = tokenizer.chatTemplate(messages.map(templateMessage), tools ?? undefined, layout);
  } catch (err) {
    throw badInput(`the model's chat template refused the conversation: ${(err as Error).message}`, 'messages', 'invalid_request_error');
  }
  return tokenizer.encode(text, { special: false });
}

/** A message as chat templates read it: text content, and tool calls' arguments as objects where they are JSON. */
function templateMessage(msg: ChatRequest['messages'][number]): ChatMessage {
  const content = msg.content == null ? '' : typeof msg.content === 'string' ? msg.content : msg.content.map((p) => p.text).join('');
  const out: ChatMessage = { role: msg.role, content };
  if ('tool_call_id' in msg && typeof msg.tool_call_id === 'string') out.tool_call_id = msg.tool_call_id;
  if ('name' in msg && typeof msg.name === 'string') out.name = msg.name;
  // (templates that keep a turn's thinking read it here: Qwen3's, for the turns after the last user message)
  const thought = msg.role === 'assistant' ? (msg.reasoning_content ?? msg.reasoning) : undefined;
  if (thought) out.reasoning_content = thought;
  if (msg.role === 'assistant' && msg.tool_calls?.length)
    out.tool_calls = msg.tool_calls.map((call) => {
      let args: unknown = call.function.arguments;
      try {
        args = JSON.parse(call.function.arguments);
      } catch {} // a template gets the string as it came
      return { ...call, function: { ...call.function, arguments: args } };
    });
  return out;
}

/**
 * The one generation a chat request amounts to (what the Responses and Messages APIs answer from), and its
 * answer read as its tools ask (calls, or under "auto" perhaps words; none without tools).
 */
export function chatGeneration(
  c: Context,
  m: ServedModel,
  chat: ChatRequest,
  maxTokens?: number,
  names: { prompt: string; maxTokens: string } = { prompt: 'messages', maxTokens: 'max_tokens' },
): { generation: Generation; answer?: ToolAnswer } {
  c.set('model', m.name);
  const { prompt, tools } = chatPromptOf(m, chat);
  const gen = m.generation as NonNullable<ServedModel['generation']>;
  const max = maxTokens ?? chatRoom(gen, prompt, chat.truncate_prompt_tokens, names.prompt);
  const params = { ...chat, format: tools?.format, reasoningParser: gen.reasoningParser, max_tokens_param: names.maxTokens };
  const generation = new Generation(m, params, prompt, max, clientSignal(c), originOf(c));
  return { generation, answer: tools && new ToolAnswer(tools) };
}

/** A chat generation read whole: its result, its thinking (a reasoning model's) and its answer's text, handed to `answer`. */
export async function wholeChat(generation: Generation, parser: ReasoningParser | undefined, answer?: ToolAnswer) {
  const { text, result, logged } = await generation.whole();
  const { reasoning, content } = parser ? splitReasoning(parser, text) : { reasoning: '', content: text };
  answer?.push(content);
  return { result, reasoning, content, logged };
}

/** How a chat request ends its prompt (vLLM's add_generation_prompt, continue_final_message). */
export const layoutOf = (req: {
  add_generation_prompt?: boolean | null;
  continue_final_message?: boolean | null;
  chat_template_kwargs?: Record<string, unknown> | null;
  reasoning_effort?: string | null;
}): ChatLayout => ({
  generationPrompt: req.add_generation_prompt ?? true,
  continueFinal: req.continue_final_message ?? false,
  // (an effort is the template's variable of that name; "none" also Qwen3's switch, enable_thinking: false — the
  // request's own chat_template_kwargs over both)
  templateKwargs: req.reasoning_effort
    ? { reasoning_effort: req.reasoning_effort, ...(req.reasoning_effort === 'none' && { enable_thinking: false }), ...req.chat_template_kwargs }
    : (req.chat_template_kwargs ?? undefined),
});

/** A chat request's prompt as the model is given it (its tools listed there), in tokens. */
export function chatPromptOf(m: ServedModel, chat: ChatRequest): { prompt: number[]; tools?: ToolUse } {
  const tools = toolUseOf(chat);
  const gen = m.generation as NonNullable<ServedModel['generation']>;
  return { prompt: chatTokens(gen.tokenizer, chat.messages, tools && chat.tools, layoutOf(chat)), tools };
}

/**
 * Hands a generation's pieces on as its answer reads them: words to `words` (an answer without tools is
 * words from the start: `words('')` opens it), call deltas to `calls`. Words still held stay in `answer`.
 */
export async function relay(
  pieces: AsyncIterable<{ text: string }>,
  answer: ToolAnswer | undefined,
  words: (text: string) => Promise<void>,
  calls: (deltas: ToolCallDelta[]) => Promise<void>,
): Promise<void> {
  if (!answer) await words('');
  for await (const piece of pieces) {
    if (!answer) {
      await words(piece.text);
      continue;
    }
    const said = answer.push(piece.text);
    if (said.calls) await calls(said.calls);
    if (said.content !== undefined) await words(said.content);
  }
}
