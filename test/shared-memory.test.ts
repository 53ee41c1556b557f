import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { infer, MODELS, random, startTestGateway } from './helpers.js';

/**
 * Triton's system shared-memory extension against real POSIX shared-memory objects in /dev/shm (what a
 * Triton client's shm_open creates), a real gateway and a real replica.
 */
const hasShm = existsSync('/dev/shm');
const key = (what: string) => `infergate-test-${process.pid}-${what}`;
const ROWS = 3;
const xs = Array.from({ length: ROWS }, (_, i) => random(64, i + 500));

type Gw = Awaited<ReturnType<typeof startTestGateway>>;
let on: Gw;
let off: Gw;
const post = (gw: Gw, path: string, body?: object) =>
  fetch(`${gw.url}${path}`, { method: 'POST', body: body && JSON.stringify(body), headers: { 'content-type': 'application/json' } });
const shmInput = (region: string, offset: number, rows = 1) => ({
  name: 'x',
  shape: [rows, 64],
  datatype: 'FP32',
  parameters: { shared_memory_region: region, shared_memory_offset: offset, shared_memory_byte_size: rows * 64 * 4 },
});

beforeAll(async () => {
  if (!hasShm) return;
  writeFileSync(`/dev/shm/${key('in')}`, Buffer.from(Float32Array.from(xs.flat()).buffer));
  writeFileSync(`/dev/shm/${key('out')}`, Buffer.alloc(ROWS * 10 * 4));
  const models = { mlp: { path: `${MODELS}mlp.onnx`, device: 'cpu', scaling: { min_containers: 1 }, batching: { max_batch_size: 8, wait_ms: 100 } } };
  [on, off] = await Promise.all([startTestGateway({ server: { client_shared_memory: true }, models }), startTestGateway({ models })]);
});
afterAll(async () => {
  await Promise.all([on?.shutdown(), off?.shutdown()]);
  for (const what of ['in', 'out']) rmSync(`/dev/shm/${key(what)}`, { force: true });
});

