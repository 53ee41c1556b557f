import { generateKeyPairSync } from 'node:crypto';
import { SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { jwtVerifier } from './jwt.js';

const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const pem = publicKey.export({ format: 'pem', type: 'spki' }) as string;
const config = {
  issuer: 'https://auth.test/',
  audience: 'infergate',
  keys: [{ pem, alg: 'ES256' as const }],
  algorithms: ['ES256' as const],
  clock_tolerance_s: 0,
  jwks_cooldown_s: 30,
  jwks_max_age_s: 600,
  priority_claim: 'tier',
  priorities: { gold: 10, free: 0 },
  claims: ['tenant'],
};
const token = (claims: Record<string, unknown>) =>
  new SignJWT(claims).setProtectedHeader({ alg: 'ES256' }).setIssuer(config.issuer).setAudience(config.audience).setExpirationTime('1m').sign(privateKey);

describe('jwtVerifier with a static PEM key', () => {
  it('returns the subject, scopes, chosen claims and the priority its tier maps to', async () => {
    const verify = await jwtVerifier(config);
    const who = await verify(await token({ sub: 'bob', scp: ['classify', 'chat'], tier: 'gold', tenant: 'acme', secret: 'not copied' }));
    expect(who).toEqual({ subject: 'bob', scopes: ['classify', 'chat'], claims: { tenant: 'acme' }, priority: 10 });
  });

  it('reads scopes from scope, or scp as a list or a space-separated string (as Entra ID writes it)', async () => {
    const verify = await jwtVerifier(config);
    for (const claims of [{ scope: 'classify chat' }, { scp: ['classify', 'chat'] }, { scp: 'classify  chat' }])
      expect((await verify(await token({ sub: 'bob', ...claims }))).scopes).toEqual(['classify', 'chat']);
  });

  it('tells callers apart by sub, else a client-credentials token’s azp or client_id; refuses a token naming no one', async () => {
    const verify = await jwtVerifier(config);
    expect((await verify(await token({ sub: 'bob', client_id: 'app' }))).subject).toBe('bob');
    expect((await verify(await token({ azp: 'service-a' }))).subject).toBe('service-a');
    expect((await verify(await token({ client_id: 'service-b' }))).subject).toBe('service-b');
    await expect(verify(await token({ scope: 'classify' }))).rejects.toThrow(/names no caller/); // (all were one, "anonymous")
  });

  it('requires an expiry', async () => {
    const verify = await jwtVerifier(config);
    const noExp = await new SignJWT({ sub: 'bob' }).setProtectedHeader({ alg: 'ES256' }).setIssuer(config.issuer).setAudience(config.audience).sign(privateKey);
    await expect(verify(noExp)).rejects.toThrow(/"exp" claim/);
  });

  it('refuses a JWK that holds a private part', async () => {
    const jwk = privateKey.export({ format: 'jwk' });
    await expect(jwtVerifier({ ...config, keys: [{ ...jwk, kty: jwk.kty as string, alg: 'ES256' }] })).rejects.toThrow(/public keys only/);
  });
});
