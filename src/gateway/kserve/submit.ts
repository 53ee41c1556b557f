import type { SpanContext } from '@opentelemetry/api';
import type { SubmitOptions, Submitted } from '../../batcher/index.js';
import { badInput, GatewayError, notFound } from '../../errors/index.js';
import type { Inputs } from '../../tensor/index.js';
import type { Caller } from '../auth/middleware.js';
import { SHADOW_PRIORITY } from '../shadow.js';
import type { ServedModel } from '../types.js';
import type { InferRequest } from './request.js';
import { encodeInferResponse } from './response.js';

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

/**
 * The request run on a shadow version as well (config `version_shadow`), its answer discarded — or, where the request
 * is captured (data capture), told (`told`) to be captured beside the answer's: over HTTP and as a WebSocket message. Its inputs are copied: the request's buffers go back to
 * their pools once it is answered. It waits behind everyone and fails alone (counted in that version's stats).
 */
export function shadowRun(
  m: ServedModel,
  version: string,
  inputs: Inputs,
  request: InferRequest,
  { caller, trace, told }: { caller?: Caller; trace?: SpanContext; told?: (version: string, status: number, contentType: string, body: Uint8Array) => void },
): void {
  const copied = Object.fromEntries(
    Object.entries(inputs).map(([name, t]) => [
      name,
      { ...t, shape: [...t.shape], data: t.data.slice(), ...(t.parts && { parts: t.parts.map((p) => p.slice()) }) },
    ]),
  );
  submitInfer(m, copied, undefined, caller, { version, priority: SHADOW_PRIORITY, trace }).then(
    (result) => {
      const { body, headers } = encodeInferResponse(
        { name: m.name, version },
        { ...request, outputs: request.outputs.filter((o) => !o.shm) },
        result.outputs,
        m.labels,
      );
      told?.(version, 200, headers['content-type'] ?? 'application/json', typeof body === 'string' ? new TextEncoder().encode(body) : body);
    },
    (err: Error) => {
      const status = err instanceof GatewayError ? err.status : 500;
      told?.(version, status, 'application/json', new TextEncoder().encode(JSON.stringify({ error: err.message })));
    },
  );
}
