/*
 * aws-roles.c: AWS credentials made for one user with sts:AssumeRole.
 *
 * aws.per_user_role: the relay signs each user's calls with a role
 * session of that user's own (RoleSessionName, SourceIdentity and session
 * tags from aws-identity.c), so that CloudTrail, invocation logs and the
 * bill name the developer. Sessions are cached per user: a cache hit is a
 * hash lookup; one that expires within AWSROLE_REFRESH_BEFORE seconds is
 * still used while a background AssumeRole replaces it; one with less than
 * AWSROLE_MIN_LEFT seconds is not used, and the request waits for the new
 * one. There is at most one AssumeRole per user in flight (single flight):
 * every request that needs it waits on that one. The cache holds at most
 * aws.per_user_role.cache_size users; the one unused longest (and idle) is
 * dropped first. After a failure, that user's requests fail at once for
 * AWSROLE_HOLDOFF seconds instead of hammering STS.
 *
 * The base credentials are the daemon's chain (aws_call with creds NULL).
 * STS's own words go to the log, never to the client.
 *
 * aws.credential_roles use awsrole_assume(): one AssumeRole, not cached.
 */

#include <sys/queue.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uthash.h>

#include "bsp.h"
#include "aws-call.h"
#include "aws-creds.h"

#define AWSROLE_REFRESH_BEFORE	300	/* s: refresh in the background */
#define AWSROLE_MIN_LEFT	60	/* s: not used with less left */
#define AWSROLE_HOLDOFF		2	/* s: fail fast after a failure */
#define AWSROLE_TIMEOUT		10000	/* ms: one AssumeRole */

struct awsrole_wait {
	struct awsrole_user		*u;
	awsrole_cb			 cb;
	void				*arg;
	TAILQ_ENTRY(awsrole_wait)	 entry;
};
TAILQ_HEAD(awsrole_waits, awsrole_wait);

struct awsrole_user {
	char			*sub;
	struct principal	*p;		/* the latest, for the tags */
	struct aws_creds	*creds;
	struct aws_call		*call;		/* the one in flight */
	double			 failed_at;
	enum aws_call_class	 fail_cls;
	struct awsrole_waits	 waits;
	TAILQ_ENTRY(awsrole_user) lru;		/* least recently used first */
	UT_hash_handle		 hh;
};

static struct {
	struct awsrole_user	*hash;
	TAILQ_HEAD(, awsrole_user) lru;
	size_t			 n;
	int			 inited;
	char			*sig;		/* the settings sessions use */
	struct metric		*m_calls;
	struct metric		*m_hits;
	unsigned long		 assumes;	/* for tests: calls started */
} ar;

static void	awsrole_start(const struct config *, struct awsrole_user *);

static void
awsrole_init_once(void)
{
	if (ar.inited)
		return;
	ar.inited = 1;
	TAILQ_INIT(&ar.lru);
	if (ar.m_calls == NULL) {
		ar.m_calls = metric_new("bsp_aws_assume_role_total",
		    METRIC_COUNTER, "sts:AssumeRole calls by purpose and "
		    "class of outcome.");
		ar.m_hits = metric_new("bsp_aws_user_role_cache_total",
		    METRIC_COUNTER, "Per-user role sessions looked up, by "
		    "hit, miss or wait.");
	}
}

/* What a cached session depends on: role, duration, tags, external id. */
static char *
awsrole_signature(const struct config *c)
{
	char	*tags, *s;

	tags = strlist_join(&c->aws_user_role_tags, ",");
	xasprintf(&s, "%s|%lld|%s|%s", c->aws_user_role_arn != NULL ?
	    c->aws_user_role_arn : "", c->aws_user_role_duration,
	    tags != NULL ? tags : "", c->aws_user_role_external_id != NULL ?
	    c->aws_user_role_external_id : "");
	free(tags);
	return (s);
}

static int
awsrole_usable(const struct aws_creds *c, long left)
{
	return (c != NULL && (c->expiration == 0 ||
	    c->expiration - now_wall() > left));
}

