// The daemon's foundation: routes, headers, limits, slow clients, graceful
// shutdown, TLS, listeners, forwarding headers, metrics, logging.
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { startDaemon, runCommand } from './lib/daemon.mjs';
import { onPostgres } from './lib/pg.mjs';
import { makeCA, makeCert, readPem } from './lib/tls.mjs';
import { request, sleep, waitFor, makeTempDir, removeDir } from './lib/util.mjs';

/* A raw TCP client: resolves when the server closes the connection. */
function rawClient(port) {
  const sock = net.connect(port, '127.0.0.1');
  let data = '';
  const closed = new Promise((res) => {
    sock.on('data', (d) => { data += d; });
    sock.on('close', () => res(data));
    sock.on('error', () => {});
  });
  return { sock, closed, get data() { return data; } };
}

test('health answers ok with a request id and nosniff', async () => {
  const d = await startDaemon();
  try {
    const r = await d.request('/health');
    assert.equal(r.status, 200);
    assert.deepEqual(r.json(), { status: 'ok' });
    assert.match(r.headers['x-request-id'], /^[0-9a-f]{32}$/);
    assert.equal(r.headers['x-content-type-options'], 'nosniff');
    // A well-formed incoming id is kept; a malformed one replaced.
    const r2 = await d.request('/health', { headers: { 'X-Request-Id': 'abc-123.x' } });
    assert.equal(r2.headers['x-request-id'], 'abc-123.x');
    const r3 = await d.request('/health', { headers: { 'X-Request-Id': 'bad id "quoted"' } });
    assert.match(r3.headers['x-request-id'], /^[0-9a-f]{32}$/);
    // One access line per request, without query strings.
    await d.request('/health?secret=hunter2');
    const line = await d.waitForLog({ msg: 'request', route: 'health', status: 200 });
    assert.equal(line.method, 'GET');
    assert.ok(!d.stderr.includes('hunter2'), 'query strings are not logged');
  } finally {
    await d.stop();
  }
});

test('library versions are logged at start', async () => {
  const d = await startDaemon();
  try {
    const e = await d.waitForLog((l) => typeof l === 'object' && /^starting/.test(l.msg));
    for (const k of ['libevent', 'openssl', 'sqlite', 'libsodium', 'jansson', 'libyaml']) {
      assert.ok(e[k], `${k} version logged`);
    }
  } finally {
    await d.stop();
  }
});

test('a daemon on SQLite does not load libpq (or what it pulls in); one on PostgreSQL does', async () => {
  const d = await startDaemon();
  try {
    const e = await d.waitForLog((l) => typeof l === 'object' && /^starting/.test(l.msg));
    await d.request('/health');
    const maps = readFileSync(`/proc/${d.pid}/maps`, 'utf8');
    if (onPostgres) {
      // BSP_TEST_DB=pg: this daemon's database is PostgreSQL.
      assert.match(e.libpq, /^\d+\.\d+/);
      assert.ok(maps.includes('libpq.so'), 'libpq is mapped');
      return;
    }
    assert.equal(e.libpq, 'not loaded');
    for (const lib of ['libpq.so', 'libgnutls', 'libldap', 'libkrb5', 'libsasl2']) {
      assert.ok(!maps.includes(lib), `${lib} is not mapped`);
    }
  } finally {
    await d.stop();
  }
});

test('readiness lists components', async () => {
  const d = await startDaemon();
  try {
    const r = await d.request('/health/ready');
    const j = r.json();
    assert.equal(j.components.database.status, 'ok');
    assert.equal(j.components.signing_key.status, 'ok');
  } finally {
    await d.stop();
  }
});

