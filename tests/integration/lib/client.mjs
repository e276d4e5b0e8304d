// Helpers for the laptop client tests (client-*.test.mjs): a laptop of its
// own per test (HOME and XDG_CONFIG_HOME in a temp dir, no display, no
// variable of the caller's), the client commands run to completion or
// left running (login, relay), a test daemon with the fake IdP whose
// client is "native" (its loopback redirect URIs match on any port, as
// RFC 8252 says), and the browser step of a sign-in driven in headless
// Chromium.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SANITIZER_RE, bspBin } from './daemon.mjs';
import { CLIENT_ID, CLIENT_SECRET, startFakeIdp } from './fake-idp.mjs';
import { launchBrowser, loginConfig, newContext, startBedrock, startLoginDaemon, stopAll } from './login.mjs';
import { makeTempDir, removeDir, waitFor } from './util.mjs';

const live = new Set();
process.on('exit', () => { for (const c of live) try { process.kill(-c.pid, 'SIGKILL'); } catch { /* gone */ } });

/** A laptop: {dir, home, xdg, sessionDir, env(extra), session(profile), close()}. */
export function newLaptop() {
  const dir = makeTempDir('bsp-laptop-');
  const home = join(dir, 'home');
  const xdg = join(dir, 'xdg');
  mkdirSync(home, { recursive: true });
  const l = {
    dir, home, xdg, sessionDir: join(xdg, 'bedrock-sso-proxy'),
    /** The environment the client runs with: nothing of ours leaks in. */
    env(extra = {}) {
      const env = {
        PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, XDG_CONFIG_HOME: xdg, LANG: 'C',
        ASAN_OPTIONS: process.env.ASAN_OPTIONS ?? 'detect_leaks=1:abort_on_error=0',
        UBSAN_OPTIONS: process.env.UBSAN_OPTIONS ?? 'print_stacktrace=1:halt_on_error=1',
      };
      for (const [k, v] of Object.entries(extra)) {
        if (v === undefined || v === null) delete env[k];
        else env[k] = String(v);
      }
      return env;
    },
    sessionPath: (profile = 'default') => join(xdg, 'bedrock-sso-proxy', `${profile}.json`),
    session(profile = 'default') { return JSON.parse(readFileSync(l.sessionPath(profile), 'utf8')); },
    writeSession(obj, profile = 'default', mode = 0o600) {
      mkdirSync(l.sessionDir, { recursive: true, mode: 0o700 });
      chmodSync(l.sessionDir, 0o700);
      writeFileSync(l.sessionPath(profile), typeof obj === 'string' ? obj : JSON.stringify(obj), { mode });
      chmodSync(l.sessionPath(profile), mode);
    },
    close() { removeDir(dir); },
  };
  return l;
}

/**
 * Start a client command; resolves nothing by itself. Returns
 * {proc, stdout(), stderr(), exited: Promise<{code, signal, stdout, stderr}>, waitStderr(re)}.
 */
