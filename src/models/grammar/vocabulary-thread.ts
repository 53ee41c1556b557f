/**
 * A vocabulary index built on a worker thread. Sorting GPT-2's 50257 tokens takes ~0.3-0.5 s here; built on
 * a replica's first constrained request it stalled that step, every sequence of the replica with it.
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import type { Tokenizer } from '../text.js';
import { spawnWorker } from '../thread.js';
import { indexVocabulary, type VocabularyIndex, vocabularyOffThread } from './mask.js';

type Spec = { role: 'infergate-vocabulary'; tokenizer: string; size: number };
/** The index as it crosses threads: the tokens' bytes in one buffer (one transfer, not 50k clones) and where each starts. */
type Packed = Omit<VocabularyIndex, 'bytes'> & { all: Uint8Array; offsets: Int32Array };

/** Starts building the vocabulary index of `tokenizer` (loaded by `loadTokenizer(name)`) for `vocabularyFor` to find. */
export function prepareVocabulary(name: string, tokenizer: Tokenizer, size: number): void {
  vocabularyOffThread(tokenizer, size, () => indexOnWorker(name, size));
}

/** The index of the tokenizer `loadTokenizer(name)` loads, sorted on a worker thread. */
export function indexOnWorker(name: string, size: number): Promise<VocabularyIndex> {
  const worker = spawnWorker(import.meta.url, { role: 'infergate-vocabulary', tokenizer: name, size } satisfies Spec);
  return new Promise<VocabularyIndex>((resolve, reject) => {
    worker.once('message', ({ all, offsets, ...rest }: Packed) => {
      resolve({ ...rest, bytes: Array.from({ length: offsets.length - 1 }, (_, i) => all.subarray(offsets[i], offsets[i + 1])) });
    });
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the vocabulary thread exited with code ${code}`)));
  }).finally(() => worker.terminate());
}

async function serve({ tokenizer, size }: Spec): Promise<void> {
  const { loadTokenizer } = await import('../text.js');
  const { ids, bytes, shared, plain } = indexVocabulary(await loadTokenizer(tokenizer), size);
  const offsets = new Int32Array(bytes.length + 1);
  for (const [i, b] of bytes.entries()) offsets[i + 1] = offsets[i] + b.length;
  const all = new Uint8Array(offsets[bytes.length]);
  for (const [i, b] of bytes.entries()) all.set(b, offsets[i]);
  const packed: Packed = { ids, shared, plain, all, offsets };
  parentPort?.postMessage(packed, [ids.buffer, shared.buffer, plain.buffer, all.buffer, offsets.buffer] as ArrayBuffer[]);
}

// (not awaited at the top level: see session-worker.ts)
if (!isMainThread && (workerData as Spec | undefined)?.role === 'infergate-vocabulary') void serve(workerData as Spec);
