/*
 * route-keys.c: /api/keys, the caller's own API keys. Only a logged-in
 * user's token may manage keys; an API key cannot mint more keys (the
 * route is RF_JWT_ONLY). A key made here belongs to the caller's session
 * and is revoked when that session ends (logout, revocation, reuse).
 */

#include <stdlib.h>
#include <string.h>

#include "bsp.h"
#include "store.h"

/* "ttl" as seconds or a duration string; -1 for the default. */
static int
ttl_param(json_t *v, long long *ttl)
{
	if (v == NULL || json_is_null(v)) {
		*ttl = -1;
		return (0);
	}
	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		*ttl = json_integer_value(v);
		return (0);
	}
	if (json_is_string(v))
		return (parse_duration(json_string_value(v), ttl));
	return (-1);
}

/* The key is made (and works), or refused: answer. */
static void
keys_created(int rc, char *key, json_t *info, const char *why, void *arg)
{
	struct request	*r = arg;
	const char	*detail;

	if (rc == -1)
		server_error_oauth(r, 400, "invalid_request", why);
	else if (rc == -3) {
		server_set_header(r, "WWW-Authenticate", "Bearer realm=\""
		    BSP_NAME "\", error=\"invalid_token\"");
		server_error_oauth(r, 401, "invalid_token", why);
	} else if (rc != 0)
		server_error_oauth(r, 503, "temporarily_unavailable",
		    store_ready(&detail) ? "cannot create a key right now" :
		    "cannot create a key right now: the database is "
		    "unreachable; try again shortly");
	else {
		json_object_set_new(info, "key", json_string(key));
		freezero_str(key);
		server_reply_json(r, 201, info);
	}
	request_unref(r);
}

static void
keys_create(struct request *r)
{
	json_t		*j, *v;
	const char	*why, *name = NULL;
	struct strlist	 models = { NULL, 0 };
	long long	 ttl;
	size_t		 i;

	if ((j = server_body_json(r, &why)) == NULL) {
		/* An empty body is fine: all defaults. */
		const uint8_t *p;
		size_t len;

		if (server_body(r, &p, &len) == -1 || len != 0) {
			server_error_oauth(r, 400, "invalid_request", why);
			return;
		}
		j = json_object();
	}
	v = json_object_get(j, "name");
	if (v != NULL && !json_is_null(v) && (name = json_string_value(v)) ==
	    NULL) {
		json_decref(j);
		server_error_oauth(r, 400, "invalid_request",
		    "name must be a string");
		return;
	}
	if (ttl_param(json_object_get(j, "ttl"), &ttl) == -1) {
		json_decref(j);
		server_error_oauth(r, 400, "invalid_request",
		    "ttl must be seconds or a duration like 30d");
		return;
	}
	if (ttl < 0)
		ttl = r->cfg->apikeys_default_ttl;
	if (r->cfg->apikeys_max_ttl > 0 && (ttl == 0 ||
	    ttl > r->cfg->apikeys_max_ttl)) {
		json_decref(j);
		server_error_oauth(r, 400, "invalid_request", "ttl must be at "
		    "most api_keys.max_ttl; keys without expiry are made by an "
		    "administrator");
		return;
	}
	v = json_object_get(j, "models");
	if (v != NULL && !json_is_null(v)) {
		if (!json_is_array(v)) {
			json_decref(j);
			server_error_oauth(r, 400, "invalid_request",
			    "models must be a list of patterns");
			return;
		}
		for (i = 0; i < json_array_size(v); i++) {
			if (!json_is_string(json_array_get(v, i))) {
				strlist_free(&models);
				json_decref(j);
				server_error_oauth(r, 400, "invalid_request",
				    "models must be a list of patterns");
				return;
			}
			strlist_add(&models,
			    json_string_value(json_array_get(v, i)));
		}
	}
	/* Held until the answer, which comes from the callback. */
	request_ref(r);
	apikey_create(r->principal->sub, r->principal->sid, name, ttl,
	    &models, r->principal->sub, r->client, keys_created, r);
	strlist_free(&models);
	json_decref(j);
}

/*
 * Only a user who logged in here holds keys: our own token, from a session,
 * with the invoke scope. An external or legacy token's user has no record
 * a disable or a policy change could reach, so it cannot make a key that
 * would outlive it.
 */
static int
keys_caller_ok(struct request *r)
{
	const struct principal	*p = r->principal;

	if (p->kind != PRINCIPAL_JWT || p->sid == NULL) {
		server_error_oauth(r, 403, "access_denied", "API keys are managed "
		    "with a token from this proxy's sign-in");
		return (0);
	}
	if (!principal_has_scope(p, SCOPE_INVOKE)) {
		server_error_oauth(r, 403, "insufficient_scope", "this token "
		    "lacks the " SCOPE_INVOKE " scope");
		return (0);
	}
	return (1);
}

static void
keys_listed(int rc, json_t *list, void *arg)
{
	struct request	*r = arg;

	if (rc != 0)
		server_error_oauth(r, 503, "temporarily_unavailable",
		    "cannot list the keys right now");
	else
		server_reply_json(r, 200, json_pack("{s:o}", "keys", list));
	request_unref(r);
}

/* POST /api/keys makes a key; GET /api/keys lists the caller's. */
void
route_api_keys(struct request *r)
{
	if (!r->cfg->apikeys_enabled) {
		server_error_oauth(r, 404, "not_found", "API keys are disabled");
		return;
	}
	if (!keys_caller_ok(r))
		return;
	if (strcmp(r->method, "POST") == 0) {
		keys_create(r);
		return;
	}
	request_ref(r);
	apikey_list(r->principal->sub, keys_listed, r);
}

static void
keys_deleted(int rc, void *arg)
{
	struct request	*r = arg;

	if (rc == -1)
		server_error_oauth(r, 404, "not_found", "no such API key");
	else if (rc != 0)
		server_error_oauth(r, 503, "temporarily_unavailable",
		    "cannot revoke the key right now");
	else
		server_reply(r, 204, NULL, NULL);
	request_unref(r);
}

/* DELETE /api/keys/{id} */
void
route_api_key_delete(struct request *r)
{
	char	*id;

	if (!keys_caller_ok(r))
		return;
	id = xmemdup0(r->params[0].p, r->params[0].len);
	request_ref(r);
	apikey_revoke(id, r->principal->sub, "deleted", r->principal->sub,
	    r->client, keys_deleted, r);
	free(id);
}
