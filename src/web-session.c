/*
 * web-session.c: the self-service page's browser session, sealed for the
 * browser to carry in a cookie, and the form token that goes with it.
 *
 * A browser sign-in ends with a session (token family) and, for the
 * self-service page (route-self.c), this: the user's id, the family's id,
 * when it was made and until when it holds (self_service.session_ttl, at
 * most the family's own end), and 32 random bytes for its form tokens,
 * sealed under a key crypto.c derives from the KEK for this purpose
 * alone. Nothing is stored: any daemon holding the same KEK opens it, and
 * it ends when its family does (the routes check the family on every
 * request, as they do a token's). The plaintext (version 1) is
 *
 *	version iat[8] exp[8] secret[32] sid_len sid[sid_len]
 *	user_len[2] user[user_len]
 *
 * with the times big-endian Unix times and the lengths big-endian. Opening
 * refuses anything but exactly that.
 *
 * The form token is the base64url SHA-256 of a label and the secret: one
 * per browser session, unknown to anyone who cannot read the page (the
 * cookie is HttpOnly and sealed), checked in constant time.
 */

#include <stdlib.h>
#include <string.h>

#include "bsp.h"
#include "crypto.h"
#include "web-session.h"

#define WS_HEAD		(1 + 8 + 8 + WEB_SESSION_SECRET + 1 + 2)
#define WS_MAX		(WS_HEAD + WEB_SESSION_SID_MAX + WEB_SESSION_USER_MAX)
#define WS_CSRF_LABEL	"bsp-web-csrf-v1"

static int
ws_sid_ok(const char *s, size_t n)
{
	size_t	i;

	if (n == 0 || n > WEB_SESSION_SID_MAX)
		return (0);
	for (i = 0; i < n; i++) {
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' &&
		    s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
		    s[i] == '_' || s[i] == '-'))
			return (0);
	}
	return (1);
}

/* A user's id: 1 to WEB_SESSION_USER_MAX bytes, no control characters. */
static int
ws_user_ok(const char *s, size_t n)
{
	size_t	i;

	if (n == 0 || n > WEB_SESSION_USER_MAX)
		return (0);
	for (i = 0; i < n; i++) {
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
			return (0);
	}
	return (1);
}

static void
ws_put64(uint8_t **p, int64_t v)
{
	uint64_t	u = (uint64_t)v;
	int		i;

	for (i = 7; i >= 0; i--)
		*(*p)++ = (uint8_t)(u >> (i * 8));
}

static int64_t
ws_get64(const uint8_t **p)
{
	uint64_t	u = 0;
	int		i;

	for (i = 0; i < 8; i++)
		u = u << 8 | *(*p)++;
	return ((int64_t)u);
}

/*
 * A new session for user in family sid, from now until exp, with a fresh
 * secret. 0, or -1 if the ids cannot be carried or exp is not after now.
 */
int
web_session_new(struct web_session *ws, const char *user, const char *sid,
    time_t now, time_t exp)
{
	memset(ws, 0, sizeof *ws);
	if (user == NULL || sid == NULL || !ws_user_ok(user, strlen(user)) ||
	    !ws_sid_ok(sid, strlen(sid)) || exp <= now)
		return (-1);
	ws->iat = (int64_t)now;
	ws->exp = (int64_t)exp;
	crypto_random(ws->secret, sizeof ws->secret);
	memcpy(ws->sid, sid, strlen(sid) + 1);
	memcpy(ws->user, user, strlen(user) + 1);
	return (0);
}

/* Seal a session: its base64url text (allocated), or NULL. */
char *
web_session_seal(const struct web_session *ws)
{
	uint8_t		 pt[WS_MAX], *p = pt, *sealed = NULL;
	size_t		 sl = strlen(ws->sid), ul = strlen(ws->user), slen = 0;
	char		*text = NULL;

	if (!ws_sid_ok(ws->sid, sl) || !ws_user_ok(ws->user, ul) ||
	    ws->exp <= ws->iat)
		return (NULL);
	*p++ = WEB_SESSION_VERSION;
	ws_put64(&p, ws->iat);
	ws_put64(&p, ws->exp);
	memcpy(p, ws->secret, sizeof ws->secret);
	p += sizeof ws->secret;
	*p++ = (uint8_t)sl;
	memcpy(p, ws->sid, sl);
	p += sl;
	*p++ = (uint8_t)(ul >> 8);
	*p++ = (uint8_t)ul;
	memcpy(p, ws->user, ul);
	p += ul;
	if (crypto_seal_for(WEB_SESSION_PURPOSE, pt, (size_t)(p - pt), &sealed,
	    &slen) == 0)
		text = crypto_b64url_encode_alloc(sealed, slen);
	memzero(pt, sizeof pt);
	free(sealed);
	return (text);
}

