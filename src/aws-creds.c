/*
 * aws-creds.c: the AWS credential chain, run on the loop.
 *
 * Sources are tried in table order (awscred_sources[]; the sources are in
 * aws-creds-source.c). A source that is not configured is skipped at
 * once; one that is configured but fails adds its reason to the problem
 * text and the chain goes on, as the SDKs do. Sources that need the
 * network (STS, the container endpoint, IMDS) or a child process
 * (credential_process, aws-creds-process.c) answer through
 * awscred_source_done() on a later loop pass; only one fetch is ever in
 * flight.
 *
 * The source that produced the current credentials is asked again before
 * they expire (refresh). A failed refresh is retried with backoff and the
 * old credentials stay in use until they expire; then the whole chain runs
 * again. When the chain finds nothing it is retried with backoff.
 *
 * The state machine (awscred_enter_state):
 *   RESOLVING	walking the chain from the first source
 *   REFRESHING	asking the current source again
 *   WAIT_REFRESH	credentials in hand, timer set before they expire
 *   WAIT_RETRY	timer set after a failure
 *   IDLE		nothing to do (static credentials, aws.bearer_token)
 */

#include <sys/types.h>
#include <sys/queue.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "bsp.h"
#include "crypto.h"
#include "aws-creds.h"
#include "aws-creds-local.h"

#define AWSCRED_WHY_MAX		1024	/* collected failure reasons */
#define AWSCRED_NOOP_SECS	10	/* forced refresh gave the same keys */

enum awscred_state {
	AWSCRED_S_IDLE,
	AWSCRED_S_RESOLVING,
	AWSCRED_S_REFRESHING,
	AWSCRED_S_WAIT_REFRESH,
	AWSCRED_S_WAIT_RETRY,
};
static const char *const awscred_state_names[] = {
	"idle", "resolving", "refreshing", "wait-refresh", "wait-retry"
};

struct awscred_source {
	const char	*name;
	enum awscred_rc	(*start)(const struct awscred_settings *,
			    struct aws_creds **, char **);
};

struct awscred_waiter {
	void			(*cb)(void *, int);
	void			*arg;
	struct aws_creds	*bad;		/* the rejected ones (a ref) */
	int			 done;
	int			 ok;
	TAILQ_ENTRY(awscred_waiter) entry;
};
TAILQ_HEAD(awscred_waiters, awscred_waiter);

static const struct awscred_source awscred_sources[] = {
	{ "config", awscred_src_config },
	{ "environment", awscred_src_env },
	{ "shared files", awscred_src_profile },
	{ "web identity", awscred_src_webid },
	{ "container", awscred_src_container },
	{ "imds", awscred_src_imds },
};
#define AWSCRED_NSOURCES	((int)nitems(awscred_sources))

static struct {
	int			 initialized;
	struct awscred_settings	 set;
	enum awscred_state	 state;
	struct aws_creds	*cur;
	int			 cur_src;
	char			*problem;	/* why none, or why refresh fails */
	char			*logged;	/* last problem logged as warning */
	char			*why;		/* reasons collected on this run */
	char			*tried;		/* labels of the sources that failed */
	char			*detail;	/* short form of problem */
	int			 src;		/* source being tried */
	int			 full;		/* whole chain, not a refresh */
	int			 forced;	/* a waiter asked for this run */
	int			 reset_on_fail;	/* settings changed (reload) */
	long			 backoff;
	double			 last_attempt;
	struct aws_creds	*noop_creds;	/* forced refresh changed nothing */
	double			 noop_at;
	struct event		 timer_ev;
	struct event		 kick_ev;
	struct awscred_waiters	 waiters;
} awscred;

static void	awscred_enter_state(enum awscred_state);
static void	awscred_run(void);
static void	awscred_source_done(struct aws_creds *, const char *);
static void	awscred_refresh_start(int);

/* ------------------------------------------------------------------ */
/* Credentials compared. */

static int
awscred_str_same(const char *a, const char *b)
{
	size_t	la, lb;

	if (a == NULL || b == NULL)
		return (a == b);
	la = strlen(a);
	lb = strlen(b);
	return (la == lb && crypto_memeq(a, b, la));
}

