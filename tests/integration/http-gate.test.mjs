// The head gate (server-gate.c + http-head.c): every request head is read
// strictly before evhttp sees it, ambiguous framing is refused with 400 and
// a closed connection (request smuggling), an oversized head with 431, and
// a request without a valid credential is refused before its body is read;
// bodies of requests that are not authenticated stay small, connections
// per client address are capped. Each test drives the real daemon over raw
// sockets, since an HTTP library would not send what an attacker sends.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { test } from 'node:test';
import { startDaemon } from './lib/daemon.mjs';
import { MODEL, anthropicBody, startRelay } from './lib/relay.mjs';
import { counts } from './lib/tokens.mjs';
import { sleep, waitFor } from './lib/util.mjs';

/**
 * A raw connection: everything it receives, a promise for the close, and a
 * promise for the first complete response head (status, headers, text).
 */
function raw(port) {
  const sock = net.connect(port, '127.0.0.1');
  let data = Buffer.alloc(0);
  let ended = false;
  const waiters = [];
  const check = () => {
    for (const w of [...waiters]) if (w.test()) { waiters.splice(waiters.indexOf(w), 1); w.resolve(); }
  };
  sock.on('data', (d) => { data = Buffer.concat([data, d]); check(); });
  const closed = new Promise((res) => sock.on('close', () => { ended = true; check(); res(data.toString('latin1')); }));
  sock.on('error', () => {});
  const until = (test, ms = 5000, what = 'data') => new Promise((resolve, reject) => {
    const w = { test, resolve };
    const t = setTimeout(() => {
      waiters.splice(waiters.indexOf(w), 1);
      reject(new Error(`no ${what} within ${ms} ms; got ${JSON.stringify(data.toString('latin1').slice(0, 300))}`));
    }, ms);
    w.resolve = () => { clearTimeout(t); resolve(); };
    waiters.push(w);
    check();
  });
  return {
    sock,
    closed,
    get text() { return data.toString('latin1'); },
    get ended() { return ended; },
    /** The responses received so far: [{status, headers, body}]. */
    responses() {
      const out = [];
      let s = data.toString('latin1');
      for (;;) {
        const m = /^HTTP\/1\.[01] (\d{3}) [^\r\n]*\r\n/.exec(s);
        const e = s.indexOf('\r\n\r\n');
        if (!m || e < 0) break;
        const headers = {};
        for (const l of s.slice(m[0].length, e).split('\r\n')) {
          const c = l.indexOf(':');
          headers[l.slice(0, c).toLowerCase()] = l.slice(c + 1).trim();
        }
        const len = Number(headers['content-length'] ?? 0);
        if (s.length < e + 4 + len) break;
        out.push({ status: Number(m[1]), headers, body: s.slice(e + 4, e + 4 + len) });
        s = s.slice(e + 4 + len);
      }
      return out;
    },
    /** Wait for n complete responses. */
    async response(n = 1, ms = 5000) {
      await until(() => this.responses().length >= n || ended, ms, `${n} response(s)`);
      const r = this.responses();
      assert.ok(r.length >= n, `expected ${n} response(s), got ${r.length}: ${JSON.stringify(this.text.slice(0, 300))}`);
      return r[n - 1];
    },
    write(s) { return new Promise((res) => sock.write(s, () => res())); },
  };
}

/** VmRSS of a process, in bytes. */
function rss(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]) * 1024;
}

// A well-formed second request hidden after each ambiguous one: if the
// daemon read the first one's body as a request, it would answer it.
const SMUGGLED = 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n';

const AMBIGUOUS = [
  ['two Content-Lengths with different values',
    `POST /auth/refresh HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: ${2 + SMUGGLED.length}\r\n\r\n{}${SMUGGLED}`,
    /more than one Content-Length/],
  ['Content-Length: +2',
    `POST /auth/refresh HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\n{}${SMUGGLED}`, /malformed Content-Length/],
  ['Transfer-Encoding with a space before the colon',
    `POST /auth/refresh HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
    /whitespace before a header's colon/],
  ['both Content-Length and Transfer-Encoding',
    `POST /auth/refresh HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
    /both Content-Length and Transfer-Encoding/],
  ['a folded header line',
    `GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\r\n Content-Length: 5\r\n\r\n${SMUGGLED}`, /folded/],
];