test('unknown paths and methods get JSON errors in the right shape', async () => {
  const d = await startDaemon();
  try {
    let r = await d.request('/nope');
    assert.equal(r.status, 404);
    assert.equal(r.json().error, 'not_found');
    r = await d.request('/bedrock/model/x/nope', { method: 'POST', body: '{}' });
    assert.equal(r.status, 404);
    assert.match(r.headers['x-amzn-errortype'], /UnknownOperationException/);
    assert.ok(r.json().message);
    r = await d.request('/health', { method: 'POST', body: '' });
    assert.equal(r.status, 405);
    assert.match(r.headers.allow, /GET/);
    r = await d.request('/model/m/invoke-with-bidirectional-stream', { method: 'POST', body: '' });
    assert.equal(r.status, 501);
    r = await d.request('/bedrock/inference-profiles?type=SYSTEM_DEFINED');
    assert.equal(r.status, 404);
    assert.match(r.headers['x-amzn-errortype'], /ResourceNotFoundException/);
  } finally {
    await d.stop();
  }
});

test('a wrong method on a known path: 405 with Allow, in the envelope of the path\'s API', async () => {
  const d = await startDaemon();
  try {
    // Anthropic: {"type":"error","error":{"type","message"}}.
    for (const [method, path, allow] of [['GET', '/v1/messages', 'POST'], ['GET', '/v1/messages/count_tokens?beta=true', 'POST'],
      ['POST', '/v1/models', 'GET, HEAD'], ['DELETE', '/v1/models/claude-sonnet-4-5', 'GET, HEAD'], ['GET', '/v1/metrics', 'POST'],
      ['PUT', '/managed/settings', 'GET, HEAD']]) {
      const r = await d.request(path, { method, body: method === 'GET' ? undefined : '' });
      assert.equal(r.status, 405, `${method} ${path}`);
      assert.equal(r.headers.allow, allow, `${method} ${path}`);
      const j = r.json();
      assert.equal(j.type, 'error', `${method} ${path}: ${r.text()}`);
      assert.equal(j.error.type, 'invalid_request_error');
      assert.equal(j.error.message, 'method not allowed');
      assert.equal(r.headers['x-amzn-errortype'], undefined);
    }
    // OpenAI: {"error":{"message","type","param","code"}}.
    for (const path of ['/openai/v1/chat/completions', '/openai/v1/responses']) {
      const r = await d.request(path);
      assert.equal(r.status, 405, path);
      assert.equal(r.headers.allow, 'POST');
      const j = r.json();
      assert.deepEqual(Object.keys(j), ['error'], r.text());
      assert.equal(j.error.message, 'method not allowed');
      assert.equal(j.error.type, 'invalid_request_error');
      assert.ok('param' in j.error && 'code' in j.error, r.text());
    }
    // Bedrock: {"message"} and x-amzn-ErrorType, also under /bedrock.
    for (const path of ['/model/m/invoke', '/bedrock/model/m/converse-stream', '/bedrock/guardrail/g/version/1/apply']) {
      const r = await d.request(path);
      assert.equal(r.status, 405, path);
      assert.equal(r.headers.allow, 'POST');
      assert.match(r.headers['x-amzn-errortype'], /^ValidationException/, path);
      assert.deepEqual(r.json(), { message: 'method not allowed' });
    }
    // Everything else keeps the OAuth shape.
    const r = await d.request('/auth/token');
    assert.equal(r.status, 405);
    assert.equal(r.headers.allow, 'POST');
    assert.equal(r.json().error, 'invalid_request');
    assert.equal(r.json().error_description, 'method not allowed');
  } finally {
    await d.stop();
  }
});

test('metrics: Prometheus text for allowed addresses only', async () => {
  const d = await startDaemon();
  try {
    await d.request('/health');
    const r = await d.request('/metrics');
    assert.equal(r.status, 200);
    const t = r.text();
    assert.match(t, /bsp_http_requests_total\{route="health",code="200"\} \d+/);
    assert.match(t, /bsp_http_request_duration_seconds_bucket\{route="health",code="200",le="\+Inf"\} \d+/);
    assert.match(t, /bsp_process_resident_memory_bytes \d+/);
    assert.match(t, /bsp_process_open_fds \d+/);
    assert.match(t, /bsp_process_start_time_seconds \d+/);
  } finally {
    await d.stop();
  }
  const d2 = await startDaemon({ config: { metrics: { allow: ['10.0.0.0/8'], path: '/internal/metrics' } } });
  try {
    assert.equal((await d2.request('/internal/metrics')).status, 403);
    assert.equal((await d2.request('/metrics')).status, 404);
  } finally {
    await d2.stop();
  }
});

