// The self-service page (/me, src/route-self.c) driven by headless
// Chromium against a certified OpenID Provider (oidc-provider, lib/fake-idp.mjs)
// and the fake Bedrock: sign in, follow the token page's link, see the
// usage of a relayed call (checked against the usage table), make an API
// key with a name, models and an expiry (its secret shown once) and use
// it, revoke it (then refused), sign out another session, sign out
// everywhere (the cookie, the tokens and the keys stop working). Then
// what must be refused and change nothing: a form posted by another
// origin's page (same site and another site), a post without or with a
// wrong form token, for another user's key or session, a forged, altered,
// expired or too long cookie, and a cookie whose session ended elsewhere
// (/auth/logout, "user logout", "user disable"). And behind https: the
// __Host- cookie.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { runCommand } from './lib/daemon.mjs';
import { CLIENT_ID, CLIENT_SECRET, startFakeIdp } from './lib/fake-idp.mjs';
import {
  MODEL, browserLogin, invoke, launchBrowser, loginConfig, newContext, startBedrock, startLoginDaemon, stopAll, validate,
} from './lib/login.mjs';
import { nowSec, withDb } from './lib/tokens.mjs';
import { makeTestPKI, readPem } from './lib/tls.mjs';
import { makeTempDir, removeDir, repoTop, waitFor } from './lib/util.mjs';

const sealSession = join(process.env.BSP_BUILDDIR ?? repoTop, 'tests', 'unit', 'seal-session');

let browser;
const getBrowser = async () => { browser ??= await launchBrowser(); return browser; };
after(async () => { await browser?.close(); });

async function setup(over = {}, daemonOpts = {}) {
  const idp = await startFakeIdp();
  const bedrock = await startBedrock();
  let d;
  try {
    d = await startLoginDaemon(loginConfig({
      bedrock,
      providers: { idp: { issuer: idp.url, client_id: CLIENT_ID, client_secret: CLIENT_SECRET, display_name: 'Example IdP' } },
      access: { allowed_email_domains: ['example.com'] },
      over,
    }), daemonOpts);
  } catch (e) {
    await idp.close();
    await bedrock.close();
    throw e;
  }
  idp.setRedirectUris([`${d.url}/auth/callback/idp`]);
  const contexts = [];
  const servers = [];
  return {
    idp, bedrock, d,
    async context(opts) {
      const c = await newContext(await getBrowser(), opts);
      contexts.push(c);
      return c;
    },
    /** Another origin's page on loopback: GET / answers html. */
    async evil(html) {
      const s = createServer((req, res) => {
        res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
        res.end(html);
      });
      await new Promise((res) => s.listen(0, '127.0.0.1', res));
      servers.push(s);
      return s.address().port;
    },
    async stop() {
      for (const c of contexts) await c.close().catch(() => {});
      for (const s of servers) s.close();
      await stopAll(d, idp, bedrock);
    },
  };
}

/** Sign in in a fresh context; returns {ctx, page, token}. */
async function signIn(t, login = 'alice', opts = undefined) {
  const ctx = await t.context(opts);
  const page = await ctx.newPage();
  await browserLogin(page, t.d, { login });
  const token = await page.inputValue('#access-token');
  return { ctx, page, token };
}

/** The self-service cookie of a context. */
async function selfCookie(ctx, name = 'bsp_self') {
  return (await ctx.cookies()).find((c) => c.name === name);
}

function assertPageHeaders(res, what) {
  const h = res.headers();
  assert.match(h['content-type'], /^text\/html/, what);
  const csp = h['content-security-policy'] ?? '';
  assert.match(csp, /default-src 'none'/, `${what}: CSP ${csp}`);
  assert.match(csp, /script-src 'self'(;|$)/, `${what}: CSP ${csp}`);
  assert.match(csp, /form-action 'self'/, `${what}: CSP ${csp}`);
  assert.match(csp, /frame-ancestors 'none'/, what);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|https?:/, what);
  assert.equal(h['x-content-type-options'], 'nosniff', what);
  assert.equal(h['x-frame-options'], 'DENY', what);
  assert.equal(h['cache-control'], 'no-store', `${what}: never cached`);
  assert.equal(h['referrer-policy'], 'same-origin', `${what}: its posts carry a same-origin Referer`);
}

