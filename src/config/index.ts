export { ConfigError, loadConfig, parseConfig } from './load.js';
export type { BatchingConfig, Config, ModelConfig, ScalingConfig, ServerConfig } from './schema.js';
