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
 * made in it in the same transaction; only "user logout --keep-keys" keeps
 * them, with every other key of the user (bedrock-sso-proxy(8)).
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

/* A refresh token presented, read in the transaction that will use it. */
struct refresh_row {
	const char	*token;
	const char	*client;
	time_t		 now;
	uint8_t		 hash[CRYPTO_HASH_LEN];
	char		*sid;
	int		 used;
	time_t		 used_at;
	int		 has_succ;
	uint8_t		 succ[CRYPTO_HASH_LEN];	/* its successor's hash */
	uint8_t		*sealed;		/* the successor, sealed */
	size_t		 slen;
	char		*user_id;		/* of the family */
	time_t		 fexp;
	int		 frevoked;
};

static json_t	*refresh_response(const char *, time_t, const char *);
static int	 refresh_insert(const char *, const char *, time_t);
static int	 refresh_successor_seal(const char *, const char *, time_t,
		    const char *, uint8_t **, size_t *);
static json_t	*refresh_successor_open(const char *, const void *, size_t);
static int	 refresh_revoke_locked(const char *, const char *,
		    const char *, const char *);
static int	 refresh_row_get(struct refresh_row *);
static int	 refresh_family_get(const char *, char **, time_t *, int *);
static void	 refresh_row_clear(struct refresh_row *);
static int	 refresh_dberr(void);
static int	 refresh_refuse(const struct refresh_row *, const char *);
static int	 refresh_user_gone(const struct refresh_row *,
		    const struct user_state *, const char **);
static int	 refresh_used(const struct refresh_row *, json_t **,
		    const char **);
static int	 refresh_rotate(const struct refresh_row *, json_t **,
		    const char **);

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
	int		 rc = -1;

	*resp = NULL;
	sid = tokens_random_id(SID_BYTES);
	expires = now + (time_t)cfg->jwt_refresh_ttl;
	exp = now + (time_t)cfg->jwt_access_ttl;
	if (exp > expires)
		exp = expires;
	if (db_begin() == -1)
		goto out;
	st = db_prepare(&st_fam_insert);
	sqlite3_bind_text(st, 1, sid, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, u->id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)now);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)expires);
	if (sqlite3_step(st) != SQLITE_DONE)
		goto out;
	refresh = crypto_new_secret(REFRESH_PREFIX);
	if (refresh_insert(refresh, sid, expires) == -1)
		goto out;
	if ((access = tokens_mint(u, sid, NULL, exp, NULL)) == NULL)
		goto out;
	audit_event(event, u->id, u->id, client, json_pack("{s:s}", "session",
	    sid));
	if (db_commit() == -1)
		goto out;
	*resp = refresh_response(access, exp, refresh);
	rc = 0;
out:
	if (rc == -1) {
		log_warnx("cannot start a session for %s: %s", u->id,
		    db_errmsg());
		db_rollback();
	}
	free(sid);
	freezero_str(refresh);
	freezero_str(access);
	return (rc);
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
	int		 rc = -1;

	*out = NULL;
	sid = tokens_random_id(SID_BYTES);
	if (db_begin() == -1)
		goto out;
	st = db_prepare(&st_fam_insert);
	sqlite3_bind_text(st, 1, sid, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, u->id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)now);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)exp);
	if (sqlite3_step(st) != SQLITE_DONE)
		goto out;
	if ((t = tokens_mint(u, sid, scopes, exp, NULL)) == NULL)
		goto out;
	audit_event("token_minted", u->id, actor, NULL,
	    json_pack("{s:s,s:I}", "session", sid, "ttl", (json_int_t)ttl));
	if (db_commit() == -1)
		goto out;
	*out = t;
	t = NULL;
	rc = 0;
out:
	if (rc == -1)
		db_rollback();
	free(sid);
	freezero_str(t);
	return (rc);
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
 * transaction. Every way one family ends goes through here ("user logout"
 * ends them all at once: tokens_revoke_user). Returns the number of keys
 * revoked (the caller reloads them after its commit), or -1.
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

