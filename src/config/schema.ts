import { z } from 'zod';

// YAML keys are snake_case (Modal's and KServe's vocabulary); every object is strict so a typo is an
// error that names the key, not an option silently ignored.

const positiveInt = z.number().int().positive();
const positiveNumber = z.number().positive();
const nonNegative = z.number().min(0);
/** Models', ensembles' and adapters' names: requests name them in URLs and bodies. */
export const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** Node 22.12 added `reusePort`: threads of one process can then each bind the port, the kernel spreading connections. */
export function reusePortSupported(version = process.versions.node): boolean {
  const [major, minor] = version.split('.').map(Number);
  return major > 22 || (major === 22 && minor >= 12);
}

const device = z.string().regex(/^(cpu|cuda|cuda:\d+|auto)$/, 'expected cpu, cuda, cuda:N or auto');

const padding = z
  .object({
    /** Axes (of the input, batch axis excluded) along which requests of different sizes may be zero-padded to share a batch. */
    axes: z.array(z.number().int().positive()).min(1),
    /** @default 0 */
    value: z.number().default(0),
    /**
     * Requests batch only with others whose padded lengths fall in the same power-of-two range (up to 16
     * together), so none is padded to more than twice its size; false: any lengths share a batch. @default true
     */
    buckets: z.boolean().default(true),
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
    /**
     * Callers (by key, token subject, or address) take turns in the queue: each one's k-th waiting request goes
     * before anyone's (k+1)-th, so one caller's backlog does not hold up the others; false: first come, first
     * served. Priorities still come first. @default true
     */
    fair_share: z.boolean().default(true),
    /**
     * Generative models: a prompt longer than this is computed this many tokens per step, so that the other
     * sequences' tokens keep coming while it prefills (vLLM's chunked prefill); 0 computes it whole. @default 512
     */
    prefill_chunk: z.number().int().min(0).default(512),
    /**
     * The only batch sizes the model sees: a batch is padded with zero rows up to the nearest (their
     * results dropped), max_batch_size is always one of them, and each is warmed up when a replica
     * starts. For CUDA: cuDNN picks convolution algorithms per input shape the first time it meets one.
     * @default every size up to max_batch_size, unpadded
     */
    batch_sizes: z
      .array(positiveInt)
      .min(1)
      .refine((a) => a.every((v, i) => i === 0 || v > a[i - 1]), 'expected increasing sizes')
      .optional(),
    /**
     * With batch_sizes on CUDA, each replica opens a session per batch size, so that no session's input
     * shape ever changes: ONNX Runtime 1.29 with cuDNN 9 spends 3–4 ms in every convolution on a run whose
     * shape differs from the one before (ResNet-50: ~200 ms a run instead of 20 when sizes alternate).
     * Each session holds its own weights and memory arena on the GPU; false: one session takes every size.
     * @default true
     */
    session_per_batch_size: z.boolean().default(true),
  })
  .strict()
  .refine((b) => !b.batch_sizes || b.batch_sizes[b.batch_sizes.length - 1] <= b.max_batch_size, {
    message: 'batch_sizes must not exceed max_batch_size',
    path: ['batch_sizes'],
  });

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
    /**
     * Seconds a replica with work in flight may answer none of it before it is taken for hung, killed and
     * replaced (its batches are retried once, as after a crash); 0: never. @default 120
     */
    hang_timeout: nonNegative.default(120),
    /** Replicas of this model per GPU, for device cuda/auto on GPU machines. @default 1 */
    replicas_per_gpu: positiveInt.default(1),
  })
  .strict()
  .refine((s) => s.max_containers === undefined || s.max_containers >= s.min_containers, {
    message: 'max_containers must be at least min_containers',
    path: ['max_containers'],
  });

/**
 * CUDA execution provider options, by ONNX Runtime's own names, for replicas on a GPU (ignored on the CPU).
 * onnxruntime-node cannot pass them itself; native/cuda-options.c does (see the README's GPU section).
 */
