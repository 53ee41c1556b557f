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
  /** A replica is ready, or none is required (scale to zero) and starting one is not failing. */
  isReady(): boolean;
  /** Why replicas fail to start, while they do. */
  notReadyReason?(): string | undefined;
  replicas(): object[];
  /** The pool as /admin/pools shows it. */
  admin?(): object;
}

export type GatewayEnv = { Variables: { requestId: string } };
