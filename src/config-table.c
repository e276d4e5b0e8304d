/*
 * config-table.c: the keyword table. Every configuration key, its type,
 * default, bounds, flags and one line of help. The man page drift check
 * (tests/guards) reads this table through tests/unit/dump-keys.
 */

#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bsp.h"

#ifndef LOCALSTATEDIR
#define LOCALSTATEDIR "/var"
#endif

#define OFF(f)	offsetof(struct config, f)

static void	aws_config_check(struct config *, struct config_errors *);
static void	api_config_check(struct config *, struct config_errors *);
static int	aws_region_ok(const char *);
#define LL(x)	((long long)(x))

static const char *const level_choices[] = {
	"error", "warn", "info", "debug", NULL
};
static const char *const format_choices[] = { "text", "json", NULL };
static const char *const output_choices[] = { "stderr", "syslog", NULL };
/* Order matches enum jwt_alg in bsp.h. */
const char *const jwt_alg_choices[] = {
	"EdDSA", "ES256", "RS256", "HS256", NULL
};
const char *const legacy_alg_choices[] = { "HS256", "HS384", "HS512", NULL };
static const char *const model_default_choices[] = { "allow", "deny", NULL };
static const char *const migrate_choices[] = { "auto", "off", NULL };
/* Orders match ANTHROPIC_UP_* and ANTHROPIC_COUNT_* in bsp.h. */
static const char *const upstream_choices[] = { "invoke", "native", NULL };
static const char *const count_choices[] = {
	"bedrock", "native", "off", NULL
};
static const char *const betas_choices[] = { "header", "body", NULL };

#define RULE(f)	offsetof(struct model_rule, f)
#define PROV(f)	offsetof(struct provider_config, f)
#define ISS(f)	offsetof(struct issuer_config, f)
#define ALIAS(f)	offsetof(struct model_alias, f)
static const char *const token_auth_choices[] = {
	"auto", "basic", "post", NULL
};

