/*
 * web-session.h: the self-service page's browser session, sealed for the
 * browser to carry in a cookie, and the form token that goes with it.
 */

#ifndef WEB_SESSION_H
#define WEB_SESSION_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define WEB_SESSION_VERSION	1	/* first byte of the plaintext */
#define WEB_SESSION_PURPOSE	"bsp-web-session-v1"	/* its sealing key */
#define WEB_SESSION_SLACK	60	/* clocks of daemons sharing a KEK */
#define WEB_SESSION_SECRET	32	/* the form token's secret */
#define WEB_SESSION_SID_MAX	64	/* a token family's id */
#define WEB_SESSION_USER_MAX	512	/* a user's id, provider:subject */
#define WEB_SESSION_TEXT_MAX	1024	/* base64url of a sealed session */
#define WEB_SESSION_CSRF_TEXT	44	/* base64url of a form token, NUL */

/*
 * A signed-in browser: who (the user's id), in which session (token
 * family: when it ends, so does this), since and until when, and the
 * secret its form tokens are made from.
 */
struct web_session {
	int64_t		iat;			/* Unix time */
	int64_t		exp;
	uint8_t		secret[WEB_SESSION_SECRET];
	char		sid[WEB_SESSION_SID_MAX + 1];
	char		user[WEB_SESSION_USER_MAX + 1];
};

/* web_session_open() results */
#define WEB_SESSION_OK		0
#define WEB_SESSION_INVALID	-1	/* not ours, altered, or malformed */
#define WEB_SESSION_EXPIRED	-2

int	 web_session_new(struct web_session *, const char *, const char *,
	     time_t, time_t);
char	*web_session_seal(const struct web_session *);
int	 web_session_open(const char *, size_t, time_t, long long,
	     struct web_session *);
void	 web_session_csrf(const struct web_session *,
	     char [WEB_SESSION_CSRF_TEXT]);
int	 web_session_csrf_ok(const struct web_session *, const char *);

#endif /* WEB_SESSION_H */
