/*
 * test-jose.c: unit tests for jose.c.
 *
 * Known answers from RFC 7515 appendix A (A.1 HS256, A.2 RS256, A.3 ES256),
 * RFC 8037 A.4/A.5 (Ed25519) and RFC 7638 (thumbprint); sign/parse/verify
 * round trips for every algorithm; algorithm confusion; every header and
 * encoding refusal; claim checks at their leeway edges; JWK sets; tokens
 * signed by another implementation (jose) for the verify-only algorithms.
 * The PEM key is the RFC 7515 A.2 key; it protects nothing.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bsp.h"
#include "crypto.h"
#include "jose.h"
#include "tap.h"
#include "keys.h"


/* RFC 7515 A.1 (HS256) */
static const char a1_token[] =
    "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9."
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFt"
    "cGxlLmNvbS9pc19yb290Ijp0cnVlfQ."
    "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
static const char a1_k[] =
    "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4h"
    "cgUuTwjAzZr1Z9CAow";

/* RFC 7515 A.2 (RS256) */
static const char a2_token[] =
    "eyJhbGciOiJSUzI1NiJ9."
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFt"
    "cGxlLmNvbS9pc19yb290Ijp0cnVlfQ."
    "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7"
    "AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4"
    "BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K"
    "0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqv"
    "hJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrB"
    "p0igcN_IoypGlUPQGe77Rw";
static const char a2_n[] =
    "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddx"
    "HmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMs"
    "D1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSH"
    "SXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdV"
    "MTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8"
    "NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";

/* RFC 7515 A.3 (ES256) */
static const char a3_token[] =
    "eyJhbGciOiJFUzI1NiJ9."
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFt"
    "cGxlLmNvbS9pc19yb290Ijp0cnVlfQ."
    "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSA"
    "pmWQxfKTUJqPP3-Kg6NU1Q";
static const char a3_x[] = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
static const char a3_y[] = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

/* RFC 8037 A.4 (EdDSA); its payload is text, not a claims object. */
static const char ed_token[] =
    "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc."
    "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsP"
    "t9g7sVvpAr_MuM0KAg";
static const char ed_x[] = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

/* RFC 7638 3.1 */
static const char t_n[] =
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1R"
    "K7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9"
    "yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZg"
    "nYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6We"
    "Zu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDK"
    "gw";
static const char t_thumb[] = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";

/*
 * Tokens signed by another implementation (the jose npm library, 6.x) for
 * the algorithms we only ever verify (IdP tokens): RS384/512 and PS256/
 * 384/512 with the RFC 7515 A.2 key, ES384 with a P-384 key made for this
 * test. Claims: {"iss":"https://idp.example","aud":"bsp","sub":"u1",
 * "exp":2000000000}; kid "jose-ALG".
 */
static const char jose_rs384[] =
    "eyJhbGciOiJSUzM4NCIsImtpZCI6Impvc2UtUlMzODQifQ.eyJpc3MiOiJodHRwc"
    "zovL2lkcC5leGFtcGxlIiwiYXVkIjoiYnNwIiwic3ViIjoidTEiLCJleHAiOjIwM"
    "DAwMDAwMDB9.bneMG05qmptLmQ2spb1Jptdy4-jVdPrfVeM_3QqYupSTdkANh6Kh"
    "KfBL7S2kHwZ8HQ186h33j3YaVJ5s93MDDUpC9sugKHf7IiwfsZGkvv-WjsVqxh4F"
    "1GDz4U_Seiom7snDOWv0VPTfFLMeLE0Z6LR6IDYXjnZxIbTQg4tnwtyaZRJHV0s7"
    "A5r0Pc90Q4f_ZiE_qfRVwDGn-HLHiJijLzRRpPkzM5k6e6o01x__q324ipvObQHY"
    "Sx6XrDaGyPf05MPdIDwBeDFIUzrBYgl8kTyZNVwcXPtot3uppjYInJDyVzn23kRs"
    "EcQAjCxPwEhHCoHVChzREHzuwk2nGr-90w";

static const char jose_rs512[] =
    "eyJhbGciOiJSUzUxMiIsImtpZCI6Impvc2UtUlM1MTIifQ.eyJpc3MiOiJodHRwc"
    "zovL2lkcC5leGFtcGxlIiwiYXVkIjoiYnNwIiwic3ViIjoidTEiLCJleHAiOjIwM"
    "DAwMDAwMDB9.HjKnlTjCwXwoS0TYfOTEW79Oi-c8xlf6geCxq2DNW_sa7CR8pFPu"
    "mb4Cgoknjrm3k6SCbQjGUIogahgb9KE0cl-bEpkPI_g245vvs4tdAhfs601XV1cB"
    "Y-aYJMLPT-zRxwLC6RKgd4tivGj4ACZ2JYXf-kEobAu-eExf6kAuqcp35S3Fttx1"
    "V_I6tnRp14STKo4SnuJ0fyGTkGRDQhUsvGZDG3PONnzJBrgX0St20XZq29G2bzww"
    "gLsQlmad3-pUXOr57qXuZJAn1nJtFtYcz0OFA2iFSKkERorHCThbGNYxL0-SsyA2"
    "iMQBNLmmfxjgZrkSpVD88MCCn5IXdUUbmw";

static const char jose_ps256[] =
    "eyJhbGciOiJQUzI1NiIsImtpZCI6Impvc2UtUFMyNTYifQ.eyJpc3MiOiJodHRwc"
    "zovL2lkcC5leGFtcGxlIiwiYXVkIjoiYnNwIiwic3ViIjoidTEiLCJleHAiOjIwM"
    "DAwMDAwMDB9.evUP8POeZigzkDLX3BaARXXdCq_7bN8pGCzRwwwjlAhaELGWfblc"
    "dfqWA4MwZAjR50P2ATgaPG3mMIy84MR3-M5n-mBhZUB3RLrbr0nn2-bqedoCMyS9"
    "QfNHPGdbMH_g54oaFPjpXXrxJ1UATMWNbEv5QJ7s2xWI2XjnV0ifIzLw06Jka0tt"
    "Ia9hgwFBJAxZkbVP1amYassIen-5vgj1c7TMOSVpoT5XLM2MCJ22gdqDOrDR5S_p"
    "AvCIlxAQ0gGHtlumS3Rn4zZFB_fsklhYA5KreYtWW91VX16BGUvmXroPci5aD2mF"
    "L1aCNCVPQLVcLdJ793NXUHzp-J7T7GYAJg";

