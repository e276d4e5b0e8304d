// The worker behind lib/pg.mjs's runPsql(): one psql session per database,
// kept open, so that the tests' synchronous reads and writes cost a round
// trip rather than a psql start, a connection and its authentication each
// (~35 ms, hundreds of times per file).
//
// The caller posts {url, password, script} on the port and waits on the
// shared word (Atomics.wait); the answer, {out, error}, is posted back and
// the word set to 1.  A script's end is found by markers it is followed
// by: \echo on standard output, \warn on standard error.  An error is a
// line with ERROR, FATAL or PANIC on standard error (notices are not).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { workerData } from 'node:worker_threads';

const { port, shared, bin, env } = workerData;
const sessions = new Map(); // url + password -> session
const MARK = `bsp-psql-done-${randomBytes(6).toString('hex')}`;
const ERROR_RE = /(^|\n)(psql:[^\n]*)?(ERROR|FATAL|PANIC):/;

function answer(msg) {
  port.postMessage(msg);
  Atomics.store(shared, 0, 1);
  Atomics.notify(shared, 0);
}

function session(url, password) {
  const key = `${url}\n${password}`;
  let s = sessions.get(key);
  if (s && !s.dead) return s;
  const child = spawn(bin, ['-X', '-q', '-A', '-t', '-F', '\x1f', '-d', url], {
    env: { ...env, PGPASSWORD: password, PGAPPNAME: 'bsp-tests' }, stdio: ['pipe', 'pipe', 'pipe'],
  });
  s = { child, out: '', err: '', pending: null, dead: false };
  child.stdout.setEncoding('utf8').on('data', (x) => { s.out += x; check(s); });
  child.stderr.setEncoding('utf8').on('data', (x) => { s.err += x; check(s); });
  child.stdin.on('error', () => { /* the exit says it */ });
  child.on('exit', (code, signal) => {
    s.dead = true;
    sessions.delete(key);
    const p = s.pending;
    if (!p) return;
    s.pending = null;
    // Gone before it said anything of this script: it never ran; once more
    // with a new session. Otherwise what it said, as an error.
    if (!p.retried && s.out === '' && s.err === '') {
      run({ ...p.msg }, true);
      return;
    }
    answer({ out: s.out, error: `psql exited (${code ?? signal}): ${s.err.trim()}` });
  });
  sessions.set(key, s);
  return s;
}

function check(s) {
  if (!s.pending) return;
  const endOut = s.out.indexOf(`${MARK}\n`);
  const endErr = s.err.indexOf(`${MARK}\n`);
  if (endOut < 0 || endErr < 0) return;
  const out = s.out.slice(0, endOut);
  const err = s.err.slice(0, endErr);
  s.out = s.out.slice(endOut + MARK.length + 1);
  s.err = s.err.slice(endErr + MARK.length + 1);
  s.pending = null;
  answer({ out, error: ERROR_RE.test(err) ? err.trim() : null });
}

function run(msg, retried = false) {
  const s = session(msg.url, msg.password);
  s.pending = { msg, retried };
  s.child.stdin.write(`${msg.script}${msg.script.endsWith('\n') ? '' : '\n'}\\echo ${MARK}\n\\warn ${MARK}\n`);
}

port.on('message', (msg) => run(msg));
