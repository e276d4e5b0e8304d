// Logins that must be refused, each with no token issued: no new token
// family or refresh token, no user row where the user never got in, and an
// audit row login_failed / login_refused. The IdP is the hand-rolled
// fake-oidc-bad (it crafts the ID tokens a certified provider would not),
// driven with fetch(): its authorize endpoint redirects straight back.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { startFakeOidc } from './lib/fake-oidc-bad.mjs';
import {
  Jar, assertNoToken, fetchLogin, invoke, loginConfig, loginState, startBedrock, startLoginDaemon, tokenFromHtml, validate,
  stopAll,
} from './lib/login.mjs';
import { nowSec, withDb } from './lib/tokens.mjs';

/** A client's PKCE challenge (RFC 7636, S256), as a loopback redirect needs. */
const PKCE = `&code_challenge=${createHash('sha256').update('v'.repeat(43)).digest('base64url')}&code_challenge_method=S256`;

async function setup({ access, over, op: opOpts, provider = {}, keys = 1 } = {}) {
  const op = await startFakeOidc(opOpts);
  let d;
  try {
    d = await startLoginDaemon(loginConfig({
      providers: { op: { issuer: op.issuer, client_id: op.clientId, client_secret: op.clientSecret, ...provider } }, access, over,
    }), { keys });
  } catch (e) {
    await op.close();
    throw e;
  }
  return { op, d, stop: () => stopAll(d, op) };
}

const states = (dir) => withDb(dir, (db) => Number(db.prepare('SELECT count(*) AS n FROM oauth_states').get().n));

/** A login that must fail with status and a page matching re; returns the audit row. */
async function refused(d, status, re, { event = 'login_failed', users = 0, reason } = {}) {
  const before = loginState(d.dir);
  const r = await fetchLogin(d, 'op');
  assert.equal(r.res.status, status, r.text);
  assert.match(r.res.headers.get('content-type'), /^text\/html/);
  assert.match(r.text, re);
  assert.equal(tokenFromHtml(r.text), null, 'no token on the page');
  return assertNoToken(d.dir, before, { event, users, reason });
}

test('a callback without state or cookie, with a state or cookie of another sign-in, or without a code is refused', async () => {
  const t = await setup();
  try {
    const { d } = t;
    const before = loginState(d.dir);
    // 1. no state at all
    let r = await fetch(`${d.url}/auth/callback/op?code=abc`);
    assert.equal(r.status, 400);
    assert.match(await r.text(), /carried no state/);
    // 2. a state nobody issued, no cookie
    r = await fetch(`${d.url}/auth/callback/op?code=abc&state=${'A'.repeat(43)}`);
    assert.equal(r.status, 400);
    assert.match(await r.text(), /expired or was already used/);
    // 3. a state from the API flow, in this browser's callback
    const a = await d.request(`/auth/authorize/op?redirect_uri=${encodeURIComponent('http://127.0.0.1:9/cb')}${PKCE}`);
    assert.equal(a.status, 200, a.text());
    let { jar } = await fetchLogin(d, 'op', { stopAt: 'idp' });
    r = await jar.fetch(`${d.url}/auth/callback/op?code=abc&state=${a.json().state}`);
    assert.equal(r.status, 400);
    assert.match(await r.text(), /does not belong to the sign-in started in this browser/);
    // 4. this browser's state, but the IdP's answer carries no code
    let authUrl;
    ({ authUrl, jar } = await fetchLogin(d, 'op', { stopAt: 'idp' }));
    const st = new URL(authUrl).searchParams.get('state');
    r = await jar.fetch(`${d.url}/auth/callback/op?state=${st}`);
    assert.equal(r.status, 400);
    assert.match(await r.text(), /carried no code/);
    // Only the answer that spent a live state of this browser is audited;
    // junk that names none is a log line, not a write.
    assertNoToken(d.dir, before, { event: 'login_failed', users: 0 });
    const rows = loginState(d.dir).audit.filter((x) => x.event === 'login_failed');
    assert.equal(rows.length, 1);
    assert.ok(rows.every((x) => JSON.parse(x.detail).provider === 'op'), JSON.stringify(rows));
    assert.equal(loginState(d.dir).states, 1);
    // The log line and the answer travel on different pipes: wait for both.
    const isRefused = (l) => /refused before any state/.test(l?.msg ?? '');
    await d.waitForLog(() => d.logs.filter(isRefused).length >= 3);
    await new Promise((res) => setTimeout(res, 200));
    const refusedLines = d.logs.filter(isRefused);
    assert.equal(refusedLines.length, 3, JSON.stringify(d.logs.slice(-10)));
    assert.equal(t.op.tokenRequests.length, 0, 'no code was exchanged');
  } finally {
    await t.stop();
  }
});