static const char jose_ps384[] =
    "eyJhbGciOiJQUzM4NCIsImtpZCI6Impvc2UtUFMzODQifQ.eyJpc3MiOiJodHRwc"
    "zovL2lkcC5leGFtcGxlIiwiYXVkIjoiYnNwIiwic3ViIjoidTEiLCJleHAiOjIwM"
    "DAwMDAwMDB9.Sun7hdw91I7NI031DCOuh_xTVNGAPFb0CFk4Fljg60OrG0ZSx-69"
    "k814UdQdxo4OPX4N24GMaK6IPvtbWjJfZuQS_qXX1JVJKJ2ss0qYDWdR1-ysKxjH"
    "asMea0Aiw3-3QvNIfMCtnGNSrV71hLxEQAiS2x1x6chY5pxfUO1HUg2OjQXKqOmK"
    "ODCYk4io3XMyUUAW_L-ctUtCzF8-eytpilSOft67QD7L4IIAJeaokWXkHOX7_p6P"
    "dpYLrXeK5zYXevzy9Mupv93EfxF79zMcjAA3cNYJP-alZ-BJRJJsYg2qxScFySeV"
    "EcvgQ2LfGKZnxpYujyY0U4gm0GdwOv4bTQ";

static const char jose_ps512[] =
    "eyJhbGciOiJQUzUxMiIsImtpZCI6Impvc2UtUFM1MTIifQ.eyJpc3MiOiJodHRwc"
    "zovL2lkcC5leGFtcGxlIiwiYXVkIjoiYnNwIiwic3ViIjoidTEiLCJleHAiOjIwM"
    "DAwMDAwMDB9.d18ApRV0JbJkneQ4Jpm_HVqxniLoN76idW6tqfg1QStNSQRqJ-sj"
    "39f16b-eXOWheJ9hrTD7D0gy30hdqe5sNQbbC2KgEJnMd6f-GMjnwKotjtbeSKab"
    "pZheZS1JoghWfzNKFim0zxRWXiBgOUJH-s9rMBIxRFOxPErxmoK1lYV7uaZ5PwMx"
    "kl4aHmdJe_vN0HXzkDLGqOreaqnQopqgLJwUU2FtgRLrSvCYoR8_WzxxeIErbQ3A"
    "YWQGb3pZFs2CeFati9j4nkmho1Yq_dqe51BdQ7Mx8dW2twagXrn7py03h35E07D5"
    "vMj2eZHTEXpx2izMPM9mALyNETrdpPTFag";

static const char jose_es384[] =
    "eyJhbGciOiJFUzM4NCIsImtpZCI6Impvc2UtRVMzODQifQ.eyJpc3MiOiJodHRwc"
    "zovL2lkcC5leGFtcGxlIiwiYXVkIjoiYnNwIiwic3ViIjoidTEiLCJleHAiOjIwM"
    "DAwMDAwMDB9.cgmEUccMJM0Gh9dohAuPbnDFTMbW5jUo7ounS-l4YAEn36a7fgzh"
    "5hR-suiQEyBgxT18qC1c6VkrGeqrzwznQ5cBpNlXqXp7vqPnXcXcWuXap7KFTEnY"
    "IjCC5xzIofML";

static const char jose_es384_x[] =
    "DHvdG8RO0sxGtBsiNPxd48z8jYdN7sWYQWPKf0lwkp5XHx79CQ9XHxTJHgqC03zy";

static const char jose_es384_y[] =
    "rg_3e3H_DRYxbZ7uTk6doFFGvzoJCkCCgGRr_TJPFGOL6bBVPx6UnqOWxWgXmcSt";

static const enum crypto_alg all_algs[] = {
	CRYPTO_ALG_RS256, CRYPTO_ALG_RS384, CRYPTO_ALG_RS512, CRYPTO_ALG_PS256,
	CRYPTO_ALG_PS384, CRYPTO_ALG_PS512, CRYPTO_ALG_ES256, CRYPTO_ALG_ES384,
	CRYPTO_ALG_EDDSA, CRYPTO_ALG_HS256, CRYPTO_ALG_HS384, CRYPTO_ALG_HS512,
	CRYPTO_ALG_NONE
};

static struct crypto_key	*hs_key;	/* HS256, kid "hs" */

static char *
b64s(const char *s)
{
	return (crypto_b64url_encode_alloc(s, strlen(s)));
}

/*
 * A token from header and claims text, signed with key (or with a fixed
 * dummy signature when key is NULL).
 */
static char *
mktoken(const char *hdr, const char *claims, const struct crypto_key *key)
{
	uint8_t	 sig[CRYPTO_SIG_MAX];
	size_t	 siglen = 32;
	char	*h, *c, *in, *s, *out;

	h = b64s(hdr);
	c = b64s(claims);
	xasprintf(&in, "%s.%s", h, c);
	memset(sig, 0x5a, sizeof sig);
	if (key != NULL && crypto_key_sign(key, in, strlen(in), sig,
	    sizeof sig, &siglen, NULL) == -1)
		siglen = 1;
	s = crypto_b64url_encode_alloc(sig, siglen);
	xasprintf(&out, "%s.%s", in, s);
	free(h);
	free(c);
	free(in);
	free(s);
	return (out);
}

/* Does parsing fail, with a reason containing want? */
static void
parse_refused(const char *token, size_t len, const char *want,
    const char *what)
{
	struct crypto_err	 err;
	struct jose_jws		*jws;

	err.msg[0] = '\0';
	jws = jose_parse(token, len, &err);
	ok(jws == NULL && strstr(err.msg, want) != NULL, "refused: %s (%s)",
	    what, err.msg);
	jose_jws_free(jws);
}

static void
parse_refused_json(const char *hdr, const char *claims, const char *want,
    const char *what)
{
	char	*t;

	t = mktoken(hdr, claims, hs_key);
	parse_refused(t, strlen(t), want, what);
	free(t);
}

