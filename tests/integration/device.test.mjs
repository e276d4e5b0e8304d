// The device authorization grant (RFC 8628) end to end against the real daemon:
// the RFC 8414 metadata, /oauth/device_authorization (client ids, the form, the
// per-address limit), the verification page /device in headless Chromium with
// the fake IdP (oidc-provider): a pre-filled code is never approved until a
// button is pressed, the sign-in approves it, the client's poll gets a session
// whose token works on /v1/messages; and what must be refused: polls too early
// (slow_down), after expiry (expired_token), after a refusal (access_denied), a
// replayed device code, posts to /device from another site or without the form's
// token, brute-forced user codes (rate-limited and audited); and the refresh
// grant at /oauth/token (rotation, reuse, a disabled or logged-out user: 401).
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { runCommand } from './lib/daemon.mjs';
import {
  BUTTON, Browser, USER_CODE_RE, approveInBrowser, assertOauthError, auditRows, authorize, newGrant, poll,
  startDevice, token, tokenHash, withDb,
} from './lib/device.mjs';
import { launchBrowser, newContext } from './lib/login.mjs';
import { decodeJwt, seedSession } from './lib/tokens.mjs';

let browser;
const getBrowser = async () => { browser ??= await launchBrowser(); return browser; };
after(async () => { await browser?.close(); });

const row = (d, deviceCode) => withDb(d.dir, (db) => db.prepare('SELECT * FROM device_codes WHERE device_hash = ?')
  .get(tokenHash(deviceCode)));
/** As if the last poll was long ago. */
const agePoll = (d, deviceCode) => withDb(d.dir, (db) => db.prepare('UPDATE device_codes SET polled = polled - 60 '
  + 'WHERE device_hash = ?').run(tokenHash(deviceCode)));

function messages(d, tok) {
  const body = JSON.stringify({ model: 'claude-sonnet-4-6', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] });
  return d.request('/v1/messages', {
    method: 'POST',
    headers: { Authorization: `Bearer ${tok}`, 'Content-Type': 'application/json', 'anthropic-version': '2023-06-01' },
    body,
  });
}

