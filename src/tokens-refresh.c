/*
 * tokens-refresh.c: sessions (token families) and their refresh tokens.
 *
 * Refresh tokens are opaque ("bsr_" + 256 random bits), stored only as a
 * hash, and rotate on every use inside one unit of work. Each login starts
 * a family (the sid claim); presenting a used refresh token after
 * jwt.refresh_reuse_grace revokes the whole family. A retry within the
 * grace window gets the same successor back: it is stored sealed under a
 * key derived from the old token itself, so only its holder can open it.
 * The rotation claims the token with a conditional UPDATE (used_at IS
 * NULL): of two daemons rotating the same token at once one wins, and the
 * other reads it again as a used token, which within the grace window
 * answers the winner's successor.
 *
 * A family may have an access token lifetime of its own (a session the
 * device flow started: device.access_token_ttl), which its refreshes keep;
 * others get jwt.access_token_ttl.
 *
 * Every way a family ends (logout, RFC 7009, refresh token reuse, a
 * disabled or no longer admitted user, "user logout") revokes the API keys
 * made in it in the same unit; only "user logout --keep-keys" keeps them,
 * with every other key of the user (bedrock-sso-proxy(8)).
 *
 * Each operation is a unit with one step function (refresh_step,
 * revoke_step, ...) that runs a statement and takes its answer; what the
 * daemon holds in memory changes after the unit has committed.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bsp.h"
#include "crypto.h"
#include "store.h"
#include "tokens.h"

#define REFRESH_PREFIX	"bsr_"
#define SID_BYTES	16
#define SUCCESSOR_PURPOSE "bsp-refresh-successor"
#define REFRESH_TRIES	3	/* a claim lost to another daemon: again */

static struct store_stmt st_fam_insert = STORE_STMT("INSERT INTO "
    "token_families (id, user_id, created, expires) VALUES ($1, $2, $3, $4)");
static struct store_stmt st_fam_insert_ttl = STORE_STMT("INSERT INTO "
    "token_families (id, user_id, created, expires, access_ttl) VALUES ($1, "
    "$2, $3, $4, $5)");
static struct store_stmt st_fam_get = STORE_STMT("SELECT user_id, expires, "
    "revoked, access_ttl FROM token_families WHERE id = $1");
static struct store_stmt st_fam_revoke = STORE_STMT("UPDATE token_families "
    "SET revoked = 1, revoked_at = $1, revoked_reason = $2 WHERE id = $3 AND "
    "revoked = 0");
static struct store_stmt st_fam_revoke_user = STORE_STMT("UPDATE "
    "token_families SET revoked = 1, revoked_at = $1, revoked_reason = $2 "
    "WHERE user_id = $3 AND revoked = 0");
static struct store_stmt st_rt_insert = STORE_STMT("INSERT INTO "
    "refresh_tokens (hash, family_id, created, expires) VALUES ($1, $2, $3, "
    "$4)");
static struct store_stmt st_rt_get = STORE_STMT("SELECT family_id, expires, "
    "used_at, successor, successor_sealed FROM refresh_tokens WHERE hash = "
    "$1");
static struct store_stmt st_rt_used = STORE_STMT("SELECT used_at FROM "
    "refresh_tokens WHERE hash = $1");
static struct store_stmt st_rt_rotate = STORE_STMT("UPDATE refresh_tokens SET "
    "used_at = $1, successor = $2, successor_sealed = $3 WHERE hash = $4 AND "
    "used_at IS NULL");
static struct store_stmt st_user_get = STORE_STMT("SELECT id, provider, "
    "subject, email, email_verified, name, groups FROM users WHERE id = $1");

static json_t	*refresh_response(const char *, time_t, const char *);

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

/*
 * Revoking one family inside a unit: the family, then the API keys made
 * in it. Every way one family ends goes through here ("user logout" ends
 * them all at once: tokens_revoke_user).
 */
struct famrev_op {
	int		 state;		/* 0 family, 1 keys */
	char		*sid;
	char		*reason;
	char		*actor;
	char		*client;
	int		*nkeys;
	store_step_cb	 done;
	void		*arg;
};

static void
famrev_step(struct store_txn *t, int status, void *arg)
{
	struct famrev_op	*op = arg;
	store_step_cb		 done = op->done;
	void			*darg = op->arg;

	if (status == STORE_OK && op->state == 0) {
		op->state = 1;
		apikeys_revoke_family(t, op->sid, op->reason, op->actor,
		    op->client, op->nkeys, famrev_step, op);
		return;
	}
	if (status != STORE_OK)
		log_warnx("cannot revoke session %s", op->sid);
	free(op->sid);
	free(op->reason);
	free(op->actor);
	free(op->client);
	free(op);
	done(t, status, darg);
}

/*
 * Revoke a session family and the API keys made in it, in the unit t;
 * *nkeys gets how many keys (after its commit the caller reloads them).
 */
