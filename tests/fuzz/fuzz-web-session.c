/*
 * fuzz-web-session.c: libFuzzer target for opening the self-service page's
 * sealed browser sessions, the text that arrives in its cookie, and for
 * checking form tokens against them.
 *
 * Inputs start with a mode byte. 'P': the rest is a plaintext, sealed with
 * the sessions' key first, so that the fuzzer reaches the layout checks
 * behind the MAC; anything else: the rest is the text as it comes from the
 * network. Sessions are opened at a fixed time with a fixed lifetime under
 * a fixed KEK (written to a temporary file at start, as the daemon's is).
 * Oracles that abort: a session that opens has a user of 1 to
 * WEB_SESSION_USER_MAX bytes without control characters, a session id of
 * base64url characters, an expiry after the time it was opened at and no
 * further than the lifetime allows, and was not made in the future; it
 * seals and opens again to the same session; its text never exceeds what
 * the daemon accepts; its own form token is accepted and the input (as a
 * token) only if it is that token.
 */

#include <sys/stat.h>

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bsp.h"
#include "crypto.h"
#include "web-session.h"

#define FZ_NOW		1700000000
#define FZ_TTL		3600
#define FZ_MAX		4096

int		 LLVMFuzzerTestOneInput(const uint8_t *, size_t);
static void	 fz_init(void);
static void	 fz_check(const struct web_session *, const char *);

/* A fixed KEK, as public as the other fuzz targets' keys. */
static const char	fz_kek[] = "bsp-fuzz-web-session-kek-0123456";

static void
fz_init(void)
{
	struct crypto_err	 err;
	char			 dir[] = "/tmp/fuzz-web-session.XXXXXX";
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
fz_check(const struct web_session *ws, const char *input)
{
	struct web_session	 again;
	char			 csrf[WEB_SESSION_CSRF_TEXT], *text;
	size_t			 i, n;

	n = strlen(ws->user);
	if (n == 0 || n > WEB_SESSION_USER_MAX)
		abort();
	for (i = 0; i < n; i++) {
		if ((unsigned char)ws->user[i] < 0x20 ||
		    (unsigned char)ws->user[i] == 0x7f)
			abort();
	}
	n = strlen(ws->sid);
	if (n == 0 || n > WEB_SESSION_SID_MAX ||
	    strspn(ws->sid, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789_-") != n)
		abort();
	if (ws->exp <= FZ_NOW ||
	    ws->exp > (int64_t)FZ_NOW + FZ_TTL + WEB_SESSION_SLACK ||
	    ws->iat > (int64_t)FZ_NOW + WEB_SESSION_SLACK ||
	    ws->iat >= ws->exp)
		abort();
	if ((text = web_session_seal(ws)) == NULL ||
	    strlen(text) > WEB_SESSION_TEXT_MAX)
		abort();
	if (web_session_open(text, strlen(text), FZ_NOW, FZ_TTL, &again) !=
	    WEB_SESSION_OK || memcmp(ws, &again, sizeof again) != 0)
		abort();
	free(text);
	web_session_csrf(ws, csrf);
	if (!web_session_csrf_ok(ws, csrf))
		abort();
	if (web_session_csrf_ok(ws, input) != (strcmp(input, csrf) == 0))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int		 inited;
	struct web_session	 ws;
	uint8_t			*sealed;
	size_t			 slen;
	char			*text, *input;
	int			 rc;

	if (!inited) {
		fz_init();
		inited = 1;
	}
	if (size == 0 || size > FZ_MAX)
		return (0);
	input = xmemdup0(data + 1, size - 1);
	if (data[0] == 'P') {
		if (crypto_seal_for(WEB_SESSION_PURPOSE, data + 1, size - 1,
		    &sealed, &slen) == -1)
			abort();
		text = crypto_b64url_encode_alloc(sealed, slen);
		free(sealed);
	} else
		text = xstrdup(input);
	rc = web_session_open(text, strlen(text), FZ_NOW, FZ_TTL, &ws);
	if (rc == WEB_SESSION_OK)
		fz_check(&ws, input);
	else if (rc != WEB_SESSION_INVALID && rc != WEB_SESSION_EXPIRED)
		abort();
	free(text);
	free(input);
	return (0);
}
