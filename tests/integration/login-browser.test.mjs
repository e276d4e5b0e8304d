// The browser login against a certified OpenID Provider: `oidc-provider`
// on loopback (lib/fake-idp.mjs) as the IdP, headless Chromium as the
// user. Open the proxy's start page, click the provider's button, log in
// on the IdP's form, consent, land on the callback page, read the token
// from the page, and use it on /auth/validate and InvokeModel (fake
// Bedrock, SigV4 checked). Then what the page must be (CSP, no inline
// script, escaped claims, no-store, readable without JavaScript, copy
// buttons), what must be refused (a replayed callback, a callback in
// another browser, markup in error_description), and IdP key rotation.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { CLIENT_ID, CLIENT_SECRET, startFakeIdp } from './lib/fake-idp.mjs';
import {
  assertNoToken, browserLogin, invoke, launchBrowser, loginConfig, loginState, newContext, startBedrock, startLoginDaemon,
  validate, stopAll,
} from './lib/login.mjs';

let browser;
const getBrowser = async () => { browser ??= await launchBrowser(); return browser; };
after(async () => { await browser?.close(); });

/** redirectUri: the provider's redirect_uri (else the daemon's own callback). */
async function setup({ redirectUri } = {}) {
  const idp = await startFakeIdp();
  const bedrock = await startBedrock();
  let d;
  try {
    d = await startLoginDaemon(loginConfig({
      bedrock,
      providers: {
        idp: {
          issuer: idp.url, client_id: CLIENT_ID, client_secret: CLIENT_SECRET, display_name: 'Example IdP',
          ...(redirectUri ? { redirect_uri: redirectUri } : {}),
        },
      },
      access: { allowed_email_domains: ['example.com'] },
    }));
  } catch (e) {
    await idp.close();
    await bedrock.close();
    throw e;
  }
  idp.setRedirectUris([redirectUri ?? `${d.url}/auth/callback/idp`]);
  const contexts = [];
  return {
    idp, bedrock, d,
    async context(opts) {
      const c = await newContext(await getBrowser(), opts);
      contexts.push(c);
      return c;
    },
    async stop() {
      for (const c of contexts) await c.close().catch(() => {});
      await stopAll(d, idp, bedrock);
    },
  };
}

/** Fail the test if the page ever opens a dialog (alert() from injected markup). */
function noDialogs(page) {
  const seen = [];
  page.on('dialog', (dlg) => { seen.push(dlg.message()); dlg.dismiss().catch(() => {}); });
  return seen;
}

async function pageFacts(page) {
  return page.evaluate(() => ({
    scripts: [...document.scripts].map((s) => ({ src: s.getAttribute('src'), inline: s.textContent.trim().length })),
    handlers: [...document.querySelectorAll('*')].flatMap((e) => [...e.attributes].filter((a) => /^on/i.test(a.name)).map((a) => a.name)),
    jsUrls: [...document.querySelectorAll('[href],[src],[action]')].map((e) => e.getAttribute('href') ?? e.getAttribute('src') ?? e.getAttribute('action'))
      .filter((u) => /^\s*javascript:/i.test(u)),
    styles: document.querySelectorAll('style,[style]').length,
  }));
}

function assertPageHeaders(res, what) {
  const h = res.headers();
  assert.match(h['content-type'], /^text\/html/, what);
  const csp = h['content-security-policy'] ?? '';
  assert.match(csp, /default-src 'none'/, `${what}: CSP ${csp}`);
  assert.match(csp, /script-src 'self'(;|$)/, `${what}: CSP ${csp}`);
  assert.match(csp, /frame-ancestors 'none'/, what);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|https?:/, what);
  assert.equal(h['x-content-type-options'], 'nosniff', what);
  assert.equal(h['referrer-policy'], 'no-referrer', what);
}

