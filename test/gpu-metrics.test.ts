import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { capturedLog, MODELS, startTestGateway } from './helpers.js';

// No GPU here: nvidia-smi is a script on PATH answering the two queries the gateway makes from files this test writes
// (what nvidia-smi prints on an H100 machine, with the replica's real pid). The GPU benchmark reads the real one.
let dir: string;
let gw: Awaited<ReturnType<typeof startTestGateway>>;
const { log, lines } = capturedLog();
const MiB = 2 ** 20;

const FAKE = `#!/bin/sh
echo "$@" >> "$FAKE_DIR/calls"
[ -e "$FAKE_DIR/fail" ] && { echo "Unable to determine the device handle for GPU0000:18:00.0: Unknown Error" >&2; exit 15; }
case "$1" in
  --query-gpu=*) cat "$FAKE_DIR/gpus.csv" ;;
  --query-compute-apps=*) cat "$FAKE_DIR/apps.csv" ;;
  *) exit 9 ;;
esac
`;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'infergate-gpu-'));
  await writeFile(join(dir, 'nvidia-smi'), FAKE);
  await chmod(join(dir, 'nvidia-smi'), 0o755);
  process.env.FAKE_DIR = dir;
  process.env.PATH = `${dir}:${process.env.PATH}`;
  await writeFile(
    join(dir, 'gpus.csv'),
    '0, GPU-7a1c, 37, 20480, 81559, 312.45, 700.00, 580.159.04, NVIDIA H100 80GB HBM3\n1, GPU-9f02, [N/A], 1024, 81559, [N/A], [N/A], 580.159.04, NVIDIA H100 80GB HBM3, MIG 3g.40gb\n',
  );
  await writeFile(join(dir, 'apps.csv'), ''); // no process on the GPUs yet
  gw = await startTestGateway(
    { telemetry: { gpu_metrics_interval_ms: 300 }, models: { mlp: { path: `${MODELS}mlp.onnx`, device: 'cpu', scaling: { min_containers: 1 } } } },
    { log },
  );
});
afterAll(async () => {
  await gw?.shutdown();
  await rm(dir, { recursive: true, force: true });
});

const scrape = async () => (await fetch(`${gw.url}/metrics`)).text();
const series = (text: string, name: string) => text.split('\n').filter((l) => l.startsWith(`${name}{`));
const stats = async () =>
  (await (await fetch(`${gw.url}/admin/stats`)).json()) as {
    gpus?: { index: number; uuid: string; name: string; utilization?: number; memoryUsedBytes?: number; powerWatts?: number }[];
    models: { model: string; replicas: { id: string; pid: number; state: string; gpuMemoryBytes?: number }[] }[];
  };
/** Past the reuse of a reading (telemetry.gpu_metrics_interval_ms). */
const nextReading = () => sleep(350);

