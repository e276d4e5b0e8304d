/*
 * test-db.c: opening, migrating and refusing SQLite databases through the
 * store (store-sqlite.c): database.url read, directories made 0700, the
 * file private, the schema brought to this binary's version (from version
 * 1 and 2 fixtures with their rows intact), a newer schema and a file that
 * is not a database refused; usage batches on the store's connection.
 *
 * Usage: test-db [fixture]; default $srcdir/tests/unit/data/db-v1.sql, a
 * database at schema version 1.
 */

#include <sys/stat.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <sqlite3.h>

#include "bsp.h"
#include "store.h"
#include "tap.h"

#define SCHEMA_VERSION	7	/* the migrations in store-schema.c */

/* Read a whole (small) file; NULL if it cannot be read. */
static char *
slurp(const char *path)
{
	FILE	*f;
	char	*buf;
	size_t	 n;

	if ((f = fopen(path, "r")) == NULL)
		return (NULL);
	buf = xmalloc(1 << 16);
	n = fread(buf, 1, (1 << 16) - 1, f);
	buf[n] = '\0';
	if (!feof(f)) {
		diag("%s: larger than %d bytes", path, (1 << 16) - 1);
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return (buf);
}

/* One row of a query on the file, as "a|b|c", or NULL when there is none. */
static char *
row(const char *path, const char *sql)
{
	sqlite3		*db;
	sqlite3_stmt	*q;
	char		*out = NULL, *t;
	int		 i;

	if (sqlite3_open(path, &db) != SQLITE_OK)
		return (NULL);
	if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK) {
		diag("%s: %s", sql, sqlite3_errmsg(db));
		sqlite3_close(db);
		return (NULL);
	}
	if (sqlite3_step(q) == SQLITE_ROW) {
		out = xstrdup("");
		for (i = 0; i < sqlite3_column_count(q); i++) {
			xasprintf(&t, "%s%s%s", out, i > 0 ? "|" : "",
			    sqlite3_column_type(q, i) == SQLITE_NULL ? "NULL" :
			    (const char *)sqlite3_column_text(q, i));
			free(out);
			out = t;
		}
	}
	sqlite3_finalize(q);
	sqlite3_close(db);
	return (out);
}

/* Run SQL on the file with a connection of the test's own. */
static int
raw(const char *path, const char *sql)
{
	sqlite3	*db;
	int	 rc;

	if (sqlite3_open(path, &db) != SQLITE_OK)
		return (-1);
	rc = sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
	if (rc == -1)
		diag("%s: %s", sql, sqlite3_errmsg(db));
	sqlite3_close(db);
	return (rc);
}

/* Open the file as the daemon does; -1 with *cause. */
static int
open_db(const char *path, char **cause)
{
	struct store_conf	sc;
	char			*url;
	int			rc;

	xasprintf(&url, "sqlite://%s", path);
	free(*cause);
	*cause = NULL;
	if (store_conf_from_url(url, &sc, cause) == -1) {
		free(url);
		return (-1);
	}
	free(url);
	sc.busy_timeout = 1000;
	rc = store_open(&sc, cause);
	store_conf_clear(&sc);
	return (rc);
}

/* A statement through the store, waited for. */
struct ran {
	volatile int	 done;
	int		 status;
	long long	 n;
	json_t		*j;
};

static void
ran_row(const struct store_row *r, void *arg)
{
	struct ran	*w = arg;

	w->n = store_int(r, 0);
}

static void
ran_end(int status, void *arg)
{
	struct ran	*w = arg;

	w->status = status;
	w->done = 1;
}

static void
ran_json(int rc, json_t *j, void *arg)
{
	struct ran	*w = arg;

	w->status = rc;
	w->j = j;
	w->done = 1;
}

static long long
store_pragma(struct store_stmt *st)
{
	struct ran	w;

	memset(&w, 0, sizeof w);
	w.n = -1;
	store_run(0, st, NULL, 0, ran_row, ran_end, &w);
	store_wait(&w.done);
	return (w.status == STORE_OK ? w.n : -1);
}