static void
refresh_revoke_family(struct store_txn *t, const char *sid,
    const char *reason, const char *actor, const char *client, int *nkeys,
    store_step_cb done, void *arg)
{
	struct famrev_op	*op;
	struct store_param	 p[] = { SP_INT(now_wall()), SP_TEXT(reason),
				    SP_TEXT(sid) };

	op = xcalloc(1, sizeof *op);
	op->sid = xstrdup(sid);
	op->reason = xstrdup(reason);
	op->actor = actor != NULL ? xstrdup(actor) : NULL;
	op->client = client != NULL ? xstrdup(client) : NULL;
	op->nkeys = nkeys;
	op->done = done;
	op->arg = arg;
	*nkeys = 0;
	store_exec(t, &st_fam_revoke, p, nitems(p), NULL, famrev_step, op);
}

/*
 * A new session inside a unit: its family, its refresh token, an access
 * token and the audit row.
 */
enum sess_state {
	SS_FAMILY,
	SS_REFRESH,
	SS_AUDIT,
};

struct sess_op {
	enum sess_state	 state;
	const struct user *u;		/* the caller's, until done */
	char		*sid;
	char		*refresh;
	char		*access;
	char		*client;
	char		*event;
	long long	 access_ttl;	/* its own, or 0 */
	time_t		 expires;
	time_t		 exp;
	json_t		**resp;
	store_step_cb	 done;
	void		*arg;
};

static void
sess_step(struct store_txn *t, int status, void *arg)
{
	struct sess_op	*op = arg;
	store_step_cb	 done = op->done;
	void		*darg = op->arg;
	uint8_t		 h[CRYPTO_HASH_LEN];

	if (status != STORE_OK)
		goto out;
	switch (op->state) {
	case SS_FAMILY:
		op->state = SS_REFRESH;
		op->refresh = crypto_new_secret(REFRESH_PREFIX);
		crypto_hash_token(op->refresh, h);
		{
			struct store_param p[] = { SP_BLOB(h, sizeof h),
			    SP_TEXT(op->sid), SP_INT(now_wall()),
			    SP_INT(op->expires) };

			store_exec(t, &st_rt_insert, p, nitems(p), NULL,
			    sess_step, op);
		}
		return;
	case SS_REFRESH:
		if ((op->access = tokens_mint(op->u, op->sid, NULL, op->exp,
		    NULL)) == NULL) {
			status = STORE_ERROR;
			goto out;
		}
		op->state = SS_AUDIT;
		audit_event(t, op->event, op->u->id, op->u->id, op->client,
		    json_pack("{s:s}", "session", op->sid), sess_step, op);
		return;
	case SS_AUDIT:
		*op->resp = refresh_response(op->access, op->exp, op->refresh);
		break;
	}
out:
	if (status != STORE_OK)
		log_warnx("cannot start a session for %s", op->u->id);
	free(op->sid);
	freezero_str(op->refresh);
	freezero_str(op->access);
	free(op->client);
	free(op->event);
	free(op);
	done(t, status, darg);
}

/*
 * Start a session (token family) for a user who just logged in, in the
 * unit t: a refresh token and an access token, in *resp when done(t,
 * STORE_OK, arg) (the caller answers with it once the unit has
 * committed). Its access tokens live access_ttl seconds, this one and
 * those its refreshes make (0: jwt.access_token_ttl). u must stay until
 * done.
 */
void
tokens_session_add(struct store_txn *t, const struct user *u,
    const char *client, const char *event, long long access_ttl,
    json_t **resp, store_step_cb done, void *arg)
{
	struct sess_op	*op;
	time_t		 now = now_wall();

	*resp = NULL;
	op = xcalloc(1, sizeof *op);
	op->u = u;
	op->sid = tokens_random_id(SID_BYTES);
	op->client = client != NULL ? xstrdup(client) : NULL;
	op->event = xstrdup(event);
	op->access_ttl = access_ttl > 0 ? access_ttl : 0;
	op->expires = now + (time_t)cfg->jwt_refresh_ttl;
	op->exp = now + (time_t)(op->access_ttl > 0 ? op->access_ttl :
	    cfg->jwt_access_ttl);
	if (op->exp > op->expires)
		op->exp = op->expires;
	op->resp = resp;
	op->done = done;
	op->arg = arg;
	op->state = SS_FAMILY;
	{
		struct store_param p[] = { SP_TEXT(op->sid), SP_TEXT(u->id),
		    SP_INT(now), SP_INT(op->expires), op->access_ttl > 0 ?
		    (struct store_param)SP_INT(op->access_ttl) :
		    (struct store_param)SP_NULL };

		store_exec(t, &st_fam_insert_ttl, p, nitems(p), NULL,
		    sess_step, op);
	}
}

/*
 * A session in a unit of its own (tokens_session_new) and an access token
 * in a session of its own (tokens_mint_session), for a copy of the user.
 */
enum own_state {
	OS_BEGIN,
	OS_SESSION,
	OS_FAMILY,
	OS_AUDIT,
	OS_COMMIT,
};

struct own_op {
	enum own_state	 state;
	int		 mint;		/* tokens_mint_session */
	struct user	 u;
	char		*client;	/* or the actor */
	char		*event;
	char		*sid;
	char		*token;
	struct strlist	 scopes;
	long long	 ttl;
	time_t		 exp;
	json_t		*resp;
	void		(*session_cb)(int, json_t *, void *);
	void		(*mint_cb)(int, char *, void *);
	void		*arg;
};

