/**
 * A closed-loop load in phases (1 client, then 32, then 1 ...), each client sending its next request as
 * soon as the last is answered. Runs in its own process; prints [sentAtMs, latencyMs, status] per request.
 *   node --import tsx bench/step-load.ts '{"url": "...", "body": "...", "phases": [{"clients": 1, "seconds": 10}]}'
 */
import { Agent, request } from 'node:http';

type Plan = { url: string; body: string; phases: { clients: number; seconds: number }[] };
const plan = JSON.parse(process.argv[2]) as Plan;
const agent = new Agent({ keepAlive: true, maxSockets: 1024 });
const url = new URL(plan.url);
const body = Buffer.from(plan.body);
const t0 = performance.now();
const samples: [number, number, number][] = [];

function once(): Promise<void> {
  const sent = performance.now();
  return new Promise((resolve) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': body.length },
      },
      (res) => {
        res.resume();
        res.on('end', () => {
          samples.push([Math.round(sent - t0), Math.round((performance.now() - sent) * 10) / 10, res.statusCode ?? 0]);
          resolve();
        });
      },
    );
    req.on('error', () => {
      samples.push([Math.round(sent - t0), Math.round((performance.now() - sent) * 10) / 10, 0]);
      resolve();
    });
    req.end(body);
  });
}

for (const phase of plan.phases) {
  const end = performance.now() + phase.seconds * 1000;
  await Promise.all(
    Array.from({ length: phase.clients }, async () => {
      while (performance.now() < end) await once();
    }),
  );
}
agent.destroy();
process.stdout.write(JSON.stringify(samples));
