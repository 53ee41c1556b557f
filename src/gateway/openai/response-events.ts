import type { SSEStreamingApi } from 'hono/streaming';
import type { Answer } from '../calls.js';

/**
 * A streamed background response's events (OpenAI's background mode with `stream: true`), kept as they come so
 * that its stream outlives the connection that asked for it: the creating request follows them from the first, and
 * a client whose connection dropped picks them up again after the last one it had (GET /v1/responses/{id}?stream=
 * true&starting_after=N). Each event is kept as its SSE text, at its index, its sequence_number.
 */
export class ResponseEvents {
  private readonly events: string[] = [];
  private ended = false;
  private wake: (() => void)[] = [];
  /** The bytes the events hold (counted against server.async_max_mb with the call's answer). */
  bytes = 0;

  /**
   * Reads the response's stream to its end, keeping each event; answers what a retrieval answers once it is over:
   * the final response object, or the stream's error (its status is a failure's, whatever the stream's was).
   * A response stopped (cancelled, deleted) ends its stream: its events end there, for whoever follows them.
   */
  async read(res: Response): Promise<Answer> {
    const json = (status: number, value: object): Answer => ({
      status,
      headers: [['content-type', 'application/json']],
      body: new TextEncoder().encode(JSON.stringify(value)),
      heldBytes: this.bytes,
    });
    // Not a stream: refused before its first event (a full queue, a failed start) — the request's own answer, as is.
    if (!res.ok || !res.body) return { ...json(res.status, {}), body: new Uint8Array(await res.arrayBuffer()) };
    let last: { type?: string; response?: object; code?: string; message?: string } = {};
    let pending = '';
    const decoder = new TextDecoder();
    try {
      for await (const chunk of res.body) {
        pending += decoder.decode(chunk, { stream: true });
        let end = pending.indexOf('\n\n');
        for (; end >= 0; end = pending.indexOf('\n\n')) {
          const event = pending.slice(0, end);
          pending = pending.slice(end + 2);
          const data = event.split('\n').find((line) => line.startsWith('data:'));
          if (!data) continue; // (a keep-alive comment)
          last = JSON.parse(data.slice('data:'.length));
          this.events.push(event);
          this.bytes += event.length;
          this.notify();
        }
      }
    } catch {
      // (stopped: cancelled, or its request failed mid-stream; what came is kept, and said below)
    } finally {
      this.ended = true;
      this.notify();
    }
    if (last.type === 'response.completed' || last.type === 'response.incomplete') return json(200, last.response as object);
    if (last.type === 'error') return json(500, { error: { code: last.code, message: last.message } });
    return json(500, { error: { code: 'server_error', message: 'the response stopped before its end' } });
  }

  /**
   * Writes the events after sequence number `after` (all: -1), then each as it comes, until the last or the client
   * goes. Each carries its sequence number as its SSE `id`, so that a browser's EventSource reconnecting sends it
   * back as Last-Event-ID.
   */
  async follow(stream: SSEStreamingApi, after: number): Promise<void> {
    let gone = false;
    stream.onAbort(() => {
      gone = true;
      this.notify();
    });
    for (let next = after + 1; !gone; ) {
      for (; next < this.events.length && !gone; next++) await stream.write(`id: ${next}\n${this.events[next]}\n\n`);
      if (this.ended && next >= this.events.length) return;
      await new Promise<void>((resolve) => this.wake.push(resolve));
    }
  }

  private notify(): void {
    const waiting = this.wake;
    this.wake = [];
    for (const resolve of waiting) resolve();
  }
}
