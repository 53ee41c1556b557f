import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/index.js';
import { MODELS, ROOT, startTestGateway } from './helpers.js';

// Remote replicas: `infergate replica` processes listening on TCP (here on this machine, as they would on others),
// and gateways that list their addresses in a model's `remote`.
const TOKEN = 'test-replica-token-0123456789';
const config = join(tmpdir(), `infergate-remote-${process.pid}.yaml`);
writeFileSync(
  config,
  `models:\n  mlp: { path: ${MODELS}mlp.onnx, device: cpu, threads: 1 }\n  tiny-gpt: { path: ${MODELS}tiny-gpt.onnx, device: cpu, threads: 1 }\n`,
);
const replicas: ChildProcess[] = [];

/** `infergate replica` for one model of the config, on `port` (0: any); resolves with its address once it listens. */
async function startReplica(model: string, port = 0, token = TOKEN): Promise<{ child: ChildProcess; address: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli.ts'), 'replica', '-c', config, '-m', model, '-l', `127.0.0.1:${port}`], {
    cwd: ROOT,
    env: { ...process.env, INFERGATE_REPLICA_TOKEN: token },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  replicas.push(child);
  let out = '';
  const address = await new Promise<string>((resolve, reject) => {
    child.stdout?.on('data', (d) => {
      out += d;
      const m = /listening on (127\.0\.0\.1:\d+)/.exec(out);
      if (m) resolve(m[1]);
    });
    child.once('exit', (code) => reject(new Error(`replica exited with ${code}: ${out}`)));
  });
  return { child, address };
}

const gatewayFor = (models: Record<string, object>) => startTestGateway({ models });
const X = { inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: Array.from({ length: 64 }, (_, i) => Math.sin(i)) }] };
const infer = (url: string) => fetch(`${url}/v2/models/mlp/infer`, { method: 'POST', body: JSON.stringify(X) });

let mlp: { child: ChildProcess; address: string };
let gpt: { child: ChildProcess; address: string };
beforeAll(async () => {
  process.env.INFERGATE_REPLICA_TOKEN = TOKEN; // the gateways in this process send it
  [mlp, gpt] = await Promise.all([startReplica('mlp'), startReplica('tiny-gpt')]);
}, 60_000);
afterAll(() => {
  delete process.env.INFERGATE_REPLICA_TOKEN;
  for (const r of replicas) r.kill('SIGKILL');
});

describe('remote replicas (infergate replica, over TCP)', () => {
  it('serve a tensor model and a generative one as local replicas do, and show where they are', async () => {
    const gw = await gatewayFor({
      mlp: { path: `${MODELS}mlp.onnx`, remote: [mlp.address], scaling: { min_containers: 1 } },
      'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, remote: [gpt.address] },
      'local-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu' },
    });
    try {
      const res = await infer(gw.url);
      expect(res.status).toBe(200);
      const probs = ((await res.json()) as { outputs: { data: number[] }[] }).outputs[0].data;
      expect(probs.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
      // The same greedy text from the remote decoder as from a local one.
      const complete = async (model: string) =>
        (await (
          await fetch(`${gw.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ model, prompt: 'Hello there', max_tokens: 12, temperature: 0 }) })
        ).json()) as {
          choices: { text: string }[];
        };
      expect((await complete('tiny-gpt')).choices[0].text).toBe((await complete('local-gpt')).choices[0].text);
      const pools = (await (await fetch(`${gw.url}/admin/pools`)).json()) as {
        models: { model: string; replicas: { address?: string; transport: string; pid?: number }[] }[];
      };
      const replica = pools.models.find((m) => m.model === 'mlp')?.replicas[0];
      expect(replica).toMatchObject({ address: mlp.address, transport: 'socket' });
      expect(replica?.pid).toBeUndefined();
    } finally {
      await gw.shutdown();
    }
  });

  it('serve one gateway at a time, and are free again once it has gone', async () => {
    const first = await gatewayFor({ mlp: { path: `${MODELS}mlp.onnx`, remote: [mlp.address], scaling: { min_containers: 1 } } });
    await expect(gatewayFor({ mlp: { path: `${MODELS}mlp.onnx`, remote: [mlp.address], scaling: { min_containers: 1 } } })).rejects.toThrow(
      /remote replica 127\.0\.0\.1:\d+: busy: serving the gateway at/,
    );
    await first.shutdown(); // drains and closes its connection; the replica process stays up, its model loaded
    const second = await gatewayFor({ mlp: { path: `${MODELS}mlp.onnx`, remote: [mlp.address], scaling: { min_containers: 1 } } });
    expect((await infer(second.url)).status).toBe(200);
    await second.shutdown();
  });

  it('refuse a gateway without their token', async () => {
    process.env.INFERGATE_REPLICA_TOKEN = 'not-the-token';
    try {
      await expect(gatewayFor({ mlp: { path: `${MODELS}mlp.onnx`, remote: [mlp.address], scaling: { min_containers: 1 } } })).rejects.toThrow(
        /refused: wrong or missing replica token/,
      );
    } finally {
      process.env.INFERGATE_REPLICA_TOKEN = TOKEN;
    }
  });

  it('are reconnected when one comes back after dying', async () => {
    const own = await startReplica('mlp');
    const port = Number(own.address.split(':')[1]);
    const gw = await gatewayFor({
      mlp: { path: `${MODELS}mlp.onnx`, remote: [own.address], batching: { timeout_ms: 1000 }, scaling: { min_containers: 1 } },
    });
    try {
      expect((await infer(gw.url)).status).toBe(200);
      own.child.kill('SIGKILL');
      await new Promise((r) => own.child.once('exit', r));
      expect((await infer(gw.url)).status).toBe(503); // no replica within the request's deadline: capacity is short
      await startReplica('mlp', port); // back at the same address
      let status = 0;
      for (let i = 0; i < 100 && status !== 200; i++) {
        status = (await infer(gw.url)).status;
        if (status !== 200) await new Promise((r) => setTimeout(r, 100));
      }
      expect(status).toBe(200);
    } finally {
      await gw.shutdown();
    }
  }, 30_000);

  it('are bounded by their addresses: max_containers may not exceed them', () => {
    expect(() => parseConfig({ models: { m: { path: 'm.onnx', remote: ['a:1'], scaling: { max_containers: 2 } } } })).toThrow(
      /models\.m\.scaling\.max_containers: max_containers must not exceed the number of remote addresses/,
    );
    expect(() => parseConfig({ models: { m: { path: 'm.onnx', remote: ['no-port'] } } })).toThrow(/expected host:port/);
  });
});
