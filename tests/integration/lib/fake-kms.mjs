// Fake AWS KMS and Secrets Manager on 127.0.0.1 ephemeral ports (AWS JSON 1.1:
// POST /, Content-Type application/x-amz-json-1.1, X-Amz-Target names the operation).
//
//   const kms = await startFakeKms({ credentials: [creds], region: 'us-east-1' });
//   const ec = kms.addKey({ spec: 'ECC_NIST_P256', alias: 'alias/bsp-jwt' });   // key pair made by node:crypto
//   const rsa = kms.addKey({ spec: 'RSA_2048' });
//   kms.setDown(true)   // every call answers 500 KMSInternalException (or setDown('stall'): no answer)
//   kms.requests        // [{target, json, status, signatureValid, accessKeyId, ...}]
//
//   const sm = await startFakeSecretsManager({ credentials: [creds], region: 'us-east-1' });
//   const arn = sm.putSecret('bsp/idp', { SecretString: JSON.stringify({ client_secret: 'x' }) });
//   sm.putSecret('bsp/idp', { SecretString: '...' })   // a new version of the same secret
//
// Operations: KMS GetPublicKey, Sign (MessageType DIGEST or RAW; ECDSA_SHA_256,
// RSASSA_PKCS1_V1_5_SHA_256, RSASSA_PSS_SHA_256), DescribeKey; Secrets Manager
// GetSecretValue. Key ids: the id, its ARN, an alias or alias ARN. Every request's SigV4
// signature is checked with the AWS SDK's own signer (verifySigV4 of fake-bedrock.mjs,
// services "kms" and "secretsmanager"); a bad one is refused as AWS does (400
// IncompleteSignature / InvalidSignatureException / UnrecognizedClientException).
// tests/integration/fake-kms.test.mjs checks the answers with @aws-sdk/client-kms and
// @aws-sdk/client-secrets-manager: what the fake says is what the real clients parse.
import {
  constants, createHash, createPrivateKey, generateKeyPairSync, privateEncrypt, randomBytes,
  randomUUID, sign as nodeSign,
} from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import { verifySigV4 } from './fake-bedrock.mjs';
import { readAll } from './util.mjs';

const ACCOUNT = '111122223333';

// ------------------------------------------------------------ raw signing of a digest

// P-256 (SEC 2 / FIPS 186-4): node:crypto has no "sign this digest" for ECDSA, so the
// fake does the arithmetic itself with the private scalar of a node:crypto key.
const P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
const N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const A = P - 3n;
const G = [0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296n,
  0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5n];
const mod = (a, m) => ((a % m) + m) % m;
function inv(a, m) {
  let [r0, r1, s0, s1] = [mod(a, m), m, 1n, 0n];
  while (r1) { const q = r0 / r1; [r0, r1] = [r1, r0 - q * r1]; [s0, s1] = [s1, s0 - q * s1]; }
  return mod(s0, m);
}
function add(p, q) {
  if (!p) return q;
  if (!q) return p;
  if (p[0] === q[0] && mod(p[1] + q[1], P) === 0n) return null;
  const l = p[0] === q[0] && p[1] === q[1]
    ? mod((3n * p[0] * p[0] + A) * inv(2n * p[1], P), P)
    : mod((q[1] - p[1]) * inv(q[0] - p[0], P), P);
  const x = mod(l * l - p[0] - q[0], P);
  return [x, mod(l * (p[0] - x) - p[1], P)];
}
function mul(k, p) {
  let r = null;
  for (let q = p; k > 0n; k >>= 1n, q = add(q, q)) if (k & 1n) r = add(r, q);
  return r;
}
const big = (buf) => BigInt(`0x${Buffer.from(buf).toString('hex') || '0'}`);
const derInt = (v) => {
  let h = v.toString(16);
  if (h.length % 2) h = `0${h}`;
  let b = Buffer.from(h, 'hex');
  if (b[0] & 0x80) b = Buffer.concat([Buffer.from([0]), b]);
  return Buffer.concat([Buffer.from([0x02, b.length]), b]);
};

/** ECDSA P-256 over a 32-byte digest: the DER signature KMS answers. */
function ecdsaSignDigest(privateKey, digest) {
  const d = big(Buffer.from(privateKey.export({ format: 'jwk' }).d, 'base64url'));
  const e = big(digest);
  for (;;) {
    const k = mod(big(randomBytes(40)), N - 1n) + 1n;
    const r = mod(mul(k, G)[0], N);
    if (r === 0n) continue;
    let s = mod(inv(k, N) * (e + r * d), N);
    if (s === 0n) continue;
    if (s > N / 2n) s = N - s;
    const body = Buffer.concat([derInt(r), derInt(s)]);
    return Buffer.concat([Buffer.from([0x30, body.length]), body]);
  }
}