/*
 * Open a session's text as it came from the network. WEB_SESSION_OK with
 * *ws filled; WEB_SESSION_EXPIRED when it was ours but its time is up;
 * else WEB_SESSION_INVALID (malformed, altered, sealed for something
 * else, by a key we do not hold, or claiming to live longer than max_ttl
 * seconds from now). *ws is cleared unless OK.
 */
int
web_session_open(const char *text, size_t len, time_t now, long long max_ttl,
    struct web_session *ws)
{
	uint8_t		 bin[WEB_SESSION_TEXT_MAX], *pt = NULL;
	const uint8_t	*p;
	size_t		 blen, plen = 0, sl, ul;
	int		 rc = WEB_SESSION_INVALID;

	memset(ws, 0, sizeof *ws);
	if (len > WEB_SESSION_TEXT_MAX || crypto_b64url_decode(text, len, bin,
	    sizeof bin, &blen) == -1)
		return (WEB_SESSION_INVALID);
	if (crypto_unseal_for(WEB_SESSION_PURPOSE, bin, blen, &pt, &plen) == -1)
		return (WEB_SESSION_INVALID);
	if (plen < WS_HEAD || pt[0] != WEB_SESSION_VERSION)
		goto out;
	p = pt + 1;
	ws->iat = ws_get64(&p);
	ws->exp = ws_get64(&p);
	memcpy(ws->secret, p, sizeof ws->secret);
	p += sizeof ws->secret;
	sl = *p++;
	if (plen < WS_HEAD + sl || !ws_sid_ok((const char *)p, sl))
		goto out;
	memcpy(ws->sid, p, sl);
	ws->sid[sl] = '\0';
	p += sl;
	ul = (size_t)p[0] << 8 | p[1];
	p += 2;
	if (plen != WS_HEAD + sl + ul || !ws_user_ok((const char *)p, ul))
		goto out;
	memcpy(ws->user, p, ul);
	ws->user[ul] = '\0';
	/* Never issued for longer, nor in the future: a clock or a key. */
	if (max_ttl < 0 || ws->exp <= ws->iat ||
	    ws->iat > (int64_t)now + WEB_SESSION_SLACK ||
	    ws->exp > (int64_t)now + max_ttl + WEB_SESSION_SLACK)
		goto out;
	rc = ws->exp > (int64_t)now ? WEB_SESSION_OK : WEB_SESSION_EXPIRED;
out:
	if (rc != WEB_SESSION_OK)
		memzero(ws, sizeof *ws);
	freezero(pt, plen + 1);
	return (rc);
}

/* The session's form token as text. */
void
web_session_csrf(const struct web_session *ws,
    char out[WEB_SESSION_CSRF_TEXT])
{
	uint8_t	in[sizeof WS_CSRF_LABEL + WEB_SESSION_SECRET];
	uint8_t	h[CRYPTO_HASH_LEN];

	memcpy(in, WS_CSRF_LABEL, sizeof WS_CSRF_LABEL);
	memcpy(in + sizeof WS_CSRF_LABEL, ws->secret, sizeof ws->secret);
	crypto_sha256(in, sizeof in, h);
	crypto_b64url_encode(h, sizeof h, out, WEB_SESSION_CSRF_TEXT);
	memzero(in, sizeof in);
	memzero(h, sizeof h);
}

/* Is this the session's form token? In constant time. */
int
web_session_csrf_ok(const struct web_session *ws, const char *token)
{
	char	want[WEB_SESSION_CSRF_TEXT];
	int	ok;

	if (token == NULL || strlen(token) != WEB_SESSION_CSRF_TEXT - 1)
		return (0);
	web_session_csrf(ws, want);
	ok = crypto_memeq(want, token, WEB_SESSION_CSRF_TEXT - 1);
	memzero(want, sizeof want);
	return (ok);
}
