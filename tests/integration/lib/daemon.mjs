// Start, drive and stop the real bedrock-sso-proxy daemon for one test.
//
//   const d = await startDaemon({ config: { aws: { region: 'us-east-1' } } });
//   const r = await d.fetch('/health');
//   await d.stop();            // asserts clean exit, no sanitizer report, removes d.dir
//
// Binary: $BSP_BIN, else <repo top>/bedrock-sso-proxy.  Every child is tracked and
// SIGKILLed (whole process group) if the test process exits without stopping it.
//
// The database: SQLite in <dir>/state/proxy.db, or with BSP_TEST_DB=pg a fresh
// PostgreSQL database of its own (lib/pg.mjs), unless the config names one.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { onPostgres, pgDaemonConfig } from './pg.mjs';
import { deepMerge, makeTempDir, parseHostPort, removeDir, repoTop, request } from './util.mjs';

export const SANITIZER_RE = /AddressSanitizer|LeakSanitizer|runtime error:|UndefinedBehaviorSanitizer/;
const DEFAULT_ASAN = 'detect_leaks=1:abort_on_error=0';
const DEFAULT_UBSAN = 'print_stacktrace=1:halt_on_error=1';

/** Path of the daemon binary under test. */
export const bspBin = () => process.env.BSP_BIN || join(repoTop, 'bedrock-sso-proxy');

// ------------------------------------------------------------ cleanup on exit

const liveChildren = new Set();
const ownedDirs = new Map(); // dir → {keep: boolean}

function killGroup(child, sig = 'SIGKILL') {
  if (child.exitCode !== null || child.signalCode !== null) return;
  try { process.kill(-child.pid, sig); } catch { try { child.kill(sig); } catch { /* gone */ } }
}

function cleanupAtExit() {
  for (const c of liveChildren) killGroup(c);
  liveChildren.clear();
  const keepAll = Boolean(process.env.BSP_KEEP_TMP) || (process.exitCode ?? 0) !== 0;
  const kept = [];
  for (const [dir, { keep }] of ownedDirs) {
    if (keep || keepAll) kept.push(dir);
    else try { removeDir(dir); } catch { /* best effort */ }
  }
  if (kept.length) process.stderr.write(`# daemon.mjs: kept temp dirs: ${kept.join(' ')}\n`);
}
/** SIGKILL every live child's process group and wait (≤ 5 s) until they are reaped. */
async function killAllChildren() {
  const children = [...liveChildren];
  for (const c of children) killGroup(c);
  await raceTimeout(Promise.all(children.map((c) => (c.exitCode !== null || c.signalCode !== null
    ? null : new Promise((r) => c.once('exit', r))))), 5000);
}
// When the tests are done but a daemon was never stopped, the (unref'd) children no longer
// keep the loop alive: kill them here, asynchronously, so that they are also reaped.
process.on('beforeExit', () => (liveChildren.size ? killAllChildren() : undefined));
process.on('exit', cleanupAtExit);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, async () => {
    await killAllChildren();
    process.kill(process.pid, sig); // default action now that our handler is gone
  });
}

function track(child) {
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
  // Do not keep the test process alive just because a daemon runs: a forgotten
  // daemon is killed by the exit hook instead of hanging the test run.
  child.unref();
  child.stdout?.unref?.();
  child.stderr?.unref?.();
}

// ------------------------------------------------------------ config & env

/**
 * Defaults deep-merged under the caller's config (over). The database: on
 * PostgreSQL (BSP_TEST_DB=pg) the dir's own database, its password file and
 * a KEK file in dir, unless over names a database.url (then kept as it is).
 */
export function defaultConfig(dir, over = {}) {
  const base = {
    server: { host: '127.0.0.1', port: 0 },
    database: { url: `sqlite://${join(dir, 'state', 'proxy.db')}` },
    logging: { format: 'json', level: 'info' },
  };
  if (onPostgres && over?.database?.url === undefined) return deepMerge(base, pgDaemonConfig(dir));
  return base;
}

