import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync, type Options } from '@grpc/proto-loader';

/**
 * A gRPC service from its .proto file beside this module (`npm run build` copies them into dist/), as the
 * server and its clients (tests, benchmarks) load it: field names as written, 64-bit integers as strings.
 */
export function loadService(file: 'inference.proto' | 'health.proto', name: string, options: Options = {}): grpc.ServiceClientConstructor {
  const definition = loadSync(fileURLToPath(new URL(`./${file}`, import.meta.url)), {
    keepCase: true,
    longs: String,
    oneofs: true,
    defaults: true,
    ...options,
  });
  let found: unknown = grpc.loadPackageDefinition(definition);
  for (const part of name.split('.')) found = (found as grpc.GrpcObject)[part];
  return found as grpc.ServiceClientConstructor;
}
