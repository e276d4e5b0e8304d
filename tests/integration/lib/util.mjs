// Small helpers shared by the integration-test libraries.
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';

/** tests/integration (the directory holding package.json). */
export const integrationDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** Top of the source tree: two levels up from tests/integration. */
export const repoTop = resolve(integrationDir, '..', '..');

export const sleep = (ms) => delay(ms);

export const sha256hex = (data) => createHash('sha256').update(data).digest('hex');

export const randomHex = (n = 8) => randomBytes(n).toString('hex');

/** mkdtemp under os.tmpdir(). */
export function makeTempDir(prefix = 'bsp-it-') {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function removeDir(dir) {
  rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
}

export const isPlainObject = (v) =>
  v !== null && typeof v === 'object' && !Array.isArray(v) && !Buffer.isBuffer(v);

/** Deep merge: objects merge recursively, anything else in `over` replaces. */
export function deepMerge(base, over) {
  if (!isPlainObject(base) || !isPlainObject(over)) return over === undefined ? base : over;
  const out = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = deepMerge(base[k], v);
  return out;
}

/** Reject with `message` when `promise` has not settled after `ms`. */
export async function withTimeout(promise, ms, message = `timed out after ${ms} ms`) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Poll `fn` (sync or async) until it returns a truthy value; return that value.
 * message: the error's text, or a function making it at the timeout (to say what was seen).
 */
export async function waitFor(fn, { timeoutMs = 5000, intervalMs = 25, message } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() >= deadline) {
      throw new Error((typeof message === 'function' ? message() : message)
        ?? `waitFor: condition not met within ${timeoutMs} ms`);
    }
    await delay(intervalMs);
  }
}

/** Read a whole stream into one Buffer. */
export async function readAll(stream) {
  const chunks = [];
  for await (const c of stream) chunks.push(typeof c === 'string' ? Buffer.from(c) : c);
  return Buffer.concat(chunks);
}

/** Parse "host:port" or "[v6]:port" as logged by the daemon. */
export function parseHostPort(addr) {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(addr) ?? /^([^:]+):(\d+)$/.exec(addr);
  if (!m) throw new Error(`cannot parse address ${JSON.stringify(addr)}`);
  return { host: m[1], port: Number(m[2]), ipv6: addr.startsWith('[') };
}

/**
 * Low-level HTTP(S) request with node:http, for what fetch() cannot do:
 * custom CA, exact raw path (no normalisation), duplicate headers, Host override.
 * `headers` may be an object or a flat [name, value, ...] array (sent as is).
 * Resolves {status, headers, rawHeaders, body: Buffer, text(), json()}; with
 * `stream: true` resolves {status, headers, rawHeaders, res, req} without reading the body.
 */
export function request(url, {
  method = 'GET', path, headers = {}, body, ca, cert, key, servername,
  rejectUnauthorized = true, timeoutMs = 30000, stream = false, agent = false,
} = {}) {
  const u = new URL(url);
  const mod = u.protocol === 'https:' ? https : http;
  const opts = {
    method,
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port: u.port || (u.protocol === 'https:' ? 443 : 80),
    path: path ?? `${u.pathname}${u.search}`,
    headers,
    agent,
    setHost: !hasHeader(headers, 'host'),
  };
  if (u.protocol === 'https:') Object.assign(opts, { ca, cert, key, servername, rejectUnauthorized });
  return new Promise((resolvePromise, reject) => {
    const req = mod.request(opts, async (res) => {
      const base = { status: res.statusCode, headers: res.headers, rawHeaders: res.rawHeaders };
      if (stream) return resolvePromise({ ...base, res, req });
      try {
        const buf = await readAll(res);
        resolvePromise({
          ...base,
          body: buf,
          text: () => buf.toString('utf8'),
          json: () => JSON.parse(buf.toString('utf8')),
        });
      } catch (e) {
        reject(e);
      }
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`request to ${url} timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
    if (body !== undefined && body !== null) req.write(body);
    req.end();
  });
}

function hasHeader(headers, name) {
  if (Array.isArray(headers)) return headers.some((h, i) => i % 2 === 0 && String(h).toLowerCase() === name);
  return Object.keys(headers).some((h) => h.toLowerCase() === name);
}

/** Wait for an EventEmitter event with a timeout. */
export async function onceWithTimeout(emitter, event, ms, message) {
  return withTimeout(once(emitter, event), ms, message ?? `no '${event}' event within ${ms} ms`);
}