static void	own_committed(int, void *);

static void
own_end(struct own_op *op, int status)
{
	if (op->mint)
		op->mint_cb(status == STORE_OK ? 0 : -1, status == STORE_OK ?
		    op->token : NULL, op->arg);
	else
		op->session_cb(status == STORE_OK ? 0 : -1, status ==
		    STORE_OK ? op->resp : NULL, op->arg);
	if (status != STORE_OK || op->mint)
		json_decref(op->resp);
	if (status != STORE_OK || !op->mint)
		freezero_str(op->token);
	user_clear(&op->u);
	strlist_free(&op->scopes);
	free(op->client);
	free(op->event);
	free(op->sid);
	free(op);
}

static void
own_step(struct store_txn *t, int status, void *arg)
{
	struct own_op	*op = arg;

	if (t == NULL || status != STORE_OK) {
		if (t != NULL)
			store_rollback(t);
		own_end(op, status != STORE_OK ? status : STORE_ERROR);
		return;
	}
	switch (op->state) {
	case OS_BEGIN:
		if (!op->mint) {
			op->state = OS_SESSION;
			tokens_session_add(t, &op->u, op->client, op->event,
			    0, &op->resp, own_step, op);
			return;
		}
		op->state = OS_FAMILY;
		op->sid = tokens_random_id(SID_BYTES);
		op->exp = now_wall() + (time_t)op->ttl;
		{
			struct store_param p[] = { SP_TEXT(op->sid),
			    SP_TEXT(op->u.id), SP_INT(now_wall()),
			    SP_INT(op->exp) };

			store_exec(t, &st_fam_insert, p, nitems(p), NULL,
			    own_step, op);
		}
		return;
	case OS_FAMILY:
		if ((op->token = tokens_mint(&op->u, op->sid, &op->scopes,
		    op->exp, NULL)) == NULL) {
			store_rollback(t);
			own_end(op, STORE_ERROR);
			return;
		}
		op->state = OS_AUDIT;
		audit_event(t, "token_minted", op->u.id, op->client, NULL,
		    json_pack("{s:s,s:I}", "session", op->sid, "ttl",
		    (json_int_t)op->ttl), own_step, op);
		return;
	case OS_SESSION:
	case OS_AUDIT:
		op->state = OS_COMMIT;
		store_commit(t, own_committed, op);
		return;
	default:
		store_rollback(t);
		own_end(op, STORE_ERROR);
		return;
	}
}

static void
own_committed(int status, void *arg)
{
	own_end(arg, status);
}

/*
 * A session for a user who just logged in, in a unit of its own:
 * cb(0, response, arg) (the callback owns it), or cb(-1, NULL, arg).
 */
void
tokens_session_new(const struct user *u, const char *client,
    const char *event, void (*cb)(int, json_t *, void *), void *arg)
{
	struct own_op	*op;

	op = xcalloc(1, sizeof *op);
	user_copy(&op->u, u);
	op->client = client != NULL ? xstrdup(client) : NULL;
	op->event = xstrdup(event);
	op->session_cb = cb;
	op->arg = arg;
	store_begin(STORE_WRITE, own_step, op);
}

/*
 * "token mint": an access token in a session of its own (so that it can be
 * revoked like any other), valid for ttl seconds: cb(0, token, arg) (the
 * callback owns it), or cb(-1, NULL, arg).
 */
