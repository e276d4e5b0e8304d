// The Anthropic Messages API in front of Bedrock (src/route-anthropic.c,
// src/anthropic.c, src/models.c and the relay's hooks in src/route-bedrock.c),
// driven with the real @anthropic-ai/sdk: messages, streaming, count_tokens and
// models; the InvokeModel translation held to @anthropic-ai/bedrock-sdk's own
// requests; errors in Anthropic's envelope; usage rows.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import AnthropicBedrock from '@anthropic-ai/bedrock-sdk';
import { CREDS, REGION, startRelay, usageRows, waitUsage } from './lib/relay.mjs';
import { decodeFrames } from './lib/fake-bedrock.mjs';
import { clearOfWindowEnd } from './lib/pg.mjs';
import { waitFor } from './lib/util.mjs';

const HAIKU = 'us.anthropic.claude-haiku-4-5-20251001-v1:0';

/** @anthropic-ai/sdk pointed at the daemon, with our token (Bearer) or key (x-api-key). */
export function anthropic(t, { token, apiKey, ...extra } = {}) {
  return new Anthropic({
    baseURL: t.d.url, apiKey: apiKey ?? null, authToken: apiKey ? null : token, maxRetries: 0, ...extra,
  });
}

async function rejects(promise) {
  try { await promise; } catch (e) { return e; }
  return assert.fail('expected a rejection');
}

/** The Anthropic event JSON texts inside a fake event-stream response, as sent. */
function chunkTexts(buf) {
  return decodeFrames(buf).filter((f) => f.headers[':event-type'] === 'chunk')
    .map((f) => Buffer.from(f.json.bytes, 'base64').toString('utf8'));
}

/** Parse SSE text into [{event, data}]. */
export function parseSse(text) {
  const out = [];
  for (const block of text.split('\n\n')) {
    if (!block.trim()) continue;
    const ev = { event: 'message', data: [] };
    for (const line of block.split('\n')) {
      if (line.startsWith('event: ')) ev.event = line.slice(7);
      else if (line.startsWith('data: ')) ev.data.push(line.slice(6));
    }
    out.push({ event: ev.event, data: ev.data.join('\n') });
  }
  return out;
}

/** POST a Messages request through node:http and read the whole answer. */
async function rawMessages(t, token, body, { path = '/v1/messages?beta=true', headers = {} } = {}) {
  const data = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
  const r = await t.d.request(path, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data), Authorization: `Bearer ${token}`,
      'anthropic-version': '2023-06-01', ...headers,
    },
    body: data,
  });
  return r;
}

const REQ = {
  model: 'claude-haiku-4-5',
  max_tokens: 64,
  system: [{ type: 'text', text: 'be brief', cache_control: { type: 'ephemeral' } }],
  messages: [{ role: 'user', content: [{ type: 'text', text: 'hi there', cache_control: { type: 'ephemeral', ttl: '1h' } }] }],
  tools: [{ name: 'get_time', description: 'the time', input_schema: { type: 'object', properties: { tz: { type: 'string' } } } }],
  thinking: { type: 'enabled', budget_tokens: 1024 },
  metadata: { user_id: '{"device_id":"d1","session_id":"s1"}' },
  temperature: 1,
};

test('messages (invoke): the SDK gets an answer; InvokeModel gets the body with every field, the model in the path', async () => {
  const t = await startRelay();
  try {
    const token = await t.token();
    const c = anthropic(t, { token, defaultHeaders: { 'x-claude-code-session-id': 'sess-42' } });
    const msg = await c.beta.messages.create({ ...REQ, betas: ['interleaved-thinking-2025-05-14', 'context-1m-2025-08-07'] });
    assert.equal(msg.content[0].text, 'echo: hi there');
    const up = t.fake.requests.at(-1);
    assert.equal(up.operation, 'invoke');
    assert.equal(up.modelId, HAIKU);
    assert.equal(up.rawPath, `/model/${encodeURIComponent(HAIKU)}/invoke`);
    assert.equal(up.signatureValid, true);
    assert.equal(up.header('content-type'), 'application/json');
    assert.equal(up.has('anthropic-beta'), false);
    assert.equal(up.has('anthropic-version'), false);
    const sent = JSON.parse(up.body.toString());
    const { model, ...rest } = REQ;
    assert.deepEqual(sent, {
      ...rest, anthropic_version: 'bedrock-2023-05-31', anthropic_beta: ['interleaved-thinking-2025-05-14', 'context-1m-2025-08-07'],
    });
    // The body's own text is kept: the SDK's JSON with model and stream cut out, the two members appended.
    const [row] = await waitUsage(t.d.dir, 1);
    assert.equal(row.model, HAIKU);
    assert.equal(row.route, 'Messages');
    assert.equal(row.status, 200);
    assert.equal(row.session_id, 'sess-42');
    assert.equal(row.input_tokens, up.usage.inputTokens);
    assert.equal(row.output_tokens, up.usage.outputTokens);
  } finally {
    await t.stop();
  }
});

