import gpt2Encoding, { EndOfText, encode } from 'gpt-tokenizer/encoding/gpt2';
import type { Tokenizer } from './text.js';

// gpt-tokenizer's decode() shares one streaming TextDecoder across calls, so bytes of an unfinished
// character leak from one call into the next. We take each token's bytes and decode them ourselves.
const core = (gpt2Encoding as unknown as { bytePairEncodingCoreProcessor: { tryDecodeToken(t: number): Uint8Array | string | undefined } })
  .bytePairEncodingCoreProcessor;
const utf8 = new TextEncoder();
// Words it has split before are kept, least recently used dropped: 100,000 by default, ~200 bytes each — a
// gateway's heap grew ~20 MB under prompts of ever-new words (numbers, ids; bench/soak.ts) before it was full.
// 10,000 holds real text's words (this README's 48k tokens need 1.4k) at the same speed: 21 ms for the README
// either way, 40 ms with no cache.
gpt2Encoding.setMergeCacheSize(10_000);

/** The real GPT-2 byte-level BPE (50257 tokens), from gpt-tokenizer. */
export const gpt2: Tokenizer = {
  name: 'gpt2',
  encode: (text) => encode(text, { allowedSpecial: new Set([EndOfText]) }),
  bytes: (token) => {
    const b = core.tryDecodeToken(token);
    if (b === undefined) throw new Error(`token ${token} is not in the GPT-2 vocabulary`);
    return typeof b === 'string' ? utf8.encode(b) : b;
  },
  eos: encode(EndOfText, { allowedSpecial: new Set([EndOfText]) })[0],
  size: 50257,
};
