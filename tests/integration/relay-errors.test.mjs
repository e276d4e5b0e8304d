// Errors through the relay (src/route-bedrock.c, src/http-client.c,
// src/policy.c): upstream errors reach the SDKs as the same exceptions with
// the same messages; a mid-stream exception frame surfaces in the SDK; an
// upstream with the wrong certificate is refused; the gate in front of AWS
// (model rules, API key model patterns, request and token rate limits);
// and a proxy without AWS credentials that says what to configure.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  ConverseStreamCommand, InternalServerException, InvokeModelCommand, InvokeModelWithResponseStreamCommand,
  ModelErrorException, ThrottlingException, ValidationException,
} from '@aws-sdk/client-bedrock-runtime';
import { ERROR_SCENARIOS, decodeFrames, startFakeBedrock } from './lib/fake-bedrock.mjs';
import { prepareDir, runCommand, startDaemon } from './lib/daemon.mjs';
import {
  CREDS, MODEL, anthropicBody, metricValue, relayConfig, scrape, startRelay, waitUsage,
} from './lib/relay.mjs';
import { clearOfWindowEnd, onPostgres, windowRest } from './lib/pg.mjs';
import { makeTestPKI, readPem } from './lib/tls.mjs';
import { makeTempDir, removeDir } from './lib/util.mjs';

const enc = encodeURIComponent;

async function rejects(promise) {
  try { await promise; } catch (e) { return e; }
  return assert.fail('expected a rejection');
}

test('relay errors: upstream 400/429/424/500 reach the SDK as the same exception, message, status and Retry-After', async () => {
  const t = await startRelay();
  try {
    const token = await t.token();
    const c = t.sdk({ token });
    const invoke = (model) => c.send(new InvokeModelCommand({ modelId: model, contentType: 'application/json', body: anthropicBody('x') }));
    const cases = [[400, ValidationException], [429, ThrottlingException], [424, ModelErrorException], [500, InternalServerException]];
    for (const [status, Klass] of cases) {
      const e = await rejects(invoke(`us.test.error-${status}`));
      assert.ok(e instanceof Klass, `${status}: got ${e.name}: ${e.message}`);
      assert.equal(e.message, ERROR_SCENARIOS[status].message);
      assert.equal(e.$metadata.httpStatusCode, status);
      const up = t.fake.requests.at(-1);
      assert.equal(up.signatureValid, true);
      assert.equal(e.$metadata.requestId, up.response.headers['x-amzn-requestid'], 'x-amzn-RequestId passes through');
      if (status === 424) assert.equal(e.originalStatusCode, 500);
    }
    // Raw: status, body, error type and Retry-After exactly as Bedrock sent them.
    for (const status of [429, 400]) {
      const r = await t.post(`/model/test.error-${status}/invoke`, { token });
      const up = t.fake.requests.at(-1);
      assert.equal(r.status, status);
      assert.equal(r.body.toString(), up.response.body.toString());
      assert.equal(r.headers['x-amzn-errortype'], up.response.headers['x-amzn-errortype']);
      assert.equal(r.headers['retry-after'], status === 429 ? '7' : undefined);
    }
    // The same on a streaming operation (error before the stream began).
    const e = await rejects(c.send(new InvokeModelWithResponseStreamCommand({ modelId: 'test.error-429', body: anthropicBody('x') })));
    assert.ok(e instanceof ThrottlingException, e.name);
    assert.equal(e.message, ERROR_SCENARIOS[429].message);
    // And for the Anthropic SDK: an APIError with Bedrock's status and body.
    const ab = await rejects(t.absdk({ token }).messages.create({ model: 'test.error-400', max_tokens: 8, messages: [{ role: 'user', content: 'x' }] }));
    assert.equal(ab.status, 400);
    assert.match(ab.message, /Extra inputs are not permitted/);
  } finally {
    await t.stop();
  }
});

