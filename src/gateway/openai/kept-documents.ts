import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * A folder of JSON documents, one per id (`<id>.json`), kept across restarts: what was there when it was opened,
 * then each document replaced whole (written aside, then renamed) or removed as it changes. Writes of one id go
 * in order, each after the one before; a write that fails is reported to `failed` and the rest go on. Once closed
 * (the gateway stopping, its folder given up), nothing more is written: the folder stays as it was then.
 */
export class KeptDocuments<T> {
  private readonly writes = new Map<string, Promise<void>>();
  private closed = false;
  /** Told of a write that failed (the document is then as it was before it, or missing). */
  failed: (err: Error) => void = () => {};

  private constructor(
    private readonly dir: string,
    /** What the folder held when it was opened (a document that cannot be read is left out). */
    readonly kept: T[],
  ) {}

  static async open<T>(dir: string): Promise<KeptDocuments<T>> {
    await mkdir(dir, { recursive: true });
    const kept: T[] = [];
    for (const name of await readdir(dir)) {
      if (!name.endsWith('.json')) continue; // (one cut short while written aside: never renamed)
      try {
        kept.push(JSON.parse(await readFile(join(dir, name), 'utf8')) as T);
      } catch {
        // (unreadable: left out, the rest kept)
      }
    }
    return new KeptDocuments(dir, kept);
  }

  save(id: string, value: T): void {
    const path = join(this.dir, `${id}.json`);
    const text = JSON.stringify(value); // (as it is now: later changes are later writes)
    this.after(id, async () => {
      await writeFile(`${path}.new`, text);
      await rename(`${path}.new`, path);
    });
  }

  remove(id: string): void {
    this.after(id, () => rm(join(this.dir, `${id}.json`), { force: true }));
  }

  /** Writes what was asked for so far; nothing after. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.writes.values());
  }

  private after(id: string, write: () => Promise<void>): void {
    if (this.closed) return;
    const next = (this.writes.get(id) ?? Promise.resolve()).then(write).catch((err: Error) => this.failed(err));
    this.writes.set(id, next);
    void next.then(() => {
      if (this.writes.get(id) === next) this.writes.delete(id);
    });
  }
}
