// The API flow (clients that handle the redirect themselves, RFC 8252):
// GET /auth/authorize/NAME?redirect_uri= gives the authorization URL and
// the state (the sign-in itself, sealed); the client's user logs in at the
// IdP, which redirects to the client's loopback URI with the code and that
// state; the client posts both to /auth/token.
// End to end against oidc-provider (its login and consent pages driven in
// Chromium); refusals against fake-oidc-bad, driven with fetch().
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, test } from 'node:test';
import { CLIENT_ID, CLIENT_SECRET, startFakeIdp } from './lib/fake-idp.mjs';
import { startFakeOidc } from './lib/fake-oidc-bad.mjs';
import {
  assertNoToken, invoke, launchBrowser, loginConfig, loginState, newContext, startBedrock, startLoginDaemon, validate, stopAll,
} from './lib/login.mjs';

let browser;
after(async () => { await browser?.close(); });

const LOOPBACK = 'http://127.0.0.1:47913/oauth/callback';
const postToken = (d, body) => d.request('/auth/token', {
  method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
});
/** A client's PKCE pair (RFC 7636, S256) and its query parameters. */
function newPkce() {
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  return { verifier, challenge, query: `&code_challenge=${challenge}&code_challenge_method=S256` };
}

test('API flow end to end with oidc-provider and a loopback redirect URI', async () => {
  const idp = await startFakeIdp();
  const bedrock = await startBedrock();
  const d = await startLoginDaemon(loginConfig({
    bedrock, providers: { idp: { issuer: idp.url, client_id: CLIENT_ID, client_secret: CLIENT_SECRET } },
  }));
  idp.setRedirectUris([`${d.url}/auth/callback/idp`, LOOPBACK]);
  browser ??= await launchBrowser();
  const ctx = await newContext(browser);
  try {
    const pkce = newPkce();
    const a = await d.request(`/auth/authorize/idp?redirect_uri=${encodeURIComponent(LOOPBACK)}${pkce.query}`);
    assert.equal(a.status, 200, a.text());
    assert.equal(a.headers['cache-control'], 'no-store');
    const { authorization_url: url, state, provider } = a.json();
    assert.equal(provider, 'idp');
    // The sign-in itself, sealed: nothing was stored for it.
    assert.match(state, /^[\w-]{200,512}$/);
    assert.equal(loginState(d.dir).states, 0);
    const q = new URL(url).searchParams;
    assert.equal(q.get('redirect_uri'), LOOPBACK);
    assert.equal(q.get('state'), state);
    assert.equal(q.get('code_challenge_method'), 'S256');
    assert.ok(url.startsWith(`${idp.url}/auth?`));

    // The user at the IdP; the "client" is whatever answers the loopback URI.
    const page = await ctx.newPage();
    const caught = new Promise((res) => {
      page.on('request', (r) => { if (r.url().startsWith(LOOPBACK)) res(r.url()); });
    });
    await page.goto(url);
    await page.fill('input[name=login]', 'alice');
    await page.fill('input[name=password]', 'pw');
    await page.click('button[type=submit]');
    await page.waitForSelector('form input[name=prompt][value=consent]', { state: 'attached' });
    await page.click('button[type=submit]').catch(() => {});
    const back = new URL(await caught).searchParams;
    assert.equal(back.get('state'), state);
    assert.equal(back.get('iss'), idp.url);

    const r = await postToken(d, {
      provider: 'idp', authorization_code: back.get('code'), redirect_uri: LOOPBACK, state, code_verifier: pkce.verifier,
    });
    assert.equal(r.status, 200, r.text());
    assert.equal(r.headers['cache-control'], 'no-store');
    const tok = r.json();
    assert.equal(tok.token_type, 'Bearer');
    assert.ok(tok.expires_in > 0);
    assert.match(tok.refresh_token, /^bsr_/);
    assert.ok('scope' in tok);
    const v = await validate(d, tok.access_token);
    assert.equal(v.status, 200, v.text());
    assert.equal(v.json().sub, 'idp:alice');
    assert.equal((await invoke(d, tok.access_token)).status, 200);

    // The same code and state again: refused, no second session.
    const before = loginState(d.dir);
    const again = await postToken(d, {
      provider: 'idp', authorization_code: back.get('code'), redirect_uri: LOOPBACK, state, code_verifier: pkce.verifier,
    });
    assert.equal(again.status, 400);
    assert.equal(again.json().error, 'invalid_grant');
    // A spent state names no sign-in any more: a log line, no audit write.
    assertNoToken(d.dir, before, { users: 1 });
    assert.equal(loginState(d.dir).audit.length, before.audit.length, 'no audit row for a replay');
    await d.waitForLog((l) => /refused before any state/.test(l?.msg ?? ''));
    // The refresh token works as for browser logins.
    const rf = await d.request('/auth/refresh', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ refresh_token: tok.refresh_token }),
    });
    assert.equal(rf.status, 200, rf.text());
  } finally {
    await ctx.close().catch(() => {});
    await stopAll(d, idp, bedrock);
  }
});

