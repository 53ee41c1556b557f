/**
 * Closed-loop streaming load: N clients each open an OpenAI completion stream (SSE), read it to the end,
 * and open the next, for a fixed time. Runs in its own process; prints per-stream timings as JSON:
 * [startMs, ttftMs, completionTokens, interTokenGapsMs[]].
 *   node --import tsx bench/stream-load.ts '{"url": "...", "models": ["..."], "clients": 8, "seconds": 10, "maxTokens": 64}'
 * Client i names models[i % n] (a model, or LoRA adapters of one).
 */
import { Agent, request } from 'node:http';
import { createParser } from 'eventsource-parser';

/** `repeat`: every client sends the same request again and again (its prompt, its seed): what repeats across requests. */
type Plan = { url: string; models: string[]; clients: number; seconds: number; maxTokens: number; temperature?: number; prompt?: string; repeat?: boolean };
const plan = JSON.parse(process.argv[2]) as Plan;
const agent = new Agent({ keepAlive: true, maxSockets: 1024 });
const url = new URL(plan.url);
const t0 = performance.now();
const streams: [number, number, number, number[]][] = [];
let seed = 0;

function stream(client: number): Promise<void> {
  seed++;
  // A prompt of its own per stream (alike prompts are prefilled once), every completion max_tokens long.
  const tag = plan.repeat ? client : seed;
  const body = JSON.stringify({
    model: plan.models[client % plan.models.length],
    prompt: plan.prompt ? `${plan.prompt} ${tag}` : `Client ${tag}: the gateway streams tokens to many clients at once, and each of them`,
    max_tokens: plan.maxTokens,
    ignore_eos: true,
    temperature: plan.temperature ?? 1,
    seed: tag,
    stream: true,
    stream_options: { include_usage: true },
  });
  const start = performance.now();
  return new Promise((resolve) => {
    const arrivals: number[] = [];
    let tokens = 0;
    const parser = createParser({
      onEvent: (e) => {
        if (e.data === '[DONE]') return;
        const chunk = JSON.parse(e.data);
        if (chunk.usage) tokens = chunk.usage.completion_tokens;
        else if (chunk.choices?.[0]?.text) arrivals.push(performance.now());
      },
    });
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path: '/v1/completions',
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        res.setEncoding('utf8');
        res.on('data', (d: string) => parser.feed(d));
        res.on('end', () => {
          const gaps = arrivals.slice(1).map((t, i) => Math.round((t - arrivals[i]) * 100) / 100);
          streams.push([Math.round(start - t0), arrivals.length ? Math.round((arrivals[0] - start) * 100) / 100 : -1, tokens, gaps]);
          resolve();
        });
      },
    );
    req.on('error', () => resolve());
    req.end(body);
  });
}

const end = t0 + plan.seconds * 1000;
await Promise.all(
  Array.from({ length: plan.clients }, async (_, client) => {
    while (performance.now() < end) await stream(client);
  }),
);
const elapsedS = (performance.now() - t0) / 1000;
agent.destroy();
process.stdout.write(JSON.stringify({ elapsedS, streams }));
