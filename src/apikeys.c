/*
 * apikeys.c: long-lived API keys ("bsk_" + 256 random bits).
 *
 * A key is shown once, when it is made; the database keeps its hash, a
 * display hint, the owner, a name, model patterns and an expiry. Verified
 * keys are looked up by hash in memory, so checking one costs a hash and a
 * table lookup; the set is loaded again (into a fresh table that replaces
 * the old one when it is complete) when another process or daemon changes
 * the database. last_used_at is written in batches, never on the request
 * path.
 *
 * A key made over HTTP remembers the session (token family) whose token
 * made it, and ends with it: whatever revokes the family (logout, RFC 7009,
 * refresh token reuse, a disabled user) revokes its keys in the same unit
 * of work, so a stolen access token cannot leave a key behind that
 * outlives the remedy. The administrator's keys ("key create") have no
 * session; "user logout" and "user disable" revoke every key of the user.
 */

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <uthash.h>

#include "bsp.h"
#include "crypto.h"
#include "store.h"

#define APIKEY_LEN	47	/* bsk_ + 43 base64url characters */
#define APIKEY_NAME_MAX	64
#define APIKEY_MODELS_MAX 32
/*
 * A key's scopes ride in its list of model patterns as "scope:NAME" (no
 * schema change): no such entry is a key made before scopes, which may
 * invoke models and nothing else.
 */
#define APIKEY_SCOPE_PREFIX	"scope:"
static const char *const apikey_scope_names[] = {
	SCOPE_INVOKE, SCOPE_AWS_CREDENTIALS,
};

struct apikey {
	uint8_t		 hash[CRYPTO_HASH_LEN];
	char		*id;
	char		*user_id;
	char		*name;
	struct strlist	 models;
	struct strlist	 scopes;
	time_t		 expires;	/* 0: never */
	char		*email;
	char		*provider;
	int		 email_verified;
	struct strlist	 groups;
	time_t		 used;		/* not yet written */
	UT_hash_handle	 hh;
};

static struct {
	struct apikey		*table;
	int			 loaded;
	unsigned int		 gen;		/* bumped by our revocations */
	struct store_load	 loader;
} ak;

static struct store_stmt st_load = STORE_STMT("SELECT k.id, k.hash, "
    "k.user_id, k.name, k.models, k.expires, u.email, u.provider, "
    "u.email_verified, u.groups FROM api_keys k LEFT JOIN users u ON u.id = "
    "k.user_id WHERE k.revoked = 0 AND (k.expires IS NULL OR k.expires > "
    "$1)");
static struct store_stmt st_count = STORE_STMT("SELECT count(*) FROM "
    "api_keys WHERE user_id = $1 AND revoked = 0 AND (expires IS NULL OR "
    "expires > $2)");
static struct store_stmt st_insert = STORE_STMT("INSERT INTO api_keys (id, "
    "hash, hint, user_id, name, models, created, expires, family_id) VALUES "
    "($1, $2, $3, $4, $5, $6, $7, $8, $9)");
static struct store_stmt st_family_live = STORE_STMT("SELECT 1 FROM "
    "token_families WHERE id = $1 AND user_id = $2 AND revoked = 0 AND "
    "expires > $3");
static struct store_stmt st_list = STORE_STMT2("SELECT id, user_id, name, "
    "hint, models, created, expires, last_used_at, revoked, family_id, "
    "revoked_reason FROM api_keys WHERE ($1 IS NULL OR user_id = $1) ORDER "
    "BY created, id",
    "SELECT id, user_id, name, hint, models, created, expires, last_used_at, "
    "revoked, family_id, revoked_reason FROM api_keys WHERE ($1::text IS "
    "NULL OR user_id = $1) ORDER BY created, id");
static struct store_stmt st_owner = STORE_STMT("SELECT id, user_id FROM "
    "api_keys WHERE id = $1 AND revoked = 0");
static struct store_stmt st_by_hash = STORE_STMT("SELECT id, user_id FROM "
    "api_keys WHERE hash = $1 AND revoked = 0");
static struct store_stmt st_revoke = STORE_STMT("UPDATE api_keys SET revoked "
    "= 1, revoked_at = $1, revoked_reason = $2 WHERE id = $3 AND revoked = "
    "0");
static struct store_stmt st_of_family = STORE_STMT("UPDATE api_keys SET "
    "revoked = 1, revoked_at = $1, revoked_reason = $2 WHERE family_id = $3 "
    "AND revoked = 0 RETURNING id, user_id");
