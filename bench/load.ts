/**
 * Runs autocannon programmatically in its own process (its CLI reads -i files as UTF-8, which corrupts
 * binary tensor bodies) and prints its JSON result.   node --import tsx bench/load.ts '<Load JSON>'
 */
import { readFileSync } from 'node:fs';
import autocannon from 'autocannon';
import type { Load } from './lib.js';

const load = JSON.parse(process.argv[2]) as Load;
const result = await autocannon({
  url: load.url,
  method: 'POST',
  connections: load.connections,
  duration: load.durationS,
  body: readFileSync(load.bodyFile),
  headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(load.headerLength), ...load.headers },
});
process.stdout.write(JSON.stringify(result));
