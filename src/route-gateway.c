/*
 * route-gateway.c: what Claude Code's gateway sign-in asks of a signed-in
 * session besides inference: GET /managed/settings, the user's managed
 * settings, and POST /v1/metrics, /v1/logs and /v1/traces, its OpenTelemetry
 * exports, which are forwarded to gateway.telemetry.url or, without one,
 * taken and dropped.
 *
 * The managed settings are made per request from the configuration: the
 * JSON object of gateway.managed_settings.file (read when the
 * configuration is loaded), the NAME=value entries of
 * gateway.managed_settings.env and, if asked, the model discovery switch
 * in its env, and availableModels: the Anthropic model ids the caller may
 * use (as GET /v1/models lists them). They are served in the shape Claude
 * Code parses, {"uuid", "checksum", "settings"}, the checksum being
 * "sha256:" and the hex SHA-256 of the settings as compact JSON with
 * sorted keys, which is how Claude Code computes it of what it holds; its
 * quoted form is the ETag, and an If-None-Match naming it is answered 304.
 * With nothing configured the answer is 404: no managed policy (an empty
 * object would be one).
 *
 * A forwarded export goes to the collector's <url>/v1/<signal> with its
 * body, Content-Type and Content-Encoding as they came, the caller's user
 * id in X-Bsp-User (its API key's id in X-Bsp-Api-Key) and the configured
 * Authorization; the collector's status, type, encoding, Retry-After and
 * body (at most TELEMETRY_ANSWER_MAX bytes) come back. A collector that
 * cannot be reached is a 502, one that takes longer than
 * gateway.telemetry.timeout a 504, more than gateway.telemetry.max_forwards
 * exports at once a 503 with Retry-After: what an OTLP exporter retries,
 * each with a google.rpc.Status in the export's encoding. A forward holds
 * its request until the collector answers or the client goes away, which
 * cancels it.
 */

#include <sys/stat.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "bsp.h"
#include "crypto.h"
#include "http-client.h"

#define SETTINGS_FILE_MAX	(1024 * 1024)
#define ENV_NAME_MAX		128
#define DISCOVERY_ENV		"CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY"
#define TELEMETRY_ANSWER_MAX	(64 * 1024)
#define TELEMETRY_ID_MAX	1024	/* bytes of an id put in a header */
#define TELEMETRY_HEADERS	7
/* google.rpc.Code values an OTLP exporter reads in a Status. */
#define RPC_DEADLINE_EXCEEDED	4
#define RPC_UNAVAILABLE		14

/* One export being forwarded: the request's state. */
struct telemetry {
	struct request		*r;
	struct hc_target	*target;
	struct hc_req		*up;
	int			 live;	/* in telemetry_forwards */
};

static size_t	telemetry_forwards;

static void	gateway_telemetry_check(struct config *,
		    struct config_errors *);

/* NAME=value: NAME an environment variable's name, value printable. */
static int
gateway_env_ok(const char *e)
{
	const char	*eq = strchr(e, '=');
	size_t		 i, n;

	if (eq == NULL || (n = (size_t)(eq - e)) == 0 || n > ENV_NAME_MAX ||
	    isdigit((unsigned char)e[0]))
		return (0);
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)e[i]) && e[i] != '_')
			return (0);
	return (str_is_printable(eq + 1, strlen(eq + 1)));
}

