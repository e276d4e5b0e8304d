/*
 * db.c: the SQLite database.
 *
 * One connection per process, WAL mode so admin commands can write while the
 * daemon reads, a busy timeout for the moments they collide. The schema is
 * versioned with PRAGMA user_version and migrated forward on open; a file
 * that is not a database, or is newer than this binary, is refused.
 * Statements are prepared once (struct db_stmt lives with the code that uses
 * it) and reset on each use.
 */

#include <sys/types.h>
#include <sys/stat.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "bsp.h"
#include "store-int.h"

struct sqlite3		*bsp_db;
static struct db_stmt	*db_stmts;
static int		 db_lazy;	/* synchronous NORMAL: db_begin_lazy() */

_Static_assert(DB_SCHEMA_VERSION == 3, "DB_SCHEMA_VERSION is the number "
    "of migrations in store-schema.c");

/* sqlite://path (relative or absolute, as the seed design wrote it). */
int
db_path_from_url(const char *url, char **path, char **cause)
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

/* database.url: the file it names (the path the daemon and commands open). */
void
db_config_check(struct config *c, struct config_errors *errs)
{
	char	*cause = NULL;

	free(c->db_path);
	c->db_path = NULL;
	if (db_path_from_url(c->database_url, &c->db_path, &cause) == -1) {
		config_add_error(errs, c, "database.url", "database.url: %s",
		    cause);
		free(cause);
	}
}

/* mkdir -p, each created directory 0700. */
static int
db_mkdirs(const char *dir, char **cause)
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

int
db_exec(const char *sql)
{
	char	*err = NULL;

	if (sqlite3_exec(bsp_db, sql, NULL, NULL, &err) != SQLITE_OK) {
		log_warnx("database: %s", err != NULL ? err :
		    sqlite3_errmsg(bsp_db));
		sqlite3_free(err);
		return (-1);
	}
	return (0);
}

static int
db_pragma_int(const char *sql, long long *out)
{
	sqlite3_stmt	*st;
	int		 rc;

	if (sqlite3_prepare_v2(bsp_db, sql, -1, &st, NULL) != SQLITE_OK)
		return (-1);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return (rc == SQLITE_ROW ? 0 : -1);
}

int
db_schema_version(void)
{
	long long	v;

	if (db_pragma_int("PRAGMA user_version", &v) == -1)
		return (-1);
	return ((int)v);
}

