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
import { type AuthConfig, ConfigError } from '../../config/index.js';

type JwtConfig = NonNullable<AuthConfig['jwt']>;

/** What a verified token says about its caller. */
export type TokenCaller = { subject: string; scopes: string[]; claims: Record<string, unknown>; priority?: number };

/** Why a token was refused: said in WWW-Authenticate, never more (no claim or key material). */
export class TokenError extends Error {}

/**
 * The key set at jwks_url could not be fetched and the token's key is not among those fetched before: the
 * token was not judged, so it is not refused as bad (a 503 for the caller to retry, not a 401 that tells it
 * to throw its token away: the complaint about Envoy's and Spring's JWT filters).
 */
export class KeysUnavailable extends Error {}

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
    keySources.push(remoteKeys(new URL(config.jwks_url), { cooldownDuration: config.jwks_cooldown_s * 1000, cacheMaxAge: config.jwks_max_age_s * 1000 }));
  const staticJwks: JWK[] = [];
  const pems: { kid?: string; alg: string; key: CryptoKey | Uint8Array }[] = [];
  // (each read at start, and by validate: a key that cannot be read is a config error naming it)
  for (const [i, k] of (config.keys ?? []).entries()) {
    const unreadable = (err: Error) =>
      new ConfigError(`auth.jwt.keys.${i}: cannot be read as a ${'pem' in k ? `PEM (SPKI) ${k.alg} public key` : 'JWK'}: ${err.message}`);
    if ('pem' in k && typeof k.pem === 'string')
      pems.push({
        kid: k.kid as string | undefined,
        alg: k.alg as string,
        key: await importSPKI(k.pem, k.alg as string).catch((err) => Promise.reject(unreadable(err))),
      });
    else {
      const jwk = k as JWK;
      if (jwk.d || jwk.k) throw new ConfigError(`auth.jwt.keys.${i}: give public keys only (a JWK with "d" or "k" holds a secret)`);
      await importJWK(jwk, jwk.alg).catch((err) => Promise.reject(unreadable(err))); // fails early on a malformed key
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
    let unavailable: KeysUnavailable | undefined;
    for (const source of keySources) {
      try {
        ({ payload } = await jwtVerify(token, source, options));
        break;
      } catch (err) {
        last = err;
        if (err instanceof KeysUnavailable) unavailable = err;
        // Only "no key here" (or "cannot tell") lets the next key source try; a bad signature or claim is final.
        else if (!(err instanceof errors.JWKSNoMatchingKey)) break;
      }
    }
    if (!payload && unavailable && (last === unavailable || last instanceof errors.JWKSNoMatchingKey)) throw unavailable;
    if (!payload) throw new TokenError(describe(last));
    const scopes = scopeList(payload.scope) ?? scopeList(payload.scp) ?? [];
    const claims = Object.fromEntries(config.claims.filter((c) => c in payload).map((c) => [c, payload[c]]));
    const tier = config.priority_claim ? payload[config.priority_claim] : undefined;
    const priority = typeof tier === 'string' || typeof tier === 'number' ? config.priorities[String(tier)] : undefined;
    // Callers are told apart by whom a token names — what they keep, their limits, their caches are theirs alone: a
    // token naming no one is refused (they all were one caller, "anonymous", sharing each other's conversations).
    // A client-credentials token without `sub` names its client (azp, client_id).
    const subject = [payload.sub, payload.azp, payload.client_id].find((v) => typeof v === 'string' && v !== '');
    if (subject === undefined) throw new TokenError('the token names no caller (sub, azp or client_id)');
    return { subject: subject as string, scopes, claims, priority };
  };
}

/**
 * A JWKS fetched by jose (cached, refetched past `cacheMaxAge` and on an unknown kid past `cooldownDuration`),
 * that keeps verifying with the keys it fetched last while the server cannot be reached.
 */
function remoteKeys(url: URL, opts: { cooldownDuration: number; cacheMaxAge: number }): JWTVerifyGetKey {
  const remote = createRemoteJWKSet(url, { ...opts, timeoutDuration: 5000 });
  return async (header, token) => {
    try {
      return await remote(header, token);
    } catch (err) {
      const why = fetchFailure(err);
      if (!why) throw err;
      const last = remote.jwks();
      if (last) {
        try {
          return await createLocalJWKSet(last)(header, token);
        } catch (e) {
          if (!(e instanceof errors.JWKSNoMatchingKey)) throw e;
        }
      }
      throw new KeysUnavailable(`the signing keys at auth.jwt.jwks_url could not be fetched (${why})`);
    }
  };
}

/** Why fetching the JWKS failed, if that is what `err` says (not a token that fails to verify). */
function fetchFailure(err: unknown): string | undefined {
  if (err instanceof errors.JWKSTimeout) return 'timed out';
  if (err instanceof errors.JWKSInvalid) return 'not a JSON Web Key Set';
  // jose's own words for a non-200 answer and for a body that is not JSON
  if (err instanceof errors.JOSEError && /JSON Web Key Set HTTP response/.test(err.message)) return err.message;
  // fetch's network failures carry their cause; a TypeError jose throws about a token's content has none
  if (err instanceof TypeError && err.cause !== undefined) return (err.cause as Error).message ?? err.message;
  return undefined;
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

/** OAuth's `scope` is a space-separated string; `scp` is a list (Okta) or such a string (Microsoft Entra ID). */
function scopeList(claim: unknown): string[] | undefined {
  if (typeof claim === 'string') return claim.split(' ').filter(Boolean);
  if (Array.isArray(claim)) return claim.map(String);
  return undefined;
}
