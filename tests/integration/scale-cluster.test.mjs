// Three daemons on three ports against one PostgreSQL, behind a round-robin
// load balancer without stickiness (lib/cluster.mjs): they start together on
// an empty database and end up with one schema and one signing key; a
// sign-in (browser and API flow) finishes on another daemon than the one
// that started it; refresh rotation stays single-use across daemons and
// reuse seen by any of them revokes the family everywhere; every revocation
// and the signing-key rotation reach every daemon within a second (measured:
// the delays are printed); all sign with one key and publish one JWKS; the
// rate limit holds for a user driven through all three; usage and audit
// rows from every daemon land once; a daemon given another KEK refuses to
// start.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import {
  runDaemonToExit, seenWithin, sharedFiles, startCluster, startLb, startPg,
} from './lib/cluster.mjs';
import { runCommand } from './lib/daemon.mjs';
import { CLIENT_ID, CLIENT_SECRET, startFakeIdp } from './lib/fake-idp.mjs';
import { startFakeOidc } from './lib/fake-oidc-bad.mjs';
import {
  MODEL, browserLogin, fetchLogin, launchBrowser, loginConfig, newContext, startBedrock, tokenFromHtml,
} from './lib/login.mjs';
import { decodeJwt } from './lib/tokens.mjs';
import { waitFor } from './lib/util.mjs';

const RPM = 20;			// rate_limits.requests_per_minute
const GRACE = 2;		// jwt.refresh_reuse_grace
const BOUND_MS = 1000;		// every daemon honours a write within this

let pg; let lb; let c; let idp; let op; let bedrock; let browser;
const delays = [];

before(async () => {
  pg = await startPg();
  lb = await startLb();
  idp = await startFakeIdp();
  op = await startFakeOidc();
  bedrock = await startBedrock();
  idp.setRedirectUris([`${lb.url}/auth/callback/idp`, 'http://127.0.0.1:47913/oauth/callback']);
  c = await startCluster({
    pg,
    lb,
    n: 3,
    together: true,
    config: loginConfig({
      bedrock,
      providers: {
        idp: { issuer: idp.url, client_id: CLIENT_ID, client_secret: CLIENT_SECRET },
        op: { issuer: op.issuer, client_id: op.clientId, client_secret: op.clientSecret },
      },
      over: {
        jwt: { refresh_reuse_grace: GRACE },
        rate_limits: { requests_per_minute: RPM },
        oauth: { max_pending_logins: 1000 },
      },
    }),
  });
});

after(async () => {
  if (delays.length) {
    const lines = delays.map((x) => `#   ${x.what.padEnd(28)} ${x.ms.map((m) => `${m} ms`).join(', ')}`);
    process.stderr.write(`# propagation delays (daemon 0, 1, 2):\n${lines.join('\n')}\n`);
  }
  await browser?.close();
  let err = null;
  for (const f of [c, lb, idp, op, bedrock]) {
    try { await (f?.stop ?? f?.close)?.call(f); } catch (e) { err ??= e; }
  }
  await pg?.close();
  if (err) throw err;
});

const J = { 'Content-Type': 'application/json' };
const refresh = (d, token) => d.request('/auth/refresh', { method: 'POST', headers: J, body: JSON.stringify({ refresh_token: token }) });
const validate = (d, token) => d.request('/auth/validate', { headers: { Authorization: `Bearer ${token}` } });
const validateKey = (d, key) => d.request('/auth/validate', { headers: { 'X-Api-Key': key } });
const invoke = (d, token, headers = {}) => d.request(`/model/${MODEL}/invoke`, {
  method: 'POST',
  headers: { ...J, Authorization: `Bearer ${token}`, ...headers },
  body: JSON.stringify({ anthropic_version: 'bedrock-2023-05-31', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] }),
});
const refreshFromHtml = (html) => /<textarea id="refresh-token"[^>]*>([^<]*)<\/textarea>/.exec(html)?.[1] ?? null;