test('browser login with oidc-provider: the token on the page works on /auth/validate and InvokeModel', async () => {
  const t = await setup();
  try {
    const { d, idp } = t;
    const ctx = await t.context({ permissions: ['clipboard-read', 'clipboard-write'] });
    const page = await ctx.newPage();
    const dialogs = noDialogs(page);
    const start = await page.goto(`${d.url}/`);
    assertPageHeaders(start, 'start page');
    assert.equal(await page.getByRole('link', { name: 'Sign in with Example IdP' }).count(), 1);
    const cbRes = page.waitForResponse((r) => r.url().startsWith(`${d.url}/auth/callback/idp`));
    await browserLogin(page, d, { button: 'Sign in with Example IdP', login: 'alice' });
    const res = await cbRes;
    assert.equal(res.status(), 200);
    assertPageHeaders(res, 'callback page');
    assert.equal(res.headers()['cache-control'], 'no-store', 'a page with tokens is never cached');
    assert.equal(res.headers()['x-frame-options'], 'DENY');

    assert.equal(await page.textContent('h1'), 'You are signed in');
    assert.match(await page.textContent('main p'), /Alice Example \(alice@example\.com\) with Example IdP/);
    const token = await page.inputValue('#access-token');
    const refresh = await page.inputValue('#refresh-token');
    assert.match(token, /^eyJ[\w-]+\.[\w-]+\.[\w-]+$/);
    assert.match(refresh, /^bsr_[\w-]{43}$/);
    // The Claude Code block carries the same token.
    assert.match(await page.textContent('#cc-shell'), new RegExp(`ANTHROPIC_AUTH_TOKEN='${token}'`));

    // No inline script, no handlers, no javascript: URLs, no inline styles.
    const facts = await pageFacts(page);
    assert.deepEqual(facts.scripts, [{ src: '/static/app.js', inline: 0 }]);
    assert.deepEqual(facts.handlers, []);
    assert.deepEqual(facts.jsUrls, []);
    assert.equal(facts.styles, 0);

    // Copy buttons work with JavaScript (app.js shows them).
    const btn = page.locator('button[data-copy="access-token"]');
    assert.equal(await btn.isVisible(), true);
    await btn.click();
    await page.waitForFunction(() => document.querySelector('button[data-copy="access-token"]').textContent === 'Copied');
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), token);

    // The token works.
    const v = await validate(d, token);
    assert.equal(v.status, 200, v.text());
    assert.equal(v.json().sub, 'idp:alice');
    assert.equal(v.json().email, 'alice@example.com');
    assert.deepEqual(v.json().groups, ['dev', 'bedrock-users']);
    const b = await invoke(d, token);
    assert.equal(b.status, 200, b.text());
    assert.equal(t.bedrock.requests.at(-1).signatureValid, true);

    // The user was recorded; the login audited.
    const st = loginState(d.dir);
    assert.equal(st.users.length, 1);
    const [u] = st.users;
    assert.deepEqual([u.id, u.provider, u.subject, u.email, u.email_verified, u.name], ['idp:alice', 'idp', 'alice', 'alice@example.com', 1, 'Alice Example']);
    assert.deepEqual(JSON.parse(u.groups), ['dev', 'bedrock-users']);
    assert.ok(u.first_login > 0 && u.last_login >= u.first_login);
    assert.equal(st.families, 1);
    assert.equal(st.audit.filter((a) => a.event === 'login' && a.user_id === 'idp:alice').length, 1);

    // What the IdP saw: PKCE, nonce, Basic client authentication, userinfo.
    const authz = new URL(idp.requests.find((r) => r.url.startsWith('/auth?')).url, idp.url).searchParams;
    assert.equal(authz.get('code_challenge_method'), 'S256');
    assert.ok(authz.get('nonce')?.length >= 43);
    assert.match(idp.requests.find((r) => r.url === '/token').headers.authorization, /^Basic /);
    assert.ok(idp.requests.some((r) => r.url === '/me'), 'claims missing from the ID token come from userinfo');
    assert.deepEqual(dialogs, []);

    // Nothing secret reached the daemon's log: code, state, tokens, client secret.
    const answer = new URL(page.url()).searchParams;
    for (const [what, secret] of [['code', answer.get('code')], ['state', answer.get('state')], ['access token', token.split('.')[2]],
      ['refresh token', refresh], ['client secret', CLIENT_SECRET]]) {
      assert.ok(secret && !d.stderr.includes(secret), `${what} in the log`);
    }
  } finally {
    await t.stop();
  }
});

test('the success page is readable without JavaScript, and IdP claims are escaped', async () => {
  const t = await setup();
  try {
    const { d } = t;
    const ctx = await t.context({ javaScriptEnabled: false });
    const page = await ctx.newPage();
    const dialogs = noDialogs(page);
    const cb = page.waitForResponse((r) => r.url().startsWith(`${d.url}/auth/callback/idp`));
    await browserLogin(page, d, { login: 'mallory' });
    const html = await (await cb).text();
    const token = /<textarea id="access-token"[^>]*>([^<]+)<\/textarea>/.exec(html)?.[1];
    assert.ok(token, 'the token is in the HTML itself');
    assert.equal((await validate(d, token)).status, 200);
    assert.ok(/<textarea id="refresh-token"[^>]*>bsr_/.test(html));
    // Copy buttons stay hidden without app.js.
    assert.equal(await page.locator('button[data-copy="access-token"]').isVisible(), false);
    // The name arrives as text, not markup.
    const who = await page.locator('main p strong').first().textContent();
    assert.equal(who, 'Mal <b>"lory"</b> & <script>alert(1)</script>');
    assert.equal(await page.locator('main b').count(), 0);
    assert.equal(await page.locator('script').count(), 1);
    assert.match(html, /Mal &lt;b&gt;&quot;lory&quot;&lt;\/b&gt; &amp; &lt;script&gt;alert\(1\)&lt;\/script&gt;/);
    assert.deepEqual(dialogs, []);
  } finally {
    await t.stop();
  }
});

test('a callback URL used twice is refused the second time; no second token', async () => {
  const t = await setup();
  try {
    const { d } = t;
    const page = await (await t.context()).newPage();
    await browserLogin(page, d, { login: 'alice' });
    const url = page.url();
    assert.match(url, /[?&]code=.*&state=/);
    const before = loginState(d.dir);
    assert.equal(before.families, 1);
    const res = await page.goto(url);
    assert.equal(res.status(), 400);
    assert.match(await page.textContent('main'), /expired or was already used/);
    assert.equal(await page.locator('#access-token').count(), 0);
    assertNoToken(d.dir, before, { users: 1 });
    assert.equal(loginState(d.dir).audit.length, before.audit.length, 'a replay is a log line, not an audit row');
    await d.waitForLog((l) => /refused before any state/.test(l?.msg ?? ''));
  } finally {
    await t.stop();
  }
});