/* gateway.managed_settings.*: the file's object, the env entries. */
void
gateway_config_check(struct config *c, struct config_errors *errs)
{
	const char	*key = "gateway.managed_settings.file";
	struct stat	 sb;
	json_error_t	 err;
	json_t		*j, *env;
	size_t		 i;

	gateway_telemetry_check(c, errs);
	for (i = 0; i < c->gateway_env.n; i++) {
		if (!gateway_env_ok(c->gateway_env.v[i]))
			config_add_error(errs, c,
			    "gateway.managed_settings.env",
			    "gateway.managed_settings.env: \"%s\" is not "
			    "NAME=value", c->gateway_env.v[i]);
	}
	if (c->gateway_settings_file == NULL)
		return;
	if (stat(c->gateway_settings_file, &sb) == -1 ||
	    !S_ISREG(sb.st_mode)) {
		config_add_error(errs, c, key, "%s: cannot read %s", key,
		    c->gateway_settings_file);
		return;
	}
	if (sb.st_size > SETTINGS_FILE_MAX) {
		config_add_error(errs, c, key, "%s: %s is larger than %d bytes",
		    key, c->gateway_settings_file, SETTINGS_FILE_MAX);
		return;
	}
	if ((j = json_load_file(c->gateway_settings_file,
	    JSON_REJECT_DUPLICATES, &err)) == NULL) {
		config_add_error(errs, c, key, "%s: %s: line %d: %s", key,
		    c->gateway_settings_file, err.line, err.text);
		return;
	}
	if (!json_is_object(j)) {
		config_add_error(errs, c, key, "%s: %s must hold a JSON object "
		    "(Claude Code's managed-settings.json)", key,
		    c->gateway_settings_file);
		json_decref(j);
		return;
	}
	if ((env = json_object_get(j, "env")) != NULL && !json_is_object(env)) {
		config_add_error(errs, c, key, "%s: %s: env must be an object",
		    key, c->gateway_settings_file);
		json_decref(j);
		return;
	}
	json_decref(c->gateway_settings);
	c->gateway_settings = j;
}

/* gateway.telemetry.*: a collector URL the client can use. */
static void
gateway_telemetry_check(struct config *c, struct config_errors *errs)
{
	struct hc_target	*t;
	const char		*a = c->gateway_telemetry_authorization;
	char			*cause = NULL;

	if (a != NULL && (*a == '\0' || !str_is_printable(a, strlen(a))))
		config_add_error(errs, c, "gateway.telemetry.authorization",
		    "gateway.telemetry.authorization: must be printable ASCII "
		    "on one line");
	if (c->gateway_telemetry_url == NULL) {
		if (a != NULL)
			config_add_error(errs, c,
			    "gateway.telemetry.authorization",
			    "gateway.telemetry.authorization needs "
			    "gateway.telemetry.url");
		return;
	}
	if (strchr(c->gateway_telemetry_url, '?') != NULL)
		xasprintf(&cause, "the URL must not have a query: /v1/metrics, "
		    "/v1/logs and /v1/traces are added to its path");
	else if (url_check_outbound(c->gateway_telemetry_url, &cause) == 0 &&
	    (t = hc_target_new(c->gateway_telemetry_url, &cause)) != NULL)
		hc_target_free(t);
	if (cause != NULL) {
		config_add_error(errs, c, "gateway.telemetry.url",
		    "gateway.telemetry.url: %s", cause);
		free(cause);
	}
}

/* Is anything configured to serve? */
static int
gateway_settings_configured(const struct config *c)
{
	return (c->gateway_settings != NULL || c->gateway_available_models ||
	    c->gateway_model_discovery || c->gateway_env.n > 0);
}

/* The caller's settings, made from the configuration. */
static json_t *
gateway_settings(struct request *r)
{
	const struct config	*c = r->cfg;
	json_t			*s, *env;
	const char		*e, *eq;
	char			*name;
	size_t			 i;

	s = c->gateway_settings != NULL ?
	    json_deep_copy(c->gateway_settings) : json_object();
	if (c->gateway_env.n > 0 || c->gateway_model_discovery) {
		if ((env = json_object_get(s, "env")) == NULL) {
			env = json_object();
			json_object_set_new(s, "env", env);
		}
		for (i = 0; i < c->gateway_env.n; i++) {
			e = c->gateway_env.v[i];
			eq = strchr(e, '=');
			name = xstrndup(e, (size_t)(eq - e));
			json_object_set_new(env, name, json_string(eq + 1));
			free(name);
		}
		if (c->gateway_model_discovery)
			json_object_set_new(env, DISCOVERY_ENV,
			    json_string("1"));
	}
	if (c->gateway_available_models)
		json_object_set_new(s, "availableModels",
		    route_anthropic_model_ids(r));
	return (s);
}

