// A fake bedrock-runtime (HTTP/1.1, optionally TLS) built on the AWS libraries:
// SigV4 is verified with @smithy/signature-v4 and event streams are framed with
// @smithy/eventstream-codec, so real SDK clients accept what it sends.
// See BEDROCK-FACTS.md §1-§3 for the wire formats it imitates. It also serves
// bedrock-runtime's Anthropic Messages route (/anthropic/v1/messages[/count_tokens],
// server-sent events) and its OpenAI-compatible routes (/openai/v1/chat/completions,
// /openai/v1/responses), as GATEWAY-FACTS.md §A describes them; their model comes
// from the JSON body. Stream scenarios (model `…test.<name>`): stream-throttle,
// stream-cut (cut inside a frame), stream-truncated (ends before message_stop),
// stream-bytewise (one byte per write), stream-pause-<ms> (silent mid-stream).
import { Sha256 } from '@aws-crypto/sha256-js';
import { EventStreamCodec } from '@smithy/eventstream-codec';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { fromUtf8, toUtf8 } from '@smithy/util-utf8';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { setTimeout as delay } from 'node:timers/promises';
import { readAll, sha256hex, waitFor } from './util.mjs';

const codec = new EventStreamCodec(toUtf8, fromUtf8);
const CORAL = 'com.amazon.coral.service';
const BEDROCK = 'com.amazon.bedrock';
const MSG_SIG_MISMATCH = 'The request signature we calculated does not match the signature you provided. '
  + 'Check your AWS Secret Access Key and signing method. Consult the service documentation for details.';
const MSG_TOKEN_INVALID = 'The security token included in the request is invalid.';
const MSG_TOKEN_EXPIRED = 'The security token included in the request is expired';
const PAD = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
const MODEL_OPS = new Set(['invoke', 'invoke-with-response-stream', 'converse', 'converse-stream', 'count-tokens']);
const STREAM_OPS = new Set(['invoke-with-response-stream', 'converse-stream']);

/** HTTP error scenarios: model id `test.error-<status>`. */
export const ERROR_SCENARIOS = {
  400: { type: 'ValidationException', message: 'Extra inputs are not permitted' },
  403: { type: 'AccessDeniedException', message: "You don't have access to the model with the specified model ID." },
  404: { type: 'ResourceNotFoundException', message: 'The requested resource could not be found.' },
  408: { type: 'ModelTimeoutException', message: 'Model has timed out in processing the request. Try your request again.' },
  424: {
    type: 'ModelErrorException',
    message: 'Received server error (500) from model. See the model logs for more information.',
    extra: { originalStatusCode: 500, resourceName: 'fake-model-endpoint' },
  },
  429: { type: 'ThrottlingException', message: 'Too many tokens, please wait before trying again.', headers: { 'Retry-After': '7' } },
  500: { type: 'InternalServerException', message: 'The system encountered an unexpected error during processing. Try your request again.' },
  503: { type: 'ServiceUnavailableException', message: 'Bedrock is unable to process your request.' },
};

// ---------------------------------------------------------------- framing

/** Encode one event-stream message. `headers` values: string (type string) or {type, value}. */
export function encodeFrame(headers, body) {
  const h = {};
  for (const [k, v] of Object.entries(headers)) h[k] = typeof v === 'string' ? { type: 'string', value: v } : v;
  const payload = typeof body === 'string' ? fromUtf8(body) : body;
  return Buffer.from(codec.encode({ headers: h, body: payload }));
}

const padding = () => PAD.slice(0, 1 + Math.floor(Math.random() * PAD.length));

/** An InvokeModelWithResponseStream `chunk` frame carrying `event` (object → JSON) base64 in `bytes`, plus `p` padding. */
export function encodeChunkFrame(event, { pad = true } = {}) {
  const inner = Buffer.isBuffer(event) ? event : Buffer.from(JSON.stringify(event));
  const payload = { bytes: inner.toString('base64'), ...(pad ? { p: padding() } : {}) };
  return encodeFrame({ ':event-type': 'chunk', ':content-type': 'application/json', ':message-type': 'event' }, JSON.stringify(payload));
}

/** A ConverseStream event frame (`messageStart`, `contentBlockDelta`, …) with plain JSON payload + `p`. */
export function encodeConverseFrame(eventType, payload, { pad = true } = {}) {
  return encodeFrame({ ':event-type': eventType, ':content-type': 'application/json', ':message-type': 'event' },
    JSON.stringify(pad ? { ...payload, p: padding() } : payload));
}

/** A modeled exception frame, e.g. ('throttlingException', 'Too many tokens…'). */
export function encodeExceptionFrame(exceptionType, message, extra = {}) {
  return encodeFrame({ ':exception-type': exceptionType, ':content-type': 'application/json', ':message-type': 'exception' },
    JSON.stringify({ message, ...extra }));
}

/**
 * Split a buffer holding whole event-stream messages into decoded frames:
 * [{headers: {name: value}, body: Buffer, json, raw: Buffer}]. Throws on a truncated tail
 * unless `allowPartial`, in which case the leftover bytes are returned as `rest`.
 */
