// Secret configuration keys read from AWS Secrets Manager (KEY_arn, issue
// 13): a provider's client secret taken from the fake Secrets Manager (a
// JSON member, "ARN#key") is used in a real login, read again on SIGHUP
// (the new value is used), and a secret that cannot be read is a clear
// error naming the ARN, never the value: at start the daemon exits 1; at a
// reload the running configuration stays. The fake checks every request's
// SigV4 signature with the AWS SDK's signer.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { runCommand, startDaemon } from './lib/daemon.mjs';
import { startFakeGithub } from './lib/fake-github.mjs';
import { startFakeSecretsManager } from './lib/fake-kms.mjs';
import { fetchLogin, tokenFromHtml } from './lib/login.mjs';

const REGION = 'eu-west-1';
const CREDS = { accessKeyId: 'AKIDSECRETSTEST00001', secretAccessKey: 'secrets/test+secret/EXAMPLEKEY012345678' };

let sm;
before(async () => { sm = await startFakeSecretsManager({ credentials: [CREDS], region: REGION }); });
after(async () => { await sm?.close(); });

const env = () => ({ AWS_ENDPOINT_URL_SECRETS_MANAGER: sm.url, AWS_EC2_METADATA_DISABLED: 'true' });
const config = (gh, provider) => ({
  jwt: { issuer: 'https://bsp.test' },
  oauth: { providers: { github: provider ?? gh.providerConfig() }, timeout: 3 },
  access: { allowed_email_domains: ['example.com'] },
  aws: { region: 'us-east-1', access_key_id: CREDS.accessKeyId, secret_access_key: CREDS.secretAccessKey },
});
/** The provider's config with its client secret from Secrets Manager. */
function fromArn(gh, arn) {
  const p = gh.providerConfig();
  delete p.client_secret;
  return { ...p, client_secret_arn: arn };
}
async function sighup(d) {
  const mark = d.logMark();
  d.signal('SIGHUP');
  await d.waitForLog((e) => typeof e === 'object' && /^configuration reload/.test(e?.msg ?? ''), 10000, { from: mark });
  return d.logs.slice(mark).filter((e) => typeof e === 'object' && /^configuration reload/.test(e?.msg ?? ''));
}
async function loginOk(d) {
  const r = await fetchLogin(d, 'github');
  assert.equal(r.res.status, 200, r.text);
  assert.ok(tokenFromHtml(r.text));
}

test('a client secret from Secrets Manager (ARN#key) is used in a login, and read again on SIGHUP', async () => {
  const first = 'gh-secret-from-sm-first-0123456789';
  const second = 'gh-secret-from-sm-second-9876543210';
  const gh = await startFakeGithub({ clientSecret: first });
  const arn = sm.putSecret('bsp/github', { SecretString: JSON.stringify({ client_secret: first, other: 'x' }) });
  const d = await startDaemon({ config: config(gh, fromArn(gh, `${arn}#client_secret`)), env: env() });
  try {
    const calls = () => sm.calls('GetSecretValue').filter((r) => r.json?.SecretId === arn);
    assert.equal(calls().length, 1, 'read once at start');
    assert.ok(sm.requests.every((r) => r.signatureValid === true), 'every call carries a valid SigV4 signature');
    await loginOk(d);
    const tok = gh.requests.find((x) => x.path === '/login/oauth/access_token');
    assert.equal(new URLSearchParams(tok.body).get('client_secret'), first);

    // A command reads the secrets as the daemon does before it runs.
    const cmd = await runCommand(['user', 'list'], { dir: d.dir, env: env() });
    assert.equal(cmd.code, 0, cmd.stderr);
    assert.equal(calls().length, 2, 'the command read it too');

    // Rotated in Secrets Manager (and at the IdP): a reload reads the new value.
    sm.putSecret('bsp/github', { SecretString: JSON.stringify({ client_secret: second }) });
    gh.clientSecret = second;
    const [res] = await sighup(d);
    assert.equal(res.msg, 'configuration reloaded', JSON.stringify(res));
    assert.equal(calls().length, 3, 'read again on SIGHUP');
    await loginOk(d);

    // Unreadable at a reload: a clear error naming the ARN, the running configuration stays.
    sm.deny('bsp/github');
    const [fail] = await sighup(d);
    assert.match(fail.msg, /configuration reload failed/);
    const text = d.logs.map((e) => JSON.stringify(e)).join('\n');
    assert.match(text, new RegExp(`oauth\\.providers\\.github\\.client_secret: cannot read secret ${arn.replace(/[/.]/g, '\\$&')}#client_secret: denied \\(AccessDeniedException`));
    assert.doesNotMatch(text, new RegExp(`${first}|${second}`), 'no secret value in any log line');
    await loginOk(d);
  } finally {
    await d.stop();
    await gh.close();
  }
});

