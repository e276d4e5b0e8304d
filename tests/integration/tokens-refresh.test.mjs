// Refresh tokens: rotation, reuse detection after jwt.refresh_reuse_grace,
// retries inside the window, concurrent refreshes of one token, kill -9 in
// the middle of refresh streams, and logout / RFC 7009 revocation.
//
// Sessions are seeded in the database as a login makes them (see
// lib/tokens.mjs); everything after that goes through HTTP.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { runCommand, startDaemon } from './lib/daemon.mjs';
import {
  auditRows, decodeJwt, nowSec, seedSession, withDb,
} from './lib/tokens.mjs';
import { sleep, waitFor } from './lib/util.mjs';

const ISS = 'https://bsp.test';

const refresh = (d, token, { form = false } = {}) => d.request('/auth/refresh', form
  ? {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: `grant_type=refresh_token&refresh_token=${encodeURIComponent(token)}`,
  }
  : { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ refresh_token: token }) });
const validate = (d, token) => d.request('/auth/validate', { headers: { Authorization: `Bearer ${token}` } });
const familyRow = (d, sid) => withDb(d.dir, (db) => db.prepare('SELECT * FROM token_families WHERE id = ?').get(sid));

function assertOauthError(r, status, error, what) {
  assert.equal(r.status, status, `${what}: ${r.text()}`);
  const j = r.json();
  assert.equal(j.error, error, what);
  assert.equal(typeof j.error_description, 'string', what);
  assert.equal(r.headers['cache-control'], 'no-store', what);
}

