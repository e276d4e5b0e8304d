/*
 * fuzz-http-parse.c: libFuzzer target for the small parsers that see
 * request bytes, configuration values or URLs from discovery documents.
 *
 * The first input byte is a parameter (an output buffer size, a log
 * format); the rest, up to a NUL, is the text. It goes to cidr_parse,
 * addr_parse, hostport_split, url_check_outbound and hc_target_new (the
 * URL parser used for discovered endpoints), parse_duration,
 * log_escape, log_mask and log_parse_trace; split at its first newline into
 * a pattern and a subject for glob_match; split into fields for one
 * log_fields() line (stderr is pointed at a file meanwhile); and given to
 * server_query() as a raw query and, as the body of a request made with
 * evhttp_request_new(), to server_form() and server_body_json(); and as
 * a Cookie header to cookie_find() and a path segment to
 * pct_decode_segment() and relay_id_decode() (model ids), whose ids go
 * through sigv4_uri_encode() into an upstream path; and to web_escape(),
 * the escaper of every page.
 *
 * Oracles that abort: a parsed CIDR holds its own address; an address
 * prints and parses back the same; host:port splits into a valid port and
 * joins back; a URL that both checkers accept over plain http names a
 * loopback host; hc_target_new's path and Host have no spaces or
 * controls; a text matches itself as a glob; a duration is not negative;
 * web_escape leaves no markup and unescapes back to the text with its
 * controls other than tab and newline as spaces; log_escape fits its
 * buffer and, quoted, is one valid JSON string; log_mask shows no more
 * than a known prefix; a log line is one line, and valid JSON in the JSON
 * format; a form or query value fits its buffer; a JSON body is an object;
 * an id relay_id_decode() accepts is what pct_decode_segment() gives, holds
 * only letters, digits and "-._:/" and no empty, "." or ".." segment, is
 * encoded as one label of unreserved bytes and %XX that decodes back to it
 * and that the signer keeps whole; what it refuses breaks one of those.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "bsp.h"
#include "http-client.h"
#include "sigv4.h"
#include "web.h"

#define FZ_FIELDS	8

int		 LLVMFuzzerTestOneInput(const uint8_t *, size_t);
static void	 fz_addr(const char *);
static void	 fz_hostport(const char *);
static void	 fz_url(const char *);
static void	 fz_html(const char *);
static void	 fz_escape(const uint8_t *, size_t, size_t);
static void	 fz_mask(const char *);
static void	 fz_glob(const char *);
static void	 fz_log(const char *, int);
static void	 fz_request(const uint8_t *, size_t, char *);
static void	 fz_cookie_segment(const uint8_t *, size_t, const char *);
static int	 fz_id_shape(const char *);
static void	 fz_model_id(const uint8_t *, size_t);

static void
fz_addr(const char *s)
{
	struct cidr		 c;
	struct sockaddr_storage	 ss, ss2;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&ss;
	char			 buf[64];

	if (cidr_parse(s, &c) == 0) {
		memset(&ss, 0, sizeof ss);
		if (c.family == AF_INET) {
			if (c.bits < 0 || c.bits > 32)
				abort();
			sin->sin_family = AF_INET;
			memcpy(&sin->sin_addr, c.addr, 4);
		} else if (c.family == AF_INET6) {
			if (c.bits < 0 || c.bits > 128)
				abort();
			sin6->sin6_family = AF_INET6;
			memcpy(&sin6->sin6_addr, c.addr, 16);
		} else
			abort();
		if (!cidr_match(&c, (struct sockaddr *)&ss))
			abort();
	}
	if (addr_parse(s, &ss) == 0) {
		if (sockaddr_str((struct sockaddr *)&ss, buf, sizeof buf) ==
		    -1 || addr_parse(buf, &ss2) == -1 ||
		    ss.ss_family != ss2.ss_family ||
		    (ss.ss_family == AF_INET && memcmp(&sin->sin_addr,
		    &((struct sockaddr_in *)&ss2)->sin_addr, 4) != 0) ||
		    (ss.ss_family == AF_INET6 && memcmp(&sin6->sin6_addr,
		    &((struct sockaddr_in6 *)&ss2)->sin6_addr, 16) != 0))
			abort();
		(void)url_is_loopback_host(s);
	}
}

static void
fz_hostport(const char *s)
{
	char	*host, *port, *joined, *h2, *p2, *end;
	long	 n;

	if (hostport_split(s, &host, &port) == -1) {
		if (host != NULL || port != NULL)
			abort();
		return;
	}
	if (host == NULL || port == NULL)
		abort();
	n = strtol(port, &end, 10);
	if (*port == '\0' || *end != '\0' || n < 0 || n > 65535)
		abort();
	if (*host == '\0' || *host == '[' || strchr(host, ':') != NULL)
		xasprintf(&joined, "[%s]:%s", host, port);
	else
		xasprintf(&joined, "%s:%s", host, port);
	if (strchr(host, ']') == NULL) {
		if (hostport_split(joined, &h2, &p2) == -1 ||
		    strcmp(h2, host) != 0 || strcmp(p2, port) != 0)
			abort();
		free(h2);
		free(p2);
	}
	free(joined);
	free(host);
	free(port);
}

static void
fz_url(const char *s)
{
	struct hc_target	*t;
	char			*cause = NULL, *cause2 = NULL, *h;
	const char		*p;
	int			 ok;
	size_t			 len;

	ok = url_check_outbound(s, &cause) == 0;
	if (ok == (cause != NULL))
		abort();
	free(cause);
	if ((t = hc_target_new(s, &cause2)) == NULL) {
		if (cause2 == NULL)
			abort();
		free(cause2);
		return;
	}
	if (cause2 != NULL)
		abort();
	for (p = hc_target_path(t); *p != '\0'; p++) {
		if ((unsigned char)*p <= 0x20 || *p == 0x7f)
			abort();
	}
	if (*hc_target_path(t) != '/')
		abort();
	for (p = hc_target_host(t); *p != '\0'; p++) {
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f ||
		    strchr("/?#@\\\"", *p) != NULL)
			abort();
	}
	/* Both accept it over plain http: the host must be loopback. */
	if (ok && !hc_target_is_tls(t)) {
		p = hc_target_host(t);
		if (*p == '[')
			len = strcspn(p, "]") + 1;
		else
			len = strcspn(p, ":");
		h = xstrndup(p, len);
		if (!url_is_loopback_host(h))
			abort();
		free(h);
	}
	hc_target_free(t);
}

