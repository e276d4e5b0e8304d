/*
 * crypto.c: every key byte the daemon holds lives in this file.
 *
 * The key-encryption key (KEK) is read from, or created in, a file that only
 * its owner may read. Blobs are sealed with libsodium's secretbox behind a
 * one-byte format version. Signing keys are opaque objects pinned to exactly
 * one JOSE algorithm for their whole life: an RSA key made for RS256 can
 * never check an HS256 MAC, and an Ed25519 key never signs as anything but
 * EdDSA. Ed25519 runs on libsodium, RSA and ECDSA on OpenSSL 3, HMAC on
 * OpenSSL with a constant-time comparison. AWS SigV4 signing keys are
 * derived and kept here too: sigv4.c hands in the string to sign and gets
 * the signature back. Nothing here logs; what went wrong with an input is
 * written to a caller-owned struct crypto_err.
 */

#include <sys/types.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <sodium.h>

#include "bsp.h"
#include "crypto.h"

#define CRYPTO_NONCE_LEN	crypto_secretbox_NONCEBYTES
#define CRYPTO_KEYBLOB_VERSION	1
#define CRYPTO_ED_SEED_LEN	crypto_sign_SEEDBYTES
#define CRYPTO_ED_SIG_LEN	crypto_sign_BYTES
#define CRYPTO_DER_SIG_MAX	256
#define CRYPTO_SIGV4_CACHE	4
#define CRYPTO_SIGV4_TERM	"aws4_request"

struct crypto_key {
	enum crypto_alg	 alg;
	enum crypto_kty	 kty;
	enum crypto_crv	 crv;
	int		 has_private;
	char		*kid;
	EVP_PKEY	*pkey;		/* RSA, EC */
	uint8_t		*secret;	/* HS* */
	size_t		 secretlen;
	uint8_t		 ed_pk[crypto_sign_PUBLICKEYBYTES];
	uint8_t		 ed_sk[crypto_sign_SECRETKEYBYTES];
};

static const struct crypto_alg_info {
	const char	*name;
	enum crypto_kty	 kty;
	enum crypto_crv	 crv;
	const EVP_MD	*(*md)(void);
	int		 pss;
	size_t		 size;	/* HS: MAC and min. secret; ES: x */
} crypto_algs[CRYPTO_ALG_MAX] = {
	[CRYPTO_ALG_NONE] =  { "none", CRYPTO_KTY_NONE, CRYPTO_CRV_NONE,
	    NULL, 0, 0 },
	[CRYPTO_ALG_HS256] = { "HS256", CRYPTO_KTY_OCT, CRYPTO_CRV_NONE,
	    EVP_sha256, 0, 32 },
	[CRYPTO_ALG_HS384] = { "HS384", CRYPTO_KTY_OCT, CRYPTO_CRV_NONE,
	    EVP_sha384, 0, 48 },
	[CRYPTO_ALG_HS512] = { "HS512", CRYPTO_KTY_OCT, CRYPTO_CRV_NONE,
	    EVP_sha512, 0, 64 },
	[CRYPTO_ALG_RS256] = { "RS256", CRYPTO_KTY_RSA, CRYPTO_CRV_NONE,
	    EVP_sha256, 0, 0 },
	[CRYPTO_ALG_RS384] = { "RS384", CRYPTO_KTY_RSA, CRYPTO_CRV_NONE,
	    EVP_sha384, 0, 0 },
	[CRYPTO_ALG_RS512] = { "RS512", CRYPTO_KTY_RSA, CRYPTO_CRV_NONE,
	    EVP_sha512, 0, 0 },
	[CRYPTO_ALG_PS256] = { "PS256", CRYPTO_KTY_RSA, CRYPTO_CRV_NONE,
	    EVP_sha256, 1, 0 },
	[CRYPTO_ALG_PS384] = { "PS384", CRYPTO_KTY_RSA, CRYPTO_CRV_NONE,
	    EVP_sha384, 1, 0 },
	[CRYPTO_ALG_PS512] = { "PS512", CRYPTO_KTY_RSA, CRYPTO_CRV_NONE,
	    EVP_sha512, 1, 0 },
	[CRYPTO_ALG_ES256] = { "ES256", CRYPTO_KTY_EC, CRYPTO_CRV_P256,
	    EVP_sha256, 0, 32 },
	[CRYPTO_ALG_ES384] = { "ES384", CRYPTO_KTY_EC, CRYPTO_CRV_P384,
	    EVP_sha384, 0, 48 },
	[CRYPTO_ALG_EDDSA] = { "EdDSA", CRYPTO_KTY_OKP, CRYPTO_CRV_ED25519,
	    NULL, 0, 64 },
};

static const char *const crypto_kty_names[] = {
	[CRYPTO_KTY_NONE] = "none",
	[CRYPTO_KTY_OCT] = "oct",
	[CRYPTO_KTY_RSA] = "RSA",
	[CRYPTO_KTY_EC] = "EC",
	[CRYPTO_KTY_OKP] = "OKP",
};

static const char *const crypto_crv_names[] = {
	[CRYPTO_CRV_NONE] = "none",
	[CRYPTO_CRV_P256] = "P-256",
	[CRYPTO_CRV_P384] = "P-384",
	[CRYPTO_CRV_ED25519] = "Ed25519",
};

static const char crypto_b64url_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/*
 * A SigV4 signing key, as an HMAC context keyed with it, for one (secret,
 * date, region, service). The secret is kept to recognise it by: compared
 * in constant time, which costs less than hashing it on every call.
 */
struct crypto_sigv4_key {
	EVP_MAC_CTX	*ctx;
	unsigned long	 stamp;		/* last use; 0: free */
	char		 date[9];
	char		 region[CRYPTO_SIGV4_FIELD_MAX];
	char		 service[CRYPTO_SIGV4_FIELD_MAX];
	size_t		 secretlen;
	uint8_t		 secret[CRYPTO_SIGV4_SECRET_MAX];
};

static uint8_t	crypto_kek[CRYPTO_KEY_LEN];
static int	crypto_kek_ok;

static struct crypto_sigv4_key	 crypto_sigv4_keys[CRYPTO_SIGV4_CACHE];
static unsigned long		 crypto_sigv4_stamp;
static unsigned long		 crypto_sigv4_nderived;
static EVP_MAC			*crypto_hmac_mac;	/* fetched once */

static void	 crypto_seterr(struct crypto_err *, const char *, ...)
		    printflike(2, 3);
static int	 crypto_alg_ok(enum crypto_alg);
static struct crypto_key *crypto_key_new(enum crypto_alg);
static int	 crypto_check_rsa_e(const BIGNUM *, struct crypto_err *);
static int	 crypto_check_pkey(enum crypto_alg, EVP_PKEY *,
		    struct crypto_err *);
static struct crypto_key *crypto_key_from_pkey(enum crypto_alg, EVP_PKEY *,
		    int, struct crypto_err *);
static EVP_PKEY	*crypto_rsa_from_pub(const struct crypto_pub *,
		    struct crypto_err *);
static EVP_PKEY	*crypto_ec_from_pub(enum crypto_alg,
		    const struct crypto_pub *, struct crypto_err *);
static int	 crypto_no_pass(char *, int, int, void *);
static EVP_MD_CTX *crypto_md_init(const struct crypto_key *, int);
static int	 crypto_hmac(const struct crypto_key *, const void *, size_t,
		    uint8_t *, size_t *);
static void	 crypto_derive_key(const void *, size_t, const char *,
		    uint8_t [CRYPTO_KEY_LEN]);
static int	 crypto_seal_key(const uint8_t [CRYPTO_KEY_LEN], const void *,
		    size_t, uint8_t **, size_t *);
static int	 crypto_unseal_key(const uint8_t [CRYPTO_KEY_LEN],
		    const uint8_t *, size_t, uint8_t **, size_t *);
static int	 crypto_kek_create(const char *, struct crypto_err *);
static void	 crypto_fsync_dir(const char *);
static int	 crypto_sigv4_hmac(EVP_MAC_CTX *, const void *, size_t,
		    const void *, size_t, uint8_t [CRYPTO_HASH_LEN]);
static struct crypto_sigv4_key *crypto_sigv4_find(const char *, size_t,
		    const char *, const char *, const char *);
static struct crypto_sigv4_key *crypto_sigv4_derive(const char *, size_t,
		    const char *, const char *, const char *);

/* Write a reason for a refusal and drop whatever OpenSSL queued. */
static void
crypto_seterr(struct crypto_err *err, const char *fmt, ...)
{
	va_list	ap;

	ERR_clear_error();
	if (err == NULL)
		return;
	va_start(ap, fmt);
	(void)vsnprintf(err->msg, sizeof err->msg, fmt, ap);
	va_end(ap);
}

/*
 * Random bytes for short requests come from a pool filled CRYPTO_POOL
 * bytes at a time (one getrandom(2) instead of one per call: a usage row's
 * key on every relayed call); each byte is handed out once and wiped. A
 * forked child forgets the pool, so it never hands out its parent's bytes.
 */
#define CRYPTO_POOL	512

static struct {
	uint8_t	 b[CRYPTO_POOL];
	size_t	 left;
} crypto_pool;
static int	crypto_pool_on;		/* the fork handler is in place */

static void
crypto_pool_forget(void)
{
	sodium_memzero(&crypto_pool, sizeof crypto_pool);
}

int
crypto_init(void)
{
	if (sodium_init() < 0)
		return (-1);
	if (OpenSSL_version_num() < 0x30000000L)
		return (-1);
	if (!crypto_pool_on &&
	    pthread_atfork(NULL, NULL, crypto_pool_forget) == 0)
		crypto_pool_on = 1;
	return (0);
}