test('messages (invoke) reach Bedrock as @anthropic-ai/bedrock-sdk sends them: path, body bytes, headers', async () => {
  for (const version of ['header', 'bedrock-2023-05-31']) {
    const t = await startRelay({ config: { anthropic: { invoke_version: version } } });
    try {
      const token = await t.token();
      const direct = new AnthropicBedrock({
        baseURL: t.fake.url, awsRegion: REGION, awsAccessKey: CREDS.accessKeyId, awsSecretKey: CREDS.secretAccessKey, maxRetries: 0,
      });
      const ours = anthropic(t, { token });
      for (const stream of [false, true]) {
        const params = { ...REQ, model: HAIKU, stream, betas: ['b-one', 'b-two'] };
        const viaSdk = await direct.beta.messages.create(params);
        const a = t.fake.requests.at(-1);
        const viaUs = await ours.beta.messages.create(params);
        const b = t.fake.requests.at(-1);
        assert.notEqual(a, b);
        assert.equal(a.signatureValid, true);
        assert.equal(b.signatureValid, true);
        // Same operation and model; the SDK leaves ':' literal, we encode it as the AWS SDKs do (both valid).
        assert.equal(b.operation, a.operation);
        assert.equal(b.modelId, a.modelId);
        assert.equal(decodeURIComponent(b.rawPath), decodeURIComponent(a.rawPath));
        assert.equal(b.header('content-type'), a.header('content-type'));
        const sdkBody = a.body.toString();
        if (version === 'header') {
          assert.equal(b.body.toString(), sdkBody, 'body bytes differ from the SDK\'s');
        } else {
          const v = JSON.parse(sdkBody).anthropic_version;
          assert.equal(b.body.toString(), sdkBody.replace(`"anthropic_version":"${v}"`, '"anthropic_version":"bedrock-2023-05-31"'));
        }
        if (stream) {
          const ev1 = [];
          for await (const e of viaSdk) ev1.push(e);
          const ev2 = [];
          for await (const e of viaUs) ev2.push(e);
          // Different answers (fresh ids): same shape, same text.
          assert.deepEqual(ev2.map((e) => e.type), ev1.map((e) => e.type));
          const text = (evs) => evs.filter((e) => e.type === 'content_block_delta').map((e) => e.delta.text).join('');
          assert.equal(text(ev2), text(ev1));
        } else {
          assert.equal(viaUs.content[0].text, viaSdk.content[0].text);
        }
      }
    } finally {
      await t.stop();
    }
  }
});

test('messages stream (invoke): event stream re-emitted as SSE, each chunk\'s JSON byte for byte; usage recorded', async () => {
  const t = await startRelay();
  try {
    const token = await t.token();
    const r = await rawMessages(t, token, { ...REQ, stream: true }, { headers: { 'X-Claude-Code-Session-Id': 'sse-1' } });
    assert.equal(r.status, 200);
    assert.match(r.headers['content-type'], /^text\/event-stream/);
    const up = t.fake.requests.at(-1);
    assert.equal(up.operation, 'invoke-with-response-stream');
    const sent = chunkTexts(up.response.body);
    const got = parseSse(r.text());
    assert.deepEqual(got.map((e) => e.data), sent);
    assert.deepEqual(got.map((e) => e.event), sent.map((s) => JSON.parse(s).type));
    // The SDK reads the same stream.
    const c = anthropic(t, { token });
    const final = await c.messages.stream({ ...REQ }).finalMessage();
    assert.equal(final.content[0].text, 'echo: hi there');
    const rows = await waitUsage(t.d.dir, 2);
    assert.equal(rows[0].session_id, 'sse-1');
    assert.equal(rows[0].input_tokens, up.usage.inputTokens);
    assert.equal(rows[0].output_tokens, up.usage.outputTokens);
    assert.equal(rows[0].outcome, 'ok');
  } finally {
    await t.stop();
  }
});

