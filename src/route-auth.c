/*
 * route-auth.c: token endpoints: /auth/refresh, /auth/logout,
 * /auth/revoke (RFC 7009), /auth/validate, and the discovery documents
 * under /.well-known.
 */

#include <stdlib.h>
#include <string.h>

#include "bsp.h"
#include "store.h"

#define TOKEN_FIELD_MAX	16384

/* A 503's text: why, when the database is out of reach. */
#define DB_DOWN(what) (store_ready(&detail) ? "cannot " what " right " \
	"now; try again" : "cannot " what " right now: the database is " \
	"unreachable; try again shortly")

/*
 * The refresh token of a request: JSON {"refresh_token"} or, for OAuth
 * clients, a form with grant_type=refresh_token.
 */
static char *
refresh_param(struct request *r, const char **why)
{
	json_t		*j;
	const char	*t;
	char		*buf, *out = NULL;
	char		 gt[64];

	if (server_content_type_is(r, "application/x-www-form-urlencoded")) {
		buf = xmalloc(TOKEN_FIELD_MAX);
		if (server_form(r, "grant_type", gt, sizeof gt) != NULL &&
		    strcmp(gt, "refresh_token") != 0)
			*why = "grant_type must be refresh_token";
		else if (server_form(r, "refresh_token", buf,
		    TOKEN_FIELD_MAX) == NULL)
			*why = "refresh_token is missing";
		else
			out = xstrdup(buf);
		freezero(buf, TOKEN_FIELD_MAX);
		return (out);
	}
	if ((j = server_body_json(r, why)) == NULL)
		return (NULL);
	t = json_string_value(json_object_get(j, "refresh_token"));
	if (t == NULL || *t == '\0')
		*why = "refresh_token is missing";
	else
		out = xstrdup(t);
	json_decref(j);
	return (out);
}

/* The rotation is over: answer it. */
static void
refresh_done(int rc, json_t *resp, const char *why, void *arg)
{
	struct request	*r = arg;
	const char	*detail;

	if (rc == -2)
		server_error_oauth(r, 503, "temporarily_unavailable",
		    DB_DOWN("refresh"));
	else if (rc == -1) {
		metric_add(m_refreshes, "result=\"invalid\"", 1);
		server_error_oauth(r, 400, "invalid_grant", why);
	} else {
		metric_add(m_refreshes, "result=\"ok\"", 1);
		server_reply_json(r, 200, resp);
	}
	request_unref(r);
}

/* POST /auth/refresh: rotate a refresh token, answer a new pair. */
void
route_auth_refresh(struct request *r)
{
	const char	*why = "malformed request";
	char		*t;

	if ((t = refresh_param(r, &why)) == NULL) {
		server_error_oauth(r, 400, "invalid_request", why);
		return;
	}
	/* Held until the answer, which comes from the callback. */
	request_ref(r);
	tokens_refresh(t, r->client, refresh_done, r);
	freezero_str(t);
}

/* The session of a bearer token has ended, or could not be. */
static void
logout_bearer_done(int rc, void *arg)
{
	struct request	*r = arg;
	const char	*detail;

	if (rc != 0)
		server_error_oauth(r, 503, "temporarily_unavailable",
		    DB_DOWN("log out"));
	else
		server_reply_json(r, 200, json_pack("{s:s}", "status",
		    "logged_out"));
	request_unref(r);
}

/* The session of a refresh token has ended, or could not be. */
static void
logout_refresh_done(int rc, void *arg)
{
	struct request	*r = arg;
	const char	*detail;

	if (rc == -1)
		server_error_oauth(r, 400, "invalid_grant",
		    "refresh token is not valid");
	else if (rc != 0)
		server_error_oauth(r, 503, "temporarily_unavailable",
		    DB_DOWN("log out"));
	else
		server_reply_json(r, 200, json_pack("{s:s}", "status",
		    "logged_out"));
	request_unref(r);
}

