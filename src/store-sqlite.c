/*
 * store-sqlite.c: the store on SQLite, the embedded default.
 *
 * One connection per process, WAL mode so admin commands can write while
 * the daemon reads, a busy timeout for the moments they collide. The
 * schema is versioned with PRAGMA user_version and migrated forward on
 * open (store-schema.c); a file that is not a database, or is newer than
 * this binary, is refused.
 *
 * One connection, so one unit of work at a time: a unit asked for while
 * another is open waits in a queue and starts when that one ends.
 * Statements run as they are asked for, so every callback runs before the
 * call that asked returns. Another process (an admin command) that writes
 * is seen through PRAGMA data_version, polled every second while somebody
 * watches.
 *
 * The daemon's WAL is copied back into the database file by a process of
 * its own, the checkpointer (see sq_ckpt_start()), so that the loop never
 * waits for a checkpoint's writes and fsyncs.
 */

#include <sys/types.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <sqlite3.h>

#include "bsp.h"
#include "store-int.h"

struct sq_wait {
	int			 flags;
	store_step_cb		 cb;
	void			*arg;
	TAILQ_ENTRY(sq_wait)	 entry;
};

static struct {
	sqlite3			*db;
	struct store_txn	 txn;
	int			 busy;		/* txn is open */
	int			 lazy;		/* synchronous NORMAL */
	int			 starting;	/* sq_start_next() running */
	TAILQ_HEAD(, sq_wait)	 queue;
	int			 queue_init;
	struct store_stmt	*stmts;
	long long		 data_version;
	struct event		 poll_ev;
	int			 polling;
} sq;

/*
 * The checkpointer: its pid, our end of its socket, the part of a line
 * it has written so far, and whether units wait for a checkpoint it was
 * asked for.
 */
#define SQ_CKPT_MS		1000	/* between two checkpoints */
#define SQ_CKPT_AUTO		1000	/* pages; SQLite's default */
#define SQ_CKPT_WAIT_MS		1000	/* units wait for it at most */
static struct {
	pid_t			 pid;
	int			 fd;
	struct event		 ev;
	int			 ev_on;
	char			 line[256];
	size_t			 len;
	int			 waiting;
	struct event		 wait_ev;
} sq_ck = { .pid = -1, .fd = -1 };

static void	sq_start_next(void);
static void	sq_rollback_now(void);

/* mkdir -p, each created directory 0700. */
static int
sq_mkdirs(const char *dir, char **cause)
{
	char		*copy, *p;
	struct stat	 st;

	if (stat(dir, &st) == 0) {
		if (!S_ISDIR(st.st_mode)) {
			xasprintf(cause, "%s is not a directory", dir);
			return (-1);
		}
		return (0);
	}
	copy = xstrdup(dir);
	for (p = copy + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(copy, 0700) == -1 && errno != EEXIST) {
			xasprintf(cause, "cannot create %s: %s", copy,
			    strerror(errno));
			free(copy);
			return (-1);
		}
		*p = '/';
	}
	if (mkdir(copy, 0700) == -1 && errno != EEXIST) {
		xasprintf(cause, "cannot create %s: %s", copy, strerror(errno));
		free(copy);
		return (-1);
	}
	free(copy);
	return (0);
}

/* Run SQL of our own (no parameters); -1 logged. */
static int
sq_exec_sql(const char *sql)
{
	char	*err = NULL;

	if (sqlite3_exec(sq.db, sql, NULL, NULL, &err) != SQLITE_OK) {
		log_warnx("database: %s", err != NULL ? err :
		    sqlite3_errmsg(sq.db));
		sqlite3_free(err);
		return (-1);
	}
	return (0);
}

static int
sq_pragma_int(const char *sql, long long *out)
{
	sqlite3_stmt	*st;
	int		 rc;

	if (sqlite3_prepare_v2(sq.db, sql, -1, &st, NULL) != SQLITE_OK)
		return (-1);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return (rc == SQLITE_ROW ? 0 : -1);
}

