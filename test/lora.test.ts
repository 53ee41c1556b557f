import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { parseConfig } from '../src/config/index.js';
import { MODELS, startTestGateway } from './helpers.js';

// LoRA adapters (vLLM's multi-LoRA serving) on real replicas of a decoder that takes them (models/gpt.py --lora),
// with PEFT-layout adapters (models/lora.py), through the openai client, TGI's adapter_id and Triton's lora_name.
const adapters = (name: string) => fileURLToPath(new URL(`../examples/adapters/${name}`, import.meta.url));
const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/adapters/${name}`, import.meta.url));
let gw: Awaited<ReturnType<typeof startTestGateway>>;
let client: OpenAI;
beforeAll(async () => {
  gw = await startTestGateway({
    server: { admin_api: true },
    // A URL of its own for one fine-tune (Modal's web endpoint per model): the adapter, whatever the body names.
    endpoints: [{ path: '/sonnets/chat/completions', model: 'sonnets', protocol: 'openai-chat' }],
    models: {
      'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', scaling: { min_containers: 1 } },
      'tiny-gpt-lora': {
        path: `${MODELS}tiny-gpt-lora.onnx`,
        device: 'cpu',
        scaling: { min_containers: 1 },
        lora_adapters: { sonnets: adapters('sonnets'), pirate: adapters('pirate') },
      },
    },
  });
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused' });
});
afterAll(() => gw?.shutdown());

const PROMPT = 'The weather today';
const complete = async (model: string, prompt = PROMPT, max_tokens = 8) => {
  const r = await client.completions.create({ model, prompt, max_tokens, temperature: 0 });
  return { model: r.model, text: r.choices[0].text };
};
const post = (path: string, body: object) =>
  fetch(`${gw.url}${path}`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });

describe('LoRA adapters', () => {
  it('are listed as models of their own, their base as parent', async () => {
    const listed = (await client.models.list()).data as unknown as Record<string, unknown>[];
    expect(listed.find((m) => m.id === 'sonnets')).toMatchObject({ object: 'model', parent: 'tiny-gpt-lora', root: adapters('sonnets'), max_model_len: 512 });
    expect(listed.find((m) => m.id === 'pirate')).toMatchObject({ parent: 'tiny-gpt-lora' });
    expect(listed.find((m) => m.id === 'tiny-gpt-lora')).not.toHaveProperty('parent');
    expect(await client.models.retrieve('sonnets')).toMatchObject({ id: 'sonnets', parent: 'tiny-gpt-lora' });
  });

  it('generate with the adapter a request names as its model; without one, the model as it is', async () => {
    const plain = await complete('tiny-gpt');
    const base = await complete('tiny-gpt-lora');
    expect(base.text).toBe(plain.text); // the same weights: slot 0 adds nothing
    const sonnets = await complete('sonnets');
    const pirate = await complete('pirate');
    expect(sonnets.model).toBe('sonnets');
    expect(new Set([base.text, sonnets.text, pirate.text]).size).toBe(3);
    const chat = await client.chat.completions.create({ model: 'sonnets', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, temperature: 0 });
    expect(chat.model).toBe('sonnets');
    expect(chat.choices[0].message.content).not.toBe(
      (await client.chat.completions.create({ model: 'tiny-gpt-lora', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, temperature: 0 })).choices[0]
        .message.content,
    );
  });

  it('share generation steps across adapters, each stream getting what it gets alone', async () => {
    const models = ['sonnets', 'tiny-gpt-lora', 'pirate', 'sonnets', 'pirate'];
    const alone = new Map<string, string>();
    // (long enough that the five overlap, however slow the machine)
    for (const m of new Set(models)) alone.set(m, (await complete(m, 'Once upon a time', 32)).text);
    const stepsBefore = (await (await fetch(`${gw.url}/v2/models/tiny-gpt-lora/stats`)).json()).stepSizes;
    const streamed = await Promise.all(
      models.map(async (model) => {
        const stream = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 32, temperature: 0, stream: true });
        let text = '';
        for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
        return text;
      }),
    );
    expect(streamed).toEqual(models.map((m) => alone.get(m)));
    const stepsAfter = (await (await fetch(`${gw.url}/v2/models/tiny-gpt-lora/stats`)).json()).stepSizes as Record<string, number>;
    const shared = Object.entries(stepsAfter).filter(([size, n]) => Number(size) >= 3 && n > (stepsBefore[size] ?? 0));
    expect(shared.length).toBeGreaterThan(0); // steps of three or more sequences: adapters batched together
  });

  it("are named by TGI's adapter_id and Triton vLLM backend's lora_name", async () => {
    const { text } = await complete('sonnets');
    const tgi = await post('/generate', { model: 'tiny-gpt-lora', inputs: PROMPT, parameters: { max_new_tokens: 8, adapter_id: 'sonnets' } });
    expect(await tgi.json()).toEqual({ generated_text: text });
    const triton = await post('/v2/models/tiny-gpt-lora/generate', {
      text_input: PROMPT,
      parameters: { max_tokens: 8, temperature: 0, exclude_input_in_output: true, lora_name: 'sonnets' },
    });
    // (answered, logged and measured as the adapter, as the other routes' adapters are)
    expect(await triton.json()).toMatchObject({ model_name: 'sonnets', text_output: text });
    const unknown = await post('/generate', { model: 'tiny-gpt-lora', inputs: PROMPT, parameters: { adapter_id: 'nope' } });
    expect(unknown.status).toBe(422);
    expect((await unknown.json()).error).toMatch(/tiny-gpt-lora has no LoRA adapter nope \(its adapters: sonnets, pirate\)/);
    const none = await post('/v2/models/tiny-gpt/generate', { text_input: PROMPT, parameters: { lora_name: 'sonnets' } });
    expect(none.status).toBe(400);
    expect((await none.json()).error).toMatch(/tiny-gpt has no LoRA adapter sonnets \(it has none\)/);
  });

  it('are named as the model on the WebSocket too', async () => {
    const { text } = await complete('sonnets');
    const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/v1/ws`);
    await new Promise((r) => ws.once('open', r));
    let got = '';
    const done = new Promise<Record<string, unknown>>((resolve) =>
      ws.on('message', (data) => {
        const m = JSON.parse(String(data));
        if (m.type === 'token') got += m.text;
        else resolve(m);
      }),
    );
    ws.send(JSON.stringify({ id: 's', type: 'completion', model: 'sonnets', prompt: PROMPT, max_tokens: 8, temperature: 0 }));
    expect(await done).toMatchObject({ type: 'done', finish_reason: 'length' });
    ws.close();
    expect(got).toBe(text);
  });

  it('are served by an endpoint bound to one (a URL per fine-tune)', async () => {
    const messages = [{ role: 'user' as const, content: 'hi' }];
    const direct = await client.chat.completions.create({ model: 'sonnets', messages, max_tokens: 4, temperature: 0 });
    const bound = new OpenAI({ baseURL: `${gw.url}/sonnets`, apiKey: 'unused' });
    const viaEndpoint = await bound.chat.completions.create({ model: 'anything', messages, max_tokens: 4, temperature: 0 });
    expect(viaEndpoint.model).toBe('sonnets');
    expect(viaEndpoint.choices[0].message.content).toBe(direct.choices[0].message.content);
    const lora = { path: `${MODELS}tiny-gpt-lora.onnx`, lora_adapters: { s: adapters('sonnets') } };
    expect(() => parseConfig({ endpoints: [{ path: '/s', model: 's' }], models: { g: lora } })).toThrow(
      /endpoints.0.protocol: s is a LoRA adapter: it is served with protocol openai-chat, openai-completions, openai-responses, anthropic-messages/,
    );
  });

  it('name the adapters in a 404 for an unknown model', async () => {
    const err = await complete('sonets').catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    expect(err.message).toMatch(/generates with: tiny-gpt, tiny-gpt-lora, sonnets, pirate/);
  });

  it("load and unload at runtime (vLLM's /v1/load_lora_adapter), refusing what does not fit with nothing changed", async () => {
    const load = await post('/v1/load_lora_adapter', { lora_name: 'sonnets2', lora_path: fixture('sonnets-half-alpha') });
    expect(load.status).toBe(200);
    expect(await load.text()).toBe("Success: LoRA adapter 'sonnets2' added successfully.");
    expect((await complete('sonnets2')).text).toBe((await complete('sonnets')).text); // the same delta, scaled otherwise
    const refused = async (body: object, message: RegExp) => {
      const res = await post('/v1/load_lora_adapter', body);
      expect(res.status).toBe(400);
      expect((await res.json()).error.message).toMatch(message);
    };
    await refused({ lora_name: 'sonnets2', lora_path: fixture('sonnets-zero') }, /sonnets2 is loaded already \(load_inplace: true replaces it\)/);
    await refused({ lora_name: 'wide', lora_path: fixture('wide') }, /lora_A.weight is \[4, 768\]; for this model and r=4 it must be \[4, 32\]/);
    await refused({ lora_name: 'gone', lora_path: '/nonexistent' }, /adapter_config.json: cannot be read \(ENOENT\)/);
    await refused({ lora_name: 'tiny-gpt', lora_path: fixture('sonnets-zero') }, /tiny-gpt is a model's name/);
    await refused(
      { lora_name: 'x', lora_path: fixture('sonnets-zero'), model: 'tiny-gpt' },
      /model tiny-gpt does not take LoRA adapters \(those that do: tiny-gpt-lora/,
    );
    expect((await client.models.list()).data.map((m) => m.id)).not.toContain('wide');
    // Replaced in place: the zero adapter gives the model's own text.
    expect((await post('/v1/load_lora_adapter', { lora_name: 'sonnets2', lora_path: fixture('sonnets-zero'), load_inplace: true })).status).toBe(200);
    expect((await complete('sonnets2')).text).toBe((await complete('tiny-gpt-lora')).text);
    const unload = await post('/v1/unload_lora_adapter', { lora_name: 'sonnets2' });
    expect(await unload.text()).toBe("Success: LoRA adapter 'sonnets2' removed successfully.");
    expect(await complete('sonnets2').catch((e) => e.status)).toBe(404);
    expect((await post('/v1/unload_lora_adapter', { lora_name: 'sonnets2' })).status).toBe(404);
    expect((await complete('sonnets')).model).toBe('sonnets'); // the others serve on
  });

  it('are read again when their files change under the same path (load_inplace: a training loop publishing weights)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'infergate-adapter-'));
    const publish = (from: string) => {
      for (const file of ['adapter_config.json', 'adapter_model.safetensors']) copyFileSync(join(adapters(from), file), join(dir, file));
    };
    try {
      // (a prompt of more than a prefix-cache block: its cached keys and values must not outlive the weights either)
      const long = 'A prompt long enough to fill a whole block of the prefix cache, and then a few words more';
      publish('sonnets');
      expect((await post('/v1/load_lora_adapter', { lora_name: 'trained', lora_path: dir })).status).toBe(200);
      expect((await complete('trained', long)).text).toBe((await complete('sonnets', long)).text);
      publish('pirate');
      expect((await post('/v1/load_lora_adapter', { lora_name: 'trained', lora_path: dir, load_inplace: true })).status).toBe(200);
      expect((await complete('trained', long)).text).toBe((await complete('pirate', long)).text);
      expect((await complete('trained')).text).toBe((await complete('pirate')).text);
    } finally {
      await post('/v1/unload_lora_adapter', { lora_name: 'trained' });
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('LoRA configuration', () => {
  const start = (models: Record<string, object>) => startTestGateway({ models });

  it('refuses adapters that do not fit, on a model that takes none, or named as a model', async () => {
    const lora = (a: Record<string, string>) => ({ path: `${MODELS}tiny-gpt-lora.onnx`, device: 'cpu', scaling: { min_containers: 0 }, lora_adapters: a });
    await expect(start({ g: lora({ mlp: fixture('mlp') }) })).rejects.toThrow(
      /models.g.lora_adapters.mlp: .*changes layer h.0.mlp.c_fc; the model takes adapters for attn.c_attn/,
    );
    await expect(start({ g: { ...lora({ s: adapters('sonnets') }), path: `${MODELS}tiny-gpt.onnx` } })).rejects.toThrow(
      /models.g.lora_adapters: the model takes no LoRA adapters/,
    );
    expect(() => parseConfig({ models: { g: lora({ h: adapters('sonnets') }), h: lora({}) } })).toThrow(/models.g.lora_adapters.h: h is a model's name too/);
    await expect(start({ g: { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', max_loras: 2 } })).rejects.toThrow(
      /models.g.max_loras: the model takes no LoRA adapters/,
    );
  });

  it('change in place on a reload, read before anything changes; adapters loaded at runtime stay', async () => {
    const lora = (a: Record<string, string>) => ({
      server: { admin_api: true },
      models: { g: { path: `${MODELS}tiny-gpt-lora.onnx`, device: 'cpu', scaling: { min_containers: 1 }, lora_adapters: a } },
    });
    const g = await startTestGateway(lora({ sonnets: adapters('sonnets') }));
    const text = async (model: string) => {
      const res = await fetch(`${g.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ model, prompt: PROMPT, max_tokens: 4, temperature: 0 }) });
      return res.status === 200 ? (await res.json()).choices[0].text : res.status;
    };
    try {
      const pid = async () => (await (await fetch(`${g.url}/v2/models/g/stats`)).json()).replicas[0].pid;
      const before = await pid();
      const sonnets = await text('sonnets');
      await fetch(`${g.url}/v1/load_lora_adapter`, { method: 'POST', body: JSON.stringify({ lora_name: 'mine', lora_path: fixture('sonnets-rslora') }) });
      expect(await g.reload(parseConfig(lora({ pirate: adapters('pirate') })))).toMatchObject({ replaced: [], unchanged: ['g'], lora_adapters: ['g'] });
      expect(await pid()).toBe(before); // the replicas kept
      expect(await text('sonnets')).toBe(404);
      expect(await text('pirate')).toBeTypeOf('string');
      expect(await text('mine')).toBe(sonnets);
      await expect(g.reload(parseConfig(lora({ pirate: adapters('pirate'), wide: fixture('wide') })))).rejects.toThrow(
        /models.g.lora_adapters.wide: .*must be \[4, 32\]/,
      );
      expect(await text('pirate')).toBeTypeOf('string'); // nothing changed
      expect(await text('wide')).toBe(404);
    } finally {
      await g.shutdown();
    }
  });

  it('loads at runtime only with server.admin_api', async () => {
    const g = await start({ g: { path: `${MODELS}tiny-gpt-lora.onnx`, device: 'cpu', scaling: { min_containers: 0 } } });
    try {
      const res = await fetch(`${g.url}/v1/load_lora_adapter`, { method: 'POST', body: JSON.stringify({ lora_name: 's', lora_path: adapters('sonnets') }) });
      expect(res.status).toBe(403);
    } finally {
      await g.shutdown();
    }
  });
});
