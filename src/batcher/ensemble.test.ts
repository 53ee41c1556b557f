import { describe, expect, it } from 'vitest';
import type { ModelSignature } from '../models/index.js';
import type { Inputs, Tensor } from '../tensor/index.js';
import type { SubmitOptions, Submitted } from './batcher.js';
import { type EnsembleSpec, planEnsemble, runEnsemble, type StepModel } from './ensemble.js';

const sig = (inputs: [string, string, (number | string)[]][], outputs: [string, string, (number | string)[]][]): ModelSignature => ({
  inputs: inputs.map(([name, dtype, shape]) => ({ name, dtype: dtype as never, shape })),
  outputs: outputs.map(([name, dtype, shape]) => ({ name, dtype: dtype as never, shape })),
  batchAxis: 0,
  metadata: {},
});
const MODELS: Record<string, StepModel> = {
  decode: { signature: sig([['bytes', 'UINT8', ['N', 224, 224, 3]]], [['pixels', 'FP32', ['N', 3, 224, 224]]]) },
  classify: { signature: sig([['x', 'FP32', ['N', 3, 224, 224]]], [['probs', 'FP32', ['N', 1000]]]) },
  embed: {
    signature: sig(
      [['x', 'FP32', ['N', 3, 224, 224]]],
      [
        ['vector', 'FP32', ['N', 512]],
        ['norm', 'FP32', ['N']],
      ],
    ),
  },
  mix: {
    signature: sig(
      [
        ['a', 'FP32', ['N', 1000]],
        ['b', 'FP32', ['N', 512]],
      ],
      [['y', 'FP32', ['N', 8]]],
    ),
  },
  chat: { signature: sig([['input_ids', 'INT64', ['N', 'T']]], [['logits', 'FP32', ['N', 'T', 50257]]]), refusal: 'it is generative' },
};
const small: Record<string, StepModel> = {
  double: { signature: sig([['x', 'FP32', ['N', 'D']]], [['y', 'FP32', ['N', 'D']]]) },
  sum: {
    signature: sig(
      [
        ['a', 'FP32', ['N', 2]],
        ['b', 'FP32', ['N', 2]],
      ],
      [['y', 'FP32', ['N', 2]]],
    ),
  },
};
const plan = (spec: EnsembleSpec) => planEnsemble('e', spec, (m) => MODELS[m]);
const step = (model: string, inputs: Record<string, string>, outputs: Record<string, string>) => ({ model, inputs, outputs });

