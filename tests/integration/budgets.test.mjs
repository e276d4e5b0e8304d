// Budgets (src/budget.c, src/tz.c, the relay's gate in src/route-bedrock.c,
// src/cmd-budget.c): the worst case of each call reserved before AWS is
// called, so that 20 concurrent calls against a $0.01 cap let at most 5
// through; reservations settled with the real cost (cache tokens priced);
// the window moving on at the configured zone's midnight, with the daemon's
// clock moved by libfaketime (time injected, never slept); group and key
// caps together; a restart rebuilding the spend from the usage table; the
// soft threshold; GET /auth/me against the usage command; refusals in
// Bedrock's and Anthropic's shapes.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { runCommand, startDaemon } from './lib/daemon.mjs';
import { decodeChunkEvents, encodeChunkFrame, startFakeBedrock } from './lib/fake-bedrock.mjs';
import { CREDS, REGION, relayConfig, scrape, usageRows, waitUsage } from './lib/relay.mjs';
import { auditRows, withDb } from './lib/tokens.mjs';
import { makeTempDir, waitFor } from './lib/util.mjs';

// libfaketime (Debian's libfaketime), under the machine's multiarch directory.
const FAKETIME = (() => {
  try {
    for (const d of readdirSync('/usr/lib')) {
      const f = join('/usr/lib', d, 'faketime', 'libfaketime.so.1');
      if (existsSync(f)) return f;
    }
  } catch { /* none */ }
  return '/usr/lib/faketime/libfaketime.so.1';
})();
const MODEL = 'test.priced';
const enc = encodeURIComponent;

// $1/M input, $10/M output, $0.10/M cache reads, $1.25/M and $2/M cache writes.
const PRICES = [{
  model: 'test.*', input: '1', output: '10', cache_read: '0.1', cache_write: '1.25', cache_write_1h: '2',
}];
// A body of exactly 400 bytes asking for 120 tokens: its worst case is
// 400 input tokens at the dearest input price ($2/M, a 1-hour cache
// write) and 120 output tokens at $10/M: 800 + 1200 micro-dollars, $0.002.
function body400(extra = {}) {
  const base = { anthropic_version: 'bedrock-2023-05-31', max_tokens: 120, messages: [{ role: 'user', content: '' }], ...extra };
  const len = Buffer.byteLength(JSON.stringify(base));
  base.messages[0].content = 'x'.repeat(400 - len);
  const s = JSON.stringify(base);
  assert.equal(Buffer.byteLength(s), 400);
  return s;
}
// What each call really costs: 100 in ($0.0001), 50 out ($0.0005), 1000
// cache reads ($0.0001), 100 5-minute writes ($0.000125), 100 1-hour writes
// ($0.0002): 1025 micro-dollars; 600 of them without the cache tokens.
const USAGE = {
  input_tokens: 100, output_tokens: 50, cache_read_input_tokens: 1000, cache_creation_input_tokens: 200,
  cache_creation: { ephemeral_5m_input_tokens: 100, ephemeral_1h_input_tokens: 100 },
};
const COST = 1025;

const cleanups = [];
after(async () => { for (const f of cleanups.reverse()) await f(); });

/** A fake Bedrock that holds each priced call until released, then answers with USAGE. */
async function heldBedrock() {
  const fake = await startFakeBedrock({ region: REGION, credentials: CREDS, maxSkewMs: 400 * 86400 * 1000 });
  cleanups.push(() => fake.close());
  const held = [];
  fake.setHandler(async (req, res, rec) => {
    if (!rec.modelId?.startsWith('test.')) return false;
    await new Promise((resolve) => { held.push(resolve); });
    const b = JSON.stringify({ type: 'message', role: 'assistant', content: [{ type: 'text', text: 'ok' }], usage: USAGE });
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(b) });
    res.end(b);
    return true;
  });
  const release = () => { while (held.length > 0) held.shift()(); };
  return { fake, held, release };
}

