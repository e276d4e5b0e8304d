// Fake AWS credential endpoints on 127.0.0.1 ephemeral ports, node: built-ins only:
//
//   const imds = await startFakeImds({ role: 'bsp-role', creds: makeCreds('IMDS', { expiresIn: 5 }) });
//   const ecs  = await startFakeContainer({ token: 'Bearer pod-token', creds });
//   const sts  = await startFakeSts({ expectRoleArn: 'arn:aws:iam::123456789012:role/bsp', creds });
//   ... point the daemon at imds.url / ecs.url / sts.url ...
//   imds.requests   // [{method, path, headers, body, status, time}]
//   imds.setCreds(makeCreds('IMDS2'));   await imds.close();
//
// Wire formats: BEDROCK-FACTS.md §4.2 (botocore IMDSFetcher / ContainerMetadataFetcher,
// STS 2011-06-15 query protocol). tests/integration/aws-creds.test.mjs checks every
// fake against the AWS SDK's own credential providers.
//
// creds: {accessKeyId, secretAccessKey, sessionToken?, expiration?, expiresIn?}
//   expiration: Date or ISO string; expiresIn: seconds from the moment of each answer,
//   so credentials a few seconds from expiry keep forcing refreshes.
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';

const STS_NS = 'https://sts.amazonaws.com/doc/2011-06-15/';

/** Random credentials: key id `ASIA<TAG>...`, optional expiry. */
export function makeCreds(tag = 'FAKE', { expiresIn, expiration, sessionToken = true } = {}) {
  const id = `ASIA${tag.toUpperCase().replace(/[^A-Z0-9]/g, '')}${randomBytes(8).toString('hex').toUpperCase()}`.slice(0, 20);
  return {
    accessKeyId: id.padEnd(20, 'X'),
    secretAccessKey: randomBytes(30).toString('base64'),
    sessionToken: sessionToken ? `FwoG${randomBytes(48).toString('base64')}` : undefined,
    ...(expiresIn !== undefined ? { expiresIn } : {}),
    ...(expiration !== undefined ? { expiration } : {}),
  };
}

/** ISO 8601 expiration of creds at this moment, or undefined. */
export function expirationOf(creds) {
  if (creds.expiresIn !== undefined) return new Date(Date.now() + creds.expiresIn * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
  if (creds.expiration instanceof Date) return creds.expiration.toISOString().replace(/\.\d+Z$/, 'Z');
  return creds.expiration;
}

export const xmlEscape = (s) => String(s).replace(/[&<>"']/g, (c) => ({
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;',
})[c]);

const readBody = async (req) => {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
};

/**
 * One loopback HTTP server; handler(req, body, rec) → {status, headers?, body?}.
 * Every request is recorded in .requests (headers lower-cased by Node).
 */
async function startServer(name, handler, extra = {}) {
  const requests = [];
  let delayMs = 0;
  const server = http.createServer(async (req, res) => {
    const body = await readBody(req);
    const rec = {
      method: req.method, path: req.url, headers: { ...req.headers }, body, time: Date.now(),
    };
    requests.push(rec);
    let out;
    try {
      out = await handler(req, body, rec);
    } catch (e) {
      out = { status: 500, body: String(e?.stack ?? e) };
    }
    rec.status = out.status;
    if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
    const payload = out.body === undefined ? '' : out.body;
    res.writeHead(out.status, {
      'Content-Length': Buffer.byteLength(payload),
      ...(out.headers ?? {}),
    });
    res.end(payload);
  });
  server.keepAliveTimeout = 2000;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  return {
    name,
    port,
    url: `http://127.0.0.1:${port}`,
    requests,
    /** Answer every request only after ms (single-flight tests). */
    setDelay(ms) { delayMs = ms; },
    /** Requests matching method and a path prefix. */
    count(method, prefix = '') {
      return requests.filter((r) => r.method === method && r.path.startsWith(prefix)).length;
    },
    async close() {
      server.closeAllConnections?.();
      await new Promise((r) => server.close(r));
    },
    ...extra,
  };
}

/**
 * IMDSv2. PUT /latest/api/token (needs X-aws-ec2-metadata-token-ttl-seconds 1..21600,
 * refuses X-Forwarded-For like EC2), then with X-aws-ec2-metadata-token:
 * GET /latest/meta-data/iam/security-credentials/ → role name,
 * GET …/<role> → {"Code":"Success",…,"Token","Expiration"}.
 * tokenRequired (default true): a GET without a valid token gets 401 (IMDSv2 only);
 * false: IMDSv1 GETs are answered too. role null: 404 on the role list (no instance profile).
 */