export const cudaSchema = z
  .object({
    /** cuDNN's convolution algorithm search: EXHAUSTIVE (ONNX Runtime's default: benchmarks every algorithm per new shape, fastest kernels, slowest first run), HEURISTIC, DEFAULT. */
    cudnn_conv_algo_search: z.enum(['EXHAUSTIVE', 'HEURISTIC', 'DEFAULT']).optional(),
    /** Most bytes the provider's memory arena may hold (default: no limit); set it for several replicas on one GPU. */
    gpu_mem_limit: positiveInt.optional(),
    /** How the arena grows: kNextPowerOfTwo (default) or kSameAsRequested (holds less memory). */
    arena_extend_strategy: z.enum(['kNextPowerOfTwo', 'kSameAsRequested']).optional(),
    /** Convolutions in NHWC layout where the provider has NHWC kernels (fp16 tensor cores). @default false */
    prefer_nhwc: z.boolean().optional(),
    /** TF32 tensor-core math for fp32 MatMul and Conv. @default true */
    use_tf32: z.boolean().optional(),
    /** Let cuDNN take as much workspace memory as its fastest convolution wants. @default true */
    cudnn_conv_use_max_workspace: z.boolean().optional(),
    /** Copies on the default stream; false lets them overlap compute. @default true */
    do_copy_in_default_stream: z.boolean().optional(),
    // Named so that asking for it says why it is not here rather than "unrecognized key".
    enable_cuda_graph: z
      .never({
        error:
          'CUDA graphs replay fixed GPU addresses, so inputs and outputs must be bound to device memory (I/O binding), which onnxruntime-node cannot do: not supported',
      })
      .optional(),
  })
  .strict();

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
    cuda: cudaSchema.optional(),
    /**
     * A text file, one class name per line (line i names class i), relative to the config file: the
     * classification extension's results then carry labels (Triton's label_filename).
     */
    labels: z.string().min(1).optional(),
    /**
     * The model's Hugging Face tokenizer: its `tokenizer.json` (with `tokenizer_config.json` beside it) or their
     * directory, relative to the config file. @default the model's metadata `tokenizer` (gpt2, bundled)
     */
    tokenizer: z.string().min(1).optional(),
    /**
     * Generative models: host memory per replica for prompts' KV caches kept after prefill, so that a later
     * prompt starting the same way (a system prompt, earlier turns) computes only the rest; 0 turns it off. @default 256
     */
    prefix_cache_mb: z.number().min(0).default(256),
    /**
     * Who shares cached prompts: `shared` (everyone: a common system prompt is computed once for all), or `caller`
     * (each caller — key, token subject, address — its own: no caller's time to first token tells it what another
     * has sent, the side channel vLLM's cache_salt closes). Requests may add their own `cache_salt` either way.
     * @default shared
     */
    prefix_cache_scope: z.enum(['shared', 'caller']).default('shared'),
    /**
     * A reasoning model (one that thinks between <think> and </think> before answering): chat answers carry the
     * thinking as reasoning_content, apart from the content (vLLM's --reasoning-parser). `deepseek_r1`: thinking
     * until </think> (its template opens <think> in the prompt); `qwen3`: only between the two tags.
     */
    reasoning_parser: z.enum(['deepseek_r1', 'qwen3']).optional(),
    /**
     * Generative models that take LoRA adapters (models/gpt.py --lora): adapters by the name requests give as
     * their `model` (vLLM's --lora-modules), each a folder as PEFT saves it (adapter_config.json,
     * adapter_model.safetensors), relative to the config file. Requests of different adapters share steps.
     */
    /**
     * Generative models: speculative decoding by prompt lookup (vLLM's `ngram` method; no draft model): each step
     * drafts up to `num_speculative_tokens` tokens that followed the sequence's last `prompt_lookup_max` (down to
     * `prompt_lookup_min`) tokens earlier in its prompt or output, and checks them in one run — several tokens a
     * step where text repeats its context (quoting, editing, extraction). `suffix` (vLLM's suffix decoding) drafts
     * from earlier requests' texts too (the last `suffix_cache_tokens` of them, per replica, apart per adapter and
     * cache salt), where they match more of the sequence's last tokens: repeated requests come many tokens a step.
     * The text is what decoding one token a step gives (the same tokens for a seed).
     */
    speculative: z
      .object({
        method: z.enum(['ngram', 'suffix']).default('ngram'),
        /** With method suffix: tokens of earlier requests' texts kept to draft from, per replica. @default 65536 */
        suffix_cache_tokens: positiveInt.default(65536),
        num_speculative_tokens: positiveInt.max(32).default(4),
        prompt_lookup_max: positiveInt.max(16).default(4),
        prompt_lookup_min: positiveInt.default(1),
        /** No drafts in steps of this many sequences or more: a full step gains little from them (vLLM's). @default never */
        disable_by_batch_size: positiveInt.optional(),
      })
      .strict()
      .refine((s) => s.prompt_lookup_min <= s.prompt_lookup_max, {
        message: 'prompt_lookup_min must not exceed prompt_lookup_max',
        path: ['prompt_lookup_min'],
      })
      .optional(),
    lora_adapters: z.record(z.string().regex(MODEL_NAME, 'expected an adapter name of letters, digits, _ . -'), z.string().min(1)).optional(),
    /**
     * Other names requests may give the model by (vLLM's several --served-model-name; an OpenAI client's model
     * name kept while it moves here): every route takes them; answers name the model by its own name.
     */
    aliases: z.array(z.string().regex(MODEL_NAME, 'expected an alias of letters, digits, _ . -')).default([]),
    /**
     * Most LoRA adapters among one replica's sequences at once (vLLM's max_loras): each is fed to every step. A
     * request of another adapter waits for one to finish; requests behind it that fit go first. @default no limit
     */
    max_loras: positiveInt.optional(),
    /**
     * Triton's response cache: memory for answers kept by their inputs, so that a request the model has answered
     * before (the same tensors, texts or image) is answered again without a queue or a replica; only for models
     * whose answer depends on the inputs alone. Not for stateful or generative models. 0: off. @default 0
     */
    response_cache_mb: z.number().min(0).default(0),
    /** Text encoders (served at /v1/embeddings): how a text's per-token outputs become one vector. */
    embeddings: z
      .object({
        /** mean over the text's tokens, the first token's (cls) or the last's. @default the model's metadata `pooling`, else mean */
        pooling: z.enum(['mean', 'cls', 'last']).optional(),
        /** Scale every embedding to length 1 (cosine similarity is then a dot product). @default true */
        normalize: z.boolean().default(true),
      })
      .strict()
      .optional(),
    /**
     * Replicas that run elsewhere (`infergate replica -c … --model … --listen HOST:PORT` on other machines),
     * by address: the pool connects to them over TCP as it scales instead of starting processes here.
     */
    remote: z
      .array(z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'expected host:port'))
      .min(1)
      .refine((a) => new Set(a).size === a.length, 'an address is listed twice')
      .optional(),
    /**
     * Inputs the gateway fills in, by name: a tensor of fixed shape (usually a scalar) every run takes the
     * same value for, such as silero VAD's sample rate `sr`. Callers do not send them; batching ignores them.
     */
    constants: z.record(z.string(), z.number()).default({}),
    /**
     * A stateful model (Triton's sequence batcher with implicit state): requests carry a sequence id, and the
     * gateway feeds each one the state its sequence's previous request left.
     */
    sequence: z
      .object({
        /** State inputs and the outputs that feed them, `{input: output}`; a sequence starts from zeros. */
        state: z.record(z.string(), z.string()).refine((s) => Object.keys(s).length > 0, 'name at least one state input'),
        /** A sequence with no request for this long is dropped, in s (Triton's max_sequence_idle_microseconds). @default 60 */
        idle_timeout_s: z.number().positive().default(60),
        /** Most sequences kept at once (per gateway); a new one past it gets 503. @default 4096 */
        max_sequences: positiveInt.default(4096),
      })
      .strict()
      .optional(),
    /**
     * A text recogniser (PP-OCR's CTC recogniser: [N, 3, 48, W] in, [N, T, classes] out), served at /v1/ocr with
     * the detector model that finds the lines.
     */
    ocr: z
      .object({
        /** The text detector (PP-OCR's DB model), by its name in `models`. */
        detector: z.string().min(1),
        /** The characters, one per line (class i + 1 is line i; the last class is a space), relative to the config file. */
        dictionary: z.string().min(1),
      })
      .strict()
      .optional(),
    /**
     * A voice activity detector (silero VAD's inputs and outputs; needs `sequence`): served at /v1/audio/vad,
     * over HTTP for a whole recording and as a WebSocket for live audio.
     */
    vad: z
      .object({
        /** The only sample rate the model takes, in Hz (audio at another rate is a 400). @default 16000 */
        sample_rate: positiveInt.default(16000),
        /** Samples per model run. @default 512 (silero at 16 kHz) */
        window: positiveInt.default(512),
        /** The previous window's last samples put in front of each window (silero v5 takes 64 at 16 kHz). @default 64 */
        context: z.number().int().min(0).default(64),
      })
      .strict()
      .optional(),
    /**
     * Ray Serve's model multiplexing: many models of the same tensors (one per customer, per fine-tune) served
     * by one pool of replicas. `path` names them with `{model_id}` (models/tenants/{model_id}.onnx); a request
     * picks one with the `serve_multiplexed_model_id` header; a replica loads the models it is sent, keeping
     * the most recently used few, and batches go to a replica that has theirs loaded.
     */
    multiplex: z
      .object({
        /** Models a replica keeps loaded; the least recently used goes when another comes (Ray's max_num_models_per_replica). @default 3 */
        max_models_per_replica: positiveInt.default(3),
      })
      .strict()
      .optional(),
    /**
     * Triton's model versions: `path` names each version's file with `{version}` (a positive integer:
     * models/classifier/{version}/model.onnx, Triton's repository layout); this policy says which are served
     * (Triton's `version_policy`). Requests name one (`/v2/models/{m}/versions/{v}/infer`) or get the latest
     * served. @default { latest: { num_versions: 1 } } when the path has {version}
     */
    version_policy: z
      .union([
        z.object({ latest: z.object({ num_versions: positiveInt.default(1) }).strict() }).strict(),
        z.object({ all: z.object({}).strict() }).strict(),
        z.object({ specific: z.object({ versions: z.array(positiveInt).min(1) }).strict() }).strict(),
      ])
      .optional(),
    /**
     * Requests naming no version split among versions served, in percent (KServe's canary rollout:
     * `{"2": 90, "3": 10}` sends a tenth to version 3); a request naming one gets it. @default all to the latest
     */
    version_traffic: z.record(z.string().regex(/^[1-9]\d*$/, 'expected a version: a positive integer'), nonNegative).optional(),
    /**
     * A version that also runs a share of the requests other versions answer, its answers discarded (a shadow
     * deployment: a new version tried on live traffic, compared on /metrics, its stats and data capture).
     */
    version_shadow: z
      .object({
        /** The version (served: in the version_policy). */
        version: positiveInt,
        /** Percent of the requests another version answers that it runs too. @default 100 */
        percent: z.number().min(0).max(100).default(100),
      })
      .strict()
      .optional(),
    /**
     * Another model that also gets a share of the requests this one answers, the same request with the model renamed,
     * its answers discarded (captured beside this one's with data capture): a candidate tried on live traffic (Istio's
     * mirroring; Envoy AI Gateway's shadow traffic with the model rewritten). At the lowest priority, outside the
     * caller's rate limits. Of the same kind (generative, text encoder, tensor model with the same inputs).
     */
    shadow: z
      .object({
        model: z.string().min(1),
        /** Percent of this model's requests it gets too. @default 100 */
        percent: z.number().min(0).max(100).default(100),
      })
      .strict()
      .optional(),
    batching: batchingSchema.default(() => batchingSchema.parse({})),
    scaling: scalingSchema.default(() => scalingSchema.parse({})),
  })
  .strict()
  .refine((m) => !(m.shadow && m.sequence), {
    message: "a stateful model's sequences cannot be shadowed: a share of their requests would reach the shadow, not whole sequences",
    path: ['shadow'],
  })
  .refine((m) => Boolean(m.multiplex) === m.path.includes('{model_id}'), {
    message: 'a multiplexed model names its files with {model_id} in its path (models/tenants/{model_id}.onnx), and only a multiplexed one does',
    path: ['path'],
  })
  .refine((m) => !m.multiplex || !(m.sequence || m.remote || m.ocr || m.vad || m.embeddings), {
    message: 'multiplexing is for stateless tensor models on local replicas: not with sequence, remote, ocr, vad or embeddings',
    path: ['multiplex'],
  })
  .refine((m) => !m.version_policy || m.path.includes('{version}'), {
    message: 'a versioned model names its files with {version} in its path (models/classifier/{version}/model.onnx)',
    path: ['version_policy'],
  })
  .refine((m) => !m.version_shadow || m.path.includes('{version}'), {
    message: "version_shadow runs a versioned model's version beside the others: its path names its files with {version}",
    path: ['version_shadow'],
  })
  .refine((m) => !m.version_traffic || m.path.includes('{version}'), {
    message: "version_traffic splits a versioned model's requests: its path names its files with {version}",
    path: ['version_traffic'],
  })
  .refine((m) => !m.version_traffic || Math.abs(Object.values(m.version_traffic).reduce((a, b) => a + b, 0) - 100) < 1e-9, {
    message: 'version_traffic gives percentages: they add up to 100',
    path: ['version_traffic'],
  })
  .refine((m) => !(m.multiplex && m.path.includes('{version}')), {
    message: 'a model is multiplexed ({model_id}) or versioned ({version}), not both',
    path: ['path'],
  })
  .refine((m) => !m.path.includes('{version}') || !(m.sequence || m.remote || m.ocr || m.vad || m.embeddings), {
    message: 'versions are for stateless tensor models on local replicas: not with sequence, remote, ocr, vad or embeddings',
    path: ['version_policy'],
  })
  .refine((m) => !(m.sequence && m.response_cache_mb > 0), {
    message: "a stateful model's answer depends on its sequence's state, not on its inputs alone: it cannot have a response cache",
    path: ['response_cache_mb'],
  })
  .refine((m) => !m.vad || m.sequence, { message: 'a vad model carries its state between windows: give it a sequence with its state', path: ['vad'] })
  .refine((m) => !m.remote || (m.scaling.max_containers ?? 1) <= m.remote.length, {
    message: 'max_containers must not exceed the number of remote addresses',
    path: ['scaling', 'max_containers'],
  });

