export { InMemoryProvider, InMemoryReplica, type ModelFn } from './in-memory.js';
export { type PoolOptions, ReplicaPool } from './pool.js';
export { LocalProcessProvider, type Replica, type ReplicaProvider, type ReplicaStartSpec, type ReplicaState } from './replica.js';