async function setupBad(access) {
  const op = await startFakeOidc();
  const d = await startLoginDaemon(loginConfig({
    providers: {
      op: { issuer: op.issuer, client_id: op.clientId, client_secret: op.clientSecret },
      other: { issuer: op.issuer, client_id: op.clientId, client_secret: op.clientSecret },
    },
    access,
  }), { keys: 1 });
  return { op, d, stop: () => stopAll(d, op) };
}

/**
 * Authorize via the API, follow the fake IdP's redirect; returns {state,
 * code, code_verifier}. A PKCE pair of its own unless extra has one or
 * pkce is false.
 */
async function apiCode(d, { provider = 'op', redirectUri = LOOPBACK, extra, pkce = true } = {}) {
  const own = newPkce();
  const q = `redirect_uri=${encodeURIComponent(redirectUri)}${extra ?? (pkce ? own.query : '')}`;
  const a = await d.request(`/auth/authorize/${provider}?${q}`);
  assert.equal(a.status, 200, a.text());
  const r = await fetch(a.json().authorization_url, { redirect: 'manual' });
  assert.equal(r.status, 302);
  const back = new URL(r.headers.get('location'));
  assert.ok(back.href.startsWith(redirectUri.split('?')[0]));
  return {
    state: back.searchParams.get('state'), code: back.searchParams.get('code'),
    ...(extra === undefined && pkce ? { code_verifier: own.verifier } : {}),
  };
}