export function decodeFrames(buf, { allowPartial = false } = {}) {
  const frames = [];
  let off = 0;
  while (off + 4 <= buf.length) {
    const total = buf.readUInt32BE(off);
    if (total < 16 || off + total > buf.length) break;
    const raw = buf.subarray(off, off + total);
    const msg = codec.decode(raw);
    const headers = Object.fromEntries(Object.entries(msg.headers).map(([k, v]) => [k, v.value]));
    const body = Buffer.from(msg.body);
    let json;
    try { json = JSON.parse(body.toString('utf8')); } catch { json = undefined; }
    frames.push({ headers, body, json, raw: Buffer.from(raw) });
    off += total;
  }
  if (off !== buf.length && !allowPartial) throw new Error(`event stream: ${buf.length - off} trailing bytes (truncated frame)`);
  return allowPartial ? { frames, rest: buf.subarray(off) } : frames;
}

/** Decode the Anthropic events inside InvokeModelWithResponseStream chunk frames. */
export function decodeChunkEvents(buf) {
  return decodeFrames(buf).map((f) => (f.headers[':event-type'] === 'chunk'
    ? JSON.parse(Buffer.from(f.json.bytes, 'base64').toString('utf8'))
    : { exception: f.headers[':exception-type'] ?? f.headers[':error-code'], ...f.json }));
}

// ---------------------------------------------------------------- errors

/** Answer like Bedrock: status, x-amzn-ErrorType, x-amzn-RequestId, JSON {"message"}. */
export function sendBedrockError(res, status, type, message, { namespace = BEDROCK, extra = {}, headers = {} } = {}) {
  if (res.headersSent || res.destroyed) return;
  const body = Buffer.from(JSON.stringify({ message, ...extra }));
  res.setHeader('Content-Type', 'application/json');
  res.setHeader('Content-Length', body.length);
  res.setHeader('x-amzn-RequestId', randomUUID());
  res.setHeader('x-amzn-ErrorType', `${type}:http://internal.amazon.com/coral/${namespace}/`);
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  res.writeHead(status);
  res.end(body);
}

// ---------------------------------------------------------------- SigV4

const amzDateToDate = (s) => {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s ?? '');
  return m ? new Date(Date.UTC(+m[1], m[2] - 1, +m[3], +m[4], +m[5], +m[6])) : null;
};
const dateToAmz = (d) => d.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');

function parseQuery(q) {
  const query = {};
  if (!q) return query;
  for (const part of q.split('&')) {
    if (!part) continue;
    const i = part.indexOf('=');
    const dec = (s) => { try { return decodeURIComponent(s); } catch { return s; } };
    const k = dec(i < 0 ? part : part.slice(0, i));
    const v = i < 0 ? '' : dec(part.slice(i + 1));
    query[k] = k in query ? [].concat(query[k], v) : v;
  }
  return query;
}

/**
 * Verify a SigV4-signed request the way Bedrock does, by re-signing it with
 * @smithy/signature-v4 (same date, same SignedHeaders, the raw wire path).
 * req: {method, rawPath, headers: {lowercase name: [values]}, body: Buffer}
 * opts: {credentials: [{accessKeyId, secretAccessKey, sessionToken?, expired?}], region,
 *        service='bedrock', maxSkewMs=300000 (null = no check), now=Date.now(), expiredTokens: Set}
 * Returns {ok: true, accessKeyId} or {ok: false, status, type, message, canonicalRequest?}.
 */
