// Proves that lib/fake-bedrock.mjs behaves like Bedrock Runtime, using the real
// clients directly against it (no proxy involved). Run: ./run-node fake-bedrock.test.mjs
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import AnthropicBedrock from '@anthropic-ai/bedrock-sdk';
import {
  ApplyGuardrailCommand, BedrockRuntimeClient, ConverseCommand, ConverseStreamCommand, CountTokensCommand,
  InternalServerException, InvokeModelCommand, InvokeModelWithResponseStreamCommand, ModelErrorException,
  ThrottlingException, ValidationException,
} from '@aws-sdk/client-bedrock-runtime';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { decodeChunkEvents, decodeFrames, startFakeBedrock } from './lib/fake-bedrock.mjs';
import { makeTestPKI, readPem } from './lib/tls.mjs';
import { makeTempDir, removeDir, request, sleep } from './lib/util.mjs';

// Nothing from the caller's environment may pick credentials or endpoints for the clients.
for (const k of Object.keys(process.env)) if (/^(AWS_|ANTHROPIC_)/.test(k)) delete process.env[k];

const REGION = 'us-east-1';
const CREDS = { accessKeyId: 'AKIDFAKEBEDROCKTEST', secretAccessKey: 'fake/secret+key/EXAMPLEKEY' };
const MODEL = 'us.anthropic.claude-sonnet-4-20250514-v1:0';
const ARN = 'arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123';
const anthropicBody = (text) => JSON.stringify({
  anthropic_version: 'bedrock-2023-05-31', max_tokens: 64, messages: [{ role: 'user', content: text }],
});

let fake;
before(async () => { fake = await startFakeBedrock({ region: REGION, credentials: CREDS }); });
after(async () => { await fake?.close(); });

const sdk = (f = fake, extra = {}) => new BedrockRuntimeClient({
  endpoint: f.url, region: REGION, credentials: CREDS, requestHandler: new NodeHttpHandler(), maxAttempts: 1, ...extra,
});
const last = () => fake.requests.at(-1);

async function rejects(promise) {
  try { await promise; } catch (e) { return e; }
  assert.fail('expected a rejection');
}

test('InvokeModel: Anthropic JSON, token headers, signed raw %3A path', async () => {
  const out = await sdk().send(new InvokeModelCommand({
    modelId: MODEL, contentType: 'application/json', accept: 'application/json', body: anthropicBody('ping 1'),
  }));
  const msg = JSON.parse(Buffer.from(out.body).toString('utf8'));
  assert.equal(msg.type, 'message');
  assert.match(msg.id, /^msg_bdrk_/);
  assert.deepEqual(msg.content, [{ type: 'text', text: 'echo: ping 1' }]);
  assert.equal(msg.stop_reason, 'end_turn');
  const r = last();
  assert.equal(r.rawPath, '/model/us.anthropic.claude-sonnet-4-20250514-v1%3A0/invoke');
  assert.equal(r.modelId, MODEL);
  assert.equal(r.signatureValid, true);
  assert.equal(r.authMode, 'sigv4');
  assert.equal(r.response.status, 200);
  assert.equal(r.response.headers['x-amzn-bedrock-input-token-count'], String(msg.usage.input_tokens));
  assert.equal(r.response.headers['x-amzn-bedrock-output-token-count'], String(msg.usage.output_tokens));
  assert.ok(r.response.headers['x-amzn-requestid']);
  assert.equal(r.body.toString(), anthropicBody('ping 1'));
});

