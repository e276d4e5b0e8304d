// Claude Code's own gateway sign-in against the daemon, with the real binary
// (npm @anthropic-ai/claude-code 2.1.332): its managed settings name the daemon
// (forceLoginMethod "gateway", forceLoginGatewayUrl on loopback; see
// lib/claude-login.mjs for where the binary reads them), /login is typed in its
// terminal (tmux), the gateway is trusted, headless Chromium completes the
// verification page against the fake IdP (oidc-provider), and the account is
// confirmed; then `claude -p` answers through /v1/messages (the fake Bedrock)
// with the device-flow session, refreshing its short-lived token at
// /oauth/token first and applying the managed settings it fetched (model
// discovery); `claude auth logout` revokes the session at /auth/revoke.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { claudeSandbox } from './lib/claude-login.mjs';
import { approveInBrowser, startDevice, withDb } from './lib/device.mjs';
import { launchBrowser, newContext } from './lib/login.mjs';
import { accessLines, waitUsage } from './lib/relay.mjs';
import { decodeJwt } from './lib/tokens.mjs';
import { makeTempDir, removeDir, waitFor } from './lib/util.mjs';

const creds = (sb) => JSON.parse(readFileSync(join(sb.home, '.claude', '.credentials.json'), 'utf8')).enterpriseGateway;
const routes = (d, from = 0) => d.logs.slice(from).filter((e) => typeof e === 'object' && e?.msg === 'request')
  .map((e) => `${e.route} ${e.status}`);

