/*
 * oauth-trusted.c: bearer tokens of the trusted issuers
 * (oauth.trusted_issuers): another identity provider's JWTs, accepted as
 * our own credentials when their signature (the issuer's JWKS), claims
 * (iss, aud or Cognito's client_id, exp, token_use) and the access policy
 * allow. auth.c asks, with the issuer the token names.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bsp.h"
#include "crypto.h"
#include "jose.h"
#include "oidc.h"

/* The trusted issuer a token names in its (not yet verified) iss, or -1. */
int
oauth_issuer_index(const struct config *c, const char *iss)
{
	size_t	i;

	if (iss == NULL)
		return (-1);
	for (i = 0; i < c->nissuers; i++) {
		if (c->issuers[i].issuer != NULL &&
		    strcmp(c->issuers[i].issuer, iss) == 0)
			return ((int)i);
	}
	return (-1);
}

/* The shared issuer object of a trusted issuer (a new reference). */
struct oidc_issuer *
oauth_issuer_ref(const struct issuer_config *ic)
{
	return (oidc_issuer_get(ic->issuer, ic->jwks_uri, &ic->algorithms,
	    ic->jwks_uri == NULL ? OIDC_DISCOVERY : 0));
}

/*
 * The token's signature, type and claims, by the issuer's keys and rules:
 * 0 with *out the token; -1 refused (*why); 1 while the issuer's keys are
 * fetched again (as oauth_verify_external).
 */
static int
trusted_check(const struct issuer_config *ic, struct oidc_issuer *iss,
    const char *token, size_t len, struct jose_jws **out, const char **why,
    void (*cb)(void *), void *arg)
{
	static const char *const	 typs[] = { "JWT", "at+jwt", NULL };
	static char			 buf[200];
	struct crypto_err		 err;
	struct jose_jws			*jws;
	struct jose_claims_rules	 rules;
	const struct crypto_key		*key;
	const char			*auds[65], *s;
	size_t				 i;
	int				 rc;

	*out = NULL;
	if ((jws = jose_parse(token, len, &err)) == NULL) {
		snprintf(buf, sizeof buf, "malformed token: %s", err.msg);
		*why = buf;
		return (-1);
	}
	rc = oidc_find_key(iss, jws->kid, jws->alg, &key, cb, arg);
	if (rc != 1) {
		jose_jws_free(jws);
		if (rc == -1)
			return (1);
		*why = "token signed by a key its issuer does not publish";
		return (-1);
	}
	if (jose_verify(jws, key, &err) == -1 ||
	    jose_check_typ(jws, typs, 0, &err) == -1) {
		snprintf(buf, sizeof buf, "%s", err.msg);
		*why = buf;
		jose_jws_free(jws);
		return (-1);
	}
	memset(&rules, 0, sizeof rules);
	rules.issuer = ic->issuer;
	for (i = 0; i < ic->audience.n && i < 64; i++)
		auds[i] = ic->audience.v[i];
	auds[i] = NULL;
	rules.audiences = auds;
	rules.now = now_wall();
	rules.leeway = OAUTH_LEEWAY;
	rules.require_exp = 1;
	/* Cognito access tokens carry client_id instead of aud. */
	if (json_object_get(jws->claims, "aud") == NULL) {
		s = json_string_value(json_object_get(jws->claims,
		    "client_id"));
		if (s == NULL || !strlist_contains(&ic->audience, s)) {
			jose_jws_free(jws);
			*why = "wrong audience";
			return (-1);
		}
		rules.any_audience = 1;
	}
	if (jose_claims_check(jws->claims, &rules, &err) == -1) {
		snprintf(buf, sizeof buf, "%s", err.msg);
		*why = buf;
		jose_jws_free(jws);
		return (-1);
	}
	if (ic->token_use != NULL && ((s = json_string_value(json_object_get(
	    jws->claims, "token_use"))) == NULL || strcmp(s, ic->token_use) !=
	    0)) {
		jose_jws_free(jws);
		*why = "wrong token_use";
		return (-1);
	}
	*out = jws;
	return (0);
}

/* Who a token's claims name, by the issuer's claim names; -1: nobody. */
static int
trusted_identity(const struct issuer_config *ic, json_t *claims,
    struct identity *id)
{
	json_t		*v, *e;
	const char	*s;
	size_t		 i;

	memset(id, 0, sizeof *id);
	v = json_object_get(claims, ic->subject_claim);
	if (json_is_string(v) && json_string_length(v) > 0 &&
	    json_string_length(v) <= 255)
		id->subject = xstrdup(json_string_value(v));
	else if (json_is_integer(v))
		xasprintf(&id->subject, "%" JSON_INTEGER_FORMAT,
		    json_integer_value(v));
	if (id->subject == NULL)
		return (-1);
	v = json_object_get(claims, ic->email_claim);
	if (json_is_string(v) && strchr(json_string_value(v), '@') != NULL)
		id->email = xstrdup(json_string_value(v));
	id->email_verified = json_is_true(json_object_get(claims,
	    "email_verified"));
	v = json_object_get(claims, ic->groups_claim);
	if (json_is_string(v))
		strlist_add(&id->groups, json_string_value(v));
	else json_array_foreach(v, i, e) {
		if (json_is_string(e) && id->groups.n < 256)
			strlist_add(&id->groups, json_string_value(e));
	}
	if ((s = json_string_value(json_object_get(claims, "tid"))) != NULL)
		id->tenant = xstrdup(s);
	return (0);
}

/* The principal of a verified token and who it names. */
static struct principal *
trusted_principal(const struct issuer_config *ic, const struct identity *id,
    json_t *claims)
{
	struct principal	*p;
	json_t			*v;

	p = principal_new(PRINCIPAL_EXTERNAL);
	xasprintf(&p->sub, "%s:%s", ic->provider_name, id->subject);
	p->provider = xstrdup(ic->provider_name);
	if (id->email != NULL)
		p->email = xstrdup(id->email);
	p->email_verified = id->email_verified;
	strlist_copy(&p->groups, &id->groups);
	if (id->tenant != NULL)
		p->tenant = xstrdup(id->tenant);
	v = json_object_get(claims, "exp");
	p->exp = (time_t)json_number_value(v);
	v = json_object_get(claims, "iat");
	p->iat = json_is_number(v) ? (time_t)json_number_value(v) : 0;
	return (p);
}

/*
 * Verify a bearer JWT from a trusted issuer, with that issuer's keys and
 * the same claim rules as every token; then the access policy on its
 * claims. 0 with *out set; -1 refused (*why, *code 401 or 403); 1 while
 * the issuer's keys are fetched again (cb(arg) runs when done; call again
 * with cb NULL for a final answer). With cb NULL it never returns 1.
 */
int
oauth_verify_external(const struct config *c, const struct issuer_config *ic,
    struct oidc_issuer *iss, const char *token, size_t len,
    struct principal **out, const char **why, int *code, void (*cb)(void *),
    void *arg)
{
	struct jose_jws		*jws;
	struct identity		 id;
	int			 rc;

	*out = NULL;
	*code = 401;
	if ((rc = trusted_check(ic, iss, token, len, &jws, why, cb, arg)) != 0)
		return (rc);
	if (trusted_identity(ic, jws->claims, &id) == -1) {
		jose_jws_free(jws);
		*why = "token names no subject";
		return (-1);
	}
	if (!access_allowed(c, NULL, &id, why)) {
		identity_clear(&id);
		jose_jws_free(jws);
		*code = 403;
		return (-1);
	}
	*out = trusted_principal(ic, &id, jws->claims);
	identity_clear(&id);
	jose_jws_free(jws);
	return (0);
}
