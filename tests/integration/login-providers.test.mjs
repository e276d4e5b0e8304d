// Provider shapes other than plain OIDC, configured as the github and
// microsoft presets with their endpoints pointed at loopback fakes:
//   - GitHub: OAuth 2.0 only, numeric ids, the private primary verified
//     email from /user/emails, organizations from /user/orgs, an API that
//     wants a User-Agent;
//   - Entra ID multi-tenant: a discovery document whose issuer is the
//     template .../{tenantid}/v2.0, ID tokens with tid, keys without alg;
//     access.allowed_tenants decides.
// And the start-up checks that refuse a configuration admitting anybody.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runCommand } from './lib/daemon.mjs';
import { startFakeGithub } from './lib/fake-github.mjs';
import { startFakeOidc } from './lib/fake-oidc-bad.mjs';
import {
  assertNoToken, fetchLogin, invoke, loginConfig, loginState, reloadConfig, startBedrock, startLoginDaemon, stopAll,
  tokenFromHtml, validate,
} from './lib/login.mjs';

test('GitHub-shaped provider: numeric id, private verified email from /user/emails, org membership', async () => {
  const gh = await startFakeGithub();
  const bedrock = await startBedrock();
  const d = await startLoginDaemon(loginConfig({ providers: { github: gh.providerConfig() }, bedrock, access: { github_orgs: ['acme-corp'] } }), { keys: 0 });
  try {
    const r = await fetchLogin(d, 'github');
    assert.equal(r.res.status, 200, r.text);
    const token = tokenFromHtml(r.text);
    const v = (await validate(d, token)).json();
    assert.equal(v.sub, 'github:583231');
    assert.equal(v.provider, 'github');
    assert.equal(v.email, 'octo@example.com', 'the primary verified address, though /user has none');
    assert.equal((await invoke(d, token)).status, 200);
    const [u] = loginState(d.dir).users;
    assert.equal(u.id, 'github:583231');
    assert.equal(u.subject, '583231');
    assert.equal(u.email_verified, 1);
    assert.deepEqual(JSON.parse(u.orgs), ['Acme-Corp', 'other-org']);

    // What went over the wire.
    const auth = gh.requests.find((x) => x.path === '/login/oauth/authorize');
    assert.match(auth.query.scope, /\bread:org\b/, 'org membership needs read:org');
    assert.match(auth.query.scope, /\buser:email\b/);
    assert.equal(auth.query.code_challenge_method, 'S256');
    const tok = gh.requests.find((x) => x.path === '/login/oauth/access_token');
    assert.match(tok.headers.accept, /application\/json/, 'else GitHub answers form-encoded');
    assert.equal(new URLSearchParams(tok.body).get('client_secret'), gh.clientSecret);
    for (const p of ['/user', '/user/emails', '/user/orgs']) {
      const x = gh.requests.find((y) => y.path === p);
      assert.ok(x, `${p} was read`);
      assert.match(x.headers['user-agent'], /^bedrock-sso-proxy\//);
      assert.match(x.headers.authorization, /^Bearer gho_/);
    }
  } finally {
    await stopAll(d, gh, bedrock);
  }
});

test('GitHub-shaped provider: outside the orgs, or only an unverified primary or public email, is refused', async () => {
  const gh = await startFakeGithub();
  const d = await startLoginDaemon(loginConfig({
    providers: { github: gh.providerConfig() }, access: { github_orgs: ['acme-corp'], allowed_email_domains: ['example.com'] },
  }), { keys: 0 });
  try {
    // 1. not a member of the org, and no verified address
    gh.orgs = [{ login: 'other-org', id: 1 }];
    gh.emails = [{ email: 'octo@example.com', primary: true, verified: false, visibility: 'private' }];
    let before = loginState(d.dir);
    let r = await fetchLogin(d, 'github');
    assert.equal(r.res.status, 403, r.text);
    assert.match(r.text, /not allowed to use this proxy/);
    let row = assertNoToken(d.dir, before, { event: 'login_refused', users: 0 });
    assert.equal(row.user_id, 'github:583231');
    // 2. a public address on /user that /user/emails says is unverified
    gh.user = { ...gh.user, email: 'octo@example.com' };
    before = loginState(d.dir);
    r = await fetchLogin(d, 'github');
    assert.equal(r.res.status, 403, r.text);
    assertNoToken(d.dir, before, { event: 'login_refused', users: 0 });
    // 3. GitHub refuses the code (with status 200, as it does)
    before = loginState(d.dir);
    const { authUrl, jar } = await fetchLogin(d, 'github', { stopAt: 'idp' });
    const back = new URL((await fetch(authUrl, { redirect: 'manual' })).headers.get('location'));
    back.searchParams.set('code', 'not-the-code');
    const res = await jar.fetch(`${d.url}${back.pathname}${back.search}`);
    assert.equal(res.status, 400);
    assert.match(await res.text(), /refused the code: bad_verification_code/);
    assertNoToken(d.dir, before, { event: 'login_failed', users: 0 });
    // 4. a verified primary address in the domain admits without the org
    gh.emails = [{ email: 'octo@example.com', primary: true, verified: true, visibility: 'private' }];
    r = await fetchLogin(d, 'github');
    assert.equal(r.res.status, 200, r.text);
    assert.equal((await validate(d, tokenFromHtml(r.text))).json().email, 'octo@example.com');
  } finally {
    await stopAll(d, gh);
  }
});

test('Entra-shaped multi-tenant provider: an allowed tenant logs in, another is refused', async () => {
  const A = '0a0a0a0a-1111-2222-3333-444444444444';
  const B = '0b0b0b0b-1111-2222-3333-444444444444';
  const op = await startFakeOidc({
    entra: true, tenant: A, user: { sub: 'pairwise-sub-1', oid: 'oid-1', email: 'eve@contoso.test', name: 'Eve', preferred_username: 'eve@contoso.test' },
  });
  const bedrock = await startBedrock();
  const d = await startLoginDaemon(loginConfig({
    providers: { microsoft: { issuer: op.issuer, client_id: op.clientId, client_secret: op.clientSecret } },
    bedrock,
    // A domain rule too: it must not let another tenant's users in.
    access: { allowed_tenants: [A], allowed_email_domains: ['contoso.test'] },
  }));
  try {
    let r = await fetchLogin(d, 'microsoft');
    assert.equal(r.res.status, 200, r.text);
    const token = tokenFromHtml(r.text);
    assert.equal((await validate(d, token)).json().sub, 'microsoft:pairwise-sub-1');
    assert.equal((await invoke(d, token)).status, 200);
    assert.equal(loginState(d.dir).users[0].tenant, A);
    assert.match(op.authorizeRequests[0].path, /^\/organizations\/oauth2\/v2\.0\/authorize$/);

    // Another tenant: refused, although the email domain is allowed.
    op.tenant = B;
    op.user = { ...op.user, sub: 'pairwise-sub-2', email: 'mallory@contoso.test', email_verified: true };
    let before = loginState(d.dir);
    r = await fetchLogin(d, 'microsoft');
    assert.equal(r.res.status, 403, r.text);
    assert.match(r.text, /tenant\) is not allowed/);
    assertNoToken(d.dir, before, { event: 'login_refused', users: 1 });

    // Tenant A's tid, but the token was issued by tenant B's issuer.
    op.tenant = A;
    op.next = { claims: { iss: op.tokenIssuer(B) } };
    before = loginState(d.dir);
    r = await fetchLogin(d, 'microsoft');
    assert.equal(r.res.status, 400, r.text);
    assert.match(r.text, /wrong issuer/);
    assertNoToken(d.dir, before, { event: 'login_failed', users: 1 });

    // No tid at all.
    op.next = { claims: { tid: undefined } };
    r = await fetchLogin(d, 'microsoft');
    assert.equal(r.res.status, 502, r.text);
    assert.match(r.text, /names no tenant/);
  } finally {
    await stopAll(d, op, bedrock);
  }
});

