// Helpers for the token tests: a BLAKE2b (RFC 7693) to compute the hash the
// daemon stores for refresh tokens and API keys (libsodium's unkeyed
// crypto_generichash, 32 bytes), direct access to the daemon's SQLite
// database (node:sqlite), and small JWT utilities.
//
// Sessions (token families with a refresh token) are only created by the
// login flow, which is a later issue; until then the tests seed them in the
// database the way tokens_session_new() does.
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';

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
function sqliteModule() {
  if (!sqlite) {
    // node:sqlite warns once that it is experimental; that is all it says.
    const emit = process.emitWarning;
    process.emitWarning = (w, ...rest) => (String(w).includes('SQLite') ? undefined : emit.call(process, w, ...rest));
    try { sqlite = require('node:sqlite'); } finally { process.emitWarning = emit; }
  }
  return sqlite;
}

export const dbPath = (dir) => join(dir, 'state', 'proxy.db');

/** Run fn(db) on the daemon's database (WAL; waits up to 10 s for locks). */
export function withDb(dir, fn) {
  const { DatabaseSync } = sqliteModule();
  const db = new DatabaseSync(dbPath(dir), { timeout: 10000 });
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

/** Row counts of the tables an authentication must never write to. */
export function counts(dir) {
  return withDb(dir, (db) => {
    const out = {};
    for (const t of ['users', 'api_keys', 'token_families', 'refresh_tokens', 'signing_keys']) {
      out[t] = Number(db.prepare(`SELECT count(*) AS n FROM ${t}`).get().n);
    }
    return out;
  });
}

/** Audit rows, oldest first, optionally only one event. */
export function auditRows(dir, event) {
  return withDb(dir, (db) => (event
    ? db.prepare('SELECT * FROM audit_log WHERE event = ? ORDER BY id').all(event)
    : db.prepare('SELECT * FROM audit_log ORDER BY id').all()));
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
      db.prepare('INSERT OR IGNORE INTO users (id, provider, subject, email, email_verified, name, groups, '
        + 'first_login, last_login) VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?)')
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
