// Proves that lib/fake-kms.mjs behaves like AWS KMS and Secrets Manager, using the AWS
// SDK's own clients against it (no proxy involved): the fakes answer what the real
// clients parse, and refuse what AWS refuses. Run: ./run-node fake-kms.test.mjs
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createPublicKey, verify as nodeVerify, constants } from 'node:crypto';
import {
  DescribeKeyCommand, DisabledException, GetPublicKeyCommand, KMSClient, KMSInternalException,
  NotFoundException, SignCommand,
} from '@aws-sdk/client-kms';
import {
  GetSecretValueCommand, ResourceNotFoundException, SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { startFakeKms, startFakeSecretsManager } from './lib/fake-kms.mjs';

for (const k of Object.keys(process.env)) if (/^AWS_/.test(k)) delete process.env[k];

const REGION = 'eu-west-1';
const CREDS = { accessKeyId: 'AKIDFAKEKMSTEST00001', secretAccessKey: 'fake/kms+secret/EXAMPLEKEY' };
const OTHER = { accessKeyId: 'AKIDFAKEKMSTEST00001', secretAccessKey: 'not-the-right-secret' };

let kms;
let sm;
before(async () => {
  kms = await startFakeKms({ credentials: [CREDS], region: REGION });
  sm = await startFakeSecretsManager({ credentials: [CREDS], region: REGION });
});
after(async () => { await kms?.close(); await sm?.close(); });

const opts = (f, credentials = CREDS) => ({
  endpoint: f.url, region: REGION, credentials, requestHandler: new NodeHttpHandler(), maxAttempts: 1,
});
const kmsClient = (c) => new KMSClient(opts(kms, c));
const smClient = (c) => new SecretsManagerClient(opts(sm, c));

async function rejects(promise) {
  try { await promise; } catch (e) { return e; }
  assert.fail('expected a rejection');
}

test('GetPublicKey: the SDK parses the DER public key, spec and algorithms; by id, ARN, alias', async () => {
  const k = kms.addKey({ spec: 'ECC_NIST_P256', alias: 'alias/fake-kms-ec' });
  for (const id of [k.keyId, k.arn, k.alias, k.aliasArn]) {
    const out = await kmsClient().send(new GetPublicKeyCommand({ KeyId: id }));
    assert.equal(out.KeyId, k.arn);
    assert.equal(out.KeySpec, 'ECC_NIST_P256');
    assert.equal(out.KeyUsage, 'SIGN_VERIFY');
    assert.deepEqual(out.SigningAlgorithms, ['ECDSA_SHA_256']);
    assert.ok(out.PublicKey instanceof Uint8Array);
    const pub = createPublicKey({ key: Buffer.from(out.PublicKey), format: 'der', type: 'spki' });
    assert.deepEqual(pub.export({ format: 'jwk' }), k.publicKey.export({ format: 'jwk' }));
  }
  const last = kms.requests.at(-1);
  assert.equal(last.signatureValid, true);
  assert.equal(last.target, 'TrentService.GetPublicKey');
  assert.match(last.headers['content-type'], /^application\/x-amz-json-1\.1/);
});

test('Sign, MessageType DIGEST and RAW: ECDSA DER, PKCS#1 v1.5 and PSS verify with the public key', async () => {
  const ec = kms.addKey({ spec: 'ECC_NIST_P256' });
  const rsa = kms.addKey({ spec: 'RSA_2048' });
  const msg = Buffer.from('header.payload');
  const digest = createHash('sha256').update(msg).digest();
  const cases = [
    [ec, 'ECDSA_SHA_256', {}],
    [rsa, 'RSASSA_PKCS1_V1_5_SHA_256', {}],
    [rsa, 'RSASSA_PSS_SHA_256', { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }],
  ];
  for (const [k, alg, pad] of cases) {
    for (const [type, Message] of [['DIGEST', digest], ['RAW', msg]]) {
      const out = await kmsClient().send(new SignCommand({ KeyId: k.keyId, Message, MessageType: type, SigningAlgorithm: alg }));
      assert.equal(out.KeyId, k.arn);
      assert.equal(out.SigningAlgorithm, alg);
      assert.ok(out.Signature instanceof Uint8Array);
      assert.ok(nodeVerify('sha256', msg, { key: k.publicKey, ...pad }, Buffer.from(out.Signature)), `${alg} ${type}`);
    }
  }
});

test('DescribeKey: the key metadata parses', async () => {
  const k = kms.addKey({ spec: 'RSA_3072' });
  const out = await kmsClient().send(new DescribeKeyCommand({ KeyId: k.arn }));
  assert.equal(out.KeyMetadata.KeySpec, 'RSA_3072');
  assert.equal(out.KeyMetadata.Enabled, true);
  assert.ok(out.KeyMetadata.CreationDate instanceof Date);
});

test('KMS errors are the SDK\'s own exception classes; a bad signature is refused', async () => {
  const e1 = await rejects(kmsClient().send(new GetPublicKeyCommand({ KeyId: 'alias/none' })));
  assert.ok(e1 instanceof NotFoundException, e1.name);
  const k = kms.addKey({ spec: 'ECC_NIST_P256' });
  kms.disable(k);
  const e2 = await rejects(kmsClient().send(new SignCommand({ KeyId: k.keyId, Message: Buffer.alloc(32), MessageType: 'DIGEST', SigningAlgorithm: 'ECDSA_SHA_256' })));
  assert.ok(e2 instanceof DisabledException, e2.name);
  const e3 = await rejects(kmsClient(OTHER).send(new GetPublicKeyCommand({ KeyId: 'alias/fake-kms-ec' })));
  assert.equal(e3.name, 'InvalidSignatureException');
  assert.equal(kms.requests.at(-1).signatureValid, false);
  kms.setDown(true);
  try {
    const e4 = await rejects(kmsClient().send(new GetPublicKeyCommand({ KeyId: 'alias/fake-kms-ec' })));
    assert.ok(e4 instanceof KMSInternalException, e4.name);
    assert.equal(e4.$metadata.httpStatusCode, 500);
  } finally {
    kms.setDown(false);
  }
});

test('GetSecretValue: SecretString, SecretBinary, a new version, by name or ARN; errors', async () => {
  const arn = sm.putSecret('fake/idp', { SecretString: JSON.stringify({ client_secret: 'one' }) });
  assert.match(arn, /^arn:aws:secretsmanager:eu-west-1:\d{12}:secret:fake\/idp-[A-Za-z0-9]{6}$/);
  let out = await smClient().send(new GetSecretValueCommand({ SecretId: arn }));
  assert.equal(out.ARN, arn);
  assert.equal(out.Name, 'fake/idp');
  assert.deepEqual(JSON.parse(out.SecretString), { client_secret: 'one' });
  assert.deepEqual(out.VersionStages, ['AWSCURRENT']);
  assert.ok(out.CreatedDate instanceof Date);
  sm.putSecret('fake/idp', { SecretString: 'two' });
  out = await smClient().send(new GetSecretValueCommand({ SecretId: 'fake/idp' }));
  assert.equal(out.SecretString, 'two');
  sm.putSecret('fake/bin', { SecretBinary: Buffer.from([1, 2, 3]) });
  out = await smClient().send(new GetSecretValueCommand({ SecretId: 'fake/bin' }));
  assert.deepEqual([...out.SecretBinary], [1, 2, 3]);
  assert.equal(out.SecretString, undefined);
  const last = sm.requests.at(-1);
  assert.equal(last.signatureValid, true);
  assert.equal(last.target, 'secretsmanager.GetSecretValue');
  const e1 = await rejects(smClient().send(new GetSecretValueCommand({ SecretId: 'fake/none' })));
  assert.ok(e1 instanceof ResourceNotFoundException, e1.name);
  sm.deny('fake/idp');
  const e2 = await rejects(smClient().send(new GetSecretValueCommand({ SecretId: arn })));
  assert.equal(e2.name, 'AccessDeniedException');
  sm.deny('fake/idp', false);
  const e3 = await rejects(smClient(OTHER).send(new GetSecretValueCommand({ SecretId: arn })));
  assert.equal(e3.name, 'InvalidSignatureException');
});
