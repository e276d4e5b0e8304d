// `bedrock-sso-proxy setup claude-code` and the real Claude Code binary
// (npm @anthropic-ai/claude-code, pinned in package.json, run offline) with
// apiKeyHelper = `bedrock-sso-proxy token` (issue 12): the settings are
// merged into an existing ~/.claude/settings.json with a backup; claude -p
// answers through the proxy; the access token (60 s here) comes due, the
// next claude -p is still answered after exactly one rotation. Also
// --print, the Bedrock mode's block, and a settings file that is not JSON
// (refused, untouched).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { bspBin } from './lib/daemon.mjs';
import { cliLogin, newLaptop, runClient, spawnClient, startSignin } from './lib/client.mjs';
import { MODEL } from './lib/login.mjs';
import { waitUsage } from './lib/relay.mjs';
import { integrationDir, sleep } from './lib/util.mjs';

const CLAUDE = join(integrationDir, 'node_modules', '@anthropic-ai', 'claude-code', 'bin', 'claude.exe');
const refreshes = (d) => d.logs.filter((e) => e?.msg === 'request' && e.route === 'auth_refresh');

/** claude -p with the laptop's HOME (its settings) and nothing else of ours. */
function claude(lap, prompt, extra = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(CLAUDE, ['-p', prompt], {
      env: lap.env({
        DISABLE_TELEMETRY: '1', DISABLE_AUTOUPDATER: '1', DISABLE_ERROR_REPORTING: '1',
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1', DISABLE_BUG_COMMAND: '1', ANTHROPIC_MODEL: 'claude-sonnet-4-6',
        ...extra,
      }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => { stdout += d; });
    p.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => p.kill('SIGKILL'), 120000);
    p.on('error', reject);
    p.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}

test('setup claude-code merges into existing settings; claude -p answers with apiKeyHelper across a token expiry', async () => {
  const t = await startSignin({ over: { jwt: { access_token_ttl: 60 } } });
  const lap = newLaptop();
  try {
    assert.equal((await cliLogin(t, lap)).code, 0);
    const dir = join(lap.home, '.claude');
    const file = join(dir, 'settings.json');
    mkdirSync(dir, { recursive: true });
    const old = {
      permissions: { allow: ['Bash(ls:*)'] }, includeCoAuthoredBy: false,
      env: { KEEP_ME: 'yes', ANTHROPIC_AUTH_TOKEN: 'a-stale-static-token' },
    };
    writeFileSync(file, `${JSON.stringify(old, null, 2)}\n`, { mode: 0o644 });

    // --print: the block, nothing written.
    const pr = await runClient(lap, ['setup', 'claude-code', '--print']);
    assert.equal(pr.code, 0, pr.stderr);
    assert.deepEqual(JSON.parse(pr.stdout), { env: { ANTHROPIC_BASE_URL: t.d.url }, apiKeyHelper: `${bspBin()} token` });
    assert.deepEqual(JSON.parse(readFileSync(file, 'utf8')), old);

    const r = await runClient(lap, ['setup', 'claude-code']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /Removed what would have overridden it: ANTHROPIC_AUTH_TOKEN\./);
    const merged = JSON.parse(readFileSync(file, 'utf8'));
    assert.deepEqual(merged, {
      permissions: { allow: ['Bash(ls:*)'] }, includeCoAuthoredBy: false,
      env: { KEEP_ME: 'yes', ANTHROPIC_BASE_URL: t.d.url },
      apiKeyHelper: `${bspBin()} token`,
    });
    const backups = readdirSync(dir).filter((f) => /^settings\.json\.\d{8}-\d{6}(-\d+)?\.bak$/.test(f));
    assert.equal(backups.length, 1, readdirSync(dir).join());
    assert.deepEqual(JSON.parse(readFileSync(join(dir, backups[0]), 'utf8')), old);
    assert.ok(!readFileSync(file, 'utf8').includes(lap.session().access_token), 'no token in the settings');

    // Claude Code asks the helper for its token.
    let c = await claude(lap, 'Reply with the word PAPAYA-5');
    assert.equal(c.code, 0, c.stderr + c.stdout);
    assert.match(c.stdout, /PAPAYA-5/);
    let rows = await waitUsage(t.d.dir, 1);
    assert.ok(rows.some((x) => x.user_id === 'idp:alice' && x.route === 'Messages' && x.status === 200), JSON.stringify(rows));
    assert.equal(refreshes(t.d).length, 0);

    // The token comes due; the next request is still answered, after one rotation.
    const s = lap.session();
    const ms = (s.expires_at - 30 + 1) * 1000 - Date.now();
    if (ms > 0) await sleep(ms);
    c = await claude(lap, 'Reply with the word GUAVA-6');
    assert.equal(c.code, 0, c.stderr + c.stdout);
    assert.match(c.stdout, /GUAVA-6/);
    assert.equal(refreshes(t.d).length, 1);
    assert.notEqual(lap.session().refresh_token, s.refresh_token);
    rows = await waitUsage(t.d.dir, rows.length + 1);
    assert.equal(rows.filter((x) => x.user_id === 'idp:alice' && x.status === 200).length >= 2, true);
  } finally {
    lap.close();
    await t.stop();
  }
});

test('setup claude-code: the Bedrock mode through the relay; a settings file that is not JSON is left alone', async () => {
  const lap = newLaptop();
  try {
    lap.writeSession({
      version: 1, profile: 'default', proxy: 'https://proxy.example.com', access_token: 'eyJ.x.y', refresh_token: 'bsr_x',
      expires_at: Math.floor(Date.now() / 1000) + 3600, obtained_at: Math.floor(Date.now() / 1000),
    });
    const dir = join(lap.home, '.claude');
    const file = join(dir, 'settings.json');
    let r = await runClient(lap, ['setup', 'claude-code', '--mode', 'bedrock']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /keep "bedrock-sso-proxy relay" running/);
    // The relay's URL carries the user's relay secret; the file holding it is the user's only.
    const secret = readFileSync(join(lap.sessionDir, 'relay-secret'), 'utf8').trim();
    assert.match(secret, /^[A-Za-z0-9_-]{43}$/);
    assert.deepEqual(JSON.parse(readFileSync(file, 'utf8')), {
      env: {
        CLAUDE_CODE_USE_BEDROCK: '1', ANTHROPIC_BEDROCK_BASE_URL: `http://127.0.0.1:8377/${secret}`, CLAUDE_CODE_SKIP_BEDROCK_AUTH: '1',
        AWS_REGION: 'us-east-1',
      },
    });
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.ok(!r.stderr.includes(secret), 'the secret is not printed');
    assert.ok(!readdirSync(dir).some((f) => f.endsWith('.bak')), 'no backup of a file that did not exist');
    // Back to the Anthropic mode: the Bedrock keys go.
    r = await runClient(lap, ['setup', 'claude-code']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(readFileSync(file, 'utf8'));
    assert.deepEqual(j.env, { AWS_REGION: 'us-east-1', ANTHROPIC_BASE_URL: 'https://proxy.example.com' });
    assert.match(r.stderr, /Removed what would have overridden it: CLAUDE_CODE_USE_BEDROCK, ANTHROPIC_BEDROCK_BASE_URL, CLAUDE_CODE_SKIP_BEDROCK_AUTH\./);

    writeFileSync(file, '{"env": {"ANTHROPIC_AUTH_TOKEN": "sk-secret-in-settings"},, }');
    r = await runClient(lap, ['setup', 'claude-code']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /settings\.json is not a JSON object \(not JSON: line 1, column \d+\); nothing was changed: fix or move it/);
    assert.ok(!r.stderr.includes('sk-secret'), `the error quotes the file: ${r.stderr}`);
    assert.equal(readFileSync(file, 'utf8'), '{"env": {"ANTHROPIC_AUTH_TOKEN": "sk-secret-in-settings"},, }');
    // A settings file that is a symbolic link (dotfiles): the file it points to is updated, the link stays.
    const dot = join(lap.dir, 'dotfiles');
    mkdirSync(dot);
    writeFileSync(join(dot, 'settings.json'), '{"theme": "dark"}\n', { mode: 0o644 });
    rmSync(file);
    symlinkSync(join(dot, 'settings.json'), file);
    r = await runClient(lap, ['setup', 'claude-code']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /settings\.json is a symbolic link: updating the file it points to, .*dotfiles\/settings\.json\./);
    assert.ok(lstatSync(file).isSymbolicLink(), 'the link is kept');
    assert.deepEqual(JSON.parse(readFileSync(join(dot, 'settings.json'), 'utf8')), {
      theme: 'dark', env: { ANTHROPIC_BASE_URL: 'https://proxy.example.com' }, apiKeyHelper: `${bspBin()} token`,
    });
    assert.ok(!readdirSync(dir).some((f) => f.endsWith('.tmp')) && !readdirSync(dot).some((f) => f.endsWith('.tmp')));
    r = await runClient(lap, ['setup', 'claude-code', '--mode', 'vertex']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^usage: bedrock-sso-proxy setup claude-code/);
    assert.ok(existsSync(file));
  } finally {
    lap.close();
  }
});

test('setup claude-code --mode bedrock: the real Claude Code in Bedrock mode through the relay, its secret path kept', async () => {
  const t = await startSignin();
  const lap = newLaptop();
  let relay;
  try {
    assert.equal((await cliLogin(t, lap)).code, 0);
    relay = spawnClient(lap, ['relay', '--listen', '127.0.0.1:0']);
    const port = (await relay.waitStderr(/listening on http:\/\/127\.0\.0\.1:(\d+) for /))[1];
    const r = await runClient(lap, ['setup', 'claude-code', '--mode', 'bedrock', '--relay', `127.0.0.1:${port}`]);
    assert.equal(r.code, 0, r.stderr);
    const secret = readFileSync(join(lap.sessionDir, 'relay-secret'), 'utf8').trim();
    const env = JSON.parse(readFileSync(join(lap.home, '.claude', 'settings.json'), 'utf8')).env;
    assert.equal(env.ANTHROPIC_BEDROCK_BASE_URL, `http://127.0.0.1:${port}/${secret}`);
    const c = await claude(lap, 'Reply with the word MANGO-7', { ANTHROPIC_MODEL: MODEL, ANTHROPIC_SMALL_FAST_MODEL: MODEL });
    assert.equal(c.code, 0, c.stderr + c.stdout + relay.stderr());
    assert.match(c.stdout, /MANGO-7/);
    const up = t.bedrock.requests.filter((x) => x.operation != null);
    assert.ok(up.length >= 1 && up.every((x) => x.modelId === MODEL), JSON.stringify(up.map((x) => [x.operation, x.modelId])));
    assert.ok(up.every((x) => x.signatureValid === true), 'signed by the proxy');
    // Every request Claude Code sent came with the secret path (none refused); the only one not
    // relayed is its look-up of inference profiles, a control-plane call the proxy answers 404 too.
    assert.doesNotMatch(relay.stderr(), /status=403 /, relay.stderr());
    assert.ok(relay.stderr().split('\n').filter((l) => / status=404 /.test(l)).every((l) => /method=GET path=\/inference-profiles /.test(l)), relay.stderr());
    assert.match(relay.stderr(), /msg=request method=POST path=\/model\/\S+\/invoke-with-response-stream status=200 /);
  } finally {
    relay?.kill('SIGTERM');
    if (relay) await relay.exited;
    lap.close();
    await t.stop();
  }
});
