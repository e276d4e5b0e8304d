// Claude Code's OpenTelemetry exports (POST /v1/metrics, /v1/logs,
// /v1/traces) forwarded to an OTLP/HTTP collector (gateway.telemetry.url):
// a fake collector (node:http) receives the exact bytes (protobuf, JSON,
// gzip) with their Content-Type and Content-Encoding, the caller's user id
// in X-Bsp-User (an API key's id in X-Bsp-Api-Key) and the configured
// Authorization, never the client's; its status, headers and body come
// back; a collector that is down is a 502, one that hangs a 504 (the daemon
// serving on meanwhile), more forwards than gateway.telemetry.max_forwards
// a 503 with Retry-After, each with a google.rpc.Status in the export's
// encoding; a client leaving mid-forward cancels it, and so does a stop;
// an export without a credential is refused and never forwarded; bad
// settings are refused.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { chmodSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { runCommand } from './lib/daemon.mjs';
import { startRelay } from './lib/relay.mjs';
import { decodeJwt } from './lib/tokens.mjs';
import { waitFor } from './lib/util.mjs';

const SECRET = 'Bearer collector-secret-0123456789';

/**
 * A fake OTLP/HTTP collector. Each request is recorded with its body, then
 * handed to c.handler(req, res, rec) (default: 200, an empty JSON answer).
 * rec.closed turns true when the connection goes away before an answer.
 */
async function startCollector() {
  const c = {
    seen: [],
    handler: (req, res) => { res.writeHead(200, { 'Content-Type': 'application/json' }); res.end('{}'); },
  };
  c.server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (b) => chunks.push(b));
    req.on('end', () => {
      const rec = { method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks), closed: false };
      res.on('close', () => { if (!res.writableFinished) rec.closed = true; });
      c.seen.push(rec);
      c.handler(req, res, rec);
    });
  });
  c.server.listen(0, '127.0.0.1');
  await once(c.server, 'listening');
  c.url = `http://127.0.0.1:${c.server.address().port}`;
  c.close = async () => {
    c.server.closeAllConnections();
    c.server.close();
  };
  return c;
}

/** A loopback port nobody listens on. */
async function deadPort() {
  const s = net.createServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address();
  s.close();
  await once(s, 'close');
  return port;
}

/** google.rpc.Status from protobuf: {code, message}. */
function rpcStatus(buf) {
  let i = 0;
  const varint = () => {
    let v = 0;
    let shift = 0;
    for (;;) {
      const b = buf[i++];
      v += (b & 0x7f) * 2 ** shift;
      if (!(b & 0x80)) return v;
      shift += 7;
    }
  };
  const out = {};
  while (i < buf.length) {
    const tag = varint();
    if (tag === 0x08) out.code = varint();
    else if (tag === 0x12) {
      const n = varint();
      out.message = buf.subarray(i, i + n).toString('utf8');
      i += n;
    } else throw new Error(`unexpected tag ${tag}`);
  }
  return out;
}

const start = (telemetry, more = {}) => startRelay({ fake: false, config: { gateway: { telemetry }, ...more } });

function poster(t, tok) {
  return (path, type, body, { auth = tok, headers = {}, ...ropts } = {}) => t.d.request(path, {
    method: 'POST',
    headers: {
      ...(type ? { 'Content-Type': type } : {}), 'Content-Length': Buffer.byteLength(body),
      ...(auth ? { Authorization: `Bearer ${auth}` } : {}), ...headers,
    },
    body,
    ...ropts,
  });
}

