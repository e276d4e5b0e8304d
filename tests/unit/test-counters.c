/*
 * test-counters.c: the counts the daemons sharing a PostgreSQL database
 * keep together (counters.c) and the shared rate limits on them
 * (policy.c): a daemon's own counts are added to rate_counters at each
 * sync, once; the others' counts, put in the database behind its back as
 * another daemon would, are read back and counted; a sync the database
 * refuses keeps the deltas for the next one; counters of windows that are
 * over go; a limit is reached by the daemons together, with Retry-After
 * the rest of the window; old rows are purged. With SQLite there is
 * nothing to share: the limits stay the buckets in memory.
 * Against SQLite, or the PostgreSQL database of $BSP_TEST_STORE_URL
 * (test-counters-pg.sh).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bsp.h"
#include "tap.h"
#include "tmpdb.h"
#include "loop.h"

static void
synced(int status, void *arg)
{
	int	*w = arg;

	w[0] = status;
	w[1] = 1;
}

/* One sync, waited for; its status. */
static int
sync_now(void)
{
	int	w[2] = { -99, 0 };

	counters_sync(synced, w);
	store_wait(&w[1]);
	return (w[0]);
}

static long long
db_requests(const char *key, long long window)
{
	return (tmpdb_int("SELECT requests FROM rate_counters WHERE key = "
	    "'%s' AND window_start = %lld", key, window));
}

static char	s_google[] = "google:1", s_bob[] = "bob", s_carol[] = "carol";
static char	s_k1[] = "k1", s_dave[] = "dave";

static void
test_sqlite(void)
{
	struct principal	p;
	long long		retry;
	int			i, n = 0;

	ok(!counters_shared(), "sqlite: nothing to share");
	memset(&p, 0, sizeof p);
	p.sub = s_google;
	cfg->rl_requests_per_minute = 5;
	for (i = 0; i < 8; i++)
		n += ratelimit_check(cfg, &p, &retry);
	is_int(n, 5, "sqlite: the bucket in memory lets 5 through");
	ok(retry >= 1 && retry <= 60, "sqlite: then a wait (%lld s)", retry);
	is_int(tmpdb_int("SELECT count(*) FROM rate_counters"), 0,
	    "sqlite: nothing in rate_counters");
	ratelimit_free();
}