/* The token's row; 0 if there is one. */
static int
refresh_row_get(struct refresh_row *rr)
{
	sqlite3_stmt	*st = db_prepare(&st_rt_get);
	int		 rc = -1;

	sqlite3_bind_blob(st, 1, rr->hash, sizeof rr->hash, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_ROW)
		goto out;
	rr->sid = xstrdup((const char *)sqlite3_column_text(st, 0));
	rr->used = sqlite3_column_type(st, 2) != SQLITE_NULL;
	rr->used_at = (time_t)sqlite3_column_int64(st, 2);
	if (sqlite3_column_bytes(st, 3) == (int)sizeof rr->succ) {
		memcpy(rr->succ, sqlite3_column_blob(st, 3), sizeof rr->succ);
		rr->has_succ = 1;
	}
	if (sqlite3_column_type(st, 4) != SQLITE_NULL) {
		rr->slen = (size_t)sqlite3_column_bytes(st, 4);
		rr->sealed = xmalloc(rr->slen > 0 ? rr->slen : 1);
		memcpy(rr->sealed, sqlite3_column_blob(st, 4), rr->slen);
	}
	rc = 0;
out:
	sqlite3_reset(st);
	return (rc);
}

/* The family of a session: its user, expiry and state; 0 if it exists. */
static int
refresh_family_get(const char *sid, char **user_id, time_t *fexp,
    int *frevoked)
{
	sqlite3_stmt	*st = db_prepare(&st_fam_get);
	int		 rc = -1;

	sqlite3_bind_text(st, 1, sid, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		*user_id = xstrdup((const char *)sqlite3_column_text(st, 0));
		*fexp = (time_t)sqlite3_column_int64(st, 1);
		*frevoked = sqlite3_column_int(st, 2);
		rc = 0;
	}
	sqlite3_reset(st);
	return (rc);
}

static void
refresh_row_clear(struct refresh_row *rr)
{
	free(rr->sid);
	free(rr->sealed);
	free(rr->user_id);
	memset(rr, 0, sizeof *rr);
}

/* A server error: the transaction is rolled back. */
static int
refresh_dberr(void)
{
	log_warnx("refresh failed: %s", db_errmsg());
	db_rollback();
	return (-2);
}

/* The token is not (or no longer) good; nothing was written. */
static int
refresh_refuse(const struct refresh_row *rr, const char *why)
{
	db_rollback();
	audit_event("refresh_failed", rr->user_id, NULL, rr->client,
	    json_pack("{s:s}", "reason", why));
	return (-1);
}

/* The user is disabled or no longer admitted: the session ends. */
static int
refresh_user_gone(const struct refresh_row *rr, const struct user_state *us,
    const char **why)
{
	int	nkeys;

	*why = us->disabled ? "user is disabled" :
	    "the access policy no longer admits this user";
	if ((nkeys = refresh_revoke_locked(rr->sid, us->disabled ?
	    "user disabled" : "access policy", NULL, rr->client)) == -1)
		return (refresh_dberr());
	tokens_revoked_add(rr->sid, rr->fexp);
	audit_event("refresh_failed", rr->user_id, NULL, rr->client,
	    json_pack("{s:s}", "reason", *why));
	if (db_commit() == -1)
		return (refresh_dberr());
	if (nkeys > 0)
		apikeys_load();
	return (-1);
}

/*
 * A used token again: within the grace window, and if its successor has
 * not been used since, the same successor (the answer was lost); else
 * someone else has it too, and the session ends.
 */
static int
refresh_used(const struct refresh_row *rr, json_t **resp, const char **why)
{
	sqlite3_stmt	*st;
	int		 succ_used = 0, nkeys;

	if (rr->has_succ) {
		st = db_prepare(&st_rt_used);
		sqlite3_bind_blob(st, 1, rr->succ, sizeof rr->succ,
		    SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW &&
		    sqlite3_column_type(st, 0) != SQLITE_NULL)
			succ_used = 1;
		sqlite3_reset(st);
	}
	if (rr->now - rr->used_at <= (time_t)cfg->jwt_refresh_grace &&
	    !succ_used && rr->sealed != NULL &&
	    (*resp = refresh_successor_open(rr->token, rr->sealed,
	    rr->slen)) != NULL) {
		db_rollback();
		audit_event("refresh_retry", rr->user_id, rr->user_id,
		    rr->client, json_pack("{s:s}", "session", rr->sid));
		return (0);
	}
	if ((nkeys = refresh_revoke_locked(rr->sid, "refresh token reuse",
	    NULL, rr->client)) == -1)
		return (refresh_dberr());
	tokens_revoked_add(rr->sid, rr->fexp);
	audit_event("refresh_reuse_detected", rr->user_id, NULL, rr->client,
	    json_pack("{s:s,s:i}", "session", rr->sid, "keys", nkeys));
	*why = "refresh token was already used; the session has been revoked";
	if (db_commit() == -1)
		return (refresh_dberr());
	if (nkeys > 0)
		apikeys_load();
	log_warnx("refresh token reuse detected for %s: session %s revoked",
	    rr->user_id, rr->sid);
	return (-1);
}

