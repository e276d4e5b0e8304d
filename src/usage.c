/*
 * usage.c: usage rows for every Bedrock call, written in batches.
 *
 * A finished call (complete, failed upstream, or abandoned by its client)
 * queues one row; a timer writes the queue every second (and a full
 * batch at once), a batch of at most 512 rows a unit of work, as
 * multi-row INSERTs (statements made once for 64, 16, 4 and 1 rows),
 * one statement a turn of the loop, so no request ever waits on the
 * database for long. If the database refuses (a full disk, a server
 * down), rows stay queued and are retried; the queue is bounded and the
 * oldest rows are dropped, counted (bsp_usage_rows_dropped_total) and
 * logged, past the bound. Each row carries a key of its own: with
 * PostgreSQL, unique in the table, so that a batch whose commit went
 * unacknowledged (the connection to the server lost meanwhile) is
 * written again without adding a row twice. The key is the time in
 * microseconds, then random bytes (as a UUIDv7 is), so that its index
 * grows at one end: a random key put each row of a batch in a page of
 * its own. SQLite's commit is never in doubt (a COMMIT that fails leaves
 * nothing behind), so there the key has no index (schema 7) and the
 * INSERT no ON CONFLICT: a fourth B-tree to insert each row into, for
 * nothing. Rows older than usage.retention_days are purged every hour.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "bsp.h"
#include "crypto.h"
#include "store.h"

#define USAGE_QUEUE_MAX		100000
#define USAGE_BATCH		512
#define USAGE_PURGE_SECS	3600
#define USAGE_COLS		18	/* the parameters of a row */
#define USAGE_SQL_MAX		12288
#define USAGE_KEY_LEN		16	/* a row's key: time, random */
#define USAGE_KEY_TIME		8	/* of it, the time */

/* A queued row: the numbers, and copies of the strings it owns. */
struct usage_row {
	struct usage		 u;
	uint8_t			 key[USAGE_KEY_LEN];
	char			*s[7];
	TAILQ_ENTRY(usage_row)	 entry;
};
TAILQ_HEAD(usage_rows, usage_row);

/* A batch being written: its rows, out of the queue until it is over. */
struct usage_batch {
	struct usage_rows	 rows;
	size_t			 n;
	struct usage_row	*next;		/* the next to insert */
	size_t			 left;
};

static struct {
	struct usage_rows	 queue;
	size_t			 n;		/* queued and being written */
	unsigned long long	 dropped;
	struct event		 flush_ev;
	struct event		 more_ev;	/* the next batch, soon */
	struct event		 step_ev;	/* the batch's next statement */
	struct store_txn	*step_txn;
	struct usage_batch	*step_batch;
	int			 in_exec;	/* within store_exec() */
	struct event		 purge_ev;
	int			 started;
	int			 failing;	/* retry on the 1 s tick only */
	double			 last_warn;
	struct usage_batch	*batch;		/* being written */
	size_t			 tick_left;	/* of the rows of the last tick */
	int			 starting;	/* within usage_write_batch */
	int			 batch_rc;	/* of the last batch */
	volatile int		 batch_over;
} us;

/* The multi-row INSERTs, for these numbers of rows, by store_kind(). */
static const size_t	 usage_sizes[] = { 64, 16, 4, 1 };
static char		 usage_sql[2][nitems(usage_sizes)][USAGE_SQL_MAX];
static struct store_stmt usage_stmts[2][nitems(usage_sizes)];

static struct store_stmt st_purge = STORE_STMT("DELETE FROM usage WHERE ts "
    "< $1");
static struct store_stmt st_by_day = STORE_STMT("SELECT (ts / 86400) * 86400 "
    "AS d, model, count(*), sum(input_tokens), sum(output_tokens), "
    "sum(cache_read_tokens), sum(cache_write_tokens), sum(cost_micros), "
    "sum(CASE WHEN cost_micros IS NULL THEN 1 ELSE 0 END) FROM usage WHERE "
    "user_id = $1 AND ts >= $2 GROUP BY d, model ORDER BY d DESC, model "
    "LIMIT $3");

struct metric	*m_tokens;
static struct metric	*m_usage_dropped;

static void	usage_soon(void);
static void	usage_step(struct store_txn *, int, void *);

/* Rows queued and not in the batch being written. */
static size_t
usage_waiting(void)
{
	return (us.n - (us.batch != NULL ? us.batch->n : 0));
}

