// Configuration: every kind of error with its file:line and exit 1; layering
// of file, environment and -D; -nv; reloads that fail keep the old config.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { startDaemon, runCommand } from './lib/daemon.mjs';
import { makeTempDir, removeDir } from './lib/util.mjs';

async function check(configText, { env, args = [], files } = {}) {
  return runCommand(['-n', ...args], { configText, env, files });
}

const bad = [
  ['unknown key', 'server:\n  prot: 8080\n', /config\.yaml:2: unknown key "server\.prot" \(did you mean "server\.port"\?\)/],
  ['wrong type', 'server:\n  port: eighty\n', /config\.yaml:2: server\.port: "eighty" is not an integer/],
  ['out of range', 'server:\n  port: 70000\n', /config\.yaml:2: server\.port: 70000 is out of range/],
  ['bad choice', 'logging:\n  level: loud\n', /config\.yaml:2: logging\.level: "loud" is not one of the allowed values/],
  ['bad boolean', 'metrics:\n  enabled: perhaps\n', /config\.yaml:2: metrics\.enabled: "perhaps" is not a boolean/],
  ['bad duration', 'server:\n  timeouts:\n    header: 5 minutes\n', /config\.yaml:3: server\.timeouts\.header: "5 minutes" is not a duration/],
  ['bad CIDR', 'server:\n  trusted_proxies: [10.0.0.0/40]\n', /config\.yaml:2: server\.trusted_proxies: "10\.0\.0\.0\/40" is not an address or CIDR/],
  ['YAML syntax', 'server:\n  port: [1, 2\n', /config\.yaml:\d+: YAML syntax error/],
  ['duplicate key', 'server:\n  port: 1\n  port: 2\n', /config\.yaml:3: duplicate key "port"/],
  ['alias', 'a: &x 1\nserver:\n  port: *x\n', /config\.yaml:3: YAML aliases are not supported/],
  ['mapping expected', 'server: 8080\n', /config\.yaml:1: server: expected a mapping of keys/],
  ['plain http public URL', 'server:\n  public_url: ftp://example.com\n', /config\.yaml:2: server\.public_url/],
  ['HS256 without a secret', 'jwt:\n  algorithm: HS256\n', /config\.yaml:2: jwt\.algorithm HS256 needs jwt\.secret/],
  ['short HS256 secret', 'jwt:\n  algorithm: HS256\n  secret: short\n', /config\.yaml:3: jwt\.secret: /],
];

for (const [name, text, re] of bad) {
  test(`bad config: ${name} gives file:line and exit 1`, async () => {
    const r = await check(text);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, re);
    assert.doesNotMatch(r.stdout, /configuration OK/);
  });
}

test('all errors are reported in one run', async () => {
  const r = await check('server:\n  prot: 1\n  port: x\nlogging:\n  level: loud\nnope: 1\n');
  assert.equal(r.code, 1);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 4, r.stderr);
  for (const [i, n] of [[0, 2], [1, 3], [2, 5], [3, 6]]) assert.match(lines[i], new RegExp(`config\\.yaml:${n}: `));
});

test('a secret in a file others can read is refused', async () => {
  const dir = makeTempDir('bsp-secret-');
  try {
    const secret = join(dir, 'jwt.secret');
    writeFileSync(secret, 'x'.repeat(40));
    chmodSync(secret, 0o644);
    let r = await check(`jwt:\n  algorithm: HS256\n  secret_file: ${secret}\n`);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /config\.yaml:3: jwt\.secret_file: secret file .* is readable by group or others/);
    chmodSync(secret, 0o600);
    r = await check(`jwt:\n  algorithm: HS256\n  secret_file: ${secret}\n`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /configuration OK/);
    r = await check(`jwt:\n  algorithm: HS256\n  secret_file: ${secret}\n  secret: ${'y'.repeat(40)}\n`);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /both set/);
    // A symbolic link (as Kubernetes mounts secrets) is followed, and what it leads to is checked.
    mkdirSync(join(dir, '..data'));
    const target = join(dir, '..data', 'jwt.secret');
    writeFileSync(target, 'x'.repeat(40), { mode: 0o600 });
    const link = join(dir, 'link.secret');
    symlinkSync(target, link);
    r = await check(`jwt:\n  algorithm: HS256\n  secret_file: ${link}\n`);
    assert.equal(r.code, 0, r.stderr);
    chmodSync(target, 0o644);
    r = await check(`jwt:\n  algorithm: HS256\n  secret_file: ${link}\n`);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /secret file .*link\.secret is readable by group or others \(mode 0644\)/);
    // A directory, a FIFO, an empty file and an oversized one: each refused by name (and the FIFO without waiting for a writer).
    const fifo = join(dir, 'fifo.secret');
    execFileSync('mkfifo', ['-m', '600', fifo]);
    const empty = join(dir, 'empty.secret');
    writeFileSync(empty, '\n', { mode: 0o600 });
    const huge = join(dir, 'huge.secret');
    writeFileSync(huge, 'z'.repeat(65 * 1024), { mode: 0o600 });
    for (const [path, re] of [[fifo, /is not a regular file/], [dir, /is not a regular file|readable by group/],
      [empty, /is empty/], [huge, /larger than 65536 bytes/], [join(dir, 'missing'), /cannot open secret file .*No such file/]]) {
      r = await check(`jwt:\n  algorithm: HS256\n  secret_file: ${path}\n`);
      assert.equal(r.code, 1, path);
      assert.match(r.stderr, re, path);
      assert.doesNotMatch(r.stderr, /xxxxxxxx|zzzzzzzz/, 'no secret bytes in the error');
    }
  } finally {
    removeDir(dir);
  }
});

