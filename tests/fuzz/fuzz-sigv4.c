/*
 * fuzz-sigv4.c: libFuzzer target for SigV4 canonicalisation and signing.
 *
 * The whole input is canonicalised as a wire path and as a raw query. It
 * is then read as a request, one field a line: method, path, query, host,
 * region, session token, then "Name: value" header lines up to an empty
 * line, and the rest is the payload; the request is signed and its
 * canonical form built. Oracles that abort: a canonical URI holds only
 * unreserved bytes, '/' and upper-case %XX, with no empty, "." or ".."
 * segment; a canonical query is sorted and canonicalises to itself;
 * nothing under the ceiling is refused as too long; sigv4_sign() and
 * sigv4_canonical() agree on what they refuse; a signature is 64 hex
 * digits and no output header holds CR or LF; signing twice (the second
 * time from the key cache) gives the same signature.
 */

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bsp.h"
#include "sigv4.h"

#define FZ_FIELDS	6

int		 LLVMFuzzerTestOneInput(const uint8_t *, size_t);
static int	 fz_pct_ok(const char *, size_t);
static int	 fz_keycmp(const char *, const char *);
static void	 fz_uri(const char *, size_t);
static void	 fz_query(const char *, size_t);
static void	 fz_sign(char *, size_t);

/* Unreserved bytes, '/' (if slash) and %XX with upper-case hex only. */
static int
fz_pct_ok(const char *s, size_t slash)
{
	for (; *s != '\0'; s++) {
		if (isalnum((unsigned char)*s) || strchr("-_.~", *s) != NULL ||
		    (slash && *s == '/'))
			continue;
		if (*s != '%' || !isxdigit((unsigned char)s[1]) ||
		    !isxdigit((unsigned char)s[2]) ||
		    islower((unsigned char)s[1]) ||
		    islower((unsigned char)s[2]))
			return (0);
		s += 2;
	}
	return (1);
}

static void
fz_uri(const char *path, size_t len)
{
	char	*u, *seg, *p;
	size_t	 n;

	if ((u = sigv4_canonical_uri(path)) == NULL) {
		if (len * 3 + 2 < SIGV4_MAX_CANONICAL)
			abort();
		return;
	}
	if (!fz_pct_ok(u, 1))
		abort();
	/* An absolute or empty path gives an absolute URI. */
	if ((*path == '/' || *path == '\0') && *u != '/')
		abort();
	/* No empty, "." or ".." segment is left. */
	p = u + (*u == '/');
	while (*p != '\0') {
		n = strcspn(p, "/");
		seg = p;
		if (n == 0 || (n == 1 && seg[0] == '.') ||
		    (n == 2 && seg[0] == '.' && seg[1] == '.'))
			abort();
		p += n;
		if (*p == '/')
			p++;
	}
	free(u);
}

/* strcmp() of two keys that end at their '='. */
static int
fz_keycmp(const char *a, const char *b)
{
	size_t	la = strcspn(a, "="), lb = strcspn(b, "=");
	int	r;

	if ((r = memcmp(a, b, la < lb ? la : lb)) != 0)
		return (r);
	return (la < lb ? -1 : la > lb);
}

static void
fz_query(const char *query, size_t len)
{
	char	*q, *again, *prev = NULL, *p, *amp;

	if ((q = sigv4_canonical_query(query)) == NULL) {
		if (len * 3 + 2 < SIGV4_MAX_CANONICAL)
			abort();
		return;
	}
	/* Every pair is key=value, both canonical, in sorted order. */
	for (p = q; *p != '\0'; p = amp + 1) {
		if ((amp = strchr(p, '&')) != NULL)
			*amp = '\0';
		if (strchr(p, '=') == NULL || strchr(strchr(p, '=') + 1,
		    '=') != NULL)
			abort();
		*strchr(p, '=') = '\0';
		if (!fz_pct_ok(p, 0) || !fz_pct_ok(p + strlen(p) + 1, 0))
			abort();
		p[strlen(p)] = '=';
		if (prev != NULL && fz_keycmp(prev, p) > 0)
			abort();
		prev = p;
		if (amp == NULL)
			break;
		*amp = '&';
	}
	/* Canonical text is a fixed point. */
	again = sigv4_canonical_query(q);
	if (again == NULL || strcmp(again, q) != 0)
		abort();
	free(again);
	free(q);
}

static void
fz_sign(char *buf, size_t len)
{
	struct sigv4_header	 hdrs[SIGV4_MAX_HEADERS + 2];
	struct sigv4_request	 req;
	struct sigv4_creds	 creds;
	struct sigv4_result	 res, res2;
	char			*field[FZ_FIELDS], *p = buf, *nl, *colon;
	char			*creq, *sts;
	const char		*err, *err2;
	size_t			 i, n = 0;
	int			 rv, rv2;

	for (i = 0; i < FZ_FIELDS; i++) {
		field[i] = p;
		if ((nl = strchr(p, '\n')) == NULL) {
			if (i < FZ_FIELDS - 1)
				return;
			p += strlen(p);
			break;
		}
		*nl = '\0';
		p = nl + 1;
	}
	while (*p != '\0' && n < nitems(hdrs)) {
		if ((nl = strchr(p, '\n')) != NULL)
			*nl = '\0';
		if (*p == '\0') {
			p = nl != NULL ? nl + 1 : p;
			break;
		}
		hdrs[n].name = p;
		if ((colon = strchr(p, ':')) != NULL) {
			*colon = '\0';
			hdrs[n].value = colon + 1;
		} else
			hdrs[n].value = "";
		n++;
		p = nl != NULL ? nl + 1 : p + strlen(p);
	}

	memset(&req, 0, sizeof req);
	req.method = field[0];
	req.path = field[1];
	req.query = field[2];
	req.host = field[3];
	req.region = field[4];
	req.service = "bedrock";
	req.headers = n != 0 ? hdrs : NULL;
	req.nheaders = n;
	req.payload = p;
	req.payload_len = (size_t)(buf + len - p);
	req.when = 1440938160 + (time_t)(len % 4) * 86400;
	req.flags = (len & 1) ? SIGV4_CONTENT_SHA256 : 0;
	creds.access_key_id = "AKIDEXAMPLE";
	creds.secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
	creds.session_token = field[5];

	rv = sigv4_sign(&req, &creds, &res, &err);
	rv2 = sigv4_canonical(&req, &creds, &creq, &sts, &err2);
	if (rv2 == 0) {
		if (creq == NULL || sts == NULL)
			abort();
		free(creq);
		free(sts);
	} else if (err2 == NULL || creq != NULL || sts != NULL)
		abort();
	if (rv == -1) {
		if (err == NULL || (rv2 == 0 &&
		    strcmp(err, "authorization header too long") != 0))
			abort();
		return;
	}
	if (rv2 != 0 || err != NULL || res.nout < 2 || res.nout > 4 ||
	    strlen(res.signature) != 64 ||
	    strspn(res.signature, "0123456789abcdef") != 64)
		abort();
	for (i = 0; i < res.nout; i++) {
		if (strpbrk(res.out[i].value, "\r\n") != NULL)
			abort();
	}
	if (sigv4_sign(&req, &creds, &res2, &err) != 0 ||
	    strcmp(res.authorization, res2.authorization) != 0)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	*s;
	size_t	 len;

	if (size > 64 * 1024)
		return (0);
	s = xmemdup0(data, size);
	len = strlen(s);
	fz_uri(s, len);
	fz_query(s, len);
	if (len == size)
		fz_sign(s, size);
	free(s);
	return (0);
}
