/*
 * tokens-refresh.c: sessions (token families) and their refresh tokens.
 *
 * Refresh tokens are opaque ("bsr_" + 256 random bits), stored only as a
 * hash, and rotate on every use inside one transaction. Each login starts a
 * family (the sid claim); presenting a used refresh token after
 * jwt.refresh_reuse_grace revokes the whole family. A retry within the grace
 * window gets the same successor back: it is stored sealed under a key
 * derived from the old token itself, so only its holder can open it.
 *
 * Every way a family ends (logout, RFC 7009, refresh token reuse, a
 * disabled or no longer admitted user, "user logout") revokes the API keys
 * made in it in the same transaction.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "bsp.h"
#include "crypto.h"
#include "tokens.h"

#define REFRESH_PREFIX	"bsr_"
#define SID_BYTES	16
#define SUCCESSOR_PURPOSE "bsp-refresh-successor"

static struct db_stmt st_fam_insert = { "INSERT INTO token_families (id, "
    "user_id, created, expires) VALUES (?, ?, ?, ?)", NULL, NULL };
static struct db_stmt st_fam_get = { "SELECT user_id, expires, revoked FROM "
    "token_families WHERE id = ?", NULL, NULL };
static struct db_stmt st_fam_revoke = { "UPDATE token_families SET revoked = "
    "1, revoked_at = ?, revoked_reason = ? WHERE id = ? AND revoked = 0",
    NULL, NULL };
static struct db_stmt st_fam_revoke_user = { "UPDATE token_families SET "
    "revoked = 1, revoked_at = ?, revoked_reason = ? WHERE user_id = ? AND "
    "revoked = 0", NULL, NULL };
static struct db_stmt st_rt_insert = { "INSERT INTO refresh_tokens (hash, "
    "family_id, created, expires) VALUES (?, ?, ?, ?)", NULL, NULL };
static struct db_stmt st_rt_get = { "SELECT family_id, expires, used_at, "
    "successor, successor_sealed FROM refresh_tokens WHERE hash = ?",
    NULL, NULL };
static struct db_stmt st_rt_used = { "SELECT used_at FROM refresh_tokens "
    "WHERE hash = ?", NULL, NULL };
static struct db_stmt st_rt_rotate = { "UPDATE refresh_tokens SET used_at = "
    "?, successor = ?, successor_sealed = ? WHERE hash = ? AND used_at IS "
    "NULL", NULL, NULL };

static json_t	*refresh_response(const char *, time_t, const char *);
static int	 refresh_insert(const char *, const char *, time_t);
static int	 refresh_successor_seal(const char *, const char *, time_t,
		    const char *, uint8_t **, size_t *);
static json_t	*refresh_successor_open(const char *, const void *, size_t);
static int	 refresh_revoke_locked(const char *, const char *,
		    const char *, const char *);

static json_t *
refresh_response(const char *access, time_t exp, const char *refresh)
{
	json_t	*j;

	j = json_pack("{s:s,s:s,s:I,s:s}", "access_token", access,
	    "token_type", "Bearer", "expires_in",
	    (json_int_t)(exp - now_wall() > 0 ? exp - now_wall() : 0), "scope",
	    SCOPE_INVOKE);
	if (refresh != NULL)
		json_object_set_new(j, "refresh_token", json_string(refresh));
	return (j);
}

static int
refresh_insert(const char *token, const char *sid, time_t expires)
{
	sqlite3_stmt	*st = db_prepare(&st_rt_insert);
	uint8_t		 h[CRYPTO_HASH_LEN];
	int		 rc;

	crypto_hash_token(token, h);
	sqlite3_bind_blob(st, 1, h, sizeof h, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, sid, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)now_wall());
	sqlite3_bind_int64(st, 4, (sqlite3_int64)expires);
	rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
	sqlite3_reset(st);
	return (rc);
}

/*
 * Start a session (token family) for a user who just logged in: a refresh
 * token and an access token, committed before the caller answers.
 */
