/*
 * test-usage.c: usage rows are queued in memory and written in batches of
 * at most 512 per unit of work (multi-row INSERTs), one statement of at
 * most 64 rows per turn of the loop (SQLite; with PostgreSQL the next when
 * one is over), a full batch at once and the rest at the 1 s tick; the
 * key has a unique index only with PostgreSQL; a database that refuses (a trigger here) keeps the rows
 * queued (none lost) until it takes them; the queue is bounded, the oldest rows dropped first;
 * every field lands in its column (no first byte: NULL); old rows are
 * purged. Against SQLite, or the PostgreSQL database of
 * $BSP_TEST_STORE_URL (test-usage-pg.sh).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "bsp.h"
#include "tap.h"
#include "metrics-text.h"
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

/* A call of model m: its input, output and cache-read tokens. */
static void
record_model(const char *m, long long in, long long out, long long cr)
{
	struct usage	u;

	memset(&u, 0, sizeof u);
	u.ts = 1690000000;
	u.user_id = "google:1";
	u.model = m;
	u.route = "bedrock_invoke";
	u.status = 200;
	u.input_tokens = in;
	u.output_tokens = out;
	u.cache_read_tokens = cr;
	u.first_byte_ms = -1;
	u.outcome = "ok";
	usage_record(&u);
}

/* bsp_tokens_total{direction=d,model=m} (m as labelled), or -1. */
static double
tokens(const char *d, const char *m)
{
	const char	*text = metrics_text(), *p;
	char		 want[1024];

	snprintf(want, sizeof want, "\nbsp_tokens_total{direction=\"%s\","
	    "model=\"%s\"} ", d, m);
	if ((p = strstr(text, want)) == NULL)
		return (-1);
	return (strtod(p + strlen(want), NULL));
}

