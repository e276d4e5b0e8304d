// PostgreSQL for the integration tests.
//
// With BSP_TEST_DB=pg (make check's NAME.pgtest runs), every daemon that
// lib/daemon.mjs starts without a database.url of its own gets a fresh
// database in one throw-away server that this test process starts at its
// first use (tests/pg/pgctl, into a temporary directory) and stops when it
// exits: at a normal exit from the exit hook, and when the process crashes
// or is killed by a watchdog that waits for it to be gone.
//
//   const c = cluster();                 // this process's server (started once)
//   const db = c.createDatabase();       // a fresh, empty database: its name
//   c.url(db)                            // postgresql://bsp@127.0.0.1:PORT/NAME
//   pgDaemonConfig(dir, { database: db, kekFile })   // a daemon's database/jwt keys
//   await c.stop(); await c.start();     // down and up again mid-test (faults)
//   await c.stop({ mode: 'immediate' }); // as if it crashed
//
// The tests read and seed the daemon's database synchronously (node:sqlite
// for SQLite); PgDatabase offers the same small interface on PostgreSQL,
// through a psql session per database that lib/psql-worker.mjs keeps open:
// see its comment.
import { execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { MessageChannel, Worker, receiveMessageOnPort } from 'node:worker_threads';
import { makeTempDir, removeDir, repoTop } from './util.mjs';

const execFileP = promisify(execFile);

/** Is this run on PostgreSQL (BSP_TEST_DB=pg)? */
export const onPostgres = process.env.BSP_TEST_DB === 'pg';
/** The backend under test: 'pg' or 'sqlite'. */
export const backend = onPostgres ? 'pg' : 'sqlite';

/**
 * Options for node:test's test() of a test that only means something with
 * SQLite: skipped on PostgreSQL, with the reason in the TAP output.
 */
export const sqliteOnly = (reason) => (onPostgres ? { skip: `SQLite only: ${reason}` } : {});

/**
 * Daemons on PostgreSQL count rate limits in fixed one-minute windows of the
 * wall clock (yaml(5), rate_limits): a test that fills a window waits here,
 * when it would start within margin seconds of a window's end, for the next.
 */
export async function clearOfWindowEnd(margin = 5) {
  if (!onPostgres) return;
  const into = (Date.now() / 1000) % 60;
  if (into > 60 - margin) await new Promise((res) => { setTimeout(res, Math.ceil((60 - into) * 1000) + 50); });
}

/**
 * The Retry-After a daemon on PostgreSQL gives for a full rate-limit window:
 * the rest of the window, [low, high] for a call answered now (one second
 * either side for the rounding and the call's own time).
 */
export function windowRest() {
  const rest = 60 - (Date.now() / 1000) % 60;
  return [Math.max(1, Math.floor(rest) - 1), Math.ceil(rest) + 1];
}

/**
 * A write of another process (an admin command, another daemon, the test's
 * own) reaches a daemon on SQLite by the very next request (a miss looks
 * for news first); on PostgreSQL once the database's notification is in
 * and the daemon has read its state again, a few milliseconds later
 * (bedrock-sso-proxy(8), COMMANDS). check() makes the request; on
 * PostgreSQL it is made again until ok(result), for at most timeoutMs.
 * Returns the last result, for the caller's assertions.
 */
export async function noticed(check, ok, { timeoutMs = 2000 } = {}) {
  let r = await check();
  if (!onPostgres) return r;
  const end = Date.now() + timeoutMs;
  while (!ok(r) && Date.now() < end) {
    await new Promise((res) => { setTimeout(res, 20); });
    r = await check();
  }
  return r;
}

/** The password of the role bsp in every server pgctl starts. */
export const PG_PASSWORD = 'bsp-test-password';

const pgctl = join(repoTop, 'tests', 'pg', 'pgctl');

/** The PostgreSQL programs: $BSP_PG_BINDIR, else the newest /usr/lib/postgresql/N/bin. */
export function pgBinDir() {
  if (process.env.BSP_PG_BINDIR) return process.env.BSP_PG_BINDIR;
  let best = null;
  let bestv = -1;
  try {
    for (const v of readdirSync('/usr/lib/postgresql')) {
      const d = join('/usr/lib/postgresql', v, 'bin');
      if (Number(v) > bestv && existsSync(join(d, 'postgres'))) { best = d; bestv = Number(v); }
    }
  } catch { /* none */ }
  if (!best) throw new Error('no PostgreSQL server found (install the Debian package postgresql)');
  return best;
}

/** The environment psql and pgctl run with: nothing of the parent's PG* settings. */
function pgEnv(extra = {}) {
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C', PGCONNECT_TIMEOUT: '10', PGCLIENTENCODING: 'UTF8' };
  for (const k of ['BSP_BUILDDIR', 'BSP_PG_BINDIR', 'BSP_PG_TEMPLATE']) if (process.env[k]) env[k] = process.env[k];
  return { ...env, ...extra };
}

const liveClusters = new Set();
const SPARE_DATABASES = 2;
// FILE_COPY: a few files copied, rather than the template written to the WAL.
const createSql = (name) => `CREATE DATABASE ${name} STRATEGY FILE_COPY`;

function cleanupAtExit() {
  const keep = Boolean(process.env.BSP_KEEP_TMP) || (process.exitCode ?? 0) !== 0;
  for (const c of liveClusters) c.destroySync({ keep });
}
process.on('exit', cleanupAtExit);

/** A PostgreSQL server of this test process (tests/pg/pgctl). */
export class Cluster {
  constructor(dir, port) {
    this.dir = dir;
    this.port = port;
    this.host = '127.0.0.1';
    this.password = PG_PASSWORD;
    this.running = true;
    this.databases = 0;
    this.spares = []; // databases made ahead (takeDatabase)
    this.making = 0;
    this.watchdog = null;
  }

  /** The URL of database db (as pgctl prints it: no password). */
  url(db = 'bsp') {
    return `postgresql://bsp@${this.host}:${this.port}/${db}`;
  }

  /** Run a psql script on database db; returns its output (tuples only, unaligned). */
  psql(db, script) {
    return runPsql(this.url(db), this.password, script);
  }

  /** Make an empty database; returns its name. */
  createDatabase(name = this.newName()) {
    if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`createDatabase: ${name} is not a plain name`);
    this.psql('postgres', `${createSql(name)};\n`);
    return name;
  }

  newName() {
    return `bsp_${++this.databases}_${randomBytes(3).toString('hex')}`;
  }

  /**
   * An empty database, from the few made ahead in the background (a
   * CREATE DATABASE takes a few hundred ms on a busy machine); made now
   * when there is none.
   */
  takeDatabase() {
    const name = this.spares.shift() ?? this.createDatabase();
    this.refill();
    return name;
  }

  refill() {
    while (this.running && liveClusters.has(this) && this.spares.length + this.making < SPARE_DATABASES) {
      const name = this.newName();
      this.making++;
      const child = execFile(join(pgBinDir(), 'psql'), ['-X', '-q', '-d', this.url('postgres'), '-c', createSql(name)],
        { env: pgEnv({ PGPASSWORD: this.password, PGAPPNAME: 'bsp-tests' }) }, (err) => {
          this.making--;
          if (!err && this.running && liveClusters.has(this)) this.spares.push(name);
        });
      // Never what keeps this process alive.
      child.unref();
      for (const s of [child.stdin, child.stdout, child.stderr]) s?.unref?.();
    }
  }

  /** Drop database db (no one may be connected). */
  dropDatabase(db) {
    this.psql('postgres', `DROP DATABASE IF EXISTS ${db};\n`);
  }

  /** Stop the server (mode 'fast', or 'immediate': as if it crashed); its data stays. */
  async stop({ mode = 'fast' } = {}) {
    this.running = false;
    await execFileP(pgctl, ['stop', this.dir, mode], { env: pgEnv() });
  }

  /** Start it again after stop(): the same data, on the same port. */
  async start() {
    await execFileP(pgctl, ['resume', this.dir], { env: pgEnv() });
    this.running = true;
  }

  /** Stop it for good and remove its directory (unless keep). */
  destroySync({ keep = false } = {}) {
    if (!liveClusters.has(this)) return;
    liveClusters.delete(this);
    if (this.watchdog) try { process.kill(-this.watchdog, 'SIGKILL'); } catch { /* gone */ }
    try { execFileSync(pgctl, ['stop', this.dir], { env: pgEnv(), stdio: 'ignore' }); } catch { /* best effort */ }
    this.running = false;
    if (keep) process.stderr.write(`# pg.mjs: kept the PostgreSQL server's directory: ${this.dir}\n`);
    else try { removeDir(this.dir); } catch { /* best effort */ }
  }
}

