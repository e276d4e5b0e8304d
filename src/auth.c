/*
 * auth.c: the one authentication step every protected route goes through.
 *
 * The credential comes from "Authorization: Bearer" or "X-Api-Key"; its kind
 * is decided by its format: "bsk_" is an API key, a compact JWS is one of
 * our tokens or a legacy one (tokens.c picks the verifier by issuer and key
 * id), "bsr_" is a refresh token and is refused here. Verified JWTs are
 * cached by a hash of the token until they expire, so a request costs one
 * hash and one lookup; revocation and the user's state are checked on every
 * request, cached or not.
 *
 * The server checks the credential as soon as a request's head has
 * arrived, before its body is read (auth_check), so that a client without
 * a valid credential cannot make the daemon hold a large body; the request
 * gets the verdict with revocation checked once more (auth_still_valid,
 * from server-auth.c). While a trusted issuer's keys are fetched again,
 * the connection waits with its body unread.
 */

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <uthash.h>

#include "bsp.h"
#include "crypto.h"
#include "jose.h"
#include "oidc.h"

/* A head waiting while a trusted issuer's keys are fetched again. */
struct auth_wait {
	struct oidc_issuer	*iss;
};

#define AUTH_TOKEN_MAX	16384

static int	auth_check1(const struct config *, int, const char *,
		    const char *, struct auth_result *, struct auth_wait **,
		    void (*)(void *), void *);

struct auth_cache_entry {
	uint8_t				 hash[CRYPTO_HASH_LEN];
	struct principal		*p;
	time_t				 until;
	TAILQ_ENTRY(auth_cache_entry)	 entry;
	UT_hash_handle			 hh;
};

static struct {
	struct auth_cache_entry		*hash;
	TAILQ_HEAD(, auth_cache_entry)	 fifo;
	size_t				 n;
	int				 init;
} cache;

static void
auth_cache_init(void)
{
	if (!cache.init) {
		TAILQ_INIT(&cache.fifo);
		cache.init = 1;
	}
}

static void
auth_cache_remove(struct auth_cache_entry *e)
{
	HASH_DEL(cache.hash, e);
	TAILQ_REMOVE(&cache.fifo, e, entry);
	principal_unref(e->p);
	free(e);
	cache.n--;
}

void
auth_cache_clear(void)
{
	struct auth_cache_entry	*e;

	auth_cache_init();
	while ((e = TAILQ_FIRST(&cache.fifo)) != NULL)
		auth_cache_remove(e);
}

/* Drop expired entries. */
void
auth_cache_sweep(void)
{
	struct auth_cache_entry	*e, *next;
	time_t			 now = now_wall();

	auth_cache_init();
	for (e = TAILQ_FIRST(&cache.fifo); e != NULL; e = next) {
		next = TAILQ_NEXT(e, entry);
		if (e->until != 0 && e->until <= now)
			auth_cache_remove(e);
	}
}

static struct principal *
auth_cache_get(const uint8_t *h)
{
	struct auth_cache_entry	*e;

	auth_cache_init();
	HASH_FIND(hh, cache.hash, h, CRYPTO_HASH_LEN, e);
	if (e == NULL)
		return (NULL);
	if (e->until != 0 && e->until <= now_wall()) {
		auth_cache_remove(e);
		return (NULL);
	}
	return (principal_ref(e->p));
}

static void
auth_cache_put(const uint8_t *h, struct principal *p)
{
	struct auth_cache_entry	*e;

	auth_cache_init();
	if (cfg->cache_max_entries <= 0)
		return;
	while (cache.n >= (size_t)cfg->cache_max_entries &&
	    (e = TAILQ_FIRST(&cache.fifo)) != NULL)
		auth_cache_remove(e);
	e = xcalloc(1, sizeof *e);
	memcpy(e->hash, h, CRYPTO_HASH_LEN);
	e->p = principal_ref(p);
	/* External tokens: never longer than cache.validation_ttl. */
	e->until = p->exp;
	if (p->kind == PRINCIPAL_EXTERNAL && (e->until == 0 ||
	    e->until > now_wall() + (time_t)cfg->cache_validation_ttl))
		e->until = now_wall() + (time_t)cfg->cache_validation_ttl;
	HASH_ADD(hh, cache.hash, hash, CRYPTO_HASH_LEN, e);
	TAILQ_INSERT_TAIL(&cache.fifo, e, entry);
	cache.n++;
}

