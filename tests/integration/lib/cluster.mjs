// Several daemons on one PostgreSQL, for the scale-out tests (scale-*.test.mjs):
//
//   const pg = await startPg();                  // tests/pg/pgctl: a server of the test's own
//   await pg.query('SELECT count(*) FROM usage'); // rows as arrays of strings (null for NULL), via psql
//   await pg.stop(); await pg.resume();           // the server down, then up again on the same port
//   const lb = await startLb();                   // round robin over the daemons, no stickiness
//   const c = await startCluster({ pg, lb, n: 3, config });  // n daemons, one KEK, public_url = lb.url
//   c.daemons[i].url; lb.log                      // which daemon served which request
//   const px = await startPgProxy(pg, { latencyMs: 300 });   // a TCP proxy in front of the server:
//   px.url; px.cutNextCommit(/INSERT INTO usage/) // latency, and a COMMIT whose answer never comes back
//   await c.stop(); await lb.close(); await pg.close();
//
// Every server started here is stopped at exit (pgctl stop), even when a test fails.
// (The PostgreSQL pieces overlap with lib/pg.mjs of the PostgreSQL runs of the whole
// suite; the two can share one once both have landed.)
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { bspBin, daemonEnv, prepareDir, SANITIZER_RE, startDaemon } from './daemon.mjs';
import { integrationDir, makeTempDir, removeDir, request } from './util.mjs';

export const PG_PASSWORD = 'bsp-test-password';
const PGCTL = join(integrationDir, '..', 'pg', 'pgctl');

function pgBindir() {
  if (process.env.BSP_PG_BINDIR) return process.env.BSP_PG_BINDIR;
  const base = '/usr/lib/postgresql';
  const versions = existsSync(base) ? readdirSync(base).filter((v) => existsSync(join(base, v, 'bin', 'postgres'))) : [];
  versions.sort((a, b) => Number(a) - Number(b));
  if (!versions.length) throw new Error('no PostgreSQL server found (install the Debian package postgresql)');
  return join(base, versions.at(-1), 'bin');
}

function run(file, args, { env = {}, timeoutMs = 60000 } = {}) {
  return new Promise((res, rej) => {
    execFile(file, args, { env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) {
        err.message += `\n${stderr}`;
        rej(err);
      } else res({ stdout, stderr });
    });
  });
}

const livePg = new Set();
process.on('exit', () => {
  for (const dir of livePg) {
    spawnSync(PGCTL, ['stop', dir], { stdio: 'ignore' });
    if (!process.env.BSP_KEEP_TMP) removeDir(dir);
  }
});

/**
 * A PostgreSQL server of the test's own: {url, port, dir, query(sql, db), stop(), resume(),
 * createDb(name), urlOf(db), close()}. URLs name 127.0.0.1 with sslmode=disable.
 */
