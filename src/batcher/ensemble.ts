import { badInput } from '../errors/index.js';
import type { Dim, ModelSignature, TensorSpec } from '../models/index.js';
import type { Inputs, Tensor } from '../tensor/index.js';
import { formatShape } from '../tensor/index.js';
import type { SubmitOptions, Submitted } from './batcher.js';

/**
 * Ensembles (Triton's ensemble scheduling): models run on one request in turn, each fed from the request's
 * tensors or from earlier steps' outputs. Each step goes through its model's own batcher, so it is batched
 * with everyone else's requests to that model; steps that do not need each other run at once.
 */

/** An ensemble as the config gives it: each step maps its model's inputs from, and outputs to, ensemble tensors. */
export type EnsembleSpec = {
  steps: { model: string; version?: number; inputs: Record<string, string>; outputs: Record<string, string> }[];
  outputs?: string[];
};

/** What planning needs of a step's model: its tensors, the versions it serves (default: "1"), or why it cannot be a step (generative, stateful). */
export type StepModel = { signature: ModelSignature; versions?: readonly string[]; refusal?: string };

type Step = EnsembleSpec['steps'][number];

export type EnsemblePlan = {
  name: string;
  /** Each step after the steps whose outputs it reads, with its model's inputs (checked again at run time). */
  steps: (Step & { takes: Record<string, TensorSpec> })[];
  /** The request's tensors (specs from the first step that reads each) and the answered ones (from their makers). */
  signature: ModelSignature;
};

/** Checks an ensemble against its models (every problem an Error naming it) and orders its steps. */
export function planEnsemble(name: string, spec: EnsembleSpec, modelOf: (model: string) => StepModel | undefined): EnsemblePlan {
  const fail = (message: string): never => {
    throw new Error(`ensembles.${name}: ${message}`);
  };
  const made = new Map<string, { spec: TensorSpec; step: number }>();
  const read = new Map<string, { spec: TensorSpec; step: number }[]>();
  const takes: Record<string, TensorSpec>[] = [];
  spec.steps.forEach((step, i) => {
    const at = `step ${i} (model ${step.model})`;
    const model = modelOf(step.model) ?? fail(`${at}: no model named ${step.model}`);
    if (model.refusal) fail(`${at}: ${model.refusal}`);
    const versions = model.versions ?? ['1'];
    if (step.version !== undefined && !versions.includes(String(step.version)))
      fail(`${at}: version ${step.version} is not served (the model serves ${versions.length > 1 ? 'versions' : 'version'} ${versions.join(', ')})`);
    const { inputs, outputs } = model.signature;
    takes[i] = Object.fromEntries(inputs.map((t) => [t.name, t]));
    for (const input of inputs) if (!(input.name in step.inputs)) fail(`${at}: input ${input.name} is fed by no tensor (inputs: {${input.name}: …})`);
    for (const [input, tensor] of Object.entries(step.inputs)) {
      const s = inputs.find((t) => t.name === input) ?? fail(`${at}: the model has no input ${input} (it takes ${inputs.map((t) => t.name).join(', ')})`);
      read.set(tensor, [...(read.get(tensor) ?? []), { spec: s, step: i }]);
    }
    for (const [output, tensor] of Object.entries(step.outputs)) {
      const s = outputs.find((t) => t.name === output) ?? fail(`${at}: the model has no output ${output} (it makes ${outputs.map((t) => t.name).join(', ')})`);
      const other = made.get(tensor);
      if (other) fail(`tensor ${tensor} is made by step ${other.step} and step ${i}: each tensor by one step`);
      made.set(tensor, { spec: s, step: i });
    }
  });
  // A tensor read where another step makes it must fit: the same datatype, and rank and fixed sizes.
  for (const [tensor, readers] of read) {
    const maker = made.get(tensor)?.spec ?? readers[0].spec;
    for (const r of readers)
      if (!fits(maker, r.spec))
        fail(`tensor ${tensor} is ${maker.dtype} ${formatShape(maker.shape)} but step ${r.step} reads it as ${r.spec.dtype} ${formatShape(r.spec.shape)}`);
  }
  // Steps in an order where each comes after the makers of what it reads; none left to place: a cycle.
  const order: number[] = [];
  const placed = new Set<string>([...read.keys()].filter((t) => !made.has(t)));
  while (order.length < spec.steps.length) {
    const next = spec.steps.findIndex((s, i) => !order.includes(i) && Object.values(s.inputs).every((t) => placed.has(t)));
    if (next < 0) fail(`steps ${spec.steps.map((_, i) => i).filter((i) => !order.includes(i))} read each other's outputs in a cycle`);
    order.push(next);
    for (const t of Object.values(spec.steps[next].outputs)) placed.add(t);
  }
  const answered = spec.outputs ?? [...made.keys()].filter((t) => !read.has(t));
  if (answered.length === 0) fail('it answers nothing: every tensor its steps make is read by another step (name what it answers: outputs: [...])');
  const outputs = answered.map((t) => ({ ...(made.get(t) ?? fail(`output ${t} is made by no step`)).spec, name: t }));
  const inputs = [...read].filter(([t]) => !made.has(t)).map(([t, readers]) => ({ ...readers[0].spec, name: t }));
  const batched = spec.steps.every((s) => modelOf(s.model)?.signature.batchAxis === 0);
  return {
    name,
    steps: order.map((i) => ({ ...spec.steps[i], takes: takes[i] })),
    signature: { inputs, outputs, batchAxis: batched ? 0 : null, metadata: {} },
  };
}

