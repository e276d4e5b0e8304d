/*
 * test-db.c: opening, migrating and refusing databases.
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
#include "tap.h"

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

/* One row of a query as "a|b|c", or NULL when there is none. */
static char *
row(const char *sql)
{
	sqlite3_stmt	*q;
	char		*out = NULL, *t;
	int		 i;

	if (sqlite3_prepare_v2(bsp_db, sql, -1, &q, NULL) != SQLITE_OK) {
		diag("%s: %s", sql, sqlite3_errmsg(bsp_db));
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
	return (out);
}

/*
 * A version-1 database migrates to the current schema with its API keys
 * as they were; they belong to no session (family_id NULL).
 */
static void
test_migrate_v1(const char *dir, const char *fixture)
{
	struct sqlite3	*raw = NULL;
	char		*path, *sql, *cause = NULL, *r;
	json_t		*a;

	xasprintf(&path, "%s/v1.db", dir);
	if ((sql = slurp(fixture)) == NULL) {
		ok(0, "read the version-1 fixture %s", fixture);
		free(path);
		return;
	}
	ok(sqlite3_open(path, &raw) == SQLITE_OK &&
	    sqlite3_exec(raw, sql, NULL, NULL, NULL) == SQLITE_OK,
	    "made a version-1 database from %s", fixture);
	sqlite3_close(raw);
	free(sql);

	ok(db_open(path, 1000, &cause) == 0, "a version-1 database opens");
	if (cause != NULL)
		diag("%s", cause);
	is_int(db_schema_version(), DB_SCHEMA_VERSION, "and is migrated to "
	    "the current version");
	ok(db_ok(), "db_ok after the migration");
	r = row("SELECT id, hex(hash), hint, user_id, name, models, created, "
	    "expires, last_used_at, revoked, revoked_at, family_id, "
	    "revoked_reason FROM api_keys WHERE id = 'key_live'");
	is_str(r, "key_live|" "0000000000000000000000000000000000000000000000"
	    "000000000000000000|bsk_...live|local:ann@example.com|ci|"
	    "[\"anthropic.*\"]|1700000000|NULL|1700000500|0|NULL|NULL|NULL",
	    "a live key is intact, without a session");
	free(r);
	r = row("SELECT id, hex(hash), name, expires, revoked, revoked_at, "
	    "family_id FROM api_keys WHERE id = 'key_old'");
	is_str(r, "key_old|" "0101010101010101010101010101010101010101010101"
	    "010101010101010101|NULL|1800000000|1|1700000100|NULL",
	    "a revoked key stays revoked");
	free(r);
	r = row("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND "
	    "name = 'api_keys_family'");
	is_str(r, "1", "keys are indexed by session");
	free(r);
	ok(apikeys_load() == 0, "the key loader reads the migrated table");
	apikeys_free();
	a = apikey_list(NULL);
	is_int(json_array_size(a), 2, "both keys are listed");
	ok(json_is_null(json_object_get(json_array_get(a, 0), "session")) &&
	    json_is_null(json_object_get(json_array_get(a, 1), "session")),
	    "with no session");
	json_decref(a);
	db_close();
	ok(db_open(path, 1000, &cause) == 0 && db_schema_version() ==
	    DB_SCHEMA_VERSION, "a migrated database opens again as it is");
	db_close();
	free(cause);
	free(path);
}

int
main(int argc, char **argv)
{
	char		 dir[] = "/tmp/bsp-test-db.XXXXXX", *path, *cause = NULL;
	char		*sub, *fixture;
	const char	*srcdir;
	struct stat	 st;
	FILE		*f;

	if (mkdtemp(dir) == NULL)
		fatal("mkdtemp");
	xasprintf(&sub, "%s/a/b", dir);
	xasprintf(&path, "%s/proxy.db", sub);

	{
		char *dbp = NULL;

		ok(db_path_from_url("sqlite:///var/x.db", &dbp, &cause) == 0 &&
		    strcmp(dbp, "/var/x.db") == 0, "absolute sqlite URL");
		free(dbp);
		ok(db_path_from_url("sqlite://data/x.db", &dbp, &cause) == 0 &&
		    strcmp(dbp, "data/x.db") == 0, "relative sqlite URL");
		free(dbp);
		ok(db_path_from_url("postgres://x", &dbp, &cause) == -1,
		    "other schemes refused");
		free(cause);
		cause = NULL;
	}

	ok(db_open(path, 1000, &cause) == 0, "open creates directories and "
	    "the database");
	ok(stat(sub, &st) == 0 && (st.st_mode & 0777) == 0700,
	    "created directory is 0700");
	ok(stat(path, &st) == 0 && (st.st_mode & 077) == 0,
	    "database file is private");
	is_int(db_schema_version(), DB_SCHEMA_VERSION, "schema migrated");
	ok(db_ok(), "db_ok");
	db_close();
	ok(db_open(path, 1000, &cause) == 0, "reopen an existing database");
	is_int(db_schema_version(), DB_SCHEMA_VERSION, "still current");
	ok(db_exec("PRAGMA user_version = 99") == 0, "pretend to be newer");
	db_close();
	ok(db_open(path, 1000, &cause) == -1 && cause != NULL &&
	    strstr(cause, "newer than this binary") != NULL,
	    "a newer schema is refused");
	free(cause);
	cause = NULL;

	free(path);
	xasprintf(&path, "%s/garbage.db", dir);
	f = fopen(path, "w");
	fputs("this is not a database, just some text that is long enough to "
	    "look like a header page........................................",
	    f);
	fclose(f);
	ok(db_open(path, 1000, &cause) == -1 && cause != NULL &&
	    strstr(cause, "not a database") != NULL,
	    "a file that is not a database is refused");
	free(cause);
	cause = NULL;

	free(path);
	xasprintf(&path, "%s/file/x.db", dir);
	{
		char *file;
		xasprintf(&file, "%s/file", dir);
		f = fopen(file, "w");
		fclose(f);
		free(file);
	}
	ok(db_open(path, 1000, &cause) == -1 && cause != NULL &&
	    strstr(cause, "not a directory") != NULL,
	    "a file in the way of the directory is refused");
	free(cause);
	cause = NULL;

	/*
	 * Usage rows are written in batches of 512, one transaction each:
	 * every queued row must reach the table, however many batches.
	 */
	free(path);
	xasprintf(&path, "%s/usage.db", dir);
	ok(db_open(path, 1000, &cause) == 0, "open a database for usage");
	{
		struct usage	 u;
		sqlite3_stmt	*q = NULL;
		char		 rid[32];
		int		 i, rows = -1, ids = -1, sum = -1;

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
		if (sqlite3_prepare_v2(bsp_db, "PRAGMA synchronous", -1, &q,
		    NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
			rows = sqlite3_column_int(q, 0);
		sqlite3_finalize(q);
		is_int(rows, 2, "synchronous is FULL again after the lazy "
		    "usage batches");
		rows = -1;
		if (sqlite3_prepare_v2(bsp_db, "SELECT count(*), count(DISTINCT "
		    "request_id), sum(input_tokens) FROM usage", -1, &q,
		    NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW) {
			rows = sqlite3_column_int(q, 0);
			ids = sqlite3_column_int(q, 1);
			sum = sqlite3_column_int(q, 2);
		}
		sqlite3_finalize(q);
		is_int(rows, 1300, "every row written across three batches");
		is_int(ids, 1300, "each row once");
		is_int(sum, 1300 * 1299 / 2, "with its own values");

		/*
		 * On the loop, a full batch is written soon, one batch per
		 * turn of the loop, so that requests are served in between.
		 */
		if ((bsp_base = event_base_new()) == NULL)
			fatalx("event_base_new");
		ok(usage_init(NULL, &cause) == 0, "usage_init");
		for (i = 0; i < 1300; i++) {
			snprintf(rid, sizeof rid, "s%d", i);
			usage_record(&u);
		}
		event_base_loop(bsp_base, EVLOOP_ONCE);
		is_int((long long)usage_queued(), 1300 - 512,
		    "one batch in one turn of the loop");
		event_base_loop(bsp_base, EVLOOP_ONCE);
		is_int((long long)usage_queued(), 1300 - 1024, "then the next");
		event_base_loop(bsp_base, EVLOOP_ONCE);
		is_int((long long)usage_queued(), 0, "then the rest");
		if (sqlite3_prepare_v2(bsp_db, "SELECT count(*) FROM usage",
		    -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
			rows = sqlite3_column_int(q, 0);
		sqlite3_finalize(q);
		is_int(rows, 2600, "all written");
		usage_free();
		event_base_free(bsp_base);
		bsp_base = NULL;
	}
	db_close();

	if (argc > 1)
		fixture = xstrdup(argv[1]);
	else {
		if ((srcdir = getenv("srcdir")) == NULL)
			srcdir = ".";
		xasprintf(&fixture, "%s/tests/unit/data/db-v1.sql", srcdir);
	}
	test_migrate_v1(dir, fixture);
	free(fixture);

	{
		char *cmd;
		xasprintf(&cmd, "rm -rf %s", dir);
		if (system(cmd) != 0)
			diag("cleanup failed");
		free(cmd);
	}
	free(path);
	free(sub);
	return (tap_done());
}