/** The daemon's clock, offset by libfaketime: env for it and for the commands, and a setter. */
function fakeClock(dir) {
  const file = join(dir, 'faketime');
  writeFileSync(file, '+0\n');
  const asan = `${process.env.ASAN_OPTIONS ?? 'detect_leaks=1:abort_on_error=0'}:verify_asan_link_order=0`;
  return {
    env: {
      LD_PRELOAD: FAKETIME, FAKETIME_TIMESTAMP_FILE: file, FAKETIME_NO_CACHE: '1', FAKETIME_DONT_FAKE_MONOTONIC: '1',
      ASAN_OPTIONS: asan,
    },
    /** Make the daemon's now the instant t (Unix seconds). */
    setNow(t) { writeFileSync(file, `${t - Math.floor(Date.now() / 1000) >= 0 ? '+' : ''}${t - Math.floor(Date.now() / 1000)}\n`); },
  };
}

const budgetConfig = (fake, budgets, over = {}) => relayConfig(fake, {
  models: { prices: PRICES }, budgets, usage: {}, ...over,
});

async function start(fake, budgets, { dir, clock } = {}) {
  const d = await startDaemon({
    config: budgetConfig(fake, budgets), env: { AWS_EC2_METADATA_DISABLED: 'true', ...(clock?.env ?? {}) }, dir,
  });
  return d;
}

