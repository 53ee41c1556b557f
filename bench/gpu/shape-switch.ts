/**
 * What a change of input shape costs a CUDA session, in-process: batches of a quarter, half and the whole
 * batch size in turn (the shapes the gateway's padded batch sizes give) vs one shape again and again,
 * with cuDNN's algorithm search EXHAUSTIVE (ONNX Runtime's default), HEURISTIC and DEFAULT, and with a
 * session per shape (whose convolutions never see their shape change). The H200 run found a replica's
 * runs under the gateway at 84 ms instead of 20: every run whose shape differed from the one before cost
 * ~200 ms (3–4 ms in each convolution, bench/results/gpu-summary.md). Needs the CUDA options shim
 * preloaded (run.sh's with_shim). Writes gpu-shape-switch-NAME.{json,md}.
 *   node --import tsx bench/gpu/shape-switch.ts --model resnet50-fp16.onnx --name resnet50-fp16 --batch 128 --seconds 4 --out DIR
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { CudaOptions } from '../../src/models/cuda-options.js';
import { type OpenedSession, openSession, runSession } from '../../src/models/session.js';
import { imageInputs, machine } from '../lib.js';

const flag = (name: string, fallback: string) => (process.argv.includes(`--${name}`) ? process.argv[process.argv.indexOf(`--${name}`) + 1] : fallback);
const model = resolve(flag('model', 'examples/models/cnn-bench.onnx'));
const name = flag('name', 'cnn-bench');
const batch = Number(flag('batch', '128'));
const seconds = Number(flag('seconds', '4'));
const device = flag('device', 'cuda');
const out = resolve(flag('out', 'bench/results'));

const rows = [batch / 4, batch / 2, batch];
const batches = rows.map((await imageInputs(model, batch)).rows);

type Variant = { search: string; sessionPerShape: boolean };
const variants: Variant[] = [
  { search: 'EXHAUSTIVE', sessionPerShape: false },
  { search: 'HEURISTIC', sessionPerShape: false },
  { search: 'DEFAULT', sessionPerShape: false },
  { search: 'EXHAUSTIVE', sessionPerShape: true },
];

/** Mean ms per run over `seconds`; `run(n)` is the n-th run. */
async function timed(run: (i: number) => Promise<unknown>): Promise<number> {
  let runs = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) await run(runs++);
  return (performance.now() - t0) / runs;
}

function processGpuMiB(): number | undefined {
  try {
    const lines = execFileSync('nvidia-smi', ['--query-compute-apps=pid,used_memory', '--format=csv,noheader,nounits'], { encoding: 'utf8' });
    const mine = lines.split('\n').find((l) => l.split(',')[0]?.trim() === String(process.pid));
    return mine ? Number(mine.split(',')[1]) : undefined;
  } catch {
    return undefined;
  }
}

const results = [];
for (const v of variants) {
  const cuda: CudaOptions = v.search === 'EXHAUSTIVE' ? {} : { cudnn_conv_algo_search: v.search };
  const sessions: OpenedSession['session'][] = [];
  for (let i = 0; i < (v.sessionPerShape ? rows.length : 1); i++) sessions.push((await openSession(model, device, 0, cuda)).session);
  const sessionFor = (i: number) => sessions[v.sessionPerShape ? i : 0];
  // Each shape warmed up (where the search runs), as a replica does at start.
  for (let i = 0; i < rows.length; i++) for (let k = 0; k < 2; k++) await runSession(sessionFor(i), batches[i]);
  const inTurn = await timed((n) => runSession(sessionFor(n % rows.length), batches[n % rows.length]));
  const oneShape = await timed(() => runSession(sessionFor(rows.length - 1), batches[rows.length - 1]));
  const gpuMiB = processGpuMiB();
  for (const s of sessions) await s.release();
  // Rows per second: a turn is rows/4 + rows/2 + rows over three runs.
  const row = {
    search: v.search,
    sessions: sessions.length,
    msPerRunInTurn: round(inTurn),
    rowsPerSInTurn: Math.round((1.75 * batch * 1000) / (3 * inTurn)),
    msPerRunOneShape: round(oneShape),
    rowsPerSOneShape: Math.round((batch * 1000) / oneShape),
    gpuMiB,
  };
  console.log(name, row);
  results.push(row);
}
mkdirSync(out, { recursive: true });
const file = join(out, `gpu-shape-switch-${name}`);
writeFileSync(`${file}.json`, `${JSON.stringify({ machine: machine(), model: name, batch, shapesInTurn: rows, seconds, results }, null, 2)}\n`);
writeFileSync(
  `${file}.md`,
  `## Changing input shape on a CUDA session: ${name}, batches of ${rows.join(' / ')} in turn vs ${batch} alone

| cuDNN search | sessions | ms per run, shapes in turn | rows/s, shapes in turn | ms per run, ${batch} alone | rows/s, ${batch} alone | process GPU MiB |
|---|---|---|---|---|---|---|
${results.map((r) => `| ${r.search} | ${r.sessions} | ${r.msPerRunInTurn} | ${r.rowsPerSInTurn} | ${r.msPerRunOneShape} | ${r.rowsPerSOneShape} | ${r.gpuMiB ?? '–'} |`).join('\n')}
`,
);

function round(x: number): number {
  return Math.round(x * 100) / 100;
}
