/*
 * test-auth.c: the credential check (auth.c): which header a credential
 * comes from and when both may be sent, each kind by its format (API key,
 * refresh token, JWS, anything else), the size ceiling, API keys on routes
 * that take tokens only, the scope a Bedrock route needs, and what may
 * change after a token was verified (its session revoked, its user
 * disabled), checked on every request, cached or not.
 *
 * The fixture is a real token state: a configuration with its database in
 * a temporary directory (tmpdb.h), a local user, tokens minted for them and
 * an API key, as "token mint" and "key create" make them. Before the
 * revocation state is loaded (PostgreSQL connects in the background) the
 * check answers 503.
 */

#include <sys/stat.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bsp.h"
#include "tap.h"
#include "tmpdb.h"

/* Route flags as the route table gives them. */
#define ROUTE_VALIDATE	(RF_NO_STORE | RF_AUTH)			/* /auth/validate */
#define ROUTE_KEYS	(RF_NO_STORE | RF_AUTH | RF_JWT_ONLY)	/* /api/keys */
#define ROUTE_BEDROCK	(RF_BEDROCK | RF_AUTH)			/* /model/... */

#define AUTH_TOKEN_MAX	16384	/* auth.c's ceiling */


static const char *
kind_name(enum principal_kind k)
{
	switch (k) {
	case PRINCIPAL_JWT:
		return ("token");
	case PRINCIPAL_LEGACY:
		return ("legacy");
	case PRINCIPAL_API_KEY:
		return ("api_key");
	case PRINCIPAL_EXTERNAL:
		return ("external");
	}
	return ("?");
}

/* The credential is accepted, as a principal of this kind and subject. */
static void
accepted(const char *what, int flags, const char *authz, const char *key,
    enum principal_kind kind, const char *sub)
{
	struct auth_result	 res;
	int			 rc, good;

	rc = auth_check(cfg, flags, authz, key, &res, NULL, NULL, NULL);
	good = rc == 0 && res.p != NULL && res.code == 0 &&
	    res.p->kind == kind && strcmp(res.p->sub, sub) == 0;
	ok(good, "%s: accepted (%s)", what, kind_name(kind));
	if (!good)
		diag("  got %d, code %d %s: %s", rc, res.code,
		    res.label != NULL ? res.label : "-", res.why);
	auth_result_clear(&res);
}

/* The credential is refused with this status, label and reason. */
static void
refused(const char *what, int flags, const char *authz, const char *key,
    int code, const char *label, const char *why)
{
	struct auth_result	 res;
	int			 rc, good;

	rc = auth_check(cfg, flags, authz, key, &res, NULL, NULL, NULL);
	good = rc == -1 && res.p == NULL && res.code == code &&
	    res.label != NULL && strcmp(res.label, label) == 0 &&
	    strstr(res.why, why) != NULL;
	ok(good, "%s: %d (%s)", what, code, label);
	if (!good)
		diag("  got %d, code %d %s: %s", rc, res.code,
		    res.label != NULL ? res.label : "-", res.why);
	auth_result_clear(&res);
}

static char *
bearer(const char *t)
{
	char	*s;

	xasprintf(&s, "Bearer %s", t);
	return (s);
}

/* A string of n copies of c after a prefix. */
static char *
filled(const char *prefix, size_t n, char c)
{
	size_t	 plen = strlen(prefix);
	char	*s = xmalloc(plen + n + 1);

	memcpy(s, prefix, plen);
	memset(s + plen, c, n);
	s[plen + n] = '\0';
	return (s);
}

