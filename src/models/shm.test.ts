import { mkdtempSync, readdirSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FrameReader, SHM_MIN_BYTES, writeFrame } from './protocol.js';
import { TensorSlots } from './shm.js';

const dir = () => mkdtempSync(join(tmpdir(), 'infergate-shm-'));
const open: TensorSlots[] = [];
afterEach(() => {
  for (const s of open.splice(0)) s.close();
});

/** The gateway's slots and the replica's view of the same files, names already unlinked. */
function pair(count = 2) {
  const folder = dir();
  const gateway = TensorSlots.create('r1', count, folder);
  if (!gateway) throw new Error('no slots');
  const replica = TensorSlots.open(gateway.paths);
  gateway.unlink();
  open.push(gateway, replica);
  return { folder, gateway, replica };
}

/** A connected pair of real Unix-socket ends. */
async function sockets(): Promise<[Socket, Socket]> {
  const path = join(dir(), 's.sock');
  const accepted = new Promise<Socket>((resolve) => {
    const server = createServer((s) => {
      server.close();
      resolve(s);
    }).listen(path);
  });
  const client = await new Promise<Socket>((resolve) => {
    const c = connect(path, () => resolve(c));
  });
  return [client, await accepted];
}

describe('shared-memory tensor slots', () => {
  it('hands bytes from one process side to the other after the names are gone', async () => {
    const { folder, gateway, replica } = pair();
    expect(readdirSync(folder)).toEqual([]); // nothing to leak if either side dies
    await gateway.write(1, [Uint8Array.from([1, 2, 3]), Uint8Array.from([4, 5])]);
    expect([...(await replica.read(1, 5))]).toEqual([1, 2, 3, 4, 5]);
    await replica.write(1, [Uint8Array.from([9])]);
    expect([...(await gateway.read(1, 1))]).toEqual([9]);
  });

  it('writes batches of more chunks than one writev takes', async () => {
    const { gateway, replica } = pair();
    const chunks = Array.from({ length: 1500 }, (_, i) => Uint8Array.from([i % 256, (i * 7) % 256]));
    await gateway.write(0, chunks);
    expect(await replica.read(0, 3000)).toEqual(Buffer.concat(chunks));
  });

  it('lends each slot to one request at a time', () => {
    const { gateway } = pair(2);
    const a = gateway.acquire();
    const b = gateway.acquire();
    expect([a, b]).toEqual([0, 1]);
    expect(gateway.acquire()).toBeUndefined();
    gateway.release(0);
    expect(gateway.acquire()).toBe(0);
  });

  it('closes only once the reads and writes in flight are done (a reused descriptor must not get them)', async () => {
    const { gateway, replica } = pair();
    const big = new Uint8Array(32 * 2 ** 20).fill(3);
    const writing = gateway.write(0, [big]);
    gateway.close();
    await expect(writing).resolves.toBeUndefined();
    expect((await replica.read(0, 4)).every((b) => b === 3)).toBe(true);
    await expect(gateway.write(0, [big])).rejects.toThrow(/closed/);
    expect(gateway.acquire()).toBeUndefined();
  });

  it('is not offered where the folder is missing', () => {
    expect(TensorSlots.create('r1', 2, join(dir(), 'missing'))).toBeUndefined();
  });
});

describe('frames through shared memory', () => {
  const big = Float32Array.from({ length: SHM_MIN_BYTES / 4 + 1 }, (_, i) => i * 0.5);
  const small = Float32Array.from([1, 2, 3]);

  async function send(slots: TensorSlots | undefined, reader: FrameReader, tensors: Record<string, Float32Array>) {
    const [a, b] = await sockets();
    let wireBytes = 0;
    const got = new Promise<ReturnType<FrameReader['push']>>((resolve) => {
      const frames: ReturnType<FrameReader['push']> = [];
      b.on('data', (chunk) => {
        wireBytes += chunk.byteLength;
        frames.push(...reader.push(chunk));
        if (frames.length) resolve(frames);
      });
    });
    const inputs = Object.fromEntries(Object.entries(tensors).map(([k, v]) => [k, { dtype: 'FP32' as const, shape: [v.length], data: v }]));
    await writeFrame(a, { id: 7, op: 'infer', slot: 1 }, inputs, slots);
    const frames = await got;
    const decoded = await frames[0].tensors;
    a.destroy();
    b.destroy();
    return { frame: { header: frames[0].header, tensors: decoded }, wireBytes };
  }

  it('sends large tensors through the slot and only the header on the socket', async () => {
    const { gateway, replica } = pair();
    const { frame, wireBytes } = await send(gateway, new FrameReader(replica), { x: big, y: small });
    expect(frame.header).toMatchObject({ id: 7, op: 'infer', slot: 1, shm: true });
    expect(wireBytes).toBeLessThan(1000);
    expect(frame.tensors.x.data).toEqual(big);
    expect(frame.tensors.y.data).toEqual(small);
  });

  it('keeps small tensors on the socket', async () => {
    const { gateway, replica } = pair();
    const { frame, wireBytes } = await send(gateway, new FrameReader(replica), { y: small });
    expect(frame.header.shm).toBeUndefined();
    expect(wireBytes).toBeGreaterThan(12);
    expect(frame.tensors.y.data).toEqual(small);
  });

  it('falls back to the socket when the slot cannot take the bytes', async () => {
    const { gateway, replica } = pair();
    gateway.close(); // every write now fails, as a full /dev/shm would
    const { frame, wireBytes } = await send(gateway, new FrameReader(replica), { x: big });
    expect(frame.header.shm).toBeUndefined();
    expect(wireBytes).toBeGreaterThan(big.byteLength);
    expect(frame.tensors.x.data).toEqual(big);
  });
});
