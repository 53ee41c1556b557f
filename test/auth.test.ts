import { sign as cryptoSign, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Anthropic from '@anthropic-ai/sdk';
import jwt from 'jsonwebtoken';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { MODELS, startTestGateway } from './helpers.js';

// Tokens are minted by an independent library (jsonwebtoken) and keys served by a local JWKS server.
const ISSUER = 'https://auth.test/';
const AUDIENCE = 'infergate';
type Key = { kid: string; alg: 'RS256' | 'ES256' | 'EdDSA'; privateKey: KeyObject; publicKey: KeyObject };
const makeKey = (kid: string, alg: Key['alg']): Key => {
  const pair =
    alg === 'RS256'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : alg === 'ES256'
        ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
        : generateKeyPairSync('ed25519');
  return { kid, alg, ...pair };
};
const rsa = makeKey('rsa-1', 'RS256');
const ec = makeKey('ec-1', 'ES256');
const ed = makeKey('ed-1', 'EdDSA');
let published: Key[] = [rsa, ec, ed];
let jwksFetches = 0;
/** How the JWKS server answers: with the keys, with a 503, or by dropping the connection. */
let jwksMode: 'up' | 'error' | 'drop' = 'up';
let jwks: Server;
let gw: Awaited<ReturnType<typeof startTestGateway>>;

/** auth.jwt for tokens from sign(), keys from the JWKS server below (refetched at once for an unknown kid). */
const jwtAgainstOurJwks = (more: object) => ({
  issuer: ISSUER,
  audience: AUDIENCE,
  jwks_url: `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks.json`,
  jwks_cooldown_s: 0,
  ...more,
});
const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
function sign(key: Key, claims: Record<string, unknown> = {}, options: jwt.SignOptions = {}): string {
  const payload = { sub: 'alice', scope: 'classify read', ...claims };
  if (key.alg === 'EdDSA') {
    // jsonwebtoken has no EdDSA: sign the JWS by hand with node:crypto (still independent of jose).
    const now = Math.floor(Date.now() / 1000);
    const data = `${b64({ alg: 'EdDSA', typ: 'JWT', kid: key.kid })}.${b64({ iss: ISSUER, aud: AUDIENCE, iat: now, exp: now + 60, ...payload })}`;
    return `${data}.${cryptoSign(null, Buffer.from(data), key.privateKey).toString('base64url')}`;
  }
  return jwt.sign(payload, key.privateKey.export({ format: 'pem', type: 'pkcs8' }), {
    algorithm: key.alg as jwt.Algorithm,
    keyid: key.kid,
    issuer: ISSUER,
    audience: AUDIENCE,
    ...('exp' in claims ? {} : { expiresIn: 60 }),
    ...options,
  });
}

beforeAll(async () => {
  jwks = createServer((req, res) => {
    jwksFetches++;
    if (jwksMode === 'drop') return req.socket.destroy();
    if (jwksMode === 'error') return res.writeHead(503).end();
    const keys = published.map((k) => ({ ...k.publicKey.export({ format: 'jwk' }), kid: k.kid, alg: k.alg, use: 'sig' }));
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ keys }));
  });
  await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r));
  gw = await startTestGateway({
    auth: {
      default: 'jwt',
      jwt: jwtAgainstOurJwks({ clock_tolerance_s: 5 }),
      keys: [{ id: 'billing', secret: 'a-long-enough-shared-secret' }],
      admin_scopes: ['admin'],
    },
    server: { admin_api: true },
    endpoints: [
      { path: '/classify', model: 'mlp', scopes: ['classify'] },
      { path: '/internal/classify', model: 'mlp', auth: 'key' },
      { path: '/public/classify', model: 'mlp', auth: 'public', rate_limit: { per_second: 2, burst: 3 } },
      { path: '/public/small', model: 'mlp', auth: 'public', max_body_bytes: 100 },
    ],
    models: { mlp: { path: `${MODELS}mlp.onnx`, device: 'cpu', scaling: { min_containers: 0 } } },
  } as never);
});
afterAll(async () => {
  await gw?.shutdown();
  jwks?.close();
});

const body = JSON.stringify({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: new Array(64).fill(0.5) }] });
const call = (path: string, headers: Record<string, string> = {}) => fetch(`${gw.url}${path}`, { method: 'POST', body, headers });
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

