// Faults of a PostgreSQL-backed proxy (lib/cluster.mjs): the database down
// when a daemon starts (it starts, says why once, answers 503 where it needs
// the database, and recovers by itself); the database lost while the daemon
// runs (the state loaded last serves for database.offline_grace, then 503);
// the server restarted in the middle of a load on three daemons (no crash,
// no rotation a client was told about lost, every usage row written once);
// kill -9 of one daemon during a refresh storm on all three (every client
// that got a 200 holds a working pair); a slow database (the loop keeps
// serving /health and relayed streams); a commit whose answer is lost (the
// usage batch written again adds no row twice). Every wait is bounded; no
// assertion is on speed.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import {
  clusterConfig, sharedFiles, startCluster, startLb, startPg, startPgProxy, waitReady,
} from './lib/cluster.mjs';
import { startDaemon } from './lib/daemon.mjs';
import { startFakeOidc } from './lib/fake-oidc-bad.mjs';
import {
  MODEL, fetchLogin, loginConfig, startBedrock, tokenFromHtml,
} from './lib/login.mjs';
import { scrape, metricValue } from './lib/relay.mjs';
import { waitFor } from './lib/util.mjs';

const J = { 'Content-Type': 'application/json' };
const BODY = JSON.stringify({ anthropic_version: 'bedrock-2023-05-31', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] });
const refresh = (d, token) => d.request('/auth/refresh', { method: 'POST', headers: J, body: JSON.stringify({ refresh_token: token }) });
const validate = (d, token) => d.request('/auth/validate', { headers: { Authorization: `Bearer ${token}` } });
const invoke = (d, token, headers = {}) => d.request(`/model/${MODEL}/invoke`, {
  method: 'POST', headers: { ...J, Authorization: `Bearer ${token}`, ...headers }, body: BODY,
});
const refreshFromHtml = (html) => /<textarea id="refresh-token"[^>]*>([^<]*)<\/textarea>/.exec(html)?.[1] ?? null;

let op; let bedrock;
const cleanups = [];
after(async () => {
  for (const f of cleanups.reverse()) await f().catch(() => {});
  await op?.close();
  await bedrock?.close();
});

async function fakes() {
  op ??= await startFakeOidc();
  bedrock ??= await startBedrock();
  return loginConfig({
    bedrock,
    providers: { op: { issuer: op.issuer, client_id: op.clientId, client_secret: op.clientSecret } },
    over: { jwt: { refresh_reuse_grace: 2 }, oauth: { max_pending_logins: 1000 } },
  });
}

/** A session of a new user, signed in through lb (or a daemon). */
async function session(via, who) {
  op.user = { sub: who, email: `${who}@example.com`, email_verified: true, name: who, groups: [] };
  const { res, text } = await fetchLogin(via, 'op');
  assert.equal(res.status, 200, text);
  return { access: tokenFromHtml(text), refresh: refreshFromHtml(text) };
}

