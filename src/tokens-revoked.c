/*
 * tokens-revoked.c: the revoked sessions (token families) held in memory,
 * so that revocation is enforced on every request without a query: loaded
 * at start, added to by our own revocations, reloaded when another process
 * (an admin command) changes the database.
 *
 * A family's tokens expire at the latest when it does, and are accepted
 * until TOKEN_LEEWAY after that: a family that expired before the horizon
 * holds no token we would still accept, and only then may its revocation
 * be forgotten (in memory, by the loader, by the purge; a family row must
 * also stay until then for "user logout" to reach it).
 */

#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>
#include <uthash.h>

#include "bsp.h"
#include "tokens.h"

struct revoked_family {
	char		*id;
	time_t		 expires;
	UT_hash_handle	 hh;
};

static struct revoked_family	*revoked;

static struct db_stmt st_fam_revoked = { "SELECT id, expires FROM "
    "token_families WHERE revoked != 0 AND expires >= ?", NULL, NULL };

static void	revoked_del(struct revoked_family *);

/* Families that expired before this may be forgotten. */
time_t
tokens_revoked_horizon(time_t now)
{
	return (now - TOKEN_LEEWAY);
}

static void
revoked_del(struct revoked_family *f)
{
	HASH_DEL(revoked, f);
	free(f->id);
	free(f);
}

void
tokens_revoked_clear(void)
{
	struct revoked_family	*f, *tmp;

	HASH_ITER(hh, revoked, f, tmp)
		revoked_del(f);
}

void
tokens_revoked_add(const char *id, time_t expires)
{
	struct revoked_family	*f;

	HASH_FIND_STR(revoked, id, f);
	if (f != NULL)
		return;
	f = xcalloc(1, sizeof *f);
	f->id = xstrdup(id);
	f->expires = expires;
	HASH_ADD_KEYPTR(hh, revoked, f->id, strlen(f->id), f);
}

int
tokens_revoked_load(void)
{
	sqlite3_stmt	*st = db_prepare(&st_fam_revoked);
	int		 rc;

	tokens_revoked_clear();
	sqlite3_bind_int64(st, 1,
	    (sqlite3_int64)tokens_revoked_horizon(now_wall()));
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		tokens_revoked_add((const char *)sqlite3_column_text(st, 0),
		    (time_t)sqlite3_column_int64(st, 1));
	sqlite3_reset(st);
	return (rc == SQLITE_DONE ? 0 : -1);
}

/* Forget the families that expired before the horizon. */
void
tokens_revoked_expire(time_t now)
{
	struct revoked_family	*f, *tmp;

	HASH_ITER(hh, revoked, f, tmp) {
		if (f->expires < tokens_revoked_horizon(now))
			revoked_del(f);
	}
}

int
tokens_family_revoked(const char *sid)
{
	struct revoked_family	*f;

	HASH_FIND_STR(revoked, sid, f);
	return (f != NULL);
}
