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

#endif /* STORE_INT_H */
