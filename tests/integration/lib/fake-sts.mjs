// A fake STS AssumeRole (query protocol, API version 2011-06-15, XML answers) on a
// loopback port, for the per-user role and credential vending tests:
//
//   const sts = await startFakeStsAssume({ credentials: [BASE], region: 'us-east-1',
//     onIssue: (creds, session) => fake.setCredentials([...]) });
//   sts.sessions      // [{form, roleArn, sessionName, sourceIdentity, tags: {k: v}, duration, creds, accessKeyId}]
//   sts.setError({ code: 'AccessDenied', message: '...', status: 403 })   // or null
//   sts.setStatus(503)    // an outage: every call gets 503 ServiceUnavailable (0: off)
//   sts.setDelay(ms)      // answer after ms (single-flight tests)
//   sts.setExpiresIn(s, {once})  // lifetime of the credentials it hands out (next one only)
//
// Every request's SigV4 signature is checked with the AWS SDK's own signer
// (verifySigV4 of fake-bedrock.mjs, service "sts"): a request not signed with one
// of `credentials` gets InvalidClientTokenId / SignatureDoesNotMatch as STS answers.
// The parameters are checked against the STS model's constraints (RoleSessionName
// and SourceIdentity [\w+=,.@-]{2,64}, tags ≤ 50, key 1-128 and value 0-256 of
// [\p{L}\p{Z}\p{N}_.:/=+\-@], DurationSeconds 900-43200). aws-sts.test.mjs checks
// the fake against @aws-sdk/client-sts: the SDK signs what it verifies and parses
// what it answers.
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import { makeCreds, expirationOf, xmlEscape } from './fake-aws.mjs';
import { verifySigV4 } from './fake-bedrock.mjs';

const NS = 'https://sts.amazonaws.com/doc/2011-06-15/';
const NAME_RE = /^[\w+=,.@-]{2,64}$/;
const TAG_RE = /^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$/u;

const errorXml = ({ code, message, type = 'Sender' }) => `<ErrorResponse xmlns="${NS}">\n`
  + `  <Error>\n    <Type>${xmlEscape(type)}</Type>\n    <Code>${xmlEscape(code)}</Code>\n`
  + `    <Message>${xmlEscape(message)}</Message>\n  </Error>\n`
  + `  <RequestId>${randomBytes(16).toString('hex')}</RequestId>\n</ErrorResponse>\n`;

/** Parse Tags.member.N.Key/Value and TransitiveTagKeys.member.N from a form. */
function listParam(form, prefix) {
  const out = [];
  for (const [k, v] of Object.entries(form)) {
    const m = new RegExp(`^${prefix.replace(/\./g, '\\.')}\\.member\\.(\\d+)(?:\\.(Key|Value))?$`).exec(k);
    if (!m) continue;
    const i = Number(m[1]) - 1;
    out[i] ??= {};
    if (m[2]) out[i][m[2]] = v; else out[i] = v;
  }
  return out;
}

