// Sign-in states (security review, issue 9, finding 5). Starting a
// sign-in used to store a row, capped at 10 000 for everyone and 20 per
// address: 500 addresses kept everyone out, and every attempt cost a
// synchronous write. Now the sign-in is sealed into the browser's cookie
// (or, in the API flow, the state itself), a start writes nothing, and
// each address has an allowance of its own. A state is still single use:
// refused while its callback runs, and refused once redeemed. Forged,
// altered and expired states are refused before anything is written.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { startFakeOidc } from './lib/fake-oidc-bad.mjs';
import {
  Jar, fetchLogin, loginConfig, loginState, startLoginDaemon, stopAll, tokenFromHtml, validate,
} from './lib/login.mjs';
import { dbFingerprint, kekPath, nowSec } from './lib/tokens.mjs';
import { repoTop, waitFor } from './lib/util.mjs';

const LOOPBACK = 'http://127.0.0.1:47913/cb';
const sealState = join(process.env.BSP_BUILDDIR ?? repoTop, 'tests', 'unit', 'seal-state');

async function setup(over = {}) {
  const op = await startFakeOidc();
  let d;
  try {
    d = await startLoginDaemon(loginConfig({
      providers: { op: { issuer: op.issuer, client_id: op.clientId, client_secret: op.clientSecret } },
      over,
    }));
  } catch (e) {
    await op.close();
    throw e;
  }
  return { op, d, stop: () => stopAll(d, op) };
}

/** Run fn over items, n at a time. */
async function pool(n, items, fn) {
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < items.length) await fn(items[next++]);
  }));
}

/** A state sealed under the daemon's own KEK: [sealed text, id text]. */
function seal(d, flow, provider, redirectUri, expires) {
  return execFileSync(sealState, [kekPath(d.dir), flow, provider, redirectUri, String(expires)],
    { encoding: 'utf8' }).trim().split(' ');
}

const callback = (d, state, cookie) => fetch(`${d.url}/auth/callback/op?code=abc&state=${state}`, {
  redirect: 'manual', headers: cookie === undefined ? {} : { Cookie: `bsp_login=${cookie}` },
});

test('600 client addresses starting sign-ins do not stop a fresh user\'s; starting one writes nothing', async () => {
  const t = await setup({ server: { trusted_proxies: ['127.0.0.1/32'] } });
  try {
    const { d } = t;
    const files = dbFingerprint(d.dir);
    // 600 addresses, 17 starts each (the old cap of 10 000 for everyone
    // was full after 589 of them), all within their allowance of 20.
    const starts = [];
    for (let i = 0; i < 600; i++) for (let k = 0; k < 17; k++) starts.push(`10.9.${i >> 8}.${i & 255}`);
    const statuses = new Map();
    await pool(16, starts, async (from) => {
      const r = await fetch(`${d.url}/auth/login/op`, { redirect: 'manual', headers: { 'X-Forwarded-For': from } });
      await r.arrayBuffer();
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    });
    assert.deepEqual([...statuses], [[302, starts.length]]);
    // One address's own allowance ends at 20; nobody else's.
    const from0 = () => fetch(`${d.url}/auth/login/op`, { redirect: 'manual', headers: { 'X-Forwarded-For': '10.9.0.0' } })
      .then(async (r) => { await r.arrayBuffer(); return r.status; });
    for (let k = 17; k < 20; k++) assert.equal(await from0(), 302);
    assert.equal(await from0(), 429);
    // Not one byte written for all of that.
    assert.deepEqual(dbFingerprint(d.dir), files, 'the database did not change');
    assert.equal(loginState(d.dir).states, 0);
    // A user from another address signs in, start to finish.
    const r = await fetchLogin(d, 'op');
    assert.equal(r.res.status, 200, r.text);
    assert.equal((await validate(d, tokenFromHtml(r.text))).status, 200);
    assert.equal(loginState(d.dir).states, 1, 'the redeemed state');
  } finally {
    await t.stop();
  }
});

