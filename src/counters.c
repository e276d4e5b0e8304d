/*
 * counters.c: counts that the daemons sharing one database (PostgreSQL)
 * keep together: per key (a user's or an API key's rate limit, a budget)
 * and fixed window of a period, a number of requests and of tokens.
 *
 * Nothing waits on the database: each daemon counts locally, and every
 * COUNTERS_SYNC_MS adds what it counted since (its deltas) to the row of
 * the key and window in rate_counters, in one unit, reading back the
 * totals; a total less what this daemon has added is what the others
 * counted. A count asked for is the daemon's own plus the others' as last
 * read, so a daemon learns of another's counts at most two sync periods
 * late (one for the other to write them, one for it to read the sum).
 * Keys consulted since the last sync and with nothing to add are only read
 * (an upsert of nothing would still write a row version). Rows are
 * written in the order of their key, so that two daemons' units never
 * wait on each other's row locks in opposite orders.
 *
 * With SQLite there is one daemon and nobody to share with: callers keep
 * their own counts in memory (counters_shared() says which).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <uthash.h>

#include "bsp.h"
#include "crypto.h"
#include "store.h"

#define COUNTERS_SYNC_MS	500
#define COUNTERS_PERIODS_MAX	8
#define COUNTERS_COLS		4	/* key, window, requests, tokens */
#define COUNTERS_READ_COLS	2	/* key, window_start */
#define COUNTERS_SQL_MAX	4096
#define COUNTERS_KEY_MAX	512
#define COUNTERS_KEY_LONG	200	/* longer keys are counted by hash */

/* One key's counts in one window. */
struct counter {
	char		*id;		/* "key@window", the hash key */
	char		*key;		/* rate_counters.key: "PERIOD/key" */
	long long	 window;	/* its start, Unix time */
	long long	 period;
	long long	 mine[2];	/* requests, tokens counted here */
	long long	 pushed[2];	/* of mine, in the database */
	long long	 flight[2];	/* of mine, in the unit under way */
	long long	 others[2];	/* the other daemons', as last read */
	int		 consulted;	/* since the last sync */
	UT_hash_handle	 hh;
};

/* A row of a sync: what it adds to one counter. */
struct counter_push {
	char		*id;
	char		*key;
	long long	 window;
	long long	 delta[2];
};

/*
 * A sync under way: its rows, sorted by key and window, those with deltas
 * (written) first, then those only read.
 */
struct counters_op {
	struct counter_push	*rows;
	size_t			 n;
	size_t			 nwrite;
	size_t			 next;		/* the next row to do */
	struct store_param	*p;		/* the statement's, in flight */
	store_end_cb		 done;
	void			*arg;
	unsigned int		 gen;		/* cn.gen when it started */
};

static struct {
	struct counter		*table;
	struct counters_op	*op;		/* one sync at a time */
	struct event		 sync_ev;
	int			 timer;
	long long		 periods[COUNTERS_PERIODS_MAX];
	size_t			 nperiods;
	unsigned int		 gen;		/* bumped by counters_free */
} cn;

/* The upserts, and the reads, of n rows, for these n. */
static const size_t	 counters_sizes[] = { 64, 16, 4, 1 };
static char		 counters_sql[nitems(counters_sizes)][COUNTERS_SQL_MAX];
static struct store_stmt counters_stmts[nitems(counters_sizes)];
static char		 counters_rsql[2][nitems(counters_sizes)]
			    [COUNTERS_SQL_MAX];
static struct store_stmt counters_rstmts[nitems(counters_sizes)];

static struct store_stmt st_counters_purge = STORE_STMT("DELETE FROM "
    "rate_counters WHERE window_start < $1 AND key LIKE $2");

static void	counters_step(struct store_txn *, int, void *);

/*
 * Do the daemons share counts? Only with PostgreSQL: with SQLite there is
 * one daemon, and its callers count in memory.
 */
int
counters_shared(void)
{
	return (store_kind() == STORE_PG);
}

/* The start of the window of period that holds now. */
long long
counters_window(long long period, time_t now)
{
	if (period <= 0)
		period = 1;
	return ((long long)now - (long long)now % period);
}