describe('GPU metrics from nvidia-smi', () => {
  it("give each GPU's utilization, memory and power, and the memory each replica holds, by pid", async () => {
    const replica = (await stats()).models[0].replicas[0];
    // The replica on both cards, and a process that is not the gateway's.
    await writeFile(join(dir, 'apps.csv'), `${replica.pid}, GPU-7a1c, 812\n${replica.pid}, GPU-9f02, 64\n999999, GPU-7a1c, 19000\n`);
    await nextReading();
    const text = await scrape();
    expect(series(text, 'infergate_gpu_utilization')).toEqual(['infergate_gpu_utilization{gpu="0",gpu_uuid="GPU-7a1c"} 0.37']);
    expect(series(text, 'infergate_gpu_memory_used_bytes')).toEqual([
      `infergate_gpu_memory_used_bytes{gpu="0",gpu_uuid="GPU-7a1c"} ${20480 * MiB}`,
      `infergate_gpu_memory_used_bytes{gpu="1",gpu_uuid="GPU-9f02"} ${1024 * MiB}`,
    ]);
    expect(series(text, 'infergate_gpu_memory_total_bytes')).toHaveLength(2);
    // The MIG slice reports no utilization or power: no series rather than a made-up 0.
    expect(series(text, 'infergate_gpu_power_usage_watts')).toEqual(['infergate_gpu_power_usage_watts{gpu="0",gpu_uuid="GPU-7a1c"} 312.45']);
    expect(series(text, 'infergate_gpu_power_limit_watts')).toEqual(['infergate_gpu_power_limit_watts{gpu="0",gpu_uuid="GPU-7a1c"} 700']);
    expect(series(text, 'infergate_replica_gpu_memory_bytes')).toEqual([
      `infergate_replica_gpu_memory_bytes{infergate_model="mlp",replica="${replica.id}",gpu="0",gpu_uuid="GPU-7a1c"} ${812 * MiB}`,
      `infergate_replica_gpu_memory_bytes{infergate_model="mlp",replica="${replica.id}",gpu="1",gpu_uuid="GPU-9f02"} ${64 * MiB}`,
    ]);

    const s = await stats();
    expect(s.gpus?.map((g) => [g.index, g.uuid, g.name, g.utilization])).toEqual([
      [0, 'GPU-7a1c', 'NVIDIA H100 80GB HBM3', 0.37],
      [1, 'GPU-9f02', 'NVIDIA H100 80GB HBM3, MIG 3g.40gb', undefined],
    ]);
    expect(s.models[0].replicas[0].gpuMemoryBytes).toBe((812 + 64) * MiB);
  });

  it('run nvidia-smi once for scrapes arriving together, and not at all while nobody asks', async () => {
    await nextReading();
    const before = (await readFile(join(dir, 'calls'), 'utf8')).split('\n').length;
    await Promise.all([scrape(), scrape(), scrape(), stats()]);
    await sleep(300);
    const after = (await readFile(join(dir, 'calls'), 'utf8')).split('\n').length;
    expect(after - before).toBe(2); // the GPUs' query and the processes' query, once
  });

  it('leave the GPU series out while nvidia-smi fails, warn once, and bring them back when it answers', async () => {
    await writeFile(join(dir, 'fail'), '');
    for (let i = 0; i < 2; i++) {
      await nextReading();
      const res = await fetch(`${gw.url}/metrics`);
      expect(res.status).toBe(200);
      const text = await res.text();
      expect(series(text, 'infergate_gpu_memory_used_bytes')).toEqual([]);
      expect(series(text, 'infergate_replicas').length).toBeGreaterThan(0); // the rest of /metrics as ever
      expect((await stats()).gpus).toBeUndefined();
    }
    const warnings = lines.filter((l) => l.msg.startsWith('nvidia-smi failed'));
    expect(warnings).toHaveLength(1);
    expect(String(warnings[0].err)).toContain('Unable to determine the device handle');

    await rm(join(dir, 'fail'));
    await nextReading();
    expect(series(await scrape(), 'infergate_gpu_memory_used_bytes')).toHaveLength(2);
  });

  it("drop a replica's memory once the replica is gone", async () => {
    const old = (await stats()).models[0].replicas[0];
    process.kill(old.pid, 'SIGKILL'); // the pool starts another (min_containers: 1) under a new pid
    let now = old;
    for (let i = 0; i < 100 && now.pid === old.pid; i++) {
      await sleep(100);
      now = (await stats()).models[0].replicas.find((r) => r.state === 'ready' && r.pid !== old.pid) ?? old;
    }
    expect(now.pid).not.toBe(old.pid);
    await nextReading();
    // nvidia-smi's list still has the old pid (as it might for a moment): it is no replica of the gateway's now.
    expect(series(await scrape(), 'infergate_replica_gpu_memory_bytes')).toEqual([]);
    await writeFile(join(dir, 'apps.csv'), `${now.pid}, GPU-7a1c, 790\n`);
    await nextReading();
    expect(series(await scrape(), 'infergate_replica_gpu_memory_bytes')).toEqual([
      `infergate_replica_gpu_memory_bytes{infergate_model="mlp",replica="${now.id}",gpu="0",gpu_uuid="GPU-7a1c"} ${790 * MiB}`,
    ]);
  });

  it('are off with telemetry.gpu_metrics: false', async () => {
    const off = await startTestGateway({
      telemetry: { gpu_metrics: false },
      models: { mlp: { path: `${MODELS}mlp.onnx`, device: 'cpu', scaling: { min_containers: 0 } } },
    });
    try {
      const text = await (await fetch(`${off.url}/metrics`)).text();
      expect(text).toContain('infergate_replicas');
      expect(text).not.toContain('infergate_gpu_');
      expect(((await (await fetch(`${off.url}/admin/stats`)).json()) as { gpus?: unknown }).gpus).toBeUndefined();
    } finally {
      await off.shutdown();
    }
  });
});
