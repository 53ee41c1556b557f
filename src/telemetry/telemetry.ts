import {
  type Attributes,
  type Context,
  context,
  type Meter,
  metrics,
  ROOT_CONTEXT,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { RuntimeNodeInstrumentation } from '@opentelemetry/instrumentation-runtime-node';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  ConsoleSpanExporter,
  InMemorySpanExporter,
  SimpleSpanProcessor,
  type SpanExporter,
} from '@opentelemetry/sdk-trace-base';
import { TraceSettings } from './trace-settings.js';

export type TelemetryConfig = {
  /** Serve Prometheus metrics on GET /metrics. */
  metrics: boolean;
  traces: {
    /** none: no tracing at all (no-op spans); memory: kept for tests. */
    exporter: 'none' | 'console' | 'otlp' | 'memory';
    /** OTLP/HTTP traces URL. @default http://localhost:4318/v1/traces */
    endpoint?: string;
    /** Share of new traces kept (a sampled parent's decision is always followed). @default 1 */
    sampleRatio?: number;
  };
};

const SECONDS_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const ROW_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];

/**
 * The gateway's OpenTelemetry: its own tracer and meter providers (nothing global, so several gateways
 * can live in one process), the instruments, W3C trace-context extraction and the Prometheus text.
 * With traces off, spans are the API's no-op spans; with metrics off, instruments are no-ops.
 */
export class Telemetry {
  readonly tracer: Tracer;
  readonly meter: Meter;
  readonly memory?: InMemorySpanExporter;
  /** Which requests are traced, changed at run time (Triton's trace extension); OFF when traces are off. */
  readonly traceSettings: TraceSettings;
  private readonly prometheus?: PrometheusExporter;
  private readonly serializer = new PrometheusSerializer(undefined, false, undefined, true, true);
  private readonly propagator = new W3CTraceContextPropagator();
  private readonly shutdowns: (() => Promise<void>)[] = [];
  /** Prometheus text written at each scrape beside OpenTelemetry's (series that must vanish when their thing does). */
  private readonly scrapeTexts: (() => Promise<string>)[] = [];
  readonly instruments;

