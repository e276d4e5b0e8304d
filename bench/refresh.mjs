// refresh.mjs: refresh-token rotations per second, for scale.sh.
//
//   node bench/refresh.mjs seed DIR N            N sessions in the database of the
//                                                daemon configured in DIR/config.yaml;
//                                                prints their refresh tokens, one a line
//   node bench/refresh.mjs run SECS URL[,URL...] < tokens
//                                                one chain per token: POST /auth/refresh
//                                                with the chain's token, then again with
//                                                the successor, for SECS seconds; the
//                                                chains' requests go round robin over the
//                                                URLs.  Prints one line:
//   REFRESHRESULT rotations=R errors=E duration_us=D p50_us=P p99_us=Q
//
// Sessions are seeded as the integration tests seed them (tests/integration/
// lib/tokens.mjs: node:sqlite, or psql on PostgreSQL), since only a sign-in
// makes one.  Each rotation is checked: 200, a new refresh token.
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { seedSession } from '../tests/integration/lib/tokens.mjs';

const [mode, ...args] = process.argv.slice(2);

if (mode === 'seed') {
  const [dir, n] = args;
  const out = [];
  for (let i = 0; i < Number(n); i++) {
    out.push(seedSession(dir, { user: `local:bench${i}@example.com`, email: `bench${i}@example.com` }).refresh);
  }
  process.stdout.write(`${out.join('\n')}\n`);
} else if (mode === 'run') {
  const secs = Number(args[0]);
  const urls = args[1].split(',').map((u) => new URL('/auth/refresh', u));
  const tokens = readFileSync(0, 'utf8').split('\n').filter(Boolean);
  const agent = new http.Agent({ keepAlive: true, maxSockets: tokens.length });
  let next = 0;
  let rotations = 0;
  let errors = 0;
  const lat = [];
  const post = (url, token) => new Promise((res) => {
    const body = JSON.stringify({ refresh_token: token });
    const req = http.request(url, {
      method: 'POST', agent,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
    }, (r) => {
      let text = '';
      r.setEncoding('utf8');
      r.on('data', (c) => { text += c; });
      r.on('end', () => res({ status: r.statusCode, text }));
    });
    req.on('error', (e) => res({ status: 0, text: String(e) }));
    req.end(body);
  });
  const t0 = process.hrtime.bigint();
  const end = Date.now() + secs * 1000;
  await Promise.all(tokens.map(async (first) => {
    let token = first;
    while (Date.now() < end) {
      const s = process.hrtime.bigint();
      const r = await post(urls[next++ % urls.length], token);
      lat.push(Number(process.hrtime.bigint() - s) / 1000);
      let fresh = null;
      try { fresh = r.status === 200 ? JSON.parse(r.text).refresh_token : null; } catch { /* below */ }
      if (!fresh || fresh === token) {
        errors++;
        process.stderr.write(`refresh: ${r.status} ${r.text.slice(0, 200)}\n`);
        return; // this chain is over (its token is spent or refused)
      }
      token = fresh;
      rotations++;
    }
  }));
  const dur = Number(process.hrtime.bigint() - t0) / 1000;
  lat.sort((a, b) => a - b);
  const pct = (p) => Math.round(lat[Math.min(lat.length - 1, Math.floor(lat.length * p))] ?? 0);
  process.stdout.write(`REFRESHRESULT rotations=${rotations} errors=${errors} duration_us=${Math.round(dur)} `
    + `p50_us=${pct(0.5)} p99_us=${pct(0.99)}\n`);
  agent.destroy();
} else {
  process.stderr.write('usage: refresh.mjs seed DIR N | run SECS URL[,URL...]\n');
  process.exit(2);
}
