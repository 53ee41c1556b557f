import { readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import type { ChatLayout, ChatMessage, Tokenizer } from './text.js';

type Json = Record<string, unknown>;
type TokenizerJson = {
  model?: { type?: string };
  pre_tokenizer?: Json | null;
  decoder?: Json | null;
  added_tokens?: { id: number; content: string; special?: boolean }[];
};

/** How a vocabulary's token strings spell their bytes. */
type Spelling = 'byte-level' | 'metaspace' | 'wordpiece' | 'plain';

// Names a tokenizer's end-of-text goes by, where tokenizer_config.json does not say.
const EOS_NAMES = ['<|endoftext|>', '</s>', '<|end_of_text|>', '<|im_end|>', '<eos>', '[SEP]'];
const utf8 = new TextEncoder();
const EMPTY = new Uint8Array(0);

/**
 * A Hugging Face tokenizer (`tokenizer.json`, with `tokenizer_config.json` beside it if there is one) as this
 * gateway's Tokenizer, through @huggingface/tokenizers: what real models ship (BERT's WordPiece, Llama's and
 * Qwen's byte-level BPE, SentencePiece with byte fallback). `path` is the file or its directory.
 */
export async function loadHfTokenizer(path: string): Promise<Tokenizer> {
  const file = (await stat(path)).isDirectory() ? join(path, 'tokenizer.json') : path;
  const json = JSON.parse(await readFile(file, 'utf8')) as TokenizerJson;
  const config = (await readFile(join(dirname(file), 'tokenizer_config.json'), 'utf8').then(JSON.parse, () => ({}))) as Json;
  const tokenizer = new HfTokenizer(json, config);
  const vocab = tokenizer.get_vocab(true);
  const size = Math.max(-1, ...vocab.values()) + 1;
  // Special tokens (added tokens marked special) show no text, as vLLM's skip_special_tokens.
  const special = new Set((json.added_tokens ?? []).filter((t) => t.special).map((t) => t.id));
  const spelling = spellingOf(json);
  const eosName = tokenText(config.eos_token) ?? EOS_NAMES.find((n) => vocab.has(n));
  // transformers writes a huge model_max_length (1e30) when the model's is unknown: that is no limit.
  const maxLength = Number(config.model_max_length);
  return {
    name: path,
    size,
    truncationSide: config.truncation_side === 'left' ? 'left' : 'right',
    maxLength: Number.isInteger(maxLength) && maxLength > 0 && maxLength < 1e7 ? maxLength : undefined,
    eos: (eosName && vocab.get(eosName)) ?? -1,
    encode: (text, opts) => tokenizer.encode(text, { add_special_tokens: opts?.special ?? true }).ids,
    encodePair: (first, second) => {
      const { ids, token_type_ids } = tokenizer.encode(first, { text_pair: second, return_token_type_ids: true });
      return { ids, typeIds: token_type_ids ?? ids.map(() => 0) };
    },
    chatTemplate: chatTemplateOf(config),
    // No text for special tokens, nor for ids past the tokenizer's that a model's wider logits may pick.
    bytes: (id) => {
      const piece = tokenizer.id_to_token(id);
      return piece === undefined || special.has(id) ? EMPTY : bytesOf(piece, spelling);
    },
  };
}

/**
 * The tokenizer's chat template, rendered as transformers' apply_chat_template renders it (messages, tools,
 * add_generation_prompt, the special tokens' names; @huggingface/jinja brings raise_exception, for a template that
 * refuses a conversation).
 * A list of named templates (tokenizer_config.json may have one) gives `tool_use` to requests with tools.
 */
function chatTemplateOf(config: Json): Tokenizer['chatTemplate'] {
  const source = config.chat_template;
  const named = Array.isArray(source) ? new Map((source as { name: string; template: string }[]).map((t) => [t.name, new Template(t.template)])) : undefined;
  const single = typeof source === 'string' ? new Template(source) : undefined;
  if (!single && !named?.size) return undefined;
  const specials = Object.fromEntries(
    Object.entries(config)
      .filter(([key]) => key.endsWith('_token'))
      .map(([key, value]) => [key, tokenText(value)]),
  );
  return (messages: ChatMessage[], tools?: unknown[], { generationPrompt = true, continueFinal = false, templateKwargs }: ChatLayout = {}) => {
    const template = single ?? named?.get(tools?.length ? 'tool_use' : 'default') ?? named?.get('default') ?? [...(named?.values() ?? [])][0];
    const text = (template as Template).render({
      ...specials,
      ...templateKwargs, // (never in place of the conversation itself)
      messages,
      tools: tools?.length ? tools : undefined,
      add_generation_prompt: generationPrompt && !continueFinal,
    });
    if (!continueFinal) return text;
    // The final message left open, as transformers' continue_final_message: the text cut after its content (the
    // template's end-of-turn tokens after it dropped).
    const final = messages.at(-1)?.content ?? '';
    const at = text.lastIndexOf(final);
    if (at < 0 || final.length === 0) throw new Error('continue_final_message: the final message is empty, or the template does not write it as given');
    return text.slice(0, at + final.length);
  };
}

function spellingOf(json: TokenizerJson): Spelling {
  const types = [json.pre_tokenizer, json.decoder].flatMap(componentTypes);
  if (types.includes('ByteLevel')) return 'byte-level';
  if (types.includes('Metaspace') || types.includes('ByteFallback')) return 'metaspace';
  if (json.model?.type === 'WordPiece' || types.includes('WordPiece')) return 'wordpiece';
  return 'plain';
}

/** A component's type and, for a Sequence, its members'. */
function componentTypes(c: Json | null | undefined): string[] {
  if (!c) return [];
  const members = (c.pretokenizers ?? c.decoders ?? []) as Json[];
  return [String(c.type), ...members.flatMap(componentTypes)];
}

function bytesOf(piece: string, spelling: Spelling): Uint8Array {
  switch (spelling) {
    case 'byte-level':
      return Uint8Array.from(piece, (ch) => {
        const b = BYTE_OF_CHAR.get(ch);
        if (b === undefined) throw new Error(`${JSON.stringify(piece)} is not a byte-level token`);
        return b;
      });
    case 'metaspace': {
      const byte = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece); // SentencePiece's byte fallback
      return byte ? Uint8Array.of(Number.parseInt(byte[1], 16)) : utf8.encode(piece.replaceAll('\u2581', ' '));
    }
    case 'wordpiece': // a word's continuation joins it; a new word follows a space
      return utf8.encode(piece.startsWith('##') ? piece.slice(2) : ` ${piece}`);
    default:
      return utf8.encode(piece);
  }
}

/** GPT-2's byte-level alphabet: each byte as a printable character (bytes_to_unicode), read backwards. */
const BYTE_OF_CHAR = (() => {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const map = new Map<string, number>();
  let next = 256;
  for (let b = 0; b < 256; b++) map.set(String.fromCodePoint(printable(b) ? b : next++), b);
  return map;
})();

function tokenText(t: unknown): string | undefined {
  if (typeof t === 'string') return t;
  if (t && typeof t === 'object' && typeof (t as Json).content === 'string') return (t as Json).content as string;
  return undefined;
}
