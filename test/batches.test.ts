import { existsSync } from 'node:fs';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODELS, startTestGateway, testIssuer } from './helpers.js';

// OpenAI's Batch API with the official client: files up, a batch run in the background, its answers down.
const SECRET = 'a-long-enough-shared-secret';
let gw: Awaited<ReturnType<typeof startTestGateway>>;
let client: OpenAI;
beforeAll(async () => {
  gw = await startTestGateway({
    auth: {
      default: 'key',
      keys: [
        { id: 'jobs', secret: SECRET },
        { id: 'other', secret: SECRET },
      ],
    },
    models: {
      'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', batching: { max_batch_size: 16 }, scaling: { min_containers: 1 } },
      'tiny-embed': { path: `${MODELS}tiny-embed.onnx`, device: 'cpu', scaling: { min_containers: 1 } },
      // One text per run, so that the order of the queue shows.
      'embed-one': { path: `${MODELS}tiny-embed.onnx`, device: 'cpu', batching: { max_batch_size: 1, wait_ms: 0 }, scaling: { min_containers: 1 } },
    },
  });
  client = new OpenAI({
    baseURL: `${gw.url}/v1`,
    apiKey: 'unused',
    maxRetries: 0,
    defaultHeaders: { 'infergate-key': 'jobs', 'infergate-secret': SECRET },
  });
});
afterAll(() => gw?.shutdown());

const jsonl = (rows: object[]) => toFile(Buffer.from(rows.map((r) => `${JSON.stringify(r)}\n`).join('')), 'requests.jsonl');
async function finished(id: string) {
  for (;;) {
    const b = await client.batches.retrieve(id);
    if (['completed', 'failed', 'cancelled'].includes(b.status)) return b;
    await new Promise((r) => setTimeout(r, 50));
  }
}
const lines = async (fileId: string | null | undefined) =>
  (await (await client.files.content(fileId as string)).text())
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));

