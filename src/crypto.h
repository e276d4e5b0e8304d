/*
 * crypto.h: the narrow interface to every key the daemon holds.
 *
 * Key bytes never leave crypto.c in the clear: callers get opaque
 * struct crypto_key objects, seal and unseal blobs under the key-encryption
 * key, and ask for signatures and verifications (JOSE, AWS SigV4).
 * Everything that can fail because of its input reports why in a
 * caller-owned struct crypto_err, which is never allocated.
 */

#ifndef CRYPTO_H
#define CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#define CRYPTO_KEY_LEN		32	/* KEK, sealing, derived keys */
#define CRYPTO_HASH_LEN		32	/* hash_token, sha256 */
#define CRYPTO_SEAL_VERSION	1	/* first byte of a sealed blob */
#define CRYPTO_SEAL_OVERHEAD	(1 + 24 + 16)	/* version nonce MAC */
#define CRYPTO_SIG_MAX		1024	/* RSA-8192 */
#define CRYPTO_SECRET_MIN	32	/* HS256; HS384 48, HS512 64 */
#define CRYPTO_SECRET_MAX	1024
#define CRYPTO_RSA_MIN_BITS	2048
#define CRYPTO_RSA_MAX_BITS	8192
#define CRYPTO_RSA_MAX_BYTES	(CRYPTO_RSA_MAX_BITS / 8)
#define CRYPTO_EC_MAX_BYTES	48	/* a P-384 coordinate */
#define CRYPTO_KID_MAX		256
#define CRYPTO_PEM_MAX		65536
#define CRYPTO_SIGV4_SECRET_MAX	256	/* an AWS secret access key */
#define CRYPTO_SIGV4_FIELD_MAX	256	/* region, service, with the NUL */

/* Why an input was refused; safe to log, never holds secret bytes. */
struct crypto_err {
	char	msg[160];
};

/* JOSE signature algorithms (RFC 7518 section 3, RFC 8037). */
enum crypto_alg {
	CRYPTO_ALG_NONE = 0,	/* "none" and anything unknown */
	CRYPTO_ALG_HS256,
	CRYPTO_ALG_HS384,
	CRYPTO_ALG_HS512,
	CRYPTO_ALG_RS256,
	CRYPTO_ALG_RS384,
	CRYPTO_ALG_RS512,
	CRYPTO_ALG_PS256,
	CRYPTO_ALG_PS384,
	CRYPTO_ALG_PS512,
	CRYPTO_ALG_ES256,
	CRYPTO_ALG_ES384,
	CRYPTO_ALG_EDDSA,
	CRYPTO_ALG_MAX
};

enum crypto_kty {
	CRYPTO_KTY_NONE = 0,
	CRYPTO_KTY_OCT,
	CRYPTO_KTY_RSA,
	CRYPTO_KTY_EC,
	CRYPTO_KTY_OKP
};

enum crypto_crv {
	CRYPTO_CRV_NONE = 0,
	CRYPTO_CRV_P256,
	CRYPTO_CRV_P384,
	CRYPTO_CRV_ED25519
};

/*
 * Public key parameters as JWK carries them (big-endian, unpadded for RSA,
 * full coordinate size for EC). Fixed-size so that parsing a JWKS never
 * allocates for a key it then refuses.
 */
struct crypto_pub {
	enum crypto_kty	 kty;
	enum crypto_crv	 crv;
	uint8_t		 n[CRYPTO_RSA_MAX_BYTES];
	size_t		 nlen;
	uint8_t		 e[8];
	size_t		 elen;
	uint8_t		 x[CRYPTO_EC_MAX_BYTES];
	size_t		 xlen;
	uint8_t		 y[CRYPTO_EC_MAX_BYTES];
	size_t		 ylen;
};

struct crypto_key;

int		 crypto_init(void);

/* Randomness, hashing, comparison. */
void		 crypto_random(void *, size_t);
void		 crypto_hash_token(const char *, uint8_t [CRYPTO_HASH_LEN]);
void		 crypto_sha256(const void *, size_t,
		     uint8_t [CRYPTO_HASH_LEN]);
int		 crypto_memeq(const void *, const void *, size_t);
char		*crypto_b64_encode_alloc(const void *, size_t);
int		 crypto_b64_decode(const char *, size_t, uint8_t *, size_t,
		     size_t *);
const char	*crypto_sodium_version(void);
int		 crypto_streq(const char *, const char *);

/* Bearer secrets: new ones, and public names for them. */
char		*crypto_new_secret(const char *);
void		 crypto_secret_id(const char *, const char *, size_t, char *,
		     size_t);