/* "sha256:" and the hex SHA-256 of the settings' canonical JSON. */
static char *
gateway_checksum(const json_t *s)
{
	uint8_t		 h[CRYPTO_HASH_LEN];
	char		*text, *out;
	size_t		 i;

	text = json_dumps(s, JSON_COMPACT | JSON_SORT_KEYS);
	if (text == NULL)
		return (NULL);
	crypto_sha256(text, strlen(text), h);
	free(text);
	out = xmalloc(sizeof "sha256:" + 2 * sizeof h);
	memcpy(out, "sha256:", 7);
	for (i = 0; i < sizeof h; i++)
		snprintf(out + 7 + 2 * i, 3, "%02x", h[i]);
	return (out);
}

/* Does If-None-Match (a list of entity tags, or "*") name etag? */
static int
gateway_etag_matches(const char *inm, const char *etag)
{
	const char	*p = inm, *end;
	size_t		 len = strlen(etag), n;

	while (p != NULL && *p != '\0') {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (*p == '*')
			return (1);
		if (strncmp(p, "W/", 2) == 0)
			p += 2;
		end = strchr(p, ',');
		n = end != NULL ? (size_t)(end - p) : strlen(p);
		while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if (n == len && strncmp(p, etag, len) == 0)
			return (1);
		p = end;
	}
	return (0);
}

/* GET /managed/settings (bearer): the caller's managed settings. */
void
route_managed_settings(struct request *r)
{
	json_t		*s;
	char		*sum, *etag;
	const char	*inm;

	if (!gateway_settings_configured(r->cfg)) {
		server_error_api(r, 404, "not_found_error",
		    "no managed settings are configured here");
		return;
	}
	s = gateway_settings(r);
	if ((sum = gateway_checksum(s)) == NULL) {
		json_decref(s);
		server_error_api(r, 500, "api_error",
		    "the managed settings cannot be encoded");
		return;
	}
	xasprintf(&etag, "\"%s\"", sum);
	server_set_header(r, "ETag", etag);
	if ((inm = server_header(r, "If-None-Match")) != NULL &&
	    gateway_etag_matches(inm, etag)) {
		server_reply(r, 304, NULL, NULL);
		json_decref(s);
	} else
		server_reply_json(r, 200, json_pack("{s:s,s:s,s:o}", "uuid",
		    sum, "checksum", sum, "settings", s));
	free(etag);
	free(sum);
}

/* Append a protobuf varint. */
static void
telemetry_varint(struct evbuffer *b, uint64_t v)
{
	uint8_t	c;

	do {
		c = v & 0x7f;
		v >>= 7;
		if (v != 0)
			c |= 0x80;
		evbuffer_add(b, &c, 1);
	} while (v != 0);
}

/*
 * An OTLP/HTTP failure: a google.rpc.Status {code, message} in the
 * export's encoding (protobuf: field 1 varint, field 2 bytes).
 */
static void
telemetry_fail(struct request *r, int status, int code, const char *msg)
{
	struct evbuffer	*b;
	size_t		 len = strlen(msg);

	r->log_error = code == RPC_DEADLINE_EXCEEDED ? "collector_timeout" :
	    "collector_unavailable";
	if (server_content_type_is(r, "application/json")) {
		server_reply_json(r, status, json_pack("{s:i,s:s}", "code",
		    code, "message", msg));
		return;
	}
	if ((b = evbuffer_new()) == NULL)
		fatalx("evbuffer_new");
	telemetry_varint(b, 0x08);
	telemetry_varint(b, (uint64_t)code);
	telemetry_varint(b, 0x12);
	telemetry_varint(b, len);
	evbuffer_add(b, msg, len);
	server_reply(r, status, "application/x-protobuf", b);
	evbuffer_free(b);
}