export function spawnClient(laptop, args, { env = {}, input } = {}) {
  const proc = spawn(bspBin(), args, {
    env: laptop.env(env), cwd: laptop.dir, detached: true,
    stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  live.add(proc);
  let out = '';
  let err = '';
  proc.stdout.setEncoding('utf8').on('data', (s) => { out += s; });
  proc.stderr.setEncoding('utf8').on('data', (s) => { err += s; });
  if (input !== undefined) proc.stdin.end(input);
  const exited = new Promise((res) => {
    proc.once('close', (code, signal) => {
      live.delete(proc);
      res({ code, signal, stdout: out, stderr: err });
    });
  });
  return {
    proc, exited,
    stdout: () => out,
    stderr: () => err,
    /** Wait until stderr matches re; returns the match. */
    waitStderr(re, timeoutMs = 20000) {
      return waitFor(() => re.exec(err), { timeoutMs, message: `stderr never matched ${re}:\n${err}` });
    },
    kill(sig = 'SIGTERM') { try { process.kill(proc.pid, sig); } catch { /* gone */ } },
  };
}

/** Run a client command to completion; asserts no sanitizer report. */
export async function runClient(laptop, args, opts = {}) {
  const c = spawnClient(laptop, args, opts);
  const timer = setTimeout(() => c.kill('SIGKILL'), opts.timeoutMs ?? 60000);
  const r = await c.exited;
  clearTimeout(timer);
  assert.doesNotMatch(r.stderr, SANITIZER_RE, `sanitizer report from ${args.join(' ')}:\n${r.stderr}`);
  return r;
}

/** A BROWSER command for the client: a script that writes the URL to a file. */
let browsers = 0;
export function fakeBrowser(laptop) {
  const n = ++browsers;
  const file = join(laptop.dir, `opened-url-${n}`);
  const script = join(laptop.dir, `browser-${n}.sh`);
  writeFileSync(script, `#!/bin/sh\nprintf '%s' "$1" > '${file}.tmp' && mv '${file}.tmp' '${file}'\n`, { mode: 0o755 });
  return {
    command: script,
    /** The URL the client opened. */
    url: () => waitFor(() => (existsSync(file) ? readFileSync(file, 'utf8') : null), { timeoutMs: 20000, message: 'the client opened no browser' }),
  };
}

/**
 * A daemon with the fake IdP (native client) and a fake Bedrock. over: more
 * daemon configuration (e.g. {jwt: {access_token_ttl: 60}}); env: more of
 * the daemon's environment (e.g. AWS_ENDPOINT_URL_STS).
 */
export async function startSignin({ over = {}, access, env = {} } = {}) {
  const idp = await startFakeIdp({ applicationType: 'native' });
  const bedrock = await startBedrock();
  let d;
  try {
    d = await startLoginDaemon(loginConfig({
      bedrock,
      providers: { idp: { issuer: idp.url, client_id: CLIENT_ID, client_secret: CLIENT_SECRET, display_name: 'Example IdP' } },
      ...(access ? { access } : {}),
      over,
    }), { env: { AWS_EC2_METADATA_DISABLED: 'true', ...env } });
  } catch (e) {
    await idp.close();
    await bedrock.close();
    throw e;
  }
  // The CLI's redirect is http://127.0.0.1:ANY/callback (port-agnostic for a native client).
  idp.setRedirectUris([`${d.url}/auth/callback/idp`, 'http://127.0.0.1/callback']);
  let browser = null;
  return {
    idp, bedrock, d,
    async browser() { browser ??= await launchBrowser(); return browser; },
    async stop() {
      await browser?.close().catch(() => {});
      await stopAll(d, idp, bedrock);
    },
  };
}

/** The user's part at the IdP: the login form and the consent, in a fresh context. */
export async function signInAtIdp(browser, url, { login = 'alice', consent = true, until } = {}) {
  const ctx = await newContext(browser);
  try {
    const page = await ctx.newPage();
    await page.goto(url);
    await page.fill('input[name=login]', login);
    await page.fill('input[name=password]', 'any password');
    await page.click('button[type=submit]');
    if (consent) {
      await page.waitForSelector('form input[name=prompt][value=consent]', { state: 'attached' });
      await Promise.all([
        page.waitForURL(until ?? ((u) => u.href.startsWith('http://127.0.0.1:') && u.pathname === '/callback')),
        page.click('button[type=submit]'),
      ]);
    }
    await page.waitForLoadState('domcontentloaded');
    return { title: await page.title(), text: await page.textContent('body') };
  } finally {
    await ctx.close().catch(() => {});
  }
}

/**
 * `login` with the browser step done in Chromium (the client opens the URL
 * through a fake BROWSER). Returns the login's exit {code, stdout, stderr}
 * and the page the browser ended on.
 */
export async function cliLogin(t, laptop, { args = [], login = 'alice', env = {} } = {}) {
  const b = fakeBrowser(laptop);
  const c = spawnClient(laptop, ['login', ...args, t.d.url], { env: { BROWSER: b.command, ...env } });
  const url = await Promise.race([b.url(), c.exited.then((r) => { throw new Error(`login exited early: ${JSON.stringify(r)}`); })]);
  const page = await signInAtIdp(await t.browser(), url, { login });
  const r = await c.exited;
  assert.doesNotMatch(r.stderr, SANITIZER_RE, r.stderr);
  return { ...r, page, url };
}

export { stopAll };