test('Entra-shaped single tenant named by a domain: its discovery names the tenant id, logins work', async () => {
  const A = '0a0a0a0a-1111-2222-3333-444444444444';
  const op = await startFakeOidc({ entra: true, tenant: A, user: { sub: 's-1', email: 'eve@contoso.test', name: 'Eve' } });
  const d = await startLoginDaemon(loginConfig({
    providers: {
      microsoft: {
        tenant_id: 'contoso.example', issuer: `${op.url}/contoso.example/v2.0`, client_id: op.clientId, client_secret: op.clientSecret,
      },
    },
    access: { allowed_groups: ['none'], allowed_tenants: [A] },
  }));
  try {
    const r = await fetchLogin(d, 'microsoft');
    assert.equal(r.res.status, 200, r.text);
    assert.match(op.authorizeRequests[0].path, /^\/contoso\.example\/oauth2\//);
  } finally {
    await stopAll(d, op);
  }
});

test('a custom provider on a multi-tenant (template) issuer admits allowed tenants only, emails or not', async () => {
  const A = '0a0a0a0a-1111-2222-3333-444444444444';
  const B = '0b0b0b0b-1111-2222-3333-444444444444';
  const op = await startFakeOidc({ entra: true, tenant: B, user: { sub: 's-b', email: 'ceo@contoso.test', name: 'Not the CEO' } });
  // trust_email: the classic mistake with Entra, whose emails are not verified.
  const d = await startLoginDaemon(loginConfig({
    providers: { entra: { issuer: op.issuer, client_id: op.clientId, client_secret: op.clientSecret, trust_email: true } },
    access: { allowed_email_domains: ['contoso.test'] },
  }));
  try {
    let before = loginState(d.dir);
    let r = await fetchLogin(d, 'entra');
    assert.equal(r.res.status, 403, r.text);
    assert.match(r.text, /tenant\) is not allowed/);
    assertNoToken(d.dir, before, { event: 'login_refused', users: 0 });
    // The same with tenant A allowed: B still out, A in.
    const cfg = loginConfig({
      providers: { entra: { issuer: op.issuer, client_id: op.clientId, client_secret: op.clientSecret, trust_email: true } },
      access: { allowed_email_domains: ['contoso.test'], allowed_tenants: [A] },
    });
    await reloadConfig(d, cfg);
    before = loginState(d.dir);
    r = await fetchLogin(d, 'entra');
    assert.equal(r.res.status, 403, r.text);
    assertNoToken(d.dir, before, { event: 'login_refused', users: 0 });
    op.tenant = A;
    r = await fetchLogin(d, 'entra');
    assert.equal(r.res.status, 200, r.text);
  } finally {
    await stopAll(d, op);
  }
});