/** A session of a new user, signed in through the load balancer (fake-oidc-bad redirects straight back). */
async function session(who) {
  op.user = { sub: who, email: `${who}@example.com`, email_verified: true, name: who, groups: [] };
  const { res, text } = await fetchLogin(lb, 'op');
  assert.equal(res.status, 200, text);
  const s = { user: `op:${who}`, access: tokenFromHtml(text), refresh: refreshFromHtml(text) };
  assert.ok(s.access && s.refresh, 'tokens on the success page');
  return s;
}

/** Record and check the delays of one write as every daemon saw it. */
function record(what, ms) {
  delays.push({ what, ms });
  for (const [i, m] of ms.entries()) assert.ok(m < BOUND_MS, `${what}: daemon ${i} saw it after ${m} ms (bound ${BOUND_MS} ms)`);
}

/** Run an admin command against the cluster's database (daemon 0's configuration). */
async function admin(...args) {
  const r = await runCommand(args, { dir: c.daemons[0].dir });
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  return r;
}

test('three daemons started together on an empty database: one migration, one active signing key, one JWKS', async () => {
  const migrated = c.daemons.map((d) => d.logs.filter((e) => /migrating schema 0 -> 1/.test(e?.msg ?? '')).length);
  assert.deepEqual(migrated.sort(), [0, 0, 1], `one daemon migrated: ${migrated}`);
  assert.equal(await pg.value('SELECT count(*) FROM bsp_schema'), 1);
  assert.equal(await pg.value('SELECT count(*) FROM signing_keys WHERE retired IS NULL'), 1);
  assert.equal(await pg.value('SELECT count(*) FROM signing_keys'), 1, 'no key made and thrown away');
  const jwks = await Promise.all(c.daemons.map(async (d) => (await d.request('/.well-known/jwks.json')).text()));
  assert.equal(new Set(jwks).size, 1, 'the same JWKS everywhere');
  assert.equal(JSON.parse(jwks[0]).keys.length, 1);
});

test('a browser sign-in whose callback lands on another daemon succeeds', async () => {
  browser ??= await launchBrowser();
  const ctx = await newContext(browser);
  let started = null;
  lb.pick = (req, rr) => {
    if (req.url.startsWith('/auth/login/')) started = rr;
    // The callback: never the daemon that started the sign-in.
    if (req.url.startsWith('/auth/callback/') && started !== null) return (started + 1) % 3;
    return rr;
  };
  try {
    const page = await ctx.newPage();
    await browserLogin(page, { url: lb.url }, { button: /idp/i });
    const html = await page.content();
    const access = tokenFromHtml(html);
    assert.ok(access, `a token on the success page: ${html.slice(0, 400)}`);
    const login = lb.log.filter((e) => e.path.startsWith('/auth/login/idp')).at(-1);
    const cb = lb.log.filter((e) => e.path.startsWith('/auth/callback/idp')).at(-1);
    assert.notEqual(login.backend, cb.backend, 'started on one daemon, finished on another');
    assert.equal(cb.status, 200);
    for (const d of c.daemons) assert.equal((await validate(d, access)).status, 200, `valid at ${d.url}`);
  } finally {
    lb.pick = null;
    await ctx.close().catch(() => {});
  }
});

