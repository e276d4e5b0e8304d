/*
 * store.h: the one interface to persistent state, with two backends chosen
 * by database.url: SQLite (sqlite://PATH: embedded, the default, one
 * daemon) and PostgreSQL (postgresql://..., postgres://... or libpq's
 * key=value form: shared by several daemons).
 *
 * Work is done in units (struct store_txn): a transaction on one
 * connection, made of statements run one after the other. Every call
 * takes a callback and is asynchronous: with PostgreSQL the callbacks run
 * on a later turn of the loop (libpq's asynchronous API, the socket
 * watched by an event); with SQLite they run before the call returns. A
 * caller is written for both: it does nothing after a store_* call but
 * return, and keeps what the callback needs alive (a reference) until it
 * has run. Outside the loop (the admin commands) store_wait() runs the
 * loop until a flag is set.
 *
 * Statements are written once, in the dialect both backends share: "$1",
 * "$2", ... for parameters in the order they first appear, INSERT ... ON
 * CONFLICT, RETURNING, no FOR UPDATE (a claim is a conditional UPDATE);
 * where a backend needs its own text, the statement carries both. They
 * are prepared once per connection; parameters are always bound, never
 * spliced into SQL, and copied by the call that takes them (the caller's
 * array may be on its stack).
 */

#ifndef STORE_H
#define STORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct config;
struct config_errors;

enum store_kind {
	STORE_SQLITE = 0,
	STORE_PG,
};

/* Outcomes; a callback's status is one of these. */
#define STORE_OK		0
#define STORE_ERROR		-1	/* the database refused or failed */
#define STORE_CONFLICT		-2	/* a unique key already taken */
#define STORE_UNAVAILABLE	-3	/* no connection to the database */

/* A statement; static, one per call site. */
struct store_stmt {
	const char		*sql;		/* both backends */
	const char		*sql_pg;	/* PostgreSQL's own, or NULL */
	/* filled by the backends */
	void			*sq;		/* sqlite3_stmt */
	int			 pg_id;		/* 1 + index, 0: not yet */
	struct store_stmt	*next;
};
#define STORE_STMT(s)		{ (s), NULL, NULL, 0, NULL }
#define STORE_STMT2(s, pg)	{ (s), (pg), NULL, 0, NULL }

/* A parameter. */
enum store_ptype {
	STORE_P_NULL,
	STORE_P_INT,
	STORE_P_TEXT,
	STORE_P_BLOB,
};
struct store_param {
	enum store_ptype	 type;
	long long		 i;
	const void		*p;
	size_t			 len;
};
#define SP_NULL		{ STORE_P_NULL, 0, NULL, 0 }
#define SP_INT(v)	{ STORE_P_INT, (long long)(v), NULL, 0 }
#define SP_TEXT(s)	{ (s) != NULL ? STORE_P_TEXT : STORE_P_NULL, 0, (s), \
			  (s) != NULL ? strlen(s) : 0 }
#define SP_BLOB(b, n)	{ (b) != NULL ? STORE_P_BLOB : STORE_P_NULL, 0, (b), \
			  (n) }

/* A row of a result, valid only during the row callback. */
struct store_row;
int		 store_ncols(const struct store_row *);
int		 store_null(const struct store_row *, int);
long long	 store_int(const struct store_row *, int);
const char	*store_text(const struct store_row *, int);
const uint8_t	*store_blob(const struct store_row *, int, size_t *);
char		*store_strdup(const struct store_row *, int);

struct store_txn;

/* Called for each row of a statement's result. */
typedef void	(*store_row_cb)(const struct store_row *, void *);
/* A step is done: the transaction is open (OK) or already ended. */
typedef void	(*store_step_cb)(struct store_txn *, int, void *);
/* A unit is over: committed (OK) or rolled back. */
typedef void	(*store_end_cb)(int, void *);

/* store_begin() flags */
#define STORE_WRITE	0x01	/* takes write locks (SQLite: IMMEDIATE) */
#define STORE_LAZY	0x02	/* may be lost to a power cut (usage rows) */

struct store_txn *store_begin(int, store_step_cb, void *);
void		 store_exec(struct store_txn *, struct store_stmt *,
		     const struct store_param *, size_t, store_row_cb,
		     store_step_cb, void *);
long long	 store_changes(const struct store_txn *);
void		 store_notify(struct store_txn *, const char *);
void		 store_commit(struct store_txn *, store_end_cb, void *);
void		 store_rollback(struct store_txn *);

/* One statement in a unit of its own. */
void		 store_run(int, struct store_stmt *, const struct store_param *,
		     size_t, store_row_cb, store_end_cb, void *);

/* Start and stop. */
struct store_conf {
	enum store_kind	 kind;
	char		*path;		/* SQLite */
	char		*conninfo;	/* PostgreSQL, without the password */
	char		*password;	/* PostgreSQL, from password_file */
	long long	 busy_timeout;	/* ms */
	long long	 pool_size;
	long long	 timeout;	/* seconds a statement may take */
	int		 migrate;	/* database.migrate: auto */
	int		 checkpointer;	/* SQLite: a child checkpoints the WAL */
};
int		 store_conf_from_url(const char *, struct store_conf *,
		     char **);
int		 store_conf_from_config(const struct config *,
		     struct store_conf *, char **);
void		 store_conf_clear(struct store_conf *);
char		*store_url_redacted(const char *);
void		 store_config_check(struct config *, struct config_errors *);
int		 store_open(const struct store_conf *, char **);
void		 store_close(void);
enum store_kind	 store_kind(void);
int		 store_ready(const char **);
int		 store_schema_version(void);
double		 store_stale_for(void);
const char	*store_version(enum store_kind);

/* Another process or daemon wrote: cb(arg) runs (at most once a turn). */
void		 store_watch(void (*)(void *), void *);
int		 store_catch_up(void);

/*
 * A loader of what a module keeps in memory: one run at a time; asked for
 * while it runs, it runs once more when that run is over, so that every
 * caller's callback sees a run that started after it asked. run() starts
 * the work and calls store_load_done() when it is over (with SQLite,
 * before it returns).
 */
struct store_load_waiter;
struct store_load {
	void			 (*run)(struct store_load *);
	int			  busy;
	int			  again;
	struct store_load_waiter *now;		/* told when this run ends */
	struct store_load_waiter *next;		/* told when the next does */
};
void		 store_load(struct store_load *, store_end_cb, void *);
void		 store_load_done(struct store_load *, int);

/* "db copy" (store-copy.c): synchronous, for the admin command. */
#define STORE_COPY_REFUSED	1	/* nothing copied: see the cause */
#define STORE_COPY_FAILED	2	/* the target is left as it was */
struct store_copy_args {
	const char	*from;
	const char	*from_password;
	const char	*to;
	const char	*to_password;
	long long	 timeout;		/* seconds to connect */
	int		(*prepare)(void *, char **);	/* the target */
	void		*arg;
};
int		 store_copy(const struct store_copy_args *, FILE *,
		     char **);

/* Outside the loop: run it until *done is set. */
int		 store_wait(volatile int *);
int		 store_wait_ready(long long, char **);

#endif /* STORE_H */