test('ambiguous framing is refused with 400 and the connection closes; nothing behind it is read as a request', async () => {
  const d = await startDaemon();
  try {
    for (const [what, text, why] of AMBIGUOUS) {
      const c = raw(d.port);
      await c.write(text);
      const out = await c.closed;
      const rs = c.responses();
      assert.equal(rs.length, 1, `${what}: exactly one answer (${JSON.stringify(out.slice(0, 400))})`);
      assert.equal(rs[0].status, 400, what);
      assert.equal(rs[0].headers.connection, 'close', what);
      assert.match(JSON.parse(rs[0].body).error_description, why, what);
    }
    assert.equal((await d.request('/health')).status, 200, 'still serving');
  } finally {
    await d.stop();
  }
});

test('two Authorization or two X-Api-Key headers: 400 and close, whatever the second says', async () => {
  const t = await startRelay();
  try {
    const tok = await t.token();
    const { key } = await t.key();
    const cases = [
      ['Authorization', `Authorization: Bearer ${tok}\r\nAuthorization: Bearer nonsense`],
      ['Authorization (same twice)', `Authorization: Bearer ${tok}\r\nAuthorization: Bearer ${tok}`],
      ['X-Api-Key', `X-Api-Key: ${key}\r\nX-Api-Key: bsk_other`],
    ];
    for (const [what, lines] of cases) {
      for (const [path, shape] of [['/auth/validate', 'oauth'], [`/model/${MODEL}/invoke`, 'bedrock']]) {
        const c = raw(t.d.port);
        const body = anthropicBody('hi');
        await c.write(`${path.startsWith('/auth') ? 'GET' : 'POST'} ${path} HTTP/1.1\r\nHost: x\r\n${lines}\r\n` +
          `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
        await c.closed;
        const rs = c.responses();
        assert.equal(rs.length, 1, `${what} on ${path}`);
        assert.equal(rs[0].status, 400, `${what} on ${path}: ${rs[0].body}`);
        if (shape === 'bedrock') assert.equal(rs[0].headers['x-amzn-errortype'], 'ValidationException');
      }
    }
    assert.equal(t.fake.requests.length, 0, 'nothing reached Bedrock');
    // One of each is fine.
    const ok = await t.post(`/model/${MODEL}/invoke`, { token: tok });
    assert.equal(ok.status, 200, ok.text());
  } finally {
    await t.stop();
  }
});

test('a request head over server.max_header_bytes (default 32 KiB) gets 431', async () => {
  const sixtyFour = Array.from({ length: 64 }, (_, i) => `X-Filler-${i}: ${'a'.repeat(1000)}\r\n`).join('');
  const d = await startDaemon();
  try {
    const c = raw(d.port);
    await c.write(`GET /health HTTP/1.1\r\nHost: x\r\n${sixtyFour}\r\n`);
    const r = await c.response();
    assert.equal(r.status, 431);
    await c.closed;
    // A head that never ends is refused as soon as it is too long.
    const c2 = raw(d.port);
    await c2.write(`GET /health HTTP/1.1\r\nHost: x\r\nX-Long: ${'b'.repeat(40000)}`);
    assert.equal((await c2.response()).status, 431);
    await c2.closed;
    // 16 KiB of headers are fine.
    const c3 = raw(d.port);
    await c3.write(`GET /health HTTP/1.1\r\nHost: x\r\n${sixtyFour.slice(0, 16 * 1024 - 100).replace(/[^\n]*$/, '')}\r\n`);
    assert.equal((await c3.response()).status, 200);
    c3.sock.destroy();
  } finally {
    await d.stop();
  }
  const d2 = await startDaemon({ config: { server: { max_header_bytes: 131072 } } });
  try {
    const c = raw(d2.port);
    await c.write(`GET /health HTTP/1.1\r\nHost: x\r\n${sixtyFour}\r\n`);
    assert.equal((await c.response()).status, 200, 'the limit is configurable');
    c.sock.destroy();
  } finally {
    await d2.stop();
  }
});

test('a request without a valid credential is refused before its body is read', async () => {
  const t = await startRelay();
  try {
    const tok = await t.token();
    const before = counts(t.d.dir);
    const path = `/model/${MODEL}/invoke`;
    const forged = 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.AAAA';
    for (const [what, auth, status] of [
      ['no credentials', '', 401],
      ['a malformed credential', 'Authorization: Bearer garbage\r\n', 401],
      ['an AWS signature', 'Authorization: AWS4-HMAC-SHA256 Credential=x\r\n', 401],
      ['a forged token', `Authorization: Bearer ${forged}\r\n`, 401],
      ['an unknown API key', 'X-Api-Key: bsk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n', 401],
      ['a refresh token', 'Authorization: Bearer bsr_AAAA\r\n', 401],
    ]) {
      // 25 MiB announced, not one byte of it sent: the answer must not wait for it.
      const c = raw(t.d.port);
      await c.write(`POST ${path} HTTP/1.1\r\nHost: x\r\n${auth}Content-Type: application/json\r\nContent-Length: 26214400\r\n\r\n`);
      const r = await c.response(1, 5000);
      assert.equal(r.status, status, `${what}: ${r.body}`);
      assert.equal(r.headers['x-amzn-errortype'], 'UnrecognizedClientException', what);
      assert.equal(r.headers.connection, 'close', what);
      await c.closed;
    }
    // A valid token with a body over server.max_body_bytes: 413 before the body.
    const c = raw(t.d.port);
    await c.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tok}\r\nContent-Length: 26214401\r\n\r\n`);
    const r = await c.response();
    assert.equal(r.status, 413);
    assert.equal(r.headers['x-amzn-errortype'], 'ValidationException');
    await c.closed;
    assert.equal(t.fake.requests.length, 0, 'nothing reached Bedrock');
    assert.deepEqual(counts(t.d.dir), before, 'nothing written');
    // A token and its body: relayed, over one keep-alive connection twice.
    const body = anthropicBody('x'.repeat(200000));
    const k = raw(t.d.port);
    for (let i = 1; i <= 2; i++) {
      await k.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tok}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      assert.equal((await k.response(i, 10000)).status, 200);
    }
    k.sock.destroy();
  } finally {
    await t.stop();
  }
});

test('a refused request\'s body is dropped, and its client reads the answer instead of a reset', async () => {
  const t = await startRelay();
  try {
    const c = raw(t.d.port);
    const body = Buffer.alloc(8 * 1024 * 1024, 0x61);
    await c.write(`POST /model/${MODEL}/invoke HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n`);
    c.sock.write(body);
    const r = await c.response(1, 10000);
    assert.equal(r.status, 401);
    await c.closed;
    assert.equal((await t.d.request('/health')).status, 200);
  } finally {
    await t.stop();
  }
});

test('pre-authentication memory: 20 connections announcing 25 MiB without credentials cost next to nothing', async () => {
  const t = await startRelay();
  try {
    const before = rss(t.d.pid);
    const conns = [];
    const chunk = Buffer.alloc(1024 * 1024, 0x62);
    for (let i = 0; i < 20; i++) {
      const c = raw(t.d.port);
      conns.push(c);
      await c.write(`POST /model/${MODEL}/invoke HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 26214400\r\n\r\n`);
      c.sock.write(chunk);
    }
    for (const c of conns) assert.equal((await c.response(1, 10000)).status, 401);
    const grown = rss(t.d.pid) - before;
    assert.ok(grown < 32 * 1024 * 1024, `RSS grew by ${(grown / 1048576).toFixed(1)} MiB`);
    for (const c of conns) c.sock.destroy();
  } finally {
    await t.stop();
  }
});

test('a route that takes no credential reads at most 64 KiB of body', async () => {
  const d = await startDaemon();
  try {
    const c = raw(d.port);
    await c.write('POST /auth/refresh HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n');
    const r = await c.response();
    assert.equal(r.status, 413);
    assert.match(JSON.parse(r.body).error_description, /without valid credentials/);
    await c.closed;
    // Chunked, over the limit: refused by evhttp's own count as soon as a
    // chunk's size line takes it over (nothing more is sent, so that no
    // unread byte turns the close into a reset).
    const c2 = raw(d.port);
    const piece = 'x'.repeat(16384);
    await c2.write('POST /auth/refresh HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n' +
      `${piece.length.toString(16)}\r\n${piece}\r\n`.repeat(3) + `${(65536 - 3 * 16384 + 1).toString(16)}\r\n`);
    assert.equal((await c2.response()).status, 413);
    c2.sock.destroy();
    // A small body is read and answered as before.
    const r3 = await d.request('/auth/refresh', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"refresh_token":"bsr_x"}',
    });
    assert.equal(r3.status, 400);
  } finally {
    await d.stop();
  }
});

