// What AWS sees of the caller (issue 13): request metadata on relayed calls,
// per-user role sessions (sts:AssumeRole with SourceIdentity and session tags),
// and credential vending (POST /aws/credentials). The fake STS (lib/fake-sts.mjs)
// and the fake Bedrock check every signature with the AWS SDK's signer, so a
// request that reaches them signed proves which credentials signed it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConverseCommand, InvokeModelCommand } from '@aws-sdk/client-bedrock-runtime';
import { startFakeStsAssume } from './lib/fake-sts.mjs';
import { runCommand } from './lib/daemon.mjs';
import { CREDS, MODEL, anthropicBody, scrape, metricValue, startRelay } from './lib/relay.mjs';
import { auditRows, withDb } from './lib/tokens.mjs';
import { waitFor } from './lib/util.mjs';

const enc = encodeURIComponent;
const ROLE = 'arn:aws:iam::123456789012:role/bsp-users';
const ROLE_S3 = 'arn:aws:iam::123456789012:role/dev-s3';
const ROLE_ADMIN = 'arn:aws:iam::123456789012:role/admin';

/** Users with groups, as a sign-in would have left them. */
function seedUsers(dir, users) {
  const now = Math.floor(Date.now() / 1000);
  withDb(dir, (db) => {
    for (const u of users) {
      const [provider, ...rest] = u.id.split(':');
      db.prepare('INSERT INTO users (id, provider, subject, email, email_verified, name, groups, first_login, '
        + 'last_login) VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?)')
        .run(u.id, provider, rest.join(':'), u.email, u.id, JSON.stringify(u.groups ?? []), now, now);
    }
  });
}

const USERS = [
  { id: 'local:alice', email: 'alice@example.com', groups: ['dev', 'ml team'] },
  { id: 'local:bob', email: 'bob@example.com', groups: ['ops'] },
  { id: 'local:carol', email: 'carol@example.com', groups: ['dev'] },
  { id: 'local:dave', email: 'dave@example.com', groups: ['dev'] },
  { id: 'local:erin', email: 'erin@example.com', groups: ['dev'] },
  { id: 'local:frank', email: 'frank@example.com', groups: ['dev'] },
  { id: 'local:grace', email: 'grace@example.com', groups: ['dev'] },
];

/** A relay with a fake STS whose sessions the fake Bedrock accepts. */
async function startAws(config = {}, stsOpts = {}) {
  const issued = [];
  let t = null;
  const sts = await startFakeStsAssume({
    credentials: [CREDS],
    onIssue: (c) => {
      issued.push(c);
      t?.fake.setCredentials([CREDS, ...issued]);
    },
    ...stsOpts,
  });
  try {
    t = await startRelay({ config, env: { AWS_ENDPOINT_URL_STS: sts.url } });
  } catch (e) {
    await sts.close();
    throw e;
  }
  seedUsers(t.d.dir, USERS);
  t.sts = sts;
  t.issued = issued;
  const stop = t.stop.bind(t);
  t.stop = async () => {
    try { await stop(); } finally { await sts.close(); }
  };
  t.invoke = (tok, { headers = {}, body = anthropicBody('hi'), model = MODEL } = {}) => t.post(
    `/model/${enc(model)}/invoke`, { token: tok, headers, body },
  );
  return t;
}

const akidOf = (rec) => /Credential=([^/]+)\//.exec(rec.header('authorization'))?.[1];