/* Run the loop n turns (SQLite: each writes at most one batch). */
static void
turns(int n)
{
	while (n-- > 0)
		event_base_loop(bsp_base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

/* One usage row of user u at ts, of model m, with its cost (< 0: NULL). */
static void
row(const char *u, long long ts, const char *m, long long in, long long cost)
{
	char	c[32];

	if (cost < 0)
		snprintf(c, sizeof c, "NULL");
	else
		snprintf(c, sizeof c, "%lld", cost);
	if (tmpdb_exec("INSERT INTO usage (ts, user_id, model, route, status, "
	    "input_tokens, output_tokens, cache_read_tokens, "
	    "cache_write_tokens, cost_micros) VALUES (%lld, '%s', '%s', "
	    "'bedrock_invoke', 200, %lld, %lld, 1, 2, %s)", ts, u, m, in,
	    in * 2, c) != 0)
		diag("cannot insert a usage row");
}

/* usage_by_day(), waited for. */
static json_t *
by_day(const char *u, time_t since, int max)
{
	struct tmpdb_wait	w;

	memset(&w, 0, sizeof w);
	usage_by_day(u, since, max, tw_json, &w);
	tw_wait(&w);
	return (w.rc == 0 ? w.j : NULL);
}

static long long
jint(json_t *a, size_t i, const char *k)
{
	return ((long long)json_integer_value(json_object_get(
	    json_array_get(a, i), k)));
}

/* A user's usage by UTC day and model, with its cost: the page's. */
static void
test_by_day(void)
{
	const long long	 d0 = 1700006400;	/* a UTC midnight */
	json_t		*a;

	row("self:u1", d0 + 10, "m-b", 10, 100);
	row("self:u1", d0 + 20, "m-b", 20, -1);
	row("self:u1", d0 + 30, "m-a", 30, 300);
	row("self:u1", d0 + 86399, "m-a", 40, 400);
	row("self:u1", d0 + 86400, "m-a", 50, 500);
	row("self:u1", d0 - 1, "m-a", 60, 600);
	row("self:u2", d0 + 10, "m-a", 70, 700);
	row("self:u1", d0 + 86400 + 5, "m-c", 80, -1);

	a = by_day("self:u1", (time_t)d0, 100);
	ok(a != NULL, "by day: read");
	is_int((int)json_array_size(a), 4, "by day: one row per day and "
	    "model, since the given time, of the user only");
	ok(jint(a, 0, "day") == d0 + 86400 && strcmp(json_string_value(
	    json_object_get(json_array_get(a, 0), "model")), "m-a") == 0 &&
	    jint(a, 2, "day") == d0 && strcmp(json_string_value(
	    json_object_get(json_array_get(a, 2), "model")), "m-a") == 0,
	    "by day: newest day first, then by model");
	ok(jint(a, 0, "requests") == 1 && jint(a, 0, "input_tokens") == 50 &&
	    jint(a, 0, "cost_micros") == 500 && jint(a, 0, "unpriced") == 0,
	    "by day: a day's one call");
	ok(json_is_null(json_object_get(json_array_get(a, 1), "cost_micros"))
	    && jint(a, 1, "unpriced") == 1, "by day: no price at all: a "
	    "null cost, one call without");
	ok(jint(a, 2, "requests") == 2 && jint(a, 2, "input_tokens") == 70 &&
	    jint(a, 2, "output_tokens") == 140 &&
	    jint(a, 2, "cache_read_tokens") == 2 &&
	    jint(a, 2, "cache_write_tokens") == 4 &&
	    jint(a, 2, "cost_micros") == 700, "by day: a day's calls of one "
	    "model summed, up to its last second");
	ok(jint(a, 3, "requests") == 2 && jint(a, 3, "cost_micros") == 100 &&
	    jint(a, 3, "unpriced") == 1, "by day: the priced calls' cost, "
	    "and how many had no price");
	json_decref(a);
	a = by_day("self:u1", (time_t)d0, 2);
	is_int((int)json_array_size(a), 2, "by day: at most the rows asked");
	json_decref(a);
	a = by_day("self:nobody", 0, 100);
	ok(a != NULL && json_array_size(a) == 0, "by day: none for a user "
	    "without usage");
	json_decref(a);
	tmpdb_exec("DELETE FROM usage WHERE user_id LIKE 'self:%%'");
}

int
main(void)
{
	char		*cause = NULL, longm[300];
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

	/* Token counts by direction and model, the model switching. */
	ok(tokens("input", "anthropic.claude-test") == 5 &&
	    tokens("output", "anthropic.claude-test") == 10,
	    "bsp_tokens_total counts each call's tokens");
	ok(tokens("cache_read", "anthropic.claude-test") == -1,
	    "no series for a direction never counted");
	record_model("model-b", 7, 1, 3);
	record_model("anthropic.claude-test", 1, 0, 0);
	record_model("model-b", 2, 0, 0);
	record_model("m\"q", 4, 0, 0);
	memset(longm, 'x', sizeof longm - 1);
	longm[sizeof longm - 1] = '\0';
	record_model(longm, 1, 0, 0);
	record_model(longm, 2, 0, 0);
	ok(tokens("input", "model-b") == 9 && tokens("output", "model-b") ==
	    1 && tokens("cache_read", "model-b") == 3, "another model's "
	    "series, then it again after a third");
	ok(tokens("input", "anthropic.claude-test") == 6 &&
	    tokens("output", "anthropic.claude-test") == 10 &&
	    tokens("cache_read", "anthropic.claude-test") == -1, "the first "
	    "model's series, added to where they were");
	ok(tokens("input", "m\\\"q") == 4, "a quote in a model's name "
	    "escaped");
	ok(tokens("input", longm) == 3, "a long model name counted too");
	usage_flush();
	is_int(count("SELECT count(*) FROM usage WHERE ts = 1690000000"), 6,
	    "and the rows written");

	/* 1,300 rows: one batch of 512 per turn of the loop; the 1 s tick
	 * held off until the rest is to wait for it. */
	usage_set_tick(0);
	for (i = 0; i < 1300; i++)
		record(1000 + i);
	is_int(usage_queued(), 1300, "1,300 queued");
	if (!tmpdb_pg()) {
		/* A statement of 64 rows a turn; the batch's commit after. */
		turns(1);
		written = count("SELECT count(*) FROM usage WHERE request_id "
		    "LIKE 'req-1%' AND ts >= 1700001000");
		ok(written == 0, "a turn writes one statement of the batch, "
		    "not yet committed (%lld)", written);
		turns(7);
		written = count("SELECT count(*) FROM usage WHERE request_id "
		    "LIKE 'req-1%' AND ts >= 1700001000");
		ok(written == 0, "eight turns: eight statements of 64 rows, "
		    "still one unit (%lld)", written);
		turns(1);
		written = count("SELECT count(*) FROM usage WHERE request_id "
		    "LIKE 'req-1%' AND ts >= 1700001000");
		ok(written == 512, "the ninth commits the batch of 512 (%lld)",
		    written);
		turns(40);
		is_int(usage_queued(), 1300 - 1024, "the next full batch "
		    "follows, turn by turn; the 276 rows left wait");
		usage_set_tick(1);
		for (i = 0; i < 200 && usage_queued() > 0; i++)
			event_base_loop(bsp_base, EVLOOP_ONCE);
		is_int(usage_queued(), 0, "for the tick, which writes them");
	} else {
		/* A batch over, the next starts; the 1 s tick drives them. */
		usage_set_tick(1);
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
	is_int(count("SELECT count(DISTINCT row_key) FROM usage WHERE ts >= "
	    "1700001000 AND length(row_key) = 16"), 1300, "each with a key "
	    "of its own, 16 bytes");
	/* A random key would put every row of a batch in its own index
	 * page; these grow at one end (their first 8 bytes: the time). */
	is_int(count("SELECT count(*) FROM usage a JOIN usage b ON b.id = "
	    "a.id + 1 WHERE a.ts >= 1700001000 AND b.ts >= 1700001000 AND "
	    "substr(b.row_key, 1, 8) < substr(a.row_key, 1, 8)"), 0,
	    "the keys grow in the order the rows were recorded");
	is_int(count("SELECT count(*) FROM usage a JOIN usage b ON b.id = "
	    "a.id + 1 WHERE a.ts >= 1700001000 AND b.ts >= 1700001000 AND "
	    "substr(b.row_key, 9, 8) = substr(a.row_key, 9, 8)"), 0,
	    "and apart by their random half");
	/* Unique where a batch may be written twice (PostgreSQL); no index
	 * at all with SQLite, whose commits are never in doubt. */
	if (tmpdb_pg())
		ok(count("SELECT count(*) FROM pg_indexes WHERE indexname = "
		    "'usage_row_key' AND indexdef LIKE 'CREATE UNIQUE INDEX "
		    "%(row_key)'") >= 1, "PostgreSQL: the key is unique");
	else
		is_int(count("SELECT count(*) FROM sqlite_master WHERE "
		    "tbl_name = 'usage' AND sql LIKE '%row_key%' AND type = "
		    "'index'"), 0, "SQLite: the key has no index");

	/* A tick while a batch is being written (SQLite: a statement a
	 * turn): the rows waiting then follow that batch at once. */
	if (!tmpdb_pg()) {
		usage_set_tick(0);
		for (i = 0; i < 812; i++)
			record(3000 + i);
		turns(1);
		usage_set_tick(1);
		usleep(1100 * 1000);
		turns(1);		/* the tick, amid the batch of 512 */
		usage_set_tick(0);
		turns(30);
		is_int(usage_queued(), 0, "a tick amid a batch: the 300 rows "
		    "waiting then are written right after it");
		usage_set_tick(1);
	}

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

	test_by_day();
	usage_free();
	tmpdb_close();
	return (tap_done());
}