/*
 * Whether the next batch is written as soon as this one is over: when
 * rows queued before the last tick still wait, or a full batch does.
 * Not for the few rows recorded while the last batch was written (its
 * statements take a turn each): under load that made a busy daemon
 * commit every few turns, a BEGIN, a COMMIT and the same index pages
 * to the WAL again each time, for a handful of rows.
 */
static int
usage_more(void)
{
	return (us.tick_left > 0 || usage_waiting() >= USAGE_BATCH);
}

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

static void
usage_start(void)
{
	if (!us.started) {
		TAILQ_INIT(&us.queue);
		us.started = 1;
	}
}

/*
 * The texts of the INSERTs of n rows for a kind of store: placeholders
 * only, numbered in order, made from constants once; ON CONFLICT where
 * the key is unique (PostgreSQL).
 */
static struct store_stmt *
usage_stmts_init(enum store_kind kind)
{
	struct store_stmt	*st = usage_stmts[kind == STORE_PG];
	size_t			 i, r, c, len;
	char			*b;

	if (st[0].sql != NULL)
		return (st);
	for (i = 0; i < nitems(usage_sizes); i++) {
		b = usage_sql[kind == STORE_PG][i];
		len = (size_t)snprintf(b, USAGE_SQL_MAX, "INSERT INTO usage "
		    "(ts, user_id, api_key_id, model, route, status, "
		    "input_tokens, output_tokens, cache_read_tokens, "
		    "cache_write_tokens, latency_ms, first_byte_ms, "
		    "request_id, session_id, outcome, row_key, "
		    "cache_write_1h_tokens, cost_micros) VALUES ");
		for (r = 0; r < usage_sizes[i]; r++) {
			for (c = 0; c < USAGE_COLS; c++) {
				len += (size_t)snprintf(b + len,
				    USAGE_SQL_MAX - len, "%s$%zu%s",
				    c == 0 ? (r == 0 ? "(" : ", (") : ", ",
				    r * USAGE_COLS + c + 1,
				    c == USAGE_COLS - 1 ? ")" : "");
				if (len >= USAGE_SQL_MAX)
					fatalx("%s: too long", __func__);
			}
		}
		if (kind == STORE_PG)
			len += (size_t)snprintf(b + len, USAGE_SQL_MAX - len,
			    " ON CONFLICT (row_key) DO NOTHING");
		if (len >= USAGE_SQL_MAX)
			fatalx("%s: too long", __func__);
		st[i].sql = b;
	}
	return (st);
}

/*
 * bsp_tokens_total{direction,model}; nothing for a zero count. The
 * series of the last model are kept (calls mostly name the same one):
 * two labels made and found a call took 1 % of the relay's CPU.
 */
static void
usage_count_tokens(const struct usage *u)
{
	static const char *const directions[] = {
		"input", "output", "cache_read", "cache_write"
	};
	static struct {
		char			 model[256];
		struct metric_series	*s[nitems(directions)];
	} last;
	long long	 n[nitems(directions)] = { u->input_tokens,
			    u->output_tokens, u->cache_read_tokens,
			    u->cache_write_tokens };
	const char	*model = u->model != NULL ? u->model : "";
	char		 labels[512];
	size_t		 i;
	int		 keep;

	keep = strlen(model) < sizeof last.model;
	if (!keep || strcmp(last.model, model) != 0) {
		memset(&last, 0, sizeof last);
		if (keep)
			bsp_strlcpy(last.model, model, sizeof last.model);
	}
	for (i = 0; i < nitems(directions); i++) {
		if (n[i] <= 0)
			continue;
		if (last.s[i] == NULL) {
			metric_label(labels, sizeof labels, "direction",
			    directions[i], "model", model, NULL);
			last.s[i] = metric_get(m_tokens, labels);
		}
		metric_series_add(last.s[i], (double)n[i]);
	}
	if (!keep)
		memset(&last, 0, sizeof last);
}

/* A row that could not wait any longer. */
static void
usage_dropped(void)
{
	us.dropped++;
	if (m_usage_dropped != NULL)
		metric_add(m_usage_dropped, NULL, 1);
}

/*
 * A row's key: the wall clock in microseconds, big-endian (rows of one
 * batch sort together, after those before them), then random bytes,
 * which keep keys made in the same microsecond, or by another daemon,
 * or after the clock stepped back, apart.
 */