static struct store_stmt st_of_user = STORE_STMT("UPDATE api_keys SET "
    "revoked = 1, revoked_at = $1, revoked_reason = $2 WHERE user_id = $3 "
    "AND revoked = 0 RETURNING id, user_id");
static struct store_stmt st_used = STORE_STMT("UPDATE api_keys SET "
    "last_used_at = $1 WHERE id = $2");
static struct store_stmt st_purge = STORE_STMT("DELETE FROM api_keys WHERE "
    "(revoked != 0 AND revoked_at < $1) OR (expires IS NOT NULL AND expires "
    "< $1)");

static void	apikeys_load_run(struct store_load *);

static int
apikey_scope_known(const char *s)
{
	size_t	i;

	for (i = 0; i < nitems(apikey_scope_names); i++) {
		if (strcmp(s, apikey_scope_names[i]) == 0)
			return (1);
	}
	return (0);
}

/* Move the "scope:" entries of a stored list into scopes. */
static void
apikey_split(struct strlist *models, struct strlist *scopes)
{
	struct strlist	 m = { NULL, 0 };
	size_t		 i, plen = strlen(APIKEY_SCOPE_PREFIX);

	for (i = 0; i < models->n; i++) {
		if (strncmp(models->v[i], APIKEY_SCOPE_PREFIX, plen) == 0)
			strlist_add(scopes, models->v[i] + plen);
		else
			strlist_add(&m, models->v[i]);
	}
	strlist_free(models);
	*models = m;
}

/* The same for a JSON list (answers): the scopes, taken out of models. */
static json_t *
apikey_json_split(json_t *models)
{
	json_t		*scopes = json_array(), *v;
	size_t		 i, plen = strlen(APIKEY_SCOPE_PREFIX);
	const char	*s;

	for (i = 0; i < json_array_size(models);) {
		v = json_array_get(models, i);
		s = json_string_value(v);
		if (s != NULL && strncmp(s, APIKEY_SCOPE_PREFIX, plen) == 0) {
			json_array_append_new(scopes, json_string(s + plen));
			json_array_remove(models, i);
		} else
			i++;
	}
	return (scopes);
}

int
apikey_scopes_encode(struct strlist *models, const struct strlist *scopes,
    const char **why)
{
	char	*e;
	size_t	 i;

	for (i = 0; i < scopes->n; i++) {
		if (!apikey_scope_known(scopes->v[i])) {
			*why = "scopes may be " SCOPE_INVOKE " and "
			    SCOPE_AWS_CREDENTIALS;
			return (-1);
		}
		xasprintf(&e, "%s%s", APIKEY_SCOPE_PREFIX, scopes->v[i]);
		strlist_add(models, e);
		free(e);
	}
	return (0);
}

static void
apikey_free(struct apikey *k)
{
	free(k->id);
	free(k->user_id);
	free(k->name);
	free(k->email);
	free(k->provider);
	strlist_free(&k->models);
	strlist_free(&k->scopes);
	strlist_free(&k->groups);
	free(k);
}

static void
apikeys_table_free(struct apikey **table)
{
	struct apikey	*k, *tmp;

	HASH_ITER(hh, *table, k, tmp) {
		HASH_DEL(*table, k);
		apikey_free(k);
	}
}

void
apikeys_free(void)
{
	apikeys_table_free(&ak.table);
	ak.loaded = 0;
}

/* A load under way. */
struct apikeys_load_op {
	struct apikey	*table;
	unsigned int	 gen;
	int		 tries;
	time_t		 now;
};

static void
apikeys_load_row(const struct store_row *r, void *arg)
{
	struct apikeys_load_op	*op = arg;
	struct apikey		*k;
	const uint8_t		*h;
	size_t			 len;

	h = store_blob(r, 1, &len);
	if (h == NULL || len != CRYPTO_HASH_LEN)
		return;
	k = xcalloc(1, sizeof *k);
	k->id = store_strdup(r, 0);
	memcpy(k->hash, h, CRYPTO_HASH_LEN);
	k->user_id = store_strdup(r, 2);
	k->name = store_strdup(r, 3);
	strlist_from_json_text(&k->models, store_text(r, 4));
	apikey_split(&k->models, &k->scopes);
	k->expires = (time_t)store_int(r, 5);
	k->email = store_strdup(r, 6);
	k->provider = store_strdup(r, 7);
	k->email_verified = (int)store_int(r, 8);
	strlist_from_json_text(&k->groups, store_text(r, 9));
	if (k->id == NULL || k->user_id == NULL) {
		apikey_free(k);
		return;
	}
	HASH_ADD(hh, op->table, hash, CRYPTO_HASH_LEN, k);
}

