/*
 * store-sqlite.c: the store on SQLite, the embedded default.
 *
 * One connection per process, WAL mode so admin commands can write while
 * the daemon reads, a busy timeout for the moments they collide. The
 * schema is versioned with PRAGMA user_version and migrated forward on
 * open (store-schema.c); a file that is not a database, or is newer than
 * this binary, is refused.
 *
 * One connection, so one unit of work at a time: a unit asked for while
 * another is open waits in a queue and starts when that one ends.
 * Statements run as they are asked for, so every callback runs before the
 * call that asked returns. Another process (an admin command) that writes
 * is seen through PRAGMA data_version, polled every second while somebody
 * watches.
 */

#include <sys/types.h>
#include <sys/stat.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
	sqlite3			*db;
	struct store_txn	 txn;
	int			 busy;		/* txn is open */
	int			 lazy;		/* synchronous NORMAL */
	int			 starting;	/* sq_start_next() running */
	TAILQ_HEAD(, sq_wait)	 queue;
	int			 queue_init;
	struct store_stmt	*stmts;
	long long		 data_version;
	struct event		 poll_ev;
	int			 polling;
} sq;

static void	sq_start_next(void);
static void	sq_rollback_now(void);

/* mkdir -p, each created directory 0700. */
static int
sq_mkdirs(const char *dir, char **cause)
{
	char		*copy, *p;
	struct stat	 st;

	if (stat(dir, &st) == 0) {
		if (!S_ISDIR(st.st_mode)) {
			xasprintf(cause, "%s is not a directory", dir);
			return (-1);
		}
		return (0);
	}
	copy = xstrdup(dir);
	for (p = copy + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(copy, 0700) == -1 && errno != EEXIST) {
			xasprintf(cause, "cannot create %s: %s", copy,
			    strerror(errno));
			free(copy);
			return (-1);
		}
		*p = '/';
	}
	if (mkdir(copy, 0700) == -1 && errno != EEXIST) {
		xasprintf(cause, "cannot create %s: %s", copy, strerror(errno));
		free(copy);
		return (-1);
	}
	free(copy);
	return (0);
}

/* Run SQL of our own (no parameters); -1 logged. */
static int
sq_exec_sql(const char *sql)
{
	char	*err = NULL;

	if (sqlite3_exec(sq.db, sql, NULL, NULL, &err) != SQLITE_OK) {
		log_warnx("database: %s", err != NULL ? err :
		    sqlite3_errmsg(sq.db));
		sqlite3_free(err);
		return (-1);
	}
	return (0);
}

static int
sq_pragma_int(const char *sql, long long *out)
{
	sqlite3_stmt	*st;
	int		 rc;

	if (sqlite3_prepare_v2(sq.db, sql, -1, &st, NULL) != SQLITE_OK)
		return (-1);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return (rc == SQLITE_ROW ? 0 : -1);
}

static int
sq_migrate(char **cause)
{
	long long	v;
	size_t		i;
	char		sql[64];

	if (sq_pragma_int("PRAGMA user_version", &v) == -1) {
		xasprintf(cause, "%s", sqlite3_errmsg(sq.db));
		return (-1);
	}
	if (v > (long long)store_nmigrations) {
		xasprintf(cause, "the database has schema version %lld, newer "
		    "than this binary understands (%zu); use a newer "
		    BSP_NAME, v, store_nmigrations);
		return (-1);
	}
	if (v == (long long)store_nmigrations)
		return (0);
	if (sq_exec_sql("BEGIN IMMEDIATE") == -1) {
		xasprintf(cause, "cannot lock the database for migration: %s",
		    sqlite3_errmsg(sq.db));
		return (-1);
	}
	/* Someone else may have migrated while we waited for the lock. */
	if (sq_pragma_int("PRAGMA user_version", &v) == -1)
		goto fail;
	for (i = (size_t)v; i < store_nmigrations; i++) {
		log_info("database: migrating schema %zu -> %zu", i, i + 1);
		if (sq_exec_sql(store_migrations[i].sqlite) == -1)
			goto fail;
	}
	snprintf(sql, sizeof sql, "PRAGMA user_version = %zu",
	    store_nmigrations);
	if (sq_exec_sql(sql) == -1 || sq_exec_sql("COMMIT") == -1)
		goto fail;
	return (0);
fail:
	xasprintf(cause, "schema migration failed: %s", sqlite3_errmsg(sq.db));
	sq_exec_sql("ROLLBACK");
	return (-1);
}