int
tokens_session_new(const struct user *u, const char *client,
    const char *event, json_t **resp)
{
	sqlite3_stmt	*st;
	char		*sid, *refresh = NULL, *access = NULL;
	time_t		 now = now_wall(), expires, exp;

	*resp = NULL;
	sid = tokens_random_id(SID_BYTES);
	expires = now + (time_t)cfg->jwt_refresh_ttl;
	exp = now + (time_t)cfg->jwt_access_ttl;
	if (exp > expires)
		exp = expires;
	if (db_begin() == -1)
		goto fail;
	st = db_prepare(&st_fam_insert);
	sqlite3_bind_text(st, 1, sid, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, u->id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)now);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)expires);
	if (sqlite3_step(st) != SQLITE_DONE)
		goto fail;
	refresh = crypto_new_secret(REFRESH_PREFIX);
	if (refresh_insert(refresh, sid, expires) == -1)
		goto fail;
	if ((access = tokens_mint(u, sid, NULL, exp, NULL)) == NULL)
		goto fail;
	audit_event(event, u->id, u->id, client, json_pack("{s:s}", "session",
	    sid));
	if (db_commit() == -1)
		goto fail;
	*resp = refresh_response(access, exp, refresh);
	free(sid);
	freezero_str(refresh);
	freezero_str(access);
	return (0);
fail:
	log_warnx("cannot start a session for %s: %s", u->id, db_errmsg());
	db_rollback();
	free(sid);
	freezero_str(refresh);
	freezero_str(access);
	return (-1);
}

/*
 * "token mint": an access token in a session of its own (so that it can be
 * revoked like any other), valid for ttl seconds.
 */
int
tokens_mint_session(const struct user *u, const struct strlist *scopes,
    long long ttl, const char *actor, char **out)
{
	sqlite3_stmt	*st;
	char		*sid, *t = NULL;
	time_t		 now = now_wall(), exp = now + (time_t)ttl;

	*out = NULL;
	sid = tokens_random_id(SID_BYTES);
	if (db_begin() == -1)
		goto fail;
	st = db_prepare(&st_fam_insert);
	sqlite3_bind_text(st, 1, sid, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, u->id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)now);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)exp);
	if (sqlite3_step(st) != SQLITE_DONE)
		goto fail;
	if ((t = tokens_mint(u, sid, scopes, exp, NULL)) == NULL)
		goto fail;
	audit_event("token_minted", u->id, actor, NULL,
	    json_pack("{s:s,s:I}", "session", sid, "ttl", (json_int_t)ttl));
	if (db_commit() == -1)
		goto fail;
	free(sid);
	*out = t;
	return (0);
fail:
	db_rollback();
	free(sid);
	freezero_str(t);
	return (-1);
}

/* Seal the successor pair under a key only the old token's holder has. */
static int
refresh_successor_seal(const char *old, const char *access, time_t exp,
    const char *refresh, uint8_t **out, size_t *outlen)
{
	json_t	*j;
	char	*s;
	int	 rc;

	j = json_pack("{s:s,s:I,s:s}", "a", access, "e", (json_int_t)exp, "r",
	    refresh);
	s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	rc = crypto_seal_token(old, SUCCESSOR_PURPOSE, s, strlen(s), out,
	    outlen);
	freezero_str(s);
	return (rc);
}

static json_t *
refresh_successor_open(const char *old, const void *blob, size_t len)
{
	uint8_t	*pt = NULL;
	size_t	 ptlen = 0;
	json_t	*j = NULL, *resp = NULL;
	const char *a, *r;
	json_int_t e;

	if (crypto_unseal_token(old, SUCCESSOR_PURPOSE, blob, len, &pt,
	    &ptlen) == 0) {
		j = json_loadb((const char *)pt, ptlen, 0, NULL);
		freezero(pt, ptlen);
	}
	if (j != NULL && json_unpack(j, "{s:s,s:I,s:s}", "a", &a, "e", &e,
	    "r", &r) == 0)
		resp = refresh_response(a, (time_t)e, r);
	json_decref(j);
	return (resp);
}

