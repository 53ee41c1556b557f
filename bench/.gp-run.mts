import { autocannon, binaryRequest } from './lib.js';
const body = binaryRequest('x', [8, 224, 224, 3], 'UINT8');
const url = 'http://127.0.0.1:18799/v2/models/pixels/infer';
await autocannon({ ...body, url, connections: 16, durationS: 2 });
const r = await autocannon({ ...body, url, connections: 16, durationS: Number(process.argv[2] ?? 8) });
console.log(JSON.stringify({ imgPerS: Math.round(r.requestsPerS * 8), ...r }));
