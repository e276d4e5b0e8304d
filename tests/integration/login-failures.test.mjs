// Identity providers that are down, slow (longer than oauth.timeout) or
// answer garbage: the user gets a clean error page within the configured
// timeout, no token is issued, the daemon carries on (/health 200) and the
// next login works once the IdP is back. The IdP is fake-oidc-bad.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startFakeOidc } from './lib/fake-oidc-bad.mjs';
import {
  assertNoToken, fetchLogin, loginConfig, loginState, startLoginDaemon, tokenFromHtml, validate, stopAll,
} from './lib/login.mjs';

const TIMEOUT = 2; // oauth.timeout, seconds

async function setup(opOpts = {}, { keys = 1 } = {}) {
  const op = await startFakeOidc(opOpts);
  const d = await startLoginDaemon(loginConfig({
    providers: { op: { issuer: op.issuer, client_id: op.clientId, client_secret: op.clientSecret } },
    over: { oauth: { timeout: TIMEOUT } },
  }), { keys });
  return { op, d, stop: () => stopAll(d, op) };
}

async function healthyAndWorking(d, op) {
  assert.equal((await fetch(`${d.url}/health`)).status, 200);
  op.next = {};
  const r = await fetchLogin(d, 'op');
  assert.equal(r.res.status, 200, r.text);
  assert.equal((await validate(d, tokenFromHtml(r.text))).status, 200);
}

test('IdP slower than oauth.timeout: a clean 504 page in time, then logins work again', async () => {
  const t = await setup();
  try {
    const { d, op } = t;
    op.next = { token: 'slow', slowMs: 8000 };
    const before = loginState(d.dir);
    const r = await fetchLogin(d, 'op');
    assert.equal(r.res.status, 504, r.text);
    assert.match(r.text, /could not be reached/);
    assert.ok(r.ms >= TIMEOUT * 1000 - 200 && r.ms < TIMEOUT * 1000 + 1500, `answered after ${r.ms} ms`);
    assertNoToken(d.dir, before, { event: 'login_failed', users: 0 });
    await healthyAndWorking(d, op);
  } finally {
    await t.stop();
  }
});

test('IdP down: an error page at once, the daemon unaffected, logins work once it is back', async () => {
  const t = await setup();
  try {
    const { d, op } = t;
    // A first login leaves a kept-alive connection to the IdP in the pool.
    await healthyAndWorking(d, op);
    const { authUrl, jar } = await fetchLogin(d, 'op', { stopAt: 'idp' });
    await op.down();
    const state = new URL(authUrl).searchParams.get('state');
    const before = loginState(d.dir);
    const t0 = Date.now();
    const res = await jar.fetch(`${d.url}/auth/callback/op?code=whatever&state=${state}`);
    const text = await res.text();
    assert.equal(res.status, 502, text);
    assert.match(text, /could not be reached/);
    assert.ok(Date.now() - t0 < TIMEOUT * 1000 + 1000);
    assertNoToken(d.dir, before, { event: 'login_failed' });
    assert.equal((await fetch(`${d.url}/health`)).status, 200);
    await op.up();
    await healthyAndWorking(d, op);
  } finally {
    await t.stop();
  }
});

test('IdP answering garbage, an HTML error page or an OAuth error: clean pages without its markup', async () => {
  const t = await setup();
  try {
    const { d, op } = t;
    for (const [next, status, re] of [
      [{ token: 'garbage' }, 502, /unreadable answer/],
      [{ token: 'html' }, 502, /unreadable answer/],
      [{ token: 'reset' }, 502, /could not be reached/],
      [{ token: 'error', errorDescription: 'code <b>expired</b>' }, 400, /refused the code: invalid_grant: code &lt;b&gt;expired&lt;\/b&gt;/],
    ]) {
      op.next = next;
      const before = loginState(d.dir);
      const r = await fetchLogin(d, 'op');
      assert.equal(r.res.status, status, `${JSON.stringify(next)}: ${r.text}`);
      assert.match(r.text, re);
      assert.doesNotMatch(r.text, /<h1>502 Bad Gateway|<b>expired|alert\(1\)/);
      assertNoToken(d.dir, before, { event: 'login_failed', users: 0 });
    }
    // Userinfo (read when the ID token has no email): failing, or about someone else.
    for (const [next, re] of [
      [{ idTokenWithoutProfile: true, userinfoStatus: 500 }, /user information could not be read/],
      [{ idTokenWithoutProfile: true, userinfo: { sub: 'someone-else' } }, /about someone else/],
    ]) {
      op.next = next;
      const before = loginState(d.dir);
      const r = await fetchLogin(d, 'op');
      assert.equal(r.res.status, 502, r.text);
      assert.match(r.text, re);
      assertNoToken(d.dir, before, { event: 'login_failed', users: 0 });
    }
    op.next = { idTokenWithoutProfile: true };
    const r = await fetchLogin(d, 'op');
    assert.equal(r.res.status, 200, r.text);
    assert.equal((await validate(d, tokenFromHtml(r.text))).json().email, op.user.email, 'the email came from userinfo');
    await healthyAndWorking(d, op);
  } finally {
    await t.stop();
  }
});