/*
 * A version-1 database migrates to the current schema with its API keys
 * as they were; they belong to no session (family_id NULL).
 */
static void
test_migrate_v1(const char *dir, const char *fixture)
{
	struct ran	 w;
	char		*path, *sql, *cause = NULL, *r;
	json_t		*a;

	xasprintf(&path, "%s/v1.db", dir);
	if ((sql = slurp(fixture)) == NULL) {
		ok(0, "read the version-1 fixture %s", fixture);
		free(path);
		return;
	}
	ok(raw(path, sql) == 0, "made a version-1 database from %s", fixture);
	free(sql);

	ok(open_db(path, &cause) == 0, "a version-1 database opens");
	if (cause != NULL)
		diag("%s", cause);
	is_int(store_schema_version(), SCHEMA_VERSION, "and is migrated to "
	    "the current version");
	r = row(path, "SELECT id, hex(hash), hint, user_id, name, models, "
	    "created, expires, last_used_at, revoked, revoked_at, family_id, "
	    "revoked_reason FROM api_keys WHERE id = 'key_live'");
	is_str(r, "key_live|" "0000000000000000000000000000000000000000000000"
	    "000000000000000000|bsk_...live|local:ann@example.com|ci|"
	    "[\"anthropic.*\"]|1700000000|NULL|1700000500|0|NULL|NULL|NULL",
	    "a live key is intact, without a session");
	free(r);
	r = row(path, "SELECT id, hex(hash), name, expires, revoked, "
	    "revoked_at, family_id FROM api_keys WHERE id = 'key_old'");
	is_str(r, "key_old|" "0101010101010101010101010101010101010101010101"
	    "010101010101010101|NULL|1800000000|1|1700000100|NULL",
	    "a revoked key stays revoked");
	free(r);
	r = row(path, "SELECT count(*) FROM sqlite_master WHERE type = "
	    "'index' AND name IN ('api_keys_family', 'signing_keys_active')");
	is_str(r, "2", "keys are indexed by session; one active signing key "
	    "per algorithm");
	free(r);
	r = row(path, "SELECT count(*) FROM sqlite_master WHERE type = "
	    "'table' AND name IN ('kek_check', 'rate_counters')");
	is_str(r, "2", "the KEK's check value and the rate counters have "
	    "their tables");
	free(r);
	memset(&w, 0, sizeof w);
	apikeys_load(ran_end, &w);
	store_wait(&w.done);
	is_int(w.status, STORE_OK, "the key loader reads the migrated table");
	apikeys_free();
	memset(&w, 0, sizeof w);
	apikey_list(NULL, ran_json, &w);
	store_wait(&w.done);
	a = w.j;
	is_int(json_array_size(a), 2, "both keys are listed");
	ok(json_is_null(json_object_get(json_array_get(a, 0), "session")) &&
	    json_is_null(json_object_get(json_array_get(a, 1), "session")),
	    "with no session");
	json_decref(a);
	store_close();
	ok(open_db(path, &cause) == 0 && store_schema_version() ==
	    SCHEMA_VERSION, "a migrated database opens again as it is");
	store_close();
	free(cause);
	free(path);
}

/*
 * A version-2 database, with a retired signing key and an active one of
 * each of two algorithms, migrates to 3: the index takes them.
 */
