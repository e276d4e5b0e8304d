/*
 * test-store.c: the storage layer's contract, the same for both backends:
 * units of work commit or roll back whole, parameters of every type come
 * back as they went in (a blob with NUL bytes, NULL, large integers), a
 * taken unique key is STORE_CONFLICT, a unit asked for while others run
 * waits its turn, a write by another connection wakes the watchers, the
 * schema is this binary's; with SQLite, the daemon's checkpointer keeps
 * the log short.
 *
 * Usage: test-store [URL]; without a URL, a SQLite file in a temporary
 * directory. tests/unit/test-store-pg.sh runs it against a PostgreSQL
 * server it starts.
 */

#include <sys/types.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "bsp.h"
#include "store.h"
#include "tap.h"

static struct store_stmt st_create = STORE_STMT2(
    "CREATE TABLE IF NOT EXISTS t_contract (k TEXT PRIMARY KEY, n INTEGER, "
    "b BLOB, s TEXT)",
    "CREATE TABLE IF NOT EXISTS t_contract (k TEXT PRIMARY KEY, n BIGINT, "
    "b BYTEA, s TEXT)");
static struct store_stmt st_clear = STORE_STMT("DELETE FROM t_contract");
static struct store_stmt st_insert = STORE_STMT(
    "INSERT INTO t_contract (k, n, b, s) VALUES ($1, $2, $3, $4)");
static struct store_stmt st_get = STORE_STMT(
    "SELECT k, n, b, s FROM t_contract WHERE k = $1");
static struct store_stmt st_count = STORE_STMT(
    "SELECT count(*) FROM t_contract");
static struct store_stmt st_bump = STORE_STMT(
    "UPDATE t_contract SET n = n + 1 WHERE k = $1 AND n < $2");
static struct store_stmt st_upsert = STORE_STMT(
    "INSERT INTO t_contract (k, n) VALUES ($1, $2) ON CONFLICT (k) DO "
    "UPDATE SET n = t_contract.n + $2 RETURNING n");
/* Placeholders out of order, and "$1" inside quoted text, which is text. */
static struct store_stmt st_order = STORE_STMT2(
    "SELECT $2 - $1 + length('$1')",
    "SELECT $2::bigint - $1::bigint + length('$1')");

/* One unit of work, its statements and what came back. */
struct unit {
	volatile int		 done;
	int			 status;
	int			 step_status;
	struct store_txn	*txn;
	long long		 changes;
	/* the row read */
	int			 rows;
	char			*k;
	long long		 n;
	uint8_t			 b[64];
	size_t			 blen;
	int			 b_null;
	char			*s;
};

static void
unit_clear(struct unit *u)
{
	free(u->k);
	free(u->s);
	memset(u, 0, sizeof *u);
}

static void
on_row(const struct store_row *r, void *arg)
{
	struct unit	*u = arg;
	const uint8_t	*b;
	size_t		 len;

	u->rows++;
	if (store_ncols(r) == 1) {
		u->n = store_int(r, 0);
		return;
	}
	free(u->k);
	free(u->s);
	u->k = store_strdup(r, 0);
	u->n = store_int(r, 1);
	u->b_null = store_null(r, 2);
	b = store_blob(r, 2, &len);
	u->blen = len < sizeof u->b ? len : sizeof u->b;
	if (b != NULL)
		memcpy(u->b, b, u->blen);
	u->s = store_strdup(r, 3);
}

static void
on_end(int status, void *arg)
{
	struct unit	*u = arg;

	u->status = status;
	u->done = 1;
}

/* A single statement in a unit of its own, waited for. */
static int
run(struct store_stmt *st, const struct store_param *p, size_t n,
    struct unit *u)
{
	u->done = 0;
	u->rows = 0;
	store_run(STORE_WRITE, st, p, n, on_row, on_end, u);
	store_wait(&u->done);
	return (u->status);
}

static void
on_begun(struct store_txn *t, int status, void *arg)
{
	struct unit	*u = arg;

	u->txn = t;
	u->step_status = status;
	u->done = 1;
}

