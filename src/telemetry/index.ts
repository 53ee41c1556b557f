export { Telemetry, type TelemetryConfig } from './telemetry.js';
export { LatencyWindow } from './window.js';