/*
 * Revoke a session family and the API keys made in it, inside the caller's
 * transaction. Every way a family ends goes through here. Returns the
 * number of keys revoked (the caller reloads them after its commit), or -1.
 */
static int
refresh_revoke_locked(const char *sid, const char *reason,
    const char *actor, const char *client)
{
	sqlite3_stmt	*st = db_prepare(&st_fam_revoke);
	int		 rc;

	sqlite3_bind_int64(st, 1, (sqlite3_int64)now_wall());
	sqlite3_bind_text(st, 2, reason, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, sid, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		log_warnx("cannot revoke session: %s", db_errmsg());
		return (-1);
	}
	return (apikeys_revoke_family_locked(sid, reason, actor, client));
}

/*
 * Rotate a refresh token. 0 with *resp set on success; -1 with *why set
 * when the token is not (or no longer) good: the caller answers
 * invalid_grant; -2 on a server error.
 */
int
tokens_refresh(const char *token, const char *client, json_t **resp,
    const char **why)
{
	sqlite3_stmt	*st;
	uint8_t		 h[CRYPTO_HASH_LEN], *sealed = NULL;
	size_t		 slen = 0;
	char		*sid = NULL, *user_id = NULL, *access = NULL;
	char		*refresh = NULL;
	time_t		 now = now_wall(), fexp, used_at, exp;
	int		 frevoked, has_used, rc = -2, succ_used, nkeys = 0;
	const struct user_state *us;
	struct user	 u;
	uint8_t		 succ[CRYPTO_HASH_LEN];
	int		 has_succ = 0;

	*resp = NULL;
	*why = "refresh token is not valid";
	memset(&u, 0, sizeof u);
	if (strncmp(token, REFRESH_PREFIX, 4) != 0 || strlen(token) != 47)
		return (-1);
	crypto_hash_token(token, h);
	if (db_begin() == -1)
		return (-2);

	st = db_prepare(&st_rt_get);
	sqlite3_bind_blob(st, 1, h, sizeof h, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_reset(st);
		db_rollback();
		/* Anyone can send one: a log line, not an audit write. */
		log_info("refresh refused: unknown token (from %s)",
		    client != NULL ? client : "-");
		return (-1);
	}
	sid = xstrdup((const char *)sqlite3_column_text(st, 0));
	has_used = sqlite3_column_type(st, 2) != SQLITE_NULL;
	used_at = (time_t)sqlite3_column_int64(st, 2);
	if (sqlite3_column_bytes(st, 3) == (int)sizeof succ) {
		memcpy(succ, sqlite3_column_blob(st, 3), sizeof succ);
		has_succ = 1;
	}
	if (sqlite3_column_type(st, 4) != SQLITE_NULL) {
		slen = (size_t)sqlite3_column_bytes(st, 4);
		sealed = xmalloc(slen > 0 ? slen : 1);
		memcpy(sealed, sqlite3_column_blob(st, 4), slen);
	}
	sqlite3_reset(st);

	st = db_prepare(&st_fam_get);
	sqlite3_bind_text(st, 1, sid, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_reset(st);
		goto invalid;
	}
	user_id = xstrdup((const char *)sqlite3_column_text(st, 0));
	fexp = (time_t)sqlite3_column_int64(st, 1);
	frevoked = sqlite3_column_int(st, 2);
	sqlite3_reset(st);
	if (frevoked) {
		*why = "session has been revoked";
		goto invalid;
	}
	if (fexp <= now) {
		*why = "session has expired; log in again";
		goto invalid;
	}
	if ((us = user_state(user_id)) != NULL && (us->disabled ||
	    us->denied)) {
		*why = us->disabled ? "user is disabled" :
		    "the access policy no longer admits this user";
		if ((nkeys = refresh_revoke_locked(sid, us->disabled ?
		    "user disabled" : "access policy", NULL, client)) == -1)
			goto dberr;
		tokens_revoked_add(sid, fexp);
		goto invalid_commit;
	}

	if (has_used) {
		/* Was the successor itself used since? Then this is reuse. */
		succ_used = 0;
		if (has_succ) {
			st = db_prepare(&st_rt_used);
			sqlite3_bind_blob(st, 1, succ, sizeof succ,
			    SQLITE_STATIC);
			if (sqlite3_step(st) == SQLITE_ROW &&
			    sqlite3_column_type(st, 0) != SQLITE_NULL)
				succ_used = 1;
			sqlite3_reset(st);
		}
		if (now - used_at <= (time_t)cfg->jwt_refresh_grace &&
		    !succ_used && sealed != NULL &&
		    (*resp = refresh_successor_open(token, sealed, slen)) !=
		    NULL) {
			db_rollback();
			audit_event("refresh_retry", user_id, user_id, client,
			    json_pack("{s:s}", "session", sid));
			rc = 0;
			goto out;
		}
		/* Reuse after the grace window: someone else has it too. */
		if ((nkeys = refresh_revoke_locked(sid,
		    "refresh token reuse", NULL, client)) == -1)
			goto dberr;
		tokens_revoked_add(sid, fexp);
		audit_event("refresh_reuse_detected", user_id, NULL, client,
		    json_pack("{s:s,s:i}", "session", sid, "keys", nkeys));
		*why = "refresh token was already used; the session has been "
		    "revoked";
		if (db_commit() == -1)
			goto dberr;
		if (nkeys > 0)
			apikeys_load();
		log_warnx("refresh token reuse detected for %s: session %s "
		    "revoked", user_id, sid);
		rc = -1;
		goto out;
	}

	if (user_get(user_id, &u) == -1) {
		*why = "user no longer exists";
		goto invalid;
	}
	exp = now + (time_t)cfg->jwt_access_ttl;
	if (exp > fexp)
		exp = fexp;
	refresh = crypto_new_secret(REFRESH_PREFIX);
	if ((access = tokens_mint(&u, sid, NULL, exp, NULL)) == NULL)
		goto dberr;
	if (refresh_insert(refresh, sid, fexp) == -1)
		goto dberr;
	free(sealed);
	sealed = NULL;
	if (refresh_successor_seal(token, access, exp, refresh, &sealed,
	    &slen) == -1)
		goto dberr;
	crypto_hash_token(refresh, succ);
	st = db_prepare(&st_rt_rotate);
	sqlite3_bind_int64(st, 1, (sqlite3_int64)now);
	sqlite3_bind_blob(st, 2, succ, sizeof succ, SQLITE_STATIC);
	sqlite3_bind_blob(st, 3, sealed, (int)slen, SQLITE_STATIC);
	sqlite3_bind_blob(st, 4, h, sizeof h, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE || sqlite3_changes(bsp_db) != 1) {
		sqlite3_reset(st);
		goto dberr;
	}
	sqlite3_reset(st);
	audit_event("refresh", user_id, user_id, client, json_pack("{s:s}",
	    "session", sid));
	if (db_commit() == -1)
		goto dberr;
	*resp = refresh_response(access, exp, refresh);
	rc = 0;
	goto out;

invalid_commit:
	audit_event("refresh_failed", user_id, NULL, client, json_pack("{s:s}",
	    "reason", *why));
	if (db_commit() == -1)
		goto dberr;
	if (nkeys > 0)
		apikeys_load();
	rc = -1;
	goto out;
invalid:
	db_rollback();
	audit_event("refresh_failed", user_id, NULL, client, json_pack("{s:s}",
	    "reason", *why));
	rc = -1;
	goto out;
dberr:
	log_warnx("refresh failed: %s", db_errmsg());
	db_rollback();
	rc = -2;
out:
	user_clear(&u);
	free(sealed);
	free(sid);
	free(user_id);
	freezero_str(refresh);
	freezero_str(access);
	return (rc);
}

