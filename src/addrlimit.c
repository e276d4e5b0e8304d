/*
 * addrlimit.c: allowances per client address: a token bucket for each key
 * (a client address as sockaddr_group() writes it: an IPv4 address or an
 * IPv6 /64) holding up to burst tokens, refilled at burst per window
 * seconds. A table keeps at most a fixed number of buckets in memory: a
 * bucket untouched for a whole window is full again and is dropped, and
 * when the table is full the key unheard of longest loses its bucket. No
 * key can spend another's allowance, and a new key always has a full one.
 *
 * Besides taking a token (addr_limit_take), a caller may ask whether a
 * key's allowance is spent without taking one (addr_limit_spent): a
 * counter of failures is checked before the work and charged after a
 * failure. The first refusal after an allowance ran out is told apart, so
 * that it can be recorded once per lockout, not once per request.
 */

#include <sys/queue.h>

#include <stdlib.h>

#include <uthash.h>

#include "bsp.h"

#define ADDR_LIMIT_KEY_MAX	64

struct addr_bucket {
	char				key[ADDR_LIMIT_KEY_MAX];
	double				tokens;
	double				at;	/* last refill */
	int				refused; /* told since it ran out */
	TAILQ_ENTRY(addr_bucket)	entry;	/* least recently used first */
	UT_hash_handle			hh;
};

struct addr_limit {
	struct addr_bucket		*hash;
	TAILQ_HEAD(, addr_bucket)	 lru;
	size_t				 n;
	size_t				 max;
};

/* A table of at most max buckets. */
struct addr_limit *
addr_limit_new(size_t max)
{
	struct addr_limit	*t;

	t = xcalloc(1, sizeof *t);
	TAILQ_INIT(&t->lru);
	t->max = max > 0 ? max : 1;
	return (t);
}

static void
addr_limit_remove(struct addr_limit *t, struct addr_bucket *b)
{
	HASH_DEL(t->hash, b);
	TAILQ_REMOVE(&t->lru, b, entry);
	free(b);
	t->n--;
}

/*
 * The bucket of key, refilled up to now and made the most recently used;
 * a new, full one if it had none.
 */
static struct addr_bucket *
addr_limit_bucket(struct addr_limit *t, const char *key, double now,
    int burst, double window)
{
	struct addr_bucket	*b;
	double			 full = (double)burst;

	/* Buckets untouched for a whole window are full: forget them. */
	while ((b = TAILQ_FIRST(&t->lru)) != NULL && now - b->at >= window)
		addr_limit_remove(t, b);
	HASH_FIND_STR(t->hash, key, b);
	if (b == NULL) {
		if (t->n >= t->max)
			addr_limit_remove(t, TAILQ_FIRST(&t->lru));
		b = xcalloc(1, sizeof *b);
		bsp_strlcpy(b->key, key, sizeof b->key);
		b->tokens = full;
		HASH_ADD_STR(t->hash, key, b);
		t->n++;
	} else {
		TAILQ_REMOVE(&t->lru, b, entry);
		if (now > b->at)
			b->tokens += (now - b->at) * full / window;
		if (b->tokens > full)
			b->tokens = full;
	}
	if (b->tokens >= 1.0)
		b->refused = 0;
	b->at = now;
	TAILQ_INSERT_TAIL(&t->lru, b, entry);
	return (b);
}

/* Seconds until the bucket holds a whole token again, at least one. */
static long
addr_limit_wait(const struct addr_bucket *b, int burst, double window)
{
	return ((long)((1.0 - b->tokens) * window / (double)burst) + 1);
}

/*
 * Take one token from key's allowance of burst per window seconds. 0, or
 * -1 with *retry the seconds until the next is allowed.
 */
int
addr_limit_take(struct addr_limit *t, const char *key, double now, int burst,
    double window, long *retry)
{
	struct addr_bucket	*b;

	*retry = 0;
	if (burst < 1)
		burst = 1;
	if (window < 1.0)
		window = 1.0;
	b = addr_limit_bucket(t, key, now, burst, window);
	if (b->tokens < 1.0) {
		*retry = addr_limit_wait(b, burst, window);
		return (-1);
	}
	b->tokens -= 1.0;
	return (0);
}

/*
 * Is key's allowance spent? 0 if a token is left (none is taken); -1 with
 * *retry the seconds until one is, and *first set for the first refusal
 * since the allowance ran out.
 */
int
addr_limit_spent(struct addr_limit *t, const char *key, double now,
    int burst, double window, long *retry, int *first)
{
	struct addr_bucket	*b;

	*retry = 0;
	*first = 0;
	if (burst < 1)
		burst = 1;
	if (window < 1.0)
		window = 1.0;
	b = addr_limit_bucket(t, key, now, burst, window);
	if (b->tokens >= 1.0)
		return (0);
	*retry = addr_limit_wait(b, burst, window);
	*first = !b->refused;
	b->refused = 1;
	return (-1);
}

/* Keys with a bucket now. */
size_t
addr_limit_count(const struct addr_limit *t)
{
	return (t != NULL ? t->n : 0);
}

void
addr_limit_free(struct addr_limit *t)
{
	struct addr_bucket	*b;

	if (t == NULL)
		return;
	while ((b = TAILQ_FIRST(&t->lru)) != NULL)
		addr_limit_remove(t, b);
	free(t);
}
