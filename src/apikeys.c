/*
 * apikeys.c: long-lived API keys ("bsk_" + 256 random bits).
 *
 * A key is shown once, when it is made; the database keeps its hash, a
 * display hint, the owner, a name, model patterns and an expiry. Verified
 * keys are looked up by hash in memory, so checking one costs a hash and a
 * table lookup; the set is reloaded when another process changes the
 * database. last_used_at is written in batches, never on the request path.
 *
 * A key made over HTTP remembers the session (token family) whose token
 * made it, and ends with it: whatever revokes the family (logout, RFC 7009,
 * refresh token reuse, a disabled user) revokes its keys in the same
 * transaction, so a stolen access token cannot leave a key behind that
 * outlives the remedy. The administrator's keys ("key create") have no
 * session; "user logout" and "user disable" revoke every key of the user.
 */

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>
#include <uthash.h>

#include "bsp.h"
#include "crypto.h"

#define APIKEY_LEN	47	/* bsk_ + 43 base64url characters */
#define APIKEY_NAME_MAX	64
#define APIKEY_MODELS_MAX 32

struct apikey {
	uint8_t		 hash[CRYPTO_HASH_LEN];
	char		*id;
	char		*user_id;
	char		*name;
	struct strlist	 models;
	time_t		 expires;	/* 0: never */
	char		*email;
	char		*provider;
	int		 email_verified;
	struct strlist	 groups;
	time_t		 used;		/* not yet written */
	UT_hash_handle	 hh;
};

static struct apikey	*apikeys;
static long long	 apikeys_dv;	/* data_version when loaded */

static struct db_stmt st_load = { "SELECT k.id, k.hash, k.user_id, k.name, "
    "k.models, k.expires, u.email, u.provider, u.email_verified, u.groups "
    "FROM api_keys k LEFT JOIN users u ON u.id = k.user_id WHERE k.revoked = "
    "0 AND (k.expires IS NULL OR k.expires > ?)", NULL, NULL };
static struct db_stmt st_count = { "SELECT count(*) FROM api_keys WHERE "
    "user_id = ? AND revoked = 0 AND (expires IS NULL OR expires > ?)",
    NULL, NULL };
static struct db_stmt st_insert = { "INSERT INTO api_keys (id, hash, hint, "
    "user_id, name, models, created, expires, family_id) VALUES (?, ?, ?, ?, "
    "?, ?, ?, ?, ?)", NULL, NULL };
static struct db_stmt st_family_live = { "SELECT 1 FROM token_families "
    "WHERE id = ? AND user_id = ? AND revoked = 0 AND expires > ?", NULL,
    NULL };
static struct db_stmt st_list = { "SELECT id, user_id, name, hint, models, "
    "created, expires, last_used_at, revoked, family_id, revoked_reason FROM "
    "api_keys WHERE (?1 IS NULL OR user_id = ?1) ORDER BY created, id", NULL,
    NULL };
static struct db_stmt st_owner = { "SELECT user_id FROM api_keys WHERE id = "
    "? AND revoked = 0", NULL, NULL };
static struct db_stmt st_revoke = { "UPDATE api_keys SET revoked = 1, "
    "revoked_at = ?, revoked_reason = ? WHERE id = ? AND revoked = 0", NULL,
    NULL };
static struct db_stmt st_of_family = { "SELECT id, user_id FROM api_keys "
    "WHERE family_id = ? AND revoked = 0 ORDER BY id", NULL, NULL };
static struct db_stmt st_of_user = { "SELECT id, user_id FROM api_keys "
    "WHERE user_id = ? AND revoked = 0 ORDER BY id", NULL, NULL };
static struct db_stmt st_by_hash = { "SELECT id FROM api_keys WHERE hash = ? "
    "AND revoked = 0", NULL, NULL };
static struct db_stmt st_used = { "UPDATE api_keys SET last_used_at = ? "
    "WHERE id = ?", NULL, NULL };
static struct db_stmt st_purge = { "DELETE FROM api_keys WHERE (revoked != "
    "0 AND revoked_at < ?1) OR (expires IS NOT NULL AND expires < ?1)",
    NULL, NULL };

static void
apikey_free(struct apikey *k)
{
	free(k->id);
	free(k->user_id);
	free(k->name);
	free(k->email);
	free(k->provider);
	strlist_free(&k->models);
	strlist_free(&k->groups);
	free(k);
}

