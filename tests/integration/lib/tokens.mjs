// Helpers for the token tests: a BLAKE2b (RFC 7693) to compute the hash the
// daemon stores for refresh tokens and API keys (libsodium's unkeyed
// crypto_generichash, 32 bytes), direct access to the daemon's database
// (SQLite through node:sqlite, PostgreSQL through lib/pg.mjs, the same
// calls for both), and small JWT utilities.
//
// Sessions (token families with a refresh token) are only created by the
// login flow, which is a later issue; until then the tests seed them in the
// database the way tokens_session_new() does.
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { PG_PASSWORD, PgDatabase, lockTable } from './pg.mjs';

// ------------------------------------------------------------ BLAKE2b

const MASK = (1n << 64n) - 1n;
const IV = [
  0x6a09e667f3bcc908n, 0xbb67ae8584caa73bn, 0x3c6ef372fe94f82bn, 0xa54ff53a5f1d36f1n,
  0x510e527fade682d1n, 0x9b05688c2b3e6c1fn, 0x1f83d9abfb41bd6bn, 0x5be0cd19137e2179n,
];
const SIGMA = [
  [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
  [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
  [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
  [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
  [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
  [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
  [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
  [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
  [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
  [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
];
const rotr = (x, n) => ((x >> n) | (x << (64n - n))) & MASK;

function compress(h, block, t, last) {
  const v = [...h, ...IV];
  v[12] ^= t & MASK;
  v[13] ^= t >> 64n;
  if (last) v[14] ^= MASK;
  const m = [];
  for (let i = 0; i < 16; i++) m.push(block.readBigUInt64LE(i * 8));
  const g = (a, b, c, d, x, y) => {
    v[a] = (v[a] + v[b] + x) & MASK; v[d] = rotr(v[d] ^ v[a], 32n);
    v[c] = (v[c] + v[d]) & MASK; v[b] = rotr(v[b] ^ v[c], 24n);
    v[a] = (v[a] + v[b] + y) & MASK; v[d] = rotr(v[d] ^ v[a], 16n);
    v[c] = (v[c] + v[d]) & MASK; v[b] = rotr(v[b] ^ v[c], 63n);
  };
  for (let r = 0; r < 12; r++) {
    const s = SIGMA[r % 10];
    g(0, 4, 8, 12, m[s[0]], m[s[1]]);
    g(1, 5, 9, 13, m[s[2]], m[s[3]]);
    g(2, 6, 10, 14, m[s[4]], m[s[5]]);
    g(3, 7, 11, 15, m[s[6]], m[s[7]]);
    g(0, 5, 10, 15, m[s[8]], m[s[9]]);
    g(1, 6, 11, 12, m[s[10]], m[s[11]]);
    g(2, 7, 8, 13, m[s[12]], m[s[13]]);
    g(3, 4, 9, 14, m[s[14]], m[s[15]]);
  }
  for (let i = 0; i < 8; i++) h[i] ^= v[i] ^ v[i + 8];
}

/** Unkeyed BLAKE2b with an outlen-byte digest (libsodium crypto_generichash). */
export function blake2b(data, outlen = 32) {
  const input = Buffer.from(data);
  const h = [...IV];
  h[0] ^= 0x01010000n ^ BigInt(outlen);
  let t = 0n;
  let off = 0;
  const block = Buffer.alloc(128);
  while (input.length - off > 128) {
    input.copy(block, 0, off, off + 128);
    t += 128n;
    compress(h, block, t, false);
    off += 128;
  }
  block.fill(0);
  input.copy(block, 0, off);
  t += BigInt(input.length - off);
  compress(h, block, t, true);
  const out = Buffer.alloc(64);
  for (let i = 0; i < 8; i++) out.writeBigUInt64LE(h[i], i * 8);
  return out.subarray(0, outlen);
}

/** The hash the daemon stores for a bearer secret (crypto_hash_token). */
export const tokenHash = (token) => blake2b(Buffer.from(token, 'utf8'), 32);

// ------------------------------------------------------------ database

const require = createRequire(import.meta.url);
let sqlite;
export function sqliteModule() {
  if (!sqlite) {
    // node:sqlite warns once that it is experimental; that is all it says.
    const emit = process.emitWarning;
    process.emitWarning = (w, ...rest) => (String(w).includes('SQLite') ? undefined : emit.call(process, w, ...rest));
    try { sqlite = require('node:sqlite'); } finally { process.emitWarning = emit; }
  }
  return sqlite;
}

/** The default SQLite database of a daemon's dir. */
export const dbPath = (dir) => join(dir, 'state', 'proxy.db');

/**
 * The database a daemon in dir uses, from <dir>/config.yaml: {url, pg,
 * password, sqlitePath, kekFile}. Without a config (or a database.url in
 * it), the default SQLite file.
 */
export function daemonDb(dir) {
  let text = '';
  try { text = readFileSync(join(dir, 'config.yaml'), 'utf8'); } catch { /* none */ }
  let url;
  let password;
  let passwordFile;
  let kekFile;
  try {
    const c = JSON.parse(text);
    url = c?.database?.url;
    password = c?.database?.password;
    passwordFile = c?.database?.password_file;
    kekFile = c?.jwt?.kek_file;
  } catch {
    // YAML the test wrote itself: only what these keys look like there.
    url = /(?:sqlite|postgres(?:ql)?):\/\/[^\s"']+/.exec(text)?.[0];
    passwordFile = /password_file:\s*["']?([^\s"']+)/.exec(text)?.[1];
    kekFile = /kek_file:\s*["']?([^\s"']+)/.exec(text)?.[1];
  }
  url ??= `sqlite://${dbPath(dir)}`;
  const pg = /^postgres(ql)?:/.test(url);
  if (pg && password === undefined) {
    try { password = readFileSync(resolve(dir, passwordFile), 'utf8').replace(/\r?\n$/, ''); } catch { password = PG_PASSWORD; }
  }
  const sqlitePath = pg ? null : resolve(dir, url.replace(/^sqlite:\/\//, ''));
  return {
    url, pg, password, sqlitePath,
    kekFile: kekFile !== undefined ? resolve(dir, kekFile) : (pg ? null : `${sqlitePath}.kek`),
  };
}

/** The key-encryption key file of a daemon in dir (jwt.kek_file, else the file beside SQLite's). */
export const kekPath = (dir) => daemonDb(dir).kekFile;

/**
 * Run fn(db) on the daemon's database: node:sqlite's DatabaseSync (WAL;
 * waits up to 10 s for locks), or on PostgreSQL lib/pg.mjs's PgDatabase,
 * which takes the same calls and SQL (prepare(sql).get/all/run, exec).
 * opts.notify false: on PostgreSQL, the daemons are not told of the writes
 * (as before another writer's notification reaches them).
 */
export function withDb(dir, fn, { notify = true } = {}) {
  const where = daemonDb(dir);
  const db = where.pg ? new PgDatabase(where.url, where.password, { notify })
    : new (sqliteModule().DatabaseSync)(where.sqlitePath, { timeout: 10000 });
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

/**
 * Keep the daemon from writing table until release() (a promise): with
 * SQLite a write transaction of ours (the daemon waits, its loop blocked,
 * up to database.busy_timeout), with PostgreSQL a lock on the table (its
 * unit waits, the loop serving on). reads: with PostgreSQL also from
 * reading it (SQLite's readers never wait, in WAL mode).
 */
export async function holdWrites(dir, table, { reads = false } = {}) {
  const where = daemonDb(dir);
  if (where.pg) return lockTable(where.url, where.password, table, reads ? 'ACCESS EXCLUSIVE' : 'EXCLUSIVE');
  const db = new (sqliteModule().DatabaseSync)(where.sqlitePath, { timeout: 10000 });
  db.exec('BEGIN IMMEDIATE');
  return {
    async release() {
      db.exec('COMMIT');
      db.close();
    },
  };
}

/** Row counts of the tables an authentication must never write to. */
export function counts(dir) {
  const tables = ['users', 'api_keys', 'token_families', 'refresh_tokens', 'signing_keys'];
  const row = withDb(dir, (db) => db.prepare(`SELECT ${tables.map((t) => `(SELECT count(*) FROM ${t}) AS ${t}`).join(', ')}`).get());
  return Object.fromEntries(tables.map((t) => [t, Number(row[t])]));
}

/** Audit rows, oldest first, optionally only one event. */
export function auditRows(dir, event) {
  return withDb(dir, (db) => (event
    ? db.prepare('SELECT * FROM audit_log WHERE event = ? ORDER BY id').all(event)
    : db.prepare('SELECT * FROM audit_log ORDER BY id').all()));
}

/**
 * What shows whether anything was written to the daemon's database: the
 * size and modification time of SQLite's WAL (its log); on PostgreSQL a
 * digest of every table's rows (bsp_meta's change counter among them).
 */
export function dbFingerprint(dir) {
  const where = daemonDb(dir);
  if (where.pg) {
    return withDb(dir, (db) => {
      const tables = db.prepare("SELECT tablename AS t FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
        .all().map((r) => r.t);
      return db.prepare(`SELECT ${tables.map((t) => `(SELECT md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) FROM ${t} x) AS ${t}`)
        .join(', ')}`).get();
    });
  }
  // SQLite: every write goes to the log (-wal) first; the database file
  // itself also changes when the daemon's checkpointer copies the log
  // into it, which is no write of the daemon's.
  const out = {};
  for (const f of [`${where.sqlitePath}-wal`]) {
    try {
      const s = statSync(f, { bigint: true });
      out[basename(f)] = `${s.size} ${s.mtimeNs}`;
    } catch {
      out[basename(f)] = 'absent';
    }
  }
  return out;
}

const b64url = (buf) => Buffer.from(buf).toString('base64url');
export const newRefreshToken = () => `bsr_${b64url(randomBytes(32))}`;

/**
 * Seed a login session as tokens_session_new() makes it: the user (if new),
 * a token family and its first refresh token. Returns {sid, refresh, user}.
 */
export function seedSession(dir, { user = 'local:alice', email = 'alice@example.com', ttl = 86400 } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const sid = b64url(randomBytes(16));
  const refresh = newRefreshToken();
  withDb(dir, (db) => {
    db.exec('BEGIN IMMEDIATE');
    try {
      const [provider, ...rest] = user.split(':');
      db.prepare('INSERT INTO users (id, provider, subject, email, email_verified, name, groups, '
        + 'first_login, last_login) VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING')
        .run(user, provider, rest.join(':'), email, 'Alice', '["dev"]', now, now);
      db.prepare('INSERT INTO token_families (id, user_id, created, expires) VALUES (?, ?, ?, ?)')
        .run(sid, user, now, now + ttl);
      db.prepare('INSERT INTO refresh_tokens (hash, family_id, created, expires) VALUES (?, ?, ?, ?)')
        .run(tokenHash(refresh), sid, now, now + ttl);
      db.exec('COMMIT');
    } catch (e) {
      db.exec('ROLLBACK');
      throw e;
    }
  });
  return { sid, refresh, user };
}

// ------------------------------------------------------------ JWT bits

/** Decode a compact JWS's header and payload without verifying. */
export function decodeJwt(t) {
  const [h, p] = t.split('.');
  return { header: JSON.parse(Buffer.from(h, 'base64url')), payload: JSON.parse(Buffer.from(p, 'base64url')) };
}

/** A compact JWS from raw header/payload text and a raw signature part. */
export function rawJws(headerText, payloadText, sig = '') {
  return `${b64url(Buffer.from(headerText))}.${b64url(Buffer.from(payloadText))}.${sig}`;
}

export const nowSec = () => Math.floor(Date.now() / 1000);
