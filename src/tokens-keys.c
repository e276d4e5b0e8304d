/*
 * tokens-keys.c: the keys our access tokens are signed with.
 *
 * Asymmetric keys are generated on first start (or read from jwt.key_file)
 * and kept in signing_keys with the private part sealed under a
 * key-encryption key (KEK): jwt.kek_file, or with SQLite by default a 0600
 * file beside the database, so a copied database alone does not leak them.
 * The database keeps the KEK's check value, so that a daemon given another
 * KEK refuses to start rather than make keys of its own. Every key that
 * may still verify an unexpired token stays in the JWKS until the last
 * token it signed has expired. With HS256 the one key is jwt.secret.
 *
 * Loading the keys is one unit of work (struct keys_op, keys_step()):
 * the KEK's check value, the active key for the configured algorithm (made
 * if there is none: at most one is active per algorithm, so of several
 * daemons starting at once on an empty database one makes it, and the
 * others' inserts conflict: they start again and use it), the other keys
 * retired, and those that still verify. A reload builds the new key state
 * first and puts it in place only when every module is ready; "signing-key
 * rotate" makes a new active key.
 */

#include <sys/types.h>
#include <sys/stat.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bsp.h"
#include "crypto.h"
#include "jose.h"
#include "store.h"
#include "tokens.h"

#define KEYS_TRIES	3	/* units started again after a conflict */

struct keystate {
	struct jose_keyset	*verify;	/* owns every key */
	const struct crypto_key	*active;	/* signs; in verify */
	char			*kms_key_id;	/* active's private half */
	struct crypto_key	*legacy;
	json_t			*jwks;
};

enum keys_mode {
	KM_LOAD,	/* at start, or another writer wrote */
	KM_PREPARE,	/* a reload's new configuration */
	KM_ROTATE,	/* "signing-key rotate" */
};

enum keys_step {
	KS_START,
	KS_BEGUN,
	KS_SEALED,	/* no KEK file: does the database need one? */
	KS_KEK_READ,	/* the KEK's check value */
	KS_KEK_WRITE,
	KS_ACTIVE,	/* the active key for the algorithm */
	KS_OTHERS,	/* are other keys active? */
	KS_FAM_LAST,	/* until when retired keys must verify */
	KS_RETIRE,
	KS_INSERT,
	KS_UNRETIRE,	/* jwt.key_file's key, active again */
	KS_AUDIT,
	KS_VERIFY,	/* the keys that still verify */
	KS_COMMIT,
	KS_DONE,
};
static const char *const keys_step_names[] = {
	"START", "BEGUN", "SEALED", "KEK_READ", "KEK_WRITE", "ACTIVE",
	"OTHERS", "FAM_LAST", "RETIRE", "INSERT", "UNRETIRE", "AUDIT",
	"VERIFY", "COMMIT", "DONE"
};

struct keys_op {
	enum keys_mode		 mode;
	enum keys_step		 step;
	struct config		*c;		/* a reference */
	int			 may_generate;
	struct store_txn	*txn;
	struct keystate		 ks;		/* being built */
	struct crypto_key	*key;		/* the active one, until in ks */
	int			 make;		/* key is new: insert it */
	int			 from_file;	/* key is jwt.key_file's */
	uint8_t			*sealed;	/* a new key's private half */
	size_t			 slen;
	char			*stale;		/* an active key we cannot use */
	int			 created;	/* the new key went in */
	int			 kek_rows;	/* KS_SEALED: check values */
	int			 kek_bad;	/* another KEK's check value */
	int			 kek_tries;
	int			 rows;
	long long		 others;
	time_t			 until;
	int			 have_until;
	int			 retired;
	int			 notify;
	int			 tries;
	int			 status;
	char			*cause;
	int			 fatal;		/* no retry will help */
	void			(*done)(int, const char *, void *);
	void			*arg;
	/* "signing-key rotate": its caller */
	void			(*rot_done)(int, const char *, void *);
	void			*rot_arg;
};

/* A caller of tokens_reload_wait(). */
struct keys_waiter {
	store_end_cb		 cb;
	void			*arg;
	struct keys_waiter	*next;
};

static struct {
	struct keystate		 ks;
	struct keystate		 next;		/* prepared by a reload */
	int			 has_next;
	struct keys_op		*pending;	/* a prepare still loading */
	int			 pending_commit;
	int			 prepare_sync;	/* within tokens_reload_prepare */
	int			 prep_status;
	char			*prep_cause;
	int			 loaded;
	int			 kek_checked;
	char			*error;		/* the last load's failure */
	int			 restarts;	/* units lost to a conflict */
	struct store_load	 loader;
	void			(*fatal)(const char *);
	struct keys_waiter	*waiters;	/* for the pending prepare */
} keys;

static struct store_stmt st_sealed = STORE_STMT("SELECT (SELECT kid FROM "
    "signing_keys WHERE retired IS NULL AND private_sealed IS NOT NULL "
    "LIMIT 1), (SELECT count(*) FROM kek_check)");
static struct store_stmt st_kek_read = STORE_STMT("SELECT mac FROM kek_check "
    "WHERE id = 1");
static struct store_stmt st_kek_write = STORE_STMT("INSERT INTO kek_check "
    "(id, mac, created) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING");