test('ID tokens with the wrong nonce, aud, iss or azp, expired, stale, unsigned or HMAC-signed are refused', async () => {
  const t = await setup();
  try {
    const { d, op } = t;
    const cases = [
      [{ claims: { nonce: 'not-the-nonce-we-sent' } }, /nonce/],
      [{ claims: { nonce: undefined } }, /nonce/],
      [{ claims: { aud: 'another-client' } }, /wrong audience/],
      [{ claims: { aud: [op.clientId, 'another-client'] } }, /another client \(azp\)/],
      [{ claims: { azp: 'another-client' } }, /another client \(azp\)/],
      [{ claims: { iss: 'http://127.0.0.1:1/evil' } }, /wrong issuer/],
      [{ claims: { iss: `${op.issuer}/` } }, /wrong issuer/],
      [{ claims: { exp: nowSec() - 3600 } }, /expired/],
      [{ claims: { iat: nowSec() - 3 * 3600 } }, /too old/],
      [{ claims: { iat: nowSec() + 3600 } }, /in the future/],
      [{ claims: { sub: undefined } }, /no sub claim/],
      [{ signWith: 'none' }, /malformed|not allowed|does not publish/, 502],
      [{ signWith: 'hs256' }, /does not publish|algorithm not allowed/, 502],
      [{ token: 'no-id-token' }, /no ID token/, 502],
    ];
    for (const [next, re, status = 400] of cases) {
      op.next = next;
      await refused(d, status, re);
    }
    // The same IdP, well behaved: the login goes through.
    op.next = {};
    const r = await fetchLogin(d, 'op');
    assert.equal(r.res.status, 200, r.text);
    assert.equal((await validate(d, tokenFromHtml(r.text))).status, 200);
  } finally {
    await t.stop();
  }
});

test('an ID token signed by an unknown key is refused after exactly one JWKS re-fetch', async () => {
  const t = await setup();
  try {
    const { d, op } = t;
    const f0 = op.jwksFetches;
    op.next = { signWith: 'unpublished' };
    await refused(d, 502, /does not publish/);
    assert.equal(op.jwksFetches, f0 + 1, 'one re-fetch on the unknown kid');
    // Within the minute: refused again, no second fetch.
    await refused(d, 502, /does not publish/);
    assert.equal(op.jwksFetches, f0 + 1, 're-fetches are throttled');
  } finally {
    await t.stop();
  }
});

test('hand-rolled IdP rotates its key: the new kid is fetched once and logins keep working', async () => {
  const t = await setup();
  try {
    const { d, op } = t;
    let r = await fetchLogin(d, 'op');
    assert.equal(r.res.status, 200, r.text);
    const first = tokenFromHtml(r.text);
    const f0 = op.jwksFetches;
    await op.rotate();
    r = await fetchLogin(d, 'op');
    assert.equal(r.res.status, 200, r.text);
    assert.equal(op.jwksFetches, f0 + 1);
    r = await fetchLogin(d, 'op');
    assert.equal(r.res.status, 200, r.text);
    assert.equal(op.jwksFetches, f0 + 1, 'the new key is cached');
    assert.equal((await validate(d, tokenFromHtml(r.text))).status, 200);
    assert.equal((await validate(d, first)).status, 200, 'our tokens do not depend on the IdP key');
  } finally {
    await t.stop();
  }
});

test('users outside the allowed domains, with an unverified email, or forging our markers are refused', async () => {
  const t = await setup({ access: { allowed_email_domains: ['example.com'], allowed_groups: ['bedrock-admins'] } });
  try {
    const { d, op } = t;
    const base = { sub: 'u1', email: 'olivia@example.com', email_verified: true, name: 'Olivia', groups: ['dev'] };
    op.user = { ...base, email: 'olivia@evil.test' };
    let row = await refused(d, 403, /not allowed to use this proxy/, { event: 'login_refused' });
    assert.equal(row.user_id, 'op:u1', 'audit names the user as provider:subject');
    op.user = { ...base, email: 'olivia@sub.example.com' };
    await refused(d, 403, /not allowed/, { event: 'login_refused' });
    op.user = { ...base, email: 'olivia@example.com.evil.test' };
    await refused(d, 403, /not allowed/, { event: 'login_refused' });
    op.user = { ...base, email_verified: false };
    row = await refused(d, 403, /not verified/, { event: 'login_refused' });
    assert.match(row.detail, /not verified/);
    op.user = { ...base, email_verified: 'false' };
    await refused(d, 403, /not verified/, { event: 'login_refused' });
    // Our internal "_bsp_" claims must not be taken from an IdP.
    op.user = { ...base, email_verified: false, _bsp_email_verified: true, _bsp_orgs: ['x'] };
    await refused(d, 403, /not verified/, { event: 'login_refused' });
    // A group admits without any email.
    op.user = { sub: 'u2', groups: ['bedrock-admins'] };
    const r = await fetchLogin(d, 'op');
    assert.equal(r.res.status, 200, r.text);
    assert.deepEqual(loginState(d.dir).users.map((u) => u.id), ['op:u2']);
  } finally {
    await t.stop();
  }
});

