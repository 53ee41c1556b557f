/**
 * Where a replica's session runs, side by side in one run: on the replica's main thread (CPU replicas)
 * or on a worker thread (CUDA replicas; INFERGATE_SESSION_THREAD forces either). A run blocks its
 * thread; on the worker the main thread meanwhile reads the next batch from /dev/shm, at the price of
 * a hop between threads per batch. Replica round trips, two batches in flight, no gateway:
 *   - pixels-mean.onnx, uint8 [N,224,224,3], batch 32 and 128: a run takes about as long as reading its
 *     batch (on a GPU a run is the GPU's time, and the thread only waits);
 *   - pixels.onnx, batch 32: no compute, only the data path;
 *   - identity.onnx [8,128] FP32: small batches on the socket, where only the hop shows.
 * Writes bench/results/session-thread-cpu.{json,md}.   npm run bench:session-thread [-- --duration 5 --rounds 3]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Inputs } from '../src/tensor/index.js';
import { machine, medianBy, ROOT, replicaRoundTrip } from './lib.js';

const arg = (name: string) => Number(process.argv[process.argv.indexOf(name) + 1]) || undefined;
const durationS = arg('--duration') ?? 5;
const rounds = arg('--rounds') ?? 3;
const image = (batch: number): Inputs => ({ x: { dtype: 'UINT8', shape: [batch, 224, 224, 3], data: new Uint8Array(batch * 224 * 224 * 3).fill(7) } });
const cases = [
  { name: 'pixels-mean, batch 32', model: 'pixels-mean.onnx', rows: 32, inputs: image(32) },
  { name: 'pixels-mean, batch 128', model: 'pixels-mean.onnx', rows: 128, inputs: image(128) },
  { name: 'pixels (no compute), batch 32', model: 'pixels.onnx', rows: 32, inputs: image(32) },
  {
    name: 'identity [8,128] FP32',
    model: 'identity.onnx',
    rows: 8,
    inputs: { x: { dtype: 'FP32', shape: [8, 128], data: new Float32Array(8 * 128) } } as Inputs,
  },
];
type Thread = 'main' | 'worker';

function roundTrip(c: (typeof cases)[number], thread: Thread) {
  return replicaRoundTrip({
    name: `${c.model}-${thread}`,
    path: join(ROOT, 'examples/models', c.model),
    inputs: c.inputs,
    durationS,
    env: { INFERGATE_SESSION_THREAD: thread },
    check: (r) => {
      if (r.sessionThread !== thread) throw new Error(`asked for the ${thread} thread, the replica uses ${r.sessionThread}`);
    },
  });
}

async function main() {
  const runs: { case: string; thread: Thread; batchesPerS: number }[] = [];
  for (let round = 0; round < rounds; round++) {
    for (const c of cases) {
      for (const thread of ['main', 'worker'] as const) {
        const batchesPerS = Math.round(await roundTrip(c, thread));
        console.log(round, c.name, thread, batchesPerS);
        runs.push({ case: c.name, thread, batchesPerS });
      }
    }
  }
  const rows = cases.map((c) => {
    const of = (thread: Thread) => runs.filter((r) => r.case === c.name && r.thread === thread);
    const main = medianBy(of('main'), (r) => r.batchesPerS).batchesPerS;
    const worker = medianBy(of('worker'), (r) => r.batchesPerS).batchesPerS;
    return {
      case: c.name,
      rowsPerBatch: c.rows,
      main,
      worker,
      workerOverMain: Math.round((worker / main) * 100) / 100,
      rounds: { main: of('main').map((r) => r.batchesPerS), worker: of('worker').map((r) => r.batchesPerS) },
    };
  });
  const out = join(ROOT, 'bench/results');
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'session-thread-cpu.json'), `${JSON.stringify({ machine: machine(), durationS, rounds, rows, runs }, null, 2)}\n`);
  const md = `## Where a replica's session runs: main thread vs worker thread (replica round trips, 2 batches in flight, ORT 1 thread)

| case | main thread batches/s | worker thread batches/s | worker / main | rounds (main; worker) |
|---|---|---|---|---|
${rows.map((r) => `| ${r.case} | ${r.main} | ${r.worker} | **${r.workerOverMain}** | ${r.rounds.main.join(' / ')}; ${r.rounds.worker.join(' / ')} |`).join('\n')}
`;
  writeFileSync(join(out, 'session-thread-cpu.md'), md);
  console.log(md);
}

await main();
