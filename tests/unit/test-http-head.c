/*
 * test-http-head.c: the strict request-head reader. The framing attacks of
 * the outside review (two Content-Lengths, "+2", a space before a colon,
 * repeated credentials) and their relatives are refused with the right
 * status; ordinary heads from real clients are read as they are meant.
 */

#include <stdio.h>
#include <string.h>

#include "http-head.h"
#include "tap.h"

/* Parse a whole head; the status (0 accepted). */
static int
head(const char *text, struct http_head *h, const char **why)
{
	size_t	len = strlen(text), end = http_head_end(text, len);

	*why = NULL;
	if (end == 0)
		return (-1);
	return (http_head_parse(text, end, HTTP_HEAD_MAX_FIELDS, h, why));
}

static void
refused(const char *text, int status, const char *what)
{
	struct http_head	 h;
	const char		*why;
	int			 rc = head(text, &h, &why);

	is_int(rc, status, "%s: refused with %d", what, status);
	ok(rc <= 0 || (why != NULL && *why != '\0'), "%s: says why (%s)",
	    what, why != NULL ? why : "-");
}

static int
span_is(const struct http_span *s, const char *want)
{
	return (s->p != NULL && s->len == strlen(want) &&
	    memcmp(s->p, want, s->len) == 0);
}

static void
test_end(void)
{
	const char	*t;

	t = "GET / HTTP/1.1\r\nHost: x\r\n\r\nBODY";
	is_int(http_head_end(t, strlen(t)), strlen(t) - 4, "end: CRLF CRLF");
	t = "GET / HTTP/1.1\nHost: x\n\nBODY";
	is_int(http_head_end(t, strlen(t)), strlen(t) - 4, "end: LF LF");
	t = "GET / HTTP/1.1\r\nHost: x\r\n";
	is_int(http_head_end(t, strlen(t)), 0, "end: not yet");
	t = "GET / HTTP/1.1\r\nHost: x\r\n\r";
	is_int(http_head_end(t, strlen(t)), 0, "end: half of the last CRLF");
	t = "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n";
	is_int(http_head_end(t, strlen(t)), strlen(t), "end: a bare CR is "
	    "not a line end");
}

static void
test_accepted(void)
{
	struct http_head	 h;
	const char		*why;

	is_int(head("POST /model/m%3A0/invoke?x=1 HTTP/1.1\r\n"
	    "Host: proxy\r\nauthorization:  Bearer abc \t\r\n"
	    "X-API-KEY: bsk_1\r\ncontent-length: 42\r\n"
	    "Connection: keep-alive, Close\r\n\r\n", &h, &why), 0,
	    "a proxy request is accepted");
	ok(span_is(&h.method, "POST"), "method");
	ok(span_is(&h.target, "/model/m%3A0/invoke?x=1"), "target");
	ok(span_is(&h.path, "/model/m%3A0/invoke"), "path stops at '?'");
	is_int(h.minor, 1, "HTTP/1.1");
	ok(span_is(&h.authorization, "Bearer abc"), "Authorization, "
	    "whitespace trimmed, any case of the name");
	ok(span_is(&h.api_key, "bsk_1"), "X-Api-Key");
	ok(h.has_length && h.length == 42 && !h.chunked, "Content-Length");
	ok(h.close, "Connection: close among other tokens");
	ok(http_head_has_body(&h), "a body follows");

	is_int(head("POST /x HTTP/1.1\r\nHost: x\r\n"
	    "Transfer-Encoding: Chunked\r\n\r\n", &h, &why), 0, "chunked");
	ok(h.chunked && !h.has_length && http_head_has_body(&h),
	    "chunked has a body");
	is_int(head("GET / HTTP/1.0\n\n", &h, &why), 0,
	    "HTTP/1.0 with bare LFs and no Host");
	ok(h.minor == 0 && !http_head_has_body(&h) && h.authorization.p ==
	    NULL, "no body, no credentials");
	is_int(head("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
	    "\r\n", &h, &why), 0, "Content-Length: 0");
	ok(!http_head_has_body(&h), "a zero length is no body");
	is_int(head("GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: a\r\n"
	    "X-Forwarded-For: b\r\nX-Obs: caf\xc3\xa9\r\n\r\n", &h, &why), 0,
	    "repeated ordinary fields and obs-text in a value are fine");
}