static void
awsrole_user_free(struct awsrole_user *u)
{
	if (u->call != NULL)
		aws_call_cancel(u->call);
	HASH_DEL(ar.hash, u);
	TAILQ_REMOVE(&ar.lru, u, lru);
	ar.n--;
	if (u->creds != NULL)
		aws_creds_unref(u->creds);
	principal_unref(u->p);
	free(u->sub);
	free(u);
}

/* Make room: drop idle users, least recently used first. */
static void
awsrole_evict(size_t max)
{
	struct awsrole_user	*u, *next;

	for (u = TAILQ_FIRST(&ar.lru); u != NULL && ar.n >= max; u = next) {
		next = TAILQ_NEXT(u, lru);
		if (u->call == NULL && TAILQ_EMPTY(&u->waits))
			awsrole_user_free(u);
	}
}

/* Hand every waiter the outcome (creds NULL on failure). */
static void
awsrole_wake(struct awsrole_user *u, enum aws_call_class cls,
    const char *msg)
{
	struct awsrole_waits	 ws;
	struct awsrole_wait	*w;
	struct aws_creds	*c = cls == AWS_CALL_OK ? u->creds : NULL;

	/* A callback may start calls that drop this user: hold what we use. */
	if (c != NULL)
		c->refcnt++;
	TAILQ_INIT(&ws);
	TAILQ_CONCAT(&ws, &u->waits, entry);
	while ((w = TAILQ_FIRST(&ws)) != NULL) {
		TAILQ_REMOVE(&ws, w, entry);
		if (c != NULL)
			c->refcnt++;
		w->cb(c, c != NULL ? AWS_CALL_OK : cls, msg, w->arg);
		free(w);
	}
	if (c != NULL)
		aws_creds_unref(c);
}

/* The answer of a per-user AssumeRole. */
static void
awsrole_user_done(const struct aws_call_result *res, void *arg)
{
	struct awsrole_user	*u = arg;
	struct aws_creds	*c = NULL;
	enum aws_call_class	 cls = res->cls;
	char			*cause = NULL, msg[160];
	char			 label[64];

	u->call = NULL;
	if (cls == AWS_CALL_OK && (c = awscred_parse_sts(res->body, res->len,
	    "per-user role", &cause)) == NULL) {
		cls = AWS_CALL_SERVER;
		log_warnx("aws per-user role for %s: the STS answer is not "
		    "usable: %s", u->sub, cause);
		free(cause);
	}
	metric_label(label, sizeof label, "purpose", "user", "class",
	    aws_call_class_name(cls), NULL);
	metric_add(ar.m_calls, label, 1);
	if (c == NULL) {
		if (cls != AWS_CALL_SERVER || res->status != 200)
			log_warnx("aws per-user role for %s: AssumeRole failed "
			    "(%s, status %d%s%s): %s", u->sub,
			    aws_call_class_name(cls), res->status,
			    res->code[0] != '\0' ? ", " : "", res->code,
			    res->message);
		u->failed_at = now_mono();
		u->fail_cls = cls;
		snprintf(msg, sizeof msg, "%s", aws_call_class_name(cls));
		/* Old credentials still good: the waiters take those. */
		if (awsrole_usable(u->creds, AWSROLE_MIN_LEFT) &&
		    !TAILQ_EMPTY(&u->waits))
			awsrole_wake(u, AWS_CALL_OK, "");
		else
			awsrole_wake(u, cls, msg);
		return;
	}
	log_debug("aws per-user role for %s: session until %lld", u->sub,
	    (long long)c->expiration);
	if (u->creds != NULL)
		aws_creds_unref(u->creds);
	u->creds = c;
	u->failed_at = 0;
	awsrole_wake(u, AWS_CALL_OK, "");
}

