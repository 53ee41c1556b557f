/**
 * A replica process: one ONNX Runtime session, served over a Unix socket with the frame protocol.
 * Started by the autoscaler's local provider with fork(); its spec arrives in INFERGATE_REPLICA.
 * A crash or an out-of-memory here takes down this replica only, and exiting frees its device.
 * Started by `infergate replica` instead, it listens on TCP for one gateway at a time (a remote replica).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import type { Inputs } from '../tensor/index.js';
import { missingCudaProvider } from './cuda-options.js';
import type { Decoder, StepRequest } from './decoder.js';
import { type GenerativeSpec, generativeSpec } from './generative.js';
import type { Shelf } from './model-shelf.js';
import { type Frame, FrameReader, writeFrame } from './protocol.js';
import { type ModelOpened, multiplexedPath, type ReadyMessage, type ReplicaSpec } from './replica-spec.js';
import { SessionWorker, type SessionWorkerReady, sessionThread } from './session-worker.js';
import { TensorSlots } from './shm.js';
import { type ModelSignature, readSignature } from './signature.js';

const spec = JSON.parse(process.env.INFERGATE_REPLICA ?? 'null') as ReplicaSpec | null;
if (!spec || (!process.send && !spec.listen)) {
  console.error('replica-main is started by the gateway (INFERGATE_REPLICA and an IPC channel), or by `infergate replica`');
  process.exit(2);
}

// The gateway going away (even by SIGKILL) closes the IPC channel: never outlive it holding a GPU.
process.on('disconnect', () => process.exit(0));

/** What serves the frames: a decoder for generation steps, or a session for batches. */
type Engine = SessionWorkerReady & {
  decoder?: Decoder;
  /** `modelId`: which of a multiplexed model's models runs the batch. */
  infer?: (inputs: Inputs, slot: number | undefined, modelId?: string) => Promise<{ outputs: Inputs; computeMs: number; opened?: ModelOpened }>;
  /** It runs batches one at a time itself (a worker's queue), so they need not wait for each other here. */
  queues?: boolean;
};

