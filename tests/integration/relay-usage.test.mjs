// Usage accounting of relayed calls (src/route-bedrock.c, src/usage.c,
// src/cmd-usage.c): one row per call with who, what, how much and how long,
// from each place Bedrock reports tokens (InvokeModel headers, the stream's
// invocationMetrics, the Converse body, the ConverseStream metadata event);
// rows for failed and abandoned calls; batched writes; the `usage` command's
// tables; and the relay's Prometheus series.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  ConverseCommand, ConverseStreamCommand, InvokeModelCommand, InvokeModelWithResponseStreamCommand,
} from '@aws-sdk/client-bedrock-runtime';
import { runCommand } from './lib/daemon.mjs';
import { encodeChunkFrame, encodeConverseFrame, encodeFrame } from './lib/fake-bedrock.mjs';
import {
  MODEL, anthropicBody, metricValue, rawStream, scrape, startRelay, usageRows, waitUsage,
} from './lib/relay.mjs';
import { withDb } from './lib/tokens.mjs';
import { waitFor } from './lib/util.mjs';

const enc = encodeURIComponent;
const HAIKU = 'us.anthropic.claude-haiku-4-5-20251001-v1:0';

async function drain(it) {
  const out = [];
  try { for await (const ev of it) out.push(ev); } catch (e) { out.push(e); }
  return out;
}