/*
 * Rotate: a new refresh token and access token, the old token marked used
 * with its successor sealed under it for a retry.
 */
static int
refresh_rotate(const struct refresh_row *rr, json_t **resp,
    const char **why)
{
	sqlite3_stmt	*st;
	struct user	 u;
	uint8_t		*sealed = NULL, succ[CRYPTO_HASH_LEN];
	size_t		 slen = 0;
	char		*access = NULL, *refresh = NULL;
	time_t		 exp;
	int		 rc = -2;

	memset(&u, 0, sizeof u);
	if (user_get(rr->user_id, &u) == -1) {
		*why = "user no longer exists";
		rc = refresh_refuse(rr, *why);
		goto out;
	}
	exp = rr->now + (time_t)cfg->jwt_access_ttl;
	if (exp > rr->fexp)
		exp = rr->fexp;
	refresh = crypto_new_secret(REFRESH_PREFIX);
	if ((access = tokens_mint(&u, rr->sid, NULL, exp, NULL)) == NULL ||
	    refresh_insert(refresh, rr->sid, rr->fexp) == -1 ||
	    refresh_successor_seal(rr->token, access, exp, refresh, &sealed,
	    &slen) == -1)
		goto out;
	crypto_hash_token(refresh, succ);
	st = db_prepare(&st_rt_rotate);
	sqlite3_bind_int64(st, 1, (sqlite3_int64)rr->now);
	sqlite3_bind_blob(st, 2, succ, sizeof succ, SQLITE_STATIC);
	sqlite3_bind_blob(st, 3, sealed, (int)slen, SQLITE_STATIC);
	sqlite3_bind_blob(st, 4, rr->hash, sizeof rr->hash, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE || sqlite3_changes(bsp_db) != 1) {
		sqlite3_reset(st);
		goto out;
	}
	sqlite3_reset(st);
	audit_event("refresh", rr->user_id, rr->user_id, rr->client,
	    json_pack("{s:s}", "session", rr->sid));
	if (db_commit() == -1)
		goto out;
	*resp = refresh_response(access, exp, refresh);
	rc = 0;
out:
	if (rc == -2)
		rc = refresh_dberr();
	user_clear(&u);
	free(sealed);
	freezero_str(refresh);
	freezero_str(access);
	return (rc);
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
	struct refresh_row	 rr;
	const struct user_state	*us;
	int			 rc;

	*resp = NULL;
	*why = "refresh token is not valid";
	if (strncmp(token, REFRESH_PREFIX, 4) != 0 || strlen(token) != 47)
		return (-1);
	memset(&rr, 0, sizeof rr);
	rr.token = token;
	rr.client = client;
	rr.now = now_wall();
	crypto_hash_token(token, rr.hash);
	if (db_begin() == -1)
		return (-2);
	if (refresh_row_get(&rr) == -1) {
		db_rollback();
		/* Anyone can send one: a log line, not an audit write. */
		log_info("refresh refused: unknown token (from %s)",
		    client != NULL ? client : "-");
		return (-1);
	}
	if (refresh_family_get(rr.sid, &rr.user_id, &rr.fexp,
	    &rr.frevoked) == -1)
		rc = refresh_refuse(&rr, *why);
	else if (rr.frevoked) {
		*why = "session has been revoked";
		rc = refresh_refuse(&rr, *why);
	} else if (rr.fexp <= rr.now) {
		*why = "session has expired; log in again";
		rc = refresh_refuse(&rr, *why);
	} else if ((us = user_state(rr.user_id)) != NULL && (us->disabled ||
	    us->denied))
		rc = refresh_user_gone(&rr, us, why);
	else if (rr.used)
		rc = refresh_used(&rr, resp, why);
	else
		rc = refresh_rotate(&rr, resp, why);
	refresh_row_clear(&rr);
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
	char	*user_id = NULL;
	time_t	 fexp = 0;
	int	 frevoked, nkeys, rc = -1;

	if (db_begin() == -1)
		return (-1);
	if (refresh_family_get(sid, &user_id, &fexp, &frevoked) == -1) {
		db_rollback();
		return (-1);
	}
	if (actor == NULL)
		actor = user_id;
	if ((nkeys = refresh_revoke_locked(sid, reason, actor, client)) == -1) {
		db_rollback();
		goto out;
	}
	audit_event(event, user_id, actor, client, json_pack("{s:s,s:i}",
	    "session", sid, "keys", nkeys));
	if (db_commit() == -1)
		goto out;
	tokens_revoked_add(sid, fexp);
	if (nkeys > 0)
		apikeys_load();
	rc = 0;
out:
	free(user_id);
	return (rc);
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