test('start-up refuses providers nobody restricts, and multi-tenant Microsoft without allowed_tenants', async () => {
  const check = async (config) => runCommand(['-n'], { config: { ...config, aws: { region: 'us-east-1' } } });
  const p = { client_id: 'c', client_secret: 's' };
  let r = await check({ oauth: { providers: { idp: { ...p, issuer: 'https://idp.example.com' } } } });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /login is configured but nobody is restricted/);
  assert.doesNotMatch(r.stdout, /configuration OK/);

  r = await check({ oauth: { trusted_issuers: [{ issuer: 'https://idp.example.com', audience: ['api'] }] } });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /nobody is restricted/);

  r = await check({ oauth: { providers: { idp: { ...p, issuer: 'https://idp.example.com' } } }, access: { allow_any_user: true } });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /configuration OK/);

  for (const tenant of [undefined, 'organizations', 'common', 'consumers']) {
    r = await check({ oauth: { providers: { microsoft: { ...p, ...(tenant ? { tenant_id: tenant } : {}) } } }, access: { allowed_email_domains: ['example.com'] } });
    assert.equal(r.code, 1, `${tenant}: ${r.stderr}`);
    assert.match(r.stderr, /multi-tenant endpoint "[a-z]+": set access\.allowed_tenants/);
  }
  r = await check({ oauth: { providers: { microsoft: p } }, access: { allowed_tenants: ['0a0a0a0a-1111-2222-3333-444444444444'] } });
  assert.equal(r.code, 0, r.stderr);
  r = await check({ oauth: { providers: { microsoft: { ...p, tenant_id: '0a0a0a0a-1111-2222-3333-444444444444' } } }, access: { allowed_email_domains: ['example.com'] } });
  assert.equal(r.code, 0, r.stderr);

  // Outbound URLs: https, or http to loopback only.
  r = await check({ oauth: { providers: { idp: { ...p, issuer: 'http://idp.example.com' } } }, access: { allow_any_user: true } });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /must use https/);

  // Names that would let one identity provider speak for another's users.
  const iss = (n, more = {}) => ({ issuer: `https://i${n}.example.com`, audience: ['api'], ...more });
  r = await check({
    oauth: {
      providers: { local: { ...p, issuer: 'https://idp.example.com' }, corp: { ...p, issuer: 'https://idp.example.com' } },
      trusted_issuers: [iss(0), iss(1), iss(2, { provider_name: 'corp' }), iss(3, { provider_name: 'legacy' }), iss(4, { provider_name: 'Bad Name' })],
    },
    access: { allow_any_user: true },
  });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /:\d+: oauth\.providers: the name "local" is reserved/);
  assert.match(r.stderr, /trusted_issuers\.1\.provider_name: "external" is already the name of trusted issuer 0/);
  assert.match(r.stderr, /trusted_issuers\.2\.provider_name: "corp" is a login provider with another issuer/);
  assert.match(r.stderr, /trusted_issuers\.3\.provider_name: "legacy" must match/);
  assert.match(r.stderr, /trusted_issuers\.4\.provider_name: "Bad Name" must match/);
  r = await check({
    oauth: {
      providers: { corp: { ...p, issuer: 'https://idp.example.com' } },
      // The login provider's own issuer may share its name: the same users.
      trusted_issuers: [iss(0), iss(1, { provider_name: 'partner' }), { issuer: 'https://idp.example.com', audience: ['api'], provider_name: 'corp' }],
    },
    access: { allow_any_user: true },
  });
  assert.equal(r.code, 0, r.stderr);
});