test('messages stream (invoke): a stream fed one byte at a time is translated the same', async () => {
  const t = await startRelay();
  try {
    const token = await t.token();
    const r = await rawMessages(t, token, { ...REQ, model: 'us.anthropic.test.stream-bytewise', stream: true });
    assert.equal(r.status, 200);
    const up = t.fake.requests.at(-1);
    assert.ok(up.response.framesSent > 500, `${up.response.framesSent} writes`);
    assert.deepEqual(parseSse(r.text()).map((e) => e.data), chunkTexts(up.response.body));
  } finally {
    await t.stop();
  }
});

test('messages stream (invoke): exceptions, a truncated or cut stream end with an error event; the SDK raises', async () => {
  const t = await startRelay();
  try {
    const token = await t.token();
    const want = {
      'stream-throttle': 'rate_limit_error', 'stream-truncated': 'api_error', 'stream-cut': 'api_error',
    };
    for (const [sc, type] of Object.entries(want)) {
      const r = await rawMessages(t, token, { ...REQ, model: `us.anthropic.test.${sc}`, stream: true });
      assert.equal(r.status, 200);
      const evs = parseSse(r.text());
      const last = evs.at(-1);
      assert.equal(last.event, 'error', `${sc}: ${r.text()}`);
      assert.equal(JSON.parse(last.data).error.type, type, sc);
      assert.equal(evs.filter((e) => e.event === 'error').length, 1);
      const c = anthropic(t, { token });
      const e = await rejects(c.messages.stream({ ...REQ, model: `us.anthropic.test.${sc}` }).finalMessage());
      assert.ok(e instanceof Error, sc);
    }
    const rows = await waitUsage(t.d.dir, 6);
    assert.equal(rows[0].outcome, 'throttlingException');
    assert.equal(rows[2].outcome, 'internalServerException');
    assert.equal((await t.d.request('/health')).status, 200);
  } finally {
    await t.stop();
  }
});

test('messages stream (invoke): a ping after anthropic.ping_interval of upstream silence', async () => {
  const t = await startRelay({ config: { anthropic: { ping_interval: 1 } } });
  try {
    const token = await t.token();
    const r = await rawMessages(t, token, { ...REQ, model: 'us.anthropic.test.stream-pause-2500', stream: true });
    const evs = parseSse(r.text());
    const i = evs.findIndex((e) => e.event === 'ping');
    assert.ok(i > 0, r.text());
    assert.equal(evs[i].data, '{"type": "ping"}');
    assert.equal(evs.at(-1).event, 'message_stop');
  } finally {
    await t.stop();
  }
});

