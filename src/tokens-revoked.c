/*
 * tokens-revoked.c: the revoked sessions (token families) held in memory,
 * so that revocation is enforced on every request without a query: loaded
 * at start, added to by our own revocations, reloaded (into a fresh table
 * that replaces the old one when it is complete) when another process or
 * daemon changes the database.
 *
 * A family's tokens expire at the latest when it does, and are accepted
 * until TOKEN_LEEWAY after that: a family that expired before the horizon
 * holds no token we would still accept, and only then may its revocation
 * be forgotten (in memory, by the loader, by the purge; a family row must
 * also stay until then for "user logout" to reach it).
 */

#include <stdlib.h>
#include <string.h>

#include <uthash.h>

#include "bsp.h"
#include "store.h"
#include "tokens.h"

struct revoked_family {
	char		*id;
	time_t		 expires;
	UT_hash_handle	 hh;
};

/* A load under way. */
struct revoked_load_op {
	struct revoked_family	*table;
	unsigned int		 gen;
	int			 tries;
	time_t			 horizon;
};

static struct {
	struct revoked_family	*table;
	int			 loaded;
	unsigned int		 gen;		/* bumped by each add */
	struct store_load	 loader;
} rv;

static struct store_stmt st_fam_revoked = STORE_STMT("SELECT id, expires "
    "FROM token_families WHERE revoked != 0 AND expires >= $1");

static void	revoked_del(struct revoked_family **,
		    struct revoked_family *);
static void	revoked_load_run(struct store_load *);

/* Families that expired before this may be forgotten. */
time_t
tokens_revoked_horizon(time_t now)
{
	return (now - TOKEN_LEEWAY);
}

static void
revoked_del(struct revoked_family **table, struct revoked_family *f)
{
	HASH_DEL(*table, f);
	free(f->id);
	free(f);
}

static void
revoked_table_free(struct revoked_family **table)
{
	struct revoked_family	*f, *tmp;

	HASH_ITER(hh, *table, f, tmp)
		revoked_del(table, f);
}

void
tokens_revoked_clear(void)
{
	revoked_table_free(&rv.table);
	rv.loaded = 0;
}

static void
revoked_put(struct revoked_family **table, const char *id, time_t expires)
{
	struct revoked_family	*f;

	HASH_FIND_STR(*table, id, f);
	if (f != NULL)
		return;
	f = xcalloc(1, sizeof *f);
	f->id = xstrdup(id);
	f->expires = expires;
	HASH_ADD_KEYPTR(hh, *table, f->id, strlen(f->id), f);
}

/* Our own revocation has committed: hold it at once. */
void
tokens_revoked_add(const char *id, time_t expires)
{
	revoked_put(&rv.table, id, expires);
	rv.gen++;
}

static void
revoked_load_row(const struct store_row *r, void *arg)
{
	struct revoked_load_op	*op = arg;
	const char		*id = store_text(r, 0);

	if (id != NULL)
		revoked_put(&op->table, id, (time_t)store_int(r, 1));
}

static void
revoked_load_end(int status, void *arg)
{
	struct revoked_load_op	*op = arg;
	struct store_param	 p[] = { SP_INT(op->horizon) };

	if (status != STORE_OK) {
		log_warnx("cannot load the revoked sessions");
		revoked_table_free(&op->table);
		free(op);
		store_load_done(&rv.loader, status);
		return;
	}
	if (op->gen != rv.gen && ++op->tries < 3) {
		/* Our own revocation landed meanwhile: read again. */
		revoked_table_free(&op->table);
		op->gen = rv.gen;
		store_run(0, &st_fam_revoked, p, nitems(p), revoked_load_row,
		    revoked_load_end, op);
		return;
	}
	revoked_table_free(&rv.table);
	rv.table = op->table;
	rv.loaded = 1;
	free(op);
	store_load_done(&rv.loader, STORE_OK);
}

static void
revoked_load_run(struct store_load *l)
{
	struct revoked_load_op	*op;

	op = xcalloc(1, sizeof *op);
	op->gen = rv.gen;
	op->horizon = tokens_revoked_horizon(now_wall());
	{
		struct store_param	p[] = { SP_INT(op->horizon) };

		store_run(0, &st_fam_revoked, p, nitems(p), revoked_load_row,
		    revoked_load_end, op);
	}
}

/* (Re)load the revoked families; done(status, arg) if given. */
void
tokens_revoked_load(store_end_cb done, void *arg)
{
	rv.loader.run = revoked_load_run;
	store_load(&rv.loader, done, arg);
}

int
tokens_revoked_loaded(void)
{
	return (rv.loaded);
}

/* Forget the families that expired before the horizon. */
void
tokens_revoked_expire(time_t now)
{
	struct revoked_family	*f, *tmp;

	HASH_ITER(hh, rv.table, f, tmp) {
		if (f->expires < tokens_revoked_horizon(now))
			revoked_del(&rv.table, f);
	}
}

int
tokens_family_revoked(const char *sid)
{
	struct revoked_family	*f;

	HASH_FIND_STR(rv.table, sid, f);
	return (f != NULL);
}
