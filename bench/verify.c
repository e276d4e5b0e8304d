/*
 * verify.c: how long the project's own token code takes, in a tight loop.
 *
 * Without arguments: for EdDSA, ES256, RS256 and HS256 keys made with
 * crypto_key_generate() and a token made with jose_sign() in the shape of
 * our access tokens, time jose_parse(), jose_verify() alone, and the whole
 * check (parse, verify, typ, claims, free); then crypto_sha256() of the
 * token (the auth cache key, as auth.c makes it) and a uthash lookup of a 32-byte key in a table
 * the size of the default auth cache.
 *
 * With -f cfg TOKEN: load that configuration, open its database and token
 * state as the CLI does, and time tokens_verify_jwt() (a cache miss in
 * auth.c) against the cache-hit path (hash, lookup, principal_revoked()).
 *
 * Each figure: the loop count is calibrated to run about -t seconds, the
 * loop is repeated -r times, and the median, min and max of the thread's
 * CPU time per call are printed (clock_gettime(CLOCK_THREAD_CPUTIME_ID)
 * around the whole loop), with the median wall-clock time and user-space
 * instruction count (perf_event_open) beside it.
 * Built by bench/verify.sh; not part of the test suite.
 */

#include <sys/syscall.h>

#include <linux/perf_event.h>

#include <err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <uthash.h>

#include "bsp.h"
#include "crypto.h"
#include "jose.h"
#include "store.h"

#define CACHE_ENTRIES	10000	/* cache.max_entries default */
#define REPEATS_MAX	32

extern char	**environ;

struct entry {
	uint8_t		 hash[CRYPTO_HASH_LEN];
	UT_hash_handle	 hh;
};

/* What one timed operation needs. */
struct ctx {
	const struct crypto_key	*key;
	const char		*token;
	size_t			 len;
	struct jose_jws		*jws;		/* pre-parsed, for verify only */
	struct entry		*table;
	uint8_t			(*keys)[CRYPTO_HASH_LEN];
	size_t			 nkeys;
	size_t			 next;
	struct principal	*p;		/* for the cache-hit path */
	const char		*issuer;
	const char		*audience;
};

static int	 perf_fd = -1;
static double	 opt_seconds = 0.5;
static int	 opt_repeats = 5;
static volatile unsigned long sink;

