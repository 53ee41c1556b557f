import type { Context } from 'hono';
import { type SSEStreamingApi, streamSSE } from 'hono/streaming';
import type { GatewayEnv } from '../types.js';

/**
 * A generation's Server-Sent Events (every token-streaming route's). Opened once `started` settles — its first
 * token came, so an error before it still answers with its status code — or, where none has come within
 * server.sse_keepalive_s (a long queue, a cold start), opened anyway, its error then coming in the stream as a
 * later one would. While open, a comment line (`: keep-alive`, which SSE clients skip) every that many seconds:
 * proxies end a response idle for their timeout (ALB and nginx 60 s, Cloudflare 100 s), and a stream waiting for
 * its first token, or for a slow one, is idle to them. TGI (axum's keep-alive) sends the same comment.
 */
export async function tokenStream(c: Context<GatewayEnv>, started: Promise<unknown>, events: (stream: SSEStreamingApi) => Promise<void>): Promise<Response> {
  const ms = c.get('sseKeepAliveMs') ?? 0;
  if (ms > 0) {
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
    started.catch(() => {}); // (if the wait wins, the error comes in the stream: `events` meets it)
    await Promise.race([started, waited]).finally(() => clearTimeout(timer));
  } else await started;
  return streamSSE(c, async (stream) => {
    const beat = ms > 0 ? setInterval(() => void stream.write(': keep-alive\n\n'), ms) : undefined;
    try {
      await events(stream);
    } finally {
      clearInterval(beat);
    }
  });
}
