// A token whose key id its issuer does not publish, sent while that
// issuer's JWKS is being fetched (at start-up here; the periodic refresh
// is the same), waits for the fetch and then gets a final answer. It used
// to queue itself again on the fetch that had just woken it, inside the
// loop that was calling the waiters: the daemon spun at 100% CPU and never
// answered anything again (security review, issue 9, finding 1). Both
// paths that wait for keys: a bearer token of a trusted issuer, and the ID
// token of a sign-in. The fake IdP holds its JWKS answer until the test
// releases it; every wait below is bounded, none is a timing assertion.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startFakeOidc } from './lib/fake-oidc-bad.mjs';
import { fetchLogin, loginConfig, startLoginDaemon, stopAll } from './lib/login.mjs';
import { waitFor } from './lib/util.mjs';

const AUD = 'api://bedrock-proxy';
const b64u = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');

/**
 * Run body(ctx) with the fake IdP's JWKS held; stop everything after. A
 * daemon that hung is killed, so that the failure reported is the body's.
 */
async function withHeldJwks(body) {
  const op = await startFakeOidc();
  const ctx = { op, release: op.holdJwks(), d: null };
  let ok = false;
  try {
    await body(ctx);
    ok = true;
  } finally {
    ctx.release();
    if (!ok) await ctx.d?.kill9();
    await stopAll(ok ? ctx.d : null, op);
  }
}

/** The daemon still serves: /health answers at all within 5 s. */
async function assertServing(d) {
  const h = await d.request('/health', { timeoutMs: 5000 });
  assert.equal(h.status, 200);
}

test('a forged key id sent while the JWKS is fetched gets a 401; the daemon keeps serving', () => withHeldJwks(async (ctx) => {
  const { op, release } = ctx;
  const d = ctx.d = await startLoginDaemon(loginConfig({
    over: {
      oauth: { trusted_issuers: [{ issuer: op.issuer, audience: [AUD], jwks_uri: `${op.issuer}/jwks`, provider_name: 'corp' }] },
    },
  }), { keys: 0, args: ['-T', 'oauth,auth'] });
  // The start-up fetch has reached the IdP and is held there.
  await waitFor(() => op.jwksFetches >= 1, { message: 'the daemon never asked for the JWKS' });
  const forged = `${b64u({ alg: 'RS256', kid: 'x' })}.${b64u({ iss: op.issuer })}.junk`;
  const mark = d.logMark();
  const pending = d.request('/auth/validate', { headers: { Authorization: `Bearer ${forged}` }, timeoutMs: 5000 });
  await d.waitForLog(/waiting for .*'s keys/, 5000, { from: mark });
  release();
  const r = await pending;
  assert.equal(r.status, 401, r.text());
  assert.match(r.json().error_description, /does not publish/);
  await assertServing(d);
  // The fetch it waited for was the minute's re-fetch: the next forged
  // token is refused at once, without another fetch.
  const again = await d.request('/auth/validate', { headers: { Authorization: `Bearer ${forged}` }, timeoutMs: 5000 });
  assert.equal(again.status, 401);
  assert.equal(op.jwksFetches, 1, 'no JWKS fetch beyond the start-up one');
  await assertServing(d);
}));

test('a sign-in whose ID token names an unknown key, while the JWKS is fetched: a clean failure; the daemon keeps serving', () => withHeldJwks(async (ctx) => {
  const { op, release } = ctx;
  // Endpoints and jwks_uri configured: sign-ins start before the keys are in.
  const d = ctx.d = await startLoginDaemon(loginConfig({
    providers: {
      op: {
        issuer: op.issuer, client_id: op.clientId, client_secret: op.clientSecret,
        authorization_url: `${op.issuer}/authorize`, token_url: `${op.issuer}/token`,
        user_info_url: `${op.issuer}/userinfo`, jwks_uri: `${op.issuer}/jwks`,
      },
    },
  }), { keys: 0 });
  await waitFor(() => op.jwksFetches >= 1, { message: 'the daemon never asked for the JWKS' });
  op.next = { signWith: 'unpublished' };
  const mark = d.logMark();
  const pending = fetchLogin(d, 'op', { signal: AbortSignal.timeout(8000) });
  // The callback has its ID token and waits for the keys.
  await d.waitForLog(/-> KEYS/, 5000, { from: mark });
  release();
  const r = await pending;
  assert.equal(r.res.status, 502, r.text);
  assert.match(r.text, /does not publish/);
  await assertServing(d);
  assert.equal(op.jwksFetches, 1, 'no JWKS fetch beyond the start-up one');
  // The IdP behaves again: sign-ins work.
  op.next = {};
  const ok = await fetchLogin(d, 'op', { signal: AbortSignal.timeout(8000) });
  assert.equal(ok.res.status, 200, ok.text);
}));
