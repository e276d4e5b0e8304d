/*
 * oidc.c: identity providers' discovery documents and signing keys.
 *
 * One struct oidc_issuer per (issuer, jwks_uri), shared by the login
 * providers and the trusted issuers that name it. Its discovery document
 * (when endpoints or the JWKS location are not configured) and its JWK set
 * are fetched on the loop at start, again every oauth.jwks_refresh_interval,
 * and the JWK set also when a token names a key id we do not have, at most
 * once a minute: callers waiting for that are called back when it is done,
 * and then ask again without a callback for a final answer. A fetch calls
 * back only those who were waiting when it ended; whoever queues during
 * those calls waits for a later fetch, so a callback can never keep the
 * loop in oidc_wake() (and the daemon) busy.
 * Until a document arrives, logins through that provider are refused with a
 * clear page (and ask for a fetch, at most once a second, instead of
 * waiting out the backoff); an older set of keys stays in use when a
 * refresh fails. Every fetch is bounded by oauth.timeout.
 */

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <uthash.h>

#include "bsp.h"
#include "crypto.h"
#include "http-client.h"
#include "jose.h"
#include "oidc.h"

#define OIDC_DOC_MAX		(256 * 1024)
#define OIDC_REFETCH_MIN	60.0	/* seconds between kid-miss fetches */
#define OIDC_RETRY_MIN		5	/* first retry after a failure */
#define OIDC_KICK_MIN		1.0	/* seconds between fetches a login asks */

struct oidc_waiter {
	void			(*cb)(void *);
	void			*arg;
	unsigned long		 batch;		/* is->wakes when queued */
	TAILQ_ENTRY(oidc_waiter) entry;
};

struct oidc_issuer {
	char			*key;
	char			*issuer;	/* configured */
	char			*jwks_uri_conf;	/* configured, or NULL */
	int			 flags;		/* OIDC_* */
	int			 want_discovery;
	json_t			*disco;
	char			*disco_issuer;	/* as the document says */
	struct jose_keyset	*keys;
	enum crypto_alg		 allow[CRYPTO_ALG_MAX + 1];
	double			 keys_at;
	double			 refetch_at;	/* last kid-miss fetch */
	double			 fetch_at;	/* last fetch started */
	struct hc_target	*disco_target;
	struct hc_target	*jwks_target;
	char			*jwks_url;	/* jwks_target's URL */
	struct hc_req		*disco_req;
	struct hc_req		*jwks_req;
	const char		*problem;	/* static; for pages */
	int			 refcnt;
	int			 failures;
	unsigned long		 wakes;		/* oidc_wake() calls so far */
	struct event		 timer;
	TAILQ_HEAD(, oidc_waiter) waiters;
	UT_hash_handle		 hh;
};

static struct oidc_issuer	*issuers;

static void	oidc_fetch(struct oidc_issuer *);
static struct hc_req *oidc_get(struct hc_target *,
		    void (*)(struct hc_req *, const struct hc_result *, void *),
		    void *, char **);

/*
 * Note what is wrong with an issuer: what (a fixed phrase) is for pages
 * anyone can see; the details (addresses, TLS and parser errors) only
 * for the log.
 */
static void
oidc_problem(struct oidc_issuer *is, const char *what, const char *fmt, ...)
    printflike(3, 4);
static void
oidc_problem(struct oidc_issuer *is, const char *what, const char *fmt, ...)
{
	va_list	 ap;
	char	*detail = NULL;

	is->problem = what;
	if (fmt != NULL) {
		va_start(ap, fmt);
		xvasprintf(&detail, fmt, ap);
		va_end(ap);
	}
	log_warnx("identity provider %s: %s%s%s", is->issuer, what,
	    detail != NULL ? ": " : "", detail != NULL ? detail : "");
	free(detail);
}

/*
 * A fetch has ended: call back everyone who was waiting for it (they hold
 * references). Only them: a waiter that a callback queues belongs to the
 * next batch and waits for a later fetch, so this loop always ends. The
 * waiters stay on the issuer's list until called, where oidc_cancel_wait()
 * finds them if their owner goes away meanwhile. Key-id misses that this
 * fetch answered count as the minute's re-fetch.
 */
