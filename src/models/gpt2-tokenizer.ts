import gpt2Encoding, { EndOfText, encode } from 'gpt-tokenizer/encoding/gpt2';
import type { Tokenizer } from './text.js';

// gpt-tokenizer's decode() shares one streaming TextDecoder across calls, so bytes of an unfinished
// character leak from one call into the next. We take each token's bytes and decode them ourselves.
const core = (gpt2Encoding as unknown as { bytePairEncodingCoreProcessor: { tryDecodeToken(t: number): Uint8Array | string | undefined } })
  .bytePairEncodingCoreProcessor;
const utf8 = new TextEncoder();

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