static void
apikeys_load_end(int status, void *arg)
{
	struct apikeys_load_op	*op = arg;
	struct apikey		*k, *tmp, *old;
	struct store_param	 p[] = { SP_INT(op->now) };

	if (status != STORE_OK) {
		log_warnx("cannot load the API keys");
		apikeys_table_free(&op->table);
		free(op);
		store_load_done(&ak.loader, status);
		return;
	}
	if (op->gen != ak.gen && ++op->tries < 3) {
		/* Our own revocation landed meanwhile: read again. */
		apikeys_table_free(&op->table);
		op->gen = ak.gen;
		store_run(0, &st_load, p, nitems(p), apikeys_load_row,
		    apikeys_load_end, op);
		return;
	}
	/* Keep a pending last-used time across the load. */
	HASH_ITER(hh, op->table, k, tmp) {
		HASH_FIND(hh, ak.table, k->hash, CRYPTO_HASH_LEN, old);
		if (old != NULL)
			k->used = old->used;
	}
	apikeys_table_free(&ak.table);
	ak.table = op->table;
	ak.loaded = 1;
	free(op);
	store_load_done(&ak.loader, STORE_OK);
}

static void
apikeys_load_run(struct store_load *l)
{
	struct apikeys_load_op	*op;

	op = xcalloc(1, sizeof *op);
	op->gen = ak.gen;
	op->now = now_wall();
	{
		struct store_param	p[] = { SP_INT(op->now) };

		store_run(0, &st_load, p, nitems(p), apikeys_load_row,
		    apikeys_load_end, op);
	}
}

/* (Re)load the keys that can still be used; done(status, arg) if given. */
void
apikeys_load(store_end_cb done, void *arg)
{
	ak.loader.run = apikeys_load_run;
	store_load(&ak.loader, done, arg);
}

int
apikeys_loaded(void)
{
	return (ak.loaded);
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
	HASH_FIND(hh, ak.table, h, CRYPTO_HASH_LEN, k);
	/*
	 * Another process (key create) may have written since we loaded:
	 * catch up now rather than refuse a key made a moment ago.
	 */
	if (k == NULL && store_catch_up())
		HASH_FIND(hh, ak.table, h, CRYPTO_HASH_LEN, k);
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
	if (k->name != NULL)
		p->key_name = xstrdup(k->name);
	p->provider = k->provider != NULL ? xstrdup(k->provider) :
	    xstrdup("local");
	if (k->email != NULL)
		p->email = xstrdup(k->email);
	p->email_verified = k->email_verified;
	strlist_copy(&p->groups, &k->groups);
	strlist_copy(&p->key_models, &k->models);
	strlist_copy(&p->scopes, &k->scopes);
	p->exp = k->expires;
	*out = p;
	return (0);
}

/* Writing the pending last-used times, in one unit. */
struct flush_op {
	struct strlist	 ids;
	time_t		*used;
	size_t		 i;
	store_end_cb	 done;
	void		*arg;
};

static void
flush_end(struct flush_op *op, int status)
{
	if (status != STORE_OK)
		log_warnx("cannot record API key use");
	if (op->done != NULL)
		op->done(status, op->arg);
	strlist_free(&op->ids);
	free(op->used);
	free(op);
}

static void
flush_committed(int status, void *arg)
{
	flush_end(arg, status);
}

static void
flush_step(struct store_txn *t, int status, void *arg)
{
	struct flush_op	*op = arg;

	if (t == NULL || status != STORE_OK) {
		if (t != NULL)
			store_rollback(t);
		flush_end(op, status != STORE_OK ? status : STORE_ERROR);
		return;
	}
	if (op->i == op->ids.n) {
		store_commit(t, flush_committed, op);
		return;
	}
	{
		struct store_param p[] = { SP_INT(op->used[op->i]),
		    SP_TEXT(op->ids.v[op->i]) };

		op->i++;
		store_exec(t, &st_used, p, nitems(p), NULL, flush_step, op);
	}
}

