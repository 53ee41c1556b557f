import { ROOT_CONTEXT, SpanKind, TraceFlags, trace } from '@opentelemetry/api';
import { SamplingDecision } from '@opentelemetry/sdk-trace-base';
import { describe, expect, it } from 'vitest';
import { TraceSettings } from './trace-settings.js';

const parent = trace.setSpanContext(ROOT_CONTEXT, { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: TraceFlags.SAMPLED });

describe('TraceSettings', () => {
  it("applies a model's own settings to its generation's spans (named by gen_ai.request.model)", () => {
    const settings = new TraceSettings({ level: 'OFF', rate: 1, count: -1 });
    settings.update({ level: 'TIMESTAMPS' }, 'tiny-gpt');
    const generation = (model: string) =>
      settings.shouldSample(parent, '0af7651916cd43dd8448eb211c80319c', 'infergate.generation', SpanKind.INTERNAL, { 'gen_ai.request.model': model }, [])
        .decision;
    expect(generation('tiny-gpt')).toBe(SamplingDecision.RECORD_AND_SAMPLED); // (it fell under the global OFF)
    expect(generation('other')).toBe(SamplingDecision.NOT_RECORD);
  });
});
