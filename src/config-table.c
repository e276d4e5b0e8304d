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
}

void
config_free_modules(struct config *c)
{
}
