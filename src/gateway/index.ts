export { type AppOptions, createApp, type EndpointRoute } from './app.js';
export { jwtVerifier } from './auth/jwt.js';
export { authenticate, type Caller, type Policy, rateLimit } from './auth/middleware.js';
export { RateLimiter } from './auth/rate-limit.js';
export { QuietWork } from './drain.js';
export { BatchDisk } from './openai/batch-disk.js';
export { BatchControl } from './openai/batches.js';
export { type Listening, listen } from './server.js';
export type { Autoscaling, GatewayEnv, ModelControl, ServedModel } from './types.js';
