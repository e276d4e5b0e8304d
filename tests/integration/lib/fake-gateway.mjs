// A scripted stand-in for the proxy's sign-in API, for what the test daemon
// does not serve (yet) or cannot be made to answer on cue: RFC 8414
// metadata with the RFC 8628 device endpoints, a token endpoint that gives
// the answers a test lists (authorization_pending, slow_down, ...), and
// POST /aws/credentials. Every request is recorded with its time.
//
//   const g = await startFakeGateway({ polls: [pending, slowDown, ok] });
//   ... bedrock-sso-proxy login --device g.url ...
//   g.polls  // [{at, form}]
import http from 'node:http';
import { readAll } from './util.mjs';

export const ACCESS = 'fake-gateway-access-token-1';
export const REFRESH = 'bsr_fake-gateway-refresh-token-1';
export const DEVICE_CODE = 'fake-device-code-never-printed-0123456789';
export const USER_CODE = 'WDJB-MJHT';

/** Token endpoint answers. */
export const pending = { status: 400, body: { error: 'authorization_pending' } };
export const slowDown = { status: 400, body: { error: 'slow_down' } };
export const denied = { status: 400, body: { error: 'access_denied' } };
export const expired = { status: 400, body: { error: 'expired_token' } };
/** A proxy in trouble: 503 without an OAuth error, a connection cut, 429 without an OAuth error. */
export const unavailable = { status: 503, body: { message: 'try later' } };
export const reset = { reset: true };
export const busy = { status: 429, body: { message: 'too many requests' } };
export const granted = { status: 200, body: { access_token: ACCESS, token_type: 'Bearer', expires_in: 3600, refresh_token: REFRESH } };

/**
 * opts: {polls: answers in order (the last repeats), interval (s, 1), expiresIn (s, 600),
 * awsCredentials: {status, body} for POST /aws/credentials (404 if absent), device: false (no device flow)}.
 */
export async function startFakeGateway(opts = {}) {
  const g = { url: null, requests: [], polls: [], deviceAuths: [], aws: [] };
  const polls = [...(opts.polls ?? [granted])];
  const send = (res, status, body) => {
    res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
    res.end(JSON.stringify(body));
  };
  const server = http.createServer(async (req, res) => {
    const body = (await readAll(req)).toString();
    const u = new URL(req.url, g.url);
    const rec = { at: Date.now(), method: req.method, path: u.pathname, headers: req.headers, body };
    g.requests.push(rec);
    const form = Object.fromEntries(new URLSearchParams(body));
    if (u.pathname === '/.well-known/oauth-authorization-server') {
      return send(res, 200, {
        issuer: g.url,
        ...(opts.device === false ? {} : { device_authorization_endpoint: `${g.url}/oauth/device_authorization` }),
        token_endpoint: `${g.url}/oauth/token`,
        grant_types_supported: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
      });
    }
    if (u.pathname === '/oauth/device_authorization' && req.method === 'POST') {
      g.deviceAuths.push({ ...rec, form });
      return send(res, 200, {
        device_code: DEVICE_CODE, user_code: USER_CODE, verification_uri: `${g.url}/device`,
        verification_uri_complete: `${g.url}/device?user_code=${USER_CODE}`, expires_in: opts.expiresIn ?? 600,
        interval: opts.interval ?? 1,
      });
    }
    if (u.pathname === '/oauth/token' && req.method === 'POST') {
      g.polls.push({ ...rec, form });
      const a = polls.length > 1 ? polls.shift() : polls[0];
      if (a.reset) return req.socket.destroy();
      return send(res, a.status, a.body);
    }
    if (u.pathname === '/auth/validate') {
      if (req.headers.authorization !== `Bearer ${ACCESS}`) return send(res, 401, { error: 'invalid_token' });
      return send(res, 200, { valid: true, sub: 'fake:carol', email: 'carol@example.com', provider: 'fake', scopes: ['bedrock:invoke'] });
    }
    if (u.pathname === '/aws/credentials' && req.method === 'POST') {
      g.aws.push(rec);
      if (req.headers.authorization !== `Bearer ${ACCESS}`) return send(res, 401, { error: 'invalid_token' });
      const a = opts.awsCredentials ?? { status: 404, body: { error: 'not_found' } };
      return send(res, a.status, a.body);
    }
    return send(res, 404, { error: 'not_found' });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  server.unref();
  g.url = `http://127.0.0.1:${server.address().port}`;
  g.close = () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); });
  return g;
}