test('metadata: the device and token endpoints and grants, under public_url; off: gone', async () => {
  const t = await startDevice({ over: { server: { public_url: 'https://gw.example.com/proxy' } } });
  try {
    const m = (await t.d.request('/.well-known/oauth-authorization-server')).json();
    assert.equal(m.device_authorization_endpoint, 'https://gw.example.com/proxy/oauth/device_authorization');
    assert.equal(m.token_endpoint, 'https://gw.example.com/proxy/oauth/token');
    assert.deepEqual(m.grant_types_supported, ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code']);
    // What it advertised before stays.
    assert.equal(m.authorization_endpoint, 'https://gw.example.com/proxy/auth/login');
    assert.equal(m.revocation_endpoint, 'https://gw.example.com/proxy/auth/revoke');
    assert.deepEqual(m.token_endpoint_auth_methods_supported, ['none']);
    const g = await newGrant(t.d);
    assert.equal(g.verification_uri, 'https://gw.example.com/proxy/device');
    assert.equal(g.verification_uri_complete, `https://gw.example.com/proxy/device?user_code=${g.user_code}`);
  } finally {
    await t.stop();
  }
  const off = await startDevice({ over: { device: { enabled: false } } });
  try {
    const m = (await off.d.request('/.well-known/oauth-authorization-server')).json();
    assert.equal(m.device_authorization_endpoint, undefined);
    assert.ok(!m.grant_types_supported.includes('urn:ietf:params:oauth:grant-type:device_code'));
    assertOauthError(await authorize(off.d), 404, 'invalid_request', 'device authorization when off');
    assert.equal((await off.d.request('/device')).status, 404);
    assertOauthError(await poll(off.d, `bsd_${'A'.repeat(43)}`), 404, 'invalid_request', 'device grant when off');
  } finally {
    await off.stop();
  }
});

test('device authorization: codes, client ids, a form only, stored as hashes, per-address limit', async () => {
  const t = await startDevice({ over: { device: { authorization_limit: 4 } } });
  try {
    const { d } = t;
    // Claude Code's request: no client_id, surface=claude_code; the default client.
    let r = await authorize(d, { surface: 'claude_code' });
    assert.equal(r.status, 200, r.text());
    assert.equal(r.headers['cache-control'], 'no-store');
    const g = r.json();
    assert.match(g.device_code, /^bsd_[\w-]{43}$/, '256 random bits');
    assert.match(g.user_code, USER_CODE_RE);
    assert.equal(g.verification_uri, `${d.url}/device`);
    assert.equal(g.verification_uri_complete, `${d.url}/device?user_code=${g.user_code}`);
    assert.equal(g.expires_in, 600);
    assert.equal(g.interval, 5);
    const stored = row(d, g.device_code);
    assert.equal(stored.client_id, 'claude-code');
    assert.equal(stored.status, 'pending');
    assert.equal(stored.expires - stored.created, 600);
    const text = JSON.stringify(withDb(d.dir, (db) => db.prepare('SELECT * FROM device_codes').all()));
    assert.ok(!text.includes(g.device_code) && !text.includes(g.user_code), 'no code stored in the clear');
    // Our own CLI's id.
    r = await authorize(d, { client_id: 'bedrock-sso-proxy-cli', scope: 'openid' });
    assert.equal(r.status, 200, r.text());
    assert.equal(row(d, r.json().device_code).client_id, 'bedrock-sso-proxy-cli');
    // Refused before any allowance is spent: unknown, repeated, not a form.
    assertOauthError(await authorize(d, { client_id: 'evil-app' }), 400, 'invalid_client', 'an unknown client_id');
    assertOauthError(await authorize(d, {}, { body: 'client_id=claude-code&client_id=evil' }), 400, 'invalid_request', 'two client_ids');
    assertOauthError(await authorize(d, {}, { body: '{"client_id":"claude-code"}', type: 'application/json' }), 400, 'invalid_request',
      'a JSON body');
    // A bare POST (the reference gateway's quickstart does one) works.
    r = await authorize(d, {}, { body: '' });
    assert.equal(r.status, 200, r.text());
    r = await authorize(d);
    assert.equal(r.status, 200, r.text());
    // Four per window from this address: the fifth is slow_down.
    r = await authorize(d);
    assertOauthError(r, 429, 'slow_down', 'over device.authorization_limit');
    assert.ok(Number(r.headers['retry-after']) >= 1, r.headers['retry-after']);
    assert.equal(withDb(d.dir, (db) => db.prepare('SELECT count(*) AS n FROM device_codes').get().n), 4);
  } finally {
    await t.stop();
  }
});

test('the verification page in Chromium: a pre-filled code waits for the button; the sign-in approves it; the poll gets a working session', async () => {
  const t = await startDevice();
  const ctx = await newContext(await getBrowser());
  try {
    const { d, bedrock } = t;
    const g = await newGrant(d);
    assertOauthError(await poll(d, g.device_code), 400, 'authorization_pending', 'before anything');

    // Opening the link alone approves nothing.
    const page = await ctx.newPage();
    const res = await page.goto(g.verification_uri_complete);
    assert.equal(res.status(), 200);
    const h = res.headers();
    assert.match(h['content-security-policy'], /form-action 'self'/);
    assert.match(h['content-security-policy'], /frame-ancestors 'none'/);
    assert.equal(h['referrer-policy'], 'same-origin');
    assert.equal(h['cache-control'], 'no-store');
    assert.equal(await page.inputValue('#user-code'), g.user_code);
    assert.equal(await page.getByRole('button', { name: BUTTON }).count(), 1);
    await page.waitForLoadState('networkidle');
    agePoll(d, g.device_code);
    assertOauthError(await poll(d, g.device_code), 400, 'authorization_pending', 'after the page was opened');
    assert.equal(row(d, g.device_code).status, 'pending');

    // The button, the IdP, the callback: the device is approved, no token on the page.
    const cb = await approveInBrowser(page, d, g.verification_uri_complete);
    assert.equal(cb.status(), 200);
    assert.equal(await page.textContent('h1'), 'Your device is signed in');
    assert.match(await page.textContent('main'), /Alice Example \(alice@example\.com\) signed in with Example IdP/);
    assert.equal(await page.locator('textarea').count(), 0);
    assert.ok(!(await page.content()).includes('eyJ'), 'no token on the page');
    assert.equal(row(d, g.device_code).status, 'approved');
    assert.equal(row(d, g.device_code).user_id.startsWith('idp:'), true);

    // The poll: the session, once.
    agePoll(d, g.device_code);
    let r = await poll(d, g.device_code);
    assert.equal(r.status, 200, r.text());
    assert.equal(r.headers['cache-control'], 'no-store');
    const s = r.json();
    assert.equal(s.token_type, 'Bearer');
    assert.equal(s.expires_in, 3600, 'device.access_token_ttl');
    assert.equal(s.email, 'alice@example.com');
    assert.match(s.refresh_token, /^bsr_[\w-]{43}$/);
    const claims = decodeJwt(s.access_token).payload;
    assert.equal(claims.exp - claims.iat, 3600);
    assert.equal(claims.email, 'alice@example.com');
    // An ordinary access token: /auth/validate and /v1/messages through the fake Bedrock.
    r = await d.request('/auth/validate', { headers: { Authorization: `Bearer ${s.access_token}` } });
    assert.equal(r.status, 200, r.text());
    assert.equal(r.json().email, 'alice@example.com');
    r = await messages(d, s.access_token);
    assert.equal(r.status, 200, r.text());
    assert.equal(r.json().type, 'message');
    assert.ok(bedrock.requests.some((q) => q.operation === 'invoke' && q.signatureValid));
    const events = auditRows(d.dir).map((a) => a.event);
    assert.ok(events.includes('device_approved') && events.includes('device_login'), events.join());

    // The same device code again: invalid_grant, audited, no second session.
    agePoll(d, g.device_code);
    const families = withDb(d.dir, (db) => db.prepare('SELECT count(*) AS n FROM token_families').get().n);
    assertOauthError(await poll(d, g.device_code), 400, 'invalid_grant', 'a replayed device code');
    assert.equal(auditRows(d.dir, 'device_code_replayed').length, 1);
    assert.equal(withDb(d.dir, (db) => db.prepare('SELECT count(*) AS n FROM token_families').get().n), families);

    // The refresh grant at the token endpoint, as Claude Code refreshes: rotation, same lifetime.
    r = await token(d, { grant_type: 'refresh_token', refresh_token: s.refresh_token });
    assert.equal(r.status, 200, r.text());
    const s2 = r.json();
    assert.notEqual(s2.refresh_token, s.refresh_token);
    assert.equal(s2.expires_in, 3600);
    const c2 = decodeJwt(s2.access_token).payload;
    assert.equal(c2.exp - c2.iat, 3600, 'the refreshed token keeps the device lifetime');
    assert.equal(c2.sid, claims.sid);
    // The old token again after jwt.refresh_reuse_grace: reuse, the session ends, 401.
    withDb(d.dir, (db) => db.prepare('UPDATE refresh_tokens SET used_at = used_at - 100 WHERE hash = ?')
      .run(tokenHash(s.refresh_token)));
    r = await token(d, { grant_type: 'refresh_token', refresh_token: s.refresh_token });
    assertOauthError(r, 401, 'invalid_grant', 'a reused refresh token');
    assertOauthError(await token(d, { grant_type: 'refresh_token', refresh_token: s2.refresh_token }), 401, 'invalid_grant',
      'the successor of a reused token');
    assert.equal((await d.request('/auth/validate', { headers: { Authorization: `Bearer ${s2.access_token}` } })).status, 401);
  } finally {
    await ctx.close();
    await t.stop();
  }
});

test('polls: slow_down, expired_token, access_denied for a user the policy refuses, junk', async () => {
  const t = await startDevice();
  const ctx = await newContext(await getBrowser());
  try {
    const { d } = t;
    let g = await newGrant(d);
    assertOauthError(await poll(d, g.device_code), 400, 'authorization_pending');
    assertOauthError(await poll(d, g.device_code), 400, 'slow_down', 'a poll at once again');
    assertOauthError(await poll(d, g.device_code, { client_id: 'bedrock-sso-proxy-cli' }), 400, 'invalid_grant',
      'another client\'s client_id');
    assertOauthError(await poll(d, g.device_code, { client_id: 'evil' }), 400, 'invalid_client', 'an unknown client_id');
    withDb(d.dir, (db) => db.prepare('UPDATE device_codes SET expires = created - 1 WHERE device_hash = ?').run(tokenHash(g.device_code)));
    assertOauthError(await poll(d, g.device_code), 400, 'expired_token', 'after device.code_ttl');
    // The page no longer takes its user code (and says so, audited).
    const b = new Browser(d);
    const { csrf } = await b.form(g.user_code);
    const r = await b.post({ csrf, user_code: g.user_code, provider: 'idp' });
    assert.equal(r.status, 400);
    assert.match(r.text(), /That code is not valid/);
    assert.match(auditRows(d.dir, 'device_code_refused').at(-1).detail, /expired/);

    // bob@other.test is not admitted (example.com only): the sign-in is refused, the device denied.
    g = await newGrant(d);
    const page = await ctx.newPage();
    const cb = await approveInBrowser(page, d, g.verification_uri_complete, { login: 'bob' });
    assert.equal(cb.status(), 403);
    assert.equal(row(d, g.device_code).status, 'denied');
    assertOauthError(await poll(d, g.device_code), 400, 'access_denied', 'a refused user');
    assert.equal(withDb(d.dir, (db) => db.prepare('SELECT count(*) AS n FROM token_families').get().n), 0);

    // Junk device codes and grants.
    assertOauthError(await poll(d, 'bsd_x'), 400, 'invalid_grant', 'a short device code');
    assertOauthError(await poll(d, `bsd_${'Q'.repeat(43)}`), 400, 'invalid_grant', 'an unknown device code');
    assertOauthError(await poll(d, 'x'.repeat(5000)), 400, 'invalid_request', 'a huge device code');
    assertOauthError(await token(d, { grant_type: 'password', username: 'a' }), 400, 'unsupported_grant_type');
    assertOauthError(await token(d, { grant_type: 'refresh_token' }), 400, 'invalid_request', 'no refresh_token');
  } finally {
    await ctx.close();
    await t.stop();
  }
});

test('cross-site posts to /device are refused and change nothing; the page\'s own post starts the sign-in', async () => {
  const t = await startDevice();
  try {
    const { d } = t;
    const g = await newGrant(d);
    const b = new Browser(d);
    const { res, csrf } = await b.form(g.user_code);
    assert.match(res.headers['set-cookie'][0], /^bsp_device=[\w-]{43}; Path=\/device; Max-Age=3600; HttpOnly; SameSite=Strict$/);
    const other = new Browser(d);
    const { csrf: otherCsrf } = await other.form();
    const good = { csrf, user_code: g.user_code, provider: 'idp' };
    const refused = [
      ['Origin of another site', good, { Origin: 'https://evil.example' }],
      ['Origin null', good, { Origin: 'null' }],
      ['Sec-Fetch-Site cross-site', good, { 'Sec-Fetch-Site': 'cross-site' }],
      ['Sec-Fetch-Site same-site', good, { 'Sec-Fetch-Site': 'same-site' }],
      ['Referer of another site, no Origin', good, { Origin: null, Referer: 'https://evil.example/device' }],
      ['a Referer that only starts like ours', good, { Origin: null, Referer: `${d.url}.evil.example/device` }],
      ['neither Origin nor Referer', good, { Origin: null, Referer: null }],
      ['no form token', { user_code: g.user_code, provider: 'idp' }, {}],
      ['another browser\'s form token', { ...good, csrf: otherCsrf }, {}],
      ['a forged form token', { ...good, csrf: `${csrf.slice(0, -4)}AAAA` }, {}],
      ['no form cookie', good, { Cookie: null }],
      ['a JSON body', good, { 'Content-Type': 'application/json' }],
    ];
    for (const [what, fields, headers] of refused) {
      const r = await b.post(fields, headers);
      assert.equal(r.status, 403, `${what}: ${r.status}`);
      assert.match(r.text(), /blocked/, what);
      assert.equal(r.headers['set-cookie'], undefined, `${what}: no sign-in cookie`);
    }
    assert.equal(row(d, g.device_code).status, 'pending');
    assert.equal(auditRows(d.dir, 'device_code_refused').length, 0, 'a blocked post looks nothing up');

    // The page's own post: 200 with the way on to the IdP, and the sign-in cookie.
    const r = await b.post(good);
    assert.equal(r.status, 200, r.text());
    assert.match(r.text(), /<meta http-equiv="refresh" content="0; url=http:\/\/127\.0\.0\.1:\d+\/auth\?/);
    assert.match(r.text(), /<a class="button" href="http:\/\/127\.0\.0\.1:\d+\/auth\?[^"]*state=/);
    assert.match(r.headers['set-cookie'].join('\n'), /bsp_login=[\w-]+; Path=\/auth\/callback; Max-Age=600; HttpOnly; SameSite=Lax/);
    assert.equal(row(d, g.device_code).status, 'pending', 'pending until the sign-in is done');
  } finally {
    await t.stop();
  }
});

test('brute-forced user codes: each wrong one audited, then 429 and one lockout audit row; the right code too is refused then', async () => {
  const t = await startDevice({ over: { device: { user_code_failures: 3, page_limit: 40 } } });
  try {
    const { d } = t;
    const g = await newGrant(d);
    const b = new Browser(d);
    let { csrf } = await b.form();
    // Not a code at all: said so, not counted.
    let r = await b.post({ csrf, user_code: 'AAAA-1111', provider: 'idp' });
    assert.equal(r.status, 400);
    assert.match(r.text(), /That is not a code/);
    const wrong = ['BBBB-BBBB', 'CCCC-CCCC', 'DDDD-DDDD', 'HHHH-HHHH'].filter((c) => c !== g.user_code).slice(0, 3);
    for (const code of wrong) {
      ({ csrf } = await b.form());
      r = await b.post({ csrf, user_code: code, provider: 'idp' });
      assert.equal(r.status, 400, r.text());
      assert.match(r.text(), /That code is not valid/);
      assert.ok(r.text().includes(`value="${code}"`), 'the code is shown again to be corrected');
    }
    const refusedRows = auditRows(d.dir, 'device_code_refused');
    assert.equal(refusedRows.length, wrong.length);
    assert.equal(refusedRows[0].client_addr, '127.0.0.1');
    assert.match(refusedRows[0].detail, /no such code/);
    // Spent: refused without a look, the first time audited as a lockout.
    for (const code of ['FFFF-FFFF', g.user_code, 'GGGG-GGGG']) {
      ({ csrf } = await b.form());
      r = await b.post({ csrf, user_code: code, provider: 'idp' });
      assert.equal(r.status, 429, r.text());
      assert.ok(Number(r.headers['retry-after']) >= 1);
      assert.match(r.text(), /Too many wrong codes/);
    }
    assert.equal(auditRows(d.dir, 'device_code_limited').length, 1, 'one lockout row');
    assert.equal(auditRows(d.dir, 'device_code_refused').length, wrong.length, 'nothing looked up once spent');
    assert.equal(row(d, g.device_code).status, 'pending');
    assert.ok(d.logs.some((e) => typeof e === 'object' && /too many wrong user codes from 127\.0\.0\.1/.test(e.msg ?? '')));
  } finally {
    await t.stop();
  }
});

test('the verification page\'s per-address limit', async () => {
  const t = await startDevice({ over: { device: { page_limit: 3 } } });
  try {
    const b = new Browser(t.d);
    for (let i = 0; i < 3; i++) assert.equal((await b.get('/device')).status, 200);
    const r = await b.get('/device');
    assert.equal(r.status, 429);
    assert.ok(Number(r.headers['retry-after']) >= 1);
    assert.match(r.headers['content-type'], /^text\/html/);
  } finally {
    await t.stop();
  }
});

test('refresh at /oauth/token: a disabled or logged-out user gets 401 invalid_grant; JSON and the code exchange still work', async () => {
  const t = await startDevice();
  try {
    const { d } = t;
    // A session of a user who is then disabled.
    let s = seedSession(d.dir, { user: 'idp:dis', email: 'dis@example.com' });
    let r = await runCommand(['user', 'disable', 'idp:dis'], { dir: d.dir });
    assert.equal(r.code, 0, r.stderr);
    r = await token(d, { grant_type: 'refresh_token', refresh_token: s.refresh });
    assertOauthError(r, 401, 'invalid_grant', 'a disabled user');
    assert.match(r.headers['www-authenticate'], /error="invalid_grant"/);
    // A session of a user who is then logged out.
    s = seedSession(d.dir, { user: 'idp:out', email: 'out@example.com' });
    r = await runCommand(['user', 'logout', 'idp:out'], { dir: d.dir });
    assert.equal(r.code, 0, r.stderr);
    assertOauthError(await token(d, { grant_type: 'refresh_token', refresh_token: s.refresh }), 401, 'invalid_grant', 'a logged-out user');
    // An unknown refresh token.
    assertOauthError(await token(d, { grant_type: 'refresh_token', refresh_token: `bsr_${'A'.repeat(43)}` }), 401, 'invalid_grant',
      'an unknown refresh token');
    // A good one, in JSON.
    s = seedSession(d.dir, { user: 'idp:ok', email: 'ok@example.com' });
    r = await d.request('/oauth/token', {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ grant_type: 'refresh_token', refresh_token: s.refresh }),
    });
    assert.equal(r.status, 200, r.text());
    // The API flow's code exchange (JSON), as at /auth/token: it wants its fields.
    r = await d.request('/oauth/token', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
    assertOauthError(r, 400, 'invalid_request', 'a code exchange without fields');
  } finally {
    await t.stop();
  }
});
