/*
 * route-gateway.c: what Claude Code's gateway sign-in asks of a signed-in
 * session besides inference: GET /managed/settings, the user's managed
 * settings, and POST /v1/metrics, /v1/logs and /v1/traces, its OpenTelemetry
 * exports, which are taken and dropped.
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
 */

#include <sys/stat.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bsp.h"
#include "crypto.h"

#define SETTINGS_FILE_MAX	(1024 * 1024)
#define ENV_NAME_MAX		128
#define DISCOVERY_ENV		"CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY"

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

/*
 * POST /v1/metrics, /v1/logs, /v1/traces (bearer): OTLP/HTTP exports,
 * taken and dropped; the answer is an empty export response in the
 * request's encoding (a 404 would make the exporter complain on every
 * flush).
 */
void
route_telemetry(struct request *r)
{
	const uint8_t	*p;
	size_t		 len;

	(void)server_body(r, &p, &len);
	log_trace(TRACE_HTTP, "%s: %zu bytes of telemetry dropped",
	    r->route->name, len);
	if (server_content_type_is(r, "application/json"))
		server_reply_text(r, 200, "application/json", "{}");
	else
		server_reply(r, 200, "application/x-protobuf", NULL);
}
