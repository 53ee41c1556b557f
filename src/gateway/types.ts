import type {
  GenerateHooks,
  GenerateRequest,
  GenerateResult,
  HandingSequence,
  HeldSequence,
  SequenceRequest,
  SubmitOptions,
  Submitted,
  TritonModelStat,
} from '../batcher/index.js';
import type { ClassifierSpec, EmbeddingSpec, ModelSignature, Pooling, SequenceState, Tokenizer } from '../models/index.js';
import type { Inputs } from '../tensor/index.js';

/** What the gateway needs of a served model: its signature, a way in, and how it is doing. */
export interface ServedModel {
  name: string;
  /** Other names requests may give it (config `aliases`; changed in place by a reload). */
  aliases?: readonly string[];
  signature: ModelSignature;
  /** The configured device (cpu, cuda, cuda:N, auto). */
  device: string;
  maxBatchSize: number;
  /** The batching settings Triton's model configuration shows (`batching` in the config). */
  batching?: { waitMs: number; maxQueueSize: number; timeoutMs: number; batchSizes?: number[] };
  /** Class names by index (the config's `labels` file), for Triton's classification extension. */
  labels?: readonly string[];
  /** Tensor models: the dynamic batcher. */
  batcher?: { submit(inputs: Inputs, opts?: SubmitOptions): Promise<Submitted> };
  /**
   * Stateful models (config `sequence`): each request belongs to a sequence whose state the gateway keeps
   * (Triton's sequence batcher); `vad`: a voice activity detector's audio framing (/v1/audio/vad).
   */
  sequences?: {
    submit(seq: SequenceRequest, inputs: Inputs, opts?: SubmitOptions): Promise<Submitted>;
    /** Sequences kept now. */
    active(): number;
    /** A sequence with no request for this long is dropped. */
    idleMs: number;
    states: readonly SequenceState[];
    release(seq: Pick<SequenceRequest, 'id' | 'owner'>): void;
    /** A fleet's gateways hand sequences to each other as which of them holds one changes (see FleetSequences). */
    has(seq: Pick<SequenceRequest, 'id' | 'owner'>): boolean;
    handOver(seq: Pick<SequenceRequest, 'id' | 'owner'>, signal?: AbortSignal): Promise<HeldSequence | undefined>;
    takeOver(held: HeldSequence, opts?: { copy?: boolean }): 'taken' | 'has' | 'refused';
    snapshot(seq: Pick<SequenceRequest, 'id' | 'owner'>): HeldSequence | undefined;
    handAll(): HandingSequence[];
    /** A voice activity detector: its framing, and its audio input and probability output. */
    vad?: { sampleRate: number; window: number; context: number; input: string; output: string };
  };
  /** Generative models: continuous batching, the tokenizer, the context length and vocabulary size in tokens. */
  generation?: {
    scheduler: { generate(req: GenerateRequest, hooks: GenerateHooks): Promise<GenerateResult> };
    tokenizer: Tokenizer;
    context: number;
    vocab: number;
    /** Its LoRA adapters (a model that takes them: models/gpt.py --lora), which requests name as their model. */
    adapters?: import('./lora.js').LoraAdapters;
    /** `caller`: each caller's prompts are cached apart (config prefix_cache_scope). */
    cacheScope?: 'shared' | 'caller';
    /** A reasoning model's: how its chat answers' thinking is told from the rest (config reasoning_parser). */
    reasoningParser?: import('./openai/reasoning.js').ReasoningParser;
  };
  /** Text encoders (/v1/embeddings, through `batcher`): the tokenizer, the longest input and vocabulary in tokens, the pooling. */
  embedding?: {
    spec: EmbeddingSpec;
    tokenizer: Tokenizer;
    context: number;
    vocab: number;
    /** Length of the model's embeddings, if its output says. */
    dimensions?: number;
    pooling: Pooling;
    normalize: boolean;
  };
  /** Text recognisers (/v1/ocr, through `batcher`): the detector model that finds their lines, and their characters by class. */
  ocr?: { detector: string; dictionary: readonly string[] };
  /** A multiplexed model (config `multiplex`): its requests name one of its models (SubmitOptions.modelId, from a header). */
  multiplexed?: { maxModelsPerReplica: number };
  /**
   * A versioned model's versions served, ascending (config `version_policy`; the last is the latest): a request
   * names one (SubmitOptions.modelId, from the URL's /versions/{v}) or gets `unnamed()` — the latest, or one drawn
   * by the config's `version_traffic` (a canary split). Another model has one version, "1".
   */
  versions?: {
    served: readonly string[];
    unnamed(): string;
    /** The version a request answered by `answered` also runs on, its answer discarded (config `version_shadow`), if drawn. */
    shadow(answered: string): string | undefined;
    /** Every version whose file is there now, served or not. */
    onDisk(): string[];
  };
  /** Ensembles (config `ensembles`): the steps its `batcher` runs, as Triton's ensemble_scheduling shows them. */
  ensemble?: { steps: { model: string; version?: number; inputs: Record<string, string>; outputs: Record<string, string> }[] };
  /** Sequence classifiers (/classify; with one class, a cross-encoder: /v1/rerank, /v1/score), through `batcher`. */
  classifier?: { spec: ClassifierSpec; tokenizer: Tokenizer; context: number; vocab: number };
  /** Queue and throughput counters, as /v2/models/{m}/stats shows them. */
  stats(): object;
  /** Triton's statistics (the same route's `model_stats`, what perf_analyzer reads): one per version. */
  statistics(): TritonModelStat[];
  /** A replica is ready, or none is required (scale to zero) and starting one is not failing. */
  isReady(): boolean;
  /** Why replicas fail to start, while they do. */
  notReadyReason?(): string | undefined;
  replicas(): object[];
  /** The pool as /admin/pools shows it. */
  admin?(): object;
  /** The pool's autoscaling, read and changed at runtime (the admin API). */
  autoscaling?: Autoscaling;
  /** Triton's model control: unloaded, a model stops its replicas and refuses requests until loaded again. */
  control?: ModelControl;
}

