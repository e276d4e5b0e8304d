// The users table after logins, and the user's later fate: upserted on
// every login (provider, subject, email, name, groups, first/last login);
// a disabled user cannot log in and their tokens stop working; a user the
// access policy no longer admits (changed and reloaded with SIGHUP) has
// their tokens refused, and is admitted again at once when the IdP's
// answer fits the policy. The IdP is fake-oidc-bad, driven with fetch().
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { prepareDir, runCommand } from './lib/daemon.mjs';
import { startFakeOidc } from './lib/fake-oidc-bad.mjs';
import {
  assertNoToken, fetchLogin, loginConfig, loginState, reloadConfig, startLoginDaemon, tokenFromHtml, validate, stopAll,
} from './lib/login.mjs';
import { holdWrites, withDb } from './lib/tokens.mjs';
import { sleep, waitFor } from './lib/util.mjs';

async function setup(access = { allowed_email_domains: ['example.com'] }) {
  const op = await startFakeOidc({
    user: { sub: 'u-42', email: 'Olivia@Example.com', email_verified: true, name: 'Olivia Op', groups: ['dev', 'ml'] },
  });
  const config = (acc) => loginConfig({ providers: { op: { issuer: op.issuer, client_id: op.clientId, client_secret: op.clientSecret } }, access: acc });
  const d = await startLoginDaemon(config(access));
  return { op, d, config, stop: () => stopAll(d, op) };
}

async function login(d, status = 200) {
  const r = await fetchLogin(d, 'op');
  assert.equal(r.res.status, status, r.text);
  return status === 200 ? tokenFromHtml(r.text) : r.text;
}

test('a login upserts the user: provider, subject, email, name, groups, first and last login', async () => {
  const t = await setup();
  try {
    const { d, op } = t;
    const t0 = Math.floor(Date.now() / 1000);
    await login(d);
    let [u] = loginState(d.dir).users;
    assert.equal(u.id, 'op:u-42');
    assert.equal(u.provider, 'op');
    assert.equal(u.subject, 'u-42');
    assert.equal(u.email, 'Olivia@Example.com');
    assert.equal(u.email_verified, 1);
    assert.equal(u.name, 'Olivia Op');
    assert.deepEqual(JSON.parse(u.groups), ['dev', 'ml']);
    assert.ok(u.first_login >= t0 - 1 && u.first_login === u.last_login, JSON.stringify(u));
    assert.equal(u.disabled, 0);
    const audit = loginState(d.dir).audit.filter((a) => a.event === 'login');
    assert.equal(audit.length, 1);
    assert.equal(audit[0].user_id, 'op:u-42');

    // Pretend the first login was long ago; the IdP's data changed since.
    withDb(d.dir, (db) => db.prepare('UPDATE users SET first_login = 1000, last_login = 2000').run());
    op.user = { ...op.user, name: 'Olivia Renamed', groups: ['ml'] };
    await login(d);
    const rows = loginState(d.dir).users;
    assert.equal(rows.length, 1, 'the same user, not a second row');
    [u] = rows;
    assert.equal(u.first_login, 1000, 'first_login kept');
    assert.ok(u.last_login >= t0 - 1, 'last_login updated');
    assert.equal(u.name, 'Olivia Renamed');
    assert.deepEqual(JSON.parse(u.groups), ['ml']);
    assert.equal(loginState(d.dir).families, 2);
  } finally {
    await t.stop();
  }
});

test('a disabled user cannot log in, and their tokens stop working', async () => {
  const t = await setup();
  try {
    const { d } = t;
    const token = await login(d);
    assert.equal((await validate(d, token)).status, 200);
    const r = await runCommand(['user', 'disable', 'op:u-42'], { dir: d.dir });
    assert.equal(r.code, 0, r.stderr);
    // The daemon notices another process's write within 5 s.
    await waitFor(async () => (await validate(d, token)).status === 401, { timeoutMs: 8000, intervalMs: 200 });
    const before = loginState(d.dir);
    const page = await login(d, 403);
    assert.match(page, /account on this proxy is disabled/);
    const row = assertNoToken(d.dir, before, { event: 'login_refused', users: 1 });
    assert.equal(row.user_id, 'op:u-42');
    // Enabled again: logins work (the old session stays ended).
    assert.equal((await runCommand(['user', 'enable', 'op:u-42'], { dir: d.dir })).code, 0);
    // "user disable" also logged the user out: tokens issued in that same
    // second (iat <= revoked_before, whole seconds) are refused too.
    await new Promise((res) => setTimeout(res, 1100));
    assert.equal((await validate(d, await login(d))).status, 200);
    assert.equal((await validate(d, token)).status, 401);
  } finally {
    await t.stop();
  }
});

test('a user the policy no longer admits (SIGHUP) is refused, and admitted again when the IdP says so', async () => {
  const t = await setup();
  try {
    const { d, op, config } = t;
    const token = await login(d);
    assert.equal((await validate(d, token)).status, 200);

    await reloadConfig(d, config({ allowed_email_domains: ['other.test'] }));
    let v = await validate(d, token);
    assert.equal(v.status, 401);
    assert.match(v.json().error_description, /no longer admits/);
    const before = loginState(d.dir);
    await login(d, 403);
    assertNoToken(d.dir, before, { event: 'login_refused', users: 1 });

    // The user's address moved to the allowed domain: the new login's token
    // works at once (no reload), and the old one too (the user is admitted).
    op.user = { ...op.user, email: 'olivia@other.test' };
    const fresh = await login(d);
    v = await validate(d, fresh);
    assert.equal(v.status, 200, v.text());
    assert.equal(v.json().email, 'olivia@other.test');
    assert.equal((await validate(d, token)).status, 200);
  } finally {
    await t.stop();
  }
});

test('a reload is done (logged, READY=1) once the users are read again under the new policy', async () => {
  const t = await setup();
  let lock = null;
  try {
    const { d, config } = t;
    const token = await login(d);
    // The users cannot be read while we hold the table (PostgreSQL; with
    // SQLite they are read at once, before the reload is logged).
    lock = await holdWrites(d.dir, 'users', { reads: true });
    prepareDir(d.dir, { config: { ...config({ allowed_email_domains: ['other.test'] }), server: { port: d.port } } });
    const mark = d.logMark();
    d.signal('SIGHUP');
    await sleep(500);
    const early = d.logs.slice(mark).find((e) => /^configuration reload/.test(e?.msg ?? ''));
    if (early) assert.equal((await validate(d, token)).status, 401, 'logged as reloaded: the new policy holds');
    await lock.release();
    lock = null;
    const line = await d.waitForLog((e) => /^configuration reload/.test(e?.msg ?? ''), 5000, { from: mark });
    assert.equal(line.msg, 'configuration reloaded');
    const v = await validate(d, token);
    assert.equal(v.status, 401);
    assert.match(v.json().error_description, /no longer admits/);
  } finally {
    await lock?.release();
    await t.stop();
  }
});
