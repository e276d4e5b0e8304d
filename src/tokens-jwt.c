/*
 * tokens-jwt.c: our access tokens, JWS signed with the key of
 * tokens-keys.c: minting one for a user in a session, and verifying one
 * of ours or a legacy one into a principal.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bsp.h"
#include "crypto.h"
#include "jose.h"
#include "store.h"
#include "tokens.h"

static json_t	*jwt_strlist_json(const struct strlist *);
static void	 jwt_claim_strlist(const json_t *, const char *,
		    struct strlist *);
static char	*jwt_claim_str(const json_t *, const char *);
static time_t	 jwt_claim_time(const json_t *, const char *);
static const struct crypto_key *jwt_key(const struct jose_jws *,
		    const char *, int *, const char **);
static int	 jwt_check_claims(const struct jose_jws *, const char *, int,
		    struct crypto_err *);
static struct principal *jwt_principal(const json_t *, int);

/* The iss of our tokens. */
const char *
tokens_issuer(const struct config *c)
{
	return (c->jwt_issuer != NULL ? c->jwt_issuer : c->server_public_url);
}

static json_t *
jwt_strlist_json(const struct strlist *l)
{
	json_t	*a = json_array();
	size_t	 i;

	for (i = 0; i < l->n; i++)
		json_array_append_new(a, json_string(l->v[i]));
	return (a);
}

/* The claims of an access token; NULL if the user's are not JSON. */
static json_t *
jwt_claims(const struct user *u, const char *sid, const struct strlist *scopes,
    time_t exp, time_t now)
{
	json_t		*claims;
	char		*jti;
	struct strlist	 def = { NULL, 0 };

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
	    jwt_strlist_json(&u->groups), "scopes", jwt_strlist_json(scopes));
	free(jti);
	strlist_free(&def);
	if (claims == NULL)
		return (NULL);
	if (u->email != NULL) {
		json_object_set_new(claims, "email", json_string(u->email));
		json_object_set_new(claims, "email_verified",
		    json_boolean(u->email_verified));
	}
	if (u->name != NULL)
		json_object_set_new(claims, "name", json_string(u->name));
	return (claims);
}

/*
 * Sign an access token for a user in a session family, valid until exp,
 * with a key held here. Returns the token (and its iat), or NULL (also
 * when the key is in KMS: tokens_sign() is for that).
 */
char *
tokens_mint(const struct user *u, const char *sid, const struct strlist *scopes,
    time_t exp, time_t *iatp)
{
	struct crypto_err	 err;
	const struct crypto_key	*key;
	json_t			*claims;
	char			*t;
	time_t			 now = now_wall();

	if ((key = tokens_keys_signer()) == NULL || tokens_keys_kms() != NULL)
		return (NULL);
	if ((claims = jwt_claims(u, sid, scopes, exp, now)) == NULL)
		return (NULL);
	t = jose_sign(key, claims, "JWT", &err);
	json_decref(claims);
	if (t == NULL)
		log_warnx("cannot sign an access token: %s", err.msg);
	if (iatp != NULL)
		*iatp = now;
	return (t);
}

/* An access token being signed by KMS. */
struct jwt_sign {
	char		*input;		/* header.payload, room for the rest */
	char		*kid;
	enum crypto_alg	 alg;
	struct kms_sign	*ks;
	void		(*cb)(char *, const char *, void *);
	void		*arg;
};

static void
jwt_sign_free(struct jwt_sign *js)
{
	free(js->input);
	free(js->kid);
	free(js);
}