async function cmd(d, clock, ...args) {
  const r = await runCommand(args, { dir: d.dir, env: clock?.env });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

const invoke = (d, token, b = body400(), headers = {}) => d.request(`/model/${enc(MODEL)}/invoke`, {
  method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}`, ...headers }, body: b,
});
const me = async (d, token) => {
  const r = await d.request('/auth/me', { headers: { Authorization: `Bearer ${token}` } });
  assert.equal(r.status, 200, r.text());
  return r.json();
};

test('budgets: 20 concurrent calls against $0.01 a day: 5 reach Bedrock, 15 refused before it; settlement, cache prices, soft threshold, /auth/me, usage --cost, the window moving on at New York midnight, a restart', {
  skip: !existsSync(FAKETIME) && 'libfaketime is not installed',
}, async () => {
  const { fake, held, release } = await heldBedrock();
  const dir = makeTempDir('bsp-budget-');
  const clock = fakeClock(dir);
  // 20:00 in New York on a winter day (UTC-5): midnight is 05:00Z.
  const midnight = Date.UTC(2026, 11, 9, 5, 0, 0) / 1000;
  clock.setNow(midnight - 4 * 3600);
  const budgets = {
    time_zone: 'America/New_York',
    caps: [{ name: 'daily', scope: 'user', window: 'day', limit_usd: '0.01', soft_usd: '0.005' }],
  };
  let d = await start(fake, budgets, { dir, clock });
  cleanups.push(() => d.stop());
  cleanups.push(release);
  const token = await cmd(d, clock, 'token', 'mint', '--user', 'ann@example.com', '--ttl', '86400');

  // 20 at once: the reservations admit 5 ($0.002 each against $0.01).
  const calls = Array.from({ length: 20 }, () => invoke(d, token));
  await waitFor(() => held.length === 5 || null, { timeoutMs: 10000, message: 'five calls held upstream' });
  const refused = [];
  // The other 15 are answered while the 5 are still upstream.
  const settled = await Promise.race([
    Promise.all(calls.map((p) => p.then((r) => { if (r.status === 429) refused.push(r); return r; }))),
    waitFor(() => refused.length === 15 || null, { timeoutMs: 10000, message: '15 refusals' }).then(() => null),
  ]);
  assert.equal(settled, null, 'the admitted calls are still upstream');
  assert.equal(refused.length, 15);
  assert.equal(fake.requests.length, 5, 'no refused call reached Bedrock');
  for (const r of refused) {
    assert.equal(r.headers['x-amzn-errortype'], 'ThrottlingException');
    const m = r.json().message;
    assert.match(m, /budget "daily" \(user .*, per day\) exhausted: \$0\.010000 of \$0\.010000 spent or reserved, and this request may cost up to \$0\.002000; it resets at 2026-12-09T05:00:00Z/);
    assert.equal(r.headers['x-budget-name'], 'daily');
    const retry = Number(r.headers['retry-after']);
    assert.ok(retry <= 4 * 3600 && retry > 4 * 3600 - 120, `Retry-After: until the window moves on (${retry})`);
  }
  // While they are upstream, the reservations show.
  let m = await me(d, token);
  assert.deepEqual(
    [m.budgets[0].spent_usd, m.budgets[0].reserved_usd, m.budgets[0].remaining_usd, m.budgets[0].state],
    ['0.000000', '0.010000', '0.000000', 'refused'],
  );
  release();
  const all = await Promise.all(calls);
  const ok = all.filter((r) => r.status === 200);
  assert.equal(ok.length, 5);
  // Admitted with $0.01, 0.008, 0.006, 0.004, 0.002 left; past the soft $0.005 from the third on.
  assert.deepEqual(ok.map((r) => r.headers['x-budget-remaining-usd']).sort(),
    ['0.002000', '0.004000', '0.006000', '0.008000', '0.010000']);
  assert.ok(ok.every((r) => r.headers['x-budget-window'] === 'day' && r.headers['x-budget-resets-at'] === '2026-12-09T05:00:00Z'));
  assert.equal(ok.filter((r) => r.headers['x-budget-warning'] === 'daily: past the soft threshold').length, 3);
  await d.waitForLog((e) => e.msg === 'budget soft threshold passed' && e.cap === 'daily');
  assert.equal(d.logs.filter((e) => e?.msg === 'budget soft threshold passed').length, 1, 'logged once per window');

  // Settled: 5 x 1025 micro-dollars, cache tokens priced; nothing reserved.
  const rows = await waitUsage(d.dir, 5);
  assert.deepEqual(rows.map((r) => [r.cost_micros, r.cache_write_tokens, r.cache_write_1h_tokens]), Array(5).fill([COST, 200, 100]));
  m = await me(d, token);
  assert.equal(m.user, 'local:ann@example.com');
  assert.deepEqual(m.usage, {
    window: 'day', time_zone: 'America/New_York', since: '2026-12-08T05:00:00Z', cost_usd: '0.005125', requests: 5,
    tokens: { input: 500, output: 250, cache_read: 5000, cache_write: 1000, cache_write_1h: 500 },
  });
  assert.deepEqual(m.budgets, [{
    name: 'daily', scope: 'user', entity: 'local:ann@example.com', window: 'day', window_start: '2026-12-08T05:00:00Z',
    limit_usd: '0.010000', spent_usd: '0.005125', reserved_usd: '0.000000', remaining_usd: '0.004875',
    resets_at: '2026-12-09T05:00:00Z', soft_usd: '0.005000', state: 'warn',
  }]);
  // The usage command says the same (its --since: the same New York day, as a duration back from now).
  const out = await cmd(d, clock, 'usage', '--cost', '--user', 'ann@example.com', '--since', `${4 * 3600 + 20 * 3600}s`);
  assert.match(out, /^TOTAL\s+5\s+500\s+250\s+5000\s+1000\s+0\s+0\.005125$/m);
  const show = await cmd(d, clock, 'budget', 'show', 'ann@example.com');
  assert.match(show, /^daily\s+user\s+local:ann@example\.com\s+day\s+0\.010000\s+0\.005125\s+0\.004875\s+0\.005000\s+2026-12-09T05:00:00Z$/m);

  // Three more fit ($0.0082 spent then), the next does not.
  for (let i = 0; i < 3; i++) {
    const p = invoke(d, token);
    await waitFor(() => held.length === 1 || null, { timeoutMs: 5000 });
    release();
    assert.equal((await p).status, 200);
  }
  let r = await invoke(d, token);
  assert.equal(r.status, 429);
  assert.equal(fake.requests.length, 8);
  // Anthropic's route refuses in its words: billing_error, not to be retried.
  r = await d.request('/v1/messages', {
    method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}`, 'anthropic-version': '2023-06-01' },
    body: JSON.stringify({ model: MODEL, max_tokens: 1000, messages: [{ role: 'user', content: 'hi' }] }),
  });
  assert.equal(r.status, 429);
  assert.equal(r.headers['x-should-retry'], 'false');
  assert.equal(r.json().type, 'error');
  assert.equal(r.json().error.type, 'billing_error');
  assert.match(r.json().error.message, /budget "daily"/);
  // And the OpenAI route in OpenAI's: insufficient_quota.
  r = await d.request('/openai/v1/chat/completions', {
    method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
    body: JSON.stringify({ model: MODEL, max_tokens: 1000, messages: [{ role: 'user', content: 'hi' }] }),
  });
  assert.equal(r.status, 429);
  assert.equal(r.headers['x-should-retry'], 'false');
  assert.equal(r.json().error.type, 'insufficient_quota');
  assert.equal(fake.requests.length, 8);
  await waitUsage(d.dir, 8);

  // A restart rebuilds the day's spend from the usage table.
  await d.stop({ keepDir: true });
  d = await start(fake, budgets, { dir, clock });
  // (On PostgreSQL the ledger is read from the shared counters within a
  // sync period of the first look: the tolerance yaml(5) states.)
  let seen;
  m = await waitFor(async () => {
    const x = await me(d, token);
    seen = x.budgets[0]?.spent_usd;
    return seen === '0.008200' ? x : null;
  }, { timeoutMs: 5000, message: () => `the spend after the restart: ${seen}, not 0.008200` });
  assert.equal(m.budgets[0].spent_usd, '0.008200');
  assert.equal(m.usage.cost_usd, '0.008200');
  assert.equal((await invoke(d, token)).status, 429, 'still refused after the restart');

  // One second before New York's midnight: still the same day.
  clock.setNow(midnight - 1);
  assert.equal((await invoke(d, token)).status, 429);
  // At midnight the window moves on.
  clock.setNow(midnight + 1);
  m = await me(d, token);
  assert.deepEqual([m.budgets[0].window_start, m.budgets[0].spent_usd, m.budgets[0].resets_at, m.usage.cost_usd],
    ['2026-12-09T05:00:00Z', '0.000000', '2026-12-10T05:00:00Z', '0.000000']);
  const p = invoke(d, token);
  await waitFor(() => held.length === 1 || null, { timeoutMs: 5000 });
  release();
  r = await p;
  assert.equal(r.status, 200);
  assert.equal(r.headers['x-budget-remaining-usd'], '0.010000');

  // Metrics: spend by model, user; refusals by cap.
  const series = await scrape(d);
  assert.ok(series.some((s) => s.name === 'bsp_spend_usd_total' && s.labels.model === MODEL && s.value > 0));
  assert.ok(series.some((s) => s.name === 'bsp_budget_refusals_total' && s.labels.cap === 'daily' && s.labels.scope === 'user'));
});

