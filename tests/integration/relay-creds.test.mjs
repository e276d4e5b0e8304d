// Relayed requests signed with what the AWS credential chain found
// (src/aws-creds.c, src/route-bedrock.c): the fake Bedrock accepts only the
// chain's keys, so a valid signature proves which credentials were used.
// Sources: fake IMDSv2, container endpoint and STS on loopback, and shared
// files in a temporary HOME; session tokens included. An ExpiredToken answer
// makes the proxy refresh once and retry, transparently for the client;
// only the error type says so, never the text of a message.
// (aws-creds.test.mjs covers the chain itself through /health/ready.)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvokeModelWithResponseStreamCommand } from '@aws-sdk/client-bedrock-runtime';
import { startDaemon, runCommand } from './lib/daemon.mjs';
import { makeCreds, startFakeContainer, startFakeImds, startFakeSts } from './lib/fake-aws.mjs';
import { startFakeBedrock } from './lib/fake-bedrock.mjs';
import { MODEL, REGION, anthropicBody, relayConfig, startRelay, waitUsage } from './lib/relay.mjs';
import { waitFor } from './lib/util.mjs';

const enc = encodeURIComponent;
const ROLE_ARN = 'arn:aws:iam::123456789012:role/bsp-proxy';

/** A daemon relaying to fake with the credential chain (no aws.* keys) and env. */
async function chainDaemon(fake, env, files) {
  return startDaemon({
    config: relayConfig(null, { aws: { endpoint_url: fake.url, region: REGION } }),
    env: { AWS_EC2_METADATA_DISABLED: 'true', ...env },
    files,
  });
}

async function invoke(d, body = anthropicBody('chain')) {
  const r = await runCommand(['token', 'mint', '--user', 'dev@example.com'], { dir: d.dir });
  return d.request(`/model/${enc(MODEL)}/invoke`, {
    method: 'POST', headers: { Authorization: `Bearer ${r.stdout.trim()}`, 'Content-Type': 'application/json' }, body,
  });
}

/** Wait until the daemon has credentials (the chain runs asynchronously). */
const credsReady = (d) => waitFor(async () => (await d.request('/health/ready')).json()?.components?.aws_credentials?.status === 'ok',
  { timeoutMs: 8000, intervalMs: 50, message: 'aws_credentials never ok' });

function assertSignedWith(fake, creds) {
  const up = fake.requests.at(-1);
  assert.equal(up.signatureValid, true, up.authError?.message);
  assert.match(up.header('authorization'), new RegExp(`Credential=${creds.accessKeyId}/`));
  assert.equal(up.header('x-amz-security-token'), creds.sessionToken);
  if (creds.sessionToken) assert.match(up.header('authorization'), /SignedHeaders=[^,]*x-amz-security-token/);
}

test('relay creds: requests are signed with IMDSv2, container, web identity and shared-file credentials (session tokens too)', async () => {
  const imdsCreds = makeCreds('IMDS', { expiresIn: 3600 });
  const ecsCreds = makeCreds('ECS', { expiresIn: 3600 });
  const stsCreds = makeCreds('STS', { expiresIn: 3600 });
  const fileCreds = makeCreds('FILE');
  const fake = await startFakeBedrock({ region: REGION, credentials: [imdsCreds, ecsCreds, stsCreds, fileCreds] });
  const imds = await startFakeImds({ role: 'bsp-role', creds: imdsCreds });
  const ecs = await startFakeContainer({ token: 'Bearer pod-token', creds: ecsCreds });
  const sts = await startFakeSts({ expectRoleArn: ROLE_ARN, expectToken: 'eyJ.web.token', creds: stsCreds });
  try {
    const cases = [
      ['imds', imdsCreds, { AWS_EC2_METADATA_DISABLED: undefined, AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.url }],
      ['container', ecsCreds, { AWS_CONTAINER_CREDENTIALS_FULL_URI: ecs.url, AWS_CONTAINER_AUTHORIZATION_TOKEN: 'Bearer pod-token' }],
      // The daemon runs in its temp dir: a relative token file path is found there.
      ['web identity', stsCreds, { AWS_WEB_IDENTITY_TOKEN_FILE: 'web-token', AWS_ROLE_ARN: ROLE_ARN, AWS_ENDPOINT_URL_STS: sts.url },
        { 'web-token': 'eyJ.web.token\n' }],
      ['shared files', fileCreds, { AWS_PROFILE: 'relay' }, {
        'home/.aws/credentials': `[relay]\naws_access_key_id = ${fileCreds.accessKeyId}\naws_secret_access_key = ${fileCreds.secretAccessKey}\n`
          + `aws_session_token = ${fileCreds.sessionToken}\n`,
      }],
    ];
    for (const [name, creds, env, files] of cases) {
      const d = await chainDaemon(fake, env, files);
      try {
        await credsReady(d);
        const r = await invoke(d);
        assert.equal(r.status, 200, `${name}: ${r.text()}`);
        assertSignedWith(fake, creds);
        assert.ok(!d.stderr.includes(creds.secretAccessKey) && !d.stderr.includes(creds.sessionToken), `${name}: a secret was logged`);
      } finally {
        await d.stop();
      }
    }
  } finally {
    await fake.close();
    await imds.close();
    await ecs.close();
    await sts.close();
  }
});