/*
 * POST /auth/logout: end the session of the bearer token, or of the
 * refresh token in the body. Its access tokens stop working at once.
 */
void
route_auth_logout(struct request *r)
{
	struct principal	*p = NULL;
	const char		*bearer, *why = NULL;
	char			*t;
	int			 rc;

	rc = server_auth_bearer(r, &bearer);
	if (rc == -1) {
		server_error_oauth(r, 400, "invalid_request",
		    "Authorization must be a Bearer token");
		return;
	}
	if (rc == 1) {
		if (strncmp(bearer, APIKEY_PREFIX, 4) == 0) {
			server_error_oauth(r, 400, "invalid_request",
			    "API keys are revoked with DELETE /api/keys/ID");
			return;
		}
		if (tokens_verify_jwt(bearer, strlen(bearer), &p, &why) == -1) {
			server_set_header(r, "WWW-Authenticate", "Bearer realm=\""
			    BSP_NAME "\", error=\"invalid_token\"");
			server_error_oauth(r, 401, "invalid_token", why);
			return;
		}
		if (p->sid == NULL) {
			principal_unref(p);
			server_error_oauth(r, 400, "invalid_request",
			    "this token has no session to end");
			return;
		}
		request_set_user(r, p->sub);
		request_ref(r);
		tokens_revoke_family(p->sid, "logout", "logout", p->sub,
		    r->client, logout_bearer_done, r);
		principal_unref(p);
		return;
	}
	if ((t = refresh_param(r, &why)) == NULL) {
		server_error_oauth(r, 400, "invalid_request",
		    "send a bearer token or {\"refresh_token\": ...}");
		return;
	}
	request_ref(r);
	tokens_revoke_refresh(t, "logout", r->client, logout_refresh_done, r);
	freezero_str(t);
}

/* RFC 7009: the revocation is over, whatever it found: 200. */
static void
revoke_done(int rc, void *arg)
{
	struct request	*r = arg;

	server_reply_text(r, 200, "application/json", "{}\n");
	request_unref(r);
}

/*
 * POST /auth/revoke (RFC 7009): revoke whatever token is given. Always 200,
 * once the revocation is done, so the answer says nothing about the token.
 */
void
route_auth_revoke(struct request *r)
{
	struct principal	*p;
	const char		*why;
	char			*t;
	json_t			*j;

	t = xmalloc(TOKEN_FIELD_MAX);
	if (server_content_type_is(r, "application/json")) {
		if ((j = server_body_json(r, &why)) == NULL ||
		    json_string_value(json_object_get(j, "token")) == NULL) {
			json_decref(j);
			free(t);
			server_error_oauth(r, 400, "invalid_request",
			    "token is missing");
			return;
		}
		bsp_strlcpy(t, json_string_value(json_object_get(j, "token")),
		    TOKEN_FIELD_MAX);
		json_decref(j);
	} else if (server_form(r, "token", t, TOKEN_FIELD_MAX) == NULL) {
		free(t);
		server_error_oauth(r, 400, "invalid_request",
		    "token is missing");
		return;
	}
	request_ref(r);
	if (strncmp(t, "bsr_", 4) == 0)
		tokens_revoke_refresh(t, "revoke", r->client, revoke_done, r);
	else if (strncmp(t, APIKEY_PREFIX, 4) == 0)
		apikey_revoke_by_secret(t, "revoke", r->client, revoke_done, r);
	else if (tokens_verify_jwt(t, strlen(t), &p, &why) == 0) {
		if (p->sid != NULL)
			tokens_revoke_family(p->sid, "revoke", "revoke", p->sub,
			    r->client, revoke_done, r);
		else
			revoke_done(0, r);
		principal_unref(p);
	} else
		revoke_done(0, r);
	freezero(t, TOKEN_FIELD_MAX);
}

