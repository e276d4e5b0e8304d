/*
 * jose.c: compact JWS, JWK sets and JWT claims, strictly and with bounds.
 *
 * Tokens and JWK sets come from the network, so every step refuses rather
 * than guesses: exactly three base64url parts without padding, protected
 * headers and claims that are JSON objects without duplicate members and
 * at most JOSE_DEPTH_MAX deep, a known "alg" (never "none"), no "crit" and
 * no header that names a key (jku, x5u, jwk, x5c). A token is verified only
 * with a key pinned to the algorithm the token claims. The claims of our
 * own tokens and of identity providers' tokens go through the same
 * jose_claims_check(). No key bytes pass through here: JWK parameters go
 * to crypto.c as public values or, for "oct" keys, as base64url text.
 */

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "bsp.h"
#include "crypto.h"
#include "jose.h"

/* Protected header members that would make us fetch or trust a key. */
static const char *const jose_refused_headers[] = {
	"crit", "jku", "x5u", "jwk", "x5c", "b64",
};

static void	 jose_seterr(struct crypto_err *, const char *, ...)
		    printflike(2, 3);
static int	 jose_json_depth_ok(const char *, size_t, int);
static int	 jose_json_walk(json_t *, int);
static uint8_t	*jose_b64_segment(const char *, size_t, size_t, size_t *);
static const char *jose_typ_strip(const char *);
static int	 jose_claim_time(const json_t *, const char *, int, double *,
		    int *, struct crypto_err *);
static int	 jose_aud_match(const json_t *, const char *const *);
static int	 jose_alg_allowed(const enum crypto_alg *, enum crypto_alg);
static int	 jose_jwk_b64(const json_t *, const char *, uint8_t *, size_t,
		    size_t *, struct crypto_err *);
static int	 jose_header_check(struct jose_jws *, struct crypto_err *);
static int	 jose_jwk_kind(const json_t *, struct crypto_pub *,
		    struct crypto_err *);
static enum crypto_alg jose_jwk_alg(const json_t *, const struct crypto_pub *,
		    const enum crypto_alg *, struct crypto_err *);
static struct crypto_key *jose_jwk_key(const json_t *, enum crypto_alg,
		    struct crypto_pub *, struct crypto_err *);
static int	 jose_set_b64(json_t *, const char *, const uint8_t *,
		    size_t);

static void
jose_seterr(struct crypto_err *err, const char *fmt, ...)
{
	va_list	ap;

	if (err == NULL)
		return;
	va_start(ap, fmt);
	(void)vsnprintf(err->msg, sizeof err->msg, fmt, ap);
	va_end(ap);
}

/*
 * Count the nesting of JSON text before jansson recurses into it, so that
 * "[[[[..." cannot take the parser deep. Brackets inside strings do not
 * count; malformed text is left for jansson to refuse.
 */
static int
jose_json_depth_ok(const char *buf, size_t len, int max)
{
	size_t	i;
	int	depth = 0, instr = 0;

	for (i = 0; i < len; i++) {
		if (instr) {
			if (buf[i] == '\\')
				i++;
			else if (buf[i] == '"')
				instr = 0;
			continue;
		}
		switch (buf[i]) {
		case '"':
			instr = 1;
			break;
		case '{':
		case '[':
			if (++depth > max)
				return (0);
			break;
		case '}':
		case ']':
			depth--;
			break;
		}
	}
	return (1);
}

/* Check a parsed value's depth; -1 if it has more than left levels. */
static int
jose_json_walk(json_t *j, int left)
{
	const char	*k;
	json_t		*v;
	size_t		 i;

	if (!json_is_object(j) && !json_is_array(j))
		return (0);
	if (left <= 0)
		return (-1);
	if (json_is_object(j)) {
		json_object_foreach(j, k, v) {
			if (jose_json_walk(v, left - 1) == -1)
				return (-1);
		}
	} else {
		json_array_foreach(j, i, v) {
			if (jose_json_walk(v, left - 1) == -1)
				return (-1);
		}
	}
	return (0);
}

/*
 * Parse untrusted JSON text that must be an object: at most max bytes,
 * at most JOSE_DEPTH_MAX deep, no duplicate members, valid UTF-8 without
 * NULs. what names the document in the reason for a refusal.
 */
json_t *
jose_json_load(const char *buf, size_t len, size_t max, const char *what,
    struct crypto_err *err)
{
	json_error_t	 jerr;
	json_t		*j;