test('InvokeModelWithResponseStream: all chunks decode, padding ignored, invocationMetrics at the end', async () => {
  const out = await sdk().send(new InvokeModelWithResponseStreamCommand({
    modelId: MODEL, contentType: 'application/json', body: anthropicBody('stream me'),
  }));
  assert.equal(out.contentType, 'application/json');
  const events = [];
  for await (const ev of out.body) events.push(JSON.parse(Buffer.from(ev.chunk.bytes).toString('utf8')));
  assert.deepEqual(events.map((e) => e.type), ['message_start', 'content_block_start', 'content_block_delta',
    'content_block_delta', 'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop']);
  assert.equal(events.filter((e) => e.type === 'content_block_delta').map((e) => e.delta.text).join(''), 'echo: stream me');
  const metrics = events.at(-1)['amazon-bedrock-invocationMetrics'];
  assert.equal(metrics.outputTokenCount, events.at(-2).usage.output_tokens);
  const r = last();
  assert.equal(r.response.headers['content-type'], 'application/vnd.amazon.eventstream');
  assert.equal(r.response.headers['x-amzn-bedrock-content-type'], 'application/json');
  const frames = decodeFrames(r.response.body);
  assert.equal(frames.length, 8);
  assert.ok(frames.every((f) => typeof f.json.p === 'string' && f.json.p.length > 0), 'every chunk has p padding');
  assert.deepEqual(decodeChunkEvents(r.response.body).map((e) => e.type), events.map((e) => e.type));
});

test('Converse: Converse response shape and usage', async () => {
  const out = await sdk().send(new ConverseCommand({
    modelId: MODEL, messages: [{ role: 'user', content: [{ text: 'hello converse' }] }], inferenceConfig: { maxTokens: 32 },
  }));
  assert.equal(out.output.message.content[0].text, 'echo: hello converse');
  assert.equal(out.stopReason, 'end_turn');
  assert.equal(out.usage.totalTokens, out.usage.inputTokens + out.usage.outputTokens);
  assert.equal(last().rawPath, '/model/us.anthropic.claude-sonnet-4-20250514-v1%3A0/converse');
});

test('ConverseStream: messageStart, deltas, contentBlockStop, messageStop, metadata', async () => {
  const out = await sdk().send(new ConverseStreamCommand({
    modelId: MODEL, messages: [{ role: 'user', content: [{ text: 'hello stream' }] }],
  }));
  const kinds = [];
  let text = '';
  let usage;
  for await (const ev of out.stream) {
    const [kind] = Object.keys(ev);
    kinds.push(kind);
    if (ev.contentBlockDelta) text += ev.contentBlockDelta.delta.text;
    if (ev.metadata) usage = ev.metadata.usage;
  }
  assert.deepEqual(kinds, ['messageStart', 'contentBlockDelta', 'contentBlockDelta', 'contentBlockDelta',
    'contentBlockStop', 'messageStop', 'metadata']);
  assert.equal(text, 'echo: hello stream');
  assert.equal(usage.totalTokens, usage.inputTokens + usage.outputTokens);
});

test('CountTokens and ApplyGuardrail answer their shapes', async () => {
  const count = await sdk().send(new CountTokensCommand({
    modelId: 'anthropic.claude-sonnet-4-20250514-v1:0',
    input: { invokeModel: { body: new TextEncoder().encode(anthropicBody('count these tokens please')) } },
  }));
  assert.ok(Number.isInteger(count.inputTokens) && count.inputTokens > 0);
  assert.equal(last().operation, 'count-tokens');
  const g = await sdk().send(new ApplyGuardrailCommand({
    guardrailIdentifier: 'gr-123', guardrailVersion: 'DRAFT', source: 'INPUT', content: [{ text: { text: 'is this ok' } }],
  }));
  assert.equal(g.action, 'NONE');
  assert.match(g.actionReason, /echo: is this ok/);
  assert.equal(last().rawPath, '/guardrail/gr-123/version/DRAFT/apply');
  assert.deepEqual(last().guardrail, { id: 'gr-123', version: 'DRAFT' });
});

