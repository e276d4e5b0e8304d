/*
 * tokens.c: our access tokens, refresh tokens and signing keys.
 *
 * Access tokens are JWS signed with the configured algorithm. Asymmetric
 * keys are generated on first start (or read from jwt.key_file) and kept in
 * signing_keys with the private part sealed under a key-encryption key in a
 * 0600 file beside the database, so a copied database alone does not leak
 * them. Every key that may still verify an unexpired token stays in the
 * JWKS until the last token it signed has expired.
 *
 * Refresh tokens are opaque ("bsr_" + 256 random bits), stored only as a
 * hash, and rotate on every use inside one transaction. Each login starts a
 * family (the sid claim); presenting a used refresh token after
 * jwt.refresh_reuse_grace revokes the whole family. A retry within the grace
 * window gets the same successor back: it is stored sealed under a key
 * derived from the old token itself, so only its holder can open it.
 *
 * Revocation is enforced in memory on every request: revoked families and
 * the users' state are loaded at start, updated by our own writes, and
 * reloaded when another process (an admin command) changes the database,
 * which modules.c learns from PRAGMA data_version within a second.
 */

#include <sys/types.h>
#include <sys/stat.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>
#include <uthash.h>

#include "bsp.h"
#include "crypto.h"
#include "jose.h"

/*
 * Clock skew allowed on exp, nbf and iat (SPEC: 60 s). A token is accepted
 * until exp + TOKEN_LEEWAY, so whatever is held against it (a revoked
 * family) is kept that long too: see revoked_horizon().
 */
#define TOKEN_LEEWAY	60
#define REFRESH_PREFIX	"bsr_"
#define SID_BYTES	16
#define SUCCESSOR_PURPOSE "bsp-refresh-successor"

struct keystate {
	struct jose_keyset	*verify;	/* owns every key */
	const struct crypto_key	*active;	/* signs; in verify */
	struct crypto_key	*legacy;
	json_t			*jwks;
};

struct revoked_family {
	char		*id;
	time_t		 expires;
	UT_hash_handle	 hh;
};

static struct {
	struct keystate		 ks;
	struct keystate		 next;		/* prepared by a reload */
	int			 has_next;
	int			 loaded;
	struct revoked_family	*revoked;
	long long		 data_version;
} tok;

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
static struct db_stmt st_fam_insert = { "INSERT INTO token_families (id, "
    "user_id, created, expires) VALUES (?, ?, ?, ?)", NULL, NULL };
static struct db_stmt st_fam_last = { "SELECT max(expires) FROM "
    "token_families f WHERE revoked = 0 AND NOT EXISTS (SELECT 1 FROM "
    "refresh_tokens r WHERE r.family_id = f.id)", NULL, NULL };
static struct db_stmt st_fam_get = { "SELECT user_id, expires, revoked FROM "
    "token_families WHERE id = ?", NULL, NULL };
static struct db_stmt st_fam_revoke = { "UPDATE token_families SET revoked = "
    "1, revoked_at = ?, revoked_reason = ? WHERE id = ? AND revoked = 0",
    NULL, NULL };
static struct db_stmt st_fam_revoke_user = { "UPDATE token_families SET "
    "revoked = 1, revoked_at = ?, revoked_reason = ? WHERE user_id = ? AND "
    "revoked = 0", NULL, NULL };
static struct db_stmt st_fam_revoked = { "SELECT id, expires FROM "
    "token_families WHERE revoked != 0 AND expires >= ?", NULL, NULL };
static struct db_stmt st_fam_purge = { "DELETE FROM token_families WHERE "
    "expires < ?", NULL, NULL };
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
static struct db_stmt st_rt_forget = { "UPDATE refresh_tokens SET "
    "successor_sealed = NULL WHERE used_at IS NOT NULL AND used_at < ? AND "
    "successor_sealed IS NOT NULL", NULL, NULL };
static struct db_stmt st_state_purge = { "DELETE FROM oauth_states WHERE "
    "expires < ?", NULL, NULL };


static enum crypto_alg
tokens_crypto_alg(int a)
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

static enum crypto_alg
tokens_legacy_alg(int a)
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

/* Principals. */
struct principal *
principal_new(enum principal_kind kind)
{
	struct principal	*p;

	p = xcalloc(1, sizeof *p);
	p->refcnt = 1;
	p->kind = kind;
	return (p);
}