/* Note a refusal in res; -1. */
static int
auth_fail(struct auth_result *res, int code, const char *label,
    const char *why)
{
	res->p = NULL;
	res->code = code;
	res->label = label;
	bsp_strlcpy(res->why, why, sizeof res->why);
	return (-1);
}

void
auth_result_clear(struct auth_result *res)
{
	principal_unref(res->p);
	memset(res, 0, sizeof *res);
}

/*
 * The credential of a request, or NULL with *why set. Both headers may be
 * sent (Claude Code's apiKeyHelper does) but must then agree.
 */
static const char *
auth_credential(const char *h, const char *k, const char **why)
{
	const char	*t = NULL;

	if (h != NULL) {
		if (strncasecmp(h, "Bearer ", 7) == 0) {
			t = h + 7;
			while (*t == ' ')
				t++;
		} else if (strncasecmp(h, "AWS4-HMAC-SHA256", 16) == 0) {
			*why = "this proxy takes a bearer token, not AWS "
			    "credentials (for Claude Code set "
			    "CLAUDE_CODE_SKIP_BEDROCK_AUTH=1)";
			return (NULL);
		} else {
			*why = "unsupported authorization scheme";
			return (NULL);
		}
	}
	if (k != NULL) {
		if (t != NULL && strcmp(t, k) != 0) {
			*why = "Authorization and X-Api-Key carry different "
			    "credentials";
			return (NULL);
		}
		t = k;
	}
	if (t == NULL || *t == '\0') {
		*why = "missing credentials: send Authorization: Bearer TOKEN";
		return (NULL);
	}
	return (t);
}

static int
looks_like_jws(const char *t)
{
	const char	*d1;

	return (strncmp(t, "eyJ", 3) == 0 && (d1 = strchr(t, '.')) != NULL &&
	    strchr(d1 + 1, '.') != NULL);
}

/* Which trusted issuer, if any, a token claims to come from. */
static int
auth_issuer(const struct config *c, const char *t, size_t len)
{
	struct crypto_err	 err;
	struct jose_jws		*jws;
	int			 idx;

	if (c->nissuers == 0 || (jws = jose_parse(t, len, &err)) == NULL)
		return (-1);
	idx = oauth_issuer_index(c, json_string_value(json_object_get(
	    jws->claims, "iss")));
	jose_jws_free(jws);
	return (idx);
}

/* Stop waiting for a trusted issuer's keys. */
void
auth_wait_cancel(struct auth_wait **wp, void *arg)
{
	struct auth_wait	*w = *wp;

	if (w == NULL)
		return;
	oidc_cancel_wait(w->iss, arg);
	oidc_issuer_put(w->iss);
	free(w);
	*wp = NULL;
}

/* A trusted issuer's token; 1 while its keys are fetched again. */
static int
auth_external(const struct config *c, int idx, const char *t, size_t len,
    struct auth_result *res, struct auth_wait **wp, void (*wake)(void *),
    void *arg)
{
	const struct issuer_config	*ic = &c->issuers[idx];
	struct oidc_issuer		*iss;
	const char			*why = NULL;
	int				 rc, code;

	iss = *wp != NULL ? (*wp)->iss : oauth_issuer_ref(ic);
	rc = oauth_verify_external(c, ic, iss, t, len, &res->p, &why, &code,
	    wake, arg);
	if (rc == 1) {
		if (*wp == NULL) {
			*wp = xcalloc(1, sizeof **wp);
			(*wp)->iss = iss;
		}
		log_trace(TRACE_AUTH, "waiting for %s's keys", ic->issuer);
		return (1);
	}
	if (*wp == NULL)
		oidc_issuer_put(iss);
	if (rc == -1)
		return (auth_fail(res, code, code == 403 ? "policy" :
		    "invalid", why));
	return (0);
}

/*
 * Check the credential a request carries (its Authorization and X-Api-Key
 * values, either may be NULL) for a route with these flags: 0 with res->p
 * set, -1 refused (res->code, label and why), or 1 while a trusted
 * issuer's keys are fetched again: wake(arg) is called once they are in
 * (or the fetch failed), and the caller asks again with the same *wp and
 * wake NULL for the final answer. Without wake, the answer is final.
 */
