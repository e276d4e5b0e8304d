// Streaming through the relay (src/route-bedrock.c, src/http-client.c,
// src/eventstream.c): the bytes reach the client unchanged and as they
// arrive, exception and error frames pass through as sent, a silent stream
// is ended with an exception frame the SDK raises, a silent upstream before
// the head is a 504, and a client that leaves cancels the upstream call.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import net from 'node:net';
import { test } from 'node:test';
import {
  InvokeModelCommand, InvokeModelWithResponseStreamCommand, ModelStreamErrorException,
} from '@aws-sdk/client-bedrock-runtime';
import {
  decodeFrames, encodeChunkFrame, encodeExceptionFrame, encodeFrame,
} from './lib/fake-bedrock.mjs';
import {
  MODEL, anthropicBody, metricValue, rawStream, scrape, startRelay, waitUsage,
} from './lib/relay.mjs';
import { sleep, waitFor } from './lib/util.mjs';

const enc = encodeURIComponent;

async function rejects(promise) {
  try { await promise; } catch (e) { return e; }
  return assert.fail('expected a rejection');
}

/** Streamed POST through node:http: resolves {status, headers, chunks: [{at, buf}], body, firstAt}. */
async function streamPost(t, path, token, body = anthropicBody('stream')) {
  const r = await t.post(path, { token, body, stream: true });
  const chunks = [];
  for await (const c of r.res) chunks.push({ at: Date.now(), buf: c });
  return { status: r.status, headers: r.headers, chunks, body: Buffer.concat(chunks.map((c) => c.buf)), firstAt: chunks[0]?.at };
}

test('relay stream: bytes reach the client unchanged, frame by frame as the upstream sends them', async () => {
  // 40 frames, 25 ms apart: about a second of streaming.
  const t = await startRelay({ fake: { frameIntervalMs: 25 } });
  try {
    const token = await t.token();
    for (const op of ['invoke-with-response-stream', 'converse-stream']) {
      const body = op === 'converse-stream'
        ? JSON.stringify({ messages: [{ role: 'user', content: [{ text: 'frames' }] }] }) : anthropicBody('frames');
      const r = await streamPost(t, `/model/test.stream-frames-40/${op}`, token, body);
      const up = t.fake.requests.at(-1);
      assert.equal(r.status, 200);
      assert.equal(up.signatureValid, true);
      assert.equal(r.headers['content-type'], 'application/vnd.amazon.eventstream');
      assert.equal(up.response.framesSent, 40);
      assert.ok(!up.response.truncated);
      assert.ok(r.body.equals(up.response.body), `${op}: client bytes differ from what the fake sent`);
      assert.equal(decodeFrames(r.body).length, 40);
      // Relayed as they arrive: the first bytes came long before the fake's last, in many pieces.
      assert.ok(r.firstAt < up.response.closedAt - 400, `${op}: first chunk ${up.response.closedAt - r.firstAt} ms before the end`);
      assert.ok(r.chunks.length >= 10, `${op}: only ${r.chunks.length} chunks: buffered?`);
    }
  } finally {
    await t.stop();
  }
});

test('relay stream: a 16 MB stream read in uneven bites arrives byte for byte and its invocationMetrics are counted', async () => {
  const t = await startRelay();
  try {
    const token = await t.token();
    for (const op of ['invoke-with-response-stream', 'converse-stream']) {
      const body = op === 'converse-stream'
        ? JSON.stringify({ messages: [{ role: 'user', content: [{ text: 'big one' }] }] }) : anthropicBody('big one');
      const r = await t.post(`/model/test.stream-bytes-16m/${op}`, { token, body, stream: true });
      const hash = createHash('sha256');
      let n = 0;
      let i = 0;
      for await (const c of r.res) {
        hash.update(c);
        n += c.length;
        // Stop now and then, so that the proxy pauses and resumes the upstream.
        if (++i % 20 === 0) await sleep(15);
      }
      const up = t.fake.requests.at(-1);
      await t.fake.waitForClose((x) => x === up, 2000);
      assert.equal(n, up.response.bytesWritten);
      assert.equal(hash.digest('hex'), up.response.sha256, `${op}: the bytes differ`);
    }
    const rows = await waitUsage(t.d.dir, 2);
    for (const [k, row] of rows.entries()) {
      const up = t.fake.requests[k];
      assert.deepEqual([row.input_tokens, row.output_tokens], [up.usage.inputTokens, up.usage.outputTokens],
        `${row.route}: usage from the end of a long stream`);
      assert.equal(row.outcome, 'ok');
    }
    assert.ok(!t.d.stderr.includes('cannot follow the upstream event stream'), 'the side decoder lost its place');
  } finally {
    await t.stop();
  }
});