/**
 * Start a PostgreSQL server (synchronously: well under a second once
 * pgctl's template exists). It is stopped and its directory removed when
 * this process exits, or by a watchdog if the process dies without exiting
 * (a signal, SIGKILL, the harness's timeout).
 */
export function startCluster() {
  const dir = makeTempDir('bsp-pg-');
  chmodSync(dir, 0o755); // pgctl runs the server as "postgres" when we are root
  let url;
  try {
    url = execFileSync(pgctl, ['start', dir], { env: pgEnv(), encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch (e) {
    try { execFileSync(pgctl, ['stop', dir], { env: pgEnv(), stdio: 'ignore' }); } catch { /* best effort */ }
    removeDir(dir);
    throw new Error(`tests/pg/pgctl start failed: ${String(e.stderr ?? e.message).trim()}`);
  }
  const c = new Cluster(dir, Number(new URL(url).port));
  liveClusters.add(c);
  // The watchdog: once this process is gone (its end of the pipe closed,
  // even while it is a zombie), stop the server and remove its directory.
  const keep = process.env.BSP_KEEP_TMP ? 1 : 0;
  const w = spawn('/bin/sh', ['-c', 'cat >/dev/null; "$1" stop "$2"; [ "$3" = 1 ] || rm -rf "$2"',
    'pg-watchdog', pgctl, dir, String(keep)], { detached: true, stdio: ['pipe', 'ignore', 'ignore'], env: pgEnv() });
  w.unref();
  w.stdin.unref?.();
  c.watchdog = w.pid;
  return c;
}

let shared = null;
/** This process's server, started at the first call. */
export function cluster() {
  if (!shared || !liveClusters.has(shared)) shared = startCluster();
  return shared;
}

/** Write a key-encryption key file (32 random bytes, 0600) unless it exists; returns path. */
export function writeKek(path) {
  if (!existsSync(path)) writeFileSync(path, randomBytes(32), { mode: 0o600, flag: 'wx' });
  return path;
}

const dirDatabases = new Map(); // daemon dir → database name

/** The database of a daemon's directory on this process's server (made at the first call). */
export function databaseFor(dir) {
  if (!dirDatabases.has(dir)) dirDatabases.set(dir, cluster().takeDatabase());
  return dirDatabases.get(dir);
}

/**
 * The database and jwt keys of a daemon in dir on PostgreSQL: database (a
 * name; default: the dir's own, see databaseFor) on c, the password in
 * <dir>/pg-password, the KEK in kekFile (default <dir>/kek, made if
 * missing; daemons sharing a database need the same one).
 */
export function pgDaemonConfig(dir, { c = cluster(), database, kekFile } = {}) {
  const db = database ?? databaseFor(dir);
  const pw = join(dir, 'pg-password');
  writeFileSync(pw, `${c.password}\n`, { mode: 0o600 });
  chmodSync(pw, 0o600);
  return {
    database: { url: c.url(db), password_file: pw },
    jwt: { kek_file: kekFile ?? writeKek(join(dir, 'kek')) },
  };
}

// ------------------------------------------------------------ psql

// Scripts go to lib/psql-worker.mjs, which keeps a psql session per
// database open; this thread waits for the answer (the tests' reads and
// writes are synchronous, as node:sqlite's are).
let bridge = null;
function psqlBridge() {
  if (bridge) return bridge;
  const { port1, port2 } = new MessageChannel();
  const shared = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(new URL('./psql-worker.mjs', import.meta.url), {
    workerData: { port: port2, shared, bin: join(pgBinDir(), 'psql'), env: pgEnv() }, transferList: [port2],
  });
  worker.unref();
  port1.unref();
  bridge = { port: port1, shared };
  return bridge;
}

function runPsql(url, password, script) {
  const b = psqlBridge();
  Atomics.store(b.shared, 0, 0);
  b.port.postMessage({ url, password, script });
  if (Atomics.wait(b.shared, 0, 0, 120000) === 'timed-out') {
    throw new Error(`psql: no answer in 120 s\nscript:\n${script.slice(0, 2000)}`);
  }
  const { out, error } = receiveMessageOnPort(b.port).message;
  if (error !== null) {
    const err = new Error(`psql: ${error}\nscript:\n${script.slice(0, 2000)}`);
    err.stderr = error;
    throw err;
  }
  return out;
}

/**
 * Hold a lock on table in database url, from a psql session of its own,
 * until release() (a promise): mode EXCLUSIVE lets others read it but not
 * write it. Resolves once the lock is held.
 */
export async function lockTable(url, password, table, mode = 'EXCLUSIVE') {
  const child = spawn(join(pgBinDir(), 'psql'), ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', url],
    { env: pgEnv({ PGPASSWORD: password, PGAPPNAME: 'bsp-tests-lock' }), stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const exited = new Promise((res) => child.once('exit', (code) => res(code)));
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8').on('data', (x) => { err += x; });
  child.stdin.write(`BEGIN;\nLOCK TABLE ${table} IN ${mode} MODE;\n\\echo locked\n`);
  await new Promise((res, rej) => {
    child.stdout.on('data', (x) => { out += x; if (out.includes('locked')) res(); });
    exited.then((code) => rej(new Error(`lockTable: psql exited ${code}: ${err}`)));
  });
  return {
    async release() {
      child.stdin.end('COMMIT;\n');
      const code = await exited;
      if (code !== 0) throw new Error(`lockTable: psql exited ${code}: ${err}`);
    },
  };
}

/** A literal for one parameter (what node:sqlite would bind). */
export function sqlLiteral(v) {
  if (v === null || v === undefined) return 'NULL';
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new TypeError(`sqlLiteral: ${v} is not a finite number`);
    return String(v);
  }
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'string') {
    if (v.includes('\0')) throw new TypeError('sqlLiteral: a NUL in a string');
    return `E'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
  }
  if (v instanceof Uint8Array) return `'\\x${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex')}'::bytea`;
  throw new TypeError(`sqlLiteral: cannot bind a ${typeof v}`);
}

/**
 * SQLite's SQL of the tests in PostgreSQL's: each ? (outside quotes) the
 * next parameter as a literal, INSERT OR IGNORE as ON CONFLICT DO NOTHING,
 * the trailing semicolons gone.
 */
export function translateSql(sql, params = []) {
  let out = '';
  let n = 0;
  for (let i = 0; i < sql.length; i++) {
    const ch = sql[i];
    if (ch === "'" || ch === '"') {
      const end = sql.indexOf(ch, i + 1);
      if (end < 0) throw new Error(`translateSql: unterminated quote in ${sql}`);
      out += sql.slice(i, end + 1);
      i = end;
    } else if (ch === '?') {
      if (/[0-9]/.test(sql[i + 1] ?? '')) throw new Error('translateSql: numbered ?NNN parameters are not supported');
      if (n >= params.length) throw new Error(`translateSql: more ? than parameters in ${sql}`);
      out += sqlLiteral(params[n++]);
    } else {
      out += ch;
    }
  }
  if (n !== params.length) throw new Error(`translateSql: ${params.length} parameters for ${n} ? in ${sql}`);
  out = out.replace(/;\s*$/, '').trimEnd();
  if (/^\s*INSERT\s+OR\s+IGNORE\s+/i.test(out)) out = `${out.replace(/^\s*INSERT\s+OR\s+IGNORE\s+/i, 'INSERT ')} ON CONFLICT DO NOTHING`;
  if (/^\s*(INSERT|REPLACE)\s+OR\s+/i.test(out) || /^\s*REPLACE\s/i.test(out)) {
    throw new Error(`translateSql: SQLite's ${out.split(/\s+/).slice(0, 3).join(' ')} has no PostgreSQL form here`);
  }
  return out;
}

// A unit that changed the database tells the daemons as store_notify()
// does (store-pg.c): the change counter and a NOTIFY, with the commit. A
// write of the tests is another writer's, which SQLite's daemons see by
// PRAGMA data_version.
const NOTIFY_SQL = "DO $$ BEGIN IF to_regclass('bsp_meta') IS NOT NULL THEN "
  + "UPDATE bsp_meta SET value = value + 1 WHERE key = 'changes'; END IF; END $$;\n"
  + 'NOTIFY bsp_changes;\n';
const MARK = '\x1e-bsp-mark-';

/**
 * The part of node:sqlite's DatabaseSync the tests use, on PostgreSQL:
 * prepare(sql).get/all/run(...params) and exec(sql), with SQLite's SQL
 * (? parameters, INSERT OR IGNORE). Each statement is one psql script
 * (runPsql): a query's rows come back as row_to_json, typed by \gdesc (bytea as a
 * Buffer, integers as numbers); a write bumps the daemons' change counter
 * and notifies them in its transaction (unless notify is false: a write
 * they have not heard of yet). BEGIN ... COMMIT through exec()
 * collects the writes in between and sends them as one transaction at
 * COMMIT (ROLLBACK drops them); a query in between is refused.
 */
export class PgDatabase {
  constructor(url, password = PG_PASSWORD, { notify = true } = {}) {
    this.url = url;
    this.password = password;
    this.notify = notify ? NOTIFY_SQL : ''; // notify: false, a write the daemons do not hear of
    this.pending = null; // the writes of an open BEGIN
  }

  prepare(sql) {
    return {
      get: (...p) => this.query(sql, p)[0],
      all: (...p) => this.query(sql, p),
      run: (...p) => this.write(translateSql(sql, p)),
    };
  }

  exec(sql) {
    const s = sql.trim().replace(/;\s*$/, '');
    if (/^BEGIN(\s+(IMMEDIATE|DEFERRED|EXCLUSIVE))?(\s+TRANSACTION)?$/i.test(s)) {
      if (this.pending) throw new Error('PgDatabase: BEGIN inside BEGIN');
      this.pending = [];
    } else if (/^(COMMIT|END)(\s+TRANSACTION)?$/i.test(s)) {
      const w = this.pending;
      this.pending = null;
      if (!w) throw new Error('PgDatabase: COMMIT without BEGIN');
      if (w.length) this.send(w);
    } else if (/^ROLLBACK(\s+TRANSACTION)?$/i.test(s)) {
      this.pending = null;
    } else {
      this.write(translateSql(sql));
    }
  }

  close() { this.pending = null; }

  write(stmt) {
    if (this.pending) {
      this.pending.push(stmt);
      return { changes: undefined, lastInsertRowid: undefined };
    }
    return { changes: this.send([stmt]), lastInsertRowid: undefined };
  }

  /** Run writes in one transaction with the notification; the last one's row count. */
  send(stmts) {
    const out = runPsql(this.url, this.password,
      `BEGIN;\n${stmts.map((s) => `${s};\n`).join('')}\\echo ${MARK}:ROW_COUNT\n${this.notify}COMMIT;\n`);
    const m = new RegExp(`${MARK}(\\d+)`).exec(out);
    return m ? Number(m[1]) : undefined;
  }

  query(sql, params) {
    if (this.pending) throw new Error('PgDatabase: a query between BEGIN and COMMIT is not supported (writes are sent at COMMIT)');
    const q = translateSql(sql, params);
    const wrapped = /^\s*(SELECT|WITH|VALUES|TABLE)\b/i.test(q)
      ? `SELECT row_to_json(bsp_row_) FROM (${q}) bsp_row_`
      : `WITH bsp_row_ AS (${q}) SELECT row_to_json(bsp_row_) FROM bsp_row_`; // INSERT/UPDATE/DELETE ... RETURNING
    const writes = !/^\s*(SELECT|VALUES|TABLE)\b/i.test(q);
    const out = runPsql(this.url, this.password,
      `${q} \\gdesc\n\\echo ${MARK}\n${writes ? 'BEGIN;\n' : ''}${wrapped};\n${writes ? `${this.notify}COMMIT;\n` : ''}`);
    const at = out.indexOf(`${MARK}\n`);
    if (at < 0) throw new Error(`PgDatabase: unexpected psql output: ${out.slice(0, 500)}`);
    const bytea = new Set();
    for (const line of out.slice(0, at).split('\n')) {
      const [name, type] = line.split('\x1f');
      if (type === 'bytea') bytea.add(name);
    }
    const rows = [];
    for (const line of out.slice(at + MARK.length + 1).split('\n')) {
      if (!line) continue;
      const row = JSON.parse(line);
      for (const k of bytea) {
        if (typeof row[k] === 'string') row[k] = Buffer.from(row[k].replace(/^\\x/, ''), 'hex');
      }
      rows.push(row);
    }
    return rows;
  }
}