static struct store_stmt st_key_active = STORE_STMT("SELECT kid, "
    "private_sealed FROM signing_keys WHERE retired IS NULL AND alg = $1 "
    "ORDER BY created DESC, kid LIMIT 1");
static struct store_stmt st_key_others = STORE_STMT("SELECT count(*) FROM "
    "signing_keys WHERE retired IS NULL AND kid != $1");
static struct store_stmt st_fam_last = STORE_STMT("SELECT max(expires) FROM "
    "token_families f WHERE revoked = 0 AND NOT EXISTS (SELECT 1 FROM "
    "refresh_tokens r WHERE r.family_id = f.id)");
static struct store_stmt st_key_retire = STORE_STMT("UPDATE signing_keys SET "
    "retired = $1, verify_until = $2 WHERE retired IS NULL AND kid != $3");
static struct store_stmt st_key_insert = STORE_STMT("INSERT INTO "
    "signing_keys (kid, alg, created, public_jwk, private_sealed) VALUES ($1, "
    "$2, $3, $4, $5) ON CONFLICT (kid) DO NOTHING");
static struct store_stmt st_key_unretire = STORE_STMT("UPDATE signing_keys "
    "SET retired = NULL, verify_until = NULL WHERE kid = $1");
static struct store_stmt st_key_verify = STORE_STMT("SELECT kid, alg, "
    "public_jwk FROM signing_keys WHERE retired IS NULL OR verify_until > $1");
static struct store_stmt st_key_purge = STORE_STMT("DELETE FROM signing_keys "
    "WHERE retired IS NOT NULL AND verify_until < $1");

static enum crypto_alg keys_alg(int);
static void	 keys_state_free(struct keystate *);
static char	*keys_kek_path(const struct config *);
static void	 keys_step(struct store_txn *, int, void *);
static void	 keys_committed(int, void *);
static void	 keys_load_run(struct store_load *);
static struct crypto_key *keys_from_kms(const struct config *, char **);
static void	 keys_wake(int, int);

/* The algorithm of jwt.algorithm. */
static enum crypto_alg
keys_alg(int a)
{
	switch (a) {
	case JWT_ALG_EDDSA:
		return (CRYPTO_ALG_EDDSA);
	case JWT_ALG_ES256:
		return (CRYPTO_ALG_ES256);
	case JWT_ALG_RS256:
		return (CRYPTO_ALG_RS256);
	case JWT_ALG_PS256:
		return (CRYPTO_ALG_PS256);
	default:
		return (CRYPTO_ALG_HS256);
	}
}

/* The algorithm of jwt.legacy.algorithm. */
enum crypto_alg
tokens_keys_legacy_alg(int a)
{
	switch (a) {
	case 1:
		return (CRYPTO_ALG_HS384);
	case 2:
		return (CRYPTO_ALG_HS512);
	default:
		return (CRYPTO_ALG_HS256);
	}
}

static void
keys_state_free(struct keystate *ks)
{
	jose_keyset_free(ks->verify);
	free(ks->kms_key_id);
	crypto_key_free(ks->legacy);
	json_decref(ks->jwks);
	memset(ks, 0, sizeof *ks);
}

/* jwt.kek_file, or the file beside an SQLite database. */
static char *
keys_kek_path(const struct config *c)
{
	char	*p;

	if (c->jwt_kek_file != NULL)
		return (xstrdup(c->jwt_kek_file));
	xasprintf(&p, "%s.kek", c->db_path != NULL ? c->db_path : "proxy.db");
	return (p);
}

static struct crypto_key *
keys_from_file(const struct config *c, char **cause)
{
	struct crypto_err	 err;
	struct crypto_key	*k;
	char			*pem, *why, kid[44];

	if (config_read_secret_file(c->jwt_key_file, &pem, &why) == -1) {
		xasprintf(cause, "jwt.key_file: %s", why);
		free(why);
		return (NULL);
	}
	k = crypto_key_from_pem(keys_alg(c->jwt_algorithm), pem,
	    strlen(pem), &err);
	freezero_str(pem);
	if (k == NULL) {
		xasprintf(cause, "jwt.key_file %s: %s", c->jwt_key_file,
		    err.msg);
		return (NULL);
	}
	if (jose_jwk_thumbprint(k, kid) == -1 ||
	    crypto_key_set_kid(k, kid) == -1)
		fatalx("cannot name the signing key");
	return (k);
}

/*
 * The public half of jwt.kms_key_id (read by kms_fetch() before this
 * configuration was loaded), named by its thumbprint. Its algorithm is
 * the key's: ES256 for a P-256 key, RS256 for RSA, PS256 if jwt.algorithm
 * says so; any other jwt.algorithm set must match it.
 */
static struct crypto_key *
keys_from_kms(const struct config *c, char **cause)
{
	struct crypto_key	*k;
	const char		*arn = NULL;
	char			 kid[44];
	enum crypto_alg		 want = keys_alg(c->jwt_algorithm);

	if ((k = kms_public(c->jwt_kms_key_id, c->jwt_algorithm ==
	    JWT_ALG_PS256, &arn, cause)) == NULL)
		return (NULL);
	if (config_where(c, "jwt.algorithm") != NULL &&
	    crypto_key_alg(k) != want) {
		xasprintf(cause, "jwt.algorithm is %s but KMS key %s signs "
		    "%s", crypto_alg_name(want), arn, crypto_alg_name(
		    crypto_key_alg(k)));
		crypto_key_free(k);
		return (NULL);
	}
	if (jose_jwk_thumbprint(k, kid) == -1 ||
	    crypto_key_set_kid(k, kid) == -1)
		fatalx("cannot name the signing key");
	return (k);
}

