import { describe, expect, it } from 'vitest';
import { encodeFrame, FrameReader } from './protocol.js';

describe('replica frames', () => {
  const tensors = {
    x: { dtype: 'FP32' as const, shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6.5]) },
    ids: { dtype: 'INT64' as const, shape: [2], data: BigInt64Array.from([7n, -9n]) },
    flag: { dtype: 'BOOL' as const, shape: [1], data: Uint8Array.from([1]) },
  };

  it('round-trips header and tensors however the stream is split', async () => {
    const wire = Buffer.concat(encodeFrame({ id: 42, op: 'infer' }, tensors));
    for (const size of [1, 3, 7, wire.length]) {
      const reader = new FrameReader();
      const frames = [];
      for (let i = 0; i < wire.length; i += size) frames.push(...reader.push(wire.subarray(i, i + size)));
      expect(frames).toHaveLength(1);
      expect(frames[0].header).toMatchObject({ id: 42, op: 'infer' });
      const got = await frames[0].tensors;
      expect(Array.from(got.x.data as Float32Array)).toEqual([1, 2, 3, 4, 5, 6.5]);
      expect(got.x.shape).toEqual([2, 3]);
      expect(Array.from(got.ids.data as BigInt64Array)).toEqual([7n, -9n]);
      expect(got.flag).toMatchObject({ dtype: 'BOOL', shape: [1] });
    }
  });

  it('sends raw bytes, not JSON numbers', () => {
    const [, json, ...bodies] = encodeFrame({ id: 1, op: 'infer' }, tensors);
    expect(json.toString()).not.toContain('6.5');
    expect(bodies.map((b) => b.byteLength)).toEqual([24, 16, 1]);
  });

  it('reads several frames from one chunk', () => {
    const wire = Buffer.concat([...encodeFrame({ id: 1, op: 'a' }), ...encodeFrame({ id: 2, op: 'b' }, tensors)]);
    const frames = new FrameReader().push(wire);
    expect(frames.map((f) => f.header.id)).toEqual([1, 2]);
  });

  it('refuses a corrupt length instead of buffering forever', () => {
    const bad = Buffer.alloc(8);
    bad.writeUInt32LE(0xffffffff, 0);
    expect(() => new FrameReader().push(bad)).toThrow(/exceeds/);
  });
});