export async function startPg() {
  const dir = makeTempDir('bsp-scale-pg-');
  chmodSync(dir, 0o755);
  livePg.add(dir);
  const { stdout } = await run(PGCTL, ['start', dir]);
  const base = stdout.trim();
  const port = Number(/:(\d+)\//.exec(base)[1]);
  const bindir = pgBindir();
  const asOwner = process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--']] : null;
  const pg = {
    dir,
    port,
    password: PG_PASSWORD,
    urlOf: (db = 'bsp') => `postgresql://bsp@127.0.0.1:${port}/${db}?sslmode=disable`,
    get url() { return pg.urlOf('bsp'); },
    up: true,
    /** Rows of a query (arrays of strings, null for NULL), run by psql over TCP. */
    async query(sql, db = 'bsp') {
      const { stdout: out } = await run(join(bindir, 'psql'), [
        '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-F', '\x1f', '-R', '\x1e', '-P', 'null=\x01',
        '-h', '127.0.0.1', '-p', String(port), '-U', 'bsp', '-d', db, '-c', sql,
      ], { env: { PGPASSWORD: PG_PASSWORD, PGCONNECT_TIMEOUT: '10' } });
      const body = out.replace(/\n$/, '');
      if (body === '') return [];
      return body.split('\x1e').map((r) => r.replace(/^\n/, '')).filter((r) => r !== '')
        .map((r) => r.split('\x1f').map((v) => (v === '\x01' ? null : v)));
    },
    /** The first column of the first row, as a number. */
    async value(sql, db) {
      const rows = await pg.query(sql, db);
      return rows.length ? Number(rows[0][0]) : null;
    },
    async createDb(name) {
      await pg.query(`CREATE DATABASE ${name}`, 'postgres');
      return pg.urlOf(name);
    },
    /** Stop the server (fast: sessions are cut); the files stay for resume(). */
    async stop() {
      await run(PGCTL, ['stop', dir]);
      pg.up = false;
    },
    /** Start the stopped server again, on the same port, with its data. */
    async resume() {
      const args = ['-D', join(dir, 'data'), '-l', join(dir, 'log'), '-w', '-t', '30', '-o', `-p ${port} -k ${dir}`, 'start'];
      if (asOwner) await run(asOwner[0], [...asOwner[1], join(bindir, 'pg_ctl'), ...args]);
      else await run(join(bindir, 'pg_ctl'), args);
      pg.up = true;
    },
    async close() {
      await run(PGCTL, ['stop', dir]).catch(() => {});
      livePg.delete(dir);
      removeDir(dir);
    },
  };
  return pg;
}

// ---------------------------------------------------------------- load balancer

/**
 * A round-robin HTTP load balancer on loopback, as a cloud one without stickiness: each request
 * (not connection) to the next daemon; a daemon that refuses the connection is skipped (the
 * request was not sent). lb.pick(req, next) may choose instead (an index); lb.log records
 * {method, path, backend, status}.
 */
export async function startLb() {
  const lb = { backends: [], next: 0, log: [], pick: null, url: null };
  const sockets = new Set();
  function forward(req, res, body, idx, tries) {
    const b = lb.backends[idx];
    const entry = { method: req.method, path: req.url, backend: idx, status: null, time: Date.now() };
    lb.log.push(entry);
    const headers = { ...req.headers, connection: 'close', 'x-forwarded-for': req.socket.remoteAddress };
    const up = http.request({ host: b.host, port: b.port, method: req.method, path: req.url, headers, agent: false }, (ur) => {
      entry.status = ur.statusCode;
      res.writeHead(ur.statusCode, ur.headers);
      ur.pipe(res);
      ur.on('error', () => res.destroy());
    });
    up.on('error', (e) => {
      if (e.code === 'ECONNREFUSED' && tries < lb.backends.length) {
        entry.status = 'refused';
        forward(req, res, body, (idx + 1) % lb.backends.length, tries + 1);
        return;
      }
      entry.status = 'error';
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end('bad gateway\n');
    });
    up.end(body);
  }
  const server = http.createServer((req, res) => {
    const parts = [];
    req.on('data', (c) => parts.push(c));
    req.on('end', () => {
      const rr = lb.next++ % lb.backends.length;
      const idx = lb.pick ? lb.pick(req, rr) ?? rr : rr;
      forward(req, res, Buffer.concat(parts), idx, 1);
    });
  });
  server.on('connection', (s) => { sockets.add(s); s.once('close', () => sockets.delete(s)); });
  await new Promise((res) => server.listen(0, '127.0.0.1', res));
  server.unref();
  lb.port = server.address().port;
  lb.url = `http://127.0.0.1:${lb.port}`;
  lb.setBackends = (daemons) => { lb.backends = daemons.map((d) => ({ host: '127.0.0.1', port: d.port })); };
  lb.request = (path, opts = {}) => request(new URL(path, lb.url).href, opts);
  lb.close = async () => {
    for (const s of sockets) s.destroy();
    await new Promise((res) => server.close(() => res()));
  };
  return lb;
}

// ---------------------------------------------------------------- the daemons

/** Files every daemon of a cluster shares: the KEK and the database password. */
export function sharedFiles(dir = makeTempDir('bsp-shared-')) {
  const kek = join(dir, 'kek');
  const pw = join(dir, 'pgpw');
  if (!existsSync(kek)) writeFileSync(kek, randomBytes(32), { mode: 0o600 });
  writeFileSync(pw, `${PG_PASSWORD}\n`, { mode: 0o600 });
  return { dir, kek, pw };
}

/** The configuration of a cluster's daemon (merged under over). */
export function clusterConfig({ url, shared, publicUrl, over = {} }) {
  const base = {
    server: publicUrl ? { public_url: publicUrl } : {},
    database: { url, password_file: shared.pw, pool_size: 3, timeout: 5 },
    jwt: { kek_file: shared.kek, issuer: 'https://bsp.test' },
  };
  const out = { ...base };
  for (const [k, v] of Object.entries(over)) {
    out[k] = typeof v === 'object' && v !== null && !Array.isArray(v) && out[k] ? { ...out[k], ...v } : v;
  }
  return out;
}

/** Wait until GET /health/ready answers 200 (bounded). */
export async function waitReady(d, timeoutMs = 30000) {
  const end = Date.now() + timeoutMs;
  let last = null;
  for (;;) {
    try {
      last = await d.request('/health/ready', { timeoutMs: 2000 });
      if (last.status === 200) return;
    } catch { /* not yet */ }
    if (Date.now() > end) throw new Error(`${d.url}/health/ready still ${last?.status}: ${last?.text?.()}`);
    await delay(50);
  }
}

/**
 * n daemons on pg (or another database's url), each in a directory of its own, with the same
 * KEK, password file, issuer and public URL (the load balancer's), ready (/health/ready).
 * Returns {daemons, shared, lb, config, stop()}; lb.backends are the daemons.
 */
export async function startCluster({
  pg, url, lb, n = 3, config = {}, env = {}, args = [], shared = sharedFiles(), together = false,
}) {
  const dbUrl = url ?? pg.url;
  const cfg = clusterConfig({ url: dbUrl, shared, publicUrl: lb?.url, over: config });
  const start = () => startDaemon({ config: cfg, env: { AWS_EC2_METADATA_DISABLED: 'true', ...env }, args });
  // together: all at once on what may be an empty database (one of them migrates and
  // makes the signing key); else one after the other.
  const daemons = [];
  if (together) daemons.push(...await Promise.all(Array.from({ length: n }, start)));
  else for (let i = 0; i < n; i++) daemons.push(await start());
  await Promise.all(daemons.map((d) => waitReady(d)));
  if (lb) lb.setBackends(daemons);
  return {
    daemons,
    shared,
    lb,
    config: cfg,
    async stop() {
      let err = null;
      for (const d of daemons) {
        if (d.exitStatus) continue;
        try { await d.stop(); } catch (e) { err ??= e; }
      }
      if (err) throw err;
    },
  };
}

/**
 * Spawn the daemon with cfg and wait (bounded) for it to exit by itself: {code, signal, stderr}.
 * For a daemon that must refuse to run.
 */
export async function runDaemonToExit(cfg, { timeoutMs = 30000, env = {} } = {}) {
  const dir = makeTempDir('bsp-it-');
  const cfgPath = prepareDir(dir, { config: cfg });
  const child = spawn(bspBin(), ['-d', '-f', cfgPath], { cwd: dir, env: daemonEnv(dir, env), stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (s) => { stderr += s; });
  const r = await new Promise((res) => {
    const t = setTimeout(() => { child.kill('SIGKILL'); res({ code: null, signal: 'timeout' }); }, timeoutMs);
    child.once('exit', (code, signal) => { clearTimeout(t); res({ code, signal }); });
  });
  assert.doesNotMatch(stderr, SANITIZER_RE, `sanitizer report:\n${stderr}`);
  removeDir(dir);
  return { ...r, stderr };
}

// ---------------------------------------------------------------- timing

/**
 * Poll probe(d) (async, true when the change is seen) on every daemon at once, every few
 * milliseconds, from now until each sees it; resolves the delays in ms since t0, one per
 * daemon. Rejects after timeoutMs.
 */
export async function seenWithin(daemons, probe, { t0 = Date.now(), timeoutMs = 5000 } = {}) {
  return Promise.all(daemons.map(async (d, i) => {
    for (;;) {
      if (await probe(d, i)) return Date.now() - t0;
      if (Date.now() - t0 > timeoutMs) throw new Error(`daemon ${i} (${d.url}) did not see the change within ${timeoutMs} ms`);
      await delay(5);
    }
  }));
}

// ---------------------------------------------------------------- a proxy in front of PostgreSQL

/**
 * A TCP proxy between the daemons and pg: every chunk waits latencyMs each way (in order);
 * cutNextCommit(re) makes the next transaction whose statements match re lose its COMMIT's
 * answer: the COMMIT reaches the server and is done there, then the daemon's connection is cut
 * before the answer comes back (an unacknowledged commit). Speaks just enough of the wire
 * protocol (v3, no TLS) to see statements, Parse/Bind and ReadyForQuery.
 */
export async function startPgProxy(pg, { latencyMs = 0 } = {}) {
  const px = { latencyMs, cuts: 0, conns: new Set(), cutRe: null, onCut: null };
  const server = net.createServer((client) => {
    const upstream = net.connect(pg.port, '127.0.0.1');
    const conn = { client, upstream, stmts: new Map(), txnMatch: false, hold: false, dead: false };
    px.conns.add(conn);
    const kill = () => {
      if (conn.dead) return;
      conn.dead = true;
      client.destroy();
      upstream.destroy();
      px.conns.delete(conn);
    };
    client.on('error', kill);
    upstream.on('error', kill);
    client.on('close', kill);
    upstream.on('close', kill);
    // Delivery in order, each chunk latencyMs after it arrived.
    const pipe = (to) => {
      let last = 0;
      return (chunk) => {
        const at = Math.max(Date.now() + px.latencyMs, last);
        last = at;
        const send = () => { if (!conn.dead) to.write(chunk); };
        if (at <= Date.now()) send();
        else setTimeout(send, at - Date.now());
      };
    };
    const toServer = pipe(upstream);
    const toClient = pipe(client);
    let cbuf = Buffer.alloc(0);
    let started = false;
    client.on('data', (chunk) => {
      cbuf = Buffer.concat([cbuf, chunk]);
      for (;;) {
        if (!started) {
          if (cbuf.length < 8) break;
          const len = cbuf.readUInt32BE(0);
          if (cbuf.length < len) break;
          cbuf = cbuf.subarray(len);
          started = true;
          continue;
        }
        if (cbuf.length < 5) break;
        const len = cbuf.readUInt32BE(1);
        if (cbuf.length < 1 + len) break;
        inspect(conn, String.fromCharCode(cbuf[0]), cbuf.subarray(5, 1 + len));
        cbuf = cbuf.subarray(1 + len);
      }
      toServer(chunk);
    });
    let sbuf = Buffer.alloc(0);
    upstream.on('data', (chunk) => {
      if (!conn.hold) {
        toClient(chunk);
        return;
      }
      // Holding the answer of a COMMIT to cut: wait for ReadyForQuery, then cut.
      sbuf = Buffer.concat([sbuf, chunk]);
      while (sbuf.length >= 5) {
        const len = sbuf.readUInt32BE(1);
        if (sbuf.length < 1 + len) break;
        const type = String.fromCharCode(sbuf[0]);
        sbuf = sbuf.subarray(1 + len);
        if (type === 'Z') {
          px.cuts++;
          px.onCut?.();
          kill();
          return;
        }
      }
    });
  });
  const cstr = (buf, off) => {
    const end = buf.indexOf(0, off);
    return [buf.toString('utf8', off, end), end + 1];
  };
  function inspect(conn, type, body) {
    if (type === 'Q') {
      const [q] = cstr(body, 0);
      if (/^\s*BEGIN/i.test(q)) conn.txnMatch = false;
      else if (/COMMIT\s*;?\s*$/i.test(q) && conn.txnMatch && px.cutRe) {
        // The server does it; its answer never comes back.
        px.cutRe = null;
        conn.hold = true;
      } else if (px.cutRe?.test(q)) conn.txnMatch = true;
    } else if (type === 'P') {
      const [name, off] = cstr(body, 0);
      const [q] = cstr(body, off);
      conn.stmts.set(name, q);
      if (px.cutRe?.test(q)) conn.txnMatch = true;
    } else if (type === 'B') {
      const [, off] = cstr(body, 0);
      const [name] = cstr(body, off);
      if (px.cutRe?.test(conn.stmts.get(name) ?? '')) conn.txnMatch = true;
    }
  }
  await new Promise((res) => server.listen(0, '127.0.0.1', res));
  server.unref();
  px.port = server.address().port;
  px.url = `postgresql://bsp@127.0.0.1:${px.port}/bsp?sslmode=disable&gssencmode=disable`;
  px.cutNextCommit = (re) => { px.cutRe = re; };
  px.close = async () => {
    for (const c of px.conns) { c.client.destroy(); c.upstream.destroy(); }
    await new Promise((res) => server.close(() => res()));
  };
  return px;
}