void
crypto_random(void *buf, size_t len)
{
	if (len > CRYPTO_POOL / 8 || !crypto_pool_on) {
		randombytes_buf(buf, len);
		return;
	}
	if (crypto_pool.left < len) {
		randombytes_buf(crypto_pool.b, sizeof crypto_pool.b);
		crypto_pool.left = sizeof crypto_pool.b;
	}
	crypto_pool.left -= len;
	memcpy(buf, crypto_pool.b + crypto_pool.left, len);
	sodium_memzero(crypto_pool.b + crypto_pool.left, len);
}

/* A random identifier: len-1 lowercase hex digits. */
void
random_id(char *buf, size_t len)
{
	static const char	hex[] = "0123456789abcdef";
	uint8_t			r[64];
	size_t			i, n;

	if (len == 0)
		return;
	n = len - 1;
	if (n > 2 * sizeof r)
		n = 2 * sizeof r;
	randombytes_buf(r, (n + 1) / 2);
	for (i = 0; i < n; i++)
		buf[i] = hex[(r[i / 2] >> ((i % 2) ? 0 : 4)) & 0xf];
	buf[n] = '\0';
	sodium_memzero(r, sizeof r);
}

/* BLAKE2b-256 of a bearer secret: what the database stores and looks up. */
void
crypto_hash_token(const char *token, uint8_t out[CRYPTO_HASH_LEN])
{
	crypto_generichash(out, CRYPTO_HASH_LEN, (const unsigned char *)token,
	    strlen(token), NULL, 0);
}

void
crypto_sha256(const void *data, size_t len, uint8_t out[CRYPTO_HASH_LEN])
{
	static EVP_MD		*md;
	static EVP_MD_CTX	*ctx;
	unsigned int		 dglen;

	/*
	 * OpenSSL's SHA-256 uses the CPU's SHA extensions (request bodies
	 * are hashed for SigV4); fetched once, as OpenSSL 3 would look it
	 * up again on every call, and one context reused (EVP_Digest()
	 * would allocate and free one per call). The daemon has one thread.
	 */
	if (md == NULL && (md = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL)
		fatalx("%s: no SHA-256", __func__);
	if (ctx == NULL && (ctx = EVP_MD_CTX_new()) == NULL)
		fatalx("%s: EVP_MD_CTX_new", __func__);
	if (data == NULL)
		data = "";
	if (EVP_DigestInit_ex2(ctx, md, NULL) != 1 ||
	    EVP_DigestUpdate(ctx, data, len) != 1 ||
	    EVP_DigestFinal_ex(ctx, out, &dglen) != 1 ||
	    dglen != CRYPTO_HASH_LEN)
		fatalx("%s: EVP_Digest", __func__);
}

/* Standard base64 (HTTP Basic credentials), allocated. */
char *
crypto_b64_encode_alloc(const void *data, size_t len)
{
	size_t	 n = sodium_base64_ENCODED_LEN(len,
		     sodium_base64_VARIANT_ORIGINAL);
	char	*out = xmalloc(n);

	sodium_bin2base64(out, n, data, len, sodium_base64_VARIANT_ORIGINAL);
	return (out);
}

/*
 * Standard base64 with padding (the AWS event stream's "bytes"); 0 with
 * *outlen set, or -1 when it is not base64 or does not fit.
 */
int
crypto_b64_decode(const char *in, size_t len, uint8_t *out, size_t max,
    size_t *outlen)
{
	return (sodium_base642bin(out, max, in, len, NULL, outlen, NULL,
	    sodium_base64_VARIANT_ORIGINAL) == 0 ? 0 : -1);
}

/* Versions for the start line. */
const char *
crypto_sodium_version(void)
{
	return (sodium_version_string());
}

/* Constant-time equality of two equal-length buffers; 1 if equal. */
int
crypto_memeq(const void *a, const void *b, size_t len)
{
	return (sodium_memcmp(a, b, len) == 0);
}

/*
 * Constant-time equality of two strings of any length; 1 if equal. Both
 * are hashed first, so neither the content nor the length of the expected
 * value leaks through timing.
 */
int
crypto_streq(const char *a, const char *b)
{
	uint8_t	ha[CRYPTO_HASH_LEN], hb[CRYPTO_HASH_LEN];
	int	eq;

	if (a == NULL || b == NULL)
		return (0);
	crypto_generichash(ha, sizeof ha, (const unsigned char *)a, strlen(a),
	    NULL, 0);
	crypto_generichash(hb, sizeof hb, (const unsigned char *)b, strlen(b),
	    NULL, 0);
	eq = sodium_memcmp(ha, hb, sizeof ha) == 0;
	sodium_memzero(ha, sizeof ha);
	sodium_memzero(hb, sizeof hb);
	return (eq);
}

/*
 * Derive a 32-byte key from a secret for one purpose: keyed BLAKE2b under
 * BLAKE2b-512(secret), over a fixed label and the context. The 512-bit
 * inner hash is unrelated to crypto_hash_token()'s 256-bit one, so the
 * stored hash of a token does not give away keys derived from it.
 */
static void
crypto_derive_key(const void *secret, size_t len, const char *context,
    uint8_t out[CRYPTO_KEY_LEN])
{
	static const char		 label[] = "bsp-derive-key-v1";
	crypto_generichash_state	 st;
	uint8_t				 prk[64];

	crypto_generichash(prk, sizeof prk, secret, len, NULL, 0);
	crypto_generichash_init(&st, prk, sizeof prk, CRYPTO_KEY_LEN);
	crypto_generichash_update(&st, (const unsigned char *)label,
	    sizeof label);
	crypto_generichash_update(&st, (const unsigned char *)context,
	    strlen(context));
	crypto_generichash_final(&st, out, CRYPTO_KEY_LEN);
	sodium_memzero(prk, sizeof prk);
	sodium_memzero(&st, sizeof st);
}

/*
 * A public name for a secret (a key id): base64url of the first n bytes,
 * at most half, of a key derived from it for a purpose.
 */
void
crypto_secret_id(const char *secret, const char *purpose, size_t n,
    char *out, size_t outsize)
{
	uint8_t	key[CRYPTO_KEY_LEN];

	if (n > CRYPTO_KEY_LEN / 2)
		fatalx("%s: %zu bytes is too many", __func__, n);
	crypto_derive_key(secret, strlen(secret), purpose, key);
	crypto_b64url_encode(key, n, out, outsize);
	sodium_memzero(key, sizeof key);
}

/* A new bearer secret: the prefix, then 256 random bits in base64url. */
char *
crypto_new_secret(const char *prefix)
{
	uint8_t	 r[CRYPTO_KEY_LEN];
	char	 b[64], *s;

	randombytes_buf(r, sizeof r);
	crypto_b64url_encode(r, sizeof r, b, sizeof b);
	sodium_memzero(r, sizeof r);
	xasprintf(&s, "%s%s", prefix, b);
	sodium_memzero(b, sizeof b);
	return (s);
}

/* Length of the unpadded base64url text for n bytes, without the NUL. */
size_t
crypto_b64url_len(size_t n)
{
	if (n > SIZE_MAX / 2)
		fatalx("%s: %zu bytes is too long", __func__, n);
	return ((n / 3) * 4 + (n % 3 == 0 ? 0 : n % 3 + 1));
}

void
crypto_b64url_encode(const void *in, size_t len, char *out, size_t outsize)
{
	const uint8_t	*p = in;
	size_t		 i, o = 0;
	uint32_t	 v;

	if (outsize < crypto_b64url_len(len) + 1)
		fatalx("%s: output buffer too small", __func__);
	for (i = 0; i + 2 < len; i += 3) {
		v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		out[o++] = crypto_b64url_chars[(v >> 18) & 63];
		out[o++] = crypto_b64url_chars[(v >> 12) & 63];
		out[o++] = crypto_b64url_chars[(v >> 6) & 63];
		out[o++] = crypto_b64url_chars[v & 63];
	}
	if (len - i == 1) {
		v = (uint32_t)p[i] << 16;
		out[o++] = crypto_b64url_chars[(v >> 18) & 63];
		out[o++] = crypto_b64url_chars[(v >> 12) & 63];
	} else if (len - i == 2) {
		v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		out[o++] = crypto_b64url_chars[(v >> 18) & 63];
		out[o++] = crypto_b64url_chars[(v >> 12) & 63];
		out[o++] = crypto_b64url_chars[(v >> 6) & 63];
	}
	out[o] = '\0';
}

char *
crypto_b64url_encode_alloc(const void *in, size_t len)
{
	size_t	 n = crypto_b64url_len(len) + 1;
	char	*out;

	out = xmalloc(n);
	crypto_b64url_encode(in, len, out, n);
	return (out);
}

/*
 * Strict base64url decoding: the URL-safe alphabet only, no padding, no
 * white space, and the unused low bits of the last character must be zero
 * so that every byte string has exactly one encoding.
 */
int
crypto_b64url_decode(const char *in, size_t len, uint8_t *out, size_t outmax,
    size_t *outlen)
{
	uint32_t	acc = 0;
	unsigned int	bits = 0;
	size_t		i, o = 0;
	int		v;
	unsigned char	c;

	*outlen = 0;
	if (len % 4 == 1)
		return (-1);
	for (i = 0; i < len; i++) {
		c = (unsigned char)in[i];
		if (c >= 'A' && c <= 'Z')
			v = c - 'A';
		else if (c >= 'a' && c <= 'z')
			v = c - 'a' + 26;
		else if (c >= '0' && c <= '9')
			v = c - '0' + 52;
		else if (c == '-')
			v = 62;
		else if (c == '_')
			v = 63;
		else
			return (-1);
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o == outmax)
				return (-1);
			out[o++] = (uint8_t)(acc >> bits);
		}
		acc &= (1U << bits) - 1;
	}
	if (acc != 0)
		return (-1);
	*outlen = o;
	return (0);
}

