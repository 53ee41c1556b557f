import { request } from 'node:http';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { binaryBody, infer, MODELS, OCR_CLS, random, startTestGateway } from './helpers.js';

type Gw = Awaited<ReturnType<typeof startTestGateway>>;
let gw: Gw;

beforeAll(async () => {
  gw = await startTestGateway({
    server: { max_body_bytes: 1_000_000 },
    models: {
      mlp: { path: `${MODELS}mlp.onnx`, device: 'cpu', scaling: { min_containers: 1 }, batching: { max_batch_size: 16, wait_ms: 20 } },
      'mlp-fixed': { path: `${MODELS}mlp.onnx`, device: 'cpu', scaling: { min_containers: 1 }, batching: { max_batch_size: 8, wait_ms: 20, batch_sizes: [4] } },
      dtypes: { path: `${MODELS}dtypes.onnx`, device: 'cpu', scaling: { min_containers: 1 } },
      'ocr-direction': {
        path: OCR_CLS,
        labels: `${MODELS}ocr-direction.labels.txt`,
        device: 'cpu',
        scaling: { min_containers: 1 },
        warmup_shapes: { x: [1, 3, 48, 64] },
        batching: { max_batch_size: 4, wait_ms: 50, pad: { x: { axes: [3] } } }, // JSON bodies parse one by one: room to meet
      },
    },
  });
});
afterAll(() => gw?.shutdown());

/** The same model run directly in this process: the reference every gateway answer must equal. */
async function direct(path: string, name: string, data: Float32Array, shape: number[]) {
  const session = await ort.InferenceSession.create(path, { executionProviders: ['cpu'] });
  const out = await session.run({ [name]: new ort.Tensor('float32', data, shape) });
  await session.release();
  return out[session.outputNames[0]];
}

describe('KServe v2 metadata and health', () => {
  it('describes the server, its health and each model', async () => {
    expect(await (await fetch(`${gw.url}/v2`)).json()).toMatchObject({ name: 'infergate', extensions: expect.arrayContaining(['binary_tensor_data']) });
    expect((await fetch(`${gw.url}/v2/health/live`)).status).toBe(200);
    expect(await (await fetch(`${gw.url}/v2/health/ready`)).json()).toEqual({ ready: true });
    expect(await (await fetch(`${gw.url}/v2/models/mlp/ready`)).json()).toEqual({ name: 'mlp', ready: true });
    const meta = await (await fetch(`${gw.url}/v2/models/ocr-direction`)).json();
    expect(meta).toMatchObject({
      name: 'ocr-direction',
      platform: 'onnxruntime_onnx',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 3, -1, -1] }],
      outputs: [{ datatype: 'FP32', shape: [-1, 2] }],
      parameters: { batch_axis: 0, max_batch_size: 4 },
    });
  });
});

describe('Triton’s model configuration', () => {
  it('tells Triton’s clients the batch size, the tensors without the batch axis and the batching', async () => {
    const config = await (await fetch(`${gw.url}/v2/models/mlp-fixed/config`)).json();
    expect(config).toMatchObject({
      name: 'mlp-fixed',
      platform: 'onnxruntime_onnx',
      max_batch_size: 8,
      input: [{ name: 'x', data_type: 'TYPE_FP32', dims: [64] }],
      output: [{ name: 'probs', data_type: 'TYPE_FP32', dims: [10] }],
      dynamic_batching: { preferred_batch_size: [4, 8], max_queue_delay_microseconds: 20_000 },
      instance_group: [{ kind: 'KIND_CPU', count: 1 }],
    });
    expect((await (await fetch(`${gw.url}/v2/models/ocr-direction/config`)).json()).input).toEqual([{ name: 'x', data_type: 'TYPE_FP32', dims: [3, -1, -1] }]);
    expect((await fetch(`${gw.url}/v2/models/nope/config`)).status).toBe(404);
  });

  it('lists the repository with each model’s state (Triton’s repository index)', async () => {
    const index = await (await fetch(`${gw.url}/v2/repository/index`, { method: 'POST' })).json();
    expect(index).toEqual(
      expect.arrayContaining([
        { name: 'mlp', version: '1', state: 'READY' },
        { name: 'ocr-direction', version: '1', state: 'READY' },
      ]),
    );
    expect(index).toHaveLength(4);
    const ready = await (await fetch(`${gw.url}/v2/repository/index`, { method: 'POST', body: '{"ready": true}' })).json();
    expect(ready).toHaveLength(4);
    expect((await fetch(`${gw.url}/v2/repository/index`, { method: 'POST', body: '{nope' })).status).toBe(400);
  });
});

