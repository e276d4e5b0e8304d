/*
 * tokens-keys.c: the keys our access tokens are signed with.
 *
 * Asymmetric keys are generated on first start (or read from jwt.key_file)
 * and kept in signing_keys with the private part sealed under a
 * key-encryption key (KEK) in a 0600 file beside the database, so a copied
 * database alone does not leak them. Every key that may still verify an
 * unexpired token stays in the JWKS until the last token it signed has
 * expired. With HS256 the one key is jwt.secret. A reload builds the new
 * key state first and puts it in place only when every module is ready;
 * "signing-key rotate" makes a new active key.
 */

#include <sys/types.h>
#include <sys/stat.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "bsp.h"
#include "crypto.h"
#include "jose.h"
#include "tokens.h"

struct keystate {
	struct jose_keyset	*verify;	/* owns every key */
	const struct crypto_key	*active;	/* signs; in verify */
	struct crypto_key	*legacy;
	json_t			*jwks;
};

static struct {
	struct keystate		 ks;
	struct keystate		 next;		/* prepared by a reload */
	int			 has_next;
	int			 loaded;
} keys;

static struct db_stmt st_key_active = { "SELECT kid, private_sealed FROM "
    "signing_keys WHERE retired IS NULL AND alg = ? AND private_sealed IS NOT "
    "NULL ORDER BY created DESC, kid LIMIT 1", NULL, NULL };
static struct db_stmt st_key_sealed = { "SELECT kid FROM signing_keys "
    "WHERE retired IS NULL AND private_sealed IS NOT NULL LIMIT 1", NULL,
    NULL };
static struct db_stmt st_key_insert = { "INSERT OR IGNORE INTO signing_keys "
    "(kid, alg, created, public_jwk, private_sealed) VALUES (?, ?, ?, ?, ?)",
    NULL, NULL };
static struct db_stmt st_key_retire = { "UPDATE signing_keys SET retired = "
    "?1, verify_until = ?2 WHERE retired IS NULL AND kid != ?3", NULL, NULL };
static struct db_stmt st_key_unretire = { "UPDATE signing_keys SET retired = "
    "NULL, verify_until = NULL WHERE kid = ?", NULL, NULL };
static struct db_stmt st_key_verify = { "SELECT kid, alg, public_jwk FROM "
    "signing_keys WHERE retired IS NULL OR verify_until > ?", NULL, NULL };
static struct db_stmt st_key_purge = { "DELETE FROM signing_keys WHERE "
    "retired IS NOT NULL AND verify_until < ?", NULL, NULL };
static struct db_stmt st_fam_last = { "SELECT max(expires) FROM "
    "token_families f WHERE revoked = 0 AND NOT EXISTS (SELECT 1 FROM "
    "refresh_tokens r WHERE r.family_id = f.id)", NULL, NULL };

static enum crypto_alg keys_alg(int);
static void	 keys_state_free(struct keystate *);
static char	*keys_kek_path(const struct config *);
static int	 keys_kek(struct config *, char **);
static int	 keys_insert(const struct crypto_key *, const uint8_t *,
		    size_t);
static int	 keys_retire_others(const struct config *, const char *);
static struct crypto_key *keys_from_file(const struct config *, char **);
static struct crypto_key *keys_dberr(struct crypto_key *, char **);
static struct crypto_key *keys_active_file(const struct config *, char **);
static int	 keys_stored(enum crypto_alg, struct crypto_key **, char **);
static struct crypto_key *keys_generate_locked(const struct config *,
		    enum crypto_alg, char **);
static struct crypto_key *keys_active(const struct config *, int, char **);
static void	 keys_add_retired(struct keystate *);
static int	 keys_load(const struct config *, struct keystate *, int,
		    char **);

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
	crypto_key_free(ks->legacy);
	json_decref(ks->jwks);
	memset(ks, 0, sizeof *ks);
}

static char *
keys_kek_path(const struct config *c)
{
	char	*p;

	xasprintf(&p, "%s.kek", c->db_path);
	return (p);
}