test('the API flow: authorize at one daemon, exchange the code at another', async () => {
  const { createHash, randomBytes } = await import('node:crypto');
  const LOOPBACK = 'http://127.0.0.1:47913/oauth/callback';
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const [a, b] = c.daemons;
  // The callback URI the IdP knows is the load balancer's; the client's is its loopback one.
  const r = await a.request(`/auth/authorize/idp?redirect_uri=${encodeURIComponent(LOOPBACK)}&code_challenge=${challenge}&code_challenge_method=S256`);
  assert.equal(r.status, 200, r.text());
  const { authorization_url: url, state } = r.json();
  browser ??= await launchBrowser();
  const ctx = await newContext(browser);
  try {
    const page = await ctx.newPage();
    const caught = new Promise((res) => {
      page.on('request', (q) => { if (q.url().startsWith(LOOPBACK)) res(q.url()); });
    });
    await page.goto(url);
    await page.fill('input[name=login]', 'dave');
    await page.fill('input[name=password]', 'pw');
    await page.click('button[type=submit]');
    await page.waitForSelector('form input[name=prompt][value=consent]', { state: 'attached' });
    await page.click('button[type=submit]').catch(() => {});
    const back = new URL(await caught).searchParams;
    const t = await b.request('/auth/token', {
      method: 'POST',
      headers: J,
      body: JSON.stringify({ provider: 'idp', authorization_code: back.get('code'), redirect_uri: LOOPBACK, state, code_verifier: verifier }),
    });
    assert.equal(t.status, 200, t.text());
    const tok = t.json();
    assert.equal((await validate(c.daemons[2], tok.access_token)).status, 200);
    // The same code and state at the third daemon: spent, whoever redeemed it.
    const again = await c.daemons[2].request('/auth/token', {
      method: 'POST',
      headers: J,
      body: JSON.stringify({ provider: 'idp', authorization_code: back.get('code'), redirect_uri: LOOPBACK, state, code_verifier: verifier }),
    });
    assert.equal(again.status, 400, again.text());
    assert.equal(await pg.value("SELECT count(*) FROM token_families WHERE user_id = 'idp:dave'"), 1, 'one session');
  } finally {
    await ctx.close().catch(() => {});
  }
});

test('the same refresh token at two (and three) daemons at once yields one successor', async () => {
  for (const n of [2, 2, 3, 3]) {
    const s = await session(`twin${n}${Math.random().toString(36).slice(2, 6)}`);
    const rs = await Promise.all(c.daemons.slice(0, n).map((d) => refresh(d, s.refresh)));
    for (const r of rs) assert.equal(r.status, 200, r.text());
    const successors = new Set(rs.map((r) => r.json().refresh_token));
    assert.equal(successors.size, 1, 'one successor, answered to every daemon');
    const sid = decodeJwt(s.access).payload.sid;
    assert.equal(await pg.value(`SELECT count(*) FROM refresh_tokens WHERE family_id = '${sid}'`), 2, 'two tokens in the family');
    assert.equal(await pg.value(`SELECT revoked FROM token_families WHERE id = '${sid}'`), 0, 'not taken for reuse');
    // The successor works, at another daemon.
    const next = await refresh(c.daemons[n - 1], [...successors][0]);
    assert.equal(next.status, 200, next.text());
  }
});

test('reuse detected at any daemon revokes the family at every daemon within a second', async () => {
  const s = await session('reuser');
  const r1 = await refresh(c.daemons[0], s.refresh);
  assert.equal(r1.status, 200);
  const p1 = r1.json();
  await delay((GRACE + 1) * 1000 + 200);	// used_at has whole seconds
  for (const d of c.daemons) assert.equal((await validate(d, p1.access_token)).status, 200);
  // The old token, after the grace window, at another daemon: reuse.
  const r2 = await refresh(c.daemons[1], s.refresh);
  const t0 = Date.now();
  assert.equal(r2.status, 400, r2.text());
  assert.equal(r2.json().error, 'invalid_grant');
  record('reuse detection', await seenWithin(c.daemons, async (d) => (await validate(d, p1.access_token)).status === 401, { t0 }));
  // The thief's successor is dead too, at the third daemon.
  assert.equal((await refresh(c.daemons[2], p1.refresh_token)).status, 400);
  const sid = decodeJwt(s.access).payload.sid;
  const reason = (await pg.query(`SELECT revoked_reason FROM token_families WHERE id = '${sid}'`))[0][0];
  assert.match(reason, /reuse/);
});