/* The read of n rows' totals; PostgreSQL is told the parameters' types. */
static void
counters_read_sql(char *b, size_t n, int pg)
{
	size_t	r, len;

	len = (size_t)snprintf(b, COUNTERS_SQL_MAX, "SELECT key, window_start, "
	    "requests, tokens FROM rate_counters WHERE (key, window_start) IN "
	    "(");
	for (r = 0; r < n; r++) {
		len += (size_t)snprintf(b + len, COUNTERS_SQL_MAX - len,
		    "%s($%zu%s, $%zu%s)", r == 0 ? "" : ", ",
		    r * COUNTERS_READ_COLS + 1, pg ? "::text" : "",
		    r * COUNTERS_READ_COLS + 2, pg ? "::bigint" : "");
		if (len >= COUNTERS_SQL_MAX)
			fatalx("%s: too long", __func__);
	}
	len += (size_t)snprintf(b + len, COUNTERS_SQL_MAX - len, ")");
	if (len >= COUNTERS_SQL_MAX)
		fatalx("%s: too long", __func__);
}

static void
counters_stmts_init(void)
{
	size_t	i, r, c, len;
	char	*b;

	if (counters_stmts[0].sql != NULL)
		return;
	for (i = 0; i < nitems(counters_sizes); i++) {
		b = counters_sql[i];
		len = (size_t)snprintf(b, COUNTERS_SQL_MAX, "INSERT INTO "
		    "rate_counters (key, window_start, requests, tokens) "
		    "VALUES ");
		for (r = 0; r < counters_sizes[i]; r++) {
			for (c = 0; c < COUNTERS_COLS; c++) {
				len += (size_t)snprintf(b + len,
				    COUNTERS_SQL_MAX - len, "%s$%zu%s",
				    c == 0 ? (r == 0 ? "(" : ", (") : ", ",
				    r * COUNTERS_COLS + c + 1,
				    c == COUNTERS_COLS - 1 ? ")" : "");
				if (len >= COUNTERS_SQL_MAX)
					fatalx("%s: too long", __func__);
			}
		}
		len += (size_t)snprintf(b + len, COUNTERS_SQL_MAX - len,
		    " ON CONFLICT (key, window_start) DO UPDATE SET requests = "
		    "rate_counters.requests + excluded.requests, tokens = "
		    "rate_counters.tokens + excluded.tokens RETURNING key, "
		    "window_start, requests, tokens");
		if (len >= COUNTERS_SQL_MAX)
			fatalx("%s: too long", __func__);
		counters_stmts[i].sql = b;
		counters_read_sql(counters_rsql[0][i], counters_sizes[i], 0);
		counters_read_sql(counters_rsql[1][i], counters_sizes[i], 1);
		counters_rstmts[i].sql = counters_rsql[0][i];
		counters_rstmts[i].sql_pg = counters_rsql[1][i];
	}
}

static void
counter_free(struct counter *k)
{
	HASH_DEL(cn.table, k);
	free(k->id);
	free(k->key);
	free(k);
}

static void
counters_sync_cb(int fd, short ev, void *arg)
{
	counters_sync(NULL, NULL);
}

/* The sync timer, from the first count on (in the daemon). */
static void
counters_timer_start(void)
{
	struct timeval	tv = { 0, COUNTERS_SYNC_MS * 1000 };

	if (cn.timer || bsp_base == NULL)
		return;
	event_assign(&cn.sync_ev, bsp_base, -1, EV_PERSIST, counters_sync_cb,
	    NULL);
	event_add(&cn.sync_ev, &tv);
	cn.timer = 1;
}

/*
 * The counter of key in now's window of period, made if need be. A key
 * too long to store as it is (a subject an IdP made long) is counted
 * under its hash: never left uncounted.
 */
static struct counter *
counter_get(const char *key, long long period, time_t now)
{
	struct counter	*k;
	char		 id[COUNTERS_KEY_MAX + 48], hk[64];
	uint8_t		 h[CRYPTO_HASH_LEN];
	long long	 w = counters_window(period, now);
	size_t		 i;

	if (strlen(key) > COUNTERS_KEY_LONG) {
		crypto_hash_token(key, h);
		memcpy(hk, "#", 2);
		crypto_b64url_encode(h, sizeof h, hk + 1, sizeof hk - 1);
		key = hk;
	}
	snprintf(id, sizeof id, "%lld/%s@%lld", period, key, w);
	HASH_FIND_STR(cn.table, id, k);
	if (k != NULL)
		return (k);
	k = xcalloc(1, sizeof *k);
	k->id = xstrdup(id);
	xasprintf(&k->key, "%lld/%s", period, key);
	k->window = w;
	k->period = period;
	HASH_ADD_KEYPTR(hh, cn.table, k->id, strlen(k->id), k);
	for (i = 0; i < cn.nperiods && cn.periods[i] != period; i++)
		;
	if (i == cn.nperiods && cn.nperiods < COUNTERS_PERIODS_MAX)
		cn.periods[cn.nperiods++] = period;
	counters_timer_start();
	return (k);
}