/* Same keys (the expiration may differ). */
static int
awscred_same_keys(const struct aws_creds *a, const struct aws_creds *b)
{
	return (strcmp(a->access_key_id, b->access_key_id) == 0 &&
	    awscred_str_same(a->secret_access_key, b->secret_access_key) &&
	    awscred_str_same(a->session_token, b->session_token));
}

static int
awscred_usable(const struct aws_creds *c)
{
	return (c != NULL && (c->expiration == 0 ||
	    now_wall() < c->expiration));
}

/* ------------------------------------------------------------------ */
/* The chain. */

static void
awscred_enter_state(enum awscred_state s)
{
	if (awscred.state != s)
		log_trace(TRACE_UPSTREAM, "aws creds: %s -> %s",
		    awscred_state_names[awscred.state],
		    awscred_state_names[s]);
	awscred.state = s;
}

static void
awscred_timer_set(long secs)
{
	struct timeval	tv;

	tv.tv_sec = secs;
	tv.tv_usec = 0;
	evtimer_del(&awscred.timer_ev);
	evtimer_add(&awscred.timer_ev, &tv);
}

/* Add "label: cause" to the reasons of this run. */
static void
awscred_note(const char *cause)
{
	const char	*label;
	char		*n;

	if (cause == NULL)
		return;
	if ((label = awscred_fetch_label()) == NULL)
		label = awscred_sources[awscred.src].name;
	log_trace(TRACE_UPSTREAM, "aws creds: %s: %s", label, cause);
	if (awscred.why != NULL && strlen(awscred.why) > AWSCRED_WHY_MAX)
		return;
	xasprintf(&n, "%s%s%s", awscred.tried != NULL ? awscred.tried : "",
	    awscred.tried != NULL ? ", " : "", label);
	free(awscred.tried);
	awscred.tried = n;
	xasprintf(&n, "%s%s%s: %s", awscred.why != NULL ? awscred.why : "",
	    awscred.why != NULL ? "; " : "", label, cause);
	free(awscred.why);
	awscred.why = n;
}

/* Run done: settle every waiter, wake them on a later loop pass. */
static void
awscred_wake_waiters(void)
{
	struct awscred_waiter	*w;
	int			 any = 0;

	TAILQ_FOREACH(w, &awscred.waiters, entry) {
		if (w->done)
			continue;
		w->done = 1;
		w->ok = awscred_usable(awscred.cur) && (w->bad == NULL ||
		    !awscred_same_keys(awscred.cur, w->bad));
		any = 1;
	}
	if (any)
		event_active(&awscred.kick_ev, EV_TIMEOUT, 1);
}

static void
awscred_kick_cb(evutil_socket_t fd, short events, void *arg)
{
	struct awscred_waiter	*w;
	void			(*cb)(void *, int);
	void			*cbarg;
	int			 ok;

	for (;;) {
		TAILQ_FOREACH(w, &awscred.waiters, entry) {
			if (w->done)
				break;
		}
		if (w == NULL)
			break;
		TAILQ_REMOVE(&awscred.waiters, w, entry);
		cb = w->cb;
		cbarg = w->arg;
		ok = w->ok;
		aws_creds_unref(w->bad);
		free(w);
		cb(cbarg, ok);
	}
}

/* The full text (logs, 503 answers) and a short one (/health/ready). */
static void
awscred_set_problem(char *p, char *detail)
{
	free(awscred.problem);
	awscred.problem = p;
	free(awscred.detail);
	awscred.detail = detail;
	free(awscred.why);
	awscred.why = NULL;
	free(awscred.tried);
	awscred.tried = NULL;
}

/* Log a failure as a warning once, then quietly while it stays the same. */
static void
awscred_log_problem(long retry)
{
	if (awscred.logged != NULL &&
	    strcmp(awscred.logged, awscred.problem) == 0) {
		log_debug("%s; retrying in %ld s", awscred.problem, retry);
		return;
	}
	log_warnx("%s; retrying in %ld s", awscred.problem, retry);
	free(awscred.logged);
	awscred.logged = xstrdup(awscred.problem);
}

static long
awscred_next_backoff(void)
{
	if (awscred.backoff == 0)
		awscred.backoff = AWSCRED_BACKOFF_MIN;
	else if ((awscred.backoff *= 2) > AWSCRED_BACKOFF_MAX)
		awscred.backoff = AWSCRED_BACKOFF_MAX;
	return (awscred.backoff);
}