	if (len > max) {
		jose_seterr(err, "%s is too large", what);
		return (NULL);
	}
	if (!jose_json_depth_ok(buf, len, JOSE_DEPTH_MAX)) {
		jose_seterr(err, "%s is nested too deeply", what);
		return (NULL);
	}
	j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (j == NULL) {
		jose_seterr(err, "%s is not valid JSON", what);
		return (NULL);
	}
	if (!json_is_object(j)) {
		jose_seterr(err, "%s is not a JSON object", what);
		json_decref(j);
		return (NULL);
	}
	if (jose_json_walk(j, JOSE_DEPTH_MAX) == -1) {
		jose_seterr(err, "%s is nested too deeply", what);
		json_decref(j);
		return (NULL);
	}
	return (j);
}

/* Decode one base64url part of a token into a new buffer of at most max. */
static uint8_t *
jose_b64_segment(const char *s, size_t len, size_t max, size_t *outlen)
{
	uint8_t	*out;

	*outlen = 0;
	if (len > crypto_b64url_len(max))
		return (NULL);
	out = xmalloc(len / 4 * 3 + 3);
	if (crypto_b64url_decode(s, len, out, len / 4 * 3 + 3, outlen) == -1 ||
	    *outlen > max) {
		free(out);
		return (NULL);
	}
	return (out);
}

/*
 * The protected header's members: a known alg (never "none"), none of
 * the refused ones, kid and typ strings if present.
 */
static int
jose_header_check(struct jose_jws *jws, struct crypto_err *err)
{
	const char	*name;
	json_t		*v;
	size_t		 i;

	v = json_object_get(jws->header, "alg");
	if (!json_is_string(v)) {
		jose_seterr(err, "token header has no alg");
		return (-1);
	}
	name = json_string_value(v);
	if (strcmp(name, "none") == 0) {
		jose_seterr(err, "alg none is refused");
		return (-1);
	}
	if ((jws->alg = crypto_alg_from_name(name)) == CRYPTO_ALG_NONE) {
		jose_seterr(err, "token alg is not supported");
		return (-1);
	}
	for (i = 0; i < nitems(jose_refused_headers); i++) {
		if (json_object_get(jws->header, jose_refused_headers[i]) !=
		    NULL) {
			jose_seterr(err, "token header %s is refused",
			    jose_refused_headers[i]);
			return (-1);
		}
	}
	if ((v = json_object_get(jws->header, "kid")) != NULL) {
		if (!json_is_string(v)) {
			jose_seterr(err, "token kid is not a string");
			return (-1);
		}
		jws->kid = json_string_value(v);
	}
	if ((v = json_object_get(jws->header, "typ")) != NULL) {
		if (!json_is_string(v)) {
			jose_seterr(err, "token typ is not a string");
			return (-1);
		}
		jws->typ = json_string_value(v);
	}
	return (0);
}

/*
 * Parse a compact JWS without verifying it. The result holds the header
 * and claims as JSON objects and the signing input and signature for
 * jose_verify().
 */
struct jose_jws *
jose_parse(const char *token, size_t len, struct crypto_err *err)
{
	struct jose_jws	*jws;
	const char	*d1, *d2;
	uint8_t		*dec;
	size_t		 hlen, plen, slen, declen;
	int		 rc = -1;

	if (len == 0) {
		jose_seterr(err, "empty token");
		return (NULL);
	}
	if (len > JOSE_TOKEN_MAX) {
		jose_seterr(err, "token is too large");
		return (NULL);
	}
	if ((d1 = memchr(token, '.', len)) == NULL ||
	    (d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token))) ==
	    NULL ||
	    memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)) != NULL) {
		jose_seterr(err, "token does not have three parts");
		return (NULL);
	}
	hlen = (size_t)(d1 - token);
	plen = (size_t)(d2 - d1 - 1);
	slen = len - hlen - plen - 2;

	jws = xcalloc(1, sizeof *jws);
	jws->buf = xmemdup0(token, len);
	jws->buflen = len;
	jws->signing_input = jws->buf;
	jws->signing_input_len = hlen + 1 + plen;

	if ((dec = jose_b64_segment(jws->buf, hlen, JOSE_HEADER_MAX,
	    &declen)) == NULL) {
		jose_seterr(err, "token header is not base64url or too large");
		goto out;
	}
	jws->header = jose_json_load((const char *)dec, declen,
	    JOSE_HEADER_MAX, "token header", err);
	free(dec);
	if (jws->header == NULL || jose_header_check(jws, err) == -1)
		goto out;

	if ((dec = jose_b64_segment(jws->buf + hlen + 1, plen,
	    JOSE_PAYLOAD_MAX, &declen)) == NULL) {
		jose_seterr(err, "token payload is not base64url or too"
		    " large");
		goto out;
	}
	jws->claims = jose_json_load((const char *)dec, declen,
	    JOSE_PAYLOAD_MAX, "token payload", err);
	free(dec);
	if (jws->claims == NULL)
		goto out;

	if (slen == 0) {
		jose_seterr(err, "token has no signature");
		goto out;
	}
	if ((jws->sig = jose_b64_segment(jws->buf + hlen + 1 + plen + 1, slen,
	    CRYPTO_SIG_MAX, &jws->siglen)) == NULL) {
		jose_seterr(err, "token signature is not base64url or too"
		    " long");
		goto out;
	}
	rc = 0;
