// The laptop client's sign-in (issue 12): `bedrock-sso-proxy login URL`
// against the test daemon and oidc-provider, the browser step done by
// headless Chromium: the loopback redirect with PKCE (RFC 8252, RFC 7636),
// the session saved 0600 in a 0700 directory under $XDG_CONFIG_HOME,
// `token` printing only the token, `status`, profiles, `logout`; the URL
// printed when no browser can be opened; what the loopback listener
// refuses; a sign-in the proxy refuses.
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { test } from 'node:test';
import { invoke, loginState, newContext, validate } from './lib/login.mjs';
import {
  cliLogin, fakeBrowser, newLaptop, runClient, signInAtIdp, spawnClient, startSignin,
} from './lib/client.mjs';
import { request, waitFor } from './lib/util.mjs';

test('login with the browser: PKCE loopback flow, session 0600 in 0700, token prints only the token', async () => {
  const t = await startSignin({ over: { budgets: { caps: [{ name: 'daily', scope: 'user', window: 'day', limit_usd: '5' }] } } });
  const lap = newLaptop();
  try {
    const r = await cliLogin(t, lap);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '', 'login prints nothing on stdout');
    assert.match(r.stderr, /Signed in to http:\/\/127\.0\.0\.1:\d+ as alice@example\.com \(profile default\)/);
    assert.equal(r.page.title, 'Signed in');
    // The authorization URL came from the proxy's API flow with our challenge.
    const q = new URL(r.url).searchParams;
    assert.match(q.get('redirect_uri'), /^http:\/\/127\.0\.0\.1:\d+\/callback$/);
    assert.equal(q.get('code_challenge_method'), 'S256');
    assert.match(q.get('code_challenge'), /^[\w-]{43}$/);
    const authz = t.d.logs.filter((e) => e?.msg === 'request' && e.route === 'auth_authorize');
    assert.equal(authz.length, 1);
    assert.equal(authz[0].status, 200);

    // The session: the directory 0700, the file 0600, both ours.
    assert.equal(statSync(lap.sessionDir).mode & 0o777, 0o700);
    assert.equal(statSync(lap.sessionPath()).mode & 0o777, 0o600);
    const s = lap.session();
    assert.equal(s.version, 1);
    assert.equal(s.proxy, t.d.url);
    assert.equal(s.sub, 'idp:alice');
    assert.equal(s.flow, 'browser');
    assert.match(s.refresh_token, /^bsr_/);
    // Nothing secret in what login printed.
    assert.ok(!r.stderr.includes(s.refresh_token) && !r.stderr.includes(s.access_token));

    // token: the token and a newline on stdout, nothing on stderr.
    const tk = await runClient(lap, ['token']);
    assert.equal(tk.code, 0, tk.stderr);
    assert.equal(tk.stderr, '');
    assert.match(tk.stdout, /^eyJ[\w-]+\.[\w-]+\.[\w-]+\n$/);
    const token = tk.stdout.trim();
    assert.equal((await validate(t.d, token)).json().sub, 'idp:alice');
    assert.equal((await invoke(t.d, token)).status, 200);

    // status: who, which proxy, expiry, models, usage and budgets (GET /auth/me).
    const st = await runClient(lap, ['status']);
    assert.equal(st.code, 0, st.stderr);
    assert.match(st.stdout, new RegExp(`proxy: +${t.d.url.replace(/[.]/g, '\\.')}\\n`));
    assert.match(st.stdout, /user: +alice@example\.com \(idp:alice, provider idp\)/);
    assert.match(st.stdout, /access token: +expires \d{4}-\d\d-\d\dT[\d:]+Z \(in 30 days\)/);
    assert.match(st.stdout, /models: +.*claude-haiku-4-5/);
    const me = (await t.d.request('/auth/me', { headers: { Authorization: `Bearer ${token}` } })).json();
    assert.equal(me.usage.requests, 1);
    assert.ok(st.stdout.includes(`usage:         $${me.usage.cost_usd} this day (since ${me.usage.since}, UTC); calls 1; tokens ${me.usage.tokens.input} in, ${me.usage.tokens.output} out, 0 cache read, 0 cache write\n`), st.stdout);
    assert.ok(st.stdout.includes(`budgets:       daily (user, day): $${me.usage.cost_usd} of $5.000000 spent, $${me.budgets[0].remaining_usd} left, resets ${me.budgets[0].resets_at} [ok]\n`), st.stdout);
    assert.ok(!st.stdout.includes(token), 'status never shows the token');

    // A second profile: another user at the same time.
    const r2 = await cliLogin(t, lap, { args: ['--profile', 'work'], login: 'dave' });
    assert.equal(r2.code, 0, r2.stderr);
    const t2 = (await runClient(lap, ['token', '--profile', 'work'])).stdout.trim();
    assert.equal((await validate(t.d, t2)).json().sub, 'idp:dave');
    assert.equal((await runClient(lap, ['token'])).stdout.trim(), token, 'the default profile is untouched');

    // logout: ends the session on the proxy and removes the file.
    const lo = await runClient(lap, ['logout', '--profile', 'work']);
    assert.equal(lo.code, 0, lo.stderr);
    assert.match(lo.stderr, /Signed out of .* \(profile work\)/);
    assert.equal((await validate(t.d, t2)).status, 401, 'its access token stopped working at once');
    const gone = await runClient(lap, ['token', '--profile', 'work']);
    assert.equal(gone.code, 3);
    assert.equal(gone.stdout, '');
    assert.match(gone.stderr, /this profile is not signed in; sign in again: bedrock-sso-proxy login --profile work URL/);
    assert.equal((await runClient(lap, ['logout', '--profile', 'work'])).code, 0, 'logout twice is fine');
  } finally {
    lap.close();
    await t.stop();
  }
});

