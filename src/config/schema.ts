import { z } from 'zod';

// YAML keys are snake_case (Modal's and KServe's vocabulary); every object is strict so a typo is an
// error that names the key, not an option silently ignored.

const positiveInt = z.number().int().positive();
const nonNegative = z.number().min(0);

const device = z.string().regex(/^(cpu|cuda|cuda:\d+|auto)$/, 'expected cpu, cuda, cuda:N or auto');

const padding = z
  .object({
    /** Axes (of the input, batch axis excluded) along which requests of different sizes may be zero-padded to share a batch. */
    axes: z.array(z.number().int().positive()).min(1),
    /** @default 0 */
    value: z.number().default(0),
  })
  .strict();

export const batchingSchema = z
  .object({
    /** Most rows in one batch; 1 turns batching off. @default 8 */
    max_batch_size: positiveInt.default(8),
    /** Longest the first request of a batch waits for company, in ms. @default 2 */
    wait_ms: nonNegative.default(2),
    /** Most rows waiting per model; past it requests get 503 with Retry-After. @default 1024 */
    max_queue_size: positiveInt.default(1024),
    /** A queued request not dispatched within this many ms gets 504. @default 30000 */
    timeout_ms: positiveInt.default(30_000),
    /** Batches in flight per replica. @default 1 */
    max_inputs: positiveInt.default(1),
    /** Inputs that may be padded to batch together, by input name. @default {} */
    pad: z.record(z.string(), padding).default({}),
  })
  .strict();

export const scalingSchema = z
  .object({
    /** Replicas kept running with no traffic; 0 scales to zero. @default 0 */
    min_containers: z.number().int().min(0).default(0),
    /** Most replicas. @default max(1, min_containers) */
    max_containers: positiveInt.optional(),
    /** Extra idle replicas kept warm above what the load needs, while there is load. @default 0 */
    buffer_containers: z.number().int().min(0).default(0),
    /** In-flight batches per replica the autoscaler aims for (max_inputs stays the hard cap). @default batching.max_inputs */
    target_inputs: positiveInt.optional(),
    /** Seconds a replica must sit idle before it may be stopped. @default 60 */
    scaledown_window: nonNegative.default(60),
    /** Seconds a replica may take to become ready (process, session, warm-up). @default 120 */
    startup_timeout: z.number().positive().default(120),
    /** Replicas of this model per GPU, for device cuda/auto on GPU machines. @default 1 */
    replicas_per_gpu: positiveInt.default(1),
  })
  .strict()
  .refine((s) => s.max_containers === undefined || s.max_containers >= s.min_containers, {
    message: 'max_containers must be at least min_containers',
    path: ['max_containers'],
  });

export const modelSchema = z
  .object({
    /** The .onnx file, relative to the config file. */
    path: z.string().min(1),
    /** @default auto (CUDA when its provider loads, otherwise CPU) */
    device: device.default('auto'),
    /** ONNX Runtime intra-op threads per replica; 0 lets ONNX Runtime choose. @default 0 */
    threads: z.number().int().min(0).default(0),
    /** Shapes for the warm-up run, by input name; dynamic dimensions not given here warm up as 1. */
    warmup_shapes: z.record(z.string(), z.array(positiveInt)).default({}),
    batching: batchingSchema.default(() => batchingSchema.parse({})),
    scaling: scalingSchema.default(() => scalingSchema.parse({})),
  })
  .strict();

export const serverSchema = z
  .object({
    /** Overridden by $PORT. @default 8080 */
    port: z.number().int().min(0).max(65535).default(8080),
    /** @default 0.0.0.0 */
    host: z.string().default('0.0.0.0'),
    /** Largest request body, checked while reading. @default 67108864 (64 MiB) */
    max_body_bytes: positiveInt.default(64 * 1024 * 1024),
    /** How long shutdown waits for accepted requests before stopping replicas anyway, in s. @default 30 */
    shutdown_timeout_s: nonNegative.default(30),
  })
  .strict();

export const configSchema = z
  .object({
    server: serverSchema.default(() => serverSchema.parse({})),
    models: z
      .record(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'expected a model name of letters, digits, _ . -'), modelSchema)
      .refine((m) => Object.keys(m).length > 0, 'expected at least one model'),
  })
  .strict();

export type Config = z.infer<typeof configSchema>;
export type ModelConfig = z.infer<typeof modelSchema>;
export type BatchingConfig = z.infer<typeof batchingSchema>;
export type ScalingConfig = z.infer<typeof scalingSchema>;
export type ServerConfig = z.infer<typeof serverSchema>;