/*
 * Revoke one session family: its refresh and access tokens, and the API
 * keys made with them, stop at once.
 */
int
tokens_revoke_family(const char *sid, const char *reason, const char *event,
    const char *actor, const char *client)
{
	sqlite3_stmt	*st;
	char		*user_id = NULL;
	time_t		 fexp = 0;
	int		 nkeys;

	if (db_begin() == -1)
		return (-1);
	st = db_prepare(&st_fam_get);
	sqlite3_bind_text(st, 1, sid, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		user_id = xstrdup((const char *)sqlite3_column_text(st, 0));
		fexp = (time_t)sqlite3_column_int64(st, 1);
	}
	sqlite3_reset(st);
	if (user_id == NULL) {
		db_rollback();
		return (-1);
	}
	if (actor == NULL)
		actor = user_id;
	if ((nkeys = refresh_revoke_locked(sid, reason, actor, client)) == -1) {
		db_rollback();
		free(user_id);
		return (-1);
	}
	audit_event(event, user_id, actor, client, json_pack("{s:s,s:i}",
	    "session", sid, "keys", nkeys));
	if (db_commit() == -1) {
		free(user_id);
		return (-1);
	}
	tokens_revoked_add(sid, fexp);
	if (nkeys > 0)
		apikeys_load();
	free(user_id);
	return (0);
}

