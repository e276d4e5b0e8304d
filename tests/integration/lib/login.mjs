// Shared pieces of the login tests (login*.test.mjs): a headless Chromium,
// a cookie-keeping fetch "browser" for flows that need no rendering, the
// daemon configuration for a provider, and database checks.
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import { prepareDir, startDaemon } from './daemon.mjs';
import { startFakeBedrock } from './fake-bedrock.mjs';
import { withDb } from './tokens.mjs';

export const REGION = 'us-east-1';
export const MODEL = 'anthropic.claude-3-haiku-20240307-v1:0';
export const AWS_CREDS = { accessKeyId: 'AKIDLOGINTESTEXAMPLE', secretAccessKey: 'login/test+secret/EXAMPLEKEY0123456789' };
export const CHROMIUM = process.env.BSP_CHROMIUM || '/usr/bin/chromium';

/** One headless Chromium per test file; a fresh context (profile) per test. */
export function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
}

/**
 * A new browser context that can only reach loopback (the IdP's dev pages
 * @import web fonts: those requests are aborted, not waited for).
 */
export async function newContext(browser, opts = {}) {
  const ctx = await browser.newContext(opts);
  await ctx.route((url) => !/^(127\.0\.0\.1|localhost|\[::1\])$/.test(url.hostname), (route) => route.abort());
  return ctx;
}

/**
 * Drive the browser flow against oidc-provider's devInteractions pages:
 * the proxy's start page, the provider button, the IdP's login form, its
 * consent form, and the callback page. Returns the page on the callback.
 */
export async function browserLogin(page, d, { button, login = 'alice', consent = true } = {}) {
  await page.goto(`${d.url}/`);
  await Promise.all([
    page.waitForURL((u) => !u.href.startsWith(`${d.url}/`)),
    button ? page.getByRole('link', { name: button }).click() : page.locator('ul.providers a').first().click(),
  ]);
  await page.fill('input[name=login]', login);
  await page.fill('input[name=password]', 'any password');
  await page.click('button[type=submit]');
  if (consent) {
    // The consent prompt (first login of this account with this client).
    await page.waitForSelector('form input[name=prompt][value=consent]', { state: 'attached' });
    await Promise.all([
      page.waitForURL((u) => u.href.startsWith(`${d.url}/auth/callback/`)),
      page.click('button[type=submit]'),
    ]);
  } else {
    await page.waitForURL((u) => u.href.startsWith(`${d.url}/auth/callback/`));
  }
  await page.waitForLoadState('domcontentloaded');
  return page;
}

/** A minimal cookie jar over fetch() with manual redirects. */
export class Jar {
  constructor() { this.cookies = new Map(); }

  header(url) {
    const u = new URL(url);
    const v = [];
    for (const c of this.cookies.values()) {
      if (c.host === u.host.split(':')[0] && u.pathname.startsWith(c.path) && !c.expired) v.push(`${c.name}=${c.value}`);
    }
    return v.join('; ');
  }

  take(url, res) {
    const u = new URL(url);
    for (const sc of res.headers.getSetCookie?.() ?? []) {
      const [nv, ...attrs] = sc.split(';').map((s) => s.trim());
      const eq = nv.indexOf('=');
      const c = { name: nv.slice(0, eq), value: nv.slice(eq + 1), host: u.hostname, path: '/', expired: false };
      for (const a of attrs) {
        const [k, val] = a.split('=');
        if (/^path$/i.test(k)) c.path = val;
        if (/^max-age$/i.test(k) && Number(val) <= 0) c.expired = true;
      }
      this.cookies.set(`${c.name}@${c.path}`, c);
    }
  }

  /** fetch with this jar, no redirects followed. */
  async fetch(url, init = {}) {
    const headers = { ...(init.headers ?? {}) };
    const ck = this.header(url);
    if (ck) headers.Cookie = ck;
    const res = await fetch(url, { ...init, headers, redirect: 'manual' });
    this.take(url, res);
    return res;
  }
}

/**
 * The browser flow without a browser, for IdPs whose authorize endpoint
 * redirects straight back (fake-oidc-bad, fake-github): GET /auth/login,
 * GET the IdP, then the callback. Returns {res, text, callbackUrl, jar, ms}.
 * stopAt 'idp' returns after /auth/login with {authUrl, jar}.
 */
export async function fetchLogin(d, provider, { jar = new Jar(), stopAt, signal } = {}) {
  const r1 = await jar.fetch(`${d.url}/auth/login/${provider}`, { signal });
  assert.equal(r1.status, 302, `GET /auth/login/${provider}: ${r1.status} ${await r1.text()}`);
  const authUrl = r1.headers.get('location');
  if (stopAt === 'idp') return { authUrl, jar };
  const r2 = await jar.fetch(authUrl, { signal });
  assert.equal(r2.status, 302, `IdP authorize: ${r2.status} ${await r2.text()}`);
  const callbackUrl = new URL(r2.headers.get('location'), authUrl).href;
  const t0 = Date.now();
  const res = await jar.fetch(callbackUrl, { signal });
  const text = await res.text();
  return { res, text, callbackUrl, jar, authUrl, ms: Date.now() - t0 };
}