/* KMS answered: the signature, checked against the key, or a refusal. */
static void
jwt_kms_signed(const uint8_t *der, size_t len, const char *why, void *arg)
{
	struct jwt_sign		*js = arg;
	struct crypto_err	 err;
	const struct crypto_key	*key;
	uint8_t			 sig[CRYPTO_SIG_MAX];
	size_t			 siglen;
	char			*t;

	js->ks = NULL;
	if (der == NULL) {
		js->cb(NULL, why, js->arg);
		jwt_sign_free(js);
		return;
	}
	/* A reload since may have retired it: it verifies all the same. */
	if ((key = tokens_keys_find(js->kid, js->alg)) == NULL) {
		js->cb(NULL, "the signing key changed meanwhile", js->arg);
		jwt_sign_free(js);
		return;
	}
	if (crypto_key_remote_sig(key, js->input, strlen(js->input), der, len,
	    sig, sizeof sig, &siglen, &err) == -1) {
		log_warnx("kms: the signature for key %s is unusable: %s",
		    js->kid, err.msg);
		js->cb(NULL, "KMS answered a signature that does not verify",
		    js->arg);
		jwt_sign_free(js);
		return;
	}
	t = jose_sign_finish(js->input, sig, siglen);
	js->input = NULL;
	js->cb(t, NULL, js->arg);
	jwt_sign_free(js);
}

/*
 * Sign an access token for a user in a session family, valid until exp:
 * cb(token, NULL, arg) (the callback owns it), or cb(NULL, why, arg) with
 * why fit for a client (the token signing service is unavailable). With
 * a key held here the callback runs before this returns; with a key in
 * KMS (jwt.kms_key_id) on a later loop pass, after a Sign call bounded by
 * jwt.kms_timeout.
 */
void
tokens_sign(const struct user *u, const char *sid,
    const struct strlist *scopes, time_t exp,
    void (*cb)(char *, const char *, void *), void *arg)
{
	struct crypto_err	 err;
	const struct crypto_key	*key;
	struct jwt_sign		*js;
	json_t			*claims;
	uint8_t			 digest[CRYPTO_HASH_LEN];
	char			*t;

	if ((key = tokens_keys_signer()) == NULL) {
		cb(NULL, "no signing key", arg);
		return;
	}
	if (tokens_keys_kms() == NULL) {
		if ((t = tokens_mint(u, sid, scopes, exp, NULL)) == NULL)
			cb(NULL, "cannot sign an access token", arg);
		else
			cb(t, NULL, arg);
		return;
	}
	if ((claims = jwt_claims(u, sid, scopes, exp, now_wall())) == NULL) {
		cb(NULL, "cannot sign an access token", arg);
		return;
	}
	js = xcalloc(1, sizeof *js);
	js->input = jose_sign_input(key, claims, "JWT", &err);
	json_decref(claims);
	if (js->input == NULL) {
		log_warnx("cannot sign an access token: %s", err.msg);
		jwt_sign_free(js);
		cb(NULL, "cannot sign an access token", arg);
		return;
	}
	js->kid = xstrdup(crypto_key_kid(key));
	js->alg = crypto_key_alg(key);
	js->cb = cb;
	js->arg = arg;
	crypto_sha256(js->input, strlen(js->input), digest);
	js->ks = kms_sign(tokens_keys_kms(), js->alg, digest, jwt_kms_signed,
	    js);
}

/*
 * What an access token says of its user and session, to tell whether a
 * token signed ahead (outside a unit, with a key in KMS) still fits.
 */
static char *
jwt_fp(const struct user *u, const char *sid, const struct strlist *scopes,
    time_t exp)
{
	json_t	*j;
	char	*s;

	j = json_pack("{s:s,s:s,s:s?,s:s?,s:b,s:s?,s:o,s:o,s:I}", "sub", u->id,
	    "sid", sid, "provider", u->provider, "email", u->email, "ev",
	    u->email_verified, "name", u->name, "groups",
	    jwt_strlist_json(&u->groups), "scopes", scopes != NULL ?
	    jwt_strlist_json(scopes) : json_array(), "exp", (json_int_t)exp);
	if (j == NULL)
		return (xstrdup(""));
	s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(j);
	return (s != NULL ? s : xstrdup(""));
}

void
tokens_pre_clear(struct tokens_pre *pre)
{
	if (pre->token != NULL)
		freezero_str(pre->token);
	free(pre->fp);
	free(pre->why);
	free(pre->sid);
	pre->token = pre->fp = pre->why = pre->sid = NULL;
	pre->exp = 0;
	pre->signing = 0;
}

