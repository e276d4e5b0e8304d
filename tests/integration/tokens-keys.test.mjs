// API keys end with the session that made them (review issue 9, item 4): a
// key made with a session's access token (POST /api/keys) is revoked when
// that session ends — /auth/logout, /auth/revoke, refresh token reuse — and
// "user logout" revokes every key of the user unless --keep-keys. Keys made
// by "key create" belong to no session. Each revocation is audited with its
// reason; the running daemon honours the command line's within its poll.
//
// Sessions are seeded in the database as a login makes them (lib/tokens.mjs).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runCommand, startDaemon } from './lib/daemon.mjs';
import { noticed, onPostgres } from './lib/pg.mjs';
import {
  auditRows, nowSec, seedSession, withDb,
} from './lib/tokens.mjs';
import { waitFor } from './lib/util.mjs';

const ISS = 'https://bsp.test';

const auth = (t) => (t.startsWith('bsk_') ? { 'X-Api-Key': t } : { Authorization: `Bearer ${t}` });
const validate = (d, t) => d.request('/auth/validate', { headers: auth(t) });
const refresh = (d, t) => d.request('/auth/refresh', {
  method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ refresh_token: t }),
});
const login = async (d, opts) => {
  const s = seedSession(d.dir, opts);
  const r = await refresh(d, s.refresh);
  assert.equal(r.status, 200, r.text());
  return { ...s, ...r.json() };
};
const makeKey = async (d, token, name) => {
  const r = await d.request('/api/keys', {
    method: 'POST', headers: { ...auth(token), 'Content-Type': 'application/json' }, body: JSON.stringify({ name }),
  });
  assert.equal(r.status, 201, r.text());
  return r.json();
};
const cmd = async (d, ...args) => {
  const r = await runCommand(args, { dir: d.dir });
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  return r;
};
/** On PostgreSQL: once the daemon has heard of the key (lib/pg.mjs, noticed). */
const keyKnown = (d, key) => onPostgres && noticed(() => d.request('/auth/validate', { headers: { 'X-Api-Key': key } }),
  (r) => !/unknown or revoked API key/.test(r.text()));