test('user disable, user logout, /auth/logout, key revoke and signing-key rotation reach every daemon within a second', async () => {
  // user disable
  const a = await session('disabled1');
  for (const d of c.daemons) assert.equal((await validate(d, a.access)).status, 200);
  await admin('user', 'disable', a.user);
  let t0 = Date.now();
  record('user disable', await seenWithin(c.daemons, async (d) => (await validate(d, a.access)).status === 401, { t0 }));

  // user logout
  const b = await session('loggedout1');
  for (const d of c.daemons) assert.equal((await validate(d, b.access)).status, 200);
  await admin('user', 'logout', b.user);
  t0 = Date.now();
  record('user logout', await seenWithin(c.daemons, async (d) => (await validate(d, b.access)).status === 401, { t0 }));

  // /auth/logout at one daemon
  const e = await session('weblogout1');
  for (const d of c.daemons) assert.equal((await validate(d, e.access)).status, 200);
  const lo = await c.daemons[2].request('/auth/logout', { method: 'POST', headers: { Authorization: `Bearer ${e.access}` } });
  t0 = Date.now();
  assert.equal(lo.status, 200, lo.text());
  record('/auth/logout (daemon 2)', await seenWithin(c.daemons, async (d) => (await validate(d, e.access)).status === 401, { t0 }));

  // key revoke
  const k = await session('keyowner1');
  const mk = await c.daemons[1].request('/api/keys', { method: 'POST', headers: { ...J, Authorization: `Bearer ${k.access}` }, body: JSON.stringify({ name: 'k' }) });
  assert.equal(mk.status, 201, mk.text());
  const key = mk.json();
  await seenWithin(c.daemons, async (d) => (await validateKey(d, key.key)).status === 200, { timeoutMs: 2000 });
  await admin('key', 'revoke', key.id);
  t0 = Date.now();
  record('key revoke', await seenWithin(c.daemons, async (d) => (await validateKey(d, key.key)).status === 401, { t0 }));

  // signing-key rotation
  const before = (await c.daemons[0].request('/.well-known/jwks.json')).json().keys.map((x) => x.kid);
  await admin('signing-key', 'rotate');
  t0 = Date.now();
  const [[kid]] = await pg.query('SELECT kid FROM signing_keys WHERE retired IS NULL');
  assert.ok(!before.includes(kid), 'a new key');
  record('signing-key rotate', await seenWithin(c.daemons, async (d) => (await d.request('/.well-known/jwks.json')).json().keys.some((x) => x.kid === kid), { t0 }));
  // Every daemon now signs with it; the old key still verifies.
  const r = await session('afterrotate');
  let pair = r;
  for (const d of c.daemons) {
    const rr = await refresh(d, pair.refresh);
    assert.equal(rr.status, 200, rr.text());
    pair = { access: rr.json().access_token, refresh: rr.json().refresh_token };
    assert.equal(decodeJwt(pair.access).header.kid, kid, `daemon at ${d.url} signs with the new key`);
  }
  const jwks = await Promise.all(c.daemons.map(async (d) => (await d.request('/.well-known/jwks.json')).text()));
  assert.equal(new Set(jwks).size, 1, 'one JWKS');
  assert.equal(JSON.parse(jwks[0]).keys.length, 2, 'the old key keeps verifying');
});

test('all daemons sign with the same active key and publish the same JWKS; a token of one works at all', async () => {
  const s = await session('signer');
  const kids = [];
  let pair = s;
  for (const d of c.daemons) {
    const r = await refresh(d, pair.refresh);
    assert.equal(r.status, 200);
    pair = { access: r.json().access_token, refresh: r.json().refresh_token };
    kids.push(decodeJwt(pair.access).header.kid);
    for (const v of c.daemons) assert.equal((await validate(v, pair.access)).status, 200);
  }
  assert.equal(new Set(kids).size, 1, `one signing key: ${kids}`);
  const jwks = await Promise.all(c.daemons.map(async (d) => (await d.request('/.well-known/jwks.json')).text()));
  assert.equal(new Set(jwks).size, 1);
  assert.ok(JSON.parse(jwks[0]).keys.some((k) => k.kid === kids[0]));
});