static void
on_step(struct store_txn *t, int status, void *arg)
{
	struct unit	*u = arg;

	u->step_status = status;
	u->changes = t != NULL ? store_changes(t) : 0;
	u->done = 1;
}

static int
begin(struct unit *u, int flags)
{
	u->done = 0;
	store_begin(flags, on_begun, u);
	store_wait(&u->done);
	return (u->step_status);
}

static int
exec(struct unit *u, struct store_stmt *st, const struct store_param *p,
    size_t n)
{
	u->done = 0;
	u->rows = 0;
	store_exec(u->txn, st, p, n, on_row, on_step, u);
	store_wait(&u->done);
	return (u->step_status);
}

static int
commit(struct unit *u)
{
	u->done = 0;
	store_commit(u->txn, on_end, u);
	u->txn = NULL;
	store_wait(&u->done);
	return (u->status);
}

static void
test_types(void)
{
	static const uint8_t	 blob[] = { 0, 1, 2, 0xff, 0, 0x80, 'x' };
	struct store_param	 p[] = {
		SP_TEXT("one"), SP_INT(9007199254740993LL),
		SP_BLOB(blob, sizeof blob), SP_TEXT("caf\xc3\xa9 'q' \"d\""),
	};
	struct store_param	 p2[] = { SP_TEXT("two"), SP_INT(-5), SP_NULL,
				    SP_NULL };
	struct store_param	 k1[] = { SP_TEXT("one") };
	struct store_param	 k2[] = { SP_TEXT("two") };
	struct unit		 u;

	memset(&u, 0, sizeof u);
	is_int(run(&st_insert, p, nitems(p), &u), STORE_OK, "insert a row");
	is_int(run(&st_get, k1, 1, &u), STORE_OK, "read it back");
	ok(u.rows == 1 && u.k != NULL && strcmp(u.k, "one") == 0,
	    "one row, its key");
	ok(u.n == 9007199254740993LL, "a 64-bit integer intact (%lld)", u.n);
	ok(!u.b_null && u.blen == sizeof blob && memcmp(u.b, blob,
	    sizeof blob) == 0, "a blob with NUL and high bytes intact");
	ok(u.s != NULL && strcmp(u.s, "caf\xc3\xa9 'q' \"d\"") == 0,
	    "text with quotes and UTF-8 intact, bound not spliced");
	is_int(run(&st_insert, p2, nitems(p2), &u), STORE_OK, "NULLs");
	is_int(run(&st_get, k2, 1, &u), STORE_OK, "read");
	ok(u.rows == 1 && u.n == -5 && u.b_null && u.blen == 0 && u.s == NULL,
	    "NULL blob and text read as NULL");
	is_int(run(&st_get, (struct store_param[]){ SP_TEXT("none") }, 1, &u),
	    STORE_OK, "no such row");
	is_int(u.rows, 0, "no rows");
	is_int(run(&st_insert, p, nitems(p), &u), STORE_CONFLICT,
	    "a taken primary key is STORE_CONFLICT");
	is_int(run(&st_order, (struct store_param[]){ SP_INT(10), SP_INT(3) },
	    2, &u), STORE_OK, "placeholders out of order");
	ok(u.rows == 1 && u.n == -5, "$N is the N-th parameter wherever it "
	    "stands, and '$1' in quotes is text (%lld)", u.n);
	unit_clear(&u);
}