static void
fz_html(const char *s)
{
	static const struct {
		const char	*ent;
		char		 c;
	} ents[] = {
		{ "&amp;", '&' }, { "&lt;", '<' }, { "&gt;", '>' },
		{ "&quot;", '"' }, { "&#x27;", '\'' }
	};
	char		*e, *p;
	size_t		 i, o = 0;
	unsigned char	 c;

	e = web_escape(s);
	if (strpbrk(e, "<>\"'") != NULL)
		abort();
	for (p = e; *p != '\0'; ) {
		if (*p != '&') {
			c = (unsigned char)s[o++];
			if ((c < 0x20 && c != '\t' && c != '\n') || c == 0x7f)
				c = ' ';
			if ((unsigned char)*p++ != c)
				abort();
			continue;
		}
		for (i = 0; i < nitems(ents); i++) {
			if (strncmp(p, ents[i].ent, strlen(ents[i].ent)) == 0)
				break;
		}
		if (i == nitems(ents) || s[o++] != ents[i].c)
			abort();
		p += strlen(ents[i].ent);
	}
	if (s[o] != '\0')
		abort();
	free(e);
}

/* Escaped text fits and, in quotes, is exactly one JSON string. */
static void
fz_escape(const uint8_t *data, size_t size, size_t dsize)
{
	json_error_t	 err;
	json_t		*j;
	char		*dst, *q;
	size_t		 n, i;

	dst = xmalloc(dsize);
	memset(dst, 'X', dsize);
	n = log_escape((const char *)data, size, dst, dsize);
	if (n >= dsize || dst[n] != '\0' || strlen(dst) != n)
		abort();
	for (i = 0; i < n; i++) {
		if ((unsigned char)dst[i] < 0x20 || dst[i] == 0x7f)
			abort();
	}
	xasprintf(&q, "\"%s\"", dst);
	if ((j = json_loads(q, JSON_DECODE_ANY | JSON_ALLOW_NUL,
	    &err)) == NULL || !json_is_string(j))
		abort();
	json_decref(j);
	free(q);
	free(dst);
}