/* A new key for alg, named by its thumbprint, its private half sealed. */
static struct crypto_key *
keys_generate(enum crypto_alg alg, uint8_t **sealed, size_t *slen,
    char **cause)
{
	struct crypto_err	 err;
	struct crypto_key	*k;
	char			 kid[44];

	if ((k = crypto_key_generate(alg, alg == CRYPTO_ALG_RS256 ? 2048 : 0,
	    &err)) == NULL) {
		xasprintf(cause, "cannot generate a signing key: %s", err.msg);
		return (NULL);
	}
	if (jose_jwk_thumbprint(k, kid) == -1 ||
	    crypto_key_set_kid(k, kid) == -1)
		fatalx("cannot name the signing key");
	if (crypto_key_seal(k, sealed, slen, &err) == -1) {
		crypto_key_free(k);
		xasprintf(cause, "cannot seal the signing key: %s", err.msg);
		return (NULL);
	}
	return (k);
}

/*
 * What can be done before the database: the legacy key, HS256's key,
 * jwt.key_file's key. -1 with op->cause.
 */
static int
keys_local(struct keys_op *op)
{
	const struct config	*c = op->c;
	struct crypto_err	 err;
	struct crypto_key	*active;
	char			 kid[80], b[64];

	op->ks.verify = jose_keyset_new();
	if (c->jwt_legacy_secret != NULL) {
		op->ks.legacy = crypto_key_from_secret(tokens_keys_legacy_alg(
		    c->jwt_legacy_algorithm), c->jwt_legacy_secret,
		    strlen(c->jwt_legacy_secret), &err);
		if (op->ks.legacy == NULL) {
			xasprintf(&op->cause, "jwt.legacy.secret: %s", err.msg);
			return (-1);
		}
	}
	if (c->jwt_algorithm == JWT_ALG_HS256) {
		active = crypto_key_from_secret(CRYPTO_ALG_HS256, c->jwt_secret,
		    strlen(c->jwt_secret), &err);
		if (active == NULL) {
			xasprintf(&op->cause, "jwt.secret: %s", err.msg);
			return (-1);
		}
		crypto_secret_id(c->jwt_secret, "bsp-kid", 12, b, sizeof b);
		snprintf(kid, sizeof kid, "hs-%s", b);
		crypto_key_set_kid(active, kid);
		jose_keyset_add(op->ks.verify, active);
		op->ks.active = active;
		op->ks.jwks = json_pack("{s:[]}", "keys");
		return (0);
	}
	if (c->jwt_key_file != NULL) {
		if ((op->key = keys_from_file(c, &op->cause)) == NULL)
			return (-1);
		op->from_file = 1;
		op->make = 1;
	}
	if (c->jwt_kms_key_id != NULL) {
		/* Like a key file's: its row holds no private half. */
		if ((op->key = keys_from_kms(c, &op->cause)) == NULL)
			return (-1);
		op->ks.kms_key_id = xstrdup(c->jwt_kms_key_id);
		op->from_file = 1;
		op->make = 1;
	}
	return (0);
}

/*
 * The KEK, loaded from its file; -1 with op->cause. A missing file is
 * made only where it is ours to make (beside an SQLite database), and only
 * once the database has shown that it needs no other (KS_SEALED).
 */
static int
keys_kek_load(struct keys_op *op)
{
	struct crypto_err	 err;
	char			*path = keys_kek_path(op->c);
	int			 rc = 0;

	if (crypto_kek_load(path, &err) == -1) {
		xasprintf(&op->cause, "key-encryption key %s: %s", path,
		    err.msg);
		op->fatal = 1;
		rc = -1;
	}
	free(path);
	return (rc);
}

/* Is the KEK's file missing (and ours to make)? */
static int
keys_kek_missing(const struct config *c)
{
	struct stat	 sb;
	char		*path = keys_kek_path(c);
	int		 missing;

	missing = stat(path, &sb) == -1 && errno == ENOENT;
	free(path);
	return (missing);
}

static void
keys_enter(struct keys_op *op, enum keys_step s)
{
	if (op->step != s)
		log_trace(TRACE_DB, "signing keys: %s -> %s",
		    keys_step_names[op->step], keys_step_names[s]);
	op->step = s;
}

static void
keys_op_free(struct keys_op *op)
{
	keys_state_free(&op->ks);
	crypto_key_free(op->key);
	free(op->sealed);
	free(op->stale);
	free(op->cause);
	config_unref(op->c);
	free(op);
}

/* The unit is over, committed or not: tell whoever asked (who frees op). */
static void
keys_finish(struct keys_op *op, int status)
{
	op->status = status;
	keys_enter(op, KS_DONE);
	if (status != STORE_OK && op->cause == NULL)
		xasprintf(&op->cause, "signing keys: the database failed");
	op->done(status, op->cause, op->arg);
}

