/*
 * http-head.c: a strict reader of HTTP/1.x request heads (RFC 9112).
 *
 * evhttp takes the first of two Content-Length fields and parses the rest
 * of the body as a second request, reads "+2" as a length, and files
 * "Transfer-Encoding : chunked" under a name with a space in it, so that
 * it reads the body by its length where a front proxy reads it chunked.
 * Each of these lets a client behind such a proxy smuggle a request past
 * it. This reader refuses every head whose framing could be read two ways,
 * and what only one reading of it could use: a repeated Host,
 * Authorization or X-Api-Key (evhttp answers with the first), folded
 * lines, control bytes, a bare CR. (A missing Host is let through: RFC 9112
 * asks for a 400, but nothing here depends on Host, and no reading of such
 * a head is ambiguous.) It allocates nothing; the server runs it on each
 * head before evhttp sees a byte of it.
 */

#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "http-head.h"

/* Fields that may appear once. */
#define SEEN_TE		0x01
#define SEEN_HOST	0x02
#define SEEN_AUTHZ	0x04
#define SEEN_KEY	0x08

/* RFC 9110 5.6.2 tchar, by byte. */
static const unsigned char http_tchars[256] = {
	['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1,
	['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
	['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
	['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1,
	['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
	['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
	['Y'] = 1, ['Z'] = 1,
	['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
	['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1,
	['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,
	['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
	['y'] = 1, ['z'] = 1,
	['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1,
	['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1,
	['`'] = 1, ['|'] = 1, ['~'] = 1,
};

static int
http_tchar(unsigned char c)
{
	return (http_tchars[c]);
}

#define HTTP_ONES	0x0101010101010101ULL
#define HTTP_HIGHS	0x8080808080808080ULL

/*
 * A field value may hold HTAB, SP, VCHAR and obs-text; no CTL. Eight
 * bytes at a time: a word none of whose bytes is below 0x20 or is 0x7f
 * (exact tests, no false negatives) is good; a word with one (a tab, or a
 * CTL) is looked at byte by byte. Tokens make up most of a head's bytes.
 */
static int
http_value_ok(const char *p, size_t len)
{
	size_t		i = 0, j;
	uint64_t	w, lo, del;
	unsigned char	c;

	for (; i + 8 <= len; i += 8) {
		memcpy(&w, p + i, 8);
		lo = (w - HTTP_ONES * 0x20) & ~w & HTTP_HIGHS;
		del = ((w ^ (HTTP_ONES * 0x7f)) - HTTP_ONES) &
		    ~(w ^ (HTTP_ONES * 0x7f)) & HTTP_HIGHS;
		if ((lo | del) == 0)
			continue;
		for (j = i; j < i + 8; j++) {
			c = (unsigned char)p[j];
			if ((c < 0x20 && c != '\t') || c == 0x7f)
				return (0);
		}
	}
	for (; i < len; i++) {
		c = (unsigned char)p[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return (0);
	}
	return (1);
}

/* Is the field name (p, len) the literal name? Lengths first. */
#define http_name_is(p, len, name)					\
	((len) == sizeof(name) - 1 && strncasecmp((p), (name), (len)) == 0)

/* Is the value one of the comma-separated tokens (Connection: close)? */
static int
http_list_has(const char *p, size_t len, const char *token)
{
	size_t	tlen = strlen(token), i = 0, s, e;

	while (i < len) {
		while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == ','))
			i++;
		s = i;
		while (i < len && p[i] != ',')
			i++;
		e = i;
		while (e > s && (p[e - 1] == ' ' || p[e - 1] == '\t'))
			e--;
		if (e - s == tlen && strncasecmp(p + s, token, tlen) == 0)
			return (1);
	}
	return (0);
}

/*
 * Length of the head at the start of buf, through the empty line that ends
 * it (CRLF or a bare LF, RFC 9112 2.2), or 0 if that has not arrived.
 */
size_t
http_head_end(const char *buf, size_t len)
{
	const char	*p = buf, *nl;
	size_t		 left = len;

	while ((nl = memchr(p, '\n', left)) != NULL) {
		left -= (size_t)(nl - p) + 1;
		p = nl + 1;
		if (left >= 1 && p[0] == '\n')
			return ((size_t)(p - buf) + 1);
		if (left >= 2 && p[0] == '\r' && p[1] == '\n')
			return ((size_t)(p - buf) + 2);
	}
	return (0);
}

/* The request line: method SP request-target SP HTTP-version. */
static int
http_request_line(const char *p, size_t len, struct http_head *h,
    const char **why)
{
	const char	*sp1, *sp2, *q;
	size_t		 i;

	*why = "malformed request line";
	if ((sp1 = memchr(p, ' ', len)) == NULL || sp1 == p)
		return (400);
	for (i = 0; p + i < sp1; i++) {
		if (!http_tchar((unsigned char)p[i]))
			return (400);
	}
	h->method.p = p;
	h->method.len = (size_t)(sp1 - p);
	sp2 = memchr(sp1 + 1, ' ', len - (size_t)(sp1 + 1 - p));
	if (sp2 == NULL || sp2 == sp1 + 1)
		return (400);
	/* Kept even when refused: the access log shows it, escaped. */
	h->target.p = sp1 + 1;
	h->target.len = (size_t)(sp2 - sp1 - 1);
	q = memchr(h->target.p, '?', h->target.len);
	h->path.p = h->target.p;
	h->path.len = q != NULL ? (size_t)(q - h->target.p) : h->target.len;
	for (q = sp1 + 1; q < sp2; q++) {
		/* VCHAR only: no CTL, no obs-text in a target. */
		if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f)
			return (400);
	}
	q = sp2 + 1;
	if ((size_t)(p + len - q) != 8 || strncmp(q, "HTTP/", 5) != 0 ||
	    q[5] < '0' || q[5] > '9' || q[6] != '.' || q[7] < '0' ||
	    q[7] > '9')
		return (400);
	if (q[5] != '1' || q[7] > '1') {
		*why = "HTTP version not supported";
		return (505);
	}
	h->minor = q[7] - '0';
	return (0);
}

/* Content-Length: 1*DIGIT, one field, one value (RFC 9112 6.3). */
static int
http_content_length(const char *p, size_t len, struct http_head *h,
    const char **why)
{
	uint64_t	v = 0;
	size_t		i;

	*why = "malformed Content-Length";
	if (h->has_length) {
		*why = "more than one Content-Length";
		return (400);
	}
	if (len == 0 || len > 19)
		return (400);
	for (i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return (400);
		v = v * 10 + (uint64_t)(p[i] - '0');
	}
	h->has_length = 1;
	h->length = v;
	return (0);
}

/* One field line: field-name ":" OWS field-value OWS. */
static int
http_field(const char *p, size_t len, struct http_head *h, int *seen,
    const char **why)
{
	const char	*colon, *v;
	size_t		 nlen, vlen, i;

	if (p[0] == ' ' || p[0] == '\t') {
		*why = "folded header line";
		return (400);
	}
	if ((colon = memchr(p, ':', len)) == NULL || colon == p) {
		*why = "malformed header line";
		return (400);
	}
	nlen = (size_t)(colon - p);
	for (i = 0; i < nlen; i++) {
		if (!http_tchar((unsigned char)p[i])) {
			*why = (p[i] == ' ' || p[i] == '\t') ?
			    "whitespace before a header's colon" :
			    "malformed header name";
			return (400);
		}
	}
	v = colon + 1;
	vlen = len - nlen - 1;
	while (vlen > 0 && (*v == ' ' || *v == '\t')) {
		v++;
		vlen--;
	}
	while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
		vlen--;
	if (!http_value_ok(v, vlen)) {
		*why = "control character in a header value";
		return (400);
	}

	if (http_name_is(p, nlen, "Content-Length"))
		return (http_content_length(v, vlen, h, why));
	if (http_name_is(p, nlen, "Transfer-Encoding")) {
		if (*seen & SEEN_TE) {
			*why = "more than one Transfer-Encoding";
			return (400);
		}
		*seen |= SEEN_TE;
		if (vlen != 7 || strncasecmp(v, "chunked", 7) != 0) {
			*why = "only Transfer-Encoding: chunked is supported";
			return (501);
		}
		h->chunked = 1;
		return (0);
	}
	if (http_name_is(p, nlen, "Host")) {
		if (*seen & SEEN_HOST) {
			*why = "more than one Host";
			return (400);
		}
		*seen |= SEEN_HOST;
		return (0);
	}
	if (http_name_is(p, nlen, "Authorization")) {
		if (*seen & SEEN_AUTHZ) {
			*why = "more than one Authorization header";
			return (400);
		}
		*seen |= SEEN_AUTHZ;
		h->authorization.p = v;
		h->authorization.len = vlen;
		return (0);
	}
	if (http_name_is(p, nlen, "X-Api-Key")) {
		if (*seen & SEEN_KEY) {
			*why = "more than one X-Api-Key header";
			return (400);
		}
		*seen |= SEEN_KEY;
		h->api_key.p = v;
		h->api_key.len = vlen;
		return (0);
	}
	if (http_name_is(p, nlen, "Connection") &&
	    http_list_has(v, vlen, "close"))
		h->close = 1;
	return (0);
}

/*
 * Read a complete head (len from http_head_end). 0 if it may be acted on;
 * otherwise the status to refuse it with (400, 431, 501, 505) and *why.
 * At most maxfields field lines.
 */
int
http_head_parse(const char *buf, size_t len, size_t maxfields,
    struct http_head *h, const char **why)
{
	const char	*p = buf, *end = buf + len, *nl;
	size_t		 llen;
	int		 rc, seen = 0, first = 1;

	memset(h, 0, sizeof *h);
	*why = "malformed request";
	while (p < end) {
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
			return (400);	/* not a complete head */
		llen = (size_t)(nl - p);
		if (llen > 0 && p[llen - 1] == '\r')
			llen--;
		if (memchr(p, '\r', llen) != NULL) {
			*why = "bare CR in the request head";
			return (400);
		}
		if (memchr(p, '\0', llen) != NULL) {
			*why = "NUL in the request head";
			return (400);
		}
		if (first) {
			if ((rc = http_request_line(p, llen, h, why)) != 0)
				return (rc);
			first = 0;
		} else if (llen == 0) {
			p = nl + 1;
			break;		/* the empty line */
		} else {
			if (++h->nfields > maxfields) {
				*why = "too many header fields";
				return (431);
			}
			if ((rc = http_field(p, llen, h, &seen, why)) != 0)
				return (rc);
		}
		p = nl + 1;
	}
	if (first || p != end) {
		*why = "malformed request head";
		return (400);
	}
	if (h->chunked && h->has_length) {
		*why = "both Content-Length and Transfer-Encoding";
		return (400);
	}
	if (h->chunked && h->minor == 0) {
		*why = "Transfer-Encoding in an HTTP/1.0 request";
		return (400);
	}
	return (0);
}

/* Does a body follow the head? */
int
http_head_has_body(const struct http_head *h)
{
	return (h->chunked || (h->has_length && h->length > 0));
}