const tlsSchema = z
  .object({
    /** PEM certificate (chain) file, relative to the config file. */
    cert: z.string().min(1),
    /** PEM private key file, relative to the config file. */
    key: z.string().min(1),
    /** Offer HTTP/2 by ALPN (HTTP/1.1 stays available for WebSocket and older clients). @default true */
    http2: z.boolean().default(true),
  })
  .strict();

const gatewayUrl = z.url({ protocol: /^https?$/, error: "expected a gateway's base URL, like http://gw-0.infergate:8080" });
/** The fleet's URLs are told apart without a trailing slash. */
export const baseUrl = (url: string) => url.replace(/\/+$/, '');
/**
 * Several gateways behind one load balancer, each keeping what it made: see Fleet (src/gateway/fleet.ts). The
 * gateways are listed (`peers`, `self` one of them) or found by DNS (`discover`: a headless Service's name, its
 * addresses the pods'); $INFERGATE_FLEET_SELF sets `self` (one config for every pod).
 */
const fleetSchema = z
  .object({
    /** How the other gateways reach this one. */
    self: gatewayUrl.optional(),
    /** What the gateways prove themselves to each other with (shared_limits needs it; sequences move with their state only with it); or $INFERGATE_FLEET_SECRET. */
    secret: z.string().min(16, 'secrets must be at least 16 characters').optional(),
    /**
     * Per-caller rate limits kept fleet-wide: each gateway tells the others what each caller spent, every `every_ms`.
     * @default each gateway's own limits
     */
    shared_limits: z
      .object({ every_ms: positiveInt.default(250) })
      .strict()
      .optional(),
    /**
     * Each answered request of a stateful model's sequence has its state copied to the gateway next in the sequence's
     * ranking before the answer goes: a gateway that dies (killed, out of memory) loses no answered step. Needs the
     * secret. A round trip a request.
     */
    sequence_backup: z.boolean().default(false),
    /** Every gateway of the fleet, this one too. */
    peers: z.array(gatewayUrl).min(2).optional(),
    /** The gateways found by DNS: every address `dns` resolves to is a gateway at `port`, looked up again every `every_s`. */
    discover: z
      .object({
        dns: z.string().min(1),
        port: z.number().int().min(1).max(65535),
        scheme: z.enum(['http', 'https']).default('http'),
        every_s: positiveNumber.default(10),
      })
      .strict()
      .optional(),
  })
  .strict()
  .refine((f) => (f.peers === undefined) !== (f.discover === undefined), { error: 'a fleet lists its peers or discovers them (one of the two)' })
  .refine((f) => f.self === undefined || f.peers === undefined || f.peers.map(baseUrl).includes(baseUrl(f.self)), {
    error: 'self must be one of peers',
    path: ['self'],
  });

