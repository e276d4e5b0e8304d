/*
 * token-hash.c: what hashing a bearer token costs, by hash, for the
 * auth cache's key (src/auth.c): libsodium's BLAKE2b-256 (what the
 * database stores for refresh tokens and API keys), OpenSSL's SHA-256
 * with the digest fetched once and one context reused (crypto_sha256(),
 * which uses the CPU's SHA extensions where it has them), and
 * libsodium's SHA-256 (no such extensions).  valgrind hides the SHA
 * extensions, so callgrind counts OpenSSL's SHA-256 in software: time it
 * natively, here.
 *
 * Build: cc -O2 -o token-hash bench/token-hash.c -lsodium -lcrypto
 * Usage: ./token-hash [LEN...]     (default 300 600 1200 bytes; an
 * EdDSA token from `token mint` is ~600)
 * Prints ns per hash, the median of 5 runs of 200 000 each.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <sodium.h>

#define RUNS	5
#define N	200000

static double
now(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
}

static int
cmp(const void *a, const void *b)
{
	double	x = *(const double *)a, y = *(const double *)b;

	return (x < y ? -1 : x > y);
}

int
main(int argc, char **argv)
{
	static const size_t	 defaults[] = { 300, 600, 1200 };
	unsigned char		 buf[4096], out[32];
	double			 t[3][RUNS], t0;
	EVP_MD			*md;
	EVP_MD_CTX		*ctx;
	unsigned int		 olen;
	size_t			 len, a, nlen;
	int			 r, i, k;

	if (sodium_init() < 0 || (md = EVP_MD_fetch(NULL, "SHA256",
	    NULL)) == NULL || (ctx = EVP_MD_CTX_new()) == NULL)
		return (1);
	memset(buf, 'a', sizeof buf);
	nlen = argc > 1 ? (size_t)argc - 1 : sizeof defaults /
	    sizeof defaults[0];
	printf("| token bytes | BLAKE2b-256 (libsodium) ns | SHA-256 "
	    "(OpenSSL) ns | SHA-256 (libsodium) ns |\n|---|---|---|---|\n");
	for (a = 0; a < nlen; a++) {
		len = argc > 1 ? strtoul(argv[a + 1], NULL, 10) : defaults[a];
		if (len > sizeof buf)
			len = sizeof buf;
		for (r = 0; r < RUNS; r++) {
			t0 = now();
			for (i = 0; i < N; i++) {
				buf[0] = (unsigned char)i;
				crypto_generichash(out, sizeof out, buf, len,
				    NULL, 0);
			}
			t[0][r] = (now() - t0) / N * 1e9;
			t0 = now();
			for (i = 0; i < N; i++) {
				buf[0] = (unsigned char)i;
				if (EVP_DigestInit_ex2(ctx, md, NULL) != 1 ||
				    EVP_DigestUpdate(ctx, buf, len) != 1 ||
				    EVP_DigestFinal_ex(ctx, out, &olen) != 1)
					return (1);
			}
			t[1][r] = (now() - t0) / N * 1e9;
			t0 = now();
			for (i = 0; i < N; i++) {
				buf[0] = (unsigned char)i;
				crypto_hash_sha256(out, buf, len);
			}
			t[2][r] = (now() - t0) / N * 1e9;
		}
		for (k = 0; k < 3; k++)
			qsort(t[k], RUNS, sizeof t[k][0], cmp);
		printf("| %zu | %.0f | %.0f | %.0f |\n", len, t[0][RUNS / 2],
		    t[1][RUNS / 2], t[2][RUNS / 2]);
	}
	EVP_MD_CTX_free(ctx);
	EVP_MD_free(md);
	return (0);
}
