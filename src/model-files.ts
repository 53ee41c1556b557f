import { readFile, stat } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { Config, ModelConfig } from './config/index.js';
import { ConfigError } from './config/index.js';
import {
  batchSignature,
  callerSignature,
  describeTensors,
  type EncoderInputs,
  loadTokenizer,
  type ModelLayout,
  type ModelSignature,
  modelLayout,
  multiplexedIds,
  multiplexedPath,
  readSignature,
  servedVersions,
  type Tokenizer,
  versionsServed,
} from './models/index.js';

// What a config's model files say, read and checked before anything starts: signatures, versions, labels,
// dictionaries, tokenizers, a stateful model's layout, when the files last changed.

/** Reads every model's signature (config mistakes are reported before anything starts). */
export async function loadSignatures(config: Config): Promise<Map<string, ModelSignature>> {
  const signatures = new Map<string, ModelSignature>();
  for (const [name, model] of Object.entries(config.models)) {
    // A multiplexed model's tensors are its first model's (each other one is checked against them when asked
    // for); a versioned model's, its latest version's (every version served must take and give the same).
    const versions = versionsOf(name, model);
    const path = model.multiplex
      ? multiplexedPath(model.path, firstModelId(name, model.path))
      : versions
        ? multiplexedPath(model.path, versions[versions.length - 1])
        : model.path;
    const signature = await signatureAt(name, path);
    const latest = describeTensors(signature);
    for (const version of versions?.slice(0, -1) ?? []) {
      const theirs = describeTensors(await signatureAt(name, multiplexedPath(model.path, version)));
      if (theirs !== latest)
        throw new ConfigError(
          `models.${name}: version ${version} takes and gives ${theirs}, not the latest version's ${latest} (the versions served share their tensors)`,
        );
    }
    checkAgainstSignature(name, model, signature);
    signatures.set(name, signature);
  }
  return signatures;
}

async function signatureAt(name: string, path: string): Promise<ModelSignature> {
  try {
    return await readSignature(path);
  } catch (err) {
    throw new ConfigError(`models.${name}.path: cannot read an ONNX model from ${path}: ${(err as Error).message}`);
  }
}

/** A versioned model's versions served now (its version_policy over the files there are), ascending; others: undefined. */
function versionsOf(name: string, model: ModelConfig): string[] | undefined {
  if (!model.path.includes('{version}')) return undefined;
  const { served, missing } = servedVersions(model.path, model.version_policy);
  if (missing.length) throw new ConfigError(`models.${name}.version_policy: no file for version ${missing.join(', ')} (${model.path})`);
  if (!served.length)
    throw new ConfigError(`models.${name}.path: no version's file matches ${model.path} (versions are positive integers: models/m/1/model.onnx)`);
  const unserved = Object.keys(model.version_traffic ?? {}).filter((v) => !served.includes(v));
  if (unserved.length)
    throw new ConfigError(`models.${name}.version_traffic: version ${unserved.join(', ')} is not served (the policy serves ${served.join(', ')})`);
  const shadow = model.version_shadow && String(model.version_shadow.version);
  if (shadow && !served.includes(shadow))
    throw new ConfigError(`models.${name}.version_shadow: version ${shadow} is not served (the policy serves ${served.join(', ')})`);
  return served;
}

/** Each model's labels file, if it has one: line i names class i (a trailing empty line is not a class). */
export async function loadLabels(config: Config): Promise<Map<string, string[]>> {
  const labels = new Map<string, string[]>();
  for (const [name, { labels: path }] of Object.entries(config.models)) {
    if (!path) continue;
    try {
      labels.set(name, (await readFile(path, 'utf8')).replace(/\r?\n$/, '').split(/\r?\n/));
    } catch (err) {
      throw new ConfigError(`models.${name}.labels: cannot read ${path}: ${(err as Error).message}`);
    }
  }
  return labels;
}

/** Each text recogniser's dictionary (one character per line), checked against its output's classes (blank + characters + space). */
export async function loadDictionaries(config: Config, signatures: Map<string, ModelSignature>): Promise<Map<string, string[]>> {
  const dictionaries = new Map<string, string[]>();
  for (const [name, { ocr }] of Object.entries(config.models)) {
    if (!ocr) continue;
    let lines: string[];
    try {
      lines = (await readFile(ocr.dictionary, 'utf8')).replace(/\r?\n$/, '').split(/\r?\n/);
    } catch (err) {
      throw new ConfigError(`models.${name}.ocr.dictionary: cannot read ${ocr.dictionary}: ${(err as Error).message}`);
    }
    const out = signatures.get(name)?.outputs[0];
    const classes = out?.shape.at(-1);
    if (out?.shape.length !== 3 || (typeof classes === 'number' && classes !== lines.length + 2))
      throw new ConfigError(
        `models.${name}.ocr: a text recogniser gives [batch, steps, classes] with classes = its dictionary's ${lines.length} characters + 2 (blank, space); this one gives ${out?.name} [${out?.shape.join(', ')}]`,
      );
    dictionaries.set(name, lines);
  }
  return dictionaries;
}