/**
 * Write <dir>/config.yaml (JSON is valid YAML) and any extra files; returns the config path.
 * config may be an object or a function (dir) → object; configText is written verbatim.
 */
export function prepareDir(dir, { config, configText, files } = {}) {
  mkdirSync(join(dir, 'state'), { recursive: true });
  mkdirSync(join(dir, 'home'), { recursive: true });
  const cfgPath = join(dir, 'config.yaml');
  if (configText !== undefined) {
    writeFileSync(cfgPath, configText, { mode: 0o600 });
  } else if (config !== undefined || !existsSync(cfgPath)) {
    const c = typeof config === 'function' ? config(dir) : config;
    writeFileSync(cfgPath, `${JSON.stringify(deepMerge(defaultConfig(dir, c), c ?? {}), null, 2)}\n`, { mode: 0o600 });
  }
  chmodSync(cfgPath, 0o600);
  for (const [name, spec] of Object.entries(typeof files === 'function' ? files(dir) : files ?? {})) {
    const { content, mode = 0o600 } = typeof spec === 'string' || Buffer.isBuffer(spec) ? { content: spec } : spec;
    const p = resolve(dir, name);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, content, { mode });
    chmodSync(p, mode);
  }
  return cfgPath;
}

/** The clean environment the daemon runs with (no AWS_ or BEDROCK_ variable leaks from the parent). */
export function daemonEnv(dir, extra = {}) {
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: join(dir, 'home'), LANG: 'C' };
  for (const [k, v] of Object.entries(process.env)) if (/^[A-Z]+SAN_OPTIONS$/.test(k)) env[k] = v;
  env.ASAN_OPTIONS ??= DEFAULT_ASAN;
  env.UBSAN_OPTIONS ??= DEFAULT_UBSAN;
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined || v === null) delete env[k];
    else env[k] = String(v);
  }
  return env;
}

function newDir(dir) {
  if (dir) {
    mkdirSync(dir, { recursive: true });
    if (!ownedDirs.has(dir)) ownedDirs.set(dir, { keep: true }); // caller's own dir: never auto-removed at exit
    return dir;
  }
  const d = makeTempDir('bsp-it-');
  ownedDirs.set(d, { keep: false });
  return d;
}

/** Parse one logfmt line (key=value, key="quoted \"value\"") into an object. */
export function parseLogfmt(line) {
  const out = {};
  const re = /([A-Za-z0-9_]+)=(?:"((?:[^"\\]|\\.)*)"|(\S*))/g;
  let m;
  while ((m = re.exec(line)) !== null) {
    let v = m[2] !== undefined
      ? m[2].replace(/\\(.)/g, (all, c) => ({ n: '\n', r: '\r', t: '\t', '"': '"', '\\': '\\' }[c] ?? all))
      : m[3];
    if (m[3] !== undefined && /^-?\d+(\.\d+)?$/.test(v)) v = Number(v);
    out[m[1]] = v;
  }
  return out;
}

function parseLine(line) {
  if (line.startsWith('{')) {
    try { return JSON.parse(line); } catch { /* raw */ }
  }
  if (line.startsWith('time=') || line.startsWith('level=')) return parseLogfmt(line);
  return line;
}

/** Wait for `exited` while holding a ref'd timer (the child itself is unref'd). */
async function raceTimeout(promise, ms) {
  const ac = new AbortController();
  const t = delay(ms, 'timeout', { signal: ac.signal }).catch(() => 'aborted');
  try {
    return await Promise.race([promise, t]);
  } finally {
    ac.abort();
  }
}

const tail = (s, n = 6000) => (s.length > n ? `…${s.slice(-n)}` : s);

function matcher(pred) {
  if (typeof pred === 'function') return (e) => pred(e);
  if (typeof pred === 'string') return (e) => typeof e === 'object' && e?.msg === pred;
  if (pred instanceof RegExp) return (e, raw) => pred.test(raw);
  if (pred && typeof pred === 'object') {
    return (e) => typeof e === 'object' && e !== null && Object.entries(pred).every(([k, v]) => (v instanceof RegExp ? v.test(String(e[k])) : e[k] === v));
  }
  throw new TypeError('waitForLog: predicate must be a function, string (msg), RegExp (raw line) or object (field subset)');
}