test('login without a browser or a device flow prints the URL; the loopback listener refuses other hosts and states', async () => {
  // No DISPLAY, no BROWSER, and no device flow on the proxy: the URL is printed.
  const t = await startSignin({ over: { device: { enabled: false } } });
  const lap = newLaptop();
  try {
    const c = spawnClient(lap, ['login', t.d.url]);
    const m = await c.waitStderr(/\n {4}(http:\/\/127\.0\.0\.1:\d+\/auth\?\S+)\n/);
    const url = m[1];
    assert.match(c.stderr(), /Open this page in a browser on this machine/);
    const port = /redirect_uri=http%3A%2F%2F127\.0\.0\.1%3A(\d+)%2Fcallback/.exec(url)[1];
    // DNS rebinding: a Host that is not loopback is refused.
    const bad = await request(`http://127.0.0.1:${port}/callback?code=x&state=y`, { headers: { Host: `evil.example:${port}` } });
    assert.equal(bad.status, 403);
    // Another sign-in's state: refused, and the login goes on waiting.
    const other = await request(`http://127.0.0.1:${port}/callback?code=x&state=not-ours`);
    assert.equal(other.status, 400);
    assert.match(other.text(), /not the sign-in/);
    assert.equal(other.headers['content-security-policy'], "default-src 'none'");
    const page = await signInAtIdp(await t.browser(), url);
    assert.equal(page.title, 'Signed in');
    const r = await c.exited;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(lap.session().sub, 'idp:alice');
  } finally {
    lap.close();
    await t.stop();
  }
});

test('a sign-in the proxy refuses: exit 3, a clear message, no session', async () => {
  const t = await startSignin();
  const lap = newLaptop();
  try {
    const before = loginState(t.d.dir);
    // bob@other.test is not in access.allowed_email_domains.
    const r = await cliLogin(t, lap, { login: 'bob' });
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /the proxy at .* answered 403 to the sign-in \(POST \/auth\/token\): /);
    assert.equal(r.page.title, 'Sign-in failed');
    assert.equal(loginState(t.d.dir).families, before.families);
    const tk = await runClient(lap, ['token']);
    assert.equal(tk.code, 3);
    assert.match(tk.stderr, /not signed in; sign in again: bedrock-sso-proxy login URL/);
  } finally {
    lap.close();
    await t.stop();
  }
});

