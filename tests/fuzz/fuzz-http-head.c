/*
 * fuzz-http-head.c: libFuzzer target for the strict request-head reader
 * (src/http-head.c) that the server runs before evhttp sees a head.
 *
 * The input is what a client sent. Oracles that abort, checked by an
 * independent line-by-line reading of the same bytes: http_head_end ends
 * at the first empty line and nowhere earlier; a refused head has a status
 * of 400, 431, 501 or 505 and a reason; an accepted head has a token
 * method and a printable target, no line that begins with whitespace, no
 * name with whitespace or other non-token bytes, no bare CR, NUL or other
 * control byte, at most one Content-Length (digits only, the value read),
 * Transfer-Encoding (exactly "chunked"), Host, Authorization and
 * X-Api-Key, never Content-Length and Transfer-Encoding together, and
 * spans that lie inside the input and say what the fields say.
 */

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http-head.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define FZ_CHECK(c) do {						\
	if (!(c)) {							\
		fprintf(stderr, "oracle failed: %s (line %d)\n", #c,	\
		    __LINE__);						\
		abort();						\
	}								\
} while (0)

static int
fz_tchar(unsigned char c)
{
	return (isalnum(c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c)));
}

static int
fz_inside(const struct http_span *s, const char *buf, size_t len)
{
	return (s->p == NULL || (s->p >= buf && s->p + s->len <= buf + len));
}

/* Trim OWS. */
static void
fz_trim(const char **p, size_t *len)
{
	while (*len > 0 && (**p == ' ' || **p == '\t')) {
		(*p)++;
		(*len)--;
	}
	while (*len > 0 && ((*p)[*len - 1] == ' ' || (*p)[*len - 1] == '\t'))
		(*len)--;
}

static void
fz_accepted(const char *buf, size_t len, const struct http_head *h)
{
	const char	*p = buf, *end = buf + len, *nl, *colon, *v;
	size_t		 llen, nlen, vlen, i;
	int		 first = 1, ncl = 0, nte = 0, nhost = 0, nauth = 0;
	int		 nkey = 0;
	uint64_t	 cl = 0;

	FZ_CHECK(fz_inside(&h->method, buf, len));
	FZ_CHECK(fz_inside(&h->target, buf, len));
	FZ_CHECK(fz_inside(&h->authorization, buf, len));
	FZ_CHECK(fz_inside(&h->api_key, buf, len));
	FZ_CHECK(h->method.len > 0 && h->target.len > 0);
	for (i = 0; i < h->method.len; i++)
		FZ_CHECK(fz_tchar((unsigned char)h->method.p[i]));
	for (i = 0; i < h->target.len; i++)
		FZ_CHECK((unsigned char)h->target.p[i] > 0x20 &&
		    (unsigned char)h->target.p[i] < 0x7f);
	FZ_CHECK(h->path.len <= h->target.len);
	FZ_CHECK(h->minor == 0 || h->minor == 1);
	FZ_CHECK(h->nfields <= HTTP_HEAD_MAX_FIELDS);

	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		FZ_CHECK(nl != NULL);
		llen = (size_t)(nl - p);
		if (llen > 0 && p[llen - 1] == '\r')
			llen--;
		for (i = 0; i < llen; i++)
			FZ_CHECK(p[i] != '\r' && p[i] != '\0');
		if (first) {
			first = 0;
			p = nl + 1;
			continue;
		}
		if (llen == 0) {
			FZ_CHECK(nl + 1 == end);
			break;
		}
		FZ_CHECK(p[0] != ' ' && p[0] != '\t');
		colon = memchr(p, ':', llen);
		FZ_CHECK(colon != NULL && colon > p);
		nlen = (size_t)(colon - p);
		for (i = 0; i < nlen; i++)
			FZ_CHECK(fz_tchar((unsigned char)p[i]));
		v = colon + 1;
		vlen = llen - nlen - 1;
		fz_trim(&v, &vlen);
		for (i = 0; i < vlen; i++)
			FZ_CHECK((unsigned char)v[i] >= 0x20 || v[i] == '\t');
		if (nlen == 14 && strncasecmp(p, "Content-Length", 14) == 0) {
			ncl++;
			FZ_CHECK(vlen > 0 && vlen <= 19);
			for (i = 0, cl = 0; i < vlen; i++) {
				FZ_CHECK(isdigit((unsigned char)v[i]));
				cl = cl * 10 + (uint64_t)(v[i] - '0');
			}
		} else if (nlen == 17 &&
		    strncasecmp(p, "Transfer-Encoding", 17) == 0) {
			nte++;
			FZ_CHECK(vlen == 7 && strncasecmp(v, "chunked", 7) == 0);
		} else if (nlen == 4 && strncasecmp(p, "Host", 4) == 0)
			nhost++;
		else if (nlen == 13 && strncasecmp(p, "Authorization", 13) ==
		    0) {
			nauth++;
			FZ_CHECK(h->authorization.p == v &&
			    h->authorization.len == vlen);
		} else if (nlen == 9 && strncasecmp(p, "X-Api-Key", 9) == 0) {
			nkey++;
			FZ_CHECK(h->api_key.p == v && h->api_key.len == vlen);
		}
		p = nl + 1;
	}
	FZ_CHECK(ncl <= 1 && nte <= 1 && nhost <= 1 && nauth <= 1 &&
	    nkey <= 1);
	FZ_CHECK(!(ncl && nte));
	FZ_CHECK(h->has_length == ncl && h->chunked == nte);
	FZ_CHECK(!ncl || h->length == cl);
	FZ_CHECK((h->authorization.p != NULL) == nauth);
	FZ_CHECK((h->api_key.p != NULL) == nkey);
	FZ_CHECK(http_head_has_body(h) == (nte || (ncl && cl > 0)));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char		*buf = (const char *)data;
	struct http_head	 h;
	const char		*why = NULL;
	size_t			 end;
	int			 rc;

	end = http_head_end(buf, size);
	if (end == 0)
		return (0);
	FZ_CHECK(end <= size && buf[end - 1] == '\n');
	FZ_CHECK(end >= 2 && (buf[end - 2] == '\n' || (end >= 3 &&
	    buf[end - 2] == '\r' && buf[end - 3] == '\n')));
	/* Nowhere earlier. */
	FZ_CHECK(http_head_end(buf, end - 1) == 0);

	rc = http_head_parse(buf, end, HTTP_HEAD_MAX_FIELDS, &h, &why);
	if (rc != 0) {
		FZ_CHECK(rc == 400 || rc == 431 || rc == 501 || rc == 505);
		FZ_CHECK(why != NULL && *why != '\0');
		return (0);
	}
	fz_accepted(buf, end, &h);
	return (0);
}
