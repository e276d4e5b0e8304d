/*
 * store-pg.c: the store on PostgreSQL, for several daemons sharing one
 * database.
 *
 * Everything goes through libpq's asynchronous API on the one loop: a
 * connection's socket is watched by an event, commands are sent with
 * PQsendQuery/PQsendPrepare/PQsendQueryPrepared, answers read with
 * PQconsumeInput, PQisBusy and PQgetResult; nothing waits. A small pool
 * of connections (database.pool_size) runs units of work, one each; a
 * unit asked for while all are busy waits in a queue, up to
 * database.timeout. Statements are prepared once per connection,
 * parameters always bound. A connection that fails is dropped (its unit
 * gets STORE_UNAVAILABLE) and made again after a backoff; a statement
 * that hangs past database.timeout drops its connection the same way
 * (statement_timeout makes the server end it first).
 *
 * The first connection to come up takes an advisory lock and brings the
 * schema to this binary's version (database.migrate: auto), so that
 * several daemons starting at once migrate exactly once; a database newer
 * than the binary is refused. One more connection LISTENs: a unit that
 * changes what the daemons keep in memory bumps a counter and sends a
 * NOTIFY with its commit, which wakes every daemon's watchers at once;
 * the counter, read every few seconds, is the safety net.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <netdb.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <libpq-fe.h>

#include "bsp.h"
#include "store-int.h"


#define PG_POOL_MAX		64
#define PG_BACKOFF_MIN		0.5
#define PG_BACKOFF_MAX		30.0
#define PG_CHECK_SECS		5	/* the safety net's period */
#define PG_LOCK_ID		"7392105511"	/* the migration lock */
#define PG_CHANNEL		"bsp_changes"
#define PG_SQLSTATE_UNIQUE	"23505"
#define PG_PARAMS_MAX		4096	/* a statement's; usage batches */

enum pgc_state {
	PGC_DOWN,
	PGC_RESOLVING,		/* the host's name, with evdns */
	PGC_CONNECTING,
	PGC_SETUP,		/* settings, schema, LISTEN */
	PGC_IDLE,
	PGC_BUSY,
};

enum pgc_cmd {
	CMD_NONE,
	CMD_SETUP,
	CMD_BEGIN,
	CMD_PREPARE,
	CMD_EXEC,
	CMD_COMMIT,
	CMD_ROLLBACK,
	CMD_CHECK,
};

struct pg_txn;

struct pg_conn {
	PGconn		*pg;
	enum pgc_state	 state;
	int		 listener;
	int		 fd;
	struct event	 io_ev;
	int		 io_on;
	short		 io_what;
	struct event	 timer_ev;	/* backoff, connect, command */
	double		 backoff;
	enum pgc_cmd	 cmd;
	int		 setup_step;
	PGresult	*res;		/* the first failed or last result */
	int		 nres;
	uint8_t		*prepared;	/* by statement id */
	size_t		 nprepared;
	struct pg_txn	*txn;
	struct evdns_getaddrinfo_request *dns;
	char		 hostaddr[64];
	char		 id[24];
};

struct pg_txn {
	struct store_txn	 t;
	struct pg_conn		*c;
	store_step_cb		 begin_cb;
	void			*begin_arg;
	/* the statement being run */
	struct store_stmt	*st;
	const struct store_param *p;
	size_t			 n;
	store_row_cb		 row;
	store_step_cb		 done;
	void			*arg;
	store_end_cb		 end_cb;
	void			*end_arg;
	double			 queued_at;
	TAILQ_ENTRY(pg_txn)	 entry;
};

static struct {
	struct store_conf	 conf;
	int			 open;
	char			*resolve;	/* a host name libpq would
						   look up by blocking */
	struct pg_conn		 conns[PG_POOL_MAX];
	size_t			 nconns;
	struct pg_conn		 listen;
	int			 schema_ok;	/* checked and migrated */
	int			 was_up;	/* a pool connection is up */
	int			 failing;	/* an outage, said once */
	double			 failing_since;
	char			 last_error[160];	/* said for it */
	int			 listening;	/* the listener is up */
	double			 synced_at;	/* state known current */
	int			 schema_version;
	int			 schema_busy;	/* a connection migrates */
	const char		*problem;	/* why not ready (static) */
	TAILQ_HEAD(, pg_txn)	 queue;
	struct event		 queue_ev;	/* the oldest waiter's limit */
	int			 watching;
	struct event		 check_ev;
	long long		 changes;	/* bsp_meta's counter */
	int			 changes_known;
	struct store_stmt	*stmts[1024];
	int			 nstmts;
} pg;

static void	pgc_connect(struct pg_conn *);
static void	pgc_connect_addr(struct pg_conn *);
static void	pgc_fail(struct pg_conn *, const char *);
static void	pgc_send(struct pg_conn *);
static void	pgc_io(struct pg_conn *, short);
static void	pg_assign(void);
static int	pg_any_up(void);

/* Rows: text format, bytea as "\x" and hex. */
struct pg_row {
	PGresult	*res;
	int		 i;
	uint8_t		*blobs[16];
};

static int
pgr_ncols(const struct store_row *r)
{
	return (PQnfields(((struct pg_row *)r->a)->res));
}

static int
pgr_null(const struct store_row *r, int i)
{
	struct pg_row	*pr = r->a;

	return (PQgetisnull(pr->res, pr->i, i));
}

