// Our tokens against an independent JOSE implementation (the `jose` npm
// library): every token the daemon issues verifies with jose against the
// daemon's JWKS (EdDSA, ES256, RS256) or secret (HS256), and tokens jose
// signs with the daemon's own key (jwt.key_file) or with the legacy secret
// (HS256/384/512) are accepted, and refused as soon as one claim or the key
// is wrong. The discovery documents, /auth/validate and /auth/revoke.
//
// RS384/512, PS256/384/512 and ES384 are only ever verified (IdP tokens, a
// later issue; no HTTP path takes them yet): tests/unit/test-jose.c checks
// them against tokens signed by jose.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  SignJWT, calculateJwkThumbprint, createLocalJWKSet, exportJWK, exportPKCS8, generateKeyPair, jwtVerify,
} from 'jose';
import { runCommand, startDaemon } from './lib/daemon.mjs';
import { counts, decodeJwt, nowSec, seedSession } from './lib/tokens.mjs';

const ISS = 'https://bsp.test';
const AUD = 'bedrock-sso-proxy';

const validate = (d, token) => d.request('/auth/validate', { headers: { Authorization: `Bearer ${token}` } });

async function mint(d, user = 'bob@example.com', extra = []) {
  const r = await runCommand(['token', 'mint', '--user', user, ...extra], { dir: d.dir });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

async function jwks(d) {
  const r = await d.request('/.well-known/jwks.json');
  assert.equal(r.status, 200);
  return r.json();
}

const baseClaims = (over = {}) => {
  const now = nowSec();
  return {
    iss: ISS, aud: AUD, sub: 'test:carol', sid: 'sid-from-jose', jti: `j${Math.random()}`,
    iat: now, nbf: now, exp: now + 600, email: 'carol@example.com', ...over,
  };
};

async function sign(claims, key, header) {
  const c = { ...claims };
  for (const k of Object.keys(c)) if (c[k] === undefined) delete c[k];
  return new SignJWT(c).setProtectedHeader(header).sign(key);
}

for (const alg of ['EdDSA', 'ES256', 'RS256']) {
  test(`jose verifies every ${alg} token we issue against our JWKS`, async () => {
    const d = await startDaemon({ config: { jwt: { algorithm: alg, issuer: ISS, refresh_reuse_grace: 0 } } });
    try {
      const set = await jwks(d);
      assert.equal(set.keys.length, 1);
      const jwk = set.keys[0];
      assert.equal(jwk.alg, alg);
      assert.equal(jwk.use, 'sig');
      for (const p of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k']) assert.equal(jwk[p], undefined, `no private ${p} in JWKS`);
      // Our kid is the RFC 7638 thumbprint, as jose computes it.
      assert.equal(jwk.kid, await calculateJwkThumbprint(jwk));
      const keyset = createLocalJWKSet(set);

      // 1. "token mint"
      const before = nowSec();
      const t1 = await mint(d, 'bob@example.com', ['--ttl', '3600', '--scope', 'bedrock:invoke,extra']);
      const { payload, protectedHeader } = await jwtVerify(t1, keyset, {
        issuer: ISS, audience: AUD, algorithms: [alg], requiredClaims: ['exp', 'iat', 'nbf', 'sub', 'jti', 'sid'],
      });
      assert.equal(protectedHeader.kid, jwk.kid);
      assert.equal(protectedHeader.typ, 'JWT');
      assert.equal(payload.sub, 'local:bob@example.com');
      assert.equal(payload.email, 'bob@example.com');
      assert.deepEqual(payload.scopes, ['bedrock:invoke', 'extra']);
      assert.ok(payload.exp >= before + 3600 && payload.exp <= nowSec() + 3600, `exp ${payload.exp}`);
      assert.ok(payload.iat >= before - 1 && payload.iat <= nowSec());

      // 2. a refresh, and the retry inside the grace window (none here: 0)
      const s = seedSession(d.dir);
      const r = await d.request('/auth/refresh', {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ refresh_token: s.refresh }),
      });
      assert.equal(r.status, 200, r.text());
      const pair = r.json();
      assert.equal(pair.token_type, 'Bearer');
      assert.match(pair.refresh_token, /^bsr_[A-Za-z0-9_-]{43}$/);
      assert.ok(pair.expires_in > 0);
      const v = await jwtVerify(pair.access_token, keyset, { issuer: ISS, audience: AUD, algorithms: [alg] });
      assert.equal(v.payload.sub, s.user);
      assert.equal(v.payload.sid, s.sid);
      assert.deepEqual(v.payload.scopes, ['bedrock:invoke']);
      assert.deepEqual(v.payload.groups, ['dev']);
      // expires_in counts from the answer, iat from the signature: the
      // answer's time, exp - expires_in, is iat or a moment after it (one
      // second more was seen once: exp capped at the family's expiry, which
      // seedSession wrote with Date.now(), a tick ahead of the daemon's
      // coarse time()).
      const answered = v.payload.exp - pair.expires_in;
      assert.ok(answered >= v.payload.iat && answered <= v.payload.iat + 5,
        `exp ${v.payload.exp}, iat ${v.payload.iat}, expires_in ${pair.expires_in}`);

      // jose refuses it for another issuer or audience (the oracle is not blind).
      await assert.rejects(jwtVerify(t1, keyset, { issuer: 'https://other', audience: AUD }));
      await assert.rejects(jwtVerify(t1, keyset, { issuer: ISS, audience: 'other' }));
      // ... and after its expiry.
      await assert.rejects(jwtVerify(t1, keyset, { issuer: ISS, audience: AUD, currentDate: new Date((payload.exp + 1) * 1000) }));

      // The daemon takes both.
      assert.equal((await validate(d, t1)).status, 200);
      const val = (await validate(d, pair.access_token)).json();
      assert.equal(val.valid, true);
      assert.equal(val.sub, s.user);
      assert.equal(val.expires_at, v.payload.exp);
    } finally {
      await d.stop();
    }
  });
}