test('error scenarios surface as the modeled SDK exceptions', async () => {
  const invoke = (model) => sdk().send(new InvokeModelCommand({ modelId: model, contentType: 'application/json', body: anthropicBody('x') }));
  let e = await rejects(invoke('test.error-400'));
  assert.ok(e instanceof ValidationException, e.name);
  assert.equal(e.message, 'Extra inputs are not permitted');
  assert.equal(e.$metadata.httpStatusCode, 400);
  e = await rejects(invoke('us.test.error-429'));
  assert.ok(e instanceof ThrottlingException, e.name);
  assert.equal(e.$metadata.httpStatusCode, 429);
  assert.equal(last().response.headers['retry-after'], '7');
  e = await rejects(invoke('test.error-424'));
  assert.ok(e instanceof ModelErrorException, e.name);
  assert.equal(e.originalStatusCode, 500);
  e = await rejects(invoke('test.error-500'));
  assert.ok(e instanceof InternalServerException, e.name);
  assert.equal(e.$fault, 'server');
});

test('stream-throttle: three chunks, then a mid-stream ThrottlingException', async () => {
  const out = await sdk().send(new InvokeModelWithResponseStreamCommand({ modelId: 'test.stream-throttle', body: anthropicBody('x') }));
  const got = [];
  const e = await rejects((async () => { for await (const ev of out.body) got.push(ev); })());
  assert.equal(got.length, 3);
  assert.ok(e instanceof ThrottlingException, e.name);
  assert.equal(e.message, 'Too many tokens, please wait before trying again.');
  const frames = decodeFrames(last().response.body);
  assert.equal(frames.at(-1).headers[':message-type'], 'exception');
  assert.equal(frames.at(-1).headers[':exception-type'], 'throttlingException');
});

test('stream-cut: the socket dies mid-frame and the SDK reports an error', async () => {
  const out = await sdk().send(new InvokeModelWithResponseStreamCommand({ modelId: 'test.stream-cut', body: anthropicBody('x') }));
  const got = [];
  await rejects((async () => { for await (const ev of out.body) got.push(ev); })());
  assert.equal(got.length, 2);
  const rec = await fake.waitForClose((r) => r === last());
  assert.equal(rec.response.aborted, true);
  assert.ok(decodeFrames(rec.response.body, { allowPartial: true }).rest.length > 0, 'partial frame sent');
});

test('stream-frames-200 sends exactly 200 frames (InvokeModel and Converse streams)', async () => {
  const out = await sdk().send(new InvokeModelWithResponseStreamCommand({ modelId: 'us.test.stream-frames-200', body: anthropicBody('many') }));
  let n = 0;
  for await (const ev of out.body) if (ev.chunk) n++;
  assert.equal(n, 200);
  const cs = await sdk().send(new ConverseStreamCommand({ modelId: 'test.stream-frames-200', messages: [{ role: 'user', content: [{ text: 'y' }] }] }));
  n = 0;
  for await (const ev of cs.stream) if (ev) n++;
  assert.equal(n, 200);
});

test('SigV4: wrong secret → 403 InvalidSignatureException with canonical string; unknown key → UnrecognizedClient', async () => {
  const bad = sdk(fake, { credentials: { ...CREDS, secretAccessKey: 'wrong' } });
  let e = await rejects(bad.send(new InvokeModelCommand({ modelId: MODEL, body: anthropicBody('x') })));
  assert.equal(e.name, 'InvalidSignatureException');
  assert.equal(e.$metadata.httpStatusCode, 403);
  assert.match(e.message, /does not match the signature you provided/);
  assert.match(last().authError.canonicalRequest, /^POST\n\/model\/us\.anthropic\.claude-sonnet-4-20250514-v1%253A0\/invoke\n/);
  assert.equal(last().signatureValid, false);
  const stranger = sdk(fake, { credentials: { ...CREDS, accessKeyId: 'AKIDSTRANGER' } });
  e = await rejects(stranger.send(new InvokeModelCommand({ modelId: MODEL, body: anthropicBody('x') })));
  assert.equal(e.name, 'UnrecognizedClientException');
  const r = await request(`${fake.url}/model/${encodeURIComponent(MODEL)}/invoke`, { method: 'POST', body: anthropicBody('x') });
  assert.equal(r.status, 403);
  assert.match(r.headers['x-amzn-errortype'], /^InvalidSignatureException:/);
});

