import { SpanStatusCode } from '@opentelemetry/api';
import { describe, expect, it } from 'vitest';
import { Telemetry } from './telemetry.js';

describe('Telemetry.recordSpan', () => {
  it('marks a span of an operation that failed (error.type) with status Error, as OpenTelemetry asks; others unset', async () => {
    const telemetry = new Telemetry({ metrics: false, traces: { exporter: 'memory' } });
    telemetry.recordSpan('infergate.generation', 0, 5, { 'error.type': 'deadline_exceeded' });
    telemetry.recordSpan('infergate.generation', 0, 5, {});
    expect(telemetry.memory?.getFinishedSpans().map((s) => s.status.code)).toEqual([SpanStatusCode.ERROR, SpanStatusCode.UNSET]);
    await telemetry.shutdown();
  });
});