test('API flow: the proxy makes the state, the configured redirect URI, and what /auth/token refuses', async () => {
  const t = await setupBad({ allowed_email_domains: ['example.com'] });
  try {
    const { d, op } = t;
    // The state carries the sign-in, sealed: a client cannot choose it.
    for (const mine of ['client-chosen-state_0123456789-abcdefghijkl', '', 'short']) {
      const r = await d.request(`/auth/authorize/op?redirect_uri=${encodeURIComponent(LOOPBACK)}&state=${encodeURIComponent(mine)}`);
      assert.equal(r.status, 400, mine);
      assert.equal(r.json().error, 'invalid_request');
      assert.match(r.json().error_description, /state is made by this proxy/);
    }
    let { state, code, code_verifier: cv } = await apiCode(d);
    let r = await postToken(d, { provider: 'op', authorization_code: code, redirect_uri: LOOPBACK, state, code_verifier: cv });
    assert.equal(r.status, 200, r.text());

    // The configured redirect URI works on the API flow too, with or
    // without the client's PKCE.
    const cfg = `${d.url}/auth/callback/op`;
    ({ state, code } = await apiCode(d, { redirectUri: cfg, pkce: false }));
    r = await postToken(d, { provider: 'op', authorization_code: code, redirect_uri: cfg, state });
    assert.equal(r.status, 200, r.text());

    // What cannot be this client's state is refused, and spends nothing:
    // a redirect_uri other than the state's, another provider's name, a
    // browser-flow state, an altered state; malformed requests.
    const before = loginState(d.dir);
    ({ state, code, code_verifier: cv } = await apiCode(d));
    const lg = await fetch(`${d.url}/auth/login/op`, { redirect: 'manual' });
    const bstate = new URL(lg.headers.get('location')).searchParams.get('state');
    const flip = (s, i) => `${s.slice(0, i)}${s[i] === 'A' ? 'B' : 'A'}${s.slice(i + 1)}`;
    const refusals = [
      [{ provider: 'op', authorization_code: code, redirect_uri: 'http://127.0.0.1:47913/other', state, code_verifier: cv }, 400, 'invalid_grant', /does not match/],
      [{ provider: 'other', authorization_code: code, redirect_uri: LOOPBACK, state, code_verifier: cv }, 400, 'invalid_grant', /does not match/],
      [{ provider: 'op', authorization_code: 'x', redirect_uri: `${d.url}/auth/callback/op`, state: bstate }, 400, 'invalid_grant', /did not issue it/],
      [{ provider: 'op', authorization_code: code, redirect_uri: LOOPBACK, state: flip(state, 100), code_verifier: cv }, 400, 'invalid_grant', /altered/],
      [{ provider: 'op', authorization_code: code, redirect_uri: LOOPBACK, state: state.slice(0, -1), code_verifier: cv }, 400, 'invalid_grant', /altered/],
      [{ provider: 'op', authorization_code: code, redirect_uri: LOOPBACK, state: `${state}A`, code_verifier: cv }, 400, 'invalid_grant', /altered/],
      [{ provider: 'op', authorization_code: 'x', redirect_uri: LOOPBACK }, 400, 'invalid_request'],
      [{ provider: 'nope', authorization_code: 'x', redirect_uri: LOOPBACK, state: 'y'.repeat(43) }, 400, 'invalid_request'],
      [{ provider: 'op', authorization_code: 7, redirect_uri: LOOPBACK, state: 'y'.repeat(43) }, 400, 'invalid_request'],
      [{ provider: 'op', authorization_code: 'x', redirect_uri: LOOPBACK, state: 'y'.repeat(513) }, 400, 'invalid_request'],
    ];
    for (const [body, status, error, re] of refusals) {
      r = await postToken(d, body);
      assert.equal(r.status, status, `${JSON.stringify(body)}: ${r.text()}`);
      assert.equal(r.json().error, error, JSON.stringify(body));
      if (re) assert.match(r.json().error_description, re, JSON.stringify(body));
    }
    const after = loginState(d.dir);
    assert.deepEqual(after, before, 'junk at /auth/token wrote nothing');
    assert.equal(op.tokenRequests.length, 2, 'and exchanged no code');
    // The client that holds the state still finishes its sign-in.
    r = await postToken(d, { provider: 'op', authorization_code: code, redirect_uri: LOOPBACK, state, code_verifier: cv });
    assert.equal(r.status, 200, r.text());

    // The IdP refuses the code: the state is spent, and that is audited.
    const before2 = loginState(d.dir);
    ({ state, code, code_verifier: cv } = await apiCode(d));
    r = await postToken(d, { provider: 'op', authorization_code: 'not-the-code', redirect_uri: LOOPBACK, state, code_verifier: cv });
    assert.equal(r.status, 400);
    assert.equal(r.json().error, 'invalid_grant');
    assert.match(r.json().error_description, /refused the code/);
    r = await postToken(d, { provider: 'op', authorization_code: code, redirect_uri: LOOPBACK, state, code_verifier: cv });
    assert.equal(r.status, 400, 'spent by the refused exchange');
    assert.match(r.json().error_description, /already used/);
    // A user the policy refuses.
    op.user = { ...op.user, email: 'olivia@evil.test' };
    ({ state, code, code_verifier: cv } = await apiCode(d));
    r = await postToken(d, { provider: 'op', authorization_code: code, redirect_uri: LOOPBACK, state, code_verifier: cv });
    assert.equal(r.status, 403, r.text());
    assert.equal(r.json().error, 'access_denied');
    assert.equal(r.json().access_token, undefined);
    assertNoToken(d.dir, before2, { event: 'login_refused', users: 1 });
    const failed = loginState(d.dir).audit.slice(before2.audit.length).filter((x) => x.event === 'login_failed');
    assert.equal(failed.length, 1, JSON.stringify(failed));
    assert.equal(loginState(d.dir).states, after.states + 3, 'three redeemed states: a success and two refusals');
  } finally {
    await t.stop();
  }
});

