// Access tokens signed by AWS KMS (jwt.kms_key_id, issue 13): the daemon
// holds only the public key (GetPublicKey), each token is a KMS Sign over
// its digest, and the tokens verify with `jose` against our JWKS. A new key
// id rotates: the old public key stays in the JWKS and its tokens keep
// verifying. KMS down: sign-in and refresh answer 503, verification goes on.
// The fake KMS (lib/fake-kms.mjs) checks every request's SigV4 signature.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { prepareDir, runCommand, startDaemon } from './lib/daemon.mjs';
import { startFakeKms, startFakeSecretsManager } from './lib/fake-kms.mjs';
import { startFakeGithub } from './lib/fake-github.mjs';
import { fetchLogin, reloadConfig } from './lib/login.mjs';
import { newGrant, poll } from './lib/device.mjs';
import { decodeJwt, nowSec, seedSession, withDb } from './lib/tokens.mjs';
import { waitFor } from './lib/util.mjs';

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

    // A key whose public key cannot be read: the reload fails, the running key stays.
    prepareDir(d.dir, { config: { ...config({ kms_key_id: 'alias/not-there' }), server: { port: d.port } } });
    const mark = d.logMark();
    d.signal('SIGHUP');
    await d.waitForLog((e) => typeof e === 'object' && /^configuration reload/.test(e?.msg ?? ''), 10000, { from: mark });
    const res = d.logs.slice(mark).find((e) => typeof e === 'object' && /^configuration reload/.test(e?.msg ?? ''));
    assert.match(res.msg, /^configuration reload failed: jwt\.kms_key_id: cannot read the public key of KMS key alias\/not-there/);
    const t3 = await token(d);
    assert.equal(decodeJwt(t3).header.kid, kid2, 'still the running key');
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

test('device sign-in: the poll that issues the session gets a token KMS signed; KMS down: 503, the approval is kept', async () => {
  const key = kms.addKey({ spec: 'ECC_NIST_P256' });
  const gh = await startFakeGithub();
  const d = await startDaemon({
    config: config({ kms_key_id: key.keyId }, {
      oauth: { providers: { github: gh.providerConfig() }, timeout: 3 },
      access: { allowed_email_domains: ['example.com'] },
      device: { access_token_ttl: 3600 },
    }),
    env: env(),
  });
  /** A device grant approved for alice, as the verification page would. */
  const approved = async () => {
    const g = await newGrant(d);
    withDb(d.dir, (db) => db.prepare("UPDATE device_codes SET status = 'approved', user_id = 'local:alice', decided = ? "
      + "WHERE status = 'pending'").run(nowSec()));
    return g;
  };
  try {
    seedSession(d.dir); // the user row
    const g1 = await approved();
    const r1 = await poll(d, g1.device_code);
    assert.equal(r1.status, 200, r1.text());
    const { payload } = await verifyWithJose(d, r1.json().access_token, 'ES256');
    assert.equal(payload.sub, 'local:alice');
    assert.equal(payload.exp - payload.iat, 3600, 'device.access_token_ttl');
    assert.equal(kms.signs().at(-1).keyArn, key.arn);

    const g2 = await approved();
    kms.setDown(true);
    const r2 = await poll(d, g2.device_code);
    assert.equal(r2.status, 503, r2.text());
    assert.equal(r2.json().error, 'temporarily_unavailable');
    assert.match(r2.json().error_description, /AWS KMS/);
    kms.setDown(false);
    const r3 = await poll(d, g2.device_code);
    assert.equal(r3.status, 200, r3.text());
    await verifyWithJose(d, r3.json().access_token, 'ES256');
  } finally {
    kms.setDown(false);
    await d.stop();
    await gh.close();
  }
});

test('KMS misconfigured: a key that cannot sign, a refused key, an algorithm that does not fit: exit 1 naming the key', async () => {
  const sym = kms.addKey({ spec: 'SYMMETRIC_DEFAULT' });
  const ec = kms.addKey({ spec: 'ECC_NIST_P256' });
  for (const [jwt, re] of [
    [{ kms_key_id: 'alias/does-not-exist' }, /jwt\.kms_key_id: cannot read the public key of KMS key alias\/does-not-exist: client_error \(NotFoundException/],
    [{ kms_key_id: sym.keyId }, /UnsupportedOperationException/],
    [{ kms_key_id: ec.keyId, algorithm: 'RS256' }, /jwt\.algorithm is RS256 but KMS key arn:aws:kms:.* signs ES256/],
    [{ kms_key_id: ec.keyId, algorithm: 'PS256' }, /ECC_NIST_P256; access tokens need/],
  ]) {
    const r = await runCommand([], { config: config(jwt), env: env() });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, re);
  }
  let r = await runCommand(['-n'], { config: config({ algorithm: 'PS256' }), env: env() });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /PS256 needs jwt\.kms_key_id/);
  r = await runCommand(['-n'], { config: config({ kms_key_id: ec.keyId, algorithm: 'HS256', secret: 'x'.repeat(40) }), env: env() });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /jwt\.kms_key_id signs ES256, RS256 or PS256, not HS256/);
});

