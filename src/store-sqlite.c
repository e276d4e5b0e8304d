/*
 * store-sqlite.c: the store on SQLite, the embedded default.
 *
 * One connection (db.c opens it: WAL, migrations), so one unit of work at
 * a time: a unit asked for while another is open waits in a queue and
 * starts when that one ends. Statements run as they are asked for, so
 * every callback runs before the call that asked returns. Another process
 * (an admin command) that writes is seen through PRAGMA data_version,
 * polled every second while somebody watches.
 */

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <sqlite3.h>

#include "bsp.h"
#include "store-int.h"

struct sq_wait {
	int			 flags;
	store_step_cb		 cb;
	void			*arg;
	TAILQ_ENTRY(sq_wait)	 entry;
};

static struct {
	struct store_txn	 txn;
	int			 busy;		/* txn is open */
	int			 lazy;
	int			 starting;	/* sq_start_next() running */
	TAILQ_HEAD(, sq_wait)	 queue;
	int			 queue_init;
	struct store_stmt	*stmts;
	long long		 data_version;
	struct event		 poll_ev;
	int			 polling;
} sq;

static void	sq_start_next(void);

static int
sq_ncols(const struct store_row *r)
{
	return (sqlite3_column_count(r->a));
}

static int
sq_null(const struct store_row *r, int i)
{
	return (sqlite3_column_type(r->a, i) == SQLITE_NULL);
}

static long long
sq_integer(const struct store_row *r, int i)
{
	return (sqlite3_column_int64(r->a, i));
}

static const char *
sq_text(const struct store_row *r, int i)
{
	if (sqlite3_column_type(r->a, i) == SQLITE_NULL)
		return (NULL);
	return ((const char *)sqlite3_column_text(r->a, i));
}

static const uint8_t *
sq_blob(const struct store_row *r, int i, size_t *len)
{
	const uint8_t	*p = sqlite3_column_blob(r->a, i);

	*len = (size_t)sqlite3_column_bytes(r->a, i);
	return (p);
}

static const struct store_row_ops sq_row_ops = {
	sq_ncols, sq_null, sq_integer, sq_text, sq_blob
};

static int
sq_open(const struct store_conf *sc, char **cause)
{
	if (!sq.queue_init) {
		TAILQ_INIT(&sq.queue);
		sq.queue_init = 1;
	}
	return (db_open(sc->path, sc->busy_timeout, cause));
}

static void
sq_close(void)
{
	struct store_stmt	*s;
	struct sq_wait		*w;

	if (sq.polling)
		event_del(&sq.poll_ev);
	sq.polling = 0;
	for (s = sq.stmts; s != NULL; s = s->next) {
		sqlite3_finalize(s->sq);
		s->sq = NULL;
	}
	sq.stmts = NULL;
	if (sq.queue_init) {
		while ((w = TAILQ_FIRST(&sq.queue)) != NULL) {
			TAILQ_REMOVE(&sq.queue, w, entry);
			free(w);
		}
	}
	sq.busy = 0;
	db_close();
}

static int
sq_ready(const char **detail)
{
	if (bsp_db == NULL) {
		*detail = "not open";
		return (0);
	}
	return (1);
}

static int
sq_schema_version(void)
{
	return (db_schema_version());
}

/* Open a unit now: BEGIN, the callback, and nothing else. */
static void
sq_start(int flags, store_step_cb cb, void *arg)
{
	int	rc;

	memset(&sq.txn, 0, sizeof sq.txn);
	sq.txn.flags = flags;
	if (flags & STORE_LAZY)
		rc = db_begin_lazy();
	else if (flags & STORE_WRITE)
		rc = db_begin();
	else
		rc = db_exec("BEGIN");
	sq.lazy = (flags & STORE_LAZY) && rc == 0;
	if (rc == -1) {
		cb(NULL, STORE_ERROR, arg);
		return;
	}
	sq.busy = 1;
	cb(&sq.txn, STORE_OK, arg);
}

/* Start what waited, one at a time, without growing the stack. */
static void
sq_start_next(void)
{
	struct sq_wait	*w;

	if (sq.starting)
		return;
	sq.starting = 1;
	while (!sq.busy && (w = TAILQ_FIRST(&sq.queue)) != NULL) {
		TAILQ_REMOVE(&sq.queue, w, entry);
		sq_start(w->flags, w->cb, w->arg);
		free(w);
	}
	sq.starting = 0;
}

static struct store_txn *
sq_begin(int flags, store_step_cb cb, void *arg)
{
	struct sq_wait	*w;

	if (bsp_db == NULL) {
		cb(NULL, STORE_UNAVAILABLE, arg);
		return (NULL);
	}
	if (sq.busy || sq.starting || !TAILQ_EMPTY(&sq.queue)) {
		w = xcalloc(1, sizeof *w);
		w->flags = flags;
		w->cb = cb;
		w->arg = arg;
		TAILQ_INSERT_TAIL(&sq.queue, w, entry);
		if (!sq.busy)
			sq_start_next();
		return (NULL);
	}
	sq_start(flags, cb, arg);
	return (NULL);
}

