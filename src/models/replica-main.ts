/**
 * A replica process: one ONNX Runtime session, served over a Unix socket with the frame protocol.
 * Started by the autoscaler's local provider with fork(); its spec arrives in INFERGATE_REPLICA.
 * A crash or an out-of-memory here takes down this replica only, and exiting frees its device.
 */
import { rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import type { Inputs } from '../tensor/index.js';
import { Decoder, type StepRequest } from './decoder.js';
import { generativeSpec } from './generative.js';
import { type Frame, FrameReader, writeFrame } from './protocol.js';
import type { ReadyMessage, ReplicaSpec } from './replica-spec.js';
import { Sampler } from './sampling.js';
import { openSession, runSession, warmupRuns } from './session.js';
import { TensorSlots } from './shm.js';
import { readSignature } from './signature.js';

const spec = JSON.parse(process.env.INFERGATE_REPLICA ?? 'null') as ReplicaSpec | null;
if (!spec || !process.send) {
  console.error('replica-main is started by the gateway (INFERGATE_REPLICA and an IPC channel are required)');
  process.exit(2);
}

// The gateway going away (even by SIGKILL) closes the IPC channel: never outlive it holding a GPU.
process.on('disconnect', () => process.exit(0));

async function main(spec: ReplicaSpec): Promise<void> {
  const mainAt = performance.now();
  const signature = await readSignature(spec.path);
  const { session, provider, fallback, cudaOptions } = await openSession(spec.path, spec.device, spec.threads, spec.cuda);
  const sessionAt = performance.now();
  const generative = generativeSpec(signature);
  const decoder = generative ? new Decoder(session, generative, await Sampler.create()) : undefined;
  if (decoder) {
    const sampling = { temperature: 0, topP: 1, topK: 0, seed: 0 };
    await decoder.step({ join: [{ seq: 'warmup', prompt: [0, 1], sampling }], advance: [], release: [] });
    await decoder.step({ join: [], advance: ['warmup'], release: [] });
    await decoder.step({ join: [], advance: [], release: ['warmup'] });
  } else for (const inputs of warmupRuns(signature, spec.warmupShapes, spec.warmupBatches)) await runSession(session, inputs);
  const warmupAt = performance.now();
  const slots = openSlots(spec.slots);

  let running = 0;
  let chain = Promise.resolve();
  const server = createServer((socket) => serve(socket));
  const serve = (socket: Socket) => {
    // A batch's inputs are done with once it is answered, and only then can its slot carry another.
    const reader = new FrameReader(slots, true);
    socket.on('error', () => socket.destroy());
    socket.on('data', (chunk) => {
      let frames: Frame[];
      try {
        frames = reader.push(chunk);
      } catch (err) {
        console.error(`replica ${spec.replicaId}: bad frame stream, closing it: ${(err as Error).message}`);
        return socket.destroy();
      }
      for (const { header, tensors } of frames) {
        const run =
          header.op === 'infer'
            ? async () => runSession(session, await tensors)
            : header.op === 'step' && decoder
              ? () => decoder.step(header as unknown as StepRequest)
              : null;
        if (!run) {
          void writeFrame(socket, { id: header.id, op: 'error', message: `unknown op ${header.op}` });
          continue;
        }
        running++;
        // One batch at a time: with max_inputs > 1 the next batch waits here, already transferred,
        // and starts the moment the current one ends (no round trip in between, no oversubscribed cores).
        chain = chain.then(async () => {
          const startedAt = performance.now();
          let answer: Promise<void>;
          try {
            const result = await run();
            const computeMs = performance.now() - startedAt;
            answer =
              header.op === 'step'
                ? writeFrame(socket, { id: header.id, op: 'result', computeMs, ...result })
                : writeFrame(socket, { id: header.id, op: 'result', computeMs, slot: header.slot }, result as Inputs, slots);
          } catch (err) {
            answer = writeFrame(socket, { id: header.id, op: 'error', message: (err as Error).message });
          }
          // The next batch starts now; this one counts as running until its answer is on its way.
          void answer.finally(() => running--);
        });
      }
    });
  };

  rmSync(spec.socket, { force: true });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(spec.socket, resolve));
  const ready: ReadyMessage = {
    type: 'ready',
    provider,
    fallback,
    cudaOptions,
    shm: slots !== undefined,
    timings: { spawnMs: mainAt, sessionMs: sessionAt - mainAt, warmupMs: warmupAt - sessionAt },
  };
  process.send?.(ready);

  // SIGTERM after the gateway drained us: finish what is running, then leave.
  process.on('SIGTERM', () => {
    server.close();
    const exitWhenIdle = () => (running === 0 ? process.exit(0) : setTimeout(exitWhenIdle, 5));
    exitWhenIdle();
  });
}

/** The gateway's shared-memory slots; without them (or if they can't be opened) tensors use the socket. */
function openSlots(paths: string[] | undefined): TensorSlots | undefined {
  if (!paths?.length) return undefined;
  try {
    return TensorSlots.open(paths);
  } catch (err) {
    console.warn(`replica ${spec?.replicaId}: shared memory unavailable, tensors go through the socket: ${(err as Error).message}`);
    return undefined;
  }
}

main(spec).catch((err: Error) => {
  process.send?.({ type: 'failed', message: err.message }, () => process.exit(1));
});