test('an unverified email admitted through a group does not reach model rules written for that email', async () => {
  const op = await startFakeOidc();
  const bedrock = await startBedrock();
  let d;
  try {
    d = await startLoginDaemon(loginConfig({
      providers: { op: { issuer: op.issuer, client_id: op.clientId, client_secret: op.clientSecret } },
      bedrock,
      access: { allowed_groups: ['bedrock-admins'] },
      over: { models: { rules: [{ emails: ['ceo@example.com'], allow: ['*'] }], default: 'deny' } },
    }));
    const login = async (user) => {
      op.user = user;
      const r = await fetchLogin(d, 'op');
      assert.equal(r.res.status, 200, r.text);
      return tokenFromHtml(r.text);
    };
    // Someone in the group claims the CEO's address at an IdP that never checked it.
    const forged = await login({ sub: 'u1', email: 'ceo@example.com', email_verified: false, groups: ['bedrock-admins'] });
    const v = await validate(d, forged);
    assert.equal(v.status, 200, v.text());
    let r = await invoke(d, forged);
    assert.equal(r.status, 403, r.text());
    assert.match(r.json().message, /not allowed/);
    assert.equal(bedrock.requests.length, 0, 'the refused call never reached AWS');
    // The CEO, verified, is named by the rule.
    const real = await login({ sub: 'u2', email: 'ceo@example.com', email_verified: true, groups: ['bedrock-admins'] });
    r = await invoke(d, real);
    assert.equal(r.status, 200, r.text());
    assert.equal(bedrock.requests.length, 1);
  } finally {
    await stopAll(d, op, bedrock);
  }
});

test('sign-in starts are limited per client address; a refused start gets 429 and Retry-After, and nothing is stored', async () => {
  const t = await setup({ over: { oauth: { max_pending_logins: 3 } } });
  try {
    const { d } = t;
    const start = () => fetch(`${d.url}/auth/login/op`, { redirect: 'manual' });
    for (let i = 0; i < 3; i++) assert.equal((await start()).status, 302);
    let r = await start();
    assert.equal(r.status, 429);
    assert.match(await r.text(), /too many sign-ins were started from your address/);
    assert.ok(Number(r.headers.get('retry-after')) >= 1, r.headers.get('retry-after'));
    assert.equal(r.headers.get('set-cookie'), null, 'no state cookie');
    // The API flow draws on the same allowance.
    r = await d.request(`/auth/authorize/op?redirect_uri=${encodeURIComponent('http://127.0.0.1:9/cb')}${PKCE}`);
    assert.equal(r.status, 429);
    assert.equal(r.json().error, 'temporarily_unavailable');
    assert.ok(Number(r.headers['retry-after']) >= 1);
    assert.equal(states(d.dir), 0, 'starting sign-ins stored nothing');
  } finally {
    await t.stop();
  }
});

test('behind a trusted proxy, sign-in starts are counted per IPv4 address and per IPv6 /64', async () => {
  const t = await setup({ over: { oauth: { max_pending_logins: 2 }, server: { trusted_proxies: ['127.0.0.1/32'] } } });
  try {
    const { d } = t;
    const start = (from) => fetch(`${d.url}/auth/login/op`, { redirect: 'manual', headers: { 'X-Forwarded-For': from } });
    // Two addresses of one /64 spend its allowance; a third from the same /64 is refused.
    assert.equal((await start('2001:db8:1:2::a')).status, 302);
    assert.equal((await start('2001:db8:1:2:ffff:ffff:ffff:ffff')).status, 302);
    const r = await start('2001:db8:1:2:1234::1');
    assert.equal(r.status, 429);
    assert.match(await r.text(), /too many sign-ins were started from your address/);
    // The next /64, and IPv4 addresses (mapped into IPv6 or not), are clients of their own.
    assert.equal((await start('2001:db8:1:3::a')).status, 302);
    assert.equal((await start('198.51.100.7')).status, 302);
    assert.equal((await start('::ffff:198.51.100.7')).status, 302);
    assert.equal((await start('198.51.100.7')).status, 429, 'the mapped form is the same IPv4 client');
    assert.equal((await start('198.51.100.8')).status, 302);
    assert.equal(states(d.dir), 0);
  } finally {
    await t.stop();
  }
});

