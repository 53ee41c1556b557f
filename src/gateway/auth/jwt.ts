import {
  createLocalJWKSet,
  createRemoteJWKSet,
  errors,
  importJWK,
  importSPKI,
  type JSONWebKeySet,
  type JWK,
  type JWTPayload,
  type JWTVerifyGetKey,
  jwtVerify,
} from 'jose';
import type { AuthConfig } from '../../config/index.js';

type JwtConfig = NonNullable<AuthConfig['jwt']>;

/** What a verified token says about its caller. */
export type TokenCaller = { subject: string; scopes: string[]; claims: Record<string, unknown>; priority?: number };

/** Why a token was refused: said in WWW-Authenticate, never more (no claim or key material). */
export class TokenError extends Error {}

/** Longest Authorization value read at all: anything bigger is refused before parsing. */
export const MAX_TOKEN_BYTES = 8 * 1024;

/**
 * Verifies bearer tokens with jose: signature against JWKS (fetched, cached, refetched on an unknown
 * `kid` at most once per cooldown) or static keys; `iss`, `aud`, `exp`, `nbf` with a clock tolerance; an
 * asymmetric-only algorithm allow-list, so `none` and HMAC-with-a-public-key never pass.
 */
export async function jwtVerifier(config: JwtConfig): Promise<(token: string) => Promise<TokenCaller>> {
  const keySources: JWTVerifyGetKey[] = [];
  if (config.jwks_url)
    keySources.push(createRemoteJWKSet(new URL(config.jwks_url), { cooldownDuration: config.jwks_cooldown_s * 1000, timeoutDuration: 5000 }));
  const staticJwks: JWK[] = [];
  const pems: { kid?: string; alg: string; key: CryptoKey | Uint8Array }[] = [];
  for (const k of config.keys ?? []) {
    if ('pem' in k && typeof k.pem === 'string')
      pems.push({ kid: k.kid as string | undefined, alg: k.alg as string, key: await importSPKI(k.pem, k.alg as string) });
    else {
      const jwk = k as JWK;
      if (jwk.d || jwk.k) throw new Error('auth.jwt.keys: give public keys only (a JWK with "d" or "k" holds a secret)');
      await importJWK(jwk, jwk.alg); // fails early on a malformed key
      staticJwks.push(jwk);
    }
  }
  if (staticJwks.length) keySources.push(createLocalJWKSet({ keys: staticJwks } as JSONWebKeySet));
  if (pems.length) {
    keySources.push(async (header) => {
      const match = pems.find((p) => p.alg === header.alg && (!header.kid || !p.kid || p.kid === header.kid));
      if (!match) throw new errors.JWKSNoMatchingKey();
      return match.key;
    });
  }
  const options = {
    issuer: config.issuer,
    audience: config.audience,
    algorithms: config.algorithms as string[],
    clockTolerance: config.clock_tolerance_s,
    requiredClaims: ['exp'],
  };

  return async (token) => {
    if (token.length > MAX_TOKEN_BYTES) throw new TokenError('the token is too large');
    if (token.split('.').length !== 3) throw new TokenError('the token is not a JWS compact serialization');
    let payload: JWTPayload | undefined;
    let last: unknown;
    for (const source of keySources) {
      try {
        ({ payload } = await jwtVerify(token, source, options));
        break;
      } catch (err) {
        last = err;
        // Only "no key here" lets the next key source try; a bad signature or claim is final.
        if (!(err instanceof errors.JWKSNoMatchingKey)) break;
      }
    }
    if (!payload) throw new TokenError(describe(last));
    const scopes = typeof payload.scope === 'string' ? payload.scope.split(' ').filter(Boolean) : Array.isArray(payload.scp) ? payload.scp.map(String) : [];
    const claims = Object.fromEntries(config.claims.filter((c) => c in payload).map((c) => [c, payload[c]]));
    const tier = config.priority_claim ? payload[config.priority_claim] : undefined;
    const priority = typeof tier === 'string' || typeof tier === 'number' ? config.priorities[String(tier)] : undefined;
    return { subject: String(payload.sub ?? 'anonymous'), scopes, claims, priority };
  };
}

function describe(err: unknown): string {
  if (err instanceof errors.JWTExpired) return 'the token has expired';
  if (err instanceof errors.JWTClaimValidationFailed) return `the token's "${err.claim}" claim is not accepted`;
  if (err instanceof errors.JWSSignatureVerificationFailed) return 'the token signature does not verify';
  if (err instanceof errors.JOSEAlgNotAllowed) return 'the token algorithm is not allowed';
  if (err instanceof errors.JWKSNoMatchingKey) return 'no key matches the token (unknown kid)';
  if (err instanceof errors.JWTInvalid || err instanceof errors.JWSInvalid) return 'the token is malformed';
  if (err instanceof errors.JOSEError) return `the token is not accepted (${err.code})`;
  return 'the token could not be verified';
}