test('jose verifies our HS256 tokens with the secret; the JWKS stays empty', async () => {
  const secret = 'an-hs256-secret-of-at-least-32-bytes!!';
  const d = await startDaemon({ config: { jwt: { algorithm: 'HS256', secret, issuer: ISS } } });
  try {
    assert.deepEqual(await jwks(d), { keys: [] });
    const t = await mint(d);
    const { payload, protectedHeader } = await jwtVerify(t, new TextEncoder().encode(secret), {
      issuer: ISS, audience: AUD, algorithms: ['HS256'],
    });
    assert.equal(protectedHeader.alg, 'HS256');
    assert.match(protectedHeader.kid, /^hs-/);
    assert.equal(payload.sub, 'local:bob@example.com');
    assert.ok(payload.exp > nowSec() + 2592000 - 60);
    await assert.rejects(jwtVerify(t, new TextEncoder().encode(`${secret}x`), { algorithms: ['HS256'] }));

    // A token jose signs with the secret and our kid is accepted ...
    const key = new TextEncoder().encode(secret);
    const hdr = { alg: 'HS256', kid: protectedHeader.kid, typ: 'JWT' };
    assert.equal((await validate(d, await sign(baseClaims(), key, hdr))).status, 200);
    // ... and refused with another secret or a wrong claim.
    const other = new TextEncoder().encode(`${secret}-but-another`);
    assert.equal((await validate(d, await sign(baseClaims(), other, hdr))).status, 401);
    assert.equal((await validate(d, await sign(baseClaims({ aud: 'x' }), key, hdr))).status, 401);
  } finally {
    await d.stop();
  }
});

/*
 * Tokens jose signs with the daemon's own key (jwt.key_file) and kid:
 * accepted as they are, refused when any claim or the key is wrong.
 */
async function ownTokenMatrix(d, alg, privateKey, kid, wrongKey) {
  const hdr = { alg, kid, typ: 'JWT' };
  const now = nowSec();
  const ok = async (claims, what, key = privateKey, h = hdr) => {
    const r = await validate(d, await sign(claims, key, h));
    assert.equal(r.status, 200, `${alg} ${what}: ${r.text()}`);
    return r.json();
  };
  const no = async (claims, what, key = privateKey, h = hdr) => {
    const r = await validate(d, await sign(claims, key, h));
    assert.equal(r.status, 401, `${alg} ${what} must be refused: ${r.text()}`);
    assert.equal(r.json().error, 'invalid_token');
    assert.match(r.headers['www-authenticate'], /^Bearer /);
  };
  const v = await ok(baseClaims(), 'as issued');
  assert.equal(v.sub, 'test:carol');
  assert.equal(v.email, 'carol@example.com');
  assert.equal(v.kind, 'token');
  await ok(baseClaims({ aud: ['someone-else', AUD] }), 'aud array holding ours');
  await ok(baseClaims({ exp: now - 30 }), 'exp 30 s ago (60 s leeway)');
  await ok(baseClaims({ nbf: now + 30 }), 'nbf in 30 s (leeway)');
  await ok(baseClaims(), 'without typ', privateKey, { alg, kid });

  await no(baseClaims({ iss: 'https://evil.test' }), 'wrong iss');
  await no(baseClaims({ iss: undefined }), 'no iss');
  await no(baseClaims({ aud: 'someone-else' }), 'wrong aud');
  await no(baseClaims({ aud: ['a', 'b'] }), 'aud array without ours');
  await no(baseClaims({ aud: undefined }), 'no aud');
  await no(baseClaims({ exp: now - 120 }), 'expired');
  await no(baseClaims({ exp: undefined }), 'no exp');
  await no(baseClaims({ exp: String(now + 600) }), 'exp as a string');
  await no(baseClaims({ nbf: now + 300 }), 'nbf in the future');
  await no(baseClaims({ iat: now + 300 }), 'iat in the future');
  await no(baseClaims({ sub: undefined }), 'no sub');
  await no(baseClaims({ sub: '' }), 'empty sub');
  await no(baseClaims({ sub: { id: 1 } }), 'sub not a string');
  await no(baseClaims({ sid: undefined }), 'no sid');
  await no(baseClaims(), 'signed with another key', wrongKey);
  await no(baseClaims(), 'unknown kid', privateKey, { ...hdr, kid: `${kid}x` });
  await no(baseClaims(), 'no kid', privateKey, { alg, typ: 'JWT' });
  await no(baseClaims(), 'typ of an ID token', privateKey, { ...hdr, typ: 'id_token+jwt' });
}

