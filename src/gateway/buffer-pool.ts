/**
 * Reused request-body buffers. A body waits in the batcher for a few milliseconds, long enough to outlive
 * two young-generation collections and be promoted, so fresh megabyte-sized bodies are only ever freed by
 * full mark-compacts — V8 starts one per ~64 MB of such memory. With image tensors that was ~14 full GCs
 * a second keeping four V8 threads busy (more CPU than the event loop itself); with reused bodies the same
 * load ran without a single one (bench/results/ipc-cpu.md).
 *
 * Sizes are rounded up to a class (an eighth of a power of two: at most 12.5% slack), and the pool keeps
 * at most `maxBytes` of free buffers. A buffer never given back is simply garbage collected.
 */
export class BufferPool {
  private free = new Map<number, ArrayBuffer[]>();
  private freeBytes = 0;
  /** Only buffers this pool made may come back: a socket's read buffer, say, is shared with later bytes. */
  private ours = new WeakSet<ArrayBuffer>();

  constructor(
    private readonly maxBytes = 256 * 2 ** 20,
    private readonly minBytes = 64 * 1024,
  ) {}

  /** An ArrayBuffer of at least `size` bytes, not zero-filled. */
  acquire(size: number): ArrayBuffer {
    if (size < this.minBytes) return Buffer.allocUnsafeSlow(size).buffer as ArrayBuffer;
    const bytes = sizeClass(size);
    const reused = this.free.get(bytes)?.pop();
    if (reused) {
      this.freeBytes -= bytes;
      return reused;
    }
    const made = Buffer.allocUnsafeSlow(bytes).buffer as ArrayBuffer;
    this.ours.add(made);
    return made;
  }

  /** Takes back a buffer from `acquire` once nothing reads it any more. */
  release(buffer: ArrayBufferLike): void {
    const bytes = buffer.byteLength;
    if (!(buffer instanceof ArrayBuffer) || !this.ours.has(buffer) || this.freeBytes + bytes > this.maxBytes) return;
    if (this.free.get(bytes)?.includes(buffer)) return; // given back twice
    const list = this.free.get(bytes) ?? [];
    list.push(buffer);
    this.free.set(bytes, list);
    this.freeBytes += bytes;
  }

  get pooledBytes(): number {
    return this.freeBytes;
  }
}

/** The process's pool for request bodies and tensors read from client shared memory. */
export const requestBuffers = new BufferPool();

/** `n` rounded up to a multiple of an eighth of the power of two below it. */
export function sizeClass(n: number): number {
  if (n <= 8) return 8;
  const step = 2 ** Math.floor(Math.log2(n)) / 8;
  return Math.ceil(n / step) * step;
}