/** Every tokenizer the config names loads (a bad path is a config error, before anything starts). */
export async function checkTokenizers(config: Config): Promise<void> {
  for (const [name, { tokenizer }] of Object.entries(config.models)) {
    if (!tokenizer) continue;
    try {
      await loadTokenizer(tokenizer);
    } catch (err) {
      throw new ConfigError(`models.${name}.tokenizer: cannot load a Hugging Face tokenizer from ${tokenizer}: ${(err as Error).message}`);
    }
  }
}

/** A text encoder's tokenizer and limits, for its OpenAI-style routes; none (with a warning) if its tokenizer is not bundled. */
export async function encoderText(
  name: string,
  spec: EncoderInputs,
  log: Logger,
): Promise<{ tokenizer: Tokenizer; context: number; vocab: number } | undefined> {
  try {
    const tokenizer = await loadTokenizer(spec.tokenizer);
    return { tokenizer, context: spec.context ?? tokenizer.maxLength ?? 512, vocab: spec.vocab ?? tokenizer.size };
  } catch (err) {
    log.warn({ model: name }, `served over KServe only: ${(err as Error).message}`);
    return undefined;
  }
}

function checkAgainstSignature(name: string, model: ModelConfig, sig: ModelSignature): void {
  const inputs = new Map(sig.inputs.map((i) => [i.name, i]));
  for (const [input, rule] of Object.entries(model.batching.pad)) {
    const spec = inputs.get(input);
    if (!spec) throw new ConfigError(`models.${name}.batching.pad.${input}: the model has no input ${input} (it has ${[...inputs.keys()].join(', ')})`);
    const bad = rule.axes.find((a) => a >= spec.shape.length || typeof spec.shape[a] === 'number');
    if (bad !== undefined)
      throw new ConfigError(`models.${name}.batching.pad.${input}.axes: axis ${bad} is not a dynamic axis of ${input} [${spec.shape.join(', ')}]`);
  }
  // A warm-up shape the model cannot take failed every replica's start (validate passed it). Shapes are given as
  // the replica's batches are laid out (a state batch first; a constant is the gateway's, its shape ignored).
  const batched = new Map(batchSignature(sig, layoutOf(name, model, sig)).inputs.map((i) => [i.name, i]));
  for (const [input, shape] of Object.entries(model.warmup_shapes)) {
    if (!inputs.has(input)) throw new ConfigError(`models.${name}.warmup_shapes.${input}: the model has no input ${input}`);
    const spec = batched.get(input);
    const fits = !spec || (shape.length === spec.shape.length && spec.shape.every((d, i) => typeof d !== 'number' || d < 0 || d === shape[i]));
    if (!fits) throw new ConfigError(`models.${name}.warmup_shapes.${input}: [${shape.join(', ')}] is not a shape of ${input} [${spec.shape.join(', ')}]`);
  }
}

/** A model's states and constants, checked against it (a mistake is a config error naming the key). */
export function layoutOf(name: string, model: ModelConfig, sig: ModelSignature): ModelLayout {
  try {
    return modelLayout(sig, { state: model.sequence?.state, constants: model.constants });
  } catch (err) {
    throw new ConfigError(`models.${name}.${(err as Error).message}`);
  }
}

/** A multiplexed model's first model id (its files sorted): its tensors are the model's, and its replicas start with it open. */
function firstModelId(name: string, template: string): string {
  const [first] = multiplexedIds(template);
  if (first === undefined) throw new ConfigError(`models.${name}.path: no file matches ${template} (a multiplexed model needs one to start with)`);
  return first;
}

/** The tensors a model's callers send and get: its states and constants left out, a VAD's window length filled in. */
export function callerSignatureOf(name: string, model: ModelConfig, own: ModelSignature): ModelSignature {
  return vadSized(model, callerSignature(own, layoutOf(name, model, own)));
}

/** A VAD's windows have one length (context + window samples): callers are told, and any other is a 400, not the model's error. */
export function vadSized(model: ModelConfig, sig: ModelSignature): ModelSignature {
  if (!model.vad || sig.inputs.length !== 1 || sig.inputs[0].shape.length !== 2) return sig;
  const [input] = sig.inputs;
  return { ...sig, inputs: [{ ...input, shape: [input.shape[0], model.vad.context + model.vad.window] }] };
}

/**
 * When a model's files last changed: new weights at the same path replace the model too (and a versioned model's
 * versions served: a new version's folder, Triton's way of deploying one, replaces it on the next reload).
 */
export async function filesStamp(model: ModelConfig): Promise<string> {
  const paths = versionsServed(model)?.map((v) => multiplexedPath(model.path, v)) ?? [model.path];
  const files = [...paths, model.labels, model.tokenizer, model.ocr?.dictionary].filter((f): f is string => f !== undefined);
  const stamps = await Promise.all(
    files.map((f) =>
      stat(f).then(
        (st) => `${f}:${st.mtimeMs}:${st.size}`,
        () => `${f}:missing`,
      ),
    ),
  );
  return stamps.join('|');
}
