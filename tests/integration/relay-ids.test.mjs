// Model and guardrail ids on their way to AWS (src/route-bedrock.c,
// src/policy.c, src/sigv4.c): an id is percent-decoded once and checked,
// the rules see that decoded id, and what is sent and signed is rebuilt
// from it in the AWS SDKs' encoding. Ids with "." or ".." segments (in any
// encoding: %2e, %2F or %2f, a second level like %252F), empty segments,
// backslashes or controls are refused with 400 before AWS is called, so an
// allowed prefix cannot lead to another model; ARNs keep their "/"; the
// client's query string is not forwarded. The fake re-verifies every
// signature with the AWS SDK's own signer.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvokeModelCommand } from '@aws-sdk/client-bedrock-runtime';
import { ARN, MODEL, anthropicBody, metricValue, scrape, startRelay, usageRows, waitUsage } from './lib/relay.mjs';

const enc = encodeURIComponent;
const HAIKU = 'anthropic.claude-3-haiku-20240307-v1:0';
// The review's setting: haiku allowed by prefix, Meta's models denied.
const PREFIX_RULES = { models: { rules: [{ deny: ['meta.*'], allow: ['anthropic.claude-3-haiku*', 'guardrail:*'] }], default: 'deny' } };
const RULES = {
  models: {
    rules: [{ deny: ['*llama*', '*opus*'], allow: ['anthropic.claude-3-haiku*', 'us.anthropic.*', 'arn:aws:bedrock:*', 'guardrail:*'] }],
    default: 'deny',
  },
};

/** The last request the fake saw, checked to carry a valid SigV4 signature. */
function lastSigned(fake) {
  const r = fake.requests.at(-1);
  assert.ok(r, 'the fake saw no request');
  assert.equal(r.authMode, 'sigv4');
  assert.equal(r.signatureValid, true, `bad signature on ${r.rawPath}: ${r.authError?.message}`);
  return r;
}

