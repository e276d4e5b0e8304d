/*
 * users.c: the users table, and the small in-memory view of it that every
 * authenticated request consults: which users are disabled, which had
 * their tokens revoked ("user logout") before some moment, and which the
 * access policy no longer admits. The view is loaded whole (at start,
 * when another process or daemon wrote, after a reload) into a fresh
 * table that replaces the old one when it is complete.
 */

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <uthash.h>

#include "bsp.h"
#include "store.h"

struct user_state_entry {
	struct user_state	 s;
	UT_hash_handle		 hh;
};

/* A load of the users' state under way. */
struct users_load_op {
	struct user_state_entry	*table;		/* being built */
	unsigned int		 gen;		/* users.gen at the start */
	int			 tries;
};

static struct {
	struct user_state_entry	*states;
	int			 loaded;
	unsigned int		 gen;		/* bumped by each note */
	struct store_load	 loader;
} users;

/* A lookup, for its callback. */
struct user_op {
	struct user	 u;
	int		 rows;
	int		 step;		/* user_find: 0 by id, 1 by email */
	char		*key;
	user_cb		 cb;
	void		*arg;
};

/* user_upsert() in a unit. */
struct user_upsert_op {
	struct user	*u;
	store_step_cb	 done;
	void		*arg;
};

static int	user_admitted(const struct user *);
static void	user_state_set(struct user_state_entry **,
		    const struct user *);
static void	users_load_run(struct store_load *);

#define USER_COLS "id, provider, subject, email, email_verified, name, " \
    "groups, disabled, revoked_before, first_login, last_login, tenant, orgs"
static struct store_stmt st_get = STORE_STMT("SELECT " USER_COLS " FROM "
    "users WHERE id = $1");
static struct store_stmt st_by_email = STORE_STMT("SELECT " USER_COLS " FROM "
    "users WHERE lower(email) = lower($1) LIMIT 2");
static struct store_stmt st_upsert = STORE_STMT("INSERT INTO users (id, "
    "provider, subject, email, email_verified, name, groups, first_login, "
    "last_login, tenant, orgs) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, "
    "$10, $11) ON CONFLICT (id) DO UPDATE SET email = excluded.email, "
    "email_verified = excluded.email_verified, name = excluded.name, groups "
    "= excluded.groups, last_login = excluded.last_login, tenant = "
    "excluded.tenant, orgs = excluded.orgs RETURNING " USER_COLS);
static struct store_stmt st_disable = STORE_STMT("UPDATE users SET disabled "
    "= $1 WHERE id = $2");
static struct store_stmt st_revoke = STORE_STMT("UPDATE users SET "
    "revoked_before = $1 WHERE id = $2");
static struct store_stmt st_state = STORE_STMT("SELECT " USER_COLS " FROM "
    "users");

void
user_clear(struct user *u)
{
	free(u->id);
	free(u->provider);
	free(u->subject);
	free(u->email);
	free(u->name);
	free(u->tenant);
	strlist_free(&u->groups);
	strlist_free(&u->orgs);
	memset(u, 0, sizeof *u);
}

static char *
user_strdup(const char *s)
{
	return (s != NULL ? xstrdup(s) : NULL);
}

/* A deep copy of src in dst. */
void
user_copy(struct user *dst, const struct user *src)
{
	*dst = *src;
	dst->id = user_strdup(src->id);
	dst->provider = user_strdup(src->provider);
	dst->subject = user_strdup(src->subject);
	dst->email = user_strdup(src->email);
	dst->name = user_strdup(src->name);
	dst->tenant = user_strdup(src->tenant);
	memset(&dst->groups, 0, sizeof dst->groups);
	memset(&dst->orgs, 0, sizeof dst->orgs);
	strlist_copy(&dst->groups, &src->groups);
	strlist_copy(&dst->orgs, &src->orgs);
}

static char *
strlist_to_jsontext(const struct strlist *l)
{
	json_t	*a = strlist_to_json(l);
	char	*s;

	s = json_dumps(a, JSON_COMPACT);
	json_decref(a);
	return (s);
}

