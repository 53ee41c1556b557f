/**
 * How fast image-sized tensors travel from a client to a replica, side by side in one run. The model
 * (examples/models/pixels.onnx: UINT8 [N,224,224,3], 147 KiB per image) does no compute, so what is
 * measured is the data path the GPU benchmarks will lean on:
 *   1. the replica round trip alone (gateway side → replica process → back, 2 batches in flight), tensors
 *      through /dev/shm slots vs through the replica's Unix socket (INFERGATE_SHM_DIR=off) vs over TCP to a
 *      remote replica (`infergate replica` on this machine: loopback, the best a network can do);
 *   2. the whole gateway under autocannon, 8 images per request, the same two transports, and with the
 *      images in client shared memory (Triton's extension: requests carry only JSON), beside a bare
 *      node:http server running the same session in its own process (the HTTP ceiling, no replica hop).
 * Writes bench/results/ipc-cpu.json and ipc-cpu.md.
 *   npm run bench:ipc [-- --duration 6 --rounds 3]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  autocannon,
  binaryRequest,
  clientRegionRequest,
  gatewayUnderLoad,
  machine,
  medianBy,
  ROOT,
  replicaRoundTrip,
  startRemoteReplica,
  startServer,
  stopServer,
} from './lib.js';

const arg = (name: string) => Number(process.argv[process.argv.indexOf(name) + 1]) || undefined;
const durationS = arg('--duration') ?? 6;
const rounds = arg('--rounds') ?? 3;
const PIXELS = join(ROOT, 'examples/models/pixels.onnx');
const IMAGE = [224, 224, 3];
const IMAGE_BYTES = 224 * 224 * 3;
const PORT = 18720;
const BATCHES = [8, 32, 128];
const TRANSPORTS = { shm: {}, socket: { INFERGATE_SHM_DIR: 'off' } } as const;
let removeImages = () => {};
/** Client shared memory: the 8 images sit in a /dev/shm object; requests only name them. */
async function registerImages(base: string) {
  const { remove, ...body } = await clientRegionRequest(base, { name: 'x', shape: [8, ...IMAGE], dtype: 'UINT8' });
  removeImages = remove;
  return body;
}
type Transport = keyof typeof TRANSPORTS;

const mbps = (rowsPerS: number) => Math.round((rowsPerS * IMAGE_BYTES) / 1e6);

const REMOTE_PORT = 18721;

/** Rows/s straight to a remote replica over loopback TCP, two batches in flight. */
async function tcpRoundTrip(batch: number) {
  const inputs = { x: { dtype: 'UINT8' as const, shape: [batch, ...IMAGE], data: new Uint8Array(batch * IMAGE_BYTES).fill(7) } };
  return (await replicaRoundTrip({ name: 'pixels-tcp', path: PIXELS, inputs, durationS, remote: `127.0.0.1:${REMOTE_PORT}` })) * batch;
}

/** Rows/s straight to one replica process, two batches in flight, through /dev/shm or the socket. */
async function roundTrip(transport: Transport, batch: number) {
  const inputs = { x: { dtype: 'UINT8' as const, shape: [batch, ...IMAGE], data: new Uint8Array(batch * IMAGE_BYTES).fill(7) } };
  const batchesPerS = await replicaRoundTrip({
    name: `pixels-${transport}`,
    path: PIXELS,
    inputs,
    durationS,
    env: transport === 'socket' ? { INFERGATE_SHM_DIR: 'off' } : {},
    check: (r) => {
      if (r.transport !== transport) throw new Error(`asked for ${transport}, the replica uses ${r.transport}`);
    },
  });
  return batchesPerS * batch;
}

const gateway = (transport: Transport, clientShm = false) =>
  gatewayUnderLoad({
    port: PORT,
    model: { name: 'pixels', path: PIXELS, threads: 1, batching: { max_batch_size: 32, wait_ms: 2, max_queue_size: 4096, max_inputs: 2 } },
    load: { shape: [8, ...IMAGE], connections: 8, dtype: 'UINT8' },
    durationS,
    env: { ...TRANSPORTS[transport] },
    ...(clientShm && { server: { client_shared_memory: true }, prepare: registerImages }),
  });

async function bare() {
  const server = await startServer(['bench/bare-server.ts', PIXELS, String(PORT), '1'], `http://127.0.0.1:${PORT}/`);
  try {
    const body = binaryRequest('x', [8, ...IMAGE], 'UINT8');
    const url = `http://127.0.0.1:${PORT}/`;
    await autocannon({ ...body, url, connections: 8, durationS: 2 });
    return await autocannon({ ...body, url, connections: 8, durationS });
  } finally {
    await stopServer(server);
  }
}

const add = <T>(runs: Record<string, T[]>, key: string, value: T) => {
  runs[key] = [...(runs[key] ?? []), value];
};
const median = (xs: number[]) => medianBy(xs, (x) => x);