void
tokens_mint_session(const struct user *u, const struct strlist *scopes,
    long long ttl, const char *actor, void (*cb)(int, char *, void *),
    void *arg)
{
	struct own_op	*op;

	op = xcalloc(1, sizeof *op);
	op->mint = 1;
	user_copy(&op->u, u);
	if (scopes != NULL)
		strlist_copy(&op->scopes, scopes);
	op->ttl = ttl;
	op->client = actor != NULL ? xstrdup(actor) : NULL;
	op->mint_cb = cb;
	op->arg = arg;
	store_begin(STORE_WRITE, own_step, op);
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
 * A refresh token presented, as one unit: its row and its family; then,
 * by what they say, a refusal, the end of the session (its user is gone,
 * or the token was used again after the grace window: reuse), the
 * successor again (a retry within it), or the rotation.
 */
enum refresh_state {
	RS_BEGIN,
	RS_ROW,		/* the token's row */
	RS_FAMILY,	/* its family */
	RS_SUCC,	/* a used token: was its successor used too? */
	RS_USER,	/* the user, for the new access token */
	RS_CLAIM,	/* the conditional UPDATE of used_at */
	RS_INSERT,	/* the successor's row */
	RS_REVOKE,	/* the family and its keys */
	RS_AUDIT,
	RS_COMMIT,
	RS_KEYS,	/* the API keys in memory, after a revocation */
	RS_DONE,
};
static const char *const refresh_state_names[] = {
	"BEGIN", "ROW", "FAMILY", "SUCC", "USER", "CLAIM", "INSERT", "REVOKE",
	"AUDIT", "COMMIT", "KEYS", "DONE"
};

struct refresh_op {
	enum refresh_state state;
	char		*token;
	char		*client;
	time_t		 now;
	int		 tries;
	uint8_t		 hash[CRYPTO_HASH_LEN];
	/* the token's row */
	int		 found;
	char		*sid;
	int		 used;
	time_t		 used_at;
	int		 has_succ;
	uint8_t		 succ[CRYPTO_HASH_LEN];	/* its successor's hash */
	uint8_t		*sealed;		/* the successor, sealed */
	size_t		 slen;
	/* its family */
	int		 fam_found;
	char		*user_id;
	time_t		 fexp;
	int		 frevoked;
	long long	 fttl;		/* its access tokens' lifetime, or 0 */
	int		 succ_used;
	struct user	 u;
	int		 user_found;
	/* the successor */
	char		*access;
	char		*refresh;
	time_t		 exp;
	uint8_t		 new_hash[CRYPTO_HASH_LEN];
	/* the verdict */
	int		 rc;		/* 0, -1 refused, -2 server error */
	const char	*why;
	const char	*event;		/* the audit row's */
	json_t		*detail;
	json_t		*resp;
	int		 revoked;	/* the family was revoked */
	int		 nkeys;
	void		(*cb)(int, json_t *, const char *, void *);
	void		*arg;
};

static void	refresh_step(struct store_txn *, int, void *);
static void	refresh_row(const struct store_row *, void *);
static void	refresh_committed(int, void *);

static void
refresh_enter(struct refresh_op *op, enum refresh_state s)
{
	if (op->state != s)
		log_trace(TRACE_AUTH, "refresh: %s -> %s",
		    refresh_state_names[op->state], refresh_state_names[s]);
	op->state = s;
}

static void
refresh_clear_row(struct refresh_op *op)
{
	free(op->sid);
	free(op->sealed);
	free(op->user_id);
	user_clear(&op->u);
	op->sid = op->user_id = NULL;
	op->sealed = NULL;
	op->slen = 0;
	op->found = op->used = op->has_succ = op->fam_found = 0;
	op->frevoked = op->succ_used = op->user_found = 0;
	op->used_at = op->fexp = 0;
	op->fttl = 0;
}

/* The verdict, to the caller; the op is done. */
static void
refresh_end(struct refresh_op *op)
{
	refresh_enter(op, RS_DONE);
	op->cb(op->rc, op->rc == 0 ? op->resp : NULL, op->rc == 0 ? NULL :
	    op->why, op->arg);
	if (op->rc != 0)
		json_decref(op->resp);
	json_decref(op->detail);
	refresh_clear_row(op);
	freezero_str(op->token);
	freezero_str(op->access);
	freezero_str(op->refresh);
	free(op->client);
	free(op);
}

/* A server error: the unit, if any, rolled back. */
static void
refresh_dberr(struct refresh_op *op, struct store_txn *t)
{
	if (t != NULL)
		store_rollback(t);
	log_warnx("refresh failed: the database failed");
	op->rc = -2;
	json_decref(op->resp);
	op->resp = NULL;
	refresh_end(op);
}

/* The audit row of the verdict, then the commit. */
static void
refresh_audit(struct refresh_op *op, struct store_txn *t, const char *event,
    const char *actor, json_t *detail)
{
	refresh_enter(op, RS_AUDIT);
	audit_event(t, event, op->user_id, actor, op->client, detail,
	    refresh_step, op);
}

/* The token is not (or no longer) good; nothing else is written. */
static void
refresh_refuse(struct refresh_op *op, struct store_txn *t, const char *why)
{
	op->rc = -1;
	op->why = why;
	refresh_audit(op, t, "refresh_failed", NULL, json_pack("{s:s}",
	    "reason", why));
}

/* The session ends (its user is gone, or reuse): revoke it, keys too. */
static void
refresh_revoke(struct refresh_op *op, struct store_txn *t, const char *reason,
    const char *event, json_t *detail)
{
	op->rc = -1;
	op->event = event;
	op->detail = detail;
	op->revoked = 1;
	refresh_enter(op, RS_REVOKE);
	refresh_revoke_family(t, op->sid, reason, NULL, op->client, &op->nkeys,
	    refresh_step, op);
}

/*
 * The used token again: within the grace window, and if its successor
 * has not been used since, the same successor (the answer was lost); else
 * someone else has it too, and the session ends.
 */
static void
refresh_used(struct refresh_op *op, struct store_txn *t)
{
	if (op->now - op->used_at <= (time_t)cfg->jwt_refresh_grace &&
	    !op->succ_used && op->sealed != NULL &&
	    (op->resp = refresh_successor_open(op->token, op->sealed,
	    op->slen)) != NULL) {
		op->rc = 0;
		refresh_audit(op, t, "refresh_retry", op->user_id,
		    json_pack("{s:s}", "session", op->sid));
		return;
	}
	op->why = "refresh token was already used; the session has been "
	    "revoked";
	refresh_revoke(op, t, "refresh token reuse", "refresh_reuse_detected",
	    NULL);
}

/* What the family and the user's state say about the token. */
static void
refresh_judge(struct refresh_op *op, struct store_txn *t)
{
	const struct user_state	*us;

	if (!op->fam_found) {
		refresh_refuse(op, t, "refresh token is not valid");
		return;
	}
	if (op->frevoked) {
		refresh_refuse(op, t, "session has been revoked");
		return;
	}
	if (op->fexp <= op->now) {
		refresh_refuse(op, t, "session has expired; log in again");
		return;
	}
	if ((us = user_state(op->user_id)) != NULL && (us->disabled ||
	    us->denied)) {
		/* The user is disabled or no longer admitted. */
		op->why = us->disabled ? "user is disabled" :
		    "the access policy no longer admits this user";
		refresh_revoke(op, t, us->disabled ? "user disabled" :
		    "access policy", "refresh_failed", json_pack("{s:s}",
		    "reason", op->why));
		return;
	}
	if (op->used) {
		if (!op->has_succ) {
			refresh_used(op, t);
			return;
		}
		refresh_enter(op, RS_SUCC);
		{
			struct store_param p[] = { SP_BLOB(op->succ,
			    sizeof op->succ) };

			store_exec(t, &st_rt_used, p, nitems(p), refresh_row,
			    refresh_step, op);
		}
		return;
	}
	refresh_enter(op, RS_USER);
	{
		struct store_param p[] = { SP_TEXT(op->user_id) };

		store_exec(t, &st_user_get, p, nitems(p), refresh_row,
		    refresh_step, op);
	}
}

/*
 * Rotate: a new refresh token and access token, the old token claimed
 * (marked used, with its successor sealed under it for a retry).
 */
static void
refresh_rotate(struct refresh_op *op, struct store_txn *t)
{
	uint8_t		*sealed = NULL;
	size_t		 slen = 0;

	if (!op->user_found) {
		refresh_refuse(op, t, "user no longer exists");
		return;
	}
	op->exp = op->now + (time_t)(op->fttl > 0 ? op->fttl :
	    cfg->jwt_access_ttl);
	if (op->exp > op->fexp)
		op->exp = op->fexp;
	freezero_str(op->refresh);
	freezero_str(op->access);
	op->refresh = crypto_new_secret(REFRESH_PREFIX);
	if ((op->access = tokens_mint(&op->u, op->sid, NULL, op->exp,
	    NULL)) == NULL || refresh_successor_seal(op->token, op->access,
	    op->exp, op->refresh, &sealed, &slen) == -1) {
		free(sealed);
		refresh_dberr(op, t);
		return;
	}
	crypto_hash_token(op->refresh, op->new_hash);
	refresh_enter(op, RS_CLAIM);
	{
		struct store_param p[] = { SP_INT(op->now),
		    SP_BLOB(op->new_hash, sizeof op->new_hash),
		    SP_BLOB(sealed, slen), SP_BLOB(op->hash, sizeof op->hash) };

		store_exec(t, &st_rt_rotate, p, nitems(p), NULL, refresh_step,
		    op);
	}
	free(sealed);
}

static void
refresh_row(const struct store_row *r, void *arg)
{
	struct refresh_op	*op = arg;
	const uint8_t		*b;
	size_t			 len;

	switch (op->state) {
	case RS_ROW:
		op->found = 1;
		op->sid = store_strdup(r, 0);
		op->used = !store_null(r, 2);
		op->used_at = (time_t)store_int(r, 2);
		b = store_blob(r, 3, &len);
		if (b != NULL && len == sizeof op->succ) {
			memcpy(op->succ, b, sizeof op->succ);
			op->has_succ = 1;
		}
		if (!store_null(r, 4)) {
			b = store_blob(r, 4, &len);
			op->slen = len;
			op->sealed = xmalloc(len > 0 ? len : 1);
			if (len > 0 && b != NULL)
				memcpy(op->sealed, b, len);
		}
		break;
	case RS_FAMILY:
		op->fam_found = 1;
		op->user_id = store_strdup(r, 0);
		op->fexp = (time_t)store_int(r, 1);
		op->frevoked = (int)store_int(r, 2);
		op->fttl = store_null(r, 3) ? 0 : store_int(r, 3);
		break;
	case RS_SUCC:
		if (!store_null(r, 0))
			op->succ_used = 1;
		break;
	case RS_USER:
		user_clear(&op->u);
		op->u.id = store_strdup(r, 0);
		op->u.provider = store_strdup(r, 1);
		op->u.subject = store_strdup(r, 2);
		op->u.email = store_strdup(r, 3);
		op->u.email_verified = (int)store_int(r, 4);
		op->u.name = store_strdup(r, 5);
		strlist_from_json_text(&op->u.groups, store_text(r, 6));
		op->user_found = 1;
		break;
	default:
		break;
	}
}

/* The one step function of a refresh: each answer, and what comes next. */
static void
refresh_step(struct store_txn *t, int status, void *arg)
{
	struct refresh_op	*op = arg;
	json_t			*detail;

	if (t == NULL || status != STORE_OK) {
		refresh_dberr(op, t);
		return;
	}
	switch (op->state) {
	case RS_BEGIN:
		refresh_enter(op, RS_ROW);
		{
			struct store_param p[] = { SP_BLOB(op->hash,
			    sizeof op->hash) };

			store_exec(t, &st_rt_get, p, nitems(p), refresh_row,
			    refresh_step, op);
		}
		return;
	case RS_ROW:
		if (!op->found) {
			store_rollback(t);
			/* Anyone can send one: a log line, not an audit row. */
			log_info("refresh refused: unknown token (from %s)",
			    op->client != NULL ? op->client : "-");
			op->rc = -1;
			refresh_end(op);
			return;
		}
		refresh_enter(op, RS_FAMILY);
		{
			struct store_param p[] = { SP_TEXT(op->sid) };

			store_exec(t, &st_fam_get, p, nitems(p), refresh_row,
			    refresh_step, op);
		}
		return;
	case RS_FAMILY:
		refresh_judge(op, t);
		return;
	case RS_SUCC:
		refresh_used(op, t);
		return;
	case RS_USER:
		refresh_rotate(op, t);
		return;
	case RS_CLAIM:
		if (store_changes(t) != 1) {
			/*
			 * Another daemon used it since we read it: read it
			 * again, now as a used token.
			 */
			store_rollback(t);
			if (++op->tries >= REFRESH_TRIES) {
				refresh_dberr(op, NULL);
				return;
			}
			refresh_clear_row(op);
			refresh_enter(op, RS_BEGIN);
			op->now = now_wall();
			store_begin(STORE_WRITE, refresh_step, op);
			return;
		}
		refresh_enter(op, RS_INSERT);
		{
			struct store_param p[] = { SP_BLOB(op->new_hash,
			    sizeof op->new_hash), SP_TEXT(op->sid),
			    SP_INT(now_wall()), SP_INT(op->fexp) };

			store_exec(t, &st_rt_insert, p, nitems(p), NULL,
			    refresh_step, op);
		}
		return;
	case RS_INSERT:
		op->rc = 0;
		op->resp = refresh_response(op->access, op->exp, op->refresh);
		refresh_audit(op, t, "refresh", op->user_id, json_pack("{s:s}",
		    "session", op->sid));
		return;
	case RS_REVOKE:
		detail = op->detail != NULL ? op->detail : json_pack(
		    "{s:s,s:i}", "session", op->sid, "keys", op->nkeys);
		op->detail = NULL;	/* the audit row's now */
		refresh_audit(op, t, op->event, NULL, detail);
		return;
	case RS_AUDIT:
		refresh_enter(op, RS_COMMIT);
		if (op->revoked)
			store_notify(t, "families");
		store_commit(t, refresh_committed, op);
		return;
	default:
		refresh_dberr(op, t);
		return;
	}
}

static void
refresh_keys_loaded(int status, void *arg)
{
	refresh_end(arg);
}

static void
refresh_committed(int status, void *arg)
{
	struct refresh_op	*op = arg;

	if (status != STORE_OK) {
		refresh_dberr(op, NULL);
		return;
	}
	if (!op->revoked) {
		refresh_end(op);
		return;
	}
	tokens_revoked_add(op->sid, op->fexp);
	if (strcmp(op->event, "refresh_reuse_detected") == 0)
		log_warnx("refresh token reuse detected for %s: session %s "
		    "revoked", op->user_id, op->sid);
	if (op->nkeys == 0) {
		refresh_end(op);
		return;
	}
	/* The session's keys stop before the answer goes out. */
	refresh_enter(op, RS_KEYS);
	apikeys_load(refresh_keys_loaded, op);
}

/*
 * Rotate a refresh token: cb(0, response, NULL, arg) (the callback owns
 * the response); cb(-1, NULL, why, arg) when the token is not (or no
 * longer) good: the caller answers invalid_grant; cb(-2, NULL, ..., arg)
 * on a server error (or before the revocation state is loaded).
 */
void
tokens_refresh(const char *token, const char *client,
    void (*cb)(int, json_t *, const char *, void *), void *arg)
{
	struct refresh_op	*op;
	const char		*detail;

	if (strncmp(token, REFRESH_PREFIX, 4) != 0 || strlen(token) != 47) {
		cb(-1, NULL, "refresh token is not valid", arg);
		return;
	}
	if (!tokens_loaded(&detail)) {
		cb(-2, NULL, detail, arg);
		return;
	}
	op = xcalloc(1, sizeof *op);
	op->token = xstrdup(token);
	op->client = client != NULL ? xstrdup(client) : NULL;
	op->now = now_wall();
	op->why = "refresh token is not valid";
	op->cb = cb;
	op->arg = arg;
	crypto_hash_token(token, op->hash);
	store_begin(STORE_WRITE, refresh_step, op);
}

/*
 * Revoking one session: by its id (logout with an access token, RFC 7009
 * with one) or by one of its refresh tokens (logout, RFC 7009).
 */
enum revoke_state {
	VS_BEGIN,
	VS_TOKEN,	/* the refresh token's family */
	VS_FAMILY,
	VS_REVOKE,
	VS_AUDIT,
	VS_COMMIT,
};

struct revoke_op {
	enum revoke_state state;
	uint8_t		 hash[CRYPTO_HASH_LEN];
	int		 by_token;
	char		*sid;
	char		*reason;
	char		*event;
	char		*actor;
	char		*client;
	char		*user_id;
	int		 found;
	time_t		 fexp;
	int		 nkeys;
	int		 rc;
	void		(*cb)(int, void *);
	void		*arg;
};

static void	revoke_step(struct store_txn *, int, void *);

static void
revoke_end(struct revoke_op *op, int rc)
{
	op->cb(rc, op->arg);
	free(op->sid);
	free(op->reason);
	free(op->event);
	free(op->actor);
	free(op->client);
	free(op->user_id);
	free(op);
}

static void
revoke_row(const struct store_row *r, void *arg)
{
	struct revoke_op	*op = arg;

	op->found = 1;
	if (op->state == VS_TOKEN) {
		free(op->sid);
		op->sid = store_strdup(r, 0);
		return;
	}
	free(op->user_id);
	op->user_id = store_strdup(r, 0);
	op->fexp = (time_t)store_int(r, 1);
}

static void
revoke_keys_loaded(int status, void *arg)
{
	revoke_end(arg, 0);
}

static void
revoke_committed(int status, void *arg)
{
	struct revoke_op	*op = arg;

	if (status != STORE_OK) {
		revoke_end(op, -2);
		return;
	}
	tokens_revoked_add(op->sid, op->fexp);
	if (op->nkeys == 0) {
		revoke_end(op, 0);
		return;
	}
	/* The session's keys stop before the answer goes out. */
	apikeys_load(revoke_keys_loaded, op);
}

static void
revoke_step(struct store_txn *t, int status, void *arg)
{
	struct revoke_op	*op = arg;

	if (t == NULL || status != STORE_OK) {
		if (t != NULL)
			store_rollback(t);
		revoke_end(op, -2);
		return;
	}
	switch (op->state) {
	case VS_BEGIN:
		if (op->by_token) {
			op->state = VS_TOKEN;
			{
				struct store_param p[] = { SP_BLOB(op->hash,
				    sizeof op->hash) };

				store_exec(t, &st_rt_get, p, nitems(p),
				    revoke_row, revoke_step, op);
			}
			return;
		}
		/* FALLTHROUGH */
	case VS_TOKEN:
		if (op->state == VS_TOKEN && !op->found) {
			store_rollback(t);
			revoke_end(op, -1);
			return;
		}
		op->found = 0;
		op->state = VS_FAMILY;
		{
			struct store_param p[] = { SP_TEXT(op->sid) };

			store_exec(t, &st_fam_get, p, nitems(p), revoke_row,
			    revoke_step, op);
		}
		return;
	case VS_FAMILY:
		if (!op->found) {
			store_rollback(t);
			revoke_end(op, -1);
			return;
		}
		if (op->actor == NULL && op->user_id != NULL)
			op->actor = xstrdup(op->user_id);
		op->state = VS_REVOKE;
		refresh_revoke_family(t, op->sid, op->reason, op->actor,
		    op->client, &op->nkeys, revoke_step, op);
		return;
	case VS_REVOKE:
		op->state = VS_AUDIT;
		audit_event(t, op->event, op->user_id, op->actor, op->client,
		    json_pack("{s:s,s:i}", "session", op->sid, "keys",
		    op->nkeys), revoke_step, op);
		return;
	case VS_AUDIT:
		op->state = VS_COMMIT;
		store_notify(t, "families");
		store_commit(t, revoke_committed, op);
		return;
	default:
		store_rollback(t);
		revoke_end(op, -2);
		return;
	}
}

static struct revoke_op *
revoke_new(const char *reason, const char *event, const char *actor,
    const char *client, void (*cb)(int, void *), void *arg)
{
	struct revoke_op	*op;

	op = xcalloc(1, sizeof *op);
	op->reason = xstrdup(reason);
	op->event = xstrdup(event);
	op->actor = actor != NULL ? xstrdup(actor) : NULL;
	op->client = client != NULL ? xstrdup(client) : NULL;
	op->cb = cb;
	op->arg = arg;
	return (op);
}

/*
 * Revoke one session family: its refresh and access tokens, and the API
 * keys made with them, stop at once. cb(0, arg) done, cb(-1, arg) no such
 * session, cb(-2, arg) the database failed.
 */
void
tokens_revoke_family(const char *sid, const char *reason, const char *event,
    const char *actor, const char *client, void (*cb)(int, void *),
    void *arg)
{
	struct revoke_op	*op;

	op = revoke_new(reason, event, actor, client, cb, arg);
	op->sid = xstrdup(sid);
	store_begin(STORE_WRITE, revoke_step, op);
}

/*
 * Revoke the family a refresh token belongs to (logout, RFC 7009):
 * cb(0, arg), cb(-1, arg) not a token of ours, cb(-2, arg) the database
 * failed.
 */
void
tokens_revoke_refresh(const char *token, const char *event,
    const char *client, void (*cb)(int, void *), void *arg)
{
	struct revoke_op	*op;

	if (strncmp(token, REFRESH_PREFIX, 4) != 0) {
		cb(-1, arg);
		return;
	}
	op = revoke_new(event, event, NULL, client, cb, arg);
	op->by_token = 1;
	crypto_hash_token(token, op->hash);
	store_begin(STORE_WRITE, revoke_step, op);
}

/*
 * "user logout" and "user disable" (reason): every family of the user,
 * every token issued so far and, unless keep_keys, every API key of the
 * user, the administrator's too. cb(n, nkeys, arg): the number of
 * sessions ended and of keys revoked, or n -1 if it failed.
 */
enum ulogout_state {
	US_BEGIN,
	US_FAMILIES,
	US_USER,
	US_KEYS,
	US_AUDIT,
	US_COMMIT,
	US_LOAD_USERS,
	US_LOAD_FAMILIES,
	US_LOAD_KEYS,
};

struct ulogout_op {
	enum ulogout_state state;
	char		*user_id;
	char		*reason;
	char		*actor;
	char		*client;
	int		 keep_keys;
	time_t		 now;
	int		 n;
	int		 nkeys;
	void		(*cb)(int, int, void *);
	void		*arg;
};

static void	ulogout_step(struct store_txn *, int, void *);

static void
ulogout_end(struct ulogout_op *op, int ok)
{
	op->cb(ok ? op->n : -1, ok ? op->nkeys : 0, op->arg);
	free(op->user_id);
	free(op->reason);
	free(op->actor);
	free(op->client);
	free(op);
}

/* After the commit: what is held in memory, loaded again. */
static void
ulogout_loaded(int status, void *arg)
{
	struct ulogout_op	*op = arg;

	switch (op->state) {
	case US_COMMIT:
		op->state = US_LOAD_USERS;
		users_load_state(ulogout_loaded, op);
		return;
	case US_LOAD_USERS:
		op->state = US_LOAD_FAMILIES;
		tokens_revoked_load(ulogout_loaded, op);
		return;
	case US_LOAD_FAMILIES:
		op->state = US_LOAD_KEYS;
		apikeys_load(ulogout_loaded, op);
		return;
	default:
		ulogout_end(op, 1);
		return;
	}
}

static void
ulogout_committed(int status, void *arg)
{
	struct ulogout_op	*op = arg;

	if (status != STORE_OK) {
		ulogout_end(op, 0);
		return;
	}
	ulogout_loaded(STORE_OK, op);
}

static void
ulogout_step(struct store_txn *t, int status, void *arg)
{
	struct ulogout_op	*op = arg;

	if (t == NULL || status != STORE_OK) {
		if (t != NULL)
			store_rollback(t);
		ulogout_end(op, 0);
		return;
	}
	switch (op->state) {
	case US_BEGIN:
		op->state = US_FAMILIES;
		{
			struct store_param p[] = { SP_INT(op->now),
			    SP_TEXT(op->reason), SP_TEXT(op->user_id) };

			store_exec(t, &st_fam_revoke_user, p, nitems(p), NULL,
			    ulogout_step, op);
		}
		return;
	case US_FAMILIES:
		op->n = (int)store_changes(t);
		op->state = US_USER;
		user_set_revoked_before(t, op->user_id, op->now, ulogout_step,
		    op);
		return;
	case US_USER:
		if (store_changes(t) != 1) {
			store_rollback(t);
			ulogout_end(op, 0);
			return;
		}
		op->state = US_KEYS;
		if (!op->keep_keys) {
			apikeys_revoke_user(t, op->user_id, op->reason,
			    op->actor, op->client, &op->nkeys, ulogout_step,
			    op);
			return;
		}
		/* FALLTHROUGH */
	case US_KEYS:
		op->state = US_AUDIT;
		audit_event(t, "user_logout", op->user_id, op->actor,
		    op->client, json_pack("{s:s,s:i,s:i,s:b}", "reason",
		    op->reason, "sessions", op->n, "keys", op->nkeys,
		    "keep_keys", op->keep_keys), ulogout_step, op);
		return;
	case US_AUDIT:
		op->state = US_COMMIT;
		store_notify(t, "users");
		store_commit(t, ulogout_committed, op);
		return;
	default:
		store_rollback(t);
		ulogout_end(op, 0);
		return;
	}
}

void
tokens_revoke_user(const char *user_id, const char *reason, int keep_keys,
    const char *actor, const char *client, void (*cb)(int, int, void *),
    void *arg)
{
	struct ulogout_op	*op;

	op = xcalloc(1, sizeof *op);
	op->user_id = xstrdup(user_id);
	op->reason = xstrdup(reason);
	op->actor = actor != NULL ? xstrdup(actor) : NULL;
	op->client = client != NULL ? xstrdup(client) : NULL;
	op->keep_keys = keep_keys;
	op->now = now_wall();
	op->cb = cb;
	op->arg = arg;
	store_begin(STORE_WRITE, ulogout_step, op);
}