static int
sq_bind(sqlite3_stmt *s, const struct store_param *p, size_t n)
{
	size_t	i;
	int	rc = SQLITE_OK;

	for (i = 0; i < n && rc == SQLITE_OK; i++) {
		switch (p[i].type) {
		case STORE_P_NULL:
			rc = sqlite3_bind_null(s, (int)i + 1);
			break;
		case STORE_P_INT:
			rc = sqlite3_bind_int64(s, (int)i + 1, p[i].i);
			break;
		case STORE_P_TEXT:
			rc = sqlite3_bind_text(s, (int)i + 1, p[i].p,
			    (int)p[i].len, SQLITE_STATIC);
			break;
		case STORE_P_BLOB:
			rc = sqlite3_bind_blob(s, (int)i + 1, p[i].p,
			    (int)p[i].len, SQLITE_STATIC);
			break;
		}
	}
	return (rc);
}

static void
sq_exec(struct store_txn *t, struct store_stmt *st,
    const struct store_param *p, size_t n, store_row_cb row,
    store_step_cb done, void *arg)
{
	struct store_row	 r;
	sqlite3_stmt		*s;
	int			 rc, status = STORE_OK;

	if (st->sq == NULL) {
		if (sqlite3_prepare_v3(bsp_db, st->sql, -1,
		    SQLITE_PREPARE_PERSISTENT, (sqlite3_stmt **)&st->sq,
		    NULL) != SQLITE_OK) {
			log_warnx("database: cannot prepare \"%s\": %s",
			    st->sql, sqlite3_errmsg(bsp_db));
			st->sq = NULL;
			done(t, STORE_ERROR, arg);
			return;
		}
		st->next = sq.stmts;
		sq.stmts = st;
	}
	s = st->sq;
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	if (sq_bind(s, p, n) != SQLITE_OK) {
		log_warnx("database: cannot bind \"%s\": %s", st->sql,
		    sqlite3_errmsg(bsp_db));
		done(t, STORE_ERROR, arg);
		return;
	}
	r.ops = &sq_row_ops;
	r.a = s;
	r.i = 0;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (row != NULL)
			row(&r, arg);
	}
	if (rc != SQLITE_DONE) {
		status = (rc & 0xff) == SQLITE_CONSTRAINT &&
		    (rc == SQLITE_CONSTRAINT_UNIQUE ||
		    rc == SQLITE_CONSTRAINT_PRIMARYKEY) ? STORE_CONFLICT :
		    STORE_ERROR;
		if (status == STORE_ERROR)
			log_warnx("database: %s", sqlite3_errmsg(bsp_db));
	}
	t->changes = status == STORE_OK ? sqlite3_changes64(bsp_db) : 0;
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	done(t, status, arg);
}

/* SQLite's own change counter tells the other processes. */
static void
sq_notify(struct store_txn *t, const char *what)
{
}

static void
sq_end(void)
{
	sq.busy = 0;
	if (sq.lazy)
		(void)db_end_lazy();
	sq.lazy = 0;
}

static void
sq_commit(struct store_txn *t, store_end_cb cb, void *arg)
{
	int	status = db_commit() == 0 ? STORE_OK : STORE_ERROR;

	sq_end();
	if (cb != NULL)
		cb(status, arg);
	sq_start_next();
}

static void
sq_rollback(struct store_txn *t)
{
	db_rollback();
	sq_end();
	sq_start_next();
}

static void
sq_poll_cb(int fd, short ev, void *arg)
{
	long long	v = db_data_version();

	if (v != sq.data_version) {
		sq.data_version = v;
		store_changed();
	}
}

static void
sq_watch_start(void)
{
	struct timeval	one = { 1, 0 };

	if (sq.polling || bsp_base == NULL)
		return;
	sq.data_version = db_data_version();
	event_assign(&sq.poll_ev, bsp_base, -1, EV_PERSIST, sq_poll_cb, NULL);
	event_add(&sq.poll_ev, &one);
	sq.polling = 1;
}

/* Another process wrote since we last looked: 1, and now we have seen it. */
static int
sq_catch_up(void)
{
	long long	v;

	if (!sq.polling || bsp_db == NULL)
		return (0);
	if ((v = db_data_version()) == sq.data_version)
		return (0);
	sq.data_version = v;
	return (1);
}

static const char *
sq_version(void)
{
	return (sqlite3_libversion());
}

const struct store_backend store_sqlite_backend = {
	"sqlite",
	sq_open,
	sq_close,
	sq_ready,
	sq_schema_version,
	sq_begin,
	sq_exec,
	sq_notify,
	sq_commit,
	sq_rollback,
	sq_watch_start,
	sq_catch_up,
	sq_version,
};
