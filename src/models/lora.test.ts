import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { Decoder } from './decoder.js';
import { type GenerativeSpec, generativeSpec } from './generative.js';
import { AdapterCache, type AdapterRef, LoraStack, readAdapter } from './lora.js';
import { PrefixCache } from './prefix-cache.js';
import { Sampler } from './sampling.js';
import { readSignature } from './signature.js';

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const plainPath = here('../../examples/models/tiny-gpt.onnx');
const loraPath = here('../../examples/models/tiny-gpt-lora.onnx');
const adapter = (name: string): AdapterRef => ({
  name,
  path: here(name === 'sonnets' || name === 'pirate' ? `../../examples/adapters/${name}` : `../../test/fixtures/adapters/${name}`),
});
const greedy = { temperature: 0, topP: 1, topK: 0, seed: 1 };
const PROMPT = [40, 1101, 257, 1332, 11, 290];

let sampler: Sampler;
let plain: { session: ort.InferenceSession; spec: GenerativeSpec };
let lora: { session: ort.InferenceSession; spec: GenerativeSpec };

async function open(path: string) {
  return { session: await ort.InferenceSession.create(path), spec: generativeSpec(await readSignature(path)) as GenerativeSpec };
}

beforeAll(async () => {
  sampler = await Sampler.create();
  [plain, lora] = await Promise.all([open(plainPath), open(loraPath)]);
});

/** Greedy tokens of sequences that join together and decode `steps` tokens side by side (one batch a step). */
async function generate(decoder: Decoder, seqs: { seq: string; prompt?: number[]; adapter?: AdapterRef }[], steps = 8) {
  const got: Record<string, number[]> = Object.fromEntries(seqs.map((s) => [s.seq, []]));
  const join = seqs.map((s) => ({ seq: s.seq, prompt: s.prompt ?? PROMPT, sampling: greedy, adapter: s.adapter }));
  let result = await decoder.step({ join, advance: [], release: [] });
  for (let i = 0; ; i++) {
    expect(result.failed).toBeUndefined();
    for (const s of seqs) got[s.seq].push(result.tokens[s.seq]);
    if (i === steps - 1) break;
    result = await decoder.step({ join: [], advance: seqs.map((s) => s.seq), release: [] });
  }
  await decoder.step({ join: [], advance: [], release: seqs.map((s) => s.seq) });
  return got;
}