static long long
pgr_integer(const struct store_row *r, int i)
{
	struct pg_row	*pr = r->a;
	const char	*v;

	if (PQgetisnull(pr->res, pr->i, i))
		return (0);
	v = PQgetvalue(pr->res, pr->i, i);
	if (strcmp(v, "t") == 0)
		return (1);
	if (strcmp(v, "f") == 0)
		return (0);
	return (strtoll(v, NULL, 10));
}

static const char *
pgr_text(const struct store_row *r, int i)
{
	struct pg_row	*pr = r->a;

	if (PQgetisnull(pr->res, pr->i, i))
		return (NULL);
	return (PQgetvalue(pr->res, pr->i, i));
}

static int
pg_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return (c - '0');
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return (c - 'a' + 10);
	return (-1);
}

static const uint8_t *
pgr_blob(const struct store_row *r, int i, size_t *len)
{
	struct pg_row	*pr = r->a;
	const char	*v;
	size_t		 n, k;
	uint8_t		*out;
	int		 hi, lo;

	*len = 0;
	if (PQgetisnull(pr->res, pr->i, i) || i < 0 ||
	    (size_t)i >= nitems(pr->blobs))
		return (NULL);
	v = PQgetvalue(pr->res, pr->i, i);
	n = strlen(v);
	if (n < 2 || v[0] != '\\' || v[1] != 'x' || n % 2 != 0)
		return (NULL);	/* bytea_output is hex on every connection */
	free(pr->blobs[i]);
	out = pr->blobs[i] = xmalloc(n / 2 + 1);
	for (k = 2; k < n; k += 2) {
		if ((hi = pg_hexval((unsigned char)v[k])) == -1 ||
		    (lo = pg_hexval((unsigned char)v[k + 1])) == -1)
			return (NULL);
		out[(k - 2) / 2] = (uint8_t)(hi << 4 | lo);
	}
	*len = (n - 2) / 2;
	return (out);
}

static const struct store_row_ops pg_row_ops = {
	pgr_ncols, pgr_null, pgr_integer, pgr_text, pgr_blob
};

/* The event on a connection's socket, for what libpq waits for. */
static void
pgc_io_cb(int fd, short ev, void *arg)
{
	pgc_io(arg, ev);
}

static void
pgc_watch(struct pg_conn *c, short what)
{
	int	fd = PQsocket(c->pg);

	if (c->io_on && (c->fd != fd || c->io_what != what)) {
		event_del(&c->io_ev);
		c->io_on = 0;
	}
	if (fd < 0 || c->io_on)
		return;
	event_assign(&c->io_ev, bsp_base, fd, what | EV_PERSIST, pgc_io_cb, c);
	if (event_add(&c->io_ev, NULL) == 0) {
		c->io_on = 1;
		c->fd = fd;
		c->io_what = what;
	}
}

static void
pgc_timer(struct pg_conn *c, double secs)
{
	struct timeval	tv;

	tv.tv_sec = (time_t)secs;
	tv.tv_usec = (suseconds_t)((secs - (double)tv.tv_sec) * 1e6);
	evtimer_add(&c->timer_ev, &tv);
}

/* A command is under way: watch for its answer, bounded in time. */
static void
pgc_sent(struct pg_conn *c, enum pgc_cmd cmd)
{
	int	rc;

	c->cmd = cmd;
	c->nres = 0;
	if ((rc = PQflush(c->pg)) == -1) {
		pgc_fail(c, PQerrorMessage(c->pg));
		return;
	}
	pgc_watch(c, rc == 1 ? EV_READ | EV_WRITE : EV_READ);
	pgc_timer(c, (double)pg.conf.timeout + 5);
}

static int
pgc_query(struct pg_conn *c, const char *sql, enum pgc_cmd cmd)
{
	if (!PQsendQuery(c->pg, sql)) {
		pgc_fail(c, PQerrorMessage(c->pg));
		return (-1);
	}
	pgc_sent(c, cmd);
	return (0);
}

/* Hand the unit's callbacks their answer; the unit may end in them. */
static void
pgt_step(struct pg_txn *x, int status)
{
	store_step_cb	 cb = x->done;

	x->done = NULL;
	cb(&x->t, status, x->arg);
}

static void
pgt_free(struct pg_txn *x)
{
	free(x);
}

/* The connection is free again: the next waiting unit gets it. */
static void
pgc_release(struct pg_conn *c)
{
	c->txn = NULL;
	c->cmd = CMD_NONE;
	if (c->state == PGC_BUSY)
		c->state = PGC_IDLE;
	evtimer_del(&c->timer_ev);
	pg_assign();
}

/* Fail whatever the connection was doing for its unit. */
static void
pgc_fail_txn(struct pg_conn *c)
{
	struct pg_txn	*x = c->txn;
	enum pgc_cmd	 cmd = c->cmd;
	store_end_cb	 end;
	void		*arg;

	if (x == NULL)
		return;
	c->txn = NULL;
	x->c = NULL;
	switch (cmd) {
	case CMD_BEGIN:
		x->begin_cb(NULL, STORE_UNAVAILABLE, x->begin_arg);
		pgt_free(x);
		break;
	case CMD_PREPARE:
	case CMD_EXEC:
		/* The caller rolls back, which frees x. */
		pgt_step(x, STORE_UNAVAILABLE);
		break;
	case CMD_COMMIT:
		end = x->end_cb;
		arg = x->end_arg;
		pgt_free(x);
		if (end != NULL)
			end(STORE_UNAVAILABLE, arg);
		break;
	default:
		/* Between statements: the next call finds it down. */
		break;
	}
}