async function main() {
  console.log(`each load runs ${durationS} s, ${rounds} rounds interleaved`);
  const trips: Record<string, number[]> = {};
  const served: Record<string, { rowsPerS: number; p50Ms: number; p99Ms: number; cpuUsPerRequest?: object; meanBatchSize?: number }[]> = {};
  const remote = await startRemoteReplica(PIXELS, REMOTE_PORT);
  for (let r = 0; r < rounds; r++) {
    for (const batch of BATCHES) {
      for (const t of Object.keys(TRANSPORTS) as Transport[]) {
        const rate = await roundTrip(t, batch);
        add(trips, `${t} ${batch}`, rate);
        console.log('round trip', t, batch, Math.round(rate), 'rows/s');
      }
      const tcp = await tcpRoundTrip(batch);
      add(trips, `tcp ${batch}`, tcp);
      console.log('round trip tcp', batch, Math.round(tcp), 'rows/s');
    }
    for (const t of Object.keys(TRANSPORTS) as Transport[]) {
      const g = await gateway(t);
      add(served, t, { ...g, rowsPerS: g.requestsPerS * 8 });
      console.log('gateway', t, Math.round(g.requestsPerS * 8), 'rows/s');
    }
    const c = await gateway('shm', true).finally(() => removeImages());
    add(served, 'clientShm', { ...c, rowsPerS: c.requestsPerS * 8 });
    console.log('gateway, client shared memory', Math.round(c.requestsPerS * 8), 'rows/s');
    const b = await bare();
    add(served, 'bare', { ...b, rowsPerS: b.requestsPerS * 8 });
    console.log('bare', Math.round(b.requestsPerS * 8), 'rows/s');
  }
  await stopServer(remote);

  const roundTrips = BATCHES.map((batch) => {
    const shm = median(trips[`shm ${batch}`]);
    const socket = median(trips[`socket ${batch}`]);
    const tcp = median(trips[`tcp ${batch}`]);
    return {
      batch,
      shmRowsPerS: Math.round(shm),
      socketRowsPerS: Math.round(socket),
      tcpRowsPerS: Math.round(tcp),
      shmOverSocket: Math.round((shm / socket) * 100) / 100,
    };
  });
  const pick = (k: string) => {
    const runs = served[k];
    const m = medianBy(runs, (x) => x.rowsPerS);
    return { ...m, rowsPerS: Math.round(m.rowsPerS), runs: runs.map((x) => Math.round(x.rowsPerS)) };
  };
  const gateways = { shm: pick('shm'), socket: pick('socket'), clientShm: pick('clientShm'), bare: pick('bare') };
  const results = { machine: machine(), durationS, rounds, model: 'pixels.onnx UINT8 [N,224,224,3]', roundTrips, gateway: gateways };
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
  writeFileSync(join(ROOT, 'bench/results/ipc-cpu.json'), `${JSON.stringify(results, null, 2)}\n`);

  const m = results.machine;
  const md = `# Image-sized tensors from client to replica (CPU machine)

${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, Node ${m.node}; ${durationS} s per load, ${rounds} rounds interleaved, medians.
Model: \`examples/models/pixels.onnx\`, UINT8 [N,224,224,3] (147 KiB per image), no compute. ${m.date}

## 1. Replica round trip alone (2 batches in flight)

| batch | /dev/shm slots rows/s (MB/s) | Unix socket rows/s (MB/s) | shm / socket | TCP to a remote replica (loopback) rows/s (MB/s) |
|---|---|---|---|---|
${roundTrips.map((r) => `| ${r.batch} | ${r.shmRowsPerS} (${mbps(r.shmRowsPerS)}) | ${r.socketRowsPerS} (${mbps(r.socketRowsPerS)}) | **${r.shmOverSocket}×** | ${r.tcpRowsPerS} (${mbps(r.tcpRowsPerS)}) |`).join('\n')}

## 2. Through the gateway — 8 clients × 8 images per request, max_batch_size 32

| path | images/s (MB/s) | p50 ms | p99 ms | mean batch | runs |
|---|---|---|---|---|---|
| gateway, tensors through /dev/shm | ${gateways.shm.rowsPerS} (${mbps(gateways.shm.rowsPerS)}) | ${gateways.shm.p50Ms} | ${gateways.shm.p99Ms} | ${gateways.shm.meanBatchSize?.toFixed(1)} | ${gateways.shm.runs.join(', ')} |
| gateway, tensors through the socket | ${gateways.socket.rowsPerS} (${mbps(gateways.socket.rowsPerS)}) | ${gateways.socket.p50Ms} | ${gateways.socket.p99Ms} | ${gateways.socket.meanBatchSize?.toFixed(1)} | ${gateways.socket.runs.join(', ')} |
| gateway, images in client shared memory (Triton's extension; tensors to the replica through /dev/shm) | ${gateways.clientShm.rowsPerS} (${mbps(gateways.clientShm.rowsPerS)}) | ${gateways.clientShm.p50Ms} | ${gateways.clientShm.p99Ms} | ${gateways.clientShm.meanBatchSize?.toFixed(1)} | ${gateways.clientShm.runs.join(', ')} |
| bare node:http + in-process session (no replica hop) | ${gateways.bare.rowsPerS} (${mbps(gateways.bare.rowsPerS)}) | ${gateways.bare.p50Ms} | ${gateways.bare.p99Ms} | – | ${gateways.bare.runs.join(', ')} |

Gateway (shm) over bare: **${Math.round((gateways.shm.rowsPerS / gateways.bare.rowsPerS) * 100) / 100}**; shm over socket through the gateway: **${Math.round((gateways.shm.rowsPerS / gateways.socket.rowsPerS) * 100) / 100}×**; client shared memory over HTTP bodies: **${Math.round((gateways.clientShm.rowsPerS / gateways.shm.rowsPerS) * 100) / 100}×**.
`;
  writeFileSync(join(ROOT, 'bench/results/ipc-cpu.md'), md);
  console.log(md);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
