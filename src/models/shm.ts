import { randomBytes } from 'node:crypto';
import { accessSync, closeSync, constants, openSync, read, rmSync, writev } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const readAt = promisify(read);
const writevAt = promisify(writev);

/**
 * Tensor bytes through shared tmpfs files instead of the socket, between the gateway and a replica on
 * the same machine (Triton's system shared-memory idea, used inside the server). Through a Unix socket a
 * 5 MB batch costs dozens of wake-ups of both processes (the kernel buffer holds ~200 KB at a time);
 * one pwritev into a /dev/shm file and one pread out of it cost two copies and no round trips, and both
 * run on libuv's thread pool, off the event loops (bench/results/ipc-cpu.md).
 *
 * Each slot is one file, used by one request at a time: the gateway writes a batch into a free slot,
 * the replica reads it and may write the outputs back into the same slot. Files are unlinked as soon as
 * both processes hold them open, so they vanish with the processes whatever way those end.
 */
export class TensorSlots {
  private free: number[];
  /** Per-slot read buffers, for a reader that is done with a slot's tensors before the slot is reused. */
  private kept: (Buffer | undefined)[] = [];
  /** Reads and writes on the thread pool right now: the files are closed only once none is. */
  private busy = 0;
  private closing = false;

  private constructor(
    private fds: number[],
    readonly paths: string[],
  ) {
    this.free = fds.map((_, i) => i);
  }

  /** The gateway's side: `count` new empty files, or undefined when there is no usable shared-memory folder. */
  static create(name: string, count: number, dir = sharedMemoryDir()): TensorSlots | undefined {
    if (!dir) return undefined;
    // Unique and created exclusively: two gateways in one process may both have a replica `m-1`.
    const tag = randomBytes(4).toString('hex');
    const paths = Array.from({ length: count }, (_, i) => join(dir, `infergate-${process.pid}-${name}-${tag}-${i}`));
    const fds: number[] = [];
    try {
      for (const path of paths) fds.push(openSync(path, 'wx+', 0o600));
    } catch {
      fds.forEach((fd, i) => {
        closeSync(fd);
        rmSync(paths[i], { force: true });
      });
      return undefined;
    }
    return new TensorSlots(fds, paths);
  }

  /** The replica's side: the files the gateway created. */
  static open(paths: string[]): TensorSlots {
    return new TensorSlots(
      paths.map((p) => openSync(p, 'r+')),
      paths,
    );
  }

  /** Once the peer has them open too, the names are not needed (and nothing is left behind on a crash). */
  unlink(): void {
    for (const path of this.paths) rmSync(path, { force: true });
  }

  acquire(): number | undefined {
    return this.closing ? undefined : this.free.shift();
  }

  release(slot: number): void {
    this.free.push(slot);
  }

  /** Writes the chunks back to back from the slot's start; rejects (ENOSPC on a small /dev/shm) if they don't fit. */
  write(slot: number, chunks: Uint8Array[]): Promise<void> {
    return this.io(slot, async (fd) => {
      let at = 0;
      // A batch of many one-row requests has many chunks; writev takes at most IOV_MAX (1024) at once.
      for (let i = 0; i < chunks.length; i += 512) {
        const group = chunks.slice(i, i + 512);
        const size = group.reduce((n, c) => n + c.byteLength, 0);
        const { bytesWritten } = await writevAt(fd, group, at);
        if (bytesWritten !== size) throw new Error(`shared memory slot ${slot} took ${at + bytesWritten} bytes, not ${at + size}`);
        at += size;
      }
    });
  }

  /**
   * The slot's first `length` bytes, at offset 0 of a buffer of their own (so aligned for any typed array).
   * With `reuse`, the slot's previous read buffer is overwritten: for a reader that has finished with a
   * slot's tensors before the slot can carry new ones (the replica: it answers, then the slot is reused).
   * Fresh buffers that live through a batch are what makes V8 run full GCs (see buffer-pool.ts).
   */
  read(slot: number, length: number, reuse = false): Promise<Buffer> {
    return this.io(slot, async (fd) => {
      const kept = reuse ? this.kept[slot] : undefined;
      let out: Buffer;
      if (kept && kept.byteLength >= length) out = kept.subarray(0, length);
      else {
        out = Buffer.allocUnsafeSlow(length);
        if (reuse) this.kept[slot] = out;
      }
      let done = 0;
      while (done < length) {
        const { bytesRead } = await readAt(fd, out, done, length - done, done);
        if (bytesRead === 0) throw new Error(`shared memory slot ${slot} ended after ${done} of ${length} bytes`);
        done += bytesRead;
      }
      return out;
    });
  }

  /**
   * Runs one read or write on the slot's file. Closing waits for it: a descriptor closed while the thread
   * pool still holds its number could be reused by another open() and the bytes land in the wrong file.
   */
  private async io<T>(slot: number, op: (fd: number) => Promise<T>): Promise<T> {
    const fd = this.fds[slot];
    if (this.closing || fd === undefined) throw new Error(`shared memory slot ${slot} is closed`);
    this.busy++;
    try {
      return await op(fd);
    } finally {
      this.busy--;
      if (this.closing && this.busy === 0) this.closeFiles();
    }
  }

  /**
   * Hands a slot's reused read buffer over (to the replica's session worker, by transfer): no read may
   * reuse it until it comes back with `keep`. Undefined when the slot has none.
   */
  lend(slot: number): ArrayBuffer | undefined {
    const kept = this.kept[slot];
    this.kept[slot] = undefined;
    return kept?.buffer as ArrayBuffer | undefined;
  }

  /** Takes a lent read buffer back for the slot's next read. */
  keep(slot: number, buffer: ArrayBuffer): void {
    this.kept[slot] = Buffer.from(buffer);
  }

  /** Closes the files once no read or write is in flight; no new one starts. Idempotent. */
  close(): void {
    this.closing = true;
    if (this.busy === 0) this.closeFiles();
  }

  private closeFiles(): void {
    for (const fd of this.fds.splice(0)) closeSync(fd);
  }
}

/** /dev/shm where it exists and is writable (Linux); elsewhere tensors stay on the socket. */
export function sharedMemoryDir(): string | undefined {
  const dir = process.env.INFERGATE_SHM_DIR ?? '/dev/shm';
  if (dir === 'off') return undefined;
  try {
    accessSync(dir, constants.W_OK);
    return dir;
  } catch {
    return undefined;
  }
}