static void
pgc_backoff_cb(int fd, short ev, void *arg)
{
	struct pg_conn	*c = arg;

	if (c->state == PGC_DOWN)
		pgc_connect(c);
	else if (c->state == PGC_SETUP && c->cmd == CMD_NONE)
		pgc_send(c);	/* another connection was migrating */
	else {
		/* A connect or a command that took too long. */
		pgc_fail(c, c->state == PGC_CONNECTING ||
		    c->state == PGC_RESOLVING ? "connection timed out" :
		    "no answer within database.timeout");
	}
}

/* Drop a connection; make it again after a backoff. */
static void
pgc_fail(struct pg_conn *c, const char *why)
{
	char	msg[256];
	size_t	len;

	bsp_strlcpy(msg, why != NULL && *why != '\0' ? why : "closed", sizeof msg);
	for (len = 0; msg[len] != '\0'; len++) {
		if (msg[len] == '\n' || msg[len] == '\t')
			msg[len] = ' ';
	}
	while (len > 0 && msg[len - 1] == ' ')
		msg[--len] = '\0';
	/*
	 * A server that is down fails every connection, and every retry of
	 * each: the outage is said once (and again only if the reason
	 * changes), not once per connection and retry.
	 */
	if (!pg.failing || strncmp(msg, pg.last_error,
	    sizeof pg.last_error - 1) != 0) {
		log_warnx("database: %s%s", pg.failing ? "still unavailable: " :
		    "", msg);
		bsp_strlcpy(pg.last_error, msg, sizeof pg.last_error);
		if (!pg.failing)
			pg.failing_since = now_mono();
		pg.failing = 1;
	} else
		log_debug("database: connection %s: %s", c->id, msg);
	/*
	 * An idle listener that fails has heard every change until now; one
	 * that fails while its check is unanswered, only until the last
	 * answer.
	 */
	if (c->listener && c->state == PGC_IDLE && c->cmd == CMD_NONE)
		pg.synced_at = now_mono();
	if (c->listener)
		pg.listening = 0;
	if (c->io_on)
		event_del(&c->io_ev);
	c->io_on = 0;
	evtimer_del(&c->timer_ev);
	if (c->dns != NULL)
		evdns_getaddrinfo_cancel(c->dns);
	c->dns = NULL;
	if (c->res != NULL)
		PQclear(c->res);
	c->res = NULL;
	if (c->pg != NULL)
		PQfinish(c->pg);
	c->pg = NULL;
	if (c->state == PGC_SETUP && pg.schema_busy == 1 + (int)(c - pg.conns))
		pg.schema_busy = 0;
	c->state = PGC_DOWN;
	free(c->prepared);
	c->prepared = NULL;
	c->nprepared = 0;
	if (!c->listener && !pg_any_up())
		pg.was_up = 0;
	pgc_fail_txn(c);
	c->cmd = CMD_NONE;
	if (!pg.open)
		return;
	if (c->listener)
		store_changed();	/* notifications may have been missed */
	c->backoff = c->backoff == 0 ? PG_BACKOFF_MIN : c->backoff * 2;
	if (c->backoff > PG_BACKOFF_MAX)
		c->backoff = PG_BACKOFF_MAX;
	pgc_timer(c, c->backoff);
	pg_assign();	/* waiters may have nowhere to go now */
}

/* The server's notices (NOTICE, WARNING) go to the log, not stderr. */
static void
pg_notice(void *arg, const char *msg)
{
	char	buf[256];
	size_t	len;

	bsp_strlcpy(buf, msg, sizeof buf);
	len = strlen(buf);
	while (len > 0 && buf[len - 1] == '\n')
		buf[--len] = '\0';
	log_debug("database: %s", buf);
}

/* Connecting: drive PQconnectPoll as the socket allows. */
static void
pgc_connect_poll(struct pg_conn *c)
{
	switch (PQconnectPoll(c->pg)) {
	case PGRES_POLLING_READING:
		pgc_watch(c, EV_READ);
		return;
	case PGRES_POLLING_WRITING:
		pgc_watch(c, EV_WRITE);
		return;
	case PGRES_POLLING_FAILED:
		pgc_fail(c, PQerrorMessage(c->pg));
		return;
	case PGRES_POLLING_OK:
		break;
	default:
		return;
	}
	evtimer_del(&c->timer_ev);
	PQsetNoticeProcessor(c->pg, pg_notice, NULL);
	if (PQsetnonblocking(c->pg, 1) == -1) {
		pgc_fail(c, PQerrorMessage(c->pg));
		return;
	}
	c->state = PGC_SETUP;
	c->setup_step = 0;
	pgc_send(c);
}

static void
pgc_resolved(int err, struct evutil_addrinfo *ai, void *arg)
{
	struct pg_conn	*c = arg;
	char		 msg[160];

	c->dns = NULL;
	if (err == EVUTIL_EAI_CANCEL)
		return;
	if (err != 0 || ai == NULL) {
		snprintf(msg, sizeof msg, "cannot resolve %s: %s", pg.resolve,
		    evutil_gai_strerror(err));
		if (ai != NULL)
			evutil_freeaddrinfo(ai);
		c->state = PGC_CONNECTING;	/* so that the failure is told */
		pgc_fail(c, msg);
		return;
	}
	if (sockaddr_str(ai->ai_addr, c->hostaddr, sizeof c->hostaddr) == -1)
		c->hostaddr[0] = '\0';
	evutil_freeaddrinfo(ai);
	pgc_connect_addr(c);
}

/*
 * Connect; a host name is first resolved with evdns (libpq would call
 * getaddrinfo() and block the loop), its address passed as hostaddr while
 * host stays what TLS checks the certificate against.
 */
