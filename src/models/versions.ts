import { templateIds } from './multiplex.js';

/**
 * Triton's model versions: a model's files named by `{version}` in its path (models/classifier/{version}/model.onnx),
 * each version a positive integer, and a policy saying which of them are served.
 */

/** Triton's version_policy: the latest N versions, all of them, or the ones listed. */
export type VersionPolicy = { latest: { num_versions: number } } | { all: Record<string, never> } | { specific: { versions: number[] } };

const VERSION = /^[1-9]\d{0,15}$/;

/** The versions whose files exist now, ascending. */
export function modelVersions(template: string): number[] {
  return templateIds(template, '{version}')
    .filter((v) => VERSION.test(v))
    .map(Number)
    .sort((a, b) => a - b);
}

/**
 * The versions the policy serves now, ascending (the last is the latest: what a request naming none gets);
 * `missing`: versions a `specific` policy names that have no file. Triton's default: the latest one.
 */
export function servedVersions(template: string, policy: VersionPolicy = { latest: { num_versions: 1 } }): { served: string[]; missing: string[] } {
  const present = modelVersions(template);
  if ('latest' in policy) return { served: present.slice(-policy.latest.num_versions).map(String), missing: [] };
  if ('all' in policy) return { served: present.map(String), missing: [] };
  const wanted = [...new Set(policy.specific.versions)].sort((a, b) => a - b);
  return { served: wanted.filter((v) => present.includes(v)).map(String), missing: wanted.filter((v) => !present.includes(v)).map(String) };
}

/** The versions a model serves now when its path names versions (`{version}`); undefined for any other model. */
export function versionsServed(model: { path: string; version_policy?: VersionPolicy }): string[] | undefined {
  return model.path.includes('{version}') ? servedVersions(model.path, model.version_policy).served : undefined;
}

/**
 * What a request naming no version gets: the latest served, or a version drawn by the percentages of `traffic`
 * (KServe's canary rollout: `{"2": 90, "3": 10}`, adding up to 100, every version in it served).
 */
export function unnamedVersion(served: readonly string[], traffic?: Record<string, number>, random = Math.random): () => string {
  const latest = served[served.length - 1];
  const shares = Object.entries(traffic ?? {}).filter(([, percent]) => percent > 0);
  if (shares.length === 0) return () => latest;
  return () => {
    let draw = random() * 100;
    for (const [version, percent] of shares) {
      draw -= percent;
      if (draw < 0) return version;
    }
    return shares[shares.length - 1][0]; // (rounding at the top end)
  };
}

/**
 * The shadow version a request also runs on, given the version that answers it: drawn at `percent`, never the
 * answering version itself (a shadow deployment's share of live traffic).
 */
export function shadowVersion(shadow?: { version: number; percent: number }, random = Math.random): (answered: string) => string | undefined {
  if (!shadow || shadow.percent <= 0) return () => undefined;
  const version = String(shadow.version);
  return (answered) => (answered !== version && random() * 100 < shadow.percent ? version : undefined);
}
