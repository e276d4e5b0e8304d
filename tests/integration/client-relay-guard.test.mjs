// What the laptop relay (`bedrock-sso-proxy relay`, issue 12) lets through,
// against a scripted proxy that records every request: without the
// user's relay secret as the first path segment nothing reaches the proxy
// (another local user, a guessed secret); with it, only the Bedrock
// runtime operations (POST) are relayed, never /aws/credentials,
// /auth/logout or /v1/models; the query (a presigned URL's X-Amz-*) does
// not go on; a request with only a Sec-Fetch-* header is a web page's;
// the secret never appears in the relay's log; an answer the proxy
// breaks off is broken off toward the tool too (chunked or with a
// Content-Length); after the profile is signed in to another proxy the
// relay refuses instead of sending that proxy's token here; a port that
// is taken is exit 2.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { statSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { newLaptop, runClient, spawnClient } from './lib/client.mjs';
import { readAll, request, waitFor } from './lib/util.mjs';

const MODEL = 'anthropic.claude-3-haiku-20240307-v1:0';
const now = () => Math.floor(Date.now() / 1000);

/** A scripted proxy: records {method, url, headers, body}; answers per path. */
async function fakeProxy() {
  const seen = [];
  let release;
  const held = new Promise((r) => { release = r; });
  const server = createServer(async (req, res) => {
    const body = await readAll(req);
    seen.push({ method: req.method, url: req.url, headers: req.headers, body: body.toString() });
    if (req.url.endsWith('/cut-chunked/invoke-with-response-stream')) {
      res.writeHead(200, { 'Content-Type': 'application/vnd.amazon.eventstream' });
      res.write('part of a stream');
      setTimeout(() => res.socket.destroy(), 200);
      return;
    }
    if (req.url.endsWith('/hold/invoke')) {
      await held;
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end('{"held":true}');
      return;
    }
    if (req.url.endsWith('/cut-length/invoke')) {
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': '1000' });
      res.write('{"partial":');
      setTimeout(() => res.socket.destroy(), 200);
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ ok: true, path: req.url }));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    seen, release, url: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
  };
}

const session = (proxy, token = 'eyJ.laptop.token') => ({
  version: 1, profile: 'default', proxy, access_token: token, refresh_token: 'bsr_laptop',
  expires_at: now() + 3600, obtained_at: now(),
});

async function relayOn(lap) {
  const relay = spawnClient(lap, ['relay', '--listen', '127.0.0.1:0']);
  const m = await relay.waitStderr(/listening on http:\/\/127\.0\.0\.1:(\d+) for /);
  const port = Number(m[1]);
  const u = await runClient(lap, ['relay', '--url', '--listen', `127.0.0.1:${port}`]);
  assert.equal(u.code, 0, u.stderr);
  return { relay, port, url: u.stdout.trim() };
}

test('relay: the secret path, only Bedrock runtime operations, no query, Sec-Fetch-*, no secret in the log, another proxy', async () => {
  const p = await fakeProxy();
  const lap = newLaptop();
  let relay;
  try {
    lap.writeSession(session(p.url));
    const r = await relayOn(lap);
    relay = r.relay;
    const secretFile = join(lap.sessionDir, 'relay-secret');
    const secret = readFileSync(secretFile, 'utf8').trim();
    assert.match(secret, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(statSync(secretFile).mode & 0o777, 0o600);
    assert.equal(r.url, `http://127.0.0.1:${r.port}/${secret}`);
    const base = `http://127.0.0.1:${r.port}`;
    const post = (path, headers = {}) => request(`${base}${path}`, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body: '{}' });

    // Another local user, without the secret (or guessing one): nothing reaches the proxy.
    for (const path of [`/model/${MODEL}/invoke`, '/aws/credentials', '/auth/logout', `/${'A'.repeat(43)}/model/${MODEL}/invoke`,
      `/${secret.slice(0, 42)}/model/${MODEL}/invoke`, `/${secret}x/model/${MODEL}/invoke`]) {
      const x = await post(path);
      assert.equal(x.status, 403, path);
      assert.match(x.json().message, /secret path, which this request lacks/);
    }
    assert.equal(p.seen.length, 0, 'nothing without the secret reached the proxy');

    // With the secret: only the Bedrock runtime operations.
    for (const [method, path] of [['POST', '/aws/credentials'], ['POST', '/auth/logout'], ['GET', '/v1/models'],
      ['POST', '/v1/messages'], ['GET', `/model/${MODEL}/invoke`], ['POST', `/model/${MODEL}/invoke/more`],
      ['POST', `/model/../auth/logout`], ['POST', `/model/${MODEL}/delete`], ['POST', ''], ['POST', '/']]) {
      const x = await request(`${base}/${secret}${path}`, { method, body: method === 'POST' ? '{}' : undefined });
      assert.equal(x.status, 404, `${method} ${path}`);
      assert.match(x.json().message, /only the Bedrock runtime operations are relayed/);
    }
    assert.equal(p.seen.length, 0, 'no other route of the proxy reached');

    // A web page's request that has only Sec-Fetch-Dest (no Origin).
    let x = await post(`/${secret}/model/${MODEL}/invoke`, { 'Sec-Fetch-Dest': 'empty' });
    assert.equal(x.status, 403);
    assert.match(x.json().message, /requests from web pages are refused/);
    assert.equal(p.seen.length, 0);

    // Relayed: the path after the secret, no query, the laptop's token.
    for (const op of ['invoke', 'invoke-with-response-stream', 'converse', 'converse-stream', 'count-tokens']) {
      x = await post(`/${secret}/model/${MODEL}/${op}?X-Amz-Signature=abc&X-Amz-Security-Token=leaked`);
      assert.equal(x.status, 200, op);
      const up = p.seen.at(-1);
      assert.equal(up.url, `/model/${MODEL}/${op}`);
      assert.equal(up.headers.authorization, 'Bearer eyJ.laptop.token');
    }
    x = await post(`/${secret}/guardrail/gr1/version/2/apply`);
    assert.equal(x.status, 200);
    assert.equal(p.seen.at(-1).url, '/guardrail/gr1/version/2/apply');
    assert.ok(!p.seen.some((s) => s.url.includes(secret) || s.url.includes('X-Amz')), 'neither the secret nor the query went on');

    // The profile is signed in to another proxy meanwhile: that proxy's token must not come here.
    const n = p.seen.length;
    lap.writeSession(session('https://other-proxy.example.com', 'eyJ.other.proxy'));
    x = await post(`/${secret}/model/${MODEL}/invoke`);
    assert.equal(x.status, 502);
    assert.match(x.json().message, /profile default is now signed in to https:\/\/other-proxy\.example\.com, not http:\/\/127\.0\.0\.1:\d+: restart the relay/);
    assert.equal(p.seen.length, n, 'nothing sent with the other proxy\'s token');

    // A second relay on the same port: exit 2 (a local problem).
    const second = await runClient(lap, ['relay', '--listen', `127.0.0.1:${r.port}`]);
    assert.equal(second.code, 2, second.stderr);
    assert.match(second.stderr, /cannot listen on 127\.0\.0\.1 port \d+/);

    relay.kill('SIGTERM');
    const done = await relay.exited;
    relay = null;
    assert.equal(done.code, 0, done.stderr);
    assert.ok(!done.stderr.includes(secret), `the secret is in the relay's log:\n${done.stderr}`);
    assert.match(done.stderr, /msg=request method=POST path=\/model\/\S+\/invoke status=200 /);
    assert.match(done.stderr, /msg=request method=POST path=- status=403 /);
  } finally {
    relay?.kill('SIGKILL');
    lap.close();
    await p.close();
  }
});

