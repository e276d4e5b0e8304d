/*
 * usage.c: usage rows for every Bedrock call, written in batches.
 *
 * A finished call (complete, failed upstream, or abandoned by its client)
 * queues one row; a timer writes the queue in one transaction every second,
 * so no request ever waits on the disk. If the database refuses (a full
 * disk), rows stay queued and are retried; the queue is bounded and the
 * oldest rows are dropped, counted and logged, past the bound. Rows older
 * than usage.retention_days are purged every hour.
 */

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <sqlite3.h>

#include "bsp.h"

#define USAGE_QUEUE_MAX		100000
#define USAGE_BATCH		512
#define USAGE_PURGE_SECS	3600

/* A queued row: the numbers, and copies of the strings it owns. */
struct usage_row {
	struct usage		 u;
	char			*s[7];
	TAILQ_ENTRY(usage_row)	 entry;
};

static struct {
	TAILQ_HEAD(, usage_row)	 queue;
	size_t			 n;
	unsigned long long	 dropped;
	struct event		 flush_ev;
	struct event		 more_ev;	/* the next batch, soon */
	struct event		 purge_ev;
	int			 started;
	int			 failing;	/* retry on the 1 s tick only */
	double			 last_warn;
} us;

static struct db_stmt st_insert = { "INSERT INTO usage (ts, user_id, "
    "api_key_id, model, route, status, input_tokens, output_tokens, "
    "cache_read_tokens, cache_write_tokens, latency_ms, first_byte_ms, "
    "request_id, session_id, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
    "?, ?, ?, ?, ?)", NULL, NULL };
static struct db_stmt st_purge = { "DELETE FROM usage WHERE ts < ?", NULL,
    NULL };

struct metric	*m_tokens;

static void	usage_soon(void);

static char *
dup_or_null(const char *s)
{
	return (s != NULL ? xstrdup(s) : NULL);
}

static void
usage_row_free(struct usage_row *row)
{
	size_t	i;

	for (i = 0; i < nitems(row->s); i++)
		free(row->s[i]);
	free(row);
}

/* bsp_tokens_total{direction,model}; nothing for a zero count. */
static void
usage_count_tokens(const char *direction, const char *model, long long n)
{
	char	labels[512];

	if (n <= 0)
		return;
	metric_label(labels, sizeof labels, "direction", direction, "model",
	    model, NULL);
	metric_add(m_tokens, labels, (double)n);
}

/* Queue one call's usage; counts tokens for the metrics at once. */
void
usage_record(const struct usage *u)
{
	struct usage_row	*row;

	if (!us.started)
		TAILQ_INIT(&us.queue);
	us.started = 1;
	if (m_tokens != NULL) {
		usage_count_tokens("input", u->model, u->input_tokens);
		usage_count_tokens("output", u->model, u->output_tokens);
		usage_count_tokens("cache_read", u->model, u->cache_read_tokens);
		usage_count_tokens("cache_write", u->model,
		    u->cache_write_tokens);
	}
	if (us.n >= USAGE_QUEUE_MAX) {
		row = TAILQ_FIRST(&us.queue);
		TAILQ_REMOVE(&us.queue, row, entry);
		usage_row_free(row);
		us.n--;
		us.dropped++;
	}
	row = xcalloc(1, sizeof *row);
	row->u = *u;
	row->u.user_id = row->s[0] = dup_or_null(u->user_id);
	row->u.api_key_id = row->s[1] = dup_or_null(u->api_key_id);
	row->u.model = row->s[2] = dup_or_null(u->model);
	row->u.route = row->s[3] = dup_or_null(u->route);
	row->u.request_id = row->s[4] = dup_or_null(u->request_id);
	row->u.session_id = row->s[5] = dup_or_null(u->session_id);
	row->u.outcome = row->s[6] = dup_or_null(u->outcome);
	TAILQ_INSERT_TAIL(&us.queue, row, entry);
	us.n++;
	if (us.n >= USAGE_BATCH)
		usage_soon();
}

