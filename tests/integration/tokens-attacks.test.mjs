// The attack battery: forged, altered and malformed credentials are refused
// with 401 on GET /auth/validate, on POST /api/keys and, once the Bedrock
// routes exist, on POST /model/{id}/invoke (404 until then), and none of
// them changes anything in the database.
// The daemon signs with a key we hold (jwt.key_file) and also takes legacy
// HS256 tokens, so that HMAC confusion has a verifier to aim at.
import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey, sign as cryptoSign } from 'node:crypto';
import { test } from 'node:test';
import { SignJWT, exportPKCS8, exportSPKI, generateKeyPair } from 'jose';
import { runCommand, startDaemon } from './lib/daemon.mjs';
import { counts, decodeJwt, nowSec, rawJws } from './lib/tokens.mjs';

const ISS = 'https://bsp.test';
const AUD = 'bedrock-sso-proxy';
const LEGACY = 'legacy-hs256-secret-0123456789abcdef';
const b64 = (s) => Buffer.from(s).toString('base64url');

/** Every way we present a credential: both must refuse it with 401. */
async function refused(d, token, what, { header = 'Authorization' } = {}) {
  const h = header === 'Authorization' ? { Authorization: `Bearer ${token}` } : { 'X-Api-Key': token };
  const v = await d.request('/auth/validate', { headers: h });
  assert.equal(v.status, 401, `${what}: /auth/validate answered ${v.status} ${v.text().slice(0, 200)}`);
  assert.equal(v.json().error, 'invalid_token', what);
  const k = await d.request('/api/keys', {
    method: 'POST', headers: { ...h, 'Content-Type': 'application/json' }, body: '{"name":"attack"}',
  });
  assert.equal(k.status, 401, `${what}: POST /api/keys answered ${k.status} ${k.text().slice(0, 200)}`);
  assert.equal(k.json().error, 'invalid_token', what);
  // A Bedrock route, once there is one: refused in Bedrock's own shape.
  const b = await d.request('/model/anthropic.claude-test/invoke', {
    method: 'POST', headers: { ...h, 'Content-Type': 'application/json' }, body: '{}',
  });
  if (b.status !== 404) {
    assert.equal(b.status, 401, `${what}: Bedrock route answered ${b.status} ${b.text().slice(0, 200)}`);
    assert.equal(b.headers['x-amzn-errortype'], 'UnrecognizedClientException', what);
    assert.equal(typeof b.json().message, 'string', what);
  }
  return v.json().error_description;
}

async function hmac(alg, secret, claims, header) {
  return new SignJWT(claims).setProtectedHeader(header ?? { alg }).sign(
    typeof secret === 'string' ? new TextEncoder().encode(secret) : secret,
  );
}

const gen = { EdDSA: ['EdDSA', { crv: 'Ed25519' }], RS256: ['RS256', { modulusLength: 2048 }], ES256: ['ES256', {}] };

