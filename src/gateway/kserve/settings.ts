import { Hono, type MiddlewareHandler } from 'hono';
import type { Logger } from 'pino';
import { badInput, notFound } from '../../errors/index.js';
import type { Telemetry, TraceScope } from '../../telemetry/index.js';
import { runtimeChangesOff } from '../admin.js';
import { readJson } from '../body.js';
import type { GatewayEnv, ServedModel } from '../types.js';

// Triton's logging and trace extensions: how much the gateway logs, and which requests it traces, read and
// changed while it serves (tritonclient's get/update_log_settings, get/update_trace_settings). Changes last
// until the gateway restarts; they need server.admin_api, as the other runtime changes do.

export type SettingsOptions = {
  log?: Logger;
  telemetry: Telemetry;
  models: ReadonlyMap<string, ServedModel>;
  writable: boolean;
  writeGuard: MiddlewareHandler<GatewayEnv>[];
};

type LogSettings = { log_file: string; log_info: boolean; log_warning: boolean; log_error: boolean; log_verbose_level: number; log_format: string };

/** pino's one threshold as Triton's flags: each kind of line on or off, verbose levels 1 (debug) and 2 (trace). */
function logSettings(log: Logger | undefined): LogSettings {
  const on = (level: string) => log?.isLevelEnabled(level) ?? false;
  return {
    log_file: '',
    log_info: on('info'),
    log_warning: on('warn'),
    log_error: on('error'),
    log_verbose_level: on('trace') ? 2 : on('debug') ? 1 : 0,
    log_format: 'default',
  };
}

/** Triton's flags as pino's threshold: the flags must describe one (what is on, every more severe kind too). */
function logLevel(s: LogSettings): string {
  const kinds = [
    ['log_error', s.log_error],
    ['log_warning', s.log_warning],
    ['log_info', s.log_info],
    ['log_verbose_level', s.log_verbose_level > 0],
  ] as const;
  const off = kinds.findIndex(([, enabled]) => !enabled);
  const on = off < 0 ? kinds.length : off;
  const after = kinds.findIndex(([, enabled], i) => enabled && i > on);
  if (after > 0)
    throw badInput(
      `${kinds[after][0]} is on but ${kinds[off][0]} is off: lines are kept by severity (error, warning, info, verbose), each kind with every more severe one`,
      kinds[off][0],
    );
  return s.log_verbose_level >= 2 ? 'trace' : (['silent', 'error', 'warn', 'info', 'debug'][on] as string);
}

const LOG_TYPES: Record<keyof LogSettings, 'string' | 'boolean' | 'number'> = {
  log_file: 'string',
  log_info: 'boolean',
  log_warning: 'boolean',
  log_error: 'boolean',
  log_verbose_level: 'number',
  log_format: 'string',
};

/** A change of log settings: known names of the right types; a log file and another format are not supported. */
function logChange(body: unknown): Partial<LogSettings> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badInput('the body must be a JSON object of log settings');
  for (const [name, value] of Object.entries(body)) {
    const type = LOG_TYPES[name as keyof LogSettings];
    if (!type) throw badInput(`unknown log setting ${JSON.stringify(name)}; the settings are ${Object.keys(LOG_TYPES).join(', ')}`, name);
    if (typeof value !== type || (name === 'log_verbose_level' && !(Number.isInteger(value) && (value as number) >= 0)))
      throw badInput(`${name} must be a ${name === 'log_verbose_level' ? 'non-negative integer' : type}, got ${JSON.stringify(value)}`, name);
  }
  const change = body as Partial<LogSettings>;
  if (change.log_file) throw badInput('log_file: logs go to standard output as JSON lines (send them on with your log collector)', 'log_file');
  if (change.log_format !== undefined && change.log_format !== 'default')
    throw badInput(`log_format: only "default" (JSON lines, as pino writes them), not ${JSON.stringify(change.log_format)}`, 'log_format');
  return change;
}

/** Trace settings as Triton answers them: strings, and a list for the level. */
const traceAnswer = (s: TraceScope) => ({
  trace_level: [s.level],
  trace_rate: String(s.rate),
  trace_count: String(s.count),
  log_frequency: '0',
  trace_mode: 'opentelemetry',
});