test('request metadata: the identity reaches Bedrock signed, merged with the client\'s, and cannot be spoofed', async () => {
  const t = await startAws({
    aws: { request_metadata: ['user', 'email', 'groups', 'provider', 'claude_session=session', 'api_key'] },
  });
  try {
    const tok = await t.token('local:alice');

    // InvokeModel: the header, with the client's own pairs kept and its identity keys dropped.
    let r = await t.invoke(tok, {
      headers: {
        'X-Amzn-Bedrock-Request-Metadata': JSON.stringify({ team: 'orchestrator', user: 'mallory', EMAIL: 'x@evil' }),
        'X-Claude-Code-Session-Id': 'sess-1234{"x"}',
      },
    });
    assert.equal(r.status, 200, r.text());
    let up = t.fake.requests.at(-1);
    assert.equal(up.signatureValid, true, up.authError?.message);
    assert.match(up.header('authorization'), /SignedHeaders=[^,]*x-amzn-bedrock-request-metadata/);
    assert.equal(up.headersDistinct['x-amzn-bedrock-request-metadata'].length, 1);
    let meta = JSON.parse(up.header('x-amzn-bedrock-request-metadata'));
    assert.deepEqual(meta, {
      user: 'local:alice', email: 'alice@example.com', groups: 'dev,ml team', provider: 'local',
      claude_session: 'sess-1234__x__', team: 'orchestrator',
    });
    for (const v of Object.values(meta)) assert.match(v, /^[a-zA-Z0-9\s:_@$#=/+,\-.]{0,256}$/);

    // No client header: ours alone. A malformed one: 400, nothing sent.
    r = await t.invoke(tok);
    assert.equal(r.status, 200);
    meta = JSON.parse(t.fake.requests.at(-1).header('x-amzn-bedrock-request-metadata'));
    assert.equal(meta.user, 'local:alice');
    assert.equal(meta.claude_session, undefined);
    const n = t.fake.requests.length;
    r = await t.invoke(tok, { headers: { 'X-Amzn-Bedrock-Request-Metadata': '{"user":"a","user":"b"}' } });
    assert.equal(r.status, 400);
    assert.match(r.json().message, /repeats a key|JSON object/);
    r = await t.invoke(tok, { headers: { 'X-Amzn-Bedrock-Request-Metadata': JSON.stringify(Object.fromEntries(
      Array.from({ length: 13 }, (_, i) => [`k${i}`, 'v']))) } });
    assert.equal(r.status, 400);
    assert.match(r.json().message, /more than 16 pairs/);
    assert.equal(t.fake.requests.length, n, 'refused requests never reach Bedrock');

    // Converse: requestMetadata in the body, spliced; the rest of the body byte for byte.
    const body = '{"messages":[{"role":"user","content":[{"text":"hi"}]}],"inferenceConfig":{"temperature":0.7},'
      + '"requestMetadata":{"user":"mallory","Groups":"admins","cost":"42"}}';
    r = await t.post(`/model/${enc(MODEL)}/converse`, { token: tok, body });
    assert.equal(r.status, 200, r.text());
    up = t.fake.requests.at(-1);
    assert.equal(up.signatureValid, true);
    const sent = up.body.toString('utf8');
    const j = JSON.parse(sent);
    assert.deepEqual(j.requestMetadata, {
      cost: '42', email: 'alice@example.com', groups: 'dev,ml team', provider: 'local', user: 'local:alice',
    });
    assert.ok(sent.startsWith('{"messages":[{"role":"user","content":[{"text":"hi"}]}],"inferenceConfig":{"temperature":0.7},'
      + '"requestMetadata":{'), sent);
    // A second member cannot hide behind the first.
    r = await t.post(`/model/${enc(MODEL)}/converse`, {
      token: tok, body: '{"requestMetadata":{"a":"b"},"messages":[],"requestMetadata":{"user":"mallory"}}',
    });
    assert.equal(r.status, 400);
    // Without requestMetadata: inserted first.
    r = await t.post(`/model/${enc(MODEL)}/converse`, { token: tok, body: '{"messages":[{"role":"user","content":[{"text":"x"}]}]}' });
    assert.equal(r.status, 200);
    assert.equal(JSON.parse(t.fake.requests.at(-1).body).requestMetadata.user, 'local:alice');

    // The SDK's own Converse call (requestMetadata is a modelled member).
    const out = await t.sdk({ token: tok }).send(new ConverseCommand({
      modelId: MODEL, messages: [{ role: 'user', content: [{ text: 'sdk' }] }], requestMetadata: { user: 'mallory', run: '7' },
    }));
    assert.equal(out.stopReason, 'end_turn');
    assert.deepEqual(JSON.parse(t.fake.requests.at(-1).body).requestMetadata.user, 'local:alice');
    assert.equal(JSON.parse(t.fake.requests.at(-1).body).requestMetadata.run, '7');

    // The Anthropic route (InvokeModel upstream) carries the header too.
    r = await t.post('/v1/messages', { token: tok, body: JSON.stringify({ model: MODEL, max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] }) });
    assert.equal(r.status, 200, r.text());
    meta = JSON.parse(t.fake.requests.at(-1).header('x-amzn-bedrock-request-metadata'));
    assert.equal(meta.user, 'local:alice');

    // An API key: its name is the api_key value.
    const { key } = await t.key('local:bob', '--name', 'ci runner #1');
    r = await t.invoke(key);
    assert.equal(r.status, 200, r.text());
    meta = JSON.parse(t.fake.requests.at(-1).header('x-amzn-bedrock-request-metadata'));
    assert.equal(meta.user, 'local:bob');
    assert.equal(meta.api_key, 'ci runner #1');

    // The SDK's InvokeModel with its own requestMetadata member (the header).
    await t.sdk({ token: tok }).send(new InvokeModelCommand({
      modelId: MODEL, body: anthropicBody('sdk'), contentType: 'application/json', requestMetadata: JSON.stringify({ user: 'x', job: 'j1' }),
    }));
    meta = JSON.parse(t.fake.requests.at(-1).header('x-amzn-bedrock-request-metadata'));
    assert.equal(meta.user, 'local:alice');
    assert.equal(meta.job, 'j1');
  } finally {
    await t.stop();
  }
});

test('per-user roles: one STS session per user with its SourceIdentity and tags, cached, refreshed, single flight', async () => {
  const t = await startAws({
    aws: { per_user_role: { role_arn: ROLE, duration: 900 } },
    models: { rules: [{ groups: ['ops'], deny: ['*claude-opus*'] }] },
  });
  try {
    const alice = await t.token('local:alice');
    const bob = await t.token('local:bob');
    let r = await t.invoke(alice);
    assert.equal(r.status, 200, r.text());
    r = await t.invoke(bob);
    assert.equal(r.status, 200, r.text());
    assert.equal(t.sts.sessions.length, 2);
    const [sa, sb] = t.sts.sessions;
    assert.equal(sa.signedWith, CREDS.accessKeyId, 'AssumeRole is signed with the base credentials');
    assert.equal(sa.roleArn, ROLE);
    assert.equal(sa.duration, 900);
    assert.equal(sa.sessionName, 'alice@example.com');
    assert.equal(sa.sourceIdentity, 'alice@example.com');
    assert.deepEqual(sa.tags, { user: 'local:alice', email: 'alice@example.com', groups: 'dev:ml team', provider: 'local' });
    assert.equal(sb.sourceIdentity, 'bob@example.com');
    assert.deepEqual(sb.tags, { user: 'local:bob', email: 'bob@example.com', groups: 'ops', provider: 'local' });
    // Each user's call was signed with that user's session.
    const ups = t.fake.requests.slice(-2);
    assert.equal(akidOf(ups[0]), sa.accessKeyId);
    assert.equal(ups[0].header('x-amz-security-token'), sa.creds.sessionToken);
    assert.equal(akidOf(ups[1]), sb.accessKeyId);
    assert.ok(ups.every((u) => u.signatureValid));

    // The cache: more calls, no more STS.
    for (let i = 0; i < 3; i++) assert.equal((await t.invoke(alice)).status, 200);
    assert.equal(t.sts.sessions.length, 2, JSON.stringify(t.sts.sessions.map((s) => [s.sourceIdentity, s.creds.expiration])));
    assert.equal(akidOf(t.fake.requests.at(-1)), sa.accessKeyId);

    // Refused users never reach STS: a model the rules deny bob.
    r = await t.invoke(bob, { model: 'anthropic.claude-opus-4-1-20250805-v1:0' });
    assert.equal(r.status, 403);
    const carolTok = await t.token('local:carol');
    const stsCalls = t.sts.requests.length;
    await runCommand(['user', 'disable', 'local:carol'], { dir: t.d.dir });
    await waitFor(async () => (await t.d.request('/auth/validate', { headers: { Authorization: `Bearer ${carolTok}` } })).status === 401,
      { timeoutMs: 5000, message: 'carol still admitted' });
    assert.equal((await t.invoke(carolTok)).status, 401);
    assert.equal(t.sts.requests.length, stsCalls, 'a refused user made an STS call');

    // Single flight: five calls at once for a new user, one AssumeRole.
    const dave = await t.token('local:dave');
    t.sts.setDelay(300);
    const many = await Promise.all(Array.from({ length: 5 }, () => t.invoke(dave)));
    t.sts.setDelay(0);
    assert.deepEqual(many.map((x) => x.status), [200, 200, 200, 200, 200]);
    assert.equal(t.sts.sessions.filter((s) => s.sourceIdentity === 'dave@example.com').length, 1);

    // Expiry: a session that ends within 5 minutes is used while a new one is made.
    t.sts.setExpiresIn(200, { once: true });
    const erin = await t.token('local:erin');
    const erinSessions = () => t.sts.sessions.filter((s) => s.sourceIdentity === 'erin@example.com');
    assert.equal((await t.invoke(erin)).status, 200);
    assert.equal(akidOf(t.fake.requests.at(-1)), erinSessions()[0].accessKeyId, 'the old session serves while refreshing');
    await waitFor(() => erinSessions().length === 2, { timeoutMs: 5000, message: 'no background refresh' });
    await waitFor(async () => {
      assert.equal((await t.invoke(erin)).status, 200);
      return akidOf(t.fake.requests.at(-1)) === erinSessions()[1].accessKeyId;
    }, { timeoutMs: 5000, message: 'the refreshed session is not used' });
    assert.equal(erinSessions().length, 2, 'a fresh session is not refreshed again');

    // AWS refuses a cached session (expired early): assumed again, once, transparently.
    t.fake.expireSessionToken(sa.creds.sessionToken);
    r = await t.invoke(alice);
    assert.equal(r.status, 200, r.text());
    const aliceSessions = t.sts.sessions.filter((s) => s.sourceIdentity === 'alice@example.com');
    assert.equal(aliceSessions.length, 2);
    assert.equal(akidOf(t.fake.requests.at(-1)), aliceSessions[1].accessKeyId);

    // An STS outage: a clean 503 with the class; STS's words only in the log.
    t.sts.setStatus(503);
    const frank = await t.token('local:frank');
    r = await t.invoke(frank);
    assert.equal(r.status, 503);
    assert.equal(r.headers['x-amzn-errortype']?.split(':')[0], 'ServiceUnavailableException');
    assert.match(r.json().message, /could not assume your AWS role \(server_error\)/);
    assert.doesNotMatch(r.text(), /Service is unavailable|127\.0\.0\.1|arn:aws/);
    assert.ok(t.d.logs.some((e) => typeof e === 'object' && /AssumeRole failed \(server_error, status 503, ServiceUnavailable\)/.test(e.msg)),
      'the details are in the log');
    // Sessions in hand keep working through the outage.
    assert.equal((await t.invoke(bob)).status, 200);
    t.sts.setStatus(0);
    // Denied: a 403 with the class.
    t.sts.setError({ code: 'AccessDenied', message: 'not authorized to perform: sts:TagSession', status: 403 });
    const grace = await t.token('local:grace');
    r = await t.invoke(grace);
    assert.equal(r.status, 403);
    assert.match(r.json().message, /\(denied\)/);
    assert.doesNotMatch(r.text(), /TagSession/);
    t.sts.setError(null);
    // After the hold-off the user gets a session.
    await waitFor(async () => (await t.invoke(grace)).status === 200, { timeoutMs: 8000, intervalMs: 500, message: 'no recovery' });

    const m = await scrape(t.d);
    assert.ok(metricValue(m, 'bsp_aws_user_role_cache_total', { result: 'hit' }) >= 4);
    assert.ok(metricValue(m, 'bsp_aws_assume_role_total', { purpose: 'user', class: 'ok' }) >= 5);
  } finally {
    await t.stop();
  }
});

test('credential vending: allowed by group, refused otherwise, audited, rate-limited, no-store', async () => {
  const t = await startAws({
    aws: {
      credentials_per_minute: 5,
      credential_roles: [
        { name: 's3-dev', role_arn: ROLE_S3, allow: { groups: ['dev'] }, duration: 900,
          session_policy: '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}' },
        { name: 'admin', role_arn: ROLE_ADMIN, allow: { emails: ['root@example.com'] } },
      ],
    },
  });
  const vend = (tok, body) => t.d.request('/aws/credentials', {
    method: 'POST', headers: { Authorization: `Bearer ${tok}`, 'Content-Type': 'application/json' },
    body: body === undefined ? '' : JSON.stringify(body),
  });
  try {
    const alice = await t.token('local:alice');
    let r = await vend(alice, { role: 's3-dev' });
    assert.equal(r.status, 200, r.text());
    assert.equal(r.headers['cache-control'], 'no-store');
    const c = r.json();
    const s = t.sts.sessions.at(-1);
    assert.deepEqual(Object.keys(c), ['Version', 'AccessKeyId', 'SecretAccessKey', 'SessionToken', 'Expiration']);
    assert.equal(c.Version, 1);
    assert.equal(c.AccessKeyId, s.accessKeyId);
    assert.equal(c.SecretAccessKey, s.creds.secretAccessKey);
    assert.equal(c.SessionToken, s.creds.sessionToken);
    assert.equal(c.Expiration, s.creds.expiration);
    assert.equal(s.roleArn, ROLE_S3);
    assert.equal(s.duration, 900);
    assert.equal(s.sourceIdentity, 'alice@example.com');
    assert.equal(s.tags.user, 'local:alice');
    assert.match(s.policy, /s3:GetObject/);
    let a = auditRows(t.d.dir, 'aws_credentials_issued');
    assert.equal(a.length, 1);
    assert.equal(a[0].user_id, 'local:alice');
    assert.deepEqual(JSON.parse(a[0].detail), {
      role: 's3-dev', role_arn: ROLE_S3, session_name: 'alice@example.com', access_key_id: s.accessKeyId, expiration: c.Expiration,
    });
    assert.doesNotMatch(a[0].detail, new RegExp(s.creds.secretAccessKey.replace(/[+/=]/g, '.')));

    // No role named: the only one alice may have (as the laptop client asks).
    r = await vend(alice, {});
    assert.equal(r.status, 200, r.text());
    r = await vend(alice);
    assert.equal(r.status, 200, r.text());

    // Bob (ops) may not have s3-dev; an unknown role gets the same answer. No STS call.
    const bob = await t.token('local:bob');
    const before = t.sts.requests.length;
    r = await vend(bob, { role: 's3-dev' });
    assert.equal(r.status, 403);
    assert.equal(r.json().error, 'access_denied');
    assert.equal(r.headers['cache-control'], 'no-store');
    const unknown = await vend(bob, { role: 'nope' });
    assert.equal(unknown.status, 403);
    r = await vend(bob, {});
    assert.equal(r.status, 403);
    assert.equal(t.sts.requests.length, before);
    a = auditRows(t.d.dir, 'aws_credentials_refused');
    assert.equal(a.length, 3);
    assert.equal(a[0].user_id, 'local:bob');
    assert.equal(JSON.parse(a[0].detail).role, 's3-dev');

    // Bad input.
    r = await vend(alice, { role: 42 });
    assert.equal(r.status, 400);

    // API keys need the aws:credentials scope.
    const { key } = await t.key('local:alice');
    await waitFor(async () => (await t.d.request('/auth/validate', { headers: { Authorization: `Bearer ${key}` } })).status === 200,
      { timeoutMs: 5000, message: 'the key never worked' });
    r = await vend(key, { role: 's3-dev' });
    assert.equal(r.status, 403, r.text());
    assert.equal(r.json().error, 'insufficient_scope');
    // ... which the owner may give a key (POST /api/keys) or the admin (key create --scope).
    r = await t.d.request('/api/keys', {
      method: 'POST', headers: { Authorization: `Bearer ${alice}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'aws only', scopes: ['aws:credentials'] }),
    });
    assert.equal(r.status, 201, r.text());
    assert.deepEqual(r.json().scopes, ['aws:credentials']);
    assert.deepEqual(r.json().models, []);
    const awsKey = r.json().key;
    r = await t.d.request('/api/keys', {
      method: 'POST', headers: { Authorization: `Bearer ${alice}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ scopes: ['admin'] }),
    });
    assert.equal(r.status, 400);
    r = await t.d.request('/api/keys', {
      method: 'POST', headers: { Authorization: `Bearer ${alice}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ models: ['scope:admin'] }),
    });
    assert.equal(r.status, 400, 'a scope cannot be smuggled in as a model pattern');
    await waitFor(async () => (await t.d.request('/auth/validate', { headers: { Authorization: `Bearer ${awsKey}` } })).status === 200,
      { timeoutMs: 5000, message: 'the scoped key never worked' });
    r = await vend(awsKey, { role: 's3-dev' });
    assert.equal(r.status, 200, r.text());
    assert.equal(t.sts.sessions.at(-1).sourceIdentity, 'alice@example.com');
    // A key with only aws:credentials does not call models.
    r = await t.invoke(awsKey);
    assert.equal(r.status, 403);
    assert.match(r.text(), /bedrock:invoke/);
    const both = await t.key('local:dave', '--scope', 'bedrock:invoke,aws:credentials');
    assert.deepEqual(both.info.scopes, ['bedrock:invoke', 'aws:credentials']);
    const listed = await runCommand(['key', 'list', '--user', 'local:dave'], { dir: t.d.dir });
    assert.equal(listed.code, 0, listed.stderr);
    const bad = await runCommand(['key', 'create', '--user', 'local:dave', '--scope', 'root'], { dir: t.d.dir });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--scope: scopes may be/);

    // STS refuses: a 403 with the class, STS's words only in the log.
    t.sts.setError({ code: 'AccessDenied', message: 'not authorized to perform sts:AssumeRole on dev-s3', status: 403 });
    const carol = await t.token('local:dave');
    r = await vend(carol, { role: 's3-dev' });
    assert.equal(r.status, 403);
    assert.match(r.json().error_description, /\(denied\)/);
    assert.doesNotMatch(r.text(), /dev-s3|sts:AssumeRole/);
    t.sts.setError(null);

    // Rate limit: 5 a minute per user (alice has used 4 successful + 1 bad request).
    r = await vend(alice, { role: 's3-dev' });
    assert.equal(r.status, 429);
    assert.ok(Number(r.headers['retry-after']) >= 1);
    // Another user's allowance is their own.
    assert.equal((await vend(carol, { role: 's3-dev' })).status, 200);
  } finally {
    await t.stop();
  }
});

test('credential vending: off (no roles) is a 404 the laptop client recognises', async () => {
  const t = await startAws({});
  try {
    const tok = await t.token('local:alice');
    const r = await t.d.request('/aws/credentials', { method: 'POST', headers: { Authorization: `Bearer ${tok}` }, body: '{}' });
    assert.equal(r.status, 404);
    assert.equal(r.json().error, 'not_found');
    const anon = await t.d.request('/aws/credentials', { method: 'POST', body: '{}' });
    assert.equal(anon.status, 401);
  } finally {
    await t.stop();
  }
});

test('per-user roles: a daemon stopped while calls wait for STS exits cleanly', async () => {
  const t = await startAws({ server: { shutdown_timeout: 1 }, aws: { per_user_role: { role_arn: ROLE } } });
  let stopped = false;
  try {
    const tok = await t.token('local:alice');
    t.sts.setDelay(4000);
    const pending = Promise.all([t.invoke(tok).catch((e) => e), t.invoke(tok).catch((e) => e)]);
    await waitFor(() => t.sts.requests.length === 1, { timeoutMs: 5000, message: 'no AssumeRole' });
    await t.stop();
    stopped = true;
    const out = await pending;
    assert.ok(out.every((x) => x instanceof Error || x.status >= 500), 'the waiting calls end with the daemon');
  } finally {
    if (!stopped) await t.stop();
  }
});

test('configuration: bad aws identity settings are refused by -n, all at once, with their lines', async () => {
  const configText = `database: { url: "sqlite:///nonexistent-bsp/x.db" }
aws:
  region: us-east-1
  request_metadata: [user, bogus, "bad{=email", user]
  per_user_role:
    role_arn: not-an-arn
    session_tags: [session]
  credential_roles:
    - name: s3
      role_arn: arn:aws:iam::123456789012:role/s3
    - name: s3
      role_arn: arn:aws:iam::123456789012:role/s3
      allow: { groups: [dev] }
      session_policy: "[1]"
`;
  const r = await runCommand(['-n'], { configText });
  assert.equal(r.code, 1, r.stderr);
  for (const re of [
    /:4: aws\.request_metadata: "bogus" is not FIELD/, /:4: aws\.request_metadata: "bad\{" is not a key/,
    /:4: aws\.request_metadata: the key "user" is given twice/, /:6: aws\.per_user_role\.role_arn: "not-an-arn"/,
    /:7: aws\.per_user_role\.session_tags: session is per request/, /:9: aws\.credential_roles entry 0: allow names no/,
    /:11: aws\.credential_roles: the name "s3" is given twice/, /:11: aws\.credential_roles entry 1: session_policy/,
  ]) assert.match(r.stderr, re);
  const ok = await runCommand(['-n'], {
    configText: 'database: { url: "sqlite:///nonexistent-bsp/x.db" }\naws: { region: us-east-1, bearer_token: abc, per_user_role: { role_arn: "arn:aws:iam::123456789012:role/r" } }\n',
  });
  assert.equal(ok.code, 1);
  assert.match(ok.stderr, /aws\.bearer_token cannot assume roles/);
});