  constructor(readonly config: TelemetryConfig) {
    const resource = resourceFromAttributes({ 'service.name': 'infergate' });
    const ratio = config.traces.sampleRatio ?? 1;
    const tracing = config.traces.exporter !== 'none';
    this.traceSettings = new TraceSettings({ level: tracing ? 'TIMESTAMPS' : 'OFF', rate: ratio > 0 ? 1 / ratio : 0, count: -1 });
    if (tracing) {
      let exporter: SpanExporter;
      if (config.traces.exporter === 'memory') exporter = this.memory = new InMemorySpanExporter();
      else if (config.traces.exporter === 'console') exporter = new ConsoleSpanExporter();
      else exporter = new OTLPTraceExporter({ url: config.traces.endpoint ?? 'http://localhost:4318/v1/traces' });
      const processor = config.traces.exporter === 'memory' ? new SimpleSpanProcessor(exporter) : new BatchSpanProcessor(exporter);
      const provider = new BasicTracerProvider({
        resource,
        spanProcessors: [processor],
        sampler: this.traceSettings,
      });
      this.tracer = provider.getTracer('infergate');
      this.shutdowns.push(() => provider.shutdown());
    } else this.tracer = trace.getTracerProvider().getTracer('infergate'); // no provider registered: no-op
    if (config.metrics) {
      this.prometheus = new PrometheusExporter({ preventServerStart: true });
      const provider = new MeterProvider({ resource, readers: [this.prometheus] });
      this.meter = provider.getMeter('infergate');
      // The gateway process itself: event loop utilization and delay, garbage collection, heap. Its one
      // event loop reads every request body; on the H200 it was the limit (bench/results/gpu-summary.md),
      // and nothing else on /metrics says so.
      const runtime = new RuntimeNodeInstrumentation({ enabled: false, monitoringPrecision: 10 });
      runtime.setMeterProvider(provider);
      runtime.enable();
      this.shutdowns.push(async () => {
        runtime.disable();
        await provider.shutdown();
      });
    } else this.meter = metrics.getMeterProvider().getMeter('infergate'); // no-op

    const m = this.meter;
    const seconds = (name: string, description: string) =>
      m.createHistogram(name, { unit: 's', description, advice: { explicitBucketBoundaries: SECONDS_BUCKETS } });
    this.instruments = {
      requestDuration: seconds('http.server.request.duration', 'Duration of HTTP requests, until the response starts (streams: until their first byte).'),
      queueDuration: seconds(
        'infergate.queue.duration',
        'Time a request waited in the model queue before its batch was sent (a generation: before it got a slot).',
      ),
      batchDuration: seconds('infergate.batch.duration', 'Time from sending a batch to a replica to its answer (compute plus the replica hop).'),
      batchSize: m.createHistogram('infergate.batch.size', {
        unit: '{row}',
        description: 'Rows per batch sent to a replica.',
        advice: { explicitBucketBoundaries: ROW_BUCKETS },
      }),
      rows: m.createCounter('infergate.rows', { unit: '{row}', description: 'Rows inferred (the rate is rows per second).' }),
      batches: m.createCounter('infergate.batches', { unit: '{batch}', description: 'Batches run by replicas.' }),
      isolated: m.createCounter('infergate.isolated', {
        unit: '{request}',
        description: 'Requests run again alone after the model failed the batch they were in (then only the one causing it fails).',
      }),
      shed: m.createCounter('infergate.shed', {
        unit: '{request}',
        description: 'Requests refused or dropped, by reason (queue_full, deadline, cancelled, start_failed, rate_limited).',
      }),
      cacheLookups: m.createCounter('infergate.cache.lookups', {
        unit: '{request}',
        description: "Requests looked up in the model's response cache, by result (hit, miss).",
      }),
      connectionsEnded: m.createCounter('infergate.connections.ended', {
        unit: '{connection}',
        description: 'Answers and WebSockets the gateway ended because their client went silent, by reason (send_timeout, websocket_ping).',
      }),
      captured: m.createCounter('infergate.captured', {
        unit: '{request}',
        description: 'Requests captured (config capture), by what became of them at each sink: sent, written, dropped (too many waiting), failed.',
      }),
      shadowed: m.createCounter('infergate.shadow.requests', {
        unit: '{request}',
        description: "Requests sent again to a model's shadow (config shadow), by the shadow and the status it answered (0: none).",
      }),
      limitsTold: m.createCounter('infergate.fleet.limits_told', {
        unit: '{message}',
        description: 'server.fleet.shared_limits: what callers spent here, told to each other gateway, by whether it was (told, failed).',
      }),
      sequencesTaken: m.createCounter('infergate.fleet.sequences_taken', {
        unit: '{sequence}',
        description:
          "Stateful models' sequences taken here with their state from another gateway of the fleet, by it and how: asked (a request of one reached this gateway), handed (that gateway stopped).",
      }),
      sequenceBackups: m.createCounter('infergate.fleet.sequence_backups', {
        unit: '{request}',
        description:
          "server.fleet.sequence_backup: answered requests of stateful models' sequences whose state was copied to another gateway of the fleet, by it and result: ok, refused (no room there, or an older copy of it running a request there), failed (not answered).",
      }),
      forwarded: m.createCounter('infergate.fleet.forwarded', {
        unit: '{request}',
        description: 'Requests sent on to the gateway of the fleet that keeps what they name, by peer and its status (unreachable: none).',
      }),
      coldStart: seconds('infergate.replica.cold_start.duration', 'Replica start to ready: process, session creation, warm-up.'),
      modelOpens: seconds(
        'infergate.multiplex.open.duration',
        "Time a replica took to open one of a multiplexed model's models for a batch (sessions and warm-up); its count is the opens.",
      ),
      tokens: m.createCounter('infergate.generation.tokens', { unit: '{token}', description: 'Tokens generated.' }),
      stepTime: m.createCounter('infergate.generation.step_time', {
        unit: 's',
        description:
          "Time the replicas spent in generation steps, by phase: prefill, decode; sampling (drawing tokens, part of those two); grammar (response formats' masks, part of sampling).",
      }),
      cachedPromptTokens: m.createCounter('infergate.generation.cached_prompt_tokens', {
        unit: '{token}',
        description: "Prompt tokens taken from the replicas' prefix caches instead of computed.",
      }),
      restarts: m.createCounter('infergate.generation.restarts', {
        unit: '{sequence}',
        description: 'Sequences started again where they were: preempted for a higher priority, or their replica lost.',
      }),
      draftTokens: m.createCounter('infergate.generation.draft_tokens', {
        unit: '{token}',
        description: 'Speculative decoding: tokens drafted (vLLM spec_decode_num_draft_tokens), by whether a step took them.',
      }),
      promptTokens: m.createCounter('infergate.generation.prompt_tokens', {
        unit: '{token}',
        description: 'Prompt tokens of the sequences that ended (computed or taken from a prefix cache).',
      }),
      sequences: m.createCounter('infergate.generation.sequences', {
        unit: '{sequence}',
        description: 'Sequences ended, by finish_reason: stop, length, cancelled (the client went away), error (with error_type).',
      }),
      generationDuration: seconds('gen_ai.server.request.duration', 'Time from a generation request to its last token (or its error).'),
      ttft: seconds('gen_ai.server.time_to_first_token', 'Time from a generation request to its first token.'),
      timePerToken: seconds('gen_ai.server.time_per_output_token', 'Mean time between output tokens of a sequence after the first.'),
    };
  }

  /** The context a client's `traceparent` / `tracestate` headers carry (or the root context). */
  extract(headers: Headers): Context {
    return this.propagator.extract(ROOT_CONTEXT, headers, { get: (h, key) => h.get(key) ?? undefined, keys: (h) => [...h.keys()] });
  }

  startServerSpan(name: string, parent: Context, attributes: Attributes) {
    return this.tracer.startSpan(name, { kind: SpanKind.SERVER, attributes }, parent);
  }

  /**
   * A span for work whose times are known after the fact (a batch on a replica, a cold start, a generation), linked
   * to the spans it served, or the child of `parent`.
   */
  recordSpan(name: string, startMs: number, endMs: number, attributes: Attributes, links: SpanContext[] = [], parent?: SpanContext): void {
    const span = this.tracer.startSpan(
      name,
      { kind: SpanKind.INTERNAL, startTime: startMs, attributes, links: links.map((c) => ({ context: c })) },
      parent ? trace.setSpanContext(ROOT_CONTEXT, parent) : context.active(),
    );
    // (an operation that failed says so in its status, as OpenTelemetry's conventions ask, beside its error.type)
    if (attributes['error.type'] !== undefined) span.setStatus({ code: SpanStatusCode.ERROR });
    span.end(endMs);
  }

  async metricsText(): Promise<string> {
    if (!this.prometheus) return '';
    const [{ resourceMetrics }, ...texts] = await Promise.all([this.prometheus.collect(), ...this.scrapeTexts.map((text) => text())]);
    return this.serializer.serialize(resourceMetrics) + texts.join('');
  }

  /** Adds Prometheus text (whole lines) to each scrape; nothing when metrics are off. */
  addScrapeText(text: () => Promise<string>): void {
    if (this.prometheus) this.scrapeTexts.push(text);
  }

  async shutdown(): Promise<void> {
    await Promise.all(this.shutdowns.map((s) => s().catch(() => {})));
  }
}