static void
test_refused(void)
{
	char	big[16384];
	size_t	i, n;

	/* The review's findings. */
	refused("POST /auth/refresh HTTP/1.1\r\nHost: x\r\nContent-Length: 5"
	    "\r\nContent-Length: 40\r\n\r\n", 400, "two Content-Lengths");
	refused("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
	    "Content-Length: 5\r\n\r\n", 400, "two equal Content-Lengths");
	refused("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n",
	    400, "a Content-Length list");
	refused("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\n",
	    400, "Content-Length: +2");
	refused("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
	    400, "Content-Length: -1");
	refused("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 0x10\r\n\r\n",
	    400, "Content-Length in hex");
	refused("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: "
	    "99999999999999999999\r\n\r\n", 400, "Content-Length overflow");
	refused("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n", 400,
	    "empty Content-Length");
	refused("POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n"
	    "\r\n", 400, "a space before the colon");
	refused("POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding\t: chunked"
	    "\r\n\r\n", 400, "a tab before the colon");
	refused("GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\r\n"
	    "Authorization: Bearer b\r\n\r\n", 400, "two Authorization");
	refused("GET / HTTP/1.1\r\nHost: x\r\nX-Api-Key: a\r\nx-api-key: a\r\n"
	    "\r\n", 400, "two X-Api-Key, even equal");

	/* Their relatives. */
	refused("POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
	    "Content-Length: 3\r\n\r\n", 400, "both framings");
	refused("POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n", 400, "two Transfer-Encodings");
	refused("POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, "
	    "chunked\r\n\r\n", 501, "another transfer coding");
	refused("POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, "
	    "identity\r\n\r\n", 501, "chunked not alone");
	refused("POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
	    "chunked in HTTP/1.0");
	refused("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400,
	    "two Hosts");
	refused("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400,
	    "a folded line");
	refused("GET / HTTP/1.1\r\n Host: x\r\n\r\n", 400,
	    "a first field line that begins with a space");
	refused("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400,
	    "a bare CR in a value");
	refused("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\001b\r\n\r\n", 400,
	    "a control byte in a value");
	refused("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\177\r\n\r\n", 400,
	    "DEL in a value");
	refused("GET / HTTP/1.1\r\nHost: x\r\nX A: a\r\n\r\n", 400,
	    "a space in a name");
	refused("GET / HTTP/1.1\r\nHost: x\r\n: a\r\n\r\n", 400,
	    "an empty name");
	refused("GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", 400,
	    "no colon");
	refused("GET / HTTP/1.1\r\nHost: x\r\nX-\xc3\xa9: a\r\n\r\n", 400,
	    "a non-token name");
	refused("GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400,
	    "a space in the target");
	refused("GET /x\001 HTTP/1.1\r\nHost: x\r\n\r\n", 400,
	    "a control byte in the target");
	refused("GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "two spaces");
	refused("GET / HTTP/1.1 \r\nHost: x\r\n\r\n", 400,
	    "a space after the version");
	refused("G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "a non-token method");
	refused("GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, "HTTP/2.0");
	refused("GET / HTTP/1.2\r\nHost: x\r\n\r\n", 505, "HTTP/1.2");
	refused("GET / HTTQ/1.1\r\nHost: x\r\n\r\n", 400, "not HTTP");
	refused("GET /\r\nHost: x\r\n\r\n", 400, "no version");

	n = 0;
	n += (size_t)snprintf(big, sizeof big, "GET / HTTP/1.1\r\nHost: x\r\n");
	for (i = 0; i <= HTTP_HEAD_MAX_FIELDS && n + 16 < sizeof big; i++)
		n += (size_t)snprintf(big + n, sizeof big - n, "X-%zu: y\r\n",
		    i);
	snprintf(big + n, sizeof big - n, "\r\n");
	refused(big, 431, "too many fields");
}

#define NBAD	(sizeof bad / sizeof bad[0])
#define NGOOD	(sizeof good / sizeof good[0])

/*
 * Values are checked eight bytes at a time: a CTL (or DEL) at any offset
 * of a word, and in the tail, is refused; a tab, obs-text and every VCHAR
 * at any offset pass.
 */
static void
test_value_bytes(void)
{
	static const unsigned char	 bad[] = { 0x01, 0x08, 0x0b, 0x1f, 0x7f };
	static const unsigned char	 good[] = { '\t', ' ', '!', '~', 0x80,
					    0x9f, 0xa0, 0xff };
	struct http_head		 h;
	const char			*why;
	char				 t[128], v[24];
	size_t				 k, b, n, len;
	int				 rc, fails = 0;

	for (len = 1; len <= sizeof v; len += 7) {
		for (k = 0; k < len; k++) {
			for (b = 0; b < NBAD + NGOOD; b++) {
				memset(v, 'a', sizeof v);
				v[k] = (char)(b < NBAD ? bad[b] :
				    good[b - NBAD]);
				if (b >= NBAD && (k == 0 ||
				    k == len - 1) && (v[k] == '\t' ||
				    v[k] == ' '))
					v[k] = 'a';	/* trimmed, not checked */
				n = (size_t)snprintf(t, sizeof t,
				    "GET / HTTP/1.1\r\nX: ");
				memcpy(t + n, v, len);
				n += len;
				n += (size_t)snprintf(t + n, sizeof t - n,
				    "\r\n\r\n");
				rc = http_head_parse(t, n, HTTP_HEAD_MAX_FIELDS,
				    &h, &why);
				if (b < NBAD ? rc != 400 : rc != 0) {
					diag("value of %zu bytes, 0x%02x at %zu: "
					    "%d", len, (unsigned char)v[k], k, rc);
					fails++;
				}
			}
		}
	}
	is_int(fails, 0, "value bytes: CTL and DEL refused, tab, VCHAR and "
	    "obs-text taken, at every offset");
}

int
main(void)
{
	test_end();
	test_accepted();
	test_refused();
	test_value_bytes();
	return (tap_done());
}