static int
db_migrate(char **cause)
{
	long long	v;
	size_t		i;
	char		sql[64];

	if (db_pragma_int("PRAGMA user_version", &v) == -1) {
		xasprintf(cause, "%s", sqlite3_errmsg(bsp_db));
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
	if (db_exec("BEGIN IMMEDIATE") == -1) {
		xasprintf(cause, "cannot lock the database for migration: %s",
		    sqlite3_errmsg(bsp_db));
		return (-1);
	}
	/* Someone else may have migrated while we waited for the lock. */
	if (db_pragma_int("PRAGMA user_version", &v) == -1)
		goto fail;
	for (i = (size_t)v; i < store_nmigrations; i++) {
		log_info("database: migrating schema %zu -> %zu", i, i + 1);
		if (db_exec(store_migrations[i].sqlite) == -1)
			goto fail;
	}
	snprintf(sql, sizeof sql, "PRAGMA user_version = %zu",
	    store_nmigrations);
	if (db_exec(sql) == -1 || db_exec("COMMIT") == -1)
		goto fail;
	return (0);
fail:
	xasprintf(cause, "schema migration failed: %s", sqlite3_errmsg(bsp_db));
	db_exec("ROLLBACK");
	return (-1);
}

static void
db_trace_cb(void *arg, int code, const char *msg)
{
	log_trace(TRACE_DB, "sqlite %d: %s", code, msg);
}

/*
 * Open (creating if needed) the database at path. On failure returns -1 with
 * a cause; the caller exits 2.
 */
int
db_open(const char *path, long long busy_ms, char **cause)
{
	char		*dir, *slash;
	mode_t		 old;
	int		 rc;
	long long	 v;
	char		 sql[64];

	if (bsp_db != NULL)
		return (0);
	dir = xstrdup(path);
	if ((slash = strrchr(dir, '/')) != NULL && slash != dir) {
		*slash = '\0';
		if (db_mkdirs(dir, cause) == -1) {
			free(dir);
			return (-1);
		}
	}
	free(dir);

	sqlite3_config(SQLITE_CONFIG_LOG, db_trace_cb, NULL);
	old = umask(077);
	rc = sqlite3_open_v2(path, &bsp_db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	umask(old);
	if (rc != SQLITE_OK) {
		xasprintf(cause, "cannot open database %s: %s", path,
		    bsp_db != NULL ? sqlite3_errmsg(bsp_db) :
		    sqlite3_errstr(rc));
		db_close();
		return (-1);
	}
	sqlite3_extended_result_codes(bsp_db, 1);
	sqlite3_busy_timeout(bsp_db, (int)busy_ms);
	/* The first real read tells whether this is a database at all. */
	if (db_pragma_int("PRAGMA user_version", &v) == -1) {
		xasprintf(cause, "%s: %s", path, sqlite3_errmsg(bsp_db));
		db_close();
		return (-1);
	}
	if (db_exec("PRAGMA journal_mode = WAL") == -1 ||
	    db_exec("PRAGMA synchronous = FULL") == -1 ||
	    db_exec("PRAGMA foreign_keys = ON") == -1 ||
	    db_exec("PRAGMA trusted_schema = OFF") == -1) {
		xasprintf(cause, "%s: %s", path, sqlite3_errmsg(bsp_db));
		db_close();
		return (-1);
	}
	snprintf(sql, sizeof sql, "PRAGMA busy_timeout = %lld", busy_ms);
	db_exec(sql);
	if (db_migrate(cause) == -1) {
		db_close();
		return (-1);
	}
	log_debug("database: %s open, schema version %d", path,
	    db_schema_version());
	return (0);
}

void
db_close(void)
{
	struct db_stmt	*s;

	for (s = db_stmts; s != NULL; s = s->next) {
		sqlite3_finalize(s->stmt);
		s->stmt = NULL;
	}
	db_stmts = NULL;
	if (bsp_db != NULL) {
		sqlite3_close_v2(bsp_db);
		bsp_db = NULL;
	}
}

/*
 * Prepare a statement once and hand it back reset for each use. The caller
 * binds, steps and is done; the next db_prepare() resets it.
 */
struct sqlite3_stmt *
db_prepare(struct db_stmt *s)
{
	if (s->stmt == NULL) {
		if (sqlite3_prepare_v3(bsp_db, s->sql, -1,
		    SQLITE_PREPARE_PERSISTENT, &s->stmt, NULL) != SQLITE_OK)
			fatalx("database: cannot prepare \"%s\": %s", s->sql,
			    sqlite3_errmsg(bsp_db));
		s->next = db_stmts;
		db_stmts = s;
	}
	sqlite3_reset(s->stmt);
	sqlite3_clear_bindings(s->stmt);
	if (log_trace_on(TRACE_DB))
		log_trace(TRACE_DB, "sql: %s", s->sql);
	return (s->stmt);
}

int
db_begin(void)
{
	/* Never a durable transaction without its fsync. */
	if (db_lazy && db_end_lazy() == -1)
		return (-1);
	return (db_exec("BEGIN IMMEDIATE"));
}

/*
 * A transaction whose commit need not survive a power cut, only a crash:
 * with synchronous=NORMAL a WAL commit costs no fsync (about a millisecond
 * of a stalled loop on this project's VM). Everything else commits with
 * FULL, and the next such commit or checkpoint makes these durable too.
 * db_end_lazy() after its commit or rollback, whatever happened.
 */
int
db_begin_lazy(void)
{
	if (db_lazy == 0 && db_exec("PRAGMA synchronous = NORMAL") == -1)
		return (-1);
	db_lazy = 1;
	if (db_exec("BEGIN IMMEDIATE") == -1) {
		(void)db_end_lazy();
		return (-1);
	}
	return (0);
}

/* Back to FULL; if that fails, db_begin() tries again before it begins. */
int
db_end_lazy(void)
{
	if (!db_lazy)
		return (0);
	if (db_exec("PRAGMA synchronous = FULL") == -1)
		return (-1);
	db_lazy = 0;
	return (0);
}

int
db_commit(void)
{
	if (db_exec("COMMIT") == -1) {
		db_rollback();
		return (-1);
	}
	return (0);
}

void
db_rollback(void)
{
	if (bsp_db != NULL && !sqlite3_get_autocommit(bsp_db))
		db_exec("ROLLBACK");
}

/* Changes when another connection (an admin command) commits. */
long long
db_data_version(void)
{
	long long	v = 0;

	db_pragma_int("PRAGMA data_version", &v);
	return (v);
}

const char *
db_errmsg(void)
{
	return (bsp_db != NULL ? sqlite3_errmsg(bsp_db) : "not open");
}

/* A text column as an allocated string, or NULL for SQL NULL. */
char *
db_col_strdup(struct sqlite3_stmt *st, int i)
{
	const unsigned char	*t = sqlite3_column_text(st, i);

	return (t != NULL ? xstrdup((const char *)t) : NULL);
}

/* Is the database usable right now? For /health/ready. */
int
db_ok(void)
{
	long long	v;

	return (bsp_db != NULL && db_pragma_int("PRAGMA user_version", &v) == 0
	    && v == (long long)store_nmigrations);
}