/** A change of trace settings, as strings (Triton's) or numbers; `null` (a model's only) goes back to the global setting. */
function traceChange(body: unknown, model: boolean): { [K in keyof TraceScope]?: TraceScope[K] | null } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badInput('the body must be a JSON object of trace settings');
  const change: { [K in keyof TraceScope]?: TraceScope[K] | null } = {};
  const number = (name: string, value: unknown, min: number) => {
    const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < min)
      throw badInput(`${name} must be an integer of at least ${min} (as a string, as Triton's), got ${JSON.stringify(value)}`, name);
    return n;
  };
  for (const [name, value] of Object.entries(body)) {
    if (value === null) {
      if (!model) throw badInput(`${name}: null clears a model's own setting; the global settings have no other to fall back on`, name);
      if (name === 'trace_level') change.level = null;
      else if (name === 'trace_rate') change.rate = null;
      else if (name === 'trace_count') change.count = null;
      else if (name !== 'log_frequency') throw badInput(`${name} cannot be cleared`, name);
      continue;
    }
    if (name === 'trace_level') {
      const levels = Array.isArray(value) ? value : [value];
      if (levels.length === 0 || !levels.every((l) => l === 'OFF' || l === 'TIMESTAMPS' || l === 'TENSORS'))
        throw badInput(`trace_level must be a list of OFF, TIMESTAMPS, got ${JSON.stringify(value)}`, name);
      if (levels.includes('TENSORS')) throw badInput('trace_level TENSORS is not supported: spans carry timings and attributes, never tensor data', name);
      change.level = levels.includes('TIMESTAMPS') ? 'TIMESTAMPS' : 'OFF';
    } else if (name === 'trace_rate') change.rate = number(name, value, 0);
    else if (name === 'trace_count') change.count = number(name, value, -1);
    else if (name === 'log_frequency') {
      if (number(name, value, 0) !== 0)
        throw badInput('log_frequency: spans go to the OpenTelemetry exporter as they end (telemetry.traces), not to a file', name);
    } else if (name === 'trace_mode') {
      if (value !== 'opentelemetry')
        throw badInput(`trace_mode: only "opentelemetry" (the exporter is telemetry.traces.exporter), not ${JSON.stringify(value)}`, name);
    } else if (name === 'trace_file') throw badInput('trace_file: spans go to the OpenTelemetry exporter (telemetry.traces), not to a file', name);
    else
      throw badInput(`unknown trace setting ${JSON.stringify(name)}; the settings are trace_level, trace_rate, trace_count, log_frequency, trace_mode`, name);
  }
  return change;
}

export function settingsRoutes({ log, telemetry, models, writable, writeGuard }: SettingsOptions): Hono<GatewayEnv> {
  const app = new Hono<GatewayEnv>();
  const mayWrite = () => {
    if (!writable) throw runtimeChangesOff();
  };

  app.get('/v2/logging', (c) => c.json(logSettings(log)));
  for (const guard of writeGuard) app.post('/v2/logging', guard);
  app.post('/v2/logging', async (c) => {
    mayWrite();
    const change = logChange(await readJson(c, 64 * 1024));
    const level = logLevel({ ...logSettings(log), ...change }); // (checked whole before anything changes)
    if (log && log.level !== level) {
      log.level = level;
      log.warn({ logLevel: level }, 'log level changed at runtime (until restart)'); // (`level` is pino's own: a second one overrode it)
    }
    return c.json(logSettings(log));
  });

  const traced = (model?: string) => {
    if (model !== undefined && !models.has(model)) throw notFound(`unknown model ${JSON.stringify(model)}`);
    return model;
  };
  for (const path of ['/v2/trace/setting', '/v2/models/:model/trace/setting']) {
    app.get(path, (c) => c.json(traceAnswer(telemetry.traceSettings.get(traced(c.req.param('model'))))));
    for (const guard of writeGuard) app.post(path, guard);
    app.post(path, async (c) => {
      mayWrite();
      const model = traced(c.req.param('model'));
      const change = traceChange(await readJson(c, 64 * 1024), model !== undefined);
      const level = change.level === null ? telemetry.traceSettings.get().level : (change.level ?? telemetry.traceSettings.get(model).level);
      if (level !== 'OFF' && telemetry.config.traces.exporter === 'none')
        throw badInput('traces are off (telemetry.traces.exporter: none): start the gateway with an exporter (otlp, console) to trace', 'trace_level');
      const settings = telemetry.traceSettings.update(change, model);
      log?.info({ ...(model !== undefined && { model }), traceSettings: settings }, 'trace settings changed at runtime (until restart)');
      return c.json(traceAnswer(settings));
    });
  }
  return app;
}