test('relay errors: an oversized or untyped upstream error is never relayed truncated, and is counted as an error', async () => {
  const t = await startRelay();
  try {
    const token = await t.token();
    t.fake.setHandler(async (req, res, rec) => {
      if (rec.modelId === 'test.huge-error') {
        const b = JSON.stringify({ message: 'e'.repeat(2 * 1024 * 1024) });
        res.writeHead(400, { 'Content-Type': 'application/json', 'x-amzn-ErrorType': 'ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/' });
        res.end(b); // chunked
        return true;
      }
      if (rec.modelId === 'test.untyped-error') {
        res.writeHead(502, { 'Content-Type': 'text/html', 'Content-Length': 11 });
        res.end('bad gateway');
        return true;
      }
      return false;
    });
    // A streaming operation keeps at most 1 MiB of an error: it says so instead of cutting the JSON.
    const e = await rejects(t.sdk({ token }).send(new InvokeModelWithResponseStreamCommand({ modelId: 'test.huge-error', body: anthropicBody('x') })));
    assert.ok(e instanceof ValidationException, `${e.name}: ${e.message}`);
    assert.match(e.message, /larger than 1048576 bytes/);
    const r = await t.post('/model/test.huge-error/invoke-with-response-stream', { token });
    assert.equal(r.status, 400);
    assert.doesNotThrow(() => r.json());
    // A buffered operation relays it whole.
    const r2 = await t.post('/model/test.huge-error/invoke', { token });
    assert.equal(r2.status, 400);
    assert.equal(r2.json().message.length, 2 * 1024 * 1024);
    // An error without x-amzn-ErrorType passes through as is.
    const r3 = await t.post('/model/test.untyped-error/invoke', { token });
    assert.equal(r3.status, 502);
    assert.equal(r3.text(), 'bad gateway');
    const rows = await waitUsage(t.d.dir, 4);
    assert.deepEqual(rows.map((x) => [x.status, x.outcome]), [[400, 'ValidationException'], [400, 'ValidationException'],
      [400, 'ValidationException'], [502, 'upstream_error']]);
  } finally {
    await t.stop();
  }
});

test('relay errors: a mid-stream throttling frame surfaces as ThrottlingException in the SDK', async () => {
  const t = await startRelay();
  try {
    const token = await t.token();
    const c = t.sdk({ token });
    const out = await c.send(new InvokeModelWithResponseStreamCommand({ modelId: 'test.stream-throttle', body: anthropicBody('x') }));
    const got = [];
    const e = await rejects((async () => { for await (const ev of out.body) got.push(ev); })());
    assert.equal(got.length, 3, 'the chunks before the exception arrive');
    assert.ok(e instanceof ThrottlingException, `${e.name}: ${e.message}`);
    assert.equal(e.message, 'Too many tokens, please wait before trying again.');

    const cs = await c.send(new ConverseStreamCommand({ modelId: 'test.stream-throttle', messages: [{ role: 'user', content: [{ text: 'x' }] }] }));
    const e2 = await rejects((async () => { for await (const ev of cs.stream) got.push(ev); })());
    assert.ok(e2 instanceof ThrottlingException, e2.name);

    // The frame bytes are Bedrock's, unchanged.
    const r = await t.post('/model/test.stream-throttle/invoke-with-response-stream', { token });
    const up = t.fake.requests.at(-1);
    assert.equal(r.status, 200);
    assert.ok(r.body.equals(up.response.body), 'stream bytes differ');
    assert.equal(decodeFrames(r.body).at(-1).headers[':exception-type'], 'throttlingException');
  } finally {
    await t.stop();
  }
});

