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
 */

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <uthash.h>

#include "bsp.h"
#include "crypto.h"
#include "jose.h"
#include "oidc.h"

/* A request waiting while a trusted issuer's keys are fetched again. */
struct auth_wait {
	struct oidc_issuer	*iss;
};

#define AUTH_TOKEN_MAX	16384

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

struct metric	*m_auth_failures;

static void
cache_init(void)
{
	if (!cache.init) {
		TAILQ_INIT(&cache.fifo);
		cache.init = 1;
	}
}

static void
cache_remove(struct auth_cache_entry *e)
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

	cache_init();
	while ((e = TAILQ_FIRST(&cache.fifo)) != NULL)
		cache_remove(e);
}

/* Drop expired entries. */
void
auth_cache_sweep(void)
{
	struct auth_cache_entry	*e, *next;
	time_t			 now = now_wall();

	cache_init();
	for (e = TAILQ_FIRST(&cache.fifo); e != NULL; e = next) {
		next = TAILQ_NEXT(e, entry);
		if (e->until != 0 && e->until <= now)
			cache_remove(e);
	}
}

static struct principal *
cache_get(const uint8_t *h)
{
	struct auth_cache_entry	*e;

	cache_init();
	HASH_FIND(hh, cache.hash, h, CRYPTO_HASH_LEN, e);
	if (e == NULL)
		return (NULL);
	if (e->until != 0 && e->until <= now_wall()) {
		cache_remove(e);
		return (NULL);
	}
	return (principal_ref(e->p));
}