static void
oidc_wake(struct oidc_issuer *is)
{
	struct oidc_waiter	*w;
	unsigned long		 batch = is->wakes++;

	if (!TAILQ_EMPTY(&is->waiters))
		is->refetch_at = now_mono();
	is->refcnt++;
	while ((w = TAILQ_FIRST(&is->waiters)) != NULL && w->batch <= batch) {
		TAILQ_REMOVE(&is->waiters, w, entry);
		w->cb(w->arg);
		free(w);
	}
	oidc_issuer_put(is);
}

/* Schedule the next fetch: the refresh interval, or a backoff. */
static void
oidc_schedule(struct oidc_issuer *is, int failed)
{
	struct timeval	tv;
	long		s;

	if (failed) {
		s = OIDC_RETRY_MIN << (is->failures < 6 ? is->failures : 6);
		if (s > cfg->oauth_jwks_refresh)
			s = (long)cfg->oauth_jwks_refresh;
		is->failures++;
	} else {
		s = (long)cfg->oauth_jwks_refresh;
		is->failures = 0;
	}
	tv.tv_sec = s;
	tv.tv_usec = 0;
	evtimer_add(&is->timer, &tv);
}

static void
oidc_jwks_done(struct hc_req *req, const struct hc_result *res, void *arg)
{
	struct oidc_issuer	*is = arg;
	struct crypto_err	 err;
	struct jose_keyset	*ks;
	const char		*p;
	size_t			 len;

	is->jwks_req = NULL;
	if (res->error != HC_OK || res->status != 200) {
		oidc_problem(is, "cannot fetch its keys", "%s", res->error !=
		    HC_OK ? res->message : "unexpected HTTP status");
		oidc_schedule(is, 1);
		oidc_wake(is);
		return;
	}
	len = evbuffer_get_length(res->body);
	p = (const char *)evbuffer_pullup(res->body, -1);
	if ((ks = jose_jwks_parse(p != NULL ? p : "", len, is->allow,
	    &err)) == NULL) {
		oidc_problem(is, "its key set is unusable", "%s", err.msg);
		oidc_schedule(is, 1);
		oidc_wake(is);
		return;
	}
	jose_keyset_free(is->keys);
	is->keys = ks;
	is->keys_at = now_mono();
	is->problem = NULL;
	log_trace(TRACE_OAUTH, "%s: %zu signing keys (%zu skipped)",
	    is->issuer, ks->nkeys, ks->nskipped);
	oidc_schedule(is, 0);
	oidc_wake(is);
}

static void
oidc_fetch_jwks(struct oidc_issuer *is)
{
	const char	*uri = is->jwks_uri_conf;
	char		*cause = NULL;

	if (is->jwks_req != NULL)
		return;
	if (uri == NULL && is->disco != NULL)
		uri = json_string_value(json_object_get(is->disco, "jwks_uri"));
	if (uri == NULL) {
		oidc_problem(is, "no jwks_uri configured or discovered", NULL);
		oidc_schedule(is, 1);
		oidc_wake(is);
		return;
	}
	if (is->jwks_target == NULL || strcmp(is->jwks_url, uri) != 0) {
		if (is->jwks_target != NULL)
			hc_target_free(is->jwks_target);
		free(is->jwks_url);
		is->jwks_url = xstrdup(uri);
		if (url_check_outbound(uri, &cause) == -1 ||
		    (is->jwks_target = hc_target_new(uri, &cause)) == NULL) {
			is->jwks_target = NULL;
			oidc_problem(is, "its jwks_uri is unusable", "%s", cause);
			free(cause);
			oidc_schedule(is, 1);
			oidc_wake(is);
			return;
		}
	}
	is->jwks_req = oidc_get(is->jwks_target, oidc_jwks_done, is, &cause);
	if (is->jwks_req == NULL) {
		oidc_problem(is, "cannot fetch its keys", "%s", cause);
		free(cause);
		oidc_schedule(is, 1);
		oidc_wake(is);
	}
}

/*
 * GET a document. The whole exchange gets oauth.timeout, as every other
 * call to an identity provider: a login waiting for these keys must not
 * wait longer than that (the client's defaults would allow minutes).
 */
static struct hc_req *
oidc_get(struct hc_target *t, void (*done)(struct hc_req *,
    const struct hc_result *, void *), void *arg, char **cause)
{
	static const struct hc_header	 h[] = {
		{ "Accept", "application/json" },
		{ "User-Agent", BSP_NAME "/" PACKAGE_VERSION },
	};
	struct hc_request		 r;
	long				 ms = cfg->oauth_timeout * 1000L;
	struct hc_timeouts		 to = { ms, ms, ms, ms };

	hc_request_init(&r, "GET", hc_target_path(t), h, nitems(h), NULL, 0,
	    OIDC_DOC_MAX, &to, done, arg);
	return (hc_start(t, &r, cause));
}

