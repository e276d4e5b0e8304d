/*
 * store.c: the store's face: database.url read into a backend and its
 * settings, the calls every module makes (store.h) handed to the backend
 * in use, rows read through one set of accessors, and the watchers woken
 * when another process or daemon has written.
 */

#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <libpq-fe.h>

#include "bsp.h"
#include "store-int.h"

#define STORE_WATCHERS_MAX	8

static const struct store_backend	*be;
static struct {
	void		(*cb)(void *);
	void		*arg;
} watchers[STORE_WATCHERS_MAX];
static size_t		 nwatchers;
static struct event	 changed_ev;
static int		 changed_init;

/* sqlite://path (relative or absolute, as the seed design wrote it). */
static int
store_sqlite_path(const char *url, char **path, char **cause)
{
	const char	*p;

	*path = NULL;
	if (strncmp(url, "sqlite://", 9) != 0) {
		xasprintf(cause, "\"%s\" is not a sqlite://PATH URL", url);
		return (-1);
	}
	p = url + 9;
	if (*p == '\0' || strcmp(p, ":memory:") == 0 ||
	    strchr(p, '?') != NULL) {
		xasprintf(cause, "\"%s\" does not name a database file", url);
		return (-1);
	}
	if (strlen(p) >= PATH_MAX) {
		xasprintf(cause, "path too long");
		return (-1);
	}
	*path = xstrdup(p);
	return (0);
}

struct store_pq	 pq;

static const struct {
	const char	*name;
	size_t		 off;
} store_pq_syms[] = {
#undef PQ_FN
#define PQ_FN(f)	{ #f, offsetof(struct store_pq, p_##f) },
	PQ_FNS
#undef PQ_FN
};

