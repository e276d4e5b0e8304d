// `bedrock-sso-proxy token` as Claude Code's apiKeyHelper (issue 12): 20
// concurrent invocations across an expiry do exactly one rotation (the
// profile's lock and a re-read of the file) and all print a valid token; a
// revoked session is a clean "sign in again" (exit 3); a proxy that is down
// still gets the unexpired token printed, and status says it cannot reach
// it (exit 4); a laptop clock an hour off the proxy's changes nothing
// (expiry is counted from expires_in, never from the JWT); a damaged,
// open or foreign session file or directory is refused with its path and
// the fix (exit 2).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { chmodSync, chownSync, existsSync, statSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { SANITIZER_RE, bspBin, runCommand } from './lib/daemon.mjs';
import { validate } from './lib/login.mjs';
import { cliLogin, newLaptop, runClient, startSignin } from './lib/client.mjs';
import { sleep } from './lib/util.mjs';

const FAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';

/** The daemon's refresh requests so far (access log). */
const refreshes = (d) => d.logs.filter((e) => e?.msg === 'request' && e.route === 'auth_refresh');

/** Sleep until the session's access token is within its refresh margin (half of a 60 s life). */
async function untilDue(lap, profile = 'default') {
  const s = lap.session(profile);
  const margin = Math.min(300, Math.floor((s.expires_at - s.obtained_at) / 2));
  const ms = (s.expires_at - margin + 1) * 1000 - Date.now();
  if (ms > 0) await sleep(ms);
}

test('20 concurrent token calls across an expiry: exactly one rotation, 20 valid tokens', async () => {
  const t = await startSignin({ over: { jwt: { access_token_ttl: 60 } } });
  const lap = newLaptop();
  try {
    assert.equal((await cliLogin(t, lap)).code, 0);
    const first = lap.session();
    assert.equal(first.expires_at - first.obtained_at, 60);
    // Fresh: no refresh at all.
    const t0 = await runClient(lap, ['token']);
    assert.equal(t0.stdout.trim(), first.access_token);
    assert.equal(refreshes(t.d).length, 0);

    await untilDue(lap);
    const runs = await Promise.all(Array.from({ length: 20 }, () => runClient(lap, ['token'])));
    for (const r of runs) {
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, '');
    }
    const tokens = new Set(runs.map((r) => r.stdout.trim()));
    assert.equal(tokens.size, 1, 'all 20 print the one new token');
    const [tok] = tokens;
    assert.notEqual(tok, first.access_token);
    const v = await validate(t.d, tok);
    assert.equal(v.status, 200, v.text());
    assert.equal(v.json().sub, 'idp:alice');
    const rf = refreshes(t.d);
    assert.equal(rf.length, 1, `exactly one rotation: ${JSON.stringify(rf)}`);
    assert.equal(rf[0].status, 200);
    const after = lap.session();
    assert.notEqual(after.refresh_token, first.refresh_token);
    assert.equal(after.access_token, tok);
    assert.equal(statSync(lap.sessionPath()).mode & 0o777, 0o600, 'the rewritten file is 0600 too');
    // The session was never spent twice: no reuse detection, the family lives on.
    assert.ok(!t.d.logs.some((e) => /reuse/i.test(e?.msg ?? '')), 'no refresh token reuse');
  } finally {
    lap.close();
    await t.stop();
  }
});

test('a revoked session: token and status say to sign in again (exit 3)', async () => {
  const t = await startSignin();
  const lap = newLaptop();
  try {
    assert.equal((await cliLogin(t, lap)).code, 0);
    const r0 = await runCommand(['user', 'logout', 'idp:alice'], { dir: t.d.dir });
    assert.equal(r0.code, 0, r0.stderr);
    // The daemon notices the command's write within a second.
    const tok = lap.session().access_token;
    for (let i = 0; i < 50 && (await validate(t.d, tok)).status === 200; i++) await sleep(100);
    for (const cmd of [['token'], ['status']]) {
      const r = await runClient(lap, cmd);
      assert.equal(r.code, 3, `${cmd}: ${r.stderr}`);
      assert.match(r.stderr, /the proxy has ended this session \(signed out, revoked, expired, or the account was disabled\); sign in again: bedrock-sso-proxy login http:\/\/127\.0\.0\.1:\d+\n$/);
      assert.ok(!r.stdout.includes(tok));
    }
    assert.equal((await runClient(lap, ['token'])).stdout, '');
  } finally {
    lap.close();
    await t.stop();
  }
});

