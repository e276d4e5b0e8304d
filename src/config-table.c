/*
 * config-table.c: the keyword table. Every configuration key, its type,
 * default, bounds, flags and one line of help. The man page drift check
 * (tests/guards) reads this table through tests/unit/dump-keys.
 */

#include <stddef.h>
#include <stdio.h>

#include "bsp.h"

#ifndef LOCALSTATEDIR
#define LOCALSTATEDIR "/var"
#endif

#define OFF(f)	offsetof(struct config, f)
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
	  OFF(server_max_header_bytes), "65536", 1024, 1048576, NULL,
	  0, "larger request heads are refused" },
	{ "server.max_connections", CT_INT, CS_ROOT,
	  OFF(server_max_connections), "4096", 1, 1000000, NULL, 0,
	  "connections beyond this are closed at once" },
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
	  CK_RESTART, "sqlite://PATH; the directory is created 0700" },
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
	{ NULL, NULL, CS_ROOT, 0, 0, 0, 0, 0, 0 }
};
const size_t config_ncollections = 0;

/* Checks of the modules that own part of the configuration. */
void
config_check_modules(struct config *c, struct config_errors *errs)
{
	tokens_config_check(c, errs);
}

void
config_free_modules(struct config *c)
{
}