/*
 * The counts of key in now's window of period, all daemons' (the others'
 * as last read): requests in *req, tokens in *tok.
 */
void
counters_get(const char *key, long long period, time_t now, long long *req,
    long long *tok)
{
	struct counter	*k;

	k = counter_get(key, period, now);
	k->consulted = 1;
	*req = k->mine[0] + k->others[0];
	*tok = k->mine[1] + k->others[1];
}

/* Count requests and tokens for key in now's window of period. */
void
counters_add(const char *key, long long period, time_t now, long long req,
    long long tok)
{
	struct counter	*k;

	k = counter_get(key, period, now);
	k->mine[0] += req;
	k->mine[1] += tok;
}

static int
counters_push_cmp(const void *a, const void *b)
{
	const struct counter_push	*x = a, *y = b;
	int				 c, xw, yw;

	xw = x->delta[0] != 0 || x->delta[1] != 0;
	yw = y->delta[0] != 0 || y->delta[1] != 0;
	if (xw != yw)
		return (yw - xw);
	if ((c = strcmp(x->key, y->key)) != 0)
		return (c);
	return (x->window < y->window ? -1 : x->window > y->window);
}

static void
counters_op_free(struct counters_op *op)
{
	size_t	i;

	for (i = 0; i < op->n; i++) {
		free(op->rows[i].id);
		free(op->rows[i].key);
	}
	free(op->rows);
	free(op->p);
	free(op);
}

/* The sync is over: its deltas are in the database (ok), or not. */
static void
counters_op_end(struct counters_op *op, int status)
{
	struct counter	*k;
	store_end_cb	 done = op->done;
	void		*arg = op->arg;
	size_t		 i;
	int		 j;

	for (i = 0; i < op->n && op->gen == cn.gen; i++) {
		HASH_FIND_STR(cn.table, op->rows[i].id, k);
		if (k == NULL)
			continue;
		for (j = 0; j < 2; j++) {
			k->flight[j] -= op->rows[i].delta[j];
			if (status == STORE_OK)
				k->pushed[j] += op->rows[i].delta[j];
		}
	}
	if (cn.op == op)
		cn.op = NULL;
	counters_op_free(op);
	if (done != NULL)
		done(status, arg);
}

static void
counters_committed(int status, void *arg)
{
	counters_op_end(arg, status);
}

/* A row the upsert returned: the totals of a key and window. */
static void
counters_row(const struct store_row *r, void *arg)
{
	struct counter	*k;
	const char	*key = store_text(r, 0);
	char		 id[COUNTERS_KEY_MAX + 48];
	int		 n, j;

	if (key == NULL)
		return;
	n = snprintf(id, sizeof id, "%s@%lld", key, store_int(r, 1));
	if (n < 0 || (size_t)n >= sizeof id)
		return;
	HASH_FIND_STR(cn.table, id, k);
	if (k == NULL)
		return;
	/* The total holds what we had added, and this unit's deltas. */
	for (j = 0; j < 2; j++) {
		k->others[j] = store_int(r, 2 + j) - k->pushed[j] -
		    k->flight[j];
		if (k->others[j] < 0)
			k->others[j] = 0;
	}
}

/*
 * The sync's next statement: the upsert of as many rows with deltas as
 * one statement takes, then the read of as many without.
 */
static void
counters_step(struct store_txn *t, int status, void *arg)
{
	struct counters_op	*op = arg;
	struct counter_push	*row;
	struct store_stmt	*st;
	size_t			 i, k, size, left, cols;
	int			 write;

	if (t == NULL || status != STORE_OK) {
		if (t != NULL)
			store_rollback(t);
		counters_op_end(op, status != STORE_OK ? status : STORE_ERROR);
		return;
	}
	if ((left = op->n - op->next) == 0) {
		store_commit(t, counters_committed, op);
		return;
	}
	write = op->next < op->nwrite;
	if (write)
		left = op->nwrite - op->next;
	for (i = 0; counters_sizes[i] > left; i++)
		;
	size = counters_sizes[i];
	cols = write ? COUNTERS_COLS : COUNTERS_READ_COLS;
	st = write ? &counters_stmts[i] : &counters_rstmts[i];
	free(op->p);
	op->p = xcalloc(size * cols, sizeof *op->p);
	for (k = 0; k < size; k++) {
		row = &op->rows[op->next++];
		op->p[k * cols] = (struct store_param)SP_TEXT(row->key);
		op->p[k * cols + 1] = (struct store_param)SP_INT(row->window);
		if (!write)
			continue;
		op->p[k * cols + 2] = (struct store_param)SP_INT(row->delta[0]);
		op->p[k * cols + 3] = (struct store_param)SP_INT(row->delta[1]);
	}
	store_exec(t, st, op->p, size * cols, counters_row, counters_step, op);
}

