// Administration of tokens while the daemon runs: revocation by commands
// (user logout / disable / enable, key revoke) seen on the next request,
// API keys over HTTP and from the command line, signing-key rotation, the
// key-encryption key, and the audit rows all of it leaves.
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  SignJWT, createLocalJWKSet, exportJWK, exportPKCS8, generateKeyPair, jwtVerify,
} from 'jose';
import { prepareDir, runCommand, startDaemon } from './lib/daemon.mjs';
import { noticed, onPostgres, pgDaemonConfig } from './lib/pg.mjs';
import {
  auditRows, daemonDb, dbPath, decodeJwt, holdWrites, kekPath, seedSession, withDb,
} from './lib/tokens.mjs';
import { deepMerge, makeTempDir, removeDir, sleep, waitFor } from './lib/util.mjs';

const ISS = 'https://bsp.test';
const AUD = 'bedrock-sso-proxy';

const auth = (t) => (t.startsWith('bsk_') ? { 'X-Api-Key': t } : { Authorization: `Bearer ${t}` });
const validate = (d, t) => d.request('/auth/validate', { headers: auth(t) });
const refresh = (d, t) => d.request('/auth/refresh', {
  method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ refresh_token: t }),
});
const cmd = async (d, ...args) => {
  const r = await runCommand(args, { dir: d.dir });
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  return r;
};
const mint = async (d, user, ...more) => (await cmd(d, 'token', 'mint', '--user', user, ...more)).stdout.trim();
/** On PostgreSQL: once the daemon has heard of the key (lib/pg.mjs, noticed). */
const keyKnown = (d, key) => onPostgres && noticed(() => d.request('/auth/validate', { headers: { 'X-Api-Key': key } }),
  (r) => !/unknown or revoked API key/.test(r.text()));