test('relay usage: a row per call with user, key, model, route, status, tokens from every source, latencies, ids', async () => {
  const t = await startRelay();
  try {
    const token = await t.token('ann@example.com');
    const { key, info } = await t.key('ann@example.com', '--name', 'laptop');
    // Cache numbers, which the default fake does not send.
    t.fake.setHandler(async (req, res, rec) => {
      if (rec.modelId !== 'test.cached') return false;
      if (rec.operation === 'invoke') {
        const body = JSON.stringify({ type: 'message', content: [{ type: 'text', text: 'c' }], usage: { input_tokens: 11, output_tokens: 12 } });
        res.writeHead(200, {
          'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), 'x-amzn-RequestId': 'rq-cached',
          'X-Amzn-Bedrock-Input-Token-Count': '11', 'X-Amzn-Bedrock-Output-Token-Count': '12',
          'X-Amzn-Bedrock-Cache-Read-Input-Token-Count': '13', 'X-Amzn-Bedrock-Cache-Write-Input-Token-Count': '14',
        });
        res.end(body);
        return true;
      }
      res.writeHead(200, { 'Content-Type': 'application/vnd.amazon.eventstream' });
      if (rec.operation === 'invoke-with-response-stream') {
        res.write(encodeChunkFrame({
          type: 'message_start',
          message: { usage: { input_tokens: 21, output_tokens: 1, cache_read_input_tokens: 23, cache_creation_input_tokens: 24 } },
        }));
        res.write(encodeChunkFrame({ type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 22 } }));
        res.end(encodeChunkFrame({ type: 'message_stop', 'amazon-bedrock-invocationMetrics': { inputTokenCount: 21, outputTokenCount: 22, invocationLatency: 5, firstByteLatency: 2 } }));
      } else {
        res.write(encodeConverseFrame('messageStart', { role: 'assistant' }));
        res.end(encodeConverseFrame('metadata', {
          usage: { inputTokens: 31, outputTokens: 32, totalTokens: 63, cacheReadInputTokens: 33, cacheWriteInputTokens: 34 }, metrics: { latencyMs: 3 },
        }));
      }
      return true;
    });

    const sdk = t.sdk({ token });
    const session = { 'X-Claude-Code-Session-Id': 'cc-session-42' };
    const calls = [];
    const mark = () => { calls.push({ up: t.fake.requests.at(-1), at: Date.now() }); };
    // 1 InvokeModel: X-Amzn-Bedrock-*-Token-Count headers (raw, to send the session header and see X-Request-Id).
    const r1 = await t.post(`/model/${enc(MODEL)}/invoke`, { token, headers: session, body: anthropicBody('one two three four five six') });
    assert.equal(r1.status, 200);
    mark();
    // 2 InvokeModelWithResponseStream: invocationMetrics; Claude Code's session header through the SDK.
    const withSession = t.sdk({ token });
    withSession.middlewareStack.add((next) => (args) => {
      args.request.headers['x-claude-code-session-id'] = 'cc-stream-7';
      return next(args);
    }, { step: 'build' });
    await drain((await withSession.send(new InvokeModelWithResponseStreamCommand({ modelId: MODEL, body: anthropicBody('stream tokens please') }))).body);
    mark();
    // 3 Converse: body usage. 4 ConverseStream: metadata event. Both with the API key.
    await t.sdk({ token: key }).send(new ConverseCommand({ modelId: HAIKU, messages: [{ role: 'user', content: [{ text: 'converse usage' }] }] }));
    mark();
    await drain((await t.sdk({ token: key }).send(new ConverseStreamCommand({ modelId: HAIKU, messages: [{ role: 'user', content: [{ text: 'cs usage' }] }] }))).stream);
    mark();
    // 5-7 cache tokens from headers, chunks and metadata.
    await sdk.send(new InvokeModelCommand({ modelId: 'test.cached', body: anthropicBody('x') }));
    mark();
    await drain((await sdk.send(new InvokeModelWithResponseStreamCommand({ modelId: 'test.cached', body: anthropicBody('x') }))).body);
    mark();
    await drain((await sdk.send(new ConverseStreamCommand({ modelId: 'test.cached', messages: [{ role: 'user', content: [{ text: 'x' }] }] }))).stream);
    mark();
    // 8 an upstream error; 9 a stream the upstream cuts mid-frame.
    await assert.rejects(sdk.send(new InvokeModelCommand({ modelId: 'test.error-500', body: anthropicBody('x') })));
    mark();
    const cut = await drain((await sdk.send(new InvokeModelWithResponseStreamCommand({ modelId: 'test.stream-cut', body: anthropicBody('x') }))).body);
    assert.ok(cut.at(-1) instanceof Error, 'the cut stream ends with an error in the SDK');
    mark();

    const rows = await waitUsage(t.d.dir, 9, 4000);
    const lag = Date.now() - calls.at(-1).at;
    assert.ok(lag < 2500, `the last row took ${lag} ms to appear`);
    assert.equal(rows.length, 9);
    const [inv, st, cv, cs, c1, c2, c3, e500, ecut] = rows;

    assert.equal(inv.user_id, 'local:ann@example.com');
    assert.equal(inv.api_key_id, null);
    assert.equal(inv.model, MODEL);
    assert.equal(inv.route, 'InvokeModel');
    assert.equal(inv.status, 200);
    assert.equal(inv.outcome, 'ok');
    assert.equal(inv.input_tokens, Number(calls[0].up.response.headers['x-amzn-bedrock-input-token-count']));
    assert.equal(inv.output_tokens, Number(calls[0].up.response.headers['x-amzn-bedrock-output-token-count']));
    assert.equal(inv.request_id, r1.headers['x-request-id']);
    assert.equal(inv.session_id, 'cc-session-42');
    assert.ok(inv.latency_ms >= inv.first_byte_ms && inv.first_byte_ms >= 0, JSON.stringify(inv));
    assert.ok(Math.abs(inv.ts - Date.now() / 1000) < 30);

    assert.equal(st.route, 'InvokeModelWithResponseStream');
    assert.deepEqual([st.input_tokens, st.output_tokens], [calls[1].up.usage.inputTokens, calls[1].up.usage.outputTokens]);
    assert.equal(st.session_id, 'cc-stream-7');
    assert.ok(st.first_byte_ms >= 0 && st.latency_ms >= st.first_byte_ms);

    for (const [row, i, route] of [[cv, 2, 'Converse'], [cs, 3, 'ConverseStream']]) {
      assert.equal(row.route, route);
      assert.equal(row.api_key_id, info.id, `${route}: API key id`);
      assert.equal(row.user_id, 'local:ann@example.com');
      assert.equal(row.model, HAIKU);
      assert.deepEqual([row.input_tokens, row.output_tokens], [calls[i].up.usage.inputTokens, calls[i].up.usage.outputTokens], route);
    }
    assert.deepEqual([c1.input_tokens, c1.output_tokens, c1.cache_read_tokens, c1.cache_write_tokens], [11, 12, 13, 14]);
    assert.deepEqual([c2.input_tokens, c2.output_tokens, c2.cache_read_tokens, c2.cache_write_tokens], [21, 22, 23, 24]);
    assert.deepEqual([c3.input_tokens, c3.output_tokens, c3.cache_read_tokens, c3.cache_write_tokens], [31, 32, 33, 34]);
    const m = await scrape(t.d);
    assert.equal(metricValue(m, 'bsp_tokens_total', { direction: 'cache_read', model: 'test.cached' }), 13 + 23 + 33);
    assert.equal(metricValue(m, 'bsp_tokens_total', { direction: 'cache_write', model: 'test.cached' }), 14 + 24 + 34);
    assert.equal(metricValue(m, 'bsp_tokens_total', { direction: 'input', model: 'test.cached' }), 11 + 21 + 31);

    assert.equal(e500.status, 500);
    assert.equal(e500.outcome, 'InternalServerException');
    assert.equal(ecut.status, 200, 'the stream had begun');
    assert.notEqual(ecut.outcome, 'ok');
    assert.ok(ecut.input_tokens > 0, 'tokens seen before the cut are kept');

    // The access log agrees with the rows.
    const isAccess = (e) => e?.msg === 'request' && /^bedrock_/.test(e.route);
    await t.d.waitForLog(() => t.d.logs.filter(isAccess).length >= 9);
    const acc = t.d.logs.filter(isAccess);
    assert.equal(acc.length, 9);
    assert.equal(acc[0].tokens_in, inv.input_tokens);
  } finally {
    await t.stop();
  }
});

