// A GitHub-shaped OAuth app provider (no OIDC): /login/oauth/authorize
// redirects straight back with a code, /login/oauth/access_token answers
// form-encoded unless asked for JSON (and reports errors with status 200,
// as GitHub does), the REST API wants a User-Agent and a token, /user has a
// numeric id and a null email when the address is private, /user/emails
// and /user/orgs list the rest.
//
//   const gh = await startFakeGithub();
//   gh.user = {...}; gh.emails = [...]; gh.orgs = [...];
import http from 'node:http';
import { createHash, randomBytes } from 'node:crypto';

export const GH_CLIENT_ID = 'Iv1.fakegithubclient';
export const GH_CLIENT_SECRET = 'fake-github-secret-0123456789';

function readBody(req) {
  return new Promise((res) => {
    const parts = [];
    req.on('data', (c) => parts.push(c));
    req.on('end', () => res(Buffer.concat(parts).toString('utf8')));
  });
}

function json(res, status, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

export async function startFakeGithub(opts = {}) {
  const fake = {
    clientId: opts.clientId ?? GH_CLIENT_ID,
    clientSecret: opts.clientSecret ?? GH_CLIENT_SECRET,
    user: { login: 'octo-dev', id: 583231, name: 'Octo Dev', email: null, type: 'User' },
    emails: [
      { email: 'octo@users.noreply.github.com', primary: false, verified: true, visibility: null },
      { email: 'octo-old@example.com', primary: false, verified: false, visibility: null },
      { email: 'octo@example.com', primary: true, verified: true, visibility: 'private' },
    ],
    orgs: [{ login: 'Acme-Corp', id: 9001 }, { login: 'other-org', id: 9002 }],
    requests: [],
    codes: new Map(),
    tokens: new Set(),
  };
  const server = http.createServer(async (req, res) => {
    const u = new URL(req.url, 'http://x');
    const body = await readBody(req);
    const rec = { method: req.method, path: u.pathname, query: Object.fromEntries(u.searchParams), headers: req.headers, body };
    fake.requests.push(rec);
    if (u.pathname === '/login/oauth/authorize') {
      const to = new URL(rec.query.redirect_uri);
      const code = randomBytes(10).toString('hex');
      fake.codes.set(code, rec.query);
      to.searchParams.set('code', code);
      to.searchParams.set('state', rec.query.state);
      res.writeHead(302, { Location: to.href });
      return res.end();
    }
    if (u.pathname === '/login/oauth/access_token' && req.method === 'POST') {
      const f = Object.fromEntries(new URLSearchParams(body));
      const g = fake.codes.get(f.code);
      fake.codes.delete(f.code);
      let out;
      if (f.client_id !== fake.clientId || f.client_secret !== fake.clientSecret) {
        out = { error: 'incorrect_client_credentials', error_description: 'The client_id and/or client_secret passed are incorrect.' };
      } else if (!g || g.redirect_uri !== f.redirect_uri
          || (g.code_challenge && createHash('sha256').update(f.code_verifier ?? '').digest('base64url') !== g.code_challenge)) {
        out = { error: 'bad_verification_code', error_description: 'The code passed is incorrect or expired.' };
      } else {
        const t = `gho_${randomBytes(18).toString('hex')}`;
        fake.tokens.add(t);
        out = { access_token: t, token_type: 'bearer', scope: g.scope ?? '' };
      }
      if (/application\/json/.test(req.headers.accept ?? '')) return json(res, 200, out);
      res.writeHead(200, { 'Content-Type': 'application/x-www-form-urlencoded; charset=utf-8' });
      return res.end(new URLSearchParams(out).toString());
    }
    // The REST API.
    if (!req.headers['user-agent']) {
      res.writeHead(403, { 'Content-Type': 'text/plain' });
      return res.end('Request forbidden by administrative rules. Please make sure your request has a User-Agent header.');
    }
    const tok = /^(?:Bearer|token) (.+)$/i.exec(req.headers.authorization ?? '')?.[1];
    if (!tok || !fake.tokens.has(tok)) return json(res, 401, { message: 'Bad credentials', documentation_url: 'https://docs.github.com/rest' });
    if (u.pathname === '/user') return json(res, 200, fake.user);
    if (u.pathname === '/user/emails') return json(res, 200, fake.emails);
    if (u.pathname === '/user/orgs') return json(res, 200, fake.orgs);
    return json(res, 404, { message: 'Not Found' });
  });
  server.on('connection', (s) => s.unref());
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  server.unref(); // a fake a failing test forgot to close must not keep the process alive
  fake.port = server.address().port;
  fake.url = `http://127.0.0.1:${fake.port}`;
  /** Provider config overriding the github preset's endpoints. */
  fake.providerConfig = (over = {}) => ({
    client_id: fake.clientId,
    client_secret: fake.clientSecret,
    authorization_url: `${fake.url}/login/oauth/authorize`,
    token_url: `${fake.url}/login/oauth/access_token`,
    user_info_url: `${fake.url}/user`,
    emails_url: `${fake.url}/user/emails`,
    orgs_url: `${fake.url}/user/orgs`,
    ...over,
  });
  fake.close = () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); });
  return fake;
}