static void
test_units(void)
{
	struct unit		 u, v;
	struct store_param	 p[] = { SP_TEXT("three"), SP_INT(1), SP_NULL,
				    SP_NULL };
	struct store_param	 k[] = { SP_TEXT("three"), SP_INT(3) };
	struct store_param	 up[] = { SP_TEXT("four"), SP_INT(5) };

	memset(&u, 0, sizeof u);
	memset(&v, 0, sizeof v);

	/* Rolled back: nothing stays. */
	is_int(begin(&u, STORE_WRITE), STORE_OK, "begin");
	is_int(exec(&u, &st_insert, p, nitems(p)), STORE_OK, "insert in it");
	is_int(u.changes, 1, "one row changed");
	store_rollback(u.txn);
	u.txn = NULL;
	is_int(run(&st_count, NULL, 0, &v), STORE_OK, "count");
	is_int(v.n, 2, "the rolled-back row is not there");

	/* Committed: it stays; a conditional update claims once. */
	is_int(begin(&u, STORE_WRITE), STORE_OK, "begin again");
	is_int(exec(&u, &st_insert, p, nitems(p)), STORE_OK, "insert");
	is_int(exec(&u, &st_bump, k, nitems(k)), STORE_OK, "bump once");
	is_int(u.changes, 1, "one row claimed");
	is_int(commit(&u), STORE_OK, "commit");
	is_int(run(&st_get, k, 1, &v), STORE_OK, "read");
	is_int(v.n, 2, "committed with the bump");
	k[1].i = 2;
	is_int(run(&st_bump, k, nitems(k), &v), STORE_OK, "a claim that does "
	    "not hold");
	is_int(run(&st_get, k, 1, &v), STORE_OK, "read");
	is_int(v.n, 2, "nothing changed");

	/* A failed statement in a unit: the caller rolls back. */
	is_int(begin(&u, STORE_WRITE), STORE_OK, "begin");
	is_int(exec(&u, &st_insert, p, nitems(p)), STORE_CONFLICT,
	    "conflict inside a unit");
	store_rollback(u.txn);
	u.txn = NULL;

	/* Upsert with RETURNING, in both dialects. */
	is_int(run(&st_upsert, up, nitems(up), &v), STORE_OK, "upsert new");
	is_int(v.n, 5, "returns the value");
	is_int(run(&st_upsert, up, nitems(up), &v), STORE_OK, "upsert again");
	is_int(v.n, 10, "returns the sum");
	unit_clear(&u);
	unit_clear(&v);
}

/* Units asked for at once run one after the other, all of them. */
struct many {
	int		 n;
	int		 ok;
	volatile int	 done;
	struct store_param p[4];
	char		 key[16];
};

static void
many_end(int status, void *arg)
{
	struct many	*m = arg;

	if (status == STORE_OK)
		m->ok++;
	if (--m->n == 0)
		m->done = 1;
}

static void
test_queue(void)
{
	struct many	 m[20];
	struct unit	 v;
	int		 i, oks = 0;
	volatile int	 all = 0;

	memset(&v, 0, sizeof v);
	for (i = 0; i < 20; i++) {
		memset(&m[i], 0, sizeof m[i]);
		m[i].n = 1;
		snprintf(m[i].key, sizeof m[i].key, "q%02d", i);
		m[i].p[0] = (struct store_param)SP_TEXT(m[i].key);
		m[i].p[1] = (struct store_param)SP_INT(i);
		m[i].p[2] = (struct store_param)SP_NULL;
		m[i].p[3] = (struct store_param)SP_NULL;
		store_run(STORE_WRITE, &st_insert, m[i].p, 4, NULL, many_end,
		    &m[i]);
	}
	for (i = 0; i < 20; i++)
		store_wait(&m[i].done);
	for (i = 0; i < 20; i++)
		oks += m[i].ok;
	is_int(oks, 20, "20 units asked for at once all committed");
	is_int(run(&st_count, NULL, 0, &v), STORE_OK, "count");
	is_int(v.n, 24, "all 20 rows are there");
	(void)all;
	unit_clear(&v);
}

/* Another connection writes; the watchers wake. */
static volatile int	woken;

static void
watcher(void *arg)
{
	woken++;
}