/* Make the KEK file: 32 random bytes, mode 0600, on disk before use. */
static int
crypto_kek_create(const char *path, struct crypto_err *err)
{
	uint8_t	 key[CRYPTO_KEY_LEN];
	size_t	 off = 0;
	ssize_t	 n;
	int	 fd, saved = 0, rc = -1;

	fd = open(path, O_WRONLY|O_CREAT|O_EXCL|O_CLOEXEC, 0600);
	if (fd == -1) {
		if (errno == EEXIST)
			return (0);	/* someone else made it */
		crypto_seterr(err, "%s: cannot create: %s", path,
		    strerror(errno));
		return (-1);
	}
	randombytes_buf(key, sizeof key);
	while (off < sizeof key) {
		n = write(fd, key + off, sizeof key - off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			goto out;
		off += (size_t)n;
	}
	if (fsync(fd) == -1)
		goto out;
	sodium_memzero(key, sizeof key);
	if (close(fd) == -1) {
		fd = -1;
		goto out;
	}
	fd = -1;
	crypto_fsync_dir(path);
	rc = 0;
out:
	if (rc == -1)
		saved = errno;
	sodium_memzero(key, sizeof key);
	if (fd != -1)
		close(fd);
	if (rc == -1) {
		unlink(path);
		crypto_seterr(err, "%s: cannot write: %s", path,
		    strerror(saved));
	}
	return (rc);
}

/* Best effort: make a new directory entry durable. */
static void
crypto_fsync_dir(const char *path)
{
	const char	*slash;
	char		*dir;
	int		 fd;

	if ((slash = strrchr(path, '/')) == NULL)
		dir = xstrdup(".");
	else if (slash == path)
		dir = xstrdup("/");
	else
		dir = xstrndup(path, (size_t)(slash - path));
	if ((fd = open(dir, O_RDONLY|O_DIRECTORY|O_CLOEXEC)) != -1) {
		(void)fsync(fd);
		close(fd);
	}
	free(dir);
}

/*
 * Load the key-encryption key, creating it when the file does not exist.
 * The file must be a regular file of exactly 32 bytes, owned by root or by
 * us, that neither group nor others may access.
 */
int
crypto_kek_load(const char *path, struct crypto_err *err)
{
	uint8_t		buf[CRYPTO_KEY_LEN + 1];
	struct stat	st;
	size_t		off = 0;
	ssize_t		n;
	int		fd, rc = -1;

	fd = open(path, O_RDONLY|O_CLOEXEC);
	if (fd == -1 && errno == ENOENT) {
		if (crypto_kek_create(path, err) == -1)
			return (-1);
		fd = open(path, O_RDONLY|O_CLOEXEC);
	}
	if (fd == -1) {
		crypto_seterr(err, "%s: %s", path, strerror(errno));
		return (-1);
	}
	if (fstat(fd, &st) == -1) {
		crypto_seterr(err, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		crypto_seterr(err, "%s: not a regular file", path);
		goto out;
	}
	if (st.st_uid != 0 && st.st_uid != geteuid()) {
		crypto_seterr(err, "%s: owned by uid %u, not by root or us",
		    path, (unsigned int)st.st_uid);
		goto out;
	}
	if ((st.st_mode & (S_IRWXG|S_IRWXO)) != 0) {
		crypto_seterr(err, "%s: mode %04o lets group or others in;"
		    " chmod 600 it", path, (unsigned int)(st.st_mode & 07777));
		goto out;
	}
	if (st.st_size != CRYPTO_KEY_LEN) {
		crypto_seterr(err, "%s: %lld bytes, want exactly %d", path,
		    (long long)st.st_size, CRYPTO_KEY_LEN);
		goto out;
	}
	while (off < sizeof buf) {
		n = read(fd, buf + off, sizeof buf - off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			crypto_seterr(err, "%s: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		off += (size_t)n;
	}
	if (off != CRYPTO_KEY_LEN) {
		crypto_seterr(err, "%s: read %zu bytes, want exactly %d", path,
		    off, CRYPTO_KEY_LEN);
		goto out;
	}
	memcpy(crypto_kek, buf, CRYPTO_KEY_LEN);
	(void)sodium_mlock(crypto_kek, sizeof crypto_kek);
	crypto_kek_ok = 1;
	rc = 0;
out:
	sodium_memzero(buf, sizeof buf);
	close(fd);
	return (rc);
}

int
crypto_kek_loaded(void)
{
	return (crypto_kek_ok);
}

/*
 * The loaded KEK's check value: a MAC of a fixed label under a key derived
 * from it for this purpose alone. Kept in the database, it tells whether
 * a daemon was given the KEK the database's keys are sealed under, and
 * says nothing about the KEK itself. -1 if no KEK is loaded.
 */
int
crypto_kek_check(uint8_t out[CRYPTO_HASH_LEN])
{
	static const char	label[] = "bedrock-sso-proxy KEK check v1";
	uint8_t			key[CRYPTO_KEY_LEN];

	if (!crypto_kek_ok)
		return (-1);
	crypto_derive_key(crypto_kek, sizeof crypto_kek, "bsp-kek-check-v1",
	    key);
	crypto_generichash(out, CRYPTO_HASH_LEN, (const unsigned char *)label,
	    sizeof label - 1, key, sizeof key);
	sodium_memzero(key, sizeof key);
	return (0);
}

void
crypto_kek_unload(void)
{
	sodium_memzero(crypto_kek, sizeof crypto_kek);
	crypto_kek_ok = 0;
}

/*
 * Seal: version byte, random 24-byte nonce, then secretbox (MAC and
 * ciphertext). The result is newly allocated.
 */
static int
crypto_seal_key(const uint8_t key[CRYPTO_KEY_LEN], const void *pt,
    size_t ptlen, uint8_t **out, size_t *outlen)
{
	uint8_t	*buf;
	size_t	 len;

	*out = NULL;
	*outlen = 0;
	if (ptlen > crypto_secretbox_MESSAGEBYTES_MAX ||
	    ptlen > SIZE_MAX - CRYPTO_SEAL_OVERHEAD)
		return (-1);
	len = CRYPTO_SEAL_OVERHEAD + ptlen;
	buf = xmalloc(len);
	buf[0] = CRYPTO_SEAL_VERSION;
	randombytes_buf(buf + 1, CRYPTO_NONCE_LEN);
	if (crypto_secretbox_easy(buf + 1 + CRYPTO_NONCE_LEN, pt, ptlen,
	    buf + 1, key) != 0) {
		free(buf);
		return (-1);
	}
	*out = buf;
	*outlen = len;
	return (0);
}

/*
 * Open a sealed blob. The plaintext is newly allocated with a NUL after
 * it, so sealed strings come back as strings; free it with freezero().
 */
static int
crypto_unseal_key(const uint8_t key[CRYPTO_KEY_LEN], const uint8_t *in,
    size_t inlen, uint8_t **out, size_t *outlen)
{
	uint8_t	*pt;
	size_t	 ptlen;

	*out = NULL;
	*outlen = 0;
	if (inlen < CRYPTO_SEAL_OVERHEAD || in[0] != CRYPTO_SEAL_VERSION)
		return (-1);
	ptlen = inlen - CRYPTO_SEAL_OVERHEAD;
	pt = xmalloc(ptlen + 1);
	if (crypto_secretbox_open_easy(pt, in + 1 + CRYPTO_NONCE_LEN,
	    inlen - 1 - CRYPTO_NONCE_LEN, in + 1, key) != 0) {
		freezero(pt, ptlen + 1);
		return (-1);
	}
	pt[ptlen] = '\0';
	*out = pt;
	*outlen = ptlen;
	return (0);
}

int
crypto_seal(const void *pt, size_t ptlen, uint8_t **out, size_t *outlen)
{
	if (!crypto_kek_ok) {
		*out = NULL;
		*outlen = 0;
		return (-1);
	}
	return (crypto_seal_key(crypto_kek, pt, ptlen, out, outlen));
}

int
crypto_unseal(const uint8_t *in, size_t inlen, uint8_t **out, size_t *outlen)
{
	if (!crypto_kek_ok) {
		*out = NULL;
		*outlen = 0;
		return (-1);
	}
	return (crypto_unseal_key(crypto_kek, in, inlen, out, outlen));
}

/*
 * Seal under a key of one purpose ("bsp-login-state-v1"), derived from the
 * KEK for each call and wiped after it: a blob made for one use never opens
 * for another, nor as a plain crypto_seal() blob.
 */
int
crypto_seal_for(const char *purpose, const void *pt, size_t ptlen,
    uint8_t **out, size_t *outlen)
{
	uint8_t	key[CRYPTO_KEY_LEN];
	int	rc;

	*out = NULL;
	*outlen = 0;
	if (!crypto_kek_ok)
		return (-1);
	crypto_derive_key(crypto_kek, sizeof crypto_kek, purpose, key);
	rc = crypto_seal_key(key, pt, ptlen, out, outlen);
	sodium_memzero(key, sizeof key);
	return (rc);
}

int
crypto_unseal_for(const char *purpose, const uint8_t *in, size_t inlen,
    uint8_t **out, size_t *outlen)
{
	uint8_t	key[CRYPTO_KEY_LEN];
	int	rc;

	*out = NULL;
	*outlen = 0;
	if (!crypto_kek_ok)
		return (-1);
	crypto_derive_key(crypto_kek, sizeof crypto_kek, purpose, key);
	rc = crypto_unseal_key(key, in, inlen, out, outlen);
	sodium_memzero(key, sizeof key);
	return (rc);
}

/*
 * Seal under a key derived from a bearer secret (a refresh token) for a
 * purpose: only whoever holds the secret can open the blob, and only for
 * that purpose. The database keeps the secret's hash, which gives the key
 * away no more than it gives the secret.
 */
int
crypto_seal_token(const char *token, const char *purpose, const void *pt,
    size_t ptlen, uint8_t **out, size_t *outlen)
{
	uint8_t	key[CRYPTO_KEY_LEN];
	int	rc;

	crypto_derive_key(token, strlen(token), purpose, key);
	rc = crypto_seal_key(key, pt, ptlen, out, outlen);
	sodium_memzero(key, sizeof key);
	return (rc);
}

int
crypto_unseal_token(const char *token, const char *purpose,
    const uint8_t *in, size_t inlen, uint8_t **out, size_t *outlen)
{
	uint8_t	key[CRYPTO_KEY_LEN];
	int	rc;

	crypto_derive_key(token, strlen(token), purpose, key);
	rc = crypto_unseal_key(key, in, inlen, out, outlen);
	sodium_memzero(key, sizeof key);
	return (rc);
}

static int
crypto_alg_ok(enum crypto_alg alg)
{
	return (alg > CRYPTO_ALG_NONE && alg < CRYPTO_ALG_MAX);
}

/* The algorithm for a JOSE "alg" name; CRYPTO_ALG_NONE for "none" too. */
enum crypto_alg
crypto_alg_from_name(const char *name)
{
	int	i;

	if (name == NULL)
		return (CRYPTO_ALG_NONE);
	for (i = CRYPTO_ALG_NONE + 1; i < CRYPTO_ALG_MAX; i++) {
		if (strcmp(crypto_algs[i].name, name) == 0)
			return ((enum crypto_alg)i);
	}
	return (CRYPTO_ALG_NONE);
}

const char *
crypto_alg_name(enum crypto_alg alg)
{
	if (!crypto_alg_ok(alg))
		return ("none");
	return (crypto_algs[alg].name);
}

enum crypto_kty
crypto_alg_kty(enum crypto_alg alg)
{
	if (!crypto_alg_ok(alg))
		return (CRYPTO_KTY_NONE);
	return (crypto_algs[alg].kty);
}

enum crypto_crv
crypto_alg_crv(enum crypto_alg alg)
{
	if (!crypto_alg_ok(alg))
		return (CRYPTO_CRV_NONE);
	return (crypto_algs[alg].crv);
}

const char *
crypto_kty_name(enum crypto_kty kty)
{
	if ((size_t)kty >= nitems(crypto_kty_names))
		return ("none");
	return (crypto_kty_names[kty]);
}

enum crypto_crv
crypto_crv_from_name(const char *name)
{
	size_t	i;

	if (name == NULL)
		return (CRYPTO_CRV_NONE);
	for (i = 1; i < nitems(crypto_crv_names); i++) {
		if (strcmp(crypto_crv_names[i], name) == 0)
			return ((enum crypto_crv)i);
	}
	return (CRYPTO_CRV_NONE);
}

const char *
crypto_crv_name(enum crypto_crv crv)
{
	if ((size_t)crv >= nitems(crypto_crv_names))
		return ("none");
	return (crypto_crv_names[crv]);
}

static struct crypto_key *
crypto_key_new(enum crypto_alg alg)
{
	struct crypto_key	*key;

	key = xcalloc(1, sizeof *key);
	key->alg = alg;
	key->kty = crypto_algs[alg].kty;
	key->crv = crypto_algs[alg].crv;
	return (key);
}

void
crypto_key_free(struct crypto_key *key)
{
	if (key == NULL)
		return;
	EVP_PKEY_free(key->pkey);
	freezero(key->secret, key->secretlen);
	free(key->kid);
	sodium_memzero(key, sizeof *key);
	free(key);
}

enum crypto_alg
crypto_key_alg(const struct crypto_key *key)
{
	return (key->alg);
}

enum crypto_kty
crypto_key_kty(const struct crypto_key *key)
{
	return (key->kty);
}

int
crypto_key_has_private(const struct crypto_key *key)
{
	return (key->has_private);
}

const char *
crypto_key_kid(const struct crypto_key *key)
{
	return (key->kid);
}

/* Attach a copy of kid (NULL removes it); -1 if it is too long. */
int
crypto_key_set_kid(struct crypto_key *key, const char *kid)
{
	if (kid != NULL && strlen(kid) > CRYPTO_KID_MAX)
		return (-1);
	free(key->kid);
	key->kid = kid == NULL ? NULL : xstrdup(kid);
	return (0);
}

/* Length of the signatures this key makes or accepts. */
size_t
crypto_key_sig_len(const struct crypto_key *key)
{
	switch (key->kty) {
	case CRYPTO_KTY_OCT:
		return ((size_t)EVP_MD_get_size(crypto_algs[key->alg].md()));
	case CRYPTO_KTY_OKP:
		return (CRYPTO_ED_SIG_LEN);
	case CRYPTO_KTY_EC:
		return (2 * crypto_algs[key->alg].size);
	case CRYPTO_KTY_RSA:
		return ((size_t)EVP_PKEY_get_size(key->pkey));
	default:
		return (0);
	}
}

/* A sane RSA public exponent: odd, at least 3, at most 32 bits. */
static int
crypto_check_rsa_e(const BIGNUM *e, struct crypto_err *err)
{
	int	bits = BN_num_bits(e);

	if (!BN_is_odd(e) || bits < 2 || bits > 32) {
		crypto_seterr(err, "RSA public exponent is not sane");
		return (-1);
	}
	return (0);
}

/* Check that an OpenSSL key fits the algorithm it is to be pinned to. */
static int
crypto_check_pkey(enum crypto_alg alg, EVP_PKEY *pkey, struct crypto_err *err)
{
	const struct crypto_alg_info	*ai = &crypto_algs[alg];
	BIGNUM				*e = NULL;
	char				 group[64];
	size_t				 glen;
	int				 id, bits, nid, want, ret = -1;

	id = EVP_PKEY_get_base_id(pkey);
	switch (ai->kty) {
	case CRYPTO_KTY_RSA:
		if (id != EVP_PKEY_RSA) {
			crypto_seterr(err, "%s needs an RSA key", ai->name);
			goto out;
		}
		bits = EVP_PKEY_get_bits(pkey);
		if (bits < CRYPTO_RSA_MIN_BITS || bits > CRYPTO_RSA_MAX_BITS) {
			crypto_seterr(err, "RSA key has %d bits; %d to %d"
			    " allowed", bits, CRYPTO_RSA_MIN_BITS,
			    CRYPTO_RSA_MAX_BITS);
			goto out;
		}
		if (!EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &e)) {
			crypto_seterr(err, "RSA key has no public exponent");
			goto out;
		}
		if (crypto_check_rsa_e(e, err) == -1)
			goto out;
		break;
	case CRYPTO_KTY_EC:
		if (id != EVP_PKEY_EC) {
			crypto_seterr(err, "%s needs an EC key", ai->name);
			goto out;
		}
		if (!EVP_PKEY_get_utf8_string_param(pkey,
		    OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &glen)) {
			crypto_seterr(err, "EC key has no named curve");
			goto out;
		}
		if ((nid = OBJ_sn2nid(group)) == NID_undef)
			nid = EC_curve_nist2nid(group);
		want = ai->crv == CRYPTO_CRV_P256 ? NID_X9_62_prime256v1 :
		    NID_secp384r1;
		if (nid != want) {
			crypto_seterr(err, "%s needs a %s key", ai->name,
			    crypto_crv_names[ai->crv]);
			goto out;
		}
		break;
	case CRYPTO_KTY_OKP:
		if (id != EVP_PKEY_ED25519) {
			crypto_seterr(err, "%s needs an Ed25519 key", ai->name);
			goto out;
		}
		break;
	default:
		crypto_seterr(err, "%s does not use a public key", ai->name);
		goto out;
	}
	ret = 0;
out:
	BN_free(e);
	return (ret);
}

/*
 * Wrap a checked OpenSSL key, taking ownership of it. Ed25519 keys are
 * moved into libsodium: the 32-byte seed becomes a libsodium key pair.
 */
static struct crypto_key *
crypto_key_from_pkey(enum crypto_alg alg, EVP_PKEY *pkey, int priv,
    struct crypto_err *err)
{
	struct crypto_key	*key = NULL;
	uint8_t			 seed[CRYPTO_ED_SEED_LEN];
	size_t			 len;
	int			 ok = 0;

	if (crypto_check_pkey(alg, pkey, err) == -1)
		goto out;
	key = crypto_key_new(alg);
	key->has_private = priv;
	if (key->kty != CRYPTO_KTY_OKP) {
		key->pkey = pkey;
		pkey = NULL;
	} else if (priv) {
		len = sizeof seed;
		if (!EVP_PKEY_get_raw_private_key(pkey, seed, &len) ||
		    len != sizeof seed) {
			crypto_seterr(err, "cannot read the Ed25519 seed");
			goto out;
		}
		crypto_sign_seed_keypair(key->ed_pk, key->ed_sk, seed);
	} else {
		len = sizeof key->ed_pk;
		if (!EVP_PKEY_get_raw_public_key(pkey, key->ed_pk, &len) ||
		    len != sizeof key->ed_pk) {
			crypto_seterr(err, "cannot read the Ed25519 key");
			goto out;
		}
		if (!crypto_core_ed25519_is_valid_point(key->ed_pk)) {
			crypto_seterr(err, "Ed25519 key is not a valid point");
			goto out;
		}
	}
	ok = 1;
out:
	sodium_memzero(seed, sizeof seed);
	if (!ok) {
		crypto_key_free(key);
		key = NULL;
	}
	EVP_PKEY_free(pkey);
	ERR_clear_error();
	return (key);
}

/* Encrypted PEM keys are refused: there is nobody to type a password. */
static int
crypto_no_pass(char *buf, int size, int rwflag, void *u)
{
	return (-1);
}

/*
 * A key from a PEM file as "openssl genpkey" (PKCS#8) or "openssl pkey
 * -pubout" writes it. The caller says which algorithm the key is for; a
 * key of another type or curve is refused.
 */
struct crypto_key *
crypto_key_from_pem(enum crypto_alg alg, const char *pem, size_t len,
    struct crypto_err *err)
{
	BIO		*bio;
	EVP_PKEY	*pkey;
	int		 priv = 1;

	if (!crypto_alg_ok(alg)) {
		crypto_seterr(err, "unknown algorithm");
		return (NULL);
	}
	if (crypto_algs[alg].kty == CRYPTO_KTY_OCT) {
		crypto_seterr(err, "%s takes a shared secret, not a PEM key",
		    crypto_algs[alg].name);
		return (NULL);
	}
	if (len == 0 || len > CRYPTO_PEM_MAX) {
		crypto_seterr(err, "PEM key is empty or too large");
		return (NULL);
	}
	if ((bio = BIO_new_mem_buf(pem, (int)len)) == NULL)
		fatalx("%s: BIO_new_mem_buf", __func__);
	pkey = PEM_read_bio_PrivateKey(bio, NULL, crypto_no_pass, NULL);
	BIO_free(bio);
	if (pkey == NULL) {
		priv = 0;
		if ((bio = BIO_new_mem_buf(pem, (int)len)) == NULL)
			fatalx("%s: BIO_new_mem_buf", __func__);
		pkey = PEM_read_bio_PUBKEY(bio, NULL, crypto_no_pass, NULL);
		BIO_free(bio);
	}
	if (pkey == NULL) {
		crypto_seterr(err, "no usable PEM private or public key"
		    " (encrypted keys are not supported)");
		return (NULL);
	}
	return (crypto_key_from_pkey(alg, pkey, priv, err));
}

/* A fresh key: random secret, Ed25519, P-256/P-384, or RSA of bits. */
struct crypto_key *
crypto_key_generate(enum crypto_alg alg, int bits, struct crypto_err *err)
{
	const struct crypto_alg_info	*ai;
	struct crypto_key		*key;
	EVP_PKEY			*pkey;
	uint8_t				 secret[64];

	if (!crypto_alg_ok(alg)) {
		crypto_seterr(err, "unknown algorithm");
		return (NULL);
	}
	ai = &crypto_algs[alg];
	if (ai->kty != CRYPTO_KTY_RSA && bits != 0) {
		crypto_seterr(err, "%s keys have no size to choose", ai->name);
		return (NULL);
	}
	switch (ai->kty) {
	case CRYPTO_KTY_OCT:
		randombytes_buf(secret, ai->size);
		key = crypto_key_from_secret(alg, secret, ai->size, err);
		sodium_memzero(secret, sizeof secret);
		return (key);
	case CRYPTO_KTY_OKP:
		key = crypto_key_new(alg);
		crypto_sign_keypair(key->ed_pk, key->ed_sk);
		key->has_private = 1;
		return (key);
	case CRYPTO_KTY_EC:
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC",
		    ai->crv == CRYPTO_CRV_P256 ? "P-256" : "P-384");
		break;
	case CRYPTO_KTY_RSA:
		if (bits == 0)
			bits = 2048;
		if (bits != 2048 && bits != 3072 && bits != 4096) {
			crypto_seterr(err, "RSA keys are 2048, 3072 or 4096"
			    " bits");
			return (NULL);
		}
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
		break;
	default:
		crypto_seterr(err, "cannot generate %s keys", ai->name);
		return (NULL);
	}
	if (pkey == NULL) {
		crypto_seterr(err, "%s key generation failed", ai->name);
		return (NULL);
	}
	return (crypto_key_from_pkey(alg, pkey, 1, err));
}

/* An HMAC key; at least as long as the hash output (RFC 7518 3.2). */
struct crypto_key *
crypto_key_from_secret(enum crypto_alg alg, const void *secret, size_t len,
    struct crypto_err *err)
{
	const struct crypto_alg_info	*ai;
	struct crypto_key		*key;

	if (!crypto_alg_ok(alg)) {
		crypto_seterr(err, "unknown algorithm");
		return (NULL);
	}
	ai = &crypto_algs[alg];
	if (ai->kty != CRYPTO_KTY_OCT) {
		crypto_seterr(err, "%s does not take a shared secret",
		    ai->name);
		return (NULL);
	}
	if (len < ai->size) {
		crypto_seterr(err, "%s needs a secret of at least %zu bytes",
		    ai->name, ai->size);
		return (NULL);
	}
	if (len > CRYPTO_SECRET_MAX) {
		crypto_seterr(err, "secret is longer than %d bytes",
		    CRYPTO_SECRET_MAX);
		return (NULL);
	}
	key = crypto_key_new(alg);
	key->secret = xmalloc(len);
	memcpy(key->secret, secret, len);
	key->secretlen = len;
	key->has_private = 1;
	return (key);
}

/* An HMAC key from base64url text (a JWK "k"), decoded only in here. */
struct crypto_key *
crypto_key_from_secret_b64url(enum crypto_alg alg, const char *b64,
    size_t len, struct crypto_err *err)
{
	struct crypto_key	*key;
	uint8_t			 buf[CRYPTO_SECRET_MAX];
	size_t			 n;

	if (crypto_b64url_decode(b64, len, buf, sizeof buf, &n) == -1) {
		sodium_memzero(buf, sizeof buf);
		crypto_seterr(err, "secret is not base64url or is longer than"
		    " %d bytes", CRYPTO_SECRET_MAX);
		return (NULL);
	}
	key = crypto_key_from_secret(alg, buf, n, err);
	sodium_memzero(buf, sizeof buf);
	return (key);
}

static EVP_PKEY *
crypto_rsa_from_pub(const struct crypto_pub *pub, struct crypto_err *err)
{
	OSSL_PARAM_BLD	*bld = NULL;
	OSSL_PARAM	*params = NULL;
	EVP_PKEY_CTX	*ctx = NULL;
	EVP_PKEY	*pkey = NULL;
	BIGNUM		*n = NULL, *e = NULL;
	int		 bits;

	if (pub->nlen > sizeof pub->n || pub->elen > sizeof pub->e) {
		crypto_seterr(err, "RSA parameters too long");
		goto out;
	}
	if ((n = BN_bin2bn(pub->n, (int)pub->nlen, NULL)) == NULL ||
	    (e = BN_bin2bn(pub->e, (int)pub->elen, NULL)) == NULL)
		fatalx("%s: BN_bin2bn", __func__);
	bits = BN_num_bits(n);
	if (bits < CRYPTO_RSA_MIN_BITS || bits > CRYPTO_RSA_MAX_BITS) {
		crypto_seterr(err, "RSA modulus has %d bits; %d to %d allowed",
		    bits, CRYPTO_RSA_MIN_BITS, CRYPTO_RSA_MAX_BITS);
		goto out;
	}
	if (!BN_is_odd(n)) {
		crypto_seterr(err, "RSA modulus is even");
		goto out;
	}
	if (crypto_check_rsa_e(e, err) == -1)
		goto out;
	if ((bld = OSSL_PARAM_BLD_new()) == NULL ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) ||
	    (params = OSSL_PARAM_BLD_to_param(bld)) == NULL)
		fatalx("%s: OSSL_PARAM_BLD", __func__);
	if ((ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1) {
		crypto_seterr(err, "RSA key refused by OpenSSL");
		pkey = NULL;
	}
out:
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(n);
	BN_free(e);
	return (pkey);
}

static EVP_PKEY *
crypto_ec_from_pub(enum crypto_alg alg, const struct crypto_pub *pub,
    struct crypto_err *err)
{
	const struct crypto_alg_info	*ai = &crypto_algs[alg];
	OSSL_PARAM			 params[3];
	EVP_PKEY_CTX			*ctx = NULL, *vctx = NULL;
	EVP_PKEY			*pkey = NULL;
	uint8_t				 pt[1 + 2 * CRYPTO_EC_MAX_BYTES];
	char				 group[16];

	if (pub->crv != ai->crv) {
		crypto_seterr(err, "%s needs curve %s, not %s", ai->name,
		    crypto_crv_name(ai->crv), crypto_crv_name(pub->crv));
		return (NULL);
	}
	if (pub->xlen != ai->size || pub->ylen != ai->size) {
		crypto_seterr(err, "EC coordinates must be %zu bytes each",
		    ai->size);
		return (NULL);
	}
	pt[0] = POINT_CONVERSION_UNCOMPRESSED;
	memcpy(pt + 1, pub->x, ai->size);
	memcpy(pt + 1 + ai->size, pub->y, ai->size);
	bsp_strlcpy(group, crypto_crv_name(ai->crv), sizeof group);
	params[0] = OSSL_PARAM_construct_utf8_string(
	    OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY,
	    pt, 1 + 2 * ai->size);
	params[2] = OSSL_PARAM_construct_end();
	if ((ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1) {
		crypto_seterr(err, "EC point is not on the curve");
		pkey = NULL;
		goto out;
	}
	if ((vctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL)) == NULL ||
	    EVP_PKEY_public_check(vctx) != 1) {
		crypto_seterr(err, "EC point is not a valid public key");
		EVP_PKEY_free(pkey);
		pkey = NULL;
	}
out:
	EVP_PKEY_CTX_free(vctx);
	EVP_PKEY_CTX_free(ctx);
	return (pkey);
}

/*
 * A verification key from public parameters (as a JWK carries them),
 * checked: RSA modulus size and exponent, EC point on the right curve,
 * Ed25519 point valid and not of small order.
 */
struct crypto_key *
crypto_key_from_pub(enum crypto_alg alg, const struct crypto_pub *pub,
    struct crypto_err *err)
{
	const struct crypto_alg_info	*ai;
	struct crypto_key		*key;
	EVP_PKEY			*pkey;

	if (!crypto_alg_ok(alg)) {
		crypto_seterr(err, "unknown algorithm");
		return (NULL);
	}
	ai = &crypto_algs[alg];
	if (pub->kty != ai->kty) {
		crypto_seterr(err, "%s needs a %s key, not %s", ai->name,
		    crypto_kty_name(ai->kty), crypto_kty_name(pub->kty));
		return (NULL);
	}
	switch (ai->kty) {
	case CRYPTO_KTY_RSA:
		pkey = crypto_rsa_from_pub(pub, err);
		break;
	case CRYPTO_KTY_EC:
		pkey = crypto_ec_from_pub(alg, pub, err);
		break;
	case CRYPTO_KTY_OKP:
		if (pub->crv != CRYPTO_CRV_ED25519 ||
		    pub->xlen != crypto_sign_PUBLICKEYBYTES) {
			crypto_seterr(err, "EdDSA needs a 32-byte Ed25519 key");
			return (NULL);
		}
		if (!crypto_core_ed25519_is_valid_point(pub->x)) {
			crypto_seterr(err, "Ed25519 key is not a valid point");
			return (NULL);
		}
		key = crypto_key_new(alg);
		memcpy(key->ed_pk, pub->x, sizeof key->ed_pk);
		return (key);
	default:
		crypto_seterr(err, "%s keys have no public form", ai->name);
		return (NULL);
	}
	if (pkey == NULL) {
		ERR_clear_error();
		return (NULL);
	}
	return (crypto_key_from_pkey(alg, pkey, 0, err));
}

/* The public parameters of a key, for JWKS; -1 for secret (oct) keys. */
int
crypto_key_public(const struct crypto_key *key, struct crypto_pub *pub)
{
	BIGNUM	*a = NULL, *b = NULL;
	size_t	 size = crypto_algs[key->alg].size;
	int	 ret = -1;

	memset(pub, 0, sizeof *pub);
	pub->kty = key->kty;
	pub->crv = key->crv;
	switch (key->kty) {
	case CRYPTO_KTY_OKP:
		memcpy(pub->x, key->ed_pk, sizeof key->ed_pk);
		pub->xlen = sizeof key->ed_pk;
		return (0);
	case CRYPTO_KTY_RSA:
		if (!EVP_PKEY_get_bn_param(key->pkey, OSSL_PKEY_PARAM_RSA_N,
		    &a) ||
		    !EVP_PKEY_get_bn_param(key->pkey, OSSL_PKEY_PARAM_RSA_E,
		    &b) ||
		    (size_t)BN_num_bytes(a) > sizeof pub->n ||
		    (size_t)BN_num_bytes(b) > sizeof pub->e)
			goto out;
		pub->nlen = (size_t)BN_bn2bin(a, pub->n);
		pub->elen = (size_t)BN_bn2bin(b, pub->e);
		break;
	case CRYPTO_KTY_EC:
		if (!EVP_PKEY_get_bn_param(key->pkey, OSSL_PKEY_PARAM_EC_PUB_X,
		    &a) ||
		    !EVP_PKEY_get_bn_param(key->pkey, OSSL_PKEY_PARAM_EC_PUB_Y,
		    &b) ||
		    BN_bn2binpad(a, pub->x, (int)size) != (int)size ||
		    BN_bn2binpad(b, pub->y, (int)size) != (int)size)
			goto out;
		pub->xlen = pub->ylen = size;
		break;
	default:
		goto out;
	}
	ret = 0;
out:
	BN_free(a);
	BN_free(b);
	ERR_clear_error();
	return (ret);
}

/* The public key as SubjectPublicKeyInfo PEM; NULL for secret keys. */
char *
crypto_key_public_pem(const struct crypto_key *key)
{
	EVP_PKEY	*pkey = key->pkey, *tmp = NULL;
	BIO		*bio;
	char		*p, *out = NULL;
	long		 len;

	if (key->kty == CRYPTO_KTY_OCT)
		return (NULL);
	if (key->kty == CRYPTO_KTY_OKP) {
		tmp = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL,
		    key->ed_pk, sizeof key->ed_pk);
		if (tmp == NULL)
			fatalx("%s: EVP_PKEY_new_raw_public_key", __func__);
		pkey = tmp;
	}
	if ((bio = BIO_new(BIO_s_mem())) == NULL)
		fatalx("%s: BIO_new", __func__);
	if (PEM_write_bio_PUBKEY(bio, pkey) == 1 &&
	    (len = BIO_get_mem_data(bio, &p)) > 0)
		out = xmemdup0(p, (size_t)len);
	BIO_free(bio);
	EVP_PKEY_free(tmp);
	ERR_clear_error();
	return (out);
}

/*
 * Seal a private key under the KEK for the database. Inside the seal:
 * version, algorithm, kid length (16 bits) and kid, then the key: the
 * secret (HS*), the 32-byte seed (EdDSA) or PKCS#8 DER (RSA, EC).
 */
int
crypto_key_seal(const struct crypto_key *key, uint8_t **out, size_t *outlen,
    struct crypto_err *err)
{
	PKCS8_PRIV_KEY_INFO	*p8 = NULL;
	uint8_t			*blob = NULL, *p;
	size_t			 kidlen, matlen, bloblen = 0;
	int			 len, ret = -1;

	*out = NULL;
	*outlen = 0;
	if (!key->has_private) {
		crypto_seterr(err, "only private keys can be sealed");
		return (-1);
	}
	if (!crypto_kek_ok) {
		crypto_seterr(err, "no key-encryption key is loaded");
		return (-1);
	}
	kidlen = key->kid == NULL ? 0 : strlen(key->kid);
	switch (key->kty) {
	case CRYPTO_KTY_OCT:
		matlen = key->secretlen;
		break;
	case CRYPTO_KTY_OKP:
		matlen = CRYPTO_ED_SEED_LEN;
		break;
	default:
		if ((p8 = EVP_PKEY2PKCS8(key->pkey)) == NULL ||
		    (len = i2d_PKCS8_PRIV_KEY_INFO(p8, NULL)) <= 0) {
			crypto_seterr(err, "cannot encode the private key");
			goto out;
		}
		matlen = (size_t)len;
		break;
	}
	bloblen = 4 + kidlen + matlen;
	blob = xmalloc(bloblen);
	blob[0] = CRYPTO_KEYBLOB_VERSION;
	blob[1] = (uint8_t)key->alg;
	blob[2] = (uint8_t)(kidlen >> 8);
	blob[3] = (uint8_t)kidlen;
	if (kidlen != 0)
		memcpy(blob + 4, key->kid, kidlen);
	p = blob + 4 + kidlen;
	switch (key->kty) {
	case CRYPTO_KTY_OCT:
		memcpy(p, key->secret, matlen);
		break;
	case CRYPTO_KTY_OKP:
		crypto_sign_ed25519_sk_to_seed(p, key->ed_sk);
		break;
	default:
		if (i2d_PKCS8_PRIV_KEY_INFO(p8, &p) != (int)matlen) {
			crypto_seterr(err, "cannot encode the private key");
			goto out;
		}
		break;
	}
	if (crypto_seal(blob, bloblen, out, outlen) == -1) {
		crypto_seterr(err, "cannot seal the key");
		goto out;
	}
	ret = 0;
out:
	PKCS8_PRIV_KEY_INFO_free(p8);
	freezero(blob, bloblen);
	ERR_clear_error();
	return (ret);
}

/* Open a key sealed by crypto_key_seal() and check it as if it were new. */
struct crypto_key *
crypto_key_unseal(const uint8_t *in, size_t inlen, struct crypto_err *err)
{
	PKCS8_PRIV_KEY_INFO	*p8 = NULL;
	struct crypto_key	*key = NULL;
	EVP_PKEY		*pkey;
	enum crypto_alg		 alg;
	const uint8_t		*mat;
	uint8_t			*blob;
	size_t			 bloblen, kidlen, matlen;
	char			*kid = NULL;

	if (crypto_unseal(in, inlen, &blob, &bloblen) == -1) {
		crypto_seterr(err, "sealed key does not open (wrong KEK or"
		    " damaged)");
		return (NULL);
	}
	if (bloblen < 4 || blob[0] != CRYPTO_KEYBLOB_VERSION) {
		crypto_seterr(err, "sealed key has an unknown format");
		goto out;
	}
	alg = (enum crypto_alg)blob[1];
	kidlen = (size_t)blob[2] << 8 | blob[3];
	if (!crypto_alg_ok(alg) || kidlen > CRYPTO_KID_MAX ||
	    4 + kidlen > bloblen || memchr(blob + 4, '\0', kidlen) != NULL) {
		crypto_seterr(err, "sealed key is malformed");
		goto out;
	}
	if (kidlen != 0)
		kid = xmemdup0(blob + 4, kidlen);
	mat = blob + 4 + kidlen;
	matlen = bloblen - 4 - kidlen;
	switch (crypto_algs[alg].kty) {
	case CRYPTO_KTY_OCT:
		key = crypto_key_from_secret(alg, mat, matlen, err);
		break;
	case CRYPTO_KTY_OKP:
		if (matlen != CRYPTO_ED_SEED_LEN) {
			crypto_seterr(err, "sealed Ed25519 key is malformed");
			goto out;
		}
		key = crypto_key_new(alg);
		crypto_sign_seed_keypair(key->ed_pk, key->ed_sk, mat);
		key->has_private = 1;
		break;
	default:
		if (matlen > INT_MAX ||
		    (p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &mat, (long)matlen)) ==
		    NULL || (pkey = EVP_PKCS82PKEY(p8)) == NULL) {
			crypto_seterr(err, "sealed key is malformed");
			ERR_clear_error();
			goto out;
		}
		key = crypto_key_from_pkey(alg, pkey, 1, err);
		ERR_clear_error();
		break;
	}
	if (key != NULL && kid != NULL)
		(void)crypto_key_set_kid(key, kid);
out:
	/* An Ed25519 or HMAC key never calls OpenSSL (nor starts it). */
	if (p8 != NULL)
		PKCS8_PRIV_KEY_INFO_free(p8);
	free(kid);
	freezero(blob, bloblen);
	return (key);
}

