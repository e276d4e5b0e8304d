/*
 * fuzz-oauth-state.c: libFuzzer target for opening sealed sign-in states,
 * the text that arrives in the login cookie and in the API flow's state.
 *
 * Inputs start with a mode byte. 'P': the rest is a plaintext, sealed with
 * the states' key first, so that the fuzzer reaches the layout checks
 * behind the MAC; anything else: the rest is the text as it comes from the
 * network. States are opened at a fixed time under a fixed KEK (written to
 * a temporary file at start, as the daemon's is). Oracles that abort: a
 * state that opens has a known flow (browser, API, device approval) and
 * flags, a client challenge only in the API flow, a provider name of [a-z0-9_-]{1,32}, an expiry after the
 * time it was opened at and no further than any state is issued for; it
 * seals and opens again to the same state; and its text never exceeds
 * what the daemon accepts.
 */

#include <sys/stat.h>

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bsp.h"
#include "crypto.h"
#include "oauth-state.h"

#define FZ_NOW		1700000000
#define FZ_MAX		4096

int		 LLVMFuzzerTestOneInput(const uint8_t *, size_t);
static void	 fz_init(void);
static void	 fz_check(const struct oauth_state *);

/* A fixed KEK, as public as the other fuzz targets' keys. */
static const char	fz_kek[] = "bsp-fuzz-oauth-state-kek-0123456";

static void
fz_init(void)
{
	struct crypto_err	 err;
	char			 dir[] = "/tmp/fuzz-oauth-state.XXXXXX";
	char			 path[64];
	int			 fd;

	if (crypto_init() == -1 || mkdtemp(dir) == NULL)
		abort();
	snprintf(path, sizeof path, "%s/kek", dir);
	if ((fd = open(path, O_WRONLY|O_CREAT|O_EXCL, 0600)) == -1 ||
	    write(fd, fz_kek, 32) != 32 || close(fd) == -1)
		abort();
	if (crypto_kek_load(path, &err) == -1)
		abort();
	unlink(path);
	rmdir(dir);
}

static void
fz_check(const struct oauth_state *st)
{
	struct oauth_state	 again;
	size_t			 i, n = strlen(st->provider);
	char			*text;

	if (st->flow != OAUTH_FLOW_BROWSER && st->flow != OAUTH_FLOW_API &&
	    st->flow != OAUTH_FLOW_DEVICE)
		abort();
	if ((st->flags & ~(OAUTH_STATE_PKCE | OAUTH_STATE_CLIENT_PKCE)) != 0 ||
	    ((st->flags & OAUTH_STATE_CLIENT_PKCE) &&
	    st->flow != OAUTH_FLOW_API))
		abort();
	if (n == 0 || n > OAUTH_STATE_PROVIDER_MAX)
		abort();
	for (i = 0; i < n; i++) {
		if (strchr("abcdefghijklmnopqrstuvwxyz0123456789_-",
		    st->provider[i]) == NULL)
			abort();
	}
	if (st->expires <= FZ_NOW || st->expires > (int64_t)FZ_NOW +
	    OAUTH_STATE_TTL + OAUTH_STATE_SLACK)
		abort();
	if ((text = oauth_state_seal(st)) == NULL ||
	    strlen(text) > OAUTH_STATE_TEXT_MAX)
		abort();
	if (oauth_state_open(text, strlen(text), FZ_NOW, &again) !=
	    OAUTH_STATE_OK || memcmp(st, &again, sizeof again) != 0)
		abort();
	free(text);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int		 inited;
	struct oauth_state	 st;
	uint8_t			*sealed;
	size_t			 slen;
	char			*text;
	int			 rc;

	if (!inited) {
		fz_init();
		inited = 1;
	}
	if (size == 0 || size > FZ_MAX)
		return (0);
	if (data[0] == 'P') {
		if (crypto_seal_for(OAUTH_STATE_PURPOSE, data + 1, size - 1,
		    &sealed, &slen) == -1)
			abort();
		text = crypto_b64url_encode_alloc(sealed, slen);
		free(sealed);
	} else
		text = xmemdup0(data + 1, size - 1);
	rc = oauth_state_open(text, strlen(text), FZ_NOW, &st);
	if (rc == OAUTH_STATE_OK)
		fz_check(&st);
	else if (rc != OAUTH_STATE_INVALID && rc != OAUTH_STATE_EXPIRED)
		abort();
	free(text);
	return (0);
}
