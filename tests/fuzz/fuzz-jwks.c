/*
 * fuzz-jwks.c: libFuzzer target for JWK set parsing.
 *
 * Each input is a JWKS document, parsed with every algorithm allowed.
 * Oracles that abort: every key we accept must publish as a JWK that
 * parses back to a key of the same algorithm and thumbprint, and must be
 * found again by its kid and algorithm.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bsp.h"
#include "crypto.h"
#include "jose.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static int	fuzz_ready;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum crypto_alg	 allow[] = {
		CRYPTO_ALG_RS256, CRYPTO_ALG_ES256, CRYPTO_ALG_EDDSA,
		CRYPTO_ALG_PS256, CRYPTO_ALG_ES384, CRYPTO_ALG_HS256,
		CRYPTO_ALG_RS384, CRYPTO_ALG_RS512, CRYPTO_ALG_PS384,
		CRYPTO_ALG_PS512, CRYPTO_ALG_HS384, CRYPTO_ALG_HS512,
		CRYPTO_ALG_NONE
	};
	struct crypto_err		 err;
	struct jose_keyset		*set;
	struct crypto_key		*k, *back;
	json_t				*jwk, *out;
	const char			*kid;
	char				 t1[44], t2[44];
	size_t				 i;

	if (!fuzz_ready) {
		if (crypto_init() == -1)
			abort();
		fuzz_ready = 1;
	}
	set = jose_jwks_parse((const char *)data, size, allow, &err);
	if (set == NULL)
		return (0);
	for (i = 0; i < set->nkeys; i++) {
		k = set->keys[i];
		kid = crypto_key_kid(k);
		if (kid != NULL &&
		    jose_keyset_find(set, kid, crypto_key_alg(k)) == NULL)
			abort();
		if ((jwk = jose_jwk_public(k)) == NULL) {
			if (crypto_key_kty(k) != CRYPTO_KTY_OCT)
				abort();
			continue;
		}
		back = jose_jwk_parse(jwk, allow, &err);
		if (back == NULL || crypto_key_alg(back) != crypto_key_alg(k) ||
		    jose_jwk_thumbprint(k, t1) == -1 ||
		    jose_jwk_thumbprint(back, t2) == -1 ||
		    strcmp(t1, t2) != 0)
			abort();
		crypto_key_free(back);
		json_decref(jwk);
	}
	out = jose_keyset_jwks(set);
	json_decref(out);
	jose_keyset_free(set);
	return (0);
}
