import { Hono, type MiddlewareHandler } from 'hono';
import { z } from 'zod';
import { badInput, GatewayError, notFound } from '../errors/index.js';
import { readJson } from './body.js';
import type { Fleet } from './fleet.js';
import type { Autoscaling, GatewayEnv, ServedModel } from './types.js';

/** What a runtime change is answered without server.admin_api. */
export const runtimeChangesOff = () => new GatewayError(403, 'forbidden', 'runtime changes are off: set server.admin_api: true in the config to allow them');

export type AdminOptions = {
  models: ReadonlyMap<string, ServedModel>;
  /** Runtime changes (server.admin_api). Reading is always served, behind the built-in routes' guard. */
  writable: boolean;
  /** What a change needs beyond that guard (auth.admin_scopes under jwt). */
  writeGuard: MiddlewareHandler<GatewayEnv>[];
  /** Re-reads the config file and applies its models (POST /admin/reload); absent when the gateway has no file. */
  reload?: () => Promise<object>;
  /** The other gateways behind the same load balancer (server.fleet), for GET /admin/fleet. */
  fleet?: Fleet;
};

/** A change to a pool's autoscaling: any of the config's own fields (src/config/schema.ts), nothing else. */
export const autoscalingPatch = z
  .object({
    min_containers: z.number().int().min(0),
    max_containers: z.number().int().positive(),
    buffer_containers: z.number().int().min(0),
    target_inputs: z.number().int().positive(),
    scaledown_window: z.number().min(0),
  })
  .partial()
  .strict();

/**
 * The admin API: the pools as the autoscaler sees them, and Modal's `update_autoscaler` — a model's
 * min/max/buffer containers, target inputs and scaledown window changed while it serves, in effect at once
 * (the pool scales to the new bounds on the spot) and until the gateway restarts (the config is not written).
 */
export function adminRoutes({ models, writable, writeGuard, reload, fleet }: AdminOptions): Hono<GatewayEnv> {
  const app = new Hono<GatewayEnv>();
  const autoscalingOf = (name: string): Autoscaling => {
    const m = models.get(name);
    if (!m?.autoscaling) throw notFound(`no model named ${name}`);
    return m.autoscaling;
  };
  app.get('/admin/fleet', async (c) => {
    if (!fleet) throw new GatewayError(404, 'not_found', 'this gateway is in no fleet (server.fleet)');
    return c.json(await fleet.status());
  });
  app.get('/admin/pools', (c) => c.json({ models: [...models.values()].map((m) => m.admin?.() ?? { model: m.name, replicas: m.replicas() }) }));
  app.get('/admin/models/:model/autoscaler', (c) => c.json({ model: c.req.param('model'), ...autoscalingOf(c.req.param('model')).get() }));
  for (const guard of writeGuard) app.post('/admin/models/:model/autoscaler', guard);
  app.post('/admin/models/:model/autoscaler', async (c) => {
    if (!writable) throw runtimeChangesOff();
    const name = c.req.param('model') as string;
    const autoscaling = autoscalingOf(name);
    const patch = autoscalingPatch.safeParse(await readJson(c, 64 * 1024));
    if (!patch.success) {
      const issue = patch.error.issues[0];
      if (issue.code === 'unrecognized_keys')
        throw badInput(`unknown field "${issue.keys[0]}": a change names ${Object.keys(autoscalingPatch.shape).join(', ')}`, issue.keys[0]);
      throw badInput(`${issue.path.join('.') || 'body'}: ${issue.message}`, issue.path.join('.') || undefined);
    }
    const next = { ...autoscaling.get(), ...patch.data };
    if (next.max_containers < next.min_containers)
      throw badInput(`max_containers (${next.max_containers}) must be at least min_containers (${next.min_containers})`, 'max_containers');
    return c.json({ model: name, ...autoscaling.update(patch.data) });
  });

  // Triton's model control (explicit mode): unload stops a model's replicas (its GPU memory back) and refuses
  // its requests; load starts them again. Answered once done, as Triton's are.
  for (const action of ['load', 'unload'] as const) {
    const path = `/v2/repository/models/:model/${action}`;
    for (const guard of writeGuard) app.post(path, guard);
    app.post(path, async (c) => {
      if (!writable) throw new GatewayError(403, 'forbidden', 'model control is off: set server.admin_api: true in the config to allow it');
      const name = c.req.param('model') as string;
      const control = models.get(name)?.control;
      if (!control) throw notFound(`no model named ${name}`);
      const body = (await readJson(c, 64 * 1024, { emptyAllowed: true })) as { parameters?: Record<string, unknown> } | undefined;
      // (tritonclient's unload always sends unload_dependents: an ensemble over the model fails its requests while
      // the model is unloaded, dependents unloaded or not)
      const given = Object.keys(body?.parameters ?? {}).filter((k) => !(action === 'unload' && k === 'unload_dependents'));
      if (given.length > 0) throw badInput(`parameters ${given.join(', ')} are not supported: a model is loaded as the config has it`, 'parameters');
      try {
        await control[action]();
      } catch (err) {
        if (err instanceof GatewayError) throw err;
        // A load that read the model's files again and found them unfit (a config error): nothing changed.
        throw badInput(`model ${name} not loaded again, nothing changed: ${(err as Error).message}`, undefined, 'config_invalid');
      }
      return c.json({});
    });
  }

  // The config file again, its models applied in place (as SIGHUP does): the report says what changed.
  for (const guard of writeGuard) app.post('/admin/reload', guard);
  app.post('/admin/reload', async (c) => {
    if (!writable) throw runtimeChangesOff();
    if (!reload) throw new GatewayError(404, 'not_found', 'this gateway was not started from a config file: there is nothing to reload');
    try {
      return c.json(await reload());
    } catch (err) {
      if (err instanceof GatewayError) throw err;
      // A config that does not check out changes nothing: the caller's to fix.
      throw badInput(`config not reloaded, nothing changed: ${(err as Error).message}`, undefined, 'config_invalid');
    }
  });
  return app;
}
