// What Claude Code's gateway sign-in asks of a signed-in session besides
// inference: GET /managed/settings (404 with nothing configured; the
// configured file, env entries, the model discovery switch and per-user
// availableModels in the {uuid, checksum, settings} shape, the checksum as
// Claude Code computes it, ETag / If-None-Match -> 304, a reload changing it,
// a bad file refused by -n) and the OpenTelemetry exports at /v1/metrics,
// /v1/logs and /v1/traces (taken and dropped; a credential needed).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { runCommand } from './lib/daemon.mjs';
import { reloadConfig } from './lib/login.mjs';
import { relayConfig, startRelay } from './lib/relay.mjs';

/** Claude Code's checksum of settings: sha256 of the key-sorted compact JSON. */
function checksum(settings) {
  const sorted = (v) => (Array.isArray(v) ? v.map(sorted)
    : v !== null && typeof v === 'object' ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sorted(v[k])])) : v);
  return `sha256:${createHash('sha256').update(JSON.stringify(sorted(settings))).digest('hex')}`;
}

const get = (d, tok, headers = {}) => d.request('/managed/settings', {
  headers: { ...(tok ? { Authorization: `Bearer ${tok}` } : {}), ...headers },
});

const FILE = {
  permissions: { deny: ['Bash(curl:*)'] },
  env: { DISABLE_TELEMETRY: '1' },
  model: 'claude-sonnet-4-6',
  cleanupPeriodDays: 14,
  companyAnnouncements: ['Use the proxy: "https://gw.example.com" & nothing else \u00e9'],
};

test('managed settings: 404 with nothing configured; a credential is needed', async () => {
  const t = await startRelay();
  try {
    const tok = await t.token('dev@example.com');
    let r = await get(t.d, tok);
    assert.equal(r.status, 404);
    assert.equal(r.json().type, 'error');
    assert.equal(r.json().error.type, 'not_found_error');
    r = await get(t.d, null);
    assert.equal(r.status, 401);
    assert.equal(r.json().error.type, 'authentication_error');
    r = await get(t.d, 'eyJhbGciOiJub25lIn0.e30.');
    assert.equal(r.status, 401);
  } finally {
    await t.stop();
  }
});

test('managed settings: the file, env, model discovery and each user\'s availableModels; ETag and 304; reload', async () => {
  const gateway = (file) => ({
    managed_settings: {
      file, available_models: true, model_discovery: true,
      env: ['CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1', 'OTEL_METRIC_EXPORT_INTERVAL=60000'],
    },
  });
  const rules = [{ emails: ['bob@example.com'], deny: ['*opus*'] }];
  // The daemon and its commands run in their directory: the file is there.
  const t = await startRelay({
    config: { gateway: gateway('managed.json'), models: { rules } },
    fake: false,
    daemon: { files: { 'managed.json': JSON.stringify(FILE) } },
  });
  try {
    const { d } = t;
    const alice = await t.token('alice@example.com');
    const bob = await t.token('bob@example.com');
    let r = await get(d, alice);
    assert.equal(r.status, 200, r.text());
    assert.equal(r.headers['cache-control'], 'no-store');
    const doc = r.json();
    assert.deepEqual(Object.keys(doc).sort(), ['checksum', 'settings', 'uuid']);
    const s = doc.settings;
    assert.deepEqual(s.permissions, FILE.permissions);
    assert.equal(s.model, FILE.model);
    assert.deepEqual(s.companyAnnouncements, FILE.companyAnnouncements);
    assert.deepEqual(s.env, {
      DISABLE_TELEMETRY: '1', CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1', OTEL_METRIC_EXPORT_INTERVAL: '60000',
      CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY: '1',
    });
    // availableModels: what GET /v1/models lists for the same user.
    const models = (await d.request('/v1/models?limit=1000', { headers: { Authorization: `Bearer ${alice}` } })).json();
    assert.deepEqual(s.availableModels, models.data.map((m) => m.id));
    assert.ok(s.availableModels.some((id) => id.includes('opus')));
    // The checksum is Claude Code's own computation of the settings; the ETag is it quoted.
    assert.equal(doc.checksum, checksum(s));
    assert.equal(doc.uuid, doc.checksum);
    assert.equal(r.headers.etag, `"${doc.checksum}"`);

    // Bob's rules deny opus: his list, and so his checksum, differ.
    r = await get(d, bob);
    const bs = r.json().settings;
    assert.ok(bs.availableModels.length > 0 && !bs.availableModels.some((id) => id.includes('opus')), bs.availableModels.join());
    assert.notEqual(r.json().checksum, doc.checksum);
    // An API key works as well.
    const { key } = await t.key('alice@example.com');
    r = await d.request('/managed/settings', { headers: { 'x-api-key': key } });
    assert.equal(r.status, 200);

    // If-None-Match: 304 for the current ETag, in the forms a client may send it.
    for (const inm of [`"${doc.checksum}"`, `W/"${doc.checksum}"`, `"sha256:00", "${doc.checksum}"`, '*']) {
      r = await get(d, alice, { 'If-None-Match': inm });
      assert.equal(r.status, 304, inm);
      assert.equal(r.body.length, 0);
      assert.equal(r.headers.etag, `"${doc.checksum}"`);
    }
    for (const inm of ['"sha256:00"', doc.checksum, `"${doc.checksum}x"`]) {
      r = await get(d, alice, { 'If-None-Match': inm });
      assert.equal(r.status, 200, inm);
    }
    // Bob's ETag is not Alice's.
    r = await get(d, alice, { 'If-None-Match': `"${(await get(d, bob)).json().checksum}"` });
    assert.equal(r.status, 200);

    // A reload with another file: another checksum, the old ETag no longer matches.
    writeFileSync(join(d.dir, 'managed2.json'), JSON.stringify({ ...FILE, cleanupPeriodDays: 7 }));
    await reloadConfig(d, relayConfig(null, { gateway: gateway('managed2.json'), models: { rules } }));
    r = await get(d, alice, { 'If-None-Match': `"${doc.checksum}"` });
    assert.equal(r.status, 200);
    assert.equal(r.json().settings.cleanupPeriodDays, 7);
    assert.equal(r.json().checksum, checksum(r.json().settings));
  } finally {
    await t.stop();
  }
});

