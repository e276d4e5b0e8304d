/*
 * test-web-session.c: the self-service page's sealed browser session and
 * its form token (web-session.c).
 *
 * A sealed session opens to what was sealed; every altered, cut,
 * lengthened or foreign text is refused, and so is one sealed for
 * another purpose (a sign-in state) or under another KEK; a session is
 * expired at its expiry and refused outright when it claims to live
 * longer than the configured lifetime or to start in the future;
 * plaintexts sealed under the right key but not in the documented
 * layout (built here from web-session.c's header comment, not with its
 * code) are refused, and one that follows it opens. The form token is the
 * session's own: another session's, a changed one, a cut one, an empty
 * one are refused.
 */

#include <sys/stat.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bsp.h"
#include "crypto.h"
#include "oauth-state.h"
#include "web-session.h"
#include "tap.h"

#define T0	1700000000
#define TTL	3600
#define USER	"idp:alice-0123"
#define SID	"AbCdEfGhIjKlMnOpQrStUv"

static char	kekdir[] = "/tmp/test-web-session.XXXXXX";

static void
load_kek(const char *name)
{
	struct crypto_err	err;
	char			path[256];

	crypto_kek_unload();
	snprintf(path, sizeof path, "%s/%s", kekdir, name);
	if (crypto_kek_load(path, &err) == -1) {
		printf("Bail out! KEK %s: %s\n", path, err.msg);
		exit(1);
	}
}

/* A plaintext in the documented layout, with its lengths as given. */
static size_t
layout(uint8_t *pt, int version, int64_t iat, int64_t exp, const char *sid,
    size_t sl, const char *user, size_t ul)
{
	uint8_t	*p = pt;
	int	 i;

	*p++ = (uint8_t)version;
	for (i = 7; i >= 0; i--)
		*p++ = (uint8_t)((uint64_t)iat >> (i * 8));
	for (i = 7; i >= 0; i--)
		*p++ = (uint8_t)((uint64_t)exp >> (i * 8));
	memset(p, 0x5a, WEB_SESSION_SECRET);
	p += WEB_SESSION_SECRET;
	*p++ = (uint8_t)sl;
	memcpy(p, sid, strlen(sid));
	p += strlen(sid);
	*p++ = (uint8_t)(ul >> 8);
	*p++ = (uint8_t)ul;
	memcpy(p, user, strlen(user));
	p += strlen(user);
	return ((size_t)(p - pt));
}

/* Seal a raw plaintext for the purpose and open it. */
static int
open_raw(const uint8_t *pt, size_t n, time_t now, struct web_session *ws)
{
	uint8_t	*box = NULL;
	size_t	 boxlen = 0;
	char	*text;
	int	 rc;

	if (crypto_seal_for(WEB_SESSION_PURPOSE, pt, n, &box, &boxlen) == -1)
		return (99);
	text = crypto_b64url_encode_alloc(box, boxlen);
	rc = web_session_open(text, strlen(text), now, TTL, ws);
	free(text);
	free(box);
	return (rc);
}

static void
test_roundtrip(void)
{
	struct web_session	 ws, got;
	char			*text;

	ok(web_session_new(&ws, USER, SID, T0, T0 + TTL) == 0, "a session");
	text = web_session_seal(&ws);
	ok(text != NULL && strlen(text) <= WEB_SESSION_TEXT_MAX,
	    "seals to %zu characters", text != NULL ? strlen(text) : 0);
	is_int(web_session_open(text, strlen(text), T0, TTL, &got),
	    WEB_SESSION_OK, "opens");
	ok(memcmp(&ws, &got, sizeof ws) == 0, "to what was sealed");
	is_str(got.user, USER, "its user");
	is_str(got.sid, SID, "its session");
	is_int(web_session_open(text, strlen(text), T0 + TTL - 1, TTL, &got),
	    WEB_SESSION_OK, "until the last second");
	is_int(web_session_open(text, strlen(text), T0 + TTL, TTL, &got),
	    WEB_SESSION_EXPIRED, "expired at its expiry");
	ok(got.user[0] == '\0' && got.exp == 0, "and nothing is left of it");
	is_int(web_session_open(text, strlen(text), T0, 600, &got),
	    WEB_SESSION_INVALID, "longer than the lifetime allowed now (the "
	    "setting was lowered): refused");
	is_int(web_session_open(text, strlen(text), T0 - 3600, TTL, &got),
	    WEB_SESSION_INVALID, "made in the future: refused");
	free(text);

	ok(web_session_new(&ws, "", SID, T0, T0 + TTL) == -1, "no user: none");
	ok(web_session_new(&ws, "idp:a\nb", SID, T0, T0 + TTL) == -1,
	    "a control character in the user: none");
	ok(web_session_new(&ws, USER, "a/b", T0, T0 + TTL) == -1,
	    "a session id outside base64url: none");
	ok(web_session_new(&ws, USER, SID, T0, T0) == -1,
	    "no lifetime: none");
}