async function main(spec: ReplicaSpec): Promise<void> {
  const mainAt = performance.now();
  const signature = await readSignature(spec.multiplex ? multiplexedPath(spec.path, spec.multiplex.open[spec.multiplex.open.length - 1]) : spec.path);
  const found = generativeSpec(signature);
  const generative = found && spec.tokenizer ? { ...found, tokenizer: spec.tokenizer } : found;
  const slots = openSlots(spec.slots);
  const thread = sessionThread({
    device: spec.device,
    cudaInstalled: !missingCudaProvider(),
    signature,
    maxBatchRows: spec.maxBatchRows,
    forced: process.env.INFERGATE_SESSION_THREAD,
  });
  const engine = generative
    ? await decoderEngine(spec, generative)
    : thread === 'worker'
      ? await workerEngine(spec, slots)
      : spec.multiplex
        ? await shelfEngine(spec, spec.multiplex, signature)
        : await sessionEngine(spec, signature);
  const { decoder, infer } = engine;
  let running = 0;
  let chain = Promise.resolve();
  const server = createServer((socket) => (spec.listen ? admit(socket) : serve(socket)));
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
        if (header.op !== 'infer' && !(header.op === 'step' && decoder)) {
          void writeFrame(socket, { id: header.id, op: 'error', message: `unknown op ${header.op}` });
          continue;
        }
        running++;
        const answer = async () => {
          let written: Promise<void>;
          try {
            if (header.op === 'infer') {
              const modelId = typeof header.modelId === 'string' ? header.modelId : undefined;
              const { outputs, computeMs, opened } = await (infer as NonNullable<Engine['infer']>)(
                await tensors,
                header.shm ? header.slot : undefined,
                modelId,
              );
              written = writeFrame(socket, { id: header.id, op: 'result', computeMs, slot: header.slot, ...(opened && { opened }) }, outputs, slots);
            } else {
              const startedAt = performance.now();
              const result = await (decoder as Decoder).step(header as unknown as StepRequest);
              written = writeFrame(socket, { id: header.id, op: 'result', computeMs: performance.now() - startedAt, ...result });
            }
          } catch (err) {
            written = writeFrame(socket, { id: header.id, op: 'error', message: (err as Error).message });
          }
          // It counts as running until its answer is on its way.
          void written.finally(() => running--);
        };
        // One batch or step at a time: with max_inputs > 1 the next one waits, already transferred, and
        // starts the moment the current one ends (a worker keeps that queue itself).
        if (header.op === 'infer' && engine.queues) void answer();
        else chain = chain.then(answer);
      }
    });
  };
  const ready: ReadyMessage = {
    type: 'ready',
    provider: engine.provider,
    fallback: engine.fallback,
    cudaOptions: engine.cudaOptions,
    sessionThread: engine.queues ? 'worker' : 'main',
    sessions: engine.sessions,
    shm: slots !== undefined,
    timings: { spawnMs: mainAt, sessionMs: engine.sessionMs, warmupMs: engine.warmupMs },
  };

  // A remote replica serves one gateway at a time, one that sends the token first (when it has one).
  let gateway: Socket | undefined;
  const admit = (socket: Socket) => {
    const reader = new FrameReader(undefined);
    const refuse = (message: string) => void writeFrame(socket, { id: 0, op: 'error', message }).finally(() => socket.end());
    socket.on('error', () => socket.destroy());
    const onHello = (chunk: Buffer) => {
      let hello: Frame | undefined;
      try {
        hello = reader.push(chunk)[0];
      } catch {
        return socket.destroy();
      }
      if (!hello) return;
      socket.off('data', onHello);
      if (hello.header.op !== 'hello' || !tokenMatches(hello.header.token)) return refuse('refused: wrong or missing replica token (INFERGATE_REPLICA_TOKEN)');
      if (gateway) return refuse(`busy: serving the gateway at ${gateway.remoteAddress}:${gateway.remotePort}`);
      gateway = socket;
      socket.setNoDelay(true);
      socket.setKeepAlive(true, 10_000); // a gateway that vanished without closing frees the replica for the next
      // Its sequences go with it: nobody else can advance or release them.
      socket.once('close', () => {
        gateway = undefined;
        if (decoder) chain = chain.then(() => decoder.releaseAll());
      });
      serve(socket);
      void writeFrame(socket, { id: 0, op: 'ready', ...ready });
    };
    socket.on('data', onHello);
  };

  if (spec.listen) {
    const { host, port } = spec.listen;
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, host, resolve));
    const bound = server.address() as { address: string; port: number };
    if (!process.env.INFERGATE_REPLICA_TOKEN) console.warn(`replica ${spec.model}: no INFERGATE_REPLICA_TOKEN, any gateway that reaches this port may use it`);
    console.log(`replica ${spec.model} ready on ${ready.provider}, listening on ${bound.address}:${bound.port}`);
  } else {
    rmSync(spec.socket as string, { force: true });
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(spec.socket, resolve));
    process.send?.(ready);
  }

  // SIGTERM after the gateway drained us (or Ctrl-C on a remote one): finish what is running, then leave.
  const leave = () => {
    server.close();
    gateway?.end();
    const exitWhenIdle = () => (running === 0 ? process.exit(0) : setTimeout(exitWhenIdle, 5));
    exitWhenIdle();
  };
  process.on('SIGTERM', leave);
  if (spec.listen) process.on('SIGINT', leave);
}

/** The gateway's token against this replica's (compared in constant time); no token here admits any. */
function tokenMatches(given: unknown): boolean {
  const expected = process.env.INFERGATE_REPLICA_TOKEN;
  if (!expected) return true;
  const digest = (t: string) => createHash('sha256').update(t).digest();
  return typeof given === 'string' && timingSafeEqual(digest(given), digest(expected));
}

