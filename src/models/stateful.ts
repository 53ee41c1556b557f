import type { DType, Inputs, Tensor, TypedArray } from '../tensor/index.js';
import { allocate, elementCount, formatShape, numberToFloat16 } from '../tensor/index.js';
import type { ModelSignature, TensorSpec } from './signature.js';

/**
 * A state the model carries from one request of a sequence to the next (Triton's implicit state): the
 * gateway feeds `input` the `output` of the sequence's previous request, zeros at its start.
 */
export type SequenceState = {
  input: string;
  output: string;
  dtype: DType;
  /** The model's axis along which sequences stack (silero VAD's state is [2, batch, 128]: axis 1). */
  axis: number;
  /** One sequence's state, batch first: [1, …the other dimensions]. */
  shape: number[];
};

/**
 * How a model's own tensors differ from what the batcher stacks: states move their batch axis first (the
 * batcher stacks along axis 0) and back, and constant inputs (a scalar the model takes once per run, as
 * silero's sample rate) are filled in by the gateway.
 */
export type ModelLayout = { states: SequenceState[]; constants: Inputs };

/** What the config says of it: `sequence.state` ({input: output}) and `constants` ({input: value}). */
export type LayoutConfig = { state?: Record<string, string>; constants?: Record<string, number> };

/** The layout the config asks for, checked against the model (a mistake throws, naming what is wrong). */
export function modelLayout(sig: ModelSignature, opts: LayoutConfig): ModelLayout {
  const inputs = new Map(sig.inputs.map((t) => [t.name, t]));
  const outputs = new Map(sig.outputs.map((t) => [t.name, t]));
  const names = (m: Map<string, TensorSpec>) => [...m.keys()].join(', ');
  const constants: Inputs = {};
  for (const [name, value] of Object.entries(opts.constants ?? {})) {
    const spec = inputs.get(name);
    if (!spec) throw new Error(`constants.${name}: the model has no input ${name} (it has ${names(inputs)})`);
    if (!spec.shape.every((d) => typeof d === 'number'))
      throw new Error(`constants.${name}: ${name} ${formatShape(spec.shape)} has dynamic dimensions; a constant fills a tensor of fixed shape`);
    const shape = spec.shape as number[];
    constants[name] = { dtype: spec.dtype, shape, data: filled(spec.dtype, elementCount(shape), value) };
  }
  const rest = sig.inputs.filter((t) => !(t.name in constants) && !(t.name in (opts.state ?? {})));
  const batchDim = rest[0]?.shape[0];
  const states = Object.entries(opts.state ?? {}).map(([input, output]): SequenceState => {
    const spec = inputs.get(input);
    const out = outputs.get(output);
    if (!spec) throw new Error(`sequence.state.${input}: the model has no input ${input} (it has ${names(inputs)})`);
    if (!out) throw new Error(`sequence.state.${input}: the model has no output ${output} (it has ${names(outputs)})`);
    if (out.dtype !== spec.dtype) throw new Error(`sequence.state.${input}: ${input} is ${spec.dtype} but ${output} is ${out.dtype}`);
    const dynamic = spec.shape.flatMap((d, i) => (typeof d === 'string' ? [i] : []));
    let axis = dynamic.length === 1 ? dynamic[0] : -1;
    if (axis < 0 && typeof batchDim === 'string' && batchDim !== '?') axis = spec.shape.indexOf(batchDim);
    if (axis < 0)
      throw new Error(
        `sequence.state.${input}: cannot tell the batch axis of ${input} ${formatShape(spec.shape)}: it needs exactly one dynamic dimension, or one named like the inputs' batch dimension`,
      );
    const others = spec.shape.filter((_, i) => i !== axis);
    if (!others.every((d) => typeof d === 'number'))
      throw new Error(
        `sequence.state.${input}: ${input} ${formatShape(spec.shape)} must have fixed sizes apart from its batch axis (its start is zeros of that shape)`,
      );
    return { input, output, dtype: spec.dtype, axis, shape: [1, ...(others as number[])] };
  });
  return { states, constants };
}