static void
bind_text(sqlite3_stmt *st, int i, const char *s)
{
	if (s != NULL)
		sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

/*
 * Write at most one batch, in one transaction. Returns 1 if rows remain,
 * 0 when the queue is empty, -1 when the database refused (rows are kept
 * for the next try).
 */
static int
usage_write_batch(void)
{
	struct usage_row	*row;
	sqlite3_stmt		*st;
	size_t			 n;
	double			 now;

	if (!us.started || bsp_db == NULL)
		return (0);
	if (TAILQ_EMPTY(&us.queue))
		goto done;
	/* Rows a power cut may take, as a crash takes the queue. */
	if (db_begin_lazy() == -1)
		goto fail;
	n = 0;
	TAILQ_FOREACH(row, &us.queue, entry) {
		if (n == USAGE_BATCH)
			break;
		st = db_prepare(&st_insert);
		sqlite3_bind_int64(st, 1, (sqlite3_int64)row->u.ts);
		bind_text(st, 2, row->u.user_id);
		bind_text(st, 3, row->u.api_key_id);
		bind_text(st, 4, row->u.model);
		bind_text(st, 5, row->u.route);
		sqlite3_bind_int(st, 6, row->u.status);
		sqlite3_bind_int64(st, 7, row->u.input_tokens);
		sqlite3_bind_int64(st, 8, row->u.output_tokens);
		sqlite3_bind_int64(st, 9, row->u.cache_read_tokens);
		sqlite3_bind_int64(st, 10, row->u.cache_write_tokens);
		sqlite3_bind_int64(st, 11, row->u.latency_ms);
		if (row->u.first_byte_ms >= 0)
			sqlite3_bind_int64(st, 12, row->u.first_byte_ms);
		bind_text(st, 13, row->u.request_id);
		bind_text(st, 14, row->u.session_id);
		bind_text(st, 15, row->u.outcome);
		if (sqlite3_step(st) != SQLITE_DONE) {
			sqlite3_reset(st);
			db_rollback();
			(void)db_end_lazy();
			goto fail;
		}
		sqlite3_reset(st);
		n++;	/* only rows inserted are removed below */
	}
	if (db_commit() == -1) {
		(void)db_end_lazy();
		goto fail;
	}
	(void)db_end_lazy();
	us.failing = 0;
	/* Committed: drop what was written. */
	while (n-- > 0 && (row = TAILQ_FIRST(&us.queue)) != NULL) {
		TAILQ_REMOVE(&us.queue, row, entry);
		usage_row_free(row);
		us.n--;
	}
	if (!TAILQ_EMPTY(&us.queue))
		return (1);
done:
	if (us.dropped > 0) {
		log_warnx("usage: %llu rows were dropped while the database "
		    "could not take them", us.dropped);
		us.dropped = 0;
	}
	return (0);
fail:
	us.failing = 1;
	now = now_mono();
	if (now - us.last_warn > 60) {
		log_warnx("usage: cannot write %zu queued rows (%s); will retry",
		    us.n, db_errmsg());
		us.last_warn = now;
	}
	return (-1);
}

/* Write everything queued now (at exit, and for tests). */
void
usage_flush(void)
{
	while (usage_write_batch() == 1)
		;
}

/*
 * The next batch after the loop has looked at the sockets again (a timer
 * of zero, not event_active, which would run before any I/O): writing
 * thousands of rows in one callback stalled every request for tens of
 * milliseconds.
 */
static void
usage_soon(void)
{
	struct timeval	zero = { 0, 0 };

	if (!us.failing && event_initialized(&us.more_ev) &&
	    !evtimer_pending(&us.more_ev, NULL))
		evtimer_add(&us.more_ev, &zero);
}

static void
usage_flush_cb(int fd, short ev, void *arg)
{
	if (usage_write_batch() == 1)
		usage_soon();
}

static void
usage_purge_cb(int fd, short ev, void *arg)
{
	sqlite3_stmt	*st = db_prepare(&st_purge);

	sqlite3_bind_int64(st, 1, (sqlite3_int64)(now_wall() -
	    (time_t)cfg->usage_retention_days * 86400));
	if (sqlite3_step(st) != SQLITE_DONE)
		log_warnx("usage: purge failed: %s", db_errmsg());
	sqlite3_reset(st);
}

int
usage_init(struct config *c, char **cause)
{
	struct timeval	one = { 1, 0 }, hour = { USAGE_PURGE_SECS, 0 };

	if (!us.started) {
		TAILQ_INIT(&us.queue);
		us.started = 1;
	}
	if (m_tokens == NULL)
		m_tokens = metric_new("bsp_tokens_total", METRIC_COUNTER,
		    "Bedrock tokens by direction (input, output, cache_read, "
		    "cache_write) and model.");
	event_assign(&us.flush_ev, bsp_base, -1, EV_PERSIST, usage_flush_cb,
	    NULL);
	event_add(&us.flush_ev, &one);
	evtimer_assign(&us.more_ev, bsp_base, usage_flush_cb, NULL);
	event_assign(&us.purge_ev, bsp_base, -1, EV_PERSIST, usage_purge_cb,
	    NULL);
	event_add(&us.purge_ev, &hour);
	return (0);
}

/* At exit: write what is left, then free. */
void
usage_free(void)
{
	struct usage_row	*row;

	if (!us.started)
		return;
	if (event_initialized(&us.flush_ev))
		event_del(&us.flush_ev);
	if (event_initialized(&us.more_ev))
		event_del(&us.more_ev);
	if (event_initialized(&us.purge_ev))
		event_del(&us.purge_ev);
	usage_flush();
	while ((row = TAILQ_FIRST(&us.queue)) != NULL) {
		TAILQ_REMOVE(&us.queue, row, entry);
		usage_row_free(row);
	}
	us.n = 0;
}

size_t
usage_queued(void)
{
	return (us.n);
}