static int
sq_migrate(char **cause)
{
	long long	v;
	size_t		i;
	char		sql[64];

	if (sq_pragma_int("PRAGMA user_version", &v) == -1) {
		xasprintf(cause, "%s", sqlite3_errmsg(sq.db));
		return (-1);
	}
	if (v > (long long)store_nmigrations) {
		xasprintf(cause, "the database has schema version %lld, newer "
		    "than this binary understands (%zu); use a newer "
		    BSP_NAME, v, store_nmigrations);
		return (-1);
	}
	if (v == (long long)store_nmigrations)
		return (0);
	if (sq_exec_sql("BEGIN IMMEDIATE") == -1) {
		xasprintf(cause, "cannot lock the database for migration: %s",
		    sqlite3_errmsg(sq.db));
		return (-1);
	}
	/* Someone else may have migrated while we waited for the lock. */
	if (sq_pragma_int("PRAGMA user_version", &v) == -1)
		goto fail;
	for (i = (size_t)v; i < store_nmigrations; i++) {
		log_info("database: migrating schema %zu -> %zu", i, i + 1);
		if (sq_exec_sql(store_migrations[i].sqlite) == -1)
			goto fail;
	}
	snprintf(sql, sizeof sql, "PRAGMA user_version = %zu",
	    store_nmigrations);
	if (sq_exec_sql(sql) == -1 || sq_exec_sql("COMMIT") == -1)
		goto fail;
	return (0);
fail:
	xasprintf(cause, "schema migration failed: %s", sqlite3_errmsg(sq.db));
	sq_exec_sql("ROLLBACK");
	return (-1);
}

static void
sq_trace_cb(void *arg, int code, const char *msg)
{
	log_trace(TRACE_DB, "sqlite %d: %s", code, msg);
}

static int
sq_ncols(const struct store_row *r)
{
	return (sqlite3_column_count(r->a));
}

static int
sq_null(const struct store_row *r, int i)
{
	return (sqlite3_column_type(r->a, i) == SQLITE_NULL);
}

static long long
sq_integer(const struct store_row *r, int i)
{
	return (sqlite3_column_int64(r->a, i));
}

static const char *
sq_text(const struct store_row *r, int i)
{
	if (sqlite3_column_type(r->a, i) == SQLITE_NULL)
		return (NULL);
	return ((const char *)sqlite3_column_text(r->a, i));
}

static const uint8_t *
sq_blob(const struct store_row *r, int i, size_t *len)
{
	const uint8_t	*p = sqlite3_column_blob(r->a, i);

	*len = (size_t)sqlite3_column_bytes(r->a, i);
	return (p);
}

static const struct store_row_ops sq_row_ops = {
	sq_ncols, sq_null, sq_integer, sq_text, sq_blob
};

/*
 * The checkpointer. SQLite copies the WAL back into the database file
 * when a commit leaves it over 1000 pages: on the loop, two fsyncs and
 * up to 4 MB of writes (0.3-3 ms on this project's VM, twice a second
 * at full load: the longest stalls of the loop, and its p99). So the
 * daemon turns that off and a child process of its own runs a PASSIVE
 * checkpoint every second on its own connection, beside the daemon's
 * readers and writer (SQLite's WAL lets one checkpoint run beside them);
 * only when the log has grown past SQLite's own threshold do the units
 * wait for one (sq_ckpt_hook()).
 *
 * The child is forked before the daemon opens its connection (SQLite's
 * locks and open files must not cross a fork), waits for a byte on its
 * socket (the schema is migrated), opens the file, and then checkpoints
 * until the socket closes, writing a line to the daemon for each new
 * failure. If it dies, the daemon logs it and checkpoints on its loop
 * again. Only the daemon has one; the commands do not.
 */
static __dead void
sq_ckpt_child(int fd, const char *path)
{
	struct pollfd	 pfd;
	sqlite3		*db = NULL;
	sigset_t	 none;
	char		 c, msg[256], last[sizeof msg] = "";
	ssize_t		 n;
	int		 rc, nlog, nckpt, asked;

	/* Stopped by the daemon closing the socket, not by its signals. */
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGUSR1, SIG_IGN);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (fd != 3) {
		if (dup2(fd, 3) == -1)
			_exit(1);
		fd = 3;
	}
	bsp_closefrom(4);
#ifdef __linux__
	prctl(PR_SET_NAME, "bsp-checkpoint", 0, 0, 0);
