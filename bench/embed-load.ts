/**
 * Load for bench:embeddings, in its own process: `connections` clients each POST one text at a time to
 * /v1/embeddings, the text drawn at random from `texts`.   node --import tsx bench/embed-load.ts '<plan JSON>'
 */
import autocannon from 'autocannon';

type Plan = { url: string; model: string; connections: number; seconds: number; texts: string[] };
const plan = JSON.parse(process.argv[2]) as Plan;
let seed = 1;
const pick = () => {
  seed = (seed * 1103515245 + 12345) % 2 ** 31;
  return plan.texts[seed % plan.texts.length];
};
const result = await autocannon({
  url: `${plan.url}/v1/embeddings`,
  connections: plan.connections,
  duration: plan.seconds,
  requests: [
    {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      setupRequest: (req) => ({ ...req, body: JSON.stringify({ model: plan.model, input: pick() }) }),
    },
  ],
});
process.stdout.write(
  JSON.stringify({ requests: result.requests.total, non2xx: result.non2xx, errors: result.errors, latency: result.latency, elapsedS: result.duration }),
);