export async function startFakeStsAssume({
  credentials, region = 'us-east-1', expiresIn = 3600, onIssue = null, roleArnRe = /^arn:aws[\w-]*:iam::\d{12}:role\/[\w+=,.@/-]+$/,
} = {}) {
  const state = {
    credentials: [].concat(credentials), error: null, status: 0, delayMs: 0, expiresIn,
  };
  const sessions = [];
  const requests = [];
  const fail = (status, code, message) => ({ status, body: errorXml({ code, message }) });

  async function handle(req, body, rec) {
    if (req.method !== 'POST') return fail(405, 'InvalidAction', 'only POST');
    const h = {};
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      const k = req.rawHeaders[i].toLowerCase();
      (h[k] ??= []).push(req.rawHeaders[i + 1]);
    }
    const v = await verifySigV4({ method: req.method, rawPath: req.url, headers: h, body: Buffer.from(body, 'utf8') },
      { credentials: state.credentials, region, service: 'sts' });
    rec.signatureValid = v.ok;
    if (!v.ok) {
      rec.authError = v.message;
      const code = v.type === 'UnrecognizedClientException' ? 'InvalidClientTokenId'
        : v.type === 'ExpiredTokenException' ? 'ExpiredToken' : 'SignatureDoesNotMatch';
      return fail(403, code, v.type === 'UnrecognizedClientException'
        ? 'The security token included in the request is invalid.' : v.message.split('\n')[0]);
    }
    if (!/^application\/x-www-form-urlencoded/.test(h['content-type']?.[0] ?? '')) {
      return fail(400, 'InvalidParameterValue', 'not a form');
    }
    if (state.status) {
      return { status: state.status, body: errorXml({ code: 'ServiceUnavailable', message: 'Service is unavailable', type: 'Receiver' }) };
    }
    const form = Object.fromEntries(new URLSearchParams(body));
    rec.form = form;
    if (form.Action !== 'AssumeRole') return fail(400, 'InvalidAction', `Could not find operation ${form.Action}`);
    if (form.Version !== '2011-06-15') return fail(400, 'InvalidParameterValue', `bad Version ${form.Version}`);
    if (!form.RoleArn || !roleArnRe.test(form.RoleArn)) return fail(400, 'ValidationError', `bad RoleArn ${form.RoleArn}`);
    if (!NAME_RE.test(form.RoleSessionName ?? '')) return fail(400, 'ValidationError', '1 validation error detected: Value at \'roleSessionName\' failed to satisfy constraint');
    if (form.SourceIdentity !== undefined && (!NAME_RE.test(form.SourceIdentity) || /^aws:/i.test(form.SourceIdentity))) {
      return fail(400, 'ValidationError', 'bad SourceIdentity');
    }
    const duration = form.DurationSeconds === undefined ? 3600 : Number(form.DurationSeconds);
    if (!Number.isInteger(duration) || duration < 900 || duration > 43200) return fail(400, 'ValidationError', 'bad DurationSeconds');
    const tagList = listParam(form, 'Tags');
    if (tagList.length > 50) return fail(400, 'ValidationError', 'too many tags');
    const tags = {};
    for (const t of tagList) {
      if (!t || t.Key === undefined || t.Value === undefined) return fail(400, 'ValidationError', 'a tag without Key or Value');
      if (t.Key.length < 1 || t.Key.length > 128 || !TAG_RE.test(t.Key) || t.Value.length > 256 || !TAG_RE.test(t.Value)) {
        return fail(400, 'ValidationError', `bad tag ${t.Key}`);
      }
      if (Object.keys(tags).some((k) => k.toLowerCase() === t.Key.toLowerCase())) return fail(400, 'InvalidParameterValue', 'Duplicate tag keys found');
      tags[t.Key] = t.Value;
    }
    if (form.Policy !== undefined) {
      try { JSON.parse(form.Policy); } catch { return fail(400, 'MalformedPolicyDocument', 'The policy is not in the valid JSON format.'); }
    }
    if (state.error) {
      const e = state.error;
      return { status: e.status ?? 400, body: errorXml(e) };
    }
    const creds = makeCreds('ASR', { expiresIn: state.expiresIn });
    if (state.nextExpiresIn !== undefined) {
      state.expiresIn = state.nextExpiresIn;
      delete state.nextExpiresIn;
    }
    const exp = expirationOf(creds);
    creds.expiration = exp;
    delete creds.expiresIn;
    const session = {
      form, roleArn: form.RoleArn, sessionName: form.RoleSessionName, sourceIdentity: form.SourceIdentity,
      tags, duration, policy: form.Policy, externalId: form.ExternalId, creds, accessKeyId: creds.accessKeyId,
      signedWith: v.accessKeyId,
    };
    sessions.push(session);
    onIssue?.(creds, session);
    const arn = `${form.RoleArn.replace(':iam::', ':sts::').replace(':role/', ':assumed-role/')}/${form.RoleSessionName}`;
    const xml = `<AssumeRoleResponse xmlns="${NS}">\n`
      + '  <AssumeRoleResult>\n'
      + (form.SourceIdentity !== undefined ? `    <SourceIdentity>${xmlEscape(form.SourceIdentity)}</SourceIdentity>\n` : '')
      + `    <AssumedRoleUser>\n      <Arn>${xmlEscape(arn)}</Arn>\n`
      + `      <AssumedRoleId>AROA${randomBytes(8).toString('hex').toUpperCase()}:${xmlEscape(form.RoleSessionName)}</AssumedRoleId>\n`
      + '    </AssumedRoleUser>\n'
      + '    <Credentials>\n'
      + `      <AccessKeyId>${xmlEscape(creds.accessKeyId)}</AccessKeyId>\n`
      + `      <SecretAccessKey>${xmlEscape(creds.secretAccessKey)}</SecretAccessKey>\n`
      + `      <SessionToken>${xmlEscape(creds.sessionToken)}</SessionToken>\n`
      + `      <Expiration>${xmlEscape(exp)}</Expiration>\n`
      + '    </Credentials>\n'
      + `    <PackedPolicySize>${Object.keys(tags).length * 2}</PackedPolicySize>\n`
      + '  </AssumeRoleResult>\n'
      + `  <ResponseMetadata>\n    <RequestId>${randomBytes(16).toString('hex')}</RequestId>\n  </ResponseMetadata>\n`
      + '</AssumeRoleResponse>\n';
    return { status: 200, body: xml };
  }

  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = Buffer.concat(chunks).toString('utf8');
    const rec = { method: req.method, path: req.url, headers: { ...req.headers }, body, time: Date.now() };
    requests.push(rec);
    let out;
    try {
      out = await handle(req, body, rec);
    } catch (e) {
      out = { status: 500, body: errorXml({ code: 'InternalFailure', message: String(e?.stack ?? e), type: 'Receiver' }) };
    }
    rec.status = out.status;
    if (state.delayMs > 0) await new Promise((r) => setTimeout(r, state.delayMs));
    res.writeHead(out.status, { 'Content-Type': 'text/xml', 'Content-Length': Buffer.byteLength(out.body) });
    res.end(out.body);
  });
  server.keepAliveTimeout = 2000;
  server.on('connection', (s) => s.unref());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    sessions,
    requests,
    setError(e) { state.error = e; },
    setStatus(s) { state.status = s; },
    setDelay(ms) { state.delayMs = ms; },
    /** Lifetime of the next credentials; once: only the next, then back to what it was. */
    setExpiresIn(s, { once = false } = {}) {
      if (once) state.nextExpiresIn = state.expiresIn;
      state.expiresIn = s;
    },
    setCredentials(c) { state.credentials = [].concat(c); },
    async close() {
      server.closeAllConnections?.();
      await new Promise((r) => server.close(r));
    },
  };
}
