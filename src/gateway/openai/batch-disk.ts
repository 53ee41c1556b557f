import { readFileSync } from 'node:fs';
import { appendFile, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { SavedConversation } from './conversations.js';
import { KeptDocuments } from './kept-documents.js';
import type { SavedBackground } from './responses-kept.js';
import type { SavedResponse } from './stored-responses.js';

/** How often a gateway says it still holds its folder, and how long after its last word another may take it. */
const HEARTBEAT_MS = 10_000;
const STALE_MS = 30_000;

/**
 * Where the Batch API keeps its files and batches across restarts (server.batch_dir), as plain files:
 * `files/<id>.jsonl` with `files/<id>.json` (what the API shows, and whose it is), `batches/<id>.json`, and
 * while a batch runs `batches/<id>.done.jsonl`, one line per answered request, so that a restarted gateway
 * sends only the requests not yet answered. Each JSON document is replaced whole (written aside, then renamed).
 * The Responses API's kept responses, its background responses not yet ended and the conversations are kept there
 * too: `responses/`, `background/`, `conversations/`.
 */
export class BatchDisk {
  private constructor(
    private readonly dir: string,
    /** What was kept when the gateway started: the files (with their bytes) and the batches, as saved. */
    readonly kept: { files: { saved: unknown; data: Uint8Array }[]; batches: unknown[] },
    /** Kept responses (store: true, background ones) and conversations, a document each. */
    readonly responses: KeptDocuments<SavedResponse>,
    readonly background: KeptDocuments<SavedBackground>,
    readonly conversations: KeptDocuments<SavedConversation>,
    private readonly release: () => Promise<void>,
  ) {}

  /**
   * Writes what is still being written, then gives the folder up (see `claim`). Nothing is written after: a
   * background response still running stays on disk, to run again after the restart.
   */
  async close(): Promise<void> {
    await Promise.all([this.responses.close(), this.background.close(), this.conversations.close()]);
    await this.release();
  }

  /** The folder's files and batches, after making its folders if they are new; the folder is this gateway's until `close`. */
  static async open(dir: string): Promise<BatchDisk> {
    await mkdir(join(dir, 'files'), { recursive: true });
    await mkdir(join(dir, 'batches'), { recursive: true });
    const close = await claim(join(dir, 'owner.json'));
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
    const [responses, background, conversations] = await Promise.all([
      KeptDocuments.open<SavedResponse>(join(dir, 'responses')),
      KeptDocuments.open<SavedBackground>(join(dir, 'background')),
      KeptDocuments.open<SavedConversation>(join(dir, 'conversations')),
    ]);
    return new BatchDisk(dir, { files, batches }, responses, background, conversations, close);
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

  /** Forgets a batch (one that has ended). */
  async deleteBatch(id: string): Promise<void> {
    await rm(this.path('batches', `${id}.json`), { force: true });
    await this.dropAnswers(id);
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

/**
 * One gateway per folder: two would both go on with the same batches and write over each other's files (a volume
 * shared by a Deployment's replicas). The owner file names this process and is rewritten every 10 s; another
 * gateway takes the folder only once that has stopped for 30 s (its owner crashed), from any machine — at once on
 * the owner's machine when its process is gone.
 */
async function claim(path: string): Promise<() => Promise<void>> {
  const me = { host: hostname(), pid: process.pid };
  const write = (flag: 'wx' | 'w') => writeFile(path, JSON.stringify({ ...me, at: Date.now() }), { flag });
  try {
    await write('wx');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    const owner = JSON.parse(await readFile(path, 'utf8').catch(() => '{}')) as { host?: string; pid?: number; at?: number };
    const ago = Date.now() - (owner.at ?? 0);
    const gone = owner.host === me.host && (owner.pid === me.pid || !alive(owner.pid));
    if (ago < STALE_MS && !gone)
      throw new Error(
        `another gateway keeps its batches there (pid ${owner.pid} on ${owner.host}, ${Math.round(ago / 1000)} s ago); give each gateway a folder of its own`,
      );
    await write('w'); // its owner stopped without giving it up
  }
  const heartbeat = setInterval(() => void write('w').catch(() => {}), HEARTBEAT_MS).unref();
  return async () => {
    clearInterval(heartbeat);
    await rm(path, { force: true });
  };
}

const alive = (pid: number | undefined) => {
  try {
    return pid !== undefined && process.kill(pid, 0) && !zombie(pid);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // someone else's process: alive
  }
};

/** A process killed and not yet reaped (where no init reaps: signals still reach it, but it runs nothing). */
const zombie = (pid: number) => {
  try {
    return / Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\)/s, ')'));
  } catch {
    return false; // (no /proc: not Linux)
  }
};