/* A Microsoft tenant id: 36 characters of hex digits and dashes. */
static int
oidc_is_tenant_id(const char *s, size_t len)
{
	size_t	i;

	if (len != 36)
		return (0);
	for (i = 0; i < len; i++) {
		if (!isxdigit((unsigned char)s[i]) && s[i] != '-')
			return (0);
	}
	return (1);
}

/*
 * Does the document's issuer fit the configured one? Microsoft's
 * multi-tenant endpoints publish "https://login.microsoftonline.com/
 * {tenantid}/v2.0" for an issuer configured as ".../organizations/v2.0";
 * with OIDC_TENANT_ALIAS, a tenant configured by one of its domain names
 * (".../contoso.onmicrosoft.com/v2.0") publishes its tenant id there.
 */
static int
oidc_issuer_matches(const char *conf, const char *doc, int flags)
{
	const char	*t, *cs, *ds;
	size_t		 pre, cl, dl;

	if (strcmp(conf, doc) == 0)
		return (1);
	if ((t = strstr(doc, "{tenantid}")) != NULL) {
		pre = (size_t)(t - doc);
		return (strncmp(conf, doc, pre) == 0 &&
		    strcmp(conf + pre + strcspn(conf + pre, "/"), t + 10) == 0);
	}
	if (!(flags & OIDC_TENANT_ALIAS) || (strncmp(conf, "https://", 8) !=
	    0 && strncmp(conf, "http://", 7) != 0))
		return (0);
	/* scheme://host/ alike, then one segment each, then the same rest. */
	cs = strchr(strchr(conf, ':') + 3, '/');
	if (cs == NULL || strncmp(conf, doc, (size_t)(cs - conf + 1)) != 0)
		return (0);
	ds = doc + (cs - conf) + 1;
	cs++;
	cl = strcspn(cs, "/");
	dl = strcspn(ds, "/");
	return (cl > 0 && !oidc_is_tenant_id(cs, cl) &&
	    oidc_is_tenant_id(ds, dl) && strcmp(cs + cl, ds + dl) == 0);
}

static void
oidc_disco_done(struct hc_req *req, const struct hc_result *res, void *arg)
{
	struct oidc_issuer	*is = arg;
	struct crypto_err	 err;
	json_t			*doc;
	const char		*p, *iss;
	size_t			 len;

	is->disco_req = NULL;
	if (res->error != HC_OK || res->status != 200) {
		oidc_problem(is, "cannot fetch its discovery document", "%s",
		    res->error != HC_OK ? res->message :
		    "unexpected HTTP status");
		oidc_schedule(is, 1);
		oidc_wake(is);
		return;
	}
	len = evbuffer_get_length(res->body);
	p = (const char *)evbuffer_pullup(res->body, -1);
	doc = jose_json_load(p != NULL ? p : "", len, OIDC_DOC_MAX,
	    "discovery document", &err);
	if (doc == NULL || (iss = json_string_value(json_object_get(doc,
	    "issuer"))) == NULL) {
		oidc_problem(is, "its discovery document is unusable", "%s",
		    doc == NULL ? err.msg : "no issuer");
		json_decref(doc);
		oidc_schedule(is, 1);
		oidc_wake(is);
		return;
	}
	if (!oidc_issuer_matches(is->issuer, iss, is->flags)) {
		oidc_problem(is, "its discovery document names another issuer",
		    NULL);
		json_decref(doc);
		oidc_schedule(is, 1);
		oidc_wake(is);
		return;
	}
	json_decref(is->disco);
	is->disco = doc;
	free(is->disco_issuer);
	is->disco_issuer = xstrdup(iss);
	oidc_fetch_jwks(is);
}

static void
oidc_fetch(struct oidc_issuer *is)
{
	char	*url, *cause = NULL;
	size_t	 len;

	is->fetch_at = now_mono();
	if (!is->want_discovery) {
		oidc_fetch_jwks(is);
		return;
	}
	if (is->disco_req != NULL)
		return;
	if (is->disco_target == NULL) {
		len = strlen(is->issuer);
		xasprintf(&url, "%.*s/.well-known/openid-configuration",
		    (int)(len > 0 && is->issuer[len - 1] == '/' ? len - 1 : len),
		    is->issuer);
		is->disco_target = hc_target_new(url, &cause);
		free(url);
		if (is->disco_target == NULL) {
			oidc_problem(is, "its issuer is unusable", "%s", cause);
			free(cause);
			oidc_schedule(is, 1);
			return;
		}
	}
	is->disco_req = oidc_get(is->disco_target, oidc_disco_done, is, &cause);
	if (is->disco_req == NULL) {
		oidc_problem(is, "cannot fetch its discovery document", "%s",
		    cause);
		free(cause);
		oidc_schedule(is, 1);
	}
}

