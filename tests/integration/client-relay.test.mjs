// `bedrock-sso-proxy relay` (issue 12): a loopback listener that sends
// every request on to the proxy with the profile's access token. The AWS
// SDK for JavaScript signs with dummy SigV4 keys (the signature is
// discarded), InvokeModel, Converse and the streaming InvokeModel go
// through, the stream relayed as it arrives; the AWS CLI from Debian does
// the same; the relay refreshes the token by itself (and picks up a
// rotation another process made); a revoked session, a proxy that is down,
// a non-loopback Host and a web page's request get clean refusals.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  BedrockRuntimeClient, ConverseCommand, InvokeModelCommand, InvokeModelWithResponseStreamCommand,
} from '@aws-sdk/client-bedrock-runtime';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { runCommand } from './lib/daemon.mjs';
import { MODEL, REGION, validate } from './lib/login.mjs';
import { cliLogin, newLaptop, runClient, spawnClient, startSignin } from './lib/client.mjs';
import { integrationDir, request, sleep } from './lib/util.mjs';

const DUMMY = { accessKeyId: 'AKIDLAPTOPDUMMY00000', secretAccessKey: 'any/dummy/secret/will/do' };
const AWS_CLI = '/usr/bin/aws'; // Debian's awscli, not one on PATH from elsewhere
const body = (text) => JSON.stringify({ anthropic_version: 'bedrock-2023-05-31', max_tokens: 32, messages: [{ role: 'user', content: text }] });
const refreshes = (d) => d.logs.filter((e) => e?.msg === 'request' && e.route === 'auth_refresh');
const proxied = (d) => d.logs.filter((e) => e?.msg === 'request' && /^bedrock_/.test(e.route ?? ''));

/** Sign in, start the relay on a free loopback port; returns {lap, relay, url, sdk()}. */
async function relayUp(t, { env = {} } = {}) {
  const lap = newLaptop();
  const r = await cliLogin(t, lap);
  assert.equal(r.code, 0, r.stderr);
  const relay = spawnClient(lap, ['relay', '--listen', '127.0.0.1:0'], { env });
  const m = await relay.waitStderr(/listening on http:\/\/127\.0\.0\.1:(\d+) for /);
  // The URL for tools: the relay's secret is its first path segment.
  const u = await runClient(lap, ['relay', '--url', '--listen', `127.0.0.1:${m[1]}`]);
  assert.equal(u.code, 0, u.stderr);
  const url = u.stdout.trim();
  assert.match(url, new RegExp(`^http://127\\.0\\.0\\.1:${m[1]}/[A-Za-z0-9_-]{43}$`));
  return {
    lap, relay, url, port: Number(m[1]),
    sdk: () => new BedrockRuntimeClient({
      endpoint: url, region: REGION, credentials: DUMMY, requestHandler: new NodeHttpHandler(), maxAttempts: 1,
    }),
    async stop() {
      relay.kill('SIGTERM');
      const x = await relay.exited;
      lap.close();
      assert.equal(x.code, 0, x.stderr);
      assert.doesNotMatch(x.stderr, /AddressSanitizer|LeakSanitizer|runtime error:/, x.stderr);
      return x;
    },
  };
}

test('relay: the AWS SDK with dummy SigV4 keys, InvokeModel, Converse and a stream as it arrives', async () => {
  const t = await startSignin();
  let r;
  try {
    r = await relayUp(t);
    const sdk = r.sdk();
    const out = await sdk.send(new InvokeModelCommand({ modelId: MODEL, body: body('hello relay'), contentType: 'application/json' }));
    assert.match(JSON.parse(Buffer.from(out.body).toString()).content[0].text, /hello relay/);
    let up = t.bedrock.requests.at(-1);
    assert.equal(up.operation, 'invoke');
    assert.equal(up.signatureValid, true, 'the proxy signed it with its own keys');
    assert.ok(!JSON.stringify(up.headers).includes(DUMMY.accessKeyId), 'the dummy signature went nowhere');
    const line = proxied(t.d).at(-1);
    assert.equal(line.user, 'alice@example.com');
    assert.equal(line.status, 200);

    const cv = await sdk.send(new ConverseCommand({ modelId: MODEL, messages: [{ role: 'user', content: [{ text: 'converse via relay' }] }] }));
    assert.match(cv.output.message.content[0].text, /converse via relay/);

    // The stream: the first events reach the SDK while Bedrock is still silent mid-stream.
    const st = await sdk.send(new InvokeModelWithResponseStreamCommand({ modelId: 'test.stream-pause-4000', body: body('stream') }));
    const events = [];
    let upWhenFirst = null;
    for await (const ev of st.body) {
      if (events.length === 0) upWhenFirst = t.bedrock.requests.at(-1);
      events.push(JSON.parse(Buffer.from(ev.chunk.bytes).toString()));
      if (events.length === 1) assert.equal(upWhenFirst.response.complete, false, 'the first event came before the upstream finished');
    }
    up = t.bedrock.requests.at(-1);
    assert.equal(up.operation, 'invoke-with-response-stream');
    assert.equal(up.response.complete, true);
    assert.equal(events[0].type, 'message_start');
    assert.equal(events.at(-1).type, 'message_stop');
    assert.equal(events.length, up.response.framesSent);

    // DNS rebinding: a Host that is not loopback; a web page's request: both refused.
    const before = t.bedrock.requests.length;
    let x = await request(`${r.url}/model/${MODEL}/invoke`, { method: 'POST', headers: { Host: `evil.example:${r.port}` }, body: body('x') });
    assert.equal(x.status, 403);
    assert.match(x.json().message, /Host of this request is not this machine/);
    x = await request(`${r.url}/model/${MODEL}/invoke`, { method: 'POST', headers: { Origin: 'https://evil.example' }, body: body('x') });
    assert.equal(x.status, 403);
    assert.match(x.json().message, /requests from web pages are refused/);
    assert.equal(t.bedrock.requests.length, before, 'nothing refused reached Bedrock');
    const done = await r.stop();
    r = null;
    assert.match(done.stderr, /msg=request method=POST path=\S*\/invoke-with-response-stream status=200 /);
    assert.match(done.stderr, /msg=request method=POST path=\S*\/invoke status=403 /);
    assert.ok(!/eyJ|bsr_/.test(done.stderr), 'no token in the relay log');
  } finally {
    if (r) await r.stop().catch(() => {});
    await t.stop();
  }
});

