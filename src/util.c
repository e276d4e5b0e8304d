/*
 * util.c: small helpers shared by every file: string lists, CIDR matching,
 * addresses, time, globbing, HTML escaping.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sodium.h>

#include "bsp.h"

void
strlist_add(struct strlist *l, const char *s)
{
	l->v = xreallocarray(l->v, l->n + 1, sizeof *l->v);
	l->v[l->n++] = xstrdup(s);
}

void
strlist_free(struct strlist *l)
{
	size_t	i;

	for (i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

void
strlist_copy(struct strlist *dst, const struct strlist *src)
{
	size_t	i;

	memset(dst, 0, sizeof *dst);
	for (i = 0; i < src->n; i++)
		strlist_add(dst, src->v[i]);
}

int
strlist_contains(const struct strlist *l, const char *s)
{
	size_t	i;

	for (i = 0; i < l->n; i++) {
		if (strcmp(l->v[i], s) == 0)
			return (1);
	}
	return (0);
}

int
strlist_contains_nocase(const struct strlist *l, const char *s)
{
	size_t	i;

	for (i = 0; i < l->n; i++) {
		if (strcasecmp(l->v[i], s) == 0)
			return (1);
	}
	return (0);
}

char *
strlist_join(const struct strlist *l, const char *sep)
{
	size_t	 i, len = 1, seplen = strlen(sep);
	char	*s;

	for (i = 0; i < l->n; i++)
		len += strlen(l->v[i]) + seplen;
	s = xmalloc(len);
	s[0] = '\0';
	for (i = 0; i < l->n; i++) {
		if (i != 0)
			bsp_strlcat(s, sep, len);
		bsp_strlcat(s, l->v[i], len);
	}
	return (s);
}

/* A JSON array of the list's strings. */
json_t *
strlist_to_json(const struct strlist *l)
{
	json_t	*a = json_array();
	size_t	 i;

	for (i = 0; i < l->n; i++)
		json_array_append_new(a, json_string(l->v[i]));
	return (a);
}

/* The strings of a JSON array in text (NULL or not an array: nothing). */
void
strlist_from_json_text(struct strlist *l, const char *text)
{
	json_t	*j, *v;
	size_t	 i;

	if (text == NULL || (j = json_loads(text, 0, NULL)) == NULL)
		return;
	json_array_foreach(j, i, v) {
		if (json_is_string(v))
			strlist_add(l, json_string_value(v));
	}
	json_decref(j);
}

/*
 * A reader for one member of a JSON object, without building the object:
 * the relay reads the usage of every answer, and jansson's whole tree for
 * a 255-byte answer costs ten times what finding the member does. It
 * checks the structure (strings, nesting, separators) but takes numbers
 * and literals as runs of their characters; whatever it cannot read the
 * way jansson would (an escaped member name, nesting deeper than
 * JSON_SCAN_DEPTH, anything malformed) makes it answer -1, and the caller
 * then asks jansson. tests/fuzz/fuzz-json-member.c holds it to jansson's
 * answers.
 */
#define JSON_SCAN_DEPTH	32

static const char *
json_scan_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' ||
	    *p == '\r'))
		p++;
	return (p);
}

/* Past the string that starts at p ('"'); NULL if it does not end. */
static const char *
json_scan_string(const char *p, const char *end, int *escaped)
{
	*escaped = 0;
	for (p++; p < end; p++) {
		if (*p == '"')
			return (p + 1);
		if ((unsigned char)*p < 0x20)
			return (NULL);
		if (*p == '\\') {
			*escaped = 1;
			if (++p == end)
				return (NULL);
		}
	}
	return (NULL);
}