static void
jwt_pre_signed(char *token, const char *why, void *arg)
{
	struct tokens_pre	*pre = arg;

	pre->signing = 0;
	if (token == NULL) {
		free(pre->fp);
		pre->fp = NULL;
		pre->why = xstrdup(why);
	} else
		pre->token = token;
	pre->cb(token != NULL ? 0 : -1, pre->why, pre->cb_arg);
}

/*
 * Sign an access token ahead of the unit that hands it out (a key in KMS
 * is not waited for inside a unit): for u in session sid until exp.
 * cb(0, NULL, arg) with pre->token, or cb(-1, why, arg) with why fit for
 * a client; see tokens_sign() for when.
 */
void
tokens_pre_sign(struct tokens_pre *pre, const struct user *u, const char *sid,
    const struct strlist *scopes, time_t exp, void (*cb)(int, const char *,
    void *), void *arg)
{
	if (pre->token != NULL)
		freezero_str(pre->token);
	free(pre->fp);
	free(pre->why);
	pre->token = pre->why = NULL;
	pre->fp = jwt_fp(u, sid, scopes, exp);
	pre->cb = cb;
	pre->cb_arg = arg;
	pre->signing = 1;
	tokens_sign(u, sid, scopes, exp, jwt_pre_signed, pre);
}

/*
 * Inside a unit: the access token for u in session sid until exp, taken
 * from pre (signed ahead for the same claims) or signed now with a key
 * held here. 1 it is in pre->token, 0 it must be signed ahead first
 * (tokens_pre_sign(), outside the unit), -1 it cannot be signed.
 */
int
tokens_pre_ready(struct tokens_pre *pre, const struct user *u, const char *sid,
    const struct strlist *scopes, time_t exp)
{
	char	*fp, *t;
	int	 same;

	fp = jwt_fp(u, sid, scopes, exp);
	same = pre->token != NULL && pre->fp != NULL && strcmp(fp,
	    pre->fp) == 0;
	free(fp);
	if (same)
		return (1);
	if (tokens_keys_kms() != NULL)
		return (0);
	if ((t = tokens_mint(u, sid, scopes, exp, NULL)) == NULL)
		return (-1);
	if (pre->token != NULL)
		freezero_str(pre->token);
	pre->token = t;
	return (1);
}

/* Are access tokens signed elsewhere (KMS), on a later loop pass? */
int
tokens_sign_remote(void)
{
	return (tokens_keys_kms() != NULL);
}

/* The token of pre, handed over (the caller owns it). */
char *
tokens_pre_take(struct tokens_pre *pre)
{
	char	*t = pre->token;

	pre->token = NULL;
	return (t);
}

static void
jwt_claim_strlist(const json_t *claims, const char *name, struct strlist *l)
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
jwt_claim_str(const json_t *claims, const char *name)
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
jwt_claim_time(const json_t *claims, const char *name)
{
	json_t	*v = json_object_get(claims, name);

	return (json_is_number(v) ? (time_t)json_number_value(v) : 0);
}

/*
 * The key for a token: one of ours, by its kid, when it is from our
 * issuer; else the legacy key when the token fits it. Never found by
 * trying keys in turn. NULL with *reason set if there is none.
 */
static const struct crypto_key *
jwt_key(const struct jose_jws *jws, const char *our, int *legacy,
    const char **reason)
{
	const struct crypto_key	*key, *lkey;
	const char		*iss;
	int			 ours;

	iss = json_string_value(json_object_get(jws->claims, "iss"));
	ours = iss != NULL && strcmp(iss, our) == 0;
	if (ours && jws->kid != NULL &&
	    tokens_keys_find(jws->kid, jws->alg) == NULL) {
		/*
		 * An unknown kid of ours after another process wrote (say
		 * "signing-key rotate", then "token mint"): catch up first.
		 */
		(void)store_catch_up();
	}
	if (ours && jws->kid != NULL &&
	    (key = tokens_keys_find(jws->kid, jws->alg)) != NULL) {
		*legacy = 0;
		return (key);
	}
	if ((lkey = tokens_keys_legacy()) != NULL &&
	    jws->alg == crypto_key_alg(lkey) &&
	    (cfg->jwt_legacy_issuer != NULL ? (iss != NULL &&
	    strcmp(iss, cfg->jwt_legacy_issuer) == 0) :
	    (!ours || jws->kid == NULL))) {
		*legacy = 1;
		return (lkey);
	}
	*reason = ours ? "token signed by an unknown key" :
	    "unknown token issuer";
	return (NULL);
}

