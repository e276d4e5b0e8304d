// The real Claude Code binary (npm @anthropic-ai/claude-code, pinned in
// package.json) in Anthropic mode against the daemon, offline: ANTHROPIC_BASE_URL
// with ANTHROPIC_AUTH_TOKEN, and with an apiKeyHelper printing an API key;
// `claude -p` gets a streamed answer through /v1/messages (InvokeModel with
// response stream on the fake Bedrock) and the usage row is written; with
// gateway model discovery on, it lists GET /v1/models and keeps what the model
// policy lets its user call.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { accessLines, startRelay, waitUsage } from './lib/relay.mjs';
import { integrationDir, makeTempDir, removeDir } from './lib/util.mjs';

const CLAUDE = join(integrationDir, 'node_modules', '@anthropic-ai', 'claude-code', 'bin', 'claude.exe');

/** Run `claude -p prompt` with a clean HOME and env; resolves {code, stdout, stderr}. */
function claude(prompt, env, home) {
  return new Promise((resolve, reject) => {
    const p = spawn(CLAUDE, ['-p', prompt], {
      env: Object.fromEntries(Object.entries({
        PATH: process.env.PATH, HOME: home, LANG: 'C.UTF-8',
        // Offline: no telemetry, no update checks, no other traffic.
        DISABLE_TELEMETRY: '1', DISABLE_AUTOUPDATER: '1', DISABLE_ERROR_REPORTING: '1',
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1', DISABLE_BUG_COMMAND: '1',
        ...env,
      }).filter(([, v]) => v !== undefined)),
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

test('claude -p answers through /v1/messages with ANTHROPIC_AUTH_TOKEN and with apiKeyHelper; usage rows written', async () => {
  const t = await startRelay();
  const home = makeTempDir('bsp-cc-');
  try {
    const token = await t.token('coder@example.com');
    let r = await claude('Reply with the word PINEAPPLE-7', {
      ANTHROPIC_BASE_URL: t.d.url, ANTHROPIC_AUTH_TOKEN: token, ANTHROPIC_MODEL: 'claude-sonnet-4-6',
    }, home);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /echo: .*PINEAPPLE-7/s);
    const up = t.fake.requests.find((q) => q.operation === 'invoke-with-response-stream');
    assert.ok(up, 'no streamed InvokeModel call');
    assert.equal(up.modelId, 'us.anthropic.claude-sonnet-4-6');
    assert.equal(up.signatureValid, true);
    const sent = JSON.parse(up.body.toString());
    assert.equal(sent.anthropic_version, 'bedrock-2023-05-31');
    assert.ok(sent.anthropic_beta.includes('claude-code-20250219'), sent.anthropic_beta);
    assert.equal(sent.model, undefined);
    assert.equal(sent.stream, undefined);
    let rows = await waitUsage(t.d.dir, 1);
    const row = rows.find((x) => x.route === 'Messages' && x.status === 200);
    assert.equal(row.user_id, 'local:coder@example.com');
    assert.equal(row.model, 'us.anthropic.claude-sonnet-4-6');
    assert.equal(row.input_tokens, up.usage.inputTokens);
    assert.equal(row.output_tokens, up.usage.outputTokens);
    assert.match(row.session_id, /^[0-9a-f-]{36}$/);

    // apiKeyHelper: the helper's value is sent as Bearer and x-api-key; an API key works as both.
    const { key, info } = await t.key('coder@example.com');
    mkdirSync(join(home, '.claude'), { recursive: true });
    writeFileSync(join(home, '.claude', 'settings.json'), JSON.stringify({ apiKeyHelper: `printf %s ${key}` }));
    const before = t.fake.requests.length;
    r = await claude('Reply with the word MANGO-9', { ANTHROPIC_BASE_URL: t.d.url, ANTHROPIC_MODEL: 'claude-sonnet-4-6' }, home);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /echo: .*MANGO-9/s);
    assert.ok(t.fake.requests.length > before);
    rows = await waitUsage(t.d.dir, rows.length + 1);
    assert.ok(rows.some((x) => x.api_key_id === info.id && x.route === 'Messages' && x.status === 200), JSON.stringify(rows));
  } finally {
    removeDir(home);
    await t.stop();
  }
});

test('claude model discovery reads GET /v1/models: only what the model rules allow', async () => {
  const t = await startRelay({ config: { models: { rules: [{ deny: ['*opus*'] }] } } });
  const home = makeTempDir('bsp-cc-');
  try {
    const token = await t.token('coder@example.com');
    const env = {
      ANTHROPIC_BASE_URL: t.d.url, ANTHROPIC_AUTH_TOKEN: token, ANTHROPIC_MODEL: 'claude-haiku-4-5',
      CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY: '1', CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: undefined,
    };
    const r = await claude('Reply with the word KIWI-3', env, home);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /KIWI-3/);
    const lists = accessLines(t.d, 'anthropic_models');
    assert.equal(lists.length, 1);
    assert.equal(lists[0].status, 200);
    const cache = JSON.parse(readFileSync(join(home, '.claude', 'cache', 'gateway-models.json'), 'utf8'));
    const ids = cache.models.map((m) => m.id);
    assert.ok(ids.includes('claude-haiku-4-5'), ids.join());
    assert.ok(!ids.some((id) => id.includes('opus')), ids.join());
  } finally {
    removeDir(home);
    await t.stop();
  }
});
