import type { SubmitOptions, Submitted } from '../../batcher/index.js';
import { badInput } from '../../errors/index.js';
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
  opts: SubmitOptions,
): Promise<Submitted> {
  // (a multiplexed model's model id: another model ignores the header, as a proxy in front may add it)
  const withCaller = { ...opts, priority: caller?.priority, caller: caller?.id, modelId: m.multiplexed ? opts.modelId : undefined };
  if (m.sequences) {
    if (!sequence)
      throw badInput(
        `model ${m.name} is stateful: each request needs parameters.sequence_id, with sequence_start: true on a sequence's first and sequence_end: true on its last`,
        undefined,
        'sequence_id_missing',
      );
    return m.sequences.submit({ ...sequence, owner: caller && caller.kind !== 'public' ? caller.id : undefined }, inputs, withCaller);
  }
  if (sequence) throw badInput(`model ${m.name} keeps no state between requests: sequence_id is for stateful models (a model's sequence in the config)`);
  if (!m.batcher) throw badInput(`model ${m.name} is generative: use POST /v1/completions or /v1/chat/completions`);
  return m.batcher.submit(inputs, withCaller);
}