static void
pgc_connect(struct pg_conn *c)
{
	struct evutil_addrinfo	hints;

	c->hostaddr[0] = '\0';
	if (pg.resolve == NULL || bsp_dns == NULL) {
		pgc_connect_addr(c);
		return;
	}
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	c->state = PGC_RESOLVING;
	pgc_timer(c, (double)pg.conf.timeout);
	c->dns = evdns_getaddrinfo(bsp_dns, pg.resolve, NULL, &hints,
	    pgc_resolved, c);
}

static void
pgc_connect_addr(struct pg_conn *c)
{
	const char	*kw[8], *val[8];
	char		 tmo[32];
	int		 n = 0;

	kw[n] = "dbname";
	val[n++] = pg.conf.conninfo;
	if (c->hostaddr[0] != '\0') {
		kw[n] = "hostaddr";
		val[n++] = c->hostaddr;
	}
	if (pg.conf.password != NULL) {
		kw[n] = "password";
		val[n++] = pg.conf.password;
	}
	kw[n] = "application_name";
	val[n++] = BSP_NAME;
	snprintf(tmo, sizeof tmo, "%lld", pg.conf.timeout);
	kw[n] = "connect_timeout";
	val[n++] = tmo;
	kw[n] = "keepalives_idle";
	val[n++] = "30";
	kw[n] = NULL;
	val[n] = NULL;
	c->pg = PQconnectStartParams(kw, val, 1);
	if (c->pg == NULL)
		fatalx("PQconnectStartParams: out of memory");
	if (PQstatus(c->pg) == CONNECTION_BAD) {
		pgc_fail(c, PQerrorMessage(c->pg));
		return;
	}
	c->state = PGC_CONNECTING;
	pgc_timer(c, (double)pg.conf.timeout);
	/* As libpq says: first wait until the socket can be written. */
	pgc_watch(c, EV_WRITE);
}

/* From version v to this binary's, in one transaction. */
static void
pg_migrate(struct pg_conn *c, size_t v)
{
	struct evbuffer	*b;
	char		*all;
	size_t		 i, len;

	if ((b = evbuffer_new()) == NULL)
		fatalx("evbuffer_new");
	evbuffer_add_printf(b, "BEGIN; ");
	for (i = v; i < store_nmigrations; i++) {
		log_info("database: migrating schema %zu -> %zu", i, i + 1);
		evbuffer_add_printf(b, "%s; ", store_migrations[i].pg);
	}
	evbuffer_add_printf(b, "DELETE FROM bsp_schema; INSERT INTO bsp_schema "
	    "VALUES (%zu); COMMIT", store_nmigrations);
	len = evbuffer_get_length(b);
	all = xmalloc(len + 1);
	evbuffer_remove(b, all, len);
	all[len] = '\0';
	evbuffer_free(b);
	pg.schema_version = (int)store_nmigrations;
	pgc_query(c, all, CMD_SETUP);
	free(all);
}

/*
 * Setting a connection up, one command at a time: its session settings;
 * then (one connection, under an advisory lock) the schema; then, for the
 * listener, LISTEN. The answers come to pgc_setup_done().
 */
static void
pgc_send(struct pg_conn *c)
{
	char	sql[512];
	int	v;

	switch (c->setup_step) {
	case 0:
		snprintf(sql, sizeof sql, "SET statement_timeout = %lld; "
		    "SET bytea_output = 'hex'; SET TIME ZONE 'UTC'",
		    pg.conf.timeout * 1000);
		pgc_query(c, sql, CMD_SETUP);
		return;
	case 1:
		if (pg.schema_ok || c->listener) {
			c->setup_step = 5;
			pgc_send(c);
			return;
		}
		if (pg.schema_busy) {
			/* Another connection migrates: wait for it. */
			c->setup_step = 1;
			c->cmd = CMD_NONE;
			pgc_timer(c, 0.1);
			return;
		}
		pg.schema_busy = 1 + (int)(c - pg.conns);
		pgc_query(c, "SELECT pg_advisory_lock(" PG_LOCK_ID "); "
		    "CREATE TABLE IF NOT EXISTS bsp_schema (version INTEGER "
		    "NOT NULL); CREATE TABLE IF NOT EXISTS bsp_meta (key TEXT "
		    "PRIMARY KEY, value BIGINT NOT NULL); INSERT INTO bsp_meta "
		    "VALUES ('changes', 0) ON CONFLICT DO NOTHING; "
		    "SELECT coalesce(max(version), 0) FROM bsp_schema",
		    CMD_SETUP);
		return;
	case 2:
		/* The version is in; migrate, or not. */
		v = pg.schema_version;
		if (v > (int)store_nmigrations || (v < (int)store_nmigrations &&
		    !pg.conf.migrate)) {
			if (v > (int)store_nmigrations)
				log_warnx("database: schema version %d is newer "
				    "than this binary understands (%zu); use a "
				    "newer " BSP_NAME, v, store_nmigrations);
			else
				log_warnx("database: schema version %d, this "
				    "binary needs %zu, and database.migrate is "
				    "off", v, store_nmigrations);
			pg.problem = v > (int)store_nmigrations ?
			    "the database's schema is newer than this binary" :
			    "the database's schema needs migrating "
			    "(database.migrate: off)";
			c->setup_step = 4;	/* unlock, then stay down */
			pgc_query(c, "SELECT pg_advisory_unlock(" PG_LOCK_ID ")",
			    CMD_SETUP);
			return;
		}
		if (v == (int)store_nmigrations) {
			c->setup_step = 3;
			pgc_send(c);
			return;
		}
		pg_migrate(c, (size_t)v);
		return;
	case 3:
		pgc_query(c, "SELECT pg_advisory_unlock(" PG_LOCK_ID ")",
		    CMD_SETUP);
		return;
	case 5:
		if (c->listener) {
			pgc_query(c, "LISTEN " PG_CHANNEL, CMD_SETUP);
			return;
		}
		c->setup_step = 6;
		/* FALLTHROUGH */
	case 6:
		c->state = PGC_IDLE;
		c->cmd = CMD_NONE;
		c->backoff = 0;
		if (pg.failing)
			log_info("database: available again after %.1f s",
			    now_mono() - pg.failing_since);
		pg.failing = 0;
		pg.last_error[0] = '\0';
		evtimer_del(&c->timer_ev);
		pgc_watch(c, EV_READ);
		log_debug("database: connection %s ready", c->id);
		if (c->listener) {
			pg.listening = 1;
			pg.synced_at = now_mono();
			store_changed();
			return;
		}
		pg.problem = NULL;
		/*
		 * The first connection up (at start, or after they were all
		 * down): what the modules keep may be older than the
		 * database, so their watchers load it again.
		 */
		if (!pg.was_up)
			store_changed();
		pg.was_up = 1;
		pg_assign();
		return;
	}
}

