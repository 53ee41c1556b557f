import type { SubmitOptions, Submitted } from '../../batcher/index.js';
import { badInput, notFound } from '../../errors/index.js';
import type { Inputs } from '../../tensor/index.js';
import type { Caller } from '../auth/middleware.js';
import type { ServedModel } from '../types.js';
import type { InferRequest } from './request.js';

/**
 * A tensor request to its model, with its caller's priority and identity (callers take turns in the queue):
 * through the dynamic batcher, or, for a stateful model, as the next request of its sequence. Sequences are the caller's own: under a key or a token, another caller's equal sequence
 * id is another sequence.
 */
export function submitInfer(
  m: ServedModel,
  inputs: Inputs,
  sequence: InferRequest['sequence'],
  caller: Caller | undefined,
  opts: SubmitOptions & { version?: string },
): Promise<Submitted> {
  // A versioned model's version goes as its model id; a multiplexed model's model id is its own (another model
  // ignores the header, as a proxy in front may add it).
  const modelId = m.versions ? versionOf(m, opts.version) : m.multiplexed ? opts.modelId : undefined;
  const withCaller = { ...opts, priority: opts.priority ?? caller?.priority, caller: caller?.id, modelId };
  if (m.sequences) {
    if (!sequence)
      throw badInput(
        `model ${m.name} is stateful: each request needs parameters.sequence_id, with sequence_start: true on a sequence's first and sequence_end: true on its last`,
        undefined,
        'sequence_id_missing',
      );
    return m.sequences.submit({ ...sequence, owner: sequenceOwner(caller) }, inputs, withCaller);
  }
  if (sequence) throw badInput(`model ${m.name} keeps no state between requests: sequence_id is for stateful models (a model's sequence in the config)`);
  if (!m.batcher) throw badInput(`model ${m.name} is generative: use POST /v1/completions or /v1/chat/completions`);
  return m.batcher.submit(inputs, withCaller);
}

/** Whose a sequence is: its caller's, under a key or a token; the public's sequences are everyone's. */
export const sequenceOwner = (caller: Caller | undefined): string | undefined => (caller && caller.kind !== 'public' ? caller.id : undefined);

/**
 * The version a request gets (Triton's): the one it names, a 404 if that one is not served, else the latest
 * served (or one drawn by the model's traffic split). A model without versions has one, "1".
 */
export function versionOf(m: Pick<ServedModel, 'name' | 'versions'>, requested: string | undefined): string {
  const served = m.versions?.served ?? ['1'];
  if (requested === undefined || requested === '') return m.versions?.unnamed() ?? '1';
  if (!served.includes(requested))
    throw notFound(
      `model ${m.name} has no version ${JSON.stringify(requested)} served; it serves ${served.length > 1 ? 'versions' : 'version'} ${served.join(', ')}`,
    );
  return requested;
}