out:
	if (rc == -1) {
		jose_jws_free(jws);
		jws = NULL;
	}
	return (jws);
}

void
jose_jws_free(struct jose_jws *jws)
{
	if (jws == NULL)
		return;
	json_decref(jws->header);
	json_decref(jws->claims);
	free(jws->sig);
	freezero(jws->buf, jws->buflen + 1);	/* a bearer token */
	free(jws);
}

/* Media types compare without case and without "application/". */
static const char *
jose_typ_strip(const char *typ)
{
	if (strncasecmp(typ, "application/", 12) == 0)
		return (typ + 12);
	return (typ);
}

/*
 * Check the "typ" header against a NULL-terminated list of accepted
 * values. A token without typ passes unless required is set.
 */
int
jose_check_typ(const struct jose_jws *jws, const char *const *typs,
    int required, struct crypto_err *err)
{
	size_t	i;

	if (jws->typ == NULL) {
		if (!required)
			return (0);
		jose_seterr(err, "token has no typ");
		return (-1);
	}
	if (typs == NULL)
		return (0);
	for (i = 0; typs[i] != NULL; i++) {
		if (strcasecmp(jose_typ_strip(jws->typ),
		    jose_typ_strip(typs[i])) == 0)
			return (0);
	}
	jose_seterr(err, "token typ is not accepted");
	return (-1);
}

/*
 * Verify a parsed token with one key. The token's alg must be the key's
 * pinned algorithm, and if both have a kid they must be the same.
 */
int
jose_verify(const struct jose_jws *jws, const struct crypto_key *key,
    struct crypto_err *err)
{
	const char	*kid;

	if (key == NULL) {
		jose_seterr(err, "no key for this token");
		return (-1);
	}
	if (crypto_key_alg(key) != jws->alg) {
		jose_seterr(err, "token alg %s does not match the key (%s)",
		    crypto_alg_name(jws->alg),
		    crypto_alg_name(crypto_key_alg(key)));
		return (-1);
	}
	kid = crypto_key_kid(key);
	if (jws->kid != NULL && kid != NULL && strcmp(jws->kid, kid) != 0) {
		jose_seterr(err, "token kid does not match the key");
		return (-1);
	}
	return (crypto_key_verify(key, jws->alg, jws->signing_input,
	    jws->signing_input_len, jws->sig, jws->siglen, err));
}

/* A NumericDate claim: absent (0), a finite number (1), or wrong (-1). */
static int
jose_claim_time(const json_t *claims, const char *name, int required,
    double *out, int *present, struct crypto_err *err)
{
	json_t	*v;
	double	 d;

	*present = 0;
	*out = 0;
	if ((v = json_object_get(claims, name)) == NULL) {
		if (!required)
			return (0);
		jose_seterr(err, "token has no %s claim", name);
		return (-1);
	}
	if (!json_is_number(v) || !isfinite(d = json_number_value(v))) {
		jose_seterr(err, "token %s claim is not a number", name);
		return (-1);
	}
	*out = d;
	*present = 1;
	return (0);
}

/* Does "aud" (a string or an array of strings) name one of ours? */
static int
jose_aud_match(const json_t *aud, const char *const *ours)
{
	const json_t	*v;
	size_t		 i, j;

	if (json_is_string(aud)) {
		for (j = 0; ours[j] != NULL; j++) {
			if (json_string_length(aud) == strlen(ours[j]) &&
			    strcmp(json_string_value(aud), ours[j]) == 0)
				return (1);
		}
		return (0);
	}
	if (!json_is_array(aud))
		return (0);
	for (i = 0; i < json_array_size(aud); i++) {
		if (!json_is_string(json_array_get(aud, i)))
			return (0);
	}
	for (i = 0; i < json_array_size(aud); i++) {
		v = json_array_get(aud, i);
		if (jose_aud_match(v, ours))
			return (1);
	}
	return (0);
}