void
apikeys_free(void)
{
	struct apikey	*k, *tmp;

	HASH_ITER(hh, apikeys, k, tmp) {
		HASH_DEL(apikeys, k);
		apikey_free(k);
	}
}

/* (Re)load the keys that can still be used. */
int
apikeys_load(void)
{
	sqlite3_stmt	*st = db_prepare(&st_load);
	struct apikey	*k, *old, *prev = apikeys;
	int		 rc;

	apikeys = NULL;
	apikeys_dv = db_data_version();
	sqlite3_bind_int64(st, 1, (sqlite3_int64)now_wall());
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (sqlite3_column_bytes(st, 1) != CRYPTO_HASH_LEN)
			continue;
		k = xcalloc(1, sizeof *k);
		k->id = db_col_strdup(st, 0);
		memcpy(k->hash, sqlite3_column_blob(st, 1), CRYPTO_HASH_LEN);
		k->user_id = db_col_strdup(st, 2);
		k->name = db_col_strdup(st, 3);
		strlist_from_json_text(&k->models,
		    (const char *)sqlite3_column_text(st, 4));
		k->expires = (time_t)sqlite3_column_int64(st, 5);
		k->email = db_col_strdup(st, 6);
		k->provider = db_col_strdup(st, 7);
		k->email_verified = sqlite3_column_int(st, 8);
		strlist_from_json_text(&k->groups,
		    (const char *)sqlite3_column_text(st, 9));
		/* Keep a pending last-used time across the reload. */
		HASH_FIND(hh, prev, k->hash, CRYPTO_HASH_LEN, old);
		if (old != NULL)
			k->used = old->used;
		HASH_ADD(hh, apikeys, hash, CRYPTO_HASH_LEN, k);
	}
	sqlite3_reset(st);
	HASH_ITER(hh, prev, k, old) {
		HASH_DEL(prev, k);
		apikey_free(k);
	}
	return (rc == SQLITE_DONE ? 0 : -1);
}

static int
apikey_format_ok(const char *key)
{
	size_t	i;

	if (strlen(key) != APIKEY_LEN ||
	    strncmp(key, APIKEY_PREFIX, 4) != 0)
		return (0);
	for (i = 4; i < APIKEY_LEN; i++) {
		if (!isalnum((unsigned char)key[i]) && key[i] != '-' &&
		    key[i] != '_')
			return (0);
	}
	return (1);
}

/* Check a presented key; on success a new principal for its owner. */
int
apikey_verify(const char *key, struct principal **out, const char **reason)
{
	uint8_t			 h[CRYPTO_HASH_LEN];
	struct apikey		*k;
	struct principal	*p;

	*out = NULL;
	if (!cfg->apikeys_enabled) {
		*reason = "API keys are disabled";
		return (-1);
	}
	if (!apikey_format_ok(key)) {
		*reason = "malformed API key";
		return (-1);
	}
	crypto_hash_token(key, h);
	HASH_FIND(hh, apikeys, h, CRYPTO_HASH_LEN, k);
	if (k == NULL && db_data_version() != apikeys_dv) {
		/*
		 * Another process (key create) wrote since we loaded: catch
		 * up now rather than refuse a key made a moment ago.
		 */
		if (apikeys_load() == -1)
			log_warnx("cannot reload API keys: %s", db_errmsg());
		HASH_FIND(hh, apikeys, h, CRYPTO_HASH_LEN, k);
	}
	if (k == NULL) {
		*reason = "unknown or revoked API key";
		return (-1);
	}
	if (k->expires != 0 && k->expires <= now_wall()) {
		*reason = "API key expired";
		return (-1);
	}
	k->used = now_wall();
	p = principal_new(PRINCIPAL_API_KEY);
	p->sub = xstrdup(k->user_id);
	p->key_id = xstrdup(k->id);
	p->provider = k->provider != NULL ? xstrdup(k->provider) :
	    xstrdup("local");
	if (k->email != NULL)
		p->email = xstrdup(k->email);
	p->email_verified = k->email_verified;
	strlist_copy(&p->groups, &k->groups);
	strlist_copy(&p->key_models, &k->models);
	p->exp = k->expires;
	*out = p;
	return (0);
}