/* base64url without padding (RFC 4648 section 5, RFC 7515 section 2). */
size_t		 crypto_b64url_len(size_t);
void		 crypto_b64url_encode(const void *, size_t, char *, size_t);
char		*crypto_b64url_encode_alloc(const void *, size_t);
int		 crypto_b64url_decode(const char *, size_t, uint8_t *,
		     size_t, size_t *);

/*
 * Sealing (XSalsa20-Poly1305) under the KEK, under a key derived from it
 * for one purpose, or under a key derived from a bearer secret.
 */
int		 crypto_kek_load(const char *, struct crypto_err *);
int		 crypto_kek_loaded(void);
int		 crypto_kek_check(uint8_t [CRYPTO_HASH_LEN]);
void		 crypto_kek_unload(void);
int		 crypto_seal(const void *, size_t, uint8_t **, size_t *);
int		 crypto_unseal(const uint8_t *, size_t, uint8_t **,
		     size_t *);
int		 crypto_seal_for(const char *, const void *, size_t,
		     uint8_t **, size_t *);
int		 crypto_unseal_for(const char *, const uint8_t *, size_t,
		     uint8_t **, size_t *);
int		 crypto_seal_token(const char *, const char *, const void *,
		     size_t, uint8_t **, size_t *);
int		 crypto_unseal_token(const char *, const char *,
		     const uint8_t *, size_t, uint8_t **, size_t *);

/*
 * AWS Signature Version 4: the HMAC of a string to sign under the key
 * derived from a secret access key for (date YYYYMMDD, region, service).
 */
int		 crypto_sigv4_sign(const char *, const char *, const char *,
		     const char *, const void *, size_t,
		     uint8_t [CRYPTO_HASH_LEN]);
void		 crypto_sigv4_clear(void);
unsigned long	 crypto_sigv4_derivations(void);

/* Algorithm names and families. */
enum crypto_alg	 crypto_alg_from_name(const char *);
const char	*crypto_alg_name(enum crypto_alg);
enum crypto_kty	 crypto_alg_kty(enum crypto_alg);
enum crypto_crv	 crypto_alg_crv(enum crypto_alg);
const char	*crypto_kty_name(enum crypto_kty);
enum crypto_crv	 crypto_crv_from_name(const char *);
const char	*crypto_crv_name(enum crypto_crv);

/* Signing and verification keys, each pinned to one algorithm. */
struct crypto_key *crypto_key_generate(enum crypto_alg, int,
		     struct crypto_err *);
struct crypto_key *crypto_key_from_pem(enum crypto_alg, const char *, size_t,
		     struct crypto_err *);
struct crypto_key *crypto_key_from_secret(enum crypto_alg, const void *,
		     size_t, struct crypto_err *);
struct crypto_key *crypto_key_from_secret_b64url(enum crypto_alg,
		     const char *, size_t, struct crypto_err *);
struct crypto_key *crypto_key_from_pub(enum crypto_alg,
		     const struct crypto_pub *, struct crypto_err *);
int		 crypto_key_public(const struct crypto_key *,
		     struct crypto_pub *);
char		*crypto_key_public_pem(const struct crypto_key *);
int		 crypto_key_seal(const struct crypto_key *, uint8_t **,
		     size_t *, struct crypto_err *);
struct crypto_key *crypto_key_unseal(const uint8_t *, size_t,
		     struct crypto_err *);
void		 crypto_key_free(struct crypto_key *);
enum crypto_alg	 crypto_key_alg(const struct crypto_key *);
enum crypto_kty	 crypto_key_kty(const struct crypto_key *);
int		 crypto_key_has_private(const struct crypto_key *);
const char	*crypto_key_kid(const struct crypto_key *);
int		 crypto_key_set_kid(struct crypto_key *, const char *);
size_t		 crypto_key_sig_len(const struct crypto_key *);
int		 crypto_key_sign(const struct crypto_key *, const void *,
		     size_t, uint8_t *, size_t, size_t *, struct crypto_err *);
int		 crypto_key_verify(const struct crypto_key *,
		     enum crypto_alg, const void *, size_t, const uint8_t *,
		     size_t, struct crypto_err *);
/* Keys held elsewhere (AWS KMS): the public half, and its signatures. */
struct crypto_key *crypto_key_from_spki(enum crypto_alg, const uint8_t *,
		     size_t, struct crypto_err *);
int		 crypto_key_remote_sig(const struct crypto_key *,
		     const void *, size_t, const uint8_t *, size_t, uint8_t *,
		     size_t, size_t *, struct crypto_err *);

#endif /* CRYPTO_H */
