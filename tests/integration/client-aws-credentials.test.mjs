// `bedrock-sso-proxy aws-credentials` (issue 12): the per-user AWS
// credentials the proxy vends at POST /aws/credentials (the AWS identity
// issue), printed in the credential_process shape (AWS CLI and SDKs;
// Claude Code's awsCredentialExport reads it too) or in the
// {"Credentials":{...}} shape of `aws sts`. The test daemon has no such
// endpoint yet: a clear error and exit 5. The shapes are checked against a
// scripted proxy.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ACCESS, REFRESH, startFakeGateway } from './lib/fake-gateway.mjs';
import { cliLogin, newLaptop, runClient, startSignin } from './lib/client.mjs';
import { startFakeStsAssume } from './lib/fake-sts.mjs';
import { AWS_CREDS } from './lib/login.mjs';

const CREDS = {
  Version: 1, AccessKeyId: 'ASIAFAKEPERUSER00001', SecretAccessKey: 'per/user+secret/EXAMPLE0123456789abcdef',
  SessionToken: 'FwoGZXIvYXdzEFAKE//session+token==', Expiration: '2026-12-31T23:59:59Z',
};

function session(g) {
  const now = Math.floor(Date.now() / 1000);
  return { version: 1, profile: 'default', proxy: g.url, access_token: ACCESS, refresh_token: REFRESH, expires_at: now + 3600, obtained_at: now };
}

test('aws-credentials against a proxy without POST /aws/credentials: exit 5, nothing on stdout', async () => {
  const t = await startSignin();
  const lap = newLaptop();
  try {
    assert.equal((await cliLogin(t, lap)).code, 0);
    const r = await runClient(lap, ['aws-credentials']);
    assert.equal(r.code, 5, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /the proxy at http:\/\/127\.0\.0\.1:\d+ does not vend AWS credentials \(POST \/aws\/credentials: 404\); ask its operator/);
  } finally {
    lap.close();
    await t.stop();
  }
});

// End to end: the laptop, the daemon's POST /aws/credentials, a fake STS
// that checks the daemon's signature (lib/fake-sts.mjs).
test('aws-credentials against the daemon: the STS session made for the signed-in user, in the credential_process shape', async () => {
  const sts = await startFakeStsAssume({ credentials: [AWS_CREDS] });
  const ROLE = 'arn:aws:iam::123456789012:role/dev-s3';
  const t = await startSignin({
    over: { aws: { credential_roles: [{ name: 'dev-s3', role_arn: ROLE, allow: { emails: ['alice@example.com'] }, duration: 900 }] } },
    env: { AWS_ENDPOINT_URL_STS: sts.url },
  });
  const lap = newLaptop();
  try {
    assert.equal((await cliLogin(t, lap)).code, 0);
    const r = await runClient(lap, ['aws-credentials']);
    assert.equal(r.code, 0, r.stderr);
    const c = JSON.parse(r.stdout);
    assert.equal(sts.sessions.length, 1);
    const s = sts.sessions[0];
    assert.equal(s.roleArn, ROLE);
    assert.equal(s.sourceIdentity, 'alice@example.com');
    assert.deepEqual(Object.keys(c).sort(), ['AccessKeyId', 'Expiration', 'SecretAccessKey', 'SessionToken', 'Version']);
    assert.equal(c.Version, 1);
    assert.equal(c.AccessKeyId, s.accessKeyId);
    assert.ok(!r.stderr.includes(c.SecretAccessKey), 'the secret only on stdout');
    const named = await runClient(lap, ['aws-credentials', '--role', 'no-such-role']);
    assert.equal(named.code, 4, named.stderr);
    assert.match(named.stderr, /answered 403 to POST \/aws\/credentials: role no-such-role is not one you may have/);
    assert.equal(named.stdout, '');
    assert.equal(sts.sessions.length, 1, 'a refused role never reaches STS');
  } finally {
    lap.close();
    await t.stop();
    await sts.close();
  }
});

test('aws-credentials: the credential_process shape, the sts shape, a role, a refusal', async () => {
  const g = await startFakeGateway({ awsCredentials: { status: 200, body: CREDS } });
  const lap = newLaptop();
  try {
    lap.writeSession(session(g));
    let r = await runClient(lap, ['aws-credentials']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    assert.deepEqual(JSON.parse(r.stdout), CREDS);
    assert.equal(g.aws.at(-1).body, '{}');
    r = await runClient(lap, ['aws-credentials', '--format', 'sts', '--role', 'bedrock-dev']);
    assert.equal(r.code, 0, r.stderr);
    const { Version, ...rest } = CREDS;
    assert.deepEqual(JSON.parse(r.stdout), { Credentials: rest });
    assert.deepEqual(JSON.parse(g.aws.at(-1).body), { role: 'bedrock-dev' });
    r = await runClient(lap, ['aws-credentials', '--format', 'yaml']);
    assert.equal(r.code, 1);
  } finally {
    lap.close();
    await g.close();
  }
  // The answer in the sts shape is read too; a refusal is exit 4.
  for (const [answer, code, re] of [
    [{ status: 200, body: { Credentials: { AccessKeyId: 'ASIAX', SecretAccessKey: 's' } } }, 0, null],
    [{ status: 403, body: { error: 'access_denied', error_description: 'not allowed role bedrock-admin' } }, 4, /answered 403 to POST \/aws\/credentials: not allowed role bedrock-admin/],
    [{ status: 200, body: { AccessKeyId: 'ASIAX' } }, 4, /without AccessKeyId and SecretAccessKey/],
  ]) {
    const g2 = await startFakeGateway({ awsCredentials: answer });
    const lap2 = newLaptop();
    try {
      lap2.writeSession(session(g2));
      const r = await runClient(lap2, ['aws-credentials']);
      assert.equal(r.code, code, r.stderr);
      if (re) assert.match(r.stderr, re);
      else assert.deepEqual(JSON.parse(r.stdout), { Version: 1, AccessKeyId: 'ASIAX', SecretAccessKey: 's' });
    } finally {
      lap2.close();
      await g2.close();
    }
  }
});
