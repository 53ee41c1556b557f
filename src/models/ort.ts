import * as ort from 'onnxruntime-node';

/**
 * onnxruntime-node, with float16 tensors kept in Uint16Array on every Node version. onnxruntime-common picks
 * the array type for float16 once, at the first Tensor made: Float16Array where the runtime has one (Node 24
 * does), and then even a Uint16Array given as data is wrapped in a Float16Array view. onnxruntime-node
 * 1.29's binding reads a Float16Array's byte length as 0, so every float16 input fails with "not enough
 * space: expected 8, got 0" (microsoft/onnxruntime#32323). Making that first Tensor while Float16Array is
 * hidden keeps Uint16Array, as on Node 20 and 22. Every module that makes tensors imports ort from here.
 */
function keepFloat16InUint16Array(): void {
  const float16Array = Object.getOwnPropertyDescriptor(globalThis, 'Float16Array');
  if (!float16Array) return;
  delete (globalThis as { Float16Array?: unknown }).Float16Array;
  try {
    new ort.Tensor('float32', new Float32Array(1), [1]);
  } finally {
    Object.defineProperty(globalThis, 'Float16Array', float16Array);
  }
}

keepFloat16InUint16Array();

export { ort };