const keyCreate = async (d, user, ...more) => {
  const r = await cmd(d, 'key', 'create', '--user', user, ...more);
  const key = r.stdout.trim();
  await keyKnown(d, key);
  return { key, info: JSON.parse(/^(\{.*\}) \(shown once/m.exec(r.stderr)[1]) };
};
/** The daemon notices another process's write within ~1 s; allow 2.5 s. */
const refusedSoon = (d, t, re) => waitFor(async () => {
  const r = await validate(d, t);
  return r.status === 401 && (!re || re.test(r.json().error_description));
}, { timeoutMs: 2500, intervalMs: 100, message: `credential still accepted 2.5 s after the command (${re})` });
/** A token minted now has iat > revoked_before (second resolution). */
const nextSecond = () => sleep(1000 - (Date.now() % 1000) + 50);

test('user logout from the command line: the user\'s tokens and sessions stop on the next request', async () => {
  const d = await startDaemon({ config: { jwt: { issuer: ISS } } });
  try {
    const t1 = await mint(d, 'fred@example.com');
    const s = seedSession(d.dir, { user: 'local:fred@example.com', email: 'fred@example.com' });
    const p = (await refresh(d, s.refresh)).json();
    const other = await mint(d, 'gina@example.com');
    const { key } = await keyCreate(d, 'fred@example.com');
    for (const t of [t1, p.access_token, other, key]) assert.equal((await validate(d, t)).status, 200);

    const out = await cmd(d, 'user', 'logout', 'fred@example.com');
    assert.match(out.stdout, /ended 2 session\(s\) and revoked 1 API key\(s\)/);
    await refusedSoon(d, t1, /revoked/);
    assert.equal((await validate(d, p.access_token)).status, 401);
    assert.equal((await refresh(d, p.refresh_token)).status, 400);
    assert.equal((await validate(d, other)).status, 200, 'another user is untouched');
    // The user's API keys end too, the administrator's included (tokens-keys.test.mjs has more).
    await refusedSoon(d, key, /revoked/);
    // A new login after the logout works.
    await nextSecond();
    assert.equal((await validate(d, await mint(d, 'fred@example.com'))).status, 200);
    const minted = auditRows(d.dir, 'token_minted');
    assert.equal(minted.length, 3);
    assert.match(minted[0].actor, /^cli:/);
    assert.equal(minted[0].user_id, 'local:fred@example.com');
    for (const row of auditRows(d.dir)) assert.ok(!/eyJ|bsr_|bsk_[A-Za-z0-9_-]{8}/.test(String(row.detail)), `no secret in ${row.event}`);
    for (const t of [t1, key, p.access_token, p.refresh_token]) assert.ok(!d.stderr.includes(t), 'no credential in the log');
    const rows = auditRows(d.dir, 'user_logout');
    assert.equal(rows.length, 1);
    assert.equal(rows[0].user_id, 'local:fred@example.com');
    assert.match(rows[0].actor, /^cli:/);
  } finally {
    await d.stop();
  }
});

test('user disable stops every credential of the user at once; user enable does not bring old tokens back', async () => {
  const d = await startDaemon({ config: { jwt: { issuer: ISS } } });
  try {
    const t1 = await mint(d, 'hank@example.com');
    const s = seedSession(d.dir, { user: 'local:hank@example.com', email: 'hank@example.com' });
    const p = (await refresh(d, s.refresh)).json();
    const { key } = await keyCreate(d, 'hank@example.com');
    const out = await cmd(d, 'user', 'disable', 'hank@example.com');
    assert.match(out.stdout, /disabled local:hank@example.com/);
    await refusedSoon(d, t1, /disabled/);
    assert.equal((await validate(d, p.access_token)).status, 401);
    const kv = await validate(d, key);
    assert.equal(kv.status, 401);
    assert.match(kv.json().error_description, /disabled|revoked/);
    assert.equal((await refresh(d, p.refresh_token)).status, 400);
    // A disabled user gets no new token either.
    const m = await runCommand(['token', 'mint', '--user', 'hank@example.com'], { dir: d.dir });
    assert.equal(m.code, 1);
    assert.match(m.stderr, /disabled/);
    assert.match((await cmd(d, 'user', 'list')).stdout, /local:hank@example.com\s.*disabled/);

    await cmd(d, 'user', 'enable', 'hank@example.com');
    await sleep(1500);
    assert.equal((await validate(d, t1)).status, 401, 'old access token stays dead');
    assert.equal((await validate(d, p.access_token)).status, 401, 'old session stays dead');
    assert.equal((await refresh(d, p.refresh_token)).status, 400, 'old refresh token stays dead');
    await nextSecond();
    assert.equal((await validate(d, await mint(d, 'hank@example.com'))).status, 200, 'a new token works');
    assert.equal(auditRows(d.dir, 'user_disabled').length, 1);
    assert.equal(auditRows(d.dir, 'user_enabled').length, 1);
    // Unknown users are an error, not a silent no-op.
    const u = await runCommand(['user', 'disable', 'nobody@example.com'], { dir: d.dir });
    assert.equal(u.code, 1);
    assert.match(u.stderr, /no such user/);
  } finally {
    await d.stop();
  }
});

test('key revoke from the command line: the key is refused on the next request', async () => {
  const d = await startDaemon({ config: { jwt: { issuer: ISS } } });
  try {
    const { key, info } = await keyCreate(d, 'ivy@example.com', '--name', 'ci', '--models', 'anthropic.claude-*,amazon.nova-*', '--ttl', '30d');
    assert.match(info.id, /^key_/);
    assert.deepEqual(info.models, ['anthropic.claude-*', 'amazon.nova-*']);
    assert.ok(Math.abs(info.expires_at - info.created_at - 30 * 86400) <= 1);
    const v = await validate(d, key);
    assert.equal(v.status, 200, v.text());
    assert.equal(v.json().kind, 'api_key');
    assert.equal(v.json().sub, 'local:ivy@example.com');
    // Bearer works as well as X-Api-Key.
    assert.equal((await d.request('/auth/validate', { headers: { Authorization: `Bearer ${key}` } })).status, 200);
    const list = (await cmd(d, 'key', 'list')).stdout;
    assert.match(list, new RegExp(`${info.id}\\s+local:ivy@example.com\\s+ci\\s+bsk_\\.\\.\\.${key.slice(-4)}\\s+anthropic.claude-\\*,amazon.nova-\\*.*active`));
    assert.ok(!list.includes(key), 'key list never shows the secret');

    await cmd(d, 'key', 'revoke', info.id);
    await refusedSoon(d, key, /revoked/);
    assert.match((await cmd(d, 'key', 'list', '--user', 'ivy@example.com')).stdout, /revoked/);
    const again = await runCommand(['key', 'revoke', info.id], { dir: d.dir });
    assert.equal(again.code, 1);
    assert.equal(auditRows(d.dir, 'key_created').length, 1);
    assert.equal(auditRows(d.dir, 'key_revoked').length, 1);
    assert.equal(JSON.parse(auditRows(d.dir, 'key_revoked')[0].detail).key, info.id);
    for (const row of auditRows(d.dir)) assert.ok(!String(row.detail).includes(key.slice(4)), 'no key in the audit log');
  } finally {
    await d.stop();
  }
});

test('API keys over HTTP: JWT only, shown once, listed without secrets, deleted, limited per user', async () => {
  const d = await startDaemon({ config: { jwt: { issuer: ISS }, api_keys: { max_per_user: 2, default_ttl: 86400 } } });
  const post = (t, body) => d.request('/api/keys', {
    method: 'POST', headers: { ...auth(t), 'Content-Type': 'application/json' }, body: body === undefined ? '' : JSON.stringify(body),
  });
  try {
    const jwt = await mint(d, 'jack@example.com');
    const r = await post(jwt, { name: 'laptop', models: ['anthropic.claude-sonnet-*'], ttl: '7d' });
    assert.equal(r.status, 201, r.text());
    assert.equal(r.headers['cache-control'], 'no-store');
    const k1 = r.json();
    assert.match(k1.key, /^bsk_[A-Za-z0-9_-]{43}$/);
    assert.equal(k1.name, 'laptop');
    assert.equal(k1.hint, `bsk_...${k1.key.slice(-4)}`);
    assert.deepEqual(k1.models, ['anthropic.claude-sonnet-*']);
    assert.ok(Math.abs(k1.expires_at - k1.created_at - 7 * 86400) <= 1);
    // Stored: hash, hint and models, never the key.
    const row = withDb(d.dir, (db) => db.prepare('SELECT * FROM api_keys WHERE id = ?').get(k1.id));
    assert.equal(row.models, '["anthropic.claude-sonnet-*"]');
    assert.equal(row.user_id, 'local:jack@example.com');
    for (const f of [dbPath(d.dir), `${dbPath(d.dir)}-wal`]) {
      if (existsSync(f)) assert.ok(!readFileSync(f).includes(k1.key.slice(4)), `the key is not in ${f}`);
    }
    // The key works; an API key cannot manage keys (403, and nothing made).
    assert.equal((await validate(d, k1.key)).status, 200);
    const bykey = await post(k1.key, {});
    assert.equal(bykey.status, 403);
    assert.equal(bykey.json().error, 'insufficient_scope');
    assert.equal((await d.request('/api/keys', { headers: auth(k1.key) })).status, 403);
    assert.equal((await d.request(`/api/keys/${k1.id}`, { method: 'DELETE', headers: auth(k1.key) })).status, 403);
    // Defaults (empty body): api_keys.default_ttl.
    const k2 = (await post(jwt)).json();
    assert.equal(k2.expires_at - k2.created_at, 86400);
    assert.deepEqual(k2.models, []);
    // max_per_user
    const over = await post(jwt, { name: 'third' });
    assert.equal(over.status, 400);
    assert.match(over.json().error_description, /limit/);
    // GET lists the caller's keys, never the secret.
    const other = await mint(d, 'kate@example.com');
    const ko = (await post(other, { name: 'kates' })).json();
    const lr = await d.request('/api/keys', { headers: auth(jwt) });
    assert.equal(lr.status, 200);
    const listed = lr.json().keys;
    assert.deepEqual(listed.map((k) => k.id).sort(), [k1.id, k2.id].sort());
    assert.ok(!lr.text().includes(k1.key) && !lr.text().includes(k2.key) && !lr.text().includes('"key"'));
    assert.deepEqual(listed.find((k) => k.id === k1.id).models, ['anthropic.claude-sonnet-*']);
    // Bad input
    assert.equal((await post(jwt, { name: 'x'.repeat(65) })).status, 400);
    assert.equal((await post(jwt, { models: 'anthropic.*' })).status, 400);
    assert.equal((await post(jwt, { models: [1] })).status, 400);
    assert.equal((await post(jwt, { ttl: -5 })).status, 400);
    // DELETE: only one's own, then the key stops at once, and a slot frees up.
    assert.equal((await d.request(`/api/keys/${ko.id}`, { method: 'DELETE', headers: auth(jwt) })).status, 404);
    assert.equal((await validate(d, ko.key)).status, 200);
    const del = await d.request(`/api/keys/${k1.id}`, { method: 'DELETE', headers: auth(jwt) });
    assert.equal(del.status, 204);
    assert.equal((await validate(d, k1.key)).status, 401);
    assert.equal((await d.request(`/api/keys/${k1.id}`, { method: 'DELETE', headers: auth(jwt) })).status, 404);
    assert.equal((await post(jwt, { name: 'replacement' })).status, 201);
    assert.equal(auditRows(d.dir, 'key_created').length, 4);
    assert.equal(auditRows(d.dir, 'key_revoked').length, 1);
    // Without credentials: 401.
    assert.equal((await d.request('/api/keys')).status, 401);
  } finally {
    await d.stop();
  }
});

test('a key made by "key create" works on the very next request (PostgreSQL: once the notification is in); an expired key is refused', async () => {
  const d = await startDaemon({ config: { jwt: { issuer: ISS } } });
  try {
    // No wait for the daemon's once-a-second poll: a miss checks for news
    // first (SQLite); on PostgreSQL keyCreate waits for the notification.
    for (let i = 0; i < 3; i++) {
      const { key } = await keyCreate(d, 'quinn@example.com', '--name', `k${i}`);
      const v = await validate(d, key);
      assert.equal(v.status, 200, `key ${i}: ${v.text()}`);
    }
    const { key: short } = await keyCreate(d, 'quinn@example.com', '--ttl', '2');
    assert.equal((await validate(d, short)).status, 200);
    await sleep(3100);
    const v = await validate(d, short);
    assert.equal(v.status, 401);
    assert.match(v.json().error_description, /expired/);
  } finally {
    await d.stop();
  }
});

test('a bad API key is 401 on a JWT-only route; only a good one learns it needs a token (403)', async () => {
  const d = await startDaemon({ config: { jwt: { issuer: ISS } } });
  try {
    const { key } = await keyCreate(d, 'lou@example.com');
    const bad = `${key.slice(0, -1)}${key.endsWith('A') ? 'B' : 'A'}`;
    const r = await d.request('/api/keys', { headers: auth(bad) });
    assert.equal(r.status, 401);
    assert.equal(r.json().error, 'invalid_token');
    assert.equal((await d.request('/api/keys', { headers: auth(key) })).status, 403);
  } finally {
    await d.stop();
  }
});

test('api_keys.enabled false: no key is accepted or made', async () => {
  const d = await startDaemon({ config: { jwt: { issuer: ISS }, api_keys: { enabled: false } } });
  try {
    const { key } = await keyCreate(d, 'max@example.com');
    assert.equal((await validate(d, key)).status, 401);
    const jwt = await mint(d, 'max@example.com');
    assert.equal((await d.request('/api/keys', { method: 'POST', headers: auth(jwt), body: '' })).status, 404);
  } finally {
    await d.stop();
  }
});

test('signing-key rotate while running: old tokens verify, new ones carry the new kid, the JWKS lists both; a restart keeps them', async () => {
  const d = await startDaemon({ config: { jwt: { issuer: ISS, algorithm: 'ES256' } } });
  try {
    const kid0 = (await d.request('/.well-known/jwks.json')).json().keys[0].kid;
    const old = await mint(d, 'nina@example.com');
    const s = seedSession(d.dir, { user: 'local:nina@example.com' });
    const pOld = (await refresh(d, s.refresh)).json();
    assert.equal(decodeJwt(pOld.access_token).header.kid, kid0);

    const out = await cmd(d, 'signing-key', 'rotate');
    assert.match(out.stdout, /rotated/);
    // A token from the new key is taken at once, not after the next poll.
    const first = await mint(d, 'nina@example.com');
    assert.notEqual(decodeJwt(first).header.kid, kid0);
    const fv = await validate(d, first);
    assert.equal(fv.status, 200, `token of the new key right after the rotation: ${fv.text()}`);
    const set = await waitFor(async () => {
      const j = (await d.request('/.well-known/jwks.json')).json();
      return j.keys.length === 2 ? j : null;
    }, { timeoutMs: 2500, message: 'the JWKS did not list the new key' });
    const kid1 = set.keys.map((k) => k.kid).find((k) => k !== kid0);
    assert.ok(kid1);
    // New tokens, from the command line and from the daemon, carry the new kid.
    const fresh = await mint(d, 'nina@example.com');
    assert.equal(decodeJwt(fresh).header.kid, kid1);
    const pNew = (await refresh(d, pOld.refresh_token)).json();
    assert.equal(decodeJwt(pNew.access_token).header.kid, kid1);
    // jose verifies all of them against the one JWKS; the daemon takes them all.
    const keyset = createLocalJWKSet(set);
    for (const t of [old, pOld.access_token, fresh, pNew.access_token]) {
      await jwtVerify(t, keyset, { issuer: ISS, audience: AUD, algorithms: ['ES256'] });
      assert.equal((await validate(d, t)).status, 200);
    }
    const rows = withDb(d.dir, (db) => db.prepare('SELECT kid, retired, verify_until FROM signing_keys ORDER BY created').all());
    assert.equal(rows.length, 2);
    const r0 = rows.find((r) => r.kid === kid0);
    assert.ok(r0.retired && r0.verify_until >= decodeJwt(old).payload.exp, 'the old key verifies until its last token expires');
    assert.equal(auditRows(d.dir, 'signing_key_rotated').length, 1);

    // Restart: no new key, the same two in the JWKS, old tokens still good.
    await d.stop({ keepDir: true });
    const d2 = await startDaemon({ dir: d.dir });
    try {
      const set2 = (await d2.request('/.well-known/jwks.json')).json();
      assert.deepEqual(set2.keys.map((k) => k.kid).sort(), [kid0, kid1].sort());
      assert.equal(withDb(d2.dir, (db) => db.prepare('SELECT count(*) AS n FROM signing_keys').get().n), 2);
      assert.equal((await validate(d2, old)).status, 200);
      assert.equal(decodeJwt(await mint(d2, 'nina@example.com')).header.kid, kid1);
    } finally {
      await d2.stop();
    }
  } finally {
    if (!d.exitStatus) await d.stop();
  }
});

test('jwt.key_file: the same key across restarts; rotate refuses; a new file on SIGHUP keeps the old key verifying', async () => {
  const k1 = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  const k2 = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  const d = await startDaemon({
    config: (dir) => ({ jwt: { issuer: ISS, key_file: `${dir}/sign.pem` } }),
    files: { 'sign.pem': await exportPKCS8(k1.privateKey) },
  });
  let d2;
  try {
    const x1 = (await exportJWK(k1.publicKey)).x;
    const set = (await d.request('/.well-known/jwks.json')).json();
    assert.equal(set.keys.length, 1);
    assert.equal(set.keys[0].x, x1);
    const t1 = await mint(d, 'olga@example.com');
    await jwtVerify(t1, k1.publicKey, { issuer: ISS, audience: AUD });
    // Nothing private is stored in key_file mode.
    assert.equal(withDb(d.dir, (db) => db.prepare('SELECT count(*) AS n FROM signing_keys WHERE private_sealed IS NOT NULL').get().n), 0);
    const rot = await runCommand(['signing-key', 'rotate'], { dir: d.dir });
    assert.equal(rot.code, 1);
    assert.match(rot.stderr, /key_file/);

    await d.stop({ keepDir: true });
    d2 = await startDaemon({ dir: d.dir });
    assert.deepEqual((await d2.request('/.well-known/jwks.json')).json(), set, 'same key after a restart');
    assert.equal((await validate(d2, t1)).status, 200);

    // Replace the file and reload: new tokens use the new key, old ones still verify.
    writeFileSync(join(d.dir, 'sign.pem'), await exportPKCS8(k2.privateKey), { mode: 0o600 });
    const mark = d2.logMark();
    d2.signal('SIGHUP');
    await d2.waitForLog(/reload/i, 5000, { from: mark });
    const set2 = await waitFor(async () => {
      const j = (await d2.request('/.well-known/jwks.json')).json();
      return j.keys.length === 2 ? j : null;
    }, { timeoutMs: 3000, message: 'JWKS after SIGHUP' });
    const x2 = (await exportJWK(k2.publicKey)).x;
    assert.deepEqual(set2.keys.map((k) => k.x).sort(), [x1, x2].sort());
    const t2 = await mint(d2, 'olga@example.com');
    await jwtVerify(t2, k2.publicKey, { issuer: ISS, audience: AUD });
    await jwtVerify(t1, createLocalJWKSet(set2), { issuer: ISS, audience: AUD });
    assert.equal((await validate(d2, t1)).status, 200);
    assert.equal((await validate(d2, t2)).status, 200);
  } finally {
    if (d2) await d2.stop();
    else await d.stop();
  }
});

test('jwt.key_file empty when another writer makes the daemon load its state again: the keys in use stay, the daemon runs on', async () => {
  const k1 = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  const d = await startDaemon({
    config: (dir) => ({ jwt: { issuer: ISS, key_file: `${dir}/sign.pem` } }),
    files: { 'sign.pem': await exportPKCS8(k1.privateKey) },
  });
  try {
    const t1 = await mint(d, 'pia@example.com');
    const set = (await d.request('/.well-known/jwks.json')).json();
    // As a key file being replaced is for a moment, before the SIGHUP.
    writeFileSync(join(d.dir, 'sign.pem'), '', { mode: 0o600 });
    const mark = d.logMark();
    // Another writer: the daemon loads users, sessions and keys again.
    seedSession(d.dir, { user: 'local:quin@example.com', email: 'quin@example.com' });
    const line = await d.waitForLog((e) => /cannot load the signing keys/.test(e?.msg ?? ''), 8000, { from: mark });
    assert.equal(line.level, 'warn');
    assert.match(line.msg, /sign\.pem is empty/);
    await sleep(200);
    assert.equal(d.exitStatus, null, 'the daemon runs on');
    assert.deepEqual((await d.request('/.well-known/jwks.json')).json(), set, 'the same keys');
    assert.equal((await validate(d, t1)).status, 200);
    assert.ok(!d.logs.slice(mark).some((e) => e?.level === 'error'), 'nothing at error');
    writeFileSync(join(d.dir, 'sign.pem'), await exportPKCS8(k1.privateKey), { mode: 0o600 });
  } finally {
    await d.stop();
  }
});

test('SIGHUP to another jwt.algorithm: a reload that fails writes no key; one that works adds the key and old tokens still verify', async () => {
  const d = await startDaemon({ config: { jwt: { issuer: ISS, algorithm: 'EdDSA' } } });
  try {
    const t1 = await mint(d, 'hal@example.com');
    const keys = () => withDb(d.dir, (db) => db.prepare('SELECT alg FROM signing_keys ORDER BY alg').all().map((r) => r.alg));
    assert.deepEqual(keys(), ['EdDSA']);
    const reload = async (config, re) => {
      prepareDir(d.dir, { config: { ...config, server: { port: d.port } }, files: { 'broken-ca.pem': 'not a certificate\n' } });
      const mark = d.logMark();
      d.signal('SIGHUP');
      return d.waitForLog((e) => re.test(e?.msg ?? ''), 5000, { from: mark });
    };
    // ES256 wanted, but aws.ca_file is broken: the reload fails, and no ES256 key was made.
    const line = await reload({ jwt: { issuer: ISS, algorithm: 'ES256' }, aws: { ca_file: `${d.dir}/broken-ca.pem` } },
      /^configuration reload failed/);
    assert.match(line.msg, /ca_file|certificate|broken-ca/i);
    assert.deepEqual(keys(), ['EdDSA'], 'a failed reload leaves the signing keys as they were');
    assert.equal((await d.request('/.well-known/jwks.json')).json().keys.length, 1);
    assert.equal((await validate(d, t1)).status, 200);
    // Fixed: the ES256 key is made and signs; the EdDSA token still verifies.
    await reload({ jwt: { issuer: ISS, algorithm: 'ES256' } }, /^configuration reloaded$/);
    assert.deepEqual(keys(), ['ES256', 'EdDSA']);
    const set = (await d.request('/.well-known/jwks.json')).json();
    assert.deepEqual(set.keys.map((k) => k.alg).sort(), ['ES256', 'EdDSA']);
    const t2 = await mint(d, 'hal@example.com');
    assert.equal(decodeJwt(t2).header.alg, 'ES256');
    await jwtVerify(t2, createLocalJWKSet(set), { issuer: ISS, audience: AUD });
    assert.equal((await validate(d, t1)).status, 200);
    assert.equal((await validate(d, t2)).status, 200);
  } finally {
    await d.stop();
  }
});

test('SIGHUP to another jwt.algorithm is done (logged, READY=1) once the new key is in place', async () => {
  const d = await startDaemon({ config: { jwt: { issuer: ISS, algorithm: 'EdDSA' } } });
  let lock = null;
  try {
    const keys = () => withDb(d.dir, (db) => db.prepare('SELECT alg FROM signing_keys ORDER BY alg').all().map((r) => r.alg));
    // The key cannot be written while we hold the table.
    lock = await holdWrites(d.dir, 'signing_keys');
    prepareDir(d.dir, { config: { jwt: { issuer: ISS, algorithm: 'ES256' }, server: { port: d.port } } });
    const mark = d.logMark();
    d.signal('SIGHUP');
    await sleep(500);
    assert.ok(!d.logs.slice(mark).some((e) => /^configuration reload/.test(e?.msg ?? '')),
      'the reload is not done while its key cannot be written');
    await lock.release();
    lock = null;
    const line = await d.waitForLog((e) => /^configuration reload/.test(e?.msg ?? ''), 5000, { from: mark });
    assert.equal(line.msg, 'configuration reloaded');
    assert.deepEqual(keys(), ['ES256', 'EdDSA']);
    const set = (await d.request('/.well-known/jwks.json')).json();
    assert.deepEqual(set.keys.map((k) => k.alg).sort(), ['ES256', 'EdDSA'], 'the daemon has the new key');
  } finally {
    await lock?.release();
    await d.stop();
  }
});

/**
 * The database of d without its KEK, for a daemon or command in copy: with
 * SQLite a copy of the file (its KEK would be beside it), with PostgreSQL the
 * same database and a jwt.kek_file not there. Returns {config, kek: the path
 * of the KEK it would use, code and missing: the exit status and message of
 * the refusal (with PostgreSQL a configuration error: a jwt.kek_file that
 * is not there).
 */
function databaseWithoutKek(d, copy, cfg) {
  if (onPostgres) {
    const kek = join(copy, 'kek');
    const db = new URL(daemonDb(d.dir).url).pathname.slice(1);
    return {
      config: deepMerge(cfg, pgDaemonConfig(copy, { database: db, kekFile: kek })), kek, code: 1, missing: /jwt\.kek_file: cannot stat .*kek: No such file/,
    };
  }
  mkdirSync(join(copy, 'state'), { recursive: true });
  copyFileSync(dbPath(d.dir), dbPath(copy));
  return { config: cfg, kek: `${dbPath(copy)}.kek`, code: 2, missing: /key-encryption key .*proxy\.db\.kek.* missing/ };
}

for (const alg of ['EdDSA', 'ES256', 'RS256']) {
  test(`${alg}: the private key is sealed under the KEK; the database alone neither signs nor leaks`, async () => {
    const d = await startDaemon({ config: { jwt: { issuer: ISS, algorithm: alg } } });
    const copy = makeTempDir('bsp-copy-');
    try {
      const t = await mint(d, 'pam@example.com');
      const jwk = (await d.request('/.well-known/jwks.json')).json().keys[0];
      const kek = kekPath(d.dir);
      assert.ok(existsSync(kek));
      const row = withDb(d.dir, (db) => db.prepare('SELECT private_sealed, public_jwk FROM signing_keys').get());
      const blob = Buffer.from(row.private_sealed);
      assert.equal(blob[0], 1, 'sealed blob format version');
      assert.ok(!blob.includes('PRIVATE KEY'), 'no PEM in the clear');
      // nor a DER key: the rsaEncryption and id-ecPublicKey OIDs of PKCS#8
      assert.ok(!blob.includes(Buffer.from('06092a864886f70d010101', 'hex')), 'no RSA DER in the clear');
      assert.ok(!blob.includes(Buffer.from('06072a8648ce3d0201', 'hex')), 'no EC DER in the clear');
      // Any cleartext form of the private key holds the public values: the blob does not.
      for (const p of ['n', 'x', 'y']) {
        if (jwk[p]) {
          const pub = Buffer.from(jwk[p], 'base64url');
          assert.ok(!blob.includes(pub.subarray(0, 16)), `public ${p} not visible in the sealed blob`);
        }
      }
      assert.ok(!JSON.parse(row.public_jwk).d, 'public_jwk holds no private part');
      await d.stop({ keepDir: true });

      // The database without its KEK: refuse to start, say why, create nothing.
      const other = databaseWithoutKek(d, copy, { jwt: { issuer: ISS, algorithm: alg } });
      const r = await runCommand(['-d'], { dir: copy, config: other.config, timeoutMs: 10000 });
      assert.equal(r.code, other.code, r.stderr);
      assert.match(r.stderr, other.missing);
      assert.ok(!existsSync(other.kek), 'no new KEK was made');
      const c2 = await runCommand(['user', 'list'], { dir: copy });
      assert.equal(c2.code, other.code);
      assert.match(c2.stderr, other.missing);
      // With the KEK copied too, the copy signs with the same key.
      copyFileSync(kek, other.kek);
      const m = await runCommand(['token', 'mint', '--user', 'pam@example.com'], { dir: copy });
      assert.equal(m.code, 0, m.stderr);
      assert.equal(decodeJwt(m.stdout.trim()).header.kid, jwk.kid);
      await jwtVerify(m.stdout.trim(), createLocalJWKSet({ keys: [jwk] }), { issuer: ISS, audience: AUD });
      await jwtVerify(t, createLocalJWKSet({ keys: [jwk] }), { issuer: ISS, audience: AUD });
      // A wrong KEK: refused, with a reason.
      writeFileSync(other.kek, Buffer.alloc(32, 7), { mode: 0o600 });
      const r4 = await runCommand(['user', 'list'], { dir: copy });
      assert.equal(r4.code, 2);
      assert.match(r4.stderr, /does not open|wrong KEK/);
    } finally {
      removeDir(copy);
      if (!d.exitStatus) await d.stop();
      else removeDir(d.dir);
    }
  });
}

test('a rotated-out key keeps verifying until the longest token it signed expires (token mint --ttl > access_token_ttl)', async () => {
  const d = await startDaemon({ config: { jwt: { issuer: ISS, access_token_ttl: 3600, refresh_token_ttl: 157680000 } } });
  const untilOf = (kid) => withDb(d.dir, (db) => db.prepare('SELECT verify_until FROM signing_keys WHERE kid = ?').get(kid)).verify_until;
  const activeKid = async () => decodeJwt(await mint(d, 'svc@example.com')).header.kid;
  try {
    // A long login session: its access tokens still last access_token_ttl,
    // so it does not keep the old key around for five years.
    const s = seedSession(d.dir, { ttl: 157680000 });
    assert.equal((await refresh(d, s.refresh)).status, 200);
    const kid0 = await activeKid();
    let now = Math.floor(Date.now() / 1000);
    await cmd(d, 'signing-key', 'rotate');
    const u0 = untilOf(kid0);
    assert.ok(u0 >= now + 3600 && u0 <= now + 3600 + 60 + 5, `verify_until ${u0 - now} s from now`);

    // A year-long service token from "token mint": the key it was signed
    // with stays verifiable as long as the token.
    const kid1 = await activeKid();
    assert.notEqual(kid1, kid0);
    const long = await mint(d, 'svc@example.com', '--ttl', '31536000');
    assert.equal(decodeJwt(long).header.kid, kid1);
    now = Math.floor(Date.now() / 1000);
    await cmd(d, 'signing-key', 'rotate');
    const { exp } = decodeJwt(long).payload;
    assert.ok(untilOf(kid1) >= exp, `verify_until ${untilOf(kid1)} covers the service token (exp ${exp})`);
    assert.equal((await validate(d, long)).status, 200);
  } finally {
    await d.stop();
  }
});

test('token mint refuses a configuration whose issuer depends on a port picked at start', async () => {
  const r = await runCommand(['token', 'mint', '--user', 'x@example.com'], { config: { server: { port: 0 } } });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /server\.port is 0.*set server\.public_url or jwt\.issuer/);
  const ok = await runCommand(['token', 'mint', '--user', 'x@example.com'], {
    config: { server: { port: 0 }, jwt: { issuer: 'https://proxy.test' } },
  });
  assert.equal(ok.code, 0, ok.stderr);
});