/* The header and claims our tokens, or legacy ones, must have. */
static int
jwt_check_claims(const struct jose_jws *jws, const char *our, int legacy,
    struct crypto_err *err)
{
	static const char *const	 own_required[] = {
		"sub", "sid", "jti", NULL
	};
	static const char *const	 legacy_required[] = { "sub", NULL };
	static const char *const	 typs[] = { "JWT", NULL };
	struct jose_claims_rules	 rules;
	const char			*auds[2] = { NULL, NULL };

	memset(&rules, 0, sizeof rules);
	rules.now = now_wall();
	rules.leeway = TOKEN_LEEWAY;
	rules.require_exp = 1;
	if (!legacy) {
		if (jose_check_typ(jws, typs, 0, err) == -1)
			return (-1);
		rules.issuer = our;
		auds[0] = cfg->jwt_audience;
		rules.audiences = auds;
		rules.require_iat = 1;
		rules.required = own_required;
	} else {
		rules.issuer = cfg->jwt_legacy_issuer;
		rules.any_issuer = cfg->jwt_legacy_issuer == NULL;
		auds[0] = cfg->jwt_legacy_audience;
		rules.audiences = auds;
		rules.any_audience = cfg->jwt_legacy_audience == NULL;
		rules.required = legacy_required;
	}
	return (jose_claims_check(jws->claims, &rules, err));
}

/* Who a verified token stands for; NULL if it names no subject. */
static struct principal *
jwt_principal(const json_t *claims, int legacy)
{
	struct principal	*p;

	p = principal_new(legacy ? PRINCIPAL_LEGACY : PRINCIPAL_JWT);
	p->sub = jwt_claim_str(claims, "sub");
	p->provider = jwt_claim_str(claims, "provider");
	p->email = jwt_claim_str(claims, "email");
	/* A legacy token's email is the operator's word (a shared secret). */
	p->email_verified = legacy || json_is_true(json_object_get(claims,
	    "email_verified"));
	p->name = jwt_claim_str(claims, "name");
	p->iat = jwt_claim_time(claims, "iat");
	p->exp = jwt_claim_time(claims, "exp");
	if (!legacy)
		p->sid = jwt_claim_str(claims, "sid");
	jwt_claim_strlist(claims, "groups", &p->groups);
	jwt_claim_strlist(claims, "scopes", &p->scopes);
	if (p->provider == NULL)
		p->provider = xstrdup(legacy ? "legacy" : "local");
	if (p->sub == NULL || *p->sub == '\0') {
		principal_unref(p);
		return (NULL);
	}
	return (p);
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
	static char		 why[200];
	struct crypto_err	 err;
	struct jose_jws		*jws;
	const struct crypto_key	*key;
	const char		*our = tokens_issuer(cfg);
	int			 legacy = 0, rc = -1;

	*out = NULL;
	if ((jws = jose_parse(token, len, &err)) == NULL) {
		snprintf(why, sizeof why, "malformed token: %s", err.msg);
		*reason = why;
		return (-1);
	}
	if ((key = jwt_key(jws, our, &legacy, reason)) == NULL)
		goto out;
	if (jose_verify(jws, key, &err) == -1 ||
	    jwt_check_claims(jws, our, legacy, &err) == -1) {
		snprintf(why, sizeof why, "%s", err.msg);
		*reason = why;
		goto out;
	}
	if ((*out = jwt_principal(jws->claims, legacy)) == NULL) {
		*reason = "token has no subject";
		goto out;
	}
	rc = 0;
out:
	jose_jws_free(jws);
	return (rc);
}