static void
test_watch(const char *url)
{
	struct timeval	 tv = { 0, 100000 };
	int		 i;

	store_watch(watcher, NULL);
	woken = 0;
	if (store_kind() == STORE_SQLITE) {
		sqlite3	*db;

		ok(sqlite3_open(url + 9, &db) == SQLITE_OK &&
		    sqlite3_exec(db, "INSERT INTO t_contract (k) VALUES "
		    "('other')", NULL, NULL, NULL) == SQLITE_OK,
		    "another process writes");
		sqlite3_close(db);
	} else {
		const char	*kw[] = { "dbname", "password", NULL };
		const char	*val[] = { url, getenv("BSP_TEST_PG_PASSWORD"),
				    NULL };
		PGconn		*db = PQconnectdbParams(kw, val, 1);
		PGresult	*res;

		res = PQexec(db, "INSERT INTO t_contract (k) VALUES ('other'); "
		    "UPDATE bsp_meta SET value = value + 1 WHERE key = "
		    "'changes'; NOTIFY bsp_changes");
		ok(PQresultStatus(res) == PGRES_COMMAND_OK,
		    "another daemon writes and notifies");
		PQclear(res);
		PQfinish(db);
	}
	for (i = 0; i < 60 && woken == 0; i++) {
		event_base_loopexit(bsp_base, &tv);
		event_base_dispatch(bsp_base);
	}
	ok(woken > 0, "the watcher woke within %d ms", i * 100);
}

/* The checkpointer's pid (a child named bsp-checkpoint), or -1. */
static pid_t
checkpointer(void)
{
	char	 path[64], line[256], comm[32];
	FILE	*f;
	long	 pid, found = -1;
	char	*p, *end;

	snprintf(path, sizeof path, "/proc/%ld/task/%ld/children",
	    (long)getpid(), (long)getpid());
	if ((f = fopen(path, "r")) == NULL)
		return (-1);
	if (fgets(line, sizeof line, f) == NULL)
		line[0] = '\0';
	fclose(f);
	for (p = line; (pid = strtol(p, &end, 10)) > 0; p = end) {
		snprintf(path, sizeof path, "/proc/%ld/comm", pid);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		if (fgets(comm, sizeof comm, f) != NULL &&
		    strcmp(comm, "bsp-checkpoint\n") == 0)
			found = pid;
		fclose(f);
	}
	return ((pid_t)found);
}

/* Write about mb megabytes in units of 40 kB, back to back. */
static int
write_mb(int mb, int from)
{
	static uint8_t		 blob[40000];
	struct store_param	 p[4];
	struct unit		 u;
	char			 k[32];
	int			 i, n = mb * 25, bad = 0;

	memset(&u, 0, sizeof u);
	for (i = 0; i < n; i++) {
		snprintf(k, sizeof k, "wal-%d", from + i);
		blob[0] = (uint8_t)i;
		p[0] = (struct store_param)SP_TEXT(k);
		p[1] = (struct store_param)SP_INT(i);
		p[2] = (struct store_param)SP_BLOB(blob, sizeof blob);
		p[3] = (struct store_param)SP_NULL;
		u.done = 0;
		store_run(STORE_WRITE | STORE_LAZY, &st_insert, p, nitems(p),
		    NULL, on_end, &u);
		store_wait(&u.done);
		if (u.status != STORE_OK)
			bad++;
	}
	return (bad);
}

static off_t
file_size(const char *path)
{
	struct stat	st;

	return (stat(path, &st) == 0 ? st.st_size : -1);
}

/*
 * SQLite with the daemon's checkpointer: the log stays near SQLite's own
 * threshold (1000 pages, 4 MB) however fast the writes come, and if the
 * checkpointer dies SQLite's own checkpoints take over.
 */