const SHA256_DIGEST_INFO = Buffer.from('3031300d060960864801650304020105000420', 'hex');

function mgf1(seed, len) {
  const out = [];
  for (let i = 0; Buffer.concat(out).length < len; i++) {
    const c = Buffer.alloc(4);
    c.writeUInt32BE(i);
    out.push(createHash('sha256').update(seed).update(c).digest());
  }
  return Buffer.concat(out).subarray(0, len);
}

/** RSASSA-PSS (SHA-256, MGF1-SHA-256, salt 32) over a digest (RFC 8017 9.1.1). */
function pssSignDigest(privateKey, digest) {
  const modBits = privateKey.asymmetricKeyDetails.modulusLength;
  const emLen = Math.ceil((modBits - 1) / 8);
  const salt = randomBytes(32);
  const h = createHash('sha256').update(Buffer.alloc(8)).update(digest).update(salt).digest();
  const db = Buffer.concat([Buffer.alloc(emLen - 32 - 32 - 2), Buffer.from([1]), salt]);
  const masked = Buffer.from(db.map((b, i) => b ^ mgf1(h, db.length)[i]));
  masked[0] &= 0xff >> (8 * emLen - (modBits - 1));
  const em = Buffer.concat([masked, h, Buffer.from([0xbc])]);
  const padded = Buffer.concat([Buffer.alloc(modBits / 8 - em.length), em]);
  return privateEncrypt({ key: privateKey, padding: constants.RSA_NO_PADDING }, padded);
}

const SPECS = {
  ECC_NIST_P256: { algs: ['ECDSA_SHA_256'], make: () => generateKeyPairSync('ec', { namedCurve: 'P-256' }) },
  ECC_NIST_P384: { algs: ['ECDSA_SHA_384'], make: () => generateKeyPairSync('ec', { namedCurve: 'P-384' }) },
  RSA_2048: { algs: ['RSASSA_PKCS1_V1_5_SHA_256', 'RSASSA_PSS_SHA_256'], make: () => generateKeyPairSync('rsa', { modulusLength: 2048 }) },
  RSA_3072: { algs: ['RSASSA_PKCS1_V1_5_SHA_256', 'RSASSA_PSS_SHA_256'], make: () => generateKeyPairSync('rsa', { modulusLength: 3072 }) },
  SYMMETRIC_DEFAULT: { algs: [], make: () => ({}) },
};

function signWith(key, alg, message, type) {
  if (type === 'RAW') {
    if (alg === 'ECDSA_SHA_256') return nodeSign('sha256', message, key.privateKey);
    if (alg === 'RSASSA_PKCS1_V1_5_SHA_256') return nodeSign('sha256', message, key.privateKey);
    if (alg === 'RSASSA_PSS_SHA_256') {
      return nodeSign('sha256', message, { key: key.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 });
    }
  }
  if (alg === 'ECDSA_SHA_256') return ecdsaSignDigest(key.privateKey, message);
  if (alg === 'RSASSA_PKCS1_V1_5_SHA_256') {
    return privateEncrypt({ key: key.privateKey, padding: constants.RSA_PKCS1_PADDING },
      Buffer.concat([SHA256_DIGEST_INFO, message]));
  }
  if (alg === 'RSASSA_PSS_SHA_256') return pssSignDigest(key.privateKey, message);
  throw new Error(`cannot sign with ${alg}`);
}

// ------------------------------------------------------------ the JSON 1.1 server

/**
 * One loopback server for a JSON 1.1 service: the target prefix ("TrentService."),
 * the SigV4 service name, handlers {Operation: (json, rec) → {status?, body} | error}.
 */