test('PostgreSQL down at start: the daemon starts, says why once, answers 503, and recovers by itself', async () => {
  const pg = await startPg();
  cleanups.push(() => pg.close());
  await pg.stop();
  const lb = await startLb();
  cleanups.push(() => lb.close());
  const cfg = clusterConfig({ url: pg.url, shared: sharedFiles(), publicUrl: lb.url, over: await fakes() });
  const d = await startDaemon({ config: cfg, env: { AWS_EC2_METADATA_DISABLED: 'true' }, waitDatabase: false });
  cleanups.push(() => d.stop());
  lb.setBackends([d]);
  // Every connection tries again and again (backoff 0.5, 1, 2 s...): said once.
  await delay(3500);
  const said = d.logs.filter((e) => /^database: .*refused/i.test(e?.msg ?? ''));
  assert.equal(said.length, 1, `the outage said once: ${JSON.stringify(said)}`);
  assert.equal(said[0].level, 'warn');

  assert.equal((await d.request('/health')).status, 200, 'alive');
  const ready = await d.request('/health/ready');
  assert.equal(ready.status, 503);
  assert.equal(ready.json().components.database.status, 'unavailable');

  const login = await d.request('/auth/login/op');
  assert.equal(login.status, 503, 'sign-in: not sent to the IdP only to fail later');
  assert.match(login.text(), /needs the database/);
  const authz = await d.request(`/auth/authorize/op?redirect_uri=${encodeURIComponent('http://127.0.0.1:9/cb')}&code_challenge=${'a'.repeat(43)}&code_challenge_method=S256`);
  assert.equal(authz.status, 503);
  assert.match(authz.json().error_description, /needs the database/);
  const rf = await refresh(d, `bsr_${'A'.repeat(43)}`);
  assert.equal(rf.status, 503);
  assert.equal(rf.json().error, 'temporarily_unavailable');
  assert.match(rf.json().error_description, /database is unreachable/);
  const key = await d.request('/api/keys', { method: 'POST', headers: { ...J, Authorization: 'Bearer eyJhbGciOiJFZERTQSJ9.e30.c2ln' }, body: '{}' });
  assert.equal(key.status, 503, 'key creation');
  const inv = await invoke(d, 'eyJhbGciOiJFZERTQSJ9.e30.c2ln');
  assert.equal(inv.status, 503, 'nothing to check a token against: 503, not 401');

  // The server comes up: no restart needed.
  await pg.resume();
  await waitReady(d, 60000);
  assert.ok(d.logs.some((e) => /^database: available again after/.test(e?.msg ?? '')), 'said when it is back');
  const s = await session(lb, 'backagain');
  assert.equal((await invoke(d, s.access)).status, 200);
  assert.equal((await refresh(d, s.refresh)).status, 200);
});

test('the database lost while running: the state loaded last serves for database.offline_grace, then 503; back without a restart', async () => {
  const GRACE = 4;
  const pg = await startPg();
  cleanups.push(() => pg.close());
  const lb = await startLb();
  cleanups.push(() => lb.close());
  const c = await startCluster({ pg, lb, n: 1, config: { ...await fakes(), database: { offline_grace: GRACE } } });
  cleanups.push(() => c.stop());
  const [d] = c.daemons;
  const s = await session(lb, 'graceful');
  const mk = await d.request('/api/keys', { method: 'POST', headers: { ...J, Authorization: `Bearer ${s.access}` }, body: '{"name":"k"}' });
  assert.equal(mk.status, 201, mk.text());
  const apiKey = mk.json().key;

  await pg.stop();
  const down = Date.now();
  // Within the grace: relayed calls and checks go on, from memory.
  assert.equal((await invoke(d, s.access)).status, 200, 'a token, within the grace');
  assert.equal((await d.request('/auth/validate', { headers: { 'X-Api-Key': apiKey } })).status, 200, 'an API key');
  // What needs the database: 503 at once, saying why.
  const rf = await refresh(d, s.refresh);
  assert.equal(rf.status, 503);
  assert.match(rf.json().error_description, /database is unreachable/);
  const lo = await d.request('/auth/logout', { method: 'POST', headers: { Authorization: `Bearer ${s.access}` } });
  assert.equal(lo.status, 503);
  assert.match(lo.json().error_description, /database is unreachable/);
  const k2 = await d.request('/api/keys', { method: 'POST', headers: { ...J, Authorization: `Bearer ${s.access}` }, body: '{}' });
  assert.equal(k2.status, 503);
  assert.match(k2.json().error_description, /database is unreachable/);
  assert.equal((await d.request('/auth/login/op')).status, 503);

  // After the grace: the revocation state is too old to trust.
  let last;
  await waitFor(async () => {
    last = await invoke(d, s.access);
    return last.status !== 200;
  }, { timeoutMs: (GRACE + 15) * 1000, intervalMs: 100 });
  const served = Date.now() - down;
  assert.equal(last.status, 503, last.text());
  assert.match(last.text(), /revocation state is stale/);
  assert.ok(served >= (GRACE - 1) * 1000, `served from memory for the grace (${served} ms)`);
  const v = await validate(d, s.access);
  assert.equal(v.status, 503);
  assert.match(v.json().error_description, /database\.offline_grace/);

  // Back, without a restart.
  await pg.resume();
  await waitFor(async () => (await invoke(d, s.access)).status === 200, { timeoutMs: 60000, intervalMs: 200 });
  assert.equal((await refresh(d, s.refresh)).status, 200);
});

