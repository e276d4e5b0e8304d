// The laptop client's trust in an https proxy (issue 12): the public key
// pin kept in the session file (login --pin sha256//..., curl's
// --pinnedpubkey form) is checked on every handshake, on top of the CA
// check: the proxy's own key or its CA's key passes, any other key is
// refused before a request is sent, with a clear message; a CA file others
// could change is not trusted at all (exit 2); a malformed pin, or a pin
// for a plain-http proxy, is a usage error.
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { chmodSync, readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { join } from 'node:path';
import { test } from 'node:test';
import { newLaptop, runClient } from './lib/client.mjs';
import { makeTestPKI } from './lib/tls.mjs';

const pinOf = (certPath) => `sha256//${createHash('sha256')
  .update(new X509Certificate(readFileSync(certPath)).publicKey.export({ type: 'spki', format: 'der' })).digest('base64')}`;

test('TLS: the pinned key is checked on every call (the proxy\'s or its CA\'s key passes, another is refused); a CA file others can change is not trusted', async () => {
  const lap = newLaptop();
  const pki = makeTestPKI(join(lap.dir, 'pki'));
  const seen = [];
  const server = createServer({ cert: readFileSync(pki.server.cert), key: readFileSync(pki.server.key) }, (req, res) => {
    seen.push(req.url);
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ valid: true, sub: 'idp:alice', email: 'alice@example.com', provider: 'idp', scopes: ['bedrock:invoke'] }));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const proxy = `https://127.0.0.1:${server.address().port}`;
  const now = Math.floor(Date.now() / 1000);
  const session = (extra) => lap.writeSession({
    version: 1, profile: 'default', proxy, ca_file: pki.ca.cert, access_token: 'eyJ.pinned.token', refresh_token: 'bsr_x',
    expires_at: now + 3600, obtained_at: now, ...extra,
  });
  try {
    // The proxy's own key, then its CA's key: the call goes through.
    for (const pin of [pinOf(pki.server.cert), pinOf(pki.ca.cert)]) {
      session({ pin });
      const n = seen.length;
      const r = await runClient(lap, ['token']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'eyJ.pinned.token\n');
      assert.deepEqual(seen.slice(n), ['/auth/validate']);
    }
    // Another key (a certificate the same CA would accept is not enough): refused in the handshake.
    session({ pin: pinOf(pki.untrusted.cert) });
    const n = seen.length;
    let r = await runClient(lap, ['status']);
    assert.equal(r.code, 4, r.stdout + r.stderr);
    assert.match(r.stdout, /proxy state: +cannot be reached/);
    r = await runClient(lap, ['aws-credentials']);
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /certificate verify failed: no key in the server's certificate chain is the pinned one/);
    assert.equal(seen.length, n, 'no request reached a server with another key');
    // A malformed pin in the file: the file is damaged.
    session({ pin: 'sha256//not-base64' });
    r = await runClient(lap, ['token']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /is damaged \(a member is missing or of the wrong type\)/);

    // A CA file that others may change is not trusted, with or without a pin.
    session({});
    chmodSync(pki.ca.cert, 0o666);
    r = await runClient(lap, ['token']);
    assert.equal(r.code, 2, r.stderr);
    assert.ok(r.stderr.includes(`the CA file ${pki.ca.cert} can be changed by other users`), r.stderr);
    assert.equal(r.stdout, '');
    chmodSync(pki.ca.cert, 0o644);
    r = await runClient(lap, ['token']);
    assert.equal(r.code, 0, r.stderr);

    // login: a pin that is not sha256//BASE64, or one for plain http, is a usage error.
    r = await runClient(lap, ['login', '--pin', 'sha1//abc', proxy]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /--pin sha1\/\/abc: want sha256\/\/ and the base64 of the SHA-256 of the proxy's public key/);
    r = await runClient(lap, ['login', '--pin', pinOf(pki.server.cert), 'http://127.0.0.1:9']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /--pin is for an https:\/\/ proxy/);
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    lap.close();
  }
});