int
main(void)
{
	struct user		 u;
	struct strlist		 narrow = { NULL, 0 };
	struct auth_result	 res;
	json_t			*info = NULL;
	const char		*why = NULL;
	char			*jwt, *narrow_jwt, *old_jwt, *key = NULL;
	char			*h, *big, *sid, *unknown;
	const char		*ann = "local:ann@example.com";

	tmpdb_open(NULL);
	memset(&u, 0, sizeof u);
	if (t_user_local("ann@example.com", &u) != 0 ||
	    t_mint(&u, NULL, 3600, "test", &jwt) != 0 ||
	    t_mint(&u, NULL, -3600, "test", &old_jwt) != 0)
		fatalx("cannot mint tokens");
	strlist_add(&narrow, "profile");
	if (t_mint(&u, &narrow, 3600, "test", &narrow_jwt) != 0)
		fatalx("cannot mint a token");
	if (t_key_create(u.id, NULL, "ci", -1, NULL, "test", NULL, &key,
	    &info, &why) != 0)
		fatalx("cannot create an API key: %s", why);
	json_decref(info);
	/* One character off: a well-formed key nobody made. */
	unknown = xstrdup(key);
	unknown[10] = unknown[10] == 'A' ? 'B' : 'A';

	/* Which header. */
	h = bearer(jwt);
	accepted("Authorization: Bearer", ROUTE_VALIDATE, h, NULL,
	    PRINCIPAL_JWT, ann);
	accepted("X-Api-Key alone", ROUTE_VALIDATE, NULL, jwt, PRINCIPAL_JWT,
	    ann);
	accepted("both headers, the same token", ROUTE_VALIDATE, h, jwt,
	    PRINCIPAL_JWT, ann);
	free(h);
	xasprintf(&h, "bearer   %s", jwt);
	accepted("the scheme in any case, spaces after it", ROUTE_VALIDATE, h,
	    NULL, PRINCIPAL_JWT, ann);
	free(h);
	h = bearer(key);
	accepted("an API key as a bearer token", ROUTE_BEDROCK, h, NULL,
	    PRINCIPAL_API_KEY, ann);
	accepted("both headers, the same API key (apiKeyHelper)",
	    ROUTE_BEDROCK, h, key, PRINCIPAL_API_KEY, ann);
	refused("both headers, different credentials", ROUTE_VALIDATE, h, jwt,
	    401, "missing", "Authorization and X-Api-Key carry different");
	free(h);
	h = bearer(jwt);
	refused("both headers, different credentials (the other way)",
	    ROUTE_BEDROCK, h, key, 401, "missing",
	    "Authorization and X-Api-Key carry different");
	free(h);
	refused("no credential", ROUTE_VALIDATE, NULL, NULL, 401, "missing",
	    "missing credentials");
	refused("an empty bearer token", ROUTE_VALIDATE, "Bearer ", NULL, 401,
	    "missing", "missing credentials");
	refused("an empty X-Api-Key", ROUTE_VALIDATE, NULL, "", 401, "missing",
	    "missing credentials");
	refused("Basic", ROUTE_VALIDATE, "Basic YW5uOnB3", NULL, 401,
	    "missing", "unsupported authorization scheme");
	refused("AWS SigV4", ROUTE_BEDROCK, "AWS4-HMAC-SHA256 Credential=AKIA/"
	    "x, SignedHeaders=host, Signature=00", NULL, 401, "missing",
	    "not AWS credentials");

	/* Each kind by its format. */
	refused("a refresh token", ROUTE_VALIDATE, "Bearer bsr_abcdef", NULL,
	    401, "malformed", "a refresh token is not a bearer token");
	refused("an unknown API key", ROUTE_BEDROCK, NULL, unknown, 401,
	    "api_key", "unknown or revoked API key");
	refused("a malformed API key", ROUTE_BEDROCK, NULL, "bsk_!", 401,
	    "api_key", "malformed API key");
	refused("a JWS that is not ours", ROUTE_VALIDATE,
	    "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", NULL, 401,
	    "invalid", "");
	refused("neither key, refresh token nor JWS", ROUTE_VALIDATE,
	    "Bearer not-a-token", NULL, 401, "malformed",
	    "malformed credential");
	refused("one dot short of a JWS", ROUTE_VALIDATE, "Bearer eyJa.b",
	    NULL, 401, "malformed", "malformed credential");
	h = bearer(old_jwt);
	refused("an expired token", ROUTE_VALIDATE, h, NULL, 401, "expired",
	    "expired");
	free(h);

	/* Size: the ceiling is checked before anything else. */
	big = filled("", AUTH_TOKEN_MAX, 'a');
	refused("a credential at the ceiling is read", ROUTE_VALIDATE, NULL,
	    big, 401, "malformed", "malformed credential");
	free(big);
	big = filled("", AUTH_TOKEN_MAX + 1, 'a');
	refused("a credential over the ceiling", ROUTE_VALIDATE, NULL, big,
	    401, "malformed", "credential is too large");
	free(big);
	big = filled("bsk_", AUTH_TOKEN_MAX, 'A');
	refused("an API key over the ceiling", ROUTE_BEDROCK, NULL, big, 401,
	    "malformed", "credential is too large");
	free(big);

	/* API keys on routes that take tokens only. */
	accepted("a token on /api/keys", ROUTE_KEYS, NULL, jwt, PRINCIPAL_JWT,
	    ann);
	refused("an API key on /api/keys", ROUTE_KEYS, NULL, key, 403,
	    "api_key", "API keys cannot be used here");
	refused("an unknown API key on /api/keys is a 401, not a 403",
	    ROUTE_KEYS, NULL, unknown, 401, "api_key",
	    "unknown or revoked API key");

	/* Scope: a Bedrock route needs bedrock:invoke. */
	accepted("a token with the default scope on Bedrock", ROUTE_BEDROCK,
	    NULL, jwt, PRINCIPAL_JWT, ann);
	refused("a token without bedrock:invoke on Bedrock", ROUTE_BEDROCK,
	    NULL, narrow_jwt, 403, "scope", "lacks the " SCOPE_INVOKE);
	accepted("the same token elsewhere", ROUTE_VALIDATE, NULL, narrow_jwt,
	    PRINCIPAL_JWT, ann);
	refused("... and again on Bedrock, from the cache", ROUTE_BEDROCK,
	    NULL, narrow_jwt, 403, "scope", "lacks the " SCOPE_INVOKE);

	/* Revocation, cached or not. */
	if (auth_check(cfg, ROUTE_VALIDATE, NULL, jwt, &res, NULL, NULL,
	    NULL) != 0 || res.p->sid == NULL)
		fatalx("the token no longer checks");
	sid = xstrdup(res.p->sid);
	auth_result_clear(&res);
	ok(t_revoke_family(sid, "logout", "logout", ann, "test") == 0,
	    "the token's session is revoked");
	free(sid);
	refused("a token of a revoked session, verified before",
	    ROUTE_VALIDATE, NULL, jwt, 401, "revoked",
	    "session has been revoked");
	auth_cache_clear();
	refused("... and after the cache is emptied", ROUTE_VALIDATE, NULL,
	    jwt, 401, "revoked", "session has been revoked");
	accepted("an API key made without a session outlives it",
	    ROUTE_BEDROCK, NULL, key, PRINCIPAL_API_KEY, ann);
	ok(t_user_set(u.id, 1, 0) == 1 && t_users_load() == 0,
	    "the user is disabled");
	refused("a disabled user's API key", ROUTE_BEDROCK, NULL, key, 401,
	    "revoked", "user is disabled");
	refused("a disabled user's token, verified before", ROUTE_VALIDATE,
	    NULL, narrow_jwt, 401, "revoked", "user is disabled");

	/* Nothing is checked against state not loaded yet. */
	users_state_free();
	h = bearer(narrow_jwt);
	refused("before the users' state is loaded", ROUTE_VALIDATE, h, NULL,
	    503, "unavailable", "not loaded yet");
	free(h);
	refused("an API key then", ROUTE_BEDROCK, NULL, key, 503,
	    "unavailable", "not loaded yet");

	freezero_str(jwt);
	freezero_str(narrow_jwt);
	freezero_str(old_jwt);
	freezero_str(key);
	free(unknown);
	strlist_free(&narrow);
	user_clear(&u);
	auth_cache_clear();
	tmpdb_close();
	return (tap_done());
}