/* Write pending last-used times in one transaction. */
void
apikeys_flush_last_used(void)
{
	struct apikey	*k, *tmp;
	sqlite3_stmt	*st;
	int		 n = 0;

	if (bsp_db == NULL)
		return;
	HASH_ITER(hh, apikeys, k, tmp) {
		if (k->used == 0)
			continue;
		if (n++ == 0 && db_begin() == -1)
			return;
		st = db_prepare(&st_used);
		sqlite3_bind_int64(st, 1, (sqlite3_int64)k->used);
		sqlite3_bind_text(st, 2, k->id, -1, SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_DONE)
			log_warnx("cannot record API key use: %s", db_errmsg());
		sqlite3_reset(st);
		k->used = 0;
	}
	if (n > 0 && db_commit() == -1)
		log_warnx("cannot record API key use: %s", db_errmsg());
}

/* Another process wrote: the keys again. */
void
apikeys_sync(void)
{
	if (apikeys_load() == -1)
		log_warnx("cannot reload API keys: %s", db_errmsg());
}

/* Housekeeping: last-used times to the database, old keys forgotten. */
void
apikeys_maint(time_t now)
{
	apikeys_purge(now - (time_t)cfg->audit_retention_days * 86400);
	apikeys_flush_last_used();
}

/*
 * Forget keys revoked or expired before a time (the audit log's retention):
 * they no longer work and are no longer listed; the audit rows of their
 * making and revoking stay as long as any.
 */
void
apikeys_purge(time_t before)
{
	sqlite3_stmt	*st;

	if (bsp_db == NULL)
		return;
	st = db_prepare(&st_purge);
	sqlite3_bind_int64(st, 1, (sqlite3_int64)before);
	if (sqlite3_step(st) != SQLITE_DONE)
		log_warnx("cannot purge old API keys: %s", db_errmsg());
	sqlite3_reset(st);
}

static int
apikeys_text_ok(const char *s, size_t max)
{
	size_t	len = strlen(s);

	return (len > 0 && len <= max && str_is_printable(s, len));
}

/*
 * Check what a key is asked for: its name, its model patterns (returned
 * as a JSON array in *ma) and its ttl (< 0 becomes api_keys.default_ttl).
 * -1 with *why set if refused.
 */
static int
apikeys_request_ok(const char *name, const struct strlist *models,
    long long *ttl, json_t **ma, const char **why)
{
	size_t	i;

	*ma = NULL;
	if (name != NULL && !apikeys_text_ok(name, APIKEY_NAME_MAX)) {
		*why = "name must be 1 to 64 printable characters";
		return (-1);
	}
	if (models != NULL && models->n > APIKEY_MODELS_MAX) {
		*why = "too many model patterns";
		return (-1);
	}
	*ma = json_array();
	for (i = 0; models != NULL && i < models->n; i++) {
		if (!apikeys_text_ok(models->v[i], 256)) {
			*why = "model patterns must be printable text";
			goto out;
		}
		json_array_append_new(*ma, json_string(models->v[i]));
	}
	if (*ttl < 0)
		*ttl = cfg->apikeys_default_ttl;
	if (*ttl > 315360000) {
		*why = "ttl is too long";
		goto out;
	}
	return (0);
out:
	json_decref(*ma);
	*ma = NULL;
	return (-1);
}

/*
 * May the user have one more key, in this session (if any)? In the
 * caller's transaction, which a revocation by another process ("user
 * logout") is ordered with, so that no key is made in a session that has
 * just ended: -3 with *why then, -1 over the limit, else 0.
 */
static int
apikeys_room_locked(const char *user_id, const char *sid, time_t now,
    const char **why)
{
	sqlite3_stmt	*st;
	long long	 n;

	if (sid != NULL) {
		st = db_prepare(&st_family_live);
		sqlite3_bind_text(st, 1, sid, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, user_id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, (sqlite3_int64)now);
		n = sqlite3_step(st) == SQLITE_ROW;
		sqlite3_reset(st);
		if (!n) {
			*why = "session has been revoked or has ended";
			return (-3);
		}
	}
	st = db_prepare(&st_count);
	sqlite3_bind_text(st, 1, user_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)now);
	n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
	sqlite3_reset(st);
	if (n >= cfg->apikeys_max_per_user) {
		*why = "API key limit reached; revoke one first";
		return (-1);
	}
	return (0);
}

/*
 * Make a key for a user, in the session sid (the token family of the
 * token that asked; NULL for the administrator). ttl < 0 means
 * api_keys.default_ttl, 0 no expiry. On success *key_out holds the key
 * (to show once) and *info its public description; -1 with *why for a
 * request we refuse, -3 with *why when the session has ended meanwhile
 * (revoked by another process), -2 on a server error.
 */