export const corsSchema = z
  .object({
    /** Origins whose pages may call the gateway (`https://app.example.com`), or `"*"` for any. */
    origins: z.union(
      [
        z.literal('*'),
        z
          .array(
            // A browser's Origin header is exactly scheme://host[:port]: a path or a trailing slash would never match it.
            z.string().refine((o) => URL.canParse(o) && new URL(o).origin === o, {
              error: 'expected an origin such as https://app.example.com (no path, no trailing slash)',
            }),
          )
          .min(1),
      ],
      { error: 'expected "*" or a list of origins' },
    ),
    /** How long a browser may keep a preflight's answer, in s. @default 600 */
    max_age_s: nonNegative.default(600),
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
    /**
     * On SIGTERM, seconds to go on serving with /v2/health/ready saying 503 before no longer accepting: the
     * time a load balancer or Kubernetes takes to stop sending new requests (else they meet a closed port).
     * SIGINT (Ctrl-C) does not wait. @default 0
     */
    shutdown_delay_s: nonNegative.default(0),
    /**
     * Whole JSON and text answers of 1 KB or more are sent br-, gzip- or deflate-compressed to clients that
     * accept it (Accept-Encoding; most HTTP clients send it unasked), at fast settings; by the intake threads when
     * there are some. Event streams and binary tensors go as they are. Costs the gateway ~10-16 µs of CPU per KB
     * (bench:compression). @default false
     */
    compress_responses: z.boolean().default(false),
    /**
     * KServe v2's gRPC service on this port (Triton serves it on 8001): health, metadata, ModelInfer and
     * Triton's streaming, config, statistics, repository and shared-memory calls, answered as their HTTP
     * requests are (auth from the call's metadata, TLS as server.tls); by the intake threads when there are
     * some. @default off
     */
    grpc_port: z.number().int().min(0).max(65535).optional(),
    /**
     * Seconds between pings on each /v1/ws socket; one that has not answered the last ping by the next is
     * closed, and what it started is cancelled (a client that vanished without closing, a laptop asleep).
     * The pings also keep proxies from closing a quiet socket. 0: no pings. @default 30
     */
    websocket_ping_s: nonNegative.default(30),
    /**
     * Token streams (Server-Sent Events): a stream whose first token has not come in this many seconds (a queue, a
     * cold start) is opened anyway, and every stream gets a comment line (`: keep-alive`) this often, so that proxies
     * do not end it as idle (ALB and nginx: 60 s; Cloudflare: 100 s). Until it opens, an error still gets its status
     * code; after, it comes in the stream. 0: streams open with their first token, no comments. @default 15
     */
    sse_keepalive_s: nonNegative.default(15),
    /**
     * Seconds an idle HTTP/1.1 connection is kept open (said in `Keep-Alive: timeout=`). Above a load balancer's
     * own idle timeout (AWS ALB: 60 s), so that the balancer never reuses a connection this end has just
     * closed (Node's 5 s default makes it answer 502s now and then). @default 65
     */
    keep_alive_timeout_s: z.number().positive().default(65),
    /**
     * Seconds an answer may go with its client taking none of its bytes while more wait to be sent (nginx's
     * send_timeout): then the connection (HTTP/2: the stream) is closed and the work still making the answer is
     * cancelled — a reader that stopped, or a network gone without a word, no longer holds it until TCP gives up.
     * Quiet streams (waiting for a token) are not stalled. 0: never. @default 60
     */
    send_timeout_s: nonNegative.default(60),
    /** HTTPS (and HTTP/2) from these files; plain HTTP without. */
    tls: tlsSchema.optional(),
    /**
     * Triton's system shared-memory extension for clients on this machine (/v2/systemsharedmemory):
     * tensors read from and written to POSIX shared memory instead of the request. @default false
     */
    client_shared_memory: z.boolean().default(false),
    /**
     * A folder (relative to the config file) where the Batch API keeps its files and batches, so that a restart
     * loses none of them and goes on with the batches that were running (their unanswered requests; answers are
     * written down as they come). @default none: kept in memory only
     */
    batch_dir: z.string().min(1).optional(),
    /** Runtime changes through the admin API (POST /admin/models/{m}/autoscaler). @default false */
    admin_api: z.boolean().default(false),
    /**
     * Seconds between looks at the config file and the models' files (Triton's --repository-poll-secs): a change —
     * a new version's folder, new weights, an edited model — is applied as SIGHUP would. 0: only on SIGHUP or
     * POST /admin/reload. @default 0
     */
    repository_poll_s: nonNegative.default(0),
    /**
     * Asynchronous inference: a request still running after this many seconds is answered `303 See Other` to
     * `/v2/calls/{id}`, where its answer waits (Modal's long-request redirect, for proxies that cut long
     * requests). 0: only requests with `Prefer: respond-async` are answered later. @default 0
     */
    async_after_s: nonNegative.default(0),
    /** How long an asynchronous answer is kept once ready, in s. @default 600 */
    async_keep_s: positiveNumber.default(600),
    /** Most MiB of asynchronous answers kept (and requests running); past it, new ones get a 503. @default 256 */
    async_max_mb: positiveNumber.default(256),
    /**
     * How long a conversation (OpenAI's Conversations API, continued by the Responses API) is kept after its last
     * use, in s; its items within async_max_mb of their own. @default 86400 (a day)
     */
    conversations_keep_s: positiveNumber.default(86_400),
    /** Cross-origin requests from browsers (CORS); without it, browsers keep pages of other origins out. */
    cors: corsSchema.optional(),
    /**
     * Several gateways behind one load balancer, each keeping its own kept and background responses,
     * conversations, asynchronous calls, files and batches: a request about another's is sent there and answered
     * from there. @default none: one gateway
     */
    fleet: fleetSchema.optional(),
    /**
     * Worker threads that accept connections, read request bodies and write answers, leaving the main
     * thread the routing, batching and replicas; for large tensors at rates that fill one event loop.
     * More than 1 needs Node 22.12+. @default 0 (the main thread does it all)
     */
    intake_threads: z
      .number()
      .int()
      .min(0)
      .max(64)
      .default(0)
      .refine((n) => n <= 1 || reusePortSupported(), {
        error: `more than 1 needs Node 22.12 or later (threads each bind the port with reusePort); this is Node ${process.versions.node}, where 1 is the most`,
      }),
  })
  .strict();