static void
test_rfc_vectors(void)
{
	struct crypto_err	 err;
	struct jose_jws		*jws;
	struct crypto_key	*k;
	json_t			*jwk;
	char			*t;
	static const enum crypto_alg hs[] = { CRYPTO_ALG_HS256, 0 };
	static const enum crypto_alg rs[] = { CRYPTO_ALG_RS256, 0 };
	static const enum crypto_alg es[] = { CRYPTO_ALG_ES256, 0 };
	static const enum crypto_alg ed[] = { CRYPTO_ALG_EDDSA, 0 };

	/* A.1 */
	jws = jose_parse(a1_token, strlen(a1_token), &err);
	ok(jws != NULL, "RFC 7515 A.1 parses");
	if (jws == NULL)
		return;
	ok(jws->alg == CRYPTO_ALG_HS256 && jws->kid == NULL &&
	    jws->typ != NULL && strcmp(jws->typ, "JWT") == 0 &&
	    jws->siglen == 32, "A.1 header: HS256, typ JWT, no kid");
	is_str(json_string_value(json_object_get(jws->claims, "iss")), "joe",
	    "A.1 claims: iss");
	is_int(json_integer_value(json_object_get(jws->claims, "exp")),
	    1300819380, "A.1 claims: exp");
	jwk = json_pack("{s:s, s:s}", "kty", "oct", "k", a1_k);
	k = jose_jwk_parse(jwk, hs, &err);
	json_decref(jwk);
	ok(k != NULL && jose_verify(jws, k, &err) == 0,
	    "RFC 7515 A.1 HS256 verifies");
	jose_jws_free(jws);

	t = xstrdup(a1_token);
	t[strlen(t) - 10] = t[strlen(t) - 10] == 'A' ? 'B' : 'A';
	jws = jose_parse(t, strlen(t), &err);
	ok(jws != NULL && jose_verify(jws, k, &err) == -1,
	    "A.1 with a changed MAC is refused (%s)", err.msg);
	jose_jws_free(jws);
	free(t);
	crypto_key_free(k);

	/* A.2 */
	jwk = json_pack("{s:s, s:s, s:s}", "kty", "RSA", "n", a2_n, "e",
	    "AQAB");
	k = jose_jwk_parse(jwk, rs, &err);
	json_decref(jwk);
	jws = jose_parse(a2_token, strlen(a2_token), &err);
	ok(k != NULL && jws != NULL && jose_verify(jws, k, &err) == 0,
	    "RFC 7515 A.2 RS256 verifies with its JWK");
	jose_jws_free(jws);
	crypto_key_free(k);

	/* A.3 */
	jwk = json_pack("{s:s, s:s, s:s, s:s}", "kty", "EC", "crv", "P-256",
	    "x", a3_x, "y", a3_y);
	k = jose_jwk_parse(jwk, es, &err);
	jws = jose_parse(a3_token, strlen(a3_token), &err);
	ok(k != NULL && jws != NULL && jose_verify(jws, k, &err) == 0,
	    "RFC 7515 A.3 ES256 verifies with its JWK");
	ok(jose_jwk_parse(jwk, rs, &err) == NULL,
	    "EC JWK refused when only RS256 is allowed: %s", err.msg);
	json_decref(jwk);
	jose_jws_free(jws);
	crypto_key_free(k);

	/* RFC 8037 A.4/A.5 */
	jwk = json_pack("{s:s, s:s, s:s}", "kty", "OKP", "crv", "Ed25519",
	    "x", ed_x);
	k = jose_jwk_parse(jwk, ed, &err);
	json_decref(jwk);
	parse_refused(ed_token, strlen(ed_token), "not valid JSON",
	    "RFC 8037 A.4 payload is not a claims object");
	ok(k != NULL && crypto_key_verify(k, CRYPTO_ALG_EDDSA, ed_token,
	    strrchr(ed_token, '.') - ed_token,
	    (const uint8_t *)"", 0, &err) == -1,
	    "empty Ed25519 signature refused");
	if (k != NULL) {
		uint8_t	sig[64];
		size_t	n;
		const char *dot = strrchr(ed_token, '.');

		ok(crypto_b64url_decode(dot + 1, strlen(dot + 1), sig,
		    sizeof sig, &n) == 0 && crypto_key_verify(k,
		    CRYPTO_ALG_EDDSA, ed_token, (size_t)(dot - ed_token), sig,
		    n, &err) == 0, "RFC 8037 A.5 verifies with its OKP JWK");
	}
	crypto_key_free(k);

	/* RFC 7638 */
	jwk = json_pack("{s:s, s:s, s:s, s:s, s:s}", "kty", "RSA", "n", t_n,
	    "e", "AQAB", "alg", "RS256", "kid", "2011-04-29");
	k = jose_jwk_parse(jwk, rs, &err);
	json_decref(jwk);
	{
		char	thumb[44];

		ok(k != NULL && jose_jwk_thumbprint(k, thumb) == 0 &&
		    strcmp(thumb, t_thumb) == 0, "RFC 7638 thumbprint");
	}
	ok(k != NULL && crypto_key_kid(k) != NULL &&
	    strcmp(crypto_key_kid(k), "2011-04-29") == 0, "JWK kid kept");
	crypto_key_free(k);
}

/* jose_sign, jose_parse and jose_verify agree for every algorithm. */
static void
test_sign_roundtrip(void)
{
	static const struct {
		enum crypto_alg	 alg;
		const char	*pem;
	} v[] = {
		{ CRYPTO_ALG_HS256, NULL }, { CRYPTO_ALG_HS384, NULL },
		{ CRYPTO_ALG_HS512, NULL }, { CRYPTO_ALG_RS256, NULL },
		{ CRYPTO_ALG_RS256, pem_rsa_a2 },
		{ CRYPTO_ALG_RS384, pem_rsa_a2 },
		{ CRYPTO_ALG_RS512, pem_rsa_a2 },
		{ CRYPTO_ALG_PS256, pem_rsa_a2 },
		{ CRYPTO_ALG_PS384, pem_rsa_a2 },
		{ CRYPTO_ALG_PS512, pem_rsa_a2 },
		{ CRYPTO_ALG_ES256, NULL }, { CRYPTO_ALG_ES384, NULL },
		{ CRYPTO_ALG_EDDSA, NULL },
	};
	struct crypto_err	 err;
	struct crypto_key	*k, *pk;
	struct jose_jws		*jws;
	json_t			*claims, *jwk;
	char			*t;
	const char		*name;
	size_t			 i;

	claims = json_pack("{s:s, s:s, s:s, s:i, s:[s, s]}", "iss",
	    "https://proxy.example", "aud", "bedrock", "sub", "google:123",
	    "exp", 2000000000, "scopes", "bedrock:invoke", "x\"y\u00e9");
	for (i = 0; i < nitems(v); i++) {
		name = crypto_alg_name(v[i].alg);
		k = v[i].pem == NULL ? crypto_key_generate(v[i].alg, 0, &err) :
		    crypto_key_from_pem(v[i].alg, v[i].pem, strlen(v[i].pem),
		    &err);
		if (k == NULL) {
			ok(0, "%s key: %s", name, err.msg);
			continue;
		}
		crypto_key_set_kid(k, "key-1");
		t = jose_sign(k, claims, "at+jwt", &err);
		jws = t == NULL ? NULL : jose_parse(t, strlen(t), &err);
		ok(jws != NULL && jws->alg == v[i].alg &&
		    jws->kid != NULL && strcmp(jws->kid, "key-1") == 0 &&
		    jws->typ != NULL && strcmp(jws->typ, "at+jwt") == 0 &&
		    json_equal(jws->claims, claims) &&
		    jose_verify(jws, k, &err) == 0,
		    "%s jose_sign, parse, verify", name);

		jwk = jose_jwk_public(k);
		if (crypto_key_kty(k) == CRYPTO_KTY_OCT) {
			ok(jwk == NULL, "%s secret is never a public JWK",
			    name);
		} else {
			pk = jwk == NULL ? NULL : jose_jwk_parse(jwk, all_algs,
			    &err);
			ok(pk != NULL && crypto_key_alg(pk) == v[i].alg &&
			    !crypto_key_has_private(pk) && jws != NULL &&
			    jose_verify(jws, pk, &err) == 0 &&
			    json_object_get(jwk, "d") == NULL &&
			    strcmp(json_string_value(json_object_get(jwk,
			    "use")), "sig") == 0,
			    "%s public JWK round trip verifies", name);
			crypto_key_free(pk);
		}
		json_decref(jwk);
		jose_jws_free(jws);
		free(t);
		crypto_key_free(k);
	}
	json_decref(claims);

	claims = json_array();
	ok(jose_sign(hs_key, claims, NULL, &err) == NULL,
	    "claims must be an object");
	json_decref(claims);
	claims = json_pack("{s:[[[[[[[[[[[[[[[[i]]]]]]]]]]]]]]]]}", "deep", 1);
	ok(jose_sign(hs_key, claims, NULL, &err) == NULL,
	    "claims nested too deeply are not signed: %s", err.msg);
	json_decref(claims);
	k = crypto_key_from_pem(CRYPTO_ALG_RS256, pem_rsa_a2_pub,
	    strlen(pem_rsa_a2_pub), &err);
	claims = json_object();
	ok(k != NULL && jose_sign(k, claims, NULL, &err) == NULL,
	    "a public key cannot sign a token: %s", err.msg);
	json_decref(claims);
	crypto_key_free(k);
}