/* Revoke the family a refresh token belongs to (logout, RFC 7009). */
int
tokens_revoke_refresh(const char *token, const char *event,
    const char *client)
{
	sqlite3_stmt	*st;
	uint8_t		 h[CRYPTO_HASH_LEN];
	char		*sid = NULL;
	int		 rc;

	if (strncmp(token, REFRESH_PREFIX, 4) != 0)
		return (-1);
	crypto_hash_token(token, h);
	st = db_prepare(&st_rt_get);
	sqlite3_bind_blob(st, 1, h, sizeof h, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		sid = xstrdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_reset(st);
	if (sid == NULL)
		return (-1);
	rc = tokens_revoke_family(sid, event, event, NULL, client);
	free(sid);
	return (rc);
}

/*
 * "user logout" and "user disable" (reason): every family of the user,
 * every token issued so far and, unless keep_keys, every API key of the
 * user, the administrator's too. Returns the number of sessions ended and
 * in *nkeys the number of keys revoked, or -1.
 */
int
tokens_revoke_user(const char *user_id, const char *reason, int keep_keys,
    const char *actor, const char *client, int *nkeys)
{
	sqlite3_stmt	*st;
	time_t		 now = now_wall();
	int		 n, rc;

	*nkeys = 0;
	if (db_begin() == -1)
		return (-1);
	st = db_prepare(&st_fam_revoke_user);
	sqlite3_bind_int64(st, 1, (sqlite3_int64)now);
	sqlite3_bind_text(st, 2, reason, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, user_id, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		db_rollback();
		return (-1);
	}
	n = sqlite3_changes(bsp_db);
	if (user_set_revoked_before(user_id, now) == -1) {
		db_rollback();
		return (-1);
	}
	if (!keep_keys && (*nkeys = apikeys_revoke_user_locked(user_id, reason,
	    actor, client)) == -1) {
		*nkeys = 0;
		db_rollback();
		return (-1);
	}
	audit_event("user_logout", user_id, actor, client,
	    json_pack("{s:s,s:i,s:i,s:b}", "reason", reason, "sessions", n,
	    "keys", *nkeys, "keep_keys", keep_keys));
	if (db_commit() == -1)
		return (-1);
	users_load_state();
	tokens_revoked_load();
	apikeys_load();
	return (n);
}
