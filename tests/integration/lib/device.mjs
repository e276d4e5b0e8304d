// Helpers for the device flow tests (device*.test.mjs, claude-code-login.test.mjs):
// a daemon with the fake IdP (oidc-provider) and the fake Bedrock, the RFC 8628
// endpoints as a client calls them, the verification page as a browser without
// a DOM posts it (every header under the test's control), and the page in
// headless Chromium, approving a device code against the fake IdP.
import assert from 'node:assert/strict';
import { startFakeIdp, CLIENT_ID, CLIENT_SECRET } from './fake-idp.mjs';
import { loginConfig, startBedrock, startLoginDaemon, stopAll } from './login.mjs';
import { request } from './util.mjs';

export const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
export const BUTTON = 'Continue with Example IdP';
export const USER_CODE_RE = /^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/;

const form = (fields) => new URLSearchParams(fields).toString();

/**
 * The fake IdP, the fake Bedrock and a daemon with one provider ("idp",
 * "Example IdP") for example.com, over: merged over the login config.
 */
export async function startDevice({ over = {}, access } = {}) {
  const idp = await startFakeIdp();
  const bedrock = await startBedrock();
  let d;
  try {
    d = await startLoginDaemon(loginConfig({
      bedrock,
      providers: { idp: { issuer: idp.url, client_id: CLIENT_ID, client_secret: CLIENT_SECRET, display_name: 'Example IdP' } },
      ...(access ? { access } : {}),
      over,
    }));
  } catch (e) {
    await idp.close();
    await bedrock.close();
    throw e;
  }
  idp.setRedirectUris([`${d.url}/auth/callback/idp`]);
  return { idp, bedrock, d, stop: () => stopAll(d, idp, bedrock) };
}

/** POST /oauth/device_authorization with these form fields (or a raw body and type). */
export function authorize(d, fields = {}, { body, type = 'application/x-www-form-urlencoded', headers = {} } = {}) {
  const b = body ?? form(fields);
  return d.request('/oauth/device_authorization', {
    method: 'POST', headers: { 'Content-Type': type, 'Content-Length': Buffer.byteLength(b), ...headers }, body: b,
  });
}

/** A new device authorization as Claude Code starts one; asserts it worked. */
export async function newGrant(d, fields = { surface: 'claude_code' }) {
  const r = await authorize(d, fields);
  assert.equal(r.status, 200, r.text());
  return r.json();
}

/** POST /oauth/token with these form fields. */
export function token(d, fields) {
  const b = form(fields);
  return d.request('/oauth/token', {
    method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'Content-Length': Buffer.byteLength(b) }, body: b,
  });
}

/** The device grant's poll, as Claude Code sends it. */
export const poll = (d, deviceCode, extra = {}) => token(d, { grant_type: DEVICE_GRANT, device_code: deviceCode, ...extra });

/** Assert an RFC 6749 error answer. */
export function assertOauthError(r, status, error, what = error) {
  assert.equal(r.status, status, `${what}: ${r.status} ${r.text()}`);
  assert.equal(r.json().error, error, `${what}: ${r.text()}`);
}

/** Cookies over util.request (which, unlike fetch, sends any Origin or Sec-Fetch-Site header). */
export class Browser {
  constructor(d) { this.d = d; this.cookies = new Map(); }

  cookieHeader() { return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '); }

  take(res) {
    for (const sc of [res.headers['set-cookie'] ?? []].flat()) {
      const [nv, ...attrs] = sc.split(';').map((s) => s.trim());
      const eq = nv.indexOf('=');
      if (attrs.some((a) => /^max-age=0$/i.test(a))) this.cookies.delete(nv.slice(0, eq));
      else this.cookies.set(nv.slice(0, eq), nv.slice(eq + 1));
    }
  }

  async get(path, headers = {}) {
    const r = await this.d.request(path, { headers: { Cookie: this.cookieHeader(), ...headers } });
    this.take(r);
    return r;
  }

  /** GET /device (with a code): the page, and its form token. */
  async form(userCode) {
    const r = await this.get(userCode ? `/device?user_code=${encodeURIComponent(userCode)}` : '/device');
    assert.equal(r.status, 200, r.text());
    const m = /<input type="hidden" name="csrf" value="([^"]+)">/.exec(r.text());
    assert.ok(m, 'a form token');
    return { res: r, csrf: m[1] };
  }

  /**
   * POST /device as a browser posting the page's form: fields, and the
   * headers a same-origin post carries unless headers says otherwise
   * (a header set to null is left out).
   */
  async post(fields, headers = {}) {
    const b = form(fields);
    const h = {
      'Content-Type': 'application/x-www-form-urlencoded', 'Content-Length': Buffer.byteLength(b),
      Cookie: this.cookieHeader(), Origin: this.d.url, Referer: `${this.d.url}/device`, 'Sec-Fetch-Site': 'same-origin',
      ...headers,
    };
    for (const [k, v] of Object.entries(h)) if (v === null) delete h[k];
    const r = await this.d.request('/device', { method: 'POST', headers: h, body: b });
    this.take(r);
    return r;
  }
}

/**
 * In Chromium: open the verification page at url, press the provider's
 * button, sign in on the IdP's pages (and consent), and land on the
 * callback's page. Returns the callback's response.
 */
export async function approveInBrowser(page, d, url, { login = 'alice', consent = true, button = BUTTON } = {}) {
  await page.goto(url);
  await Promise.all([
    page.waitForURL((u) => !u.href.startsWith(`${d.url}/`)),
    page.getByRole('button', { name: button }).click(),
  ]);
  await page.fill('input[name=login]', login);
  await page.fill('input[name=password]', 'any password');
  const cb = page.waitForResponse((r) => r.url().startsWith(`${d.url}/auth/callback/`));
  await page.click('button[type=submit]');
  if (consent) {
    await page.waitForSelector('form input[name=prompt][value=consent]', { state: 'attached' });
    await page.click('button[type=submit]');
  }
  const res = await cb;
  await page.waitForLoadState('domcontentloaded');
  return res;
}

/** The device_codes rows (SQLite), for the checks of what is stored. */
export { withDb, auditRows, tokenHash } from './tokens.mjs';
export { request };