struct principal *
principal_ref(struct principal *p)
{
	p->refcnt++;
	return (p);
}

void
principal_unref(struct principal *p)
{
	if (p == NULL || --p->refcnt > 0)
		return;
	free(p->sub);
	free(p->provider);
	free(p->email);
	free(p->name);
	free(p->sid);
	free(p->key_id);
	free(p->tenant);
	strlist_free(&p->groups);
	strlist_free(&p->scopes);
	strlist_free(&p->key_models);
	free(p);
}

int
principal_has_scope(const struct principal *p, const char *scope)
{
	if (p->kind == PRINCIPAL_API_KEY || p->kind == PRINCIPAL_EXTERNAL ||
	    p->kind == PRINCIPAL_LEGACY)
		return (1);
	return (strlist_contains(&p->scopes, scope));
}

int
tokens_family_revoked(const char *sid)
{
	struct revoked_family	*f;

	HASH_FIND_STR(tok.revoked, sid, f);
	return (f != NULL);
}

/*
 * Is anything held against this principal right now? Checked on every
 * request, cached or not. Returns a reason safe to show, or NULL.
 */
const char *
principal_revoked(const struct principal *p)
{
	const struct user_state	*us;

	us = user_state(p->sub);
	if (us != NULL && us->disabled)
		return ("user is disabled");
	if (us != NULL && us->denied)
		return ("the access policy no longer admits this user");
	if (p->sid != NULL && tokens_family_revoked(p->sid))
		return ("session has been revoked");
	/*
	 * Our tokens belong to a session, which "user logout" revokes; the
	 * time cut-off is for tokens without one (legacy, external), so a
	 * login in the same second as a logout is not caught by it.
	 */
	if (us != NULL && p->sid == NULL && p->kind != PRINCIPAL_API_KEY &&
	    us->revoked_before != 0 && p->iat <= us->revoked_before)
		return ("token has been revoked");
	if (p->exp != 0 && p->exp + TOKEN_LEEWAY <= now_wall())
		return ("token expired");
	return (NULL);
}

/* Configuration. */
void
tokens_config_check(struct config *c, struct config_errors *errs)
{
	struct crypto_err	 err;
	struct crypto_key	*k;

	if (c->jwt_algorithm == JWT_ALG_HS256) {
		if (c->jwt_secret == NULL)
			config_add_error(errs, c, "jwt.algorithm", "jwt.algorithm "
			    "HS256 needs jwt.secret (or jwt.secret_file)");
		else if ((k = crypto_key_from_secret(CRYPTO_ALG_HS256,
		    c->jwt_secret, strlen(c->jwt_secret), &err)) == NULL)
			config_add_error(errs, c, "jwt.secret", "jwt.secret: %s",
			    err.msg);
		else
			crypto_key_free(k);
		if (c->jwt_key_file != NULL)
			config_add_error(errs, c, "jwt.key_file", "jwt.key_file is "
			    "for EdDSA, ES256 and RS256, not HS256");
	} else if (c->jwt_secret != NULL)
		config_add_error(errs, c, "jwt.secret", "jwt.secret is only "
		    "used when jwt.algorithm is HS256");
	if (c->jwt_legacy_secret != NULL) {
		if ((k = crypto_key_from_secret(tokens_legacy_alg(
		    c->jwt_legacy_algorithm), c->jwt_legacy_secret,
		    strlen(c->jwt_legacy_secret), &err)) == NULL)
			config_add_error(errs, c, "jwt.legacy.secret",
			    "jwt.legacy.secret: %s", err.msg);
		else
			crypto_key_free(k);
	} else if (c->jwt_legacy_issuer != NULL ||
	    c->jwt_legacy_audience != NULL)
		config_add_error(errs, c, c->jwt_legacy_issuer != NULL ?
		    "jwt.legacy.issuer" : "jwt.legacy.audience",
		    "jwt.legacy.* needs jwt.legacy.secret");
	if (c->jwt_issuer != NULL && (*c->jwt_issuer == '\0' ||
	    !str_is_printable(c->jwt_issuer, strlen(c->jwt_issuer))))
		config_add_error(errs, c, "jwt.issuer", "jwt.issuer must be "
		    "printable text");
	if (c->apikeys_max_ttl > 0 && (c->apikeys_default_ttl == 0 ||
	    c->apikeys_default_ttl > c->apikeys_max_ttl))
		config_add_error(errs, c, config_where(c,
		    "api_keys.default_ttl") != NULL ? "api_keys.default_ttl" :
		    "api_keys.max_ttl", "api_keys.default_ttl (%lld) must be "
		    "within api_keys.max_ttl (%lld)", c->apikeys_default_ttl,
		    c->apikeys_max_ttl);
	if (*c->jwt_audience == '\0')
		config_add_error(errs, c, "jwt.audience", "jwt.audience must not "
		    "be empty");
}