test('SigV4: the verifier reproduces the BEDROCK-FACTS §3.2 vector on the raw wire path', async () => {
  const f = await startFakeBedrock({
    credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' }, maxSkewMs: null,
  });
  try {
    const send = (sig) => request(f.url, {
      method: 'POST',
      path: '/model/us.anthropic.claude-sonnet-4-20250514-v1%3A0/invoke',
      headers: {
        host: 'bedrock-runtime.us-east-1.amazonaws.com', 'content-type': 'application/json', 'x-amz-date': '20150830T123600Z',
        authorization: `AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=${sig}`,
      },
      body: '{"anthropic_version":"bedrock-2023-05-31","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}',
    });
    const ok = await send('d85effb5402ae72443ed9ea8c087ee5f3bafc5c103071ecf682b7585d5558a92');
    assert.equal(ok.status, 200, ok.text());
    assert.equal(f.requests[0].signatureValid, true);
    const bad = await send('d85effb5402ae72443ed9ea8c087ee5f3bafc5c103071ecf682b7585d5558a93');
    assert.equal(bad.status, 403);
    // An old timestamp is refused by the default fake (5 minute window).
    const strict = await request(fake.url, { method: 'POST', path: '/model/x/invoke', headers: {
      'x-amz-date': '20150830T123600Z',
      authorization: `AWS4-HMAC-SHA256 Credential=${CREDS.accessKeyId}/20150830/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=00`,
    } });
    assert.equal(strict.status, 403);
    assert.match(strict.json().message, /^Signature expired/);
  } finally {
    await f.close();
  }
});

test('SigV4 with session token; expired token → ExpiredTokenException', async () => {
  const session = { ...CREDS, accessKeyId: 'ASIAFAKESESSION', sessionToken: 'session-token-1' };
  const f = await startFakeBedrock({ credentials: [CREDS, session] });
  try {
    const out = await sdk(f, { credentials: session }).send(new InvokeModelCommand({ modelId: MODEL, body: anthropicBody('tok') }));
    assert.equal(JSON.parse(Buffer.from(out.body).toString()).content[0].text, 'echo: tok');
    assert.equal(f.requests[0].header('x-amz-security-token'), 'session-token-1');
    f.expireSessionToken('session-token-1');
    const e = await rejects(sdk(f, { credentials: session }).send(new InvokeModelCommand({ modelId: MODEL, body: anthropicBody('tok') })));
    assert.equal(e.name, 'ExpiredTokenException');
    assert.equal(e.message, 'The security token included in the request is expired');
  } finally {
    await f.close();
  }
});

test('Bearer mode (Bedrock API key): token:{token} + httpBearerAuth, no SigV4 headers', async () => {
  const f = await startFakeBedrock({ bearerToken: 'ABSKfakeapikey123' });
  try {
    const client = (token) => new BedrockRuntimeClient({
      endpoint: f.url, region: REGION, token: { token }, authSchemePreference: ['httpBearerAuth'],
      requestHandler: new NodeHttpHandler(), maxAttempts: 1,
    });
    const out = await client('ABSKfakeapikey123').send(new InvokeModelCommand({ modelId: MODEL, body: anthropicBody('bearer') }));
    assert.equal(JSON.parse(Buffer.from(out.body).toString()).content[0].text, 'echo: bearer');
    const r = f.requests[0];
    assert.equal(r.authMode, 'bearer');
    assert.equal(r.header('authorization'), 'Bearer ABSKfakeapikey123');
    assert.equal(r.has('x-amz-date'), false);
    const e = await rejects(client('ABSKwrong').send(new InvokeModelCommand({ modelId: MODEL, body: anthropicBody('bearer') })));
    assert.equal(e.name, 'UnrecognizedClientException');
    assert.equal(e.$metadata.httpStatusCode, 403);
    const signed = await rejects(sdk(f).send(new InvokeModelCommand({ modelId: MODEL, body: anthropicBody('x') })));
    assert.equal(signed.$metadata.httpStatusCode, 403);
  } finally {
    await f.close();
  }
});

