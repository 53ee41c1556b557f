/**
 * Load for bench:vad, in its own process: `streams` WebSockets on /v1/audio/vad, each sending a recording in
 * `chunkMs` pieces and then {"type": "end"}, over and over for `seconds`. Paced (live): a piece every chunkMs, as a
 * microphone would; unpaced: as fast as the gateway takes them. Each piece asks for its probabilities, whose
 * arrival times the piece's latency.   node --import tsx bench/vad-load.ts '<plan JSON>'
 */
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';

type Plan = { url: string; model: string; streams: number; seconds: number; chunkMs: number; paced: boolean; wav: string };
const plan = JSON.parse(process.argv[2]) as Plan;
const wav = readFileSync(plan.wav);
const pcm = wav.subarray(wav.indexOf('data') + 8); // s16le at 16 kHz
const piece = (16000 * 2 * plan.chunkMs) / 1000;
const latencies: number[] = [];
let audioS = 0;
let failures = 0;
const until = performance.now() + plan.seconds * 1000;

/** One recording through one socket; its pieces' latencies (send to probabilities back). */
async function recording(offset: number): Promise<void> {
  const ws = new WebSocket(`${plan.url.replace('http', 'ws')}/v1/audio/vad?model=${plan.model}&probabilities=true`);
  await new Promise((r, j) => ws.once('open', r).once('error', j));
  const sent: number[] = [];
  let answered = 0;
  const done = new Promise<void>((resolve) => {
    ws.on('message', (d) => {
      const msg = JSON.parse(String(d)) as { type: string };
      if (msg.type === 'probabilities') latencies.push(performance.now() - sent[answered++]);
      else if (msg.type === 'error') failures++;
      else if (msg.type === 'done') resolve();
    });
    ws.once('close', () => resolve());
  });
  // Streams start at different places in the recording, so they are not in lockstep.
  const start = Math.floor((offset * pcm.byteLength) / piece) * piece;
  const pieces = Math.ceil(pcm.byteLength / piece);
  const t0 = performance.now();
  for (let i = 0; i < pieces; i++) {
    if (plan.paced) {
      const wait = t0 + i * plan.chunkMs - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    const at = (start + i * piece) % pcm.byteLength;
    sent.push(performance.now());
    ws.send(pcm.subarray(at, Math.min(at + piece, pcm.byteLength)));
  }
  ws.send(JSON.stringify({ type: 'end' }));
  await done;
  ws.close();
  audioS += pcm.byteLength / 32000;
}

const t0 = performance.now();
await Promise.all(
  Array.from({ length: plan.streams }, async (_, k) => {
    while (performance.now() < until) await recording(k / plan.streams).catch(() => failures++);
  }),
);
const elapsedS = (performance.now() - t0) / 1000;
latencies.sort((a, b) => a - b);
const q = (p: number) => Math.round((latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? Number.NaN) * 10) / 10;
process.stdout.write(JSON.stringify({ audioS, elapsedS, pieces: latencies.length, p50: q(0.5), p99: q(0.99), failures }));