static void
user_from_row(const struct store_row *r, struct user *u)
{
	memset(u, 0, sizeof *u);
	u->id = store_strdup(r, 0);
	u->provider = store_strdup(r, 1);
	u->subject = store_strdup(r, 2);
	u->email = store_strdup(r, 3);
	u->email_verified = (int)store_int(r, 4);
	u->name = store_strdup(r, 5);
	strlist_from_json_text(&u->groups, store_text(r, 6));
	u->tenant = store_strdup(r, 11);
	strlist_from_json_text(&u->orgs, store_text(r, 12));
	u->disabled = (int)store_int(r, 7);
	u->revoked_before = (time_t)store_int(r, 8);
	u->first_login = (time_t)store_int(r, 9);
	u->last_login = (time_t)store_int(r, 10);
}

static void
user_op_row(const struct store_row *r, void *arg)
{
	struct user_op	*op = arg;

	if (op->rows++ == 0)
		user_from_row(r, &op->u);
}

/* The lookup is over: the callback gets the user (valid during it). */
static void
user_op_end(struct user_op *op, int rc)
{
	op->cb(rc, rc == 0 ? &op->u : NULL, op->arg);
	user_clear(&op->u);
	free(op->key);
	free(op);
}

static void
user_got(int status, void *arg)
{
	struct user_op	*op = arg;

	if (status != STORE_OK)
		user_op_end(op, -3);
	else
		user_op_end(op, op->rows > 0 ? 0 : -1);
}

/*
 * By id: cb(rc, user, arg) with rc 0 (found), -1 (no such user) or -3
 * (the database failed).
 */
void
user_get(const char *id, user_cb cb, void *arg)
{
	struct user_op		*op;
	struct store_param	 p[] = { SP_TEXT(id) };

	op = xcalloc(1, sizeof *op);
	op->cb = cb;
	op->arg = arg;
	store_run(0, &st_get, p, nitems(p), user_op_row, user_got, op);
}

/* user_find(): by id, then by email. */
static void
user_find_step(int status, void *arg)
{
	struct user_op		*op = arg;
	struct store_param	 p[] = { SP_TEXT(op->key) };

	if (status != STORE_OK) {
		user_op_end(op, -3);
		return;
	}
	if (op->step == 0 && op->rows == 0) {
		op->step = 1;
		store_run(0, &st_by_email, p, nitems(p), user_op_row,
		    user_find_step, op);
		return;
	}
	if (op->rows > 1) {
		user_clear(&op->u);
		user_op_end(op, -2);
		return;
	}
	user_op_end(op, op->rows == 1 ? 0 : -1);
}

/*
 * By id or, failing that, by email: cb(rc, user, arg), rc 0 found, -1 not
 * found, -2 the email belongs to more than one user (say which with the
 * id instead), -3 the database failed.
 */
void
user_find(const char *key, user_cb cb, void *arg)
{
	struct user_op		*op;
	struct store_param	 p[] = { SP_TEXT(key) };

	op = xcalloc(1, sizeof *op);
	op->key = xstrdup(key);
	op->cb = cb;
	op->arg = arg;
	store_run(0, &st_get, p, nitems(p), user_op_row, user_find_step, op);
}

static void
user_upsert_row(const struct store_row *r, void *arg)
{
	struct user_upsert_op	*op = arg;

	/* What the row holds that the caller did not say. */
	op->u->disabled = (int)store_int(r, 7);
	op->u->revoked_before = (time_t)store_int(r, 8);
	op->u->first_login = (time_t)store_int(r, 9);
	op->u->last_login = (time_t)store_int(r, 10);
}

static void
user_upserted(struct store_txn *t, int status, void *arg)
{
	struct user_upsert_op	*op = arg;
	store_step_cb		 done = op->done;
	void			*darg = op->arg;

	if (status != STORE_OK)
		log_warnx("users: cannot save %s", op->u->id);
	free(op);
	done(t, status, darg);
}

/*
 * Insert or refresh a user after a login, in the unit t; u gets what the
 * table holds besides (disabled, revoked_before, first and last login),
 * and must stay until done(t, status, arg). After the unit commits, the
 * caller notes the user's state (user_state_note).
 */
