import type { Inputs } from '../tensor/index.js';
import { bytesOf, isDType, viewBytes } from '../tensor/index.js';
import type { TensorSlots } from './shm.js';

/**
 * The replica protocol: frames over a stream socket (a Unix socket here, TCP for remote replicas).
 *
 *   u32 LE header length | JSON header | raw little-endian tensor bytes, in header order
 *
 * The JSON header describes the tensors (name, dtype, shape, byteLength) but never holds their values:
 * no JSON number arrays and no base64 on this path.
 *
 * Between processes on one machine a request may hold a shared-memory slot (`slot`, see shm.ts); large
 * tensor bytes then go through the slot instead of the socket (`shm: true`), in both directions.
 */
export type TensorMeta = { name: string; dtype: string; shape: number[]; byteLength: number };
export type FrameHeader = { id: number; op: string; tensors?: TensorMeta[]; slot?: number; shm?: boolean; [extra: string]: unknown };
/** `tensors` is a promise when they come through shared memory: the slot is read off the event loop. */
export type Frame = { header: FrameHeader; tensors: Inputs | Promise<Inputs> };

/** Largest header a peer may send; anything bigger is a corrupt stream, not a request. */
const MAX_HEADER_BYTES = 1 << 20;
/** Below this the socket is as fast as shared memory (one write, one read) and needs no syscalls more. */
export const SHM_MIN_BYTES = 128 * 1024;

/** The frame as a list of chunks for `socket.cork()` + writes: tensor bytes are sent without copying. */
export function encodeFrame(header: FrameHeader, tensors: Inputs = {}): Uint8Array[] {
  const { metas, bodies } = describeTensors(tensors);
  return [...encodeHeader({ ...header, tensors: metas }), ...bodies];
}

function describeTensors(tensors: Inputs): { metas: TensorMeta[]; bodies: Uint8Array[] } {
  const metas: TensorMeta[] = [];
  const bodies: Uint8Array[] = [];
  for (const [name, t] of Object.entries(tensors)) {
    const pieces = (t.parts ?? [t.data]).map(bytesOf);
    metas.push({ name, dtype: t.dtype, shape: t.shape, byteLength: pieces.reduce((n, b) => n + b.byteLength, 0) });
    bodies.push(...pieces);
  }
  return { metas, bodies };
}

function encodeHeader(header: FrameHeader): Uint8Array[] {
  const json = Buffer.from(JSON.stringify(header));
  const prefix = Buffer.allocUnsafe(4);
  prefix.writeUInt32LE(json.byteLength, 0);
  return [prefix, json];
}

/** Reassembles frames from stream chunks of any size (and from shared-memory slots, given the slots). */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private header: FrameHeader | null = null;
  private bodyLength = 0;

  /** `reuseSlotBuffers`: each slot's tensors are done with before that slot carries the next frame. */
  constructor(
    private slots?: TensorSlots,
    private readonly reuseSlotBuffers = false,
  ) {}

  push(chunk: Buffer): Frame[] {
    this.chunks.push(chunk);
    this.buffered += chunk.byteLength;
    const frames: Frame[] = [];
    for (;;) {
      if (!this.header) {
        if (this.buffered < 4) break;
        const length = this.peek(4).readUInt32LE(0);
        if (length > MAX_HEADER_BYTES) throw new Error(`frame header of ${length} bytes exceeds ${MAX_HEADER_BYTES}`);
        if (this.buffered < 4 + length) break;
        this.take(4);
        this.header = JSON.parse(this.take(length).toString('utf8')) as FrameHeader;
        this.bodyLength = (this.header.tensors ?? []).reduce((n, t) => n + t.byteLength, 0);
        if (this.header.shm) this.bodyLength = 0;
      }
      if (this.buffered < this.bodyLength) break;
      const header = this.header;
      this.header = null;
      const tensors = header.shm ? this.fromSlot(header) : decodeTensors(header.tensors ?? [], this.take(this.bodyLength));
      frames.push({ header, tensors });
    }
    return frames;
  }

  /** Starts reading the slot now (the thread pool copies while this process does other work). */
  private fromSlot(header: FrameHeader): Promise<Inputs> {
    const { slots, reuseSlotBuffers } = this;
    const metas = header.tensors ?? [];
    const read = async () => {
      if (!slots || header.slot === undefined) throw new Error(`frame ${header.id} names a shared-memory slot this stream has none of`);
      return decodeTensors(
        metas,
        await slots.read(
          header.slot,
          metas.reduce((n, t) => n + t.byteLength, 0),
          reuseSlotBuffers,
        ),
      );
    };
    const tensors = read();
    tensors.catch(() => {}); // a frame nobody waits for must not become an unhandled rejection
    return tensors;
  }

  private peek(n: number): Buffer {
    if (this.chunks[0].byteLength < n) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0];
  }

  /** Removes n bytes from the front; copies only when they span chunks. */
  private take(n: number): Buffer {
    this.buffered -= n;
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0];
    if (first.byteLength >= n) {
      if (first.byteLength === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0];
      const used = Math.min(c.byteLength, n - filled);
      c.copy(out, filled, 0, used);
      filled += used;
      if (used === c.byteLength) this.chunks.shift();
      else this.chunks[0] = c.subarray(used);
    }
    return out;
  }
}

function decodeTensors(metas: TensorMeta[], body: Buffer): Inputs {
  const tensors: Inputs = {};
  let offset = 0;
  for (const m of metas) {
    if (!isDType(m.dtype)) throw new Error(`frame tensor ${m.name} has unknown dtype ${m.dtype}`);
    tensors[m.name] = { dtype: m.dtype, shape: m.shape, data: viewBytes(m.dtype, body.subarray(offset, offset + m.byteLength)) };
    offset += m.byteLength;
  }
  return tensors;
}

/**
 * Writes one frame as a single burst (corked), without copying tensor bytes into the socket's buffers.
 * Given slots and a `header.slot`, large tensor bytes go into that slot first (on the thread pool, so
 * the event loop keeps reading requests meanwhile) and only the header goes on the socket; if the slot
 * can't take them (a full /dev/shm) they go on the socket as usual. Never rejects.
 */
export async function writeFrame(socket: import('node:net').Socket, header: FrameHeader, tensors: Inputs = {}, slots?: TensorSlots): Promise<void> {
  const { metas, bodies } = describeTensors(tensors);
  const inSlot =
    slots && header.slot !== undefined && metas.reduce((n, m) => n + m.byteLength, 0) >= SHM_MIN_BYTES && (await written(slots, header.slot, bodies));
  const chunks = inSlot ? encodeHeader({ ...header, tensors: metas, shm: true }) : [...encodeHeader({ ...header, tensors: metas }), ...bodies];
  if (socket.destroyed) return;
  socket.cork();
  for (const chunk of chunks) socket.write(chunk);
  process.nextTick(() => socket.uncork());
}

async function written(slots: TensorSlots, slot: number, bodies: Uint8Array[]): Promise<boolean> {
  try {
    await slots.write(slot, bodies);
    return true;
  } catch (err) {
    warnOnce(`shared memory failed, tensors go through the socket: ${(err as Error).message}`);
    return false;
  }
}

let warned = false;
function warnOnce(message: string): void {
  if (!warned) console.warn(message);
  warned = true;
}