/*
 * Check registered claims: iss equal, aud holding one of ours, exp, nbf
 * and iat with leeway, max_age, and that required claims exist and are not
 * null. The reason for a refusal is short and safe to show a client.
 */
int
jose_claims_check(const json_t *claims, const struct jose_claims_rules *r,
    struct crypto_err *err)
{
	json_t	*v;
	double	 now, lw, exp, nbf, iat;
	int	 has_exp, has_nbf, has_iat;
	size_t	 i;

	if (!json_is_object(claims)) {
		jose_seterr(err, "token claims are not an object");
		return (-1);
	}
	/* Skipping a check must be asked for; a missing rule refuses. */
	if ((r->issuer == NULL && !r->any_issuer) || (!r->any_audience &&
	    (r->audiences == NULL || r->audiences[0] == NULL))) {
		jose_seterr(err, "no issuer or audience to check against");
		return (-1);
	}
	v = json_object_get(claims, "iss");
	if (!r->any_issuer && (!json_is_string(v) ||
	    json_string_length(v) != strlen(r->issuer) ||
	    strcmp(json_string_value(v), r->issuer) != 0)) {
		jose_seterr(err, "wrong issuer");
		return (-1);
	}
	if (r->any_issuer && v != NULL && !json_is_string(v)) {
		jose_seterr(err, "issuer is not a string");
		return (-1);
	}
	if (!r->any_audience) {
		if ((v = json_object_get(claims, "aud")) == NULL) {
			jose_seterr(err, "token has no audience");
			return (-1);
		}
		if (!jose_aud_match(v, r->audiences)) {
			jose_seterr(err, "wrong audience");
			return (-1);
		}
	}
	if (jose_claim_time(claims, "exp", r->require_exp, &exp, &has_exp,
	    err) == -1 ||
	    jose_claim_time(claims, "nbf", r->require_nbf, &nbf, &has_nbf,
	    err) == -1 ||
	    jose_claim_time(claims, "iat", r->require_iat || r->max_age > 0,
	    &iat, &has_iat, err) == -1)
		return (-1);
	now = (double)r->now;
	lw = r->leeway > 0 ? (double)r->leeway : 0;
	if (has_exp && now >= exp + lw) {
		jose_seterr(err, "token expired");
		return (-1);
	}
	if (has_nbf && nbf > now + lw) {
		jose_seterr(err, "token not yet valid");
		return (-1);
	}
	if (has_iat && iat > now + lw) {
		jose_seterr(err, "token issued in the future");
		return (-1);
	}
	if (has_iat && r->max_age > 0 && iat + (double)r->max_age + lw < now) {
		jose_seterr(err, "token too old");
		return (-1);
	}
	for (i = 0; r->required != NULL && r->required[i] != NULL; i++) {
		v = json_object_get(claims, r->required[i]);
		if (v == NULL || json_is_null(v)) {
			jose_seterr(err, "token has no %s claim",
			    r->required[i]);
			return (-1);
		}
	}
	return (0);
}

/*
 * The signing input of a compact JWS ("header.payload", base64url) for
 * claims with header {"alg","kid","typ"} (kid if the key has one, typ if
 * not NULL), with room left for the key's signature; NULL with err if
 * the token would not parse with jose_parse().
 */
char *
jose_sign_input(const struct crypto_key *key, json_t *claims,
    const char *typ, struct crypto_err *err)
{
	json_t		*hdr = NULL;
	char		*h = NULL, *p = NULL, *out = NULL;
	size_t		 hl, pl, inlen, total;
	const char	*kid = crypto_key_kid(key);

	if (!json_is_object(claims)) {
		jose_seterr(err, "claims are not an object");
		return (NULL);
	}
	if (jose_json_walk(claims, JOSE_DEPTH_MAX) == -1) {
		jose_seterr(err, "claims are nested too deeply");
		return (NULL);
	}
	hdr = json_object();
	if (json_object_set_new(hdr, "alg",
	    json_string(crypto_alg_name(crypto_key_alg(key)))) == -1 ||
	    (kid != NULL &&
	    json_object_set_new(hdr, "kid", json_string(kid)) == -1) ||
	    (typ != NULL &&
	    json_object_set_new(hdr, "typ", json_string(typ)) == -1)) {
		jose_seterr(err, "kid or typ is not valid UTF-8");
		goto out;
	}
	if ((h = json_dumps(hdr, JSON_COMPACT)) == NULL ||
	    (p = json_dumps(claims, JSON_COMPACT)) == NULL) {
		jose_seterr(err, "cannot encode the token");
		goto out;
	}
	hl = strlen(h);
	pl = strlen(p);
	if (hl > JOSE_HEADER_MAX || pl > JOSE_PAYLOAD_MAX) {
		jose_seterr(err, "token would be too large");
		goto out;
	}
	inlen = crypto_b64url_len(hl) + 1 + crypto_b64url_len(pl);
	total = inlen + 1 + crypto_b64url_len(crypto_key_sig_len(key));
	if (total > JOSE_TOKEN_MAX) {
		jose_seterr(err, "token would be too large");
		goto out;
	}
	out = xmalloc(total + 1);
	crypto_b64url_encode(h, hl, out, total + 1);
	out[crypto_b64url_len(hl)] = '.';
	crypto_b64url_encode(p, pl, out + crypto_b64url_len(hl) + 1,
	    total + 1 - crypto_b64url_len(hl) - 1);
	out[inlen] = '\0';
out:
	free(h);
	free(p);
	json_decref(hdr);
	return (out);
}