test('a secret that cannot be read at start: exit 1 with an error naming the key and the ARN', async () => {
  const gh = await startFakeGithub();
  const missing = 'arn:aws:secretsmanager:eu-west-1:111122223333:secret:bsp/none-AbCdEf';
  const r = await runCommand([], { config: config(gh, fromArn(gh, missing)), env: env() });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /oauth\.providers\.github\.client_secret: cannot read secret arn:aws:secretsmanager:eu-west-1:111122223333:secret:bsp\/none-AbCdEf: client_error \(ResourceNotFoundException/);
  // A plain string secret that is not the JSON object its #key asks for.
  const arn = sm.putSecret('bsp/plain', { SecretString: 'not-json' });
  const r2 = await runCommand([], { config: config(gh, fromArn(gh, `${arn}#client_secret`)), env: env() });
  assert.equal(r2.code, 1, r2.stderr);
  assert.match(r2.stderr, /is not a JSON object with a string member \\"client_secret\\"/);
  assert.doesNotMatch(r2.stderr, /not-json/);
  await gh.close();
});

test('KEY and KEY_arn exclude each other; an ARN that is not a secret\'s is refused; -n checks without reading', async () => {
  const gh = await startFakeGithub();
  const arn = sm.putSecret('bsp/excl', { SecretString: 'v' });
  const both = { ...gh.providerConfig(), client_secret_arn: arn };
  let r = await runCommand(['-n'], { config: config(gh, both), env: env() });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /client_secret .*and oauth\.providers\.github\.client_secret_arn are both set; use one/);
  r = await runCommand(['-n'], { config: config(gh, fromArn(gh, 'arn:aws:kms:eu-west-1:111122223333:key/abc')), env: env() });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /client_secret_arn: expected the ARN of a Secrets Manager secret/);
  const before = sm.requests.length;
  r = await runCommand(['-n'], { config: config(gh, fromArn(gh, arn)), env: env() });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /configuration OK/);
  assert.equal(sm.requests.length, before, '-n does not call Secrets Manager');
  await gh.close();
});

test('SIGHUP while Secrets Manager does not answer: the running configuration serves; SIGTERM meanwhile stops cleanly', async () => {
  const gh = await startFakeGithub({ clientSecret: 'gh-secret-stall-0123456789' });
  const arn = sm.putSecret('bsp/stall', { SecretString: 'gh-secret-stall-0123456789' });
  const d = await startDaemon({ config: config(gh, fromArn(gh, arn)), env: env() });
  try {
    sm.setDown('stall');
    const before = sm.calls('GetSecretValue').length;
    d.signal('SIGHUP');
    await d.waitForLog((e) => typeof e === 'object' && /received SIGHUP/.test(e?.msg ?? ''), 5000);
    await new Promise((r) => { const t = setInterval(() => { if (sm.calls('GetSecretValue').length > before) { clearInterval(t); r(); } }, 20); });
    d.signal('SIGHUP'); // taken once the first reload's reads are over
    await loginOk(d);
  } finally {
    sm.setDown(false);
    await d.stop(); // SIGTERM; no sanitizer report, exit 0
    await gh.close();
  }
});
