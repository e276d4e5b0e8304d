// oauth.trusted_issuers: access JWTs issued by an IdP (signed here with the
// fake IdP's own keys through `jose`) are accepted as bearer tokens on
// /auth/validate and the Bedrock routes; a generic one (aud) and a
// Cognito-shaped one (token_use=access, client_id instead of aud). Wrong
// audience, issuer, token_use, expired or unknown keys are refused, the
// access policy applies (403), and an unknown kid makes the daemon fetch
// the issuer's JWKS once (then it succeeds if the key was rotated in).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startFakeOidc } from './lib/fake-oidc-bad.mjs';
import {
  invoke, loginConfig, reloadConfig, startBedrock, startLoginDaemon, validate, stopAll,
} from './lib/login.mjs';
import { nowSec } from './lib/tokens.mjs';

const AUD = 'api://bedrock-proxy';
const COG_CLIENT = 'cognito-app-client-1';

async function setup() {
  const corp = await startFakeOidc();
  const cog = await startFakeOidc({ path: '/us-east-1_AbCdEf123' });
  const bedrock = await startBedrock();
  const config = (access) => loginConfig({
    bedrock,
    access,
    over: {
      oauth: {
        timeout: 3,
        trusted_issuers: [
          { issuer: corp.issuer, audience: [AUD], provider_name: 'corp' },
          {
            issuer: cog.issuer, audience: [COG_CLIENT], jwks_uri: `${cog.issuer}/.well-known/jwks.json`, token_use: 'access',
            groups_claim: 'cognito:groups', provider_name: 'cognito',
          },
        ],
      },
    },
  });
  const access = { allowed_email_domains: ['example.com'], allowed_groups: ['bedrock-users'] };
  const d = await startLoginDaemon(config(access), { keys: 2 });
  return {
    corp, cog, d, config, access,
    stop: () => stopAll(d, corp, cog, bedrock),
  };
}

const corpClaims = (corp, over = {}) => ({
  iss: corp.issuer, aud: AUD, sub: 'emp-1', email: 'ann@example.com', email_verified: true, iat: nowSec(), exp: nowSec() + 600, ...over,
});
const cogClaims = (cog, over = {}) => ({
  iss: cog.issuer, client_id: COG_CLIENT, token_use: 'access', sub: 'c-0001', username: 'carl', 'cognito:groups': ['bedrock-users'],
  scope: 'openid', iat: nowSec(), exp: nowSec() + 600, ...over,
});