/** A generative model: its decoder on this thread (a step's request depends on the previous step's answer). */
async function decoderEngine(spec: ReplicaSpec, generative: GenerativeSpec): Promise<Engine> {
  const [{ Decoder }, { Sampler }, { openSession }, { PrefixCache }] = await Promise.all([
    import('./decoder.js'),
    import('./sampling.js'),
    import('./session.js'),
    import('./prefix-cache.js'),
  ]);
  const t0 = performance.now();
  const { session, provider, fallback, cudaOptions } = await openSession(spec.path, spec.device, spec.threads, spec.cuda);
  const t1 = performance.now();
  const prefixCache = spec.prefixCacheBytes ? new PrefixCache(spec.prefixCacheBytes, generative) : undefined;
  // INFERGATE_SAMPLER_THREADS overrides the sampler's threads (the GPU benchmark compares them).
  const samplerThreads = Number(process.env.INFERGATE_SAMPLER_THREADS ?? spec.threads);
  const decoder = new Decoder(session, generative, await Sampler.create(samplerThreads), prefixCache, spec.prefillChunk, spec.speculation);
  const sampling = { temperature: 0, topP: 1, topK: 0, seed: 0 };
  await decoder.step({ join: [{ seq: 'warmup', prompt: [0, 1], sampling }], advance: [], release: [] });
  await decoder.step({ join: [], advance: ['warmup'], release: [] });
  await decoder.step({ join: [], advance: [], release: ['warmup'] });
  const warmupMs = performance.now() - t1;
  // Response formats' masks need the vocabulary sorted: on a thread of its own, while the replica serves.
  const [{ prepareVocabulary }, { loadTokenizer }] = await Promise.all([import('./grammar/vocabulary-thread.js'), import('./text.js')]);
  loadTokenizer(generative.tokenizer).then(
    (tokenizer) => prepareVocabulary(generative.tokenizer, tokenizer, generative.vocab),
    () => {}, // a tokenizer that is not bundled: the model cannot take formats anyway (the gateway says so)
  );
  return { provider, fallback, cudaOptions, sessions: 1, sessionMs: t1 - t0, warmupMs, decoder };
}

/** The sessions on this thread. */
async function sessionEngine(spec: ReplicaSpec, signature: ModelSignature): Promise<Engine> {
  const { openReplicaSessions } = await import('./replica-sessions.js');
  const { run, count, ...ready } = await openReplicaSessions(spec, signature);
  return { ...ready, sessions: count, infer: (inputs, slot) => run(inputs, slot !== undefined) };
}

/** A multiplexed or versioned model's models on the replica's main thread (see openShelf). */
async function shelfEngine(spec: ReplicaSpec, shelf: Shelf, signature: ModelSignature): Promise<Engine> {
  const { openShelf } = await import('./model-shelf.js');
  const { ready, run } = await openShelf(spec, shelf, signature);
  const { run: _, release: __, count, ...info } = ready;
  return { ...info, sessions: count, infer: (inputs, slot, modelId) => run(inputs, slot !== undefined, modelId) };
}

/**
 * A session on a worker thread, opened and warmed up there; batches queue on it. A /dev/shm batch's
 * buffer goes there and back by transfer, not copy, and is each slot's read buffer again afterwards.
 */
async function workerEngine(spec: ReplicaSpec, slots: TensorSlots | undefined): Promise<Engine> {
  const { path, device, threads, cuda, warmupShapes, warmupBatches, layout, sessionPerBatchSize, multiplex } = spec;
  const sessions = { path, device, threads, cuda, warmupShapes, warmupBatches, layout, sessionPerBatchSize, multiplex };
  const worker = await SessionWorker.start({ role: 'infergate-session', ...sessions }, (err) => {
    console.error(`replica ${spec.replicaId}: its session's worker crashed: ${err.message}`);
    process.exit(1);
  });
  const infer = async (inputs: Inputs, slot: number | undefined, modelId?: string) => {
    const lent = slot !== undefined ? slots?.lend(slot) : undefined;
    try {
      const { outputs, giveBack, computeMs, opened } = await worker.run(inputs, lent, modelId);
      if (giveBack && slot !== undefined) slots?.keep(slot, giveBack);
      return { outputs, computeMs, ...(opened && { opened }) };
    } catch (err) {
      const giveBack = (err as { giveBack?: ArrayBuffer }).giveBack;
      if (giveBack && slot !== undefined) slots?.keep(slot, giveBack);
      throw err;
    }
  };
  return { ...worker.ready, infer, queues: true };
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
  if (process.send) process.send({ type: 'failed', message: err.message }, () => process.exit(1));
  else {
    console.error(`replica ${spec.model} failed to start: ${err.message}`);
    process.exit(1);
  }
});