static void
test_checkpointer(struct store_conf *sc, const char *dir)
{
	char		*cause = NULL, wal[512];
	pid_t		 pid;
	int		 status, i;
	struct timeval	 tv = { 0, 50000 };

	snprintf(wal, sizeof wal, "%s/store.db-wal", dir);
	store_close();
	is_int((int)checkpointer(), -1, "no checkpointer unless asked for");
	sc->checkpointer = 1;
	ok(store_open(sc, &cause) == 0, "open with a checkpointer: %s",
	    cause != NULL ? cause : "ok");
	/* Forked at the open; named as soon as it runs (a busy machine). */
	for (i = 0; i < 500 && (pid = checkpointer()) == -1; i++)
		usleep(10000);
	ok(pid > 0, "a bsp-checkpoint child");
	is_int(write_mb(16, 0), 0, "16 MB written in 400 units");
	ok(file_size(wal) < 6 * 1024 * 1024, "the log stayed under 6 MB "
	    "(%lld bytes)", (long long)file_size(wal));

	/* Killed: reaped, and SQLite checkpoints on its own from then on. */
	if (pid > 0)
		kill(pid, SIGKILL);
	for (i = 0; i < 100 && checkpointer() != -1; i++) {
		event_base_loopexit(bsp_base, &tv);
		event_base_dispatch(bsp_base);
	}
	is_int((int)checkpointer(), -1, "the dead checkpointer was reaped");
	ok(waitpid(-1, &status, WNOHANG) == -1 && errno == ECHILD,
	    "no child left");
	/* The log file keeps its size: without checkpoints, 20 MB. */
	is_int(write_mb(16, 1000), 0, "16 MB more");
	ok(file_size(wal) < 6 * 1024 * 1024, "the log stayed under 6 MB "
	    "without it (%lld bytes)", (long long)file_size(wal));
	store_close();
	ok(file_size(wal) == -1, "closed: the log removed");
	sc->checkpointer = 0;
	ok(store_open(sc, &cause) == 0, "open again: %s", cause != NULL ?
	    cause : "ok");
}

int
main(int argc, char **argv)
{
	static char		 dir[] = "/tmp/bsp-test-store.XXXXXX";
	struct store_conf	 sc;
	struct unit		 u;
	char			*url, *cause = NULL;
	const char		*detail;
	struct timeval		 tv = { 0, 50000 };
	int			 i;

	log_init("test-store");
	if ((bsp_base = event_base_new()) == NULL)
		fatalx("event_base_new");
	/* Names resolved on the loop, as in the daemon. */
	if ((bsp_dns = evdns_base_new(bsp_base,
	    EVDNS_BASE_INITIALIZE_NAMESERVERS)) == NULL)
		fatalx("evdns_base_new");
	if (argc > 1)
		url = xstrdup(argv[1]);
	else {
		if (mkdtemp(dir) == NULL)
			fatal("mkdtemp");
		xasprintf(&url, "sqlite://%s/store.db", dir);
	}
	ok(store_conf_from_url(url, &sc, &cause) == 0, "read %s",
	    strncmp(url, "sqlite", 6) == 0 ? "a sqlite:// URL" :
	    "a PostgreSQL URL");
	if (getenv("BSP_TEST_PG_PASSWORD") != NULL)
		sc.password = xstrdup(getenv("BSP_TEST_PG_PASSWORD"));
	sc.busy_timeout = 1000;
	sc.pool_size = 3;
	sc.timeout = 10;
	sc.migrate = 1;
	ok(store_open(&sc, &cause) == 0, "open: %s", cause != NULL ? cause :
	    "ok");
	for (i = 0; i < 200 && !store_ready(&detail); i++) {
		event_base_loopexit(bsp_base, &tv);
		event_base_dispatch(bsp_base);
	}
	ok(store_ready(&detail), "ready (%s)", store_ready(&detail) ? "yes" :
	    detail);
	is_int(store_schema_version(), 7, "schema at this binary's version");
	memset(&u, 0, sizeof u);
	is_int(run(&st_create, NULL, 0, &u), STORE_OK, "a table of our own");
	is_int(run(&st_clear, NULL, 0, &u), STORE_OK, "empty");
	test_types();
	test_units();
	test_queue();
	test_watch(url);
	if (argc == 1)
		test_checkpointer(&sc, dir);
	store_close();
	store_conf_clear(&sc);
	evdns_base_free(bsp_dns, 0);
	event_base_free(bsp_base);
	free(url);
	return (tap_done());
}