describe('LoRA adapters on a decoder (models/gpt.py --lora, models/lora.py)', () => {
  it('finds the layers the model takes adapters for', () => {
    expect(plain.spec.lora).toBeUndefined();
    expect(lora.spec.lora).toEqual([
      { layer: 0, module: 'attn.c_attn', in: 32, out: 96 },
      { layer: 1, module: 'attn.c_attn', in: 32, out: 96 },
    ]);
  });

  it('without an adapter is the model itself; an adapter changes the text, scaled as PEFT scales it', async () => {
    const base = (await generate(new Decoder(plain.session, plain.spec, sampler), [{ seq: 'x' }])).x;
    const decoder = new Decoder(lora.session, lora.spec, sampler);
    expect((await generate(decoder, [{ seq: 'x' }])).x).toEqual(base);
    // B all zeros: the adapter adds nothing.
    expect((await generate(decoder, [{ seq: 'x', adapter: adapter('sonnets-zero') }])).x).toEqual(base);
    const sonnets = (await generate(decoder, [{ seq: 'x', adapter: adapter('sonnets') }])).x;
    expect(sonnets).not.toEqual(base);
    // The same delta written two other ways: lora_alpha / r with B doubled, and rsLoRA's lora_alpha / sqrt(r).
    expect((await generate(decoder, [{ seq: 'x', adapter: adapter('sonnets-half-alpha') }])).x).toEqual(sonnets);
    expect((await generate(decoder, [{ seq: 'x', adapter: adapter('sonnets-rslora') }])).x).toEqual(sonnets);
  });

  it('rows of different adapters (and of none) share a step, each getting what it gets alone', async () => {
    const decoder = new Decoder(lora.session, lora.spec, sampler);
    const alone = {
      base: (await generate(decoder, [{ seq: 'base' }])).base,
      sonnets: (await generate(decoder, [{ seq: 's', adapter: adapter('sonnets') }])).s,
      pirate: (await generate(decoder, [{ seq: 'p', adapter: adapter('pirate'), prompt: [464] }])).p,
    };
    expect(alone.pirate).not.toEqual(alone.base);
    const mixed = await generate(decoder, [
      { seq: 's1', adapter: adapter('sonnets') },
      { seq: 'base' },
      { seq: 'p', adapter: adapter('pirate'), prompt: [464] },
      { seq: 's2', adapter: adapter('sonnets') },
    ]);
    expect(mixed).toEqual({ s1: alone.sonnets, base: alone.base, p: alone.pirate, s2: alone.sonnets });
  });

  it('decodes with drafts (speculative decoding) to the tokens an adapter gives a token a step', async () => {
    const speculation = { tokens: 4, ngramMax: 4, ngramMin: 1 };
    const seqs = [{ seq: 's', adapter: adapter('sonnets') }, { seq: 'p', adapter: adapter('pirate'), prompt: [464, 464, 464] }, { seq: 'b' }];
    const plain = await generate(new Decoder(lora.session, lora.spec, sampler), seqs, 6);
    const fast = new Decoder(lora.session, lora.spec, sampler, undefined, 0, speculation);
    const got: Record<string, number[]> = { s: [], p: [], b: [] };
    let r = await fast.step({
      join: seqs.map((x) => ({ seq: x.seq, prompt: x.prompt ?? PROMPT, sampling: greedy, adapter: x.adapter, maxTokens: 6 })),
      advance: [],
      release: [],
    });
    while (Object.values(got).some((g) => g.length < 6)) {
      for (const [id, t] of Object.entries(r.tokens)) got[id].push(t, ...(r.more?.[id] ?? []));
      const going = Object.keys(got).filter((id) => got[id].length < 6);
      if (going.length === 0) break;
      r = await fast.step({ join: [], advance: going, release: [] });
    }
    expect(got).toEqual(plain);
  });

  it("keeps an adapter's prompts in the prefix cache apart from the model's (vLLM's per-LoRA prefix caching)", async () => {
    const decoder = new Decoder(lora.session, lora.spec, sampler, new PrefixCache(8 << 20, lora.spec));
    const prompt = Array.from({ length: 40 }, (_, i) => 1000 + i); // two whole blocks of 16
    const cachedOf = async (seq: string, with_?: AdapterRef) => {
      const joined = await decoder.step({ join: [{ seq, prompt, sampling: greedy, adapter: with_ }], advance: [], release: [] });
      await decoder.step({ join: [], advance: [], release: [seq] });
      return [joined.cached?.[seq] ?? 0, joined.tokens[seq]];
    };
    const [, sonnets] = await cachedOf('s1', adapter('sonnets'));
    const [cachedAfterAdapter, base] = await cachedOf('b1');
    expect(cachedAfterAdapter).toBe(0); // the adapter's keys and values are not the model's
    expect(sonnets).not.toBe(base);
    expect(await cachedOf('b2')).toEqual([32, base]);
    expect(await cachedOf('s2', adapter('sonnets'))).toEqual([32, sonnets]); // its own, found again
    expect(await cachedOf('p1', adapter('pirate'))).toEqual([0, expect.any(Number)]); // another adapter's: apart
  });

  it('fails a sequence alone when its adapter cannot be read, or the model takes none', async () => {
    const decoder = new Decoder(lora.session, lora.spec, sampler);
    const result = await decoder.step({
      join: [
        { seq: 'gone', prompt: PROMPT, sampling: greedy, adapter: { name: 'gone', path: '/nonexistent/adapter' } },
        { seq: 'ok', prompt: PROMPT, sampling: greedy },
      ],
      advance: [],
      release: [],
    });
    expect(result.failed?.gone).toMatch(/LoRA adapter gone cannot be used: .*adapter_config.json: cannot be read \(ENOENT\)/);
    expect(result.tokens.ok).toBeTypeOf('number');
    const other = await new Decoder(plain.session, plain.spec, sampler).step({
      join: [{ seq: 'x', prompt: PROMPT, sampling: greedy, adapter: adapter('sonnets') }],
      advance: [],
      release: [],
    });
    expect(other.failed?.x).toMatch(/takes no LoRA adapters/);
  });
});