static struct aws_call *
awsrole_call(const struct config *c, const struct principal *p,
    const char *arn, long long duration, const char *policy,
    void (*cb)(const struct aws_call_result *, void *), void *arg)
{
	struct aws_call_req	 req;
	struct aws_call		*ac;
	char			*form;

	form = awsid_assume_form(c, p, arn, duration, policy);
	memset(&req, 0, sizeof req);
	req.service = "sts";
	req.endpoint_env = "STS";
	req.host_prefix = "sts";
	req.region = c->aws_region;
	req.content_type = "application/x-www-form-urlencoded; charset=utf-8";
	req.body = form;
	req.len = strlen(form);
	req.timeout_ms = AWSROLE_TIMEOUT;
	ar.assumes++;
	ac = aws_call_start(&req, cb, arg);
	free(form);
	return (ac);
}

static void
awsrole_start(const struct config *c, struct awsrole_user *u)
{
	log_trace(TRACE_UPSTREAM, "aws per-user role for %s: AssumeRole",
	    u->sub);
	u->call = awsrole_call(c, u->p, c->aws_user_role_arn,
	    c->aws_user_role_duration, NULL, awsrole_user_done, u);
}

int
awsrole_user_get(const struct config *c, struct principal *p,
    struct aws_creds **out, int *cls, awsrole_cb cb,
    void *arg, struct awsrole_wait **wp)
{
	struct awsrole_user	*u;
	struct awsrole_wait	*w;
	char			 label[32];

	awsrole_init_once();
	*out = NULL;
	*wp = NULL;
	HASH_FIND_STR(ar.hash, p->sub, u);
	if (u == NULL) {
		awsrole_evict((size_t)c->aws_user_role_cache);
		u = xcalloc(1, sizeof *u);
		u->sub = xstrdup(p->sub);
		TAILQ_INIT(&u->waits);
		HASH_ADD_KEYPTR(hh, ar.hash, u->sub, strlen(u->sub), u);
		ar.n++;
	} else
		TAILQ_REMOVE(&ar.lru, u, lru);
	TAILQ_INSERT_TAIL(&ar.lru, u, lru);
	if (u->p != p) {
		principal_unref(u->p);
		u->p = principal_ref(p);
	}
	if (awsrole_usable(u->creds, AWSROLE_MIN_LEFT)) {
		if (u->call == NULL && !awsrole_usable(u->creds,
		    AWSROLE_REFRESH_BEFORE) && (u->failed_at == 0 ||
		    now_mono() - u->failed_at >= AWSROLE_HOLDOFF))
			awsrole_start(c, u);
		metric_label(label, sizeof label, "result", "hit", NULL);
		metric_add(ar.m_hits, label, 1);
		u->creds->refcnt++;
		*out = u->creds;
		return (1);
	}
	if (u->call == NULL && u->failed_at != 0 &&
	    now_mono() - u->failed_at < AWSROLE_HOLDOFF) {
		*cls = (int)u->fail_cls;
		return (-1);
	}
	metric_label(label, sizeof label, "result", u->call != NULL ? "wait" :
	    "miss", NULL);
	metric_add(ar.m_hits, label, 1);
	w = xcalloc(1, sizeof *w);
	w->u = u;
	w->cb = cb;
	w->arg = arg;
	TAILQ_INSERT_TAIL(&u->waits, w, entry);
	*wp = w;
	if (u->call == NULL)
		awsrole_start(c, u);
	return (0);
}

void
awsrole_user_cancel(struct awsrole_wait *w)
{
	if (w == NULL)
		return;
	TAILQ_REMOVE(&w->u->waits, w, entry);
	free(w);
}

void
awsrole_user_rejected(const struct principal *p, const struct aws_creds *c)
{
	struct awsrole_user	*u;

	if (!ar.inited)
		return;
	HASH_FIND_STR(ar.hash, p->sub, u);
	if (u == NULL || u->creds != c)
		return;		/* already replaced */
	log_info("aws per-user role for %s: AWS refused the session; "
	    "assuming the role again", u->sub);
	aws_creds_unref(u->creds);
	u->creds = NULL;
}

size_t
awsrole_cached(unsigned long *assumes)
{
	if (assumes != NULL)
		*assumes = ar.assumes;
	return (ar.n);
}

/* One AssumeRole for the caller (aws.credential_roles). */
struct awsrole_op {
	awsrole_cb	 cb;
	void		*arg;
	struct aws_call	*call;
};