test('a redeemed state is refused when replayed with its cookie, and while its callback runs', async () => {
  const t = await setup();
  try {
    const { d, op } = t;
    // Replay with the very cookie of a finished sign-in.
    const jar = new Jar();
    const { authUrl } = await fetchLogin(d, 'op', { jar, stopAt: 'idp' });
    const cookie = [...jar.cookies.values()].find((c) => c.name === 'bsp_login').value;
    const r0 = await jar.fetch(authUrl);
    const cb = new URL(r0.headers.get('location'), authUrl).href;
    let r = await fetch(cb, { headers: { Cookie: `bsp_login=${cookie}` } });
    assert.equal(r.status, 200, await r.text());
    const before = loginState(d.dir);
    const exchanged = op.tokenRequests.length;
    r = await fetch(cb, { headers: { Cookie: `bsp_login=${cookie}` } });
    assert.equal(r.status, 400);
    assert.match(await r.text(), /expired or was already used/);
    assert.deepEqual(loginState(d.dir), before, 'the replay wrote nothing');
    assert.equal(op.tokenRequests.length, exchanged, 'and exchanged no code');

    // Two callbacks with one state at once: the second is refused.
    op.next = { token: 'slow', slowMs: 1500 };
    const j2 = new Jar();
    const { authUrl: a2 } = await fetchLogin(d, 'op', { jar: j2, stopAt: 'idp' });
    const r1 = await j2.fetch(a2);
    const cb2 = new URL(r1.headers.get('location'), a2).href;
    const c2 = [...j2.cookies.values()].find((c) => c.name === 'bsp_login').value;
    const first = fetch(cb2, { headers: { Cookie: `bsp_login=${c2}` } });
    await waitFor(() => op.tokenRequests.length === exchanged + 1, { message: 'the first callback never reached the IdP' });
    r = await fetch(cb2, { headers: { Cookie: `bsp_login=${c2}` } });
    assert.equal(r.status, 400);
    assert.match(await r.text(), /being completed already/);
    r = await first;
    assert.equal(r.status, 200, await r.text());
    assert.equal(op.tokenRequests.length, exchanged + 1, 'one code exchange');
    r = await fetch(cb2, { headers: { Cookie: `bsp_login=${c2}` } });
    assert.equal(r.status, 400);
    assert.match(await r.text(), /expired or was already used/);
  } finally {
    await t.stop();
  }
});

test('forged, altered, expired and misplaced states are refused with a clear answer, before any write', async () => {
  const t = await setup();
  try {
    const { d, op } = t;
    const before = loginState(d.dir);
    const files = dbFingerprint(d.dir);
    const cbUri = `${d.url}/auth/callback/op`;
    // A real cookie, altered in one character.
    const { authUrl, jar } = await fetchLogin(d, 'op', { stopAt: 'idp' });
    const state = new URL(authUrl).searchParams.get('state');
    const real = [...jar.cookies.values()].find((c) => c.name === 'bsp_login').value;
    const altered = `${real.slice(0, 50)}${real[50] === 'A' ? 'B' : 'A'}${real.slice(51)}`;
    const cases = [
      [state, altered, /not valid here: it was altered, or made by another proxy/],
      [state, 'A'.repeat(real.length), /not valid here/],
      [state, `${real}x`, /not valid here/],
      [state, real.slice(0, -2), /not valid here/],
      [state, undefined, /expired or was already used, or the sign-in was started in another browser/],
      ['B'.repeat(43), real, /does not belong to the sign-in started in this browser/],
    ];
    // Sealed under our key, but expired, another provider's, or the API flow's.
    const [expired, expiredId] = seal(d, 'browser', 'op', cbUri, nowSec() - 1);
    cases.push([expiredId, expired, /This sign-in has expired/]);
    const [other, otherId] = seal(d, 'browser', 'other', cbUri, nowSec() + 300);
    cases.push([otherId, other, /does not belong to a sign-in with this provider/]);
    const [api, apiId] = seal(d, 'api', 'op', cbUri, nowSec() + 300);
    cases.push([apiId, api, /does not belong to a sign-in with this provider/]);
    const [moved, movedId] = seal(d, 'browser', 'op', 'http://127.0.0.1:9/auth/callback/op', nowSec() + 300);
    cases.push([movedId, moved, /callback address changed/]);
    for (const [st, cookie, re] of cases) {
      const r = await callback(d, st, cookie);
      assert.equal(r.status, 400, `${re}`);
      assert.match(r.headers.get('content-type'), /^text\/html/);
      assert.match(await r.text(), re);
    }
    // The API flow: expired and altered states at /auth/token.
    const post = (body) => d.request('/auth/token', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    const [apiExpired] = seal(d, 'api', 'op', LOOPBACK, nowSec() - 1);
    let r = await post({ provider: 'op', authorization_code: 'x', redirect_uri: LOOPBACK, state: apiExpired });
    assert.equal(r.status, 400);
    assert.equal(r.json().error, 'invalid_grant');
    assert.match(r.json().error_description, /state has expired/);
    const [apiGood] = seal(d, 'api', 'op', LOOPBACK, nowSec() + 300);
    r = await post({ provider: 'op', authorization_code: 'x', redirect_uri: LOOPBACK, state: `${apiGood.slice(0, 99)}${apiGood[99] === 'A' ? 'B' : 'A'}${apiGood.slice(100)}` });
    assert.equal(r.status, 400);
    assert.match(r.json().error_description, /did not issue it, or it was altered/);
    // Nothing written, nothing exchanged.
    assert.deepEqual(dbFingerprint(d.dir), files, 'the database did not change');
    assert.deepEqual(loginState(d.dir), before);
    assert.equal(op.tokenRequests.length, 0);
  } finally {
    await t.stop();
  }
});
