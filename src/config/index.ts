export { ConfigError, fleetSecretNeeded, fleetSelf, loadConfig, parseConfig } from './load.js';
export type {
  AuthConfig,
  BatchingConfig,
  CaptureConfig,
  Config,
  EndpointConfig,
  EnsembleConfig,
  ModelConfig,
  RateLimitConfig,
  ScalingConfig,
  ServerConfig,
} from './schema.js';
export { reusePortSupported } from './schema.js';