export type ModelControl = { loaded(): boolean; load(): Promise<void>; unload(): Promise<void> };

/** A pool's autoscaling settings, by the config's names (models.X.scaling). */
export type AutoscalingSettings = {
  min_containers: number;
  max_containers: number;
  buffer_containers: number;
  target_inputs: number;
  scaledown_window: number;
};
export type Autoscaling = { get(): AutoscalingSettings; update(patch: Partial<AutoscalingSettings>): AutoscalingSettings };

export type GatewayEnv = {
  Variables: {
    requestId: string;
    caller?: import('./auth/middleware.js').Caller;
    /** Under a rate limit: takes one more request's token from the caller's bucket, or throws its 429 (a WebSocket's messages). */
    spendRequest?: () => void;
    /**
     * Under a requests-at-once limit: gives up this request's place, for a request it hands its work to that takes one
     * of its own (an asynchronous call's, /invocations' forwarded one): one place for the work, not two.
     */
    handOver?: () => void;
    /** The request's server span (a no-op span when tracing is off). */
    span?: import('@opentelemetry/api').Span;
    /** Set by handlers, read by the request log and metrics. */
    model?: string;
    /** A versioned model's version that answered (metrics and the request log tell versions apart). */
    modelVersion?: string;
    /** Answered by the request an asynchronous call sent through the app again, which is logged and measured instead. */
    loggedByCall?: boolean;
    /** Answered 202 or 303 by an asynchronous call before its route ran: logged and measured under that route. */
    sentToCall?: boolean;
    queueMs?: number;
    batchSize?: number;
    /** Told of the request's body once read (readBody): data capture, when this request is captured; shadow traffic. */
    captureBody?: (body: Uint8Array) => void;
    /** Data capture drew this request (its shadow's request is captured too). */
    captureSampled?: boolean;
    /** Sent on by another gateway of the fleet, proven by its secret: the request was spent there (rate limits). */
    fromFleet?: boolean;
    /** Data capture: told of a shadow version's answer to this request (config version_shadow), when it is captured. */
    captureShadow?: (version: string, status: number, contentType: string, body: Uint8Array) => void;
    /** server.sse_keepalive_s, in ms (token streams: see `tokenStream`). */
    sseKeepAliveMs?: number;
  };
};
