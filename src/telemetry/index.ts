export { measureModel, observePools } from './measure.js';
export { Telemetry, type TelemetryConfig } from './telemetry.js';
export { EventLoopWindow, LatencyWindow } from './window.js';