const adminKey = async (d, user, name) => {
  const r = await cmd(d, 'key', 'create', '--user', user, '--name', name);
  await keyKnown(d, r.stdout.trim());
  return { key: r.stdout.trim(), ...JSON.parse(/^(\{.*\}) \(shown once/m.exec(r.stderr)[1]) };
};
const keyRow = (d, id) => withDb(d.dir, (db) => db.prepare('SELECT * FROM api_keys WHERE id = ?').get(id));
const keyAudit = (d, id) => auditRows(d.dir, 'key_revoked').filter((r) => JSON.parse(r.detail).key === id);
async function assertWorks(d, k, what) {
  const v = await validate(d, k.key);
  assert.equal(v.status, 200, `${what}: ${v.text()}`);
}
async function assertRevoked(d, k, what) {
  const v = await validate(d, k.key);
  assert.equal(v.status, 401, `${what}: ${v.text()}`);
  assert.match(v.json().error_description, /revoked/, what);
}
/** The daemon notices another process's write within ~1 s; allow 2.5 s. */
const revokedSoon = (d, k, what) => waitFor(async () => (await validate(d, k.key)).status === 401,
  { timeoutMs: 2500, intervalMs: 100, message: `${what}: still accepted 2.5 s after the command` });

test('/auth/logout and /auth/revoke end the keys made in that session only; the admin\'s key stays', async () => {
  const d = await startDaemon({ config: { jwt: { issuer: ISS } } });
  try {
    const s1 = await login(d);
    const s2 = await login(d); // the same user's other session
    const k1 = await makeKey(d, s1.access_token, 'from-s1');
    const k2 = await makeKey(d, s2.access_token, 'from-s2');
    const ka = await adminKey(d, s1.user, 'service');
    for (const k of [k1, k2, ka]) await assertWorks(d, k, k.name);
    assert.equal(keyRow(d, k1.id).family_id, s1.sid, 'the key remembers its session');
    assert.equal(keyRow(d, ka.id).family_id, null, 'the admin\'s key has none');
    const listed = (await d.request('/api/keys', { headers: auth(s2.access_token) })).json().keys;
    assert.equal(listed.find((k) => k.id === k1.id).session, s1.sid);
    assert.equal(listed.find((k) => k.id === ka.id).session, null);

    // Logout of s1: its key stops on the very next request, nothing else does.
    const lo = await d.request('/auth/logout', { method: 'POST', headers: auth(s1.access_token) });
    assert.equal(lo.status, 200, lo.text());
    await assertRevoked(d, k1, 'key of the logged-out session');
    await assertWorks(d, k2, 'key of the other session');
    await assertWorks(d, ka, 'admin key after a logout');
    assert.equal(keyRow(d, k1.id).revoked_reason, 'logout');
    let rows = keyAudit(d, k1.id);
    assert.equal(rows.length, 1);
    assert.deepEqual(JSON.parse(rows[0].detail), { key: k1.id, reason: 'logout', session: s1.sid });
    assert.equal(rows[0].user_id, s1.user);
    assert.equal(JSON.parse(auditRows(d.dir, 'logout')[0].detail).keys, 1);
    const list = (await cmd(d, 'key', 'list')).stdout;
    assert.match(list, new RegExp(`${k1.id}\\s.*${s1.sid}\\s+revoked \\(logout\\)`));
    assert.match(list, new RegExp(`${ka.id}\\s.*\\s-\\s+active`));

    // RFC 7009 revocation of s2's refresh token ends s2's key.
    const rv = await d.request('/auth/revoke', {
      method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: `token=${s2.refresh_token}`,
    });
    assert.equal(rv.status, 200);
    await assertRevoked(d, k2, 'key of the revoked session');
    await assertWorks(d, ka, 'admin key after a revocation');
    rows = keyAudit(d, k2.id);
    assert.equal(rows.length, 1);
    assert.equal(JSON.parse(rows[0].detail).reason, 'revoke');

    // Both stay revoked after a restart.
    await d.stop({ keepDir: true });
    const d2 = await startDaemon({ dir: d.dir });
    try {
      await assertRevoked(d2, k1, 'after a restart');
      await assertRevoked(d2, k2, 'after a restart');
      await assertWorks(d2, ka, 'admin key after a restart');
    } finally {
      await d2.stop();
    }
  } finally {
    if (!d.exitStatus) await d.stop();
  }
});

test('refresh token reuse revokes the keys made in that family', async () => {
  const d = await startDaemon({ config: { jwt: { issuer: ISS, refresh_reuse_grace: 30 } } });
  try {
    const s = await login(d);
    const other = await login(d);
    const k = await makeKey(d, s.access_token, 'stolen-token-key');
    const ko = await makeKey(d, other.access_token, 'other-session');
    // The thief rotates first; the victim's client presents the used token.
    const thief = await refresh(d, s.refresh_token);
    assert.equal(thief.status, 200);
    assert.equal((await refresh(d, thief.json().refresh_token)).status, 200);
    const reuse = await refresh(d, s.refresh_token);
    assert.equal(reuse.status, 400, reuse.text());
    assert.match(reuse.json().error_description, /already used/);
    await assertRevoked(d, k, 'key of the family revoked for reuse');
    await assertWorks(d, ko, 'key of another session');
    const rows = keyAudit(d, k.id);
    assert.equal(rows.length, 1);
    assert.deepEqual(JSON.parse(rows[0].detail), { key: k.id, reason: 'refresh token reuse', session: s.sid });
    assert.equal(keyRow(d, k.id).revoked_reason, 'refresh token reuse');
  } finally {
    await d.stop();
  }
});

test('user logout on the command line revokes every key of the user while the daemon runs; --keep-keys keeps them', async () => {
  const d = await startDaemon({ config: { jwt: { issuer: ISS } } });
  try {
    const a = await login(d, { user: 'local:ann@example.com', email: 'ann@example.com' });
    const ka = await makeKey(d, a.access_token, 'session');
    const kadmin = await adminKey(d, a.user, 'service');
    const b = await login(d, { user: 'local:ben@example.com', email: 'ben@example.com' });
    const kb = await makeKey(d, b.access_token, 'bens');
    for (const k of [ka, kadmin, kb]) await assertWorks(d, k, k.name);

    const out = await cmd(d, 'user', 'logout', a.user);
    assert.match(out.stdout, /ended 1 session\(s\) and revoked 2 API key\(s\)/);
    await revokedSoon(d, ka, 'session key after user logout');
    await revokedSoon(d, kadmin, 'admin key after user logout');
    await assertRevoked(d, ka, 'session key after user logout');
    await assertWorks(d, kb, 'another user\'s key');
    for (const k of [ka, kadmin]) {
      const rows = keyAudit(d, k.id);
      assert.equal(rows.length, 1, k.name);
      assert.equal(JSON.parse(rows[0].detail).reason, 'user logout');
      assert.match(rows[0].actor, /^cli:/);
    }
    assert.equal(JSON.parse(auditRows(d.dir, 'user_logout')[0].detail).keys, 2);

    // --keep-keys: the sessions end, the keys stay, the admin's and the session's.
    const c = await login(d, { user: 'local:cat@example.com', email: 'cat@example.com' });
    const kc = await makeKey(d, c.access_token, 'session');
    const kcadmin = await adminKey(d, c.user, 'service');
    const kept = await cmd(d, 'user', 'logout', '--keep-keys', c.user);
    assert.match(kept.stdout, /ended 1 session\(s\).*API keys kept/);
    // Once the daemon has seen the logout (the token is refused), the keys still work.
    await waitFor(async () => (await validate(d, c.access_token)).status === 401,
      { timeoutMs: 2500, intervalMs: 100, message: 'the session outlived user logout --keep-keys' });
    await assertWorks(d, kc, 'session key with --keep-keys');
    await assertWorks(d, kcadmin, 'admin key with --keep-keys');
    assert.equal(keyAudit(d, kc.id).length, 0);
    assert.equal(JSON.parse(auditRows(d.dir, 'user_logout')[1].detail).keep_keys, true);

    // --keep-keys belongs to user logout only.
    const bad = await runCommand(['user', 'disable', '--keep-keys', c.user], { dir: d.dir });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /not allowed/);
    // user disable revokes every key, for good.
    const dis = await cmd(d, 'user', 'disable', c.user);
    assert.match(dis.stdout, /revoked 2 API key\(s\)/);
    await cmd(d, 'user', 'enable', c.user);
    await revokedSoon(d, kc, 'session key after disable and enable');
    await revokedSoon(d, kcadmin, 'admin key after disable and enable');
    assert.equal(JSON.parse(keyAudit(d, kcadmin.id)[0].detail).reason, 'user disabled');
  } finally {
    await d.stop();
  }
});

