// Access tokens signed by AWS KMS (jwt.kms_key_id, issue 13): the daemon
// holds only the public key (GetPublicKey), each token is a KMS Sign over
// its digest, and the tokens verify with `jose` against our JWKS. A new key
// id rotates: the old public key stays in the JWKS and its tokens keep
// verifying. KMS down: sign-in and refresh answer 503, verification goes on.
// The fake KMS (lib/fake-kms.mjs) checks every request's SigV4 signature.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { startDaemon } from './lib/daemon.mjs';
import { startFakeKms } from './lib/fake-kms.mjs';
import { startFakeGithub } from './lib/fake-github.mjs';
import { fetchLogin, reloadConfig } from './lib/login.mjs';
import { decodeJwt, seedSession } from './lib/tokens.mjs';

const ISS = 'https://bsp.test';
const REGION = 'eu-central-1';
const CREDS = { accessKeyId: 'AKIDKMSTESTEXAMPLE01', secretAccessKey: 'kms/test+secret/EXAMPLEKEY0123456789' };

let kms;
before(async () => { kms = await startFakeKms({ credentials: [CREDS], region: REGION }); });
after(async () => { await kms?.close(); });

const config = (jwt, over = {}) => ({
  jwt: { issuer: ISS, ...jwt },
  aws: { region: REGION, access_key_id: CREDS.accessKeyId, secret_access_key: CREDS.secretAccessKey },
  ...over,
});
const env = () => ({ AWS_ENDPOINT_URL_KMS: kms.url, AWS_EC2_METADATA_DISABLED: 'true' });
const refresh = (d, t) => d.request('/auth/refresh', {
  method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ refresh_token: t }),
});
const validate = (d, t) => d.request('/auth/validate', { headers: { Authorization: `Bearer ${t}` } });
/** A session seeded as a login makes it, refreshed: an access token signed now. */
async function token(d) {
  const s = seedSession(d.dir);
  const r = await refresh(d, s.refresh);
  assert.equal(r.status, 200, r.text());
  return r.json().access_token;
}
const jwks = async (d) => (await d.request('/.well-known/jwks.json')).json();
async function verifyWithJose(d, t, alg) {
  const { payload, protectedHeader } = await jwtVerify(t, createLocalJWKSet(await jwks(d)), {
    issuer: ISS, audience: 'bedrock-sso-proxy', algorithms: [alg],
  });
  return { payload, protectedHeader };
}

for (const [spec, alg, jwt] of [['ECC_NIST_P256', 'ES256', {}], ['RSA_2048', 'RS256', {}], ['RSA_3072', 'PS256', { algorithm: 'PS256' }]]) {
  test(`${spec}: tokens signed by KMS Sign (digest) verify with jose against the JWKS as ${alg}`, async () => {
    const key = kms.addKey({ spec, alias: `alias/bsp-${spec.toLowerCase()}` });
    const d = await startDaemon({ config: config({ kms_key_id: key.alias, ...jwt }), env: env() });
    try {
      const signsBefore = kms.signs().length;
      const t = await token(d);
      const { payload, protectedHeader } = await verifyWithJose(d, t, alg);
      assert.equal(protectedHeader.alg, alg);
      assert.equal(payload.sub, 'local:alice');
      assert.equal((await validate(d, t)).status, 200);
      // One Sign per token, by digest, with the configured key; every call signed right.
      const signs = kms.signs().slice(signsBefore);
      assert.equal(signs.length, 1);
      assert.equal(signs[0].json.MessageType, 'DIGEST');
      assert.equal(signs[0].json.KeyId, key.alias);
      assert.equal(Buffer.from(signs[0].json.Message, 'base64').length, 32);
      assert.ok(kms.requests.every((r) => r.signatureValid === true), 'every KMS call carries a valid SigV4 signature');
      assert.equal(kms.calls('GetPublicKey').filter((r) => r.json?.KeyId === key.alias).length, 1, 'the public key is read once, at start');
      // The JWKS holds the KMS public key, named by its thumbprint; no private part anywhere.
      const k = (await jwks(d)).keys.find((x) => x.kid === protectedHeader.kid);
      assert.ok(k, 'the kid is in the JWKS');
      assert.equal(k.d, undefined);
    } finally {
      await d.stop();
    }
  });
}

test('rotation: a new jwt.kms_key_id signs new tokens; the old key stays in the JWKS and its tokens verify', async () => {
  const k1 = kms.addKey({ spec: 'ECC_NIST_P256' });
  const k2 = kms.addKey({ spec: 'ECC_NIST_P256' });
  const d = await startDaemon({ config: config({ kms_key_id: k1.arn }), env: env() });
  try {
    const t1 = await token(d);
    const kid1 = decodeJwt(t1).header.kid;
    await reloadConfig(d, config({ kms_key_id: k2.arn }));
    const t2 = await token(d);
    const kid2 = decodeJwt(t2).header.kid;
    assert.notEqual(kid1, kid2);
    const set = await jwks(d);
    assert.deepEqual(set.keys.map((x) => x.kid).sort(), [kid1, kid2].sort(), 'both public keys are published');
    await verifyWithJose(d, t1, 'ES256');
    await verifyWithJose(d, t2, 'ES256');
    assert.equal((await validate(d, t1)).status, 200, 'an old token still verifies');
    assert.equal((await validate(d, t2)).status, 200);
    assert.equal(kms.signs().at(-1).keyArn, k2.arn, 'the new key signs');
  } finally {
    await d.stop();
  }
});

test('KMS unavailable: refresh and sign-in answer 503 with a clear message; verification keeps working', async () => {
  const key = kms.addKey({ spec: 'ECC_NIST_P256' });
  const gh = await startFakeGithub();
  const d = await startDaemon({
    config: config({ kms_key_id: key.keyId }, {
      oauth: { providers: { github: gh.providerConfig() }, timeout: 3 },
      access: { allowed_email_domains: ['example.com'] },
    }),
    env: env(),
  });
  try {
    const t = await token(d);
    const s = seedSession(d.dir);
    kms.setDown(true);
    const r = await refresh(d, s.refresh);
    assert.equal(r.status, 503, r.text());
    assert.equal(r.json().error, 'temporarily_unavailable');
    assert.match(r.json().error_description, /cannot be signed.*AWS KMS/);
    const login = await fetchLogin(d, 'github');
    assert.equal(login.res.status, 503, login.text);
    assert.match(login.text, /AWS KMS/);
    // Tokens already issued still verify: verification is local.
    assert.equal((await validate(d, t)).status, 200);
    // The refresh token was not spent: it works once KMS is back.
    kms.setDown(false);
    const again = await refresh(d, s.refresh);
    assert.equal(again.status, 200, again.text());
    const login2 = await fetchLogin(d, 'github');
    assert.equal(login2.res.status, 200, login2.text);
  } finally {
    kms.setDown(false);
    await d.stop();
    await gh.close();
  }
});