test('budgets: a group cap and a key cap together, the tightest refuses; budget set overrides a user cap', async () => {
  const { fake, held, release } = await heldBedrock();
  const budgets = {
    caps: [
      { name: 'keycap', scope: 'key', limit_usd: '0.003' },
      { name: 'groupcap', scope: 'group', match: ['eng'], limit_usd: '0.005' },
      { name: 'peruser', scope: 'user', limit_usd: '1' },
    ],
  };
  const d = await start(fake, budgets);
  cleanups.push(() => d.stop());
  cleanups.push(release);
  const token = await cmd(d, null, 'token', 'mint', '--user', 'bob@example.com');
  withDb(d.dir, (db) => db.prepare('UPDATE users SET groups = ? WHERE email = ?').run('["eng"]', 'bob@example.com'));
  const key = (await runCommand(['key', 'create', '--user', 'bob@example.com'], { dir: d.dir })).stdout.trim();
  const token2 = await cmd(d, null, 'token', 'mint', '--user', 'bob@example.com');
  const call = async (t) => {
    let done = false;
    const p = invoke(d, t).finally(() => { done = true; });
    await waitFor(() => (done || held.length > 0) || null, { timeoutMs: 5000, message: 'the call answered or upstream' });
    release();
    return p;
  };
  const kid = withDb(d.dir, (db) => db.prepare('SELECT id FROM api_keys').get().id);
  await waitFor(async () => (await d.request('/auth/me', { headers: { Authorization: `Bearer ${key}` } })).status === 200 || null,
    { timeoutMs: 5000, message: 'the daemon knows the new key' });
  // Key: keycap ($0.003) is the tightest.
  let r = await call(key);
  assert.equal(r.status, 200);
  assert.equal(r.headers['x-budget-name'], 'keycap');
  assert.equal(r.headers['x-budget-remaining-usd'], '0.003000');
  await waitUsage(d.dir, 1);
  r = await call(key);
  assert.equal(r.status, 429);
  assert.match(r.json().message, /budget "keycap" \(key /);
  // Without the key (a token with the group): groupcap, with the key's spend in it.
  r = await call(token2);
  assert.equal(r.status, 200);
  assert.equal(r.headers['x-budget-name'], 'groupcap');
  assert.equal(r.headers['x-budget-remaining-usd'], '0.003975');
  assert.equal((await call(token2)).status, 200);
  r = await call(token2);
  assert.equal(r.status, 429);
  assert.match(r.json().message, /budget "groupcap" \(group eng, per day\)/);
  const m = await me(d, key);
  assert.deepEqual(m.budgets.map((b) => [b.name, b.entity, b.spent_usd, b.state]), [
    ['keycap', kid, '0.001025', 'ok'],
    ['groupcap', 'eng', '0.003075', 'ok'],
    ['peruser', 'local:bob@example.com', '0.003075', 'ok'],
  ]);
  assert.equal(fake.requests.length, 3);
  assert.ok(token);
  // The status-line script for Claude Code shows the tightest cap (the group's, for a token).
  if (existsSync('/usr/bin/jq') && existsSync('/usr/bin/curl')) {
    const line = execFileSync(join(import.meta.dirname, '../../contrib/claude-code/budget-statusline.sh'), {
      input: '{"model":{}}',
      env: { PATH: process.env.PATH, BEDROCK_PROXY_URL: d.url, ANTHROPIC_AUTH_TOKEN: token2, XDG_RUNTIME_DIR: d.dir, BUDGET_STATUS_TTL: '0' },
    }).toString();
    assert.equal(line, 'groupcap $0.00 left of $0.01 until 00:00Z | today $0.00\n');
  }

  // budget show: a line per cap, the key's and the group's with what the usage table holds.
  await waitUsage(d.dir, 3);
  const show = await cmd(d, null, 'budget', 'show', 'bob@example.com');
  assert.match(show, new RegExp(`^keycap\\s+key\\s+${kid}\\s+day\\s+0\\.003000\\s+0\\.001025\\s+0\\.001975\\s+-\\s+`, 'm'));
  assert.match(show, /^groupcap\s+group\s+eng\s+day\s+0\.005000\s+0\.003075\s+0\.001925\s+-\s+/m);
  assert.match(show, /^peruser\s+user\s+local:bob@example\.com\s+day\s+1\.000000\s+0\.003075\s+0\.996925\s+-\s+/m);
  // budget set: bob's own limit of peruser, below what he has spent.
  const set = await cmd(d, null, 'budget', 'set', 'bob@example.com', 'peruser', '--limit', '0.003');
  assert.match(set, /peruser for local:bob@example.com: limit 0.003/);
  await waitFor(async () => ((await me(d, token2)).budgets.find((b) => b.name === 'peruser').limit_usd === '0.003000') || null, { timeoutMs: 5000 });
  r = await call(token2);
  assert.equal(r.status, 429);
  assert.match(r.json().message, /budget "peruser" \(user local:bob@example\.com, per day\) exhausted: \$0\.003075 of \$0\.003000/);
  const list = await cmd(d, null, 'budget', 'list');
  assert.match(list, /^keycap\s+key\s+\*\s+day\s+0\.003000\s+-\s+-$/m);
  assert.match(list, /^local:bob@example\.com\s+peruser\s+0\.003000\s+-\s+/m);
  await cmd(d, null, 'budget', 'set', 'bob@example.com', 'peruser', '--clear');
  assert.deepEqual(auditRows(d.dir, 'budget_override_set').map((a) => JSON.parse(a.detail)),
    [{ cap: 'peruser', limit_micros: 3000, soft_micros: null }]);
  assert.equal(auditRows(d.dir, 'budget_override_cleared').length, 1);
  await waitFor(async () => ((await me(d, token2)).budgets.find((b) => b.name === 'peruser').limit_usd === '1.000000') || null, { timeoutMs: 5000 });
  const bad = await runCommand(['budget', 'set', 'bob@example.com', 'groupcap', '--limit', '1'], { dir: d.dir });
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /only a cap of scope user/);
});