/** The signature the batcher sees: states batch first, constants left out. */
export function batchSignature(sig: ModelSignature, layout: ModelLayout): ModelSignature {
  const stateOf = (name: string, side: 'input' | 'output') => layout.states.find((s) => s[side] === name);
  const moved = (t: TensorSpec, s: SequenceState | undefined): TensorSpec => (s ? { ...t, shape: [t.shape[s.axis] ?? 'batch', ...s.shape.slice(1)] } : t);
  const inputs = sig.inputs.filter((t) => !(t.name in layout.constants)).map((t) => moved(t, stateOf(t.name, 'input')));
  const outputs = sig.outputs.map((t) => moved(t, stateOf(t.name, 'output')));
  const dynamicFirst = (t: TensorSpec) => t.shape.length > 0 && typeof t.shape[0] === 'string';
  const batchable = inputs.length > 0 && inputs.every(dynamicFirst) && outputs.every(dynamicFirst);
  return { ...sig, inputs, outputs, batchAxis: batchable ? 0 : null };
}

/** The signature callers see: the batcher's, less the states (the gateway keeps those). */
export function callerSignature(sig: ModelSignature, layout: ModelLayout): ModelSignature {
  const batch = batchSignature(sig, layout);
  const hidden = new Set(layout.states.flatMap((s) => [s.input, s.output]));
  return { ...batch, inputs: batch.inputs.filter((t) => !hidden.has(t.name)), outputs: batch.outputs.filter((t) => !hidden.has(t.name)) };
}

/** A batch as the model takes it: states' batch axis back in place, constants added. */
export function toModelLayout(batch: Inputs, layout: ModelLayout): Inputs {
  const out: Inputs = { ...batch, ...layout.constants };
  for (const s of layout.states) if (batch[s.input]) out[s.input] = moveAxis(batch[s.input], 0, s.axis);
  return out;
}

/** The model's outputs as the batcher splits them: states batch first. */
export function fromModelLayout(outputs: Inputs, layout: ModelLayout): Inputs {
  const out: Inputs = { ...outputs };
  for (const s of layout.states) if (outputs[s.output]) out[s.output] = moveAxis(outputs[s.output], s.axis, 0);
  return out;
}

/** The tensor with axis `from` moved to `to` (one of them 0): a transpose of its [outer, middle, inner] view. */
export function moveAxis(t: Tensor, from: number, to: number): Tensor {
  if (from === to) return t;
  const shape = [...t.shape];
  const [dim] = shape.splice(from, 1);
  shape.splice(to, 0, dim);
  // Moving axis k to the front swaps [d0…dk-1] with dk; moving it back swaps dk with [d0…dk-1].
  const k = Math.max(from, to);
  const lead = from === 0 ? t.shape[0] : elementCount(t.shape.slice(0, k));
  const next = from === 0 ? elementCount(t.shape.slice(1, k + 1)) : t.shape[k];
  const inner = elementCount(t.shape.slice(k + 1));
  const src = t.data;
  const dst = allocate(t.dtype, src.length);
  for (let a = 0; a < lead; a++)
    for (let b = 0; b < next; b++) dst.set(src.subarray((a * next + b) * inner, (a * next + b + 1) * inner) as never, (b * lead + a) * inner);
  return { dtype: t.dtype, shape, data: dst };
}

/** A sequence's first state: zeros. */
export function initialState(s: SequenceState): Tensor {
  return { dtype: s.dtype, shape: s.shape, data: allocate(s.dtype, elementCount(s.shape)) };
}

function filled(dtype: DType, length: number, value: number): TypedArray {
  const data = allocate(dtype, length);
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) data.fill(BigInt(Math.trunc(value)));
  else data.fill(dtype === 'FP16' ? numberToFloat16(value) : value);
  return data;
}
