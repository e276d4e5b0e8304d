/*
 * oauth-state.c: unfinished sign-ins sealed for the client to carry, and
 * each client address's allowance of sign-in starts.
 *
 * Starting a sign-in stores nothing: everything the callback needs (flow,
 * provider, nonce, PKCE verifier, the redirect URI's hash, the API client's
 * code challenge, expiry) is sealed under a key crypto.c derives from the
 * KEK for this purpose alone, and travels in the browser's state cookie or,
 * in the API flow, as the state itself. Any daemon holding the same KEK can
 * open it. The plaintext (version 1) is
 *
 *	version flow flags expires[8] id[32] nonce[32] verifier[32]
 *	redirect_hash[32] challenge[32] provider_len provider[provider_len]
 *
 * with expires a big-endian Unix time. Opening refuses anything but
 * exactly that; single use is oauth.c's business (a row per redeemed id).
 * The challenge field is the API client's PKCE challenge, or, for a
 * browser sign-in that approves a device authorization (RFC 8628, the
 * device flow), the key of that authorization's row; in every other
 * state it is zero.
 *
 * The allowance is a token bucket per client address (an IPv4 address or
 * an IPv6 /64): oauth.max_pending_logins starts at once, refilled at that
 * many per ten minutes. Buckets live in memory, at most OAUTH_STARTS_MAX
 * of them: a bucket full again is dropped, and when the table is full the
 * address unheard of longest loses its bucket. No address can spend
 * another's allowance, and a new address always has a full one.
 */

#include <stdlib.h>
#include <string.h>

#include <uthash.h>

#include "bsp.h"
#include "crypto.h"
#include "oauth-state.h"

/* Everything but the provider's name. */
#define ST_HEAD		(3 + 8 + 3 * OAUTH_STATE_SECRET + 2 * CRYPTO_HASH_LEN \
			    + 1)
#define ST_MAX		(ST_HEAD + OAUTH_STATE_PROVIDER_MAX)
#define ST_CLIENT_MAX	64	/* sockaddr_group() text */

struct start_bucket {
	char				client[ST_CLIENT_MAX];
	double				tokens;
	double				at;	/* last refill */
	TAILQ_ENTRY(start_bucket)	entry;	/* least recently used first */
	UT_hash_handle			hh;
};

static struct {
	struct start_bucket		*hash;
	TAILQ_HEAD(, start_bucket)	 lru;
	size_t				 n;
	int				 init;
} starts;

static int
state_provider_ok(const char *s, size_t n)
{
	size_t	i;

	if (n == 0 || n > OAUTH_STATE_PROVIDER_MAX)
		return (0);
	for (i = 0; i < n; i++) {
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' &&
		    s[i] <= '9') || s[i] == '_' || s[i] == '-'))
			return (0);
	}
	return (1);
}

/* Seal a state: its base64url text (allocated), or NULL. */
char *
oauth_state_seal(const struct oauth_state *st)
{
	uint8_t		 pt[ST_MAX], *p = pt, *sealed = NULL;
	uint64_t	 e = (uint64_t)st->expires;
	size_t		 plen = strlen(st->provider), slen = 0;
	char		*text = NULL;
	int		 i;

	if (!state_provider_ok(st->provider, plen))
		return (NULL);
	*p++ = OAUTH_STATE_VERSION;
	*p++ = st->flow;
	*p++ = st->flags;
	for (i = 7; i >= 0; i--)
		*p++ = (uint8_t)(e >> (i * 8));
	memcpy(p, st->id, sizeof st->id);
	p += sizeof st->id;
	memcpy(p, st->nonce, sizeof st->nonce);
	p += sizeof st->nonce;
	memcpy(p, st->verifier, sizeof st->verifier);
	p += sizeof st->verifier;
	memcpy(p, st->redirect_hash, sizeof st->redirect_hash);
	p += sizeof st->redirect_hash;
	memcpy(p, st->challenge, sizeof st->challenge);
	p += sizeof st->challenge;
	*p++ = (uint8_t)plen;
	memcpy(p, st->provider, plen);
	p += plen;
	if (crypto_seal_for(OAUTH_STATE_PURPOSE, pt, (size_t)(p - pt), &sealed,
	    &slen) == 0)
		text = crypto_b64url_encode_alloc(sealed, slen);
	memzero(pt, sizeof pt);
	free(sealed);
	return (text);
}

/*
 * Open a state's text as it came from the network. OAUTH_STATE_OK with *st
 * filled; OAUTH_STATE_EXPIRED when it was ours but its time is up; else
 * OAUTH_STATE_INVALID (malformed, altered, sealed for something else, or
 * by a key we do not hold). *st is cleared unless OK.
 */
int
oauth_state_open(const char *text, size_t len, time_t now,
    struct oauth_state *st)
{
	uint8_t		 bin[OAUTH_STATE_TEXT_MAX], *pt = NULL, *p, zero[32];
	uint64_t	 e = 0;
	size_t		 blen, plen = 0, n;
	int		 i, rc = OAUTH_STATE_INVALID;

