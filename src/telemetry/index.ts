export { GpuMonitor, type GpuReading, type GpuSnapshot } from './gpu.js';
export { measureModel, observeGpus, observePools } from './measure.js';
export { Telemetry, type TelemetryConfig } from './telemetry.js';
export { type TraceLevel, type TraceScope, TraceSettings } from './trace-settings.js';
export { EventLoopWindow, LatencyWindow } from './window.js';