test('PostgreSQL restarted in the middle of a load on three daemons: no crash, no rotation lost, usage rows once each', async () => {
  const pg = await startPg();
  cleanups.push(() => pg.close());
  const lb = await startLb();
  cleanups.push(() => lb.close());
  const c = await startCluster({ pg, lb, n: 3, config: await fakes() });
  cleanups.push(() => c.stop());
  const clients = [];
  for (let i = 0; i < 6; i++) clients.push({ pair: await session(lb, `load${i}`), rotations: 0, rids: [], r503: 0 });
  let stop = false;
  const loops = clients.map(async (cl, i) => {
    let n = 0;
    while (!stop) {
      try {
        const r = await refresh(lb, cl.pair.refresh);
        if (r.status === 200) {
          cl.pair = { access: r.json().access_token, refresh: r.json().refresh_token };
          cl.rotations++;
        } else if (r.status === 503) cl.r503++;
        else assert.fail(`refresh: ${r.status} ${r.text()}`);
        const rid = `restart-${i}-${n++}`;
        const v = await invoke(lb, cl.pair.access, { 'X-Request-Id': rid });
        if (v.status === 200) cl.rids.push(rid);
      } catch (e) {
        if (e.code === 'ERR_ASSERTION') throw e;
      }
      await delay(20);
    }
  });
  await delay(1500);
  await pg.stop();
  await delay(1500);
  await pg.resume();
  await Promise.all(c.daemons.map((d) => waitReady(d, 60000)));
  await delay(2000);
  stop = true;
  await Promise.all(loops);

  for (const d of c.daemons) {
    assert.equal(d.exitStatus, null, 'no daemon died');
    assert.equal((await d.request('/health')).status, 200);
  }
  assert.ok(clients.some((cl) => cl.r503 > 0), 'the restart was felt (503 while it was down)');
  // Every rotation a client was told about holds: its newest pair works.
  for (const [i, cl] of clients.entries()) {
    assert.ok(cl.rotations > 0);
    const r = await refresh(c.daemons[i % 3], cl.pair.refresh);
    assert.equal(r.status, 200, `client ${i}: ${r.text()}`);
  }
  // Every relayed call that was answered has its usage row, once.
  const rids = clients.flatMap((cl) => cl.rids);
  const list = rids.map((x) => `'${x}'`).join(',');
  await waitFor(async () => (await pg.value(`SELECT count(DISTINCT request_id) FROM usage WHERE request_id IN (${list})`)) === rids.length,
    { timeoutMs: 20000, intervalMs: 250, message: 'usage rows written after the restart' });
  await delay(1500);
  assert.equal(await pg.value(`SELECT count(*) FROM usage WHERE request_id IN (${list})`), rids.length, 'none twice');
  for (const d of c.daemons) {
    assert.equal(metricValue(await scrape(d), 'bsp_usage_rows_dropped_total') ?? 0, 0, 'none dropped');
  }
});

