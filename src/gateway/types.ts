import type { BatcherStats, SubmitOptions, Submitted } from '../batcher/index.js';
import type { ModelSignature } from '../models/index.js';
import type { Inputs } from '../tensor/index.js';

/** What the gateway needs of a served model: its signature, a way in, and how it is doing. */
export interface ServedModel {
  name: string;
  signature: ModelSignature;
  /** The configured device (cpu, cuda, cuda:N, auto). */
  device: string;
  maxBatchSize: number;
  batcher: { submit(inputs: Inputs, opts?: SubmitOptions): Promise<Submitted>; stats(): BatcherStats };
  isReady(): boolean;
  replicas(): object[];
}

export type GatewayEnv = { Variables: { requestId: string } };
