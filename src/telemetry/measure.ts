import type { SpanContext } from '@opentelemetry/api';
import type { ReplicaPool } from '../autoscaler/index.js';
import type { Batcher, GenerationScheduler } from '../batcher/index.js';
import { type GaugeSample, gaugeText } from './gauge-text.js';
import type { GpuMonitor, GpuReading } from './gpu.js';
import type { Telemetry } from './telemetry.js';

/** Turns the queues' and the pool's events into metrics and spans (nothing is attached when both are off). */
export function measureModel(telemetry: Telemetry, model: string, pool: ReplicaPool, batcher?: Batcher, scheduler?: GenerationScheduler): void {
  if (!telemetry.config.metrics && telemetry.config.traces.exporter === 'none') return;
  const i = telemetry.instruments;
  const m = { 'infergate.model': model };
  const shed = ({ reason }: { reason: string }) => i.shed.add(1, { ...m, reason });
  batcher?.on('shed', shed);
  batcher?.on('batch', (e) => {
    i.batchDuration.record(e.durationMs / 1000, m);
    // A failed batch's requests run again (alone, or on another replica) or fail: rows, batches and each request's
    // wait are counted once, on the run that answers them — as Triton counts successful executions.
    if (e.ok) {
      i.batches.add(1, m);
      i.rows.add(e.rows, m);
      i.batchSize.record(e.rows, m);
      for (const q of e.queueMs) i.queueDuration.record(q / 1000, m);
    }
    const attributes = { ...m, 'infergate.batch.rows': e.rows, 'infergate.batch.requests': e.requests, 'infergate.batch.ok': e.ok };
    telemetry.recordSpan('infergate.batch', e.startedAt, e.startedAt + e.durationMs, attributes, e.traces as SpanContext[]);
  });
  batcher?.on('cache', ({ hit }) => i.cacheLookups.add(1, { ...m, result: hit ? 'hit' : 'miss' }));
  batcher?.on('isolated', ({ requests }) => i.isolated.add(requests, m));
  scheduler?.on('shed', shed);
  scheduler?.on('step', (t) => {
    for (const [phase, ms] of Object.entries(t)) if (ms > 0) i.stepTime.add(ms / 1000, { 'gen_ai.request.model': model, phase });
  });
  scheduler?.on('restarted', ({ reason, sequences }) => i.restarts.add(sequences, { 'gen_ai.request.model': model, reason }));
  scheduler?.on('speculated', ({ proposed, accepted }) => {
    i.draftTokens.add(accepted, { 'gen_ai.request.model': model, accepted: true });
    i.draftTokens.add(proposed - accepted, { 'gen_ai.request.model': model, accepted: false });
  });
  scheduler?.on('sequence', (e) => {
    const g = { 'gen_ai.request.model': model };
    i.tokens.add(e.tokens, g);
    i.promptTokens.add(e.promptTokens, g);
    if (e.cachedPromptTokens > 0) i.cachedPromptTokens.add(e.cachedPromptTokens, g);
    if (e.ttftMs !== undefined) i.ttft.record(e.ttftMs / 1000, g);
    if (e.ttftMs !== undefined && e.tokens > 1) i.timePerToken.record((e.durationMs - e.ttftMs) / 1000 / (e.tokens - 1), g);
    if (e.queueMs !== undefined) i.queueDuration.record(e.queueMs / 1000, m);
    const error = e.errorCode === undefined ? {} : { 'error.type': e.errorCode };
    i.sequences.add(1, { ...g, finish_reason: e.finishReason, ...error });
    i.generationDuration.record(e.durationMs / 1000, { ...g, ...error });
    // A span per sequence, the child of its request's (OpenTelemetry's GenAI attributes; vLLM's latencies).
    const { maxTokens, sampling } = e.request;
    telemetry.recordSpan(
      'infergate.generation',
      e.startedAt,
      e.startedAt + e.durationMs,
      {
        ...g,
        'gen_ai.request.max_tokens': maxTokens,
        'gen_ai.request.temperature': sampling.temperature,
        'gen_ai.request.top_p': sampling.topP,
        'gen_ai.usage.input_tokens': e.promptTokens,
        'gen_ai.usage.output_tokens': e.tokens,
        'gen_ai.response.finish_reasons': [e.finishReason],
        ...(e.queueMs !== undefined && { 'gen_ai.latency.time_in_queue': e.queueMs / 1000 }),
        ...(e.ttftMs !== undefined && { 'gen_ai.latency.time_to_first_token': e.ttftMs / 1000 }),
        'infergate.generation.cached_prompt_tokens': e.cachedPromptTokens,
        'infergate.generation.restarts': e.restarts,
        ...(e.request.adapter && { 'infergate.lora_adapter': e.request.adapter.name }),
        ...(sampling.beam && { 'infergate.generation.beams': sampling.beam.width }),
        ...error,
      },
      [],
      e.trace as SpanContext | undefined,
    );
  });
  pool.on('opened', (e) => i.modelOpens.record(e.ms / 1000, m));
  pool.on('ready', (e) => {
    if (!e.coldStart) return;
    i.coldStart.record(e.coldStart.totalMs / 1000, m);
    telemetry.recordSpan('infergate.replica.cold_start', e.startedAt, e.startedAt + e.coldStart.totalMs, {
      ...m,
      'infergate.replica': e.replica,
      'infergate.device': e.device,
      'infergate.cold_start.spawn_ms': e.coldStart.spawnMs,
      'infergate.cold_start.session_ms': e.coldStart.sessionMs,
      'infergate.cold_start.warmup_ms': e.coldStart.warmupMs,
    });
  });
}

