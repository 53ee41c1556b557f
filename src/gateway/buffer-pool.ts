import { MessageChannel } from 'node:worker_threads';

/** Buffers below this size are not pooled: they come and go with young-generation collections cheaply. */
export const POOLED_MIN_BYTES = 64 * 1024;

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
    private readonly minBytes = POOLED_MIN_BYTES,
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

  /**
   * Takes back a buffer of this pool's that went to another thread and came back. A transferred ArrayBuffer
   * arrives as a new object, which `release` would not know: every body an intake thread read was a fresh
   * allocation until this. Only buffers of a size this pool makes are kept.
   */
  releaseReturned(buffer: ArrayBuffer): void {
    const bytes = buffer.byteLength;
    if (bytes < this.minBytes || sizeClass(bytes) !== bytes) return;
    this.ours.add(buffer);
    this.release(buffer);
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

let freedMemoryKept = false;

/**
 * Keeps glibc's malloc from handing freed memory back to the kernel between garbage collections.
 * Node's HTTP parser copies each 64 KB chunk of a body into a fresh buffer, which V8 frees only at its next
 * collection: a 1.2 MB request leaves 1.2 MB for it, and glibc returns the top of its heap to the kernel
 * whenever more than M_TRIM_THRESHOLD (128 KB) is free there, so after each collection the next chunks fault
 * their pages in again, zero-filled: ~200 page faults per 1.2 MB request on the event loop, which took 2–3
 * times its time per request (bench/results/body-memory-cpu.md). glibc raises the threshold itself, to twice
 * the largest block up to 32 MiB that it had mmap'ed and then frees (the dynamic mmap threshold, mallopt(3));
 * most programs soon free such a block, but the pool's bodies are never freed. So free one at start: moved
 * into a message that is dropped unread, it is freed as the ports close (strace: on the next turn of the
 * event loop), not at some later collection (a dropped Buffer's time to go was anyone's guess). Blocks under
 * 31 MiB then come from the heap and up to 62 MiB of free heap stays mapped. Under another libc, or with
 * MALLOC_TRIM_THRESHOLD_ set (which turns the rule off: MALLOC_TRIM_THRESHOLD_=131072 restores glibc's
 * default, the baseline the benchmark compares against), it is a short-lived allocation and nothing else.
 */
export function keepFreedMemory(): void {
  // Once per process: a second block would come from the raised heap, zero-filled page by page, for nothing.
  if (freedMemoryKept) return;
  freedMemoryKept = true;
  const block = new ArrayBuffer(31 * 2 ** 20);
  const { port1, port2 } = new MessageChannel();
  port1.postMessage(block, [block]);
  port1.close();
  port2.close();
}