describe('inference through real replica processes', () => {
  it('returns the top classes instead of the values where an output asks for classification (Triton’s extension)', async () => {
    const x = random(2 * 64, 9);
    const ref = Array.from((await direct(`${MODELS}mlp.onnx`, 'x', Float32Array.from(x), [2, 64])).data as Float32Array);
    const res = await infer(gw.url, 'mlp', [{ name: 'x', shape: [2, 64], datatype: 'FP32', data: x }], {
      outputs: [{ name: 'probs', parameters: { classification: 3 } }],
    });
    expect(res.status).toBe(200);
    const top3 = (row: number[]) =>
      row
        .map((v, i) => [v, i])
        .sort((a, b) => b[0] - a[0])
        .slice(0, 3)
        .map(([v, i]) => `${v.toFixed(6)}:${i}`);
    expect(res.body.outputs?.[0]).toEqual({ name: 'probs', datatype: 'BYTES', shape: [2, 3], data: [...top3(ref.slice(0, 10)), ...top3(ref.slice(10))] });

    // Labelled (models.X.labels) and in the binary extension: BYTES elements, each a 4-byte length then the text.
    const { body, headers } = binaryBody(
      {
        inputs: [{ name: 'x', shape: [1, 3, 48, 64], datatype: 'FP32', parameters: { binary_data_size: 3 * 48 * 64 * 4 } }],
        outputs: [{ name: 'softmax_0.tmp_0', parameters: { classification: 5, binary_data: true } }],
      },
      Float32Array.from(random(3 * 48 * 64, 4)),
    );
    const bin = await fetch(`${gw.url}/v2/models/ocr-direction/infer`, { method: 'POST', body, headers });
    const bytes = Buffer.from(await bin.arrayBuffer());
    const headerLength = Number(bin.headers.get('inference-header-content-length'));
    const header = JSON.parse(bytes.subarray(0, headerLength).toString());
    expect(header.outputs[0]).toMatchObject({ datatype: 'BYTES', shape: [1, 2] }); // 5 asked, the model has 2 classes
    const strings: string[] = [];
    for (let at = headerLength; at < bytes.length; at += 4 + bytes.readUInt32LE(at))
      strings.push(bytes.subarray(at + 4, at + 4 + bytes.readUInt32LE(at)).toString());
    expect(strings.map((s) => s.split(':').slice(1))).toEqual(
      expect.arrayContaining([
        ['0', '0'],
        ['1', '180'],
      ]),
    );
    expect(Number(strings[0].split(':')[0])).toBeGreaterThanOrEqual(Number(strings[1].split(':')[0]));
  });

  it.each([0, -1, 2.5, 'three'])('refuses classification %s with a 400', async (classification) => {
    const res = await infer(gw.url, 'mlp', [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: random(64) }], {
      outputs: [{ name: 'probs', parameters: { classification } }],
    });
    expect(res.status).toBe(400);
    expect(res.body.error).toMatch(/classification/);
  });

  it('answers the MLP exactly as an in-process ONNX Runtime session does', async () => {
    const x = random(2 * 64, 7);
    const res = await infer(gw.url, 'mlp', [{ name: 'x', shape: [2, 64], datatype: 'FP32', data: x }]);
    expect(res.status).toBe(200);
    const ref = await direct(`${MODELS}mlp.onnx`, 'x', Float32Array.from(x), [2, 64]);
    expect(res.body.outputs?.[0]).toMatchObject({ name: 'probs', datatype: 'FP32', shape: [2, 10] });
    expect(res.body.outputs?.[0].data).toEqual(Array.from(ref.data as Float32Array));
  });

  it('classifies with the real PP-OCR direction model, over the binary extension both ways', async () => {
    const x = Float32Array.from(random(3 * 48 * 96, 3));
    const { body, headers } = binaryBody(
      {
        inputs: [{ name: 'x', shape: [1, 3, 48, 96], datatype: 'FP32', parameters: { binary_data_size: x.byteLength } }],
        parameters: { binary_data_output: true },
      },
      x,
    );
    const res = await fetch(`${gw.url}/v2/models/ocr-direction/infer`, { method: 'POST', body, headers });
    expect(res.status).toBe(200);
    const bytes = Buffer.from(await res.arrayBuffer());
    const headerLength = Number(res.headers.get('inference-header-content-length'));
    const header = JSON.parse(bytes.subarray(0, headerLength).toString());
    expect(header.outputs[0]).toMatchObject({ datatype: 'FP32', shape: [1, 2], parameters: { binary_data_size: 8 } });
    const probs = new Float32Array(bytes.buffer.slice(bytes.byteOffset + headerLength, bytes.byteOffset + headerLength + 8));
    const ref = await direct(OCR_CLS, 'x', x, [1, 3, 48, 96]);
    expect(Array.from(probs)).toEqual(Array.from(ref.data as Float32Array));
    expect(probs[0] + probs[1]).toBeCloseTo(1, 5);
  });

  it('carries every datatype through JSON and through binary data', async () => {
    const inputs = [
      { name: 'fp32', shape: [1, 4], datatype: 'FP32', data: [1.5, -2, 0, 3] },
      { name: 'fp16', shape: [1, 4], datatype: 'FP16', data: [0.5, -1, 2, 1024] },
      { name: 'i64', shape: [1, 4], datatype: 'INT64', data: [1, -2, 3, 2 ** 40] },
      { name: 'i32', shape: [1, 4], datatype: 'INT32', data: [1, -2, 3, -2147483648] },
      { name: 'u8', shape: [1, 4], datatype: 'UINT8', data: [0, 1, 100, 127] },
      { name: 'flag', shape: [1, 4], datatype: 'BOOL', data: [true, false, true, false] },
    ];
    const res = await infer(gw.url, 'dtypes', inputs);
    expect(res.status).toBe(200);
    const out = Object.fromEntries((res.body.outputs ?? []).map((o) => [o.name, o]));
    expect(out.fp32_out.data).toEqual([3, -4, 0, 6]);
    expect(out.fp16_out).toMatchObject({ datatype: 'FP16', data: [1, -2, 4, 2048] });
    expect(out.i64_out).toMatchObject({ datatype: 'INT64', data: [2, -4, 6, 2 ** 41] });
    expect(out.i32_out.data).toEqual([2, -4, 6, 0]); // int32 addition wraps, as in ONNX Runtime
    expect(out.u8_out.data).toEqual([0, 2, 200, 254]);
    expect(out.flag_out).toMatchObject({ datatype: 'BOOL', data: [false, true, false, true] });

    const i64 = BigInt64Array.from([5n, 6n, 7n, 8n]);
    const flag = Uint8Array.from([1, 1, 0, 0]);
    const { body, headers } = binaryBody(
      {
        inputs: inputs.map((t) =>
          t.name === 'i64'
            ? { ...t, data: undefined, parameters: { binary_data_size: 32 } }
            : t.name === 'flag'
              ? { ...t, data: undefined, parameters: { binary_data_size: 4 } }
              : t,
        ),
        outputs: [{ name: 'i64_out' }, { name: 'flag_out', parameters: { binary_data: true } }],
      },
      i64,
      flag,
    );
    // Binary inputs go in the order their JSON entries list them: i64 then flag.
    const res2 = await fetch(`${gw.url}/v2/models/dtypes/infer`, { method: 'POST', body, headers });
    expect(res2.status).toBe(200);
    const raw = Buffer.from(await res2.arrayBuffer());
    const n = Number(res2.headers.get('inference-header-content-length'));
    const header = JSON.parse(raw.subarray(0, n).toString());
    expect(header.outputs.map((o: { name: string }) => o.name)).toEqual(['i64_out', 'flag_out']);
    expect(header.outputs[0].data).toEqual([10, 12, 14, 16]);
    expect(Array.from(raw.subarray(n))).toEqual([0, 0, 1, 1]);
  });

  it('batches concurrent requests (x-batch-size > 1) and returns each caller its own rows', async () => {
    const xs = Array.from({ length: 24 }, (_, i) => random(64, i + 100));
    const answers = await Promise.all(xs.map((x) => infer(gw.url, 'mlp', [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: x }])));
    const sizes = answers.map((a) => Number(a.headers.get('x-batch-size')));
    expect(Math.max(...sizes)).toBeGreaterThan(1);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(16);
    expect(answers.every((a) => a.status === 200 && a.headers.get('x-queue-ms') !== null)).toBe(true);
    const ref = await direct(`${MODELS}mlp.onnx`, 'x', Float32Array.from(xs.flat()), [24, 64]);
    const expected = Array.from(ref.data as Float32Array);
    for (const [i, a] of answers.entries()) {
      const got = a.body.outputs?.[0].data ?? [];
      for (const [j, v] of expected.slice(i * 10, i * 10 + 10).entries()) expect(got[j]).toBeCloseTo(v, 6);
    }
  });

  it('pads batches to fixed sizes (batch_sizes) and still returns each caller exactly its own rows', async () => {
    const xs = Array.from({ length: 11 }, (_, i) => random(64, i + 300));
    const answers = await Promise.all(xs.map((x) => infer(gw.url, 'mlp-fixed', [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: x }])));
    const ref = await direct(`${MODELS}mlp.onnx`, 'x', Float32Array.from(xs.flat()), [11, 64]);
    const expected = Array.from(ref.data as Float32Array);
    for (const [i, a] of answers.entries()) {
      expect(a.status).toBe(200);
      expect(a.body.outputs?.[0].shape).toEqual([1, 10]);
      for (const [j, v] of expected.slice(i * 10, i * 10 + 10).entries()) expect(a.body.outputs?.[0].data[j]).toBeCloseTo(v, 6);
    }
    const stats = await (await fetch(`${gw.url}/v2/models/mlp-fixed/stats`)).json();
    expect(stats.rows).toBe(11);
    // 11 rows never fill 4s and 8s exactly: some batches were padded up to one of them.
    expect(stats.paddingRows).toBeGreaterThan(0);
    expect((stats.rows + stats.paddingRows) % 4).toBe(0);
  });

  it('pads text lines of different widths into one batch when the model entry allows it', async () => {
    const widths = [64, 80, 96];
    const answers = await Promise.all(
      widths.map((w) => infer(gw.url, 'ocr-direction', [{ name: 'x', shape: [1, 3, 48, w], datatype: 'FP32', data: random(3 * 48 * w, w) }])),
    );
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
    expect(answers.some((a) => Number(a.headers.get('x-batch-size')) > 1)).toBe(true);
    for (const a of answers) expect(a.body.outputs?.[0].shape).toEqual([1, 2]);
  });
});