/* Store a key's public half (and its sealed private half, if given). */
static int
keys_insert(const struct crypto_key *k, const uint8_t *sealed, size_t slen)
{
	sqlite3_stmt	*st = db_prepare(&st_key_insert);
	json_t		*jwk = jose_jwk_public(k);
	char		*s = json_dumps(jwk, JSON_COMPACT | JSON_SORT_KEYS);
	int		 rc;

	json_decref(jwk);
	sqlite3_bind_text(st, 1, crypto_key_kid(k), -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, crypto_alg_name(crypto_key_alg(k)), -1,
	    SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)now_wall());
	sqlite3_bind_text(st, 4, s, -1, SQLITE_STATIC);
	if (sealed != NULL)
		sqlite3_bind_blob(st, 5, sealed, (int)slen, SQLITE_STATIC);
	rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
	sqlite3_reset(st);
	free(s);
	return (rc);
}

/*
 * Retire every active key but kid; tokens they signed stay verifiable:
 * those of login sessions for jwt.access_token_ttl, those of "token mint"
 * (a session without refresh tokens, ending when its token does, whose
 * --ttl may be longer) until the last of them expires.
 */
static int
keys_retire_others(const struct config *c, const char *kid)
{
	sqlite3_stmt	*st;
	time_t		 now = now_wall(), until;
	int		 rc;

	until = now + (time_t)c->jwt_access_ttl;
	st = db_prepare(&st_fam_last);
	if (sqlite3_step(st) == SQLITE_ROW &&
	    (time_t)sqlite3_column_int64(st, 0) > until)
		until = (time_t)sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	st = db_prepare(&st_key_retire);
	sqlite3_bind_int64(st, 1, (sqlite3_int64)now);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)(until + TOKEN_LEEWAY));
	sqlite3_bind_text(st, 3, kid, -1, SQLITE_STATIC);
	rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
	sqlite3_reset(st);
	if (rc == 0 && sqlite3_changes(bsp_db) > 0)
		log_info("signing keys: retired %d previous key(s); they "
		    "verify until their last token expires",
		    sqlite3_changes(bsp_db));
	return (rc);
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

/* A database error while choosing the active key: nothing changes. */
static struct crypto_key *
keys_dberr(struct crypto_key *k, char **cause)
{
	db_rollback();
	crypto_key_free(k);
	xasprintf(cause, "signing keys: database error: %s", db_errmsg());
	return (NULL);
}

/* jwt.key_file's key becomes, or stays, the active one. */
static struct crypto_key *
keys_active_file(const struct config *c, char **cause)
{
	struct crypto_key	*k;
	sqlite3_stmt		*st;

	if ((k = keys_from_file(c, cause)) == NULL)
		return (NULL);
	/* One active key per algorithm: the others retire first. */
	if (db_begin() == -1 || keys_retire_others(c, crypto_key_kid(k)) == -1 ||
	    keys_insert(k, NULL, 0) == -1)
		return (keys_dberr(k, cause));
	st = db_prepare(&st_key_unretire);
	sqlite3_bind_text(st, 1, crypto_key_kid(k), -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE || db_commit() == -1)
		return (keys_dberr(k, cause));
	return (k);
}

/*
 * The stored active key for alg, opened with the KEK, in *kp (NULL if
 * there is none). -1 with *cause set, the transaction rolled back, if it
 * cannot be opened.
 */
static int
keys_stored(enum crypto_alg alg, struct crypto_key **kp, char **cause)
{
	struct crypto_err	 err;
	sqlite3_stmt		*st = db_prepare(&st_key_active);
	int			 rc = 0;

	*kp = NULL;
	sqlite3_bind_text(st, 1, crypto_alg_name(alg), -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		*kp = crypto_key_unseal(sqlite3_column_blob(st, 1),
		    (size_t)sqlite3_column_bytes(st, 1), &err);
		if (*kp == NULL) {
			xasprintf(cause, "cannot open signing key %s: %s (is "
			    "this the key-encryption key the database was made "
			    "with?)", sqlite3_column_text(st, 0), err.msg);
			rc = -1;
		} else
			crypto_key_set_kid(*kp,
			    (const char *)sqlite3_column_text(st, 0));
	}
	sqlite3_reset(st);
	if (rc == -1)
		db_rollback();
	return (rc);
}