test('login refuses what it cannot use, before any browser', async () => {
  const lap = newLaptop();
  try {
    let r = await runClient(lap, ['login', 'http://proxy.example.com']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /plain http is only for a proxy on this machine/);
    r = await runClient(lap, ['login', '--profile', '../x', 'https://proxy.example.com']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /--profile: letters, digits/);
    r = await runClient(lap, ['login']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^usage: bedrock-sso-proxy login /);
    // The daemon's configuration has nothing to do with the client commands.
    r = await runClient(lap, ['-f', '/nonexistent.yaml', 'token']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /token uses no daemon configuration/);
    // A proxy that is down: exit 4, naming it.
    r = await runClient(lap, ['login', '--no-browser', 'http://127.0.0.1:9']);
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /cannot reach the proxy at http:\/\/127\.0\.0\.1:9/);
  } finally {
    lap.close();
  }
});

test('login: a second callback, even with the right state, is refused; the first one signs in', async () => {
  const t = await startSignin();
  const lap = newLaptop();
  try {
    const b = fakeBrowser(lap);
    const c = spawnClient(lap, ['login', t.d.url], { env: { BROWSER: b.command } });
    const url = await b.url();
    const port = new URL(new URL(url).searchParams.get('redirect_uri')).port;
    // The user's part at the IdP, with the redirect back to the client caught instead of delivered.
    const ctx = await newContext(await t.browser());
    let callback = null;
    try {
      // Chromium does not route redirect hops: every redirect of the sign-in is turned into a
      // page that navigates on (a new request, routed again) until the one to the client's callback.
      await ctx.route((u) => u.hostname === '127.0.0.1' && u.port !== port, async (route) => {
        const res = await route.fetch({ maxRedirects: 0 });
        const loc = res.status() >= 300 && res.status() < 400 ? res.headers().location : null;
        if (!loc) return route.fulfill({ response: res });
        const next = new URL(loc, route.request().url()).href;
        if (new URL(next).port === port && new URL(next).pathname === '/callback') {
          callback = next;
          return route.fulfill({ status: 200, contentType: 'text/html', body: '<title>caught</title>' });
        }
        const headers = { ...res.headers(), 'content-type': 'text/html' };
        delete headers.location;
        delete headers['content-length'];
        return route.fulfill({ status: 200, headers, body: `<script>location.replace(${JSON.stringify(next)})</script>` });
      });
      const page = await ctx.newPage();
      await page.goto(url);
      await page.fill('input[name=login]', 'alice');
      await page.fill('input[name=password]', 'any password');
      await page.click('button[type=submit]');
      await page.waitForSelector('form input[name=prompt][value=consent]', { state: 'attached' });
      await page.click('button[type=submit]');
      await waitFor(() => callback, { timeoutMs: 20000, message: `no callback; the page is at ${page.url()}, port ${port}` });
    } finally {
      await ctx.close().catch(() => {});
    }
    assert.match(callback, /[?&]code=.*&?state=|[?&]state=.*&?code=/);
    // The same valid callback twice at once (a replay, or another program that caught it): one wins.
    const answers = await Promise.all([request(callback), request(callback)]);
    assert.deepEqual(answers.map((a) => a.status).sort(), [200, 404]);
    assert.match(answers.find((a) => a.status === 404).text(), /Nothing here/);
    assert.match(answers.find((a) => a.status === 200).text(), /You are signed in to/);
    const r = await c.exited;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(lap.session().sub, 'idp:alice');
    // And once the sign-in is over, nothing answers there any more.
    const late = await request(callback).catch((e) => e);
    assert.ok(late instanceof Error, 'the listener is closed');
  } finally {
    lap.close();
    await t.stop();
  }
});