static void
pgc_setup_done(struct pg_conn *c, int ok)
{
	if (!ok) {
		pgc_fail(c, c->res != NULL ? PQresultErrorMessage(c->res) :
		    PQerrorMessage(c->pg));
		return;
	}
	switch (c->setup_step) {
	case 1:
		/* The last result holds the version. */
		pg.schema_version = c->res != NULL && PQntuples(c->res) == 1 ?
		    (int)strtol(PQgetvalue(c->res, 0, 0), NULL, 10) : 0;
		c->setup_step = 2;
		break;
	case 2:
		c->setup_step = 3;
		break;
	case 3:
		pg.schema_ok = 1;
		pg.schema_busy = 0;
		c->setup_step = 5;
		break;
	case 4:
		/* A schema we cannot use: try again later. */
		pg.schema_busy = 0;
		pgc_fail(c, pg.problem);
		return;
	case 5:
		c->setup_step = 6;
		break;
	default:
		c->setup_step++;
		break;
	}
	pgc_send(c);
}

static int
pg_sqlstate_is(PGresult *res, const char *state)
{
	const char	*s = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	return (s != NULL && strcmp(s, state) == 0);
}

static void
pgc_exec_send(struct pg_conn *c)
{
	struct pg_txn	*x = c->txn;
	const char	**vals;
	int		*lens, *fmts, ok;
	char		(*nums)[24];
	char		 name[16];
	size_t		 i, n = x->n > 0 ? x->n : 1;

	if (x->n > PG_PARAMS_MAX)
		fatalx("%s: too many parameters", __func__);
	vals = xcalloc(n, sizeof *vals);
	lens = xcalloc(n, sizeof *lens);
	fmts = xcalloc(n, sizeof *fmts);
	nums = xcalloc(n, sizeof *nums);
	for (i = 0; i < x->n; i++) {
		switch (x->p[i].type) {
		case STORE_P_NULL:
			vals[i] = NULL;
			lens[i] = 0;
			fmts[i] = 0;
			break;
		case STORE_P_INT:
			snprintf(nums[i], sizeof nums[i], "%lld", x->p[i].i);
			vals[i] = nums[i];
			lens[i] = 0;
			fmts[i] = 0;
			break;
		case STORE_P_TEXT:
			vals[i] = x->p[i].p;
			lens[i] = (int)x->p[i].len;
			fmts[i] = 0;
			break;
		case STORE_P_BLOB:
			vals[i] = x->p[i].p;
			lens[i] = (int)x->p[i].len;
			fmts[i] = 1;
			break;
		}
	}
	snprintf(name, sizeof name, "s%d", x->st->pg_id);
	ok = PQsendQueryPrepared(c->pg, name, (int)x->n, vals, lens, fmts, 0);
	free(vals);
	free(lens);
	free(fmts);
	free(nums);
	if (!ok) {
		pgc_fail(c, PQerrorMessage(c->pg));
		return;
	}
	pgc_sent(c, CMD_EXEC);
}

/* Run the unit's statement: prepare it on this connection first. */
static void
pgc_exec(struct pg_conn *c)
{
	struct pg_txn	*x = c->txn;
	struct store_stmt *st = x->st;
	char		 name[16];
	size_t		 id;

	if (st->pg_id == 0) {
		if ((size_t)pg.nstmts >= nitems(pg.stmts))
			fatalx("%s: too many statements", __func__);
		pg.stmts[pg.nstmts++] = st;
		st->pg_id = pg.nstmts;
	}
	id = (size_t)st->pg_id;
	if (id < c->nprepared && c->prepared[id]) {
		pgc_exec_send(c);
		return;
	}
	snprintf(name, sizeof name, "s%zu", id);
	if (!PQsendPrepare(c->pg, name, st->sql_pg != NULL ? st->sql_pg :
	    st->sql, (int)x->n, NULL)) {
		pgc_fail(c, PQerrorMessage(c->pg));
		return;
	}
	pgc_sent(c, CMD_PREPARE);
}