/** The access token in a success page's HTML (works without a DOM). */
export function tokenFromHtml(html) {
  const m = /<textarea id="access-token"[^>]*>([^<]*)<\/textarea>/.exec(html);
  return m ? m[1] : null;
}

/** Daemon config: one login provider, the fake Bedrock, static AWS keys. */
export function loginConfig({ providers = {}, bedrock, access = { allowed_email_domains: ['example.com'] }, over = {} } = {}) {
  const c = {
    jwt: { issuer: 'https://bsp.test' },
    oauth: { providers, timeout: 3 },
    access,
    aws: bedrock
      ? { endpoint_url: bedrock.url, region: REGION, access_key_id: AWS_CREDS.accessKeyId, secret_access_key: AWS_CREDS.secretAccessKey }
      : { region: REGION, access_key_id: AWS_CREDS.accessKeyId, secret_access_key: AWS_CREDS.secretAccessKey },
  };
  for (const [k, v] of Object.entries(over)) c[k] = typeof v === 'object' && !Array.isArray(v) && c[k] ? { ...c[k], ...v } : v;
  return c;
}

/** A fake Bedrock that checks our SigV4. */
export const startBedrock = () => startFakeBedrock({ region: REGION, credentials: AWS_CREDS });

/**
 * Start a daemon with login tracing; wait until `keys` identity providers'
 * key sets are in (default 1; 0: do not wait).
 */
export async function startLoginDaemon(config, { keys = 1, args = [], ...opts } = {}) {
  const d = await startDaemon({ config, env: { AWS_EC2_METADATA_DISABLED: 'true' }, args: ['-T', 'oauth', ...args], ...opts });
  if (keys > 0) await waitKeys(d, keys);
  return d;
}

/** Wait until n identity providers' key sets were loaded (needs -T oauth). */
export async function waitKeys(d, n = 1, timeoutMs = 10000) {
  const re = /: \d+ signing keys \(/;
  await d.waitForLog(() => d.logs.filter((e) => typeof e === 'object' && re.test(e?.msg ?? '')).length >= n, timeoutMs);
}

export async function waitReady(d, timeoutMs = 10000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const r = await d.request('/health/ready');
    if (r.status === 200) return;
    if (Date.now() > end) throw new Error(`/health/ready still ${r.status}: ${r.text()}`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

/** Stop the daemon and close every fake, whatever fails; rethrow the first error. */
export async function stopAll(d, ...fakes) {
  let err = null;
  for (const f of [d, ...fakes]) {
    try {
      if (f === d) await d?.stop();
      else await f?.close();
    } catch (e) {
      err ??= e;
    }
  }
  if (err) throw err;
}

/** Rewrite the daemon's config.yaml (same listening port) and SIGHUP it. */
export async function reloadConfig(d, config) {
  prepareDir(d.dir, { config: { ...config, server: { ...(config.server ?? {}), port: d.port } } });
  const mark = d.logMark();
  d.signal('SIGHUP');
  await d.waitForLog((e) => typeof e === 'object' && /^configuration reload/.test(e?.msg ?? ''), 5000, { from: mark });
  const last = d.logs.slice(mark).find((e) => typeof e === 'object' && /^configuration reload/.test(e?.msg ?? ''));
  assert.equal(last.msg, 'configuration reloaded', JSON.stringify(last));
}

export const validate = (d, token) => d.request('/auth/validate', { headers: { Authorization: `Bearer ${token}` } });

/** InvokeModel through the proxy. */
export function invoke(d, token, { prefix = '' } = {}) {
  const path = `${prefix}/model/${MODEL}/invoke`;
  return d.request(path, {
    method: 'POST',
    path,
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
    body: JSON.stringify({ anthropic_version: 'bedrock-2023-05-31', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] }),
  });
}

/** Row counts and audit rows of the login tables (states: redeemed sign-in states). */
export function loginState(dir) {
  return withDb(dir, (db) => ({
    users: db.prepare('SELECT * FROM users ORDER BY id').all(),
    families: Number(db.prepare('SELECT count(*) AS n FROM token_families').get().n),
    refresh: Number(db.prepare('SELECT count(*) AS n FROM refresh_tokens').get().n),
    audit: db.prepare('SELECT * FROM audit_log ORDER BY id').all(),
    states: Number(db.prepare('SELECT count(*) AS n FROM oauth_states').get().n),
  }));
}

/**
 * Assert a refused login left no token: no new token family or refresh
 * token, no user (unless users is given), and an audit row of event.
 */
export function assertNoToken(dir, before, { event, users, reason } = {}) {
  const now = loginState(dir);
  assert.equal(now.families, before.families, 'no new token family');
  assert.equal(now.refresh, before.refresh, 'no new refresh token');
  if (users !== undefined) assert.equal(now.users.length, users, 'users rows');
  if (event) {
    const rows = now.audit.slice(before.audit.length).filter((a) => a.event === event);
    assert.ok(rows.length >= 1, `an audit row ${event}; got ${JSON.stringify(now.audit.slice(before.audit.length))}`);
    if (reason) assert.match(rows.at(-1).detail, reason);
    return rows.at(-1);
  }
  return null;
}