test('refresh rotates: each token works once, the new pair works, audit rows are written', async () => {
  const d = await startDaemon({ config: { jwt: { issuer: ISS, refresh_reuse_grace: 1 } } });
  try {
    const s = seedSession(d.dir, { ttl: 7200 });
    const r1 = await refresh(d, s.refresh);
    assert.equal(r1.status, 200, r1.text());
    assert.equal(r1.headers['cache-control'], 'no-store');
    const p1 = r1.json();
    assert.deepEqual(Object.keys(p1).sort(), ['access_token', 'expires_in', 'refresh_token', 'scope', 'token_type']);
    assert.notEqual(p1.refresh_token, s.refresh);
    // The access token never outlives the session (family).
    const fam = familyRow(d, s.sid);
    assert.ok(decodeJwt(p1.access_token).payload.exp <= fam.expires, 'access exp capped at the session end');
    assert.equal((await validate(d, p1.access_token)).status, 200);

    // The new refresh token rotates again (form encoding, as OAuth clients send it).
    const r2 = await refresh(d, p1.refresh_token, { form: true });
    assert.equal(r2.status, 200, r2.text());
    const p2 = r2.json();
    assert.equal(decodeJwt(p2.access_token).payload.sid, s.sid);
    // Both access tokens of the live session still work.
    assert.equal((await validate(d, p1.access_token)).status, 200);
    assert.equal((await validate(d, p2.access_token)).status, 200);

    // Malformed requests and unknown tokens: RFC 6749 errors, nothing revoked.
    assertOauthError(await refresh(d, `bsr_${'A'.repeat(43)}`), 400, 'invalid_grant', 'unknown token');
    assertOauthError(await refresh(d, 'not-a-refresh-token'), 400, 'invalid_grant', 'wrong shape');
    assertOauthError(await refresh(d, p2.access_token), 400, 'invalid_grant', 'an access token');
    assertOauthError(await d.request('/auth/refresh', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' }),
      400, 'invalid_request', 'no refresh_token');
    assertOauthError(await d.request('/auth/refresh', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"refresh_token":' }),
      400, 'invalid_request', 'bad JSON');
    assertOauthError(await d.request('/auth/refresh', {
      method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: `grant_type=password&refresh_token=${p2.refresh_token}`,
    }), 400, 'invalid_request', 'wrong grant_type');
    assert.equal(familyRow(d, s.sid).revoked, 0);
    assert.equal((await refresh(d, p2.refresh_token)).status, 200, 'the latest token still rotates');

    assert.equal(auditRows(d.dir, 'refresh').length, 3);
    // Secrets never reach the log or the audit trail.
    for (const secret of [s.refresh, p1.refresh_token, p1.access_token, p2.refresh_token, p2.access_token]) {
      assert.ok(!d.stderr.includes(secret), 'no token in the log');
      assert.ok(!d.stderr.includes(secret.slice(4, 24)), 'no part of a token in the log');
    }
    // A token nobody issued is a log line, not an audit row (anyone can send one).
    assert.equal(auditRows(d.dir, 'refresh_failed').length, 0);
    await d.waitForLog((l) => /refresh refused: unknown token/.test(l?.msg ?? ''));
    for (const row of auditRows(d.dir)) {
      assert.ok(!String(row.detail).includes('bsr_'), 'no refresh token in the audit log');
    }
  } finally {
    await d.stop();
  }
});

test('reuse after the grace window revokes the family: its refresh and access tokens stop at once', async () => {
  const d = await startDaemon({ config: { jwt: { issuer: ISS, refresh_reuse_grace: 1 } } });
  try {
    const s = seedSession(d.dir);
    const other = seedSession(d.dir); // the same user's other session is not touched
    const a = (await refresh(d, s.refresh)).json();
    const b = (await refresh(d, a.refresh_token)).json();
    const o = (await refresh(d, other.refresh)).json();
    assert.equal((await validate(d, b.access_token)).status, 200);
    await sleep(2200);
    // The thief (or a confused client) presents the used token.
    const reuse = await refresh(d, a.refresh_token);
    assertOauthError(reuse, 400, 'invalid_grant', 'reuse');
    assert.match(reuse.json().error_description, /already used/);
    // Every token of the family is dead now, on the very next request.
    for (const t of [a.access_token, b.access_token]) {
      const v = await validate(d, t);
      assert.equal(v.status, 401);
      assert.match(v.json().error_description, /revoked/);
    }
    assertOauthError(await refresh(d, b.refresh_token), 400, 'invalid_grant', 'the live successor');
    const fam = familyRow(d, s.sid);
    assert.equal(fam.revoked, 1);
    assert.equal(fam.revoked_reason, 'refresh token reuse');
    const rows = auditRows(d.dir, 'refresh_reuse_detected');
    assert.equal(rows.length, 1);
    assert.equal(rows[0].user_id, s.user);
    assert.equal(JSON.parse(rows[0].detail).session, s.sid);
    // The other session lives on.
    assert.equal((await validate(d, o.access_token)).status, 200);
    assert.equal((await refresh(d, o.refresh_token)).status, 200);
    // And the revocation survives a restart.
    await d.stop({ keepDir: true });
    const d2 = await startDaemon({ dir: d.dir });
    try {
      assert.equal((await validate(d2, b.access_token)).status, 401);
    } finally {
      await d2.stop();
    }
  } finally {
    if (!d.exitStatus) await d.stop();
  }
});

test('a retry inside the grace window returns the same successor; after the successor was used it is reuse', async () => {
  const d = await startDaemon({ config: { jwt: { issuer: ISS, refresh_reuse_grace: 30 } } });
  try {
    const s = seedSession(d.dir);
    const first = (await refresh(d, s.refresh)).json();
    const retry = await refresh(d, s.refresh);
    assert.equal(retry.status, 200, retry.text());
    const again = retry.json();
    assert.equal(again.refresh_token, first.refresh_token, 'same refresh token');
    assert.equal(again.access_token, first.access_token, 'same access token');
    assert.ok(again.expires_in <= first.expires_in);
    assert.equal(auditRows(d.dir, 'refresh_retry').length, 1);
    assert.equal(withDb(d.dir, (db) => db.prepare('SELECT count(*) AS n FROM refresh_tokens WHERE family_id = ?').get(s.sid).n), 2,
      'no second successor was made');
    // Once the successor has itself been used, the old token is stolen goods.
    assert.equal((await refresh(d, first.refresh_token)).status, 200);
    assertOauthError(await refresh(d, s.refresh), 400, 'invalid_grant', 'old token after its successor was used');
    assert.equal(familyRow(d, s.sid).revoked, 1);
  } finally {
    await d.stop();
  }
});

test('two clients refreshing one token at once end with exactly one valid successor', async () => {
  const d = await startDaemon({ config: { jwt: { issuer: ISS, refresh_reuse_grace: 30 } } });
  try {
    const s = seedSession(d.dir);
    const rs = await Promise.all(Array.from({ length: 8 }, () => refresh(d, s.refresh)));
    for (const r of rs) assert.equal(r.status, 200, r.text());
    const successors = new Set(rs.map((r) => r.json().refresh_token));
    assert.equal(successors.size, 1, 'one successor for everyone');
    const unused = withDb(d.dir, (db) => db.prepare(
      'SELECT count(*) AS n FROM refresh_tokens WHERE family_id = ? AND used_at IS NULL',
    ).get(s.sid).n);
    assert.equal(unused, 1, 'exactly one live refresh token in the family');
    const [succ] = successors;
    assert.equal((await refresh(d, succ)).status, 200);

    // Two sessions' tokens refreshed concurrently do not interfere.
    const x = seedSession(d.dir);
    const y = seedSession(d.dir);
    const [rx, ry] = await Promise.all([refresh(d, x.refresh), refresh(d, y.refresh)]);
    assert.equal(rx.status, 200);
    assert.equal(ry.status, 200);
    assert.equal(decodeJwt(rx.json().access_token).payload.sid, x.sid);
    assert.equal(decodeJwt(ry.json().access_token).payload.sid, y.sid);
  } finally {
    await d.stop();
  }
});

test('kill -9 during streams of refreshes loses nothing a client was told', async (t) => {
  const CHAINS = 6;
  const d = await startDaemon({ config: { jwt: { issuer: ISS, refresh_reuse_grace: 60 } } });
  const chains = Array.from({ length: CHAINS }, () => {
    const s = seedSession(d.dir);
    return { sid: s.sid, refresh: s.refresh, access: null, received: 0, errors: 0, all: [] };
  });
  let dead = false;
  const run = async (c) => {
    while (!dead) {
      try {
        const r = await refresh(d, c.refresh);
        if (r.status !== 200) throw new Error(`chain ${c.sid}: refresh answered ${r.status} ${r.text()}`);
        const p = r.json();
        c.refresh = p.refresh_token;
        c.access = p.access_token;
        c.all.push(p.access_token);
        c.received++;
      } catch (e) {
        if (!dead) throw e;
        c.errors++;
      }
    }
  };
  const runners = chains.map(run);
  // One more client whose answer is lost on the wire: the daemon commits
  // the rotation, the client never reads the new pair.
  const lost = seedSession(d.dir);
  const lostRows = () => withDb(d.dir, (db) => db.prepare(
    'SELECT count(*) AS n FROM refresh_tokens WHERE family_id = ?',
  ).get(lost.sid).n);
  const sock = net.connect(d.port, '127.0.0.1');
  const body = JSON.stringify({ refresh_token: lost.refresh });
  sock.on('error', () => {});
  sock.write(`POST /auth/refresh HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  await waitFor(() => lostRows() === 2, { message: 'the lost rotation was committed' });
  sock.destroy();
  await sleep(700);
  dead = true;
  await d.kill9();
  await Promise.all(runners);
  const total = chains.reduce((n, c) => n + c.received, 0);
  t.diagnostic(`${total} refreshes delivered, ${chains.reduce((n, c) => n + c.errors, 0)} cut by the kill`);
  assert.ok(total >= CHAINS, `the chains made progress (${total} refreshes)`);

  const d2 = await startDaemon({ dir: d.dir });
  try {
    for (const c of chains) {
      // The latest pair each client holds: its access token works ...
      if (c.access) assert.equal((await validate(d2, c.access)).status, 200, `chain ${c.sid}: access token`);
      // Superseded pairs are not revoked by rotation: their access tokens live on.
      for (const t of [c.all[0], c.all[c.all.length >> 1]].filter(Boolean)) {
        assert.equal((await validate(d2, t)).status, 200, `chain ${c.sid}: an earlier access token`);
      }
      // ... and its refresh token still refreshes: a normal rotation if the
      // daemon died before committing, or the committed-but-undelivered
      // successor returned inside the grace window.
      const r = await refresh(d2, c.refresh);
      assert.equal(r.status, 200, `chain ${c.sid}: latest refresh token after the crash: ${r.text()}`);
      const p = r.json();
      assert.equal(decodeJwt(p.access_token).payload.sid, c.sid);
      assert.equal((await validate(d2, p.access_token)).status, 200);
      // and the chain goes on.
      assert.equal((await refresh(d2, p.refresh_token)).status, 200, `chain ${c.sid} continues`);
      assert.equal(familyRow(d2, c.sid).revoked, 0, `chain ${c.sid}: no reuse detected`);
    }
    // The client whose answer was lost retries after the restart and gets
    // the successor that was committed for it, not a second one.
    const r = await refresh(d2, lost.refresh);
    assert.equal(r.status, 200, r.text());
    assert.equal(lostRows(), 2, 'the retry returned the committed successor');
    assert.equal((await refresh(d2, r.json().refresh_token)).status, 200);
    assert.equal(lostRows(), 3);
    assert.equal(auditRows(d2.dir, 'refresh_reuse_detected').length, 0);
  } finally {
    await d2.stop();
  }
});

test('logout by bearer token and by refresh token ends the session at once', async () => {
  const d = await startDaemon({ config: { jwt: { issuer: ISS } } });
  try {
    const s1 = seedSession(d.dir);
    const p1 = (await refresh(d, s1.refresh)).json();
    const lo = await d.request('/auth/logout', { method: 'POST', headers: { Authorization: `Bearer ${p1.access_token}` } });
    assert.equal(lo.status, 200, lo.text());
    assert.deepEqual(lo.json(), { status: 'logged_out' });
    assert.equal((await validate(d, p1.access_token)).status, 401);
    assertOauthError(await refresh(d, p1.refresh_token), 400, 'invalid_grant', 'refresh after logout');
    assert.equal(familyRow(d, s1.sid).revoked, 1);

    const s2 = seedSession(d.dir);
    const p2 = (await refresh(d, s2.refresh)).json();
    const lo2 = await d.request('/auth/logout', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ refresh_token: p2.refresh_token }),
    });
    assert.equal(lo2.status, 200, lo2.text());
    assert.equal((await validate(d, p2.access_token)).status, 401);
    assertOauthError(await refresh(d, p2.refresh_token), 400, 'invalid_grant', 'refresh after logout');

    const rows = auditRows(d.dir, 'logout');
    assert.equal(rows.length, 2);
    assert.deepEqual(rows.map((r) => JSON.parse(r.detail).session), [s1.sid, s2.sid]);
    // Errors: no credentials, an unknown refresh token, a forged bearer, an API key.
    assertOauthError(await d.request('/auth/logout', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' }),
      400, 'invalid_request', 'nothing to log out');
    assertOauthError(await d.request('/auth/logout', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ refresh_token: `bsr_${'B'.repeat(43)}` }),
    }), 400, 'invalid_grant', 'unknown refresh token');
    const forged = `${p1.access_token.split('.').slice(0, 2).join('.')}.AAAA`;
    assertOauthError(await d.request('/auth/logout', { method: 'POST', headers: { Authorization: `Bearer ${forged}` } }),
      401, 'invalid_token', 'forged bearer');
    assertOauthError(await d.request('/auth/logout', { method: 'POST', headers: { Authorization: `Bearer bsk_${'C'.repeat(43)}` } }),
      400, 'invalid_request', 'API key');
  } finally {
    await d.stop();
  }
});

// A token is accepted until exp + 60 s (the verification leeway), so its
// session's revocation must be held that long: in memory, through a reload
// after another process wrote, through the sweep and through a restart.
// Sessions ending 3 s after they start have access tokens ending with them.
test('a revoked session stays revoked in the 60 s leeway after its tokens expire', async () => {
  const d = await startDaemon({ config: { jwt: { issuer: ISS }, cache: { cleanup_interval: 1 } } });
  try {
    const a = seedSession(d.dir, { ttl: 3 });
    const b = seedSession(d.dir, { ttl: 3 });
    const pa = (await refresh(d, a.refresh)).json();
    const pb = (await refresh(d, b.refresh)).json();
    const exp = Math.max(decodeJwt(pa.access_token).payload.exp, decodeJwt(pb.access_token).payload.exp);
    assert.ok(exp <= familyRow(d, b.sid).expires, 'access tokens end with their session');
    const lo = await d.request('/auth/logout', { method: 'POST', headers: { Authorization: `Bearer ${pa.access_token}` } });
    assert.equal(lo.status, 200, lo.text());
    assert.equal((await validate(d, pa.access_token)).status, 401);

    // Past exp (inside the leeway), and past a maintenance sweep that began
    // after it: a login state that expired long ago is gone once one ran.
    await waitFor(() => nowSec() > exp + 1, { timeoutMs: 10000, intervalMs: 100, message: 'exp not passed' });
    withDb(d.dir, (db) => db.prepare(`INSERT INTO oauth_states (hash, provider, flow, redirect_uri, created, expires)
      VALUES (?, 'x', 'browser', 'x', 1, 2)`).run(Buffer.alloc(32, 5)));
    await waitFor(() => withDb(d.dir, (db) => Number(db.prepare('SELECT count(*) AS n FROM oauth_states').get().n)) === 0,
      { timeoutMs: 5000, intervalMs: 100, message: 'no maintenance sweep ran' });
    const still = await validate(d, pb.access_token);
    assert.equal(still.status, 200, `an unrevoked token is still accepted in the leeway: ${still.text()}`);
    let v = await validate(d, pa.access_token);
    assert.equal(v.status, 401, 'the revoked token is refused after exp and a sweep');
    assert.match(v.json().error_description, /revoked/);
    assert.equal(familyRow(d, a.sid)?.revoked, 1, 'the revoked session is not purged');

    // "user logout" now still reaches the expired-but-accepted session b, and
    // the daemon's reload after that write keeps a's revocation.
    const out = await runCommand(['user', 'logout', b.user], { dir: d.dir });
    assert.equal(out.code, 0, out.stderr);
    await waitFor(async () => (await validate(d, pb.access_token)).status === 401,
      { timeoutMs: 2500, intervalMs: 100, message: 'the logged-out session is still accepted in the leeway' });
    v = await validate(d, pb.access_token);
    assert.match(v.json().error_description, /revoked/);
    v = await validate(d, pa.access_token);
    assert.equal(v.status, 401, 'the revoked token is refused after a reload');
    assert.match(v.json().error_description, /revoked/);

    // And after a restart (the loader at start).
    await d.stop({ keepDir: true });
    const d2 = await startDaemon({ dir: d.dir });
    try {
      for (const t of [pa.access_token, pb.access_token]) {
        v = await validate(d2, t);
        assert.equal(v.status, 401, 'refused after a restart');
        assert.match(v.json().error_description, /revoked/);
      }
    } finally {
      await d2.stop();
    }
  } finally {
    if (!d.exitStatus) await d.stop();
  }
});

test('/auth/revoke (RFC 7009) always answers 200 and revokes what it is given', async () => {
  const d = await startDaemon({ config: { jwt: { issuer: ISS } } });
  const revoke = (body, type = 'application/x-www-form-urlencoded') => d.request('/auth/revoke', {
    method: 'POST', headers: { 'Content-Type': type }, body,
  });
  try {
    // Junk, unknown and malformed tokens: 200, nothing said.
    for (const t of ['junk', `bsr_${'Z'.repeat(43)}`, `bsk_${'Z'.repeat(43)}`, 'eyJhbGciOiJub25lIn0.e30.', 'a.b.c']) {
      const r = await revoke(`token=${encodeURIComponent(t)}&token_type_hint=refresh_token`);
      assert.equal(r.status, 200, `${t}: ${r.text()}`);
      assert.deepEqual(r.json(), {});
    }
    // A refresh token: its family ends.
    const s1 = seedSession(d.dir);
    const p1 = (await refresh(d, s1.refresh)).json();
    assert.equal((await revoke(`token=${p1.refresh_token}&token_type_hint=refresh_token`)).status, 200);
    assert.equal((await validate(d, p1.access_token)).status, 401);
    assert.equal((await refresh(d, p1.refresh_token)).status, 400);
    // Twice is fine.
    assert.equal((await revoke(`token=${p1.refresh_token}`)).status, 200);
    // An access token (JSON body): its family ends too.
    const s2 = seedSession(d.dir);
    const p2 = (await refresh(d, s2.refresh)).json();
    assert.equal((await revoke(JSON.stringify({ token: p2.access_token }), 'application/json')).status, 200);
    assert.equal((await validate(d, p2.access_token)).status, 401);
    assert.equal(familyRow(d, s2.sid).revoked, 1);
    // An API key.
    const keyResp = await d.request('/api/keys', {
      method: 'POST', headers: { Authorization: `Bearer ${(await refresh(d, seedSession(d.dir).refresh)).json().access_token}`, 'Content-Type': 'application/json' }, body: '{}',
    });
    assert.equal(keyResp.status, 201, keyResp.text());
    const key = keyResp.json().key;
    assert.equal((await d.request('/auth/validate', { headers: { 'X-Api-Key': key } })).status, 200);
    assert.equal((await revoke(`token=${key}&token_type_hint=access_token`)).status, 200);
    assert.equal((await d.request('/auth/validate', { headers: { 'X-Api-Key': key } })).status, 401);
    // A request without a token is malformed (RFC 7009 2.2.1: invalid_request).
    assertOauthError(await revoke('token_type_hint=refresh_token'), 400, 'invalid_request', 'no token');
  } finally {
    await d.stop();
  }
});

test('a refresh for a disabled user or an expired session is refused', async () => {
  const d = await startDaemon({ config: { jwt: { issuer: ISS } } });
  try {
    const s = seedSession(d.dir, { user: 'test:dora', email: 'dora@example.com' });
    withDb(d.dir, (db) => db.prepare('UPDATE users SET disabled = 1 WHERE id = ?').run(s.user));
    await sleep(1500); // the daemon notices another process's write
    const r = await refresh(d, s.refresh);
    assertOauthError(r, 400, 'invalid_grant', 'disabled user');
    assert.match(r.json().error_description, /disabled/);
    assert.equal(familyRow(d, s.sid).revoked, 1);

    const e = seedSession(d.dir, { user: 'test:ed', email: 'ed@example.com', ttl: -10 });
    const r2 = await refresh(d, e.refresh);
    assertOauthError(r2, 400, 'invalid_grant', 'expired session');
    assert.match(r2.json().error_description, /expired/);
  } finally {
    await d.stop();
  }
});

test('the token endpoint takes grant_type=refresh_token too; /auth/login leads to the sign-in', async () => {
  const d = await startDaemon({ config: { jwt: { issuer: ISS } } });
  try {
    const s = seedSession(d.dir);
    // Form, as OAuth clients send it to the metadata's token_endpoint.
    let r = await d.request('/auth/token', {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: `grant_type=refresh_token&refresh_token=${encodeURIComponent(s.refresh)}`,
    });
    assert.equal(r.status, 200, r.text());
    const p = r.json();
    assert.equal((await validate(d, p.access_token)).status, 200);
    // JSON with grant_type.
    r = await d.request('/auth/token', {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ grant_type: 'refresh_token', refresh_token: p.refresh_token }),
    });
    assert.equal(r.status, 200, r.text());
    // Anything else is the authorization code exchange, which wants its fields.
    r = await d.request('/auth/token', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}',
    });
    assertOauthError(r, 400, 'invalid_request', 'code exchange without fields');
    const meta = (await d.request('/.well-known/oauth-authorization-server')).json();
    assert.equal(new URL(meta.token_endpoint).pathname, '/oauth/token');
    assert.equal(new URL(meta.authorization_endpoint).pathname, '/auth/login');
    // Without providers, /auth/login leads to the start page.
    r = await d.request('/auth/login');
    assert.equal(r.status, 302);
    assert.equal(r.headers.location, '/');
  } finally {
    await d.stop();
  }
});