/** Rows of the page's table (cells' text). */
const tableRows = (page, sel) => page.$$eval(`${sel} tbody tr`, (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent.trim())));

/** The active keys of a user in the database. */
const activeKeys = (d, user) => withDb(d.dir, (db) => db.prepare('SELECT id, name, hint, models, expires, created FROM api_keys WHERE user_id = ? AND revoked = 0')
  .all(user));

/** Micro-dollars as the page and /auth/me write dollars. */
const usd = (m) => `${Math.floor(m / 1e6)}.${String(m % 1e6).padStart(6, '0')}`;

const CAPS = {
  budgets: {
    caps: [
      { name: 'daily', scope: 'user', window: 'day', limit_usd: '1', soft_usd: '0.5' },
      { name: 'team', scope: 'group', match: ['dev'], window: 'month', limit_usd: '100' },
    ],
  },
};

test('self-service: sign in, the usage of a relayed call and its cost, the budgets, a key made, used and revoked, a session signed out, then everywhere', async () => {
  const t = await setup(CAPS);
  try {
    const { d } = t;
    const { ctx, page, token } = await signIn(t);

    // The sign-in gave this browser its session cookie, and the token page links the page.
    const c = await selfCookie(ctx);
    assert.ok(c, 'a bsp_self cookie');
    assert.equal(c.httpOnly, true);
    assert.equal(c.sameSite, 'Strict');
    assert.equal(c.path, '/me');
    assert.equal(c.secure, false, 'plain http here: not Secure (and no __Host- prefix)');
    const life = c.expires - nowSec();
    assert.ok(life > 3500 && life <= 3601, `self_service.session_ttl (1 h) by default: ${life}`);
    assert.doesNotMatch(page.url(), /bsp_self|csrf/);
    // The page after sign-in says what /auth/me says, in short.
    const first = await (await d.request('/auth/me', { headers: { Authorization: `Bearer ${token}` } })).json();
    const spend = (await page.textContent('p.spend')).replace(/\s+/g, ' ');
    assert.ok(spend.startsWith(`Spent today: $${first.usage.cost_usd} in 0 requests.`), spend);
    for (const b of first.budgets) {
      assert.ok(spend.includes(`Budget ${b.name} (${b.window}): $${b.remaining_usd} left of $${b.limit_usd}, until ${b.resets_at}.`), spend);
    }

    assert.equal((await invoke(d, token)).status, 200);
    const meRes = page.waitForResponse((r) => r.url() === `${d.url}/me`);
    await page.getByRole('link', { name: 'Your usage, API keys and sessions' }).click();
    const res = await meRes;
    assert.equal(res.status(), 200);
    assertPageHeaders(res, '/me');
    assert.equal(await page.textContent('h1'), 'Your account');
    assert.match(await page.textContent('main p'), /Alice Example \(alice@example\.com\)/);
    // No inline script, no handlers, every form with its token.
    const facts = await page.evaluate(() => ({
      scripts: [...document.scripts].map((s) => ({ src: s.getAttribute('src'), inline: s.textContent.trim().length })),
      handlers: [...document.querySelectorAll('*')].flatMap((e) => [...e.attributes].filter((a) => /^on/i.test(a.name)).map((a) => a.name)),
      styles: document.querySelectorAll('style,[style]').length,
      forms: [...document.forms].map((f) => ({ method: f.method, action: new URL(f.action).pathname, csrf: f.elements.csrf?.value ?? null })),
    }));
    assert.deepEqual(facts.scripts, [{ src: '/static/app.js', inline: 0 }]);
    assert.deepEqual(facts.handlers, []);
    assert.equal(facts.styles, 0);
    assert.ok(facts.forms.length >= 3, JSON.stringify(facts.forms));
    for (const f of facts.forms) {
      assert.equal(f.method, 'post', JSON.stringify(f));
      assert.match(f.csrf, /^[\w-]{43}$/, JSON.stringify(f));
      assert.equal(f.csrf, facts.forms[0].csrf, 'one token per browser session');
    }

    // The call's usage, as the usage table has it (written within a second or so).
    let usage;
    await waitFor(async () => {
      await page.reload();
      usage = await tableRows(page, 'table.usage');
      return usage.length > 0;
    }, { timeoutMs: 15000, intervalMs: 300, message: 'the call never showed on the page' });
    const row = withDb(d.dir, (db) => db.prepare('SELECT * FROM usage WHERE user_id = ?').get('idp:alice'));
    const day = new Date(Math.floor(row.ts / 86400) * 86400000).toISOString().slice(0, 10);
    assert.ok(row.cost_micros > 0, `the call has a cost: ${row.cost_micros}`);
    assert.deepEqual(usage, [[day, MODEL, '1', String(row.input_tokens), String(row.output_tokens), String(row.cache_read_tokens),
      String(row.cache_write_tokens), `$${usd(row.cost_micros)}`]]);
    assert.deepEqual(await page.$$eval('table.usage tfoot td', (tds) => tds.map((td) => td.textContent.trim())).then((r) => r.at(-1)),
      `$${usd(row.cost_micros)}`);

    // The budgets, as GET /auth/me has them: spent is the call's cost, and what is left.
    const me = await t.d.request('/auth/me', { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(me.status, 200, me.text());
    const mej = me.json();
    assert.match(await page.textContent('p.today'), new RegExp(`\\$${usd(row.cost_micros).replace('.', '\\.')} in 1 request\\.`));
    assert.equal(mej.usage.cost_usd, usd(row.cost_micros));
    const budgets = await tableRows(page, 'table.budgets');
    assert.equal(budgets.length, 2, JSON.stringify(budgets));
    for (const b of mej.budgets) {
      const r = budgets.find((x) => x[0] === `${b.name}${b.window}`);
      assert.ok(r, `${b.name} on the page`);
      const resets = `${b.resets_at.slice(0, 10)} ${b.resets_at.slice(11, 16)} UTC`;
      assert.deepEqual(r, [`${b.name}${b.window}`, `${b.scope} ${b.entity}`, `$${b.limit_usd}`, `$${b.spent_usd}`,
        `$${b.reserved_usd}`, `$${b.remaining_usd}`, resets, 'ok']);
    }
    const daily = budgets.find((x) => x[0] === 'dailyday');
    assert.deepEqual(daily.slice(1, 6), ['user idp:alice', '$1.000000', `$${usd(row.cost_micros)}`, '$0.000000',
      `$${usd(1e6 - row.cost_micros)}`]);
    assert.equal(budgets.find((x) => x[0] === 'teammonth')[1], 'group dev');

    // Make a key: name, models, expiry. Its secret is on the answer's page only.
    await page.fill('#key-name', 'laptop');
    await page.fill('#key-models', '*haiku*, *sonnet*');
    await page.selectOption('#key-ttl', '7d');
    const madeRes = page.waitForResponse((r) => r.url() === `${d.url}/me/keys`);
    await page.getByRole('button', { name: 'Make the key' }).click();
    const made = await madeRes;
    assert.equal(made.status(), 201);
    assertPageHeaders(made, 'POST /me/keys');
    assert.equal(page.url(), `${d.url}/me/keys`, 'no secret in the URL');
    const key = await page.inputValue('#new-key');
    assert.match(key, /^bsk_/);
    const [k] = activeKeys(d, 'idp:alice');
    assert.equal(k.name, 'laptop');
    assert.deepEqual(JSON.parse(k.models), ['*haiku*', '*sonnet*']);
    assert.equal(k.expires - k.created, 7 * 86400);
    assert.equal((await invoke(d, key)).status, 200, 'the key works against the relay');

    // Shown once: the page again lists it by its hint, without the secret.
    await page.goto(`${d.url}/me`);
    assert.equal(await page.locator('#new-key').count(), 0);
    assert.doesNotMatch(await page.content(), new RegExp(key));
    const keys = await tableRows(page, 'table.keys');
    assert.equal(keys.length, 1);
    assert.equal(keys[0][0], 'laptop');
    assert.equal(keys[0][1], k.hint);
    assert.equal(keys[0][2], '*haiku*, *sonnet*');

    // Revoke it: refused at once.
    await Promise.all([
      page.waitForURL(`${d.url}/me?done=key-revoked`),
      page.locator('table.keys tbody tr').first().getByRole('button', { name: 'Revoke' }).click(),
    ]);
    assert.match(await page.textContent('.notice'), /The key is revoked/);
    assert.equal(await page.locator('table.keys').count(), 0);
    assert.equal(activeKeys(d, 'idp:alice').length, 0);
    const refused = await invoke(d, key);
    assert.equal(refused.status, 401, refused.text());

    // A second session (another browser), signed out from this page.
    const other = await signIn(t);
    assert.equal((await validate(d, other.token)).status, 200);
    await page.goto(`${d.url}/me`);
    let sessions = await tableRows(page, 'table.sessions');
    assert.equal(sessions.length, 2);
    assert.equal(sessions.filter((r) => /\(this browser\)/.test(r[1])).length, 1);
    const otherRow = page.locator('table.sessions tbody tr:not(.this)');
    await Promise.all([
      page.waitForURL(`${d.url}/me?done=session-ended`),
      otherRow.getByRole('button', { name: 'Sign out' }).click(),
    ]);
    assert.equal((await validate(d, other.token)).status, 401, 'the other session ended');
    const otherMe = await other.page.goto(`${d.url}/me`);
    assert.equal(otherMe.status(), 403, 'and its browser session with it');
    assert.match(await other.page.textContent('h1'), /Your session has ended/);
    sessions = await tableRows(page, 'table.sessions');
    assert.equal(sessions.length, 1);
    assert.equal((await validate(d, token)).status, 200, 'this one goes on');

    // A key made now, then sign out everywhere: the cookie, the token and the key stop.
    await page.fill('#key-name', 'ci');
    await page.getByRole('button', { name: 'Make the key' }).click();
    const key2 = await page.inputValue('#new-key');
    assert.equal((await invoke(d, key2)).status, 200);
    const cookieBefore = await selfCookie(ctx);
    const outRes = page.waitForResponse((r) => r.url() === `${d.url}/me/sessions/revoke-all`);
    await page.getByRole('button', { name: 'Sign out everywhere' }).click();
    assert.equal((await outRes).status(), 200);
    assert.match(await page.textContent('h1'), /You are signed out everywhere/);
    assert.equal(await selfCookie(ctx), undefined, 'the cookie is cleared');
    assert.equal((await validate(d, token)).status, 401, 'the token stops');
    assert.equal((await invoke(d, key2)).status, 401, 'the key stops');
    // The old cookie, kept by someone, opens nothing any more.
    await ctx.addCookies([cookieBefore]);
    const again = await page.goto(`${d.url}/me`);
    assert.equal(again.status(), 403);
    assert.match(await page.textContent('h1'), /Your session has ended/);
    assert.equal(await page.locator('table').count(), 0);
  } finally {
    await t.stop();
  }
});

test('self-service: posts from another origin, without the form token or with a wrong one, are refused and change nothing', async () => {
  const t = await setup();
  try {
    const { d } = t;
    const { ctx, page } = await signIn(t);
    await page.goto(`${d.url}/me`);
    await page.fill('#key-name', 'target');
    await page.getByRole('button', { name: 'Make the key' }).click();
    const key = await page.inputValue('#new-key');
    const [k] = activeKeys(d, 'idp:alice');
    const csrf = await page.inputValue('form.new-key input[name=csrf]');
    const before = withDb(d.dir, (db) => ({
      keys: db.prepare('SELECT count(*) AS n FROM api_keys WHERE revoked = 0').get().n,
      families: db.prepare('SELECT count(*) AS n FROM token_families WHERE revoked = 0').get().n,
    }));
    const unchanged = async (what) => {
      const now = withDb(d.dir, (db) => ({
        keys: db.prepare('SELECT count(*) AS n FROM api_keys WHERE revoked = 0').get().n,
        families: db.prepare('SELECT count(*) AS n FROM token_families WHERE revoked = 0').get().n,
      }));
      assert.deepEqual(now, before, `${what}: nothing changed`);
      assert.equal((await invoke(d, key)).status, 200, `${what}: the key still works`);
    };

    // Another origin's page posting the revoke form, even with the right token
    // (which it cannot know): from the same site (another port of 127.0.0.1,
    // so the SameSite cookie is sent) the origin check refuses it; from
    // another site (localhost) the cookie is not even sent.
    const form = (action, fields) => `<!doctype html><form method="post" action="${action}">${Object.entries(fields)
      .map(([n, v]) => `<input type="hidden" name="${n}" value="${v}">`).join('')}<button type="submit">Win a prize</button></form>`;
    for (const [host, title] of [['127.0.0.1', 'Request blocked'], ['localhost', 'Sign in to see your account']]) {
      const port = await t.evil(form(`${d.url}/me/keys/revoke`, { csrf, id: k.id }));
      const evil = await ctx.newPage();
      await evil.goto(`http://${host}:${port}/`);
      const resP = evil.waitForResponse((r) => r.url() === `${d.url}/me/keys/revoke`);
      await evil.getByRole('button', { name: 'Win a prize' }).click();
      const res = await resP;
      assert.equal(res.status(), 403, `from ${host}`);
      assert.match(await evil.textContent('h1'), new RegExp(title), `from ${host}`);
      await unchanged(`a post from http://${host}:${port}`);
      // Sign out everywhere, from the same site: refused too.
      const port2 = await t.evil(form(`${d.url}/me/sessions/revoke-all`, { csrf }));
      await evil.goto(`http://${host}:${port2}/`);
      const res2P = evil.waitForResponse((r) => r.url() === `${d.url}/me/sessions/revoke-all`);
      await evil.getByRole('button', { name: 'Win a prize' }).click();
      assert.equal((await res2P).status(), 403);
      await unchanged(`sign out everywhere from http://${host}:${port2}`);
      await evil.close();
    }
    assert.ok(d.logs.some((e) => /self-service: a post from another site was refused/.test(e?.msg ?? '')));

    // Our own page's form without its token, and with a wrong one.
    await page.goto(`${d.url}/me`);
    const revokeForm = page.locator('table.keys tbody tr').first();
    await revokeForm.locator('input[name=csrf]').evaluate((e) => e.remove());
    let resP = page.waitForResponse((r) => r.url() === `${d.url}/me/keys/revoke`);
    await revokeForm.getByRole('button', { name: 'Revoke' }).click();
    assert.equal((await resP).status(), 403);
    assert.match(await page.textContent('h1'), /Request blocked/);
    await unchanged('no form token');
    await page.goto(`${d.url}/me`);
    // One character changed (the last one was already 'A' once in 64 runs: the "wrong" token was right).
    await page.locator('table.keys tbody tr input[name=csrf]').first().evaluate((e) => { e.value = `${e.value.slice(0, 42)}${e.value[42] === 'A' ? 'B' : 'A'}`; });
    resP = page.waitForResponse((r) => r.url() === `${d.url}/me/keys/revoke`);
    await page.locator('table.keys tbody tr').first().getByRole('button', { name: 'Revoke' }).click();
    assert.equal((await resP).status(), 403);
    await unchanged('a wrong form token');
    // Another browser session's token (the user's own, from another sign-in) is wrong here too.
    const other = await signIn(t);
    await other.page.goto(`${d.url}/me`);
    const otherCsrf = await other.page.inputValue('form.new-key input[name=csrf]');
    assert.notEqual(otherCsrf, csrf);
    await page.goto(`${d.url}/me`);
    await page.locator('table.keys tbody tr input[name=csrf]').first().evaluate((e, v) => { e.value = v; }, otherCsrf);
    resP = page.waitForResponse((r) => r.url() === `${d.url}/me/keys/revoke`);
    await page.locator('table.keys tbody tr').first().getByRole('button', { name: 'Revoke' }).click();
    assert.equal((await resP).status(), 403);
    before.families += 1;
    await unchanged('another browser session\'s token');

    // Another user's session and key, named in a post of this page: not this user's to end.
    const dave = await signIn(t, 'dave');
    await dave.page.goto(`${d.url}/me`);
    await dave.page.fill('#key-name', 'daves');
    await dave.page.getByRole('button', { name: 'Make the key' }).click();
    const daveKey = await dave.page.inputValue('#new-key');
    const [dk] = activeKeys(d, 'idp:dave');
    const daveSid = JSON.parse(Buffer.from(dave.token.split('.')[1], 'base64url')).sid;
    before.families += 1;
    before.keys += 1;
    const mine = `bsp_self=${(await selfCookie(ctx)).value}`;
    const same = { Cookie: mine, Origin: d.url, 'Sec-Fetch-Site': 'same-origin', 'Content-Type': 'application/x-www-form-urlencoded' };
    let x = await fetch(`${d.url}/me/sessions/revoke`, { method: 'POST', redirect: 'manual', headers: same,
      body: new URLSearchParams({ csrf, session: daveSid }).toString() });
    assert.equal(x.status, 404, 'another user\'s session');
    assert.match(await x.text(), /There is no such session of yours/);
    x = await fetch(`${d.url}/me/keys/revoke`, { method: 'POST', redirect: 'manual', headers: same,
      body: new URLSearchParams({ csrf, id: dk.id }).toString() });
    assert.equal(x.status, 404, 'another user\'s key');
    assert.equal((await validate(d, dave.token)).status, 200, 'dave\'s session goes on');
    assert.equal((await invoke(d, daveKey)).status, 200, 'dave\'s key goes on');
    await unchanged('another user\'s session and key');

    // A key the page does not make: refused with the page saying why, nothing made.
    for (const [fields, why] of [[{ ttl: 'forever' }, /The expiry is not one this page offers/],
      [{ ttl: '400d' }, /ttl must be at most api_keys\.max_ttl/], [{ name: 'x'.repeat(65) }, /name must be 1 to 64 printable/],
      [{ name: 'a\u0001b' }, /name must be 1 to 64 printable/]]) {
      const bad = await fetch(`${d.url}/me/keys`, { method: 'POST', redirect: 'manual', headers: same,
        body: new URLSearchParams({ csrf, ...fields }).toString() });
      assert.equal(bad.status, 400, JSON.stringify(fields));
      const html = await bad.text();
      assert.match(html, why);
      assert.doesNotMatch(html, /id="new-key"/);
    }
    await unchanged('keys the page does not make');

    // Without a browser: the cookie and the right token, but no Origin or
    // Referer, or a foreign Origin, or not a form.
    const cookie = `bsp_self=${(await selfCookie(ctx)).value}`;
    const body = new URLSearchParams({ csrf, id: k.id }).toString();
    const post = (headers, b = body) => fetch(`${d.url}/me/keys/revoke`, {
      method: 'POST', redirect: 'manual', body: b, headers: { Cookie: cookie, 'Content-Type': 'application/x-www-form-urlencoded', ...headers },
    });
    assert.equal((await post({})).status, 403, 'no Origin, no Referer');
    assert.equal((await post({ Origin: 'http://127.0.0.1:1' })).status, 403, 'a foreign Origin');
    assert.equal((await post({ Origin: d.url, 'Sec-Fetch-Site': 'same-site' })).status, 403, 'Sec-Fetch-Site same-site');
    assert.equal((await post({ Origin: d.url, 'Content-Type': 'text/plain' })).status, 403, 'not a form');
    await unchanged('posts without a browser');
    // The same post from this origin does what the button does.
    const ok = await post({ Origin: d.url, 'Sec-Fetch-Site': 'same-origin' });
    assert.equal(ok.status, 303);
    assert.equal(ok.headers.get('location'), '/me?done=key-revoked');
    assert.equal((await invoke(d, key)).status, 401);
  } finally {
    await t.stop();
  }
});

test('self-service: a forged, altered, expired or too long cookie, or one whose session ended elsewhere, is refused', async () => {
  const t = await setup();
  try {
    const { d } = t;
    const { ctx, page, token } = await signIn(t);
    const real = await selfCookie(ctx);
    // The KEK file: SQLite's beside its database; on PostgreSQL the one
    // lib/pg.mjs gives the daemon (jwt.kek_file).
    const kek = existsSync(join(d.dir, 'kek')) ? join(d.dir, 'kek') : join(d.dir, 'state', 'proxy.db.kek');
    const sid = JSON.parse(Buffer.from(token.split('.')[1], 'base64url')).sid;
    const open = async (value) => {
      await ctx.clearCookies();
      if (value !== null) await ctx.addCookies([{ ...real, value }]);
      const res = await page.goto(`${d.url}/me`);
      return { status: res.status(), h1: await page.textContent('h1'), tables: await page.locator('table').count(), res };
    };
    const refused = (r, title, what) => {
      assert.equal(r.status, 403, what);
      assert.match(r.h1, title, what);
      assert.equal(r.tables, 0, `${what}: nothing of the account shown`);
    };

    refused(await open(null), /Sign in to see your account/, 'no cookie');
    let r = await open('forged-value');
    refused(r, /Sign in to see your account/, 'a forged cookie');
    assert.match(await r.res.headerValue('set-cookie') ?? '', /^bsp_self=; Path=\/me; Max-Age=0; HttpOnly; SameSite=Strict$/, 'cleared');
    const flipped = real.value.slice(0, 40) + (real.value[40] === 'A' ? 'B' : 'A') + real.value.slice(41);
    refused(await open(flipped), /Sign in to see your account/, 'an altered cookie');
    const seal = (iat, exp, user = 'idp:alice', s = sid) => execFileSync(sealSession, [kek, user, s, String(iat), String(exp)],
      { encoding: 'utf8' }).trim().split(' ')[0];
    const now = nowSec();
    refused(await open(seal(now - 7200, now - 3600)), /Your session has timed out/, 'an expired cookie');
    refused(await open(seal(now, now + 86400)), /Sign in to see your account/, 'a cookie longer than self_service.session_ttl');
    // One this proxy could have made, for a live session: opens.
    r = await open(seal(now, now + 600));
    assert.equal(r.status, 200);
    assert.equal(r.h1, 'Your account');
    r = await open(real.value);
    assert.equal(r.status, 200, 'the real one opens');

    // Its session signed out elsewhere (POST /auth/logout with the token): the cookie ends with it.
    const lo = await fetch(`${d.url}/auth/logout`, { method: 'POST', headers: { Authorization: `Bearer ${token}` } });
    assert.equal(lo.status, 200, await lo.text());
    refused(await open(real.value), /Your session has ended/, 'after /auth/logout');

    // "user logout" and "user disable" from the command line (another process): the next request is refused.
    for (const [what, args, title] of [['user logout', ['user', 'logout', 'alice@example.com'], /Your session has ended/],
      ['user disable', ['user', 'disable', 'alice@example.com'], /Your session has ended/]]) {
      const again = await signIn(t);
      const c2 = await selfCookie(again.ctx);
      assert.equal((await again.page.goto(`${d.url}/me`)).status(), 200, `before ${what}`);
      const r2 = await runCommand(args, { dir: d.dir });
      assert.equal(r2.code, 0, `${what}: ${r2.stderr}`);
      await waitFor(async () => (await fetch(`${d.url}/me`, { headers: { Cookie: `bsp_self=${c2.value}` } })).status === 403,
        { timeoutMs: 2500, intervalMs: 100, message: `the page still open 2.5 s after ${what}` });
      const after = await again.page.goto(`${d.url}/me`);
      assert.equal(after.status(), 403, what);
      assert.match(await again.page.textContent('h1'), title, what);
      assert.equal(await again.page.locator('table').count(), 0, what);
      if (what === 'user disable') assert.equal((await runCommand(['user', 'enable', 'alice@example.com'], { dir: d.dir })).code, 0);
    }
  } finally {
    await t.stop();
  }
});

test('self-service: markup in the user\'s name is shown as text; the page can be turned off', async () => {
  const t = await setup({ access: { allowed_email_domains: ['example.com'] }, self_service: { session_ttl: '10m' } });
  try {
    const { d } = t;
    const { ctx, page } = await signIn(t, 'mallory');
    const dialogs = [];
    page.on('dialog', (dlg) => { dialogs.push(dlg.message()); dlg.dismiss().catch(() => {}); });
    const c = await selfCookie(ctx);
    const life = c.expires - nowSec();
    assert.ok(life > 500 && life <= 601, `self_service.session_ttl 10m: ${life}`);
    await page.goto(`${d.url}/me`);
    assert.match(await page.textContent('main p'), /Mal <b>"lory"<\/b> & <script>alert\(1\)<\/script>/);
    // A key's name and models are the user's text too.
    const hostile = '<img src=x onerror=alert(2)>"\'&';
    await page.fill('#key-name', hostile);
    await page.fill('#key-models', '<b>x</b>');
    await page.getByRole('button', { name: 'Make the key' }).click();
    assert.match(await page.textContent('.new-key'), new RegExp(`Name: ${hostile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    const row = await page.$$eval('table.keys tbody tr', (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent.trim())));
    assert.equal(row[0][0], hostile);
    assert.equal(row[0][2], '<b>x</b>');
    assert.equal(await page.locator('main b, main script, main img').count(), 0);
    assert.deepEqual(dialogs, []);
  } finally {
    await t.stop();
  }
  const t2 = await setup({ self_service: { enabled: false } });
  try {
    const { ctx, page } = await signIn(t2);
    assert.equal(await selfCookie(ctx), undefined, 'no cookie when the page is off');
    assert.equal(await page.getByRole('link', { name: 'Your usage, API keys and sessions' }).count(), 0);
    const res = await page.goto(`${t2.d.url}/me`);
    assert.equal(res.status(), 404);
  } finally {
    await t2.stop();
  }
});

test('self-service behind https: the cookie is __Host-bsp_self, Secure, Path=/, and the page and its forms work', async () => {
  const dir = makeTempDir('bsp-self-tls-');
  const pki = makeTestPKI(dir);
  const t = await setup({ server: { tls: { cert_file: pki.server.chain, key_file: pki.server.key } } }, { ca: readPem(pki.ca.cert) });
  try {
    const { d } = t;
    assert.match(d.url, /^https:/);
    const { ctx, page, token } = await signIn(t, 'alice', { ignoreHTTPSErrors: true });
    assert.equal(await selfCookie(ctx), undefined, 'no unprefixed cookie');
    const c = await selfCookie(ctx, '__Host-bsp_self');
    assert.ok(c, 'a __Host-bsp_self cookie');
    assert.equal(c.secure, true);
    assert.equal(c.path, '/');
    assert.equal(c.httpOnly, true);
    assert.equal(c.sameSite, 'Strict');
    const me = await page.goto(`${d.url}/me`);
    assert.equal(me.status(), 200);
    assert.match(me.headers()['strict-transport-security'] ?? '', /max-age=/);
    await page.fill('#key-name', 'tls');
    const madeP = page.waitForResponse((r) => r.url() === `${d.url}/me/keys`);
    await page.getByRole('button', { name: 'Make the key' }).click();
    assert.equal((await madeP).status(), 201, 'a post from this https origin is taken');
    const key = await page.inputValue('#new-key');
    assert.equal((await invoke(d, key)).status, 200);
    assert.equal((await validate(d, token)).status, 200);
  } finally {
    await t.stop();
    removeDir(dir);
  }
});