test('managed settings: a file that is not a JSON object, an env entry that is not NAME=value: configuration errors', async () => {
  const t = await startRelay({ fake: false });
  try {
    const dir = t.d.dir;
    const cases = [
      ['bad.json', '{"env": ', /gateway\.managed_settings\.file: .*bad\.json: line/],
      ['array.json', '[1, 2]', /must hold a JSON object/],
      ['env.json', '{"env": ["A=1"]}', /env must be an object/],
      ['dup.json', '{"a": 1, "a": 2}', /duplicate/],
    ];
    for (const [name, text, re] of cases) {
      writeFileSync(join(dir, name), text);
      writeFileSync(join(dir, 'check.yaml'), JSON.stringify({ gateway: { managed_settings: { file: join(dir, name) } } }));
      const r = await runCommand(['-n', '-f', join(dir, 'check.yaml')], { dir, noConfigFlag: true });
      assert.equal(r.code, 1, `${name}: ${r.stdout}${r.stderr}`);
      assert.match(r.stdout + r.stderr, re, name);
    }
    writeFileSync(join(dir, 'check.yaml'), JSON.stringify({ gateway: { managed_settings: { file: join(dir, 'none.json') } } }));
    let r = await runCommand(['-n', '-f', join(dir, 'check.yaml')], { dir, noConfigFlag: true });
    assert.match(r.stdout + r.stderr, /cannot read .*none\.json/);
    writeFileSync(join(dir, 'check.yaml'), JSON.stringify({ gateway: { managed_settings: { env: ['NO_EQUALS', '1X=2', 'A B=3'] } } }));
    r = await runCommand(['-n', '-f', join(dir, 'check.yaml')], { dir, noConfigFlag: true });
    assert.equal(r.code, 1);
    for (const e of ['NO_EQUALS', '1X=2', 'A B=3']) assert.ok((r.stdout + r.stderr).includes(`"${e}" is not NAME=value`), e);
  } finally {
    await t.stop();
  }
});

test('telemetry: /v1/metrics, /v1/logs, /v1/traces take an export and drop it; a credential is needed', async () => {
  const t = await startRelay({ fake: false });
  try {
    const tok = await t.token('dev@example.com');
    const post = (path, type, body, auth = tok) => t.d.request(path, {
      method: 'POST',
      headers: { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), ...(auth ? { Authorization: `Bearer ${auth}` } : {}) },
      body,
    });
    let r = await post('/v1/metrics', 'application/x-protobuf', Buffer.from([0x0a, 0x02, 0x08, 0x01]));
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'application/x-protobuf');
    assert.equal(r.body.length, 0);
    r = await post('/v1/logs', 'application/json', JSON.stringify({ resourceLogs: [] }));
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'application/json');
    assert.deepEqual(r.json(), {});
    r = await post('/v1/traces', 'application/x-protobuf', '');
    assert.equal(r.status, 200);
    r = await post('/v1/traces', 'application/x-protobuf', 'x', null);
    assert.equal(r.status, 401);
    assert.equal(r.json().error.type, 'authentication_error');
    r = await t.d.request('/v1/metrics', { headers: { Authorization: `Bearer ${tok}` } });
    assert.equal(r.status, 405);
  } finally {
    await t.stop();
  }
});