test('API flow: a loopback redirect_uri without the client\'s PKCE is refused (RFC 8252); the configured one needs none', async () => {
  const t = await setupBad({ allowed_email_domains: ['example.com'] });
  try {
    const { d, op } = t;
    for (const ru of [LOOPBACK, 'http://[::1]:8765/cb', 'http://127.0.0.1/cb?x=1']) {
      const r = await d.request(`/auth/authorize/op?redirect_uri=${encodeURIComponent(ru)}`);
      assert.equal(r.status, 400, `${ru}: ${r.text()}`);
      assert.equal(r.json().error, 'invalid_request');
      assert.match(r.json().error_description, /loopback redirect_uri needs PKCE \(RFC 8252\).*code_challenge_method=S256/);
      assert.equal(r.json().authorization_url, undefined);
      const ok = await d.request(`/auth/authorize/op?redirect_uri=${encodeURIComponent(ru)}${newPkce().query}`);
      assert.equal(ok.status, 200, `${ru} with PKCE: ${ok.text()}`);
    }
    // The whole flow with PKCE; and the provider's own redirect URI without.
    const { state, code, code_verifier: cv } = await apiCode(d);
    let r = await postToken(d, { provider: 'op', authorization_code: code, redirect_uri: LOOPBACK, state, code_verifier: cv });
    assert.equal(r.status, 200, r.text());
    const cfg = `${d.url}/auth/callback/op`;
    const c2 = await apiCode(d, { redirectUri: cfg, pkce: false });
    r = await postToken(d, { provider: 'op', authorization_code: c2.code, redirect_uri: cfg, state: c2.state });
    assert.equal(r.status, 200, r.text());
    assert.equal(op.authorizeRequests.length, 2, 'the refused requests never reached the IdP');
  } finally {
    await t.stop();
  }
});

test('API flow with the client\'s own PKCE (RFC 7636): a code intercepted on the loopback is useless without the verifier', async () => {
  const t = await setupBad({ allowed_email_domains: ['example.com'] });
  try {
    const { d } = t;
    const verifier = randomBytes(32).toString('base64url');
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    const pkce = `&code_challenge=${challenge}&code_challenge_method=S256`;
    // The client that holds the verifier gets its tokens.
    let { state, code } = await apiCode(d, { extra: pkce });
    let r = await postToken(d, { provider: 'op', authorization_code: code, redirect_uri: LOOPBACK, state, code_verifier: verifier });
    assert.equal(r.status, 200, r.text());
    assert.equal((await validate(d, r.json().access_token)).status, 200);
    // Another program that caught code and state on the loopback port is
    // refused without spending the state: the client still finishes.
    for (const [cv, re] of [[undefined, /code_verifier is missing/], [randomBytes(32).toString('base64url'), /does not match the code_challenge/],
      ['short', /malformed/], [`${verifier}!`, /malformed/]]) {
      ({ state, code } = await apiCode(d, { extra: pkce }));
      const before = loginState(d.dir);
      r = await postToken(d, { provider: 'op', authorization_code: code, redirect_uri: LOOPBACK, state, ...(cv ? { code_verifier: cv } : {}) });
      assert.equal(r.status, 400, r.text());
      assert.equal(r.json().error, 'invalid_grant');
      assert.match(r.json().error_description, re);
      assert.deepEqual(loginState(d.dir), before, 'nothing written');
      r = await postToken(d, { provider: 'op', authorization_code: code, redirect_uri: LOOPBACK, state, code_verifier: verifier });
      assert.equal(r.status, 200, r.text());
      r = await postToken(d, { provider: 'op', authorization_code: code, redirect_uri: LOOPBACK, state, code_verifier: verifier });
      assert.equal(r.status, 400, 'then it is spent');
    }
    // A verifier for a state that had no challenge (the configured
    // redirect URI) is refused too.
    const cfg = `${d.url}/auth/callback/op`;
    ({ state, code } = await apiCode(d, { redirectUri: cfg, pkce: false }));
    r = await postToken(d, { provider: 'op', authorization_code: code, redirect_uri: cfg, state, code_verifier: verifier });
    assert.equal(r.status, 400);
    assert.match(r.json().error_description, /had no code_challenge/);
    // Malformed challenges never make a state.
    for (const bad of ['&code_challenge=abc', `&code_challenge=${challenge}&code_challenge_method=plain`,
      `&code_challenge=${challenge}&code_challenge=${challenge}`, '&code_challenge_method=S256', `&code_challenge=${challenge.slice(0, 42)}*`]) {
      r = await d.request(`/auth/authorize/op?redirect_uri=${encodeURIComponent(LOOPBACK)}${bad}`);
      assert.equal(r.status, 400, bad);
      assert.equal(r.json().error, 'invalid_request', bad);
    }
    // The metadata says so.
    const meta = (await d.request('/.well-known/oauth-authorization-server')).json();
    assert.deepEqual(meta.code_challenge_methods_supported, ['S256']);
  } finally {
    await t.stop();
  }
});