describe('JWT-authenticated endpoints', () => {
  // First, before any good request: none of these may start a replica or run a batch.
  it('refuses every bad credential with 401 + WWW-Authenticate, and wakes nothing', async () => {
    const good = sign(rsa);
    const [h, p, s] = good.split('.');
    const tamperedPayload = `${h}.${b64({ ...JSON.parse(Buffer.from(p, 'base64url').toString()), sub: 'mallory' })}.${s}`;
    const tamperedSignature = `${h}.${p}.${s.slice(0, -4)}${s.slice(-4) === 'AAAA' ? 'BBBB' : 'AAAA'}`;
    const none = `${b64({ alg: 'none', typ: 'JWT' })}.${p}.`;
    // Algorithm confusion: HS256 "signed" with the RSA public key as the HMAC secret.
    const confused = jwt.sign({ sub: 'alice', scope: 'classify' }, rsa.publicKey.export({ format: 'pem', type: 'spki' }) as string, {
      algorithm: 'HS256',
      keyid: rsa.kid,
      issuer: ISSUER,
      audience: AUDIENCE,
      expiresIn: 60,
    });
    const stranger = makeKey('who-knows', 'ES256');
    const cases: [string, Record<string, string>, RegExp][] = [
      ['no credential', {}, /send Authorization: Bearer/],
      ['expired', bearer(sign(rsa, { exp: Math.floor(Date.now() / 1000) - 600 })), /expired/],
      ['not yet valid', bearer(sign(rsa, {}, { notBefore: 600 })), /"nbf" claim/],
      ['wrong issuer', bearer(sign(rsa, {}, { issuer: 'https://evil.test/' })), /"iss" claim/],
      ['wrong audience', bearer(sign(rsa, {}, { audience: 'someone-else' })), /"aud" claim/],
      ['tampered payload', bearer(tamperedPayload), /signature does not verify/],
      ['tampered signature', bearer(tamperedSignature), /signature does not verify/],
      ['alg none', bearer(none), /algorithm is not allowed|malformed/],
      ['HS256 with the public key', bearer(confused), /algorithm is not allowed/],
      ['unknown kid', bearer(sign(stranger)), /unknown kid/],
      ['malformed', bearer('not-a-token'), /not a JWS/],
      ['oversized', bearer(`${h}.${'A'.repeat(10_000)}.${s}`), /too large/],
    ];
    const fetchesBefore = jwksFetches;
    for (const [name, headers, message] of cases) {
      const res = await call('/classify', headers);
      expect(res.status, name).toBe(401);
      expect(res.headers.get('www-authenticate'), name).toMatch(/^Bearer realm="infergate", error="invalid_token"/);
      expect((await res.json()).error, name).toMatch(message);
    }
    expect(jwksFetches).toBeGreaterThan(fetchesBefore); // the unknown kid made it look again
    const admin = await (await fetch(`${gw.url}/admin/pools`, { headers: bearer(good) })).json();
    expect(admin.models[0].replicas).toHaveLength(0);
    const stats = await (await fetch(`${gw.url}/v2/models/mlp/stats`, { headers: bearer(good) })).json();
    expect(stats).toMatchObject({ requests: 0, batches: 0 });
  });

  it.each([
    ['RS256', rsa],
    ['ES256', ec],
    ['EdDSA', ed],
  ])('accepts a valid %s token', async (_alg, key) => {
    const res = await call('/classify', bearer(sign(key)));
    expect(res.status).toBe(200);
    expect((await res.json()).outputs[0].shape).toEqual([1, 10]);
  });

  it('answers 403 for a valid token without the scope', async () => {
    const res = await call('/classify', bearer(sign(rsa, { scope: 'read' })));
    expect(res.status).toBe(403);
    expect(res.headers.get('www-authenticate')).toMatch(/error="insufficient_scope", scope="classify"/);
  });

  it('guards the built-in routes too, but not health', async () => {
    expect((await call('/v2/models/mlp/infer')).status).toBe(401);
    expect((await call('/v2/models/mlp/infer', bearer(sign(ec)))).status).toBe(200);
    expect((await fetch(`${gw.url}/v2/health/ready`)).status).toBe(200);
    // vLLM's routes outside /v1 too, before their bodies are read.
    for (const path of ['/v1/embeddings', '/rerank', '/v2/rerank', '/score', '/classify', '/tokenize', '/detokenize'])
      expect((await call(path)).status).toBe(401);
  });

  it('asks a runtime change through the admin API for the admin scopes too; reading it, the built-in ones', async () => {
    const change = (headers: Record<string, string>) =>
      fetch(`${gw.url}/admin/models/mlp/autoscaler`, { method: 'POST', body: JSON.stringify({ scaledown_window: 60 }), headers });
    expect((await change({})).status).toBe(401);
    const lacking = await change(bearer(sign(rsa)));
    expect(lacking.status).toBe(403);
    expect(lacking.headers.get('www-authenticate')).toMatch(/scope="admin"/);
    expect((await change(bearer(sign(rsa, { scope: 'admin' })))).status).toBe(200);
    expect((await fetch(`${gw.url}/admin/models/mlp/autoscaler`, { headers: bearer(sign(rsa)) })).status).toBe(200);
    // Asked as an asynchronous call (Prefer: respond-async), a runtime change is no call: still the admin scopes.
    const trace = (token: string) =>
      fetch(`${gw.url}/v2/models/mlp/trace/setting`, {
        method: 'POST',
        body: JSON.stringify({ trace_rate: '1' }),
        headers: { ...bearer(token), prefer: 'respond-async' },
      });
    expect((await trace(sign(rsa))).status).toBe(403); // (it was a 202, and the change was made)
    expect((await trace(sign(rsa, { scope: 'admin' }))).status).toBe(200);
  });

  it('guards the WebSocket: refused without a token, open with ?access_token=', async () => {
    const wsUrl = `${gw.url.replace('http', 'ws')}/v1/ws`;
    const refused = await new Promise<number>((resolve) => {
      const ws = new WebSocket(wsUrl);
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('open', () => resolve(101));
      ws.on('error', () => {});
    });
    expect(refused).toBe(401);
    const ws = new WebSocket(`${wsUrl}?access_token=${sign(ec)}`);
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    ws.close();
  });

  it('picks up a rotated key from the JWKS without a restart', async () => {
    const next = makeKey('rsa-2', 'RS256');
    published = [next, ec, ed];
    expect((await call('/classify', bearer(sign(next)))).status).toBe(200);
    expect((await call('/classify', bearer(sign(rsa)))).status).toBe(401); // the retired key is gone
  });
});