/* Something failed in the unit: roll it back, and finish. */
static void
keys_fail(struct keys_op *op, struct store_txn *t, int status)
{
	if (t != NULL)
		store_rollback(t);
	keys_finish(op, status != STORE_OK ? status : STORE_ERROR);
}

/* Start the unit again (another daemon's key won a race). */
static void
keys_restart(struct keys_op *op, struct store_txn *t)
{
	store_rollback(t);
	keys.restarts++;
	if (++op->tries >= KEYS_TRIES) {
		xasprintf(&op->cause, "signing keys: another daemon keeps "
		    "changing them");
		keys_finish(op, STORE_CONFLICT);
		return;
	}
	log_info("signing keys: another daemon changed them meanwhile; "
	    "reading them again");
	if (!op->from_file && op->mode != KM_ROTATE) {
		crypto_key_free(op->key);
		op->key = NULL;
		free(op->sealed);
		op->sealed = NULL;
	}
	op->make = op->from_file || op->mode == KM_ROTATE;
	op->notify = 0;
	free(op->stale);
	op->stale = NULL;
	op->retired = 0;
	op->have_until = 0;
	keys_enter(op, KS_START);
	store_begin(STORE_WRITE, keys_step, op);
}

static void
keys_row(const struct store_row *r, void *arg)
{
	struct keys_op		*op = arg;
	struct crypto_err	 err;
	const uint8_t		*b;
	const char		*kid, *s;
	struct crypto_key	*k;
	enum crypto_alg		 allow[2];
	uint8_t			 mine[CRYPTO_HASH_LEN];
	size_t			 len;
	json_t			*jwk;

	op->rows++;
	switch (op->step) {
	case KS_SEALED:
		if ((kid = store_text(r, 0)) != NULL)
			op->stale = xstrdup(kid);
		op->kek_rows = (int)store_int(r, 1);
		break;
	case KS_KEK_READ:
		b = store_blob(r, 0, &len);
		if (crypto_kek_check(mine) == -1 || b == NULL ||
		    len != sizeof mine || !crypto_memeq(b, mine, sizeof mine))
			op->kek_bad = 1;
		break;
	case KS_ACTIVE:
		kid = store_text(r, 0);
		b = store_blob(r, 1, &len);
		if (kid == NULL)
			break;
		if (b == NULL || store_null(r, 1)) {
			/* jwt.key_file's, no longer configured. */
			op->stale = xstrdup(kid);
			break;
		}
		if ((op->key = crypto_key_unseal(b, len, &err)) == NULL) {
			xasprintf(&op->cause, "cannot open signing key %s: %s "
			    "(is this the key-encryption key the database was "
			    "made with?)", kid, err.msg);
			op->fatal = 1;
			break;
		}
		crypto_key_set_kid(op->key, kid);
		break;
	case KS_OTHERS:
		op->others = store_int(r, 0);
		break;
	case KS_FAM_LAST:
		if (!store_null(r, 0) && (time_t)store_int(r, 0) > op->until)
			op->until = (time_t)store_int(r, 0);
		break;
	case KS_VERIFY:
		/* The other keys that still verify: retired ones. */
		kid = store_text(r, 0);
		if (kid == NULL || strcmp(kid, crypto_key_kid(op->ks.active)) ==
		    0)
			break;
		allow[0] = crypto_alg_from_name(store_text(r, 1));
		allow[1] = CRYPTO_ALG_NONE;
		s = store_text(r, 2);
		if (s == NULL || allow[0] == CRYPTO_ALG_NONE ||
		    (jwk = json_loads(s, 0, NULL)) == NULL)
			break;
		k = jose_jwk_parse(jwk, allow, &err);
		json_decref(jwk);
		if (k == NULL) {
			log_warnx("signing keys: stored key %s unusable: %s",
			    kid, err.msg);
			break;
		}
		crypto_key_set_kid(k, kid);
		jose_keyset_add(op->ks.verify, k);
		break;
	default:
		break;
	}
}

/* Run a statement of the unit; its answer comes back to keys_step. */
static void
keys_exec(struct keys_op *op, struct store_txn *t, enum keys_step s,
    struct store_stmt *st, const struct store_param *p, size_t n)
{
	keys_enter(op, s);
	op->rows = 0;
	store_exec(t, st, p, n, keys_row, keys_step, op);
}

/* Retire the active keys but kid (NULL: all), from when to op->until. */
static void
keys_retire(struct keys_op *op, struct store_txn *t, const char *kid)
{
	struct store_param	p[] = { SP_INT(now_wall()),
				    SP_INT(op->until + TOKEN_LEEWAY),
				    SP_TEXT(kid != NULL ? kid : "") };

	keys_exec(op, t, KS_RETIRE, &st_key_retire, p, nitems(p));
}

/*
 * What comes after the active key is settled: the others retired (which
 * needs op->until first), then the keys that verify.
 */
static void
keys_after_active(struct keys_op *op, struct store_txn *t)
{
	struct store_param	p[] = { SP_TEXT(crypto_key_kid(op->key)) };

	keys_exec(op, t, KS_OTHERS, &st_key_others, p, nitems(p));
}

/*
 * Retired keys keep verifying the tokens they signed: those of login
 * sessions for jwt.access_token_ttl, those of "token mint" (a session
 * without refresh tokens, ending when its token does, whose --ttl may be
 * longer) until the last of them expires.
 */
