import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { baseUrl, type Config, configSchema } from './schema.js';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** What a fleet's gateways do only with the secret they share (shared_limits, sequence_backup): a config error without it. */
export function fleetSecretNeeded(config: Config): void {
  const fleet = config.server.fleet;
  const needing = fleet && !fleet.secret && (['shared_limits', 'sequence_backup'] as const).find((option) => fleet[option]);
  if (needing)
    throw new ConfigError(`server.fleet.${needing}: the gateways need the secret the fleet shares (server.fleet.secret, or $INFERGATE_FLEET_SECRET)`);
}

/** Reads, validates and resolves a config file: model paths become absolute, relative to the file. */
export async function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): Promise<Config> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config ${file}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`${file} is not valid YAML: ${(err as Error).message}`);
  }
  const config = parseConfig(raw, file);
  // $PORT (Cloud Run's, Heroku's, ours), else Vertex AI's $AIP_HTTP_PORT for its custom containers.
  // (set but empty — Compose's PORT=${PORT} with PORT unset — is unset: Number('') is 0, a random port)
  const [name, given] = env.PORT ? ['PORT', env.PORT] : ['AIP_HTTP_PORT', env.AIP_HTTP_PORT || undefined];
  if (given !== undefined) {
    const port = Number(given);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(`${name}: expected a port number, got ${JSON.stringify(given)}`);
    config.server.port = port;
  }
  // One config for every pod of a StatefulSet: each says who it is ($INFERGATE_FLEET_SELF=http://$(POD_NAME).gw:8080).
  const fleet = config.server.fleet;
  if (fleet && env.INFERGATE_FLEET_SELF !== undefined) {
    if (fleet.peers && !fleet.peers.map(baseUrl).includes(baseUrl(env.INFERGATE_FLEET_SELF)))
      throw new ConfigError(`INFERGATE_FLEET_SELF: ${env.INFERGATE_FLEET_SELF} is not one of server.fleet.peers (${fleet.peers.join(', ')})`);
    fleet.self = env.INFERGATE_FLEET_SELF;
  }
  if (fleet && env.INFERGATE_FLEET_SECRET !== undefined) {
    if (env.INFERGATE_FLEET_SECRET.length < 16) throw new ConfigError('INFERGATE_FLEET_SECRET: secrets must be at least 16 characters');
    fleet.secret = env.INFERGATE_FLEET_SECRET;
  }
  fleetSecretNeeded(config); // (the secret may come from $INFERGATE_FLEET_SECRET, after parsing: not the schema's to say)
  fleetSelf(config); // (validate says so too)
  const base = dirname(resolve(file));
  const within = (p: string) => (isAbsolute(p) ? p : resolve(base, p));
  for (const model of Object.values(config.models)) {
    model.path = within(model.path);
    if (model.labels) model.labels = within(model.labels);
    if (model.tokenizer) model.tokenizer = within(model.tokenizer);
    if (model.ocr) model.ocr.dictionary = within(model.ocr.dictionary);
    if (model.lora_adapters) model.lora_adapters = Object.fromEntries(Object.entries(model.lora_adapters).map(([name, p]) => [name, within(p)]));
  }
  if (config.server.batch_dir) config.server.batch_dir = within(config.server.batch_dir);
  if (config.capture?.dir) config.capture.dir = within(config.capture.dir);
  if (config.server.tls) Object.assign(config.server.tls, { cert: within(config.server.tls.cert), key: within(config.server.tls.key) });
  return config;
}

/** server.fleet's own URL, which a fleet must say (in the file or $INFERGATE_FLEET_SELF); no fleet: undefined. */
export function fleetSelf(config: Config): string | undefined {
  const fleet = config.server.fleet;
  if (fleet && !fleet.self) throw new ConfigError('server.fleet.self: say how the other gateways reach this one (or set $INFERGATE_FLEET_SELF)');
  return fleet?.self;
}

export function parseConfig(raw: unknown, source = 'config'): Config {
  const result = configSchema.safeParse(raw ?? {}, { reportInput: true });
  if (result.success) return result.data;
  const lines = result.error.issues.map(describeIssue);
  throw new ConfigError(`invalid ${source}:\n  ${lines.join('\n  ')}`);
}

function describeIssue(issue: z.core.$ZodIssue): string {
  const path = issue.path.map(String).join('.') || '(top level)';
  if (issue.code === 'unrecognized_keys') {
    const at = issue.path.length ? `${path}.` : '';
    return `${issue.keys.map((k) => at + k).join(', ')}: unknown option`;
  }
  const input = 'input' in issue ? issue.input : undefined;
  const got = input !== undefined ? `, got ${shown(input)}` : ', but it is missing';
  // A name refused (a model's, an adapter's): the name rule's own words, not zod's "Invalid key in record".
  if (issue.code === 'invalid_key' && issue.issues.length > 0) return `${path}: ${issue.issues[0].message}${got}`;
  // One of several forms (unless the union says it in words of its own): the value is of none of their types — say which they are — or it is of one form's type
  // and that form says what is wrong (the form with the fewest complaints: a typo'd key, not "missing kty").
  if (issue.code === 'invalid_union' && issue.errors.length > 0 && issue.message === 'Invalid input') {
    const typeOnly = (branch: z.core.$ZodIssue[]) => branch.length === 1 && branch[0].code === 'invalid_type' && branch[0].path.length === 0;
    const forms = issue.errors.filter((branch) => branch.length > 0 && !typeOnly(branch));
    if (forms.length === 0) {
      const types = [...new Set(issue.errors.flatMap((branch) => branch.map((i) => (i as { expected?: string }).expected ?? [])))];
      return `${path}: expected ${types.join(' or ')}${got}`;
    }
    const closest = forms.reduce((a, b) => (b.length < a.length ? b : a));
    return closest.map((i) => describeIssue({ ...i, path: [...issue.path, ...i.path] } as z.core.$ZodIssue)).join('\n  ');
  }
  const expected = issue.message.replace(/^(Invalid input|Too small|Too big|Invalid string): /, '').replace(/, received \w+$/, '');
  // A rule across options (a refine) is checked on the object holding them: its message names them, the object is noise.
  if (issue.code === 'custom' && typeof input === 'object' && input !== null && !Array.isArray(input)) return `${path}: ${expected}`;
  return `${path}: ${expected}${got}`;
}

/** A value as the config wrote it (JSON, but YAML's .inf and .nan as themselves: JSON says null). */
const shown = (value: unknown) => (typeof value === 'number' && !Number.isFinite(value) ? String(value) : JSON.stringify(value));