static void
test_confusion(void)
{
	struct crypto_err	 err;
	struct crypto_key	*rsa, *hs;
	struct jose_keyset	*set;
	struct jose_jws		*jws;
	char			*t;

	/* HS256 "signed" with the RSA public key PEM as the secret. */
	rsa = crypto_key_from_pem(CRYPTO_ALG_RS256, pem_rsa_a2,
	    strlen(pem_rsa_a2), &err);
	crypto_key_set_kid(rsa, "k1");
	hs = crypto_key_from_secret(CRYPTO_ALG_HS256, pem_rsa_a2_pub,
	    strlen(pem_rsa_a2_pub), &err);
	t = mktoken("{\"alg\":\"HS256\",\"kid\":\"k1\"}",
	    "{\"iss\":\"x\",\"aud\":\"y\"}", hs);
	jws = jose_parse(t, strlen(t), &err);
	ok(jws != NULL && jws->alg == CRYPTO_ALG_HS256,
	    "HS256 token keyed with the RSA public PEM parses");
	set = jose_keyset_new();
	jose_keyset_add(set, rsa);
	ok(jws != NULL && jose_keyset_find(set, jws->kid, jws->alg) == NULL,
	    "key set has no HS256 key for kid k1");
	ok(jws != NULL && jose_verify(jws, rsa, &err) == -1 &&
	    strstr(err.msg, "does not match") != NULL,
	    "RSA key refuses the HS256 token: %s", err.msg);
	jose_jws_free(jws);
	free(t);

	/* The same with RS256 in the header and the MAC as signature. */
	t = mktoken("{\"alg\":\"RS256\",\"kid\":\"k1\"}",
	    "{\"iss\":\"x\",\"aud\":\"y\"}", hs);
	jws = jose_parse(t, strlen(t), &err);
	ok(jws != NULL && jose_verify(jws, rsa, &err) == -1,
	    "RS256 header with an HMAC signature refused: %s", err.msg);
	jose_jws_free(jws);
	free(t);
	crypto_key_free(hs);

	/* kid mismatch */
	t = mktoken("{\"alg\":\"RS256\",\"kid\":\"other\"}",
	    "{\"iss\":\"x\",\"aud\":\"y\"}", rsa);
	jws = jose_parse(t, strlen(t), &err);
	ok(jws != NULL && jose_keyset_find(set, jws->kid, jws->alg) == NULL,
	    "unknown kid finds no key (caller may re-fetch)");
	ok(jws != NULL && jose_verify(jws, rsa, &err) == -1 &&
	    strstr(err.msg, "kid") != NULL, "kid mismatch refused: %s",
	    err.msg);
	jose_jws_free(jws);
	free(t);
	t = mktoken("{\"alg\":\"RS256\",\"kid\":\"k1\"}",
	    "{\"iss\":\"x\",\"aud\":\"y\"}", rsa);
	jws = jose_parse(t, strlen(t), &err);
	ok(jws != NULL && jose_keyset_find(set, jws->kid, jws->alg) == rsa &&
	    jose_verify(jws, rsa, &err) == 0, "matching kid verifies");
	jose_jws_free(jws);
	free(t);
	jose_keyset_free(set);

	parse_refused_json("{\"alg\":\"none\"}", "{}", "alg none",
	    "alg none");
	t = xstrdup("eyJhbGciOiJub25lIn0.e30.");
	parse_refused(t, strlen(t), "alg none", "alg none, empty signature");
	free(t);
	parse_refused_json("{\"alg\":\"None\"}", "{}", "not supported",
	    "alg None");
	parse_refused_json("{\"alg\":\"HS257\"}", "{}", "not supported",
	    "unknown alg");
	parse_refused_json("{\"alg\":\"ES512\"}", "{}", "not supported",
	    "ES512");
	parse_refused_json("{\"alg\":\"RSA1_5\",\"enc\":\"A128GCM\"}", "{}",
	    "not supported", "JWE alg");
	parse_refused_json("{\"typ\":\"JWT\"}", "{}", "no alg", "no alg");
	parse_refused_json("{\"alg\":256}", "{}", "no alg", "numeric alg");
}

