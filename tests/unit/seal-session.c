/*
 * seal-session.c: seal a self-service browser session under a daemon's
 * KEK, for the integration tests of sessions this proxy could have issued
 * but that are no longer good (expired ones, which a test cannot wait an
 * hour for, or ones longer than self_service.session_ttl allows).
 *
 *	seal-session KEKFILE USER SID IAT EXP
 *
 * prints the sealed session (the cookie's value) and its form token,
 * separated by a space.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bsp.h"
#include "crypto.h"
#include "web-session.h"

static int
number(const char *s, long long *v)
{
	char	*end;

	*v = strtoll(s, &end, 10);
	return (*s != '\0' && *end == '\0' ? 0 : -1);
}

int
main(int argc, char **argv)
{
	struct crypto_err	 err;
	struct web_session	 ws;
	char			 csrf[WEB_SESSION_CSRF_TEXT], *text;
	long long		 iat, exp;

	if (argc != 6 || number(argv[4], &iat) == -1 ||
	    number(argv[5], &exp) == -1) {
		fprintf(stderr, "usage: seal-session KEKFILE USER SID IAT "
		    "EXP\n");
		return (1);
	}
	if (crypto_init() == -1 || crypto_kek_load(argv[1], &err) == -1) {
		fprintf(stderr, "seal-session: %s\n", err.msg);
		return (1);
	}
	if (web_session_new(&ws, argv[2], argv[3], (time_t)iat,
	    (time_t)exp) == -1 || (text = web_session_seal(&ws)) == NULL) {
		fprintf(stderr, "seal-session: cannot seal\n");
		return (1);
	}
	web_session_csrf(&ws, csrf);
	printf("%s %s\n", text, csrf);
	free(text);
	crypto_kek_unload();
	return (0);
}
