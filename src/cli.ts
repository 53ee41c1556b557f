#!/usr/bin/env node
import { Command } from 'commander';
import { pino } from 'pino';
import { ConfigError, loadConfig } from './config/index.js';
import { classifierSpec, embeddingSpec, generativeSpec } from './models/index.js';
import { loadSignatures, startGateway } from './start.js';
import { formatShape } from './tensor/index.js';
import { VERSION } from './version.js';

const program = new Command('infergate').description('HTTP inference gateway with dynamic batching over ONNX Runtime replicas').version(VERSION);

program
  .command('serve')
  .description('start the gateway (PORT overrides server.port)')
  .requiredOption('-c, --config <file>', 'YAML config file')
  .option('--log-level <level>', 'pino log level', process.env.LOG_LEVEL ?? 'info')
  .action(async ({ config: file, logLevel }: { config: string; logLevel: string }) => {
    // One info line per request: write them asynchronously in 4 KB chunks, not a syscall per line.
    const destination = pino.destination({ sync: false, minLength: 4096 });
    const log = pino({ level: logLevel, base: { service: 'infergate' } }, destination);
    const config = await loadConfig(file);
    const gateway = await startGateway(config, { log }).catch((err) => {
      destination.flushSync(); // what the replicas said before failing is the useful part
      throw err;
    });
    const stop = (signal: string) => {
      log.info({ signal }, 'signal received');
      gateway.shutdown().then(
        () => {
          destination.flushSync();
          process.exit(0);
        },
        (err) => {
          log.error({ err }, 'shutdown failed');
          process.exit(1);
        },
      );
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });

program
  .command('validate')
  .description('check a config file and the models it names, without starting anything')
  .requiredOption('-c, --config <file>', 'YAML config file')
  .action(async ({ config: file }: { config: string }) => {
    const config = await loadConfig(file);
    const signatures = await loadSignatures(config);
    for (const [name, sig] of signatures) {
      const io = (ts: typeof sig.inputs) => ts.map((t) => `${t.name} ${t.dtype} ${formatShape(t.shape)}`).join(', ');
      // How it will be served: the routes a newcomer should try first.
      const kind = generativeSpec(sig)
        ? ' (generative: /v1/completions, /v1/chat/completions)'
        : embeddingSpec(sig)
          ? ' (text encoder: /v1/embeddings)'
          : classifierSpec(sig)
            ? ` (sequence classifier: /classify${classifierSpec(sig)?.classes === 1 ? ', /v1/rerank, /v1/score' : ''})`
            : sig.batchAxis === 0
              ? ''
              : ' (not batchable)';
      console.log(`${name}: ${io(sig.inputs)} -> ${io(sig.outputs)}${kind}`);
    }
    console.log(`${file}: ok (${signatures.size} model${signatures.size === 1 ? '' : 's'})`);
  });

program.parseAsync().catch((err: Error) => {
  console.error(err instanceof ConfigError ? `infergate: ${err.message}` : err);
  process.exit(1);
});
