/*
 * fuzz-jws.c: libFuzzer target for compact JWS handling.
 *
 * Each input is a token: it is parsed, its typ and claims are checked, and
 * it is verified against a fixed HS256 key and a fixed Ed25519 key (the
 * seed corpus holds tokens that really verify). An input that starts with
 * '{' is instead "header JSON", a newline, "claims JSON": it is encoded and
 * signed with the HS256 key first, so that the fuzzer reaches the JSON and
 * header checks without having to find valid base64url and MACs. Oracles
 * that abort: strict base64url decoding must round-trip; claims that parsed
 * and signed must parse and verify again, unchanged.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bsp.h"
#include "crypto.h"
#include "jose.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void	fuzz_init(void);
static void	fuzz_b64(const uint8_t *, size_t);
static char	*fuzz_build(const uint8_t *, size_t);
static void	fuzz_token(const char *, size_t);

/* The RFC 8037 A.1 test key; the HS256 secret is just as public. */
static const char fuzz_ed_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n"
    "-----END PRIVATE KEY-----\n";
static const char fuzz_hs_secret[] = "bsp-fuzz-hs256-secret-0123456789abcdef";

static struct crypto_key	*fuzz_hs, *fuzz_ed;

static void
fuzz_init(void)
{
	if (crypto_init() == -1)
		abort();
	fuzz_hs = crypto_key_from_secret(CRYPTO_ALG_HS256, fuzz_hs_secret,
	    strlen(fuzz_hs_secret), NULL);
	fuzz_ed = crypto_key_from_pem(CRYPTO_ALG_EDDSA, fuzz_ed_pem,
	    strlen(fuzz_ed_pem), NULL);
	if (fuzz_hs == NULL || fuzz_ed == NULL)
		abort();
	crypto_key_set_kid(fuzz_hs, "hs");
	crypto_key_set_kid(fuzz_ed, "ed");
}

/* Whatever strict base64url accepts must encode back to the same text. */
static void
fuzz_b64(const uint8_t *data, size_t size)
{
	uint8_t	*bin;
	char	*txt;
	size_t	 n;

	if (size > 4096)
		return;
	bin = xmalloc(size + 1);
	if (crypto_b64url_decode((const char *)data, size, bin, size,
	    &n) == 0) {
		txt = crypto_b64url_encode_alloc(bin, n);
		if (strlen(txt) != size || strncmp(txt, (const char *)data,
		    size) != 0)
			abort();
		free(txt);
	}
	free(bin);
}

/* Encode and sign "header\nclaims" as a compact JWS with the HS256 key. */
static char *
fuzz_build(const uint8_t *data, size_t size)
{
	const uint8_t	*nl;
	uint8_t		 sig[CRYPTO_SIG_MAX];
	char		*h, *c, *in, *s, *out;
	size_t		 siglen;

	if (size > JOSE_TOKEN_MAX ||
	    (nl = memchr(data, '\n', size)) == NULL)
		return (NULL);
	h = crypto_b64url_encode_alloc(data, (size_t)(nl - data));
	c = crypto_b64url_encode_alloc(nl + 1, size - (size_t)(nl - data) - 1);
	xasprintf(&in, "%s.%s", h, c);
	if (crypto_key_sign(fuzz_hs, in, strlen(in), sig, sizeof sig,
	    &siglen, NULL) == -1)
		abort();
	s = crypto_b64url_encode_alloc(sig, siglen);
	xasprintf(&out, "%s.%s", in, s);
	free(h);
	free(c);
	free(in);
	free(s);
	return (out);
}

static void
fuzz_token(const char *data, size_t size)
{
	static const char *const	 typs[] = { "JWT", "at+jwt", NULL };
	static const char *const	 auds[] = { "bedrock", "other", NULL };
	static const char *const	 req[] = { "sub", NULL };
	struct jose_claims_rules	 r;
	struct crypto_err		 err;
	struct jose_jws			*jws, *again;
	char				*t;

	if ((jws = jose_parse(data, size, &err)) == NULL)
		return;
	(void)jose_check_typ(jws, typs, 0, &err);
	(void)jose_check_typ(jws, typs, 1, &err);
	memset(&r, 0, sizeof r);
	r.issuer = "https://issuer.example";
	r.audiences = auds;
	r.now = 1700000000;
	r.leeway = 60;
	r.require_exp = 1;
	r.max_age = 86400;
	r.required = req;
	(void)jose_claims_check(jws->claims, &r, &err);
	(void)jose_verify(jws, fuzz_hs, &err);
	(void)jose_verify(jws, fuzz_ed, &err);

	if ((t = jose_sign(fuzz_hs, jws->claims, jws->typ, &err)) != NULL) {
		again = jose_parse(t, strlen(t), &err);
		if (again == NULL || jose_verify(again, fuzz_hs, &err) != 0 ||
		    !json_equal(again->claims, jws->claims))
			abort();
		jose_jws_free(again);
		free(t);
	}
	jose_jws_free(jws);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	*t;

	if (fuzz_hs == NULL)
		fuzz_init();
	if (size > 0 && data[0] == '{') {
		if ((t = fuzz_build(data, size)) != NULL) {
			fuzz_token(t, strlen(t));
			free(t);
		}
		return (0);
	}
	fuzz_b64(data, size);
	fuzz_token((const char *)data, size);
	return (0);
}