test('relay ids: dot segments after decoding, double encoding, backslashes and controls are refused with 400 before AWS', async () => {
  const t = await startRelay({ config: PREFIX_RULES });
  try {
    const token = await t.token();
    const refused = [
      // The review's example: passes the haiku allow rule, reaches llama.
      '/model/anthropic.claude-3-haiku%2F..%2F..%2Fmodel%2Fmeta.llama3/invoke',
      '/model/anthropic.claude-3-haiku%2F%2e%2e%2F%2E%2E%2Fmodel%2Fmeta.llama3/invoke',
      '/model/anthropic.claude-3-haiku%2f..%2f..%2fmodel%2fmeta.llama3/converse',
      '/model/anthropic.claude-3-haiku%2F.%2F..%2Fmeta.llama3/invoke-with-response-stream',
      '/model/anthropic.claude-3-haiku%2F../invoke',
      '/model/anthropic.claude-3-haiku%2F%2E/count-tokens',
      '/model/.%2Fanthropic.claude-3-haiku/invoke',
      '/model/anthropic.claude-3-haiku%2F/invoke',
      '/model/anthropic.claude-3-haiku%2F%2Fmeta.llama3/invoke',
      '/model/%2Fanthropic.claude-3-haiku/converse-stream',
      // A second level of encoding: whoever decodes again gets dot segments.
      '/model/anthropic.claude-3-haiku%252F..%252F..%252Fmodel%252Fmeta.llama3/invoke',
      '/model/anthropic.claude-3-haiku%252e%252e/invoke',
      '/model/anthropic.claude-3-haiku%25/invoke',
      // Backslashes, controls, NUL, bytes outside ASCII, spaces and glob characters.
      '/model/anthropic.claude-3-haiku%5C..%5Cmeta.llama3/invoke',
      '/model/anthropic.claude-3-haiku%00/invoke',
      '/model/anthropic.claude-3-haiku%0D%0AX-Evil:%201/invoke',
      '/model/anthropic.claude-3-haiku%7F/invoke',
      '/model/anthropic.claude-3-haiku%C3%A9/invoke',
      '/model/anthropic.claude-3-haiku%20x/invoke',
      '/model/anthropic.claude-3-haiku%2A/invoke',
      '/model/anthropic.claude-3-haiku%3Fx=1/invoke',
      '/model/anthropic.claude-3-haiku%23x/invoke',
      '/bedrock/model/anthropic.claude-3-haiku%2F..%2F..%2Fmodel%2Fmeta.llama3/invoke',
      // The guardrail route: both of its ids.
      '/guardrail/gr-1%2F..%2F..%2Fmodel%2Fmeta.llama3/version/1/apply',
      '/guardrail/gr-1/version/1%2F..%2F..%2F..%2Fmodel%2Fmeta.llama3/apply',
      '/guardrail/gr-1%252F..%252Fx/version/DRAFT/apply',
      '/guardrail/gr-1/version/DRAFT%2f%2e%2e/apply',
      '/guardrail/gr-1%5Cx/version/1/apply',
      '/bedrock/guardrail/%2E%2E%2Fgr-1/version/1/apply',
    ];
    for (const path of refused) {
      const before = t.fake.requests.length;
      const r = await t.post(path, { token, body: path.includes('guardrail') ? '{"source":"INPUT","content":[]}' : anthropicBody('x') });
      assert.equal(r.status, 400, `${path}: ${r.status} ${r.text()}`);
      assert.match(r.headers['x-amzn-errortype'] ?? '', /^ValidationException/, path);
      assert.match(r.json().message, /^malformed (model|guardrail) identifier/, path);
      assert.equal(t.fake.requests.length, before, `${path} reached AWS as ${t.fake.requests.at(-1)?.rawPath}`);
    }
    // The SDK sees ValidationException.
    await assert.rejects(t.sdk({ token }).send(new InvokeModelCommand({ modelId: `${HAIKU}/../../model/meta.llama3`, body: anthropicBody('x') })),
      (e) => e.name === 'ValidationException' && e.$metadata.httpStatusCode === 400);
    // Nothing counted as a call: no upstream call, no usage row.
    assert.equal(t.fake.requests.length, 0);
    assert.equal(metricValue(await scrape(t.d), 'bsp_upstream_requests_total'), 0);
    assert.equal((await t.post(`/model/${enc(HAIKU)}/invoke`, { token })).status, 200, 'the haiku itself still works');
    const rows = await waitUsage(t.d.dir, 1);
    assert.deepEqual(rows.map((x) => [x.model, x.status]), [[HAIKU, 200]]);
    assert.equal(usageRows(t.d.dir).length, 1);
  } finally {
    await t.stop();
  }
});

test('relay ids: a denied model is not reached through an allowed prefix, by percent-encoding or by letter case', async () => {
  const t = await startRelay({ config: RULES });
  try {
    const token = await t.token();
    const { key } = await t.key('dev@example.com', '--models', 'anthropic.claude-3-haiku*,us.anthropic.claude-sonnet-*');
    const bearer = { Authorization: `Bearer ${token}` };
    const viaKey = { 'X-Api-Key': key };
    const denied = async (wire, headers = bearer) => {
      const before = t.fake.requests.length;
      const r = await t.post(`/model/${wire}/invoke`, { headers });
      assert.equal(r.status, 403, `${wire}: ${r.status} ${r.text()}`);
      assert.match(r.headers['x-amzn-errortype'], /^AccessDeniedException/);
      assert.equal(t.fake.requests.length, before, `${wire} reached AWS`);
    };
    // Deny rules see the decoded id, whatever the case of its letters or of the %XX:
    // us.anthropic.* allows these, *opus* and *llama* must still deny them.
    await denied('us.anthropic.claude-OPUS-4-20250514-v1:0');
    await denied('us.anthropic.claude-%4Fpus-4-20250514-v1%3a0');
    await denied('us.anthropic.claude-%6f%50%55%53-4-20250514-v1%3A0');
    await denied('anthropic.claude-3-haiku-LLaMA');
    await denied('anthropic.claude-3-haiku-%4c%6C%61%6d%61');
    await denied('meta.llama3-70b-instruct-v1%3A0');
    // An API key's own patterns: the same.
    await denied('meta.llama3-70b-instruct-v1%3A0', viaKey);
    await denied('us.anthropic.claude-%6Fpus-4-20250514-v1:0', viaKey);
    // What is allowed arrives at AWS as that one id; patterns ignore case both ways.
    for (const [wire, headers] of [[enc(HAIKU), bearer], ['anthropic.claude-3-HAIKU-20240307-v1:0', viaKey]]) {
      const r = await t.post(`/model/${wire}/invoke`, { headers });
      assert.equal(r.status, 200, `${wire}: ${r.text()}`);
      const up = lastSigned(t.fake);
      assert.match(up.modelId, /^anthropic\.claude-3-haiku-20240307-v1:0$/i);
      assert.equal(up.rawPath, `/model/${enc(up.modelId)}/invoke`);
    }
    // A '/' that is not a dot segment stays inside the one id: AWS sees it encoded.
    const r = await t.post('/model/anthropic.claude-3-haiku%2Fmeta.llama3/invoke', { headers: bearer });
    assert.equal(r.status, 403, 'deny *llama* sees the whole id');
    const r2 = await t.post('/model/anthropic.claude-3-haiku%2Fabcdef012345/invoke', { headers: bearer });
    assert.equal(r2.status, 200, r2.text());
    assert.equal(lastSigned(t.fake).rawPath, '/model/anthropic.claude-3-haiku%2Fabcdef012345/invoke');
    assert.equal(t.fake.requests.at(-1).modelId, 'anthropic.claude-3-haiku/abcdef012345');
  } finally {
    await t.stop();
  }
});