describe('LoraStack', () => {
  it("stacks a run's adapters once: the same set in another row order reuses it, each row's slot following", async () => {
    const targets = lora.spec.lora ?? [];
    const cache = new AdapterCache(targets);
    const [s, p] = await Promise.all([cache.load(adapter('sonnets')), cache.load(adapter('pirate'))]);
    const stack = new LoraStack(targets);
    const first = stack.feeds([s, undefined, p]);
    const again = stack.feeds([p, s, s, undefined]);
    expect(again['lora.0.attn.c_attn.a']).toBe(first['lora.0.attn.c_attn.a']);
    expect(first['lora.0.attn.c_attn.a'].dims).toEqual([3, 32, 8]); // none, pirate, sonnets; pirate's rank 8
    expect([...(again.lora_slot.data as BigInt64Array)]).toEqual([1n, 2n, 2n, 0n]);
    expect(stack.feeds([s])['lora.0.attn.c_attn.a']).not.toBe(first['lora.0.attn.c_attn.a']);
  });
});

describe('readAdapter', () => {
  const targets = () => lora.spec.lora ?? [];

  it("names what does not fit the model: another model's shapes, a layer it takes no adapter for", async () => {
    await expect(readAdapter(adapter('wide').path, targets())).rejects.toThrow(
      /lora_A.weight is \[4, 768\]; for this model and r=4 it must be \[4, 32\] \(an adapter for another model\?\)/,
    );
    await expect(readAdapter(adapter('mlp').path, targets())).rejects.toThrow(
      /changes layer h.0.mlp.c_fc; the model takes adapters for attn.c_attn \(layers 0-1\)/,
    );
  });

  it('reads FP16 and BF16 weights', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lora-'));
    const t = targets()[0];
    // A: FP16 1.0 (0x3c00), -2 (0xc000) alternating; B: BF16 0.5 (0x3f00), and a subnormal FP16 in A's last.
    const a = Buffer.alloc(2 * t.in);
    for (let i = 0; i < t.in; i++) a.writeUInt16LE(i % 2 ? 0xc000 : 0x3c00, 2 * i);
    a.writeUInt16LE(0x0001, 2 * (t.in - 1));
    const b = Buffer.alloc(2 * t.out);
    for (let i = 0; i < t.out; i++) b.writeUInt16LE(0x3f00, 2 * i);
    const key = 'base_model.model.transformer.h.0.attn.c_attn';
    const header = JSON.stringify({
      [`${key}.lora_A.weight`]: { dtype: 'F16', shape: [1, t.in], data_offsets: [0, a.length] },
      [`${key}.lora_B.weight`]: { dtype: 'BF16', shape: [t.out, 1], data_offsets: [a.length, a.length + b.length] },
    });
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(header.length));
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'adapter_model.safetensors'), Buffer.concat([length, Buffer.from(header), a, b]));
    await writeFile(join(dir, 'adapter_config.json'), JSON.stringify({ r: 1, lora_alpha: 2 }));
    const w = await readAdapter(dir, targets());
    expect([...(w.a[0] as Float32Array).subarray(0, 4)]).toEqual([1, -2, 1, -2]);
    expect((w.a[0] as Float32Array)[t.in - 1]).toBeCloseTo(2 ** -24, 30);
    expect([...(w.b[0] as Float32Array).subarray(0, 2)]).toEqual([1, 1]); // 0.5 scaled by lora_alpha / r = 2
    expect(w.a[1]).toBeUndefined(); // layer 1 not adapted: fed zeros
  });
});