static void
keys_fam_last(struct keys_op *op, struct store_txn *t)
{
	op->until = now_wall() + (time_t)op->c->jwt_access_ttl;
	keys_exec(op, t, KS_FAM_LAST, &st_fam_last, NULL, 0);
}

static void
keys_insert(struct keys_op *op, struct store_txn *t)
{
	json_t	*jwk = jose_jwk_public(op->key);
	char	*s = json_dumps(jwk, JSON_COMPACT | JSON_SORT_KEYS);

	json_decref(jwk);
	{
		struct store_param	p[] = {
			SP_TEXT(crypto_key_kid(op->key)),
			SP_TEXT(crypto_alg_name(crypto_key_alg(op->key))),
			SP_INT(now_wall()), SP_TEXT(s),
			SP_BLOB(op->sealed, op->slen),
		};

		keys_exec(op, t, KS_INSERT, &st_key_insert, p, nitems(p));
	}
	free(s);
}

static void
keys_verify(struct keys_op *op, struct store_txn *t)
{
	struct store_param	p[] = { SP_INT(now_wall()) };

	jose_keyset_add(op->ks.verify, op->key);
	op->ks.active = op->key;
	op->key = NULL;
	keys_exec(op, t, KS_VERIFY, &st_key_verify, p, nitems(p));
}

/* The KEK's check value is right, or was just stored: the keys. */
static void
keys_after_kek(struct keys_op *op, struct store_txn *t)
{
	keys.kek_checked = 1;
	if (op->c->jwt_algorithm == JWT_ALG_HS256) {
		keys_enter(op, KS_COMMIT);
		store_commit(t, keys_committed, op);
		return;
	}
	if (op->mode == KM_ROTATE || op->from_file) {
		/* One active key per algorithm: the others go first. */
		keys_fam_last(op, t);
		return;
	}
	{
		struct store_param	p[] = { SP_TEXT(crypto_alg_name(
					    keys_alg(op->c->jwt_algorithm))) };

		keys_exec(op, t, KS_ACTIVE, &st_key_active, p, nitems(p));
	}
}

