import { describe, expect, it } from 'vitest';
import { bertTokenizer, byteLevelTokenizer } from '../../test/tokenizers.js';
import { indexVocabulary } from './grammar/mask.js';
import { decode, loadTokenizer } from './text.js';

const utf8 = new TextEncoder();

describe('Hugging Face tokenizers (tokenizer.json)', () => {
  it("encodes as bert-base-uncased does, pairs with BERT's segments", async () => {
    const bert = await loadTokenizer(bertTokenizer());
    expect(bert.size).toBe(30522);
    expect(bert.maxLength).toBe(256); // tokenizer_config.json's model_max_length
    expect(bert.encode('I like strawberries')).toEqual([101, 1045, 2066, 13137, 20968, 102]); // [CLS] i like straw ##berries [SEP]
    const pair = bert.encodePair?.('what does a fox eat', 'Foxes eat rodents.');
    expect(pair?.ids.slice(0, 7)).toEqual([101, 2054, 2515, 1037, 4419, 4521, 102]);
    expect(pair?.ids.at(-1)).toBe(102);
    expect(pair?.typeIds).toEqual(pair?.ids.map((_, i) => (i < 7 ? 0 : 1)));
    expect(bert.eos).toBe(102); // [SEP], where the config names no end-of-text
    expect(decode(bert, [1045, 2066, 13137, 20968])).toBe(' i like strawberries');
  });

  it("gives a byte-level BPE's tokens their bytes: any text decodes back to itself", async () => {
    const t = await loadTokenizer(byteLevelTokenizer());
    for (const text of ['the theme', 'héllo wörld', 'a 🦊 and 汉字\n\t{"k": 1}']) {
      const ids = t.encode(text);
      expect(Buffer.concat(ids.map((id) => t.bytes(id)))).toEqual(Buffer.from(utf8.encode(text)));
    }
    expect(t.encode(' the')).toEqual([258]); // the merges apply: Ġt + he
    expect(t.eos).toBe(260); // tokenizer_config.json's eos_token
    expect(t.maxLength).toBeUndefined(); // none given
    expect(t.bytes(t.eos)).toEqual(new Uint8Array(0)); // special: no text
    expect(t.bytes(99_999)).toEqual(new Uint8Array(0)); // past the vocabulary (a model's wider logits)
  });

  it('leaves tokens without text out of response formats’ vocabulary', async () => {
    const t = await loadTokenizer(byteLevelTokenizer());
    const index = indexVocabulary(t, 300);
    expect(index.ids).toHaveLength(260); // 256 bytes + 4 merges; not <|endoftext|>, not 261..299
  });

  it('names the file it cannot read', async () => {
    await expect(loadTokenizer('/nonexistent/tokenizer.json')).rejects.toThrow(/nonexistent/);
  });
});