test('relay usage: stream chunks in any JSON shape are counted; text deltas are relayed untouched', async () => {
  const t = await startRelay();
  try {
    const token = await t.token('ann@example.com');
    const CHUNK = { ':event-type': 'chunk', ':content-type': 'application/json', ':message-type': 'event' };
    const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64');
    const frames = [
      // "p" before "bytes": the relay cannot take its shortcut and parses.
      encodeFrame(CHUNK, JSON.stringify({ p: 'abc', bytes: b64({ type: 'message_start', message: { usage: { input_tokens: 41, output_tokens: 1, cache_read_input_tokens: 43, cache_creation_input_tokens: 44 } } }) })),
      // Text deltas as Bedrock sends them, one with words that look like usage.
      encodeChunkFrame({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'the "usage": {"output_tokens": 999} of it' } }),
      encodeChunkFrame({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'more' } }),
      // Whitespace around the member, and an escaped "/" in the base64.
      encodeFrame(CHUNK, `{ "bytes" : ${JSON.stringify(b64({ type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 40 }, pad: '\u00ff\u00ff?' })).replace(/\//g, '\\/')} }`),
      encodeChunkFrame({ type: 'message_stop', 'amazon-bedrock-invocationMetrics': { inputTokenCount: 41, outputTokenCount: 42 } }),
    ];
    t.fake.setHandler(async (req, res, rec) => {
      if (rec.modelId !== 'test.shapes') return false;
      res.writeHead(200, { 'Content-Type': 'application/vnd.amazon.eventstream' });
      for (const f of frames.slice(0, -1)) res.write(f);
      res.end(frames.at(-1));
      return true;
    });
    const r = await t.post('/model/test.shapes/invoke-with-response-stream', { token, body: anthropicBody('x') });
    assert.equal(r.status, 200);
    assert.ok(Buffer.concat(frames).equals(r.body), 'the frames reach the client byte for byte');
    const [row] = await waitUsage(t.d.dir, 1, 4000);
    assert.deepEqual([row.input_tokens, row.output_tokens, row.cache_read_tokens, row.cache_write_tokens], [41, 42, 43, 44]);

    // Without the final metrics, the message_delta (found through the
    // whitespace and the escape) gives the output count.
    t.fake.setHandler(async (req, res, rec) => {
      if (rec.modelId !== 'test.shapes') return false;
      res.writeHead(200, { 'Content-Type': 'application/vnd.amazon.eventstream' });
      for (const f of frames.slice(0, -2)) res.write(f);
      res.end(frames.at(-2));
      return true;
    });
    const r2 = await t.post('/model/test.shapes/invoke-with-response-stream', { token, body: anthropicBody('x') });
    assert.equal(r2.status, 200);
    const rows = await waitUsage(t.d.dir, 2, 4000);
    assert.deepEqual([rows[1].input_tokens, rows[1].output_tokens], [41, 40]);
  } finally {
    await t.stop();
  }
});

