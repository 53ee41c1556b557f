export { Autoscaler, type AutoscalerOptions, type Demand } from './autoscaler.js';
export { InMemoryProvider, InMemoryReplica, type ModelFn } from './in-memory.js';
export { cpuThreadsPerReplica, GpuPlacement, visibleGpus } from './placement.js';
export { type Decision, decide, type PolicyState, type PoolMetrics, type ScalingPolicy } from './policy.js';
export { type Logger, type PoolOptions, ReplicaPool, type ReplicaView } from './pool.js';
export { RemoteProvider } from './remote.js';
export { type ColdStart, LocalProcessProvider, type Replica, type ReplicaProvider, type ReplicaStartSpec, type ReplicaState } from './replica.js';