test('forwarding headers count only from trusted proxies', async () => {
  const d = await startDaemon({ config: { server: { trusted_proxies: ['127.0.0.1/32'] } } });
  try {
    await d.request('/health', { headers: { 'X-Forwarded-For': '198.51.100.7, 203.0.113.9' } });
    await d.waitForLog({ msg: 'request', client: '203.0.113.9' });
    // A trusted proxy forwarding an outside client: metrics refused.
    const r = await d.request('/metrics', { headers: { 'X-Forwarded-For': '203.0.113.9' } });
    assert.equal(r.status, 403);
    const r2 = await d.request('/health', { headers: { 'X-Forwarded-Proto': 'https' } });
    assert.match(r2.headers['strict-transport-security'], /max-age/);
  } finally {
    await d.stop();
  }
  const d2 = await startDaemon();
  try {
    await d2.request('/health', { headers: { 'X-Forwarded-For': '203.0.113.9' } });
    const e = await d2.waitForLog({ msg: 'request', route: 'health' });
    assert.equal(e.client, '127.0.0.1', 'untrusted peers cannot claim another address');
    const r = await d2.request('/metrics', { headers: { 'X-Forwarded-For': '127.0.0.1' } });
    assert.equal(r.status, 200);
  } finally {
    await d2.stop();
  }
});

test('an oversized body gets 413', async () => {
  const d = await startDaemon({ config: { server: { max_body_bytes: 2048 } } });
  try {
    const r = await d.request('/auth/refresh', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: `{"refresh_token":"${'x'.repeat(8192)}"}`,
    });
    assert.equal(r.status, 413);
    // Chunked bodies too.
    const r2 = await d.request('/auth/refresh', {
      method: 'POST', headers: { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' },
      body: 'x'.repeat(8192),
    });
    assert.equal(r2.status, 413);
    assert.equal((await d.request('/health')).status, 200, 'still serving');
  } finally {
    await d.stop();
  }
});

test('oversized request heads are refused', async () => {
  const d = await startDaemon({ config: { server: { max_header_bytes: 4096 } } });
  try {
    const c = rawClient(d.port);
    c.sock.write(`GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(10000)}\r\n\r\n`);
    const data = await c.closed;
    assert.doesNotMatch(data, /^HTTP\/1\.1 200/);
    assert.equal((await d.request('/health')).status, 200);
  } finally {
    await d.stop();
  }
});

test('a client sending one header byte per second is dropped after server.timeouts.header', async () => {
  const d = await startDaemon({ config: { server: { timeouts: { header: 2 } } } });
  try {
    const c = rawClient(d.port);
    const head = 'GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ' + 'a'.repeat(40) + '\r\n\r\n';
    const started = Date.now();
    let sent = 0;
    let closedAt = null;
    c.closed.then(() => { closedAt = Date.now(); });
    while (sent < head.length && closedAt === null) {
      c.sock.write(head[sent++]);
      await sleep(1000);
    }
    await c.closed;
    const took = (closedAt - started) / 1000;
    assert.ok(sent < head.length, `dropped before the head was complete (sent ${sent} of ${head.length})`);
    assert.ok(took >= 1.5 && took < 6, `dropped after ${took}s`);
    assert.doesNotMatch(c.data, /200 OK/);
    assert.equal((await d.request('/health')).status, 200, 'others are still served');
  } finally {
    await d.stop();
  }
});

test('a slow request body is dropped after server.timeouts.body', async () => {
  const d = await startDaemon({ config: { server: { timeouts: { body: 2 } } } });
  try {
    const c = rawClient(d.port);
    c.sock.write('POST /auth/refresh HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n');
    const started = Date.now();
    let closed = false;
    c.closed.then(() => { closed = true; });
    for (let i = 0; i < 10 && !closed; i++) {
      c.sock.write('{');
      await sleep(700);
    }
    await c.closed;
    const took = (Date.now() - started) / 1000;
    assert.ok(took < 6, `dropped after ${took}s`);
  } finally {
    await d.stop();
  }
});

