// A hand-rolled OpenID provider for the cases a certified one will not
// produce: ID tokens with the wrong nonce, aud or iss, signed by a key it
// does not publish, endpoints that are slow, down or answer garbage. Built
// on node:http and `jose` (signing). Its authorize endpoint logs nobody in:
// it redirects straight back with a code, so flows can be driven with
// fetch(). Every knob lives in fake.next and stays until changed.
//
//   const op = await startFakeOidc();                  // issuer op.issuer
//   op.next.claims = { nonce: 'wrong' };               // the next ID tokens
//   op.next.signWith = 'unpublished' | 'hs256' | 'none'; // a key not in the JWKS, alg confusion
//   op.next.token = 'slow' | 'garbage' | 'html' | 'reset' | 'no-id-token' | 'error';
//   op.next.jwks = 'slow' | 'garbage';
//   const release = op.holdJwks();                     // JWKS answers wait until release()
//   op.next.idTokenWithoutProfile = true;              // only sub: userinfo must be read
//   op.next.userinfo = {...}; op.next.userinfoStatus = 500;
//   await op.rotate();                                 // new signing key
//   op.jwksFetches, op.discoFetches, op.tokenRequests  // counters
//
// Entra shape (entra: true): discovery under /{tenant}/v2.0 whose issuer for
// organizations/common is the template https://HOST/{tenantid}/v2.0; ID tokens
// carry tid and iss https://HOST/<tid>/v2.0.
import http from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';

export const OP_CLIENT_ID = 'bad-op-client';
export const OP_CLIENT_SECRET = 'bad-op-secret';

const b64u = (b) => Buffer.from(b).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);

async function newKey(alg) {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const kid = `bad-${randomBytes(5).toString('hex')}`;
  const pub = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { kid, alg, privateKey, pub };
}

function readBody(req) {
  return new Promise((res) => {
    const parts = [];
    req.on('data', (c) => parts.push(c));
    req.on('end', () => res(Buffer.concat(parts).toString('utf8')));
  });
}

