// Helpers for the Bedrock relay tests (relay*.test.mjs): a fake Bedrock and
// the daemon pointed at it, our credentials for the clients, the real SDK
// clients configured the way users configure them, and readers for the usage
// table, the metrics and the access log.
//
//   const t = await startRelay({ fake: { credentials: CREDS } });
//   const tok = await t.token('dev@example.com');
//   const out = await t.sdk({ token: tok }).send(new InvokeModelCommand({...}));
//   await t.stop();
import assert from 'node:assert/strict';
import net from 'node:net';
import AnthropicBedrock from '@anthropic-ai/bedrock-sdk';
import { BedrockRuntimeClient } from '@aws-sdk/client-bedrock-runtime';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { runCommand, startDaemon } from './daemon.mjs';
import { startFakeBedrock } from './fake-bedrock.mjs';
import { withDb } from './tokens.mjs';
import { noticed } from './pg.mjs';
import { waitFor } from './util.mjs';

// Nothing from the caller's environment may pick credentials or endpoints for the clients.
for (const k of Object.keys(process.env)) if (/^(AWS_|ANTHROPIC_)/.test(k)) delete process.env[k];

export const REGION = 'us-east-1';
export const ISSUER = 'https://proxy.test';
export const CREDS = { accessKeyId: 'AKIDRELAYTESTEXAMPLE', secretAccessKey: 'relay/test+secret/EXAMPLEKEY0123456789' };
export const MODEL = 'us.anthropic.claude-sonnet-4-20250514-v1:0';
export const ARN = 'arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123';

export const anthropicBody = (text, extra = {}) => JSON.stringify({
  anthropic_version: 'bedrock-2023-05-31', max_tokens: 64, messages: [{ role: 'user', content: text }], ...extra,
});

/** Config for a daemon relaying to fake (SigV4 with CREDS unless aws is overridden). */
export function relayConfig(fake, over = {}) {
  const aws = fake ? {
    endpoint_url: fake.url, region: REGION, access_key_id: CREDS.accessKeyId, secret_access_key: CREDS.secretAccessKey,
  } : { region: REGION };
  return {
    jwt: { issuer: ISSUER },
    access: { allow_any_user: true },
    ...over,
    // aws: null drops every key but the region; a key set to null is dropped.
    aws: over.aws === null ? { region: REGION }
      : Object.fromEntries(Object.entries({ ...aws, ...(over.aws ?? {}) }).filter(([, v]) => v !== null)),
  };
}

/**
 * Start a fake Bedrock (unless fake: false) and a daemon relaying to it.
 * opts: {fake: options for startFakeBedrock | false, config: merged over relayConfig, env, args, daemon: more startDaemon opts}
 */