test('commands with jwt.kms_key_id: "token mint" gets a token KMS signed; "signing-key rotate" refuses', async () => {
  const key = kms.addKey({ spec: 'ECC_NIST_P256' });
  const d = await startDaemon({ config: config({ kms_key_id: key.keyId }), env: env() });
  try {
    const before = kms.signs().length;
    const r = await runCommand(['token', 'mint', '--user', 'dev@example.com'], { dir: d.dir, env: env() });
    assert.equal(r.code, 0, r.stderr);
    const t = r.stdout.trim();
    await verifyWithJose(d, t, 'ES256');
    assert.equal((await validate(d, t)).status, 200);
    assert.equal(kms.signs().length, before + 1, 'the command asked KMS to sign');
    const rot = await runCommand(['signing-key', 'rotate'], { dir: d.dir, env: env() });
    assert.notEqual(rot.code, 0);
    assert.match(rot.stderr, /jwt\.kms_key_id is set: rotate by configuring a new KMS key/);
    kms.setDown(true);
    const down = await runCommand(['token', 'mint', '--user', 'dev@example.com'], { dir: d.dir, env: env() });
    assert.notEqual(down.code, 0);
  } finally {
    kms.setDown(false);
    await d.stop();
  }
});

test('KMS that does not answer: the Sign call ends at jwt.kms_timeout with 503; the loop serves others meanwhile', async () => {
  const key = kms.addKey({ spec: 'ECC_NIST_P256' });
  const d = await startDaemon({ config: config({ kms_key_id: key.keyId, kms_timeout: 2 }), env: env() });
  try {
    const t = await token(d);
    const s = seedSession(d.dir);
    kms.setDown('stall');
    const pending = refresh(d, s.refresh);
    await waitFor(() => kms.calls('Sign').length > 0 && kms.calls('Sign').at(-1).status === undefined,
      { message: 'the Sign call reached the stalled KMS' });
    // While the signature is awaited, the daemon answers other requests, database ones too.
    assert.equal((await validate(d, t)).status, 200);
    const other = seedSession(d.dir);
    const out = await d.request('/auth/logout', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ refresh_token: other.refresh }),
    });
    assert.ok([200, 204].includes(out.status), `logout (a database unit) while KMS is awaited: ${out.status} ${out.text()}`);
    const r = await pending;
    assert.equal(r.status, 503, r.text());
    assert.match(r.json().error_description, /AWS KMS/);
    kms.setDown(false);
    assert.equal((await refresh(d, s.refresh)).status, 200);
  } finally {
    kms.setDown(false);
    await d.stop();
  }
});

test('beside aws.bearer_token (itself from Secrets Manager) the credential chain still signs KMS and Secrets Manager calls', async () => {
  const key = kms.addKey({ spec: 'ECC_NIST_P256' });
  const sm = await startFakeSecretsManager({ credentials: [CREDS], region: REGION });
  const arn = sm.putSecret('bsp/bedrock-api-key', { SecretString: 'ABSKbedrockapikeyfromsecretsmanager0123456789' });
  const d = await startDaemon({
    config: { jwt: { issuer: ISS, kms_key_id: key.keyId }, aws: { region: REGION, bearer_token_arn: arn } },
    env: {
      ...env(), AWS_ENDPOINT_URL_SECRETS_MANAGER: sm.url,
      AWS_ACCESS_KEY_ID: CREDS.accessKeyId, AWS_SECRET_ACCESS_KEY: CREDS.secretAccessKey,
    },
  });
  try {
    assert.equal(sm.calls('GetSecretValue').at(-1)?.signatureValid, true);
    const t = await token(d);
    await verifyWithJose(d, t, 'ES256');
    assert.equal(kms.signs().at(-1).accessKeyId, CREDS.accessKeyId, 'signed with the chain\'s credentials');
  } finally {
    await d.stop();
    await sm.close();
  }
});

test('a browser that leaves while KMS signs its sign-in: the sign-in ends when KMS answers; the daemon goes on', async () => {
  const key = kms.addKey({ spec: 'ECC_NIST_P256' });
  const gh = await startFakeGithub();
  const d = await startDaemon({
    config: config({ kms_key_id: key.keyId }, {
      oauth: { providers: { github: gh.providerConfig() }, timeout: 3 },
      access: { allowed_email_domains: ['example.com'] },
    }),
    env: env(),
  });
  const families = () => withDb(d.dir, (db) => db.prepare('SELECT count(*) AS n FROM token_families').get().n);
  try {
    kms.setDown(1500); // answers, but late
    const signs = kms.calls('Sign').length;
    const ac = new AbortController();
    const gone = fetchLogin(d, 'github', { signal: ac.signal }).catch((e) => e);
    await waitFor(() => kms.calls('Sign').length > signs, { message: 'the Sign call reached KMS' });
    ac.abort();
    assert.equal((await gone).name, 'AbortError');
    // KMS answers after the client left: the sign-in ends as one whose client left
    // during its database unit does (its answer goes nowhere); nothing is freed early.
    await waitFor(() => kms.calls('Sign').at(-1).status === 200, { timeoutMs: 10000, message: 'KMS answered' });
    await waitFor(() => families() === 1, { timeoutMs: 10000, message: 'the sign-in ended with its session' });
    kms.setDown(false);
    const r = await fetchLogin(d, 'github');
    assert.equal(r.res.status, 200, r.text);
    assert.equal(families(), 2);
  } finally {
    kms.setDown(false);
    await d.stop();
    await gh.close();
  }
});