describe('key/secret and public endpoints', () => {
  it('accepts the configured key and secret, refuses a wrong secret', async () => {
    expect((await call('/internal/classify', { 'infergate-key': 'billing', 'infergate-secret': 'a-long-enough-shared-secret' })).status).toBe(200);
    const bad = await call('/internal/classify', { 'infergate-key': 'billing', 'infergate-secret': 'guess' });
    expect(bad.status).toBe(401);
    expect(bad.headers.get('www-authenticate')).toMatch(/^Infergate-Key/);
  });

  it('takes the secret alone as one API key (Bearer, x-api-key), as the OpenAI and Anthropic SDKs send one', async () => {
    const secret = 'a-long-enough-shared-secret';
    expect((await call('/internal/classify', bearer(secret))).status).toBe(200);
    expect((await call('/internal/classify', { 'x-api-key': secret })).status).toBe(200);
    for (const headers of <Record<string, string>[]>[
      bearer('a-long-enough-shared-secreT'),
      { 'x-api-key': 'billing' },
      bearer(''),
      { 'infergate-key': 'billing', ...bearer(secret) },
    ]) {
      const res = await call('/internal/classify', headers);
      expect([JSON.stringify(headers), res.status]).toEqual([JSON.stringify(headers), 401]);
    }
    // The SDKs themselves, against a gateway whose routes all take keys.
    const keyed = await startTestGateway({
      auth: { default: 'key', keys: [{ id: 'app', secret }] },
      models: { 'tiny-gpt': { path: `${MODELS}tiny-gpt.onnx`, device: 'cpu', scaling: { min_containers: 1 } } },
    });
    try {
      const openai = new OpenAI({ baseURL: `${keyed.url}/v1`, apiKey: secret, maxRetries: 0 });
      const chat = await openai.chat.completions.create({ model: 'tiny-gpt', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 });
      expect(chat.usage?.completion_tokens).toBe(2);
      const anthropic = new Anthropic({ baseURL: keyed.url, apiKey: secret, maxRetries: 0 });
      const message = await anthropic.messages.create({ model: 'tiny-gpt', max_tokens: 2, messages: [{ role: 'user', content: 'Hi' }] });
      expect(message.usage.output_tokens).toBe(2);
      await expect(new OpenAI({ baseURL: `${keyed.url}/v1`, apiKey: 'not-the-secret-at-all', maxRetries: 0 }).models.list()).rejects.toMatchObject({
        status: 401,
      });
      // A browser's WebSocket (no headers): the secret as ?access_token=.
      const opened = (token: string) =>
        new Promise<number>((resolve) => {
          const ws = new WebSocket(`${keyed.url.replace('http', 'ws')}/v1/ws?access_token=${token}`);
          ws.on('open', () => {
            ws.close();
            resolve(101);
          });
          ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
          ws.on('error', () => {});
        });
      expect([await opened(secret), await opened('not-the-secret-at-all')]).toEqual([101, 401]);
    } finally {
      await keyed.shutdown();
    }
  });

  it('enforces an endpoint’s own body limit', async () => {
    const res = await call('/public/small');
    expect(res.status).toBe(413);
    expect((await res.json()).error).toMatch(/exceeds the limit of 100 bytes/);
  });

  it('rate-limits a public caller with 429, Retry-After and RateLimit headers, and recovers', async () => {
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await call('/public/classify'));
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 429]);
    expect(answers[0].headers.get('ratelimit-limit')).toBe('3');
    expect(answers[1].headers.get('ratelimit-remaining')).toBe('1');
    const refused = answers[3];
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(refused.headers.get('ratelimit-remaining')).toBe('0');
    expect((await refused.json()).error).toMatch(/too many requests/);
    await new Promise((r) => setTimeout(r, 600)); // 2 per second: one token back after 500 ms
    expect((await call('/public/classify')).status).toBe(200);
  });
});