describe('Triton’s statistics extension (what perf_analyzer reads)', () => {
  type Stat = { count: number; ns: number };
  type ModelStat = {
    name: string;
    version: string;
    last_inference: number;
    inference_count: number;
    execution_count: number;
    inference_stats: Record<'success' | 'fail' | 'queue' | 'compute_input' | 'compute_infer' | 'compute_output', Stat>;
    batch_stats: ({ batch_size: number } & Record<'compute_input' | 'compute_infer' | 'compute_output', Stat>)[];
  };
  const statsOf = async (path: string) => ((await (await fetch(`${gw.url}${path}`)).json()) as { model_stats: ModelStat[] }).model_stats;

  it('lists every model at /v2/models/stats, and one (any version path) at its own', async () => {
    expect((await statsOf('/v2/models/stats')).map((m) => m.name).sort()).toEqual(['dtypes', 'mlp', 'mlp-fixed', 'ocr-direction']);
    for (const path of ['/v2/models/mlp/stats', '/v2/models/mlp/versions/1/stats']) expect(await statsOf(path)).toMatchObject([{ name: 'mlp', version: '1' }]);
    expect(await (await fetch(`${gw.url}/v2`)).json()).toMatchObject({ extensions: expect.arrayContaining(['statistics']) });
  });

  it('counts inferences (rows), executions (batches), and each phase’s time, per request and per batch size', async () => {
    const [before] = await statsOf('/v2/models/mlp/stats');
    const started = Date.now();
    // Four requests at once, 5 rows: 1 to 4 batches, as the batcher groups them.
    const rows = [1, 1, 1, 2];
    const answers = await Promise.all(
      rows.map((n, i) => infer(gw.url, 'mlp', [{ name: 'x', shape: [n, 64], datatype: 'FP32', data: random(n * 64, i + 300) }])),
    );
    expect(answers.every((a) => a.status === 200)).toBe(true);
    const [after] = await statsOf('/v2/models/mlp/stats');
    const delta = (pick: (m: ModelStat) => number) => pick(after) - pick(before);
    expect(delta((m) => m.inference_count)).toBe(5);
    const executions = delta((m) => m.execution_count);
    expect(executions).toBeGreaterThanOrEqual(1);
    expect(executions).toBeLessThanOrEqual(4);
    for (const phase of ['success', 'queue', 'compute_input', 'compute_infer', 'compute_output'] as const)
      expect(
        delta((m) => m.inference_stats[phase].count),
        phase,
      ).toBe(4);
    expect(delta((m) => m.inference_stats.fail.count)).toBe(0);
    // Each request's time covers its queue wait and its batch's model run.
    const successNs = delta((m) => m.inference_stats.success.ns);
    expect(successNs).toBeGreaterThan(delta((m) => m.inference_stats.compute_infer.ns));
    expect(delta((m) => m.inference_stats.compute_infer.ns)).toBeGreaterThan(0);
    // Per batch size: as many executions as batches, as many rows as inferences.
    const bySize = (m: ModelStat) => m.batch_stats.map((b) => ({ size: b.batch_size, runs: b.compute_infer.count }));
    const runs = (m: ModelStat) => bySize(m).reduce((n, b) => n + b.runs, 0);
    const rowsRun = (m: ModelStat) => bySize(m).reduce((n, b) => n + b.size * b.runs, 0);
    expect(runs(after) - runs(before)).toBe(executions);
    expect(rowsRun(after) - rowsRun(before)).toBe(5);
    expect(after.last_inference).toBeGreaterThanOrEqual(started);
  });
});

