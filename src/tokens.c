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
 * loaded again when another process (an admin command) or daemon changes
 * the database, which the store tells modules.c (store_watch). Until they
 * have been loaded once (PostgreSQL connects in the background), the
 * credential checks answer 503. The admin commands start this module
 * alone (cmd.c's cmd_open), so tokens_init loads the users' state and the
 * API keys too.
 */

#include <stdlib.h>
#include <string.h>

#include "bsp.h"
#include "crypto.h"
#include "store.h"
#include "tokens.h"

static struct {
	int		 pending;	/* loads of the first round not over */
	int		 failed;
	char		*cause;
	volatile int	 first_done;
} tok;

/* What a load or a purge is of, for its callback (and the log). */
static char	what_keys[] = "signing keys";
static char	what_users[] = "users";
static char	what_revoked[] = "revoked sessions";
static char	what_apikeys[] = "API keys";

static struct store_stmt st_fam_purge = STORE_STMT("DELETE FROM "
    "token_families WHERE expires < $1");
static struct store_stmt st_rt_forget = STORE_STMT("UPDATE refresh_tokens "
    "SET successor_sealed = NULL WHERE used_at IS NOT NULL AND used_at < $1 "
    "AND successor_sealed IS NOT NULL");
static struct store_stmt st_state_purge = STORE_STMT("DELETE FROM "
    "oauth_states WHERE expires < $1");

/* The checks of jwt.* and api_keys.* that need more than the table. */
void
tokens_config_check(struct config *c, struct config_errors *errs)
{
	struct crypto_err	 err;
	struct crypto_key	*k;
	struct store_conf	 sc;
	char			*cause = NULL;

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
	/*
	 * Daemons sharing a PostgreSQL database share the key-encryption
	 * key too: there is no file beside the database to keep it in.
	 */
	if (c->jwt_kek_file == NULL && store_conf_from_url(c->database_url,
	    &sc, &cause) == 0) {
		if (sc.kind == STORE_PG)
			config_add_error(errs, c, "database.url", "a "
			    "PostgreSQL database.url needs jwt.kek_file: the "
			    "key-encryption key every daemon sharing the "
			    "database is given");
		store_conf_clear(&sc);
	}
	free(cause);
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
	tokens_revoked_load(NULL, NULL);
	tokens_keys_sync();
}

/* The housekeeping's purges under way. */
struct tokens_purge_op {
	int		 pending;
	int		 status;
	store_end_cb	 done;
	void		*arg;
};

static void
tokens_purged(int status, void *arg)
{
	struct tokens_purge_op	*op = arg;

	if (status != STORE_OK)
		op->status = status;
	if (--op->pending > 0)
		return;
	if (op->status != STORE_OK)
		log_warnx("cannot purge expired sessions, login states or old "
		    "signing keys");
	if (op->done != NULL)
		op->done(op->status, op->arg);
	free(op);
}

/*
 * Expired sessions, old successors, login states, old signing keys and
 * the revocations held that no token needs; done(status, arg) if given.
 */
void
tokens_purge(time_t now, store_end_cb done, void *arg)
{
	struct tokens_purge_op	*op;
	time_t			 horizon = tokens_revoked_horizon(now);
	time_t			 grace = now - (time_t)cfg->jwt_refresh_grace;
	struct store_param	 fam[] = { SP_INT(horizon) };
	struct store_param	 rt[] = { SP_INT(grace) };
	struct store_param	 st[] = { SP_INT(now) };

	tokens_revoked_expire(now);
	op = xcalloc(1, sizeof *op);
	op->pending = 4;
	op->done = done;
	op->arg = arg;
	store_run(STORE_WRITE, &st_fam_purge, fam, nitems(fam), NULL,
	    tokens_purged, op);
	store_run(STORE_WRITE, &st_rt_forget, rt, nitems(rt), NULL,
	    tokens_purged, op);
	store_run(STORE_WRITE, &st_state_purge, st, nitems(st), NULL,
	    tokens_purged, op);
	tokens_keys_purge(now, tokens_purged, op);
}

/* Housekeeping: expired sessions, states, old signing keys. */
void
tokens_maint(time_t now)
{
	tokens_purge(now, NULL, NULL);
}

/* One load of the first round is over. */
static void
tokens_first_loaded(int status, void *arg)
{
	const char	*what = arg;

	if (status != STORE_OK && !tok.failed) {
		tok.failed = 1;
		free(tok.cause);
		if (what == what_keys &&
		    tokens_keys_error() != NULL)
			tok.cause = xstrdup(tokens_keys_error());
		else
			xasprintf(&tok.cause, "cannot load token state: %s",
			    what);
	}
	if (--tok.pending == 0)
		tok.first_done = 1;
}

/*
 * Start: the key-encryption key, signing keys (generated if needed), the
 * revocation state: the users' and the revoked families; and the API keys.
 * With SQLite all of it is loaded when this returns (-1 with *cause if it
 * cannot be); with PostgreSQL it loads when the database is ready
 * (tokens_wait, or the modules' sync), and a failure that no retry mends
 * goes to the hook of tokens_on_fatal().
 */
int
tokens_init(struct config *c, char **cause)
{
	const char	*detail;

	if (crypto_init() == -1) {
		xasprintf(cause, "cannot initialise the crypto library");
		return (-1);
	}
	free(tok.cause);
	memset(&tok, 0, sizeof tok);
	if (!store_ready(&detail))
		return (0);	/* the first sync loads it all */
	tok.pending = 4;
	tokens_keys_load(tokens_first_loaded, what_keys);
	users_load_state(tokens_first_loaded, what_users);
	tokens_revoked_load(tokens_first_loaded, what_revoked);
	apikeys_load(tokens_first_loaded, what_apikeys);
	if (tok.first_done && tok.failed) {
		*cause = tok.cause;
		tok.cause = NULL;
		return (-1);
	}
	return (0);
}

/* A failure no retry mends (another KEK): fn(cause). */
void
tokens_on_fatal(void (*fn)(const char *))
{
	tokens_keys_on_fatal(fn);
}

/* Outside the loop (commands, tests): wait for tokens_init's loads. */
int
tokens_wait(char **cause)
{
	if (tok.pending == 0 && !tok.first_done) {
		xasprintf(cause, "the database is not ready");
		return (-1);
	}
	store_wait(&tok.first_done);
	if (tok.failed) {
		*cause = tok.cause;
		tok.cause = NULL;
		return (-1);
	}
	return (0);
}

/*
 * Is what the credential checks need in memory: the users' state, the
 * revoked sessions, the API keys and the signing keys, loaded once?
 */
int
tokens_loaded(const char **detail)
{
	if (users_loaded() && tokens_revoked_loaded() && apikeys_loaded() &&
	    tokens_keys_loaded())
		return (1);
	*detail = "the users' state, revoked sessions, API keys and signing "
	    "keys are not loaded yet";
	return (0);
}

/*
 * Is what was loaded last still to be trusted? While PostgreSQL is
 * unreachable, revocations made through other daemons go unheard: the
 * state loaded last is used for database.offline_grace after it was last
 * known current, and no longer.
 */
int
tokens_fresh(const struct config *c, const char **detail)
{
	if (store_stale_for() <= (double)c->database_offline_grace)
		return (1);
	*detail = "the revocation state is stale: the database has been "
	    "unreachable for longer than database.offline_grace; try again "
	    "when it is back";
	return (0);
}

static void
tokens_flushed(int status, void *arg)
{
	int	*done = arg;

	*done = 1;
}

void
tokens_free(void)
{
	int	done = 0;

	/* The last API key uses, written before we go. */
	apikeys_flush_last_used(tokens_flushed, &done);
	if (!done && bsp_base != NULL)
		store_wait(&done);
	tokens_keys_free();
	tokens_revoked_clear();
	users_state_free();
	apikeys_free();
	free(tok.cause);
	memset(&tok, 0, sizeof tok);
}