static void
oidc_timer_cb(int fd, short ev, void *arg)
{
	oidc_fetch(arg);
}

/*
 * The shared issuer for (issuer, jwks_uri, flags), created and fetched on
 * first use. OIDC_DISCOVERY: endpoints must come from its document.
 */
struct oidc_issuer *
oidc_issuer_get(const char *issuer, const char *jwks_uri,
    const struct strlist *algs, int flags)
{
	int			 discovery = (flags & OIDC_DISCOVERY) != 0;
	struct oidc_issuer	*is;
	char			*key;
	size_t			 i, n = 0;
	enum crypto_alg		 a;

	xasprintf(&key, "%s|%s|%d", issuer, jwks_uri != NULL ? jwks_uri : "",
	    flags);
	HASH_FIND_STR(issuers, key, is);
	if (is != NULL) {
		free(key);
		is->refcnt++;
		return (is);
	}
	is = xcalloc(1, sizeof *is);
	is->key = key;
	is->issuer = xstrdup(issuer);
	if (jwks_uri != NULL)
		is->jwks_uri_conf = xstrdup(jwks_uri);
	is->flags = flags;
	is->want_discovery = discovery || jwks_uri == NULL;
	for (i = 0; algs != NULL && i < algs->n && n < CRYPTO_ALG_MAX; i++) {
		if ((a = crypto_alg_from_name(algs->v[i])) != CRYPTO_ALG_NONE)
			is->allow[n++] = a;
	}
	if (n == 0)
		is->allow[n++] = CRYPTO_ALG_RS256;
	is->allow[n] = CRYPTO_ALG_NONE;
	is->refcnt = 1;
	TAILQ_INIT(&is->waiters);
	evtimer_assign(&is->timer, bsp_base, oidc_timer_cb, is);
	HASH_ADD_KEYPTR(hh, issuers, is->key, strlen(is->key), is);
	oidc_fetch(is);
	return (is);
}

void
oidc_issuer_put(struct oidc_issuer *is)
{
	struct oidc_waiter	*w;

	if (is == NULL || --is->refcnt > 0)
		return;
	HASH_DEL(issuers, is);
	event_del(&is->timer);
	if (is->disco_req != NULL)
		hc_cancel(is->disco_req);
	if (is->jwks_req != NULL)
		hc_cancel(is->jwks_req);
	while ((w = TAILQ_FIRST(&is->waiters)) != NULL) {
		TAILQ_REMOVE(&is->waiters, w, entry);
		free(w);
	}
	if (is->disco_target != NULL)
		hc_target_free(is->disco_target);
	if (is->jwks_target != NULL)
		hc_target_free(is->jwks_target);
	jose_keyset_free(is->keys);
	json_decref(is->disco);
	free(is->disco_issuer);
	free(is->jwks_url);
	free(is->jwks_uri_conf);
	free(is->issuer);
	free(is->key);
	free(is);
}

/*
 * A login found the documents missing: try again now rather than when the
 * backoff says (which grows to minutes while the IdP is down), so that
 * logins work again as soon as it is back. At most once a second.
 */
void
oidc_kick(struct oidc_issuer *is)
{
	if (oidc_ready(is) || is->disco_req != NULL || is->jwks_req != NULL ||
	    now_mono() - is->fetch_at < OIDC_KICK_MIN)
		return;
	event_del(&is->timer);
	oidc_fetch(is);
}

/* Everything a login needs has arrived (document, keys). */
int
oidc_ready(const struct oidc_issuer *is)
{
	return ((!is->want_discovery || is->disco != NULL) &&
	    is->keys != NULL);
}

/* Has a key set ever arrived? */
int
oidc_has_keys(const struct oidc_issuer *is)
{
	return (is->keys != NULL);
}

/* Did the last fetch of its document or keys fail? */
int
oidc_failing(const struct oidc_issuer *is)
{
	return (is->problem != NULL);
}

