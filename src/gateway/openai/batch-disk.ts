import { appendFile, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Where the Batch API keeps its files and batches across restarts (server.batch_dir), as plain files:
 * `files/<id>.jsonl` with `files/<id>.json` (what the API shows, and whose it is), `batches/<id>.json`, and
 * while a batch runs `batches/<id>.done.jsonl`, one line per answered request, so that a restarted gateway
 * sends only the requests not yet answered. Each JSON document is replaced whole (written aside, then renamed).
 */
export class BatchDisk {
  private constructor(
    private readonly dir: string,
    /** What was kept when the gateway started: the files (with their bytes) and the batches, as saved. */
    readonly kept: { files: { saved: unknown; data: Uint8Array }[]; batches: unknown[] },
  ) {}

  /** The folder's files and batches, after making its folders if they are new. */
  static async open(dir: string): Promise<BatchDisk> {
    await mkdir(join(dir, 'files'), { recursive: true });
    await mkdir(join(dir, 'batches'), { recursive: true });
    const files: { saved: unknown; data: Uint8Array }[] = [];
    for (const name of await readdir(join(dir, 'files'))) {
      if (!name.endsWith('.json')) continue; // (a file whose description was never written was never uploaded)
      const id = name.slice(0, -'.json'.length);
      const saved: unknown = JSON.parse(await readFile(join(dir, 'files', name), 'utf8'));
      files.push({ saved, data: new Uint8Array(await readFile(join(dir, 'files', `${id}.jsonl`))) });
    }
    const batches: unknown[] = [];
    for (const name of await readdir(join(dir, 'batches')))
      if (name.endsWith('.json')) batches.push(JSON.parse(await readFile(join(dir, 'batches', name), 'utf8')));
    return new BatchDisk(dir, { files, batches });
  }

  private path = (kind: 'files' | 'batches', name: string) => join(this.dir, kind, name);

  async saveFile(id: string, saved: unknown, data: Uint8Array): Promise<void> {
    await writeFile(this.path('files', `${id}.jsonl`), data);
    await this.replace(this.path('files', `${id}.json`), saved);
  }

  async deleteFile(id: string): Promise<void> {
    await rm(this.path('files', `${id}.json`), { force: true });
    await rm(this.path('files', `${id}.jsonl`), { force: true });
  }

  saveBatch(id: string, saved: unknown): Promise<void> {
    return this.replace(this.path('batches', `${id}.json`), saved);
  }

  /** One answered request of a running batch (appends of a line each are whole, in any order). */
  answered(batchId: string, entry: { ok: boolean; record: string }): Promise<void> {
    return appendFile(this.path('batches', `${batchId}.done.jsonl`), `${JSON.stringify(entry)}\n`);
  }

  /** The requests a batch has answered so far; a line cut short by a crash is dropped (its request runs again). */
  async answers(batchId: string): Promise<{ ok: boolean; record: string }[]> {
    const text = await readFile(this.path('batches', `${batchId}.done.jsonl`), 'utf8').catch(() => '');
    return text.split('\n').flatMap((line) => {
      try {
        return line ? [JSON.parse(line) as { ok: boolean; record: string }] : [];
      } catch {
        return [];
      }
    });
  }

  dropAnswers(batchId: string): Promise<void> {
    return rm(this.path('batches', `${batchId}.done.jsonl`), { force: true });
  }

  private async replace(path: string, value: unknown): Promise<void> {
    await writeFile(`${path}.new`, JSON.stringify(value));
    await rename(`${path}.new`, path);
  }
}
