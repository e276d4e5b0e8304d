// A real, certified OpenID Provider on loopback for the login tests:
// `oidc-provider` (npm) behind one node:http server whose handler can be
// swapped, so the provider can be rebuilt (new clients, new signing keys)
// or stopped and restarted on the same port while the daemon keeps running.
//
//   const idp = await startFakeIdp();
//   idp.setRedirectUris([`${d.url}/auth/callback/idp`]);   // after the daemon is up
//   ... browser: log in as 'alice' (devInteractions form), consent ...
//   await idp.rotateKeys();          // new signing key; the old one is gone from the JWKS
//   await idp.down(); await idp.up(); // connection refused, then back on the same port
//   await idp.close();
//
// Accounts (login name = subject): ACCOUNTS below. Claims: email scope →
// email, email_verified; profile scope → name, groups. With the default
// conformIdTokenClaims the ID token carries only sub (and nonce, ...): the
// daemon has to read userinfo, as it must with many real IdPs.
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { exportJWK, generateKeyPair } from 'jose';
import Provider from 'oidc-provider';

// oidc-provider's start-up notices about its development defaults (memory
// adapter, devInteractions, default TTLs) are expected here: keep them out
// of the TAP stream.
for (const k of ['info', 'warn']) {
  const orig = console[k];
  console[k] = (...a) => (typeof a[0] === 'string' && a[0].startsWith('oidc-provider ') ? undefined : orig.apply(console, a));
}

export const CLIENT_ID = 'bsp-test-client';
// Characters that must be form-encoded in HTTP Basic (RFC 6749 section 2.3.1).
export const CLIENT_SECRET = 'fake:idp/secret+with&special=chars%';

export const ACCOUNTS = {
  alice: { email: 'alice@example.com', email_verified: true, name: 'Alice Example', groups: ['dev', 'bedrock-users'] },
  bob: { email: 'bob@other.test', email_verified: true, name: 'Bob Other', groups: ['dev'] },
  carol: { email: 'carol@example.com', email_verified: false, name: 'Carol Unverified', groups: [] },
  dave: { email: 'dave@example.com', email_verified: true, name: 'Dave Example', groups: [] },
  // Markup in claims: must come back escaped on our pages.
  mallory: {
    email: 'mallory@example.com', email_verified: true, name: 'Mal <b>"lory"</b> & <script>alert(1)</script>', groups: ['dev'],
  },
};

/** A fresh RS256 signing key as a private JWK with kid/alg/use. */
export async function newSigningKey(alg = 'RS256') {
  const { privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(privateKey);
  return { ...jwk, kid: `k-${randomBytes(6).toString('hex')}`, alg, use: 'sig' };
}

/**
 * Start the IdP. opts: {accounts, clientId, clientSecret, redirectUris, conformIdTokenClaims (true),
 * alg ('RS256'), applicationType ('native': loopback redirects on any port)}. Returns {url (= issuer), port, requests, jwksFetches, setRedirectUris(), rotateKeys(),
 * rebuild(), down(), up(), close(), kids()}.
 */
export async function startFakeIdp(opts = {}) {
  const state = {
    accounts: { ...ACCOUNTS, ...(opts.accounts ?? {}) },
    clientId: opts.clientId ?? CLIENT_ID,
    clientSecret: opts.clientSecret ?? CLIENT_SECRET,
    redirectUris: opts.redirectUris ?? ['http://127.0.0.1:1/placeholder'],
    keys: [await newSigningKey(opts.alg)],
    conform: opts.conformIdTokenClaims ?? true,
    applicationType: opts.applicationType,
  };
  const requests = [];
  let handler = (req, res) => { res.statusCode = 503; res.end(); };
  let server;
  const sockets = new Set();
  const fake = {
    url: null, port: 0, requests, jwksFetches: 0, provider: null,
    get keys() { return state.keys; },
    kids: () => state.keys.map((k) => k.kid),
  };

  function listen(port) {
    server = http.createServer((req, res) => {
      requests.push({ method: req.method, url: req.url, headers: req.headers, time: Date.now() });
      if (req.url.startsWith('/jwks')) fake.jwksFetches++;
      handler(req, res);
    });
    server.on('connection', (s) => {
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
      s.unref();
    });
    return new Promise((res, rej) => {
      server.once('error', rej);
      server.listen(port, '127.0.0.1', () => { server.off('error', rej); res(server.address().port); });
      // A fake a failing test forgot to close must not keep the process alive.
      server.unref();
    });
  }

  function build() {
    const p = new Provider(fake.url, {
      clients: [{
        client_id: state.clientId,
        client_secret: state.clientSecret,
        redirect_uris: state.redirectUris,
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
        // 'native': loopback redirect URIs match on any port (RFC 8252 section 7.3).
        ...(state.applicationType ? { application_type: state.applicationType } : {}),
      }],
      jwks: { keys: state.keys },
      cookies: { keys: ['fake-idp-cookie-key-0123456789abcdef'] },
      claims: {
        openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'groups'],
      },
      conformIdTokenClaims: state.conform,
      features: { devInteractions: { enabled: true } },
      findAccount: async (ctx, id) => {
        const a = state.accounts[id];
        if (!a) return undefined;
        return { accountId: id, claims: async () => ({ sub: id, ...a }) };
      },
      pkce: { required: () => true },
    });
    p.on('server_error', (ctx, err) => { fake.lastError = err; });
    fake.provider = p;
    handler = p.callback();
  }

  fake.port = await listen(0);
  fake.url = `http://127.0.0.1:${fake.port}`;
  build();

  /** The client's registered redirect URIs (rebuilds the provider; sessions survive). */
  fake.setRedirectUris = (uris) => { state.redirectUris = [].concat(uris); build(); };
  fake.setAccount = (id, claims) => { state.accounts[id] = claims; };
  /** Rotate: a new signing key; keepOld publishes the old one too (but signs with the new one). */
  fake.rotateKeys = async ({ keepOld = false } = {}) => {
    const k = await newSigningKey(opts.alg);
    state.keys = keepOld ? [k, ...state.keys] : [k];
    build();
    return k.kid;
  };
  fake.rebuild = build;
  /** Stop listening and drop every connection (the daemon sees refused / reset connections). */
  fake.down = async () => {
    for (const s of sockets) s.destroy();
    await new Promise((res) => server.close(() => res()));
  };
  /** Listen again on the same port. */
  fake.up = async () => { await listen(fake.port); };
  fake.close = async () => { if (server.listening) await fake.down(); };
  return fake;
}