test('telemetry forwarding: exact bytes, types and encodings, the caller in X-Bsp-User, the collector\'s answer back', async () => {
  const col = await startCollector();
  const t = await start({ url: `${col.url}/otlp/`, authorization: SECRET });
  try {
    const tok = await t.token('dev@example.com');
    const sub = decodeJwt(tok).payload.sub;
    assert.ok(sub);
    const post = poster(t, tok);

    // Protobuf, as it came.
    const pb = Buffer.from([0x0a, 0x05, 0x0a, 0x03, 0x08, 0x96, 0x01, 0x00, 0xff, 0x80]);
    col.handler = (req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/x-protobuf' });
      res.end(Buffer.from([0x0a, 0x02, 0x08, 0x03]));
    };
    let r = await post('/v1/metrics', 'application/x-protobuf', pb);
    assert.equal(r.status, 200, r.text());
    assert.equal(r.headers['content-type'], 'application/x-protobuf');
    assert.deepEqual(r.body, Buffer.from([0x0a, 0x02, 0x08, 0x03]));
    let s = col.seen.at(-1);
    assert.equal(s.method, 'POST');
    assert.equal(s.url, '/otlp/v1/metrics');
    assert.deepEqual(s.body, pb);
    assert.equal(s.headers['content-type'], 'application/x-protobuf');
    assert.equal(s.headers['content-encoding'], undefined);
    assert.equal(s.headers['x-bsp-user'], sub);
    assert.equal(s.headers['x-bsp-api-key'], undefined);
    assert.equal(s.headers.authorization, SECRET);
    assert.ok(!JSON.stringify(s.headers).includes(tok), 'the client\'s token is not forwarded');

    // JSON, gzip-encoded: the compressed bytes and the encoding unchanged.
    const json = JSON.stringify({ resourceLogs: [{ scopeLogs: [{ logRecords: [{ body: { stringValue: 'h\u00e9' } }] }] }] });
    const gz = gzipSync(json);
    col.handler = (req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end('{"partialSuccess":{"rejectedLogRecords":"1","errorMessage":"one dropped"}}');
    };
    r = await post('/v1/logs', 'application/json', gz, { headers: { 'Content-Encoding': 'gzip' } });
    assert.equal(r.status, 200, r.text());
    assert.equal(r.headers['content-type'], 'application/json');
    assert.deepEqual(r.json(), { partialSuccess: { rejectedLogRecords: '1', errorMessage: 'one dropped' } });
    s = col.seen.at(-1);
    assert.equal(s.url, '/otlp/v1/logs');
    assert.deepEqual(s.body, gz);
    assert.equal(s.headers['content-type'], 'application/json');
    assert.equal(s.headers['content-encoding'], 'gzip');
    assert.equal(s.headers['x-bsp-user'], sub);

    // Protobuf, gzip, traces, with an API key: its id comes along.
    const { key, info } = await t.key('dev@example.com');
    const gzpb = gzipSync(pb);
    col.handler = (req, res) => { res.writeHead(200, { 'Content-Type': 'application/x-protobuf' }); res.end(); };
    r = await post('/v1/traces', 'application/x-protobuf', gzpb, { auth: null, headers: { 'x-api-key': key, 'Content-Encoding': 'gzip' } });
    assert.equal(r.status, 200, r.text());
    assert.equal(r.body.length, 0);
    s = col.seen.at(-1);
    assert.equal(s.url, '/otlp/v1/traces');
    assert.deepEqual(s.body, gzpb);
    assert.equal(s.headers['content-encoding'], 'gzip');
    assert.equal(s.headers['x-bsp-user'], sub);
    assert.equal(s.headers['x-bsp-api-key'], info.id);
    assert.ok(!JSON.stringify(s.headers).includes(key), 'the client\'s key is not forwarded');

    // The collector's error is the client's, Retry-After included.
    col.handler = (req, res) => {
      res.writeHead(429, { 'Content-Type': 'application/json', 'Retry-After': '7' });
      res.end('{"code":8,"message":"slow down"}');
    };
    r = await post('/v1/metrics', 'application/json', '{"resourceMetrics":[]}');
    assert.equal(r.status, 429);
    assert.equal(r.headers['retry-after'], '7');
    assert.deepEqual(r.json(), { code: 8, message: 'slow down' });
    col.handler = (req, res) => { res.writeHead(400, { 'Content-Type': 'application/x-protobuf' }); res.end(Buffer.from([0x08, 0x03])); };
    r = await post('/v1/metrics', 'application/x-protobuf', pb);
    assert.equal(r.status, 400);
    assert.deepEqual(r.body, Buffer.from([0x08, 0x03]));

    // The collector's secret is in no log line.
    assert.ok(!t.d.stderr.includes('collector-secret'), 'the collector secret is not logged');
    const line = t.d.logs.find((e) => e.msg === 'request' && e.route === 'telemetry_traces');
    assert.equal(String(line?.upstream_status), '200');
  } finally {
    await t.stop();
    await col.close();
  }
});