function json(res, status, obj, headers = {}) {
  const body = JSON.stringify(obj);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

/**
 * opts: {clientId, clientSecret, alg ('RS256'), path (issuer path, ''), entra (false), tenant (a tid),
 *        user (claims of who logs in), port}
 */
export async function startFakeOidc(opts = {}) {
  const alg = opts.alg ?? 'RS256';
  const fake = {
    clientId: opts.clientId ?? OP_CLIENT_ID,
    clientSecret: opts.clientSecret ?? OP_CLIENT_SECRET,
    entra: Boolean(opts.entra),
    tenant: opts.tenant ?? '11111111-2222-3333-4444-555555555555',
    user: opts.user ?? {
      sub: 'op-user-1', email: 'olivia@example.com', email_verified: true, name: 'Olivia Op', groups: ['dev'],
    },
    next: {},
    keys: [await newKey(alg)],
    unpublished: await newKey(alg),
    jwksFetches: 0, discoFetches: 0, tokenRequests: [], userinfoRequests: [], authorizeRequests: [],
    codes: new Map(),
    requests: [],
  };
  const path = opts.path ?? '';
  const sockets = new Set();
  let server;

  /** The issuer as the discovery document says it (template for Entra multi-tenant). */
  const issuerOf = (seg) => {
    if (!fake.entra) return `${fake.url}${path}`;
    if (['organizations', 'common', 'consumers'].includes(seg)) return `${fake.url}/{tenantid}/v2.0`;
    // A tenant named by one of its domains answers with its tenant id.
    return `${fake.url}/${/^[0-9a-f-]{36}$/.test(seg) ? seg : fake.tenant}/v2.0`;
  };
  /** The iss an ID token of this IdP carries. */
  fake.tokenIssuer = (tid = fake.tenant) => (fake.entra ? `${fake.url}/${tid}/v2.0` : `${fake.url}${path}`);

  /** Sign claims with the current key (or key), header extras merged. */
  fake.sign = async (claims, { key = fake.keys[0], header = {} } = {}) => {
    const c = { ...claims };
    for (const k of Object.keys(c)) if (c[k] === undefined) delete c[k];
    return new SignJWT(c).setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT', ...header }).sign(key.privateKey);
  };
  /** Hold every JWKS answer (counted on arrival) until the returned function is called. */
  fake.holdJwks = () => {
    let release;
    fake.jwksHeld = new Promise((r) => { release = r; });
    return () => { fake.jwksHeld = null; release(); };
  };
  /** New current signing key; keepOld keeps publishing the old one. Returns the new kid. */
  fake.rotate = async ({ keepOld = false } = {}) => {
    const k = await newKey(alg);
    fake.keys = keepOld ? [k, ...fake.keys] : [k];
    return k.kid;
  };
  // Entra publishes RSA keys without alg, with x5t and an issuer member.
  fake.jwks = () => ({
    keys: fake.keys.map((k) => {
      if (!fake.entra) return k.pub;
      const { alg: _alg, ...pub } = k.pub;
      return { ...pub, x5t: k.kid, issuer: `${fake.url}/{tenantid}/v2.0` };
    }),
  });

  function endpoints(seg) {
    const base = fake.entra ? `${fake.url}/${seg}` : `${fake.url}${path}`;
    return fake.entra ? {
      authorization_endpoint: `${base}/oauth2/v2.0/authorize`,
      token_endpoint: `${base}/oauth2/v2.0/token`,
      jwks_uri: `${base}/discovery/v2.0/keys`,
      userinfo_endpoint: `${fake.url}/oidc/userinfo`,
    } : {
      authorization_endpoint: `${base}/authorize`,
      token_endpoint: `${base}/token`,
      jwks_uri: `${base}/jwks`,
      userinfo_endpoint: `${base}/userinfo`,
    };
  }

  // Which endpoint a path is, and the tenant segment for Entra.
  function classify(p) {
    let m;
    if (fake.entra) {
      if ((m = /^\/([^/]+)\/v2\.0\/\.well-known\/openid-configuration$/.exec(p))) return ['disco', m[1]];
      if ((m = /^\/([^/]+)\/oauth2\/v2\.0\/authorize$/.exec(p))) return ['authorize', m[1]];
      if ((m = /^\/([^/]+)\/oauth2\/v2\.0\/token$/.exec(p))) return ['token', m[1]];
      if ((m = /^\/([^/]+)\/discovery\/v2\.0\/keys$/.exec(p))) return ['jwks', m[1]];
      if (p === '/oidc/userinfo') return ['userinfo'];
      return [null];
    }
    if (!p.startsWith(path)) return [null];
    const rest = p.slice(path.length);
    return [{
      '/.well-known/openid-configuration': 'disco', '/jwks': 'jwks', '/.well-known/jwks.json': 'jwks',
      '/authorize': 'authorize', '/token': 'token', '/userinfo': 'userinfo',
    }[rest] ?? null];
  }

  async function onRequest(req, res) {
    const u = new URL(req.url, fake.url);
    const body = await readBody(req);
    const rec = { method: req.method, path: u.pathname, query: Object.fromEntries(u.searchParams), headers: req.headers, body, time: Date.now() };
    fake.requests.push(rec);
    const [kind, seg] = classify(u.pathname);
    const n = fake.next;
    switch (kind) {
      case 'disco': {
        fake.discoFetches++;
        if (n.disco === 'garbage') return json(res, 200, { hello: 'world' });
        return json(res, 200, {
          issuer: n.discoIssuer ?? issuerOf(seg),
          ...endpoints(seg),
          response_types_supported: ['code'],
          subject_types_supported: ['public'],
          id_token_signing_alg_values_supported: [alg],
          token_endpoint_auth_methods_supported: ['client_secret_post', 'client_secret_basic'],
          code_challenge_methods_supported: ['S256'],
          ...(n.issParameter ? { authorization_response_iss_parameter_supported: true } : {}),
        });
      }
      case 'jwks':
        fake.jwksFetches++;
        if (fake.jwksHeld) await fake.jwksHeld;
        if (n.jwks === 'slow') { await new Promise((r) => setTimeout(r, n.slowMs ?? 10000).unref()); }
        if (n.jwks === 'garbage') { res.writeHead(200, { 'Content-Type': 'application/json' }); return res.end('{"keys": [nope'); }
        return json(res, 200, fake.jwks());
      case 'authorize': {
        fake.authorizeRequests.push(rec);
        const q = rec.query;
        const to = new URL(q.redirect_uri);
        if (n.authorizeError) {
          to.searchParams.set('error', n.authorizeError.error);
          if (n.authorizeError.error_description !== undefined) to.searchParams.set('error_description', n.authorizeError.error_description);
        } else {
          const code = b64u(randomBytes(18));
          fake.codes.set(code, { ...q, tid: fake.tenant, user: { ...fake.user } });
          to.searchParams.set('code', code);
        }
        if (q.state !== undefined) to.searchParams.set('state', q.state);
        if (n.issParam !== undefined) to.searchParams.set('iss', n.issParam);
        res.writeHead(302, { Location: to.href });
        return res.end();
      }
      case 'token':
        fake.tokenRequests.push(rec);
        return token(req, res, rec, seg);
      case 'userinfo': {
        fake.userinfoRequests.push(rec);
        const tok = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
        const grant = tok && fake.accessTokens?.get(tok);
        if (!grant) return json(res, 401, { error: 'invalid_token' });
        if (n.userinfoStatus) return json(res, n.userinfoStatus, { error: 'server_error' });
        return json(res, 200, { sub: grant.user.sub, ...grant.user, ...(n.userinfo ?? {}) });
      }
      default:
        res.writeHead(404, { 'Content-Type': 'text/plain' });
        return res.end('not found');
    }
  }

  async function token(req, res, rec, seg) {
    const n = fake.next;
    const f = Object.fromEntries(new URLSearchParams(rec.body));
    if (n.token === 'reset') return req.socket.destroy();
    if (n.token === 'slow') await new Promise((r) => setTimeout(r, n.slowMs ?? 10000).unref());
    if (n.token === 'garbage') {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      return res.end('\x00\xff{"access_token": not json at all');
    }
    if (n.token === 'html') {
      res.writeHead(502, { 'Content-Type': 'text/html' });
      return res.end('<html><body><h1>502 Bad Gateway</h1><script>alert(1)</script></body></html>');
    }
    if (n.token === 'error') {
      return json(res, 400, { error: 'invalid_grant', error_description: n.errorDescription ?? 'the code is <b>bad</b>' });
    }
    // Client authentication: Basic (form-encoded parts) or in the body.
    let id = f.client_id;
    let secret = f.client_secret;
    const basic = /^Basic (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    if (basic) {
      const [a, b] = Buffer.from(basic, 'base64').toString('utf8').split(':');
      id = decodeURIComponent(a.replace(/\+/g, ' '));
      secret = decodeURIComponent(b.replace(/\+/g, ' '));
    }
    if (id !== fake.clientId || secret !== fake.clientSecret) return json(res, 401, { error: 'invalid_client' });
    const g = fake.codes.get(f.code);
    fake.codes.delete(f.code);
    if (!g || f.grant_type !== 'authorization_code' || f.redirect_uri !== g.redirect_uri) {
      return json(res, 400, { error: 'invalid_grant', error_description: 'unknown code or redirect_uri mismatch' });
    }
    if (g.code_challenge) {
      const want = createHash('sha256').update(f.code_verifier ?? '').digest('base64url');
      if (want !== g.code_challenge || g.code_challenge_method !== 'S256') {
        return json(res, 400, { error: 'invalid_grant', error_description: 'PKCE verification failed' });
      }
    }
    const at = `at-${b64u(randomBytes(16))}`;
    fake.accessTokens ??= new Map();
    fake.accessTokens.set(at, g);
    const t = now();
    const claims = {
      iss: fake.tokenIssuer(g.tid), aud: fake.clientId, sub: g.user.sub, iat: t, exp: t + 600, nonce: g.nonce,
      ...(fake.entra ? { tid: g.tid } : {}),
      ...(n.idTokenWithoutProfile ? { sub: g.user.sub } : g.user),
      ...(n.claims ?? {}),
    };
    let idToken;
    if (n.signWith === 'hs256') {
      // Algorithm confusion: HMAC with the client secret, the current kid.
      idToken = await new SignJWT(claims).setProtectedHeader({ alg: 'HS256', kid: fake.keys[0].kid, typ: 'JWT' })
        .sign(new TextEncoder().encode(fake.clientSecret));
    } else if (n.signWith === 'none') {
      idToken = `${b64u(JSON.stringify({ alg: 'none', kid: fake.keys[0].kid }))}.${b64u(JSON.stringify(claims))}.`;
    } else {
      const key = n.signWith === 'unpublished' ? fake.unpublished : fake.keys[0];
      idToken = await fake.sign(claims, { key, header: n.header ?? {} });
    }
    const out = { access_token: at, token_type: 'Bearer', expires_in: 600, id_token: idToken };
    if (n.token === 'no-id-token') delete out.id_token;
    return json(res, 200, out);
  }

  function listen(port) {
    server = http.createServer((req, res) => {
      onRequest(req, res).catch((e) => { try { json(res, 500, { error: 'server_error', error_description: String(e) }); } catch { /* gone */ } });
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
  fake.port = await listen(opts.port ?? 0);
  fake.url = `http://127.0.0.1:${fake.port}`;
  /** The issuer to configure (non-Entra), or the Entra base for a tenant segment. */
  fake.issuer = fake.entra ? `${fake.url}/organizations/v2.0` : `${fake.url}${path}`;
  fake.down = async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(() => r()));
  };
  fake.up = async () => { await listen(fake.port); };
  fake.close = async () => { if (server.listening) await fake.down(); };
  return fake;
}