/* libpq, on first use (store-int.h); cause may be NULL. */
int
store_pq_load(char **cause)
{
	void	*dl, *fn;
	size_t	 i;

	if (pq.dl != NULL)
		return (0);
	if ((dl = dlopen(STORE_LIBPQ, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		if (cause != NULL)
			xasprintf(cause, "PostgreSQL: cannot load %s: %s",
			    STORE_LIBPQ, dlerror());
		return (-1);
	}
	for (i = 0; i < nitems(store_pq_syms); i++) {
		if ((fn = dlsym(dl, store_pq_syms[i].name)) == NULL) {
			if (cause != NULL)
				xasprintf(cause, "PostgreSQL: %s has no %s",
				    STORE_LIBPQ, store_pq_syms[i].name);
			dlclose(dl);
			memset(&pq, 0, sizeof pq);
			return (-1);
		}
		memcpy((char *)&pq + store_pq_syms[i].off, &fn, sizeof fn);
	}
	pq.dl = dl;
	return (0);
}

int
store_pq_loaded(void)
{
	return (pq.dl != NULL);
}

/*
 * database.url: sqlite://PATH, postgresql://... or postgres://... (libpq's
 * URI), or libpq's key=value form. A password in it is refused: it would
 * sit in the configuration and in every log line that names the database;
 * database.password_file or PGPASSFILE hold it instead.
 */
int
store_conf_from_url(const char *url, struct store_conf *sc, char **cause)
{
	PQconninfoOption	*opts, *o;
	char			*err = NULL;

	memset(sc, 0, sizeof *sc);
	if (strncmp(url, "sqlite://", 9) == 0) {
		sc->kind = STORE_SQLITE;
		return (store_sqlite_path(url, &sc->path, cause));
	}
	if (strncmp(url, "postgresql://", 13) != 0 &&
	    strncmp(url, "postgres://", 11) != 0 &&
	    (strstr(url, "://") != NULL || strchr(url, '=') == NULL)) {
		xasprintf(cause, "\"%s\" is neither sqlite://PATH nor a "
		    "PostgreSQL URL (postgresql://user@host:port/db) or "
		    "key=value connection string", url);
		return (-1);
	}
	if (store_pq_load(cause) == -1)
		return (-1);
	if ((opts = PQconninfoParse(url, &err)) == NULL) {
		xasprintf(cause, "not a PostgreSQL connection string: %s",
		    err != NULL ? err : "out of memory");
		PQfreemem(err);
		return (-1);
	}
	for (o = opts; o->keyword != NULL; o++) {
		if (o->val != NULL && *o->val != '\0' &&
		    (strcmp(o->keyword, "password") == 0 ||
		    strcmp(o->keyword, "sslpassword") == 0)) {
			PQconninfoFree(opts);
			xasprintf(cause, "it carries a password; put it in "
			    "database.password_file (or a PGPASSFILE) instead");
			return (-1);
		}
	}
	PQconninfoFree(opts);
	sc->kind = STORE_PG;
	sc->conninfo = xstrdup(url);
	return (0);
}

void
store_conf_clear(struct store_conf *sc)
{
	free(sc->path);
	free(sc->conninfo);
	freezero_str(sc->password);
	memset(sc, 0, sizeof *sc);
}

/*
 * A connection string fit for a log line: host, port, database and user,
 * never anything else it may carry.
 */
char *
store_url_redacted(const char *url)
{
	PQconninfoOption	*opts, *o;
	const char		*host = NULL, *port = NULL, *db = NULL;
	const char		*user = NULL;
	char			*out;

	if (strncmp(url, "sqlite://", 9) == 0)
		return (xstrdup(url));
	if (store_pq_load(NULL) == -1 ||
	    (opts = PQconninfoParse(url, NULL)) == NULL)
		return (xstrdup("postgresql://(unreadable)"));
	for (o = opts; o->keyword != NULL; o++) {
		if (o->val == NULL || *o->val == '\0')
			continue;
		if (strcmp(o->keyword, "host") == 0)
			host = o->val;
		else if (strcmp(o->keyword, "port") == 0)
			port = o->val;
		else if (strcmp(o->keyword, "dbname") == 0)
			db = o->val;
		else if (strcmp(o->keyword, "user") == 0)
			user = o->val;
	}
	xasprintf(&out, "postgresql://%s%s%s%s%s/%s", user != NULL ? user : "",
	    user != NULL ? "@" : "", host != NULL ? host : "",
	    port != NULL ? ":" : "", port != NULL ? port : "",
	    db != NULL ? db : "");
	PQconninfoFree(opts);
	return (out);
}

/* database.url: which backend; for SQLite, the file's path. */
void
store_config_check(struct config *c, struct config_errors *errs)
{
	struct store_conf	 sc;
	char			*cause = NULL;

	free(c->db_path);
	c->db_path = NULL;
	if (store_conf_from_url(c->database_url, &sc, &cause) == -1) {
		config_add_error(errs, c, "database.url", "database.url: %s",
		    cause);
		free(cause);
		return;
	}
	if (sc.kind == STORE_SQLITE)
		c->db_path = xstrdup(sc.path);
	store_conf_clear(&sc);
}

/*
 * The store's settings from a loaded configuration: database.url and the
 * keys that go with it.
 */
int
store_conf_from_config(const struct config *c, struct store_conf *sc,
    char **cause)
{
	if (store_conf_from_url(c->database_url, sc, cause) == -1)
		return (-1);
	if (c->database_password != NULL)
		sc->password = xstrdup(c->database_password);
	sc->busy_timeout = c->database_busy_timeout;
	sc->pool_size = c->database_pool_size;
	sc->timeout = c->database_timeout;
	sc->migrate = c->database_migrate == 0;		/* auto */
	return (0);
}

int
store_open(const struct store_conf *sc, char **cause)
{
	be = sc->kind == STORE_PG ? &store_pg_backend : &store_sqlite_backend;
	if (be->open(sc, cause) == -1) {
		be = NULL;
		return (-1);
	}
	return (0);
}

void
store_close(void)
{
	if (be != NULL)
		be->close();
	be = NULL;
	if (changed_init && event_initialized(&changed_ev))
		event_del(&changed_ev);
	changed_init = 0;
	nwatchers = 0;
}

enum store_kind
store_kind(void)
{
	return (be == &store_pg_backend ? STORE_PG : STORE_SQLITE);
}

/* 1 when statements can run now; else 0 and why. */
int
store_ready(const char **detail)
{
	if (be == NULL) {
		*detail = "not open";
		return (0);
	}
	return (be->ready(detail));
}

/*
 * Seconds since the state loaded from the database was last known to be
 * current (PostgreSQL: its listening connection was up); 0 while it is,
 * and always with SQLite.
 */
double
store_stale_for(void)
{
	if (be == NULL || be->stale_for == NULL)
		return (0);
	return (be->stale_for());
}

int
store_schema_version(void)
{
	return (be != NULL ? be->schema_version() : -1);
}

/* The version of a backend's client library, for the start-up line. */
const char *
store_version(enum store_kind kind)
{
	return (kind == STORE_PG ? store_pg_backend.version() :
	    store_sqlite_backend.version());
}

struct store_txn *
store_begin(int flags, store_step_cb cb, void *arg)
{
	if (be == NULL) {
		cb(NULL, STORE_UNAVAILABLE, arg);
		return (NULL);
	}
	return (be->begin(flags, cb, arg));
}

/*
 * A copy of a statement's parameters, text and blobs included, in one
 * allocation: the caller's may go as soon as the call returns.
 */
static struct store_param *
store_params_dup(const struct store_param *p, size_t n)
{
	struct store_param	*c;
	uint8_t			*b;
	size_t			 i, extra = 0;

	for (i = 0; i < n; i++) {
		if (p[i].type == STORE_P_TEXT || p[i].type == STORE_P_BLOB)
			extra += p[i].len + 1;
	}
	c = xcalloc(1, (n > 0 ? n : 1) * sizeof *c + extra);
	b = (uint8_t *)(c + (n > 0 ? n : 1));
	for (i = 0; i < n; i++) {
		c[i] = p[i];
		if (p[i].type != STORE_P_TEXT && p[i].type != STORE_P_BLOB)
			continue;
		if (p[i].len > 0)
			memcpy(b, p[i].p, p[i].len);
		b[p[i].len] = '\0';
		c[i].p = b;
		b += p[i].len + 1;
	}
	return (c);
}

/* A statement under way: its callbacks, and its parameters' copy. */
struct store_call {
	store_row_cb		 row;
	store_step_cb		 done;
	void			*arg;
	struct store_param	*p;
};

static void
store_call_row(const struct store_row *r, void *arg)
{
	struct store_call	*c = arg;

	c->row(r, c->arg);
}

static void
store_call_done(struct store_txn *t, int status, void *arg)
{
	struct store_call	*c = arg;
	store_step_cb		 done = c->done;
	void			*darg = c->arg;

	free(c->p);
	free(c);
	done(t, status, darg);
}

/*
 * Run a statement in a unit; done(t, status, arg) when it is over, after
 * row(r, arg) for each row of its result. The parameters are copied.
 */
void
store_exec(struct store_txn *t, struct store_stmt *st,
    const struct store_param *p, size_t n, store_row_cb row,
    store_step_cb done, void *arg)
{
	struct store_call	*c;

	if (log_trace_on(TRACE_DB))
		log_trace(TRACE_DB, "sql: %s", st->sql_pg != NULL &&
		    store_kind() == STORE_PG ? st->sql_pg : st->sql);
	c = xcalloc(1, sizeof *c);
	c->row = row;
	c->done = done;
	c->arg = arg;
	c->p = store_params_dup(p, n);
	be->exec(t, st, c->p, n, row != NULL ? store_call_row : NULL,
	    store_call_done, c);
}

long long
store_changes(const struct store_txn *t)
{
	return (t->changes);
}

/* Wake the other daemons' watchers when this unit commits. */
void
store_notify(struct store_txn *t, const char *what)
{
	t->notify = 1;
	be->notify(t, what);
}

void
store_commit(struct store_txn *t, store_end_cb cb, void *arg)
{
	be->commit(t, cb, arg);
}

void
store_rollback(struct store_txn *t)
{
	be->rollback(t);
}

/* store_run(): one statement in a unit of its own. */
struct store_run {
	struct store_stmt		*st;
	struct store_param		*p;	/* a copy */
	size_t				 n;
	store_row_cb			 row;
	store_end_cb			 done;
	void				*arg;
	int				 status;
};

static void
store_run_ended(int status, void *arg)
{
	struct store_run	*r = arg;
	store_end_cb		 done = r->done;
	void			*darg = r->arg;

	if (r->status != STORE_OK)
		status = r->status;
	free(r->p);
	free(r);
	if (done != NULL)
		done(status, darg);
}

static void
store_run_ran(struct store_txn *t, int status, void *arg)
{
	struct store_run	*r = arg;

	if (t == NULL) {
		store_run_ended(status, r);
		return;
	}
	if (status != STORE_OK) {
		r->status = status;
		store_rollback(t);
		store_run_ended(status, r);
		return;
	}
	store_commit(t, store_run_ended, r);
}

static void
store_run_row(const struct store_row *row, void *arg)
{
	struct store_run	*r = arg;

	r->row(row, r->arg);
}

static void
store_run_begun(struct store_txn *t, int status, void *arg)
{
	struct store_run	*r = arg;

	if (t == NULL || status != STORE_OK) {
		store_run_ended(status != STORE_OK ? status : STORE_ERROR, r);
		return;
	}
	store_exec(t, r->st, r->p, r->n, r->row != NULL ? store_run_row : NULL,
	    store_run_ran, r);
}

/* One statement in a unit of its own; the parameters are copied. */
void
store_run(int flags, struct store_stmt *st, const struct store_param *p,
    size_t n, store_row_cb row, store_end_cb done, void *arg)
{
	struct store_run	*r;

	r = xcalloc(1, sizeof *r);
	r->st = st;
	r->p = store_params_dup(p, n);
	r->n = n;
	r->row = row;
	r->done = done;
	r->arg = arg;
	store_begin(flags, store_run_begun, r);
}

/* Rows. */
int
store_ncols(const struct store_row *r)
{
	return (r->ops->ncols(r));
}

int
store_null(const struct store_row *r, int i)
{
	return (r->ops->null(r, i));
}

long long
store_int(const struct store_row *r, int i)
{
	return (r->ops->integer(r, i));
}

/* The column's text, or NULL when it is NULL. */
const char *
store_text(const struct store_row *r, int i)
{
	return (r->ops->text(r, i));
}

const uint8_t *
store_blob(const struct store_row *r, int i, size_t *len)
{
	return (r->ops->blob(r, i, len));
}

char *
store_strdup(const struct store_row *r, int i)
{
	const char	*s = store_text(r, i);

	return (s != NULL ? xstrdup(s) : NULL);
}

/* Watchers. */
static void
store_changed_cb(int fd, short ev, void *arg)
{
	size_t	i;

	for (i = 0; i < nwatchers; i++)
		watchers[i].cb(watchers[i].arg);
}

/*
 * Has another writer written since the watchers last ran? If so (SQLite,
 * whose change counter is read here), run them now, before the caller
 * looks at what they reload: a key made by a command a moment ago. 1 if
 * they ran. PostgreSQL's notifications arrive on their own.
 */
int
store_catch_up(void)
{
	size_t	i;

	if (be == NULL || be->catch_up == NULL || nwatchers == 0 ||
	    !be->catch_up())
		return (0);
	for (i = 0; i < nwatchers; i++)
		watchers[i].cb(watchers[i].arg);
	return (1);
}

/* A backend saw another writer: wake the watchers on the next turn. */
void
store_changed(void)
{
	if (!changed_init || bsp_base == NULL)
		return;
	event_active(&changed_ev, EV_TIMEOUT, 1);
}

void
store_watch(void (*cb)(void *), void *arg)
{
	if (nwatchers == STORE_WATCHERS_MAX)
		fatalx("%s: too many watchers", __func__);
	watchers[nwatchers].cb = cb;
	watchers[nwatchers].arg = arg;
	nwatchers++;
	if (!changed_init && bsp_base != NULL) {
		evtimer_assign(&changed_ev, bsp_base, store_changed_cb, NULL);
		changed_init = 1;
		if (be != NULL && be->watch_start != NULL)
			be->watch_start();
	}
}

/* Outside the loop (commands): run it until the callback set *done. */
int
store_wait(volatile int *done)
{
	while (!*done) {
		if (bsp_base == NULL)
			fatalx("%s: a callback is pending and there is no "
			    "loop to run", __func__);
		if (event_base_loop(bsp_base, EVLOOP_ONCE) == -1)
			return (-1);
	}
	return (0);
}

static void
store_wait_timer_cb(int fd, short ev, void *arg)
{
	int	*expired = arg;

	*expired = 1;
}

/*
 * Outside the loop: run it until the store is ready, for at most ms
 * milliseconds; -1 with *cause (why it is not) when it is not.
 */
int
store_wait_ready(long long ms, char **cause)
{
	struct event	 ev;
	struct timeval	 tv;
	int		 expired = 0;
	const char	*detail = NULL;

	if (store_ready(&detail))
		return (0);
	if (bsp_base == NULL) {
		xasprintf(cause, "database: %s", detail);
		return (-1);
	}
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	evtimer_assign(&ev, bsp_base, store_wait_timer_cb, &expired);
	evtimer_add(&ev, &tv);
	while (!store_ready(&detail) && !expired) {
		if (event_base_loop(bsp_base, EVLOOP_ONCE) == -1)
			break;
	}
	evtimer_del(&ev);
	if (store_ready(&detail))
		return (0);
	xasprintf(cause, "database: %s", detail);
	return (-1);
}

/* Loaders. */
struct store_load_waiter {
	store_end_cb			 cb;
	void				*arg;
	struct store_load_waiter	*next;
};

static void
store_load_add(struct store_load_waiter **list, store_end_cb cb, void *arg)
{
	struct store_load_waiter	*w, **p;

	if (cb == NULL)
		return;
	w = xcalloc(1, sizeof *w);
	w->cb = cb;
	w->arg = arg;
	for (p = list; *p != NULL; p = &(*p)->next)
		;
	*p = w;
}

/* Run the loader, or once more after the run under way; cb may be NULL. */
void
store_load(struct store_load *l, store_end_cb cb, void *arg)
{
	if (l->busy) {
		l->again = 1;
		store_load_add(&l->next, cb, arg);
		return;
	}
	store_load_add(&l->now, cb, arg);
	l->busy = 1;
	l->run(l);
}

/* The run is over: tell whoever waited for it; run again if asked. */
void
store_load_done(struct store_load *l, int status)
{
	struct store_load_waiter	*w, *next;

	w = l->now;
	l->now = NULL;
	l->busy = 0;
	for (; w != NULL; w = next) {
		next = w->next;
		w->cb(status, w->arg);
		free(w);
	}
	if (l->again && !l->busy) {
		l->again = 0;
		l->now = l->next;
		l->next = NULL;
		l->busy = 1;
		l->run(l);
	}
}