test('relay: an answer the proxy breaks off is broken off toward the tool (chunked, and with a Content-Length)', async () => {
  const p = await fakeProxy();
  const lap = newLaptop();
  let relay;
  try {
    lap.writeSession(session(p.url));
    const r = await relayOn(lap);
    relay = r.relay;
    const opts = { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}', timeoutMs: 20000 };
    // A stream cut short must not end in a clean final chunk.
    let e = await request(`${r.url}/model/cut-chunked/invoke-with-response-stream`, opts).then((x) => x, (err) => err);
    assert.ok(e instanceof Error, `a cut stream arrived as complete: ${e.status} ${e.body}`);
    assert.doesNotMatch(e.message, /timed out/);
    // A body shorter than its Content-Length: closed, not left waiting.
    e = await request(`${r.url}/model/cut-length/invoke`, opts).then((x) => x, (err) => err);
    assert.ok(e instanceof Error, `a cut body arrived as complete: ${e.status} ${e.body}`);
    assert.doesNotMatch(e.message, /timed out/);
    // The relay goes on.
    const x = await request(`${r.url}/model/${MODEL}/invoke`, opts);
    assert.equal(x.status, 200);
    relay.kill('SIGTERM');
    const done = await relay.exited;
    relay = null;
    assert.equal(done.code, 0, done.stderr);
    assert.match(done.stderr, /the proxy's answer to a relayed request broke off/);
    assert.doesNotMatch(done.stderr, /AddressSanitizer|LeakSanitizer|runtime error:/);
  } finally {
    relay?.kill('SIGKILL');
    lap.close();
    await p.close();
  }
});

test('relay: at most 64 requests in progress (503 beyond), bodies over 25 MiB refused (413), neither sent on', async () => {
  const p = await fakeProxy();
  const lap = newLaptop();
  let relay;
  try {
    lap.writeSession(session(p.url));
    const r = await relayOn(lap);
    relay = r.relay;
    const opts = { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' };
    const held = Array.from({ length: 64 }, () => request(`${r.url}/model/hold/invoke`, opts));
    await waitFor(() => p.seen.length === 64, { timeoutMs: 20000, message: 'the 64 requests never reached the proxy' });
    let x = await request(`${r.url}/model/${MODEL}/invoke`, opts);
    assert.equal(x.status, 503);
    assert.match(x.json().message, /too many requests in progress/);
    assert.equal(p.seen.length, 64);
    p.release();
    for (const h of await Promise.all(held)) assert.equal(h.status, 200);
    x = await request(`${r.url}/model/${MODEL}/invoke`, opts);
    assert.equal(x.status, 200, 'room again once they are done');

    // A body over 25 MiB: 413 from the relay, nothing sent on (announced by its Content-Length).
    const n = p.seen.length;
    x = await request(`${r.url}/model/${MODEL}/invoke`, {
      method: 'POST', headers: { 'Content-Type': 'application/json', 'Content-Length': String(25 * 1024 * 1024 + 1), Expect: '100-continue' },
    }).catch((e) => e);
    assert.equal(x.status, 413, String(x));
    assert.equal(p.seen.length, n);
    relay.kill('SIGTERM');
    const done = await relay.exited;
    relay = null;
    assert.equal(done.code, 0, done.stderr);
    assert.doesNotMatch(done.stderr, /AddressSanitizer|LeakSanitizer|runtime error:/);
  } finally {
    relay?.kill('SIGKILL');
    p.release();
    lap.close();
    await p.close();
  }
});
