import { createHash, type Hash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { float16ToNumber } from '../tensor/index.js';
import { ort } from './ort.js';
import type { ModelSignature } from './signature.js';

/**
 * A layer a decoder takes LoRA adapters for (models/gpt.py --lora): inputs `lora.{layer}.{module}.a`
 * [adapters, in, rank] and `.b` [adapters, rank, out], with `lora_slot` [batch] naming each row's adapter.
 */
export type LoraTarget = { layer: number; module: string; in: number; out: number };

/**
 * An adapter as a decoder feeds it: per target (by index), A^T [in, rank] and scaling * B^T [rank, out]; none: not
 * adapted. `digest`: of its files' bytes, what tells one version of the adapter at a path from the next.
 */
export type LoraWeights = { rank: number; a: (Float32Array | undefined)[]; b: (Float32Array | undefined)[]; digest: string };

/**
 * Where an adapter is (PEFT's folder), what requests call it, and the digest of the files the gateway read there
 * (a replica holding another version of the path reads it again: load_inplace after new weights were written).
 */
export type AdapterRef = { name: string; path: string; digest?: string };

/** What tells adapters apart (replicas' caches, prefix-cache namespaces, the scheduler's max_loras): path and version. */
export const adapterKey = (a: { path: string; digest?: string }) => (a.digest ? `${a.path}@${a.digest}` : a.path);

/** The layers a decoder takes adapters for, if it has LoRA inputs at all. */
export function loraTargets(sig: ModelSignature): LoraTarget[] | undefined {
  if (!sig.inputs.some((i) => i.name === 'lora_slot')) return undefined;
  const targets: LoraTarget[] = [];
  for (const a of sig.inputs) {
    const m = /^lora\.(\d+)\.(.+)\.a$/.exec(a.name);
    const b = m && sig.inputs.find((i) => i.name === `lora.${m[1]}.${m[2]}.b`);
    if (!m || !b) continue;
    const [inDim, out] = [a.shape[1], b.shape[2]];
    if (typeof inDim === 'number' && typeof out === 'number') targets.push({ layer: Number(m[1]), module: m[2], in: inDim, out });
  }
  return targets.length > 0 ? targets : undefined;
}

/** A tensor of an adapter's file, as FP32. */
type Stored = { shape: number[]; data: Float32Array };

/**
 * Reads a PEFT LoRA adapter (a folder with adapter_config.json and adapter_model.safetensors, as
 * `save_pretrained` writes it and vLLM / TGI load it) for a decoder's targets. Throws a message naming what
 * does not fit: a layer the model takes no adapter for, a shape for another model, a missing file.
 */
export async function readAdapter(dir: string, targets: readonly LoraTarget[]): Promise<LoraWeights> {
  const digest = createHash('sha256');
  const config = await readJson(join(dir, 'adapter_config.json'), digest);
  if (config.peft_type !== undefined && config.peft_type !== 'LORA') throw new Error(`${dir}: a ${config.peft_type} adapter; only LoRA adapters are served`);
  const rank = config.r;
  if (!Number.isInteger(rank) || (rank as number) < 1) throw new Error(`${dir}/adapter_config.json: r must be a positive integer, got ${JSON.stringify(rank)}`);
  const alpha = typeof config.lora_alpha === 'number' ? config.lora_alpha : (rank as number);
  const r = rank as number;
  const scaling = alpha / (config.use_rslora === true ? Math.sqrt(r) : r);
  const tensors = await readSafetensors(join(dir, 'adapter_model.safetensors'), digest);
  const weights: LoraWeights = { rank: r, a: targets.map(() => undefined), b: targets.map(() => undefined), digest: digest.digest('hex').slice(0, 16) };
  const takes = [...new Set(targets.map((t) => t.module))].join(', ');
  for (const [name, t] of tensors) {
    const m = /(?:^|\.)h\.(\d+)\.(.+)\.lora_([AB])(?:\.default)?\.weight$/.exec(name);
    if (!m) throw new Error(`${dir}: tensor ${name} is not a layer's lora_A / lora_B weight`);
    const [layer, module, part] = [Number(m[1]), m[2], m[3]];
    const at = targets.findIndex((x) => x.layer === layer && x.module === module);
    if (at < 0)
      throw new Error(
        `${dir}: the adapter changes layer h.${layer}.${module}; the model takes adapters for ${takes} (layers 0-${Math.max(...targets.map((x) => x.layer))})`,
      );
    const target = targets[at];
    // PEFT keeps A as [r, in] and B as [out, r] (nn.Linear's layout, also for GPT-2's Conv1D layers).
    const expected = part === 'A' ? [r, target.in] : [target.out, r];
    if (t.shape.join() !== expected.join())
      throw new Error(
        `${dir}: ${name} is [${t.shape.join(', ')}]; for this model and r=${r} it must be [${expected.join(', ')}] (an adapter for another model?)`,
      );
    if (part === 'A') weights.a[at] = transpose(t.data, r, target.in);
    else weights.b[at] = transpose(t.data, target.out, r).map((x) => x * scaling);
  }
  targets.forEach((x, i) => {
    if (Boolean(weights.a[i]) !== Boolean(weights.b[i]))
      throw new Error(`${dir}: layer h.${x.layer}.${x.module} has lora_${weights.a[i] ? 'A' : 'B'} without lora_${weights.a[i] ? 'B' : 'A'}`);
  });
  if (!weights.a.some(Boolean)) throw new Error(`${dir}: the adapter has no LoRA weights`);
  return weights;
}

async function readJson(path: string, digest: Hash): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
    digest.update(text);
  } catch (err) {
    throw new Error(`${path}: cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); a LoRA adapter is a folder as PEFT saves it`);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`${path}: not JSON`);
  }
}