const struct config_key config_keys[] = {
	/* server */
	{ "server.host", CT_STRING, CS_ROOT, OFF(server_host), "127.0.0.1",
	  0, 0, NULL, CK_RESTART,
	  "address to listen on (when server.listen is not set)" },
	{ "server.port", CT_INT, CS_ROOT, OFF(server_port), "3000",
	  0, 65535, NULL, CK_RESTART,
	  "port to listen on (0 picks a free port)" },
	{ "server.listen", CT_LIST, CS_ROOT, OFF(server_listen), NULL,
	  0, 0, NULL, CK_RESTART,
	  "several listeners as host:port ([addr]:port for IPv6)" },
	{ "server.public_url", CT_STRING, CS_ROOT, OFF(server_public_url),
	  NULL, 0, 0, NULL, 0,
	  "external base URL; redirect URIs and the token issuer derive "
	  "from it" },
	{ "server.tls.cert_file", CT_PATH, CS_ROOT, OFF(server_tls_cert_file),
	  NULL, 0, 0, NULL, 0,
	  "PEM certificate chain for inbound TLS; reloaded on SIGHUP" },
	{ "server.tls.key_file", CT_PATH, CS_ROOT, OFF(server_tls_key_file),
	  NULL, 0, 0, NULL, CK_SECRET_PERMS,
	  "PEM private key for inbound TLS; mode 0600" },
	{ "server.trusted_proxies", CT_LIST, CS_ROOT,
	  OFF(server_trusted_proxies), NULL, 0, 0, NULL, 0,
	  "CIDRs whose X-Forwarded-For and X-Forwarded-Proto are honoured" },
	{ "server.max_body_bytes", CT_INT, CS_ROOT, OFF(server_max_body_bytes),
	  "26214400", 1024, LL(1) << 30, NULL, 0,
	  "larger request bodies get 413" },
	{ "server.max_header_bytes", CT_INT, CS_ROOT,
	  OFF(server_max_header_bytes), "32768", 1024, 1048576, NULL,
	  0, "larger request heads are refused with 431" },
	{ "server.max_connections", CT_INT, CS_ROOT,
	  OFF(server_max_connections), "4096", 1, 1000000, NULL, 0,
	  "connections beyond this are closed at once" },
	{ "server.max_connections_per_client", CT_INT, CS_ROOT,
	  OFF(server_max_conns_per_client), "256", 0, 1000000, NULL, 0,
	  "connections from one client address (IPv6: /64) beyond this are "
	  "closed at once; 0: no limit" },
	{ "server.timeouts.header", CT_DURATION, CS_ROOT, OFF(to_header), "10",
	  1, 3600, NULL, 0,
	  "seconds a client has to send a complete request head" },
	{ "server.timeouts.body", CT_DURATION, CS_ROOT, OFF(to_body), "120",
	  1, 86400, NULL, 0,
	  "seconds a client has to send the body once its head arrived" },
	{ "server.timeouts.idle", CT_DURATION, CS_ROOT, OFF(to_idle), "120",
	  1, 86400, NULL, 0,
	  "seconds an idle keep-alive connection is kept" },
	{ "server.timeouts.upstream_connect", CT_DURATION, CS_ROOT,
	  OFF(to_upstream_connect), "10", 1, 600, NULL, 0,
	  "seconds to connect (TCP and TLS) to an upstream" },
	{ "server.timeouts.upstream_first_byte", CT_DURATION, CS_ROOT,
	  OFF(to_upstream_first_byte), "300", 1, 3600, NULL, 0,
	  "seconds to wait for an upstream's response to begin" },
	{ "server.timeouts.stream_idle", CT_DURATION, CS_ROOT,
	  OFF(to_stream_idle), "600", 1, 86400, NULL, 0,
	  "seconds a stream may be silent before it is ended" },
	{ "server.shutdown_timeout", CT_DURATION, CS_ROOT,
	  OFF(server_shutdown_timeout), "30", 0, 3600, NULL, 0,
	  "seconds in-flight requests get to finish on SIGTERM" },

	/* tokens */
	{ "jwt.algorithm", CT_ENUM, CS_ROOT, OFF(jwt_algorithm), "EdDSA", 0, 0,
	  jwt_alg_choices, 0,
	  "EdDSA, ES256, RS256 (key generated or from jwt.key_file) or HS256 "
	  "(jwt.secret)" },
	{ "jwt.key_file", CT_PATH, CS_ROOT, OFF(jwt_key_file), NULL, 0, 0,
	  NULL, CK_SECRET_PERMS,
	  "PKCS#8 PEM private key for jwt.algorithm; else one is generated" },
	{ "jwt.kek_file", CT_PATH, CS_ROOT, OFF(jwt_kek_file), NULL, 0, 0,
	  NULL, CK_SECRET_PERMS | CK_RESTART,
	  "32-byte key-encryption key every daemon sharing the database has "
	  "(PostgreSQL); default: beside the SQLite file" },
	{ "jwt.secret", CT_SECRET, CS_ROOT, OFF(jwt_secret), NULL, 0, 0, NULL,
	  0, "HS256 signing secret, at least 32 bytes" },
	{ "jwt.issuer", CT_STRING, CS_ROOT, OFF(jwt_issuer), NULL, 0, 0, NULL,
	  0, "iss of our tokens (default: server.public_url)" },
	{ "jwt.audience", CT_STRING, CS_ROOT, OFF(jwt_audience),
	  "bedrock-sso-proxy", 0, 0, NULL, 0, "aud of our tokens" },
	{ "jwt.access_token_ttl", CT_DURATION, CS_ROOT, OFF(jwt_access_ttl),
	  "2592000", 60, 31536000, NULL, 0, "access token lifetime" },
	{ "jwt.refresh_token_ttl", CT_DURATION, CS_ROOT, OFF(jwt_refresh_ttl),
	  "7776000", 300, 315360000, NULL, 0,
	  "absolute lifetime of a login session (token family)" },
	{ "jwt.refresh_reuse_grace", CT_DURATION, CS_ROOT,
	  OFF(jwt_refresh_grace), "30", 0, 3600, NULL, 0,
	  "a retried refresh within this window returns the same successor" },
	{ "jwt.legacy.secret", CT_SECRET, CS_ROOT, OFF(jwt_legacy_secret), NULL,
	  0, 0, NULL, 0, "also accept HMAC tokens signed with this secret" },
	{ "jwt.legacy.algorithm", CT_ENUM, CS_ROOT, OFF(jwt_legacy_algorithm),
	  "HS256", 0, 0, legacy_alg_choices, 0, "algorithm of legacy tokens" },
	{ "jwt.legacy.issuer", CT_STRING, CS_ROOT, OFF(jwt_legacy_issuer), NULL,
	  0, 0, NULL, 0, "iss of legacy tokens" },
	{ "jwt.legacy.audience", CT_STRING, CS_ROOT, OFF(jwt_legacy_audience),
	  NULL, 0, 0, NULL, 0, "aud of legacy tokens, if they carry one" },
	{ "api_keys.enabled", CT_BOOL, CS_ROOT, OFF(apikeys_enabled), "true", 0,
	  0, NULL, 0, "accept and issue API keys" },
	{ "api_keys.default_ttl", CT_DURATION, CS_ROOT, OFF(apikeys_default_ttl),
	  "7776000", 0, 315360000, NULL, 0,
	  "lifetime of a new API key (0: no expiry)" },
	{ "api_keys.max_ttl", CT_DURATION, CS_ROOT, OFF(apikeys_max_ttl),
	  "31536000", 0, 315360000, NULL, 0,
	  "longest lifetime a user may give a key (0: no limit)" },
	{ "api_keys.max_per_user", CT_INT, CS_ROOT, OFF(apikeys_max_per_user),
	  "20", 0, 10000, NULL, 0, "active API keys one user may hold" },
	{ "cache.validation_ttl", CT_DURATION, CS_ROOT, OFF(cache_validation_ttl),
	  "86400", 0, 31536000, NULL, 0,
	  "longest a verified external token is cached" },
	{ "cache.max_entries", CT_INT, CS_ROOT, OFF(cache_max_entries), "10000",
	  0, 10000000, NULL, 0, "verified tokens kept in memory" },
	{ "cache.cleanup_interval", CT_DURATION, CS_ROOT,
	  OFF(cache_cleanup_interval), "3600", 1, 86400, NULL, 0,
	  "seconds between sweeps of expired entries and old rows" },

	/* login */
	{ "oauth.providers.*.client_id", CT_STRING, CS_PROVIDER, PROV(client_id),
	  NULL, 0, 0, NULL, 0, "the OAuth client id registered at the IdP" },
	{ "oauth.providers.*.client_secret", CT_SECRET, CS_PROVIDER,
	  PROV(client_secret), NULL, 0, 0, NULL, 0, "the OAuth client secret" },
	{ "oauth.providers.*.display_name", CT_STRING, CS_PROVIDER,
	  PROV(display_name), NULL, 0, 0, NULL, 0, "button text" },
	{ "oauth.providers.*.issuer", CT_STRING, CS_PROVIDER, PROV(issuer), NULL,
	  0, 0, NULL, 0, "OIDC issuer; endpoints come from its discovery" },
	{ "oauth.providers.*.authorization_url", CT_STRING, CS_PROVIDER,
	  PROV(authorization_url), NULL, 0, 0, NULL, 0, "authorization endpoint" },
	{ "oauth.providers.*.token_url", CT_STRING, CS_PROVIDER, PROV(token_url),
	  NULL, 0, 0, NULL, 0, "token endpoint" },
	{ "oauth.providers.*.user_info_url", CT_STRING, CS_PROVIDER,
	  PROV(user_info_url), NULL, 0, 0, NULL, 0, "userinfo endpoint" },
	{ "oauth.providers.*.jwks_uri", CT_STRING, CS_PROVIDER, PROV(jwks_uri),
	  NULL, 0, 0, NULL, 0, "keys that sign ID tokens" },
	{ "oauth.providers.*.emails_url", CT_STRING, CS_PROVIDER,
	  PROV(emails_url), NULL, 0, 0, NULL, 0, "GitHub: the user's emails" },
	{ "oauth.providers.*.orgs_url", CT_STRING, CS_PROVIDER, PROV(orgs_url),
	  NULL, 0, 0, NULL, 0, "GitHub: the user's organizations" },
	{ "oauth.providers.*.scopes", CT_LIST, CS_PROVIDER, PROV(scopes), NULL,
	  0, 0, NULL, 0, "scopes requested" },
	{ "oauth.providers.*.redirect_uri", CT_STRING, CS_PROVIDER,
	  PROV(redirect_uri), NULL, 0, 0, NULL, 0,
	  "callback URL registered at the IdP" },
	{ "oauth.providers.*.user_id_field", CT_STRING, CS_PROVIDER,
	  PROV(user_id_field), NULL, 0, 0, NULL, 0, "claim holding the subject" },
	{ "oauth.providers.*.email_field", CT_STRING, CS_PROVIDER,
	  PROV(email_field), NULL, 0, 0, NULL, 0, "claim holding the email" },
	{ "oauth.providers.*.email_verified_field", CT_STRING, CS_PROVIDER,
	  PROV(email_verified_field), NULL, 0, 0, NULL, 0,
	  "claim saying the email is verified" },
	{ "oauth.providers.*.name_field", CT_STRING, CS_PROVIDER,
	  PROV(name_field), NULL, 0, 0, NULL, 0, "claim holding the name" },
	{ "oauth.providers.*.groups_field", CT_STRING, CS_PROVIDER,
	  PROV(groups_field), NULL, 0, 0, NULL, 0, "claim holding groups" },
	{ "oauth.providers.*.pkce", CT_BOOL, CS_PROVIDER, PROV(pkce), "true", 0,
	  0, NULL, 0, "use PKCE S256" },
	{ "oauth.providers.*.trust_email", CT_BOOL, CS_PROVIDER,
	  PROV(trust_email), "false", 0, 0, NULL, 0,
	  "treat emails as verified when the IdP does not say" },
	{ "oauth.providers.*.token_auth", CT_ENUM, CS_PROVIDER, PROV(token_auth),
	  "auto", 0, 0, token_auth_choices, 0,
	  "client authentication at the token endpoint" },
	{ "oauth.providers.*.tenant_id", CT_STRING, CS_PROVIDER,
	  PROV(tenant_id), NULL, 0, 0, NULL, 0, "microsoft: tenant" },
	{ "oauth.providers.*.instance_url", CT_STRING, CS_PROVIDER,
	  PROV(instance_url), NULL, 0, 0, NULL, 0, "gitlab: instance" },
	{ "oauth.providers.*.domain", CT_STRING, CS_PROVIDER, PROV(domain), NULL,
	  0, 0, NULL, 0, "auth0, okta, cognito: domain" },
	{ "oauth.providers.*.authorization_server", CT_STRING, CS_PROVIDER,
	  PROV(authorization_server), NULL, 0, 0, NULL, 0,
	  "okta: authorization server" },
	{ "oauth.providers.*.region", CT_STRING, CS_PROVIDER, PROV(region), NULL,
	  0, 0, NULL, 0, "cognito: region" },
	{ "oauth.providers.*.user_pool_id", CT_STRING, CS_PROVIDER,
	  PROV(user_pool_id), NULL, 0, 0, NULL, 0, "cognito: user pool" },
	{ "oauth.providers.*.algorithms", CT_LIST, CS_PROVIDER,
	  PROV(algorithms), "RS256", 0, 0, NULL, 0,
	  "algorithms ID tokens may be signed with" },
	{ "oauth.trusted_issuers[].issuer", CT_STRING, CS_ISSUER, ISS(issuer),
	  NULL, 0, 0, NULL, 0, "iss of accepted bearer tokens" },
	{ "oauth.trusted_issuers[].audience", CT_LIST, CS_ISSUER, ISS(audience),
	  NULL, 0, 0, NULL, 0, "accepted aud (or client_id) values" },
	{ "oauth.trusted_issuers[].jwks_uri", CT_STRING, CS_ISSUER,
	  ISS(jwks_uri), NULL, 0, 0, NULL, 0, "else from OIDC discovery" },
	{ "oauth.trusted_issuers[].algorithms", CT_LIST, CS_ISSUER,
	  ISS(algorithms), "RS256", 0, 0, NULL, 0, "accepted algorithms" },
	{ "oauth.trusted_issuers[].token_use", CT_STRING, CS_ISSUER,
	  ISS(token_use), NULL, 0, 0, NULL, 0,
	  "required token_use claim (Cognito: access)" },
	{ "oauth.trusted_issuers[].subject_claim", CT_STRING, CS_ISSUER,
	  ISS(subject_claim), "sub", 0, 0, NULL, 0, "claim naming the user" },
	{ "oauth.trusted_issuers[].email_claim", CT_STRING, CS_ISSUER,
	  ISS(email_claim), "email", 0, 0, NULL, 0, "claim holding the email" },
	{ "oauth.trusted_issuers[].groups_claim", CT_STRING, CS_ISSUER,
	  ISS(groups_claim), "groups", 0, 0, NULL, 0, "claim holding groups" },
	{ "oauth.trusted_issuers[].provider_name", CT_STRING, CS_ISSUER,
	  ISS(provider_name), "external", 0, 0, NULL, 0,
	  "provider part of the user id" },
	{ "oauth.jwks_refresh_interval", CT_DURATION, CS_ROOT,
	  OFF(oauth_jwks_refresh), "3600", 60, 604800, NULL, 0,
	  "how often discovery documents and JWKS are fetched again" },
	{ "oauth.max_pending_logins", CT_INT, CS_ROOT, OFF(oauth_max_pending),
	  "20", 1, 100000, NULL, 0,
	  "sign-ins one client address may start per ten minutes" },
	{ "oauth.timeout", CT_DURATION, CS_ROOT, OFF(oauth_timeout), "10", 1,
	  300, NULL, 0, "seconds an identity provider has to answer" },
	{ "access.allowed_email_domains", CT_LIST, CS_ROOT,
	  OFF(access_domains), NULL, 0, 0, NULL, 0,
	  "users with an email in these domains may log in" },
	{ "access.allowed_emails", CT_LIST, CS_ROOT, OFF(access_emails), NULL,
	  0, 0, NULL, 0, "these users may log in" },
	{ "access.allowed_groups", CT_LIST, CS_ROOT, OFF(access_groups), NULL, 0,
	  0, NULL, 0, "members of these IdP groups may log in" },
	{ "access.github_orgs", CT_LIST, CS_ROOT, OFF(access_github_orgs), NULL,
	  0, 0, NULL, 0, "members of these GitHub organizations may log in" },
	{ "access.allowed_tenants", CT_LIST, CS_ROOT, OFF(access_tenants), NULL,
	  0, 0, NULL, 0, "Microsoft Entra tenants whose users may log in" },
	{ "access.allow_any_user", CT_BOOL, CS_ROOT, OFF(access_any_user),
	  "false", 0, 0, NULL, 0, "anyone the IdP knows may log in" },
	{ "access.require_verified_email", CT_BOOL, CS_ROOT,
	  OFF(access_require_verified), "true", 0, 0, NULL, 0,
	  "an email that admits a user must be verified" },
	{ "access.admins", CT_LIST, CS_ROOT, OFF(access_admins), NULL, 0, 0,
	  NULL, 0, "emails allowed to use the admin HTTP endpoints" },

	/* models and limits */
	{ "models.default", CT_ENUM, CS_ROOT, OFF(models_default), "allow", 0,
	  0, model_default_choices, 0,
	  "allow or deny a model no rule decides about" },
	{ "models.rules[].groups", CT_LIST, CS_RULE, RULE(groups), NULL, 0, 0,
	  NULL, 0, "the rule applies to members of these groups" },
	{ "models.rules[].emails", CT_LIST, CS_RULE, RULE(emails), NULL, 0, 0,
	  NULL, 0, "the rule applies to these users" },
	{ "models.rules[].domains", CT_LIST, CS_RULE, RULE(domains), NULL, 0,
	  0, NULL, 0, "the rule applies to users of these email domains" },
	{ "models.rules[].allow", CT_LIST, CS_RULE, RULE(allow), NULL, 0, 0,
	  NULL, 0, "model id globs the rule allows" },
	{ "models.rules[].deny", CT_LIST, CS_RULE, RULE(deny), NULL, 0, 0, NULL,
	  0, "model id globs the rule denies" },
	{ "models.aliases[].id", CT_STRING, CS_ALIAS, ALIAS(id), NULL, 0, 0,
	  NULL, 0, "an Anthropic model id clients may name" },
	{ "models.aliases[].bedrock_id", CT_STRING, CS_ALIAS, ALIAS(bedrock_id),
	  NULL, 0, 0, NULL, 0,
	  "the Bedrock model or inference profile id it stands for (or "
	  "another alias)" },
	{ "models.aliases[].display_name", CT_STRING, CS_ALIAS,
	  ALIAS(display_name), NULL, 0, 0, NULL, 0,
	  "its name in GET /v1/models" },
	{ "models.builtin_aliases", CT_BOOL, CS_ROOT,
	  OFF(models_builtin_aliases), "true", 0, 0, NULL, 0,
	  "also resolve the built-in Anthropic ids of current Claude models" },
	{ "models.map_unlisted", CT_BOOL, CS_ROOT, OFF(models_map_unlisted),
	  "true", 0, 0, NULL, 0,
	  "send a claude-* id no alias names as anthropic.<id>; false: 400" },
	{ "models.region_prefix", CT_STRING, CS_ROOT,
	  OFF(models_region_prefix), "auto", 0, 0, NULL, 0,
	  "inference profile prefix for aliased foundation models: auto "
	  "(from aws.region), none, or us, eu, apac, global, ..." },
	{ "rate_limits.requests_per_minute", CT_INT, CS_ROOT,
	  OFF(rl_requests_per_minute), "0", 0, 1000000, NULL, 0,
	  "per user and per API key; 0 is off" },
	{ "rate_limits.tokens_per_minute", CT_INT, CS_ROOT,
	  OFF(rl_tokens_per_minute), "0", 0, 1000000000, NULL, 0,
	  "input plus output tokens, per user and per API key; 0 is off" },

	/* aws */
	{ "aws.region", CT_STRING, CS_ROOT, OFF(aws_region), NULL, 0, 0, NULL,
	  0, "region of Bedrock (else AWS_REGION, AWS_DEFAULT_REGION, "
	  "us-east-1)" },
	{ "aws.access_key_id", CT_STRING, CS_ROOT, OFF(aws_access_key_id), NULL,
	  0, 0, NULL, 0, "static credentials (else the credential chain)" },
	{ "aws.secret_access_key", CT_SECRET, CS_ROOT,
	  OFF(aws_secret_access_key), NULL, 0, 0, NULL, 0,
	  "secret of aws.access_key_id" },
	{ "aws.session_token", CT_SECRET, CS_ROOT, OFF(aws_session_token), NULL,
	  0, 0, NULL, 0, "session token for temporary static credentials" },
	{ "aws.profile", CT_STRING, CS_ROOT, OFF(aws_profile), NULL, 0, 0, NULL,
	  0, "profile in the shared credentials and config files" },
	{ "aws.bearer_token", CT_SECRET, CS_ROOT, OFF(aws_bearer_token), NULL,
	  0, 0, NULL, 0, "a Bedrock API key sent upstream instead of SigV4" },
	{ "aws.endpoint_url", CT_STRING, CS_ROOT, OFF(aws_endpoint_url), NULL, 0,
	  0, NULL, 0, "Bedrock runtime endpoint (VPC endpoint, FIPS, tests)" },
	{ "aws.ca_file", CT_PATH, CS_ROOT, OFF(aws_ca_file), NULL, 0, 0, NULL, 0,
	  "extra CA bundle trusted for outbound TLS" },

	/* Anthropic and OpenAI front ends */
	{ "anthropic.upstream", CT_ENUM, CS_ROOT, OFF(anthropic_upstream),
	  "invoke", 0, 0, upstream_choices, 0,
	  "invoke: /v1/messages through InvokeModel; native: through "
	  "bedrock-runtime's own Messages API" },
	{ "anthropic.ping_interval", CT_DURATION, CS_ROOT,
	  OFF(anthropic_ping_interval), "15", 0, 3600, NULL, 0,
	  "seconds of upstream silence before a ping event (invoke streams); "
	  "0: none" },
	{ "anthropic.invoke_version", CT_STRING, CS_ROOT,
	  OFF(anthropic_invoke_version), "bedrock-2023-05-31", 0, 0, NULL, 0,
	  "anthropic_version put in InvokeModel bodies; \"header\": the "
	  "client's anthropic-version" },
	{ "anthropic.count_tokens", CT_ENUM, CS_ROOT,
	  OFF(anthropic_count_tokens), "bedrock", 0, 0, count_choices, 0,
	  "/v1/messages/count_tokens through Bedrock's CountTokens, the native "
	  "route, or off (501)" },
	{ "anthropic.native_path", CT_STRING, CS_ROOT,
	  OFF(anthropic_native_path), "/anthropic/v1/messages", 0, 0, NULL, 0,
	  "path of the native Messages API on the Bedrock endpoint" },
	{ "anthropic.native_signing_name", CT_STRING, CS_ROOT,
	  OFF(anthropic_native_signing_name), "bedrock", 0, 0, NULL, 0,
	  "SigV4 service name for the native Messages API" },
	{ "anthropic.native_betas", CT_ENUM, CS_ROOT,
	  OFF(anthropic_native_betas), "header", 0, 0, betas_choices, 0,
	  "native: pass anthropic-beta as the header, or move it into the "
	  "body's anthropic_beta" },
	{ "openai.enabled", CT_BOOL, CS_ROOT, OFF(openai_enabled), "true", 0, 0,
	  NULL, 0, "serve /openai/v1/chat/completions and /openai/v1/responses" },
	{ "openai.path", CT_STRING, CS_ROOT, OFF(openai_path), "/openai/v1", 0,
	  0, NULL, 0, "path of the OpenAI-compatible API on the Bedrock "
	  "endpoint" },
	{ "openai.signing_name", CT_STRING, CS_ROOT, OFF(openai_signing_name),
	  "bedrock", 0, 0, NULL, 0,
	  "SigV4 service name for the OpenAI-compatible API" },

	/* the device flow and Claude Code's gateway sign-in */
	{ "device.enabled", CT_BOOL, CS_ROOT, OFF(device_enabled), "true", 0, 0,
	  NULL, 0, "serve the device authorization grant (RFC 8628): "
	  "/oauth/device_authorization, /device and its grant at /oauth/token" },
	{ "device.clients", CT_LIST, CS_ROOT, OFF(device_clients),
	  "claude-code,bedrock-sso-proxy-cli", 0, 0, NULL, 0,
	  "client_id values a device authorization may name" },
	{ "device.default_client", CT_STRING, CS_ROOT,
	  OFF(device_default_client), "claude-code", 0, 0, NULL, 0,
	  "the client a request without client_id is taken for (Claude Code "
	  "sends none); empty: client_id is required" },
	{ "device.access_token_ttl", CT_DURATION, CS_ROOT,
	  OFF(device_access_ttl), "3600", 60, 31536000, NULL, 0,
	  "lifetime of the access tokens of a session started by the device "
	  "flow, and of its refreshes" },
	{ "device.code_ttl", CT_DURATION, CS_ROOT, OFF(device_code_ttl), "600",
	  60, 3600, NULL, 0, "seconds a device code and its user code live" },
	{ "device.interval", CT_DURATION, CS_ROOT, OFF(device_interval), "5", 1,
	  60, NULL, 0, "seconds a client must wait between polls" },
	{ "device.authorization_limit", CT_INT, CS_ROOT,
	  OFF(device_authorization_limit), "30", 1, 100000, NULL, 0,
	  "device authorizations one client address may start per "
	  "device.limit_window" },
	{ "device.page_limit", CT_INT, CS_ROOT, OFF(device_page_limit), "60", 1,
	  100000, NULL, 0,
	  "requests of /device one client address may make per "
	  "device.limit_window" },
	{ "device.user_code_failures", CT_INT, CS_ROOT,
	  OFF(device_user_code_failures), "10", 1, 10000, NULL, 0,
	  "wrong user codes one client address may enter per "
	  "device.limit_window" },
	{ "device.limit_window", CT_DURATION, CS_ROOT, OFF(device_limit_window),
	  "600", 10, 86400, NULL, 0,
	  "seconds in which the device.*_limit allowances refill" },
	{ "gateway.managed_settings.file", CT_PATH, CS_ROOT,
	  OFF(gateway_settings_file), NULL, 0, 0, NULL, 0,
	  "a JSON object: the Claude Code managed settings GET "
	  "/managed/settings serves every user" },
	{ "gateway.managed_settings.available_models", CT_BOOL, CS_ROOT,
	  OFF(gateway_available_models), "false", 0, 0, NULL, 0,
	  "add availableModels: the Anthropic model ids the user may call" },
	{ "gateway.managed_settings.model_discovery", CT_BOOL, CS_ROOT,
	  OFF(gateway_model_discovery), "false", 0, 0, NULL, 0,
	  "add CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY=1 to env" },
	{ "gateway.managed_settings.env", CT_LIST, CS_ROOT, OFF(gateway_env),
	  NULL, 0, 0, NULL, 0,
	  "NAME=value entries added to the settings' env" },

	/* logging */
	{ "logging.level", CT_ENUM, CS_ROOT, OFF(log_level), "info", 0, 0,
	  level_choices, 0, "error, warn, info or debug" },
	{ "logging.format", CT_ENUM, CS_ROOT, OFF(log_format), "text", 0, 0,
	  format_choices, 0, "text (logfmt) or json (one object per line)" },
	{ "logging.output", CT_ENUM, CS_ROOT, OFF(log_output), "stderr", 0, 0,
	  output_choices, 0, "stderr or syslog" },
	{ "logging.access", CT_BOOL, CS_ROOT, OFF(log_access), "true", 0, 0,
	  NULL, 0, "one access line per request" },

	/* metrics */
	{ "metrics.enabled", CT_BOOL, CS_ROOT, OFF(metrics_enabled), "true",
	  0, 0, NULL, 0, "serve Prometheus metrics" },
	{ "metrics.path", CT_STRING, CS_ROOT, OFF(metrics_path), "/metrics",
	  0, 0, NULL, 0, "path of the metrics endpoint" },
	{ "metrics.allow", CT_LIST, CS_ROOT, OFF(metrics_allow),
	  "127.0.0.1/32,::1/128", 0, 0, NULL, 0,
	  "client CIDRs allowed to read metrics" },

	/* storage */
	{ "database.url", CT_STRING, CS_ROOT, OFF(database_url),
	  "sqlite://" LOCALSTATEDIR "/bedrock-sso-proxy/proxy.db", 0, 0, NULL,
	  CK_RESTART, "sqlite://PATH (the directory is created 0700), or "
	  "postgresql://user@host:port/db?... or libpq's key=value form" },
	{ "database.password", CT_SECRET, CS_ROOT, OFF(database_password),
	  NULL, 0, 0, NULL, CK_RESTART,
	  "PostgreSQL password (else PGPASSFILE or ~/.pgpass)" },
	{ "database.pool_size", CT_INT, CS_ROOT, OFF(database_pool_size),
	  "4", 1, 64, NULL, CK_RESTART,
	  "PostgreSQL connections for units of work" },
	{ "database.timeout", CT_DURATION, CS_ROOT, OFF(database_timeout),
	  "10", 1, 300, NULL, CK_RESTART,
	  "seconds a PostgreSQL statement, connect or wait for a connection "
	  "may take" },
	{ "database.migrate", CT_ENUM, CS_ROOT, OFF(database_migrate), "auto",
	  0, 0, migrate_choices, CK_RESTART,
	  "auto: bring the schema to this binary's version on start; off: "
	  "refuse an older schema" },
	{ "database.offline_grace", CT_DURATION, CS_ROOT,
	  OFF(database_offline_grace), "300", 0, 86400, NULL, 0,
	  "seconds the state loaded last is trusted while PostgreSQL is "
	  "unreachable; then authenticated routes answer 503" },
	{ "database.busy_timeout", CT_INT, CS_ROOT, OFF(database_busy_timeout),
	  "5000", 0, 600000, NULL, CK_RESTART,
	  "milliseconds to wait for a lock held by another process" },
	{ "usage.retention_days", CT_INT, CS_ROOT, OFF(usage_retention_days),
	  "400", 1, 36500, NULL, 0, "days usage rows are kept" },
	{ "audit.retention_days", CT_INT, CS_ROOT, OFF(audit_retention_days),
	  "400", 1, 36500, NULL, 0, "days audit rows are kept" },
};
const size_t config_nkeys = nitems(config_keys);