const char *
tokens_issuer(const struct config *c)
{
	return (c->jwt_issuer != NULL ? c->jwt_issuer : c->server_public_url);
}

static char *
tokens_random_id(size_t nbytes)
{
	uint8_t	r[32];
	char	b[64];

	if (nbytes > sizeof r)
		nbytes = sizeof r;
	crypto_random(r, nbytes);
	crypto_b64url_encode(r, nbytes, b, sizeof b);
	return (xstrdup(b));
}

/* Keys. */
static void
keystate_free(struct keystate *ks)
{
	jose_keyset_free(ks->verify);
	crypto_key_free(ks->legacy);
	json_decref(ks->jwks);
	memset(ks, 0, sizeof *ks);
}

static char *
tokens_kek_path(const struct config *c)
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
		log_info("signing keys: retired %d previous key(s); they verify "
		    "until their last token expires", sqlite3_changes(bsp_db));
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
	k = crypto_key_from_pem(tokens_crypto_alg(c->jwt_algorithm), pem,
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
 * Find the active key for the configured algorithm, or generate one, in a
 * transaction so that a command and the daemon never both generate.
 */
static struct crypto_key *
keys_active(const struct config *c, int may_generate, char **cause)
{
	struct crypto_err	 err;
	struct crypto_key	*k = NULL;
	sqlite3_stmt		*st;
	enum crypto_alg		 alg = tokens_crypto_alg(c->jwt_algorithm);
	uint8_t			*sealed = NULL;
	size_t			 slen = 0;
	char			 kid[44];
	int			 created = 0;

	if (c->jwt_key_file != NULL) {
		if ((k = keys_from_file(c, cause)) == NULL)
			return (NULL);
		if (db_begin() == -1)
			goto dberr;
		if (keys_insert(k, NULL, 0) == -1)
			goto dberr;
		st = db_prepare(&st_key_unretire);
		sqlite3_bind_text(st, 1, crypto_key_kid(k), -1, SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_DONE)
			goto dberr;
		if (keys_retire_others(c, crypto_key_kid(k)) == -1 ||
		    db_commit() == -1)
			goto dberr;
		return (k);
	}

	if (db_begin() == -1)
		goto dberr;
	st = db_prepare(&st_key_active);
	sqlite3_bind_text(st, 1, crypto_alg_name(alg), -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		k = crypto_key_unseal(sqlite3_column_blob(st, 1),
		    (size_t)sqlite3_column_bytes(st, 1), &err);
		if (k == NULL) {
			xasprintf(cause, "cannot open signing key %s: %s (is "
			    "this the key-encryption key the database was made "
			    "with?)", sqlite3_column_text(st, 0), err.msg);
			sqlite3_reset(st);
			db_rollback();
			return (NULL);
		}
		crypto_key_set_kid(k, (const char *)sqlite3_column_text(st, 0));
	}
	sqlite3_reset(st);
	if (k == NULL) {
		if (!may_generate) {
			db_rollback();
			xasprintf(cause, "no active signing key");
			return (NULL);
		}
		if ((k = crypto_key_generate(alg, alg == CRYPTO_ALG_RS256 ?
		    2048 : 0, &err)) == NULL) {
			db_rollback();
			xasprintf(cause, "cannot generate a signing key: %s",
			    err.msg);
			return (NULL);
		}
		if (jose_jwk_thumbprint(k, kid) == -1 ||
		    crypto_key_set_kid(k, kid) == -1)
			fatalx("cannot name the signing key");
		if (crypto_key_seal(k, &sealed, &slen, &err) == -1) {
			db_rollback();
			crypto_key_free(k);
			xasprintf(cause, "cannot seal the signing key: %s",
			    err.msg);
			return (NULL);
		}
		if (keys_insert(k, sealed, slen) == -1) {
			free(sealed);
			goto dberr;
		}
		free(sealed);
		created = 1;
	}
	if (keys_retire_others(c, crypto_key_kid(k)) == -1 ||
	    db_commit() == -1)
		goto dberr;
	if (created)
		log_info("signing keys: generated %s key %s",
		    crypto_alg_name(alg), crypto_key_kid(k));
	return (k);
dberr:
	db_rollback();
	crypto_key_free(k);
	xasprintf(cause, "signing keys: database error: %s", db_errmsg());
	return (NULL);
}

/* Build the complete key state for a configuration. */
static int
keys_load(const struct config *c, struct keystate *ks, int may_generate,
    char **cause)
{
	struct crypto_err	 err;
	struct crypto_key	*active, *k;
	sqlite3_stmt		*st;
	enum crypto_alg		 allow[2] = { CRYPTO_ALG_NONE, CRYPTO_ALG_NONE };
	char			 kid[80], b[64];
	json_t			*jwk;
	const char		*s;

	memset(ks, 0, sizeof *ks);
	ks->verify = jose_keyset_new();
	/* What can fail without touching the database first. */
	if (c->jwt_legacy_secret != NULL) {
		ks->legacy = crypto_key_from_secret(tokens_legacy_alg(
		    c->jwt_legacy_algorithm), c->jwt_legacy_secret,
		    strlen(c->jwt_legacy_secret), &err);
		if (ks->legacy == NULL) {
			xasprintf(cause, "jwt.legacy.secret: %s", err.msg);
			goto fail;
		}
	}
	if (c->jwt_algorithm == JWT_ALG_HS256) {
		active = crypto_key_from_secret(CRYPTO_ALG_HS256, c->jwt_secret,
		    strlen(c->jwt_secret), &err);
		if (active == NULL) {
			xasprintf(cause, "jwt.secret: %s", err.msg);
			goto fail;
		}
		crypto_secret_id(c->jwt_secret, "bsp-kid", 12, b, sizeof b);
		snprintf(kid, sizeof kid, "hs-%s", b);
		crypto_key_set_kid(active, kid);
		jose_keyset_add(ks->verify, active);
		ks->active = active;
	} else {
		if ((active = keys_active(c, may_generate, cause)) == NULL)
			goto fail;
		jose_keyset_add(ks->verify, active);
		ks->active = active;
		st = db_prepare(&st_key_verify);
		sqlite3_bind_int64(st, 1, (sqlite3_int64)now_wall());
		while (sqlite3_step(st) == SQLITE_ROW) {
			s = (const char *)sqlite3_column_text(st, 0);
			if (s == NULL || strcmp(s, crypto_key_kid(active)) == 0)
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
				log_warnx("signing keys: stored key %s "
				    "unusable: %s", sqlite3_column_text(st, 0),
				    err.msg);
				continue;
			}
			crypto_key_set_kid(k,
			    (const char *)sqlite3_column_text(st, 0));
			jose_keyset_add(ks->verify, k);
		}
		sqlite3_reset(st);
	}
	if (c->jwt_algorithm == JWT_ALG_HS256)
		ks->jwks = json_pack("{s:[]}", "keys");
	else
		ks->jwks = jose_keyset_jwks(ks->verify);
	return (0);
fail:
	keystate_free(ks);
	return (-1);
}