test('no key is made in a session that has just been revoked by another process, or has ended', async () => {
  const d = await startDaemon({ config: { jwt: { issuer: ISS } } });
  const post = (t) => d.request('/api/keys', {
    method: 'POST', headers: { ...auth(t), 'Content-Type': 'application/json' }, body: '{}',
  });
  const nkeys = () => withDb(d.dir, (db) => Number(db.prepare('SELECT count(*) AS n FROM api_keys').get().n));
  try {
    // Revoked by the command line a moment ago, maybe before the daemon's poll.
    const s = await login(d);
    await cmd(d, 'user', 'logout', '--keep-keys', s.user);
    const r = await post(s.access_token);
    assert.equal(r.status, 401, r.text());
    assert.equal(r.json().error, 'invalid_token');
    assert.equal(nkeys(), 0);

    // A session past its end whose access token is in its last minute of leeway.
    const e = await login(d, { user: 'local:eve@example.com', email: 'eve@example.com', ttl: 2 });
    const end = withDb(d.dir, (db) => db.prepare('SELECT expires FROM token_families WHERE id = ?').get(e.sid).expires);
    await waitFor(() => nowSec() > end, { timeoutMs: 5000, intervalMs: 100, message: 'the session did not end' });
    assert.equal((await validate(d, e.access_token)).status, 200, 'the token is still accepted (leeway)');
    const r2 = await post(e.access_token);
    assert.equal(r2.status, 401, r2.text());
    assert.match(r2.json().error_description, /ended/);
    assert.equal(nkeys(), 0);
  } finally {
    await d.stop();
  }
});
