export { type AppOptions, createApp } from './app.js';
export { type Listening, listen } from './server.js';
export type { GatewayEnv, ServedModel } from './types.js';