/*
 * The compact JWS: a signing input of jose_sign_input() (its room) and
 * its signature in JOSE form. Returns input, grown in place.
 */
char *
jose_sign_finish(char *input, const uint8_t *sig, size_t siglen)
{
	size_t	inlen = strlen(input);

	input[inlen] = '.';
	crypto_b64url_encode(sig, siglen, input + inlen + 1,
	    crypto_b64url_len(siglen) + 1);
	return (input);
}

/*
 * Sign claims into a compact JWS (jose_sign_input()) with a key held
 * here. The result always parses with jose_parse().
 */
char *
jose_sign(const struct crypto_key *key, json_t *claims, const char *typ,
    struct crypto_err *err)
{
	uint8_t	 sig[CRYPTO_SIG_MAX];
	size_t	 siglen;
	char	*in;

	if ((in = jose_sign_input(key, claims, typ, err)) == NULL)
		return (NULL);
	if (crypto_key_sign(key, in, strlen(in), sig, sizeof sig, &siglen,
	    err) == -1) {
		free(in);
		return (NULL);
	}
	return (jose_sign_finish(in, sig, siglen));
}

static int
jose_alg_allowed(const enum crypto_alg *allow, enum crypto_alg alg)
{
	size_t	i;

	for (i = 0; allow != NULL && allow[i] != CRYPTO_ALG_NONE; i++) {
		if (allow[i] == alg)
			return (1);
	}
	return (0);
}

static int
jose_jwk_b64(const json_t *jwk, const char *name, uint8_t *out, size_t max,
    size_t *len, struct crypto_err *err)
{
	json_t	*v;

	if (!json_is_string(v = json_object_get(jwk, name))) {
		jose_seterr(err, "JWK has no %s", name);
		return (-1);
	}
	if (crypto_b64url_decode(json_string_value(v), json_string_length(v),
	    out, max, len) == -1) {
		jose_seterr(err, "JWK %s is not base64url or too long", name);
		return (-1);
	}
	return (0);
}

/*
 * A verification key from one JWK. allow lists the algorithms the caller
 * accepts, ending with CRYPTO_ALG_NONE, in order of preference. A JWK with
 * "alg" is pinned to it if allowed; one without gets the first allowed
 * algorithm that fits its kty and crv. JWKs not for signing ("use" other
 * than "sig", "key_ops" without "verify") are refused. Private members are
 * ignored, except "k" of an "oct" key, which is the key.
 */
struct crypto_key *
jose_jwk_parse(const json_t *jwk, const enum crypto_alg *allow,
    struct crypto_err *err)
{
	struct crypto_pub	 pub;
	struct crypto_key	*key;
	enum crypto_alg		 alg;
	json_t			*v;

	if (!json_is_object(jwk)) {
		jose_seterr(err, "JWK is not an object");
		return (NULL);
	}
	memset(&pub, 0, sizeof pub);
	if (jose_jwk_kind(jwk, &pub, err) == -1)
		return (NULL);
	if ((alg = jose_jwk_alg(jwk, &pub, allow, err)) == CRYPTO_ALG_NONE)
		return (NULL);
	if ((v = json_object_get(jwk, "kid")) != NULL &&
	    (!json_is_string(v) || json_string_length(v) > CRYPTO_KID_MAX)) {
		jose_seterr(err, "JWK kid is not a string or too long");
		return (NULL);
	}
	key = jose_jwk_key(jwk, alg, &pub, err);
	if (key != NULL && (v = json_object_get(jwk, "kid")) != NULL)
		(void)crypto_key_set_kid(key, json_string_value(v));
	return (key);
}