/*
 * A new key for alg, named by its thumbprint and stored with its private
 * half sealed, in the caller's transaction. NULL with *cause set, the
 * transaction rolled back, on failure.
 */
static struct crypto_key *
keys_generate_locked(const struct config *c, enum crypto_alg alg,
    char **cause)
{
	struct crypto_err	 err;
	struct crypto_key	*k;
	uint8_t			*sealed = NULL;
	size_t			 slen = 0;
	char			 kid[44];

	if ((k = crypto_key_generate(alg, alg == CRYPTO_ALG_RS256 ? 2048 : 0,
	    &err)) == NULL) {
		db_rollback();
		xasprintf(cause, "cannot generate a signing key: %s", err.msg);
		return (NULL);
	}
	if (jose_jwk_thumbprint(k, kid) == -1 ||
	    crypto_key_set_kid(k, kid) == -1)
		fatalx("cannot name the signing key");
	if (crypto_key_seal(k, &sealed, &slen, &err) == -1) {
		db_rollback();
		crypto_key_free(k);
		xasprintf(cause, "cannot seal the signing key: %s", err.msg);
		return (NULL);
	}
	if (keys_retire_others(c, kid) == -1 || keys_insert(k, sealed,
	    slen) == -1)
		k = keys_dberr(k, cause);
	free(sealed);
	return (k);
}

/*
 * Find the active key for the configured algorithm, or generate one, in a
 * transaction so that a command and the daemon never both generate.
 */
static struct crypto_key *
keys_active(const struct config *c, int may_generate, char **cause)
{
	struct crypto_key	*k;
	enum crypto_alg		 alg = keys_alg(c->jwt_algorithm);
	int			 created = 0;

	if (c->jwt_key_file != NULL)
		return (keys_active_file(c, cause));
	if (db_begin() == -1)
		return (keys_dberr(NULL, cause));
	if (keys_stored(alg, &k, cause) == -1)
		return (NULL);
	if (k == NULL) {
		if (!may_generate) {
			db_rollback();
			xasprintf(cause, "no active signing key");
			return (NULL);
		}
		if ((k = keys_generate_locked(c, alg, cause)) == NULL)
			return (NULL);
		created = 1;
	}
	if (keys_retire_others(c, crypto_key_kid(k)) == -1 ||
	    db_commit() == -1)
		return (keys_dberr(k, cause));
	if (created)
		log_info("signing keys: generated %s key %s",
		    crypto_alg_name(alg), crypto_key_kid(k));
	return (k);
}

/*
 * The other keys that still verify tokens: retired ones until the last
 * token they signed has expired.
 */
static void
keys_add_retired(struct keystate *ks)
{
	struct crypto_err	 err;
	struct crypto_key	*k;
	sqlite3_stmt		*st;
	enum crypto_alg		 allow[2];
	json_t			*jwk;
	const char		*s;

	allow[0] = allow[1] = CRYPTO_ALG_NONE;
	st = db_prepare(&st_key_verify);
	sqlite3_bind_int64(st, 1, (sqlite3_int64)now_wall());
	while (sqlite3_step(st) == SQLITE_ROW) {
		s = (const char *)sqlite3_column_text(st, 0);
		if (s == NULL || strcmp(s, crypto_key_kid(ks->active)) == 0)
			continue;
		allow[0] = crypto_alg_from_name(
		    (const char *)sqlite3_column_text(st, 1));
		s = (const char *)sqlite3_column_text(st, 2);
		if (s == NULL || allow[0] == CRYPTO_ALG_NONE ||
		    (jwk = json_loads(s, 0, NULL)) == NULL)
			continue;
		k = jose_jwk_parse(jwk, allow, &err);
		json_decref(jwk);
		if (k == NULL) {
			log_warnx("signing keys: stored key %s unusable: %s",
			    sqlite3_column_text(st, 0), err.msg);
			continue;
		}
		crypto_key_set_kid(k, (const char *)sqlite3_column_text(st, 0));
		jose_keyset_add(ks->verify, k);
	}
	sqlite3_reset(st);
}