/**
 * Gauges of each model, written as Prometheus text when /metrics is scraped: replicas by state, requests pending, and
 * generative models' running sequences and cache bytes. Not OpenTelemetry's gauges: those repeat a series' last value
 * once it is no longer observed, so a model removed by a reload kept its replicas "ready" on /metrics forever.
 */
export function observePools(
  telemetry: Telemetry,
  models: ReadonlyMap<string, { pool: ReplicaPool; queue: Batcher | GenerationScheduler; sequences?: { active(): number } }>,
): void {
  telemetry.addScrapeText(async () => {
    const all = [...models];
    const each = (sample: (name: string, m: (typeof all)[number][1]) => GaugeSample[]) => all.flatMap(([name, m]) => sample(name, m));
    const generative = (sample: (name: string, s: { active: number; cacheBytes: Record<string, number> }) => GaugeSample[]) =>
      each((name, m) => {
        const s = m.queue.stats();
        return 'cacheBytes' in s ? sample(name, s) : [];
      });
    return gaugeText([
      {
        name: 'infergate_replicas',
        help: 'Replicas by state.',
        samples: each((name, m) => {
          const counts = m.pool.metrics();
          return (['starting', 'ready', 'draining'] as const).map((state) => ({ labels: { infergate_model: name, state }, value: counts[state] }));
        }),
      },
      {
        name: 'infergate_queue_pending',
        help: 'Requests (or sequences) waiting in the queue.',
        samples: each((name, m) => {
          const s = m.queue.stats();
          return [{ labels: { infergate_model: name }, value: 'queuedRequests' in s ? s.queuedRequests : s.queued }];
        }),
      },
      {
        name: 'infergate_sequences_active',
        help: "Stateful models' sequences whose state the gateway keeps.",
        samples: each((name, m) => (m.sequences ? [{ labels: { infergate_model: name }, value: m.sequences.active() }] : [])),
      },
      {
        name: 'infergate_generation_running',
        help: "Generative models' sequences holding a slot on a replica (generating, or their prompt being computed).",
        samples: generative((name, s) => [{ labels: { gen_ai_request_model: name }, value: s.active }]),
      },
      {
        name: 'infergate_generation_cache_bytes',
        help: "Bytes generative models' replicas hold, by cache: kv (the sequences' keys and values), prefix (stored prompts).",
        samples: generative((name, s) =>
          Object.entries(s.cacheBytes).map(([cache, bytes]) => ({ labels: { gen_ai_request_model: name, cache }, value: bytes })),
        ),
      },
    ]);
  });
}

/**
 * Gauges of the GPUs, read from nvidia-smi when /metrics is scraped (Triton's nv_gpu_* metrics), and the GPU memory each
 * replica process holds (its pid as nvidia-smi lists it): a model's share of a card, which Triton only estimates at load.
 * Written as Prometheus text at each scrape: OpenTelemetry's gauges repeat a series' last value once it is no longer
 * observed, and a replica that stopped (scale to zero) must stop holding memory on /metrics too.
 */
export function observeGpus(telemetry: Telemetry, monitor: GpuMonitor, models: ReadonlyMap<string, { pool: ReplicaPool }>): void {
  telemetry.addScrapeText(async () => {
    const snapshot = await monitor.read();
    if (!snapshot) return '';
    const gpu = (g: GpuReading) => ({ gpu: String(g.index), gpu_uuid: g.uuid });
    const per = (pick: (g: GpuReading) => number | undefined) =>
      snapshot.gpus.flatMap((g) => (pick(g) === undefined ? [] : [{ labels: gpu(g), value: pick(g) as number }]));
    const indexOf = new Map(snapshot.gpus.map((g) => [g.uuid, String(g.index)]));
    const replicas = [...models].flatMap(([name, m]) =>
      m.pool.describe().flatMap((replica) =>
        snapshot.processes
          .filter((p) => p.pid === replica.pid)
          .map((p) => ({
            labels: { infergate_model: name, replica: replica.id, gpu: indexOf.get(p.gpuUuid) ?? '', gpu_uuid: p.gpuUuid },
            value: p.memoryBytes,
          })),
      ),
    );
    return gaugeText([
      {
        name: 'infergate_gpu_utilization',
        help: 'Share of the last sample period in which a kernel ran on the GPU (0-1).',
        samples: per((g) => g.utilization),
      },
      {
        name: 'infergate_gpu_memory_used_bytes',
        help: "GPU memory in use by every process on the card (the replicas' and others').",
        samples: per((g) => g.memoryUsedBytes),
      },
      { name: 'infergate_gpu_memory_total_bytes', help: 'GPU memory in all.', samples: per((g) => g.memoryTotalBytes) },
      { name: 'infergate_gpu_power_usage_watts', help: 'Power the GPU draws.', samples: per((g) => g.powerWatts) },
      { name: 'infergate_gpu_power_limit_watts', help: 'Most power the GPU may draw.', samples: per((g) => g.powerLimitWatts) },
      { name: 'infergate_replica_gpu_memory_bytes', help: 'GPU memory a replica process holds, by GPU.', samples: replicas },
    ]);
  });
}