for (const alg of ['EdDSA', 'RS256']) {
  test(`attack battery (${alg} signing key, legacy HS256 on): all refused with 401, nothing written`, async () => {
    const { privateKey, publicKey } = await generateKeyPair(gen[alg][0], { ...gen[alg][1], extractable: true });
    const d = await startDaemon({
      config: (dir) => ({
        jwt: { algorithm: alg, issuer: ISS, key_file: `${dir}/k.pem`, legacy: { secret: LEGACY } },
      }),
      files: { 'k.pem': await exportPKCS8(privateKey) },
    });
    try {
      // A genuine token and API key to start from, and the public key material an attacker has.
      const good = (await runCommand(['token', 'mint', '--user', 'eve@example.com'], { dir: d.dir })).stdout.trim();
      const kr = await runCommand(['key', 'create', '--user', 'eve@example.com', '--name', 'k'], { dir: d.dir });
      assert.equal(kr.code, 0, kr.stderr);
      const apiKey = kr.stdout.trim();
      const jr = await runCommand(['key', 'create', '--user', 'eve@example.com', '--name', 'doomed'], { dir: d.dir });
      const doomed = jr.stdout.trim();
      const doomedId = JSON.parse(/^(\{.*\}) \(shown once/m.exec(jr.stderr)[1]).id;
      assert.equal((await runCommand(['key', 'revoke', doomedId], { dir: d.dir })).code, 0);
      const jwksText = (await d.request('/.well-known/jwks.json')).text();
      const jwk = JSON.parse(jwksText).keys[0];
      const kid = jwk.kid;
      const spki = await exportSPKI(publicKey);
      await new Promise((r) => setTimeout(r, 1100)); // the daemon sees the revocation
      // The genuine ones work (so refusals below are about the forgery).
      assert.equal((await d.request('/auth/validate', { headers: { Authorization: `Bearer ${good}` } })).status, 200);
      assert.equal((await d.request('/auth/validate', { headers: { 'X-Api-Key': apiKey } })).status, 200);

      const before = counts(d.dir);
      const now = nowSec();
      const claims = (over = {}) => ({
        iss: ISS, aud: AUD, sub: 'local:eve@example.com', sid: decodeJwt(good).payload.sid, jti: 'x', iat: now, nbf: now, exp: now + 600, ...over,
      });
      const ours = (c, h = {}) => new SignJWT(c).setProtectedHeader({ alg, kid, typ: 'JWT', ...h }).sign(privateKey);
      const [gh, gp, gs] = good.split('.');
      // Sign exact bytes with our key (jose only signs what it serialised itself).
      const keyObj = createPrivateKey(await exportPKCS8(privateKey));
      const signRaw = async (headerText, payloadText) => {
        const input = `${b64(headerText)}.${b64(payloadText)}`;
        const sig = cryptoSign(alg === 'EdDSA' ? null : 'sha256', Buffer.from(input), keyObj);
        return `${input}.${sig.toString('base64url')}`;
      };

      // alg none, in every spelling, with and without kid and signature
      for (const a of ['none', 'None', 'NONE', 'nOnE', '']) {
        await refused(d, rawJws(JSON.stringify({ alg: a, kid, typ: 'JWT' }), JSON.stringify(claims())), `alg "${a}" unsigned`);
        await refused(d, rawJws(JSON.stringify({ alg: a }), JSON.stringify(claims()), gs), `alg "${a}" with a signature`);
      }
      await refused(d, `${b64(JSON.stringify({ alg: 'none' }))}.${gp}.`, 'alg none over a genuine payload');

      // HMAC keyed with our public key, in every form it is published or derived
      const pubForms = {
        'JWK x': Buffer.from(jwk.x ?? jwk.n, 'base64url'),
        'JWK x text': jwk.x ?? jwk.n,
        'JWK JSON': JSON.stringify(jwk),
        'JWKS document': jwksText,
        'SPKI PEM': spki,
        'SPKI DER': createPublicKey(spki).export({ type: 'spki', format: 'der' }),
      };
      for (const [name, secret] of Object.entries(pubForms)) {
        for (const h of [{ alg: 'HS256', kid, typ: 'JWT' }, { alg: 'HS256' }, { alg: 'HS512', kid }]) {
          await refused(d, await hmac(h.alg, secret, claims(), h), `${h.alg} keyed with our ${name}, kid ${h.kid ? 'ours' : 'none'}`);
        }
      }
      // Another asymmetric algorithm under our kid
      for (const other of ['ES256', 'EdDSA', 'RS256'].filter((a) => a !== alg)) {
        const k2 = (await generateKeyPair(gen[other][0], gen[other][1])).privateKey;
        await refused(d, await new SignJWT(claims()).setProtectedHeader({ alg: other, kid }).sign(k2), `${other} under our ${alg} kid`);
      }
      // The header alg changed over our genuine signature
      const swapAlg = alg === 'EdDSA' ? 'ES256' : 'PS256';
      await refused(d, `${b64(JSON.stringify({ ...decodeJwt(good).header, alg: swapAlg }))}.${gp}.${gs}`, 'alg swapped over our signature');

      // A valid signature by a key we do not know, under an unknown kid and under ours
      const stranger = (await generateKeyPair(gen[alg][0], gen[alg][1])).privateKey;
      await refused(d, await new SignJWT(claims()).setProtectedHeader({ alg, kid: 'unknown-kid' }).sign(stranger), 'stranger key, unknown kid');
      await refused(d, await new SignJWT(claims()).setProtectedHeader({ alg, kid }).sign(stranger), 'stranger key, our kid');
      // Our own key, but a kid we never published
      await refused(d, await ours(claims(), { kid: 'unknown-kid' }), 'our key, unknown kid');

      // Claims: each signed properly with our key
      await refused(d, await ours(claims({ iss: 'https://evil.test' })), 'wrong iss');
      await refused(d, await ours(claims({ aud: 'evil' })), 'wrong aud');
      await refused(d, await ours(claims({ exp: now - 3600 })), 'expired');
      await refused(d, await ours(claims({ nbf: now + 3600 })), 'nbf in the future');

      // Signature stripped or cut
      await refused(d, `${gh}.${gp}.`, 'signature stripped');
      await refused(d, `${gh}.${gp}`, 'two parts');
      await refused(d, `${gh}.${gp}.${gs.slice(0, -4)}`, 'signature truncated');
      await refused(d, `${gh}.${gp}.${gs}.${gs}`, 'four parts');
      // Payload swapped under the old signature
      const swapped = { ...decodeJwt(good).payload, sub: 'local:admin@example.com' };
      await refused(d, `${gh}.${b64(JSON.stringify(swapped))}.${gs}`, 'payload swapped');
      const later = { ...decodeJwt(good).payload, exp: decodeJwt(good).payload.exp + 86400 };
      await refused(d, `${gh}.${b64(JSON.stringify(later))}.${gs}`, 'exp extended under the old signature');
      // Bad base64url in each part
      const std = (s) => Buffer.from(s, 'base64url').toString('base64'); // with + / =
      await refused(d, `${gh}=.${gp}.${gs}`, 'padded header');
      await refused(d, `${gh}.${gp}.${gs}==`, 'padded signature');
      await refused(d, `${gh}.${gp}.${std(gs)}`, 'signature in standard base64');
      await refused(d, `${gh}.${gp.slice(0, 10)}*${gp.slice(11)}.${gs}`, 'bad character in the payload');
      await refused(d, `${gh}.${gp} .${gs}`, 'space in the payload');
      await refused(d, `eyJ!!!.${gp}.${gs}`, 'bad header');
      await refused(d, `${gh}.${gp}x.${gs}`, 'payload of impossible length');
      // The same signature bytes spelled differently (unused low bits set in
      // the last character): a strict decoder refuses, so tokens are not malleable.
      const ALPHA = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
      const malleable = gs.slice(0, -1) + ALPHA[ALPHA.indexOf(gs.at(-1)) ^ 1];
      assert.deepEqual(Buffer.from(malleable, 'base64url'), Buffer.from(gs, 'base64url'), 'same bytes to a lax decoder');
      await refused(d, `${gh}.${gp}.${malleable}`, 'non-canonical base64url signature');
      // Not JSON objects
      await refused(d, await ours(claims()).then((t) => `${b64('[1]')}.${t.split('.')[1]}.${t.split('.')[2]}`), 'header is an array');
      await refused(d, rawJws(JSON.stringify({ alg, kid }), '"just a string"', gs), 'claims are a string');
      await refused(d, rawJws(`{"alg":"${alg}","kid":"${kid}"`, JSON.stringify(claims()), gs), 'header not JSON');
      // Too large: over the JWS limit, and a 1 MB token when the head limit lets it through
      await refused(d, `${gh}.${b64('x'.repeat(20000))}.${gs}`, '27 kB token');
      // Deeply nested claims, signed with our key
      const deep = `{"iss":"${ISS}","aud":"${AUD}","sub":"x","sid":"s","jti":"j","iat":${now},"exp":${now + 600},"n":${'['.repeat(5000)}${']'.repeat(5000)}}`;
      const deepTok = await signRaw(JSON.stringify({ alg, kid }), deep);
      const why = await refused(d, deepTok, 'deeply nested claims');
      assert.match(why, /nested too deeply/);
      // Duplicate claims (the second sub would win in a lax parser), signed with our key
      const dupPayload = JSON.stringify(claims()).replace(/}$/, ',"sub":"local:admin@example.com"}');
      await refused(d, await signRaw(JSON.stringify({ alg, kid }), dupPayload), 'duplicate sub claim');
      await refused(d, await signRaw(`{"alg":"${alg}","kid":"${kid}","kid":"other"}`, JSON.stringify(claims())), 'duplicate kid header');
      await refused(d, await signRaw(`{"alg":"HS256","alg":"${alg}","kid":"${kid}"}`, JSON.stringify(claims())), 'duplicate alg header');
      // The control: signRaw makes tokens we accept when nothing is wrong.
      const ctl = await d.request('/auth/validate', { headers: { Authorization: `Bearer ${await signRaw(JSON.stringify({ alg, kid }), JSON.stringify(claims()))}` } });
      assert.equal(ctl.status, 200, 'control token accepted');
      const ctl2 = await d.request('/auth/validate', { headers: { Authorization: `Bearer ${await ours(claims())}` } });
      assert.equal(ctl2.status, 200, 'control: jose-signed token with our key accepted');
      // Headers that point at other keys, or demand extensions
      await refused(d, await ours(claims(), { jku: 'https://evil.test/jwks.json' }), 'jku');
      await refused(d, await ours(claims(), { x5u: 'https://evil.test/cert.pem' }), 'x5u');
      await refused(d, await ours(claims(), { jwk: { ...jwk } }), 'embedded jwk');
      await refused(d, await signRaw(JSON.stringify({ alg, kid, crit: ['exp'], exp: 1 }), JSON.stringify(claims())), 'crit');
      await refused(d, await signRaw(JSON.stringify({ alg, kid: 42 }), JSON.stringify(claims())), 'kid not a string');

      // API keys: one character changed anywhere, truncated, extended, revoked
      for (const i of [4, 5, 20, apiKey.length - 1]) {
        const c = apiKey[i] === 'A' ? 'B' : 'A';
        const bad = apiKey.slice(0, i) + c + apiKey.slice(i + 1);
        await refused(d, bad, `API key with byte ${i} changed`, { header: 'X-Api-Key' });
        await refused(d, bad, `API key with byte ${i} changed (bearer)`);
      }
      await refused(d, apiKey.slice(0, -1), 'API key truncated', { header: 'X-Api-Key' });
      await refused(d, `${apiKey}A`, 'API key extended', { header: 'X-Api-Key' });
      await refused(d, `bsk_${'A'.repeat(43)}`, 'API key of the right shape, unknown', { header: 'X-Api-Key' });
      const desc = await refused(d, doomed, 'revoked API key', { header: 'X-Api-Key' });
      assert.match(desc, /revoked/);
      // A refresh token is not a bearer token.
      await refused(d, `bsr_${'A'.repeat(43)}`, 'refresh token as bearer');
      // Two different credentials in the two headers
      const both = await d.request('/auth/validate', { headers: { Authorization: `Bearer ${good}`, 'X-Api-Key': apiKey } });
      assert.equal(both.status, 401);

      assert.deepEqual(counts(d.dir), before, 'no attack wrote anything');
      // and the genuine credentials still work
      assert.equal((await d.request('/auth/validate', { headers: { Authorization: `Bearer ${good}` } })).status, 200);
    } finally {
      await d.stop();
    }
  });
}