test('only a signed-in user with the invoke scope manages API keys, and within api_keys.max_ttl', async () => {
  const secret = 'L'.repeat(32);
  const d = await startDaemon({
    config: { jwt: { issuer: ISS, legacy: { secret } }, api_keys: { max_ttl: '30d', default_ttl: '7d' } },
  });
  try {
    const post = (t, body) => d.request('/api/keys', {
      method: 'POST', headers: { ...auth(t), 'Content-Type': 'application/json' }, body: JSON.stringify(body),
    });
    // A legacy token: a user the proxy has no record of cannot make a key.
    const now = Math.floor(Date.now() / 1000);
    const legacy = await new SignJWT({ sub: 'corp:alice', email: 'alice@example.com' })
      .setProtectedHeader({ alg: 'HS256' }).setIssuedAt(now).setExpirationTime(now + 600)
      .sign(new TextEncoder().encode(secret));
    assert.equal((await validate(d, legacy)).status, 200, 'the legacy token itself works');
    let r = await post(legacy, { name: 'x' });
    assert.equal(r.status, 403, r.text());
    assert.equal((await d.request('/api/keys', { headers: auth(legacy) })).status, 403);
    // A token without the invoke scope cannot make one that has it.
    const scoped = await mint(d, 'bob@example.com', '--scope', 'profile');
    r = await post(scoped, { name: 'x' });
    assert.equal(r.status, 403, r.text());
    assert.equal(r.json().error, 'insufficient_scope');
    // A signed-in user: within max_ttl only, never without expiry.
    const t = await mint(d, 'carol@example.com');
    assert.equal((await post(t, { ttl: 0 })).status, 400);
    assert.equal((await post(t, { ttl: '31d' })).status, 400);
    r = await post(t, { ttl: '30d' });
    assert.equal(r.status, 201, r.text());
    assert.ok(r.json().expires_at <= now + 30 * 86400 + 60);
    // The administrator still can.
    const k = await keyCreate(d, 'carol@example.com', '--ttl', '0');
    assert.match(k.key, /^bsk_/);
  } finally {
    await d.stop();
  }
});

