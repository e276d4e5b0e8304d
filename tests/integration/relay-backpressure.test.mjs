// Backpressure through the relay (src/route-bedrock.c, src/http-client.c
// hc_pause/hc_resume, src/server-reply.c server_stream_*): a client that reads
// about 1 KB/s while the upstream would send 100 MB. The proxy must stop
// reading upstream, so its memory stays bounded and the fake, which blocks
// on TCP, gets nowhere near 100 MB out; when the client leaves, the upstream
// connection is closed.
//
// The bound: VmRSS may grow by at most RSS_GROWTH_MAX over the baseline
// taken after a warm-up stream (the relay's own ceiling is
// RELAY_HIGH_WATER = 256 KiB queued to the client plus one upstream chunk
// of about 96 KiB; the rest is allocator and sanitizer slack).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MODEL, anthropicBody, metricValue, rawStream, rssBytes, scrape, startRelay, waitUsage } from './lib/relay.mjs';
import { sleep, waitFor } from './lib/util.mjs';

const MB = 1024 * 1024;
const RSS_GROWTH_MAX = 32 * MB;
const WATCH_MS = 20000;
const UPSTREAM_MAX = 40 * MB; // what kernel socket buffers can hold on loopback, with room to spare

test('relay backpressure: a 1 KB/s reader of a 100 MB stream keeps the proxy\'s memory and the upstream bounded', { timeout: 90000 }, async () => {
  const t = await startRelay({
    // Keep ASan's quarantine small so that RSS tracks live memory.
    env: { ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=0:quarantine_size_mb=8' },
  });
  try {
    const token = await t.token();
    const headers = { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' };
    // Warm-up: one full-speed 4 MB stream, so the baseline includes pools and buffers in use.
    const warm = await t.post('/model/test.stream-bytes-4m/invoke-with-response-stream', { token });
    assert.equal(warm.status, 200);
    assert.ok(warm.body.length > 4 * MB);
    await sleep(300);
    const base = await rssBytes(t.d.pid);

    const sock = rawStream(t.d.url, '/model/test.stream-bytes-104857600/invoke-with-response-stream', {
      headers, body: anthropicBody('a hundred megabytes please'),
    });
    sock.pause();
    let read = 0;
    const reader = setInterval(() => {
      // 100 bytes every 100 ms: about 1 KB/s.
      const b = sock.read(100) ?? sock.read();
      if (b) read += b.length;
    }, 100);
    const up = await t.fake.waitForRequest((r) => r.scenario === 'stream-bytes-104857600', 5000);
    let peak = base;
    const samples = [];
    const started = Date.now();
    while (Date.now() - started < WATCH_MS) {
      await sleep(1000);
      const rss = await rssBytes(t.d.pid);
      peak = Math.max(peak, rss);
      samples.push({ s: Math.round((Date.now() - started) / 1000), rssMB: +(rss / MB).toFixed(1), upMB: +(up.response.bytesWritten / MB).toFixed(1), readKB: +(read / 1024).toFixed(1) });
    }
    clearInterval(reader);
    const info = `baseline ${(base / MB).toFixed(1)} MB; samples ${JSON.stringify(samples)}`;
    process.stdout.write(`# backpressure: peak RSS growth ${((peak - base) / MB).toFixed(1)} MB, upstream sent ${(up.response.bytesWritten / MB).toFixed(1)} MB, client read ${read} B; ${info}\n`);
    assert.ok(read > 10 * 1024, `the client read only ${read} bytes`);
    assert.ok(peak - base < RSS_GROWTH_MAX, `RSS grew by ${((peak - base) / MB).toFixed(1)} MB (bound ${RSS_GROWTH_MAX / MB} MB); ${info}`);
    assert.ok(up.response.bytesWritten < UPSTREAM_MAX, `the upstream got ${(up.response.bytesWritten / MB).toFixed(1)} MB out; ${info}`);
    assert.ok(up.response.drainWaits > 0, 'the fake was blocked on TCP');
    // Stalled, not racing: the last samples show no progress beyond what the reader consumed.
    const last = samples.slice(-5);
    assert.ok(last.at(-1).upMB - last[0].upMB < 2, `upstream still flowing at the end: ${JSON.stringify(last)}`);
    assert.equal(up.response.closedAt, null, 'the upstream is still open while the client is');

    // The client leaves: the upstream connection is closed.
    const gone = Date.now();
    sock.destroy();
    const closed = await t.fake.waitForClose((r) => r === up, 5000);
    assert.ok(closed.response.closedAt - gone < 2000, `upstream closed ${closed.response.closedAt - gone} ms after the client left`);
    assert.equal(closed.response.complete, false);
    await waitFor(async () => metricValue(await scrape(t.d), 'bsp_active_streams') === 0, { timeoutMs: 3000, message: 'stream still counted' });
    const rows = await waitUsage(t.d.dir, 2);
    assert.equal(rows[1].outcome, 'client_gone');
    assert.equal(rows[1].status, 499);
    // And the proxy still serves.
    const r = await t.post(`/model/${encodeURIComponent(MODEL)}/invoke`, { token });
    assert.equal(r.status, 200);
  } finally {
    await t.stop();
  }
});