#endif
	/*
	 * Background work: on a busy core the daemon's requests go first
	 * (the checkpoint copies megabytes at a time).
	 */
	if (setpriority(PRIO_PROCESS, 0, 19) == -1)
		errno = 0;
	for (;;) {
		pfd.fd = fd;
		pfd.events = POLLIN;
		rc = poll(&pfd, 1, db == NULL ? -1 : SQ_CKPT_MS);
		if (rc == -1 && errno != EINTR)
			break;
		asked = 0;
		if (rc > 0) {
			if ((n = read(fd, &c, 1)) == 0 ||
			    (n == -1 && errno != EINTR && errno != EAGAIN))
				break;		/* the daemon is gone */
			if (n == 1 && c == 'c' && db != NULL)
				asked = 1;
			else if (n == 1 && c == 'g' && db == NULL) {
				rc = sqlite3_open_v2(path, &db,
				    SQLITE_OPEN_READWRITE |
				    SQLITE_OPEN_NOMUTEX, NULL);
				/*
				 * A first read, which finds the file in
				 * WAL mode: a checkpoint before it does
				 * nothing.
				 */
				if (rc == SQLITE_OK) {
					sqlite3_busy_timeout(db, 1000);
					rc = sqlite3_exec(db, "SELECT count(*)"
					    " FROM sqlite_schema", NULL, NULL,
					    NULL);
				}
				if (rc != SQLITE_OK) {
					snprintf(msg, sizeof msg,
					    "cannot open the database: %s\n",
					    db != NULL ? sqlite3_errmsg(db) :
					    sqlite3_errstr(rc));
					(void)write(fd, msg, strlen(msg));
					_exit(1);
				}
			}
			if (!asked)
				continue;
		}
		if (rc == -1 || db == NULL)
			continue;
		rc = sqlite3_wal_checkpoint_v2(db, NULL,
		    SQLITE_CHECKPOINT_PASSIVE, &nlog, &nckpt);
		if (asked)
			(void)write(fd, "done\n", 5);
		if (rc == SQLITE_OK || rc == SQLITE_BUSY) {
			last[0] = '\0';
			continue;
		}
		/* A full disk, say: said once, tried again every second. */
		snprintf(msg, sizeof msg, "checkpoint failed: %s\n",
		    sqlite3_errmsg(db));
		if (strcmp(msg, last) != 0) {
			(void)write(fd, msg, strlen(msg));
			memcpy(last, msg, sizeof last);
		}
	}
	sqlite3_close(db);
	_exit(0);
}

/* Fork the checkpointer for the database at path; -1 with *cause. */
static int
sq_ckpt_start(const char *path, char **cause)
{
	int	sv[2];
	pid_t	pid;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1) {
		xasprintf(cause, "socketpair: %s", strerror(errno));
		return (-1);
	}
	log_flush();		/* a child must not inherit unwritten lines */
	switch (pid = fork()) {
	case -1:
		xasprintf(cause, "fork: %s", strerror(errno));
		close(sv[0]);
		close(sv[1]);
		return (-1);
	case 0:
		close(sv[0]);
		sq_ckpt_child(sv[1], path);
		/* NOTREACHED */
	default:
		break;
	}
	close(sv[1]);
	if (fcntl(sv[0], F_SETFL, O_NONBLOCK) == -1 ||
	    fcntl(sv[0], F_SETFD, FD_CLOEXEC) == -1)
		log_warn("database: checkpointer socket");
	sq_ck.pid = pid;
	sq_ck.fd = sv[0];
	sq_ck.len = 0;
	return (0);
}

/* The checkpoint asked for is done (or late): units start again. */
static void
sq_ckpt_resume(void)
{
	if (!sq_ck.waiting)
		return;
	sq_ck.waiting = 0;
	event_del(&sq_ck.wait_ev);
	sq_start_next();
}

static void
sq_ckpt_late_cb(evutil_socket_t fd, short what, void *arg)
{
	log_debug("database: a checkpoint is late; writing on");
	sq_ckpt_resume();
}

/*
 * After each commit: SQLite would checkpoint here, once the log is over
 * SQ_CKPT_AUTO pages. The checkpointer's own checkpoints seldom take in
 * every page under a steady stream of writes, and then the next write
 * cannot start the log again from its first page: it would grow without
 * end. So at that size the units wait (the loop does not) while the
 * checkpointer takes in all there is, and the next write starts the log
 * again.
 */
