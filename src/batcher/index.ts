export { type BatchEvent, Batcher, type BatcherOptions, type BatcherStats, type BatchTarget, type SubmitOptions, type Submitted } from './batcher.js';
export { type BatchDecision, type BatchRule, decideBatch, type QueuedView } from './decide.js';
export { type EnsemblePlan, type EnsembleSpec, planEnsemble, runEnsemble, type StepModel } from './ensemble.js';
export {
  type GenerateHooks,
  type GenerateRequest,
  type GenerateResult,
  type GenerationOptions,
  GenerationScheduler,
  type GenerationStats,
  type GenerationTarget,
  type SamplingParams,
  type SequenceEvent,
  type StepReplica,
  type TokenLogprobs,
} from './generation.js';
export { ResponseCache } from './response-cache.js';
export { type CarriedState, furtherOn, type HandingSequence, type HeldSequence, type SequenceRequest, Sequences, type SequencesOptions } from './sequences.js';
export { groupKey, lengthBucket, type PadRule, splitOutputs, stackInputs } from './stack.js';
export { type DurationStat, ModelStatistics, type TritonModelStat } from './statistics.js';