describe('planEnsemble', () => {
  it('orders steps after what they read, takes its inputs from the first reader and answers what no step reads', () => {
    const p = plan({
      steps: [
        step('mix', { a: 'probs', b: 'vector' }, { y: 'answer' }),
        step('classify', { x: 'pixels' }, { probs: 'probs' }),
        step('embed', { x: 'pixels' }, { vector: 'vector' }),
        step('decode', { bytes: 'image' }, { pixels: 'pixels' }),
      ],
    });
    expect(p.steps.map((s) => s.model)).toEqual(['decode', 'classify', 'embed', 'mix']);
    expect(p.signature.inputs).toEqual([{ name: 'image', dtype: 'UINT8', shape: ['N', 224, 224, 3] }]);
    expect(p.signature.outputs).toEqual([{ name: 'answer', dtype: 'FP32', shape: ['N', 8] }]);
    expect(p.signature.batchAxis).toBe(0);
    // Named outputs may be tensors other steps read as well.
    const named = plan({
      steps: [step('decode', { bytes: 'image' }, { pixels: 'pixels' }), step('classify', { x: 'pixels' }, { probs: 'p' })],
      outputs: ['pixels', 'p'],
    });
    expect(named.signature.outputs.map((o) => o.name)).toEqual(['pixels', 'p']);
  });

  it.each<[string, EnsembleSpec, RegExp]>([
    ['an unknown model', { steps: [step('nope', {}, {})] }, /step 0 \(model nope\): no model named nope/],
    ['a generative model', { steps: [step('chat', { input_ids: 'ids' }, { logits: 'l' })] }, /step 0 \(model chat\): it is generative/],
    ['an input fed by nothing', { steps: [step('mix', { a: 't' }, { y: 'o' })] }, /input b is fed by no tensor/],
    ['an input the model lacks', { steps: [step('classify', { x: 'i', z: 'j' }, { probs: 'o' })] }, /the model has no input z \(it takes x\)/],
    ['an output the model lacks', { steps: [step('classify', { x: 'i' }, { logits: 'o' })] }, /the model has no output logits \(it makes probs\)/],
    [
      'a tensor made twice',
      { steps: [step('classify', { x: 'i' }, { probs: 'o' }), step('embed', { x: 'i' }, { vector: 'o' })] },
      /tensor o is made by step 0 and step 1/,
    ],
    [
      'a datatype that does not fit',
      { steps: [step('decode', { bytes: 'i' }, { pixels: 'p' }), step('decode', { bytes: 'p' }, { pixels: 'q' })] },
      /tensor p is FP32 \[N, 3, 224, 224\] but step 1 reads it as UINT8/,
    ],
    [
      'a fixed size that does not fit',
      { steps: [step('embed', { x: 'i' }, { vector: 'v' }), step('mix', { a: 'v', b: 'v' }, { y: 'o' })] },
      /tensor v is FP32 \[N, 512\] but step 1 reads it as FP32 \[N, 1000\]/,
    ],
    ['an output no step makes', { steps: [step('classify', { x: 'i' }, { probs: 'o' })], outputs: ['p'] }, /output p is made by no step/],
    ['an ensemble that answers nothing', { steps: [step('classify', { x: 'i' }, {})] }, /it answers nothing/],
  ])('refuses %s, naming it', (_what, spec, message) => {
    expect(() => plan(spec)).toThrow(message);
  });

  it('refuses steps that read each other in a cycle', () => {
    const cycle = { steps: [step('double', { x: 'a' }, { y: 'b' }), step('double', { x: 'b' }, { y: 'a' }), step('double', { x: 'in' }, { y: 'out' })] };
    expect(() => planEnsemble('e', cycle, (m) => small[m])).toThrow(/steps 0,1 read each other's outputs in a cycle/);
  });
});

const tensor = (values: number[], shape = [1, values.length]): Tensor => ({ dtype: 'FP32', shape, data: Float32Array.from(values) });
const diamond = planEnsemble(
  'diamond',
  {
    steps: [step('double', { x: 'in' }, { y: 'left' }), step('double', { x: 'in' }, { y: 'right' }), step('sum', { a: 'left', b: 'right' }, { y: 'out' })],
  },
  (m) => small[m],
);

describe('runEnsemble', () => {
  it('runs steps that do not need each other at once, each with the request options, and sums their queue time', async () => {
    const started: string[] = [];
    const release: (() => void)[] = [];
    const submit = async (model: string, inputs: Inputs, opts: SubmitOptions): Promise<Submitted> => {
      started.push(model);
      expect(opts.priority).toBe(3);
      await new Promise<void>((r) => release.push(r));
      const values =
        model === 'double'
          ? Array.from(inputs.x.data as Float32Array, (v) => v * 2)
          : Array.from(inputs.a.data as Float32Array, (v, i) => v + (inputs.b.data as Float32Array)[i]);
      return { outputs: { y: tensor(values) }, queueMs: 1.5, batchSize: model === 'sum' ? 4 : 2 };
    };
    const done = runEnsemble(diamond, { in: tensor([1, 2]) }, submit, { priority: 3 });
    await new Promise((r) => setTimeout(r, 5));
    expect(started).toEqual(['double', 'double']); // both at once; sum waits for them
    for (const r of release.splice(0)) r();
    await new Promise((r) => setTimeout(r, 5));
    expect(started).toEqual(['double', 'double', 'sum']);
    for (const r of release.splice(0)) r();
    const r = await done;
    expect(Array.from(r.outputs.out.data as Float32Array)).toEqual([4, 8]);
    expect(r).toMatchObject({ queueMs: 4.5, batchSize: 4 });
  });

  it('fails when a step fails, cancelling the steps still running; a tensor that does not fit its reader is a 400', async () => {
    let cancelled = false;
    const submit = (model: string, _inputs: Inputs, opts: SubmitOptions): Promise<Submitted> =>
      new Promise((_resolve, reject) => {
        if (model === 'double' && !cancelled) {
          opts.signal?.addEventListener('abort', () => {
            cancelled = true;
            reject(new Error('cancelled'));
          });
          return;
        }
        reject(new Error('the replica died'));
      });
    // The first branch waits (until cancelled); the second fails.
    const order = { ...diamond, steps: [diamond.steps[0], { ...diamond.steps[1], model: 'sum-broken' }, diamond.steps[2]] };
    await expect(runEnsemble(order, { in: tensor([1, 2]) }, submit, {})).rejects.toThrow('the replica died');
    expect(cancelled).toBe(true);
    // A client gone already: no step runs for it.
    const gone = new AbortController();
    gone.abort();
    const seen: boolean[] = [];
    const refuse = async (_m: string, _i: Inputs, o: SubmitOptions): Promise<Submitted> => {
      seen.push(o.signal?.aborted ?? false);
      throw new Error('cancelled');
    };
    await expect(runEnsemble(diamond, { in: tensor([1, 2]) }, refuse, { signal: gone.signal })).rejects.toThrow('cancelled');
    expect(seen).toEqual([true, true]);
    // [1, 3] doubled is [1, 3]: sum takes [N, 2].
    const double = async (_m: string, inputs: Inputs): Promise<Submitted> => ({ outputs: { y: inputs.x }, queueMs: 0, batchSize: 1 });
    await expect(runEnsemble(diamond, { in: tensor([1, 2, 3]) }, double, {})).rejects.toMatchObject({
      status: 400,
      message: 'ensemble diamond: model sum takes a as FP32 [N, 2], but tensor left is FP32 [1, 3]',
    });
  });
});