static int
sq_ckpt_hook(void *arg, sqlite3 *db, const char *name, int nframes)
{
	struct timeval	tv = { SQ_CKPT_WAIT_MS / 1000,
			    (SQ_CKPT_WAIT_MS % 1000) * 1000 };

	if (nframes < SQ_CKPT_AUTO || sq_ck.pid == -1 || sq_ck.waiting)
		return (SQLITE_OK);
	if (write(sq_ck.fd, "c", 1) != 1)
		return (SQLITE_OK);	/* its end is read for the reason */
	sq_ck.waiting = 1;
	evtimer_assign(&sq_ck.wait_ev, bsp_base, sq_ckpt_late_cb, NULL);
	evtimer_add(&sq_ck.wait_ev, &tv);
	return (SQLITE_OK);
}

/*
 * Close our end of its socket and wait for the checkpointer: it exits
 * when it reads the end (after the checkpoint it is in), or has exited,
 * which closed its end. -1 if it was reaped elsewhere.
 */
static pid_t
sq_ckpt_reap(int *status)
{
	pid_t	rc;

	if (sq_ck.ev_on)
		event_del(&sq_ck.ev);
	sq_ck.ev_on = 0;
	close(sq_ck.fd);
	sq_ck.fd = -1;
	while ((rc = waitpid(sq_ck.pid, status, 0)) == -1 && errno == EINTR)
		;
	return (rc);
}

/* The checkpointer has gone: reap it, and checkpoint on the loop again. */
static void
sq_ckpt_lost(void)
{
	char	why[64];
	int	status = 0;

	if (sq_ckpt_reap(&status) == -1)
		snprintf(why, sizeof why, "exited");
	else if (WIFSIGNALED(status))
		snprintf(why, sizeof why, "killed by signal %d",
		    WTERMSIG(status));
	else
		snprintf(why, sizeof why, "exited with status %d",
		    WEXITSTATUS(status));
	log_warnx("database: the checkpointer (pid %ld) %s; checkpointing "
	    "on the loop from now on", (long)sq_ck.pid, why);
	sq_ck.pid = -1;
	if (sq.db != NULL)
		sqlite3_wal_autocheckpoint(sq.db, SQ_CKPT_AUTO);
	sq_ckpt_resume();
}

/* A line from the checkpointer, or its end. */
static void
sq_ckpt_read_cb(evutil_socket_t fd, short what, void *arg)
{
	char	*nl;
	ssize_t	 n;

	n = read(fd, sq_ck.line + sq_ck.len, sizeof sq_ck.line - 1 -
	    sq_ck.len);
	if (n == -1 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		sq_ckpt_lost();
		return;
	}
	sq_ck.len += (size_t)n;
	sq_ck.line[sq_ck.len] = '\0';
	while ((nl = strchr(sq_ck.line, '\n')) != NULL) {
		*nl = '\0';
		if (strcmp(sq_ck.line, "done") == 0)
			sq_ckpt_resume();
		else
			log_warnx("database: %s", sq_ck.line);
		sq_ck.len -= (size_t)(nl + 1 - sq_ck.line);
		memmove(sq_ck.line, nl + 1, sq_ck.len + 1);
	}
	if (sq_ck.len == sizeof sq_ck.line - 1) {
		log_warnx("database: %s", sq_ck.line);
		sq_ck.len = 0;
	}
}

/*
 * The schema is ready: the loop no longer checkpoints, the child
 * starts. If it cannot be told, it is stopped and the loop goes on
 * checkpointing.
 */
static void
sq_ckpt_go(void)
{
	if (sq_ck.pid == -1)
		return;
	if (write(sq_ck.fd, "g", 1) != 1) {
		sq_ckpt_lost();
		return;
	}
	/* In place of SQLite's own (sqlite3_wal_autocheckpoint()). */
	sqlite3_wal_hook(sq.db, sq_ckpt_hook, NULL);
	event_assign(&sq_ck.ev, bsp_base, sq_ck.fd, EV_READ | EV_PERSIST,
	    sq_ckpt_read_cb, NULL);
	event_add(&sq_ck.ev, NULL);
	sq_ck.ev_on = 1;
	log_debug("database: checkpointer pid %ld", (long)sq_ck.pid);
}

/* Stop the checkpointer (it finishes the checkpoint it is in). */
static void
sq_ckpt_stop(void)
{
	int	status;

	if (sq_ck.pid == -1)
		return;
	if (sq_ck.waiting)
		event_del(&sq_ck.wait_ev);
	sq_ck.waiting = 0;
	(void)sq_ckpt_reap(&status);
	sq_ck.pid = -1;
}

