/**
 * Raw in-process session.run of one model at one batch size, fed three ways: zero-filled inputs (what the
 * vision benchmark's raw ceiling used), image-like values (sin(i), as the load generator sends) in one
 * buffer reused every run, and the same values copied into a fresh buffer each run; then the same batches
 * sent straight to a replica process (two in flight). Says whether the input's contents or its memory change
 * what the GPU run costs, and what the replica hop adds. Writes gpu-raw-inputs-NAME.json.
 *   node --import tsx bench/gpu/raw-inputs.ts --model m.onnx --name NAME --batch 128 --seconds 3 --out DIR
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { openSession, runSession, warmupInputs } from '../../src/models/session.js';
import { readSignature } from '../../src/models/signature.js';
import { type ImageDType, imageLikeData, replicaRoundTrip } from '../lib.js';

const flag = (name: string, fallback: string) => (process.argv.includes(`--${name}`) ? process.argv[process.argv.indexOf(`--${name}`) + 1] : fallback);
const model = resolve(flag('model', 'examples/models/cnn-bench.onnx'));
const name = flag('name', 'cnn-bench');
const batch = Number(flag('batch', '128'));
const seconds = Number(flag('seconds', '3'));
const device = flag('device', 'cuda');

const sig = await readSignature(model);
const input = sig.inputs[0];
const zeros = warmupInputs(sig, {}, batch)[input.name];
const template = imageLikeData(input.dtype as ImageDType, zeros.data.length);
const { session, provider } = await openSession(model, device, 0);
const feeds = {
  zeros: () => zeros.data,
  values: () => template,
  'values, fresh buffer': () => template.slice(),
};
const results: Record<string, number> = {};
for (const [how, data] of Object.entries(feeds)) {
  const run = () => runSession(session, { [input.name]: { ...zeros, data: data() } });
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
await session.release();
// The same batches sent straight to a replica process (no gateway, no HTTP), two in flight.
for (const [how, data] of Object.entries({ 'replica, zeros': zeros.data, 'replica, values': template })) {
  const perS = await replicaRoundTrip({ name, path: model, device, warmupBatches: [batch], durationS: seconds, inputs: { [input.name]: { ...zeros, data } } });
  results[how] = Math.round((1000 / perS) * 100) / 100;
  console.log(name, batch, how, results[how], 'ms per batch');
}
const out = resolve(flag('out', 'bench/results'));
mkdirSync(out, { recursive: true });
writeFileSync(join(out, `gpu-raw-inputs-${name}.json`), `${JSON.stringify({ model: name, batch, provider, msPerRun: results }, null, 2)}\n`);