static void
cache_put(const uint8_t *h, struct principal *p)
{
	struct auth_cache_entry	*e;

	cache_init();
	if (cfg->cache_max_entries <= 0)
		return;
	while (cache.n >= (size_t)cfg->cache_max_entries &&
	    (e = TAILQ_FIRST(&cache.fifo)) != NULL)
		cache_remove(e);
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

/* Refuse: 401 (or 403) in the shape of the route, and count why. */
static void
auth_fail(struct request *r, int code, const char *label, const char *why)
{
	char	labels[64];

	if (m_auth_failures != NULL) {
		metric_label(labels, sizeof labels, "reason", label, NULL);
		metric_add(m_auth_failures, labels, 1);
	}
	log_trace(TRACE_AUTH, "%s %s refused: %s", r->method, r->path, why);
	if (r->route != NULL && (r->route->flags & RF_BEDROCK)) {
		server_error_bedrock(r, code, code == 401 ?
		    "UnrecognizedClientException" : "AccessDeniedException",
		    "%s", why);
		return;
	}
	if (code == 401)
		server_set_header(r, "WWW-Authenticate", "Bearer realm=\""
		    BSP_NAME "\", error=\"invalid_token\"");
	server_error_oauth(r, code, code == 401 ? "invalid_token" :
	    "insufficient_scope", why);
}

/*
 * The credential of a request, or NULL with *why set. Both headers may be
 * sent (Claude Code's apiKeyHelper does) but must then agree.
 */
static const char *
auth_credential(struct request *r, const char **why)
{
	const char	*h, *k, *t = NULL;

	h = server_header(r, "Authorization");
	k = server_header(r, "X-Api-Key");
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
auth_issuer(struct request *r, const char *t, size_t len)
{
	struct crypto_err	 err;
	struct jose_jws		*jws;
	int			 idx;

	if (r->cfg->nissuers == 0 || (jws = jose_parse(t, len, &err)) == NULL)
		return (-1);
	idx = oauth_issuer_index(r->cfg, json_string_value(json_object_get(
	    jws->claims, "iss")));
	jose_jws_free(jws);
	return (idx);
}

void
auth_wait_free(struct request *r)
{
	if (r->auth_wait == NULL)
		return;
	oidc_cancel_wait(r->auth_wait->iss, r);
	oidc_issuer_put(r->auth_wait->iss);
	free(r->auth_wait);
	r->auth_wait = NULL;
}

/* The client left while we waited for keys. */
static void
auth_abort(struct request *r)
{
	auth_wait_free(r);
	request_unref(r);
}

/*
 * The issuer's keys have been fetched again: try once more, for a final
 * answer (auth_external() asks without a callback now, so a key id still
 * unknown is a 401, never another wait).
 */
static void
auth_resume(void *arg)
{
	struct request	*r = arg;
	int		 rc;

	r->on_abort = NULL;
	rc = auth_request(r);
	auth_wait_free(r);
	if (rc == 0)
		r->route->handler(r);
	request_unref(r);
}

/* A trusted issuer's token; 1 while its keys are fetched again. */
static int
auth_external(struct request *r, int idx, const char *t, size_t len,
    struct principal **p, const char **why, int *code)
{
	const struct issuer_config	*ic = &r->cfg->issuers[idx];
	struct oidc_issuer		*iss;
	int				 rc;

	/* Waiting once is all: a resumed request gets a final answer. */
	iss = r->auth_wait != NULL ? r->auth_wait->iss : oauth_issuer_ref(ic);
	rc = oauth_verify_external(r->cfg, ic, iss, t, len, p, why, code,
	    r->auth_wait == NULL ? auth_resume : NULL, r);
	if (rc == 1) {
		if (r->auth_wait == NULL) {
			r->auth_wait = xcalloc(1, sizeof *r->auth_wait);
			r->auth_wait->iss = iss;
			request_ref(r);
		}
		r->on_abort = auth_abort;
		log_trace(TRACE_AUTH, "%s: waiting for %s's keys", r->id,
		    ic->issuer);
		return (1);
	}
	if (r->auth_wait == NULL)
		oidc_issuer_put(iss);
	return (rc);
}

/*
 * Authenticate a request for its route. Returns 0 with r->principal set,
 * -1 after answering the client, or 1 when it has to wait for a trusted
 * issuer's keys: the route's handler is then called when they are in.
 */
int
auth_request(struct request *r)
{
	struct principal	*p = NULL;
	const char		*t, *why = NULL, *label = "invalid";
	uint8_t			 h[CRYPTO_HASH_LEN];
	size_t			 len;

	if ((t = auth_credential(r, &why)) == NULL) {
		auth_fail(r, 401, "missing", why);
		return (-1);
	}
	len = strlen(t);
	if (len > AUTH_TOKEN_MAX) {
		auth_fail(r, 401, "malformed", "credential is too large");
		return (-1);
	}
	if (strncmp(t, APIKEY_PREFIX, 4) == 0) {
		/*
		 * A bad key is a 401 everywhere (RFC 6750 invalid_token);
		 * only a good one learns that it cannot be used here.
		 */
		if (apikey_verify(t, &p, &why) == -1) {
			auth_fail(r, 401, "api_key", why);
			return (-1);
		}
		if (r->route != NULL && (r->route->flags & RF_JWT_ONLY)) {
			principal_unref(p);
			auth_fail(r, 403, "api_key", "API keys cannot be used "
			    "here; log in for a token");
			return (-1);
		}
	} else if (strncmp(t, "bsr_", 4) == 0) {
		auth_fail(r, 401, "malformed", "a refresh token is not a bearer "
		    "token; exchange it at /auth/refresh");
		return (-1);
	} else if (looks_like_jws(t)) {
		crypto_hash_token(t, h);
		if ((p = cache_get(h)) == NULL) {
			int rc, code, idx = auth_issuer(r, t, len);

			if (idx >= 0) {
				rc = auth_external(r, idx, t, len, &p, &why,
				    &code);
				if (rc == 1)
					return (1);
				if (rc == -1) {
					auth_fail(r, code, code == 403 ?
					    "policy" : "invalid", why);
					return (-1);
				}
			} else if (tokens_verify_jwt(t, len, &p, &why) == -1) {
				auth_fail(r, 401, strstr(why, "expired") ?
				    "expired" : "invalid", why);
				return (-1);
			}
			cache_put(h, p);
		}
	} else {
		auth_fail(r, 401, "malformed", "malformed credential");
		return (-1);
	}

	if ((why = principal_revoked(p)) != NULL) {
		label = strstr(why, "expired") ? "expired" : "revoked";
		principal_unref(p);
		auth_fail(r, 401, label, why);
		return (-1);
	}
	if (r->route != NULL && (r->route->flags & RF_BEDROCK) &&
	    !principal_has_scope(p, SCOPE_INVOKE)) {
		principal_unref(p);
		auth_fail(r, 403, "scope", "token lacks the " SCOPE_INVOKE
		    " scope");
		return (-1);
	}
	r->principal = p;
	request_set_user(r, p->email != NULL ? p->email : p->sub);
	log_trace(TRACE_AUTH, "authenticated %s (%s)", p->sub,
	    p->kind == PRINCIPAL_API_KEY ? "API key" : "token");
	return (0);
}

/*
 * For routes that take a bearer token optionally (logout): the raw token
 * if an Authorization: Bearer header is present.
 */
int
auth_bearer(struct request *r, const char **token)
{
	const char	*h = server_header(r, "Authorization");

	*token = NULL;
	if (h == NULL)
		return (0);
	if (strncasecmp(h, "Bearer ", 7) != 0)
		return (-1);
	h += 7;
	while (*h == ' ')
		h++;
	*token = h;
	return (*h != '\0' ? 1 : -1);
}