	memset(st, 0, sizeof *st);
	memset(zero, 0, sizeof zero);
	if (len > OAUTH_STATE_TEXT_MAX || crypto_b64url_decode(text, len, bin,
	    sizeof bin, &blen) == -1)
		return (OAUTH_STATE_INVALID);
	if (crypto_unseal_for(OAUTH_STATE_PURPOSE, bin, blen, &pt, &plen) == -1)
		return (OAUTH_STATE_INVALID);
	if (plen < ST_HEAD || pt[0] != OAUTH_STATE_VERSION)
		goto out;
	p = pt + 1;
	st->flow = *p++;
	st->flags = *p++;
	if ((st->flow != OAUTH_FLOW_BROWSER && st->flow != OAUTH_FLOW_API &&
	    st->flow != OAUTH_FLOW_DEVICE) ||
	    (st->flags & ~(OAUTH_STATE_PKCE | OAUTH_STATE_CLIENT_PKCE)) != 0 ||
	    ((st->flags & OAUTH_STATE_CLIENT_PKCE) &&
	    st->flow != OAUTH_FLOW_API))
		goto out;
	for (i = 0; i < 8; i++)
		e = e << 8 | *p++;
	st->expires = (int64_t)e;
	memcpy(st->id, p, sizeof st->id);
	p += sizeof st->id;
	memcpy(st->nonce, p, sizeof st->nonce);
	p += sizeof st->nonce;
	memcpy(st->verifier, p, sizeof st->verifier);
	p += sizeof st->verifier;
	memcpy(st->redirect_hash, p, sizeof st->redirect_hash);
	p += sizeof st->redirect_hash;
	memcpy(st->challenge, p, sizeof st->challenge);
	p += sizeof st->challenge;
	if (st->flow == OAUTH_FLOW_DEVICE ?
	    memcmp(st->challenge, zero, sizeof zero) == 0 :
	    !(st->flags & OAUTH_STATE_CLIENT_PKCE) &&
	    memcmp(st->challenge, zero, sizeof zero) != 0)
		goto out;
	n = *p++;
	if (plen != ST_HEAD + n || !state_provider_ok((const char *)p, n))
		goto out;
	memcpy(st->provider, p, n);
	st->provider[n] = '\0';
	/* Never issued for longer: a clock or a key gone wrong. */
	if (st->expires > (int64_t)now + OAUTH_STATE_TTL + OAUTH_STATE_SLACK)
		goto out;
	rc = st->expires > (int64_t)now ? OAUTH_STATE_OK : OAUTH_STATE_EXPIRED;
out:
	if (rc != OAUTH_STATE_OK)
		memzero(st, sizeof *st);
	freezero(pt, plen + 1);
	return (rc);
}

/* The id as text: the browser flow's state parameter. */
void
oauth_state_id_text(const struct oauth_state *st,
    char buf[OAUTH_STATE_ID_TEXT])
{
	crypto_b64url_encode(st->id, sizeof st->id, buf, OAUTH_STATE_ID_TEXT);
}

/* The key of its oauth_states row once redeemed. */
void
oauth_state_key(const struct oauth_state *st, uint8_t out[CRYPTO_HASH_LEN])
{
	char	id[OAUTH_STATE_ID_TEXT];

	oauth_state_id_text(st, id);
	crypto_hash_token(id, out);
}

static void
starts_remove(struct start_bucket *b)
{
	HASH_DEL(starts.hash, b);
	TAILQ_REMOVE(&starts.lru, b, entry);
	free(b);
	starts.n--;
}

/*
 * Take one sign-in start from client's allowance of burst (refilled at
 * burst per OAUTH_STARTS_WINDOW seconds). 0, or -1 with *retry the seconds
 * until the next start is allowed.
 */
int
oauth_starts_take(const char *client, double now, int burst, long *retry)
{
	struct start_bucket	*b;
	double			 rate, full;

	if (!starts.init) {
		TAILQ_INIT(&starts.lru);
		starts.init = 1;
	}
	*retry = 0;
	if (burst < 1)
		burst = 1;
	full = (double)burst;
	rate = full / OAUTH_STARTS_WINDOW;
	/* Buckets untouched for a whole window are full: forget them. */
	while ((b = TAILQ_FIRST(&starts.lru)) != NULL &&
	    now - b->at >= OAUTH_STARTS_WINDOW)
		starts_remove(b);
	HASH_FIND_STR(starts.hash, client, b);
	if (b == NULL) {
		if (starts.n >= OAUTH_STARTS_MAX)
			starts_remove(TAILQ_FIRST(&starts.lru));
		b = xcalloc(1, sizeof *b);
		bsp_strlcpy(b->client, client, sizeof b->client);
		b->tokens = full;
		HASH_ADD_STR(starts.hash, client, b);
		starts.n++;
	} else {
		TAILQ_REMOVE(&starts.lru, b, entry);
		if (now > b->at)
			b->tokens += (now - b->at) * rate;
		if (b->tokens > full)
			b->tokens = full;
	}
	b->at = now;
	TAILQ_INSERT_TAIL(&starts.lru, b, entry);
	if (b->tokens < 1.0) {
		*retry = (long)((1.0 - b->tokens) / rate) + 1;
		return (-1);
	}
	b->tokens -= 1.0;
	return (0);
}

/* Client addresses with a bucket now. */
size_t
oauth_starts_count(void)
{
	return (starts.n);
}

void
oauth_starts_clear(void)
{
	struct start_bucket	*b;

	if (!starts.init)
		return;
	while ((b = TAILQ_FIRST(&starts.lru)) != NULL)
		starts_remove(b);
}