test('relay ids: ARNs and ":" ids in every wire form are forwarded in the SDK encoding and signed correctly; the query string is not forwarded', async () => {
  const t = await startRelay({ config: RULES });
  try {
    const token = await t.token();
    const profile = 'arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-20250514-v1:0';
    // The JS SDK's form, the Anthropic SDK's (':' literal), lower-case %xx, and everything encoded.
    const forms = (id) => [enc(id), id.replaceAll('/', '%2F'), enc(id).replace(/%[0-9A-F]{2}/g, (x) => x.toLowerCase()),
      enc(id).replaceAll('.', '%2E').replaceAll('-', '%2d')];
    for (const id of [MODEL, ARN, profile, HAIKU]) {
      for (const wire of forms(id)) {
        for (const op of ['invoke', 'converse']) {
          const body = op === 'converse' ? JSON.stringify({ messages: [{ role: 'user', content: [{ text: 'c' }] }] }) : anthropicBody('a');
          const r = await t.post(`/model/${wire}/${op}`, { token, body });
          assert.equal(r.status, 200, `${wire}/${op}: ${r.text()}`);
          const up = lastSigned(t.fake);
          assert.equal(up.rawPath, `/model/${enc(id)}/${op}`, wire);
          assert.equal(up.modelId, id);
        }
      }
    }
    // The guardrail route, with an id and with an ARN.
    const gArn = 'arn:aws:bedrock:us-east-1:123456789012:guardrail/abc123def456';
    for (const [wire, id, version] of [['gr-1', 'gr-1', 'DRAFT'], [gArn.replaceAll('/', '%2F'), gArn, '1'], [enc(gArn), gArn, '12']]) {
      const r = await t.post(`/guardrail/${wire}/version/${version}/apply`, { token, body: '{"source":"INPUT","content":[{"text":{"text":"g"}}]}' });
      assert.equal(r.status, 200, `${wire}: ${r.text()}`);
      const up = lastSigned(t.fake);
      assert.equal(up.rawPath, `/guardrail/${enc(id)}/version/${version}/apply`);
      assert.deepEqual(up.guardrail, { id, version });
    }
    // The client's query string stays here (no relayed operation defines one).
    for (const q of ['x=1', 'beta=true', 'X-Amz-Security-Token=forged&X-Amz-Credential=x']) {
      const r = await t.post(`/model/${enc(MODEL)}/invoke?${q}`, { token });
      assert.equal(r.status, 200, `?${q}: ${r.text()}`);
      const up = lastSigned(t.fake);
      assert.equal(up.rawPath, `/model/${enc(MODEL)}/invoke`, `?${q} was forwarded`);
    }
    const r = await t.post(`/bedrock/guardrail/gr-1/version/1/apply?x=1`, { token, body: '{"source":"INPUT","content":[]}' });
    assert.equal(r.status, 200, r.text());
    assert.equal(lastSigned(t.fake).rawPath, '/guardrail/gr-1/version/1/apply');
  } finally {
    await t.stop();
  }
});