static void
test_altered(void)
{
	struct web_session	 ws, got;
	uint8_t			*box = NULL;
	size_t			 boxlen = 0, i, n;
	char			*text, *t2, *big;
	int			 refused = 0;

	web_session_new(&ws, USER, SID, T0, T0 + TTL);
	text = web_session_seal(&ws);
	n = strlen(text);
	t2 = xstrdup(text);
	for (i = 0; i < n; i++) {
		t2[i] = t2[i] == 'A' ? 'B' : 'A';
		if (web_session_open(t2, n, T0, TTL, &got) ==
		    WEB_SESSION_INVALID)
			refused++;
		t2[i] = text[i];
	}
	is_int(refused, (int)n, "every one of %zu characters changed: refused",
	    n);
	is_int(web_session_open(text, n - 1, T0, TTL, &got),
	    WEB_SESSION_INVALID, "cut by one: refused");
	free(t2);
	xasprintf(&t2, "%sAA", text);
	is_int(web_session_open(t2, strlen(t2), T0, TTL, &got),
	    WEB_SESSION_INVALID, "lengthened: refused");
	free(t2);
	is_int(web_session_open("", 0, T0, TTL, &got), WEB_SESSION_INVALID,
	    "empty: refused");
	is_int(web_session_open("%%%%", 4, T0, TTL, &got),
	    WEB_SESSION_INVALID, "not base64url: refused");
	big = xmalloc(WEB_SESSION_TEXT_MAX + 5);
	memset(big, 'A', WEB_SESSION_TEXT_MAX + 4);
	big[WEB_SESSION_TEXT_MAX + 4] = '\0';
	is_int(web_session_open(big, WEB_SESSION_TEXT_MAX + 4, T0, TTL, &got),
	    WEB_SESSION_INVALID, "longer than any session: refused");
	free(big);

	load_kek("other");
	is_int(web_session_open(text, n, T0, TTL, &got), WEB_SESSION_INVALID,
	    "under another KEK: refused");
	load_kek("kek");
	is_int(web_session_open(text, n, T0, TTL, &got), WEB_SESSION_OK,
	    "and opens again under its own");

	/* The same bytes sealed for a sign-in state, or under the KEK. */
	ok(crypto_seal_for(OAUTH_STATE_PURPOSE, "x", 1, &box, &boxlen) == 0,
	    "a blob sealed for sign-in states");
	t2 = crypto_b64url_encode_alloc(box, boxlen);
	is_int(web_session_open(t2, strlen(t2), T0, TTL, &got),
	    WEB_SESSION_INVALID, "is not a session");
	free(t2);
	free(box);
	ok(crypto_seal("x", 1, &box, &boxlen) == 0, "a blob sealed under the "
	    "KEK itself");
	t2 = crypto_b64url_encode_alloc(box, boxlen);
	is_int(web_session_open(t2, strlen(t2), T0, TTL, &got),
	    WEB_SESSION_INVALID, "is not a session");
	free(t2);
	free(box);
	free(text);
}

