/*
 * test-usage.c: usage rows are queued in memory and written in batches of
 * at most 512 per transaction, one batch per turn of the loop; a database
 * that refuses keeps the rows queued (none lost) until it takes them; the
 * queue is bounded, the oldest rows dropped first; every field lands in
 * its column (no first byte: NULL).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <sqlite3.h>

#include "bsp.h"
#include "tap.h"

static char	 dir[] = "/tmp/bsp-test-usage.XXXXXX";

static long long
count(const char *sql)
{
	sqlite3_stmt	*q;
	long long	 n = -1;

	if (sqlite3_prepare_v2(bsp_db, sql, -1, &q, NULL) != SQLITE_OK)
		return (-1);
	if (sqlite3_step(q) == SQLITE_ROW)
		n = sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	return (n);
}

static void
record(int i)
{
	struct usage	u;
	char		rid[32];

	memset(&u, 0, sizeof u);
	snprintf(rid, sizeof rid, "req-%d", i);
	u.ts = 1700000000 + i;
	u.user_id = "google:1";
	u.model = "anthropic.claude-test";
	u.route = "bedrock_invoke";
	u.status = 200;
	u.input_tokens = i;
	u.output_tokens = 2 * i;
	u.latency_ms = 5;
	u.first_byte_ms = i % 2 == 0 ? 3 : -1;
	u.request_id = rid;
	u.outcome = "ok";
	usage_record(&u);
}

/* Run the loop until nothing is pending or n turns have passed. */
static void
turns(int n)
{
	while (n-- > 0)
		event_base_loop(bsp_base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

int
main(void)
{
	struct config_source	 src;
	struct config_errors	 errs;
	char			*path, *cause = NULL;
	FILE			*f;
	int			 i;
	long long		 written;

	if (mkdtemp(dir) == NULL)
		fatal("mkdtemp");
	log_init("test-usage");
	xasprintf(&path, "%s/c.yaml", dir);
	if ((f = fopen(path, "w")) == NULL)
		fatal("%s", path);
	fprintf(f, "database:\n  url: sqlite://%s/proxy.db\n", dir);
	fclose(f);
	memset(&src, 0, sizeof src);
	src.path = path;
	src.path_explicit = 1;
	src.check = modules_config_check;
	if ((cfg = config_load(&src, &errs)) == NULL)
		fatalx("configuration refused");
	free(path);
	if ((bsp_base = event_base_new()) == NULL)
		fatalx("event_base_new");
	if (db_open(cfg->db_path, 1000, &cause) == -1)
		fatalx("%s", cause);
	metrics_init();
	ok(usage_init(cfg, &cause) == 0, "start");

	/* One row, every field. */
	record(2);
	is_int(usage_queued(), 1, "one row queued, nothing written yet");
	is_int(count("SELECT count(*) FROM usage"), 0, "not on the request's "
	    "path");
	usage_flush();
	is_int(usage_queued(), 0, "written");
	is_int(count("SELECT count(*) FROM usage WHERE ts = 1700000002 AND "
	    "user_id = 'google:1' AND model = 'anthropic.claude-test' AND "
	    "route = 'bedrock_invoke' AND status = 200 AND input_tokens = 2 "
	    "AND output_tokens = 4 AND latency_ms = 5 AND first_byte_ms = 3 "
	    "AND request_id = 'req-2' AND outcome = 'ok' AND api_key_id IS "
	    "NULL AND session_id IS NULL"), 1, "every field in its column");
	record(3);
	usage_flush();
	is_int(count("SELECT count(*) FROM usage WHERE request_id = 'req-3' "
	    "AND first_byte_ms IS NULL"), 1, "no first byte: NULL");

	/* 1,300 rows: one batch of 512 per turn of the loop. */
	for (i = 0; i < 1300; i++)
		record(1000 + i);
	is_int(usage_queued(), 1300, "1,300 queued");
	turns(1);
	written = count("SELECT count(*) FROM usage WHERE request_id LIKE "
	    "'req-1%' AND ts >= 1700001000");
	ok(written == 512, "one turn writes one batch of 512 (%lld)", written);
	turns(3);
	is_int(usage_queued(), 0, "the next batches follow, turn by turn");
	is_int(count("SELECT count(*) FROM usage WHERE ts >= 1700001000"),
	    1300, "all 1,300 written, none twice");

	/* A database that refuses: the rows wait, none lost. */
	ok(sqlite3_exec(bsp_db, "PRAGMA query_only = 1", NULL, NULL, NULL) ==
	    SQLITE_OK, "the database refuses writes");
	for (i = 0; i < 20; i++)
		record(5000 + i);
	usage_flush();
	is_int(usage_queued(), 20, "refused: the 20 rows stay queued");
	ok(sqlite3_exec(bsp_db, "PRAGMA query_only = 0", NULL, NULL, NULL) ==
	    SQLITE_OK, "it takes writes again");
	usage_flush();
	is_int(usage_queued(), 0, "then they are written");
	is_int(count("SELECT count(*) FROM usage WHERE ts >= 1700005000"), 20,
	    "all 20, once each");

	/* The queue is bounded: the oldest go first. */
	ok(sqlite3_exec(bsp_db, "PRAGMA query_only = 1", NULL, NULL, NULL) ==
	    SQLITE_OK, "refusing again");
	for (i = 0; i < 100005; i++)
		record(200000 + i);
	is_int(usage_queued(), 100000, "at most 100,000 rows wait");
	ok(sqlite3_exec(bsp_db, "PRAGMA query_only = 0", NULL, NULL, NULL) ==
	    SQLITE_OK, "taking writes");
	usage_flush();
	is_int(count("SELECT min(ts) FROM usage WHERE ts >= 1700200000"),
	    1700200005, "the five oldest were dropped");

	usage_free();
	db_close();
	config_unref(cfg);
	event_base_free(bsp_base);
	return (tap_done());
}