describe('a JWKS server that cannot be reached', () => {
  let gw2: Awaited<ReturnType<typeof startTestGateway>>;
  beforeAll(async () => {
    gw2 = await startTestGateway({
      auth: {
        default: 'jwt',
        jwt: jwtAgainstOurJwks({ jwks_max_age_s: 0 }), // refetched for every token: each one meets the outage
      },
      models: { mlp: { path: `${MODELS}mlp.onnx`, device: 'cpu', scaling: { min_containers: 0 } } },
    } as never);
  });
  afterAll(async () => {
    jwksMode = 'up';
    await gw2?.shutdown();
  });
  const ask = (token: string) => fetch(`${gw2.url}/v2/models/mlp/infer`, { method: 'POST', body, headers: bearer(token) });

  it('keeps verifying with the keys it fetched last; a token whose key it never saw is 503 (not judged), not 401', async () => {
    published = [ec];
    expect((await ask(sign(ec))).status).toBe(200); // the keys are fetched
    for (const mode of ['error', 'drop'] as const) {
      jwksMode = mode;
      const fetchesBefore = jwksFetches;
      expect((await ask(sign(ec))).status, mode).toBe(200);
      expect(jwksFetches, mode).toBeGreaterThan(fetchesBefore); // it did try to refresh them

      const fresh = makeKey(`ec-new-${mode}`, 'ES256');
      published = [ec, fresh]; // published, but the server cannot hand it out
      const res = await ask(sign(fresh));
      expect(res.status, mode).toBe(503);
      expect(res.headers.get('retry-after'), mode).toBe('5');
      expect(await res.json(), mode).toEqual({
        error: expect.stringMatching(/^the signing keys at auth\.jwt\.jwks_url could not be fetched \(.+\)$/),
        code: 'auth_unavailable',
      });

      // What it can judge it still refuses: a signature that does not verify, a token that is not one.
      const [h, p] = sign(ec).split('.');
      expect((await ask(`${h}.${p}.${sign(fresh).split('.')[2]}`)).status, mode).toBe(401);
      expect((await ask('not-a-token')).status, mode).toBe(401);

      jwksMode = 'up';
      expect((await ask(sign(fresh))).status, mode).toBe(200); // back: the new key is fetched
    }
  });
});
