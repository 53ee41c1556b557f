export type Tokenizer = {
  name: string;
  /** With the tokenizer's own special tokens (a BOS, BERT's [CLS] … [SEP]) unless `special` is false. */
  encode(text: string, opts?: { special?: boolean }): number[];
  /** The raw bytes of one token (a byte-level BPE token may end in the middle of a UTF-8 character). */
  bytes(token: number): Uint8Array;
  /** The end-of-text token: generating it finishes a sequence. */
  eos: number;
  /** How many tokens it has (ids 0 to size - 1). */
  size: number;
  /** The longest input its model takes, where the tokenizer says (tokenizer_config.json's model_max_length). */
  maxLength?: number;
  /** Which end truncation cuts (tokenizer_config.json's truncation_side). @default right: the beginning is kept */
  truncationSide?: 'left' | 'right';
  /**
   * Two texts as one input, with the tokenizer's own special tokens and segments (BERT: [CLS] a [SEP] b [SEP],
   * token types 0 then 1). Tokenizers without a pair template leave it out (the gateway joins the texts itself).
   */
  encodePair?(first: string, second: string): { ids: number[]; typeIds: number[] };
  /**
   * Chat messages as the model was trained to read them: its tokenizer_config.json's `chat_template` (Jinja),
   * with the generation prompt after them. Tokenizers without a template leave it out (see `chatPrompt`).
   */
  chatTemplate?(messages: ChatMessage[], tools?: unknown[], layout?: ChatLayout): string;
};

/**
 * How a chat ends its prompt: with the assistant's turn opened (`generationPrompt`, the default), or with the final
 * (assistant) message left open for the answer to continue (`continueFinal`: a prefill).
 */
export type ChatLayout = {
  generationPrompt?: boolean;
  continueFinal?: boolean;
  /** More variables for the chat template (vLLM's chat_template_kwargs: Qwen3's `enable_thinking`, say). */
  templateKwargs?: Record<string, unknown>;
};

/** A chat message as chat templates read it (OpenAI's fields; a tool call's arguments parsed where they are JSON). */
export type ChatMessage = { role: string; content: string; tool_calls?: unknown[]; tool_call_id?: string; name?: string; reasoning_content?: string };

export function decode(tokenizer: Tokenizer, tokens: number[]): string {
  const decoder = new TextDecoder();
  return tokens.map((t) => decoder.decode(tokenizer.bytes(t), { stream: true })).join('') + decoder.decode();
}

const loaded = new Map<string, Promise<Tokenizer>>();

/**
 * A tokenizer by name, loaded on first use: `gpt2` is bundled (GPT-2's BPE tables are ~20 MB of heap, which a
 * gateway serving only tensor models should not carry: every full GC marks the whole heap); a path is a Hugging
 * Face `tokenizer.json` (or the directory holding it).
 */
export function loadTokenizer(name: string): Promise<Tokenizer> {
  let tokenizer = loaded.get(name);
  if (!tokenizer) {
    tokenizer =
      name === 'gpt2'
        ? import('./gpt2-tokenizer.js').then((m) => m.gpt2)
        : /[/\\]|\.json$/.test(name)
          ? import('./hf-tokenizer.js').then((m) => m.loadHfTokenizer(name))
          : Promise.reject(new Error(`tokenizer ${JSON.stringify(name)} is not bundled (gpt2 is; give a model's tokenizer.json as models.<name>.tokenizer)`));
    loaded.set(name, tokenizer);
    tokenizer.catch(() => loaded.delete(name));
  }
  return tokenizer;
}

const ROLE_NAMES: Record<string, string> = { user: 'User', assistant: 'Assistant', tool: 'Tool' };

/** Chat messages as one prompt for a model without a chat template of its own. */
export function chatPrompt(messages: { role: string; content: string }[], { generationPrompt = true, continueFinal = false }: ChatLayout = {}): string {
  const lines = messages.map((m) => (m.role === 'system' || m.role === 'developer' ? `${m.content}\n` : `${ROLE_NAMES[m.role] ?? 'Assistant'}: ${m.content}`));
  return lines.join('\n') + (generationPrompt && !continueFinal ? '\nAssistant:' : '');
}

/**
 * Turns a stream of tokens into text as it may be shown: a token that ends in the middle of a UTF-8
 * character is held until the character is whole, and text that could be the start of a stop sequence is
 * held until it is known not to be one. A stop sequence ends the text (it is not included, unless
 * `includeStop`: vLLM's include_stop_str_in_output).
 */
export class TextStream {
  private decoder = new TextDecoder();
  /** Decoded text not yet shown (it might be the start of a stop sequence). */
  private pending = '';
  private readonly holdBack: number;
  private readonly stopTokens: Set<number>;
  private readonly includeStop: boolean;
  stopped = false;
  /** What ended the text, if not end-of-text or the length: a stop sequence, or a stop token's id (vLLM's `stop_reason`). */
  stoppedBy?: string | number;

  /**
   * `stopTokens` end the text too (vLLM's stop_token_ids; their text is not shown); `ignoreEos` goes on past
   * the end-of-text token, showing nothing for it (vLLM's ignore_eos).
   */
  constructor(
    private tokenizer: Tokenizer,
    private stops: string[] = [],
    { stopTokens = [], ignoreEos = false, includeStop = false }: { stopTokens?: number[]; ignoreEos?: boolean; includeStop?: boolean } = {},
  ) {
    this.holdBack = Math.max(0, ...stops.map((s) => s.length - 1));
    this.stopTokens = new Set(ignoreEos ? stopTokens : [tokenizer.eos, ...stopTokens]);
    this.includeStop = includeStop;
  }

  /** The text that became safe to show with this token ('' if none); sets `stopped` on EOS or a stop sequence. */
  push(token: number): string {
    if (this.stopped) return '';
    if (this.stopTokens.has(token)) {
      this.stopped = true;
      if (token !== this.tokenizer.eos) this.stoppedBy = token;
      return this.flush();
    }
    if (token === this.tokenizer.eos) return ''; // ignore_eos: a special token, no text
    // A streaming decoder keeps the bytes of a character split across tokens until it is whole.
    this.pending += this.decoder.decode(this.tokenizer.bytes(token), { stream: true });
    // The stop that occurs first in the text (not in the list): the text shown contains none of them.
    let found: { stop: string; at: number } | undefined;
    for (const stop of this.stops) {
      const at = this.pending.indexOf(stop);
      if (at >= 0 && (!found || at < found.at)) found = { stop, at };
    }
    if (found) {
      this.stopped = true;
      this.stoppedBy = found.stop;
      const out = this.take(found.at + (this.includeStop ? found.stop.length : 0));
      this.pending = ''; // the stop sequence and anything after it are never shown
      return out;
    }
    return this.take(Math.max(0, this.pending.length - this.holdBack));
  }

  /** The rest of the text, at the end of generation. */
  flush(): string {
    this.pending += this.decoder.decode();
    return this.take(this.pending.length);
  }

  private take(n: number): string {
    const out = this.pending.slice(0, n);
    this.pending = this.pending.slice(n);
    return out;
  }
}