test('a 1 MB token is refused: 401 when the head limit admits it, 431/400 at the HTTP layer otherwise', async () => {
  const d = await startDaemon({ config: { jwt: { issuer: ISS }, server: { max_header_bytes: 1048576 } } });
  try {
    const before = counts(d.dir);
    const big = `eyJhbGciOiJFZERTQSJ9.${'A'.repeat(1000000 - 40)}.AAAA`;
    const r = await d.request('/auth/validate', { headers: { Authorization: `Bearer ${big}` } });
    assert.equal(r.status, 401);
    assert.match(r.json().error_description, /too large/);
    const k = await d.request('/api/keys', { method: 'POST', headers: { Authorization: `Bearer ${big}` }, body: '{}' });
    assert.equal(k.status, 401);
    assert.deepEqual(counts(d.dir), before);
  } finally {
    await d.stop();
  }
  const d2 = await startDaemon();
  try {
    const big = `eyJhbGciOiJFZERTQSJ9.${'A'.repeat(1048576)}.AAAA`;
    let status;
    try {
      status = (await d2.request('/auth/validate', { headers: { Authorization: `Bearer ${big}` } })).status;
    } catch (e) {
      status = `connection closed (${e.code ?? e.message})`;
    }
    assert.ok([400, 413, 431].includes(status), `1 MB head refused by the HTTP layer: ${status}`);
    assert.equal((await d2.request('/health')).status, 200, 'daemon still serves');
  } finally {
    await d2.stop();
  }
});