const PAYLOADS = (cfg) => [
  '', ' ', '//evil.com', '//evil.com/auth/callback/op', '///evil.com', 'https://evil.com', 'https://evil.com/auth/callback/op',
  'http://evil.com/', 'HTTP://evil.com/', 'http://127.0.0.1.evil.com/cb', 'http://127.0.0.1.nip.io/cb',
  'http://localhost.evil.com:80/', 'http://127.0.0.1@evil.com/', 'http://127.0.0.1:80@evil.com/',
  'http://user:pw@127.0.0.1/cb', 'http://evil.com#@127.0.0.1/', 'http://127.0.0.1/cb#@evil.com',
  'http://evil.com\\@127.0.0.1/', 'http://127.0.0.1\\@evil.com/', 'http:\\\\evil.com', 'http:/\\evil.com', '\\\\evil.com', '/\\evil.com',
  'javascript:alert(1)', 'javascript://127.0.0.1/%0aalert(1)', 'JaVaScRiPt:alert(1)', 'data:text/html,<script>alert(1)</script>',
  'vbscript:msgbox(1)', 'file:///etc/passwd', 'http%3A%2F%2Fevil.com', 'http%3a//127.0.0.1.evil.com/',
  'http://127.0.0.1%2eevil.com/', 'http://127.0.0.1%40evil.com/', 'http://127.0.0.1:8080%2f@evil.com/',
  'http://[::1].evil.com/', 'http://[::1]@evil.com/', 'http://[::1]evil.com/', 'http://[::1/', 'http://127.0.0.1:80x/cb',
  'http://127.0.0.1:8080:80/cb', 'http://127.0.0.1 .evil.com/', 'http://127.0.0.1\t.evil.com/', 'http://127.0.0.1\n/cb',
  'http://127.0.0.1\u3002evil.com/', 'http://\u0031\u0032\u0037.0.0.1.evil.com/', 'https://127.0.0.1.evil.com/',
  `${cfg}x`, `${cfg}/`, `${cfg}/../../evil`, `${cfg}@evil.com`, `${cfg}.evil.com`, `${cfg}?next=https://evil.com`,
  `${cfg}#x`, `https://evil.com/${cfg}`, `https://evil.com/?${cfg}`, cfg.toUpperCase(),
  ` ${cfg}`, `${cfg} `, cfg.replace('https://', 'http://'), cfg.replace('bsp.example.com', 'bsp.example.com.evil.com'),
  cfg.replace('bsp.example.com', 'evil.com/bsp.example.com'), cfg.replace('https://', 'https://bsp.example.com@evil.com/'),
  'http://localhost/cb', 'http://localhost:8765/cb', 'http://127.0.0.2:8765/cb', 'http://0x7f000001/cb', 'http://2130706433/cb',
  'http://127.1/cb', 'http://[0:0:0:0:0:0:0:1]/cb', 'http://[::ffff:127.0.0.1]/cb', 'https://127.0.0.1:8765/cb',
];

test('redirect_uri on the API flow: the configured one or loopback only, never an open redirect', async () => {
  // A public URL that is not loopback, so that prefixes and suffixes of the
  // configured redirect URI are not loopback URIs themselves.
  const t = await setup({ over: { server: { public_url: 'https://bsp.example.com' } } });
  try {
    const { d } = t;
    const cfg = 'https://bsp.example.com/auth/callback/op';
    const authorize = (ru) => d.request(`/auth/authorize/op?redirect_uri=${encodeURIComponent(ru)}${PKCE}`);
    const s0 = states(d.dir);
    for (const p of PAYLOADS(cfg)) {
      const r = await authorize(p);
      assert.equal(r.status, 400, `${JSON.stringify(p)} → ${r.status} ${r.text()}`);
      assert.equal(r.json().error, 'invalid_request');
      assert.equal(r.json().authorization_url, undefined);
    }
    // Repeated, or missing.
    for (const q of [`redirect_uri=${encodeURIComponent(cfg)}&redirect_uri=https%3A%2F%2Fevil.com`, '', 'redirect_uri=']) {
      const r = await d.request(`/auth/authorize/op?${q}`);
      assert.equal(r.status, 400, q);
    }
    assert.equal(states(d.dir), s0, 'no login state stored for a refused redirect_uri');
    // A NUL ends the value where the C string ends: what the IdP is sent
    // is exactly the configured URI, never what follows the NUL.
    const nul = await authorize(`${cfg}\u0000.evil.com`);
    if (nul.status === 200) assert.equal(new URL(nul.json().authorization_url).searchParams.get('redirect_uri'), cfg);
    for (const ok of [cfg, 'http://127.0.0.1:8765/callback', 'http://127.0.0.1/cb', 'http://[::1]:8765/cb', 'http://127.0.0.1:8765/cb?x=1']) {
      const r = await authorize(ok);
      assert.equal(r.status, 200, `${ok}: ${r.text()}`);
      const u = new URL(r.json().authorization_url);
      assert.equal(u.searchParams.get('redirect_uri'), ok);
    }
  } finally {
    await t.stop();
  }
});