test('count_tokens (invoke) goes to Bedrock\'s CountTokens with the InvokeModel body; models lists what the caller may use', async () => {
  const t = await startRelay({
    config: { models: { rules: [{ deny: ['*opus*'] }], aliases: [{ id: 'house-model', bedrock_id: 'claude-sonnet-4-6', display_name: 'House' }] } },
  });
  try {
    const token = await t.token();
    const c = anthropic(t, { token });
    const n = await c.messages.countTokens({ model: 'claude-haiku-4-5', messages: [{ role: 'user', content: 'count these words' }] });
    const up = t.fake.requests.at(-1);
    assert.equal(up.operation, 'count-tokens');
    assert.equal(up.modelId, HAIKU);
    assert.equal(n.input_tokens, up.usage.inputTokens);
    const inner = JSON.parse(Buffer.from(JSON.parse(up.body.toString()).input.invokeModel.body, 'base64').toString());
    assert.deepEqual(inner, {
      messages: [{ role: 'user', content: 'count these words' }], anthropic_version: 'bedrock-2023-05-31', max_tokens: 1,
    });
    const [row] = await waitUsage(t.d.dir, 1);
    assert.equal(row.route, 'CountTokens');

    const ids = [];
    for await (const m of c.models.list({ limit: 5 })) ids.push(m);
    const names = ids.map((m) => m.id);
    assert.ok(names.includes('claude-haiku-4-5'));
    assert.ok(names.includes('house-model'));
    assert.ok(!names.some((x) => x.includes('opus')), names.join());
    assert.equal(new Set(names).size, names.length);
    const house = ids.find((m) => m.id === 'house-model');
    assert.equal(house.display_name, 'House');
    assert.equal(house.type, 'model');
    assert.equal((await c.models.retrieve('claude-haiku-4-5-20251001')).created_at, '2025-10-01T00:00:00Z');
    assert.equal((await rejects(c.models.retrieve('claude-opus-4-1'))).status, 404);
    // An API key's model patterns narrow the list further, and apply to the resolved Bedrock id.
    const { key } = await t.key('dev@example.com', '--models', '*claude-sonnet-4-6*');
    const k = anthropic(t, { apiKey: key });
    const mine = [];
    for await (const m of k.models.list()) mine.push(m.id);
    assert.deepEqual(mine.sort(), ['claude-sonnet-4-6', 'house-model']);
    const denied = await rejects(k.messages.create({ ...REQ }));
    assert.equal(denied.status, 400);
    assert.equal(denied.error.error.type, 'invalid_request_error');
    const ok = await k.messages.create({ ...REQ, model: 'house-model' });
    assert.equal(ok.content[0].text, 'echo: hi there');
    assert.equal(t.fake.requests.at(-1).modelId, 'us.anthropic.claude-sonnet-4-6');
  } finally {
    await t.stop();
  }
});

test('errors in Anthropic\'s envelope: bad credential 401, denied or unknown model 400, rate limit 429 with Retry-After, Bedrock\'s errors mapped', async () => {
  const t = await startRelay({ config: { rate_limits: { requests_per_minute: 1000 }, models: { rules: [{ deny: ['*claude-opus-4-1*'] }] } } });
  try {
    const token = await t.token();
    const c = anthropic(t, { token });
    let e = await rejects(anthropic(t, { token: 'not-a-token' }).messages.create(REQ));
    assert.equal(e.status, 401);
    assert.equal(e.error.type, 'error');
    assert.equal(e.error.error.type, 'authentication_error');
    e = await rejects(anthropic(t, { apiKey: 'bsk_nope' }).messages.create(REQ));
    assert.equal(e.status, 401);
    // A token without the bedrock:invoke scope may not call models here either.
    const narrow = await t.token('dev@example.com', '--scope', 'profile');
    for (const call of [(x) => x.messages.create(REQ), (x) => x.models.list()]) {
      e = await rejects(call(anthropic(t, { token: narrow })));
      assert.equal(e.status, 403);
      assert.equal(e.error.error.type, 'permission_error');
    }
    e = await rejects(c.messages.create({ ...REQ, model: 'claude-opus-4-1' }));
    assert.equal(e.status, 400);
    assert.equal(e.error.error.type, 'invalid_request_error');
    assert.match(e.error.error.message, /not allowed/);
    e = await rejects(c.messages.create({ ...REQ, model: 'gpt-4o' }));
    assert.equal(e.status, 400);
    assert.match(e.error.error.message, /unknown model/);
    const cases = [
      ['error-400', 400, 'invalid_request_error', 'Extra inputs are not permitted'],
      ['error-403', 403, 'permission_error', null],
      ['error-424', 500, 'api_error', null],
      ['error-408', 504, 'timeout_error', null],
      ['error-429', 429, 'rate_limit_error', null],
      ['error-503', 503, 'overloaded_error', null],
    ];
    for (const [sc, status, type, msg] of cases) {
      const r = await rawMessages(t, token, { ...REQ, model: `us.anthropic.test.${sc}` });
      assert.equal(r.status, status, sc);
      const j = r.json();
      assert.equal(j.type, 'error');
      assert.equal(j.error.type, type, sc);
      if (msg) assert.equal(j.error.message, msg);
      assert.equal(r.headers['x-amzn-errortype'], undefined);
      if (sc === 'error-429') assert.equal(r.headers['retry-after'], '7');
    }
    const r = await rawMessages(t, token, '{"model": "claude-haiku-4-5", "messages": [');
    assert.equal(r.status, 400);
    assert.equal(r.json().error.type, 'invalid_request_error');
  } finally {
    await t.stop();
  }
  const t2 = await startRelay({ config: { rate_limits: { requests_per_minute: 1 } } });
  try {
    const token = await t2.token();
    const c = anthropic(t2, { token });
    await clearOfWindowEnd();
    await c.messages.create(REQ);
    const e = await rejects(c.messages.create(REQ));
    assert.equal(e.status, 429);
    assert.equal(e.error.error.type, 'rate_limit_error');
    assert.match(e.headers.get('retry-after'), /^\d+$/);
  } finally {
    await t2.stop();
  }
});

