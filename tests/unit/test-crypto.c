/*
 * test-crypto.c: unit tests for crypto.c.
 *
 * Known answers: RFC 4648 base64url, RFC 7515 A.2 (RS256 signatures are
 * deterministic, so ours must equal the RFC's byte for byte), A.3 (ES256,
 * verify only), RFC 8037 A.4 (Ed25519, deterministic). Then every algorithm
 * round trip, algorithm pinning, key validation, sealing and the KEK file.
 * SigV4: the signing key of the AWS documentation's derivation example
 * ("Create a signing key for SigV4"), checked through the HMAC it makes.
 * The PEM keys below are the RFC keys re-encoded as PKCS#8, plus a few
 * throwaway keys of the wrong kind; none of them protects anything.
 */

#include <sys/stat.h>
#include <sys/wait.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <sodium.h>

#include "bsp.h"
#include "crypto.h"
#include "tap.h"
#include "keys.h"


static const char pem_ec_a3[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgjpsQnnGQmL+YBIff\n"
    "H1136cspYG6+0iY7X1fCE9+E9LKhRANCAAR/zc4ncPbEXUGDy+5v20t7WAczNXvp\n"
    "7xO6z248e9FURcfxRM0bvZt+hyzf7bnuufSzaV1uqQskrYpGIyiFiOWt\n"
    "-----END PRIVATE KEY-----\n";

static const char pem_ed_8037[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n"
    "-----END PRIVATE KEY-----\n";

static const char pem_p384[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIG2AgEAMBAGByqGSM49AgEGBSuBBAAiBIGeMIGbAgEBBDDa5Yb/mm0KK3xKJik1\n"
    "jQiCb8rikUHLxRlHn7fIHvqA9IeRt7jUj5uKcy2vU1InqoyhZANiAAQS37nx3QhD\n"
    "Y9VNJkxILjdIXi15SMmPmLXQ1IOgKwlVnnZLt6BY/PDFrp7d0hTV3lB6fOo4/11g\n"
    "ePlLna5E/4a1n6rIUG3DT+XXkli8PiuNuZY1qRKFifExMRP3OQZHHLs=\n"
    "-----END PRIVATE KEY-----\n";

static const char pem_k1[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGEAgEAMBAGByqGSM49AgEGBSuBBAAKBG0wawIBAQQgkZJ0NMnLZDG+y37WQnNW\n"
    "Yr5QUNM1pWV575c/HSlnCkyhRANCAARFRUZDQOiLN0s6IrLDU4EWOilG0UqvWztk\n"
    "xKQk7oRFuJWP9U7qhXshQoUKyMRaYvS1Ikg4y5mQprn57dU59LJb\n"
    "-----END PRIVATE KEY-----\n";

static const char pem_ed448[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MEcCAQAwBQYDK2VxBDsEOW3rwkEA+wJ6nwzrktrrTZZdBRyHbubXWRF8Xdqav55o\n"
    "+8p67FWxI4GuK5Qw4PyOPCNUkZL0i0xMIA==\n"
    "-----END PRIVATE KEY-----\n";

static const char pem_rsa1024[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIICdgIBADANBgkqhkiG9w0BAQEFAASCAmAwggJcAgEAAoGBAKT3C0AghB5bUoCc\n"
    "rQCxC821d5tAXGOxNNj911e8XNtkjN4jkCkfgC0d8sEHU2kDt9egD4bTaYhRMiNM\n"
    "iTaMw8BbEHF16RkjWIr/w/YybTN2y+rSmuPMi1uRxALfYF5Z6z1kKvUBvQJ5EPo+\n"
    "93Wlfw3SC9PL0OhFUc389drE9Zj1AgMBAAECgYBFa3y9iLFwgOewHb6j6t1XvMTP\n"
    "fX8jqL/fjLrhPfAplx+8n2ScGZh74/1zA50zNRBZWg8OosrnRZv+xMd9QDFjhNrv\n"
    "yinfh8FZWWqHvdtpLRTpavuJEZa7whzcckLYFk4BVXG7KCk4oyiUaTZgVQ+d3n1E\n"
    "Hy1cLmjGvZVohCHJ4QJBANtbzUjkhrxIW48OcAlbJgowqAyGgc1WUkvjGJ5SU5Ut\n"
    "hJq7i9qfD+MT4uSL7Qph3qaI/C0wbWxVqXDGDKD9mJkCQQDAhURhWvT8QsFHVELn\n"
    "2cz2ZzzL/jKEIiJMwEg6bwypJyLq/ZWGF1vkOAni5so1xNp1I1bI5QI5gQTwBvFt\n"
    "YXC9AkEAgQU++lfH0+ivSbZROX+OIUI7JZrbr/3My+vX6A8+MCkkrKoQ+VbDTmm8\n"
    "83ZFxuyHu+YohR/NzIGZ9sXWWb6vSQJAX1JczhtcC3799dRJoERd0G7DUnmVB4lj\n"
    "FD9sQ8pyKVqgVluiahcsv23jrz34RvEl/TO3J5cEJ/ayvCmj5jWFvQJAEYQD+F1z\n"
    "qBRzbSEaJozuw+6e+4iVoRu80XH1isCpXkrg6uwXPzG+dDpANN7sE3SbdaXEpsTr\n"
    "umPzyh6ddXNVJQ==\n"
    "-----END PRIVATE KEY-----\n";

/* RFC 7515 A.2 and A.3 signing input: b64(header) "." b64(claims) */
#define RFC7515_PAYLOAD							\
	"eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFt" \
	"cGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
static const char a2_input[] = "eyJhbGciOiJSUzI1NiJ9." RFC7515_PAYLOAD;
static const char a2_sig[] =
    "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7"
    "AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4"
    "BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K"
    "0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqv"
    "hJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrB"
    "p0igcN_IoypGlUPQGe77Rw";
static const char a3_input[] = "eyJhbGciOiJFUzI1NiJ9." RFC7515_PAYLOAD;
static const char a3_sig[] =
    "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSA"
    "pmWQxfKTUJqPP3-Kg6NU1Q";
static const char a3_x[] = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
static const char a3_y[] = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

/* RFC 8037 A.4 */
static const char ed_input[] =
    "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
static const char ed_sig_hex[] =
    "860c98d2297f3060a33f42739672d61b53cf3adefed3d3c672f320dc021b411e"
    "9d59b8628dc351e248b88b29468e0e41855b0fb7d83bb15be902bfccb8cd0a02";
static const char ed_x[] = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

static size_t
b64d(const char *s, uint8_t *out, size_t max)
{
	size_t	n;

	if (crypto_b64url_decode(s, strlen(s), out, max, &n) == -1) {
		diag("bad base64url in a test vector: %s", s);
		exit(1);
	}
	return (n);
}

static const uint8_t *
want_a2(void)
{
	static uint8_t	buf[CRYPTO_SIG_MAX];

	(void)b64d(a2_sig, buf, sizeof buf);
	return (buf);
}

static int
sign_verify(const struct crypto_key *k, const struct crypto_key *pubk)
{
	static const char	 msg[] = "the quick brown fox";
	uint8_t			 sig[CRYPTO_SIG_MAX];
	size_t			 n;

	if (crypto_key_sign(k, msg, strlen(msg), sig, sizeof sig, &n,
	    NULL) == -1)
		return (-1);
	if (n != crypto_key_sig_len(k))
		return (-1);
	if (crypto_key_verify(pubk, crypto_key_alg(k), msg, strlen(msg), sig,
	    n, NULL) == -1)
		return (-1);
	sig[n / 2] ^= 0x01;
	if (crypto_key_verify(pubk, crypto_key_alg(k), msg, strlen(msg), sig,
	    n, NULL) == 0)
		return (-1);
	sig[n / 2] ^= 0x01;
	if (crypto_key_verify(pubk, crypto_key_alg(k), msg, strlen(msg) - 1,
	    sig, n, NULL) == 0)
		return (-1);
	if (crypto_key_verify(pubk, crypto_key_alg(k), msg, strlen(msg), sig,
	    n - 1, NULL) == 0)
		return (-1);
	return (0);
}

static void
test_b64url(void)
{
	static const struct {
		const char	*in;
		const char	 out[12];	/* an array: never NULL (GCC 12's
					   -Wformat-overflow at -O2) */
	} v[] = {
		{ "", "" }, { "f", "Zg" }, { "fo", "Zm8" }, { "foo", "Zm9v" },
		{ "foob", "Zm9vYg" }, { "fooba", "Zm9vYmE" },
		{ "foobar", "Zm9vYmFy" }, { "\xfb\xff", "-_8" },
	};
	static const char *const bad[] = {
		"Zg==", "Zg=", "Z", "Zm9vY", "Zh", "Zm9", "Zm+v", "Zm/v",
		"Zm 9v", "Zm9v\n", "Zm9v.", "-_9",
	};
	char	buf[64];
	uint8_t	out[64];
	size_t	i, n;

	for (i = 0; i < nitems(v); i++) {
		crypto_b64url_encode(v[i].in, strlen(v[i].in), buf,
		    sizeof buf);
		is_str(buf, v[i].out, "b64url encode \"%s\"", v[i].out);
		ok(crypto_b64url_decode(v[i].out, strlen(v[i].out), out,
		    sizeof out, &n) == 0 && n == strlen(v[i].in) &&
		    (n == 0 || crypto_memeq(out, v[i].in, n)),
		    "b64url decode \"%s\"", v[i].out);
	}
	for (i = 0; i < nitems(bad); i++)
		ok(crypto_b64url_decode(bad[i], strlen(bad[i]), out,
		    sizeof out, &n) == -1, "b64url refuses bad input #%zu", i);
	ok(crypto_b64url_decode("Zm9vYmFy", 8, out, 5, &n) == -1,
	    "b64url refuses output longer than the buffer");
	ok(crypto_b64url_decode("Zm9vYmFy", 8, out, 6, &n) == 0 && n == 6,
	    "b64url fills the buffer exactly");
	is_int(crypto_b64url_len(32), 43, "b64url length of 32 bytes");
}

static void
test_hashes(void)
{
	uint8_t	 h[CRYPTO_HASH_LEN], h2[CRYPTO_HASH_LEN], want[32];
	uint8_t	 k1[CRYPTO_KEY_LEN], k2[CRYPTO_KEY_LEN];
	char	 id1[32], id2[32], *s1, *s2;
	size_t	 n;

	crypto_hash_token("abc", h);
	sodium_hex2bin(want, sizeof want, "bddd813c634239723171ef3fee98579b"
	    "94964e3bb1cb3e427262c8c068d52319", 64, NULL, &n, NULL);
	ok(crypto_memeq(h, want, 32), "hash_token is BLAKE2b-256");
	crypto_sha256("abc", 3, h);
	sodium_hex2bin(want, sizeof want, "ba7816bf8f01cfea414140de5dae2223"
	    "b00361a396177a9cb410ff61f20015ad", 64, NULL, &n, NULL);
	ok(crypto_memeq(h, want, 32), "sha256 known answer");

	ok(crypto_streq("secret", "secret"), "streq equal");
	ok(!crypto_streq("secret", "secreT"), "streq differ");
	ok(!crypto_streq("secret", "secret2"), "streq differ in length");
	ok(!crypto_streq("secret", NULL), "streq NULL");
	ok(crypto_memeq("abcd", "abcd", 4) && !crypto_memeq("abcd", "abce", 4),
	    "memeq");

	crypto_secret_id("bsr_token", "bsp-kid", 16, id1, sizeof id1);
	crypto_secret_id("bsr_token", "bsp-kid", 16, id2, sizeof id2);
	ok(strcmp(id1, id2) == 0 && strcmp(id1, "xB01I3ekBeV_37EzD0kGcg") == 0,
	    "secret_id known answer (HS256 key ids depend on it)");
	crypto_secret_id("bsr_token", "other", 16, id2, sizeof id2);
	ok(strcmp(id1, id2) != 0, "secret_id separates purposes");
	crypto_secret_id("bsr_tokeN", "bsp-kid", 16, id2, sizeof id2);
	ok(strcmp(id1, id2) != 0, "secret_id separates secrets");
	crypto_hash_token("bsr_token", h2);
	crypto_b64url_encode(h2, 16, id2, sizeof id2);
	ok(strcmp(id1, id2) != 0, "secret_id is not the stored token hash");
	crypto_secret_id("bsr_token", "bsp-kid", 12, id2, sizeof id2);
	ok(strlen(id2) == 16 && strncmp(id1, id2, 16) == 0,
	    "a shorter secret_id is a prefix of the longer");

	s1 = crypto_new_secret("bsr_");
	s2 = crypto_new_secret("bsr_");
	ok(strlen(s1) == 47 && strncmp(s1, "bsr_", 4) == 0 &&
	    crypto_b64url_decode(s1 + 4, 43, k1, sizeof k1, &n) == 0 &&
	    n == 32, "new_secret: prefix and 256 bits in base64url");
	ok(strcmp(s1, s2) != 0, "new_secret differs");
	free(s1);
	free(s2);

	crypto_random(k1, sizeof k1);
	crypto_random(k2, sizeof k2);
	ok(!crypto_memeq(k1, k2, sizeof k1), "random differs");
}

/*
 * Short random requests are served from a pool: never the same bytes
 * twice, across refills and mixed sizes, and a forked child never hands
 * out the bytes its parent hands out next.
 */
static void
test_random_pool(void)
{
	static uint8_t	 seen[4000][16];
	uint8_t		 odd[7], mine[16], theirs[16];
	size_t		 i, j;
	int		 same = 0, zero = 0, fds[2], status;
	pid_t		 pid;

	for (i = 0; i < 4000; i++) {
		crypto_random(seen[i], sizeof seen[i]);
		if (i % 3 == 0)
			crypto_random(odd, sizeof odd);
	}
	for (i = 0; i < 4000; i++) {
		for (j = 0; j < 16 && seen[i][j] == 0; j++)
			;
		if (j == 16)
			zero++;
		for (j = i + 1; j < 4000; j++)
			if (memcmp(seen[i], seen[j], 16) == 0)
				same++;
	}
	is_int(same, 0, "random pool: 4000 draws of 16 bytes, none repeated");
	is_int(zero, 0, "random pool: no draw of wiped bytes");

	crypto_random(mine, 1);		/* the pool is partly used */
	if (pipe(fds) == -1 || (pid = fork()) == -1)
		abort();
	if (pid == 0) {
		crypto_random(theirs, sizeof theirs);
		if (write(fds[1], theirs, sizeof theirs) != sizeof theirs)
			_exit(1);
		_exit(0);
	}
	crypto_random(mine, sizeof mine);
	waitpid(pid, &status, 0);
	ok(read(fds[0], theirs, sizeof theirs) == sizeof theirs &&
	    memcmp(mine, theirs, sizeof mine) != 0, "random pool: a forked "
	    "child draws other bytes than its parent");
	close(fds[0]);
	close(fds[1]);
}

/* Sealing under a key derived from a bearer secret (a refresh token). */
static void
test_seal(void)
{
	static const char	 msg[] = "provider refresh token";
	static const char	 tok[] = "bsr_one", tok2[] = "bsr_two";
	static const char	 purpose[] = "bsp-test";
	uint8_t			*box, *pt;
	size_t			 boxlen, ptlen, i;
	int			 all;

	ok(crypto_seal_token(tok, purpose, msg, strlen(msg), &box,
	    &boxlen) == 0 && boxlen == strlen(msg) + CRYPTO_SEAL_OVERHEAD &&
	    box[0] == CRYPTO_SEAL_VERSION, "seal under a token");
	ok(crypto_unseal_token(tok, purpose, box, boxlen, &pt, &ptlen) == 0 &&
	    ptlen == strlen(msg) && strcmp((char *)pt, msg) == 0,
	    "unseal gives the plaintext back, NUL-terminated");
	freezero(pt, ptlen + 1);
	ok(crypto_unseal_token(tok2, purpose, box, boxlen, &pt, &ptlen) ==
	    -1 && pt == NULL, "unseal with another token fails");
	ok(crypto_unseal_token(tok, "bsp-other", box, boxlen, &pt, &ptlen) ==
	    -1 && pt == NULL, "unseal for another purpose fails");
	all = 1;
	for (i = 0; i < boxlen; i++) {
		box[i] ^= 0x20;
		if (crypto_unseal_token(tok, purpose, box, boxlen, &pt,
		    &ptlen) == 0) {
			all = 0;
			freezero(pt, ptlen + 1);
		}
		box[i] ^= 0x20;
	}
	ok(all, "flipping any bit of a sealed blob is detected");
	ok(crypto_unseal_token(tok, purpose, box, boxlen - 1, &pt, &ptlen) ==
	    -1, "truncated blob is refused");
	ok(crypto_unseal_token(tok, purpose, box, CRYPTO_SEAL_OVERHEAD - 1,
	    &pt, &ptlen) == -1, "blob shorter than the overhead is refused");
	free(box);

	ok(crypto_seal_token(tok, purpose, "", 0, &box, &boxlen) == 0 &&
	    crypto_unseal_token(tok, purpose, box, boxlen, &pt, &ptlen) == 0 &&
	    ptlen == 0 && pt[0] == '\0', "empty plaintext round trip");
	free(box);
	freezero(pt, 1);

	crypto_kek_unload();
	ok(crypto_seal(msg, strlen(msg), &box, &boxlen) == -1 && box == NULL,
	    "seal without a KEK fails");
}

static int
write_file(const char *path, const void *buf, size_t len, mode_t mode)
{
	int	fd;

	unlink(path);
	if ((fd = open(path, O_WRONLY|O_CREAT|O_EXCL, mode)) == -1)
		return (-1);
	if (write(fd, buf, len) != (ssize_t)len) {
		close(fd);
		return (-1);
	}
	close(fd);
	return (chmod(path, mode));
}

static void
test_kek(void)
{
	struct crypto_err	 err;
	struct stat		 st;
	char			 dir[] = "/tmp/test-crypto.XXXXXX";
	char			 path[256], path2[256];
	uint8_t			*box, *pt, zero[40];
	size_t			 boxlen, ptlen;

	if (mkdtemp(dir) == NULL) {
		ok(0, "mkdtemp");
		return;
	}
	snprintf(path, sizeof path, "%s/kek", dir);
	ok(crypto_kek_load(path, &err) == 0 && crypto_kek_loaded(),
	    "missing KEK file is created");
	ok(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600 &&
	    st.st_size == 32, "new KEK file is 0600 and 32 bytes");
	ok(crypto_seal("hello", 5, &box, &boxlen) == 0, "seal under the KEK");
	crypto_kek_unload();
	ok(crypto_unseal(box, boxlen, &pt, &ptlen) == -1,
	    "unseal without a KEK fails");
	ok(crypto_kek_load(path, &err) == 0, "existing KEK file loads");
	ok(crypto_unseal(box, boxlen, &pt, &ptlen) == 0 && ptlen == 5 &&
	    strcmp((char *)pt, "hello") == 0,
	    "the reloaded KEK opens what the created one sealed");
	freezero(pt, ptlen + 1);
	ok(crypto_unseal_for("purpose-a", box, boxlen, &pt, &ptlen) == -1,
	    "a KEK blob does not open for a purpose");
	free(box);
	ok(crypto_seal_for("purpose-a", "hi", 2, &box, &boxlen) == 0,
	    "seal for a purpose");
	ok(crypto_unseal_for("purpose-a", box, boxlen, &pt, &ptlen) == 0 &&
	    ptlen == 2 && strcmp((char *)pt, "hi") == 0, "opens for it");
	freezero(pt, ptlen + 1);
	ok(crypto_unseal_for("purpose-b", box, boxlen, &pt, &ptlen) == -1,
	    "not for another purpose");
	ok(crypto_unseal(box, boxlen, &pt, &ptlen) == -1,
	    "nor under the KEK itself");
	crypto_kek_unload();
	ok(crypto_unseal_for("purpose-a", box, boxlen, &pt, &ptlen) == -1 &&
	    crypto_seal_for("purpose-a", "hi", 2, &pt, &ptlen) == -1,
	    "nothing for a purpose without a KEK");
	free(box);
	ok(crypto_kek_load(path, &err) == 0, "KEK loaded again");

	ok(chmod(path, 0640) == 0 && crypto_kek_load(path, &err) == -1 &&
	    strstr(err.msg, "chmod 600") != NULL,
	    "group-readable KEK file is refused: %s", err.msg);
	ok(chmod(path, 0604) == 0 && crypto_kek_load(path, &err) == -1,
	    "world-readable KEK file is refused");
	ok(chmod(path, 0620) == 0 && crypto_kek_load(path, &err) == -1,
	    "group-writable KEK file is refused");
	ok(chmod(path, 0400) == 0 && crypto_kek_load(path, &err) == 0,
	    "0400 KEK file is fine");

	memset(zero, 0, sizeof zero);
	snprintf(path2, sizeof path2, "%s/short", dir);
	ok(write_file(path2, zero, 31, 0600) == 0 &&
	    crypto_kek_load(path2, &err) == -1 &&
	    strstr(err.msg, "want exactly 32") != NULL,
	    "31-byte KEK file is refused: %s", err.msg);
	ok(write_file(path2, zero, 33, 0600) == 0 &&
	    crypto_kek_load(path2, &err) == -1, "33-byte KEK file is refused");
	unlink(path2);
	ok(crypto_kek_load(dir, &err) == -1 &&
	    strstr(err.msg, "not a regular file") != NULL,
	    "a directory is refused");
	snprintf(path2, sizeof path2, "%s/nodir/kek", dir);
	ok(crypto_kek_load(path2, &err) == -1 &&
	    strstr(err.msg, "cannot create") != NULL,
	    "uncreatable KEK file is refused: %s", err.msg);

	ok(crypto_kek_load(path, &err) == 0, "KEK loaded for key sealing");
	unlink(path);
	rmdir(dir);
}

static void
test_names(void)
{
	enum crypto_alg	a;
	int		all = 1;

	for (a = CRYPTO_ALG_HS256; a < CRYPTO_ALG_MAX; a++) {
		if (crypto_alg_from_name(crypto_alg_name(a)) != a)
			all = 0;
	}
	ok(all, "every alg name round trips");
	is_int(crypto_alg_from_name("none"), CRYPTO_ALG_NONE, "none is NONE");
	is_int(crypto_alg_from_name("hs256"), CRYPTO_ALG_NONE,
	    "alg names are case-sensitive");
	is_int(crypto_alg_from_name("ES512"), CRYPTO_ALG_NONE, "ES512 unknown");
	is_int(crypto_alg_from_name(NULL), CRYPTO_ALG_NONE, "NULL is NONE");
	is_str(crypto_alg_name(CRYPTO_ALG_EDDSA), "EdDSA", "EdDSA name");
	is_int(crypto_alg_kty(CRYPTO_ALG_PS384), CRYPTO_KTY_RSA,
	    "PS384 is RSA");
	is_int(crypto_alg_crv(CRYPTO_ALG_ES384), CRYPTO_CRV_P384,
	    "ES384 is P-384");
	is_int(crypto_crv_from_name("Ed25519"), CRYPTO_CRV_ED25519,
	    "Ed25519 curve");
	is_int(crypto_crv_from_name("X25519"), CRYPTO_CRV_NONE,
	    "X25519 is not a signing curve");
}

/* Every algorithm: sign, verify, public-only copy, seal and unseal. */
static void
test_roundtrips(void)
{
	static const struct {
		enum crypto_alg	 alg;
		const char	*pem;
	} v[] = {
		{ CRYPTO_ALG_HS256, NULL }, { CRYPTO_ALG_HS384, NULL },
		{ CRYPTO_ALG_HS512, NULL }, { CRYPTO_ALG_RS256, NULL },
		{ CRYPTO_ALG_RS384, pem_rsa_a2 },
		{ CRYPTO_ALG_RS512, pem_rsa_a2 },
		{ CRYPTO_ALG_PS256, pem_rsa_a2 },
		{ CRYPTO_ALG_PS384, pem_rsa_a2 },
		{ CRYPTO_ALG_PS512, pem_rsa_a2 }, { CRYPTO_ALG_ES256, NULL },
		{ CRYPTO_ALG_ES384, NULL }, { CRYPTO_ALG_ES384, pem_p384 },
		{ CRYPTO_ALG_EDDSA, NULL }, { CRYPTO_ALG_EDDSA, pem_ed_8037 },
	};
	struct crypto_err	 err;
	struct crypto_key	*k, *pubk, *k2, *pk2;
	struct crypto_pub	 pub;
	enum crypto_alg		 other;
	const char		*name;
	uint8_t			*blob, sig[CRYPTO_SIG_MAX];
	size_t			 i, bloblen, n;
	char			*pem;

	for (i = 0; i < nitems(v); i++) {
		name = crypto_alg_name(v[i].alg);
		if (v[i].pem == NULL)
			k = crypto_key_generate(v[i].alg, 0, &err);
		else
			k = crypto_key_from_pem(v[i].alg, v[i].pem,
			    strlen(v[i].pem), &err);
		if (k == NULL) {
			ok(0, "%s key: %s", name, err.msg);
			continue;
		}
		ok(crypto_key_alg(k) == v[i].alg && crypto_key_has_private(k),
		    "%s key (%s)", name, v[i].pem ? "PEM" : "generated");
		ok(sign_verify(k, k) == 0, "%s sign and verify", name);

		other = v[i].alg == CRYPTO_ALG_HS256 ? CRYPTO_ALG_HS384 :
		    CRYPTO_ALG_HS256;
		ok(crypto_key_sign(k, "x", 1, sig, sizeof sig, &n, NULL) == 0 &&
		    crypto_key_verify(k, other, "x", 1, sig, n, &err) == -1 &&
		    strstr(err.msg, "does not match") != NULL,
		    "%s key refuses to verify as %s", name,
		    crypto_alg_name(other));

		if (crypto_key_kty(k) == CRYPTO_KTY_OCT) {
			ok(crypto_key_public(k, &pub) == -1 &&
			    crypto_key_public_pem(k) == NULL,
			    "%s secret has no public form", name);
		} else {
			pubk = NULL;
			if (crypto_key_public(k, &pub) == 0)
				pubk = crypto_key_from_pub(v[i].alg, &pub,
				    &err);
			ok(pubk != NULL && !crypto_key_has_private(pubk) &&
			    sign_verify(k, pubk) == 0,
			    "%s public parameters verify", name);
			ok(pubk != NULL && crypto_key_sign(pubk, "x", 1, sig,
			    sizeof sig, &n, &err) == -1,
			    "%s public key cannot sign", name);
			crypto_key_free(pubk);

			pem = crypto_key_public_pem(k);
			pk2 = pem == NULL ? NULL : crypto_key_from_pem(v[i].alg,
			    pem, strlen(pem), &err);
			ok(pk2 != NULL && !crypto_key_has_private(pk2) &&
			    sign_verify(k, pk2) == 0,
			    "%s public PEM round trip", name);
			crypto_key_free(pk2);
			free(pem);
		}

		ok(crypto_key_set_kid(k, "kid-1") == 0 &&
		    crypto_key_seal(k, &blob, &bloblen, &err) == 0,
		    "%s key seals", name);
		k2 = crypto_key_unseal(blob, bloblen, &err);
		ok(k2 != NULL && crypto_key_alg(k2) == v[i].alg &&
		    crypto_key_kid(k2) != NULL &&
		    strcmp(crypto_key_kid(k2), "kid-1") == 0 &&
		    sign_verify(k2, k) == 0 && sign_verify(k, k2) == 0,
		    "%s key unseals to the same key and kid", name);
		crypto_key_free(k2);
		blob[bloblen - 1] ^= 1;
		ok(crypto_key_unseal(blob, bloblen, &err) == NULL,
		    "%s damaged sealed key is refused", name);
		free(blob);
		crypto_key_free(k);
	}
}

static void
test_known_answers(void)
{
	struct crypto_err	 err;
	struct crypto_key	*k, *pk;
	struct crypto_pub	 pub;
	uint8_t			 want[1024], sig[1024];
	size_t			 wantlen, n;
	BIGNUM			*order, *s;

	/* RFC 7515 A.2: RS256 is deterministic. */
	wantlen = b64d(a2_sig, want, sizeof want);
	k = crypto_key_from_pem(CRYPTO_ALG_RS256, pem_rsa_a2,
	    strlen(pem_rsa_a2), &err);
	ok(k != NULL && crypto_key_sign(k, a2_input, strlen(a2_input), sig,
	    sizeof sig, &n, &err) == 0 && n == wantlen &&
	    crypto_memeq(sig, want, n), "RFC 7515 A.2 RS256 signature");
	ok(k != NULL && crypto_key_verify(k, CRYPTO_ALG_RS256, a2_input,
	    strlen(a2_input), want, wantlen, &err) == 0,
	    "RFC 7515 A.2 verifies with the private key");
	crypto_key_free(k);
	k = crypto_key_from_pem(CRYPTO_ALG_RS256, pem_rsa_a2_pub,
	    strlen(pem_rsa_a2_pub), &err);
	ok(k != NULL && !crypto_key_has_private(k) &&
	    crypto_key_verify(k, CRYPTO_ALG_RS256, a2_input, strlen(a2_input),
	    want, wantlen, &err) == 0,
	    "RFC 7515 A.2 verifies with the public PEM");
	ok(k != NULL && crypto_key_verify(k, CRYPTO_ALG_RS256, a3_input,
	    strlen(a3_input), want, wantlen, &err) == -1,
	    "RFC 7515 A.2 signature does not fit other input");
	crypto_key_free(k);

	/* RFC 7515 A.3: verify only, ECDSA signatures are random. */
	memset(&pub, 0, sizeof pub);
	pub.kty = CRYPTO_KTY_EC;
	pub.crv = CRYPTO_CRV_P256;
	pub.xlen = b64d(a3_x, pub.x, sizeof pub.x);
	pub.ylen = b64d(a3_y, pub.y, sizeof pub.y);
	wantlen = b64d(a3_sig, want, sizeof want);
	k = crypto_key_from_pub(CRYPTO_ALG_ES256, &pub, &err);
	ok(k != NULL && crypto_key_verify(k, CRYPTO_ALG_ES256, a3_input,
	    strlen(a3_input), want, wantlen, &err) == 0,
	    "RFC 7515 A.3 ES256 verifies");
	ok(k != NULL && crypto_key_verify(k, CRYPTO_ALG_ES256, a3_input,
	    strlen(a3_input), want, wantlen - 1, &err) == -1 &&
	    crypto_key_verify(k, CRYPTO_ALG_ES256, a3_input, strlen(a3_input),
	    want, sizeof want, &err) == -1,
	    "ES256 signatures of the wrong length are refused");

	/* High S (s' = n - s) is the same signature; it is accepted. */
	order = NULL;
	BN_hex2bn(&order, "FFFFFFFF00000000FFFFFFFFFFFFFFFF"
	    "BCE6FAADA7179E84F3B9CAC2FC632551");
	s = BN_bin2bn(want + 32, 32, NULL);
	BN_sub(s, order, s);
	memcpy(sig, want, 32);
	BN_bn2binpad(s, sig + 32, 32);
	ok(k != NULL && crypto_key_verify(k, CRYPTO_ALG_ES256, a3_input,
	    strlen(a3_input), sig, 64, &err) == 0, "ES256 high-S accepted");
	BN_free(s);
	BN_free(order);
	memset(sig, 0, 64);
	ok(k != NULL && crypto_key_verify(k, CRYPTO_ALG_ES256, a3_input,
	    strlen(a3_input), sig, 64, &err) == -1, "ES256 r=s=0 refused");
	crypto_key_free(k);

	pk = crypto_key_from_pem(CRYPTO_ALG_ES256, pem_ec_a3,
	    strlen(pem_ec_a3), &err);
	ok(pk != NULL && crypto_key_verify(pk, CRYPTO_ALG_ES256, a3_input,
	    strlen(a3_input), want, wantlen, &err) == 0,
	    "RFC 7515 A.3 verifies with the PEM private key");
	crypto_key_free(pk);

	/* RFC 8037 A.4: Ed25519 is deterministic. */
	sodium_hex2bin(want, sizeof want, ed_sig_hex, strlen(ed_sig_hex), NULL,
	    &wantlen, NULL);
	k = crypto_key_from_pem(CRYPTO_ALG_EDDSA, pem_ed_8037,
	    strlen(pem_ed_8037), &err);
	ok(k != NULL && crypto_key_sign(k, ed_input, strlen(ed_input), sig,
	    sizeof sig, &n, &err) == 0 && n == 64 && wantlen == 64 &&
	    crypto_memeq(sig, want, 64), "RFC 8037 A.4 Ed25519 signature");
	ok(k != NULL && crypto_key_public(k, &pub) == 0 && pub.xlen == 32 &&
	    b64d(ed_x, want + 64, 32) == 32 && crypto_memeq(pub.x, want + 64,
	    32), "RFC 8037 public key from the PEM seed");
	crypto_key_free(k);
	memset(&pub, 0, sizeof pub);
	pub.kty = CRYPTO_KTY_OKP;
	pub.crv = CRYPTO_CRV_ED25519;
	pub.xlen = b64d(ed_x, pub.x, sizeof pub.x);
	k = crypto_key_from_pub(CRYPTO_ALG_EDDSA, &pub, &err);
	ok(k != NULL && crypto_key_verify(k, CRYPTO_ALG_EDDSA, ed_input,
	    strlen(ed_input), want, 64, &err) == 0,
	    "RFC 8037 A.5 Ed25519 verifies");
	crypto_key_free(k);
}

static void
test_refusals(void)
{
	static const struct {
		enum crypto_alg	 alg;
		const char	*pem;
		const char	*what;
	} pems[] = {
		{ CRYPTO_ALG_ES256, pem_rsa_a2, "RSA key as ES256" },
		{ CRYPTO_ALG_RS256, pem_ec_a3, "EC key as RS256" },
		{ CRYPTO_ALG_ES384, pem_ec_a3, "P-256 key as ES384" },
		{ CRYPTO_ALG_ES256, pem_p384, "P-384 key as ES256" },
		{ CRYPTO_ALG_ES256, pem_k1, "secp256k1 key as ES256" },
		{ CRYPTO_ALG_EDDSA, pem_ed448, "Ed448 key as EdDSA" },
		{ CRYPTO_ALG_EDDSA, pem_rsa_a2, "RSA key as EdDSA" },
		{ CRYPTO_ALG_RS256, pem_rsa1024, "1024-bit RSA key" },
		{ CRYPTO_ALG_HS256, pem_rsa_a2, "PEM key as HS256" },
		{ CRYPTO_ALG_NONE, pem_rsa_a2, "PEM key for alg none" },
		{ CRYPTO_ALG_RS256, "-----BEGIN PRIVATE KEY-----\nAAAA\n"
		    "-----END PRIVATE KEY-----\n", "garbage PEM" },
		{ CRYPTO_ALG_RS256, "", "empty PEM" },
	};
	struct crypto_err	 err;
	struct crypto_key	*k, *rsa, *hs;
	struct crypto_pub	 pub, good;
	uint8_t			 secret[64], sig[CRYPTO_SIG_MAX];
	size_t			 i, n;

	for (i = 0; i < nitems(pems); i++) {
		err.msg[0] = '\0';
		k = crypto_key_from_pem(pems[i].alg, pems[i].pem,
		    strlen(pems[i].pem), &err);
		ok(k == NULL && err.msg[0] != '\0', "refused: %s: %s",
		    pems[i].what, err.msg);
		crypto_key_free(k);
	}

	memset(secret, 'x', sizeof secret);
	ok(crypto_key_from_secret(CRYPTO_ALG_HS256, secret, 31, &err) ==
	    NULL, "HS256 secret of 31 bytes refused: %s", err.msg);
	ok(crypto_key_from_secret(CRYPTO_ALG_HS384, secret, 47, &err) == NULL,
	    "HS384 secret of 47 bytes refused");
	ok(crypto_key_from_secret(CRYPTO_ALG_HS512, secret, 63, &err) == NULL,
	    "HS512 secret of 63 bytes refused");
	ok(crypto_key_from_secret(CRYPTO_ALG_RS256, secret, 64, &err) == NULL,
	    "RS256 does not take a secret");
	ok(crypto_key_from_secret_b64url(CRYPTO_ALG_HS256, "Zm9v+A", 6,
	    &err) == NULL, "bad base64url secret refused");
	ok(crypto_key_generate(CRYPTO_ALG_RS256, 1024, &err) == NULL,
	    "1024-bit RSA generation refused");
	ok(crypto_key_generate(CRYPTO_ALG_ES256, 256, &err) == NULL,
	    "EC generation takes no size");
	ok(crypto_key_generate(CRYPTO_ALG_NONE, 0, &err) == NULL,
	    "alg none cannot be generated");

	/* Algorithm confusion: the RSA public PEM as an HMAC secret. */
	rsa = crypto_key_from_pem(CRYPTO_ALG_RS256, pem_rsa_a2_pub,
	    strlen(pem_rsa_a2_pub), &err);
	hs = crypto_key_from_secret(CRYPTO_ALG_HS256, pem_rsa_a2_pub,
	    strlen(pem_rsa_a2_pub), &err);
	ok(rsa != NULL && hs != NULL && crypto_key_sign(hs, a2_input,
	    strlen(a2_input), sig, sizeof sig, &n, &err) == 0 &&
	    crypto_key_verify(rsa, CRYPTO_ALG_HS256, a2_input,
	    strlen(a2_input), sig, n, &err) == -1,
	    "RSA key refuses an HS256 MAC keyed with its own public PEM");
	crypto_key_free(hs);

	/* Public parameters are validated. */
	memset(&good, 0, sizeof good);
	ok(rsa != NULL && crypto_key_public(rsa, &good) == 0 &&
	    good.nlen == 256 && good.elen == 3, "RSA public parameters");
	pub = good;
	pub.nlen = 128;
	ok(crypto_key_from_pub(CRYPTO_ALG_RS256, &pub, &err) == NULL,
	    "1024-bit RSA modulus refused: %s", err.msg);
	pub = good;
	pub.n[pub.nlen - 1] &= 0xfe;
	ok(crypto_key_from_pub(CRYPTO_ALG_RS256, &pub, &err) == NULL,
	    "even RSA modulus refused");
	pub = good;
	pub.e[0] = 1;
	pub.elen = 1;
	ok(crypto_key_from_pub(CRYPTO_ALG_RS256, &pub, &err) == NULL,
	    "RSA exponent 1 refused");
	pub = good;
	pub.e[pub.elen - 1] = 2;
	ok(crypto_key_from_pub(CRYPTO_ALG_RS256, &pub, &err) == NULL,
	    "even RSA exponent refused");
	pub = good;
	pub.elen = 5;
	memset(pub.e, 0xff, 5);
	ok(crypto_key_from_pub(CRYPTO_ALG_RS256, &pub, &err) == NULL,
	    "40-bit RSA exponent refused");
	pub = good;
	memmove(pub.n + 1, pub.n, pub.nlen);
	pub.n[0] = 0;
	pub.nlen++;
	k = crypto_key_from_pub(CRYPTO_ALG_RS256, &pub, &err);
	ok(k != NULL && crypto_key_verify(k, CRYPTO_ALG_RS256, a2_input,
	    strlen(a2_input), want_a2(), 256, &err) == 0,
	    "RSA modulus with a leading zero byte is accepted");
	crypto_key_free(k);
	ok(crypto_key_from_pub(CRYPTO_ALG_HS256, &good, &err) == NULL,
	    "RSA parameters as HS256 refused");
	ok(crypto_key_from_pub(CRYPTO_ALG_ES256, &good, &err) == NULL,
	    "RSA parameters as ES256 refused");
	crypto_key_free(rsa);

	memset(&good, 0, sizeof good);
	good.kty = CRYPTO_KTY_EC;
	good.crv = CRYPTO_CRV_P256;
	good.xlen = b64d(a3_x, good.x, sizeof good.x);
	good.ylen = b64d(a3_y, good.y, sizeof good.y);
	pub = good;
	pub.y[31] ^= 1;
	ok(crypto_key_from_pub(CRYPTO_ALG_ES256, &pub, &err) == NULL,
	    "EC point off the curve refused: %s", err.msg);
	pub = good;
	pub.ylen = 31;
	ok(crypto_key_from_pub(CRYPTO_ALG_ES256, &pub, &err) == NULL,
	    "short EC coordinate refused");
	pub = good;
	pub.crv = CRYPTO_CRV_P384;
	ok(crypto_key_from_pub(CRYPTO_ALG_ES256, &pub, &err) == NULL,
	    "P-384 parameters as ES256 refused");
	ok(crypto_key_from_pub(CRYPTO_ALG_ES384, &good, &err) == NULL,
	    "P-256 parameters as ES384 refused");
	pub = good;
	memset(pub.x, 0, 32);
	memset(pub.y, 0, 32);
	ok(crypto_key_from_pub(CRYPTO_ALG_ES256, &pub, &err) == NULL,
	    "EC point (0,0) refused");

	memset(&good, 0, sizeof good);
	good.kty = CRYPTO_KTY_OKP;
	good.crv = CRYPTO_CRV_ED25519;
	good.xlen = b64d(ed_x, good.x, sizeof good.x);
	pub = good;
	pub.xlen = 31;
	ok(crypto_key_from_pub(CRYPTO_ALG_EDDSA, &pub, &err) == NULL,
	    "31-byte Ed25519 key refused");
	pub = good;
	memset(pub.x, 0, 32);
	pub.x[0] = 1;
	ok(crypto_key_from_pub(CRYPTO_ALG_EDDSA, &pub, &err) == NULL,
	    "Ed25519 identity point refused: %s", err.msg);
	ok(crypto_key_from_pub(CRYPTO_ALG_ES256, &good, &err) == NULL,
	    "Ed25519 parameters as ES256 refused");

	k = crypto_key_generate(CRYPTO_ALG_HS256, 0, NULL);
	ok(k != NULL && crypto_key_sign(k, "x", 1, sig, 31, &n, &err) == -1,
	    "signing into a short buffer fails");
	ok(k != NULL && crypto_key_set_kid(k, NULL) == 0 &&
	    crypto_key_kid(k) == NULL, "kid can be removed");
	crypto_key_free(k);
}

/* random_id(): request ids and the like, from crypto.c's randomness. */
static void
test_random_id(void)
{
	char	a[65], b[65], small[2] = "x", none[1] = "x";
	size_t	i;
	int	hex = 1;

	memset(a, '*', sizeof a);
	random_id(a, sizeof a);
	for (i = 0; i < 64; i++)
		hex &= (a[i] >= '0' && a[i] <= '9') || (a[i] >= 'a' &&
		    a[i] <= 'f');
	ok(hex && a[64] == '\0', "random_id: len-1 lowercase hex digits");
	random_id(b, sizeof b);
	ok(strcmp(a, b) != 0, "random_id: two ids differ");
	random_id(small, sizeof small);
	ok(small[1] == '\0' && strchr("0123456789abcdef", small[0]) != NULL,
	    "random_id: one digit");
	random_id(none, 0);
	ok(none[0] == 'x', "random_id: no room, nothing written");
}

/*
 * The AWS example: secret wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, date
 * 20120215, us-east-1, iam; kSigning f4780e2d... The signature must be
 * HMAC-SHA256 under that key, computed here independently with OpenSSL.
 */
static void
test_sigv4(void)
{
	static const char	 secret[] =
	    "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
	static const char	 sts[] = "AWS4-HMAC-SHA256\n20120215T000000Z\n"
	    "20120215/us-east-1/iam/aws4_request\n0123";
	uint8_t			 ksigning[32], want[32], sig[32], sig2[32];
	char			 big[CRYPTO_SIGV4_SECRET_MAX + 2];
	char			 field[CRYPTO_SIGV4_FIELD_MAX + 1];
	unsigned int		 wlen = 0;
	unsigned long		 d0;
	size_t			 n;

	sodium_hex2bin(ksigning, sizeof ksigning, "f4780e2d9f65fa895f9c67b32ce"
	    "1baf0b0d8a43505a000a1a9e090d414db404d", 64, NULL, &n, NULL);
	HMAC(EVP_sha256(), ksigning, sizeof ksigning, (const uint8_t *)sts,
	    strlen(sts), want, &wlen);
	crypto_sigv4_clear();
	d0 = crypto_sigv4_derivations();
	ok(crypto_sigv4_sign(secret, "20120215", "us-east-1", "iam", sts,
	    strlen(sts), sig) == 0 && crypto_memeq(sig, want, sizeof want),
	    "sigv4: HMAC under the AWS example's signing key");
	ok(crypto_sigv4_derivations() - d0 == 1, "sigv4: one derivation");
	ok(crypto_sigv4_sign(secret, "20120215", "us-east-1", "iam", sts,
	    strlen(sts), sig2) == 0 && crypto_memeq(sig2, want, sizeof want),
	    "sigv4: the cached key signs the same");
	ok(crypto_sigv4_sign(secret, "20120215", "us-east-1", "iam", "x", 1,
	    sig2) == 0 && !crypto_memeq(sig2, want, sizeof want),
	    "sigv4: another string, another signature");
	ok(crypto_sigv4_derivations() - d0 == 1, "sigv4: still one derivation");
	ok(crypto_sigv4_sign("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEZ",
	    "20120215", "us-east-1", "iam", sts, strlen(sts), sig2) == 0 &&
	    !crypto_memeq(sig2, want, sizeof want) &&
	    crypto_sigv4_derivations() - d0 == 2,
	    "sigv4: another secret of the same length derives its own key");
	ok(crypto_sigv4_sign(secret, "20120216", "us-east-1", "iam", sts,
	    strlen(sts), sig2) == 0 && !crypto_memeq(sig2, want, sizeof want),
	    "sigv4: another day, another key");
	ok(crypto_sigv4_sign(secret, "20120215", "us-east-1", "sts", sts,
	    strlen(sts), sig2) == 0 && !crypto_memeq(sig2, want, sizeof want),
	    "sigv4: another service, another key");
	ok(crypto_sigv4_sign(secret, "20120215", "eu-west-1", "iam", sts,
	    strlen(sts), sig2) == 0 && !crypto_memeq(sig2, want, sizeof want),
	    "sigv4: another region, another key");
	ok(crypto_sigv4_derivations() - d0 == 5, "sigv4: five keys derived");
	/* Four slots: the first key was the least recently used. */
	ok(crypto_sigv4_sign(secret, "20120215", "us-east-1", "iam", sts,
	    strlen(sts), sig) == 0 && crypto_memeq(sig, want, sizeof want) &&
	    crypto_sigv4_derivations() - d0 == 6,
	    "sigv4: an evicted key is derived again, the same");
	crypto_sigv4_clear();
	ok(crypto_sigv4_sign(secret, "20120215", "us-east-1", "iam", sts,
	    strlen(sts), sig) == 0 && crypto_memeq(sig, want, sizeof want) &&
	    crypto_sigv4_derivations() - d0 == 7,
	    "sigv4: cleared, derived again");

	ok(crypto_sigv4_sign("", "20120215", "us-east-1", "iam", sts,
	    strlen(sts), sig) == -1, "sigv4: empty secret refused");
	memset(big, 'a', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	ok(crypto_sigv4_sign(big, "20120215", "us-east-1", "iam", sts,
	    strlen(sts), sig) == -1, "sigv4: over-long secret refused");
	big[CRYPTO_SIGV4_SECRET_MAX] = '\0';
	ok(crypto_sigv4_sign(big, "20120215", "us-east-1", "iam", sts,
	    strlen(sts), sig) == 0, "sigv4: longest secret accepted");
	ok(crypto_sigv4_sign(secret, "2012021", "us-east-1", "iam", sts,
	    strlen(sts), sig) == -1, "sigv4: short date refused");
	memset(field, 'r', sizeof field - 1);
	field[sizeof field - 1] = '\0';
	ok(crypto_sigv4_sign(secret, "20120215", field, "iam", sts,
	    strlen(sts), sig) == -1, "sigv4: over-long region refused");
	ok(crypto_sigv4_sign(secret, "20120215", "us-east-1", field, sts,
	    strlen(sts), sig) == -1, "sigv4: over-long service refused");
	field[sizeof field - 2] = '\0';
	ok(crypto_sigv4_sign(secret, "20120215", field, field, sts,
	    strlen(sts), sig) == 0, "sigv4: longest region and service");
	crypto_sigv4_clear();
}

/* Sign data with an OpenSSL key as KMS would (ECDSA: DER). */
static size_t
remote_sign(EVP_PKEY *pk, int pss, const char *data, uint8_t *out, size_t max)
{
	EVP_MD_CTX	*ctx = EVP_MD_CTX_new();
	EVP_PKEY_CTX	*pctx = NULL;
	size_t		 n = max;

	if (EVP_DigestSignInit(ctx, &pctx, EVP_sha256(), NULL, pk) != 1 ||
	    (pss && (EVP_PKEY_CTX_set_rsa_padding(pctx,
	    RSA_PKCS1_PSS_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32) != 1)) ||
	    EVP_DigestSign(ctx, out, &n, (const uint8_t *)data,
	    strlen(data)) != 1)
		n = 0;
	EVP_MD_CTX_free(ctx);
	return (n);
}

/* Keys held elsewhere (KMS): the DER public key, and their signatures. */
static void
test_remote(void)
{
	struct crypto_err	 err;
	struct crypto_key	*k;
	EVP_PKEY		*ec, *rsa;
	uint8_t			*der = NULL, *p, *big, sig[CRYPTO_SIG_MAX];
	uint8_t			 in[CRYPTO_SIG_MAX];
	const char		*data = "header.payload";
	size_t			 n, siglen;
	int			 len;

	ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	len = i2d_PUBKEY(ec, &der);
	k = crypto_key_from_spki(CRYPTO_ALG_ES256, der, (size_t)len, &err);
	ok(k != NULL && !crypto_key_has_private(k) &&
	    crypto_key_alg(k) == CRYPTO_ALG_ES256,
	    "spki: a P-256 key for ES256");
	ok(crypto_key_from_spki(CRYPTO_ALG_RS256, der, (size_t)len, &err) ==
	    NULL, "spki: a P-256 key is refused for RS256: %s", err.msg);
	big = xmalloc((size_t)len + 1);
	memcpy(big, der, (size_t)len);
	big[len] = 0;
	ok(crypto_key_from_spki(CRYPTO_ALG_ES256, big, (size_t)len + 1,
	    &err) == NULL, "spki: trailing bytes refused");
	ok(crypto_key_from_spki(CRYPTO_ALG_ES256, der, (size_t)len - 1,
	    &err) == NULL, "spki: a cut key refused");
	free(big);

	n = remote_sign(ec, 0, data, in, sizeof in);
	ok(n > 0 && crypto_key_remote_sig(k, data, strlen(data), in, n, sig,
	    sizeof sig, &siglen, &err) == 0 && siglen == 64 &&
	    crypto_key_verify(k, CRYPTO_ALG_ES256, data, strlen(data), sig,
	    siglen, &err) == 0, "remote ES256: DER becomes r||s that verifies");
	ok(crypto_key_remote_sig(k, "header.other", 12, in, n, sig,
	    sizeof sig, &siglen, &err) == -1 && siglen == 0,
	    "remote ES256: a signature of other data is refused: %s", err.msg);
	ok(crypto_key_remote_sig(k, data, strlen(data), sig, 64, sig,
	    sizeof sig, &siglen, &err) == -1, "remote ES256: r||s is not DER");
	in[n - 1] ^= 1;
	ok(crypto_key_remote_sig(k, data, strlen(data), in, n, sig,
	    sizeof sig, &siglen, &err) == -1, "remote ES256: a bent one");
	crypto_key_free(k);
	free(der);

	der = NULL;
	len = i2d_PUBKEY(rsa, &der);
	p = der;
	k = crypto_key_from_spki(CRYPTO_ALG_RS256, p, (size_t)len, &err);
	n = remote_sign(rsa, 0, data, in, sizeof in);
	ok(k != NULL && n == 256 && crypto_key_remote_sig(k, data,
	    strlen(data), in, n, sig, sizeof sig, &siglen, &err) == 0 &&
	    siglen == 256, "remote RS256 verifies");
	ok(k != NULL && crypto_key_remote_sig(k, data, strlen(data), in,
	    n - 1, sig, sizeof sig, &siglen, &err) == -1,
	    "remote RS256: a short signature refused");
	crypto_key_free(k);
	k = crypto_key_from_spki(CRYPTO_ALG_PS256, p, (size_t)len, &err);
	n = remote_sign(rsa, 1, data, in, sizeof in);
	ok(k != NULL && crypto_key_remote_sig(k, data, strlen(data), in, n,
	    sig, sizeof sig, &siglen, &err) == 0, "remote PS256 verifies");
	n = remote_sign(rsa, 0, data, in, sizeof in);
	ok(k != NULL && crypto_key_remote_sig(k, data, strlen(data), in, n,
	    sig, sizeof sig, &siglen, &err) == -1,
	    "remote PS256: a PKCS#1 v1.5 signature refused");
	crypto_key_free(k);
	free(der);
	EVP_PKEY_free(ec);
	EVP_PKEY_free(rsa);
}

int
main(void)
{
	if (crypto_init() == -1) {
		printf("Bail out! crypto_init\n");
		return (1);
	}
	test_b64url();
	test_hashes();
	test_random_pool();
	test_seal();
	test_kek();
	test_names();
	test_known_answers();
	test_roundtrips();
	test_refusals();
	test_random_id();
	test_sigv4();
	test_remote();
	crypto_kek_unload();
	return (tap_done());
}