static void
sq_close(void)
{
	struct store_stmt	*s;
	struct sq_wait		*w;

	if (sq.polling)
		event_del(&sq.poll_ev);
	sq.polling = 0;
	for (s = sq.stmts; s != NULL; s = s->next) {
		sqlite3_finalize(s->sq);
		s->sq = NULL;
	}
	sq.stmts = NULL;
	if (sq.queue_init) {
		while ((w = TAILQ_FIRST(&sq.queue)) != NULL) {
			TAILQ_REMOVE(&sq.queue, w, entry);
			free(w);
		}
	}
	sq.busy = 0;
	sq.lazy = 0;
	/* Its connection first, so that ours is the last and cleans up. */
	sq_ckpt_stop();
	if (sq.db != NULL) {
		sqlite3_close_v2(sq.db);
		sq.db = NULL;
	}
}

/*
 * Open (creating if needed) the database at sc->path: its directories
 * 0700, the file private, WAL, the schema migrated. -1 with *cause (the
 * daemon exits 2).
 */
static int
sq_open(const struct store_conf *sc, char **cause)
{
	const char	*path = sc->path;
	char		*dir, *slash, *why, sql[64];
	mode_t		 old;
	long long	 v;
	int		 rc;

	if (!sq.queue_init) {
		TAILQ_INIT(&sq.queue);
		sq.queue_init = 1;
	}
	if (sq.db != NULL)
		return (0);
	dir = xstrdup(path);
	if ((slash = strrchr(dir, '/')) != NULL && slash != dir) {
		*slash = '\0';
		if (sq_mkdirs(dir, cause) == -1) {
			free(dir);
			return (-1);
		}
	}
	free(dir);

	/* Before our connection: see sq_ckpt_child(). */
	if (sc->checkpointer && sq_ckpt_start(path, &why) == -1) {
		log_warnx("database: no checkpointer (%s); checkpointing "
		    "on the loop", why);
		free(why);
	}
	sqlite3_config(SQLITE_CONFIG_LOG, sq_trace_cb, NULL);
	old = umask(077);
	rc = sqlite3_open_v2(path, &sq.db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	umask(old);
	if (rc != SQLITE_OK) {
		xasprintf(cause, "cannot open database %s: %s", path,
		    sq.db != NULL ? sqlite3_errmsg(sq.db) :
		    sqlite3_errstr(rc));
		sq_close();
		return (-1);
	}
	sqlite3_extended_result_codes(sq.db, 1);
	sqlite3_busy_timeout(sq.db, (int)sc->busy_timeout);
	/* The first real read tells whether this is a database at all. */
	if (sq_pragma_int("PRAGMA user_version", &v) == -1) {
		xasprintf(cause, "%s: %s", path, sqlite3_errmsg(sq.db));
		sq_close();
		return (-1);
	}
	if (sq_exec_sql("PRAGMA journal_mode = WAL") == -1 ||
	    sq_exec_sql("PRAGMA synchronous = FULL") == -1 ||
	    sq_exec_sql("PRAGMA foreign_keys = ON") == -1 ||
	    sq_exec_sql("PRAGMA trusted_schema = OFF") == -1) {
		xasprintf(cause, "%s: %s", path, sqlite3_errmsg(sq.db));
		sq_close();
		return (-1);
	}
	snprintf(sql, sizeof sql, "PRAGMA busy_timeout = %lld",
	    sc->busy_timeout);
	sq_exec_sql(sql);
	if (sq_migrate(cause) == -1) {
		sq_close();
		return (-1);
	}
	sq_ckpt_go();
	log_debug("database: %s open, schema version %d", path,
	    (int)store_nmigrations);
	return (0);
}

static int
sq_ready(const char **detail)
{
	if (sq.db == NULL) {
		*detail = "not open";
		return (0);
	}
	return (1);
}

static int
sq_schema_version(void)
{
	long long	v;

	if (sq.db == NULL || sq_pragma_int("PRAGMA user_version", &v) == -1)
		return (-1);
	return ((int)v);
}

/*
 * A unit whose commit need not survive a power cut, only a crash (usage
 * rows): with synchronous=NORMAL a WAL commit costs no fsync (about a
 * millisecond of a stalled loop on this project's VM). Every other unit
 * commits with FULL, and the next such commit or checkpoint makes these
 * durable too.
 */
static int
sq_lazy(int on)
{
	if (on == sq.lazy)
		return (0);
	if (sq_exec_sql(on ? "PRAGMA synchronous = NORMAL" :
	    "PRAGMA synchronous = FULL") == -1)
		return (-1);
	sq.lazy = on;
	return (0);
}

/* Open a unit now: BEGIN, the callback, and nothing else. */
static void
sq_start(int flags, store_step_cb cb, void *arg)
{
	int	rc;

	memset(&sq.txn, 0, sizeof sq.txn);
	sq.txn.flags = flags;
	/* Never a durable unit without its fsync. */
	if (sq_lazy((flags & STORE_LAZY) != 0) == -1)
		rc = -1;
	else
		rc = sq_exec_sql(flags & (STORE_WRITE | STORE_LAZY) ?
		    "BEGIN IMMEDIATE" : "BEGIN");
	if (rc == -1) {
		/* FULL again, or the next unit tries before it begins. */
		(void)sq_lazy(0);
		cb(NULL, STORE_ERROR, arg);
		return;
	}
	sq.busy = 1;
	cb(&sq.txn, STORE_OK, arg);
}

/* Start what waited, one at a time, without growing the stack. */
static void
sq_start_next(void)
{
	struct sq_wait	*w;

	if (sq.starting)
		return;
	sq.starting = 1;
	while (!sq.busy && !sq_ck.waiting &&
	    (w = TAILQ_FIRST(&sq.queue)) != NULL) {
		TAILQ_REMOVE(&sq.queue, w, entry);
		sq_start(w->flags, w->cb, w->arg);
		free(w);
	}
	sq.starting = 0;
}

static struct store_txn *
sq_begin(int flags, store_step_cb cb, void *arg)
{
	struct sq_wait	*w;

	if (sq.db == NULL) {
		cb(NULL, STORE_UNAVAILABLE, arg);
		return (NULL);
	}
	if (sq.busy || sq.starting || !TAILQ_EMPTY(&sq.queue) ||
	    sq_ck.waiting) {
		w = xcalloc(1, sizeof *w);
		w->flags = flags;
		w->cb = cb;
		w->arg = arg;
		TAILQ_INSERT_TAIL(&sq.queue, w, entry);
		if (!sq.busy)
			sq_start_next();
		return (NULL);
	}
	sq_start(flags, cb, arg);
	return (NULL);
}

static int
sq_bind(sqlite3_stmt *s, const struct store_param *p, size_t n)
{
	size_t	i;
	int	rc = SQLITE_OK;

	for (i = 0; i < n && rc == SQLITE_OK; i++) {
		switch (p[i].type) {
		case STORE_P_NULL:
			rc = sqlite3_bind_null(s, (int)i + 1);
			break;
		case STORE_P_INT:
			rc = sqlite3_bind_int64(s, (int)i + 1, p[i].i);
			break;
		case STORE_P_TEXT:
			rc = sqlite3_bind_text(s, (int)i + 1, p[i].p,
			    (int)p[i].len, SQLITE_STATIC);
			break;
		case STORE_P_BLOB:
			rc = sqlite3_bind_blob(s, (int)i + 1, p[i].p,
			    (int)p[i].len, SQLITE_STATIC);
			break;
		}
	}
	return (rc);
}

/*
 * A statement's text as SQLite takes it: PostgreSQL's "$N" placeholders
 * as "?N" (outside quoted text). SQLite reads "$N" as a name, and looks
 * each one up among the names before it: a multi-row INSERT of 1,152
 * parameters took 33 million instructions to prepare (a 10 ms stall of
 * the loop); "?N" is a number, and binds to N as PostgreSQL's does even
 * where the numbers are not in order. NULL if there is nothing to change.
 */
static char *
sq_sql_numbered(const char *sql)
{
	char	*out, *o, quote = 0;

	if (strchr(sql, '$') == NULL)
		return (NULL);
	o = out = xstrdup(sql);
	for (; *sql != '\0'; sql++, o++) {
		if (quote != 0 && *sql == quote)
			quote = 0;
		else if (quote == 0 && (*sql == '\'' || *sql == '"'))
			quote = *sql;
		else if (quote == 0 && *sql == '$' &&
		    sql[1] >= '0' && sql[1] <= '9') {
			*o = '?';
			continue;
		}
		*o = *sql;
	}
	return (out);
}

static void
sq_exec(struct store_txn *t, struct store_stmt *st,
    const struct store_param *p, size_t n, store_row_cb row,
    store_step_cb done, void *arg)
{
	struct store_row	 r;
	sqlite3_stmt		*s;
	char			*sql;
	int			 rc, status = STORE_OK;

	if (st->sq == NULL) {
		sql = sq_sql_numbered(st->sql);
		rc = sqlite3_prepare_v3(sq.db, sql != NULL ? sql : st->sql,
		    -1, SQLITE_PREPARE_PERSISTENT, (sqlite3_stmt **)&st->sq,
		    NULL);
		free(sql);
		if (rc != SQLITE_OK) {
			log_warnx("database: cannot prepare \"%s\": %s",
			    st->sql, sqlite3_errmsg(sq.db));
			st->sq = NULL;
			done(t, STORE_ERROR, arg);
			return;
		}
		st->next = sq.stmts;
		sq.stmts = st;
	}
	s = st->sq;
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	if (sq_bind(s, p, n) != SQLITE_OK) {
		log_warnx("database: cannot bind \"%s\": %s", st->sql,
		    sqlite3_errmsg(sq.db));
		done(t, STORE_ERROR, arg);
		return;
	}
	r.ops = &sq_row_ops;
	r.a = s;
	r.i = 0;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (row != NULL)
			row(&r, arg);
	}
	if (rc != SQLITE_DONE) {
		status = (rc & 0xff) == SQLITE_CONSTRAINT &&
		    (rc == SQLITE_CONSTRAINT_UNIQUE ||
		    rc == SQLITE_CONSTRAINT_PRIMARYKEY) ? STORE_CONFLICT :
		    STORE_ERROR;
		if (status == STORE_ERROR)
			log_warnx("database: %s", sqlite3_errmsg(sq.db));
	}
	t->changes = status == STORE_OK ? sqlite3_changes64(sq.db) : 0;
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	done(t, status, arg);
}

