#!/usr/bin/env node
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { Command } from 'commander';
import { pino } from 'pino';
import { ConfigError, loadConfig } from './config/index.js';
import { checkEnsembles } from './ensemble-plan.js';
import { endpointProblems, jwtVerifier, shadowProblems } from './gateway/index.js';
import { modelProblems, readModelFiles } from './model-build.js';
import { callerSignatureOf, layoutOf, loadSignatures } from './model-files.js';
import {
  batchSignature,
  classifierSpec,
  embeddingSpec,
  generativeSpec,
  MODEL_ID_HEADER,
  type ModelSignature,
  multiplexChecker,
  multiplexedIds,
  type ReplicaSpec,
  readAdapter,
  replicaEntry,
  versionsServed,
} from './models/index.js';
import { replicaSpecOf } from './replica-plan.js';
import { readTls, startGateway } from './start.js';
import { formatShape } from './tensor/index.js';
import { VERSION } from './version.js';

/** Where SageMaker puts a model's artifacts (model.tar.gz, unpacked): a config shipped among them. */
const SAGEMAKER_CONFIG = '/opt/ml/model/infergate.yaml';

const program = new Command('infergate').description('HTTP inference gateway with dynamic batching over ONNX Runtime replicas').version(VERSION);

program
  .command('serve')
  .description('start the gateway (PORT overrides server.port)')
  // SageMaker starts a container as `docker run IMAGE serve`: with the image's entry point, `serve serve`.
  .argument('[serve]', 'accepted once more, as SageMaker starts containers')
  .option('-c, --config <file>', `YAML config file (default: $INFERGATE_CONFIG, else SageMaker's ${SAGEMAKER_CONFIG} if it is there)`)
  .option('--log-level <level>', 'pino log level', process.env.LOG_LEVEL ?? 'info')
  .action(async (again: string | undefined, options: { config?: string; logLevel: string }) => {
    if (again !== undefined && again !== 'serve') throw new ConfigError(`serve: unexpected argument ${JSON.stringify(again)}`);
    const file = options.config ?? (process.env.INFERGATE_CONFIG || undefined) ?? (existsSync(SAGEMAKER_CONFIG) ? SAGEMAKER_CONFIG : undefined);
    if (file === undefined) throw new ConfigError(`no config: give -c/--config, or set INFERGATE_CONFIG (on SageMaker: ship ${SAGEMAKER_CONFIG})`);
    const { logLevel } = options;
    const levels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
    if (!levels.includes(logLevel)) throw new ConfigError(`--log-level (or $LOG_LEVEL): expected one of ${levels.join(', ')}, got ${JSON.stringify(logLevel)}`);
    // One info line per request: write them asynchronously in 4 KB chunks, not a syscall per line.
    const destination = pino.destination({ sync: false, minLength: 4096 });
    const log = pino({ level: logLevel, base: { service: 'infergate' } }, destination);
    // ...and at least every second: on a quiet gateway a replica's death or a scale-down otherwise waited unwritten
    // (lost if the process was killed) until 4 KB of lines came.
    setInterval(() => destination.flush((err) => err && undefined), 1000).unref();
    // Signals are taken from the first moment: the port answers (and a probe may see the gateway ready) a little
    // before startGateway returns, and a SIGTERM or SIGHUP then must not kill the process by their default action.
    const early: string[] = [];
    let onSignal = (signal: string): unknown => early.push(signal);
    for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(signal, () => onSignal(signal));
    const config = await loadConfig(file);
    const gateway = await startGateway(config, { log, rereadConfig: () => loadConfig(file) }).catch((err) => {
      destination.flushSync(); // what the replicas said before failing is the useful part
      throw err;
    });
    // Flushed without blocking: sonic-boom's flushSync retries a failed write forever (a closed stdout's EPIPE
    // included), so a gateway whose log reader went away would never exit. After a failed flush the stream is
    // destroyed, so that pino's own exit hook does not try again.
    const exit = (code: number) => {
      const leave = (failed: boolean) => {
        if (failed) destination.destroy();
        process.exit(code);
      };
      setTimeout(() => leave(true), 2000);
      destination.flush((err) => leave(err != null && (err as NodeJS.ErrnoException).code !== 'EINVAL')); // EINVAL: a pipe has no fsync
    };
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) {
        // A second one (Ctrl-C again): at once, as before these handlers, without waiting any longer.
        log.warn({ signal }, 'second signal: exiting now');
        return exit(1);
      }
      stopping = true;
      log.info({ signal }, 'signal received');
      gateway.shutdown({ now: signal === 'SIGINT' }).then(
        () => exit(0),
        (err) => {
          log.error({ err }, 'shutdown failed');
          exit(1);
        },
      );
    };
    // SIGHUP: the config file's models applied in place (what changed is logged; a bad file changes nothing).
    const reload = () => {
      log.info({ signal: 'SIGHUP' }, `reloading ${file}`);
      loadConfig(file)
        .then((next) => gateway.reload(next))
        .catch((err) => log.error({ err: (err as Error).message }, 'config not reloaded, nothing changed'))
        .finally(() => destination.flush()); // rare and wanted at once, unlike request lines
    };
    onSignal = (signal) => (signal === 'SIGHUP' ? reload() : stop(signal));
    for (const signal of early) onSignal(signal);
  });