test('a browser that leaves during a slow exchange: nothing issued, the daemon carries on', async () => {
  const t = await setup();
  try {
    const { d, op } = t;
    op.next = { token: 'slow', slowMs: 1500 };
    const before = loginState(d.dir);
    await assert.rejects(fetchLogin(d, 'op', { signal: AbortSignal.timeout(300) }));
    await new Promise((res) => setTimeout(res, 2000));
    assertNoToken(d.dir, before, { users: 0 });
    await healthyAndWorking(d, op);
  } finally {
    await t.stop();
  }
});

test('a slow JWKS re-fetch (unknown kid) is bounded by oauth.timeout too', async () => {
  const t = await setup();
  try {
    const { d, op } = t;
    await op.rotate();
    op.next = { jwks: 'slow', slowMs: 8000 };
    const before = loginState(d.dir);
    const r = await fetchLogin(d, 'op');
    assert.equal(r.res.status, 502, r.text);
    // The page says what failed; how (addresses, timings) is the log's.
    assert.match(r.text, /signing keys could not be loaded \(cannot fetch its keys\)/);
    assert.doesNotMatch(r.text, /2000 ms|127\.0\.0\.1/);
    const line = await d.waitForLog((e) => /^identity provider .*: cannot fetch its keys: (no response within|exchange took longer than) 2000 ms/.test(e.msg ?? ''));
    assert.ok(line);
    assert.ok(r.ms < TIMEOUT * 1000 + 1500, `answered after ${r.ms} ms (oauth.timeout ${TIMEOUT} s)`);
    assertNoToken(d.dir, before, { event: 'login_failed', users: 0 });
    assert.equal((await fetch(`${d.url}/health`)).status, 200);
  } finally {
    await t.stop();
  }
});

test('IdP down when the daemon starts: a clear page, and logins work once it is back', async () => {
  const op = await startFakeOidc();
  await op.down();
  const d = await startLoginDaemon(loginConfig({
    providers: { op: { issuer: op.issuer, client_id: op.clientId, client_secret: op.clientSecret } },
    over: { oauth: { timeout: TIMEOUT } },
  }), { keys: 0 });
  try {
    await d.waitForLog(/cannot fetch its discovery document/);
    const r = await fetch(`${d.url}/auth/login/op`, { redirect: 'manual' });
    assert.equal(r.status, 503);
    const text = await r.text();
    assert.match(text, /Cannot start signing in/);
    assert.match(text, /cannot fetch its discovery document/);
    assert.doesNotMatch(text, /127\.0\.0\.1|ECONNREFUSED|refused/i, 'no addresses or socket errors for anonymous visitors');
    assert.equal(r.headers.get('set-cookie'), null, 'no state cookie');
    assert.equal((await fetch(`${d.url}/health`)).status, 200);
    // Its retries back off (5 s, then 10 s, ...): after the second failure
    // the next retry is 10 s away. A login asks for one at once.
    await d.waitForLog(() => d.logs.filter((e) => /cannot fetch its discovery document/.test(e?.msg ?? '')).length >= 2, 9000);
    await op.up();
    const back = Date.now();
    let ok = false;
    while (!ok && Date.now() - back < 3000) {
      const x = await fetch(`${d.url}/auth/login/op`, { redirect: 'manual' });
      ok = x.status === 302;
      if (!ok) await new Promise((res) => setTimeout(res, 200));
    }
    assert.ok(ok, `logins start once the IdP is back (waited ${Date.now() - back} ms)`);
    await healthyAndWorking(d, op);
  } finally {
    await stopAll(d, op);
  }
});