/*
 * An id for a header: its first TELEMETRY_ID_MAX bytes, with '%' and every
 * byte outside printable ASCII percent-encoded.
 */
static char *
telemetry_id(const char *id)
{
	size_t	 i, n = 0, len = strlen(id);
	char	*out;

	if (len > TELEMETRY_ID_MAX)
		len = TELEMETRY_ID_MAX;
	out = xmalloc(3 * len + 1);
	for (i = 0; i < len; i++) {
		if (id[i] <= 0x20 || id[i] >= 0x7f || id[i] == '%') {
			snprintf(out + n, 4, "%%%02X", (unsigned char)id[i]);
			n += 3;
		} else
			out[n++] = id[i];
	}
	out[n] = '\0';
	return (out);
}

/* The forward is over: it no longer counts, and lets its request go. */
static void
telemetry_finish(struct telemetry *t)
{
	if (!t->live)
		return;
	t->live = 0;
	telemetry_forwards--;
	t->r->on_abort = NULL;
	request_unref(t->r);
}

/* Freed with its request. */
static void
telemetry_free(void *arg)
{
	struct telemetry	*t = arg;

	if (t->up != NULL)
		hc_cancel(t->up);
	if (t->live) {
		t->live = 0;
		telemetry_forwards--;
	}
	hc_target_free(t->target);
	free(t);
}

/* The client went away: cancel the forward. */
static void
telemetry_abort(struct request *r)
{
	struct telemetry	*t = r->state;

	log_trace(TRACE_UPSTREAM, "telemetry %s: client gone; cancelling",
	    r->id);
	if (t->up != NULL) {
		hc_cancel(t->up);
		t->up = NULL;
	}
	telemetry_finish(t);
}

/* The collector's answer, or why there is none. */
static void
telemetry_done(struct hc_req *up, const struct hc_result *res, void *arg)
{
	struct telemetry	*t = arg;
	struct request		*r = t->r;
	static const char	*copy[] = {
		"Content-Type", "Content-Encoding", "Retry-After"
	};
	const char		*v;
	size_t			 i;

	t->up = NULL;
	r->upstream_status = res->status;
	switch (res->error) {
	case HC_OK:
		if (res->status < 200 || (res->status >= 300 &&
		    res->status < 400) || res->status > 599) {
			log_warnx("telemetry %s: the collector answered %d",
			    r->id, res->status);
			telemetry_fail(r, 502, RPC_UNAVAILABLE, "the telemetry "
			    "collector's answer cannot be relayed");
			break;
		}
		for (i = 0; i < nitems(copy); i++) {
			if ((v = evhttp_find_header(res->headers, copy[i])) !=
			    NULL && str_is_printable(v, strlen(v)))
				server_set_header(r, copy[i], v);
		}
		server_reply(r, res->status, NULL, res->body);
		break;
	case HC_ERR_TIMEOUT_CONNECT:
	case HC_ERR_TIMEOUT_FIRST_BYTE:
	case HC_ERR_TIMEOUT_IDLE:
	case HC_ERR_TIMEOUT_TOTAL:
		log_warnx("telemetry %s: the collector did not answer in time "
		    "(%s)", r->id, hc_error_name(res->error));
		telemetry_fail(r, 504, RPC_DEADLINE_EXCEEDED, "the telemetry "
		    "collector did not answer in time");
		break;
	default:
		log_warnx("telemetry %s: cannot forward to the collector: "
		    "%s%s%s", r->id, hc_error_name(res->error),
		    *res->message != '\0' ? ": " : "", res->message);
		telemetry_fail(r, 502, RPC_UNAVAILABLE, "the telemetry "
		    "collector cannot be reached");
		break;
	}
	telemetry_finish(t);
}