const keyGen = { EdDSA: ['EdDSA', { crv: 'Ed25519' }], ES256: ['ES256', {}], RS256: ['RS256', { modulusLength: 2048 }] };

for (const alg of ['EdDSA', 'ES256', 'RS256']) {
  test(`tokens jose signs with our ${alg} key_file are accepted, and refused when anything is wrong`, async () => {
    const { privateKey, publicKey } = await generateKeyPair(keyGen[alg][0], { ...keyGen[alg][1], extractable: true });
    const pem = await exportPKCS8(privateKey);
    assert.match(pem, /^-----BEGIN PRIVATE KEY-----/);
    const wrong = (await generateKeyPair(keyGen[alg][0], keyGen[alg][1])).privateKey;
    const d = await startDaemon({
      config: (dir) => ({ jwt: { algorithm: alg, issuer: ISS, key_file: `${dir}/signing.pem` } }),
      files: { 'signing.pem': pem },
    });
    try {
      const pub = await exportJWK(publicKey);
      const set = await jwks(d);
      assert.equal(set.keys.length, 1);
      const kid = await calculateJwkThumbprint(pub);
      assert.equal(set.keys[0].kid, kid, 'the kid is the thumbprint of our key');
      for (const p of ['n', 'e', 'x', 'y', 'crv']) assert.equal(set.keys[0][p], pub[p], `JWKS ${p}`);
      // Tokens the daemon mints verify with the public half jose holds.
      const t = await mint(d);
      await jwtVerify(t, publicKey, { issuer: ISS, audience: AUD, algorithms: [alg] });
      assert.equal(decodeJwt(t).header.kid, kid);

      const before = counts(d.dir);
      await ownTokenMatrix(d, alg, privateKey, kid, wrong);
      assert.deepEqual(counts(d.dir), before, 'verifying tokens writes nothing');
    } finally {
      await d.stop();
    }
  });
}

const legacySecrets = { HS256: 'L'.repeat(32), HS384: 'M'.repeat(48), HS512: 'N'.repeat(64) };

for (const alg of ['HS256', 'HS384', 'HS512']) {
  test(`legacy ${alg} tokens signed by jose: accepted with jwt.legacy.secret, refused when anything is wrong`, async () => {
    const secret = legacySecrets[alg];
    const d = await startDaemon({
      config: {
        jwt: { issuer: ISS, legacy: { secret, algorithm: alg, issuer: 'https://legacy.test', audience: 'legacy-aud' } },
      },
    });
    const key = new TextEncoder().encode(secret);
    const now = nowSec();
    const claims = (over = {}) => ({
      iss: 'https://legacy.test', aud: 'legacy-aud', sub: 'legacy-user-1', email: 'l@example.com', iat: now, exp: now + 600, ...over,
    });
    const hdr = { alg, typ: 'JWT' };
    const status = async (c, k = key, h = hdr) => (await validate(d, await sign(c, k, h))).status;
    try {
      const r = await validate(d, await sign(claims(), key, hdr));
      assert.equal(r.status, 200, r.text());
      assert.equal(r.json().kind, 'legacy');
      assert.equal(r.json().sub, 'legacy-user-1');
      assert.equal(r.json().provider, 'legacy');
      assert.equal(await status(claims({ aud: ['x', 'legacy-aud'] })), 200);
      assert.equal(await status(claims(), key, { alg }), 200, 'no typ is fine');

      assert.equal(await status(claims({ iss: 'https://other.test' })), 401, 'wrong iss');
      assert.equal(await status(claims({ iss: undefined })), 401, 'no iss');
      assert.equal(await status(claims({ aud: 'other' })), 401, 'wrong aud');
      assert.equal(await status(claims({ exp: now - 120 })), 401, 'expired');
      assert.equal(await status(claims({ exp: undefined })), 401, 'no exp');
      assert.equal(await status(claims({ nbf: now + 300 })), 401, 'nbf in the future');
      assert.equal(await status(claims({ sub: undefined })), 401, 'no sub');
      assert.equal(await status(claims({ sub: '' })), 401, 'empty sub');
      assert.equal(await status(claims(), new TextEncoder().encode(`${secret}x`)), 401, 'wrong secret');
      // The secret with another HMAC: each key is pinned to one algorithm.
      const otherAlg = alg === 'HS256' ? 'HS512' : 'HS256';
      assert.equal(await status(claims(), key, { alg: otherAlg }), 401, `${otherAlg} with the ${alg} secret`);
    } finally {
      await d.stop();
    }
  });
}