const anthropic = (f = fake, extra = {}) => new AnthropicBedrock({
  baseURL: f.url, awsRegion: REGION, awsAccessKey: CREDS.accessKeyId, awsSecretKey: CREDS.secretAccessKey, maxRetries: 0, ...extra,
});

test('Anthropic Bedrock SDK: messages.create (literal ":" in the path, SigV4 valid)', async () => {
  const msg = await anthropic().messages.create({ model: MODEL, max_tokens: 64, messages: [{ role: 'user', content: 'hi sdk' }] });
  assert.equal(msg.content[0].text, 'echo: hi sdk');
  const r = last();
  assert.equal(r.rawPath, '/model/us.anthropic.claude-sonnet-4-20250514-v1:0/invoke');
  assert.equal(r.signatureValid, true);
  assert.equal(r.modelId, MODEL);
});

test('Anthropic Bedrock SDK: streaming, including an application-inference-profile ARN (%2F)', async () => {
  const stream = await anthropic().messages.create({
    model: ARN, max_tokens: 64, stream: true, messages: [{ role: 'user', content: 'hi stream' }],
  });
  const types = [];
  let text = '';
  for await (const ev of stream) {
    types.push(ev.type);
    if (ev.type === 'content_block_delta') text += ev.delta.text;
  }
  assert.equal(text, 'echo: hi stream');
  assert.equal(types[0], 'message_start');
  assert.equal(types.at(-1), 'message_stop');
  const r = last();
  assert.equal(r.rawPath, '/model/arn:aws:bedrock:us-east-1:123456789012:application-inference-profile%2Fabc123/invoke-with-response-stream');
  assert.equal(r.modelId, ARN);
  assert.equal(r.signatureValid, true);
});

test('Anthropic Bedrock SDK: Bedrock errors become APIError with status', async () => {
  const e = await rejects(anthropic().messages.create({ model: 'test.error-400', max_tokens: 8, messages: [{ role: 'user', content: 'x' }] }));
  assert.equal(e.status, 400);
  assert.match(e.message, /Extra inputs are not permitted/);
});