export async function verifySigV4(req, {
  credentials, region, service = 'bedrock', maxSkewMs = 5 * 60 * 1000, now = Date.now(), expiredTokens = new Set(),
}) {
  const fail = (type, message, more = {}) => ({ ok: false, status: 403, type, message, ...more });
  const one = (name) => (req.headers[name] ? req.headers[name].join(',') : undefined);
  const auth = one('authorization');
  if (!auth) return fail('InvalidSignatureException', 'Missing Authentication Token');
  const m = /^AWS4-HMAC-SHA256\s+Credential=([^,\s]+)\s*,\s*SignedHeaders=([^,\s]+)\s*,\s*Signature=([0-9a-f]+)\s*$/.exec(auth);
  if (!m) return fail('InvalidSignatureException', "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters.");
  const [, credential, signedHeaderList, signature] = m;
  const [akid, scopeDate, scopeRegion, scopeService, terminator] = credential.split('/');
  const cred = credentials.find((c) => c.accessKeyId === akid);
  if (!cred) return fail('UnrecognizedClientException', MSG_TOKEN_INVALID);
  const token = one('x-amz-security-token');
  if ((cred.sessionToken ?? undefined) !== token) return fail('UnrecognizedClientException', MSG_TOKEN_INVALID);
  if (cred.expired || (token && expiredTokens.has(token))) return fail('ExpiredTokenException', MSG_TOKEN_EXPIRED);
  const amzDate = one('x-amz-date');
  const signingDate = amzDateToDate(amzDate);
  if (!signingDate) return fail('InvalidSignatureException', "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.");
  if (maxSkewMs != null && Math.abs(now - signingDate.getTime()) > maxSkewMs) {
    const nowS = dateToAmz(new Date(now));
    return fail('InvalidSignatureException', signingDate.getTime() < now
      ? `Signature expired: ${amzDate} is now earlier than ${dateToAmz(new Date(now - maxSkewMs))} (${nowS} - 5 min.)`
      : `Signature not yet current: ${amzDate} is still later than ${dateToAmz(new Date(now + maxSkewMs))} (${nowS} + 5 min.)`);
  }
  if (scopeDate !== amzDate.slice(0, 8)) return fail('InvalidSignatureException', `Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '${scopeDate}' != '${amzDate.slice(0, 8)}', from '${amzDate}'.`);
  if (scopeRegion !== region) return fail('InvalidSignatureException', `Credential should be scoped to a valid region. (got '${scopeRegion}', expected '${region}')`);
  if (scopeService !== service) return fail('InvalidSignatureException', `Credential should be scoped to correct service: '${service}'. `);
  if (terminator !== 'aws4_request') return fail('InvalidSignatureException', "Credential should be scoped with a valid terminator: 'aws4_request'.");
  const signed = signedHeaderList.split(';');
  if (!signed.includes('host')) return fail('InvalidSignatureException', "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.");
  const sha = one('x-amz-content-sha256');
  if (sha !== undefined && sha !== 'UNSIGNED-PAYLOAD' && sha !== sha256hex(req.body)) {
    return fail('InvalidSignatureException', 'The provided x-amz-content-sha256 header does not match what was computed.');
  }

  const headers = {};
  for (const name of signed) {
    if (!req.headers[name]) return fail('InvalidSignatureException', `${MSG_SIG_MISMATCH} (signed header '${name}' is missing from the request)`);
    headers[name] = req.headers[name].join(',');
  }
  const q = req.rawPath.indexOf('?');
  const request = new HttpRequest({
    method: req.method,
    protocol: 'https:',
    hostname: headers.host,
    path: q < 0 ? req.rawPath : req.rawPath.slice(0, q),
    query: parseQuery(q < 0 ? '' : req.rawPath.slice(q + 1)),
    headers,
    body: req.body,
  });
  const signer = new SignatureV4({ service, region, credentials: cred, sha256: Sha256, applyChecksum: false, uriEscapePath: true });
  const resigned = await signer.sign(request, { signingDate, signableHeaders: new Set(signed) });
  const expected = /Signature=([0-9a-f]+)/.exec(resigned.headers.authorization)[1];
  const expectedSigned = /SignedHeaders=([^,\s]+)/.exec(resigned.headers.authorization)[1];
  if (expected === signature && expectedSigned === signedHeaderList) return { ok: true, accessKeyId: akid };
  // Bedrock prints the canonical request it computed: do the same, it makes proxy bugs obvious.
  const canonicalHeaders = Object.fromEntries(Object.keys(resigned.headers)
    .filter((k) => signed.includes(k.toLowerCase()))
    .map((k) => [k.toLowerCase(), String(resigned.headers[k]).trim().replace(/\s+/g, ' ')]));
  const canonicalRequest = signer.createCanonicalRequest(request, canonicalHeaders, sha ?? sha256hex(req.body));
  return fail('InvalidSignatureException',
    `${MSG_SIG_MISMATCH}\n\nThe Canonical String for this request should have been\n'${canonicalRequest}'\n`,
    { canonicalRequest });
}

// ---------------------------------------------------------------- content

const tokens = (s) => Math.max(1, Math.ceil(Buffer.byteLength(s) / 4));

function textOf(content) {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) return content.map((b) => (typeof b?.text === 'string' ? b.text : '')).join('');
  return '';
}

/** Text of the last user message of an Anthropic or Converse request body (JSON object). */
function lastUserText(json) {
  const msgs = Array.isArray(json?.messages) ? json.messages : [];
  for (let i = msgs.length - 1; i >= 0; i--) if (msgs[i]?.role === 'user') return textOf(msgs[i].content);
  return '';
}

function splitText(text, n) {
  const parts = [];
  const size = Math.max(1, Math.ceil(text.length / n));
  for (let i = 0; i < text.length; i += size) parts.push(text.slice(i, i + size));
  while (parts.length < n) parts.push('');
  return parts;
}

/** The Anthropic SSE data objects of one streamed answer, with `deltas` text deltas. */
function anthropicStreamEvents({ modelId, text, inputTokens, outputTokens, deltas = 3, latency = 20 }) {
  const id = `msg_bdrk_${randomBytes(12).toString('hex')}`;
  return [
    {
      type: 'message_start',
      message: {
        id, type: 'message', role: 'assistant', model: modelId, content: [], stop_reason: null, stop_sequence: null,
        usage: { input_tokens: inputTokens, output_tokens: 1 },
      },
    },
    { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
    ...splitText(text, deltas).map((t) => ({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: t } })),
    { type: 'content_block_stop', index: 0 },
    { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: outputTokens } },
    {
      type: 'message_stop',
      'amazon-bedrock-invocationMetrics': {
        inputTokenCount: inputTokens, outputTokenCount: outputTokens, invocationLatency: latency, firstByteLatency: Math.floor(latency / 2),
      },
    },
  ];
}