/* Write pending last-used times in one unit; done(status, arg) if given. */
void
apikeys_flush_last_used(store_end_cb done, void *arg)
{
	struct flush_op	*op;
	struct apikey	*k, *tmp;
	size_t		 n = 0;

	HASH_ITER(hh, ak.table, k, tmp) {
		if (k->used != 0)
			n++;
	}
	if (n == 0) {
		if (done != NULL)
			done(STORE_OK, arg);
		return;
	}
	op = xcalloc(1, sizeof *op);
	op->used = xcalloc(n, sizeof *op->used);
	op->done = done;
	op->arg = arg;
	HASH_ITER(hh, ak.table, k, tmp) {
		if (k->used == 0)
			continue;
		op->used[op->ids.n] = k->used;
		strlist_add(&op->ids, k->id);
		k->used = 0;
	}
	store_begin(STORE_WRITE, flush_step, op);
}

/* Another process wrote: the keys again. */
void
apikeys_sync(void)
{
	apikeys_load(NULL, NULL);
}

/* Housekeeping: last-used times to the database, old keys forgotten. */
void
apikeys_maint(time_t now)
{
	apikeys_purge(now - (time_t)cfg->audit_retention_days * 86400, NULL,
	    NULL);
	apikeys_flush_last_used(NULL, NULL);
}

static void
apikeys_purged(int status, void *arg)
{
	if (status != STORE_OK)
		log_warnx("cannot purge old API keys");
}

/*
 * Forget keys revoked or expired before a time (the audit log's retention):
 * they no longer work and are no longer listed; the audit rows of their
 * making and revoking stay as long as any.
 */