/* Build the complete key state for a configuration. */
static int
keys_load(const struct config *c, struct keystate *ks, int may_generate,
    char **cause)
{
	struct crypto_err	 err;
	struct crypto_key	*active;
	char			 kid[80], b[64];
	int			 rc = -1;

	memset(ks, 0, sizeof *ks);
	ks->verify = jose_keyset_new();
	/* What can fail without touching the database first. */
	if (c->jwt_legacy_secret != NULL) {
		ks->legacy = crypto_key_from_secret(tokens_keys_legacy_alg(
		    c->jwt_legacy_algorithm), c->jwt_legacy_secret,
		    strlen(c->jwt_legacy_secret), &err);
		if (ks->legacy == NULL) {
			xasprintf(cause, "jwt.legacy.secret: %s", err.msg);
			goto out;
		}
	}
	if (c->jwt_algorithm == JWT_ALG_HS256) {
		active = crypto_key_from_secret(CRYPTO_ALG_HS256, c->jwt_secret,
		    strlen(c->jwt_secret), &err);
		if (active == NULL) {
			xasprintf(cause, "jwt.secret: %s", err.msg);
			goto out;
		}
		crypto_secret_id(c->jwt_secret, "bsp-kid", 12, b, sizeof b);
		snprintf(kid, sizeof kid, "hs-%s", b);
		crypto_key_set_kid(active, kid);
		jose_keyset_add(ks->verify, active);
		ks->active = active;
		ks->jwks = json_pack("{s:[]}", "keys");
	} else {
		if ((active = keys_active(c, may_generate, cause)) == NULL)
			goto out;
		jose_keyset_add(ks->verify, active);
		ks->active = active;
		keys_add_retired(ks);
		ks->jwks = jose_keyset_jwks(ks->verify);
	}
	rc = 0;
out:
	if (rc == -1)
		keys_state_free(ks);
	return (rc);
}

static int
keys_kek(struct config *c, char **cause)
{
	struct crypto_err	 err;
	struct stat		 sb;
	sqlite3_stmt		*st;
	char			*path;

	if (crypto_kek_loaded())
		return (0);
	path = keys_kek_path(c);
	/*
	 * A missing KEK beside a database that holds keys sealed under one
	 * means the database was copied or restored without it: say so,
	 * rather than make a new KEK that cannot open them.
	 */
	if (stat(path, &sb) == -1 && errno == ENOENT &&
	    c->jwt_algorithm != JWT_ALG_HS256 && c->jwt_key_file == NULL) {
		st = db_prepare(&st_key_sealed);
		if (sqlite3_step(st) == SQLITE_ROW) {
			xasprintf(cause, "key-encryption key %s is missing, "
			    "but the database holds signing key %s sealed "
			    "under it: restore the file from where the "
			    "database came from (a copied database alone "
			    "cannot sign)", path, sqlite3_column_text(st, 0));
			sqlite3_reset(st);
			free(path);
			return (-1);
		}
		sqlite3_reset(st);
	}
	if (crypto_kek_load(path, &err) == -1) {
		xasprintf(cause, "key-encryption key %s: %s", path, err.msg);
		free(path);
		return (-1);
	}
	free(path);
	return (0);
}

/* Start: the key-encryption key, then the signing keys (made if need be). */
int
tokens_keys_init(struct config *c, char **cause)
{
	if (keys_kek(c, cause) == -1)
		return (-1);
	if (keys_load(c, &keys.ks, 1, cause) == -1)
		return (-1);
	keys.loaded = 1;
	return (0);
}