test('kill -9 of one daemon during a refresh storm on all three: every client that got a 200 holds a working pair', async () => {
  const pg = await startPg();
  cleanups.push(() => pg.close());
  const lb = await startLb();
  cleanups.push(() => lb.close());
  const c = await startCluster({ pg, lb, n: 3, config: await fakes() });
  cleanups.push(() => c.stop());
  const clients = [];
  for (let i = 0; i < 9; i++) clients.push({ pair: await session(lb, `storm${i}`), ok: 0, failed: 0 });
  let stop = false;
  const loops = clients.map(async (cl) => {
    while (!stop) {
      try {
        const r = await refresh(lb, cl.pair.refresh);
        if (r.status === 200) {
          cl.pair = { access: r.json().access_token, refresh: r.json().refresh_token };
          cl.ok++;
        } else cl.failed++;	// the same token again, within the grace window
      } catch {
        cl.failed++;
      }
      await delay(5);
    }
  });
  await delay(1000);
  await c.daemons[1].kill9();
  await delay(1500);
  stop = true;
  await Promise.all(loops);
  lb.setBackends([c.daemons[0], c.daemons[2]]);

  for (const [i, cl] of clients.entries()) {
    assert.ok(cl.ok > 0, `client ${i} got a 200`);
    for (const d of [c.daemons[0], c.daemons[2]]) {
      assert.equal((await validate(d, cl.pair.access)).status, 200, `client ${i}'s access token`);
    }
    const r = await refresh(lb, cl.pair.refresh);
    assert.equal(r.status, 200, `client ${i}'s refresh token: ${r.text()}`);
  }
  assert.equal(await pg.value("SELECT count(*) FROM token_families WHERE revoked != 0 AND user_id LIKE 'op:storm%'"), 0,
    'no family taken for reuse');
});

test('a slow database: /health and a relayed stream are served while a refresh waits on it', async () => {
  const pg = await startPg();
  cleanups.push(() => pg.close());
  const px = await startPgProxy(pg, { latencyMs: 0 });
  cleanups.push(() => px.close());
  const lb = await startLb();
  cleanups.push(() => lb.close());
  const c = await startCluster({ url: px.url, lb, n: 1, config: { ...await fakes(), database: { timeout: 30 } } });
  cleanups.push(() => c.stop());
  const [d] = c.daemons;
  const s = await session(lb, 'slowpoke');
  px.latencyMs = 300;	// each way, every packet

  let refreshed = null;
  const pending = refresh(d, s.refresh).then((r) => { refreshed = r; return r; });
  await delay(100);
  const h = await d.request('/health');
  assert.equal(h.status, 200);
  assert.equal(refreshed, null, '/health answered while the refresh waited on the database');
  const st = await d.request(`/model/${MODEL}/invoke-with-response-stream`, {
    method: 'POST', headers: { ...J, Authorization: `Bearer ${s.access}` }, body: BODY,
  });
  assert.equal(st.status, 200, st.text());
  assert.ok(st.body.length > 100, 'a whole stream');
  assert.equal(refreshed, null, 'the stream was relayed while the refresh waited on the database');
  assert.equal((await validate(d, s.access)).status, 200);
  const r = await pending;
  assert.equal(r.status, 200, r.text());
  px.latencyMs = 0;
});

test('a commit whose answer is lost: the usage batch is written again, and no row twice', async () => {
  const pg = await startPg();
  cleanups.push(() => pg.close());
  const px = await startPgProxy(pg);
  cleanups.push(() => px.close());
  const lb = await startLb();
  cleanups.push(() => lb.close());
  const c = await startCluster({ url: px.url, lb, n: 1, config: await fakes() });
  cleanups.push(() => c.stop());
  const [d] = c.daemons;
  const s = await session(lb, 'lostack');
  px.cutNextCommit(/INSERT INTO usage/);
  const rid = `lost-ack-${Date.now()}`;
  assert.equal((await invoke(d, s.access, { 'X-Request-Id': rid })).status, 200);
  await waitFor(() => px.cuts === 1, { timeoutMs: 10000, message: 'the usage batch committed, its answer cut' });
  assert.equal(await pg.value(`SELECT count(*) FROM usage WHERE request_id = '${rid}'`), 1, 'the server has the row');
  // The daemon does not know: it writes the batch again once connected again.
  await d.waitForLog((e) => /usage: cannot write/.test(e?.msg ?? ''), 10000);
  await waitFor(() => d.logs.some((e) => /^database: available again/.test(e?.msg ?? '')), { timeoutMs: 10000 });
  await delay(2500);	// two flush ticks
  assert.equal(await pg.value(`SELECT count(*) FROM usage WHERE request_id = '${rid}'`), 1, 'still one row');
  const q = await scrape(d);
  assert.equal(metricValue(q, 'bsp_usage_rows_dropped_total') ?? 0, 0);
});