test('usage and audit rows from every daemon land, none lost, none doubled', async () => {
  const users = await Promise.all(['usage1', 'usage2', 'usage3'].map((u) => session(u)));
  const ids = [];
  const served = new Set();
  for (let i = 0; i < 30; i++) {
    const rid = `scale-usage-${i}-${Math.random().toString(36).slice(2, 8)}`;
    const mark = lb.log.length;
    const r = await lb.request(`/model/${MODEL}/invoke`, {
      method: 'POST',
      headers: { ...J, Authorization: `Bearer ${users[i % 3].access}`, 'X-Request-Id': rid },
      body: JSON.stringify({ anthropic_version: 'bedrock-2023-05-31', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] }),
    });
    assert.equal(r.status, 200, r.text());
    served.add(lb.log[mark].backend);
    ids.push(rid);
  }
  assert.equal(served.size, 3, 'every daemon relayed some');
  const list = ids.map((x) => `'${x}'`).join(',');
  await waitFor(async () => (await pg.value(`SELECT count(*) FROM usage WHERE request_id IN (${list})`)) >= 30, { timeoutMs: 10000 });
  await delay(1500);	// a second flush would have doubled them by now
  const rows = await pg.query(`SELECT request_id, count(*) FROM usage WHERE request_id IN (${list}) GROUP BY request_id`);
  assert.equal(rows.length, 30, 'every call has its row');
  assert.ok(rows.every(([, n]) => n === '1'), 'none twice');

  // Audit rows: a key made at each daemon.
  const made = [];
  for (const d of c.daemons) {
    const r = await d.request('/api/keys', { method: 'POST', headers: { ...J, Authorization: `Bearer ${users[0].access}` }, body: JSON.stringify({ name: `at-${d.port}` }) });
    assert.equal(r.status, 201, r.text());
    made.push(r.json().id);
  }
  for (const id of made) {
    assert.equal(await pg.value(`SELECT count(*) FROM audit_log WHERE event = 'key_created' AND detail LIKE '%${id}%'`), 1, `one audit row for ${id}`);
  }
});

test('a user driven through all three daemons gets 429 at the limit, within the stated tolerance', async () => {
  // The windows are fixed minutes: do not straddle one's end.
  while (new Date().getSeconds() > 40) await delay(500);
  const s = await session('ratelimited');
  const PACE_MS = 100;
  let ok = 0; let refused = 0; let first429 = null;
  const t0 = Date.now();
  for (let i = 0; i < RPM * 3 && refused < 6; i++) {
    const r = await lb.request(`/model/${MODEL}/invoke`, {
      method: 'POST',
      headers: { ...J, Authorization: `Bearer ${s.access}` },
      body: JSON.stringify({ anthropic_version: 'bedrock-2023-05-31', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] }),
    });
    if (r.status === 200) ok++;
    else {
      assert.equal(r.status, 429, r.text());
      assert.ok(Number(r.headers['retry-after']) >= 1, 'Retry-After');
      refused++;
      first429 ??= Date.now();
    }
    await delay(PACE_MS);
  }
  const rate = (ok + refused) / ((Date.now() - t0) / 1000);
  // The man page: the daemons together let through at most the limit plus what the user
  // sent in the last second (each learns of the others' calls at most 1 s late).
  const tolerance = Math.ceil(rate * 1.0) + 1;
  process.stderr.write(`# rate limit ${RPM}/min through 3 daemons at ${rate.toFixed(1)} calls/s: ${ok} allowed (tolerance ${tolerance})\n`);
  assert.ok(ok >= RPM, `at least the limit was allowed (${ok})`);
  assert.ok(ok <= RPM + tolerance, `${ok} allowed: more than ${RPM} + ${tolerance}`);
  assert.ok(first429 !== null, 'then 429s');
  // Once the counts are in, every daemon refuses.
  await delay(1500);
  for (const d of c.daemons) assert.equal((await invoke(d, s.access)).status, 429, `daemon ${d.url} refuses too`);
});

test('a daemon given another KEK refuses to start, naming jwt.kek_file; the JWKS stays one', async () => {
  const other = sharedFiles();
  const jwksBefore = (await c.daemons[0].request('/.well-known/jwks.json')).text();
  const keysBefore = await pg.value('SELECT count(*) FROM signing_keys');
  const cfg = { ...c.config, jwt: { ...c.config.jwt, kek_file: other.kek } };
  const r = await runDaemonToExit(cfg);
  assert.equal(r.code, 2, `exit status: ${r.stderr}`);
  assert.match(r.stderr, /wrong KEK.*jwt\.kek_file/);
  assert.equal(await pg.value('SELECT count(*) FROM signing_keys'), keysBefore, 'no key of its own');
  for (const d of c.daemons) assert.equal((await d.request('/.well-known/jwks.json')).text(), jwksBefore);
});