void
user_upsert(struct store_txn *t, struct user *u, store_step_cb done,
    void *arg)
{
	struct user_upsert_op	*op;
	char			*gs, *os;
	time_t			 now = now_wall();

	op = xcalloc(1, sizeof *op);
	op->u = u;
	op->done = done;
	op->arg = arg;
	gs = strlist_to_jsontext(&u->groups);
	os = strlist_to_jsontext(&u->orgs);
	{
		struct store_param	p[] = {
			SP_TEXT(u->id), SP_TEXT(u->provider),
			SP_TEXT(u->subject), SP_TEXT(u->email),
			SP_INT(u->email_verified), SP_TEXT(u->name),
			SP_TEXT(gs), SP_INT(now), SP_INT(now),
			SP_TEXT(u->tenant), SP_TEXT(os),
		};

		store_exec(t, &st_upsert, p, nitems(p), user_upsert_row,
		    user_upserted, op);
	}
	free(gs);
	free(os);
}

static void
user_local_row(const struct store_row *r, void *arg)
{
	struct user_op	*op = arg;

	user_clear(&op->u);
	user_from_row(r, &op->u);
	op->rows++;
}

static void
user_local_done(int status, void *arg)
{
	struct user_op	*op = arg;

	if (status != STORE_OK || op->rows != 1) {
		user_op_end(op, -3);
		return;
	}
	user_state_note(&op->u);
	user_op_end(op, 0);
}

/*
 * A local (service) account for "token mint" and "key create" when the
 * named user never logged in: id "local:NAME". cb(rc, user, arg): 0 made
 * or found, -1 not a usable name, -3 the database failed.
 */
void
user_ensure_local(const char *name, user_cb cb, void *arg)
{
	struct user_op	*op;
	char		*id, *email = NULL, *gs = NULL;
	time_t		 now = now_wall();

	if (strncmp(name, "local:", 6) == 0)
		name += 6;
	if (*name == '\0' || strlen(name) > 128 ||
	    !str_is_printable(name, strlen(name))) {
		cb(-1, NULL, arg);
		return;
	}
	op = xcalloc(1, sizeof *op);
	op->cb = cb;
	op->arg = arg;
	xasprintf(&id, "local:%s", name);
	if (strchr(name, '@') != NULL)
		email = xstrdup(name);
	gs = xstrdup("[]");
	{
		struct store_param	p[] = {
			SP_TEXT(id), SP_TEXT("local"), SP_TEXT(name),
			SP_TEXT(email), SP_INT(email != NULL), SP_NULL,
			SP_TEXT(gs), SP_INT(now), SP_INT(now), SP_NULL,
			SP_TEXT(gs),
		};

		store_run(STORE_WRITE, &st_upsert, p, nitems(p),
		    user_local_row, user_local_done, op);
	}
	free(id);
	free(email);
	free(gs);
}

/*
 * Disable or enable a user in the unit t; store_changes(t) is 1 if there
 * is such a user.
 */
void
user_set_disabled(struct store_txn *t, const char *id, int disabled,
    store_step_cb done, void *arg)
{
	struct store_param	p[] = { SP_INT(disabled), SP_TEXT(id) };

	store_exec(t, &st_disable, p, nitems(p), NULL, done, arg);
}

/* "user logout": tokens issued before t no longer work (in the unit). */
void
user_set_revoked_before(struct store_txn *t, const char *id, time_t when,
    store_step_cb done, void *arg)
{
	struct store_param	p[] = { SP_INT(when), SP_TEXT(id) };

	store_exec(t, &st_revoke, p, nitems(p), NULL, done, arg);
}

static void
users_table_free(struct user_state_entry **table)
{
	struct user_state_entry	*e, *tmp;

	HASH_ITER(hh, *table, e, tmp) {
		HASH_DEL(*table, e);
		free(e->s.id);
		free(e);
	}
}

void
users_state_free(void)
{
	users_table_free(&users.states);
	users.loaded = 0;
}

