// The Bedrock relay with real clients (src/route-bedrock.c): every runtime
// operation at the root and under /bedrock, the header allow-lists both
// ways, @aws-sdk/client-bedrock-runtime with our JWT and with an API key as
// its bearer token, @anthropic-ai/bedrock-sdk the way Claude Code drives it,
// model ids in both wire forms and an inference-profile ARN, and the access
// log line. The fake re-verifies the proxy's SigV4 on every request.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  ApplyGuardrailCommand, ConverseCommand, ConverseStreamCommand, CountTokensCommand, InvokeModelCommand,
  InvokeModelWithResponseStreamCommand,
} from '@aws-sdk/client-bedrock-runtime';
import { decodeFrames } from './lib/fake-bedrock.mjs';
import { sleep } from './lib/util.mjs';
import {
  ARN, MODEL, accessLines, anthropicBody, startRelay,
} from './lib/relay.mjs';

const enc = encodeURIComponent;
const text = (b) => Buffer.from(b).toString('utf8');

/** The last request the fake saw, checked to be a valid SigV4 request without any client credential. */
function lastSigned(fake) {
  const r = fake.requests.at(-1);
  assert.ok(r, 'the fake saw no request');
  assert.equal(r.authMode, 'sigv4', `fake saw ${r.rawPath} without SigV4`);
  assert.equal(r.signatureValid, true, `bad signature on ${r.rawPath}: ${r.authError?.message}`);
  return r;
}

async function drainInvokeStream(out) {
  const events = [];
  for await (const ev of out.body) events.push(JSON.parse(text(ev.chunk.bytes)));
  return events;
}

async function drainConverseStream(out) {
  let s = '';
  const kinds = [];
  for await (const ev of out.stream) {
    kinds.push(Object.keys(ev)[0]);
    if (ev.contentBlockDelta) s += ev.contentBlockDelta.delta.text;
  }
  return { s, kinds };
}

test('relay: the six runtime operations at the root and under /bedrock; the bidirectional stream is 501', async () => {
  const t = await startRelay();
  try {
    const token = await t.token();
    for (const prefix of ['', '/bedrock']) {
      const c = t.sdk({ token, prefix });
      const inv = await c.send(new InvokeModelCommand({
        modelId: MODEL, contentType: 'application/json', accept: 'application/json', body: anthropicBody(`invoke${prefix}`),
      }));
      assert.equal(JSON.parse(text(inv.body)).content[0].text, `echo: invoke${prefix}`);
      assert.equal(lastSigned(t.fake).rawPath, `/model/${enc(MODEL)}/invoke`);

      const st = await c.send(new InvokeModelWithResponseStreamCommand({
        modelId: MODEL, contentType: 'application/json', body: anthropicBody(`stream${prefix}`),
      }));
      const evs = await drainInvokeStream(st);
      assert.equal(evs.filter((e) => e.type === 'content_block_delta').map((e) => e.delta.text).join(''), `echo: stream${prefix}`);
      assert.equal(lastSigned(t.fake).rawPath, `/model/${enc(MODEL)}/invoke-with-response-stream`);

      const cv = await c.send(new ConverseCommand({ modelId: MODEL, messages: [{ role: 'user', content: [{ text: `conv${prefix}` }] }] }));
      assert.equal(cv.output.message.content[0].text, `echo: conv${prefix}`);
      assert.equal(lastSigned(t.fake).rawPath, `/model/${enc(MODEL)}/converse`);

      const cs = await c.send(new ConverseStreamCommand({ modelId: MODEL, messages: [{ role: 'user', content: [{ text: `cs${prefix}` }] }] }));
      const { s, kinds } = await drainConverseStream(cs);
      assert.equal(s, `echo: cs${prefix}`);
      assert.equal(kinds.at(-1), 'metadata');
      assert.equal(lastSigned(t.fake).rawPath, `/model/${enc(MODEL)}/converse-stream`);

      const ct = await c.send(new CountTokensCommand({
        modelId: 'anthropic.claude-sonnet-4-20250514-v1:0',
        input: { invokeModel: { body: new TextEncoder().encode(anthropicBody('count these tokens')) } },
      }));
      assert.ok(ct.inputTokens > 0);
      assert.equal(lastSigned(t.fake).rawPath, '/model/anthropic.claude-sonnet-4-20250514-v1%3A0/count-tokens');

      const g = await c.send(new ApplyGuardrailCommand({
        guardrailIdentifier: 'gr-123', guardrailVersion: 'DRAFT', source: 'INPUT', content: [{ text: { text: `guard${prefix}` } }],
      }));
      assert.equal(g.action, 'NONE');
      assert.match(g.actionReason, new RegExp(`echo: guard${prefix}`));
      assert.equal(lastSigned(t.fake).rawPath, '/guardrail/gr-123/version/DRAFT/apply');
    }
    assert.equal(t.fake.requests.length, 12);

    for (const prefix of ['', '/bedrock']) {
      const r = await t.post(`${prefix}/model/${enc(MODEL)}/invoke-with-bidirectional-stream`, { token });
      assert.equal(r.status, 501);
      assert.match(r.headers['x-amzn-errortype'], /^ValidationException/);
      assert.match(r.json().message, /HTTP\/2/);
    }
    assert.equal(t.fake.requests.length, 12, 'the bidirectional stream never reaches AWS');
  } finally {
    await t.stop();
  }
});