test('relay creds: an ExpiredToken answer makes the proxy refresh once and retry; the client sees 200', async () => {
  const c1 = makeCreds('OLD', { expiresIn: 3600 });
  const c2 = makeCreds('NEW', { expiresIn: 3600 });
  const imds = await startFakeImds({ role: 'bsp-role', creds: c1 });
  const t = await startRelay({
    fake: { credentials: [c1, c2] },
    config: { aws: { access_key_id: null, secret_access_key: null } },
    env: { AWS_EC2_METADATA_DISABLED: undefined, AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.url },
  });
  try {
    await credsReady(t.d);
    const token = await t.token();
    let r = await t.post(`/model/${enc(MODEL)}/invoke`, { token });
    assert.equal(r.status, 200);
    assertSignedWith(t.fake, c1);
    const fetchesBefore = imds.stats().creds;

    // AWS now says c1's session token has expired; IMDS has c2.
    t.fake.expireSessionToken(c1.sessionToken);
    imds.setCreds(c2);
    const n0 = t.fake.requests.length;
    // The retry answers after 300 ms: the row's first-byte latency is the retry's.
    r = await t.post('/model/test.slow-first-byte-300/invoke', { token, body: anthropicBody('after expiry') });
    assert.equal(r.status, 200, r.text());
    assert.equal(r.json().content[0].text, 'echo: after expiry');
    const tries = t.fake.requests.slice(n0);
    assert.equal(tries.length, 2, 'one refused try, one retry');
    assert.equal(tries[0].authError?.type, 'ExpiredTokenException');
    assert.equal(tries[0].header('x-amz-security-token'), c1.sessionToken);
    assert.equal(tries[1].signatureValid, true);
    assert.equal(tries[1].header('x-amz-security-token'), c2.sessionToken);
    assert.equal(tries[1].body.toString(), anthropicBody('after expiry'), 'the same body on the retry');
    assert.equal(imds.stats().creds, fetchesBefore + 1, 'exactly one refresh');
    await t.d.waitForLog((e) => /AWS says the credentials expired; refreshing once/.test(e.msg ?? ''));
    const row = (await waitUsage(t.d.dir, 2))[1];
    assert.equal(row.status, 200);
    assert.equal(row.outcome, 'ok');
    assert.ok(row.first_byte_ms >= 290, `first_byte_ms ${row.first_byte_ms}: not the retry's`);

    // Streams too: the error comes before the stream begins.
    const c3 = t.fake.requests.length;
    t.fake.expireSessionToken(c2.sessionToken);
    const c4 = makeCreds('FOURTH', { expiresIn: 3600 });
    t.fake.setCredentials([c2, c4]);
    imds.setCreds(c4);
    const out = await t.sdk({ token }).send(new InvokeModelWithResponseStreamCommand({ modelId: MODEL, body: anthropicBody('s') }));
    let n = 0;
    for await (const ev of out.body) n += ev.chunk ? 1 : 0;
    assert.equal(n, 8);
    assert.equal(t.fake.requests.length - c3, 2);
    assertSignedWith(t.fake, c4);

    // Five calls refused at once share one refresh.
    const c5 = makeCreds('FIFTH', { expiresIn: 3600 });
    t.fake.setCredentials([c4, c5]);
    t.fake.expireSessionToken(c4.sessionToken);
    imds.setCreds(c5);
    imds.setDelay(300);
    const f0 = imds.stats().creds;
    const n5 = t.fake.requests.length;
    const all = await Promise.all([1, 2, 3, 4, 5].map((i) => t.post(`/model/${enc(MODEL)}/invoke`, { token, body: anthropicBody(`p${i}`) })));
    assert.deepEqual(all.map((x) => x.status), [200, 200, 200, 200, 200]);
    assert.equal(imds.stats().creds - f0, 1, 'one refresh for all five');
    assert.equal(t.fake.requests.length - n5, 10);
    imds.setDelay(0);

    // When the refresh brings nothing new, the client gets the error, and no retry loop.
    t.fake.expireSessionToken(c5.sessionToken);
    const n1 = t.fake.requests.length;
    r = await t.post(`/model/${enc(MODEL)}/invoke`, { token });
    assert.equal(r.status, 403, r.text());
    assert.match(r.headers['x-amzn-errortype'], /^ExpiredToken/);
    assert.equal(t.fake.requests.length - n1, 1, 'no retry with the same keys');
    assert.ok(!t.d.stderr.includes(c1.secretAccessKey) && !t.d.stderr.includes(c2.sessionToken));
  } finally {
    await t.stop();
    await imds.close();
  }
});