static void
awscred_publish(struct aws_creds *c)
{
	struct aws_creds	*old = awscred.cur;
	char			 mask[64], exp[32], *cause;
	time_t			 now = now_wall(), rem;
	long			 delay;
	int			 same;

	if (c->expiration != 0 && c->expiration <= now) {
		time_iso8601(c->expiration, exp, sizeof exp);
		aws_creds_unref(c);
		xasprintf(&cause, "the credentials had already expired (%s)",
		    exp);
		awscred_source_done(NULL, cause);
		free(cause);
		return;
	}
	same = (old != NULL && awscred_same_keys(old, c));
	if (same && old->expiration == c->expiration &&
	    strcmp(old->source, c->source) == 0)
		aws_creds_unref(c);
	else {
		awscred.cur = c;
		aws_creds_unref(old);
	}
	if (!same)
		awscred.noop_creds = NULL;
	else if (awscred.forced) {
		awscred.noop_creds = awscred.cur;
		awscred.noop_at = now_mono();
	}
	awscred.cur_src = awscred.src;
	awscred.backoff = 0;
	awscred.reset_on_fail = 0;
	awscred.forced = 0;
	awscred_set_problem(NULL, NULL);
	free(awscred.logged);
	awscred.logged = NULL;
	c = awscred.cur;
	if (c->expiration != 0)
		time_iso8601(c->expiration, exp, sizeof exp);
	else
		bsp_strlcpy(exp, "never", sizeof exp);
	if (!same)
		log_info("AWS credentials from %s: access key %s, expires %s",
		    c->source, log_mask(c->access_key_id, mask, sizeof mask),
		    exp);
	else
		log_debug("AWS credentials from %s unchanged, expire %s",
		    c->source, exp);
	awscred_wake_waiters();
	if (c->expiration == 0) {
		awscred_enter_state(AWSCRED_S_IDLE);
		return;
	}
	rem = c->expiration - now;
	delay = rem > 2 * AWSCRED_REFRESH_BEFORE ?
	    (long)(rem - AWSCRED_REFRESH_BEFORE) : (long)(rem / 2);
	if (delay < 1)
		delay = 1;
	log_trace(TRACE_UPSTREAM, "aws creds: refresh in %ld s", delay);
	awscred_enter_state(AWSCRED_S_WAIT_REFRESH);
	awscred_timer_set(delay);
}

/* The whole chain found nothing. */
static void
awscred_chain_failed(void)
{
	char	*p, *d;
	long	 retry;

	if (awscred.reset_on_fail && awscred.cur != NULL) {
		log_warnx("AWS credentials from %s dropped: the aws settings "
		    "changed", awscred.cur->source);
		aws_creds_unref(awscred.cur);
		awscred.cur = NULL;
		awscred.noop_creds = NULL;
	}
	awscred.reset_on_fail = 0;
	awscred.forced = 0;
	xasprintf(&p, "no usable AWS credentials (%s); set aws.access_key_id "
	    "and aws.secret_access_key, AWS_ACCESS_KEY_ID and "
	    "AWS_SECRET_ACCESS_KEY, or aws.profile, or run with an IAM role "
	    "(web identity, ECS/EKS container, EC2 instance profile)",
	    awscred.why != NULL ? awscred.why : "no source is configured");
	if (awscred.tried != NULL)
		xasprintf(&d, "no usable AWS credentials (failed: %s)",
		    awscred.tried);
	else
		d = xstrdup("no AWS credentials configured");
	awscred_set_problem(p, d);
	awscred_wake_waiters();
	retry = awscred_next_backoff();
	awscred_log_problem(retry);
	awscred_enter_state(AWSCRED_S_WAIT_RETRY);
	awscred_timer_set(retry);
}