test('a config file holding a secret must not be readable by others', async () => {
  const dir = makeTempDir('bsp-cfg-');
  try {
    const cfg = join(dir, 'c.yaml');
    writeFileSync(cfg, `jwt:\n  algorithm: HS256\n  secret: ${'s'.repeat(40)}\n`);
    chmodSync(cfg, 0o644);
    let r = await runCommand(['-n', '-f', cfg], { noConfigFlag: true });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /holds a secret \(jwt\.secret\) but is readable by group or others/);
    chmodSync(cfg, 0o600);
    r = await runCommand(['-n', '-f', cfg], { noConfigFlag: true });
    assert.equal(r.code, 0, r.stderr);
  } finally {
    removeDir(dir);
  }
});

test('-n says configuration OK; -nv prints the effective configuration, secrets masked', async () => {
  const secret = 'S3cr3t-'.repeat(8);
  let r = await check('server:\n  port: 8123\n');
  assert.equal(r.code, 0);
  assert.equal(r.stdout.trim(), 'configuration OK');
  r = await runCommand(['-nv'], { configText: `server:\n  port: 8123\njwt:\n  algorithm: HS256\n  secret: ${secret}\n` });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^server\.port: 8123$/m);
  assert.match(r.stdout, /^jwt\.secret: "\*{8}"$/m);
  assert.match(r.stdout, /^server\.timeouts\.header: 10$/m);
  assert.ok(!r.stdout.includes(secret) && !r.stderr.includes(secret), 'the secret is never printed');
  assert.match(r.stdout, /configuration OK\n$/);
});

test('layers: file < environment < -D', async () => {
  const text = 'logging:\n  level: warn\n';
  const level = (r) => r.stdout.match(/^logging\.level: (\w+)$/m)[1];
  let r = await runCommand(['-nv'], { configText: text });
  assert.equal(level(r), 'warn');
  r = await runCommand(['-nv'], { configText: text, env: { BEDROCK_LOGGING__LEVEL: 'error' } });
  assert.equal(level(r), 'error');
  r = await runCommand(['-nv', '-D', 'logging.level=debug'], { configText: text, env: { BEDROCK_LOGGING__LEVEL: 'error' } });
  assert.equal(level(r), 'debug');
  // Lists from the environment are comma-separated.
  r = await runCommand(['-nv'], { configText: text, env: { BEDROCK_METRICS__ALLOW: '10.0.0.0/8,192.168.0.0/16' } });
  assert.match(r.stdout, /^metrics\.allow: \["10\.0\.0\.0\/8", "192\.168\.0\.0\/16"\]$/m);
  // Errors from the environment and -D name their source.
  r = await runCommand(['-n', '-D', 'server.port=x'], { configText: text, env: { BEDROCK_SERVER__NOPE: '1' } });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^environment BEDROCK_SERVER__NOPE: unknown key "server\.nope"/m);
  assert.match(r.stderr, /^-D server\.port: server\.port: "x" is not an integer/m);
});

test('a missing -f file is an error; the missing default file means built-in defaults', async () => {
  const r = await runCommand(['-n', '-f', '/nonexistent/bsp.yaml'], { noConfigFlag: true });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /\/nonexistent\/bsp\.yaml: cannot open/);
});

test('SIGHUP with a broken config keeps the daemon serving with the old one', async () => {
  const d = await startDaemon({ config: { metrics: { allow: ['127.0.0.1/32'] } } });
  try {
    assert.equal((await d.request('/metrics')).status, 200);
    // Broken: an unknown key and a bad value.
    writeFileSync(d.configPath, `server:\n  host: 127.0.0.1\n  port: 0\n  nonsense: 1\nmetrics:\n  allow: [10.0.0.0/8]\n  enabled: perhaps\ndatabase:\n  url: sqlite://${d.dir}/state/proxy.db\nlogging:\n  format: json\n`, { mode: 0o600 });
    let mark = d.logMark();
    d.signal('SIGHUP');
    await d.waitForLog(/keeping the running configuration/, 5000, { from: mark });
    assert.ok(d.logs.slice(mark).some((l) => /unknown key "server\.nonsense"/.test(l.msg) && /config\.yaml:4/.test(l.where)));
    assert.equal((await d.request('/metrics')).status, 200, 'old allow-list still applies');
    assert.equal((await d.request('/health')).status, 200);
    // Fixed: the new allow-list takes effect.
    writeFileSync(d.configPath, `server:\n  host: 127.0.0.1\n  port: 0\nmetrics:\n  allow: [10.0.0.0/8]\ndatabase:\n  url: sqlite://${d.dir}/state/proxy.db\nlogging:\n  format: json\n`, { mode: 0o600 });
    mark = d.logMark();
    d.signal('SIGHUP');
    await d.waitForLog(/configuration reloaded/, 5000, { from: mark });
    assert.equal((await d.request('/metrics')).status, 403, 'new allow-list applies');
    // A new listen address needs a restart, and the log says so.
    writeFileSync(d.configPath, `server:\n  host: 127.0.0.1\n  port: 1\ndatabase:\n  url: sqlite://${d.dir}/state/proxy.db\nlogging:\n  format: json\n`, { mode: 0o600 });
    mark = d.logMark();
    d.signal('SIGHUP');
    await d.waitForLog(/listen address changed; it takes effect only after a restart/, 5000, { from: mark });
    assert.equal((await d.request('/health')).status, 200);
  } finally {
    await d.stop();
  }
});
