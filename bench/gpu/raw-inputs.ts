/**
 * Raw in-process session.run of one model at one batch size, fed three ways: zero-filled inputs (what the
 * vision benchmark's raw ceiling used), image-like values (sin(i), as the load generator sends) in one
 * buffer reused every run, and the same values copied into a fresh buffer each run; then the same batches
 * sent straight to a replica process (two in flight): alone, in turn with batches of a quarter and half
 * the size (the shapes the gateway's padded batch sizes give), and beside busy processes (the load
 * generators and the gateway take cores during a gateway run). Says whether the input's contents or
 * its memory change what the GPU run costs, and what the replica hop adds, with and without those.
 * Writes gpu-raw-inputs-NAME.json; ms per batch of BATCH rows throughout.
 *   node --import tsx bench/gpu/raw-inputs.ts --model m.onnx --name NAME --batch 128 --seconds 3 [--busy 8] --out DIR
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { RunTrace } from '../../src/models/run-trace.js';
import { openSession, runSession } from '../../src/models/session.js';
import type { Inputs } from '../../src/tensor/index.js';
import { imageInputs, replicaRoundTrip } from '../lib.js';

const flag = (name: string, fallback: string) => (process.argv.includes(`--${name}`) ? process.argv[process.argv.indexOf(`--${name}`) + 1] : fallback);
const model = resolve(flag('model', 'examples/models/cnn-bench.onnx'));
const name = flag('name', 'cnn-bench');
const batch = Number(flag('batch', '128'));
const seconds = Number(flag('seconds', '3'));
const device = flag('device', 'cuda');
const busy = Number(flag('busy', '8'));

const { name: input, zeros, values: template, rows } = await imageInputs(model, batch);
const { session, provider } = await openSession(model, device, 0);
const feeds = {
  zeros: () => zeros.data,
  values: () => template,
  'values, fresh buffer': () => template.slice(),
};
const results: Record<string, number> = {};
const trace = RunTrace.fromEnv([session]);
for (const [how, data] of Object.entries(feeds)) {
  const run = async () => {
    const startedAt = performance.now();
    await runSession(session, { [input]: { ...zeros, data: data() } });
    trace?.record(startedAt, batch, performance.now() - startedAt, how !== 'values, fresh buffer');
  };
  for (let i = 0; i < 3; i++) await run();
  let runs = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) {
    await run();
    runs++;
  }
  results[how] = Math.round(((performance.now() - t0) / runs) * 100) / 100;
  console.log(name, batch, provider, how, results[how], 'ms per run');
}
trace?.flush();
await session.release();
// The same batches sent straight to a replica process (no gateway, no HTTP), two in flight.
const values = rows(batch);
const sizes = [batch / 4, batch / 2, batch];
const roundTrips: Record<string, () => Promise<number>> = {
  'replica, zeros': () => roundTrip([batch], { [input]: zeros }),
  'replica, values': () => roundTrip([batch], values),
  // Three shapes in turn: 1¾ batches of BATCH rows per turn.
  'replica, values, shapes in turn': async () => (await roundTrip(sizes, sizes.map(rows))) * (3 / 1.75),
  [`replica, values, beside ${busy} busy processes`]: async () => {
    const burners: ChildProcess[] = Array.from({ length: busy }, () => spawn(process.execPath, ['-e', 'for (;;);'], { stdio: 'ignore' }));
    try {
      return await roundTrip([batch], values);
    } finally {
      for (const b of burners) b.kill('SIGKILL');
    }
  },
};
for (const [how, measure] of Object.entries(roundTrips)) {
  results[how] = Math.round((await measure()) * 100) / 100;
  console.log(name, batch, how, results[how], 'ms per batch');
}
/** ms per batch sent straight to a replica warmed up at `warmup`. */
async function roundTrip(warmup: number[], inputs: Inputs | Inputs[]): Promise<number> {
  return 1000 / (await replicaRoundTrip({ name, path: model, device, warmupBatches: warmup, durationS: seconds, inputs }));
}
const out = resolve(flag('out', 'bench/results'));
mkdirSync(out, { recursive: true });
writeFileSync(join(out, `gpu-raw-inputs-${name}.json`), `${JSON.stringify({ model: name, batch, provider, msPerRun: results }, null, 2)}\n`);