/* A digest context for RSA or ECDSA, set up for PSS where that applies. */
static EVP_MD_CTX *
crypto_md_init(const struct crypto_key *key, int sign)
{
	const struct crypto_alg_info	*ai = &crypto_algs[key->alg];
	EVP_MD_CTX			*ctx;
	EVP_PKEY_CTX			*pctx = NULL;
	int				 r;

	if ((ctx = EVP_MD_CTX_new()) == NULL)
		fatalx("%s: EVP_MD_CTX_new", __func__);
	if (sign)
		r = EVP_DigestSignInit(ctx, &pctx, ai->md(), NULL, key->pkey);
	else
		r = EVP_DigestVerifyInit(ctx, &pctx, ai->md(), NULL, key->pkey);
	if (r == 1 && (!ai->pss ||
	    (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) > 0 &&
	    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx,
	    RSA_PSS_SALTLEN_DIGEST) > 0)))
		return (ctx);
	EVP_MD_CTX_free(ctx);
	return (NULL);
}

static int
crypto_hmac(const struct crypto_key *key, const void *data, size_t len,
    uint8_t *mac, size_t *maclen)
{
	unsigned int	n = 0;

	if (HMAC(crypto_algs[key->alg].md(), key->secret, (int)key->secretlen,
	    data, len, mac, &n) == NULL)
		return (-1);
	*maclen = n;
	return (0);
}