/* Asking the current source again failed. */
static void
awscred_refresh_failed(void)
{
	char	*p, *d, exp[32];
	long	 retry, left;

	awscred.forced = 0;
	time_iso8601(awscred.cur->expiration, exp, sizeof exp);
	xasprintf(&p, "refreshing AWS credentials from %s failed (%s); they "
	    "expire %s", awscred.cur->source, awscred.why != NULL ?
	    awscred.why : "?", awscred.cur->expiration != 0 ? exp : "never");
	xasprintf(&d, "refreshing AWS credentials from %s fails",
	    awscred.cur->source);
	awscred_set_problem(p, d);
	awscred_wake_waiters();
	retry = awscred_next_backoff();
	if (awscred.cur->expiration != 0) {
		left = (long)(awscred.cur->expiration - now_wall());
		if (left < retry)
			retry = left < 1 ? 1 : left;
	}
	awscred_log_problem(retry);
	awscred_enter_state(AWSCRED_S_WAIT_RETRY);
	awscred_timer_set(retry);
}

/* Try sources from awscred.src on until one answers or all are done. */
static void
awscred_run(void)
{
	struct aws_creds	*c;
	char			*cause;
	enum awscred_rc		 rc;

	for (;;) {
		if (awscred.src >= AWSCRED_NSOURCES) {
			awscred_chain_failed();
			return;
		}
		c = NULL;
		cause = NULL;
		awscred_fetch_begin(awscred_source_done);
		rc = awscred_sources[awscred.src].start(&awscred.set, &c,
		    &cause);
		switch (rc) {
		case AWSCRED_PENDING:
			return;
		case AWSCRED_DONE:
			awscred_fetch_cancel();
			awscred_publish(c);
			return;
		case AWSCRED_SKIP:
			log_trace(TRACE_UPSTREAM, "aws creds: %s: not "
			    "configured", awscred_sources[awscred.src].name);
			if (!awscred.full)
				awscred_note("no longer configured");
			break;
		case AWSCRED_FAIL:
			awscred_fetch_cancel();
			awscred_note(cause);
			free(cause);
			break;
		}
		if (!awscred.full) {
			awscred_refresh_failed();
			return;
		}
		awscred.src++;
	}
}

/* An asynchronous source answered: credentials, or why not. */
static void
awscred_source_done(struct aws_creds *c, const char *cause)
{
	awscred_fetch_cancel();
	if (c != NULL) {
		awscred_publish(c);
		return;
	}
	awscred_note(cause != NULL ? cause : "failed");
	if (!awscred.full) {
		awscred_refresh_failed();
		return;
	}
	awscred.src++;
	awscred_run();
}

/* Ask the current source again, or walk the chain if there is none. */
static void
awscred_refresh_start(int forced)
{
	evtimer_del(&awscred.timer_ev);
	awscred_fetch_cancel();
	free(awscred.why);
	awscred.why = NULL;
	free(awscred.tried);
	awscred.tried = NULL;
	awscred.forced = forced;
	awscred.last_attempt = now_mono();
	if (awscred.cur != NULL && !awscred.reset_on_fail) {
		awscred.full = 0;
		awscred.src = awscred.cur_src;
		awscred_enter_state(AWSCRED_S_REFRESHING);
	} else {
		awscred.full = 1;
		awscred.src = 0;
		awscred_enter_state(AWSCRED_S_RESOLVING);
	}
	awscred_run();
}

static void
awscred_timer_cb(evutil_socket_t fd, short events, void *arg)
{
	char	exp[32];

	if (awscred.cur != NULL && !awscred_usable(awscred.cur)) {
		time_iso8601(awscred.cur->expiration, exp, sizeof exp);
		log_warnx("AWS credentials from %s expired at %s",
		    awscred.cur->source, exp);
		aws_creds_unref(awscred.cur);
		awscred.cur = NULL;
		awscred.noop_creds = NULL;
	}
	awscred_refresh_start(0);
}

static void
awscred_settings_clear(struct awscred_settings *s)
{
	free(s->access_key_id);
	freezero_str(s->secret_access_key);
	freezero_str(s->session_token);
	free(s->profile);
	free(s->region);
	memset(s, 0, sizeof *s);
}

static void
awscred_settings_from(struct config *c, struct awscred_settings *s)
{
	memset(s, 0, sizeof *s);
	if (c->aws_access_key_id != NULL)
		s->access_key_id = xstrdup(c->aws_access_key_id);
	if (c->aws_secret_access_key != NULL)
		s->secret_access_key = xstrdup(c->aws_secret_access_key);
	if (c->aws_session_token != NULL)
		s->session_token = xstrdup(c->aws_session_token);
	if (c->aws_profile != NULL && *c->aws_profile != '\0')
		s->profile = xstrdup(c->aws_profile);
	s->region = xstrdup(c->aws_region != NULL ? c->aws_region :
	    "us-east-1");
	/* KMS and Secrets Manager take SigV4 even beside a bearer token. */
	s->bearer = (c->aws_bearer_token != NULL &&
	    c->jwt_kms_key_id == NULL && c->narns == 0);
}