static void
test_layout(void)
{
	struct web_session	 got;
	uint8_t			 pt[1024];
	size_t			 n;

	n = layout(pt, 1, T0, T0 + 60, SID, strlen(SID), USER, strlen(USER));
	is_int(open_raw(pt, n, T0, &got), WEB_SESSION_OK,
	    "the documented layout opens");
	ok(got.iat == T0 && got.exp == T0 + 60 && got.secret[0] == 0x5a &&
	    got.secret[31] == 0x5a && strcmp(got.sid, SID) == 0 &&
	    strcmp(got.user, USER) == 0, "to the documented fields");
	n = layout(pt, 2, T0, T0 + 60, SID, strlen(SID), USER, strlen(USER));
	is_int(open_raw(pt, n, T0, &got), WEB_SESSION_INVALID,
	    "version 2: refused");
	n = layout(pt, 1, T0, T0, SID, strlen(SID), USER, strlen(USER));
	is_int(open_raw(pt, n, T0 - 1, &got), WEB_SESSION_INVALID,
	    "expiring when made: refused");
	n = layout(pt, 1, T0, T0 + 60, SID, strlen(SID) + 1, USER,
	    strlen(USER));
	is_int(open_raw(pt, n, T0, &got), WEB_SESSION_INVALID,
	    "a session id length past its bytes: refused");
	n = layout(pt, 1, T0, T0 + 60, SID, strlen(SID), USER,
	    strlen(USER) - 1);
	is_int(open_raw(pt, n, T0, &got), WEB_SESSION_INVALID,
	    "a user length short of its bytes: refused");
	n = layout(pt, 1, T0, T0 + 60, SID, strlen(SID), USER,
	    strlen(USER) + 1);
	is_int(open_raw(pt, n, T0, &got), WEB_SESSION_INVALID,
	    "a user length past its bytes: refused");
	n = layout(pt, 1, T0, T0 + 60, "", 0, USER, strlen(USER));
	is_int(open_raw(pt, n, T0, &got), WEB_SESSION_INVALID,
	    "no session id: refused");
	n = layout(pt, 1, T0, T0 + 60, SID, strlen(SID), "", 0);
	is_int(open_raw(pt, n, T0, &got), WEB_SESSION_INVALID,
	    "no user: refused");
	n = layout(pt, 1, T0, T0 + 60, "a.b", 3, USER, strlen(USER));
	is_int(open_raw(pt, n, T0, &got), WEB_SESSION_INVALID,
	    "a session id outside base64url: refused");
	n = layout(pt, 1, T0, T0 + 60, SID, strlen(SID), "idp:\x01", 5);
	is_int(open_raw(pt, n, T0, &got), WEB_SESSION_INVALID,
	    "a control character in the user: refused");
	n = layout(pt, 1, T0, T0 + 60, SID, strlen(SID), USER, strlen(USER));
	is_int(open_raw(pt, n - 1, T0, &got), WEB_SESSION_INVALID,
	    "a byte short: refused");
	pt[n] = 'x';
	is_int(open_raw(pt, n + 1, T0, &got), WEB_SESSION_INVALID,
	    "a byte more: refused");
}

static void
test_csrf(void)
{
	struct web_session	 a, b;
	char			 ta[WEB_SESSION_CSRF_TEXT];
	char			 tb[WEB_SESSION_CSRF_TEXT];
	char			 t2[WEB_SESSION_CSRF_TEXT + 1];
	char			*text;

	web_session_new(&a, USER, SID, T0, T0 + TTL);
	web_session_new(&b, USER, SID, T0, T0 + TTL);
	web_session_csrf(&a, ta);
	web_session_csrf(&b, tb);
	is_int((int)strlen(ta), 43, "a form token of 43 characters");
	ok(web_session_csrf_ok(&a, ta), "is its session's");
	ok(!web_session_csrf_ok(&b, ta), "not another's, of the same user and "
	    "session");
	ok(strcmp(ta, tb) != 0, "which has its own");
	text = web_session_seal(&a);
	ok(strstr(text, ta) == NULL, "and is not in the cookie");
	free(text);
	memcpy(t2, ta, sizeof ta);
	t2[10] = t2[10] == 'A' ? 'B' : 'A';
	ok(!web_session_csrf_ok(&a, t2), "changed: refused");
	memcpy(t2, ta, sizeof ta);
	t2[42] = '\0';
	ok(!web_session_csrf_ok(&a, t2), "cut: refused");
	memcpy(t2, ta, sizeof ta);
	t2[43] = 'A';
	t2[44] = '\0';
	ok(!web_session_csrf_ok(&a, t2), "lengthened: refused");
	ok(!web_session_csrf_ok(&a, ""), "empty: refused");
	ok(!web_session_csrf_ok(&a, NULL), "missing: refused");
}

int
main(void)
{
	char	path[256];

	if (crypto_init() == -1 || mkdtemp(kekdir) == NULL) {
		printf("Bail out! set-up\n");
		return (1);
	}
	load_kek("kek");
	test_roundtrip();
	test_altered();
	test_layout();
	test_csrf();
	crypto_kek_unload();
	snprintf(path, sizeof path, "%s/kek", kekdir);
	unlink(path);
	snprintf(path, sizeof path, "%s/other", kekdir);
	unlink(path);
	rmdir(kekdir);
	return (tap_done());
}