export async function startFakeImds({ role = 'bsp-role', creds = makeCreds('IMDS', { expiresIn: 21600 }), tokenRequired = true } = {}) {
  const state = { role, creds, tokenRequired, tokens: new Map(), tokenStatus: 200 };
  const base = '/latest/meta-data/iam/security-credentials/';
  const handler = (req, body) => {
    const path = req.url.split('?')[0];
    if (path === '/latest/api/token') {
      if (req.method !== 'PUT') return { status: 405 };
      if (state.tokenStatus !== 200) return { status: state.tokenStatus };
      if (req.headers['x-forwarded-for']) return { status: 403 };
      const ttl = Number(req.headers['x-aws-ec2-metadata-token-ttl-seconds']);
      if (!Number.isInteger(ttl) || ttl < 1 || ttl > 21600) return { status: 400 };
      const tok = `AQAEA${randomBytes(24).toString('base64url')}==`;
      state.tokens.set(tok, Date.now() + ttl * 1000);
      return { status: 200, headers: { 'Content-Type': 'text/plain', 'X-aws-ec2-metadata-token-ttl-seconds': String(ttl) }, body: tok };
    }
    if (req.method !== 'GET') return { status: 405 };
    const tok = req.headers['x-aws-ec2-metadata-token'];
    if (tok !== undefined) {
      const exp = state.tokens.get(tok);
      if (!exp || exp < Date.now()) return { status: 401 };
    } else if (state.tokenRequired) {
      return { status: 401 };
    }
    if (path === base || path === base.slice(0, -1)) {
      if (!state.role) return { status: 404 };
      return { status: 200, headers: { 'Content-Type': 'text/plain' }, body: state.role };
    }
    if (path.startsWith(base) && state.role && path.slice(base.length) === state.role) {
      const c = state.creds;
      const out = {
        Code: 'Success',
        LastUpdated: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
        Type: 'AWS-HMAC',
        AccessKeyId: c.accessKeyId,
        SecretAccessKey: c.secretAccessKey,
        Token: c.sessionToken,
        Expiration: expirationOf(c) ?? new Date(Date.now() + 6 * 3600e3).toISOString().replace(/\.\d+Z$/, 'Z'),
      };
      return { status: 200, headers: { 'Content-Type': 'text/plain' }, body: JSON.stringify(out, null, 2) };
    }
    return { status: 404 };
  };
  return startServer('imds', handler, {
    setCreds(c) { state.creds = c; },
    setRole(r) { state.role = r; },
    /** Make the token PUT answer this status (e.g. 403 or 404 for IMDSv1-only). */
    setTokenStatus(s) { state.tokenStatus = s; },
    /** Token PUTs, role-list GETs and credential GETs seen. */
    stats() {
      return {
        tokens: this.count('PUT', '/latest/api/token'),
        roleLists: this.requests.filter((r) => r.method === 'GET' && r.path === base).length,
        creds: this.requests.filter((r) => r.method === 'GET' && r.path.length > base.length && r.path.startsWith(base)).length,
      };
    },
  });
}

/**
 * ECS / EKS Pod Identity container endpoint: GET <path> (any path; .url has /v2/credentials/<id>)
 * with Authorization equal to token (if token is set; else none is required) →
 * {"AccessKeyId","SecretAccessKey","Token","Expiration","RoleArn","AccountId"}.
 * Wrong or missing Authorization: 401 with {"code","message"}.
 */
export async function startFakeContainer({ token = null, creds = makeCreds('ECS', { expiresIn: 3600 }), path = '/v2/credentials/4f5d3e2c' } = {}) {
  const state = { token, creds, status: 200 };
  const handler = (req) => {
    if (req.method !== 'GET') return { status: 405 };
    if (state.token !== null && req.headers.authorization !== state.token) {
      return { status: 401, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ code: 'AccessDeniedException', message: 'Authorization token is invalid' }) };
    }
    if (state.status !== 200) return { status: state.status, body: '{"code":"InternalError","message":"fake failure"}' };
    const c = state.creds;
    return {
      status: 200,
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({
        AccessKeyId: c.accessKeyId,
        SecretAccessKey: c.secretAccessKey,
        Token: c.sessionToken,
        Expiration: expirationOf(c) ?? new Date(Date.now() + 3600e3).toISOString().replace(/\.\d+Z$/, 'Z'),
        RoleArn: 'arn:aws:iam::123456789012:role/fake-task-role',
        AccountId: '123456789012',
      }),
    };
  };
  const srv = await startServer('container', handler, {
    setCreds(c) { state.creds = c; },
    setToken(t) { state.token = t; },
    /** Answer every request with this status (500, 503, …); 200 restores. */
    setStatus(s) { state.status = s; },
  });
  srv.base = srv.url;
  srv.path = path;
  srv.url = `${srv.base}${path}`;
  return srv;
}

/**
 * STS AssumeRoleWithWebIdentity (query protocol, 2011-06-15, unsigned): POST / with a form
 * body. Checks Action, Version, RoleArn (= expectRoleArn if given), RoleSessionName,
 * WebIdentityToken (= expectToken if given). error: {code, message, status=400, type='Sender'}
 * answers an ErrorResponse instead. .requests[i].form has the parsed form.
 */