program
  .command('validate')
  .description('check a config file and the models it names, without starting anything')
  .requiredOption('-c, --config <file>', 'YAML config file')
  .action(async ({ config: file }: { config: string }) => {
    const config = await loadConfig(file);
    const { signatures } = await readModelFiles(config);
    for (const [name, sig] of signatures) {
      const io = (ts: typeof sig.inputs) => ts.map((t) => `${t.name} ${t.dtype} ${formatShape(t.shape)}`).join(', ');
      const model = config.models[name];
      // How it will be served: the routes a newcomer should try first.
      const stateful = model.sequence && batchSignature(sig, layoutOf(name, model, sig)).batchAxis === 0;
      const versions = versionsServed(model) ?? [];
      const kind = model.multiplex
        ? ` (multiplexed: ${multiplexedIds(model.path).join(', ')}, by the ${MODEL_ID_HEADER} header)`
        : versions.length
          ? ` (versions ${versions.join(', ')} served, ${versions[versions.length - 1]} the latest: /v2/models/${name}/versions/{v}/infer)`
          : model.sequence
            ? ` (stateful: sequences of ${stateful ? 'batched ' : ''}requests${model.vad ? ', /v1/audio/vad' : ''})`
            : model.ocr
              ? ` (text recogniser with ${model.ocr.detector}: /v1/ocr)`
              : generativeSpec(sig)
                ? ` (generative: /v1/completions, /v1/chat/completions${model.lora_adapters ? `; LoRA adapters ${Object.keys(model.lora_adapters).join(', ')}` : ''}${model.speculative ? `; speculative decoding${model.speculative.method === 'suffix' ? ' (from earlier requests too)' : ''}, drafts of ${model.speculative.num_speculative_tokens}` : ''}${model.reasoning_parser ? `; reasoning parser ${model.reasoning_parser}` : ''}${model.prefix_cache_scope === 'caller' ? '; prompts cached per caller' : ''})`
                : embeddingSpec(sig)
                  ? ' (text encoder: /v1/embeddings)'
                  : classifierSpec(sig)
                    ? ` (sequence classifier: /classify${classifierSpec(sig)?.classes === 1 ? ', /v1/rerank, /v1/score' : ''})`
                    : sig.batchAxis === 0
                      ? ''
                      : ' (not batchable)';
      const aliases = model.aliases.length > 0 ? ` (also named ${model.aliases.join(', ')})` : '';
      const shadow = model.shadow ? ` (${model.shadow.percent}% of its requests also to ${model.shadow.model}, its shadow)` : '';
      console.log(`${name}${aliases}: ${io(sig.inputs)} -> ${io(sig.outputs)}${kind}${shadow}`);
    }
    // Every file of a multiplexed model, as a request naming it would be checked: a bad one found before deploying.
    const unfit: string[] = [];
    for (const [name, model] of Object.entries(config.models)) {
      if (!model.multiplex) continue;
      const check = multiplexChecker(name, model.path, signatures.get(name) as ModelSignature);
      for (const id of multiplexedIds(model.path)) await check(id).catch((err: Error) => unfit.push(`models.${name}: ${err.message}`));
    }
    for (const [name, model] of Object.entries(config.models)) {
      const signature = signatures.get(name) as ModelSignature;
      unfit.push(...modelProblems(name, model, signature));
      // Every LoRA adapter, read as the gateway reads it at start.
      const targets = generativeSpec(signature)?.lora;
      if (targets)
        for (const [adapter, path] of Object.entries(model.lora_adapters ?? {}))
          await readAdapter(path, targets).catch((err: Error) => unfit.push(`models.${name}.lora_adapters.${adapter}: ${err.message}`));
    }
    // Each shadow (config shadow) able to answer its model's requests, as the gateway checks at start.
    // (with the signatures callers see, as the gateway checks them: constants and states are not the caller's)
    const signed = (name: string) =>
      signatures.has(name) ? { name, signature: callerSignatureOf(name, config.models[name], signatures.get(name) as ModelSignature) } : undefined;
    unfit.push(...shadowProblems(config.models, signed), ...endpointProblems(config, signed));
    // Key material, read as serve reads it before anything starts.
    await readTls(config).catch((err: Error) => unfit.push(err.message));
    if (config.auth.jwt) await jwtVerifier(config.auth.jwt).catch((err: Error) => unfit.push(err.message));
    if (unfit.length) throw new ConfigError(unfit.join('\n'));
    const ensembles = checkEnsembles(config, signatures);
    for (const e of ensembles) {
      const io = (ts: typeof e.signature.inputs) => ts.map((t) => `${t.name} ${t.dtype} ${formatShape(t.shape)}`).join(', ');
      console.log(`${e.name}: ${io(e.signature.inputs)} -> ${io(e.signature.outputs)} (ensemble: ${e.steps.map((s) => s.model).join(' → ')})`);
    }
    const { fleet, capture } = { fleet: config.server.fleet, capture: config.capture };
    if (fleet) {
      const stateful = Object.values(config.models).some((m) => m.sequence);
      const sequences = !stateful
        ? ''
        : fleet.secret
          ? `; sequences move with their state${fleet.sequence_backup ? ', each answered request backed up on the next gateway' : ''}`
          : "; sequences moved lose their state (it moves with the fleet's secret)";
      console.log(
        `fleet: this gateway ${fleet.self}, ${fleet.discover ? `the others found by DNS (${fleet.discover.dns}, port ${fleet.discover.port})` : `${fleet.peers?.length} listed`}${fleet.shared_limits ? `; per-caller limits shared every ${fleet.shared_limits.every_ms} ms` : ''}${sequences}`,
      );
    }
    if (capture)
      console.log(
        `capture: ${capture.sample_rate === 1 ? 'every request' : `${Number((capture.sample_rate * 100).toPrecision(6))}% of requests`} (${capture.mode}) of ${capture.models?.join(', ') ?? 'every model'} to ${[capture.url, capture.dir].filter(Boolean).join(' and ')}`,
      );
    const count = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;
    console.log(`${file}: ok (${count(signatures.size, 'model')}${ensembles.length ? `, ${count(ensembles.length, 'ensemble')}` : ''})`);
  });

