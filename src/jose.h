/*
 * jose.h: compact JWS (RFC 7515), JWK and JWK sets (RFC 7517), JWT claim
 * checks (RFC 7519), on top of crypto.h and jansson.
 *
 * Everything that parses bytes from the network is bounded and strict, and
 * reports why it refused them in a struct crypto_err (from crypto.h).
 */

#ifndef JOSE_H
#define JOSE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "crypto.h"

#define JOSE_TOKEN_MAX		16384	/* compact JWS, in bytes */
#define JOSE_HEADER_MAX		2048	/* decoded header */
#define JOSE_PAYLOAD_MAX	12288	/* decoded claims */
#define JOSE_DEPTH_MAX		16	/* JSON nesting */
#define JOSE_JWKS_MAX		262144	/* JWK set, in bytes */
#define JOSE_JWKS_KEYS_MAX	64

/* A parsed (not yet verified) compact JWS. */
struct jose_jws {
	enum crypto_alg	 alg;
	const char	*kid;		/* NULL if absent */
	const char	*typ;		/* NULL if absent */
	json_t		*header;
	json_t		*claims;	/* always an object */
	const char	*signing_input;	/* b64(hdr) "." b64(claims) */
	size_t		 signing_input_len;
	uint8_t		*sig;
	size_t		 siglen;
	char		*buf;		/* private: the token */
	size_t		 buflen;
};

/* A set of verification keys, each pinned to one algorithm. */
struct jose_keyset {
	struct crypto_key	**keys;
	size_t			  nkeys;
	size_t			  nskipped;	/* JWKs not used */
};

/*
 * What jose_claims_check() demands. issuer and audiences are required;
 * lists end with NULL.
 */
struct jose_claims_rules {
	const char		*issuer;	/* "iss" must equal this */
	const char *const	*audiences;	/* "aud" holds one */
	time_t			 now;
	long			 leeway;	/* seconds */
	int			 require_exp;
	int			 require_iat;
	int			 require_nbf;
	long			 max_age;	/* for iat; 0: off */
	const char *const	*required;	/* claims to have */
	int			 any_issuer;	/* skip the iss check */
	int			 any_audience;	/* skip the aud check */
};

struct jose_jws	*jose_parse(const char *, size_t, struct crypto_err *);
void		 jose_jws_free(struct jose_jws *);
int		 jose_check_typ(const struct jose_jws *, const char *const *,
		     int, struct crypto_err *);
int		 jose_verify(const struct jose_jws *,
		     const struct crypto_key *, struct crypto_err *);
int		 jose_claims_check(const json_t *,
		     const struct jose_claims_rules *, struct crypto_err *);
char		*jose_sign(const struct crypto_key *, json_t *,
		     const char *, struct crypto_err *);
char		*jose_sign_input(const struct crypto_key *, json_t *,
		     const char *, struct crypto_err *);
char		*jose_sign_finish(char *, const uint8_t *, size_t);

json_t		*jose_json_load(const char *, size_t, size_t,
		     const char *, struct crypto_err *);

struct crypto_key *jose_jwk_parse(const json_t *, const enum crypto_alg *,
		     struct crypto_err *);
json_t		*jose_jwk_public(const struct crypto_key *);
int		 jose_jwk_thumbprint(const struct crypto_key *,
		     char [44]);

struct jose_keyset *jose_keyset_new(void);
void		 jose_keyset_add(struct jose_keyset *, struct crypto_key *);
void		 jose_keyset_free(struct jose_keyset *);
struct jose_keyset *jose_jwks_parse(const char *, size_t,
		     const enum crypto_alg *, struct crypto_err *);
const struct crypto_key *jose_keyset_find(const struct jose_keyset *,
		     const char *, enum crypto_alg);
json_t		*jose_keyset_jwks(const struct jose_keyset *);

#endif /* JOSE_H */
