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

#define USER_COLS "id, provider, subject, email, email_verified, name, " \
    "groups, disabled, revoked_before, first_login, last_login"
static struct db_stmt	st_get = { "SELECT " USER_COLS " FROM users WHERE "
    "id = ?", NULL, NULL };
static struct db_stmt	st_by_email = { "SELECT " USER_COLS " FROM users "
    "WHERE email = ? COLLATE NOCASE LIMIT 2", NULL, NULL };
static struct db_stmt	st_upsert = { "INSERT INTO users (id, provider, "
    "subject, email, email_verified, name, groups, first_login, last_login) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
    "email = excluded.email, email_verified = excluded.email_verified, "
    "name = excluded.name, groups = excluded.groups, "
    "last_login = excluded.last_login", NULL, NULL };
static struct db_stmt	st_disable = { "UPDATE users SET disabled = ? "
    "WHERE id = ?", NULL, NULL };
static struct db_stmt	st_revoke = { "UPDATE users SET revoked_before = ? "
    "WHERE id = ?", NULL, NULL };
static struct db_stmt	st_state = { "SELECT id, disabled, revoked_before "
    "FROM users WHERE disabled != 0 OR revoked_before > 0", NULL, NULL };

void
user_clear(struct user *u)
{
	free(u->id);
	free(u->provider);
	free(u->subject);
	free(u->email);
	free(u->name);
	strlist_free(&u->groups);
	memset(u, 0, sizeof *u);
}

static char *
col_text(sqlite3_stmt *st, int i)
{
	const unsigned char	*t = sqlite3_column_text(st, i);

	return (t != NULL ? xstrdup((const char *)t) : NULL);
}

static void
user_from_row(sqlite3_stmt *st, struct user *u)
{
	const char	*g;
	json_t		*j, *v;
	size_t		 i;

	memset(u, 0, sizeof *u);
	u->id = col_text(st, 0);
	u->provider = col_text(st, 1);
	u->subject = col_text(st, 2);
	u->email = col_text(st, 3);
	u->email_verified = sqlite3_column_int(st, 4);
	u->name = col_text(st, 5);
	g = (const char *)sqlite3_column_text(st, 6);
	if (g != NULL && (j = json_loads(g, 0, NULL)) != NULL) {
		json_array_foreach(j, i, v) {
			if (json_is_string(v))
				strlist_add(&u->groups, json_string_value(v));
		}
		json_decref(j);
	}
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
	json_t		*g = json_array();
	char		*gs;
	size_t		 i;
	time_t		 now = now_wall();
	int		 rc;

	for (i = 0; i < u->groups.n; i++)
		json_array_append_new(g, json_string(u->groups.v[i]));
	gs = json_dumps(g, JSON_COMPACT);
	json_decref(g);
	sqlite3_bind_text(st, 1, u->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, u->provider, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, u->subject, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, u->email, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 5, u->email_verified);
	sqlite3_bind_text(st, 6, u->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, gs, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 8, (sqlite3_int64)now);
	sqlite3_bind_int64(st, 9, (sqlite3_int64)now);
	rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
	if (rc == -1)
		log_warnx("users: cannot save %s: %s", u->id, db_errmsg());
	sqlite3_reset(st);
	free(gs);
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
 * (Re)load the users whose tokens need a second look: disabled ones and
 * those logged out everywhere. Called at start, after our own changes, and
 * when another process (an admin command) changed the database.
 */
int
users_load_state(void)
{
	sqlite3_stmt		*st = db_prepare(&st_state);
	struct user_state_entry	*e;
	int			 rc;

	users_state_free();
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		e = xcalloc(1, sizeof *e);
		e->s.id = xstrdup((const char *)sqlite3_column_text(st, 0));
		e->s.disabled = sqlite3_column_int(st, 1);
		e->s.revoked_before = (time_t)sqlite3_column_int64(st, 2);
		HASH_ADD_KEYPTR(hh, user_states, e->s.id, strlen(e->s.id), e);
	}
	sqlite3_reset(st);
	return (rc == SQLITE_DONE ? 0 : -1);
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