test('telemetry forwarding: no credential is 401 and nothing is forwarded', async () => {
  const col = await startCollector();
  const t = await start({ url: col.url });
  try {
    const post = poster(t, null);
    for (const [path, auth] of [['/v1/metrics', null], ['/v1/logs', 'eyJhbGciOiJub25lIn0.e30.'], ['/v1/traces', 'nope']]) {
      const r = await post(path, 'application/x-protobuf', 'x', { auth });
      assert.equal(r.status, 401, path);
      assert.equal(r.json().error.type, 'authentication_error');
    }
    const r = await post('/v1/logs', 'application/json', '{}', { auth: null, headers: { 'x-api-key': 'bsp_nope' } });
    assert.equal(r.status, 401);
    assert.equal(col.seen.length, 0);
  } finally {
    await t.stop();
    await col.close();
  }
});

test('telemetry forwarding: a collector that is down is 502, in the export\'s encoding', async () => {
  const port = await deadPort();
  const t = await start({ url: `http://127.0.0.1:${port}`, timeout: 1 });
  try {
    const post = poster(t, await t.token('dev@example.com'));
    let r = await post('/v1/metrics', 'application/json', '{"resourceMetrics":[]}');
    assert.equal(r.status, 502, r.text());
    assert.equal(r.headers['content-type'], 'application/json');
    assert.equal(r.json().code, 14);
    assert.match(r.json().message, /cannot be reached/);
    r = await post('/v1/traces', 'application/x-protobuf', Buffer.from([0x0a, 0x00]));
    assert.equal(r.status, 502);
    assert.equal(r.headers['content-type'], 'application/x-protobuf');
    assert.deepEqual(rpcStatus(r.body), { code: 14, message: 'the telemetry collector cannot be reached' });
  } finally {
    await t.stop();
  }
});

test('telemetry forwarding: a collector that hangs is 504 after gateway.telemetry.timeout; the daemon serves on', async () => {
  const col = await startCollector();
  const t = await start({ url: col.url, timeout: 1 });
  try {
    const post = poster(t, await t.token('dev@example.com'));
    col.handler = () => {};
    const pending = post('/v1/logs', 'application/x-protobuf', Buffer.from([0x0a, 0x00]));
    await waitFor(() => col.seen.length === 1);
    // Meanwhile the daemon answers others.
    assert.equal((await t.d.request('/health')).status, 200);
    let r = await pending;
    assert.equal(r.status, 504);
    assert.equal(r.headers['content-type'], 'application/x-protobuf');
    assert.deepEqual(rpcStatus(r.body), { code: 4, message: 'the telemetry collector did not answer in time' });
    r = await post('/v1/metrics', 'application/json', '{}');
    assert.equal(r.status, 504);
    assert.equal(r.json().code, 4);
    // The daemon gave up the collector's connections.
    await waitFor(() => col.seen.length === 2 && col.seen.every((s) => s.closed));
    col.handler = (req, res) => { res.writeHead(200, { 'Content-Type': 'application/json' }); res.end('{}'); };
    r = await post('/v1/metrics', 'application/json', '{}');
    assert.equal(r.status, 200);
  } finally {
    await t.stop();
    await col.close();
  }
});