static void
usage_row_key(uint8_t key[USAGE_KEY_LEN])
{
	struct timespec	ts;
	uint64_t	micros;
	size_t		i;

	clock_gettime(CLOCK_REALTIME, &ts);
	micros = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
	for (i = 0; i < USAGE_KEY_TIME; i++)
		key[i] = (uint8_t)(micros >> (8 * (USAGE_KEY_TIME - 1 - i)));
	crypto_random(key + USAGE_KEY_TIME, USAGE_KEY_LEN - USAGE_KEY_TIME);
}

/* Queue one call's usage; counts tokens for the metrics at once. */
void
usage_record(const struct usage *u)
{
	struct usage_row	*row;

	usage_start();
	if (m_tokens != NULL)
		usage_count_tokens(u);
	if (us.n >= USAGE_QUEUE_MAX) {
		/* The oldest waiting row goes (not one being written). */
		if ((row = TAILQ_FIRST(&us.queue)) == NULL) {
			usage_dropped();
			return;
		}
		TAILQ_REMOVE(&us.queue, row, entry);
		usage_row_free(row);
		us.n--;
		usage_dropped();
	}
	row = xcalloc(1, sizeof *row);
	row->u = *u;
	usage_row_key(row->key);
	row->u.user_id = row->s[0] = dup_or_null(u->user_id);
	row->u.api_key_id = row->s[1] = dup_or_null(u->api_key_id);
	row->u.model = row->s[2] = dup_or_null(u->model);
	row->u.route = row->s[3] = dup_or_null(u->route);
	row->u.request_id = row->s[4] = dup_or_null(u->request_id);
	row->u.session_id = row->s[5] = dup_or_null(u->session_id);
	row->u.outcome = row->s[6] = dup_or_null(u->outcome);
	TAILQ_INSERT_TAIL(&us.queue, row, entry);
	us.n++;
	if (usage_more())
		usage_soon();
}

/* A row's parameters, at p. */
static void
usage_params(const struct usage_row *row, struct store_param *p)
{
	const struct usage	*u = &row->u;
	struct store_param	 v[USAGE_COLS] = {
		SP_INT(u->ts), SP_TEXT(u->user_id), SP_TEXT(u->api_key_id),
		SP_TEXT(u->model), SP_TEXT(u->route), SP_INT(u->status),
		SP_INT(u->input_tokens), SP_INT(u->output_tokens),
		SP_INT(u->cache_read_tokens), SP_INT(u->cache_write_tokens),
		SP_INT(u->latency_ms), SP_NULL, SP_TEXT(u->request_id),
		SP_TEXT(u->session_id), SP_TEXT(u->outcome),
		SP_BLOB(row->key, sizeof row->key),
		SP_INT(u->cache_write_1h_tokens), SP_NULL,
	};

	if (u->first_byte_ms >= 0)
		v[11] = (struct store_param)SP_INT(u->first_byte_ms);
	if (u->cost_micros >= 0)
		v[17] = (struct store_param)SP_INT(u->cost_micros);
	memcpy(p, v, sizeof v);
}

/*
 * The batch is over: written (its rows go), or refused (they go back to
 * the head of the queue, for the next try).
 */
static void
usage_batch_end(struct usage_batch *b, int ok)
{
	struct usage_row	*row;
	double			 now;

	us.batch = NULL;
	if (ok) {
		us.failing = 0;
		us.tick_left -= b->n < us.tick_left ? b->n : us.tick_left;
		while ((row = TAILQ_FIRST(&b->rows)) != NULL) {
			TAILQ_REMOVE(&b->rows, row, entry);
			usage_row_free(row);
			us.n--;
		}
		if (!TAILQ_EMPTY(&us.queue))
			us.batch_rc = 1;
		else {
			us.batch_rc = 0;
			if (us.dropped > 0) {
				log_warnx("usage: %llu rows were dropped while "
				    "the database could not take them",
				    us.dropped);
				us.dropped = 0;
			}
		}
	} else {
		while ((row = TAILQ_LAST(&b->rows, usage_rows)) != NULL) {
			TAILQ_REMOVE(&b->rows, row, entry);
			TAILQ_INSERT_HEAD(&us.queue, row, entry);
		}
		us.failing = 1;
		us.batch_rc = -1;
		now = now_mono();
		if (now - us.last_warn > 60) {
			log_warnx("usage: cannot write %zu queued rows; will "
			    "retry", us.n);
			us.last_warn = now;
		}
	}
	free(b);
	us.batch_over = 1;
	/* Over on a later turn (PostgreSQL): the next batch, soon. */
	if (!us.starting && us.batch_rc == 1 && usage_more())
		usage_soon();
}