function converseStreamEvents({ text, inputTokens, outputTokens, deltas = 3, latency = 20 }) {
  return [
    ['messageStart', { role: 'assistant' }],
    ...splitText(text, deltas).map((t) => ['contentBlockDelta', { contentBlockIndex: 0, delta: { text: t } }]),
    ['contentBlockStop', { contentBlockIndex: 0 }],
    ['messageStop', { stopReason: 'end_turn' }],
    ['metadata', {
      usage: { inputTokens, outputTokens, totalTokens: inputTokens + outputTokens },
      metrics: { latencyMs: latency },
    }],
  ];
}

// ---------------------------------------------------------------- server

function pemOf(v) {
  if (Buffer.isBuffer(v)) return v;
  return typeof v === 'string' && v.includes('-----BEGIN') ? v : readFileSync(v);
}

/** Scenario name from a decoded model id: `…test.<name>` after any prefix, or null. */
export function scenarioOf(modelId) {
  const m = /(?:^|[.:/])test\.([A-Za-z0-9-]+)$/.exec(modelId ?? '') ?? /(?:^|[.:/])test\.([A-Za-z0-9-]+)/.exec(modelId ?? '');
  return m ? m[1] : null;
}

function parseSize(s) {
  const m = /^(\d+)([kKmMgG]?)$/.exec(s);
  if (!m) return NaN;
  return Number(m[1]) * ({ '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 })[m[2].toLowerCase()];
}

/**
 * Start the fake. Options:
 *   tls: {cert, key} (paths or PEM) → https; region ('us-east-1');
 *   credentials: {accessKeyId, secretAccessKey, sessionToken?, expired?} or an array of them → SigV4 required;
 *   bearerToken: string → `Authorization: Bearer <it>` accepted (alone: required);
 *   neither → no authentication (signatureValid = null);
 *   maxSkewMs (300000; null disables the clock check), slowFirstByteMs (2000), frameIntervalMs (1),
 *   foreverIntervalMs (50), foreverMaxMs (120000), bigFrameBytes (98304), recordLimit (4 MiB of response bytes),
 *   keepAliveTimeoutMs (5000).
 */
export async function startFakeBedrock(options = {}) {
  const opts = {
    region: 'us-east-1', maxSkewMs: 5 * 60 * 1000, slowFirstByteMs: 2000, frameIntervalMs: 1,
    foreverIntervalMs: 50, foreverMaxMs: 120000, bigFrameBytes: 96 * 1024, recordLimit: 4 * 1024 * 1024,
    keepAliveTimeoutMs: 5000, ...options,
  };
  let credentials = opts.credentials ? [].concat(opts.credentials) : null;
  const expiredTokens = new Set();
  const fake = new EventEmitter();
  const requests = [];
  const closedStreams = [];
  const socketIds = new WeakMap();
  let nextConnId = 0;
  let handler = null;
  let handlerBeforeAuth = false;
  let closing = false;

  const server = opts.tls
    ? https.createServer({ cert: pemOf(opts.tls.cert), key: pemOf(opts.tls.key) })
    : http.createServer();
  server.keepAliveTimeout = opts.keepAliveTimeoutMs;
  // A fake that a failing test forgot to close must not keep the test process alive
  // (nor, through a stalled connection, the daemon that the exit hook would kill).
  server.on('connection', (socket) => socket.unref());

  server.on('request', (req, res) => {
    onRequest(req, res).catch((err) => {
      fake.emit('handlerError', err);
      if (!res.headersSent) sendBedrockError(res, 500, 'InternalServerException', `fake-bedrock: ${err.stack ?? err}`);
      else res.destroy();
    });
  });

  async function onRequest(req, res) {
    if (!socketIds.has(req.socket)) socketIds.set(req.socket, ++nextConnId);
    const rec = {
      id: requests.length + 1,
      connId: socketIds.get(req.socket),
      time: Date.now(),
      method: req.method,
      rawPath: req.url,
      headers: req.rawHeaders,
      headersDistinct: lowerDistinct(req.rawHeaders),
      sni: req.socket.servername ?? null,
      body: null,
      signatureValid: null,
      authMode: 'none',
      authError: null,
      operation: null,
      modelId: null,
      scenario: null,
      usage: null,
      response: {
        status: null, headers: null, body: Buffer.alloc(0), truncated: false, bytesWritten: 0, framesSent: 0,
        drainWaits: 0, firstByteAt: null, closedAt: null, complete: false, aborted: false, sha256: null,
      },
      /** First value of a request header (case-insensitive), or undefined. */
      header(name) { return this.headersDistinct[name.toLowerCase()]?.[0]; },
      /** Whether the request carried header `name`. */
      has(name) { return name.toLowerCase() in this.headersDistinct; },
    };
    requests.push(rec);
    instrument(res, rec);
    res.on('error', () => {});
    rec.body = await readAll(req);
    parseRoute(rec);
    await authenticate(rec);
    fake.emit('request', rec);

    if (handler && handlerBeforeAuth && await handler(req, res, rec)) return;
    if (rec.authError) {
      const e = rec.authError;
      return sendBedrockError(res, e.status, e.type, e.message, { namespace: CORAL });
    }
    if (handler && !handlerBeforeAuth && await handler(req, res, rec)) return;
    await route(req, res, rec);
  }

  function instrument(res, rec) {
    const r = rec.response;
    const hash = createHash('sha256');
    const capture = (chunk, encoding) => {
      if (chunk == null || typeof chunk === 'function') return;
      const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk, typeof encoding === 'string' ? encoding : 'utf8');
      r.bytesWritten += buf.length;
      hash.update(buf);
      r.firstByteAt ??= Date.now();
      if (r.body.length + buf.length <= opts.recordLimit) r.body = Buffer.concat([r.body, buf]);
      else r.truncated = true;
    };
    const { write, end, writeHead } = res;
    res.write = function (chunk, encoding, cb) { capture(chunk, encoding); return write.call(this, chunk, encoding, cb); };
    res.end = function (chunk, encoding, cb) { capture(chunk, encoding); return end.call(this, chunk, encoding, cb); };
    res.writeHead = function (status, ...rest) {
      r.status = status;
      const result = writeHead.call(this, status, ...rest);
      r.headers = this.getHeaders();
      return result;
    };
    res.on('close', () => {
      r.closedAt = Date.now();
      r.sha256 = hash.digest('hex'); // of every body byte written, also past recordLimit
      r.complete = res.writableFinished;
      r.aborted = !res.writableFinished;
      r.status ??= res.statusCode;
      if (STREAM_OPS.has(rec.operation) || rec.scenario === 'stall') closedStreams.push(rec);
      fake.emit('close', rec);
    });
  }

  function parseRoute(rec) {
    const path = rec.rawPath.split('?')[0];
    const api = {
      '/anthropic/v1/messages': 'anthropic-messages',
      '/anthropic/v1/messages/count_tokens': 'anthropic-count-tokens',
      '/openai/v1/chat/completions': 'openai-chat',
      '/openai/v1/responses': 'openai-responses',
    }[path];
    if (api) {
      rec.operation = api;
      try { rec.modelId = JSON.parse(rec.body.toString('utf8')).model ?? null; } catch { rec.modelId = null; }
      rec.scenario = scenarioOf(rec.modelId);
      rec.service = 'bedrock';
      return;
    }
    let m = /^\/model\/([^/]+)\/([a-z-]+)$/.exec(path);
    if (m && MODEL_OPS.has(m[2])) {
      rec.operation = m[2];
      try { rec.modelId = decodeURIComponent(m[1]); } catch { rec.modelId = m[1]; rec.badModelId = true; }
      rec.scenario = scenarioOf(rec.modelId);
      return;
    }
    m = /^\/guardrail\/([^/]+)\/version\/([^/]+)\/apply$/.exec(path);
    if (m) {
      rec.operation = 'apply-guardrail';
      rec.guardrail = { id: decodeURIComponent(m[1]), version: decodeURIComponent(m[2]) };
    }
  }

  async function authenticate(rec) {
    const h = rec.headersDistinct;
    const auth = h.authorization?.[0] ?? '';
    if (opts.bearerToken && (auth.startsWith('Bearer ') || !credentials)) {
      rec.authMode = 'bearer';
      const sigHeaders = ['x-amz-date', 'x-amz-security-token', 'x-amz-content-sha256'].filter((n) => n in h);
      if (h.authorization?.length !== 1 || auth !== `Bearer ${opts.bearerToken}`) {
        rec.authError = { status: 403, type: 'UnrecognizedClientException', message: MSG_TOKEN_INVALID };
      } else if (sigHeaders.length) {
        rec.authError = { status: 403, type: 'UnrecognizedClientException', message: `Bearer request must not carry SigV4 headers (${sigHeaders.join(', ')})` };
      }
      rec.signatureValid = !rec.authError;
      return;
    }
    if (!credentials) return;
    rec.authMode = 'sigv4';
    const v = await verifySigV4({ method: rec.method, rawPath: rec.rawPath, headers: h, body: rec.body },
      { credentials, region: opts.region, maxSkewMs: opts.maxSkewMs, expiredTokens });
    rec.signatureValid = v.ok;
    if (!v.ok) rec.authError = v;
  }

  async function route(req, res, rec) {
    if (req.method === 'POST' && /^(anthropic|openai)-/.test(rec.operation ?? '')) return apiRoute(req, res, rec);
    if (req.method !== 'POST' || !rec.operation) {
      return sendBedrockError(res, 404, 'UnknownOperationException', `Unknown operation ${req.method} ${rec.rawPath.split('?')[0]}`, { namespace: CORAL });
    }
    if (rec.badModelId) return sendBedrockError(res, 400, 'ValidationException', 'The provided model identifier is invalid.');
    const sc = rec.scenario ?? '';
    let m = /^error-(\d{3})$/.exec(sc);
    if (m && ERROR_SCENARIOS[m[1]]) {
      const e = ERROR_SCENARIOS[m[1]];
      return sendBedrockError(res, Number(m[1]), e.type, e.message, { extra: e.extra, headers: e.headers });
    }
    if (sc === 'stall') return; // never answer; the socket stays open until the client (or close()) ends it
    if ((m = /^slow-first-byte(?:-(\d+))?$/.exec(sc))) {
      const q = parseQuery(rec.rawPath.split('?')[1]);
      await sleepUnlessClosed(res, m[1] ? Number(m[1]) : Number(q.delayMs ?? opts.slowFirstByteMs));
      if (res.destroyed) return;
    }
    let json = null;
    const rawBodyOp = rec.operation === 'invoke' || rec.operation === 'invoke-with-response-stream';
    if (!rawBodyOp || rec.body.length) {
      try { json = JSON.parse(rec.body.toString('utf8')); } catch {
        return sendBedrockError(res, 400, 'ValidationException', 'Malformed input request, please reformat your input and try again.');
      }
    }
    const userText = rec.operation === 'count-tokens' ? countTokensText(json)
      : rec.operation === 'apply-guardrail' ? textOf((json?.content ?? []).map((c) => c?.text ?? {}))
        : lastUserText(json);
    const text = userText ? `echo: ${userText}` : 'Hello from fake Bedrock';
    const inputTokens = tokens(userText || rec.body.toString('utf8'));
    const outputTokens = tokens(text);
    rec.usage = { inputTokens, outputTokens };
    const ctx = { modelId: rec.modelId, text, inputTokens, outputTokens };

    switch (rec.operation) {
      case 'invoke': return sendInvoke(res, ctx);
      case 'converse': return sendJson(res, {
        output: { message: { role: 'assistant', content: [{ text }] } },
        stopReason: 'end_turn',
        usage: { inputTokens, outputTokens, totalTokens: inputTokens + outputTokens },
        metrics: { latencyMs: 20 },
      });
      case 'count-tokens': return sendJson(res, { inputTokens });
      case 'apply-guardrail': return sendJson(res, {
        usage: {
          topicPolicyUnits: 1, contentPolicyUnits: 1, wordPolicyUnits: 1, sensitiveInformationPolicyUnits: 1,
          sensitiveInformationPolicyFreeUnits: 0, contextualGroundingPolicyUnits: 0,
        },
        action: 'NONE',
        actionReason: `No action. ${text}`,
        outputs: [],
        assessments: [{}],
      });
      default: return sendStream(res, rec, ctx);
    }
  }

  /** bedrock-runtime's Anthropic (SSE) and OpenAI-compatible routes. */
  async function apiRoute(req, res, rec) {
    let json;
    try { json = JSON.parse(rec.body.toString('utf8')); } catch {
      return sendBedrockError(res, 400, 'ValidationException', 'Malformed input request, please reformat your input and try again.');
    }
    const sc = rec.scenario ?? '';
    const m = /^error-(\d{3})$/.exec(sc);
    if (m && ERROR_SCENARIOS[m[1]]) {
      const e = ERROR_SCENARIOS[m[1]];
      return sendBedrockError(res, Number(m[1]), e.type, e.message, { extra: e.extra, headers: e.headers });
    }
    if (sc === 'native-error') {
      const body = JSON.stringify({ type: 'error', error: { type: 'invalid_request_error', message: 'prompt is too long: 300000 tokens > 200000 maximum' } });
      res.writeHead(400, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
      return res.end(body);
    }
    if (rec.operation === 'anthropic-count-tokens') {
      const input = tokens(lastUserText(json) || rec.body.toString('utf8'));
      rec.usage = { inputTokens: input, outputTokens: 0 };
      return sendJson(res, { input_tokens: input });
    }
    const openai = rec.operation.startsWith('openai-');
    const userText = openai ? openaiUserText(json) : lastUserText(json);
    const text = userText ? `echo: ${userText}` : 'Hello from fake Bedrock';
    const inputTokens = tokens(userText || rec.body.toString('utf8'));
    const outputTokens = tokens(text);
    rec.usage = { inputTokens, outputTokens };
    const ctx = { modelId: rec.modelId, text, inputTokens, outputTokens };
    if (rec.operation === 'anthropic-messages') {
      if (!json.stream) {
        return sendJson(res, {
          id: `msg_bdrk_${randomBytes(12).toString('hex')}`, type: 'message', role: 'assistant', model: rec.modelId,
          content: [{ type: 'text', text }], stop_reason: 'end_turn', stop_sequence: null,
          usage: { input_tokens: inputTokens, output_tokens: outputTokens, cache_read_input_tokens: 3, cache_creation_input_tokens: 2 },
        });
      }
      const events = anthropicStreamEvents(ctx).slice(0, -1).concat([{ type: 'message_stop' }]);
      events[0].message.usage.cache_read_input_tokens = 3;
      events[0].message.usage.cache_creation_input_tokens = 2;
      return sendSse(res, rec, events.map((e) => `event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`));
    }
    const id = `${randomBytes(8).toString('hex')}`;
    const usage = openai && rec.operation === 'openai-chat'
      ? { prompt_tokens: inputTokens, completion_tokens: outputTokens, total_tokens: inputTokens + outputTokens, prompt_tokens_details: { cached_tokens: 4 } }
      : { input_tokens: inputTokens, output_tokens: outputTokens, total_tokens: inputTokens + outputTokens, input_tokens_details: { cached_tokens: 4 }, output_tokens_details: { reasoning_tokens: 0 } };
    if (rec.operation === 'openai-chat') {
      const base = { id: `chatcmpl-${id}`, object: 'chat.completion', created: 1700000000, model: rec.modelId };
      if (!json.stream) {
        return sendJson(res, { ...base, choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }], usage });
      }
      const chunk = (delta, finish = null, extra = {}) => ({ ...base, object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: finish }], ...extra });
      const lines = [chunk({ role: 'assistant', content: '' }), ...splitText(text, 3).map((t) => chunk({ content: t })), chunk({}, 'stop')];
      if (json.stream_options?.include_usage) lines.push({ ...base, object: 'chat.completion.chunk', choices: [], usage });
      return sendSse(res, rec, [...lines.map((l) => `data: ${JSON.stringify(l)}\n\n`), 'data: [DONE]\n\n']);
    }
    const response = {
      id: `resp_${id}`, object: 'response', created_at: 1700000000, status: 'completed', model: rec.modelId,
      output: [{ type: 'message', id: `msg_${id}`, status: 'completed', role: 'assistant', content: [{ type: 'output_text', text, annotations: [] }] }],
      usage,
    };
    if (!json.stream) return sendJson(res, response);
    const ev = (type, data) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
    let seq = 0;
    return sendSse(res, rec, [
      ev('response.created', { sequence_number: seq++, response: { ...response, status: 'in_progress', output: [], usage: null } }),
      ...splitText(text, 3).map((t) => ev('response.output_text.delta', { sequence_number: seq++, item_id: `msg_${id}`, output_index: 0, content_index: 0, delta: t })),
      ev('response.completed', { sequence_number: seq++, response }),
    ]);
  }

  async function sendSse(res, rec, events) {
    const sc = rec.scenario ?? '';
    res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    res.setHeader('x-amzn-RequestId', randomUUID());
    res.writeHead(200);
    res.flushHeaders();
    const write = async (chunk) => {
      if (res.destroyed || closing) return false;
      rec.response.framesSent++;
      if (!res.write(chunk)) await drainOrClose(res);
      return !res.destroyed;
    };
    if (sc === 'stream-bytewise') {
      res.socket?.setNoDelay(true);
      const all = Buffer.from(events.join(''));
      for (let i = 0; i < all.length; i++) {
        if (!await write(all.subarray(i, i + 1))) return;
        await sleepUnlessClosed(res, 1);
      }
      return res.end();
    }
    if (sc === 'stream-cut') {
      for (const e of events.slice(0, 2)) if (!await write(e)) return;
      await new Promise((r) => res.write(events[2].slice(0, Math.floor(events[2].length / 2)), r));
      await sleepUnlessClosed(res, 20);
      return res.socket?.destroy();
    }
    for (const e of events) {
      if (!await write(e)) return;
      if (opts.frameIntervalMs > 0) await sleepUnlessClosed(res, opts.frameIntervalMs);
    }
    res.end();
  }

  function openaiUserText(json) {
    if (typeof json?.input === 'string') return json.input;
    if (Array.isArray(json?.input)) return textOf(json.input.at(-1)?.content);
    return lastUserText(json);
  }

  function countTokensText(json) {
    const inv = json?.input?.invokeModel?.body;
    if (typeof inv === 'string') {
      try { return lastUserText(JSON.parse(Buffer.from(inv, 'base64').toString('utf8'))); } catch { return ''; }
    }
    return lastUserText(json?.input?.converse);
  }

  function sendJson(res, obj, headers = {}) {
    const body = Buffer.from(JSON.stringify(obj));
    res.setHeader('Content-Type', 'application/json');
    res.setHeader('Content-Length', body.length);
    res.setHeader('x-amzn-RequestId', randomUUID());
    for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
    res.writeHead(200);
    res.end(body);
  }

  function sendInvoke(res, { modelId, text, inputTokens, outputTokens }) {
    sendJson(res, {
      id: `msg_bdrk_${randomBytes(12).toString('hex')}`,
      type: 'message',
      role: 'assistant',
      model: modelId,
      content: [{ type: 'text', text }],
      stop_reason: 'end_turn',
      stop_sequence: null,
      usage: { input_tokens: inputTokens, output_tokens: outputTokens },
    }, {
      'X-Amzn-Bedrock-Input-Token-Count': String(inputTokens),
      'X-Amzn-Bedrock-Output-Token-Count': String(outputTokens),
      'X-Amzn-Bedrock-Invocation-Latency': '20',
    });
  }

  async function sendStream(res, rec, ctx) {
    const converse = rec.operation === 'converse-stream';
    const sc = rec.scenario ?? '';
    res.setHeader('Content-Type', 'application/vnd.amazon.eventstream');
    res.setHeader('x-amzn-RequestId', randomUUID());
    if (!converse) res.setHeader('X-Amzn-Bedrock-Content-Type', 'application/json');
    res.writeHead(200);
    res.flushHeaders();
    const write = async (frame) => {
      if (res.destroyed || closing) return false;
      rec.response.framesSent++;
      if (!res.write(frame)) {
        rec.response.drainWaits++;
        await drainOrClose(res);
      }
      return !res.destroyed;
    };
    const pace = () => (opts.frameIntervalMs > 0 ? sleepUnlessClosed(res, opts.frameIntervalMs) : Promise.resolve());
    let m;
    let deltas = 3;
    if ((m = /^stream-frames-(\d+)$/.exec(sc))) deltas = Math.max(1, Number(m[1]) - (converse ? 4 : 5));
    const frames = converse
      ? converseStreamEvents({ ...ctx, deltas }).map(([t, p]) => encodeConverseFrame(t, p))
      : anthropicStreamEvents({ ...ctx, deltas }).map((e) => encodeChunkFrame(e));
    const head = converse ? 1 : 2; // frames before the first text delta

    if (sc === 'stream-throttle') {
      for (const f of frames.slice(0, 3)) if (!await write(f)) return;
      await write(encodeExceptionFrame('throttlingException', 'Too many tokens, please wait before trying again.'));
      return res.end();
    }
    if (sc === 'stream-truncated') {
      for (const f of frames.slice(0, 4)) if (!await write(f)) return;
      return res.end();
    }
    if (sc === 'stream-bytewise') {
      res.socket?.setNoDelay(true);
      const all = Buffer.concat(frames);
      for (let i = 0; i < all.length; i++) {
        if (!await write(all.subarray(i, i + 1))) return;
        await sleepUnlessClosed(res, 1);
      }
      return res.end();
    }
    if ((m = /^stream-pause-(\d+)$/.exec(sc))) {
      for (const f of frames.slice(0, 3)) if (!await write(f)) return;
      await sleepUnlessClosed(res, Number(m[1]));
      for (const f of frames.slice(3)) if (!await write(f)) return;
      return res.end();
    }
    if (sc === 'stream-cut') {
      for (const f of frames.slice(0, 2)) if (!await write(f)) return;
      const third = frames[2];
      await new Promise((resolveWrite) => res.write(third.subarray(0, Math.floor(third.length / 2)), resolveWrite));
      await sleepUnlessClosed(res, 20);
      return res.socket?.destroy();
    }
    if (sc === 'stream-forever' || (m = /^stream-bytes-(\d+[kKmMgG]?)$/.exec(sc))) {
      const limit = sc === 'stream-forever' ? Infinity : parseSize(m[1]);
      const big = sc !== 'stream-forever';
      const filler = big ? 'x'.repeat(opts.bigFrameBytes) : 'tick ';
      const delta = converse
        ? encodeConverseFrame('contentBlockDelta', { contentBlockIndex: 0, delta: { text: filler } }, { pad: false })
        : encodeChunkFrame({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: filler } }, { pad: false });
      const started = Date.now();
      for (const f of frames.slice(0, head)) if (!await write(f)) return;
      while (rec.response.bytesWritten < limit) {
        if (!await write(delta)) return;
        if (!big) {
          if (Date.now() - started > opts.foreverMaxMs) return res.destroy(); // bounded, whatever happens
          await sleepUnlessClosed(res, opts.foreverIntervalMs);
        }
      }
      for (const f of frames.slice(-3)) if (!await write(f)) return;
      return res.end();
    }
    for (const f of frames) {
      if (!await write(f)) return;
      await pace();
    }
    res.end();
  }

  await new Promise((resolveListen, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolveListen);
  });
  server.unref();
  const { port } = server.address();
  const url = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`;

  return Object.assign(fake, {
    url,
    port,
    host: '127.0.0.1',
    server,
    requests,
    closedStreams,
    /** fn(req, res, rec) → true (or a promise of it) when it answered; beforeAuth: run even for unauthenticated requests. */
    setHandler(fn, { beforeAuth = false } = {}) { handler = fn; handlerBeforeAuth = beforeAuth; },
    /** Replace the accepted credentials (object, array, or null for no SigV4 checking). */
    setCredentials(c) { credentials = c ? [].concat(c) : null; },
    /** Make requests signed with this session token fail with ExpiredTokenException. */
    expireSessionToken(token) { expiredTokens.add(token); },
    /** Resolve with the first recorded request matching pred (already received or future). */
    waitForRequest(pred = () => true, timeoutMs = 5000) {
      return waitFor(() => requests.find(pred), { timeoutMs, message: 'fake-bedrock: no matching request' });
    },
    /** Resolve with the first request matching pred whose connection/response has closed. */
    waitForClose(pred = () => true, timeoutMs = 5000) {
      return waitFor(() => requests.find((r) => r.response.closedAt && pred(r)), { timeoutMs, message: 'fake-bedrock: no matching closed request' });
    },
    reset() { requests.length = 0; closedStreams.length = 0; },
    async close() {
      closing = true;
      const closed = new Promise((r) => server.close(r));
      server.closeAllConnections();
      await closed;
    },
  });
}

function lowerDistinct(raw) {
  const out = {};
  for (let i = 0; i < raw.length; i += 2) (out[raw[i].toLowerCase()] ??= []).push(raw[i + 1]);
  return out;
}

function drainOrClose(res) {
  if (res.destroyed || res.closed) return Promise.resolve();
  return new Promise((r) => {
    const done = () => { res.off('drain', done); res.off('close', done); r(); };
    res.on('drain', done);
    res.on('close', done);
  });
}

async function sleepUnlessClosed(res, ms) {
  if (res.destroyed) return;
  const ac = new AbortController();
  const onClose = () => ac.abort();
  res.once('close', onClose);
  try { await delay(ms, undefined, { signal: ac.signal, ref: false }); } catch { /* closed */ } finally { res.off('close', onClose); }
}