test('relay creds: only the error type says "expired": the old trigger text in a message refreshes nothing; ExpiredTokenException does, once', async () => {
  const c1 = makeCreds('FIRST', { expiresIn: 3600 });
  const c2 = makeCreds('SECOND', { expiresIn: 3600 });
  const c3 = makeCreds('THIRD', { expiresIn: 3600 });
  const imds = await startFakeImds({ role: 'bsp-role', creds: c1 });
  const t = await startRelay({
    fake: { credentials: [c1, c2, c3] },
    config: { aws: { access_key_id: null, secret_access_key: null } },
    env: { AWS_EC2_METADATA_DISABLED: undefined, AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.url },
  });
  try {
    await credsReady(t.d);
    const token = await t.token();
    const TRIGGER = 'The security token included in the request is expired';
    // test.say-<n>: answer n with that status, type and message; test.expired-once-<n>: ExpiredToken on the first try only.
    const answers = {
      'test.say-1': [403, 'AccessDeniedException:http://internal.amazon.com/coral/com.amazon.bedrock/', TRIGGER],
      'test.say-2': [400, 'ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/', `Malformed input request: #: extraneous key [${TRIGGER}] is not permitted`],
      'test.say-3': [403, 'AccessDeniedException:ExpiredTokenException', `${TRIGGER}.`],
      'test.say-4': [403, null, `{"__type":"ExpiredTokenException"} ${TRIGGER}`],
      'test.say-5': [403, 'ExpiredTokenExceptionButNotReally', TRIGGER],
      'test.expired-once-1': [403, 'ExpiredTokenException:http://internal.amazon.com/coral/com.amazon.coral.service/', 'boom'],
      'test.expired-once-2': [403, 'com.amazonaws.sts#ExpiredTokenException', 'boom'],
    };
    const seen = new Set();
    t.fake.setHandler(async (req, res, rec) => {
      const a = answers[rec.modelId];
      if (!a || (rec.modelId.startsWith('test.expired-once') && seen.has(rec.modelId))) return false;
      seen.add(rec.modelId);
      const b = JSON.stringify({ message: a[2] });
      res.writeHead(a[0], { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(b), ...(a[1] ? { 'x-amzn-ErrorType': a[1] } : {}) });
      res.end(b);
      return true;
    });
    const refreshLog = (e) => /AWS says the credentials expired/.test(e?.msg ?? '');

    // A message (a model's words, an echo of the input) cannot make the proxy refresh or retry.
    const f0 = imds.stats().creds;
    for (const id of ['test.say-1', 'test.say-2', 'test.say-3', 'test.say-4', 'test.say-5']) {
      const n0 = t.fake.requests.length;
      const r = await t.post(`/model/${id}/invoke`, { token });
      assert.equal(r.status, answers[id][0], `${id}: ${r.text()}`);
      assert.equal(r.json().message, answers[id][2], `${id}: Bedrock's own answer comes back`);
      assert.equal(t.fake.requests.length - n0, 1, `${id}: retried`);
    }
    assert.equal(imds.stats().creds, f0, 'no credential refresh');
    assert.ok(!t.d.logs.some(refreshLog), 'no "credentials expired" log line');

    // The expired-token error type (bare name before ':', after '#'): one refresh, the retry with the new keys answers.
    for (const [id, next] of [['test.expired-once-1', c2], ['test.expired-once-2', c3]]) {
      imds.setCreds(next);
      const f1 = imds.stats().creds;
      const n1 = t.fake.requests.length;
      const r = await t.post(`/model/${id}/invoke`, { token, body: anthropicBody(id) });
      assert.equal(r.status, 200, `${id}: ${r.text()}`);
      assert.equal(r.json().content[0].text, `echo: ${id}`);
      assert.equal(imds.stats().creds - f1, 1, `${id}: one refresh`);
      const tries = t.fake.requests.slice(n1);
      assert.equal(tries.length, 2, `${id}: one refused try, one retry`);
      assert.equal(tries[1].header('x-amz-security-token'), next.sessionToken);
      assertSignedWith(t.fake, next);
      // And the next call goes straight through with them.
      assert.equal((await invoke(t.d)).status, 200);
      assertSignedWith(t.fake, next);
    }
    assert.equal(t.d.logs.filter(refreshLog).length, 2);
  } finally {
    await t.stop();
    await imds.close();
  }
});