test('relay stream: exception and error frames pass through unchanged and end the SDK stream', async () => {
  const t = await startRelay();
  try {
    const token = await t.token();
    const frames = {
      'test.mid-model-error': encodeExceptionFrame('modelStreamErrorException', 'The model crashed mid-way', {
        originalStatusCode: 500, originalMessage: 'boom',
      }),
      'test.mid-unmodeled': encodeFrame({ ':message-type': 'error', ':error-code': 'InternalFailure', ':error-message': 'unmodeled failure' }, ''),
    };
    t.fake.setHandler(async (req, res, rec) => {
      const f = frames[rec.modelId];
      if (!f) return false;
      res.setHeader('Content-Type', 'application/vnd.amazon.eventstream');
      res.writeHead(200);
      res.write(encodeChunkFrame({ type: 'message_start', message: { usage: { input_tokens: 3, output_tokens: 1 } } }));
      res.write(encodeChunkFrame({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }));
      res.end(f);
      return true;
    });
    for (const model of Object.keys(frames)) {
      const r = await streamPost(t, `/model/${model}/invoke-with-response-stream`, token);
      const up = t.fake.requests.at(-1);
      assert.equal(r.status, 200);
      assert.ok(r.body.equals(up.response.body), `${model}: bytes differ`);
      assert.ok(decodeFrames(r.body).at(-1).raw.equals(frames[model]));
    }
    const out = await t.sdk({ token }).send(new InvokeModelWithResponseStreamCommand({ modelId: 'test.mid-model-error', body: anthropicBody('x') }));
    const got = [];
    const e = await rejects((async () => { for await (const ev of out.body) got.push(ev); })());
    assert.equal(got.length, 2);
    assert.ok(e instanceof ModelStreamErrorException, e.name);
    assert.equal(e.message, 'The model crashed mid-way');
    assert.equal(e.originalStatusCode, 500);
    const out2 = await t.sdk({ token }).send(new InvokeModelWithResponseStreamCommand({ modelId: 'test.mid-unmodeled', body: anthropicBody('x') }));
    const e2 = await rejects((async () => { for await (const ev of out2.body) got.push(ev); })());
    assert.match(`${e2.name} ${e2.message}`, /InternalFailure|unmodeled failure/);
  } finally {
    await t.stop();
  }
});

test('relay stream: stream_idle ends a silent stream with an exception frame the SDK raises; a silent head is 504', async () => {
  const t = await startRelay({ config: { server: { timeouts: { stream_idle: 1, upstream_first_byte: 2 } } } });
  try {
    const token = await t.token();
    t.fake.setHandler(async (req, res, rec) => {
      if (rec.modelId !== 'test.goes-silent') return false;
      res.setHeader('Content-Type', 'application/vnd.amazon.eventstream');
      res.writeHead(200);
      res.write(encodeChunkFrame({ type: 'message_start', message: { usage: { input_tokens: 5, output_tokens: 1 } } }));
      res.write(encodeChunkFrame({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }));
      return true; // and then nothing, until the proxy hangs up
    });
    const started = Date.now();
    const out = await t.sdk({ token }).send(new InvokeModelWithResponseStreamCommand({ modelId: 'test.goes-silent', body: anthropicBody('x') }));
    const got = [];
    const e = await rejects((async () => { for await (const ev of out.body) got.push(ev); })());
    const took = Date.now() - started;
    assert.equal(got.length, 2, 'the frames before the silence arrive');
    assert.ok(e instanceof ModelStreamErrorException, `${e.name}: ${e.message}`);
    assert.match(e.message, /silent/);
    assert.ok(took >= 900 && took < 4000, `ended after ${took} ms (stream_idle 1 s)`);
    const up = await t.fake.waitForClose((r) => r.modelId === 'test.goes-silent', 3000);
    assert.equal(up.response.aborted, true, 'the proxy closed the silent upstream');

    // The raw bytes: the fake's two frames, then one exception frame of ours.
    const r = await streamPost(t, '/model/test.goes-silent/invoke-with-response-stream', token);
    const fr = decodeFrames(r.body);
    assert.equal(fr.length, 3);
    assert.equal(fr[2].headers[':message-type'], 'exception');
    assert.equal(fr[2].headers[':exception-type'], 'modelStreamErrorException');

    // No head at all within upstream_first_byte: 504 in Bedrock's shape.
    const t0 = Date.now();
    const e2 = await rejects(t.sdk({ token }).send(new InvokeModelCommand({ modelId: 'test.stall', body: anthropicBody('x') })));
    assert.equal(e2.$metadata.httpStatusCode, 504, `${e2.name}: ${e2.message}`);
    assert.ok(Date.now() - t0 >= 1900, 'waited upstream_first_byte');
    await t.fake.waitForClose((x) => x.modelId === 'test.stall', 3000);
    const rows = await waitUsage(t.d.dir, 3);
    assert.deepEqual(rows.map((x) => x.outcome), ['modelStreamErrorException', 'modelStreamErrorException', 'timeout_first_byte']);
    const m = await scrape(t.d);
    assert.equal(metricValue(m, 'bsp_upstream_requests_total', { operation: 'InvokeModel', code: 'timeout_first_byte' }), 1);
    assert.equal(metricValue(m, 'bsp_upstream_requests_total', { operation: 'InvokeModelWithResponseStream', code: '200' }), 2);
  } finally {
    await t.stop();
  }
});