test('connections beyond server.max_connections are closed at once', async () => {
  const d = await startDaemon({ config: { server: { max_connections: 4 } } });
  try {
    const clients = [];
    for (let i = 0; i < 10; i++) {
      clients.push(rawClient(d.port));
      await sleep(20);
    }
    await sleep(500);
    let closedCount = 0;
    await Promise.all(clients.map((c) => Promise.race([c.closed.then(() => { closedCount++; }), sleep(1500)])));
    assert.ok(closedCount >= 5, `${closedCount} of 10 closed`);
    for (const c of clients) c.sock.destroy();
    await sleep(200);
    assert.equal((await d.request('/health')).status, 200);
    await d.waitForLog(/connection limit/);
  } finally {
    await d.stop();
  }
});

test('SIGTERM lets a request in flight finish, then exits 0', async () => {
  const d = await startDaemon();
  const c = rawClient(d.port);
  const body = JSON.stringify({ refresh_token: `bsr_${'A'.repeat(43)}` });
  c.sock.write(`POST /auth/refresh HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`);
  c.sock.write(body.slice(0, 10));
  await sleep(300);
  d.signal('SIGTERM');
  await d.waitForLog(/shutting down/);
  // New connections are refused while draining.
  await assert.rejects(request(`${d.url}/health`, { timeoutMs: 2000 }));
  await sleep(500);
  c.sock.write(body.slice(10));
  const data = await c.closed;
  assert.match(data, /^HTTP\/1\.1 400 /, 'the in-flight request got its answer');
  assert.match(data, /invalid_grant/);
  await d.stop(); // already exiting: asserts exit code 0 and no sanitizer report
});

test('SIGTERM closes idle keep-alive connections and exits promptly', async () => {
  const d = await startDaemon();
  const c = rawClient(d.port);
  c.sock.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
  await waitFor(() => c.data.includes('"ok"'));
  const t0 = Date.now();
  await d.stop();
  await c.closed;
  assert.ok(Date.now() - t0 < 5000);
});

test('inbound TLS: TLS 1.2+, HSTS, certificate reloaded on SIGHUP', async () => {
  const dir = makeTempDir('bsp-tls-');
  try {
    const ca = makeCA(dir);
    const c1 = makeCert(ca, { name: 'one' });
    const c2 = makeCert(ca, { name: 'two' });
    writeFileSync(join(dir, 'live.crt'), readFileSync(c1.chain));
    writeFileSync(join(dir, 'live.key'), readFileSync(c1.key), { mode: 0o600 });
    const d = await startDaemon({
      ca: readPem(ca.cert),
      config: { server: { tls: { cert_file: join(dir, 'live.crt'), key_file: join(dir, 'live.key') } } },
    });
    try {
      assert.match(d.url, /^https:/);
      const r = await d.request('/health');
      assert.equal(r.status, 200);
      assert.match(r.headers['strict-transport-security'], /max-age=\d+/);
      const serial = async () => new Promise((res, rej) => {
        const s = tls.connect({ host: '127.0.0.1', port: d.port, ca: readPem(ca.cert), servername: 'localhost' }, () => {
          const sn = s.getPeerCertificate().serialNumber;
          s.end();
          res(sn);
        });
        s.on('error', rej);
      });
      const before = await serial();
      // TLS 1.1 is refused.
      await assert.rejects(new Promise((res, rej) => {
        const s = tls.connect({ host: '127.0.0.1', port: d.port, ca: readPem(ca.cert), maxVersion: 'TLSv1.1', minVersion: 'TLSv1' }, () => { s.end(); res(); });
        s.on('error', rej);
      }));
      writeFileSync(join(dir, 'live.crt'), readFileSync(c2.chain));
      writeFileSync(join(dir, 'live.key'), readFileSync(c2.key), { mode: 0o600 });
      const mark = d.logMark();
      d.signal('SIGHUP');
      await d.waitForLog(/TLS certificate reloaded/, 5000, { from: mark });
      const after = await serial();
      assert.notEqual(before, after, 'new connections see the new certificate');
    } finally {
      await d.stop();
    }
  } finally {
    removeDir(dir);
  }
});