test('pipelined requests each pass the gate: a refused head after a good one', async () => {
  const d = await startDaemon();
  try {
    const c = raw(d.port);
    await c.write(`GET /health HTTP/1.1\r\nHost: x\r\n\r\nPOST /auth/refresh HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{}${SMUGGLED}`);
    await c.closed;
    const rs = c.responses();
    assert.deepEqual(rs.map((r) => r.status), [200, 400]);
    // And two good ones.
    const c2 = raw(d.port);
    await c2.write(`GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    await c2.closed;
    assert.deepEqual(c2.responses().map((r) => r.status), [200, 200]);
  } finally {
    await d.stop();
  }
});

test('server.max_connections_per_client caps one address; trusted proxies are exempt', async () => {
  const d = await startDaemon({ config: { server: { max_connections_per_client: 4 } } });
  try {
    const idle = [];
    for (let i = 0; i < 4; i++) {
      const c = raw(d.port);
      await c.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
      await c.response();
      idle.push(c);
    }
    const fifth = raw(d.port);
    await fifth.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
    const out = await fifth.closed;
    assert.doesNotMatch(out, /^HTTP/, 'the fifth connection is closed unanswered');
    await d.waitForLog((e) => /connections \(limit 4\)/.test(e.msg ?? ''));
    idle.pop().sock.destroy();
    await waitFor(async () => (await d.request('/health', { agent: false })).status === 200,
      { message: 'a slot frees when a connection closes' });
    for (const c of idle) c.sock.destroy();
  } finally {
    await d.stop();
  }
  const d2 = await startDaemon({ config: { server: { max_connections_per_client: 2, trusted_proxies: ['127.0.0.1/32'] } } });
  try {
    const cs = [];
    for (let i = 0; i < 5; i++) {
      const c = raw(d2.port);
      await c.write('GET /health HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.100.7\r\n\r\n');
      assert.equal((await c.response()).status, 200, `connection ${i + 1} through the proxy`);
      cs.push(c);
    }
    for (const c of cs) c.sock.destroy();
  } finally {
    await d2.stop();
  }
});

test('a slow head is still dropped after server.timeouts.header while held by the gate', async () => {
  const d = await startDaemon({ config: { server: { timeouts: { header: 1 } } } });
  try {
    const c = raw(d.port);
    await c.write('GET /health HTTP/1.1\r\nHost: x\r\n');
    await sleep(200);
    await c.write('X-A: b\r\n');
    const out = await c.closed;
    assert.doesNotMatch(out, /^HTTP\/1\.1 200/);
  } finally {
    await d.stop();
  }
});
