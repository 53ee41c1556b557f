import { parentPort, workerData } from 'node:worker_threads';
import { type LoadPart, runLoad } from './perf.js';

// A worker thread of `infergate perf --threads`: its part of a load, on clients of its own. It says when they are
// warmed up, starts when told (at an absolute time, the same for every thread), and answers with its run.
// (no top-level await in a worker's entry: terminating a thread while such a module evaluates is a V8 fatal)
const port = parentPort as NonNullable<typeof parentPort>;

const started = () =>
  new Promise<number>((resolve) => {
    port.once('message', ({ startAt }: { startAt: number }) => {
      const start = startAt - performance.timeOrigin;
      setTimeout(() => resolve(Math.max(start, performance.now())), Math.max(0, start - performance.now()));
    });
    port.postMessage({ type: 'ready' });
  });

void runLoad(workerData as LoadPart, started).then((run) => port.postMessage({ type: 'run', run }));
