import { type EnsemblePlan, ModelStatistics, runEnsemble } from '../batcher/index.js';
import { badInput, GatewayError } from '../errors/index.js';
import type { ServedModel } from './types.js';

/**
 * An ensemble served as a model (config `ensembles`; see batcher/ensemble.ts): every tensor route takes it —
 * KServe v2 JSON and binary, v1, gRPC, WebSocket — through `batcher.submit`, which runs its steps on their models'
 * batchers. Step models (or ensembles) are looked up by name on each request: a model a config reload replaced is the new one.
 */
export function ensembleModel(plan: EnsemblePlan, models: ReadonlyMap<string, ServedModel>): ServedModel {
  const statistics = new ModelStatistics();
  const counts = { requests: 0, failed: 0, inFlight: 0 };
  const stepNames = [...new Set(plan.steps.map((s) => s.model))];
  const unready = () => stepNames.find((name) => !models.get(name)?.isReady());
  return {
    name: plan.name,
    signature: plan.signature,
    device: 'ensemble',
    // (its models' as they are now: a reload may change theirs and keep the ensemble)
    get maxBatchSize() {
      return Math.min(...stepNames.map((name) => models.get(name)?.maxBatchSize ?? 0));
    },
    ensemble: { steps: plan.steps.map(({ model, version, inputs, outputs }) => ({ model, version, inputs, outputs })) },
    batcher: {
      async submit(inputs, opts) {
        const start = performance.now();
        counts.requests++;
        counts.inFlight++;
        try {
          const done = await runEnsemble(
            plan,
            inputs,
            (model, fed, o) => {
              const m = models.get(model);
              if (!m?.batcher) throw new GatewayError(503, 'model_removed', `ensemble ${plan.name}: its model ${model} is no longer served`);
              return m.batcher.submit(fed, o);
            },
            opts ?? {},
          );
          const ms = performance.now() - start;
          const rows = plan.signature.batchAxis === 0 ? (Object.values(inputs)[0]?.shape[0] ?? 1) : 1;
          const phases = { input: 0, infer: ms - done.queueMs, output: 0 };
          statistics.succeeded(rows, ms, done.queueMs, phases);
          statistics.executed(rows, phases);
          return done;
        } catch (err) {
          counts.failed++;
          statistics.failed(performance.now() - start);
          throw err;
        } finally {
          counts.inFlight--;
        }
      },
    },
    // (its steps queue and batch in their models: their stats show it)
    stats: () => ({ ...counts, queuedRequests: 0, batchSizes: {}, steps: plan.steps.map((s) => s.model) }),
    statistics: () => [statistics.toTriton(plan.name)],
    isReady: () => unready() === undefined,
    notReadyReason: () => {
      const name = unready();
      const why = name && models.get(name)?.notReadyReason?.();
      return name && `its model ${name} is not ready${why ? `: ${why}` : ''}`;
    },
    replicas: () => [],
    // Loaded while its models are: one unloaded on purpose makes it unavailable, not the server unready.
    control: {
      loaded: () => stepNames.every((name) => models.get(name)?.control?.loaded() !== false),
      load: () => Promise.reject(notControlled(plan.name)),
      unload: () => Promise.reject(notControlled(plan.name)),
    },
  };
}

const notControlled = (name: string) =>
  badInput(`${name} is an ensemble: it is loaded and unloaded with its models (POST /v2/repository/models/{model}/load, …/unload)`);
