/**
 * gRPC load in its own process (as autocannon is for HTTP): `connections` calls kept in flight on one channel each,
 * ModelInfer of a [1, n] FP32 tensor as raw contents, for `durationS`. Prints { requests, requestsPerS, p50Ms, p99Ms, errors }.
 *   node --import tsx bench/grpc-load.ts '{"target":"127.0.0.1:8001","model":"identity","elements":1024,"connections":32,"durationS":5}'
 */
import * as grpc from '@grpc/grpc-js';
import { loadService } from '../src/gateway/grpc/proto.js';

const o = JSON.parse(process.argv[2]) as { target: string; model: string; elements: number; connections: number; durationS: number };
const Service = loadService('inference.proto', 'inference.GRPCInferenceService');
const raw = Buffer.from(new Float32Array(o.elements).map((_, i) => Math.sin(i)).buffer);
const request = { model_name: o.model, inputs: [{ name: 'x', datatype: 'FP32', shape: [1, o.elements] }], raw_input_contents: [raw] };
type Infer = (r: object, cb: (err: Error | null) => void) => void;

const latencies: number[] = [];
let errors = 0;
const end = performance.now() + o.durationS * 1000;
await Promise.all(
  Array.from({ length: o.connections }, async (_, i) => {
    // A channel per connection, as autocannon opens a socket per connection.
    const client = new Service(o.target, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1, 'grpc.channel_id': i });
    const infer = (client as unknown as { ModelInfer: Infer }).ModelInfer.bind(client);
    while (performance.now() < end) {
      const t = performance.now();
      await new Promise<void>((resolve) =>
        infer(request, (err) => {
          if (err) errors++;
          else latencies.push(performance.now() - t);
          resolve();
        }),
      );
    }
    client.close();
  }),
);
latencies.sort((a, b) => a - b);
const at = (q: number) => Math.round(latencies[Math.floor(q * (latencies.length - 1))] * 100) / 100;
process.stdout.write(JSON.stringify({ requests: latencies.length, requestsPerS: latencies.length / o.durationS, p50Ms: at(0.5), p99Ms: at(0.99), errors }));