test('the maintenance sweep forgets expired sessions, login states, old audit rows and old revoked or expired API keys', async () => {
  const d = await startDaemon({ config: { jwt: { issuer: ISS }, cache: { cleanup_interval: 1 }, audit: { retention_days: 1 } } });
  try {
    const live = await keyCreate(d, 'dev@example.com', '--name', 'live');
    const gone = await keyCreate(d, 'dev@example.com', '--name', 'revoked-long-ago');
    const recent = await keyCreate(d, 'dev@example.com', '--name', 'revoked-today');
    const expired = await keyCreate(d, 'dev@example.com', '--name', 'expired-long-ago');
    await cmd(d, 'key', 'revoke', gone.info.id);
    await cmd(d, 'key', 'revoke', recent.info.id);
    const now = Math.floor(Date.now() / 1000);
    const old = now - 2 * 86400;
    withDb(d.dir, (db) => {
      db.prepare('UPDATE api_keys SET revoked_at = ? WHERE id = ?').run(old, gone.info.id);
      db.prepare('UPDATE api_keys SET expires = ? WHERE id = ?').run(old, expired.info.id);
      db.prepare("INSERT INTO audit_log (ts, event, detail) VALUES (?, 'ancient', '{}')").run(old);
      // A session is kept until its tokens' 60 s of leeway after it ended have passed.
      db.prepare("INSERT INTO token_families (id, user_id, created, expires) VALUES ('fam-old', 'local:x', ?, ?)").run(old, now - 120);
      db.prepare("INSERT INTO refresh_tokens (hash, family_id, created, expires) VALUES (?, 'fam-old', ?, ?)").run(Buffer.alloc(32, 7), old, now - 120);
      db.prepare(`INSERT INTO oauth_states (hash, provider, flow, redirect_uri, created, expires)
        VALUES (?, 'x', 'browser', 'x', ?, ?)`).run(Buffer.alloc(32, 9), old, now - 10);
    });
    const rows = () => withDb(d.dir, (db) => ({
      keys: db.prepare('SELECT name FROM api_keys ORDER BY name').all().map((r) => r.name),
      ancient: Number(db.prepare("SELECT count(*) AS n FROM audit_log WHERE event = 'ancient'").get().n),
      families: Number(db.prepare("SELECT count(*) AS n FROM token_families WHERE id = 'fam-old'").get().n),
      refresh: Number(db.prepare("SELECT count(*) AS n FROM refresh_tokens WHERE family_id = 'fam-old'").get().n),
      states: Number(db.prepare('SELECT count(*) AS n FROM oauth_states').get().n),
    }));
    // Each table's purge is a unit of its own: with PostgreSQL they end in any order.
    const want = { keys: ['live', 'revoked-today'], ancient: 0, families: 0, refresh: 0, states: 0 };
    const swept = () => JSON.stringify(rows()) === JSON.stringify(want);
    await waitFor(swept, { timeoutMs: 5000, intervalMs: 200, message: 'sweep did not run' }).catch(() => {});
    assert.deepEqual(rows(), want);
    // What stays works as before; the audit rows of the purged keys stay.
    assert.equal((await validate(d, live.key)).status, 200);
    assert.ok(auditRows(d.dir, 'key_revoked').some((r) => r.detail.includes(gone.info.id)), 'the revocation stays in the audit log');
  } finally {
    await d.stop();
  }
});