test('a proxy that is down: token prints the unexpired token, status and an expired one exit 4', async () => {
  const t = await startSignin();
  const lap = newLaptop();
  try {
    assert.equal((await cliLogin(t, lap)).code, 0);
    const s = lap.session();
    await t.d.stop();
    let r = await runClient(lap, ['token']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), s.access_token);
    r = await runClient(lap, ['-v', 'token']);
    assert.match(r.stderr, /cannot reach the proxy at http:\/\/127\.0\.0\.1:\d+ \(GET \/auth\/validate\)/);
    r = await runClient(lap, ['status']);
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stdout, /proxy state: +cannot be reached/);
    // Expired here, a minute ago: nothing to print. (obtained_at + 1 was
    // still in the future when the test ran within a second of the login.)
    const now = Math.floor(Date.now() / 1000);
    lap.writeSession({ ...s, obtained_at: now - 3660, expires_at: now - 60 });
    r = await runClient(lap, ['token']);
    assert.equal(r.code, 4);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /cannot reach the proxy at http:\/\/127\.0\.0\.1:\d+ \(the refresh\)/);
  } finally {
    lap.close();
    await t.stop().catch(() => {});
  }
});

test('a laptop clock an hour off the proxy: no spurious refresh, the token works', { skip: !existsSync(FAKETIME) && 'libfaketime is not installed (Debian package faketime)' }, async () => {
  const t = await startSignin({ over: { jwt: { access_token_ttl: 120 } } });
  try {
    for (const skew of ['+1h', '-1h']) {
      const lap = newLaptop();
      const env = { LD_PRELOAD: FAKETIME, FAKETIME: skew, ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=0:verify_asan_link_order=0' };
      try {
        const b = await cliLogin(t, lap, { env });
        assert.equal(b.code, 0, b.stderr);
        const s = lap.session();
        // Counted on the laptop's own (skewed) clock from expires_in.
        assert.ok(Math.abs(s.obtained_at - (Date.now() / 1000 + (skew === '+1h' ? 3600 : -3600))) < 60, JSON.stringify(s));
        const before = refreshes(t.d).length;
        for (let i = 0; i < 3; i++) {
          const r = await runClient(lap, ['token'], { env });
          assert.equal(r.code, 0, r.stderr);
          assert.equal(r.stdout.trim(), s.access_token);
        }
        assert.equal(refreshes(t.d).length, before, `no refresh with the clock ${skew}`);
        const st = await runClient(lap, ['status'], { env });
        assert.match(st.stdout, /access token: +expires .* \(in [12] min/);
      } finally {
        lap.close();
      }
    }
  } finally {
    await t.stop();
  }
});

test('session files and directories: damaged, open to others, foreign, linked: refused with the path and the fix', async () => {
  const lap = newLaptop();
  try {
    const good = {
      version: 1, profile: 'default', proxy: 'http://127.0.0.1:9', access_token: 'eyJ.x.y', refresh_token: 'bsr_x',
      expires_at: Math.floor(Date.now() / 1000) + 3600, obtained_at: Math.floor(Date.now() / 1000),
    };
    const p = lap.sessionPath();
    const cases = [
      ['{"version":1,', /default\.json is damaged \(not JSON: line 1, column \d+\): remove it and sign in again/],
      // jansson's own message would quote the file, tokens and all.
      ['{"version":1,"access_token":"eyJSECRETSECRET",,}', /default\.json is damaged \(not JSON: line 1, column \d+\): remove it/],
      [JSON.stringify({ ...good, version: 7 }), /is damaged or from another version \(version 7, this program reads 1\)/],
      [JSON.stringify({ ...good, proxy: 'ftp://x' }), /is damaged \(a member is missing or of the wrong type\)/],
      [JSON.stringify({ ...good, expires_at: 'soon' }), /is damaged \(a member is missing/],
    ];
    for (const [text, re] of cases) {
      lap.writeSession(text);
      for (const cmd of ['token', 'status', 'relay']) {
        const r = await runClient(lap, [cmd]);
        assert.equal(r.code, 2, `${cmd} ${text}: ${r.stderr}`);
        assert.match(r.stderr, re);
        assert.ok(r.stderr.includes(p), r.stderr);
        assert.ok(!r.stderr.includes('SECRET'), `the message quotes the file: ${r.stderr}`);
      }
    }
    // Readable by others: refused, not used; its tokens may have leaked, so not "chmod" but logout.
    lap.writeSession(JSON.stringify(good), 'default', 0o644);
    let r = await runClient(lap, ['token']);
    assert.equal(r.code, 2);
    assert.ok(r.stderr.includes(`${p} is open to other users (mode 0644), so it is not used: its tokens may have been read; `
      + 'end the session with "bedrock-sso-proxy logout" (its --profile too) and sign in again'), r.stderr);
    // Another user's file (the tests run as root: give it to nobody).
    if (process.getuid() === 0) {
      lap.writeSession(JSON.stringify(good));
      chownSync(p, 65534, 65534);
      r = await runClient(lap, ['token']);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /default\.json belongs to user id 65534, not to you \(0\): it is not used; remove it, or give it to yourself/);
      // logout does not touch someone else's file.
      r = await runClient(lap, ['logout']);
      assert.equal(r.code, 2);
      assert.ok(existsSync(p));
      chownSync(p, 0, 0);
    }
    // A directory open to others.
    lap.writeSession(JSON.stringify(good));
    chmodSync(lap.sessionDir, 0o755);
    r = await runClient(lap, ['token']);
    assert.equal(r.code, 2);
    assert.ok(r.stderr.includes(`chmod 700 ${lap.sessionDir}`), r.stderr);
    // login refuses it too, before any sign-in.
    r = await runClient(lap, ['login', '--no-browser', 'http://127.0.0.1:9']);
    assert.equal(r.code, 2);
    assert.ok(r.stderr.includes(`chmod 700 ${lap.sessionDir}`), r.stderr);
    chmodSync(lap.sessionDir, 0o700);
    // A symbolic link in place of the file.
    writeFileSync(`${lap.dir}/elsewhere.json`, JSON.stringify(good), { mode: 0o600 });
    await runClient(lap, ['logout']);
    const { symlinkSync } = await import('node:fs');
    symlinkSync(`${lap.dir}/elsewhere.json`, p);
    r = await runClient(lap, ['token']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /default\.json is a symbolic link, so it is not used/);
    // A damaged file of ours: logout removes it and says so.
    await runClient(lap, ['logout']);
    lap.writeSession('not json');
    r = await runClient(lap, ['logout']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /removed .*default\.json; the session on the proxy, if any, was not ended there/);
    assert.ok(!existsSync(p));
  } finally {
    lap.close();
  }
});

test('logout of a session file others could read ends the session on the proxy too', async () => {
  const t = await startSignin();
  const lap = newLaptop();
  try {
    assert.equal((await cliLogin(t, lap)).code, 0);
    const tok = lap.session().access_token;
    assert.equal((await validate(t.d, tok)).status, 200);
    chmodSync(lap.sessionPath(), 0o644);
    const r = await runClient(lap, ['logout']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /Signed out of http:\/\/127\.0\.0\.1:\d+ \(profile default\)\./);
    assert.match(r.stderr, /the session file was open to other users; the session has been ended on the proxy/);
    assert.ok(!existsSync(lap.sessionPath()));
    assert.equal((await validate(t.d, tok)).status, 401, 'what others may have read is of no use now');
  } finally {
    lap.close();
    await t.stop();
  }
});

test('a lock holder that hangs: token prints a token that has not expired (exit 0), else exit 4, not 2', async () => {
  const lap = newLaptop();
  const now = Math.floor(Date.now() / 1000);
  let holder;
  try {
    // Due for a refresh (within half its 60 s life) but not expired.
    lap.writeSession({
      version: 1, profile: 'default', proxy: 'http://127.0.0.1:9', access_token: 'eyJ.still.valid', refresh_token: 'bsr_x',
      expires_at: now + 20, obtained_at: now - 40,
    });
    // Another process holds the profile's lock and never lets go (as one whose proxy hangs would).
    writeFileSync(join(lap.sessionDir, 'default.lock'), '', { mode: 0o600 });
    holder = spawn('flock', ['-x', join(lap.sessionDir, 'default.lock'), '-c', 'echo locked; exec sleep 120'], { stdio: ['ignore', 'pipe', 'ignore'], detached: true });
    await new Promise((res, rej) => { holder.stdout.once('data', res); holder.once('exit', rej); });
    const env = { BSP_LOCK_WAIT: '2' };
    let r = await runClient(lap, ['token'], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'eyJ.still.valid\n');
    // Expired: nothing to print; a proxy-side failure, exit 4.
    lap.writeSession({
      version: 1, profile: 'default', proxy: 'http://127.0.0.1:9', access_token: 'eyJ.expired', refresh_token: 'bsr_x',
      expires_at: now - 1, obtained_at: now - 61,
    });
    r = await runClient(lap, ['token'], { env });
    assert.equal(r.code, 4, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /held .*default\.lock for 2 seconds, longer than a refresh may take; is the proxy at http:\/\/127\.0\.0\.1:9 hanging\?/);
    // logout waits for the lock as well: exit 4, the file left for a later try.
    r = await runClient(lap, ['logout'], { env });
    assert.equal(r.code, 4, r.stderr);
    assert.ok(existsSync(lap.sessionPath()));
  } finally {
    if (holder) try { process.kill(-holder.pid, 'SIGKILL'); } catch { /* gone */ }
    lap.close();
  }
});

test('a refresh whose new session cannot be saved: token still prints the new access token, the stale file (a spent refresh token) goes', async () => {
  const t = await startSignin();
  const lap = newLaptop();
  try {
    assert.equal((await cliLogin(t, lap)).code, 0);
    const s0 = lap.session();
    const now = Math.floor(Date.now() / 1000);
    lap.writeSession({ ...s0, obtained_at: now - 100, expires_at: now + 10 }); // due for a refresh
    // No file may grow past 0 bytes (a full disk); SIGXFSZ ignored so that write(2) fails with EFBIG.
    const r = await new Promise((res) => {
      const p = spawn('/bin/sh', ['-c', 'trap "" XFSZ; ulimit -f 0; exec "$0" token', bspBin()], { env: lap.env(), stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      p.stdout.on('data', (d) => { out += d; });
      p.stderr.on('data', (d) => { err += d; });
      p.on('close', (code) => res({ code, stdout: out, stderr: err }));
    });
    assert.equal(r.code, 0, r.stderr);
    const tok = r.stdout.trim();
    assert.ok(tok.length > 0 && tok !== s0.access_token, 'a new access token');
    assert.equal((await validate(t.d, tok)).status, 200);
    assert.match(r.stderr, /the refreshed session could not be saved \(.*\); its access token is used until it expires, and .*default\.json was removed \(its refresh token is spent\): make room, then sign in again: bedrock-sso-proxy login http:\/\/127\.0\.0\.1:\d+/);
    assert.doesNotMatch(r.stderr, SANITIZER_RE);
    assert.ok(!existsSync(lap.sessionPath()), 'no file with a spent refresh token is left for the next caller');
    assert.equal((await runClient(lap, ['token'])).code, 3, 'sign in again');
    assert.ok(!t.d.logs.some((e) => /reuse/i.test(e?.msg ?? '')), 'the spent refresh token was never used: no reuse, the session lives');
  } finally {
    lap.close();
    await t.stop();
  }
});
