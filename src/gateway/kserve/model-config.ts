import type { ServedModel } from '../types.js';
import { textInterface } from './text-tensors.js';

/** ONNX element types by KServe datatype, as Triton's model configuration names them. */
const TRITON_TYPES: Record<string, string> = {
  BOOL: 'TYPE_BOOL',
  UINT8: 'TYPE_UINT8',
  UINT16: 'TYPE_UINT16',
  UINT32: 'TYPE_UINT32',
  UINT64: 'TYPE_UINT64',
  INT8: 'TYPE_INT8',
  INT16: 'TYPE_INT16',
  INT32: 'TYPE_INT32',
  INT64: 'TYPE_INT64',
  FP16: 'TYPE_FP16',
  FP32: 'TYPE_FP32',
  FP64: 'TYPE_FP64',
  BYTES: 'TYPE_STRING',
};

/**
 * The model as Triton's `GET /v2/models/{m}/config` describes one — what Triton's clients (perf_analyzer,
 * model analyzer) read to learn the batch size and tensors: `max_batch_size` (0: no batch axis), tensors
 * with `dims` not counting the batch axis, `dynamic_batching` from `batching` (and `sequence_batching` for a stateful model), one instance group of
 * `max_containers` replicas; infergate's own settings under `parameters`. A generative model: its text tensors.
 */
export function tritonConfig(m: ServedModel) {
  const batched = m.signature.batchAxis === 0;
  const tensor = (t: ServedModel['signature']['inputs'][number]) => ({
    name: t.name,
    data_type: TRITON_TYPES[t.dtype] ?? `TYPE_${t.dtype}`,
    dims: (batched ? t.shape.slice(1) : t.shape).map((d) => (typeof d === 'number' ? d : -1)),
  });
  const b = m.batching;
  const scaling = m.autoscaling?.get();
  const common = {
    instance_group: [{ kind: m.device.startsWith('cuda') ? 'KIND_GPU' : m.device === 'cpu' ? 'KIND_CPU' : 'KIND_AUTO', count: scaling?.max_containers ?? 1 }],
    parameters: { device: m.device, ...(scaling && { scaling }), ...(m.labels && { labels: m.labels.length }) },
  };
  // An ensemble as Triton configures one: its tensors, and the steps (no instances: its models have them).
  if (m.ensemble)
    return {
      name: m.name,
      platform: 'ensemble',
      max_batch_size: batched ? m.maxBatchSize : 0,
      input: m.signature.inputs.map(tensor),
      output: m.signature.outputs.map(tensor),
      ensemble_scheduling: {
        step: m.ensemble.steps.map((s) => ({ model_name: s.model, model_version: s.version ?? -1, input_map: s.inputs, output_map: s.outputs })),
      },
    };
  // A generative model as Triton's vLLM backend configures one: text tensors, no batch axis (the continuous
  // batching is the replica's), decoupled (a stream's responses come one by one: perf_analyzer then streams).
  if (m.generation)
    return {
      name: m.name,
      platform: 'onnxruntime_onnx',
      backend: 'onnxruntime',
      max_batch_size: 0,
      input: textInterface.inputs.map(({ name, datatype, dims, optional }) => ({
        name,
        data_type: TRITON_TYPES[datatype],
        dims,
        ...(optional && { optional }),
      })),
      output: textInterface.outputs.map(({ name, datatype, dims }) => ({ name, data_type: TRITON_TYPES[datatype], dims })),
      model_transaction_policy: { decoupled: true },
      ...common,
    };
  return {
    name: m.name,
    platform: 'onnxruntime_onnx',
    backend: 'onnxruntime',
    max_batch_size: batched ? m.maxBatchSize : 0,
    input: m.signature.inputs.map(tensor),
    output: m.signature.outputs.map(tensor),
    // (the versions served now, whatever policy chose them: what a client may name)
    ...(m.versions && { version_policy: { specific: { versions: m.versions.served.map(Number) } } }),
    ...(batched &&
      b && {
        dynamic_batching: {
          ...(b.batchSizes && { preferred_batch_size: b.batchSizes }),
          max_queue_delay_microseconds: Math.round(b.waitMs * 1000),
          default_queue_policy: { max_queue_size: b.maxQueueSize, default_timeout_microseconds: Math.round(b.timeoutMs * 1000) },
        },
      }),
    // A stateful model: the sequence batcher with implicit state (dims of one sequence's state, as Triton lists them).
    ...(m.sequences && {
      sequence_batching: {
        max_sequence_idle_microseconds: Math.round(m.sequences.idleMs * 1000),
        state: m.sequences.states.map((s) => ({
          input_name: s.input,
          output_name: s.output,
          data_type: TRITON_TYPES[s.dtype] ?? `TYPE_${s.dtype}`,
          dims: s.shape.slice(1),
        })),
      },
    }),
    ...common,
  };
}