/** Whether a tensor of spec `a` can be read where `b` is expected: same datatype and rank, equal sizes where both are fixed. */
function fits(a: { dtype: string; shape: Dim[] }, b: { dtype: string; shape: Dim[] }): boolean {
  return (
    a.dtype === b.dtype &&
    a.shape.length === b.shape.length &&
    a.shape.every((d, i) => typeof d !== 'number' || typeof b.shape[i] !== 'number' || d === b.shape[i])
  );
}

/** Submits a step's inputs to its model (through the model's batcher). */
export type StepSubmit = (model: string, inputs: Inputs, opts: SubmitOptions) => Promise<Submitted>;

/**
 * One request through the ensemble: each step starts once the tensors it reads are there. A step that fails
 * fails the request, and the steps still running are cancelled. Queue time is the steps' total; the batch size
 * the largest batch a step joined.
 */
export async function runEnsemble(plan: EnsemblePlan, inputs: Inputs, submit: StepSubmit, opts: SubmitOptions): Promise<Submitted> {
  const controller = new AbortController();
  const stop = () => controller.abort();
  if (opts.signal?.aborted) stop();
  opts.signal?.addEventListener('abort', stop, { once: true });
  const tensors = new Map<string, Promise<Tensor>>(Object.entries(inputs).map(([name, t]) => [name, Promise.resolve(t)]));
  let queueMs = 0;
  let batchSize = 0;
  try {
    const runs = plan.steps.map((step) => {
      const run = (async () => {
        const fed: Inputs = {};
        for (const [input, tensor] of Object.entries(step.inputs)) fed[input] = await (tensors.get(tensor) as Promise<Tensor>);
        check(plan.name, step, fed);
        // (a versioned model's step: its version, or none: the latest served)
        const modelId = step.version === undefined ? undefined : String(step.version);
        const r = await submit(step.model, fed, { ...opts, signal: controller.signal, modelId });
        queueMs += r.queueMs;
        batchSize = Math.max(batchSize, r.batchSize);
        return r.outputs;
      })();
      run.catch(stop); // the others need not go on
      for (const [output, tensor] of Object.entries(step.outputs)) {
        const made = run.then((outputs) => outputs[output]);
        made.catch(() => {}); // (its step's failure is the request's, reported once)
        tensors.set(tensor, made);
      }
      return run;
    });
    await Promise.all(runs);
    const outputs: Inputs = {};
    for (const o of plan.signature.outputs) outputs[o.name] = await (tensors.get(o.name) as Promise<Tensor>);
    return { outputs, queueMs, batchSize };
  } finally {
    opts.signal?.removeEventListener('abort', stop);
  }
}

/** A step's inputs against its model's: sizes the plan could not check (dynamic where made, fixed where read) are checked here. */
function check(ensemble: string, step: EnsemblePlan['steps'][number], fed: Inputs): void {
  for (const [input, t] of Object.entries(fed)) {
    const want = step.takes[input];
    if (!fits(t, want))
      throw badInput(
        `ensemble ${ensemble}: model ${step.model} takes ${input} as ${want.dtype} ${formatShape(want.shape)}, but tensor ${step.inputs[input]} is ${t.dtype} ${formatShape(t.shape)}`,
      );
  }
}