test('budgets: a model with no price is refused when a cap applies, priced at the default when told; no cap, no refusal', async () => {
  const { fake, release } = await heldBedrock();
  const caps = [{ name: 'c', scope: 'user', match: ['carl@*'], limit_usd: '5' }];
  const d = await start(fake, { caps });
  cleanups.push(() => d.stop());
  const carl = await cmd(d, null, 'token', 'mint', '--user', 'carl@example.com');
  const dora = await cmd(d, null, 'token', 'mint', '--user', 'dora@example.com');
  const other = 'meta.llama3-70b-instruct-v1:0';
  const r = await d.request(`/model/${enc(other)}/invoke`, {
    method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${carl}` }, body: body400(),
  });
  assert.equal(r.status, 400);
  assert.match(r.json().message, /no price is known for model meta\.llama3-70b-instruct-v1:0 and a budget applies/);
  const r2 = await d.request(`/model/${enc(other)}/invoke`, {
    method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${dora}` }, body: body400(),
  });
  assert.equal(r2.status, 200, 'no cap applies to dora');
  assert.equal(r2.headers['x-budget-remaining-usd'], undefined);
  release();
  const rows = await waitUsage(d.dir, 1);
  assert.equal(rows[0].cost_micros, null, 'no price: no cost stored');
  assert.equal(usageRows(d.dir).length, 1);
});