const ASYMMETRIC = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'] as const;

const jwtSchema = z
  .object({
    /** Expected `iss`. */
    issuer: z.string().min(1),
    /** Expected `aud` (one of). */
    audience: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
    /** Where the signing keys are published (fetched, cached, refetched on an unknown `kid`). */
    jwks_url: z.url().optional(),
    /** Static public keys: PEM (SPKI) with its algorithm, or a public JWK (with `alg` and `kid`). */
    keys: z
      .array(
        z.union([
          z.object({ pem: z.string().min(1), alg: z.enum(ASYMMETRIC), kid: z.string().optional() }).strict(),
          // (a JWK has a kty and no pem: one with a pem is a PEM key whose other options are wrong, said as such)
          z.object({ kty: z.string(), pem: z.never().optional() }).catchall(z.unknown()),
        ]),
      )
      .optional(),
    /** Accepted algorithms; asymmetric only (never `none`, never HMAC: a public key must not verify a MAC). @default [RS256, ES256, EdDSA] */
    algorithms: z
      .array(z.enum(ASYMMETRIC, { error: `expected asymmetric algorithms only (${ASYMMETRIC.join(', ')})` }))
      .min(1)
      .default(['RS256', 'ES256', 'EdDSA']),
    /** Leeway for exp / nbf / iat, in seconds. @default 30 */
    clock_tolerance_s: nonNegative.default(30),
    /** Least time between two JWKS refetches for unknown `kid`s, in seconds. @default 30 */
    jwks_cooldown_s: nonNegative.default(30),
    /**
     * Seconds fetched keys are used before the JWKS is fetched again. A refetch that fails keeps the last
     * keys: an outage of the key server does not lock out callers whose keys it published. @default 600
     */
    jwks_max_age_s: nonNegative.default(600),
    /** Claim whose value picks the caller's batch priority (see `priorities`). */
    priority_claim: z.string().optional(),
    /** Priority by claim value; higher goes first. @default {} */
    priorities: z.record(z.string(), z.number().int()).default({}),
    /** Claims copied into the request context (logs, limits). @default [] */
    claims: z.array(z.string()).default([]),
  })
  .strict()
  .refine((j) => j.jwks_url || j.keys?.length, { message: 'give jwks_url or keys', path: ['jwks_url'] });