static void
test_migrate_v2(const char *dir, const char *fixture)
{
	char	*path, *sql, *cause = NULL, *r;

	xasprintf(&path, "%s/v2.db", dir);
	if ((sql = slurp(fixture)) == NULL) {
		ok(0, "read the fixture %s", fixture);
		free(path);
		return;
	}
	ok(raw(path, sql) == 0 && raw(path, "ALTER TABLE api_keys ADD COLUMN "
	    "family_id TEXT; ALTER TABLE api_keys ADD COLUMN revoked_reason "
	    "TEXT; CREATE INDEX api_keys_family ON api_keys(family_id); "
	    "INSERT INTO signing_keys (kid, alg, created, retired, "
	    "verify_until) VALUES ('old', 'EdDSA', 1, 2, 3), ('cur', 'EdDSA', "
	    "2, NULL, NULL), ('es', 'ES256', 2, NULL, NULL); PRAGMA "
	    "user_version = 2") == 0, "made a version-2 database with signing "
	    "keys");
	free(sql);
	ok(open_db(path, &cause) == 0, "it opens");
	if (cause != NULL)
		diag("%s", cause);
	is_int(store_schema_version(), SCHEMA_VERSION, "migrated from 2");
	store_close();
	r = row(path, "SELECT group_concat(kid) FROM (SELECT kid FROM "
	    "signing_keys WHERE retired IS NULL ORDER BY kid)");
	is_str(r, "cur,es", "its active keys stay active");
	free(r);
	ok(raw(path, "INSERT INTO signing_keys (kid, alg, created) VALUES "
	    "('two', 'EdDSA', 3)") == -1, "a second active EdDSA key is "
	    "refused");
	free(cause);
	free(path);
}