static void
awsrole_op_done(const struct aws_call_result *res, void *arg)
{
	struct awsrole_op	*op = arg;
	struct aws_creds	*c = NULL;
	enum aws_call_class	 cls = res->cls;
	char			*cause = NULL, label[64];

	if (cls == AWS_CALL_OK && (c = awscred_parse_sts(res->body, res->len,
	    "credential role", &cause)) == NULL) {
		cls = AWS_CALL_SERVER;
		log_warnx("aws credential role: the STS answer is not usable: "
		    "%s", cause);
		free(cause);
	} else if (cls != AWS_CALL_OK)
		log_warnx("aws credential role: AssumeRole failed (%s, status "
		    "%d%s%s): %s", aws_call_class_name(cls), res->status,
		    res->code[0] != '\0' ? ", " : "", res->code, res->message);
	metric_label(label, sizeof label, "purpose", "vend", "class",
	    aws_call_class_name(cls), NULL);
	metric_add(ar.m_calls, label, 1);
	op->cb(c, cls, aws_call_class_name(cls), op->arg);
	free(op);
}

struct awsrole_op *
awsrole_assume(const struct config *c, const struct principal *p,
    const struct aws_credential_role *cr, awsrole_cb cb, void *arg)
{
	struct awsrole_op	*op;

	awsrole_init_once();
	op = xcalloc(1, sizeof *op);
	op->cb = cb;
	op->arg = arg;
	op->call = awsrole_call(c, p, cr->role_arn, cr->duration,
	    cr->session_policy, awsrole_op_done, op);
	return (op);
}

void
awsrole_assume_cancel(struct awsrole_op *op)
{
	if (op == NULL)
		return;
	aws_call_cancel(op->call);
	free(op);
}

/* A reload: sessions made with other settings are dropped. */
void
awsrole_commit(struct config *c)
{
	struct awsrole_user	*u, *next;
	char			*sig;

	awsrole_init_once();
	sig = awsrole_signature(c);
	if (ar.sig != NULL && strcmp(sig, ar.sig) != 0) {
		log_info("aws per-user role settings changed: %zu cached "
		    "sessions dropped", ar.n);
		for (u = TAILQ_FIRST(&ar.lru); u != NULL; u = next) {
			next = TAILQ_NEXT(u, lru);
			if (u->creds != NULL) {
				aws_creds_unref(u->creds);
				u->creds = NULL;
			}
			if (u->call != NULL) {
				aws_call_cancel(u->call);
				u->call = NULL;
			}
			u->failed_at = 0;
			if (TAILQ_EMPTY(&u->waits))
				awsrole_user_free(u);
			else if (c->aws_user_role_arn != NULL)
				awsrole_start(c, u);
			else
				awsrole_wake(u, AWS_CALL_CLIENT,
				    "per-user roles are off");
		}
	}
	free(ar.sig);
	ar.sig = sig;
}

int
awsrole_init(struct config *c, char **cause)
{
	awsrole_commit(c);
	return (0);
}

/* Housekeeping: forget idle users whose sessions are over. */
void
awsrole_maint(time_t now)
{
	struct awsrole_user	*u, *next;

	if (!ar.inited)
		return;
	for (u = TAILQ_FIRST(&ar.lru); u != NULL; u = next) {
		next = TAILQ_NEXT(u, lru);
		if (u->call == NULL && TAILQ_EMPTY(&u->waits) &&
		    !awsrole_usable(u->creds, 0))
			awsrole_user_free(u);
	}
}

void
awsrole_free(void)
{
	struct awsrole_user	*u;
	struct awsrole_wait	*w;

	if (!ar.inited)
		return;
	while ((u = TAILQ_FIRST(&ar.lru)) != NULL) {
		while ((w = TAILQ_FIRST(&u->waits)) != NULL) {
			TAILQ_REMOVE(&u->waits, w, entry);
			free(w);
		}
		awsrole_user_free(u);
	}
	free(ar.sig);
	ar.sig = NULL;
	ar.inited = 0;
}