test('trusted issuers: IdP access JWTs work on /auth/validate and Bedrock; bad ones are refused', async () => {
  const t = await setup();
  try {
    const { d, corp, cog } = t;
    // 1. a generic IdP access token (RFC 9068 typ)
    const good = await corp.sign(corpClaims(corp), { header: { typ: 'at+jwt' } });
    let v = await validate(d, good);
    assert.equal(v.status, 200, v.text());
    assert.equal(v.json().sub, 'corp:emp-1');
    assert.equal(v.json().provider, 'corp');
    assert.equal(v.json().email, 'ann@example.com');
    assert.equal((await invoke(d, good)).status, 200);
    // 2. a Cognito access token: client_id, token_use, cognito:groups
    const cg = await cog.sign(cogClaims(cog));
    v = await validate(d, cg);
    assert.equal(v.status, 200, v.text());
    assert.equal(v.json().sub, 'cognito:c-0001');
    assert.equal((await invoke(d, cg, { prefix: '/bedrock' })).status, 200);

    // Refused with 401.
    const bad = {
      'wrong audience': await corp.sign(corpClaims(corp, { aud: 'api://someone-else' })),
      'no audience': await corp.sign(corpClaims(corp, { aud: undefined })),
      'wrong issuer': await corp.sign(corpClaims(corp, { iss: `${corp.issuer}/other` })),
      expired: await corp.sign(corpClaims(corp, { exp: nowSec() - 3600, iat: nowSec() - 7200 })),
      'not yet valid': await corp.sign(corpClaims(corp, { nbf: nowSec() + 3600 })),
      'wrong typ': await corp.sign(corpClaims(corp), { header: { typ: 'id_token+jwt' } }),
      'signed by the other issuer': await cog.sign(corpClaims(corp)),
      'HS256 with the kid': await (async () => {
        const { SignJWT } = await import('jose');
        return new SignJWT(corpClaims(corp)).setProtectedHeader({ alg: 'HS256', kid: corp.keys[0].kid })
          .sign(new TextEncoder().encode('0123456789abcdef0123456789abcdef'));
      })(),
      'cognito id token': await cog.sign(cogClaims(cog, { token_use: 'id', aud: COG_CLIENT, client_id: undefined })),
      'cognito wrong client': await cog.sign(cogClaims(cog, { client_id: 'another-client' })),
      'cognito no token_use': await cog.sign(cogClaims(cog, { token_use: undefined })),
    };
    for (const [what, tok] of Object.entries(bad)) {
      v = await validate(d, tok);
      assert.equal(v.status, 401, `${what}: ${v.text()}`);
      const b = await invoke(d, tok);
      assert.equal(b.status, 401, what);
      assert.equal(b.headers['x-amzn-errortype'], 'UnrecognizedClientException');
    }

    // The access policy applies to their claims: 403.
    const policy = {
      'domain not allowed': await corp.sign(corpClaims(corp, { sub: 'emp-2', email: 'bob@other.test' })),
      'email not verified': await corp.sign(corpClaims(corp, { sub: 'emp-3', email_verified: false })),
      'no group': await cog.sign(cogClaims(cog, { sub: 'c-0002', 'cognito:groups': ['sales'] })),
    };
    for (const [what, tok] of Object.entries(policy)) {
      v = await validate(d, tok);
      assert.equal(v.status, 403, `${what}: ${v.text()}`);
      const b = await invoke(d, tok);
      assert.equal(b.status, 403, what);
      assert.equal(b.headers['x-amzn-errortype'], 'AccessDeniedException');
    }
  } finally {
    await t.stop();
  }
});

test('trusted issuers: an unknown kid fetches the JWKS once, then works when the key was rotated in', async () => {
  const t = await setup();
  try {
    const { d, cog, corp } = t;
    // A key the issuer does not publish: one fetch, refused; no second fetch within a minute.
    const f0 = cog.jwksFetches;
    const stray = await cog.sign(cogClaims(cog), { key: cog.unpublished });
    assert.equal((await validate(d, stray)).status, 401);
    assert.equal(cog.jwksFetches, f0 + 1);
    assert.equal((await validate(d, stray)).status, 401);
    assert.equal(cog.jwksFetches, f0 + 1, 'throttled');

    // The other issuer rotates: its new kid is fetched once and accepted.
    const g0 = corp.jwksFetches;
    await corp.rotate({ keepOld: true });
    const fresh = await corp.sign(corpClaims(corp));
    const [v, b] = await Promise.all([validate(d, fresh), invoke(d, fresh)]);
    assert.equal(v.status, 200, v.text());
    assert.equal(b.status, 200, b.text());
    assert.equal(corp.jwksFetches, g0 + 1, 'two requests waiting on one fetch');
    assert.equal((await validate(d, fresh)).status, 200);
    assert.equal(corp.jwksFetches, g0 + 1);
  } finally {
    await t.stop();
  }
});

test('trusted issuers: a policy change (SIGHUP) applies to external tokens already seen', async () => {
  const t = await setup();
  try {
    const { d, corp, config } = t;
    const tok = await corp.sign(corpClaims(corp));
    assert.equal((await validate(d, tok)).status, 200);
    await reloadConfig(d, config({ allowed_email_domains: ['other.test'] }));
    const v = await validate(d, tok);
    assert.equal(v.status, 403, v.text());
  } finally {
    await t.stop();
  }
});