program
  .command('replica')
  .description("serve one model of a config as a remote replica: a gateway lists this address in the model's `remote`")
  .requiredOption('-c, --config <file>', 'YAML config file (the same as the gateway’s)')
  .requiredOption('-m, --model <name>', 'the model to serve')
  .option('-l, --listen <host:port>', 'TCP address to listen on', '0.0.0.0:9000')
  .action(async ({ config: file, model: name, listen }: { config: string; model: string; listen: string }) => {
    const config = await loadConfig(file);
    const model = config.models[name];
    if (!model) throw new ConfigError(`--model: no model named ${name} (the config has ${Object.keys(config.models).join(', ')})`);
    const at = listen.lastIndexOf(':');
    const port = Number(listen.slice(at + 1));
    if (at < 0 || at === listen.length - 1 || !Number.isInteger(port) || port < 0 || port > 65535)
      throw new ConfigError(`--listen: expected host:port, got ${JSON.stringify(listen)}`);
    const signature = (await loadSignatures({ ...config, models: { [name]: model } })).get(name) as ModelSignature;
    // A machine of its own: ONNX Runtime's thread choice unless the config sets one; the device as the config says.
    const spec: ReplicaSpec = {
      ...replicaSpecOf(model, signature, model.threads),
      model: name,
      replicaId: `${name}-remote`,
      listen: { host: listen.slice(0, at).replace(/^\[|\]$/g, ''), port },
    };
    process.env.INFERGATE_REPLICA = JSON.stringify(spec);
    await import(replicaEntry().file);
  });