export async function startFakeSts({ expectRoleArn = null, expectToken = null, creds = makeCreds('STS', { expiresIn: 3600 }), error = null } = {}) {
  const state = { expectRoleArn, expectToken, creds, error };
  const errorXml = ({ code, message, type = 'Sender' }) => '<ErrorResponse xmlns="' + STS_NS + '">\n'
    + `  <Error>\n    <Type>${xmlEscape(type)}</Type>\n    <Code>${xmlEscape(code)}</Code>\n`
    + `    <Message>${xmlEscape(message)}</Message>\n  </Error>\n`
    + `  <RequestId>${randomBytes(16).toString('hex')}</RequestId>\n</ErrorResponse>\n`;
  const fail = (status, code, message) => ({ status, headers: { 'Content-Type': 'text/xml' }, body: errorXml({ code, message }) });
  const handler = (req, body, rec) => {
    if (req.method !== 'POST') return fail(405, 'InvalidAction', 'only POST');
    if (!/^application\/x-www-form-urlencoded/.test(req.headers['content-type'] ?? '')) {
      return fail(400, 'InvalidParameterValue', 'not a form');
    }
    if (req.headers.authorization) return fail(400, 'InvalidParameterValue', 'AssumeRoleWithWebIdentity is unsigned');
    const form = Object.fromEntries(new URLSearchParams(body));
    rec.form = form;
    if (form.Action !== 'AssumeRoleWithWebIdentity') return fail(400, 'InvalidAction', `Could not find operation ${form.Action}`);
    if (form.Version !== '2011-06-15') return fail(400, 'InvalidParameterValue', `bad Version ${form.Version}`);
    if (!form.RoleArn || !form.RoleSessionName || !form.WebIdentityToken) {
      return fail(400, 'MissingParameter', 'RoleArn, RoleSessionName and WebIdentityToken are required');
    }
    if (!/^[\w+=,.@-]{2,64}$/.test(form.RoleSessionName)) return fail(400, 'ValidationError', 'bad RoleSessionName');
    if (state.error) {
      const e = state.error;
      return { status: e.status ?? 400, headers: { 'Content-Type': 'text/xml' }, body: errorXml(e) };
    }
    if (state.expectRoleArn && form.RoleArn !== state.expectRoleArn) {
      return fail(403, 'AccessDenied', `Not authorized to perform sts:AssumeRoleWithWebIdentity on ${form.RoleArn}`);
    }
    if (state.expectToken && form.WebIdentityToken !== state.expectToken) {
      return fail(400, 'InvalidIdentityToken', 'Incorrect token audience');
    }
    const c = state.creds;
    const exp = expirationOf(c) ?? new Date(Date.now() + 3600e3).toISOString().replace(/\.\d+Z$/, 'Z');
    const xml = `<AssumeRoleWithWebIdentityResponse xmlns="${STS_NS}">\n`
      + '  <AssumeRoleWithWebIdentityResult>\n'
      + '    <SubjectFromWebIdentityToken>system:serviceaccount:bsp:proxy</SubjectFromWebIdentityToken>\n'
      + '    <Audience>sts.amazonaws.com</Audience>\n'
      + `    <AssumedRoleUser>\n      <Arn>${xmlEscape(form.RoleArn.replace(':role/', ':assumed-role/'))}/${xmlEscape(form.RoleSessionName)}</Arn>\n`
      + '      <AssumedRoleId>AROAFAKE:session</AssumedRoleId>\n    </AssumedRoleUser>\n'
      + '    <Credentials>\n'
      + `      <SessionToken>${xmlEscape(c.sessionToken ?? '')}</SessionToken>\n`
      + `      <SecretAccessKey>${xmlEscape(c.secretAccessKey)}</SecretAccessKey>\n`
      + `      <Expiration>${xmlEscape(exp)}</Expiration>\n`
      + `      <AccessKeyId>${xmlEscape(c.accessKeyId)}</AccessKeyId>\n`
      + '    </Credentials>\n'
      + '    <Provider>www.example.com</Provider>\n'
      + '  </AssumeRoleWithWebIdentityResult>\n'
      + `  <ResponseMetadata>\n    <RequestId>${randomBytes(16).toString('hex')}</RequestId>\n  </ResponseMetadata>\n`
      + '</AssumeRoleWithWebIdentityResponse>\n';
    return { status: 200, headers: { 'Content-Type': 'text/xml' }, body: xml };
  };
  return startServer('sts', handler, {
    setCreds(c) { state.creds = c; },
    setError(e) { state.error = e; },
    setExpectRoleArn(a) { state.expectRoleArn = a; },
    /** Parsed forms of the AssumeRoleWithWebIdentity calls, in order. */
    forms() { return this.requests.filter((r) => r.form).map((r) => r.form); },
  });
}