describe('Batch API (/v1/files, /v1/batches)', () => {
  it('runs every line as the same request sent directly would be answered, and returns them as a file', async () => {
    const prompts = ['Once upon a time', 'The fox', 'In a land far away', 'Hello'];
    const rows = prompts.map((p, i) => ({
      custom_id: `req-${i}`,
      method: 'POST',
      url: '/v1/chat/completions',
      body: { model: 'tiny-gpt', messages: [{ role: 'user', content: p }], max_tokens: 6, temperature: 0 },
    }));
    const input = await client.files.create({ file: await jsonl(rows), purpose: 'batch' });
    expect(input).toMatchObject({ object: 'file', purpose: 'batch', filename: 'requests.jsonl' });
    const batch = await client.batches.create({ input_file_id: input.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    expect(batch.status).toBe('in_progress');
    const done = await finished(batch.id);
    expect(done).toMatchObject({ status: 'completed', request_counts: { total: 4, completed: 4, failed: 0 }, error_file_id: null });
    const out = await lines(done.output_file_id);
    expect(out.map((l) => l.custom_id).sort()).toEqual(['req-0', 'req-1', 'req-2', 'req-3']);
    for (const line of out) {
      const i = Number(line.custom_id.split('-')[1]);
      const direct = await client.chat.completions.create({
        model: 'tiny-gpt',
        messages: [{ role: 'user', content: prompts[i] }],
        max_tokens: 6,
        temperature: 0,
      });
      expect(line.response.status_code).toBe(200);
      expect(line.response.body.choices[0].message.content).toBe(direct.choices[0].message.content);
      expect(line.error).toBeNull();
    }
  });

  it('keeps a Responses line stored with store: true as its creator’s: continued by previous_response_id', async () => {
    const rows = [{ custom_id: 'r', method: 'POST', url: '/v1/responses', body: { model: 'tiny-gpt', input: 'Hello', max_output_tokens: 4, store: true } }];
    const input = await client.files.create({ file: await jsonl(rows), purpose: 'batch' });
    const done = await finished((await client.batches.create({ input_file_id: input.id, endpoint: '/v1/responses', completion_window: '24h' })).id);
    const [line] = await lines(done.output_file_id);
    expect(line.response.status_code).toBe(200);
    // (it was kept for the batch's own caller: not found for the one who made the batch)
    const next = await client.responses.create({ model: 'tiny-gpt', input: 'More', max_output_tokens: 2, previous_response_id: line.response.body.id });
    expect(next.previous_response_id).toBe(line.response.body.id);
    expect((await client.responses.retrieve(line.response.body.id)).id).toBe(line.response.body.id);
  });

  it('puts failed lines in the error file, with their status and message', async () => {
    const rows = [
      { custom_id: 'ok', method: 'POST', url: '/v1/embeddings', body: { model: 'tiny-embed', input: 'a text', encoding_format: 'float' } },
      { custom_id: 'bad', method: 'POST', url: '/v1/embeddings', body: { model: 'no-such-model', input: 'a text' } },
    ];
    const input = await client.files.create({ file: await jsonl(rows), purpose: 'batch' });
    const done = await finished((await client.batches.create({ input_file_id: input.id, endpoint: '/v1/embeddings', completion_window: '24h' })).id);
    expect(done.request_counts).toEqual({ total: 2, completed: 1, failed: 1 });
    const [ok] = await lines(done.output_file_id);
    expect(ok.custom_id).toBe('ok');
    expect(ok.response.body.data[0].embedding).toHaveLength(32);
    const [bad] = await lines(done.error_file_id);
    expect(bad).toMatchObject({ custom_id: 'bad', response: { status_code: 404 }, error: { code: '404', message: expect.stringMatching(/no-such-model/) } });
  });

  it('refuses a file that does not check out before running anything, naming the line', async () => {
    const cases: [object[] | string, RegExp][] = [
      ['not json\n', /input file line 1 is not JSON/],
      [[{ custom_id: 'a', method: 'POST', url: '/v1/completions', body: {} }], /line 1: url \/v1\/completions is not the batch's endpoint \/v1\/embeddings/],
      [
        [
          { custom_id: 'a', method: 'POST', url: '/v1/embeddings', body: {} },
          { custom_id: 'a', method: 'POST', url: '/v1/embeddings', body: {} },
        ],
        /line 2: custom_id a is used twice/,
      ],
      [[{ custom_id: 'a', method: 'GET', url: '/v1/embeddings', body: {} }], /line 1: method/],
    ];
    for (const [content, message] of cases) {
      const file = typeof content === 'string' ? await toFile(Buffer.from(content), 'x.jsonl') : await jsonl(content);
      const input = await client.files.create({ file, purpose: 'batch' });
      await expect(client.batches.create({ input_file_id: input.id, endpoint: '/v1/embeddings', completion_window: '24h' })).rejects.toMatchObject({
        status: 400,
        message: expect.stringMatching(message),
      });
    }
    // A line in the background, or streamed (its events are no answer: it was run, counted a success, its body null).
    const refusedLine = async (url: '/v1/responses' | '/v1/completions', body: object, message: RegExp) => {
      const input = await client.files.create({ file: await jsonl([{ custom_id: 'a', method: 'POST', url, body }]), purpose: 'batch' });
      await expect(client.batches.create({ input_file_id: input.id, endpoint: url, completion_window: '24h' })).rejects.toMatchObject({
        status: 400,
        message: expect.stringMatching(message),
      });
    };
    await refusedLine('/v1/responses', { model: 'tiny-gpt', input: 'Hi', background: true }, /line 1: background cannot be used in a batch/);
    await refusedLine('/v1/completions', { model: 'tiny-gpt', prompt: 'Hi', stream: true }, /line 1: stream cannot be used in a batch/);
    await expect(client.batches.create({ input_file_id: 'file_nope', endpoint: '/v1/embeddings', completion_window: '24h' })).rejects.toMatchObject({
      status: 404,
    });
    await expect(client.batches.retrieve('batch_nope')).rejects.toMatchObject({ status: 404 });
  });

  it('holds uploads and batch requests to server.max_body_bytes as they are read, a chunked upload too', async () => {
    const small = await startTestGateway({
      server: { max_body_bytes: 100_000 },
      models: { 'tiny-embed': { path: `${MODELS}tiny-embed.onnx`, device: 'cpu' } },
    });
    try {
      const form = (bytes: number) => {
        const f = new FormData();
        f.append('purpose', 'batch');
        f.append('file', new Blob([Buffer.alloc(bytes, 'x')]), 'big.jsonl');
        return new Response(f);
      };
      // Chunked (no Content-Length) and endless: refused once the limit is passed while reading (it was all held first).
      const endless = new ReadableStream({ pull: (c) => c.enqueue(new Uint8Array(16_384).fill(120)) });
      const chunked = await fetch(`${small.url}/v1/files`, {
        method: 'POST',
        body: endless,
        headers: { 'content-type': 'multipart/form-data; boundary=x' },
        duplex: 'half',
      } as RequestInit);
      expect(chunked.status).toBe(413);
      const huge = await fetch(`${small.url}/v1/batches`, { method: 'POST', body: JSON.stringify({ input_file_id: 'x'.repeat(200_000) }) });
      expect(huge.status).toBe(413); // (it was read whole, then a 404 for the file)
      const fits = form(1_000);
      const ok = await fetch(`${small.url}/v1/files`, {
        method: 'POST',
        body: await fits.arrayBuffer(),
        headers: { 'content-type': fits.headers.get('content-type') as string },
      });
      expect(ok.status, await ok.clone().text()).toBe(200);
    } finally {
      await small.shutdown();
    }
  });

  it("keeps each caller's files and batches its own: another caller finds none of them", async () => {
    expect((await fetch(`${gw.url}/v1/batches`)).status).toBe(401);
    const mine = await client.batches.list();
    expect(mine.data.length).toBeGreaterThan(0);
    const other = new OpenAI({
      baseURL: `${gw.url}/v1`,
      apiKey: 'unused',
      maxRetries: 0,
      defaultHeaders: { 'infergate-key': 'other', 'infergate-secret': SECRET },
    });
    expect((await other.batches.list()).data).toEqual([]);
    expect((await other.files.list()).data).toEqual([]);
    const someone = mine.data[0];
    await expect(other.batches.retrieve(someone.id)).rejects.toMatchObject({ status: 404 });
    await expect(other.files.content(someone.output_file_id ?? someone.input_file_id)).rejects.toMatchObject({ status: 404 });
    await expect(other.batches.create({ input_file_id: someone.input_file_id, endpoint: '/v1/embeddings', completion_window: '24h' })).rejects.toMatchObject({
      status: 404,
    });
  });

  it('runs its lines behind interactive requests: one sent while the batch is queued goes first', async () => {
    const headers = { 'infergate-key': 'jobs', 'infergate-secret': SECRET };
    const stats = async () =>
      (await (await fetch(`${gw.url}/v2/models/embed-one/stats`, { headers })).json()) as { requests: number; replicas: { pid: number }[] };
    const rows = Array.from({ length: 12 }, (_, i) => ({
      custom_id: `e${i}`,
      method: 'POST',
      url: '/v1/embeddings',
      body: { model: 'embed-one', input: `text number ${i}` },
    }));
    const input = await client.files.create({ file: await jsonl(rows), purpose: 'batch' });
    const { pid } = (await stats()).replicas[0];
    const before = (await stats()).requests;
    process.kill(pid, 'SIGSTOP'); // the replica stops taking work while the queue forms
    let batch: Awaited<ReturnType<typeof client.batches.create>>;
    let interactive: Promise<unknown>;
    try {
      batch = await client.batches.create({ input_file_id: input.id, endpoint: '/v1/embeddings', completion_window: '24h' });
      while ((await stats()).requests < before + 12) await new Promise((r) => setTimeout(r, 5));
      interactive = client.embeddings.create({ model: 'embed-one', input: 'a person waiting' });
      while ((await stats()).requests < before + 13) await new Promise((r) => setTimeout(r, 5));
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await interactive;
    // It went right after the line that was on its way when the replica paused; in arrival order all 12 would
    // have been answered first. (A few more finish while its answer travels back: the bound leaves room.)
    expect((await client.batches.retrieve(batch.id)).request_counts?.completed).toBeLessThan(8);
    expect((await finished(batch.id)).request_counts).toEqual({ total: 12, completed: 12, failed: 0 });
  });

  it('cancels: lines not yet sent are not run', async () => {
    const rows = Array.from({ length: 200 }, (_, i) => ({
      custom_id: `c${i}`,
      method: 'POST',
      url: '/v1/completions',
      body: { model: 'tiny-gpt', prompt: 'Once upon a time', max_tokens: 16, temperature: 0 },
    }));
    const input = await client.files.create({ file: await jsonl(rows), purpose: 'batch' });
    const batch = await client.batches.create({ input_file_id: input.id, endpoint: '/v1/completions', completion_window: '24h' });
    expect((await client.batches.cancel(batch.id)).status).toBe('cancelling');
    const done = await finished(batch.id);
    expect(done.status).toBe('cancelled');
    const { completed = 0, failed = 0 } = done.request_counts ?? {};
    expect(completed).toBeLessThan(200);
    expect(failed).toBe(0); // (lines cut short by the cancel were not run: not failures)
  });
});

describe('listing files and batches', () => {
  it("pages as OpenAI's lists do: limit, after, order, purpose; first_id, last_id and has_more (every one came, newest first)", async () => {
    const key = { 'infergate-key': 'other', 'infergate-secret': SECRET };
    const own = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0, defaultHeaders: key });
    const row = { custom_id: 'a', method: 'POST', url: '/v1/embeddings', body: { model: 'tiny-embed', input: 'x' } };
    const made: string[] = [];
    for (let i = 0; i < 3; i++) made.push((await own.files.create({ file: await jsonl([row]), purpose: 'batch' })).id);
    const list = async (query: string) => (await fetch(`${gw.url}/v1/files?${query}`, { headers: key })).json();
    const page = await list('limit=2');
    expect(page.data.map((f: { id: string }) => f.id)).toEqual([made[2], made[1]]);
    expect(page).toMatchObject({ first_id: made[2], last_id: made[1], has_more: true });
    expect((await list(`limit=2&after=${made[1]}`)).data.map((f: { id: string }) => f.id)).toEqual([made[0]]);
    expect((await list('order=asc&limit=1')).data[0].id).toBe(made[0]);
    const batch = await own.batches.create({ input_file_id: made[0], endpoint: '/v1/embeddings', completion_window: '24h' });
    await new Promise((r) => setTimeout(r, 50));
    while (!['completed', 'failed'].includes((await own.batches.retrieve(batch.id)).status)) await new Promise((r) => setTimeout(r, 20));
    expect((await list('purpose=batch_output')).data.map((f: { purpose: string }) => f.purpose)).toEqual(['batch_output']);
    const second = await own.batches.create({ input_file_id: made[1], endpoint: '/v1/embeddings', completion_window: '24h' });
    const batches = async (query: string) => (await fetch(`${gw.url}/v1/batches?${query}`, { headers: key })).json();
    expect(await batches('limit=1')).toMatchObject({ data: [{ id: second.id }], has_more: true });
    expect((await batches(`after=${second.id}`)).data.map((b: { id: string }) => b.id)).toEqual([batch.id]);
    // Through the client's auto-paging: each once.
    const seen: string[] = [];
    for await (const f of own.files.list({ limit: 1 } as never)) seen.push(f.id);
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).toEqual(expect.arrayContaining(made));
  });
});

describe('a batch under JWT auth and a rate limit', () => {
  // Lines run as the caller who created the batch, as authorised then: a 24 h batch outlives its creator's token
  // (an hour, typically), and its lines are throttled by the batch itself, not by the caller's rate limit.
  const issuer = testIssuer();
  const token = (seconds: number) => issuer.token({ sub: 'nightly-job' }, seconds);
  let guarded: Awaited<ReturnType<typeof startTestGateway>>;
  beforeAll(async () => {
    guarded = await startTestGateway({
      auth: {
        default: 'jwt',
        jwt: { ...issuer.jwt, clock_tolerance_s: 0 },
        rate_limit: { per_second: 1, burst: 3 },
      },
      models: { 'tiny-embed': { path: `${MODELS}tiny-embed.onnx`, device: 'cpu', scaling: { min_containers: 1 } } },
    });
  });
  afterAll(() => guarded?.shutdown());

  it('runs every line after the token that created it has expired, none refused by the rate limit', async () => {
    const admin = { authorization: `Bearer ${token(600)}` };
    const { models } = await (await fetch(`${guarded.url}/admin/pools`, { headers: admin })).json();
    const [replica] = models.find((m: { model: string }) => m.model === 'tiny-embed').replicas;
    const short = new OpenAI({ baseURL: `${guarded.url}/v1`, apiKey: token(3), maxRetries: 0 });
    const rows = Array.from({ length: 40 }, (_, i) => ({
      custom_id: `t-${i}`,
      method: 'POST',
      url: '/v1/embeddings',
      body: { model: 'tiny-embed', input: `text ${i}` },
    }));
    const input = await short.files.create({ file: await jsonl(rows), purpose: 'batch' });
    process.kill(replica.pid, 'SIGSTOP'); // the batch's first lines wait in the queue; the rest are not sent yet
    let created: OpenAI.Batch;
    try {
      created = await short.batches.create({ input_file_id: input.id, endpoint: '/v1/embeddings', completion_window: '24h' });
      await new Promise((r) => setTimeout(r, 3500)); // the token has expired
    } finally {
      process.kill(replica.pid, 'SIGCONT');
    }
    const later = new OpenAI({ baseURL: `${guarded.url}/v1`, apiKey: token(600), maxRetries: 0 });
    await expect(short.batches.retrieve(created.id)).rejects.toMatchObject({ status: 401 }); // expired indeed
    let done = await later.batches.retrieve(created.id);
    for (let i = 0; i < 400 && ['in_progress', 'finalizing'].includes(done.status); i++) {
      await new Promise((r) => setTimeout(r, 50));
      done = await later.batches.retrieve(created.id);
    }
    expect(done.request_counts).toEqual({ total: 40, completed: 40, failed: 0 });
    // The caller's own requests are still limited.
    const statuses = await Promise.all(Array.from({ length: 5 }, () => fetch(`${guarded.url}/v1/models`, { headers: admin }).then((r) => r.status)));
    expect(statuses).toContain(429);
  });
});

describe('a batch kept on disk (server.batch_dir)', () => {
  const models = {
    // One text per run: a batch of a few hundred lines takes long enough to be stopped midway.
    'embed-one': { path: `${MODELS}tiny-embed.onnx`, device: 'cpu', batching: { max_batch_size: 1, wait_ms: 0 }, scaling: { min_containers: 1 } },
  };
  const clientOf = (url: string) => new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
  const requestsServed = async (url: string) => ((await (await fetch(`${url}/v2/models/embed-one/stats`)).json()) as { requests: number }).requests;

  /**
   * A batch of `total` embedding lines on a gateway keeping them in a new folder, stopped once `atLeast` are answered:
   * the folder, the batch, its input file and lines, and how many were answered (and written down) before the stop.
   */
  async function stoppedMidway(total: number, atLeast: number) {
    const dir = await mkdtemp(join(tmpdir(), 'infergate-batches-'));
    const rows = Array.from({ length: total }, (_, i) => ({
      custom_id: `r-${i}`,
      method: 'POST',
      url: '/v1/embeddings',
      body: { model: 'embed-one', input: `text ${i}` },
    }));
    const first = await startTestGateway({ server: { batch_dir: dir }, models });
    let batchId: string;
    let inputId: string;
    try {
      const client = clientOf(first.url);
      inputId = (await client.files.create({ file: await jsonl(rows), purpose: 'batch' })).id;
      batchId = (await client.batches.create({ input_file_id: inputId, endpoint: '/v1/embeddings', completion_window: '24h' })).id;
      while (((await client.batches.retrieve(batchId)).request_counts?.completed ?? 0) < atLeast) await new Promise((r) => setTimeout(r, 5));
    } finally {
      await first.shutdown(); // midway: what was in flight is answered and written down
    }
    const answeredBefore = (await readFile(join(dir, 'batches', `${batchId}.done.jsonl`), 'utf8')).trim().split('\n').length;
    return { dir, batchId, inputId, rows, answeredBefore };
  }

  it('is cancelled as any batch is: cancelling, then cancelled (saves racing made it failed, or broke its file), and its files go once', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'infergate-batches-'));
    const gateway = await startTestGateway({ server: { batch_dir: dir }, models });
    try {
      const client = clientOf(gateway.url);
      // (long enough to be running when cancelled: 60 lines were once all answered within the 90 ms before a cancel)
      const rows = Array.from({ length: 400 }, (_, i) => ({
        custom_id: `r-${i}`,
        method: 'POST',
        url: '/v1/embeddings',
        body: { model: 'embed-one', input: `t ${i}` },
      }));
      for (let round = 0; round < 4; round++) {
        const input = (await client.files.create({ file: await jsonl(rows), purpose: 'batch' })).id;
        const batch = await client.batches.create({ input_file_id: input, endpoint: '/v1/embeddings', completion_window: '24h' });
        await new Promise((r) => setTimeout(r, round * 10));
        expect(['cancelling', 'cancelled']).toContain((await client.batches.cancel(batch.id)).status); // (it said finalizing)
        let done = await client.batches.retrieve(batch.id);
        while (!['completed', 'failed', 'cancelled'].includes(done.status)) done = await client.batches.retrieve(batch.id);
        expect([done.status, done.errors]).toEqual(['cancelled', null]);
        JSON.parse(await readFile(join(dir, 'batches', `${batch.id}.json`), 'utf8')); // whole
        // Deleted by several requests at once: one deletes it, the others find none (they were 500s).
        const statuses = await Promise.all(
          [1, 2, 3].map(() =>
            client.files.delete(input).then(
              () => 200,
              (e: { status: number }) => e.status,
            ),
          ),
        );
        expect(statuses.sort()).toEqual([200, 404, 404]);
      }
    } finally {
      await gateway.shutdown();
    }
  });

  it('survives a restart: files and batches are there, and a running batch goes on with only the lines not yet answered', async () => {
    const total = 300;
    const { dir, batchId, inputId, rows, answeredBefore } = await stoppedMidway(total, 20);
    expect(answeredBefore).toBeGreaterThanOrEqual(20);
    expect(answeredBefore).toBeLessThan(total);

    const second = await startTestGateway({ server: { batch_dir: dir }, models });
    try {
      const client = clientOf(second.url);
      expect((await client.files.retrieve(inputId)).bytes).toBeGreaterThan(0);
      let done = await client.batches.retrieve(batchId);
      for (let i = 0; i < 600 && !['completed', 'failed', 'cancelled'].includes(done.status); i++) {
        await new Promise((r) => setTimeout(r, 50));
        done = await client.batches.retrieve(batchId);
      }
      expect(done).toMatchObject({ status: 'completed', request_counts: { total, completed: total, failed: 0 } });
      const out = (await (await client.files.content(done.output_file_id as string)).text())
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      expect(out.map((l) => l.custom_id).sort()).toEqual(rows.map((r) => r.custom_id).sort()); // each once
      expect(await requestsServed(second.url)).toBe(total - answeredBefore); // none sent twice
      // Its answers are in the output file now: the file of answered lines goes (just after the batch says completed,
      // which it may say first: CI's loaded run with intake threads once looked in between).
      await expect.poll(() => existsSync(join(dir, 'batches', `${batchId}.done.jsonl`))).toBe(false);
    } finally {
      await second.shutdown();
    }
    // A third start finds the finished batch and its output as they were.
    const third = await startTestGateway({ server: { batch_dir: dir }, models });
    try {
      const [latest] = (await clientOf(third.url).batches.list()).data;
      expect(latest).toMatchObject({ id: batchId, status: 'completed', request_counts: { completed: total } });
      expect(await requestsServed(third.url)).toBe(0);
    } finally {
      await third.shutdown();
    }
  });

  it('expires a batch whose 24 h window ended while the gateway was down: the rest go to the error file, none is sent', async () => {
    const total = 200;
    const { dir, batchId, answeredBefore } = await stoppedMidway(total, 10);
    // A day later: its window ended while no gateway ran.
    const saved = join(dir, 'batches', `${batchId}.json`);
    await writeFile(saved, JSON.stringify({ ...JSON.parse(await readFile(saved, 'utf8')), expires_at: Math.floor(Date.now() / 1000) - 1 }));
    const second = await startTestGateway({ server: { batch_dir: dir }, models });
    try {
      const client = clientOf(second.url);
      let done = await client.batches.retrieve(batchId);
      for (let i = 0; i < 200 && ['in_progress', 'finalizing'].includes(done.status); i++) {
        await new Promise((r) => setTimeout(r, 25));
        done = await client.batches.retrieve(batchId);
      }
      expect(done).toMatchObject({ status: 'expired', request_counts: { total, completed: answeredBefore, failed: total - answeredBefore } });
      expect(done.expired_at).toBeGreaterThan(0);
      const errors = (await (await client.files.content(done.error_file_id as string)).text())
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      expect(errors).toHaveLength(total - answeredBefore);
      expect(errors[0]).toMatchObject({ response: null, error: { code: 'batch_expired' } });
      const out = (await (await client.files.content(done.output_file_id as string)).text()).trim().split('\n');
      expect(out).toHaveLength(answeredBefore); // what was answered in time is kept
      expect(await requestsServed(second.url)).toBe(0);
    } finally {
      await second.shutdown();
    }
  });

  it('refuses to start with a folder it cannot use, naming the setting', async () => {
    await expect(startTestGateway({ server: { batch_dir: '/dev/null/batches' }, models })).rejects.toThrow(
      /^server\.batch_dir: cannot keep batches in \/dev\/null\/batches: /,
    );
  });
});