// ------------------------------------------------------------ startDaemon

/**
 * Start the daemon: `[bin, -d, -f, <dir>/config.yaml, ...args]` with a clean env.
 * opts: {config, configText, files, env, args, dir (reuse), timeoutMs=15000, listeners=1,
 *        scheme ('http'|'https', default from the listening line), ca (PEM for health/request over TLS), bin,
 *        waitDatabase=true}
 * Resolves once `listeners` "listening" lines appeared, GET /health answered 200 and (unless
 * waitDatabase is false) /health/ready says the database and the state loaded from it are ok.
 */
export async function startDaemon(opts = {}) {
  const dir = newDir(opts.dir);
  const cfgPath = prepareDir(dir, opts);
  const bin = opts.bin ?? bspBin();
  const argv = ['-d', '-f', cfgPath, ...(opts.args ?? [])];
  const timeoutMs = opts.timeoutMs ?? Number(process.env.BSP_START_TIMEOUT_MS || 15000);
  if (!existsSync(bin)) throw new Error(`daemon binary ${bin} not found: build it (make) or set BSP_BIN`);

  const child = spawn(bin, argv, { cwd: dir, env: daemonEnv(dir, opts.env), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  track(child);
  const events = new EventEmitter();
  events.setMaxListeners(0);
  const logs = [];
  const lines = [];
  const addrs = [];
  const listeners = [];
  let stderr = '';
  let stdout = '';
  let partial = '';
  let exit = null;
  const exited = new Promise((res) => {
    child.once('exit', (code, signal) => { exit = { code, signal }; events.emit('change'); res(exit); });
  });
  let spawnError = null;
  child.once('error', (e) => { spawnError = e; events.emit('change'); });
  child.stdout.setEncoding('utf8').on('data', (s) => { stdout += s; });
  child.stderr.setEncoding('utf8').on('data', (s) => {
    stderr += s;
    partial += s;
    let nl;
    while ((nl = partial.indexOf('\n')) >= 0) {
      const raw = partial.slice(0, nl).replace(/\r$/, '');
      partial = partial.slice(nl + 1);
      const e = parseLine(raw);
      lines.push(raw);
      logs.push(e);
      if (typeof e === 'object' && e?.msg === 'listening' && typeof e.addr === 'string') {
        const hp = parseHostPort(e.addr);
        const scheme = opts.scheme ?? (e.tls === true || e.tls === 'yes' || e.scheme === 'https' || /^https:/.test(e.url ?? '') ? 'https' : 'http');
        addrs.push(e.addr);
        listeners.push({ ...hp, addr: e.addr, scheme, url: `${scheme}://${hp.ipv6 ? `[${hp.host}]` : hp.host}:${hp.port}` });
      }
      events.emit('change');
    }
  });

  const d = {
    dir, pid: child.pid, proc: child, bin, argv, configPath: cfgPath, logs, lines, addrs, listeners,
    url: null, port: null,
    get stderr() { return stderr; },
    get stdout() { return stdout; },
    get exitStatus() { return exit; },
    exited,
    /** Index to pass as {from} to waitForLog, to only look at later lines. */
    logMark: () => logs.length,
    /**
     * Resolve with the first log entry matching pred (function(entry), string = msg, RegExp = raw line,
     * object = field subset) at index >= from; reject on timeout or daemon exit.
     */
    waitForLog(pred, timeoutMs = 5000, { from = 0 } = {}) {
      const match = matcher(pred);
      return new Promise((res, rej) => {
        let i = from;
        const check = () => {
          for (; i < logs.length; i++) {
            if (match(logs[i], lines[i])) { done(); return res(logs[i]); }
          }
          if (exit || spawnError) {
            done();
            rej(new Error(`daemon exited (${JSON.stringify(exit)}) before a matching log line; stderr:\n${tail(stderr)}`));
          }
        };
        const timer = setTimeout(() => { done(); rej(new Error(`no matching log line within ${timeoutMs} ms; stderr:\n${tail(stderr)}`)); }, timeoutMs);
        const done = () => { clearTimeout(timer); events.off('change', check); };
        events.on('change', check);
        check();
      });
    },
    signal(name) { process.kill(child.pid, name); },
    /** fetch() against d.url (plain HTTP, or HTTPS trusted by the system store). */
    fetch(path, init) { return fetch(new URL(path, d.url), init); },
    /** util.request() against d.url, with opts.ca trusted for HTTPS. */
    request(path, ropts = {}) { return request(new URL(path, d.url).href, { ca: opts.ca, ...ropts }); },
    /** Wait until the process exits by itself. */
    async waitForExit(ms = 20000) {
      const r = await raceTimeout(exited, ms);
      if (r === 'timeout') throw new Error(`daemon did not exit within ${ms} ms; stderr:\n${tail(stderr)}`);
      return r;
    },
    /**
     * Signal, wait, and assert: exit code === expectCode (null: don't check), not killed by a signal,
     * no sanitizer report on stderr, process gone. Removes d.dir unless keepDir or $BSP_KEEP_TMP
     * (it is also kept when an assertion fails).
     */
    async stop({ signal = 'SIGTERM', timeoutMs = 20000, expectCode = 0, keepDir = false } = {}) {
      if (!exit) {
        try { process.kill(child.pid, signal); } catch { /* already gone */ }
      }
      let r;
      try {
        r = await d.waitForExit(timeoutMs);
      } catch (e) {
        killGroup(child);
        await raceTimeout(exited, 5000);
        markKeep(dir);
        throw new Error(`daemon did not exit within ${timeoutMs} ms after ${signal} (killed; temp dir kept: ${dir}); stderr:\n${tail(stderr)}`);
      }
      killGroup(child); // strays left in the daemon's process group (helpers it spawned)
      try {
        if (expectCode !== null) {
          assert.equal(r.signal, null, `daemon killed by ${r.signal}; stderr:\n${tail(stderr)}`);
          assert.equal(r.code, expectCode, `daemon exit code ${r.code}, expected ${expectCode}; stderr:\n${tail(stderr)}`);
        }
        assert.doesNotMatch(stderr, SANITIZER_RE, `sanitizer report on stderr:\n${tail(stderr, 20000)}`);
        assert.throws(() => process.kill(child.pid, 0), { code: 'ESRCH' }, `pid ${child.pid} still exists`);
      } catch (e) {
        markKeep(dir);
        e.message += `\n(temp dir kept: ${dir})`;
        throw e;
      }
      if (!keepDir && !process.env.BSP_KEEP_TMP) {
        removeDir(dir);
        ownedDirs.delete(dir);
      }
      return r;
    },
    /** SIGKILL the daemon (for crash/restart tests); the temp dir stays for startDaemon({dir}). */
    async kill9() {
      killGroup(child);
      const r = await raceTimeout(exited, 10000);
      if (r === 'timeout') throw new Error(`pid ${child.pid} survived SIGKILL for 10 s`);
      return r;
    },
  };

  // Wait for the listening line(s), then for /health.
  const want = opts.listeners ?? 1;
  const deadline = Date.now() + timeoutMs;
  const fail = async (why) => {
    killGroup(child);
    await raceTimeout(exited, 2000);
    markKeep(dir);
    throw new Error(`${why}\ncommand: ${bin} ${argv.join(' ')}\ntemp dir (kept): ${dir}\nstderr:\n${tail(stderr)}`);
  };
  try {
    await d.waitForLog(() => listeners.length >= want, timeoutMs);
  } catch {
    if (spawnError) return fail(`cannot start daemon: ${spawnError.message}`);
    if (exit) return fail(`daemon exited early (code ${exit.code}, signal ${exit.signal}) before listening`);
    return fail(`daemon did not log ${want} "listening" line(s) within ${timeoutMs} ms`);
  }
  d.url = listeners[0].url;
  d.port = listeners[0].port;
  for (;;) {
    if (exit) return fail(`daemon exited (code ${exit.code}, signal ${exit.signal}) while waiting for /health`);
    try {
      const r = await request(`${d.url}/health`, { ca: opts.ca, rejectUnauthorized: Boolean(opts.ca), timeoutMs: 2000 });
      if (r.status === 200) break;
    } catch { /* not yet */ }
    if (Date.now() > deadline) return fail(`GET ${d.url}/health did not answer 200 within ${timeoutMs} ms`);
    await delay(50);
  }
  // With PostgreSQL the daemon connects and loads its state (users, revoked
  // sessions, keys) after it listens; with SQLite before. Either way, a
  // started daemon has it: wait until /health/ready's database is ok
  // (opts.waitDatabase false: not, for a daemon whose database is down).
  if (opts.waitDatabase !== false) {
    let last = null;
    for (;;) {
      if (exit) return fail(`daemon exited (code ${exit.code}, signal ${exit.signal}) while waiting for its database`);
      try {
        const r = await request(`${d.url}/health/ready`, { ca: opts.ca, rejectUnauthorized: Boolean(opts.ca), timeoutMs: 2000 });
        last = r.text();
        const db = JSON.parse(last)?.components?.database;
        if (!db || db.status === 'ok') break;
      } catch { /* not yet */ }
      if (Date.now() > deadline) return fail(`/health/ready: the database not ok within ${timeoutMs} ms: ${last}`);
      await delay(25);
    }
  }
  return d;
}

function markKeep(dir) {
  if (ownedDirs.has(dir)) ownedDirs.get(dir).keep = true;
}

// ------------------------------------------------------------ runCommand

/**
 * Run `bin -f <cfg> ...args` to completion (admin commands, `-n` checks).
 * opts: {dir (reuse, e.g. a running daemon's d.dir: its config.yaml is used unless config/configText given),
 *        config, configText, files, env, input (stdin text), timeoutMs=30000, bin, noConfigFlag}
 * Resolves {code, signal, stdout, stderr}; asserts no sanitizer report.
 */
export async function runCommand(args, opts = {}) {
  const temp = !opts.dir;
  const dir = temp ? makeTempDir('bsp-cmd-') : opts.dir;
  if (temp) ownedDirs.set(dir, { keep: false });
  const cfgPath = prepareDir(dir, opts);
  const bin = opts.bin ?? bspBin();
  const argv = [...(opts.noConfigFlag ? [] : ['-f', cfgPath]), ...args];
  const timeoutMs = opts.timeoutMs ?? 30000;
  const child = spawn(bin, argv, {
    cwd: dir, env: daemonEnv(dir, opts.env), stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], detached: true,
  });
  track(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s) => { stdout += s; });
  child.stderr.setEncoding('utf8').on('data', (s) => { stderr += s; });
  if (opts.input !== undefined) child.stdin.end(opts.input);
  const result = await new Promise((res, rej) => {
    const timer = setTimeout(() => {
      killGroup(child);
      rej(new Error(`${bin} ${argv.join(' ')}: no exit within ${timeoutMs} ms; stderr:\n${tail(stderr)}`));
    }, timeoutMs);
    child.once('error', (e) => { clearTimeout(timer); rej(new Error(`cannot run ${bin}: ${e.message} (build it or set BSP_BIN)`)); });
    child.once('close', (code, signal) => { clearTimeout(timer); res({ code, signal, stdout, stderr }); });
  });
  killGroup(child);
  try {
    assert.doesNotMatch(result.stderr, SANITIZER_RE, `sanitizer report from ${argv.join(' ')}:\n${tail(result.stderr, 20000)}`);
  } catch (e) {
    markKeep(dir);
    throw e;
  }
  if (temp && !process.env.BSP_KEEP_TMP) {
    removeDir(dir);
    ownedDirs.delete(dir);
  }
  return result;
}