test('relay: only Content-Type, Accept and X-Amzn-Bedrock-* go upstream; the Bedrock response headers come back', async () => {
  const t = await startRelay();
  try {
    const token = await t.token();
    const { key } = await t.key();
    const hostile = {
      Cookie: 'bsp_session=secret-cookie-value',
      'X-Forwarded-For': '203.0.113.9',
      'X-Forwarded-Proto': 'https',
      'X-Forwarded-Host': 'evil.example',
      Forwarded: 'for=203.0.113.9',
      'X-Amz-Security-Token': 'client-supplied-token',
      'X-Amz-Date': '20200101T000000Z',
      'anthropic-beta': 'not-forwarded-by-header',
      'X-Claude-Code-Session-Id': 'sess-123',
      Accept: 'application/json',
      'X-Amzn-Bedrock-Trace': 'ENABLED',
      'X-Amzn-Bedrock-Service-Tier': 'priority',
      'X-Amzn-Bedrock-GuardrailIdentifier': 'gr-1',
      'X-Amzn-Bedrock-GuardrailVersion': 'DRAFT',
    };
    const r1 = await t.post(`/model/${enc(MODEL)}/invoke`, { token, headers: hostile });
    assert.equal(r1.status, 200, r1.text());
    const up1 = lastSigned(t.fake);
    const r2 = await t.post(`/bedrock/model/${enc(MODEL)}/invoke`, { headers: { ...hostile, 'X-Api-Key': key } });
    assert.equal(r2.status, 200, r2.text());
    const up2 = lastSigned(t.fake);

    for (const up of [up1, up2]) {
      const names = Object.keys(up.headersDistinct);
      for (const h of ['x-api-key', 'cookie', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded',
        'anthropic-beta', 'x-claude-code-session-id']) assert.ok(!names.includes(h), `${h} reached AWS`);
      // Our own SigV4 replaces whatever the client put in the AWS headers.
      assert.match(up.header('authorization'), /^AWS4-HMAC-SHA256 Credential=AKIDRELAYTESTEXAMPLE\//);
      assert.equal(up.headersDistinct.authorization.length, 1);
      assert.ok(!up.has('x-amz-security-token'), 'no session token with static keys');
      assert.notEqual(up.header('x-amz-date'), '20200101T000000Z');
      for (const v of Object.values(up.headersDistinct).flat()) {
        assert.ok(!v.includes(token) && !v.includes(key) && !v.includes('secret-cookie-value'), `a client credential reached AWS: ${v}`);
      }
      assert.equal(up.header('x-amzn-bedrock-trace'), 'ENABLED');
      assert.equal(up.header('x-amzn-bedrock-service-tier'), 'priority');
      assert.equal(up.header('x-amzn-bedrock-guardrailidentifier'), 'gr-1');
      assert.equal(up.header('x-amzn-bedrock-guardrailversion'), 'DRAFT');
      assert.equal(up.header('accept'), 'application/json');
      assert.equal(up.header('content-type'), 'application/json');
      assert.equal(up.body.toString(), anthropicBody('hi'), 'body byte for byte');
    }
    assert.equal(up2.rawPath, `/model/${enc(MODEL)}/invoke`, '/bedrock prefix removed');

    // Response headers: Bedrock's come back as sent.
    const sent = up1.response.headers;
    assert.equal(r1.headers['x-amzn-requestid'], sent['x-amzn-requestid']);
    assert.equal(r1.headers['x-amzn-bedrock-input-token-count'], sent['x-amzn-bedrock-input-token-count']);
    assert.equal(r1.headers['x-amzn-bedrock-output-token-count'], sent['x-amzn-bedrock-output-token-count']);
    assert.equal(r1.headers['x-amzn-bedrock-invocation-latency'], '20');
    assert.equal(r1.headers['content-type'], 'application/json');
    assert.ok(r1.headers['x-request-id'], 'our own request id too');
    assert.equal(r1.body.toString(), up1.response.body.toString(), 'response body byte for byte');

    // Only Bedrock's own headers come back: no cookies or server internals of the upstream.
    t.fake.setHandler(async (req, res, rec) => {
      if (rec.modelId !== 'test.extra-headers') return false;
      const b = '{"ok":true}';
      res.writeHead(200, {
        'Content-Type': 'application/json', 'Content-Length': b.length, 'x-amzn-RequestId': 'rq-extra',
        'Set-Cookie': 'AWSALB=upstream-cookie; Path=/', Server: 'awselb/2.0', 'X-Internal-Debug': 'node-17',
        'Access-Control-Allow-Origin': '*', 'X-Amzn-Bedrock-Service-Tier': 'priority', 'x-should-retry': 'false',
      });
      res.end(b);
      return true;
    });
    const rx = await t.post('/model/test.extra-headers/invoke', { token });
    assert.equal(rx.status, 200);
    for (const h of ['set-cookie', 'x-internal-debug', 'access-control-allow-origin']) assert.equal(rx.headers[h], undefined, `${h} came back`);
    assert.notEqual(rx.headers.server, 'awselb/2.0');
    assert.equal(rx.headers['x-amzn-requestid'], 'rq-extra');
    assert.equal(rx.headers['x-amzn-bedrock-service-tier'], 'priority');
    assert.equal(rx.headers['x-should-retry'], 'false');
    t.fake.setHandler(null);

    // A stream's headers.
    const r3 = await t.post(`/model/${enc(MODEL)}/invoke-with-response-stream`, { token, headers: { 'X-Amzn-Bedrock-Accept': 'application/json' } });
    assert.equal(r3.status, 200);
    const up3 = lastSigned(t.fake);
    assert.equal(up3.header('x-amzn-bedrock-accept'), 'application/json');
    assert.equal(r3.headers['content-type'], 'application/vnd.amazon.eventstream');
    assert.equal(r3.headers['x-amzn-bedrock-content-type'], 'application/json');
    assert.equal(r3.headers['x-amzn-requestid'], up3.response.headers['x-amzn-requestid']);
    assert.equal(r3.headers['content-length'], undefined);
    assert.equal(decodeFrames(r3.body).length, 8);
  } finally {
    await t.stop();
  }
});

test('relay: @aws-sdk/client-bedrock-runtime with our JWT; %3A model ids and an inference-profile ARN (%2F)', async () => {
  const t = await startRelay();
  try {
    const c = t.sdk({ token: await t.token() });
    for (const modelId of [MODEL, ARN]) {
      const inv = await c.send(new InvokeModelCommand({ modelId, contentType: 'application/json', body: anthropicBody('arn?') }));
      assert.equal(JSON.parse(text(inv.body)).model, modelId);
      let up = lastSigned(t.fake);
      assert.equal(up.rawPath, `/model/${enc(modelId)}/invoke`);
      assert.equal(up.modelId, modelId);
      if (modelId === ARN) assert.match(up.rawPath, /%3Aapplication-inference-profile%2Fabc123\/invoke$/);

      const st = await c.send(new InvokeModelWithResponseStreamCommand({ modelId, contentType: 'application/json', body: anthropicBody('s') }));
      const evs = await drainInvokeStream(st);
      assert.equal(evs.at(-1).type, 'message_stop');
      assert.equal(lastSigned(t.fake).rawPath, `/model/${enc(modelId)}/invoke-with-response-stream`);

      const cv = await c.send(new ConverseCommand({ modelId, messages: [{ role: 'user', content: [{ text: 'c' }] }] }));
      assert.equal(cv.stopReason, 'end_turn');
      const cs = await c.send(new ConverseStreamCommand({ modelId, messages: [{ role: 'user', content: [{ text: 'd' }] }] }));
      assert.equal((await drainConverseStream(cs)).s, 'echo: d');
      up = lastSigned(t.fake);
      assert.equal(up.rawPath, `/model/${enc(modelId)}/converse-stream`);
    }
    assert.equal(t.fake.requests.length, 8);
    assert.ok(t.fake.requests.every((r) => r.signatureValid === true));
  } finally {
    await t.stop();
  }
});

test('relay: @aws-sdk/client-bedrock-runtime with an API key as its bearer token, endpoint proxy/bedrock', async () => {
  const t = await startRelay();
  try {
    const { key } = await t.key('keyuser@example.com', '--name', 'sdk');
    const c = t.sdk({ token: key, prefix: '/bedrock' });
    const inv = await c.send(new InvokeModelCommand({ modelId: MODEL, contentType: 'application/json', body: anthropicBody('k1') }));
    assert.equal(JSON.parse(text(inv.body)).content[0].text, 'echo: k1');
    const st = await c.send(new InvokeModelWithResponseStreamCommand({ modelId: MODEL, contentType: 'application/json', body: anthropicBody('k2') }));
    assert.equal((await drainInvokeStream(st)).length, 8);
    const cv = await c.send(new ConverseCommand({ modelId: MODEL, messages: [{ role: 'user', content: [{ text: 'k3' }] }] }));
    assert.equal(cv.output.message.content[0].text, 'echo: k3');
    const cs = await c.send(new ConverseStreamCommand({ modelId: MODEL, messages: [{ role: 'user', content: [{ text: 'k4' }] }] }));
    assert.equal((await drainConverseStream(cs)).s, 'echo: k4');
    assert.equal(t.fake.requests.length, 4);
    for (const r of t.fake.requests) {
      assert.equal(r.signatureValid, true);
      assert.ok(!JSON.stringify(r.headersDistinct).includes(key), 'the API key reached AWS');
    }
    // A wrong key never reaches AWS.
    await assert.rejects(t.sdk({ token: `${key}x` }).send(new InvokeModelCommand({ modelId: MODEL, body: anthropicBody('no') })),
      (e) => e.$metadata?.httpStatusCode === 401);
    assert.equal(t.fake.requests.length, 4);
  } finally {
    await t.stop();
  }
});

test('relay: @anthropic-ai/bedrock-sdk as Claude Code uses it (proxy/bedrock, skipAuth + bearer, literal ":" paths re-encoded)', async () => {
  const t = await startRelay();
  try {
    const token = await t.token();
    const { key } = await t.key();
    for (const [name, client] of [['skipAuth+Authorization', t.absdk({ token })], ['apiKey', t.absdk({ apiKey: key })]]) {
      for (const model of [MODEL, ARN]) {
        const msg = await client.messages.create({ model, max_tokens: 32, messages: [{ role: 'user', content: `hello ${name}` }] });
        assert.equal(msg.content[0].text, `echo: hello ${name}`);
        let up = lastSigned(t.fake);
        // ABSDK keeps ':' literal and encodes '/' as %2F; AWS gets the id in the AWS SDKs' encoding.
        const wire = model.replaceAll('/', '%2F');
        await t.d.waitForLog((e) => e?.msg === 'request' && e.path === `/bedrock/model/${wire}/invoke`);
        assert.equal(up.rawPath, `/model/${enc(model)}/invoke`, name);
        assert.equal(up.modelId, model);
        const body = JSON.parse(up.body.toString());
        assert.ok(body.anthropic_version, 'anthropic_version forwarded in the body');
        assert.equal(body.model, undefined);

        const stream = await client.messages.create({
          model, max_tokens: 32, stream: true, messages: [{ role: 'user', content: `stream ${name}` }],
        }, { headers: { 'anthropic-beta': 'context-1m-2025-08-07' } });
        let s = '';
        const types = [];
        for await (const ev of stream) {
          types.push(ev.type);
          if (ev.type === 'content_block_delta') s += ev.delta.text;
        }
        assert.equal(s, `echo: stream ${name}`);
        assert.equal(types.at(-1), 'message_stop');
        up = lastSigned(t.fake);
        assert.equal(up.rawPath, `/model/${enc(model)}/invoke-with-response-stream`);
        assert.deepEqual(JSON.parse(up.body.toString()).anthropic_beta, ['context-1m-2025-08-07']);
      }
    }
    assert.equal(t.fake.requests.length, 8);
  } finally {
    await t.stop();
  }
});

test('relay: one access log line per call with user, model, upstream_status and tokens', async () => {
  const t = await startRelay();
  try {
    const token = await t.token('logger@example.com');
    let r = await t.post(`/model/${enc(MODEL)}/invoke`, { token, body: anthropicBody('count me in the log please') });
    assert.equal(r.status, 200);
    const up = t.fake.requests.at(-1);
    r = await t.post(`/model/${enc(MODEL)}/invoke-with-response-stream`, { token, body: anthropicBody('stream log') });
    assert.equal(r.status, 200);
    const ups = t.fake.requests.at(-1);
    r = await t.post('/model/test.error-429/invoke', { token });
    assert.equal(r.status, 429);
    await t.d.waitForLog({ msg: 'request', route: 'bedrock_invoke', status: 429 });
    const inv = accessLines(t.d, 'bedrock_invoke');
    assert.equal(inv.length, 2);
    assert.equal(inv[0].status, 200);
    assert.equal(inv[0].user, 'logger@example.com');
    assert.equal(inv[0].model, MODEL);
    assert.equal(inv[0].upstream_status, 200);
    assert.equal(inv[0].tokens_in, up.usage.inputTokens);
    assert.equal(inv[0].tokens_out, up.usage.outputTokens);
    assert.equal(inv[1].upstream_status, 429);
    assert.equal(inv[1].model, 'test.error-429');
    const st = accessLines(t.d, 'bedrock_invoke_stream');
    assert.equal(st.length, 1);
    assert.equal(st[0].upstream_status, 200);
    assert.equal(st[0].tokens_in, ups.usage.inputTokens);
    assert.equal(st[0].tokens_out, ups.usage.outputTokens);
    assert.ok(!t.d.stderr.includes(token), 'the token is never logged');
  } finally {
    await t.stop();
  }
});

test('relay: upstream connections are kept alive and reused; a pooled connection the server dropped is retried on a fresh one', async () => {
  const t = await startRelay();
  try {
    const token = await t.token();
    const served = new Set();
    // test.drop-reused: the fake hangs up, without a byte of answer, when it comes on a used connection.
    t.fake.setHandler(async (req, res, rec) => {
      const reused = served.has(rec.connId);
      served.add(rec.connId);
      if (rec.modelId === 'test.drop-reused' && reused) {
        req.socket.destroy();
        return true;
      }
      return false;
    }, { beforeAuth: true });
    for (let i = 0; i < 3; i++) assert.equal((await t.post(`/model/${enc(MODEL)}/invoke`, { token })).status, 200);
    assert.equal((await t.post(`/model/${enc(MODEL)}/invoke-with-response-stream`, { token })).status, 200);
    // After a stream (its request's headers shed at the head), the connection goes back to the pool.
    assert.equal((await t.post(`/model/${enc(MODEL)}/invoke`, { token })).status, 200);
    assert.deepEqual(t.fake.requests.map((r) => r.connId), [1, 1, 1, 1, 1], 'one kept-alive connection');
    for (const op of ['invoke', 'invoke-with-response-stream']) {
      const n = t.fake.requests.length;
      const r = await t.post(`/model/test.drop-reused/${op}`, { token });
      assert.equal(r.status, 200, `${op}: ${r.text()}`);
      const tries = t.fake.requests.slice(n);
      assert.equal(tries.length, 2, `${op}: dropped once, resent once`);
      assert.notEqual(tries[1].connId, tries[0].connId);
      assert.ok(tries.every((x) => x.signatureValid === true));
    }
    // Idle connections the server closed are not used again.
    t.fake.server.closeIdleConnections();
    await sleep(50);
    const n = t.fake.requests.length;
    assert.equal((await t.post(`/model/${enc(MODEL)}/invoke`, { token })).status, 200);
    assert.equal(t.fake.requests.length, n + 1);
  } finally {
    await t.stop();
  }
});

test('relay: aws.bearer_token goes upstream as the only credential (no SigV4 headers)', async () => {
  const t = await startRelay({
    fake: { credentials: null, bearerToken: 'ABSKupstreamBedrockApiKey0123456789' },
    config: { aws: { access_key_id: null, secret_access_key: null, bearer_token: 'ABSKupstreamBedrockApiKey0123456789' } },
  });
  try {
    const ready = await t.d.request('/health/ready');
    assert.equal(ready.json().components.aws_credentials.status, 'ok');
    const token = await t.token();
    const c = t.sdk({ token, prefix: '/bedrock' });
    const inv = await c.send(new InvokeModelCommand({ modelId: MODEL, body: anthropicBody('bearer') }));
    assert.equal(JSON.parse(text(inv.body)).content[0].text, 'echo: bearer');
    const st = await c.send(new ConverseStreamCommand({ modelId: MODEL, messages: [{ role: 'user', content: [{ text: 'b' }] }] }));
    assert.equal((await drainConverseStream(st)).s, 'echo: b');
    for (const up of t.fake.requests) {
      assert.equal(up.authMode, 'bearer');
      assert.equal(up.signatureValid, true, up.authError?.message);
      for (const h of ['x-amz-date', 'x-amz-security-token', 'x-amz-content-sha256']) assert.ok(!up.has(h), h);
      assert.ok(!JSON.stringify(up.headersDistinct).includes(token));
    }
    assert.ok(!t.d.stderr.includes('ABSKupstreamBedrockApiKey0123456789'), 'the upstream key is never logged');
  } finally {
    await t.stop();
  }
});
