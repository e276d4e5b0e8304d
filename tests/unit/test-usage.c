/*
 * test-usage.c: usage rows are queued in memory and written in batches of
 * at most 512 per unit of work (multi-row INSERTs), one batch per turn of
 * the loop (SQLite; with PostgreSQL the next when one is over); a database
 * that refuses (a trigger here) keeps the rows queued (none lost) until
 * it takes them; the queue is bounded, the oldest rows dropped first;
 * every field lands in its column (no first byte: NULL); old rows are
 * purged. Against SQLite, or the PostgreSQL database of
 * $BSP_TEST_STORE_URL (test-usage-pg.sh).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "bsp.h"
#include "tap.h"
#include "tmpdb.h"

#define count(sql)	tmpdb_int("%s", (sql))

/* Make the database refuse new usage rows, or take them again. */
static int
refuse(int on)
{
	if (tmpdb_pg() && on)
		return (tmpdb_exec("CREATE OR REPLACE FUNCTION usage_refuse() "
		    "RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE "
		    "EXCEPTION 'refused'; END $$; CREATE TRIGGER usage_refuse "
		    "BEFORE INSERT ON usage FOR EACH STATEMENT EXECUTE FUNCTION "
		    "usage_refuse()"));
	if (tmpdb_pg())
		return (tmpdb_exec("DROP TRIGGER usage_refuse ON usage"));
	if (on)
		return (tmpdb_exec("CREATE TRIGGER usage_refuse BEFORE INSERT "
		    "ON usage BEGIN SELECT RAISE(ABORT, 'refused'); END"));
	return (tmpdb_exec("DROP TRIGGER usage_refuse"));
}

static void
purged(int status, void *arg)
{
	*(int *)arg = 1;
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

/* Run the loop n turns (SQLite: each writes at most one batch). */
static void
turns(int n)
{
	while (n-- > 0)
		event_base_loop(bsp_base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

int
main(void)
{
	char		*cause = NULL;
	int		 i;
	long long	 written;

	log_init("test-usage");
	tmpdb_setup(NULL);
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
	if (!tmpdb_pg()) {
		turns(1);
		written = count("SELECT count(*) FROM usage WHERE request_id "
		    "LIKE 'req-1%' AND ts >= 1700001000");
		ok(written == 512, "one turn writes one batch of 512 (%lld)",
		    written);
		turns(3);
		is_int(usage_queued(), 0, "the next batches follow, turn by "
		    "turn");
	} else {
		/* A batch over, the next starts; the 1 s tick drives them. */
		for (i = 0; i < 200 && usage_queued() > 0; i++)
			event_base_loop(bsp_base, EVLOOP_ONCE);
		is_int(usage_queued(), 0, "the batches follow one another");
	}
	is_int(count("SELECT count(*) FROM usage WHERE ts >= 1700001000"),
	    1300, "all 1,300 written, none twice");
	is_int(count("SELECT count(DISTINCT request_id) FROM usage WHERE ts "
	    ">= 1700001000"), 1300, "each its own row");
	is_int(count("SELECT sum(input_tokens) FROM usage WHERE ts >= "
	    "1700001000"), 1300 * 1000 + 1300 * 1299 / 2, "with its own "
	    "values");

	/* A database that refuses: the rows wait, none lost. */
	ok(refuse(1) == 0, "the database refuses usage rows");
	for (i = 0; i < 20; i++)
		record(5000 + i);
	usage_flush();
	is_int(usage_queued(), 20, "refused: the 20 rows stay queued");
	ok(refuse(0) == 0, "it takes them again");
	usage_flush();
	is_int(usage_queued(), 0, "then they are written");
	is_int(count("SELECT count(*) FROM usage WHERE ts >= 1700005000"), 20,
	    "all 20, once each");

	/* The queue is bounded: the oldest go first. */
	ok(refuse(1) == 0, "refusing again");
	for (i = 0; i < 100005; i++)
		record(200000 + i);
	is_int(usage_queued(), 100000, "at most 100,000 rows wait");
	ok(refuse(0) == 0, "taking them");
	usage_flush();
	is_int(count("SELECT min(ts) FROM usage WHERE ts >= 1700200000"),
	    1700200005, "the five oldest were dropped");
	is_int(count("SELECT count(*) FROM usage WHERE ts >= 1700200000"),
	    100000, "the others are all there");

	/* Rows older than usage.retention_days go. */
	{
		int	done = 0;

		usage_purge(1700100000, purged, &done);
		store_wait(&done);
		is_int(count("SELECT count(*) FROM usage WHERE ts < "
		    "1700100000"), 0, "old rows purged");
	}

	usage_free();
	tmpdb_close();
	return (tap_done());
}