static void
usage_committed(int status, void *arg)
{
	usage_batch_end(arg, status == STORE_OK);
}

/* The batch's next INSERT, as many rows as one statement takes. */
static void
usage_insert(struct store_txn *t, struct usage_batch *b)
{
	struct store_param	*p;
	size_t			 i, k, size;

	for (i = 0; usage_sizes[i] > b->left; i++)
		;
	size = usage_sizes[i];
	p = xcalloc(size * USAGE_COLS, sizeof *p);
	for (k = 0; k < size; k++) {
		usage_params(b->next, p + k * USAGE_COLS);
		b->next = TAILQ_NEXT(b->next, entry);
	}
	b->left -= size;
	/* The parameters are copied: p is ours to free. */
	us.in_exec = 1;
	store_exec(t, &usage_stmts_init(store_kind())[i], p, size * USAGE_COLS,
	    NULL, usage_step, b);
	us.in_exec = 0;
	free(p);
}

/* The next INSERT, or the COMMIT, of the batch. */
static void
usage_next(struct store_txn *t, struct usage_batch *b)
{
	if (b->left == 0)
		store_commit(t, usage_committed, b);
	else
		usage_insert(t, b);
}

static void
usage_step_cb(int fd, short ev, void *arg)
{
	usage_next(us.step_txn, us.step_batch);
}

/*
 * A statement of the batch is done: the next one. With SQLite it was
 * done at once, within store_exec(), so the next one waits for the next
 * turn of the loop: one statement (at most 64 rows, ~0.4 ms) a turn
 * instead of the whole batch (512 rows took up to 4 ms, and every
 * connection waited). The unit stays open across those turns; the
 * store's other units wait for it, as they would behind one long one.
 */
static void
usage_step(struct store_txn *t, int status, void *arg)
{
	struct usage_batch	*b = arg;
	struct timeval		 zero = { 0, 0 };

	if (t == NULL || status != STORE_OK) {
		if (t != NULL)
			store_rollback(t);
		usage_batch_end(b, 0);
		return;
	}
	if (us.in_exec && event_initialized(&us.step_ev)) {
		us.step_txn = t;
		us.step_batch = b;
		evtimer_add(&us.step_ev, &zero);
		return;
	}
	usage_next(t, b);
}

/*
 * Start writing one batch. Returns 1 if rows remain after it, 0 when the
 * queue is empty, -1 when the database refused (rows are kept for the
 * next try), 2 while it is being written (PostgreSQL: the next batch
 * follows when it is over).
 */
static int
usage_write_batch(void)
{
	struct usage_batch	*b;
	struct usage_row	*row;

	usage_start();
	if (us.batch != NULL)
		return (2);
	if (TAILQ_EMPTY(&us.queue)) {
		us.tick_left = 0;
		if (us.dropped > 0) {
			log_warnx("usage: %llu rows were dropped while the "
			    "database could not take them", us.dropped);
			us.dropped = 0;
		}
		return (0);
	}
	b = xcalloc(1, sizeof *b);
	TAILQ_INIT(&b->rows);
	while (b->n < USAGE_BATCH && (row = TAILQ_FIRST(&us.queue)) != NULL) {
		TAILQ_REMOVE(&us.queue, row, entry);
		TAILQ_INSERT_TAIL(&b->rows, row, entry);
		b->n++;
	}
	b->next = TAILQ_FIRST(&b->rows);
	b->left = b->n;
	us.batch = b;
	us.batch_over = 0;
	us.starting = 1;
	/* Rows a power cut may take, as a crash takes the queue. */
	store_begin(STORE_WRITE | STORE_LAZY, usage_step, b);
	us.starting = 0;
	return (us.batch_over ? us.batch_rc : 2);
}

/* Write everything queued now (at exit, and for tests). */
void
usage_flush(void)
{
	int	rc;

	for (;;) {
		rc = usage_write_batch();
		if (rc == 2) {
			if (bsp_base == NULL)
				return;
			store_wait(&us.batch_over);
			rc = us.batch_rc;
		}
		if (rc != 1)
			return;
	}
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
	if (usage_write_batch() == 1 && usage_more())
		usage_soon();
}

/*
 * Every second: all the rows queued now, batch after batch. Those of a
 * batch being written count too: its end takes its rows off.
 */
static void
usage_tick_cb(int fd, short ev, void *arg)
{
	us.tick_left = us.n;
	usage_flush_cb(fd, ev, arg);
}

