// bedrock-sso-proxy db copy: a proxy that outgrew its SQLite file moves to
// PostgreSQL with its users, sessions, API keys, signing keys and usage, and
// back, and from one PostgreSQL database to another; every table is checked
// row by row. A daemon on the copy accepts the tokens and keys of the
// original (given its KEK, jwt.kek_file). Refused: a target that is not
// empty, the same database twice, a source of another schema version; a
// copy whose check finds a difference is rolled back.
import assert from 'node:assert/strict';
import { copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import {
  PG_PASSWORD, sharedFiles, startCluster, startPg,
} from './lib/cluster.mjs';
import { prepareDir, runCommand, startDaemon } from './lib/daemon.mjs';
import { startFakeOidc } from './lib/fake-oidc-bad.mjs';
import {
  MODEL, fetchLogin, loginConfig, startBedrock, tokenFromHtml,
} from './lib/login.mjs';
import { withDb } from './lib/tokens.mjs';
import { makeTempDir, waitFor } from './lib/util.mjs';

const J = { 'Content-Type': 'application/json' };
const BODY = JSON.stringify({ anthropic_version: 'bedrock-2023-05-31', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] });
const TABLES = ['users', 'token_families', 'refresh_tokens', 'oauth_states', 'api_keys', 'signing_keys', 'kek_check', 'usage',
  'audit_log', 'rate_counters', 'device_codes'];
const refresh = (d, token) => d.request('/auth/refresh', { method: 'POST', headers: J, body: JSON.stringify({ refresh_token: token }) });
const validate = (d, h) => d.request('/auth/validate', { headers: h });
const invoke = (d, token, rid) => d.request(`/model/${MODEL}/invoke`, {
  method: 'POST', headers: { ...J, Authorization: `Bearer ${token}`, 'X-Request-Id': rid }, body: BODY,
});
const refreshFromHtml = (html) => /<textarea id="refresh-token"[^>]*>([^<]*)<\/textarea>/.exec(html)?.[1] ?? null;

const cleanups = [];
after(async () => {
  for (const f of cleanups.reverse()) await f().catch(() => {});
});

async function pgCounts(pg, db = 'bsp') {
  const out = {};
  for (const t of TABLES) out[t] = await pg.value(`SELECT count(*) FROM ${t}`, db);
  return out;
}

function sqliteCounts(dir) {
  return withDb(dir, (db) => Object.fromEntries(TABLES.map((t) => [t, Number(db.prepare(`SELECT count(*) AS n FROM ${t}`).get().n)])));
}