async function startJsonService({ name, prefix, service, credentials, region, handlers }) {
  const requests = [];
  let down = false;
  const sockets = new Set();
  const server = http.createServer(async (req, res) => {
    const body = await readAll(req);
    const target = req.headers['x-amz-target'] ?? '';
    const rec = {
      method: req.method, path: req.url, headers: { ...req.headers }, target,
      operation: target.startsWith(prefix) ? target.slice(prefix.length) : undefined,
      body: body.toString('utf8'), time: Date.now(),
    };
    requests.push(rec);
    const send = (status, obj, errType) => {
      rec.status = status;
      rec.answer = obj;
      const payload = JSON.stringify(obj);
      res.writeHead(status, {
        'Content-Type': 'application/x-amz-json-1.1',
        'Content-Length': Buffer.byteLength(payload),
        'x-amzn-RequestId': randomUUID(),
        ...(errType ? { 'x-amzn-ErrorType': `${errType}:` } : {}),
      });
      res.end(payload);
    };
    const fail = (status, type, message) => send(status, { __type: type, message }, type);
    if (down === 'stall') return; // never answers: the client's timeout ends it
    if (typeof down === 'number') await new Promise((r) => setTimeout(r, down)); // answers late
    else if (down) return fail(500, service === 'kms' ? 'KMSInternalException' : 'InternalServiceError', 'We encountered an internal error. Please try again.');
    if (credentials) {
      const v = await verifySigV4({ method: req.method, rawPath: req.url, headers: req.headersDistinct, body },
        { credentials: [].concat(credentials), region, service });
      rec.signatureValid = v.ok;
      rec.accessKeyId = v.accessKeyId;
      if (!v.ok) return fail(400, v.type, v.message);
    }
    if (req.method !== 'POST' || req.url !== '/') return fail(404, 'UnknownOperationException', '');
    const ct = req.headers['content-type'] ?? '';
    if (!ct.startsWith('application/x-amz-json-1.1')) return fail(400, 'SerializationException', `Unexpected content type ${ct}`);
    const h = handlers[rec.operation];
    if (!h) return fail(400, 'UnknownOperationException', '');
    let json;
    try { json = JSON.parse(rec.body || '{}'); } catch { return fail(400, 'SerializationException', 'Start of structure or map found where not expected.'); }
    rec.json = json;
    try {
      const out = h(json, rec);
      if (out.error) return fail(out.status ?? 400, out.error, out.message ?? '');
      return send(200, out);
    } catch (e) {
      return fail(500, 'InternalFailure', String(e?.message ?? e));
    }
  });
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  server.keepAliveTimeout = 2000;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  return {
    name,
    port,
    url: `http://127.0.0.1:${port}`,
    requests,
    /** true: every call answers 500; 'stall': no call is answered; a number: answers
     *  that many ms late; false: back. */
    setDown(v) { down = v; },
    /** The requests for one operation ("Sign", "GetSecretValue", ...). */
    calls(op) { return requests.filter((r) => r.operation === op); },
    async close() {
      for (const s of sockets) s.destroy();
      server.closeAllConnections?.();
      await new Promise((r) => server.close(r));
    },
  };
}

/**
 * Fake KMS. addKey({spec, alias?, enabled?}) makes a key pair (node:crypto) and returns
 * {keyId, arn, alias, aliasArn, spec, publicKey, privateKey}.
 */