static void
test_shared(void)
{
	struct principal	p;
	long long		w, req, tok, retry, xmin;
	time_t			now;
	int			i, n;

	/* Not across the end of a minute: the windows are fixed. */
	while ((now = now_wall()) % 60 > 45)
		sleep(1);
	w = counters_window(60, now);
	ok(counters_shared(), "pg: the daemons share counts");

	counters_add("u:alice", 60, now, 3, 100);
	counters_get("u:alice", 60, now, &req, &tok);
	ok(req == 3 && tok == 100, "our own counts at once (%lld, %lld)",
	    req, tok);
	is_int(sync_now(), STORE_OK, "sync");
	is_int(db_requests("60/u:alice", w), 3, "in the database");

	/* Another daemon counts 5 more. */
	ok(tmpdb_exec("UPDATE rate_counters SET requests = requests + 5, "
	    "tokens = tokens + 50 WHERE key = '60/u:alice'") == 0,
	    "another daemon adds 5");
	counters_get("u:alice", 60, now, &req, &tok);
	is_int(req, 3, "not seen before the next sync");
	is_int(sync_now(), STORE_OK, "sync (nothing to add, but consulted)");
	counters_get("u:alice", 60, now, &req, &tok);
	ok(req == 8 && tok == 150, "the others' counts read back (%lld, %lld)",
	    req, tok);
	is_int(db_requests("60/u:alice", w), 8, "nothing added twice");

	counters_add("u:alice", 60, now, 1, 0);
	is_int(sync_now(), STORE_OK, "sync one more");
	counters_get("u:alice", 60, now, &req, &tok);
	is_int(req, 9, "9 in all");
	is_int(db_requests("60/u:alice", w), 9, "9 in the database");

	/* The database refuses a sync: the deltas wait for the next. */
	ok(tmpdb_exec("ALTER TABLE rate_counters RENAME TO rc_away") == 0,
	    "rate_counters away");
	counters_add("u:alice", 60, now, 2, 0);
	ok(sync_now() != STORE_OK, "the sync fails");
	counters_get("u:alice", 60, now, &req, &tok);
	is_int(req, 11, "our counts still count");
	ok(tmpdb_exec("ALTER TABLE rc_away RENAME TO rate_counters") == 0,
	    "rate_counters back");
	is_int(sync_now(), STORE_OK, "the next sync");
	is_int(db_requests("60/u:alice", w), 11, "the 2 added once");

	/* A window that is over goes, once nothing is left to add. */
	counters_add("u:old", 60, now - 120, 4, 0);
	is_int(sync_now(), STORE_OK, "an old window's count is still added");
	is_int(db_requests("60/u:old", counters_window(60, now - 120)), 4,
	    "in its window");
	ok(tmpdb_exec("UPDATE rate_counters SET requests = 40 WHERE key = "
	    "'60/u:old'") == 0, "another daemon counts in it");
	counters_get("u:old", 60, now - 120, &req, &tok);
	is_int(sync_now(), STORE_OK, "sync");
	counters_get("u:old", 60, now - 120, &req, &tok);
	is_int(req, 0, "its counter went (a fresh one counts nothing)");

	/* The rate limit, across daemons: 10 a minute. */
	cfg->rl_requests_per_minute = 10;
	memset(&p, 0, sizeof p);
	p.sub = s_bob;
	for (i = 0, n = 0; i < 4; i++)
		n += ratelimit_check(cfg, &p, &retry);
	is_int(n, 4, "4 calls here");
	ok(tmpdb_exec("INSERT INTO rate_counters VALUES ('60/u:bob', %lld, "
	    "5, 0) ON CONFLICT (key, window_start) DO UPDATE SET requests = "
	    "rate_counters.requests + 5", w) == 0, "5 at another daemon");
	is_int(sync_now(), STORE_OK, "sync");
	for (i = 0, n = 0; i < 4; i++)
		n += ratelimit_check(cfg, &p, &retry);
	is_int(n, 1, "one more is allowed, then the limit");
	ok(retry >= 1 && retry <= 60 && retry == counters_window(60, now) +
	    60 - now_wall(), "retry when the window ends (%lld s)", retry);
	is_int(sync_now(), STORE_OK, "sync");
	is_int(db_requests("60/u:bob", w), 10, "10 in the database: refused "
	    "calls are not counted");

	/* An API key is limited on its own too. */
	p.sub = s_carol;
	p.key_id = s_k1;
	ok(tmpdb_exec("INSERT INTO rate_counters VALUES ('60/k:k1', %lld, 10, "
	    "0)", w) == 0, "the key's window is full at another daemon");
	is_int(sync_now(), STORE_OK, "sync");
	ok(ratelimit_check(cfg, &p, &retry), "the first call: the key's "
	    "count not read yet");
	is_int(sync_now(), STORE_OK, "sync");
	ok(!ratelimit_check(cfg, &p, &retry), "then the key's limit holds");

	/* A subject too long to be a key as it is: counted by its hash. */
	{
		char	longsub[600];

		memset(longsub, 'x', sizeof longsub - 1);
		longsub[sizeof longsub - 1] = '\0';
		p.sub = longsub;
		p.key_id = NULL;
		for (i = 0, n = 0; i < 12; i++)
			n += ratelimit_check(cfg, &p, &retry);
		is_int(n, 10, "a 599-byte subject is limited too");
		is_int(sync_now(), STORE_OK, "sync");
		is_int(tmpdb_int("SELECT requests FROM rate_counters WHERE key "
		    "LIKE '60/#%%'"), 10, "under its hash");
	}

	/* Tokens, charged when known. */
	cfg->rl_requests_per_minute = 0;
	cfg->rl_tokens_per_minute = 1000;
	p.sub = s_dave;
	p.key_id = NULL;
	ok(ratelimit_check(cfg, &p, &retry), "tokens: allowed");
	ratelimit_charge(cfg, &p, 600);
	is_int(sync_now(), STORE_OK, "sync");
	ok(tmpdb_exec("UPDATE rate_counters SET tokens = tokens + 500 WHERE "
	    "key = '60/u:dave'") == 0, "another daemon charges 500");
	xmin = tmpdb_int("SELECT xmin::text::bigint FROM rate_counters WHERE "
	    "key = '60/u:dave'");
	ok(ratelimit_check(cfg, &p, &retry), "tokens: allowed on what was "
	    "read last (600)");
	is_int(sync_now(), STORE_OK, "sync: read back, as it was consulted");
	ok(!ratelimit_check(cfg, &p, &retry), "tokens: 1100 of 1000 refused");
	is_int(tmpdb_int("SELECT xmin::text::bigint FROM rate_counters WHERE "
	    "key = '60/u:dave'"), xmin, "a read writes no row version");

	/* Housekeeping. */
	ok(tmpdb_exec("INSERT INTO rate_counters VALUES ('60/u:ancient', "
	    "%lld, 1, 0), ('3600/u:long', %lld, 1, 0)", w - 600, w - 600) == 0,
	    "an old row, and one of another period");
	counters_maint(now_wall());
	for (i = 0; i < 50 && tmpdb_int("SELECT count(*) FROM rate_counters "
	    "WHERE key = '60/u:ancient'") != 0; i++)
		run_for(0.1);
	is_int(tmpdb_int("SELECT count(*) FROM rate_counters WHERE key = "
	    "'60/u:ancient'"), 0, "the old window's row purged");
	is_int(tmpdb_int("SELECT count(*) FROM rate_counters WHERE key = "
	    "'60/u:alice'"), 1, "the current one kept");
	is_int(tmpdb_int("SELECT count(*) FROM rate_counters WHERE key = "
	    "'3600/u:long'"), 1, "a period not in use here is not ours to "
	    "purge");
	ratelimit_free();
}

int
main(void)
{
	log_init("test-counters");
	tmpdb_open(NULL);
	if (tmpdb_pg())
		test_shared();
	else
		test_sqlite();
	tmpdb_close();
	return (tap_done());
}