/*
 * What kind of key a JWK holds (kty, and crv for EC and OKP), and that it
 * is one for verifying signatures.
 */
static int
jose_jwk_kind(const json_t *jwk, struct crypto_pub *pub,
    struct crypto_err *err)
{
	const char	*s;
	json_t		*v, *op;
	size_t		 i;
	int		 ok;

	if (!json_is_string(v = json_object_get(jwk, "kty"))) {
		jose_seterr(err, "JWK has no kty");
		return (-1);
	}
	s = json_string_value(v);
	if (strcmp(s, "RSA") == 0)
		pub->kty = CRYPTO_KTY_RSA;
	else if (strcmp(s, "EC") == 0)
		pub->kty = CRYPTO_KTY_EC;
	else if (strcmp(s, "OKP") == 0)
		pub->kty = CRYPTO_KTY_OKP;
	else if (strcmp(s, "oct") == 0)
		pub->kty = CRYPTO_KTY_OCT;
	else {
		jose_seterr(err, "JWK kty is not supported");
		return (-1);
	}
	if ((v = json_object_get(jwk, "use")) != NULL &&
	    (!json_is_string(v) || strcmp(json_string_value(v), "sig") != 0)) {
		jose_seterr(err, "JWK is not for signatures");
		return (-1);
	}
	if ((v = json_object_get(jwk, "key_ops")) != NULL) {
		ok = 0;
		json_array_foreach(v, i, op) {
			if (json_is_string(op) &&
			    strcmp(json_string_value(op), "verify") == 0)
				ok = 1;
		}
		if (!ok) {
			jose_seterr(err, "JWK key_ops do not allow verify");
			return (-1);
		}
	}
	if (pub->kty == CRYPTO_KTY_EC || pub->kty == CRYPTO_KTY_OKP) {
		v = json_object_get(jwk, "crv");
		if (!json_is_string(v) || (pub->crv =
		    crypto_crv_from_name(json_string_value(v))) ==
		    CRYPTO_CRV_NONE ||
		    (pub->kty == CRYPTO_KTY_OKP) !=
		    (pub->crv == CRYPTO_CRV_ED25519)) {
			jose_seterr(err, "JWK crv is missing or not supported");
			return (-1);
		}
	}
	return (0);
}

/*
 * The algorithm a JWK is used with: its "alg", which must fit it and be
 * allowed, or else the first allowed one that fits. CRYPTO_ALG_NONE with
 * *err set if there is none.
 */
static enum crypto_alg
jose_jwk_alg(const json_t *jwk, const struct crypto_pub *pub,
    const enum crypto_alg *allow, struct crypto_err *err)
{
	enum crypto_alg	 alg;
	json_t		*v;
	size_t		 i;

	if ((v = json_object_get(jwk, "alg")) != NULL) {
		if (!json_is_string(v) || (alg =
		    crypto_alg_from_name(json_string_value(v))) ==
		    CRYPTO_ALG_NONE) {
			jose_seterr(err, "JWK alg is not supported");
			return (CRYPTO_ALG_NONE);
		}
		if (crypto_alg_kty(alg) != pub->kty ||
		    (pub->crv != CRYPTO_CRV_NONE &&
		    crypto_alg_crv(alg) != pub->crv)) {
			jose_seterr(err, "JWK alg does not fit its key type");
			return (CRYPTO_ALG_NONE);
		}
		if (!jose_alg_allowed(allow, alg)) {
			jose_seterr(err, "JWK alg %s is not allowed",
			    crypto_alg_name(alg));
			return (CRYPTO_ALG_NONE);
		}
		return (alg);
	}
	for (i = 0; allow != NULL && allow[i] != CRYPTO_ALG_NONE; i++) {
		if (crypto_alg_kty(allow[i]) == pub->kty &&
		    (pub->crv == CRYPTO_CRV_NONE ||
		    crypto_alg_crv(allow[i]) == pub->crv))
			return (allow[i]);
	}
	jose_seterr(err, "no allowed alg fits this JWK");
	return (CRYPTO_ALG_NONE);
}

/* The key of a JWK of a known kind, from its members, for alg. */
static struct crypto_key *
jose_jwk_key(const json_t *jwk, enum crypto_alg alg, struct crypto_pub *pub,
    struct crypto_err *err)
{
	json_t	*v;