export async function startFakeKms({ credentials, region = 'us-east-1' } = {}) {
  const keys = new Map();
  const aliases = new Map();
  const find = (id) => {
    if (typeof id !== 'string' || !id) return undefined;
    let m = /^arn:aws:kms:([^:]+):(\d+):(key|alias)\/(.+)$/.exec(id);
    if (m) {
      if (m[1] !== region || m[2] !== ACCOUNT) return undefined;
      return m[3] === 'key' ? keys.get(m[4]) : keys.get(aliases.get(`alias/${m[4]}`));
    }
    if (id.startsWith('alias/')) return keys.get(aliases.get(id));
    return keys.get(id);
  };
  const notFound = (id) => ({ error: 'NotFoundException', message: `Key '${id}' does not exist` });
  const usable = (k, id) => {
    if (!k) return notFound(id);
    if (!k.enabled) return { error: 'DisabledException', message: `${k.arn} is disabled.` };
    if (k.spec === 'SYMMETRIC_DEFAULT') return { error: 'UnsupportedOperationException', message: `${k.arn} key usage is ENCRYPT_DECRYPT which is not valid for this operation.` };
    return undefined;
  };
  const meta = (k) => ({
    AWSAccountId: ACCOUNT, KeyId: k.keyId, Arn: k.arn, CreationDate: k.created / 1000,
    Enabled: k.enabled, Description: '', KeyUsage: k.spec === 'SYMMETRIC_DEFAULT' ? 'ENCRYPT_DECRYPT' : 'SIGN_VERIFY',
    KeyState: k.enabled ? 'Enabled' : 'Disabled', Origin: 'AWS_KMS', KeyManager: 'CUSTOMER',
    CustomerMasterKeySpec: k.spec, KeySpec: k.spec, SigningAlgorithms: SPECS[k.spec].algs, MultiRegion: false,
  });
  const svc = await startJsonService({
    name: 'kms', prefix: 'TrentService.', service: 'kms', credentials, region,
    handlers: {
      DescribeKey(j) {
        const k = find(j.KeyId);
        return k ? { KeyMetadata: meta(k) } : notFound(j.KeyId);
      },
      GetPublicKey(j) {
        const k = find(j.KeyId);
        const bad = usable(k, j.KeyId);
        if (bad) return bad;
        return {
          KeyId: k.arn, PublicKey: k.publicKey.export({ format: 'der', type: 'spki' }).toString('base64'),
          CustomerMasterKeySpec: k.spec, KeySpec: k.spec, KeyUsage: 'SIGN_VERIFY', SigningAlgorithms: SPECS[k.spec].algs,
        };
      },
      Sign(j, rec) {
        const k = find(j.KeyId);
        const bad = usable(k, j.KeyId);
        if (bad) return bad;
        const type = j.MessageType ?? 'RAW';
        if (!SPECS[k.spec].algs.includes(j.SigningAlgorithm)) {
          return { error: 'InvalidKeyUsageException', message: `Algorithm ${j.SigningAlgorithm} is incompatible with key spec ${k.spec}.` };
        }
        if (typeof j.Message !== 'string') return { error: 'ValidationException', message: "1 validation error detected: Value null at 'message' failed to satisfy constraint: Member must not be null" };
        const msg = Buffer.from(j.Message, 'base64');
        if (type === 'DIGEST' && msg.length !== 32) return { error: 'ValidationException', message: 'Digest is invalid length for algorithm ECDSA_SHA_256.' };
        rec.keyArn = k.arn;
        return { KeyId: k.arn, Signature: signWith(k, j.SigningAlgorithm, msg, type).toString('base64'), SigningAlgorithm: j.SigningAlgorithm };
      },
    },
  });
  return {
    ...svc,
    region,
    addKey({ spec = 'ECC_NIST_P256', alias, enabled = true } = {}) {
      const keyId = randomUUID();
      const { publicKey, privateKey } = SPECS[spec].make();
      const k = {
        keyId, arn: `arn:aws:kms:${region}:${ACCOUNT}:key/${keyId}`, spec, enabled, publicKey, privateKey,
        created: Date.now(), alias, aliasArn: alias ? `arn:aws:kms:${region}:${ACCOUNT}:${alias}` : undefined,
      };
      keys.set(keyId, k);
      if (alias) aliases.set(alias, keyId);
      return k;
    },
    /** Point an alias at another key (AWS UpdateAlias). */
    setAlias(alias, key) { aliases.set(alias, key.keyId); },
    disable(key) { key.enabled = false; },
    signs() { return svc.calls('Sign').filter((r) => r.status === 200); },
  };
}

/**
 * Fake Secrets Manager. putSecret(name, {SecretString} | {SecretBinary: Buffer}) makes the
 * secret or a new current version of it and returns its ARN (the name plus AWS's six
 * random characters).
 */
export async function startFakeSecretsManager({ credentials, region = 'us-east-1' } = {}) {
  const secrets = new Map();
  const find = (id) => {
    if (typeof id !== 'string' || !id) return undefined;
    for (const s of secrets.values()) {
      if (s.arn === id || s.name === id) return s;
      // An ARN without the random suffix names it too (partial ARN).
      if (id === s.arn.slice(0, -7)) return s;
    }
    return undefined;
  };
  const svc = await startJsonService({
    name: 'secretsmanager', prefix: 'secretsmanager.', service: 'secretsmanager', credentials, region,
    handlers: {
      GetSecretValue(j) {
        const s = find(j.SecretId);
        if (!s) return { error: 'ResourceNotFoundException', message: "Secrets Manager can't find the specified secret." };
        if (s.denied) return { error: 'AccessDeniedException', message: `User is not authorized to perform: secretsmanager:GetSecretValue on resource: ${s.arn}` };
        const v = s.versions[s.versions.length - 1];
        return {
          ARN: s.arn, Name: s.name, VersionId: v.id, VersionStages: ['AWSCURRENT'], CreatedDate: v.created / 1000,
          ...(v.SecretString !== undefined ? { SecretString: v.SecretString } : {}),
          ...(v.SecretBinary !== undefined ? { SecretBinary: Buffer.from(v.SecretBinary).toString('base64') } : {}),
        };
      },
    },
  });
  return {
    ...svc,
    region,
    putSecret(name, value) {
      let s = secrets.get(name);
      if (!s) {
        const suffix = randomBytes(6).toString('base64').replace(/[^A-Za-z0-9]/g, 'x').slice(0, 6);
        s = { name, arn: `arn:aws:secretsmanager:${region}:${ACCOUNT}:secret:${name}-${suffix}`, versions: [] };
        secrets.set(name, s);
      }
      s.versions.push({ id: randomUUID(), created: Date.now(), ...value });
      return s.arn;
    },
    /** AccessDeniedException for this secret from now on (or not). */
    deny(name, v = true) { secrets.get(name).denied = v; },
    remove(name) { secrets.delete(name); },
  };
}