test('error and error_description from the IdP come back HTML-escaped', async () => {
  const t = await setup();
  try {
    const { d, op } = t;
    const desc = '<script>alert("x")</script><img src=x onerror=alert(1)> & \'q\'';
    op.next = { authorizeError: { error: '<b>access_denied</b>', error_description: desc } };
    const row = await refused(d, 400, /The identity provider said/, { event: 'login_refused' });
    const r = await fetchLogin(d, 'op');
    assert.doesNotMatch(r.text, /<script>alert|<img src=x|<b>access/);
    assert.match(r.text, /&lt;b&gt;access_denied&lt;\/b&gt;: &lt;script&gt;alert\(&quot;x&quot;\)&lt;\/script&gt;&lt;img src=x onerror=alert\(1\)&gt; &amp; &#x27;q&#x27;/);
    assert.equal(r.res.headers.get('content-security-policy')?.includes("script-src 'self'"), true);
    assert.match(row.detail, /access_denied/);
    assert.equal(op.tokenRequests.length, 0);
  } finally {
    await t.stop();
  }
});

test('RFC 9207: an authorization response naming another issuer is refused', async () => {
  const t = await setup({ op: {} });
  try {
    const { d, op } = t;
    op.next = { issParam: 'http://127.0.0.1:1/evil' };
    await refused(d, 400, /another identity provider/);
    assert.equal(op.tokenRequests.length, 0, 'the code is not even exchanged');
    op.next = { issParam: op.issuer };
    const r = await fetchLogin(d, 'op');
    assert.equal(r.res.status, 200, r.text);
  } finally {
    await t.stop();
  }
  // An IdP that says it always sends iss must send it.
  const u = await startFakeOidc();
  u.next = { issParameter: true };
  const d = await startLoginDaemon(loginConfig({ providers: { op: { issuer: u.issuer, client_id: u.clientId, client_secret: u.clientSecret } } }));
  try {
    await refused(d, 400, /another identity provider|none although/);
    u.next = { issParameter: true, issParam: u.issuer };
    const r = await fetchLogin(d, 'op');
    assert.equal(r.res.status, 200, r.text);
  } finally {
    await stopAll(d, u);
  }
});

test('an IdP whose key set cannot be loaded: a clean failure after one re-fetch, not a loop', async () => {
  const op = await startFakeOidc();
  op.next = { jwks: 'garbage' };
  const d = await startLoginDaemon(loginConfig({
    providers: { op: { issuer: op.issuer, client_id: op.clientId, client_secret: op.clientSecret } },
    over: { server: { shutdown_timeout: 1 } },
  }), { keys: 0 });
  try {
    await d.waitForLog(/key set is unusable/);
    const f0 = op.jwksFetches;
    const before = loginState(d.dir);
    const r = await fetchLogin(d, 'op', { signal: AbortSignal.timeout(8000) });
    assert.equal(r.res.status, 502, r.text);
    assert.match(r.text, /signing keys could not be loaded/);
    assert.ok(op.jwksFetches - f0 <= 2, `JWKS fetched ${op.jwksFetches - f0} times for one login`);
    assertNoToken(d.dir, before, { event: 'login_failed', users: 0 });
    assert.equal((await fetch(`${d.url}/health`)).status, 200);
  } finally {
    await stopAll(d, op);
  }
});

test('a state is single use even when its first use fails', async () => {
  const t = await setup();
  try {
    const { d, op } = t;
    const jar = new Jar();
    op.next = { claims: { aud: 'someone-else' } };
    const r1 = await fetchLogin(d, 'op', { jar });
    assert.equal(r1.res.status, 400);
    op.next = {};
    const r2 = await jar.fetch(r1.callbackUrl);
    assert.equal(r2.status, 400);
    assert.match(await r2.text(), /expired or was already used/);
    assert.equal(op.tokenRequests.length, 1);
  } finally {
    await t.stop();
  }
});