/* Is its issuer a template ({tenantid}): one IdP for many organizations? */
int
oidc_multi_tenant(const struct oidc_issuer *is)
{
	return (is->disco_issuer != NULL &&
	    strstr(is->disco_issuer, "{tenantid}") != NULL);
}

/* A boolean of the discovery document: 1 true, 0 false or absent, -1 none. */
int
oidc_flag(const struct oidc_issuer *is, const char *name)
{
	if (is->disco == NULL)
		return (-1);
	return (json_is_true(json_object_get(is->disco, name)));
}

const char *
oidc_problem_text(const struct oidc_issuer *is)
{
	return (is->problem != NULL ? is->problem : "not loaded yet");
}

/* A string from the discovery document ("token_endpoint"), or NULL. */
const char *
oidc_endpoint(const struct oidc_issuer *is, const char *name)
{
	if (is->disco == NULL)
		return (NULL);
	return (json_string_value(json_object_get(is->disco, name)));
}

/* Does the document list this value under name (an array of strings)? */
int
oidc_supports(const struct oidc_issuer *is, const char *name,
    const char *value)
{
	json_t	*a, *v;
	size_t	 i;

	if (is->disco == NULL ||
	    !json_is_array(a = json_object_get(is->disco, name)))
		return (-1);
	json_array_foreach(a, i, v) {
		if (json_is_string(v) && strcmp(json_string_value(v), value) ==
		    0)
			return (1);
	}
	return (0);
}

/*
 * The issuer a token of this IdP must carry: the document's, with a
 * Microsoft {tenantid} filled from the token's tid.
 */
int
oidc_expected_issuer(const struct oidc_issuer *is, const char *tid,
    char *buf, size_t len)
{
	const char	*doc = is->disco_issuer != NULL ? is->disco_issuer :
			    is->issuer;
	const char	*t;

	if ((t = strstr(doc, "{tenantid}")) == NULL) {
		bsp_strlcpy(buf, doc, len);
		return (0);
	}
	if (tid == NULL || *tid == '\0' || strpbrk(tid, "/?#") != NULL)
		return (-1);
	snprintf(buf, len, "%.*s%s%s", (int)(t - doc), doc, tid, t + 10);
	return (0);
}

/*
 * Find the key for a token. 1: *key set. 0: no such key (final). -1: the
 * key set is being fetched again because of an unknown kid; cb(arg) runs
 * when it is done, and the caller asks again, without a callback (cb
 * NULL), which gets it a final answer: 1 or 0.
 */
int
oidc_find_key(struct oidc_issuer *is, const char *kid, enum crypto_alg alg,
    const struct crypto_key **key, void (*cb)(void *), void *arg)
{
	struct oidc_waiter	*w;
	double			 now = now_mono();

	*key = NULL;
	if (is->keys != NULL &&
	    (*key = jose_keyset_find(is->keys, kid, alg)) != NULL)
		return (1);
	if (cb == NULL)
		return (0);
	if (is->jwks_req == NULL && is->disco_req == NULL) {
		/*
		 * At most once a minute, keys or not: when the fetch fails,
		 * the waiters are called back and must get a final answer,
		 * not another fetch (which would loop as long as it fails).
		 */
		if (is->refetch_at != 0 && now - is->refetch_at <
		    OIDC_REFETCH_MIN)
			return (0);
		is->refetch_at = now;
		log_info("identity provider %s: unknown key id; fetching its "
		    "keys again", is->issuer);
		event_del(&is->timer);
		if (is->want_discovery && is->disco == NULL)
			oidc_fetch(is);
		else
			oidc_fetch_jwks(is);
		if (is->jwks_req == NULL && is->disco_req == NULL)
			return (0);
	}
	w = xcalloc(1, sizeof *w);
	w->cb = cb;
	w->arg = arg;
	w->batch = is->wakes;
	TAILQ_INSERT_TAIL(&is->waiters, w, entry);
	return (-1);
}

void
oidc_cancel_wait(struct oidc_issuer *is, void *arg)
{
	struct oidc_waiter	*w, *next;

	for (w = TAILQ_FIRST(&is->waiters); w != NULL; w = next) {
		next = TAILQ_NEXT(w, entry);
		if (w->arg == arg) {
			TAILQ_REMOVE(&is->waiters, w, entry);
			free(w);
		}
	}
}

const char *
oidc_issuer_name(const struct oidc_issuer *is)
{
	return (is->issuer);
}