const struct config_collection config_collections[] = {
	{ "oauth.providers", "oauth.providers.*", CS_PROVIDER, 1,
	  sizeof(struct provider_config), OFF(providers), OFF(nproviders),
	  PROV(name), PROV(where) },
	{ "oauth.trusted_issuers", "oauth.trusted_issuers[]", CS_ISSUER, 0,
	  sizeof(struct issuer_config), OFF(issuers), OFF(nissuers), 0,
	  ISS(where) },
	{ "models.rules", "models.rules[]", CS_RULE, 0,
	  sizeof(struct model_rule), OFF(model_rules), OFF(nmodel_rules), 0,
	  RULE(where) },
	{ "models.aliases", "models.aliases[]", CS_ALIAS, 0,
	  sizeof(struct model_alias), OFF(model_aliases), OFF(nmodel_aliases),
	  0, ALIAS(where) },
};
const size_t config_ncollections = nitems(config_collections);

/*
 * Checks of keys that need more than the table (the modules that own keys
 * check them in their config_check, through the modules table).
 */
void
config_check_table(struct config *c, struct config_errors *errs)
{
	aws_config_check(c, errs);
	api_config_check(c, errs);
}

/* anthropic.* and openai.*: paths and signing names. */
static void
api_config_check(struct config *c, struct config_errors *errs)
{
	const struct {
		const char	*key;
		const char	*v;
		int		 path;
	} k[] = {
		{ "anthropic.native_path", c->anthropic_native_path, 1 },
		{ "openai.path", c->openai_path, 1 },
		{ "anthropic.native_signing_name",
		  c->anthropic_native_signing_name, 0 },
		{ "openai.signing_name", c->openai_signing_name, 0 },
	};
	size_t	i, j, len;
	int	ok;

	for (i = 0; i < nitems(k); i++) {
		len = k[i].v != NULL ? strlen(k[i].v) : 0;
		ok = len > 0 && len <= 256;
		for (j = 0; ok && j < len; j++) {
			if (k[i].path)
				ok = isalnum((unsigned char)k[i].v[j]) ||
				    strchr("/-._~", k[i].v[j]) != NULL;
			else
				ok = islower((unsigned char)k[i].v[j]) ||
				    k[i].v[j] == '-';
		}
		if (ok && k[i].path)
			ok = k[i].v[0] == '/' && strstr(k[i].v, "//") == NULL &&
			    strstr(k[i].v, "/.") == NULL;
		if (!ok)
			config_add_error(errs, c, k[i].key, "%s: \"%s\" is not "
			    "%s", k[i].key, k[i].v != NULL ? k[i].v : "",
			    k[i].path ? "an absolute path of letters, digits and "
			    "-._~" : "a service name such as bedrock");
	}
	if (strcmp(c->anthropic_invoke_version, "header") != 0 &&
	    (c->anthropic_invoke_version[0] == '\0' ||
	    !str_is_printable(c->anthropic_invoke_version,
	    strlen(c->anthropic_invoke_version))))
		config_add_error(errs, c, "anthropic.invoke_version",
		    "anthropic.invoke_version: must be a version such as "
		    "bedrock-2023-05-31, or header");
}