/* The one step function of the unit: each answer, and what comes next. */
static void
keys_step(struct store_txn *t, int status, void *arg)
{
	struct keys_op	*op = arg;
	uint8_t		 mac[CRYPTO_HASH_LEN];
	char		*path;

	if (t == NULL || status != STORE_OK) {
		if (status == STORE_CONFLICT && t != NULL &&
		    (op->step == KS_INSERT || op->step == KS_UNRETIRE)) {
			keys_restart(op, t);
			return;
		}
		keys_fail(op, t, status);
		return;
	}
	switch (op->step) {
	case KS_START:
		op->txn = t;
		keys_enter(op, KS_BEGUN);
		if (keys.kek_checked && crypto_kek_loaded()) {
			keys_after_kek(op, t);
			return;
		}
		if (!crypto_kek_loaded() && keys_kek_missing(op->c)) {
			if (op->c->jwt_kek_file != NULL) {
				xasprintf(&op->cause, "jwt.kek_file %s does "
				    "not exist", op->c->jwt_kek_file);
				op->fatal = 1;
				keys_fail(op, t, STORE_ERROR);
				return;
			}
			keys_exec(op, t, KS_SEALED, &st_sealed, NULL, 0);
			return;
		}
		if (!crypto_kek_loaded() && keys_kek_load(op) == -1) {
			keys_fail(op, t, STORE_ERROR);
			return;
		}
		keys_exec(op, t, KS_KEK_READ, &st_kek_read, NULL, 0);
		return;
	case KS_SEALED:
		/*
		 * A missing KEK beside a database that holds keys sealed
		 * under one (or its check value) means the database was
		 * copied or restored without it: say so, rather than make a
		 * new KEK that cannot open them.
		 */
		if (op->stale != NULL || op->kek_rows > 0) {
			path = keys_kek_path(op->c);
			if (op->stale != NULL)
				xasprintf(&op->cause, "key-encryption key %s "
				    "is missing, but the database holds "
				    "signing key %s sealed under it: restore "
				    "the file from where the database came "
				    "from (a copied database alone cannot "
				    "sign)", path, op->stale);
			else
				xasprintf(&op->cause, "key-encryption key %s "
				    "is missing, but the database was made "
				    "with one: restore the file from where the "
				    "database came from", path);
			free(path);
			op->fatal = 1;
			keys_fail(op, t, STORE_ERROR);
			return;
		}
		if (keys_kek_load(op) == -1) {
			keys_fail(op, t, STORE_ERROR);
			return;
		}
		keys_exec(op, t, KS_KEK_READ, &st_kek_read, NULL, 0);
		return;
	case KS_KEK_READ:
		if (op->kek_bad) {
			path = keys_kek_path(op->c);
			xasprintf(&op->cause, "wrong KEK: the key-encryption "
			    "key in %s is not the one this database was made "
			    "with (its check value differs); every daemon "
			    "sharing the database needs the same one, "
			    "jwt.kek_file", path);
			free(path);
			op->fatal = 1;
			keys_fail(op, t, STORE_ERROR);
			return;
		}
		if (op->rows > 0) {
			keys_after_kek(op, t);
			return;
		}
		if (op->kek_tries++ > 0 || crypto_kek_check(mac) == -1) {
			keys_fail(op, t, STORE_ERROR);
			return;
		}
		{
			struct store_param p[] = { SP_BLOB(mac, sizeof mac),
				SP_INT(now_wall()) };

			keys_exec(op, t, KS_KEK_WRITE, &st_kek_write, p,
			    nitems(p));
		}
		return;
	case KS_KEK_WRITE:
		/* Ours, or another daemon's that won: read it back. */
		keys_exec(op, t, KS_KEK_READ, &st_kek_read, NULL, 0);
		return;
	case KS_ACTIVE:
		if (op->fatal) {
			keys_fail(op, t, STORE_ERROR);
			return;
		}
		if (op->key != NULL) {
			keys_after_active(op, t);
			return;
		}
		if (!op->may_generate) {
			xasprintf(&op->cause, "no active signing key");
			keys_fail(op, t, STORE_ERROR);
			return;
		}
		op->key = keys_generate(keys_alg(op->c->jwt_algorithm),
		    &op->sealed, &op->slen, &op->cause);
		if (op->key == NULL) {
			op->fatal = 1;
			keys_fail(op, t, STORE_ERROR);
			return;
		}
		op->make = 1;
		op->notify = 1;
		if (op->stale != NULL) {
			/* The old key file's key retires first. */
			keys_fam_last(op, t);
			return;
		}
		keys_insert(op, t);
		return;
	case KS_OTHERS:
		if (op->others == 0) {
			keys_verify(op, t);
			return;
		}
		keys_fam_last(op, t);
		return;
	case KS_FAM_LAST:
		op->have_until = 1;
		keys_retire(op, t, crypto_key_kid(op->key));
		return;
	case KS_RETIRE:
		if (store_changes(t) > 0) {
			log_info("signing keys: retired %lld previous key(s); "
			    "they verify until their last token expires",
			    store_changes(t));
			op->retired = 1;
			op->notify = 1;
		}
		if (op->make) {
			keys_insert(op, t);
			return;
		}
		keys_verify(op, t);
		return;
	case KS_INSERT:
		op->make = 0;
		op->created = 1;
		if (op->from_file) {
			struct store_param p[] = {
				SP_TEXT(crypto_key_kid(op->key)) };

			keys_exec(op, t, KS_UNRETIRE, &st_key_unretire, p,
			    nitems(p));
			return;
		}
		if (op->mode == KM_ROTATE) {
			keys_enter(op, KS_AUDIT);
			audit_event(t, "signing_key_rotated", NULL, "cli",
			    NULL, json_pack("{s:s,s:s}", "kid",
			    crypto_key_kid(op->key), "alg", crypto_alg_name(
			    crypto_key_alg(op->key))), keys_step, op);
			return;
		}
		keys_after_active(op, t);
		return;
	case KS_UNRETIRE:
		if (store_changes(t) > 0)
			op->notify = 1;
		keys_after_active(op, t);
		return;
	case KS_AUDIT:
		op->notify = 1;
		keys_verify(op, t);
		return;
	case KS_VERIFY:
		op->ks.jwks = jose_keyset_jwks(op->ks.verify);
		keys_enter(op, KS_COMMIT);
		if (op->notify)
			store_notify(t, "signing_keys");
		store_commit(t, keys_committed, op);
		return;
	default:
		keys_fail(op, t, STORE_ERROR);
		return;
	}
}

static void
keys_committed(int status, void *arg)
{
	struct keys_op	*op = arg;

	if (status == STORE_OK && op->created && !op->from_file &&
	    op->ks.active != NULL && op->mode != KM_ROTATE)
		log_info("signing keys: generated %s key %s",
		    crypto_alg_name(crypto_key_alg(op->ks.active)),
		    crypto_key_kid(op->ks.active));
	keys_finish(op, status);
}

/* A unit for configuration c; done(status, cause, op) when it is over. */
static void
keys_op_start(enum keys_mode mode, struct config *c, int may_generate,
    void (*done)(int, const char *, void *))
{
	struct keys_op	*op;

	op = xcalloc(1, sizeof *op);
	op->mode = mode;
	op->c = config_ref(c);
	op->may_generate = may_generate;
	op->done = done;
	op->arg = op;
	if (keys_local(op) == -1) {
		/*
		 * Without them at start the daemon cannot sign. At a later
		 * load (another writer wrote) the keys in use stay: a key
		 * file being replaced before a SIGHUP may be empty or half
		 * written for a moment, and the next load tries again.
		 */
		op->fatal = !keys.loaded;
		keys_finish(op, STORE_ERROR);
		return;
	}
	if (c->jwt_algorithm == JWT_ALG_HS256 && keys.kek_checked &&
	    crypto_kek_loaded()) {
		/* Nothing of it is in the database. */
		keys_finish(op, STORE_OK);
		return;
	}
	store_begin(STORE_WRITE, keys_step, op);
}