/* Past the value that starts at p; NULL if it cannot be read. */
static const char *
json_scan_value(const char *p, const char *end, int depth)
{
	const char	*s;
	char		 close;
	int		 escaped;

	if (p == end)
		return (NULL);
	if (*p == '"')
		return (json_scan_string(p, end, &escaped));
	if (*p != '{' && *p != '[') {
		for (s = p; p < end && (isalnum((unsigned char)*p) ||
		    *p == '-' || *p == '+' || *p == '.'); p++)
			;
		return (p > s ? p : NULL);
	}
	if (depth >= JSON_SCAN_DEPTH)
		return (NULL);
	close = *p == '{' ? '}' : ']';
	if ((p = json_scan_ws(p + 1, end)) < end && *p == close)
		return (p + 1);
	for (;;) {
		if (close == '}') {
			if (p == end || *p != '"' ||
			    (p = json_scan_string(p, end, &escaped)) == NULL)
				return (NULL);
			if ((p = json_scan_ws(p, end)) == end || *p != ':')
				return (NULL);
			p = json_scan_ws(p + 1, end);
		}
		if ((p = json_scan_value(p, end, depth + 1)) == NULL ||
		    (p = json_scan_ws(p, end)) == end)
			return (NULL);
		if (*p == close)
			return (p + 1);
		if (*p != ',')
			return (NULL);
		p = json_scan_ws(p + 1, end);
	}
}

/*
 * Each member of the JSON object text[0..len), in order, to cb with its
 * name (unescaped: a name with an escape makes the object unreadable) and
 * its value's text: 0 when the whole text was read, -1 when this reader
 * cannot tell (cb may have been called; what it saw does not count).
 */
int
json_members(const char *text, size_t len, json_member_cb cb, void *arg)
{
	const char	*p, *end = text + len, *k, *v;
	size_t		 klen;
	int		 escaped;

	p = json_scan_ws(text, end);
	if (p == end || *p != '{')
		return (-1);
	if ((p = json_scan_ws(p + 1, end)) < end && *p == '}')
		return (json_scan_ws(p + 1, end) == end ? 0 : -1);
	for (;;) {
		if (p == end || *p != '"')
			return (-1);
		k = p + 1;
		if ((p = json_scan_string(p, end, &escaped)) == NULL || escaped)
			return (-1);
		klen = (size_t)(p - 1 - k);
		if ((p = json_scan_ws(p, end)) == end || *p != ':')
			return (-1);
		v = p = json_scan_ws(p + 1, end);
		if ((p = json_scan_value(p, end, 1)) == NULL)
			return (-1);
		cb(arg, k, klen, v, (size_t)(p - v));
		if ((p = json_scan_ws(p, end)) == end)
			return (-1);
		if (*p == '}')
			return (json_scan_ws(p + 1, end) == end ? 0 : -1);
		if (*p != ',')
			return (-1);
		p = json_scan_ws(p + 1, end);
	}
}

struct json_member_find {
	const char	*name;
	size_t		 nlen;
	const char	*v;
	size_t		 vlen;
};

static void
json_member_match(void *arg, const char *k, size_t klen, const char *v,
    size_t vlen)
{
	struct json_member_find	*f = arg;

	if (klen == f->nlen && memcmp(k, f->name, klen) == 0) {
		f->v = v;		/* the last one, as jansson keeps */
		f->vlen = vlen;
	}
}

/*
 * The text of member name's value in the JSON object text[0..len): 1 and
 * *v, *vlen when there is one (the last, as jansson keeps the last of
 * duplicates), 0 when there is none, -1 when this reader cannot tell.
 */
int
json_member(const char *text, size_t len, const char *name, const char **v,
    size_t *vlen)
{
	struct json_member_find	f = { name, strlen(name), NULL, 0 };

	*v = NULL;
	*vlen = 0;
	if (json_members(text, len, json_member_match, &f) == -1)
		return (-1);
	if (f.v == NULL)
		return (0);
	*v = f.v;
	*vlen = f.vlen;
	return (1);
}

/*
 * A value's text as a non-negative integer, as jansson would take it
 * (digits only, no fraction or exponent): the number, -1 for anything
 * else, -2 when this reader cannot tell (19 digits and more).
 */
long long
json_uint(const char *v, size_t vlen)
{
	size_t		i;
	long long	n = 0;

	if (vlen == 2 && memcmp(v, "-0", 2) == 0)
		return (0);
	if (vlen > 18 && isdigit((unsigned char)v[0]))
		return (-2);		/* near the limits: jansson decides */
	if (vlen == 0 || vlen > 18 || (vlen > 1 && v[0] == '0'))
		return (-1);
	for (i = 0; i < vlen; i++) {
		if (!isdigit((unsigned char)v[i]))
			return (-1);
		n = n * 10 + (v[i] - '0');
	}
	return (n);
}