/* aws.*: the region, the endpoint, which credentials. */
static void
aws_config_check(struct config *c, struct config_errors *errs)
{
	char		*cause;
	const char	*r;

	if (c->aws_region == NULL) {
		r = c->aws_region_env != NULL ? c->aws_region_env : "us-east-1";
		c->aws_region = xstrdup(r);
	}
	if (!aws_region_ok(c->aws_region))
		config_add_error(errs, c, "aws.region", "aws.region: \"%s\" is "
		    "not a region name", c->aws_region);
	if ((c->aws_access_key_id == NULL) != (c->aws_secret_access_key == NULL))
		config_add_error(errs, c, c->aws_access_key_id != NULL ?
		    "aws.access_key_id" : "aws.secret_access_key",
		    "aws.access_key_id and aws.secret_access_key must be set "
		    "together");
	if (c->aws_session_token != NULL && c->aws_access_key_id == NULL)
		config_add_error(errs, c, "aws.session_token", "aws.session_token "
		    "needs aws.access_key_id and aws.secret_access_key");
	if (c->aws_bearer_token != NULL && c->aws_access_key_id != NULL)
		config_add_error(errs, c, "aws.bearer_token", "aws.bearer_token "
		    "and aws.access_key_id exclude each other");
	if (c->aws_endpoint_url != NULL) {
		if (url_check_outbound(c->aws_endpoint_url, &cause) == -1) {
			config_add_error(errs, c, "aws.endpoint_url",
			    "aws.endpoint_url: %s", cause);
			free(cause);
		}
		c->aws_endpoint = xstrdup(c->aws_endpoint_url);
	} else
		xasprintf(&c->aws_endpoint, "https://bedrock-runtime.%s.%s",
		    c->aws_region, strncmp(c->aws_region, "cn-", 3) == 0 ?
		    "amazonaws.com.cn" : "amazonaws.com");
	if (c->aws_ca_file != NULL && access(c->aws_ca_file, R_OK) == -1)
		config_add_error(errs, c, "aws.ca_file", "aws.ca_file: cannot "
		    "read %s", c->aws_ca_file);
}

/* us-east-1, eu-central-2, us-gov-west-1, cn-north-1, ... */
static int
aws_region_ok(const char *r)
{
	size_t	i, len = strlen(r);

	if (len < 4 || len > 32)
		return (0);
	for (i = 0; i < len; i++) {
		if (!(islower((unsigned char)r[i]) ||
		    isdigit((unsigned char)r[i]) || r[i] == '-'))
			return (0);
	}
	return (r[0] != '-' && r[len - 1] != '-');
}

/* Free what config_check_table() and the modules' checks derived. */
void
config_free_table(struct config *c)
{
	free(c->aws_region_env);
	free(c->aws_endpoint);
	json_decref(c->gateway_settings);
}