	switch (pub->kty) {
	case CRYPTO_KTY_OCT:
		if (!json_is_string(v = json_object_get(jwk, "k"))) {
			jose_seterr(err, "JWK has no k");
			return (NULL);
		}
		return (crypto_key_from_secret_b64url(alg,
		    json_string_value(v), json_string_length(v), err));
	case CRYPTO_KTY_RSA:
		if (jose_jwk_b64(jwk, "n", pub->n, sizeof pub->n, &pub->nlen,
		    err) == -1 ||
		    jose_jwk_b64(jwk, "e", pub->e, sizeof pub->e, &pub->elen,
		    err) == -1)
			return (NULL);
		break;
	case CRYPTO_KTY_EC:
		if (jose_jwk_b64(jwk, "x", pub->x, sizeof pub->x, &pub->xlen,
		    err) == -1 ||
		    jose_jwk_b64(jwk, "y", pub->y, sizeof pub->y, &pub->ylen,
		    err) == -1)
			return (NULL);
		break;
	case CRYPTO_KTY_OKP:
		if (jose_jwk_b64(jwk, "x", pub->x, sizeof pub->x, &pub->xlen,
		    err) == -1)
			return (NULL);
		break;
	default:
		return (NULL);
	}
	return (crypto_key_from_pub(alg, pub, err));
}

static int
jose_set_b64(json_t *obj, const char *name, const uint8_t *buf, size_t len)
{
	char	*s;
	int	 r;

	s = crypto_b64url_encode_alloc(buf, len);
	r = json_object_set_new(obj, name, json_string(s));
	free(s);
	return (r);
}

/*
 * The public JWK of a key, for our own JWKS: kty, use "sig", alg, kid and
 * the public parameters. NULL for secret (oct) keys, which are never
 * published.
 */
json_t *
jose_jwk_public(const struct crypto_key *key)
{
	struct crypto_pub	 pub;
	json_t			*j;
	const char		*kid = crypto_key_kid(key);
	int			 r = 0;

	if (crypto_key_public(key, &pub) == -1)
		return (NULL);
	j = json_object();
	r |= json_object_set_new(j, "kty",
	    json_string(crypto_kty_name(pub.kty)));
	r |= json_object_set_new(j, "use", json_string("sig"));
	r |= json_object_set_new(j, "alg",
	    json_string(crypto_alg_name(crypto_key_alg(key))));
	if (kid != NULL)
		r |= json_object_set_new(j, "kid", json_string(kid));
	switch (pub.kty) {
	case CRYPTO_KTY_RSA:
		r |= jose_set_b64(j, "n", pub.n, pub.nlen);
		r |= jose_set_b64(j, "e", pub.e, pub.elen);
		break;
	case CRYPTO_KTY_EC:
		r |= json_object_set_new(j, "crv",
		    json_string(crypto_crv_name(pub.crv)));
		r |= jose_set_b64(j, "x", pub.x, pub.xlen);
		r |= jose_set_b64(j, "y", pub.y, pub.ylen);
		break;
	case CRYPTO_KTY_OKP:
		r |= json_object_set_new(j, "crv",
		    json_string(crypto_crv_name(pub.crv)));
		r |= jose_set_b64(j, "x", pub.x, pub.xlen);
		break;
	default:
		r = -1;
		break;
	}
	if (r != 0) {
		json_decref(j);
		return (NULL);
	}
	return (j);
}

/*
 * RFC 7638 JWK thumbprint (SHA-256, base64url, 43 characters), a good
 * kid for our own keys. -1 for secret keys.
 */
int
jose_jwk_thumbprint(const struct crypto_key *key, char out[44])
{
	struct crypto_pub	 pub;
	uint8_t			 h[CRYPTO_HASH_LEN];
	char			*a, *b, *s;
	const char		*crv;

	if (crypto_key_public(key, &pub) == -1)
		return (-1);
	crv = crypto_crv_name(pub.crv);
	switch (pub.kty) {
	case CRYPTO_KTY_RSA:
		a = crypto_b64url_encode_alloc(pub.e, pub.elen);
		b = crypto_b64url_encode_alloc(pub.n, pub.nlen);
		xasprintf(&s, "{\"e\":\"%s\",\"kty\":\"RSA\",\"n\":\"%s\"}",
		    a, b);
		break;
	case CRYPTO_KTY_EC:
		a = crypto_b64url_encode_alloc(pub.x, pub.xlen);
		b = crypto_b64url_encode_alloc(pub.y, pub.ylen);
		xasprintf(&s, "{\"crv\":\"%s\",\"kty\":\"EC\",\"x\":\"%s\","
		    "\"y\":\"%s\"}", crv, a, b);
		break;
	case CRYPTO_KTY_OKP:
		a = crypto_b64url_encode_alloc(pub.x, pub.xlen);
		b = NULL;
		xasprintf(&s, "{\"crv\":\"%s\",\"kty\":\"OKP\",\"x\":\"%s\"}",
		    crv, a);
		break;
	default:
		return (-1);
	}
	crypto_sha256(s, strlen(s), h);
	crypto_b64url_encode(h, sizeof h, out, 44);
	free(a);
	free(b);
	free(s);
	return (0);
}