void
apikeys_purge(time_t before, store_end_cb done, void *arg)
{
	struct store_param	p[] = { SP_INT(before) };

	store_run(STORE_WRITE, &st_purge, p, nitems(p), NULL, done != NULL ?
	    done : apikeys_purged, arg);
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
		if (strncmp(models->v[i], APIKEY_SCOPE_PREFIX,
		    strlen(APIKEY_SCOPE_PREFIX)) == 0 && !apikey_scope_known(
		    models->v[i] + strlen(APIKEY_SCOPE_PREFIX))) {
			*why = "scopes may be " SCOPE_INVOKE " and "
			    SCOPE_AWS_CREDENTIALS;
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
 * The lifetime of a key a user makes for themselves (requested < 0: the
 * default, api_keys.default_ttl), which api_keys.max_ttl bounds: 0 with
 * *ttl set, or -1 with *why. Keys without expiry past a maximum are the
 * administrator's to make.
 */
int
apikey_user_ttl(const struct config *c, long long requested, long long *ttl,
    const char **why)
{
	*ttl = requested < 0 ? c->apikeys_default_ttl : requested;
	if (c->apikeys_max_ttl > 0 && (*ttl == 0 ||
	    *ttl > c->apikeys_max_ttl)) {
		*why = "ttl must be at most api_keys.max_ttl; keys without "
		    "expiry are made by an administrator";
		return (-1);
	}
	return (0);
}

/*
 * Making a key, one unit: is the session (if any) still live, and may
 * the user have one more (a revocation by another process, "user logout",
 * is ordered with this unit, so that no key is made in a session that has
 * just ended); the key and its audit row; then the keys in memory again,
 * so that the key works when the caller hears of it.
 */
enum create_state {
	CS_BEGIN,
	CS_LIVE,
	CS_COUNT,
	CS_INSERT,
	CS_AUDIT,
	CS_COMMIT,
	CS_LOAD,
};

struct create_op {
	enum create_state state;
	char		*user_id;
	char		*sid;
	char		*name;
	char		*actor;
	char		*client;
	json_t		*ma;
	time_t		 now;
	time_t		 expires;
	int		 rows;
	long long	 n;
	char		*key;
	char		 id[32];
	char		 hint[16];
	int		 rc;
	const char	*why;
	void		(*cb)(int, char *, json_t *, const char *, void *);
	void		*arg;
};

static void	create_step(struct store_txn *, int, void *);

static void
create_end(struct create_op *op, int rc)
{
	json_t	*info = NULL;

	if (rc == 0) {
		info = json_pack("{s:s,s:s?,s:s,s:o,s:I}", "id", op->id, "name",
		    op->name, "hint", op->hint, "models", json_deep_copy(op->ma),
		    "created_at", (json_int_t)op->now);
		json_object_set_new(info, "scopes", apikey_json_split(
		    json_object_get(info, "models")));
		json_object_set_new(info, "expires_at", op->expires != 0 ?
		    json_integer((json_int_t)op->expires) : json_null());
	} else if (rc == -2)
		log_warnx("cannot create API key");
	op->cb(rc, rc == 0 ? op->key : NULL, info, op->why, op->arg);
	if (rc != 0)
		freezero_str(op->key);
	json_decref(op->ma);
	free(op->user_id);
	free(op->sid);
	free(op->name);
	free(op->actor);
	free(op->client);
	free(op);
}

static void
create_row(const struct store_row *r, void *arg)
{
	struct create_op	*op = arg;

	op->rows++;
	if (op->state == CS_COUNT)
		op->n = store_int(r, 0);
}

static void
create_loaded(int status, void *arg)
{
	create_end(arg, 0);
}

static void
create_committed(int status, void *arg)
{
	struct create_op	*op = arg;

	if (status != STORE_OK) {
		create_end(op, -2);
		return;
	}
	op->state = CS_LOAD;
	apikeys_load(create_loaded, op);
}

/* Refused (rc -1 or -3, op->why): nothing was written. */
static void
create_refuse(struct create_op *op, struct store_txn *t, int rc,
    const char *why)
{
	store_rollback(t);
	op->why = why;
	create_end(op, rc);
}

static void
create_step(struct store_txn *t, int status, void *arg)
{
	struct create_op	*op = arg;
	uint8_t			 h[CRYPTO_HASH_LEN], r[12];
	char			 idb[24], *ms;

	if (t == NULL || status != STORE_OK) {
		if (t != NULL)
			store_rollback(t);
		create_end(op, -2);
		return;
	}
	switch (op->state) {
	case CS_BEGIN:
		if (op->sid != NULL) {
			struct store_param p[] = { SP_TEXT(op->sid),
			    SP_TEXT(op->user_id), SP_INT(op->now) };

			op->state = CS_LIVE;
			store_exec(t, &st_family_live, p, nitems(p),
			    create_row, create_step, op);
			return;
		}
		/* FALLTHROUGH */
	case CS_LIVE:
		if (op->state == CS_LIVE && op->rows == 0) {
			create_refuse(op, t, -3, "session has been revoked or "
			    "has ended");
			return;
		}
		op->state = CS_COUNT;
		{
			struct store_param p[] = { SP_TEXT(op->user_id),
			    SP_INT(op->now) };

			store_exec(t, &st_count, p, nitems(p), create_row,
			    create_step, op);
		}
		return;
	case CS_COUNT:
		if (op->n >= cfg->apikeys_max_per_user) {
			create_refuse(op, t, -1, "API key limit reached; "
			    "revoke one first");
			return;
		}
		crypto_random(r, sizeof r);
		crypto_b64url_encode(r, sizeof r, idb, sizeof idb);
		snprintf(op->id, sizeof op->id, "key_%s", idb);
		op->key = crypto_new_secret(APIKEY_PREFIX);
		snprintf(op->hint, sizeof op->hint, "bsk_...%s",
		    op->key + strlen(op->key) - 4);
		crypto_hash_token(op->key, h);
		ms = json_dumps(op->ma, JSON_COMPACT);
		op->state = CS_INSERT;
		{
			struct store_param p[] = { SP_TEXT(op->id),
			    SP_BLOB(h, sizeof h), SP_TEXT(op->hint),
			    SP_TEXT(op->user_id), SP_TEXT(op->name),
			    SP_TEXT(ms), SP_INT(op->now), SP_NULL,
			    SP_TEXT(op->sid) };

			if (op->expires != 0)
				p[7] = (struct store_param)SP_INT(op->expires);
			store_exec(t, &st_insert, p, nitems(p), NULL,
			    create_step, op);
		}
		free(ms);
		return;
	case CS_INSERT:
		op->state = CS_AUDIT;
		audit_event(t, "key_created", op->user_id, op->actor,
		    op->client, json_pack("{s:s,s:s?}", "key", op->id, "name",
		    op->name), create_step, op);
		return;
	case CS_AUDIT:
		op->state = CS_COMMIT;
		store_notify(t, "api_keys");
		store_commit(t, create_committed, op);
		return;
	default:
		store_rollback(t);
		create_end(op, -2);
		return;
	}
}

/*
 * Make a key for a user, in the session sid (the token family of the
 * token that asked; NULL for the administrator). ttl < 0 means
 * api_keys.default_ttl, 0 no expiry. cb(0, key, info, NULL, arg): the key
 * (to show once) and its public description, both the callback's; cb(-1,
 * NULL, NULL, why, arg) for a request we refuse, -3 when the session has
 * ended meanwhile (revoked by another process), -2 on a server error.
 */
void
apikey_create(const char *user_id, const char *sid, const char *name,
    long long ttl, const struct strlist *models, const char *actor,
    const char *client, void (*cb)(int, char *, json_t *, const char *,
    void *), void *arg)
{
	struct create_op	*op;
	const char		*why = NULL;
	json_t			*ma;

	if (apikeys_request_ok(name, models, &ttl, &ma, &why) == -1) {
		cb(-1, NULL, NULL, why, arg);
		return;
	}
	op = xcalloc(1, sizeof *op);
	op->user_id = xstrdup(user_id);
	op->sid = sid != NULL ? xstrdup(sid) : NULL;
	op->name = name != NULL ? xstrdup(name) : NULL;
	op->actor = actor != NULL ? xstrdup(actor) : NULL;
	op->client = client != NULL ? xstrdup(client) : NULL;
	op->ma = ma;
	op->now = now_wall();
	op->expires = ttl > 0 ? op->now + (time_t)ttl : 0;
	op->cb = cb;
	op->arg = arg;
	store_begin(STORE_WRITE, create_step, op);
}

/* The keys of a user (or of everyone), without the secrets. */
struct list_op {
	json_t		*a;
	void		(*cb)(int, json_t *, void *);
	void		*arg;
};

static void
list_row(const struct store_row *r, void *arg)
{
	struct list_op	*op = arg;
	json_t		*m, *o, *scopes;
	const char	*ms;

	ms = store_text(r, 4);
	if (ms == NULL || (m = json_loads(ms, 0, NULL)) == NULL)
		m = json_array();
	scopes = apikey_json_split(m);
	o = json_pack("{s:s?,s:s?,s:s?,s:s?,s:o,s:I,s:b}",
	    "id", store_text(r, 0),
	    "user", store_text(r, 1),
	    "name", store_text(r, 2),
	    "hint", store_text(r, 3),
	    "models", m,
	    "created_at", (json_int_t)store_int(r, 5),
	    "revoked", (int)store_int(r, 8));
	json_object_set_new(o, "scopes", scopes);
	json_object_set_new(o, "expires_at", store_null(r, 6) ? json_null() :
	    json_integer((json_int_t)store_int(r, 6)));
	json_object_set_new(o, "last_used_at", store_null(r, 7) ?
	    json_null() : json_integer((json_int_t)store_int(r, 7)));
	/* The session it ends with (none: the administrator's). */
	json_object_set_new(o, "session", store_null(r, 9) ? json_null() :
	    json_string(store_text(r, 9)));
	json_object_set_new(o, "revoked_reason", store_null(r, 10) ?
	    json_null() : json_string(store_text(r, 10)));
	json_array_append_new(op->a, o);
}

static void
list_done(int status, void *arg)
{
	struct list_op	*op = arg;

	if (status != STORE_OK) {
		json_decref(op->a);
		op->cb(-2, NULL, op->arg);
	} else
		op->cb(0, op->a, op->arg);
	free(op);
}

/*
 * The keys of a user (or of everyone): cb(0, list, arg) (the callback
 * owns it), or cb(-2, NULL, arg) if the database failed.
 */
void
apikey_list(const char *user_id, void (*cb)(int, json_t *, void *),
    void *arg)
{
	struct list_op		*op;
	struct store_param	 p[] = { SP_TEXT(user_id) };

	op = xcalloc(1, sizeof *op);
	op->a = json_array();
	op->cb = cb;
	op->arg = arg;
	store_run(0, &st_list, p, nitems(p), list_row, list_done, op);
}

/* Revoking one key: by id (its owner may be required) or by its secret. */
enum krevoke_state {
	KR_BEGIN,
	KR_FIND,
	KR_REVOKE,
	KR_AUDIT,
	KR_COMMIT,
};

struct krevoke_op {
	enum krevoke_state state;
	char		*id;
	uint8_t		 hash[CRYPTO_HASH_LEN];
	int		 by_hash;
	int		 found;
	char		*owner;
	char		*user_id;
	char		*reason;
	char		*actor;
	char		*client;
	void		(*cb)(int, void *);
	void		*arg;
};

static void	krevoke_step(struct store_txn *, int, void *);

static void
krevoke_end(struct krevoke_op *op, int rc)
{
	op->cb(rc, op->arg);
	free(op->id);
	free(op->owner);
	free(op->user_id);
	free(op->reason);
	free(op->actor);
	free(op->client);
	free(op);
}

static void
krevoke_row(const struct store_row *r, void *arg)
{
	struct krevoke_op	*op = arg;

	free(op->id);
	free(op->user_id);
	op->id = store_strdup(r, 0);
	op->user_id = store_strdup(r, 1);
	op->found = 1;
}

/* Forget a revoked key in memory at once. */
static void
apikeys_forget(const char *id)
{
	struct apikey	*k, *tmp;

	HASH_ITER(hh, ak.table, k, tmp) {
		if (strcmp(k->id, id) == 0) {
			HASH_DEL(ak.table, k);
			apikey_free(k);
		}
	}
	ak.gen++;
}

static void
krevoke_committed(int status, void *arg)
{
	struct krevoke_op	*op = arg;

	if (status != STORE_OK) {
		krevoke_end(op, -2);
		return;
	}
	apikeys_forget(op->id);
	krevoke_end(op, 0);
}

static void
krevoke_step(struct store_txn *t, int status, void *arg)
{
	struct krevoke_op	*op = arg;

	if (t == NULL || status != STORE_OK) {
		if (t != NULL)
			store_rollback(t);
		krevoke_end(op, -2);
		return;
	}
	switch (op->state) {
	case KR_BEGIN:
		op->state = KR_FIND;
		if (op->by_hash) {
			struct store_param p[] = { SP_BLOB(op->hash,
			    sizeof op->hash) };

			store_exec(t, &st_by_hash, p, nitems(p), krevoke_row,
			    krevoke_step, op);
		} else {
			struct store_param p[] = { SP_TEXT(op->id) };

			store_exec(t, &st_owner, p, nitems(p), krevoke_row,
			    krevoke_step, op);
		}
		return;
	case KR_FIND:
		if (!op->found || op->id == NULL || op->user_id == NULL ||
		    (op->owner != NULL && strcmp(op->owner, op->user_id) !=
		    0)) {
			store_rollback(t);
			krevoke_end(op, -1);
			return;
		}
		op->state = KR_REVOKE;
		{
			struct store_param p[] = { SP_INT(now_wall()),
			    SP_TEXT(op->reason), SP_TEXT(op->id) };

			store_exec(t, &st_revoke, p, nitems(p), NULL,
			    krevoke_step, op);
		}
		return;
	case KR_REVOKE:
		op->state = KR_AUDIT;
		audit_event(t, "key_revoked", op->user_id, op->actor,
		    op->client, json_pack("{s:s,s:s}", "key", op->id, "reason",
		    op->reason), krevoke_step, op);
		return;
	case KR_AUDIT:
		op->state = KR_COMMIT;
		store_notify(t, "api_keys");
		store_commit(t, krevoke_committed, op);
		return;
	default:
		store_rollback(t);
		krevoke_end(op, -2);
		return;
	}
}

static struct krevoke_op *
krevoke_new(const char *reason, const char *actor, const char *client,
    void (*cb)(int, void *), void *arg)
{
	struct krevoke_op	*op;

	op = xcalloc(1, sizeof *op);
	op->reason = xstrdup(reason);
	op->actor = actor != NULL ? xstrdup(actor) : NULL;
	op->client = client != NULL ? xstrdup(client) : NULL;
	op->cb = cb;
	op->arg = arg;
	return (op);
}

/*
 * Revoke a key by id for a reason; owner, if given, must own it. cb(0,
 * arg) done, cb(-1, arg) no such (active) key of that owner, cb(-2, arg)
 * server error.
 */
void
apikey_revoke(const char *id, const char *owner, const char *reason,
    const char *actor, const char *client, void (*cb)(int, void *),
    void *arg)
{
	struct krevoke_op	*op;

	op = krevoke_new(reason, actor, client, cb, arg);
	op->id = xstrdup(id);
	op->owner = owner != NULL ? xstrdup(owner) : NULL;
	store_begin(STORE_WRITE, krevoke_step, op);
}

/* RFC 7009 with an API key in hand: cb(0 | -1 | -2, arg) as above. */
void
apikey_revoke_by_secret(const char *key, const char *actor,
    const char *client, void (*cb)(int, void *), void *arg)
{
	struct krevoke_op	*op;

	if (!apikey_format_ok(key)) {
		cb(-1, arg);
		return;
	}
	op = krevoke_new("revoke", actor, client, cb, arg);
	op->by_hash = 1;
	crypto_hash_token(key, op->hash);
	store_begin(STORE_WRITE, krevoke_step, op);
}

/*
 * Revoking the keys of a session or of a user inside the caller's unit,
 * each with an audit row; the caller loads the keys in memory again
 * (apikeys_load) once it has committed.
 */
struct keysrev_op {
	struct strlist	 ids;
	struct strlist	 users;
	size_t		 i;
	int		 revoked;	/* the UPDATE is done */
	char		*sid;
	char		*reason;
	char		*actor;
	char		*client;
	int		*nkeys;
	store_step_cb	 done;
	void		*arg;
};

static void
keysrev_row(const struct store_row *r, void *arg)
{
	struct keysrev_op	*op = arg;
	const char		*id = store_text(r, 0), *u = store_text(r, 1);

	if (id == NULL || u == NULL)
		return;
	strlist_add(&op->ids, id);
	strlist_add(&op->users, u);
}

/* The keys' audit rows in the order of their ids, as a listing shows. */
static void
keysrev_sort(struct keysrev_op *op)
{
	size_t	 i, j;
	char	*t;

	for (i = 1; i < op->ids.n; i++) {
		for (j = i; j > 0 && strcmp(op->ids.v[j - 1], op->ids.v[j]) >
		    0; j--) {
			t = op->ids.v[j];
			op->ids.v[j] = op->ids.v[j - 1];
			op->ids.v[j - 1] = t;
			t = op->users.v[j];
			op->users.v[j] = op->users.v[j - 1];
			op->users.v[j - 1] = t;
		}
	}
}

static void
keysrev_step(struct store_txn *t, int status, void *arg)
{
	struct keysrev_op	*op = arg;
	store_step_cb		 done = op->done;
	void			*darg = op->arg;
	size_t			 i;

	if (status == STORE_OK && !op->revoked) {
		op->revoked = 1;
		keysrev_sort(op);
	}
	if (status == STORE_OK && op->i < op->ids.n) {
		i = op->i++;
		audit_event(t, "key_revoked", op->users.v[i], op->actor,
		    op->client, json_pack("{s:s,s:s,s:s?}", "key", op->ids.v[i],
		    "reason", op->reason, "session", op->sid), keysrev_step,
		    op);
		return;
	}
	if (status == STORE_OK)
		*op->nkeys = (int)op->ids.n;
	else
		log_warnx("cannot revoke API keys");
	strlist_free(&op->ids);
	strlist_free(&op->users);
	free(op->sid);
	free(op->reason);
	free(op->actor);
	free(op->client);
	free(op);
	done(t, status, darg);
}

static void
apikeys_revoke_selected(struct store_txn *t, struct store_stmt *st,
    const char *what, const char *sid, const char *reason, const char *actor,
    const char *client, int *nkeys, store_step_cb done, void *arg)
{
	struct keysrev_op	*op;
	struct store_param	 p[] = { SP_INT(now_wall()), SP_TEXT(reason),
				    SP_TEXT(what) };

	op = xcalloc(1, sizeof *op);
	op->sid = sid != NULL ? xstrdup(sid) : NULL;
	op->reason = xstrdup(reason);
	op->actor = actor != NULL ? xstrdup(actor) : NULL;
	op->client = client != NULL ? xstrdup(client) : NULL;
	op->nkeys = nkeys;
	op->done = done;
	op->arg = arg;
	*nkeys = 0;
	store_exec(t, st, p, nitems(p), keysrev_row, keysrev_step, op);
}

/* The keys made in a session that is being revoked (in the unit t). */
void
apikeys_revoke_family(struct store_txn *t, const char *sid,
    const char *reason, const char *actor, const char *client, int *nkeys,
    store_step_cb done, void *arg)
{
	apikeys_revoke_selected(t, &st_of_family, sid, sid, reason, actor,
	    client, nkeys, done, arg);
}

/* Every key of a user ("user logout", "user disable"; in the unit t). */
void
apikeys_revoke_user(struct store_txn *t, const char *user_id,
    const char *reason, const char *actor, const char *client, int *nkeys,
    store_step_cb done, void *arg)
{
	apikeys_revoke_selected(t, &st_of_user, user_id, NULL, reason, actor,
	    client, nkeys, done, arg);
}