test('telemetry forwarding: a client leaving mid-forward cancels it; max_forwards bounds what is in flight', async () => {
  const col = await startCollector();
  const t = await start({ url: col.url, max_forwards: 2 });
  try {
    const tok = await t.token('dev@example.com');
    const post = poster(t, tok);
    const held = [];
    col.handler = (req, res, rec) => held.push({ res, rec });

    // The client goes away while the collector holds its export.
    const sock = net.connect(t.d.port, '127.0.0.1');
    await once(sock, 'connect');
    const body = '{"resourceSpans":[]}';
    sock.write(`POST /v1/traces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tok}\r\nContent-Type: application/json\r\n`
      + `Content-Length: ${body.length}\r\n\r\n${body}`);
    await waitFor(() => held.length === 1);
    sock.destroy();
    // The forward is cancelled: the collector's connection is closed.
    await waitFor(() => held[0].rec.closed);
    await t.d.waitForLog((e) => e.msg === 'request' && e.route === 'telemetry_traces' && String(e.status) === '499');

    // Two forwards in flight (the cancelled one no longer counts); a third is refused.
    const a = post('/v1/metrics', 'application/json', '{"n":1}');
    const b = post('/v1/logs', 'application/json', '{"n":2}');
    await waitFor(() => held.length === 3);
    let r = await post('/v1/traces', 'application/x-protobuf', Buffer.from([0x0a, 0x00]));
    assert.equal(r.status, 503);
    assert.equal(r.headers['retry-after'], '1');
    assert.equal(rpcStatus(r.body).code, 14);
    r = await post('/v1/traces', 'application/json', '{}');
    assert.equal(r.status, 503);
    assert.equal(r.json().code, 14);
    assert.equal(col.seen.length, 3);
    for (const h of held.slice(1)) {
      h.res.writeHead(200, { 'Content-Type': 'application/json' });
      h.res.end(`{"got":${JSON.stringify(h.rec.body.toString())}}`);
    }
    assert.deepEqual((await a).json(), { got: '{"n":1}' });
    assert.deepEqual((await b).json(), { got: '{"n":2}' });
    // Room again.
    col.handler = (req, res) => { res.writeHead(200, { 'Content-Type': 'application/json' }); res.end('{}'); };
    r = await post('/v1/traces', 'application/json', '{}');
    assert.equal(r.status, 200);
  } finally {
    await t.stop();
    await col.close();
  }
});

test('telemetry forwarding: a stop with forwards in flight frees them cleanly', async () => {
  const col = await startCollector();
  const t = await start({ url: col.url }, { server: { shutdown_timeout: 0 } });
  try {
    const post = poster(t, await t.token('dev@example.com'));
    col.handler = () => {};
    // Their clients see the connection end.
    const pending = [post('/v1/metrics', 'application/json', '{}'), post('/v1/logs', 'application/x-protobuf', 'x')]
      .map((p) => p.then(() => 'answered', () => 'closed'));
    await waitFor(() => col.seen.length === 2);
    // d.stop() asserts exit 0 and no sanitizer report.
    await t.d.stop();
    assert.deepEqual(await Promise.all(pending), ['closed', 'closed']);
    await waitFor(() => col.seen.every((s) => s.closed));
  } finally {
    await t.stop();
    await col.close();
  }
});

test('telemetry forwarding: the settings are checked', async () => {
  const t = await startRelay({ fake: false });
  try {
    const dir = t.d.dir;
    const cases = [
      [{ url: 'ftp://collector.example.com' }, /gateway\.telemetry\.url: .*not an http\(s\) URL/],
      [{ url: 'http://collector.example.com:4318' }, /gateway\.telemetry\.url: /],
      [{ url: 'https://collector.example.com/otlp?x=1' }, /gateway\.telemetry\.url: the URL must not have a query/],
      [{ url: 'https://user:pw@collector.example.com' }, /gateway\.telemetry\.url: URL must not contain user information/],
      [{ authorization: 'Bearer x' }, /gateway\.telemetry\.authorization needs gateway\.telemetry\.url/],
      [{ url: 'https://collector.example.com', timeout: 0 }, /gateway\.telemetry\.timeout/],
      [{ url: 'https://collector.example.com', max_forwards: 0 }, /gateway\.telemetry\.max_forwards/],
    ];
    const check = (telemetry) => {
      writeFileSync(join(dir, 'check.yaml'), JSON.stringify({ gateway: { telemetry } }));
      chmodSync(join(dir, 'check.yaml'), 0o600);
    };
    for (const [telemetry, re] of cases) {
      check(telemetry);
      const r = await runCommand(['-n', '-f', join(dir, 'check.yaml')], { dir, noConfigFlag: true });
      assert.equal(r.code, 1, `${JSON.stringify(telemetry)}: ${r.stdout}${r.stderr}`);
      assert.match(r.stdout + r.stderr, re, JSON.stringify(telemetry));
      assert.ok(!(r.stdout + r.stderr).includes('pw@'), 'no userinfo echoed');
    }
    check({ url: 'https://collector.example.com:4318', authorization: SECRET });
    const r = await runCommand(['-n', '-f', join(dir, 'check.yaml')], { dir, noConfigFlag: true });
    assert.equal(r.code, 0, r.stdout + r.stderr);
  } finally {
    await t.stop();
  }
});