test('relay stream: a client that disconnects cancels the upstream call promptly', async () => {
  const t = await startRelay();
  try {
    const token = await t.token();
    for (const how of ['destroy', 'half-read']) {
      const before = t.fake.requests.length;
      const sock = rawStream(t.d.url, '/model/test.stream-forever/invoke-with-response-stream', {
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, body: anthropicBody('forever'),
      });
      let got = 0;
      sock.on('data', (b) => { got += b.length; });
      await waitFor(() => got > 500, { timeoutMs: 5000, message: 'no stream bytes' });
      const up = t.fake.requests[before];
      assert.equal(up.scenario, 'stream-forever');
      assert.equal((await scrape(t.d)).find((m) => m.name === 'bsp_active_streams')?.value, 1);
      const gone = Date.now();
      if (how === 'destroy') sock.destroy();
      else sock.end(); // half-close: evhttp sees EOF
      const closed = await t.fake.waitForClose((r) => r === up, 3000);
      const lag = closed.response.closedAt - gone;
      assert.ok(lag < 1500, `${how}: upstream closed ${lag} ms after the client left`);
      assert.equal(closed.response.aborted, true);
      sock.destroy();
      await waitFor(async () => metricValue(await scrape(t.d), 'bsp_active_streams') === 0, { timeoutMs: 3000, message: 'bsp_active_streams stays up' });
    }
    const rows = await waitUsage(t.d.dir, 2);
    assert.deepEqual(rows.map((r) => [r.status, r.outcome]), [[499, 'client_gone'], [499, 'client_gone']]);
    assert.ok(rows.every((r) => r.first_byte_ms >= 0 && r.input_tokens > 0), JSON.stringify(rows));
    // The proxy is fine afterwards.
    await sleep(50);
    const r = await t.post(`/model/${enc(MODEL)}/invoke`, { token });
    assert.equal(r.status, 200);
  } finally {
    await t.stop();
  }
});

/** One raw HTTP/1.x connection: send requests, read whole responses (chunked, Content-Length or until close). */
function rawConn(url) {
  const u = new URL(url);
  const sock = net.connect(Number(u.port), u.hostname);
  let buf = Buffer.alloc(0);
  let closed = false;
  let waiters = [];
  const wake = () => { const w = waiters; waiters = []; for (const f of w) f(); };
  sock.on('data', (b) => { buf = Buffer.concat([buf, b]); wake(); });
  sock.on('close', () => { closed = true; wake(); });
  sock.on('error', () => {});
  const more = () => {
    if (closed) throw new Error('connection closed in the middle of a response');
    return new Promise((r) => waiters.push(r));
  };
  return {
    sock,
    get closed() { return closed; },
    send(path, { version = '1.1', headers = {}, body = '' } = {}) {
      const lines = [`POST ${path} HTTP/${version}`, `Host: ${u.host}`, `Content-Length: ${Buffer.byteLength(body)}`];
      for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
      sock.write(`${lines.join('\r\n')}\r\n\r\n${body}`);
    },
    async response() {
      let i;
      while ((i = buf.indexOf('\r\n\r\n')) < 0) await more();
      const [first, ...hl] = buf.subarray(0, i).toString('latin1').split('\r\n');
      buf = buf.subarray(i + 4);
      const headers = {};
      for (const l of hl) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
      const parts = [];
      if (headers['transfer-encoding'] === 'chunked') {
        for (;;) {
          let j;
          while ((j = buf.indexOf('\r\n')) < 0) await more();
          const n = parseInt(buf.subarray(0, j).toString('latin1'), 16);
          while (buf.length < j + 2 + n + 2) await more();
          parts.push(buf.subarray(j + 2, j + 2 + n));
          buf = buf.subarray(j + 2 + n + 2);
          if (n === 0) break;
        }
      } else if (headers['content-length'] !== undefined) {
        const n = Number(headers['content-length']);
        while (buf.length < n) await more();
        parts.push(buf.subarray(0, n));
        buf = buf.subarray(n);
      } else {
        while (!closed) await new Promise((r) => waiters.push(r));
        parts.push(buf);
        buf = Buffer.alloc(0);
      }
      return { status: Number(first.split(' ')[1]), version: first.split(' ')[0], headers, body: Buffer.concat(parts) };
    },
    async waitClosed(ms = 3000) {
      await waitFor(() => closed, { timeoutMs: ms, message: 'the proxy kept the connection open' });
    },
  };
}