static int
awscred_settings_same(const struct awscred_settings *a,
    const struct awscred_settings *b)
{
	return (awscred_str_same(a->access_key_id, b->access_key_id) &&
	    awscred_str_same(a->secret_access_key, b->secret_access_key) &&
	    awscred_str_same(a->session_token, b->session_token) &&
	    awscred_str_same(a->profile, b->profile) &&
	    awscred_str_same(a->region, b->region) && a->bearer == b->bearer);
}

/* ------------------------------------------------------------------ */
/* Public interface. */

int
aws_creds_init(struct config *c, char **cause)
{
	if (awscred.initialized)
		aws_creds_free();
	memset(&awscred, 0, sizeof awscred);
	TAILQ_INIT(&awscred.waiters);
	evtimer_assign(&awscred.timer_ev, bsp_base, awscred_timer_cb, NULL);
	event_assign(&awscred.kick_ev, bsp_base, -1, 0, awscred_kick_cb,
	    NULL);
	awscred_settings_from(c, &awscred.set);
	awscred.initialized = 1;
	if (awscred.set.bearer) {
		log_debug("aws.bearer_token is set: no SigV4 credentials "
		    "needed");
		return (0);
	}
	awscred_refresh_start(0);
	return (0);
}

int
aws_creds_reload(struct config *c, char **cause)
{
	struct awscred_settings	s;

	if (!awscred.initialized)
		return (aws_creds_init(c, cause));
	awscred_settings_from(c, &s);
	if (awscred_settings_same(&awscred.set, &s)) {
		awscred_settings_clear(&s);
		/* A reload is a good moment to try again. */
		if (awscred.state == AWSCRED_S_WAIT_RETRY)
			awscred_refresh_start(0);
		return (0);
	}
	awscred_settings_clear(&awscred.set);
	awscred.set = s;
	awscred_fetch_cancel();
	evtimer_del(&awscred.timer_ev);
	awscred.backoff = 0;
	if (awscred.set.bearer) {
		aws_creds_unref(awscred.cur);
		awscred.cur = NULL;
		awscred.noop_creds = NULL;
		awscred_set_problem(NULL, NULL);
		awscred_wake_waiters();
		awscred_enter_state(AWSCRED_S_IDLE);
		return (0);
	}
	log_info("aws settings changed: resolving AWS credentials again");
	awscred.reset_on_fail = 1;
	awscred_refresh_start(0);
	return (0);
}

void
aws_creds_free(void)
{
	struct awscred_waiter	*w;

	if (!awscred.initialized)
		return;
	awscred_fetch_cancel();
	awscred_process_reap_all();
	evtimer_del(&awscred.timer_ev);
	event_del(&awscred.kick_ev);
	while ((w = TAILQ_FIRST(&awscred.waiters)) != NULL) {
		TAILQ_REMOVE(&awscred.waiters, w, entry);
		aws_creds_unref(w->bad);
		free(w);
	}
	aws_creds_unref(awscred.cur);
	awscred_settings_clear(&awscred.set);
	free(awscred.problem);
	free(awscred.detail);
	free(awscred.logged);
	free(awscred.why);
	free(awscred.tried);
	awscred_fetch_free();
	memset(&awscred, 0, sizeof awscred);
}

struct aws_creds *
aws_creds_get(void)
{
	if (!awscred.initialized)
		return (NULL);
	if (!awscred_usable(awscred.cur)) {
		/* Someone needs them now: do not sit out a long backoff. */
		if (awscred.state == AWSCRED_S_WAIT_RETRY &&
		    now_mono() - awscred.last_attempt >= AWSCRED_BACKOFF_MIN)
			awscred_timer_set(0);
		return (NULL);
	}
	awscred.cur->refcnt++;
	return (awscred.cur);
}