/* A command's answers are all in (c->res holds the telling one). */
static void
pgc_done(struct pg_conn *c)
{
	struct pg_txn	*x = c->txn;
	PGresult	*res = c->res;
	ExecStatusType	 rs = res != NULL ? PQresultStatus(res) :
			    PGRES_FATAL_ERROR;
	int		 ok = rs == PGRES_COMMAND_OK || rs == PGRES_TUPLES_OK;
	int		 status, i, nt, j;
	struct store_row r;
	struct pg_row	 pr;
	store_end_cb	 end;
	void		*arg;
	enum pgc_cmd	 cmd = c->cmd;
	size_t		 id;

	c->res = NULL;
	c->cmd = CMD_NONE;
	evtimer_del(&c->timer_ev);
	switch (cmd) {
	case CMD_SETUP:
		c->res = res;
		pgc_setup_done(c, ok);
		if (c->res != NULL)
			PQclear(c->res);
		c->res = NULL;
		return;
	case CMD_CHECK:
		if (ok && PQntuples(res) == 1) {
			long long v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);

			if (pg.changes_known && v != pg.changes)
				store_changed();
			pg.synced_at = now_mono();
			pg.changes = v;
			pg.changes_known = 1;
		}
		break;
	case CMD_BEGIN:
		if (!ok) {
			c->txn = NULL;
			x->c = NULL;
			log_warnx("database: BEGIN: %s", res != NULL ?
			    PQresultErrorMessage(res) : "no answer");
			x->begin_cb(NULL, STORE_ERROR, x->begin_arg);
			pgt_free(x);
			pgc_release(c);
			break;
		}
		x->begin_cb(&x->t, STORE_OK, x->begin_arg);
		break;
	case CMD_PREPARE:
		if (!ok) {
			log_warnx("database: cannot prepare \"%s\": %s",
			    x->st->sql, res != NULL ?
			    PQresultErrorMessage(res) : "no answer");
			pgt_step(x, STORE_ERROR);
			break;
		}
		id = (size_t)x->st->pg_id;
		if (id >= c->nprepared) {
			c->prepared = xreallocarray(c->prepared, id + 64, 1);
			memset(c->prepared + c->nprepared, 0, id + 64 -
			    c->nprepared);
			c->nprepared = id + 64;
		}
		c->prepared[id] = 1;
		if (res != NULL)
			PQclear(res);
		pgc_exec_send(c);
		return;
	case CMD_EXEC:
		if (!ok) {
			status = res != NULL && pg_sqlstate_is(res,
			    PG_SQLSTATE_UNIQUE) ? STORE_CONFLICT : STORE_ERROR;
			if (status == STORE_ERROR)
				log_warnx("database: %s", res != NULL ?
				    PQresultErrorMessage(res) : "no answer");
			x->t.changes = 0;
			pgt_step(x, status);
			break;
		}
		x->t.changes = strtoll(PQcmdTuples(res), NULL, 10);
		if (rs == PGRES_TUPLES_OK && x->row != NULL) {
			memset(&pr, 0, sizeof pr);
			pr.res = res;
			r.ops = &pg_row_ops;
			r.a = &pr;
			nt = PQntuples(res);
			for (i = 0; i < nt; i++) {
				pr.i = i;
				r.i = i;
				x->row(&r, x->arg);
				for (j = 0; j < (int)nitems(pr.blobs); j++) {
					free(pr.blobs[j]);
					pr.blobs[j] = NULL;
				}
			}
		}
		pgt_step(x, STORE_OK);
		break;
	case CMD_COMMIT:
		end = x->end_cb;
		arg = x->end_arg;
		c->txn = NULL;
		pgt_free(x);
		if (!ok)
			log_warnx("database: COMMIT: %s", res != NULL ?
			    PQresultErrorMessage(res) : "no answer");
		pgc_release(c);
		if (end != NULL)
			end(ok ? STORE_OK : STORE_ERROR, arg);
		break;
	case CMD_ROLLBACK:
		pgc_release(c);
		break;
	case CMD_NONE:
		break;
	}
	if (res != NULL)
		PQclear(res);
}

static void
pg_notified(struct pg_conn *c)
{
	PGnotify	*n;
	int		 any = 0;

	while ((n = PQnotifies(c->pg)) != NULL) {
		any = 1;
		PQfreemem(n);
	}
	if (any) {
		pg.synced_at = now_mono();
		store_changed();
	}
}

/* The socket is ready: read answers, or write what libpq still holds. */
static void
pgc_io(struct pg_conn *c, short ev)
{
	PGresult	*res;
	int		 rc;

	if (c->state == PGC_CONNECTING) {
		pgc_connect_poll(c);
		return;
	}
	if (ev & EV_WRITE) {
		if ((rc = PQflush(c->pg)) == -1) {
			pgc_fail(c, PQerrorMessage(c->pg));
			return;
		}
		if (rc == 0)
			pgc_watch(c, EV_READ);
	}
	if (!(ev & EV_READ))
		return;
	if (!PQconsumeInput(c->pg)) {
		pgc_fail(c, PQerrorMessage(c->pg));
		return;
	}
	if (c->listener)
		pg_notified(c);
	if (c->cmd == CMD_NONE) {
		/* Idle: an error report or the server going away. */
		if (PQstatus(c->pg) == CONNECTION_BAD)
			pgc_fail(c, PQerrorMessage(c->pg));
		while (c->pg != NULL && !PQisBusy(c->pg) &&
		    (res = PQgetResult(c->pg)) != NULL)
			PQclear(res);
		return;
	}
	while (!PQisBusy(c->pg)) {
		if ((res = PQgetResult(c->pg)) == NULL) {
			pgc_done(c);
			return;
		}
		/* Keep the first failure, else the last result. */
		c->nres++;
		if (c->res != NULL && PQresultStatus(c->res) ==
		    PGRES_FATAL_ERROR) {
			PQclear(res);
			continue;
		}
		if (c->res != NULL)
			PQclear(c->res);
		c->res = res;
	}
}