test('hostile input: 25 MB body, an oversize body, an alias loop, unknown models: clean answers, the daemon goes on', async () => {
  const t = await startRelay({ config: { server: { max_body_bytes: 26 * 1024 * 1024 } } });
  try {
    const token = await t.token();
    const big = JSON.stringify({ ...REQ, messages: [{ role: 'user', content: 'x'.repeat(25_000_000) }] });
    let r = await rawMessages(t, token, big);
    assert.equal(r.status, 200);
    assert.equal(t.fake.requests.at(-1).body.length,
      big.length - `"model":"${REQ.model}",`.length + ',"anthropic_version":"bedrock-2023-05-31"'.length);
    r = await rawMessages(t, token, 'y'.repeat(27 * 1024 * 1024));
    assert.equal(r.status, 413);
    assert.equal(r.json().error.type, 'request_too_large');
    for (const bad of ['[]', '{"model": 7}', '{"model": "claude-haiku-4-5", "stream": "yes"}', '{"model":"a","model":"b"}',
      '{"model": "us.anthropic.x%2F..%2Fy"}', '{"model": "../../x"}', '\u0000']) {
      r = await rawMessages(t, token, bad);
      assert.equal(r.status, 400, bad);
      assert.equal(r.json().error.type, 'invalid_request_error', bad);
    }
    assert.equal((await t.d.request('/health')).status, 200);
  } finally {
    await t.stop();
  }
  // A loop in the alias table is refused when the configuration is loaded.
  const { runCommand } = await import('./lib/daemon.mjs');
  const t3 = await startRelay();
  try {
    const { writeFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const cfgPath = join(t3.d.dir, 'loop.yaml');
    writeFileSync(cfgPath, JSON.stringify({
      database: { url: `sqlite://${join(t3.d.dir, 'state', 'proxy.db')}` },
      models: { aliases: [{ id: 'a-model', bedrock_id: 'b-model' }, { id: 'b-model', bedrock_id: 'a-model' }] },
    }), { mode: 0o600 });
    const res = await runCommand(['-n', '-f', cfgPath], { dir: t3.d.dir });
    assert.notEqual(res.code, 0);
    assert.match(res.stderr, /models\.aliases\.0: "a-model": the model's aliases form a loop/);
  } finally {
    await t3.stop();
  }
});

test('messages (native): bedrock-runtime\'s /anthropic/v1/messages with only the model changed, SSE byte for byte', async () => {
  const t = await startRelay({ config: { anthropic: { upstream: 'native', count_tokens: 'native' } } });
  try {
    const token = await t.token();
    const body = JSON.stringify({ ...REQ, stream: true });
    const r = await rawMessages(t, token, body, { headers: { 'anthropic-beta': 'a-beta,b-beta' } });
    assert.equal(r.status, 200);
    const up = t.fake.requests.at(-1);
    assert.equal(up.rawPath, '/anthropic/v1/messages');
    assert.equal(up.signatureValid, true);
    assert.equal(up.header('anthropic-version'), '2023-06-01');
    assert.equal(up.header('anthropic-beta'), 'a-beta,b-beta');
    assert.equal(up.body.toString(), body.replace('"claude-haiku-4-5"', `"${HAIKU}"`));
    assert.ok(r.body.equals(up.response.body), 'SSE bytes differ');
    const c = anthropic(t, { token });
    const m = await c.messages.create(REQ);
    assert.equal(m.content[0].text, 'echo: hi there');
    const n = await c.messages.countTokens({ model: 'claude-haiku-4-5', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(t.fake.requests.at(-1).rawPath, '/anthropic/v1/messages/count_tokens');
    assert.equal(n.input_tokens, 1);
    const rows = await waitUsage(t.d.dir, 3);
    assert.deepEqual([rows[0].input_tokens, rows[0].output_tokens, rows[0].cache_read_tokens, rows[0].cache_write_tokens],
      [up.usage.inputTokens, up.usage.outputTokens, 3, 2]);
    // The upstream's own Anthropic error passes unchanged; AWS-shaped ones are put in the envelope.
    let e = await rejects(c.messages.create({ ...REQ, model: 'us.anthropic.test.native-error' }));
    assert.equal(e.status, 400);
    assert.match(e.error.error.message, /prompt is too long/);
    e = await rejects(c.messages.create({ ...REQ, model: 'us.anthropic.test.error-429' }));
    assert.equal(e.status, 429);
    assert.equal(e.error.error.type, 'rate_limit_error');
    // A stream cut inside an event ends with an error event after an empty line.
    const cut = await rawMessages(t, token, { ...REQ, model: 'us.anthropic.test.stream-cut', stream: true });
    const evs = parseSse(cut.text());
    assert.equal(evs.at(-1).event, 'error');
    // A stream fed a byte at a time is relayed unchanged, its usage read.
    const bw = await rawMessages(t, token, { ...REQ, model: 'us.anthropic.test.stream-bytewise', stream: true });
    assert.ok(bw.body.equals(t.fake.requests.at(-1).response.body));
    const all = await waitFor(() => { const x = usageRows(t.d.dir); return x.length >= 7 ? x : null; }, { timeoutMs: 4000 });
    assert.equal(all.at(-1).output_tokens, t.fake.requests.at(-1).usage.outputTokens);
  } finally {
    await t.stop();
  }
  const t2 = await startRelay({ config: { anthropic: { count_tokens: 'off' } } });
  try {
    const c = anthropic(t2, { token: await t2.token() });
    const e = await rejects(c.messages.countTokens({ model: 'claude-haiku-4-5', messages: [{ role: 'user', content: 'hi' }] }));
    assert.equal(e.status, 501);
    assert.equal(e.error.error.type, 'not_supported');
  } finally {
    await t2.stop();
  }
});

test('messages stream (invoke): a client that leaves mid-stream cancels the upstream call; its usage row is written', async () => {
  const t = await startRelay();
  try {
    const token = await t.token();
    const { rawStream } = await import('./lib/relay.mjs');
    const body = JSON.stringify({ ...REQ, model: 'us.anthropic.test.stream-pause-3000', stream: true });
    const sock = rawStream(t.d.url, '/v1/messages?beta=true', {
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}`, 'X-Claude-Code-Session-Id': 'gone-1' },
      body,
    });
    let got = '';
    await new Promise((resolve) => {
      sock.on('data', (d) => {
        got += d.toString();
        if (got.includes('event: content_block_start')) resolve();
      });
    });
    sock.destroy();
    const up = await t.fake.waitForClose(() => true, 5000);
    assert.equal(up.response.aborted, true, 'the upstream call was cancelled');
    const [row] = await waitUsage(t.d.dir, 1);
    assert.equal(row.status, 499);
    assert.equal(row.outcome, 'client_gone');
    assert.equal(row.session_id, 'gone-1');
    assert.equal(row.input_tokens, up.usage.inputTokens, 'input tokens from message_start');
    assert.equal((await t.d.request('/health')).status, 200);
  } finally {
    await t.stop();
  }
});