int
auth_check(const struct config *c, int route_flags, const char *authz,
    const char *apikey, struct auth_result *res, struct auth_wait **wp,
    void (*wake)(void *), void *arg)
{
	struct auth_wait	*w;
	int			 rc;

	rc = auth_check1(c, route_flags, authz, apikey, res, wp, wake, arg);
	if (rc != 1 && wp != NULL && (w = *wp) != NULL) {
		/* The wait is over (its callback has run, or was not needed). */
		oidc_cancel_wait(w->iss, arg);
		oidc_issuer_put(w->iss);
		free(w);
		*wp = NULL;
	}
	return (rc);
}

static int
auth_check1(const struct config *c, int route_flags, const char *authz,
    const char *apikey, struct auth_result *res, struct auth_wait **wp,
    void (*wake)(void *), void *arg)
{
	struct principal	*p = NULL;
	const char		*t, *why = NULL;
	uint8_t			 h[CRYPTO_HASH_LEN];
	struct auth_wait	*none = NULL;
	size_t			 len;
	int			 rc, idx;

	memset(res, 0, sizeof *res);
	if (wp == NULL)
		wp = &none;
	if ((t = auth_credential(authz, apikey, &why)) == NULL)
		return (auth_fail(res, 401, "missing", why));
	/*
	 * Nothing can be checked before the revocation state is in, nor
	 * once it is too old to trust (database.offline_grace).
	 */
	if (!tokens_loaded(&why) || !tokens_fresh(c, &why))
		return (auth_fail(res, 503, "unavailable", why));
	len = strlen(t);
	if (len > AUTH_TOKEN_MAX)
		return (auth_fail(res, 401, "malformed",
		    "credential is too large"));
	if (strncmp(t, APIKEY_PREFIX, 4) == 0) {
		/*
		 * A bad key is a 401 everywhere (RFC 6750 invalid_token);
		 * only a good one learns that it cannot be used here.
		 */
		if (apikey_verify(t, &p, &why) == -1)
			return (auth_fail(res, 401, "api_key", why));
		if (route_flags & RF_JWT_ONLY) {
			principal_unref(p);
			return (auth_fail(res, 403, "api_key", "API keys "
			    "cannot be used here; log in for a token"));
		}
	} else if (strncmp(t, "bsr_", 4) == 0) {
		return (auth_fail(res, 401, "malformed", "a refresh token is "
		    "not a bearer token; exchange it at /auth/refresh"));
	} else if (looks_like_jws(t)) {
		/*
		 * The cache's key, in memory only (never what the database
		 * stores): SHA-256, which OpenSSL computes with the CPU's
		 * SHA extensions, in 0.42 us for a 600-byte token against
		 * 1.0 us for libsodium's BLAKE2b.
		 */
		crypto_sha256(t, len, h);
		if ((p = auth_cache_get(h)) == NULL) {
			if ((idx = auth_issuer(c, t, len)) >= 0) {
				rc = auth_external(c, idx, t, len, res, wp,
				    wake, arg);
				if (rc != 0)
					return (rc);
				p = res->p;
				res->p = NULL;
			} else if (tokens_verify_jwt(t, len, &p, &why) == -1)
				return (auth_fail(res, 401, strstr(why,
				    "expired") ? "expired" : "invalid", why));
			auth_cache_put(h, p);
		}
	} else
		return (auth_fail(res, 401, "malformed",
		    "malformed credential"));

	res->p = p;
	if (auth_still_valid(res, route_flags) == -1)
		return (-1);
	log_trace(TRACE_AUTH, "authenticated %s (%s)", p->sub,
	    p->kind == PRINCIPAL_API_KEY ? "API key" : "token");
	return (0);
}

/*
 * What may change after a credential was verified: revocation, the user's
 * state, and the scope the route needs. 0, or -1 with res a refusal.
 */
int
auth_still_valid(struct auth_result *res, int route_flags)
{
	const char	*why;

	if (!tokens_loaded(&why) || !tokens_fresh(cfg, &why)) {
		principal_unref(res->p);
		return (auth_fail(res, 503, "unavailable", why));
	}
	if ((why = principal_revoked(res->p)) != NULL) {
		principal_unref(res->p);
		return (auth_fail(res, 401, strstr(why, "expired") ?
		    "expired" : "revoked", why));
	}
	if ((route_flags & (RF_BEDROCK | RF_API)) &&
	    !principal_has_scope(res->p, SCOPE_INVOKE)) {
		principal_unref(res->p);
		return (auth_fail(res, 403, "scope", "token lacks the "
		    SCOPE_INVOKE " scope"));
	}
	return (0);
}