/*
 * Sign data with the key's algorithm. The signature is in JOSE form: the
 * MAC, the RSA signature, r||s at fixed width for ECDSA, or the 64-byte
 * Ed25519 signature.
 */
int
crypto_key_sign(const struct crypto_key *key, const void *data, size_t len,
    uint8_t *sig, size_t sigmax, size_t *siglen, struct crypto_err *err)
{
	const struct crypto_alg_info	*ai = &crypto_algs[key->alg];
	uint8_t				 mac[EVP_MAX_MD_SIZE];
	uint8_t				 der[CRYPTO_DER_SIG_MAX];
	const uint8_t			*p;
	const BIGNUM			*r, *s;
	ECDSA_SIG			*es = NULL;
	EVP_MD_CTX			*ctx = NULL;
	size_t				 n;
	unsigned long long		 edlen;
	int				 ret = -1;

	*siglen = 0;
	if (!key->has_private) {
		crypto_seterr(err, "key has no private part");
		return (-1);
	}
	if (sigmax < crypto_key_sig_len(key)) {
		crypto_seterr(err, "signature buffer too small");
		return (-1);
	}
	switch (key->kty) {
	case CRYPTO_KTY_OCT:
		if (crypto_hmac(key, data, len, mac, &n) == -1) {
			crypto_seterr(err, "HMAC failed");
			goto out;
		}
		memcpy(sig, mac, n);
		*siglen = n;
		break;
	case CRYPTO_KTY_OKP:
		crypto_sign_detached(sig, &edlen, data, len, key->ed_sk);
		*siglen = (size_t)edlen;
		break;
	case CRYPTO_KTY_RSA:
		n = sigmax;
		if ((ctx = crypto_md_init(key, 1)) == NULL ||
		    EVP_DigestSign(ctx, sig, &n, data, len) != 1) {
			crypto_seterr(err, "%s signing failed", ai->name);
			goto out;
		}
		*siglen = n;
		break;
	case CRYPTO_KTY_EC:
		n = sizeof der;
		if ((ctx = crypto_md_init(key, 1)) == NULL ||
		    EVP_DigestSign(ctx, der, &n, data, len) != 1) {
			crypto_seterr(err, "%s signing failed", ai->name);
			goto out;
		}
		p = der;
		if ((es = d2i_ECDSA_SIG(NULL, &p, (long)n)) == NULL) {
			crypto_seterr(err, "%s signing failed", ai->name);
			goto out;
		}
		ECDSA_SIG_get0(es, &r, &s);
		if (BN_bn2binpad(r, sig, (int)ai->size) != (int)ai->size ||
		    BN_bn2binpad(s, sig + ai->size, (int)ai->size) !=
		    (int)ai->size) {
			crypto_seterr(err, "%s signing failed", ai->name);
			goto out;
		}
		*siglen = 2 * ai->size;
		break;
	default:
		crypto_seterr(err, "cannot sign with this key");
		goto out;
	}
	ret = 0;
out:
	sodium_memzero(mac, sizeof mac);
	ECDSA_SIG_free(es);
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	return (ret);
}