static void
test_header_refusals(void)
{
	static const char *const named[] = { "crit", "jku", "x5u", "jwk",
	    "x5c", "b64" };
	struct crypto_err	 err;
	struct jose_jws		*jws;
	char			 hdr[256], *t, *big, *p;
	size_t			 i, n;

	for (i = 0; i < nitems(named); i++) {
		snprintf(hdr, sizeof hdr, "{\"alg\":\"HS256\",\"%s\":%s}",
		    named[i], strcmp(named[i], "b64") == 0 ? "false" :
		    strcmp(named[i], "crit") == 0 ? "[\"exp\"]" :
		    "\"https://evil.example/k\"");
		parse_refused_json(hdr, "{}", named[i], named[i]);
	}
	parse_refused_json("{\"alg\":\"HS256\",\"crit\":[]}", "{}", "crit",
	    "empty crit");
	parse_refused_json("{\"alg\":\"HS256\",\"alg\":\"none\"}", "{}",
	    "not valid JSON", "duplicate alg in header");
	parse_refused_json("{\"alg\":\"HS256\"}",
	    "{\"sub\":\"a\",\"sub\":\"b\"}", "not valid JSON",
	    "duplicate claim");
	parse_refused_json("[\"HS256\"]", "{}", "not a JSON object",
	    "array header");
	parse_refused_json("\"HS256\"", "{}", "not valid JSON",
	    "string header");
	parse_refused_json("{\"alg\":\"HS256\"}", "[]", "not a JSON object",
	    "array claims");
	parse_refused_json("{\"alg\":\"HS256\"}", "42", "not valid JSON",
	    "number claims");
	parse_refused_json("{\"alg\":\"HS256\"}", "", "not valid JSON",
	    "empty claims");
	parse_refused_json("{\"alg\":\"HS256\"} x", "{}", "not valid JSON",
	    "trailing garbage");
	parse_refused_json("{\"alg\":\"HS256\",\"kid\":7}", "{}", "kid",
	    "numeric kid");
	parse_refused_json("{\"alg\":\"HS256\",\"typ\":[]}", "{}", "typ",
	    "array typ");
	parse_refused_json("{\"alg\":\"HS256\",\"kid\":\"a\\u0000b\"}", "{}",
	    "not valid JSON", "NUL in kid");
	parse_refused_json("{\"alg\":\"HS256\",\"kid\":\"\xff\"}", "{}",
	    "not valid JSON", "invalid UTF-8 in kid");
	parse_refused_json("{\"alg\":\"HS256\"}", "{\"exp\":1e400}",
	    "not valid JSON", "overflowing number");

	/* 16 levels pass, 17 do not; brackets in strings do not count. */
	parse_refused_json("{\"alg\":\"HS256\",\"x\":[[[[[[[[[[[[[[[[1]]]]]]]]"
	    "]]]]]]]]}", "{}", "nested too deeply", "17 levels in the header");
	t = mktoken("{\"alg\":\"HS256\",\"x\":[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]],"
	    "\"y\":\"[[[[[[[[[[[[[[[[[[[[\"}", "{}", hs_key);
	jws = jose_parse(t, strlen(t), &err);
	ok(jws != NULL, "16 levels in the header parse");
	jose_jws_free(jws);
	free(t);
	big = xmalloc(8001);
	memset(big, '[', 4000);
	memset(big + 4000, ']', 4000);
	big[8000] = '\0';
	xasprintf(&p, "{\"a\":%s}", big);
	parse_refused_json("{\"alg\":\"HS256\"}", p, "nested too deeply",
	    "4000 levels in the claims");
	free(p);
	free(big);

	/* base64url */
	t = mktoken("{\"alg\":\"HS256\"}", "{}", hs_key);
	jws = jose_parse(t, strlen(t), &err);
	ok(jws != NULL && jose_verify(jws, hs_key, &err) == 0,
	    "plain HS256 token verifies");
	jose_jws_free(jws);
	n = strlen(t);
	big = xmalloc(n + 8);
	p = strchr(t, '.');
	snprintf(big, n + 8, "%.*s=.%s", (int)(p - t), t, p + 1);
	parse_refused(big, strlen(big), "base64url", "padding in the header");
	snprintf(big, n + 8, "%s=", t);
	parse_refused(big, strlen(big), "base64url",
	    "padding in the signature");
	snprintf(big, n + 8, "%s", t);
	big[3] = '+';
	parse_refused(big, strlen(big), "base64url", "'+' in the header");
	snprintf(big, n + 8, "%s", t);
	big[n - 2] = '/';
	parse_refused(big, strlen(big), "base64url", "'/' in the signature");
	snprintf(big, n + 8, "%s", t);
	big[n - 1] = 'x';	/* the last 2 bits of a MAC must be 0 */
	parse_refused(big, strlen(big), "base64url",
	    "non-canonical trailing bits");
	snprintf(big, n + 8, "%s", t);
	big[1] = ' ';
	parse_refused(big, strlen(big), "base64url", "space in the header");
	snprintf(big, n + 8, "%s", t);
	big[n - 5] = '\0';
	parse_refused(big, n, "base64url", "NUL inside the token");
	snprintf(big, n + 8, "%s.", t);
	parse_refused(big, strlen(big), "three parts", "four parts (dot)");
	snprintf(big, n + 8, "%s.AA", t);
	parse_refused(big, strlen(big), "three parts", "four parts");
	snprintf(big, n + 8, "%.*s", (int)(strrchr(t, '.') - t), t);
	parse_refused(big, strlen(big), "three parts", "two parts");
	snprintf(big, n + 8, "%.*s.", (int)(strrchr(t, '.') - t), t);
	parse_refused(big, strlen(big), "no signature", "empty signature");
	parse_refused(".e30.AA", 7, "not valid JSON", "empty header");
	parse_refused("", 0, "empty", "empty token");
	parse_refused("..", 2, "not valid JSON", "only dots");
	free(big);
	free(t);

	/* Size limits */
	big = xmalloc(1024 * 1024 + 1);
	memset(big, 'A', 1024 * 1024);
	big[100] = big[200] = '.';
	big[1024 * 1024] = '\0';
	parse_refused(big, 1024 * 1024, "too large", "1 MB token");
	parse_refused(big, JOSE_TOKEN_MAX + 1, "too large",
	    "token one byte over the limit");
	free(big);
	big = xmalloc(JOSE_HEADER_MAX + 64);
	memset(big, ' ', JOSE_HEADER_MAX + 63);
	memcpy(big, "{\"alg\":\"HS256\"}", 15);
	big[JOSE_HEADER_MAX + 1] = '\0';
	parse_refused_json(big, "{}", "too large", "header over 2 KiB");
	free(big);
	big = xmalloc(JOSE_PAYLOAD_MAX + 64);
	memset(big, ' ', JOSE_PAYLOAD_MAX + 63);
	memcpy(big, "{}", 2);
	big[JOSE_PAYLOAD_MAX + 1] = '\0';
	t = mktoken("{\"alg\":\"HS256\"}", big, NULL);
	parse_refused(t, strlen(t), "too large", "claims over 12 KiB");
	free(t);
	free(big);
}

static void
test_typ(void)
{
	static const char *const typs[] = { "JWT", "at+jwt", NULL };
	static const struct {
		const char	*typ;
		int		 want;
	} v[] = {
		{ "JWT", 0 }, { "jwt", 0 }, { "at+jwt", 0 },
		{ "application/at+jwt", 0 }, { "Application/AT+JWT", 0 },
		{ "id_token+jwt", -1 }, { "JOSE", -1 }, { "", -1 },
		{ "application/", -1 },
	};
	struct crypto_err	 err;
	struct jose_jws		*jws;
	char			 hdr[128], *t;
	size_t			 i;

	for (i = 0; i < nitems(v); i++) {
		snprintf(hdr, sizeof hdr, "{\"alg\":\"HS256\",\"typ\":\"%s\"}",
		    v[i].typ);
		t = mktoken(hdr, "{}", hs_key);
		jws = jose_parse(t, strlen(t), &err);
		ok(jws != NULL && jose_check_typ(jws, typs, 1, &err) ==
		    v[i].want, "typ \"%s\" %s", v[i].typ,
		    v[i].want == 0 ? "accepted" : "refused");
		jose_jws_free(jws);
		free(t);
	}
	t = mktoken("{\"alg\":\"HS256\"}", "{}", hs_key);
	jws = jose_parse(t, strlen(t), &err);
	ok(jws != NULL && jose_check_typ(jws, typs, 0, &err) == 0,
	    "no typ accepted when not required");
	ok(jws != NULL && jose_check_typ(jws, typs, 1, &err) == -1,
	    "no typ refused when required");
	jose_jws_free(jws);
	free(t);
}

static int
claims_ok(const char *json, const struct jose_claims_rules *r,
    const char *want)
{
	struct crypto_err	 err;
	json_t			*c;
	int			 rc;

	err.msg[0] = '\0';
	c = json_loads(json, 0, NULL);
	if (c == NULL)
		return (0);
	rc = jose_claims_check(c, r, &err);
	json_decref(c);
	if (want == NULL)
		return (rc == 0);
	if (rc == 0 || strcmp(err.msg, want) != 0) {
		diag("  got \"%s\", want \"%s\"", rc == 0 ? "ok" : err.msg,
		    want);
		return (0);
	}
	return (1);
}