export async function startRelay(opts = {}) {
  const fake = opts.fake === false ? null : await startFakeBedrock({ region: REGION, credentials: CREDS, ...(opts.fake ?? {}) });
  let d;
  try {
    d = await startDaemon({
      config: relayConfig(fake, opts.config ?? {}),
      env: { AWS_EC2_METADATA_DISABLED: 'true', ...(opts.env ?? {}) },
      args: opts.args,
      ...(opts.daemon ?? {}),
    });
  } catch (e) {
    await fake?.close();
    throw e;
  }
  const t = {
    fake, d,
    /** An access token for user (token mint). */
    async token(user = 'dev@example.com', ...more) {
      const r = await runCommand(['token', 'mint', '--user', user, ...more], { dir: d.dir });
      assert.equal(r.code, 0, r.stderr);
      return r.stdout.trim();
    },
    /** An API key for user (key create); returns {key, info}. */
    async key(user = 'dev@example.com', ...more) {
      const r = await runCommand(['key', 'create', '--user', user, ...more], { dir: d.dir });
      assert.equal(r.code, 0, r.stderr);
      const key = r.stdout.trim();
      // On PostgreSQL: once the daemon has heard of it (lib/pg.mjs).
      await noticed(() => d.request('/auth/validate', { headers: { 'X-Api-Key': key } }),
        (v) => !/unknown or revoked API key/.test(v.text()));
      return { key, info: JSON.parse(/^(\{.*\}) \(shown once/m.exec(r.stderr)[1]) };
    },
    /** @aws-sdk/client-bedrock-runtime with our credential as its bearer token. */
    sdk({ token, prefix = '', ...extra } = {}) {
      return new BedrockRuntimeClient({
        endpoint: `${d.url}${prefix}`,
        region: REGION,
        token: { token },
        authSchemePreference: ['httpBearerAuth'],
        requestHandler: new NodeHttpHandler(),
        maxAttempts: 1,
        ...extra,
      });
    },
    /** @anthropic-ai/bedrock-sdk as Claude Code uses it: baseURL proxy/bedrock, skipAuth, our token as a bearer. */
    absdk({ token, apiKey, prefix = '/bedrock', ...extra } = {}) {
      return new AnthropicBedrock({
        baseURL: `${d.url}${prefix}`,
        awsRegion: REGION,
        ...(apiKey ? { apiKey } : { skipAuth: true, defaultHeaders: { Authorization: `Bearer ${token}` } }),
        maxRetries: 0,
        ...extra,
      });
    },
    /** POST path with our bearer token through node:http (raw path, exact headers). */
    post(path, { token, body = anthropicBody('hi'), headers = {}, ...ropts } = {}) {
      return d.request(path, {
        method: 'POST',
        path,
        headers: { 'Content-Type': 'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}), ...headers },
        body,
        ...ropts,
      });
    },
    async stop() {
      try {
        await d.stop();
      } finally {
        await fake?.close();
      }
    },
  };
  return t;
}

/** All usage rows, oldest first. */
export const usageRows = (dir) => withDb(dir, (db) => db.prepare('SELECT * FROM usage ORDER BY id').all());

/** Wait until the usage table has at least n rows (they are written in batches about every second). */
export function waitUsage(dir, n, timeoutMs = 4000) {
  return waitFor(() => {
    const rows = usageRows(dir);
    return rows.length >= n ? rows : null;
  }, { timeoutMs, intervalMs: 100, message: `fewer than ${n} usage rows after ${timeoutMs} ms` });
}

/** Parse the Prometheus text: [{name, labels: {}, value}]. */
export async function scrape(d) {
  const r = await d.request('/metrics');
  assert.equal(r.status, 200, r.text());
  const out = [];
  for (const line of r.text().split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[2]) for (const lm of m[2].matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g)) labels[lm[1]] = lm[2];
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

/** Value of the one series of name whose labels include want (0 if none). */
export function metricValue(series, name, want = {}) {
  const s = series.filter((x) => x.name === name && Object.entries(want).every(([k, v]) => x.labels[k] === v));
  return s.reduce((a, x) => a + x.value, 0);
}

/** The access log entries (msg "request") for a route, or all. */
export const accessLines = (d, route) => d.logs.filter((e) => typeof e === 'object' && e?.msg === 'request'
  && (!route || e.route === route));

/**
 * A raw HTTP/1.1 request on a plain socket, so that the test controls reading:
 * returns {socket, head: Promise<{status, headers}>, body: Buffer[] (chunk-decoded as it arrives), ...}.
 */
export function rawStream(url, path, { headers = {}, body = '' } = {}) {
  const u = new URL(url);
  const socket = net.connect(Number(u.port), u.hostname);
  const lines = [`POST ${path} HTTP/1.1`, `Host: ${u.host}`, `Content-Length: ${Buffer.byteLength(body)}`];
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
  socket.write(`${lines.join('\r\n')}\r\n\r\n${body}`);
  return socket;
}

/** Resident set size of pid in bytes (VmRSS). */
export async function rssBytes(pid) {
  const { readFileSync } = await import('node:fs');
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}