/* The detail is short: the reasons (paths, STS messages) go to the log. */
int
aws_creds_ready(const char **detail)
{
	static char	buf[128];

	if (!awscred.initialized) {
		*detail = "AWS credentials are not set up";
		return (0);
	}
	if (awscred.set.bearer || awscred_usable(awscred.cur))
		return (1);
	if (awscred.cur != NULL) {
		snprintf(buf, sizeof buf, "AWS credentials from %s expired",
		    awscred.cur->source);
		*detail = buf;
	} else if (awscred.detail != NULL)
		*detail = awscred.detail;
	else
		*detail = "resolving AWS credentials";
	return (0);
}

const char *
aws_creds_problem(void)
{
	static char	 buf[1536];
	char		 exp[32];

	if (!awscred.initialized)
		return ("AWS credentials are not set up");
	if (awscred.set.bearer)
		return ("aws.bearer_token is used instead of AWS credentials");
	if (awscred.cur != NULL && !awscred_usable(awscred.cur)) {
		time_iso8601(awscred.cur->expiration, exp, sizeof exp);
		snprintf(buf, sizeof buf, "AWS credentials from %s expired at "
		    "%s%s%s", awscred.cur->source, exp,
		    awscred.problem != NULL ? "; " : "",
		    awscred.problem != NULL ? awscred.problem : "");
		return (buf);
	}
	if (awscred.problem != NULL)
		return (awscred.problem);
	if (awscred.cur == NULL)
		return ("AWS credentials are being resolved");
	return (NULL);
}

void
aws_creds_expired(struct aws_creds *c, void (*cb)(void *, int), void *arg)
{
	struct awscred_waiter	*w;

	if (!awscred.initialized)
		return;		/* nothing to wait for; nobody will be called */
	w = xcalloc(1, sizeof *w);
	w->cb = cb;
	w->arg = arg;
	if ((w->bad = c) != NULL)
		c->refcnt++;
	TAILQ_INSERT_TAIL(&awscred.waiters, w, entry);
	if (awscred.set.bearer) {
		w->done = 1;
		event_active(&awscred.kick_ev, EV_TIMEOUT, 1);
		return;
	}
	/* Already replaced: retry with the new ones. */
	if (awscred_usable(awscred.cur) && (c == NULL ||
	    !awscred_same_keys(awscred.cur, c))) {
		w->done = 1;
		w->ok = 1;
		event_active(&awscred.kick_ev, EV_TIMEOUT, 1);
		return;
	}
	if (awscred.state == AWSCRED_S_RESOLVING ||
	    awscred.state == AWSCRED_S_REFRESHING)
		return;		/* joins the run in flight */
	if (awscred.cur != NULL && awscred.noop_creds == awscred.cur &&
	    now_mono() - awscred.noop_at < AWSCRED_NOOP_SECS) {
		w->done = 1;
		event_active(&awscred.kick_ev, EV_TIMEOUT, 1);
		return;
	}
	log_trace(TRACE_UPSTREAM, "aws creds: rejected upstream; refreshing");
	awscred_refresh_start(1);
}

int
aws_creds_wait(void (*cb)(void *, int), void *arg)
{
	struct awscred_waiter	*w;

	if (!awscred.initialized || awscred.set.bearer)
		return (-1);
	if (awscred_usable(awscred.cur))
		return (1);
	if (awscred.state != AWSCRED_S_RESOLVING &&
	    awscred.state != AWSCRED_S_REFRESHING) {
		/* As aws_creds_get(): do not sit out a long backoff. */
		if (awscred.state != AWSCRED_S_WAIT_RETRY ||
		    now_mono() - awscred.last_attempt < AWSCRED_BACKOFF_MIN)
			return (-1);
		awscred_timer_set(0);
	}
	w = xcalloc(1, sizeof *w);
	w->cb = cb;
	w->arg = arg;
	TAILQ_INSERT_TAIL(&awscred.waiters, w, entry);
	return (0);
}

void
aws_creds_cancel_wait(void *arg)
{
	struct awscred_waiter	*w, *next;

	if (!awscred.initialized)
		return;
	for (w = TAILQ_FIRST(&awscred.waiters); w != NULL; w = next) {
		next = TAILQ_NEXT(w, entry);
		if (w->arg != arg)
			continue;
		TAILQ_REMOVE(&awscred.waiters, w, entry);
		aws_creds_unref(w->bad);
		free(w);
	}
}