// A stream's reply sheds the request's and the reply's headers once its head
// is out (src/server-reply.c): evhttp still decides keep-alive from the
// Connection headers when the stream ends, for HTTP/1.1 and HTTP/1.0 alike.
test('relay stream: after a stream the connection is kept or closed as the client asked', async () => {
  const t = await startRelay();
  try {
    const token = await t.token();
    const auth = { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' };
    const spath = '/model/test.stream-frames-12/invoke-with-response-stream';
    const msg = JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 64, stream: true, messages: [{ role: 'user', content: 'hi' }] });

    // Keep-alive: a Bedrock stream, an Anthropic stream, a plain call and a
    // stream again, all on one connection.
    const c = rawConn(t.d.url);
    c.send(spath, { headers: auth, body: anthropicBody('one') });
    let r = await c.response();
    assert.equal(r.status, 200);
    assert.equal(r.headers['transfer-encoding'], 'chunked');
    assert.ok(r.body.equals(t.fake.requests.at(-1).response.body));
    c.send('/v1/messages', { headers: { ...auth, 'anthropic-version': '2023-06-01' }, body: msg });
    r = await c.response();
    assert.equal(r.status, 200);
    assert.match(r.headers['content-type'], /^text\/event-stream/);
    assert.match(r.body.toString(), /event: message_stop/);
    c.send(`/model/${enc(MODEL)}/invoke`, { headers: auth, body: anthropicBody('plain') });
    r = await c.response();
    assert.equal(r.status, 200);
    assert.equal(JSON.parse(r.body).type, 'message');
    // Connection: close on the last one: the stream ends, then the connection.
    c.send(spath, { headers: { ...auth, Connection: 'close' }, body: anthropicBody('last') });
    r = await c.response();
    assert.equal(r.status, 200);
    assert.equal(decodeFrames(r.body).length, 12);
    await c.waitClosed();

    // HTTP/1.0, with keep-alive asked for or not: no chunked encoding, so
    // the body ends with the connection (not framed by a Content-Length
    // of 0 that evhttp would send for a keep-alive 1.0 client).
    for (const conn of ['keep-alive', null]) {
      const c10 = rawConn(t.d.url);
      c10.send(spath, { version: '1.0', headers: { ...auth, ...(conn ? { Connection: conn } : {}) }, body: anthropicBody('ten') });
      r = await c10.response();
      assert.equal(r.status, 200);
      assert.equal(r.headers['content-length'], undefined, JSON.stringify(r.headers));
      assert.notEqual(r.headers.connection, 'keep-alive');
      assert.equal(decodeFrames(r.body).length, 12);
      await c10.waitClosed();
    }

    // Connection: close on an Anthropic stream.
    const c2 = rawConn(t.d.url);
    c2.send('/v1/messages', { headers: { ...auth, 'anthropic-version': '2023-06-01', Connection: 'close' }, body: msg });
    r = await c2.response();
    assert.equal(r.status, 200);
    assert.match(r.body.toString(), /event: message_stop/);
    await c2.waitClosed();

    const rows = await waitUsage(t.d.dir, 7);
    assert.deepEqual(rows.map((x) => [x.status, x.outcome]), Array(7).fill([200, 'ok']));
  } finally {
    await t.stop();
  }
});