/* A load (KM_LOAD) is over: its state in place, or kept out. */
static void
keys_loaded(int status, const char *cause, void *arg)
{
	struct keys_op	*op = arg;

	free(keys.error);
	keys.error = NULL;
	if (status == STORE_OK && op->c == cfg) {
		keys_state_free(&keys.ks);
		keys.ks = op->ks;
		memset(&op->ks, 0, sizeof op->ks);
		keys.loaded = 1;
	} else if (status != STORE_OK) {
		keys.error = xstrdup(cause);
		/* Before the first load, whoever started it says why. */
		if (keys.loaded)
			log_warnx("cannot load the signing keys: %s", cause);
		if (op->fatal && keys.fatal != NULL)
			keys.fatal(cause);
	}
	keys_op_free(op);
	store_load_done(&keys.loader, status);
}

static void
keys_load_run(struct store_load *l)
{
	/* Until they are loaded once, a missing key may be made. */
	keys_op_start(KM_LOAD, cfg, !keys.loaded, keys_loaded);
}

/*
 * Load the key state for the configuration in use (at start, and when
 * another writer wrote); done(status, arg) if given. A failure no retry
 * will mend (the KEK) is also told to the hook of tokens_keys_on_fatal().
 */
void
tokens_keys_load(store_end_cb done, void *arg)
{
	keys.loader.run = keys_load_run;
	store_load(&keys.loader, done, arg);
}

void
tokens_keys_on_fatal(void (*fn)(const char *))
{
	keys.fatal = fn;
}

/* How many units started again after a conflict (another daemon's key). */
int
tokens_keys_restarts(void)
{
	return (keys.restarts);
}

/* Why the last load failed, or NULL. */
const char *
tokens_keys_error(void)
{
	return (keys.error);
}

/* Another process may have made a new key ("signing-key rotate"). */
void
tokens_keys_sync(void)
{
	tokens_keys_load(NULL, NULL);
}

int
tokens_keys_loaded(void)
{
	return (keys.loaded);
}

/* Housekeeping: retired keys no token needs any more. */
void
tokens_keys_purge(time_t now, store_end_cb done, void *arg)
{
	struct store_param	p[] = { SP_INT(now) };

	store_run(STORE_WRITE, &st_key_purge, p, nitems(p), NULL, done, arg);
}

void
tokens_keys_free(void)
{
	keys_wake(STORE_ERROR, 0);
	tokens_reload_abort();
	keys_state_free(&keys.ks);
	keys.loaded = 0;
	keys.kek_checked = 0;
	free(keys.error);
	keys.error = NULL;
	crypto_kek_unload();
	kms_free();
}

/* The key that signs new tokens, if any. */
const struct crypto_key *
tokens_keys_signer(void)
{
	return (keys.ks.active);
}

/* The KMS key that holds the signer's private half, or NULL (here). */
const char *
tokens_keys_kms(void)
{
	return (keys.ks.kms_key_id);
}

/* The key of ours with this kid and algorithm, if any. */
const struct crypto_key *
tokens_keys_find(const char *kid, enum crypto_alg alg)
{
	return (jose_keyset_find(keys.ks.verify, kid, alg));
}

/* The jwt.legacy key, if configured. */
const struct crypto_key *
tokens_keys_legacy(void)
{
	return (keys.ks.legacy);
}

/* Tell those waiting for the pending prepare (call 0: drop them). */
static void
keys_wake(int status, int call)
{
	struct keys_waiter	*w, *next;

	w = keys.waiters;
	keys.waiters = NULL;
	for (; w != NULL; w = next) {
		next = w->next;
		if (call)
			w->cb(status, w->arg);
		free(w);
	}
}

/*
 * A reload's key state is in: with SQLite before tokens_reload_prepare()
 * returns; with PostgreSQL maybe after the commit (then it goes in place
 * at once) or the abort (then it is dropped).
 */
static void
keys_prepared(int status, const char *cause, void *arg)
{
	struct keys_op	*op = arg;

	if (keys.pending != op) {
		/* Aborted: nobody wants it now (waiters wait for the next). */
		keys_op_free(op);
		return;
	}
	keys.pending = NULL;
	if (keys.prepare_sync) {
		keys.prep_status = status;
		if (status != STORE_OK)
			keys.prep_cause = xstrdup(cause);
		else {
			keys.next = op->ks;
			memset(&op->ks, 0, sizeof op->ks);
			keys.has_next = 1;
		}
	} else if (status != STORE_OK)
		log_warnx("signing keys for the new configuration: %s", cause);
	else if (keys.pending_commit) {
		keys_state_free(&keys.ks);
		keys.ks = op->ks;
		memset(&op->ks, 0, sizeof op->ks);
		keys.loaded = 1;
	}
	keys.pending_commit = 0;
	keys_op_free(op);
	keys_wake(status, 1);
}

/*
 * On SIGHUP, in two steps so a later module's failure leaves nothing
 * changed: build the new key state, then (commit) put it in place. The
 * one lasting effect of a prepare is in the database: a key for a newly
 * configured algorithm is made and becomes the active one there.
 */
int
tokens_reload_prepare(struct config *c, char **cause)
{
	struct keys_op	*op;

	tokens_reload_abort();
	op = xcalloc(1, sizeof *op);
	op->mode = KM_PREPARE;
	op->c = config_ref(c);
	op->may_generate = 1;
	op->done = keys_prepared;
	op->arg = op;
	if (keys_local(op) == -1) {
		*cause = op->cause;
		op->cause = NULL;
		keys_op_free(op);
		return (-1);
	}
	keys.pending = op;
	keys.prepare_sync = 1;
	keys.prep_status = STORE_OK;
	store_begin(STORE_WRITE, keys_step, op);
	keys.prepare_sync = 0;
	if (keys.pending != NULL)
		return (0);	/* still loading (PostgreSQL) */
	if (keys.prep_status != STORE_OK) {
		*cause = keys.prep_cause;
		keys.prep_cause = NULL;
		return (-1);
	}
	return (0);
}