test('a callback opened in another browser (no state cookie) is refused, writes nothing, and leaves the sign-in to its browser', async () => {
  // The IdP sends the first browser to a dead end (the provider's
  // redirect_uri, port 9), so that we hold its answer, unused.
  const t = await setup({ redirectUri: 'http://127.0.0.1:9/auth/callback/idp' });
  try {
    const { d } = t;
    const ctx1 = await t.context();
    const page1 = await ctx1.newPage();
    const failed = new Promise((res) => {
      page1.on('requestfailed', (r) => { if (r.url().startsWith('http://127.0.0.1:9/')) res(r.url()); });
    });
    await page1.goto(`${d.url}/`);
    await page1.locator('ul.providers a').first().click();
    await page1.fill('input[name=login]', 'alice');
    await page1.fill('input[name=password]', 'pw');
    await page1.click('button[type=submit]');
    await page1.waitForSelector('form input[name=prompt][value=consent]', { state: 'attached' });
    await page1.click('button[type=submit]').catch(() => {});
    const answer = new URL(await failed);
    assert.ok(answer.searchParams.get('code') && answer.searchParams.get('state'));
    const callback = `${d.url}/auth/callback/idp${answer.search}`;

    const before = loginState(d.dir);
    const page2 = await (await t.context()).newPage();
    const res = await page2.goto(callback);
    assert.equal(res.status(), 400);
    assert.match(await page2.textContent('main'), /started in another browser/);
    // Junk to this proxy: nothing written, no code exchanged.
    assert.deepEqual(loginState(d.dir), before);
    assert.equal(t.idp.requests.filter((r) => r.url === '/token').length, 0, 'no code was exchanged');
    // So that attempt spent nothing: the first browser still finishes.
    const res1 = await page1.goto(callback);
    assert.equal(res1.status(), 200);
    assert.ok(await page1.locator('#access-token').count() === 1);
    assert.equal(loginState(d.dir).families, before.families + 1);
  } finally {
    await t.stop();
  }
});

test('markup in error_description comes back escaped and inert on the error page', async () => {
  const t = await setup();
  try {
    const { d, idp } = t;
    const page = await (await t.context()).newPage();
    const dialogs = noDialogs(page);
    const urls = [];
    page.on('request', (r) => urls.push(r.url()));
    await page.goto(`${d.url}/auth/login/idp`);
    const authUrl = urls.find((u) => u.startsWith(`${idp.url}/auth?`));
    assert.ok(authUrl, urls.join(' '));
    const state = new URL(authUrl).searchParams.get('state');
    const desc = '<script>alert(1)</script><img src=x onerror=alert(2)><a href="javascript:alert(3)">x</a>';
    const before = loginState(d.dir);
    const res = await page.goto(`${d.url}/auth/callback/idp?error=access_denied&error_description=${encodeURIComponent(desc)}`
      + `&state=${state}&iss=${encodeURIComponent(idp.url)}`);
    assert.equal(res.status(), 400);
    assertPageHeaders(res, 'error page');
    assert.match(await page.textContent('main'), new RegExp(`The identity provider said: access_denied: ${desc.replace(/[()[\]\\^$.|?*+{}]/g, '\\$&')}`));
    const facts = await pageFacts(page);
    assert.deepEqual(facts.scripts, [{ src: '/static/app.js', inline: 0 }]);
    assert.deepEqual(facts.handlers, []);
    assert.deepEqual(facts.jsUrls, []);
    assert.equal(await page.locator('main img').count(), 0);
    await page.waitForTimeout(200);
    assert.deepEqual(dialogs, []);
    assertNoToken(d.dir, before, { event: 'login_refused', users: 0 });
  } finally {
    await t.stop();
  }
});

test('IdP key rotation and restart: logins keep working without restarting the proxy', async () => {
  const t = await setup();
  try {
    const { d, idp } = t;
    let page = await (await t.context()).newPage();
    await browserLogin(page, d, { login: 'alice' });
    const first = await page.inputValue('#access-token');
    const oldKid = idp.kids()[0];
    const f0 = idp.jwksFetches;

    // Rotate (the old key is gone from the JWKS) and restart on the same port.
    await idp.rotateKeys();
    await idp.down();
    await idp.up();
    assert.notEqual(idp.kids()[0], oldKid);
    page = await (await t.context()).newPage();
    await browserLogin(page, d, { login: 'dave' });
    const second = await page.inputValue('#access-token');
    assert.equal((await validate(d, second)).json().sub, 'idp:dave');
    assert.equal(idp.jwksFetches, f0 + 1, 'the unknown kid made the daemon fetch the JWKS once');
    assert.equal((await validate(d, first)).status, 200);
  } finally {
    await t.stop();
  }
});