/** The tensors of a .safetensors file (an 8-byte little-endian header length, a JSON header, the bytes), as FP32. */
async function readSafetensors(path: string, digest: Hash): Promise<Map<string, Stored>> {
  const bytes = await readFile(path).catch((err) => {
    throw new Error(`${path}: cannot be read (${err.code ?? err.message}); adapters are served from adapter_model.safetensors`);
  });
  digest.update(bytes);
  const length = bytes.length >= 8 ? Number(bytes.readBigUInt64LE(0)) : Number.POSITIVE_INFINITY;
  if (length > bytes.length - 8) throw new Error(`${path}: not a safetensors file`);
  let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  try {
    header = JSON.parse(bytes.subarray(8, 8 + length).toString('utf8'));
  } catch {
    throw new Error(`${path}: not a safetensors file (its header is not JSON)`);
  }
  const data = bytes.subarray(8 + length);
  const out = new Map<string, Stored>();
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [start, end] = t.data_offsets ?? [];
    const count = (t.shape ?? []).reduce((a, b) => a * b, 1);
    const size = { F32: 4, F16: 2, BF16: 2 }[t.dtype];
    if (!size) throw new Error(`${path}: ${name} is ${t.dtype}; adapters are read in F32, F16 or BF16`);
    if (!(start >= 0 && end <= data.length && end - start === count * size)) throw new Error(`${path}: ${name}'s bytes do not match its shape`);
    const raw = data.subarray(start, end);
    out.set(name, { shape: t.shape, data: toFloat32(t.dtype, raw, count) });
  }
  return out;
}

function toFloat32(dtype: string, raw: Buffer, count: number): Float32Array {
  if (dtype === 'F32') return new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length));
  const out = new Float32Array(count);
  if (dtype === 'F16') for (let i = 0; i < count; i++) out[i] = float16ToNumber(raw.readUInt16LE(2 * i));
  else {
    const bits = new Uint32Array(out.buffer); // BF16 is the top half of an FP32
    for (let i = 0; i < count; i++) bits[i] = raw.readUInt16LE(2 * i) << 16;
  }
  return out;
}

/** [rows, cols] → [cols, rows]. */
function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = data[i * cols + j];
  return out;
}

/** An adapter a replica has read: its weights, and what tells it apart (adapterKey of the reference it was read for). */
export type LoadedAdapter = LoraWeights & { key: string };

/**
 * A replica's adapters, read once per folder and version and kept (the most recently used `keep`): sequences hold
 * theirs, so one forgotten here while it is in use goes on being fed.
 */
export class AdapterCache {
  private kept = new Map<string, Promise<LoadedAdapter>>();

  constructor(
    private targets: readonly LoraTarget[],
    private keep = 64,
  ) {}

  load(ref: AdapterRef): Promise<LoadedAdapter> {
    const key = adapterKey(ref);
    let loading = this.kept.get(key);
    if (loading) this.kept.delete(key);
    else loading = readAdapter(ref.path, this.targets).then((w) => ({ ...w, key }));
    this.kept.set(key, loading);
    loading.catch(() => this.kept.delete(key));
    if (this.kept.size > this.keep) this.kept.delete(this.kept.keys().next().value as string);
    return loading;
  }
}

/**
 * The LoRA inputs of one run: each row's slot (0: no adapter) and every target's A and B with the run's
 * adapters stacked (slot 0 zeros; ranks padded with zeros to the largest). The stack is rebuilt only when the
 * run's adapters change: steps of the same sequences reuse it.
 */
export class LoraStack {
  private last?: { key: string; feeds: Record<string, ort.Tensor> };

  constructor(private targets: readonly LoraTarget[]) {}

  feeds(rows: readonly (LoadedAdapter | undefined)[]): Record<string, ort.Tensor> {
    // In the order of their keys, not of the rows: rows move as sequences leave, the run's adapters stay the same.
    const adapters = [...new Set(rows.filter((a): a is LoadedAdapter => a !== undefined))].sort((a, b) => (a.key < b.key ? -1 : 1));
    const slots = BigInt64Array.from(rows, (a) => BigInt(a ? adapters.indexOf(a) + 1 : 0));
    const key = adapters.map((a) => a.key).join('\n');
    if (this.last?.key !== key) this.last = { key, feeds: this.stack(adapters) };
    return { lora_slot: new ort.Tensor('int64', slots, [rows.length]), ...this.last.feeds };
  }

  private stack(adapters: LoadedAdapter[]): Record<string, ort.Tensor> {
    const slots = adapters.length + 1;
    const rank = Math.max(1, ...adapters.map((a) => a.rank));
    const feeds: Record<string, ort.Tensor> = {};
    this.targets.forEach((t, i) => {
      const a = new Float32Array(slots * t.in * rank); // [slots, in, rank]
      const b = new Float32Array(slots * rank * t.out); // [slots, rank, out]
      adapters.forEach((adapter, s) => {
        const [at, bt] = [adapter.a[i], adapter.b[i]];
        if (!at || !bt) return;
        for (let row = 0; row < t.in; row++) a.set(at.subarray(row * adapter.rank, (row + 1) * adapter.rank), ((s + 1) * t.in + row) * rank);
        b.set(bt, (s + 1) * rank * t.out); // its rows first: the rest of its rank stays zero
      });
      const name = `lora.${t.layer}.${t.module}`;
      feeds[`${name}.a`] = new ort.Tensor('float32', a, [slots, t.in, rank]);
      feeds[`${name}.b`] = new ort.Tensor('float32', b, [slots, rank, t.out]);
    });
    return feeds;
  }
}