int
apikey_create(const char *user_id, const char *sid, const char *name,
    long long ttl, const struct strlist *models, const char *actor,
    const char *client, char **key_out, json_t **info, const char **why)
{
	sqlite3_stmt	*st;
	uint8_t		 h[CRYPTO_HASH_LEN], r[12];
	char		*key = NULL, id[32], idb[24], hint[16], *ms = NULL;
	json_t		*ma;
	time_t		 now = now_wall(), expires;
	int		 rc;

	*key_out = NULL;
	*info = NULL;
	if (apikeys_request_ok(name, models, &ttl, &ma, why) == -1)
		return (-1);
	expires = ttl > 0 ? now + (time_t)ttl : 0;
	if (db_begin() == -1) {
		json_decref(ma);
		return (-2);
	}
	if ((rc = apikeys_room_locked(user_id, sid, now, why)) != 0) {
		db_rollback();
		json_decref(ma);
		return (rc);
	}
	rc = -2;
	crypto_random(r, sizeof r);
	crypto_b64url_encode(r, sizeof r, idb, sizeof idb);
	snprintf(id, sizeof id, "key_%s", idb);
	key = crypto_new_secret(APIKEY_PREFIX);
	snprintf(hint, sizeof hint, "bsk_...%s", key + strlen(key) - 4);
	crypto_hash_token(key, h);
	ms = json_dumps(ma, JSON_COMPACT);
	st = db_prepare(&st_insert);
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, h, sizeof h, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, hint, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, user_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, ms, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 7, (sqlite3_int64)now);
	if (expires != 0)
		sqlite3_bind_int64(st, 8, (sqlite3_int64)expires);
	sqlite3_bind_text(st, 9, sid, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE) {
		sqlite3_reset(st);
		goto out;
	}
	sqlite3_reset(st);
	audit_event("key_created", user_id, actor, client,
	    json_pack("{s:s,s:s?}", "key", id, "name", name));
	if (db_commit() == -1)
		goto out;
	apikeys_load();
	*info = json_pack("{s:s,s:s?,s:s,s:o,s:I}", "id", id, "name", name,
	    "hint", hint, "models", ma, "created_at", (json_int_t)now);
	ma = NULL;	/* now *info's */
	json_object_set_new(*info, "expires_at", expires != 0 ?
	    json_integer((json_int_t)expires) : json_null());
	*key_out = key;
	key = NULL;
	rc = 0;
out:
	if (rc == -2) {
		log_warnx("cannot create API key: %s", db_errmsg());
		db_rollback();
	}
	free(ms);
	json_decref(ma);
	freezero_str(key);
	return (rc);
}

/* The keys of a user (or of everyone), without the secrets. */
json_t *
apikey_list(const char *user_id)
{
	sqlite3_stmt	*st = db_prepare(&st_list);
	json_t		*a = json_array(), *m, *o;
	const char	*ms;

	if (user_id != NULL)
		sqlite3_bind_text(st, 1, user_id, -1, SQLITE_STATIC);
	while (sqlite3_step(st) == SQLITE_ROW) {
		ms = (const char *)sqlite3_column_text(st, 4);
		if (ms == NULL || (m = json_loads(ms, 0, NULL)) == NULL)
			m = json_array();
		o = json_pack("{s:s,s:s,s:s?,s:s,s:o,s:I,s:b}",
		    "id", sqlite3_column_text(st, 0),
		    "user", sqlite3_column_text(st, 1),
		    "name", sqlite3_column_text(st, 2),
		    "hint", sqlite3_column_text(st, 3),
		    "models", m,
		    "created_at", (json_int_t)sqlite3_column_int64(st, 5),
		    "revoked", sqlite3_column_int(st, 8));
		json_object_set_new(o, "expires_at",
		    sqlite3_column_type(st, 6) == SQLITE_NULL ? json_null() :
		    json_integer(sqlite3_column_int64(st, 6)));
		json_object_set_new(o, "last_used_at",
		    sqlite3_column_type(st, 7) == SQLITE_NULL ? json_null() :
		    json_integer(sqlite3_column_int64(st, 7)));
		/* The session it ends with (none: the administrator's). */
		json_object_set_new(o, "session",
		    sqlite3_column_type(st, 9) == SQLITE_NULL ? json_null() :
		    json_string((const char *)sqlite3_column_text(st, 9)));
		json_object_set_new(o, "revoked_reason",
		    sqlite3_column_type(st, 10) == SQLITE_NULL ? json_null() :
		    json_string((const char *)sqlite3_column_text(st, 10)));
		json_array_append_new(a, o);
	}
	sqlite3_reset(st);
	return (a);
}

