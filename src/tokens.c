/*
 * tokens.c: the tokens module: our access tokens, refresh tokens and
 * signing keys, started, synced, kept and stopped as one (modules.c).
 *
 *	tokens-keys.c		signing keys, the KEK, the JWKS, reloads
 *	tokens-jwt.c		access tokens: minting and verifying
 *	tokens-refresh.c	sessions (token families) and refresh tokens
 *	tokens-revoked.c	the revoked families held in memory
 *	principal.c		who a verified credential stands for
 *
 * Revocation is enforced in memory on every request: revoked families and
 * the users' state are loaded at start, updated by our own writes, and
 * reloaded when another process (an admin command) changes the database,
 * which modules.c learns from PRAGMA data_version within a second. The
 * admin commands start this module alone (cmd.c's cmd_open), so tokens_init
 * loads the users' state and the API keys too.
 */

#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "bsp.h"
#include "crypto.h"
#include "tokens.h"

static struct {
	long long	 data_version;	/* the database's, at the last sync */
} tok;

static struct db_stmt st_fam_purge = { "DELETE FROM token_families WHERE "
    "expires < ?", NULL, NULL };
static struct db_stmt st_rt_forget = { "UPDATE refresh_tokens SET "
    "successor_sealed = NULL WHERE used_at IS NOT NULL AND used_at < ? AND "
    "successor_sealed IS NOT NULL", NULL, NULL };
static struct db_stmt st_state_purge = { "DELETE FROM oauth_states WHERE "
    "expires < ?", NULL, NULL };

/* The checks of jwt.* and api_keys.* that need more than the table. */
void
tokens_config_check(struct config *c, struct config_errors *errs)
{
	struct crypto_err	 err;
	struct crypto_key	*k;

	if (c->jwt_algorithm == JWT_ALG_HS256) {
		if (c->jwt_secret == NULL)
			config_add_error(errs, c, "jwt.algorithm",
			    "jwt.algorithm HS256 needs jwt.secret (or "
			    "jwt.secret_file)");
		else if ((k = crypto_key_from_secret(CRYPTO_ALG_HS256,
		    c->jwt_secret, strlen(c->jwt_secret), &err)) == NULL)
			config_add_error(errs, c, "jwt.secret",
			    "jwt.secret: %s", err.msg);
		else
			crypto_key_free(k);
		if (c->jwt_key_file != NULL)
			config_add_error(errs, c, "jwt.key_file",
			    "jwt.key_file is for EdDSA, ES256 and RS256, not "
			    "HS256");
	} else if (c->jwt_secret != NULL)
		config_add_error(errs, c, "jwt.secret", "jwt.secret is only "
		    "used when jwt.algorithm is HS256");
	if (c->jwt_legacy_secret != NULL) {
		if ((k = crypto_key_from_secret(tokens_keys_legacy_alg(
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
		config_add_error(errs, c, "jwt.audience", "jwt.audience must "
		    "not be empty");
}

/* A random id (a session, a jti) of nbytes, in base64url. */
char *
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

/*
 * Reload what another process may have changed here: revoked families and
 * signing keys (after "signing-key rotate"). Users and API keys have their
 * own sync in the modules table.
 */
void
tokens_sync(void)
{
	if (tokens_revoked_load() == -1)
		log_warnx("cannot reload revoked sessions: %s", db_errmsg());
	tokens_keys_sync();
	tok.data_version = db_data_version();
}

/* Sync now if another process wrote since the last sync. */
void
tokens_catch_up(void)
{
	if (db_data_version() != tok.data_version)
		tokens_sync();
}

/* Housekeeping: expired sessions, states, old signing keys. */
void
tokens_maint(time_t now)
{
	sqlite3_stmt	*st;

	st = db_prepare(&st_fam_purge);
	sqlite3_bind_int64(st, 1,
	    (sqlite3_int64)tokens_revoked_horizon(now));
	if (sqlite3_step(st) != SQLITE_DONE)
		log_warnx("cannot purge expired sessions: %s", db_errmsg());
	st = db_prepare(&st_rt_forget);
	sqlite3_bind_int64(st, 1,
	    (sqlite3_int64)(now - cfg->jwt_refresh_grace));
	if (sqlite3_step(st) != SQLITE_DONE)
		log_warnx("cannot forget old successors: %s", db_errmsg());
	st = db_prepare(&st_state_purge);
	sqlite3_bind_int64(st, 1, (sqlite3_int64)now);
	if (sqlite3_step(st) != SQLITE_DONE)
		log_warnx("cannot purge login states: %s", db_errmsg());
	tokens_keys_maint(now);
	tokens_revoked_expire(now);
}

/*
 * Start: the key-encryption key, signing keys (generated if needed), the
 * revocation state: the users' and the revoked families; and the API keys.
 */
int
tokens_init(struct config *c, char **cause)
{
	if (crypto_init() == -1) {
		xasprintf(cause, "cannot initialise the crypto library");
		return (-1);
	}
	if (tokens_keys_init(c, cause) == -1)
		return (-1);
	if (users_load_state() == -1 || tokens_revoked_load() == -1 ||
	    apikeys_load() == -1) {
		xasprintf(cause, "cannot load token state: %s", db_errmsg());
		return (-1);
	}
	tok.data_version = db_data_version();
	return (0);
}

void
tokens_free(void)
{
	apikeys_flush_last_used();
	tokens_keys_free();
	tokens_revoked_clear();
	users_state_free();
	apikeys_free();
}
