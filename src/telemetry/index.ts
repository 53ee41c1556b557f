export { measureModel, observePools } from './measure.js';
export { Telemetry, type TelemetryConfig } from './telemetry.js';
export { type TraceLevel, type TraceScope, TraceSettings } from './trace-settings.js';
export { EventLoopWindow, LatencyWindow } from './window.js';