/*
 * Revoked families. A family's tokens expire at the latest when it does,
 * and are accepted until TOKEN_LEEWAY after that: a family that expired
 * before the horizon holds no token we would still accept, and only then
 * may its revocation be forgotten (in memory, by the loader, by the purge;
 * a family row must also stay until then for "user logout" to reach it).
 */
static time_t
revoked_horizon(time_t now)
{
	return (now - TOKEN_LEEWAY);
}

static void
revoked_clear(void)
{
	struct revoked_family	*f, *tmp;

	HASH_ITER(hh, tok.revoked, f, tmp) {
		HASH_DEL(tok.revoked, f);
		free(f->id);
		free(f);
	}
}

static void
revoked_add(const char *id, time_t expires)
{
	struct revoked_family	*f;

	HASH_FIND_STR(tok.revoked, id, f);
	if (f != NULL)
		return;
	f = xcalloc(1, sizeof *f);
	f->id = xstrdup(id);
	f->expires = expires;
	HASH_ADD_KEYPTR(hh, tok.revoked, f->id, strlen(f->id), f);
}

static int
revoked_load(void)
{
	sqlite3_stmt	*st = db_prepare(&st_fam_revoked);
	int		 rc;

	revoked_clear();
	sqlite3_bind_int64(st, 1, (sqlite3_int64)revoked_horizon(now_wall()));
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		revoked_add((const char *)sqlite3_column_text(st, 0),
		    (time_t)sqlite3_column_int64(st, 1));
	sqlite3_reset(st);
	return (rc == SQLITE_DONE ? 0 : -1);
}