/* Parse "10.0.0.0/8", "::1/128" or a bare address (a host route). */
int
cidr_parse(const char *s, struct cidr *c)
{
	char		 buf[INET6_ADDRSTRLEN + 8], *slash, *end;
	long		 bits;
	int		 max;

	memset(c, 0, sizeof *c);
	if (strlen(s) >= sizeof buf)
		return (-1);
	bsp_strlcpy(buf, s, sizeof buf);
	if ((slash = strchr(buf, '/')) != NULL)
		*slash++ = '\0';
	if (inet_pton(AF_INET, buf, c->addr) == 1) {
		c->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, buf, c->addr) == 1) {
		c->family = AF_INET6;
		max = 128;
	} else
		return (-1);
	if (slash == NULL) {
		c->bits = max;
		return (0);
	}
	if (*slash == '\0' || !isdigit((unsigned char)*slash))
		return (-1);
	errno = 0;
	bits = strtol(slash, &end, 10);
	if (errno != 0 || *end != '\0' || bits < 0 || bits > max)
		return (-1);
	c->bits = (int)bits;
	return (0);
}

static int
prefix_match(const uint8_t *a, const uint8_t *b, int bits)
{
	int	bytes = bits / 8, rest = bits % 8;
	uint8_t	mask;

	if (bytes > 0 && memcmp(a, b, (size_t)bytes) != 0)
		return (0);
	if (rest == 0)
		return (1);
	mask = (uint8_t)(0xff << (8 - rest));
	return ((a[bytes] & mask) == (b[bytes] & mask));
}

/* Does the socket address fall inside the CIDR? IPv4-mapped v6 counts. */
int
cidr_match(const struct cidr *c, const struct sockaddr *sa)
{
	const struct sockaddr_in	*sin;
	const struct sockaddr_in6	*sin6;
	static const uint8_t		 v4mapped[12] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
	};

	if (sa->sa_family == AF_INET) {
		sin = (const struct sockaddr_in *)sa;
		if (c->family != AF_INET)
			return (0);
		return (prefix_match((const uint8_t *)&sin->sin_addr, c->addr,
		    c->bits));
	}
	if (sa->sa_family != AF_INET6)
		return (0);
	sin6 = (const struct sockaddr_in6 *)sa;
	if (c->family == AF_INET6)
		return (prefix_match((const uint8_t *)&sin6->sin6_addr,
		    c->addr, c->bits));
	if (memcmp(&sin6->sin6_addr, v4mapped, sizeof v4mapped) == 0)
		return (prefix_match((const uint8_t *)&sin6->sin6_addr + 12,
		    c->addr, c->bits));
	return (0);
}

int
cidrlist_parse(const struct strlist *l, struct cidrlist *out, char **cause)
{
	size_t	i;

	memset(out, 0, sizeof *out);
	if (l->n == 0)
		return (0);
	out->v = xcalloc(l->n, sizeof *out->v);
	for (i = 0; i < l->n; i++) {
		if (cidr_parse(l->v[i], &out->v[i]) == -1) {
			xasprintf(cause, "\"%s\" is not an address or CIDR",
			    l->v[i]);
			cidrlist_free(out);
			return (-1);
		}
	}
	out->n = l->n;
	return (0);
}

int
cidrlist_match(const struct cidrlist *l, const struct sockaddr *sa)
{
	size_t	i;

	for (i = 0; i < l->n; i++) {
		if (cidr_match(&l->v[i], sa))
			return (1);
	}
	return (0);
}

int
cidrlist_match_str(const struct cidrlist *l, const char *addr)
{
	struct sockaddr_storage	ss;

	if (addr_parse(addr, &ss) == -1)
		return (0);
	return (cidrlist_match(l, (struct sockaddr *)&ss));
}