test('legacy tokens without a configured issuer or audience: any iss but ours', async () => {
  const secret = legacySecrets.HS256;
  const d = await startDaemon({ config: { jwt: { issuer: ISS, legacy: { secret } } } });
  const key = new TextEncoder().encode(secret);
  const now = nowSec();
  try {
    const st = async (c, h = { alg: 'HS256' }) => (await validate(d, await sign(c, key, h))).status;
    assert.equal(await st({ sub: 'u1', exp: now + 60 }), 200, 'no iss, no aud');
    assert.equal(await st({ sub: 'u1', exp: now + 60, iss: 'seed', aud: 'whatever' }), 200);
    assert.equal(await st({ sub: 'u1', exp: now - 300 }), 401, 'expired');
    assert.equal(await st({ sub: 'u1' }), 401, 'no exp');
    assert.equal(await st({ exp: now + 60 }), 401, 'no sub');
    // Our issuer with a kid never falls back to the legacy secret.
    assert.equal(await st({ sub: 'u1', exp: now + 60, iss: ISS, aud: AUD, sid: 's', jti: 'j', iat: now },
      { alg: 'HS256', kid: 'whatever' }), 401);
  } finally {
    await d.stop();
  }
});

test('discovery: RFC 8414 metadata and JWKS caching headers', async () => {
  const d = await startDaemon({ config: { server: { public_url: 'https://proxy.example.com' } } });
  try {
    const r = await d.request('/.well-known/oauth-authorization-server');
    assert.equal(r.status, 200);
    const m = r.json();
    assert.equal(m.issuer, 'https://proxy.example.com');
    assert.equal(m.jwks_uri, 'https://proxy.example.com/.well-known/jwks.json');
    assert.equal(m.revocation_endpoint, 'https://proxy.example.com/auth/revoke');
    assert.equal(m.token_endpoint, 'https://proxy.example.com/oauth/token');
    assert.deepEqual(m.response_types_supported, ['code']);
    assert.ok(m.grant_types_supported.includes('refresh_token'));
    assert.deepEqual(m.code_challenge_methods_supported, ['S256']);
    assert.deepEqual(m.scopes_supported, ['bedrock:invoke']);
    // The issuer of the metadata is the issuer of our tokens.
    const t = await mint(d);
    assert.equal(decodeJwt(t).payload.iss, m.issuer);
    assert.equal((await validate(d, t)).status, 200);
    const k = await d.request('/.well-known/jwks.json');
    assert.match(k.headers['content-type'], /^application\/json/);
    assert.equal(k.json().keys[0].kid, decodeJwt(t).header.kid);
  } finally {
    await d.stop();
  }
});

test('-n checks jwt.key_file against jwt.algorithm and says where it was set (file:line)', async () => {
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  const files = { 'k.pem': await exportPKCS8(privateKey) };
  const ok = await runCommand(['-n'], { config: (dir) => ({ jwt: { algorithm: 'ES256', key_file: `${dir}/k.pem` } }), files });
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /configuration OK/);
  const bad = await runCommand(['-n'], { config: (dir) => ({ jwt: { algorithm: 'EdDSA', key_file: `${dir}/k.pem` } }), files });
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /config\.yaml:\d+: jwt\.key_file .*k\.pem: EdDSA needs an Ed25519 key/);
  const rsa = await runCommand(['-n'], { config: (dir) => ({ jwt: { algorithm: 'RS256', key_file: `${dir}/k.pem` } }), files });
  assert.equal(rsa.code, 1);
  assert.match(rsa.stderr, /config\.yaml:\d+: jwt\.key_file/);
});
