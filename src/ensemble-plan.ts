import { type EnsemblePlan, planEnsemble } from './batcher/index.js';
import type { Config } from './config/index.js';
import { ConfigError } from './config/index.js';
import type { ServedModel } from './gateway/index.js';
import { callerSignatureOf } from './model-files.js';
import { generativeSpec, type ModelSignature, versionsServed } from './models/index.js';

// Ensembles planned against the models they compose (at start, on a reload, and by `infergate validate`).

/** What planning an ensemble needs of a model: its tensors as callers send them, and whether it may be a step. */
type StepView = { signature: ModelSignature; generative: boolean; stateful: boolean; multiplexed: boolean; versions?: readonly string[] };

/**
 * The config's ensembles over models found by `modelOf`, and over each other (a step may be an ensemble: planned
 * first, its tensors are the step's); one that does not fit its models, or runs itself, is a ConfigError.
 */
export function planEnsembles(config: Config, modelOf: (name: string) => StepView | undefined): EnsemblePlan[] {
  const plans = new Map<string, EnsemblePlan>();
  const planning: string[] = [];
  const plan = (name: string): EnsemblePlan => {
    const done = plans.get(name);
    if (done) return done;
    if (planning.includes(name)) throw new ConfigError(`ensembles.${name}: it runs itself (${[...planning.slice(planning.indexOf(name)), name].join(' → ')})`);
    planning.push(name);
    try {
      const made = planEnsemble(name, config.ensembles[name], (model) => {
        if (config.ensembles[model]) return { signature: plan(model).signature };
        const m = modelOf(model);
        if (!m) return undefined;
        const refusal = m.generative
          ? 'it is generative: an ensemble runs tensor models'
          : m.stateful
            ? 'it is stateful (its requests belong to sequences): an ensemble runs stateless tensor models'
            : m.multiplexed
              ? 'it is multiplexed (a request names one of its models by header): an ensemble runs single models'
              : undefined;
        return { signature: m.signature, versions: m.versions, refusal };
      });
      plans.set(name, made);
      return made;
    } catch (err) {
      throw err instanceof ConfigError ? err : new ConfigError((err as Error).message);
    } finally {
      planning.pop();
    }
  };
  return Object.keys(config.ensembles).map(plan);
}

export const stepView = (m: ServedModel | undefined): StepView | undefined =>
  m && {
    signature: m.signature,
    generative: Boolean(m.generation),
    stateful: Boolean(m.sequences),
    multiplexed: Boolean(m.multiplexed),
    versions: m.versions?.served,
  };

/** `infergate validate`: the config's ensembles, planned against the models' files (signatures as callers see them). */
export function checkEnsembles(config: Config, signatures: ReadonlyMap<string, ModelSignature>): EnsemblePlan[] {
  return planEnsembles(config, (name) => {
    const [model, own] = [config.models[name], signatures.get(name)];
    if (!model || !own) return undefined;
    const signature = callerSignatureOf(name, model, own);
    return {
      signature,
      generative: Boolean(generativeSpec(signature)),
      stateful: Boolean(model.sequence),
      multiplexed: Boolean(model.multiplex),
      versions: versionsServed(model),
    };
  });
}

/** Models and ensembles as the routes see them: one map, read through (a reload changes both); a model found by an alias too. */
export function servedView(models: ReadonlyMap<string, ServedModel>, ensembles: () => ReadonlyMap<string, ServedModel>): ReadonlyMap<string, ServedModel> {
  const all = () => (ensembles().size ? new Map([...models, ...ensembles()]) : models); // (no copy without ensembles)
  // A model by one of its aliases (looked up only when no model or ensemble has the name; listed under its own).
  const aliased = (name: string) => {
    for (const m of models.values()) if (m.aliases?.includes(name)) return m;
    return undefined;
  };
  return {
    get: (name) => models.get(name) ?? ensembles().get(name) ?? aliased(name),
    has: (name) => models.has(name) || ensembles().has(name) || aliased(name) !== undefined,
    get size() {
      return models.size + ensembles().size;
    },
    forEach: (each, self) => all().forEach(each, self),
    entries: () => all().entries(),
    keys: () => all().keys(),
    values: () => all().values(),
    [Symbol.iterator]: () => all()[Symbol.iterator](),
  };
}