test('several listeners, IPv4 and IPv6', async (t) => {
  const v6 = await new Promise((res) => {
    const s = net.createServer().listen(0, '::1', () => { s.close(); res(true); }).on('error', () => res(false));
  });
  if (!v6) {
    t.skip('no IPv6 loopback here');
    return;
  }
  const d = await startDaemon({ listeners: 2, config: { server: { listen: ['127.0.0.1:0', '[::1]:0'] } } });
  try {
    assert.equal(d.listeners.length, 2);
    for (const l of d.listeners) {
      const r = await request(`${l.url}/health`);
      assert.equal(r.status, 200, `${l.url} answers`);
    }
  } finally {
    await d.stop();
  }
});

test('the database: not a database, or newer than the binary, is exit 2', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bsp-db-'));
  try {
    writeFileSync(join(dir, 'bad.db'), 'this is not a database at all, merely text that is long enough'.repeat(20));
    const d = await startDaemon({ config: { database: { url: `sqlite://${join(dir, 'bad.db')}` } } }).catch((e) => e);
    assert.ok(d instanceof Error);
    assert.match(d.message, /exited early \(code 2/);
    assert.match(d.message, /not a database/);
  } finally {
    removeDir(dir);
  }
});

test('logging: text format is logfmt, network text is escaped, -T traces', async () => {
  const d = await startDaemon({ config: { logging: { format: 'text' } }, args: ['-T', 'http'] });
  try {
    const c = rawClient(d.port);
    c.sock.write('GET /x"level=error\x01forged HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.match(await c.closed, /^HTTP\/1\.1 400 /);
    const e = await d.waitForLog({ msg: 'request', status: 400 });
    assert.equal(e.path, '/x"level=error\\u0001forged', 'quote and control character escaped');
    const lines = d.lines.filter((l) => l.includes('forged'));
    assert.ok(lines.length > 0);
    for (const l of lines) {
      assert.match(l, /^time=\S+ level=\w+ msg=/, 'each line is one logfmt record');
      assert.doesNotMatch(l, /[\x00-\x1f]/, 'no raw control characters');
    }
    assert.ok(d.lines.some((l) => /trace=http/.test(l)), 'trace lines appear with -T http');
  } finally {
    await d.stop();
  }
});

test('usage and unknown commands exit 1', async () => {
  let r = await runCommand(['-x'], { noConfigFlag: true });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^usage: bedrock-sso-proxy \[-dnv\] \[-f file\] \[-T trace\] \[-D key=value\] \[command \[args\]\]/m);
  r = await runCommand(['frobnicate']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /unknown command/);
  r = await runCommand(['-T', 'nonsense', '-n']);
  assert.equal(r.code, 1);
});

test('forwarding headers: a long or repeated X-Forwarded-For cannot choose the client address', async () => {
  const d = await startDaemon({ config: { server: { trusted_proxies: ['127.0.0.1/32'] } } });
  try {
    // 40 entries the client wrote, then the hop our proxy appended.
    const forged = Array.from({ length: 40 }, () => '127.0.0.1').join(', ');
    let r = await d.request('/metrics', { headers: { 'X-Forwarded-For': `${forged}, 203.0.113.9` } });
    assert.equal(r.status, 403, 'the rightmost untrusted hop is the client');
    // A proxy that adds its own line after the client's.
    r = await d.request('/metrics', {
      headers: ['X-Forwarded-For', '127.0.0.1', 'X-Forwarded-For', '203.0.113.9'],
    });
    assert.equal(r.status, 403, 'every X-Forwarded-For line counts, the last one nearest');
    await d.request('/health', { headers: ['X-Forwarded-For', '198.51.100.1', 'X-Forwarded-For', '203.0.113.77'] });
    await d.waitForLog({ msg: 'request', client: '203.0.113.77' });
    // The nearest X-Forwarded-Proto wins.
    r = await d.request('/health', { headers: ['X-Forwarded-Proto', 'https', 'X-Forwarded-Proto', 'http'] });
    assert.equal(r.headers['strict-transport-security'], undefined);
  } finally {
    await d.stop();
  }
});
