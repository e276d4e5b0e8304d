/*
 * fuzz-oidc-json.c: libFuzzer target for strict JSON loading and JWT
 * claim checks.
 *
 * Each input is JSON text for jose_json_load(), as ID-token claims, a
 * userinfo answer or a discovery document would be. An object that loads
 * is checked with jose_claims_check() under fixed rules: ours (issuer,
 * audiences, exp, max_age, sub), a provider's with any issuer and any
 * audience, one with nbf and iat required and a negative leeway, and
 * rules that name no issuer. Oracles that abort: what loads is an object
 * at most JOSE_DEPTH_MAX deep that dumps and loads back equal; what
 * jansson itself takes as such an object (without duplicates, within the
 * size) is not refused; a refusal always says why; rules without an
 * issuer or audience always refuse; relaxing the issuer and audience never
 * turns a pass into a refusal; a pass under our rules means iss, aud and
 * exp really hold.
 */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bsp.h"
#include "crypto.h"
#include "jose.h"
#include "json-depth.h"

#define FZ_NOW		1700000000
#define FZ_ISSUER	"https://issuer.example"

int		 LLVMFuzzerTestOneInput(const uint8_t *, size_t);
static int	 fz_check(const json_t *, const struct jose_claims_rules *);
static void	 fz_claims(const json_t *);

static const char *const fz_auds[] = { "bedrock", "other", NULL };
static const char *const fz_none[] = { NULL };
static const char *const fz_sub[] = { "sub", NULL };
static const char *const fz_sub_email[] = { "sub", "email", NULL };

static int
fz_check(const json_t *j, const struct jose_claims_rules *r)
{
	struct crypto_err	err;
	int			rv;

	err.msg[0] = '\0';
	rv = jose_claims_check(j, r, &err);
	if (rv != 0 && (rv != -1 || err.msg[0] == '\0'))
		abort();
	return (rv);
}

static void
fz_claims(const json_t *j)
{
	struct jose_claims_rules	 ours, relaxed, strict, bad;
	json_t				*v;
	int				 rv;

	memset(&ours, 0, sizeof ours);
	ours.issuer = FZ_ISSUER;
	ours.audiences = fz_auds;
	ours.now = FZ_NOW;
	ours.leeway = 60;
	ours.require_exp = 1;
	ours.max_age = 86400;
	ours.required = fz_sub;
	rv = fz_check(j, &ours);
	if (rv == 0) {
		v = json_object_get(j, "iss");
		if (!json_is_string(v) || strcmp(json_string_value(v),
		    FZ_ISSUER) != 0 || json_object_get(j, "aud") == NULL ||
		    !json_is_number(v = json_object_get(j, "exp")) ||
		    !(FZ_NOW < json_number_value(v) + 60) ||
		    !json_is_number(json_object_get(j, "iat")))
			abort();
	}

	/* A provider's ID token: any issuer, any audience. */
	relaxed = ours;
	relaxed.any_issuer = 1;
	relaxed.any_audience = 1;
	if (fz_check(j, &relaxed) != 0 && rv == 0)
		abort();
	relaxed.issuer = NULL;
	relaxed.audiences = NULL;
	relaxed.require_exp = 0;
	relaxed.max_age = 0;
	relaxed.required = fz_sub_email;
	(void)fz_check(j, &relaxed);

	/* Everything required, a negative leeway, time zero. */
	memset(&strict, 0, sizeof strict);
	strict.issuer = FZ_ISSUER;
	strict.audiences = fz_auds;
	strict.leeway = -5;
	strict.require_exp = strict.require_iat = strict.require_nbf = 1;
	strict.max_age = 0x7fffffffL;
	(void)fz_check(j, &strict);
	strict.any_audience = 1;
	strict.audiences = fz_none;
	strict.now = (time_t)0x7fffffff;
	(void)fz_check(j, &strict);

	/* Rules that name no issuer or no audience always refuse. */
	bad = ours;
	bad.issuer = NULL;
	if (fz_check(j, &bad) != -1)
		abort();
	bad = ours;
	bad.audiences = fz_none;
	if (fz_check(j, &bad) != -1)
		abort();
	bad.audiences = NULL;
	bad.any_issuer = 1;
	if (fz_check(j, &bad) != -1)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct crypto_err	 err;
	json_error_t		 jerr;
	json_t			*j, *plain, *again, *arr;
	const char		*buf = (const char *)data;
	char			*s;

	if (size > JOSE_JWKS_MAX)
		return (0);
	err.msg[0] = '\0';
	j = jose_json_load(buf, size, JOSE_PAYLOAD_MAX, "claims", &err);

	/* What jansson takes as a shallow enough object is not refused. */
	plain = json_loadb(buf, size, JSON_REJECT_DUPLICATES, &jerr);
	if (plain != NULL && json_is_object(plain) &&
	    size <= JOSE_PAYLOAD_MAX && fz_depth(plain) <= JOSE_DEPTH_MAX &&
	    j == NULL)
		abort();
	json_decref(plain);

	if (j == NULL) {
		if (err.msg[0] == '\0')
			abort();
		/* Not an object: the checks refuse it too. */
		arr = json_loadb(buf, size, JSON_DECODE_ANY, &jerr);
		if (arr != NULL && !json_is_object(arr) &&
		    fz_check(arr, &(struct jose_claims_rules){ .any_issuer = 1,
		    .any_audience = 1 }) != -1)
			abort();
		json_decref(arr);
		return (0);
	}
	if (!json_is_object(j) || fz_depth(j) > JOSE_DEPTH_MAX)
		abort();
	if (size > 0 && jose_json_load(buf, size, size - 1, "claims",
	    &err) != NULL)
		abort();

	/* It dumps and loads back the same. */
	if ((s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY)) == NULL)
		abort();
	again = jose_json_load(s, strlen(s), JOSE_JWKS_MAX, "again", &err);
	if (again == NULL || !json_equal(again, j))
		abort();
	json_decref(again);
	free(s);

	fz_claims(j);
	json_decref(j);
	return (0);
}
