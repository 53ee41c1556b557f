export { type PoolOptions, ReplicaPool } from './pool.js';
export { LocalProcessProvider, type Replica, type ReplicaProvider, type ReplicaStartSpec, type ReplicaState } from './replica.js';
export { InMemoryProvider, InMemoryReplica, type ModelFn } from './in-memory.js';
