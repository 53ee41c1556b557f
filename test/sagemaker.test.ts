import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODELS, startTestGateway } from './helpers.js';

// Amazon SageMaker's container contract: GET /ping, and POST /invocations speaking whichever API its body does.
const KEY = { 'infergate-key': 'app', 'infergate-secret': 'a-secret-long-enough' };
let gw: Awaited<ReturnType<typeof startTestGateway>>;
beforeAll(async () => {
  gw = await startTestGateway({
    auth: { default: 'key', keys: [{ id: 'app', secret: KEY['infergate-secret'] }], rate_limit: { per_second: 0.01, burst: 4, max_concurrent: 1 } },
    models: {
      'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', scaling: { min_containers: 1 } },
      mlp: { path: `${MODELS}mlp.onnx`, device: 'cpu', scaling: { min_containers: 1 } },
    },
  });
});
afterAll(() => gw?.shutdown());

const post = async (path: string, body: object, headers: Record<string, string> = {}) => {
  const res = await fetch(`${gw.url}${path}`, {
    method: 'POST',
    body: JSON.stringify(body),
    headers: { ...KEY, 'content-type': 'application/json', ...headers },
  });
  return { status: res.status, body: await res.json() };
};
const x = [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: new Array(64).fill(0.5) }];

describe('SageMaker', () => {
  it("answers /ping when ready, and /invocations in the body's own API, counted once against the caller's limits", async () => {
    expect((await fetch(`${gw.url}/ping`)).status).toBe(200);
    const chat = { model: 'tiny-gpt', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4, temperature: 0 };
    const viaInvocations = await post('/invocations', chat);
    const direct = await post('/v1/chat/completions', chat);
    expect(viaInvocations.status).toBe(200);
    expect(viaInvocations.body.choices[0].message.content).toBe(direct.body.choices[0].message.content);
    // TGI's body (the model from SageMaker's header), KServe v2 tensors (the model named by the header).
    const tgi = await post('/invocations', { inputs: 'Hello', parameters: { max_new_tokens: 2 } }, { 'x-amzn-sagemaker-target-model': 'tiny-gpt' });
    // (as SageMaker's Hugging Face containers answer it: TGI's POST /, an array of one, the prompt included)
    expect(tgi.body).toEqual([{ generated_text: expect.stringMatching(/^Hello/) }]);
    const tensors = await post('/invocations', { inputs: x }, { 'x-amzn-sagemaker-target-model': 'mlp' });
    expect(tensors.body).toMatchObject({ model_name: 'mlp', outputs: [{ name: 'probs', shape: [1, 10] }] });
    // Four requests made, the bucket's four: one more is refused (/invocations and the route it forwards to count
    // once, against max_concurrent 1 too).
    expect((await post('/invocations', chat)).status).toBe(429);
  });

  it('refuses what it cannot route, naming what it speaks and the header that names a model', async () => {
    const noKey = await fetch(`${gw.url}/invocations`, { method: 'POST', body: '{}' });
    expect(noKey.status).toBe(401);
    const gw2 = await startTestGateway({
      models: {
        'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu' },
        mlp: { path: `${MODELS}mlp.onnx`, device: 'cpu' },
      },
    });
    try {
      const send = async (body: object) => {
        const res = await fetch(`${gw2.url}/invocations`, { method: 'POST', body: JSON.stringify(body) });
        return { status: res.status, error: (await res.json()).error as string };
      };
      expect(await send({ what: 1 })).toMatchObject({ status: 400, error: expect.stringMatching(/none of the APIs \/invocations speaks/) });
      expect(await send({ inputs: x })).toMatchObject({ status: 400, error: expect.stringMatching(/name one with the x-amzn-sagemaker-target-model header/) });
    } finally {
      await gw2.shutdown();
    }
  });
});