const policy = z.enum(['public', 'jwt', 'key']);

const rateLimitSchema = z
  .object({
    /** Sustained requests per second per caller (subject, key id, or IP for public routes). */
    per_second: z.number().positive().optional(),
    /** Requests a caller may burst above the rate. @default per_second */
    burst: positiveInt.optional(),
    /**
     * Generated tokens a minute per caller (OpenAI's TPM): a generation takes its prompt and max_tokens when it
     * starts and gives back what it did not generate. Batch API lines are not counted.
     */
    tokens_per_minute: positiveInt.optional(),
    /** Requests a caller may have running at once (a stream until it ends); one more is a 429. WebSocket messages are not counted. */
    max_concurrent: positiveInt.optional(),
  })
  .strict()
  .refine((l) => l.per_second !== undefined || l.tokens_per_minute !== undefined || l.max_concurrent !== undefined, {
    message: 'give per_second, tokens_per_minute, max_concurrent, or several',
  });

export const authSchema = z
  .object({
    /** Policy of the built-in routes (/v2/models/…, /v1/…, /admin); health routes stay public. @default public */
    default: policy.default('public'),
    /** Scopes the built-in routes require under jwt. @default [] */
    scopes: z.array(z.string()).default([]),
    /** Scopes a runtime change through the admin API also requires, under jwt. @default [] */
    admin_scopes: z.array(z.string()).default([]),
    jwt: jwtSchema.optional(),
    /** Static key/secret pairs for service-to-service calls: headers `Infergate-Key` and `Infergate-Secret`. */
    keys: z
      .array(
        z
          .object({
            id: z.string().min(1),
            secret: z.string().min(16, 'secrets must be at least 16 characters'),
            /** The batch priority of this key's requests (higher goes first), as a token's priority_claim gives one. @default 0 */
            priority: z.number().int().optional(),
          })
          .strict(),
      )
      .default([]),
    /** Per-caller token bucket for the built-in routes. */
    rate_limit: rateLimitSchema.optional(),
  })
  .strict();