/* GET /auth/validate: who is this credential? */
void
route_auth_validate(struct request *r)
{
	struct principal	*p = r->principal;
	json_t			*j;
	struct strlist		 s = { NULL, 0 };

	if (p->scopes.n == 0)
		strlist_add(&s, SCOPE_INVOKE);
	j = json_pack("{s:b,s:s,s:s?,s:s?,s:o}", "valid", 1, "sub", p->sub,
	    "provider", p->provider, "email", p->email, "scopes",
	    strlist_to_json(p->scopes.n != 0 ? &p->scopes : &s));
	json_object_set_new(j, "expires_at", p->exp != 0 ?
	    json_integer((json_int_t)p->exp) : json_null());
	json_object_set_new(j, "kind", json_string(
	    p->kind == PRINCIPAL_API_KEY ? "api_key" :
	    p->kind == PRINCIPAL_LEGACY ? "legacy" :
	    p->kind == PRINCIPAL_EXTERNAL ? "external" : "token"));
	if (p->name != NULL)
		json_object_set_new(j, "name", json_string(p->name));
	if (p->groups.n != 0)
		json_object_set_new(j, "groups", strlist_to_json(&p->groups));
	strlist_free(&s);
	server_reply_json(r, 200, j);
}

/* GET /.well-known/jwks.json */
void
route_jwks(struct request *r)
{
	const char	*detail;

	if (!tokens_ready(&detail)) {
		server_error_oauth(r, 503, "temporarily_unavailable",
		    "the signing keys are not loaded yet; try again");
		return;
	}
	server_set_header(r, "Cache-Control", "public, max-age=300");
	server_reply_json(r, 200, tokens_jwks());
}

/*
 * GET /.well-known/oauth-authorization-server (RFC 8414): the sign-in's
 * endpoints and, with the device flow on, RFC 8628's (Claude Code's
 * gateway sign-in reads device_authorization_endpoint and token_endpoint,
 * which must be of the origin it was given).
 */
void
route_oauth_metadata(struct request *r)
{
	const char	*base = r->cfg->server_public_url;
	char		*u[7];
	json_t		*j, *gt;
	size_t		 i;

	xasprintf(&u[0], "%s/auth/login", base);
	xasprintf(&u[1], "%s/oauth/token", base);
	xasprintf(&u[2], "%s/auth/revoke", base);
	xasprintf(&u[3], "%s/.well-known/jwks.json", base);
	xasprintf(&u[4], "%s/auth/validate", base);
	xasprintf(&u[5], "%s/auth/refresh", base);
	xasprintf(&u[6], "%s/oauth/device_authorization", base);
	gt = json_pack("[s,s]", "authorization_code", "refresh_token");
	if (r->cfg->device_enabled)
		json_array_append_new(gt, json_string(
		    "urn:ietf:params:oauth:grant-type:device_code"));
	j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:[s],s:o,s:[s],s:[s],"
	    "s:[s],s:[s]}",
	    "issuer", tokens_issuer(r->cfg),
	    "authorization_endpoint", u[0],
	    "token_endpoint", u[1],
	    "revocation_endpoint", u[2],
	    "jwks_uri", u[3],
	    "response_types_supported", "code",
	    "grant_types_supported", gt,
	    "code_challenge_methods_supported", "S256",
	    "token_endpoint_auth_methods_supported", "none",
	    "revocation_endpoint_auth_methods_supported", "none",
	    "scopes_supported", SCOPE_INVOKE);
	if (r->cfg->device_enabled)
		json_object_set_new(j, "device_authorization_endpoint",
		    json_string(u[6]));
	json_object_set_new(j, "x_validate_endpoint", json_string(u[4]));
	json_object_set_new(j, "x_refresh_endpoint", json_string(u[5]));
	for (i = 0; i < nitems(u); i++)
		free(u[i]);
	server_set_header(r, "Cache-Control", "public, max-age=300");
	server_reply_json(r, 200, j);
}