program
  .command('doctor')
  .description(
    "check this machine for serving: a real CPU replica, the NVIDIA driver, the CUDA provider and the libraries it loads, a real CUDA replica, and each model of a config on its device (and its fleet's other gateways: ready, and taking the fleet's secret)",
  )
  .option('-c, --config <file>', 'also check the models of this config (each on its device)')
  .option('--json', 'print the findings as JSON')
  .action(async ({ config: file, json }: { config?: string; json?: boolean }) => {
    const { doctor } = await import('./doctor.js');
    const findings = await doctor(file ? await loadConfig(file) : undefined);
    const failed = findings.filter((f) => f.status === 'fail').length;
    if (json) console.log(JSON.stringify({ ok: failed === 0, findings }, null, 2));
    else {
      const width = Math.max(...findings.map((f) => f.check.length));
      for (const f of findings) console.log(`${f.status.padEnd(4)}  ${f.check.padEnd(width)}  ${f.detail}`);
      console.log(failed === 0 ? 'infergate doctor: nothing stands in the way' : `infergate doctor: ${failed} problem${failed === 1 ? '' : 's'}`);
    }
    // Its gateways' replicas are stopped; the process need not wait for their sockets' last timers.
    process.exit(failed === 0 ? 0 : 1);
  });

program
  .command('perf')
  .description("load on a running gateway, as Triton's perf_analyzer and genai-perf: throughput and latency at each concurrency")
  .requiredOption('-m, --model <name>', 'the model to load (a generative one gets completion streams: time to first token, tokens/s)')
  .option('-u, --url <url>', 'the gateway', 'http://localhost:8080')
  .option('--concurrency <list>', 'closed-loop clients, a run each', '1,4,16')
  .option('--ca <file>', "an HTTPS gateway's certificate authority (PEM), for a self-signed one")
  .option('--grpc <host:port>', "a tensor model over KServe v2 gRPC (the gateway's server.grpc_port) instead of HTTP")
  .option('--request-rate <list>', 'open loop instead: requests a second, sent when due whatever the answers (latency from then)')
  .option('--seconds <n>', 'each run measures this long (after a warm-up request per client)', '10')
  .option('--shape <input:dims...>', "a tensor input's shape where the model's has dynamic dimensions (default 1), e.g. x:1,3,224,224")
  .option('--prompt-tokens <n>', 'generative: words in each prompt', '32')
  .option(
    '--endpoint <api>',
    "generative: completions, or chat (the prompt laid out as a chat: genai-perf's chat endpoint); a text encoder: embeddings (/v1/embeddings)",
    'completions',
  )
  .option('--texts <n>', 'embeddings: texts in each request (each --prompt-tokens words)', '1')
  .option('--max-tokens <n>', 'generative: tokens each stream generates (ignore_eos)', '64')
  .option('-H, --header <header...>', 'sent with every request: "Authorization: Bearer …", "Infergate-Key: …"')
  .option('--threads <n>', "worker threads the clients are dealt over (past a core's worth of requests, one is the limit)", '1')
  .option('--json', 'print the result as JSON')
  .action(
    async (o: {
      model: string;
      threads: string;
      texts: string;
      url: string;
      concurrency: string;
      requestRate?: string;
      grpc?: string;
      ca?: string;
      endpoint: string;
      seconds: string;
      shape?: string[];
      promptTokens: string;
      maxTokens: string;
      header?: string[];
      json?: boolean;
    }) => {
      const positive = (value: string, flag: string) => {
        const n = Number(value);
        if (!(n > 0)) throw new ConfigError(`${flag}: expected a positive number, got ${JSON.stringify(value)}`);
        return n;
      };
      const whole = (value: string, flag: string) => {
        if (!Number.isInteger(positive(value, flag))) throw new ConfigError(`${flag}: expected a whole number, got ${JSON.stringify(value)}`);
        return Number(value);
      };
      const concurrency = o.concurrency.split(',').map((c) => whole(c, '--concurrency'));
      const requestRates = o.requestRate?.split(',').map((r) => positive(r, '--request-rate'));
      if (!['completions', 'chat', 'embeddings'].includes(o.endpoint))
        throw new ConfigError(`--endpoint: completions, chat or embeddings, got ${JSON.stringify(o.endpoint)}`);
      const shapes = Object.fromEntries(
        (o.shape ?? []).map((s) => {
          const [name, dims] = s.split(':');
          if (!name || !dims) throw new ConfigError(`--shape: expected input:dims (x:1,3,224,224), got ${JSON.stringify(s)}`);
          return [name, dims.split(',').map((d) => whole(d, `--shape ${name}`))];
        }),
      );
      const headers = Object.fromEntries(
        (o.header ?? []).map((h) => {
          const at = h.indexOf(':');
          if (at < 1) throw new ConfigError(`--header: expected "Name: value", got ${JSON.stringify(h)}`);
          return [h.slice(0, at).trim(), h.slice(at + 1).trim()];
        }),
      );
      const { perf, perfTable } = await import('./perf.js');
      const result = await perf(
        {
          url: o.url,
          model: o.model,
          concurrency,
          requestRates,
          grpc: o.grpc,
          endpoint: o.endpoint as 'completions' | 'chat' | 'embeddings',
          texts: whole(o.texts, '--texts'),
          ca:
            o.ca === undefined
              ? undefined
              : await readFile(o.ca, 'utf8').catch((err: Error) => {
                  throw new ConfigError(`--ca: ${err.message}`);
                }),
          seconds: positive(o.seconds, '--seconds'),
          shapes,
          promptTokens: whole(o.promptTokens, '--prompt-tokens'),
          maxTokens: whole(o.maxTokens, '--max-tokens'),
          headers,
          threads: whole(o.threads, '--threads'),
        },
        (row) =>
          o.json || console.error(`${row.requestRate ? `request rate ${row.requestRate}` : `concurrency ${row.concurrency}`}: ${row.requestsPerS} requests/s`),
      ).catch((err: Error) => {
        // (said as a usage error is, "infergate: …": the gateway's refusal, or why it could not be reached)
        // (a connection's error has a code: ECONNREFUSED, ENOTFOUND, a certificate's)
        const code = (err as NodeJS.ErrnoException).code;
        throw new ConfigError(`perf: ${err.message}${code ? ` (is a gateway at ${o.url}?)` : ''}`);
      });
      if (o.json) return console.log(JSON.stringify(result));
      console.log(
        `${o.model} (${result.kind}) at ${o.grpc ? `${o.grpc} (gRPC)` : o.url}, ${o.seconds} s per ${requestRates ? 'request rate' : 'concurrency'}:\n${perfTable(result)}`,
      );
    },
  );

program.parseAsync().catch((err: Error) => {
  console.error(err instanceof ConfigError ? `infergate: ${err.message}` : err);
  process.exit(1);
});