struct jose_keyset *
jose_keyset_new(void)
{
	return (xcalloc(1, sizeof (struct jose_keyset)));
}

/* Add a key to a set, which then owns it. */
void
jose_keyset_add(struct jose_keyset *set, struct crypto_key *key)
{
	set->keys = xreallocarray(set->keys, set->nkeys + 1,
	    sizeof *set->keys);
	set->keys[set->nkeys++] = key;
}

void
jose_keyset_free(struct jose_keyset *set)
{
	size_t	i;

	if (set == NULL)
		return;
	for (i = 0; i < set->nkeys; i++)
		crypto_key_free(set->keys[i]);
	free(set->keys);
	free(set);
}

/*
 * Parse a JWK set document (RFC 7517 section 5). JWKs that cannot be used
 * are skipped and counted; a set with no usable key at all is refused, with
 * the reason the last JWK was skipped.
 */
struct jose_keyset *
jose_jwks_parse(const char *buf, size_t len, const enum crypto_alg *allow,
    struct crypto_err *err)
{
	struct jose_keyset	*set;
	struct crypto_key	*key;
	struct crypto_err	 kerr;
	json_t			*root, *keys;
	size_t			 i;

	if (allow == NULL || allow[0] == CRYPTO_ALG_NONE) {
		jose_seterr(err, "no algorithms are allowed");
		return (NULL);
	}
	if ((root = jose_json_load(buf, len, JOSE_JWKS_MAX, "JWKS",
	    err)) == NULL)
		return (NULL);
	keys = json_object_get(root, "keys");
	if (!json_is_array(keys)) {
		jose_seterr(err, "JWKS has no keys array");
		json_decref(root);
		return (NULL);
	}
	if (json_array_size(keys) > JOSE_JWKS_KEYS_MAX) {
		jose_seterr(err, "JWKS has more than %d keys",
		    JOSE_JWKS_KEYS_MAX);
		json_decref(root);
		return (NULL);
	}
	set = jose_keyset_new();
	bsp_strlcpy(kerr.msg, "no keys", sizeof kerr.msg);
	for (i = 0; i < json_array_size(keys); i++) {
		key = jose_jwk_parse(json_array_get(keys, i), allow, &kerr);
		if (key == NULL)
			set->nskipped++;
		else
			jose_keyset_add(set, key);
	}
	json_decref(root);
	if (set->nkeys == 0) {
		jose_seterr(err, "JWKS has no usable key: %s", kerr.msg);
		jose_keyset_free(set);
		return (NULL);
	}
	return (set);
}

/*
 * The key for a token: same kid and same pinned algorithm. Without a kid,
 * the only key of that algorithm, if there is exactly one. NULL otherwise,
 * so that the caller can re-fetch the set (throttled) on an unknown kid.
 */
const struct crypto_key *
jose_keyset_find(const struct jose_keyset *set, const char *kid,
    enum crypto_alg alg)
{
	const struct crypto_key	*found = NULL;
	const char		*k;
	size_t			 i, n = 0;

	if (set == NULL)
		return (NULL);
	for (i = 0; i < set->nkeys; i++) {
		if (crypto_key_alg(set->keys[i]) != alg)
			continue;
		if (kid != NULL) {
			k = crypto_key_kid(set->keys[i]);
			if (k != NULL && strcmp(k, kid) == 0)
				return (set->keys[i]);
			continue;
		}
		found = set->keys[i];
		n++;
	}
	return (n == 1 ? found : NULL);
}

/* {"keys":[...]} with the public JWK of every non-secret key in a set. */
json_t *
jose_keyset_jwks(const struct jose_keyset *set)
{
	json_t	*keys, *jwk;
	size_t	 i;

	keys = json_array();
	for (i = 0; set != NULL && i < set->nkeys; i++) {
		if ((jwk = jose_jwk_public(set->keys[i])) != NULL)
			json_array_append_new(keys, jwk);
	}
	return (json_pack("{s:o}", "keys", keys));
}