describe('bad input gets a precise 4xx and changes nothing', () => {
  const good = () => infer(gw.url, 'mlp', [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: random(64) }]);
  const post = (body: BodyInit, headers: Record<string, string> = {}, model = 'mlp') =>
    fetch(`${gw.url}/v2/models/${model}/infer`, { method: 'POST', body, headers });
  const x = (over: object) => JSON.stringify({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: random(64), ...over }] });
  const f32 = new Float32Array(64);

  it.each([
    ['malformed JSON', () => post('{"inputs": ['), 400, /malformed JSON/],
    ['no inputs', () => post('{}'), 400, /"inputs" must be a non-empty array/],
    ['unknown input name', () => post(x({ name: 'y' })), 400, /unknown input "y"; the model takes x/],
    ['wrong datatype', () => post(x({ datatype: 'FP64' })), 400, /datatype FP64 but the model takes FP32/],
    ['shape not matching the model', () => post(x({ shape: [1, 63], data: random(63) })), 400, /shape \[1, 63\] does not match the model's \[N, 64\]/],
    ['shape not matching the data length', () => post(x({ shape: [2, 64] })), 400, /shape holds 128 elements but "data" has 64/],
    ['a string among numbers', () => post(x({ data: ['a', ...random(63)] })), 400, /data\[0\] = "a" is not a number/],
    ['more rows than max_batch_size', () => post(x({ shape: [17, 64], data: random(17 * 64) })), 400, /at most max_batch_size 16/],
    ['unknown output', () => post(JSON.stringify({ ...JSON.parse(x({})), outputs: [{ name: 'nope' }] })), 400, /unknown output "nope"/],
    [
      'binary size that lies',
      () => {
        const b = binaryBody({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', parameters: { binary_data_size: 100 } }] }, f32);
        return post(b.body, b.headers);
      },
      400,
      /binary_data_size is 100 but FP32 \[1, 64\] takes 256 bytes/,
    ],
    [
      'binary data shorter than declared',
      () => {
        const b = binaryBody({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', parameters: { binary_data_size: 256 } }] }, f32.subarray(0, 10));
        return post(b.body, b.headers);
      },
      400,
      /binary data ends after 40 of its 256 bytes/,
    ],
    [
      'extra binary bytes',
      () => {
        const b = binaryBody({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', parameters: { binary_data_size: 256 } }] }, f32, f32);
        return post(b.body, b.headers);
      },
      400,
      /256 bytes of binary data that no input claims/,
    ],
    ['header length past the body', () => post('{}', { 'inference-header-content-length': '999' }), 400, /only 2 bytes/],
    ['unknown model', () => post(x({}), {}, 'resnet'), 404, /unknown model "resnet"/],
    ['body over the limit', () => post(new Uint8Array(1_000_001).fill(32)), 413, /exceeds the limit of 1000000 bytes/],
  ] as const)('%s', async (_name, send, status, message) => {
    const res = await send();
    expect(res.status).toBe(status);
    expect((await res.json()).error).toMatch(message);
    expect((await good()).status).toBe(200);
  });

  it('refuses a chunked body over the limit while reading it, before the client has finished sending', async () => {
    const { port } = new URL(gw.url);
    const status = await new Promise<number>((resolve, reject) => {
      const req = request({ port, method: 'POST', path: '/v2/models/mlp/infer', headers: { 'transfer-encoding': 'chunked' } }, (res) => {
        resolve(res.statusCode ?? 0);
        res.resume();
        req.destroy();
      });
      req.on('error', (err) => (err.message.includes('EPIPE') || err.message.includes('ECONNRESET') ? undefined : reject(err)));
      // 1.5 MB in 64 KB chunks, and never end(): only a limit enforced while reading can answer.
      for (let i = 0; i < 24; i++) req.write(Buffer.alloc(64 * 1024, 32));
    });
    expect(status).toBe(413);
    expect((await good()).status).toBe(200);
  });
});

describe("KServe's v1 protocol (POST /v1/models/{m}:predict)", () => {
  const predict = (target: string, body: unknown) => fetch(`${gw.url}/v1/models/${target}`, { method: 'POST', body: JSON.stringify(body) });

  it('answers a prediction per instance: the rows v2 infer answers for the same batch', async () => {
    const rows = [random(64, 1), random(64, 2)].map((r) => Array.from(r, (x) => Math.fround(x)));
    const res = await predict('mlp:predict', { instances: rows });
    expect(res.status).toBe(200);
    const { predictions } = await res.json();
    const v2 = await infer(gw.url, 'mlp', [{ name: 'x', shape: [2, 64], datatype: 'FP32', data: rows.flat() }]);
    const flat = v2.body.outputs?.[0].data as number[];
    expect(predictions).toEqual([flat.slice(0, 10), flat.slice(10, 20)]);
    expect((await fetch(`${gw.url}/v1/models/mlp`)).status).toBe(200); // v1 model status
    expect(await (await fetch(`${gw.url}/v1/models/mlp`)).json()).toEqual({ name: 'mlp', ready: true });
  });

  it('takes an object per instance for a model of several inputs, and answers an object per prediction', async () => {
    const instance = {
      fp32: [1.5, -2, 0, 3],
      fp16: [0.5, -1, 2, 1024],
      i64: [1, -2, 3, 4],
      i32: [1, -2, 3, 4],
      u8: [0, 1, 100, 127],
      flag: [true, false, true, false],
    };
    const { predictions } = await (await predict('dtypes:predict', { instances: [instance, instance] })).json();
    expect(predictions).toHaveLength(2);
    expect(predictions[1]).toMatchObject({
      fp32_out: [3, -4, 0, 6],
      fp16_out: [1, -2, 4, 2048],
      u8_out: [0, 2, 200, 254],
      flag_out: [false, true, false, true],
    });
  });

  it.each([
    ['mlp:predict', { rows: [] }, 400, /"instances"/],
    ['mlp:predict', { instances: [[1, 2, 3]] }, 400, /input x/],
    ['mlp:predict', { instances: [new Array(64).fill(0), new Array(63).fill(0)] }, 400, /instances must be alike/],
    ['mlp:explain', { instances: [[1]] }, 400, /only :predict/],
    ['dtypes:predict', { instances: [[1, 2, 3, 4]] }, 400, /must be an object of fp32, fp16/],
    ['nope:predict', { instances: [[1]] }, 404, /unknown model/],
    ['mlp:predict', { instances: [{ x: new Array(64).fill(0), extra: [1] }] }, 400, /instances\[0\] has unknown input "extra"; the model takes x/],
  ])('refuses %s %j with %i and a KServe {"error"}', async (target, body, status, message) => {
    const res = await predict(target, body);
    expect(res.status).toBe(status);
    expect((await res.json()).error).toMatch(message);
  });
});

describe('compressed request bodies (Content-Encoding, as Triton clients send with request_compression_algorithm)', () => {
  const x = Array.from({ length: 64 }, (_, i) => Math.cos(i));
  const json = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: x }] }));
  const post = (body: Uint8Array, headers: Record<string, string>) =>
    fetch(`${gw.url}/v2/models/mlp/infer`, { method: 'POST', body: new Uint8Array(body), headers: { 'content-type': 'application/json', ...headers } });

  it('are inflated (gzip, deflate, br): the same answer as the body sent plain, binary tensors included', async () => {
    const plain = await (await post(json, {})).json();
    for (const [encoding, squeeze] of [
      ['gzip', gzipSync],
      ['deflate', deflateSync],
      ['br', brotliCompressSync],
    ] as const) {
      const res = await post(squeeze(json), { 'content-encoding': encoding });
      expect(res.status).toBe(200);
      expect((await res.json()).outputs).toEqual(plain.outputs);
    }
    // Binary extension: Inference-Header-Content-Length is the inflated header's.
    const { body, headers } = binaryBody(
      { inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', parameters: { binary_data_size: 256 } }] },
      Float32Array.from(x),
    );
    const res = await post(gzipSync(body), { ...headers, 'content-encoding': 'gzip' });
    expect(res.status).toBe(200);
    expect((await res.json()).outputs[0].data).toEqual(plain.outputs[0].data);
  });

  it('are refused with a precise 4xx when they cannot be inflated, or inflate past the body limit', async () => {
    const corrupt = await post(gzipSync(json).subarray(0, 20), { 'content-encoding': 'gzip' });
    expect(corrupt.status).toBe(400);
    expect((await corrupt.json()).error).toMatch(/the body is not valid gzip/);
    const unknown = await post(json, { 'content-encoding': 'zstd' });
    expect(unknown.status).toBe(415);
    expect((await unknown.json()).error).toMatch(/Content-Encoding "zstd" is not supported: send gzip, deflate, br or none/);
    const bomb = gzipSync(Buffer.alloc(8 * 2 ** 20)); // ~8 KB that inflates past this gateway's 1 MB limit
    const big = await post(bomb, { 'content-encoding': 'gzip' });
    expect(big.status).toBe(413);
    expect((await big.json()).error).toMatch(/inflates past the limit of 1000000 bytes/);
    expect((await post(json, {})).status).toBe(200); // and serves on
  });
});