export const endpointSchema = z
  .object({
    /** The public path, e.g. /classify. */
    path: z.string().regex(/^\/[A-Za-z0-9._~/-]*$/, 'expected a path like /classify'),
    model: z.string().min(1),
    /** kserve: POST is infer (KServe v2 body), GET is metadata. openai-chat / -completions / -responses / -embeddings, anthropic-messages: that route, model fixed. */
    protocol: z.enum(['kserve', 'openai-chat', 'openai-completions', 'openai-responses', 'openai-embeddings', 'anthropic-messages']).default('kserve'),
    /** @default auth.default */
    auth: policy.optional(),
    /** Required under jwt. @default [] */
    scopes: z.array(z.string()).default([]),
    rate_limit: rateLimitSchema.optional(),
    /** Overrides server.max_body_bytes for this endpoint. */
    max_body_bytes: positiveInt.optional(),
  })
  .strict();

export const telemetrySchema = z
  .object({
    /** Prometheus metrics on GET /metrics. @default true */
    metrics: z.boolean().default(true),
    /**
     * Serve GET /metrics on this port only, on server.host (as Triton serves them on 8002): scrapes stay inside the
     * network, and the public port does not tell what runs or how busy it is. @default the gateway's own port
     */
    metrics_port: z.number().int().min(0).max(65535).optional(),
    /**
     * The GPUs' utilization, memory and power on /metrics and /admin/stats, and the GPU memory each replica holds,
     * read with nvidia-smi when asked (Triton's --allow-gpu-metrics). Nothing where nvidia-smi is missing. @default true
     */
    gpu_metrics: z.boolean().default(true),
    /** A GPU reading is reused for this long, however many ask (Triton's --metrics-interval-ms). @default 2000 */
    gpu_metrics_interval_ms: positiveInt.default(2000),
    traces: z
      .object({
        /** none (default: no spans at all), console, or otlp (OTLP/HTTP). */
        exporter: z.enum(['none', 'console', 'otlp']).default('none'),
        /** OTLP/HTTP traces URL. @default http://localhost:4318/v1/traces */
        endpoint: z.url().optional(),
        /** Share of new traces kept; a sampled incoming traceparent is always followed. @default 1 */
        sample_ratio: z.number().min(0).max(1).default(1),
      })
      .strict()
      .default({ exporter: 'none', sample_ratio: 1 }),
  })
  .strict();

/**
 * Data capture (KServe's payload logger, SageMaker's Data Capture): a sample of model requests and their answers,
 * sent as CloudEvents and/or written as JSON lines, off the requests' path.
 */
export const captureSchema = z
  .object({
    /** CloudEvents over HTTP (binary mode, KServe's logger's event types): each request and each answer POSTed here. */
    url: z.url({ protocol: /^https?$/ }).optional(),
    /** A folder (relative to the config file): a JSON line a request (SageMaker's capture record), a file an hour. */
    dir: z.string().min(1).optional(),
    /** What is captured: requests and answers (all), requests, or answers. @default all */
    mode: z.enum(['all', 'request', 'response']).default('all'),
    /** Share of requests captured. @default 1 */
    sample_rate: z.number().min(0).max(1).default(1),
    /** The models (or ensembles) whose requests are captured. @default every one */
    models: z.array(z.string()).min(1).optional(),
    /** Request headers kept with each capture (KServe's metadataHeaders), e.g. x-request-id. @default none */
    metadata_headers: z.array(z.string().min(1).toLowerCase()).default([]),
    /** Most bytes of one payload kept; past it, cut (the capture says how long it was). @default 1 MiB */
    max_payload_bytes: positiveInt.default(2 ** 20),
    /** Most captures waiting at a sink; past it new ones are dropped (counted), never a request slowed. @default 1000 */
    max_queue: positiveInt.default(1000),
    /** Most MiB their payloads may hold waiting (a collector down, payloads large): past it new ones are dropped. @default 64 */
    max_queue_mb: positiveNumber.default(64),
    /**
     * Most events POSTed together to `url` as one CloudEvents batch (application/cloudevents-batch+json, structured
     * events); 1: each alone in binary mode, as KServe's logger sends them. @default 1
     */
    batch_events: positiveInt.default(1),
  })
  .strict()
  .refine((c) => c.url !== undefined || c.dir !== undefined, { error: 'capture needs a url or a dir (or both) to send captures to' });

/**
 * A Triton-style ensemble: models run in turn on one request, each fed from the request's tensors or earlier
 * steps' outputs, each through its own batcher (so with its other callers). Served like a model.
 */
const ensembleSchema = z
  .object({
    steps: z
      .array(
        z
          .object({
            model: z.string(),
            /** A versioned model's version to run (Triton's step `model_version`). @default the latest served */
            version: positiveInt.optional(),
            /** The model's input ← a tensor of the ensemble (a request input, or an earlier step's output). */
            inputs: z.record(z.string(), z.string()),
            /** The model's output → a tensor of the ensemble (outputs not named are dropped). */
            outputs: z.record(z.string(), z.string()),
          })
          .strict(),
      )
      .min(1),
    /** The tensors it answers. @default every tensor a step makes and no step reads */
    outputs: z.array(z.string()).min(1).optional(),
  })
  .strict();

/** Endpoint protocols that generate text: an endpoint of one may serve a LoRA adapter (its model generating with it). */
const GENERATING_PROTOCOLS: readonly string[] = ['openai-chat', 'openai-completions', 'openai-responses', 'anthropic-messages'];