/* The 1 s tick stopped (0) or started again (1): for tests. */
void
usage_set_tick(int on)
{
	struct timeval	one = { 1, 0 };

	if (!event_initialized(&us.flush_ev))
		return;
	if (on)
		event_add(&us.flush_ev, &one);
	else
		event_del(&us.flush_ev);
}

static void
usage_purged(int status, void *arg)
{
	if (status != STORE_OK)
		log_warnx("usage: purge failed");
}

/* Drop rows older than cutoff; done(status, arg) if given. */
void
usage_purge(time_t cutoff, store_end_cb done, void *arg)
{
	struct store_param	p[] = { SP_INT(cutoff) };

	store_run(STORE_WRITE, &st_purge, p, nitems(p), NULL, done != NULL ?
	    done : usage_purged, arg);
}

static void
usage_purge_cb(int fd, short ev, void *arg)
{
	usage_purge(now_wall() - (time_t)cfg->usage_retention_days * 86400,
	    NULL, NULL);
}

int
usage_init(struct config *c, char **cause)
{
	struct timeval	one = { 1, 0 }, hour = { USAGE_PURGE_SECS, 0 };

	usage_start();
	if (m_tokens == NULL)
		m_tokens = metric_new("bsp_tokens_total", METRIC_COUNTER,
		    "Bedrock tokens by direction (input, output, cache_read, "
		    "cache_write) and model.");
	if (m_usage_dropped == NULL)
		m_usage_dropped = metric_new("bsp_usage_rows_dropped_total",
		    METRIC_COUNTER, "Usage rows dropped because the database "
		    "could not take them before the queue was full.");
	event_assign(&us.flush_ev, bsp_base, -1, EV_PERSIST, usage_tick_cb,
	    NULL);
	event_add(&us.flush_ev, &one);
	evtimer_assign(&us.more_ev, bsp_base, usage_flush_cb, NULL);
	evtimer_assign(&us.step_ev, bsp_base, usage_step_cb, NULL);
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
	usage_flush();		/* a batch being written ends first */
	if (event_initialized(&us.step_ev))
		event_del(&us.step_ev);
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

/* One user's usage by day and model. */
struct by_day_op {
	json_t		*a;
	void		(*cb)(int, json_t *, void *);
	void		*arg;
};

static void
by_day_row(const struct store_row *r, void *arg)
{
	struct by_day_op	*op = arg;
	json_t			*o;

	o = json_pack("{s:I,s:s?,s:I,s:I,s:I,s:I,s:I,s:I}", "day",
	    (json_int_t)store_int(r, 0), "model", store_text(r, 1),
	    "requests", (json_int_t)store_int(r, 2), "input_tokens",
	    (json_int_t)store_int(r, 3), "output_tokens",
	    (json_int_t)store_int(r, 4), "cache_read_tokens",
	    (json_int_t)store_int(r, 5), "cache_write_tokens",
	    (json_int_t)store_int(r, 6), "unpriced",
	    (json_int_t)store_int(r, 8));
	/* The calls with a price: their cost; none of them, null. */
	json_object_set_new(o, "cost_micros", store_null(r, 7) ? json_null() :
	    json_integer((json_int_t)store_int(r, 7)));
	json_array_append_new(op->a, o);
}

static void
by_day_done(int status, void *arg)
{
	struct by_day_op	*op = arg;

	if (status != STORE_OK) {
		json_decref(op->a);
		op->cb(-2, NULL, op->arg);
	} else
		op->cb(0, op->a, op->arg);
	free(op);
}

/*
 * A user's usage since a time, by UTC day and model, newest day first, at
 * most max rows: cb(0, rows, arg) (the callback owns them: day, model,
 * requests, the four token counts, cost_micros of the calls with a price
 * or null, and unpriced, the calls without), or cb(-2, NULL, arg) if the
 * database failed. Rows still queued here are not in it yet.
 */
void
usage_by_day(const char *user_id, time_t since, int max,
    void (*cb)(int, json_t *, void *), void *arg)
{
	struct by_day_op	*op;
	struct store_param	 p[] = { SP_TEXT(user_id), SP_INT(since),
				    SP_INT(max) };

	op = xcalloc(1, sizeof *op);
	op->a = json_array();
	op->cb = cb;
	op->arg = arg;
	store_run(0, &st_by_day, p, nitems(p), by_day_row, by_day_done, op);
}
