/*
 * store-int.h: what the store's files share (store.c and its two
 * backends); nothing outside the store family includes it.
 */

#ifndef STORE_INT_H
#define STORE_INT_H

#include <sys/queue.h>

#include "store.h"

/* One backend: store.c calls these. */
struct store_backend {
	const char	*name;
	int		(*open)(const struct store_conf *, char **);
	void		(*close)(void);
	int		(*ready)(const char **);
	int		(*schema_version)(void);
	struct store_txn *(*begin)(int, store_step_cb, void *);
	void		(*exec)(struct store_txn *, struct store_stmt *,
			    const struct store_param *, size_t, store_row_cb,
			    store_step_cb, void *);
	void		(*notify)(struct store_txn *, const char *);
	void		(*commit)(struct store_txn *, store_end_cb, void *);
	void		(*rollback)(struct store_txn *);
	void		(*watch_start)(void);
	int		(*catch_up)(void);
	const char	*(*version)(void);
	double		(*stale_for)(void);
};

extern const struct store_backend store_sqlite_backend;
extern const struct store_backend store_pg_backend;

/* What a unit of work is, whichever backend runs it. */
struct store_txn {
	int			 flags;
	long long		 changes;	/* of the last statement */
	int			 notify;	/* wake the watchers on commit */
	void			*be;		/* the backend's own */
};

/* A row: the backend's accessors behind one face. */
struct store_row {
	const struct store_row_ops	*ops;
	void				*a;
	int				 i;
};
struct store_row_ops {
	int		(*ncols)(const struct store_row *);
	int		(*null)(const struct store_row *, int);
	long long	(*integer)(const struct store_row *, int);
	const char	*(*text)(const struct store_row *, int);
	const uint8_t	*(*blob)(const struct store_row *, int, size_t *);
};

/* Schema migrations, each in both dialects (store-schema.c). */
struct store_migration {
	const char	*sqlite;
	const char	*pg;
};
extern const struct store_migration	store_migrations[];
extern const size_t			store_nmigrations;

/* store.c: the watchers, woken once a turn when another writer wrote. */
void		 store_changed(void);

/*
 * libpq is loaded (dlopen) when PostgreSQL is first used, not linked: with
 * what it pulls in (Kerberos, LDAP, SASL, GnuTLS, p11-kit) it added 3.4 MB
 * to the resident size of every daemon, most of which run on SQLite.
 * The files that include libpq-fe.h (before this header) call every libpq
 * function through pq, which store_pq_load() fills; the #defines keep the
 * calls' spelling (## and # keep PQ_FN's argument from being expanded).
 * A function not in PQ_FNS does not link.
 */
#ifdef LIBPQ_FE_H
#define STORE_LIBPQ		"libpq.so.5"
#define PQ_FNS \
	PQ_FN(PQclear) \
	PQ_FN(PQcmdTuples) \
	PQ_FN(PQconnectdbParams) \
	PQ_FN(PQconnectPoll) \
	PQ_FN(PQconnectStartParams) \
	PQ_FN(PQconninfoFree) \
	PQ_FN(PQconninfoParse) \
	PQ_FN(PQconsumeInput) \
	PQ_FN(PQerrorMessage) \
	PQ_FN(PQexec) \
	PQ_FN(PQexecParams) \
	PQ_FN(PQfinish) \
	PQ_FN(PQflush) \
	PQ_FN(PQfreemem) \
	PQ_FN(PQgetisnull) \
	PQ_FN(PQgetlength) \
	PQ_FN(PQgetResult) \
	PQ_FN(PQgetvalue) \
	PQ_FN(PQisBusy) \
	PQ_FN(PQlibVersion) \
	PQ_FN(PQnfields) \
	PQ_FN(PQnotifies) \
	PQ_FN(PQntuples) \
	PQ_FN(PQresultErrorField) \
	PQ_FN(PQresultErrorMessage) \
	PQ_FN(PQresultStatus) \
	PQ_FN(PQsendPrepare) \
	PQ_FN(PQsendQuery) \
	PQ_FN(PQsendQueryParams) \
	PQ_FN(PQsendQueryPrepared) \
	PQ_FN(PQsetnonblocking) \
	PQ_FN(PQsetNoticeProcessor) \
	PQ_FN(PQsetSingleRowMode) \
	PQ_FN(PQsocket) \
	PQ_FN(PQstatus)

struct store_pq {
	void	*dl;
#define PQ_FN(f)	__typeof__(f) *p_##f;
	PQ_FNS
#undef PQ_FN
};
extern struct store_pq	 pq;

#define PQclear			pq.p_PQclear
#define PQcmdTuples		pq.p_PQcmdTuples
#define PQconnectdbParams	pq.p_PQconnectdbParams
#define PQconnectPoll		pq.p_PQconnectPoll
#define PQconnectStartParams	pq.p_PQconnectStartParams
#define PQconninfoFree		pq.p_PQconninfoFree
#define PQconninfoParse		pq.p_PQconninfoParse
#define PQconsumeInput		pq.p_PQconsumeInput
#define PQerrorMessage		pq.p_PQerrorMessage
#define PQexec			pq.p_PQexec
#define PQexecParams		pq.p_PQexecParams
#define PQfinish		pq.p_PQfinish
#define PQflush			pq.p_PQflush
#define PQfreemem		pq.p_PQfreemem
#define PQgetisnull		pq.p_PQgetisnull
#define PQgetlength		pq.p_PQgetlength
#define PQgetResult		pq.p_PQgetResult
#define PQgetvalue		pq.p_PQgetvalue
#define PQisBusy		pq.p_PQisBusy
#define PQlibVersion		pq.p_PQlibVersion
#define PQnfields		pq.p_PQnfields
#define PQnotifies		pq.p_PQnotifies
#define PQntuples		pq.p_PQntuples
#define PQresultErrorField	pq.p_PQresultErrorField
#define PQresultErrorMessage	pq.p_PQresultErrorMessage
#define PQresultStatus		pq.p_PQresultStatus
#define PQsendPrepare		pq.p_PQsendPrepare
#define PQsendQuery		pq.p_PQsendQuery
#define PQsendQueryParams	pq.p_PQsendQueryParams
#define PQsendQueryPrepared	pq.p_PQsendQueryPrepared
#define PQsetnonblocking	pq.p_PQsetnonblocking
#define PQsetNoticeProcessor	pq.p_PQsetNoticeProcessor
#define PQsetSingleRowMode	pq.p_PQsetSingleRowMode
#define PQsocket		pq.p_PQsocket
#define PQstatus		pq.p_PQstatus
#endif /* LIBPQ_FE_H */

/* Load libpq once (before any PQ call); -1 (said why) if it cannot be. */
int		 store_pq_load(char **);
/* Whether libpq has been loaded. */
int		 store_pq_loaded(void);

#endif /* STORE_INT_H */
