// `bedrock-sso-proxy login --device` (RFC 8628, issue 12): the polling
// rules against a scripted token endpoint (authorization_pending, slow_down
// adds 5 s, access_denied, expired_token, the code's own expiry), the
// client id, the user code shown and the device code never; the device
// flow chosen by itself where no browser can be opened; a proxy without it
// (exit 5). The end-to-end sign-in against the test daemon's own device
// endpoints runs once the daemon has them (GATEWAY-FACTS B.5/B.6).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import {
  ACCESS, DEVICE_CODE, REFRESH, USER_CODE, busy, denied, expired, granted, pending, reset, slowDown, startFakeGateway,
  unavailable,
} from './lib/fake-gateway.mjs';
import { newContext } from './lib/login.mjs';
import { newLaptop, runClient, spawnClient, startSignin } from './lib/client.mjs';
import { request } from './lib/util.mjs';

const GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

test('device flow: pending, slow_down (+5 s), pending, granted; the client id, the user code, never the device code', async () => {
  const g = await startFakeGateway({ polls: [pending, slowDown, pending, granted], interval: 1 });
  const lap = newLaptop();
  try {
    const r = await runClient(lap, ['login', '--device', g.url]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, new RegExp(`open ${g.url.replace(/[.]/g, '\\.')}/device in a browser \\(on any device\\) and enter the code\\n\\n {4}${USER_CODE}\\n`));
    assert.ok(r.stderr.includes(`${g.url}/device?user_code=${USER_CODE}`));
    assert.ok(!r.stderr.includes(DEVICE_CODE) && !r.stderr.includes(ACCESS) && !r.stderr.includes(REFRESH), r.stderr);
    assert.match(r.stderr, /Signed in to .* as carol@example\.com \(profile default\)/);
    assert.equal(g.deviceAuths.length, 1);
    assert.equal(g.deviceAuths[0].form.client_id, 'bedrock-sso-proxy-cli');
    assert.equal(g.deviceAuths[0].headers['content-type'], 'application/x-www-form-urlencoded');
    assert.equal(g.polls.length, 4);
    for (const p of g.polls) assert.deepEqual(p.form, { grant_type: GRANT, device_code: DEVICE_CODE, client_id: 'bedrock-sso-proxy-cli' });
    // RFC 8628 section 3.5: the interval, and 5 s more after slow_down.
    const gaps = g.polls.slice(1).map((p, i) => p.at - g.polls[i].at);
    assert.ok(gaps[0] >= 950, `first interval ${gaps}`);
    assert.ok(gaps[1] >= 5950, `after slow_down the interval is 6 s: ${gaps}`);
    assert.ok(gaps[2] >= 5950, `and stays so: ${gaps}`);
    const s = lap.session();
    assert.equal(s.flow, 'device');
    assert.equal(s.sub, 'fake:carol');
    assert.equal(s.refresh_token, REFRESH);
    const tk = await runClient(lap, ['token']);
    assert.equal(tk.stdout, `${ACCESS}\n`);
  } finally {
    lap.close();
    await g.close();
  }
});

test('device flow: a 503, a cut connection and a 429 without an OAuth error: back off (the interval doubled) and keep polling', async () => {
  // Two cuts: the HTTP client retries a request once when a kept-alive connection dies under it.
  const g = await startFakeGateway({ polls: [unavailable, reset, reset, busy, granted], interval: 1 });
  const lap = newLaptop();
  try {
    const r = await runClient(lap, ['login', '--device', g.url]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /answered 503 to the device sign-in \(token endpoint\): try later; trying again in 2 s/);
    assert.match(r.stderr, /cannot reach the proxy at .* \(the device sign-in \(token endpoint\)\): .*; trying again in 4 s/);
    assert.match(r.stderr, /answered 429 to the device sign-in \(token endpoint\): too many requests; trying again in 8 s/);
    assert.match(r.stderr, /Signed in to .* as carol@example\.com/);
    assert.equal(g.polls.length, 5);
    // RFC 8628 section 3.5: twice the wait after each failure (2, 4 and 8 s).
    const gaps = g.polls.slice(1).map((p, i) => p.at - g.polls[i].at);
    assert.ok(gaps[0] >= 1950 && gaps[1] + gaps[2] >= 3950 && gaps[3] >= 7950, `intervals ${gaps}`);
    assert.equal(lap.session().refresh_token, REFRESH);
  } finally {
    lap.close();
    await g.close();
  }
});