/* Give waiting units the connections that are free. */
static void
pg_assign(void)
{
	struct pg_txn	*x;
	size_t		 i;

	for (i = 0; i < pg.nconns && (x = TAILQ_FIRST(&pg.queue)) != NULL;
	    i++) {
		struct pg_conn *c = &pg.conns[i];

		if (c->state != PGC_IDLE)
			continue;
		TAILQ_REMOVE(&pg.queue, x, entry);
		c->state = PGC_BUSY;
		c->txn = x;
		x->c = c;
		pgc_query(c, "BEGIN", CMD_BEGIN);
		i = (size_t)-1;		/* the callbacks may free others */
		if (pg.nconns == 0)
			break;
	}
	if (TAILQ_EMPTY(&pg.queue))
		evtimer_del(&pg.queue_ev);
}

/* Waiters past database.timeout give up. */
static void
pg_queue_cb(int fd, short ev, void *arg)
{
	struct pg_txn	*x;
	double		 now = now_mono();
	struct timeval	 tv = { 1, 0 };

	while ((x = TAILQ_FIRST(&pg.queue)) != NULL &&
	    now - x->queued_at >= (double)pg.conf.timeout) {
		TAILQ_REMOVE(&pg.queue, x, entry);
		x->begin_cb(NULL, STORE_UNAVAILABLE, x->begin_arg);
		pgt_free(x);
	}
	if (!TAILQ_EMPTY(&pg.queue))
		evtimer_add(&pg.queue_ev, &tv);
}

static int
pg_any_up(void)
{
	size_t	i;

	for (i = 0; i < pg.nconns; i++) {
		if (pg.conns[i].state == PGC_IDLE ||
		    pg.conns[i].state == PGC_BUSY)
			return (1);
	}
	return (0);
}

static struct store_txn *
pg_begin(int flags, store_step_cb cb, void *arg)
{
	struct pg_txn	*x;
	struct timeval	 tv = { 1, 0 };

	if (!pg_any_up()) {
		cb(NULL, STORE_UNAVAILABLE, arg);
		return (NULL);
	}
	x = xcalloc(1, sizeof *x);
	x->t.flags = flags;
	x->t.be = x;
	x->begin_cb = cb;
	x->begin_arg = arg;
	x->queued_at = now_mono();
	TAILQ_INSERT_TAIL(&pg.queue, x, entry);
	if (!evtimer_pending(&pg.queue_ev, NULL))
		evtimer_add(&pg.queue_ev, &tv);
	pg_assign();
	return (NULL);
}

static void
pg_exec(struct store_txn *t, struct store_stmt *st,
    const struct store_param *p, size_t n, store_row_cb row,
    store_step_cb done, void *arg)
{
	struct pg_txn	*x = t->be;

	x->st = st;
	x->p = p;
	x->n = n;
	x->row = row;
	x->done = done;
	x->arg = arg;
	if (x->c == NULL || x->c->state != PGC_BUSY) {
		pgt_step(x, STORE_UNAVAILABLE);
		return;
	}
	pgc_exec(x->c);
}

static void
pg_notify(struct store_txn *t, const char *what)
{
}

static void
pg_commit(struct store_txn *t, store_end_cb cb, void *arg)
{
	struct pg_txn	*x = t->be;
	struct pg_conn	*c = x->c;

	x->end_cb = cb;
	x->end_arg = arg;
	if (c == NULL || c->state != PGC_BUSY) {
		pgt_free(x);
		if (cb != NULL)
			cb(STORE_UNAVAILABLE, arg);
		return;
	}
	pgc_query(c, t->notify ? "UPDATE bsp_meta SET value = value + 1 "
	    "WHERE key = 'changes'; NOTIFY " PG_CHANNEL "; COMMIT" : "COMMIT",
	    CMD_COMMIT);
}

static void
pg_rollback(struct store_txn *t)
{
	struct pg_txn	*x = t->be;
	struct pg_conn	*c = x->c;

	pgt_free(x);
	if (c == NULL || c->state != PGC_BUSY)
		return;
	c->txn = NULL;
	pgc_query(c, "ROLLBACK", CMD_ROLLBACK);
}

/* The safety net: the change counter, now and then. */
static void
pg_check_cb(int fd, short ev, void *arg)
{
	struct pg_conn	*c = &pg.listen;
	struct timeval	 tv = { PG_CHECK_SECS, 0 };

	evtimer_add(&pg.check_ev, &tv);
	if (c->state != PGC_IDLE || c->cmd != CMD_NONE)
		return;
	pgc_query(c, "SELECT value FROM bsp_meta WHERE key = 'changes'",
	    CMD_CHECK);
}

static void
pg_watch_start(void)
{
	struct timeval	tv = { PG_CHECK_SECS, 0 };

	if (pg.watching || !pg.open)
		return;
	pg.watching = 1;
	memset(&pg.listen, 0, sizeof pg.listen);
	pg.listen.listener = 1;
	bsp_strlcpy(pg.listen.id, "listen", sizeof pg.listen.id);
	evtimer_assign(&pg.listen.timer_ev, bsp_base, pgc_backoff_cb,
	    &pg.listen);
	pgc_connect(&pg.listen);
	evtimer_assign(&pg.check_ev, bsp_base, pg_check_cb, NULL);
	evtimer_add(&pg.check_ev, &tv);
}