test('relay: refreshes by itself, takes a rotation made by "token", says to sign in again once revoked, 502 when the proxy is down', async () => {
  const t = await startSignin({ over: { jwt: { access_token_ttl: 60 } } });
  let r;
  try {
    r = await relayUp(t);
    const sdk = r.sdk();
    const s0 = r.lap.session();
    const due = async () => {
      const s = r.lap.session();
      const ms = (s.expires_at - Math.min(300, Math.floor((s.expires_at - s.obtained_at) / 2)) + 1) * 1000 - Date.now();
      if (ms > 0) await sleep(ms);
    };
    await due();
    // The relay refreshes on its own before it sends.
    await sdk.send(new InvokeModelCommand({ modelId: MODEL, body: body('one') }));
    assert.equal(refreshes(t.d).length, 1);
    const s1 = r.lap.session();
    assert.notEqual(s1.refresh_token, s0.refresh_token);
    assert.equal(proxied(t.d).at(-1).status, 200);

    // "token" rotates next time; the relay reads the file again instead of spending the old one.
    await due();
    const tk = await runClient(r.lap, ['token']);
    assert.equal(tk.code, 0, tk.stderr);
    assert.equal(refreshes(t.d).length, 2);
    await sdk.send(new InvokeModelCommand({ modelId: MODEL, body: body('two') }));
    assert.equal(refreshes(t.d).length, 2, 'no second rotation by the relay');
    assert.ok(!t.d.logs.some((e) => /reuse/i.test(e?.msg ?? '')), 'no refresh token reuse');

    // Revoked: the proxy refuses the token, the relay's refresh is refused too: 401, sign in again.
    const lo = await runCommand(['user', 'logout', 'idp:alice'], { dir: t.d.dir });
    assert.equal(lo.code, 0, lo.stderr);
    const tok = r.lap.session().access_token;
    for (let i = 0; i < 50 && (await validate(t.d, tok)).status === 200; i++) await sleep(100);
    const e = await sdk.send(new InvokeModelCommand({ modelId: MODEL, body: body('three') })).catch((err) => err);
    assert.equal(e.$metadata?.httpStatusCode, 401, String(e));
    assert.match(e.message, /sign in again: bedrock-sso-proxy login http:\/\/127\.0\.0\.1:\d+/);
    await r.relay.waitStderr(/has ended this session .*; sign in again/);

    // Down: 502 naming the proxy.
    await t.d.stop();
    const e2 = await sdk.send(new InvokeModelCommand({ modelId: MODEL, body: body('four') })).catch((err) => err);
    assert.equal(e2.$metadata?.httpStatusCode, 502, String(e2));
    assert.match(e2.message, /relay: cannot reach the proxy at http:\/\/127\.0\.0\.1:\d+/);
  } finally {
    if (r) await r.stop().catch(() => {});
    await t.stop().catch(() => {});
  }
});

test('relay: the AWS CLI from Debian (with the InvokeModel model added) through the relay', { skip: !existsSync(AWS_CLI) && 'the AWS CLI is not installed (Debian package awscli)' }, async () => {
  const t = await startSignin();
  let r;
  try {
    r = await relayUp(t);
    const home = join(r.lap.dir, 'aws-home');
    mkdirSync(home, { recursive: true });
    const env = {
      PATH: '/usr/bin:/bin', HOME: home, AWS_ACCESS_KEY_ID: DUMMY.accessKeyId, AWS_SECRET_ACCESS_KEY: DUMMY.secretAccessKey,
      AWS_DEFAULT_REGION: REGION, AWS_EC2_METADATA_DISABLED: 'true', AWS_PAGER: '',
    };
    const aws = (args) => new Promise((res) => {
      const p = spawn(AWS_CLI, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      p.stdout.on('data', (d) => { out += d; });
      p.stderr.on('data', (d) => { err += d; });
      p.on('close', (code) => res({ code, out, err }));
    });
    // Debian's awscli 2.9 predates Bedrock: give it the service model of InvokeModel.
    let x = await aws(['configure', 'add-model', '--service-name', 'bedrock-runtime',
      '--service-model', `file://${join(integrationDir, 'data', 'bedrock-runtime-invoke-model.json')}`]);
    assert.equal(x.code, 0, x.err);
    const outFile = join(r.lap.dir, 'answer.json');
    x = await aws(['bedrock-runtime', 'invoke-model', '--endpoint-url', r.url, '--model-id', MODEL,
      '--content-type', 'application/json', '--cli-binary-format', 'raw-in-base64-out', '--body', body('from the aws cli'), outFile]);
    assert.equal(x.code, 0, x.err);
    assert.match(JSON.parse(readFileSync(outFile, 'utf8')).content[0].text, /from the aws cli/);
    const up = t.bedrock.requests.at(-1);
    assert.equal(up.operation, 'invoke');
    assert.equal(up.signatureValid, true);
    assert.equal(proxied(t.d).at(-1).user, 'alice@example.com');
  } finally {
    if (r) await r.stop().catch(() => {});
    await t.stop();
  }
});