static void
fz_mask(const char *s)
{
	char	buf[64];
	size_t	len = strlen(s);

	log_mask(s, buf, sizeof buf);
	/* At most a 16-byte known prefix of the secret shows. */
	if (len > 24 && strchr(s + 16, '(') == NULL &&
	    strstr(buf, s + 16) != NULL)
		abort();
	log_mask(s, buf, 4);
	if (strlen(buf) >= 4)
		abort();
}

static void
fz_glob(const char *s)
{
	const char	*nl;
	char		*pat;
	int		 m;

	/* Any text, as a pattern, matches itself. */
	if (!glob_match(s, s))
		abort();
	if ((nl = strchr(s, '\n')) == NULL)
		return;
	pat = xstrndup(s, (size_t)(nl - s));
	m = glob_match(pat, nl + 1);
	if (strcmp(pat, "*") == 0 && !m)
		abort();
	if (strpbrk(pat, "*?") == NULL && m != (strcmp(pat, nl + 1) == 0))
		abort();
	free(pat);
}

/* One log line with the text's fields; captured and checked. */
static void
fz_log(const char *s, int json)
{
	static const char *const	 keys[FZ_FIELDS] = {
		"id", "method", "path", "route", "client", "user", "model",
		"error"
	};
	static int			 cap = -1;
	struct log_field		 f[FZ_FIELDS + 1];
	json_error_t			 err;
	json_t				*j;
	char				*copy, *p, *next, buf[65536];
	size_t				 n = 0;
	ssize_t				 got;
	int				 saved;

	if (cap == -1) {
		char tmpl[] = "/tmp/bsp-fuzz-log.XXXXXX";

		if ((cap = mkstemp(tmpl)) == -1)
			abort();
		unlink(tmpl);
	}
	copy = p = xstrdup(s);
	while (p != NULL && n < FZ_FIELDS) {
		if ((next = strchr(p, '\t')) != NULL)
			*next++ = '\0';
		f[n] = (struct log_field)LFS(keys[n], p);
		n++;
		p = next;
	}
	f[n++] = (struct log_field)LFI("status", 200);

	log_configure(LOG_LVL_INFO, json ? LOG_FMT_JSON : LOG_FMT_TEXT, 0);
	if (ftruncate(cap, 0) == -1 || lseek(cap, 0, SEEK_SET) == -1 ||
	    (saved = dup(STDERR_FILENO)) == -1 ||
	    dup2(cap, STDERR_FILENO) == -1)
		abort();
	log_fields(LOG_LVL_INFO, p != NULL ? p : s, f, n);
	if (dup2(saved, STDERR_FILENO) == -1)
		abort();
	close(saved);
	log_configure(LOG_LVL_INFO, LOG_FMT_TEXT, 0);

	if ((got = pread(cap, buf, sizeof buf - 1, 0)) <= 0)
		abort();
	buf[got] = '\0';
	/* Exactly one line, ending in a newline. */
	if (buf[got - 1] != '\n' || memchr(buf, '\n', (size_t)got - 1) !=
	    NULL || strlen(buf) != (size_t)got)
		abort();
	if (json) {
		if ((j = json_loadb(buf, (size_t)got, 0, &err)) == NULL ||
		    !json_is_object(j))
			abort();
		json_decref(j);
	}
	free(copy);
}

static void
fz_request(const uint8_t *data, size_t size, char *s)
{
	static const char *const	 names[] = {
		"state", "code", "iss", "grant_type", "refresh_token", ""
	};
	struct request			 r;
	char				 buf[64];
	const char			*v, *why;
	json_t				*j;
	size_t				 i;

	memset(&r, 0, sizeof r);
	r.query = s;
	for (i = 0; i < nitems(names); i++) {
		if ((v = server_query(&r, names[i], buf, sizeof buf)) != NULL &&
		    (v != buf || strlen(v) >= sizeof buf))
			abort();
	}

	if ((r.http = evhttp_request_new(NULL, NULL)) == NULL)
		abort();
	evbuffer_add(evhttp_request_get_input_buffer(r.http), data, size);
	(void)evhttp_add_header(evhttp_request_get_input_headers(r.http),
	    "Content-Type", s);
	(void)server_content_type_is(&r, "application/json");
	(void)server_content_type_is(&r, "application/x-www-form-urlencoded");
	for (i = 0; i < nitems(names); i++) {
		if ((v = server_form(&r, names[i], buf, sizeof buf)) != NULL &&
		    (v != buf || strlen(v) >= sizeof buf))
			abort();
	}
	if ((j = server_body_json(&r, &why)) != NULL) {
		if (!json_is_object(j))
			abort();
		json_decref(j);
	} else if (why == NULL)
		abort();
	evhttp_request_free(r.http);
}