/* SQLite's own change counter tells the other processes. */
static void
sq_notify(struct store_txn *t, const char *what)
{
}

/* The unit is over: durable again (FULL) whatever became of it. */
static void
sq_end(void)
{
	sq.busy = 0;
	(void)sq_lazy(0);
}

static void
sq_rollback_now(void)
{
	if (sq.db != NULL && !sqlite3_get_autocommit(sq.db))
		sq_exec_sql("ROLLBACK");
}

static void
sq_commit(struct store_txn *t, store_end_cb cb, void *arg)
{
	int	status = STORE_OK;

	if (sq_exec_sql("COMMIT") == -1) {
		sq_rollback_now();
		status = STORE_ERROR;
	}
	sq_end();
	if (cb != NULL)
		cb(status, arg);
	sq_start_next();
}

static void
sq_rollback(struct store_txn *t)
{
	sq_rollback_now();
	sq_end();
	sq_start_next();
}

/* Changes when another connection (an admin command) commits. */
static long long
sq_data_version(void)
{
	long long	v = 0;

	if (sq.db != NULL)
		sq_pragma_int("PRAGMA data_version", &v);
	return (v);
}

static void
sq_poll_cb(int fd, short ev, void *arg)
{
	long long	v = sq_data_version();

	if (v != sq.data_version) {
		sq.data_version = v;
		store_changed();
	}
}

static void
sq_watch_start(void)
{
	struct timeval	one = { 1, 0 };

	if (sq.polling || bsp_base == NULL)
		return;
	sq.data_version = sq_data_version();
	event_assign(&sq.poll_ev, bsp_base, -1, EV_PERSIST, sq_poll_cb, NULL);
	event_add(&sq.poll_ev, &one);
	sq.polling = 1;
}

/* Another process wrote since we last looked: 1, and now we have seen it. */
static int
sq_catch_up(void)
{
	long long	v;

	if (!sq.polling || sq.db == NULL)
		return (0);
	if ((v = sq_data_version()) == sq.data_version)
		return (0);
	sq.data_version = v;
	return (1);
}

static const char *
sq_version(void)
{
	return (sqlite3_libversion());
}

const struct store_backend store_sqlite_backend = {
	"sqlite",
	sq_open,
	sq_close,
	sq_ready,
	sq_schema_version,
	sq_begin,
	sq_exec,
	sq_notify,
	sq_commit,
	sq_rollback,
	sq_watch_start,
	sq_catch_up,
	sq_version,
	NULL,
};
