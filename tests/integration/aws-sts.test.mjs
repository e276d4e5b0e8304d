// The fake STS AssumeRole (lib/fake-sts.mjs) checked against the AWS SDK's own
// STS client (@aws-sdk/client-sts): the SDK signs what the fake verifies, the fake
// answers what the SDK parses (credentials, source identity, errors), and the fake
// refuses what real STS refuses (a wrong key, a bad signature, bad parameters).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AssumeRoleCommand, STSClient } from '@aws-sdk/client-sts';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { startFakeStsAssume } from './lib/fake-sts.mjs';

for (const k of Object.keys(process.env)) if (/^AWS_/.test(k)) delete process.env[k];

const BASE = { accessKeyId: 'AKIDSTSBASEEXAMPLE01', secretAccessKey: 'sts/base+secret/EXAMPLEKEY0123456789' };
const ROLE = 'arn:aws:iam::123456789012:role/bsp-users';
const client = (url, credentials = BASE) => new STSClient({
  endpoint: url, region: 'us-east-1', credentials, requestHandler: new NodeHttpHandler(), maxAttempts: 1,
});

test('fake STS: the SDK signs what it verifies and parses what it answers', async () => {
  const sts = await startFakeStsAssume({ credentials: [BASE] });
  try {
    const out = await client(sts.url).send(new AssumeRoleCommand({
      RoleArn: ROLE, RoleSessionName: 'alice@example.com', SourceIdentity: 'alice@example.com', DurationSeconds: 900,
      Tags: [{ Key: 'user', Value: 'local:alice' }, { Key: 'groups', Value: 'dev:ops' }],
    }));
    const s = sts.sessions.at(-1);
    assert.equal(sts.requests.at(-1).signatureValid, true);
    assert.equal(s.signedWith, BASE.accessKeyId);
    assert.deepEqual(s.tags, { user: 'local:alice', groups: 'dev:ops' });
    assert.equal(s.sourceIdentity, 'alice@example.com');
    assert.equal(s.duration, 900);
    assert.equal(out.Credentials.AccessKeyId, s.creds.accessKeyId);
    assert.equal(out.Credentials.SecretAccessKey, s.creds.secretAccessKey);
    assert.equal(out.Credentials.SessionToken, s.creds.sessionToken);
    assert.equal(out.Credentials.Expiration.toISOString().replace(/\.\d+Z$/, 'Z'), s.creds.expiration);
    assert.equal(out.SourceIdentity, 'alice@example.com');
    assert.equal(out.AssumedRoleUser.Arn, 'arn:aws:sts::123456789012:assumed-role/bsp-users/alice@example.com');

    // Errors: the SDK reads our ErrorResponse as its named exception.
    sts.setError({ code: 'AccessDenied', message: 'User is not authorized to perform: sts:TagSession', status: 403 });
    await assert.rejects(client(sts.url).send(new AssumeRoleCommand({ RoleArn: ROLE, RoleSessionName: 'bob' })),
      (e) => e.name === 'AccessDenied' && /sts:TagSession/.test(e.message) && e.$metadata.httpStatusCode === 403);
    sts.setError(null);
    sts.setStatus(503);
    await assert.rejects(client(sts.url).send(new AssumeRoleCommand({ RoleArn: ROLE, RoleSessionName: 'bob' })),
      (e) => e.$metadata.httpStatusCode === 503 && e.$fault === 'server');
    sts.setStatus(0);

    // The oracle is not blind: an unknown key, a wrong secret, bad parameters.
    await assert.rejects(client(sts.url, { accessKeyId: 'AKIDUNKNOWN000000000', secretAccessKey: 'x' })
      .send(new AssumeRoleCommand({ RoleArn: ROLE, RoleSessionName: 'bob' })), (e) => e.name === 'InvalidClientTokenId');
    await assert.rejects(client(sts.url, { ...BASE, secretAccessKey: 'wrong' })
      .send(new AssumeRoleCommand({ RoleArn: ROLE, RoleSessionName: 'bob' })), (e) => e.name === 'SignatureDoesNotMatch');
    await assert.rejects(client(sts.url).send(new AssumeRoleCommand({ RoleArn: ROLE, RoleSessionName: 'a b' })),
      (e) => e.name === 'ValidationError');
    await assert.rejects(client(sts.url).send(new AssumeRoleCommand({
      RoleArn: ROLE, RoleSessionName: 'bob', Tags: [{ Key: 'user', Value: 'a,b' }],
    })), (e) => e.name === 'ValidationError');
    assert.equal(sts.sessions.length, 1);
  } finally {
    await sts.close();
  }
});