/*
 * Revoke a key by id for a reason; owner, if given, must own it. 0 done,
 * -1 no such (active) key of that owner, -2 server error.
 */
int
apikey_revoke(const char *id, const char *owner, const char *reason,
    const char *actor, const char *client)
{
	sqlite3_stmt	*st;
	char		*user_id = NULL;
	struct apikey	*k, *tmp;

	if (db_begin() == -1)
		return (-2);
	st = db_prepare(&st_owner);
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		user_id = xstrdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_reset(st);
	if (user_id == NULL || (owner != NULL && strcmp(owner, user_id) != 0)) {
		db_rollback();
		free(user_id);
		return (-1);
	}
	st = db_prepare(&st_revoke);
	sqlite3_bind_int64(st, 1, (sqlite3_int64)now_wall());
	sqlite3_bind_text(st, 2, reason, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, id, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE) {
		sqlite3_reset(st);
		db_rollback();
		free(user_id);
		return (-2);
	}
	sqlite3_reset(st);
	audit_event("key_revoked", user_id, actor, client,
	    json_pack("{s:s,s:s}", "key", id, "reason", reason));
	if (db_commit() == -1) {
		free(user_id);
		return (-2);
	}
	HASH_ITER(hh, apikeys, k, tmp) {
		if (strcmp(k->id, id) == 0) {
			HASH_DEL(apikeys, k);
			apikey_free(k);
		}
	}
	free(user_id);
	return (0);
}

/* RFC 7009 with an API key in hand. */
int
apikey_revoke_by_secret(const char *key, const char *actor,
    const char *client)
{
	sqlite3_stmt	*st;
	uint8_t		 h[CRYPTO_HASH_LEN];
	char		*id = NULL;
	int		 rc;

	if (!apikey_format_ok(key))
		return (-1);
	crypto_hash_token(key, h);
	st = db_prepare(&st_by_hash);
	sqlite3_bind_blob(st, 1, h, sizeof h, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		id = xstrdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_reset(st);
	if (id == NULL)
		return (-1);
	rc = apikey_revoke(id, NULL, "revoke", actor, client);
	free(id);
	return (rc);
}

/*
 * Revoke the keys a statement selects (id, user_id), each with an audit
 * row, inside the caller's transaction; the caller reloads the keys in
 * memory (apikeys_load) once it has committed. Returns how many, or -1.
 */
static int
apikeys_revoke_selected(struct db_stmt *sel, const char *what,
    const char *sid, const char *reason, const char *actor,
    const char *client)
{
	sqlite3_stmt	*st;
	struct strlist	 ids = { NULL, 0 }, users = { NULL, 0 };
	time_t		 now = now_wall();
	size_t		 i;
	int		 rc, n = -1;

	st = db_prepare(sel);
	sqlite3_bind_text(st, 1, what, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		strlist_add(&ids, (const char *)sqlite3_column_text(st, 0));
		strlist_add(&users, (const char *)sqlite3_column_text(st, 1));
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		goto out;
	for (i = 0; i < ids.n; i++) {
		st = db_prepare(&st_revoke);
		sqlite3_bind_int64(st, 1, (sqlite3_int64)now);
		sqlite3_bind_text(st, 2, reason, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, ids.v[i], -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc != SQLITE_DONE)
			goto out;
		audit_event("key_revoked", users.v[i], actor, client,
		    json_pack("{s:s,s:s,s:s?}", "key", ids.v[i], "reason",
		    reason, "session", sid));
	}
	n = (int)ids.n;
out:
	if (n == -1)
		log_warnx("cannot revoke API keys: %s", db_errmsg());
	strlist_free(&ids);
	strlist_free(&users);
	return (n);
}

/* The keys made in a session that is being revoked (in a transaction). */
int
apikeys_revoke_family_locked(const char *sid, const char *reason,
    const char *actor, const char *client)
{
	return (apikeys_revoke_selected(&st_of_family, sid, sid, reason,
	    actor, client));
}

/* Every key of a user ("user logout", "user disable"; in a transaction). */
int
apikeys_revoke_user_locked(const char *user_id, const char *reason,
    const char *actor, const char *client)
{
	return (apikeys_revoke_selected(&st_of_user, user_id, NULL, reason,
	    actor, client));
}