test('budgets: a client that goes away, and an upstream error, give their reservation back', async () => {
  const { fake, held, release } = await heldBedrock();
  const d = await start(fake, { caps: [{ name: 'c', scope: 'user', limit_usd: '0.003' }] });
  cleanups.push(() => d.stop());
  cleanups.push(release);
  const token = await cmd(d, null, 'token', 'mint', '--user', 'eve@example.com');
  // A call held upstream, its client gone.
  const ac = new AbortController();
  const url = new URL(`/model/${enc(MODEL)}/invoke`, d.url);
  const gone = fetch(url, {
    method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` }, body: body400(), signal: ac.signal,
  }).catch((e) => e);
  await waitFor(() => held.length === 1 || null, { timeoutMs: 5000 });
  let m = await me(d, token);
  assert.equal(m.budgets[0].reserved_usd, '0.002000');
  assert.equal((await invoke(d, token)).status, 429, 'the reservation holds the cap');
  ac.abort();
  await gone;
  await waitFor(async () => ((await me(d, token)).budgets[0].reserved_usd === '0.000000') || null, { timeoutMs: 5000 });
  m = await me(d, token);
  assert.deepEqual([m.budgets[0].spent_usd, m.budgets[0].remaining_usd], ['0.000000', '0.003000']);
  release();
  // An upstream error: nothing spent, nothing kept.
  fake.setHandler(async (req, res, rec) => {
    if (!rec.modelId?.startsWith('test.')) return false;
    res.writeHead(500, { 'Content-Type': 'application/json', 'x-amzn-ErrorType': 'InternalServerException' });
    res.end('{"message":"boom"}');
    return true;
  });
  const r = await invoke(d, token);
  assert.equal(r.status, 500);
  m = await me(d, token);
  assert.deepEqual([m.budgets[0].spent_usd, m.budgets[0].reserved_usd], ['0.000000', '0.000000']);
  const rows = await waitUsage(d.dir, 2);
  assert.deepEqual(rows.map((x) => [x.status, x.cost_micros]), [[499, 0], [500, 0]]);
});

test('budgets: a user whose id is too long to name a ledger is capped all the same (under its hash), also after a restart', async () => {
  const { fake, held, release } = await heldBedrock();
  const dir = makeTempDir('bsp-budget-long-');
  const budgets = { caps: [{ name: 'c', scope: 'user', limit_usd: '0.003' }] };
  let d = await start(fake, budgets, { dir });
  cleanups.push(() => d.stop());
  cleanups.push(release);
  // An IdP's long subject (the command makes no such user: one signed in).
  const sub = 's'.repeat(300);
  withDb(d.dir, (db) => db.prepare('INSERT INTO users (id, provider, subject, email, email_verified, first_login, last_login) '
    + "VALUES (?, 'local', ?, 'long@example.com', 1, 1, 1)").run(`local:${sub}`, sub));
  const token = await cmd(d, null, 'token', 'mint', '--user', 'long@example.com');
  const p = invoke(d, token);
  await waitFor(() => held.length === 1 || null, { timeoutMs: 5000 });
  release();
  assert.equal((await p).status, 200);
  let m = await me(d, token);
  assert.match(m.budgets[0].entity, /^#[A-Za-z0-9_-]{43}$/);
  assert.equal(m.budgets[0].spent_usd, '0.001025');
  assert.equal((await invoke(d, token)).status, 429);
  await waitUsage(d.dir, 1);
  await d.stop({ keepDir: true });
  d = await start(fake, budgets, { dir });
  m = await waitFor(async () => { const x = await me(d, token); return x.budgets[0].spent_usd === '0.001025' ? x : null; },
    { timeoutMs: 5000, message: 'the spend after the restart' });
  assert.equal(m.budgets[0].spent_usd, '0.001025', 'rebuilt under the same hash');
  assert.equal((await invoke(d, token)).status, 429);
  assert.equal(fake.requests.length, 1);
});

test('budgets: two daemons on one PostgreSQL share the ledgers (reservations seen within a second) and keep them across a restart', async () => {
  const { startCluster, startPg } = await import('./lib/cluster.mjs');
  const { fake, held, release } = await heldBedrock();
  const pg = await startPg();
  cleanups.push(() => pg.close());
  const base = relayConfig(fake, {});
  const config = {
    aws: base.aws, access: base.access, models: { prices: PRICES },
    budgets: { caps: [{ name: 'daily', scope: 'user', limit_usd: '0.01' }] },
  };
  const c = await startCluster({ pg, n: 2, config });
  cleanups.push(() => c.stop());
  cleanups.push(release);
  const [a, b] = c.daemons;
  const token = (await runCommand(['token', 'mint', '--user', 'pat@example.com'], { dir: a.dir })).stdout.trim();
  // Five calls held upstream through daemon a: the cap is reserved in full.
  const calls = Array.from({ length: 5 }, () => invoke(a, token));
  await waitFor(() => held.length === 5 || null, { timeoutMs: 10000 });
  // Daemon b learns of a's reservations (as spent: they are not its own) and refuses.
  await waitFor(async () => ((await me(b, token)).budgets[0].remaining_usd === '0.000000') || null,
    { timeoutMs: 5000, message: 'b sees a\'s reservations' });
  const r = await invoke(b, token);
  assert.equal(r.status, 429);
  assert.match(r.json().message, /budget "daily"/);
  assert.equal(fake.requests.length, 5);
  release();
  assert.deepEqual((await Promise.all(calls)).map((x) => x.status), Array(5).fill(200));
  await waitFor(async () => ((await me(b, token)).budgets[0].spent_usd === '0.005125') || null,
    { timeoutMs: 5000, message: 'b sees a\'s settlements' });
  // Both stopped, one started again: the spend is still there.
  await c.stop();
  const c2 = await startCluster({ pg, n: 1, config, shared: c.shared });
  cleanups.push(() => c2.stop());
  await waitFor(async () => ((await me(c2.daemons[0], token)).budgets[0].spent_usd === '0.005125') || null,
    { timeoutMs: 5000, message: 'the restarted daemon reads the shared ledger' });
  // The commands on PostgreSQL: show from the usage table, set reaching the daemon.
  const dir = c2.daemons[0].dir;
  const show = await runCommand(['budget', 'show', 'pat@example.com'], { dir });
  assert.equal(show.code, 0, show.stderr);
  assert.match(show.stdout, /^daily\s+user\s+local:pat@example\.com\s+day\s+0\.010000\s+0\.005125\s+0\.004875\s+/m);
  const usage = await runCommand(['usage', '--cost', '--user', 'pat@example.com'], { dir });
  assert.match(usage.stdout, /^TOTAL\s+5\s+500\s+250\s+5000\s+1000\s+0\s+0\.005125$/m);
  const set = await runCommand(['budget', 'set', 'pat@example.com', 'daily', '--limit', '0.02', '--soft', '0.015'], { dir });
  assert.equal(set.code, 0, set.stderr);
  await waitFor(async () => ((await me(c2.daemons[0], token)).budgets[0].limit_usd === '0.020000') || null,
    { timeoutMs: 5000, message: 'the daemon takes the override' });
  assert.match((await runCommand(['budget', 'list'], { dir })).stdout, /^local:pat@example\.com\s+daily\s+0\.020000\s+0\.015000\s+/m);
});

test('budgets: a streamed call (InvokeModelWithResponseStream) carries the headers and settles with the stream\'s usage', async () => {
  const fake = await startFakeBedrock({ region: REGION, credentials: CREDS });
  cleanups.push(() => fake.close());
  fake.setHandler(async (req, res, rec) => {
    if (rec.modelId !== 'test.stream') return false;
    res.writeHead(200, { 'Content-Type': 'application/vnd.amazon.eventstream' });
    res.write(encodeChunkFrame({ type: 'message_start', message: { usage: { input_tokens: 100, output_tokens: 1, cache_read_input_tokens: 1000 } } }));
    res.write(encodeChunkFrame({ type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 50 } }));
    res.end(encodeChunkFrame({ type: 'message_stop', 'amazon-bedrock-invocationMetrics': { inputTokenCount: 100, outputTokenCount: 50, cacheReadInputTokenCount: 1000 } }));
    return true;
  });
  const d = await start(fake, { caps: [{ name: 'c', scope: 'user', limit_usd: '1' }] });
  cleanups.push(() => d.stop());
  const token = await cmd(d, null, 'token', 'mint', '--user', 'sam@example.com');
  const r = await d.request(`/model/${enc('test.stream')}/invoke-with-response-stream`, {
    method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` }, body: body400(),
  });
  assert.equal(r.status, 200);
  assert.equal(r.headers['x-budget-remaining-usd'], '1.000000');
  assert.equal(r.headers['x-budget-name'], 'c');
  assert.equal(decodeChunkEvents(r.body).length, 3);
  // 100 in, 50 out, 1000 cache reads: $0.0001 + $0.0005 + $0.0001.
  const rows = await waitUsage(d.dir, 1);
  assert.equal(rows[0].cost_micros, 700);
  const m = await me(d, token);
  assert.deepEqual([m.budgets[0].spent_usd, m.budgets[0].reserved_usd], ['0.000700', '0.000000']);
});

test('budgets: a caller to whom more ledgers apply than a call checks is refused (503), not let past the caps left out', async () => {
  const { fake } = await heldBedrock();
  // 9 group caps x 16 groups each = 144 ledgers, more than 128.
  const caps = Array.from({ length: 9 }, (_, i) => ({ name: `g${i}`, scope: 'group', limit_usd: '100' }));
  const d = await start(fake, { caps });
  cleanups.push(() => d.stop());
  await cmd(d, null, 'token', 'mint', '--user', 'many@example.com');
  withDb(d.dir, (db) => db.prepare('UPDATE users SET groups = ? WHERE email = ?')
    .run(JSON.stringify(Array.from({ length: 20 }, (_, i) => `team${i}`)), 'many@example.com'));
  const token = await cmd(d, null, 'token', 'mint', '--user', 'many@example.com');
  const r = await invoke(d, token);
  assert.equal(r.status, 503);
  assert.match(r.json().message, /144 budget ledgers apply to this caller, more than the 128/);
  assert.equal(fake.requests.length, 0);
  await d.waitForLog((e) => typeof e.msg === 'string' && e.msg.startsWith('budgets: 144 ledgers apply'));
});
