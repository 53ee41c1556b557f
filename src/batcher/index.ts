export { Batcher, type BatcherOptions, type BatcherStats, type BatchTarget, type SubmitOptions, type Submitted } from './batcher.js';
export { type BatchDecision, type BatchRule, decideBatch, type QueuedView } from './decide.js';
export { groupKey, type PadRule, splitOutputs, stackInputs } from './stack.js';
