/**
 * The gateway-overhead baseline: a bare node:http server that parses the same KServe binary request
 * and runs the same ONNX Runtime session in its own process, with no batching, no queue, no replica hop.
 *   node --import tsx bench/bare-server.ts MODEL.onnx PORT THREADS
 */
import { createServer } from 'node:http';
import { openSession, runSession } from '../src/models/session.js';
import { viewBytes } from '../src/tensor/index.js';

const [path, port, threads] = process.argv.slice(2);
const { session } = await openSession(path, 'cpu', Number(threads));

createServer((req, res) => {
  if (req.method === 'GET') return res.end('{"ready":true}');
  const chunks: Buffer[] = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    const body = Buffer.concat(chunks);
    const n = Number(req.headers['inference-header-content-length']);
    const header = JSON.parse(body.subarray(0, n).toString());
    const input = header.inputs[0];
    const outputs = await runSession(session, {
      [input.name]: { dtype: input.datatype, shape: input.shape, data: viewBytes(input.datatype, body.subarray(n)) },
    });
    const [name, t] = Object.entries(outputs)[0];
    const bytes = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    const json = Buffer.from(JSON.stringify({ outputs: [{ name, datatype: t.dtype, shape: t.shape, parameters: { binary_data_size: bytes.byteLength } }] }));
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(json.byteLength) });
    res.end(Buffer.concat([json, bytes]));
  });
}).listen(Number(port), '127.0.0.1');