/*
 * Reload what another process may have changed here: revoked families and
 * signing keys (after "signing-key rotate"). Users and API keys have their
 * own sync in the modules table.
 */
void
tokens_sync(void)
{
	struct keystate	 ks;
	char		*cause = NULL;

	if (revoked_load() == -1)
		log_warnx("cannot reload revoked sessions: %s", db_errmsg());
	if (cfg->jwt_algorithm != JWT_ALG_HS256) {
		if (keys_load(cfg, &ks, 0, &cause) == 0) {
			keystate_free(&tok.ks);
			tok.ks = ks;
		} else {
			log_warnx("cannot reload signing keys: %s", cause);
			free(cause);
		}
	}
	tok.data_version = db_data_version();
}

/* Housekeeping: expired sessions, states, old signing keys. */
void
tokens_maint(time_t now)
{
	sqlite3_stmt	*st;
	struct revoked_family *f, *tmp;

	st = db_prepare(&st_fam_purge);
	sqlite3_bind_int64(st, 1, (sqlite3_int64)revoked_horizon(now));
	if (sqlite3_step(st) != SQLITE_DONE)
		log_warnx("cannot purge expired sessions: %s", db_errmsg());
	st = db_prepare(&st_rt_forget);
	sqlite3_bind_int64(st, 1, (sqlite3_int64)(now - cfg->jwt_refresh_grace));
	if (sqlite3_step(st) != SQLITE_DONE)
		log_warnx("cannot forget old successors: %s", db_errmsg());
	st = db_prepare(&st_state_purge);
	sqlite3_bind_int64(st, 1, (sqlite3_int64)now);
	if (sqlite3_step(st) != SQLITE_DONE)
		log_warnx("cannot purge login states: %s", db_errmsg());
	st = db_prepare(&st_key_purge);
	sqlite3_bind_int64(st, 1, (sqlite3_int64)now);
	if (sqlite3_step(st) != SQLITE_DONE)
		log_warnx("cannot purge old signing keys: %s", db_errmsg());
	HASH_ITER(hh, tok.revoked, f, tmp) {
		if (f->expires < revoked_horizon(now)) {
			HASH_DEL(tok.revoked, f);
			free(f->id);
			free(f);
		}
	}
}

