import { Hono, type MiddlewareHandler } from 'hono';
import { z } from 'zod';
import { MODEL_NAME } from '../config/schema.js';
import { badInput, notFound } from '../errors/index.js';
import { type LoraTarget, type LoraWeights, readAdapter } from '../models/lora.js';
import { runtimeChangesOff } from './admin.js';
import { readJson } from './body.js';
import { parseBody } from './openai/schema.js';
import type { GatewayEnv, ServedModel } from './types.js';

/** An adapter a generative model serves: requests name it as their model. */
export type LoraAdapter = { name: string; path: string; rank: number; created: number; digest: string };

/**
 * A generative model's LoRA adapters by name (vLLM's): the config's `lora_adapters`, and those loaded or
 * unloaded while it serves (POST /v1/load_lora_adapter). Each is read when it is named, with the code the
 * replicas read it with, so that one that does not fit the model is refused then, not at a request.
 */
export class LoraAdapters {
  private byName = new Map<string, LoraAdapter>();

  constructor(private targets: readonly LoraTarget[]) {}

  /** Reads and adds an adapter; throws what does not fit (another adapter of the name: unless `replace`). */
  async add(name: string, path: string, replace = false): Promise<LoraAdapter> {
    if (this.byName.has(name) && !replace) throw new Error(`an adapter named ${name} is loaded already (load_inplace: true replaces it)`);
    const adapter = adapterOf(name, path, await readAdapter(path, this.targets));
    this.byName.set(name, adapter);
    return adapter;
  }

  /**
   * The config's adapters moving from `before` to `after` (a reload): every one named is read now (throwing what
   * does not fit); the change is made by the function returned. Those `before` named and `after` does not are
   * dropped, those loaded at runtime stay.
   */
  async prepare(before: Record<string, string>, after: Record<string, string>): Promise<() => void> {
    const read = await Promise.all(
      Object.entries(after).map(async ([name, path]) => {
        const weights = await readAdapter(path, this.targets).catch((err: Error) => {
          throw new Error(`${name}: ${err.message}`);
        });
        const kept = this.byName.get(name);
        return kept?.path === path && kept.digest === weights.digest ? kept : adapterOf(name, path, weights);
      }),
    );
    return () => {
      for (const name of Object.keys(before)) if (!(name in after)) this.byName.delete(name);
      for (const adapter of read) this.byName.set(adapter.name, adapter);
    };
  }

  remove(name: string): boolean {
    return this.byName.delete(name);
  }

  get(name: string): LoraAdapter | undefined {
    return this.byName.get(name);
  }

  list(): LoraAdapter[] {
    return [...this.byName.values()];
  }
}

const adapterOf = (name: string, path: string, { rank, digest }: LoraWeights): LoraAdapter => ({
  name,
  path,
  rank,
  digest,
  created: Math.floor(Date.now() / 1000),
});

/**
 * An adapter as a model of its own for the generative routes: the base model's everything, under the
 * adapter's name (answers, logs and metrics say it), every generation of it carrying the adapter.
 */
export function adapterModel(base: ServedModel, adapter: LoraAdapter): ServedModel {
  const generation = base.generation as NonNullable<ServedModel['generation']>;
  const ref = { name: adapter.name, path: adapter.path, digest: adapter.digest };
  return {
    ...base,
    name: adapter.name,
    generation: { ...generation, scheduler: { generate: (req, hooks) => generation.scheduler.generate({ ...req, adapter: ref }, hooks) } },
  };
}

/** `m` generating with its adapter `name` when one is named (TGI's adapter_id, Triton vLLM backend's lora_name); 400 naming its adapters if it has no such one. */
export function withAdapter(m: ServedModel, name: string | null | undefined, param: string): ServedModel {
  if (name == null) return m;
  const adapter = m.generation?.adapters?.get(name);
  if (adapter) return adapterModel(m, adapter);
  const names = m.generation?.adapters?.list().map((a) => a.name) ?? [];
  throw badInput(`${param}: ${m.name} has no LoRA adapter ${name} (${names.length ? `its adapters: ${names.join(', ')}` : 'it has none'})`, param);
}