test('device flow: refused, expired, and a code that runs out here; no session', async () => {
  for (const [polls, opts, re] of [
    [[pending, denied], {}, /the sign-in was refused in the browser/],
    [[expired], {}, /the code expired before the sign-in was approved; run login again/],
    [[pending], { expiresIn: 3 }, /the code expired before the sign-in was approved; run login again/],
  ]) {
    const g = await startFakeGateway({ polls, interval: 1, ...opts });
    const lap = newLaptop();
    try {
      const r = await runClient(lap, ['login', '--device', g.url]);
      assert.equal(r.code, 3, r.stderr);
      assert.match(r.stderr, re);
      assert.ok(!existsSync(lap.sessionPath()), 'no session');
      assert.ok(!r.stderr.includes(DEVICE_CODE));
    } finally {
      lap.close();
      await g.close();
    }
  }
});

test('no display and no $BROWSER: the device flow by itself; a proxy without one: --device exits 5', async () => {
  const g = await startFakeGateway({ polls: [granted], interval: 1 });
  const lap = newLaptop();
  try {
    const r = await runClient(lap, ['login', g.url], { env: { DISPLAY: undefined, WAYLAND_DISPLAY: undefined, BROWSER: undefined } });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /No browser here \(no display\): signing in with a code instead\./);
    assert.equal(lap.session().flow, 'device');
  } finally {
    lap.close();
    await g.close();
  }
  const g2 = await startFakeGateway({ device: false });
  const lap2 = newLaptop();
  try {
    const r = await runClient(lap2, ['login', '--device', g2.url]);
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.stderr, /does not offer the device sign-in \(no device_authorization_endpoint in its metadata\); sign in with a browser instead/);
  } finally {
    lap2.close();
    await g2.close();
  }
});

// The daemon's own device endpoints (RFC 8628, device.enabled by default).
test('device flow end to end against the test daemon: /device in Chromium, then the IdP', async () => {
  const t = await startSignin();
  const lap = newLaptop();
  try {
    const meta = (await request(`${t.d.url}/.well-known/oauth-authorization-server`)).json();
    assert.equal(meta.device_authorization_endpoint, `${t.d.url}/oauth/device_authorization`);
    const c = spawnClient(lap, ['login', '--device', '--no-browser', t.d.url]);
    const m = await c.waitStderr(/\n {4}([A-Z0-9-]{4,})\n\nor open (\S+)\n/);
    const [, userCode, complete] = m;
    assert.ok(complete.startsWith(`${t.d.url}/device`), complete);
    const ctx = await newContext(await t.browser());
    try {
      const page = await ctx.newPage();
      await page.goto(complete);
      // The code is shown pre-filled, never approved by itself (RFC 8628 section 5.4).
      assert.ok((await page.content()).includes(userCode));
      await page.click('button[type=submit]');
      await page.fill('input[name=login]', 'alice');
      await page.fill('input[name=password]', 'any password');
      await page.click('button[type=submit]');
      await page.waitForSelector('form input[name=prompt][value=consent]', { state: 'attached' });
      await page.click('button[type=submit]');
    } finally {
      await ctx.close().catch(() => {});
    }
    const r = await c.exited;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(lap.session().flow, 'device');
    assert.equal(lap.session().sub, 'idp:alice');
    const tk = await runClient(lap, ['token']);
    assert.equal(tk.code, 0, tk.stderr);
    assert.equal((await request(`${t.d.url}/auth/validate`, { headers: { Authorization: `Bearer ${tk.stdout.trim()}` } })).json().sub, 'idp:alice');
  } finally {
    lap.close();
    await t.stop();
  }
});

test('--device against a daemon with device.enabled false: exit 5, a clear message', async () => {
  const t = await startSignin({ over: { device: { enabled: false } } });
  const lap = newLaptop();
  try {
    const meta = (await request(`${t.d.url}/.well-known/oauth-authorization-server`)).json();
    assert.equal(meta.device_authorization_endpoint, undefined);
    const r = await runClient(lap, ['login', '--device', t.d.url]);
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.stderr, /does not offer the device sign-in/);
  } finally {
    lap.close();
    await t.stop();
  }
});
