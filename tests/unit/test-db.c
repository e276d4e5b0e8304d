/* test-db.c: opening, migrating and refusing databases. */

#include <sys/stat.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <sqlite3.h>

#include "bsp.h"
#include "tap.h"

int
main(void)
{
	char		 dir[] = "/tmp/bsp-test-db.XXXXXX", *path, *cause = NULL;
	char		*sub;
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
