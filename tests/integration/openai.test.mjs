// The OpenAI-compatible routes (src/route-openai.c and the relay's SSE
// pass-through in src/route-bedrock.c), driven with the real openai SDK: chat
// completions and responses, whole and streamed, relayed to bedrock-runtime's
// /openai/v1 routes signed as `bedrock`; usage rows from the usage objects;
// the same credentials, model policy and errors (in OpenAI's envelope).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import OpenAI from 'openai';
import { startRelay, waitUsage } from './lib/relay.mjs';

const GPT = 'openai.gpt-oss-120b-1:0';

const client = (t, apiKey) => new OpenAI({ baseURL: `${t.d.url}/openai/v1`, apiKey, maxRetries: 0 });

async function rejects(promise) {
  try { await promise; } catch (e) { return e; }
  return assert.fail('expected a rejection');
}

test('openai: chat completions and responses, whole and streamed, relayed unchanged with usage rows', async () => {
  const t = await startRelay({ config: { models: { aliases: [{ id: 'gpt-house', bedrock_id: GPT }] } } });
  try {
    const token = await t.token();
    const c = client(t, token);
    const chat = await c.chat.completions.create({ model: GPT, messages: [{ role: 'user', content: 'hello chat' }] });
    assert.equal(chat.choices[0].message.content, 'echo: hello chat');
    let up = t.fake.requests.at(-1);
    assert.equal(up.rawPath, '/openai/v1/chat/completions');
    assert.equal(up.signatureValid, true);
    assert.equal(up.modelId, GPT);

    const stream = await c.chat.completions.create({
      model: 'gpt-house', messages: [{ role: 'user', content: 'stream chat' }], stream: true, stream_options: { include_usage: true },
    });
    let text = '';
    let usage = null;
    for await (const ch of stream) {
      text += ch.choices[0]?.delta?.content ?? '';
      usage = ch.usage ?? usage;
    }
    assert.equal(text, 'echo: stream chat');
    up = t.fake.requests.at(-1);
    assert.equal(up.modelId, GPT, 'the alias is resolved in the body');
    assert.equal(usage.prompt_tokens, up.usage.inputTokens);

    const resp = await c.responses.create({ model: GPT, input: 'hello responses' });
    assert.equal(resp.output_text, 'echo: hello responses');
    assert.equal(t.fake.requests.at(-1).rawPath, '/openai/v1/responses');
    const rs = await c.responses.create({ model: GPT, input: 'stream responses', stream: true });
    let rtext = '';
    let done = null;
    for await (const ev of rs) {
      if (ev.type === 'response.output_text.delta') rtext += ev.delta;
      if (ev.type === 'response.completed') done = ev.response;
    }
    assert.equal(rtext, 'echo: stream responses');
    assert.equal(done.status, 'completed');

    const rows = await waitUsage(t.d.dir, 4);
    assert.deepEqual(rows.map((r) => r.route), ['ChatCompletions', 'ChatCompletions', 'Responses', 'Responses']);
    for (const [i, r] of rows.entries()) {
      const rec = t.fake.requests[i];
      assert.equal(r.model, GPT);
      assert.equal(r.input_tokens, rec.usage.inputTokens, `row ${i}`);
      assert.equal(r.output_tokens, rec.usage.outputTokens, `row ${i}`);
      assert.equal(r.cache_read_tokens, 4, `row ${i}`);
    }
  } finally {
    await t.stop();
  }
});

test('openai: bad credentials 401, denied model 400, Bedrock\'s errors, all in OpenAI\'s envelope', async () => {
  const t = await startRelay({ config: { models: { rules: [{ deny: ['openai.*'] }] } } });
  try {
    const token = await t.token();
    let e = await rejects(client(t, 'nope').chat.completions.create({ model: GPT, messages: [{ role: 'user', content: 'x' }] }));
    assert.equal(e.status, 401);
    assert.ok(e instanceof OpenAI.AuthenticationError);
    assert.match(e.error.message, /./);
    e = await rejects(client(t, token).chat.completions.create({ model: GPT, messages: [{ role: 'user', content: 'x' }] }));
    assert.equal(e.status, 400);
    assert.equal(e.error.type, 'invalid_request_error');
    assert.match(e.error.message, /not allowed/);
    e = await rejects(client(t, token).responses.create({ model: 'us.anthropic.test.error-429', input: 'x' }));
    assert.equal(e.status, 429);
    assert.equal(e.error.type, 'rate_limit_error');
    const r = await t.post('/openai/v1/chat/completions', { token, body: '{"model":' });
    assert.equal(r.status, 400);
    assert.equal(r.json().error.type, 'invalid_request_error');
  } finally {
    await t.stop();
  }
  const t2 = await startRelay({ config: { openai: { enabled: false } } });
  try {
    const r = await t2.post('/openai/v1/responses', { token: await t2.token(), body: '{"model":"x"}' });
    assert.equal(r.status, 404);
  } finally {
    await t2.stop();
  }
});
