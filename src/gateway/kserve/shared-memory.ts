import { closeSync, fstatSync, openSync, read, write } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { badInput, GatewayError, notFound } from '../../errors/index.js';
import { requestBuffers } from '../buffer-pool.js';

const readAt = promisify(read);
const writeAt = promisify(write);

export type RegionStatus = { name: string; key: string; offset: number; byte_size: number };
/** `busy`: reads and writes in flight; an unregistered region's file is closed once none is. */
type Region = RegionStatus & { fd: number; busy: number; closing: boolean };

/** Each region holds a file descriptor: a bound keeps callers from exhausting them. */
const MAX_REGIONS = 256;

/** Where POSIX shm_open() keys live (what Triton's clients create with shm_open). */
const SHM_DIR = '/dev/shm';

/**
 * Triton's system shared-memory extension: a client on the same machine registers a POSIX shared-memory
 * object, then names regions of it instead of sending tensor bytes over HTTP — inputs are read from it,
 * outputs written into it. The copies run on libuv's thread pool, so large tensors never pass through
 * the event loop. Off unless `server.client_shared_memory: true` (it lets callers make the gateway read
 * and write /dev/shm objects); behind the same authentication as the model routes.
 */
export class SharedMemoryRegions {
  private regions = new Map<string, Region>();

  register(name: string, body: unknown): void {
    const { key, offset = 0, byte_size: size } = (body ?? {}) as { key?: unknown; offset?: unknown; byte_size?: unknown };
    if (typeof key !== 'string' || !/^\/?[A-Za-z0-9_.-]+$/.test(key) || key.replace(/^\//, '').startsWith('.'))
      throw badInput(`"key" must name a POSIX shared-memory object like "/my_region", got ${JSON.stringify(key)}`, 'key');
    if (!Number.isSafeInteger(offset) || (offset as number) < 0) throw badInput(`"offset" must be a byte offset, got ${JSON.stringify(offset)}`, 'offset');
    if (!Number.isSafeInteger(size) || (size as number) <= 0)
      throw badInput(`"byte_size" must be a positive byte count, got ${JSON.stringify(size)}`, 'byte_size');
    if (this.regions.has(name)) throw new GatewayError(409, 'already_exists', `shared-memory region ${JSON.stringify(name)} is already registered`);
    if (this.regions.size >= MAX_REGIONS) throw badInput(`at most ${MAX_REGIONS} shared-memory regions may be registered; unregister some first`);
    let fd: number;
    try {
      fd = openSync(join(SHM_DIR, key.replace(/^\//, '')), 'r+');
    } catch (err) {
      throw badInput(`cannot open shared-memory object ${key}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 'key');
    }
    const objectSize = fstatSync(fd).size;
    if ((offset as number) + (size as number) > objectSize) {
      closeSync(fd);
      throw badInput(`region ${JSON.stringify(name)} (offset ${offset} + ${size} bytes) is past the end of ${key} (${objectSize} bytes)`);
    }
    this.regions.set(name, { name, key, offset: offset as number, byte_size: size as number, fd, busy: 0, closing: false });
  }

  /** One region, or all when no name is given; one not registered is nothing to do (as Triton's: clients clean up so). */
  unregister(name?: string): void {
    const regions = name === undefined ? [...this.regions.values()] : [this.regions.get(name)].filter((r) => r !== undefined);
    for (const region of regions) {
      this.regions.delete(region.name);
      // A descriptor closed under a read on the thread pool could be reused by another open().
      region.closing = true;
      if (region.busy === 0) closeSync(region.fd);
    }
  }

  status(name?: string): RegionStatus[] {
    const list = name === undefined ? [...this.regions.values()] : [this.get(name)];
    return list.map(({ name, key, offset, byte_size }) => ({ name, key, offset, byte_size }));
  }

  /** `size` bytes at `offset` into the region, in a pooled buffer (give it back with requestBuffers.release). */
  read(name: string, offset: number, size: number): Promise<Uint8Array> {
    return this.io(name, offset, size, async (region) => {
      const out = new Uint8Array(requestBuffers.acquire(size), 0, size);
      let done = 0;
      while (done < size) {
        const { bytesRead } = await readAt(region.fd, out, done, size - done, region.offset + offset + done);
        if (bytesRead === 0) throw badInput(`shared-memory object ${region.key} is shorter than its region (was it truncated?)`);
        done += bytesRead;
      }
      return out;
    });
  }

  write(name: string, offset: number, bytes: Uint8Array): Promise<void> {
    return this.io(name, offset, bytes.byteLength, async (region) => {
      let done = 0;
      while (done < bytes.byteLength) {
        const { bytesWritten } = await writeAt(region.fd, bytes, done, bytes.byteLength - done, region.offset + offset + done);
        done += bytesWritten;
      }
    });
  }

  private async io<T>(name: string, offset: number, size: number, op: (region: Region) => Promise<T>): Promise<T> {
    const region = this.within(name, offset, size);
    region.busy++;
    try {
      return await op(region);
    } finally {
      region.busy--;
      if (region.closing && region.busy === 0) closeSync(region.fd);
    }
  }

  private get(name: string): Region {
    const region = this.regions.get(name);
    if (!region) throw notFound(`no shared-memory region ${JSON.stringify(name)} is registered`);
    return region;
  }

  /** Throws the 400 a read or write of these bytes would: checked before a request is run. */
  check(name: string, offset: number, size: number): void {
    this.within(name, offset, size);
  }

  private within(name: string, offset: number, size: number): Region {
    const region = this.regions.get(name);
    if (!region) throw badInput(`no shared-memory region ${JSON.stringify(name)} is registered`);
    if (offset + size > region.byte_size)
      throw badInput(`shared-memory region ${JSON.stringify(name)} has ${region.byte_size} bytes; offset ${offset} + ${size} bytes does not fit`);
    return region;
  }
}