/*
 * A public key from DER SubjectPublicKeyInfo (what KMS GetPublicKey
 * answers), pinned to alg like a PEM key: an RSA key for RS256 or PS256,
 * a P-256 key for ES256.
 */
struct crypto_key *
crypto_key_from_spki(enum crypto_alg alg, const uint8_t *der, size_t len,
    struct crypto_err *err)
{
	const uint8_t	*p = der;
	EVP_PKEY	*pkey;

	if (!crypto_alg_ok(alg) || crypto_algs[alg].kty == CRYPTO_KTY_OCT) {
		crypto_seterr(err, "algorithm takes no public key");
		return (NULL);
	}
	if (len == 0 || len > CRYPTO_PEM_MAX) {
		crypto_seterr(err, "public key is empty or too large");
		return (NULL);
	}
	if ((pkey = d2i_PUBKEY(NULL, &p, (long)len)) == NULL ||
	    p != der + len) {
		EVP_PKEY_free(pkey);
		crypto_seterr(err, "not a DER SubjectPublicKeyInfo");
		return (NULL);
	}
	return (crypto_key_from_pkey(alg, pkey, 0, err));
}

/*
 * A signature made elsewhere (KMS Sign over the SHA-256 of data) for the
 * public key key: put in JOSE form (ECDSA's DER becomes r||s at fixed
 * width; RSA's is taken as it is) and verified against key and data
 * before anyone sees it. 0 with sig filled, or -1.
 */
