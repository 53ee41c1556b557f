import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { infer, MODELS, startTestGateway } from './helpers.js';

describe('replica processes', () => {
  it('start side by side for gateways in one process with the same model names, and leave no socket behind', async () => {
    const config = { models: { mlp: { path: `${MODELS}mlp.onnx`, device: 'cpu', scaling: { min_containers: 1 } } } };
    // Each gateway's first replica is `mlp-1`: their sockets once had the same path, and one start removed
    // the other's socket before it was reached (ENOENT).
    const gateways = await Promise.all([startTestGateway(config), startTestGateway(config), startTestGateway(config)]);
    try {
      const x = [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: new Array(64).fill(0.2) }];
      for (const gw of gateways) expect((await infer(gw.url, 'mlp', x)).status).toBe(200);
      // Connected: the socket's name is gone, so a replica that dies leaves nothing in the temp directory.
      expect(readdirSync(tmpdir()).filter((f) => f.startsWith(`infergate-${process.pid}-`) && f.endsWith('.sock'))).toEqual([]);
    } finally {
      await Promise.all(gateways.map((gw) => gw.shutdown()));
    }
  });
});