static void
test_claims(void)
{
	static const char *const auds[] = { "bedrock", "other", NULL };
	static const char *const req[] = { "sub", NULL };
	struct jose_claims_rules	 r;
	char				 buf[256];

#define C(extra) "{\"iss\":\"https://idp\",\"aud\":\"bedrock\"" extra "}"
	memset(&r, 0, sizeof r);
	r.issuer = "https://idp";
	r.audiences = auds;
	r.now = 1700000000;
	r.leeway = 60;

	ok(claims_ok(C(""), &r, NULL), "minimal claims pass");
	ok(claims_ok("{\"iss\":\"https://idp\"}", &r, "token has no audience"),
	    "missing aud");
	ok(claims_ok("{\"iss\":1,\"aud\":\"bedrock\"}", &r, "wrong issuer"),
	    "numeric iss is the wrong issuer");
	ok(claims_ok("{\"iss\":[\"https://idp\"],\"aud\":\"bedrock\"}", &r,
	    "wrong issuer"), "array iss is the wrong issuer");
	ok(claims_ok("{\"iss\":\"https://idp/\",\"aud\":\"bedrock\"}", &r,
	    "wrong issuer"), "iss with a trailing slash is wrong");
	ok(claims_ok("{\"aud\":\"bedrock\"}", &r, "wrong issuer"),
	    "missing iss");
	ok(claims_ok("{\"iss\":\"https://idp\",\"aud\":\"x\"}", &r,
	    "wrong audience"), "wrong aud string");
	ok(claims_ok("{\"iss\":\"https://idp\",\"aud\":[\"x\",\"other\"]}", &r,
	    NULL), "aud array, any match");
	ok(claims_ok("{\"iss\":\"https://idp\",\"aud\":[\"x\",\"y\"]}", &r,
	    "wrong audience"), "aud array, no match");
	ok(claims_ok("{\"iss\":\"https://idp\",\"aud\":[]}", &r,
	    "wrong audience"), "empty aud array");
	ok(claims_ok("{\"iss\":\"https://idp\",\"aud\":[\"bedrock\",1]}", &r,
	    "wrong audience"), "aud array with a non-string");
	ok(claims_ok("{\"iss\":\"https://idp\",\"aud\":1}", &r,
	    "wrong audience"), "numeric aud");

	snprintf(buf, sizeof buf, C(",\"exp\":%lld"), 1700000000LL - 60);
	ok(claims_ok(buf, &r, "token expired"), "exp = now - leeway expired");
	snprintf(buf, sizeof buf, C(",\"exp\":%lld"), 1700000000LL - 59);
	ok(claims_ok(buf, &r, NULL), "exp = now - leeway + 1 valid");
	snprintf(buf, sizeof buf, C(",\"exp\":%f"), 1700000000.0 - 59.5);
	ok(claims_ok(buf, &r, NULL), "fractional exp valid");
	snprintf(buf, sizeof buf, C(",\"nbf\":%lld"), 1700000000LL + 60);
	ok(claims_ok(buf, &r, NULL), "nbf = now + leeway valid");
	snprintf(buf, sizeof buf, C(",\"nbf\":%lld"), 1700000000LL + 61);
	ok(claims_ok(buf, &r, "token not yet valid"),
	    "nbf = now + leeway + 1 not yet valid");
	snprintf(buf, sizeof buf, C(",\"iat\":%lld"), 1700000000LL + 60);
	ok(claims_ok(buf, &r, NULL), "iat = now + leeway valid");
	snprintf(buf, sizeof buf, C(",\"iat\":%lld"), 1700000000LL + 61);
	ok(claims_ok(buf, &r, "token issued in the future"),
	    "iat = now + leeway + 1 in the future");
	ok(claims_ok(C(",\"exp\":\"2000000000\""), &r,
	    "token exp claim is not a number"), "string exp");
	ok(claims_ok(C(",\"nbf\":true"), &r,
	    "token nbf claim is not a number"), "boolean nbf");
	ok(claims_ok(C(",\"iat\":null"), &r,
	    "token iat claim is not a number"), "null iat");
	ok(claims_ok(C(",\"exp\":-1"), &r, "token expired"), "negative exp");
	ok(claims_ok(C(",\"exp\":9223372036854775807"), &r, NULL),
	    "largest integer exp");

	r.require_exp = 1;
	ok(claims_ok(C(""), &r, "token has no exp claim"), "exp required");
	r.require_exp = 0;
	r.require_iat = 1;
	ok(claims_ok(C(""), &r, "token has no iat claim"), "iat required");
	r.require_iat = 0;
	r.require_nbf = 1;
	ok(claims_ok(C(""), &r, "token has no nbf claim"), "nbf required");
	r.require_nbf = 0;
	r.max_age = 3600;
	ok(claims_ok(C(""), &r, "token has no iat claim"),
	    "max_age needs iat");
	snprintf(buf, sizeof buf, C(",\"iat\":%lld"),
	    1700000000LL - 3600 - 60);
	ok(claims_ok(buf, &r, NULL), "iat at max_age + leeway valid");
	snprintf(buf, sizeof buf, C(",\"iat\":%lld"),
	    1700000000LL - 3600 - 61);
	ok(claims_ok(buf, &r, "token too old"), "iat beyond max_age too old");
	r.max_age = 0;
	r.required = req;
	ok(claims_ok(C(""), &r, "token has no sub claim"), "sub required");
	ok(claims_ok(C(",\"sub\":null"), &r, "token has no sub claim"),
	    "null sub is missing");
	ok(claims_ok(C(",\"sub\":42"), &r, NULL), "numeric sub is present");
	r.required = NULL;
	r.leeway = -100;
	snprintf(buf, sizeof buf, C(",\"exp\":%lld"), 1700000000LL + 1);
	ok(claims_ok(buf, &r, NULL), "negative leeway counts as 0");
	r.leeway = 60;
	r.issuer = NULL;
	ok(claims_ok(C(""), &r, "no issuer or audience to check against"),
	    "rules without an issuer refuse everything");
	r.issuer = "https://idp";
	r.audiences = NULL;
	ok(claims_ok(C(""), &r, "no issuer or audience to check against"),
	    "rules without audiences refuse everything");
#undef C
}