int
crypto_key_remote_sig(const struct crypto_key *key, const void *data,
    size_t len, const uint8_t *in, size_t inlen, uint8_t *sig, size_t sigmax,
    size_t *siglen, struct crypto_err *err)
{
	const struct crypto_alg_info	*ai = &crypto_algs[key->alg];
	const uint8_t			*p = in;
	const BIGNUM			*r, *s;
	ECDSA_SIG			*es = NULL;
	size_t				 want = crypto_key_sig_len(key);
	int				 ret = -1;

	*siglen = 0;
	if (want == 0 || sigmax < want) {
		crypto_seterr(err, "signature buffer too small");
		return (-1);
	}
	switch (key->kty) {
	case CRYPTO_KTY_RSA:
		if (inlen != want) {
			crypto_seterr(err, "%s signature has the wrong length",
			    ai->name);
			goto out;
		}
		memcpy(sig, in, inlen);
		break;
	case CRYPTO_KTY_EC:
		if (inlen == 0 || inlen > CRYPTO_DER_SIG_MAX ||
		    (es = d2i_ECDSA_SIG(NULL, &p, (long)inlen)) == NULL ||
		    p != in + inlen) {
			crypto_seterr(err, "%s signature is not DER", ai->name);
			goto out;
		}
		ECDSA_SIG_get0(es, &r, &s);
		if (BN_bn2binpad(r, sig, (int)ai->size) != (int)ai->size ||
		    BN_bn2binpad(s, sig + ai->size, (int)ai->size) !=
		    (int)ai->size) {
			crypto_seterr(err, "%s signature is out of range",
			    ai->name);
			goto out;
		}
		break;
	default:
		crypto_seterr(err, "%s is not signed elsewhere", ai->name);
		goto out;
	}
	if (crypto_key_verify(key, key->alg, data, len, sig, want, err) == -1) {
		crypto_seterr(err, "the signature does not verify with the "
		    "key's public key");
		goto out;
	}
	*siglen = want;
	ret = 0;
out:
	ECDSA_SIG_free(es);
	ERR_clear_error();
	return (ret);
}

/*
 * Verify a JOSE signature. alg is what the token claims; it must be the
 * algorithm the key is pinned to, or nothing is even tried.
 */