/** The adapter of this name as a model of its own (adapterModel), if a model has one so named. */
export function adapterNamed(models: ReadonlyMap<string, ServedModel>, name: string): ServedModel | undefined {
  const found = findAdapter(models, name);
  return found && adapterModel(found.base, found.adapter);
}

/** The adapter of this name among the models' (and its base), if one has it. */
export function findAdapter(models: ReadonlyMap<string, ServedModel>, name: string): { base: ServedModel; adapter: LoraAdapter } | undefined {
  for (const base of models.values()) {
    const adapter = base.generation?.adapters?.get(name);
    if (adapter) return { base, adapter };
  }
  return undefined;
}

export const loadRequest = z.object({
  lora_name: z.string().regex(MODEL_NAME, 'expected an adapter name of letters, digits, _ . -'),
  lora_path: z.string().min(1),
  /** Replace an adapter of the name (vLLM's). */
  load_inplace: z.boolean().optional(),
  /** The model it is for, where several take adapters (an extension). */
  model: z.string().optional(),
});
export const unloadRequest = z.object({ lora_name: z.string().min(1), lora_int_id: z.number().int().optional() });

/**
 * vLLM's runtime adapter loading (VLLM_ALLOW_RUNTIME_LORA_UPDATING; here server.admin_api and its guard):
 * POST /v1/load_lora_adapter {lora_name, lora_path} reads the adapter (a path on the gateway's machine, and
 * on a remote replica's) and serves it under that name at once; /v1/unload_lora_adapter stops serving it
 * (generations under way finish with it). Until restart or a reload that replaces the model.
 */
export function loraRoutes(opts: {
  models: ReadonlyMap<string, ServedModel>;
  writable: boolean;
  writeGuard: MiddlewareHandler<GatewayEnv>[];
}): Hono<GatewayEnv> {
  const { models, writable, writeGuard } = opts;
  const app = new Hono<GatewayEnv>();
  const takers = () => [...models.values()].filter((m) => m.generation?.adapters);
  for (const path of ['/v1/load_lora_adapter', '/v1/unload_lora_adapter']) for (const guard of writeGuard) app.post(path, guard);
  app.post('/v1/load_lora_adapter', async (c) => {
    if (!writable) throw runtimeChangesOff();
    const req = parseBody(loadRequest, await readJson(c, 64 * 1024));
    const all = takers();
    const base = req.model === undefined ? (all.length === 1 ? all[0] : undefined) : all.find((m) => m.name === req.model);
    if (!base) {
      const names = all.map((m) => m.name).join(', ') || 'none';
      throw req.model === undefined && all.length > 1
        ? badInput(`several models take LoRA adapters (${names}): name one with "model"`, 'model')
        : badInput(
            `${req.model === undefined ? 'no model here' : `model ${req.model} does not`} take LoRA adapters (those that do: ${names}; models/gpt.py --lora builds one)`,
            'model',
          );
    }
    const owner = findAdapter(models, req.lora_name)?.base;
    if (models.has(req.lora_name) || (owner && owner !== base))
      throw badInput(`${req.lora_name} is ${owner ? `${owner.name}'s adapter's` : "a model's"} name: requests name an adapter as their model`, 'lora_name');
    try {
      const adapters = base.generation?.adapters;
      await adapters?.add(req.lora_name, req.lora_path, req.load_inplace);
    } catch (err) {
      throw badInput(`adapter ${req.lora_name} not loaded: ${(err as Error).message}`, 'lora_path');
    }
    return c.text(`Success: LoRA adapter '${req.lora_name}' added successfully.`);
  });
  app.post('/v1/unload_lora_adapter', async (c) => {
    if (!writable) throw runtimeChangesOff();
    const req = parseBody(unloadRequest, await readJson(c, 64 * 1024));
    const found = findAdapter(models, req.lora_name);
    if (!found) throw notFound(`The lora adapter '${req.lora_name}' cannot be found.`);
    found.base.generation?.adapters?.remove(req.lora_name);
    return c.text(`Success: LoRA adapter '${req.lora_name}' removed successfully.`);
  });
  return app;
}