test('relay usage: an InvokeModel answer without token headers is counted from its body, in any JSON spelling', async () => {
  const t = await startRelay();
  try {
    const token = await t.token('ann@example.com');
    const usage = '{"input_tokens":51,"output_tokens":52,"cache_read_input_tokens":53,"cache_creation_input_tokens":54}';
    const bodies = [
      // As Bedrock writes it, behind text that mentions usage.
      `{"type":"message","content":[{"type":"text","text":"\\"usage\\":{\\"input_tokens\\":999}"}],"usage":${usage}}`,
      // Whitespace everywhere, nested arrays and objects before it, a duplicate (the last counts).
      ` {\n "usage" : {"input_tokens": 1} ,\t"content" : [ { "a" : [ [ ] , { } , null , true , -1.5e3 ] } ] ,\r\n "usage" : ${usage} } `,
      // An escaped member name: the relay's reader cannot tell, jansson can.
      `{"content":[],"\\u0075sage":${usage}}`,
      // An escaped name inside usage, and a count too long for the reader's digits.
      '{"usage":{"\\u0069nput_tokens":51,"output_tokens":52,"cache_read_input_tokens":0053,"cache_creation_input_tokens":54}}',
      '{"usage":{"input_tokens":51,"output_tokens":1234567890123456789,"cache_read_input_tokens":53,"cache_creation_input_tokens":54}}',
      // Counts that are not non-negative integers are not counted.
      '{"usage":{"input_tokens":-51,"output_tokens":52.0,"cache_read_input_tokens":"53","cache_creation_input_tokens":54}}',
      // Not JSON: nothing counted, the answer still relayed.
      '{"usage":{"input_tokens":51} trailing',
    ];
    let next = 0;
    t.fake.setHandler(async (req, res, rec) => {
      if (rec.modelId !== 'test.body') return false;
      const body = bodies[next++];
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
      return true;
    });
    for (const body of bodies) {
      const r = await t.post('/model/test.body/invoke', { token, body: anthropicBody('x') });
      assert.equal(r.status, 200);
      assert.equal(r.body.toString(), body, 'relayed unchanged');
    }
    await waitFor(() => withDb(t.d.dir, (db) => db.prepare('SELECT count(*) AS n FROM usage').get().n) >= bodies.length,
      { timeoutMs: 4000, message: 'usage rows' });
    // As text: a 19-digit count is beyond what a JavaScript number holds exactly.
    const rows = withDb(t.d.dir, (db) => db.prepare(`SELECT CAST(input_tokens AS TEXT) AS i, CAST(output_tokens AS TEXT) AS o,
      CAST(cache_read_tokens AS TEXT) AS r, CAST(cache_write_tokens AS TEXT) AS w FROM usage ORDER BY id`).all())
      .map((x) => [x.i, x.o, x.r, x.w].join(' '));
    assert.deepEqual(rows, [
      '51 52 53 54', '51 52 53 54', '51 52 53 54',
      // jansson refuses 0053 (a leading zero is not JSON): nothing from that answer.
      '0 0 0 0',
      '51 1234567890123456789 53 54',
      '0 0 0 54', '0 0 0 0',
    ]);
  } finally {
    await t.stop();
  }
});