/* The one host name of a connection string, if it needs resolving. */
static char *
pg_host_to_resolve(const char *conninfo)
{
	PQconninfoOption	*opts, *o;
	const char		*host = NULL, *hostaddr = NULL;
	struct sockaddr_storage	 ss;
	char			*out = NULL;

	if ((opts = PQconninfoParse(conninfo, NULL)) == NULL)
		return (NULL);
	for (o = opts; o->keyword != NULL; o++) {
		if (o->val == NULL || *o->val == '\0')
			continue;
		if (strcmp(o->keyword, "host") == 0)
			host = o->val;
		else if (strcmp(o->keyword, "hostaddr") == 0)
			hostaddr = o->val;
	}
	if (host != NULL && hostaddr == NULL && host[0] != '/' &&
	    host[0] != '@' && strchr(host, ',') == NULL &&
	    addr_parse(host, &ss) == -1)
		out = xstrdup(host);
	PQconninfoFree(opts);
	return (out);
}

static int
pg_open(const struct store_conf *sc, char **cause)
{
	size_t	i;

	if (bsp_base == NULL) {
		xasprintf(cause, "PostgreSQL needs the event loop");
		return (-1);
	}
	if (store_pq_load(cause) == -1)
		return (-1);
	memset(&pg, 0, sizeof pg);
	TAILQ_INIT(&pg.queue);
	pg.conf.kind = STORE_PG;
	pg.conf.conninfo = xstrdup(sc->conninfo);
	if (sc->password != NULL)
		pg.conf.password = xstrdup(sc->password);
	pg.conf.timeout = sc->timeout > 0 ? sc->timeout : 10;
	pg.conf.migrate = sc->migrate;
	pg.nconns = sc->pool_size > 0 ? (size_t)sc->pool_size : 4;
	if (pg.nconns > PG_POOL_MAX)
		pg.nconns = PG_POOL_MAX;
	pg.resolve = pg_host_to_resolve(pg.conf.conninfo);
	pg.problem = "connecting";
	pg.open = 1;
	evtimer_assign(&pg.queue_ev, bsp_base, pg_queue_cb, NULL);
	for (i = 0; i < pg.nconns; i++) {
		struct pg_conn *c = &pg.conns[i];

		snprintf(c->id, sizeof c->id, "%zu", i + 1);
		evtimer_assign(&c->timer_ev, bsp_base, pgc_backoff_cb, c);
		pgc_connect(c);
	}
	return (0);
}

static void
pgc_close(struct pg_conn *c)
{
	if (c->dns != NULL)
		evdns_getaddrinfo_cancel(c->dns);
	c->dns = NULL;
	if (c->io_on)
		event_del(&c->io_ev);
	c->io_on = 0;
	if (event_initialized(&c->timer_ev))
		evtimer_del(&c->timer_ev);
	if (c->res != NULL)
		PQclear(c->res);
	c->res = NULL;
	if (c->pg != NULL)
		PQfinish(c->pg);
	c->pg = NULL;
	free(c->prepared);
	c->prepared = NULL;
	c->state = PGC_DOWN;
}

static void
pg_close(void)
{
	struct pg_txn	*x;
	size_t		 i;

	if (!pg.open)
		return;
	pg.open = 0;
	for (i = 0; i < pg.nconns; i++) {
		pgc_fail_txn(&pg.conns[i]);
		pgc_close(&pg.conns[i]);
	}
	if (pg.watching) {
		pgc_close(&pg.listen);
		evtimer_del(&pg.check_ev);
	}
	while ((x = TAILQ_FIRST(&pg.queue)) != NULL) {
		TAILQ_REMOVE(&pg.queue, x, entry);
		x->begin_cb(NULL, STORE_UNAVAILABLE, x->begin_arg);
		pgt_free(x);
	}
	evtimer_del(&pg.queue_ev);
	for (i = 0; i < (size_t)pg.nstmts; i++)
		pg.stmts[i]->pg_id = 0;
	free(pg.conf.conninfo);
	freezero_str(pg.conf.password);
	free(pg.resolve);
	memset(&pg, 0, sizeof pg);
}

static int
pg_ready(const char **detail)
{
	if (pg.schema_ok && pg_any_up())
		return (1);
	*detail = pg.problem != NULL ? pg.problem : "no connection";
	return (0);
}

/*
 * Seconds since what the daemon keeps in memory was last known to be
 * current: 0 while the listener is up (every change is heard), else since
 * its last answer.
 */
static double
pg_stale_for(void)
{
	if (!pg.open || !pg.watching || pg.listening || pg.synced_at == 0)
		return (0);
	return (now_mono() - pg.synced_at);
}

static int
pg_schema_version(void)
{
	return (pg.schema_ok ? pg.schema_version : -1);
}

/* libpq's version, as "15.18", or "not loaded" (SQLite). */
static const char *
pg_version(void)
{
	static char	v[32];
	int		n;

	if (!store_pq_loaded())
		return ("not loaded");
	n = PQlibVersion();
	if (n >= 100000)
		snprintf(v, sizeof v, "%d.%d", n / 10000, n % 10000);
	else
		snprintf(v, sizeof v, "%d.%d.%d", n / 10000, n / 100 % 100,
		    n % 100);
	return (v);
}

const struct store_backend store_pg_backend = {
	"postgresql",
	pg_open,
	pg_close,
	pg_ready,
	pg_schema_version,
	pg_begin,
	pg_exec,
	pg_notify,
	pg_commit,
	pg_rollback,
	pg_watch_start,
	NULL,
	pg_version,
	pg_stale_for,
};