/* Is a reload's key state still loading (PostgreSQL)? */
int
tokens_reload_pending(void)
{
	return (keys.pending != NULL);
}

/*
 * After a commit: cb(status, arg) once the reload's key state is in place
 * (with SQLite, or when it already is, before this returns), status not
 * STORE_OK if it could not be made (logged; the old keys stay).
 */
void
tokens_reload_wait(store_end_cb cb, void *arg)
{
	struct keys_waiter	*w, **end;

	if (keys.pending == NULL) {
		cb(STORE_OK, arg);
		return;
	}
	w = xcalloc(1, sizeof *w);
	w->cb = cb;
	w->arg = arg;
	for (end = &keys.waiters; *end != NULL; end = &(*end)->next)
		;
	*end = w;
}

void
tokens_reload_commit(struct config *c)
{
	if (keys.pending != NULL)
		keys.pending_commit = 1;
	if (!keys.has_next)
		return;
	keys_state_free(&keys.ks);
	keys.ks = keys.next;
	memset(&keys.next, 0, sizeof keys.next);
	keys.has_next = 0;
}

void
tokens_reload_abort(void)
{
	if (keys.has_next)
		keys_state_free(&keys.next);
	keys.has_next = 0;
	/* A prepare still loading is dropped when it is in. */
	keys.pending = NULL;
	keys.pending_commit = 0;
	/* An earlier reload waiting for it is done: its keys were not made. */
	keys_wake(STORE_ERROR, 1);
}

/*
 * Can jwt.kms_key_id's public key (read by kms_fetch()) sign for this
 * configuration? -1 with a cause naming the key if not.
 */
int
tokens_kms_check(const struct config *c, char **cause)
{
	struct crypto_key	*k;

	if (c->jwt_kms_key_id == NULL)
		return (0);
	if ((k = keys_from_kms(c, cause)) == NULL)
		return (-1);
	crypto_key_free(k);
	return (0);
}

/* For -n: can the configured key file be used? Says where it was set. */
int
tokens_check(struct config *c, char **cause)
{
	struct crypto_key	*k;
	const char		*where;
	char			*why = NULL;

	if (c->jwt_key_file == NULL)
		return (0);
	if ((k = keys_from_file(c, &why)) == NULL) {
		if ((where = config_where(c, "jwt.key_file")) == NULL)
			where = c->path != NULL ? c->path : "configuration";
		xasprintf(cause, "%s: %s", where, why);
		free(why);
		return (-1);
	}
	crypto_key_free(k);
	return (0);
}

int
tokens_ready(const char **detail)
{
	if (keys.loaded && keys.ks.active != NULL)
		return (1);
	*detail = "no signing key";
	return (0);
}

json_t *
tokens_jwks(void)
{
	return (keys.ks.jwks != NULL ? json_incref(keys.ks.jwks) :
	    json_pack("{s:[]}", "keys"));
}

/* "signing-key rotate" is over. */
static void
keys_rotated(int status, const char *cause, void *arg)
{
	struct keys_op	*op = arg;

	if (status == STORE_OK)
		log_info("signing keys: new active %s key %s",
		    crypto_alg_name(crypto_key_alg(op->ks.active)),
		    crypto_key_kid(op->ks.active));
	op->rot_done(status == STORE_OK ? 0 : -1, cause, op->rot_arg);
	keys_op_free(op);
}

/*
 * "signing-key rotate": a new active key; the old one keeps verifying.
 * done(0, NULL, arg), or done(-1, cause, arg).
 */
void
tokens_signing_rotate(struct config *c, void (*done)(int, const char *,
    void *), void *arg)
{
	struct keys_op	*op;
	char		*cause = NULL;

	if (c->jwt_algorithm == JWT_ALG_HS256) {
		done(-1, "jwt.algorithm is HS256: rotate by changing "
		    "jwt.secret", arg);
		return;
	}
	if (c->jwt_key_file != NULL) {
		done(-1, "jwt.key_file is set: rotate by replacing the file "
		    "and reloading", arg);
		return;
	}
	if (c->jwt_kms_key_id != NULL) {
		done(-1, "jwt.kms_key_id is set: rotate by configuring a new "
		    "KMS key and reloading", arg);
		return;
	}
	op = xcalloc(1, sizeof *op);
	op->mode = KM_ROTATE;
	op->c = config_ref(c);
	op->ks.verify = jose_keyset_new();
	op->rot_done = done;
	op->rot_arg = arg;
	op->done = keys_rotated;
	op->arg = op;
	if ((op->key = keys_generate(keys_alg(c->jwt_algorithm), &op->sealed,
	    &op->slen, &cause)) == NULL) {
		done(-1, cause, arg);
		free(cause);
		keys_op_free(op);
		return;
	}
	op->make = 1;
	store_begin(STORE_WRITE, keys_step, op);
}