test('relay usage: Bedrock\'s input and output count headers, in any case, count over the body\'s (its cache counts over theirs); of a header sent twice the first; one that is not a count does not', async () => {
  const t = await startRelay();
  try {
    const token = await t.token('ann@example.com');
    const body = '{"usage":{"input_tokens":5,"output_tokens":6,"cache_read_input_tokens":7,"cache_creation_input_tokens":8}}';
    const heads = [
      // Any case: input and output from the headers, the cache counts from the body.
      { 'x-amzn-bedrock-input-token-count': '15', 'x-amzn-bedrock-output-token-count': '16',
        'X-AMZN-BEDROCK-CACHE-READ-INPUT-TOKEN-COUNT': '17', 'x-Amzn-Bedrock-Cache-Write-Input-Token-Count': '18' },
      // Sent twice: the first counts; not a count: the body's.
      { 'X-Amzn-Bedrock-Input-Token-Count': ['25', '99'], 'X-Amzn-Bedrock-Output-Token-Count': '2x6',
        'X-Amzn-Bedrock-Cache-Read-Input-Token-Count': '-27', 'X-Amzn-Bedrock-Cache-Write': '99' },
    ];
    let next = 0;
    t.fake.setHandler(async (req, res, rec) => {
      if (rec.modelId !== 'test.heads') return false;
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), ...heads[next++] });
      res.end(body);
      return true;
    });
    for (let i = 0; i < heads.length; i++) {
      const r = await t.post('/model/test.heads/invoke', { token, body: anthropicBody('x') });
      assert.equal(r.status, 200);
    }
    await waitFor(() => withDb(t.d.dir, (db) => db.prepare('SELECT count(*) AS n FROM usage').get().n) >= heads.length,
      { timeoutMs: 4000, message: 'usage rows' });
    const rows = withDb(t.d.dir, (db) => db.prepare(`SELECT input_tokens AS i, output_tokens AS o, cache_read_tokens AS r,
      cache_write_tokens AS w FROM usage ORDER BY id`).all()).map((x) => [x.i, x.o, x.r, x.w].join(' '));
    assert.deepEqual(rows, ['15 16 7 8', '25 6 7 8']);
  } finally {
    await t.stop();
  }
});

test('relay usage: the usage command prints per-user, per-model and per-day tables', async () => {
  const t = await startRelay();
  try {
    const ann = await t.token('ann@example.com');
    const bob = await t.token('bob@example.com');
    for (const [tok, model, n] of [[ann, MODEL, 2], [bob, HAIKU, 1], [ann, HAIKU, 1]]) {
      for (let i = 0; i < n; i++) assert.equal((await t.post(`/model/${enc(model)}/invoke`, { token: tok })).status, 200);
    }
    assert.equal((await t.post('/model/test.error-429/invoke', { token: bob })).status, 429);
    const rows = await waitUsage(t.d.dir, 5);
    const sum = (f, k) => rows.filter(f).reduce((a, r) => a + r[k], 0);
    const usage = async (...args) => {
      const r = await runCommand(['usage', ...args], { dir: t.d.dir });
      assert.equal(r.code, 0, r.stderr);
      return r.stdout.split('\n').filter(Boolean);
    };
    const cells = (lines, first) => lines.find((l) => l.startsWith(first))?.trim().split(/\s+/);

    let out = await usage();
    assert.match(out[0], /^# usage since .* by user$/);
    assert.deepEqual(out[1].trim().split(/\s+/), ['USER', 'REQUESTS', 'INPUT_TOKENS', 'OUTPUT_TOKENS', 'CACHE_READ', 'CACHE_WRITE', 'ERRORS']);
    const annRow = cells(out, 'local:ann@example.com');
    const annIn = sum((r) => r.user_id === 'local:ann@example.com', 'input_tokens');
    const annOut = sum((r) => r.user_id === 'local:ann@example.com', 'output_tokens');
    assert.deepEqual(annRow.slice(1).map(Number), [3, annIn, annOut, 0, 0, 0]);
    assert.deepEqual(cells(out, 'local:bob@example.com').slice(1, 2).map(Number), [2]);
    assert.equal(Number(cells(out, 'local:bob@example.com')[6]), 1, 'the 429 is counted as an error');
    assert.deepEqual(cells(out, 'TOTAL').slice(1, 2).map(Number), [5]);

    out = await usage('--by', 'model');
    assert.match(out[1], /^MODEL\s/);
    assert.equal(Number(cells(out, MODEL)[1]), 2);
    assert.equal(Number(cells(out, HAIKU)[1]), 2);
    assert.equal(Number(cells(out, 'test.error-429')[1]), 1);

    out = await usage('--by', 'day');
    assert.match(out[1], /^DAY\s/);
    const today = new Date().toISOString().slice(0, 10);
    assert.equal(Number(cells(out, today)[1]), 5);

    out = await usage('--user', 'ann@example.com', '--by', 'model', '--since', '1d');
    assert.match(out[0], /for local:ann@example.com/);
    assert.equal(Number(cells(out, 'TOTAL')[1]), 3);
    assert.equal(cells(out, 'test.error-429'), undefined);
    out = await usage('--since', '2099-01-01');
    assert.equal(Number(cells(out, 'TOTAL')[1]), 0);

    const bad = await runCommand(['usage', '--by', 'weather'], { dir: t.d.dir });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /usage: .* usage/);
  } finally {
    await t.stop();
  }
});

