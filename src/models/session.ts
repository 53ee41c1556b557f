import type { DType, Inputs, TypedArray } from '../tensor/index.js';
import { allocate, elementCount } from '../tensor/index.js';
import { type CudaOptions, cudaOptionsString, cudaOptionsUnavailable, hasCudaOptions, missingCudaProvider } from './cuda-options.js';
import { ort } from './ort.js';
import { RunTrace } from './run-trace.js';
import type { ModelSignature } from './signature.js';
import { batchSignature, type LayoutConfig, modelLayout, toModelLayout } from './stateful.js';

export type DeviceSpec = string; // cpu | cuda | cuda:N | auto
export type Provider = 'cpu' | `cuda:${number}`;

const ORT_TYPES: Record<DType, ort.Tensor.Type> = {
  FP32: 'float32',
  FP64: 'float64',
  FP16: 'float16',
  INT8: 'int8',
  INT16: 'int16',
  INT32: 'int32',
  INT64: 'int64',
  UINT8: 'uint8',
  UINT16: 'uint16',
  UINT32: 'uint32',
  UINT64: 'uint64',
  BOOL: 'bool',
};
const FROM_ORT = Object.fromEntries(Object.entries(ORT_TYPES).map(([k, v]) => [v, k])) as Record<string, DType>;

export type OpenedSession = {
  session: ort.InferenceSession;
  provider: Provider;
  /** Why CUDA was not used when `auto` asked for it. */
  fallback?: string;
  /** The CUDA provider's options as ONNX Runtime reports them, where the model has `cuda:` options. */
  cudaOptions?: string;
};

/**
 * Opens an ONNX Runtime session on the requested device. `auto` tries CUDA first and falls back to the
 * CPU: onnxruntime-node throws (rather than falling back itself) when its CUDA provider cannot load.
 * `cuda` options reach the provider through the preloaded shim (cuda-options.ts), which the replica's
 * process must have been started with; options that are given are applied or the session fails.
 */
export async function openSession(path: string, device: DeviceSpec, threads = 0, cuda: CudaOptions = {}): Promise<OpenedSession> {
  const base: ort.InferenceSession.SessionOptions = {
    graphOptimizationLevel: 'all',
    // ONNX Runtime's pool threads spin between runs by default. A replica's runs come in bursts and share
    // the machine with the gateway and other replicas: measured here, a 2-thread session running a small
    // batch every 2 ms burned 3.1 s of CPU per 3 s spinning, 0.8 s without, at the same rate. (On a CUDA
    // replica the pool has a thread per core and mostly waits for the GPU.)
    extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
    ...RunTrace.profileOptions(),
  };
  if (threads > 0) base.intraOpNumThreads = threads;
  if (device === 'cpu') return { session: await ort.InferenceSession.create(path, { ...base, executionProviders: ['cpu'] }), provider: 'cpu' };
  const deviceId = device.startsWith('cuda:') ? Number(device.slice(5)) : 0;
  const onCuda = { ...base, executionProviders: [{ name: 'cuda', deviceId } as ort.InferenceSession.ExecutionProviderConfig] };
  const missing = missingCudaProvider();
  if (missing && device === 'auto') {
    return { session: await ort.InferenceSession.create(path, { ...base, executionProviders: ['cpu'] }), provider: 'cpu', fallback: missing };
  }
  const withOptions = hasCudaOptions(cuda);
  // Read by the shim when the provider is appended; a process without the shim ignores it (checked below).
  // Cleared for a session without options: an earlier session's (one process may open several) must not apply.
  if (withOptions) process.env.INFERGATE_CUDA_OPTIONS = cudaOptionsString(deviceId, cuda);
  else delete process.env.INFERGATE_CUDA_OPTIONS;
  try {
    const session = await ort.InferenceSession.create(path, onCuda);
    if (withOptions && process.env.INFERGATE_CUDA_OPTIONS_SHIM !== '1') {
      await session.release();
      const why = process.env.INFERGATE_CUDA_OPTIONS_SHIM ?? cudaOptionsUnavailable() ?? 'it was not preloaded';
      throw new Error(`CUDA options are configured but the shim that applies them is not active: ${why}`);
    }
    return { session, provider: `cuda:${deviceId}`, cudaOptions: withOptions ? process.env.INFERGATE_CUDA_OPTIONS_EFFECTIVE : undefined };
  } catch (err) {
    // Options that are wrong for this provider are the user's to fix, not a reason to run on the CPU.
    if (device !== 'auto' || String(err).includes('CUDA options')) {
      throw new Error(`CUDA provider for ${device} failed to load: ${firstLine(err)}`, { cause: err });
    }
    const session = await ort.InferenceSession.create(path, { ...base, executionProviders: ['cpu'] });
    return { session, provider: 'cpu', fallback: firstLine(err) };
  }
}

export async function runSession(session: ort.InferenceSession, inputs: Inputs): Promise<Inputs> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const [name, t] of Object.entries(inputs)) feeds[name] = new ort.Tensor(ORT_TYPES[t.dtype], t.data as never, t.shape);
  const results = await session.run(feeds);
  const outputs: Inputs = {};
  for (const [name, t] of Object.entries(results)) {
    const dtype = FROM_ORT[t.type];
    if (!dtype) throw new Error(`output ${name} has unsupported type ${t.type}`);
    outputs[name] = { dtype, shape: [...t.dims], data: t.data as TypedArray };
  }
  return outputs;
}

/**
 * The warm-up runs: one with `shapes`, or one per batch size with every input's first dimension set to
 * it (the first run of each shape is where CUDA picks its kernels, so it must not be a user's).
 */
export function warmupRuns(signature: ModelSignature, shapes: Record<string, number[]>, batches: number[] = [], layout?: LayoutConfig): Inputs[] {
  // A stateful model's batches are made batch first and laid out as the model takes them, as the gateway sends them.
  const model = layout && modelLayout(signature, layout);
  const sig = model ? batchSignature(signature, model) : signature;
  const runs = batches.length === 0 ? [warmupInputs(sig, shapes)] : batches.map((b) => warmupInputs(sig, shapes, b));
  return model ? runs.map((r) => toModelLayout(r, model)) : runs;
}

/** Zero-filled inputs for the warm-up run; dynamic dimensions take `shapes[name]` or 1, the first `batch` if given. */
export function warmupInputs(signature: ModelSignature, shapes: Record<string, number[]> = {}, batch?: number): Inputs {
  const inputs: Inputs = {};
  for (const spec of signature.inputs) {
    const given = shapes[spec.name] ?? spec.shape.map((d) => (typeof d === 'number' ? d : 1));
    const shape = batch === undefined ? given : [batch, ...given.slice(1)];
    inputs[spec.name] = { dtype: spec.dtype, shape, data: allocate(spec.dtype, elementCount(shape)) };
  }
  return inputs;
}

function firstLine(err: unknown): string {
  return String((err as Error)?.message ?? err).split('\n')[0];
}