static void
sq_trace_cb(void *arg, int code, const char *msg)
{
	log_trace(TRACE_DB, "sqlite %d: %s", code, msg);
}

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
	sq.lazy = 0;
	if (sq.db != NULL) {
		sqlite3_close_v2(sq.db);
		sq.db = NULL;
	}
}

/*
 * Open (creating if needed) the database at sc->path: its directories
 * 0700, the file private, WAL, the schema migrated. -1 with *cause (the
 * daemon exits 2).
 */
static int
sq_open(const struct store_conf *sc, char **cause)
{
	const char	*path = sc->path;
	char		*dir, *slash, sql[64];
	mode_t		 old;
	long long	 v;
	int		 rc;

	if (!sq.queue_init) {
		TAILQ_INIT(&sq.queue);
		sq.queue_init = 1;
	}
	if (sq.db != NULL)
		return (0);
	dir = xstrdup(path);
	if ((slash = strrchr(dir, '/')) != NULL && slash != dir) {
		*slash = '\0';
		if (sq_mkdirs(dir, cause) == -1) {
			free(dir);
			return (-1);
		}
	}
	free(dir);

	sqlite3_config(SQLITE_CONFIG_LOG, sq_trace_cb, NULL);
	old = umask(077);
	rc = sqlite3_open_v2(path, &sq.db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	umask(old);
	if (rc != SQLITE_OK) {
		xasprintf(cause, "cannot open database %s: %s", path,
		    sq.db != NULL ? sqlite3_errmsg(sq.db) :
		    sqlite3_errstr(rc));
		sq_close();
		return (-1);
	}
	sqlite3_extended_result_codes(sq.db, 1);
	sqlite3_busy_timeout(sq.db, (int)sc->busy_timeout);
	/* The first real read tells whether this is a database at all. */
	if (sq_pragma_int("PRAGMA user_version", &v) == -1) {
		xasprintf(cause, "%s: %s", path, sqlite3_errmsg(sq.db));
		sq_close();
		return (-1);
	}
	if (sq_exec_sql("PRAGMA journal_mode = WAL") == -1 ||
	    sq_exec_sql("PRAGMA synchronous = FULL") == -1 ||
	    sq_exec_sql("PRAGMA foreign_keys = ON") == -1 ||
	    sq_exec_sql("PRAGMA trusted_schema = OFF") == -1) {
		xasprintf(cause, "%s: %s", path, sqlite3_errmsg(sq.db));
		sq_close();
		return (-1);
	}
	snprintf(sql, sizeof sql, "PRAGMA busy_timeout = %lld",
	    sc->busy_timeout);
	sq_exec_sql(sql);
	if (sq_migrate(cause) == -1) {
		sq_close();
		return (-1);
	}
	log_debug("database: %s open, schema version %d", path,
	    (int)store_nmigrations);
	return (0);
}

static int
sq_ready(const char **detail)
{
	if (sq.db == NULL) {
		*detail = "not open";
		return (0);
	}
	return (1);
}

static int
sq_schema_version(void)
{
	long long	v;

	if (sq.db == NULL || sq_pragma_int("PRAGMA user_version", &v) == -1)
		return (-1);
	return ((int)v);
}

/*
 * A unit whose commit need not survive a power cut, only a crash (usage
 * rows): with synchronous=NORMAL a WAL commit costs no fsync (about a
 * millisecond of a stalled loop on this project's VM). Every other unit
 * commits with FULL, and the next such commit or checkpoint makes these
 * durable too.
 */
static int
sq_lazy(int on)
{
	if (on == sq.lazy)
		return (0);
	if (sq_exec_sql(on ? "PRAGMA synchronous = NORMAL" :
	    "PRAGMA synchronous = FULL") == -1)
		return (-1);
	sq.lazy = on;
	return (0);
}

/* Open a unit now: BEGIN, the callback, and nothing else. */
static void
sq_start(int flags, store_step_cb cb, void *arg)
{
	int	rc;

	memset(&sq.txn, 0, sizeof sq.txn);
	sq.txn.flags = flags;
	/* Never a durable unit without its fsync. */
	if (sq_lazy((flags & STORE_LAZY) != 0) == -1)
		rc = -1;
	else
		rc = sq_exec_sql(flags & (STORE_WRITE | STORE_LAZY) ?
		    "BEGIN IMMEDIATE" : "BEGIN");
	if (rc == -1) {
		/* FULL again, or the next unit tries before it begins. */
		(void)sq_lazy(0);
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

	if (sq.db == NULL) {
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

/*
 * A statement's text as SQLite takes it: PostgreSQL's "$N" placeholders
 * as "?N" (outside quoted text). SQLite reads "$N" as a name, and looks
 * each one up among the names before it: a multi-row INSERT of 1,152
 * parameters took 33 million instructions to prepare (a 10 ms stall of
 * the loop); "?N" is a number, and binds to N as PostgreSQL's does even
 * where the numbers are not in order. NULL if there is nothing to change.
 */
static char *
sq_sql_numbered(const char *sql)
{
	char	*out, *o, quote = 0;

	if (strchr(sql, '$') == NULL)
		return (NULL);
	o = out = xstrdup(sql);
	for (; *sql != '\0'; sql++, o++) {
		if (quote != 0 && *sql == quote)
			quote = 0;
		else if (quote == 0 && (*sql == '\'' || *sql == '"'))
			quote = *sql;
		else if (quote == 0 && *sql == '$' &&
		    sql[1] >= '0' && sql[1] <= '9') {
			*o = '?';
			continue;
		}
		*o = *sql;
	}
	return (out);
}

static void
sq_exec(struct store_txn *t, struct store_stmt *st,
    const struct store_param *p, size_t n, store_row_cb row,
    store_step_cb done, void *arg)
{
	struct store_row	 r;
	sqlite3_stmt		*s;
	char			*sql;
	int			 rc, status = STORE_OK;

	if (st->sq == NULL) {
		sql = sq_sql_numbered(st->sql);
		rc = sqlite3_prepare_v3(sq.db, sql != NULL ? sql : st->sql,
		    -1, SQLITE_PREPARE_PERSISTENT, (sqlite3_stmt **)&st->sq,
		    NULL);
		free(sql);
		if (rc != SQLITE_OK) {
			log_warnx("database: cannot prepare \"%s\": %s",
			    st->sql, sqlite3_errmsg(sq.db));
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
		    sqlite3_errmsg(sq.db));
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
			log_warnx("database: %s", sqlite3_errmsg(sq.db));
	}
	t->changes = status == STORE_OK ? sqlite3_changes64(sq.db) : 0;
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	done(t, status, arg);
}

/* SQLite's own change counter tells the other processes. */
static void
sq_notify(struct store_txn *t, const char *what)
{
}

/* The unit is over: durable again (FULL) whatever became of it. */
static void
sq_end(void)
{
	sq.busy = 0;
	(void)sq_lazy(0);
}

static void
sq_rollback_now(void)
{
	if (sq.db != NULL && !sqlite3_get_autocommit(sq.db))
		sq_exec_sql("ROLLBACK");
}

static void
sq_commit(struct store_txn *t, store_end_cb cb, void *arg)
{
	int	status = STORE_OK;

	if (sq_exec_sql("COMMIT") == -1) {
		sq_rollback_now();
		status = STORE_ERROR;
	}
	sq_end();
	if (cb != NULL)
		cb(status, arg);
	sq_start_next();
}

static void
sq_rollback(struct store_txn *t)
{
	sq_rollback_now();
	sq_end();
	sq_start_next();
}

/* Changes when another connection (an admin command) commits. */
static long long
sq_data_version(void)
{
	long long	v = 0;

	if (sq.db != NULL)
		sq_pragma_int("PRAGMA data_version", &v);
	return (v);
}

static void
sq_poll_cb(int fd, short ev, void *arg)
{
	long long	v = sq_data_version();

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
	sq.data_version = sq_data_version();
	event_assign(&sq.poll_ev, bsp_base, -1, EV_PERSIST, sq_poll_cb, NULL);
	event_add(&sq.poll_ev, &one);
	sq.polling = 1;
}

/* Another process wrote since we last looked: 1, and now we have seen it. */
static int
sq_catch_up(void)
{
	long long	v;

	if (!sq.polling || sq.db == NULL)
		return (0);
	if ((v = sq_data_version()) == sq.data_version)
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
	NULL,
};