/*
 * Add what was counted here since the last sync to the database, and read
 * back the totals of the keys consulted since; done(status, arg) when it
 * is over (at once when there is nothing to do, or a sync is under way).
 * Counters of windows that are over, with nothing left to add, go.
 */
void
counters_sync(store_end_cb done, void *arg)
{
	struct counter		*k, *tmp;
	struct counters_op	*op;
	struct counter_push	*row;
	long long		 d[2];
	time_t			 now = now_wall();
	size_t			 n = 0;
	int			 j, want;

	if (cn.op != NULL || !counters_shared()) {
		if (done != NULL)
			done(STORE_OK, arg);
		return;
	}
	HASH_ITER(hh, cn.table, k, tmp) {
		want = 0;
		for (j = 0; j < 2; j++) {
			d[j] = k->mine[j] - k->pushed[j] - k->flight[j];
			if (d[j] != 0)
				want = 1;
		}
		if (!want && k->flight[0] == 0 && k->flight[1] == 0 &&
		    k->window + k->period <= (long long)now) {
			counter_free(k);
			continue;
		}
		if (want || k->consulted)
			n++;
	}
	if (n == 0) {
		if (done != NULL)
			done(STORE_OK, arg);
		return;
	}
	op = xcalloc(1, sizeof *op);
	op->rows = xcalloc(n, sizeof *op->rows);
	HASH_ITER(hh, cn.table, k, tmp) {
		want = k->consulted;
		for (j = 0; j < 2; j++) {
			d[j] = k->mine[j] - k->pushed[j] - k->flight[j];
			if (d[j] != 0)
				want = 1;
		}
		if (!want || op->n == n)
			continue;
		row = &op->rows[op->n++];
		row->id = xstrdup(k->id);
		row->key = xstrdup(k->key);
		row->window = k->window;
		for (j = 0; j < 2; j++) {
			row->delta[j] = d[j];
			k->flight[j] += d[j];
		}
		k->consulted = 0;
	}
	qsort(op->rows, op->n, sizeof *op->rows, counters_push_cmp);
	for (op->nwrite = 0; op->nwrite < op->n; op->nwrite++) {
		row = &op->rows[op->nwrite];
		if (row->delta[0] == 0 && row->delta[1] == 0)
			break;
	}
	op->done = done;
	op->arg = arg;
	op->gen = cn.gen;
	cn.op = op;
	counters_stmts_init();
	store_begin(op->nwrite > 0 ? STORE_WRITE : 0, counters_step, op);
}

static void
counters_purged(int status, void *arg)
{
	if (status != STORE_OK)
		log_warnx("cannot purge old rate counters");
}

/* Housekeeping: the rows of windows long over, of every period in use. */
void
counters_maint(time_t now)
{
	char	like[32];
	size_t	i;

	if (!counters_shared())
		return;
	for (i = 0; i < cn.nperiods; i++) {
		snprintf(like, sizeof like, "%lld/%%", cn.periods[i]);
		{
			struct store_param p[] = {
				SP_INT((long long)now - 2 * cn.periods[i]),
				SP_TEXT(like),
			};

			store_run(STORE_WRITE, &st_counters_purge, p,
			    nitems(p), NULL, counters_purged, NULL);
		}
	}
}

/*
 * Forget every count. A sync under way ends later, on its own (it finds
 * no counter to update).
 */
void
counters_free(void)
{
	struct counter	*k, *tmp;

	if (cn.timer)
		event_del(&cn.sync_ev);
	cn.timer = 0;
	HASH_ITER(hh, cn.table, k, tmp)
		counter_free(k);
	cn.op = NULL;
	cn.nperiods = 0;
	cn.gen++;
}