describe.skipIf(!hasShm)('client shared memory (Triton system shared-memory extension)', () => {
  it('is off unless configured', async () => {
    expect((await (await fetch(`${off.url}/v2`)).json()).extensions).not.toContain('system_shared_memory');
    const res = await post(off, '/v2/systemsharedmemory/region/in/register', { key: `/${key('in')}`, offset: 0, byte_size: 16 });
    expect(res.status).toBe(403);
    const answer = await infer(off.url, 'mlp', [shmInput('in', 0) as never]);
    expect(answer.status).toBe(400);
    expect(answer.body.error).toMatch(/client shared memory is off/);
  });

  it('reads inputs from a region and writes outputs into one, batched with other callers, each its own rows', async () => {
    expect((await (await fetch(`${on.url}/v2`)).json()).extensions).toContain('system_shared_memory');
    expect((await post(on, '/v2/systemsharedmemory/region/in/register', { key: `/${key('in')}`, offset: 0, byte_size: ROWS * 256 })).status).toBe(200);
    expect((await post(on, '/v2/systemsharedmemory/region/out/register', { key: `/${key('out')}`, byte_size: ROWS * 40 })).status).toBe(200);
    expect(await (await fetch(`${on.url}/v2/systemsharedmemory/status`)).json()).toEqual([
      { name: 'in', key: `/${key('in')}`, offset: 0, byte_size: ROWS * 256 },
      { name: 'out', key: `/${key('out')}`, offset: 0, byte_size: ROWS * 40 },
    ]);

    // Each caller its own row of the input region, its own slot of the output region.
    const answers = await Promise.all(
      xs.map((_, i) =>
        infer(on.url, 'mlp', [shmInput('in', i * 256) as never], {
          outputs: [{ name: 'probs', parameters: { shared_memory_region: 'out', shared_memory_offset: i * 40, shared_memory_byte_size: 40 } }],
        }),
      ),
    );
    const reference = await Promise.all(xs.map((x) => infer(on.url, 'mlp', [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: x }])));
    expect(answers.some((a) => Number(a.headers.get('x-batch-size')) > 1)).toBe(true);
    const file = readFileSync(`/dev/shm/${key('out')}`);
    const written = new Float32Array(file.buffer.slice(file.byteOffset, file.byteOffset + file.byteLength));
    for (const [i, a] of answers.entries()) {
      expect(a.status).toBe(200);
      const out = (a.body.outputs?.[0] ?? {}) as { data?: unknown; parameters?: object };
      expect(out.data).toBeUndefined();
      expect(out.parameters).toEqual({ shared_memory_region: 'out', shared_memory_byte_size: 40 });
      const expected = reference[i].body.outputs?.[0].data ?? [];
      for (const [j, v] of expected.entries()) expect(written[i * 10 + j]).toBeCloseTo(v, 6);
    }
  });

  it.each([
    ['an unknown region', [shmInput('nope', 0)], {}, /no shared-memory region "nope"/],
    ['bytes past the region', [shmInput('in', 2 * 256, 2)], {}, /does not fit/],
    ['a byte size that lies', [{ ...shmInput('in', 0), parameters: { shared_memory_region: 'in', shared_memory_byte_size: 12 } }], {}, /takes 256 bytes/],
    ['a region without a size', [{ ...shmInput('in', 0), parameters: { shared_memory_region: 'in' } }], {}, /shared_memory_byte_size must be/],
    [
      'an output region too small',
      [shmInput('in', 0)],
      { outputs: [{ name: 'probs', parameters: { shared_memory_region: 'out', shared_memory_offset: 100, shared_memory_byte_size: 40 } }] },
      /does not fit/,
    ],
  ])('refuses %s with a 400', async (_, inputs, extra, message) => {
    const a = await infer(on.url, 'mlp', inputs as never, extra);
    expect(a.status).toBe(400);
    expect(a.body.error).toMatch(message);
  });

  it('refuses registrations that cannot work, and forgets regions on unregister', async () => {
    const bad = [
      [{ key: '/../etc/passwd', byte_size: 4 }, /must name a POSIX shared-memory object/],
      [{ key: `/${key('missing')}`, byte_size: 4 }, /cannot open shared-memory object/],
      [{ key: `/${key('in')}`, offset: 8, byte_size: ROWS * 256 }, /past the end/],
      [{ key: `/${key('in')}`, byte_size: 0 }, /byte_size/],
    ] as const;
    for (const [body, message] of bad) {
      const res = await post(on, '/v2/systemsharedmemory/region/other/register', body);
      expect(res.status).toBe(400);
      expect((await res.json()).error).toMatch(message);
    }
    expect((await post(on, '/v2/systemsharedmemory/region/in/register', { key: `/${key('in')}`, byte_size: 4 })).status).toBe(409); // taken (gRPC's ALREADY_EXISTS)
    // Each region holds a descriptor: there is a bound.
    const many = await Promise.all(
      Array.from({ length: 256 }, (_, i) => post(on, `/v2/systemsharedmemory/region/r${i}/register`, { key: `/${key('in')}`, byte_size: 4 })),
    );
    const refused = many.filter((r) => r.status === 400);
    expect(refused).toHaveLength(2); // 'in' and 'out' count too
    expect((await refused[0].json()).error).toMatch(/at most 256/);
    expect((await post(on, '/v2/systemsharedmemory/region/in/unregister')).status).toBe(200);
    expect((await fetch(`${on.url}/v2/systemsharedmemory/region/in/status`)).status).toBe(404);
    // Unregistering one not registered is nothing to do, as Triton's (tritonclient's cleanup does it; it was a 404).
    expect((await post(on, '/v2/systemsharedmemory/region/in/unregister')).status).toBe(200);
    expect((await post(on, '/v2/systemsharedmemory/unregister')).status).toBe(200);
    expect(await (await fetch(`${on.url}/v2/systemsharedmemory/status`)).json()).toEqual([]);
    expect((await infer(on.url, 'mlp', [shmInput('in', 0) as never])).status).toBe(400);
  });
});
