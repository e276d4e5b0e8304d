/*
 * users.c: the users table, and the small in-memory view of it that every
 * authenticated request consults: which users are disabled, and which had
 * their tokens revoked ("user logout") before some moment.
 */

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sqlite3.h>
#include <uthash.h>

#include "bsp.h"

struct user_state_entry {
	struct user_state	 s;
	UT_hash_handle		 hh;
};

static struct user_state_entry	*user_states;

static int	user_admitted(const struct user *);
static void	user_state_set(const struct user *);

#define USER_COLS "id, provider, subject, email, email_verified, name, " \
    "groups, disabled, revoked_before, first_login, last_login, tenant, orgs"
static struct db_stmt	st_get = { "SELECT " USER_COLS " FROM users WHERE "
    "id = ?", NULL, NULL };
static struct db_stmt	st_by_email = { "SELECT " USER_COLS " FROM users "
    "WHERE email = ? COLLATE NOCASE LIMIT 2", NULL, NULL };
static struct db_stmt	st_upsert = { "INSERT INTO users (id, provider, "
    "subject, email, email_verified, name, groups, first_login, last_login, "
    "tenant, orgs) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) "
    "DO UPDATE SET email = excluded.email, email_verified = "
    "excluded.email_verified, name = excluded.name, groups = "
    "excluded.groups, last_login = excluded.last_login, tenant = "
    "excluded.tenant, orgs = excluded.orgs", NULL, NULL };
static struct db_stmt	st_disable = { "UPDATE users SET disabled = ? "
    "WHERE id = ?", NULL, NULL };
static struct db_stmt	st_revoke = { "UPDATE users SET revoked_before = ? "
    "WHERE id = ?", NULL, NULL };
static struct db_stmt	st_state = { "SELECT " USER_COLS " FROM users",
    NULL, NULL };

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
strlist_to_jsontext(const struct strlist *l)
{
	json_t	*a = strlist_to_json(l);
	char	*s;

	s = json_dumps(a, JSON_COMPACT);
	json_decref(a);
	return (s);
}

static void
user_from_row(sqlite3_stmt *st, struct user *u)
{
	memset(u, 0, sizeof *u);
	u->id = db_col_strdup(st, 0);
	u->provider = db_col_strdup(st, 1);
	u->subject = db_col_strdup(st, 2);
	u->email = db_col_strdup(st, 3);
	u->email_verified = sqlite3_column_int(st, 4);
	u->name = db_col_strdup(st, 5);
	strlist_from_json_text(&u->groups,
	    (const char *)sqlite3_column_text(st, 6));
	u->tenant = db_col_strdup(st, 11);
	strlist_from_json_text(&u->orgs,
	    (const char *)sqlite3_column_text(st, 12));
	u->disabled = sqlite3_column_int(st, 7);
	u->revoked_before = (time_t)sqlite3_column_int64(st, 8);
	u->first_login = (time_t)sqlite3_column_int64(st, 9);
	u->last_login = (time_t)sqlite3_column_int64(st, 10);
}

/* By id. 0 found, -1 not found or error. */
int
user_get(const char *id, struct user *u)
{
	sqlite3_stmt	*st = db_prepare(&st_get);
	int		 rc = -1;

	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		user_from_row(st, u);
		rc = 0;
	}
	sqlite3_reset(st);
	return (rc);
}

/*
 * By id or, failing that, by email. 0 found, -1 not found, -2 the email
 * belongs to more than one user (say which with the id instead).
 */
int
user_find(const char *key, struct user *u)
{
	sqlite3_stmt	*st;
	int		 rc = -1;

	if (user_get(key, u) == 0)
		return (0);
	st = db_prepare(&st_by_email);
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		user_from_row(st, u);
		rc = 0;
		if (sqlite3_step(st) == SQLITE_ROW) {
			user_clear(u);
			rc = -2;
		}
	}
	sqlite3_reset(st);
	return (rc);
}