static const struct {
	const char	*doc;
	const char	*want;
} jwks_bad[] = {
	{ "", "not valid JSON" },
	{ "[]", "not a JSON object" },
	{ "{}", "no keys array" },
	{ "{\"keys\":{}}", "no keys array" },
	{ "{\"keys\":[]}", "no usable key" },
	{ "{\"keys\":[1,2]}", "JWK is not an object" },
	{ "{\"keys\":[],\"keys\":[]}", "not valid JSON" },
	{ "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"",
	    "not valid JSON" },
	{ "{\"keys\":[{\"kty\":\"OKP\",\"kty\":\"OKP\"}]}",
	    "not valid JSON" },
	{ "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}",
	    "RSA modulus" },
	{ "{\"keys\":[{\"kty\":\"RSA\",\"e\":\"AQAB\"}]}", "no n" },
	{ "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQ==\",\"e\":\"AQAB\"}]}",
	    "not base64url" },
	{ "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-521\",\"x\":\"AA\","
	    "\"y\":\"AA\"}]}", "crv" },
	{ "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\","
	    "\"x\":\"AA\"}]}", "32-byte" },
	{ "{\"keys\":[{\"kty\":\"oct\",\"k\":\"AAAA\"}]}",
	    "at least 32 bytes" },
	{ "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"alg\":\"none\""
	    ",\"x\":\"AA\"}]}", "alg is not supported" },
	{ "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"use\":1"
	    ",\"x\":\"AA\"}]}", "not for signatures" },
	{ "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":1"
	    ",\"x\":\"AA\"}]}", "kid" },
	{ "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"P-256\""
	    ",\"x\":\"AA\"}]}", "crv" },
	{ "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"Ed25519\""
	    ",\"x\":\"AA\"}]}", "crv" },
};

static char *
jwks_dump(json_t *keys)
{
	json_t	*root;
	char	*s;

	root = json_pack("{s:o}", "keys", keys);
	s = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	return (s);
}

static void
test_jwks(void)
{
	static const enum crypto_alg rs_es_ed[] = { CRYPTO_ALG_RS256,
	    CRYPTO_ALG_ES256, CRYPTO_ALG_EDDSA, CRYPTO_ALG_HS256, 0 };
	static const enum crypto_alg ps_first[] = { CRYPTO_ALG_PS256,
	    CRYPTO_ALG_RS256, 0 };
	static const enum crypto_alg es384[] = { CRYPTO_ALG_ES384, 0 };
	static const enum crypto_alg none[] = { 0 };
	struct crypto_err	 err;
	struct jose_keyset	*set;
	const struct crypto_key	*k;
	uint8_t			 n[512];
	size_t			 nlen, i;
	char			*half, *s, *big, *y_bad;
	json_t			*keys, *out;

	crypto_b64url_decode(a2_n, strlen(a2_n), n, sizeof n, &nlen);
	half = crypto_b64url_encode_alloc(n, nlen / 2);
	y_bad = xstrdup(a3_y);
	y_bad[5] = y_bad[5] == 'A' ? 'B' : 'A';

	keys = json_pack("[{s:s, s:s, s:s, s:s},"	/* RSA, no alg */
	    " {s:s, s:s, s:s, s:s, s:s, s:s},"		/* EC ES256 */
	    " {s:s, s:s, s:s, s:s},"			/* OKP */
	    " {s:s, s:s, s:s, s:s},"			/* oct */
	    " {s:s, s:s, s:s, s:s, s:s},"		/* RSA enc: skip */
	    " {s:s, s:s, s:s},"				/* unknown kty */
	    " {s:s, s:s, s:s, s:s},"			/* X25519: skip */
	    " {s:s, s:s, s:s, s:s},"			/* RSA-1024: skip */
	    " {s:s, s:s, s:s, s:s, s:s, s:s},"		/* off curve */
	    " {s:s, s:s, s:s, s:s, s:s},"		/* RS512 not allowed */
	    " {s:s, s:s, s:s, s:s, s:[s]},"		/* key_ops sign */
	    " {s:s, s:s, s:s, s:s, s:s},"		/* alg/kty mismatch */
	    " i]",
	    "kty", "RSA", "kid", "rsa1", "n", a2_n, "e", "AQAB",
	    "kty", "EC", "kid", "ec1", "crv", "P-256", "x", a3_x, "y", a3_y,
	    "alg", "ES256",
	    "kty", "OKP", "kid", "ed1", "crv", "Ed25519", "x", ed_x,
	    "kty", "oct", "kid", "hs1", "k", a1_k, "use", "sig",
	    "kty", "RSA", "kid", "enc1", "n", a2_n, "e", "AQAB", "use", "enc",
	    "kty", "PQC", "kid", "pq1", "x", "AAAA",
	    "kty", "OKP", "kid", "x1", "crv", "X25519", "x", ed_x,
	    "kty", "RSA", "kid", "small", "n", half, "e", "AQAB",
	    "kty", "EC", "kid", "bad", "crv", "P-256", "x", a3_x, "y", y_bad,
	    "alg", "ES256",
	    "kty", "RSA", "kid", "rs512", "n", a2_n, "e", "AQAB", "alg",
	    "RS512",
	    "kty", "RSA", "kid", "ops", "n", a2_n, "e", "AQAB", "key_ops",
	    "sign",
	    "kty", "EC", "kid", "mix", "n", a2_n, "e", "AQAB", "alg", "RS256",
	    42);
	s = jwks_dump(keys);
	set = jose_jwks_parse(s, strlen(s), rs_es_ed, &err);
	ok(set != NULL, "JWKS parses");
	if (set != NULL) {
		is_int(set->nkeys, 4, "4 usable keys");
		is_int(set->nskipped, 9, "9 JWKs skipped");
		k = jose_keyset_find(set, "rsa1", CRYPTO_ALG_RS256);
		ok(k != NULL && crypto_key_alg(k) == CRYPTO_ALG_RS256,
		    "RSA key without alg pinned to RS256");
		ok(jose_keyset_find(set, "rsa1", CRYPTO_ALG_PS256) == NULL,
		    "RSA key is not found for PS256");
		ok(jose_keyset_find(set, "ec1", CRYPTO_ALG_ES256) != NULL,
		    "EC key found");
		ok(jose_keyset_find(set, "ed1", CRYPTO_ALG_EDDSA) != NULL,
		    "OKP key found");
		ok(jose_keyset_find(set, "hs1", CRYPTO_ALG_HS256) != NULL,
		    "oct key found");
		ok(jose_keyset_find(set, "enc1", CRYPTO_ALG_RS256) == NULL,
		    "enc key not found");
		ok(jose_keyset_find(set, "nope", CRYPTO_ALG_RS256) == NULL,
		    "unknown kid not found");
		ok(jose_keyset_find(set, NULL, CRYPTO_ALG_ES256) ==
		    jose_keyset_find(set, "ec1", CRYPTO_ALG_ES256),
		    "no kid: the only ES256 key");
		ok(jose_keyset_find(set, NULL, CRYPTO_ALG_PS512) == NULL,
		    "no kid, no key of that alg");
		out = jose_keyset_jwks(set);
		ok(json_array_size(json_object_get(out, "keys")) == 3,
		    "published JWKS leaves out the oct key");
		for (i = 0; i < 3; i++) {
			json_t *j = json_array_get(json_object_get(out,
			    "keys"), i);
			ok(json_object_get(j, "k") == NULL &&
			    json_object_get(j, "d") == NULL &&
			    json_is_string(json_object_get(j, "kid")) &&
			    json_is_string(json_object_get(j, "alg")),
			    "published JWK %zu has kid and alg and no secret",
			    i);
		}
		json_decref(out);
	}
	jose_keyset_free(set);
	free(s);

	keys = json_pack("[{s:s, s:s, s:s, s:s}]", "kty", "RSA", "kid", "r",
	    "n", a2_n, "e", "AQAB");
	s = jwks_dump(keys);
	set = jose_jwks_parse(s, strlen(s), ps_first, &err);
	ok(set != NULL && set->nkeys == 1 &&
	    crypto_key_alg(set->keys[0]) == CRYPTO_ALG_PS256,
	    "RSA key without alg takes the first allowed fit (PS256)");
	jose_keyset_free(set);
	set = jose_jwks_parse(s, strlen(s), es384, &err);
	ok(set == NULL && strstr(err.msg, "no allowed alg") != NULL,
	    "nothing fits: %s", err.msg);
	ok(jose_jwks_parse(s, strlen(s), none, &err) == NULL,
	    "empty allow-list refused");
	ok(jose_jwks_parse(s, strlen(s), NULL, &err) == NULL,
	    "NULL allow-list refused");
	free(s);

	keys = json_array();
	for (i = 0; i < 65; i++)
		json_array_append_new(keys, json_pack("{s:s, s:s, s:s}", "kty",
		    "OKP", "crv", "Ed25519", "x", ed_x));
	s = jwks_dump(keys);
	ok(jose_jwks_parse(s, strlen(s), rs_es_ed, &err) == NULL &&
	    strstr(err.msg, "more than 64") != NULL, "65 keys refused");
	free(s);

	for (i = 0; i < nitems(jwks_bad); i++) {
		err.msg[0] = '\0';
		set = jose_jwks_parse(jwks_bad[i].doc, strlen(jwks_bad[i].doc),
		    rs_es_ed, &err);
		ok(set == NULL && strstr(err.msg, jwks_bad[i].want) != NULL,
		    "bad JWKS #%zu refused: %s", i, err.msg);
		jose_keyset_free(set);
	}

	big = xmalloc(JOSE_JWKS_MAX + 2);
	memset(big, ' ', JOSE_JWKS_MAX + 1);
	memcpy(big, "{\"keys\":[]}", 11);
	big[JOSE_JWKS_MAX + 1] = '\0';
	ok(jose_jwks_parse(big, JOSE_JWKS_MAX + 1, rs_es_ed, &err) == NULL &&
	    strstr(err.msg, "too large") != NULL, "JWKS over 256 KiB refused");
	free(big);
	big = xmalloc(20001);
	memset(big, '[', 20000);
	big[20000] = '\0';
	ok(jose_jwks_parse(big, 20000, rs_es_ed, &err) == NULL &&
	    strstr(err.msg, "nested") != NULL, "deep JWKS refused");
	free(big);
	free(half);
	free(y_bad);
}