int
main(int argc, char **argv)
{
	char			 dir[] = "/tmp/bsp-test-db.XXXXXX", *path;
	char			*cause = NULL, *sub, *fixture, *file;
	const char		*srcdir, *detail;
	static struct store_stmt st_sync = STORE_STMT("PRAGMA synchronous");
	struct store_conf	 sc;
	struct stat		 st;
	FILE			*f;

	if (mkdtemp(dir) == NULL)
		fatal("mkdtemp");
	xasprintf(&sub, "%s/a/b", dir);
	xasprintf(&path, "%s/proxy.db", sub);

	ok(store_conf_from_url("sqlite:///var/x.db", &sc, &cause) == 0 &&
	    sc.kind == STORE_SQLITE && strcmp(sc.path, "/var/x.db") == 0,
	    "absolute sqlite URL");
	store_conf_clear(&sc);
	ok(store_conf_from_url("sqlite://data/x.db", &sc, &cause) == 0 &&
	    strcmp(sc.path, "data/x.db") == 0, "relative sqlite URL");
	store_conf_clear(&sc);
	ok(store_conf_from_url("postgres://u@h/d", &sc, &cause) == 0 &&
	    sc.kind == STORE_PG, "a PostgreSQL URL is the other backend");
	store_conf_clear(&sc);
	ok(store_conf_from_url("ftp://x", &sc, &cause) == -1,
	    "other schemes refused");
	free(cause);
	cause = NULL;
	ok(store_conf_from_url("sqlite://", &sc, &cause) == -1,
	    "an SQLite URL without a file refused");
	free(cause);
	cause = NULL;
	ok(store_conf_from_url("sqlite://x.db?mode=ro", &sc, &cause) == -1,
	    "an SQLite URL with options refused");
	free(cause);
	cause = NULL;

	ok(open_db(path, &cause) == 0, "open creates directories and the "
	    "database");
	ok(stat(sub, &st) == 0 && (st.st_mode & 0777) == 0700,
	    "created directory is 0700");
	ok(stat(path, &st) == 0 && (st.st_mode & 077) == 0,
	    "database file is private");
	is_int(store_schema_version(), SCHEMA_VERSION, "schema migrated");
	ok(store_ready(&detail), "ready");
	store_close();
	ok(open_db(path, &cause) == 0, "reopen an existing database");
	is_int(store_schema_version(), SCHEMA_VERSION, "still current");
	store_close();
	ok(raw(path, "PRAGMA user_version = 99") == 0, "pretend to be newer");
	ok(open_db(path, &cause) == -1 && cause != NULL &&
	    strstr(cause, "newer than this binary") != NULL,
	    "a newer schema is refused");
	ok(!store_ready(&detail), "and nothing is open");

	free(path);
	xasprintf(&path, "%s/garbage.db", dir);
	f = fopen(path, "w");
	fputs("this is not a database, just some text that is long enough to "
	    "look like a header page........................................",
	    f);
	fclose(f);
	ok(open_db(path, &cause) == -1 && cause != NULL &&
	    strstr(cause, "not a database") != NULL,
	    "a file that is not a database is refused");

	free(path);
	xasprintf(&path, "%s/file/x.db", dir);
	xasprintf(&file, "%s/file", dir);
	f = fopen(file, "w");
	fclose(f);
	free(file);
	ok(open_db(path, &cause) == -1 && cause != NULL &&
	    strstr(cause, "not a directory") != NULL,
	    "a file in the way of the directory is refused");

	/*
	 * Usage rows are written in batches of 512, one unit each: every
	 * queued row must reach the table, however many batches; and the
	 * connection is durable again (synchronous FULL) after them.
	 */
	free(path);
	xasprintf(&path, "%s/usage.db", dir);
	ok(open_db(path, &cause) == 0, "open a database for usage");
	{
		struct usage	 u;
		char		 rid[32], *r;
		int		 i;

		memset(&u, 0, sizeof u);
		u.user_id = "u1";
		u.model = "m";
		u.route = "InvokeModel";
		u.status = 200;
		u.first_byte_ms = -1;
		u.outcome = "ok";
		u.request_id = rid;
		for (i = 0; i < 1300; i++) {
			snprintf(rid, sizeof rid, "r%d", i);
			u.input_tokens = i;
			usage_record(&u);
		}
		is_int((long long)usage_queued(), 1300, "1300 rows queued");
		usage_flush();
		is_int((long long)usage_queued(), 0, "queue empty after flush");
		is_int(store_pragma(&st_sync), 2, "synchronous is FULL again "
		    "after the lazy usage batches");
		r = row(path, "SELECT count(*), count(DISTINCT request_id), "
		    "sum(input_tokens) FROM usage");
		is_str(r, "1300|1300|844350", "every row written across three "
		    "batches, each once, with its own values");
		free(r);

		/*
		 * On the loop, a full batch is written soon, one statement
		 * (at most 64 rows) per turn of the loop and its commit in
		 * the next, so that requests are served in between.
		 */
		if ((bsp_base = event_base_new()) == NULL)
			fatalx("event_base_new");
		ok(usage_init(NULL, &cause) == 0, "usage_init");
		for (i = 0; i < 1300; i++) {
			snprintf(rid, sizeof rid, "s%d", i);
			usage_record(&u);
		}
		for (i = 0; i < 8; i++)
			event_base_loop(bsp_base, EVLOOP_ONCE);
		r = row(path, "SELECT count(*) FROM usage");
		ok(usage_queued() == 1300 && strcmp(r, "1300") == 0,
		    "a batch's eight statements in eight turns, none "
		    "committed yet");
		free(r);
		event_base_loop(bsp_base, EVLOOP_ONCE);
		is_int((long long)usage_queued(), 1300 - 512,
		    "its commit in the ninth");
		for (i = 0; i < 9; i++)
			event_base_loop(bsp_base, EVLOOP_ONCE);
		is_int((long long)usage_queued(), 1300 - 1024, "then the next "
		    "batch, in nine more");
		for (i = 0; i < 7; i++)
			event_base_loop(bsp_base, EVLOOP_ONCE);
		is_int((long long)usage_queued(), 0, "then the rest (276 rows: "
		    "six statements and the commit)");
		r = row(path, "SELECT count(*) FROM usage");
		is_str(r, "2600", "all written");
		free(r);
		usage_free();
		event_base_free(bsp_base);
		bsp_base = NULL;
	}
	store_close();

	if (argc > 1)
		fixture = xstrdup(argv[1]);
	else {
		if ((srcdir = getenv("srcdir")) == NULL)
			srcdir = ".";
		xasprintf(&fixture, "%s/tests/unit/data/db-v1.sql", srcdir);
	}
	test_migrate_v1(dir, fixture);
	test_migrate_v2(dir, fixture);
	free(fixture);

	{
		char *cmd;
		xasprintf(&cmd, "rm -rf %s", dir);
		if (system(cmd) != 0)
			diag("cleanup failed");
		free(cmd);
	}
	free(cause);
	free(path);
	free(sub);
	return (tap_done());
}