/* Forward an export to the collector; the answer comes in telemetry_done. */
static void
telemetry_forward(struct request *r, const uint8_t *body, size_t len)
{
	struct config		*c = r->cfg;
	struct telemetry	*t;
	struct hc_header	 h[TELEMETRY_HEADERS];
	struct hc_request	 hr;
	struct hc_timeouts	 to;
	const char		*base, *v;
	char			*path, *user, *key = NULL, *cause = NULL;
	size_t			 n = 0, blen;

	if (telemetry_forwards >= (size_t)c->gateway_telemetry_max_forwards) {
		server_set_header(r, "Retry-After", "1");
		telemetry_fail(r, 503, RPC_UNAVAILABLE, "too many telemetry "
		    "exports are being forwarded; retry later");
		return;
	}
	t = xcalloc(1, sizeof *t);
	t->r = r;
	r->state = t;
	r->state_free = telemetry_free;
	if ((t->target = hc_target_new(c->gateway_telemetry_url, &cause)) ==
	    NULL) {
		/* Checked with the configuration: cannot happen. */
		log_warnx("telemetry %s: %s", r->id, cause);
		free(cause);
		telemetry_fail(r, 502, RPC_UNAVAILABLE, "the telemetry "
		    "collector is not usable");
		return;
	}
	base = hc_target_path(t->target);
	blen = strlen(base);
	while (blen > 0 && base[blen - 1] == '/')
		blen--;
	xasprintf(&path, "%.*s%s", (int)blen, base, r->route->pattern);

	if ((v = server_header(r, "Content-Type")) != NULL)
		h[n++] = (struct hc_header){ "Content-Type", v };
	if ((v = server_header(r, "Content-Encoding")) != NULL)
		h[n++] = (struct hc_header){ "Content-Encoding", v };
	user = telemetry_id(r->principal->sub);
	h[n++] = (struct hc_header){ "X-Bsp-User", user };
	if (r->principal->key_id != NULL) {
		key = telemetry_id(r->principal->key_id);
		h[n++] = (struct hc_header){ "X-Bsp-Api-Key", key };
	}
	if (c->gateway_telemetry_authorization != NULL)
		h[n++] = (struct hc_header){ "Authorization",
		    c->gateway_telemetry_authorization };
	h[n++] = (struct hc_header){ "User-Agent", BSP_NAME "/"
	    PACKAGE_VERSION };

	to.connect_ms = to.first_byte_ms = to.idle_ms = to.total_ms =
	    c->gateway_telemetry_timeout * 1000;
	hc_request_init(&hr, "POST", path, h, n, body, len,
	    TELEMETRY_ANSWER_MAX, &to, telemetry_done, t);
	t->up = hc_start(t->target, &hr, &cause);
	free(path);
	free(user);
	free(key);
	if (t->up == NULL) {
		/* A header hc_start() refuses: the client's Content-Type. */
		log_warnx("telemetry %s: %s", r->id, cause);
		free(cause);
		server_error_api(r, 400, "invalid_request_error",
		    "the export cannot be forwarded as sent");
		return;
	}
	t->live = 1;
	telemetry_forwards++;
	request_ref(r);
	r->on_abort = telemetry_abort;
	log_trace(TRACE_UPSTREAM, "telemetry %s: %zu bytes to the collector",
	    r->id, len);
}

/*
 * POST /v1/metrics, /v1/logs, /v1/traces (bearer): OTLP/HTTP exports,
 * forwarded to gateway.telemetry.url or else taken and dropped; the
 * answer is then an empty export response in the request's encoding (a
 * 404 would make the exporter complain on every flush).
 */
void
route_telemetry(struct request *r)
{
	const uint8_t	*p;
	size_t		 len;

	if (server_body(r, &p, &len) == -1) {
		server_error_api(r, 400, "invalid_request_error",
		    "cannot read the request body");
		return;
	}
	if (r->cfg->gateway_telemetry_url != NULL) {
		telemetry_forward(r, p, len);
		return;
	}
	log_trace(TRACE_HTTP, "%s: %zu bytes of telemetry dropped",
	    r->route->name, len);
	if (server_content_type_is(r, "application/json"))
		server_reply_text(r, 200, "application/json", "{}");
	else
		server_reply(r, 200, "application/x-protobuf", NULL);
}