test('TLS: SDK trusting the test CA works; unrelated CA and wrong host name are refused', async () => {
  const dir = makeTempDir('bsp-fake-tls-');
  const pki = makeTestPKI(dir);
  const servers = [];
  try {
    const start = async (cert) => { const f = await startFakeBedrock({ tls: cert, credentials: CREDS }); servers.push(f); return f; };
    const good = await start(pki.server);
    assert.match(good.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    const handler = () => new NodeHttpHandler({ httpsAgent: new https.Agent({ ca: readPem(pki.ca.cert) }) });
    const out = await sdk(good, { requestHandler: handler() }).send(new InvokeModelCommand({ modelId: MODEL, body: anthropicBody('tls') }));
    assert.equal(JSON.parse(Buffer.from(out.body).toString()).content[0].text, 'echo: tls');
    assert.equal(good.requests[0].signatureValid, true);
    const untrusted = await start(pki.untrusted);
    let e = await rejects(sdk(untrusted, { requestHandler: handler() }).send(new InvokeModelCommand({ modelId: MODEL, body: '{}' })));
    assert.match(e.code ?? e.message, /SELF_SIGNED|UNABLE_TO_VERIFY|unable to verify/i);
    const wrong = await start(pki.wrongHost);
    e = await rejects(sdk(wrong, { requestHandler: handler() }).send(new InvokeModelCommand({ modelId: MODEL, body: '{}' })));
    assert.match(e.code ?? e.message, /ERR_TLS_CERT_ALTNAME_INVALID|altnames/i);
    assert.equal(untrusted.requests.length + wrong.requests.length, 0);
  } finally {
    await Promise.all(servers.map((s) => s.close()));
    removeDir(dir);
  }
});

test('routing: unknown paths → 404 UnknownOperationException; GET → 404; no credentials → no auth', async () => {
  const f = await startFakeBedrock();
  try {
    const r = await request(`${f.url}/foo/bar`, { method: 'POST', body: '{}' });
    assert.equal(r.status, 404);
    assert.match(r.headers['x-amzn-errortype'], /^UnknownOperationException:/);
    const g = await request(`${f.url}/model/${MODEL}/invoke`);
    assert.equal(g.status, 404);
    const ok = await request(`${f.url}/model/${MODEL}/invoke`, { method: 'POST', body: anthropicBody('no auth') });
    assert.equal(ok.status, 200);
    assert.equal(f.requests.at(-1).signatureValid, null);
  } finally {
    await f.close();
  }
});

test('stall, slow-first-byte and stream-forever: the fake records when clients go away', async () => {
  const f = await startFakeBedrock({ slowFirstByteMs: 300 });
  try {
    const t0 = Date.now();
    const slow = await request(`${f.url}/model/test.slow-first-byte/invoke`, { method: 'POST', body: anthropicBody('s') });
    assert.equal(slow.status, 200);
    assert.ok(Date.now() - t0 >= 290, 'first byte delayed');
    await assert.rejects(request(`${f.url}/model/test.stall/invoke`, { method: 'POST', body: '{}', timeoutMs: 200 }), /timed out/);
    const stalled = await f.waitForClose((r) => r.scenario === 'stall');
    assert.equal(stalled.response.aborted, true);
    const s = await request(`${f.url}/model/test.stream-forever/invoke-with-response-stream`, { method: 'POST', body: anthropicBody('f'), stream: true });
    let got = 0;
    for await (const chunk of s.res) { got += chunk.length; if (got > 200) break; }
    s.req.destroy();
    const forever = await f.waitForClose((r) => r.scenario === 'stream-forever');
    assert.equal(forever.response.aborted, true);
    assert.ok(f.closedStreams.includes(forever));
  } finally {
    await f.close();
  }
});

test('stream-bytes-N respects backpressure: a paused reader blocks the writer', async () => {
  const f = await startFakeBedrock();
  try {
    const s = await request(`${f.url}/model/test.stream-bytes-64m/invoke-with-response-stream`, { method: 'POST', body: anthropicBody('b'), stream: true });
    s.res.pause();
    await sleep(300);
    const rec = f.requests[0];
    const stuckAt = rec.response.bytesWritten;
    assert.ok(rec.response.drainWaits > 0, 'writer waited for drain');
    assert.ok(stuckAt < 16 * 1024 * 1024, `wrote ${stuckAt} bytes to a paused reader`);
    let total = 0;
    s.res.on('data', (c) => { total += c.length; });
    s.res.resume();
    await new Promise((r) => s.res.on('end', r));
    assert.ok(total >= 64 * 1024 * 1024, `received ${total}`);
    await f.waitForClose();
    assert.equal(rec.response.complete, true);
    assert.equal(rec.response.truncated, true);
  } finally {
    await f.close();
  }
});

test('setHandler overrides answers and requests record what reached "AWS"', async () => {
  fake.setHandler((req, res, rec) => {
    if (!rec.modelId?.endsWith('custom')) return false;
    res.writeHead(418, { 'content-type': 'text/plain' }).end('teapot');
    return true;
  });
  try {
    const r = await request(`${fake.url}/model/x.custom/invoke`, { method: 'POST', body: '{}', headers: { cookie: 'a=b', 'x-api-key': 'k' } });
    assert.equal(r.status, 403, 'auth is checked before the handler by default');
    const e = await rejects(sdk().send(new InvokeModelCommand({ modelId: 'x.custom', body: '{}' })));
    assert.equal(e.$metadata.httpStatusCode, 418);
    const rec = last();
    assert.equal(rec.has('cookie'), false);
    assert.ok(rec.headers.includes('host'), 'raw headers are node rawHeaders');
    const ok = await sdk().send(new InvokeModelCommand({ modelId: MODEL, body: anthropicBody('normal again') }));
    assert.equal(JSON.parse(Buffer.from(ok.body).toString()).content[0].text, 'echo: normal again');
  } finally {
    fake.setHandler(null);
  }
});