test('db copy: SQLite to PostgreSQL and back, and PostgreSQL to PostgreSQL, checked row by row; the daemon on a copy takes the old tokens and keys', async () => {
  const op = await startFakeOidc();
  const bedrock = await startBedrock();
  cleanups.push(() => op.close(), () => bedrock.close());
  const cfg = loginConfig({ bedrock, providers: { op: { issuer: op.issuer, client_id: op.clientId, client_secret: op.clientSecret } } });

  // The proxy on one VM, with its SQLite file.
  const d1 = await startDaemon({ config: cfg, env: { AWS_EC2_METADATA_DISABLED: 'true' } });
  op.user = { sub: 'mover', email: 'mover@example.com', email_verified: true, name: 'Mover', groups: [] };
  const { res, text } = await fetchLogin(d1, 'op');
  assert.equal(res.status, 200, text);
  const first = { access: tokenFromHtml(text), refresh: refreshFromHtml(text) };
  const mk = await d1.request('/api/keys', { method: 'POST', headers: { ...J, Authorization: `Bearer ${first.access}` }, body: '{"name":"moving"}' });
  assert.equal(mk.status, 201, mk.text());
  const apiKey = mk.json().key;
  for (let i = 0; i < 3; i++) assert.equal((await invoke(d1, first.access, `copy-${i}`)).status, 200);
  // A device authorization waiting for its user: a row of device_codes.
  const da = await d1.request('/oauth/device_authorization', {
    method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'client_id=claude-code',
  });
  assert.equal(da.status, 200, da.text());
  assert.equal((await runCommand(['signing-key', 'rotate'], { dir: d1.dir })).code, 0);
  await waitFor(async () => (await d1.request('/.well-known/jwks.json')).json().keys.length === 2, { timeoutMs: 5000 });
  const r1 = await refresh(d1, first.refresh);
  assert.equal(r1.status, 200);
  const second = { access: r1.json().access_token, refresh: r1.json().refresh_token };
  const jwks1 = (await d1.request('/.well-known/jwks.json')).json().keys.map((k) => k.kid).sort();
  await d1.stop({ keepDir: true });
  cleanups.push(async () => (await import('./lib/util.mjs')).removeDir(d1.dir));
  const before = sqliteCounts(d1.dir);
  assert.equal(before.usage, 3);

  // Into PostgreSQL.
  const pg = await startPg();
  cleanups.push(() => pg.close());
  const pgpass = join(makeTempDir('bsp-pgpass-'), 'pgpass');
  writeFileSync(pgpass, `127.0.0.1:${pg.port}:*:bsp:${PG_PASSWORD}\n`, { mode: 0o600 });
  const env = { PGPASSFILE: pgpass };
  const src = `sqlite://${join(d1.dir, 'state', 'proxy.db')}`;
  const c1 = await runCommand(['db', 'copy', '--from', src, '--to', pg.url], { dir: d1.dir, env });
  assert.equal(c1.code, 0, c1.stderr);
  for (const t of TABLES) assert.match(c1.stdout, new RegExp(`^${t} +${before[t]} rows? copied and checked$`, 'm'));
  assert.match(c1.stdout, /^copied \d+ rows in 11 tables from sqlite:\/\/.* to postgresql:\/\/bsp@127\.0\.0\.1:\d+\/bsp$/m);
  assert.deepEqual(await pgCounts(pg), before);
  assert.doesNotMatch(c1.stdout + c1.stderr, new RegExp(PG_PASSWORD), 'no password in the output');

  // A daemon on PostgreSQL, given the KEK that was beside the SQLite file.
  const shared = sharedFiles();
  copyFileSync(join(d1.dir, 'state', 'proxy.db.kek'), shared.kek);
  const c = await startCluster({ pg, n: 1, shared, config: cfg });
  cleanups.push(() => c.stop());
  const [d2] = c.daemons;
  assert.deepEqual((await d2.request('/.well-known/jwks.json')).json().keys.map((k) => k.kid).sort(), jwks1, 'the same keys');
  assert.equal((await validate(d2, { Authorization: `Bearer ${first.access}` })).status, 200, 'a token of the old key');
  assert.equal((await validate(d2, { Authorization: `Bearer ${second.access}` })).status, 200, 'a token of the new key');
  assert.equal((await validate(d2, { 'X-Api-Key': apiKey })).status, 200, 'the API key');
  const r2 = await refresh(d2, second.refresh);
  assert.equal(r2.status, 200, r2.text());
  // New rows take ids after the copied ones.
  assert.equal((await invoke(d2, r2.json().access_token, 'copy-after')).status, 200);
  await waitFor(async () => (await pg.value("SELECT count(*) FROM usage WHERE request_id = 'copy-after'")) === 1, { timeoutMs: 10000 });
  assert.equal(await pg.value('SELECT count(*) FROM usage'), 4);

  // Not into a database that holds rows; not from a database into itself.
  const again = await runCommand(['db', 'copy', '--from', src, '--to', pg.url], { dir: d1.dir, env });
  assert.equal(again.code, 1, again.stderr);
  assert.match(again.stderr, /is not empty \(table users has 1 row\): db copy only copies into an empty database/);
  const self = await runCommand(['db', 'copy', '--from', pg.url, '--to', pg.url], { dir: d1.dir, env });
  assert.equal(self.code, 1);
  assert.match(self.stderr, /the same database/);
  await c.stop();

  // Back to SQLite, into a new file; a daemon on it with the KEK beside it.
  const d3dir = makeTempDir('bsp-it-');
  const back = await runCommand(['db', 'copy', '--from', pg.url, '--to', `sqlite://${join(d3dir, 'state', 'proxy.db')}`], { dir: d1.dir, env });
  assert.equal(back.code, 0, back.stderr);
  assert.deepEqual(sqliteCounts(d3dir), await pgCounts(pg));
  copyFileSync(shared.kek, join(d3dir, 'state', 'proxy.db.kek'));
  const d3 = await startDaemon({ dir: d3dir, config: cfg, env: { AWS_EC2_METADATA_DISABLED: 'true' } });
  assert.equal((await validate(d3, { Authorization: `Bearer ${first.access}` })).status, 200);
  assert.equal((await validate(d3, { 'X-Api-Key': apiKey })).status, 200);
  await d3.stop({ keepDir: true });
  cleanups.push(async () => (await import('./lib/util.mjs')).removeDir(d3dir));

  // PostgreSQL to PostgreSQL.
  const url2 = await pg.createDb('bsp2');
  const pp = await runCommand(['db', 'copy', '--from', pg.url, '--to', url2], { dir: d1.dir, env });
  assert.equal(pp.code, 0, pp.stderr);
  assert.deepEqual(await pgCounts(pg, 'bsp2'), await pgCounts(pg));
  const rows = async (db) => pg.query("SELECT id, user_id, created, expires, revoked FROM token_families ORDER BY id COLLATE \"C\"", db);
  assert.deepEqual(await rows('bsp2'), await rows('bsp'));

  // A copy whose check finds a difference (a trigger on the target changes what it is given) is rolled back.
  const url3 = await pg.createDb('bsp3');
  const migrateDir = makeTempDir('bsp-cmd-');
  prepareDir(migrateDir, { config: { database: { url: url3, password_file: shared.pw }, jwt: { kek_file: shared.kek } } });
  assert.equal((await runCommand(['user', 'list'], { dir: migrateDir })).code, 0, 'the target migrated');
  await pg.query(`TRUNCATE ${TABLES.join(', ')}`, 'bsp3');	// the command made a signing key there
  await pg.query("CREATE FUNCTION tamper() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.name := 'tampered'; RETURN NEW; END $$; "
    + 'CREATE TRIGGER tamper BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION tamper()', 'bsp3');
  const bad = await runCommand(['db', 'copy', '--from', pg.url, '--to', url3], { dir: d1.dir, env });
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /table users: row 1 \(in key order\) differs in column name/);
  assert.doesNotMatch(bad.stderr, /Mover|tampered/, 'values are not shown');
  assert.deepEqual(Object.values(await pgCounts(pg, 'bsp3')).filter((n) => n !== 0), [], 'nothing left in the target');

  // A source of another schema version, or none at all.
  const newer = join(makeTempDir('bsp-newer-'), 'proxy.db');
  copyFileSync(join(d3dir, 'state', 'proxy.db'), newer);
  const { DatabaseSync } = (await import('node:module')).createRequire(import.meta.url)('node:sqlite');
  const ndb = new DatabaseSync(newer);
  ndb.exec('PRAGMA user_version = 99');
  ndb.close();
  const nv = await runCommand(['db', 'copy', '--from', `sqlite://${newer}`, '--to', await pg.createDb('bsp4')], { dir: d1.dir, env });
  assert.equal(nv.code, 1, nv.stderr);
  assert.match(nv.stderr, /schema version 99; this binary's is \d+: use a newer/);
  const none = await runCommand(['db', 'copy', '--from', `sqlite://${join(d3dir, 'nope.db')}`, '--to', url2], { dir: d1.dir, env });
  assert.equal(none.code, 2, none.stderr);
  assert.match(none.stderr, /cannot open/);
  const usage = await runCommand(['db', 'copy', '--from', src], { dir: d1.dir, env });
  assert.equal(usage.code, 1);
  assert.match(usage.stderr, /usage: bedrock-sso-proxy db copy --from URL --to URL/);
});