/* Another process may have made a new key ("signing-key rotate"). */
void
tokens_keys_sync(void)
{
	struct keystate	 ks;
	char		*cause = NULL;

	if (cfg->jwt_algorithm == JWT_ALG_HS256)
		return;
	if (keys_load(cfg, &ks, 0, &cause) == 0) {
		keys_state_free(&keys.ks);
		keys.ks = ks;
	} else {
		log_warnx("cannot reload signing keys: %s", cause);
		free(cause);
	}
}

/* Housekeeping: retired keys no token needs any more. */
void
tokens_keys_maint(time_t now)
{
	sqlite3_stmt	*st;

	st = db_prepare(&st_key_purge);
	sqlite3_bind_int64(st, 1, (sqlite3_int64)now);
	if (sqlite3_step(st) != SQLITE_DONE)
		log_warnx("cannot purge old signing keys: %s", db_errmsg());
}

void
tokens_keys_free(void)
{
	tokens_reload_abort();
	keys_state_free(&keys.ks);
	keys.loaded = 0;
	crypto_kek_unload();
}

/* The key that signs new tokens, if any. */
const struct crypto_key *
tokens_keys_signer(void)
{
	return (keys.ks.active);
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

/*
 * On SIGHUP, in two steps so a later module's failure leaves nothing
 * changed: build the new key state, then (commit) put it in place. The
 * one lasting effect of a prepare is in the database: a key for a newly
 * configured algorithm is made and becomes the active one there.
 */
int
tokens_reload_prepare(struct config *c, char **cause)
{
	tokens_reload_abort();
	if (keys_load(c, &keys.next, 1, cause) == -1)
		return (-1);
	keys.has_next = 1;
	return (0);
}

void
tokens_reload_commit(struct config *c)
{
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

/* "signing-key rotate": a new active key; the old one keeps verifying. */
int
tokens_signing_rotate(struct config *c, char **cause)
{
	struct crypto_err	 err;
	struct crypto_key	*k;
	enum crypto_alg		 alg = keys_alg(c->jwt_algorithm);
	uint8_t			*sealed = NULL;
	size_t			 slen = 0;
	char			 kid[44];
	int			 rc = -1;

	if (c->jwt_algorithm == JWT_ALG_HS256) {
		xasprintf(cause, "jwt.algorithm is HS256: rotate by changing "
		    "jwt.secret");
		return (-1);
	}
	if (c->jwt_key_file != NULL) {
		xasprintf(cause, "jwt.key_file is set: rotate by replacing the "
		    "file and reloading");
		return (-1);
	}
	if (keys_kek(c, cause) == -1)
		return (-1);
	if ((k = crypto_key_generate(alg, alg == CRYPTO_ALG_RS256 ? 2048 : 0,
	    &err)) == NULL) {
		xasprintf(cause, "cannot generate a key: %s", err.msg);
		return (-1);
	}
	if (jose_jwk_thumbprint(k, kid) == -1 ||
	    crypto_key_set_kid(k, kid) == -1 ||
	    crypto_key_seal(k, &sealed, &slen, &err) == -1) {
		crypto_key_free(k);
		xasprintf(cause, "cannot seal the new key");
		return (-1);
	}
	if (db_begin() == -1 || keys_retire_others(c, kid) == -1 ||
	    keys_insert(k, sealed, slen) == -1) {
		db_rollback();
		goto out;
	}
	audit_event("signing_key_rotated", NULL, "cli", NULL,
	    json_pack("{s:s,s:s}", "kid", kid, "alg", crypto_alg_name(alg)));
	if (db_commit() == -1)
		goto out;
	log_info("signing keys: new active %s key %s", crypto_alg_name(alg),
	    kid);
	rc = 0;
out:
	if (rc == -1)
		xasprintf(cause, "database error: %s", db_errmsg());
	free(sealed);
	crypto_key_free(k);
	return (rc);
}