int
crypto_key_verify(const struct crypto_key *key, enum crypto_alg alg,
    const void *data, size_t len, const uint8_t *sig, size_t siglen,
    struct crypto_err *err)
{
	const struct crypto_alg_info	*ai;
	uint8_t				 mac[EVP_MAX_MD_SIZE];
	uint8_t				 der[CRYPTO_DER_SIG_MAX], *p;
	ECDSA_SIG			*es = NULL;
	EVP_MD_CTX			*ctx = NULL;
	BIGNUM				*r = NULL, *s = NULL;
	size_t				 n;
	int				 derlen, ret = -1;

	if (key == NULL || !crypto_alg_ok(alg) || alg != key->alg) {
		crypto_seterr(err, "algorithm %s does not match the key",
		    crypto_alg_name(alg));
		return (-1);
	}
	ai = &crypto_algs[alg];
	if (siglen != crypto_key_sig_len(key)) {
		crypto_seterr(err, "signature has the wrong length");
		return (-1);
	}
	switch (key->kty) {
	case CRYPTO_KTY_OCT:
		if (crypto_hmac(key, data, len, mac, &n) == -1 ||
		    n != siglen || CRYPTO_memcmp(mac, sig, n) != 0)
			goto out;
		break;
	case CRYPTO_KTY_OKP:
		if (crypto_sign_verify_detached(sig, data, len,
		    key->ed_pk) != 0)
			goto out;
		break;
	case CRYPTO_KTY_RSA:
		if ((ctx = crypto_md_init(key, 0)) == NULL ||
		    EVP_DigestVerify(ctx, sig, siglen, data, len) != 1)
			goto out;
		break;
	case CRYPTO_KTY_EC:
		if ((es = ECDSA_SIG_new()) == NULL ||
		    (r = BN_bin2bn(sig, (int)ai->size, NULL)) == NULL ||
		    (s = BN_bin2bn(sig + ai->size, (int)ai->size, NULL)) ==
		    NULL)
			fatalx("%s: out of memory", __func__);
		if (ECDSA_SIG_set0(es, r, s) != 1)
			fatalx("%s: ECDSA_SIG_set0", __func__);
		r = s = NULL;
		derlen = i2d_ECDSA_SIG(es, NULL);
		if (derlen <= 0 || (size_t)derlen > sizeof der)
			goto out;
		p = der;
		if (i2d_ECDSA_SIG(es, &p) != derlen)
			goto out;
		if ((ctx = crypto_md_init(key, 0)) == NULL ||
		    EVP_DigestVerify(ctx, der, (size_t)derlen, data, len) != 1)
			goto out;
		break;
	default:
		goto out;
	}
	ret = 0;
out:
	if (ret == -1)
		crypto_seterr(err, "signature does not verify");
	sodium_memzero(mac, sizeof mac);
	BN_free(r);
	BN_free(s);
	ECDSA_SIG_free(es);
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	return (ret);
}

/*
 * SigV4's HMAC-SHA256 under key, or if key is NULL under the key ctx
 * already holds. With out NULL, only key the context.
 */
static int
crypto_sigv4_hmac(EVP_MAC_CTX *ctx, const void *key, size_t keylen,
    const void *data, size_t len, uint8_t out[CRYPTO_HASH_LEN])
{
	static char	sha256[] = "SHA256";
	OSSL_PARAM	params[2];
	size_t		outlen = 0;

	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
	    sha256, 0);
	params[1] = OSSL_PARAM_construct_end();
	if (EVP_MAC_init(ctx, key, keylen, key != NULL ? params : NULL) != 1) {
		ERR_clear_error();
		return (-1);
	}
	if (out == NULL)
		return (0);
	if (EVP_MAC_update(ctx, data, len) != 1 ||
	    EVP_MAC_final(ctx, out, &outlen, CRYPTO_HASH_LEN) != 1 ||
	    outlen != CRYPTO_HASH_LEN) {
		ERR_clear_error();
		return (-1);
	}
	return (0);
}

/* The cached signing key for this scope, or NULL. */
static struct crypto_sigv4_key *
crypto_sigv4_find(const char *secret, size_t secretlen, const char *date,
    const char *region, const char *service)
{
	struct crypto_sigv4_key	*k;
	size_t			 i;

	for (i = 0; i < CRYPTO_SIGV4_CACHE; i++) {
		k = &crypto_sigv4_keys[i];
		/* The length of an AWS secret is no secret (40). */
		if (k->stamp != 0 && strcmp(k->date, date) == 0 &&
		    strcmp(k->region, region) == 0 &&
		    strcmp(k->service, service) == 0 &&
		    k->secretlen == secretlen &&
		    sodium_memcmp(k->secret, secret, secretlen) == 0)
			return (k);
	}
	return (NULL);
}

/*
 * kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region),
 * service), "aws4_request"), into a free slot or the least recently used.
 */
static struct crypto_sigv4_key *
crypto_sigv4_derive(const char *secret, size_t secretlen, const char *date,
    const char *region, const char *service)
{
	struct crypto_sigv4_key	*k, *victim = NULL;
	EVP_MAC_CTX		*ctx = NULL;
	uint8_t			 ksecret[4 + CRYPTO_SIGV4_SECRET_MAX];
	uint8_t			 k1[CRYPTO_HASH_LEN], k2[CRYPTO_HASH_LEN];
	size_t			 i;

	for (i = 0; i < CRYPTO_SIGV4_CACHE; i++) {
		k = &crypto_sigv4_keys[i];
		if (victim == NULL || k->stamp < victim->stamp)
			victim = k;
	}
	if (victim->ctx == NULL &&
	    (victim->ctx = EVP_MAC_CTX_new(crypto_hmac_mac)) == NULL)
		fatalx("%s: EVP_MAC_CTX_new", __func__);
	victim->stamp = 0;
	if ((ctx = EVP_MAC_CTX_new(crypto_hmac_mac)) == NULL)
		fatalx("%s: EVP_MAC_CTX_new", __func__);
	memcpy(ksecret, "AWS4", 4);
	memcpy(ksecret + 4, secret, secretlen);
	if (crypto_sigv4_hmac(ctx, ksecret, 4 + secretlen, date, strlen(date),
	    k1) == -1 ||
	    crypto_sigv4_hmac(ctx, k1, sizeof k1, region, strlen(region),
	    k2) == -1 ||
	    crypto_sigv4_hmac(ctx, k2, sizeof k2, service, strlen(service),
	    k1) == -1 ||
	    crypto_sigv4_hmac(ctx, k1, sizeof k1, CRYPTO_SIGV4_TERM,
	    strlen(CRYPTO_SIGV4_TERM), k2) == -1 ||
	    crypto_sigv4_hmac(victim->ctx, k2, sizeof k2, NULL, 0,
	    NULL) == -1) {
		EVP_MAC_CTX_free(victim->ctx);
		sodium_memzero(victim, sizeof *victim);
		victim = NULL;
		goto out;
	}
	/* The lengths were checked by crypto_sigv4_sign(). */
	bsp_strlcpy(victim->date, date, sizeof victim->date);
	bsp_strlcpy(victim->region, region, sizeof victim->region);
	bsp_strlcpy(victim->service, service, sizeof victim->service);
	sodium_memzero(victim->secret, sizeof victim->secret);
	memcpy(victim->secret, secret, secretlen);
	victim->secretlen = secretlen;
	crypto_sigv4_nderived++;
out:
	EVP_MAC_CTX_free(ctx);
	sodium_memzero(ksecret, sizeof ksecret);
	sodium_memzero(k1, sizeof k1);
	sodium_memzero(k2, sizeof k2);
	return (victim);
}

/*
 * The AWS Signature Version 4 signature (RFC 2104 HMAC-SHA256) of a string
 * to sign, under the signing key of the secret access key for (date,
 * region, service). The signing key changes daily; a few are kept.
 */
int
crypto_sigv4_sign(const char *secret, const char *date, const char *region,
    const char *service, const void *sts, size_t stslen,
    uint8_t sig[CRYPTO_HASH_LEN])
{
	struct crypto_sigv4_key	*k;
	size_t			 secretlen;

	if (secret == NULL || date == NULL || region == NULL ||
	    service == NULL || strlen(date) != 8 ||
	    strlen(region) >= CRYPTO_SIGV4_FIELD_MAX ||
	    strlen(service) >= CRYPTO_SIGV4_FIELD_MAX)
		return (-1);
	if ((secretlen = strlen(secret)) == 0 ||
	    secretlen > CRYPTO_SIGV4_SECRET_MAX)
		return (-1);
	if (crypto_hmac_mac == NULL &&
	    (crypto_hmac_mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL) {
		ERR_clear_error();
		return (-1);
	}
	if ((k = crypto_sigv4_find(secret, secretlen, date, region,
	    service)) == NULL &&
	    (k = crypto_sigv4_derive(secret, secretlen, date, region,
	    service)) == NULL)
		return (-1);
	k->stamp = ++crypto_sigv4_stamp;
	return (crypto_sigv4_hmac(k->ctx, NULL, 0, sts, stslen, sig));
}

/* Forget (and wipe) every SigV4 signing key, e.g. on credential change. */
void
crypto_sigv4_clear(void)
{
	size_t	i;

	for (i = 0; i < CRYPTO_SIGV4_CACHE; i++) {
		EVP_MAC_CTX_free(crypto_sigv4_keys[i].ctx);
		sodium_memzero(&crypto_sigv4_keys[i],
		    sizeof crypto_sigv4_keys[i]);
	}
}

/* How many SigV4 signing keys have been derived (cache misses). */
unsigned long
crypto_sigv4_derivations(void)
{
	return (crypto_sigv4_nderived);
}