test('relay metrics: upstream requests and durations by operation and code, active streams, tokens by direction and model', async () => {
  const t = await startRelay();
  try {
    const token = await t.token();
    const sdk = t.sdk({ token });
    await sdk.send(new InvokeModelCommand({ modelId: MODEL, body: anthropicBody('metrics') }));
    const up1 = t.fake.requests.at(-1);
    await sdk.send(new InvokeModelCommand({ modelId: MODEL, body: anthropicBody('metrics again') }));
    const up2 = t.fake.requests.at(-1);
    await assert.rejects(sdk.send(new InvokeModelCommand({ modelId: 'test.error-429', body: anthropicBody('x') })));
    await drain((await sdk.send(new ConverseStreamCommand({ modelId: HAIKU, messages: [{ role: 'user', content: [{ text: 'm' }] }] }))).stream);
    const up4 = t.fake.requests.at(-1);

    // A stream in flight counts as active.
    const sock = rawStream(t.d.url, '/model/test.stream-forever/invoke-with-response-stream', {
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, body: anthropicBody('forever'),
    });
    let got = 0;
    sock.on('data', (b) => { got += b.length; });
    await waitFor(() => got > 200, { timeoutMs: 5000 });
    let m = await scrape(t.d);
    assert.equal(metricValue(m, 'bsp_active_streams'), 1);
    sock.destroy();
    await waitFor(async () => metricValue(await scrape(t.d), 'bsp_active_streams') === 0, { timeoutMs: 3000, message: 'active streams stay at 1' });

    m = await scrape(t.d);
    assert.equal(metricValue(m, 'bsp_upstream_requests_total', { operation: 'InvokeModel', code: '200' }), 2);
    assert.equal(metricValue(m, 'bsp_upstream_requests_total', { operation: 'InvokeModel', code: '429' }), 1);
    assert.equal(metricValue(m, 'bsp_upstream_requests_total', { operation: 'ConverseStream', code: '200' }), 1);
    assert.equal(metricValue(m, 'bsp_upstream_request_duration_seconds_count', { operation: 'InvokeModel' }), 3);
    assert.ok(metricValue(m, 'bsp_upstream_request_duration_seconds_sum', { operation: 'InvokeModel' }) > 0);
    assert.equal(metricValue(m, 'bsp_upstream_request_duration_seconds_bucket', { operation: 'InvokeModel', le: '+Inf' }), 3);
    assert.equal(metricValue(m, 'bsp_tokens_total', { direction: 'input', model: MODEL }), up1.usage.inputTokens + up2.usage.inputTokens);
    assert.equal(metricValue(m, 'bsp_tokens_total', { direction: 'output', model: MODEL }), up1.usage.outputTokens + up2.usage.outputTokens);
    assert.equal(metricValue(m, 'bsp_tokens_total', { direction: 'input', model: HAIKU }), up4.usage.inputTokens);
    assert.equal(metricValue(m, 'bsp_tokens_total', { direction: 'output', model: HAIKU }), up4.usage.outputTokens);
    assert.ok(metricValue(m, 'bsp_upstream_requests_total', { operation: 'InvokeModelWithResponseStream' }) >= 1);
    assert.equal(usageRows(t.d.dir).length >= 0, true);
  } finally {
    await t.stop();
  }
});
