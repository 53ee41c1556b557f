import { type Attributes, type Context, isSpanContextValid, type Link, type SpanContext, SpanKind, TraceFlags, trace } from '@opentelemetry/api';
import { type Sampler, SamplingDecision, type SamplingResult, TraceIdRatioBasedSampler } from '@opentelemetry/sdk-trace-base';

/**
 * Which requests are traced, changed while the gateway serves (Triton's trace extension, in its OpenTelemetry
 * mode): globally and per model. `rate` N keeps 1 trace in N on average, decided by trace id as OpenTelemetry's
 * ratio sampler does (so services sampling the same way agree); 0 starts none of its own. A client's sampled
 * `traceparent` is followed.
 * `count` is how many more traces may start (-1: no limit); OFF starts none, a client's traceparent included.
 */
export type TraceLevel = 'OFF' | 'TIMESTAMPS';
export type TraceScope = { level: TraceLevel; rate: number; count: number };

/** A request's model, from its span's attributes: a model route's path, or the model a batch or cold start was for. */
function modelOf(attributes: Attributes): string | undefined {
  const model = attributes['infergate.model'] ?? attributes['gen_ai.request.model']; // (a generation's span names it so)
  if (typeof model === 'string') return model;
  const path = attributes['url.path'];
  const match = typeof path === 'string' ? /^\/v2\/models\/([^/]+)/.exec(path) : null;
  if (!match || match[1] === 'stats') return undefined;
  try {
    return decodeURIComponent(match[1]);
  } catch {
    return undefined;
  }
}

export class TraceSettings implements Sampler {
  private global: TraceScope;
  private models = new Map<string, Partial<TraceScope>>();
  private ratios = new Map<number, TraceIdRatioBasedSampler>();

  constructor(initial: TraceScope) {
    this.global = { ...initial };
  }

  /** The settings in effect for a model (its own where it has them, the global ones elsewhere), or the global ones. */
  get(model?: string): TraceScope {
    return { ...this.global, ...(model === undefined ? {} : this.models.get(model)) };
  }

  /** Changes some settings, globally or for one model; `null` for a model's setting goes back to the global one. */
  update(change: { [K in keyof TraceScope]?: TraceScope[K] | null }, model?: string): TraceScope {
    if (model === undefined) {
      for (const [key, value] of Object.entries(change)) if (value !== null && value !== undefined) Object.assign(this.global, { [key]: value });
    } else {
      const own = { ...this.models.get(model) };
      for (const [key, value] of Object.entries(change)) {
        if (value === null) delete own[key as keyof TraceScope];
        else if (value !== undefined) Object.assign(own, { [key]: value });
      }
      if (Object.keys(own).length > 0) this.models.set(model, own);
      else this.models.delete(model);
    }
    return this.get(model);
  }

  shouldSample(context: Context, traceId: string, _name: string, kind: SpanKind, attributes: Attributes, links: Link[] = []): SamplingResult {
    const model = modelOf(attributes);
    const settings = this.get(model);
    if (settings.level === 'OFF') return { decision: SamplingDecision.NOT_RECORD };
    const parent = trace.getSpanContext(context);
    const sampled = (c: SpanContext) => (c.traceFlags & TraceFlags.SAMPLED) !== 0;
    // A request's own spans (a generation's) follow it, and a batch's span (a trace of its own, linked to each request
    // it carried) is kept where one of them is: both were sampled again — by the count left, by the ratio on their
    // own trace id — so a traced request lost them.
    if (kind !== SpanKind.SERVER && parent && isSpanContextValid(parent))
      return { decision: sampled(parent) ? SamplingDecision.RECORD_AND_SAMPLED : SamplingDecision.NOT_RECORD };
    if (kind !== SpanKind.SERVER && links.length > 0)
      return { decision: links.some((l) => sampled(l.context)) ? SamplingDecision.RECORD_AND_SAMPLED : SamplingDecision.NOT_RECORD };
    if (settings.count === 0) return { decision: SamplingDecision.NOT_RECORD };
    const keep =
      parent && isSpanContextValid(parent)
        ? sampled(parent)
        : this.ratio(settings.rate).shouldSample(context, traceId).decision === SamplingDecision.RECORD_AND_SAMPLED;
    if (!keep) return { decision: SamplingDecision.NOT_RECORD };
    // A request's span is a trace counted (a batch's or a cold start's spans belong to requests already counted).
    if (kind === SpanKind.SERVER && settings.count > 0) {
      const own = model === undefined ? undefined : this.models.get(model);
      if (own?.count !== undefined) own.count--;
      else this.global.count--;
    }
    return { decision: SamplingDecision.RECORD_AND_SAMPLED };
  }

  private ratio(rate: number): TraceIdRatioBasedSampler {
    const known = this.ratios.get(rate);
    if (known) return known;
    const sampler = new TraceIdRatioBasedSampler(rate > 0 ? 1 / rate : 0);
    this.ratios.set(rate, sampler);
    return sampler;
  }

  toString(): string {
    return `TraceSettings{${JSON.stringify(this.global)}}`;
  }
}