static double
now_sec(clockid_t id)
{
	struct timespec	ts;

	clock_gettime(id, &ts);
	return ((double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
}

/*
 * Count this thread's user-space instructions, if perf_event_open(2) lets
 * us (kernel.perf_event_paranoid <= 2): unlike time, the count does not
 * move when other work shares the machine.
 */
static void
instr_open(void)
{
	struct perf_event_attr	a;

	memset(&a, 0, sizeof a);
	a.type = PERF_TYPE_HARDWARE;
	a.size = sizeof a;
	a.config = PERF_COUNT_HW_INSTRUCTIONS;
	a.exclude_kernel = 1;
	a.exclude_hv = 1;
	perf_fd = (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, 0);
}

static double
instr_read(void)
{
	uint64_t	v;

	if (perf_fd == -1 || read(perf_fd, &v, sizeof v) != sizeof v)
		return (0);
	return ((double)v);
}

static int
cmp_double(const void *a, const void *b)
{
	double	x = *(const double *)a, y = *(const double *)b;

	return (x < y ? -1 : x > y);
}

/*
 * Run fn n times per repeat, n calibrated to opt_seconds; print the median
 * CPU time per call (CLOCK_THREAD_CPUTIME_ID: time the thread ran, so
 * other work preempting it on a shared machine does not count), its min
 * and max over the repeats, calls per second from it, the median
 * wall-clock (CLOCK_MONOTONIC) time per call for comparison, and the median
 * user-space instructions per call in thousands.
 */
static double
bench(const char *name, void (*fn)(struct ctx *), struct ctx *c)
{
	double		 t0, c0, i0, el, med;
	double		 per[REPEATS_MAX], wall[REPEATS_MAX], ins[REPEATS_MAX];
	unsigned long	 n = 1, i;
	int		 r;

	for (;;) {		/* calibrate, which also warms up */
		t0 = now_sec(CLOCK_MONOTONIC);
		for (i = 0; i < n; i++)
			fn(c);
		el = now_sec(CLOCK_MONOTONIC) - t0;
		if (el >= opt_seconds / 4)
			break;
		n *= el < opt_seconds / 100 ? 10 : 2;
	}
	n = (unsigned long)((double)n * opt_seconds / el) + 1;
	for (r = 0; r < opt_repeats; r++) {
		t0 = now_sec(CLOCK_MONOTONIC);
		c0 = now_sec(CLOCK_THREAD_CPUTIME_ID);
		i0 = instr_read();
		for (i = 0; i < n; i++)
			fn(c);
		ins[r] = (instr_read() - i0) / (double)n / 1000;
		per[r] = (now_sec(CLOCK_THREAD_CPUTIME_ID) - c0) /
		    (double)n * 1e6;
		wall[r] = (now_sec(CLOCK_MONOTONIC) - t0) / (double)n * 1e6;
	}
	qsort(per, (size_t)opt_repeats, sizeof per[0], cmp_double);
	qsort(wall, (size_t)opt_repeats, sizeof wall[0], cmp_double);
	qsort(ins, (size_t)opt_repeats, sizeof ins[0], cmp_double);
	med = per[opt_repeats / 2];
	printf("%-30s %9.3f %11.0f %9.3f %9.3f %9.3f %9lu %9.2f\n", name, med,
	    1e6 / med, per[0], per[opt_repeats - 1], wall[opt_repeats / 2], n,
	    ins[opt_repeats / 2]);
	fflush(stdout);
	return (med);
}

static void
header(const char *title)
{
	printf("\n# %s\n%-30s %9s %11s %9s %9s %9s %9s %9s\n", title,
	    "operation", "cpu_us", "ops/s", "min_us", "max_us", "wall_us",
	    "loop_n", "kinstr");
}

static void
op_hash(struct ctx *c)
{
	uint8_t	h[CRYPTO_HASH_LEN];

	crypto_sha256(c->token, strlen(c->token), h);
	sink += h[0];
}

/* Look up a different present key each time, as many clients would. */
static void
op_lookup(struct ctx *c)
{
	struct entry	*e;

	HASH_FIND(hh, c->table, c->keys[c->next], CRYPTO_HASH_LEN, e);
	if (++c->next == c->nkeys)
		c->next = 0;
	sink += e != NULL;
}

/* The auth cache hit in auth.c: hash the token, find it. */
static void
op_hash_lookup(struct ctx *c)
{
	uint8_t		 h[CRYPTO_HASH_LEN];
	struct entry	*e;

	crypto_sha256(c->token, strlen(c->token), h);
	HASH_FIND(hh, c->table, h, CRYPTO_HASH_LEN, e);
	sink += e != NULL;
}

static void
op_parse(struct ctx *c)
{
	struct crypto_err	 err;
	struct jose_jws		*jws;

	if ((jws = jose_parse(c->token, c->len, &err)) == NULL)
		errx(1, "jose_parse: %s", err.msg);
	sink += jws->siglen;
	jose_jws_free(jws);
}

static void
op_verify(struct ctx *c)
{
	struct crypto_err	 err;

	if (jose_verify(c->jws, c->key, &err) == -1)
		errx(1, "jose_verify: %s", err.msg);
	sink++;
}

/* What tokens_verify_jwt() does for one of our tokens, minus the lookup. */
static void
op_full(struct ctx *c)
{
	static const char *const	 required[] = { "sub", "sid", "jti",
	    NULL };
	static const char *const	 typs[] = { "JWT", NULL };
	const char			*auds[2] = { c->audience, NULL };
	struct jose_claims_rules	 rules;
	struct crypto_err		 err;
	struct jose_jws			*jws;

	if ((jws = jose_parse(c->token, c->len, &err)) == NULL ||
	    jose_verify(jws, c->key, &err) == -1 ||
	    jose_check_typ(jws, typs, 0, &err) == -1)
		errx(1, "full: %s", err.msg);
	memset(&rules, 0, sizeof rules);
	rules.issuer = c->issuer;
	rules.audiences = auds;
	rules.now = time(NULL);
	rules.leeway = 60;
	rules.require_exp = 1;
	rules.require_iat = 1;
	rules.required = required;
	if (jose_claims_check(jws->claims, &rules, &err) == -1)
		errx(1, "claims: %s", err.msg);
	jose_jws_free(jws);
	sink++;
}

static void
op_tokens_verify(struct ctx *c)
{
	struct principal	*p;
	const char		*why;

	if (tokens_verify_jwt(c->token, c->len, &p, &why) == -1)
		errx(1, "tokens_verify_jwt: %s", why);
	if (principal_revoked(p) != NULL)
		errx(1, "principal_revoked");
	principal_unref(p);
	sink++;
}

/* auth.c's cached path: hash, find, ref, principal_revoked, unref. */
static void
op_cache_hit(struct ctx *c)
{
	uint8_t		 h[CRYPTO_HASH_LEN];
	struct entry	*e;

	crypto_sha256(c->token, strlen(c->token), h);
	HASH_FIND(hh, c->table, h, CRYPTO_HASH_LEN, e);
	if (e == NULL)
		errx(1, "cache miss");
	principal_ref(c->p);
	if (principal_revoked(c->p) != NULL)
		errx(1, "principal_revoked");
	principal_unref(c->p);
	sink++;
}

/* A table of n random keys plus, if token is set, the token's hash. */
static void
table_fill(struct ctx *c, size_t n, const char *token)
{
	struct entry	*e;
	size_t		 i;

	c->keys = calloc(n + 1, sizeof c->keys[0]);
	if (c->keys == NULL)
		err(1, NULL);
	for (i = 0; i < n; i++) {
		crypto_random(c->keys[i], CRYPTO_HASH_LEN);
		if ((e = calloc(1, sizeof *e)) == NULL)
			err(1, NULL);
		memcpy(e->hash, c->keys[i], CRYPTO_HASH_LEN);
		HASH_ADD(hh, c->table, hash, CRYPTO_HASH_LEN, e);
	}
	c->nkeys = n;
	if (token != NULL) {
		if ((e = calloc(1, sizeof *e)) == NULL)
			err(1, NULL);
		crypto_sha256(token, strlen(token), e->hash);
		HASH_ADD(hh, c->table, hash, CRYPTO_HASH_LEN, e);
	}
}

static void
table_free(struct ctx *c)
{
	struct entry	*e, *tmp;

	HASH_ITER(hh, c->table, e, tmp) {
		HASH_DEL(c->table, e);
		free(e);
	}
	free(c->keys);
	c->keys = NULL;
}

/* Keys and tokens made by the project's own functions. */
static void
run_library(void)
{
	static const enum crypto_alg	 algs[] = { CRYPTO_ALG_EDDSA,
	    CRYPTO_ALG_ES256, CRYPTO_ALG_RS256, CRYPTO_ALG_HS256 };
	struct crypto_err		 err;
	struct crypto_key		*k;
	struct ctx			 c;
	json_t				*claims;
	char				*tok, name[64], *eddsa = NULL;
	time_t				 now = time(NULL);
	size_t				 i;

	memset(&c, 0, sizeof c);
	c.issuer = "http://127.0.0.1:3000";
	c.audience = "bedrock-sso-proxy";
	claims = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:s,s:s,s:s,s:[],"
	    "s:[s],s:s}", "iss", c.issuer, "aud", c.audience, "sub",
	    "local:bench@example.com", "iat", (json_int_t)now, "nbf",
	    (json_int_t)now, "exp", (json_int_t)now + 2592000, "jti",
	    "ifq7HpRWRzJJkPqHkYmmzg", "sid", "1wLKP-gw1MHRYzAO92o30Q",
	    "provider", "local", "groups", "scopes", "bedrock:invoke",
	    "email", "bench@example.com");
	if (claims == NULL)
		errx(1, "json_pack");

	for (i = 0; i < nitems(algs); i++) {
		if ((k = crypto_key_generate(algs[i], 0, &err)) == NULL)
			errx(1, "crypto_key_generate: %s", err.msg);
		crypto_key_set_kid(k, "bench-key-1");
		if ((tok = jose_sign(k, claims, "JWT", &err)) == NULL)
			errx(1, "jose_sign: %s", err.msg);
		c.key = k;
		c.token = tok;
		c.len = strlen(tok);
		if ((c.jws = jose_parse(tok, c.len, &err)) == NULL)
			errx(1, "jose_parse: %s", err.msg);
		snprintf(name, sizeof name, "%s (token %zu bytes)",
		    crypto_alg_name(algs[i]), c.len);
		header(name);
		bench("jose_parse+free", op_parse, &c);
		bench("jose_verify (signature)", op_verify, &c);
		bench("parse+verify+claims+free", op_full, &c);
		jose_jws_free(c.jws);
		c.jws = NULL;
		if (algs[i] == CRYPTO_ALG_EDDSA)
			eddsa = tok;
		else
			free(tok);
		crypto_key_free(k);
	}
	json_decref(claims);

	c.token = eddsa;
	c.len = strlen(eddsa);
	table_fill(&c, CACHE_ENTRIES, eddsa);
	snprintf(name, sizeof name, "cache key and lookup (EdDSA token, "
	    "%d entries)", CACHE_ENTRIES);
	header(name);
	bench("crypto_sha256 (the cache key)", op_hash, &c);
	bench("uthash HASH_FIND (32 B key)", op_lookup, &c);
	bench("hash + HASH_FIND", op_hash_lookup, &c);
	table_free(&c);
	free(eddsa);
}

/* tokens.c as the daemon runs it, with its configuration and database. */
static void
run_tokens(const char *file, const char *token)
{
	struct config_source	 src;
	struct config_errors	 errs;
	struct ctx		 c;
	const char		*why;
	char			*cause = NULL, name[128];

	memset(&src, 0, sizeof src);
	memset(&errs, 0, sizeof errs);
	src.path = file;
	src.path_explicit = 1;
	src.environ = environ;
	src.check = modules_config_check;
	if ((cfg = config_load(&src, &errs)) == NULL) {
		config_errors_print(&errs, stderr);
		exit(1);
	}
	if (cmd_store_open(&cause) == -1 || tokens_init(cfg, &cause) == -1 ||
	    (store_kind() == STORE_PG && tokens_wait(&cause) == -1))
		errx(1, "%s", cause);

	memset(&c, 0, sizeof c);
	c.token = token;
	c.len = strlen(token);
	if (tokens_verify_jwt(token, c.len, &c.p, &why) == -1)
		errx(1, "tokens_verify_jwt: %s", why);
	table_fill(&c, CACHE_ENTRIES, token);
	snprintf(name, sizeof name, "tokens.c, %s (token %zu bytes)",
	    file, c.len);
	header(name);
	bench("tokens_verify_jwt+revoked", op_tokens_verify, &c);
	bench("cache hit (hash+find+revoked)", op_cache_hit, &c);
	principal_unref(c.p);
	table_free(&c);
	tokens_free();
	cmd_store_close();
}

static __dead void
usage(void)
{
	fprintf(stderr, "usage: verify [-r repeats] [-t seconds] "
	    "[-f config token]\n");
	exit(1);
}

int
main(int argc, char **argv)
{
	const char	*file = NULL;
	char		*end;
	long		 l;
	int		 ch;

	while ((ch = getopt(argc, argv, "f:r:t:")) != -1) {
		switch (ch) {
		case 'f':
			file = optarg;
			break;
		case 'r':
			l = strtol(optarg, &end, 10);
			if (*end != '\0' || l < 1 || l > REPEATS_MAX)
				errx(1, "-r: 1 to %d", REPEATS_MAX);
			opt_repeats = (int)l;
			break;
		case 't':
			opt_seconds = strtod(optarg, NULL);
			if (opt_seconds < 0.01 || opt_seconds > 60)
				errx(1, "-t: 0.01 to 60 seconds");
			break;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	if ((file == NULL) != (argc == 0) || argc > 1)
		usage();
	log_init("verify");
	instr_open();
	if (crypto_init() == -1)
		errx(1, "crypto_init");
	if (file == NULL)
		run_library();
	else
		run_tokens(file, argv[0]);
	return (0);
}