/*
 * Does the access policy (still) admit a user who logged in through a
 * provider? Local accounts, made by an administrator, always are; a user
 * of a provider that is no longer configured is not.
 */
static int
user_admitted(const struct user *u)
{
	const struct provider_config	*pc;
	struct identity			 id;
	const char			*why;

	if (u->provider == NULL || strcmp(u->provider, "local") == 0)
		return (1);
	if ((pc = provider_find(cfg, u->provider, strlen(u->provider))) ==
	    NULL)
		return (0);
	memset(&id, 0, sizeof id);
	id.subject = u->subject;
	id.email = u->email;
	id.email_verified = u->email_verified;
	id.groups = u->groups;
	id.orgs = u->orgs;
	id.tenant = u->tenant;
	return (access_allowed(cfg, pc, &id, &why));
}

/* Hold (or stop holding) against one user what the table says. */
static void
user_state_set(struct user_state_entry **table, const struct user *u)
{
	struct user_state_entry	*e;
	int			 denied = !user_admitted(u);

	HASH_FIND_STR(*table, u->id, e);
	if (!u->disabled && u->revoked_before == 0 && !denied) {
		if (e != NULL) {
			HASH_DEL(*table, e);
			free(e->s.id);
			free(e);
		}
		return;
	}
	if (e == NULL) {
		e = xcalloc(1, sizeof *e);
		e->s.id = xstrdup(u->id);
		HASH_ADD_KEYPTR(hh, *table, e->s.id, strlen(e->s.id), e);
	}
	e->s.disabled = u->disabled;
	e->s.denied = denied;
	e->s.revoked_before = u->revoked_before;
}

/*
 * Our own write of a user (a login, a local account) has committed: hold
 * against them what the row now says. 1 if something is, or was, held
 * against them (other daemons should load the users again).
 */
int
user_state_note(const struct user *u)
{
	int	held = user_state(u->id) != NULL;

	user_state_set(&users.states, u);
	users.gen++;
	return (held || user_state(u->id) != NULL);
}

static void
users_load_row(const struct store_row *r, void *arg)
{
	struct users_load_op	*op = arg;
	struct user		 u;

	user_from_row(r, &u);
	user_state_set(&op->table, &u);
	user_clear(&u);
}

static void
users_load_end(int status, void *arg)
{
	struct users_load_op	*op = arg;

	if (status != STORE_OK) {
		log_warnx("cannot load the users' state");
		users_table_free(&op->table);
		free(op);
		store_load_done(&users.loader, status);
		return;
	}
	if (op->gen != users.gen && ++op->tries < 3) {
		/* Our own write landed meanwhile: read again. */
		users_table_free(&op->table);
		op->gen = users.gen;
		store_run(0, &st_state, NULL, 0, users_load_row, users_load_end,
		    op);
		return;
	}
	users_table_free(&users.states);
	users.states = op->table;
	users.loaded = 1;
	free(op);
	store_load_done(&users.loader, STORE_OK);
}

static void
users_load_run(struct store_load *l)
{
	struct users_load_op	*op;

	op = xcalloc(1, sizeof *op);
	op->gen = users.gen;
	store_run(0, &st_state, NULL, 0, users_load_row, users_load_end, op);
}

/*
 * (Re)load the users whose tokens need a second look: disabled ones, those
 * logged out everywhere, and those the access policy no longer admits.
 * At start, after our own changes, after a reload (the policy may have
 * changed) and when another process or daemon wrote; done(status, arg),
 * if given, once a load that started after this call is over.
 */
void
users_load_state(store_end_cb done, void *arg)
{
	users.loader.run = users_load_run;
	store_load(&users.loader, done, arg);
}

/* Another process wrote: the users' state again. */
void
users_sync(void)
{
	users_load_state(NULL, NULL);
}

/* Has the users' state been loaded (once)? */
int
users_loaded(void)
{
	return (users.loaded);
}

/* NULL when nothing is held against the user. */
const struct user_state *
user_state(const char *id)
{
	struct user_state_entry	*e;

	if (id == NULL)
		return (NULL);
	HASH_FIND_STR(users.states, id, e);
	return (e != NULL ? &e->s : NULL);
}