void
cidrlist_free(struct cidrlist *l)
{
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* Parse a bare IPv4 or IPv6 address (no port) into a sockaddr. */
int
addr_parse(const char *s, struct sockaddr_storage *ss)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof *ss);
	if (inet_pton(AF_INET, s, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		return (0);
	}
	if (inet_pton(AF_INET6, s, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		return (0);
	}
	return (-1);
}

/* Print the address part of a sockaddr. */
int
sockaddr_str(const struct sockaddr *sa, char *buf, size_t len)
{
	const void	*a;

	if (sa->sa_family == AF_INET)
		a = &((const struct sockaddr_in *)sa)->sin_addr;
	else if (sa->sa_family == AF_INET6)
		a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
	else {
		bsp_strlcpy(buf, "unknown", len);
		return (-1);
	}
	if (inet_ntop(sa->sa_family, a, buf, (socklen_t)len) == NULL) {
		bsp_strlcpy(buf, "unknown", len);
		return (-1);
	}
	return (0);
}

/*
 * The address as one client, for per-client limits: an IPv6 host usually
 * has a whole /64 to pick addresses from, so the /64 is the client; an
 * IPv4 address mapped into IPv6 is the IPv4 address.
 */
int
sockaddr_group(const struct sockaddr *sa, char *buf, size_t len)
{
	struct sockaddr_in	sin;
	struct sockaddr_in6	sin6;

	if (sa->sa_family != AF_INET6)
		return (sockaddr_str(sa, buf, len));
	memcpy(&sin6, sa, sizeof sin6);
	if (IN6_IS_ADDR_V4MAPPED(&sin6.sin6_addr)) {
		memset(&sin, 0, sizeof sin);
		sin.sin_family = AF_INET;
		memcpy(&sin.sin_addr, &sin6.sin6_addr.s6_addr[12], 4);
		return (sockaddr_str((struct sockaddr *)&sin, buf, len));
	}
	memset(&sin6.sin6_addr.s6_addr[8], 0, 8);
	if (sockaddr_str((struct sockaddr *)&sin6, buf, len) == -1)
		return (-1);
	if (bsp_strlcat(buf, "/64", len) >= len) {
		bsp_strlcpy(buf, "unknown", len);
		return (-1);
	}
	return (0);
}

/*
 * Split "host:port", "[v6]:port" into allocated parts. A bare "v6" address
 * without brackets is refused: it is ambiguous.
 */
int
hostport_split(const char *s, char **host, char **port)
{
	const char	*colon, *end, *d;
	char		*p;
	long		 n;

	*host = *port = NULL;
	if (*s == '[') {
		struct in6_addr	a6;

		if ((end = strchr(s, ']')) == NULL || end[1] != ':')
			return (-1);
		*host = xstrndup(s + 1, (size_t)(end - s - 1));
		if (inet_pton(AF_INET6, *host, &a6) != 1) {
			free(*host);
			*host = NULL;
			return (-1);
		}
		colon = end + 1;
	} else {
		if ((colon = strrchr(s, ':')) == NULL || colon == s)
			return (-1);
		if (memchr(s, ':', (size_t)(colon - s)) != NULL)
			return (-1);
		*host = xstrndup(s, (size_t)(colon - s));
	}
	/* One to five digits, nothing else (no sign, no blanks). */
	for (d = colon + 1; *d != '\0'; d++) {
		if (!isdigit((unsigned char)*d))
			break;
	}
	if (colon[1] == '\0' || *d != '\0' || d - colon - 1 > 5) {
		free(*host);
		*host = NULL;
		return (-1);
	}
	errno = 0;
	n = strtol(colon + 1, &p, 10);
	if (errno != 0 || n > 65535) {
		free(*host);
		*host = NULL;
		return (-1);
	}
	*port = xstrdup(colon + 1);
	return (0);
}

/* Loopback host names and addresses: 127.0.0.0/8, ::1, localhost. */
int
url_is_loopback_host(const char *host)
{
	struct sockaddr_storage	ss;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&ss;
	char			 buf[64];
	size_t			 len;

	if (strcasecmp(host, "localhost") == 0)
		return (1);
	len = strlen(host);
	if (len >= 2 && host[0] == '[' && host[len - 1] == ']' &&
	    len - 2 < sizeof buf) {
		memcpy(buf, host + 1, len - 2);
		buf[len - 2] = '\0';
		host = buf;
	}
	if (addr_parse(host, &ss) == -1)
		return (0);
	if (ss.ss_family == AF_INET)
		return ((ntohl(sin->sin_addr.s_addr) >> 24) == 127);
	return (IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
}

/*
 * Outbound URLs must be https, or plain http to a loopback address only
 * (development and tests). Userinfo and fragments are refused.
 */
int
url_check_outbound(const char *url, char **cause)
{
	const char	*p, *host, *end;
	char		 hostbuf[256];
	size_t		 len;

	if (strncasecmp(url, "https://", 8) == 0)
		p = url + 8;
	else if (strncasecmp(url, "http://", 7) == 0)
		p = url + 7;
	else {
		xasprintf(cause, "\"%s\" is not an http(s) URL", url);
		return (-1);
	}
	host = p;
	end = host + strcspn(host, "/?#");
	if (memchr(host, '@', (size_t)(end - host)) != NULL) {
		xasprintf(cause, "URL must not contain user information");
		return (-1);
	}
	if (strchr(url, '#') != NULL) {
		xasprintf(cause, "URL must not contain a fragment");
		return (-1);
	}
	if (end == host) {
		xasprintf(cause, "URL \"%s\" has no host", url);
		return (-1);
	}
	/* Strip the port. */
	if (*host == '[') {
		const char *rb = memchr(host, ']', (size_t)(end - host));
		if (rb == NULL) {
			xasprintf(cause, "URL \"%s\" has a bad IPv6 host", url);
			return (-1);
		}
		len = (size_t)(rb - host + 1);
	} else {
		const char *colon = memchr(host, ':', (size_t)(end - host));
		len = (size_t)((colon != NULL ? colon : end) - host);
	}
	if (len == 0 || len >= sizeof hostbuf) {
		xasprintf(cause, "URL \"%s\" has a bad host", url);
		return (-1);
	}
	memcpy(hostbuf, host, len);
	hostbuf[len] = '\0';
	if (p == url + 7 && !url_is_loopback_host(hostbuf)) {
		xasprintf(cause, "\"%s\" must use https (plain http is only "
		    "allowed to loopback addresses)", url);
		return (-1);
	}
	return (0);
}

double
now_mono(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
}

time_t
now_wall(void)
{
	return (time(NULL));
}

void
time_iso8601(time_t t, char *buf, size_t len)
{
	struct tm	tm;

	gmtime_r(&t, &tm);
	if (strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		bsp_strlcpy(buf, "?", len);
}

/*
 * Shell-style glob: '*' matches any run (including none), '?' one character.
 * Iterative with single backtracking point, so it is linear-ish and cannot
 * be driven into exponential time by a hostile pattern or subject.
 */
int
glob_match(const char *pat, const char *s)
{
	const char	*star = NULL, *ss = NULL;

	while (*s != '\0') {
		if (*pat == '*') {
			star = pat++;
			ss = s;
		} else if (*pat == '?' || *pat == *s) {
			pat++;
			s++;
		} else if (star != NULL) {
			pat = star + 1;
			s = ++ss;
		} else
			return (0);
	}
	while (*pat == '*')
		pat++;
	return (*pat == '\0');
}

/* "30", "30s", "10m", "2h", "90d", "1w" into seconds. */
int
parse_duration(const char *s, long long *out)
{
	char		*end;
	long long	 v, mul = 1;

	if (*s == '\0' || !isdigit((unsigned char)*s))
		return (-1);
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0)
		return (-1);
	if (*end != '\0') {
		if (end[1] != '\0')
			return (-1);
		switch (*end) {
		case 's':
			mul = 1;
			break;
		case 'm':
			mul = 60;
			break;
		case 'h':
			mul = 3600;
			break;
		case 'd':
			mul = 86400;
			break;
		case 'w':
			mul = 7 * 86400;
			break;
		default:
			return (-1);
		}
	}
	if (v > LLONG_MAX / mul)
		return (-1);
	*out = v * mul;
	return (0);
}

/* Printable ASCII only (no controls, no high bytes). */
int
str_is_printable(const char *s, size_t len)
{
	size_t	i;

	for (i = 0; i < len; i++) {
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
			return (0);
	}
	return (1);
}

/* A random identifier: len-1 lowercase hex digits. */
void
random_id(char *buf, size_t len)
{
	static const char	hex[] = "0123456789abcdef";
	uint8_t			r[64];
	size_t			i, n;

	if (len == 0)
		return;
	n = len - 1;
	if (n > 2 * sizeof r)
		n = 2 * sizeof r;
	randombytes_buf(r, (n + 1) / 2);
	for (i = 0; i < n; i++)
		buf[i] = hex[(r[i / 2] >> ((i % 2) ? 0 : 4)) & 0xf];
	buf[n] = '\0';
	sodium_memzero(r, sizeof r);
}

/* Length of the valid UTF-8 sequence at s, or 0 if it is not one. */
size_t
utf8_seq(const unsigned char *s, size_t left)
{
	size_t	n, i;

	if (s[0] < 0x80)
		return (1);
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4;
	else
		return (0);
	if (n > left)
		return (0);
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return (0);
	}
	if (n == 3 && s[0] == 0xe0 && s[1] < 0xa0)
		return (0);
	if (n == 3 && s[0] == 0xed && s[1] >= 0xa0)
		return (0);
	if (n == 4 && s[0] == 0xf0 && s[1] < 0x90)
		return (0);
	if (n == 4 && s[0] == 0xf4 && s[1] >= 0x90)
		return (0);
	return (n);
}

/*
 * A copy of text that is valid UTF-8 without control characters: invalid
 * bytes become U+FFFD, controls a space. For text from the network that
 * goes into JSON (jansson refuses invalid UTF-8) or onto a page.
 */
char *
utf8_sanitize(const char *s)
{
	const unsigned char	*u = (const unsigned char *)s;
	size_t			 len = strlen(s), i = 0, o = 0, n;
	char			*out;

	out = xmalloc(len * 3 + 1);
	while (i < len) {
		if ((n = utf8_seq(u + i, len - i)) == 0) {
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		} else if (n == 1 && (u[i] < 0x20 || u[i] == 0x7f)) {
			out[o++] = ' ';
			i++;
		} else {
			memcpy(out + o, u + i, n);
			o += n;
			i += n;
		}
	}
	out[o] = '\0';
	return (out);
}

/*
 * One cookie's value from a Cookie header into buf; -1 if it is missing,
 * present twice (which one would we believe?) or too long.
 */
int
cookie_find(const char *h, const char *name, char *buf, size_t len)
{
	size_t	nl = strlen(name), vl;
	int	found = 0;

	while (h != NULL && *h != '\0') {
		while (*h == ' ' || *h == ';')
			h++;
		vl = strcspn(h, ";");
		if (vl > nl && strncmp(h, name, nl) == 0 && h[nl] == '=') {
			if (found || vl - nl - 1 >= len)
				return (-1);	/* twice, or too long */
			memcpy(buf, h + nl + 1, vl - nl - 1);
			buf[vl - nl - 1] = '\0';
			found = 1;
		}
		h += vl;
	}
	return (found ? 0 : -1);
}

/*
 * Percent-decode a path segment once into a new string; NULL if it is
 * empty, malformed, longer than max decoded, or decodes to control
 * characters (a %00 included).
 */
char *
pct_decode_segment(const char *p, size_t len, size_t max)
{
	char	*out, *o;
	size_t	 i;
	int	 hi, lo;

	if (len == 0 || len > max * 3)
		return (NULL);
	out = o = xmalloc(len + 1);
	for (i = 0; i < len; i++) {
		if (p[i] == '%') {
			if (i + 2 >= len) {
				free(out);
				return (NULL);
			}
			hi = isxdigit((unsigned char)p[i + 1]) ?
			    (isdigit((unsigned char)p[i + 1]) ? p[i + 1] - '0' :
			    (tolower((unsigned char)p[i + 1]) - 'a' + 10)) : -1;
			lo = isxdigit((unsigned char)p[i + 2]) ?
			    (isdigit((unsigned char)p[i + 2]) ? p[i + 2] - '0' :
			    (tolower((unsigned char)p[i + 2]) - 'a' + 10)) : -1;
			if (hi < 0 || lo < 0) {
				free(out);
				return (NULL);
			}
			*o++ = (char)(hi * 16 + lo);
			i += 2;
		} else
			*o++ = p[i];
	}
	*o = '\0';
	if ((size_t)(o - out) > max ||
	    !str_is_printable(out, (size_t)(o - out))) {
		free(out);
		return (NULL);
	}
	return (out);
}