/* Cookie headers and percent-encoded path segments. */
static void
fz_cookie_segment(const uint8_t *data, size_t size, const char *s)
{
	char	 buf[64], *dec;
	size_t	 i;

	if (cookie_find(s, "bsp_login", buf, sizeof buf) == 0 &&
	    strlen(buf) >= sizeof buf)
		abort();
	if ((dec = pct_decode_segment((const char *)data, size, 2048)) !=
	    NULL) {
		/* Printable, bounded, and never longer than its encoding. */
		if (strlen(dec) > size || strlen(dec) > 2048)
			abort();
		for (i = 0; dec[i] != '\0'; i++) {
			if ((unsigned char)dec[i] < 0x20 ||
			    (unsigned char)dec[i] == 0x7f)
				abort();
		}
		free(dec);
	}
}

/* Letters, digits and "-._:/" only; no empty, "." or ".." segment. */
static int
fz_id_shape(const char *id)
{
	const char	*s;
	size_t		 n;

	for (s = id; *s != '\0'; s++) {
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		    (*s >= '0' && *s <= '9') || strchr("-._:/", *s) != NULL))
			return (0);
	}
	for (s = id;; s += n + 1) {
		n = strcspn(s, "/");
		if (n == 0 || strncmp(s, ".", n) == 0 ||
		    strncmp(s, "..", n) == 0)
			return (0);
		if (s[n] == '\0')
			return (1);
	}
}

/* A model id from the wire, and the upstream path made of it. */
static void
fz_model_id(const uint8_t *data, size_t size)
{
	const char	*why = NULL, *p;
	char		*id, *dec, *enc, *again, *path, *canon, *want, *enc2;

	dec = pct_decode_segment((const char *)data, size, 2048);
	if ((id = relay_id_decode((const char *)data, size, 2048, &why)) ==
	    NULL) {
		/* Refused: for a reason. */
		if (why == NULL || (dec != NULL && fz_id_shape(dec)))
			abort();
		free(dec);
		return;
	}
	if (dec == NULL || strcmp(dec, id) != 0 || !fz_id_shape(id) ||
	    strlen(id) > 2048)
		abort();
	free(dec);
	if ((enc = sigv4_uri_encode(id, strlen(id))) == NULL)
		abort();
	for (p = enc; *p != '\0'; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || strchr("-._~", *p) != NULL)
			continue;
		if (*p != '%' || !strchr("0123456789ABCDEF", p[1]) ||
		    p[1] == '\0' || !strchr("0123456789ABCDEF", p[2]) ||
		    p[2] == '\0')
			abort();
		p += 2;
	}
	if ((again = relay_id_decode(enc, strlen(enc), 2048, &why)) == NULL ||
	    strcmp(again, id) != 0)
		abort();
	/* The signer sees one segment: nothing normalised away. */
	xasprintf(&path, "/model/%s/invoke", enc);
	if ((enc2 = sigv4_uri_encode(enc, strlen(enc))) == NULL)
		abort();
	xasprintf(&want, "/model/%s/invoke", enc2);
	if ((canon = sigv4_canonical_uri(path)) == NULL ||
	    strcmp(canon, want) != 0)
		abort();
	free(canon);
	free(want);
	free(enc2);
	free(path);
	free(again);
	free(enc);
	free(id);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char		*s, *cause;
	long long	 d;
	int		 mask;

	if (size < 1 || size > 64 * 1024)
		return (0);
	s = xmemdup0(data + 1, size - 1);

	fz_addr(s);
	fz_hostport(s);
	fz_url(s);
	if (parse_duration(s, &d) == 0 && d < 0)
		abort();
	fz_html(s);
	fz_escape(data + 1, size - 1, (size_t)data[0] % 64 + 1);
	fz_escape(data + 1, size - 1, 8 * size + 8);
	fz_mask(s);
	cause = NULL;
	if (log_parse_trace(s, &mask, &cause) == -1) {
		if (cause == NULL)
			abort();
		free(cause);
	}
	fz_glob(s);
	fz_log(s, data[0] & 1);
	fz_request(data + 1, size - 1, s);
	fz_cookie_segment(data + 1, size - 1, s);
	fz_model_id(data + 1, size - 1);
	free(s);
	return (0);
}