/* Insert or refresh a user after a login. */
int
user_upsert(const struct user *u)
{
	sqlite3_stmt	*st = db_prepare(&st_upsert);
	struct user	 cur;
	char		*gs, *os;
	time_t		 now = now_wall();
	int		 rc;

	gs = strlist_to_jsontext(&u->groups);
	os = strlist_to_jsontext(&u->orgs);
	sqlite3_bind_text(st, 1, u->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, u->provider, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, u->subject, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, u->email, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 5, u->email_verified);
	sqlite3_bind_text(st, 6, u->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, gs, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 8, (sqlite3_int64)now);
	sqlite3_bind_int64(st, 9, (sqlite3_int64)now);
	sqlite3_bind_text(st, 10, u->tenant, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 11, os, -1, SQLITE_STATIC);
	rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
	if (rc == -1)
		log_warnx("users: cannot save %s: %s", u->id, db_errmsg());
	sqlite3_reset(st);
	free(gs);
	free(os);
	/*
	 * What the IdP said now may change what is held against the user
	 * (a new email the policy admits): their new tokens must work.
	 */
	if (rc == 0 && user_get(u->id, &cur) == 0) {
		user_state_set(&cur);
		user_clear(&cur);
	}
	return (rc);
}

/*
 * A local (service) account for "token mint" and "key create" when the
 * named user never logged in: id "local:NAME".
 */
int
user_ensure_local(const char *name, struct user *u)
{
	struct user	nu;
	int		rc;

	memset(&nu, 0, sizeof nu);
	if (strncmp(name, "local:", 6) == 0)
		name += 6;
	if (*name == '\0' || strlen(name) > 128 ||
	    !str_is_printable(name, strlen(name)))
		return (-1);
	xasprintf(&nu.id, "local:%s", name);
	nu.provider = xstrdup("local");
	nu.subject = xstrdup(name);
	if (strchr(name, '@') != NULL) {
		nu.email = xstrdup(name);
		nu.email_verified = 1;
	}
	rc = user_upsert(&nu);
	if (rc == 0)
		rc = user_get(nu.id, u);
	user_clear(&nu);
	return (rc);
}

int
user_set_disabled(const char *id, int disabled)
{
	sqlite3_stmt	*st = db_prepare(&st_disable);
	int		 rc;

	sqlite3_bind_int(st, 1, disabled);
	sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
	rc = sqlite3_step(st) == SQLITE_DONE && sqlite3_changes(bsp_db) == 1 ?
	    0 : -1;
	sqlite3_reset(st);
	return (rc);
}

int
user_set_revoked_before(const char *id, time_t t)
{
	sqlite3_stmt	*st = db_prepare(&st_revoke);
	int		 rc;

	sqlite3_bind_int64(st, 1, (sqlite3_int64)t);
	sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
	rc = sqlite3_step(st) == SQLITE_DONE && sqlite3_changes(bsp_db) == 1 ?
	    0 : -1;
	sqlite3_reset(st);
	return (rc);
}

void
users_state_free(void)
{
	struct user_state_entry	*e, *tmp;

	HASH_ITER(hh, user_states, e, tmp) {
		HASH_DEL(user_states, e);
		free(e->s.id);
		free(e);
	}
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
user_state_set(const struct user *u)
{
	struct user_state_entry	*e;
	int			 denied = !user_admitted(u);

	HASH_FIND_STR(user_states, u->id, e);
	if (!u->disabled && u->revoked_before == 0 && !denied) {
		if (e != NULL) {
			HASH_DEL(user_states, e);
			free(e->s.id);
			free(e);
		}
		return;
	}
	if (e == NULL) {
		e = xcalloc(1, sizeof *e);
		e->s.id = xstrdup(u->id);
		HASH_ADD_KEYPTR(hh, user_states, e->s.id, strlen(e->s.id), e);
	}
	e->s.disabled = u->disabled;
	e->s.denied = denied;
	e->s.revoked_before = u->revoked_before;
}

/*
 * (Re)load the users whose tokens need a second look: disabled ones, those
 * logged out everywhere, and those the access policy no longer admits.
 * Called at start, after our own changes, after a reload (the policy may
 * have changed) and when another process changed the database.
 */
int
users_load_state(void)
{
	sqlite3_stmt		*st = db_prepare(&st_state);
	struct user		 u;
	int			 rc;

	users_state_free();
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		user_from_row(st, &u);
		user_state_set(&u);
		user_clear(&u);
	}
	sqlite3_reset(st);
	return (rc == SQLITE_DONE ? 0 : -1);
}

/* Another process wrote: the users' state again. */
void
users_sync(void)
{
	if (users_load_state() == -1)
		log_warnx("cannot reload the users' state: %s", db_errmsg());
}

/* NULL when nothing is held against the user. */
const struct user_state *
user_state(const char *id)
{
	struct user_state_entry	*e;

	if (id == NULL)
		return (NULL);
	HASH_FIND_STR(user_states, id, e);
	return (e != NULL ? &e->s : NULL);
}