export const configSchema = z
  .object({
    server: serverSchema.default(() => serverSchema.parse({})),
    telemetry: telemetrySchema.default(() => telemetrySchema.parse({})),
    auth: authSchema.default(() => authSchema.parse({})),
    endpoints: z.array(endpointSchema).default([]),
    models: z
      .record(z.string().regex(MODEL_NAME, 'expected a model name of letters, digits, _ . -'), modelSchema)
      .refine((m) => Object.keys(m).length > 0, 'expected at least one model'),
    ensembles: z.record(z.string().regex(MODEL_NAME, 'expected an ensemble name of letters, digits, _ . -'), ensembleSchema).default({}),
    capture: captureSchema.optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    for (const [name, e] of Object.entries(c.ensembles)) {
      if (c.models[name]) ctx.addIssue({ code: 'custom', path: ['ensembles', name], message: `${name} is a model's name too` });
      e.steps.forEach((step, i) => {
        if (!c.models[step.model] && !c.ensembles[step.model])
          ctx.addIssue({
            code: 'custom',
            path: ['ensembles', name, 'steps', i, 'model'],
            message: `no model or ensemble named ${step.model}`,
            input: step.model,
          });
      });
    }
    for (const [name, m] of Object.entries(c.models)) {
      const shadow = m.shadow?.model;
      if (shadow !== undefined && (shadow === name || !c.models[shadow]))
        ctx.addIssue({
          code: 'custom',
          path: ['models', name, 'shadow', 'model'],
          message: shadow === name ? 'a model cannot shadow itself' : `no model named ${shadow}`,
          input: shadow,
        });
    }
    // (a name mistyped would capture nothing, silently)
    c.capture?.models?.forEach((name, i) => {
      if (!c.models[name] && !c.ensembles[name])
        ctx.addIssue({ code: 'custom', path: ['capture', 'models', i], message: `no model or ensemble named ${name}`, input: name });
    });
    const policies = [c.auth.default, ...c.endpoints.map((e) => e.auth)];
    if (policies.includes('jwt') && !c.auth.jwt)
      ctx.addIssue({ code: 'custom', path: ['auth', 'jwt'], message: 'a jwt policy is used but auth.jwt is not configured' });
    if (policies.includes('key') && c.auth.keys.length === 0)
      ctx.addIssue({ code: 'custom', path: ['auth', 'keys'], message: 'a key policy is used but auth.keys is empty' });
    const aliases = new Map<string, string>(); // alias → its model
    for (const [name, m] of Object.entries(c.models))
      m.aliases.forEach((alias, i) => {
        const clash = c.models[alias] || c.ensembles[alias] ? "a model's" : aliases.has(alias) ? `${aliases.get(alias)}'s alias` : undefined;
        if (clash) ctx.addIssue({ code: 'custom', path: ['models', name, 'aliases', i], message: `${alias} is ${clash} name too` });
        aliases.set(alias, name);
      });
    const adapters = new Set<string>();
    for (const [name, m] of Object.entries(c.models))
      for (const adapter of Object.keys(m.lora_adapters ?? {})) {
        const clash =
          c.models[adapter] || c.ensembles[adapter] || aliases.has(adapter) ? "a model's" : adapters.has(adapter) ? "another model's adapter's" : undefined;
        if (clash)
          ctx.addIssue({
            code: 'custom',
            path: ['models', name, 'lora_adapters', adapter],
            message: `${adapter} is ${clash} name too: requests name an adapter as their model`,
          });
        adapters.add(adapter);
      }
    c.endpoints.forEach((e, i) => {
      if (adapters.has(e.model)) {
        if (!GENERATING_PROTOCOLS.includes(e.protocol))
          ctx.addIssue({
            code: 'custom',
            path: ['endpoints', i, 'protocol'],
            message: `${e.model} is a LoRA adapter: it is served with protocol ${GENERATING_PROTOCOLS.join(', ')}`,
          });
        return;
      }
      if (c.ensembles[e.model] && e.protocol !== 'kserve')
        ctx.addIssue({ code: 'custom', path: ['endpoints', i, 'protocol'], message: `${e.model} is an ensemble: it is served with protocol kserve` });
      else if (!c.models[e.model] && !c.ensembles[e.model] && !aliases.has(e.model))
        ctx.addIssue({ code: 'custom', path: ['endpoints', i, 'model'], message: `no model named ${e.model}`, input: e.model });
    });
    for (const [name, m] of Object.entries(c.models))
      if (m.ocr && !c.models[m.ocr.detector])
        ctx.addIssue({ code: 'custom', path: ['models', name, 'ocr', 'detector'], message: `no model named ${m.ocr.detector}`, input: m.ocr.detector });
    const paths = c.endpoints.map((e) => e.path);
    paths.forEach((p, i) => {
      if (paths.indexOf(p) !== i) ctx.addIssue({ code: 'custom', path: ['endpoints', i, 'path'], message: `${p} is declared twice` });
      if (/^\/(v1|v2|admin)(\/|$)/.test(p)) ctx.addIssue({ code: 'custom', path: ['endpoints', i, 'path'], message: `${p} collides with the built-in routes` });
    });
  });

export type Config = z.infer<typeof configSchema>;
export type ModelConfig = z.infer<typeof modelSchema>;
export type BatchingConfig = z.infer<typeof batchingSchema>;
export type ScalingConfig = z.infer<typeof scalingSchema>;
export type ServerConfig = z.infer<typeof serverSchema>;
export type CaptureConfig = z.infer<typeof captureSchema>;
export type AuthConfig = z.infer<typeof authSchema>;
export type EndpointConfig = z.infer<typeof endpointSchema>;
export type EnsembleConfig = z.infer<typeof ensembleSchema>;
export type RateLimitConfig = z.infer<typeof rateLimitSchema>;