test('claude /login signs in through the device flow in Chromium; claude -p answers with that session; auth logout revokes it', async (t) => {
  const dev = await startDevice({
    over: { device: { access_token_ttl: 60 }, gateway: { managed_settings: { model_discovery: true } } },
  });
  const dir = makeTempDir('bsp-cc-login-');
  const sb = claudeSandbox(dir, dev.d.url);
  const browser = await launchBrowser();
  let ok = false;
  try {
    const { d, bedrock } = dev;
    t.diagnostic(`Claude Code's gateway URL from ${sb.mode === 'managed'
      ? '/etc/claude-code/managed-settings.json (overlay in a user namespace)' : '~/.claude/settings.json (no user namespace here)'}`);

    // /login in the terminal: the Cloud gateway screen with the URL filled in.
    sb.start();
    await sb.waitScreen(/Claude Code v\d/);
    sb.keys('/login');
    await sb.waitScreen(/\/login/);
    sb.keys('Enter');
    await sb.waitScreen(/Enter to connect/);
    assert.ok(sb.screen().includes(`Gateway:  ${d.url}`), sb.screen());
    assert.match(sb.screen(), sb.mode === 'managed' ? /set by managed settings/ : /Gateway URL from your settings file/);
    sb.keys('Enter');
    // First contact: trust the gateway (over http on loopback its "fingerprint" is http-loopback).
    await sb.waitScreen(/Trust gateway 127\.0\.0\.1\?/);
    sb.keys('Up');
    await sb.waitScreen(/❯ Yes, trust this gateway/);
    sb.keys('Enter');

    // The device authorization: a code on the screen, the verification link to the browser.
    const code = (await sb.waitScreen(/Code:\s+([BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4})/))[1];
    const link = await waitFor(() => {
      try { return readFileSync(sb.browserLog, 'utf8').trim() || null; } catch { return null; }
    }, { timeoutMs: 10000, message: 'claude never opened the browser' });
    assert.equal(link, `${d.url}/device?user_code=${code}`);
    const row = withDb(d.dir, (db) => db.prepare('SELECT client_id, status FROM device_codes').all().map((x) => ({ ...x })));
    assert.deepEqual(row, [{ client_id: 'claude-code', status: 'pending' }], 'no client_id sent: the default client');
    // It polls, and is told to wait.
    await waitFor(() => routes(d).includes('oauth_token 400'), { timeoutMs: 15000, message: 'no poll' });

    // Chromium: the verification page, the IdP, the callback.
    const ctx = await newContext(browser);
    const page = await ctx.newPage();
    const cb = await approveInBrowser(page, d, link);
    assert.equal(cb.status(), 200);
    assert.equal(await page.textContent('h1'), 'Your device is signed in');
    await ctx.close();

    // The next poll gets the session; Claude Code asks to confirm the account.
    await sb.waitScreen(/Signed in to Cloud gateway as alice@example\.com/, 30000);
    sb.keys('Up');
    await sb.waitScreen(/❯ Yes, continue/);
    sb.keys('Enter');
    await sb.waitScreen(/Connected to Cloud gateway/);
    sb.stop();

    // What it stored: our endpoints, the device session's tokens.
    const c = creds(sb);
    assert.equal(c.url, d.url);
    assert.equal(c.tokenEndpoint, `${d.url}/oauth/token`);
    assert.equal(c.revocationEndpoint, `${d.url}/auth/revoke`);
    assert.equal(c.email, 'alice@example.com');
    assert.match(c.idpRefreshToken, /^bsr_/);
    const claims = decodeJwt(c.jwt).payload;
    assert.equal(claims.exp - claims.iat, 60, 'device.access_token_ttl');
    assert.equal(claims.email, 'alice@example.com');
    assert.equal(withDb(d.dir, (db) => db.prepare('SELECT status FROM device_codes').get().status), 'used');

    // claude -p: the token has under five minutes left, so it refreshes at /oauth/token, then
    // fetches its managed settings (model discovery on: GET /v1/models) and asks /v1/messages.
    const mark = d.logMark();
    const r = await sb.run(['-p', 'Reply with the word PAPAYA-5', '--model', 'claude-sonnet-4-6']);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /echo: .*PAPAYA-5/s);
    const seen = routes(d, mark);
    assert.ok(seen.includes('oauth_token 200'), `a refresh: ${seen.join(', ')}`);
    assert.ok(seen.includes('managed_settings 200'), seen.join(', '));
    assert.ok(seen.includes('anthropic_models 200'), `model discovery from the managed settings: ${seen.join(', ')}`);
    const msgs = accessLines(d, 'anthropic_messages').filter((e) => e.status === 200);
    assert.ok(msgs.length >= 1, seen.join(', '));
    assert.equal(msgs.at(-1).user, 'alice@example.com');
    const refreshed = creds(sb);
    assert.notEqual(refreshed.jwt, c.jwt);
    assert.notEqual(refreshed.idpRefreshToken, c.idpRefreshToken, 'the refresh token rotated');
    assert.equal(decodeJwt(refreshed.jwt).payload.sid, claims.sid, 'the same session');
    const up = bedrock.requests.find((q) => q.operation === 'invoke-with-response-stream');
    assert.ok(up, 'a streamed InvokeModel call');
    assert.equal(up.modelId, 'us.anthropic.claude-sonnet-4-6');
    assert.equal(up.signatureValid, true);
    const rows = await waitUsage(d.dir, 1);
    assert.ok(rows.some((x) => x.route === 'Messages' && x.status === 200 && x.user_id.startsWith('idp:')), JSON.stringify(rows));

    // claude auth logout: both tokens revoked at the revocation endpoint; the session is over.
    const before = d.logMark();
    const out = await sb.run(['auth', 'logout']);
    assert.equal(out.code, 0, out.stderr + out.stdout);
    await waitFor(() => routes(d, before).filter((x) => x === 'auth_revoke 200').length === 2, { timeoutMs: 10000 });
    assert.equal(withDb(d.dir, (db) => db.prepare('SELECT revoked FROM token_families WHERE id = ?').get(claims.sid).revoked), 1);
    ok = true;
  } finally {
    sb.stop();
    await browser.close();
    await dev.stop();
    if (ok) removeDir(dir);
    else t.diagnostic(`kept ${dir}`);
  }
});