test('relay errors: an upstream certificate from another CA or for another host is refused with 502 and a log line', async () => {
  const dir = makeTempDir('bsp-relay-tls-');
  const pki = makeTestPKI(dir);
  const fakes = [];
  try {
    const fake = async (cert) => { const f = await startFakeBedrock({ tls: cert, credentials: CREDS }); fakes.push(f); return f; };
    const cases = [
      ['good', await fake(pki.server), null],
      ['good by name', fakes[0], null, 'localhost'],
      ['unknown CA', await fake(pki.untrusted), /certificate verify failed|unable to get local issuer/],
      ['wrong host', await fake(pki.wrongHost), /certificate verify failed|hostname mismatch|IP address mismatch/],
    ];
    for (const [name, f, re, host] of cases) {
      const endpoint = host ? f.url.replace('127.0.0.1', host) : f.url;
      const d = await startDaemon({
        config: relayConfig(f, { aws: { ca_file: pki.ca.cert, endpoint_url: endpoint } }),
        env: { AWS_EC2_METADATA_DISABLED: 'true' },
      });
      try {
        const token = (await import('./lib/daemon.mjs')).runCommand(['token', 'mint', '--user', 'dev@example.com'], { dir: d.dir });
        const tok = (await token).stdout.trim();
        const r = await d.request(`/model/${enc(MODEL)}/invoke`, {
          method: 'POST', headers: { Authorization: `Bearer ${tok}`, 'Content-Type': 'application/json' }, body: anthropicBody('tls'),
        });
        if (!re) {
          assert.equal(r.status, 200, `${name}: ${r.text()}`);
          assert.equal(f.requests.at(-1).signatureValid, true);
          assert.equal(f.requests.at(-1).sni || null, host ?? null, 'SNI: the host name, none for an IP address');
          assert.equal(f.requests.at(-1).header('host'), new URL(endpoint).host);
          continue;
        }
        assert.equal(r.status, 502, `${name}: ${r.status} ${r.text()}`);
        assert.match(r.headers['x-amzn-errortype'], /^ServiceUnavailableException/);
        // The client learns the class of failure; the details are the log's.
        assert.match(r.json().message, /^cannot reach Bedrock \(tls\); the proxy's log has the details under request id \S+$/, name);
        assert.ok(r.json().message.includes(r.headers['x-request-id']), 'the message names the request id');
        assert.doesNotMatch(r.json().message, re, name);
        assert.equal(f.requests.length, 0, `${name}: a request was sent over the refused connection`);
        const line = await d.waitForLog((e) => /^relay \w+: InvokeModel tls: /.test(e.msg ?? ''));
        assert.match(line.msg, re);
        const acc = await d.waitForLog({ msg: 'request', route: 'bedrock_invoke' });
        assert.equal(acc.status, 502);
      } finally {
        await d.stop();
      }
    }
  } finally {
    for (const f of fakes) await f.close();
    removeDir(dir);
  }
});

test('relay gate: models.rules deny and API key model patterns answer 403 before AWS is called', async () => {
  const t = await startRelay({
    config: {
      models: {
        rules: [
          { emails: ['dev@example.com'], deny: ['*opus*'], allow: ['us.anthropic.*'] },
          { domains: ['contractor.example'], allow: ['*haiku*'] },
          { emails: ['ops@example.com'], allow: ['guardrail:gr-*'] },
        ],
        default: 'deny',
      },
    },
  });
  try {
    const dev = await t.token('dev@example.com');
    const ext = await t.token('bob@contractor.example');
    const { key } = await t.key('dev@example.com', '--models', '*sonnet*');
    const opus = 'us.anthropic.claude-opus-4-20250514-v1:0';
    const haiku = 'us.anthropic.claude-haiku-4-5-20251001-v1:0';
    const expectDenied = async (tok, model, op = 'invoke', viaKey = false, wire = enc(model)) => {
      const before = t.fake.requests.length;
      const r = await t.post(`/model/${wire}/${op}`, viaKey ? { headers: { 'X-Api-Key': tok } } : { token: tok });
      assert.equal(r.status, 403, `${model}: ${r.text()}`);
      assert.match(r.headers['x-amzn-errortype'], /^AccessDeniedException/);
      assert.match(r.json().message, /not allowed/);
      assert.equal(t.fake.requests.length, before, `${model} reached AWS`);
    };
    await expectDenied(dev, opus);
    // The rules see the decoded id, whichever wire form the client used.
    await expectDenied(dev, opus, 'invoke', false, opus);
    await expectDenied(dev, opus, 'invoke', false, opus.replaceAll('.', '%2E').replace('us', '%75s'));
    await expectDenied(dev, 'arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-opus-4-v1:0', 'converse-stream');
    await expectDenied(dev, opus, 'invoke-with-response-stream');
    await expectDenied(dev, 'amazon.nova-pro-v1:0', 'converse');
    await expectDenied(ext, MODEL);
    await expectDenied(key, haiku, 'invoke', true);
    // ApplyGuardrail is gated as the id guardrail:ID: default deny refuses it.
    const guard = async (tok, viaKey = false) => t.post('/guardrail/gr-1/version/DRAFT/apply', {
      ...(viaKey ? { headers: { 'X-Api-Key': tok } } : { token: tok }),
      body: JSON.stringify({ source: 'INPUT', content: [{ text: { text: 'hi' } }] }),
    });
    let before = t.fake.requests.length;
    let g = await guard(dev);
    assert.equal(g.status, 403, g.text());
    assert.match(g.json().message, /not allowed.*guardrail:gr-1/);
    assert.equal(t.fake.requests.length, before, 'the guardrail call never reached AWS');
    // A rule that names it lets it through; an API key's own patterns still apply.
    const ops = await t.token('ops@example.com');
    g = await guard(ops);
    assert.equal(g.status, 200, g.text());
    assert.equal(t.fake.requests.at(-1).rawPath, '/guardrail/gr-1/version/DRAFT/apply');
    const { key: opsKey } = await t.key('ops@example.com', '--models', '*sonnet*');
    before = t.fake.requests.length;
    g = await guard(opsKey, true);
    assert.equal(g.status, 403, g.text());
    assert.match(g.json().message, /API key is not allowed/);
    assert.equal(t.fake.requests.length, before);
    // The SDK sees AccessDeniedException.
    const e = await rejects(t.sdk({ token: dev }).send(new InvokeModelCommand({ modelId: opus, body: anthropicBody('x') })));
    assert.equal(e.name, 'AccessDeniedException');
    assert.equal(e.$metadata.httpStatusCode, 403);
    // Allowed ones go through.
    assert.equal((await t.post(`/model/${enc(MODEL)}/invoke`, { token: dev })).status, 200);
    assert.equal((await t.post(`/model/${enc(haiku)}/invoke`, { token: ext })).status, 200);
    assert.equal((await t.post(`/model/${enc(MODEL)}/invoke`, { headers: { 'X-Api-Key': key } })).status, 200);
    assert.equal(t.fake.requests.length, 4);
    assert.ok(t.fake.requests.every((r) => r.signatureValid === true));
  } finally {
    await t.stop();
  }
});

test('relay gate: requests_per_minute answers 429 ThrottlingException with Retry-After, per user and per API key', async () => {
  const t = await startRelay({ config: { rate_limits: { requests_per_minute: 2 } } });
  try {
    const a = await t.token('a@example.com');
    const b = await t.token('b@example.com');
    await clearOfWindowEnd();
    for (let i = 0; i < 2; i++) assert.equal((await t.post(`/model/${enc(MODEL)}/invoke`, { token: a })).status, 200);
    const r = await t.post(`/model/${enc(MODEL)}/invoke`, { token: a });
    assert.equal(r.status, 429, r.text());
    assert.match(r.headers['x-amzn-errortype'], /^ThrottlingException/);
    const ra = Number(r.headers['retry-after']);
    // A bucket refills in 30 s; PostgreSQL's shared window ends within a minute.
    const [lo, hi] = onPostgres ? windowRest() : [1, 30];
    assert.ok(Number.isInteger(ra) && ra >= lo && ra <= hi, `Retry-After ${r.headers['retry-after']}, want ${lo}..${hi}`);
    assert.equal(t.fake.requests.length, 2, 'the refused call never reached AWS');
    const e = await rejects(t.sdk({ token: a }).send(new InvokeModelCommand({ modelId: MODEL, body: anthropicBody('x') })));
    assert.ok(e instanceof ThrottlingException, e.name);
    // Another user has a bucket of their own.
    assert.equal((await t.post(`/model/${enc(MODEL)}/invoke`, { token: b })).status, 200);
    assert.equal(t.fake.requests.length, 3);
  } finally {
    await t.stop();
  }
});

test('relay gate: tokens_per_minute is charged with the usage of finished calls', async () => {
  const t = await startRelay({ config: { rate_limits: { tokens_per_minute: 60 } } });
  try {
    const tok = await t.token('heavy@example.com');
    const light = await t.token('light@example.com');
    await clearOfWindowEnd();
    // 400 characters in, about 100 tokens each way: far above 60/min.
    const big = anthropicBody('y'.repeat(400));
    let r = await t.post(`/model/${enc(MODEL)}/invoke-with-response-stream`, { token: tok, body: big });
    assert.equal(r.status, 200);
    const used = t.fake.requests.at(-1).usage;
    assert.ok(used.inputTokens + used.outputTokens > 60);
    r = await t.post(`/model/${enc(MODEL)}/invoke`, { token: tok });
    assert.equal(r.status, 429, 'the stream\'s tokens were charged');
    assert.match(r.headers['x-amzn-errortype'], /^ThrottlingException/);
    // (used - 60 + 1) tokens at 1 token/s; on PostgreSQL the rest of the window.
    const ra = Number(r.headers['retry-after']);
    const [lo, hi] = onPostgres ? windowRest() : [used.inputTokens + used.outputTokens - 60 - 2, used.inputTokens + used.outputTokens];
    assert.ok(ra >= lo && ra <= hi, `Retry-After ${ra}, want ${lo}..${hi}`);
    assert.equal(t.fake.requests.length, 1);
    assert.equal((await t.post(`/model/${enc(MODEL)}/invoke`, { token: light })).status, 200);
  } finally {
    await t.stop();
  }
});

test('relay: no AWS credentials: /health/ready 503 (aws_credentials) and Bedrock routes 503 saying what to configure', async () => {
  const t = await startRelay({ fake: false, config: { aws: null } });
  try {
    const ready = await t.d.request('/health/ready');
    assert.equal(ready.status, 503);
    const comp = ready.json().components.aws_credentials;
    assert.equal(comp.status, 'unavailable');
    const token = await t.token();
    const r = await t.post(`/model/${enc(MODEL)}/invoke`, { token });
    assert.equal(r.status, 503, r.text());
    assert.match(r.headers['x-amzn-errortype'], /^ServiceUnavailableException/);
    assert.match(r.json().message, /no AWS credentials/);
    assert.match(r.json().message, /aws\.access_key_id/);
    assert.match(r.json().message, /AWS_ACCESS_KEY_ID/);
    const e = await rejects(t.sdk({ token }).send(new ConverseStreamCommand({ modelId: MODEL, messages: [{ role: 'user', content: [{ text: 'x' }] }] })));
    assert.equal(e.name, 'ServiceUnavailableException');
    assert.equal(e.$metadata.httpStatusCode, 503);
    const rows = await waitUsage(t.d.dir, 2);
    assert.deepEqual(rows.map((x) => [x.status, x.outcome]), [[503, 'no_credentials'], [503, 'no_credentials']]);
    const m = await scrape(t.d);
    assert.equal(metricValue(m, 'bsp_upstream_requests_total'), 0, 'nothing was sent upstream');
  } finally {
    await t.stop();
  }
});

test('relay errors: dot-segment and malformed model and guardrail ids are refused before AWS', async () => {
  const t = await startRelay();
  try {
    const token = await t.token();
    for (const path of ['/model/../invoke', '/model/%2E%2E/invoke', '/model/./converse', '/bedrock/model/%2e/invoke',
      '/model/%ZZ/invoke', '/model/%00x/invoke', '/model/a%0Ab/invoke',
      '/guardrail/%2E%2E/version/1/apply', '/guardrail/gr-1/version/%2e%2E/apply', '/bedrock/guardrail/./version/1/apply',
      '/guardrail/gr-1/version/%ZZ/apply', '/guardrail/g%00/version/1/apply']) {
      const before = t.fake.requests.length;
      const r = await t.post(path, { token, body: '{}' });
      assert.ok(r.status === 400 || r.status === 404, `${path}: ${r.status}`);
      assert.equal(t.fake.requests.length, before, `${path} never reaches AWS`);
    }
  } finally {
    await t.stop();
  }
});

test('relay: a reload that fails late (a broken inbound certificate) changes nothing; the fixed one applies everything', async () => {
  const dir = makeTempDir('bsp-reload-');
  const fakes = [];
  try {
    const pki = makeTestPKI(dir);
    const a = await startFakeBedrock({ credentials: CREDS });
    fakes.push(a);
    const b = await startFakeBedrock({ credentials: CREDS });
    fakes.push(b);
    const tlsOk = { cert_file: pki.server.chain, key_file: pki.server.key };
    const bad = join(dir, 'broken.crt');
    writeFileSync(bad, '-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n');
    const d = await startDaemon({
      ca: readPem(pki.ca.cert),
      config: relayConfig(a, { server: { tls: tlsOk } }),
      env: { AWS_EC2_METADATA_DISABLED: 'true' },
    });
    try {
      const tok = (await runCommand(['token', 'mint', '--user', 'dev@example.com'], { dir: d.dir })).stdout.trim();
      const invoke = () => d.request(`/model/${enc(MODEL)}/invoke`, {
        method: 'POST', headers: { Authorization: `Bearer ${tok}`, 'Content-Type': 'application/json' }, body: anthropicBody('x'),
      });
      const reload = async (config, re) => {
        prepareDir(d.dir, { config: { ...config, server: { ...config.server, port: d.port } } });
        const mark = d.logMark();
        d.signal('SIGHUP');
        return d.waitForLog((e) => re.test(e?.msg ?? ''), 5000, { from: mark });
      };
      assert.equal((await invoke()).status, 200);
      assert.equal(a.requests.length, 1);
      // Another Bedrock endpoint, other AWS keys and a broken certificate: the reload fails at the certificate, after the rest was prepared.
      const line = await reload(relayConfig(b, { server: { tls: { ...tlsOk, cert_file: bad } }, aws: { access_key_id: 'AKIDOTHEROTHEROTHER0' } }),
        /^configuration reload failed: .*keeping the running configuration/);
      assert.match(line.msg, /certificate|PEM|broken\.crt/i);
      assert.equal((await invoke()).status, 200, 'still served');
      assert.equal(a.requests.length, 2, 'the old endpoint is still the one in use');
      assert.equal(a.requests.at(-1).signatureValid, true, 'signed with the old keys');
      assert.equal(b.requests.length, 0);
      // Fixed: everything applies at once.
      await reload(relayConfig(b, { server: { tls: tlsOk } }), /^configuration reloaded$/);
      assert.equal((await invoke()).status, 200);
      assert.equal(b.requests.length, 1);
      assert.equal(a.requests.length, 2);
    } finally {
      await d.stop();
    }
  } finally {
    for (const f of fakes) await f.close();
    removeDir(dir);
  }
});