/*
 * The verify-only algorithms against tokens another implementation signed:
 * each verifies with the public JWK pinned to its algorithm, and is refused
 * with one bit of its signature changed, or by the same key pinned to a
 * sibling algorithm.
 */
static void
test_foreign_vectors(void)
{
	static const struct {
		enum crypto_alg	 alg;
		enum crypto_alg	 sibling;
		const char	*token;
	} v[] = {
		{ CRYPTO_ALG_RS384, CRYPTO_ALG_PS384, jose_rs384 },
		{ CRYPTO_ALG_RS512, CRYPTO_ALG_RS256, jose_rs512 },
		{ CRYPTO_ALG_PS256, CRYPTO_ALG_RS256, jose_ps256 },
		{ CRYPTO_ALG_PS384, CRYPTO_ALG_RS384, jose_ps384 },
		{ CRYPTO_ALG_PS512, CRYPTO_ALG_PS256, jose_ps512 },
		{ CRYPTO_ALG_ES384, CRYPTO_ALG_NONE, jose_es384 },
	};
	static const char *const auds[] = { "bsp", NULL };
	struct jose_claims_rules rules;
	struct crypto_err	 err;
	struct crypto_key	*k, *sk;
	struct jose_jws		*jws;
	enum crypto_alg		 allow[2] = { CRYPTO_ALG_NONE, CRYPTO_ALG_NONE };
	json_t			*jwk;
	const char		*name;
	char			*t, kid[32];
	size_t			 i;

	memset(&rules, 0, sizeof rules);
	rules.issuer = "https://idp.example";
	rules.audiences = auds;
	rules.now = 1900000000;
	rules.leeway = 60;
	rules.require_exp = 1;
	for (i = 0; i < nitems(v); i++) {
		name = crypto_alg_name(v[i].alg);
		allow[0] = v[i].alg;
		if (v[i].alg == CRYPTO_ALG_ES384)
			jwk = json_pack("{s:s, s:s, s:s, s:s}", "kty", "EC",
			    "crv", "P-384", "x", jose_es384_x, "y",
			    jose_es384_y);
		else
			jwk = json_pack("{s:s, s:s, s:s}", "kty", "RSA", "n",
			    a2_n, "e", "AQAB");
		k = jose_jwk_parse(jwk, allow, &err);
		snprintf(kid, sizeof kid, "jose-%s", name);
		jws = jose_parse(v[i].token, strlen(v[i].token), &err);
		ok(k != NULL && jws != NULL && jws->alg == v[i].alg &&
		    jws->kid != NULL && strcmp(jws->kid, kid) == 0 &&
		    jose_verify(jws, k, &err) == 0 &&
		    jose_claims_check(jws->claims, &rules, &err) == 0,
		    "%s signed by jose verifies (%s)", name,
		    k == NULL || jws == NULL ? err.msg : "ok");
		jose_jws_free(jws);

		t = xstrdup(v[i].token);
		t[strlen(t) - 5] = t[strlen(t) - 5] == 'A' ? 'B' : 'A';
		jws = jose_parse(t, strlen(t), &err);
		ok(jws != NULL && k != NULL && jose_verify(jws, k, &err) == -1,
		    "%s signed by jose, signature changed: refused", name);
		jose_jws_free(jws);
		free(t);

		if (v[i].sibling != CRYPTO_ALG_NONE) {
			allow[0] = v[i].sibling;
			sk = jose_jwk_parse(jwk, allow, &err);
			jws = jose_parse(v[i].token, strlen(v[i].token), &err);
			ok(sk != NULL && jws != NULL &&
			    jose_verify(jws, sk, &err) == -1,
			    "%s token refused by the key pinned to %s", name,
			    crypto_alg_name(v[i].sibling));
			jose_jws_free(jws);
			crypto_key_free(sk);
		}
		json_decref(jwk);
		crypto_key_free(k);
	}
}

int
main(void)
{
	struct crypto_err	err;

	if (crypto_init() == -1) {
		printf("Bail out! crypto_init\n");
		return (1);
	}
	hs_key = crypto_key_from_secret_b64url(CRYPTO_ALG_HS256, a1_k,
	    strlen(a1_k), &err);
	if (hs_key == NULL) {
		printf("Bail out! %s\n", err.msg);
		return (1);
	}
	test_rfc_vectors();
	test_foreign_vectors();
	test_sign_roundtrip();
	test_confusion();
	test_header_refusals();
	test_typ();
	test_claims();
	test_jwks();
	crypto_key_free(hs_key);
	return (tap_done());
}