static int
tokens_kek(struct config *c, char **cause)
{
	struct crypto_err	 err;
	struct stat		 sb;
	sqlite3_stmt		*st;
	char			*path;

	if (crypto_kek_loaded())
		return (0);
	path = tokens_kek_path(c);
	/*
	 * A missing KEK beside a database that holds keys sealed under one
	 * means the database was copied or restored without it: say so,
	 * rather than make a new KEK that cannot open them.
	 */
	if (stat(path, &sb) == -1 && errno == ENOENT &&
	    c->jwt_algorithm != JWT_ALG_HS256 && c->jwt_key_file == NULL) {
		st = db_prepare(&st_key_sealed);
		if (sqlite3_step(st) == SQLITE_ROW) {
			xasprintf(cause, "key-encryption key %s is missing, but "
			    "the database holds signing key %s sealed under it: "
			    "restore the file from where the database came from "
			    "(a copied database alone cannot sign)", path,
			    sqlite3_column_text(st, 0));
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

/*
 * Start: the key-encryption key, signing keys (generated if needed), the
 * revocation state, API keys.
 */
int
tokens_init(struct config *c, char **cause)
{
	if (crypto_init() == -1) {
		xasprintf(cause, "cannot initialise the crypto library");
		return (-1);
	}
	if (tokens_kek(c, cause) == -1)
		return (-1);
	if (keys_load(c, &tok.ks, 1, cause) == -1)
		return (-1);
	tok.loaded = 1;
	if (users_load_state() == -1 || revoked_load() == -1 ||
	    apikeys_load() == -1) {
		xasprintf(cause, "cannot load token state: %s", db_errmsg());
		return (-1);
	}
	tok.data_version = db_data_version();
	return (0);
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
	if (keys_load(c, &tok.next, 1, cause) == -1)
		return (-1);
	tok.has_next = 1;
	return (0);
}

void
tokens_reload_commit(struct config *c)
{
	if (!tok.has_next)
		return;
	keystate_free(&tok.ks);
	tok.ks = tok.next;
	memset(&tok.next, 0, sizeof tok.next);
	tok.has_next = 0;
}

void
tokens_reload_abort(void)
{
	if (tok.has_next)
		keystate_free(&tok.next);
	tok.has_next = 0;
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

void
tokens_free(void)
{
	apikeys_flush_last_used();
	tokens_reload_abort();
	keystate_free(&tok.ks);
	tok.loaded = 0;
	revoked_clear();
	users_state_free();
	apikeys_free();
	crypto_kek_unload();
}

int
tokens_ready(const char **detail)
{
	if (tok.loaded && tok.ks.active != NULL)
		return (1);
	*detail = "no signing key";
	return (0);
}

json_t *
tokens_jwks(void)
{
	return (tok.ks.jwks != NULL ? json_incref(tok.ks.jwks) :
	    json_pack("{s:[]}", "keys"));
}

static json_t *
strlist_json(const struct strlist *l)
{
	json_t	*a = json_array();
	size_t	 i;

	for (i = 0; i < l->n; i++)
		json_array_append_new(a, json_string(l->v[i]));
	return (a);
}

/*
 * Sign an access token for a user in a session family, valid until exp.
 * Returns the token (and its iat), or NULL.
 */
char *
tokens_mint(const struct user *u, const char *sid, const struct strlist *scopes,
    time_t exp, time_t *iatp)
{
	struct crypto_err	 err;
	json_t			*claims;
	char			*jti, *t;
	time_t			 now = now_wall();
	struct strlist		 def = { NULL, 0 };

	if (tok.ks.active == NULL)
		return (NULL);
	if (scopes == NULL || scopes->n == 0) {
		strlist_add(&def, SCOPE_INVOKE);
		scopes = &def;
	}
	jti = tokens_random_id(16);
	claims = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:s,s:s,s:s,s:o,s:o}",
	    "iss", tokens_issuer(cfg), "aud", cfg->jwt_audience, "sub", u->id,
	    "iat", (json_int_t)now, "nbf", (json_int_t)now, "exp",
	    (json_int_t)exp, "jti", jti, "sid", sid, "provider",
	    u->provider != NULL ? u->provider : "local", "groups",
	    strlist_json(&u->groups), "scopes", strlist_json(scopes));
	free(jti);
	if (u->email != NULL) {
		json_object_set_new(claims, "email", json_string(u->email));
		json_object_set_new(claims, "email_verified",
		    json_boolean(u->email_verified));
	}
	if (u->name != NULL)
		json_object_set_new(claims, "name", json_string(u->name));
	t = jose_sign(tok.ks.active, claims, "JWT", &err);
	json_decref(claims);
	strlist_free(&def);
	if (t == NULL)
		log_warnx("cannot sign an access token: %s", err.msg);
	if (iatp != NULL)
		*iatp = now;
	return (t);
}

static json_t *
token_response(const char *access, time_t exp, const char *refresh)
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
rt_insert(const char *token, const char *sid, time_t expires)
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
	if (rt_insert(refresh, sid, expires) == -1)
		goto fail;
	if ((access = tokens_mint(u, sid, NULL, exp, NULL)) == NULL)
		goto fail;
	audit_event(event, u->id, u->id, client, json_pack("{s:s}", "session",
	    sid));
	if (db_commit() == -1)
		goto fail;
	*resp = token_response(access, exp, refresh);
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
successor_seal(const char *old, const char *access, time_t exp,
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
successor_open(const char *old, const void *blob, size_t len)
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
		resp = token_response(a, (time_t)e, r);
	json_decref(j);
	return (resp);
}

/*
 * Revoke a session family and the API keys made in it, inside the caller's
 * transaction. Every way a family ends goes through here. Returns the
 * number of keys revoked (the caller reloads them after its commit), or -1.
 */
static int
family_revoke_locked(const char *sid, const char *reason, const char *actor,
    const char *client)
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
		if ((nkeys = family_revoke_locked(sid, us->disabled ?
		    "user disabled" : "access policy", NULL, client)) == -1)
			goto dberr;
		revoked_add(sid, fexp);
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
		    (*resp = successor_open(token, sealed, slen)) != NULL) {
			db_rollback();
			audit_event("refresh_retry", user_id, user_id, client,
			    json_pack("{s:s}", "session", sid));
			rc = 0;
			goto out;
		}
		/* Reuse after the grace window: someone else has it too. */
		if ((nkeys = family_revoke_locked(sid, "refresh token reuse",
		    NULL, client)) == -1)
			goto dberr;
		revoked_add(sid, fexp);
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
	if (rt_insert(refresh, sid, fexp) == -1)
		goto dberr;
	free(sealed);
	sealed = NULL;
	if (successor_seal(token, access, exp, refresh, &sealed, &slen) == -1)
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
	*resp = token_response(access, exp, refresh);
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
	if ((nkeys = family_revoke_locked(sid, reason, actor, client)) == -1) {
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
	revoked_add(sid, fexp);
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
	revoked_load();
	apikeys_load();
	return (n);
}

/* "signing-key rotate": a new active key; the old one keeps verifying. */
int
tokens_signing_rotate(struct config *c, char **cause)
{
	struct crypto_err	 err;
	struct crypto_key	*k;
	enum crypto_alg		 alg = tokens_crypto_alg(c->jwt_algorithm);
	uint8_t			*sealed = NULL;
	size_t			 slen = 0;
	char			 kid[44];

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
	if (tokens_kek(c, cause) == -1)
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
	if (db_begin() == -1 || keys_insert(k, sealed, slen) == -1 ||
	    keys_retire_others(c, kid) == -1) {
		db_rollback();
		goto dberr;
	}
	audit_event("signing_key_rotated", NULL, "cli", NULL,
	    json_pack("{s:s,s:s}", "kid", kid, "alg", crypto_alg_name(alg)));
	if (db_commit() == -1)
		goto dberr;
	log_info("signing keys: new active %s key %s", crypto_alg_name(alg),
	    kid);
	free(sealed);
	crypto_key_free(k);
	return (0);
dberr:
	xasprintf(cause, "database error: %s", db_errmsg());
	free(sealed);
	crypto_key_free(k);
	return (-1);
}

static void
claims_strlist(const json_t *claims, const char *name, struct strlist *l)
{
	json_t	*v = json_object_get(claims, name), *e;
	size_t	 i;

	if (json_is_string(v)) {
		strlist_add(l, json_string_value(v));
		return;
	}
	json_array_foreach(v, i, e) {
		if (json_is_string(e) && l->n < 256)
			strlist_add(l, json_string_value(e));
	}
}

static char *
claim_str(const json_t *claims, const char *name)
{
	json_t	*v = json_object_get(claims, name);

	if (json_is_string(v))
		return (xstrdup(json_string_value(v)));
	if (json_is_integer(v)) {
		char *s;

		xasprintf(&s, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return (s);
	}
	return (NULL);
}

static time_t
claim_time(const json_t *claims, const char *name)
{
	json_t	*v = json_object_get(claims, name);

	return (json_is_number(v) ? (time_t)json_number_value(v) : 0);
}

/*
 * Verify one of our JWTs or a legacy one, chosen by the token's issuer and
 * key id, never by trying keys in turn. On success *out holds a new
 * principal; on failure *reason says why (safe to show the client).
 */
int
tokens_verify_jwt(const char *token, size_t len, struct principal **out,
    const char **reason)
{
	static const char *const	 own_required[] = {
		"sub", "sid", "jti", NULL
	};
	static const char *const	 typs[] = { "JWT", NULL };
	static char			 why[200];
	struct crypto_err		 err;
	struct jose_jws			*jws;
	struct jose_claims_rules	 rules;
	const struct crypto_key		*key = NULL;
	const char			*iss, *our = tokens_issuer(cfg);
	const char			*auds[2] = { NULL, NULL };
	struct principal		*p;
	int				 legacy = 0;

	*out = NULL;
	if ((jws = jose_parse(token, len, &err)) == NULL) {
		snprintf(why, sizeof why, "malformed token: %s", err.msg);
		*reason = why;
		return (-1);
	}
	iss = json_string_value(json_object_get(jws->claims, "iss"));
	if (iss != NULL && strcmp(iss, our) == 0 && jws->kid != NULL &&
	    jose_keyset_find(tok.ks.verify, jws->kid, jws->alg) == NULL &&
	    db_data_version() != tok.data_version) {
		/*
		 * An unknown kid of ours after another process wrote (say
		 * "signing-key rotate", then "token mint"): catch up first.
		 */
		tokens_sync();
	}
	if (iss != NULL && strcmp(iss, our) == 0 && jws->kid != NULL &&
	    (key = jose_keyset_find(tok.ks.verify, jws->kid, jws->alg)) !=
	    NULL)
		legacy = 0;
	else if (tok.ks.legacy != NULL &&
	    jws->alg == crypto_key_alg(tok.ks.legacy) &&
	    (cfg->jwt_legacy_issuer != NULL ? (iss != NULL &&
	    strcmp(iss, cfg->jwt_legacy_issuer) == 0) :
	    (iss == NULL || strcmp(iss, our) != 0 || jws->kid == NULL))) {
		key = tok.ks.legacy;
		legacy = 1;
	} else {
		*reason = iss != NULL && strcmp(iss, our) == 0 ?
		    "token signed by an unknown key" : "unknown token issuer";
		jose_jws_free(jws);
		return (-1);
	}
	if (jose_verify(jws, key, &err) == -1) {
		snprintf(why, sizeof why, "%s", err.msg);
		*reason = why;
		jose_jws_free(jws);
		return (-1);
	}
	memset(&rules, 0, sizeof rules);
	rules.now = now_wall();
	rules.leeway = TOKEN_LEEWAY;
	rules.require_exp = 1;
	if (!legacy) {
		if (jose_check_typ(jws, typs, 0, &err) == -1) {
			snprintf(why, sizeof why, "%s", err.msg);
			*reason = why;
			jose_jws_free(jws);
			return (-1);
		}
		rules.issuer = our;
		auds[0] = cfg->jwt_audience;
		rules.audiences = auds;
		rules.require_iat = 1;
		rules.required = own_required;
	} else {
		static const char *const legacy_required[] = { "sub", NULL };

		rules.issuer = cfg->jwt_legacy_issuer;
		rules.any_issuer = cfg->jwt_legacy_issuer == NULL;
		auds[0] = cfg->jwt_legacy_audience;
		rules.audiences = auds;
		rules.any_audience = cfg->jwt_legacy_audience == NULL;
		rules.required = legacy_required;
	}
	if (jose_claims_check(jws->claims, &rules, &err) == -1) {
		snprintf(why, sizeof why, "%s", err.msg);
		*reason = why;
		jose_jws_free(jws);
		return (-1);
	}

	p = principal_new(legacy ? PRINCIPAL_LEGACY : PRINCIPAL_JWT);
	p->sub = claim_str(jws->claims, "sub");
	p->provider = claim_str(jws->claims, "provider");
	p->email = claim_str(jws->claims, "email");
	/* A legacy token's email is the operator's word (a shared secret). */
	p->email_verified = legacy || json_is_true(json_object_get(jws->claims,
	    "email_verified"));
	p->name = claim_str(jws->claims, "name");
	p->iat = claim_time(jws->claims, "iat");
	p->exp = claim_time(jws->claims, "exp");
	if (!legacy)
		p->sid = claim_str(jws->claims, "sid");
	claims_strlist(jws->claims, "groups", &p->groups);
	claims_strlist(jws->claims, "scopes", &p->scopes);
	if (p->provider == NULL)
		p->provider = xstrdup(legacy ? "legacy" : "local");
	if (p->sub == NULL || *p->sub == '\0') {
		principal_unref(p);
		jose_jws_free(jws);
		*reason = "token has no subject";
		return (-1);
	}
	jose_jws_free(jws);
	*out = p;
	return (0);
}
